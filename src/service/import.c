/* SPDX-License-Identifier: MIT */
/* import: CSV rows through the accept/resolve path (see ps/import.h). */
#include "ps/import.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ps/clock.h"
#include "ps/rules.h"

#define READ_CHUNK (64 * 1024)
#define DEFAULT_BATCH 50000

typedef struct pass {
    ps_space *sp;
    const ps_rules *rules;
    const ps_import_opts *o;
    ps_import_result *res;
    bool second; /* the import pass, after the check */
    bool header_seen;
    ps_buf header_text; /* the header's names, back to back */
    ps_slice header[PS_CSV_MAX_COLUMNS];
    bool ident[PS_CSV_MAX_COLUMNS];
    size_t columns;
    bool anon_fallback; /* anonymous_id is an identifier of the space: rows need none */
    uint64_t row, hash;
    ps_buf msg;
    ps_ingest *in;
    ps_csv_error err;
    ps_status st;
} pass;

static bool identifier_column(const ps_rules *r, const char *name)
{
    if (!ps_rules_type_configured(r, name))
        return false;
    const ps_type_rule *t = ps_rules_type(r, name);
    return t->enabled && t->collection == PS_USERS;
}

static void row_error(pass *p, const char *message)
{
    ps_import_result *res = p->res;
    res->rows_failed++;
    if (res->errors_listed < PS_IMPORT_ERRORS_LISTED)
        res->errors[res->errors_listed++] = (ps_import_row_error){p->row, message};
}

static bool take_header(pass *p, const ps_slice *f, size_t n)
{
    p->header_seen = true;
    if ((p->err = ps_csv_check_header(f, n)) != PS_CSV_OK)
        return false;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += f[i].len + 1;
    ps_buf_reset(&p->header_text); /* the second pass reads it again */
    ps_buf_reserve(&p->header_text, total);
    p->res->identifier_columns = 0;
    char name[4096];
    for (size_t i = 0; i < n; i++) {
        size_t at = p->header_text.len;
        ps_buf_append(&p->header_text, f[i].ptr, f[i].len);
        ps_buf_putc(&p->header_text, 0);
        p->header[i] = (ps_slice){p->header_text.ptr + at, f[i].len}; /* no realloc: reserved */
        size_t l = f[i].len < sizeof name - 1 ? f[i].len : sizeof name - 1;
        memcpy(name, f[i].ptr, l);
        name[l] = 0;
        p->ident[i] = identifier_column(p->rules, name);
        p->res->identifier_columns += p->ident[i];
    }
    p->columns = n;
    p->res->columns = n;
    p->anon_fallback = identifier_column(p->rules, "anonymous_id");
    if (p->res->identifier_columns == 0 && !p->anon_fallback)
        p->err = PS_CSV_NO_IDENTIFIER;
    return p->err == PS_CSV_OK;
}

static bool on_record(void *ud, const ps_slice *f, size_t n)
{
    pass *p = ud;
    if (!p->header_seen)
        return take_header(p, f, n);
    p->row++;
    if (!p->second) {
        p->res->rows++;
        if (p->res->rows > PS_CSV_MAX_ROWS) {
            p->err = PS_CSV_TOO_MANY_ROWS;
            return false;
        }
    }
    if (n > p->columns) {
        if (!p->second)
            row_error(p, "the row has more cells than the header");
        return true;
    }
    ps_slice cells[PS_CSV_MAX_COLUMNS];
    for (size_t i = 0; i < p->columns; i++) /* missing cells are blank */
        cells[i] = i < n ? f[i] : (ps_slice){(const uint8_t *)"", 0};
    char mid[PS_IMPORT_ID_BUF + 24], anon[PS_IMPORT_ID_BUF + 24];
    snprintf(mid, sizeof mid, "%s-%llu", p->res->id, (unsigned long long)p->row);
    snprintf(anon, sizeof anon, "%s-row-%llu", p->res->id, (unsigned long long)p->row);
    ps_buf_reset(&p->msg);
    if (!ps_csv_row_message(p->header, p->ident, cells, p->columns, mid,
                            p->anon_fallback ? anon : NULL, &p->msg)) {
        if (!p->second)
            row_error(p, "the row has no identifier value");
        return true;
    }
    if (!p->second)
        return true;
    /* the one accept path: the row as a message at the door, then resolved in order */
    ps_prepare_opts po = {
        .source_id = p->o->source_id ? p->o->source_id : "csv-import",
        .now_ms = p->o->now_ms,
        .sequence = p->row,
        .unlimited = true,
    };
    uint8_t *json = ps_xmalloc(p->msg.len);
    memcpy(json, p->msg.ptr, p->msg.len);
    ps_prepared *prep;
    ps_prepare_refusal refusal;
    ps_status st = ps_ingest_prepare(p->sp, &po, json, p->msg.len, &prep, &refusal);
    if (st == PS_EINVAL || st == PS_ETOOBIG) { /* a cell the message rules refuse */
        ps_ingest_unreadable(p->in, refusal.why);
        return true;
    }
    if (st == PS_OK) {
        st = ps_ingest_prepared(p->in, prep);
        ps_prepared_free(prep);
    }
    size_t batch = p->o->batch ? p->o->batch : DEFAULT_BATCH;
    if (st == PS_OK && ps_ingest_pending(p->in) >= batch)
        st = ps_ingest_commit(p->in);
    p->st = st;
    return st == PS_OK;
}

/* One pass over the file. */
static ps_status read_file(FILE *f, pass *p)
{
    ps_csv *c = ps_csv_new();
    uint8_t *buf = ps_xmalloc(READ_CHUNK);
    size_t n;
    rewind(f);
    p->header_seen = false;
    p->row = 0;
    while (p->err == PS_CSV_OK && p->st == PS_OK && (n = fread(buf, 1, READ_CHUNK, f)) > 0) {
        if (!p->second)
            for (size_t i = 0; i < n; i++) /* FNV-1a: the import id */
                p->hash = (p->hash ^ buf[i]) * 0x100000001b3ull;
        ps_csv_error e = ps_csv_feed(c, buf, n, on_record, p);
        if (p->err == PS_CSV_OK)
            p->err = e;
    }
    ps_status st = ferror(f) ? PS_EIO : PS_OK;
    if (st == PS_OK && p->err == PS_CSV_OK && p->st == PS_OK) {
        ps_csv_error e = ps_csv_finish(c, on_record, p);
        if (p->err == PS_CSV_OK)
            p->err = e;
    }
    free(buf);
    ps_csv_free(c);
    return st;
}

ps_status ps_import_csv(ps_space *sp, const char *path, const ps_import_opts *o,
                        ps_import_result *res)
{
    memset(res, 0, sizeof *res);
    size_t pl = strlen(path);
    if (pl < 4 || strcmp(path + pl - 4, ".csv") != 0) {
        res->error = PS_CSV_NOT_CSV;
        return PS_OK;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return errno == ENOENT ? PS_ENOTFOUND : PS_EIO;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return PS_EIO;
    }
    if ((uint64_t)sb.st_size > PS_CSV_MAX_BYTES) {
        fclose(f);
        res->error = PS_CSV_TOO_BIG;
        return PS_OK;
    }
    pass p = {.sp = sp, .o = o, .res = res, .hash = 0xcbf29ce484222325ull};
    ps_txn *t;
    ps_status st = ps_txn_begin(ps_space_store(sp), false, &t);
    if (st == PS_OK) {
        st = ps_space_rules(sp, t, &p.rules); /* borrowed until the space closes */
        ps_txn_abort(t);
    }
    if (st == PS_OK)
        st = read_file(f, &p);
    if (st == PS_OK && p.err == PS_CSV_OK && (!p.header_seen || res->rows == 0))
        p.err = PS_CSV_EMPTY;
    res->error = p.err;
    snprintf(res->id, sizeof res->id, "imp_%016llx", (unsigned long long)p.hash);
    if (st == PS_OK && res->error == PS_CSV_OK && !o->dry_run) {
        ps_ingest_opts io = {.source_id = o->source_id ? o->source_id : "csv-import"};
        if ((st = ps_ingest_begin(sp, &io, &p.in)) == PS_OK) {
            p.second = true;
            st = read_file(f, &p);
            if (st == PS_OK)
                st = p.st;
            if (st == PS_OK)
                st = ps_ingest_commit(p.in);
            if (st == PS_OK)
                res->stats = *ps_ingest_stats_get(p.in);
            ps_ingest_end(p.in);
        }
    }
    fclose(f);
    ps_buf_clear(&p.header_text);
    ps_buf_clear(&p.msg);
    return st;
}

ps_status ps_import_template(ps_space *sp, ps_buf *out)
{
    ps_txn *t;
    const ps_rules *r;
    ps_status st = ps_txn_begin(ps_space_store(sp), false, &t);
    if (st != PS_OK)
        return st;
    st = ps_space_rules(sp, t, &r);
    ps_txn_abort(t);
    if (st != PS_OK)
        return st;
    size_t count, shown = 0;
    ps_rules_type_at(r, 0, &count);
    for (size_t i = 0; i < count; i++) {
        const ps_type_rule *tr = ps_rules_type_at(r, i, &count);
        if (!tr->enabled || tr->collection != PS_USERS)
            continue;
        if (shown++)
            ps_buf_putc(out, ',');
        ps_buf_puts(out, tr->type);
    }
    return PS_OK;
}
