/* SPDX-License-Identifier: MIT */
/* csv: a byte-at-a-time state machine over one record buffer (see ps/csv.h). */
#define _GNU_SOURCE /* memmem */
#include "ps/csv.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *code, *message;
} errors[PS_CSV__COUNT] = {
    [PS_CSV_OK] = {"ok", ""},
    [PS_CSV_NOT_CSV] = {"invalid_file_type",
                        "You can upload only .csv files. Change your file format, then try "
                        "again."},
    [PS_CSV_EMPTY] = {"empty_file",
                      "This file contains no data. Add data to your CSV, then try again."},
    [PS_CSV_PARSE] = {"parse_error", "We encountered an issue while parsing your CSV file. "
                                     "Validate the CSV file and try again."},
    [PS_CSV_EMPTY_HEADER] = {"empty_header", "This file contains empty header(s). Remove the "
                                             "empty header(s), then try again."},
    [PS_CSV_TOO_MANY_ROWS] = {"too_many_rows", "Too many rows. You can upload up to 1000000 rows."},
    [PS_CSV_TOO_MANY_COLUMNS] = {"too_many_columns",
                                 "Your CSV file is exceeding the limit of 299 columns."},
    [PS_CSV_TOO_BIG] = {"file_too_large", "Files can be up to 100 MB."},
    [PS_CSV_HEADER_SPACES] = {"header_spaces",
                              "This file contains leading, trailing or consecutive spaces. "
                              "Remove leading, trailing or consecutive spaces, then try again."},
    [PS_CSV_DUPLICATE_HEADER] = {"duplicate_header",
                                 "This file contains duplicate header(s). Remove duplicate "
                                 "header(s), then try again."},
    [PS_CSV_INVALID_CHARACTER] = {"invalid_character",
                                  "This file contains invalid character(s). Remove invalid "
                                  "character(s), then try again."},
    [PS_CSV_NO_IDENTIFIER] = {"missing_identifier",
                              "This file is missing an identifier column and does not have "
                              "`anonymous_id` configured. Add an identifier column or add "
                              "`anonymous_id` in your identity resolution configuration, then "
                              "try again."},
};

const char *ps_csv_error_message(ps_csv_error e)
{
    return (unsigned)e < PS_CSV__COUNT ? errors[e].message
                                       : "Something went wrong. Try again later.";
}

const char *ps_csv_error_code(ps_csv_error e)
{
    return (unsigned)e < PS_CSV__COUNT ? errors[e].code : "unknown";
}

/* ---- reading ---- */

enum { S_FIELD_START, S_UNQUOTED, S_QUOTED, S_QUOTE_IN_QUOTED, S_CR };

struct ps_csv {
    int state;
    ps_buf rec;   /* the record's unquoted field bytes, back to back */
    size_t *ends; /* where each finished field ends in `rec` */
    size_t nfields, cap;
    bool any;     /* the record has begun */
    bool stopped; /* the callback said stop */
    int bom;      /* bytes of a leading UTF-8 byte order mark seen (3: past the start) */
};

ps_csv *ps_csv_new(void)
{
    return ps_xcalloc(1, sizeof(ps_csv));
}

void ps_csv_free(ps_csv *c)
{
    if (c == NULL)
        return;
    ps_buf_clear(&c->rec);
    free(c->ends);
    free(c);
}

static bool end_field(ps_csv *c)
{
    if (c->nfields == PS_CSV_MAX_COLUMNS + 1)
        return true; /* one more than allowed is enough to say there are too many */
    if (c->nfields == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->ends = ps_xrealloc(c->ends, c->cap * sizeof *c->ends);
    }
    c->ends[c->nfields++] = c->rec.len;
    return true;
}

static bool end_record(ps_csv *c, ps_csv_fn fn, void *ud)
{
    end_field(c);
    ps_slice f[PS_CSV_MAX_COLUMNS + 1];
    size_t start = 0;
    for (size_t i = 0; i < c->nfields; i++) {
        f[i] =
            (ps_slice){c->rec.ptr ? c->rec.ptr + start : (const uint8_t *)"", c->ends[i] - start};
        start = c->ends[i];
    }
    bool go = c->stopped || fn(ud, f, c->nfields);
    if (!go)
        c->stopped = true;
    ps_buf_reset(&c->rec);
    c->nfields = 0;
    c->any = false;
    c->state = S_FIELD_START;
    return true;
}

/* CR or LF: the record ends, if one began; after a CR, an LF is the same line end. */
static void line_end(ps_csv *c, uint8_t b, ps_csv_fn fn, void *ud)
{
    if (c->any)
        end_record(c, fn, ud);
    c->state = b == '\r' ? S_CR : S_FIELD_START;
}

static bool put(ps_csv *c, uint8_t b)
{
    if (c->rec.len >= PS_CSV_MAX_RECORD)
        return false;
    ps_buf_putc(&c->rec, (char)b);
    return true;
}

ps_csv_error ps_csv_feed(ps_csv *c, const uint8_t *p, size_t len, ps_csv_fn fn, void *ud)
{
    static const uint8_t mark[3] = {0xEF, 0xBB, 0xBF};
    for (size_t i = 0; i < len && !c->stopped; i++) {
        uint8_t b = p[i];
        if (c->bom < 3) { /* a spreadsheet's "CSV UTF-8" starts with a byte order mark */
            if (b == mark[c->bom]) {
                c->bom++;
                continue;
            }
            if (c->bom > 0) { /* not a mark: the bytes taken for one are data */
                c->any = true;
                c->state = S_UNQUOTED;
                for (int k = 0; k < c->bom; k++)
                    put(c, mark[k]);
            }
            c->bom = 3;
        }
        switch (c->state) {
        case S_CR:
            c->state = S_FIELD_START;
            if (b == '\n')
                continue; /* CRLF */
            /* a lone CR ended the record: this byte starts the next one */
            __attribute__((fallthrough));
        case S_FIELD_START:
            if (b == '"') {
                c->state = S_QUOTED;
                c->any = true;
            } else if (b == ',') {
                c->any = true;
                end_field(c);
            } else if (b == '\n' || b == '\r') {
                line_end(c, b, fn, ud); /* a line without a record (blank) gives none */
            } else {
                c->any = true;
                c->state = S_UNQUOTED;
                if (!put(c, b))
                    return PS_CSV_PARSE;
            }
            break;
        case S_UNQUOTED:
            if (b == ',') {
                end_field(c);
                c->state = S_FIELD_START;
            } else if (b == '\n' || b == '\r') {
                line_end(c, b, fn, ud);
            } else if (b == '"') {
                return PS_CSV_PARSE; /* a quote inside an unquoted field */
            } else if (!put(c, b)) {
                return PS_CSV_PARSE;
            }
            break;
        case S_QUOTED:
            if (b == '"')
                c->state = S_QUOTE_IN_QUOTED;
            else if (!put(c, b))
                return PS_CSV_PARSE;
            break;
        case S_QUOTE_IN_QUOTED:
            if (b == '"') { /* "" is one quote */
                if (!put(c, b))
                    return PS_CSV_PARSE;
                c->state = S_QUOTED;
            } else if (b == ',') {
                end_field(c);
                c->state = S_FIELD_START;
            } else if (b == '\n' || b == '\r') {
                line_end(c, b, fn, ud);
            } else {
                return PS_CSV_PARSE; /* something after the closing quote */
            }
            break;
        default: break;
        }
    }
    return PS_CSV_OK;
}

ps_csv_error ps_csv_finish(ps_csv *c, ps_csv_fn fn, void *ud)
{
    if (c->state == S_QUOTED)
        return PS_CSV_PARSE;
    if (c->any && !c->stopped)
        end_record(c, fn, ud);
    return PS_CSV_OK;
}

/* ---- the header rules ---- */

/* The length of an allowed character at `p` (1 for ASCII, 2 for an accented Latin letter,
 * U+00C0-U+017F without the multiplication and division signs), or 0. */
static size_t allowed_char(const uint8_t *p, size_t left)
{
    static const char punct[] = "!@#$%^&*()_+-=[]{}:\\|.`~<>/? ";
    uint8_t b = p[0];
    if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9'))
        return 1;
    if (b < 0x80)
        return b && strchr(punct, b) ? 1 : 0;
    if (left < 2 || (p[1] & 0xC0) != 0x80)
        return 0;
    unsigned cp = ((unsigned)(b & 0x1F) << 6) | (p[1] & 0x3F);
    if ((b & 0xE0) != 0xC0 || cp < 0xC0 || cp > 0x17F || cp == 0xD7 || cp == 0xF7)
        return 0;
    return 2;
}

ps_csv_error ps_csv_check_header(const ps_slice *names, size_t count)
{
    if (count > PS_CSV_MAX_COLUMNS)
        return PS_CSV_TOO_MANY_COLUMNS;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *s = names[i].ptr;
        size_t n = names[i].len;
        if (n == 0)
            return PS_CSV_EMPTY_HEADER;
        if (s[0] == ' ' || s[n - 1] == ' ' || memmem(s, n, "  ", 2))
            return PS_CSV_HEADER_SPACES;
        for (size_t k = 0; k < n;) {
            size_t w = allowed_char(s + k, n - k);
            if (w == 0)
                return PS_CSV_INVALID_CHARACTER;
            k += w;
        }
    }
    for (size_t i = 0; i < count; i++) /* headers are case-sensitive */
        for (size_t k = i + 1; k < count; k++)
            if (names[i].len == names[k].len &&
                memcmp(names[i].ptr, names[k].ptr, names[i].len) == 0)
                return PS_CSV_DUPLICATE_HEADER;
    return PS_CSV_OK;
}

/* ---- a row as an identify message ---- */

static bool is(const ps_slice *s, const char *name)
{
    return s->len == strlen(name) && memcmp(s->ptr, name, s->len) == 0;
}

bool ps_csv_row_message(const ps_slice *header, const bool *ident, const ps_slice *row,
                        size_t count, const char *message_id, const char *anonymous_id, ps_buf *out)
{
    bool any_id = false;
    for (size_t i = 0; i < count; i++)
        any_id = any_id || (ident[i] && row[i].len > 0);
    if (!any_id && anonymous_id == NULL)
        return false;
    ps_buf_puts(out, "{\"type\":\"identify\",\"messageId\":");
    ps_buf_json_str(out, message_id, strlen(message_id));
    if (!any_id) { /* a row without identifiers, in a space that has anonymous_id */
        ps_buf_puts(out, ",\"anonymousId\":");
        ps_buf_json_str(out, anonymous_id, strlen(anonymous_id));
    }
    for (size_t i = 0; i < count; i++) {
        if (!ident[i] || row[i].len == 0)
            continue;
        if (is(&header[i], "user_id") || is(&header[i], "anonymous_id")) {
            ps_buf_puts(out, is(&header[i], "user_id") ? ",\"userId\":" : ",\"anonymousId\":");
            ps_buf_json_str(out, (const char *)row[i].ptr, row[i].len);
        }
    }
    ps_buf_puts(out, ",\"traits\":{");
    size_t traits = 0;
    for (size_t i = 0; i < count; i++) {
        bool email = ident[i] && is(&header[i], "email");
        if ((ident[i] && !email) || row[i].len == 0)
            continue; /* identifiers (email is also a trait), and blank cells */
        if (traits++)
            ps_buf_putc(out, ',');
        ps_buf_json_str(out, (const char *)header[i].ptr, header[i].len);
        ps_buf_putc(out, ':');
        ps_buf_json_str(out, (const char *)row[i].ptr, row[i].len);
    }
    ps_buf_puts(out, "},\"context\":{\"externalIds\":[");
    size_t ext = 0;
    for (size_t i = 0; i < count; i++) {
        if (!ident[i] || row[i].len == 0 || is(&header[i], "user_id") ||
            is(&header[i], "anonymous_id") || is(&header[i], "email"))
            continue;
        ps_buf_puts(out, ext++ ? ",{\"id\":" : "{\"id\":");
        ps_buf_json_str(out, (const char *)row[i].ptr, row[i].len);
        ps_buf_puts(out, ",\"type\":");
        ps_buf_json_str(out, (const char *)header[i].ptr, header[i].len);
        ps_buf_puts(out, ",\"collection\":\"users\",\"encoding\":\"none\"}");
    }
    ps_buf_puts(out, "]}}");
    return true;
}
