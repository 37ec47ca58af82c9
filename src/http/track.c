/* SPDX-License-Identifier: MIT */
/* track: the Segment Tracking API (SPEC 3, 18 Q30). On the worker thread a request is
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

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "ps/clock.h"
#include "ps/event.h"
#include "ps/ingest.h"
#include "ps/log.h"

#define RETRY_AFTER_S 1

struct pending {
    pending *next;
    worker *w;
    struct evhttp_request *req;
    int route;
    ps_status status;
    struct timespec t0;
    char rid[40];
    ps_buf body; /* the 200 reply, rendered before the wait */
};

static const struct {
    const char *name;
    ps_msg_type type;
} routes[] = {
    {"identify", PS_MSG_IDENTIFY}, {"i", PS_MSG_IDENTIFY}, {"track", PS_MSG_TRACK},
    {"t", PS_MSG_TRACK},           {"page", PS_MSG_PAGE},  {"p", PS_MSG_PAGE},
    {"screen", PS_MSG_SCREEN},     {"s", PS_MSG_SCREEN},   {"group", PS_MSG_GROUP},
    {"g", PS_MSG_GROUP},           {"alias", PS_MSG_ALIAS}, {"a", PS_MSG_ALIAS},
    {"batch", PS_MSG_NONE},        {"b", PS_MSG_NONE},     {"import", PS_MSG_NONE},
};

int track_route(const char *path, int *type)
{
    if (strncmp(path, "/v1/", 4) != 0)
        return -1;
    const char *name = path + 4;
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '/') /* some clients add a trailing slash */
        len--;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (strlen(routes[i].name) == len && memcmp(routes[i].name, name, len) == 0) {
            *type = (int)routes[i].type;
            return routes[i].type == PS_MSG_NONE ? ROUTE_BATCH : ROUTE_TRACK;
        }
    return -1;
}

/* Q30 error envelope: {"success":false,"error":{"code":..., "message":...}}. */
static void track_error(ps_api_reply *rep, int status, const char *code, const char *message)
{
    rep->status = status;
    rep->retry_after_s = status == 503 ? RETRY_AFTER_S : 0;
    ps_buf_reset(&rep->body);
    ps_buf_printf(&rep->body, "{\"success\":false,\"error\":{\"code\":\"%s\",\"message\":", code);
    ps_buf_json_str(&rep->body, message, strlen(message));
    ps_buf_puts(&rep->body, "}}");
}

/* The Q30 code of a drop: Segment's names where it has them, ours otherwise. */
static const char *drop_code(ps_drop why)
{
    switch (why) {
    case PS_DROP_TOO_LARGE: return "payload_too_large";
    case PS_DROP_INVALID_UTF8: return "invalid_json";
    default: return ps_drop_name(why);
    }
}

/* 200 body: {"success":true}, plus the dropped items of a batch when there are any. */
static void success_body(ps_buf *out, const ps_prepared *p)
{
    const ps_prepared_drop *drops;
    size_t n = ps_prepared_dropped(p, &drops);
    ps_buf_puts(out, "{\"success\":true");
    if (n > 0) {
        ps_buf_printf(out, ",\"accepted\":%zu,\"dropped\":[", ps_prepared_accepted(p));
        for (size_t i = 0; i < n; i++) {
            const char *msg = ps_drop_message(drops[i].why);
            ps_buf_printf(out, "%s{\"index\":%u,\"code\":\"%s\",\"message\":", i ? "," : "",
                          (unsigned)drops[i].index, drop_code(drops[i].why));
            ps_buf_json_str(out, msg, strlen(msg));
            ps_buf_puts(out, "}");
        }
        ps_buf_puts(out, "]");
    }
    ps_buf_puts(out, "}");
}

/* Writer thread: queue the finished request on its worker and wake the worker's loop. */
static void committed(void *ud, ps_status st)
{
    pending *p = ud;
    worker *w = p->w;
    p->status = st;
    pthread_mutex_lock(&w->done_lock);
    p->next = w->done;
    w->done = p;
    pthread_mutex_unlock(&w->done_lock);
    event_active(w->done_ev, EV_READ, 0); /* thread-safe: evthread_use_pthreads() */
}

void track_flush(evutil_socket_t fd, short what, void *arg)
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
            rep->status = 200;
            rep->retry_after_s = 0;
            ps_buf_reset(&rep->body);
            ps_buf_append(&rep->body, p->body.ptr, p->body.len);
        } else {
            char msg[160];
            snprintf(msg, sizeof msg, "The events could not be stored (%s); nothing of this "
                     "request was kept. Retry later.", ps_status_str(p->status));
            track_error(rep, 503, "unavailable", msg);
        }
        /* a client that hung up meanwhile: libevent frees the detached request here */
        send_reply(w, p->req, "application/json", p->rid, NULL);
        request_done(w, p->route, rep->status, &p->t0);
        ps_buf_clear(&p->body);
        free(p);
    }
}

/* Finds the request's write key: the Basic username, else "writeKey" in the body. */
static bool write_key(struct evhttp_request *req, const uint8_t *body, size_t len, char *key,
                      size_t cap, size_t *klen, bool *malformed)
{
    *malformed = !basic_user(req, false, key, cap, klen);
    if (*malformed)
        return false;
    if (*klen > 0)
        return true;
    if (!ps_event_write_key(body, len, key, cap))
        return false;
    *klen = strlen(key);
    return *klen > 0;
}

void track_handle(worker *w, struct evhttp_request *req, int route, int type, const char *rid,
                  const struct timespec *t0)
{
    server *s = w->srv;
    ps_api_reply *rep = &w->reply;
    bool batch = route == ROUTE_BATCH;
    const char *enc;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        track_error(rep, 405, "method_not_allowed", "Use POST on the Tracking API.");
        send_reply(w, req, "application/json", rid, "POST");
        request_done(w, route, rep->status, t0);
        return;
    }
    struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in), limit = batch ? PS_BATCH_MAX_BYTES
                                                        : PS_MESSAGE_MAX_BYTES;
    uint8_t *body = NULL;
    ps_prepared *prep = NULL;
    if ((enc = evhttp_find_header(headers, "Content-Encoding")) != NULL &&
        strcasecmp(enc, "identity") != 0) {
        track_error(rep, 400, "unsupported_encoding",
                    "Content-Encoding is not supported; send the JSON uncompressed.");
        goto reply;
    }
    if (len > limit) {
        char msg[96];
        snprintf(msg, sizeof msg, "The body is %zu bytes; the limit here is %zu.", len, limit);
        track_error(rep, 400, "payload_too_large", msg);
        goto reply;
    }
    if (len == 0) {
        track_error(rep, 400, "invalid_json", "The body is empty; send a JSON object.");
        goto reply;
    }
    body = ps_xmalloc(len);
    evbuffer_remove(in, body, len);

    char key[PS_WRITE_KEY_MAX + 1];
    size_t klen;
    bool malformed;
    ps_source_info src;
    ps_status st = PS_EAUTH;
    if (write_key(req, body, len, key, sizeof key, &klen, &malformed))
        st = ps_source_find(registry_sources(s->reg), key, klen, &src);
    if (st == PS_EAUTH) {
        track_error(rep, 400, "invalid_write_key",
                    malformed ? "The Authorization header must be Basic base64(<writeKey>:)."
                    : klen == 0 ? "A write key is required: the Basic username, or writeKey "
                                  "in the body."
                                : "The write key is not known.");
        goto reply;
    }
    ps_space *sp = st == PS_OK ? registry_get(s->reg, src.space) : NULL;
    if (st == PS_OK && sp == NULL) {
        track_error(rep, 400, "invalid_write_key", "The write key's space no longer exists.");
        goto reply;
    }
    ps_writer *wr = sp ? registry_writer(s->reg, sp) : NULL;
    if (wr == NULL) {
        track_error(rep, 503, "unavailable", "The server cannot take events now; retry later.");
        goto reply;
    }
    ps_prepare_opts po = {
        .source_id = src.source_id,
        .forced_type = (ps_msg_type)type,
        .require_batch = batch,
        .now_ms = ps_clock_now_ms(),
        .sequence = atomic_fetch_add(&s->payloads, 1),
    };
    ps_prepare_refusal refusal;
    st = ps_ingest_prepare(sp, &po, body, len, &prep, &refusal);
    body = NULL; /* taken */
    if (st == PS_ELIMIT) {
        track_error(rep, 429, "rate_limit_error",
                    "Too many requests for this space; retry after the Retry-After seconds.");
        rep->retry_after_s = (refusal.retry_ms + 999) / 1000;
        goto reply;
    }
    if (st == PS_EINVAL || st == PS_ETOOBIG) {
        track_error(rep, 400, drop_code(refusal.why), ps_drop_message(refusal.why));
        goto reply;
    }
    if (st != PS_OK) {
        track_error(rep, 503, "unavailable", "The space cannot be read now; retry later.");
        goto reply;
    }
    const ps_prepared_drop *drops;
    if (!batch && ps_prepared_dropped(prep, &drops) > 0) { /* Q30: a single call says why */
        track_error(rep, 400, drop_code(drops[0].why), ps_drop_message(drops[0].why));
        goto reply;
    }
    if (ps_prepared_accepted(prep) == 0) { /* nothing to store: answer now */
        rep->status = 200;
        ps_buf_reset(&rep->body);
        success_body(&rep->body, prep);
        goto reply;
    }
    pending *p = ps_xcalloc(1, sizeof *p);
    ps_buf_init(&p->body);
    success_body(&p->body, prep);
    p->w = w;
    p->req = req;
    p->route = route;
    p->t0 = *t0;
    snprintf(p->rid, sizeof p->rid, "%s", rid);
    st = ps_writer_submit(wr, prep, committed, p);
    prep = NULL; /* taken */
    if (st == PS_OK)
        return; /* track_flush() replies */
    ps_buf_clear(&p->body);
    free(p);
    track_error(rep, 503, st == PS_EBUSY ? "queue_full" : "unavailable",
                st == PS_EBUSY ? "Too many events are waiting to be stored; retry later."
                               : "The server is shutting down; retry later.");
reply:
    free(body);
    ps_prepared_free(prep);
    if (rep->status >= 500)
        ps_log(PS_LOG_WARN, "msg=\"tracking request refused\" request_id=%s status=%d", rid,
               rep->status);
    send_reply(w, req, "application/json", rid, NULL);
    request_done(w, route, rep->status, t0);
}
