/* SPDX-License-Identifier: MIT */
/* fuzz_http: a raw request through everything profiled does before a handler reads a store:
 * head framing (http_head_end, http_bare_lf, http_parse_head), chunked bodies
 * (http_chunked_feed, fed whole and in pieces: both must agree), and request decoding
 * (http_route_profile, http_track_route, http_basic_user). The connection state machine around
 * these (conn.c) needs a socket and is exercised by tests/integration/test_hardening.py. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http_int.h"

#define HEAD_MAX (16 * 1024)
#define BODY_MAX (32 * 1024)

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void check_head(const char *buf, long end, const http_head *h)
{
    const char *stop = buf + end;
    FUZZ_CHECK(h->minor_version == 0 || h->minor_version == 1);
    FUZZ_CHECK(h->method >= HTTP_OTHER && h->method <= HTTP_PATCH);
    FUZZ_CHECK(h->target >= buf && h->target + h->target_len <= stop && h->target_len > 0);
    FUZZ_CHECK(h->header_count <= HTTP_HEADERS_MAX);
    for (size_t i = 0; i < h->header_count; i++) {
        const http_header *x = &h->headers[i];
        FUZZ_CHECK(x->name >= buf && x->name + x->name_len <= stop && x->name_len > 0);
        FUZZ_CHECK(x->value >= buf && x->value + x->value_len <= stop);
        for (size_t k = 0; k < x->name_len; k++)
            FUZZ_CHECK(is_tchar((unsigned char)x->name[k]));
        for (size_t k = 0; k < x->value_len; k++)
            FUZZ_CHECK((unsigned char)x->value[k] >= 0x20 || x->value[k] == '\t');
        if (x->value_len)
            FUZZ_CHECK(x->value[0] != ' ' && x->value[x->value_len - 1] != ' ');
    }
    FUZZ_CHECK(!(h->chunked && h->content_length > 0));
    FUZZ_CHECK(!(h->chunked && h->minor_version == 0));
    if (h->content_length > 0)
        FUZZ_CHECK(http_head_find(h, "content-length", NULL) != NULL);
}

/* Decodes `in` as a chunked body in pieces of the given sizes. */
static long chunked(const uint8_t *in, size_t len, const uint8_t *cuts, size_t ncuts, ps_buf *out,
                    bool *done, int *status)
{
    http_chunked c;
    memset(&c, 0, sizeof c);
    size_t at = 0, k = 0;
    *done = false;
    while (at < len && !*done) {
        size_t piece = ncuts ? (size_t)cuts[k++ % ncuts] % 7 + 1 : len - at;
        if (piece > len - at)
            piece = len - at;
        const char *why = NULL;
        long used = http_chunked_feed(&c, in + at, piece, out, BODY_MAX, done, status, &why);
        if (used < 0) {
            FUZZ_CHECK(why != NULL && *status >= 400 && *status < 600);
            return -1;
        }
        FUZZ_CHECK((size_t)used <= piece);
        FUZZ_CHECK(out->len <= BODY_MAX);
        if ((size_t)used < piece)
            FUZZ_CHECK(*done); /* input is left only after the end */
        at += (size_t)used;
    }
    return (long)at;
}

static void decode_request(const http_head *h)
{
    /* the target as conn.c splits it, then route decoding as server.c calls it */
    char *target = malloc(h->target_len + 1);
    FUZZ_CHECK(target != NULL);
    memcpy(target, h->target, h->target_len);
    target[h->target_len] = 0;
    char *q = strchr(target, '?');
    if (q)
        *q++ = 0;
    int type;
    int tr = http_track_route(target, &type);
    FUZZ_CHECK(tr == -1 || tr == ROUTE_TRACK || tr == ROUTE_BATCH);
    size_t cap = h->target_len + 2 * MAX_PARAMS + 16;
    char *qs = malloc(cap), *ident = malloc(cap), token[MAX_AUTH_BYTES];
    FUZZ_CHECK(qs != NULL && ident != NULL);
    ps_api_param params[MAX_PARAMS];
    ps_api_request rq;
    const char *allow = NULL, *why = NULL;
    size_t alen = 0;
    const char *auth = http_head_find(h, "Authorization", &alen);
    int status = target[0] == '/' ? http_route_profile(target, q, h->method, auth, alen, qs, ident,
                                                       params, token, &rq, &allow, &why)
                                  : 404;
    if (status == 0) {
        FUZZ_CHECK(rq.route >= 0 && rq.route < PS_API__ROUTES);
        FUZZ_CHECK(rq.param_count <= MAX_PARAMS);
        for (size_t i = 0; i < rq.param_count; i++)
            FUZZ_CHECK(strlen(params[i].value) == params[i].value_len);
        if (rq.ident)
            FUZZ_CHECK(memchr(rq.ident, 0, rq.ident_len) == NULL && rq.ident_len < cap);
        if (rq.token)
            FUZZ_CHECK(strlen(rq.token) == rq.token_len && rq.token_len < MAX_AUTH_BYTES);
    } else {
        FUZZ_CHECK(status == 400 || status == 401 || status == 404 || status == 405);
        FUZZ_CHECK(why == NULL || why[0] != 0 || status == 404);
    }
    char user[64];
    size_t ul;
    if (http_basic_user(auth, alen, false, user, sizeof user, &ul) && ul)
        FUZZ_CHECK(strlen(user) == ul && ul < sizeof user);
    free(qs);
    free(ident);
    free(target);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* first byte: how to cut the body into pieces; the rest is what a client sends */
    if (size < 1)
        return 0;
    const uint8_t *cuts = data;
    size_t ncuts = data[0] % 4;
    data++, size--;
    if (size > HEAD_MAX + BODY_MAX)
        return 0;
    char *buf = malloc(size + 1);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data, size);
    buf[size] = 0;
    size_t n = size < HEAD_MAX ? size : HEAD_MAX;
    long end = http_head_end(buf, n, 0);
    /* searching from an earlier offset, as conn.c does on each read, finds the same end */
    for (size_t from = 0; end > 0 && from + 4 <= (size_t)end; from += 97)
        FUZZ_CHECK(http_head_end(buf, n, from) == end);
    if (end == 0) {
        (void)http_bare_lf(buf, n, 0);
        free(buf);
        return 0;
    }
    http_head h;
    int status = 0;
    const char *why = NULL;
    long got = http_parse_head(buf, (size_t)end, &h, &status, &why);
    if (got < 0) {
        FUZZ_CHECK(why != NULL && why[0] != 0);
        FUZZ_CHECK(status == 400 || status == 417 || status == 431 || status == 501 ||
                   status == 505);
        free(buf);
        return 0;
    }
    FUZZ_CHECK(got == end);
    check_head(buf, end, &h);
    decode_request(&h);
    if (h.chunked) {
        const uint8_t *body = (const uint8_t *)buf + end;
        size_t blen = size - (size_t)end;
        ps_buf whole, pieces;
        ps_buf_init(&whole);
        ps_buf_init(&pieces);
        bool d1, d2;
        int s1 = 0, s2 = 0;
        long u1 = chunked(body, blen, NULL, 0, &whole, &d1, &s1);
        long u2 = chunked(body, blen, cuts, ncuts, &pieces, &d2, &s2);
        FUZZ_CHECK((u1 < 0) == (u2 < 0));
        if (u1 >= 0) {
            FUZZ_CHECK(u1 == u2 && d1 == d2);
            FUZZ_CHECK(whole.len == pieces.len &&
                       (whole.len == 0 || memcmp(whole.ptr, pieces.ptr, whole.len) == 0));
        } else {
            FUZZ_CHECK(s1 == s2);
        }
        ps_buf_clear(&whole);
        ps_buf_clear(&pieces);
    }
    free(buf);
    return 0;
}
