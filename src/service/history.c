/* SPDX-License-Identifier: MIT */
/* history: reading the accepted-message log, and the format-1 upgrade that creates one. */
#include "ps/history.h"

#include <stdio.h>
#include <string.h>

#include "ps/event.h"
#include "ps/msglog.h"
#include "ps/store.h"

typedef struct scan_ctx {
    int64_t since_ms, until_ms;
    ps_history_fn fn;
    void *ud;
    ps_buf line;
    ps_status st;
    ps_log_lost_fn lost; /* salvaging: a message that does not make a line is passed over */
    void *lost_ud;
} scan_ctx;

/* The log keeps the stamps beside the message; a line carries them inside it. */
ps_status ps_history_line(const ps_log_rec *r, ps_buf *out)
{
    if (r->message_id.len > PS_ID_BYTES || r->source_id.len > PS_ID_BYTES ||
        r->type < PS_MSG_IDENTIFY || r->type > PS_MSG_FILTERED)
        return PS_ECORRUPT;
    ps_buf_reset(out);
    ps_event_log_json((ps_msg_type)r->type, r->message_id, r->received_ms, r->source_id, r->json,
                      out);
    return PS_OK;
}

static bool visit(void *ud, const ps_log_rec *r)
{
    scan_ctx *c = ud;
    if (r->received_ms < c->since_ms || r->received_ms >= c->until_ms)
        return true;
    if ((c->st = ps_history_line(r, &c->line)) != PS_OK && c->lost) {
        c->lost(c->lost_ud, r->seq, r->seq);
        c->st = PS_OK;
        return true;
    }
    if (c->st != PS_OK)
        return false;
    return c->fn(c->ud, (ps_slice){c->line.ptr, c->line.len});
}

/* Reads run guarded (ps_store_read_guarded): a damaged page stops the walk with PS_ECORRUPT,
 * not the process; ps_history_salvage reads on past it. */
static ps_status scan_step(ps_txn *t, void *ud)
{
    return ps_store_log_scan(t, 1, true, visit, ud);
}

ps_status ps_history_scan(ps_space *sp, int64_t since_ms, int64_t until_ms, ps_history_fn fn,
                          void *ud)
{
    scan_ctx c = {since_ms, until_ms, fn, ud, {0}, PS_OK, NULL, NULL};
    ps_status st = ps_store_read_guarded(ps_space_store(sp), scan_step, &c, NULL);
    ps_buf_clear(&c.line);
    return st != PS_OK ? st : c.st;
}

ps_status ps_history_salvage(ps_space *sp, int64_t since_ms, int64_t until_ms, ps_history_fn fn,
                             void *ud, ps_log_lost_fn lost, void *lost_ud)
{
    scan_ctx c = {since_ms, until_ms, fn, ud, {0}, PS_OK, lost, lost_ud};
    ps_status st = ps_store_log_salvage(ps_space_store(sp), visit, &c, lost, lost_ud);
    ps_buf_clear(&c.line);
    return st != PS_OK ? st : c.st;
}

static ps_status info_step(ps_txn *t, void *ud)
{
    ps_history_info *out = ud;
    ps_status st = ps_store_log_info(t, &out->messages, &out->incomplete);
    ps_slice why;
    if (st == PS_OK && out->incomplete &&
        ps_store_meta_get(t, PS_LOG_INCOMPLETE_KEY, &why) == PS_OK)
        snprintf(out->why, sizeof out->why, "%.*s", (int)why.len, (const char *)why.ptr);
    return st;
}

ps_status ps_history_info_get(ps_space *sp, ps_history_info *out)
{
    out->why[0] = 0;
    return ps_store_read_guarded(ps_space_store(sp), info_step, out, NULL);
}

ps_status ps_history_migrate(const char *data_dir, const char *name, int *from_format,
                             uint64_t *messages)
{
    *from_format = 0;
    *messages = 0;
    if (!ps_space_name_valid(name))
        return PS_EINVAL;
    char dir[4096];
    int n = snprintf(dir, sizeof dir, "%s/spaces/%s", data_dir, name);
    if (n < 0 || (size_t)n >= sizeof dir)
        return PS_EINVAL;
    ps_store *store;
    ps_store_opts opts = {.any_format = true};
    ps_status st = ps_store_open(dir, &opts, &store);
    if (st != PS_OK)
        return st;
    *from_format = ps_store_format(store);
    st = ps_store_migrate(store, messages);
    ps_store_close(store);
    return st;
}
