/* SPDX-License-Identifier: MIT */
/* text: UTF-8 checks, base62 digits and SipHash-2-4 (Aumasson and Bernstein's design,
 * written from its description). */
#include "ps/text.h"

#include <string.h>

bool ps_utf8_valid(const uint8_t *s, size_t len, size_t *count)
{
    size_t n = 0, i = 0;
    while (i < len) {
        /* ASCII runs, 8 bytes at a time: JSON is mostly ASCII */
        while (i + 8 <= len) {
            uint64_t word;
            memcpy(&word, s + i, 8);
            if (word & 0x8080808080808080ULL)
                break;
            i += 8;
            n += 8;
        }
        if (i >= len)
            break;
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            n++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            need = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return false;
        }
        if (len - i <= need)
            return false;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += need + 1;
        n++;
    }
    if (count)
        *count = n;
    return true;
}

void ps_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = 0;
}

bool ps_name_valid(const char *name, size_t max)
{
    size_t len = strlen(name);
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

void ps_base62(const uint8_t *bytes, size_t len, char *out, size_t ndigits)
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    enum { CHUNK = 5 };                      /* digits per long division */
    const uint64_t chunk_div = 916132832ull; /* 62^5, below 2^32 */
    if (len > 64)
        len = 64;
    /* the big-endian number as 32-bit limbs, most significant first */
    uint32_t limb[16];
    size_t nl = (len + 3) / 4, lead = len - (nl - 1) * 4;
    for (size_t i = 0, at = 0; i < nl; i++) {
        size_t take = i == 0 ? lead : 4;
        uint32_t v = 0;
        for (size_t k = 0; k < take; k++)
            v = v << 8 | bytes[at++];
        limb[i] = v;
    }
    size_t d = ndigits;
    while (d > 0) {
        /* divide by 62^5; the remainder gives the next five digits, lowest first */
        uint64_t rem = 0;
        for (size_t i = 0; i < nl; i++) {
            uint64_t cur = rem << 32 | limb[i];
            limb[i] = (uint32_t)(cur / chunk_div);
            rem = cur % chunk_div;
        }
        for (int k = 0; k < CHUNK && d > 0; k++) {
            out[--d] = alphabet[rem % 62];
            rem /= 62;
        }
    }
    out[ndigits] = 0;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

/* Eight bytes as a little-endian number: one load where the machine is little-endian (the
 * byte-by-byte form compiled to 24 instructions a word). */
static uint64_t le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

uint64_t ps_siphash(const uint8_t key[16], const void *data, size_t len)
{
    const uint8_t *in = data;
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    size_t blocks = len / 8;
    for (size_t i = 0; i < blocks; i++) {
        uint64_t m = le64(in + i * 8);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint8_t last[8] = {0};
    if (len & 7) /* data may be NULL when len is 0 */
        memcpy(last, in + blocks * 8, len & 7);
    uint64_t b = ((uint64_t)len << 56) | le64(last);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

void ps_trim(const char **s, size_t *len)
{
    while (*len && is_space(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && is_space((*s)[*len - 1]))
        (*len)--;
}

void ps_ascii_lower(char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] + 32);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool ps_pct_decode(const char *s, size_t len, bool plus_is_space, char *out, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[o++] = plus_is_space && s[i] == '+' ? ' ' : s[i];
            continue;
        }
        int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
        int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;
        if (lo < 0)
            return false;
        out[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    *out_len = o;
    return true;
}

static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t ps_b64url_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_url[v >> 18];
        out[o++] = b64_url[(v >> 12) & 63];
        out[o++] = b64_url[(v >> 6) & 63];
        out[o++] = b64_url[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = b64_url[v >> 18];
        out[o++] = b64_url[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = b64_url[(v >> 6) & 63];
    }
    out[o] = 0;
    return o;
}

/* The value plus one of each letter and digit, by byte (the 62 characters both base64
 * alphabets share); 0 for any other byte. */
static const uint8_t b64_alnum[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62};

/* The value plus one of `c` in the standard or the URL alphabet; 0 when it is not in it. */
static inline uint32_t b64_value(uint8_t c, bool url)
{
    uint32_t v = b64_alnum[c];
    if (v == 0)
        v = c == (url ? '-' : '+') ? 63 : c == (url ? '_' : '/') ? 64 : 0;
    return v;
}

bool ps_b64_decode(const char *in, size_t len, bool url, uint8_t *out, size_t cap, size_t *out_len)
{
    if (!url && len % 4 == 0 && len > 0) { /* strip correct padding only */
        size_t pad = in[len - 1] == '=' ? (in[len - 2] == '=' ? 2 : 1) : 0;
        len -= pad;
    }
    if (len % 4 == 1)
        return false;
    size_t o = 0, i = 0;
    uint32_t acc = 0;
    int bits = 0;
    const uint8_t *u = (const uint8_t *)in;
    for (; i + 4 <= len && o + 3 <= cap; i += 4, o += 3) { /* whole groups: 4 characters, 3 bytes */
        uint32_t a = b64_value(u[i], url), b = b64_value(u[i + 1], url);
        uint32_t c = b64_value(u[i + 2], url), d = b64_value(u[i + 3], url);
        if (!a || !b || !c || !d)
            return false;
        uint32_t w = (a - 1) << 18 | (b - 1) << 12 | (c - 1) << 6 | (d - 1);
        out[o] = (uint8_t)(w >> 16);
        out[o + 1] = (uint8_t)(w >> 8);
        out[o + 2] = (uint8_t)w;
    }
    for (; i < len; i++) {
        uint32_t v = b64_value(u[i], url);
        if (v == 0)
            return false;
        acc = (acc << 6 | (v - 1)) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return false;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return false; /* non-canonical: leftover bits must be zero */
    *out_len = o;
    return true;
}
