/* SPDX-License-Identifier: MIT */
/* store_int.h: what the storage modules (store.c, graphdb.c, records.c, msglog.c) share and
 * nobody else sees: the environment and transaction structs, the named databases, and the
 * key, msgpack and cursor helpers. Never included outside src/storage. */
#ifndef PS_STORE_INT_H
#define PS_STORE_INT_H

#include "ps/graphdb.h"
#include "ps/msglog.h"
#include "ps/records.h"
#include "ps/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>
#define ZDICT_STATIC_LINKING_ONLY /* fastCover training with fixed parameters */
#include <zdict.h>
#include <zstd.h>

#include "mpack.h"
#include "ps/log.h"

enum {
    DB_META,
    DB_PROFILE,
    DB_SEGID,
    DB_IDENT,
    DB_PMAP,
    DB_MEMBER,
    DB_TRAIT,
    DB_EVENT,
    DB_PEVENT,
    DB_LINK,
    DB_DEDUP,
    DB_DEDUP_TIME,
    DB_AUDIT,
    DB_TYPES,
    DB_LOG,
    DB_PMSG,
    DB__COUNT
};

static const char *const db_names[DB__COUNT] = {
    "meta",   "profile", "segid", "ident",      "pmap",  "member", "trait", "event",
    "pevent", "link",    "dedup", "dedup_time", "audit", "types",  "log",   "pmsg"};

/* Finished read transactions are kept reset (mdb_txn_reset) and renewed for the next reader:
 * a request then costs no allocation and no reader-slot search. MDB_NOTLS lets a renewed
 * transaction move between threads. */
#define READ_POOL_MAX 16

struct ps_store {
    MDB_env *env;
    MDB_dbi dbi[DB__COUNT];
    char *name;
    int format; /* as found at open */
    /* log compression dictionaries (docs/storage-format.md): the one new messages use, and
     * every one a logged message may name, loaded on first use; never freed before close */
    pthread_mutex_t dict_lock;
    _Atomic(ZSTD_CDict *) cdict;
    _Atomic(uint8_t) cdict_id;
    _Atomic(ZSTD_DDict *) ddict[256];
    pthread_mutex_t pool_lock;
    ps_txn *pool[READ_POOL_MAX];
    size_t pooled;
    /* identifier rows as this process's write transactions last saw them (graphdb.c); used
     * only inside a write transaction, so LMDB's writer lock is its lock */
    struct icache *icache;
    _Atomic(bool) damaged;      /* a guarded call met a page LMDB found broken (ps_store_guarded) */
    _Atomic(bool) write_broken; /* a write transaction was cut short: no more writes */
    _Atomic(bool) write_broken_said;
    _Atomic(bool) writer_noted; /* the note for other processes is written (store.c) */
    /* the page audit before this process's first write (pages.c): 0 not yet, 1 the pages are
     * whole, 2 damaged (no writes); the lock keeps two first writes from auditing twice */
    _Atomic(int) audited;
    pthread_mutex_t audit_lock;
    pthread_t auditor; /* ps_store_audit_ahead's thread, joined at close */
    bool auditor_started;
    _Atomic(bool) ahead_stop; /* tells that thread to stop: the store closes, or a write audited */
    const char *map;          /* where LMDB mapped the data file, when known (map_find) */
    size_t map_size;
};

struct ps_txn {
    ps_store *store;
    MDB_txn *txn;
    bool write;
    bool counters_loaded; /* read lazily: most readers never ask */
    bool counters_dirty;
    bool logged;            /* a write transaction that appended to the log */
    bool broken;            /* cut short in LMDB by a damaged page: never handed back to it */
    char seen_types[8][65]; /* identifier types known to be in `types` (a few per space) */
    unsigned seen_count;
    struct pcache *pc;        /* write transactions: profile records read or written */
    struct behind *behind[2]; /* write transactions: pevent and pmsg rows not put yet */
    MDB_cursor *tail[3];      /* write transactions: at the end of log, event and audit; LMDB
                               * closes them with the transaction */
    MDB_cursor *open[4];      /* read transactions: cursors open (cur_open), which LMDB does
                               * not close with them: ended with the transaction */
    unsigned open_count;
    uint64_t counters[PS_CTR__COUNT];
    ps_buf key;
    ps_buf val;
    ps_buf plain; /* a decompressed log message */
    ZSTD_DCtx *dctx;
};

/* ---- errors ---- */

static inline ps_status map_rc(int rc, const char *what)
{
    switch (rc) {
    case MDB_SUCCESS: return PS_OK;
    case MDB_NOTFOUND: return PS_ENOTFOUND;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        ps_log(PS_LOG_WARN, "msg=\"store full\" op=%s detail=\"%s\"", what, mdb_strerror(rc));
        return PS_EFULL;
    case ENOSPC: /* LMDB passes the errno of a write or sync that failed */
    case EDQUOT:
        ps_log(PS_LOG_WARN, "msg=\"disk full\" op=%s detail=\"%s\"", what, mdb_strerror(rc));
        return PS_EFULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        ps_log(PS_LOG_ERROR, "msg=\"store corrupt\" op=%s detail=\"%s\"", what, mdb_strerror(rc));
        return PS_ECORRUPT;
    default:
        ps_log(PS_LOG_ERROR, "msg=\"lmdb error\" op=%s detail=\"%s\"", what, mdb_strerror(rc));
        return PS_EIO;
    }
}

/* ---- key helpers ---- */

static inline MDB_val kv(const ps_buf *b)
{
    return (MDB_val){b->len, b->ptr};
}

static inline void key_reset(ps_txn *t)
{
    ps_buf_reset(&t->key);
}

static inline void key_u64(ps_txn *t, uint64_t v)
{
    ps_buf_be64(&t->key, v);
}

static inline void key_bytes(ps_txn *t, const void *p, size_t len)
{
    ps_buf_append(&t->key, p, len);
}

/* ---- msgpack encode ---- */

/* Starts a record in t->val: an array of `fields` + 1 items, the first the layout version 1. */
static inline mpack pk_begin(ps_txn *t, uint32_t fields)
{
    ps_buf_reset(&t->val);
    mpack pk = {&t->val};
    mp_array(&pk, fields + 1);
    mp_uint(&pk, 1);
    return pk;
}

/* ---- msgpack decode ---- */

typedef struct rec {
    mp_item items[MP_ITEMS_MAX]; /* [0] is the layout version; field i is items[i + 1] */
    uint32_t count;              /* fields after the version (past MP_ITEMS_MAX - 1: empty) */
} rec;

static inline ps_status decode(ps_txn *t, const MDB_val *v, uint32_t min_fields, rec *out)
{
    (void)t;
    uint32_t n = 0;
    if (!mp_read_row(v->mv_data, v->mv_size, out->items, &n) || n < min_fields + 1 ||
        out->items[0].kind != MP_UINT || out->items[0].u != 1) {
        ps_log(PS_LOG_ERROR, "msg=\"undecodable record\" bytes=%zu", v->mv_size);
        return PS_ECORRUPT;
    }
    /* strings point into LMDB memory, valid while the transaction is */
    out->count = n - 1 < MP_ITEMS_MAX - 1 ? n - 1 : MP_ITEMS_MAX - 1;
    return PS_OK;
}

static inline const mp_item *r_item(const rec *r, uint32_t i)
{
    static const mp_item none = {MP_NIL, 0, 0, NULL};
    return i < r->count ? &r->items[i + 1] : &none;
}

static inline uint64_t r_u64(const rec *r, uint32_t i)
{
    const mp_item *o = r_item(r, i);
    return o->kind == MP_UINT ? o->u : 0;
}

static inline int64_t r_i64(const rec *r, uint32_t i)
{
    const mp_item *o = r_item(r, i);
    return o->kind == MP_UINT || o->kind == MP_INT ? (int64_t)o->u : 0;
}

static inline bool r_bool(const rec *r, uint32_t i)
{
    const mp_item *o = r_item(r, i);
    return o->kind == MP_BOOL && o->u;
}

static inline ps_slice r_str(const rec *r, uint32_t i)
{
    const mp_item *o = r_item(r, i);
    if (o->kind == MP_STR || o->kind == MP_BIN)
        return (ps_slice){o->len ? o->p : (const uint8_t *)"", o->len};
    return (ps_slice){(const uint8_t *)"", 0};
}

static inline void r_cstr(const rec *r, uint32_t i, char *out, size_t cap)
{
    ps_slice s = r_str(r, i);
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n) /* an empty string may come with no pointer */
        memcpy(out, s.ptr, n);
    out[n] = 0;
}

/* ---- generic get/put ---- */

static inline ps_status get_raw(ps_txn *t, int db, MDB_val *val)
{
    MDB_val k = kv(&t->key);
    return map_rc(mdb_get(t->txn, t->store->dbi[db], &k, val), db_names[db]);
}

static inline ps_status put_raw(ps_txn *t, int db, const void *data, size_t len)
{
    PS_ASSERT(t->write);
    MDB_val k = kv(&t->key), v = {len, (void *)data};
    return map_rc(mdb_put(t->txn, t->store->dbi[db], &k, &v, 0), db_names[db]);
}

static inline ps_status put_val(ps_txn *t, int db)
{
    return put_raw(t, db, t->val.ptr, t->val.len);
}

/* Cursors of the storage modules open and close through these. LMDB closes a write
 * transaction's cursors with it, not a read transaction's: those are kept in the transaction
 * (a few at a time), so that ending it closes any that a guarded call cut short left open
 * (ps_store_guarded). */
static inline int cur_open(ps_txn *t, MDB_dbi dbi, MDB_cursor **out)
{
    int rc = mdb_cursor_open(t->txn, dbi, out);
    if (rc == 0 && !t->write && t->open_count < sizeof t->open / sizeof t->open[0])
        t->open[t->open_count++] = *out;
    return rc;
}

static inline void cur_close(ps_txn *t, MDB_cursor *cur)
{
    for (unsigned i = t->open_count; i-- > 0;) {
        if (t->open[i] == cur) {
            t->open[i] = t->open[--t->open_count];
            break;
        }
    }
    mdb_cursor_close(cur);
}

/* Puts a row after the last one of a table whose keys only grow (log, event, audit). The
 * transaction keeps a cursor at the end of each: appending through it follows the cursor's
 * path down to the last leaf instead of searching every level, as mdb_put with MDB_APPEND
 * does with a new cursor on every call. */
static inline ps_status append_put(ps_txn *t, int db, const MDB_val *key, const MDB_val *val)
{
    PS_ASSERT(t->write);
    int slot = db == DB_LOG ? 0 : db == DB_EVENT ? 1 : 2;
    PS_ASSERT(slot < 2 || db == DB_AUDIT);
    int rc = 0;
    if (t->tail[slot] == NULL)
        rc = mdb_cursor_open(t->txn, t->store->dbi[db], &t->tail[slot]);
    MDB_val k = *key, v = *val;
    if (rc == 0)
        rc = mdb_cursor_put(t->tail[slot], &k, &v, MDB_APPEND);
    return map_rc(rc, db_names[db]);
}

/* records.c: pevent and pmsg rows are written behind (collected, then put in key order at
 * the commit or before the table is next read or changed); st_behind_put puts them now. */
ps_status st_behind_put(ps_txn *t, int db);
void st_behind_drop(ps_txn *t);

static inline ps_status behind_sync(ps_txn *t, int db)
{
    return (db == DB_PEVENT || db == DB_PMSG) && t->behind[db == DB_PMSG] ? st_behind_put(t, db)
                                                                          : PS_OK;
}

static inline ps_status del_key(ps_txn *t, int db)
{
    PS_ASSERT(t->write);
    ps_status bst = behind_sync(t, db);
    if (bst != PS_OK)
        return bst;
    MDB_val k = kv(&t->key);
    return map_rc(mdb_del(t->txn, t->store->dbi[db], &k, NULL), db_names[db]);
}

/* Iterates keys starting with t->key (the prefix), from `start` when given (else the prefix).
 * `fn` gets the key and value; returns false to stop. */
typedef bool (*iter_fn)(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st);

/* A cursor on `db` and a copy of the prefix in t->key (callers reuse t->key meanwhile). */
typedef struct prefix_cursor {
    MDB_cursor *cur;
    uint8_t prefix[600];
    size_t len;
} prefix_cursor;

static inline int prefix_open(ps_txn *t, int db, prefix_cursor *pc)
{
    pc->len = t->key.len;
    PS_ASSERT(pc->len <= sizeof pc->prefix);
    memcpy(pc->prefix, t->key.ptr ? t->key.ptr : (uint8_t *)"", pc->len);
    return cur_open(t, t->store->dbi[db], &pc->cur);
}

static inline bool prefix_has(const prefix_cursor *pc, const MDB_val *k)
{
    return k->mv_size >= pc->len && memcmp(k->mv_data, pc->prefix, pc->len) == 0;
}

static inline ps_status iterate(ps_txn *t, int db, const void *start, size_t start_len, iter_fn fn,
                                void *ud)
{
    prefix_cursor pc;
    ps_status bst = behind_sync(t, db);
    if (bst != PS_OK)
        return bst;
    int rc = prefix_open(t, db, &pc);
    if (rc)
        return map_rc(rc, db_names[db]);
    MDB_cursor *cur = pc.cur;
    MDB_val k = start ? (MDB_val){start_len, (void *)start} : (MDB_val){pc.len, pc.prefix}, v;
    ps_status st = PS_OK;
    rc = k.mv_size ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                   : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (!prefix_has(&pc, &k))
            break;
        if (!fn(t, ud, &k, &v, &st))
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc && rc != MDB_NOTFOUND && st == PS_OK)
        st = map_rc(rc, db_names[db]);
    cur_close(t, cur);
    return st;
}

/* Deletes every key of `db` that starts with t->key (the prefix). */
static inline ps_status del_prefix(ps_txn *t, int db)
{
    PS_ASSERT(t->write && t->key.len > 0);
    prefix_cursor pc;
    ps_status bst = behind_sync(t, db);
    if (bst != PS_OK)
        return bst;
    int rc = prefix_open(t, db, &pc);
    if (rc)
        return map_rc(rc, db_names[db]);
    MDB_cursor *cur = pc.cur;
    MDB_val k = {pc.len, pc.prefix}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && prefix_has(&pc, &k)) {
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT); /* the next one, after a delete */
    }
    cur_close(t, cur);
    return rc == 0 || rc == MDB_NOTFOUND || rc == EINVAL ? PS_OK : map_rc(rc, db_names[db]);
}

/* Deletes every key of `db` that starts with the 8-byte big-endian `id` (a profile's rows). */
static inline ps_status del_rows_of(ps_txn *t, int db, uint64_t id)
{
    key_reset(t);
    key_u64(t, id);
    return del_prefix(t, db);
}

static inline int put_format(MDB_txn *txn, MDB_dbi meta, int format)
{
    char ver[16];
    int n = snprintf(ver, sizeof ver, "%d", format);
    MDB_val k = {6, "format"}, v = {(size_t)n, ver};
    return mdb_put(txn, meta, &k, &v, 0);
}

/* ---- hooks between the storage modules ---- */

/* guard.c: LMDB's assertion hook (a jump back to the guard, or the abort LMDB asked for);
 * where LMDB mapped the data file (`inside`: a value read from the map, or NULL); the pid of
 * another running process that keeps the writer lock of a damaged store (else 0); and this
 * thread's open write transaction, which a guard marks broken when LMDB is cut short in it. */
void st_on_lmdb_assert(MDB_env *env, const char *msg);
void st_map_find(ps_store *s, const void *inside);
long st_writer_note_holder(ps_store *s);
void st_writing(ps_txn *t, bool begun);

/* pages.c: reads every page the newest snapshot of `env` reaches (and its free-page list)
 * with pread and checks each against LMDB's page layout (PS_ECLOSED when *stop
 * turns true on the way). PS_ECORRUPT with the
 * first damage found in why (which page, what), PS_OK when all are whole; *reached: pages
 * the trees use, *free_pages: pages the free list holds. */
ps_status st_pages_audit(MDB_env *env, const _Atomic(bool) *stop, char *why, size_t why_cap,
                         uint64_t *reached, uint64_t *free_pages);
/* pages.c: the audit before this process's first write to `s`, run once (PS_OK: whole). */
ps_status st_pages_audited(ps_store *s);

/* graphdb.c: the write transaction's cache of profile records (written back by flush). */
ps_status st_profiles_flush(ps_txn *t, bool drop);
void st_profiles_drop(ps_txn *t);
/* graphdb.c: identifier rows as this process's write transactions last saw them. A write
 * transaction that does not follow this process's last commit (another process wrote, or
 * ours aborted) starts with an empty cache. */
void st_icache_begin(ps_txn *t);                  /* a write transaction began */
void st_icache_committed(ps_store *s, size_t id); /* it committed as transaction `id` */
void st_icache_clear(ps_store *s);                /* forget every row (abort, rebuild, close) */
/* msglog.c: the log's compression dictionary, found or trained before a commit that logged
 * messages (its bytes in *dict, to install after the commit succeeds). */
ps_status st_log_dict_prepare(ps_txn *t, uint8_t **dict, size_t *dict_len);
void st_log_dict_install(ps_store *s, const uint8_t *dict, size_t len);
/* msglog.c, for compaction: a dictionary trained afresh on the log `t` sees, which the store
 * then encodes with (*dict NULL, and no dictionary, when training fails); and one logged value
 * decoded and encoded again with the store's current dictionary. */
ps_status st_log_dict_retrain(ps_txn *t, uint8_t **dict, size_t *dict_len);
void st_log_dict_key(char out[32]); /* the meta key of the dictionary new messages use */
ps_status st_log_recode(ps_txn *t, const MDB_val *k, const MDB_val *v, ps_buf *out);
/* records.c: event rows, both layouts (format 1 is read by the migration). */
ps_status st_event_decode(ps_txn *t, uint64_t seq, const MDB_val *v, ps_event_rec *e);
void st_event_encode(ps_txn *t, const ps_event_rec *e);

/* meta key of the dedup expiry walk (msglog.c), reset by a rebuild (store.c) */
#define ST_DEDUP_EXPIRED_KEY "dedup/expired"

#endif
