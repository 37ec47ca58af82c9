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
#include "ps/source.h"
#include "ps/space.h"
#include "ps/writer.h"

struct evhttp_request;
struct event;

/* Server limits; all explicit so that a slow or hostile client cannot hold a worker. */
typedef struct http_config {
    const char *data_dir;
    const char *listen;       /* HOST:PORT; port 0 picks a free one */
    const char *ingest_listen; /* NULL: the Tracking API is served on `listen` */
    int threads;              /* event loops sharing the listener */
    int timeout_ms;           /* reading a request, writing a reply, idle keep-alive */
    size_t max_header_bytes;  /* request line and headers */
    size_t max_body_bytes;    /* request body */
    ps_writer_opts writer;    /* group commit of the Tracking API */
} http_config;

/* ---- registry: spaces opened on first use, kept open until shutdown ---- */
typedef struct registry registry;
/* `sources` (the write-key catalog) is borrowed; writers start with `wopts`. */
registry *registry_new(const char *data_dir, ps_sources *sources, const ps_writer_opts *wopts);
void registry_free(registry *r);
ps_sources *registry_sources(registry *r);
/* The writer of an open space, started on first use. NULL once writers are stopping. */
ps_writer *registry_writer(registry *r, ps_space *sp);
/* Drains and stops every writer: everything queued is committed and answered. */
void registry_stop_writers(registry *r);
/* The open space `name`, opening it when it exists on disk; NULL when there is none. The
 * result stays valid until registry_free(). Thread-safe. */
ps_space *registry_get(registry *r, const char *name);
/* Opens every space on disk (for /metrics) and visits the open ones. */
typedef void (*registry_fn)(void *ud, ps_space *sp);
void registry_each(registry *r, registry_fn fn, void *ud);

/* ---- metrics: lock-free counters, rendered in Prometheus text format ---- */
enum { ROUTE_HEALTHZ = PS_API__ROUTES, ROUTE_METRICS, ROUTE_TRACK, ROUTE_BATCH, ROUTE_OTHER,
       ROUTE__COUNT };
#define METRIC_BUCKETS 13 /* latency upper bounds, see metrics.c */
#define METRIC_STATUSES 12

typedef struct metrics {
    atomic_uint_fast64_t requests[ROUTE__COUNT][METRIC_STATUSES];
    atomic_uint_fast64_t latency[ROUTE__COUNT][METRIC_BUCKETS + 1];
    atomic_uint_fast64_t latency_us_sum[ROUTE__COUNT];
} metrics;

void metrics_record(metrics *m, int route, int status, uint64_t elapsed_us);
/* Appends the exposition text: request counters, latency histograms and, per open space,
 * profiles, identifiers, merges and LMDB map usage. */
void metrics_render(metrics *m, registry *reg, ps_buf *out);

/* ---- server ---- */
typedef struct server server;

/* A Tracking API request waiting for its group commit; owned by the worker. */
typedef struct pending pending;

typedef struct worker {
    server *srv;
    pthread_t thread;
    struct event_base *base;
    struct evhttp *http, *ingest_http; /* ingest_http only with --ingest-listen */
    struct evhttp_bound_socket *bound, *ingest_bound;
    uint32_t id;
    uint64_t requests;
    ps_api_reply reply;
    char *path, *query, *ident; /* per-request copies; each buffer_cap bytes */
    size_t buffer_cap;
    /* replies of committed Tracking API requests, handed over by writer threads */
    pthread_mutex_t done_lock;
    pending *done;
    struct event *done_ev;
} worker;

struct server {
    http_config cfg;
    registry *reg;
    metrics stats;
    worker *workers;
    int nworkers;
    uint32_t boot; /* random per process: Request-Ids differ across restarts */
    atomic_uint_fast64_t payloads; /* Tracking API payload sequence (generated messageIds) */
};

/* Shared by the Profile API and Tracking API handlers (server.c). */
void request_id(worker *w, char out[40]);
/* Sends w->reply with the standard headers. */
void send_reply(worker *w, struct evhttp_request *req, const char *content_type,
                const char *rid, const char *allow);
/* Records a finished request in the metrics. */
void request_done(worker *w, int route, int status, const struct timespec *t0);
/* Reads "Authorization: Basic base64(user:password)" into `user`: false when the header is
 * there but malformed; *len = 0 when there is none or it is not Basic and `only_basic` is
 * false. A missing ':' is tolerated (older Segment clients). */
bool basic_user(struct evhttp_request *req, bool only_basic, char *user, size_t cap,
                size_t *len);

/* ---- Tracking API (track.c) ---- */
/* The Tracking API route of `path` (ROUTE_TRACK or ROUTE_BATCH) with *type set, or -1. */
int track_route(const char *path, int *type);
/* Handles a Tracking API request; replies now or once its events are durable. */
void track_handle(worker *w, struct evhttp_request *req, int route, int type,
                  const char *rid, const struct timespec *t0);
/* Worker event: sends the replies of committed requests (runs on the worker thread). */
void track_flush(int fd, short what, void *arg);
/* Binds the listener and starts the worker threads. Logs the bound address. */
int server_start(const http_config *cfg, registry *reg, server **out);
/* Stops accepting, lets written replies drain, joins the workers and frees the server. */
void server_stop(server *s);

#endif
