/* SPDX-License-Identifier: MIT */
/* server: evhttp worker threads sharing one listening socket, the route table, and the reply
 * envelope. Handlers are synchronous: each request is parsed, answered from one LMDB read
 * transaction by the api service, and queued for writing before the callback returns, so a
 * worker is never held by a slow client (libevent buffers both directions). */
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

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include "ps/clock.h"
#include "ps/log.h"
#include "ps/text.h"

#define MAX_PARAMS 32
#define MAX_SEGMENTS 10
#define MAX_DELETE_BODY (32 * 1024)
#define MAX_AUTH_BYTES 1024
#define HOST_MAX 1025 /* NI_MAXHOST, which POSIX leaves out */
#define SERV_MAX 32

/* ---- replies ---- */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return status >= 500 ? "Internal Server Error" : "Error";
    }
}

void send_reply(worker *w, struct evhttp_request *req, const char *content_type,
                const char *rid, const char *allow)
{
    ps_api_reply *rep = &w->reply;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "Request-Id", rid);
    if (allow)
        evhttp_add_header(h, "Allow", allow);
    if (rep->status == 429 || rep->status == 503) {
        long long wait_s = rep->retry_after_s ? rep->retry_after_s : 1;
        char secs[24];
        snprintf(secs, sizeof secs, "%lld", wait_s);
        evhttp_add_header(h, "Retry-After", secs);
        if (rep->status == 429) { /* Q31: the Unix time, in seconds, when a retry can pass */
            snprintf(secs, sizeof secs, "%lld", (long long)(ps_clock_now_ms() / 1000) + wait_s);
            evhttp_add_header(h, "X-RateLimit-Reset", secs);
        }
    }
    evbuffer_add(evhttp_request_get_output_buffer(req), rep->body.ptr, rep->body.len);
    evhttp_send_reply(req, rep->status, reason(rep->status), NULL);
}

/* ---- request parsing ---- */

/* Splits the raw path into segments (not decoded). Returns the count, or -1 when there are
 * too many or an empty one (a doubled or trailing slash). */
static int split_path(char *path, char **seg)
{
    if (path[0] != '/')
        return -1;
    char *p = path + 1;
    if (*p == 0)
        return 0;
    for (int n = 0;;) {
        char *slash = strchr(p, '/');
        if (n == MAX_SEGMENTS || slash == p || (slash == NULL && *p == 0))
            return -1;
        seg[n++] = p;
        if (slash == NULL)
            return n;
        *slash = 0;
        p = slash + 1;
    }
}

/* Decodes the query string into params; names and values are copied into `store`. */
static bool parse_query(const char *q, char *store, ps_api_param *params, size_t *count,
                        const char **why)
{
    *count = 0;
    if (q == NULL)
        return true;
    size_t o = 0;
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > 0) {
            if (*count == MAX_PARAMS) {
                *why = "The query string has too many parameters.";
                return false;
            }
            const char *eq = memchr(q, '=', len);
            size_t nl = eq ? (size_t)(eq - q) : len, dl;
            ps_api_param *p = &params[(*count)++];
            p->name = store + o;
            if (!ps_pct_decode(q, nl, true, store + o, &dl))
                goto bad;
            if (memchr(store + o, 0, dl))
                goto nul;
            o += dl;
            store[o++] = 0;
            p->value = store + o;
            p->value_len = 0;
            if (eq && !ps_pct_decode(eq + 1, len - nl - 1, true, store + o, &p->value_len))
                goto bad;
            if (memchr(store + o, 0, p->value_len))
                goto nul;
            o += p->value_len;
            store[o++] = 0;
        }
        q += len + (amp ? 1 : 0);
    }
    return true;
bad:
    *why = "The query string has a malformed percent-encoding.";
    return false;
nul:
    *why = "The query string contains a NUL byte.";
    return false;
}

bool basic_user(struct evhttp_request *req, bool only_basic, char *user, size_t cap,
                size_t *len)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    *len = 0;
    if (h == NULL)
        return true;
    if (strncasecmp(h, "Basic ", 6) != 0)
        return !only_basic;
    const char *b64 = h + 6;
    size_t bl = strlen(b64), n;
    ps_trim(&b64, &bl);
    uint8_t raw[MAX_AUTH_BYTES];
    if (!ps_b64_decode(b64, bl, false, raw, sizeof raw, &n) || memchr(raw, 0, n))
        return false;
    const uint8_t *colon = memchr(raw, ':', n);
    size_t ul = colon ? (size_t)(colon - raw) : n;
    if (ul == 0 || ul >= cap)
        return false;
    memcpy(user, raw, ul);
    user[ul] = 0;
    *len = ul;
    return true;
}

void request_id(worker *w, char out[40])
{
    uint64_t n = ++w->requests;
    snprintf(out, 40, "%04x-%04x-%04x-%04x", (unsigned)(w->srv->boot >> 16),
             (unsigned)((w->srv->boot & 0xffff) ^ (w->id << 12)), (unsigned)(n >> 16 & 0xffff),
             (unsigned)(n & 0xffff));
}

static const char *const resources[] = {"traits", "external_ids", "events", "metadata", "links"};

/* Routes `/v1/spaces/{space}/collections/{c}/profiles[/{ident}/{resource}[/delete]]` (and the
 * legacy `/v1/namespaces/…`). Returns the route or -1 for no route; *method_ok tells whether
 * the method fits it. */
static int route_of(char **seg, int n, enum evhttp_cmd_type method, bool *method_ok)
{
    *method_ok = method == EVHTTP_REQ_GET;
    if (n < 6 || strcmp(seg[0], "v1") != 0 ||
        (strcmp(seg[1], "spaces") != 0 && strcmp(seg[1], "namespaces") != 0) ||
        strcmp(seg[3], "collections") != 0 || strcmp(seg[5], "profiles") != 0)
        return -1;
    if (n == 6)
        return PS_API_PROFILES;
    if (n == 8)
        for (int i = 0; i < (int)(sizeof resources / sizeof *resources); i++)
            if (strcmp(seg[7], resources[i]) == 0)
                return i;
    if (n == 9 && strcmp(seg[7], "external_ids") == 0 && strcmp(seg[8], "delete") == 0) {
        *method_ok = method == EVHTTP_REQ_POST;
        return PS_API_DELETE_IDS;
    }
    return -1;
}

void request_done(worker *w, int route, int status, const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t us = (int64_t)(t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000;
    metrics_record(&w->srv->stats, route, status, us > 0 ? (uint64_t)us : 0);
}

/* Serves both APIs, or only the Tracking API (`ingest`: the --ingest-listen listener), or
 * only the Profile API (the main listener when there is a separate ingest listener). */
static void dispatch(struct evhttp_request *req, worker *w, bool ingest)
{
    server *s = w->srv;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char rid[40];
    request_id(w, rid);
    ps_api_reply *rep = &w->reply;
    rep->status = 200;
    rep->retry_after_s = 0;
    ps_buf_reset(&rep->body);
    int route = ROUTE_OTHER;
    const char *ctype = "application/json", *allow = NULL, *why = "";
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *raw_query = uri ? evhttp_uri_get_query(uri) : NULL;
    size_t path_len = raw_path ? strlen(raw_path) : 0;
    char *path = w->path, *seg[MAX_SEGMENTS];
    int n = 0;
    bool method_ok;
    if (raw_path == NULL || path_len >= s->cfg.max_header_bytes ||
        (raw_query && strlen(raw_query) >= s->cfg.max_header_bytes)) {
        ps_api_error(rep, 400, "invalid_request_error", "The request URI is malformed.");
        goto reply;
    }
    memcpy(path, raw_path, path_len + 1);
    int track_type;
    if ((ingest || s->cfg.ingest_listen == NULL) &&
        (route = track_route(path, &track_type)) >= 0) {
        track_handle(w, req, route, track_type, rid, &t0);
        return; /* it replies and records, now or after the commit */
    }
    route = ROUTE_OTHER;
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0) {
        route = path[1] == 'h' ? ROUTE_HEALTHZ : ROUTE_METRICS;
        if (method != EVHTTP_REQ_GET) {
            allow = "GET";
            ps_api_error(rep, 405, "invalid_request_error", "Use GET on this route.");
        } else if (route == ROUTE_HEALTHZ) {
            ps_buf_puts(&rep->body, "{\"status\":\"ok\"}");
        } else {
            ctype = "text/plain; version=0.0.4; charset=utf-8";
            metrics_render(&s->stats, s->reg, &rep->body);
        }
        goto reply;
    }
    if (ingest || (n = split_path(path, seg)) < 0 ||
        (route = route_of(seg, n, method, &method_ok)) < 0) {
        route = ROUTE_OTHER;
        ps_api_error(rep, 404, "not_found", "No such route.");
        goto reply;
    }
    if (!method_ok) {
        allow = route == PS_API_DELETE_IDS ? "POST" : "GET";
        ps_api_error(rep, 405, "invalid_request_error", "Use %s on this route.", allow);
        goto reply;
    }
    ps_api_param params[MAX_PARAMS];
    ps_api_request rq = {.route = (ps_api_route)route, .space_name = seg[2],
                         .collection = seg[4], .params = params};
    if (!parse_query(raw_query, w->query, params, &rq.param_count, &why)) {
        ps_api_error(rep, 400, "invalid_request_error", "%s", why);
        goto reply;
    }
    if (n >= 8) {
        char *ident = w->ident;
        size_t il = strlen(seg[6]);
        if (!ps_pct_decode(seg[6], il, false, ident, &rq.ident_len) ||
            memchr(ident, 0, rq.ident_len)) {
            ps_api_error(rep, 400, "invalid_request_error",
                         "The profile identifier has a malformed percent-encoding.");
            goto reply;
        }
        rq.ident = ident;
    }
    char token[MAX_AUTH_BYTES];
    if (!basic_user(req, true, token, sizeof token, &rq.token_len)) {
        ps_api_error(rep, 401, "authentication_error",
                     "The Authorization header must be Basic base64(<token>:).");
        goto reply;
    }
    rq.token = rq.token_len ? token : NULL;
    if (route == PS_API_DELETE_IDS) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t bl = evbuffer_get_length(in);
        if (bl > MAX_DELETE_BODY) {
            ps_api_error(rep, 413, "payload_too_large", "The body is over %d bytes.",
                         MAX_DELETE_BODY);
            goto reply;
        }
        rq.body = bl ? (const char *)evbuffer_pullup(in, -1) : "";
        rq.body_len = bl;
    }
    rq.now_ms = ps_clock_now_ms();
    ps_space *sp = ps_space_name_valid(rq.space_name) ? registry_get(s->reg, rq.space_name) : NULL;
    ps_api_serve(sp, &rq, rep);
reply:
    if (rep->status >= 500)
        ps_log(PS_LOG_ERROR, "msg=\"request failed\" request_id=%s status=%d route=%s", rid,
               rep->status, route < PS_API__ROUTES ? ps_api_route_name(route) : "other");
    send_reply(w, req, ctype, rid, allow);
    request_done(w, route, rep->status, &t0);
}

static void handle(struct evhttp_request *req, void *arg)
{
    dispatch(req, arg, false);
}

static void handle_ingest(struct evhttp_request *req, void *arg)
{
    dispatch(req, arg, true);
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
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
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

/* A new evhttp on the worker's loop, with the server's limits, accepting on a dup of `fd`
 * (each listener owns and closes its own descriptor). */
static struct evhttp *listener(worker *w, int fd, void (*cb)(struct evhttp_request *, void *),
                               struct evhttp_bound_socket **bound)
{
    const http_config *cfg = &w->srv->cfg;
    struct timeval tv = {cfg->timeout_ms / 1000, (cfg->timeout_ms % 1000) * 1000};
    struct evhttp *http = evhttp_new(w->base);
    int lfd = dup(fd);
    if (http == NULL || lfd < 0)
        PS_ASSERT(!"cannot create a listener");
    evhttp_set_max_headers_size(http, (ev_ssize_t)cfg->max_header_bytes);
    evhttp_set_max_body_size(http, (ev_ssize_t)cfg->max_body_bytes);
    evhttp_set_timeout_tv(http, &tv);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                         EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(http, cb, w);
    *bound = evhttp_accept_socket_with_handle(http, lfd);
    PS_ASSERT(*bound != NULL);
    return http;
}

int server_start(const http_config *cfg, registry *reg, server **out)
{
    char bound[HOST_MAX + SERV_MAX + 4], ibound[HOST_MAX + SERV_MAX + 4] = "";
    int fd = listen_socket(cfg->listen, bound, sizeof bound), ifd = -1;
    if (fd < 0)
        return -1;
    if (cfg->ingest_listen && (ifd = listen_socket(cfg->ingest_listen, ibound, sizeof ibound)) < 0) {
        close(fd);
        return -1;
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
        ps_buf_init(&w->reply.body);
        w->buffer_cap = cfg->max_header_bytes + 2 * MAX_PARAMS + 16;
        w->path = ps_xmalloc(w->buffer_cap);
        w->query = ps_xmalloc(w->buffer_cap);
        w->ident = ps_xmalloc(w->buffer_cap);
        w->base = event_base_new();
        PS_ASSERT(w->base != NULL);
        pthread_mutex_init(&w->done_lock, NULL);
        w->done_ev = event_new(w->base, -1, 0, track_flush, w);
        PS_ASSERT(w->done_ev != NULL);
        w->http = listener(w, fd, handle, &w->bound);
        if (ifd >= 0)
            w->ingest_http = listener(w, ifd, handle_ingest, &w->ingest_bound);
    }
    close(fd);
    if (ifd >= 0)
        close(ifd);
    for (int i = 0; i < s->nworkers; i++)
        pthread_create(&s->workers[i].thread, NULL, run_worker, &s->workers[i]);
    if (ifd >= 0)
        ps_log(PS_LOG_INFO, "msg=listening listen=%s ingest_listen=%s threads=%d data=\"%s\"",
               bound, ibound, s->nworkers, cfg->data_dir);
    else
        ps_log(PS_LOG_INFO, "msg=listening listen=%s threads=%d data=\"%s\"", bound,
               s->nworkers, cfg->data_dir);
    *out = s;
    return 0;
}

static void stop_accepting(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    evhttp_del_accept_socket(w->http, w->bound);
    w->bound = NULL;
    if (w->ingest_http) {
        evhttp_del_accept_socket(w->ingest_http, w->ingest_bound);
        w->ingest_bound = NULL;
    }
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    struct timeval grace = {0, 300 * 1000}; /* replies already queued get written */
    event_base_loopexit(w->base, &grace);
}

void server_stop(server *s)
{
    struct timeval now = {0, 0};
    for (int i = 0; i < s->nworkers; i++)
        event_base_once(s->workers[i].base, -1, EV_TIMEOUT, stop_accepting, &s->workers[i],
                        &now);
    /* what was accepted is committed and answered before the loops end (DESIGN 5.1) */
    registry_stop_writers(s->reg);
    for (int i = 0; i < s->nworkers; i++)
        event_base_once(s->workers[i].base, -1, EV_TIMEOUT, stop_loop, &s->workers[i], &now);
    for (int i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        pthread_join(w->thread, NULL);
        track_flush(-1, 0, w); /* a commit that finished after the loop ended */
        if (w->ingest_http)
            evhttp_free(w->ingest_http);
        evhttp_free(w->http);
        event_free(w->done_ev);
        event_base_free(w->base);
        pthread_mutex_destroy(&w->done_lock);
        ps_buf_clear(&w->reply.body);
        free(w->path);
        free(w->query);
        free(w->ident);
    }
    free(s->workers);
    free(s);
}
