/* SPDX-License-Identifier: MIT */
/* unmerge: undo a merge (docs/privacy.md, Unmerge): a merged-away profile becomes canonical
 * again with what belonged to it (ps_graph_unmerge), in one write transaction. */
#ifndef PS_UNMERGE_H
#define PS_UNMERGE_H

#include <stdbool.h>

#include "ps/mem.h"
#include "ps/space.h"
#include "ps/status.h"

/* Unmerges the profile of `segment_id`, or with `dry_run` only plans it; appends what moves
 * (or would move) to `out` as one JSON object. PS_ENOTFOUND: no such profile; PS_EINVAL: it
 * is canonical, nothing to undo (`why` says so). */
ps_status ps_space_unmerge(ps_space *sp, const char *segment_id, bool dry_run, bool keep_apart,
                           ps_buf *out, const char **why);

#endif
