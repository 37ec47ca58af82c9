/* SPDX-License-Identifier: MIT */
/* json: the one entry point for JSON bytes from outside (HTTP bodies, event logs, settings
 * files). It validates strictly before anything builds a tree: RFC 8259 grammar, well-formed
 * UTF-8, no raw control characters inside strings, nothing but whitespace after the value,
 * bounded nesting, and no U+0000 (`\u0000`) in any string unless the caller allows it, because
 * C strings would silently cut such a value short. Also a few scanners over text that was
 * validated here, so callers can slice raw members without a tree. Pure: no I/O. */
#ifndef PS_JSON_H
#define PS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"

struct cJSON;

#define PS_JSON_DEPTH_MAX 64 /* nested objects and arrays */

typedef enum ps_json_error {
    PS_JSON_OK = 0,
    PS_JSON_EMPTY,    /* nothing but whitespace */
    PS_JSON_SYNTAX,   /* not JSON */
    PS_JSON_UTF8,     /* a string is not well-formed UTF-8 (or has a lone surrogate escape) */
    PS_JSON_CONTROL,  /* a raw byte 0x00-0x1F inside a string */
    PS_JSON_NUL,      /* \u0000 inside a string */
    PS_JSON_TRAILING, /* more than whitespace after the value */
    PS_JSON_DEPTH,    /* nested deeper than PS_JSON_DEPTH_MAX */
} ps_json_error;

/* Where validation stopped and why. */
typedef struct ps_json_diag {
    ps_json_error error;
    size_t offset; /* byte offset of the problem */
} ps_json_diag;

#define PS_JSON_ALLOW_NUL 1u /* accept \u0000 in strings (callers that never make C strings) */

/* Validates `len` bytes as one strict JSON value. `diag` may be NULL. */
bool ps_json_check(const uint8_t *s, size_t len, unsigned flags, ps_json_diag *diag);

/* Validates (flags 0: no \u0000 anywhere) and parses into a cJSON tree. Returns an owned tree;
 * free with cJSON_Delete(). NULL when the text is refused; `diag` (may be NULL) says why. */
struct cJSON *ps_json_parse(const uint8_t *s, size_t len, ps_json_diag *diag);

/* Like ps_json_parse, but the tree is built here, from the validated text, in memory of the
 * calling thread (one allocation per 16 KB instead of one per node and string): the tree cJSON
 * would make, node for node (fuzz target json). Released with ps_json_scratch_free(), never
 * cJSON_Delete(). One such tree per thread at a time. `checked_nul`: the caller ran
 * ps_json_check on the same bytes with PS_JSON_ALLOW_NUL and it passed, so validation only
 * has to look for \u0000. */
struct cJSON *ps_json_parse_scratch(const uint8_t *s, size_t len, bool checked_nul,
                                    ps_json_diag *diag);
void ps_json_scratch_free(struct cJSON *root);

/* One sentence naming the problem, for error replies. */
const char *ps_json_error_message(ps_json_error e);

/* ---- scanners over validated text ---- */

/* Skips JSON whitespace from `p`. */
const char *ps_json_skip_ws(const char *p, const char *end);

/* Returns the end of the value starting at `p` (no leading whitespace), or NULL if the text is
 * not shaped as expected. Fast: meant for text that ps_json_check() accepted. */
const char *ps_json_skip_value(const char *p, const char *end);

/* One object member: `key` is the raw string with its quotes, `value` the raw value. */
typedef struct ps_json_member {
    ps_slice key;
    ps_slice value;
} ps_json_member;

/* Iterates the members of the object at `*p` (validated text). Call with *p at the '{'; each
 * call fills `m` and returns true, false after the last member. */
typedef struct ps_json_iter {
    const char *p, *end;
    bool started;
} ps_json_iter;
void ps_json_iter_init(ps_json_iter *it, const char *p, const char *end);
bool ps_json_iter_next(ps_json_iter *it, ps_json_member *m);

/* True when the raw string `key` (with its quotes, validated) decodes to `name`. */
bool ps_json_key_is(ps_slice key, const char *name);

/* Decodes the raw string `key` (quotes included, validated) into `out` (capacity `cap`).
 * Returns false when it does not fit. *out_len receives the length. */
bool ps_json_key_decode(ps_slice key, char *out, size_t cap, size_t *out_len);

#endif
