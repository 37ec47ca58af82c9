/* SPDX-License-Identifier: MIT */
/* import: CSV rows through the accept/resolve path (see ps/import.h). */
#include "ps/import.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps/clock.h"
#include "ps/fsutil.h"
#include "ps/rules.h"
#include "ps/store.h"

#define READ_CHUNK (64 * 1024)
#define DEFAULT_BATCH 50000

typedef struct pass {
    ps_space *sp;
    const ps_rules *rules;
    const ps_import_opts *o;
    const char *source; /* stamped on the rows' messages */
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

/* The import id: "imp_" and the FNV-1a hash of the file's bytes, fed in pieces. */
#define FNV_START 0xcbf29ce484222325ull

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void import_id(uint64_t h, char id[PS_IMPORT_ID_BUF])
{
    snprintf(id, PS_IMPORT_ID_BUF, "imp_%016llx", (unsigned long long)h);
}

/* The space's rules as of now (borrowed until the space closes). */
typedef struct rules_call {
    ps_space *sp;
    const ps_rules **out;
} rules_call;

static ps_status rules_step(ps_txn *t, void *ud)
{
    rules_call *r = ud;
    return ps_space_rules(r->sp, t, r->out);
}

static ps_status current_rules(ps_space *sp, const ps_rules **out)
{
    rules_call r = {sp, out};
    return ps_store_read_guarded(ps_space_store(sp), rules_step, &r, NULL);
}

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
        .source_id = p->source,
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
    if (st == PS_OK && ps_ingest_pending(p->in) >= batch) {
        st = ps_ingest_commit(p->in);
        if (st == PS_OK && p->o->cancel && atomic_load(p->o->cancel)) {
            p->res->canceled = true; /* what is committed stays; the rest waits */
            p->st = st;
            return false;
        }
    }
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
            p->hash = fnv(p->hash, buf, n);
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
    pass p = {.sp = sp,
              .o = o,
              .source = o->source_id ? o->source_id : "csv-import",
              .res = res,
              .hash = FNV_START};
    ps_status st = current_rules(sp, &p.rules);
    if (st == PS_OK)
        st = read_file(f, &p);
    if (st == PS_OK && p.err == PS_CSV_OK && (!p.header_seen || res->rows == 0))
        p.err = PS_CSV_EMPTY;
    res->error = p.err;
    import_id(p.hash, res->id);
    if (st == PS_OK && res->error == PS_CSV_OK && !o->dry_run) {
        ps_ingest_opts io = {.source_id = p.source};
        if ((st = ps_ingest_begin(sp, &io, &p.in)) == PS_OK) {
            p.second = true;
            st = read_file(f, &p);
            if (st == PS_OK)
                st = p.st;
            if (st == PS_OK && !res->canceled)
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
    const ps_rules *r;
    ps_status st = current_rules(sp, &r);
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

/* ---- server imports ---- */

#define IMPORTS_DIR "imports"
#define STATUS_PREFIX "import/"

static void import_path(ps_space *sp, const char *id, const char *suffix, char *out, size_t cap)
{
    snprintf(out, cap, "%s/" IMPORTS_DIR "/%s.csv%s", ps_space_dir(sp), id, suffix);
}

/* One meta row of an import, read or written in a guarded transaction of its own: a damaged
 * page fails the request, not the server. */
typedef struct meta_row {
    char key[64];
    ps_buf value;
} meta_row;

static ps_status put_row(ps_txn *t, void *ud)
{
    meta_row *r = ud;
    return ps_store_meta_put(t, r->key, (ps_slice){r->value.ptr, r->value.len});
}

static ps_status get_row(ps_txn *t, void *ud)
{
    meta_row *r = ud;
    ps_slice v;
    ps_status st = ps_store_meta_get(t, r->key, &v);
    if (st == PS_OK)
        ps_buf_append(&r->value, v.ptr, v.len);
    return st;
}

/* meta "import/<id>": the status document a GET answers with. */
static ps_status put_status(ps_space *sp, const char *id, const char *status, int64_t created_ms,
                            int64_t finished_ms, const ps_import_result *r)
{
    ps_buf doc;
    ps_buf_init(&doc);
    char tb[PS_TIME_BUF];
    ps_buf_printf(&doc, "{\"id\":\"%s\",\"status\":\"%s\",\"createdAt\":\"%s\"", id, status,
                  ps_time_format(created_ms, tb));
    if (finished_ms)
        ps_buf_printf(&doc, ",\"finishedAt\":\"%s\"", ps_time_format(finished_ms, tb));
    if (r && r->error != PS_CSV_OK) {
        ps_buf_printf(&doc,
                      ",\"error\":{\"code\":\"%s\",\"message\":", ps_csv_error_code(r->error));
        const char *m = ps_csv_error_message(r->error);
        ps_buf_json_str(&doc, m, strlen(m));
        ps_buf_putc(&doc, '}');
    } else if (r) {
        const ps_ingest_stats *s = &r->stats;
        ps_buf_printf(&doc,
                      ",\"rows\":%llu,\"rowsFailed\":%llu,\"accepted\":%llu,\"duplicates\":%llu,"
                      "\"profilesCreated\":%llu,\"merges\":%llu,\"errors\":[",
                      (unsigned long long)r->rows, (unsigned long long)r->rows_failed,
                      (unsigned long long)s->accepted, (unsigned long long)s->duplicates,
                      (unsigned long long)s->profiles_created, (unsigned long long)s->merges);
        for (size_t i = 0; i < r->errors_listed; i++)
            ps_buf_printf(&doc, "%s{\"row\":%llu,\"message\":\"%s\"}", i ? "," : "",
                          (unsigned long long)r->errors[i].row, r->errors[i].message);
        ps_buf_putc(&doc, ']');
    }
    ps_buf_putc(&doc, '}');
    meta_row row = {.value = doc};
    snprintf(row.key, sizeof row.key, STATUS_PREFIX "%s", id);
    ps_status st = ps_store_write_guarded(ps_space_store(sp), put_row, &row);
    ps_buf_clear(&doc);
    return st;
}

ps_status ps_import_submit(ps_space *sp, const uint8_t *csv, size_t len, int64_t now_ms,
                           char id[PS_IMPORT_ID_BUF])
{
    import_id(fnv(FNV_START, csv, len), id); /* the id the CLI gives the same file */
    char dir[4096], tmp[4200], path[4200];
    snprintf(dir, sizeof dir, "%s/" IMPORTS_DIR, ps_space_dir(sp));
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return errno == ENOSPC ? PS_EFULL : PS_EIO;
    import_path(sp, id, ".tmp", tmp, sizeof tmp);
    import_path(sp, id, "", path, sizeof path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == ENOSPC ? PS_EFULL : PS_EIO;
    ps_status st = PS_OK;
    for (size_t off = 0; off < len && st == PS_OK;) {
        ssize_t w = write(fd, csv + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            st = errno == ENOSPC || errno == EFBIG ? PS_EFULL : PS_EIO;
        else
            off += (size_t)w;
    }
    if (st == PS_OK && fdatasync(fd) != 0)
        st = PS_EIO;
    close(fd);
    if (st == PS_OK && rename(tmp, path) != 0)
        st = PS_EIO;
    if (st == PS_OK)
        st = ps_dir_sync(dir); /* acknowledged: the file survives a crash */
    if (st != PS_OK) {
        unlink(tmp);
        return st;
    }
    return put_status(sp, id, "QUEUED", now_ms, 0, NULL);
}

/* The waiting import files' ids, sorted (a small directory: one file per waiting import). */
static size_t pending_ids(ps_space *sp, char ***out)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/" IMPORTS_DIR, ps_space_dir(sp));
    *out = NULL;
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l != PS_IMPORT_ID_BUF - 4 + 4 || strncmp(e->d_name, "imp_", 4) != 0 ||
            strcmp(e->d_name + l - 4, ".csv") != 0)
            continue; /* "imp_" + 16 hex + ".csv"; temporary files are not ready */
        *out = ps_xrealloc(*out, (n + 1) * sizeof **out);
        (*out)[n++] = ps_xstrndup(e->d_name, l - 4);
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of names */
        for (size_t k = i; k > 0 && strcmp((*out)[k - 1], (*out)[k]) > 0; k--) {
            char *x = (*out)[k];
            (*out)[k] = (*out)[k - 1];
            (*out)[k - 1] = x;
        }
    return n;
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

bool ps_import_any_pending(ps_space *sp)
{
    char **ids;
    size_t n = pending_ids(sp, &ids);
    free_ids(ids, n);
    return n > 0;
}

/* The createdAt of a recorded import, or `fallback`. */
static int64_t created_of(ps_space *sp, const char *id, int64_t fallback)
{
    ps_buf doc;
    ps_buf_init(&doc);
    int64_t ms = fallback;
    if (ps_import_status(sp, id, &doc) == PS_OK) {
        const char *at = strstr((const char *)doc.ptr, "\"createdAt\":\"");
        if (at)
            ps_time_parse(at + 13, 24, &ms);
    }
    ps_buf_clear(&doc);
    return ms;
}

ps_status ps_import_run_pending(ps_space *sp, int64_t now_ms, const atomic_bool *cancel)
{
    char **ids;
    size_t n = pending_ids(sp, &ids);
    ps_status st = PS_OK;
    for (size_t i = 0; i < n && st == PS_OK && !(cancel && atomic_load(cancel)); i++) {
        int64_t created = created_of(sp, ids[i], now_ms);
        if ((st = put_status(sp, ids[i], "RUNNING", created, 0, NULL)) != PS_OK)
            break;
        char path[4200];
        import_path(sp, ids[i], "", path, sizeof path);
        ps_import_opts o = {.batch = 5000, .now_ms = now_ms, .cancel = cancel};
        ps_import_result *r = ps_xcalloc(1, sizeof *r);
        st = ps_import_csv(sp, path, &o, r);
        if (st == PS_OK && r->canceled) {
            st = put_status(sp, ids[i], "QUEUED", created, 0, NULL); /* the next run goes on */
        } else if (st == PS_OK) {
            st = put_status(sp, ids[i], r->error == PS_CSV_OK ? "FINISHED" : "FAILED", created,
                            ps_clock_now_ms(), r);
            if (st == PS_OK)
                unlink(path);
        }
        free(r);
    }
    free_ids(ids, n);
    return st;
}

ps_status ps_import_status(ps_space *sp, const char *id, ps_buf *out)
{
    if (strlen(id) != PS_IMPORT_ID_BUF - 4 || strncmp(id, "imp_", 4) != 0)
        return PS_ENOTFOUND;
    meta_row row;
    snprintf(row.key, sizeof row.key, STATUS_PREFIX "%s", id);
    ps_buf_init(&row.value);
    ps_status st = ps_store_read_guarded(ps_space_store(sp), get_row, &row, NULL);
    if (st == PS_OK)
        ps_buf_append(out, row.value.ptr, row.value.len);
    ps_buf_clear(&row.value);
    return st;
}
