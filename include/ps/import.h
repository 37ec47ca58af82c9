/* SPDX-License-Identifier: MIT */
/* import: profiles from a CSV file (docs/import.md). The file is read twice, one record in
 * memory at a time: first to check it whole (Segment's upload rules: a file that breaks one
 * changes nothing), then to send each row, as one identify message, through the one
 * accept/resolve path (ps/ingest.h), committing in batches. A row's messageId is the import id
 * (from the file's bytes) and its row number, so importing the same file again within the
 * dedup window changes nothing. */
#ifndef PS_IMPORT_H
#define PS_IMPORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ps/csv.h"
#include "ps/ingest.h"
#include "ps/space.h"
#include "ps/status.h"

#define PS_IMPORT_ERRORS_LISTED 20
#define PS_IMPORT_ID_BUF 24 /* "imp_" + 16 hex digits */

typedef struct ps_import_row_error {
    uint64_t row; /* 1 = the first row after the header */
    const char *message;
} ps_import_row_error;

typedef struct ps_import_result {
    char id[PS_IMPORT_ID_BUF];
    ps_csv_error error; /* the file broke a rule: nothing was imported */
    uint64_t rows;      /* data rows in the file */
    uint64_t columns;
    uint64_t identifier_columns;
    uint64_t rows_failed;                                /* rows without an identifier value */
    ps_import_row_error errors[PS_IMPORT_ERRORS_LISTED]; /* the first ones */
    size_t errors_listed;
    ps_ingest_stats stats; /* what the rows did (dry run: nothing) */
    bool canceled;         /* stopped for opts->cancel: the rows after the last commit wait */
} ps_import_result;

typedef struct ps_import_opts {
    bool dry_run;              /* check the file and the rows; store nothing */
    size_t batch;              /* rows per commit (0: 50000) */
    int64_t now_ms;            /* the rows' receivedAt */
    const char *source_id;     /* stamped on the messages (NULL: "csv-import") */
    const atomic_bool *cancel; /* set: stop after the batch being committed (NULL: never) */
} ps_import_opts;

/* Imports `path` (it must end in ".csv"). PS_OK with res->error set when the file breaks a
 * rule (and nothing changed), PS_EIO when it cannot be read, or a storage status. */
ps_status ps_import_csv(ps_space *sp, const char *path, const ps_import_opts *o,
                        ps_import_result *res);

/* ---- imports a server takes over HTTP: the file waits in the space's directory
 * (imports/<id>.csv) until the space's writer runs it, in its ordered stream; the status is
 * in meta "import/<id>" ---- */

/* Keeps `csv` (durably) and records the import as QUEUED; its id in `id`. */
ps_status ps_import_submit(ps_space *sp, const uint8_t *csv, size_t len, int64_t now_ms,
                           char id[PS_IMPORT_ID_BUF]);
bool ps_import_any_pending(ps_space *sp);
/* Runs every waiting import, oldest file name first: RUNNING, then FINISHED (with its counts
 * and row errors) or FAILED (with the rule the file broke). With `cancel` set, the one running
 * goes back to QUEUED and its file stays, for the next run. */
ps_status ps_import_run_pending(ps_space *sp, int64_t now_ms, const atomic_bool *cancel);
/* The status document of import `id` (PS_ENOTFOUND: none). */
ps_status ps_import_status(ps_space *sp, const char *id, ps_buf *out);

/* The header row of a template for the space: its configured identifier types in users. */
ps_status ps_import_template(ps_space *sp, ps_buf *out);

#endif
