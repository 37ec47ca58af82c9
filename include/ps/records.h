/* SPDX-License-Identifier: MIT */
/* records: traits, the events derived from the log with their per-profile index, account
 * links and audit rows. Borrowed strings follow the rules of ps/store.h. */
#ifndef PS_RECORDS_H
#define PS_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/event.h"
#include "ps/mem.h"
#include "ps/status.h"
#include "ps/store.h"

/* ---- trait: (profile, key) -> record; written under the canonical profile of the time ---- */
typedef struct ps_trait_rec {
    uint64_t write_seq; /* message seq of the write: later wins */
    int64_t updated_ms;
    bool deleted; /* a tombstone hides older values in merged profiles */
    ps_slice source_id;
    ps_slice json; /* the value as JSON text */
} ps_trait_rec;
ps_status ps_store_trait_get(ps_txn *t, uint64_t profile, const char *key, size_t key_len,
                             ps_trait_rec *out);
ps_status ps_store_trait_put(ps_txn *t, uint64_t profile, const char *key, size_t key_len,
                             const ps_trait_rec *rec);
typedef bool (*ps_trait_fn)(void *ud, const char *key, size_t key_len, const ps_trait_rec *r);
/* Visits the profile's traits by byte-wise key, starting at `from` (inclusive; NULL = all). */
ps_status ps_store_trait_scan(ps_txn *t, uint64_t profile, const char *from, size_t from_len,
                              ps_trait_fn fn, void *ud);

/* ---- event: message seq -> what resolution made of a track/page/screen message ---- */
typedef struct ps_event_rec {
    uint64_t seq;
    uint8_t type;     /* ps_msg_type */
    uint64_t profile; /* profile resolved to at the time */
    int64_t timestamp_ms;
    ps_slice name;
    ps_slice ids;        /* promoted identifiers: "type\0value\0" repeated */
    bool has_spans;      /* records written before the spans existed have none */
    ps_body_spans spans; /* of the logged message */
    bool brief;          /* an event row that holds only type, profile and timestamp: the rest is in
                          * its pevent row's copy (ps_store_pevent_scan_*) */
    /* format 1 only (ps_store_migrate()): the message itself was kept with the event */
    int64_t received_ms;
    ps_slice message_id, source_id, body;
} ps_event_rec;
/* Writes the event row, brief, and its pevent row (profile, timestamp, seq), which holds the
 * whole event so that a walk of one profile's events reads no event row. */
ps_status ps_store_event_put(ps_txn *t, const ps_event_rec *e);
ps_status ps_store_event_get(ps_txn *t, uint64_t seq, ps_event_rec *out);
/* pevent: (profile, timestamp, seq) index, newest first on reads. `e` is the row's copy of the
 * event (its slices valid while the transaction reads), NULL for a row written before the
 * copies (read the event row). */
typedef bool (*ps_pevent_fn)(void *ud, uint64_t profile, int64_t ts_ms, uint64_t seq,
                             const ps_event_rec *e);
/* Visits the profile's events with (ts, seq) < (before_ts, before_seq), newest first. */
ps_status ps_store_pevent_scan_desc(ps_txn *t, uint64_t profile, int64_t before_ts,
                                    uint64_t before_seq, ps_pevent_fn fn, void *ud);
/* Visits the profile's events with (ts, seq) > (after_ts, after_seq), oldest first. */
ps_status ps_store_pevent_scan_asc(ps_txn *t, uint64_t profile, int64_t after_ts,
                                   uint64_t after_seq, ps_pevent_fn fn, void *ud);
/* Every (profile, ts, seq) index row, for `check`. */
ps_status ps_store_pevent_scan_all(ps_txn *t, ps_pevent_fn fn, void *ud);
typedef bool (*ps_event_fn_rec)(void *ud, const ps_event_rec *e);
ps_status ps_store_event_scan(ps_txn *t, ps_event_fn_rec fn, void *ud);

/* ---- link: (from, to) user <-> account, written both ways ---- */
typedef bool (*ps_link_fn)(void *ud, uint64_t from, uint64_t to, int64_t created_ms);
ps_status ps_store_link_put(ps_txn *t, uint64_t from, uint64_t to, int64_t created_ms);
/* Visits links of `from` by target seq; every link when `from` is 0. */
ps_status ps_store_link_scan(ps_txn *t, uint64_t from, ps_link_fn fn, void *ud);

/* ---- audit: append-only change log (docs/storage-format.md), violations included ---- */
typedef enum ps_audit_kind {
    PS_AUDIT_CREATE = 1,    /* id_graph_updates: segment_id == canonical */
    PS_AUDIT_MERGE = 2,     /* id_graph_updates: segment_id -> canonical */
    PS_AUDIT_MAPPING = 3,   /* external_id_mapping_updates, CREATED */
    PS_AUDIT_TRAITS = 4,    /* profile_traits_updates: a message changed traits */
    PS_AUDIT_VIOLATION = 5, /* Profiles Insights violation or error */
    PS_AUDIT_UNMAP = 6,     /* external_id_mapping_updates, REMOVED */
    PS_AUDIT_ERASED = 7,    /* a regulation erased the profile (no identifier values) */
    PS_AUDIT_UNMERGE = 8,   /* id_graph_updates: an operator made segment_id canonical again */
} ps_audit_kind;

typedef struct ps_audit_rec {
    uint64_t seq;
    uint8_t kind;       /* ps_audit_kind */
    uint8_t reason;     /* violations: ps_violation (resolve layer) */
    uint8_t event_type; /* ps_msg_type of the triggering event */
    uint8_t collection;
    uint64_t profile;   /* segment_id's profile */
    uint64_t canonical; /* canonical at the time (merges: the survivor) */
    int64_t timestamp_ms, received_ms;
    ps_slice message_id, source_id, type, value;
    uint32_t count;       /* traits: keys changed */
    uint64_t message_seq; /* the triggering message in the log (0: none, or rows made before
                           * this field: the change feed reads traits from it) */
    ps_slice limit_type;  /* limit violations: the type whose limit the event would exceed
                           * (empty on every other row, and on rows made before it) */
} ps_audit_rec;
ps_status ps_store_audit_append(ps_txn *t, ps_audit_rec *rec); /* assigns rec->seq */
typedef bool (*ps_audit_fn)(void *ud, const ps_audit_rec *r);
ps_status ps_store_audit_scan(ps_txn *t, uint64_t from_seq, ps_audit_fn fn, void *ud);
/* Blanks the identifier type and value of every audit row `match` picks (erasure: the row
 * stays, without what it named). */
typedef bool (*ps_audit_match_fn)(void *ud, const ps_audit_rec *r);
ps_status ps_store_audit_scrub(ps_txn *t, ps_audit_match_fn match, void *ud, size_t *scrubbed);

/* ---- pmsg: (profile, message seq) of accepted messages that have no event row (identify,
 * group, alias), so that erasure finds them in the log ---- */
typedef bool (*ps_seq_fn)(void *ud, uint64_t seq);
ps_status ps_store_pmsg_put(ps_txn *t, uint64_t profile, uint64_t seq);
ps_status ps_store_pmsg_scan(ps_txn *t, uint64_t profile, ps_seq_fn fn, void *ud);

/* ---- erasure: a profile's rows go (ps_graph_erase) ---- */
ps_status ps_store_event_del(ps_txn *t, uint64_t seq);
ps_status ps_store_pevent_del(ps_txn *t, uint64_t profile, int64_t ts_ms, uint64_t seq);
ps_status ps_store_trait_del_all(ps_txn *t, uint64_t profile);
ps_status ps_store_pevent_del_all(ps_txn *t, uint64_t profile);
ps_status ps_store_pmsg_del_all(ps_txn *t, uint64_t profile);
ps_status ps_store_link_del(ps_txn *t, uint64_t from, uint64_t to);
ps_status ps_store_link_del_all(ps_txn *t, uint64_t from);

#endif
