/* SPDX-License-Identifier: MIT */
/* fuzz_text: the byte-level decoders of the base layer against references written here:
 * percent-decoding (both '+' modes, with a %XX round trip), base64 (both alphabets, with a
 * re-encoding round trip), UTF-8 validation and code point count, and ISO-8601 parsing with
 * a format/parse round trip. The first byte picks the buffer size base64 may fill. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ps/clock.h"
#include "ps/mem.h"
#include "ps/text.h"

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* ---- percent-decoding ---- */

static bool ref_pct(const char *s, size_t len, bool plus, char *out, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (len - i < 3 || hex_digit(s[i + 1]) < 0 || hex_digit(s[i + 2]) < 0)
                return false;
            out[o++] = (char)(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
            i += 2;
        } else {
            out[o++] = plus && s[i] == '+' ? ' ' : s[i];
        }
    }
    *out_len = o;
    return true;
}

static void check_pct(const char *s, size_t len, bool plus)
{
    char *out = malloc(len ? len : 1), *ref = malloc(len ? len : 1);
    FUZZ_CHECK(out != NULL && ref != NULL);
    size_t out_len = 0, ref_len = 0;
    bool ok = ps_pct_decode(s, len, plus, out, &out_len);
    FUZZ_CHECK(ok == ref_pct(s, len, plus, ref, &ref_len));
    if (ok) {
        FUZZ_CHECK(out_len <= len && out_len == ref_len);
        FUZZ_CHECK(out_len == 0 || memcmp(out, ref, out_len) == 0);
        /* every byte as %XX decodes back to the same bytes, in both modes */
        static const char hex[] = "0123456789ABCDEF";
        size_t enc_len = out_len * 3;
        char *enc = malloc(enc_len ? enc_len : 1), *back = malloc(enc_len ? enc_len : 1);
        FUZZ_CHECK(enc != NULL && back != NULL);
        for (size_t i = 0; i < out_len; i++) {
            unsigned char c = (unsigned char)out[i];
            enc[3 * i] = '%';
            enc[3 * i + 1] = hex[c >> 4];
            enc[3 * i + 2] = hex[c & 15];
        }
        for (int mode = 0; mode < 2; mode++) {
            size_t back_len = 0;
            FUZZ_CHECK(ps_pct_decode(enc, enc_len, mode != 0, back, &back_len));
            FUZZ_CHECK(back_len == out_len && (out_len == 0 || memcmp(back, out, out_len) == 0));
        }
        free(enc);
        free(back);
    }
    free(out);
    free(ref);
}

/* ---- base64 ---- */

static int b64_digit(char c, bool url)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char web[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *p = c ? strchr(url ? web : std, c) : NULL;
    return p ? (int)(p - (url ? web : std)) : -1;
}

/* Valid base64 per the contract in text.h: the decoded length, or -1. */
static long ref_b64_len(const char *s, size_t len, bool url)
{
    if (!url && len > 0 && len % 4 == 0) { /* at most two '=', only at the end */
        size_t pad = s[len - 1] == '=' ? 1 + (s[len - 2] == '=') : 0;
        len -= pad;
    }
    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (b64_digit(s[i], url) < 0)
            return -1;
    if (len % 4) { /* the bits of the last digit that carry no byte must be zero */
        int last = b64_digit(s[len - 1], url);
        int mask = len % 4 == 2 ? 0x0f : 0x03;
        if (last & mask)
            return -1;
    }
    return (long)(len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0));
}

static void check_b64(const char *s, size_t len, bool url, size_t cap)
{
    uint8_t *out = malloc(cap ? cap : 1);
    FUZZ_CHECK(out != NULL);
    size_t n = 0;
    bool ok = ps_b64_decode(s, len, url, out, cap, &n);
    long want = ref_b64_len(s, len, url);
    FUZZ_CHECK(ok == (want >= 0 && (size_t)want <= cap));
    if (ok) {
        FUZZ_CHECK(n == (size_t)want);
        char *enc = malloc(PS_B64URL_LEN(n) + 1);
        FUZZ_CHECK(enc != NULL);
        size_t m = ps_b64url_encode(out, n, enc);
        FUZZ_CHECK(m == PS_B64URL_LEN(n) && enc[m] == 0);
        /* the input in the URL alphabet without padding is what encoding gives back */
        size_t k = len;
        while (!url && k > 0 && s[k - 1] == '=')
            k--;
        FUZZ_CHECK(m == k);
        for (size_t i = 0; i < k; i++) {
            char c = url ? s[i] : s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
            FUZZ_CHECK(enc[i] == c);
        }
        free(enc);
    }
    free(out);
}

/* ---- UTF-8 ---- */

/* Unicode's table of well-formed byte sequences, read literally. */
static bool ref_utf8(const uint8_t *s, size_t len, size_t *count)
{
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        uint8_t c = s[i];
        size_t tail;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c <= 0x7f) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            tail = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            tail = 2;
            if (c == 0xe0)
                lo = 0xa0;
            if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            tail = 3;
            if (c == 0xf0)
                lo = 0x90;
            if (c == 0xf4)
                hi = 0x8f;
        } else {
            return false;
        }
        if (len - i - 1 < tail)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= tail; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        i += tail + 1;
    }
    *count = n;
    return true;
}

static void check_utf8(const uint8_t *s, size_t len)
{
    for (size_t skip = 0; skip < 4 && skip <= len; skip++) { /* move the 8-byte fast path */
        size_t count = 0, ref_count = 0;
        bool ok = ps_utf8_valid(s + skip, len - skip, &count);
        FUZZ_CHECK(ok == ref_utf8(s + skip, len - skip, &ref_count));
        FUZZ_CHECK(!ok || count == ref_count);
        FUZZ_CHECK(ok == ps_utf8_valid(s + skip, len - skip, NULL));
    }
}

/* ---- ISO-8601 ---- */

static void check_time(const char *s, size_t len)
{
    static int64_t lo, hi; /* the instants whose year has four digits */
    if (lo == 0) {
        FUZZ_CHECK(ps_time_parse("0000-01-01", 10, &lo) == PS_OK);
        FUZZ_CHECK(ps_time_parse("9999-12-31T23:59:59.999Z", 24, &hi) == PS_OK);
    }
    char buf[PS_TIME_BUF], again[PS_TIME_BUF];
    int64_t ms = 0, back = 0;
    if (ps_time_parse(s, len, &ms) == PS_OK) {
        FUZZ_CHECK(ms >= lo && ms <= hi); /* clock.h: the instant falls in years 0000-9999 */
        FUZZ_CHECK(ps_time_format(ms, buf) == buf);
        FUZZ_CHECK(strlen(buf) == 24);
        FUZZ_CHECK(ps_time_parse(buf, 24, &back) == PS_OK && back == ms);
    }
    /* the same bytes as a number of milliseconds: formatting must give parseable text */
    uint8_t raw[8] = {0};
    memcpy(raw, s, len < 8 ? len : 8);
    ms = (int64_t)ps_get_be64(raw);
    ps_time_format(ms, buf);
    FUZZ_CHECK(strlen(buf) < PS_TIME_BUF);
    if (ms >= lo && ms <= hi) {
        FUZZ_CHECK(ps_time_parse(buf, strlen(buf), &back) == PS_OK && back == ms);
        FUZZ_CHECK(strcmp(ps_time_format(back, again), buf) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = data[0];
    size_t len = size - 1;
    char *s = malloc(len ? len : 1); /* exactly sized: ASan sees reads past the end */
    FUZZ_CHECK(s != NULL);
    if (len)
        memcpy(s, data + 1, len);
    check_pct(s, len, false);
    check_pct(s, len, true);
    check_b64(s, len, true, cap);
    check_b64(s, len, false, cap);
    check_b64(s, len, true, len);
    check_b64(s, len, false, len);
    check_utf8((const uint8_t *)s, len);
    check_time(s, len);
    free(s);
    return 0;
}
