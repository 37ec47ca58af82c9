/* SPDX-License-Identifier: MIT */
/* regulation: privacy regulations of a space (docs/privacy.md), shaped like Segment's Public
 * API: suppress or unsuppress userIds, and (next) delete what the space holds of them. Each
 * regulation is kept as its JSON answer in the space's meta table, under a sequence number.
 * A suppressed userId is refused at every door (ps_ingest_prepare: the Tracking API and
 * `profilectl ingest`); suppressions live in meta as SHA-256 digests of the userId, so they
 * survive restarts and rebuilds. */
#ifndef PS_REGULATION_H
#define PS_REGULATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/event.h"
#include "ps/mem.h"
#include "ps/space.h"
#include "ps/status.h"

#define PS_REG_ID_BUF 24 /* "reg_" + 16 hex digits + NUL */

/* Records `rq` as INITIALIZED, waiting to run; *id gets its id. Regulations run in the order
 * they were created, each in one write transaction, when ps_regulation_run_pending() is
 * called: in the server by the space's apply thread, after every event acknowledged before
 * the regulation (ps_writer_regulations), so that it applies at one point of the ordered
 * stream. */
ps_status ps_regulation_create(ps_space *sp, const ps_reg_request *rq, int64_t now_ms,
                               char id[PS_REG_ID_BUF], uint64_t *seq);
/* Whether regulations wait to run. */
bool ps_regulation_any_pending(ps_space *sp);
/* Runs the waiting regulations up to sequence `up_to` (UINT64_MAX: all), oldest first, and
 * marks each FINISHED; *ran counts them. A later one waits for its own turn. */
ps_status ps_regulation_run_pending(ps_space *sp, int64_t now_ms, uint64_t up_to, size_t *ran);
/* Both at once, for a process without a writer (profilectl): the regulation has run when this
 * returns PS_OK. */
ps_status ps_regulation_apply(ps_space *sp, const ps_reg_request *rq, int64_t now_ms,
                              char id[PS_REG_ID_BUF]);

/* ---- replicated spaces (docs/replication.md): a regulation travels in the stream ---- */
/* The stream record of a regulation created at `created_ms`. */
void ps_regulation_encode(const ps_reg_request *rq, int64_t created_ms, ps_buf *out);
/* Runs the regulation of stream `record` in `t`, at the time it was created, and records it
 * FINISHED as number `seq` (the stream sequence: every node gives it the same id,
 * reg_<seq in hex>). PS_EINVAL when the record does not decode. */
ps_status ps_regulation_run_at(ps_txn *t, const char *space, uint64_t seq, ps_slice record);

/* Appends the JSON object of regulation `id` to `out`. PS_ENOTFOUND when there is none. */
ps_status ps_regulation_get(ps_space *sp, const char *id, ps_buf *out);

/* Appends the JSON objects (comma-separated) of at most `limit` regulations, newest first,
 * starting below sequence `before` (0: from the newest). *next gets the sequence to continue
 * below, 0 when there are no more. */
ps_status ps_regulation_list(ps_space *sp, uint64_t before, size_t limit, ps_buf *out,
                             uint64_t *next, size_t *count);

/* Whether any userId is suppressed, and whether this one is (in `t`'s snapshot). */
bool ps_regulation_any_suppressed(ps_txn *t);
bool ps_regulation_suppressed(ps_txn *t, const char *user_id, size_t len);

#endif
