/* SPDX-License-Identifier: MIT */
/* journal: records come back in order across segments, a torn tail ends the scan without
 * losing what came before, appends after a restart go to a new segment, the lock keeps a
 * second appender out, and release removes only what was applied. Then the server writer's
 * recovery: what a stopped server acknowledged reaches the store through profilectl's path. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "ps/graphdb.h"
#include "ps/ingest.h"
#include "ps/journal.h"
#include "ps/space.h"
#include "ps/writer.h"
#include "tspace.h"

typedef struct seen {
    int count;
    char last[64];
    uint64_t last_end;
} seen;

static bool collect(void *ud, uint64_t end, ps_slice rec)
{
    seen *s = ud;
    s->count++;
    snprintf(s->last, sizeof s->last, "%.*s", (int)rec.len, (const char *)rec.ptr);
    s->last_end = end;
    return true;
}

static int segments(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '^journal-'", dir);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

/* Overwrites `n` bytes at offset `off` of the journal's first segment in `dir`. */
static bool damage(const char *dir, uint64_t off, const char *bytes, size_t n)
{
    char seg[512];
    snprintf(seg, sizeof seg, "%s/journal-%016x", dir, 0);
    int fd = open(seg, O_RDWR);
    bool done = fd >= 0 && pwrite(fd, bytes, n, (off_t)off) == (ssize_t)n;
    if (fd >= 0)
        close(fd);
    return done;
}

static void append_scan_torn_tail_and_restart(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s", tmpdir_make());
    ps_journal *j = NULL, *j2 = NULL;
    CHECK(!ps_journal_present(dir));
    CHECK_EQ_INT(ps_journal_open(dir, &j), PS_OK);
    CHECK_EQ_INT(ps_journal_open(dir, &j2), PS_EBUSY); /* flock: one appender per journal */
    CHECK_EQ_INT(ps_journal_start(j, 0), PS_OK);
    uint64_t end = 0, first_end = 0;
    char rec[64];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(rec, sizeof rec, "record-%d", i);
        CHECK_EQ_INT(ps_journal_append(j, (ps_slice){(const uint8_t *)rec, (size_t)n}, &end),
                     PS_OK);
        if (i == 0)
            first_end = end;
        if (i % 10 == 9)
            CHECK_EQ_INT(ps_journal_sync(j), PS_OK);
    }
    CHECK(ps_journal_present(dir));
    seen s = {0};
    uint64_t last;
    CHECK_EQ_INT(ps_journal_scan(dir, 0, collect, &s, &last), PS_OK);
    CHECK_EQ_INT(s.count, 100);
    CHECK_EQ_STR(s.last, "record-99");
    CHECK_EQ_INT(last, end);
    memset(&s, 0, sizeof s); /* from a position: only what follows it */
    CHECK_EQ_INT(ps_journal_scan(dir, first_end, collect, &s, &last), PS_OK);
    CHECK_EQ_INT(s.count, 99);
    /* a pending record that was never synced is not there */
    CHECK_EQ_INT(ps_journal_append(j, (ps_slice){(const uint8_t *)"unsynced", 8}, &end), PS_OK);
    ps_journal_discard(j);
    ps_journal_close(j);
    j = NULL;
    /* a crash cut the last record short: flip a byte of its payload */
    CHECK(damage(dir, last - 1, "X", 1));
    memset(&s, 0, sizeof s);
    CHECK_EQ_INT(ps_journal_scan(dir, 0, collect, &s, &last), PS_OK);
    CHECK_EQ_INT(s.count, 99);
    CHECK_EQ_STR(s.last, "record-98");
    /* a restart appends to a new segment after the torn one; the scan goes on past the tear */
    CHECK_EQ_INT(ps_journal_open(dir, &j), PS_OK);
    CHECK_EQ_INT(ps_journal_start(j, s.last_end), PS_OK);
    CHECK_EQ_INT(ps_journal_append(j, (ps_slice){(const uint8_t *)"after", 5}, &end), PS_OK);
    CHECK_EQ_INT(ps_journal_sync(j), PS_OK);
    CHECK(end > PS_JOURNAL_SEGMENT);
    CHECK_EQ_INT(segments(dir), 2);
    memset(&s, 0, sizeof s);
    CHECK_EQ_INT(ps_journal_scan(dir, first_end, collect, &s, &last), PS_OK);
    CHECK_EQ_INT(s.count, 99); /* 98 before the tear, then "after" */
    CHECK_EQ_STR(s.last, "after");
    /* release: the first segment goes once the mark is in the second */
    ps_journal_release(j, s.last_end - 1, false);
    CHECK_EQ_INT(segments(dir), 1);
    ps_journal_release(j, s.last_end, true);
    CHECK(!ps_journal_present(dir));
    /* positions only grow: a journal started after everything was removed */
    CHECK_EQ_INT(ps_journal_start(j, end), PS_OK);
    CHECK_EQ_INT(ps_journal_append(j, (ps_slice){(const uint8_t *)"later", 5}, &last), PS_OK);
    CHECK(last > end);
    CHECK_EQ_INT(ps_journal_sync(j), PS_OK);
end:
    ps_journal_close(j);
    ps_journal_close(j2);
    tmpdir_remove(dir);
}

static bool collect_names(void *ud, uint64_t end, ps_slice rec)
{
    (void)end;
    char *names = ud;
    strncat(names, (const char *)rec.ptr, rec.len < 16 ? rec.len : 16);
    strcat(names, ",");
    return true;
}

/* A record damaged where it lies (not a torn tail: whole records follow it) is skipped, and
 * the scan goes on with the next whole record: damage to one acknowledged record does not
 * lose the ones after it. */
static void a_damaged_record_is_skipped(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s", tmpdir_make());
    ps_journal *j = NULL;
    CHECK_EQ_INT(ps_journal_open(dir, &j), PS_OK);
    CHECK_EQ_INT(ps_journal_start(j, 0), PS_OK);
    uint64_t ends[10];
    char rec[16];
    for (int i = 0; i < 10; i++) {
        int n = snprintf(rec, sizeof rec, "r%d", i);
        CHECK_EQ_INT(ps_journal_append(j, (ps_slice){(const uint8_t *)rec, (size_t)n}, &ends[i]),
                     PS_OK);
    }
    CHECK_EQ_INT(ps_journal_sync(j), PS_OK);
    ps_journal_close(j);
    j = NULL;
    CHECK(damage(dir, ends[3] - 1, "X", 1));                /* r3's payload */
    CHECK(damage(dir, ends[5], "\xff\xff\xff\xff", 4)); /* r6's length */
    char names[256] = "";
    uint64_t last;
    CHECK_EQ_INT(ps_journal_scan(dir, 0, collect_names, names, &last), PS_OK);
    CHECK_EQ_STR(names, "r0,r1,r2,r4,r5,r7,r8,r9,");
    CHECK_EQ_INT(last, ends[9]);
end:
    ps_journal_close(j);
    tmpdir_remove(dir);
}

static void done_cb(void *ud, ps_status st, uint64_t position)
{
    (void)position;
    *(ps_status *)ud = st;
}

/* A writer acknowledges; its process dies before the store takes the payload (the apply
 * thread never runs here: the journal is written by hand from a prepared payload); the next
 * opener applies it, exactly once. */
static void recovery_applies_what_was_acknowledged(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    ps_journal *j = NULL;
    ps_prepared *p = NULL;
    const char *body = "{\"batch\":[{\"type\":\"identify\",\"userId\":\"j1\",\"messageId\":\"a\"},"
                       "{\"type\":\"track\",\"userId\":\"j1\",\"event\":\"E\",\"messageId\":"
                       "\"b\"}]}";
    size_t len = strlen(body);
    uint8_t *json = ps_xmalloc(len);
    memcpy(json, body, len);
    ps_prepare_opts po = {.source_id = "src", .now_ms = 1700000000000LL, .require_batch = true};
    ps_prepare_refusal refusal;
    CHECK_EQ_INT(ps_ingest_prepare(ts.sp, &po, json, len, &p, &refusal), PS_OK);
    CHECK_EQ_INT(ps_prepared_accepted(p), 2);
    CHECK_EQ_INT(ps_journal_open(ps_space_dir(ts.sp), &j), PS_OK);
    CHECK_EQ_INT(ps_journal_start(j, 0), PS_OK);
    uint64_t end;
    for (size_t i = 0; i < 2; i++)
        CHECK_EQ_INT(ps_journal_append(j, ps_prepared_log_value(p, i), &end), PS_OK);
    CHECK_EQ_INT(ps_journal_sync(j), PS_OK);
    ps_journal_close(j); /* the server is gone */
    j = NULL;
    CHECK_EQ_INT(tspace_find(&ts, "user_id:j1"), 0);
    CHECK(ps_writer_journal_present(ts.sp));
    CHECK_EQ_INT(ps_writer_recover(ts.sp), PS_OK);
    CHECK(!ps_writer_journal_present(ts.sp));
    CHECK(tspace_find(&ts, "user_id:j1") != 0);
    uint64_t applied;
    CHECK_EQ_INT(ps_ingest_journal_applied(ts.sp, &applied), PS_OK);
    CHECK_EQ_INT(applied, end);
    CHECK_EQ_INT(ps_writer_recover(ts.sp), PS_OK); /* nothing left: a no-op */
    /* a writer started on the space begins past the old positions and stops cleanly */
    ps_writer *w = NULL;
    ps_writer_opts wo = {0};
    CHECK_EQ_INT(ps_writer_start(ts.sp, &wo, &w), PS_OK);
    json = ps_xmalloc(len);
    memcpy(json, body, len);
    po.now_ms += 1000;
    ps_prepared *q = NULL;
    CHECK_EQ_INT(ps_ingest_prepare(ts.sp, &po, json, len, &q, &refusal), PS_OK);
    ps_status got = (ps_status)1; /* not a status: the callback has not run */
    CHECK_EQ_INT(ps_writer_submit(w, q, done_cb, &got), PS_OK);
    for (int i = 0; i < 10000 && got == (ps_status)1; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    CHECK_EQ_INT(got, PS_OK);
    CHECK(ps_writer_await(w, 10000));
    ps_writer_free(w);
    CHECK(!ps_writer_journal_present(ts.sp));
    CHECK_EQ_INT(ps_ingest_journal_applied(ts.sp, &applied), PS_OK);
    CHECK(applied > end);
end:
    ps_prepared_free(p);
    ps_journal_close(j);
    tspace_close(&ts);
}

/* A borrowed body (the CLI's read buffer) is copied into the payload: the caller may reuse
 * its buffer at once. The writer reads the body again when the settings changed after the
 * payload was prepared, so the copy is what it reads then. The identifiers carry the hash the
 * store's cache files them under, computed ahead. */
static void a_borrowed_body_is_the_payloads_own(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    ps_prepared *p[2] = {NULL, NULL};
    ps_ingest *in = NULL;
    char *buf = NULL;
    for (int k = 0; k < 2; k++) {
        char body[256];
        int len = snprintf(body, sizeof body,
                           "{\"type\":\"identify\",\"userId\":\"b%d\",\"anonymousId\":"
                           "\"anon-b%d\",\"messageId\":\"mb%d\",\"traits\":{\"plan\":\"pro\"}}",
                           k, k, k);
        buf = ps_xmalloc((size_t)len);
        memcpy(buf, body, (size_t)len);
        ps_prepare_opts po = {.source_id = "src", .now_ms = 1700000000000LL, .borrowed_json = true};
        ps_prepare_refusal refusal;
        CHECK_EQ_INT(ps_ingest_prepare(ts.sp, &po, (uint8_t *)buf, (size_t)len, &p[k], &refusal),
                     PS_OK);
        memset(buf, 'x', (size_t)len); /* the caller's next line */
        free(buf);
        buf = NULL;
        CHECK_EQ_INT(ps_prepared_accepted(p[k]), 1);
    }
    const char *settings = "{\"identifiers\":{\"anonymous_id\":{\"limit\":2}}}";
    CHECK_EQ_INT(ps_space_settings_set(ts.sp, settings, strlen(settings), NULL), PS_OK);
    ps_ingest_opts io = {0};
    CHECK_EQ_INT(ps_ingest_begin(ts.sp, &io, &in), PS_OK);
    for (int k = 0; k < 2; k++)
        CHECK_EQ_INT(ps_ingest_prepared(in, p[k]), PS_OK);
    CHECK_EQ_INT(ps_ingest_commit(in), PS_OK);
    uint64_t a = tspace_find(&ts, "user_id:b1"), b = tspace_find(&ts, "anonymous_id:anon-b1");
    CHECK(a != 0);
    CHECK_EQ_INT(a, b);
    CHECK(tspace_find(&ts, "user_id:b0") != 0);
    /* the hash computed ahead: the same identifier, the same hash; another collection or
     * value, another */
    uint64_t h = ps_store_ident_hash(PS_USERS, "user_id", "b1", 2);
    CHECK(h == ps_store_ident_hash(PS_USERS, "user_id", "b1", 2));
    CHECK(h != ps_store_ident_hash(PS_ACCOUNTS, "user_id", "b1", 2));
    CHECK(h != ps_store_ident_hash(PS_USERS, "user_id", "b2", 2));
end:
    ps_ingest_end(in);
    ps_prepared_free(p[0]);
    ps_prepared_free(p[1]);
    free(buf);
    tspace_close(&ts);
}

/* A prepared batch waits for the writer and counts against the space's queue at
 * ps_prepared_bytes(): that is its body, an arena sized from the body, the compressed log
 * values and the event array, the last two trimmed to fit. Before, the arena's doubling
 * chunks and the untrimmed buffers made it 4.7 times this body; now it is 4.0. */
static void a_prepared_batch_counts_what_it_holds(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    ps_prepared *p = NULL;
    ps_buf b;
    ps_buf_init(&b);
    ps_buf_puts(&b, "{\"batch\":[");
    for (int i = 0; i < 100; i++)
        ps_buf_printf(&b,
                      "%s{\"type\":\"%s\",\"userId\":\"u%d\",\"anonymousId\":\"a-%d-%08x\","
                      "\"messageId\":\"m-%d\",\"event\":\"Order Completed\","
                      "\"traits\":{\"email\":\"u%d@example.com\",\"plan\":\"pro\","
                      "\"logins\":%d},\"properties\":{\"revenue\":%d.5,\"currency\":\"EUR\","
                      "\"items\":[{\"sku\":\"s%d\",\"qty\":2}]},\"context\":{\"ip\":"
                      "\"10.0.%d.%d\",\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64) "
                      "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\","
                      "\"page\":{\"path\":\"/checkout/%d\",\"url\":\"https://shop.example/"
                      "checkout/%d\",\"title\":\"Checkout\"},\"library\":{\"name\":"
                      "\"analytics.js\",\"version\":\"4.1.0\"}},\"timestamp\":"
                      "\"2023-11-14T22:13:%02d.000Z\"}",
                      i ? "," : "", i % 2 ? "track" : "identify", i % 37, i, (unsigned)i * 2654435761u,
                      i, i % 37, i, i * 3, i, i % 200, i % 250, i, i, i % 60);
    ps_buf_puts(&b, "]}");
    size_t len = b.len;
    uint8_t *json = ps_xmalloc(len);
    memcpy(json, b.ptr, len);
    ps_prepare_opts po = {.source_id = "src", .now_ms = 1700000000000LL, .require_batch = true};
    ps_prepare_refusal refusal;
    CHECK_EQ_INT(ps_ingest_prepare(ts.sp, &po, json, len, &p, &refusal), PS_OK);
    CHECK_EQ_INT(ps_prepared_accepted(p), 100);
    size_t logged = 0;
    for (size_t i = 0; i < ps_prepared_logged(p); i++)
        logged += ps_prepared_log_value(p, i).len;
    /* the arena: a chunk of 1.5 times the body, then quarters of that; these events take 1.75 */
    size_t most = 4096 /* the payload's own struct and chunk headers */ + len + 2 * len +
                  (logged + 1) + 100 * sizeof(ps_event);
    CHECK(ps_prepared_bytes(p) <= most);
    CHECK(ps_prepared_bytes(p) > len + logged); /* and it does count them */
end:
    ps_prepared_free(p);
    ps_buf_clear(&b);
    tspace_close(&ts);
}

/* While a server's writer runs, the store's commits write its pages back in steps before
 * LMDB's sync (src/storage/writeback.c): the steps show that LMDB's fdatasync call reached
 * the store's own. Once the writer stops, commits sync in one go again. */
static void a_writer_paces_the_store_commits(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    const char *body = "{\"batch\":[{\"type\":\"identify\",\"userId\":\"w1\",\"messageId\":\"w-a\"}]}";
    size_t len = strlen(body);
    uint8_t *json = ps_xmalloc(len);
    memcpy(json, body, len);
    ps_prepare_opts po = {.source_id = "src", .now_ms = 1700000000000LL, .require_batch = true};
    ps_prepare_refusal refusal;
    ps_prepared *p = NULL;
    CHECK_EQ_INT(ps_ingest_prepare(ts.sp, &po, json, len, &p, &refusal), PS_OK);
    uint64_t before = ps_store_writeback_steps();
    ps_writer *w = NULL;
    ps_writer_opts wo = {0};
    CHECK_EQ_INT(ps_writer_start(ts.sp, &wo, &w), PS_OK);
    ps_status got = (ps_status)1; /* not a status: the callback has not run */
    CHECK_EQ_INT(ps_writer_submit(w, p, done_cb, &got), PS_OK);
    p = NULL;
    for (int i = 0; i < 10000 && got == (ps_status)1; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    CHECK_EQ_INT(got, PS_OK);
    CHECK(ps_writer_await(w, 10000));
    ps_writer_free(w);
    CHECK(tspace_find(&ts, "user_id:w1") != 0);
    uint64_t during = ps_store_writeback_steps();
    CHECK(during > before);
    CHECK_EQ_INT(tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"w2\",\"messageId\":\"w-b\"}"),
                 PS_OK);
    CHECK(tspace_find(&ts, "user_id:w2") != 0);
    CHECK_EQ_INT(ps_store_writeback_steps(), during);
end:
    ps_prepared_free(p);
    tspace_close(&ts);
}

/* Replicated spaces: a payload's messages travel as one framed stream record, keyed by the
 * lone messageId or a digest; applying it resolves every message, a record cut short applies
 * what it holds whole and counts the rest unreadable, and the stream mark commits with it. */
static void stream_records_apply_and_mark(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    ps_prepared *p = NULL, *one = NULL;
    ps_ingest *in = NULL;
    ps_buf rec;
    ps_buf_init(&rec);
    const char *body = "{\"batch\":[{\"type\":\"identify\",\"userId\":\"s1\",\"messageId\":\"m1\"},"
                       "{\"type\":\"identify\",\"userId\":\"s2\",\"messageId\":\"m2\"}]}";
    size_t len = strlen(body);
    uint8_t *json = ps_xmalloc(len);
    memcpy(json, body, len);
    ps_prepare_opts po = {.source_id = "src",
                          .now_ms = 1700000000000LL,
                          .require_batch = true,
                          .portable_log = true};
    ps_prepare_refusal refusal;
    CHECK_EQ_INT(ps_ingest_prepare(ts.sp, &po, json, len, &p, &refusal), PS_OK);
    size_t i = 0;
    char id[PS_STREAM_ID_BUF];
    ps_prepared_stream_record(p, &i, &rec, id);
    CHECK_EQ_INT(i, 2);
    CHECK(strncmp(id, "batch-2-", 8) == 0);
    CHECK(ps_prepared_log_value(p, 0).ptr[2] != 2); /* no dictionary: any node decodes it */
    uint64_t seq = 99;
    CHECK_EQ_INT(ps_ingest_stream_applied(ts.sp, &seq), PS_ENOTFOUND); /* not replicated */
    ps_ingest_opts io = {.keep_received_at = true};
    CHECK_EQ_INT(ps_ingest_begin(ts.sp, &io, &in), PS_OK);
    size_t count = 0;
    /* cut inside the second message: the first applies, the rest is unreadable */
    CHECK_EQ_INT(ps_ingest_stream_messages(in, (ps_slice){rec.ptr, rec.len - 3}, &count), PS_OK);
    CHECK_EQ_INT(count, 1);
    CHECK_EQ_INT(ps_ingest_stream_mark(in, 1), PS_OK);
    CHECK_EQ_INT(ps_ingest_commit(in), PS_OK);
    CHECK(tspace_find(&ts, "user_id:s1") != 0);
    CHECK_EQ_INT(tspace_find(&ts, "user_id:s2"), 0);
    CHECK_EQ_INT(ps_ingest_stats_get(in)->dropped[PS_DROP_INVALID_JSON], 1);
    /* the whole record: m1 again is a duplicate, m2 is new */
    CHECK_EQ_INT(ps_ingest_stream_messages(in, (ps_slice){rec.ptr, rec.len}, &count), PS_OK);
    CHECK_EQ_INT(count, 2);
    CHECK_EQ_INT(ps_ingest_stream_mark(in, 2), PS_OK);
    CHECK_EQ_INT(ps_ingest_commit(in), PS_OK);
    CHECK(tspace_find(&ts, "user_id:s2") != 0);
    CHECK_EQ_INT(ps_ingest_stats_get(in)->duplicates, 1);
    CHECK_EQ_INT(ps_ingest_stream_applied(ts.sp, &seq), PS_OK);
    CHECK_EQ_INT(seq, 2);
    /* a lone message's record is keyed by its messageId */
    body = "{\"type\":\"identify\",\"userId\":\"s3\",\"messageId\":\"lone-1\"}";
    len = strlen(body);
    json = ps_xmalloc(len);
    memcpy(json, body, len);
    po.require_batch = false;
    CHECK_EQ_INT(ps_ingest_prepare(ts.sp, &po, json, len, &one, &refusal), PS_OK);
    i = 0;
    ps_buf_reset(&rec);
    ps_prepared_stream_record(one, &i, &rec, id);
    CHECK_EQ_INT(i, 1);
    CHECK(strcmp(id, "lone-1") == 0);
end:
    ps_ingest_end(in);
    ps_buf_clear(&rec);
    ps_prepared_free(p);
    ps_prepared_free(one);
    tspace_close(&ts);
}

static const test_case tests[] = {
    {"append_scan_torn_tail_and_restart", append_scan_torn_tail_and_restart},
    {"a_damaged_record_is_skipped", a_damaged_record_is_skipped},
    {"recovery_applies_what_was_acknowledged", recovery_applies_what_was_acknowledged},
    {"stream_records_apply_and_mark", stream_records_apply_and_mark},
    {"a_writer_paces_the_store_commits", a_writer_paces_the_store_commits},
    {"a_prepared_batch_counts_what_it_holds", a_prepared_batch_counts_what_it_holds},
    {"a_borrowed_body_is_the_payloads_own", a_borrowed_body_is_the_payloads_own},
};

TEST_MAIN(tests)
