/* SPDX-License-Identifier: MIT */
/* filters: a space's event filters (docs/filters.md): up to PS_FILTERS_MAX named FQL queries,
 * each enabled or not, kept as one JSON document. A message matching an enabled filter is
 * dropped whole before resolution. Pure: parsing, checking and matching; the service layer
 * stores the document. A set is immutable once parsed and may be shared by threads. */
#ifndef PS_FILTERS_H
#define PS_FILTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/fql.h"
#include "ps/mem.h"
#include "ps/status.h"

#define PS_FILTERS_MAX 10
#define PS_FILTER_NAME_MAX 64 /* bytes of A-Z a-z 0-9 _ - */

typedef struct ps_filter_set ps_filter_set;

typedef struct ps_filter_info {
    const char *name;
    const char *fql; /* the query as given */
    bool enabled;
    int64_t created_ms;
} ps_filter_info;

/* Parses a stored document (`[{"name","if","enabled","created_at"}...]`, "" or "[]" for none)
 * and compiles every query. PS_EINVAL (with `err`) when it is not one. */
ps_status ps_filters_parse(const char *doc, size_t len, ps_filter_set **out, char *err,
                           size_t err_cap);
void ps_filters_free(ps_filter_set *s);
size_t ps_filters_count(const ps_filter_set *s);
/* Filter `i` (0 <= i < count), in creation order. */
ps_filter_info ps_filters_get(const ps_filter_set *s, size_t i);
/* The index of the first enabled filter `msg` (a cJSON object) matches, or -1. */
int ps_filters_match(const ps_filter_set *s, const void *msg);

/* Changes, each checked whole before anything changes: the new document goes to `out`.
 * PS_EINVAL with `err` for a bad name or query or an 11th filter, PS_ECONFLICT for a taken
 * name, PS_ENOTFOUND for an unknown one. */
bool ps_filter_name_valid(const char *name);
ps_status ps_filters_add(const ps_filter_set *s, const char *name, const char *fql, bool enabled,
                         int64_t now_ms, ps_buf *out, char *err, size_t err_cap);
/* Renames filter `name` to `new_name` (NULL: keeps it) and sets `enabled` (-1: keeps it). */
ps_status ps_filters_update(const ps_filter_set *s, const char *name, const char *new_name,
                            int enabled, ps_buf *out, char *err, size_t err_cap);
ps_status ps_filters_remove(const ps_filter_set *s, const char *name, ps_buf *out);

/* A request body of the filter routes: {"name", "if", "enabled"}, each optional here (the
 * caller says which it needs). Strings are copied into the request; PS_EINVAL with a reason
 * for anything else (unknown keys too). */
typedef struct ps_filter_request {
    char name[PS_FILTER_NAME_MAX + 1];
    bool has_name;
    char *fql;   /* owned, NULL when absent */
    int enabled; /* -1 when absent */
} ps_filter_request;
ps_status ps_filters_parse_request(const char *body, size_t len, ps_filter_request *out,
                                   const char **why);
void ps_filter_request_clear(ps_filter_request *r);

/* The set as the JSON array the API answers with (the stored document's shape). */
void ps_filters_json(const ps_filter_set *s, ps_buf *out);

#endif
