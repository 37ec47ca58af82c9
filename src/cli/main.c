/* SPDX-License-Identifier: MIT */
/* profilectl: operator tool. Parses global flags, dispatches through the command table and
 * maps statuses to exit codes; the work is done by services. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_int.h"

#include "ps/log.h"
#include "ps/writer.h"

/* Two parts: one string literal may hold at most 4095 characters in ISO C. */
static const char usage_graph[] =
    "usage: profilectl [--data DIR] [--json] COMMAND ...\n"
    "\n"
    "  space create SPACE [--settings FILE | --preset recommended]\n"
    "                                         create a space (default identity settings, or\n"
    "                                         the recommended preset: docs/identity-settings.md)\n"
    "  space list                             list spaces\n"
    "  settings get SPACE                     print the effective identity settings\n"
    "  settings set SPACE FILE                validate and apply settings to new events\n"
    "  settings check FILE                    validate a settings file only\n"
    "  ingest SPACE [FILE...|-] [--source ID] [--batch N] [--verbose]\n"
    "                                         load NDJSON Segment messages\n"
    "  inspect SPACE IDENT [--json] [--events N]\n"
    "                                         show a profile (IDENT: type:value or segment_id)\n"
    "  export SPACE [--collection users|accounts] [--messages]\n"
    "                                         every canonical profile as one NDJSON line;\n"
    "                                         --messages lists the messageIds resolved into it\n"
    "  explain SPACE MESSAGE_ID [--json]      why a message went where it went: its identifiers,\n"
    "                                         what matched, limits, merges and the outcome\n"
    "  check SPACE                            verify every invariant of the identity graph\n"
    "  log SPACE [--since TIME] [--until TIME] [--salvage]\n"
    "                                         the accepted messages as NDJSON (replayable);\n"
    "                                         --salvage reads on past damaged pages\n"
    "  rebuild SPACE [--settings FILE] [--dry-run] [--force]\n"
    "                                         derive every table again from the log, under FILE\n"
    "                                         or the current settings, in one transaction;\n"
    "                                         --dry-run prints what would change (JSON)\n"
    "  migrate SPACE                          upgrade a space to the current storage format\n";
static const char usage_admin[] =
    "  token create SPACE [--name NAME] [--role read|admin]\n"
    "                                         new Profile API access token (printed once); a\n"
    "                                         read token may only read (default: admin)\n"
    "  token list SPACE                       token names, roles and creation times\n"
    "  token revoke SPACE NAME                revoke a token (running servers see it at once)\n"
    "  source create SPACE [--name NAME]      new Tracking API source; prints its write key once\n"
    "  source list SPACE                      source ids, names, creation times, origins\n"
    "  source origins SPACE SOURCE ORIGIN...  web origins the source takes events from\n"
    "  source origins SPACE SOURCE --any      (SOURCE: name or id) any origin, the default\n"
    "  regulation create SPACE TYPE USER_ID...\n"
    "                                         suppress or unsuppress userIds (TYPE: "
    "SUPPRESS_ONLY,\n"
    "                                         UNSUPPRESS, DELETE_INTERNAL, ...); prints its id\n"
    "  regulation list SPACE                  regulations, newest first (JSON)\n"
    "  unmerge SPACE SEGMENT_ID [--dry-run] [--keep-apart]\n"
    "                                         make a merged-away profile canonical again with\n"
    "                                         what belonged to it (JSON of what moves)\n"
    "  snapshot SPACE DIR                     a consistent copy of the space, servable with\n"
    "                                         --data DIR (writers go on meanwhile)\n"
    "  compact SPACE                          rewrite the space's file: after a deletion, no\n"
    "                                         byte of what was erased remains (server stopped)\n"
    "  regulation show SPACE ID               one regulation (JSON)\n"
    "  filter create SPACE NAME 'FQL' [--disabled]\n"
    "                                         drop messages matching the FQL query before\n"
    "                                         resolution, at both doors (docs/filters.md)\n"
    "  import SPACE FILE.csv [--dry-run] [--source ID] [--batch N]\n"
    "                                         create or update profiles from a CSV file, a\n"
    "                                         row per profile (docs/import.md)\n"
    "  import-template SPACE                  the CSV header of the space's identifier types\n"
    "  filter list SPACE                      the space's filters (JSON)\n"
    "  filter enable|disable|delete SPACE NAME\n"
    "                                         change one filter\n"
    "  changes SPACE [--after SEQ] [--limit N] [--table T] [--format ndjson|csv] [--follow]\n"
    "                                         the identity graph's decisions as Profiles Sync\n"
    "                                         rows, in seq order; --follow waits for more\n"
    "\n"
    "  --data DIR   data directory (default $PROFILED_DATA, else ./var)\n"
    "  --json       machine-readable output\n"
    "exit codes: 0 ok, 1 usage, 2 not found, 3 invalid input, 4 storage error or failed check\n";
static const char *const usage[] = {usage_graph, usage_admin};

static void print_usage(FILE *f)
{
    for (size_t i = 0; i < sizeof usage / sizeof *usage; i++)
        fputs(usage[i], f);
}

typedef struct command {
    const char *name;
    int (*run)(cli *c);
} command;

static const command commands[] = {
    {"space", cmd_space},     {"settings", cmd_settings}, {"ingest", cmd_ingest},
    {"inspect", cmd_inspect}, {"export", cmd_export},     {"check", cmd_check},
    {"token", cmd_token},     {"source", cmd_source},     {"log", cmd_log},
    {"migrate", cmd_migrate}, {"rebuild", cmd_rebuild},   {"regulation", cmd_regulation},
    {"compact", cmd_compact}, {"unmerge", cmd_unmerge},   {"changes", cmd_changes},
    {"filter", cmd_filter},   {"import", cmd_import},     {"import-template", cmd_import_template},
    {"explain", cmd_explain}, {"snapshot", cmd_snapshot},
};

int cli_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("profilectl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int cli_exit_code(ps_status st)
{
    switch (st) {
    case PS_OK: return EXIT_OK;
    case PS_ENOTFOUND: return EXIT_NOTFOUND;
    case PS_EINVAL:
    case PS_ETOOBIG:
    case PS_ECONFLICT: return EXIT_INVALID;
    case PS_EAUTH: return EXIT_USAGE;
    case PS_EFULL:
    case PS_ECORRUPT:
    case PS_EIO:
    case PS_EBUSY:
    case PS_ELIMIT:
    case PS_EFORMAT:
    case PS_ECLOSED: return EXIT_STORE;
    }
    return EXIT_STORE;
}

const char *cli_status_hint(ps_status st)
{
    /* the map's size and the disk both end as PS_EFULL (the log names which) */
    if (st == PS_EFULL)
        return " (free disk space, or raise PS_MAP_SIZE)";
    if (st == PS_ECORRUPT) /* most often damaged pages; the log line before says which */
        return " (the log says why; damaged pages: docs/profilectl.md, \"Repairing a damaged "
               "space\")";
    return "";
}

int cli_open_space_as_is(const cli *c, const char *name, bool read_only, ps_space **out)
{
    if (!ps_space_name_valid(name))
        return cli_fail(EXIT_INVALID,
                        "invalid space name '%s' (1-64 characters of A-Z a-z 0-9 _ -)", name);
    ps_status st = ps_space_open(c->data_dir, name, read_only, out);
    if (st == PS_ENOTFOUND)
        return cli_fail(EXIT_NOTFOUND,
                        "no space '%s' in %s (create it with: profilectl space "
                        "create %s)",
                        name, c->data_dir, name);
    if (st == PS_EFORMAT)
        return cli_fail(EXIT_STORE,
                        "space '%s' is in storage format 1; upgrade it with: profilectl migrate %s",
                        name, name);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "cannot open space '%s': %s%s", name, ps_status_str(st),
                        cli_status_hint(st));
    return EXIT_OK;
}

int cli_open_space(const cli *c, const char *name, bool read_only, ps_space **out)
{
    int rc = cli_open_space_as_is(c, name, read_only, out);
    if (rc != EXIT_OK)
        return rc;
    ps_status st = PS_OK;
    /* a server's journal: take what a stopped one left, or wait for a running one to apply
     * what it acknowledged (ps/writer.h), so that this command sees every acknowledged write */
    if (ps_writer_journal_present(*out)) {
        ps_space *rw = *out;
        if (read_only) { /* recovery writes: reopen for it, then as asked */
            ps_space_close(*out);
            *out = NULL;
            st = ps_space_open(c->data_dir, name, false, &rw);
        }
        if (st == PS_OK)
            st = ps_writer_recover(rw);
        long holder = st == PS_ECORRUPT && rw ? ps_space_broken_writer(rw) : 0;
        if (read_only && rw) {
            ps_space_close(rw);
            ps_status ost = ps_space_open(c->data_dir, name, true, out);
            if (st == PS_OK)
                st = ost;
        }
        if (st != PS_OK) {
            ps_space_close(*out);
            *out = NULL;
            if (holder) /* the server's own write broke: its journal waits for the repair */
                return cli_fail(cli_exit_code(st),
                                "space '%s': the server (pid %ld) met a damaged page and keeps "
                                "the space's write lock; stop it, then repair the space "
                                "(docs/profilectl.md, \"Repairing a damaged space\")",
                                name, holder);
            return cli_fail(cli_exit_code(st), "cannot apply the server journal of space '%s': %s",
                            name, ps_status_str(st));
        }
    }
    return EXIT_OK;
}

int cli_read_file(const char *path, size_t max, ps_buf *out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        return cli_fail(EXIT_NOTFOUND, "cannot open %s: %s", path, strerror(errno));
    char chunk[65536];
    size_t n;
    int rc = EXIT_OK;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > max) {
            rc = cli_fail(EXIT_INVALID, "%s is larger than %zu bytes", path, max);
            break;
        }
        ps_buf_append(out, chunk, n);
    }
    if (rc == EXIT_OK && ferror(f)) /* a directory, an I/O error: not an empty file */
        rc = cli_fail(EXIT_NOTFOUND, "cannot read %s: %s", path, strerror(errno));
    if (f != stdin)
        fclose(f);
    return rc;
}

/* Examples shown by `profilectl COMMAND --help`. */
static const struct {
    const char *command, *lines;
} examples[] = {
    {"space", "  profilectl space create shop --preset recommended\n  profilectl space list\n"},
    {"settings", "  profilectl settings get shop > rules.json\n"
                 "  profilectl settings check rules.json\n"
                 "  profilectl settings set shop rules.json && profilectl rebuild shop\n"},
    {"ingest", "  profilectl ingest shop events.ndjson --source web\n"
               "  zcat events.ndjson.gz | profilectl ingest shop -\n"},
    {"inspect", "  profilectl inspect shop email:ada@example.com --events 20\n"
                "  profilectl inspect shop use_7ZdzbvcX7MKAfm2jUYW5l3su176 --json\n"},
    {"export", "  profilectl export shop --collection users --messages > profiles.ndjson\n"},
    {"explain", "  profilectl explain shop m-4711\n  profilectl explain shop m-4711 --json\n"},
    {"check", "  profilectl check shop\n"},
    {"log", "  profilectl log shop --since 2026-11-01 > november.ndjson\n"},
    {"rebuild", "  profilectl rebuild shop --settings rules.json --dry-run\n"},
    {"migrate", "  profilectl migrate shop\n"},
    {"token", "  profilectl token create shop --name dashboards --role read\n"
              "  profilectl token revoke shop dashboards\n"},
    {"source", "  profilectl source create shop --name web\n"
               "  profilectl source origins shop web https://shop.example.com\n"},
    {"regulation", "  profilectl regulation create shop DELETE_INTERNAL user-42\n"
                   "  profilectl regulation list shop\n"},
    {"unmerge", "  profilectl unmerge shop use_4xRUlJvfqpQ4T30LcDLSIIIV93C --dry-run\n"},
    {"compact", "  profilectl compact shop\n"},
    {"snapshot", "  profilectl snapshot shop /backup/2026-12-01 && "
                 "profilectl --data /backup/2026-12-01 check shop\n"},
    {"filter", "  profilectl filter create shop bots 'context.userAgent = \"HeadlessChrome\"'\n"
               "  profilectl filter disable shop bots\n"},
    {"import", "  profilectl import shop people.csv --dry-run\n"},
    {"import-template", "  profilectl import-template shop > people.csv\n"},
    {"changes", "  profilectl changes shop --after 131072 --limit 1000\n"
                "  profilectl changes shop --table id_graph_updates --format csv --follow\n"},
};

/* Prints the usage entries of command `name` (an entry: its line and the indented lines after
 * it) and its examples; false when the usage has none. */
static bool command_usage(const char *name)
{
    size_t cl = strlen(name);
    bool any = false, in_entry = false;
    for (size_t part = 0; part < sizeof usage / sizeof *usage; part++)
        for (const char *p = usage[part]; *p;) {
            const char *eol = strchr(p, '\n');
            size_t len = eol ? (size_t)(eol - p) : strlen(p);
            bool continuation = len > 10 && strncmp(p, "          ", 10) == 0;
            if (!continuation)
                in_entry = len > 2 + cl && strncmp(p, "  ", 2) == 0 && p[2] != '-' &&
                           strncmp(p + 2, name, cl) == 0 && p[2 + cl] == ' ';
            if (in_entry) {
                if (!any)
                    printf("usage: profilectl [--data DIR] [--json] ...\n\n");
                printf("%.*s\n", (int)len, p);
                any = true;
            }
            p += len + (eol != NULL);
        }
    for (size_t i = 0; any && i < sizeof examples / sizeof *examples; i++)
        if (strcmp(examples[i].command, name) == 0)
            printf("\nexamples:\n%s", examples[i].lines);
    if (any)
        printf("\ndocs/profilectl.md describes every option and its output.\n");
    return any;
}

void cli_json_diags(const ps_diags *d)
{
    ps_buf b;
    ps_buf_init(&b);
    ps_buf_puts(&b, "{\"valid\":false,\"problems\":[");
    for (size_t i = 0; i < d->count; i++) {
        ps_buf_puts(&b, i ? ",{\"path\":" : "{\"path\":");
        ps_buf_json_str(&b, d->items[i].path, strlen(d->items[i].path));
        ps_buf_puts(&b, ",\"message\":");
        ps_buf_json_str(&b, d->items[i].message, strlen(d->items[i].message));
        ps_buf_putc(&b, '}');
    }
    ps_buf_puts(&b, "],\"more\":");
    ps_buf_u64(&b, d->dropped);
    ps_buf_puts(&b, "}\n");
    fwrite(b.ptr, 1, b.len, stdout);
    ps_buf_clear(&b);
}

void cli_print_diags(const ps_diags *d)
{
    for (size_t i = 0; i < d->count; i++)
        fprintf(stderr, "profilectl: %s: %s\n", d->items[i].path, d->items[i].message);
    if (d->dropped)
        fprintf(stderr, "profilectl: ... and %zu more problems\n", d->dropped);
}

const char *cli_take_option(cli *c, const char *name)
{
    for (int i = 0; i < c->argc; i++) {
        size_t nl = strlen(name);
        if (strncmp(c->argv[i], name, nl) != 0)
            continue;
        const char *value = NULL;
        int used = 0;
        if (c->argv[i][nl] == '=') {
            value = c->argv[i] + nl + 1;
            used = 1;
        } else if (c->argv[i][nl] == 0 && i + 1 < c->argc) {
            value = c->argv[i + 1];
            used = 2;
        } else {
            continue;
        }
        memmove(&c->argv[i], &c->argv[i + used], (size_t)(c->argc - i - used) * sizeof *c->argv);
        c->argc -= used;
        return value;
    }
    return NULL;
}

bool cli_take_flag(cli *c, const char *name)
{
    for (int i = 0; i < c->argc; i++)
        if (strcmp(c->argv[i], name) == 0) {
            memmove(&c->argv[i], &c->argv[i + 1], (size_t)(c->argc - i - 1) * sizeof *c->argv);
            c->argc--;
            return true;
        }
    return false;
}

int cli_take_number(cli *c, const char *name, long lo, long hi, size_t *out)
{
    const char *text = cli_take_option(c, name);
    if (text == NULL)
        return EXIT_OK;
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == 0 || *end || v < lo || v > hi)
        return cli_fail(EXIT_USAGE, "%s must be a number from %ld to %ld", name, lo, hi);
    *out = (size_t)v;
    return EXIT_OK;
}

int cli_no_more_options(const cli *c)
{
    for (int i = 0; i < c->argc; i++)
        if (c->argv[i][0] == '-' && c->argv[i][1] == '-')
            return cli_fail(EXIT_USAGE, "unknown option %s (see profilectl --help)", c->argv[i]);
    return EXIT_OK;
}

static int run(int argc, char **argv)
{
    ps_mem_keep_freed();
    signal(SIGXFSZ, SIG_IGN); /* a file size limit is a failed write, not a kill */
    ps_log_init(PS_LOG_WARN);
    const char *env = getenv("PROFILED_DATA");
    cli c = {.data_dir = env && *env ? env : "./var"};
    /* global options may come before or after the command */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int n = 0;
    bool help = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            (n == 0 && strcmp(argv[i], "help") == 0)) {
            help = true;
            continue;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("profilectl %s\n", PS_VERSION);
            free(rest);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--json") == 0) {
            c.json = true;
        } else if (strcmp(argv[i], "--data") == 0) {
            if (i + 1 >= argc) {
                free(rest);
                return cli_fail(EXIT_USAGE, "--data needs a directory");
            }
            c.data_dir = argv[++i];
        } else if (strncmp(argv[i], "--data=", 7) == 0) {
            c.data_dir = argv[i] + 7;
        } else {
            rest[n++] = argv[i];
        }
    }
    if (help) { /* `profilectl COMMAND --help`: that command's lines; else all of them */
        if (n == 0 || !command_usage(rest[0]))
            print_usage(stdout);
        free(rest);
        return EXIT_OK;
    }
    if (n == 0) {
        print_usage(stderr);
        free(rest);
        return EXIT_USAGE;
    }
    /* only `space create` makes the data directory; every other command needs it there */
    struct stat dst;
    bool creates = n >= 2 && strcmp(rest[0], "space") == 0 && strcmp(rest[1], "create") == 0;
    if (!creates && (stat(c.data_dir, &dst) != 0 || !S_ISDIR(dst.st_mode))) {
        int rc = cli_fail(EXIT_NOTFOUND,
                          "data directory %s does not exist (give --data, or create a space "
                          "there first with 'profilectl space create SPACE')",
                          c.data_dir);
        free(rest);
        return rc;
    }
    int rc = -1;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (strcmp(rest[0], commands[k].name) == 0) {
            c.argc = n - 1;
            c.argv = rest + 1;
            rc = commands[k].run(&c);
            break;
        }
    if (rc < 0)
        rc = cli_fail(EXIT_USAGE, "unknown command '%s' (see profilectl --help)", rest[0]);
    free(rest);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = run(argc, argv);
    /* what could not be written (a full disk under a redirection) is a failure, never a
     * success with a short file */
    if ((fflush(stdout) != 0 || ferror(stdout)) && rc == EXIT_OK)
        rc = cli_fail(EXIT_STORE, "cannot write to standard output");
    return rc;
}
