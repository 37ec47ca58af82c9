/* SPDX-License-Identifier: MIT */
/* profilectl changes: the change feed (docs/changes.md) as NDJSON or CSV, from a seq on, once
 * or following new commits until interrupted. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_int.h"
#include "ps/changes.h"

#define PAGE_ROWS 1000     /* rows per snapshot */
#define FOLLOW_POLL_MS 200 /* --follow: how often it looks for new commits */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct out_ctx {
    bool csv, with_table, failed;
    uint64_t rows, max_rows;
    ps_buf line;
} out_ctx;

static bool put_row(void *ud, const ps_change_row *r)
{
    out_ctx *o = ud;
    ps_buf_reset(&o->line);
    if (o->csv) {
        ps_changes_row_csv(r, &o->line);
    } else {
        ps_changes_row_json(r, o->with_table, &o->line);
        ps_buf_putc(&o->line, '\n');
    }
    if (fwrite(o->line.ptr, 1, o->line.len, stdout) != o->line.len) {
        o->failed = true;
        return false;
    }
    return ++o->rows < o->max_rows;
}

/* A seq: digits only, no sign, no overflow. */
static bool parse_seq(const char *s, uint64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

int cmd_changes(cli *c)
{
    const char *after_s = cli_take_option(c, "--after"), *table_s = cli_take_option(c, "--table"),
               *format = cli_take_option(c, "--format");
    bool follow = cli_take_flag(c, "--follow");
    size_t limit = 0;
    int rc = cli_take_number(c, "--limit", 1, 1000000000, &limit);
    if (rc == EXIT_OK)
        rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 1)
        return cli_fail(EXIT_USAGE, "usage: profilectl changes SPACE [--after SEQ] [--limit N] "
                                    "[--table T] [--format ndjson|csv] [--follow]");
    uint64_t after = 0;
    if (after_s && !parse_seq(after_s, &after))
        return cli_fail(EXIT_USAGE, "--after must be a seq printed by an earlier row, got '%s'",
                        after_s);
    unsigned tables = PS_CH_ALL;
    if (table_s && !ps_changes_table_parse(table_s, &tables))
        return cli_fail(EXIT_USAGE,
                        "unknown --table '%s' (id_graph_updates, external_id_mapping_updates, "
                        "profile_traits_updates, violations)",
                        table_s);
    bool csv = false;
    if (format && strcmp(format, "csv") == 0)
        csv = true;
    else if (format && strcmp(format, "ndjson") != 0)
        return cli_fail(EXIT_USAGE, "--format is ndjson or csv, got '%s'", format);
    if (csv && table_s == NULL)
        return cli_fail(EXIT_USAGE, "--format csv needs --table: each table has its own columns");
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], true, &sp)))
        return rc;
    if (follow) {
        struct sigaction sa = {0};
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN); /* a closed reader is a write error, then the end */
    }
    out_ctx o = {.csv = csv, .with_table = table_s == NULL, .max_rows = limit ? limit : UINT64_MAX};
    if (csv)
        ps_changes_csv_header(tables, &o.line);
    if (csv && fwrite(o.line.ptr, 1, o.line.len, stdout) != o.line.len)
        o.failed = true;
    ps_status st = PS_OK;
    while (!o.failed && !interrupted && o.rows < o.max_rows) {
        uint64_t before = o.rows, next;
        size_t want = o.max_rows - o.rows < PAGE_ROWS ? (size_t)(o.max_rows - o.rows) : PAGE_ROWS;
        st = ps_changes_scan(sp, after, want, tables, put_row, &o, &next);
        if (st != PS_OK)
            break;
        bool moved = next != after;
        after = next;
        if (fflush(stdout) != 0)
            o.failed = true;
        if (o.rows - before == want)
            continue; /* a full page: there may be more at once */
        if (!follow)
            break;
        if (!moved) {
            struct timespec ts = {0, FOLLOW_POLL_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    ps_space_close(sp);
    ps_buf_clear(&o.line);
    if (o.failed)
        return cli_fail(EXIT_STORE, "cannot write the changes to standard output");
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "cannot read the changes: %s", ps_status_str(st));
    return EXIT_OK;
}
