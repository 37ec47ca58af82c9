/* SPDX-License-Identifier: MIT */
/* rules: a space's identity settings (SPEC 6, DESIGN 5.5) loaded from JSON, validated whole,
 * with Segment's defaults filled in. Pure: no I/O. Immutable once built, so one ps_rules may be
 * shared by threads. */
#ifndef PS_RULES_H
#define PS_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/status.h"

#define PS_TYPE_MAX 64   /* bytes in an identifier type name */
#define PS_VALUE_MAX 400 /* bytes in an identifier value (keeps LMDB keys under 511) */

typedef enum ps_collection { PS_USERS = 0, PS_ACCOUNTS = 1 } ps_collection;

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
    uint32_t limit;      /* values allowed per profile within the window */
    ps_frequency frequency;
    int64_t window_ms;   /* 0 means ever */
    uint32_t priority;   /* explicit rank, or 0 when ranked alphabetically after the explicit */
    bool enabled;
    bool lowercase;      /* lowercase values (email) */
} ps_type_rule;

/* A custom identifier read from trait/property keys (SPEC 5.2, 18.Q9). */
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
    int64_t dedup_window_ms;     /* messageId dedup window on receivedAt; 0 disables */
    int64_t event_retention_ms;  /* events older than this (receivedAt) are purged */
    int64_t events_lookback_ms;  /* Profile API default events window */
    uint32_t merge_limit;        /* merges per profile (SPEC 7.5) */
    uint32_t mapping_limit;      /* identifier mappings per profile */
    uint32_t api_rate_per_second; /* Profile API token bucket refill; 0: no limit (D8) */
    uint32_t api_rate_burst;      /* bucket size; 0: same as the rate */
    uint32_t ingest_rate_per_second; /* Tracking API requests per second (Q31); 0: no limit */
    uint32_t ingest_rate_burst;      /* bucket size; 0: same as the rate */
} ps_rules_options;

#define PS_DIAGS_MAX 32
typedef struct ps_diags {
    ps_diag items[PS_DIAGS_MAX];
    size_t count;
    size_t dropped; /* errors beyond PS_DIAGS_MAX */
} ps_diags;

/* Returns owned rules with every default (SPEC 16); free with ps_rules_free(). */
ps_rules *ps_rules_default(void);

/* Parses and validates a settings document. On success *out receives owned rules. On
 * PS_EINVAL, `diags` lists every problem with its JSON path and nothing is returned. */
ps_status ps_rules_parse(const char *json, size_t len, ps_rules **out, ps_diags *diags);

void ps_rules_free(ps_rules *r);

/* The rule for `type`: the configured one, or the auto-added default (limit 5, ever,
 * unranked, users) for an unseen type. Borrowed: valid while `r` lives. */
const ps_type_rule *ps_rules_type(const ps_rules *r, const char *type);

/* Priority order: <0 when `a` ranks higher (demoted later) than `b`, 0 when same type.
 * Explicit priorities first (ties by name), then the rest by byte-wise name (SPEC 6.3). */
int ps_rules_rank_cmp(const ps_rules *r, const char *a, const char *b);

/* True when `value` is blocked for `type` (exact match or whole-value ERE match). */
bool ps_rules_blocked(const ps_rules *r, const char *type, const char *value);

const ps_rules_options *ps_rules_options_get(const ps_rules *r);

/* Custom key identifiers, sorted by type. Borrowed: valid while `r` lives. */
const ps_custom_key *ps_rules_custom_keys(const ps_rules *r, size_t *count);

/* Appends the effective settings as JSON: every configured type plus `seen` types (auto-added
 * ones), each with its rank from 1 in priority order. Output parses back to equal rules. */
void ps_rules_to_json(const ps_rules *r, const char *const *seen, size_t seen_count, ps_buf *out);

/* True when `s` (`len` bytes) is a valid identifier type name: 1-PS_TYPE_MAX characters of
 * a-z, 0-9, '_', '.', '-'. */
bool ps_rules_type_name_valid(const char *s, size_t len);

/* Returns the name of a frequency ("ever", ...). */
const char *ps_frequency_name(ps_frequency f);

#endif
