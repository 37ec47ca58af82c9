/* SPDX-License-Identifier: MIT */
/* graphdb: the identity graph's tables: profiles, segment ids, identifiers, the identifiers
 * of each profile, members of merged profiles, and identifier types. Borrowed strings follow
 * the rules of ps/store.h. */
#ifndef PS_GRAPHDB_H
#define PS_GRAPHDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/status.h"
#include "ps/store.h"

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
    uint64_t created_by; /* the log sequence of the message that created it; 0: not recorded */
} ps_profile;

ps_status ps_store_profile_get(ps_txn *t, uint64_t seq, ps_profile *out);
/* Only the profile's parent (0: it is canonical): what finding a canonical profile reads. */
ps_status ps_store_profile_parent(ps_txn *t, uint64_t seq, uint64_t *parent);
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
    bool shared; /* seen with two people (block_shared_values): it no longer matches */
} ps_mapping;

/* A hint that the identifier will be looked up soon in write transaction `t`: stage 0 asks the
 * processor for the cache slot the lookup will probe first, stage 1 (later, once that slot is
 * near) for the entry it holds. Nothing else changes; read transactions ignore it. */
void ps_store_ident_prefetch(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len, uint64_t hash, int stage);
ps_status ps_store_ident_get(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len, ps_mapping *out);
/* The same lookup when only the profile and the shared mark are wanted: no strings copied. */
ps_status ps_store_ident_profile(ps_txn *t, uint8_t coll, const char *type, const char *value,
                                 size_t value_len, uint64_t hash, uint64_t *profile, bool *shared);
/* The hash a write transaction's identifier cache files the identifier under, for any thread
 * to compute ahead of the writer: `hash` arguments take it (0: the store computes it). Drawn
 * per process, so it is never stored. */
uint64_t ps_store_ident_hash(uint8_t coll, const char *type, const char *value, size_t value_len);
ps_status ps_store_ident_put(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len, const ps_mapping *m);
ps_status ps_store_ident_del(ps_txn *t, uint8_t coll, const char *type, const char *value,
                             size_t value_len);
typedef bool (*ps_ident_fn)(void *ud, uint8_t coll, const char *type, const char *value,
                            size_t value_len, const ps_mapping *m);
ps_status ps_store_ident_scan(ps_txn *t, ps_ident_fn fn, void *ud);

/* ---- pmap: (canonical profile, type, value) -> first_seen and the mapping's details (what
 * the Profile API shows of it: rows written before the details have first_seen only) ---- */
ps_status ps_store_pmap_put(ps_txn *t, uint64_t profile, const char *type, const char *value,
                            size_t value_len, const ps_mapping *m);
/* Moves the row of (type, value) from profile `from` to profile `to`, as it is. */
ps_status ps_store_pmap_move(ps_txn *t, uint64_t from, uint64_t to, const char *type,
                             const char *value, size_t value_len);
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
/* The same for one profile with each row's details: `m` (its profile and map_seq unset) or
 * NULL for a row written before them. */
typedef bool (*ps_pmap_detail_fn)(void *ud, const char *type, const char *value, size_t value_len,
                                  const ps_mapping *m);
ps_status ps_store_pmap_scan_details(ps_txn *t, uint64_t profile, ps_pmap_detail_fn fn, void *ud);

/* ---- member: (canonical, member) for every merged-away profile and itself ---- */
ps_status ps_store_member_put(ps_txn *t, uint64_t canonical, uint64_t member);
ps_status ps_store_member_del(ps_txn *t, uint64_t canonical, uint64_t member);
typedef bool (*ps_member_fn)(void *ud, uint64_t canonical, uint64_t member);
/* Visits members by seq; every (canonical, member) pair when `canonical` is 0. */
ps_status ps_store_member_scan(ps_txn *t, uint64_t canonical, ps_member_fn fn, void *ud);

/* ---- types: identifier types seen in this space, each with the collection it was first seen
 * in (for settings display and for finding an identifier of a type the settings do not name) */
ps_status ps_store_type_seen(ps_txn *t, const char *type, uint8_t collection);
/* PS_ENOTFOUND when `type` was never seen. */
ps_status ps_store_type_get(ps_txn *t, const char *type, uint8_t *collection);
typedef bool (*ps_type_fn)(void *ud, const char *type, uint8_t collection);
ps_status ps_store_type_scan(ps_txn *t, ps_type_fn fn, void *ud);

/* ---- erasure (ps_graph_erase) ---- */
/* Removes the profile record and its segment_id. */
ps_status ps_store_profile_del(ps_txn *t, uint64_t seq);
ps_status ps_store_pmap_del_all(ps_txn *t, uint64_t profile);
ps_status ps_store_member_del_all(ps_txn *t, uint64_t canonical);

#endif
