/* SPDX-License-Identifier: MIT */
/* profilectl log: the accepted-message log as NDJSON; rebuild: every derived table again from
 * the log; migrate: storage upgrades. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli_int.h"
#include "ps/clock.h"
#include "ps/history.h"
#include "ps/ingest.h"
#include "ps/writer.h"

typedef struct out_ctx {
    FILE *f;
    uint64_t lines;
    bool failed;
} out_ctx;

static bool put_line(void *ud, ps_slice line)
{
    out_ctx *o = ud;
    if (fwrite(line.ptr, 1, line.len, o->f) != line.len || fputc('\n', o->f) == EOF) {
        o->failed = true;
        return false;
    }
    o->lines++;
    return true;
}

/* Reads --since/--until: an ISO-8601 time, as in messages. */
static int take_time(cli *c, const char *name, int64_t *out)
{
    const char *v = cli_take_option(c, name);
    if (v == NULL)
        return EXIT_OK;
    if (ps_time_parse(v, strlen(v), out) != PS_OK)
        return cli_fail(EXIT_USAGE,
                        "%s must be an ISO-8601 time such as 2026-03-01 or "
                        "2026-03-01T12:00:00Z, got '%s'",
                        name, v);
    return EXIT_OK;
}

typedef struct lost_ctx {
    const char *space;
    uint64_t ranges;
} lost_ctx;

static void say_lost(void *ud, uint64_t from, uint64_t to)
{
    lost_ctx *l = ud;
    l->ranges++;
    if (to == UINT64_MAX)
        fprintf(stderr,
                "profilectl: log of space %s: messages from sequence %llu on could not be "
                "read (damaged pages)\n",
                l->space, (unsigned long long)from);
    else
        fprintf(stderr,
                "profilectl: log of space %s: messages %llu-%llu could not be read "
                "(damaged pages; some of these numbers may never have been used)\n",
                l->space, (unsigned long long)from, (unsigned long long)to);
}

int cmd_log(cli *c)
{
    int64_t since = INT64_MIN, until = INT64_MAX;
    bool salvage = cli_take_flag(c, "--salvage");
    int rc = take_time(c, "--since", &since);
    if (rc == EXIT_OK)
        rc = take_time(c, "--until", &until);
    if (rc == EXIT_OK)
        rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 1)
        return cli_fail(EXIT_USAGE,
                        "usage: profilectl log SPACE [--since TIME] [--until TIME] [--salvage]");
    ps_space *sp;
    /* salvaging reads a damaged store as it is: taking in the server's journal first would
     * write into it */
    if ((rc = salvage ? cli_open_space_as_is(c, c->argv[0], true, &sp)
                      : cli_open_space(c, c->argv[0], true, &sp)))
        return rc;
    if (salvage && ps_writer_journal_present(sp))
        fprintf(stderr,
                "profilectl: note: space %s has a server journal; messages it holds that "
                "were never applied are not in this output\n",
                c->argv[0]);
    ps_history_info info = {0};
    ps_status st = salvage ? PS_OK : ps_history_info_get(sp, &info);
    if (st == PS_OK && info.incomplete)
        fprintf(stderr, "profilectl: note: the log of space %s is incomplete: %s\n", c->argv[0],
                info.why);
    out_ctx o = {stdout, 0, false};
    lost_ctx lost = {c->argv[0], 0};
    if (salvage) /* a damaged store: what can be read, whatever the counts say */
        st = ps_history_salvage(sp, since, until, put_line, &o, say_lost, &lost);
    else if (st == PS_OK)
        st = ps_history_scan(sp, since, until, put_line, &o);
    ps_space_close(sp);
    if (salvage && st == PS_OK && !o.failed)
        fprintf(stderr,
                "profilectl: salvaged %llu messages of space %s; %llu range(s) could not "
                "be read\n",
                (unsigned long long)o.lines, c->argv[0], (unsigned long long)lost.ranges);
    if (fflush(stdout) != 0 || o.failed)
        return cli_fail(EXIT_STORE, "cannot write the log to standard output");
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "cannot read the log: %s", ps_status_str(st));
    return EXIT_OK;
}

int cmd_migrate(cli *c)
{
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 1)
        return cli_fail(EXIT_USAGE, "usage: profilectl migrate SPACE");
    const char *name = c->argv[0];
    if (!ps_space_name_valid(name))
        return cli_fail(EXIT_INVALID,
                        "invalid space name '%s' (1-64 characters of A-Z a-z 0-9 _ -)", name);
    int from;
    uint64_t messages;
    ps_status st = ps_history_migrate(c->data_dir, name, &from, &messages);
    if (st == PS_ENOTFOUND)
        return cli_fail(EXIT_NOTFOUND, "no space '%s' in %s", name, c->data_dir);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "cannot migrate space '%s': %s", name,
                        ps_status_str(st));
    if (c->json)
        printf("{\"space\":\"%s\",\"from_format\":%d,\"format\":%d,\"messages_logged\":%llu}\n",
               name, from, PS_STORE_FORMAT, (unsigned long long)messages);
    else if (from == PS_STORE_FORMAT)
        printf("space %s is already in storage format %d\n", name, PS_STORE_FORMAT);
    else
        printf("space %s: storage format %d -> %d, %llu kept events now in the log (it lacks "
               "the messages format %d did not keep)\n",
               name, from, PS_STORE_FORMAT, (unsigned long long)messages, from);
    return EXIT_OK;
}

#define REBUILD_SETTINGS_MAX (1024 * 1024)
#define DIFF_FIRST 10 /* splits, joins and identifiers listed by a dry run */

int cmd_rebuild(cli *c)
{
    bool force = cli_take_flag(c, "--force"), dry_run = cli_take_flag(c, "--dry-run");
    const char *settings_path = cli_take_option(c, "--settings");
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 1)
        return cli_fail(EXIT_USAGE, "usage: profilectl rebuild SPACE [--settings FILE] "
                                    "[--dry-run] [--force]");
    ps_buf settings, diff;
    ps_buf_init(&settings);
    ps_buf_init(&diff);
    if (settings_path &&
        (rc = cli_read_file(settings_path, REBUILD_SETTINGS_MAX, &settings)) != EXIT_OK) {
        ps_buf_clear(&settings);
        return rc;
    }
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], false, &sp))) {
        ps_buf_clear(&settings);
        return rc;
    }
    if (settings_path && !dry_run &&
        (rc = cli_refuse_replicated(sp, "a rebuild under new settings",
                                    "publish them with settings set --replicate URL, then "
                                    "rebuild without --settings on each node")) != EXIT_OK) {
        ps_buf_clear(&settings);
        ps_space_close(sp);
        return rc;
    }
    int64_t t0 = ps_clock_now_ms();
    ps_ingest_stats s;
    ps_diags d;
    ps_rebuild_opts o = {.force = force,
                         .dry_run = dry_run,
                         .settings = settings_path ? (const char *)settings.ptr : NULL,
                         .settings_len = settings.len,
                         .diff = dry_run ? &diff : NULL,
                         .diff_first = DIFF_FIRST};
    ps_mem_reserve_heap(PS_CLI_HEAP_RESERVE);
    ps_status st = ps_ingest_rebuild(sp, &o, &s, &d);
    ps_history_info info = {0};
    if (st == PS_ECONFLICT)
        ps_history_info_get(sp, &info);
    ps_space_close(sp);
    ps_buf_clear(&settings);
    if (st == PS_EINVAL && settings_path) {
        cli_print_diags(&d);
        rc = cli_fail(EXIT_INVALID, "settings in %s are invalid; nothing changed", settings_path);
    } else if (st == PS_ECONFLICT) {
        rc = cli_fail(EXIT_INVALID,
                      "the log of space %s is incomplete (%s): a rebuild would lose what the "
                      "missing messages made; --force rebuilds anyway",
                      c->argv[0], info.why);
    } else if (st != PS_OK) {
        rc = cli_fail(cli_exit_code(st), "rebuild failed, nothing changed: %s%s", ps_status_str(st),
                      cli_status_hint(st));
    }
    if (rc) {
        ps_buf_clear(&diff);
        return rc;
    }
    double secs = (double)(ps_clock_now_ms() - t0) / 1000.0;
    if (dry_run) { /* the diff is the answer: JSON in both modes */
        printf("{\"applied\":false,\"messages\":%llu,\"seconds\":%.3f,\"diff\":%.*s}\n",
               (unsigned long long)s.messages, secs, (int)diff.len, (const char *)diff.ptr);
        if (!c->json)
            fprintf(stderr,
                    "dry run: nothing changed; without --dry-run the rebuild applies "
                    "%s\n",
                    settings_path ? settings_path : "the current settings");
    } else if (c->json) {
        printf("{\"applied\":true,\"messages\":%llu,\"accepted\":%llu,\"duplicates\":%llu,"
               "\"profiles_created\":%llu,\"merges\":%llu,\"mappings\":%llu,"
               "\"events_stored\":%llu,\"seconds\":%.3f}\n",
               (unsigned long long)s.messages, (unsigned long long)s.accepted,
               (unsigned long long)s.duplicates, (unsigned long long)s.profiles_created,
               (unsigned long long)s.merges, (unsigned long long)s.mappings,
               (unsigned long long)s.events_stored, secs);
    } else {
        printf("rebuilt space %s from %llu logged messages%s%s: %llu profiles, %llu merges, %llu "
               "identifiers, %llu events, %.2f s\n",
               c->argv[0], (unsigned long long)s.messages, settings_path ? " under " : "",
               settings_path ? settings_path : "", (unsigned long long)s.profiles_created,
               (unsigned long long)s.merges, (unsigned long long)s.mappings,
               (unsigned long long)s.events_stored, secs);
    }
    ps_buf_clear(&diff);
    return EXIT_OK;
}
