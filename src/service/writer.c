/* SPDX-License-Identifier: MIT */
/* writer: a FIFO of prepared payloads drained by one thread into group commits. While a
 * commit is being made durable, new submissions queue up; the next group takes them all (up
 * to the bounds), so one fsync covers many requests under load and a lone request is never
 * kept waiting for company. */
#include "ps/writer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "ps/log.h"

#define DEFAULT_BATCH_EVENTS 5000
#define DEFAULT_BATCH_MS 20
#define DEFAULT_QUEUE_BYTES (64u << 20)

typedef struct item {
    struct item *next;
    ps_prepared *p;
    size_t bytes;
    ps_writer_done done;
    void *ud;
} item;

struct ps_writer {
    ps_space *space;
    ps_writer_opts o;
    ps_ingest *in; /* used by the writer thread only */
    pthread_t thread;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;
    item *head, *tail;
    bool stopping, joined;
    size_t queued_bytes;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Takes the oldest queued item, waiting for one when `wait`; NULL when there is none (or,
 * waiting, when the writer stops with an empty queue). */
static item *take(ps_writer *w, bool wait)
{
    pthread_mutex_lock(&w->lock);
    while (wait && w->head == NULL && !w->stopping)
        pthread_cond_wait(&w->wake, &w->lock);
    item *it = w->head;
    if (it) {
        w->head = it->next;
        if (w->head == NULL)
            w->tail = NULL;
        w->queued_bytes -= it->bytes;
    }
    pthread_mutex_unlock(&w->lock);
    return it;
}

/* Resolves one group: items in order into one write transaction, then one commit. */
static void one_group(ps_writer *w, item *first)
{
    item *group = first, *last = first;
    size_t events = ps_prepared_accepted(first->p), payloads = 1;
    int64_t started = mono_ms();
    ps_status st = ps_ingest_prepared(w->in, first->p);
    while (st == PS_OK && events < w->o.batch_events && mono_ms() - started < w->o.batch_ms) {
        item *it = take(w, false);
        if (it == NULL)
            break; /* nothing waits: make the group durable now */
        last->next = it;
        last = it;
        it->next = NULL;
        events += ps_prepared_accepted(it->p);
        payloads++;
        st = ps_ingest_prepared(w->in, it->p);
    }
    if (st == PS_OK)
        st = ps_ingest_commit(w->in);
    if (st != PS_OK) /* ingest aborted the transaction: nothing of the group is stored */
        ps_log(PS_LOG_ERROR, "msg=\"group commit failed\" space=%s payloads=%zu error=\"%s\"",
               ps_space_name(w->space), payloads, ps_status_str(st));
    while (group) {
        item *next = group->next;
        ps_prepared_free(group->p);
        group->done(group->ud, st);
        free(group);
        group = next;
    }
}

static void *run(void *arg)
{
    ps_writer *w = arg;
    item *it;
    while ((it = take(w, true)) != NULL) {
        it->next = NULL;
        one_group(w, it);
    }
    return NULL;
}

ps_status ps_writer_start(ps_space *sp, const ps_writer_opts *opts, ps_writer **out)
{
    ps_writer *w = ps_xcalloc(1, sizeof *w);
    w->space = sp;
    w->o = *opts;
    if (w->o.batch_events == 0)
        w->o.batch_events = DEFAULT_BATCH_EVENTS;
    if (w->o.batch_ms <= 0)
        w->o.batch_ms = DEFAULT_BATCH_MS;
    if (w->o.queue_bytes == 0)
        w->o.queue_bytes = DEFAULT_QUEUE_BYTES;
    ps_ingest_opts io = {.keep_received_at = false};
    ps_status st = ps_ingest_begin(sp, &io, &w->in);
    if (st != PS_OK) {
        free(w);
        return st;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        ps_ingest_end(w->in);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return PS_EIO;
    }
    *out = w;
    return PS_OK;
}

ps_status ps_writer_submit(ps_writer *w, ps_prepared *p, ps_writer_done done, void *ud)
{
    size_t bytes = ps_prepared_bytes(p);
    pthread_mutex_lock(&w->lock);
    ps_status st = PS_OK;
    if (w->stopping)
        st = PS_ECLOSED;
    else if (w->queued_bytes > 0 && w->queued_bytes + bytes > w->o.queue_bytes)
        st = PS_EBUSY; /* one payload alone always fits, so none is refused forever */
    if (st != PS_OK) {
        pthread_mutex_unlock(&w->lock);
        ps_prepared_free(p);
        return st;
    }
    item *it = ps_xmalloc(sizeof *it);
    *it = (item){NULL, p, bytes, done, ud};
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    w->queued_bytes += bytes;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    return PS_OK;
}

void ps_writer_stop(ps_writer *w)
{
    if (w == NULL || w->joined)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL); /* the thread drains the queue before it returns */
    w->joined = true;
}

void ps_writer_free(ps_writer *w)
{
    if (w == NULL)
        return;
    ps_writer_stop(w);
    ps_ingest_end(w->in);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
