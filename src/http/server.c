/* SPDX-License-Identifier: MIT */
/* server: worker threads (one event loop each) sharing the listening sockets, request
 * dispatch to the two APIs, and the reply envelope. Handlers are synchronous: each request is
 * answered from one LMDB read transaction by the api service and queued for writing before
 * the handler returns, so a worker is never held by a slow client (conn.c buffers both
 * directions, within bounds). The Tracking API replies once its events are durable. */
#include "http_int.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
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
#include "ps/regulation.h"
#include "ps/text.h"

#define HOST_MAX 1025 /* NI_MAXHOST, which POSIX leaves out */
#define SERV_MAX 32

/* ---- replies ---- */

void http_send_reply(http_req *rq, const char *content_type, const char *allow)
{
    worker *w = rq->w;
    ps_api_reply *rep = &w->reply;
    char headers[1024];
    int n = snprintf(headers, sizeof headers, "Content-Type: %s\r\nRequest-Id: %s\r\n",
                     content_type, rq->rid);
    if (allow)
        n += snprintf(headers + n, sizeof headers - (size_t)n, "Allow: %s\r\n", allow);
    if (rep->status == 429 || rep->status == 503) {
        long long wait_s = rep->retry_after_s ? rep->retry_after_s : 1;
        n += snprintf(headers + n, sizeof headers - (size_t)n, "Retry-After: %lld\r\n", wait_s);
        if (rep->status == 429) /* the Unix time, in seconds, when a retry can pass */
            n += snprintf(headers + n, sizeof headers - (size_t)n, "X-RateLimit-Reset: %lld\r\n",
                          (long long)(ps_clock_now_ms() / 1000) + wait_s);
    }
    if (rq->allowed_origin) /* checked against the source's allow list (track.c) */
        n += snprintf(headers + n, sizeof headers - (size_t)n,
                      "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n",
                      (int)rq->allowed_origin_len, rq->allowed_origin);
    else if (rq->cors) /* any origin: write keys are public, and no cookie is ever read */
        n +=
            snprintf(headers + n, sizeof headers - (size_t)n, "Access-Control-Allow-Origin: *\r\n");
    if (rq->preflight)
        n += snprintf(headers + n, sizeof headers - (size_t)n,
                      "Access-Control-Allow-Methods: %s\r\n"
                      "Access-Control-Allow-Headers: Content-Type, Authorization, "
                      "Content-Encoding\r\nAccess-Control-Max-Age: 86400\r\n",
                      rq->route == ROUTE_SETTINGS ? "GET, OPTIONS" : "POST, OPTIONS");
    PS_ASSERT(n > 0 && (size_t)n < sizeof headers);
    http_conn_reply(rq, rep->status, headers, (size_t)n, &rep->body);
}

/* ---- request parsing ---- */

void http_request_id(worker *w, char out[40])
{
    uint64_t n = ++w->requests;
    snprintf(out, 40, "%04x-%04x-%04x-%04x", (unsigned)(w->srv->boot >> 16),
             (unsigned)((w->srv->boot & 0xffff) ^ (w->id << 12)), (unsigned)(n >> 16 & 0xffff),
             (unsigned)(n & 0xffff));
}

void http_request_done(worker *w, int route, int status, const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t us = (int64_t)(t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000;
    http_metrics_record(&w->srv->stats, route, status, us > 0 ? (uint64_t)us : 0);
}

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

void http_reply_reset(worker *w)
{
    w->reply.status = 200;
    w->reply.retry_after_s = 0;
    ps_buf_reset(&w->reply.body);
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
    http_send_reply(rq, "application/json", NULL);
    http_request_done(w, rq->route, status, &rq->t0);
}

/* ---- change-feed long polls: the request waits on its worker's loop, without holding it,
 * and is asked again every PARK_POLL_MS until rows come or its time is up ---- */

#define PARK_POLL_MS 250

typedef struct parked {
    struct parked *next, *prev;
    struct event *ev;
    http_req *rq;
} parked;

static void unpark(worker *w, parked *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        w->parked = p->next;
    if (p->next)
        p->next->prev = p->prev;
    event_free(p->ev);
    free(p);
}

static void park_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    parked *p = arg;
    http_req *rq = p->rq;
    unpark(rq->w, p);
    if (http_conn_peer_gone(rq))
        rq->wait_until_ms = 1; /* its time is up: the answer goes now (and frees a dead one) */
    http_dispatch_request(rq); /* answers, or parks again */
}

/* Keeps `rq` for a later answer; false when it must be answered now (its time is up, or the
 * server is stopping). */
static bool park(http_req *rq, int64_t wait_ms)
{
    worker *w = rq->w;
    int64_t now = ps_clock_now_ms();
    if (rq->wait_until_ms == 0)
        rq->wait_until_ms = now + wait_ms;
    if (now >= rq->wait_until_ms || atomic_load(&w->srv->stopping) || rq->answer_now)
        return false;
    parked *p = ps_xcalloc(1, sizeof *p);
    p->rq = rq;
    p->ev = evtimer_new(w->base, park_fire, p);
    int64_t left = rq->wait_until_ms - now, step = left < PARK_POLL_MS ? left : PARK_POLL_MS;
    struct timeval tv = {(time_t)(step / 1000), (suseconds_t)(step % 1000) * 1000};
    if (p->ev == NULL || evtimer_add(p->ev, &tv) != 0) {
        if (p->ev)
            event_free(p->ev);
        free(p);
        return false;
    }
    p->next = w->parked;
    if (w->parked)
        w->parked->prev = p;
    w->parked = p;
    return true;
}

/* Stopping: every waiting poll is answered now (park_fire sees the server stopping), with
 * what it has. Worker thread. */
static void park_flush(worker *w)
{
    for (parked *p = w->parked; p; p = p->next)
        event_active(p->ev, EV_TIMEOUT, 0);
}

void http_dispatch_request(http_req *rq)
{
    worker *w = rq->w;
    server *s = w->srv;
    if (rq->route == ROUTE_TRACK || rq->route == ROUTE_BATCH) {
        http_track_handle(rq);
        return; /* it replies and records, now or after the commit */
    }
    ps_api_reply *rep = &w->reply;
    http_reply_reset(w);
    int route = ROUTE_OTHER, method = rq->head.method;
    const char *ctype = "application/json", *allow = NULL, *why = "";
    size_t path_len = strlen(rq->path);
    if (path_len >= s->cfg.max_header_bytes ||
        (rq->query && strlen(rq->query) >= s->cfg.max_header_bytes)) {
        ps_api_error(rep, 400, "invalid_request_error", "The request URI is malformed.");
        goto reply;
    }
    /* routing splits the path in place: a copy, so that a waiting request is routed again */
    char *path = memcpy(w->path, rq->path, path_len + 1);
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0) {
        route = path[1] == 'h' ? ROUTE_HEALTHZ : ROUTE_METRICS;
        if (method != HTTP_GET && method != HTTP_HEAD) {
            allow = "GET";
            ps_api_error(rep, 405, "invalid_request_error", "Use GET on this route.");
        } else if (route == ROUTE_HEALTHZ) {
            ps_buf_puts(&rep->body, "{\"status\":\"ok\"}");
        } else {
            /* per-space series name every space: only on the operators' listener
             * (--metrics-listen), never where anyone can ask (docs/security.md) */
            bool spaces = rq->kind == LISTEN_METRICS;
            ctype = "text/plain; version=0.0.4; charset=utf-8";
            http_metrics_render(&s->stats, spaces ? s->reg : NULL, &rep->body);
        }
        goto reply;
    }
    ps_api_param params[MAX_PARAMS];
    ps_api_request rq2;
    char token[MAX_AUTH_BYTES];
    size_t alen = 0;
    const char *auth = http_head_find(&rq->head, "Authorization", &alen);
    int status = serves_profiles(rq)
                     ? http_route_profile(path, rq->query, method, auth, alen, w->query, w->ident,
                                          params, token, &rq2, &allow, &why)
                     : 404;
    if (status != 0) {
        route = status == 404 ? ROUTE_OTHER : (int)rq2.route;
        ps_api_error(rep, status,
                     status == 404   ? "not_found"
                     : status == 401 ? "authentication_error"
                                     : "invalid_request_error",
                     "%s", status == 404 && why[0] == 0 ? "No such route." : why);
        goto reply;
    }
    route = (int)rq2.route;
    if (route == PS_API_DELETE_IDS || route == PS_API_REG_CREATE || route == PS_API_FILTER_CREATE ||
        route == PS_API_FILTER_UPDATE || route == PS_API_IMPORT_CREATE) {
        rq2.body = (const char *)rq->body;
        rq2.body_len = rq->body_len;
    }
    rq2.now_ms = ps_clock_now_ms();
    rq2.base_url = s->cfg.public_url; /* checked at start: no character JSON escapes */
    ps_space *sp = NULL;
    ps_status st = ps_space_name_valid(rq2.space_name)
                       ? http_registry_get(s->reg, rq2.space_name, &sp)
                       : PS_ENOTFOUND;
    if (st != PS_OK && st != PS_ENOTFOUND) { /* may pass: never a "no such space" answer */
        ps_api_error(rep, 503, "service_unavailable",
                     "The space cannot be opened right now (%s); retry later.", ps_status_str(st));
        rep->retry_after_s = 1;
        goto reply;
    }
    /* a read sees every write acknowledged before it: the store may still be taking the
     * journal's latest groups (docs/architecture.md, Tracking API write path) */
    if (sp && rq->wait_until_ms == 0 &&
        !ps_writer_await(http_registry_writer_running(s->reg, sp), READ_AWAIT_MS))
        ps_log(PS_LOG_WARN, "msg=\"read served before the store caught up\" space=%s",
               rq2.space_name);
    rq2.recheck = rq->wait_until_ms != 0;
    ps_api_serve(sp, &rq2, rep);
    if (rep->wait_ms > 0 && park(rq, rep->wait_ms))
        return;                     /* asked again later (park_fire) */
    if (sp && rep->import_queued) { /* the space's writer runs it in its stream */
        ps_writer *wr = http_registry_writer(s->reg, sp);
        if (wr)
            ps_writer_regulations(wr, 0);
    }
    if (sp && rq2.route == PS_API_REG_CREATE && rep->status == 200) {
        /* the space's writer runs it after the events acknowledged before it */
        ps_writer *wr = http_registry_writer(s->reg, sp);
        size_t ran;
        if (wr)
            ps_writer_regulations(wr, rep->regulation_seq);
        else if (ps_regulation_run_pending(sp, ps_clock_now_ms(), rep->regulation_seq, &ran) !=
                 PS_OK)
            ps_log(PS_LOG_ERROR, "msg=\"regulation could not run\" space=%s", rq2.space_name);
    }
reply:
    rq->route = route;
    if (rep->status >= 500)
        ps_log(PS_LOG_ERROR, "msg=\"request failed\" request_id=%s status=%d route=%s",
               rq->rid, rep->status,
               route < PS_API__ROUTES ? ps_api_route_name((ps_api_route)route) : "other");
    http_send_reply(rq, ctype, allow);
    http_request_done(w, route, rep->status, &rq->t0);
}

/* ---- lifecycle ---- */

static void *run_worker(void *arg)
{
    worker *w = arg;
    event_base_dispatch(w->base);
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
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->boot = (uint32_t)(ts.tv_nsec ^ (ts.tv_sec << 20) ^ getpid());
    for (int i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        w->srv = s;
        w->id = (uint32_t)i;
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
    park_flush(arg);
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
    for (int i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        pthread_join(w->thread, NULL);
        http_track_flush(-1, 0, w); /* a commit that finished after the loop ended */
        while (w->parked)           /* polls the loop ended before answering: closed below */
            unpark(w, w->parked);
        http_conn_listen_stop(w);
        http_conn_close_all(w);
        event_free(w->done_ev);
        event_base_free(w->base);
        pthread_mutex_destroy(&w->done_lock);
        ps_buf_clear(&w->reply.body);
        free(w->query);
        free(w->path);
        free(w->ident);
    }
    free(s->workers);
    free(s);
}
