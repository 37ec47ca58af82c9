/* SPDX-License-Identifier: MIT */
/* unmerge: the use case around ps_graph_unmerge: find the profile by segment_id, plan or
 * carry out in one write transaction, describe it as JSON. */
#include "ps/unmerge.h"

#include <string.h>

#include "ps/graph.h"
#include "ps/graphdb.h"

#define IDS_LISTED 20

ps_status ps_space_unmerge(ps_space *sp, const char *segment_id, bool dry_run, bool keep_apart,
                           ps_buf *out, const char **why)
{
    *why = "";
    ps_txn *t;
    ps_status st = ps_txn_begin(ps_space_store(sp), true, &t);
    if (st != PS_OK)
        return st;
    uint64_t seq;
    ps_unmerge_plan plan = {0};
    st = ps_store_segid_get(t, segment_id, &seq);
    if (st == PS_OK)
        st = ps_graph_unmerge(t, seq, !dry_run, keep_apart, &plan);
    if (st == PS_EINVAL)
        *why = "the profile is canonical: it was not merged into another, so there is nothing "
               "to unmerge";
    ps_profile p, c;
    if (st == PS_OK && (st = ps_store_profile_get(t, plan.profile, &p)) == PS_OK)
        st = ps_store_profile_get(t, plan.canonical, &c);
    if (st == PS_OK) {
        ps_buf_printf(out, "{\"applied\":%s,\"segment_id\":\"%s\",\"from\":\"%s\",\"profiles\":[",
                      dry_run ? "false" : "true", p.segment_id, c.segment_id);
        for (size_t i = 0; i < plan.group_count; i++) {
            ps_profile m;
            if ((st = ps_store_profile_get(t, plan.group[i], &m)) != PS_OK)
                break;
            ps_buf_printf(out, "%s\"%s\"", i ? "," : "", m.segment_id);
        }
        ps_buf_printf(out, "],\"identifiers\":{\"count\":%zu,\"first\":[", plan.identifier_count);
        for (size_t i = 0; i < plan.identifier_count && i < IDS_LISTED; i++) {
            if (i)
                ps_buf_putc(out, ',');
            ps_buf_json_str(out, plan.identifiers[i], strlen(plan.identifiers[i]));
        }
        ps_buf_printf(out, "]},\"kept_apart\":%s}", keep_apart && !dry_run ? "true" : "false");
    }
    ps_unmerge_plan_clear(&plan);
    if (st == PS_OK && !dry_run)
        return ps_txn_commit(t);
    ps_txn_abort(t);
    return st;
}
