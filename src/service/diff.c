/* SPDX-License-Identifier: MIT */
/* diff: snapshots of the identity graph as a partition of its identifiers, and their
 * difference (see ps/diff.h). Identifiers are kept in the ident table's key order
 * (collection, type, NUL, value), so two snapshots merge-join in one pass. */
#include "ps/diff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/event.h"
#include "ps/graph.h"
#include "ps/graphdb.h"
#include "ps/records.h"

typedef struct snap_id {
    char *key; /* collection byte, type, NUL, value */
    size_t key_len;
    uint64_t canon;
} snap_id;

typedef struct snap_seg {
    uint64_t canon;
    char segment_id[PS_SEGMENT_ID_LEN + 1];
} snap_seg;

struct ps_snapshot {
    snap_id *ids;
    size_t count, cap;
    snap_seg *segs; /* by canonical seq, ascending */
    size_t nsegs;
    uint64_t violations[PS_VIOL__COUNT];
    ps_txn *t;
    ps_status st;
};

static bool take_ident(void *ud, uint8_t coll, const char *type, const char *value,
                       size_t value_len, const ps_mapping *m)
{
    ps_snapshot *s = ud;
    uint64_t canon;
    if ((s->st = ps_graph_find(s->t, m->profile, &canon)) != PS_OK)
        return false;
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->ids = ps_xrealloc(s->ids, s->cap * sizeof *s->ids);
    }
    size_t tl = strlen(type), kl = 1 + tl + 1 + value_len;
    char *k = ps_xmalloc(kl);
    k[0] = (char)coll;
    memcpy(k + 1, type, tl + 1);
    memcpy(k + 2 + tl, value, value_len);
    s->ids[s->count++] = (snap_id){k, kl, canon};
    return true;
}

static bool take_violation(void *ud, const ps_audit_rec *r)
{
    ps_snapshot *s = ud;
    if (r->kind == PS_AUDIT_VIOLATION && r->reason < PS_VIOL__COUNT)
        s->violations[r->reason]++;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

ps_status ps_snapshot_take(ps_txn *t, ps_snapshot **out)
{
    ps_snapshot *s = ps_xcalloc(1, sizeof *s);
    s->t = t;
    ps_status st = ps_store_ident_scan(t, take_ident, s);
    if (st == PS_OK)
        st = s->st;
    if (st == PS_OK)
        st = ps_store_audit_scan(t, 1, take_violation, s);
    /* the canonical profiles and their segment_ids */
    uint64_t *canons = ps_xmalloc((s->count + 1) * sizeof *canons);
    for (size_t i = 0; i < s->count; i++)
        canons[i] = s->ids[i].canon;
    qsort(canons, s->count, sizeof *canons, cmp_u64);
    s->segs = ps_xmalloc((s->count + 1) * sizeof *s->segs);
    for (size_t i = 0; i < s->count && st == PS_OK; i++) {
        if (i && canons[i] == canons[i - 1])
            continue;
        ps_profile p;
        if ((st = ps_store_profile_get(t, canons[i], &p)) != PS_OK)
            break;
        snap_seg *g = &s->segs[s->nsegs++];
        g->canon = canons[i];
        snprintf(g->segment_id, sizeof g->segment_id, "%s", p.segment_id);
    }
    free(canons);
    s->t = NULL;
    if (st != PS_OK) {
        ps_snapshot_free(s);
        return st;
    }
    *out = s;
    return PS_OK;
}

void ps_snapshot_free(ps_snapshot *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->count; i++)
        free(s->ids[i].key);
    free(s->ids);
    free(s->segs);
    free(s);
}

static const char *segment_of(const ps_snapshot *s, uint64_t canon)
{
    size_t lo = 0, hi = s->nsegs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->segs[mid].canon < canon)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->nsegs && s->segs[lo].canon == canon ? s->segs[lo].segment_id : "";
}

static int key_cmp(const snap_id *a, const snap_id *b)
{
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);
    return c ? c : (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

/* "type:value" (accounts: "accounts/type:value") as a JSON string. */
static void ident_json(ps_buf *out, const snap_id *id)
{
    size_t tl = strlen(id->key + 1);
    char text[PS_TYPE_MAX + PS_VALUE_MAX + 16];
    int n = snprintf(text, sizeof text, "%s%s:%.*s", id->key[0] ? "accounts/" : "", id->key + 1,
                     (int)(id->key_len - tl - 2), id->key + tl + 2);
    ps_buf_json_str(out, text, n > 0 ? (size_t)n : 0);
}

typedef struct pair {
    uint64_t before, after; /* canonical seqs */
    const snap_id *id;
} pair;

static int by_before(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    if (x->before != y->before)
        return x->before < y->before ? -1 : 1;
    return x->after < y->after ? -1 : x->after > y->after;
}

static int by_after(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    if (x->after != y->after)
        return x->after < y->after ? -1 : 1;
    return x->before < y->before ? -1 : x->before > y->before;
}

#define IDS_SHOWN 5

/* Groups `pairs` (sorted by the group side) and lists the groups whose other side has more
 * than one profile: splits (grouped by `before`) or joins (by `after`). Marks their
 * identifiers in `moved`. */
static uint64_t changed_groups(pair *pairs, size_t n, bool by_before_side, const ps_snapshot *gs,
                               const ps_snapshot *os, size_t first_n, ps_buf *out, bool *moved,
                               const snap_id *base)
{
    uint64_t groups = 0;
    for (size_t i = 0; i < n;) {
        uint64_t g = by_before_side ? pairs[i].before : pairs[i].after;
        size_t j = i, distinct = 0;
        uint64_t last = 0;
        for (; j < n && (by_before_side ? pairs[j].before : pairs[j].after) == g; j++) {
            uint64_t o = by_before_side ? pairs[j].after : pairs[j].before;
            if (j == i || o != last)
                distinct++;
            last = o;
        }
        if (distinct > 1) {
            for (size_t k = i; k < j; k++)
                moved[pairs[k].id - base] = true;
            if (groups < first_n) {
                ps_buf_printf(out, "%s{\"segment_id\":\"%s\",\"%s\":[", groups ? "," : "",
                              segment_of(gs, g), by_before_side ? "into" : "from");
                uint64_t prev = 0;
                size_t listed = 0;
                for (size_t k = i; k < j; k++) {
                    uint64_t o = by_before_side ? pairs[k].after : pairs[k].before;
                    if (k > i && o == prev)
                        continue;
                    ps_buf_printf(out, "%s\"%s\"", listed++ ? "," : "", segment_of(os, o));
                    prev = o;
                }
                ps_buf_puts(out, "],\"identifiers\":[");
                for (size_t k = i; k < j && k < i + IDS_SHOWN; k++) {
                    if (k > i)
                        ps_buf_putc(out, ',');
                    ident_json(out, pairs[k].id);
                }
                ps_buf_printf(out, "],\"identifier_count\":%zu}", j - i);
            }
            groups++;
        }
        i = j;
    }
    return groups;
}

static void violations_json(ps_buf *out, const uint64_t *v)
{
    ps_buf_putc(out, '{');
    bool any = false;
    for (int r = 0; r < PS_VIOL__COUNT; r++)
        if (v[r]) {
            ps_buf_printf(out, "%s\"%s\":%llu", any ? "," : "", ps_violation_name((ps_violation)r),
                          (unsigned long long)v[r]);
            any = true;
        }
    ps_buf_putc(out, '}');
}

void ps_snapshot_diff(const ps_snapshot *before, const ps_snapshot *after, size_t first_n,
                      ps_buf *out, ps_diff_counts *counts)
{
    memset(counts, 0, sizeof *counts);
    counts->profiles_before = before->nsegs;
    counts->profiles_after = after->nsegs;
    pair *pairs = ps_xmalloc((before->count + 1) * sizeof *pairs);
    size_t np = 0, i = 0, j = 0;
    ps_buf added, gone;
    ps_buf_init(&added);
    ps_buf_init(&gone);
    while (i < before->count || j < after->count) {
        int c = i == before->count  ? 1
                : j == after->count ? -1
                                    : key_cmp(&before->ids[i], &after->ids[j]);
        if (c == 0) {
            pairs[np++] = (pair){before->ids[i].canon, after->ids[j].canon, &before->ids[i]};
            i++;
            j++;
        } else if (c < 0) {
            if (counts->identifiers_gone++ < first_n) {
                if (gone.len)
                    ps_buf_putc(&gone, ',');
                ident_json(&gone, &before->ids[i]);
            }
            i++;
        } else {
            if (counts->identifiers_added++ < first_n) {
                if (added.len)
                    ps_buf_putc(&added, ',');
                ident_json(&added, &after->ids[j]);
            }
            j++;
        }
    }
    bool *moved = ps_xcalloc(before->count + 1, sizeof *moved);
    ps_buf_printf(out, "{\"profiles_before\":%llu,\"profiles_after\":%llu,\"splits\":[",
                  (unsigned long long)counts->profiles_before,
                  (unsigned long long)counts->profiles_after);
    qsort(pairs, np, sizeof *pairs, by_before);
    counts->splits =
        changed_groups(pairs, np, true, before, after, first_n, out, moved, before->ids);
    ps_buf_puts(out, "],\"joins\":[");
    qsort(pairs, np, sizeof *pairs, by_after);
    counts->joins =
        changed_groups(pairs, np, false, after, before, first_n, out, moved, before->ids);
    for (size_t k = 0; k < before->count; k++)
        counts->identifiers_moved += moved[k];
    ps_buf_printf(out,
                  "],\"split_count\":%llu,\"join_count\":%llu,\"identifiers_moved\":%llu,"
                  "\"identifiers_added\":{\"count\":%llu,\"first\":[",
                  (unsigned long long)counts->splits, (unsigned long long)counts->joins,
                  (unsigned long long)counts->identifiers_moved,
                  (unsigned long long)counts->identifiers_added);
    ps_buf_append(out, added.ptr, added.len);
    ps_buf_printf(out, "]},\"identifiers_gone\":{\"count\":%llu,\"first\":[",
                  (unsigned long long)counts->identifiers_gone);
    ps_buf_append(out, gone.ptr, gone.len);
    ps_buf_puts(out, "]},\"violations_before\":");
    violations_json(out, before->violations);
    ps_buf_puts(out, ",\"violations_after\":");
    violations_json(out, after->violations);
    ps_buf_putc(out, '}');
    free(moved);
    free(pairs);
    ps_buf_clear(&added);
    ps_buf_clear(&gone);
}
