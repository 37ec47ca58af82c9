/* SPDX-License-Identifier: MIT */
/* profilectl source create|list|origins: Tracking API sources of a space. The write key is
 * printed once, alone, on stdout; the catalog keeps only its hash. */
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
    char tb[PS_TIME_BUF], origins[sizeof src->origins];
    ps_time_format(src->created_ms, tb);
    if (l->json) { /* ids and names are [A-Za-z0-9_-]; origins are checked hosts */
        printf("%s{\"source_id\":\"%s\",\"name\":\"%s\",\"created_at\":\"%s\","
               "\"origins\":[",
               l->n ? "," : "", src->source_id, src->name, tb);
        for (const char *p = src->origins; *p;) {
            size_t len = strcspn(p, "\n");
            printf("%s\"%.*s\"", p == src->origins ? "" : ",", (int)len, p);
            p += len + (p[len] != 0);
        }
        fputs("]}", stdout);
    } else {
        snprintf(origins, sizeof origins, "%s", src->origins[0] ? src->origins : "any origin");
        for (char *p = origins; (p = strchr(p, '\n'));)
            *p = ' ';
        if (l->n == 0) /* a header over the first row only: no sources prints nothing */
            printf("%-22s %-24s %-24s  %s\n", "SOURCE_ID", "NAME", "CREATED", "ORIGINS");
        printf("%-22s %-24s %s  %s\n", src->source_id, src->name, tb, origins);
    }
    l->n++;
    return true;
}

/* profilectl source origins SPACE SOURCE (ORIGIN... | --any) */
static int set_origins(cli *c, ps_sources *cat, bool any)
{
    size_t n = (size_t)c->argc - 3, bad;
    if (n > PS_ORIGINS_MAX)
        return cli_fail(EXIT_INVALID, "at most %d origins per source", PS_ORIGINS_MAX);
    ps_status st = ps_source_set_origins(cat, c->argv[1], c->argv[2],
                                         (const char *const *)c->argv + 3, n, &bad);
    if (st == PS_EINVAL && bad < n)
        return cli_fail(EXIT_INVALID,
                        "invalid origin '%s': want scheme://host[:port] with scheme http or "
                        "https and no path, e.g. https://shop.example or https://*.shop.example",
                        c->argv[3 + bad]);
    if (st == PS_ENOTFOUND)
        return cli_fail(EXIT_NOTFOUND, "space %s has no source named or identified '%s'",
                        c->argv[1], c->argv[2]);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "cannot set the origins: %s", ps_status_str(st));
    if (!c->json) {
        printf(any ? "source %s: any origin\n" : "source %s: %zu origin(s)\n", c->argv[2], n);
        return EXIT_OK;
    }
    ps_buf b; /* {"source":..., "origins":[...]} ([] for any origin) */
    ps_buf_init(&b);
    ps_buf_puts(&b, "{\"source\":");
    ps_buf_json_cstr(&b, c->argv[2]);
    ps_buf_puts(&b, ",\"origins\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            ps_buf_putc(&b, ',');
        ps_buf_json_cstr(&b, c->argv[3 + i]);
    }
    ps_buf_puts(&b, "]}");
    printf("%s\n", (const char *)b.ptr);
    ps_buf_clear(&b);
    return EXIT_OK;
}

int cmd_source(cli *c)
{
    const char *name = cli_take_option(c, "--name");
    bool any = cli_take_flag(c, "--any");
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    const char *verb = c->argc > 0 ? c->argv[0] : "";
    bool create = strcmp(verb, "create") == 0, list = strcmp(verb, "list") == 0,
         origins = strcmp(verb, "origins") == 0;
    if (!((create && c->argc == 2 && !any) || (list && c->argc == 2 && !name && !any) ||
          (origins && !name && ((any && c->argc == 3) || (!any && c->argc > 3)))))
        return cli_fail(EXIT_USAGE, "usage: profilectl source create SPACE [--name NAME] | "
                                    "source list SPACE | "
                                    "source origins SPACE SOURCE (ORIGIN... | --any)");
    if (name && !ps_space_name_valid(name))
        return cli_fail(EXIT_INVALID,
                        "invalid source name '%s' (1-64 characters of A-Z a-z 0-9 _ -)", name);
    ps_space *sp; /* the space must exist; opening it says so clearly when it does not */
    if ((rc = cli_open_space(c, c->argv[1], true, &sp)) != EXIT_OK)
        return rc;
    ps_space_close(sp);
    ps_sources *cat;
    ps_status st = ps_sources_open(c->data_dir, create, &cat);
    if (st == PS_ENOTFOUND && origins)
        return cli_fail(EXIT_NOTFOUND, "space %s has no sources yet", c->argv[1]);
    if (st == PS_ENOTFOUND) { /* no catalog yet: no sources */
        if (c->json)
            puts("[]");
        return EXIT_OK;
    }
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "cannot open the catalog in %s/meta: %s", c->data_dir,
                        ps_status_str(st));
    if (origins) {
        rc = set_origins(c, cat, any);
    } else if (create) {
        ps_source_info src;
        st = ps_source_create(cat, c->argv[1], name, ps_clock_now_ms(), &src);
        if (st == PS_ECONFLICT)
            rc = cli_fail(EXIT_INVALID, "space %s already has a source named '%s'", c->argv[1],
                          name);
        else if (st != PS_OK)
            rc = cli_fail(cli_exit_code(st), "cannot create a source: %s", ps_status_str(st));
        else if (c->json)
            printf("{\"source_id\":\"%s\",\"write_key\":\"%s\",\"name\":\"%s\"}\n", src.source_id,
                   src.write_key, src.name);
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
