/* SPDX-License-Identifier: MIT */
/* csv: the profile upload's file format (docs/import.md). A streaming RFC 4180 reader (quoted
 * fields with "" escapes, CRLF or LF) that holds one record at a time, the upload's header
 * rules with Segment's messages, and the identify message a row becomes. Pure. */
#ifndef PS_CSV_H
#define PS_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"

#define PS_CSV_MAX_COLUMNS 299
#define PS_CSV_MAX_ROWS 1000000u        /* not counting the header */
#define PS_CSV_MAX_BYTES (100ull << 20) /* the file */
#define PS_CSV_MAX_RECORD (1u << 20)    /* one record's bytes: a parse error beyond */

typedef enum ps_csv_error {
    PS_CSV_OK = 0,
    PS_CSV_NOT_CSV,
    PS_CSV_EMPTY,
    PS_CSV_PARSE,
    PS_CSV_EMPTY_HEADER,
    PS_CSV_TOO_MANY_ROWS,
    PS_CSV_TOO_MANY_COLUMNS,
    PS_CSV_TOO_BIG,
    PS_CSV_HEADER_SPACES,
    PS_CSV_DUPLICATE_HEADER,
    PS_CSV_INVALID_CHARACTER,
    PS_CSV_NO_IDENTIFIER,
    PS_CSV__COUNT
} ps_csv_error;
/* Segment's message for the error, and a stable snake_case code. */
const char *ps_csv_error_message(ps_csv_error e);
const char *ps_csv_error_code(ps_csv_error e);

typedef struct ps_csv ps_csv;
/* Called with each record's fields (unquoted; valid during the call). False stops. */
typedef bool (*ps_csv_fn)(void *ud, const ps_slice *fields, size_t count);

ps_csv *ps_csv_new(void);
void ps_csv_free(ps_csv *c);
/* Reads `len` more bytes. PS_CSV_PARSE for a quote inside an unquoted field, a character
 * after a closing quote, or a record over PS_CSV_MAX_RECORD; PS_CSV_OK otherwise (also when
 * `fn` stopped). */
ps_csv_error ps_csv_feed(ps_csv *c, const uint8_t *p, size_t len, ps_csv_fn fn, void *ud);
/* The end of the input: completes a last record without a line end. PS_CSV_PARSE for an
 * open quote. */
ps_csv_error ps_csv_finish(ps_csv *c, ps_csv_fn fn, void *ud);

/* The header rules: not empty, no leading, trailing or consecutive spaces, allowed
 * characters only, no duplicates, at most PS_CSV_MAX_COLUMNS. */
ps_csv_error ps_csv_check_header(const ps_slice *names, size_t count);

/* The identify message of one row: identifier columns (`ident[i]`) become userId,
 * anonymousId, traits.email or context.externalIds entries; the others traits (strings, as
 * written); blank cells are skipped. `anonymous_id` (NULL: none) stands in when the row has
 * no identifier. False, with nothing written, when the row still has none. */
bool ps_csv_row_message(const ps_slice *header, const bool *ident, const ps_slice *row,
                        size_t count, const char *message_id, const char *anonymous_id,
                        ps_buf *out);

#endif
