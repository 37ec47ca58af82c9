/* SPDX-License-Identifier: MIT */
/* profile_api: the Profile API's side of a worker (beside track.c, the Tracking API's): route
 * and authenticate a request, open its space, let the api service answer from one read
 * transaction, and park a change-feed long poll on the worker's loop until rows come. Also
 * /healthz and /metrics. */
#include "http_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "ps/clock.h"
#include "ps/log.h"
#include "ps/regulation.h"
#include "ps/text.h"

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
    atomic_fetch_sub(&w->srv->stats.polls_waiting, 1);
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
    atomic_fetch_add(&w->srv->stats.polls_waiting, 1);
    return true;
}

/* Stopping: every waiting poll is answered now (park_fire sees the server stopping), with
 * what it has. Worker thread. */
void http_profile_park_flush(worker *w)
{
    for (parked *p = w->parked; p; p = p->next)
        event_active(p->ev, EV_TIMEOUT, 0);
}

void http_profile_park_drop(worker *w)
{
    while (w->parked)
        unpark(w, w->parked);
}

/* Replicated: publishes the regulation record ps_api_serve() left in the body, and answers
 * with the id every node gives it (its stream sequence). Blocks for the stream's round trip:
 * regulations are rare. */
static void publish_regulation(ps_writer *wr, ps_api_reply *rep)
{
    uint64_t seq = 0;
    ps_status st =
        ps_writer_publish(wr, PS_REPL_REGULATION, (ps_slice){rep->body.ptr, rep->body.len}, &seq);
    ps_buf_reset(&rep->body);
    if (st != PS_OK) {
        ps_api_error(rep, 503, "unavailable",
                     "The regulation could not be stored in the space's stream (%s); nothing "
                     "was kept. Retry later.",
                     ps_status_str(st));
        return;
    }
    rep->position = seq;
    ps_buf_printf(&rep->body, "{\"data\":{\"regulateId\":\"reg_%016llx\"}}",
                  (unsigned long long)seq);
}

/* What a read waits for before its snapshot (ps_api_request.before_read). */
typedef struct read_wait {
    ps_writer *w;
    const char *space;
    uint64_t position; /* by_position: the stream sequence the client's writes reached */
    bool by_position;
} read_wait;

static bool wait_for_writes(void *ud, ps_api_reply *rep)
{
    read_wait *rw = ud;
    if (!rw->by_position) {
        if (!ps_writer_await(rw->w, READ_AWAIT_MS))
            ps_log(PS_LOG_WARN, "msg=\"read served before the store caught up\" space=%s",
                   rw->space);
        return true;
    }
    if (ps_writer_await_position(rw->w, rw->position, READ_AWAIT_MS))
        return true;
    ps_api_error(rep, 503, "not_caught_up",
                 "This node has not applied the stream up to sequence %llu yet; retry after the "
                 "Retry-After seconds, or ask another node.",
                 (unsigned long long)rw->position);
    rep->retry_after_s = 1;
    return false;
}

void http_profile_handle(http_req *rq, bool serves_profiles)
{
    worker *w = rq->w;
    server *s = w->srv;
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
    bool redirect;
    const http_ui_asset *ui = serves_profiles ? http_ui_route(path, &redirect) : NULL;
    if (ui) { /* the profile explorer: static files; the page asks the API with a token */
        route = ROUTE_UI;
        if (method != HTTP_GET && method != HTTP_HEAD) {
            allow = "GET";
            ps_api_error(rep, 405, "invalid_request_error", "Use GET on this route.");
        } else if (redirect) {
            rep->status = 308; /* to "/ui/", where the page's relative links resolve */
            ctype = "text/plain; charset=utf-8";
        } else {
            ps_buf_append(&rep->body, ui->data, ui->len);
            ctype = ui->content_type;
        }
        goto reply;
    }
    int operational = http_operational_route(path);
    if (operational >= 0) {
        route = operational;
        if (method != HTTP_GET && method != HTTP_HEAD) {
            allow = "GET";
            ps_api_error(rep, 405, "invalid_request_error", "Use GET on this route.");
        } else if (route == ROUTE_HEALTHZ) { /* per space only on the operators' listener */
            http_health_render(s->reg, s->cfg.writer.repl != NULL, rq->kind == LISTEN_METRICS,
                               &rep->body);
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
    int status = serves_profiles ? http_route_profile(path, rq->query, method, auth, alen, w->query,
                                                      w->ident, params, token, &rq2, &allow, &why)
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
     * journal's latest groups (docs/architecture.md, Tracking API write path). Replicated, a
     * client may have written through any node: it names the stream sequence its writes
     * reached with X-Stream-Sequence (docs/replication.md), and other reads do not queue
     * behind the stream's backlog. Either wait runs once the token is accepted. */
    ps_writer *running = sp ? http_registry_writer_running(s->reg, sp) : NULL;
    read_wait rw = {running, rq2.space_name, 0, false};
    size_t seq_len = 0;
    const char *seq_s = http_head_find(&rq->head, "X-Stream-Sequence", &seq_len);
    if (sp && rq->wait_until_ms == 0 && ps_writer_replicated(running) && seq_s) {
        if (!http_parse_u64(seq_s, seq_len, &rw.position)) {
            ps_api_error(rep, 400, "invalid_request_error",
                         "X-Stream-Sequence must be a stream sequence (a whole number).");
            goto reply;
        }
        rw.by_position = true;
    }
    if (sp && rq->wait_until_ms == 0 &&
        (rw.by_position || (!ps_writer_replicated(running) && !ps_writer_caught_up(running)))) {
        rq2.before_read = wait_for_writes;
        rq2.before_read_ud = &rw;
    }
    rq2.recheck = rq->wait_until_ms != 0;
    rq2.replicated = s->cfg.writer.repl != NULL; /* never a local write in a replicated
                                                  * space, even while its writer stops */
    ps_api_serve(sp, &rq2, rep);
    if (rep->publish_regulation) /* replicated: every node runs it at its place in the stream */
        publish_regulation(running, rep);
    if (rep->wait_ms > 0 && park(rq, rep->wait_ms))
        return;                     /* asked again later (park_fire) */
    if (sp && rep->import_queued) { /* the space's writer runs it in its stream */
        ps_writer *wr = http_registry_writer(s->reg, sp);
        if (wr)
            ps_writer_regulations(wr, 0);
    }
    if (sp && rq2.route == PS_API_REG_CREATE && rep->status == 200 && !rq2.replicated) {
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
        ps_log(PS_LOG_ERROR, "msg=\"request failed\" request_id=%s status=%d route=%s", rq->rid,
               rep->status,
               route < PS_API__ROUTES ? ps_api_route_name((ps_api_route)route) : "other");
    /* recorded first: a reply to a client that went away frees its connection, and rq in it */
    http_request_done(w, route, rep->status, &rq->t0);
    http_send_reply(rq, ctype, allow);
}
