/* SPDX-License-Identifier: MIT */
/* http_int.h: shared inside src/http only. The server (listener, worker threads, routing,
 * replies), its space registry and its metrics. */
#ifndef PS_HTTP_INT_H
#define PS_HTTP_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/api.h"
#include "ps/space.h"

/* Server limits; all explicit so that a slow or hostile client cannot hold a worker. */
typedef struct http_config {
    const char *data_dir;
    const char *listen;       /* HOST:PORT; port 0 picks a free one */
    int threads;              /* event loops sharing the listener */
    int timeout_ms;           /* reading a request, writing a reply, idle keep-alive */
    size_t max_header_bytes;  /* request line and headers */
    size_t max_body_bytes;    /* request body */
} http_config;

/* ---- registry: spaces opened on first use, kept open until shutdown ---- */
typedef struct registry registry;
registry *registry_new(const char *data_dir);
void registry_free(registry *r);
/* The open space `name`, opening it when it exists on disk; NULL when there is none. The
 * result stays valid until registry_free(). Thread-safe. */
ps_space *registry_get(registry *r, const char *name);
/* Opens every space on disk (for /metrics) and visits the open ones. */
typedef void (*registry_fn)(void *ud, ps_space *sp);
void registry_each(registry *r, registry_fn fn, void *ud);

/* ---- metrics: lock-free counters, rendered in Prometheus text format ---- */
enum { ROUTE_HEALTHZ = PS_API__ROUTES, ROUTE_METRICS, ROUTE_OTHER, ROUTE__COUNT };
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
/* Binds the listener and starts the worker threads. Logs the bound address. */
int server_start(const http_config *cfg, registry *reg, server **out);
/* Stops accepting, lets written replies drain, joins the workers and frees the server. */
void server_stop(server *s);

#endif
