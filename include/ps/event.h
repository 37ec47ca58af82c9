/* SPDX-License-Identifier: MIT */
/* event: JSON bytes -> validated Segment messages (limits in docs/security.md).
 * Applies Unify's ingestion drops, stamps receivedAt/source_id/messageId once, and extracts the
 * candidate identifiers in extraction order. No storage, no resolution. */
#ifndef PS_EVENT_H
#define PS_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/rules.h"
#include "ps/status.h"

#define PS_MESSAGE_MAX_BYTES (32 * 1024) /* one message */
#define PS_BATCH_MAX_BYTES (500 * 1024)  /* one {"batch":[...]} payload */
#define PS_BATCH_MAX_ITEMS 2500
/* A batch's items after its envelope (context, integrations, sentAt) is merged into each:
 * bounds what one request can expand to in memory and on disk. */
#define PS_BATCH_EXPANDED_MAX_BYTES (4 * 1024 * 1024)
#define PS_MESSAGE_ID_MAX 100 /* code points */
#define PS_GROUP_ID_MAX 500   /* code points */
#define PS_TRAITS_MAX 300     /* identify/group traits: >= this is dropped */
#define PS_PROPERTIES_MAX 300 /* track/page/screen: > this is dropped */
#define PS_SOURCE_ID_MAX 64
#define PS_TRAIT_KEY_MAX 400

typedef enum ps_msg_type {
    PS_MSG_NONE = 0,
    PS_MSG_IDENTIFY,
    PS_MSG_TRACK,
    PS_MSG_PAGE,
    PS_MSG_SCREEN,
    PS_MSG_GROUP,
    PS_MSG_ALIAS,
    /* not a Segment call: the log's note of a message an event filter dropped at the door
     * (its stamps, the filter's name and the message's type; never the message) */
    PS_MSG_FILTERED,
} ps_msg_type;

/* Why a message was dropped before resolution; each has a stable snake_case name. */
typedef enum ps_drop {
    PS_DROP_NONE = 0,
    PS_DROP_INVALID_JSON,
    PS_DROP_NOT_OBJECT,
    PS_DROP_TOO_LARGE,
    PS_DROP_INVALID_UTF8,
    PS_DROP_INVALID_TYPE,
    PS_DROP_NO_USER_ANON_ID,
    PS_DROP_MISSING_EVENT_NAME,
    PS_DROP_GROUP_ID_EMPTY,
    PS_DROP_GROUP_ID_TOO_LONG,
    PS_DROP_INVALID_MESSAGE_ID,
    PS_DROP_MESSAGE_ID_TOO_LONG,
    PS_DROP_TOO_MANY_TRAITS,
    PS_DROP_TOO_MANY_PROPERTIES,
    PS_DROP_INVALID_FIELD,
    PS_DROP_INVALID_TIMESTAMP,
    PS_DROP_BEFORE_1970,
    PS_DROP_TOO_MANY_ITEMS,
    PS_DROP_DUPLICATE,
    PS_DROP_NOT_BATCH,         /* /v1/batch without a "batch" array */
    PS_DROP_TRAILING_DATA,     /* more than whitespace after the JSON value */
    PS_DROP_CONTROL_CHARACTER, /* a raw 0x00-0x1F byte inside a string */
    PS_DROP_NUL_CHARACTER,     /* \u0000 inside a string */
    PS_DROP_TOO_DEEP,          /* nested deeper than PS_JSON_DEPTH_MAX */
    PS_DROP_SUPPRESSED,        /* its userId is suppressed by a regulation */
    PS_DROP_FILTERED,          /* it matched one of the space's event filters */
    PS_DROP__COUNT
} ps_drop;

const char *ps_drop_name(ps_drop d);
/* One sentence for people: what was wrong with the message. */
const char *ps_drop_message(ps_drop d);
const char *ps_msg_type_name(ps_msg_type t);

/* Why a candidate identifier was not promoted (each is recorded as a violation). */
typedef enum ps_ident_flag {
    PS_IDENT_OK = 0,
    PS_IDENT_BLOCKED,      /* "ID value blocked" */
    PS_IDENT_TOO_LONG,     /* value over PS_VALUE_MAX bytes */
    PS_IDENT_BAD_ENCODING, /* context.externalIds encoding other than "none" */
} ps_ident_flag;

/* One identifier: normalized type and value. Strings live in the event arena. */
typedef struct ps_ident {
    const char *type;
    const char *value;
    uint32_t value_len;
    uint8_t collection; /* ps_collection */
    uint8_t flag;       /* ps_ident_flag */
    const char *from;   /* where the message carried it ("userId", "context.traits.email") */
    uint64_t key_hash;  /* ps_store_ident_hash() of it, filled in off the writer's thread; 0:
                         * not known (the store computes it) */
} ps_ident;

/* One trait write: key and the value as compact JSON text; is_null means "remove". */
typedef struct ps_trait {
    const char *key;
    const char *json;
    uint32_t json_len;
    bool is_null;
} ps_trait;

/* Where a message's "context" and "properties" values lie in its text (offset and length;
 * length 0: absent), so that the Profile API can list a stored event without reading its
 * body through. */
typedef struct ps_body_spans {
    uint32_t context_at, context_len, properties_at, properties_len;
} ps_body_spans;
/* Finds them in `body` (validated JSON); false when it is not an object. */
bool ps_event_body_spans(ps_slice body, ps_body_spans *out);

/* A validated message. Every pointer is into the arena given to ps_event_parse() or into
 * the input bytes; valid until that arena is cleared. */
typedef struct ps_event {
    ps_msg_type type;
    const char *message_id;
    const char *source_id;
    int64_t timestamp_ms;
    int64_t received_ms;
    const char *name;     /* track event, or page/screen name; NULL if none */
    const char *group_id; /* group calls */
    ps_ident *ids;        /* candidates in extraction order, users then accounts */
    size_t id_count;
    ps_trait *traits; /* identify: user traits; group: account traits */
    size_t trait_count;
    size_t traits_skipped;     /* keys over PS_TRAIT_KEY_MAX bytes */
    ps_slice body;             /* the message as JSON, kept for track/page/screen */
    ps_slice message;          /* the message as JSON, every type (what the log keeps) */
    ps_body_spans spans;       /* track, page and screen: in `message` */
    const char *filter;        /* PS_MSG_FILTERED: the name of the filter that dropped it */
    ps_msg_type filtered_type; /* PS_MSG_FILTERED: the dropped message's own type */
} ps_event;

typedef struct ps_accept_opts {
    const ps_rules *rules;
    int64_t now_ms;          /* the receivedAt stamp */
    bool keep_received_at;   /* replays keep a logged receivedAt; the HTTP API doesn't */
    const char *source_id;   /* stamped when the message has none */
    ps_msg_type forced_type; /* HTTP /v1/<type>; PS_MSG_NONE reads "type" */
    uint64_t sequence;       /* distinguishes generated messageIds within one stamp */
    bool require_batch;      /* the payload must be {"batch":[...]} (HTTP /v1/batch) */
    const struct ps_filter_set *filters; /* the space's event filters (NULL: none): a message
                                          * matching one is dropped as PS_DROP_FILTERED */
    uint32_t *filter_hits; /* with filters: the drops counted per filter, by its index */
} ps_accept_opts;

/* Called once per message: `ev` is NULL when it was dropped for `why`, except that a message
 * an event filter dropped (PS_DROP_FILTERED) comes with its note for the log: an event of type
 * PS_MSG_FILTERED (whose ids are the message's, for the caller's suppression check only). `index`
 * is the item number inside a batch (0 for a single message). The callback may stop the parse by
 * returning non-PS_OK; that status is returned by ps_event_parse(). */
typedef ps_status (*ps_event_fn)(void *ud, const ps_event *ev, ps_drop why, size_t index);

/* Parses one payload: a single message or {"batch":[...], "context", "integrations"}
 * whose envelope context/integrations are merged into each item. Size bounds are checked
 * before parsing. Returns PS_OK when the payload was readable (even if every message was
 * dropped), or PS_EINVAL/PS_ETOOBIG when the whole payload is unreadable; then `why` tells
 * the reason and no callback ran. */
ps_status ps_event_parse(const uint8_t *json, size_t len, const ps_accept_opts *opts,
                         ps_arena *arena, ps_event_fn fn, void *ud, ps_drop *why);

/* Appends the message as the accepted-message log keeps it to `out`: one JSON object whose
 * first members are "type", "messageId", "receivedAt" and "source_id" (the stamps given),
 * followed by every member of `message` (a validated JSON object) except those four and
 * "writeKey", in their order. Parsed again with keep_received_at, it gives the same event. */
void ps_event_log_json(ps_msg_type type, ps_slice message_id, int64_t received_ms,
                       ps_slice source_id, ps_slice message, ps_buf *out);

/* Appends `,"key":<compact JSON>` to `out` for each of the `count` keys, reading `body`
 * once; an absent key (or a body that is not an object) gives `null`. */
void ps_event_body_members(ps_slice body, const char *const *keys, size_t count, ps_buf *out);

/* Reads the top-level "writeKey" string of a Tracking API body into `out` (capacity `cap`)
 * without parsing the whole body. False when there is none, it is not a string, or it does
 * not fit. */
bool ps_event_write_key(const uint8_t *json, size_t len, char *out, size_t cap);

/* Parses a Delete Profile Identifier request body:
 * {"delete_external_ids":[{"id":..., "type":...}]}. Exactly one entry with string `id` and
 * `type` is accepted; `type` is copied into `type` (capacity PS_TYPE_MAX + 1) and `id` into
 * `value` (capacity PS_VALUE_MAX + 1), both NUL-terminated. PS_EINVAL with `why` naming the
 * problem; PS_ETOOBIG when more than one entry is listed. */
ps_status ps_event_parse_delete_ids(const char *json, size_t len, char *type, char *value,
                                    size_t *value_len, const char **why);
/* A regulation request (Segment's Public API shape): {"regulationType": T, "subjectType":
 * "USER_ID", "subjectIds": [1..PS_REG_SUBJECTS_MAX strings]}. */
#define PS_REG_SUBJECTS_MAX 5000
typedef enum ps_reg_type {
    PS_REG_DELETE = 0,           /* DELETE_INTERNAL (DELETE_ONLY is the same here) */
    PS_REG_SUPPRESS_WITH_DELETE, /* SUPPRESS_WITH_DELETE_INTERNAL (and SUPPRESS_WITH_DELETE) */
    PS_REG_SUPPRESS,             /* SUPPRESS_ONLY */
    PS_REG_UNSUPPRESS,           /* UNSUPPRESS */
    PS_REG__COUNT
} ps_reg_type;
const char *ps_reg_type_name(ps_reg_type t); /* the canonical name */
bool ps_reg_type_parse(const char *s, ps_reg_type *out);

typedef struct ps_reg_request {
    ps_reg_type type;
    char **subjects; /* trimmed userIds, each 1..PS_VALUE_MAX bytes, no NUL */
    size_t count;
} ps_reg_request;
/* Parses a regulation body. PS_EINVAL with `why` naming the problem. Free with
 * ps_reg_request_clear(). */
ps_status ps_event_parse_regulation(const char *json, size_t len, ps_reg_request *out,
                                    const char **why);
void ps_reg_request_clear(ps_reg_request *r);

#endif
