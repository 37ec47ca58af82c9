/* SPDX-License-Identifier: MIT */
/* profilectl check: runs the graph invariant checker and prints what it found. */
#include <stdio.h>

#include "cli_int.h"
#include "ps/check.h"

int cmd_check(cli *c)
{
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 1)
        return cli_fail(EXIT_USAGE, "usage: profilectl check SPACE");
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], true, &sp)))
        return rc;
    ps_check_report r;
    ps_status st = ps_check_space(sp, &r);
    ps_space_close(sp);
    if (st != PS_OK && st != PS_ECORRUPT)
        return cli_fail(cli_exit_code(st), "check could not read the store: %s",
                        ps_status_str(st));
    if (c->json) {
        printf("{\"ok\":%s,\"profiles\":%llu,\"canonical\":%llu,\"identifiers\":%llu,"
               "\"events\":%llu,\"links\":%llu,\"audit_rows\":%llu,\"problems\":%llu}\n",
               r.problems ? "false" : "true", (unsigned long long)r.profiles,
               (unsigned long long)r.canonical, (unsigned long long)r.identifiers,
               (unsigned long long)r.events, (unsigned long long)r.links,
               (unsigned long long)r.audit_rows, (unsigned long long)r.problems);
    } else {
        printf("profiles %llu (canonical %llu), identifiers %llu, events %llu, links %llu, "
               "audit rows %llu\n",
               (unsigned long long)r.profiles, (unsigned long long)r.canonical,
               (unsigned long long)r.identifiers, (unsigned long long)r.events,
               (unsigned long long)r.links, (unsigned long long)r.audit_rows);
    }
    for (unsigned long long i = 0; i < r.problems && i < PS_CHECK_SHOWN; i++)
        fprintf(stderr, "problem: %s\n", r.shown[i]);
    if (r.problems || st != PS_OK)
        return cli_fail(EXIT_STORE, "check failed: %llu problem(s)",
                        (unsigned long long)r.problems);
    if (!c->json)
        printf("ok\n");
    return EXIT_OK;
}
