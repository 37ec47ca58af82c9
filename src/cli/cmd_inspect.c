/* SPDX-License-Identifier: MIT */
/* profilectl inspect / export: print profiles through the shared read model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"
#include "ps/clock.h"
#include "ps/profile.h"

static bool print_extid(void *ud, const ps_extid *x)
{
    (void)ud;
    char tb[PS_TIME_BUF];
    printf("  %s:%.*s  (first seen %s, source %s)\n", x->type, (int)x->value_len, x->value,
           ps_time_format(x->mapping->first_seen_ms, tb), x->mapping->source_id);
    return true;
}

static ps_status print_text(ps_txn *t, const char *space, const ps_profile *p,
                            size_t event_limit)
{
    char tb[PS_TIME_BUF], tb2[PS_TIME_BUF];
    uint64_t *members;
    size_t n;
    ps_status st = ps_profile_members(t, p->seq, &members, &n);
    if (st != PS_OK)
        return st;
    printf("segment_id  %s (%s)\n", p->segment_id, ps_collection_name(p->collection));
    printf("created     %s, updated %s\n", ps_time_format(p->created_ms, tb),
           ps_time_format(p->updated_ms, tb2));
    printf("merged ids  ");
    for (size_t i = 0, k = 0; i < n; i++) {
        ps_profile m;
        if (members[i] == p->seq || ps_profile_get(t, members[i], &m) != PS_OK)
            continue;
        printf("%s%s -> %s at %s by message %s", k++ ? "\n            " : "", m.segment_id,
               p->segment_id, ps_time_format(m.merged_ms, tb), m.merged_by_message_id);
    }
    if (n > 1)
        printf("\n            (why: profilectl explain %s MESSAGE_ID)", space);
    printf(n > 1 ? "\nidentities\n" : "(none)\nidentities\n");
    if ((st = ps_profile_external_ids(t, p, print_extid, NULL)) != PS_OK)
        goto done;
    ps_trait_list traits;
    if ((st = ps_profile_traits(t, members, n, &traits)) != PS_OK)
        goto done;
    printf("traits%s\n", traits.count ? "" : "      (none)");
    for (size_t i = 0; i < traits.count; i++)
        printf("  %s = %s\n", traits.items[i].key, traits.items[i].json);
    ps_trait_list_clear(&traits);
    ps_event_ref *refs = ps_xmalloc((event_limit ? event_limit : 1) * sizeof *refs);
    size_t count = 0;
    ps_event_query q = {.min_ts = INT64_MIN, .max_ts = INT64_MAX, .limit = event_limit};
    st = ps_profile_events(t, members, n, &q, refs, &count);
    printf("events%s\n", count ? " (newest first)" : "      (none)");
    for (size_t i = 0; i < count && st == PS_OK; i++) {
        ps_event_rec e;
        ps_slice mid;
        if ((st = ps_profile_event_get(t, &refs[i], &e, &mid)) == PS_OK)
            printf("  %s  %.*s  %.*s\n", ps_time_format(e.timestamp_ms, tb), (int)mid.len,
                   (const char *)mid.ptr, (int)e.name.len, (const char *)e.name.ptr);
    }
    free(refs);
    uint64_t *links;
    size_t nl;
    if (st == PS_OK && (st = ps_profile_links(t, members, n, &links, &nl)) == PS_OK) {
        printf("links%s\n", nl ? "" : "       (none)");
        for (size_t i = 0; i < nl; i++) {
            ps_profile lp;
            if (ps_profile_get(t, links[i], &lp) == PS_OK)
                printf("  %s\n", lp.segment_id);
        }
        free(links);
    }
done:
    free(members);
    return st;
}

/* The profile found and shown in one guarded read (ps_space_read): a damaged page fails the
 * command with its error instead of stopping the process. */
typedef struct inspect_call {
    ps_space *sp;
    const char *space, *ident;
    bool json;
    size_t event_limit;
    bool found; /* past the lookup: a later error is the reading's */
} inspect_call;

static ps_status inspect_step(ps_txn *t, void *ud)
{
    inspect_call *x = ud;
    const ps_rules *rules;
    ps_profile p;
    ps_status st = ps_space_rules(x->sp, t, &rules);
    if (st == PS_OK)
        st = ps_profile_find(t, rules, -1, x->ident, strlen(x->ident), &p);
    if (st != PS_OK)
        return st;
    x->found = true;
    if (!x->json)
        return print_text(t, x->space, &p, x->event_limit);
    ps_buf out;
    ps_buf_init(&out);
    ps_render_opts o = {
        .event_limit = x->event_limit, .metadata = true, .links = true, .merges = true};
    st = ps_profile_render(t, &p, &o, &out);
    if (st == PS_OK)
        printf("%s\n", (const char *)out.ptr);
    ps_buf_clear(&out);
    return st;
}

int cmd_inspect(cli *c)
{
    size_t event_limit = 20;
    int rc = cli_take_number(c, "--events", 0, 10000, &event_limit);
    if (rc || (rc = cli_no_more_options(c)))
        return rc;
    if (c->argc != 2)
        return cli_fail(EXIT_USAGE, "usage: profilectl inspect SPACE IDENT [--json] [--events N]"
                                    "  (IDENT: type:value or segment_id)");
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], true, &sp)))
        return rc;
    inspect_call x = {sp, c->argv[0], c->argv[1], c->json, event_limit, false};
    ps_status st = ps_space_read(sp, inspect_step, &x);
    ps_space_close(sp);
    if (st == PS_EINVAL && !x.found)
        return cli_fail(EXIT_INVALID, "'%s' is neither type:value nor a segment_id", x.ident);
    if (st == PS_ENOTFOUND && !x.found)
        return cli_fail(EXIT_NOTFOUND, "no profile for %s in space %s", x.ident, x.space);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "cannot read profile: %s", ps_status_str(st));
    return EXIT_OK;
}

typedef struct export_ctx {
    ps_txn *t;
    int collection;
    bool messages;
    ps_buf line;
    ps_status st;
    uint64_t count;
    bool write_failed; /* standard output took less than a line: the export stops */
} export_ctx;

static bool export_one(void *ud, const ps_profile *p)
{
    export_ctx *x = ud;
    if (p->parent != 0 || (x->collection >= 0 && p->collection != x->collection))
        return true;
    ps_buf_reset(&x->line);
    ps_render_opts o = {.messages = x->messages};
    if ((x->st = ps_profile_render(x->t, p, &o, &x->line)) != PS_OK)
        return false;
    ps_buf_putc(&x->line, '\n');
    if (fwrite(x->line.ptr, 1, x->line.len, stdout) != x->line.len) {
        x->write_failed = true;
        return false;
    }
    x->count++;
    return true;
}

static ps_status export_step(ps_txn *t, void *ud)
{
    export_ctx *x = ud;
    x->t = t;
    return ps_profile_scan(t, 1, export_one, x);
}

int cmd_export(cli *c)
{
    const char *coll = cli_take_option(c, "--collection");
    bool messages = cli_take_flag(c, "--messages");
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 1)
        return cli_fail(EXIT_USAGE, "usage: profilectl export SPACE [--collection users|accounts] "
                                    "[--messages]");
    int collection = coll ? ps_collection_parse(coll) : -1;
    if (coll && collection < 0)
        return cli_fail(EXIT_USAGE, "--collection must be users or accounts");
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], true, &sp)))
        return rc;
    /* one read transaction: a consistent snapshot, profiles in creation (seq) order, one
     * profile in memory at a time */
    export_ctx x = {.collection = collection, .messages = messages};
    ps_buf_init(&x.line);
    ps_status st = ps_space_read(sp, export_step, &x); /* guarded: damage fails it */
    if (st == PS_OK)
        st = x.st;
    ps_buf_clear(&x.line);
    ps_space_close(sp);
    if (x.write_failed || fflush(stdout) != 0)
        return cli_fail(EXIT_STORE, "cannot write the export to standard output");
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "export failed: %s", ps_status_str(st));
    return EXIT_OK;
}
