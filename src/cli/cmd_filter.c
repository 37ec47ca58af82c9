/* SPDX-License-Identifier: MIT */
/* profilectl filter create|list|enable|disable|delete: a space's event filters
 * (docs/filters.md), the same changes as the Profile API's filter routes. */
#include <stdio.h>
#include <string.h>

#include "cli_int.h"
#include "ps/clock.h"
#include "ps/eventfilter.h"

static const char usage[] = "usage: profilectl filter create SPACE NAME 'FQL' [--disabled] | "
                            "filter list SPACE | filter enable|disable|delete SPACE NAME";

int cmd_filter(cli *c)
{
    bool disabled = cli_take_flag(c, "--disabled");
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    const char *verb = c->argc > 0 ? c->argv[0] : "";
    bool create = strcmp(verb, "create") == 0 && c->argc == 4,
         list = strcmp(verb, "list") == 0 && c->argc == 2,
         change = (strcmp(verb, "enable") == 0 || strcmp(verb, "disable") == 0 ||
                   strcmp(verb, "delete") == 0) &&
                  c->argc == 3;
    if (!create && !list && !change)
        return cli_fail(EXIT_USAGE, "%s", usage);
    if (disabled && !create)
        return cli_fail(EXIT_USAGE, "--disabled goes with filter create");
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[1], list, &sp)))
        return rc;
    char err[400] = "";
    ps_status st;
    if (list) {
        ps_buf out;
        ps_buf_init(&out);
        st = ps_eventfilter_list(sp, &out);
        if (st == PS_OK)
            printf("%.*s\n", (int)out.len, (const char *)out.ptr);
        ps_buf_clear(&out);
    } else if (create) {
        st = ps_eventfilter_create(sp, c->argv[2], c->argv[3], !disabled, ps_clock_now_ms(), err,
                                   sizeof err);
    } else if (strcmp(verb, "delete") == 0) {
        st = ps_eventfilter_delete(sp, c->argv[2], err, sizeof err);
    } else {
        st = ps_eventfilter_update(sp, c->argv[2], NULL, strcmp(verb, "enable") == 0, err,
                                   sizeof err);
    }
    ps_space_close(sp);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "%s", err[0] ? err : ps_status_str(st));
    if (!list && c->json)
        printf("{\"ok\":true}\n");
    return EXIT_OK;
}
