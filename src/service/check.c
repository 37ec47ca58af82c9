/* SPDX-License-Identifier: MIT */
/* check: the graph invariant checker behind `profilectl check`. */
#include "ps/check.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ps/graph.h"
#include "ps/graphdb.h"
#include "ps/msglog.h"
#include "ps/records.h"

typedef struct ctx {
    ps_txn *t;
    const char *space;
    bool by_message; /* segment_ids named after the creating message (meta "segment_ids") */
    ps_check_report *r;
    ps_status st;
    uint64_t counter;
    uint8_t collection; /* of the profile being checked */
    uint64_t max_seq;
    uint64_t noncanonical;
    uint64_t audit_create, audit_merge, audit_mapping, audit_unmap, audit_erased;
    uint64_t member_rows, pmap_rows, pevent_rows; /* read by the table walks */
} ctx;

static void problem(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(ctx *c, const char *fmt, ...)
{
    if (c->r->problems < PS_CHECK_SHOWN) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->r->shown[c->r->problems], sizeof c->r->shown[0], fmt, ap);
        va_end(ap);
    }
    c->r->problems++;
}

static bool count_one(void *ud, uint64_t a, uint64_t b)
{
    (void)a;
    (void)b;
    ((ctx *)ud)->counter++;
    return true;
}

/* Counts a profile's identifier rows; the details a row carries must be its ident row's. */
static bool count_pmap(void *ud, const char *type, const char *value, size_t len,
                       const ps_mapping *d)
{
    ctx *c = ud;
    c->counter++;
    ps_mapping m;
    if (d && ps_store_ident_get(c->t, c->collection, type, value, len, &m) == PS_OK &&
        (m.first_seen_ms != d->first_seen_ms || m.created_ms != d->created_ms ||
         strcmp(m.source_id, d->source_id) != 0 ||
         strcmp(m.first_message_id, d->first_message_id) != 0))
        problem(c, "identifier %s:%.*s: its profile's row and its own disagree on its details",
                type, (int)(len < 64 ? len : 64), value);
    return true;
}

static bool check_profile(void *ud, const ps_profile *p)
{
    ctx *c = ud;
    c->r->profiles++;
    if (p->seq > c->max_seq)
        c->max_seq = p->seq;
    char expect[PS_SEGMENT_ID_LEN + 1];
    if (c->by_message) /* named after the message that created it */
        ps_graph_segment_id_of(c->space, p->collection, p->created_by, true, expect);
    else
        ps_graph_segment_id(c->space, p->collection, p->seq, expect);
    if (strcmp(expect, p->segment_id) != 0)
        problem(c, "profile %llu: segment_id %s is not the derived %s", (unsigned long long)p->seq,
                p->segment_id, expect);
    uint64_t seq;
    ps_status st = ps_store_segid_get(c->t, p->segment_id, &seq);
    if (st != PS_OK || seq != p->seq)
        problem(c, "profile %llu: segment_id %s does not resolve back to it",
                (unsigned long long)p->seq, p->segment_id);
    if (p->parent == 0) {
        c->r->canonical++;
        c->counter = 0;
        if ((c->st = ps_store_member_scan(c->t, p->seq, count_one, c)) != PS_OK)
            return false;
        if (c->counter != p->member_count)
            problem(c, "profile %s: member_count %u but %llu member rows", p->segment_id,
                    p->member_count, (unsigned long long)c->counter);
        c->counter = 0;
        c->collection = p->collection;
        if ((c->st = ps_store_pmap_scan_details(c->t, p->seq, count_pmap, c)) != PS_OK)
            return false;
        if (c->counter != p->mapping_count)
            problem(c, "profile %s: mapping_count %u but %llu identifier rows", p->segment_id,
                    p->mapping_count, (unsigned long long)c->counter);
        return true;
    }
    c->noncanonical++;
    if (p->parent == p->seq) {
        problem(c, "profile %s: is its own parent (cycle)", p->segment_id);
        return true;
    }
    ps_profile parent;
    st = ps_store_profile_get(c->t, p->parent, &parent);
    if (st != PS_OK) {
        problem(c, "profile %s: parent %llu missing", p->segment_id, (unsigned long long)p->parent);
        return true;
    }
    if (parent.parent != 0)
        problem(c, "profile %s: parent %s is not canonical (chain not flat)", p->segment_id,
                parent.segment_id);
    if (p->merged_into == 0)
        problem(c, "profile %s: merged but has no merge record", p->segment_id);
    if (p->member_count != 0 || p->mapping_count != 0)
        problem(c, "profile %s: merged away but still counts members or mappings", p->segment_id);
    return true;
}

static bool check_member(void *ud, uint64_t canonical, uint64_t member)
{
    ctx *c = ud;
    c->member_rows++;
    ps_profile m;
    if (ps_store_profile_get(c->t, member, &m) != PS_OK) {
        problem(c, "member row (%llu, %llu): member profile missing", (unsigned long long)canonical,
                (unsigned long long)member);
        return true;
    }
    uint64_t expect = m.parent ? m.parent : m.seq;
    if (expect != canonical)
        problem(c, "member row (%llu, %llu): profile's canonical is %llu",
                (unsigned long long)canonical, (unsigned long long)member,
                (unsigned long long)expect);
    return true;
}

static bool check_ident(void *ud, uint8_t coll, const char *type, const char *value,
                        size_t value_len, const ps_mapping *m)
{
    ctx *c = ud;
    c->r->identifiers++;
    uint64_t canonical;
    ps_status st = ps_graph_find(c->t, m->profile, &canonical);
    if (st != PS_OK) {
        problem(c, "identifier %s:%.*s: profile %llu has no live chain", type, (int)value_len,
                value, (unsigned long long)m->profile);
        return true;
    }
    ps_profile p;
    if (ps_store_profile_get(c->t, canonical, &p) == PS_OK && p.collection != coll)
        problem(c, "identifier %s:%.*s: in the wrong collection", type, (int)value_len, value);
    int64_t fs;
    if (ps_store_pmap_get(c->t, canonical, type, value, value_len, &fs) != PS_OK)
        problem(c, "identifier %s:%.*s: not listed on its canonical profile %llu", type,
                (int)value_len, value, (unsigned long long)canonical);
    else if (fs != m->first_seen_ms)
        problem(c, "identifier %s:%.*s: first_seen differs between ident and pmap", type,
                (int)value_len, value);
    return true;
}

static bool check_pmap(void *ud, uint64_t profile, const char *type, const char *value,
                       size_t value_len, int64_t first_seen_ms)
{
    (void)first_seen_ms;
    ctx *c = ud;
    c->counter++;
    ps_profile p;
    if (ps_store_profile_get(c->t, profile, &p) != PS_OK || p.parent != 0) {
        problem(c, "identifier %s:%.*s: listed on non-canonical profile %llu", type, (int)value_len,
                value, (unsigned long long)profile);
        return true;
    }
    ps_mapping m;
    uint64_t canonical;
    if (ps_store_ident_get(c->t, p.collection, type, value, value_len, &m) != PS_OK ||
        ps_graph_find(c->t, m.profile, &canonical) != PS_OK || canonical != profile)
        problem(c, "identifier %s:%.*s: listed on %s but does not resolve to it", type,
                (int)value_len, value, p.segment_id);
    return true;
}

static bool same_slice(ps_slice a, ps_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* An index row's copy of its event says what the event row says (a brief row: its type,
 * profile and time). */
static bool same_event(const ps_event_rec *copy, const ps_event_rec *row)
{
    const ps_event_rec *a = copy, *b = row;
    if (a->type != b->type || a->profile != b->profile || a->timestamp_ms != b->timestamp_ms)
        return false;
    return b->brief || (same_slice(a->name, b->name) && same_slice(a->ids, b->ids) &&
                        a->has_spans == b->has_spans &&
                        (!a->has_spans || memcmp(&a->spans, &b->spans, sizeof a->spans) == 0));
}

static bool check_pevent(void *ud, uint64_t profile, int64_t ts_ms, uint64_t seq,
                         const ps_event_rec *copy)
{
    ctx *c = ud;
    c->counter++;
    ps_event_rec e;
    if (ps_store_event_get(c->t, seq, &e) != PS_OK || e.profile != profile ||
        e.timestamp_ms != ts_ms)
        problem(c, "event index (%llu, %lld, %llu) has no matching event",
                (unsigned long long)profile, (long long)ts_ms, (unsigned long long)seq);
    else if (copy && !same_event(copy, &e))
        problem(c, "event index (%llu, %lld, %llu) holds a copy that differs from the event",
                (unsigned long long)profile, (long long)ts_ms, (unsigned long long)seq);
    else if (!copy && e.brief)
        problem(c,
                "event index (%llu, %lld, %llu) lacks a readable copy of the event its brief "
                "row leaves to it",
                (unsigned long long)profile, (long long)ts_ms, (unsigned long long)seq);
    return true;
}

static bool check_event(void *ud, const ps_event_rec *e)
{
    ctx *c = ud;
    c->r->events++;
    ps_profile p;
    if (ps_store_profile_get(c->t, e->profile, &p) != PS_OK)
        problem(c, "event %llu: profile %llu missing", (unsigned long long)e->seq,
                (unsigned long long)e->profile);
    if (e->seq >= ps_txn_peek(c->t, PS_CTR_MESSAGE))
        problem(c, "event %llu: beyond the message counter", (unsigned long long)e->seq);
    ps_log_rec m;
    if (ps_store_log_head(c->t, e->seq, &m) != PS_OK || m.type != e->type ||
        m.timestamp_ms != e->timestamp_ms)
        problem(c, "event %llu: no matching message in the log", (unsigned long long)e->seq);
    return true;
}

static bool probe_link(void *ud, uint64_t from, uint64_t to, int64_t created_ms)
{
    (void)from;
    (void)created_ms;
    uint64_t *want = ud;
    if (to == want[0])
        want[1] = 1;
    return to < want[0];
}

static bool check_link(void *ud, uint64_t from, uint64_t to, int64_t created_ms)
{
    (void)created_ms;
    ctx *c = ud;
    c->r->links++;
    ps_profile a, b;
    if (ps_store_profile_get(c->t, from, &a) != PS_OK ||
        ps_store_profile_get(c->t, to, &b) != PS_OK || a.collection == b.collection) {
        problem(c, "link (%llu, %llu): missing profile or same collection",
                (unsigned long long)from, (unsigned long long)to);
        return true;
    }
    uint64_t want[2] = {from, 0};
    if (ps_store_link_scan(c->t, to, probe_link, want) != PS_OK || !want[1])
        problem(c, "link (%s, %s): no reverse link", a.segment_id, b.segment_id);
    return true;
}

static bool check_audit(void *ud, const ps_audit_rec *a)
{
    ctx *c = ud;
    c->r->audit_rows++;
    if (a->kind == PS_AUDIT_CREATE)
        c->audit_create++;
    else if (a->kind == PS_AUDIT_MERGE)
        c->audit_merge++;
    else if (a->kind == PS_AUDIT_MAPPING)
        c->audit_mapping++;
    else if (a->kind == PS_AUDIT_UNMAP)
        c->audit_unmap++;
    else if (a->kind == PS_AUDIT_ERASED)
        c->audit_erased++;
    else if (a->kind != PS_AUDIT_TRAITS && a->kind != PS_AUDIT_VIOLATION &&
             a->kind != PS_AUDIT_UNMERGE)
        problem(c, "audit row %llu: unknown kind %u", (unsigned long long)a->seq, a->kind);
    if (a->seq >= ps_txn_peek(c->t, PS_CTR_AUDIT))
        problem(c, "audit row %llu: beyond the audit counter", (unsigned long long)a->seq);
    return true;
}

/* LMDB keeps each table's row count apart from its pages: a walk that read fewer rows than
 * that went past damaged pages (a file changed outside LMDB) that happened to parse. */
static ps_status rows_all_read(ctx *c)
{
    ps_store_counts n;
    ps_status st = ps_store_counts_get(c->t, &n);
    if (st != PS_OK)
        return st;
    const struct {
        const char *table;
        uint64_t recorded, read;
    } tables[] = {
        {"profile", n.profiles, c->r->profiles}, {"member", n.members, c->member_rows},
        {"ident", n.idents, c->r->identifiers},  {"pmap", n.pmaps, c->pmap_rows},
        {"event", n.events, c->r->events},       {"pevent", n.pevents, c->pevent_rows},
        {"link", n.links, c->r->links},          {"audit", n.audits, c->r->audit_rows},
    };
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (tables[i].recorded != tables[i].read)
            problem(c, "table %s: %llu rows recorded but %llu read (damaged pages?)",
                    tables[i].table, (unsigned long long)tables[i].recorded,
                    (unsigned long long)tables[i].read);
    return PS_OK;
}

/* Every walk and comparison, in the one read transaction c->t. */
static ps_status walk_all(ps_txn *t, void *ud)
{
    ctx *c = ud;
    c->t = t;
    ps_check_report *report = c->r;
    ps_status st;
    ps_slice scheme;
    c->by_message = ps_store_meta_get(t, PS_SEGMENT_IDS_KEY, &scheme) == PS_OK && scheme.len == 7 &&
                    memcmp(scheme.ptr, "message", 7) == 0;
    st = ps_store_profile_scan(t, 1, check_profile, c);
    if (st == PS_OK)
        st = c->st;
    if (st == PS_OK && c->max_seq >= ps_txn_peek(t, PS_CTR_PROFILE))
        problem(c, "profile counter %llu is not above the largest profile %llu",
                (unsigned long long)ps_txn_peek(t, PS_CTR_PROFILE), (unsigned long long)c->max_seq);
    if (st == PS_OK)
        st = ps_store_member_scan(t, 0, check_member, c);
    if (st == PS_OK)
        st = ps_store_ident_scan(t, check_ident, c);
    c->counter = 0;
    if (st == PS_OK)
        st = ps_store_pmap_scan(t, 0, NULL, check_pmap, c);
    if (st == PS_OK && c->counter != report->identifiers)
        problem(c, "%llu identifiers but %llu profile identifier rows",
                (unsigned long long)report->identifiers, (unsigned long long)c->counter);
    c->pmap_rows = c->counter;
    if (st == PS_OK)
        st = ps_store_event_scan(t, check_event, c);
    c->counter = 0;
    if (st == PS_OK)
        st = ps_store_pevent_scan_all(t, check_pevent, c);
    if (st == PS_OK && c->counter != report->events)
        problem(c, "%llu events but %llu event index rows", (unsigned long long)report->events,
                (unsigned long long)c->counter);
    c->pevent_rows = c->counter;
    if (st == PS_OK)
        st = ps_store_link_scan(t, 0, check_link, c);
    if (st == PS_OK)
        st = ps_store_audit_scan(t, 1, check_audit, c);
    if (st == PS_OK) {
        if (c->audit_create - c->audit_erased != report->profiles)
            problem(c, "audit: %llu create rows less %llu erasures for %llu profiles",
                    (unsigned long long)c->audit_create, (unsigned long long)c->audit_erased,
                    (unsigned long long)report->profiles);
        if (c->audit_mapping - c->audit_unmap != report->identifiers)
            problem(c, "audit: %llu mapping rows less %llu removals for %llu identifiers",
                    (unsigned long long)c->audit_mapping, (unsigned long long)c->audit_unmap,
                    (unsigned long long)report->identifiers);
        if (c->audit_merge < c->noncanonical)
            problem(c, "audit: %llu merge rows for %llu merged-away profiles",
                    (unsigned long long)c->audit_merge, (unsigned long long)c->noncanonical);
    }
    if (st == PS_OK)
        st = rows_all_read(c);
    return st;
}

ps_status ps_check_space(ps_space *sp, ps_check_report *report)
{
    memset(report, 0, sizeof *report);
    ctx c = {.space = ps_space_name(sp), .r = report};
    /* guarded: a page that would stop LMDB (an assertion, a fault) is a finding too */
    bool ran;
    ps_status st = ps_store_read_guarded(ps_space_store(sp), walk_all, &c, &ran);
    if (!ran)
        return st;
    /* LMDB met a page it cannot read (or, after one, refused the rest of the transaction):
     * a finding, not a failure of check */
    if (st == PS_ECORRUPT || st == PS_EIO) {
        problem(&c, "a table walk stopped at a page LMDB cannot read (%s; damaged pages?)",
                ps_status_str(st));
        st = PS_OK;
    }
    if (st != PS_OK)
        return st;
    /* every page a table or the free-page list reaches, as a write would trust it: only writes
     * read the free-page list, and a damaged page there fails every later write */
    char why[160];
    uint64_t reached, free_pages;
    st = ps_store_pages_audit(ps_space_store(sp), &reached, &free_pages, why, sizeof why);
    if (st == PS_ECORRUPT) {
        problem(&c, "LMDB's pages: %s", why);
        st = PS_OK;
    }
    if (st != PS_OK)
        return st;
    long holder = ps_store_broken_writer(ps_space_store(sp));
    if (holder)
        problem(&c,
                "process %ld keeps the space's write lock since a write of its met a damaged "
                "page: no write can run until it stops",
                holder);
    return report->problems ? PS_ECORRUPT : PS_OK;
}
