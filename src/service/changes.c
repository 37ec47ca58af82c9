/* SPDX-License-Identifier: MIT */
/* changes: the audit table read out as Profiles Sync rows (see ps/changes.h). Each audit row
 * gives at most one row, except a trait change, which gives one row per trait the message
 * set: those are read back from the message in the log. */
#include "ps/changes.h"

#include <stdio.h>
#include <string.h>

#include "ps/auth.h"
#include "ps/clock.h"
#include "ps/event.h"
#include "ps/graph.h"
#include "ps/graphdb.h"
#include "ps/msglog.h"
#include "ps/records.h"
#include "ps/store.h"

static const struct {
    unsigned bit;
    const char *name;
} table_names[] = {
    {PS_CH_ID_GRAPH, "id_graph_updates"},
    {PS_CH_MAPPINGS, "external_id_mapping_updates"},
    {PS_CH_TRAITS, "profile_traits_updates"},
    {PS_CH_VIOLATIONS, "violations"},
};

const char *ps_changes_table_name(unsigned table)
{
    for (size_t i = 0; i < sizeof table_names / sizeof *table_names; i++)
        if (table_names[i].bit == table)
            return table_names[i].name;
    return "unknown";
}

bool ps_changes_table_parse(const char *name, unsigned *table)
{
    for (size_t i = 0; i < sizeof table_names / sizeof *table_names; i++)
        if (strcmp(table_names[i].name, name) == 0) {
            *table = table_names[i].bit;
            return true;
        }
    return false;
}

/* ---- scanning ---- */

typedef struct scan_ctx {
    ps_space *sp;
    ps_txn *t;
    const ps_rules *rules;
    uint64_t after;
    size_t limit, count;
    unsigned tables;
    ps_change_fn fn;
    void *ud;
    uint64_t next;
    ps_status st;
    ps_arena arena; /* a trait row's parsed message */
    char seg[2][PS_SEGMENT_ID_LEN + 1];
} scan_ctx;

/* The segment_id of profile `seq` into `out`; false when the profile is gone (erased). */
static bool segment_of(scan_ctx *c, uint64_t seq, char *out)
{
    out[0] = 0;
    if (seq == 0)
        return true;
    ps_profile p;
    ps_status st = ps_store_profile_get(c->t, seq, &p);
    if (st == PS_ENOTFOUND)
        return false;
    if (st != PS_OK) {
        c->st = st;
        return false;
    }
    memcpy(out, p.segment_id, sizeof p.segment_id);
    return true;
}

/* Hands one row over when its seq is past `after`; false ends the scan. */
static bool emit(scan_ctx *c, ps_change_row *r, uint64_t audit_seq, uint32_t sub)
{
    r->seq = audit_seq * PS_CHANGES_SUB + sub;
    if (r->seq <= c->after)
        return true;
    c->next = r->seq;
    return c->fn(c->ud, r) && ++c->count < c->limit;
}

typedef struct trait_ctx {
    scan_ctx *c;
    ps_change_row *row;
    uint64_t audit_seq;
    bool go_on;
} trait_ctx;

static ps_status trait_rows(void *ud, const ps_event *ev, ps_drop why, size_t index)
{
    (void)why;
    (void)index;
    trait_ctx *tc = ud;
    if (ev == NULL)
        return PS_OK;
    for (size_t i = 0; i < ev->trait_count && i < PS_CHANGES_SUB && tc->go_on; i++) {
        const ps_trait *tr = &ev->traits[i];
        tc->row->name = PS_SLICE_STR(tr->key);
        tc->row->value = (ps_slice){(const uint8_t *)tr->json, tr->json_len};
        tc->go_on = emit(tc->c, tc->row, tc->audit_seq, (uint32_t)i);
    }
    return PS_OK;
}

/* The traits the row's message set, read back from the log as ingest parsed them. */
static bool traits_of(scan_ctx *c, const ps_audit_rec *a, ps_change_row *r)
{
    if (a->message_seq == 0)
        return true; /* a row from before the feed existed */
    ps_log_rec lr;
    ps_status st = ps_store_log_get(c->t, a->message_seq, &lr);
    if (st == PS_ENOTFOUND)
        return true; /* erased */
    if (st != PS_OK) {
        c->st = st;
        return false;
    }
    ps_accept_opts o = {
        .rules = c->rules,
        .now_ms = lr.received_ms,
        .keep_received_at = true,
        .forced_type = (ps_msg_type)lr.type,
    };
    trait_ctx tc = {c, r, a->seq, true};
    ps_drop why;
    st = ps_event_parse(lr.json.ptr, lr.json.len, &o, &c->arena, trait_rows, &tc, &why);
    ps_arena_clear(&c->arena);
    if (st != PS_OK) {
        c->st = PS_ECORRUPT; /* it was accepted once: its log entry must read back */
        return false;
    }
    return tc.go_on;
}

static bool visit(void *ud, const ps_audit_rec *a)
{
    scan_ctx *c = ud;
    c->next = a->seq * PS_CHANGES_SUB + (PS_CHANGES_SUB - 1); /* read past it */
    ps_change_row r = {
        .segment_id = c->seg[0],
        .canonical_segment_id = c->seg[1],
        .event_type = a->event_type ? ps_msg_type_name((ps_msg_type)a->event_type) : "",
        .message_id = a->message_id,
        .source_id = a->source_id,
        .timestamp_ms = a->timestamp_ms,
        .received_ms = a->received_ms,
        .id_type = a->type,
        .id_value = a->value,
    };
    bool go_on = true;
    switch (a->kind) {
    case PS_AUDIT_CREATE:
    case PS_AUDIT_MERGE:
    case PS_AUDIT_UNMERGE:
        r.table = PS_CH_ID_GRAPH;
        if ((c->tables & r.table) && segment_of(c, a->profile, c->seg[0]) &&
            segment_of(c, a->canonical, c->seg[1]))
            go_on = emit(c, &r, a->seq, 0);
        break;
    case PS_AUDIT_MAPPING:
    case PS_AUDIT_UNMAP:
        r.table = PS_CH_MAPPINGS;
        r.removed = a->kind == PS_AUDIT_UNMAP;
        if (!(c->tables & r.table))
            break;
        if (!segment_of(c, a->profile, c->seg[0]) && (c->st != PS_OK || !r.removed))
            break; /* an erased profile's earlier rows; its REMOVED rows still go out */
        if (r.removed && a->value.len == 45 && memcmp(a->value.ptr, "sha1:", 5) == 0) {
            /* erasure keeps the key a warehouse deletes by, not the value */
            memcpy(r.id_hash, a->value.ptr + 5, 40);
            r.id_value = (ps_slice){NULL, 0};
        } else if (a->value.len) {
            ps_auth_sha1_hex(a->type, a->value, r.id_hash);
        }
        go_on = emit(c, &r, a->seq, 0);
        break;
    case PS_AUDIT_TRAITS:
        r.table = PS_CH_TRAITS;
        if ((c->tables & r.table) && segment_of(c, a->profile, c->seg[0]))
            go_on = traits_of(c, a, &r);
        break;
    case PS_AUDIT_VIOLATION:
        r.table = PS_CH_VIOLATIONS;
        r.reason = ps_violation_name((ps_violation)a->reason);
        if ((c->tables & r.table) && (segment_of(c, a->profile, c->seg[0]) || c->st == PS_OK))
            go_on = emit(c, &r, a->seq, 0);
        break;
    default: break; /* ERASED: the REMOVED rows say what a warehouse needs */
    }
    return go_on && c->st == PS_OK;
}

static ps_status scan_in(ps_txn *t, void *ud)
{
    scan_ctx *c = ud;
    c->t = t;
    ps_status st = ps_space_rules(c->sp, c->t, &c->rules);
    if (st == PS_OK)
        st = ps_store_audit_scan(c->t, c->after / PS_CHANGES_SUB, visit, c);
    return st;
}

ps_status ps_changes_scan(ps_space *sp, uint64_t after, size_t limit, unsigned tables,
                          ps_change_fn fn, void *ud, uint64_t *next)
{
    *next = after;
    if (limit == 0)
        return PS_OK;
    scan_ctx c = {.sp = sp,
                  .after = after,
                  .limit = limit,
                  .tables = tables,
                  .fn = fn,
                  .ud = ud,
                  .next = after};
    ps_arena_init(&c.arena);
    /* guarded: a page that would stop LMDB fails this read, not the process */
    ps_status st = ps_store_read_guarded(ps_space_store(sp), scan_in, &c, NULL);
    ps_arena_clear(&c.arena);
    if (st == PS_OK)
        st = c.st;
    if (st == PS_OK && c.next > after)
        *next = c.next;
    return st;
}

/* ---- output ---- */

static void json_str_or_null(ps_buf *b, const char *key, const char *s, size_t len)
{
    ps_buf_printf(b, ",\"%s\":", key);
    if (len)
        ps_buf_json_str(b, s, len);
    else
        ps_buf_puts(b, "null");
}

static void json_time(ps_buf *b, const char *key, int64_t ms)
{
    char tb[PS_TIME_BUF];
    ps_buf_printf(b, ",\"%s\":\"%s\"", key, ps_time_format(ms, tb));
}

void ps_changes_row_json(const ps_change_row *r, bool with_table, ps_buf *b)
{
    ps_buf_printf(b, "{\"seq\":%llu", (unsigned long long)r->seq);
    if (with_table)
        ps_buf_printf(b, ",\"table\":\"%s\"", ps_changes_table_name(r->table));
    switch (r->table) {
    case PS_CH_ID_GRAPH:
        json_str_or_null(b, "segment_id", r->segment_id, strlen(r->segment_id));
        json_str_or_null(b, "canonical_segment_id", r->canonical_segment_id,
                         strlen(r->canonical_segment_id));
        break;
    case PS_CH_MAPPINGS:
        json_str_or_null(b, "external_id_hash", r->id_hash, strlen(r->id_hash));
        json_str_or_null(b, "external_id_type", (const char *)r->id_type.ptr, r->id_type.len);
        json_str_or_null(b, "external_id_value", (const char *)r->id_value.ptr, r->id_value.len);
        json_str_or_null(b, "segment_id", r->segment_id, strlen(r->segment_id));
        json_str_or_null(b, "triggering_event_source_id", (const char *)r->source_id.ptr,
                         r->source_id.len);
        ps_buf_printf(b, ",\"__operation\":\"%s\"", r->removed ? "REMOVED" : "CREATED");
        break;
    case PS_CH_TRAITS:
        json_str_or_null(b, "segment_id", r->segment_id, strlen(r->segment_id));
        json_str_or_null(b, "name", (const char *)r->name.ptr, r->name.len);
        ps_buf_puts(b, ",\"value\":");
        ps_buf_append(b, r->value.ptr, r->value.len); /* JSON text, as stored */
        break;
    default:
        ps_buf_printf(b, ",\"reason\":\"%s\"", r->reason ? r->reason : "");
        json_str_or_null(b, "segment_id", r->segment_id, strlen(r->segment_id));
        json_str_or_null(b, "external_id_type", (const char *)r->id_type.ptr, r->id_type.len);
        json_str_or_null(b, "external_id_value", (const char *)r->id_value.ptr, r->id_value.len);
        break;
    }
    json_str_or_null(b, "triggering_event_type", r->event_type, strlen(r->event_type));
    json_str_or_null(b, "triggering_event_id", (const char *)r->message_id.ptr, r->message_id.len);
    json_time(b, "timestamp", r->timestamp_ms);
    json_time(b, "received_at", r->received_ms);
    ps_buf_putc(b, '}');
}

void ps_changes_csv_header(unsigned table, ps_buf *b)
{
    switch (table) {
    case PS_CH_ID_GRAPH: ps_buf_puts(b, "seq,segment_id,canonical_segment_id"); break;
    case PS_CH_MAPPINGS:
        ps_buf_puts(b, "seq,external_id_hash,external_id_type,external_id_value,segment_id,"
                       "triggering_event_source_id,__operation");
        break;
    case PS_CH_TRAITS: ps_buf_puts(b, "seq,segment_id,name,value"); break;
    default: ps_buf_puts(b, "seq,reason,segment_id,external_id_type,external_id_value"); break;
    }
    ps_buf_puts(b, ",triggering_event_type,triggering_event_id,timestamp,received_at\r\n");
}

/* One CSV field: quoted when it holds a comma, quote, CR or LF; empty stays empty. */
static void csv_field(ps_buf *b, const void *p, size_t len)
{
    const char *s = p;
    ps_buf_putc(b, ',');
    bool quote = len && (memchr(s, ',', len) || memchr(s, '"', len) || memchr(s, '\r', len) ||
                         memchr(s, '\n', len));
    if (!quote) {
        ps_buf_append(b, s, len);
        return;
    }
    ps_buf_putc(b, '"');
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"')
            ps_buf_putc(b, '"');
        ps_buf_putc(b, s[i]);
    }
    ps_buf_putc(b, '"');
}

static void csv_str(ps_buf *b, const char *s)
{
    csv_field(b, s, strlen(s));
}

void ps_changes_row_csv(const ps_change_row *r, ps_buf *b)
{
    ps_buf_printf(b, "%llu", (unsigned long long)r->seq);
    switch (r->table) {
    case PS_CH_ID_GRAPH:
        csv_str(b, r->segment_id);
        csv_str(b, r->canonical_segment_id);
        break;
    case PS_CH_MAPPINGS:
        csv_str(b, r->id_hash);
        csv_field(b, r->id_type.ptr, r->id_type.len);
        csv_field(b, r->id_value.ptr, r->id_value.len);
        csv_str(b, r->segment_id);
        csv_field(b, r->source_id.ptr, r->source_id.len);
        csv_str(b, r->removed ? "REMOVED" : "CREATED");
        break;
    case PS_CH_TRAITS:
        csv_str(b, r->segment_id);
        csv_field(b, r->name.ptr, r->name.len);
        csv_field(b, r->value.ptr, r->value.len);
        break;
    default:
        csv_str(b, r->reason ? r->reason : "");
        csv_str(b, r->segment_id);
        csv_field(b, r->id_type.ptr, r->id_type.len);
        csv_field(b, r->id_value.ptr, r->id_value.len);
        break;
    }
    csv_str(b, r->event_type);
    csv_field(b, r->message_id.ptr, r->message_id.len);
    char tb[PS_TIME_BUF];
    csv_str(b, ps_time_format(r->timestamp_ms, tb));
    csv_str(b, ps_time_format(r->received_ms, tb));
    ps_buf_puts(b, "\r\n");
}
