/* SPDX-License-Identifier: MIT */
/* cli_int.h: what the profilectl command files share. Never included outside src/cli. */
#ifndef PS_CLI_INT_H
#define PS_CLI_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "ps/mem.h"
#include "ps/repl.h"
#include "ps/rules.h"
#include "ps/space.h"
#include "ps/status.h"

/* Heap reserved before commands that build large write transactions
 * (ingest, import, rebuild): ps_mem_reserve_heap(). */
#define PS_CLI_HEAP_RESERVE ((size_t)256 << 20)

/* Exit codes (docs/profilectl.md), plus 4 for storage failures and a failed `check`. */
enum { EXIT_OK = 0, EXIT_USAGE = 1, EXIT_NOTFOUND = 2, EXIT_INVALID = 3, EXIT_STORE = 4 };

typedef struct cli {
    const char *data_dir;
    bool json;
    int argc; /* positional arguments after the command words */
    char **argv;
} cli;

/* Prints "profilectl: <message>" on stderr and returns `code`. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Maps a status to an exit code (the one table of them). */
int cli_exit_code(ps_status st);
/* What an operator can do about `st`, as " (...)" to append to its message, or "". */
const char *cli_status_hint(ps_status st);
/* Opens a space or prints why not. Returns EXIT_OK on success. */
int cli_open_space(const cli *c, const char *name, bool read_only, ps_space **out);
/* The same, without taking in a server's journal first (which writes to the store). */
int cli_open_space_as_is(const cli *c, const char *name, bool read_only, ps_space **out);
/* Reads a whole file ("-" = stdin) up to `max` bytes. Returns EXIT_OK or prints why not. */
int cli_read_file(const char *path, size_t max, ps_buf *out);
/* Prints settings diagnostics, one per line: "<path>: <message>". */
void cli_print_diags(const ps_diags *d);
/* The same as one JSON object on stdout: {"valid":false,"problems":[{"path","message"}],"more"}. */
void cli_json_diags(const ps_diags *d);
/* Takes "--name VALUE" style options out of c->argv; returns the value or NULL. */
const char *cli_take_option(cli *c, const char *name);
bool cli_take_flag(cli *c, const char *name);
/* Takes "--name N" when present: *out = N if it is an integer in [lo, hi], else fails with a
 * usage error naming the range. Leaves *out alone when the option is absent. */
int cli_take_number(cli *c, const char *name, long lo, long hi, size_t *out);
/* Fails with a usage error when an unknown --option remains. */
int cli_no_more_options(const cli *c);

/* Replicated spaces (cli_repl.c, docs/replication.md). */
bool cli_space_replicated(ps_space *sp);
/* EXIT_OK when `sp` is not replicated; else prints that `what` would change this node alone,
 * and what to do `instead`, and returns the exit code. */
int cli_refuse_replicated(ps_space *sp, const char *what, const char *instead);
/* Connects to the NATS servers of --replicate and opens a publisher to the space's stream
 * (made when missing, unless the store has applied one): EXIT_OK, or prints why not. */
int cli_repl_open(const char *urls, ps_space *sp, ps_repl **r, ps_repl_pub **p);
/* Closes what cli_repl_open() opened (NULL: nothing). */
void cli_repl_end(ps_repl *r, ps_repl_pub *p);
/* Publishes one settings or regulation record to the space's stream and waits for it to be
 * stored; *seq gets its sequence. */
int cli_repl_publish(const char *urls, ps_space *sp, ps_repl_kind kind, ps_slice data,
                     uint64_t *seq);

int cmd_space(cli *c);
int cmd_settings(cli *c);
int cmd_ingest(cli *c);
int cmd_inspect(cli *c);
int cmd_export(cli *c);
int cmd_check(cli *c);
int cmd_token(cli *c);
int cmd_source(cli *c);
int cmd_log(cli *c);
int cmd_changes(cli *c);
int cmd_explain(cli *c);
int cmd_snapshot(cli *c);
int cmd_filter(cli *c);
int cmd_import(cli *c);
int cmd_import_template(cli *c);
int cmd_migrate(cli *c);
int cmd_rebuild(cli *c);
int cmd_regulation(cli *c);
int cmd_compact(cli *c);
int cmd_unmerge(cli *c);

#endif
