/* SPDX-License-Identifier: MIT */
/* profile: the read model. Finds the canonical profile for an identifier or segment_id and
 * reads its identifiers, traits (later write wins across merged profiles), events (newest
 * first), links and merge history, all from one read transaction. Behind both the Profile
 * API and `profilectl inspect`/`export`. Reads fan out over the profile's members, which the
 * merge limit bounds. */
#ifndef PS_PROFILE_H
#define PS_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/graphdb.h"
#include "ps/mem.h"
#include "ps/records.h"
#include "ps/rules.h"
#include "ps/status.h"
#include "ps/store.h"

/* Finds the canonical profile named by `ident`: "type:value" (type lowercased, value trimmed
 * and normalized as at ingest) or a bare segment_id (merged-away ids resolve to their
 * canonical profile). `collection` restricts the lookup (-1: the configured type's collection;
 * for a type the settings do not name, the collection it was first seen in, then the other
 * one; for a segment_id, its prefix). PS_EINVAL for a malformed ident, PS_ENOTFOUND when
 * nothing matches. */
ps_status ps_profile_find(ps_txn *t, const ps_rules *r, int collection, const char *ident,
                          size_t len, ps_profile *out);

/* A profile record by sequence number, canonical or merged away. */
ps_status ps_profile_get(ps_txn *t, uint64_t seq, ps_profile *out);
/* Visits every profile record (merged-away ones too) from sequence `from` up, or (desc) below
 * `before` down; the callback returns false to stop. */
ps_status ps_profile_scan(ps_txn *t, uint64_t from, ps_profile_fn fn, void *ud);
ps_status ps_profile_scan_desc(ps_txn *t, uint64_t before, ps_profile_fn fn, void *ud);

/* The profiles `canonical` stands for, itself included, ascending. Owned; free(). */
ps_status ps_profile_members(ps_txn *t, uint64_t canonical, uint64_t **out, size_t *count);

/* One mapped identifier with its mapping details. Borrowed for the callback's duration. */
typedef struct ps_extid {
    const char *type;
    const char *value;
    size_t value_len;
    uint8_t collection;
    const ps_mapping *mapping;
} ps_extid;
typedef bool (*ps_extid_fn)(void *ud, const ps_extid *x);
/* Visits the profile's identifiers ordered by (type, value). */
ps_status ps_profile_external_ids(ps_txn *t, const ps_profile *canonical, ps_extid_fn fn, void *ud);
/* The same from identifier `from` on (inclusive), given as type, a 0 byte, then value (a
 * page's start). */
ps_status ps_profile_external_ids_from(ps_txn *t, const ps_profile *canonical, const char *from,
                                       size_t from_len, ps_extid_fn fn, void *ud);

typedef struct ps_trait_item {
    char *key;
    size_t key_len;
    char *json;
    size_t json_len;
    char source_id[68];
    int64_t updated_ms;
    uint64_t write_seq;
} ps_trait_item;

typedef struct ps_trait_list {
    ps_trait_item *items; /* live traits, byte-wise ascending by key */
    size_t count;
} ps_trait_list;

/* One live trait. Borrowed for the callback's duration. */
typedef struct ps_trait_view {
    const char *key;
    size_t key_len;
    ps_slice json, source_id;
    int64_t updated_ms;
} ps_trait_view;
typedef bool (*ps_trait_view_fn)(void *ud, const ps_trait_view *tr);
/* Visits a profile's live traits (the newest write per key across its members, removals left
 * out) in byte order of key, from key `from` (inclusive; NULL: the first). One member's are
 * read straight from the store; several members' are merged first. */
ps_status ps_profile_traits_each(ps_txn *t, const uint64_t *members, size_t n, const char *from,
                                 size_t from_len, ps_trait_view_fn fn, void *ud);

/* Collects the live traits of a profile given its members. Owned; ps_trait_list_clear(). */
ps_status ps_profile_traits(ps_txn *t, const uint64_t *members, size_t n, ps_trait_list *out);
void ps_trait_list_clear(ps_trait_list *l);

typedef struct ps_event_ref {
    uint64_t seq;
    int64_t timestamp_ms;
    bool has_rec;     /* `rec` holds the event (from its index row, or its whole event row when
                       * names were filtered); valid in the transaction */
    ps_event_rec rec; /* else ps_profile_events_json() reads the event row */
} ps_event_ref;

/* Which stored events to list. Events sort by (timestamp, seq). */
typedef struct ps_event_query {
    int64_t min_ts; /* inclusive lower bound on timestamp (INT64_MIN: none) */
    int64_t max_ts; /* exclusive upper bound (INT64_MAX: none) */
    bool ascending; /* oldest first; default newest first */
    bool has_after; /* resume strictly after (after_ts, after_seq) in the sort order */
    int64_t after_ts;
    uint64_t after_seq;
    const ps_slice *include; /* event names to keep (none: all) */
    size_t include_count;
    const ps_slice *exclude; /* event names to drop */
    size_t exclude_count;
    size_t limit; /* capacity of `out` */
} ps_event_query;

/* The members' events matching `q`, in its order, at most q->limit of them into `out`.
 * *count receives how many. */
ps_status ps_profile_events(ps_txn *t, const uint64_t *members, size_t n, const ps_event_query *q,
                            ps_event_ref *out, size_t *count);

/* A listed event: its type, time and name in `out`, and its messageId (from the log). */
ps_status ps_profile_event_get(ps_txn *t, const ps_event_ref *ref, ps_event_rec *out,
                               ps_slice *message_id);

/* Appends listed events of the canonical profile `p`, separated by commas, as the Profile API
 * shows each: external_ids, type, event, message_id, source_id, timestamp, received_at,
 * context, properties, and related {collection: segment_id of `p`}. */
ps_status ps_profile_events_json(ps_txn *t, const ps_profile *p, const ps_event_ref *refs,
                                 size_t count, ps_buf *out);

/* Which mapping details ps_profile_extid_json() adds to type, id, collection, encoding. */
enum {
    PS_EXTID_SOURCE = 1, /* source_id, created_at */
    PS_EXTID_FIRST = 2   /* first_message_id, first_seen */
};
/* Appends one identifier as a JSON object. */
void ps_profile_extid_json(ps_buf *b, const ps_extid *x, unsigned fields);
/* Appends the profile's identifiers as JSON objects separated by commas (no brackets). */
ps_status ps_profile_external_ids_json(ps_txn *t, const ps_profile *canonical, unsigned fields,
                                       ps_buf *b);

/* Appends the profile metadata object that GET {ident}/metadata returns. */
void ps_profile_metadata_json(ps_buf *b, const ps_profile *p);

/* Canonical profiles linked to the members (user <-> account), ascending, unique. Owned. */
ps_status ps_profile_links(ps_txn *t, const uint64_t *members, size_t n, uint64_t **out,
                           size_t *count);

typedef struct ps_render_opts {
    size_t event_limit; /* 0: no "events" */
    bool metadata;
    bool links;
    bool merges;
    bool messages; /* "message_ids": every logged message resolved into it, in log order */
} ps_render_opts;

/* The log sequence numbers of the messages resolved into the members (events and identify,
 * group and alias calls), ascending. Owned; free(). */
ps_status ps_profile_message_seqs(ps_txn *t, const uint64_t *members, size_t n, uint64_t **out,
                                  size_t *count);

/* Appends the profiles merged into canonical `p` (its `members` but itself) as JSON objects
 * separated by commas: segment_id, merged_into (the profile it merged into, which may have
 * merged on since), merged_at and message_id (the message that merged it). */
ps_status ps_profile_merges_json(ps_txn *t, const ps_profile *p, const uint64_t *members, size_t n,
                                 ps_buf *b);

/* Appends the profile document as one JSON object: segment_id, collection, merged_ids,
 * external_ids, traits, and as asked metadata, events, links, message_ids, merges. */
ps_status ps_profile_render(ps_txn *t, const ps_profile *canonical, const ps_render_opts *o,
                            ps_buf *out);

#endif
