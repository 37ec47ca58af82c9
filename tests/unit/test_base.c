/* SPDX-License-Identifier: MIT */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "ps/clock.h"
#include "ps/mem.h"
#include "ps/process.h"
#include "ps/ratelimit.h"
#include "ps/text.h"

static void time_roundtrip(void)
{
    int64_t ms;
    char tb[PS_TIME_BUF];
    CHECK(ps_time_parse("2022-05-02T14:01:00Z", 20, &ms) == PS_OK);
    CHECK_EQ_STR(ps_time_format(ms, tb), "2022-05-02T14:01:00.000Z");
    CHECK(ps_time_parse("2018-01-05T00:16:35.663Z", 24, &ms) == PS_OK);
    CHECK_EQ_INT(ms, 1515111395663LL);
    CHECK(ps_time_parse("2006-01-02", 10, &ms) == PS_OK);
    CHECK_EQ_STR(ps_time_format(ms, tb), "2006-01-02T00:00:00.000Z");
    CHECK(ps_time_parse("2020-02-29T10:00:00+02:00", 25, &ms) == PS_OK);
    CHECK_EQ_STR(ps_time_format(ms, tb), "2020-02-29T08:00:00.000Z");
    CHECK(ps_time_parse("1969-12-31T23:59:59.5Z", 22, &ms) == PS_OK);
    CHECK_EQ_INT(ms, -500);
    CHECK(ps_time_parse("2021-02-29", 10, &ms) == PS_EINVAL);
    CHECK(ps_time_parse("2021-13-01", 10, &ms) == PS_EINVAL);
    CHECK(ps_time_parse("yesterday", 9, &ms) == PS_EINVAL);
    CHECK(ps_time_parse("2021-01-01T10:00:00Zjunk", 24, &ms) == PS_EINVAL);
    /* no second 60, and no instant outside years 0000-9999 once the offset is applied */
    CHECK(ps_time_parse("2016-12-31T23:59:60Z", 20, &ms) == PS_EINVAL);
    CHECK(ps_time_parse("9999-12-31T23:59:60-23:59", 25, &ms) == PS_EINVAL);
    CHECK(ps_time_parse("9999-12-31T23:59:59-00:01", 25, &ms) == PS_EINVAL);
    CHECK(ps_time_parse("9999-12-31T23:59:59.999Z", 24, &ms) == PS_OK);
    CHECK(ps_time_parse("0000-01-01T00:00:00+00:01", 25, &ms) == PS_EINVAL);
    /* any int64 formats without overflow (a stored value is not always a parsed one) */
    ps_time_format(INT64_MIN, tb);
    ps_time_format(INT64_MAX, tb);
    CHECK_EQ_STR(ps_time_format(-1, tb), "1969-12-31T23:59:59.999Z");
    /* the formatter keeps the last date per thread: times in any order, across days and
     * years, read back to themselves */
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t want = (int64_t)(x % 253402300800000ULL); /* 0000-01-01 .. 9999-12-31 */
        if (i % 3 == 0)
            want = 1700000000000LL + (int64_t)(x % 86400000ULL) * (i % 2 ? 1 : -1);
        want -= 62167219200000LL;                          /* from year 0 */
        int64_t got;
        ps_time_format(want, tb);
        CHECK(strlen(tb) == 24);
        CHECK(ps_time_parse(tb, strlen(tb), &got) == PS_OK);
        CHECK_EQ_INT(got, want);
    }
end:;
}

static void utf8(void)
{
    size_t n;
    CHECK(ps_utf8_valid((const uint8_t *)"h\xc3\xa9llo", 6, &n));
    CHECK_EQ_INT(n, 5);
    CHECK(!ps_utf8_valid((const uint8_t *)"\xc3", 1, NULL));
    CHECK(!ps_utf8_valid((const uint8_t *)"\xc0\xaf", 2, NULL));        /* overlong */
    CHECK(!ps_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3, NULL));    /* surrogate */
    CHECK(ps_utf8_valid((const uint8_t *)"\xf0\x9f\x98\x80", 4, &n));  /* emoji */
    CHECK_EQ_INT(n, 1);
    /* across the 8-byte ASCII fast path */
    CHECK(ps_utf8_valid((const uint8_t *)"abcdefgh\xc3\xa9ijklmnopq", 19, &n));
    CHECK_EQ_INT(n, 18);
    CHECK(!ps_utf8_valid((const uint8_t *)"abcdefghi\xffjklmnopq", 18, NULL));
    CHECK(!ps_utf8_valid((const uint8_t *)"abcdefghijklmnop\xe2\x82", 18, NULL));
end:;
}

/* The digit-at-a-time long division ps_base62 once used: ids already stored were made by
 * it, so the faster one must give the same digits for every input. */
static void base62_reference(const uint8_t *bytes, size_t len, char *out, size_t ndigits)
{
    static const char alphabet[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    uint8_t num[64];
    memcpy(num, bytes, len);
    for (size_t d = ndigits; d > 0; d--) {
        unsigned rem = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned cur = rem * 256 + num[i];
            num[i] = (uint8_t)(cur / 62);
            rem = cur % 62;
        }
        out[d - 1] = alphabet[rem];
    }
    out[ndigits] = 0;
}

static void base62(void)
{
    /* against the reference: every length the callers use and then some, all-ones
     * inputs, and pseudo-random ones */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 2000; round++) {
        uint8_t in[64];
        size_t len = 1 + (size_t)round % 40, nd = 1 + (size_t)(round / 40) % 40;
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            in[i] = round % 7 == 0 ? 0xff : (uint8_t)x;
        }
        char want[48], got[48];
        base62_reference(in, len, want, nd);
        ps_base62(in, len, got, nd);
        CHECK_EQ_STR(got, want);
    }

    char out[32];
    uint8_t zero[4] = {0};
    ps_base62(zero, 4, out, 5);
    CHECK_EQ_STR(out, "00000");
    uint8_t v[2] = {0, 62};
    ps_base62(v, 2, out, 3);
    CHECK_EQ_STR(out, "010");
    char hx[7];
    ps_hex((const uint8_t *)"\x00\x9f\xff", 3, hx);
    CHECK_EQ_STR(hx, "009fff");
    uint8_t key[16] = {0};
    CHECK(ps_siphash(key, "a", 1) != ps_siphash(key, "b", 1));
    CHECK(ps_siphash(key, "abc", 3) == ps_siphash(key, "abc", 3));
    /* the design paper's test key 00..0f on the messages 00..(n-1) */
    uint8_t k[16], m[15];
    for (int i = 0; i < 16; i++)
        k[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        m[i] = (uint8_t)i;
    CHECK(ps_siphash(k, m, 0) == 0x726fdb47dd0e0e31ULL);
    CHECK(ps_siphash(k, m, 8) == 0x93f5f5799a932462ULL);
    CHECK(ps_siphash(k, m, 15) == 0xa129ca6149be45e5ULL);
end:;
}

static void trim(void)
{
    const char *s = " \t\v a b \f\r\n";
    size_t len = strlen(s);
    ps_trim(&s, &len);
    CHECK_EQ_INT(len, 3);
    CHECK(strncmp(s, "a b", 3) == 0);
    s = " \n ";
    len = 3;
    ps_trim(&s, &len);
    CHECK_EQ_INT(len, 0);
end:;
}

static void pct_decode(void)
{
    char out[64];
    size_t n;
    CHECK(ps_pct_decode("phone_number:%2B5555550123", 26, false, out, &n));
    CHECK_EQ_INT(n, 24);
    CHECK(memcmp(out, "phone_number:+5555550123", 24) == 0);
    CHECK(ps_pct_decode("a+b%20c%3a", 10, false, out, &n)); /* '+' stays '+', lower hex works */
    CHECK(n == 6 && memcmp(out, "a+b c:", 6) == 0);
    CHECK(ps_pct_decode("a+b", 3, true, out, &n)); /* query strings: '+' is a space */
    CHECK(n == 3 && memcmp(out, "a b", 3) == 0);
    CHECK(ps_pct_decode("%2525", 5, false, out, &n)); /* decoded once: %25 -> '%', then "25" */
    CHECK(n == 3 && memcmp(out, "%25", 3) == 0);
    CHECK(!ps_pct_decode("bad%2", 5, false, out, &n));
    CHECK(!ps_pct_decode("bad%zz", 6, false, out, &n));
    CHECK(!ps_pct_decode("%", 1, false, out, &n));
end:;
}

static void base64(void)
{
    char enc[64];
    uint8_t dec[64];
    size_t n;
    const uint8_t raw[] = {0xfb, 0xff, 0x00, 'a', 'b'};
    for (size_t len = 0; len <= sizeof raw; len++) { /* every tail length round-trips */
        size_t el = ps_b64url_encode(raw, len, enc);
        CHECK_EQ_INT(el, PS_B64URL_LEN(len));
        CHECK(ps_b64_decode(enc, el, true, dec, sizeof dec, &n));
        CHECK(n == len && memcmp(dec, raw, len) == 0);
    }
    CHECK(ps_b64url_encode(raw, 3, enc) == 4);
    CHECK_EQ_STR(enc, "-_8A");
    /* standard alphabet with padding, as in HTTP Basic */
    CHECK(ps_b64_decode("dG9rOg==", 8, false, dec, sizeof dec, &n));
    CHECK(n == 4 && memcmp(dec, "tok:", 4) == 0);
    CHECK(ps_b64_decode("dG9rOg", 6, false, dec, sizeof dec, &n));
    CHECK(!ps_b64_decode("dG9rOh==", 8, false, dec, sizeof dec, &n)); /* trailing bits */
    CHECK(!ps_b64_decode("dG9r*g==", 8, false, dec, sizeof dec, &n));
    CHECK(!ps_b64_decode("-_8A", 4, false, dec, sizeof dec, &n));   /* url chars in std */
    CHECK(!ps_b64_decode("abcde", 5, true, dec, sizeof dec, &n));   /* impossible length */
    CHECK(!ps_b64_decode("AAAAAAAA", 8, true, dec, 5, &n));         /* beyond capacity */
    /* every byte: a character of the alphabet decodes to its place in it, any other is refused */
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int url = 0; url <= 1; url++)
        for (int c = 0; c < 256; c++) {
            const char *at = c ? memchr(std, c, 64) : NULL;
            if (url && (c == '+' || c == '/'))
                at = NULL;
            if (url && (c == '-' || c == '_'))
                at = std + (c == '-' ? 62 : 63);
            char two[2] = {(char)c, 'A'}; /* 12 bits: one byte, the rest zero */
            bool ok = ps_b64_decode(two, 2, url, dec, sizeof dec, &n);
            CHECK(ok == (at != NULL));
            CHECK(!ok || (n == 1 && dec[0] == (uint8_t)((at - std) << 2)));
        }
end:;
}

static void bucket(void)
{
    ps_bucket b = {0};
    int64_t wait = 0;
    CHECK(ps_bucket_take(&b, 0, 0, 0, &wait)); /* rate 0: no limit */
    for (int i = 0; i < 5; i++)                /* starts full: a burst of 5 */
        CHECK(ps_bucket_take(&b, 10, 5, 1000, &wait));
    CHECK(!ps_bucket_take(&b, 10, 5, 1000, &wait));
    CHECK(wait >= 1 && wait <= 101);
    CHECK(!ps_bucket_take(&b, 10, 5, 1050, &wait)); /* half a token */
    CHECK(ps_bucket_take(&b, 10, 5, 1100, &wait));  /* 100 ms at 10/s = one token */
    CHECK(!ps_bucket_take(&b, 10, 5, 1100, &wait));
    CHECK(!ps_bucket_take(&b, 10, 5, 900, &wait)); /* the clock stepped back: no refill */
    for (int i = 0; i < 5; i++)                    /* a long pause refills only to burst */
        CHECK(ps_bucket_take(&b, 10, 5, 100000, &wait));
    CHECK(!ps_bucket_take(&b, 10, 5, 100000, &wait));
end:;
}

/* The escape a JSON string needs for byte c, one byte at a time (what ps_buf_json_str must give
 * however its words fall). */
static void json_ref(ps_buf *b, const unsigned char *s, size_t n)
{
    ps_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c == '"' || c == '\\')
            ps_buf_printf(b, "\\%c", (int)c);
        else if (c == '\n')
            ps_buf_puts(b, "\\n");
        else if (c == '\r')
            ps_buf_puts(b, "\\r");
        else if (c == '\t')
            ps_buf_puts(b, "\\t");
        else if (c < 0x20)
            ps_buf_printf(b, "\\u%04x", c);
        else
            ps_buf_putc(b, (char)c);
    }
    ps_buf_putc(b, '"');
}

static void json_escape(void)
{
    ps_buf got, want;
    ps_buf_init(&got);
    ps_buf_init(&want);
    unsigned char s[40];
    /* every byte value at every place of strings up to 39 bytes, among plain and UTF-8 bytes */
    for (size_t n = 0; n < sizeof s; n++)
        for (size_t at = 0; at < (n ? n : 1); at++)
            for (unsigned v = 0; v < 256; v++) {
                for (size_t i = 0; i < n; i++)
                    s[i] = (unsigned char)(i % 3 == 2 ? 0xc3 : 'a' + i % 26);
                if (n)
                    s[at] = (unsigned char)v;
                ps_buf_reset(&got);
                ps_buf_reset(&want);
                ps_buf_json_str(&got, (const char *)s, n);
                json_ref(&want, s, n);
                CHECK(got.len == want.len && memcmp(got.ptr, want.ptr, got.len) == 0);
            }
    /* bytes just around the limits, many to a word */
    static const unsigned char edge[] = {0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d,
                                         0x7f, 0x80, 0xa2, 0xdc, 0xff, 0x00, 0x01, 0x9f};
    ps_buf_reset(&got);
    ps_buf_reset(&want);
    ps_buf_json_str(&got, (const char *)edge, sizeof edge);
    json_ref(&want, edge, sizeof edge);
    CHECK(got.len == want.len && memcmp(got.ptr, want.ptr, got.len) == 0);
    /* after what a buffer holds, filling it to the byte, and always terminated */
    for (size_t n = 0; n < 70; n++) {
        ps_buf_reset(&got);
        for (size_t i = 0; i < n; i++)
            ps_buf_putc(&got, 'x');
        ps_buf_json_str(&got, "plain", 5);
        CHECK_EQ_INT(got.len, n + 7);
        CHECK(memcmp(got.ptr + n, "\"plain\"", 8) == 0); /* the terminating 0 included */
    }
end:
    ps_buf_clear(&got);
    ps_buf_clear(&want);
}

static const char *string_run_ref(const char *p, const char *end, unsigned stop)
{
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\' || (c < 0x20 && (stop & PS_JSON_STOP_CONTROL)) ||
            (c >= 0x80 && (stop & PS_JSON_STOP_HIGH)))
            return p;
    }
    return end;
}

static void json_string_run(void)
{
    char s[40];
    /* two bytes of every value around the limits at every pair of places, so that a borrow
     * from a stop byte reaches the bytes above it, under every set of stop flags */
    static const unsigned char edge[] = {0x00, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b,
                                         0x5c, 0x5d, 0x7f, 0x80, 0x81, 0xa2, 0xdc, 0xff};
    for (unsigned stop = 0; stop < 4; stop++)
        for (size_t n = 0; n < sizeof s; n += 3)
            for (size_t a = 0; a < n; a++)
                for (size_t b = a; b < n; b++)
                    for (size_t x = 0; x < sizeof edge; x++)
                        for (size_t y = 0; y < sizeof edge; y++) {
                            memset(s, 'q', n);
                            s[a] = (char)edge[x];
                            s[b] = (char)edge[y];
                            CHECK(ps_json_string_run(s, s + n, stop) ==
                                  string_run_ref(s, s + n, stop));
                        }
    /* every byte value alone at every place */
    for (unsigned stop = 0; stop < 4; stop++)
        for (size_t at = 0; at < sizeof s; at++)
            for (unsigned v = 0; v < 256; v++) {
                memset(s, 'q', sizeof s);
                s[at] = (char)v;
                CHECK(ps_json_string_run(s, s + sizeof s, stop) ==
                      string_run_ref(s, s + sizeof s, stop));
            }
end:;
}

/* A process's start time is there while it runs and names it: a child starts no earlier than
 * its parent, and once reaped it has none. */
static void process_start(void)
{
    unsigned long long self = ps_process_start_ticks(getpid());
    CHECK(self > 0);
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t child = fork();
    if (child == 0) { /* waits until the parent closes the pipe */
        char c;
        close(fds[1]);
        _exit(read(fds[0], &c, 1) == 0 ? 0 : 1);
    }
    close(fds[0]);
    CHECK(child > 0);
    unsigned long long started = ps_process_start_ticks(child);
    CHECK(started >= self);
    CHECK(ps_process_start_ticks(child) == started);
    close(fds[1]);
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status));
    CHECK(ps_process_start_ticks(child) == 0);
end:;
}

/* A reserved arena takes its first chunk at the size asked for and quarters of it after;
 * what was written stays put. A small reserve, or one on an arena in use, changes nothing.
 * ps_buf_fit keeps the contents and the buffer grows again after. */
static void arena_reserve_and_buf_fit(void)
{
    ps_arena a;
    ps_arena_init(&a);
    ps_arena_reserve(&a, 100);
    CHECK_EQ_INT(ps_arena_bytes(&a), 0);
    ps_arena_reserve(&a, 64000);
    size_t first = ps_arena_bytes(&a);
    CHECK(first >= 64000 && first < 64000 + 64);
    unsigned char *p[5];
    for (int i = 0; i < 5; i++) { /* 60,000 bytes fit in the first chunk */
        p[i] = ps_arena_alloc(&a, 12000);
        memset(p[i], 'a' + i, 12000);
    }
    CHECK_EQ_INT(ps_arena_bytes(&a), first);
    unsigned char *more = ps_arena_alloc(&a, 8000); /* a quarter-sized chunk */
    memset(more, 'z', 8000);
    size_t second = ps_arena_bytes(&a) - first;
    CHECK(second >= 16000 && second < 16000 + 64);
    for (int i = 0; i < 5; i++)
        CHECK(p[i][0] == 'a' + i && p[i][11999] == 'a' + i);
    ps_arena_reserve(&a, 1 << 20); /* in use: no effect */
    CHECK_EQ_INT(ps_arena_bytes(&a), first + second);
    ps_arena_clear(&a);
    CHECK_EQ_INT(ps_arena_bytes(&a), 0);
    (void)ps_arena_alloc(&a, 10); /* cleared: back to the small first chunk */
    CHECK(ps_arena_bytes(&a) < 8192);
    ps_arena_clear(&a);

    ps_buf b;
    ps_buf_init(&b);
    ps_buf_reserve(&b, 10000);
    ps_buf_puts(&b, "abc");
    ps_buf_fit(&b);
    CHECK_EQ_INT(b.cap, 4);
    CHECK(b.len == 3 && memcmp(b.ptr, "abc", 3) == 0);
    ps_buf_puts(&b, "defgh");
    CHECK(b.len == 8 && memcmp(b.ptr, "abcdefgh", 8) == 0);
    ps_buf_clear(&b);
    ps_buf_fit(&b); /* nothing held: nothing to do */
    CHECK(b.ptr == NULL);
end:;
}

static const test_case tests[] = {
    {"process_start", process_start},
    {"json_escape", json_escape},
    {"json_string_run", json_string_run},
    {"bucket", bucket},
    {"pct_decode", pct_decode},
    {"base64", base64},
    {"time_roundtrip", time_roundtrip},
    {"utf8", utf8},
    {"base62", base62},
    {"trim", trim},
    {"arena_reserve_and_buf_fit", arena_reserve_and_buf_fit},
};
TEST_MAIN(tests)
