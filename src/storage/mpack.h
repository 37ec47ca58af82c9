/* SPDX-License-Identifier: MIT */
/* mpack: the msgpack the storage codecs write, appended straight to a ps_buf, and the reader of
 * a stored row. Each writing function writes the bytes msgpack-c's packer writes for the same
 * call (the smallest form of an integer, of a string, binary or array header), so stored rows
 * do not change; what it saves is msgpack-c's call through a callback for every field. The
 * reader takes what msgpack_unpack() takes and fails where it fails, without building a tree
 * of objects in a zone. tests/unit/test_mpack.c compares both with msgpack-c. Storage-only,
 * like msgpack itself. */
#ifndef PS_MPACK_H
#define PS_MPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ps/mem.h"

typedef struct mpack {
    ps_buf *b;
} mpack;

/* `tag`, then the low `n` bytes of `v`, big-endian. */
static inline void mp_tagged(mpack *m, uint8_t tag, uint64_t v, unsigned n)
{
    uint8_t tmp[9];
    tmp[0] = tag;
    for (unsigned i = 0; i < n; i++)
        tmp[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    ps_buf_append(m->b, tmp, n + 1);
}

static inline void mp_byte(mpack *m, uint8_t c)
{
    ps_buf_append(m->b, &c, 1);
}

/* msgpack_pack_uint8/16/32/64: a positive fixnum below 128, else uint 8/16/32/64. */
static inline void mp_uint(mpack *m, uint64_t d)
{
    if (d < 0x80)
        mp_byte(m, (uint8_t)d);
    else if (d < 0x100)
        mp_tagged(m, 0xcc, d, 1);
    else if (d < 0x10000)
        mp_tagged(m, 0xcd, d, 2);
    else if (d < 0x100000000ull)
        mp_tagged(m, 0xce, d, 4);
    else
        mp_tagged(m, 0xcf, d, 8);
}

/* msgpack_pack_int64: non-negative values as mp_uint, a negative fixnum from -32, else
 * int 8/16/32/64. */
static inline void mp_int(mpack *m, int64_t d)
{
    if (d >= 0)
        mp_uint(m, (uint64_t)d);
    else if (d >= -32)
        mp_byte(m, (uint8_t)d);
    else if (d >= -128)
        mp_tagged(m, 0xd0, (uint64_t)d, 1);
    else if (d >= -32768)
        mp_tagged(m, 0xd1, (uint64_t)d, 2);
    else if (d >= -2147483648ll)
        mp_tagged(m, 0xd2, (uint64_t)d, 4);
    else
        mp_tagged(m, 0xd3, (uint64_t)d, 8);
}

static inline void mp_bool(mpack *m, bool v)
{
    mp_byte(m, v ? 0xc3 : 0xc2);
}

static inline void mp_array(mpack *m, size_t n)
{
    if (n < 16)
        mp_byte(m, (uint8_t)(0x90 | n));
    else if (n < 0x10000)
        mp_tagged(m, 0xdc, n, 2);
    else
        mp_tagged(m, 0xdd, n, 4);
}

/* A length in the smallest of the 8, 16 and 32-bit forms whose tags are t8, t8 + 1, t8 + 2
 * (str and bin both number them so), then the bytes. */
static inline void mp_sized(mpack *m, uint8_t t8, const void *p, size_t len)
{
    if (len < 0x100)
        mp_tagged(m, t8, len, 1);
    else if (len < 0x10000)
        mp_tagged(m, (uint8_t)(t8 + 1), len, 2);
    else
        mp_tagged(m, (uint8_t)(t8 + 2), len, 4);
    ps_buf_append(m->b, p, len);
}

/* A string: fixstr below 32 bytes, else str 8/16/32, then the bytes. */
static inline void mp_str(mpack *m, const void *s, size_t len)
{
    if (len < 32) {
        mp_byte(m, (uint8_t)(0xa0 | len));
        ps_buf_append(m->b, s, len);
    } else {
        mp_sized(m, 0xd9, s, len);
    }
}

static inline void mp_cstr(mpack *m, const char *s)
{
    mp_str(m, s, strlen(s));
}

/* Binary: bin 8/16/32, then the bytes. */
static inline void mp_bin(mpack *m, const void *p, size_t len)
{
    mp_sized(m, 0xc4, p, len);
}

/* ---- reading a row: an array of scalars ---- */

typedef enum mp_kind {
    MP_NIL,
    MP_UINT, /* any integer >= 0, whatever its form (msgpack-c's POSITIVE_INTEGER) */
    MP_INT,  /* a negative integer */
    MP_BOOL,
    MP_STR,
    MP_BIN,
    MP_OTHER /* a float, an extension, a nested array or map: read past, not kept */
} mp_kind;

typedef struct mp_item {
    uint8_t kind;     /* mp_kind */
    uint32_t len;     /* MP_STR, MP_BIN */
    uint64_t u;       /* MP_UINT, MP_INT (as two's complement), MP_BOOL */
    const uint8_t *p; /* MP_STR, MP_BIN: into the row */
} mp_item;

#define MP_ITEMS_MAX 32 /* items kept of a row (rows have at most 24) */
#define MP_DEPTH_MAX 32 /* nested containers read past, as msgpack-c's unpacker allows */

typedef struct mp_reader {
    const uint8_t *p, *end;
} mp_reader;

/* The next `n` bytes as a big-endian number; false when fewer are left. */
static inline bool mp_be(mp_reader *r, unsigned n, uint64_t *v)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    uint64_t x = 0;
    for (unsigned i = 0; i < n; i++)
        x = x << 8 | r->p[i];
    r->p += n;
    *v = x;
    return true;
}

static inline bool mp_skip(mp_reader *r, uint64_t n)
{
    if ((uint64_t)(r->end - r->p) < n)
        return false;
    r->p += n;
    return true;
}

static inline bool mp_value(mp_reader *r, mp_item *it, unsigned depth);

/* Reads past `n` values (2n for a map) inside a container at `depth`. */
static inline bool mp_values(mp_reader *r, uint64_t n, unsigned depth)
{
    mp_item skip;
    if (depth > MP_DEPTH_MAX)
        return false;
    for (uint64_t i = 0; i < n; i++)
        if (!mp_value(r, &skip, depth))
            return false;
    return true;
}

/* One value into `it` (containers, floats and extensions read past as MP_OTHER). */
static inline bool mp_value(mp_reader *r, mp_item *it, unsigned depth)
{
    if (r->p >= r->end)
        return false;
    uint8_t c = *r->p++;
    uint64_t v;
    it->kind = MP_OTHER;
    if (c < 0x80 || c >= 0xe0) { /* positive and negative fixnums */
        it->kind = c < 0x80 ? MP_UINT : MP_INT;
        it->u = c < 0x80 ? c : (uint64_t)(int64_t)(int8_t)c;
        return true;
    }
    if (c <= 0x8f)
        return mp_values(r, 2u * (c & 0x0f), depth + 1);
    if (c <= 0x9f)
        return mp_values(r, c & 0x0f, depth + 1);
    if (c <= 0xbf) {
        it->kind = MP_STR;
        it->len = c & 0x1f;
        it->p = r->p;
        return mp_skip(r, it->len);
    }
    switch (c) {
    case 0xc0: it->kind = MP_NIL; return true;
    case 0xc2:
    case 0xc3:
        it->kind = MP_BOOL;
        it->u = c == 0xc3;
        return true;
    case 0xc4:
    case 0xc5:
    case 0xc6: /* bin 8/16/32 */
    case 0xd9:
    case 0xda:
    case 0xdb: /* str 8/16/32 */
        if (!mp_be(r, 1u << (c <= 0xc6 ? c - 0xc4 : c - 0xd9), &v))
            return false;
        it->kind = c <= 0xc6 ? MP_BIN : MP_STR;
        it->len = (uint32_t)v;
        it->p = r->p;
        return mp_skip(r, v);
    case 0xc7:
    case 0xc8:
    case 0xc9: /* ext 8/16/32: a length, a type byte, the data */
        return mp_be(r, 1u << (c - 0xc7), &v) && mp_skip(r, v + 1);
    case 0xca: return mp_skip(r, 4);
    case 0xcb: return mp_skip(r, 8);
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: it->kind = MP_UINT; return mp_be(r, 1u << (c - 0xcc), &it->u);
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        unsigned n = 1u << (c - 0xd0);
        if (!mp_be(r, n, &v))
            return false;
        if (n < 8 && (v >> (8 * n - 1)) != 0)
            v |= ~0ull << (8 * n); /* sign-extend */
        it->kind = (int64_t)v < 0 ? MP_INT : MP_UINT;
        it->u = v;
        return true;
    }
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: /* fixext: a type byte, 1-16 bytes */ return mp_skip(r, 1 + (1u << (c - 0xd4)));
    case 0xdc:
    case 0xdd: return mp_be(r, c == 0xdc ? 2 : 4, &v) && mp_values(r, v, depth + 1);
    case 0xde:
    case 0xdf: return mp_be(r, c == 0xde ? 2 : 4, &v) && mp_values(r, 2 * v, depth + 1);
    default: /* 0xc1 is never used */ return false;
    }
}

/* Reads a row: exactly one msgpack value, an array. `items` gets its first MP_ITEMS_MAX items
 * and `count` its length. False when the bytes are not that (truncated, trailing bytes, not
 * an array, a byte msgpack does not use). */
static inline bool mp_read_row(const uint8_t *p, size_t n, mp_item items[MP_ITEMS_MAX],
                               uint32_t *count)
{
    mp_reader r = {p, p + n};
    uint64_t len;
    if (n == 0)
        return false;
    uint8_t c = *r.p++;
    if (c >= 0x90 && c <= 0x9f)
        len = c & 0x0f;
    else if (c != 0xdc && c != 0xdd)
        return false;
    else if (!mp_be(&r, c == 0xdc ? 2 : 4, &len))
        return false;
    for (uint64_t i = 0; i < len; i++) {
        mp_item skip;
        if (!mp_value(&r, i < MP_ITEMS_MAX ? &items[i] : &skip, 1))
            return false;
    }
    *count = (uint32_t)len;
    return r.p == r.end;
}

#endif
