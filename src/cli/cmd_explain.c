/* SPDX-License-Identifier: MIT */
/* profilectl explain: why one message went where it went (ps/explain.h), as text or JSON. */
#include <stdio.h>
#include <string.h>

#include "cli_int.h"
#include "ps/clock.h"
#include "ps/explain.h"

static const char *or_dash(const char *s)
{
    return s[0] ? s : "-";
}

static void print_identifier(const ps_explain_id *x)
{
    printf("  %-8s %s:%.*s\n", ps_collection_name(x->collection), x->type, (int)x->value_len,
           x->value);
    printf("           from %s: %s", x->from, x->status);
    if (strcmp(x->status, "matched") == 0 || strcmp(x->status, "merged") == 0 ||
        strcmp(x->status, "kept_apart") == 0)
        printf(" %s", or_dash(x->segment_id));
    else if (strcmp(x->status, "new") == 0)
        printf(", mapped to %s", or_dash(x->segment_id));
    else if (strcmp(x->status, "dropped") == 0 || strcmp(x->status, "shared") == 0)
        printf(x->segment_id[0] ? " (held by %s)" : " (a new value)", x->segment_id);
    printf("\n");
    if (x->detail[0])
        printf("           %s\n", x->detail);
}

static void print_row(const ps_explain_row *r)
{
    printf("  #%llu %s", (unsigned long long)r->seq, r->kind);
    if (r->reason)
        printf(" %s", r->reason);
    if (r->type)
        printf(" %s:%.*s", r->type, (int)r->value_len, r->value);
    if (strcmp(r->kind, "merge") == 0)
        printf(": %s merged into %s", or_dash(r->segment_id), or_dash(r->canonical));
    else if (strcmp(r->kind, "create") == 0)
        printf(": %s", or_dash(r->segment_id));
    else if (r->segment_id[0])
        printf(" (%s)", r->segment_id);
    if (r->limit_type)
        printf(" [%s limit: %s]", r->limit_type, r->limit);
    printf("\n");
}

static void print_outcome(ps_collection coll, const ps_explain_outcome *o)
{
    printf("  %-8s %s", ps_collection_name(coll), o->result);
    if (o->segment_id[0])
        printf(" -> %s", o->segment_id);
    if (o->merged_count) {
        printf(" (merged");
        for (size_t k = 0; k < o->merged_count; k++)
            printf(" %s", or_dash(o->merged[k]));
        printf(")");
    }
    if (o->segment_id[0] && !o->canonical_now[0])
        printf("; erased since");
    else if (o->segment_id[0] && strcmp(o->segment_id, o->canonical_now) != 0)
        printf("; now part of %s", o->canonical_now);
    printf("\n");
}

static void print_text(const ps_explanation *e)
{
    char tb[PS_TIME_BUF], tb2[PS_TIME_BUF];
    for (size_t i = 0; i < e->count; i++) {
        const ps_explain_msg *m = &e->msgs[i];
        printf("message %s: %s, log seq %llu\n", m->message_id, m->type,
               (unsigned long long)m->seq);
        printf("  timestamp %s, received %s, source %s\n", ps_time_format(m->timestamp_ms, tb),
               ps_time_format(m->received_ms, tb2), m->source_id);
        if (m->filtered_by) {
            printf("dropped at the door by event filter %s: nothing was resolved\n\n",
                   m->filtered_by);
            continue;
        }
        printf("identifiers (as the current settings extract them)\n");
        for (size_t k = 0; k < m->id_count; k++)
            print_identifier(&m->ids[k]);
        printf("decisions (audit rows the message wrote)\n");
        if (m->row_count == 0)
            printf("  none: every identifier already belonged to the profile it went to\n");
        for (size_t k = 0; k < m->row_count; k++)
            print_row(&m->rows[k]);
        printf("outcome\n");
        for (int c = 0; c < 2; c++)
            if (m->outcome[c].present)
                print_outcome((ps_collection)c, &m->outcome[c]);
        printf("\n");
    }
}

int cmd_explain(cli *c)
{
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 2)
        return cli_fail(EXIT_USAGE, "usage: profilectl explain SPACE MESSAGE_ID [--json]");
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], true, &sp)))
        return rc;
    ps_txn *t;
    ps_explanation e;
    memset(&e, 0, sizeof e);
    const ps_rules *rules;
    ps_status st = ps_txn_begin(ps_space_store(sp), false, &t);
    if (st == PS_OK) {
        if ((st = ps_space_rules(sp, t, &rules)) == PS_OK)
            st = ps_explain(t, rules, c->argv[1], &e);
        ps_txn_abort(t);
    }
    ps_space_close(sp);
    if (st == PS_ENOTFOUND)
        rc = cli_fail(EXIT_NOTFOUND,
                      "no message %s in the log of %s (a message dropped at the door or as a "
                      "duplicate is not logged; profilectl log lists what is)",
                      c->argv[1], c->argv[0]);
    else if (st != PS_OK)
        rc = cli_fail(cli_exit_code(st), "cannot explain %s: %s", c->argv[1], ps_status_str(st));
    else if (c->json) {
        ps_buf out;
        ps_buf_init(&out);
        ps_explain_json(&e, &out);
        printf("%s\n", (const char *)out.ptr);
        ps_buf_clear(&out);
    } else {
        print_text(&e);
    }
    ps_explanation_clear(&e);
    return rc;
}
