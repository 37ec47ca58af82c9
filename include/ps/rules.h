/* SPDX-License-Identifier: MIT */
/* rules: a space's identity settings (schema/identity-settings.schema.json) loaded from JSON,
 * validated whole, with Segment's defaults filled in. Pure: no I/O. Immutable once built, so
 * one ps_rules may be shared by threads. */
#ifndef PS_RULES_H
#define PS_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/status.h"

#define PS_TYPE_MAX 64   /* bytes in an identifier type name */
#define PS_VALUE_MAX 400 /* bytes in an identifier value (keeps LMDB keys under 511) */

/* Blocked-value regexes are PCRE2 patterns matched against the whole UTF-8 value. Every process
 * that opens a space compiles them and ingest runs them on every identifier, so settings
 * validation bounds what one pattern may cost, in counts rather than time: a value gets the
 * same answer on every machine (for one PCRE2 version). */
#define PS_REGEX_PATTERN_MAX 256         /* bytes of pattern text */
#define PS_REGEX_NEST_MAX 32             /* nested parentheses */
#define PS_REGEX_REPEAT_MAX PS_VALUE_MAX /* largest count in {n,m}: no value is longer */
#define PS_REGEX_CODE_MAX 32768          /* bytes of compiled pattern (PCRE2_INFO_SIZE) */
/* Per value and pattern: backtracking steps, nested backtracking frames (about three per value
 * byte for a pattern like ((a)|b)*, so 4000 admits any such pattern on a PS_VALUE_MAX value),
 * and KiB of frame memory. A match that reaches one of them counts as no match, so the value is
 * not blocked by that pattern. Backtracking runs away while the engine exhausts the ways a
 * value could match, which is almost always because it does not; a value that matches is found
 * on the first path that works. Blocked values are junk like "0000" that match at once, and
 * counting an undecided value as blocked would drop real identifiers, say every long push
 * token, from resolution because of one careless pattern. */
#define PS_REGEX_MATCH_LIMIT 100000
#define PS_REGEX_DEPTH_LIMIT 4000
#define PS_REGEX_HEAP_KIB 1024

typedef enum ps_collection { PS_USERS = 0, PS_ACCOUNTS = 1 } ps_collection;
/* The one spelling of the collections: "users" and "accounts" (settings, messages' externalIds,
 * URLs, output). */
const char *ps_collection_name(ps_collection c);
/* The collection `name` spells, or -1. */
int ps_collection_parse(const char *name);

typedef enum ps_frequency {
    PS_FREQ_EVER = 0,
    PS_FREQ_DAILY,
    PS_FREQ_WEEKLY,
    PS_FREQ_MONTHLY,
    PS_FREQ_ANNUALLY,
} ps_frequency;

/* The effective rule for one identifier type. */
typedef struct ps_type_rule {
    const char *type;
    ps_collection collection;
    uint32_t limit; /* values allowed per profile within the window */
    ps_frequency frequency;
    int64_t window_ms; /* 0 means ever */
    uint32_t priority; /* explicit rank, or 0 when ranked alphabetically after the explicit */
    bool enabled;
    bool lowercase; /* lowercase values (email) */
} ps_type_rule;

/* A custom identifier read from trait/property keys. */
typedef struct ps_custom_key {
    const char *type;
    const char *snake; /* configured key, e.g. app_id */
    const char *camel; /* its lowerCamel form, e.g. appId (same as snake when no '_') */
    ps_collection collection;
} ps_custom_key;

typedef struct ps_rules ps_rules;

/* Space-wide options. */
typedef struct ps_rules_options {
    bool email_from_properties;
    int64_t dedup_window_ms;         /* messageId dedup window on receivedAt; 0 disables */
    int64_t event_retention_ms;      /* events older than this (receivedAt) are purged */
    int64_t events_lookback_ms;      /* Profile API default events window */
    int64_t log_retention_ms;        /* messages received longer ago are trimmed (0: kept) */
    uint32_t merge_limit;            /* merges per profile */
    uint32_t mapping_limit;          /* identifier mappings per profile */
    uint32_t api_rate_per_second;    /* Profile API token bucket refill; 0: no limit */
    uint32_t api_rate_burst;         /* bucket size; 0: same as the rate */
    uint32_t ingest_rate_per_second; /* Tracking API requests per second; 0: no limit */
    uint32_t ingest_rate_burst;      /* bucket size; 0: same as the rate */
    /* An identifier value seen with two values of a type limited to one per profile (two
     * userIds; two anonymous ids inside an anonymous_id window of one) stops matching: a shared
     * device, browser, email or token (docs/identity-settings.md) */
    bool block_shared_values;
} ps_rules_options;

#define PS_DIAGS_MAX 32
typedef struct ps_diags {
    ps_diag items[PS_DIAGS_MAX];
    size_t count;
    size_t dropped; /* errors beyond PS_DIAGS_MAX */
} ps_diags;

/* The settings document of preset `name` ("recommended"), or NULL for an unknown name. */
const char *ps_rules_preset(const char *name);
/* The preset names, comma separated, for messages. */
const char *ps_rules_preset_names(void);

/* Returns owned rules with every default; free with ps_rules_free(). */
ps_rules *ps_rules_default(void);

/* Parses and validates a settings document. On success *out receives owned rules. On
 * PS_EINVAL, `diags` lists every problem with its JSON path and nothing is returned. */
ps_status ps_rules_parse(const char *json, size_t len, ps_rules **out, ps_diags *diags);

void ps_rules_free(ps_rules *r);

/* The rule for `type`: the configured one, or the auto-added default (limit 5, ever,
 * unranked) for a type the settings do not name. The rules know nothing of stored data, so the
 * default says users; the collection an auto-added type really belongs to is the one the
 * space's `types` table saw it in (see ps_rules_type_configured). Borrowed: valid while `r`
 * lives. */
const ps_type_rule *ps_rules_type(const ps_rules *r, const char *type);

/* The configured types (settings and built-in defaults), sorted by name: *count of them.
 * Borrowed: valid while `r` lives. */
const ps_type_rule *ps_rules_type_at(const ps_rules *r, size_t i, size_t *count);

/* True when the settings (or the built-in defaults) name `type`; false for an auto-added type,
 * whose collection callers take from where it was seen. */
bool ps_rules_type_configured(const ps_rules *r, const char *type);

/* Priority order: <0 when `a` ranks higher (demoted later) than `b`, 0 when same type.
 * Explicit priorities first (ties by name), then the rest by byte-wise name. */
int ps_rules_rank_cmp(const ps_rules *r, const char *a, const char *b);

/* True when `value` is blocked for `type`: it equals an exact blocked value, or a blocked regex
 * matches all of it (PCRE2, UTF-8, anchored at both ends by compile options, '.' matching a
 * newline). A regex that reaches a PS_REGEX_* match limit, or a value that is not valid UTF-8,
 * does not block. */
bool ps_rules_blocked(const ps_rules *r, const char *type, const char *value);
/* The same, and which list and entry block it, as a phrase for people, into `why`. */
bool ps_rules_blocked_by(const ps_rules *r, const char *type, const char *value, char *why,
                         size_t cap);

const ps_rules_options *ps_rules_options_get(const ps_rules *r);

/* Custom key identifiers, sorted by type. Borrowed: valid while `r` lives. */
const ps_custom_key *ps_rules_custom_keys(const ps_rules *r, size_t *count);

/* The member names custom keys are read from: each key's snake form, and its camel form when
 * that differs, sorted by name, then by key (its index in ps_rules_custom_keys), snake first.
 * An event's objects are scanned once against it instead of once per name. */
typedef struct ps_custom_name {
    const char *name;
    uint32_t key;
    bool camel;
} ps_custom_name;
const ps_custom_name *ps_rules_custom_names(const ps_rules *r, size_t *count);

/* A type recorded in a space's `types` table, with the collection it was first seen in. */
typedef struct ps_seen_type {
    const char *type;
    ps_collection collection;
} ps_seen_type;

/* Appends the effective settings as JSON: every configured type plus `seen` types (auto-added
 * ones, shown in the collection they were seen in), each with its rank from 1 in priority
 * order. Output parses back to equal rules. */
void ps_rules_to_json_seen(const ps_rules *r, const ps_seen_type *seen, size_t seen_count,
                           ps_buf *out);

/* ps_rules_to_json_seen() for callers that know seen type names only: each is shown in users. */
void ps_rules_to_json(const ps_rules *r, const char *const *seen, size_t seen_count, ps_buf *out);

/* True when `s` (`len` bytes) is a valid identifier type name: 1-PS_TYPE_MAX characters of
 * a-z, 0-9, '_', '.', '-'. */
bool ps_rules_type_name_valid(const char *s, size_t len);

/* Returns the name of a frequency ("ever", ...). */
const char *ps_frequency_name(ps_frequency f);

#endif
