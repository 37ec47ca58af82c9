/* SPDX-License-Identifier: MIT */
/* space: directory layout and settings. Settings live in the space's own meta database so a
 * change is one transaction, and a settings version lets writers notice a change cheaply. */
#include "ps/space.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps/auth.h"
#include "ps/fsutil.h"
#include "ps/graph.h"
#include "ps/graphdb.h"
#include "ps/journal.h"
#include "ps/log.h"
#include "ps/ratelimit.h"
#include "ps/text.h"

/* A document kept in meta (the settings, the filters), compiled once per version. Other
 * threads borrow the compiled object until the space closes, so one that is replaced is kept
 * (retired), not freed. */
typedef struct compiled {
    void *obj;         /* NULL until first compiled */
    ps_buf source;     /* the bytes `obj` was compiled from */
    uint64_t snapshot; /* the snapshot they were read in */
    void **retired;
    size_t retired_count;
} compiled;

/* The object compiled from `doc`, or NULL when it has to be compiled. */
static void *compiled_find(const compiled *c, ps_slice doc)
{
    bool same = c->obj && doc.len == c->source.len &&
                (doc.len == 0 || memcmp(doc.ptr, c->source.ptr, doc.len) == 0);
    return same ? c->obj : NULL;
}

/* Makes `obj`, compiled from `doc` as read in `snapshot`, the current one. */
static void compiled_set(compiled *c, ps_slice doc, uint64_t snapshot, void *obj)
{
    if (c->obj) {
        c->retired = ps_xrealloc(c->retired, (c->retired_count + 1) * sizeof *c->retired);
        c->retired[c->retired_count++] = c->obj;
    }
    ps_buf_reset(&c->source);
    ps_buf_append(&c->source, doc.ptr, doc.len);
    c->obj = obj;
    c->snapshot = snapshot;
}

static void compiled_clear(compiled *c, void (*free_obj)(void *))
{
    free_obj(c->obj);
    for (size_t i = 0; i < c->retired_count; i++)
        free_obj(c->retired[i]);
    free(c->retired);
    ps_buf_clear(&c->source);
}

static void free_rules(void *r)
{
    ps_rules_free(r);
}

static void free_filters(void *f)
{
    ps_filters_free(f);
}

struct ps_space {
    ps_store *store;
    char *name;
    char *dir;            /* the store's directory */
    pthread_mutex_t lock; /* guards the fields below: servers share a space across threads */
    compiled rules;       /* ps_rules, from meta "settings" */
    compiled filters;     /* ps_filter_set, from meta PS_FILTERS_KEY */
    uint64_t filter_hits[PS_FILTERS_MAX]; /* messages dropped by each current filter since the
                                           * space opened (a changed set starts at 0) */
    ps_bucket buckets[2];                 /* rate limits, by ps_rate_kind */
    uint8_t secret[PS_SECRET_BYTES];      /* the cursor secret, once read: it never changes */
    _Atomic(bool) secret_read;            /* set (under the lock) once `secret` is written */
    /* The rules some read snapshot was found to have: a read transaction of that same
     * snapshot takes them without reading the settings row or taking the lock (one snapshot
     * number names one committed state). Published with a sequence count that is odd while
     * they change (a seqlock; the writers hold `lock`); the rules stay valid until the space
     * closes, like every compiled version. */
    _Atomic(uint64_t) fast_seq;
    _Atomic(uint64_t) fast_snapshot; /* 0: none yet */
    _Atomic(const ps_rules *) fast_rules;
};

_Static_assert(PS_SECRET_BYTES == 32, "space.h declares the secret's size");

ps_status ps_space_secret(ps_space *sp, ps_txn *t, uint8_t out[32])
{
    if (atomic_load_explicit(&sp->secret_read, memory_order_acquire)) {
        memcpy(out, sp->secret, PS_SECRET_BYTES); /* written once, before the flag */
        return PS_OK;
    }
    ps_status st = ps_auth_secret(t, out); /* outside the lock: it reads the map */
    if (st == PS_OK) {
        pthread_mutex_lock(&sp->lock);
        if (!atomic_load_explicit(&sp->secret_read, memory_order_relaxed)) {
            memcpy(sp->secret, out, PS_SECRET_BYTES);
            atomic_store_explicit(&sp->secret_read, true, memory_order_release);
        }
        pthread_mutex_unlock(&sp->lock);
    }
    return st;
}

bool ps_space_name_valid(const char *name)
{
    return ps_name_valid(name, PS_SPACE_NAME_MAX);
}

static void space_dir(const char *data_dir, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/spaces/%s", data_dir, name);
}

ps_status ps_space_env_check(void)
{
    uint64_t map_size;
    return ps_store_env_map_size(&map_size);
}

/* Makes space `name` at `dir` in the directory `spaces`, the creation lock held. */
static ps_status create_locked(const char *spaces, const char *dir, const char *name,
                               const char *settings, size_t settings_len)
{
    struct stat sb;
    if (stat(dir, &sb) == 0)
        return PS_ECONFLICT; /* looked at under the lock: another creation may have made it */
    /* made under a name no space can have, then renamed: a failure (a full disk) or a crash
     * half-way never leaves a space without its settings */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/.new-%s", spaces, name);
    ps_store_remove(tmp); /* what an earlier attempt left */
    ps_store *store;
    ps_store_opts opts = {.create = true};
    ps_status st = ps_store_open(tmp, &opts, &store);
    if (st != PS_OK) {
        ps_store_remove(tmp);
        return st;
    }
    ps_txn *t;
    if ((st = ps_txn_begin(store, true, &t)) == PS_OK) {
        const char *body = settings ? settings : "{}";
        size_t len = settings ? settings_len : 2;
        st = ps_store_meta_put(t, "settings", (ps_slice){(const uint8_t *)body, len});
        if (st == PS_OK) /* new spaces name profiles after their creating message */
            st = ps_store_meta_put(t, PS_SEGMENT_IDS_KEY, PS_SLICE_STR("message"));
        if (st == PS_OK)
            st = ps_txn_commit(t);
        else
            ps_txn_abort(t);
    }
    ps_store_close(store);
    if (st == PS_OK && rename(tmp, dir) != 0)
        st = errno == ENOTEMPTY || errno == EEXIST ? PS_ECONFLICT : PS_EIO;
    if (st != PS_OK)
        ps_store_remove(tmp);
    else
        (void)ps_dir_sync(spaces); /* the new name */
    return st;
}

ps_status ps_space_create(const char *data_dir, const char *name, const char *settings,
                          size_t settings_len, ps_diags *diags)
{
    if (!ps_space_name_valid(name))
        return PS_EINVAL;
    ps_rules *rules = NULL;
    if (settings) {
        ps_status st = ps_rules_parse(settings, settings_len, &rules, diags);
        if (st != PS_OK)
            return st;
        ps_rules_free(rules);
    }
    char dir[4096], spaces[4096];
    space_dir(data_dir, name, dir, sizeof dir);
    snprintf(spaces, sizeof spaces, "%s/spaces", data_dir);
    ps_status st = ps_mkdirs(spaces);
    if (st != PS_OK)
        return st;
    /* one creation at a time in a data directory: two of one name would share the temporary
     * name create_locked() builds in. The lock is on the spaces directory itself (no file to
     * own), and goes with the process: a crash leaves none. A filesystem without locks (some
     * NFS) goes on unlocked, as before there was a lock. */
    int lock_fd = ps_lock_exclusive(spaces);
    if (lock_fd < 0 && errno != ENOLCK && errno != EOPNOTSUPP) {
        int e = errno;
        ps_log(PS_LOG_ERROR, "msg=\"cannot lock space creation\" path=\"%s\" error=\"%s\"", spaces,
               strerror(e));
        return PS_EIO;
    }
    st = create_locked(spaces, dir, name, settings, settings_len);
    if (lock_fd >= 0)
        close(lock_fd);
    return st;
}

ps_status ps_space_open(const char *data_dir, const char *name, bool read_only, ps_space **out)
{
    if (!ps_space_name_valid(name))
        return PS_EINVAL;
    char dir[4096];
    space_dir(data_dir, name, dir, sizeof dir);
    ps_store *store = NULL;
    ps_store_opts opts = {.read_only = read_only};
    ps_status st = ps_store_open(dir, &opts, &store);
    if (st == PS_OK && !read_only)
        st = ps_auth_secret_ensure(store); /* spaces from before cursors lack one */
    if (st == PS_OK && !read_only) /* best effort: without it a check compares every token */
        (void)ps_auth_tokens_index_ensure(store);
    if (st != PS_OK) {
        ps_store_close(store);
        return st;
    }
    ps_space *sp = ps_xcalloc(1, sizeof *sp);
    sp->store = store;
    sp->name = ps_xstrdup(name);
    sp->dir = ps_xstrdup(dir);
    pthread_mutex_init(&sp->lock, NULL);
    *out = sp;
    return PS_OK;
}

void ps_space_close(ps_space *sp)
{
    if (sp == NULL)
        return;
    ps_store_close(sp->store);
    compiled_clear(&sp->rules, free_rules);
    compiled_clear(&sp->filters, free_filters);
    pthread_mutex_destroy(&sp->lock);
    free(sp->name);
    free(sp->dir);
    free(sp);
}

ps_store *ps_space_store(ps_space *sp)
{
    return sp->store;
}

ps_status ps_space_read(ps_space *sp, ps_status (*fn)(ps_txn *t, void *ud), void *ud)
{
    return ps_store_read_guarded(sp->store, fn, ud, NULL);
}

void ps_space_audit_ahead(ps_space *sp)
{
    ps_store_audit_ahead(sp->store);
}

long ps_space_broken_writer(ps_space *sp)
{
    return ps_store_broken_writer(sp->store);
}

const char *ps_space_dir(const ps_space *sp)
{
    return sp->dir;
}

const char *ps_space_name(const ps_space *sp)
{
    return sp->name;
}

/* The rules published for `snapshot`, or NULL (ps_space's fast_* fields). */
static const ps_rules *fast_rules_get(ps_space *sp, uint64_t snapshot)
{
    uint64_t seq = atomic_load_explicit(&sp->fast_seq, memory_order_acquire);
    uint64_t at = atomic_load_explicit(&sp->fast_snapshot, memory_order_relaxed);
    const ps_rules *r = atomic_load_explicit(&sp->fast_rules, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    bool same = !(seq & 1) && atomic_load_explicit(&sp->fast_seq, memory_order_relaxed) == seq;
    return same && at == snapshot && at ? r : NULL;
}

/* Publishes `r` for `snapshot` (0 and NULL: nothing). Under sp->lock. */
static void fast_rules_publish(ps_space *sp, uint64_t snapshot, const ps_rules *r)
{
    uint64_t seq = atomic_load_explicit(&sp->fast_seq, memory_order_relaxed);
    atomic_store_explicit(&sp->fast_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&sp->fast_snapshot, snapshot, memory_order_relaxed);
    atomic_store_explicit(&sp->fast_rules, r, memory_order_relaxed);
    atomic_store_explicit(&sp->fast_seq, seq + 2, memory_order_release);
}

ps_status ps_space_rules(ps_space *sp, ps_txn *t, const ps_rules **out)
{
    /* a write transaction's snapshot number is not a committed state's (an aborted one gives
     * its number to the next), so only reads use and publish the fast path */
    bool reading = !ps_txn_writable(t);
    uint64_t snapshot = ps_txn_snapshot(t);
    if (reading && (*out = fast_rules_get(sp, snapshot)) != NULL)
        return PS_OK;
    ps_slice s;
    ps_status st = ps_store_meta_get(t, "settings", &s);
    if (st == PS_ENOTFOUND)
        s = (ps_slice){(const uint8_t *)"{}", 2};
    else if (st != PS_OK)
        return st;
    ps_touch(s.ptr, s.len); /* a fault in the map comes before the lock, not under it */
    pthread_mutex_lock(&sp->lock);
    ps_rules *r = compiled_find(&sp->rules, s);
    if (r == NULL) {
        ps_diags d;
        if (ps_rules_parse((const char *)s.ptr, s.len, &r, &d) != PS_OK) {
            pthread_mutex_unlock(&sp->lock);
            return PS_ECORRUPT; /* settings are validated before they are stored */
        }
        compiled_set(&sp->rules, s, snapshot, r);
    }
    if (reading && snapshot > atomic_load_explicit(&sp->fast_snapshot, memory_order_relaxed))
        fast_rules_publish(sp, snapshot, r); /* an older reader's stays out: the newest wins */
    *out = r;
    pthread_mutex_unlock(&sp->lock);
    return PS_OK;
}

ps_status ps_space_filters(ps_space *sp, ps_txn *t, const ps_filter_set **out)
{
    ps_slice s;
    ps_status st = ps_store_meta_get(t, PS_FILTERS_KEY, &s);
    if (st == PS_ENOTFOUND)
        s = (ps_slice){(const uint8_t *)"", 0};
    else if (st != PS_OK)
        return st;
    uint64_t snapshot = ps_txn_snapshot(t);
    ps_touch(s.ptr, s.len); /* a fault in the map comes before the lock, not under it */
    pthread_mutex_lock(&sp->lock);
    ps_filter_set *f = compiled_find(&sp->filters, s);
    /* a reader that began before the current set was read gets it too, so that two versions
     * never take turns */
    if (f == NULL && sp->filters.obj && snapshot < sp->filters.snapshot)
        f = sp->filters.obj;
    if (f == NULL) {
        char err[300];
        if (ps_filters_parse((const char *)s.ptr, s.len, &f, err, sizeof err) != PS_OK) {
            pthread_mutex_unlock(&sp->lock);
            return PS_ECORRUPT; /* filters are checked before they are stored */
        }
        compiled_set(&sp->filters, s, snapshot, f);
        memset(sp->filter_hits, 0, sizeof sp->filter_hits);
    }
    *out = f;
    pthread_mutex_unlock(&sp->lock);
    return PS_OK;
}

void ps_space_filter_hits_add(ps_space *sp, const ps_filter_set *set, const uint32_t *hits)
{
    pthread_mutex_lock(&sp->lock);
    if (set == sp->filters.obj) /* counts of a replaced set are dropped */
        for (size_t i = 0; i < ps_filters_count(set); i++)
            sp->filter_hits[i] += hits[i];
    pthread_mutex_unlock(&sp->lock);
}

size_t ps_space_filter_hits(ps_space *sp, char names[][PS_FILTER_NAME_MAX + 1], uint64_t *hits)
{
    pthread_mutex_lock(&sp->lock);
    const ps_filter_set *set = sp->filters.obj;
    size_t n = ps_filters_count(set);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], PS_FILTER_NAME_MAX + 1, "%s", ps_filters_get(set, i).name);
        hits[i] = sp->filter_hits[i];
    }
    pthread_mutex_unlock(&sp->lock);
    return n;
}

bool ps_space_rate_take(ps_space *sp, const ps_rules *r, ps_rate_kind kind, int64_t now_ms,
                        int64_t *retry_ms)
{
    const ps_rules_options *o = ps_rules_options_get(r);
    uint32_t rate = kind == PS_RATE_INGEST ? o->ingest_rate_per_second : o->api_rate_per_second;
    uint32_t burst = kind == PS_RATE_INGEST ? o->ingest_rate_burst : o->api_rate_burst;
    if (rate == 0)
        return true;
    pthread_mutex_lock(&sp->lock);
    bool ok = ps_bucket_take(&sp->buckets[kind], rate, burst, now_ms, retry_ms);
    pthread_mutex_unlock(&sp->lock);
    return ok;
}

ps_status ps_space_settings_put(ps_txn *t, const char *json, size_t len, ps_diags *diags)
{
    ps_rules *r;
    ps_status st = ps_rules_parse(json, len, &r, diags);
    if (st != PS_OK)
        return st;
    ps_rules_free(r);
    return ps_store_meta_put(t, "settings", (ps_slice){(const uint8_t *)json, len});
}

ps_status ps_space_settings_set(ps_space *sp, const char *json, size_t len, ps_diags *diags)
{
    ps_txn *t;
    ps_status st = ps_txn_begin(sp->store, true, &t);
    if (st != PS_OK)
        return st;
    st = ps_space_settings_put(t, json, len, diags);
    if (st != PS_OK) {
        ps_txn_abort(t);
        return st;
    }
    return ps_txn_commit(t);
}

typedef struct seen_list {
    ps_seen_type *items;
    size_t count;
} seen_list;

static bool collect_seen(void *ud, const char *type, uint8_t collection)
{
    seen_list *l = ud;
    l->items = ps_xrealloc(l->items, (l->count + 1) * sizeof *l->items);
    l->items[l->count].type = ps_xstrdup(type);
    l->items[l->count++].collection = collection == PS_ACCOUNTS ? PS_ACCOUNTS : PS_USERS;
    return true;
}

typedef struct settings_read {
    ps_space *sp;
    ps_buf *out;
    seen_list seen; /* outlives the step: freed by the caller however the step ends */
} settings_read;

static ps_status settings_read_step(ps_txn *t, void *ud)
{
    settings_read *c = ud;
    const ps_rules *r;
    ps_status st = ps_space_rules(c->sp, t, &r);
    if (st == PS_OK)
        st = ps_store_type_scan(t, collect_seen, &c->seen);
    if (st == PS_OK)
        ps_rules_to_json_seen(r, c->seen.items, c->seen.count, c->out);
    return st;
}

ps_status ps_space_settings_get(ps_space *sp, ps_buf *out)
{
    /* guarded: a damaged page under the settings or the types fails the read, not the process */
    settings_read c = {sp, out, {NULL, 0}};
    ps_status st = ps_store_read_guarded(sp->store, settings_read_step, &c, NULL);
    for (size_t i = 0; i < c.seen.count; i++)
        free((char *)c.seen.items[i].type);
    free(c.seen.items);
    return st;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

ps_status ps_space_list(const char *data_dir, char ***names, size_t *count)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/spaces", data_dir);
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? PS_OK : PS_EIO;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!ps_space_name_valid(e->d_name))
            continue;
        *names = ps_xrealloc(*names, (*count + 1) * sizeof **names);
        (*names)[(*count)++] = ps_xstrdup(e->d_name);
    }
    closedir(d);
    if (*count > 1)
        qsort(*names, *count, sizeof **names, cmp_str);
    return PS_OK;
}

void ps_space_list_free(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

ps_status ps_space_compact(ps_space *sp, uint64_t *bytes_before, uint64_t *bytes_after)
{
    ps_journal *j;
    ps_status st = ps_journal_open(sp->dir, &j); /* held by a running server's writer */
    if (st != PS_OK)
        return st;
    if (ps_store_other_processes(sp->store) > 0)
        st = PS_EBUSY;
    else
        st = ps_store_compact(&sp->store, sp->dir, bytes_before, bytes_after);
    pthread_mutex_lock(&sp->lock);
    fast_rules_publish(sp, 0, NULL); /* the new file numbers its snapshots anew */
    pthread_mutex_unlock(&sp->lock);
    ps_journal_close(j);
    return st;
}

_Static_assert(PS_VIOL__COUNT <= PS_SPACE_VIOLATION_REASONS, "a figure per violation reason");

static ps_status figures_in(ps_txn *t, void *ud)
{
    ps_space_figures *out = ud;
    ps_store_counts c;
    ps_status st = ps_store_counts_get(t, &c);
    if (st == PS_OK) {
        out->merges = ps_txn_peek(t, PS_CTR_MERGE) - 1;
        out->profiles = c.profiles - out->merges;
        out->identifiers = c.idents;
        out->events = c.events;
        ps_store_usage(ps_txn_store(t), &out->map_bytes, &out->used_bytes);
        for (int v = 1; v < PS_VIOL__COUNT; v++)
            out->violations[v] = ps_txn_peek(t, (ps_counter)(PS_CTR_VIOLATION + v)) - 1;
    }
    return st;
}

ps_status ps_space_figures_get(ps_space *sp, ps_space_figures *out)
{
    memset(out, 0, sizeof *out);
    ps_status st = ps_store_read_guarded(sp->store, figures_in, out, NULL);
    out->damaged = ps_store_damaged(sp->store);
    return st;
}

ps_status ps_space_snapshot(ps_space *sp, const char *data_dir, uint64_t *records,
                            uint64_t *log_seq)
{
    char dir[4096];
    if (strlen(data_dir) > 3000)
        return PS_EINVAL;
    space_dir(data_dir, sp->name, dir, sizeof dir);
    ps_status st = ps_store_snapshot(sp->store, dir, records);
    if (st != PS_OK)
        return st;
    ps_store *copy;
    ps_store_opts o = {.read_only = true};
    if ((st = ps_store_open(dir, &o, &copy)) != PS_OK)
        return st;
    ps_txn *t;
    if ((st = ps_txn_begin(copy, false, &t)) == PS_OK) {
        *log_seq = ps_txn_peek(t, PS_CTR_MESSAGE) - 1;
        ps_txn_abort(t);
    }
    ps_store_close(copy);
    return st;
}
