/* SPDX-License-Identifier: MIT */
/* profilectl ingest: streams NDJSON files through the accept/resolve path. Lines are read
 * with a bounded buffer (an over-long line is reported and skipped, never loaded whole);
 * a malformed line is reported with its number and the rest goes on. Each batch commits
 * durably; --verbose reports every commit, which is what "committed" means. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_int.h"
#include "ps/clock.h"
#include "ps/event.h"
#include "ps/ingest.h"

#define READ_CHUNK (1 << 20)
#define LINE_MAX_BYTES (PS_BATCH_MAX_BYTES + 2)
#define MALFORMED_SHOWN 20

typedef struct run {
    cli *c;
    ps_ingest *in;
    size_t batch;
    bool verbose, progress;
    uint64_t lines, malformed;
    int64_t started_ms, last_progress_ms;
    const char *file;
} run;

static int commit(run *r, uint64_t line)
{
    ps_status st = ps_ingest_commit(r->in);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st),
                        "%s: commit failed near line %llu: %s%s; this batch was not stored",
                        r->file, (unsigned long long)line, ps_status_str(st),
                        st == PS_EFULL ? " (raise PS_MAP_SIZE)" : "");
    if (r->verbose)
        fprintf(stderr, "committed file=%s line=%llu accepted=%llu\n", r->file,
                (unsigned long long)line,
                (unsigned long long)ps_ingest_stats_get(r->in)->accepted);
    return EXIT_OK;
}

static void progress(run *r)
{
    int64_t now = ps_clock_now_ms();
    if (!r->progress || now - r->last_progress_ms < 500)
        return;
    r->last_progress_ms = now;
    double secs = (double)(now - r->started_ms) / 1000.0;
    fprintf(stderr, "\r%s: %llu lines, %.0f lines/s   ", r->file, (unsigned long long)r->lines,
            secs > 0 ? (double)r->lines / secs : 0.0);
}

static int one_line(run *r, const char *line, size_t len, uint64_t number)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    size_t skip = 0;
    while (skip < len && (line[skip] == ' ' || line[skip] == '\t'))
        skip++;
    if (skip == len)
        return EXIT_OK; /* blank line */
    r->lines++;
    if (len - skip > PS_BATCH_MAX_BYTES) {
        if (r->malformed++ < MALFORMED_SHOWN)
            fprintf(stderr, "%s:%llu: skipped: line longer than %d bytes\n", r->file,
                    (unsigned long long)number, PS_BATCH_MAX_BYTES);
        return EXIT_OK;
    }
    ps_drop why;
    ps_status st = ps_ingest_payload(r->in, (const uint8_t *)line + skip, len - skip, number, &why);
    if (st == PS_EINVAL || st == PS_ETOOBIG) {
        if (r->malformed++ < MALFORMED_SHOWN)
            fprintf(stderr, "%s:%llu: skipped: %s: %s\n", r->file, (unsigned long long)number,
                    ps_drop_name(why), ps_drop_message(why));
        return EXIT_OK;
    }
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "%s:%llu: %s%s; the open batch was not stored",
                        r->file, (unsigned long long)number, ps_status_str(st),
                        st == PS_EFULL ? " (raise PS_MAP_SIZE)" : "");
    if (ps_ingest_pending(r->in) >= r->batch)
        return commit(r, number);
    return EXIT_OK;
}

static int ingest_stream(run *r, FILE *f)
{
    char *buf = ps_xmalloc(READ_CHUNK + LINE_MAX_BYTES);
    size_t have = 0;
    uint64_t number = 0;
    bool discarding = false; /* inside an over-long line */
    int rc = EXIT_OK;
    for (;;) {
        size_t n = fread(buf + have, 1, READ_CHUNK, f);
        have += n;
        size_t start = 0;
        for (;;) {
            char *nl = memchr(buf + start, '\n', have - start);
            if (nl == NULL)
                break;
            size_t len = (size_t)(nl - (buf + start));
            number++;
            if (discarding) {
                discarding = false;
            } else if ((rc = one_line(r, buf + start, len, number)) != EXIT_OK) {
                goto done;
            }
            start += len + 1;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have > LINE_MAX_BYTES) { /* bound memory: report and drop the rest of the line */
            if (!discarding) {
                r->lines++;
                if (r->malformed++ < MALFORMED_SHOWN)
                    fprintf(stderr, "%s:%llu: skipped: line longer than %d bytes\n", r->file,
                            (unsigned long long)number + 1, PS_BATCH_MAX_BYTES);
            }
            discarding = true;
            have = 0;
        }
        progress(r);
        if (n == 0)
            break;
    }
    if (have > 0 && !discarding)
        rc = one_line(r, buf, have, ++number);
    if (ferror(f))
        rc = cli_fail(EXIT_STORE, "%s: read error", r->file);
done:
    free(buf);
    if (rc == EXIT_OK)
        rc = commit(r, number);
    return rc;
}

static void summary(const run *r, const ps_ingest_stats *s)
{
    double secs = (double)(ps_clock_now_ms() - r->started_ms) / 1000.0;
    if (r->progress)
        fputc('\n', stderr);
    if (r->c->json) {
        printf("{\"lines\":%llu,\"malformed_lines\":%llu,\"messages\":%llu,\"accepted\":%llu,"
               "\"duplicates\":%llu,\"unresolved\":%llu,\"profiles_created\":%llu,"
               "\"merges\":%llu,\"mappings\":%llu,\"violations\":%llu,\"events_stored\":%llu,"
               "\"seconds\":%.3f,\"dropped\":{",
               (unsigned long long)r->lines, (unsigned long long)r->malformed,
               (unsigned long long)s->messages, (unsigned long long)s->accepted,
               (unsigned long long)s->duplicates, (unsigned long long)s->unresolved,
               (unsigned long long)s->profiles_created, (unsigned long long)s->merges,
               (unsigned long long)s->mappings, (unsigned long long)s->violations,
               (unsigned long long)s->events_stored, secs);
        int k = 0;
        for (int i = 1; i < PS_DROP__COUNT; i++)
            if (s->dropped[i])
                printf("%s\"%s\":%llu", k++ ? "," : "", ps_drop_name((ps_drop)i),
                       (unsigned long long)s->dropped[i]);
        printf("}}\n");
        return;
    }
    printf("lines %llu (malformed %llu), messages %llu\n", (unsigned long long)r->lines,
           (unsigned long long)r->malformed, (unsigned long long)s->messages);
    printf("accepted %llu, duplicates %llu, unresolved %llu\n", (unsigned long long)s->accepted,
           (unsigned long long)s->duplicates, (unsigned long long)s->unresolved);
    printf("profiles created %llu, merges %llu, mappings %llu, violations %llu, events %llu\n",
           (unsigned long long)s->profiles_created, (unsigned long long)s->merges,
           (unsigned long long)s->mappings, (unsigned long long)s->violations,
           (unsigned long long)s->events_stored);
    for (int i = 1; i < PS_DROP__COUNT; i++)
        if (s->dropped[i])
            printf("dropped %s: %llu\n", ps_drop_name((ps_drop)i),
                   (unsigned long long)s->dropped[i]);
    printf("%.2f s, %.0f messages/s\n", secs, secs > 0 ? (double)s->messages / secs : 0.0);
}

int cmd_ingest(cli *c)
{
    const char *source = cli_take_option(c, "--source");
    size_t batch_size = 10000;
    bool verbose = cli_take_flag(c, "--verbose");
    int rc = cli_take_number(c, "--batch", 1, 1000000, &batch_size);
    if (rc || (rc = cli_no_more_options(c)))
        return rc;
    if (c->argc < 1)
        return cli_fail(EXIT_USAGE, "usage: profilectl ingest SPACE [FILE...|-] [--source ID] "
                                    "[--batch N] [--verbose]");
    if (source && (source[0] == 0 || strlen(source) > PS_SOURCE_ID_MAX))
        return cli_fail(EXIT_USAGE, "--source must be 1-%d characters", PS_SOURCE_ID_MAX);
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], false, &sp)))
        return rc;
    ps_ingest_opts opts = {.source_id = source, .keep_received_at = true};
    ps_ingest *in;
    ps_ingest_begin(sp, &opts, &in);
    run r = {.c = c,
             .in = in,
             .batch = batch_size,
             .verbose = verbose,
             .progress = isatty(2) && !verbose,
             .started_ms = ps_clock_now_ms()};
    int nfiles = c->argc - 1;
    for (int i = 0; i <= nfiles && rc == EXIT_OK; i++) {
        if (nfiles > 0 && i == 0)
            continue;
        const char *path = nfiles == 0 ? "-" : c->argv[i];
        FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
        if (f == NULL) {
            rc = cli_fail(EXIT_NOTFOUND, "cannot open %s", path);
            break;
        }
        r.file = strcmp(path, "-") == 0 ? "stdin" : path;
        rc = ingest_stream(&r, f);
        if (f != stdin)
            fclose(f);
    }
    if (r.malformed > MALFORMED_SHOWN)
        fprintf(stderr, "... %llu malformed lines in all\n", (unsigned long long)r.malformed);
    summary(&r, ps_ingest_stats_get(in));
    ps_ingest_end(in);
    ps_space_close(sp);
    return rc;
}
