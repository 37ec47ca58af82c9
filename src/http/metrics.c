/* SPDX-License-Identifier: MIT */
/* metrics: request counters and latency histograms per route (relaxed atomics, no locks on
 * the request path), and per-space gauges read from the store when /metrics is scraped. */
#include "http_int.h"

#include <stdlib.h>
#include <string.h>

#include "ps/graph.h"
#include "ps/process.h"
#include "ps/store.h"
#include "ps/writer.h"

static const int statuses[METRIC_STATUSES] = {200, 400, 401, 404, 405, 413, 429, 500, 503, 0};
static const double bucket_ms[METRIC_BUCKETS] = {0.1, 0.25, 0.5, 1,   2.5,  5,   10,
                                                 25,  50,   100, 250, 1000, 5000};

const char *http_route_label(int route)
{
    if (route < PS_API__ROUTES)
        return ps_api_route_name((ps_api_route)route);
    switch (route) {
    case ROUTE_HEALTHZ: return "healthz";
    case ROUTE_METRICS: return "metrics";
    case ROUTE_TRACK: return "tracking_message";
    case ROUTE_BATCH: return "tracking_batch";
    case ROUTE_SETTINGS: return "tracking_settings";
    case ROUTE_UI: return "ui";
    default: return "other";
    }
}

void http_metrics_record(metrics *m, int route, int status, uint64_t elapsed_us)
{
    int si = 0;
    while (statuses[si] != 0 && statuses[si] != status)
        si++; /* the 0 slot collects every other status */
    int bi = 0;
    while (bi < METRIC_BUCKETS && (double)elapsed_us > bucket_ms[bi] * 1000.0)
        bi++;
    atomic_fetch_add_explicit(&m->requests[route][si], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency[route][bi], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_us_sum[route], elapsed_us, memory_order_relaxed);
}

void http_metrics_dropped(metrics *m, ps_drop why, uint64_t n)
{
    if (n && (unsigned)why < PS_DROP__COUNT)
        atomic_fetch_add_explicit(&m->dropped[why], n, memory_order_relaxed);
}

#define GAUGES 7 /* per-space gauges: `gauges` below */

typedef struct space_stats {
    const char *name;
    uint64_t values[GAUGES];
    uint64_t violations[PS_VIOL__COUNT];
    char filters[PS_FILTERS_MAX][PS_FILTER_NAME_MAX + 1];
    uint64_t filtered[PS_FILTERS_MAX];
    size_t nfilters;
    bool writing; /* the server's writer runs for it: `writer` holds its figures */
    ps_writer_stats writer;
} space_stats;

typedef struct stats_list {
    registry *reg;
    space_stats *items;
    size_t count;
} stats_list;

static const char *const gauges[GAUGES][2] = {
    {"profiled_profiles", "Canonical profiles."},
    {"profiled_identifiers", "Identifiers mapped to profiles."},
    {"profiled_merges", "Profiles merged into others, ever."},
    {"profiled_events_stored", "Track, page and screen events kept for the Profile API."},
    {"profiled_lmdb_map_bytes", "LMDB map size."},
    {"profiled_lmdb_used_bytes", "LMDB pages in use."},
    {"profiled_store_damaged", "1 once a read or write of the space met a page of its data file "
                               "that LMDB found damaged (the log says where); else 0."},
};

static void space_gauges(void *ud, ps_space *sp)
{
    stats_list *l = ud;
    ps_space_figures f;
    if (ps_space_figures_get(sp, &f) != PS_OK && !f.damaged)
        return;
    l->items = ps_xrealloc(l->items, (l->count + 1) * sizeof *l->items);
    space_stats *ss = &l->items[l->count++];
    memset(ss, 0, sizeof *ss);
    ss->name = ps_space_name(sp);
    uint64_t values[GAUGES] = {f.profiles,  f.identifiers, f.merges, f.events,
                               f.map_bytes, f.used_bytes,  f.damaged};
    memcpy(ss->values, values, sizeof values);
    for (int v = 1; v < PS_VIOL__COUNT; v++)
        ss->violations[v] = f.violations[v];
    ss->nfilters = ps_space_filter_hits(sp, ss->filters, ss->filtered);
    ps_writer *w = http_registry_writer_running(l->reg, sp);
    if ((ss->writing = w != NULL))
        ps_writer_stats_get(w, &ss->writer);
}

/* The standard process_* series (Prometheus client conventions). */
static void process_series(ps_buf *out)
{
    ps_process_figures p;
    if (!ps_process_get(&p))
        return;
    ps_buf_printf(out,
                  "# HELP process_cpu_seconds_total User and system CPU time spent, in seconds.\n"
                  "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
                  "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                  "# TYPE process_resident_memory_bytes gauge\n"
                  "process_resident_memory_bytes %llu\n"
                  "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                  "# TYPE process_virtual_memory_bytes gauge\n"
                  "process_virtual_memory_bytes %llu\n"
                  "# HELP process_open_fds Open file descriptors.\n"
                  "# TYPE process_open_fds gauge\nprocess_open_fds %llu\n"
                  "# HELP process_start_time_seconds Start time of the process since the epoch, "
                  "in seconds.\n# TYPE process_start_time_seconds gauge\n"
                  "process_start_time_seconds %.2f\n",
                  p.cpu_seconds, (unsigned long long)p.resident_bytes,
                  (unsigned long long)p.virtual_bytes, (unsigned long long)p.open_fds,
                  p.start_time_seconds);
    if (p.max_fds)
        ps_buf_printf(out,
                      "# HELP process_max_fds The most file descriptors the process may open.\n"
                      "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
                      (unsigned long long)p.max_fds);
}

/* The writer's histograms: messages per journal sync and per store commit, seconds per
 * journal sync and per store commit. */
typedef enum { H_SYNC_MESSAGES, H_COMMIT_MESSAGES, H_SYNC_SECONDS, H_COMMIT_SECONDS } writer_hist;

/* One per-space histogram from a writer's bucket counts. */
static void writer_histogram(ps_buf *out, const stats_list *l, const char *name, const char *help,
                             writer_hist h)
{
    bool seconds = h == H_SYNC_SECONDS || h == H_COMMIT_SECONDS;
    int n = seconds ? PS_WRITER_TIME_BUCKETS : PS_WRITER_GROUP_BUCKETS;
    ps_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < l->count; i++) {
        const space_stats *ss = &l->items[i];
        if (!ss->writing)
            continue;
        const ps_writer_stats *ws = &ss->writer;
        const uint64_t *b = h == H_SYNC_MESSAGES     ? ws->journal_groups
                            : h == H_COMMIT_MESSAGES ? ws->commits
                            : h == H_SYNC_SECONDS    ? ws->sync_times
                                                     : ws->commit_times;
        uint64_t cum = 0;
        for (int k = 0; k < n; k++) {
            cum += b[k];
            if (k == n - 1)
                ps_buf_printf(out, "%s_bucket{space=\"%s\",le=\"+Inf\"} %llu\n", name, ss->name,
                              (unsigned long long)cum);
            else if (seconds)
                ps_buf_printf(out, "%s_bucket{space=\"%s\",le=\"%g\"} %llu\n", name, ss->name,
                              ps_writer_time_bounds[k], (unsigned long long)cum);
            else
                ps_buf_printf(out, "%s_bucket{space=\"%s\",le=\"%u\"} %llu\n", name, ss->name,
                              ps_writer_group_bounds[k], (unsigned long long)cum);
        }
        if (seconds)
            ps_buf_printf(out, "%s_sum{space=\"%s\"} %.6f\n", name, ss->name,
                          (double)(h == H_SYNC_SECONDS ? ws->sync_us : ws->commit_us) / 1e6);
        else
            ps_buf_printf(out, "%s_sum{space=\"%s\"} %llu\n", name, ss->name,
                          (unsigned long long)(h == H_COMMIT_MESSAGES ? ws->commit_messages
                                                                      : ws->journal_messages));
        ps_buf_printf(out, "%s_count{space=\"%s\"} %llu\n", name, ss->name,
                      (unsigned long long)cum);
    }
}

void http_metrics_render(metrics *m, registry *reg, ps_buf *out)
{
    ps_buf_printf(out,
                  "# HELP profiled_build_info The version of this server; the value is always "
                  "1.\n# TYPE profiled_build_info gauge\nprofiled_build_info{version=\"%s\"} 1\n",
                  PS_VERSION);
    process_series(out);
    ps_buf_puts(out, "# HELP profiled_http_connections Open client connections, by event loop "
                     "(worker).\n# TYPE profiled_http_connections gauge\n");
    for (int i = 0; i < m->workers; i++)
        ps_buf_printf(out, "profiled_http_connections{worker=\"%d\"} %d\n", i,
                      atomic_load(&m->connections[i]));
    ps_buf_printf(out,
                  "# HELP profiled_http_body_bytes_reserved Memory reserved for request bodies "
                  "being received, in all and for those sent without credentials.\n"
                  "# TYPE profiled_http_body_bytes_reserved gauge\n"
                  "profiled_http_body_bytes_reserved{sender=\"any\"} %zu\n"
                  "profiled_http_body_bytes_reserved{sender=\"anonymous\"} %zu\n",
                  m->body_bytes ? atomic_load(m->body_bytes) : 0,
                  m->anonymous_body_bytes ? atomic_load(m->anonymous_body_bytes) : 0);
    ps_buf_printf(out,
                  "# HELP profiled_changes_polls_waiting Change-feed long polls waiting for "
                  "rows.\n# TYPE profiled_changes_polls_waiting gauge\n"
                  "profiled_changes_polls_waiting %d\n",
                  atomic_load(&m->polls_waiting));
    ps_buf_puts(out, "# HELP profiled_requests_total Requests answered, by route and status.\n"
                     "# TYPE profiled_requests_total counter\n");
    for (int r = 0; r < ROUTE__COUNT; r++)
        for (int si = 0; si < METRIC_STATUSES; si++) {
            uint64_t v = atomic_load_explicit(&m->requests[r][si], memory_order_relaxed);
            if (v == 0)
                continue;
            if (statuses[si])
                ps_buf_printf(out, "profiled_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                              http_route_label(r), statuses[si], (unsigned long long)v);
            else
                ps_buf_printf(out, "profiled_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                              http_route_label(r), (unsigned long long)v);
            if (statuses[si] == 0)
                break;
        }
    ps_buf_puts(out, "# HELP profiled_request_duration_seconds Time to answer a request.\n"
                     "# TYPE profiled_request_duration_seconds histogram\n");
    for (int r = 0; r < ROUTE__COUNT; r++) {
        uint64_t cum = 0;
        for (int b = 0; b <= METRIC_BUCKETS; b++) {
            cum += atomic_load_explicit(&m->latency[r][b], memory_order_relaxed);
            if (b < METRIC_BUCKETS)
                ps_buf_printf(out,
                              "profiled_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                              "%llu\n",
                              http_route_label(r), bucket_ms[b] / 1000.0, (unsigned long long)cum);
            else
                ps_buf_printf(out,
                              "profiled_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
                              "%llu\n",
                              http_route_label(r), (unsigned long long)cum);
        }
        uint64_t sum = atomic_load_explicit(&m->latency_us_sum[r], memory_order_relaxed);
        ps_buf_printf(out, "profiled_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
                      http_route_label(r), (double)sum / 1e6);
        ps_buf_printf(out, "profiled_request_duration_seconds_count{route=\"%s\"} %llu\n",
                      http_route_label(r), (unsigned long long)cum);
    }
    ps_buf_puts(out, "# HELP profiled_dropped_messages_total Tracking API messages refused "
                     "before resolution, by reason.\n"
                     "# TYPE profiled_dropped_messages_total counter\n");
    for (int d = 1; d < PS_DROP__COUNT; d++) {
        uint64_t v = atomic_load_explicit(&m->dropped[d], memory_order_relaxed);
        if (v)
            ps_buf_printf(out, "profiled_dropped_messages_total{reason=\"%s\"} %llu\n",
                          ps_drop_name((ps_drop)d), (unsigned long long)v);
    }
    if (reg == NULL)
        return; /* per-space series only where space names may be shown */
    stats_list l = {reg, NULL, 0};
    http_registry_each(reg, space_gauges, &l);
    for (int g = 0; g < GAUGES; g++) {
        ps_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g][0], gauges[g][1],
                      gauges[g][0]);
        for (size_t i = 0; i < l.count; i++)
            ps_buf_printf(out, "%s{space=\"%s\"} %llu\n", gauges[g][0], l.items[i].name,
                          (unsigned long long)l.items[i].values[g]);
    }
    ps_buf_puts(out, "# HELP profiled_merges_total Profiles merged into others, ever (the same "
                     "figure as the profiled_merges gauge, which stays for existing "
                     "dashboards).\n# TYPE profiled_merges_total counter\n");
    for (size_t i = 0; i < l.count; i++)
        ps_buf_printf(out, "profiled_merges_total{space=\"%s\"} %llu\n", l.items[i].name,
                      (unsigned long long)l.items[i].values[2]);
    static const char *const queue_series[3][2] = {
        {"profiled_writer_queued_payloads",
         "Tracking API payloads waiting for the journal (the writer's queue depth)."},
        {"profiled_writer_queued_bytes", "Bytes of the payloads waiting for the journal."},
        {"profiled_writer_backlog_bytes",
         "Bytes of acknowledged payloads waiting to be resolved into the store."},
    };
    for (int q = 0; q < 3; q++) {
        ps_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", queue_series[q][0],
                      queue_series[q][1], queue_series[q][0]);
        for (size_t i = 0; i < l.count; i++) {
            const space_stats *ss = &l.items[i];
            uint64_t v = q == 0   ? ss->writer.queued_payloads
                         : q == 1 ? ss->writer.queued_bytes
                                  : ss->writer.backlog_bytes;
            if (ss->writing)
                ps_buf_printf(out, "%s{space=\"%s\"} %llu\n", queue_series[q][0], ss->name,
                              (unsigned long long)v);
        }
    }
    static const char *const stream_series[3][2] = {
        {"profiled_stream_applied_sequence",
         "Replicated: the last sequence of the space's stream the store has applied."},
        {"profiled_stream_last_sequence", "Replicated: the stream's last sequence, as last seen."},
        {"profiled_stream_lag_messages",
         "Replicated: stream records not applied yet (last minus applied)."},
    };
    for (int q = 0; q < 3; q++) {
        bool any = false;
        for (size_t i = 0; i < l.count; i++) {
            const ps_writer_stats *ws = &l.items[i].writer;
            if (!l.items[i].writing || !ws->replicated)
                continue;
            if (!any)
                ps_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", stream_series[q][0],
                              stream_series[q][1], stream_series[q][0]);
            any = true;
            uint64_t v = q == 0   ? ws->stream_applied
                         : q == 1 ? ws->stream_last
                                  : ws->stream_last - ws->stream_applied;
            ps_buf_printf(out, "%s{space=\"%s\"} %llu\n", stream_series[q][0], l.items[i].name,
                          (unsigned long long)v);
        }
    }
    writer_histogram(out, &l, "profiled_journal_group_messages",
                     "Accepted messages per journal sync (the group commit that acknowledges "
                     "Tracking API requests).",
                     H_SYNC_MESSAGES);
    writer_histogram(out, &l, "profiled_store_commit_messages",
                     "Accepted messages per store transaction of the apply thread.",
                     H_COMMIT_MESSAGES);
    writer_histogram(out, &l, "profiled_journal_sync_seconds",
                     "Time to append and sync one journal group (local journal only); "
                     "acknowledgements wait for it.",
                     H_SYNC_SECONDS);
    writer_histogram(out, &l, "profiled_store_commit_seconds",
                     "Time of each store commit of the apply thread that succeeded at once; "
                     "long ones slow the journal syncs beside them.",
                     H_COMMIT_SECONDS);
    ps_buf_puts(out, "# HELP profiled_violations_total Identifiers events could not use, and "
                     "events with none, by reason (stored with the space; a rebuild restarts "
                     "them).\n# TYPE profiled_violations_total counter\n");
    for (size_t i = 0; i < l.count; i++)
        for (int v = 1; v < PS_VIOL__COUNT; v++)
            ps_buf_printf(out, "profiled_violations_total{space=\"%s\",reason=\"%s\"} %llu\n",
                          l.items[i].name, ps_violation_name((ps_violation)v),
                          (unsigned long long)l.items[i].violations[v]);
    ps_buf_puts(out, "# HELP profiled_filtered_messages_total Messages an event filter dropped "
                     "since the server opened the space, by filter.\n"
                     "# TYPE profiled_filtered_messages_total counter\n");
    for (size_t i = 0; i < l.count; i++)
        for (size_t f = 0; f < l.items[i].nfilters; f++)
            ps_buf_printf(
                out, "profiled_filtered_messages_total{space=\"%s\",filter=\"%s\"} %llu\n",
                l.items[i].name, l.items[i].filters[f], (unsigned long long)l.items[i].filtered[f]);
    free(l.items);
}

typedef struct health {
    registry *reg;
    bool spaces, connected;
    uint64_t lag, applied; /* the largest lag; the lowest applied sequence */
    size_t count;
    ps_buf detail;
} health;

static void space_health(void *ud, ps_space *sp)
{
    health *h = ud;
    ps_writer *w = http_registry_writer_running(h->reg, sp);
    ps_writer_stats ws;
    if (w == NULL)
        return;
    ps_writer_stats_get(w, &ws);
    if (!ws.replicated)
        return;
    uint64_t lag = ws.stream_last - ws.stream_applied;
    h->connected = h->connected && ws.stream_connected;
    if (lag > h->lag)
        h->lag = lag;
    if (h->count == 0 || ws.stream_applied < h->applied)
        h->applied = ws.stream_applied;
    if (h->spaces)
        ps_buf_printf(&h->detail,
                      "%s\"%s\":{\"applied\":%llu,\"last\":%llu,\"lag\":%llu,\"connected\":%s}",
                      h->count ? "," : "", ps_space_name(sp), (unsigned long long)ws.stream_applied,
                      (unsigned long long)ws.stream_last, (unsigned long long)lag,
                      ws.stream_connected ? "true" : "false");
    h->count++;
}

void http_health_render(registry *reg, bool replicated, bool spaces, ps_buf *out)
{
    if (!replicated) {
        ps_buf_puts(out, "{\"status\":\"ok\"}");
        return;
    }
    health h = {.reg = reg, .spaces = spaces, .connected = true};
    ps_buf_init(&h.detail);
    http_registry_each(reg, space_health, &h);
    /* reads are served either way; a node that cannot read its stream falls behind */
    ps_buf_printf(out,
                  "{\"status\":\"%s\",\"replication\":{\"connected\":%s,\"lag\":%llu,"
                  "\"applied\":%llu",
                  h.connected ? "ok" : "degraded", h.connected ? "true" : "false",
                  (unsigned long long)h.lag, (unsigned long long)h.applied);
    if (spaces) {
        ps_buf_puts(out, ",\"spaces\":{");
        ps_buf_append(out, h.detail.ptr, h.detail.len);
        ps_buf_puts(out, "}");
    }
    ps_buf_puts(out, "}}");
    ps_buf_clear(&h.detail);
}
