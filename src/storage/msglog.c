/* SPDX-License-Identifier: MIT */
/* msglog: the accepted-message log (the source of truth), its compression dictionaries,
 * messageId dedup (which expires by walking the log), and the upgrade from format 1. */
#include "store_int.h"

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
#define LOG_DICT_BYTES (64u << 10)      /* its size */
#define LOG_DICT_SAMPLE_MAX (16u << 20) /* bytes of messages it is trained on, at most */
#define LOG_DICT_ID 1u                  /* the one dictionary so far */

static void dict_key(unsigned id, char out[32])
{
    snprintf(out, 32, "log/dict/%u", id);
}

/* One compression context per thread that encodes (HTTP workers, the CLI's reader, the
 * writer), freed when the thread ends. */
static void cctx_free(void *p)
{
    ZSTD_freeCCtx(p);
}

static void *cctx_make(void)
{
    return ZSTD_createCCtx();
}

static ps_thread_slot cctx_slot = PS_THREAD_SLOT(cctx_make, cctx_free);

static ZSTD_CCtx *thread_cctx(void)
{
    return ps_thread_slot_get(&cctx_slot);
}

void ps_store_log_encode(ps_store *s, const ps_log_rec *r, bool portable, ps_buf *b)
{
    PS_ASSERT(r->message_id.len <= 0xffff && r->source_id.len <= 0xffff);
    ZSTD_CCtx *cctx = thread_cctx();
    ZSTD_CDict *cdict = portable ? NULL : atomic_load(&s->cdict);
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
    return append_put(t, DB_LOG, &k, &v); /* sequence numbers only grow */
}

ps_status ps_store_log_append(ps_txn *t, const ps_log_rec *r)
{
    ps_buf_reset(&t->val);
    ps_store_log_encode(t->store, r, false, &t->val);
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
    ps_touch(v.ptr, v.len); /* a fault in the map comes before the lock, not under it */
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
    size_t sizes[PS_LOG_DICT_AFTER];
    unsigned count;
} sample_ctx;

static bool take_sample(void *ud, const ps_log_rec *r)
{
    sample_ctx *c = ud;
    if (c->bytes.len + r->json.len > LOG_DICT_SAMPLE_MAX)
        return false;
    ps_buf_append(&c->bytes, r->json.ptr, r->json.len);
    c->sizes[c->count++] = r->json.len;
    return c->count < PS_LOG_DICT_AFTER;
}

/* Trains a dictionary on the first PS_LOG_DICT_AFTER messages of the log `t` sees: its bytes
 * in *out (free them), *n 0 when the samples are too few or too uniform. */
static ps_status train(ps_txn *t, uint8_t **out, size_t *n)
{
    sample_ctx *c = ps_xcalloc(1, sizeof *c);
    ps_status st = ps_store_log_scan(t, 1, true, take_sample, c);
    *out = ps_xmalloc(LOG_DICT_BYTES);
    /* fastCover with fixed parameters: about a quarter of the default training's time (which
     * searches for them, on the writer's thread), for a log about 7% larger */
    ZDICT_fastCover_params_t fp = {.k = 200, .d = 8, .f = 20, .accel = 1};
    fp.zParams.compressionLevel = LOG_ZSTD_LEVEL;
    *n = st == PS_OK ? ZDICT_trainFromBuffer_fastCover(*out, LOG_DICT_BYTES, c->bytes.ptr, c->sizes,
                                                       c->count, fp)
                     : 0;
    if (ZDICT_isError(*n))
        *n = 0;
    ps_buf_clear(&c->bytes);
    free(c);
    return st;
}

void st_log_dict_key(char out[32])
{
    dict_key(LOG_DICT_ID, out);
}

ps_status st_log_dict_retrain(ps_txn *t, uint8_t **dict, size_t *dict_len)
{
    *dict = NULL;
    *dict_len = 0;
    uint8_t *out;
    size_t n;
    ps_status st = train(t, &out, &n);
    if (st == PS_OK && n > 0) {
        *dict = out;
        *dict_len = n;
        /* new messages (this store's encoder) use it from now on */
        ZSTD_CDict *cd = ZSTD_createCDict(out, n, LOG_ZSTD_LEVEL);
        ZSTD_freeCDict(atomic_exchange(&t->store->cdict, cd));
        atomic_store(&t->store->cdict_id, (uint8_t)LOG_DICT_ID);
    } else {
        free(out);
        ZSTD_freeCDict(atomic_exchange(&t->store->cdict, NULL));
    }
    return st;
}

ps_status st_log_recode(ps_txn *t, const MDB_val *k, const MDB_val *v, ps_buf *out)
{
    ps_log_rec r;
    if (k->mv_size != 8)
        return PS_ECORRUPT;
    ps_status st = log_decode(t, ps_get_be64(k->mv_data), v, true, &r);
    if (st == PS_OK) {
        ps_buf_reset(out);
        ps_store_log_encode(t->store, &r, false, out);
    }
    return st;
}

/* Before a write transaction that logged messages commits, while the store has no dictionary
 * in memory: the dictionary another process stored, or, once the log holds PS_LOG_DICT_AFTER
 * messages, one trained on the first of them and stored. Its bytes (a copy) go to `*dict`
 * to be installed after the commit. A training that fails leaves a note so that it is tried
 * again only when the log has doubled. */
ps_status st_log_dict_prepare(ps_txn *t, uint8_t **dict, size_t *dict_len)
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
    uint64_t failed_at = PS_LOG_DICT_AFTER / 2;
    st = ps_store_meta_get_u64(t, "log/dict-failed", &failed_at);
    if (st != PS_OK && st != PS_ENOTFOUND)
        return st;
    if (ms.ms_entries < 2 * failed_at)
        return PS_OK;
    uint8_t *out;
    size_t n;
    st = train(t, &out, &n);
    if (st == PS_OK && n == 0) { /* too few or too uniform samples: later */
        st = ps_store_meta_put_u64(t, "log/dict-failed", ms.ms_entries);
        n = 0;
    } else if (st == PS_OK) {
        st = ps_store_meta_put(t, key, (ps_slice){out, n});
    }
    if (st == PS_OK && n > 0) {
        *dict = out;
        *dict_len = n;
    } else {
        free(out);
    }
    return st;
}

bool ps_store_log_dict_ready(ps_store *s)
{
    return atomic_load(&s->cdict) != NULL;
}

/* Makes committed dictionary bytes the one new messages are compressed with. */
void st_log_dict_install(ps_store *s, const uint8_t *dict, size_t len)
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

ps_status ps_store_log_del(ps_txn *t, uint64_t seq)
{
    key_reset(t);
    key_u64(t, seq);
    ps_status st = del_key(t, DB_LOG);
    return st == PS_ENOTFOUND ? PS_OK : st;
}

ps_slice ps_store_log_value_id(ps_slice value)
{
    if (value.len < LOG_HEAD)
        return (ps_slice){NULL, 0};
    size_t n = ((size_t)value.ptr[4] << 8) | value.ptr[5];
    if (LOG_HEAD + n > value.len)
        return (ps_slice){NULL, 0};
    return (ps_slice){value.ptr + LOG_HEAD, n};
}

ps_status ps_store_log_decode(ps_txn *t, ps_slice value, ps_log_rec *out)
{
    MDB_val v = {value.len, (void *)value.ptr};
    return log_decode(t, 0, &v, true, out);
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

/* ---- salvage ---- */

/* Probes past a damaged page are this far apart at most: a leaf holds some 20-30 messages,
 * so no readable one is stepped over. */
#define SALVAGE_STEP_MAX 16

typedef struct salvage {
    ps_store *s;
    uint64_t pos;   /* the first sequence number not visited yet */
    uint64_t found; /* a probe's: the first message at or after `pos`; 0 when none */
    uint64_t last;  /* the message counter's last number, 0 when it cannot be read */
    ps_log_fn fn;
    void *ud;
    bool stopped; /* fn said stop, or the log's last possible number was visited */
    bool behind;  /* the walk met a key at or before one it had passed: damage */
    bool no_txn;  /* a read transaction could not begin: not damage, and fatal */
} salvage;

static bool salvage_visit(void *ud, const ps_log_rec *r)
{
    salvage *sv = ud;
    if (r->seq < sv->pos) { /* a damaged page's key, out of order */
        sv->behind = true;
        return false;
    }
    sv->stopped = !sv->fn(sv->ud, r) || r->seq == UINT64_MAX;
    sv->pos = r->seq + 1;
    return !sv->stopped;
}

static ps_status salvage_walk(ps_txn *t, void *ud)
{
    salvage *sv = ud;
    sv->behind = false;
    ps_status st = ps_store_log_scan(t, sv->pos, true, salvage_visit, sv);
    return st == PS_OK && sv->behind ? PS_ECORRUPT : st;
}

/* Whether the first message at or after sv->pos reads whole (sv->found; 0: there is none). */
static ps_status salvage_probe(ps_txn *t, void *ud)
{
    salvage *sv = ud;
    MDB_cursor *cur;
    int rc = cur_open(t, sv->s->dbi[DB_LOG], &cur);
    if (rc)
        return map_rc(rc, "log");
    uint8_t key[8];
    ps_put_be64(key, sv->pos);
    MDB_val k = {sizeof key, key}, v;
    ps_log_rec r;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    sv->found = 0;
    ps_status st = PS_OK;
    if (rc == 0 && k.mv_size == 8 && ps_get_be64(k.mv_data) >= sv->pos) {
        sv->found = ps_get_be64(k.mv_data);
        st = log_decode(t, sv->found, &v, true, &r);
    } else if (rc != MDB_NOTFOUND) {
        st = rc ? map_rc(rc, "log") : PS_ECORRUPT; /* a key of the wrong size, or behind */
    }
    cur_close(t, cur);
    return st;
}

static ps_status salvage_last(ps_txn *t, void *ud)
{
    salvage *sv = ud;
    sv->last = ps_txn_peek(t, PS_CTR_MESSAGE) - 1;
    return PS_OK;
}

/* One step, guarded, in a read transaction of its own (one that met damage is not reused). */
static ps_status salvage_step(salvage *sv, ps_status (*step)(ps_txn *, void *), uint64_t pos)
{
    sv->pos = pos;
    bool ran;
    ps_status st = ps_store_read_guarded(sv->s, step, sv, &ran);
    sv->no_txn = !ran;
    return st;
}

static bool damage(ps_status st)
{
    return st == PS_ECORRUPT || st == PS_EIO;
}

/* The first number after `from` (which cannot be read) where a lookup reads a message or
 * finds the end of the log, 0 when there is none: probes at most SALVAGE_STEP_MAX apart up
 * to the message counter, then further out by doubling steps, then halving back. */
static uint64_t salvage_next(salvage *sv, uint64_t from)
{
    uint64_t bad = from, good = 0, step = 1;
    while (step <= UINT64_MAX - bad) {
        uint64_t at = bad + step;
        if (salvage_step(sv, salvage_probe, at) == PS_OK) {
            good = at;
            break;
        }
        if (sv->no_txn)
            return 0;
        bad = at;
        if (step < SALVAGE_STEP_MAX || sv->last == 0 || bad >= sv->last)
            step = step <= (UINT64_MAX >> 1) ? step * 2 : UINT64_MAX;
    }
    while (good && good - bad > 1) {
        uint64_t mid = bad + (good - bad) / 2;
        if (salvage_step(sv, salvage_probe, mid) == PS_OK)
            good = mid;
        else if (sv->no_txn)
            return 0;
        else
            bad = mid;
    }
    return good;
}

ps_status ps_store_log_salvage(ps_store *s, ps_log_fn fn, void *ud, ps_log_lost_fn lost,
                               void *lost_ud)
{
    salvage sv = {.s = s, .fn = fn, .ud = ud};
    (void)salvage_step(&sv, salvage_last, 0); /* unknown (0): probes go out by doubling */
    uint64_t pos = 1, failed_at = 0;
    for (;;) {
        ps_status st = salvage_step(&sv, salvage_walk, pos);
        if (sv.no_txn || !damage(st) || sv.stopped)
            return sv.stopped ? PS_OK : st;
        uint64_t from = sv.pos; /* where the walk stopped: nothing there could be read */
        if ((st = salvage_step(&sv, salvage_probe, from)) == PS_OK) {
            if (sv.found == 0) /* the walk stopped past the last message */
                return PS_OK;
            if (sv.found != from || failed_at != from) { /* a lookup reads on from there */
                failed_at = from;
                pos = sv.found;
                continue;
            }
            lost(lost_ud, from, from); /* read alone, never in a walk: passed over */
            if (from == UINT64_MAX)
                return PS_OK;
            pos = from + 1;
            continue;
        }
        if (sv.no_txn)
            return st;
        uint64_t next = salvage_next(&sv, from);
        if (sv.no_txn)
            return PS_EIO;
        /* none after it: to the counter's last number, when that can be read */
        lost(lost_ud, from, next ? next - 1 : sv.last >= from ? sv.last : UINT64_MAX);
        if (next == 0)
            return PS_OK;
        pos = next;
    }
}

static const char log_incomplete_key[] = PS_LOG_INCOMPLETE_KEY;

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

typedef struct trim_ctx {
    int64_t cutoff_ms;
    size_t max;
    uint64_t *seqs;
    size_t count;
} trim_ctx;

static bool trim_pick(void *ud, const ps_log_rec *r)
{
    trim_ctx *c = ud;
    if (r->received_ms >= c->cutoff_ms || c->count >= c->max)
        return false;
    c->seqs[c->count++] = r->seq;
    return true;
}

ps_status ps_store_log_trim(ps_txn *t, int64_t cutoff_ms, size_t max, size_t *trimmed)
{
    *trimmed = 0;
    static const char mark_key[] = "log/trimmed";
    uint64_t last = 0; /* the last message trimmed */
    ps_status st = ps_store_meta_get_u64(t, mark_key, &last);
    if (st != PS_OK && st != PS_ENOTFOUND)
        return st;
    uint64_t from = last + 1;
    trim_ctx c = {cutoff_ms, max, ps_xmalloc((max ? max : 1) * sizeof(uint64_t)), 0};
    st = ps_store_log_scan(t, from, false, trim_pick, &c); /* picked first: no delete under
                                                            * the walk's cursor */
    for (size_t i = 0; i < c.count && st == PS_OK; i++) {
        ps_event_rec e;
        ps_status es = ps_store_event_get(t, c.seqs[i], &e);
        if (es == PS_OK) { /* a track, page or screen: its event goes with it */
            st = ps_store_pevent_del(t, e.profile, e.timestamp_ms, c.seqs[i]);
            if (st == PS_OK)
                st = ps_store_event_del(t, c.seqs[i]);
        } else if (es != PS_ENOTFOUND) {
            st = es;
        }
        if (st == PS_OK)
            st = ps_store_log_del(t, c.seqs[i]);
    }
    if (st == PS_OK && c.count) {
        st = ps_store_meta_put_u64(t, mark_key, c.seqs[c.count - 1]);
        if (st == PS_OK)
            st = ps_store_meta_put(t, log_incomplete_key,
                                   PS_SLICE_STR("messages older than log_retention_days were "
                                                "trimmed"));
        *trimmed = c.count;
    }
    free(c.seqs);
    return st;
}

/* ---- dedup ---- */

static ps_status dedup_get(ps_txn *t, const char *message_id, int64_t *received_ms)
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

ps_status ps_store_dedup_claim(ps_txn *t, const char *message_id, int64_t received_ms,
                               int64_t window_ms, bool *duplicate)
{
    *duplicate = false;
    mpack pk = pk_begin(t, 1);
    mp_int(&pk, received_ms);
    key_reset(t);
    key_bytes(t, message_id, strlen(message_id));
    /* one search: the put finds the row when there is one (and then writes nothing) */
    MDB_val k = kv(&t->key), v = {t->val.len, t->val.ptr};
    int rc = mdb_put(t->txn, t->store->dbi[DB_DEDUP], &k, &v, MDB_NOOVERWRITE);
    if (rc != MDB_KEYEXIST)
        return map_rc(rc, "dedup");
    rec r;
    ps_status st = decode(t, &v, 1, &r);
    if (st != PS_OK)
        return st;
    int64_t gap = received_ms - r_i64(&r, 0);
    if (gap < 0)
        gap = -gap;
    if (gap < window_ms) {
        *duplicate = true;
        return PS_OK;
    }
    return put_val(t, DB_DEDUP); /* accepted again, outside the window: the newer time */
}

/* Expiry walks the log, which is in acceptance order, from where the last walk stopped
 * (meta "dedup/expired", a message sequence number): each message received before the cutoff
 * has its dedup row removed, unless the row is a later acceptance of the same id. A message
 * whose receivedAt is out of order can hold the walk back; a row that outlives its window
 * never changes a decision, because lookups compare the times. */

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
    ps_status st = dedup_get(c->t, id, &known);
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
    int rc = cur_open(t, t->store->dbi[DB_DEDUP_TIME], &cur);
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
    cur_close(t, cur);
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
    uint64_t from = 0;
    ps_status st = ps_store_meta_get_u64(t, ST_DEDUP_EXPIRED_KEY, &from);
    if (st != PS_OK && st != PS_ENOTFOUND)
        return st;
    expire_ctx c = {t, cutoff_ms, max, 0, from, PS_OK};
    st = ps_store_log_scan(t, from + 1, false, expire_one, &c);
    if (st == PS_OK)
        st = c.st;
    if (st == PS_OK && c.last != from)
        st = ps_store_meta_put_u64(t, ST_DEDUP_EXPIRED_KEY, c.last);
    *expired = before + c.done;
    return st;
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
        rc = cur_open(t, s->dbi[DB_EVENT], &cur);
    MDB_val k, v;
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && st == PS_OK) {
        ps_event_rec e;
        if (k.mv_size != 8 || (st = st_event_decode(t, ps_get_be64(k.mv_data), &v, &e)) != PS_OK) {
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
        st_event_encode(t, &e);
        MDB_val nv = {t->val.len, t->val.ptr};
        if ((rc = mdb_put(t->txn, scratch, &k, &nv, MDB_APPEND)) != 0)
            break;
        (*messages)++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur)
        cur_close(t, cur);
    cur = NULL;
    if (rc == MDB_NOTFOUND)
        rc = 0;
    /* the rewritten rows replace the old ones */
    if (rc == 0 && st == PS_OK)
        rc = mdb_drop(t->txn, s->dbi[DB_EVENT], 0);
    if (rc == 0 && st == PS_OK)
        rc = cur_open(t, scratch, &cur);
    if (rc == 0 && st == PS_OK)
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && st == PS_OK) {
        if ((rc = mdb_put(t->txn, s->dbi[DB_EVENT], &k, &v, MDB_APPEND)) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur)
        cur_close(t, cur);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc == 0 && st == PS_OK)
        rc = mdb_drop(t->txn, scratch, 1);
    if (rc == 0 && st == PS_OK)
        rc = put_format(t->txn, s->dbi[DB_META], PS_STORE_FORMAT);
    if (rc == 0 && st == PS_OK)
        st = ps_store_meta_put(
            t, log_incomplete_key,
            PS_SLICE_STR("it was migrated from storage format 1, which kept only recent "
                         "track, page and screen events"));
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
