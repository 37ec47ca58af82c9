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

/* One change in its own write transaction, run guarded (ps_store_write_guarded): a damaged
 * page fails the change, not the process. What it writes into outlives the step. */
typedef struct apply_call {
    ps_space *sp;
    const change *c;
    char *err;
    size_t err_cap;
    ps_buf doc;
} apply_call;

static ps_status apply_step(ps_txn *t, void *ud)
{
    apply_call *a = ud;
    const change *c = a->c;
    const ps_filter_set *set;
    ps_status st = ps_space_filters(a->sp, t, &set);
    if (st != PS_OK)
        return st;
    switch (c->kind) {
    case OP_CREATE:
        st = ps_filters_add(set, c->name, c->fql, c->enabled != 0, c->now_ms, &a->doc, a->err,
                            a->err_cap);
        break;
    case OP_UPDATE:
        st = ps_filters_update(set, c->name, c->new_name, c->enabled, &a->doc, a->err, a->err_cap);
        break;
    case OP_DELETE:
        st = ps_filters_remove(set, c->name, &a->doc);
        if (st == PS_ENOTFOUND)
            snprintf(a->err, a->err_cap, "no filter named '%.80s'", c->name);
        break;
    }
    return st == PS_OK ? ps_store_meta_put(t, PS_FILTERS_KEY, (ps_slice){a->doc.ptr, a->doc.len})
                       : st;
}

static ps_status apply(ps_space *sp, const change *c, char *err, size_t err_cap)
{
    err[0] = 0;
    apply_call a = {sp, c, err, err_cap, {0}};
    ps_buf_init(&a.doc);
    ps_status st = ps_store_write_guarded(ps_space_store(sp), apply_step, &a);
    ps_buf_clear(&a.doc);
    return st;
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

typedef struct list_call {
    ps_space *sp;
    ps_buf *out;
} list_call;

static ps_status list_step(ps_txn *t, void *ud)
{
    list_call *l = ud;
    const ps_filter_set *set;
    ps_status st = ps_space_filters(l->sp, t, &set);
    if (st == PS_OK)
        ps_filters_json(set, l->out);
    return st;
}

ps_status ps_eventfilter_list(ps_space *sp, ps_buf *out)
{
    list_call l = {sp, out};
    return ps_store_read_guarded(ps_space_store(sp), list_step, &l, NULL);
}
