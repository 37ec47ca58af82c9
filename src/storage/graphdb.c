/* SPDX-License-Identifier: MIT */
/* graphdb: the identity graph's tables: profiles (with a write transaction's record cache),
 * segment ids, identifiers, profile identifiers, members and identifier types. */
#include "store_int.h"

#include <pthread.h>
#include <stddef.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ps/text.h"

/* ---- profile ---- */

static ps_status decode_profile(ps_txn *t, uint64_t seq, const MDB_val *v, ps_profile *p)
{
    rec r;
    ps_status st = decode(t, v, 14, &r);
    if (st != PS_OK)
        return st;
    p->seq = seq;
    p->parent = r_u64(&r, 0);
    p->merged_into = r_u64(&r, 1);
    p->collection = (uint8_t)r_u64(&r, 2);
    p->member_count = (uint32_t)r_u64(&r, 3);
    p->mapping_count = (uint32_t)r_u64(&r, 4);
    p->created_ms = r_i64(&r, 5);
    p->updated_ms = r_i64(&r, 6);
    p->merged_ms = r_i64(&r, 7);
    r_cstr(&r, 8, p->segment_id, sizeof p->segment_id);
    r_cstr(&r, 9, p->first_message_id, sizeof p->first_message_id);
    r_cstr(&r, 10, p->last_message_id, sizeof p->last_message_id);
    r_cstr(&r, 11, p->first_source_id, sizeof p->first_source_id);
    r_cstr(&r, 12, p->last_source_id, sizeof p->last_source_id);
    r_cstr(&r, 13, p->merged_by_message_id, sizeof p->merged_by_message_id);
    p->created_by = r.count > 14 ? r_u64(&r, 14) : 0; /* records before it have 14 fields */
    return PS_OK;
}

/* A write transaction keeps the profile records it reads and writes in memory (an event
 * reads its profiles several times and updates one), and writes each changed record once, in
 * sequence order, before it commits or scans profiles. A cached record holds the numbers and
 * the six strings packed one after another (328 bytes, against 1,456 for a ps_profile
 * with its fixed arrays), so that the cache's records stay few cache lines each. */
#define PCACHE_MAX 131072 /* records; past it the changed ones are written and all dropped */
#define PCACHE_BLOCK 256  /* records are allocated this many at a time, never moved */
#define PC_STRS 6
#define PC_TEXT 240 /* the strings' bytes held in the record; longer ones go to the heap */

/* The numbers a record keeps, each under its ps_profile name. */
/* clang-format off */
#define PC_NUMBERS(X)                                                                              \
    X(parent) X(merged_into) X(created_by)                                                         \
    X(created_ms) X(updated_ms) X(merged_ms)                                                       \
    X(member_count) X(mapping_count) X(collection)
/* clang-format on */

typedef struct pcache_rec {
    uint64_t parent, merged_into, created_by;
    int64_t created_ms, updated_ms, merged_ms;
    uint32_t member_count, mapping_count;
    uint8_t collection;
    uint16_t len[PC_STRS]; /* without the NUL */
    uint32_t heap_cap;     /* bytes at `heap` (0: none) */
    char *heap;            /* the strings when they do not fit `text` */
    char text[PC_TEXT];
} pcache_rec;

typedef struct pcache_slot {
    uint64_t seq;
    uint32_t rec; /* index of the record; slots with seq 0 are free (sequences start at 1) */
    bool dirty;
} pcache_slot;

typedef struct pcache {
    pcache_slot *slots;
    size_t cap, count;
    pcache_rec *blocks[PCACHE_MAX / PCACHE_BLOCK];
} pcache;

static pcache_rec *pc_rec(pcache *c, uint32_t i)
{
    return &c->blocks[i / PCACHE_BLOCK][i % PCACHE_BLOCK];
}

/* Where a profile's strings are, in the order a record packs them. */
static const size_t pc_fields[PC_STRS] = {
    offsetof(ps_profile, segment_id),      offsetof(ps_profile, first_message_id),
    offsetof(ps_profile, last_message_id), offsetof(ps_profile, first_source_id),
    offsetof(ps_profile, last_source_id),  offsetof(ps_profile, merged_by_message_id),
};

static const char *pc_text(const pcache_rec *r)
{
    return r->heap_cap ? r->heap : r->text;
}

static void pc_store(pcache_rec *r, const ps_profile *p)
{
    size_t total = 0;
    for (int i = 0; i < PC_STRS; i++) {
        r->len[i] = (uint16_t)strlen((const char *)p + pc_fields[i]);
        total += r->len[i] + 1u;
    }
    char *to = r->text;
    if (total > PC_TEXT) {
        if (r->heap_cap < total) {
            free(r->heap);
            r->heap = ps_xmalloc(total);
            r->heap_cap = (uint32_t)total;
        }
        to = r->heap;
    } else if (r->heap_cap) { /* back to the record's own bytes */
        free(r->heap);
        r->heap = NULL;
        r->heap_cap = 0;
    }
    for (int i = 0; i < PC_STRS; i++) {
        memcpy(to, (const char *)p + pc_fields[i], r->len[i] + 1u);
        to += r->len[i] + 1u;
    }
#define PC_TO_REC(f) r->f = p->f;
    PC_NUMBERS(PC_TO_REC)
#undef PC_TO_REC
}

static void pc_load(const pcache_rec *r, uint64_t seq, ps_profile *p)
{
    const char *from = pc_text(r);
    for (int i = 0; i < PC_STRS; i++) {
        memcpy((char *)p + pc_fields[i], from, r->len[i] + 1u);
        from += r->len[i] + 1u;
    }
    p->seq = seq;
#define PC_TO_PROFILE(f) p->f = r->f;
    PC_NUMBERS(PC_TO_PROFILE)
#undef PC_TO_PROFILE
}

static size_t pc_hash(uint64_t seq, size_t cap)
{
    return (size_t)((seq * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

void st_profiles_drop(ps_txn *t)
{
    pcache *c = t->pc;
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->count; i++)
        free(pc_rec(c, (uint32_t)i)->heap);
    for (size_t i = 0; i < PCACHE_MAX / PCACHE_BLOCK && c->blocks[i]; i++)
        free(c->blocks[i]);
    free(c->slots);
    free(c);
    t->pc = NULL;
}

/* The slot of `seq`, or (insert) a new one with an empty record for it; NULL when absent and
 * not inserting. Never called to insert with PCACHE_MAX records in. */
static pcache_slot *pc_slot(ps_txn *t, uint64_t seq, bool insert)
{
    pcache *c = t->pc;
    if (c == NULL) {
        if (!insert)
            return NULL;
        c = t->pc = ps_xcalloc(1, sizeof *c);
        c->cap = 1024;
        c->slots = ps_xcalloc(c->cap, sizeof *c->slots);
    }
    if (insert && (c->count + 1) * 2 > c->cap) { /* grow: rehash the small slots */
        pcache_slot *old = c->slots;
        size_t oc = c->cap;
        c->cap *= 2;
        c->slots = ps_xcalloc(c->cap, sizeof *c->slots);
        for (size_t i = 0; i < oc; i++) {
            if (old[i].seq == 0)
                continue;
            size_t j = pc_hash(old[i].seq, c->cap);
            while (c->slots[j].seq)
                j = (j + 1) & (c->cap - 1);
            c->slots[j] = old[i];
        }
        free(old);
    }
    for (size_t i = pc_hash(seq, c->cap);; i = (i + 1) & (c->cap - 1)) {
        if (c->slots[i].seq == seq)
            return &c->slots[i];
        if (c->slots[i].seq == 0) {
            if (!insert)
                return NULL;
            PS_ASSERT(c->count < PCACHE_MAX);
            uint32_t r = (uint32_t)c->count++;
            if (c->blocks[r / PCACHE_BLOCK] == NULL)
                c->blocks[r / PCACHE_BLOCK] = ps_xmalloc(PCACHE_BLOCK * sizeof(pcache_rec));
            pcache_rec *fresh = pc_rec(c, r);
            fresh->heap = NULL;
            fresh->heap_cap = 0;
            c->slots[i] = (pcache_slot){seq, r, false};
            return &c->slots[i];
        }
    }
}

static ps_status profile_write(ps_txn *t, uint64_t seq, const pcache_rec *r)
{
    mpack pk = pk_begin(t, 15);
    mp_uint(&pk, r->parent);
    mp_uint(&pk, r->merged_into);
    mp_uint(&pk, r->collection);
    mp_uint(&pk, r->member_count);
    mp_uint(&pk, r->mapping_count);
    mp_int(&pk, r->created_ms);
    mp_int(&pk, r->updated_ms);
    mp_int(&pk, r->merged_ms);
    const char *s = pc_text(r);
    for (int i = 0; i < PC_STRS; i++) {
        mp_str(&pk, s, r->len[i]);
        s += r->len[i] + 1u;
    }
    mp_uint(&pk, r->created_by);
    key_reset(t);
    key_u64(t, seq);
    return put_val(t, DB_PROFILE);
}

static int cmp_slot_seq(const void *a, const void *b)
{
    uint64_t x = (*(pcache_slot *const *)a)->seq, y = (*(pcache_slot *const *)b)->seq;
    return (x > y) - (x < y);
}

/* Writes the changed records, in sequence order; `drop` empties the cache too. */
ps_status st_profiles_flush(ps_txn *t, bool drop)
{
    pcache *c = t->pc;
    if (c == NULL)
        return PS_OK;
    pcache_slot **dirty = ps_xmalloc((c->count + 1) * sizeof *dirty);
    size_t n = 0;
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].seq && c->slots[i].dirty)
            dirty[n++] = &c->slots[i];
    qsort(dirty, n, sizeof *dirty, cmp_slot_seq);
    ps_status st = PS_OK;
    for (size_t i = 0; i < n && st == PS_OK; i++) {
        st = profile_write(t, dirty[i]->seq, pc_rec(c, dirty[i]->rec));
        dirty[i]->dirty = false;
    }
    free(dirty);
    if (drop || st != PS_OK)
        st_profiles_drop(t);
    return st;
}

ps_status ps_store_profile_get(ps_txn *t, uint64_t seq, ps_profile *out)
{
    pcache_slot *slot = t->write && seq ? pc_slot(t, seq, false) : NULL;
    if (slot) {
        pc_load(pc_rec(t->pc, slot->rec), seq, out);
        return PS_OK;
    }
    key_reset(t);
    key_u64(t, seq);
    MDB_val v;
    ps_status st = get_raw(t, DB_PROFILE, &v);
    if (st == PS_OK)
        st = decode_profile(t, seq, &v, out);
    if (st == PS_OK && t->write && seq && (t->pc == NULL || t->pc->count < PCACHE_MAX)) {
        pcache_slot *in = pc_slot(t, seq, true);
        pc_store(pc_rec(t->pc, in->rec), out);
    }
    return st;
}

ps_status ps_store_profile_parent(ps_txn *t, uint64_t seq, uint64_t *parent)
{
    pcache_slot *slot = t->write && seq ? pc_slot(t, seq, false) : NULL;
    if (slot) {
        *parent = pc_rec(t->pc, slot->rec)->parent;
        return PS_OK;
    }
    if (t->write) { /* read whole, into the cache, as the event goes on to use it */
        ps_profile p;
        ps_status st = ps_store_profile_get(t, seq, &p);
        *parent = st == PS_OK ? p.parent : 0;
        return st;
    }
    key_reset(t);
    key_u64(t, seq);
    MDB_val v;
    rec r;
    ps_status st = get_raw(t, DB_PROFILE, &v);
    if (st == PS_OK)
        st = decode(t, &v, 14, &r);
    *parent = st == PS_OK ? r_u64(&r, 0) : 0;
    return st;
}

ps_status ps_store_profile_put(ps_txn *t, const ps_profile *p)
{
    PS_ASSERT(t->write && p->seq);
    if (t->pc && t->pc->count >= PCACHE_MAX) {
        ps_status st = st_profiles_flush(t, true);
        if (st != PS_OK)
            return st;
    }
    pcache_slot *slot = pc_slot(t, p->seq, true);
    pc_store(pc_rec(t->pc, slot->rec), p);
    slot->dirty = true;
    return PS_OK;
}

ps_status ps_store_segid_get(ps_txn *t, const char *segment_id, uint64_t *seq)
{
    key_reset(t);
    key_bytes(t, segment_id, strlen(segment_id));
    MDB_val v;
    ps_status st = get_raw(t, DB_SEGID, &v);
    if (st != PS_OK)
        return st;
    rec r;
    if ((st = decode(t, &v, 1, &r)) == PS_OK)
        *seq = r_u64(&r, 0);
    return st;
}

ps_status ps_store_segid_put(ps_txn *t, const char *segment_id, uint64_t seq)
{
    mpack pk = pk_begin(t, 1);
    mp_uint(&pk, seq);
    key_reset(t);
    key_bytes(t, segment_id, strlen(segment_id));
    MDB_val k = kv(&t->key), v = {t->val.len, t->val.ptr};
    int rc = mdb_put(t->txn, t->store->dbi[DB_SEGID], &k, &v, MDB_NOOVERWRITE);
    PS_ASSERT(rc != MDB_KEYEXIST); /* 160-bit ids: a collision means a bug, not bad luck */
    return map_rc(rc, "segid");
}

typedef struct profile_iter {
    ps_profile_fn fn;
    void *ud;
} profile_iter;

static bool profile_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    profile_iter *it = ud;
    ps_profile p;
    if (k->mv_size != 8) {
        *st = PS_ECORRUPT;
        return false;
    }
    if ((*st = decode_profile(t, ps_get_be64(k->mv_data), v, &p)) != PS_OK)
        return false;
    return it->fn(it->ud, &p);
}

ps_status ps_store_profile_scan(ps_txn *t, uint64_t from_seq, ps_profile_fn fn, void *ud)
{
    ps_status fst = t->write ? st_profiles_flush(t, false) : PS_OK;
    if (fst != PS_OK)
        return fst;
    profile_iter it = {fn, ud};
    uint8_t start[8];
    ps_put_be64(start, from_seq);
    key_reset(t);
    return iterate(t, DB_PROFILE, start, 8, profile_visit, &it);
}

ps_status ps_store_profile_scan_desc(ps_txn *t, uint64_t before_seq, ps_profile_fn fn, void *ud)
{
    MDB_cursor *cur;
    int rc = cur_open(t, t->store->dbi[DB_PROFILE], &cur);
    if (rc)
        return map_rc(rc, "profile");
    uint8_t start[8];
    ps_put_be64(start, before_seq);
    MDB_val k = {8, start}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    rc = rc == 0              ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
         : rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
                              : rc;
    ps_status st = PS_OK;
    profile_iter it = {fn, ud};
    while (rc == 0 && profile_visit(t, &it, &k, &v, &st))
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    if (rc && rc != MDB_NOTFOUND && st == PS_OK)
        st = map_rc(rc, "profile");
    cur_close(t, cur);
    return st;
}

/* ---- ident ---- */

/* Resolution looks most identifiers up again and again (a device id on each of its events),
 * so write transactions keep the rows they read or write in a hash table keyed like the
 * table: the row's bytes, written through on put and delete. It lives as long as the store
 * and is trusted only by a write transaction that directly follows this process's last
 * commit. Past ICACHE_MAX_BYTES it starts empty again. */
#define ICACHE_MAX_BYTES (64u << 20)

typedef struct icache_ent {
    uint32_t klen, vlen, vcap;
    _Alignas(8) unsigned char bytes[]; /* the key, then room for vcap value bytes */
} icache_ent;

static icache_ent icache_tomb; /* a deleted slot: probing goes on past it */

/* The hash sits in the slot, so that probing past other keys reads no entry. */
typedef struct icache_slot {
    uint64_t hash;
    icache_ent *e; /* NULL: empty */
} icache_slot;

/* The hashes of the last few keys: an identifier's key is hashed for the two prefetch stages,
 * the lookup and the write, and SipHash costs several times the comparison that finds it
 * here. Direct-mapped; a key longer than MEMO_KEY_MAX is hashed each time. */
#define MEMO_SLOTS 32
#define MEMO_KEY_MAX 88

typedef struct hash_memo {
    uint32_t klen; /* 0: empty */
    uint64_t hash;
    unsigned char key[MEMO_KEY_MAX];
} hash_memo;

typedef struct icache {
    icache_slot *slots;
    size_t cap, used; /* used: live entries and tombstones */
    size_t bytes;     /* allocated to entries */
    size_t last_txn;  /* this process's last commit, 0 when not known */
    ps_arena arena;
    hash_memo memo[MEMO_SLOTS];
} icache;

/* The cache's hash key, drawn once per process: identifiers come from anyone who holds a write
 * key, and with a key they could read in the source they could choose values that all land in
 * one run of slots. */
static uint8_t ic_key[16];
static pthread_once_t ic_key_once = PTHREAD_ONCE_INIT;

static void ic_key_draw(void)
{
    if (getrandom(ic_key, sizeof ic_key, 0) != (ssize_t)sizeof ic_key) {
        uint64_t a = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32), b = (uintptr_t)&a;
        memcpy(ic_key, &a, 8); /* no entropy source: at least not the same for everyone */
        memcpy(ic_key + 8, &b, 8);
    }
}

void st_icache_clear(ps_store *s)
{
    icache *c = s->icache;
    if (c == NULL)
        return;
    ps_arena_clear(&c->arena);
    free(c->slots);
    memset(c, 0, sizeof *c);
}

void st_icache_begin(ps_txn *t)
{
    pthread_once(&ic_key_once, ic_key_draw);
    icache *c = t->store->icache;
    if (c == NULL)
        c = t->store->icache = ps_xcalloc(1, sizeof *c);
    if (c->last_txn == 0 || c->last_txn + 1 != mdb_txn_id(t->txn))
        st_icache_clear(t->store);
}

void st_icache_committed(ps_store *s, size_t id)
{
    if (s->icache)
        s->icache->last_txn = id;
}

static uint64_t ic_hash(icache *c, const unsigned char *p, size_t n)
{
    if (n == 0 || n > MEMO_KEY_MAX)
        return ps_siphash(ic_key, p, n);
    /* the memo's slot from the key's last bytes and its length: not a defence against chosen
     * keys, and it needs none (a clash costs a SipHash, never a wrong answer) */
    uint64_t tail = 0;
    memcpy(&tail, p + n - (n < 8 ? n : 8), n < 8 ? n : 8);
    hash_memo *m = &c->memo[((tail ^ n) * 0x9e3779b97f4a7c15ULL) >> 59];
    if (m->klen == n && memcmp(m->key, p, n) == 0)
        return m->hash;
    m->klen = (uint32_t)n;
    memcpy(m->key, p, n);
    return m->hash = ps_siphash(ic_key, p, n);
}

/* The slot holding the key, else the slot where it would go (a tombstone or an empty one). */
static size_t ic_probe(const icache *c, const unsigned char *key, size_t klen, uint64_t h)
{
    size_t free_at = SIZE_MAX;
    for (size_t i = h & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        const icache_slot *sl = &c->slots[i];
        if (sl->e == NULL)
            return free_at != SIZE_MAX ? free_at : i;
        if (sl->e == &icache_tomb) {
            if (free_at == SIZE_MAX)
                free_at = i;
        } else if (sl->hash == h && sl->e->klen == klen && memcmp(sl->e->bytes, key, klen) == 0) {
            return i;
        }
    }
}

static bool ic_live(const icache_ent *e)
{
    return e != NULL && e != &icache_tomb;
}

/* The hash of the key in t->key: `given` when the caller computed it ahead (checked against
 * the key in debug builds, where a wrong one would file the row twice), else computed. */
static uint64_t ic_key_hash(icache *c, const ps_txn *t, uint64_t given)
{
#ifndef NDEBUG
    PS_ASSERT(given == 0 || given == ps_siphash(ic_key, t->key.ptr, t->key.len));
#endif
    return given ? given : ic_hash(c, t->key.ptr, t->key.len);
}

/* The cached row of the key in t->key, or NULL. `given`: its hash, or 0. */
static icache_ent *ic_get(ps_txn *t, uint64_t given)
{
    icache *c = t->store->icache;
    if (!t->write || c == NULL || c->cap == 0)
        return NULL;
    const unsigned char *key = t->key.ptr;
    uint64_t h = ic_key_hash(c, t, given);
    icache_ent *e = c->slots[ic_probe(c, key, t->key.len, h)].e;
    return ic_live(e) ? e : NULL;
}

static void ic_grow(icache *c)
{
    size_t oc = c->cap;
    icache_slot *old = c->slots;
    c->cap = oc ? oc * 2 : 4096;
    c->slots = ps_xcalloc(c->cap, sizeof *c->slots);
    c->used = 0;
    for (size_t i = 0; i < oc; i++) {
        if (!ic_live(old[i].e))
            continue;
        size_t j = old[i].hash & (c->cap - 1);
        while (c->slots[j].e)
            j = (j + 1) & (c->cap - 1);
        c->slots[j] = old[i];
        c->used++;
    }
    free(old);
}

/* Records the row of the key in t->key: its value, or (value NULL) that it is gone. `given`:
 * the key's hash, or 0. */
static void ic_set(ps_txn *t, const void *value, size_t vlen, uint64_t given)
{
    icache *c = t->store->icache;
    if (!t->write || c == NULL)
        return;
    if (value && c->bytes > ICACHE_MAX_BYTES) {
        size_t last = c->last_txn;
        st_icache_clear(t->store);
        c->last_txn = last;
    }
    if ((c->used + 1) * 2 > c->cap) {
        if (value == NULL && c->cap == 0)
            return;
        ic_grow(c);
    }
    const unsigned char *key = t->key.ptr;
    size_t klen = t->key.len;
    uint64_t h = ic_key_hash(c, t, given);
    size_t i = ic_probe(c, key, klen, h);
    icache_ent *e = c->slots[i].e;
    if (value == NULL) {
        if (ic_live(e))
            c->slots[i].e = &icache_tomb;
        return;
    }
    if (!ic_live(e) || e->vcap < vlen) {
        size_t need = sizeof *e + klen + vlen;
        icache_ent *n = ps_arena_alloc(&c->arena, need);
        c->bytes += need;
        n->klen = (uint32_t)klen;
        n->vcap = (uint32_t)vlen;
        memcpy(n->bytes, key, klen);
        if (e == NULL)
            c->used++;
        c->slots[i] = (icache_slot){h, n};
        e = n;
    }
    e->vlen = (uint32_t)vlen;
    memcpy(e->bytes + e->klen, value, vlen);
}

static void ident_key(ps_txn *t, uint8_t coll, const char *type, const char *value, size_t vlen)
{
    key_reset(t);
    key_bytes(t, &coll, 1);
    key_bytes(t, type, strlen(type) + 1);
    key_bytes(t, value, vlen);
}

static ps_status decode_mapping(ps_txn *t, const MDB_val *v, ps_mapping *m)
{
    rec r;
    ps_status st = decode(t, v, 6, &r);
    if (st != PS_OK)
        return st;
    m->profile = r_u64(&r, 0);
    m->map_seq = r_u64(&r, 1);
    m->first_seen_ms = r_i64(&r, 2);
    m->created_ms = r_i64(&r, 3);
    r_cstr(&r, 4, m->source_id, sizeof m->source_id);
    r_cstr(&r, 5, m->first_message_id, sizeof m->first_message_id);
    m->shared = r.count > 6 && r_bool(&r, 6); /* written only when true */
    return PS_OK;
}

uint64_t ps_store_ident_hash(uint8_t coll, const char *type, const char *value, size_t value_len)
{
    pthread_once(&ic_key_once, ic_key_draw);
    size_t tl = strlen(type) + 1, n = 1 + tl + value_len; /* ident_key()'s layout */
    unsigned char small[512], *k = n <= sizeof small ? small : ps_xmalloc(n);
    k[0] = coll;
    memcpy(k + 1, type, tl);
    memcpy(k + 1 + tl, value, value_len);
    uint64_t h = ps_siphash(ic_key, k, n);
    if (k != small)
        free(k);
    return h;
}

void ps_store_ident_prefetch(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len, uint64_t hash, int stage)
{
    icache *c = t->store->icache;
    if (!t->write || c == NULL || c->cap == 0)
        return;
    if (hash == 0) {
        ident_key(t, coll, type, value, value_len);
        hash = ic_hash(c, t->key.ptr, t->key.len);
    }
    const icache_slot *sl = &c->slots[hash & (c->cap - 1)];
    if (stage == 0) {
        __builtin_prefetch(sl);
    } else if (ic_live(sl->e)) {
        __builtin_prefetch(sl->e); /* its key and the start of its row */
        __builtin_prefetch((const char *)sl->e + 64);
    }
}

/* The identifier's row, from the cache or the table (then cached). `hash`: its
 * ps_store_ident_hash(), or 0. */
static ps_status ident_row(ps_txn *t, uint8_t coll, const char *type, const char *value,
                           size_t value_len, uint64_t hash, MDB_val *v)
{
    ident_key(t, coll, type, value, value_len);
    icache_ent *e = ic_get(t, hash);
    if (e) {
        *v = (MDB_val){e->vlen, e->bytes + e->klen};
        return PS_OK;
    }
    ps_status st = get_raw(t, DB_IDENT, v);
    if (st == PS_OK)
        ic_set(t, v->mv_data, v->mv_size, hash);
    return st;
}

ps_status ps_store_ident_get(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len, ps_mapping *out)
{
    MDB_val v;
    ps_status st = ident_row(t, coll, type, value, value_len, 0, &v);
    return st == PS_OK ? decode_mapping(t, &v, out) : st;
}

ps_status ps_store_ident_profile(ps_txn *t, uint8_t coll, const char *type, const char *value,
                                 size_t value_len, uint64_t hash, uint64_t *profile, bool *shared)
{
    MDB_val v;
    ps_status st = ident_row(t, coll, type, value, value_len, hash, &v);
    rec r;
    if (st == PS_OK && (st = decode(t, &v, 6, &r)) == PS_OK) {
        *profile = r_u64(&r, 0);
        *shared = r.count > 6 && r_bool(&r, 6);
    }
    return st;
}

ps_status ps_store_ident_put(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len, const ps_mapping *m)
{
    mpack pk = pk_begin(t, m->shared ? 7 : 6);
    mp_uint(&pk, m->profile);
    mp_uint(&pk, m->map_seq);
    mp_int(&pk, m->first_seen_ms);
    mp_int(&pk, m->created_ms);
    mp_cstr(&pk, m->source_id);
    mp_cstr(&pk, m->first_message_id);
    if (m->shared)
        mp_bool(&pk, true);
    ident_key(t, coll, type, value, value_len);
    ps_status st = put_val(t, DB_IDENT);
    if (st == PS_OK)
        ic_set(t, t->val.ptr, t->val.len, 0);
    return st;
}

ps_status ps_store_ident_del(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len)
{
    ident_key(t, coll, type, value, value_len);
    ps_status st = del_key(t, DB_IDENT);
    if (st == PS_OK || st == PS_ENOTFOUND)
        ic_set(t, NULL, 0, 0);
    return st;
}

/* The type and value of an ident or pmap key: `skip` bytes (collection, or profile), the
 * type, NUL, the value. Both come out NUL-terminated; false when the key is not so shaped. */
static bool split_type_value(const MDB_val *k, size_t skip, char type[PS_ID_BYTES],
                             char value[PS_ID_BYTES], size_t *value_len)
{
    const uint8_t *p = k->mv_data;
    const uint8_t *nul = k->mv_size > skip ? memchr(p + skip, 0, k->mv_size - skip) : NULL;
    if (nul == NULL)
        return false;
    size_t tl = (size_t)(nul - (p + skip)), vl = k->mv_size - (size_t)(nul + 1 - p);
    if (tl >= PS_ID_BYTES || vl >= PS_ID_BYTES)
        return false;
    memcpy(type, p + skip, tl);
    type[tl] = 0;
    memcpy(value, nul + 1, vl);
    value[vl] = 0;
    *value_len = vl;
    return true;
}

typedef struct ident_iter {
    ps_ident_fn fn;
    void *ud;
} ident_iter;

static bool ident_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    ident_iter *it = ud;
    const uint8_t *p = k->mv_data;
    char type[PS_ID_BYTES], value[PS_ID_BYTES];
    size_t vl;
    if (!split_type_value(k, 1, type, value, &vl)) {
        *st = PS_ECORRUPT;
        return false;
    }
    ps_mapping m;
    if ((*st = decode_mapping(t, v, &m)) != PS_OK)
        return false;
    return it->fn(it->ud, p[0], type, value, vl, &m);
}

ps_status ps_store_ident_scan(ps_txn *t, ps_ident_fn fn, void *ud)
{
    ident_iter it = {fn, ud};
    key_reset(t);
    return iterate(t, DB_IDENT, NULL, 0, ident_visit, &it);
}

/* ---- pmap ---- */

static void pmap_key(ps_txn *t, uint64_t profile, const char *type, const char *value, size_t vlen)
{
    key_reset(t);
    key_u64(t, profile);
    key_bytes(t, type, strlen(type) + 1);
    key_bytes(t, value, vlen);
}

ps_status ps_store_pmap_put(ps_txn *t, uint64_t profile, const char *type, const char *value,
                            size_t value_len, const ps_mapping *m)
{
    mpack pk = pk_begin(t, 4);
    mp_int(&pk, m->first_seen_ms);
    mp_int(&pk, m->created_ms);
    mp_str(&pk, m->source_id, strnlen(m->source_id, sizeof m->source_id));
    mp_str(&pk, m->first_message_id, strnlen(m->first_message_id, sizeof m->first_message_id));
    pmap_key(t, profile, type, value, value_len);
    return put_val(t, DB_PMAP);
}

ps_status ps_store_pmap_move(ps_txn *t, uint64_t from, uint64_t to, const char *type,
                             const char *value, size_t value_len)
{
    pmap_key(t, from, type, value, value_len);
    MDB_val v;
    ps_status st = get_raw(t, DB_PMAP, &v);
    if (st != PS_OK)
        return st;
    ps_buf_reset(&t->val); /* the bytes, before the delete frees their page */
    ps_buf_append(&t->val, v.mv_data, v.mv_size);
    if ((st = del_key(t, DB_PMAP)) != PS_OK)
        return st;
    pmap_key(t, to, type, value, value_len);
    return put_val(t, DB_PMAP);
}

ps_status ps_store_pmap_get(ps_txn *t, uint64_t profile, const char *type, const char *value,
                            size_t value_len, int64_t *first_seen_ms)
{
    pmap_key(t, profile, type, value, value_len);
    MDB_val v;
    ps_status st = get_raw(t, DB_PMAP, &v);
    if (st != PS_OK)
        return st;
    rec r;
    if ((st = decode(t, &v, 1, &r)) == PS_OK)
        *first_seen_ms = r_i64(&r, 0);
    return st;
}

ps_status ps_store_pmap_del(ps_txn *t, uint64_t profile, const char *type, const char *value,
                            size_t value_len)
{
    pmap_key(t, profile, type, value, value_len);
    return del_key(t, DB_PMAP);
}

/* One walk for both kinds of pmap visit: with first_seen (fn), or with the details (detail). */
typedef struct pmap_iter {
    ps_pmap_fn fn;
    ps_pmap_detail_fn detail;
    void *ud;
} pmap_iter;

static bool pmap_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    pmap_iter *it = ud;
    char type[PS_ID_BYTES], value[PS_ID_BYTES];
    size_t vl;
    if (!split_type_value(k, 8, type, value, &vl)) {
        *st = PS_ECORRUPT;
        return false;
    }
    rec r;
    if ((*st = decode(t, v, 1, &r)) != PS_OK)
        return false;
    if (it->fn)
        return it->fn(it->ud, ps_get_be64(k->mv_data), type, value, vl, r_i64(&r, 0));
    if (r.count < 4)
        return it->detail(it->ud, type, value, vl, NULL);
    ps_mapping m = {.first_seen_ms = r_i64(&r, 0), .created_ms = r_i64(&r, 1)};
    r_cstr(&r, 2, m.source_id, sizeof m.source_id);
    r_cstr(&r, 3, m.first_message_id, sizeof m.first_message_id);
    return it->detail(it->ud, type, value, vl, &m);
}

ps_status ps_store_pmap_scan_details(ps_txn *t, uint64_t profile, ps_pmap_detail_fn fn, void *ud)
{
    pmap_iter it = {NULL, fn, ud};
    key_reset(t);
    key_u64(t, profile);
    return iterate(t, DB_PMAP, NULL, 0, pmap_visit, &it);
}

ps_status ps_store_pmap_scan(ps_txn *t, uint64_t profile, const char *type, ps_pmap_fn fn, void *ud)
{
    pmap_iter it = {fn, NULL, ud};
    key_reset(t);
    if (profile) {
        key_u64(t, profile);
        if (type)
            key_bytes(t, type, strlen(type) + 1);
    }
    return iterate(t, DB_PMAP, NULL, 0, pmap_visit, &it);
}

/* ---- member ---- */

ps_status ps_store_member_put(ps_txn *t, uint64_t canonical, uint64_t member)
{
    key_reset(t);
    key_u64(t, canonical);
    key_u64(t, member);
    return put_raw(t, DB_MEMBER, "", 0);
}

ps_status ps_store_member_del(ps_txn *t, uint64_t canonical, uint64_t member)
{
    key_reset(t);
    key_u64(t, canonical);
    key_u64(t, member);
    return del_key(t, DB_MEMBER);
}

typedef struct member_iter {
    ps_member_fn fn;
    void *ud;
} member_iter;

static bool member_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    (void)t;
    (void)v;
    member_iter *it = ud;
    if (k->mv_size != 16) {
        *st = PS_ECORRUPT;
        return false;
    }
    return it->fn(it->ud, ps_get_be64(k->mv_data), ps_get_be64((const uint8_t *)k->mv_data + 8));
}

ps_status ps_store_member_scan(ps_txn *t, uint64_t canonical, ps_member_fn fn, void *ud)
{
    member_iter it = {fn, ud};
    key_reset(t);
    if (canonical)
        key_u64(t, canonical);
    return iterate(t, DB_MEMBER, NULL, 0, member_visit, &it);
}

/* ---- types ---- */

ps_status ps_store_type_seen(ps_txn *t, const char *type, uint8_t collection)
{
    for (unsigned i = 0; i < t->seen_count; i++)
        if (strcmp(t->seen_types[i], type) == 0)
            return PS_OK;
    key_reset(t);
    key_bytes(t, type, strlen(type));
    MDB_val v;
    ps_status st = get_raw(t, DB_TYPES, &v);
    if (st == PS_ENOTFOUND) {
        mpack pk = pk_begin(t, 1);
        mp_uint(&pk, collection);
        st = put_val(t, DB_TYPES);
    }
    if (st == PS_OK && t->seen_count < 8 && strlen(type) < sizeof t->seen_types[0])
        strcpy(t->seen_types[t->seen_count++], type);
    return st;
}

ps_status ps_store_type_get(ps_txn *t, const char *type, uint8_t *collection)
{
    key_reset(t);
    key_bytes(t, type, strlen(type));
    MDB_val v;
    rec r;
    ps_status st = get_raw(t, DB_TYPES, &v);
    if (st == PS_OK && (st = decode(t, &v, 1, &r)) == PS_OK)
        *collection = (uint8_t)r_u64(&r, 0);
    return st;
}

typedef struct type_iter {
    ps_type_fn fn;
    void *ud;
} type_iter;

static bool type_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    type_iter *it = ud;
    rec r;
    char name[PS_ID_BYTES];
    if (k->mv_size >= sizeof name || (*st = decode(t, v, 1, &r)) != PS_OK) {
        if (*st == PS_OK)
            *st = PS_ECORRUPT;
        return false;
    }
    memcpy(name, k->mv_data, k->mv_size);
    name[k->mv_size] = 0;
    return it->fn(it->ud, name, (uint8_t)r_u64(&r, 0));
}

ps_status ps_store_type_scan(ps_txn *t, ps_type_fn fn, void *ud)
{
    type_iter it = {fn, ud};
    key_reset(t);
    return iterate(t, DB_TYPES, NULL, 0, type_visit, &it);
}

/* ---- erasure ---- */

ps_status ps_store_profile_del(ps_txn *t, uint64_t seq)
{
    PS_ASSERT(t->write);
    ps_profile p;
    ps_status st = ps_store_profile_get(t, seq, &p);
    if (st != PS_OK)
        return st;
    /* the record cache writes its changes first and starts empty: nothing there can bring
     * the record back */
    if ((st = st_profiles_flush(t, true)) != PS_OK)
        return st;
    key_reset(t);
    key_bytes(t, p.segment_id, strlen(p.segment_id));
    st = del_key(t, DB_SEGID);
    if (st == PS_OK || st == PS_ENOTFOUND) {
        key_reset(t);
        key_u64(t, seq);
        st = del_key(t, DB_PROFILE);
    }
    return st;
}

ps_status ps_store_pmap_del_all(ps_txn *t, uint64_t profile)
{
    return del_rows_of(t, DB_PMAP, profile);
}

ps_status ps_store_member_del_all(ps_txn *t, uint64_t canonical)
{
    return del_rows_of(t, DB_MEMBER, canonical);
}
