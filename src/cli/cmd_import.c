/* SPDX-License-Identifier: MIT */
/* profilectl import, import-template: profiles from a CSV file (docs/import.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_int.h"
#include "ps/clock.h"
#include "ps/import.h"

static void print_result(const cli *c, const ps_import_result *r, bool dry_run)
{
    const ps_ingest_stats *s = &r->stats;
    if (c->json) {
        printf("{\"import_id\":\"%s\",\"dry_run\":%s,\"rows\":%llu,\"columns\":%llu,"
               "\"identifier_columns\":%llu,\"rows_failed\":%llu,\"accepted\":%llu,"
               "\"duplicates\":%llu,\"profiles_created\":%llu,\"merges\":%llu,"
               "\"mappings\":%llu,\"traits_written\":%llu,\"errors\":[",
               r->id, dry_run ? "true" : "false", (unsigned long long)r->rows,
               (unsigned long long)r->columns, (unsigned long long)r->identifier_columns,
               (unsigned long long)r->rows_failed, (unsigned long long)s->accepted,
               (unsigned long long)s->duplicates, (unsigned long long)s->profiles_created,
               (unsigned long long)s->merges, (unsigned long long)s->mappings,
               (unsigned long long)s->traits_written);
        for (size_t i = 0; i < r->errors_listed; i++)
            printf("%s{\"row\":%llu,\"message\":\"%s\"}", i ? "," : "",
                   (unsigned long long)r->errors[i].row, r->errors[i].message);
        printf("]}\n");
        return;
    }
    printf("import %s%s: %llu rows, %llu columns (%llu identifiers)\n", r->id,
           dry_run ? " (dry run: nothing stored)" : "", (unsigned long long)r->rows,
           (unsigned long long)r->columns, (unsigned long long)r->identifier_columns);
    if (!dry_run)
        printf("accepted %llu, duplicates %llu, profiles created %llu, merges %llu, mappings "
               "%llu, traits %llu\n",
               (unsigned long long)s->accepted, (unsigned long long)s->duplicates,
               (unsigned long long)s->profiles_created, (unsigned long long)s->merges,
               (unsigned long long)s->mappings, (unsigned long long)s->traits_written);
    if (r->rows_failed)
        printf("rows skipped: %llu\n", (unsigned long long)r->rows_failed);
    for (size_t i = 0; i < r->errors_listed; i++)
        printf("row %llu: %s\n", (unsigned long long)r->errors[i].row, r->errors[i].message);
}

int cmd_import(cli *c)
{
    bool dry_run = cli_take_flag(c, "--dry-run");
    const char *source = cli_take_option(c, "--source");
    size_t batch = 50000;
    int rc = cli_take_number(c, "--batch", 1, 1000000, &batch);
    if (rc == EXIT_OK)
        rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 2)
        return cli_fail(EXIT_USAGE, "usage: profilectl import SPACE FILE.csv [--dry-run] "
                                    "[--source ID] [--batch N]");
    struct stat sb;
    if (stat(c->argv[1], &sb) == 0 && !S_ISREG(sb.st_mode))
        return cli_fail(EXIT_INVALID, "%s: not a regular file", c->argv[1]);
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], dry_run, &sp)))
        return rc;
    if (!dry_run && (rc = cli_refuse_replicated(sp, "a CSV import",
                                                "imports do not travel in the stream yet: "
                                                "send the rows as identify calls")) != EXIT_OK) {
        ps_space_close(sp);
        return rc;
    }
    ps_import_opts o = {
        .dry_run = dry_run, .batch = batch, .now_ms = ps_clock_now_ms(), .source_id = source};
    ps_import_result *r = ps_xcalloc(1, sizeof *r);
    ps_mem_reserve_heap(PS_CLI_HEAP_RESERVE);
    ps_status st = ps_import_csv(sp, c->argv[1], &o, r);
    ps_space_close(sp);
    if (st == PS_ENOTFOUND)
        rc = cli_fail(EXIT_NOTFOUND, "%s: no such file", c->argv[1]);
    else if (st != PS_OK)
        rc = cli_fail(cli_exit_code(st), "%s: %s", c->argv[1], ps_status_str(st));
    else if (r->error != PS_CSV_OK)
        rc = cli_fail(EXIT_INVALID, "%s: %s (%s)", c->argv[1], ps_csv_error_message(r->error),
                      ps_csv_error_code(r->error));
    else
        print_result(c, r, dry_run);
    free(r);
    return rc;
}

int cmd_import_template(cli *c)
{
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 1)
        return cli_fail(EXIT_USAGE, "usage: profilectl import-template SPACE");
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], true, &sp)))
        return rc;
    ps_buf out;
    ps_buf_init(&out);
    ps_status st = ps_import_template(sp, &out);
    ps_space_close(sp);
    if (st == PS_OK && c->json) { /* {"columns":[...]}: the names hold no comma or quote */
        ps_buf js;
        ps_buf_init(&js);
        ps_buf_puts(&js, "{\"columns\":[");
        const char *p = (const char *)out.ptr, *end = p + out.len;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *stop = comma ? comma : end;
            if (js.ptr[js.len - 1] != '[')
                ps_buf_putc(&js, ',');
            ps_buf_json_str(&js, p, (size_t)(stop - p));
            p = stop + 1;
        }
        ps_buf_puts(&js, "]}");
        printf("%s\n", (const char *)js.ptr);
        ps_buf_clear(&js);
    } else if (st == PS_OK) {
        printf("%.*s\r\n", (int)out.len, (const char *)out.ptr);
    }
    ps_buf_clear(&out);
    return st == PS_OK ? EXIT_OK : cli_fail(cli_exit_code(st), "%s", ps_status_str(st));
}
