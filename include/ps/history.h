/* SPDX-License-Identifier: MIT */
/* history: the space's accepted-message log, the source of truth every derived table is
 * computed from (docs/storage-format.md). Reads it back as NDJSON that `profilectl ingest`
 * replays, and upgrades format-1 stores, whose kept events become the log. */
#ifndef PS_HISTORY_H
#define PS_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/msglog.h"
#include "ps/space.h"
#include "ps/status.h"

/* Writes logged message `r` (decompressed) as its log line into `out`: the stamps, then the
 * message (ps_event_log_json). PS_ECORRUPT when its stamps cannot be. */
ps_status ps_history_line(const ps_log_rec *r, ps_buf *out);

/* Called with each logged message, in log order, as one line of JSON (no newline). The
 * callback returns false to stop. */
typedef bool (*ps_history_fn)(void *ud, ps_slice line);

/* Visits the messages whose receivedAt is in [since_ms, until_ms), in the order they were
 * accepted, all from one snapshot. */
ps_status ps_history_scan(ps_space *sp, int64_t since_ms, int64_t until_ms, ps_history_fn fn,
                          void *ud);

/* The same for a damaged store (ps_store_log_salvage): every message that can be read, each
 * step in a snapshot of its own; `lost` is told each range of sequence numbers passed over
 * (to UINT64_MAX: to the end), a message whose stamps do not decode included. */
ps_status ps_history_salvage(ps_space *sp, int64_t since_ms, int64_t until_ms, ps_history_fn fn,
                             void *ud, ps_log_lost_fn lost, void *lost_ud);

typedef struct ps_history_info {
    uint64_t messages;
    bool incomplete; /* messages that shaped the state are missing (migrated from format 1, or
                      * trimmed) */
    char why[128];   /* with incomplete: the reason, a clause ("it was migrated ...") */
} ps_history_info;
ps_status ps_history_info_get(ps_space *sp, ps_history_info *out);

/* Upgrades space `name` to the current storage format in one transaction (a crash leaves the
 * old store or the new one). *from_format receives the format found and *messages the
 * number of messages the log received. Idempotent: a current store is left as it is. */
ps_status ps_history_migrate(const char *data_dir, const char *name, int *from_format,
                             uint64_t *messages);

#endif
