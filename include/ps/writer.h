/* SPDX-License-Identifier: MIT */
/* writer: a space's writer threads in the server. Callers (HTTP workers) submit prepared
 * payloads; a journal thread appends their messages to the space's journal (ps/journal.h) in
 * groups and syncs each group once: a group closes when the queue is empty or holds
 * `batch_events` accepted messages. Each submission's callback runs, on that thread, after
 * the sync: PS_OK means durable. An apply thread then resolves the payloads, in the same
 * order, into the store through the ingest path, in transactions of up to `batch_ms`, each of
 * which records how far the journal is applied. Both queues are bounded in bytes; a full
 * queue refuses new work (PS_EBUSY) instead of growing. */
#ifndef PS_WRITER_H
#define PS_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "ps/ingest.h"
#include "ps/repl.h"
#include "ps/space.h"
#include "ps/status.h"

typedef struct ps_writer_opts {
    size_t batch_events; /* accepted messages per journal group at most (0: 5000) */
    int batch_ms;        /* an apply transaction stays open this long at most (0: 200) */
    size_t queue_bytes;  /* memory queued payloads may hold (0: 64 MiB) */
    ps_repl *repl;       /* replicated (docs/replication.md): payloads go to the space's
                          * JetStream stream instead of the journal, and the store applies the
                          * stream; NULL: the local journal */
} ps_writer_opts;

/* Outcome of one submission: PS_OK once journaled durably (replicated: stored by the stream's
 * quorum, and `position` is a stream sequence at or past its last message; else 0); otherwise
 * what failed (then none of the submission's events are stored; replicated: none were
 * acknowledged, though some may reach the stream, and a retry is deduplicated). */
typedef void (*ps_writer_done)(void *ud, ps_status st, uint64_t position);

typedef struct ps_writer ps_writer;

/* Starts the writer thread of `sp` (which must outlive it). */
ps_status ps_writer_start(ps_space *sp, const ps_writer_opts *opts, ps_writer **out);

/* Queues `p` (taken) with its callback. PS_EBUSY when the queue is full and PS_ECLOSED when
 * the writer is stopping; then `p` is freed and `done` is never called. */
ps_status ps_writer_submit(ps_writer *w, ps_prepared *p, ps_writer_done done, void *ud);

/* Asks the apply thread to run the space's waiting regulations up to sequence `up_to`
 * (ps_regulation_create), and then its waiting CSV imports (ps_import_submit), once every
 * payload submitted before this call is in the store. */
void ps_writer_regulations(ps_writer *w, uint64_t up_to);

/* Waits until the store holds everything acknowledged when it was called, and every
 * regulation asked for has run (at most `timeout_ms`), so that a read sees the writes that
 * came before it. The apply thread
 * commits at once while a reader waits. False on timeout. NULL (no writer) is true. */
bool ps_writer_await(ps_writer *w, int timeout_ms);
/* Whether the store already holds everything acknowledged and every regulation asked for:
 * ps_writer_await would not wait. Asks the apply thread for nothing. NULL is true. */
bool ps_writer_caught_up(ps_writer *w);

/* Whether the writer applies a replicated stream. */
bool ps_writer_replicated(const ps_writer *w);
/* Replicated: publishes a settings or regulation record (ps/repl.h) and waits for the
 * stream to store it; *seq gets its sequence (every node applies it there). Blocks for one
 * round trip, up to the stream's timeout. PS_ECONFLICT when the writer is not replicated. */
ps_status ps_writer_publish(ps_writer *w, ps_repl_kind kind, ps_slice data, uint64_t *seq);
/* Replicated: waits until the store has applied the stream up to `seq` (at most
 * `timeout_ms`); false on timeout, and at once when `seq` lies past the end of the stream as
 * this node knows it. */
bool ps_writer_await_position(ps_writer *w, uint64_t seq, int timeout_ms);

/* For a process that opens the space without its writer (profilectl): when the journal of a
 * stopped server holds messages the store lacks, applies them and removes the journal, then
 * runs the regulations that wait; when a
 * running server holds the journal, waits (up to 10 s) until its store has what the journal
 * holds now. The space must be open for writing when a journal may be present. */
ps_status ps_writer_recover(ps_space *sp);
/* Whether the space has a server journal or regulations waiting to run (then
 * ps_writer_recover has something to do). */
bool ps_writer_journal_present(ps_space *sp);

/* What the writer holds and how large its groups are, for /metrics. The histograms count
 * journal syncs and store commits by the accepted messages in each, in buckets of at most
 * ps_writer_group_bounds[i] messages (the last bucket: more). */
#define PS_WRITER_GROUP_BUCKETS 9
extern const uint32_t ps_writer_group_bounds[PS_WRITER_GROUP_BUCKETS - 1];
/* Two more count how long each journal sync (append and fdatasync of a group; local journal
 * only) and each store commit of the apply thread took, in buckets of at most
 * ps_writer_time_bounds[i] seconds. A slow commit slows the syncs beside it on the same disk
 * (docs/benchmarks.md, "The write path on a grown store"). */
#define PS_WRITER_TIME_BUCKETS 12
extern const double ps_writer_time_bounds[PS_WRITER_TIME_BUCKETS - 1];
typedef struct ps_writer_stats {
    uint64_t queued_payloads; /* waiting for the journal */
    uint64_t queued_bytes;
    uint64_t backlog_bytes; /* journaled (acknowledged), waiting for the store */
    uint64_t journal_groups[PS_WRITER_GROUP_BUCKETS], journal_messages;
    uint64_t commits[PS_WRITER_GROUP_BUCKETS], commit_messages;
    uint64_t sync_times[PS_WRITER_TIME_BUCKETS], sync_us; /* journal syncs: count, total time */
    uint64_t commit_times[PS_WRITER_TIME_BUCKETS], commit_us;
    bool replicated;
    uint64_t stream_applied; /* replicated: the last stream sequence the store has */
    uint64_t stream_last;    /* the stream's last sequence, as last seen */
    bool stream_connected;   /* the node reads the stream now */
} ps_writer_stats;
void ps_writer_stats_get(ps_writer *w, ps_writer_stats *out);

/* Stops taking work (submit says PS_ECLOSED from now on), journals everything queued
 * (callbacks run), applies it, removes the journal's files and joins the threads. Idempotent; NULL
 * is a no-op. */
void ps_writer_stop(ps_writer *w);
/* Stops the writer if needed and frees it. NULL is a no-op. */
void ps_writer_free(ps_writer *w);

#endif
