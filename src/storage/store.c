/* SPDX-License-Identifier: MIT */
/* store: LMDB environment, transactions and every named database of a space.
 *
 * Keys are binary, integers big-endian so that cursor order is numeric order. Values are
 * msgpack arrays whose first element is the record version (1). Layouts:
 *
 *   db          key                                   value
 *   meta        ascii name                            raw bytes (settings JSON) / msgpack
 *   profile     seq:u64                               [1,parent,merged_into,coll,members,
 *                                                      mappings,created,updated,merged,segid,
 *                                                      first_msg,last_msg,first_src,last_src,
 *                                                      merged_by]
 *   segid       segment_id bytes                      [1,seq]
 *   ident       coll:u8 type 0x00 value               [1,profile,map_seq,first_seen,created,
 *                                                      source_id,first_message_id]
 *   pmap        profile:u64 type 0x00 value           [1,first_seen]
 *   member      canonical:u64 member:u64              (empty)
 *   trait       profile:u64 key                       [1,write_seq,updated,deleted,source,json]
 *   log         seq:u64                               binary head + zstd frame (log_encode)
 *   event       seq:u64                               [1,type,profile,ts,name,ids]
 *                                                      (format 1: [1,type,profile,ts,received,
 *                                                      msg_id,source,name,ids,body])
 *   pevent      profile:u64 ts:u64 seq:u64            (empty)
 *   link        from:u64 to:u64                       [1,created]
 *   dedup       message_id bytes                      [1,received]
 *   dedup_time  received:u64 message_id               (empty)
 *   audit       seq:u64                               [1,kind,reason,event_type,coll,profile,
 *                                                      canonical,ts,received,msg_id,source,
 *                                                      type,value,count]
 *   types       type bytes                            [1,coll]
 */
#include "ps/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>
#include <msgpack.h>
#include <zdict.h>
#include <zstd.h>

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
    DB__COUNT
};

static const char *const db_names[DB__COUNT] = {"meta",   "profile",    "segid", "ident",  "pmap",
                                                "member", "trait",      "event", "pevent", "link",
                                                "dedup",  "dedup_time", "audit", "types",  "log"};

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
};

struct ps_txn {
    ps_store *store;
    MDB_txn *txn;
    bool write;
    bool counters_loaded; /* read lazily: most readers never ask */
    bool counters_dirty;
    bool logged;            /* a write transaction that appended to the log */
    char seen_types[8][65]; /* identifier types known to be in `types` (a few per space) */
    unsigned seen_count;
    struct pcache *pc; /* write transactions: profile records read or written */
    uint64_t counters[PS_CTR__COUNT];
    ps_buf key;
    ps_buf val;
    ps_buf plain; /* a decompressed log message */
    ZSTD_DCtx *dctx;
    msgpack_zone zone;
};

static void txn_free(ps_txn *t);
static ps_status dict_prepare(ps_txn *t, uint8_t **dict, size_t *dict_len);
static void dict_install(ps_store *s, const uint8_t *dict, size_t len);
static ps_status pc_flush(ps_txn *t, bool drop);

/* ---- errors ---- */

static ps_status map_rc(int rc, const char *what)
{
    switch (rc) {
    case MDB_SUCCESS: return PS_OK;
    case MDB_NOTFOUND: return PS_ENOTFOUND;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        ps_log(PS_LOG_WARN, "msg=\"store full\" op=%s detail=\"%s\"", what, mdb_strerror(rc));
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

static MDB_val kv(const ps_buf *b)
{
    return (MDB_val){b->len, b->ptr};
}

static void key_reset(ps_txn *t)
{
    ps_buf_reset(&t->key);
}

static void key_u64(ps_txn *t, uint64_t v)
{
    ps_buf_be64(&t->key, v);
}

static void key_bytes(ps_txn *t, const void *p, size_t len)
{
    ps_buf_append(&t->key, p, len);
}

/* ---- msgpack encode ---- */

static int buf_write(void *data, const char *p, size_t len)
{
    ps_buf_append(data, p, len);
    return 0;
}

static msgpack_packer pk_begin(ps_txn *t, uint32_t fields)
{
    ps_buf_reset(&t->val);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &t->val, buf_write);
    msgpack_pack_array(&pk, fields + 1);
    msgpack_pack_uint8(&pk, 1);
    return pk;
}

static void pk_str(msgpack_packer *pk, const void *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

static void pk_cstr(msgpack_packer *pk, const char *s)
{
    pk_str(pk, s, strlen(s));
}

/* ---- msgpack decode ---- */

typedef struct rec {
    const msgpack_object *items;
    uint32_t count;
} rec;

static ps_status decode(ps_txn *t, const MDB_val *v, uint32_t min_fields, rec *out)
{
    msgpack_zone_clear(&t->zone);
    size_t off = 0;
    msgpack_object o;
    if (msgpack_unpack(v->mv_data, v->mv_size, &off, &t->zone, &o) != MSGPACK_UNPACK_SUCCESS ||
        o.type != MSGPACK_OBJECT_ARRAY || o.via.array.size < min_fields + 1 ||
        o.via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o.via.array.ptr[0].via.u64 != 1) {
        ps_log(PS_LOG_ERROR, "msg=\"undecodable record\" bytes=%zu", v->mv_size);
        return PS_ECORRUPT;
    }
    /* array items live in t->zone until the next decode; strings point into LMDB memory */
    out->items = o.via.array.ptr + 1;
    out->count = o.via.array.size - 1;
    return PS_OK;
}

static uint64_t r_u64(const rec *r, uint32_t i)
{
    const msgpack_object *o = &r->items[i];
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return o->via.u64;
    return 0;
}

static int64_t r_i64(const rec *r, uint32_t i)
{
    const msgpack_object *o = &r->items[i];
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t)o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return o->via.i64;
    return 0;
}

static bool r_bool(const rec *r, uint32_t i)
{
    return r->items[i].type == MSGPACK_OBJECT_BOOLEAN && r->items[i].via.boolean;
}

static ps_slice r_str(const rec *r, uint32_t i)
{
    const msgpack_object *o = &r->items[i];
    if (o->type == MSGPACK_OBJECT_STR)
        return (ps_slice){(const uint8_t *)o->via.str.ptr, o->via.str.size};
    if (o->type == MSGPACK_OBJECT_BIN)
        return (ps_slice){(const uint8_t *)o->via.bin.ptr, o->via.bin.size};
    return (ps_slice){(const uint8_t *)"", 0};
}

static void r_cstr(const rec *r, uint32_t i, char *out, size_t cap)
{
    ps_slice s = r_str(r, i);
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(out, s.ptr, n);
    out[n] = 0;
}

/* ---- generic get/put ---- */

static ps_status get_raw(ps_txn *t, int db, MDB_val *val)
{
    MDB_val k = kv(&t->key);
    return map_rc(mdb_get(t->txn, t->store->dbi[db], &k, val), db_names[db]);
}

static ps_status put_raw(ps_txn *t, int db, const void *data, size_t len)
{
    PS_ASSERT(t->write);
    MDB_val k = kv(&t->key), v = {len, (void *)data};
    return map_rc(mdb_put(t->txn, t->store->dbi[db], &k, &v, 0), db_names[db]);
}

static ps_status put_val(ps_txn *t, int db)
{
    return put_raw(t, db, t->val.ptr, t->val.len);
}

static ps_status del_key(ps_txn *t, int db)
{
    PS_ASSERT(t->write);
    MDB_val k = kv(&t->key);
    return map_rc(mdb_del(t->txn, t->store->dbi[db], &k, NULL), db_names[db]);
}

/* Iterates keys starting with t->key (the prefix), from `start` when given (else the prefix).
 * `fn` gets the key and value; returns false to stop. */
typedef bool (*iter_fn)(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st);

static ps_status iterate(ps_txn *t, int db, const void *start, size_t start_len, iter_fn fn,
                         void *ud)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->store->dbi[db], &cur);
    if (rc)
        return map_rc(rc, db_names[db]);
    size_t plen = t->key.len;
    uint8_t prefix[600];
    PS_ASSERT(plen <= sizeof prefix);
    memcpy(prefix, t->key.ptr ? t->key.ptr : (uint8_t *)"", plen);
    MDB_val k = start ? (MDB_val){start_len, (void *)start} : (MDB_val){plen, prefix}, v;
    ps_status st = PS_OK;
    rc = k.mv_size ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                   : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        if (!fn(t, ud, &k, &v, &st))
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc && rc != MDB_NOTFOUND && st == PS_OK)
        st = map_rc(rc, db_names[db]);
    mdb_cursor_close(cur);
    return st;
}

/* ---- environment ---- */

static ps_status mkdirs(const char *dir)
{
    char tmp[4096];
    size_t len = strlen(dir);
    if (len >= sizeof tmp)
        return PS_EINVAL;
    memcpy(tmp, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] == '/' || tmp[i] == 0) {
            char c = tmp[i];
            tmp[i] = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                ps_log(PS_LOG_ERROR, "msg=\"cannot create directory\" path=\"%s\" errno=%d", tmp,
                       errno);
                return PS_EIO;
            }
            tmp[i] = c;
        }
    }
    return PS_OK;
}

static int put_format(MDB_txn *txn, MDB_dbi meta, int format)
{
    char ver[16];
    int n = snprintf(ver, sizeof ver, "%d", format);
    MDB_val k = {6, "format"}, v = {(size_t)n, ver};
    return mdb_put(txn, meta, &k, &v, 0);
}

ps_status ps_store_open(const char *dir, const ps_store_opts *opts, ps_store **out)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (!opts->create)
            return PS_ENOTFOUND;
        ps_status st = mkdirs(dir);
        if (st != PS_OK)
            return st;
    } else if (!S_ISDIR(sb.st_mode)) {
        return PS_EINVAL;
    }
    uint64_t map_size = opts->map_size_bytes;
    const char *env_size = getenv("PS_MAP_SIZE");
    if (map_size == 0 && env_size && *env_size)
        map_size = strtoull(env_size, NULL, 10);
    if (map_size == 0)
        map_size = 16ULL << 30;

    ps_store *s = ps_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_mutex_init(&s->dict_lock, NULL);
    const char *slash = strrchr(dir, '/');
    s->name = ps_xstrdup(slash && slash[1] ? slash + 1 : dir);
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, DB__COUNT + 2);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, (size_t)map_size);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(s->env, 510);
    if (rc == 0)
        rc = mdb_env_open(s->env, dir, MDB_NOTLS | (opts->read_only ? MDB_RDONLY : 0), 0644);
    if (rc) {
        ps_status st = map_rc(rc, "open");
        if (rc == ENOENT)
            st = PS_ENOTFOUND;
        mdb_env_close(s->env);
        pthread_mutex_destroy(&s->pool_lock);
        pthread_mutex_destroy(&s->dict_lock);
        free(s->name);
        free(s);
        return st;
    }
    /* Open every named database. A store that has them all is opened in a read transaction,
     * so that opening never waits for another process's writer; a new (or older) store gets
     * its databases and format in one write transaction. */
    MDB_txn *txn = NULL;
    bool write = false;
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    for (int i = 0; rc == 0 && i < DB__COUNT; i++)
        rc = mdb_dbi_open(txn, db_names[i], 0, &s->dbi[i]);
    if (rc == MDB_NOTFOUND && !opts->read_only) {
        mdb_txn_abort(txn);
        write = true;
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        for (int i = 0; rc == 0 && i < DB__COUNT; i++)
            rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]);
    } else if (rc == MDB_NOTFOUND) { /* read-only: an older store, without the log table */
        rc = 0;
        mdb_txn_abort(txn);
        txn = NULL;
        s->format = 1;
    }
    ps_status st = txn == NULL && rc == 0 ? PS_EFORMAT : PS_OK;
    if (rc == 0 && txn) {
        MDB_val k = {6, "format"}, v;
        int grc = mdb_get(txn, s->dbi[DB_META], &k, &v);
        if (grc == MDB_NOTFOUND && write) {
            s->format = PS_STORE_FORMAT;
            rc = put_format(txn, s->dbi[DB_META], PS_STORE_FORMAT);
        } else if (grc == 0) {
            char ver[16] = {0};
            memcpy(ver, v.mv_data, v.mv_size < 15 ? v.mv_size : 15);
            long found = strtol(ver, NULL, 10);
            s->format = (int)found;
            if (found > PS_STORE_FORMAT) {
                ps_log(PS_LOG_ERROR,
                       "msg=\"store format is newer than this binary\" found=%ld supported=%d",
                       found, PS_STORE_FORMAT);
                st = PS_ECORRUPT;
            } else if (found < 1) {
                st = PS_ECORRUPT;
            } else if (found < PS_STORE_FORMAT) {
                /* a store without profiles and events has nothing to migrate */
                MDB_stat ps, es;
                bool empty = mdb_stat(txn, s->dbi[DB_PROFILE], &ps) == 0 && ps.ms_entries == 0 &&
                             mdb_stat(txn, s->dbi[DB_EVENT], &es) == 0 && es.ms_entries == 0;
                if (empty && write) {
                    s->format = PS_STORE_FORMAT;
                    rc = put_format(txn, s->dbi[DB_META], PS_STORE_FORMAT);
                } else if (empty && !opts->read_only) { /* mark it in a write transaction */
                    mdb_txn_abort(txn);
                    txn = NULL;
                    write = true;
                    rc = mdb_txn_begin(s->env, NULL, 0, &txn);
                    if (rc == 0) {
                        s->format = PS_STORE_FORMAT;
                        rc = put_format(txn, s->dbi[DB_META], PS_STORE_FORMAT);
                    }
                } else if (!empty && !opts->any_format) {
                    st = PS_EFORMAT;
                }
            }
        } else if (grc != MDB_NOTFOUND) {
            rc = grc;
        }
    }
    if (txn && rc == 0 && st == PS_OK)
        rc = mdb_txn_commit(txn);
    else if (txn)
        mdb_txn_abort(txn);
    if (rc && st == PS_OK)
        st = map_rc(rc, "open dbi");
    if (st != PS_OK) {
        ps_store_close(s);
        return st;
    }
    *out = s;
    return PS_OK;
}

void ps_store_close(ps_store *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->pooled; i++) {
        mdb_txn_abort(s->pool[i]->txn);
        txn_free(s->pool[i]);
    }
    pthread_mutex_destroy(&s->pool_lock);
    pthread_mutex_destroy(&s->dict_lock);
    ZSTD_freeCDict(s->cdict);
    for (int i = 0; i < 256; i++)
        ZSTD_freeDDict(s->ddict[i]);
    mdb_env_close(s->env);
    free(s->name);
    free(s);
}

int ps_store_format(const ps_store *s)
{
    return s->format;
}

const char *ps_store_name(const ps_store *s)
{
    return s->name;
}

void ps_store_usage(ps_store *s, uint64_t *map_bytes, uint64_t *used_bytes)
{
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    *map_bytes = info.me_mapsize;
    *used_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
}

/* ---- transactions ---- */

static const char counters_key[] = "counters";

static void pc_drop(ps_txn *t);

static void txn_free(ps_txn *t)
{
    pc_drop(t);
    ps_buf_clear(&t->key);
    ps_buf_clear(&t->val);
    ps_buf_clear(&t->plain);
    ZSTD_freeDCtx(t->dctx);
    msgpack_zone_destroy(&t->zone);
    free(t);
}

/* Reads the counters record; counters added later default to 1. */
static ps_status load_counters(ps_txn *t)
{
    for (int i = 0; i < PS_CTR__COUNT; i++)
        t->counters[i] = 1;
    key_reset(t);
    key_bytes(t, counters_key, sizeof counters_key - 1);
    MDB_val v;
    ps_status st = get_raw(t, DB_META, &v);
    if (st == PS_OK) {
        rec r;
        st = decode(t, &v, PS_CTR_MERGE, &r);
        for (uint32_t i = 0; st == PS_OK && i < PS_CTR__COUNT && i < r.count; i++)
            t->counters[i] = r_u64(&r, i);
    } else if (st == PS_ENOTFOUND) {
        st = PS_OK;
    }
    t->counters_loaded = st == PS_OK;
    return st;
}

/* A pooled read transaction renewed on the newest snapshot, or NULL. */
static ps_txn *pool_take(ps_store *s)
{
    pthread_mutex_lock(&s->pool_lock);
    ps_txn *t = s->pooled ? s->pool[--s->pooled] : NULL;
    pthread_mutex_unlock(&s->pool_lock);
    if (t && mdb_txn_renew(t->txn) != 0) {
        mdb_txn_abort(t->txn);
        txn_free(t);
        t = NULL;
    }
    return t;
}

/* Ends a read transaction: reset into the pool when there is room. */
static void read_end(ps_txn *t)
{
    ps_store *s = t->store;
    mdb_txn_reset(t->txn);
    msgpack_zone_clear(&t->zone);
    t->counters_loaded = false;
    pthread_mutex_lock(&s->pool_lock);
    bool kept = s->pooled < READ_POOL_MAX;
    if (kept)
        s->pool[s->pooled++] = t;
    pthread_mutex_unlock(&s->pool_lock);
    if (!kept) {
        mdb_txn_abort(t->txn);
        txn_free(t);
    }
}

ps_status ps_txn_begin(ps_store *s, bool write, ps_txn **out)
{
    ps_txn *t = write ? NULL : pool_take(s);
    if (t) {
        *out = t;
        return PS_OK;
    }
    t = ps_xcalloc(1, sizeof *t);
    t->store = s;
    t->write = write;
    int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    if (rc) {
        free(t);
        return map_rc(rc, "txn begin");
    }
    msgpack_zone_init(&t->zone, 2048);
    ps_buf_init(&t->key);
    ps_buf_init(&t->val);
    ps_status st = write ? load_counters(t) : PS_OK; /* a writer's counters move at once */
    if (st != PS_OK) {
        ps_txn_abort(t);
        return st;
    }
    *out = t;
    return PS_OK;
}

ps_status ps_txn_commit(ps_txn *t)
{
    ps_status st = PS_OK;
    uint8_t *dict = NULL;
    size_t dict_len = 0;
    if (t->write)
        st = pc_flush(t, true);
    if (st == PS_OK && t->write && t->logged && atomic_load(&t->store->cdict) == NULL)
        st = dict_prepare(t, &dict, &dict_len);
    if (st == PS_OK && t->write && t->counters_dirty) {
        msgpack_packer pk = pk_begin(t, PS_CTR__COUNT);
        for (int i = 0; i < PS_CTR__COUNT; i++)
            msgpack_pack_uint64(&pk, t->counters[i]);
        key_reset(t);
        key_bytes(t, counters_key, sizeof counters_key - 1);
        st = put_val(t, DB_META);
    }
    if (!t->write) {
        read_end(t);
        return PS_OK;
    }
    ps_store *s = t->store;
    if (st != PS_OK) {
        mdb_txn_abort(t->txn);
    } else {
        int rc = mdb_txn_commit(t->txn);
        st = map_rc(rc, "commit");
    }
    txn_free(t);
    if (st == PS_OK && dict)
        dict_install(s, dict, dict_len);
    free(dict);
    return st;
}

void ps_txn_abort(ps_txn *t)
{
    if (t == NULL)
        return;
    if (!t->write) {
        read_end(t);
        return;
    }
    mdb_txn_abort(t->txn);
    txn_free(t);
}

ps_store *ps_txn_store(ps_txn *t)
{
    return t->store;
}

uint64_t ps_txn_next(ps_txn *t, ps_counter c)
{
    PS_ASSERT(t->write);
    t->counters_dirty = true;
    return t->counters[c]++;
}

uint64_t ps_txn_peek(ps_txn *t, ps_counter c)
{
    if (!t->counters_loaded && load_counters(t) != PS_OK)
        ps_log(PS_LOG_ERROR, "msg=\"counters record unreadable\" store=%s", t->store->name);
    return t->counters[c];
}

/* ---- meta ---- */

ps_status ps_store_meta_get(ps_txn *t, const char *key, ps_slice *out)
{
    key_reset(t);
    key_bytes(t, key, strlen(key));
    MDB_val v;
    ps_status st = get_raw(t, DB_META, &v);
    if (st == PS_OK)
        *out = (ps_slice){v.mv_data, v.mv_size};
    return st;
}

ps_status ps_store_meta_put(ps_txn *t, const char *key, ps_slice value)
{
    key_reset(t);
    key_bytes(t, key, strlen(key));
    return put_raw(t, DB_META, value.ptr, value.len);
}

ps_status ps_store_meta_del(ps_txn *t, const char *key)
{
    key_reset(t);
    key_bytes(t, key, strlen(key));
    return del_key(t, DB_META);
}

typedef struct meta_iter {
    ps_meta_fn fn;
    void *ud;
} meta_iter;

static bool meta_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    (void)t;
    (void)st;
    meta_iter *it = ud;
    return it->fn(it->ud, (ps_slice){k->mv_data, k->mv_size}, (ps_slice){v->mv_data, v->mv_size});
}

ps_status ps_store_meta_scan(ps_txn *t, const char *prefix, ps_meta_fn fn, void *ud)
{
    meta_iter it = {fn, ud};
    key_reset(t);
    key_bytes(t, prefix, strlen(prefix));
    return iterate(t, DB_META, NULL, 0, meta_visit, &it);
}

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
    return PS_OK;
}

/* A write transaction keeps the profile records it reads and writes in memory (an event
 * reads its profiles several times and updates one), decoded, and writes each changed record
 * once, in sequence order, before it commits or scans profiles. */
#define PCACHE_MAX 32768 /* records; past it the changed ones are written and all dropped */
#define PCACHE_BLOCK 256 /* records are allocated this many at a time, never moved */

typedef struct pcache_slot {
    uint64_t seq;
    uint32_t rec; /* index of the record; slots with seq 0 are free (sequences start at 1) */
    bool dirty;
} pcache_slot;

typedef struct pcache {
    pcache_slot *slots;
    size_t cap, count;
    ps_profile *blocks[PCACHE_MAX / PCACHE_BLOCK];
} pcache;

static ps_profile *pc_rec(pcache *c, uint32_t i)
{
    return &c->blocks[i / PCACHE_BLOCK][i % PCACHE_BLOCK];
}

static size_t pc_hash(uint64_t seq, size_t cap)
{
    return (size_t)((seq * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

static void pc_drop(ps_txn *t)
{
    pcache *c = t->pc;
    if (c == NULL)
        return;
    for (size_t i = 0; i < PCACHE_MAX / PCACHE_BLOCK && c->blocks[i]; i++)
        free(c->blocks[i]);
    free(c->slots);
    free(c);
    t->pc = NULL;
}

/* The slot of `seq`, or (insert) a new one with a record for it; NULL when absent and not
 * inserting. Never called to insert with PCACHE_MAX records in. */
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
                c->blocks[r / PCACHE_BLOCK] = ps_xmalloc(PCACHE_BLOCK * sizeof(ps_profile));
            c->slots[i] = (pcache_slot){seq, r, false};
            pc_rec(c, r)->seq = seq;
            return &c->slots[i];
        }
    }
}

static ps_status profile_write(ps_txn *t, const ps_profile *p)
{
    msgpack_packer pk = pk_begin(t, 14);
    msgpack_pack_uint64(&pk, p->parent);
    msgpack_pack_uint64(&pk, p->merged_into);
    msgpack_pack_uint8(&pk, p->collection);
    msgpack_pack_uint32(&pk, p->member_count);
    msgpack_pack_uint32(&pk, p->mapping_count);
    msgpack_pack_int64(&pk, p->created_ms);
    msgpack_pack_int64(&pk, p->updated_ms);
    msgpack_pack_int64(&pk, p->merged_ms);
    pk_cstr(&pk, p->segment_id);
    pk_cstr(&pk, p->first_message_id);
    pk_cstr(&pk, p->last_message_id);
    pk_cstr(&pk, p->first_source_id);
    pk_cstr(&pk, p->last_source_id);
    pk_cstr(&pk, p->merged_by_message_id);
    key_reset(t);
    key_u64(t, p->seq);
    return put_val(t, DB_PROFILE);
}

static int cmp_slot_seq(const void *a, const void *b)
{
    uint64_t x = (*(pcache_slot *const *)a)->seq, y = (*(pcache_slot *const *)b)->seq;
    return (x > y) - (x < y);
}

/* Writes the changed records, in sequence order; `drop` empties the cache too. */
static ps_status pc_flush(ps_txn *t, bool drop)
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
        st = profile_write(t, pc_rec(c, dirty[i]->rec));
        dirty[i]->dirty = false;
    }
    free(dirty);
    if (drop || st != PS_OK)
        pc_drop(t);
    return st;
}

ps_status ps_store_profile_get(ps_txn *t, uint64_t seq, ps_profile *out)
{
    pcache_slot *slot = t->write && seq ? pc_slot(t, seq, false) : NULL;
    if (slot) {
        *out = *pc_rec(t->pc, slot->rec);
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
        *pc_rec(t->pc, in->rec) = *out;
    }
    return st;
}

ps_status ps_store_profile_put(ps_txn *t, const ps_profile *p)
{
    PS_ASSERT(t->write && p->seq);
    if (t->pc && t->pc->count >= PCACHE_MAX) {
        ps_status st = pc_flush(t, true);
        if (st != PS_OK)
            return st;
    }
    pcache_slot *slot = pc_slot(t, p->seq, true);
    *pc_rec(t->pc, slot->rec) = *p;
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
    msgpack_packer pk = pk_begin(t, 1);
    msgpack_pack_uint64(&pk, seq);
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
    ps_status fst = t->write ? pc_flush(t, false) : PS_OK;
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
    int rc = mdb_cursor_open(t->txn, t->store->dbi[DB_PROFILE], &cur);
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
    mdb_cursor_close(cur);
    return st;
}

/* ---- ident ---- */

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
    return PS_OK;
}

ps_status ps_store_ident_get(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len, ps_mapping *out)
{
    ident_key(t, coll, type, value, value_len);
    MDB_val v;
    ps_status st = get_raw(t, DB_IDENT, &v);
    return st == PS_OK ? decode_mapping(t, &v, out) : st;
}

ps_status ps_store_ident_put(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len, const ps_mapping *m)
{
    msgpack_packer pk = pk_begin(t, 6);
    msgpack_pack_uint64(&pk, m->profile);
    msgpack_pack_uint64(&pk, m->map_seq);
    msgpack_pack_int64(&pk, m->first_seen_ms);
    msgpack_pack_int64(&pk, m->created_ms);
    pk_cstr(&pk, m->source_id);
    pk_cstr(&pk, m->first_message_id);
    ident_key(t, coll, type, value, value_len);
    return put_val(t, DB_IDENT);
}

ps_status ps_store_ident_del(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len)
{
    ident_key(t, coll, type, value, value_len);
    return del_key(t, DB_IDENT);
}

typedef struct ident_iter {
    ps_ident_fn fn;
    void *ud;
} ident_iter;

static bool ident_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    ident_iter *it = ud;
    const uint8_t *p = k->mv_data;
    const uint8_t *nul = k->mv_size > 1 ? memchr(p + 1, 0, k->mv_size - 1) : NULL;
    if (nul == NULL) {
        *st = PS_ECORRUPT;
        return false;
    }
    char type[PS_ID_BYTES], value[PS_ID_BYTES];
    size_t tl = (size_t)(nul - (p + 1)), vl = k->mv_size - (size_t)(nul + 1 - p);
    if (tl >= sizeof type || vl >= sizeof value) {
        *st = PS_ECORRUPT;
        return false;
    }
    memcpy(type, p + 1, tl);
    type[tl] = 0;
    memcpy(value, nul + 1, vl);
    value[vl] = 0;
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
                            size_t value_len, int64_t first_seen_ms)
{
    msgpack_packer pk = pk_begin(t, 1);
    msgpack_pack_int64(&pk, first_seen_ms);
    pmap_key(t, profile, type, value, value_len);
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

typedef struct pmap_iter {
    ps_pmap_fn fn;
    void *ud;
} pmap_iter;

static bool pmap_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    pmap_iter *it = ud;
    const uint8_t *p = k->mv_data;
    const uint8_t *nul = k->mv_size > 8 ? memchr(p + 8, 0, k->mv_size - 8) : NULL;
    if (nul == NULL) {
        *st = PS_ECORRUPT;
        return false;
    }
    char type[PS_ID_BYTES], value[PS_ID_BYTES];
    size_t tl = (size_t)(nul - (p + 8)), vl = k->mv_size - (size_t)(nul + 1 - p);
    if (tl >= sizeof type || vl >= sizeof value) {
        *st = PS_ECORRUPT;
        return false;
    }
    memcpy(type, p + 8, tl);
    type[tl] = 0;
    memcpy(value, nul + 1, vl);
    value[vl] = 0;
    rec r;
    if ((*st = decode(t, v, 1, &r)) != PS_OK)
        return false;
    return it->fn(it->ud, ps_get_be64(p), type, value, vl, r_i64(&r, 0));
}

ps_status ps_store_pmap_scan(ps_txn *t, uint64_t profile, const char *type, ps_pmap_fn fn, void *ud)
{
    pmap_iter it = {fn, ud};
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
    msgpack_packer pk = pk_begin(t, 5);
    msgpack_pack_uint64(&pk, rec_in->write_seq);
    msgpack_pack_int64(&pk, rec_in->updated_ms);
    if (rec_in->deleted)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    pk_str(&pk, rec_in->source_id.ptr, rec_in->source_id.len);
    pk_str(&pk, rec_in->json.ptr, rec_in->json.len);
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

/* ---- log ---- */

/* A log value: a 24-byte head, the message id and source id, then the message JSON as one
 * zstd frame (codec 1), one zstd frame made with the space's dictionary number h[3] (codec 2),
 * or as is (codec 0, for a message that does not shrink).
 *   0 u8 version (1)   1 u8 type   2 u8 codec   3 u8 dictionary number (codec 2) or 0
 *   4 u16 message id length   6 u16 source id length   8 i64 received   16 i64 timestamp */
#define LOG_HEAD 24
#define LOG_ZSTD_LEVEL 1
#define LOG_PLAIN_MAX (1u << 20) /* a message is at most 32 KB; anything larger is damage */
/* Messages are small and alike: a dictionary trained on the first ones makes them several
 * times smaller and faster to compress (docs/decisions/0005-log-compression.md). */
#define LOG_DICT_AFTER 2000u            /* messages logged before the dictionary is trained */
#define LOG_DICT_BYTES (64u << 10)      /* its size */
#define LOG_DICT_SAMPLE_MAX (16u << 20) /* bytes of messages it is trained on, at most */
#define LOG_DICT_ID 1u                  /* the one dictionary so far */

static void dict_key(unsigned id, char out[32])
{
    snprintf(out, 32, "log/dict/%u", id);
}

/* One compression context per thread that encodes (HTTP workers, the CLI's reader, the
 * writer), freed when the thread ends. */
static pthread_key_t cctx_key;
static pthread_once_t cctx_once = PTHREAD_ONCE_INIT;

static void cctx_free(void *p)
{
    ZSTD_freeCCtx(p);
}

static void cctx_key_make(void)
{
    PS_ASSERT(pthread_key_create(&cctx_key, cctx_free) == 0);
}

static ZSTD_CCtx *thread_cctx(void)
{
    pthread_once(&cctx_once, cctx_key_make);
    ZSTD_CCtx *c = pthread_getspecific(cctx_key);
    if (c == NULL && (c = ZSTD_createCCtx()) != NULL)
        pthread_setspecific(cctx_key, c);
    return c;
}

void ps_store_log_encode(ps_store *s, const ps_log_rec *r, ps_buf *b)
{
    PS_ASSERT(r->message_id.len <= 0xffff && r->source_id.len <= 0xffff);
    ZSTD_CCtx *cctx = thread_cctx();
    ZSTD_CDict *cdict = atomic_load(&s->cdict);
    uint8_t dict_id = cdict ? atomic_load(&s->cdict_id) : 0;
    size_t bound = ZSTD_compressBound(r->json.len), start = b->len;
    ps_buf_reserve(b, LOG_HEAD + r->message_id.len + r->source_id.len + bound);
    uint8_t *h = b->ptr + start;
    h[0] = 1;
    h[1] = r->type;
    h[3] = 0;
    h[4] = (uint8_t)(r->message_id.len >> 8);
    h[5] = (uint8_t)r->message_id.len;
    h[6] = (uint8_t)(r->source_id.len >> 8);
    h[7] = (uint8_t)r->source_id.len;
    ps_put_be64(h + 8, (uint64_t)r->received_ms);
    ps_put_be64(h + 16, (uint64_t)r->timestamp_ms);
    size_t off = LOG_HEAD;
    memcpy(h + off, r->message_id.ptr, r->message_id.len);
    off += r->message_id.len;
    memcpy(h + off, r->source_id.ptr, r->source_id.len);
    off += r->source_id.len;
    size_t n = 0;
    if (cctx && cdict) { /* the content size is kept, the dictionary's own id is not */
        ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
        ZSTD_CCtx_refCDict(cctx, cdict);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_dictIDFlag, 0);
        n = ZSTD_compress2(cctx, h + off, bound, r->json.ptr, r->json.len);
        h[2] = 2;
        h[3] = dict_id;
    } else if (cctx) {
        ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
        ZSTD_CCtx_refCDict(cctx, NULL);
        n = ZSTD_compressCCtx(cctx, h + off, bound, r->json.ptr, r->json.len, LOG_ZSTD_LEVEL);
        h[2] = 1;
    }
    if (cctx == NULL || ZSTD_isError(n) || n >= r->json.len) {
        h[2] = 0; /* kept as is: it does not shrink */
        h[3] = 0;
        memcpy(h + off, r->json.ptr, r->json.len);
        n = r->json.len;
    }
    b->len = start + off + n;
}

ps_status ps_store_log_put(ps_txn *t, uint64_t seq, ps_slice encoded)
{
    PS_ASSERT(t->write);
    t->logged = true;
    key_reset(t);
    key_u64(t, seq);
    MDB_val k = kv(&t->key), v = {encoded.len, (void *)encoded.ptr};
    /* sequence numbers only grow: append without a page search */
    return map_rc(mdb_put(t->txn, t->store->dbi[DB_LOG], &k, &v, MDB_APPEND), "log");
}

ps_status ps_store_log_append(ps_txn *t, const ps_log_rec *r)
{
    ps_buf_reset(&t->val);
    ps_store_log_encode(t->store, r, &t->val);
    return ps_store_log_put(t, r->seq, (ps_slice){t->val.ptr, t->val.len});
}

/* The decompression dictionary number `id`, loaded from meta on first use. */
static ZSTD_DDict *ddict_get(ps_txn *t, unsigned id)
{
    ps_store *s = t->store;
    ZSTD_DDict *d = atomic_load(&s->ddict[id]);
    if (d)
        return d;
    char key[32];
    dict_key(id, key);
    ps_slice v;
    if (ps_store_meta_get(t, key, &v) != PS_OK)
        return NULL;
    pthread_mutex_lock(&s->dict_lock);
    d = atomic_load(&s->ddict[id]);
    if (d == NULL && (d = ZSTD_createDDict(v.ptr, v.len)) != NULL)
        atomic_store(&s->ddict[id], d);
    pthread_mutex_unlock(&s->dict_lock);
    return d;
}

/* Decodes a log value; the JSON only when `with_json` (into t->plain). */
static ps_status log_decode(ps_txn *t, uint64_t seq, const MDB_val *v, bool with_json,
                            ps_log_rec *out)
{
    const uint8_t *h = v->mv_data;
    if (v->mv_size < LOG_HEAD || h[0] != 1 || h[2] > 2)
        return PS_ECORRUPT;
    size_t il = (size_t)h[4] << 8 | h[5], sl = (size_t)h[6] << 8 | h[7];
    if (LOG_HEAD + il + sl > v->mv_size)
        return PS_ECORRUPT;
    out->seq = seq;
    out->type = h[1];
    out->received_ms = (int64_t)ps_get_be64(h + 8);
    out->timestamp_ms = (int64_t)ps_get_be64(h + 16);
    out->message_id = (ps_slice){h + LOG_HEAD, il};
    out->source_id = (ps_slice){h + LOG_HEAD + il, sl};
    out->json = (ps_slice){(const uint8_t *)"", 0};
    if (!with_json)
        return PS_OK;
    const uint8_t *z = h + LOG_HEAD + il + sl;
    size_t zl = v->mv_size - LOG_HEAD - il - sl;
    if (h[2] == 0) {
        out->json = (ps_slice){z, zl};
        return PS_OK;
    }
    unsigned long long plain = ZSTD_getFrameContentSize(z, zl);
    if (plain == ZSTD_CONTENTSIZE_ERROR || plain == ZSTD_CONTENTSIZE_UNKNOWN ||
        plain > LOG_PLAIN_MAX)
        return PS_ECORRUPT;
    if (t->dctx == NULL && (t->dctx = ZSTD_createDCtx()) == NULL)
        return PS_EIO;
    ZSTD_DDict *dict = NULL;
    if (h[2] == 2 && (dict = ddict_get(t, h[3])) == NULL)
        return PS_ECORRUPT; /* names a dictionary the store does not have */
    ps_buf_reset(&t->plain);
    ps_buf_reserve(&t->plain, (size_t)plain + 1);
    size_t n = dict ? ZSTD_decompress_usingDDict(t->dctx, t->plain.ptr, (size_t)plain, z, zl, dict)
                    : ZSTD_decompressDCtx(t->dctx, t->plain.ptr, (size_t)plain, z, zl);
    if (ZSTD_isError(n) || n != plain)
        return PS_ECORRUPT;
    t->plain.len = n;
    t->plain.ptr[n] = 0;
    out->json = (ps_slice){t->plain.ptr, n};
    return PS_OK;
}

typedef struct sample_ctx {
    ps_buf bytes;
    size_t sizes[LOG_DICT_AFTER];
    unsigned count;
} sample_ctx;

static bool take_sample(void *ud, const ps_log_rec *r)
{
    sample_ctx *c = ud;
    if (c->bytes.len + r->json.len > LOG_DICT_SAMPLE_MAX)
        return false;
    ps_buf_append(&c->bytes, r->json.ptr, r->json.len);
    c->sizes[c->count++] = r->json.len;
    return c->count < LOG_DICT_AFTER;
}

/* Before a write transaction that logged messages commits, while the store has no dictionary
 * in memory: the dictionary another process stored, or, once the log holds LOG_DICT_AFTER
 * messages, one trained on the first of them and stored. Its bytes (a copy) go to `*dict`
 * to be installed after the commit. A training that fails leaves a note so that it is tried
 * again only when the log has doubled. */
static ps_status dict_prepare(ps_txn *t, uint8_t **dict, size_t *dict_len)
{
    char key[32];
    dict_key(LOG_DICT_ID, key);
    ps_slice v;
    ps_status st = ps_store_meta_get(t, key, &v);
    if (st == PS_OK) {
        *dict = ps_xmalloc(v.len);
        memcpy(*dict, v.ptr, v.len);
        *dict_len = v.len;
        return PS_OK;
    }
    if (st != PS_ENOTFOUND)
        return st;
    MDB_stat ms;
    int rc = mdb_stat(t->txn, t->store->dbi[DB_LOG], &ms);
    if (rc)
        return map_rc(rc, "log stat");
    uint64_t retry_at = LOG_DICT_AFTER;
    if (ps_store_meta_get(t, "log/dict-failed", &v) == PS_OK && v.len == 8)
        retry_at = 2 * ps_get_be64(v.ptr);
    if (ms.ms_entries < retry_at)
        return PS_OK;
    sample_ctx *c = ps_xcalloc(1, sizeof *c);
    st = ps_store_log_scan(t, 1, true, take_sample, c);
    uint8_t *out = ps_xmalloc(LOG_DICT_BYTES);
    size_t n = st == PS_OK
                   ? ZDICT_trainFromBuffer(out, LOG_DICT_BYTES, c->bytes.ptr, c->sizes, c->count)
                   : 0;
    if (st == PS_OK && ZDICT_isError(n)) { /* too few or too uniform samples: later */
        uint8_t at[8];
        ps_put_be64(at, ms.ms_entries);
        st = ps_store_meta_put(t, "log/dict-failed", (ps_slice){at, 8});
        n = 0;
    } else if (st == PS_OK) {
        st = ps_store_meta_put(t, key, (ps_slice){out, n});
    }
    ps_buf_clear(&c->bytes);
    free(c);
    if (st == PS_OK && n > 0) {
        *dict = out;
        *dict_len = n;
    } else {
        free(out);
    }
    return st;
}

/* Makes committed dictionary bytes the one new messages are compressed with. */
static void dict_install(ps_store *s, const uint8_t *dict, size_t len)
{
    pthread_mutex_lock(&s->dict_lock);
    if (atomic_load(&s->cdict) == NULL) {
        ZSTD_CDict *cd = ZSTD_createCDict(dict, len, LOG_ZSTD_LEVEL);
        if (cd) {
            atomic_store(&s->cdict_id, (uint8_t)LOG_DICT_ID);
            atomic_store(&s->cdict, cd);
        }
    }
    pthread_mutex_unlock(&s->dict_lock);
}

static ps_status log_read(ps_txn *t, uint64_t seq, bool with_json, ps_log_rec *out)
{
    key_reset(t);
    key_u64(t, seq);
    MDB_val v;
    ps_status st = get_raw(t, DB_LOG, &v);
    return st == PS_OK ? log_decode(t, seq, &v, with_json, out) : st;
}

ps_status ps_store_log_get(ps_txn *t, uint64_t seq, ps_log_rec *out)
{
    return log_read(t, seq, true, out);
}

ps_status ps_store_log_head(ps_txn *t, uint64_t seq, ps_log_rec *out)
{
    return log_read(t, seq, false, out);
}

typedef struct log_iter {
    ps_log_fn fn;
    void *ud;
    bool with_json;
} log_iter;

static bool log_visit(ps_txn *t, void *ud, const MDB_val *k, const MDB_val *v, ps_status *st)
{
    log_iter *it = ud;
    ps_log_rec r;
    if (k->mv_size != 8 ||
        (*st = log_decode(t, ps_get_be64(k->mv_data), v, it->with_json, &r)) != PS_OK) {
        if (*st == PS_OK)
            *st = PS_ECORRUPT;
        return false;
    }
    return it->fn(it->ud, &r);
}

ps_status ps_store_log_scan(ps_txn *t, uint64_t from_seq, bool with_json, ps_log_fn fn, void *ud)
{
    log_iter it = {fn, ud, with_json};
    uint8_t start[8];
    ps_put_be64(start, from_seq);
    key_reset(t);
    return iterate(t, DB_LOG, start, sizeof start, log_visit, &it);
}

static const char log_incomplete_key[] = "log/incomplete";

ps_status ps_store_log_info(ps_txn *t, uint64_t *count, bool *incomplete)
{
    MDB_stat ms;
    int rc = mdb_stat(t->txn, t->store->dbi[DB_LOG], &ms);
    if (rc)
        return map_rc(rc, "log stat");
    *count = ms.ms_entries;
    ps_slice v;
    ps_status st = ps_store_meta_get(t, log_incomplete_key, &v);
    *incomplete = st == PS_OK;
    return st == PS_ENOTFOUND ? PS_OK : st;
}

/* ---- event ---- */

/* Format 2 rows have 5 fields; format 1 rows (ps_store_migrate()) 9. */
static ps_status decode_event(ps_txn *t, uint64_t seq, const MDB_val *v, ps_event_rec *e)
{
    rec r;
    ps_status st = decode(t, v, 5, &r);
    if (st != PS_OK)
        return st;
    memset(e, 0, sizeof *e);
    e->seq = seq;
    e->type = (uint8_t)r_u64(&r, 0);
    e->profile = r_u64(&r, 1);
    e->timestamp_ms = r_i64(&r, 2);
    if (r.count >= 9) {
        e->received_ms = r_i64(&r, 3);
        e->message_id = r_str(&r, 4);
        e->source_id = r_str(&r, 5);
        e->name = r_str(&r, 6);
        e->ids = r_str(&r, 7);
        e->body = r_str(&r, 8);
    } else {
        e->name = r_str(&r, 3);
        e->ids = r_str(&r, 4);
    }
    return PS_OK;
}

static void encode_event(ps_txn *t, const ps_event_rec *e)
{
    msgpack_packer pk = pk_begin(t, 5);
    msgpack_pack_uint8(&pk, e->type);
    msgpack_pack_uint64(&pk, e->profile);
    msgpack_pack_int64(&pk, e->timestamp_ms);
    pk_str(&pk, e->name.ptr, e->name.len);
    msgpack_pack_bin(&pk, e->ids.len);
    msgpack_pack_bin_body(&pk, e->ids.ptr, e->ids.len);
}

ps_status ps_store_event_put(ps_txn *t, const ps_event_rec *e)
{
    encode_event(t, e);
    key_reset(t);
    key_u64(t, e->seq);
    MDB_val k = kv(&t->key), v = {t->val.len, t->val.ptr};
    /* sequence numbers only grow: append without a page search */
    int rc = mdb_put(t->txn, t->store->dbi[DB_EVENT], &k, &v, MDB_APPEND);
    return map_rc(rc, "event");
}

ps_status ps_store_event_get(ps_txn *t, uint64_t seq, ps_event_rec *out)
{
    key_reset(t);
    key_u64(t, seq);
    MDB_val v;
    ps_status st = get_raw(t, DB_EVENT, &v);
    return st == PS_OK ? decode_event(t, seq, &v, out) : st;
}

ps_status ps_store_pevent_put(ps_txn *t, uint64_t profile, int64_t ts_ms, uint64_t seq)
{
    key_reset(t);
    key_u64(t, profile);
    key_u64(t, (uint64_t)ts_ms);
    key_u64(t, seq);
    return put_raw(t, DB_PEVENT, "", 0);
}

/* Walks one profile's pevent rows from key (profile, ts, seq): descending visits the rows
 * strictly below it, ascending the rows at or above it. */
static ps_status pevent_walk(ps_txn *t, uint64_t profile, int64_t ts, uint64_t seq, bool descending,
                             ps_pevent_fn fn, void *ud)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->store->dbi[DB_PEVENT], &cur);
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
        if (!fn(ud, profile, (int64_t)ps_get_be64(p + 8), ps_get_be64(p + 16)))
            break;
        rc = mdb_cursor_get(cur, &k, &v, step);
    }
    if (rc && rc != MDB_NOTFOUND && st == PS_OK)
        st = map_rc(rc, "pevent");
    mdb_cursor_close(cur);
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
    (void)t;
    (void)v;
    pevent_iter *it = ud;
    if (k->mv_size != 24) {
        *st = PS_ECORRUPT;
        return false;
    }
    const uint8_t *p = k->mv_data;
    return it->fn(it->ud, ps_get_be64(p), (int64_t)ps_get_be64(p + 8), ps_get_be64(p + 16));
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
    if ((*st = decode_event(t, ps_get_be64(k->mv_data), v, &e)) != PS_OK)
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
    msgpack_packer pk = pk_begin(t, 1);
    msgpack_pack_int64(&pk, created_ms);
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

/* ---- dedup ---- */

ps_status ps_store_dedup_get(ps_txn *t, const char *message_id, int64_t *received_ms)
{
    key_reset(t);
    key_bytes(t, message_id, strlen(message_id));
    MDB_val v;
    ps_status st = get_raw(t, DB_DEDUP, &v);
    if (st != PS_OK)
        return st;
    rec r;
    if ((st = decode(t, &v, 1, &r)) == PS_OK)
        *received_ms = r_i64(&r, 0);
    return st;
}

ps_status ps_store_dedup_put(ps_txn *t, const char *message_id, int64_t received_ms)
{
    msgpack_packer pk = pk_begin(t, 1);
    msgpack_pack_int64(&pk, received_ms);
    key_reset(t);
    key_bytes(t, message_id, strlen(message_id));
    return put_val(t, DB_DEDUP);
}

/* Expiry walks the log, which is in acceptance order, from where the last walk stopped
 * (meta "dedup/expired", a message sequence number): each message received before the cutoff
 * has its dedup row removed, unless the row is a later acceptance of the same id. A message
 * whose receivedAt is out of order can hold the walk back; a row that outlives its window
 * never changes a decision, because lookups compare the times. */
static const char dedup_expired_key[] = "dedup/expired";

typedef struct expire_ctx {
    ps_txn *t;
    int64_t cutoff_ms;
    size_t max, done;
    uint64_t last; /* the last message walked past */
    ps_status st;
} expire_ctx;

static bool expire_one(void *ud, const ps_log_rec *r)
{
    expire_ctx *c = ud;
    if (r->received_ms >= c->cutoff_ms || c->done >= c->max)
        return false;
    char id[PS_ID_BYTES + 1];
    size_t n = r->message_id.len < PS_ID_BYTES ? r->message_id.len : PS_ID_BYTES;
    memcpy(id, r->message_id.ptr, n);
    id[n] = 0;
    int64_t known;
    ps_status st = ps_store_dedup_get(c->t, id, &known);
    if (st == PS_OK && known == r->received_ms) {
        key_reset(c->t);
        key_bytes(c->t, id, n);
        st = del_key(c->t, DB_DEDUP);
    }
    if (st != PS_OK && st != PS_ENOTFOUND) {
        c->st = st;
        return false;
    }
    c->done++;
    c->last = r->seq;
    return true;
}

/* Stores from format 1 indexed dedup rows by time in `dedup_time`; those rows still expire
 * through it (new rows are not added there). */
static ps_status expire_legacy(ps_txn *t, int64_t cutoff_ms, size_t max, size_t *expired)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->store->dbi[DB_DEDUP_TIME], &cur);
    if (rc)
        return map_rc(rc, "dedup expire");
    MDB_val k, v;
    ps_status st = PS_OK;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && *expired < max) {
        if (k.mv_size < 8) {
            st = PS_ECORRUPT;
            break;
        }
        if ((int64_t)ps_get_be64(k.mv_data) >= cutoff_ms)
            break;
        key_reset(t);
        key_bytes(t, (const uint8_t *)k.mv_data + 8, k.mv_size - 8);
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        st = del_key(t, DB_DEDUP);
        if (st != PS_OK && st != PS_ENOTFOUND)
            break;
        st = PS_OK;
        (*expired)++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
        if (rc == EINVAL || rc == MDB_NOTFOUND)
            rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    if (rc && rc != MDB_NOTFOUND && st == PS_OK)
        st = map_rc(rc, "dedup expire");
    mdb_cursor_close(cur);
    return st;
}

ps_status ps_store_dedup_expire(ps_txn *t, int64_t cutoff_ms, size_t max, size_t *expired)
{
    *expired = 0;
    MDB_stat ms;
    int rc = mdb_stat(t->txn, t->store->dbi[DB_DEDUP_TIME], &ms);
    if (rc)
        return map_rc(rc, "dedup expire");
    if (ms.ms_entries > 0) {
        ps_status lst = expire_legacy(t, cutoff_ms, max, expired);
        if (lst != PS_OK || *expired >= max)
            return lst;
        max -= *expired;
    }
    size_t before = *expired;
    ps_slice v;
    uint64_t from = 0;
    ps_status st = ps_store_meta_get(t, dedup_expired_key, &v);
    if (st == PS_OK && v.len == 8)
        from = ps_get_be64(v.ptr);
    else if (st != PS_OK && st != PS_ENOTFOUND)
        return st;
    expire_ctx c = {t, cutoff_ms, max, 0, from, PS_OK};
    st = ps_store_log_scan(t, from + 1, false, expire_one, &c);
    if (st == PS_OK)
        st = c.st;
    if (st == PS_OK && c.last != from) {
        uint8_t at[8];
        ps_put_be64(at, c.last);
        st = ps_store_meta_put(t, dedup_expired_key, (ps_slice){at, 8});
    }
    *expired = before + c.done;
    return st;
}

/* ---- audit ---- */

ps_status ps_store_audit_append(ps_txn *t, ps_audit_rec *a)
{
    a->seq = ps_txn_next(t, PS_CTR_AUDIT);
    msgpack_packer pk = pk_begin(t, 13);
    msgpack_pack_uint8(&pk, a->kind);
    msgpack_pack_uint8(&pk, a->reason);
    msgpack_pack_uint8(&pk, a->event_type);
    msgpack_pack_uint8(&pk, a->collection);
    msgpack_pack_uint64(&pk, a->profile);
    msgpack_pack_uint64(&pk, a->canonical);
    msgpack_pack_int64(&pk, a->timestamp_ms);
    msgpack_pack_int64(&pk, a->received_ms);
    pk_str(&pk, a->message_id.ptr, a->message_id.len);
    pk_str(&pk, a->source_id.ptr, a->source_id.len);
    pk_str(&pk, a->type.ptr, a->type.len);
    pk_str(&pk, a->value.ptr, a->value.len);
    msgpack_pack_uint32(&pk, a->count);
    key_reset(t);
    key_u64(t, a->seq);
    MDB_val k = kv(&t->key), v = {t->val.len, t->val.ptr};
    return map_rc(mdb_put(t->txn, t->store->dbi[DB_AUDIT], &k, &v, MDB_APPEND), "audit");
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
        msgpack_packer pk = pk_begin(t, 1);
        msgpack_pack_uint8(&pk, collection);
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

ps_status ps_store_counts_get(ps_txn *t, ps_store_counts *out)
{
    ps_status fst = t->write ? pc_flush(t, false) : PS_OK;
    if (fst != PS_OK)
        return fst;
    static const int dbs[] = {DB_PROFILE, DB_SEGID,  DB_IDENT, DB_PMAP,  DB_MEMBER, DB_TRAIT,
                              DB_EVENT,   DB_PEVENT, DB_LINK,  DB_DEDUP, DB_AUDIT,  DB_LOG};
    uint64_t *fields[] = {&out->profiles, &out->segids, &out->idents, &out->pmaps,
                          &out->members,  &out->traits, &out->events, &out->pevents,
                          &out->links,    &out->dedups, &out->audits, &out->logs};
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        MDB_stat st;
        int rc = mdb_stat(t->txn, t->store->dbi[dbs[i]], &st);
        if (rc)
            return map_rc(rc, "stat");
        *fields[i] = st.ms_entries;
    }
    return PS_OK;
}

/* ---- rebuild ---- */

ps_status ps_store_clear_derived(ps_txn *t)
{
    PS_ASSERT(t->write);
    pc_drop(t); /* the records are about to go */
    for (int db = 0; db < DB__COUNT; db++) {
        if (db == DB_META || db == DB_LOG)
            continue;
        int rc = mdb_drop(t->txn, t->store->dbi[db], 0);
        if (rc)
            return map_rc(rc, db_names[db]);
    }
    for (int c = 0; c < PS_CTR__COUNT; c++)
        if (c != PS_CTR_MESSAGE)
            t->counters[c] = 1;
    t->counters_dirty = true;
    ps_status st = ps_store_meta_del(t, dedup_expired_key);
    return st == PS_ENOTFOUND ? PS_OK : st;
}

/* ---- migration ---- */

/* Format 1 -> 2: each kept event becomes a log message (its stamps and body) and its row is
 * rewritten in the format-2 layout, through a scratch table, all in one transaction. */
ps_status ps_store_migrate(ps_store *s, uint64_t *messages)
{
    *messages = 0;
    if (s->format == PS_STORE_FORMAT)
        return PS_OK;
    PS_ASSERT(s->format == 1);
    ps_txn *t;
    ps_status st = ps_txn_begin(s, true, &t);
    if (st != PS_OK)
        return st;
    MDB_dbi scratch;
    MDB_cursor *cur = NULL;
    int rc = mdb_dbi_open(t->txn, "migrate", MDB_CREATE, &scratch);
    if (rc == 0)
        rc = mdb_drop(t->txn, scratch, 0); /* left by nothing: a crash aborts the txn */
    if (rc == 0)
        rc = mdb_cursor_open(t->txn, s->dbi[DB_EVENT], &cur);
    MDB_val k, v;
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && st == PS_OK) {
        ps_event_rec e;
        if (k.mv_size != 8 || (st = decode_event(t, ps_get_be64(k.mv_data), &v, &e)) != PS_OK) {
            st = PS_ECORRUPT;
            break;
        }
        if (e.body.len == 0 || e.message_id.len > 0xffff || e.source_id.len > 0xffff) {
            st = PS_ECORRUPT;
            break;
        }
        ps_log_rec lr = {e.seq,        e.type,      e.received_ms, e.timestamp_ms,
                         e.message_id, e.source_id, e.body};
        if ((st = ps_store_log_append(t, &lr)) != PS_OK)
            break;
        encode_event(t, &e);
        MDB_val nv = {t->val.len, t->val.ptr};
        if ((rc = mdb_put(t->txn, scratch, &k, &nv, MDB_APPEND)) != 0)
            break;
        (*messages)++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur)
        mdb_cursor_close(cur);
    cur = NULL;
    if (rc == MDB_NOTFOUND)
        rc = 0;
    /* the rewritten rows replace the old ones */
    if (rc == 0 && st == PS_OK)
        rc = mdb_drop(t->txn, s->dbi[DB_EVENT], 0);
    if (rc == 0 && st == PS_OK)
        rc = mdb_cursor_open(t->txn, scratch, &cur);
    if (rc == 0 && st == PS_OK)
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && st == PS_OK) {
        if ((rc = mdb_put(t->txn, s->dbi[DB_EVENT], &k, &v, MDB_APPEND)) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur)
        mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc == 0 && st == PS_OK)
        rc = mdb_drop(t->txn, scratch, 1);
    if (rc == 0 && st == PS_OK)
        rc = put_format(t->txn, s->dbi[DB_META], PS_STORE_FORMAT);
    if (rc == 0 && st == PS_OK)
        st = ps_store_meta_put(t, log_incomplete_key, PS_SLICE_STR("format 1 kept only events"));
    if (rc && st == PS_OK)
        st = map_rc(rc, "migrate");
    if (st != PS_OK) {
        ps_txn_abort(t);
        return st;
    }
    if ((st = ps_txn_commit(t)) == PS_OK)
        s->format = PS_STORE_FORMAT;
    return st;
}
