/* SPDX-License-Identifier: MIT */
/* profilectl source create|list: Tracking API sources of a space. The write key is printed
 * once, alone, on stdout; the catalog keeps only its hash. */
#include <stdio.h>
#include <string.h>

#include "cli_int.h"
#include "ps/clock.h"
#include "ps/source.h"

typedef struct list_ctx {
    bool json;
    size_t n;
} list_ctx;

static bool print_source(void *ud, const ps_source_info *src)
{
    list_ctx *l = ud;
    char tb[PS_TIME_BUF];
    ps_time_format(src->created_ms, tb);
    if (l->json) /* ids and names are [A-Za-z0-9_-] */
        printf("%s{\"source_id\":\"%s\",\"name\":\"%s\",\"created_at\":\"%s\"}",
               l->n ? "," : "", src->source_id, src->name, tb);
    else
        printf("%-22s %-24s %s\n", src->source_id, src->name, tb);
    l->n++;
    return true;
}

int cmd_source(cli *c)
{
    const char *name = cli_take_option(c, "--name");
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    const char *verb = c->argc > 0 ? c->argv[0] : "";
    bool create = strcmp(verb, "create") == 0, list = strcmp(verb, "list") == 0;
    if (!((create && c->argc == 2) || (list && c->argc == 2 && !name)))
        return cli_fail(EXIT_USAGE, "usage: profilectl source create SPACE [--name NAME] | "
                                    "source list SPACE");
    if (name && !ps_space_name_valid(name))
        return cli_fail(EXIT_INVALID,
                        "invalid source name '%s' (1-64 characters of A-Z a-z 0-9 _ -)", name);
    ps_space *sp; /* the space must exist; opening it says so clearly when it does not */
    if ((rc = cli_open_space(c, c->argv[1], true, &sp)) != EXIT_OK)
        return rc;
    ps_space_close(sp);
    ps_sources *cat;
    ps_status st = ps_sources_open(c->data_dir, create, &cat);
    if (st == PS_ENOTFOUND) { /* no catalog yet: no sources */
        if (c->json)
            puts("[]");
        return EXIT_OK;
    }
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "cannot open the catalog in %s/meta: %s",
                        c->data_dir, ps_status_str(st));
    if (create) {
        ps_source_info src;
        st = ps_source_create(cat, c->argv[1], name, ps_clock_now_ms(), &src);
        if (st == PS_ECONFLICT)
            rc = cli_fail(EXIT_INVALID, "space %s already has a source named '%s'", c->argv[1],
                          name);
        else if (st != PS_OK)
            rc = cli_fail(cli_exit_code(st), "cannot create a source: %s", ps_status_str(st));
        else if (c->json)
            printf("{\"source_id\":\"%s\",\"write_key\":\"%s\",\"name\":\"%s\"}\n",
                   src.source_id, src.write_key, src.name);
        else
            printf("%s\n", src.write_key);
    } else {
        list_ctx l = {c->json, 0};
        if (c->json)
            fputs("[", stdout);
        st = ps_source_list(cat, c->argv[1], print_source, &l);
        if (c->json)
            fputs("]\n", stdout);
        if (st != PS_OK)
            rc = cli_fail(cli_exit_code(st), "cannot list sources: %s", ps_status_str(st));
    }
    ps_sources_close(cat);
    return rc;
}
