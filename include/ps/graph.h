/* SPDX-License-Identifier: MIT */
/* graph: the identity graph. Resolves an event's identifiers to a profile by flat matching
 * (docs/identity-settings.md, How one message is resolved): create, append or merge,
 * demoting the lowest-priority identifier while a limit would be exceeded. Profiles form a
 * persistent union-find kept flat: a merged-away profile's parent is always the canonical profile,
 * so find() is one read. Writes audit rows for every create, merge, mapping and violation. Runs
 * inside the caller's write transaction. */
#ifndef PS_GRAPH_H
#define PS_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/event.h"
#include "ps/rules.h"
#include "ps/status.h"
#include "ps/store.h"

/* Profiles Insights violations and errors, recorded in the audit log. */
typedef enum ps_violation {
    PS_VIOL_NONE = 0,
    PS_VIOL_BLOCKED,        /* ID value blocked */
    PS_VIOL_VALUE_LIMIT,    /* Identifier value limit exceeded (window: ever) */
    PS_VIOL_TIME_LIMIT,     /* Identifier value time limit exceeded (sliding window) */
    PS_VIOL_MERGE_LIMIT,    /* Profile merge limit exceeded */
    PS_VIOL_MAPPING_LIMIT,  /* Identifier mapping limit exceeded */
    PS_VIOL_NO_IDENTIFIERS, /* error: No matching identifiers on event */
    PS_VIOL_VALUE_TOO_LONG, /* identifier value over PS_VALUE_MAX bytes */
    PS_VIOL_BAD_ENCODING,   /* context.externalIds encoding other than "none" */
    PS_VIOL_KEPT_APART,     /* an operator unmerged the two profiles with --keep-apart */
    PS_VIOL_FILTERED,       /* an event filter dropped the message at the door */
    PS_VIOL_SHARED,         /* the value was seen with two people (block_shared_values) */
    PS_VIOL__COUNT
} ps_violation;

/* Stable snake_case name of a violation ("value_limit_exceeded", ...). */
const char *ps_violation_name(ps_violation v);

typedef struct ps_resolve_in {
    ps_collection collection;
    const ps_ident *ids; /* this collection's candidates, in extraction order */
    size_t count;
    uint8_t event_type; /* ps_msg_type */
    const char *message_id;
    const char *source_id;
    int64_t timestamp_ms; /* limit windows are measured on this */
    int64_t received_ms;  /* created_at / updated_at stamps */
    uint64_t message_seq; /* the message's place in the log (0: none): new segment_ids */
} ps_resolve_in;

typedef struct ps_resolve_out {
    uint64_t profile; /* canonical profile the event resolved to; 0 when unresolved */
    bool created;
    uint32_t merges;     /* profiles merged into `profile` by this event */
    uint32_t mappings;   /* identifiers newly mapped */
    uint32_t violations; /* violations recorded */
    bool *promoted;      /* caller's array of `count`: ids now mapped to `profile` */
} ps_resolve_out;

/* Resolves one event for one collection and writes the graph changes. */
ps_status ps_graph_resolve(ps_txn *t, const ps_rules *rules, const ps_resolve_in *in,
                           ps_resolve_out *out);

/* The canonical profile of `seq` (itself when not merged). PS_ECORRUPT on a broken chain. */
ps_status ps_graph_find(ps_txn *t, uint64_t seq, uint64_t *canonical);

/* The canonical profile holding identifier (collection, type, value). */
ps_status ps_graph_lookup(ps_txn *t, uint8_t coll, const char *type, const char *value,
                          size_t value_len, uint64_t *canonical);

/* Deterministic segment_id: "use_"/"acc_" + 27 base62 of a keyed hash of the space
 * name and the profile sequence number. `out` holds PS_SEGMENT_ID_LEN + 1 bytes. Spaces made
 * since meta "segment_ids" exists (docs/storage-format.md) hash the sequence number of the
 * message that created the profile instead (`by_message`), so that a profile whose creating
 * message is unchanged keeps its segment_id across a rebuild under other settings. */
void ps_graph_segment_id(const char *space, uint8_t coll, uint64_t seq, char *out);
void ps_graph_segment_id_of(const char *space, uint8_t coll, uint64_t seq, bool by_message,
                            char *out);
#define PS_SEGMENT_IDS_KEY "segment_ids" /* meta: "message" for message-based segment_ids */

/* Removes identifier (type, value) from canonical profile `canonical`: its
 * ident and pmap rows go, the mapping count drops and a REMOVED audit row is written; the
 * profile is not split and its history stays. `in` supplies the audit row's message and
 * source ids and times. PS_ENOTFOUND when the profile does not hold the identifier. */
ps_status ps_graph_unmap(ps_txn *t, uint64_t canonical, const char *type, const char *value,
                         size_t value_len, const ps_resolve_in *in);

/* Records a violation row in the audit log. */
ps_status ps_graph_violation(ps_txn *t, const ps_resolve_in *in, ps_violation v, const ps_ident *id,
                             uint64_t profile);

/* ---- unmerge (docs/privacy.md, Unmerge) ---- */

typedef struct ps_unmerge_plan {
    uint64_t profile;   /* the merged-away profile that becomes canonical again */
    uint64_t canonical; /* the profile it leaves */
    uint64_t *group;    /* it and the profiles merged in only through it */
    size_t group_count;
    char **identifiers; /* "type:value" of the identifiers that move with it */
    size_t identifier_count;
} ps_unmerge_plan;

/* Plans (and with `apply`, carries out) making merged-away profile `seq` canonical again with
 * what belonged to it: the identifiers first observed on it or on a profile merged in only
 * through it, and those profiles; traits, events and links stay with the profiles they were
 * written to, so they follow. Unmerge audit rows record it. `keep_apart`: a later event that
 * would merge the two again is resolved as over a limit (PS_VIOL_KEPT_APART). PS_EINVAL when
 * `seq` is canonical (nothing to undo). Free the plan with ps_unmerge_plan_clear(). */
ps_status ps_graph_unmerge(ps_txn *t, uint64_t seq, bool apply, bool keep_apart,
                           ps_unmerge_plan *plan);
void ps_unmerge_plan_clear(ps_unmerge_plan *plan);

#endif
