/* SPDX-License-Identifier: MIT */
/* records: what profiles hold besides identifiers: traits, the events derived from the log
 * with their per-profile index, account links and the audit rows. */
#include "store_int.h"

/* ---- trait ---- */

static ps_status decode_trait(ps_txn *t, const MDB_val *v, ps_trait_rec *out)
{
    rec r;
    ps_status st = decode(t, v, 5, &r);
    if (st != PS_OK)
        return st;
    out->write_seq = r_u64(&r, 0);
    out->updated_ms = r_i64(&r, 1);
    out->deleted = r_bool(&r, 2);
    out->source_id = r_str(&r, 3);
    out->json = r_str(&r, 4);
    return PS_OK;
}

ps_status ps_store_trait_get(ps_txn *t, uint64_t profile, const char *key, size_t key_len,
                             ps_trait_rec *out)
{
    key_reset(t);
    key_u64(t, profile);
    key_bytes(t, key, key_len);
    MDB_val v;
    ps_status st = get_raw(t, DB_TRAIT, &v);
    return st == PS_OK ? decode_trait(t, &v, out) : st;
}

ps_status ps_store_trait_put(ps_txn *t, uint64_t profile, const char *key, size_t key_len,
                             const ps_trait_rec *rec_in)
{
    mpack pk = pk_begin(t, 5);
    mp_uint(&pk, rec_in->write_seq);
    mp_int(&pk, rec_in->updated_ms);
    mp_bool(&pk, rec_in->deleted);
    mp_str(&pk, rec_in->source_id.ptr, rec_in->source_id.len);
    mp_str(&pk, rec_in->json.ptr, rec_in->json.len);
    key_reset(t);
    key_u64(t, profile);
    key_bytes(t, key, key_len);
    return put_val(t, DB_TRAIT);
}

typedef struct trait_iter {
    ps_trait_fn fn;
    void *ud;
} trait_iter;

static bool trait_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    trait_iter *it = ud;
    ps_trait_rec r;
    if ((*st = decode_trait(t, v, &r)) != PS_OK)
        return false;
    char key[PS_ID_BYTES + 8];
    size_t kl = k->mv_size - 8;
    if (kl >= sizeof key) {
        *st = PS_ECORRUPT;
        return false;
    }
    memcpy(key, (const uint8_t *)k->mv_data + 8, kl);
    key[kl] = 0;
    return it->fn(it->ud, key, kl, &r);
}

ps_status ps_store_trait_scan(ps_txn *t, uint64_t profile, const char *from, size_t from_len,
                              ps_trait_fn fn, void *ud)
{
    trait_iter it = {fn, ud};
    uint8_t start[8 + PS_ID_BYTES];
    size_t slen = 0;
    if (from) {
        if (from_len > PS_ID_BYTES)
            from_len = PS_ID_BYTES;
        ps_put_be64(start, profile);
        memcpy(start + 8, from, from_len);
        slen = 8 + from_len;
    }
    key_reset(t);
    key_u64(t, profile);
    return iterate(t, DB_TRAIT, from ? start : NULL, slen, trait_visit, &it);
}

/* ---- event ---- */

/* Reads name, ids and spans from field `at` on. */
static void event_tail_decode(const rec *r, uint32_t at, ps_event_rec *e)
{
    e->name = r_str(r, at);
    e->ids = r_str(r, at + 1);
    ps_slice sp = r->count > at + 2 ? r_str(r, at + 2) : (ps_slice){NULL, 0};
    if (sp.len == 16) {
        e->has_spans = true;
        e->spans = (ps_body_spans){ps_get_be32(sp.ptr), ps_get_be32(sp.ptr + 4),
                                   ps_get_be32(sp.ptr + 8), ps_get_be32(sp.ptr + 12)};
    }
}

/* Brief rows have 3 fields (the rest is in the pevent row); whole ones 5 or 6; format 1 rows
 * (ps_store_migrate()) 9. */
ps_status st_event_decode(ps_txn *t, uint64_t seq, const MDB_val *v, ps_event_rec *e)
{
    rec r;
    ps_status st = decode(t, v, 3, &r);
    if (st != PS_OK)
        return st;
    memset(e, 0, sizeof *e);
    e->seq = seq;
    e->type = (uint8_t)r_u64(&r, 0);
    e->profile = r_u64(&r, 1);
    e->timestamp_ms = r_i64(&r, 2);
    if (r.count < 5) {
        e->brief = true;
    } else if (r.count >= 9) {
        e->received_ms = r_i64(&r, 3);
        e->message_id = r_str(&r, 4);
        e->source_id = r_str(&r, 5);
        e->name = r_str(&r, 6);
        e->ids = r_str(&r, 7);
        e->body = r_str(&r, 8);
    } else {
        event_tail_decode(&r, 3, e);
    }
    return PS_OK;
}

/* Packs what every whole event holds after its type, profile and timestamp: name, ids, spans. */
static void event_tail_encode(mpack *pk, const ps_event_rec *e)
{
    mp_str(pk, e->name.ptr, e->name.len);
    mp_bin(pk, e->ids.ptr, e->ids.len);
    if (e->has_spans) {
        uint8_t sp[16];
        ps_put_be32(sp, e->spans.context_at);
        ps_put_be32(sp + 4, e->spans.context_len);
        ps_put_be32(sp + 8, e->spans.properties_at);
        ps_put_be32(sp + 12, e->spans.properties_len);
        mp_bin(pk, sp, 16);
    }
}

void st_event_encode(ps_txn *t, const ps_event_rec *e)
{
    mpack pk = pk_begin(t, e->has_spans ? 6 : 5);
    mp_uint(&pk, e->type);
    mp_uint(&pk, e->profile);
    mp_int(&pk, e->timestamp_ms);
    event_tail_encode(&pk, e);
}

static ps_status behind_add(ps_txn *t, int db, const uint64_t *words, const void *val,
                            size_t val_len);

/* The whole event goes to its pevent row, where a listing walks it, without the profile and
 * timestamp its key holds: [1, type, name, ids, spans]. The event row, which only lookups by
 * message (trim, explain, check) read, keeps what finds that row: [1, type, profile, ts]. */
ps_status ps_store_event_put(ps_txn *t, const ps_event_rec *e)
{
    mpack pk = pk_begin(t, e->has_spans ? 4 : 3);
    mp_uint(&pk, e->type);
    event_tail_encode(&pk, e);
    ps_status st =
        behind_add(t, DB_PEVENT, (const uint64_t[3]){e->profile, (uint64_t)e->timestamp_ms, e->seq},
                   t->val.ptr, t->val.len);
    if (st != PS_OK)
        return st;
    pk = pk_begin(t, 3);
    mp_uint(&pk, e->type);
    mp_uint(&pk, e->profile);
    mp_int(&pk, e->timestamp_ms);
    key_reset(t);
    key_u64(t, e->seq);
    MDB_val k = kv(&t->key), v = {t->val.len, t->val.ptr};
    return append_put(t, DB_EVENT, &k, &v); /* sequence numbers only grow */
}

ps_status ps_store_event_get(ps_txn *t, uint64_t seq, ps_event_rec *out)
{
    key_reset(t);
    key_u64(t, seq);
    MDB_val v;
    ps_status st = get_raw(t, DB_EVENT, &v);
    return st == PS_OK ? st_event_decode(t, seq, &v, out) : st;
}

/* ---- rows written behind ----
 * A pevent or pmsg row is one that ingest writes and nothing in the same transaction reads
 * back in the common case. Put one by one they land on random leaf pages; collected and put in
 * key order (at the commit, or before the table is next read or changed), neighbouring rows
 * share their pages' search and copy. A pmsg row's value is empty; a pevent row's is a copy
 * of its event row. */
#define ROW_WORDS 5 /* a row: its key's 3 numbers (pmsg: 2, then 0), its value's offset, length */
typedef struct behind {
    uint64_t *rows; /* ROW_WORDS numbers each */
    size_t n, cap;  /* in rows */
    ps_buf vals;    /* the values, one after another */
} behind;

static size_t behind_words(int db)
{
    return db == DB_PEVENT ? 3 : 2;
}

/* Past this many rows, or bytes of values, a table's are put at once (still in key order): the
 * memory a huge transaction (a rebuild, an import) holds for them stays bounded. */
#define BEHIND_MAX_ROWS (1u << 20)
#define BEHIND_MAX_BYTES (64u << 20)

static ps_status behind_add(ps_txn *t, int db, const uint64_t *words, const void *val,
                            size_t val_len)
{
    PS_ASSERT(t->write);
    behind **bp = &t->behind[db == DB_PMSG];
    if (*bp == NULL)
        *bp = ps_xcalloc(1, sizeof **bp);
    behind *b = *bp;
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 1024;
        b->rows = ps_xrealloc(b->rows, b->cap * ROW_WORDS * sizeof *b->rows);
    }
    uint64_t *r = b->rows + b->n * ROW_WORDS;
    r[2] = 0;
    memcpy(r, words, behind_words(db) * sizeof *words);
    r[3] = b->vals.len;
    r[4] = val_len;
    ps_buf_append(&b->vals, val, val_len);
    b->n++;
    return b->n >= BEHIND_MAX_ROWS || b->vals.len >= BEHIND_MAX_BYTES ? st_behind_put(t, db)
                                                                      : PS_OK;
}

/* Keys are kept as three numbers (a pmsg key's third is 0), compared in order. */
static int cmp_words(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    for (int i = 0; i < 3; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

ps_status st_behind_put(ps_txn *t, int db)
{
    behind *b = t->behind[db == DB_PMSG];
    if (b == NULL || b->n == 0)
        return PS_OK;
    size_t w = behind_words(db);
    qsort(b->rows, b->n, ROW_WORDS * sizeof *b->rows, cmp_words);
    MDB_cursor *cur = NULL;
    int rc = cur_open(t, t->store->dbi[db], &cur);
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        const uint64_t *r = b->rows + i * ROW_WORDS;
        uint8_t key[24];
        for (size_t j = 0; j < w; j++)
            ps_put_be64(key + 8 * j, r[j]);
        MDB_val k = {8 * w, key}, v = {r[4], r[4] ? b->vals.ptr + r[3] : (uint8_t *)""};
        rc = mdb_cursor_put(cur, &k, &v, 0);
    }
    if (cur)
        cur_close(t, cur);
    b->n = 0;
    ps_buf_reset(&b->vals);
    return map_rc(rc, db_names[db]);
}

void st_behind_drop(ps_txn *t)
{
    for (int i = 0; i < 2; i++) {
        if (t->behind[i]) {
            free(t->behind[i]->rows);
            ps_buf_clear(&t->behind[i]->vals);
        }
        free(t->behind[i]);
        t->behind[i] = NULL;
    }
}

/* A pevent row's copy of its event, or NULL when the row has none (written before the copies)
 * or the copy cannot be read (decode() logs it). Then a listing reads the event row, which
 * says whether it is whole; scans that need only keys go on; `check` reports the row. The key
 * gives the profile, timestamp and seq. */
static const ps_event_rec *pevent_copy(ps_txn *t, const MDB_val *k, const MDB_val *v,
                                       ps_event_rec *e)
{
    rec r;
    if (v->mv_size == 0 || decode(t, v, 3, &r) != PS_OK)
        return NULL;
    const uint8_t *p = k->mv_data;
    memset(e, 0, sizeof *e);
    e->profile = ps_get_be64(p);
    e->timestamp_ms = (int64_t)ps_get_be64(p + 8);
    e->seq = ps_get_be64(p + 16);
    e->type = (uint8_t)r_u64(&r, 0);
    event_tail_decode(&r, 1, e);
    return e;
}

/* Walks one profile's pevent rows from key (profile, ts, seq): descending visits the rows
 * strictly below it, ascending the rows at or above it. */
static ps_status pevent_walk(ps_txn *t, uint64_t profile, int64_t ts, uint64_t seq, bool descending,
                             ps_pevent_fn fn, void *ud)
{
    ps_status bst = behind_sync(t, DB_PEVENT);
    if (bst != PS_OK)
        return bst;
    MDB_cursor *cur;
    int rc = cur_open(t, t->store->dbi[DB_PEVENT], &cur);
    if (rc)
        return map_rc(rc, "pevent");
    uint8_t start[24];
    ps_put_be64(start, profile);
    ps_put_be64(start + 8, (uint64_t)ts);
    ps_put_be64(start + 16, seq);
    MDB_val k = {24, start}, v;
    MDB_cursor_op step = descending ? MDB_PREV : MDB_NEXT;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); /* the first key >= start */
    if (descending) /* step back from it: the newest one below start */
        rc = rc == 0              ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
             : rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
                                  : rc;
    ps_status st = PS_OK;
    while (rc == 0) {
        if (k.mv_size != 24) {
            st = PS_ECORRUPT;
            break;
        }
        const uint8_t *p = k.mv_data;
        if (ps_get_be64(p) != profile)
            break;
        ps_event_rec e;
        if (!fn(ud, profile, (int64_t)ps_get_be64(p + 8), ps_get_be64(p + 16),
                pevent_copy(t, &k, &v, &e)))
            break;
        rc = mdb_cursor_get(cur, &k, &v, step);
    }
    if (rc && rc != MDB_NOTFOUND && st == PS_OK)
        st = map_rc(rc, "pevent");
    cur_close(t, cur);
    return st;
}

ps_status ps_store_pevent_scan_desc(ps_txn *t, uint64_t profile, int64_t before_ts,
                                    uint64_t before_seq, ps_pevent_fn fn, void *ud)
{
    return pevent_walk(t, profile, before_ts, before_seq, true, fn, ud);
}

ps_status ps_store_pevent_scan_asc(ps_txn *t, uint64_t profile, int64_t after_ts,
                                   uint64_t after_seq, ps_pevent_fn fn, void *ud)
{
    if (after_seq == UINT64_MAX) { /* the first key after every seq of after_ts */
        if (after_ts == INT64_MAX)
            return PS_OK;
        after_ts++;
        after_seq = 0;
    } else {
        after_seq++;
    }
    return pevent_walk(t, profile, after_ts, after_seq, false, fn, ud);
}

typedef struct pevent_iter {
    ps_pevent_fn fn;
    void *ud;
} pevent_iter;

static bool pevent_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    pevent_iter *it = ud;
    ps_event_rec e;
    if (k->mv_size != 24) {
        *st = PS_ECORRUPT;
        return false;
    }
    const uint8_t *p = k->mv_data;
    return it->fn(it->ud, ps_get_be64(p), (int64_t)ps_get_be64(p + 8), ps_get_be64(p + 16),
                  pevent_copy(t, k, v, &e));
}

ps_status ps_store_pevent_scan_all(ps_txn *t, ps_pevent_fn fn, void *ud)
{
    pevent_iter it = {fn, ud};
    key_reset(t);
    return iterate(t, DB_PEVENT, NULL, 0, pevent_visit, &it);
}

typedef struct event_iter {
    ps_event_fn_rec fn;
    void *ud;
} event_iter;

static bool event_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    event_iter *it = ud;
    ps_event_rec e;
    if (k->mv_size != 8) {
        *st = PS_ECORRUPT;
        return false;
    }
    if ((*st = st_event_decode(t, ps_get_be64(k->mv_data), v, &e)) != PS_OK)
        return false;
    return it->fn(it->ud, &e);
}

ps_status ps_store_event_scan(ps_txn *t, ps_event_fn_rec fn, void *ud)
{
    event_iter it = {fn, ud};
    key_reset(t);
    return iterate(t, DB_EVENT, NULL, 0, event_visit, &it);
}

/* ---- link ---- */

ps_status ps_store_link_put(ps_txn *t, uint64_t from, uint64_t to, int64_t created_ms)
{
    mpack pk = pk_begin(t, 1);
    mp_int(&pk, created_ms);
    key_reset(t);
    key_u64(t, from);
    key_u64(t, to);
    MDB_val k = kv(&t->key), v = {t->val.len, t->val.ptr};
    int rc = mdb_put(t->txn, t->store->dbi[DB_LINK], &k, &v, MDB_NOOVERWRITE);
    return rc == MDB_KEYEXIST ? PS_OK : map_rc(rc, "link"); /* the first link time stays */
}

typedef struct link_iter {
    ps_link_fn fn;
    void *ud;
} link_iter;

static bool link_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    link_iter *it = ud;
    rec r;
    if (k->mv_size != 16 || (*st = decode(t, v, 1, &r)) != PS_OK) {
        if (*st == PS_OK)
            *st = PS_ECORRUPT;
        return false;
    }
    return it->fn(it->ud, ps_get_be64(k->mv_data), ps_get_be64((const uint8_t *)k->mv_data + 8),
                  r_i64(&r, 0));
}

ps_status ps_store_link_scan(ps_txn *t, uint64_t from, ps_link_fn fn, void *ud)
{
    link_iter it = {fn, ud};
    key_reset(t);
    if (from)
        key_u64(t, from);
    return iterate(t, DB_LINK, NULL, 0, link_visit, &it);
}

/* ---- audit ---- */

static void audit_pack(ps_txn *t, const ps_audit_rec *a)
{
    mpack pk = pk_begin(t, a->limit_type.len ? 15 : 14);
    mp_uint(&pk, a->kind);
    mp_uint(&pk, a->reason);
    mp_uint(&pk, a->event_type);
    mp_uint(&pk, a->collection);
    mp_uint(&pk, a->profile);
    mp_uint(&pk, a->canonical);
    mp_int(&pk, a->timestamp_ms);
    mp_int(&pk, a->received_ms);
    mp_str(&pk, a->message_id.ptr, a->message_id.len);
    mp_str(&pk, a->source_id.ptr, a->source_id.len);
    mp_str(&pk, a->type.ptr, a->type.len);
    mp_str(&pk, a->value.ptr, a->value.len);
    mp_uint(&pk, a->count);
    mp_uint(&pk, a->message_seq);
    if (a->limit_type.len) /* limit violations only */
        mp_str(&pk, a->limit_type.ptr, a->limit_type.len);
    key_reset(t);
    key_u64(t, a->seq);
}

ps_status ps_store_audit_append(ps_txn *t, ps_audit_rec *a)
{
    a->seq = ps_txn_next(t, PS_CTR_AUDIT);
    audit_pack(t, a);
    MDB_val k = kv(&t->key), v = {t->val.len, t->val.ptr};
    return append_put(t, DB_AUDIT, &k, &v);
}

typedef struct audit_iter {
    ps_audit_fn fn;
    void *ud;
} audit_iter;

static bool audit_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    audit_iter *it = ud;
    rec r;
    if (k->mv_size != 8 || (*st = decode(t, v, 13, &r)) != PS_OK) {
        if (*st == PS_OK)
            *st = PS_ECORRUPT;
        return false;
    }
    ps_audit_rec a = {
        .seq = ps_get_be64(k->mv_data),
        .kind = (uint8_t)r_u64(&r, 0),
        .reason = (uint8_t)r_u64(&r, 1),
        .event_type = (uint8_t)r_u64(&r, 2),
        .collection = (uint8_t)r_u64(&r, 3),
        .profile = r_u64(&r, 4),
        .canonical = r_u64(&r, 5),
        .timestamp_ms = r_i64(&r, 6),
        .received_ms = r_i64(&r, 7),
        .message_id = r_str(&r, 8),
        .source_id = r_str(&r, 9),
        .type = r_str(&r, 10),
        .value = r_str(&r, 11),
        .count = (uint32_t)r_u64(&r, 12),
        .message_seq = r.count > 13 ? r_u64(&r, 13) : 0, /* rows before it have 13 fields */
        .limit_type = r.count > 14 ? r_str(&r, 14) : (ps_slice){(const uint8_t *)"", 0},
    };
    return it->fn(it->ud, &a);
}

ps_status ps_store_audit_scan(ps_txn *t, uint64_t from_seq, ps_audit_fn fn, void *ud)
{
    audit_iter it = {fn, ud};
    uint8_t start[8];
    ps_put_be64(start, from_seq);
    key_reset(t);
    return iterate(t, DB_AUDIT, start, 8, audit_visit, &it);
}

typedef struct scrub_ctx {
    ps_audit_match_fn match;
    void *ud;
    uint64_t *seqs;
    size_t count, cap;
} scrub_ctx;

static bool scrub_pick(void *ud, const ps_audit_rec *r)
{
    scrub_ctx *c = ud;
    if ((r->type.len || r->value.len) && c->match(c->ud, r)) {
        if (c->count == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 64;
            c->seqs = ps_xrealloc(c->seqs, c->cap * sizeof *c->seqs);
        }
        c->seqs[c->count++] = r->seq;
    }
    return true;
}

static bool scrub_one(void *ud, const ps_audit_rec *r)
{
    *(ps_audit_rec *)ud = *r;
    return false;
}

ps_status ps_store_audit_scrub(ps_txn *t, ps_audit_match_fn match, void *ud, size_t *scrubbed)
{
    scrub_ctx c = {match, ud, NULL, 0, 0};
    ps_status st = ps_store_audit_scan(t, 1, scrub_pick, &c);
    for (size_t i = 0; i < c.count && st == PS_OK; i++) {
        ps_audit_rec a;
        if ((st = ps_store_audit_scan(t, c.seqs[i], scrub_one, &a)) != PS_OK)
            break;
        a.type = (ps_slice){NULL, 0};
        a.value = (ps_slice){NULL, 0};
        audit_pack(t, &a);
        st = put_val(t, DB_AUDIT);
    }
    free(c.seqs);
    *scrubbed = c.count;
    return st;
}

/* ---- erasure ---- */

ps_status ps_store_event_del(ps_txn *t, uint64_t seq)
{
    key_reset(t);
    key_u64(t, seq);
    ps_status st = del_key(t, DB_EVENT);
    return st == PS_ENOTFOUND ? PS_OK : st;
}

ps_status ps_store_pevent_del(ps_txn *t, uint64_t profile, int64_t ts_ms, uint64_t seq)
{
    key_reset(t);
    key_u64(t, profile);
    key_u64(t, (uint64_t)ts_ms);
    key_u64(t, seq);
    ps_status st = del_key(t, DB_PEVENT);
    return st == PS_ENOTFOUND ? PS_OK : st;
}

ps_status ps_store_trait_del_all(ps_txn *t, uint64_t profile)
{
    return del_rows_of(t, DB_TRAIT, profile);
}

ps_status ps_store_pevent_del_all(ps_txn *t, uint64_t profile)
{
    return del_rows_of(t, DB_PEVENT, profile);
}

ps_status ps_store_link_del(ps_txn *t, uint64_t from, uint64_t to)
{
    key_reset(t);
    key_u64(t, from);
    key_u64(t, to);
    ps_status st = del_key(t, DB_LINK);
    return st == PS_ENOTFOUND ? PS_OK : st;
}

ps_status ps_store_link_del_all(ps_txn *t, uint64_t from)
{
    return del_rows_of(t, DB_LINK, from);
}

/* ---- pmsg: (profile, message seq) for messages without an event row ---- */

ps_status ps_store_pmsg_put(ps_txn *t, uint64_t profile, uint64_t seq)
{
    return behind_add(t, DB_PMSG, (const uint64_t[2]){profile, seq}, NULL, 0);
}

typedef struct pmsg_iter {
    ps_seq_fn fn;
    void *ud;
} pmsg_iter;

static bool pmsg_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    (void)t;
    (void)v;
    pmsg_iter *it = ud;
    if (k->mv_size != 16) {
        *st = PS_ECORRUPT;
        return false;
    }
    return it->fn(it->ud, ps_get_be64((const uint8_t *)k->mv_data + 8));
}

ps_status ps_store_pmsg_scan(ps_txn *t, uint64_t profile, ps_seq_fn fn, void *ud)
{
    pmsg_iter it = {fn, ud};
    key_reset(t);
    key_u64(t, profile);
    return iterate(t, DB_PMSG, NULL, 0, pmsg_visit, &it);
}

ps_status ps_store_pmsg_del_all(ps_txn *t, uint64_t profile)
{
    return del_rows_of(t, DB_PMSG, profile);
}
