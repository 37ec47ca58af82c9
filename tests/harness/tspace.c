/* SPDX-License-Identifier: MIT */
#include "tspace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ps/graphdb.h"
#include "ps/profile.h"
#include "ps/records.h"

void tspace_open(tspace *ts, const char *settings)
{
    snprintf(ts->dir, sizeof ts->dir, "%s", tmpdir_make());
    ps_diags d;
    ps_status st = ps_space_create(ts->dir, "t", settings, settings ? strlen(settings) : 0, &d);
    if (st != PS_OK) {
        fprintf(stderr, "tspace: create failed: %s %s %s\n", ps_status_str(st),
                d.count ? d.items[0].path : "", d.count ? d.items[0].message : "");
        abort();
    }
    if (ps_space_open(ts->dir, "t", false, &ts->sp) != PS_OK)
        abort();
    ps_ingest_opts o = {.source_id = "src1", .keep_received_at = true};
    ps_ingest_begin(ts->sp, &o, &ts->in);
}

void tspace_close(tspace *ts)
{
    ps_ingest_end(ts->in);
    ps_space_close(ts->sp);
    tmpdir_remove(ts->dir);
}

ps_status tspace_ingest(tspace *ts, const char *line)
{
    ps_drop why;
    ps_status st = ps_ingest_payload(ts->in, (const uint8_t *)line, strlen(line), 1, &why);
    ps_status cst = ps_ingest_commit(ts->in);
    if (cst != PS_OK) {
        fprintf(stderr, "tspace: commit failed: %s\n", ps_status_str(cst));
        abort();
    }
    return st;
}

static ps_status find(tspace *ts, const char *ident, ps_profile *p)
{
    ps_txn *t;
    const ps_rules *r;
    ps_status st = ps_txn_begin(ps_space_store(ts->sp), false, &t);
    if (st != PS_OK)
        return st;
    st = ps_space_rules(ts->sp, t, &r);
    if (st == PS_OK)
        st = ps_profile_find(t, r, -1, ident, strlen(ident), p);
    ps_txn_abort(t);
    return st;
}

uint64_t tspace_find(tspace *ts, const char *ident)
{
    ps_profile p;
    return find(ts, ident, &p) == PS_OK ? p.seq : 0;
}

void tspace_segment_id(tspace *ts, const char *ident, char *out)
{
    ps_profile p;
    if (find(ts, ident, &p) == PS_OK)
        snprintf(out, 32, "%s", p.segment_id);
    else
        out[0] = 0;
}

typedef struct audit_q {
    int kind, reason;
    uint64_t n;
} audit_q;

static bool count_audit(void *ud, const ps_audit_rec *a)
{
    audit_q *q = ud;
    if (a->kind == q->kind && (q->reason == 0 || a->reason == q->reason))
        q->n++;
    return true;
}

uint64_t tspace_audit_count(tspace *ts, int kind, int reason)
{
    ps_txn *t;
    audit_q q = {kind, reason, 0};
    if (ps_txn_begin(ps_space_store(ts->sp), false, &t) != PS_OK)
        return 0;
    ps_store_audit_scan(t, 1, count_audit, &q);
    ps_txn_abort(t);
    return q.n;
}
