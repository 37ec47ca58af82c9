/* SPDX-License-Identifier: MIT */
/* profilectl ingest: streams NDJSON files through the accept/resolve path on two threads. A
 * reader thread reads lines with a bounded buffer (an over-long line is reported and
 * skipped, never loaded whole), parses and validates each one and encodes its messages for
 * the log (ps_ingest_prepare); the main thread resolves them in line order and commits
 * (ps_ingest_prepared), so parsing overlaps resolution. A malformed line is reported with its
 * number and the rest goes on. Each batch commits durably; --verbose reports every commit,
 * which is what "committed" means. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_int.h"
#include "ps/clock.h"
#include "ps/event.h"
#include "ps/ingest.h"

#define READ_CHUNK (1 << 20)
#define LINE_MAX_BYTES (PS_BATCH_MAX_BYTES + 2)
#define MALFORMED_SHOWN 20
#define PUBLISH_WINDOW 10000 /* messages in flight to the stream before waiting for them */

/* What the reader hands the writer, in line order: lines in chunks, so that the threads
 * meet once per chunk rather than once per line. */
typedef enum { IT_PAYLOAD, IT_SKIP } entry_kind;

typedef struct entry {
    entry_kind kind;
    uint64_t line;
    uint64_t end;      /* the file offset after the line */
    ps_prepared *prep; /* IT_PAYLOAD */
    ps_drop why;       /* IT_SKIP: unreadable (PS_DROP_NONE: over-long) */
} entry;

#define CHUNK_LINES 256
#define CHUNK_BYTES (4u << 20)

typedef struct chunk {
    struct chunk *next; /* on the done list */
    entry e[CHUNK_LINES];
    size_t count, bytes;
    bool end;      /* the reader's last chunk */
    int rc;        /* with `end`: the reader's result (EXIT_OK at the end of the file) */
    uint64_t line; /* with `end`: the last line read */
} chunk;

#define QUEUE_CHUNKS 16

typedef struct queue {
    pthread_mutex_t lock;
    pthread_cond_t more, room;
    chunk *items[QUEUE_CHUNKS];
    size_t head, count;
    bool stop;   /* the writer gave up: the reader ends */
    chunk *done; /* taken chunks, for the reader to free: memory goes back to the thread
                  * that allocated it, so the two threads never contend in malloc */
} queue;

typedef struct run {
    cli *c;
    ps_space *sp;
    ps_ingest *in;
    const char *source;
    size_t batch;
    bool verbose, progress;
    bool dict_tried; /* committed early so that the log's dictionary is trained */
    uint64_t lines, malformed;
    int64_t started_ms, last_progress_ms, file_started_ms;
    uint64_t file_lines; /* of the current file */
    const char *file;
    FILE *f;
    const char *said_file; /* --verbose: the last `committed` line, not printed twice */
    uint64_t said_line;
    _Atomic uint64_t bytes; /* of the current file read so far (the reader's count) */
    uint64_t total;         /* its size, 0 when unknown (a pipe) */
    uint64_t batch_from;    /* the file offset where the open batch began */
    bool shown;             /* a progress line is on the terminal */
    queue q;
    chunk *filling;       /* the reader's */
    ps_prepare_view view; /* the reader's: settings and lists, read again for each chunk */
    /* --replicate: messages go to the space's stream, not into this store */
    ps_repl *repl;
    ps_repl_pub *pub;
    size_t unacked;                   /* published since the last wait */
    uint64_t published, last_seq;     /* messages, and the stream's sequence after them */
    uint64_t dropped[PS_DROP__COUNT]; /* by the door (the store's counts stay empty) */
    ps_buf record;                    /* the stream record being built */
} run;

static void chunk_free(chunk *ch)
{
    if (ch == NULL)
        return;
    for (size_t i = 0; i < ch->count; i++)
        ps_prepared_free(ch->e[i].prep);
    free(ch);
}

/* Frees the chunks on a done list. */
static void free_list(chunk *ch)
{
    while (ch) {
        chunk *next = ch->next;
        chunk_free(ch);
        ch = next;
    }
}

/* Waits for room, then queues `ch`; frees what the writer is done with. False (and `ch`
 * freed) when the writer has stopped. */
static bool push(queue *q, chunk *ch)
{
    pthread_mutex_lock(&q->lock);
    while (!q->stop && q->count == QUEUE_CHUNKS)
        pthread_cond_wait(&q->room, &q->lock);
    bool ok = !q->stop;
    if (ok) {
        q->items[(q->head + q->count) % QUEUE_CHUNKS] = ch;
        q->count++;
        pthread_cond_signal(&q->more);
    }
    chunk *done = q->done;
    q->done = NULL;
    pthread_mutex_unlock(&q->lock);
    free_list(done);
    if (!ok)
        chunk_free(ch);
    return ok;
}

/* The writer hands a chunk it has taken back to the reader. */
static void give_back(queue *q, chunk *ch)
{
    pthread_mutex_lock(&q->lock);
    ch->next = q->done;
    q->done = ch;
    pthread_mutex_unlock(&q->lock);
}

static chunk *pop(queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0)
        pthread_cond_wait(&q->more, &q->lock);
    chunk *ch = q->items[q->head];
    q->head = (q->head + 1) % QUEUE_CHUNKS;
    q->count--;
    pthread_cond_signal(&q->room);
    pthread_mutex_unlock(&q->lock);
    return ch;
}

/* The writer gives up: the reader stops at its next push, and what is queued is freed. */
static void stop_reader(queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->stop = true;
    while (q->count) {
        chunk_free(q->items[q->head]);
        q->head = (q->head + 1) % QUEUE_CHUNKS;
        q->count--;
    }
    pthread_cond_broadcast(&q->room);
    pthread_mutex_unlock(&q->lock);
}

/* Adds an entry to the reader's chunk, handing the chunk over when it is full. */
static bool add(run *r, entry e, size_t bytes)
{
    chunk *ch = r->filling;
    ch->e[ch->count++] = e;
    ch->bytes += bytes;
    if (ch->count < CHUNK_LINES && ch->bytes < CHUNK_BYTES)
        return true;
    /* the push may wait for room while the writer commits: no read snapshot meanwhile, or
     * the pages those commits free could not be reused (the next line opens a new view) */
    ps_prepare_view_close(&r->view);
    r->filling = ps_xcalloc(1, sizeof *r->filling);
    return push(&r->q, ch);
}

/* ---- the reader thread ---- */

static bool read_line(run *r, const char *line, size_t len, uint64_t number, uint64_t end)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    size_t skip = 0;
    while (skip < len && (line[skip] == ' ' || line[skip] == '\t'))
        skip++;
    if (skip == len)
        return true; /* blank line */
    if (len - skip > PS_BATCH_MAX_BYTES)
        return add(r, (entry){IT_SKIP, number, end, NULL, PS_DROP_NONE}, 0);
    ps_prepare_opts po = {
        .source_id = r->source ? r->source : "profilectl",
        .now_ms = ps_clock_now_ms(),
        .sequence = number,
        .keep_received_at = true,
        .unlimited = true,
        .portable_log = r->pub != NULL, /* other nodes decode what goes to the stream */
        .borrowed_json = true,          /* the read buffer: the payload keeps its own copy */
    };
    ps_prepared *prep;
    ps_prepare_refusal refusal;
    ps_status st = PS_OK;
    if (r->view.txn == NULL) /* closed at each chunk's hand-over (add) */
        st = ps_prepare_view_open(r->sp, &r->view);
    po.view = &r->view;
    if (st == PS_OK)
        st = ps_ingest_prepare(r->sp, &po, (uint8_t *)line + skip, len - skip, &prep, &refusal);
    if (st == PS_EINVAL || st == PS_ETOOBIG)
        return add(r, (entry){IT_SKIP, number, end, NULL, refusal.why}, 0);
    if (st != PS_OK) {
        r->filling->rc = cli_fail(cli_exit_code(st), "%s:%llu: %s", r->file,
                                  (unsigned long long)number, ps_status_str(st));
        return false;
    }
    return add(r, (entry){IT_PAYLOAD, number, end, prep, PS_DROP_NONE}, ps_prepared_bytes(prep));
}

static void *reader(void *arg)
{
    run *r = arg;
    char *buf = ps_xmalloc(READ_CHUNK + LINE_MAX_BYTES);
    size_t have = 0;
    uint64_t number = 0, at = 0; /* `at`: the file offset of buf[0] */
    bool discarding = false;     /* inside an over-long line */
    bool going = true;
    int read_errno = 0; /* why reading stopped early, when it did */
    for (;;) {
        size_t n = fread(buf + have, 1, READ_CHUNK, r->f);
        if (n < READ_CHUNK && ferror(r->f))
            read_errno = errno;
        atomic_fetch_add_explicit(&r->bytes, n, memory_order_relaxed);
        have += n;
        size_t start = 0;
        for (; going;) {
            char *nl = memchr(buf + start, '\n', have - start);
            if (nl == NULL)
                break;
            size_t len = (size_t)(nl - (buf + start));
            number++;
            if (discarding)
                discarding = false;
            else
                going = read_line(r, buf + start, len, number, at + start + len + 1);
            start += len + 1;
        }
        if (!going)
            break;
        memmove(buf, buf + start, have - start);
        have -= start;
        at += start;
        if (have > LINE_MAX_BYTES) { /* bound memory: report and drop the rest of the line */
            if (!discarding && !add(r, (entry){IT_SKIP, number + 1, at, NULL, PS_DROP_NONE}, 0))
                break;
            discarding = true;
            at += have;
            have = 0;
        }
        if (n == 0)
            break;
    }
    if (going && have > 0 && !discarding)
        going = read_line(r, buf, have, ++number, at + have);
    free(buf);
    ps_prepare_view_close(&r->view);
    /* the last chunk says how reading ended; after a stop nobody reads it */
    chunk *last = r->filling;
    r->filling = NULL;
    last->end = true;
    last->line = number;
    if (going && ferror(r->f))
        last->rc = cli_fail(EXIT_STORE, "%s: cannot read it: %s", r->file,
                            read_errno ? strerror(read_errno) : "read error");
    else if (!going && last->rc == EXIT_OK)
        last->rc = EXIT_STORE; /* stopped by the writer, which reports why */
    push(&r->q, last);
    return NULL;
}

/* ---- the writer (main thread) ---- */

/* --replicate: waits until the stream has stored everything published. */
static int publish_wait(run *r, uint64_t line)
{
    if (r->unacked == 0)
        return EXIT_OK;
    uint64_t seq = 0;
    ps_status st = ps_repl_pub_wait(r->pub, &seq);
    r->unacked = 0;
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st),
                        "%s: the stream did not store the messages before line %llu (%s); "
                        "publish the file again: the stream and the store drop the duplicates",
                        r->file, (unsigned long long)line, ps_status_str(st));
    if (seq > r->last_seq)
        r->last_seq = seq;
    if (r->verbose)
        fprintf(stderr, "published file=%s line=%llu messages=%llu sequence=%llu\n", r->file,
                (unsigned long long)line, (unsigned long long)r->published,
                (unsigned long long)r->last_seq);
    return EXIT_OK;
}

static int publish(run *r, const entry *it)
{
    for (int d = 1; d < PS_DROP__COUNT; d++)
        r->dropped[d] += ps_prepared_dropped_by(it->prep, (ps_drop)d);
    size_t n = ps_prepared_logged(it->prep);
    for (size_t i = 0; i < n;) {
        size_t from = i;
        char id[PS_STREAM_ID_BUF];
        ps_buf_reset(&r->record);
        ps_prepared_stream_record(it->prep, &i, &r->record, id);
        ps_status st = ps_repl_pub_add(r->pub, PS_REPL_MESSAGES, id, strlen(id),
                                       (ps_slice){r->record.ptr, r->record.len});
        if (st != PS_OK)
            return cli_fail(cli_exit_code(st), "%s:%llu: cannot publish to the stream: %s", r->file,
                            (unsigned long long)it->line, ps_status_str(st));
        r->published += i - from;
        r->unacked += i - from;
    }
    return r->unacked >= PUBLISH_WINDOW ? publish_wait(r, it->line) : EXIT_OK;
}

static int commit(run *r, uint64_t line)
{
    if (r->pub)
        return publish_wait(r, line);
    ps_status st = ps_ingest_commit(r->in);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st),
                        "%s: commit failed near line %llu: %s%s; this batch was not stored",
                        r->file, (unsigned long long)line, ps_status_str(st), cli_status_hint(st));
    if (r->verbose && (r->said_file != r->file || r->said_line != line)) {
        fprintf(stderr, "committed file=%s line=%llu accepted=%llu\n", r->file,
                (unsigned long long)line, (unsigned long long)ps_ingest_stats_get(r->in)->accepted);
        r->said_file = r->file;
        r->said_line = line;
    }
    return EXIT_OK;
}

/* A pv-like line on the terminal, redrawn twice a second: bytes read (with the percentage
 * and the time left when the size is known), lines and the rates. Erased when done. */
static void progress(run *r)
{
    int64_t now = ps_clock_now_ms();
    if (!r->progress || now - r->last_progress_ms < 500)
        return;
    r->last_progress_ms = now;
    double secs = (double)(now - r->file_started_ms) / 1000.0;
    double bytes = (double)atomic_load_explicit(&r->bytes, memory_order_relaxed);
    double rate = secs > 0 ? bytes / secs : 0, lines = secs > 0 ? (double)r->file_lines / secs : 0;
    char size[48] = "", eta[32] = "";
    if (r->total) {
        double left = rate > 0 ? ((double)r->total - bytes) / rate : 0;
        if (left < 0)
            left = 0;
        snprintf(size, sizeof size, " of %.1f MB (%.0f%%)", (double)r->total / 1e6,
                 100.0 * bytes / (double)r->total);
        snprintf(eta, sizeof eta, ", ETA %d:%02d", (int)left / 60, (int)left % 60);
    }
    fprintf(stderr, "\r\033[K%s: %.1f MB%s, %llu lines, %.1f MB/s, %.0f lines/s%s", r->file,
            bytes / 1e6, size, (unsigned long long)r->file_lines, rate / 1e6, lines, eta);
    r->shown = true;
}

/* Erases the progress line. */
static void progress_done(run *r)
{
    if (r->shown)
        fputs("\r\033[K", stderr);
    r->shown = false;
}

/* About how many messages the rest of the file holds, at the open batch's messages per byte;
 * 0 when unknown (a pipe) or when the batch has none yet. */
static uint64_t messages_left(const run *r, const entry *it)
{
    uint64_t taken = ps_ingest_pending(r->in);
    if (r->total <= it->end || it->end <= r->batch_from || taken == 0)
        return 0;
    double per_byte = (double)taken / (double)(it->end - r->batch_from);
    return (uint64_t)((double)(r->total - it->end) * per_byte) + 1;
}

/* Commits after the entry `it`, where the next batch begins. */
static int commit_at(run *r, const entry *it)
{
    int rc = commit(r, it->line);
    r->batch_from = it->end;
    return rc;
}

static int take(run *r, const entry *it)
{
    r->lines++;
    r->file_lines++;
    if (it->kind == IT_SKIP) {
        if (it->why != PS_DROP_NONE && r->pub)
            r->dropped[it->why]++;
        else if (it->why != PS_DROP_NONE)
            ps_ingest_unreadable(r->in, it->why);
        if (r->malformed++ < MALFORMED_SHOWN) {
            progress_done(r); /* the warning on a line of its own */
            if (it->why == PS_DROP_NONE)
                fprintf(stderr, "%s:%llu: skipped: line longer than %d bytes\n", r->file,
                        (unsigned long long)it->line, PS_BATCH_MAX_BYTES);
            else
                fprintf(stderr, "%s:%llu: skipped: %s: %s\n", r->file, (unsigned long long)it->line,
                        ps_drop_name(it->why), ps_drop_message(it->why));
        }
        return EXIT_OK;
    }
    if (r->pub)
        return publish(r, it);
    ps_status st = ps_ingest_prepared(r->in, it->prep);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "%s:%llu: %s%s; the open batch was not stored", r->file,
                        (unsigned long long)it->line, ps_status_str(st), cli_status_hint(st));
    if (ps_ingest_batch_full(r->in, r->batch, messages_left(r, it)))
        return commit_at(r, it);
    if (!r->dict_tried && ps_ingest_dict_due(r->in)) {
        r->dict_tried = true; /* once: a space whose messages are too uniform trains none */
        return commit_at(r, it);
    }
    return EXIT_OK;
}

static int ingest_stream(run *r, FILE *f)
{
    r->f = f;
    r->q.head = r->q.count = 0;
    r->q.stop = false;
    r->q.done = NULL;
    r->filling = ps_xcalloc(1, sizeof *r->filling);
    pthread_t th;
    if (pthread_create(&th, NULL, reader, r) != 0) {
        free(r->filling);
        return cli_fail(EXIT_STORE, "cannot start the reader thread");
    }
    int rc = EXIT_OK;
    uint64_t last = 0;
    for (bool end = false; !end && rc == EXIT_OK;) {
        chunk *ch = pop(&r->q);
        for (size_t i = 0; i < ch->count && rc == EXIT_OK; i++) {
            /* the reader wrote these on the other core: ask for them a few turns early, then
             * for the identifier cache's slots and entries resolving will read */
            if (i + 3 < ch->count && ch->e[i + 3].kind == IT_PAYLOAD)
                ps_prepared_prefetch(ch->e[i + 3].prep, 0);
            if (i + 2 < ch->count && ch->e[i + 2].kind == IT_PAYLOAD)
                ps_prepared_prefetch(ch->e[i + 2].prep, 1);
            if (i + 1 < ch->count && ch->e[i + 1].kind == IT_PAYLOAD && !r->pub)
                ps_ingest_prefetch(r->in, ch->e[i + 1].prep, 0);
            if (ch->e[i].kind == IT_PAYLOAD && !r->pub)
                ps_ingest_prefetch(r->in, ch->e[i].prep, 1);
            last = ch->e[i].line;
            rc = take(r, &ch->e[i]);
        }
        end = ch->end;
        if (end && rc == EXIT_OK) {
            rc = ch->rc;
            last = ch->line > last ? ch->line : last;
        }
        if (end)
            chunk_free(ch); /* the reader has ended */
        else
            give_back(&r->q, ch);
        progress(r);
    }
    if (rc != EXIT_OK)
        stop_reader(&r->q);
    pthread_join(th, NULL);
    free_list(r->q.done); /* what the reader did not free before it ended */
    r->q.done = NULL;
    if (r->filling) { /* the reader stopped before handing over its last chunk */
        chunk_free(r->filling);
        r->filling = NULL;
    }
    if (rc == EXIT_OK)
        rc = commit(r, last);
    return rc;
}

static void publish_summary(const run *r)
{
    double secs = (double)(ps_clock_now_ms() - r->started_ms) / 1000.0;
    if (r->c->json) {
        printf("{\"lines\":%llu,\"malformed_lines\":%llu,\"published\":%llu,\"sequence\":%llu,"
               "\"seconds\":%.3f,\"dropped\":{",
               (unsigned long long)r->lines, (unsigned long long)r->malformed,
               (unsigned long long)r->published, (unsigned long long)r->last_seq, secs);
        for (int i = 1, k = 0; i < PS_DROP__COUNT; i++)
            if (r->dropped[i])
                printf("%s\"%s\":%llu", k++ ? "," : "", ps_drop_name((ps_drop)i),
                       (unsigned long long)r->dropped[i]);
        printf("}}\n");
        return;
    }
    printf("lines %llu (malformed %llu)\n", (unsigned long long)r->lines,
           (unsigned long long)r->malformed);
    printf("published %llu messages to the stream of %s, up to sequence %llu; every node "
           "applies them\n",
           (unsigned long long)r->published, ps_space_name(r->sp), (unsigned long long)r->last_seq);
    for (int i = 1; i < PS_DROP__COUNT; i++)
        if (r->dropped[i])
            printf("dropped %s: %llu\n", ps_drop_name((ps_drop)i),
                   (unsigned long long)r->dropped[i]);
    printf("%.2f s, %.0f messages/s\n", secs, secs > 0 ? (double)r->published / secs : 0.0);
}

static void summary(const run *r, const ps_ingest_stats *s)
{
    double secs = (double)(ps_clock_now_ms() - r->started_ms) / 1000.0;
    /* the drops of each event filter (docs/filters.md) since this command opened the space */
    char names[PS_FILTERS_MAX][PS_FILTER_NAME_MAX + 1];
    uint64_t hits[PS_FILTERS_MAX];
    size_t nf = ps_space_filter_hits(r->sp, names, hits);
    if (r->c->json) {
        printf("{\"lines\":%llu,\"malformed_lines\":%llu,\"messages\":%llu,\"accepted\":%llu,"
               "\"duplicates\":%llu,\"unresolved\":%llu,\"profiles_created\":%llu,"
               "\"merges\":%llu,\"mappings\":%llu,\"violations\":%llu,\"events_stored\":%llu,"
               "\"seconds\":%.3f,\"dropped\":{",
               (unsigned long long)r->lines, (unsigned long long)r->malformed,
               (unsigned long long)s->messages, (unsigned long long)s->accepted,
               (unsigned long long)s->duplicates, (unsigned long long)s->unresolved,
               (unsigned long long)s->profiles_created, (unsigned long long)s->merges,
               (unsigned long long)s->mappings, (unsigned long long)s->violations,
               (unsigned long long)s->events_stored, secs);
        int k = 0;
        for (int i = 1; i < PS_DROP__COUNT; i++)
            if (s->dropped[i])
                printf("%s\"%s\":%llu", k++ ? "," : "", ps_drop_name((ps_drop)i),
                       (unsigned long long)s->dropped[i]);
        printf("},\"filtered\":{");
        for (size_t i = 0, k2 = 0; i < nf; i++)
            if (hits[i])
                printf("%s\"%s\":%llu", k2++ ? "," : "", names[i], (unsigned long long)hits[i]);
        printf("}}\n");
        return;
    }
    printf("lines %llu (malformed %llu), messages %llu\n", (unsigned long long)r->lines,
           (unsigned long long)r->malformed, (unsigned long long)s->messages);
    printf("accepted %llu, duplicates %llu, unresolved %llu\n", (unsigned long long)s->accepted,
           (unsigned long long)s->duplicates, (unsigned long long)s->unresolved);
    printf("profiles created %llu, merges %llu, mappings %llu, violations %llu, events %llu\n",
           (unsigned long long)s->profiles_created, (unsigned long long)s->merges,
           (unsigned long long)s->mappings, (unsigned long long)s->violations,
           (unsigned long long)s->events_stored);
    for (int i = 1; i < PS_DROP__COUNT; i++)
        if (s->dropped[i])
            printf("dropped %s: %llu\n", ps_drop_name((ps_drop)i),
                   (unsigned long long)s->dropped[i]);
    for (size_t i = 0; i < nf; i++)
        if (hits[i])
            printf("filtered by %s: %llu\n", names[i], (unsigned long long)hits[i]);
    printf("%.2f s, %.0f messages/s\n", secs, secs > 0 ? (double)s->messages / secs : 0.0);
}

int cmd_ingest(cli *c)
{
    const char *source = cli_take_option(c, "--source");
    const char *replicate = cli_take_option(c, "--replicate");
    size_t batch_size = 0; /* by the log's length (ps_ingest_batch_full) */
    bool verbose = cli_take_flag(c, "--verbose");
    int rc = cli_take_number(c, "--batch", 1, 1000000, &batch_size);
    if (rc || (rc = cli_no_more_options(c)))
        return rc;
    if (c->argc < 1)
        return cli_fail(EXIT_USAGE, "usage: profilectl ingest SPACE [FILE...|-] [--source ID] "
                                    "[--batch N] [--verbose] [--replicate URL]");
    if (source && (source[0] == 0 || strlen(source) > PS_SOURCE_ID_MAX))
        return cli_fail(EXIT_USAGE, "--source must be 1-%d characters", PS_SOURCE_ID_MAX);
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], false, &sp)))
        return rc;
    ps_repl *repl = NULL;
    ps_repl_pub *pub = NULL;
    if (replicate == NULL)
        rc = cli_refuse_replicated(sp, "ingest",
                                   "add --replicate nats://HOST:PORT to publish the messages "
                                   "to the space's stream");
    else
        rc = cli_repl_open(replicate, sp, &repl, &pub);
    if (rc) {
        ps_space_close(sp);
        return rc;
    }
    ps_mem_reserve_heap(PS_CLI_HEAP_RESERVE);
    ps_ingest_opts opts = {.source_id = source, .keep_received_at = true};
    ps_ingest *in;
    ps_ingest_begin(sp, &opts, &in);
    run r = {.c = c,
             .sp = sp,
             .source = source,
             .in = in,
             .batch = batch_size,
             .verbose = verbose,
             .progress = isatty(2) && !verbose,
             .started_ms = ps_clock_now_ms(),
             .repl = repl,
             .pub = pub};
    pthread_mutex_init(&r.q.lock, NULL);
    pthread_cond_init(&r.q.more, NULL);
    pthread_cond_init(&r.q.room, NULL);
    int nfiles = c->argc - 1;
    for (int i = 0; i <= nfiles && rc == EXIT_OK; i++) {
        if (nfiles > 0 && i == 0)
            continue;
        const char *path = nfiles == 0 ? "-" : c->argv[i];
        FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
        if (f == NULL) {
            rc = cli_fail(EXIT_NOTFOUND, "cannot open %s", path);
            break;
        }
        r.file = strcmp(path, "-") == 0 ? "stdin" : path;
        struct stat sb;
        r.total = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
        atomic_store(&r.bytes, 0);
        r.file_lines = 0;
        r.batch_from = 0; /* each file ends with a commit */
        r.file_started_ms = ps_clock_now_ms();
        rc = ingest_stream(&r, f);
        progress_done(&r);
        if (f != stdin)
            fclose(f);
    }
    if (r.malformed > MALFORMED_SHOWN)
        fprintf(stderr, "... %llu malformed lines in all\n", (unsigned long long)r.malformed);
    if (pub)
        publish_summary(&r);
    else
        summary(&r, ps_ingest_stats_get(in));
    ps_ingest_end(in);
    ps_buf_clear(&r.record);
    cli_repl_end(repl, pub);
    ps_space_close(sp);
    pthread_mutex_destroy(&r.q.lock);
    pthread_cond_destroy(&r.q.more);
    pthread_cond_destroy(&r.q.room);
    return rc;
}
