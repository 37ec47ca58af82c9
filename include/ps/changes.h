/* SPDX-License-Identifier: MIT */
/* changes: the change feed (docs/changes.md). The identity graph's decisions, read out of the
 * audit table as the rows of four Profiles Sync tables, in one order: every row has a `seq`
 * above the one before it, so a loader that remembers the last seq it stored resumes exactly
 * there. Used by `profilectl changes` and GET /v1/spaces/{space}/changes. */
#ifndef PS_CHANGES_H
#define PS_CHANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/space.h"
#include "ps/status.h"

/* The tables, as bits of a mask. */
enum {
    PS_CH_ID_GRAPH = 1,   /* id_graph_updates */
    PS_CH_MAPPINGS = 2,   /* external_id_mapping_updates */
    PS_CH_TRAITS = 4,     /* profile_traits_updates */
    PS_CH_VIOLATIONS = 8, /* violations */
    PS_CH_ALL = 15,
};
const char *ps_changes_table_name(unsigned table);
/* One table's name to its bit; false for anything else. */
bool ps_changes_table_parse(const char *name, unsigned *table);

/* A row's seq is the audit row's number times PS_CHANGES_SUB, plus the row's place among
 * the rows that audit row gives (a message that sets five traits gives five trait rows). */
#define PS_CHANGES_SUB 65536u

typedef struct ps_change_row {
    unsigned table;
    uint64_t seq;
    const char *segment_id;           /* the profile the row is about ("" when none) */
    const char *canonical_segment_id; /* id_graph_updates */
    const char *event_type;           /* the triggering message's type, "" for none */
    ps_slice message_id, source_id;   /* the triggering message */
    int64_t timestamp_ms, received_ms;
    /* external_id_mapping_updates; violations (the identifier concerned, when one) */
    ps_slice id_type, id_value;
    char id_hash[41]; /* hex SHA-1 of type || value; "" when the value was erased */
    bool removed;     /* __operation REMOVED */
    /* profile_traits_updates: value is JSON text ("null": the trait was removed) */
    ps_slice name, value;
    /* violations */
    const char *reason;
} ps_change_row;

/* Called per row; returns false to stop. The row's pointers are valid during the call. */
typedef bool (*ps_change_fn)(void *ud, const ps_change_row *r);

/* Visits the rows of `tables` whose seq is above `after`, in seq order, at most `limit` of
 * them, from one snapshot. *next receives the seq to pass as `after` to go on: the last row
 * visited, or past every audit row read when fewer than `limit` rows matched. Rows about
 * profiles a deletion erased since are left out. */
ps_status ps_changes_scan(ps_space *sp, uint64_t after, size_t limit, unsigned tables,
                          ps_change_fn fn, void *ud, uint64_t *next);

/* One row as a JSON object (with a "table" member when `with_table`). */
void ps_changes_row_json(const ps_change_row *r, bool with_table, ps_buf *out);
/* The CSV header line of `table`, and one row of it (RFC 4180 quoting, CRLF ends). */
void ps_changes_csv_header(unsigned table, ps_buf *out);
void ps_changes_row_csv(const ps_change_row *r, ps_buf *out);

#endif
