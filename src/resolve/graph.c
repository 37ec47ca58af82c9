/* SPDX-License-Identifier: MIT */
/* graph: flat matching with priority demotion (docs/identity-settings.md, How one message is
 * resolved).
 *
 * Bounds: a merge moves the absorbed profile's member rows (at most merge_limit + 1) and its
 * identifier rows (pmap); traits, events and links stay where they were written and reads fan
 * out over the members, so no merge copies unbounded data. */
#include "ps/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/graphdb.h"
#include "ps/records.h"
#include "ps/text.h"

static const char *const viol_names[PS_VIOL__COUNT] = {
    "none",
    "id_value_blocked",
    "identifier_value_limit_exceeded",
    "identifier_value_time_limit_exceeded",
    "profile_merge_limit_exceeded",
    "identifier_mapping_limit_exceeded",
    "no_matching_identifiers",
    "identifier_value_too_long",
    "identifier_encoding_unsupported",
    "profiles_kept_apart",
    "event_filtered",
    "identifier_value_shared",
};

const char *ps_violation_name(ps_violation v)
{
    return (unsigned)v < PS_VIOL__COUNT ? viol_names[v] : "unknown";
}

void ps_graph_segment_id(const char *space, uint8_t coll, uint64_t seq, char *out)
{
    ps_graph_segment_id_of(space, coll, seq, false, out);
}

void ps_graph_segment_id_of(const char *space, uint8_t coll, uint64_t seq, bool by_message,
                            char *out)
{
    static const uint8_t v1[16] = {'p', 's', '-', 's', 'e', 'g', 'm', 'e',
                                   'n', 't', '-', 'i', 'd', '-', 'v', '1'},
                         v2[16] = {'p', 's', '-', 's', 'e', 'g', 'i', 'd',
                                   '-', 'm', 'e', 's', 's', 'a', 'g', 'e'};
    const uint8_t *key = by_message ? v2 : v1;
    uint8_t input[256 + 10];
    size_t sl = strlen(space);
    if (sl > 256)
        sl = 256;
    memcpy(input, space, sl);
    input[sl] = 0;
    input[sl + 1] = coll;
    for (size_t i = 0; i < 8; i++)
        input[sl + 2 + i] = (uint8_t)(seq >> (56 - 8 * i));
    uint8_t digest[24];
    for (uint8_t round = 0; round < 3; round++) {
        uint8_t k[16];
        memcpy(k, key, 16);
        k[15] = (uint8_t)(k[15] + round);
        uint64_t h = ps_siphash(k, input, sl + 10);
        for (int i = 0; i < 8; i++)
            digest[round * 8 + i] = (uint8_t)(h >> (56 - 8 * i));
    }
    memcpy(out, coll == PS_ACCOUNTS ? "acc_" : "use_", 4);
    ps_base62(digest, sizeof digest, out + 4, 27);
}

ps_status ps_graph_find(ps_txn *t, uint64_t seq, uint64_t *canonical)
{
    uint64_t parent, grandparent;
    ps_status st = ps_store_profile_parent(t, seq, &parent);
    if (st == PS_ENOTFOUND)
        return PS_ECORRUPT; /* a mapping or member names a profile that doesn't exist */
    if (st != PS_OK)
        return st;
    if (parent == 0) {
        *canonical = seq;
        return PS_OK;
    }
    if ((st = ps_store_profile_parent(t, parent, &grandparent)) != PS_OK)
        return st == PS_ENOTFOUND ? PS_ECORRUPT : st;
    if (grandparent != 0)
        return PS_ECORRUPT; /* the forest is kept flat: a parent is always canonical */
    *canonical = parent;
    return PS_OK;
}

/* The canonical profile holding the identifier, and (when `shared` is not NULL) whether the
 * value is marked shared. */
static ps_status lookup(ps_txn *t, uint8_t coll, const char *type, const char *value,
                        size_t value_len, uint64_t hash, uint64_t *canonical, bool *shared)
{
    uint64_t profile;
    bool is_shared;
    ps_status st =
        ps_store_ident_profile(t, coll, type, value, value_len, hash, &profile, &is_shared);
    if (st != PS_OK)
        return st;
    if (shared)
        *shared = is_shared;
    return ps_graph_find(t, profile, canonical);
}

ps_status ps_graph_lookup(ps_txn *t, uint8_t coll, const char *type, const char *value,
                          size_t value_len, uint64_t *canonical)
{
    return lookup(t, coll, type, value, value_len, 0, canonical, NULL);
}

/* Appends an audit row of `kind` for the event being resolved. */
static ps_status audit_row_limit(ps_txn *t, const ps_resolve_in *in, ps_audit_kind kind,
                                 ps_violation reason, uint64_t profile, uint64_t canonical,
                                 const ps_ident *id, const char *limit_type)
{
    ps_audit_rec a = {
        .kind = (uint8_t)kind,
        .reason = (uint8_t)reason,
        .event_type = in->event_type,
        .collection = (uint8_t)in->collection,
        .profile = profile,
        .canonical = canonical,
        .timestamp_ms = in->timestamp_ms,
        .received_ms = in->received_ms,
        .message_id = PS_SLICE_STR(in->message_id),
        .source_id = PS_SLICE_STR(in->source_id),
        .type = id ? PS_SLICE_STR(id->type) : PS_SLICE_STR(""),
        .value = id ? (ps_slice){(const uint8_t *)id->value, id->value_len} : PS_SLICE_STR(""),
        .message_seq = in->message_seq,
        .limit_type = PS_SLICE_STR(limit_type ? limit_type : ""),
    };
    return ps_store_audit_append(t, &a);
}

static ps_status audit_row(ps_txn *t, const ps_resolve_in *in, ps_audit_kind kind,
                           ps_violation reason, uint64_t profile, uint64_t canonical,
                           const ps_ident *id)
{
    return audit_row_limit(t, in, kind, reason, profile, canonical, id, NULL);
}

ps_status ps_graph_unmap(ps_txn *t, uint64_t canonical, const char *type, const char *value,
                         size_t value_len, const ps_resolve_in *in)
{
    ps_profile p;
    int64_t first_seen;
    ps_status st = ps_store_profile_get(t, canonical, &p);
    if (st == PS_OK && p.parent != 0)
        st = PS_EINVAL; /* callers pass the canonical profile */
    if (st == PS_OK)
        st = ps_store_pmap_get(t, canonical, type, value, value_len, &first_seen);
    if (st != PS_OK)
        return st; /* PS_ENOTFOUND: the profile does not hold it */
    st = ps_store_pmap_del(t, canonical, type, value, value_len);
    if (st == PS_OK)
        st = ps_store_ident_del(t, p.collection, type, value, value_len);
    if (st == PS_ENOTFOUND)
        return PS_ECORRUPT; /* a pmap row without its ident row */
    if (st != PS_OK)
        return st;
    PS_ASSERT(p.mapping_count > 0);
    p.mapping_count--;
    if ((st = ps_store_profile_put(t, &p)) != PS_OK)
        return st;
    ps_ident id = {type, value, (uint32_t)value_len, p.collection, 0, NULL, 0};
    return audit_row(t, in, PS_AUDIT_UNMAP, PS_VIOL_NONE, canonical, canonical, &id);
}

_Static_assert(PS_VIOL__COUNT <= PS_CTR_VIOLATION_SLOTS, "a counter per violation reason");

/* A violation row, counted by reason for /metrics: `id` (NULL: none), the profile concerned,
 * the one the event went on with, and for a limit the type over it. */
static ps_status violation_row(ps_txn *t, const ps_resolve_in *in, ps_violation v,
                               const ps_ident *id, uint64_t profile, uint64_t canonical,
                               const char *limit_type)
{
    ps_txn_next(t, (ps_counter)(PS_CTR_VIOLATION + v));
    return audit_row_limit(t, in, PS_AUDIT_VIOLATION, v, profile, canonical, id, limit_type);
}

ps_status ps_graph_violation(ps_txn *t, const ps_resolve_in *in, ps_violation v, const ps_ident *id,
                             uint64_t profile)
{
    return violation_row(t, in, v, id, profile, profile, NULL);
}

/* ---- per-event working state ---- */

typedef struct held {
    char *value;
    int64_t first_seen_ms;
} held;

typedef struct type_count {
    char *type; /* in the work's arena, as are the values' strings */
    uint64_t profile;
    held *values;
    size_t count;
    ps_arena *arena;
} type_count;

typedef struct work {
    ps_txn *t;
    const ps_rules *rules;
    const ps_resolve_in *in;
    ps_resolve_out *out;
    uint64_t *owner; /* canonical owner per id (0 = unmapped) */
    bool *active;    /* still on the event (not dropped or demoted) */
    type_count *cache;
    size_t cache_count, cache_cap;
    ps_arena arena; /* the event's strings and flags, freed at once */
} work;

static bool collect_held(void *ud, uint64_t profile, const char *type, const char *value,
                         size_t value_len, int64_t first_seen_ms)
{
    (void)profile;
    (void)type;
    type_count *tc = ud;
    if ((tc->count & (tc->count + 1)) == 0 || tc->count == 0) /* grow at 0,1,3,7,... */
        tc->values = ps_xrealloc(tc->values, (tc->count * 2 + 2) * sizeof *tc->values);
    tc->values[tc->count].value = ps_arena_strndup(tc->arena, value, value_len);
    tc->values[tc->count].first_seen_ms = first_seen_ms;
    tc->count++;
    return true;
}

/* The values of `type` held by canonical `profile`, read once per event. */
static ps_status held_values(work *w, uint64_t profile, const char *type, type_count **out)
{
    for (size_t i = 0; i < w->cache_count; i++)
        if (w->cache[i].profile == profile && strcmp(w->cache[i].type, type) == 0) {
            *out = &w->cache[i];
            return PS_OK;
        }
    if (w->cache_count == w->cache_cap) {
        w->cache_cap = w->cache_cap ? w->cache_cap * 2 : 8;
        w->cache = ps_xrealloc(w->cache, w->cache_cap * sizeof *w->cache);
    }
    type_count *tc = &w->cache[w->cache_count];
    memset(tc, 0, sizeof *tc);
    tc->type = ps_arena_strndup(&w->arena, type, strlen(type));
    tc->profile = profile;
    tc->arena = &w->arena;
    ps_status st = ps_store_pmap_scan(w->t, profile, type, collect_held, tc);
    w->cache_count++;
    *out = tc;
    return st;
}

static void work_clear(work *w)
{
    for (size_t i = 0; i < w->cache_count; i++)
        free(w->cache[i].values);
    free(w->cache);
    ps_arena_clear(&w->arena);
}

/* Types held by any of several profiles: needed when a merge could join two value sets. */
typedef struct type_list {
    char **names;
    size_t count;
} type_list;

static bool add_type_name(type_list *l, const char *type)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->names[i], type) == 0)
            return true;
    l->names = ps_xrealloc(l->names, (l->count + 1) * sizeof *l->names);
    l->names[l->count++] = ps_xstrdup(type);
    return true;
}

static bool collect_type(void *ud, uint64_t profile, const char *type, const char *value,
                         size_t value_len, int64_t first_seen_ms)
{
    (void)profile;
    (void)value;
    (void)value_len;
    (void)first_seen_ms;
    return add_type_name(ud, type);
}

static void type_list_clear(type_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->names[i]);
    free(l->names);
}

/* Distinct canonical profiles owning active ids, ascending (oldest first: it survives a merge). */
static size_t matched_profiles(const work *w, uint64_t *set)
{
    size_t n = 0;
    for (size_t i = 0; i < w->in->count; i++) {
        if (!w->active[i] || w->owner[i] == 0)
            continue;
        size_t k = 0;
        while (k < n && set[k] < w->owner[i])
            k++;
        if (k < n && set[k] == w->owner[i])
            continue;
        memmove(&set[k + 1], &set[k], (n - k) * sizeof *set);
        set[k] = w->owner[i];
        n++;
    }
    return n;
}

/* The limit check of resolution step 4 (docs/identity-settings.md, How one message is resolved):
 * does joining `set` with the event's new values put `type` over its limit? Only a type whose value
 * set grows beyond what one profile already held can violate, so profiles already over a lowered
 * limit are grandfathered. */
static ps_status type_violates(work *w, const uint64_t *set, size_t n, const char *type,
                               bool *violates)
{
    const ps_type_rule *rule = ps_rules_type(w->rules, type);
    int64_t t_event = w->in->timestamp_ms;
    size_t total = 0, max_held = 0, in_window = 0;
    for (size_t p = 0; p < n; p++) {
        type_count *tc;
        ps_status st = held_values(w, set[p], type, &tc);
        if (st != PS_OK)
            return st;
        total += tc->count; /* a value maps to one profile only: the sets are disjoint */
        if (tc->count > max_held)
            max_held = tc->count;
        for (size_t k = 0; k < tc->count; k++)
            if (rule->window_ms == 0 || (tc->values[k].first_seen_ms > t_event - rule->window_ms &&
                                         tc->values[k].first_seen_ms <= t_event))
                in_window++;
    }
    for (size_t i = 0; i < w->in->count; i++)
        if (w->active[i] && w->owner[i] == 0 && strcmp(w->in->ids[i].type, type) == 0) {
            total++;
            in_window++; /* incoming values count at the event's time */
        }
    *violates = total > max_held && in_window > rule->limit;
    return PS_OK;
}

/* The violation of the first type over its limit, or PS_VIOL_NONE; `over` receives that
 * type's name. */
static ps_status find_violation(work *w, const uint64_t *set, size_t n, ps_violation *found,
                                char over[PS_TYPE_MAX + 1])
{
    *found = PS_VIOL_NONE;
    type_list types = {NULL, 0};
    for (size_t i = 0; i < w->in->count; i++)
        if (w->active[i] && (w->owner[i] == 0 || n > 1))
            add_type_name(&types, w->in->ids[i].type);
    ps_status st = PS_OK;
    if (n > 1) /* joining profiles can grow a type the event doesn't even carry */
        for (size_t p = 0; p < n && st == PS_OK; p++)
            st = ps_store_pmap_scan(w->t, set[p], NULL, collect_type, &types);
    for (size_t k = 0; k < types.count && st == PS_OK; k++) {
        bool v = false;
        st = type_violates(w, set, n, types.names[k], &v);
        if (v) {
            const ps_type_rule *rule = ps_rules_type(w->rules, types.names[k]);
            *found = rule->frequency == PS_FREQ_EVER ? PS_VIOL_VALUE_LIMIT : PS_VIOL_TIME_LIMIT;
            snprintf(over, PS_TYPE_MAX + 1, "%s", types.names[k]);
            break;
        }
    }
    type_list_clear(&types);
    return st;
}

/* Drops the lowest-priority active identifier; ties (same type) drop the last one. */
static size_t demote(work *w)
{
    size_t worst = SIZE_MAX;
    for (size_t i = 0; i < w->in->count; i++) {
        if (!w->active[i])
            continue;
        if (worst == SIZE_MAX ||
            ps_rules_rank_cmp(w->rules, w->in->ids[i].type, w->in->ids[worst].type) >= 0)
            worst = i;
    }
    w->active[worst] = false;
    return worst;
}

static void copy_id(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = 0;
}

static ps_status create_profile(work *w, ps_profile *p)
{
    const ps_resolve_in *in = w->in;
    memset(p, 0, sizeof *p);
    p->seq = ps_txn_next(w->t, PS_CTR_PROFILE);
    p->collection = (uint8_t)in->collection;
    p->member_count = 1;
    p->created_ms = in->received_ms;
    p->updated_ms = in->received_ms;
    ps_slice scheme;
    bool by_message = w->in->message_seq != 0 &&
                      ps_store_meta_get(w->t, PS_SEGMENT_IDS_KEY, &scheme) == PS_OK &&
                      scheme.len == 7 && memcmp(scheme.ptr, "message", 7) == 0;
    p->created_by = w->in->message_seq;
    ps_graph_segment_id_of(ps_store_name(ps_txn_store(w->t)), p->collection,
                           by_message ? w->in->message_seq : p->seq, by_message, p->segment_id);
    copy_id(p->first_message_id, sizeof p->first_message_id, in->message_id);
    copy_id(p->first_source_id, sizeof p->first_source_id, in->source_id);
    ps_status st = ps_store_segid_put(w->t, p->segment_id, p->seq);
    if (st == PS_OK)
        st = ps_store_member_put(w->t, p->seq, p->seq);
    if (st != PS_OK)
        return st;
    w->out->created = true;
    return audit_row(w->t, in, PS_AUDIT_CREATE, PS_VIOL_NONE, p->seq, p->seq, NULL);
}

typedef struct u64_list {
    uint64_t *items;
    size_t count;
} u64_list;

static bool collect_member(void *ud, uint64_t canonical, uint64_t member)
{
    (void)canonical;
    u64_list *l = ud;
    l->items = ps_xrealloc(l->items, (l->count + 1) * sizeof *l->items);
    l->items[l->count++] = member;
    return true;
}

typedef struct pmap_row {
    char *type, *value;
    size_t value_len;
    int64_t first_seen_ms;
} pmap_row;

typedef struct pmap_list {
    pmap_row *rows;
    size_t count;
} pmap_list;

static bool collect_pmap(void *ud, uint64_t profile, const char *type, const char *value,
                         size_t value_len, int64_t first_seen_ms)
{
    (void)profile;
    pmap_list *l = ud;
    l->rows = ps_xrealloc(l->rows, (l->count + 1) * sizeof *l->rows);
    l->rows[l->count++] =
        (pmap_row){ps_xstrdup(type), ps_xstrndup(value, value_len), value_len, first_seen_ms};
    return true;
}

/* The event's first active identifier that canonical `q` holds (NULL: none). */
static const ps_ident *tie_of(const work *w, uint64_t q)
{
    for (size_t i = 0; i < w->in->count; i++)
        if (w->active[i] && w->owner[i] == q)
            return &w->in->ids[i];
    return NULL;
}

/* Merges canonical `q` into canonical `s`. Its merge rows name the identifier that tied `q`
 * to the event. */
static ps_status merge_into(work *w, ps_profile *s, uint64_t q)
{
    const ps_resolve_in *in = w->in;
    const ps_ident *tie = tie_of(w, q);
    ps_profile qp;
    ps_status st = ps_store_profile_get(w->t, q, &qp);
    if (st != PS_OK)
        return st;
    u64_list members = {NULL, 0};
    pmap_list maps = {NULL, 0};
    st = ps_store_member_scan(w->t, q, collect_member, &members);
    if (st == PS_OK)
        st = ps_store_pmap_scan(w->t, q, NULL, collect_pmap, &maps);
    for (size_t i = 0; st == PS_OK && i < members.count; i++) {
        uint64_t m = members.items[i];
        ps_profile mp;
        if ((st = ps_store_member_del(w->t, q, m)) != PS_OK ||
            (st = ps_store_member_put(w->t, s->seq, m)) != PS_OK)
            break;
        if (m == q) {
            (void)ps_txn_next(w->t, PS_CTR_MERGE); /* a running total for metrics */
            mp = qp;
            mp.merged_into = s->seq;
            mp.merged_ms = in->received_ms;
            copy_id(mp.merged_by_message_id, sizeof mp.merged_by_message_id, in->message_id);
            mp.member_count = 0;
            mp.mapping_count = 0;
        } else if ((st = ps_store_profile_get(w->t, m, &mp)) != PS_OK) {
            break;
        }
        mp.parent = s->seq; /* keep the forest flat */
        if ((st = ps_store_profile_put(w->t, &mp)) != PS_OK)
            break;
        st = audit_row(w->t, in, PS_AUDIT_MERGE, PS_VIOL_NONE, m, s->seq, tie);
    }
    for (size_t i = 0; st == PS_OK && i < maps.count; i++) {
        pmap_row *r = &maps.rows[i];
        st = ps_store_pmap_move(w->t, q, s->seq, r->type, r->value, r->value_len);
    }
    if (st == PS_OK) {
        s->member_count += qp.member_count;
        s->mapping_count += qp.mapping_count;
        w->out->merges++;
        /* the merged profile's cached value sets now belong to the survivor */
        for (size_t i = 0; i < w->cache_count; i++)
            if (w->cache[i].profile == q)
                w->cache[i].profile = 0;
    }
    for (size_t i = 0; i < maps.count; i++) {
        free(maps.rows[i].type);
        free(maps.rows[i].value);
    }
    free(maps.rows);
    free(members.items);
    return st;
}

static ps_status add_mapping(work *w, ps_profile *s, size_t i)
{
    const ps_resolve_in *in = w->in;
    const ps_ident *id = &in->ids[i];
    ps_mapping m = {
        .profile = s->seq,
        .map_seq = ps_txn_next(w->t, PS_CTR_MAPPING),
        .first_seen_ms = in->timestamp_ms,
        .created_ms = in->received_ms,
    };
    copy_id(m.source_id, sizeof m.source_id, in->source_id);
    copy_id(m.first_message_id, sizeof m.first_message_id, in->message_id);
    ps_status st =
        ps_store_ident_put(w->t, (uint8_t)in->collection, id->type, id->value, id->value_len, &m);
    if (st == PS_OK)
        st = ps_store_pmap_put(w->t, s->seq, id->type, id->value, id->value_len, &m);
    if (st == PS_OK)
        st = ps_store_type_seen(w->t, id->type, (uint8_t)in->collection);
    if (st != PS_OK)
        return st;
    s->mapping_count++;
    w->owner[i] = s->seq;
    w->out->mappings++;
    return audit_row(w->t, in, PS_AUDIT_MAPPING, PS_VIOL_NONE, s->seq, s->seq, id);
}

/* Records violation `v` of the event being resolved (violation_row) and counts it. */
static ps_status record_violation(work *w, ps_violation v, const ps_ident *id, uint64_t profile,
                                  uint64_t canonical, const char *limit_type)
{
    w->out->violations++;
    return violation_row(w->t, w->in, v, id, profile, canonical, limit_type);
}

static ps_status violation(work *w, ps_violation v, size_t i, uint64_t profile)
{
    return record_violation(w, v, i == SIZE_MAX ? NULL : &w->in->ids[i], profile, profile, NULL);
}

/* A merge the rules refused: the row names the profile left apart (`q`), the one the event
 * went on with (`s`) and the identifier that tied `q` to the event. */
static ps_status refused_merge(work *w, ps_violation v, uint64_t q, uint64_t s)
{
    return record_violation(w, v, tie_of(w, q), q, s, NULL);
}

/* Whether dropped identifier `d` has now been seen with two people: the profile holding it
 * holds a value of a type the settings allow one of per profile (a userId; with a window, one
 * first seen inside it) and the event carries another value of that type. By the settings'
 * own account no one person has both. */
static ps_status seen_with_another(work *w, size_t d, bool *shared)
{
    *shared = false;
    for (size_t i = 0; i < w->in->count && !*shared; i++) {
        const ps_ident *id = &w->in->ids[i];
        const ps_type_rule *rule = ps_rules_type(w->rules, id->type);
        if (!w->active[i] || rule->limit != 1)
            continue;
        type_count *tc;
        ps_status st = held_values(w, w->owner[d], id->type, &tc);
        if (st != PS_OK)
            return st;
        int64_t t = w->in->timestamp_ms;
        size_t others = 0;
        for (size_t k = 0; k < tc->count; k++) {
            const held *h = &tc->values[k];
            bool in_window = rule->window_ms == 0 ||
                             (h->first_seen_ms > t - rule->window_ms && h->first_seen_ms <= t);
            if (strlen(h->value) == id->value_len &&
                memcmp(h->value, id->value, id->value_len) == 0) {
                others = 0; /* the profile holds the event's value: no one else's */
                break;
            }
            others += in_window;
        }
        *shared = others > 0;
    }
    return PS_OK;
}

/* Marks identifier `d` shared: with block_shared_values it matches nothing from now on. */
static ps_status mark_shared(work *w, size_t d)
{
    const ps_ident *id = &w->in->ids[d];
    ps_mapping m;
    ps_status st = ps_store_ident_get(w->t, (uint8_t)w->in->collection, id->type, id->value,
                                      id->value_len, &m);
    if (st != PS_OK)
        return st;
    m.shared = true;
    st = ps_store_ident_put(w->t, (uint8_t)w->in->collection, id->type, id->value, id->value_len,
                            &m);
    return st == PS_OK ? violation(w, PS_VIOL_SHARED, d, w->owner[d]) : st;
}

/* A brand-new profile takes the event's values up to each type's limit, in order. */
static ps_status map_new_profile(work *w, ps_profile *s)
{
    ps_status st = PS_OK;
    for (size_t i = 0; i < w->in->count && st == PS_OK; i++) {
        if (!w->active[i])
            continue;
        const ps_type_rule *rule = ps_rules_type(w->rules, w->in->ids[i].type);
        size_t same = 0;
        for (size_t k = 0; k < i; k++)
            if (w->active[k] && w->owner[k] == s->seq &&
                strcmp(w->in->ids[k].type, w->in->ids[i].type) == 0)
                same++;
        if (same >= rule->limit) {
            w->active[i] = false;
            st = record_violation(
                w, rule->frequency == PS_FREQ_EVER ? PS_VIOL_VALUE_LIMIT : PS_VIOL_TIME_LIMIT,
                &w->in->ids[i], s->seq, s->seq, w->in->ids[i].type);
        } else if (s->mapping_count >= ps_rules_options_get(w->rules)->mapping_limit) {
            w->active[i] = false;
            st = violation(w, PS_VIOL_MAPPING_LIMIT, i, s->seq);
        } else {
            st = add_mapping(w, s, i);
        }
    }
    return st;
}

/* ---- kept apart: meta "apart/<a>-<b>" (16 hex digits each, a < b) ---- */

#define APART_PREFIX "apart/"

typedef struct apart_ctx {
    ps_txn *t;
    uint64_t a, b; /* canonical profiles about to merge */
    bool found;
    ps_status st;
} apart_ctx;

static bool apart_visit(void *ud, ps_slice key, ps_slice value)
{
    (void)value;
    apart_ctx *c = ud;
    unsigned long long x, y;
    char k[64];
    size_t n = key.len < sizeof k - 1 ? key.len : sizeof k - 1;
    memcpy(k, key.ptr, n);
    k[n] = 0;
    if (sscanf(k, APART_PREFIX "%16llx-%16llx", &x, &y) != 2)
        return true;
    uint64_t cx, cy;
    if ((c->st = ps_graph_find(c->t, x, &cx)) != PS_OK ||
        (c->st = ps_graph_find(c->t, y, &cy)) != PS_OK) {
        if (c->st != PS_ECORRUPT)
            return false;
        c->st = PS_OK; /* one of them is gone (erased): nothing to keep apart */
        return true;
    }
    c->found = (cx == c->a && cy == c->b) || (cx == c->b && cy == c->a);
    return !c->found;
}

/* Whether an operator asked to keep the profiles of canonicals `a` and `b` apart. */
static ps_status kept_apart(ps_txn *t, uint64_t a, uint64_t b, bool *apart)
{
    apart_ctx c = {t, a, b, false, PS_OK};
    ps_status st = ps_store_meta_scan(t, APART_PREFIX, apart_visit, &c);
    *apart = c.found;
    return st != PS_OK ? st : c.st;
}

static ps_status resolve(work *w, ps_profile *s)
{
    const ps_resolve_in *in = w->in;
    const ps_rules_options *opt = ps_rules_options_get(w->rules);
    ps_status st = PS_OK;
    size_t active_count = 0;
    for (size_t i = 0; i < in->count && st == PS_OK; i++) {
        const ps_ident *id = &in->ids[i];
        if (id->flag != PS_IDENT_OK) {
            ps_violation v = id->flag == PS_IDENT_BLOCKED    ? PS_VIOL_BLOCKED
                             : id->flag == PS_IDENT_TOO_LONG ? PS_VIOL_VALUE_TOO_LONG
                                                             : PS_VIOL_BAD_ENCODING;
            st = violation(w, v, i, 0);
            continue;
        }
        bool shared = false;
        /* the hash computed ahead is of the identifier's own collection */
        uint64_t hash = id->collection == (uint8_t)in->collection ? id->key_hash : 0;
        st = lookup(w->t, (uint8_t)in->collection, id->type, id->value, id->value_len, hash,
                    &w->owner[i], &shared);
        if (st == PS_ENOTFOUND) {
            w->owner[i] = 0;
            st = PS_OK;
        } else if (st != PS_OK) {
            break;
        } else if (shared && opt->block_shared_values) {
            st = violation(w, PS_VIOL_SHARED, i, w->owner[i]);
            continue;
        }
        w->active[i] = true;
        active_count++;
    }
    if (st != PS_OK)
        return st;
    if (active_count == 0)
        return violation(w, PS_VIOL_NO_IDENTIFIERS, SIZE_MAX, 0);

    uint64_t *set = ps_xmalloc(in->count * sizeof *set);
    for (;;) {
        size_t n = matched_profiles(w, set);
        if (n == 0) {
            if ((st = create_profile(w, s)) == PS_OK)
                st = map_new_profile(w, s);
            break;
        }
        ps_violation found;
        char over[PS_TYPE_MAX + 1];
        if ((st = find_violation(w, set, n, &found, over)) != PS_OK)
            break;
        if (found == PS_VIOL_NONE) {
            if ((st = ps_store_profile_get(w->t, set[0], s)) != PS_OK)
                break;
            for (size_t p = 1; p < n && st == PS_OK; p++) {
                ps_profile q;
                if ((st = ps_store_profile_get(w->t, set[p], &q)) != PS_OK)
                    break;
                if (s->member_count - 1 + q.member_count > opt->merge_limit) {
                    st = refused_merge(w, PS_VIOL_MERGE_LIMIT, set[p], s->seq);
                    continue;
                }
                bool apart = false;
                if ((st = kept_apart(w->t, s->seq, set[p], &apart)) != PS_OK)
                    break;
                if (apart) {
                    st = refused_merge(w, PS_VIOL_KEPT_APART, set[p], s->seq);
                    continue;
                }
                st = merge_into(w, s, set[p]);
                for (size_t i = 0; i < in->count; i++)
                    if (w->owner[i] == set[p])
                        w->owner[i] = s->seq;
            }
            for (size_t i = 0; i < in->count && st == PS_OK; i++) {
                if (!w->active[i] || w->owner[i] != 0)
                    continue;
                if (s->mapping_count >= opt->mapping_limit)
                    st = violation(w, PS_VIOL_MAPPING_LIMIT, i, s->seq);
                else
                    st = add_mapping(w, s, i);
            }
            break;
        }
        /* the row names the profile that holds the dropped identifier (0: a new value) */
        size_t dropped = demote(w);
        if ((st = record_violation(w, found, &in->ids[dropped], w->owner[dropped],
                                   w->owner[dropped], over)) != PS_OK)
            break;
        if (opt->block_shared_values && w->owner[dropped] != 0) {
            bool shared;
            if ((st = seen_with_another(w, dropped, &shared)) != PS_OK ||
                (shared && (st = mark_shared(w, dropped)) != PS_OK))
                break;
        }
        /* a single identifier either matches the one profile that holds it or
         * creates a new one, so demotion never empties the event */
        size_t left = 0;
        for (size_t i = 0; i < in->count; i++)
            left += w->active[i];
        PS_ASSERT(left > 0);
    }
    free(set);
    return st;
}

ps_status ps_graph_resolve(ps_txn *t, const ps_rules *rules, const ps_resolve_in *in,
                           ps_resolve_out *out)
{
    bool *promoted = out->promoted;
    memset(out, 0, sizeof *out);
    out->promoted = promoted;
    if (promoted)
        memset(promoted, 0, in->count * sizeof *promoted);
    if (in->count == 0)
        return PS_OK;
    work w = {.t = t, .rules = rules, .in = in, .out = out};
    ps_arena_init(&w.arena);
    w.owner = ps_arena_alloc(&w.arena, in->count * sizeof *w.owner);
    memset(w.owner, 0, in->count * sizeof *w.owner);
    w.active = ps_arena_alloc(&w.arena, in->count * sizeof *w.active);
    memset(w.active, 0, in->count * sizeof *w.active);
    ps_profile s;
    memset(&s, 0, sizeof s);
    ps_status st = resolve(&w, &s);
    if (st == PS_OK && s.seq != 0) {
        s.updated_ms = in->received_ms;
        copy_id(s.last_message_id, sizeof s.last_message_id, in->message_id);
        copy_id(s.last_source_id, sizeof s.last_source_id, in->source_id);
        st = ps_store_profile_put(t, &s);
        out->profile = s.seq;
        for (size_t i = 0; promoted && i < in->count; i++)
            promoted[i] = w.active[i] && w.owner[i] == s.seq;
    }
    work_clear(&w);
    return st;
}

/* ---- unmerge ---- */

typedef struct grp_ctx {
    ps_txn *t;
    uint64_t *seqs, *into; /* members of the canonical and what each was merged into */
    size_t count, cap;
    ps_status st;
} grp_ctx;

static bool grp_member(void *ud, uint64_t canonical, uint64_t member)
{
    (void)canonical;
    grp_ctx *c = ud;
    ps_profile p;
    if ((c->st = ps_store_profile_get(c->t, member, &p)) != PS_OK)
        return false;
    if (c->count == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->seqs = ps_xrealloc(c->seqs, c->cap * sizeof *c->seqs);
        c->into = ps_xrealloc(c->into, c->cap * sizeof *c->into);
    }
    c->seqs[c->count] = member;
    c->into[c->count++] = p.merged_into;
    return true;
}

static bool in_list(const uint64_t *v, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

typedef struct move_ctx {
    ps_txn *t;
    const ps_unmerge_plan *plan;
    uint8_t collection; /* of the canonical, as of every profile merged into it */
    pmap_list rows;
    ps_status st;
} move_ctx;

/* The canonical's identifiers whose mapping names a profile of the group move with it. */
static bool pick_moving(void *ud, uint64_t profile, const char *type, const char *value,
                        size_t value_len, int64_t first_seen_ms)
{
    move_ctx *c = ud;
    ps_mapping m;
    if ((c->st = ps_store_ident_get(c->t, c->collection, type, value, value_len, &m)) != PS_OK)
        return false;
    if (!in_list(c->plan->group, c->plan->group_count, m.profile))
        return true;
    return collect_pmap(&c->rows, profile, type, value, value_len, first_seen_ms);
}

void ps_unmerge_plan_clear(ps_unmerge_plan *plan)
{
    free(plan->group);
    for (size_t i = 0; i < plan->identifier_count; i++)
        free(plan->identifiers[i]);
    free(plan->identifiers);
    memset(plan, 0, sizeof *plan);
}

ps_status ps_graph_unmerge(ps_txn *t, uint64_t seq, bool apply, bool keep_apart,
                           ps_unmerge_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    ps_profile q;
    ps_status st = ps_store_profile_get(t, seq, &q);
    if (st != PS_OK)
        return st;
    if (q.parent == 0)
        return PS_EINVAL; /* canonical: not merged into anything */
    plan->profile = seq;
    plan->canonical = q.parent;
    /* the group: `seq` and every member whose chain of merges leads to it */
    grp_ctx g = {t, NULL, NULL, 0, 0, PS_OK};
    st = ps_store_member_scan(t, plan->canonical, grp_member, &g);
    if (st == PS_OK)
        st = g.st;
    plan->group = ps_xmalloc((g.count + 1) * sizeof *plan->group);
    plan->group[plan->group_count++] = seq;
    for (bool grew = true; st == PS_OK && grew;) {
        grew = false;
        for (size_t i = 0; i < g.count; i++)
            if (!in_list(plan->group, plan->group_count, g.seqs[i]) &&
                in_list(plan->group, plan->group_count, g.into[i])) {
                plan->group[plan->group_count++] = g.seqs[i];
                grew = true;
            }
    }
    free(g.seqs);
    free(g.into);
    move_ctx mc = {t, plan, q.collection, {NULL, 0}, PS_OK};
    if (st == PS_OK)
        st = ps_store_pmap_scan(t, plan->canonical, NULL, pick_moving, &mc);
    if (st == PS_OK)
        st = mc.st;
    plan->identifiers = ps_xmalloc((mc.rows.count + 1) * sizeof *plan->identifiers);
    for (size_t i = 0; i < mc.rows.count; i++) {
        size_t n = strlen(mc.rows.rows[i].type) + mc.rows.rows[i].value_len + 2;
        char *text = ps_xmalloc(n);
        snprintf(text, n, "%s:%.*s", mc.rows.rows[i].type, (int)mc.rows.rows[i].value_len,
                 mc.rows.rows[i].value);
        plan->identifiers[plan->identifier_count++] = text;
    }
    if (st == PS_OK && apply) {
        ps_profile c;
        st = ps_store_profile_get(t, plan->canonical, &c);
        for (size_t i = 0; st == PS_OK && i < mc.rows.count; i++) {
            pmap_row *r = &mc.rows.rows[i];
            st = ps_store_pmap_move(t, plan->canonical, seq, r->type, r->value, r->value_len);
        }
        ps_resolve_in in = {.collection = c.collection, .message_id = "", .source_id = ""};
        for (size_t i = 0; st == PS_OK && i < plan->group_count; i++) {
            uint64_t m = plan->group[i];
            ps_profile mp;
            if ((st = ps_store_member_del(t, plan->canonical, m)) != PS_OK ||
                (st = ps_store_member_put(t, seq, m)) != PS_OK ||
                (st = ps_store_profile_get(t, m, &mp)) != PS_OK)
                break;
            if (m == seq) {
                mp.parent = 0;
                mp.merged_into = 0;
                mp.merged_ms = 0;
                mp.merged_by_message_id[0] = 0;
                mp.member_count = (uint32_t)plan->group_count;
                mp.mapping_count = (uint32_t)mc.rows.count;
            } else {
                mp.parent = seq;
            }
            if ((st = ps_store_profile_put(t, &mp)) == PS_OK)
                st = audit_row(t, &in, PS_AUDIT_UNMERGE, PS_VIOL_NONE, m, seq, NULL);
        }
        if (st == PS_OK) {
            c.member_count -= (uint32_t)plan->group_count;
            c.mapping_count -= (uint32_t)mc.rows.count;
            st = ps_store_profile_put(t, &c);
        }
        if (st == PS_OK && keep_apart) {
            char key[64];
            uint64_t a = seq < plan->canonical ? seq : plan->canonical,
                     b = seq < plan->canonical ? plan->canonical : seq;
            snprintf(key, sizeof key, APART_PREFIX "%016llx-%016llx", (unsigned long long)a,
                     (unsigned long long)b);
            st = ps_store_meta_put(t, key, PS_SLICE_STR("1"));
        }
    }
    for (size_t i = 0; i < mc.rows.count; i++) {
        free(mc.rows.rows[i].type);
        free(mc.rows.rows[i].value);
    }
    free(mc.rows.rows);
    if (st != PS_OK)
        ps_unmerge_plan_clear(plan);
    return st;
}
