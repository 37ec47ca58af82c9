/* SPDX-License-Identifier: MIT */
/* writer: a space's two writer threads (docs/architecture.md, Tracking API write path).
 *
 * The journal thread takes every queued payload (up to the bounds), appends each accepted
 * message's log value to the space's journal, syncs once, and acknowledges the group: a
 * sequential write of about 200 bytes a message, so an acknowledgement waits for little.
 *
 * The apply thread takes acknowledged payloads in the same order and resolves them into the
 * store through the ingest path, in larger transactions, each of which also records how far
 * the journal is applied. A transaction commits batch_ms (DEFAULT_APPLY_MS) after its first
 * payload, or at APPLY_MAX_EVENTS, and at once when a reader waits for it (ps_writer_await) or
 * the writer stops. It does not commit merely because the queue ran empty: each commit
 * rewrites every page it dirtied, and the tables keyed at random share few pages between
 * small commits (docs/benchmarks.md measured 3-4x the bytes written at 20 ms). A commit that fails
 * is tried again: what was acknowledged stays in the journal until the store has it.
 *
 * At start the store first takes what the journal holds past its mark (a crash left it
 * there); at a clean stop everything is applied and the journal's files are removed. */
#define _DEFAULT_SOURCE /* syscall */
#include "ps/writer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ps/clock.h"
#include "ps/history.h"
#include "ps/import.h"
#include "ps/journal.h"
#include "ps/log.h"
#include "ps/regulation.h"

#define DEFAULT_BATCH_EVENTS 5000
#define DEFAULT_QUEUE_BYTES (64u << 20)
#define APPLY_MAX_EVENTS 50000
#define DEFAULT_APPLY_MS 200
#define PACE_MAX_MS 20 /* the longest pause of a journal group short of the bound */
#define APPLY_NICE 10
#define STREAM_EIO_PAUSE_MS 200 /* replicated: before reading again after an I/O error */
#define APPLY_RETRY_MS 1000     /* after a failed commit */
#define APPLY_RETRIES_SAID 60   /* a failure that lasts is logged once a minute */
#define RECOVER_EVENTS 50000    /* journal records per commit when recovering */
#define DRAIN_WAIT_MS 10000     /* another process's server: how long to wait for it to apply */
#define STALL_MS 3000           /* replicated: no record this long while some wait: read again */
#define QUEUE_WAIT_MS 10000     /* a payload the journal has not taken by then is refused */

typedef struct item {
    struct item *next;
    ps_prepared *p; /* NULL: a marker: run the space's waiting regulations here */
    size_t bytes;
    uint64_t end;     /* the journal position after its last message */
    uint64_t ticket;  /* a marker's number (markers asked for up to it) */
    uint64_t reg_seq; /* a marker: run the regulations up to this sequence */
    ps_writer_done done;
    void *ud;
    int64_t queued_ms; /* when it was submitted (monotonic) */
} item;

typedef struct queue {
    item *head, *tail;
    size_t bytes, count;
} queue;

struct ps_writer {
    ps_space *space;
    ps_writer_opts o;
    ps_journal *journal;
    ps_ingest *in; /* the apply thread's */
    pthread_t jthread, athread;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t jwake, awake, room, progress;
    queue submitted; /* waiting for the journal */
    queue applying;  /* journaled and acknowledged, waiting for the store */
    size_t backlog;  /* bytes of payloads journaled and not yet resolved */
    bool stopping, journal_done, joined;
    atomic_bool cancel_imports;   /* stopping: an import running stops after its batch */
    uint64_t acked, applied;      /* journal positions */
    uint64_t reg_asked, reg_done; /* regulation markers submitted, and run */
    unsigned waiting_readers;
    bool apply_failed;     /* stopped with payloads the store could not take (still journaled) */
    ps_writer_stats stats; /* the histograms and sums (the queue figures are read live) */
    /* replicated (o.repl): the journal thread publishes, the apply thread reads the stream */
    ps_repl_pub *pub;           /* the journal thread's, opened on first use */
    pthread_mutex_t admin_lock; /* guards admin_pub */
    ps_repl_pub *admin_pub;     /* settings and regulations (ps_writer_publish) */
    uint64_t stream_last;       /* the stream's last sequence as last seen */
    bool stream_reading;        /* the apply thread holds a subscription */
};

const uint32_t ps_writer_group_bounds[PS_WRITER_GROUP_BUCKETS - 1] = {1,    10,   100,   500,
                                                                      1000, 5000, 10000, 50000};

const double ps_writer_time_bounds[PS_WRITER_TIME_BUCKETS - 1] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

static void count_time(uint64_t *buckets, uint64_t *sum_us, int64_t us)
{
    size_t b = 0;
    while (b < PS_WRITER_TIME_BUCKETS - 1 && (double)us > ps_writer_time_bounds[b] * 1e6)
        b++;
    buckets[b]++;
    *sum_us += (uint64_t)(us > 0 ? us : 0);
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void count_group(uint64_t *buckets, uint64_t *sum, size_t messages)
{
    size_t b = 0;
    while (b < PS_WRITER_GROUP_BUCKETS - 1 && messages > ps_writer_group_bounds[b])
        b++;
    buckets[b]++;
    *sum += messages;
}

void ps_writer_stats_get(ps_writer *w, ps_writer_stats *out)
{
    pthread_mutex_lock(&w->lock);
    *out = w->stats;
    out->queued_payloads = w->submitted.count;
    out->queued_bytes = w->submitted.bytes;
    out->backlog_bytes = w->backlog;
    out->replicated = w->o.repl != NULL;
    if (out->replicated) {
        out->stream_applied = w->applied;
        out->stream_last = w->stream_last > w->applied ? w->stream_last : w->applied;
        out->stream_connected = w->stream_reading && ps_repl_connected(w->o.repl);
    }
    pthread_mutex_unlock(&w->lock);
}

static int64_t mono_ms(void)
{
    return mono_us() / 1000;
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

static void push(queue *q, item *it)
{
    it->next = NULL;
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    q->bytes += it->bytes;
    q->count++;
}

static item *pop(queue *q)
{
    item *it = q->head;
    if (it) {
        q->head = it->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->bytes -= it->bytes;
        q->count--;
        it->next = NULL;
    }
    return it;
}

/* ---- the journal thread ---- */

/* Appends one group and syncs it; every callback runs with the outcome. */
static void journal_group(ps_writer *w, item *group)
{
    ps_status st = PS_OK;
    uint64_t end = w->acked;
    int64_t began = mono_us();
    for (item *it = group; it && st == PS_OK; it = it->next) {
        size_t n = it->p ? ps_prepared_logged(it->p) : 0;
        for (size_t i = 0; i < n && st == PS_OK; i++)
            st = ps_journal_append(w->journal, ps_prepared_log_value(it->p, i), &end);
        it->end = end;
    }
    if (st == PS_OK)
        st = ps_journal_sync(w->journal);
    else
        ps_journal_discard(w->journal);
    if (st != PS_OK)
        ps_log(PS_LOG_ERROR, "msg=\"journal append failed\" space=%s error=\"%s\"",
               ps_space_name(w->space), ps_status_str(st));
    int64_t took = mono_us() - began;
    uint64_t before = w->acked; /* only this thread changes it */
    pthread_mutex_lock(&w->lock);
    if (st == PS_OK)
        w->acked = end;
    count_time(w->stats.sync_times, &w->stats.sync_us, took);
    pthread_mutex_unlock(&w->lock);
    if (st != PS_OK) /* a failed group made nothing durable: its markers stand where it began */
        for (item *it = group; it; it = it->next)
            it->end = before;
    while (group) {
        item *next = group->next;
        if (group->done)
            group->done(group->ud, st, 0);
        if (st == PS_OK || group->p == NULL) { /* a marker goes on whatever happened */
            pthread_mutex_lock(&w->lock);
            push(&w->applying, group);
            w->backlog += group->bytes;
            pthread_cond_signal(&w->awake);
            pthread_mutex_unlock(&w->lock);
        } else {
            ps_prepared_free(group->p);
            free(group);
        }
        group = next;
    }
}

/* Replicated: sends one group to the stream and waits for its acknowledgements; every
 * callback runs with the outcome. The stream, not this node, orders the messages: the apply
 * thread takes them back from it. */
static void publish_group(ps_writer *w, item *group)
{
    ps_status st = PS_OK;
    pthread_mutex_lock(&w->lock);
    bool stopping = w->stopping;
    pthread_mutex_unlock(&w->lock);
    if (stopping && !ps_repl_connected(w->o.repl))
        st = PS_ECLOSED;     /* no waiting out a timeout per group on the way down */
    else if (w->pub == NULL) /* a store that has applied records never makes a new stream */
        st = ps_repl_pub_open(w->o.repl, ps_space_name(w->space), w->applied == 0, &w->pub);
    size_t sent = 0;
    ps_buf rec;
    ps_buf_init(&rec);
    for (item *it = group; it && st == PS_OK; it = it->next) {
        size_t n = it->p ? ps_prepared_logged(it->p) : 0;
        for (size_t i = 0; i < n && st == PS_OK; sent++) { /* a record per payload, mostly */
            char id[PS_STREAM_ID_BUF];
            ps_buf_reset(&rec);
            ps_prepared_stream_record(it->p, &i, &rec, id);
            st = ps_repl_pub_add(w->pub, PS_REPL_MESSAGES, id, strlen(id),
                                 (ps_slice){rec.ptr, rec.len});
        }
    }
    ps_buf_clear(&rec);
    uint64_t seq = 0;
    if (sent > 0) { /* collects what was sent even after a failed send */
        ps_status wst = ps_repl_pub_wait(w->pub, &seq);
        if (st == PS_OK)
            st = wst;
    }
    if (st != PS_OK)
        ps_log(PS_LOG_ERROR, "msg=\"stream publish failed\" space=%s error=\"%s\"",
               ps_space_name(w->space), ps_status_str(st));
    pthread_mutex_lock(&w->lock);
    if (st == PS_OK && seq > w->acked)
        w->acked = seq;
    if (st == PS_OK && seq > w->stream_last)
        w->stream_last = seq;
    pthread_mutex_unlock(&w->lock);
    while (group) {
        item *next = group->next;
        if (group->done)
            group->done(group->ud, st, st == PS_OK ? seq : 0);
        ps_prepared_free(group->p);
        free(group);
        group = next;
    }
}

/* Under the lock: unlinks the payloads at the head of the queue that have waited
 * QUEUE_WAIT_MS for the journal (the apply thread's backlog is full and does not shrink, as
 * when the disk is full). They were never journaled, so refusing them loses nothing; their
 * clients hear it instead of waiting without end. A marker stops the walk: order holds. */
static item *take_stale(ps_writer *w)
{
    item *list = NULL, **tail = &list;
    int64_t now = mono_ms();
    while (w->submitted.head && w->submitted.head->p &&
           now - w->submitted.head->queued_ms >= QUEUE_WAIT_MS) {
        *tail = pop(&w->submitted);
        tail = &(*tail)->next;
    }
    return list;
}

static void free_items(item *list)
{
    while (list) {
        item *next = list->next;
        ps_prepared_free(list->p);
        free(list);
        list = next;
    }
}

/* Tells each payload of `list` it was not stored (PS_EBUSY), then frees them. */
static void refuse(item *list)
{
    for (item *it = list; it; it = it->next)
        if (it->done)
            it->done(it->ud, PS_EBUSY, 0);
    free_items(list);
}

static void *journal_run(void *arg)
{
    ps_writer *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->submitted.head == NULL && !w->stopping)
            pthread_cond_wait(&w->jwake, &w->lock);
        /* the apply thread's backlog is bounded too. Past three quarters of the bound each
         * group waits a little, more as it grows, so that when clients send faster than the
         * store takes, acknowledgements slow down evenly instead of stopping whenever the store
         * commits; at the bound they wait for room (requests queue meanwhile, and are refused
         * once their queue is full). Below that the backlog absorbs bursts at full speed: the
         * requests held up by one slow sync, or those that arrive during a long commit. */
        size_t soft = w->o.queue_bytes / 4 * 3;
        if (w->backlog > soft && !w->stopping) {
            int64_t pause =
                (int64_t)((w->backlog - soft) * PACE_MAX_MS / (w->o.queue_bytes - soft + 1));
            struct timespec ts;
            deadline_in(&ts, pause < PACE_MAX_MS ? pause : PACE_MAX_MS);
            while (!w->stopping && pthread_cond_timedwait(&w->room, &w->lock, &ts) == 0)
                ;
        }
        while (w->backlog > w->o.queue_bytes && !w->stopping) {
            struct timespec ts;
            deadline_in(&ts, 1000);
            pthread_cond_timedwait(&w->room, &w->lock, &ts);
            item *stale = take_stale(w);
            if (stale) {
                pthread_mutex_unlock(&w->lock);
                refuse(stale);
                pthread_mutex_lock(&w->lock);
            }
        }
        item *group = NULL, *last = NULL;
        size_t events = 0;
        item *it;
        while (events < w->o.batch_events && (it = pop(&w->submitted)) != NULL) {
            events += it->p ? ps_prepared_logged(it->p) : 0;
            if (last)
                last->next = it;
            else
                group = it;
            last = it;
        }
        bool done = group == NULL && w->stopping;
        if (group)
            count_group(w->stats.journal_groups, &w->stats.journal_messages, events);
        pthread_mutex_unlock(&w->lock);
        if (done)
            break;
        if (group && w->o.repl)
            publish_group(w, group);
        else if (group)
            journal_group(w, group);
    }
    pthread_mutex_lock(&w->lock);
    w->journal_done = true;
    pthread_cond_signal(&w->awake);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* ---- the apply thread ---- */

/* Resolves `list` into one transaction with the journal mark; PS_OK once committed. */
static ps_status apply_list(ps_writer *w, item *list)
{
    ps_status st = PS_OK;
    uint64_t end = 0;
    for (item *it = list; it && st == PS_OK; it = it->next) {
        if (it->p)
            st = ps_ingest_prepared(w->in, it->p);
        end = it->end;
    }
    if (st == PS_OK)
        st = ps_ingest_journal_mark(w->in, end);
    if (st == PS_OK)
        st = ps_ingest_commit(w->in);
    return st;
}

/* Takes payloads one at a time and resolves each at once, so that room for the journal thread
 * comes back steadily, until the transaction is batch_ms old, a bound is reached, a reader
 * waits or the writer stops.
 * Returns them in order, with the outcome of resolving them. */
static item *apply_some(ps_writer *w, ps_status *st)
{
    item *list = NULL, *last = NULL;
    size_t events = 0;
    int64_t started = mono_ms();
    *st = PS_OK;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        item *it = pop(&w->applying);
        if (it == NULL) {
            int64_t age = mono_ms() - started;
            if (w->waiting_readers || w->journal_done || age >= w->o.batch_ms)
                break;
            struct timespec ts;
            deadline_in(&ts, w->o.batch_ms - age);
            pthread_cond_timedwait(&w->awake, &w->lock, &ts);
            continue;
        }
        pthread_mutex_unlock(&w->lock);
        if (last)
            last->next = it;
        else
            list = it;
        last = it;
        if (it->p == NULL) { /* regulations run after what came before them is committed */
            pthread_mutex_lock(&w->lock);
            break;
        }
        events += ps_prepared_logged(it->p);
        *st = ps_ingest_prepared(w->in, it->p);
        pthread_mutex_lock(&w->lock);
        w->backlog -= it->bytes;
        pthread_cond_signal(&w->room);
        if (*st != PS_OK || events >= APPLY_MAX_EVENTS || mono_ms() - started >= w->o.batch_ms)
            break;
    }
    pthread_mutex_unlock(&w->lock);
    return list;
}

static void *apply_run(void *arg)
{
    ps_writer *w = arg;
    /* acknowledgements first: the store catches up on the CPU time they leave (Linux gives
     * each thread its own nice value) */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), APPLY_NICE) != 0)
        ps_log(PS_LOG_DEBUG, "msg=\"cannot lower the apply thread's priority\"");
    uint64_t released = 0;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->applying.head == NULL && !w->journal_done)
            pthread_cond_wait(&w->awake, &w->lock);
        bool drained = w->applying.head == NULL; /* and stopped */
        item *rest = NULL;
        if (!drained && w->apply_failed) { /* gave up while stopping: nothing past the failure
                                            * is committed; the journal keeps it all */
            rest = w->applying.head;
            w->applying = (queue){NULL, NULL, 0, 0};
        }
        pthread_mutex_unlock(&w->lock);
        if (drained)
            break;
        if (rest) {
            free_items(rest);
            continue;
        }
        ps_status st;
        item *list = apply_some(w, &st), *last = list;
        while (last->next)
            last = last->next;
        if (last->end < w->applied) /* the mark never goes back */
            last->end = w->applied;
        int64_t commit_began = mono_us(), commit_took = -1;
        if (st == PS_OK && (st = ps_ingest_journal_mark(w->in, last->end)) == PS_OK)
            st = ps_ingest_commit(w->in);
        if (st == PS_OK)
            commit_took = mono_us() - commit_began;
        bool gave_up = false;
        for (unsigned failed = 1; st != PS_OK && !gave_up; failed++) { /* the whole transaction
                                                                        * again, after a pause */
            pthread_mutex_lock(&w->lock);
            gave_up = w->journal_done; /* stopping: the next start takes them from the journal */
            pthread_mutex_unlock(&w->lock);
            if (failed == 1 || failed % APPLY_RETRIES_SAID == 0 || gave_up) /* not every second */
                ps_log(PS_LOG_ERROR,
                       "msg=\"applying journaled events failed; %s\" space=%s error=\"%s\" "
                       "attempts=%u",
                       gave_up ? "they stay in the journal" : "retrying", ps_space_name(w->space),
                       ps_status_str(st), failed);
            if (gave_up)
                break;
            struct timespec d = {APPLY_RETRY_MS / 1000, (APPLY_RETRY_MS % 1000) * 1000000L};
            nanosleep(&d, NULL);
            st = apply_list(w, list);
        }
        if (st == PS_OK && last->p == NULL) {
            size_t ran;
            ps_status rs =
                ps_regulation_run_pending(w->space, ps_clock_now_ms(), last->reg_seq, &ran);
            if (rs != PS_OK) /* they stay waiting: the next marker or start runs them */
                ps_log(PS_LOG_ERROR, "msg=\"regulations could not run\" space=%s error=%s",
                       ps_space_name(w->space), ps_status_str(rs));
            /* and CSV imports submitted over HTTP, at the same point of the stream */
            rs = ps_import_run_pending(w->space, ps_clock_now_ms(), &w->cancel_imports);
            if (rs != PS_OK) /* they stay waiting: the next marker or start runs them */
                ps_log(PS_LOG_ERROR, "msg=\"imports could not run\" space=%s error=%s",
                       ps_space_name(w->space), ps_status_str(rs));
        }
        size_t messages = 0;
        for (item *it = list; it; it = it->next)
            messages += it->p ? ps_prepared_logged(it->p) : 0;
        pthread_mutex_lock(&w->lock);
        if (st == PS_OK) {
            w->applied = last->end;
            count_group(w->stats.commits, &w->stats.commit_messages, messages);
            if (commit_took >= 0) /* a retried transaction's time would count its pauses */
                count_time(w->stats.commit_times, &w->stats.commit_us, commit_took);
        }
        if (st == PS_OK && last->p == NULL)
            w->reg_done = last->ticket;
        w->apply_failed = w->apply_failed || gave_up;
        pthread_cond_broadcast(&w->progress);
        pthread_mutex_unlock(&w->lock);
        free_items(list);
        if (w->applied - released >= PS_JOURNAL_SEGMENT) {
            ps_journal_release(w->journal, w->applied, false);
            released = w->applied;
        }
    }
    return NULL;
}

/* ---- the apply thread, replicated: the stream in order ---- */

/* Waits up to `ms` unless the writer stops meanwhile. */
static void pause_unless_stopping(ps_writer *w, int ms)
{
    struct timespec ts;
    deadline_in(&ts, ms);
    pthread_mutex_lock(&w->lock);
    while (!w->journal_done && pthread_cond_timedwait(&w->awake, &w->lock, &ts) == 0)
        ;
    pthread_mutex_unlock(&w->lock);
}

/* Commits what the open transaction holds, up to stream sequence `at`. */
static ps_status stream_commit(ps_writer *w, uint64_t at, size_t messages)
{
    ps_status st = ps_ingest_stream_mark(w->in, at);
    if (st == PS_OK)
        st = ps_ingest_commit(w->in);
    pthread_mutex_lock(&w->lock);
    if (st == PS_OK) {
        w->applied = at;
        count_group(w->stats.commits, &w->stats.commit_messages, messages);
    }
    pthread_cond_broadcast(&w->progress);
    pthread_mutex_unlock(&w->lock);
    if (st != PS_OK)
        ps_log(PS_LOG_ERROR,
               "msg=\"applying the stream failed; reading it again\" space=%s "
               "error=\"%s\"",
               ps_space_name(w->space), ps_status_str(st));
    return st;
}

/* Applies a settings or regulation record into an empty batch. One that cannot apply
 * (settings this version finds invalid, a kind it does not know) is logged and passed over:
 * every node of the same version passes over it alike. */
static ps_status stream_record(ps_writer *w, const ps_repl_msg *m)
{
    ps_status st = PS_EINVAL;
    ps_diags d;
    memset(&d, 0, sizeof d);
    if (m->kind == PS_REPL_SETTINGS)
        st = ps_ingest_settings(w->in, (const char *)m->data.ptr, m->data.len, &d);
    else if (m->kind == PS_REPL_REGULATION)
        st = ps_ingest_regulation(w->in, m->seq, m->data);
    if (st == PS_OK && m->kind == PS_REPL_SETTINGS)
        ps_log(PS_LOG_INFO, "msg=\"settings applied from the stream\" space=%s seq=%llu",
               ps_space_name(w->space), (unsigned long long)m->seq);
    if (st == PS_EINVAL) {
        ps_log(PS_LOG_ERROR, "msg=\"stream record passed over\" space=%s seq=%llu kind=%d",
               ps_space_name(w->space), (unsigned long long)m->seq, (int)m->kind);
        st = PS_OK;
    }
    return st;
}

/* Whether `info` is the stream the store's mark counts in. The first stream a store reads
 * becomes its own (recorded with the mark); another of the same name, or one that ends
 * before the mark, is refused: applying it would skip or repeat records. */
static bool stream_is_ours(ps_writer *w, const ps_repl_info *info, uint64_t at, uint64_t done,
                           uint64_t *bound)
{
    const char *name = ps_space_name(w->space);
    if (*bound != 0 && info->id != *bound) {
        ps_log(PS_LOG_ERROR,
               "msg=\"the space's stream was made again: this store counts in another one; "
               "start the nodes again from one snapshot\" space=%s applied=%llu",
               name, (unsigned long long)done);
        return false;
    }
    if (info->last_seq < done) {
        ps_log(PS_LOG_ERROR,
               "msg=\"the space's stream ends before what this store has applied\" space=%s "
               "applied=%llu last=%llu",
               name, (unsigned long long)done, (unsigned long long)info->last_seq);
        return false;
    }
    if (*bound == 0 && at == done) { /* the first stream this store reads: its own from now */
        ps_status st = ps_ingest_stream_bind(w->in, info->id);
        if (st == PS_OK)
            st = stream_commit(w, done, 0);
        if (st != PS_OK)
            return false;
        *bound = info->id;
    }
    return *bound != 0;
}

static void *stream_run(void *arg)
{
    ps_writer *w = arg;
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), APPLY_NICE) != 0)
        ps_log(PS_LOG_DEBUG, "msg=\"cannot lower the apply thread's priority\"");
    const char *name = ps_space_name(w->space);
    ps_repl_sub *sub = NULL;
    uint64_t done = w->applied; /* committed */
    uint64_t at = done;         /* taken into the open transaction */
    size_t messages = 0;
    int64_t opened = 0, last_info = 0, last_msg = mono_ms(), last_complaint = -60000;
    uint64_t bound = 0; /* the stream the store's mark counts in (0: none yet) */
    if (ps_ingest_stream_id(w->space, &bound) != PS_OK)
        bound = 0;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        bool stop = w->journal_done, readers = w->waiting_readers > 0;
        w->stream_reading = sub != NULL;
        pthread_mutex_unlock(&w->lock);
        if (stop)
            break;
        if (sub == NULL) {
            ps_repl_info info = {0, 0};
            char why[200];
            ps_status st =
                ps_repl_sub_open(w->o.repl, name, at + 1, done == 0, &info, &sub, why, sizeof why);
            if (st == PS_OK && !stream_is_ours(w, &info, at, done, &bound)) {
                ps_repl_sub_close(sub);
                sub = NULL;
                st = PS_ECONFLICT;
            }
            if (st != PS_OK) {
                if (mono_ms() - last_complaint >= (st == PS_EIO ? 10000 : 60000)) {
                    ps_log(st == PS_EIO ? PS_LOG_WARN : PS_LOG_ERROR,
                           "msg=\"cannot read the space's stream%s\" space=%s applied=%llu "
                           "error=%s why=\"%s\"",
                           st == PS_ENOTFOUND ? ": it is gone, and this store has applied "
                                                "records of it; restore the stream, or start "
                                                "the nodes again from one snapshot"
                                              : "",
                           name, (unsigned long long)done, ps_status_str(st), why);
                    last_complaint = mono_ms();
                }
                pause_unless_stopping(w, st == PS_EIO ? STREAM_EIO_PAUSE_MS : APPLY_RETRY_MS);
                continue;
            }
        }
        int64_t now = mono_ms();
        int wait = 100;
        if (at > done)
            wait = readers ? 0 : (int)(w->o.batch_ms - (now - opened));
        if (wait < 0)
            wait = 0;
        ps_repl_msg m;
        ps_status st = ps_repl_sub_next(sub, wait, &m);
        if (st == PS_OK)
            last_msg = mono_ms();
        if (st == PS_OK && m.seq <= at) { /* delivered again */
            ps_repl_msg_free(&m);
            continue;
        }
        if (st == PS_OK && m.seq != at + 1) { /* a gap: read again from where the store is */
            ps_log(PS_LOG_WARN, "msg=\"stream gap; reading again\" space=%s want=%llu got=%llu",
                   name, (unsigned long long)(at + 1), (unsigned long long)m.seq);
            ps_repl_msg_free(&m);
            st = PS_EIO;
            pause_unless_stopping(w, APPLY_RETRY_MS); /* records the stream no longer holds
                                                       * would make this loop */
        }
        if (st == PS_OK) {
            ps_status ast = PS_OK;
            size_t count = 0;
            if (m.kind == PS_REPL_MESSAGES) {
                ast = ps_ingest_stream_messages(w->in, m.data, &count);
            } else if (at > done && (ast = stream_commit(w, at, messages)) == PS_OK) {
                done = at; /* what came before resolves under the old settings */
                messages = 0;
            }
            if (ast == PS_OK && m.kind != PS_REPL_MESSAGES) {
                ast = stream_record(w, &m);
                if (ast == PS_OK && (ast = stream_commit(w, m.seq, 0)) == PS_OK)
                    done = at = m.seq;
            }
            pthread_mutex_lock(&w->lock);
            if (m.seq + m.pending > w->stream_last)
                w->stream_last = m.seq + m.pending;
            pthread_mutex_unlock(&w->lock);
            ps_repl_msg_free(&m);
            if (ast != PS_OK) { /* the open batch is gone: read it again after a pause */
                ps_log(PS_LOG_ERROR,
                       "msg=\"cannot apply a stream record\" space=%s seq=%llu "
                       "error=%s",
                       name, (unsigned long long)(at + 1), ps_status_str(ast));
                at = done;
                messages = 0;
                ps_repl_sub_close(sub);
                sub = NULL;
                pause_unless_stopping(w, APPLY_RETRY_MS);
                continue;
            }
            if (m.kind != PS_REPL_MESSAGES) /* committed with its mark already */
                continue;
            if (at == done)
                opened = mono_ms();
            at++;
            messages += count;
            if (messages < APPLY_MAX_EVENTS && mono_ms() - opened < w->o.batch_ms && !readers)
                continue;
        } else if (st != PS_ENOTFOUND) { /* the subscription broke: a new one, from `at` */
            ps_repl_sub_close(sub);
            sub = NULL;
        } else if (at == done && mono_ms() - last_info >= 1000) { /* idle: how far is the end */
            ps_repl_info info;
            last_info = mono_ms();
            ps_status ist = ps_repl_stream(w->o.repl, name, &info);
            if (ist == PS_ENOTFOUND || (ist == PS_OK && (info.id != bound || info.last_seq < at))) {
                ps_repl_sub_close(sub); /* gone, or made again: opening it again says so */
                sub = NULL;
            } else if (ist == PS_OK) {
                uint64_t last = info.last_seq;
                pthread_mutex_lock(&w->lock);
                w->stream_last = last;
                pthread_mutex_unlock(&w->lock);
                /* records wait, yet none came for a while: the consumer is stuck (its server
                 * went away); a new one starts where the store stands */
                if (last > at && mono_ms() - last_msg >= STALL_MS) {
                    ps_log(PS_LOG_WARN,
                           "msg=\"stream reader stalled; reading again\" space=%s "
                           "applied=%llu last=%llu",
                           name, (unsigned long long)at, (unsigned long long)last);
                    ps_repl_sub_close(sub);
                    sub = NULL;
                    last_msg = mono_ms();
                }
            }
        }
        if (at > done) {
            if (stream_commit(w, at, messages) == PS_OK) {
                done = at;
            } else {
                at = done;
                ps_repl_sub_close(sub);
                sub = NULL;
                pause_unless_stopping(w, APPLY_RETRY_MS);
            }
            messages = 0;
        }
    }
    if (at > done && stream_commit(w, at, messages) == PS_OK)
        done = at;
    ps_repl_sub_close(sub);
    return NULL;
}

/* ---- recovery ---- */

typedef struct recover_ctx {
    ps_ingest *in;
    size_t pending;
    uint64_t end;
    ps_status st;
} recover_ctx;

static bool recover_one(void *ud, uint64_t end, ps_slice rec)
{
    recover_ctx *c = ud;
    if ((c->st = ps_ingest_logged(c->in, rec)) != PS_OK)
        return false;
    c->end = end;
    if (++c->pending < RECOVER_EVENTS)
        return true;
    c->pending = 0;
    if ((c->st = ps_ingest_journal_mark(c->in, end)) == PS_OK)
        c->st = ps_ingest_commit(c->in);
    return c->st == PS_OK;
}

/* Applies what the journal holds past the store's mark; *applied gets the new mark. */
static ps_status recover(ps_space *sp, uint64_t *applied)
{
    ps_status st = ps_ingest_journal_applied(sp, applied);
    if (st != PS_OK)
        return st;
    ps_ingest_opts io = {.keep_received_at = true};
    recover_ctx c = {NULL, 0, *applied, PS_OK};
    if ((st = ps_ingest_begin(sp, &io, &c.in)) != PS_OK)
        return st;
    uint64_t last;
    st = ps_journal_scan(ps_space_dir(sp), *applied, recover_one, &c, &last);
    if (st == PS_OK)
        st = c.st;
    if (st == PS_OK && c.end != *applied && (st = ps_ingest_journal_mark(c.in, c.end)) == PS_OK)
        st = ps_ingest_commit(c.in);
    if (st == PS_OK && c.end != *applied) {
        const ps_ingest_stats *s = ps_ingest_stats_get(c.in);
        ps_log(PS_LOG_INFO, "msg=\"journal recovered\" space=%s accepted=%llu", ps_space_name(sp),
               (unsigned long long)s->accepted);
        *applied = c.end;
    }
    ps_ingest_end(c.in);
    return st;
}

typedef struct end_ctx {
    uint64_t end;
} end_ctx;

static bool note_end(void *ud, uint64_t end, ps_slice rec)
{
    (void)rec;
    ((end_ctx *)ud)->end = end;
    return true;
}

bool ps_writer_journal_present(ps_space *sp)
{
    return ps_journal_present(ps_space_dir(sp)) || ps_regulation_any_pending(sp);
}

ps_status ps_writer_recover(ps_space *sp)
{
    const char *dir = ps_space_dir(sp);
    if (!ps_writer_journal_present(sp))
        return PS_OK;
    ps_journal *j;
    ps_status st = ps_journal_open(dir, &j);
    if (st == PS_OK) { /* nobody appends: take what is there and remove it */
        uint64_t applied;
        size_t ran;
        st = recover(sp, &applied);
        if (st == PS_OK)
            ps_journal_release(j, applied, true);
        if (st == PS_OK)
            st = ps_regulation_run_pending(sp, ps_clock_now_ms(), UINT64_MAX, &ran);
        ps_journal_close(j);
        return st;
    }
    if (st != PS_EBUSY)
        return st;
    /* a running server appends: wait until its store has what the journal holds now */
    uint64_t applied;
    if ((st = ps_ingest_journal_applied(sp, &applied)) != PS_OK)
        return st;
    end_ctx e = {applied};
    uint64_t last;
    if ((st = ps_journal_scan(dir, applied, note_end, &e, &last)) != PS_OK)
        return st;
    for (int64_t start = mono_ms(); applied < e.end && mono_ms() - start < DRAIN_WAIT_MS;) {
        struct timespec d = {0, 5 * 1000000L};
        nanosleep(&d, NULL);
        if ((st = ps_ingest_journal_applied(sp, &applied)) != PS_OK)
            return st;
    }
    for (int64_t start = mono_ms();
         ps_regulation_any_pending(sp) && mono_ms() - start < DRAIN_WAIT_MS;) {
        struct timespec d = {0, 5 * 1000000L};
        nanosleep(&d, NULL); /* and until it has run the regulations it accepted */
    }
    if (applied < e.end)
        ps_log(PS_LOG_WARN, "msg=\"the server has not applied its journal yet\" space=%s",
               ps_space_name(sp));
    return PS_OK;
}

/* ---- the writer ---- */

/* Replicated: the stream position the store has applied. A space that was never replicated
 * joins the stream only when its log and its local journal are empty (else it holds messages
 * no other node has): *fresh says it is to be marked at position 0. */
static ps_status replicated_start(ps_space *sp, uint64_t *applied, bool *fresh)
{
    *fresh = false;
    ps_status st = ps_ingest_stream_applied(sp, applied);
    if (st != PS_ENOTFOUND)
        return st;
    ps_history_info h;
    if ((st = ps_history_info_get(sp, &h)) != PS_OK)
        return st;
    if (h.messages > 0 || ps_journal_present(ps_space_dir(sp))) {
        ps_log(PS_LOG_ERROR,
               "msg=\"space holds messages that are not in its stream: start replication from "
               "an empty space or from a replica's snapshot\" space=%s messages=%llu",
               ps_space_name(sp), (unsigned long long)h.messages);
        return PS_ECONFLICT;
    }
    *applied = 0;
    *fresh = true;
    return PS_OK;
}

/* Frees a writer whose threads have ended (or never started). */
static void writer_release(ps_writer *w)
{
    if (!w->o.repl)
        ps_store_pace_writeback(ps_space_store(w->space), false);
    ps_ingest_end(w->in);
    ps_journal_close(w->journal);
    ps_repl_pub_close(w->pub);
    ps_repl_pub_close(w->admin_pub);
    pthread_mutex_destroy(&w->admin_lock);
    pthread_cond_destroy(&w->progress);
    pthread_cond_destroy(&w->room);
    pthread_cond_destroy(&w->awake);
    pthread_cond_destroy(&w->jwake);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

ps_status ps_writer_start(ps_space *sp, const ps_writer_opts *opts, ps_writer **out)
{
    ps_writer *w = ps_xcalloc(1, sizeof *w);
    w->space = sp;
    w->o = *opts;
    if (w->o.batch_events == 0)
        w->o.batch_events = DEFAULT_BATCH_EVENTS;
    if (w->o.queue_bytes == 0)
        w->o.queue_bytes = DEFAULT_QUEUE_BYTES;
    if (w->o.batch_ms <= 0)
        w->o.batch_ms = DEFAULT_APPLY_MS;
    ps_status st = ps_journal_open(ps_space_dir(sp), &w->journal);
    uint64_t applied = 0;
    if (st == PS_EBUSY)
        ps_log(PS_LOG_ERROR, "msg=\"another process writes this space's journal\" space=%s",
               ps_space_name(sp));
    bool fresh = false;             /* replicated: the space joins its stream now */
    if (st == PS_OK && w->o.repl) { /* the stream is the journal (which stays empty) */
        st = replicated_start(sp, &applied, &fresh);
    } else if (st == PS_OK && ps_ingest_stream_applied(sp, &applied) == PS_OK) {
        ps_log(PS_LOG_ERROR, /* its writes would reach no other node, and never the stream */
               "msg=\"space is replicated: start profiled with --replicate to write to it\" "
               "space=%s",
               ps_space_name(sp));
        st = PS_ECONFLICT;
    } else if (st == PS_OK) {
        st = recover(sp, &applied);
        if (st == PS_OK) {
            ps_journal_release(w->journal, applied, true); /* all of it is in the store now */
            st = ps_journal_start(w->journal, applied);
        }
    }
    size_t ran;
    if (st == PS_OK && !w->o.repl) /* regulations a stopped server accepted but did not run */
        st = ps_regulation_run_pending(sp, ps_clock_now_ms(), UINT64_MAX, &ran);
    ps_ingest_opts io = {.keep_received_at = w->o.repl != NULL};
    if (st == PS_OK)
        st = ps_ingest_begin(sp, &io, &w->in);
    if (st == PS_OK && fresh && (st = ps_ingest_stream_mark(w->in, 0)) == PS_OK)
        st = ps_ingest_commit(w->in); /* marked replicated from now on */
    if (st != PS_OK) {
        ps_ingest_end(w->in);
        ps_journal_close(w->journal);
        free(w);
        return st;
    }
    /* commits write back in steps, so that the journal's syncs, which acknowledge, wait for
     * one step of the store's pages and not for a whole commit */
    if (!w->o.repl)
        ps_store_pace_writeback(ps_space_store(sp), true);
    w->acked = w->applied = applied;
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->admin_lock, NULL);
    pthread_cond_init(&w->jwake, NULL);
    pthread_cond_init(&w->awake, NULL);
    pthread_cond_init(&w->room, NULL);
    pthread_cond_init(&w->progress, NULL);
    bool japp = pthread_create(&w->athread, NULL, w->o.repl ? stream_run : apply_run, w) == 0;
    bool jj = japp && pthread_create(&w->jthread, NULL, journal_run, w) == 0;
    if (!jj) {
        if (japp) { /* let the apply thread see an empty, finished journal */
            pthread_mutex_lock(&w->lock);
            w->journal_done = true;
            pthread_cond_signal(&w->awake);
            pthread_mutex_unlock(&w->lock);
            pthread_join(w->athread, NULL);
        }
        writer_release(w);
        return PS_EIO;
    }
    *out = w;
    if (ps_import_any_pending(sp)) /* imports a stopped server accepted: run them in turn */
        ps_writer_regulations(w, 0);
    return PS_OK;
}

void ps_writer_regulations(ps_writer *w, uint64_t up_to)
{
    item *it = ps_xcalloc(1, sizeof *it); /* no payload: a marker */
    pthread_mutex_lock(&w->lock);
    if (w->stopping) { /* the next start runs them */
        pthread_mutex_unlock(&w->lock);
        free(it);
        return;
    }
    it->ticket = ++w->reg_asked;
    it->reg_seq = up_to;
    push(&w->submitted, it);
    pthread_cond_signal(&w->jwake);
    pthread_mutex_unlock(&w->lock);
}

ps_status ps_writer_submit(ps_writer *w, ps_prepared *p, ps_writer_done done, void *ud)
{
    size_t bytes = ps_prepared_bytes(p);
    pthread_mutex_lock(&w->lock);
    ps_status st = PS_OK;
    if (w->stopping)
        st = PS_ECLOSED;
    else if (w->submitted.bytes > 0 && w->submitted.bytes + bytes > w->o.queue_bytes)
        st = PS_EBUSY; /* one payload alone always fits, so none is refused forever */
    if (st != PS_OK) {
        pthread_mutex_unlock(&w->lock);
        ps_prepared_free(p);
        return st;
    }
    item *it = ps_xmalloc(sizeof *it);
    *it = (item){.p = p, .bytes = bytes, .done = done, .ud = ud, .queued_ms = mono_ms()};
    push(&w->submitted, it);
    pthread_cond_signal(&w->jwake);
    pthread_mutex_unlock(&w->lock);
    return PS_OK;
}

bool ps_writer_replicated(const ps_writer *w)
{
    return w && w->o.repl;
}

ps_status ps_writer_publish(ps_writer *w, ps_repl_kind kind, ps_slice data, uint64_t *seq)
{
    *seq = 0;
    if (w == NULL || w->o.repl == NULL)
        return PS_ECONFLICT;
    pthread_mutex_lock(&w->admin_lock);
    ps_status st = PS_OK;
    if (w->admin_pub == NULL)
        st = ps_repl_pub_open(w->o.repl, ps_space_name(w->space), false, &w->admin_pub);
    if (st == PS_OK)
        st = ps_repl_pub_add(w->admin_pub, kind, NULL, 0, data);
    if (st == PS_OK)
        st = ps_repl_pub_wait(w->admin_pub, seq);
    pthread_mutex_unlock(&w->admin_lock);
    if (st == PS_OK) {
        pthread_mutex_lock(&w->lock);
        if (*seq > w->acked) /* reads on this node wait for it, like for acknowledged events */
            w->acked = *seq;
        pthread_mutex_unlock(&w->lock);
    }
    return st;
}

/* Whether the store holds the journal up to `target` and has run regulations up to `regs`
 * (w->lock held). */
static bool reached_locked(const ps_writer *w, uint64_t target, uint64_t regs)
{
    return w->applied >= target && w->reg_done >= regs;
}

/* Waits (holding w->lock) until the store has applied up to `target` and run the
 * regulations asked for up to `regs`, at most `timeout_ms`; the apply thread commits at once
 * while a reader waits. Whether they are there now. */
static bool await_locked(ps_writer *w, uint64_t target, uint64_t regs, int timeout_ms)
{
    if (!reached_locked(w, target, regs)) {
        struct timespec ts;
        deadline_in(&ts, timeout_ms);
        w->waiting_readers++;
        pthread_cond_signal(&w->awake);
        while (!reached_locked(w, target, regs))
            if (pthread_cond_timedwait(&w->progress, &w->lock, &ts) != 0)
                break;
        w->waiting_readers--;
    }
    return reached_locked(w, target, regs);
}

bool ps_writer_await_position(ps_writer *w, uint64_t seq, int timeout_ms)
{
    if (w == NULL)
        return false;
    pthread_mutex_lock(&w->lock);
    /* a sequence past the end of the stream as this node knows it is not waited for: it
     * cannot come soon, and the wait would hold an HTTP worker */
    bool known = seq <= w->stream_last || seq <= w->acked;
    bool ok = known ? await_locked(w, seq, 0, timeout_ms) : w->applied >= seq;
    pthread_mutex_unlock(&w->lock);
    return ok;
}

bool ps_writer_caught_up(ps_writer *w)
{
    if (w == NULL)
        return true;
    pthread_mutex_lock(&w->lock);
    bool done = reached_locked(w, w->acked, w->reg_asked);
    pthread_mutex_unlock(&w->lock);
    return done;
}

bool ps_writer_await(ps_writer *w, int timeout_ms)
{
    if (w == NULL)
        return true;
    pthread_mutex_lock(&w->lock);
    bool ok = await_locked(w, w->acked, w->reg_asked, timeout_ms);
    pthread_mutex_unlock(&w->lock);
    return ok;
}

void ps_writer_stop(ps_writer *w)
{
    if (w == NULL || w->joined)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    atomic_store(&w->cancel_imports, true); /* a running import resumes at the next start */
    pthread_cond_signal(&w->jwake);
    /* the journal thread may be waiting for the apply thread's backlog to shrink, which a
     * store that cannot commit (a full disk) never does */
    pthread_cond_broadcast(&w->room);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->jthread, NULL); /* it journals the queue before it returns */
    pthread_join(w->athread, NULL); /* and this one applies it */
    if (!w->apply_failed && !w->o.repl)
        ps_journal_release(w->journal, w->applied, true);
    w->joined = true;
}

void ps_writer_free(ps_writer *w)
{
    if (w == NULL)
        return;
    ps_writer_stop(w);
    writer_release(w);
}
