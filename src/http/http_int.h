/* SPDX-License-Identifier: MIT */
/* http_int.h: shared inside src/http only. The server (listener, worker threads, routing,
 * replies), its space registry and its metrics. */
#ifndef PS_HTTP_INT_H
#define PS_HTTP_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>
#include <time.h>

#include "ps/api.h"
#include "ps/event.h"
#include "ps/source.h"
#include "ps/space.h"
#include "ps/writer.h"

struct event;
struct event_base;
struct evconnlistener;
struct bufferevent;

/* Server limits; all explicit so that a slow or hostile client cannot hold a worker or grow
 * the memory without bound. docs/security.md lists each with its flag. */
typedef struct http_config {
    const char *data_dir;
    const char *listen;          /* HOST:PORT; port 0 picks a free one */
    const char *ingest_listen;   /* NULL: the Tracking API is served on `listen` */
    const char *metrics_listen;  /* NULL: /metrics on `listen`, without per-space series */
    bool access_log;             /* a line per answered request (ps_log_access) */
    const char *public_url;      /* how browsers reach the Tracking API; NULL: from Host */
    int threads;                 /* event loops sharing the listener */
    int timeout_ms;              /* a whole request (head and body) from its first byte, a reply
                                  * from when it is queued, and an idle keep-alive connection */
    size_t max_header_bytes;     /* request line and headers */
    size_t max_body_bytes;       /* any request body, before the per-route limits */
    int max_connections;         /* open client connections, over all workers */
    size_t body_memory_bytes;    /* request bodies being received, over all connections */
    size_t anonymous_body_bytes; /* of which: bodies whose sender showed no credentials yet */
    ps_writer_opts writer;       /* group commit of the Tracking API */
} http_config;

/* ---- proto: HTTP/1.1 request framing (proto.c; pure, fuzzed by fuzz/fuzz_http.c) ---- */
enum {
    HTTP_OTHER = 0,
    HTTP_GET,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_OPTIONS,
    HTTP_PATCH
};
#define HTTP_HEADERS_MAX 64

typedef struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* without surrounding whitespace */
    size_t value_len;
} http_header;

/* A parsed request head. Pointers are into the bytes given to http_parse_head(). */
typedef struct http_head {
    int method; /* HTTP_GET, ...; HTTP_OTHER for any other token */
    const char *method_name;
    size_t method_len;
    const char *target; /* the raw request-target */
    size_t target_len;
    int minor_version; /* HTTP/1.0 or HTTP/1.1 */
    http_header headers[HTTP_HEADERS_MAX];
    size_t header_count;
    uint64_t content_length; /* 0 when absent */
    bool chunked;
    bool keep_alive;
    bool expect_continue;
} http_head;

/* Offset just past the blank line ending a head in buf[0, len), searching from `from` (a
 * caller that already searched a prefix passes its length minus 3); 0 when there is none. */
long http_head_end(const char *buf, size_t len, size_t from);
/* True when buf[from, len) has a line feed without its carriage return: such a head is never
 * complete here, so it is refused at once rather than at the deadline. */
bool http_bare_lf(const char *buf, size_t len, size_t from);
/* Parses a complete head. Returns its length (blank line included), 0 when `buf` holds no
 * complete head yet, or -1 with the status to answer (400, 417, 431, 501, 505) and a
 * sentence for people. */
long http_parse_head(const char *buf, size_t len, http_head *h, int *status, const char **why);
/* The name of HTTP_GET, ... ("OTHER" for HTTP_OTHER), and the method a name is. */
const char *http_method_name(int method);
int http_method_parse(const char *name);
/* The first header named `name` (case-insensitive), or NULL. */
const char *http_head_find(const http_head *h, const char *name, size_t *len);
/* A header's decimal number: digits only, at most 18 of them. */
bool http_parse_u64(const char *s, size_t len, uint64_t *out);

/* A chunked body decoder; zero it to start. */
typedef struct http_chunked {
    int state;
    uint64_t remaining;
    int digits;
    size_t line_len, trailer_bytes, trailer_line;
    uint8_t prev;
} http_chunked;
/* Decodes in[0, len) into `out`, which may not grow over `limit` bytes. Returns the bytes
 * consumed (*done once the last chunk and trailer are read) or -1 with a status and why. */
long http_chunked_feed(http_chunked *c, const uint8_t *in, size_t len, ps_buf *out, size_t limit,
                       bool *done, int *status, const char **why);

/* ---- registry: spaces opened on first use, kept open until shutdown ---- */
typedef struct registry registry;
/* `sources` (the write-key catalog) is borrowed; writers start with `wopts`. */
registry *http_registry_new(const char *data_dir, ps_sources *sources, const ps_writer_opts *wopts);
void http_registry_free(registry *r);
ps_sources *http_registry_sources(registry *r);
/* The writer of an open space, started on first use. NULL once writers are stopping. */
ps_writer *http_registry_writer(registry *r, ps_space *sp);
/* The space's writer when it runs, else NULL (starts none). */
ps_writer *http_registry_writer_running(registry *r, ps_space *sp);
/* How long a Profile API read waits for the store to take acknowledged writes. */
#define READ_AWAIT_MS 2000
/* Drains and stops every writer: everything queued is committed and answered. */
void http_registry_stop_writers(registry *r);
/* The open space `name`, opening it when it exists on disk. PS_ENOTFOUND when there is none;
 * another status when opening failed for a reason that may pass (descriptors or memory
 * exhausted, an I/O error): callers answer those with 503, never as "no such space". *out
 * stays valid until http_registry_free(). Thread-safe. */
ps_status http_registry_get(registry *r, const char *name, ps_space **out);
/* Opens every space on disk (for /metrics) and visits the open ones. */
typedef void (*registry_fn)(void *ud, ps_space *sp);
void http_registry_each(registry *r, registry_fn fn, void *ud);

/* ---- metrics: lock-free counters, rendered in Prometheus text format ---- */
enum {
    ROUTE_HEALTHZ = PS_API__ROUTES,
    ROUTE_METRICS,
    ROUTE_TRACK,
    ROUTE_BATCH,
    ROUTE_SETTINGS, /* GET /v1/projects/{writeKey}/settings (analytics.js) */
    ROUTE_UI,       /* GET /ui/...: the profile explorer's files */
    ROUTE_OTHER,
    ROUTE__COUNT
};
#define METRIC_BUCKETS 13 /* latency upper bounds, see metrics.c */
#define METRIC_STATUSES 12

typedef struct metrics {
    atomic_uint_fast64_t requests[ROUTE__COUNT][METRIC_STATUSES];
    atomic_uint_fast64_t latency[ROUTE__COUNT][METRIC_BUCKETS + 1];
    atomic_uint_fast64_t latency_us_sum[ROUTE__COUNT];
    atomic_uint_fast64_t dropped[PS_DROP__COUNT]; /* Tracking API messages refused, by reason */
    atomic_int *connections; /* per worker: its open connections and those handed to it */
    int workers;
    atomic_int polls_waiting;                  /* change-feed long polls parked on the loops */
    const atomic_size_t *body_bytes;           /* the server's: reserved by bodies being received */
    const atomic_size_t *anonymous_body_bytes; /* of which: bodies sent without credentials */
} metrics;

void http_metrics_record(metrics *m, int route, int status, uint64_t elapsed_us);
/* Counts `n` Tracking API messages dropped for `why`. */
void http_metrics_dropped(metrics *m, ps_drop why, uint64_t n);
/* Appends the exposition text: request counters, latency histograms and, when `reg` is not
 * NULL, per space: profiles, identifiers, merges and LMDB map usage. */
void http_metrics_render(metrics *m, registry *reg, ps_buf *out);
/* The /healthz body: {"status":"ok"}, and when `replicated` how far the stream is applied
 * (the largest lag of any space; each space's figures when `spaces`). */
void http_health_render(registry *reg, bool replicated, bool spaces, ps_buf *out);
/* The route's name in /metrics and the access log ("traits", "tracking_batch", ...). */
const char *http_route_label(int route);

/* ---- server ---- */
/* The listeners: the main one (both APIs, or only the Profile API when the Tracking API has
 * its own), the Tracking API's own, and the operators' metrics listener. */
enum { LISTEN_MAIN, LISTEN_INGEST, LISTEN_METRICS, LISTEN__COUNT };

typedef struct server server;
typedef struct listener_ctx listener_ctx;
typedef struct worker worker;
typedef struct conn conn;

/* A Tracking API request waiting for its group commit; owned by the worker. */
typedef struct pending pending;

/* A connection accepted by one worker for another, which holds fewer. */
typedef struct handoff {
    int fd;
    int kind;
} handoff;

/* The request a connection is serving (one at a time: pipelined requests wait their turn).
 * Everything here is valid until its reply has been sent. */
typedef struct http_req {
    conn *conn;
    worker *w;
    http_head head;
    const char *path;  /* raw path and query, NUL-terminated copies */
    const char *query; /* NULL when there is none */
    const uint8_t *body;
    size_t body_len;
    int route;       /* ROUTE_* or a ps_api_route */
    int track_type;  /* Tracking API: the forced message type */
    int coding;      /* CODING_*: the body's Content-Encoding (Tracking API) */
    int kind;        /* LISTEN_*: the listener it arrived on */
    bool has_source; /* the write key was checked from the Authorization header */
    bool cors;       /* a browser-facing route: replies carry Access-Control-Allow-Origin */
    bool preflight;  /* an OPTIONS preflight: the reply carries the CORS permissions */
    const char *allowed_origin; /* the source lists origins and this Origin header is on it: */
    size_t allowed_origin_len;  /* replies name it rather than "*" (NULL: not so) */
    ps_source_info source;
    struct timespec t0;
    char rid[40];
    int64_t wait_until_ms; /* a change-feed long poll: answer by then (0: not waiting) */
    bool answer_now;       /* answered while its head is read (a body no route reads): the
                            * connection is not waiting for it, so it is never parked */
} http_req;

/* What to do once a head is read: read a body of at most `max_body` bytes and then call the
 * handler, or (reply_now) the reply in w->reply has been prepared and is sent at once. */
typedef struct head_decision {
    bool reply_now;
    size_t max_body;
    bool anonymous; /* the body is needed to learn who sends it (writeKey in the body) */
} head_decision;

struct worker {
    server *srv;
    pthread_t thread;
    struct event_base *base;
    listener_ctx *listeners[LISTEN__COUNT]; /* NULL for those not configured */
    struct event *resume_ev;                /* re-enables accepting after descriptors ran out */
    uint32_t id;
    uint64_t requests;
    ps_api_reply reply;
    char *query, *ident, *path; /* per-request decoding buffers; each buffer_cap bytes */
    size_t buffer_cap;
    int connections, max_connections; /* open here; this worker's share of the cap */
    atomic_int *held;                 /* connections, and those being handed over to this worker */
    bool accept_paused;
    conn *conns; /* every open connection, for shutdown */
    int64_t last_accept_log_ms;
    uint64_t accept_errors; /* since the last log line */
    int accept_backoff;     /* index of the next pause; 0 after a successful accept */
    /* replies of committed Tracking API requests, handed over by writer threads */
    pthread_mutex_t done_lock;
    pending *done;
    struct parked *parked; /* change-feed long polls waiting for new rows */
    struct event *done_ev;
    /* connections other workers accepted for this one (http_conn_adopt_handoffs) */
    pthread_mutex_t handoff_lock;
    handoff *handoffs;
    size_t nhandoffs, handoff_cap;
    struct event *handoff_ev;
};

struct server {
    http_config cfg;
    registry *reg;
    metrics stats;
    worker *workers;
    int nworkers;
    uint32_t boot;                 /* random per process: Request-Ids differ across restarts */
    atomic_uint_fast64_t payloads; /* Tracking API payload sequence (generated messageIds) */
    atomic_size_t body_bytes, anonymous_body_bytes; /* reserved by bodies being received */
    atomic_bool stopping;
};

/* ---- conn: connections and HTTP/1.1 exchanges on a worker's loop (conn.c) ---- */
/* Accepts on `fd` (the listener keeps a dup) into worker `w` as listener `kind`. */
void http_conn_listen(worker *w, int fd, int kind);
/* Stops accepting and frees the worker's listeners (worker thread, or after its loop ended). */
void http_conn_listen_stop(worker *w);
/* The handoff event's callback: opens the connections other workers handed to `arg`. */
void http_conn_adopt_handoffs(int fd, short what, void *arg);
/* Closes the handed-over connections a stopped worker did not open. */
void http_conn_drop_handoffs(worker *w);
/* Sends `body` with status `status` and the header lines in `headers` (each "Name: value\r\n")
 * as the reply to `rq`; then the connection reads the next request or closes. A large body's
 * memory is handed to the connection (`body` is left empty, with the same room). Worker thread
 * only. After it returns nothing of `rq` may be read: the head it points into is freed once
 * the reply is written, and the whole connection when its client had gone (record the
 * request first, as http_send_reply's callers do). */
void http_conn_reply(http_req *rq, int status, const char *headers, size_t headers_len,
                     ps_buf *body);
/* Whether the client of a request answered later has closed its side (or failed): a long
 * poll then answers at once. */
bool http_conn_peer_gone(const http_req *rq);
/* Closes every connection of the worker (shutdown, after the loop stopped). */
void http_conn_close_all(worker *w);

/* ---- route: request decoding without I/O (route.c; fuzzed by fuzz/fuzz_http.c) ---- */
#define MAX_PARAMS 32
#define MAX_SEGMENTS 10
#define MAX_DELETE_BODY (32 * 1024)
#define MAX_REGULATION_BODY (4 * 1024 * 1024) /* 5000 userIds of up to 400 bytes, escaped */
#define MAX_FILTER_BODY (16 * 1024)           /* a name and a query of up to 4 KiB, escaped */
#define MAX_AUTH_BYTES 1024
/* Decodes a Profile API request: the route of `path` (split in place), the method, the query
 * parameters (into `params`, their text in `query_store`), the percent-decoded identifier
 * (into `ident_store`; both stores hold at least strlen(path or query) + 2 * MAX_PARAMS + 16
 * bytes) and the Basic token (into `token`, MAX_AUTH_BYTES). Returns 0 with `out` filled, or
 * the status to answer (400, 401, 404, 405) with *why, and *allow for 405. */
int http_route_profile(char *path, const char *query, int method, const char *auth, size_t auth_len,
                       char *query_store, char *ident_store, ps_api_param *params, char *token,
                       ps_api_request *out, const char **allow, const char **why);

/* The Profile API route that `method` on `path` names, or -1 when none takes that method. The
 * path is split in a copy in `scratch` (strlen(path) + 1 bytes). For the decisions made
 * before a body is read. */
int http_route_of_request(const char *path, int method, char *scratch);
/* ROUTE_HEALTHZ or ROUTE_METRICS for their paths, else -1. */
int http_operational_route(const char *path);

/* The profile explorer's files (src/http/ui, built into the server). */
typedef struct http_ui_asset {
    const char *name, *content_type;
    const unsigned char *data;
    size_t len;
} http_ui_asset;
extern const http_ui_asset http_ui_assets[];
extern const size_t http_ui_asset_count;
/* The asset `path` names ("/ui/" is index.html), NULL for none; *redirect is set for "/ui",
 * which must become "/ui/" so that the page's relative links resolve. */
const http_ui_asset *http_ui_route(const char *path, bool *redirect);

/* Every route the server serves, with its main method and path template ({space},
 * {collection}, {ident}, {id}, {name}, {writeKey}): what `profiled --routes` prints and the
 * OpenAPI file must match (tests/integration/test_openapi.py). GET routes answer HEAD too,
 * and the Tracking API's OPTIONS (CORS preflights). */
typedef struct http_route_entry {
    const char *method, *path;
    int route; /* a ps_api_route, ROUTE_TRACK, ROUTE_BATCH, ROUTE_SETTINGS, ROUTE_HEALTHZ... */
} http_route_entry;
extern const http_route_entry http_routes[];
extern const size_t http_route_count;
/* Whether the routers send a request for `e` (its template filled in) to e->route; false
 * with `why` set otherwise. */
bool http_route_entry_check(const http_route_entry *e, char *why, size_t cap);

/* ---- inflate: compressed request bodies (inflate.c; the only user of zlib) ---- */
enum { CODING_IDENTITY = 0, CODING_GZIP, CODING_DEFLATE };
/* The coding named by a Content-Encoding value (NULL: identity), or -1 when unsupported. */
int http_body_coding(const char *value, size_t len);
/* Decompresses `in` into an owned buffer (*out, free with free()) of at most `limit` bytes.
 * Returns 0, 413 when the output would exceed `limit` (after at most limit + 1 bytes of
 * output), 400 for a corrupt stream, or 503; *why says which. */
int http_body_inflate(int coding, const uint8_t *in, size_t len, size_t limit, uint8_t **out,
                      size_t *out_len, const char **why);

/* ---- dispatch (server.c) ---- */
/* Phase 1, the head is read: route the request, check what can be checked before the body,
 * and decide how much body to take. */
head_decision http_dispatch_head(http_req *rq);
/* Phase 2, the body is read: answer now (http_conn_reply) or later (the Tracking API). */
void http_dispatch_request(http_req *rq);
/* Answers an exchange that failed below the routes (framing, limits, time) with the JSON
 * error envelope of the listener's API and `Connection: close`. */
void http_dispatch_error(http_req *rq, int status, const char *code, const char *message);
/* profile_api.c: answers a request that is not the Tracking API's (`serves_profiles`: its
 * listener serves the Profile API; else only /healthz and /metrics are there). */
void http_profile_handle(http_req *rq, bool serves_profiles);
/* Stopping: every parked long poll is answered now. Worker thread. */
void http_profile_park_flush(worker *w);
/* After the worker's loop ended: forgets the polls it did not answer (their connections are
 * closed with the rest). */
void http_profile_park_drop(worker *w);

void http_request_id(worker *w, char out[40]);
/* Empties w->reply (status 200, no Retry-After, no body) for the next answer. */
void http_reply_reset(worker *w);
/* Sends w->reply for `rq` with the standard headers; `rq` is not to be read after it
 * (http_conn_reply). */
void http_send_reply(http_req *rq, const char *content_type, const char *allow);
/* Records a finished request in the metrics. */
void http_request_done(worker *w, int route, int status, const struct timespec *t0);
/* Reads the value of an "Authorization: Basic base64(user:password)" header (route.c) into
 * `user`:
 * false when it is malformed; *len = 0 when there is none or (only_basic false) it is not
 * Basic. A missing ':' is tolerated (older Segment clients). */
bool http_basic_user(const char *header, size_t header_len, bool only_basic, char *user, size_t cap,
                     size_t *len);

/* ---- Tracking API (track.c) ---- */
/* The Tracking API route of `path` (ROUTE_TRACK or ROUTE_BATCH) with *type set, or -1. */
int http_track_route(const char *path, int *type);
/* True when `path` is /v1/projects/{writeKey}/settings; the key (percent-decoded, at most
 * `cap` - 1 bytes) goes to `key`. */
bool http_track_settings_route(const char *path, char *key, size_t cap);
/* True when s[0..len) is made of the characters of host[:port][/path] (letters, digits and
 * ".-:[]/_~"): what a Host header or --public-url may put into a settings document. */
bool http_url_host_chars_ok(const char *s, size_t len);
/* Answers GET /v1/projects/{writeKey}/settings for `key` (from http_track_settings_route()): the
 * settings document analytics.js loads. */
void http_track_settings(http_req *rq, const char *key);
/* Phase 1 for the Tracking API: method, size and (when sent as Basic) the write key. */
head_decision http_track_head(http_req *rq);
/* Handles a Tracking API request; replies now or once its events are durable. */
void http_track_handle(http_req *rq);
/* Worker event: sends the replies of committed requests (runs on the worker thread). */
void http_track_flush(int fd, short what, void *arg);
/* Formats the Tracking API's error envelope into `rep`. */
void http_track_error(ps_api_reply *rep, int status, const char *code, const char *message);

/* Binds the listener and starts the worker threads. Logs the bound address. */
int http_server_start(const http_config *cfg, registry *reg, server **out);
/* Stops accepting, lets written replies drain, joins the workers and frees the server. */
void http_server_stop(server *s);

#endif
