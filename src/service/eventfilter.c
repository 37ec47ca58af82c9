/* SPDX-License-Identifier: MIT */
/* eventfilter: filter changes as meta writes (see ps/eventfilter.h). */
#include "ps/eventfilter.h"

#include <stdio.h>
#include <string.h>

#include "ps/store.h"

typedef enum { OP_CREATE, OP_UPDATE, OP_DELETE } op_kind;

typedef struct change {
    op_kind kind;
    const char *name, *new_name, *fql;
    int enabled;
    int64_t now_ms;
} change;

static ps_status apply(ps_space *sp, const change *c, char *err, size_t err_cap)
{
    err[0] = 0;
    ps_txn *t;
    ps_status st = ps_txn_begin(ps_space_store(sp), true, &t);
    if (st != PS_OK)
        return st;
    const ps_filter_set *set;
    ps_buf doc;
    ps_buf_init(&doc);
    st = ps_space_filters(sp, t, &set);
    if (st == PS_OK) {
        switch (c->kind) {
        case OP_CREATE:
            st = ps_filters_add(set, c->name, c->fql, c->enabled != 0, c->now_ms, &doc, err,
                                err_cap);
            break;
        case OP_UPDATE:
            st = ps_filters_update(set, c->name, c->new_name, c->enabled, &doc, err, err_cap);
            break;
        case OP_DELETE:
            st = ps_filters_remove(set, c->name, &doc);
            if (st == PS_ENOTFOUND)
                snprintf(err, err_cap, "no filter named '%.80s'", c->name);
            break;
        }
    }
    if (st == PS_OK)
        st = ps_store_meta_put(t, PS_FILTERS_KEY, (ps_slice){doc.ptr, doc.len});
    ps_buf_clear(&doc);
    if (st != PS_OK) {
        ps_txn_abort(t);
        return st;
    }
    return ps_txn_commit(t);
}

ps_status ps_eventfilter_create(ps_space *sp, const char *name, const char *fql, bool enabled,
                                int64_t now_ms, char *err, size_t err_cap)
{
    change c = {OP_CREATE, name, NULL, fql, enabled, now_ms};
    return apply(sp, &c, err, err_cap);
}

ps_status ps_eventfilter_update(ps_space *sp, const char *name, const char *new_name, int enabled,
                                char *err, size_t err_cap)
{
    change c = {OP_UPDATE, name, new_name, NULL, enabled, 0};
    return apply(sp, &c, err, err_cap);
}

ps_status ps_eventfilter_delete(ps_space *sp, const char *name, char *err, size_t err_cap)
{
    change c = {OP_DELETE, name, NULL, NULL, -1, 0};
    return apply(sp, &c, err, err_cap);
}

ps_status ps_eventfilter_list(ps_space *sp, ps_buf *out)
{
    ps_txn *t;
    ps_status st = ps_txn_begin(ps_space_store(sp), false, &t);
    if (st != PS_OK)
        return st;
    const ps_filter_set *set;
    st = ps_space_filters(sp, t, &set);
    if (st == PS_OK)
        ps_filters_json(set, out);
    ps_txn_abort(t);
    return st;
}
