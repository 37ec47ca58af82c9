/* SPDX-License-Identifier: MIT */
/* explain: the decision path of one logged message, read back from what resolution recorded
 * (docs/identity-settings.md, Explaining a decision). The message comes from the log and its
 * identifiers are extracted again under the space's current settings; what resolution did
 * with them comes from the audit rows the message wrote (created, merged, mapped, refused,
 * dropped over a limit, marked shared), from the event row or the profile's message index
 * (where it went), and from the profiles today. Nothing is resolved again. */
#ifndef PS_EXPLAIN_H
#define PS_EXPLAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/rules.h"
#include "ps/status.h"
#include "ps/store.h"

/* One identifier of the message and what became of it. `status` is one of: matched (it
 * belonged to the outcome profile), new (mapped to `segment_id` by this message), merged (it
 * tied the event to `segment_id`, which merged into the outcome), dropped (demoted over a
 * limit; `segment_id` held it, empty for a new value), shared (it matches nothing since it was
 * seen with two people; `segment_id` holds it), kept_apart (it tied the event to a profile a
 * merge limit or an operator kept apart), not_mapped (the profile holds mapping_limit
 * identifiers), blocked, too_long, encoding_unsupported, unused (the message resolved to no
 * profile). `detail` is a sentence for people (empty when there is nothing to add). */
typedef struct ps_explain_id {
    uint8_t collection;
    const char *type, *value, *from, *status, *detail;
    size_t value_len;
    char segment_id[PS_SEGMENT_ID_LEN + 1];
} ps_explain_id;

/* One audit row the message wrote. `kind`: create, merge, mapping, traits, violation; a
 * violation has `reason` (its change-feed name) and, over a limit, `limit_type` with the
 * current `limit` of that type ("1 weekly"). Empty segment ids: none, or erased since. */
typedef struct ps_explain_row {
    uint64_t seq;
    uint8_t collection;
    const char *kind, *reason, *type, *value, *limit_type;
    size_t value_len;
    char limit[32];
    char segment_id[PS_SEGMENT_ID_LEN + 1], canonical[PS_SEGMENT_ID_LEN + 1];
} ps_explain_row;

/* What the message did in one collection: create, append, merge or unresolved, the profile
 * it went to, the profiles it merged into that one, and the canonical profile of that today. */
typedef struct ps_explain_outcome {
    bool present;
    const char *result;
    char segment_id[PS_SEGMENT_ID_LEN + 1], canonical_now[PS_SEGMENT_ID_LEN + 1];
    char (*merged)[PS_SEGMENT_ID_LEN + 1];
    size_t merged_count;
} ps_explain_outcome;

typedef struct ps_explain_msg {
    uint64_t seq;
    const char *type, *message_id, *source_id;
    const char *filtered_by; /* NULL, or the event filter that dropped it at the door */
    int64_t timestamp_ms, received_ms;
    ps_explain_id *ids;
    size_t id_count;
    ps_explain_row *rows;
    size_t row_count;
    ps_explain_outcome outcome[2]; /* by ps_collection */
} ps_explain_msg;

typedef struct ps_explanation {
    const char *message_id;
    ps_explain_msg *msgs; /* every logged message with the messageId, oldest first */
    size_t count;
    ps_arena arena; /* holds everything above */
} ps_explanation;

/* Explains every logged message that carries `message_id` (usually one; a messageId sent again
 * after the dedup window is logged again). PS_ENOTFOUND when the log holds none. Clear `out`
 * with ps_explanation_clear() whatever the result. */
ps_status ps_explain(ps_txn *t, const ps_rules *rules, const char *message_id, ps_explanation *out);
void ps_explanation_clear(ps_explanation *e);

/* Appends the explanation as one JSON object (docs/profilectl.md, explain). */
void ps_explain_json(const ps_explanation *e, ps_buf *out);

#endif
