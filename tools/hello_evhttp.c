/* SPDX-License-Identifier: MIT */
/* hello_evhttp: the C_hello ceiling (docs/benchmarks.md). A bare libevent evhttp server answering
 * every request with a small JSON body, with the same thread model as profiled (N event
 * loops on one listening socket, TCP_NODELAY), so that benchmark ratios compare like with
 * like. Usage: hello_evhttp PORT [THREADS], with HELLO_BYTES=N in the environment to answer
 * N bytes instead. Runs until killed. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>

/* the answer: a small JSON body, or HELLO_BYTES bytes of one (the bench's ceiling for a route
 * whose answers are that large) */
static const char *body = "{\"hello\":\"world\"}";
static size_t body_len = 17;

static void hello(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), body, body_len);
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void *loop(void *arg)
{
    event_base_dispatch(arg);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: hello_evhttp PORT [THREADS]\n");
        return 1;
    }
    int port = atoi(argv[1]), threads = argc > 2 ? atoi(argv[2]) : 1, one = 1;
    const char *size = getenv("HELLO_BYTES");
    if (size && atol(size) > 0 && atol(size) <= (64L << 20)) {
        body_len = (size_t)atol(size);
        char *b = malloc(body_len);
        if (b == NULL)
            return 1;
        memset(b, 'x', body_len);
        body = b;
    }
    if (port <= 0 || port > 65535 || threads < 1 || threads > 256) {
        fprintf(stderr, "hello_evhttp: bad port or thread count\n");
        return 1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 1024)) {
        perror("hello_evhttp: listen");
        return 1;
    }
    evthread_use_pthreads();
    pthread_t tids[256];
    for (int i = 0; i < threads; i++) {
        struct event_base *base = event_base_new();
        struct evhttp *http = evhttp_new(base);
        evhttp_set_gencb(http, hello, NULL);
        evhttp_accept_socket(http, dup(fd));
        pthread_create(&tids[i], NULL, loop, base);
    }
    fprintf(stderr, "hello_evhttp: listening on 127.0.0.1:%d with %d threads\n", port, threads);
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    return 0;
}
