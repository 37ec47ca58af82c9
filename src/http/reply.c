/* SPDX-License-Identifier: MIT */
/* reply: what both APIs share around an exchange: request ids, the reply's status line and
 * headers (CORS, Retry-After), and the per-route timing that /metrics reports. */
#include "http_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ps/clock.h"
#include "ps/log.h"

/* One access-log line: never the path or query, which may name people. */
static void access_line(const http_req *rq, int status, size_t bytes)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms =
        (double)(t1.tv_sec - rq->t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - rq->t0.tv_nsec) / 1e6;
    ps_log_access("msg=request request_id=%s method=%s route=%s status=%d bytes=%zu "
                  "duration_ms=%.3f",
                  rq->rid, http_method_name(rq->head.method), http_route_label(rq->route), status,
                  bytes, ms);
}

void http_send_reply(http_req *rq, const char *content_type, const char *allow)
{
    worker *w = rq->w;
    ps_api_reply *rep = &w->reply;
    char headers[1024];
    /* the two lines of every reply without printf (a tenth of a small request's cost) */
    size_t ct = strlen(content_type), id = strlen(rq->rid);
    int n = (int)(14 + ct + 2 + 12 + id + 2);
    PS_ASSERT((size_t)n < sizeof headers);
    char *o = headers;
    memcpy(o, "Content-Type: ", 14), o += 14;
    memcpy(o, content_type, ct), o += ct;
    memcpy(o, "\r\nRequest-Id: ", 14), o += 14;
    memcpy(o, rq->rid, id), o += id;
    memcpy(o, "\r\n", 3);
    if (allow)
        n += snprintf(headers + n, sizeof headers - (size_t)n, "Allow: %s\r\n", allow);
    if (rq->route == ROUTE_UI) /* the explorer runs only its own script and styles, and shows
                                * every value as text (src/http/ui/app.js) */
        n += snprintf(headers + n, sizeof headers - (size_t)n,
                      "Content-Security-Policy: default-src 'none'; script-src 'self'; "
                      "style-src 'self'; connect-src 'self'; img-src 'self'; "
                      "base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
                      "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
                      "Cache-Control: no-cache\r\n%s",
                      rep->status == 308 ? "Location: ui/\r\n" : "");
    if (rep->status == 429 || rep->status == 503) {
        long long wait_s = rep->retry_after_s ? rep->retry_after_s : 1;
        n += snprintf(headers + n, sizeof headers - (size_t)n, "Retry-After: %lld\r\n", wait_s);
        if (rep->status == 429) /* the Unix time, in seconds, when a retry can pass */
            n += snprintf(headers + n, sizeof headers - (size_t)n, "X-RateLimit-Reset: %lld\r\n",
                          (long long)(ps_clock_now_ms() / 1000) + wait_s);
    }
    if (rep->position) /* what a read-your-writes request asks for (docs/replication.md) */
        n += snprintf(headers + n, sizeof headers - (size_t)n, "X-Stream-Sequence: %llu\r\n",
                      (unsigned long long)rep->position);
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
    if (w->srv->cfg.access_log)
        access_line(rq, rep->status, rep->body.len);
    http_conn_reply(rq, rep->status, headers, (size_t)n, &rep->body);
}

void http_request_id(worker *w, char out[40])
{
    uint64_t n = ++w->requests;
    unsigned part[4] = {(unsigned)(w->srv->boot >> 16),
                        (unsigned)((w->srv->boot & 0xffff) ^ (w->id << 12)),
                        (unsigned)(n >> 16 & 0xffff), (unsigned)(n & 0xffff)};
    if (part[0] > 0xffff || part[1] > 0xffff) { /* wider than four digits: rare */
        snprintf(out, 40, "%04x-%04x-%04x-%04x", part[0], part[1], part[2], part[3]);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < 4; k++)
            out[5 * i + k] = hex[part[i] >> (12 - 4 * k) & 15];
        out[5 * i + 4] = i < 3 ? '-' : 0;
    }
}

void http_request_done(worker *w, int route, int status, const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t us = (int64_t)(t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000;
    http_metrics_record(&w->srv->stats, route, status, us > 0 ? (uint64_t)us : 0);
}

void http_reply_reset(worker *w)
{
    w->reply.status = 200;
    w->reply.retry_after_s = 0;
    w->reply.position = 0;
    ps_buf_reset(&w->reply.body);
}
