/* SPDX-License-Identifier: MIT */
/* track: the Segment Tracking API (docs/http-api.md). On the worker thread a request is
 * bounded, authenticated by its write key, parsed and validated (ps_ingest_prepare); the
 * accepted messages then go to the space's writer, and the reply waits until the commit
 * holding them is durable. The writer hands finished requests back through the worker's
 * `done` list and wakes its event loop; the reply is sent from the worker thread, as libevent
 * requires. */
#include "http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "ps/clock.h"
#include "ps/event.h"
#include "ps/ingest.h"
#include "ps/log.h"

#define RETRY_AFTER_S 1

struct pending {
    pending *next;
    http_req *rq; /* its connection stays open until the reply (conn.c) */
    ps_status status;
    uint64_t position; /* replicated: the stream sequence its messages reached */
    ps_buf body;       /* the 200 reply, rendered before the wait */
};

/* The error envelope: {"success":false,"error":{"code":..., "message":...}}. */
void http_track_error(ps_api_reply *rep, int status, const char *code, const char *message)
{
    rep->status = status;
    rep->retry_after_s = status == 503 ? RETRY_AFTER_S : 0;
    ps_buf_reset(&rep->body);
    ps_buf_printf(&rep->body, "{\"success\":false,\"error\":{\"code\":\"%s\",\"message\":", code);
    ps_buf_json_str(&rep->body, message, strlen(message));
    ps_buf_puts(&rep->body, "}}");
}

/* The error code of a drop: Segment's names where it has them, ours otherwise. */
static const char *drop_code(ps_drop why)
{
    switch (why) {
    case PS_DROP_TOO_LARGE: return "payload_too_large";
    case PS_DROP_INVALID_UTF8:
    case PS_DROP_TRAILING_DATA:
    case PS_DROP_CONTROL_CHARACTER:
    case PS_DROP_NUL_CHARACTER:
    case PS_DROP_TOO_DEEP: return "invalid_json"; /* the message says which rule */
    default: return ps_drop_name(why);
    }
}

/* 200 body: {"success":true}, plus the dropped items of a batch when there are any: their
 * count and the first PS_PREPARED_DROPS_LISTED, so the reply stays small whatever was sent. */
static void success_body(ps_buf *out, const ps_prepared *p)
{
    const ps_prepared_drop *drops;
    size_t n = ps_prepared_dropped(p, &drops);
    ps_buf_puts(out, "{\"success\":true");
    if (n > 0) {
        ps_buf_printf(out, ",\"accepted\":%zu,\"dropped_count\":%zu,\"dropped\":[",
                      ps_prepared_accepted(p), ps_prepared_dropped_total(p));
        for (size_t i = 0; i < n; i++) {
            char named[160];
            const char *msg = ps_drop_message(drops[i].why);
            if (drops[i].filter) {
                snprintf(named, sizeof named, "The message matched the space's event filter '%s'.",
                         drops[i].filter);
                msg = named;
            }
            ps_buf_printf(out, "%s{\"index\":%u,\"code\":\"%s\",\"message\":", i ? "," : "",
                          (unsigned)drops[i].index, drop_code(drops[i].why));
            ps_buf_json_str(out, msg, strlen(msg));
            if (drops[i].filter) {
                ps_buf_puts(out, ",\"filter\":");
                ps_buf_json_str(out, drops[i].filter, strlen(drops[i].filter));
            }
            ps_buf_puts(out, "}");
        }
        ps_buf_puts(out, "]");
    }
    ps_buf_puts(out, "}");
}

/* Writer thread: queue the finished request on its worker and wake the worker's loop. */
static void committed(void *ud, ps_status st, uint64_t position)
{
    pending *p = ud;
    worker *w = p->rq->w;
    p->status = st;
    p->position = position;
    pthread_mutex_lock(&w->done_lock);
    p->next = w->done;
    w->done = p;
    pthread_mutex_unlock(&w->done_lock);
    event_active(w->done_ev, EV_READ, 0); /* thread-safe: evthread_use_pthreads() */
}

void http_track_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    pthread_mutex_lock(&w->done_lock);
    pending *list = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&w->done_lock);
    while (list) {
        pending *p = list;
        list = p->next;
        ps_api_reply *rep = &w->reply;
        if (p->status == PS_OK) {
            http_reply_reset(w);
            rep->position = p->position;
            ps_buf_append(&rep->body, p->body.ptr, p->body.len);
        } else {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "The events could not be stored (%s); nothing of this "
                     "request was kept. Retry later.",
                     ps_status_str(p->status));
            http_track_error(rep, 503, "unavailable", msg);
        }
        http_req *rq = p->rq;
        http_request_done(w, rq->route, rep->status, &rq->t0);
        http_send_reply(rq, "application/json", NULL); /* or frees a connection that failed */
        ps_buf_clear(&p->body);
        free(p);
    }
}

/* The body limit of a Tracking API route. */
static size_t route_limit(const http_req *rq)
{
    return rq->route == ROUTE_BATCH ? PS_BATCH_MAX_BYTES : PS_MESSAGE_MAX_BYTES;
}

static head_decision reply_now(http_req *rq, const char *allow)
{
    worker *w = rq->w;
    if (w->reply.status >= 500)
        ps_log(PS_LOG_WARN, "msg=\"tracking request refused\" request_id=%s status=%d", rq->rid,
               w->reply.status);
    http_request_done(w, rq->route, w->reply.status, &rq->t0); /* before: the reply may free rq */
    http_send_reply(rq, "application/json", allow);
    return (head_decision){.reply_now = true};
}

/* Opens the space of rq->source; false with the reply set when it cannot. */
static bool open_space(http_req *rq, ps_space **sp)
{
    ps_api_reply *rep = &rq->w->reply;
    ps_status st = http_registry_get(rq->w->srv->reg, rq->source.space, sp);
    if (st == PS_ENOTFOUND) {
        http_track_error(rep, 400, "invalid_write_key", "The write key's space no longer exists.");
        return false;
    }
    if (st != PS_OK) { /* descriptors, memory, I/O: it may pass, so the SDK should retry */
        char msg[160];
        snprintf(msg, sizeof msg, "The space cannot be opened right now (%s); retry later.",
                 ps_status_str(st));
        http_track_error(rep, 503, "unavailable", msg);
        return false;
    }
    return true;
}

/* Checks the request's Origin header against rq->source's allow list; false with a 403 set
 * when the source does not take events from that web page. */
static bool origin_allowed(http_req *rq)
{
    size_t len;
    const char *origin = http_head_find(&rq->head, "Origin", &len);
    if (ps_source_origin_allowed(&rq->source, origin, len)) {
        if (origin != NULL && rq->source.origins[0] != 0) {
            rq->allowed_origin = origin;
            rq->allowed_origin_len = len;
        }
        return true;
    }
    http_track_error(&rq->w->reply, 403, "origin_not_allowed",
                     "This source does not take events from web pages at this Origin; its allow "
                     "list is set with profilectl source origins.");
    return false;
}

/* Looks up the write key and opens its space; false with the reply set when it cannot. */
static bool find_source(http_req *rq, const char *key, size_t klen, bool malformed, ps_space **sp)
{
    ps_api_reply *rep = &rq->w->reply;
    ps_status st = PS_EAUTH;
    if (!malformed && klen > 0)
        st = ps_source_find(http_registry_sources(rq->w->srv->reg), key, klen,
                            http_head_find(&rq->head, "Origin", &(size_t){0}) != NULL, &rq->source);
    if (st == PS_EAUTH || st == PS_ENOTFOUND) {
        http_track_error(rep, 400, "invalid_write_key",
                         malformed   ? "The Authorization header must be Basic base64(<writeKey>:)."
                         : klen == 0 ? "A write key is required: the Basic username, or writeKey "
                                       "in the body."
                                     : "The write key is not known.");
        return false;
    }
    if (st != PS_OK) {
        http_track_error(rep, 503, "unavailable",
                         "The write-key catalog cannot be read now; retry "
                         "later.");
        return false;
    }
    if (!origin_allowed(rq))
        return false;
    return open_space(rq, sp);
}

head_decision http_track_head(http_req *rq)
{
    ps_api_reply *rep = &rq->w->reply;
    size_t limit = route_limit(rq), len;
    rq->cors = true;                       /* browsers post from the web site's origin */
    if (rq->head.method == HTTP_OPTIONS) { /* a CORS preflight */
        rq->preflight = true;
        rep->status = 204;
        ps_buf_reset(&rep->body);
        return reply_now(rq, "POST, OPTIONS");
    }
    if (rq->head.method != HTTP_POST) {
        http_track_error(rep, 405, "method_not_allowed", "Use POST on the Tracking API.");
        return reply_now(rq, "POST");
    }
    const char *enc = http_head_find(&rq->head, "Content-Encoding", &len);
    if ((rq->coding = http_body_coding(enc, len)) < 0) {
        http_track_error(rep, 400, "unsupported_encoding",
                         "Content-Encoding must be gzip, deflate or identity.");
        return reply_now(rq, NULL);
    }
    if (!rq->head.chunked && rq->head.content_length > limit) {
        char msg[96];
        snprintf(msg, sizeof msg, "The body is %llu bytes; the limit here is %zu.",
                 (unsigned long long)rq->head.content_length, limit);
        /* Segment answers an oversized body 400; a compressed one that is already over the
         * limit before inflating gets the 413 an inflated one over it gets */
        http_track_error(rep, rq->coding == CODING_IDENTITY ? 400 : 413, "payload_too_large", msg);
        return reply_now(rq, NULL);
    }
    /* a write key in the Authorization header is checked before any body byte is read */
    const char *auth = http_head_find(&rq->head, "Authorization", &len);
    char key[PS_WRITE_KEY_MAX + 1];
    size_t klen;
    bool malformed = !http_basic_user(auth, len, false, key, sizeof key, &klen);
    if (malformed || klen > 0) {
        ps_space *sp;
        if (!find_source(rq, key, klen, malformed, &sp))
            return reply_now(rq, NULL);
        rq->has_source = true;
    }
    return (head_decision){.max_body = limit, .anonymous = !rq->has_source};
}

void http_track_handle(http_req *rq)
{
    worker *w = rq->w;
    server *s = w->srv;
    ps_api_reply *rep = &w->reply;
    bool batch = rq->route == ROUTE_BATCH;
    size_t len = rq->body_len;
    uint8_t *body = NULL;
    ps_prepared *prep = NULL;
    http_reply_reset(w);
    if (len == 0) {
        http_track_error(rep, 400, "invalid_json", "The body is empty; send a JSON object.");
        goto reply;
    }
    if (rq->coding != CODING_IDENTITY) { /* the size limits apply to the inflated bytes */
        const char *why;
        int status =
            http_body_inflate(rq->coding, rq->body, len, route_limit(rq), &body, &len, &why);
        if (status != 0) {
            http_track_error(rep, status,
                             status == 413   ? "payload_too_large"
                             : status == 400 ? "invalid_encoding"
                                             : "unavailable",
                             why);
            goto reply;
        }
    } else {
        body = ps_xmalloc(len);
        memcpy(body, rq->body, len);
    }
    ps_space *sp = NULL;
    if (!rq->has_source) {
        char key[PS_WRITE_KEY_MAX + 1];
        bool found = ps_event_write_key(body, len, key, sizeof key);
        if (!find_source(rq, key, found ? strlen(key) : 0, false, &sp))
            goto reply;
    } else if (!open_space(rq, &sp)) {
        goto reply;
    }
    ps_writer *wr = http_registry_writer(s->reg, sp);
    if (wr == NULL) {
        http_track_error(rep, 503, "unavailable",
                         "The server cannot take events now; retry later.");
        goto reply;
    }
    ps_prepare_opts po = {
        .source_id = rq->source.source_id,
        .forced_type = (ps_msg_type)rq->track_type,
        .require_batch = batch,
        .now_ms = ps_clock_now_ms(),
        .sequence = atomic_fetch_add(&s->payloads, 1),
        .portable_log = ps_writer_replicated(wr), /* other nodes decode what it publishes */
    };
    ps_prepare_refusal refusal;
    ps_status st = ps_ingest_prepare(sp, &po, body, len, &prep, &refusal);
    body = NULL; /* taken */
    if (st == PS_ELIMIT) {
        http_track_error(rep, 429, "rate_limit_error",
                         "Too many requests for this space; retry after the Retry-After seconds.");
        rep->retry_after_s = (refusal.retry_ms + 999) / 1000;
        goto reply;
    }
    if (st == PS_EINVAL || st == PS_ETOOBIG) {
        http_metrics_dropped(&s->stats, refusal.why, 1);
        http_track_error(rep, 400, drop_code(refusal.why), ps_drop_message(refusal.why));
        goto reply;
    }
    if (st != PS_OK) { /* the store's status, as opening a space names it */
        char msg[160];
        snprintf(msg, sizeof msg, "The space cannot be read now (%s); retry later.",
                 ps_status_str(st));
        http_track_error(rep, 503, "unavailable", msg);
        goto reply;
    }
    for (int d = 1; d < PS_DROP__COUNT && ps_prepared_dropped_total(prep); d++)
        http_metrics_dropped(&s->stats, (ps_drop)d, ps_prepared_dropped_by(prep, (ps_drop)d));
    const ps_prepared_drop *drops;
    if (!batch && ps_prepared_dropped(prep, &drops) > 0 && drops[0].why != PS_DROP_SUPPRESSED &&
        drops[0].why != PS_DROP_FILTERED) { /* a single call says why; a suppressed userId or
                                             * a filtered message is dropped quietly (200), as
                                             * Segment does */
        http_track_error(rep, 400, drop_code(drops[0].why), ps_drop_message(drops[0].why));
        goto reply;
    }
    if (ps_prepared_logged(prep) == 0) { /* nothing to store: answer now */
        http_reply_reset(w);
        success_body(&rep->body, prep);
        goto reply;
    }
    pending *p = ps_xcalloc(1, sizeof *p);
    ps_buf_init(&p->body);
    success_body(&p->body, prep);
    p->rq = rq;
    st = ps_writer_submit(wr, prep, committed, p);
    prep = NULL; /* taken */
    if (st == PS_OK)
        return; /* http_track_flush() replies */
    ps_buf_clear(&p->body);
    free(p);
    http_track_error(rep, 503, st == PS_EBUSY ? "queue_full" : "unavailable",
                     st == PS_EBUSY ? "Too many events are waiting to be stored; retry later."
                                    : "The server is shutting down; retry later.");
reply:
    free(body);
    ps_prepared_free(prep);
    reply_now(rq, NULL);
}

/* The host browsers should post to: --public-url (checked and without trailing slashes from
 * the start, main.c), else this request's Host header. */
static bool public_host(const http_req *rq, char *host, size_t cap, const char **protocol)
{
    const char *url = rq->w->srv->cfg.public_url;
    size_t len;
    const char *h;
    *protocol = "http";
    if (url) {
        if (strncmp(url, "https://", 8) == 0)
            *protocol = "https";
        h = strstr(url, "://") + 3;
        len = strlen(h);
    } else if ((h = http_head_find(&rq->head, "Host", &len)) == NULL ||
               !http_url_host_chars_ok(h, len)) {
        return false;
    }
    if (len == 0 || len + 4 > cap)
        return false;
    memcpy(host, h, len);
    memcpy(host + len, "/v1", 4);
    return true;
}

void http_track_settings(http_req *rq, const char *key)
{
    worker *w = rq->w;
    ps_api_reply *rep = &w->reply;
    char host[300];
    const char *protocol;
    http_reply_reset(w);
    if (rq->preflight) {
        rep->status = 204;
        reply_now(rq, "GET, OPTIONS");
        return;
    }
    if (rq->head.method != HTTP_GET && rq->head.method != HTTP_HEAD) {
        http_track_error(rep, 405, "method_not_allowed", "Use GET on this route.");
        reply_now(rq, "GET, OPTIONS");
        return;
    }
    ps_status st =
        ps_source_find(http_registry_sources(w->srv->reg), key, strlen(key),
                       http_head_find(&rq->head, "Origin", &(size_t){0}) != NULL, &rq->source);
    if (st == PS_EAUTH || st == PS_ENOTFOUND) {
        http_track_error(rep, 404, "not_found", "No source has this write key.");
    } else if (st != PS_OK) {
        http_track_error(rep, 503, "unavailable", "The write-key catalog cannot be read now.");
    } else if (!origin_allowed(rq)) {
        /* the 403 is set */
    } else if (!public_host(rq, host, sizeof host, &protocol)) {
        http_track_error(
            rep, 400, "invalid_request",
            "The Host header is missing or malformed; start profiled with --public-url.");
    } else {
        /* what analytics.js reads: its Segment.io destination pointed here, every call
         * enabled, nothing loaded from elsewhere, no metrics sent anywhere */
        ps_buf *b = &rep->body;
        ps_buf_puts(b, "{\"integrations\":{\"Segment.io\":{\"apiKey\":");
        ps_buf_json_str(b, key, strlen(key));
        ps_buf_puts(b, ",\"apiHost\":");
        ps_buf_json_str(b, host, strlen(host));
        ps_buf_printf(b,
                      ",\"protocol\":\"%s\",\"unbundledIntegrations\":[],"
                      "\"addBundledMetadata\":true,\"maybeBundledConfigIds\":{}}},"
                      "\"plan\":{\"track\":{\"__default\":{\"enabled\":true,"
                      "\"integrations\":{}}},\"identify\":{\"__default\":{\"enabled\":true}},"
                      "\"group\":{\"__default\":{\"enabled\":true}}},"
                      "\"edgeFunction\":{},\"analyticsNextEnabled\":true,"
                      "\"middlewareSettings\":{},\"enabledMiddleware\":{},"
                      "\"metrics\":{\"sampleRate\":0},\"legacyVideoPluginsEnabled\":false,"
                      "\"remotePlugins\":[]}",
                      protocol);
    }
    reply_now(rq, NULL);
}
