/* SPDX-License-Identifier: MIT */
/* msglog: the accepted-message log, the source of truth every other table is derived from
 * (docs/storage-format.md), messageId dedup, and the upgrade of format-1 stores. */
#ifndef PS_MSGLOG_H
#define PS_MSGLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/status.h"
#include "ps/store.h"

/* ---- log: message seq -> the accepted message; the source of truth, append-only ---- */
typedef struct ps_log_rec {
    uint64_t seq;
    uint8_t type; /* ps_msg_type */
    int64_t received_ms, timestamp_ms;
    ps_slice message_id, source_id;
    ps_slice json; /* the message as it arrived (a batch item with its envelope merged);
                    * ps_event_log_json() adds the stamps to it */
} ps_log_rec;
/* Appends `r` (seq above every logged one). The JSON is stored compressed. */
ps_status ps_store_log_append(ps_txn *t, const ps_log_rec *r);
/* The same in two steps, so that the costly one runs off the writer thread: appends the log
 * value of `r` (its seq is not part of it) to `out` (thread-safe, no transaction), then
 * ps_store_log_put() stores such a value as message `seq`. A `portable` value is compressed
 * without the log's dictionary, so that any store decodes it (replication). */
void ps_store_log_encode(ps_store *s, const ps_log_rec *r, bool portable, ps_buf *out);
ps_status ps_store_log_put(ps_txn *t, uint64_t seq, ps_slice encoded);
/* Messages the log holds before its compression dictionary is trained (at a commit). */
#define PS_LOG_DICT_AFTER 2000u
/* True once new messages are compressed with the log's dictionary (loaded on open, or
 * installed by the commit that trained it). */
bool ps_store_log_dict_ready(ps_store *s);
/* Removes message `seq` from the log (erasure; absent is fine). */
ps_status ps_store_log_del(ps_txn *t, uint64_t seq);
/* The messageId a log value carries (empty when the value is too short to hold one). */
ps_slice ps_store_log_value_id(ps_slice value);
/* Decodes a value ps_store_log_encode() made (seq 0). out->json is valid until the next
 * log read in `t`. */
ps_status ps_store_log_decode(ps_txn *t, ps_slice value, ps_log_rec *out);
/* Reads message `seq`. out->json is valid until the next log read in `t`. */
ps_status ps_store_log_get(ps_txn *t, uint64_t seq, ps_log_rec *out);
/* Reads only the stamps of message `seq` (no decompression); out->json stays empty. */
ps_status ps_store_log_head(ps_txn *t, uint64_t seq, ps_log_rec *out);
typedef bool (*ps_log_fn)(void *ud, const ps_log_rec *r);
/* Visits messages from `from_seq` in order, decompressed when `with_json`. */
ps_status ps_store_log_scan(ps_txn *t, uint64_t from_seq, bool with_json, ps_log_fn fn, void *ud);
/* For a damaged store: visits every message of the log that can be read, in order, and passes
 * over what cannot. Each step runs guarded (ps_store_guarded) in a read transaction of its
 * own; a walk a damaged page stops goes on at the first sequence number after the page that a
 * lookup can read (probes 16 apart at most up to the message counter, doubling past it, then
 * halving back). `lost` is told each range passed over, both ends included (to_seq UINT64_MAX:
 * to the end); numbers in it may never have been used (trimmed or erased messages, the end of
 * the log). fn returning false stops, PS_OK. A read transaction that cannot begin is an
 * error, not damage. */
typedef void (*ps_log_lost_fn)(void *ud, uint64_t from_seq, uint64_t to_seq);
ps_status ps_store_log_salvage(ps_store *s, ps_log_fn fn, void *ud, ps_log_lost_fn lost,
                               void *lost_ud);
/* Messages logged, and whether the log lacks messages that shaped the state (a store migrated
 * from format 1, which kept only recent track/page/screen events). */
ps_status ps_store_log_info(ps_txn *t, uint64_t *count, bool *incomplete);
/* Meta key present when the log lacks messages that shaped the state; its value says why. */
#define PS_LOG_INCOMPLETE_KEY "log/incomplete"
/* Log trimming (the space's log_retention_days): removes, in log order from where the last
 * call stopped (meta "log/trimmed"), at most `max` messages received before `cutoff_ms`, with
 * the event rows made from them, and marks the log incomplete (a rebuild then needs --force).
 * Stops at the first message received at or after the cutoff. */
ps_status ps_store_log_trim(ps_txn *t, int64_t cutoff_ms, size_t max, size_t *trimmed);

/* ---- dedup: messageId -> receivedAt, with a time index for expiry ---- */
/* Claims `message_id` at `received_ms`: a duplicate when a row holds a time less than
 * `window_ms` away (nothing is written), else the row is written with this time. */
ps_status ps_store_dedup_claim(ps_txn *t, const char *message_id, int64_t received_ms,
                               int64_t window_ms, bool *duplicate);
/* Forgets ids received before `cutoff_ms`, at most `max`. */
ps_status ps_store_dedup_expire(ps_txn *t, int64_t cutoff_ms, size_t max, size_t *expired);

/* ---- migration ---- */
/* Upgrades a store opened with any_format to the current format in one write transaction
 * (a crash leaves the old store or the new one): format 1's kept events become the log, which
 * is marked incomplete. *messages receives the number logged. PS_OK and 0 when the store is
 * current already. */
ps_status ps_store_migrate(ps_store *s, uint64_t *messages);

#endif
