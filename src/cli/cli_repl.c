/* SPDX-License-Identifier: MIT */
/* What profilectl does about replicated spaces (docs/replication.md): a command that would
 * change one node's copy alone is refused, and the ones that can travel in the stream publish
 * to it with --replicate URL instead of writing the store. */
#include <stdio.h>

#include "cli_int.h"
#include "ps/ingest.h"

bool cli_space_replicated(ps_space *sp)
{
    uint64_t seq;
    return ps_ingest_stream_applied(sp, &seq) == PS_OK;
}

int cli_refuse_replicated(ps_space *sp, const char *what, const char *instead)
{
    if (!cli_space_replicated(sp))
        return EXIT_OK;
    return cli_fail(EXIT_INVALID,
                    "space '%s' is replicated: %s here would change this node's copy alone, "
                    "and the nodes would no longer agree; %s (docs/replication.md)",
                    ps_space_name(sp), what, instead);
}

/* Whether a missing stream may be made for `sp`: not when its store has applied one. */
static bool may_create(ps_space *sp)
{
    uint64_t seq;
    return ps_ingest_stream_applied(sp, &seq) != PS_OK || seq == 0;
}

int cli_repl_open(const char *urls, ps_space *sp, ps_repl **r, ps_repl_pub **p)
{
    char why[200];
    ps_repl_opts o = {.urls = urls};
    *p = NULL;
    ps_status st = ps_repl_connect(&o, r, why, sizeof why);
    if (st == PS_EINVAL)
        return cli_fail(EXIT_USAGE, "--replicate: %s", why);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "--replicate: %s", why);
    st = ps_repl_pub_open(*r, ps_space_name(sp), may_create(sp), p);
    if (st == PS_OK)
        return EXIT_OK;
    cli_repl_end(*r, NULL);
    *r = NULL;
    if (st == PS_ENOTFOUND)
        return cli_fail(EXIT_NOTFOUND,
                        "space '%s' has no stream, yet this node has applied one: nothing was "
                        "sent (docs/replication.md)",
                        ps_space_name(sp));
    return cli_fail(cli_exit_code(st), "cannot reach the stream of space '%s': %s",
                    ps_space_name(sp), ps_status_str(st));
}

void cli_repl_end(ps_repl *r, ps_repl_pub *p)
{
    if (r == NULL)
        return;
    ps_repl_pub_close(p);
    ps_repl_close(r);
    ps_repl_shutdown();
}

int cli_repl_publish(const char *urls, ps_space *sp, ps_repl_kind kind, ps_slice data,
                     uint64_t *seq)
{
    ps_repl *r;
    ps_repl_pub *p;
    int rc = cli_repl_open(urls, sp, &r, &p);
    if (rc)
        return rc;
    ps_status st = ps_repl_pub_add(p, kind, NULL, 0, data);
    if (st == PS_OK)
        st = ps_repl_pub_wait(p, seq);
    cli_repl_end(r, p);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st),
                        "the stream of space '%s' did not store the change (%s); nothing was "
                        "changed",
                        ps_space_name(sp), ps_status_str(st));
    return EXIT_OK;
}
