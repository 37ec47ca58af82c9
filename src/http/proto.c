/* SPDX-License-Identifier: MIT */
/* proto: HTTP/1.1 request framing (RFC 9112), without I/O so that it can be fuzzed alone.
 * Strict where leniency has let requests be read two ways behind a proxy: CRLF line ends
 * only, no whitespace before a header's colon, no folded lines, one Content-Length value,
 * never Content-Length together with Transfer-Encoding, and chunked as the only coding. */
#include "http_int.h"

#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    int method;
} methods[] = {
    {"GET", HTTP_GET},       {"HEAD", HTTP_HEAD},       {"POST", HTTP_POST},   {"PUT", HTTP_PUT},
    {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS}, {"PATCH", HTTP_PATCH},
};

const char *http_method_name(int method)
{
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (methods[i].method == method)
            return methods[i].name;
    return "OTHER";
}

int http_method_parse(const char *name)
{
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (strcmp(methods[i].name, name) == 0)
            return methods[i].method;
    return HTTP_OTHER;
}

/* token characters of RFC 9110 section 5.6.2 */
static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static long fail(int *status, const char **why, int code, const char *message)
{
    *status = code;
    *why = message;
    return -1;
}

static bool name_is(const http_header *h, const char *name)
{
    return h->name_len == strlen(name) && strncasecmp(h->name, name, h->name_len) == 0;
}

/* True when the comma-separated list `v` holds the token `tok` (case-insensitive). */
static bool list_has(const char *v, size_t len, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i < len;) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == tl && strncasecmp(v + start, tok, tl) == 0)
            return true;
    }
    return false;
}

long http_head_end(const char *buf, size_t len, size_t from)
{
    for (size_t i = from; i + 3 < len; i++) {
        const char *p = memchr(buf + i, '\r', len - 3 - i);
        if (p == NULL)
            break;
        i = (size_t)(p - buf);
        if (p[1] == '\n' && p[2] == '\r' && p[3] == '\n')
            return (long)(i + 4);
    }
    return 0;
}

bool http_bare_lf(const char *buf, size_t len, size_t from)
{
    for (const char *p = buf + from; (p = memchr(p, '\n', len - (size_t)(p - buf))) != NULL; p++)
        if (p == buf || p[-1] != '\r')
            return true;
    return false;
}

bool http_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 18)
        return false;
    for (size_t k = 0; k < len; k++) {
        if (s[k] < '0' || s[k] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[k] - '0');
    }
    *out = v;
    return true;
}

/* Framing from the headers: Content-Length, Transfer-Encoding, Connection, Expect. */
static long framing(http_head *h, int *status, const char **why)
{
    bool has_length = false, has_te = false;
    h->keep_alive = h->minor_version >= 1;
    for (size_t i = 0; i < h->header_count; i++) {
        const http_header *x = &h->headers[i];
        if (name_is(x, "Content-Length")) {
            uint64_t v = 0;
            if (!http_parse_u64(x->value, x->value_len, &v))
                return fail(status, why, 400, "The Content-Length header is not a number.");
            if (has_length && v != h->content_length)
                return fail(status, why, 400,
                            "The request has two different Content-Length "
                            "headers.");
            has_length = true;
            h->content_length = v;
        } else if (name_is(x, "Transfer-Encoding")) {
            if (has_te || x->value_len != 7 || strncasecmp(x->value, "chunked", 7) != 0)
                return fail(status, why, 501, "Only Transfer-Encoding: chunked is supported.");
            has_te = true;
        } else if (name_is(x, "Connection")) {
            if (list_has(x->value, x->value_len, "close"))
                h->keep_alive = false;
            else if (list_has(x->value, x->value_len, "keep-alive"))
                h->keep_alive = true;
        } else if (name_is(x, "Expect")) {
            if (x->value_len != 12 || strncasecmp(x->value, "100-continue", 12) != 0)
                return fail(status, why, 417, "Only Expect: 100-continue is supported.");
            h->expect_continue = h->minor_version >= 1;
        }
    }
    if (has_te && has_length)
        return fail(status, why, 400,
                    "The request has both Content-Length and "
                    "Transfer-Encoding.");
    if (has_te && h->minor_version == 0)
        return fail(status, why, 400, "HTTP/1.0 has no chunked Transfer-Encoding.");
    h->chunked = has_te;
    return 0;
}

long http_parse_head(const char *buf, size_t len, http_head *h, int *status, const char **why)
{
    memset(h, 0, sizeof *h);
    long end = http_head_end(buf, len, 0);
    if (end == 0)
        return 0;
    const char *p = buf, *stop = buf + end - 2; /* the final CRLF */
    /* request-line = method SP request-target SP HTTP-version CRLF */
    const char *sp = p;
    while (sp < stop && is_tchar((unsigned char)*sp))
        sp++;
    if (sp == p || sp >= stop || *sp != ' ')
        return fail(status, why, 400, "The request line is malformed.");
    h->method = HTTP_OTHER;
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if ((size_t)(sp - p) == strlen(methods[i].name) &&
            memcmp(p, methods[i].name, (size_t)(sp - p)) == 0)
            h->method = methods[i].method;
    h->method_name = p;
    h->method_len = (size_t)(sp - p);
    const char *t = sp + 1, *te = t;
    while (te < stop && (unsigned char)*te > 0x20 && *te != 0x7f)
        te++;
    if (te == t || te >= stop || *te != ' ')
        return fail(status, why, 400, "The request line is malformed.");
    h->target = t;
    h->target_len = (size_t)(te - t);
    const char *v = te + 1;
    if (stop - v < 10 || memcmp(v, "HTTP/1.", 7) != 0 || v[8] != '\r' || v[9] != '\n')
        return fail(status, why, stop - v >= 10 && memcmp(v, "HTTP/", 5) == 0 ? 505 : 400,
                    stop - v >= 10 && memcmp(v, "HTTP/", 5) == 0
                        ? "Only HTTP/1.0 and HTTP/1.1 are supported."
                        : "The request line is malformed.");
    if (v[7] != '0' && v[7] != '1')
        return fail(status, why, 505, "Only HTTP/1.0 and HTTP/1.1 are supported.");
    h->minor_version = v[7] - '0';
    p = v + 10;
    /* header-field = field-name ":" OWS field-value OWS CRLF */
    while (p < stop) {
        const char *nl = memchr(p, '\r', (size_t)(stop - p) + 1);
        if (nl == NULL || nl[1] != '\n')
            return fail(status, why, 400, "A header line does not end with CRLF.");
        const char *colon = p;
        while (colon < nl && is_tchar((unsigned char)*colon))
            colon++;
        if (colon == p || colon >= nl || *colon != ':')
            return fail(status, why, 400, "A header line is malformed.");
        if (h->header_count == HTTP_HEADERS_MAX)
            return fail(status, why, 431, "The request has too many headers.");
        const char *val = colon + 1, *vend = nl;
        while (val < vend && (*val == ' ' || *val == '\t'))
            val++;
        while (vend > val && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        for (const char *c = val; c < vend; c++)
            if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
                return fail(status, why, 400, "A header value has a control character.");
        http_header *x = &h->headers[h->header_count++];
        *x = (http_header){p, (size_t)(colon - p), val, (size_t)(vend - val)};
        p = nl + 2;
    }
    if (framing(h, status, why) < 0)
        return -1;
    return end;
}

const char *http_head_find(const http_head *h, const char *name, size_t *len)
{
    for (size_t i = 0; i < h->header_count; i++)
        if (name_is(&h->headers[i], name)) {
            if (len)
                *len = h->headers[i].value_len;
            return h->headers[i].value;
        }
    return NULL;
}

/* ---- chunked bodies ---- */

enum {
    CH_SIZE,
    CH_SIZE_WS,
    CH_EXT,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER,
    CH_DONE
};

#define CHUNK_LINE_MAX 256 /* a size line with its extensions */
#define TRAILER_MAX 4096   /* trailer fields are read and dropped */

long http_chunked_feed(http_chunked *c, const uint8_t *in, size_t len, ps_buf *out, size_t limit,
                       bool *done, int *status, const char **why)
{
    size_t i = 0;
    *done = false;
    while (i < len && c->state != CH_DONE) {
        uint8_t b = in[i];
        switch (c->state) {
        case CH_SIZE: {
            int d = b >= '0' && b <= '9'   ? b - '0'
                    : b >= 'a' && b <= 'f' ? b - 'a' + 10
                    : b >= 'A' && b <= 'F' ? b - 'A' + 10
                                           : -1;
            if (d >= 0) {
                if (++c->line_len > CHUNK_LINE_MAX)
                    return fail(status, why, 400, "A chunk line is too long.");
                if ((c->remaining || d) && c->digits++ == 8) /* over 4 GiB: never a body here */
                    return fail(status, why, 413, "A chunk is too large.");
                c->remaining = c->remaining << 4 | (uint64_t)d;
            } else if (c->line_len == 0) {
                return fail(status, why, 400, "A chunk size is malformed.");
            } else if (b == ';') {
                c->state = CH_EXT;
            } else if (b == ' ' || b == '\t') {
                c->state = CH_SIZE_WS;
            } else if (b == '\r') {
                c->state = CH_SIZE_LF;
            } else {
                return fail(status, why, 400, "A chunk size is malformed.");
            }
            i++;
            break;
        }
        case CH_SIZE_WS: /* only blanks, then an extension or the end of the line */
            if (++c->line_len > CHUNK_LINE_MAX)
                return fail(status, why, 400, "A chunk line is too long.");
            if (b == ';')
                c->state = CH_EXT;
            else if (b == '\r')
                c->state = CH_SIZE_LF;
            else if (b != ' ' && b != '\t')
                return fail(status, why, 400, "A chunk size is malformed.");
            i++;
            break;
        case CH_EXT: /* chunk extensions are ignored, within a bound */
            if (++c->line_len > CHUNK_LINE_MAX)
                return fail(status, why, 400, "A chunk line is too long.");
            if (b == '\r')
                c->state = CH_SIZE_LF;
            else if (b < 0x20 && b != '\t')
                return fail(status, why, 400, "A chunk line is malformed.");
            i++;
            break;
        case CH_SIZE_LF:
            if (b != '\n')
                return fail(status, why, 400, "A chunk line does not end with CRLF.");
            i++;
            c->line_len = 0;
            c->digits = 0;
            if (c->remaining == 0) {
                c->state = CH_TRAILER;
                c->trailer_line = 0;
            } else if (out->len > limit || c->remaining > limit - out->len) {
                return fail(status, why, 413, "The body is over the limit.");
            } else {
                c->state = CH_DATA;
            }
            break;
        case CH_DATA: {
            size_t n = len - i < c->remaining ? len - i : (size_t)c->remaining;
            ps_buf_append(out, in + i, n);
            i += n;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (b != '\r')
                return fail(status, why, 400, "A chunk does not end with CRLF.");
            c->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (b != '\n')
                return fail(status, why, 400, "A chunk does not end with CRLF.");
            c->state = CH_SIZE;
            i++;
            break;
        case CH_TRAILER: /* lines until an empty one; CRLF only */
            if (++c->trailer_bytes > TRAILER_MAX)
                return fail(status, why, 431, "The chunked trailer is too long.");
            i++;
            if (b == '\n') {
                if (c->prev != '\r')
                    return fail(status, why, 400, "A trailer line does not end with CRLF.");
                if (c->trailer_line == 0)
                    c->state = CH_DONE;
                c->trailer_line = 0;
            } else if (c->prev == '\r') {
                return fail(status, why, 400, "A trailer line has a bare CR.");
            } else if (b != '\r') {
                c->trailer_line++;
            }
            break;
        }
        c->prev = b;
    }
    *done = c->state == CH_DONE;
    return (long)i;
}
