/* SPDX-License-Identifier: MIT */
/* The storage codecs' msgpack writer (src/storage/mpack.h) against msgpack-c's packer: the same
 * bytes for every call the codecs make, at and around every boundary of every form. Its row
 * reader against msgpack_unpack(): the same bytes accepted, the same items read. */
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


/* ---- the reader against msgpack_unpack ---- */

/* msgpack_unpack() allocates for an array's count before it reads the items: a changed byte
 * can make it ask for gigabytes, which must be refused (a NULL it turns into an error) rather
 * than stop the test. The reader allocates nothing. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static uint64_t rnd_state = 0x2545F4914F6CDD1Du;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13, rnd_state ^= rnd_state >> 7, rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* One random value of any kind the reader must keep or read past. */
static void pack_any(msgpack_packer *pk, int depth)
{
    static char bytes[300];
    memset(bytes, 'b', sizeof bytes);
    uint64_t x = rnd();
    int64_t i = (int64_t)(x >> (rnd() % 64));
    switch (rnd() % (depth < 2 ? 14 : 12)) {
    case 0: msgpack_pack_uint64(pk, x >> (rnd() % 64)); break;
    case 1: msgpack_pack_int64(pk, -i); break;
    case 2: msgpack_pack_int8(pk, (int8_t)x); break;   /* signed forms of any sign */
    case 3: msgpack_pack_int16(pk, (int16_t)x); break;
    case 4: msgpack_pack_int32(pk, (int32_t)x); break;
    case 5: msgpack_pack_nil(pk); break;
    case 6: (x & 1) ? msgpack_pack_true(pk) : msgpack_pack_false(pk); break;
    case 7: {
        size_t n = rnd() % 300;
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, bytes, n);
        break;
    }
    case 8: {
        size_t n = rnd() % 300;
        msgpack_pack_bin(pk, n);
        msgpack_pack_bin_body(pk, bytes, n);
        break;
    }
    case 9: (x & 1) ? msgpack_pack_float(pk, 1.5f) : msgpack_pack_double(pk, -2.25); break;
    case 10: {
        static const size_t sizes[] = {1, 2, 4, 8, 16, 3, 0, 200};
        size_t n = sizes[rnd() % 8];
        msgpack_pack_ext(pk, n, 7);
        msgpack_pack_ext_body(pk, bytes, n);
        break;
    }
    case 11: msgpack_pack_uint8(pk, (uint8_t)x); break;
    case 12: {
        size_t n = rnd() % 4;
        msgpack_pack_array(pk, n);
        for (size_t k = 0; k < n; k++)
            pack_any(pk, depth + 1);
        break;
    }
    default: {
        size_t n = rnd() % 3;
        msgpack_pack_map(pk, n);
        for (size_t k = 0; k < 2 * n; k++)
            pack_any(pk, depth + 1);
        break;
    }
    }
}

static bool same_item(const msgpack_object *o, const mp_item *it)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return it->kind == MP_UINT && it->u == o->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return it->kind == MP_INT && (int64_t)it->u == o->via.i64;
    case MSGPACK_OBJECT_NIL: return it->kind == MP_NIL;
    case MSGPACK_OBJECT_BOOLEAN: return it->kind == MP_BOOL && it->u == o->via.boolean;
    case MSGPACK_OBJECT_STR:
        return it->kind == MP_STR && it->len == o->via.str.size &&
               (it->len == 0 || it->p == (const uint8_t *)o->via.str.ptr);
    case MSGPACK_OBJECT_BIN:
        return it->kind == MP_BIN && it->len == o->via.bin.size &&
               (it->len == 0 || it->p == (const uint8_t *)o->via.bin.ptr);
    default: return it->kind == MP_OTHER; /* floats, extensions, arrays, maps */
    }
}

/* Both readers accept the same bytes, and see the same items where they do. */
static bool agree(const uint8_t *p, size_t n, msgpack_zone *z)
{
    size_t off = 0;
    msgpack_object o;
    msgpack_zone_clear(z);
    msgpack_unpack_return rc = msgpack_unpack((const char *)p, n, &off, z, &o);
    bool theirs = rc == MSGPACK_UNPACK_SUCCESS && o.type == MSGPACK_OBJECT_ARRAY;
    static mp_item items[MP_ITEMS_MAX];
    uint32_t count = 0;
    bool ours = mp_read_row(p, n, items, &count);
    if (ours != theirs)
        return false;
    if (!ours)
        return true;
    if (count != o.via.array.size)
        return false;
    for (uint32_t i = 0; i < count && i < MP_ITEMS_MAX; i++)
        if (!same_item(&o.via.array.ptr[i], &items[i]))
            return false;
    return true;
}

static void reader_agrees(void)
{
    ps_buf b;
    ps_buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, into_buf);
    msgpack_zone z;
    msgpack_zone_init(&z, 2048);
    static uint8_t m[20000];
    for (int round = 0; round < 1000; round++) {
        ps_buf_reset(&b);
        size_t items = round % 5 == 0 ? rnd() % 40 : rnd() % 16; /* some past MP_ITEMS_MAX */
        msgpack_pack_array(&pk, items);
        for (size_t i = 0; i < items; i++)
            pack_any(&pk, 0);
        CHECK(b.len < sizeof m);
        CHECK(agree(b.ptr, b.len, &z));
        /* every cut, a trailing byte, and bytes changed at random */
        for (size_t cut = 0; cut < b.len; cut += 1 + b.len / 64)
            CHECK(agree(b.ptr, cut, &z));
        memcpy(m, b.ptr, b.len);
        m[b.len] = 0xc0;
        CHECK(agree(m, b.len + 1, &z));
        for (int k = 0; k < 20 && b.len; k++) {
            memcpy(m, b.ptr, b.len);
            m[rnd() % b.len] = (uint8_t)rnd();
            if (k % 4 == 0)
                m[rnd() % b.len] = (uint8_t)(0xc0 + rnd() % 0x20); /* a tag byte */
            CHECK(agree(m, b.len, &z));
        }
    }
    /* not arrays, nothing, a byte msgpack never uses */
    static const uint8_t odd[][3] = {{0x01}, {0xc0}, {0xa1, 'x'}, {0x91, 0xc1}, {0xc1}};
    static const size_t odd_len[] = {1, 1, 2, 2, 1};
    for (size_t i = 0; i < 5; i++)
        CHECK(agree(odd[i], odd_len[i], &z));
    CHECK(agree(odd[0], 0, &z));
end:
    msgpack_zone_destroy(&z);
    ps_buf_clear(&b);
}

static const test_case tests[] = {
    {"integers", integers},
    {"headers", headers},
    {"reader_agrees", reader_agrees},
};
TEST_MAIN(tests)
