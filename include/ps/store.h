/* SPDX-License-Identifier: MIT */
/* store: one LMDB environment per space and typed access to its named databases. The only
 * module that sees LMDB or msgpack; records cross this boundary as plain structs. Layouts are
 * in docs/storage-format.md and in keys/codec comments in src/storage/store.c.
 *
 * Lifetimes: strings returned as ps_slice or `const char *` from a read are borrowed: valid
 * until the transaction ends, and in a write transaction only until the next write. */
#ifndef PS_STORE_H
#define PS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/status.h"

#define PS_STORE_FORMAT 2    /* on-disk format version written in meta */
#define PS_ID_BYTES 404      /* a message id (100 code points) or identifier value */
#define PS_SEGMENT_ID_LEN 31 /* "use_" + 27 base62 */

typedef struct ps_store ps_store;
typedef struct ps_txn ps_txn;

typedef struct ps_store_opts {
    uint64_t map_size_bytes; /* 0: PS_MAP_SIZE from the environment, else 16 GiB */
    bool read_only;
    bool create;     /* create the directory and environment when missing */
    bool any_format; /* open an older format too (for ps_store_migrate() only) */
} ps_store_opts;

/* Opens the environment in directory `dir`. Refuses a newer format (PS_ECORRUPT) and an older
 * one that holds data (PS_EFORMAT, unless opts->any_format); an older store without profiles
 * or events (the catalog, a new space) is marked current on open. Writes the current format
 * into a new store. Returns an owned store; close it with ps_store_close(). */
ps_status ps_store_open(const char *dir, const ps_store_opts *opts, ps_store **out);
void ps_store_close(ps_store *s);
/* The store's format as found at open (PS_STORE_FORMAT unless opened with any_format). */
int ps_store_format(const ps_store *s);
/* The space name the store was opened for (last path component). Borrowed. */
const char *ps_store_name(const ps_store *s);
/* Map size in bytes and bytes in use, for metrics and errors. */
void ps_store_usage(ps_store *s, uint64_t *map_bytes, uint64_t *used_bytes);

/* One read or write transaction. Write transactions are serialized by LMDB (one writer per
 * environment, across processes). Commit makes the whole transaction durable at once. */
ps_status ps_txn_begin(ps_store *s, bool write, ps_txn **out);
ps_status ps_txn_commit(ps_txn *t); /* frees `t` whatever the result */
void ps_txn_abort(ps_txn *t);       /* frees `t`; NULL is a no-op */
/* The store a transaction belongs to. */
ps_store *ps_txn_store(ps_txn *t);

/* Monotonic counters kept in meta, loaded once per write transaction. */
typedef enum ps_counter {
    PS_CTR_PROFILE = 0, /* profile sequence numbers, from 1 */
    PS_CTR_MESSAGE,     /* accepted messages in processing order, from 1 */
    PS_CTR_AUDIT,       /* audit rows, from 1 */
    PS_CTR_MAPPING,     /* identifier mappings (map_ ids), from 1 */
    PS_CTR_MERGE,       /* absorbed profiles, from 1 (stores of older builds lack it: 1) */
    PS_CTR__COUNT
} ps_counter;
/* Returns the next value of `c` and advances it (write transactions only). */
uint64_t ps_txn_next(ps_txn *t, ps_counter c);
/* The next value that ps_txn_next() would return, without advancing it. */
uint64_t ps_txn_peek(ps_txn *t, ps_counter c);

/* ---- meta: named values (settings JSON, versions) ---- */
ps_status ps_store_meta_get(ps_txn *t, const char *key, ps_slice *out);
ps_status ps_store_meta_put(ps_txn *t, const char *key, ps_slice value);
ps_status ps_store_meta_del(ps_txn *t, const char *key); /* PS_ENOTFOUND when absent */
typedef bool (*ps_meta_fn)(void *ud, ps_slice key, ps_slice value);
/* Visits the meta entries whose key starts with `prefix`, by key. */
ps_status ps_store_meta_scan(ps_txn *t, const char *prefix, ps_meta_fn fn, void *ud);

/* ---- profile: seq -> record ---- */
typedef struct ps_profile {
    uint64_t seq;
    uint64_t parent;      /* 0 when canonical; else the canonical profile (kept flat) */
    uint64_t merged_into; /* the profile it was first merged into; 0 if never */
    uint8_t collection;
    uint32_t member_count;  /* canonical: profiles it stands for, itself included */
    uint32_t mapping_count; /* canonical: identifier mappings (pmap rows) */
    int64_t created_ms, updated_ms, merged_ms;
    char segment_id[PS_SEGMENT_ID_LEN + 1];
    char first_message_id[PS_ID_BYTES], last_message_id[PS_ID_BYTES];
    char first_source_id[68], last_source_id[68];
    char merged_by_message_id[PS_ID_BYTES];
} ps_profile;

ps_status ps_store_profile_get(ps_txn *t, uint64_t seq, ps_profile *out);
ps_status ps_store_profile_put(ps_txn *t, const ps_profile *p);
/* segment_id -> seq (every profile ever created, merged-away ones included). */
ps_status ps_store_segid_get(ps_txn *t, const char *segment_id, uint64_t *seq);
ps_status ps_store_segid_put(ps_txn *t, const char *segment_id, uint64_t seq);
/* Visits profiles in seq order from `from_seq`; `fn` returns false to stop. */
typedef bool (*ps_profile_fn)(void *ud, const ps_profile *p);
ps_status ps_store_profile_scan(ps_txn *t, uint64_t from_seq, ps_profile_fn fn, void *ud);
/* Visits profiles with seq < `before_seq`, newest first. */
ps_status ps_store_profile_scan_desc(ps_txn *t, uint64_t before_seq, ps_profile_fn fn, void *ud);

/* ---- ident: (collection, type, value) -> mapping ---- */
typedef struct ps_mapping {
    uint64_t profile;      /* profile the value was first mapped to (find() it) */
    uint64_t map_seq;      /* mapping number, names the map_ id */
    int64_t first_seen_ms; /* event timestamp of the first event carrying it */
    int64_t created_ms;    /* receivedAt of that event */
    char source_id[68];
    char first_message_id[PS_ID_BYTES];
} ps_mapping;

ps_status ps_store_ident_get(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len, ps_mapping *out);
ps_status ps_store_ident_put(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len, const ps_mapping *m);
ps_status ps_store_ident_del(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len);
typedef bool (*ps_ident_fn)(void *ud, uint8_t coll, const char *type, const char *value,
                            size_t value_len, const ps_mapping *m);
ps_status ps_store_ident_scan(ps_txn *t, ps_ident_fn fn, void *ud);

/* ---- pmap: (canonical profile, type, value) -> first_seen; a profile's identifiers ---- */
ps_status ps_store_pmap_put(ps_txn *t, uint64_t profile, const char *type, const char *value,
                            size_t value_len, int64_t first_seen_ms);
ps_status ps_store_pmap_get(ps_txn *t, uint64_t profile, const char *type, const char *value,
                            size_t value_len, int64_t *first_seen_ms);
ps_status ps_store_pmap_del(ps_txn *t, uint64_t profile, const char *type, const char *value,
                            size_t value_len);
typedef bool (*ps_pmap_fn)(void *ud, uint64_t profile, const char *type, const char *value,
                           size_t value_len, int64_t first_seen_ms);
/* Visits the profile's identifiers ordered by (type, value); only `type` when not NULL;
 * every profile when `profile` is 0. */
ps_status ps_store_pmap_scan(ps_txn *t, uint64_t profile, const char *type, ps_pmap_fn fn,
                             void *ud);

/* ---- member: (canonical, member) for every merged-away profile and itself ---- */
ps_status ps_store_member_put(ps_txn *t, uint64_t canonical, uint64_t member);
ps_status ps_store_member_del(ps_txn *t, uint64_t canonical, uint64_t member);
typedef bool (*ps_member_fn)(void *ud, uint64_t canonical, uint64_t member);
/* Visits members by seq; every (canonical, member) pair when `canonical` is 0. */
ps_status ps_store_member_scan(ps_txn *t, uint64_t canonical, ps_member_fn fn, void *ud);

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
 * ps_store_log_put() stores such a value as message `seq`. */
void ps_store_log_encode(ps_store *s, const ps_log_rec *r, ps_buf *out);
ps_status ps_store_log_put(ps_txn *t, uint64_t seq, ps_slice encoded);
/* Reads message `seq`. out->json is valid until the next log read in `t`. */
ps_status ps_store_log_get(ps_txn *t, uint64_t seq, ps_log_rec *out);
/* Reads only the stamps of message `seq` (no decompression); out->json stays empty. */
ps_status ps_store_log_head(ps_txn *t, uint64_t seq, ps_log_rec *out);
typedef bool (*ps_log_fn)(void *ud, const ps_log_rec *r);
/* Visits messages from `from_seq` in order, decompressed when `with_json`. */
ps_status ps_store_log_scan(ps_txn *t, uint64_t from_seq, bool with_json, ps_log_fn fn, void *ud);
/* Messages logged, and whether the log lacks messages that shaped the state (a store migrated
 * from format 1, which kept only recent track/page/screen events). */
ps_status ps_store_log_info(ps_txn *t, uint64_t *count, bool *incomplete);

/* ---- event: message seq -> what resolution made of a track/page/screen message ---- */
typedef struct ps_event_rec {
    uint64_t seq;
    uint8_t type;     /* ps_msg_type */
    uint64_t profile; /* profile resolved to at the time */
    int64_t timestamp_ms;
    ps_slice name;
    ps_slice ids; /* promoted identifiers: "type\0value\0" repeated */
    /* format 1 only (ps_store_migrate()): the message itself was kept with the event */
    int64_t received_ms;
    ps_slice message_id, source_id, body;
} ps_event_rec;
ps_status ps_store_event_put(ps_txn *t, const ps_event_rec *e);
ps_status ps_store_event_get(ps_txn *t, uint64_t seq, ps_event_rec *out);
/* pevent: (profile, timestamp, seq) index, newest first on reads. */
ps_status ps_store_pevent_put(ps_txn *t, uint64_t profile, int64_t ts_ms, uint64_t seq);
typedef bool (*ps_pevent_fn)(void *ud, uint64_t profile, int64_t ts_ms, uint64_t seq);
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

/* ---- dedup: messageId -> receivedAt, with a time index for expiry ---- */
/* PS_OK with *received_ms when known, PS_ENOTFOUND otherwise. */
ps_status ps_store_dedup_get(ps_txn *t, const char *message_id, int64_t *received_ms);
ps_status ps_store_dedup_put(ps_txn *t, const char *message_id, int64_t received_ms);
/* Forgets ids received before `cutoff_ms`, at most `max`. */
ps_status ps_store_dedup_expire(ps_txn *t, int64_t cutoff_ms, size_t max, size_t *expired);

/* ---- audit: append-only change log (docs/storage-format.md), violations included ---- */
typedef enum ps_audit_kind {
    PS_AUDIT_CREATE = 1,    /* id_graph_updates: segment_id == canonical */
    PS_AUDIT_MERGE = 2,     /* id_graph_updates: segment_id -> canonical */
    PS_AUDIT_MAPPING = 3,   /* external_id_mapping_updates, CREATED */
    PS_AUDIT_TRAITS = 4,    /* profile_traits_updates: a message changed traits */
    PS_AUDIT_VIOLATION = 5, /* Profiles Insights violation or error */
    PS_AUDIT_UNMAP = 6,     /* external_id_mapping_updates, REMOVED */
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
    uint32_t count; /* traits: keys changed */
} ps_audit_rec;
ps_status ps_store_audit_append(ps_txn *t, ps_audit_rec *rec); /* assigns rec->seq */
typedef bool (*ps_audit_fn)(void *ud, const ps_audit_rec *r);
ps_status ps_store_audit_scan(ps_txn *t, uint64_t from_seq, ps_audit_fn fn, void *ud);

/* ---- types: identifier types seen in this space, each with the collection it was first seen
 * in (for settings display and for finding an identifier of a type the settings do not name) */
ps_status ps_store_type_seen(ps_txn *t, const char *type, uint8_t collection);
/* PS_ENOTFOUND when `type` was never seen. */
ps_status ps_store_type_get(ps_txn *t, const char *type, uint8_t *collection);
typedef bool (*ps_type_fn)(void *ud, const char *type, uint8_t collection);
ps_status ps_store_type_scan(ps_txn *t, ps_type_fn fn, void *ud);

/* Empties every derived table (all but meta and the log) and restarts their counters; the
 * message counter, settings, tokens and the log stay. For a rebuild from the log. */
ps_status ps_store_clear_derived(ps_txn *t);

/* ---- migration ---- */
/* Upgrades a store opened with any_format to the current format in one write transaction
 * (a crash leaves the old store or the new one): format 1's kept events become the log, which
 * is marked incomplete. *messages receives the number logged. PS_OK and 0 when the store is
 * current already. */
ps_status ps_store_migrate(ps_store *s, uint64_t *messages);

/* Entry counts of every named database, for `check` and metrics. */
typedef struct ps_store_counts {
    uint64_t profiles, segids, idents, pmaps, members, traits, events, pevents, links, dedups,
        audits, logs;
} ps_store_counts;
ps_status ps_store_counts_get(ps_txn *t, ps_store_counts *out);

#endif
