/* SPDX-License-Identifier: MIT */
/* fql: Segment's Filter Query Language (docs/fql.md), compiled once and evaluated against a
 * message. Pure: no I/O, no global state. A compiled query may be evaluated by several
 * threads at once; an evaluation allocates nothing (its scratch is on the stack, bounded). */
#ifndef PS_FQL_H
#define PS_FQL_H

#include <stdbool.h>
#include <stddef.h>

#include "ps/status.h"

#define PS_FQL_MAX_BYTES 4096 /* source text */
#define PS_FQL_MAX_NODES 512  /* operators, operands and list items after parsing */
#define PS_FQL_MAX_DEPTH 64   /* nesting of parentheses, lists, calls and '!' */

typedef struct ps_fql ps_fql;

/* Compiles `src` (`len` bytes). PS_OK with *out set (free with ps_fql_free), or PS_EINVAL
 * with `err` holding one line that names the problem and its byte position ("at 12: ..."). */
ps_status ps_fql_compile(const char *src, size_t len, ps_fql **out, char *err, size_t err_cap);
void ps_fql_free(ps_fql *q);

/* Whether `msg` (a parsed JSON message: a cJSON object) matches: the query's value is the
 * boolean true. Anything else (false, another type, a missing field) does not match. */
bool ps_fql_matches(const ps_fql *q, const void *msg);

#endif
