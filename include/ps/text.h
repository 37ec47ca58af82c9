/* SPDX-License-Identifier: MIT */
/* text: UTF-8 validation, base62 and base64url, and a keyed 64-bit hash (SipHash-2-4).
 * Pure functions over bytes; no allocation. */
#ifndef PS_TEXT_H
#define PS_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns true when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
 * When `count` is not NULL it receives the number of code points. */
bool ps_utf8_valid(const uint8_t *s, size_t len, size_t *count);

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

#endif
