/* SPDX-License-Identifier: MIT */
/* registry: the server's open spaces and their writers. A space created by `profilectl space
 * create` while the server runs is opened by the first request that names it; spaces stay
 * open until shutdown (LMDB allows one environment handle per process, so every thread shares
 * it). A space's writer thread starts with its first Tracking API request. */
#include "http_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ps/clock.h"
#include "ps/import.h"
#include "ps/log.h"

typedef struct entry {
    ps_space *space;
    ps_writer *writer;
} entry;

struct registry {
    char *data_dir;
    ps_sources *sources;
    ps_writer_opts wopts;
    pthread_rwlock_t lock;
    entry *entries;
    size_t count;
    bool stopping; /* no new writers */
    int64_t last_failure_log_ms;
    uint64_t open_failures; /* since the last log line */
};

registry *http_registry_new(const char *data_dir, ps_sources *sources, const ps_writer_opts *wopts)
{
    registry *r = ps_xcalloc(1, sizeof *r);
    r->data_dir = ps_xstrdup(data_dir);
    r->sources = sources;
    r->wopts = *wopts;
    pthread_rwlock_init(&r->lock, NULL);
    return r;
}

void http_registry_free(registry *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->count; i++) {
        ps_writer_free(r->entries[i].writer);
        ps_space_close(r->entries[i].space);
    }
    free(r->entries);
    pthread_rwlock_destroy(&r->lock);
    free(r->data_dir);
    free(r);
}

ps_sources *http_registry_sources(registry *r)
{
    return r->sources;
}

static entry *find(registry *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(ps_space_name(r->entries[i].space), name) == 0)
            return &r->entries[i];
    return NULL;
}

ps_status http_registry_get(registry *r, const char *name, ps_space **out)
{
    pthread_rwlock_rdlock(&r->lock);
    entry *e = find(r, name);
    ps_space *sp = e ? e->space : NULL;
    pthread_rwlock_unlock(&r->lock);
    if (sp) {
        *out = sp;
        return PS_OK;
    }
    ps_status st = PS_OK;
    bool opened = false;
    pthread_rwlock_wrlock(&r->lock);
    if ((e = find(r, name)) != NULL) {
        sp = e->space;
    } else {
        st = ps_space_open(r->data_dir, name, false, &sp);
        if (st == PS_OK) {
            r->entries = ps_xrealloc(r->entries, (r->count + 1) * sizeof *r->entries);
            r->entries[r->count++] = (entry){sp, NULL};
            opened = true;
            ps_log(PS_LOG_INFO, "msg=\"space opened\" space=%s", name);
            ps_space_audit_ahead(sp); /* the first write then does not wait for it */
        } else if (st != PS_ENOTFOUND) {
            /* one line a second at most: a storm of requests must not become a storm of logs */
            int64_t now = ps_clock_now_ms();
            r->open_failures++;
            if (now - r->last_failure_log_ms >= 1000) {
                if (st == PS_EFORMAT)
                    ps_log(PS_LOG_ERROR,
                           "msg=\"space is in storage format 1: run profilectl migrate %s\" "
                           "space=%s failures=%llu",
                           name, name, (unsigned long long)r->open_failures);
                else
                    ps_log(PS_LOG_ERROR,
                           "msg=\"cannot open space\" space=%s error=%s failures=%llu", name,
                           ps_status_str(st), (unsigned long long)r->open_failures);
                r->last_failure_log_ms = now;
                r->open_failures = 0;
            }
        }
    }
    pthread_rwlock_unlock(&r->lock);
    if (st == PS_OK)
        *out = sp;
    /* replicated, every space applies its stream from the start; otherwise imports a stopped
     * server accepted need the writer that runs them, and so does a journal a server that
     * died left behind: its writer applies it as it starts, so that the request which opened
     * the space, a read as much as a write, sees everything acknowledged before the crash */
    if (st == PS_OK && opened &&
        (r->wopts.repl || ps_import_any_pending(sp) || ps_writer_journal_present(sp)))
        (void)http_registry_writer(r, sp);
    return st;
}

static entry *entry_of(registry *r, const ps_space *sp)
{
    for (size_t i = 0; i < r->count; i++)
        if (r->entries[i].space == sp)
            return &r->entries[i];
    return NULL;
}

ps_writer *http_registry_writer_running(registry *r, ps_space *sp)
{
    pthread_rwlock_rdlock(&r->lock);
    entry *e = entry_of(r, sp);
    ps_writer *w = e ? e->writer : NULL;
    pthread_rwlock_unlock(&r->lock);
    return w;
}

ps_writer *http_registry_writer(registry *r, ps_space *sp)
{
    pthread_rwlock_rdlock(&r->lock);
    bool stopping = r->stopping;
    entry *e = stopping ? NULL : entry_of(r, sp);
    ps_writer *w = e ? e->writer : NULL;
    pthread_rwlock_unlock(&r->lock);
    if (w || stopping)
        return w;
    pthread_rwlock_wrlock(&r->lock);
    if (!r->stopping && (e = entry_of(r, sp)) != NULL) {
        if (e->writer == NULL) {
            ps_status st = ps_writer_start(sp, &r->wopts, &e->writer);
            if (st != PS_OK)
                ps_log(PS_LOG_ERROR, "msg=\"cannot start writer\" space=%s error=%s",
                       ps_space_name(sp), ps_status_str(st));
        }
        w = e->writer;
    }
    pthread_rwlock_unlock(&r->lock);
    return w;
}

void http_registry_stop_writers(registry *r)
{
    pthread_rwlock_wrlock(&r->lock);
    r->stopping = true;
    pthread_rwlock_unlock(&r->lock);
    /* entries only grow under the lock and writers are only set while not stopping, so
     * this walk sees every writer there will ever be */
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->count; i++)
        ps_writer_stop(r->entries[i].writer);
    pthread_rwlock_unlock(&r->lock);
}

void http_registry_each(registry *r, registry_fn fn, void *ud)
{
    char **names = NULL;
    size_t count = 0;
    if (ps_space_list(r->data_dir, &names, &count) == PS_OK)
        for (size_t i = 0; i < count; i++)
            (void)http_registry_get(r, names[i], &(ps_space *){NULL});
    ps_space_list_free(names, count);
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->count; i++)
        fn(ud, r->entries[i].space);
    pthread_rwlock_unlock(&r->lock);
}
