/* SPDX-License-Identifier: MIT */
/* profile: read model over one read transaction (see profile.h). */
#include "ps/profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ps/clock.h"
#include "ps/event.h"
#include "ps/graph.h"
#include "ps/graphdb.h"
#include "ps/msglog.h"
#include "ps/records.h"
#include "ps/text.h"

static bool is_segment_id(const char *s, size_t len)
{
    if (len != PS_SEGMENT_ID_LEN || (memcmp(s, "use_", 4) != 0 && memcmp(s, "acc_", 4) != 0))
        return false;
    for (size_t i = 4; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return false;
    }
    return true;
}

ps_status ps_profile_find(ps_txn *t, const ps_rules *r, int collection, const char *ident,
                          size_t len, ps_profile *out)
{
    uint64_t canonical;
    ps_status st;
    const char *colon = memchr(ident, ':', len);
    if (colon == NULL) {
        if (!is_segment_id(ident, len))
            return PS_EINVAL;
        int coll = ident[0] == 'a' ? PS_ACCOUNTS : PS_USERS;
        if (collection >= 0 && coll != collection)
            return PS_ENOTFOUND;
        char sid[PS_SEGMENT_ID_LEN + 1];
        memcpy(sid, ident, len);
        sid[len] = 0;
        uint64_t seq;
        if ((st = ps_store_segid_get(t, sid, &seq)) != PS_OK)
            return st;
        if ((st = ps_graph_find(t, seq, &canonical)) != PS_OK)
            return st;
        return ps_store_profile_get(t, canonical, out);
    }
    const char *type = ident, *value = colon + 1;
    size_t tl = (size_t)(colon - ident), vl = len - tl - 1;
    ps_trim(&type, &tl);
    ps_trim(&value, &vl);
    if (tl == 10 && strncasecmp(type, "segment_id", 10) == 0 && is_segment_id(value, vl))
        return ps_profile_find(t, r, collection, value, vl, out); /* "segment_id:use_…" */
    if (tl == 0 || tl > PS_TYPE_MAX || vl == 0 || vl > PS_VALUE_MAX)
        return PS_EINVAL;
    if (memchr(value, 0, vl) || memchr(type, 0, tl))
        return PS_EINVAL;
    char tbuf[PS_TYPE_MAX + 1], vbuf[PS_VALUE_MAX + 1];
    memcpy(tbuf, type, tl);
    tbuf[tl] = 0;
    ps_ascii_lower(tbuf, tl);
    memcpy(vbuf, value, vl);
    vbuf[vl] = 0;
    const ps_type_rule *rule = ps_rules_type(r, tbuf);
    if (rule->lowercase)
        ps_ascii_lower(vbuf, vl);
    if (collection >= 0 || ps_rules_type_configured(r, tbuf)) {
        int coll = collection >= 0 ? collection : (int)rule->collection;
        if ((st = ps_graph_lookup(t, (uint8_t)coll, tbuf, vbuf, vl, &canonical)) != PS_OK)
            return st;
        return ps_store_profile_get(t, canonical, out);
    }
    /* A type the settings do not name has no collection of its own: a group call's
     * externalIds can put it in accounts. Look first where the space first saw it, then in
     * the other collection, as the `types` table keeps only the first. */
    uint8_t first = PS_USERS;
    if ((st = ps_store_type_get(t, tbuf, &first)) != PS_OK && st != PS_ENOTFOUND)
        return st;
    first = first == PS_ACCOUNTS ? PS_ACCOUNTS : PS_USERS;
    st = ps_graph_lookup(t, first, tbuf, vbuf, vl, &canonical);
    if (st == PS_ENOTFOUND)
        st = ps_graph_lookup(t, first == PS_USERS ? PS_ACCOUNTS : PS_USERS, tbuf, vbuf, vl,
                             &canonical);
    if (st != PS_OK)
        return st;
    return ps_store_profile_get(t, canonical, out);
}

typedef struct u64_vec {
    uint64_t *items;
    size_t count;
} u64_vec;

static void vec_push(u64_vec *v, uint64_t x)
{
    if ((v->count & (v->count - 1)) == 0) /* grow at powers of two */
        v->items = ps_xrealloc(v->items, (v->count ? v->count * 2 : 1) * sizeof *v->items);
    v->items[v->count++] = x;
}

static bool push_member(void *ud, uint64_t canonical, uint64_t member)
{
    (void)canonical;
    vec_push(ud, member);
    return true;
}

ps_status ps_profile_members(ps_txn *t, uint64_t canonical, uint64_t **out, size_t *count)
{
    u64_vec v = {NULL, 0};
    ps_status st = ps_store_member_scan(t, canonical, push_member, &v);
    if (st != PS_OK) {
        free(v.items);
        return st;
    }
    *out = v.items;
    *count = v.count;
    return PS_OK;
}

typedef struct extid_ctx {
    ps_txn *t;
    uint8_t collection;
    const char *from; /* "type\0value": the first identifier to visit; NULL: all */
    size_t from_len;
    ps_extid_fn fn;
    void *ud;
    ps_status st;
} extid_ctx;

static int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

/* Whether identifier (type, value) sorts before `from` ("type\0value"), as the store orders
 * them. */
static bool before_from(const extid_ctx *c, const char *type, const char *value, size_t value_len)
{
    char key[PS_TYPE_MAX + 1 + PS_VALUE_MAX];
    size_t tl = strlen(type);
    if (tl > PS_TYPE_MAX || value_len > PS_VALUE_MAX)
        return false; /* longer than anything stored: never skipped */
    memcpy(key, type, tl + 1);
    memcpy(key + tl + 1, value, value_len);
    return key_cmp(key, tl + 1 + value_len, c->from, c->from_len) < 0;
}

static bool visit_pmap(void *ud, const char *type, const char *value, size_t value_len,
                       const ps_mapping *details)
{
    extid_ctx *c = ud;
    if (value_len > PS_VALUE_MAX) {
        c->st = PS_ECORRUPT; /* longer than any value ingest keeps */
        return false;
    }
    if (c->from && before_from(c, type, value, value_len))
        return true;
    char tcopy[PS_TYPE_MAX + 1], vcopy[PS_VALUE_MAX + 1];
    size_t tl = strnlen(type, PS_TYPE_MAX);
    memcpy(tcopy, type, tl);
    tcopy[tl] = 0;
    memcpy(vcopy, value, value_len);
    vcopy[value_len] = 0;
    ps_mapping m;
    if (details) { /* the row carries what is shown */
        m = *details;
    } else { /* a row from before: the identifier's own row has it */
        c->st = ps_store_ident_get(c->t, c->collection, tcopy, vcopy, value_len, &m);
        if (c->st == PS_ENOTFOUND)
            c->st = PS_ECORRUPT; /* every pmap row has an ident row */
        if (c->st != PS_OK)
            return false;
    }
    ps_extid x = {tcopy, vcopy, value_len, c->collection, &m};
    return c->fn(c->ud, &x);
}

ps_status ps_profile_external_ids_from(ps_txn *t, const ps_profile *canonical, const char *from,
                                       size_t from_len, ps_extid_fn fn, void *ud)
{
    extid_ctx c = {t, canonical->collection, from, from_len, fn, ud, PS_OK};
    ps_status st = ps_store_pmap_scan_details(t, canonical->seq, visit_pmap, &c);
    return st != PS_OK ? st : c.st;
}

ps_status ps_profile_external_ids(ps_txn *t, const ps_profile *canonical, ps_extid_fn fn, void *ud)
{
    return ps_profile_external_ids_from(t, canonical, NULL, 0, fn, ud);
}

ps_status ps_profile_get(ps_txn *t, uint64_t seq, ps_profile *out)
{
    return ps_store_profile_get(t, seq, out);
}

ps_status ps_profile_scan(ps_txn *t, uint64_t from, ps_profile_fn fn, void *ud)
{
    return ps_store_profile_scan(t, from, fn, ud);
}

ps_status ps_profile_scan_desc(ps_txn *t, uint64_t before, ps_profile_fn fn, void *ud)
{
    return ps_store_profile_scan_desc(t, before, fn, ud);
}

/* ---- traits ---- */

typedef struct trait_row {
    ps_trait_item item;
    bool deleted;
} trait_row;

typedef struct trait_acc {
    trait_row *rows;
    size_t count, cap;
} trait_acc;

static bool collect_trait(void *ud, const char *key, size_t key_len, const ps_trait_rec *r)
{
    trait_acc *a = ud;
    if (a->count == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->rows = ps_xrealloc(a->rows, a->cap * sizeof *a->rows);
    }
    trait_row *row = &a->rows[a->count++];
    ps_trait_item *it = &row->item;
    it->key = ps_xstrndup(key, key_len);
    it->key_len = key_len;
    it->json = ps_xstrndup((const char *)r->json.ptr, r->json.len);
    it->json_len = r->json.len;
    size_t sl =
        r->source_id.len < sizeof it->source_id - 1 ? r->source_id.len : sizeof it->source_id - 1;
    memcpy(it->source_id, r->source_id.ptr, sl);
    it->source_id[sl] = 0;
    it->updated_ms = r->updated_ms;
    it->write_seq = r->write_seq;
    row->deleted = r->deleted;
    return true;
}

static bool same_key(const ps_trait_item *a, const ps_trait_item *b)
{
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

/* By key, then newest write first (the later write wins). */
static int cmp_key_then_newest(const void *x, const void *y)
{
    const ps_trait_item *a = &((const trait_row *)x)->item, *b = &((const trait_row *)y)->item;
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);
    if (c)
        return c;
    if (a->key_len != b->key_len)
        return a->key_len < b->key_len ? -1 : 1;
    return a->write_seq > b->write_seq ? -1 : a->write_seq < b->write_seq ? 1 : 0;
}

ps_status ps_profile_traits(ps_txn *t, const uint64_t *members, size_t n, ps_trait_list *out)
{
    trait_acc a = {NULL, 0, 0};
    ps_status st = PS_OK;
    for (size_t i = 0; i < n && st == PS_OK; i++)
        st = ps_store_trait_scan(t, members[i], NULL, 0, collect_trait, &a);
    if (n > 1 && a.count > 1)
        qsort(a.rows, a.count, sizeof *a.rows, cmp_key_then_newest);
    /* keep the newest write per key, and only when it is not a removal */
    out->items = ps_xmalloc((a.count ? a.count : 1) * sizeof *out->items);
    out->count = 0;
    for (size_t i = a.count; i-- > 0;) /* decide before anything is freed */
        if (i > 0 && same_key(&a.rows[i].item, &a.rows[i - 1].item))
            a.rows[i].deleted = true; /* an older write of the key */
    for (size_t i = 0; i < a.count; i++) {
        if (!a.rows[i].deleted) {
            out->items[out->count++] = a.rows[i].item;
        } else {
            free(a.rows[i].item.key);
            free(a.rows[i].item.json);
        }
    }
    free(a.rows);
    if (st != PS_OK)
        ps_trait_list_clear(out);
    return st;
}

typedef struct trait_each {
    ps_trait_view_fn fn;
    void *ud;
} trait_each;

static bool each_stored(void *ud, const char *key, size_t key_len, const ps_trait_rec *r)
{
    trait_each *e = ud;
    if (r->deleted) /* a removal hides the key */
        return true;
    ps_trait_view v = {key, key_len, r->json, r->source_id, r->updated_ms};
    return e->fn(e->ud, &v);
}

ps_status ps_profile_traits_each(ps_txn *t, const uint64_t *members, size_t n, const char *from,
                                 size_t from_len, ps_trait_view_fn fn, void *ud)
{
    if (n == 1) {
        trait_each e = {fn, ud};
        return ps_store_trait_scan(t, members[0], from, from_len, each_stored, &e);
    }
    ps_trait_list traits;
    ps_status st = ps_profile_traits(t, members, n, &traits);
    for (size_t i = 0; st == PS_OK && i < traits.count; i++) {
        const ps_trait_item *it = &traits.items[i];
        if (from && key_cmp(it->key, it->key_len, from, from_len) < 0)
            continue;
        ps_trait_view v = {it->key, it->key_len,
                           (ps_slice){(const uint8_t *)it->json, it->json_len},
                           PS_SLICE_STR(it->source_id), it->updated_ms};
        if (!fn(ud, &v))
            break;
    }
    ps_trait_list_clear(&traits);
    return st;
}

void ps_trait_list_clear(ps_trait_list *l)
{
    for (size_t i = 0; i < l->count; i++) {
        free(l->items[i].key);
        free(l->items[i].json);
    }
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

/* ---- events ---- */

typedef struct event_acc {
    ps_txn *t;
    const ps_event_query *q;
    ps_event_ref *refs;
    size_t count, cap, taken;
    ps_status st;
} event_acc;

static bool name_in(ps_slice name, const ps_slice *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i].len == name.len && memcmp(list[i].ptr, name.ptr, name.len) == 0)
            return true;
    return false;
}

/* A whole event from its event row: one written before the pevent rows held them. */
static ps_status event_row(ps_txn *t, uint64_t seq, ps_event_rec *out)
{
    ps_status st = ps_store_event_get(t, seq, out);
    return st == PS_OK && out->brief ? PS_ECORRUPT : st; /* its pevent row lost its copy */
}

static bool collect_event(void *ud, uint64_t profile, int64_t ts_ms, uint64_t seq,
                          const ps_event_rec *e)
{
    (void)profile;
    event_acc *a = ud;
    const ps_event_query *q = a->q;
    if (q->ascending ? ts_ms >= q->max_ts : ts_ms < q->min_ts)
        return false; /* past the window: the scan is ordered, so stop */
    if (q->ascending ? ts_ms < q->min_ts : ts_ms >= q->max_ts)
        return true;
    ps_event_rec row;
    if ((q->include_count || q->exclude_count) && e == NULL) { /* an index row without a copy */
        if ((a->st = event_row(a->t, seq, &row)) != PS_OK)
            return false;
        e = &row;
    }
    if ((q->include_count && !name_in(e->name, q->include, q->include_count)) ||
        (q->exclude_count && name_in(e->name, q->exclude, q->exclude_count)))
        return true;
    if (a->count == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->refs = ps_xrealloc(a->refs, a->cap * sizeof *a->refs);
    }
    ps_event_ref *r = &a->refs[a->count++];
    r->seq = seq;
    r->timestamp_ms = ts_ms;
    r->has_rec = e != NULL;
    if (e)
        r->rec = *e;
    return ++a->taken < q->limit;
}

static int cmp_newest(const void *x, const void *y)
{
    const ps_event_ref *a = x, *b = y;
    if (a->timestamp_ms != b->timestamp_ms)
        return a->timestamp_ms > b->timestamp_ms ? -1 : 1;
    return a->seq > b->seq ? -1 : a->seq < b->seq ? 1 : 0;
}

static int cmp_oldest(const void *x, const void *y)
{
    return cmp_newest(y, x);
}

ps_status ps_profile_events(ps_txn *t, const uint64_t *members, size_t n, const ps_event_query *q,
                            ps_event_ref *out, size_t *count)
{
    event_acc a = {t, q, NULL, 0, 0, 0, PS_OK};
    ps_status st = PS_OK;
    /* Where each scan starts. The index stores timestamps as unsigned big-endian, so a scan
     * never starts below 0 (events before 1970 sort after all others and are not listed). */
    int64_t from_ts;
    uint64_t from_seq;
    if (q->has_after) {
        from_ts = q->after_ts;
        from_seq = q->after_seq;
    } else if (q->ascending) {
        from_ts = q->min_ts > 0 ? q->min_ts - 1 : 0; /* strictly after (min_ts - 1, max) */
        from_seq = q->min_ts > 0 ? UINT64_MAX : 0;
    } else {
        from_ts = q->max_ts; /* strictly before (max_ts, 0) */
        from_seq = 0;
    }
    /* each member's index is sorted: take up to `limit` from each, then merge */
    for (size_t i = 0; i < n && st == PS_OK && a.st == PS_OK && q->limit > 0; i++) {
        a.taken = 0;
        if (q->ascending)
            st = ps_store_pevent_scan_asc(t, members[i], from_ts, from_seq, collect_event, &a);
        else
            st = ps_store_pevent_scan_desc(t, members[i], from_ts, from_seq, collect_event, &a);
    }
    if (st == PS_OK)
        st = a.st;
    if (a.count > 1)
        qsort(a.refs, a.count, sizeof *a.refs, q->ascending ? cmp_oldest : cmp_newest);
    size_t k = a.count < q->limit ? a.count : q->limit;
    if (k)
        memcpy(out, a.refs, k * sizeof *out);
    *count = st == PS_OK ? k : 0;
    free(a.refs);
    return st;
}

/* ---- links ---- */

typedef struct link_acc {
    ps_txn *t;
    u64_vec targets;
} link_acc;

static bool collect_link(void *ud, uint64_t from, uint64_t to, int64_t created_ms)
{
    (void)from;
    (void)created_ms;
    link_acc *a = ud;
    vec_push(&a->targets, to);
    return true;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

ps_status ps_profile_links(ps_txn *t, const uint64_t *members, size_t n, uint64_t **out,
                           size_t *count)
{
    link_acc a = {t, {NULL, 0}};
    ps_status st = PS_OK;
    for (size_t i = 0; i < n && st == PS_OK; i++)
        st = ps_store_link_scan(t, members[i], collect_link, &a);
    for (size_t i = 0; i < a.targets.count && st == PS_OK; i++)
        st = ps_graph_find(t, a.targets.items[i], &a.targets.items[i]);
    if (st != PS_OK) {
        free(a.targets.items);
        return st;
    }
    if (a.targets.count > 1)
        qsort(a.targets.items, a.targets.count, sizeof(uint64_t), cmp_u64);
    size_t o = 0;
    for (size_t i = 0; i < a.targets.count; i++)
        if (o == 0 || a.targets.items[o - 1] != a.targets.items[i])
            a.targets.items[o++] = a.targets.items[i];
    *out = a.targets.items;
    *count = o;
    return PS_OK;
}

/* ---- rendering ---- */

void ps_profile_extid_json(ps_buf *b, const ps_extid *x, unsigned fields)
{
    ps_buf_puts(b, "{\"type\":");
    ps_buf_json_cstr(b, x->type);
    ps_buf_puts(b, ",\"id\":");
    ps_buf_json_str(b, x->value, x->value_len);
    ps_buf_puts(b, ",\"collection\":\"");
    ps_buf_puts(b, ps_collection_name(x->collection));
    ps_buf_puts(b, "\",\"encoding\":\"none\"");
    if (fields & PS_EXTID_SOURCE) {
        ps_buf_puts(b, ",\"source_id\":");
        ps_buf_json_cstr(b, x->mapping->source_id);
        ps_buf_puts(b, ",\"created_at\":");
        ps_time_json(b, x->mapping->created_ms);
    }
    if (fields & PS_EXTID_FIRST) {
        ps_buf_puts(b, ",\"first_message_id\":");
        ps_buf_json_cstr(b, x->mapping->first_message_id);
        ps_buf_puts(b, ",\"first_seen\":");
        ps_time_json(b, x->mapping->first_seen_ms);
    }
    ps_buf_putc(b, '}');
}

void ps_profile_metadata_json(ps_buf *b, const ps_profile *p)
{
    ps_buf_puts(b, "{\"created_at\":");
    ps_time_json(b, p->created_ms);
    ps_buf_puts(b, ",\"updated_at\":");
    ps_time_json(b, p->updated_ms);
    ps_buf_puts(b, ",\"expires_at\":null,\"first_message_id\":");
    ps_buf_json_cstr(b, p->first_message_id);
    ps_buf_puts(b, ",\"first_source_id\":");
    ps_buf_json_cstr(b, p->first_source_id);
    ps_buf_puts(b, ",\"last_message_id\":");
    ps_buf_json_cstr(b, p->last_message_id);
    ps_buf_puts(b, ",\"last_source_id\":");
    ps_buf_json_cstr(b, p->last_source_id);
    ps_buf_putc(b, '}');
}

/* The event a listing found: its index row's copy, else its event row. */
static ps_status event_of(ps_txn *t, const ps_event_ref *ref, ps_event_rec *out)
{
    if (ref->has_rec) {
        *out = ref->rec;
        return PS_OK;
    }
    return event_row(t, ref->seq, out);
}

ps_status ps_profile_event_get(ps_txn *t, const ps_event_ref *ref, ps_event_rec *out,
                               ps_slice *message_id)
{
    ps_log_rec m;
    ps_status st = event_of(t, ref, out);
    if (st == PS_OK)
        st = ps_store_log_head(t, ref->seq, &m);
    if (st != PS_OK)
        return st == PS_ENOTFOUND ? PS_ECORRUPT : st;
    *message_id = m.message_id;
    return PS_OK;
}

/* What every event of one profile's list repeats: the end of each identifier object (its
 * collection and encoding) and the `related` member with the closing brace. Made once a list. */
typedef struct event_frame {
    ps_buf id_tail, related;
} event_frame;

static void frame_init(event_frame *f, const ps_profile *p)
{
    ps_buf_init(&f->id_tail);
    ps_buf_init(&f->related);
    ps_buf_puts(&f->id_tail, ",\"collection\":\"");
    ps_buf_puts(&f->id_tail, ps_collection_name(p->collection));
    ps_buf_puts(&f->id_tail, "\",\"encoding\":\"none\"}");
    ps_buf_puts(&f->related, ",\"related\":{\"");
    ps_buf_puts(&f->related, ps_collection_name(p->collection));
    ps_buf_puts(&f->related, "\":");
    ps_buf_json_cstr(&f->related, p->segment_id);
    ps_buf_puts(&f->related, "}}");
}

static void frame_clear(event_frame *f)
{
    ps_buf_clear(&f->id_tail);
    ps_buf_clear(&f->related);
}

static ps_status event_json(ps_txn *t, const event_frame *f, const ps_event_ref *ref, ps_buf *b)
{
    ps_event_rec e;
    ps_log_rec m;
    ps_status st = event_of(t, ref, &e);
    if (st == PS_OK) /* the stamps and the body come from the log */
        st = ps_store_log_get(t, ref->seq, &m);
    if (st != PS_OK)
        return st == PS_ENOTFOUND ? PS_ECORRUPT : st;
    ps_buf_puts(b, "{\"external_ids\":[");
    const char *ids = (const char *)e.ids.ptr, *end = ids + e.ids.len;
    for (size_t k = 0; ids < end; k++) { /* "type\0value\0" pairs */
        const char *type = ids;
        size_t tl = strnlen(type, (size_t)(end - type));
        const char *value = type + tl + 1;
        if (value >= end)
            break;
        size_t vl = strnlen(value, (size_t)(end - value));
        ps_buf_puts(b, k ? ",{\"type\":" : "{\"type\":");
        ps_buf_json_str(b, type, tl);
        ps_buf_puts(b, ",\"id\":");
        ps_buf_json_str(b, value, vl);
        ps_buf_append(b, f->id_tail.ptr, f->id_tail.len);
        ids = value + vl + 1;
    }
    ps_buf_puts(b, "],\"type\":");
    ps_buf_json_cstr(b, ps_msg_type_name((ps_msg_type)e.type));
    ps_buf_puts(b, ",\"event\":");
    ps_buf_json_str(b, (const char *)e.name.ptr, e.name.len);
    ps_buf_puts(b, ",\"message_id\":");
    ps_buf_json_str(b, (const char *)m.message_id.ptr, m.message_id.len);
    ps_buf_puts(b, ",\"source_id\":");
    ps_buf_json_str(b, (const char *)m.source_id.ptr, m.source_id.len);
    ps_buf_puts(b, ",\"timestamp\":");
    ps_time_json(b, e.timestamp_ms);
    ps_buf_puts(b, ",\"received_at\":");
    ps_time_json(b, m.received_ms);
    const ps_body_spans *sp = &e.spans;
    if (e.has_spans && (uint64_t)sp->context_at + sp->context_len <= m.json.len &&
        (uint64_t)sp->properties_at + sp->properties_len <= m.json.len) {
        ps_buf_puts(b, ",\"context\":");
        if (sp->context_len)
            ps_buf_append(b, m.json.ptr + sp->context_at, sp->context_len);
        else
            ps_buf_puts(b, "null");
        ps_buf_puts(b, ",\"properties\":");
        if (sp->properties_len)
            ps_buf_append(b, m.json.ptr + sp->properties_at, sp->properties_len);
        else
            ps_buf_puts(b, "null");
    } else { /* a record from before the spans: read the body through */
        static const char *const fields[] = {"context", "properties"};
        ps_event_body_members(m.json, fields, 2, b);
    }
    ps_buf_append(b, f->related.ptr, f->related.len);
    return PS_OK;
}

ps_status ps_profile_events_json(ps_txn *t, const ps_profile *p, const ps_event_ref *refs,
                                 size_t count, ps_buf *b)
{
    event_frame f;
    frame_init(&f, p);
    ps_status st = PS_OK;
    for (size_t i = 0; i < count && st == PS_OK; i++) {
        if (i)
            ps_buf_putc(b, ',');
        st = event_json(t, &f, &refs[i], b);
    }
    frame_clear(&f);
    return st;
}

typedef struct render_ids {
    ps_buf *b;
    size_t n;
    unsigned fields;
} render_ids;

static bool render_extid(void *ud, const ps_extid *x)
{
    render_ids *r = ud;
    if (r->n++)
        ps_buf_putc(r->b, ',');
    ps_profile_extid_json(r->b, x, r->fields);
    return true;
}

ps_status ps_profile_external_ids_json(ps_txn *t, const ps_profile *canonical, unsigned fields,
                                       ps_buf *b)
{
    render_ids r = {b, 0, fields};
    return ps_profile_external_ids(t, canonical, render_extid, &r);
}

static ps_status render_events(ps_txn *t, const ps_profile *p, const uint64_t *members, size_t n,
                               size_t limit, ps_buf *b)
{
    ps_event_ref *refs = ps_xmalloc(limit * sizeof *refs);
    size_t count;
    ps_event_query q = {.min_ts = INT64_MIN, .max_ts = INT64_MAX, .limit = limit};
    ps_status st = ps_profile_events(t, members, n, &q, refs, &count);
    ps_buf_puts(b, ",\"events\":[");
    if (st == PS_OK)
        st = ps_profile_events_json(t, p, refs, count, b);
    ps_buf_putc(b, ']');
    free(refs);
    return st;
}

static bool collect_pevent_seq(void *ud, uint64_t profile, int64_t ts_ms, uint64_t seq,
                               const ps_event_rec *e)
{
    (void)profile;
    (void)ts_ms;
    (void)e;
    vec_push(ud, seq);
    return true;
}

static bool collect_seq(void *ud, uint64_t seq)
{
    vec_push(ud, seq);
    return true;
}

ps_status ps_profile_message_seqs(ps_txn *t, const uint64_t *members, size_t n, uint64_t **out,
                                  size_t *count)
{
    u64_vec v = {NULL, 0};
    ps_status st = PS_OK;
    for (size_t i = 0; i < n && st == PS_OK; i++) {
        st = ps_store_pevent_scan_asc(t, members[i], 0, 0, collect_pevent_seq, &v);
        if (st == PS_OK)
            st = ps_store_pmsg_scan(t, members[i], collect_seq, &v);
    }
    if (st != PS_OK) {
        free(v.items);
        return st;
    }
    if (v.count > 1)
        qsort(v.items, v.count, sizeof(uint64_t), cmp_u64);
    *out = v.items;
    *count = v.count;
    return PS_OK;
}

/* ,"message_ids":[...] in log order */
static ps_status render_messages(ps_txn *t, const uint64_t *members, size_t n, ps_buf *b)
{
    uint64_t *seqs;
    size_t count;
    ps_status st = ps_profile_message_seqs(t, members, n, &seqs, &count);
    if (st != PS_OK)
        return st;
    ps_buf_puts(b, ",\"message_ids\":[");
    for (size_t i = 0; i < count && st == PS_OK; i++) {
        ps_log_rec r;
        if ((st = ps_store_log_head(t, seqs[i], &r)) == PS_ENOTFOUND) {
            st = PS_OK; /* trimmed from the log */
            continue;
        }
        if (st != PS_OK)
            break;
        if (b->ptr[b->len - 1] != '[')
            ps_buf_putc(b, ',');
        ps_buf_json_str(b, (const char *)r.message_id.ptr, r.message_id.len);
    }
    ps_buf_putc(b, ']');
    free(seqs);
    return st;
}

ps_status ps_profile_merges_json(ps_txn *t, const ps_profile *p, const uint64_t *members, size_t n,
                                 ps_buf *b)
{
    ps_status st = PS_OK;
    size_t k = 0;
    for (size_t i = 0; i < n && st == PS_OK; i++) {
        if (members[i] == p->seq)
            continue;
        ps_profile m, into;
        if ((st = ps_store_profile_get(t, members[i], &m)) != PS_OK ||
            (st = ps_store_profile_get(t, m.merged_into, &into)) != PS_OK)
            break;
        ps_buf_puts(b, k++ ? ",{\"segment_id\":" : "{\"segment_id\":");
        ps_buf_json_cstr(b, m.segment_id);
        ps_buf_puts(b, ",\"merged_into\":");
        ps_buf_json_cstr(b, into.segment_id);
        ps_buf_puts(b, ",\"merged_at\":");
        ps_time_json(b, m.merged_ms);
        ps_buf_puts(b, ",\"message_id\":");
        ps_buf_json_cstr(b, m.merged_by_message_id);
        ps_buf_putc(b, '}');
    }
    return st;
}

ps_status ps_profile_render(ps_txn *t, const ps_profile *p, const ps_render_opts *o, ps_buf *b)
{
    uint64_t *members = NULL, *links = NULL;
    size_t n = 0, nlinks = 0;
    ps_trait_list traits = {NULL, 0};
    ps_status st = ps_profile_members(t, p->seq, &members, &n);
    if (st != PS_OK)
        return st;
    ps_buf_puts(b, "{\"segment_id\":");
    ps_buf_json_cstr(b, p->segment_id);
    ps_buf_printf(b, ",\"collection\":\"%s\",\"merged_ids\":[", ps_collection_name(p->collection));
    size_t shown = 0;
    for (size_t i = 0; i < n && st == PS_OK; i++) {
        if (members[i] == p->seq)
            continue;
        ps_profile m;
        if ((st = ps_store_profile_get(t, members[i], &m)) != PS_OK)
            break;
        if (shown++)
            ps_buf_putc(b, ',');
        ps_buf_json_cstr(b, m.segment_id);
    }
    ps_buf_puts(b, "],\"external_ids\":[");

    if (st == PS_OK)
        st = ps_profile_external_ids_json(t, p, PS_EXTID_SOURCE | PS_EXTID_FIRST, b);
    ps_buf_puts(b, "],\"traits\":{");
    if (st == PS_OK)
        st = ps_profile_traits(t, members, n, &traits);
    for (size_t i = 0; i < traits.count; i++) {
        if (i)
            ps_buf_putc(b, ',');
        ps_buf_json_str(b, traits.items[i].key, traits.items[i].key_len);
        ps_buf_putc(b, ':');
        ps_buf_append(b, traits.items[i].json, traits.items[i].json_len);
    }
    ps_buf_putc(b, '}');
    if (st == PS_OK && o->metadata) {
        ps_buf_puts(b, ",\"metadata\":");
        ps_profile_metadata_json(b, p);
    }
    if (st == PS_OK && o->event_limit)
        st = render_events(t, p, members, n, o->event_limit, b);
    if (st == PS_OK && o->links) {
        st = ps_profile_links(t, members, n, &links, &nlinks);
        ps_buf_puts(b, ",\"links\":[");
        for (size_t i = 0; i < nlinks && st == PS_OK; i++) {
            ps_profile lp;
            if ((st = ps_profile_get(t, links[i], &lp)) != PS_OK)
                break;
            ps_buf_printf(b, "%s{\"to_collection\":\"%s\",\"segment_id\":", i ? "," : "",
                          ps_collection_name(lp.collection));
            ps_buf_json_cstr(b, lp.segment_id);
            ps_buf_puts(b, ",\"external_ids\":[");
            st = ps_profile_external_ids_json(t, &lp, 0, b);
            ps_buf_puts(b, "]}");
        }
        ps_buf_putc(b, ']');
    }
    if (st == PS_OK && o->messages)
        st = render_messages(t, members, n, b);
    if (st == PS_OK && o->merges) {
        ps_buf_puts(b, ",\"merges\":[");
        st = ps_profile_merges_json(t, p, members, n, b);
        ps_buf_putc(b, ']');
    }
    ps_buf_putc(b, '}');
    ps_trait_list_clear(&traits);
    free(members);
    free(links);
    return st;
}
