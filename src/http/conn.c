/* SPDX-License-Identifier: MIT */
/* conn: client connections on a worker's event loop, and the HTTP/1.1 exchange on each: head,
 * body, handler, reply, then the next request (pipelined requests wait in the input buffer,
 * and a client that half-closes still gets every answer). Every resource an outsider can
 * hold is bounded here: connections per worker, bytes buffered per connection (read
 * watermarks), body bytes over the whole server (two budgets), and time (an absolute deadline
 * for each request, each reply and each idle connection; no per-byte restart). When accept()
 * fails for want of descriptors or memory, accepting pauses and resumes with a backoff. */
#include "http_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "ps/clock.h"
#include "ps/log.h"

#define LINGER_MS 2000         /* reading and dropping what a refused client still sends */
#define ACCEPT_PAUSE_MIN_MS 50 /* first pause after accept() ran out of descriptors */
#define ACCEPT_PAUSE_MAX_MS 1000
#define BODY_KEEP_BYTES 4096 /* a body buffer larger than this is freed after use */

typedef enum cstate {
    C_IDLE,     /* between requests: no byte of the next one yet */
    C_HEAD,     /* reading a head */
    C_BODY,     /* reading a body */
    C_HANDLING, /* inside the handler */
    C_WAIT,     /* the handler answers later (Tracking API commit) */
    C_WRITING,  /* the reply is being written */
    C_LINGER,   /* replied and half-closed; dropping input until the peer closes */
} cstate;

struct listener_ctx {
    worker *w;
    int kind; /* LISTEN_* */
    struct evconnlistener *lev;
};

struct conn {
    conn *prev, *next;
    worker *w;
    struct bufferevent *bev; /* the output; reading is `rev` into `in` */
    struct event *rev;
    struct evbuffer *in;
    size_t read_max;  /* read no more while `in` holds this much (0: no limit) */
    bool read_paused; /* a reply is being written: the next request waits */
    bool reading;     /* rev is added */
    struct event *timer;
    int kind;
    cstate state;
    bool peer_eof;    /* the client will send nothing more */
    bool close_after; /* close once the reply is written */
    bool dead;        /* the socket failed while a handler held the request */
    size_t searched;  /* head bytes already searched for the blank line */
    char *head;       /* the current request's head, NUL-terminated; NULL between requests */
    char *target;     /* its path and query, split and NUL-terminated */
    http_req req;
    ps_buf body;
    size_t body_max;
    size_t reserved, reserved_anonymous; /* taken from the server's body budgets */
    http_chunked chunk;
};

static void process(conn *c);

/* ---- budgets ---- */

static bool take(atomic_size_t *used, size_t n, size_t cap)
{
    size_t cur = atomic_load(used);
    do {
        if (n > cap || cur > cap - n)
            return false;
    } while (!atomic_compare_exchange_weak(used, &cur, cur + n));
    return true;
}

static void release_body(conn *c)
{
    server *s = c->w->srv;
    atomic_fetch_sub(&s->body_bytes, c->reserved);
    atomic_fetch_sub(&s->anonymous_body_bytes, c->reserved_anonymous);
    c->reserved = c->reserved_anonymous = 0;
    if (c->body.cap > BODY_KEEP_BYTES)
        ps_buf_clear(&c->body);
    else
        ps_buf_reset(&c->body);
}

/* ---- timers ---- */

static void arm(conn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* ---- reading ----
 * A connection reads with its own event, one recv() per readable socket: libevent's
 * bufferevent asks FIONREAD before each read, one more system call per request. The input
 * is bounded like a read watermark: no more is read while `in` holds read_max bytes, and
 * reading resumes as they are consumed (read_update from the buffer's callback). */

static void read_update(conn *c)
{
    bool want = !c->peer_eof && !c->read_paused && !c->dead &&
                (c->read_max == 0 || evbuffer_get_length(c->in) < c->read_max);
    if (want == c->reading)
        return;
    c->reading = want;
    if (want)
        event_add(c->rev, NULL);
    else
        event_del(c->rev);
}

static void read_limit(conn *c, size_t max)
{
    c->read_max = max;
    read_update(c);
}

static void on_input_change(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    (void)in;
    if (info->n_added || info->n_deleted) /* at the limit reading stops; below it, resumes */
        read_update(arg);
}

/* Runs on_readable from the event loop (a pipelined request, or a half-close to act on). */
static void read_later(conn *c)
{
    event_active(c->rev, EV_READ, 0);
}

/* ---- lifecycle ---- */

static void listeners_enable(worker *w, bool on)
{
    for (int i = 0; i < LISTEN__COUNT; i++)
        if (w->listeners[i])
            (on ? evconnlistener_enable : evconnlistener_disable)(w->listeners[i]->lev);
}

static bool may_accept(const worker *w)
{
    return !w->accept_paused && w->connections < w->max_connections &&
           !atomic_load(&w->srv->stopping);
}

static void conn_free(conn *c)
{
    worker *w = c->w;
    release_body(c);
    ps_buf_clear(&c->body);
    event_free(c->rev);
    evbuffer_free(c->in);
    bufferevent_free(c->bev);
    event_free(c->timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->head);
    free(c->target);
    free(c);
    atomic_fetch_sub(w->held, 1);
    bool was_full = w->connections-- == w->max_connections;
    if (was_full && may_accept(w))
        listeners_enable(w, true);
}

void http_conn_close_all(worker *w)
{
    while (w->conns)
        conn_free(w->conns);
}

/* Replied to a request whose body was not read: stop sending, drop what arrives for a
 * while, so that the client reads the reply instead of a reset. */
static void linger(conn *c)
{
    c->state = C_LINGER;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    c->read_paused = false;
    read_limit(c, 0);
    arm(c, LINGER_MS);
}

/* ---- replies ---- */

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 308: return "Permanent Redirect";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return status >= 500 ? "Internal Server Error" : "Error";
    }
}

bool http_conn_peer_gone(const http_req *rq)
{
    return rq->conn->dead || rq->conn->peer_eof;
}

#define REPLY_HANDOVER_BYTES 16384 /* below it, a copy costs less than an allocation */
#define REPLY_ROOM_MAX (1u << 20)  /* what the next reply starts with, at most */

static void free_reply(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    free(arg);
}

/* Writes what the output buffer holds while the socket takes it; true once it is all out.
 * What is left (the socket is full, or failed) goes through the write event: on_write, or
 * on_event for an error. */
static bool write_now(conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    evbuffer_unfreeze(out, 1); /* a socket bufferevent keeps its output's start frozen, and
                                * thaws it for its own writes the same way */
    while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
        ;
    evbuffer_freeze(out, 1);
    return evbuffer_get_length(out) == 0;
}

/* A reply is out: the connection waits for its next request. From http_conn_reply
 * (`in_reply`) the caller still holds the request, so a pipelined one is taken from the
 * event loop, not from here. */
static void idle_again(conn *c, bool in_reply)
{
    c->state = C_IDLE;
    free(c->head); /* an idle connection holds no request buffers */
    free(c->target);
    c->head = c->target = NULL;
    bufferevent_disable(c->bev, EV_WRITE); /* no write event until a reply waits again */
    arm(c, c->w->srv->cfg.timeout_ms);     /* idle keep-alive */
    c->read_paused = false;
    read_limit(c, c->w->srv->cfg.max_header_bytes); /* no epoll_ctl when reading is on */
    if (!in_reply)
        process(c); /* a pipelined request may be waiting */
    else if (evbuffer_get_length(c->in) > 0 || c->peer_eof)
        read_later(c);
}

void http_conn_reply(http_req *rq, int status, const char *headers, size_t headers_len,
                     ps_buf *body)
{
    size_t body_len = body->len;
    conn *c = rq->conn;
    if (c->dead) { /* the client went away while its request was handled */
        conn_free(c);
        return;
    }
    bool announced = rq->head.chunked || rq->head.content_length > 0;
    bool body_unread = c->state == C_BODY || (c->state == C_HEAD && announced);
    if (body_unread || !rq->head.keep_alive || atomic_load(&c->w->srv->stopping))
        c->close_after = true;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    /* the status line and the length without printf: every reply has them */
    char line[64 + 48];
    const char *why = reason(status);
    size_t wl = strlen(why), n = 0;
    PS_ASSERT(status >= 100 && status <= 999 && wl < 48);
    memcpy(line, "HTTP/1.", 7), n = 7;
    line[n++] = rq->head.minor_version == 0 ? '0' : '1';
    line[n++] = ' ';
    line[n++] = (char)('0' + status / 100);
    line[n++] = (char)('0' + status / 10 % 10);
    line[n++] = (char)('0' + status % 10);
    line[n++] = ' ';
    memcpy(line + n, why, wl), n += wl;
    memcpy(line + n, "\r\n", 2), n += 2;
    evbuffer_add(out, line, n);
    evbuffer_add(out, headers, headers_len);
    char digits[PS_U64_DEC_MAX];
    evbuffer_add(out, "Content-Length: ", 16);
    evbuffer_add(out, digits, ps_u64_dec(body_len, digits));
    evbuffer_add(out, "\r\n", 2);
    if (c->close_after)
        evbuffer_add(out, "Connection: close\r\n\r\n", 21);
    else if (rq->head.minor_version == 0)
        evbuffer_add(out, "Connection: keep-alive\r\n\r\n", 26);
    else
        evbuffer_add(out, "\r\n", 2);
    if (rq->head.method != HTTP_HEAD && body_len >= REPLY_HANDOVER_BYTES) {
        /* a large body is handed to the output buffer instead of copied; the caller's buffer
         * starts again with the same room */
        size_t cap = body->cap;
        if (evbuffer_add_reference(out, body->ptr, body_len, free_reply, body->ptr) == 0) {
            ps_buf_init(body);
            ps_buf_reserve(body, (cap < REPLY_ROOM_MAX ? cap : REPLY_ROOM_MAX) - 1);
        } else {
            evbuffer_add(out, body->ptr, body_len);
        }
    } else if (rq->head.method != HTTP_HEAD) {
        evbuffer_add(out, body->ptr, body_len);
    }
    release_body(c);
    c->state = C_WRITING;
    /* most replies fit in the socket's buffer: written here, they need no write event, and
     * reading never stops, so a request costs no epoll_ctl (four before: a tenth of a small
     * request's time on a virtual machine, where every system call is dear) */
    if (!c->close_after && write_now(c)) {
        idle_again(c, true);
        return;
    }
    c->read_paused = true; /* the next request waits until this one is out */
    read_update(c);
    bufferevent_enable(c->bev, EV_WRITE);
    arm(c, c->w->srv->cfg.timeout_ms);
}

/* An exchange that failed below the routes: reply and close. */
static void fail(conn *c, int status, const char *why)
{
    http_req *rq = &c->req;
    if (rq->rid[0] == 0) {
        http_request_id(c->w, rq->rid);
        clock_gettime(CLOCK_MONOTONIC, &rq->t0);
    }
    c->close_after = true;
    http_dispatch_error(rq, status, NULL, why);
}

/* ---- requests ---- */

static void begin_request(conn *c)
{
    free(c->head); /* the previous request's: replied and written */
    free(c->target);
    c->head = c->target = NULL;
    memset(&c->req, 0, sizeof c->req);
    c->req.conn = c;
    c->req.w = c->w;
    c->req.kind = c->kind;
    c->req.route = ROUTE_OTHER;
    c->req.head.minor_version = 1; /* until a request line says otherwise */
    memset(&c->chunk, 0, sizeof c->chunk);
    c->searched = 0;
}

/* Splits the request-target into NUL-terminated path and query copies. */
static bool split_target(conn *c)
{
    http_req *rq = &c->req;
    const char *t = rq->head.target;
    size_t len = rq->head.target_len;
    /* absolute-form (a request sent as to a proxy): keep the path of the URI */
    size_t scheme = len > 7 && strncasecmp(t, "http://", 7) == 0    ? 7
                    : len > 8 && strncasecmp(t, "https://", 8) == 0 ? 8
                                                                    : 0;
    if (scheme) {
        const char *p = memchr(t + scheme, '/', len - scheme);
        if (p == t + scheme)
            return false; /* no authority */
        if (p == NULL) {  /* http://host is the root */
            memcpy(c->target, "/", 2);
            rq->path = c->target;
            rq->query = NULL;
            return true;
        }
        len -= (size_t)(p - t);
        t = p;
    }
    if (t[0] != '/')
        return false;
    memcpy(c->target, t, len);
    c->target[len] = 0;
    char *hash = strchr(c->target, '#');
    if (hash)
        *hash = 0;
    char *q = strchr(c->target, '?');
    if (q)
        *q++ = 0;
    rq->path = c->target;
    rq->query = q;
    return true;
}

/* The head is complete at [0, end) of the input: parse it and decide about the body. */
static void start_request(conn *c, size_t end)
{
    server *s = c->w->srv;
    http_req *rq = &c->req;
    struct evbuffer *in = c->in;
    /* copies sized to this request: an idle connection holds no head buffers */
    c->head = ps_xmalloc(end + 1);
    c->target = ps_xmalloc(end + 1);
    evbuffer_remove(in, c->head, end);
    c->head[end] = 0;
    clock_gettime(CLOCK_MONOTONIC, &rq->t0);
    http_request_id(c->w, rq->rid);
    int status;
    const char *why;
    if (http_parse_head(c->head, end, &rq->head, &status, &why) <= 0) {
        rq->head.minor_version = 1;
        fail(c, status, why);
        return;
    }
    if (!split_target(c)) {
        fail(c, 400, "The request target must be a path starting with '/'.");
        return;
    }
    head_decision d = http_dispatch_head(rq);
    if (d.reply_now)
        return; /* replied; a body that was announced is never read */
    bool has_body = rq->head.chunked || rq->head.content_length > 0;
    c->body_max = d.max_body < s->cfg.max_body_bytes ? d.max_body : s->cfg.max_body_bytes;
    if (!has_body) {
        c->state = C_BODY;
        return;
    }
    if (!rq->head.chunked && rq->head.content_length > c->body_max) {
        fail(c, 413,
             c->body_max ? "The request body is over the limit of this route."
                         : "This route takes no request body.");
        return;
    }
    /* reserve the most this body can take, before a byte of it is buffered */
    size_t need = rq->head.chunked ? c->body_max : (size_t)rq->head.content_length;
    if (!take(&s->body_bytes, need, s->cfg.body_memory_bytes)) {
        fail(c, 503, "The server is receiving too many request bodies; retry later.");
        return;
    }
    c->reserved = need;
    if (d.anonymous) {
        if (!take(&s->anonymous_body_bytes, need, s->cfg.anonymous_body_bytes)) {
            fail(c, 503,
                 "The server is receiving too many request bodies without "
                 "credentials; send the write key as the Basic username, or retry later.");
            return;
        }
        c->reserved_anonymous = need;
    }
    if (!rq->head.chunked) { /* exactly the declared size: what was reserved is what is held */
        c->body.ptr = ps_xrealloc(c->body.ptr, need + 1);
        c->body.cap = need + 1;
    }
    if (rq->head.expect_continue && evbuffer_get_length(in) == 0) {
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        if (!write_now(c))
            bufferevent_enable(c->bev, EV_WRITE);
    }
    c->state = C_BODY;
}

/* Reads body bytes; true once the whole body is in c->body. */
static bool read_body(conn *c)
{
    http_req *rq = &c->req;
    struct evbuffer *in = c->in;
    size_t avail = evbuffer_get_length(in);
    if (!rq->head.chunked) {
        size_t want = (size_t)rq->head.content_length - c->body.len;
        size_t n = avail < want ? avail : want;
        if (n) {
            ps_buf_reserve(&c->body, n);
            evbuffer_remove(in, c->body.ptr + c->body.len, n);
            c->body.len += n;
        }
        return c->body.len == rq->head.content_length;
    }
    while (avail > 0) {
        size_t n = evbuffer_get_contiguous_space(in);
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
        bool done;
        int status;
        const char *why;
        long used = http_chunked_feed(&c->chunk, p, n, &c->body, c->body_max, &done, &status, &why);
        if (used < 0) {
            fail(c, status, why);
            return false;
        }
        evbuffer_drain(in, (size_t)used);
        avail -= (size_t)used;
        if (done)
            return true;
    }
    return false;
}

static void process(conn *c)
{
    const http_config *cfg = &c->w->srv->cfg;
    struct evbuffer *in = c->in;
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        switch (c->state) {
        case C_IDLE:
            while (avail >= 2) { /* an empty line before a request is ignored (RFC 9112) */
                const char *p = (const char *)evbuffer_pullup(in, 2);
                if (p[0] != '\r' || p[1] != '\n')
                    break;
                evbuffer_drain(in, 2);
                avail -= 2;
            }
            if (avail == 0) {
                if (c->peer_eof)
                    conn_free(c);
                return;
            }
            begin_request(c);
            c->state = C_HEAD;
            arm(c, cfg->timeout_ms); /* the whole request, from its first byte */
            continue;
        case C_HEAD: {
            size_t n = avail < cfg->max_header_bytes ? avail : cfg->max_header_bytes;
            const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
            size_t from = c->searched > 3 ? c->searched - 3 : 0;
            long end = http_head_end(p, n, from);
            if (end == 0) {
                c->searched = n;
                if (http_bare_lf(p, n, from))
                    fail(c, 400, "Header lines must end with CRLF.");
                else if (n >= cfg->max_header_bytes && memchr(p, '\n', n) == NULL)
                    fail(c, 414, "The request line is over the size limit.");
                else if (n >= cfg->max_header_bytes)
                    fail(c, 431, "The request line and headers are over the size limit.");
                else if (c->peer_eof)
                    conn_free(c); /* a partial request, and nothing more will come */
                return;
            }
            start_request(c, (size_t)end);
            if (c->state != C_BODY)
                return; /* replied */
            continue;
        }
        case C_BODY:
            if (!read_body(c)) {
                if (c->state == C_BODY && c->peer_eof)
                    conn_free(c);
                else if (c->state == C_BODY) /* room for the rest of the body, no more */
                    read_limit(c, (c->req.head.chunked ? c->body_max
                                                       : (size_t)c->req.head.content_length) -
                                      c->body.len + cfg->max_header_bytes);
                return;
            }
            c->req.body = c->body.ptr ? c->body.ptr : (const uint8_t *)"";
            c->req.body_len = c->body.len;
            c->state = C_HANDLING;
            evtimer_del(c->timer);
            http_dispatch_request(&c->req);
            if (c->state == C_HANDLING) { /* the handler answers later */
                c->state = C_WAIT;
                release_body(c); /* the handler kept its own copy */
                /* reading goes on, at most a head's worth (what a pipelining client sends
                 * waits for the answer), so that a client that leaves is seen (peer_eof) */
                read_limit(c, c->w->srv->cfg.max_header_bytes);
            }
            return;
        default: return;
        }
    }
}

/* ---- libevent callbacks ---- */

/* The socket failed, reading or writing. A connection whose request is being handled is freed
 * when the handler replies; until then it reads nothing (its socket may stay readable). */
static void conn_lost(conn *c)
{
    if (c->state == C_HANDLING || c->state == C_WAIT) {
        c->dead = true;
        read_update(c);
        return;
    }
    conn_free(c);
}

#define READ_CHUNK 65536 /* bytes asked of one recv() */

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    conn *c = arg;
    size_t have = evbuffer_get_length(c->in), room = READ_CHUNK;
    if (c->read_max && c->state != C_LINGER) { /* up to the limit */
        size_t left = have < c->read_max ? c->read_max - have : 0;
        room = left < room ? left : room;
    }
    if (c->peer_eof || c->dead)
        room = 0; /* called for what is buffered (read_later) */
    if (room > 0) {
        struct evbuffer_iovec v;
        ssize_t n = -1;
        if (evbuffer_reserve_space(c->in, (ev_ssize_t)room, &v, 1) == 1) {
            n = recv(fd, v.iov_base, room, 0);
            int err = errno;
            v.iov_len = n > 0 ? (size_t)n : 0;
            evbuffer_commit_space(c->in, &v, 1);
            errno = err;
        } else {
            errno = ENOMEM;
        }
        if (n == 0) { /* the client will send nothing more */
            c->peer_eof = true;
            read_update(c);
            if (c->state == C_LINGER)
                conn_free(c);
            else if (c->state == C_IDLE || c->state == C_HEAD || c->state == C_BODY)
                process(c); /* answer what was sent before the half-close */
            return;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_lost(c);
            return;
        }
    }
    if (c->state == C_LINGER) {
        evbuffer_drain(c->in, evbuffer_get_length(c->in));
        return;
    }
    process(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn *c = arg;
    if (c->state != C_WRITING) { /* a 100 Continue went out */
        bufferevent_disable(c->bev, EV_WRITE);
        return;
    }
    if (c->close_after) {
        if (evbuffer_get_length(c->in) > 0 || !c->peer_eof)
            linger(c);
        else
            conn_free(c);
        return;
    }
    idle_again(c, false);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what; /* writing failed (reading is on_readable's) */
    conn_lost(arg);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn *c = arg;
    switch (c->state) {
    case C_HEAD:
    case C_BODY: fail(c, 408, "The request was not received in time."); break;
    default: /* idle, a reply the client does not read, or lingering */ conn_free(c); break;
    }
}

/* ---- accepting ---- */

static void resume_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    w->accept_paused = false;
    if (may_accept(w))
        listeners_enable(w, true);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    (void)lev;
    listener_ctx *lc = arg;
    worker *w = lc->w;
    int err = errno;
    static const int pause_ms[] = {ACCEPT_PAUSE_MIN_MS, 200, 500, ACCEPT_PAUSE_MAX_MS};
    int64_t now = ps_clock_now_ms();
    w->accept_errors++;
    /* one line per second at most, however fast the errors come */
    if (now - w->last_accept_log_ms >= 1000) {
        ps_log(PS_LOG_WARN,
               "msg=\"accept failed, pausing new connections\" error=\"%s\" "
               "errors=%llu open=%d",
               strerror(err), (unsigned long long)w->accept_errors, w->connections);
        w->last_accept_log_ms = now;
        w->accept_errors = 0;
    }
    w->accept_paused = true;
    listeners_enable(w, false);
    size_t step = (size_t)w->accept_backoff; /* grows while accept() keeps failing */
    if (w->accept_backoff < 3)
        w->accept_backoff++;
    struct timeval tv = {0, pause_ms[step] * 1000};
    if (pause_ms[step] >= 1000)
        tv = (struct timeval){pause_ms[step] / 1000, 0};
    evtimer_add(w->resume_ev, &tv);
}

/* Serves `fd` on worker `w` (its thread), already counted in w->held. */
static void adopt(worker *w, evutil_socket_t fd, int kind)
{
    const http_config *cfg = &w->srv->cfg;
    conn *c = ps_xcalloc(1, sizeof *c);
    c->w = w;
    c->kind = kind;
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(w->base, on_timer, c);
    c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    c->in = evbuffer_new();
    if (c->bev == NULL || c->timer == NULL || c->rev == NULL || c->in == NULL) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->timer)
            event_free(c->timer);
        if (c->rev)
            event_free(c->rev);
        if (c->in)
            evbuffer_free(c->in);
        free(c);
        atomic_fetch_sub(w->held, 1);
        return;
    }
    evbuffer_add_cb(c->in, on_input_change, c);
    ps_buf_init(&c->body);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    if (++w->connections >= w->max_connections)
        listeners_enable(w, false);
    bufferevent_setcb(c->bev, NULL, on_write, on_event, c);
    /* a new bufferevent would write as soon as its output holds bytes (EV_WRITE is on): here
     * a reply is written by write_now, and the write event serves only what it leaves */
    bufferevent_disable(c->bev, EV_WRITE);
    c->state = C_IDLE;
    read_limit(c, cfg->max_header_bytes);
    arm(c, cfg->timeout_ms);
}

/* The worker a new connection should go to: the one holding the fewest, counting those on
 * their way to it, with room left; `w` (which accepted it) on a tie. The kernel wakes
 * whichever loop it likes for an accept, and keep-alive connections stay where they land:
 * without this, one loop was seen holding 6 or 7 of 8 connections while the other idled. */
static worker *least_held(worker *w)
{
    worker *best = w;
    int fewest = atomic_load(w->held);
    for (int i = 0; i < w->srv->nworkers; i++) {
        worker *o = &w->srv->workers[i];
        int n = atomic_load(o->held);
        if (n < fewest && n < o->max_connections) {
            best = o;
            fewest = n;
        }
    }
    return best;
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    (void)lev;
    (void)sa;
    (void)socklen;
    listener_ctx *lc = arg;
    worker *w = lc->w;
    if (w->connections >= w->max_connections || atomic_load(&w->srv->stopping)) {
        evutil_closesocket(fd);
        listeners_enable(w, false);
        return;
    }
    w->accept_backoff = 0; /* accept() works again */
    evutil_make_socket_closeonexec(fd);
    worker *to = least_held(w);
    atomic_fetch_add(to->held, 1);
    if (to == w) {
        adopt(w, fd, lc->kind);
        return;
    }
    pthread_mutex_lock(&to->handoff_lock);
    if (to->nhandoffs == to->handoff_cap) {
        to->handoff_cap = to->handoff_cap ? 2 * to->handoff_cap : 8;
        to->handoffs = ps_xrealloc(to->handoffs, to->handoff_cap * sizeof *to->handoffs);
    }
    to->handoffs[to->nhandoffs++] = (handoff){(int)fd, lc->kind};
    pthread_mutex_unlock(&to->handoff_lock);
    event_active(to->handoff_ev, EV_READ, 0); /* thread-safe: evthread_use_pthreads() */
}

/* Takes the connections handed to `w` so far; returns how many are in *out. */
static size_t take_handoffs(worker *w, handoff **out)
{
    pthread_mutex_lock(&w->handoff_lock);
    size_t n = w->nhandoffs;
    *out = w->handoffs;
    w->handoffs = NULL;
    w->nhandoffs = w->handoff_cap = 0;
    pthread_mutex_unlock(&w->handoff_lock);
    return n;
}

/* Closes a connection handed to `w` that it will not serve, and stops counting it. */
static void refuse_handoff(worker *w, const handoff *h)
{
    evutil_closesocket(h->fd);
    atomic_fetch_sub(w->held, 1);
}

void http_conn_adopt_handoffs(int fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    handoff *h;
    size_t n = take_handoffs(w, &h);
    for (size_t i = 0; i < n; i++) {
        if (w->connections >= w->max_connections || atomic_load(&w->srv->stopping))
            refuse_handoff(w, &h[i]); /* filled meanwhile, or stopping */
        else
            adopt(w, h[i].fd, h[i].kind);
    }
    free(h);
}

void http_conn_drop_handoffs(worker *w)
{
    handoff *h;
    size_t n = take_handoffs(w, &h);
    for (size_t i = 0; i < n; i++)
        refuse_handoff(w, &h[i]);
    free(h);
}

void http_conn_listen(worker *w, int fd, int kind)
{
    int lfd = dup(fd);
    PS_ASSERT(lfd >= 0);
    evutil_make_socket_nonblocking(lfd);
    evutil_make_socket_closeonexec(lfd);
    listener_ctx *lc = ps_xcalloc(1, sizeof *lc);
    lc->w = w;
    lc->kind = kind;
    lc->lev = evconnlistener_new(w->base, on_accept, lc, LEV_OPT_CLOSE_ON_FREE, -1, lfd);
    PS_ASSERT(lc->lev != NULL);
    evconnlistener_set_error_cb(lc->lev, on_accept_error);
    if (w->resume_ev == NULL)
        w->resume_ev = evtimer_new(w->base, resume_accept, w);
    w->listeners[kind] = lc;
}

void http_conn_listen_stop(worker *w)
{
    for (int i = 0; i < LISTEN__COUNT; i++)
        if (w->listeners[i]) {
            evconnlistener_free(w->listeners[i]->lev);
            free(w->listeners[i]);
            w->listeners[i] = NULL;
        }
    if (w->resume_ev) {
        event_free(w->resume_ev);
        w->resume_ev = NULL;
    }
}
