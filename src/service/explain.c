/* SPDX-License-Identifier: MIT */
/* explain: the decision path of one logged message (see ps/explain.h). */
#include "ps/explain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/clock.h"
#include "ps/event.h"
#include "ps/graph.h"
#include "ps/graphdb.h"
#include "ps/history.h"
#include "ps/msglog.h"
#include "ps/profile.h"
#include "ps/records.h"
#include "ps/text.h"

static const char *const kind_names[] = {"",          "create",    "merge",  "mapping", "traits",
                                         "violation", "unmapping", "erased", "unmerge"};

/* ---- the audit rows of one message ---- */

typedef struct row {
    uint64_t seq;
    uint8_t kind, reason, collection;
    uint64_t profile, canonical;
    char *type, *value, *limit_type;
    size_t value_len;
} row;

typedef struct rows {
    row *v;
    size_t n;
    uint64_t message_seq;
} rows;

static void rows_clear(rows *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].type);
        free(r->v[i].value);
        free(r->v[i].limit_type);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

static char *dup_slice(ps_slice s)
{
    return ps_xstrndup((const char *)s.ptr, s.len);
}

static bool collect_row(void *ud, const ps_audit_rec *a)
{
    rows *r = ud;
    if (a->message_seq == 0)
        return true; /* an operator's row (unmerge, erasure), or one from before the field */
    if (a->message_seq > r->message_seq)
        return false; /* a later message's: the rows of this one are all read */
    if (a->message_seq < r->message_seq)
        return true;
    r->v = ps_xrealloc(r->v, (r->n + 1) * sizeof *r->v);
    r->v[r->n++] = (row){
        .seq = a->seq,
        .kind = a->kind,
        .reason = a->reason,
        .collection = a->collection,
        .profile = a->profile,
        .canonical = a->canonical,
        .type = dup_slice(a->type),
        .value = dup_slice(a->value),
        .limit_type = dup_slice(a->limit_type),
        .value_len = a->value.len,
    };
    return true;
}

typedef struct probe {
    uint64_t seq, message_seq; /* the first row at or after the start that names a message */
    bool found;
} probe;

static bool probe_row(void *ud, const ps_audit_rec *a)
{
    probe *p = ud;
    if (a->message_seq == 0)
        return true;
    *p = (probe){a->seq, a->message_seq, true};
    return false;
}

/* The rows message `msg` wrote. Resolution writes them in log order, so the message seqs of
 * the audit table never go down (operators' rows carry none): a bisection finds the first. */
static ps_status rows_of(ps_txn *t, uint64_t msg, rows *out)
{
    uint64_t lo = 1, hi = ps_txn_peek(t, PS_CTR_AUDIT); /* one past the last row */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        probe p = {0, 0, false};
        ps_status st = ps_store_audit_scan(t, mid, probe_row, &p);
        if (st != PS_OK)
            return st;
        if (!p.found || p.message_seq >= msg)
            hi = mid;
        else
            lo = p.seq + 1;
    }
    out->message_seq = msg;
    return ps_store_audit_scan(t, lo, collect_row, out);
}

/* ---- the message ---- */

typedef struct parsed {
    ps_event ev;
    bool ok;
} parsed;

static ps_status keep_event(void *ud, const ps_event *ev, ps_drop why, size_t index)
{
    (void)why;
    (void)index;
    parsed *p = ud;
    if (ev && !p->ok) {
        p->ev = *ev;
        p->ok = true;
    }
    return PS_OK;
}

typedef struct explainer {
    ps_txn *t;
    const ps_rules *rules;
    ps_arena parse; /* the message being explained, parsed */
    ps_arena *keep; /* the explanation's own */
    const char *message_id;
    uint64_t *seqs; /* logged messages with the messageId */
    size_t nseqs;
} explainer;

static bool find_logged(void *ud, const ps_log_rec *r)
{
    explainer *x = ud;
    if (r->message_id.len == strlen(x->message_id) &&
        memcmp(r->message_id.ptr, x->message_id, r->message_id.len) == 0) {
        x->seqs = ps_xrealloc(x->seqs, (x->nseqs + 1) * sizeof *x->seqs);
        x->seqs[x->nseqs++] = r->seq;
    }
    return true;
}

/* ---- what became of it ---- */

static char *keep_str(explainer *x, const char *s, size_t len)
{
    return ps_arena_strndup(x->keep, s ? s : "", s ? len : 0);
}

static char *keep_cstr(explainer *x, const char *s)
{
    return keep_str(x, s, s ? strlen(s) : 0);
}

/* The segment_id of profile `seq` into `out` ("" for none, or a profile erased since). */
static void segment_of(explainer *x, uint64_t seq, char out[PS_SEGMENT_ID_LEN + 1])
{
    ps_profile p;
    out[0] = 0;
    if (seq != 0 && ps_store_profile_get(x->t, seq, &p) == PS_OK)
        memcpy(out, p.segment_id, PS_SEGMENT_ID_LEN + 1);
}

static bool same_id(const row *r, uint8_t coll, const ps_ident *id)
{
    return r->collection == coll && strcmp(r->type, id->type) == 0 &&
           r->value_len == id->value_len && memcmp(r->value, id->value, id->value_len) == 0;
}

/* A profile a merge row moved that was canonical until this message: the one the tie named. */
static bool absorbed_here(explainer *x, const row *r)
{
    ps_profile p;
    return ps_store_profile_get(x->t, r->profile, &p) == PS_OK && p.merged_into == r->canonical &&
           strcmp(p.merged_by_message_id, x->message_id) == 0;
}

typedef struct outcome {
    const char *result; /* create, append, merge, unresolved */
    uint64_t profile;   /* the profile the message resolved to (at the time) */
} outcome;

typedef struct pmsg_find {
    uint64_t seq;
    bool found;
} pmsg_find;

static bool pmsg_has(void *ud, uint64_t seq)
{
    pmsg_find *f = ud;
    if (seq == f->seq)
        f->found = true;
    return !f->found;
}

/* Where a message that changed nothing in the graph went: its event row (track, page,
 * screen), else the message index of the profile its identifiers belong to now. */
static ps_status append_target(explainer *x, uint64_t seq, const ps_event *ev, uint8_t coll,
                               uint64_t *profile)
{
    *profile = 0;
    ps_event_rec er;
    ps_status st;
    if (coll == PS_USERS && (st = ps_store_event_get(x->t, seq, &er)) != PS_ENOTFOUND) {
        if (st == PS_OK)
            *profile = er.profile;
        return st;
    }
    for (size_t i = 0; i < ev->id_count && *profile == 0; i++) {
        const ps_ident *id = &ev->ids[i];
        uint64_t canonical, *members = NULL;
        size_t n = 0;
        if (id->collection != coll || id->flag != PS_IDENT_OK)
            continue;
        st = ps_graph_lookup(x->t, coll, id->type, id->value, id->value_len, &canonical);
        if (st == PS_ENOTFOUND)
            continue;
        if (st == PS_OK)
            st = ps_profile_members(x->t, canonical, &members, &n);
        for (size_t k = 0; k < n && st == PS_OK && *profile == 0; k++) {
            pmsg_find f = {seq, false};
            st = ps_store_pmsg_scan(x->t, members[k], pmsg_has, &f);
            if (f.found)
                *profile = members[k];
        }
        free(members);
        if (st != PS_OK)
            return st;
    }
    return PS_OK;
}

static ps_status outcome_of(explainer *x, uint64_t seq, const ps_event *ev, const rows *rs,
                            uint8_t coll, outcome *o)
{
    *o = (outcome){"append", 0};
    for (size_t i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        if (r->collection != coll)
            continue;
        if (r->kind == PS_AUDIT_CREATE) {
            *o = (outcome){"create", r->profile};
            return PS_OK;
        }
        if (r->kind == PS_AUDIT_MERGE)
            *o = (outcome){"merge", r->canonical};
        else if (r->kind == PS_AUDIT_VIOLATION && r->reason == PS_VIOL_NO_IDENTIFIERS)
            *o = (outcome){"unresolved", 0};
        else if (o->profile == 0 && strcmp(o->result, "append") == 0 &&
                 (r->kind == PS_AUDIT_MAPPING || r->kind == PS_AUDIT_TRAITS))
            o->profile = r->profile;
    }
    if (strcmp(o->result, "append") == 0 && o->profile == 0)
        return append_target(x, seq, ev, coll, &o->profile);
    return PS_OK;
}

/* One identifier: what resolution did with it, from the rows that name it. */
static void explain_id(explainer *x, const ps_ident *id, const rows *rs, const outcome *o,
                       ps_explain_id *out)
{
    const row *limit = NULL, *shared = NULL, *mapped = NULL, *tie = NULL, *apart = NULL,
              *over_mapping = NULL;
    for (size_t i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        if (!same_id(r, id->collection, id))
            continue;
        if (r->kind == PS_AUDIT_MAPPING)
            mapped = r;
        else if (r->kind == PS_AUDIT_MERGE && !tie && absorbed_here(x, r))
            tie = r;
        else if (r->kind != PS_AUDIT_VIOLATION)
            continue;
        else if (r->reason == PS_VIOL_SHARED)
            shared = r;
        else if (r->reason == PS_VIOL_VALUE_LIMIT || r->reason == PS_VIOL_TIME_LIMIT)
            limit = r;
        else if (r->reason == PS_VIOL_MERGE_LIMIT || r->reason == PS_VIOL_KEPT_APART)
            apart = r;
        else if (r->reason == PS_VIOL_MAPPING_LIMIT)
            over_mapping = r;
    }
    const char *status = "matched";
    uint64_t profile = o->profile;
    ps_buf d; /* the detail, a sentence for people */
    ps_buf_init(&d);
    char why[PS_VALUE_MAX + 160];
    if (id->flag == PS_IDENT_BLOCKED) {
        status = "blocked";
        profile = 0;
        if (ps_rules_blocked_by(x->rules, id->type, id->value, why, sizeof why))
            ps_buf_puts(&d, why);
        else
            ps_buf_puts(&d, "blocked when it arrived, though not by the current settings");
    } else if (id->flag == PS_IDENT_TOO_LONG) {
        status = "too_long";
        profile = 0;
    } else if (id->flag == PS_IDENT_BAD_ENCODING) {
        status = "encoding_unsupported";
        profile = 0;
    } else if (limit) {
        status = "dropped";
        profile = limit->profile;
        ps_buf_puts(&d, ps_violation_name((ps_violation)limit->reason));
        if (limit->limit_type[0]) {
            const ps_type_rule *rule = ps_rules_type(x->rules, limit->limit_type);
            ps_buf_printf(&d, ": keeping every identifier would put %s over its limit (%u %s)",
                          limit->limit_type, rule->limit, ps_frequency_name(rule->frequency));
        }
        ps_buf_puts(&d, limit->profile ? "; the lowest-priority identifier goes first"
                                       : "; a new value, so it was not added");
        if (shared)
            ps_buf_puts(&d, "; its profile holds another person's identifier: marked shared");
    } else if (shared) {
        status = "shared";
        profile = shared->profile;
        ps_buf_puts(&d, "seen with two people: it matches nothing now (block_shared_values)");
    } else if (mapped) {
        status = "new";
        profile = mapped->profile;
    } else if (over_mapping) {
        status = "not_mapped";
        profile = 0;
        ps_buf_puts(&d, "the profile holds mapping_limit identifiers already");
    } else if (tie) {
        status = "merged";
        profile = tie->profile;
        ps_buf_puts(&d, "it tied the event to this profile, which merged into the outcome");
    } else if (apart) {
        status = "kept_apart";
        profile = apart->profile;
        ps_buf_puts(&d, apart->reason == PS_VIOL_MERGE_LIMIT
                            ? "its profile was not merged: the merge limit"
                            : "its profile was not merged: an operator keeps the two apart");
    } else if (o->profile == 0) {
        status = "unused";
    }
    *out = (ps_explain_id){
        .collection = id->collection,
        .type = keep_cstr(x, id->type),
        .value = keep_str(x, id->value, id->value_len),
        .value_len = id->value_len,
        .from = keep_cstr(x, id->from),
        .status = status,
        .detail = keep_str(x, d.len ? (const char *)d.ptr : "", d.len),
    };
    segment_of(x, profile, out->segment_id);
    ps_buf_clear(&d);
}

static void explain_row(explainer *x, const row *r, ps_explain_row *out)
{
    *out = (ps_explain_row){
        .seq = r->seq,
        .collection = r->collection,
        .kind = r->kind < sizeof kind_names / sizeof *kind_names ? kind_names[r->kind] : "?",
        .reason = r->kind == PS_AUDIT_VIOLATION ? ps_violation_name((ps_violation)r->reason) : NULL,
        .type = r->type[0] ? keep_cstr(x, r->type) : NULL,
        .value = keep_str(x, r->value, r->value_len),
        .value_len = r->value_len,
        .limit_type = r->limit_type[0] ? keep_cstr(x, r->limit_type) : NULL,
    };
    if (out->limit_type) {
        const ps_type_rule *rule = ps_rules_type(x->rules, r->limit_type);
        snprintf(out->limit, sizeof out->limit, "%u %s", rule->limit,
                 ps_frequency_name(rule->frequency));
    }
    segment_of(x, r->profile, out->segment_id);
    segment_of(x, r->canonical, out->canonical);
}

static ps_status explain_outcome(explainer *x, const rows *rs, uint8_t coll, const outcome *o,
                                 ps_explain_outcome *out)
{
    out->present = true;
    out->result = o->result;
    segment_of(x, o->profile, out->segment_id);
    out->merged = ps_arena_alloc(x->keep, (rs->n + 1) * sizeof *out->merged); /* at most */
    for (size_t i = 0; i < rs->n; i++)
        if (rs->v[i].collection == coll && rs->v[i].kind == PS_AUDIT_MERGE &&
            absorbed_here(x, &rs->v[i]))
            segment_of(x, rs->v[i].profile, out->merged[out->merged_count++]);
    uint64_t now = 0;
    ps_status st = o->profile ? ps_graph_find(x->t, o->profile, &now) : PS_OK;
    if (st == PS_ENOTFOUND || st == PS_ECORRUPT) {
        st = PS_OK; /* erased since */
        now = 0;
    }
    segment_of(x, now, out->canonical_now);
    return st;
}

/* Explains logged message `seq` (`lr`), parsed as `ev`. */
static ps_status explain_parsed(explainer *x, uint64_t seq, const ps_log_rec *lr,
                                const ps_event *ev, ps_explain_msg *m)
{
    ps_status st = PS_OK;
    memset(m, 0, sizeof *m);
    m->seq = seq;
    m->type = ps_msg_type_name(ev->type == PS_MSG_FILTERED ? ev->filtered_type : ev->type);
    m->message_id = keep_str(x, (const char *)lr->message_id.ptr, lr->message_id.len);
    m->source_id = keep_str(x, (const char *)lr->source_id.ptr, lr->source_id.len);
    m->timestamp_ms = lr->timestamp_ms;
    m->received_ms = lr->received_ms;
    if (ev->type == PS_MSG_FILTERED) {
        m->filtered_by = keep_cstr(x, ev->filter);
        return PS_OK;
    }
    rows rs = {0};
    outcome oc[2] = {{"append", 0}, {"append", 0}};
    bool group = ev->type == PS_MSG_GROUP; /* the only calls with account identifiers */
    st = rows_of(x->t, seq, &rs);
    for (uint8_t c = 0; c <= group && st == PS_OK; c++)
        st = outcome_of(x, seq, ev, &rs, c, &oc[c]);
    if (st == PS_OK) {
        m->ids = ps_arena_alloc(x->keep, (ev->id_count + 1) * sizeof *m->ids);
        for (size_t i = 0; i < ev->id_count; i++)
            explain_id(x, &ev->ids[i], &rs, &oc[ev->ids[i].collection], &m->ids[i]);
        m->id_count = ev->id_count;
        m->rows = ps_arena_alloc(x->keep, (rs.n + 1) * sizeof *m->rows);
        for (size_t i = 0; i < rs.n; i++)
            explain_row(x, &rs.v[i], &m->rows[i]);
        m->row_count = rs.n;
        st = explain_outcome(x, &rs, PS_USERS, &oc[PS_USERS], &m->outcome[PS_USERS]);
        if (st == PS_OK && group)
            st = explain_outcome(x, &rs, PS_ACCOUNTS, &oc[PS_ACCOUNTS], &m->outcome[PS_ACCOUNTS]);
    }
    rows_clear(&rs);
    return st;
}

static ps_status explain_one(explainer *x, uint64_t seq, ps_explain_msg *m)
{
    ps_log_rec lr;
    ps_status st = ps_store_log_get(x->t, seq, &lr);
    if (st != PS_OK)
        return st;
    /* read back as a rebuild reads it: the logged line with its stamps */
    ps_accept_opts o = {
        .rules = x->rules,
        .now_ms = lr.received_ms,
        .keep_received_at = true,
        .source_id = "",
        .sequence = seq,
    };
    ps_buf line;
    ps_buf_init(&line);
    parsed p = {.ok = false};
    ps_drop why;
    if ((st = ps_history_line(&lr, &line)) == PS_OK)
        st = ps_event_parse(line.ptr, line.len, &o, &x->parse, keep_event, &p, &why);
    if (st != PS_OK || !p.ok) {
        ps_buf_clear(&line);
        return PS_ECORRUPT; /* it was accepted once: its log entry must read back */
    }
    st = explain_parsed(x, seq, &lr, &p.ev, m); /* the event may point into the line */
    ps_buf_clear(&line);
    ps_arena_clear(&x->parse);
    return st;
}

ps_status ps_explain(ps_txn *t, const ps_rules *rules, const char *message_id, ps_explanation *out)
{
    memset(out, 0, sizeof *out);
    ps_arena_init(&out->arena);
    explainer x = {.t = t, .rules = rules, .keep = &out->arena, .message_id = message_id};
    ps_arena_init(&x.parse);
    out->message_id = keep_cstr(&x, message_id);
    ps_status st = ps_store_log_scan(t, 1, false, find_logged, &x);
    if (st == PS_OK && x.nseqs == 0)
        st = PS_ENOTFOUND;
    if (st == PS_OK)
        out->msgs = ps_arena_alloc(&out->arena, x.nseqs * sizeof *out->msgs);
    for (size_t i = 0; i < x.nseqs && st == PS_OK; i++)
        if ((st = explain_one(&x, x.seqs[i], &out->msgs[i])) == PS_OK)
            out->count++;
    free(x.seqs);
    ps_arena_clear(&x.parse);
    return st;
}

void ps_explanation_clear(ps_explanation *e)
{
    ps_arena_clear(&e->arena);
    memset(e, 0, sizeof *e);
}

/* ---- JSON ---- */

static void json_segment(ps_buf *b, const char *segment_id)
{
    if (segment_id[0])
        ps_buf_json_cstr(b, segment_id);
    else
        ps_buf_puts(b, "null");
}

void ps_explain_json(const ps_explanation *e, ps_buf *b)
{
    ps_buf_puts(b, "{\"message_id\":");
    ps_buf_json_cstr(b, e->message_id);
    ps_buf_puts(b, ",\"messages\":[");
    for (size_t i = 0; i < e->count; i++) {
        const ps_explain_msg *m = &e->msgs[i];
        ps_buf_puts(b, i ? ",{\"seq\":" : "{\"seq\":");
        ps_buf_u64(b, m->seq);
        ps_buf_printf(b, ",\"type\":\"%s\",\"message_id\":", m->type);
        ps_buf_json_cstr(b, m->message_id);
        ps_buf_puts(b, ",\"source_id\":");
        ps_buf_json_cstr(b, m->source_id);
        ps_buf_puts(b, ",\"timestamp\":");
        ps_time_json(b, m->timestamp_ms);
        ps_buf_puts(b, ",\"received_at\":");
        ps_time_json(b, m->received_ms);
        if (m->filtered_by) {
            ps_buf_puts(b, ",\"filtered_by\":");
            ps_buf_json_cstr(b, m->filtered_by);
        }
        ps_buf_puts(b, ",\"identifiers\":[");
        for (size_t k = 0; k < m->id_count; k++) {
            const ps_explain_id *x = &m->ids[k];
            ps_buf_printf(b, "%s{\"collection\":\"%s\",\"type\":", k ? "," : "",
                          ps_collection_name(x->collection));
            ps_buf_json_cstr(b, x->type);
            ps_buf_puts(b, ",\"value\":");
            ps_buf_json_str(b, x->value, x->value_len);
            ps_buf_puts(b, ",\"from\":");
            ps_buf_json_cstr(b, x->from);
            ps_buf_printf(b, ",\"status\":\"%s\",\"profile\":", x->status);
            json_segment(b, x->segment_id);
            ps_buf_puts(b, ",\"detail\":");
            ps_buf_json_cstr(b, x->detail);
            ps_buf_putc(b, '}');
        }
        ps_buf_puts(b, "],\"decisions\":[");
        for (size_t k = 0; k < m->row_count; k++) {
            const ps_explain_row *r = &m->rows[k];
            ps_buf_puts(b, k ? ",{\"seq\":" : "{\"seq\":");
            ps_buf_u64(b, r->seq);
            ps_buf_printf(b, ",\"collection\":\"%s\",\"kind\":\"%s\"",
                          ps_collection_name(r->collection), r->kind);
            if (r->reason)
                ps_buf_printf(b, ",\"reason\":\"%s\"", r->reason);
            ps_buf_puts(b, ",\"segment_id\":");
            json_segment(b, r->segment_id);
            ps_buf_puts(b, ",\"canonical_segment_id\":");
            json_segment(b, r->canonical);
            if (r->type) {
                ps_buf_puts(b, ",\"type\":");
                ps_buf_json_cstr(b, r->type);
                ps_buf_puts(b, ",\"value\":");
                ps_buf_json_str(b, r->value, r->value_len);
            }
            if (r->limit_type) {
                ps_buf_puts(b, ",\"limit_type\":");
                ps_buf_json_cstr(b, r->limit_type);
                ps_buf_printf(b, ",\"limit\":\"%s\"", r->limit);
            }
            ps_buf_putc(b, '}');
        }
        ps_buf_puts(b, "],\"outcome\":{");
        for (uint8_t c = 0, n = 0; c < 2; c++) {
            const ps_explain_outcome *o = &m->outcome[c];
            if (!o->present)
                continue;
            ps_buf_printf(b, "%s\"%s\":{\"result\":\"%s\",\"segment_id\":", n++ ? "," : "",
                          ps_collection_name(c), o->result);
            json_segment(b, o->segment_id);
            ps_buf_puts(b, ",\"merged\":[");
            for (size_t k = 0; k < o->merged_count; k++) {
                if (k)
                    ps_buf_putc(b, ',');
                ps_buf_json_cstr(b, o->merged[k]);
            }
            ps_buf_puts(b, "],\"canonical_now\":");
            json_segment(b, o->canonical_now);
            ps_buf_putc(b, '}');
        }
        ps_buf_puts(b, "}}");
    }
    ps_buf_puts(b, "]}");
}
