/* SPDX-License-Identifier: MIT */
/* The storage codecs' msgpack writer (src/storage/mpack.h) against msgpack-c's packer: the same
 * bytes for every call the codecs make, at and around every boundary of every form. */
#include <msgpack.h>
#include <string.h>

#include "../../src/storage/mpack.h"
#include "check.h"

static int into_buf(void *data, const char *p, size_t len)
{
    ps_buf_append(data, p, len);
    return 0;
}

typedef struct pair {
    ps_buf ours, theirs;
    mpack m;
    msgpack_packer pk;
} pair;

static void pair_init(pair *p)
{
    ps_buf_init(&p->ours);
    ps_buf_init(&p->theirs);
    p->m = (mpack){&p->ours};
    msgpack_packer_init(&p->pk, &p->theirs, into_buf);
}

static void pair_clear(pair *p)
{
    ps_buf_clear(&p->ours);
    ps_buf_clear(&p->theirs);
}

static void pair_reset(pair *p)
{
    ps_buf_reset(&p->ours);
    ps_buf_reset(&p->theirs);
}

static bool same(const pair *p)
{
    return p->ours.len == p->theirs.len && memcmp(p->ours.ptr, p->theirs.ptr, p->ours.len) == 0;
}

/* Values at and next to every boundary of the integer forms, and a spread between them. */
static size_t edges(int64_t *out)
{
    static const int64_t base[] = {0,      31,         32,         127,        128,
                                   255,    256,        65535,      65536,      4294967295ll,
                                   -1,     -31,        -32,        -33,        -127,
                                   -128,   -129,       -32767,     -32768,     -32769,
                                   -2147483647ll, -2147483648ll, -2147483649ll, INT64_MAX, INT64_MIN};
    size_t n = 0;
    for (size_t i = 0; i < sizeof base / sizeof *base; i++)
        for (int64_t d = -1; d <= 1; d++)
            if (!((d < 0 && base[i] == INT64_MIN) || (d > 0 && base[i] == INT64_MAX)))
                out[n++] = base[i] + d;
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (int i = 0; i < 2000; i++) { /* every magnitude: shift a random word */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        out[n++] = (int64_t)(x >> (i % 64));
        out[n++] = -(int64_t)(x >> (i % 63 + 1));
    }
    return n;
}

static void integers(void)
{
    pair p;
    pair_init(&p);
    static int64_t v[4200];
    size_t n = edges(v);
    for (size_t i = 0; i < n; i++) {
        uint64_t u = (uint64_t)v[i];
        pair_reset(&p);
        mp_int(&p.m, v[i]);
        msgpack_pack_int64(&p.pk, v[i]);
        CHECK(same(&p));
        pair_reset(&p);
        mp_uint(&p.m, u);
        msgpack_pack_uint64(&p.pk, u);
        CHECK(same(&p));
        pair_reset(&p);
        mp_uint(&p.m, (uint32_t)u);
        msgpack_pack_uint32(&p.pk, (uint32_t)u);
        CHECK(same(&p));
        pair_reset(&p);
        mp_uint(&p.m, (uint8_t)u);
        msgpack_pack_uint8(&p.pk, (uint8_t)u);
        CHECK(same(&p));
    }
    pair_reset(&p);
    mp_bool(&p.m, true);
    mp_bool(&p.m, false);
    msgpack_pack_true(&p.pk);
    msgpack_pack_false(&p.pk);
    CHECK(same(&p));
end:
    pair_clear(&p);
}

static void headers(void)
{
    pair p;
    pair_init(&p);
    static char bytes[70000];
    memset(bytes, 'x', sizeof bytes);
    static const size_t lens[] = {0,   1,   15,  16,    17,    31,    32,   33,
                                  255, 256, 257, 65535, 65536, 65537, 69999};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        size_t len = lens[i];
        pair_reset(&p);
        mp_str(&p.m, bytes, len);
        msgpack_pack_str(&p.pk, len);
        msgpack_pack_str_body(&p.pk, bytes, len);
        CHECK(same(&p));
        pair_reset(&p);
        mp_bin(&p.m, bytes, len);
        msgpack_pack_bin(&p.pk, len);
        msgpack_pack_bin_body(&p.pk, bytes, len);
        CHECK(same(&p));
        pair_reset(&p);
        mp_array(&p.m, len);
        msgpack_pack_array(&p.pk, len);
        CHECK(same(&p));
    }
end:
    pair_clear(&p);
}

static const test_case tests[] = {
    {"integers", integers},
    {"headers", headers},
};
TEST_MAIN(tests)
