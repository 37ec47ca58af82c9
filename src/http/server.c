/* SPDX-License-Identifier: MIT */
/* server: worker threads (one event loop each) sharing the listening sockets, and the
 * dispatch of each request to the Tracking API (track.c) or the Profile API (profile_api.c);
 * both reply through reply.c. Handlers are synchronous: a Profile API request is answered
 * from one LMDB read transaction and queued for writing before the handler returns, so a
 * worker is never held by a slow client (conn.c buffers both directions, within bounds). The
 * Tracking API replies once its events are durable. */
#include "http_int.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "ps/clock.h"
#include "ps/csv.h"
#include "ps/log.h"
#include "ps/text.h"

#define HOST_MAX 1025 /* NI_MAXHOST, which POSIX leaves out */
#define SERV_MAX 32

/* True when this listener serves the Tracking API. */
static bool serves_tracking(const http_req *rq)
{
    return rq->kind == LISTEN_INGEST ||
           (rq->kind == LISTEN_MAIN && rq->w->srv->cfg.ingest_listen == NULL);
}

/* True when this listener serves the Profile API. */
static bool serves_profiles(const http_req *rq)
{
    return rq->kind == LISTEN_MAIN;
}

head_decision http_dispatch_head(http_req *rq)
{
    http_reply_reset(rq->w);
    int type;
    if (serves_tracking(rq) && (rq->route = http_track_route(rq->path, &type)) >= 0) {
        rq->track_type = type;
        return http_track_head(rq);
    }
    char key[PS_WRITE_KEY_MAX + 1];
    if (serves_tracking(rq) && http_track_settings_route(rq->path, key, sizeof key)) {
        rq->route = ROUTE_SETTINGS;
        rq->cors = true; /* analytics.js loads it from the web page's origin */
        rq->preflight = rq->head.method == HTTP_OPTIONS;
        rq->body = (const uint8_t *)"";
        rq->body_len = 0;
        http_track_settings(rq, key);
        return (head_decision){.reply_now = true};
    }
    rq->route = ROUTE_OTHER;
    /* the Profile API routes that take a body, and how much of one. Their token is checked
     * after the body, so it counts as anonymous; a CSV import's comes from the shared
     * budget (docs/import.md). Everything else is answered without reading one. */
    int route = serves_profiles(rq) && strlen(rq->path) < rq->w->srv->cfg.max_header_bytes
                    ? http_route_of_request(rq->path, rq->head.method, rq->w->path)
                    : -1;
    switch (route) {
    case PS_API_DELETE_IDS: return (head_decision){.max_body = MAX_DELETE_BODY, .anonymous = true};
    case PS_API_REG_CREATE:
        return (head_decision){.max_body = MAX_REGULATION_BODY, .anonymous = true};
    case PS_API_FILTER_CREATE:
    case PS_API_FILTER_UPDATE:
        return (head_decision){.max_body = MAX_FILTER_BODY, .anonymous = true};
    case PS_API_IMPORT_CREATE:
        return (head_decision){.max_body = (size_t)PS_CSV_MAX_BYTES, .anonymous = false};
    default: break;
    }
    if (rq->head.chunked || rq->head.content_length > 0) {
        /* a body where none is read: answer as if it were empty, then close (conn.c) */
        rq->body = (const uint8_t *)"";
        rq->body_len = 0;
        rq->answer_now = true;
        http_dispatch_request(rq);
        return (head_decision){.reply_now = true};
    }
    return (head_decision){.max_body = 0};
}

void http_dispatch_error(http_req *rq, int status, const char *code, const char *message)
{
    worker *w = rq->w;
    http_reply_reset(w);
    if (serves_tracking(rq) &&
        (rq->kind == LISTEN_INGEST || rq->route == ROUTE_TRACK || rq->route == ROUTE_BATCH))
        http_track_error(&w->reply, status,
                         code            ? code
                         : status == 503 ? "unavailable"
                         : status == 408 ? "request_timeout"
                         : status == 413 ? "payload_too_large"
                                         : "invalid_request",
                         message);
    else
        ps_api_error(&w->reply, status,
                     code            ? code
                     : status == 503 ? "service_unavailable"
                                     : "invalid_request_error",
                     "%s", message);
    if (status == 503)
        w->reply.retry_after_s = 1;
    http_request_done(w, rq->route, status, &rq->t0); /* before: the reply may free rq */
    http_send_reply(rq, "application/json", NULL);
}

void http_dispatch_request(http_req *rq)
{
    if (rq->route == ROUTE_TRACK || rq->route == ROUTE_BATCH)
        http_track_handle(rq); /* it replies and records, now or after the commit */
    else
        http_profile_handle(rq, serves_profiles(rq));
}

/* ---- lifecycle ---- */

/* A worker runs its event loop one round at a time (EVLOOP_ONCE: wait for ready events, run
 * their callbacks). A round that answered more than one request means clients are queueing
 * for this loop, and such a loop rarely waits: its next round finds new requests at once. It
 * then stays runnable, and so do the threads it shares the cores with (clients on the same
 * machine, the other loops, the space's writers); the scheduler takes turns in whole slices,
 * and a request waits out the slices of the others. Yielding after such a round gives the
 * others short turns between rounds instead. When nothing else wants the core, the yield
 * returns at once (about 1.5 us here, shared by the round's requests). docs/benchmarks.md,
 * "Read tails: the loops yield", has the measurements. */
static void *run_worker(void *arg)
{
    worker *w = arg;
    for (;;) {
        uint64_t before = w->requests;
        int rc = event_base_loop(w->base, EVLOOP_ONCE);
        if (rc != 0 || event_base_got_exit(w->base) || event_base_got_break(w->base))
            break;
        if (w->requests - before > 1)
            sched_yield();
    }
    return NULL;
}

static int listen_socket(const char *addr, char *bound, size_t bound_cap)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof host || colon[1] == 0) {
        ps_log(PS_LOG_ERROR, "msg=\"--listen must be HOST:PORT\" listen=\"%s\"", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') { /* [::1]:8080 */
        h[strlen(h) - 1] = 0;
        h++;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res;
    int rc = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res);
    if (rc != 0) {
        ps_log(PS_LOG_ERROR, "msg=\"cannot resolve listen address\" listen=\"%s\" error=\"%s\"",
               addr, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 || /* inherited */
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        ps_log(PS_LOG_ERROR, "msg=\"cannot listen\" listen=\"%s\" error=\"%s\"", addr,
               strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char hb[HOST_MAX], pb[SERV_MAX];
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    getnameinfo((struct sockaddr *)&ss, sl, hb, sizeof hb, pb, sizeof pb,
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(bound, bound_cap, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", hb, pb);
    return fd;
}

int http_server_start(const http_config *cfg, registry *reg, server **out)
{
    const char *addrs[LISTEN__COUNT] = {cfg->listen, cfg->ingest_listen, cfg->metrics_listen};
    char bound[LISTEN__COUNT][HOST_MAX + SERV_MAX + 4] = {"", "", ""};
    int fds[LISTEN__COUNT] = {-1, -1, -1};
    for (int k = 0; k < LISTEN__COUNT; k++) {
        if (addrs[k] && (fds[k] = listen_socket(addrs[k], bound[k], sizeof bound[k])) < 0) {
            for (int j = 0; j < k; j++)
                if (fds[j] >= 0)
                    close(fds[j]);
            return -1;
        }
    }
    evthread_use_pthreads(); /* before any base: lets writer threads wake a worker */
    server *s = ps_xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    s->reg = reg;
    s->nworkers = cfg->threads;
    s->workers = ps_xcalloc((size_t)s->nworkers, sizeof *s->workers);
    s->stats.workers = s->nworkers;
    s->stats.body_bytes = &s->body_bytes;
    s->stats.anonymous_body_bytes = &s->anonymous_body_bytes;
    s->stats.connections = ps_xcalloc((size_t)s->nworkers, sizeof *s->stats.connections);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->boot = (uint32_t)(ts.tv_nsec ^ (ts.tv_sec << 20) ^ getpid());
    for (int i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        w->srv = s;
        w->id = (uint32_t)i;
        w->held = &s->stats.connections[i];
        atomic_init(w->held, 0);
        /* the cap is shared out; each worker takes at least one connection */
        w->max_connections =
            cfg->max_connections / s->nworkers + (i < cfg->max_connections % s->nworkers ? 1 : 0);
        if (w->max_connections < 1)
            w->max_connections = 1;
        ps_buf_init(&w->reply.body);
        w->buffer_cap = cfg->max_header_bytes + 2 * MAX_PARAMS + 16;
        w->query = ps_xmalloc(w->buffer_cap);
        w->ident = ps_xmalloc(w->buffer_cap);
        w->path = ps_xmalloc(w->buffer_cap);
        w->base = event_base_new();
        PS_ASSERT(w->base != NULL);
        pthread_mutex_init(&w->done_lock, NULL);
        w->done_ev = event_new(w->base, -1, 0, http_track_flush, w);
        PS_ASSERT(w->done_ev != NULL);
        pthread_mutex_init(&w->handoff_lock, NULL);
        w->handoff_ev = event_new(w->base, -1, 0, http_conn_adopt_handoffs, w);
        PS_ASSERT(w->handoff_ev != NULL);
        for (int k = 0; k < LISTEN__COUNT; k++)
            if (fds[k] >= 0)
                http_conn_listen(w, fds[k], k);
    }
    for (int k = 0; k < LISTEN__COUNT; k++)
        if (fds[k] >= 0)
            close(fds[k]);
    for (int i = 0; i < s->nworkers; i++)
        pthread_create(&s->workers[i].thread, NULL, run_worker, &s->workers[i]);
    ps_log(PS_LOG_INFO, "msg=listening listen=%s%s%s%s%s threads=%d max_connections=%d data=\"%s\"",
           bound[0], cfg->ingest_listen ? " ingest_listen=" : "", bound[1],
           cfg->metrics_listen ? " metrics_listen=" : "", bound[2], s->nworkers,
           cfg->max_connections, cfg->data_dir);
    *out = s;
    return 0;
}

static void stop_accepting(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_conn_listen_stop(arg);
    http_profile_park_flush(arg);
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    struct timeval grace = {0, 300 * 1000}; /* replies already queued get written */
    event_base_loopexit(w->base, &grace);
}

void http_server_stop(server *s)
{
    struct timeval now = {0, 0};
    atomic_store(&s->stopping, true); /* replies from now on close their connections */
    for (int i = 0; i < s->nworkers; i++)
        event_base_once(s->workers[i].base, -1, EV_TIMEOUT, stop_accepting, &s->workers[i], &now);
    /* what was accepted is committed and answered before the loops end */
    http_registry_stop_writers(s->reg);
    for (int i = 0; i < s->nworkers; i++)
        event_base_once(s->workers[i].base, -1, EV_TIMEOUT, stop_loop, &s->workers[i], &now);
    /* every loop ends before any is freed: a worker may hand a connection to another */
    for (int i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i].thread, NULL);
    for (int i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        http_track_flush(-1, 0, w); /* a commit that finished after the loop ended */
        http_profile_park_drop(w);  /* polls the loop ended before answering: closed below */
        http_conn_listen_stop(w);
        http_conn_drop_handoffs(w); /* handed over as the loop ended */
        http_conn_close_all(w);
        event_free(w->done_ev);
        event_free(w->handoff_ev);
        pthread_mutex_destroy(&w->handoff_lock);
        event_base_free(w->base);
        pthread_mutex_destroy(&w->done_lock);
        ps_buf_clear(&w->reply.body);
        free(w->query);
        free(w->path);
        free(w->ident);
    }
    free(s->workers);
    free(s->stats.connections);
    free(s);
}
