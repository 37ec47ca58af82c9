/* SPDX-License-Identifier: MIT */
/* text: UTF-8 validation, base62, base64, percent-decoding, a keyed 64-bit hash (SipHash-2-4)
 * and the word-at-a-time scan JSON strings share. Pure functions over bytes; no allocation. */
#ifndef PS_TEXT_H
#define PS_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Returns true when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
 * When `count` is not NULL it receives the number of code points. */
bool ps_utf8_valid(const uint8_t *s, size_t len, size_t *count);

/* `len` bytes as lowercase hex into `out` (2 * len + 1 bytes, NUL-terminated). */
void ps_hex(const uint8_t *in, size_t len, char *out);

/* A name an operator gives (a space, a token, a filter): 1 to `max` bytes of A-Z a-z 0-9 _ -. */
bool ps_name_valid(const char *name, size_t max);

/* Writes `ndigits` base62 characters (0-9A-Za-z) of the big-endian number in `bytes` into
 * `out` (most significant first) and a NUL. The number is reduced modulo 62^ndigits. */
void ps_base62(const uint8_t *bytes, size_t len, char *out, size_t ndigits);

/* SipHash-2-4 of `data` under the 16-byte `key`. */
uint64_t ps_siphash(const uint8_t key[16], const void *data, size_t len);

/* Narrows (*s, *len) past leading and trailing ASCII whitespace (space, \t \n \r \f \v).
 * The one definition of "trim" for identifier types and values, at ingest and at lookup. */
void ps_trim(const char **s, size_t *len);

/* Lowercases ASCII letters of `s` in place. */
void ps_ascii_lower(char *s, size_t len);

/* Percent-decodes `s` once into `out` (capacity at least `len`; not NUL-terminated). A '+'
 * stays a '+' in paths and becomes a space in query strings (`plus_is_space`,
 * form encoding). Returns false for a '%' not followed by two hex digits. *out_len
 * receives the decoded length. */
bool ps_pct_decode(const char *s, size_t len, bool plus_is_space, char *out, size_t *out_len);

/* Base64 without padding in the URL-safe alphabet (RFC 4648 section 5). `out` must hold
 * PS_B64URL_LEN(len) + 1 bytes; it is NUL-terminated. Returns the length written. */
#define PS_B64URL_LEN(n) (((n)*4 + 2) / 3)
size_t ps_b64url_encode(const uint8_t *in, size_t len, char *out);

/* Decodes base64 into `out` (capacity `cap`). `url` selects the URL-safe alphabet without
 * padding; otherwise the standard alphabet, where '=' padding is optional but must be
 * correct. Returns false on any character outside the alphabet, a bad length, non-zero
 * trailing bits, or output beyond `cap`. *out_len receives the decoded length. */
bool ps_b64_decode(const char *in, size_t len, bool url, uint8_t *out, size_t cap, size_t *out_len);

/* The bytes a JSON string scanner must stop at: the quote and the backslash always, control
 * bytes (below 0x20) and bytes from 0x80 on when asked. */
enum { PS_JSON_STOP_CONTROL = 1, PS_JSON_STOP_HIGH = 2 };

/* The first byte of [p, end) that is a stop byte under `stop` (PS_JSON_STOP_* flags), or
 * `end`. Text without one is skipped 16 bytes at a time with SSE2 (every x86-64 has it), then
 * 8 at a time: the zero-byte test ((x - 0x01..) & ~x & 0x80..) and its less-than form flag a
 * byte exactly at the lowest match, since a borrow only moves upward, so the lowest flag of a
 * word is its first stop byte. */
static inline const char *ps_json_string_run(const char *p, const char *end, unsigned stop)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\'),
                  below = _mm_set1_epi8(0x1f);
    while (end - p >= 16) {
        __m128i w = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i m = _mm_or_si128(_mm_cmpeq_epi8(w, quote), _mm_cmpeq_epi8(w, slash));
        if (stop & PS_JSON_STOP_CONTROL) /* unsigned w <= 0x1f: min(w, 0x1f) == w */
            m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_min_epu8(w, below), w));
        unsigned bits = (unsigned)_mm_movemask_epi8(m);
        if (stop & PS_JSON_STOP_HIGH)
            bits |= (unsigned)_mm_movemask_epi8(w); /* the top bit of each byte */
        if (bits)
            return p + __builtin_ctz(bits);
        p += 16;
    }
#endif
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    while (end - p >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, p, 8);
        uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
        uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b);
        if (stop & PS_JSON_STOP_CONTROL)
            hit |= (w - ones * 0x20) & ~w;
        if (stop & PS_JSON_STOP_HIGH)
            hit |= w;
        hit &= highs;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (hit) /* the lowest byte is the first in memory */
            return p + (__builtin_ctzll(hit) >> 3);
#else
        if (hit) /* a borrow moves toward earlier bytes here: find it byte by byte */
            break;
#endif
        p += 8;
    }
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\' || (c < 0x20 && (stop & PS_JSON_STOP_CONTROL)) ||
            (c >= 0x80 && (stop & PS_JSON_STOP_HIGH)))
            break;
    }
    return p;
}

#endif
