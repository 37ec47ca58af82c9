/* SPDX-License-Identifier: MIT */
/* store: the LMDB environment of a space, its transactions, counters and meta table; the
 * other storage modules (graphdb.c, records.c, msglog.c) hold the other tables.
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
 *   event       seq:u64                               [1,type,profile,ts] (brief; older rows
 *                                                      whole: [1,type,profile,ts,name,ids,
 *                                                      spans]; format 1: [1,type,profile,ts,
 *                                                      received,msg_id,source,name,ids,body])
 *   pevent      profile:u64 ts:u64 seq:u64            [1,type,name,ids,spans] (older: empty)
 *   link        from:u64 to:u64                       [1,created]
 *   dedup       message_id bytes                      [1,received]
 *   dedup_time  received:u64 message_id               (empty)
 *   audit       seq:u64                               [1,kind,reason,event_type,coll,profile,
 *                                                      canonical,ts,received,msg_id,source,
 *                                                      type,value,count]
 *   types       type bytes                            [1,coll]
 */
#define _GNU_SOURCE
#include "store_int.h"

#include "ps/fsutil.h"
#include "ps/process.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

static void txn_free(ps_txn *t);
static int full_disk_rc(MDB_env *env, int rc);

/* ---- environment ---- */

/* LMDB maps its lock file and writes reader slots through that map, so a page of it that the
 * filesystem has no block for is a SIGBUS on a full disk, not an error: the first reader of a
 * new environment, or a reader taking a slot no process used before. So the file is allocated
 * in full before LMDB opens it (LMDB keeps the size of a lock file larger than it would make:
 * it then allows more readers). Without write access to it (another user's store, read-only)
 * it is left to LMDB. */
#define LOCK_FILE_BYTES 32768 /* LMDB's size for 510 readers */

static ps_status lock_file_allocate(const char *dir)
{
    char path[4200];
    if (snprintf(path, sizeof path, "%s/lock.mdb", dir) >= (int)sizeof path)
        return PS_EINVAL;
    /* opened and closed before LMDB takes its locks on it: closing drops a process's locks */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno == ENOSPC || errno == EDQUOT ? map_rc(errno, "lock file") : PS_OK;
    struct stat sb;
    off_t bytes =
        fstat(fd, &sb) == 0 && sb.st_size > LOCK_FILE_BYTES ? sb.st_size : LOCK_FILE_BYTES;
    int rc = posix_fallocate(fd, 0, bytes);
    close(fd);
    if (rc == ENOSPC || rc == EDQUOT || rc == EFBIG)
        return map_rc(rc == EFBIG ? ENOSPC : rc, "lock file");
    return PS_OK; /* a filesystem without fallocate: as before */
}

/* A data file shorter than the pages its meta counts (a truncated copy, a damaged disk) would
 * make the first read of a missing page a SIGBUS through the map. LMDB itself can leave the
 * last few pages unwritten (pages a transaction allocated and freed again), so a short file is
 * extended with a hole: missing pages read as zeros, which LMDB reports as a corrupt page. */
static ps_status data_file_whole(MDB_env *env, const char *dir)
{
    MDB_envinfo info;
    MDB_stat st;
    int fd;
    struct stat sb;
    if (mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &st) != 0 ||
        mdb_env_get_fd(env, &fd) != 0 || fstat(fd, &sb) != 0)
        return PS_EIO;
    off_t used = (off_t)(info.me_last_pgno + 1) * st.ms_psize;
    if (sb.st_size >= used)
        return PS_OK;
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    int wfd = open(path, O_WRONLY | O_CLOEXEC);
    bool grown = wfd >= 0 && ftruncate(wfd, used) == 0;
    if (wfd >= 0)
        close(wfd);
    ps_log(grown ? PS_LOG_WARN : PS_LOG_ERROR,
           "msg=\"data file shorter than the store\" path=%s bytes=%lld expected=%lld "
           "detail=\"%s\"",
           path, (long long)sb.st_size, (long long)used,
           grown ? "missing pages read as zeros; run profilectl check"
                 : "cannot extend it: refusing to map it");
    return grown ? PS_OK : PS_ECORRUPT;
}

#define MAP_SIZE_MIN (64ULL << 10) /* PS_MAP_SIZE's range: LMDB rounds a small map up to the */
#define MAP_SIZE_MAX (1ULL << 46)  /* used size; 64 TiB is half the address space */

ps_status ps_store_env_map_size(uint64_t *out)
{
    *out = 0;
    const char *env_size = getenv("PS_MAP_SIZE");
    if (env_size == NULL || *env_size == 0)
        return PS_OK;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(env_size, &end, 10);
    if (errno || *end || env_size[0] == '-' || v < MAP_SIZE_MIN || v > MAP_SIZE_MAX) {
        ps_log(PS_LOG_ERROR,
               "msg=\"PS_MAP_SIZE must be a number of bytes from %llu to %llu\" value=\"%.40s\"",
               (unsigned long long)MAP_SIZE_MIN, (unsigned long long)MAP_SIZE_MAX, env_size);
        return PS_EINVAL;
    }
    *out = v;
    return PS_OK;
}

/* ps_store_open's tables, format and dictionary: a guarded step (a damaged page of the
 * main or meta table fails the open, not the process). What it began stays in `oc`. */
typedef struct open_call {
    ps_store *s;
    const ps_store_opts *opts;
    MDB_txn *txn;
    bool write;
    bool returned; /* not cut short */
    int rc;
} open_call;

/* The write transaction of an open (a new store's tables, an empty store's format): only
 * after the page audit, as every write of this process (pages_audited). */
static int open_write_begin(ps_store *s, MDB_txn **txn)
{
    ps_status st = st_pages_audited(s);
    if (st != PS_OK)
        return st == PS_ECORRUPT ? MDB_CORRUPTED : EIO;
    return mdb_txn_begin(s->env, NULL, 0, txn);
}

static ps_status open_tables(void *ud)
{
    open_call *oc = ud;
    ps_store *s = oc->s;
    const ps_store_opts *opts = oc->opts;
    /* Open every named database. A store that has them all is opened in a read transaction,
     * so that opening never waits for another process's writer; a new (or older) store gets
     * its databases and format in one write transaction. */
    oc->rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &oc->txn);
    for (int i = 0; oc->rc == 0 && i < DB__COUNT; i++)
        oc->rc = mdb_dbi_open(oc->txn, db_names[i], 0, &s->dbi[i]);
    if (oc->rc == MDB_NOTFOUND && !opts->read_only) {
        mdb_txn_abort(oc->txn);
        oc->write = true;
        oc->rc = open_write_begin(s, &oc->txn);
        for (int i = 0; oc->rc == 0 && i < DB__COUNT; i++)
            oc->rc = mdb_dbi_open(oc->txn, db_names[i], MDB_CREATE, &s->dbi[i]);
    } else if (oc->rc == MDB_NOTFOUND) { /* read-only: an older store, without the log table */
        oc->rc = 0;
        mdb_txn_abort(oc->txn);
        oc->txn = NULL;
        s->format = 1;
    }
    ps_status st = oc->txn == NULL && oc->rc == 0 ? PS_EFORMAT : PS_OK;
    if (oc->rc == 0 && oc->txn) {
        MDB_val k = {6, "format"}, v;
        int grc = mdb_get(oc->txn, s->dbi[DB_META], &k, &v);
        if (grc == 0 && !oc->write && s->map == NULL) /* a read transaction's value is in the map */
            st_map_find(s, v.mv_data);
        if (grc == MDB_NOTFOUND && oc->write) {
            s->format = PS_STORE_FORMAT;
            oc->rc = put_format(oc->txn, s->dbi[DB_META], PS_STORE_FORMAT);
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
                bool empty = mdb_stat(oc->txn, s->dbi[DB_PROFILE], &ps) == 0 &&
                             ps.ms_entries == 0 && mdb_stat(oc->txn, s->dbi[DB_EVENT], &es) == 0 &&
                             es.ms_entries == 0;
                if (empty && oc->write) {
                    s->format = PS_STORE_FORMAT;
                    oc->rc = put_format(oc->txn, s->dbi[DB_META], PS_STORE_FORMAT);
                } else if (empty && !opts->read_only) { /* mark it in a oc->write transaction */
                    mdb_txn_abort(oc->txn);
                    oc->txn = NULL;
                    oc->write = true;
                    oc->rc = open_write_begin(s, &oc->txn);
                    if (oc->rc == 0) {
                        s->format = PS_STORE_FORMAT;
                        oc->rc = put_format(oc->txn, s->dbi[DB_META], PS_STORE_FORMAT);
                    }
                } else if (!empty && !opts->any_format) {
                    st = PS_EFORMAT;
                }
            }
        } else if (grc != MDB_NOTFOUND) {
            oc->rc = grc;
        }
    }
    if (oc->txn && oc->rc == 0 && st == PS_OK && s->format == PS_STORE_FORMAT) {
        /* the log's dictionary, when there is one, compresses new messages from the first */
        char key[32];
        st_log_dict_key(key);
        MDB_val k = {strlen(key), key}, v;
        if (mdb_get(oc->txn, s->dbi[DB_META], &k, &v) == 0)
            st_log_dict_install(s, v.mv_data, v.mv_size);
    }
    if (oc->txn && oc->rc == 0 && st == PS_OK)
        oc->rc = mdb_txn_commit(oc->txn);
    else if (oc->txn)
        mdb_txn_abort(oc->txn);
    if (oc->rc && st == PS_OK)
        st = map_rc(full_disk_rc(s->env, oc->rc), "open dbi");
    oc->returned = true;
    return st;
}

ps_status ps_store_open(const char *dir, const ps_store_opts *opts, ps_store **out)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (!opts->create)
            return PS_ENOTFOUND;
        ps_status st = ps_mkdirs(dir);
        if (st != PS_OK)
            return st;
    } else if (!S_ISDIR(sb.st_mode)) {
        return PS_EINVAL;
    }
    uint64_t map_size = opts->map_size_bytes;
    if (map_size == 0 && ps_store_env_map_size(&map_size) != PS_OK)
        return PS_EINVAL;
    if (map_size == 0)
        map_size = 16ULL << 30;
    ps_status lst = lock_file_allocate(dir);
    if (lst != PS_OK)
        return lst;

    ps_store *s = ps_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_mutex_init(&s->dict_lock, NULL);
    pthread_mutex_init(&s->audit_lock, NULL);
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
        rc = mdb_env_set_userctx(s->env, s);
    if (rc == 0)
        rc = mdb_env_set_assert(s->env, st_on_lmdb_assert);
    if (rc == 0)
        rc = mdb_env_open(s->env, dir, MDB_NOTLS | (opts->read_only ? MDB_RDONLY : 0), 0644);
    ps_status whole = rc == 0 ? data_file_whole(s->env, dir) : PS_OK;
    if (rc || whole != PS_OK) {
        ps_status st = rc ? map_rc(rc, "open") : whole;
        if (rc == ENOENT)
            st = PS_ENOTFOUND;
        mdb_env_close(s->env);
        pthread_mutex_destroy(&s->pool_lock);
        pthread_mutex_destroy(&s->dict_lock);
        pthread_mutex_destroy(&s->audit_lock);
        free(s->name);
        free(s);
        return st;
    }
    st_map_find(s, NULL);
    open_call oc = {.s = s, .opts = opts};
    ps_status st = ps_store_guarded(s, open_tables, &oc);
    if (!oc.returned && oc.txn && oc.write) {
        /* cut short in a write LMDB was in the middle of: like any such write, it is never
         * handed back to LMDB, so neither is the store (its writer lock stays with us) */
        return PS_ECORRUPT;
    }
    if (!oc.returned && oc.txn)
        mdb_txn_abort(oc.txn);
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
    if (s->auditor_started) {
        atomic_store(&s->ahead_stop, true);
        pthread_join(s->auditor, NULL);
    }
    for (size_t i = 0; i < s->pooled; i++) {
        mdb_txn_abort(s->pool[i]->txn);
        txn_free(s->pool[i]);
    }
    pthread_mutex_destroy(&s->pool_lock);
    pthread_mutex_destroy(&s->dict_lock);
    pthread_mutex_destroy(&s->audit_lock);
    st_icache_clear(s);
    free(s->icache);
    ZSTD_freeCDict(s->cdict);
    for (int i = 0; i < 256; i++)
        ZSTD_freeDDict(s->ddict[i]);
    /* its descriptor's mark goes before LMDB closes it: the number may be reused */
    ps_store_pace_writeback(s, false);
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

static void txn_free(ps_txn *t)
{
    st_profiles_drop(t);
    st_behind_drop(t);
    ps_buf_clear(&t->key);
    ps_buf_clear(&t->val);
    ps_buf_clear(&t->plain);
    ZSTD_freeDCtx(t->dctx);
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
    while (t->open_count) /* left open by a guarded call cut short */
        mdb_cursor_close(t->open[--t->open_count]);
    mdb_txn_reset(t->txn);
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
    if (write && atomic_load(&s->write_broken)) {
        if (!atomic_exchange(&s->write_broken_said, true)) /* once: the writer retries */
            ps_log(PS_LOG_ERROR,
                   "msg=\"store corrupt: no more writes from this process\" store=%s "
                   "hint=\"restore the space from a snapshot, or salvage its log into a new "
                   "space (docs/profilectl.md, log --salvage)\"",
                   s->name);
        return PS_ECORRUPT;
    }
    ps_status ast = write ? st_pages_audited(s) : PS_OK;
    if (ast != PS_OK)
        return ast;
    long holder = write ? st_writer_note_holder(s) : 0;
    if (holder) { /* waiting for its lock would never end */
        ps_log(PS_LOG_ERROR,
               "msg=\"store corrupt: another process holds the writer lock since it met a "
               "damaged page\" store=%s pid=%ld hint=\"stop that process (a profiled), then "
               "restore the space from a snapshot or salvage its log into a new space "
               "(docs/profilectl.md, log --salvage)\"",
               s->name, holder);
        return PS_ECORRUPT;
    }
    t = ps_xcalloc(1, sizeof *t);
    t->store = s;
    t->write = write;
    int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    if (rc) {
        free(t);
        return map_rc(rc, "txn begin");
    }
    if (write)
        st_writing(t, true);
    ps_buf_init(&t->key);
    ps_buf_init(&t->val);
    ps_status st = write ? load_counters(t) : PS_OK; /* a writer's counters move at once */
    if (write)
        st_icache_begin(t);
    if (st != PS_OK) {
        ps_txn_abort(t);
        return st;
    }
    *out = t;
    return PS_OK;
}

/* LMDB reports a write the disk cut short as EIO, not ENOSPC: when the filesystem of `env` has
 * no room left after such a failure, it was the disk that filled. */
static int full_disk_rc(MDB_env *env, int rc)
{
    int fd;
    struct statvfs v;
    if (rc != EIO || mdb_env_get_fd(env, &fd) != 0 || fstatvfs(fd, &v) != 0)
        return rc;
    uint64_t room = (uint64_t)(geteuid() == 0 ? v.f_bfree : v.f_bavail) * v.f_frsize;
    return room < (1u << 20) ? ENOSPC : rc;
}

ps_status ps_txn_commit(ps_txn *t)
{
    if (t->broken) { /* cut short in LMDB: nothing more of it goes to LMDB */
        ps_txn_abort(t);
        return PS_ECORRUPT;
    }
    ps_status st = PS_OK;
    uint8_t *dict = NULL;
    size_t dict_len = 0;
    if (t->write)
        st = st_profiles_flush(t, true);
    if (st == PS_OK && t->write)
        st = st_behind_put(t, DB_PEVENT);
    if (st == PS_OK && t->write)
        st = st_behind_put(t, DB_PMSG);
    if (st == PS_OK && t->write && t->logged && atomic_load(&t->store->cdict) == NULL)
        st = st_log_dict_prepare(t, &dict, &dict_len);
    if (st == PS_OK && t->write && t->counters_dirty) {
        mpack pk = pk_begin(t, PS_CTR__COUNT);
        for (int i = 0; i < PS_CTR__COUNT; i++)
            mp_uint(&pk, t->counters[i]);
        key_reset(t);
        key_bytes(t, counters_key, sizeof counters_key - 1);
        st = put_val(t, DB_META);
    }
    if (!t->write) {
        read_end(t);
        return PS_OK;
    }
    ps_store *s = t->store;
    /* the identifier cache is kept under LMDB's writer lock, so its bookkeeping happens
     * before the commit or abort releases it: trusted from the next transaction id when the
     * commit succeeds (a failed one leaves the next transaction this id, which the cache
     * then distrusts) */
    if (st != PS_OK) {
        st_icache_clear(s);
        mdb_txn_abort(t->txn);
    } else {
        st_icache_committed(s, mdb_txn_id(t->txn));
        int rc = mdb_txn_commit(t->txn);
        st = map_rc(full_disk_rc(s->env, rc), "commit");
    }
    st_writing(t, false);
    txn_free(t);
    if (st == PS_OK && dict)
        st_log_dict_install(s, dict, dict_len);
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
    st_icache_clear(t->store); /* still under the writer lock: the next writer reuses the id */
    if (!t->broken)            /* else left to LMDB as it is (damage_found) */
        mdb_txn_abort(t->txn);
    st_writing(t, false);
    txn_free(t);
}

uint64_t ps_txn_snapshot(ps_txn *t)
{
    return (uint64_t)mdb_txn_id(t->txn);
}

bool ps_txn_writable(const ps_txn *t)
{
    return t->write;
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

ps_status ps_store_meta_get_u64(ps_txn *t, const char *key, uint64_t *out)
{
    ps_slice v;
    ps_status st = ps_store_meta_get(t, key, &v);
    if (st == PS_OK && v.len != 8)
        return PS_ECORRUPT;
    if (st == PS_OK)
        *out = ps_get_be64(v.ptr);
    return st;
}

ps_status ps_store_meta_put_u64(ps_txn *t, const char *key, uint64_t value)
{
    uint8_t b[8];
    ps_put_be64(b, value);
    return ps_store_meta_put(t, key, (ps_slice){b, 8});
}

ps_status ps_store_meta_del(ps_txn *t, const char *key)
{
    key_reset(t);
    key_bytes(t, key, strlen(key));
    return del_key(t, DB_META);
}

ps_status ps_store_meta_del_prefix(ps_txn *t, const char *prefix)
{
    key_reset(t);
    key_bytes(t, prefix, strlen(prefix));
    return del_prefix(t, DB_META);
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

/* ---- counts ---- */

ps_status ps_store_counts_get(ps_txn *t, ps_store_counts *out)
{
    ps_status fst = t->write ? st_profiles_flush(t, false) : PS_OK;
    if (fst == PS_OK && t->write)
        fst = st_behind_put(t, DB_PEVENT);
    if (fst == PS_OK && t->write)
        fst = st_behind_put(t, DB_PMSG);
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
    st_profiles_drop(t); /* the records are about to go */
    st_behind_drop(t);
    st_icache_clear(t->store);
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
    ps_status st = ps_store_meta_del(t, ST_DEDUP_EXPIRED_KEY);
    return st == PS_ENOTFOUND ? PS_OK : st;
}

/* ---- compaction ---- */

static int count_other(const char *msg, void *ctx)
{
    /* a line: "    pid     thread     txnid", after a header line */
    long pid = 0;
    if (sscanf(msg, "%ld", &pid) == 1 && pid > 0 && pid != (long)getpid())
        (*(int *)ctx)++;
    return 0;
}

int ps_store_other_processes(ps_store *s)
{
    int dead = 0, others = 0;
    mdb_reader_check(s->env, &dead); /* slots of processes that died */
    mdb_reader_list(s->env, count_other, &others);
    return others;
}

void ps_store_remove(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}

/* Copies every record of every table of `s`, as one read transaction sees them, into a new
 * environment in `tmp_dir` (created), building its pages afresh: a page copy (mdb_env_copy2)
 * would carry the bytes of deleted records that LMDB leaves in a page's free gap. With
 * `recode`, the log's dictionary is trained again and every message compressed with it. */
static ps_status copy_fresh(ps_store *s, const char *tmp_dir, uint64_t *records, bool recode_log)
{
    *records = 0;
    ps_store_remove(tmp_dir); /* a copy an earlier compaction left (it crashed before its rename) */
    if (mkdir(tmp_dir, 0755) != 0 && errno != EEXIST)
        return errno == ENOSPC || errno == EDQUOT ? map_rc(errno, "compact") : PS_EIO;
    MDB_env *env = NULL;
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, DB__COUNT + 2);
    if (rc == 0)
        rc = mdb_env_set_mapsize(env, info.me_mapsize);
    ps_status st = rc ? map_rc(rc, "compact") : lock_file_allocate(tmp_dir);
    if (rc == 0 && st == PS_OK)
        rc = mdb_env_open(env, tmp_dir, MDB_NOSYNC, 0644); /* synced once, at the end */
    ps_txn *t = NULL;
    MDB_txn *wt = NULL;
    if (st == PS_OK)
        st = rc ? map_rc(rc, "compact") : ps_txn_begin(s, false, &t);
    if (st == PS_OK && (rc = mdb_txn_begin(env, NULL, 0, &wt)) != 0)
        st = map_rc(rc, "compact");
    /* The log's dictionary was trained on the first messages, which an erasure may have
     * removed: train it again on what the log holds now and compress every message with it. */
    char dict_name[32];
    st_log_dict_key(dict_name);
    ps_slice old_dict;
    bool recode = recode_log && st == PS_OK && ps_store_meta_get(t, dict_name, &old_dict) == PS_OK;
    uint8_t *dict = NULL;
    size_t dict_len = 0;
    if (recode)
        st = st_log_dict_retrain(t, &dict, &dict_len);
    ps_buf val;
    ps_buf_init(&val);
    for (int db = 0; st == PS_OK && db < DB__COUNT; db++) {
        MDB_dbi to;
        MDB_cursor *cur;
        if ((rc = mdb_dbi_open(wt, db_names[db], MDB_CREATE, &to)) != 0 ||
            (rc = cur_open(t, s->dbi[db], &cur)) != 0) {
            st = map_rc(rc, "compact");
            break;
        }
        MDB_val k, v;
        int grc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (grc == 0 && st == PS_OK) {
            MDB_val out = v;
            bool is_dict = db == DB_META && k.mv_size == strlen(dict_name) &&
                           memcmp(k.mv_data, dict_name, k.mv_size) == 0;
            if (is_dict)
                out = (MDB_val){dict_len, dict};
            else if (db == DB_LOG && recode && (st = st_log_recode(t, &k, &v, &val)) == PS_OK)
                out = (MDB_val){val.len, val.ptr};
            if (st == PS_OK && !(is_dict && dict == NULL)) { /* in key order: pages fill up */
                if ((rc = mdb_put(wt, to, &k, &out, MDB_APPEND)) != 0)
                    st = map_rc(full_disk_rc(env, rc), "compact");
                (*records)++;
            }
            grc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (st == PS_OK && grc != MDB_NOTFOUND)
            st = map_rc(grc, "compact");
        cur_close(t, cur);
    }
    ps_buf_clear(&val);
    free(dict);
    if (recode && st != PS_OK) /* the stored dictionary stays: encode with it again */
        ZSTD_freeCDict(atomic_exchange(&s->cdict, NULL));
    if (t)
        ps_txn_abort(t);
    if (st == PS_OK && (rc = mdb_txn_commit(wt)) != 0)
        st = map_rc(full_disk_rc(env, rc), "compact");
    else if (st != PS_OK && wt)
        mdb_txn_abort(wt);
    if (st == PS_OK && (rc = mdb_env_sync(env, 1)) != 0)
        st = map_rc(full_disk_rc(env, rc), "compact");
    if (env)
        mdb_env_close(env);
    return st;
}

ps_status ps_store_compact(ps_store **sp, const char *dir, uint64_t *bytes_before,
                           uint64_t *bytes_after)
{
    ps_store *s = *sp;
    char tmp[4096], path[4200], data[4096];
    if (strlen(dir) > 3000)
        return PS_EINVAL;
    snprintf(tmp, sizeof tmp, "%s/compact.tmp", dir);
    snprintf(path, sizeof path, "%s/data.mdb", tmp);
    snprintf(data, sizeof data, "%s/data.mdb", dir);
    struct stat sb;
    *bytes_before = stat(data, &sb) == 0 ? (uint64_t)sb.st_blocks * 512 : 0;
    uint64_t records;
    ps_status st = copy_fresh(s, tmp, &records, true);
    if (st != PS_OK) { /* a part-made copy must not keep the disk full */
        ps_store_remove(tmp);
        return st;
    }
    ps_store_close(s); /* nothing may use the old file past this point */
    *sp = NULL;
    /* the swap is one rename: a crash leaves the old file or the new one, whole */
    char lock[4096], tmplock[4200];
    snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
    snprintf(tmplock, sizeof tmplock, "%s/lock.mdb", tmp);
    if (rename(path, data) != 0)
        return PS_EIO;
    unlink(tmplock);
    rmdir(tmp);
    (void)ps_dir_sync(dir);
    unlink(lock); /* recreated by the next opener, for the new file */
    *bytes_after = stat(data, &sb) == 0 ? (uint64_t)sb.st_blocks * 512 : 0;
    ps_store_opts o = {0};
    return ps_store_open(dir, &o, sp);
}

ps_status ps_store_snapshot(ps_store *s, const char *dir, uint64_t *records)
{
    struct stat sb;
    if (strlen(dir) > 3000)
        return PS_EINVAL;
    if (stat(dir, &sb) == 0)
        return PS_ECONFLICT;
    ps_status st = ps_mkdirs(dir); /* and the directories above it */
    if (st == PS_OK)
        st = copy_fresh(s, dir, records, false);
    if (st != PS_OK) { /* no half-made snapshot stays behind */
        ps_store_remove(dir);
        return st;
    }
    char lock[4200];
    snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
    unlink(lock); /* made by the copy's environment; the next opener makes its own */
    (void)ps_dir_sync(dir);
    return PS_OK;
}
