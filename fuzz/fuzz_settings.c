/* SPDX-License-Identifier: MIT */
/* fuzz_settings: ps_rules_parse on any document up to 64 KiB. Accepted settings must print
 * (ps_rules_to_json) to JSON that parses again and prints byte for byte the same, and match
 * the same values; rejected ones must say why in at least one diagnostic. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ps/rules.h"
#include "ps/text.h"

#define INPUT_MAX (64 * 1024)
#define PROBE_MAX 64

static bool has_nul(const void *p, size_t len)
{
    return len > 0 && memchr(p, 0, len) != NULL;
}

static void check_diags(const ps_diags *d)
{
    FUZZ_CHECK(d->count >= 1 && d->count <= PS_DIAGS_MAX);
    for (size_t i = 0; i < d->count; i++) {
        const ps_diag *g = &d->items[i];
        FUZZ_CHECK(memchr(g->path, 0, sizeof g->path) != NULL);
        FUZZ_CHECK(memchr(g->message, 0, sizeof g->message) != NULL);
        FUZZ_CHECK(g->message[0] != 0);
    }
}

/* Prints `r`, parses the text again and prints that: both texts must be equal. */
static ps_rules *round_trip(const ps_rules *r, bool want_utf8)
{
    ps_buf first, second;
    ps_buf_init(&first);
    ps_buf_init(&second);
    ps_rules_to_json(r, NULL, 0, &first);
    FUZZ_CHECK(first.len > 0 && first.ptr[first.len] == 0 && !has_nul(first.ptr, first.len));
    if (want_utf8)
        FUZZ_CHECK(ps_utf8_valid(first.ptr, first.len, NULL));

    ps_rules *again = NULL;
    ps_diags diags;
    ps_status st = ps_rules_parse((const char *)first.ptr, first.len, &again, &diags);
    if (st != PS_OK)
        fprintf(stderr, "printed settings rejected at %s: %s\n%s", diags.items[0].path,
                diags.items[0].message, (const char *)first.ptr);
    FUZZ_CHECK(st == PS_OK && again != NULL && diags.count == 0);
    ps_rules_to_json(again, NULL, 0, &second);
    if (first.len != second.len || memcmp(first.ptr, second.ptr, first.len) != 0)
        fprintf(stderr, "printed twice, differs:\n%s---\n%s", (const char *)first.ptr,
                (const char *)second.ptr);
    FUZZ_CHECK(first.len == second.len && memcmp(first.ptr, second.ptr, first.len) == 0);
    ps_buf_clear(&first);
    ps_buf_clear(&second);
    return again;
}

static void same_options(const ps_rules_options *a, const ps_rules_options *b)
{
    FUZZ_CHECK(a->email_from_properties == b->email_from_properties);
    FUZZ_CHECK(a->dedup_window_ms == b->dedup_window_ms);
    FUZZ_CHECK(a->event_retention_ms == b->event_retention_ms);
    FUZZ_CHECK(a->events_lookback_ms == b->events_lookback_ms);
    FUZZ_CHECK(a->merge_limit == b->merge_limit && a->mapping_limit == b->mapping_limit);
    FUZZ_CHECK(a->api_rate_per_second == b->api_rate_per_second);
    FUZZ_CHECK(a->api_rate_burst == b->api_rate_burst);
    FUZZ_CHECK(a->ingest_rate_per_second == b->ingest_rate_per_second);
    FUZZ_CHECK(a->ingest_rate_burst == b->ingest_rate_burst);
}

/* The reparsed rules must behave like the original on custom keys and blocked values. */
static void same_behaviour(const ps_rules *a, const ps_rules *b, const uint8_t *data, size_t size)
{
    same_options(ps_rules_options_get(a), ps_rules_options_get(b));
    size_t na, nb;
    const ps_custom_key *ka = ps_rules_custom_keys(a, &na), *kb = ps_rules_custom_keys(b, &nb);
    FUZZ_CHECK(na == nb);
    for (size_t i = 0; i < na; i++) {
        FUZZ_CHECK(strcmp(ka[i].type, kb[i].type) == 0);
        FUZZ_CHECK(strcmp(ka[i].snake, kb[i].snake) == 0);
        FUZZ_CHECK(strcmp(ka[i].camel, kb[i].camel) == 0);
        FUZZ_CHECK(ka[i].collection == kb[i].collection);
    }
    /* a probe value: the input's last bytes up to the first NUL */
    char probe[PROBE_MAX + 1];
    size_t pl = size < PROBE_MAX ? size : PROBE_MAX;
    memcpy(probe, data + size - pl, pl);
    probe[pl] = 0;
    const char *types[] = {"user_id", "email", na ? ka[0].type : "anonymous_id"};
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        const ps_type_rule *ra = ps_rules_type(a, types[t]), *rb = ps_rules_type(b, types[t]);
        FUZZ_CHECK(ra->limit == rb->limit && ra->frequency == rb->frequency);
        FUZZ_CHECK(ra->window_ms == rb->window_ms && ra->priority == rb->priority);
        FUZZ_CHECK(ra->enabled == rb->enabled && ra->lowercase == rb->lowercase);
        FUZZ_CHECK(ra->collection == rb->collection);
        FUZZ_CHECK(ps_rules_blocked(a, types[t], probe) == ps_rules_blocked(b, types[t], probe));
    }
    FUZZ_CHECK(ps_rules_rank_cmp(a, "user_id", "email") ==
               ps_rules_rank_cmp(b, "user_id", "email"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INPUT_MAX)
        return 0;
    char *json = malloc(size ? size : 1); /* exactly sized: ASan sees reads past the end */
    FUZZ_CHECK(json != NULL);
    if (size)
        memcpy(json, data, size);

    ps_rules *r = NULL;
    ps_diags diags;
    ps_status st = ps_rules_parse(json, size, &r, &diags);
    if (st == PS_OK) {
        FUZZ_CHECK(r != NULL && diags.count == 0 && diags.dropped == 0);
        bool want_utf8 = ps_utf8_valid(data, size, NULL);
        ps_rules *again = round_trip(r, want_utf8);
        same_behaviour(r, again, data, size);
        ps_rules_free(again);
        ps_rules_free(r);
    } else {
        FUZZ_CHECK(st == PS_EINVAL && r == NULL);
        check_diags(&diags);
    }
    free(json);
    return 0;
}
