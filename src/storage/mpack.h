/* SPDX-License-Identifier: MIT */
/* mpack: the msgpack the storage codecs write, appended straight to a ps_buf. Each function
 * writes the bytes msgpack-c's packer writes for the same call (the smallest form of an
 * integer, of a string, binary or array header), so stored rows do not change; what it saves
 * is msgpack-c's call through a callback for every field. tests/unit/test_mpack.c compares
 * the two. Storage-only, like msgpack itself. */
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

#endif
