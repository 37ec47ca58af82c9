/* SPDX-License-Identifier: MIT */
/* ingest_bench: durable HTTP ingest (docs/benchmarks.md). Loads an NDJSON corpus, groups it into
 * {"batch":[...]} bodies of N events, and posts them to /v1/batch over C keep-alive
 * connections (one thread each) until every body is sent. Every 200 means the events are
 * durable. Prints events/s, acknowledgement latency percentiles and, as the ceiling measured
 * in the same run, the cJSON parse+free rate (C_parse) of the same events.
 *
 *   ingest_bench --port P --key WRITE_KEY --file F [--batch 100] [--conns 8]
 *                [--rate EVENTS_PER_S] [--latencies FILE]
 *
 * --rate sends on a fixed schedule (open loop), which starts once every connection is
 * established; --latencies writes every request's acknowledgement latency in ms, one per
 * line in the order the requests were due, so that runs can be pooled and slow stretches
 * found in time. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

typedef struct body {
    char *data;
    size_t len;
    size_t events;
} body;

static body *bodies;
static size_t nbodies;
static atomic_size_t next_body;
static int port;
static char auth[512];
static double *latency_ms; /* per body */
static double
    rate_limit; /* --rate: events per second offered on a fixed schedule, 0: closed loop */
static double start_s;
static atomic_size_t failures, events_ok;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void basic(const char *key)
{
    char raw[300];
    int n = snprintf(raw, sizeof raw, "%s:", key);
    char *o = auth;
    for (int i = 0; i < n; i += 3) {
        unsigned v = (unsigned)(unsigned char)raw[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)(unsigned char)raw[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned)(unsigned char)raw[i + 2];
        *o++ = b64[v >> 18 & 63];
        *o++ = b64[v >> 12 & 63];
        *o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *o = 0;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        exit(1);
    }
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one response; returns its status or -1. */
static int read_reply(int fd, char *buf, size_t cap)
{
    size_t have = 0;
    for (;;) {
        ssize_t r = read(fd, buf + have, cap - have - 1);
        if (r <= 0)
            return -1;
        have += (size_t)r;
        buf[have] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end == NULL)
            continue;
        const char *cl = strstr(buf, "Content-Length:") /* as profiled spells it */;
        size_t want = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
        while (have < want) {
            if ((r = read(fd, buf + have, cap - have - 1)) <= 0)
                return -1;
            have += (size_t)r;
        }
        return atoi(buf + 9);
    }
}

static void *client(void *arg)
{
    int fd = *(int *)arg;
    char head[1024], reply[8192];
    size_t i;
    while ((i = atomic_fetch_add(&next_body, 1)) < nbodies) {
        body *b = &bodies[i];
        int hl = snprintf(head, sizeof head,
                          "POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic "
                          "%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                          auth, b->len);
        double t0 = now_s();
        if (rate_limit > 0) { /* open loop: request i is due at a fixed time, and its latency
                               * counts from then, so waiting behind a slow reply counts too */
            double due = start_s + (double)i * (double)bodies[0].events / rate_limit;
            if (due > t0) {
                struct timespec d = {(time_t)(due - t0),
                                     (long)((due - t0 - (double)(time_t)(due - t0)) * 1e9)};
                nanosleep(&d, NULL);
            }
            t0 = due;
        }
        int status = -1;
        if (write_all(fd, head, (size_t)hl) == 0 && write_all(fd, b->data, b->len) == 0)
            status = read_reply(fd, reply, sizeof reply);
        latency_ms[i] = (now_s() - t0) * 1000.0;
        if (status == 200) {
            atomic_fetch_add(&events_ok, b->events);
        } else {
            atomic_fetch_add(&failures, 1);
            if (status < 0) {
                close(fd);
                fd = dial();
            }
        }
    }
    close(fd);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *key = NULL, *file = NULL, *latencies = NULL;
    size_t batch = 100;
    int conns = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--key") == 0)
            key = argv[i + 1];
        else if (strcmp(argv[i], "--file") == 0)
            file = argv[i + 1];
        else if (strcmp(argv[i], "--batch") == 0)
            batch = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--conns") == 0)
            conns = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rate") == 0)
            rate_limit = strtod(argv[i + 1], NULL);
        else if (strcmp(argv[i], "--latencies") == 0)
            latencies = argv[i + 1];
    }
    if (!key || !file || port <= 0 || batch == 0 || batch > 2500 || conns < 1 || conns > 256) {
        fprintf(stderr, "usage: ingest_bench --port P --key WRITE_KEY --file F [--batch N] [--rate "
                        "EVENTS_PER_S] "
                        "[--conns C] [--latencies FILE]\n");
        return 1;
    }
    basic(key);
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        perror(file);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0, nlines = 0, lcap = 0;
    ssize_t len;
    char **lines = NULL;
    size_t *lens = NULL;
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        if (nlines == lcap) {
            lcap = lcap ? 2 * lcap : 1024;
            lines = realloc(lines, lcap * sizeof *lines);
            lens = realloc(lens, lcap * sizeof *lens);
        }
        lines[nlines] = strndup(line, (size_t)len);
        lens[nlines++] = (size_t)len;
    }
    free(line);
    fclose(f);

    /* C_parse: cJSON parse + free of the same events, single thread */
    double t0 = now_s();
    for (size_t i = 0; i < nlines; i++)
        cJSON_Delete(cJSON_ParseWithLength(lines[i], lens[i]));
    double c_parse = (double)nlines / (now_s() - t0);

    nbodies = (nlines + batch - 1) / batch;
    bodies = calloc(nbodies, sizeof *bodies);
    latency_ms = calloc(nbodies, sizeof *latency_ms);
    for (size_t b = 0; b < nbodies; b++) {
        size_t from = b * batch, to = from + batch < nlines ? from + batch : nlines, n = 12;
        for (size_t i = from; i < to; i++)
            n += lens[i] + 1;
        char *p = bodies[b].data = malloc(n + 4);
        p += sprintf(p, "{\"batch\":[");
        for (size_t i = from; i < to; i++) {
            memcpy(p, lines[i], lens[i]);
            p += lens[i];
            *p++ = i + 1 < to ? ',' : ']';
        }
        *p++ = '}';
        bodies[b].len = (size_t)(p - bodies[b].data);
        bodies[b].events = to - from;
    }
    pthread_t *th = calloc((size_t)conns, sizeof *th);
    int *fds = calloc((size_t)conns, sizeof *fds);
    for (int i = 0; i < conns; i++) /* connected before the schedule starts: a request's
                                     * latency is the server's, not a TCP handshake's */
        fds[i] = dial();
    t0 = start_s = now_s();
    for (int i = 0; i < conns; i++)
        pthread_create(&th[i], NULL, client, &fds[i]);
    for (int i = 0; i < conns; i++)
        pthread_join(th[i], NULL);
    double secs = now_s() - t0, rate = (double)atomic_load(&events_ok) / secs;
    FILE *lf = latencies ? fopen(latencies, "w") : NULL;
    if (latencies && lf == NULL) {
        perror(latencies);
        return 1;
    }
    for (size_t i = 0; lf && i < nbodies; i++) /* in the order they were due */
        fprintf(lf, "%.3f\n", latency_ms[i]);
    if (lf && fclose(lf) != 0) {
        perror(latencies);
        return 1;
    }
    qsort(latency_ms, nbodies, sizeof *latency_ms, cmp_double);
    printf("events %zu in %zu requests of %zu, %d connections, %.2f s\n", nlines, nbodies, batch,
           conns, secs);
    printf("durable_ingest_events_per_s %.0f\n", rate);
    printf("c_parse_events_per_s %.0f\n", c_parse);
    printf("ratio %.3f\n", rate / c_parse);
    printf("ack_latency_ms p50 %.2f p99 %.2f p99.9 %.2f max %.2f\n", latency_ms[nbodies / 2],
           latency_ms[nbodies * 99 / 100], latency_ms[nbodies * 999 / 1000],
           latency_ms[nbodies - 1]);
    printf("failed_requests %zu\n", atomic_load(&failures));
    return atomic_load(&failures) ? 2 : 0;
}
