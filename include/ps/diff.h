/* SPDX-License-Identifier: MIT */
/* diff: what a rebuild changes in the identity graph (profilectl rebuild --dry-run). A
 * snapshot records, for every identifier, the canonical profile that holds it, and the
 * violations in the audit log; two snapshots compare as partitions of the identifiers, so a
 * profile that only got a new segment_id is not a change. Memory: about 100 bytes an
 * identifier per snapshot. */
#ifndef PS_DIFF_H
#define PS_DIFF_H

#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/status.h"
#include "ps/store.h"

typedef struct ps_snapshot ps_snapshot;

/* Records the graph as `t` sees it. */
ps_status ps_snapshot_take(ps_txn *t, ps_snapshot **out);
void ps_snapshot_free(ps_snapshot *s);

typedef struct ps_diff_counts {
    uint64_t profiles_before, profiles_after;
    uint64_t splits, joins;                       /* profiles that split or join */
    uint64_t identifiers_moved;                   /* held, before and after, with other ones */
    uint64_t identifiers_added, identifiers_gone; /* mapped only after, only before */
} ps_diff_counts;

/* Compares two snapshots and appends the difference as one JSON object to `out`: the counts,
 * the first `first_n` splits and joins (segment_ids and identifiers involved), the
 * identifiers added and gone, and violations by reason before and after. */
void ps_snapshot_diff(const ps_snapshot *before, const ps_snapshot *after, size_t first_n,
                      ps_buf *out, ps_diff_counts *counts);

#endif
