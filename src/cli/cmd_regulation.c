/* SPDX-License-Identifier: MIT */
/* profilectl regulation create|list|show: privacy regulations of a space (docs/privacy.md),
 * the same operations as the Profile API's regulation routes; and compact, which rewrites a
 * space's file so that erased records leave no bytes behind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"
#include "ps/clock.h"
#include "ps/regulation.h"
#include "ps/unmerge.h"

static int create(cli *c, const char *replicate)
{
    ps_reg_request rq = {0};
    if (!ps_reg_type_parse(c->argv[2], &rq.type))
        return cli_fail(EXIT_INVALID,
                        "unknown regulation type '%s' (DELETE_INTERNAL, DELETE_ONLY, "
                        "SUPPRESS_WITH_DELETE_INTERNAL, SUPPRESS_WITH_DELETE, SUPPRESS_ONLY, "
                        "UNSUPPRESS)",
                        c->argv[2]);
    size_t n = (size_t)c->argc - 3;
    if (n > PS_REG_SUBJECTS_MAX)
        return cli_fail(EXIT_INVALID, "at most %d userIds per regulation, got %zu",
                        PS_REG_SUBJECTS_MAX, n);
    for (size_t i = 0; i < n; i++) {
        const char *v = c->argv[3 + i];
        size_t len = strlen(v);
        if (len == 0 || len > PS_VALUE_MAX)
            return cli_fail(EXIT_INVALID, "userId %zu is empty or over %d bytes", i + 1,
                            PS_VALUE_MAX);
    }
    rq.subjects = c->argv + 3;
    rq.count = n;
    ps_space *sp;
    int rc = cli_open_space(c, c->argv[1], false, &sp);
    if (rc)
        return rc;
    char id[PS_REG_ID_BUF];
    ps_status st = PS_OK;
    if (replicate) { /* every node runs it at its place in the stream, under the same id */
        ps_buf rec;
        ps_buf_init(&rec);
        ps_regulation_encode(&rq, ps_clock_now_ms(), &rec);
        uint64_t seq = 0;
        rc =
            cli_repl_publish(replicate, sp, PS_REPL_REGULATION, (ps_slice){rec.ptr, rec.len}, &seq);
        ps_buf_clear(&rec);
        snprintf(id, sizeof id, "reg_%016llx", (unsigned long long)seq);
    } else {
        rc = cli_refuse_replicated(sp, "a regulation",
                                   "add --replicate nats://HOST:PORT to run it on every node "
                                   "through the stream");
        if (rc == EXIT_OK)
            st = ps_regulation_apply(sp, &rq, ps_clock_now_ms(), id);
    }
    ps_space_close(sp);
    if (rc)
        return rc;
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "the regulation was not applied: %s", ps_status_str(st));
    if (c->json)
        printf("{\"regulateId\":\"%s\"}\n", id);
    else
        printf("%s\n", id);
    return EXIT_OK;
}

static int show_or_list(cli *c, bool show)
{
    ps_space *sp;
    int rc = cli_open_space(c, c->argv[1], true, &sp);
    if (rc)
        return rc;
    ps_buf out;
    ps_buf_init(&out);
    ps_status st;
    if (show) {
        st = ps_regulation_get(sp, c->argv[2], &out);
    } else {
        uint64_t next;
        size_t count;
        ps_buf_putc(&out, '[');
        st = ps_regulation_list(sp, 0, SIZE_MAX, &out, &next, &count);
        ps_buf_putc(&out, ']');
    }
    ps_space_close(sp);
    if (st == PS_ENOTFOUND)
        rc = cli_fail(EXIT_NOTFOUND, "space %s has no regulation '%s'", c->argv[1], c->argv[2]);
    else if (st != PS_OK)
        rc = cli_fail(cli_exit_code(st), "cannot read regulations: %s", ps_status_str(st));
    else
        printf("%.*s\n", (int)out.len, (const char *)out.ptr);
    ps_buf_clear(&out);
    return rc;
}

int cmd_regulation(cli *c)
{
    const char *replicate = cli_take_option(c, "--replicate");
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    const char *verb = c->argc > 0 ? c->argv[0] : "";
    if (strcmp(verb, "create") == 0 && c->argc >= 4)
        return create(c, replicate);
    if (strcmp(verb, "list") == 0 && c->argc == 2)
        return show_or_list(c, false);
    if (strcmp(verb, "show") == 0 && c->argc == 3)
        return show_or_list(c, true);
    return cli_fail(EXIT_USAGE, "usage: profilectl regulation create SPACE TYPE USER_ID... "
                                "[--replicate URL] | regulation list SPACE | regulation show "
                                "SPACE ID");
}

int cmd_compact(cli *c)
{
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 1)
        return cli_fail(EXIT_USAGE, "usage: profilectl compact SPACE");
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], false, &sp)))
        return rc;
    uint64_t before = 0, after = 0;
    ps_status st = ps_space_compact(sp, &before, &after);
    ps_space_close(sp);
    if (st == PS_EBUSY)
        return cli_fail(EXIT_STORE,
                        "space %s is open in another process (a running profiled?); stop it "
                        "and run compact again",
                        c->argv[0]);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "compact failed: %s%s; the store is as it was",
                        ps_status_str(st), cli_status_hint(st));
    if (c->json)
        printf("{\"bytes_before\":%llu,\"bytes_after\":%llu}\n", (unsigned long long)before,
               (unsigned long long)after);
    else
        printf("compacted %s: %.1f MB -> %.1f MB\n", c->argv[0], (double)before / 1e6,
               (double)after / 1e6);
    return EXIT_OK;
}

int cmd_unmerge(cli *c)
{
    bool dry_run = cli_take_flag(c, "--dry-run"), keep_apart = cli_take_flag(c, "--keep-apart");
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 2)
        return cli_fail(EXIT_USAGE,
                        "usage: profilectl unmerge SPACE SEGMENT_ID [--dry-run] [--keep-apart]");
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], false, &sp)))
        return rc;
    ps_buf out;
    ps_buf_init(&out);
    if (!dry_run &&
        (rc = cli_refuse_replicated(sp, "an unmerge",
                                    "unmerges do not travel in the stream yet")) != EXIT_OK) {
        ps_space_close(sp);
        return rc;
    }
    const char *why;
    ps_status st = ps_space_unmerge(sp, c->argv[1], dry_run, keep_apart, &out, &why);
    ps_space_close(sp);
    if (st == PS_ENOTFOUND)
        rc = cli_fail(EXIT_NOTFOUND, "no profile %s in space %s", c->argv[1], c->argv[0]);
    else if (st == PS_EINVAL)
        rc = cli_fail(EXIT_INVALID, "cannot unmerge %s: %s", c->argv[1], why);
    else if (st != PS_OK)
        rc = cli_fail(cli_exit_code(st), "unmerge failed, nothing changed: %s", ps_status_str(st));
    else
        printf("%.*s\n", (int)out.len, (const char *)out.ptr);
    ps_buf_clear(&out);
    if (rc == EXIT_OK && !c->json)
        fprintf(stderr, "%s\n",
                dry_run      ? "dry run: nothing changed"
                : keep_apart ? "kept apart: an event that would merge the two again is resolved "
                               "as over a limit (a profiles_kept_apart violation)"
                             : "note: an event that carries identifiers of both profiles will "
                               "merge them again (--keep-apart prevents that)");
    return rc;
}
