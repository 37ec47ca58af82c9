/* SPDX-License-Identifier: MIT */
/* ingest: the one accept/resolve path (docs/architecture.md, Data flow). Payloads are parsed
 * and validated, deduped on messageId, resolved in order and written inside one write
 * transaction per batch; a batch is acknowledged only after ps_ingest_commit() returns PS_OK
 * (durable). Used by `profilectl ingest` and by the Tracking API. One ps_ingest per writer;
 * not thread-safe. */
#ifndef PS_INGEST_H
#define PS_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/event.h"
#include "ps/space.h"
#include "ps/status.h"

typedef struct ps_ingest_opts {
    const char *source_id;   /* stamped on messages without one; NULL = "profilectl" */
    bool keep_received_at;   /* replays keep a logged receivedAt */
    ps_msg_type forced_type; /* Tracking API /v1/<type> */
} ps_ingest_opts;

typedef struct ps_ingest_stats {
    uint64_t payloads; /* lines or request bodies */
    uint64_t messages; /* messages seen, dropped ones included */
    uint64_t accepted; /* passed validation and dedup */
    uint64_t duplicates;
    uint64_t dropped[PS_DROP__COUNT];
    uint64_t unresolved; /* accepted but with no usable identifier */
    uint64_t profiles_created;
    uint64_t merges;
    uint64_t mappings;
    uint64_t violations;
    uint64_t events_stored;
    uint64_t traits_written;
} ps_ingest_stats;

typedef struct ps_ingest ps_ingest;

/* Starts an ingest session on `sp` (which must outlive it). Returns an owned session; end it
 * with ps_ingest_end(). */
ps_status ps_ingest_begin(ps_space *sp, const ps_ingest_opts *opts, ps_ingest **out);

/* Accepts one payload (a message or {"batch":[...]}) into the open batch, opening a write
 * transaction when none is open. `sequence` distinguishes payloads (a line number) for
 * generated messageIds. A payload that cannot be read at all returns PS_EINVAL/PS_ETOOBIG
 * with *why set and changes nothing; storage errors (PS_EFULL, ...) abort the open batch. */
ps_status ps_ingest_payload(ps_ingest *in, const uint8_t *json, size_t len, uint64_t sequence,
                            ps_drop *why);

/* Messages accepted into the open batch. */
size_t ps_ingest_pending(const ps_ingest *in);

/* The default batch of `profilectl ingest`: at least PS_INGEST_BATCH_MIN messages, and at
 * least a quarter of the space's message count (the number of the last message accepted, the
 * open batch's included), up to PS_INGEST_BATCH_MAX; PS_INGEST_BATCH_MIN while another process
 * (a running server) has the store open, so that its writer never waits longer than before
 * for LMDB's write lock. */
#define PS_INGEST_BATCH_MIN 50000
#define PS_INGEST_BATCH_MAX 500000
/* That size for the open batch. A commit writes every page its batch changed; once the tables
 * outgrow what a batch touches, that is most of their pages whatever the batch's size, so a
 * batch that grows with the log keeps the pages written per message from growing with it. */
size_t ps_ingest_batch_size(ps_ingest *in);
/* Whether the open batch is full: it holds `batch` messages, or with 0 the default size.
 * `left` is about how many messages the input still holds (0: unknown). With the default
 * size, a full batch that would leave fewer than a batch's worth behind is not full yet: it
 * goes on to take them (up to PS_INGEST_BATCH_MAX in all), since a last, smaller commit
 * would write about as many pages as a whole one. */
bool ps_ingest_batch_full(ps_ingest *in, size_t batch, uint64_t left);

/* True when the space has no log dictionary yet and the open batch holds enough messages to
 * train one: a bulk loader that commits now (once) has the rest of its messages compressed
 * with it, about three times smaller and three times cheaper to compress. */
bool ps_ingest_dict_due(const ps_ingest *in);

/* Commits the open batch durably. Statistics of the batch count only after this succeeds. */
ps_status ps_ingest_commit(ps_ingest *in);

/* Aborts whatever is not committed and frees the session. NULL is a no-op. */
void ps_ingest_end(ps_ingest *in);

/* ---- prepared payloads: parsed and validated on the caller's thread (an HTTP worker),
 * resolved later by the space's one writer ---- */

/* What payloads are checked against: the space's rules, filters and suppressed userIds, as
 * one read transaction sees them. A caller that prepares many payloads in a row (the CLI,
 * line by line) opens one for a run of them; otherwise each payload opens its own. */
typedef struct ps_prepare_view {
    ps_txn *txn;
    const ps_rules *rules;        /* borrowed until the space closes */
    const ps_filter_set *filters; /* likewise; NULL when the space has none */
    bool suppressing;             /* the space suppresses some userIds */
} ps_prepare_view;

ps_status ps_prepare_view_open(ps_space *sp, ps_prepare_view *v);
void ps_prepare_view_close(ps_prepare_view *v); /* a closed or zeroed view: a no-op */

typedef struct ps_prepare_opts {
    const ps_prepare_view *view; /* NULL: the payload opens its own */
    const char *source_id;       /* stamped on every message (copied) */
    ps_msg_type forced_type;     /* /v1/<type>; PS_MSG_NONE reads each message's "type" */
    bool require_batch;          /* /v1/batch */
    int64_t now_ms;              /* the receivedAt stamp (stamped once, here) */
    uint64_t sequence;           /* unique per payload in this process: generated messageIds */
    bool keep_received_at;       /* replays keep a logged receivedAt and source (the CLI) */
    bool unlimited;              /* not subject to the space's ingest rate limit (the CLI) */
    bool portable_log;           /* log values without the space's dictionary: for the replicated
                                  * stream, whose readers have dictionaries of their own */
    bool borrowed_json;          /* `json` stays the caller's: the payload keeps a copy in its
                                  * own memory and never frees `json` (one allocation fewer for
                                  * a caller that reads lines into a buffer of its own) */
} ps_prepare_opts;

typedef struct ps_prepared_drop {
    uint32_t index; /* item in the batch; 0 for a single message */
    ps_drop why;
    const char *filter; /* PS_DROP_FILTERED: the filter's name (valid while the space is
                         * open), else NULL */
} ps_prepared_drop;

typedef struct ps_prepared ps_prepared;

/* Why ps_ingest_prepare() refused a whole payload. */
typedef struct ps_prepare_refusal {
    ps_drop why;      /* PS_EINVAL, PS_ETOOBIG: what is wrong with the payload */
    int64_t retry_ms; /* PS_ELIMIT: when the space's ingest rate limit has room again */
} ps_prepare_refusal;

/* Takes one request from the space's ingest rate limit (unless o->unlimited), then parses and
 * validates `json` under the space's current rules, and encodes each accepted message for the
 * log (compression included), so that the writer only stores it. Takes ownership of `json` (a
 * ps_xmalloc'd buffer) unless o->borrowed_json. PS_OK with *out even when every message was
 * dropped. Otherwise `json` is freed (when owned), *out is NULL, and the status says why: PS_ELIMIT
 * (over the rate; nothing was parsed), PS_EINVAL or PS_ETOOBIG (the payload cannot be read at all),
 * or a storage error from reading the rules; `refusal` gives the details. */
ps_status ps_ingest_prepare(ps_space *sp, const ps_prepare_opts *o, uint8_t *json, size_t len,
                            ps_prepared **out, ps_prepare_refusal *refusal);
size_t ps_prepared_accepted(const ps_prepared *p);
/* What the log and the journal take of the payload: its accepted messages, and a note of each
 * message an event filter dropped (ps_prepared_log_value() for i below it). */
size_t ps_prepared_logged(const ps_prepared *p);
/* The dropped messages, in batch order: the first PS_PREPARED_DROPS_LISTED of them.
 * Borrowed. */
#define PS_PREPARED_DROPS_LISTED 100
size_t ps_prepared_dropped(const ps_prepared *p, const ps_prepared_drop **list);
/* How many messages were dropped in all. */
size_t ps_prepared_dropped_total(const ps_prepared *p);
/* Messages of the payload dropped for `why` (every one, listed or not). */
uint64_t ps_prepared_dropped_by(const ps_prepared *p, ps_drop why);
/* Heap bytes the payload holds (for queue bounds). */
size_t ps_prepared_bytes(const ps_prepared *p);
void ps_prepared_free(ps_prepared *p); /* NULL is a no-op */
/* A hint for a consumer on another thread than the one that prepared `p`: stage 0 asks the
 * processor for the struct, stage 1 (called later, once stage 0 has had time) for what it
 * points to, so that ps_ingest_prepared() does not wait on memory another core wrote. */
void ps_prepared_prefetch(const ps_prepared *p, int stage);
/* The same for what resolving `p` will look up in the open batch: stage 0 the identifier
 * cache's slots, stage 1 (later) their entries. Call it after ps_prepared_prefetch()'s stages. */
void ps_ingest_prefetch(ps_ingest *in, const ps_prepared *p, int stage);

/* The log value of message or note `i` (< ps_prepared_logged()): what the journal keeps of
 * it. Borrowed. */
ps_slice ps_prepared_log_value(const ps_prepared *p, size_t i);
/* ---- replicated spaces (docs/replication.md): a payload's messages as one stream record,
 * [u32 big-endian length][log value] for each ---- */
#define PS_STREAM_RECORD_MAX (768u << 10) /* under NATS's 1 MiB message limit */
#define PS_STREAM_ID_BUF 420              /* a messageId (400 bytes at most) and a NUL */
/* Appends the stream record of the payload's log values from *i on (as many as fit in
 * PS_STREAM_RECORD_MAX, at least one) to `out`, and advances *i past them; `id` gets the
 * record's duplicate key: the messageId of a lone message, else a digest of the messageIds. */
void ps_prepared_stream_record(const ps_prepared *p, size_t *i, ps_buf *out,
                               char id[PS_STREAM_ID_BUF]);
/* Accepts the messages of such a record into the open batch, in order; *count gets how many
 * it held. A record that does not split into log values is logged and counted unreadable.
 * Errors as ps_ingest_payload(). */
ps_status ps_ingest_stream_messages(ps_ingest *in, ps_slice record, size_t *count);

/* Resolves a prepared payload's accepted messages into the open batch, in order. When the
 * space's rules changed since it was prepared, its messages are read again under the batch's
 * rules, so every event is resolved under one set of rules. Errors as ps_ingest_payload(). */
ps_status ps_ingest_prepared(ps_ingest *in, const ps_prepared *p);

/* Counts a payload that ps_ingest_prepare() refused as unreadable (`why`) into the open
 * batch's statistics, as ps_ingest_payload() counts one. */
void ps_ingest_unreadable(ps_ingest *in, ps_drop why);

/* Derives every table but the log again from the log, in order, in one write transaction:
 * readers keep the old state until it commits, and a crash leaves the old state. Under
 * `settings` (validated whole first: PS_EINVAL with `diags`), which the same transaction
 * stores, else under the space's current settings. On a store whose log lacks messages
 * (migrated from format 1) it refuses with PS_ECONFLICT unless `force`. With `diff`, the
 * difference between the graph before and after (ps/diff.h) is appended there as JSON;
 * `dry_run` then aborts, so nothing changes. `stats` receives the counts of the replay. */
typedef struct ps_rebuild_opts {
    bool force;
    bool dry_run;
    const char *settings; /* NULL: the current settings */
    size_t settings_len;
    ps_buf *diff;      /* NULL: no diff */
    size_t diff_first; /* splits, joins and identifiers listed in the diff */
} ps_rebuild_opts;
ps_status ps_ingest_rebuild(ps_space *sp, const ps_rebuild_opts *o, ps_ingest_stats *stats,
                            ps_diags *diags);

/* ---- the server's journal (ps/journal.h): how far the store has taken it ---- */

/* The journal position the store has applied (0 when it never took a journal). */
ps_status ps_ingest_journal_applied(ps_space *sp, uint64_t *pos);
/* Records in the open batch that the journal is applied up to `pos`: it commits with the
 * batch. */
ps_status ps_ingest_journal_mark(ps_ingest *in, uint64_t pos);
/* The stream sequence the store has applied (ps/repl.h, docs/replication.md). PS_ENOTFOUND
 * when the space was never replicated. */
ps_status ps_ingest_stream_applied(ps_space *sp, uint64_t *seq);
/* Records in the open batch that the stream is applied up to `seq`: it commits with the
 * batch, so that a record's effect happens exactly once across restarts. */
ps_status ps_ingest_stream_mark(ps_ingest *in, uint64_t seq);
/* Which stream the mark counts in (ps_repl_info.id), recorded in the open batch when the store
 * first reads one; PS_ENOTFOUND before. A stream made again under the same name is another. */
ps_status ps_ingest_stream_id(ps_space *sp, uint64_t *id);
ps_status ps_ingest_stream_bind(ps_ingest *in, uint64_t id);

/* Replicated spaces: settings and regulations travel in the stream, between messages. Each
 * goes into the open batch, which must hold no message (commit first), so that the messages
 * before it resolve under the old settings and the ones after under the new; the caller marks
 * the stream position and commits. PS_EINVAL (with `diags`) when the settings are not valid:
 * nothing changed. */
ps_status ps_ingest_settings(ps_ingest *in, const char *json, size_t len, ps_diags *diags);
/* Runs the regulation of a stream record (ps_regulation_encode) as number `seq`. */
ps_status ps_ingest_regulation(ps_ingest *in, uint64_t seq, ps_slice record);

/* Accepts one journal record (a log value, as ps_prepared_log_value() gave it) into the open
 * batch as a new message, through the same path as a rebuild reads the log. A record that
 * does not decode is counted as dropped. Errors as ps_ingest_payload(). */
ps_status ps_ingest_logged(ps_ingest *in, ps_slice value);

/* Counts for everything committed so far. Borrowed: valid until ps_ingest_end(). */
const ps_ingest_stats *ps_ingest_stats_get(const ps_ingest *in);

#endif
