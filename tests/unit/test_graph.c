/* SPDX-License-Identifier: MIT */
/* graph: the priority example and the worked resolution examples as tests, plus limits over
 * windows, grandfathering, caps, trait precedence across merges (the later write wins) and
 * messageId dedup. Events go through the real ingest path. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ps/graph.h"
#include "ps/graphdb.h"
#include "ps/msglog.h"
#include "ps/profile.h"
#include "ps/records.h"
#include "ps/space.h"
#include "tspace.h"

#define RCV ",\"receivedAt\":\"2024-06-01T00:00:00Z\""

static void priority_example_7_2(void)
{
    tspace ts;
    tspace_open(&ts, "{\"identifiers\":{\"user_id\":{\"limit\":1,\"priority\":1},"
                     "\"email\":{\"limit\":5,\"priority\":2},"
                     "\"anonymous_id\":{\"limit\":5,\"priority\":3}}}");
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"abc123\",\"traits\":{\"email\":"
                       "\"jane@example1.com\"},\"messageId\":\"m1\"" RCV "}");
    uint64_t p = tspace_find(&ts, "user_id:abc123");
    CHECK(p != 0);
    CHECK_EQ_INT(tspace_find(&ts, "email:jane@example1.com"), p);
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"abc456\",\"traits\":{\"email\":"
                       "\"jane@example1.com\"},\"messageId\":\"m2\"" RCV "}");
    uint64_t q = tspace_find(&ts, "user_id:abc456");
    CHECK(q != 0 && q != p);                                      /* a new profile */
    CHECK_EQ_INT(tspace_find(&ts, "email:jane@example1.com"), p); /* P keeps the email */
    CHECK_EQ_INT(tspace_find(&ts, "user_id:abc123"), p);
    CHECK_EQ_INT(tspace_audit_count(&ts, PS_AUDIT_VIOLATION, PS_VIOL_VALUE_LIMIT), 1);
end:
    tspace_close(&ts);
}

static void e1_anonymous_to_known(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    tspace_ingest(&ts,
                  "{\"type\":\"page\",\"anonymousId\":\"anon_123\",\"messageId\":\"1\"" RCV "}");
    uint64_t p = tspace_find(&ts, "anonymous_id:anon_123");
    CHECK(p != 0);
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"anon_123\","
                       "\"messageId\":\"2\"" RCV "}");
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"Signed Up\",\"userId\":\"use_123\","
                       "\"anonymousId\":\"anon_123\",\"messageId\":\"3\"" RCV "}");
    CHECK_EQ_INT(tspace_find(&ts, "user_id:use_123"), p);
    CHECK_EQ_INT(tspace_audit_count(&ts, PS_AUDIT_CREATE, 0), 1);
end:
    tspace_close(&ts);
}

static void e2_cross_device(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"App Opened\",\"anonymousId\":\"anon_123\","
                       "\"context\":{\"device\":{\"id\":\"ios_abc123\",\"type\":\"ios\"}},"
                       "\"messageId\":\"1\"" RCV "}");
    uint64_t p = tspace_find(&ts, "ios.id:ios_abc123");
    CHECK(p != 0);
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:anon_123"), p);
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"abc123def\",\"anonymousId\":"
                       "\"anon_123\",\"context\":{\"device\":{\"id\":\"ios_abc123\",\"type\":"
                       "\"ios\"}},\"messageId\":\"2\"" RCV "}");
    CHECK_EQ_INT(tspace_find(&ts, "user_id:abc123def"), p);
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"abc123def\",\"anonymousId\":"
                       "\"anon_456\",\"context\":{\"device\":{\"id\":\"and_1a2b3c4d\",\"type\":"
                       "\"android\"}},\"messageId\":\"3\"" RCV "}");
    CHECK_EQ_INT(tspace_find(&ts, "android.id:and_1a2b3c4d"), p);
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:anon_456"), p);
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"abc123def\",\"anonymousId\":"
                       "\"anon_789\",\"context\":{\"device\":{\"id\":\"and_1a2b3c4d\",\"type\":"
                       "\"android\"}},\"messageId\":\"4\"" RCV "}");
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:anon_789"), p);
    CHECK_EQ_INT(tspace_audit_count(&ts, PS_AUDIT_CREATE, 0), 1);
end:
    tspace_close(&ts);
}

static void e3_merge_oldest_survives(void)
{
    tspace ts;
    char s1[32], s2[32], merged[32];
    tspace_open(&ts, NULL);
    tspace_ingest(&ts, "{\"type\":\"page\",\"anonymousId\":\"5285bc35-05ef-4d21\",\"messageId\":"
                       "\"event_1\",\"timestamp\":\"2022-05-02T14:01:00Z\"}");
    tspace_ingest(&ts, "{\"type\":\"identify\",\"anonymousId\":\"5285bc35-05ef-4d21\",\"traits\":"
                       "{\"email\":\"jane.kim@segment.com\"},\"messageId\":\"event_2\","
                       "\"timestamp\":\"2022-05-02T14:01:47Z\"}");
    tspace_segment_id(&ts, "anonymous_id:5285bc35-05ef-4d21", s1);
    tspace_ingest(&ts, "{\"type\":\"page\",\"anonymousId\":\"b50e18a5-1b8d-451c\",\"messageId\":"
                       "\"event_3\",\"timestamp\":\"2022-06-22T10:47:15Z\"}");
    tspace_segment_id(&ts, "anonymous_id:b50e18a5-1b8d-451c", s2);
    CHECK(strcmp(s1, s2) != 0);
    tspace_ingest(&ts, "{\"type\":\"identify\",\"anonymousId\":\"b50e18a5-1b8d-451c\",\"traits\":"
                       "{\"email\":\"jane.kim@segment.com\"},\"messageId\":\"event_4\","
                       "\"timestamp\":\"2022-06-22T10:48:00Z\"}");
    tspace_segment_id(&ts, "anonymous_id:b50e18a5-1b8d-451c", merged);
    CHECK_EQ_STR(merged, s1);           /* profile_2 merged into the older profile_1 */
    tspace_segment_id(&ts, s2, merged); /* the merged-away id resolves to the survivor */
    CHECK_EQ_STR(merged, s1);
    CHECK_EQ_INT(tspace_audit_count(&ts, PS_AUDIT_MERGE, 0), 1);
    /* the merge adds no mapping rows: 3 identifiers, 3 mapping rows */
    CHECK_EQ_INT(tspace_audit_count(&ts, PS_AUDIT_MAPPING, 0), 3);
end:
    tspace_close(&ts);
}

static void e4_merge_protection(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"u1\",\"anonymousId\":\"a1\","
                       "\"messageId\":\"1\"" RCV "}");
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"u2\",\"anonymousId\":\"a1\","
                       "\"messageId\":\"2\"" RCV "}");
    uint64_t p1 = tspace_find(&ts, "user_id:u1"), p2 = tspace_find(&ts, "user_id:u2");
    CHECK(p1 && p2 && p1 != p2);
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:a1"), p1);
end:
    tspace_close(&ts);
}

static void merge_conflict_across_two_profiles(void)
{
    /* an event joining two profiles that each hold a different user_id must not merge them,
     * even though the event itself carries no user_id (a limit counts the union of the
     * matched profiles' values) */
    tspace ts;
    tspace_open(&ts, NULL);
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"u1\",\"anonymousId\":\"a1\","
                       "\"messageId\":\"1\"" RCV "}");
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"u2\",\"traits\":{\"email\":"
                       "\"e@x.io\"},\"messageId\":\"2\"" RCV "}");
    tspace_ingest(&ts, "{\"type\":\"identify\",\"anonymousId\":\"a1\",\"traits\":{\"email\":"
                       "\"e@x.io\"},\"messageId\":\"3\"" RCV "}");
    uint64_t p1 = tspace_find(&ts, "user_id:u1"), p2 = tspace_find(&ts, "user_id:u2");
    CHECK(p1 && p2 && p1 != p2);
    CHECK_EQ_INT(tspace_audit_count(&ts, PS_AUDIT_MERGE, 0), 0);
    /* anonymous_id (rank 3+) was demoted; the event resolved through email to p2 */
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:a1"), p1);
end:
    tspace_close(&ts);
}

static void weekly_window_and_grandfathering(void)
{
    tspace ts;
    tspace_open(&ts, "{\"identifiers\":{\"anonymous_id\":{\"limit\":2,\"frequency\":\"weekly\"}}}");
    const char *days[] = {"2024-01-01", "2024-01-02", "2024-01-03", "2024-01-20"};
    char line[512];
    for (int i = 0; i < 4; i++) {
        snprintf(line, sizeof line,
                 "{\"type\":\"identify\",\"userId\":\"u\",\"anonymousId\":\"a%d\",\"messageId\":"
                 "\"m%d\",\"timestamp\":\"%sT00:00:00Z\"}",
                 i, i, days[i]);
        tspace_ingest(&ts, line);
    }
    uint64_t p = tspace_find(&ts, "user_id:u");
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:a0"), p);
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:a1"), p);
    /* a2 would be the third value within a week: demoted, becomes its own profile? no:
     * anonymous_id is demoted from the event, which still resolves to p by user_id */
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:a2"), 0);
    /* two weeks later the window has slid: a3 is accepted */
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:a3"), p);
    CHECK_EQ_INT(tspace_audit_count(&ts, PS_AUDIT_VIOLATION, PS_VIOL_TIME_LIMIT), 1);
    /* lowering the limit later: the profile keeps its values and still matches */
    const char *lower = "{\"identifiers\":{\"anonymous_id\":{\"limit\":1}}}";
    CHECK(ps_space_settings_set(ts.sp, lower, strlen(lower), NULL) == PS_OK);
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"anonymousId\":"
                       "\"a0\",\"messageId\":\"m9\",\"timestamp\":\"2024-02-01T00:00:00Z\"}");
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:a0"), p);
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"anonymousId\":"
                       "\"new\",\"messageId\":\"m10\",\"timestamp\":\"2024-02-01T00:00:00Z\"}");
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:new"), 0);
end:
    tspace_close(&ts);
}

static void new_profile_keeps_first_n(void)
{
    /* a new profile takes the first `limit` values of a type in order */
    tspace ts;
    tspace_open(&ts, "{\"identifiers\":{\"phone\":{\"limit\":1}}}");
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a\",\"context\":{"
                       "\"externalIds\":[{\"id\":\"1\",\"type\":\"phone\",\"collection\":\"users\","
                       "\"encoding\":\"none\"},{\"id\":\"2\",\"type\":\"phone\",\"collection\":"
                       "\"users\",\"encoding\":\"none\"}]},\"messageId\":\"m\"" RCV "}");
    uint64_t p = tspace_find(&ts, "anonymous_id:a");
    CHECK(p != 0);
    CHECK_EQ_INT(tspace_find(&ts, "phone:1"), p);
    CHECK_EQ_INT(tspace_find(&ts, "phone:2"), 0);
end:
    tspace_close(&ts);
}

static void blocked_values_do_not_resolve(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    /* a hard-coded QA id would otherwise merge everyone */
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"0\",\"anonymousId\":\"a1\","
                       "\"messageId\":\"1\"" RCV "}");
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"0\",\"anonymousId\":\"a2\","
                       "\"messageId\":\"2\"" RCV "}");
    CHECK(tspace_find(&ts, "anonymous_id:a1") != tspace_find(&ts, "anonymous_id:a2"));
    CHECK_EQ_INT(tspace_find(&ts, "user_id:0"), 0);
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"null\",\"messageId\":\"3\"" RCV "}");
    CHECK_EQ_INT(tspace_audit_count(&ts, PS_AUDIT_VIOLATION, PS_VIOL_NO_IDENTIFIERS), 1);
    CHECK_EQ_INT(tspace_audit_count(&ts, PS_AUDIT_VIOLATION, PS_VIOL_BLOCKED), 3);
    CHECK_EQ_INT(ps_ingest_stats_get(ts.in)->unresolved, 1);
end:
    tspace_close(&ts);
}

static void merge_and_mapping_caps(void)
{
    tspace ts;
    char line[512];
    tspace_open(&ts, "{\"merge_limit\":2,\"mapping_limit\":4}");
    /* three anonymous profiles, then an event joining each to u: two merges allowed */
    for (int i = 0; i < 4; i++) {
        snprintf(line, sizeof line,
                 "{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a%d\",\"messageId\":"
                 "\"c%d\"" RCV "}",
                 i, i);
        tspace_ingest(&ts, line);
    }
    for (int i = 1; i < 4; i++) {
        snprintf(line, sizeof line,
                 "{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a0\",\"userId\":\"u\","
                 "\"context\":{\"traits\":{\"email\":\"e%d@x\"}},\"messageId\":\"j%d\"" RCV "}",
                 i, i);
        tspace_ingest(&ts, line);
        snprintf(line, sizeof line,
                 "{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a%d\",\"userId\":\"u\","
                 "\"messageId\":\"k%d\"" RCV "}",
                 i, i);
        tspace_ingest(&ts, line);
    }
    uint64_t p = tspace_find(&ts, "user_id:u");
    CHECK_EQ_INT(tspace_find(&ts, "anonymous_id:a0"), p);
    CHECK_EQ_INT(tspace_audit_count(&ts, PS_AUDIT_MERGE, 0), 2);
    CHECK(tspace_audit_count(&ts, PS_AUDIT_VIOLATION, PS_VIOL_MERGE_LIMIT) >= 1);
    CHECK(tspace_audit_count(&ts, PS_AUDIT_VIOLATION, PS_VIOL_MAPPING_LIMIT) >= 1);
    CHECK(tspace_find(&ts, "anonymous_id:a3") != p);
end:
    tspace_close(&ts);
}

static ps_status render(tspace *ts, const char *ident, ps_buf *out)
{
    ps_txn *t;
    const ps_rules *r;
    ps_profile p;
    ps_status st = ps_txn_begin(ps_space_store(ts->sp), false, &t);
    if (st != PS_OK)
        return st;
    if ((st = ps_space_rules(ts->sp, t, &r)) == PS_OK &&
        (st = ps_profile_find(t, r, -1, ident, strlen(ident), &p)) == PS_OK) {
        ps_render_opts o = {.event_limit = 5, .links = true};
        st = ps_profile_render(t, &p, &o, out);
    }
    ps_txn_abort(t);
    return st;
}

static void traits_later_write_wins_across_merge(void)
{
    tspace ts;
    ps_buf out;
    ps_buf_init(&out);
    tspace_open(&ts, NULL);
    tspace_ingest(&ts, "{\"type\":\"identify\",\"anonymousId\":\"a\",\"traits\":{\"plan\":\"free\","
                       "\"city\":\"Oslo\",\"temp\":1},\"messageId\":\"1\"" RCV "}");
    tspace_ingest(&ts, "{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{\"plan\":\"pro\"},"
                       "\"messageId\":\"2\"" RCV "}");
    tspace_ingest(&ts, "{\"type\":\"identify\",\"anonymousId\":\"a\",\"traits\":{\"city\":"
                       "\"Rome\",\"temp\":null},\"messageId\":\"3\"" RCV "}");
    /* join: the older (anonymous) profile survives; per key the later write wins */
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a\",\"userId\":"
                       "\"u\",\"messageId\":\"4\"" RCV "}");
    CHECK_EQ_INT(tspace_find(&ts, "user_id:u"), tspace_find(&ts, "anonymous_id:a"));
    CHECK(render(&ts, "user_id:u", &out) == PS_OK);
    CHECK(strstr((const char *)out.ptr, "\"traits\":{\"city\":\"Rome\",\"plan\":\"pro\"}") != NULL);
    /* group calls: account traits and links both ways */
    ps_buf_reset(&out);
    tspace_ingest(&ts, "{\"type\":\"group\",\"userId\":\"u\",\"groupId\":\"g1\",\"traits\":{"
                       "\"name\":\"Acme\"},\"messageId\":\"5\"" RCV "}");
    CHECK(render(&ts, "group_id:g1", &out) == PS_OK);
    CHECK(strstr((const char *)out.ptr, "\"collection\":\"accounts\"") != NULL);
    CHECK(strstr((const char *)out.ptr, "\"traits\":{\"name\":\"Acme\"}") != NULL);
    CHECK(strstr((const char *)out.ptr, "\"to_collection\":\"users\"") != NULL);
    ps_buf_reset(&out);
    CHECK(render(&ts, "user_id:u", &out) == PS_OK);
    CHECK(strstr((const char *)out.ptr, "\"to_collection\":\"accounts\"") != NULL);
    CHECK(strstr((const char *)out.ptr, "\"message_id\":\"4\"") != NULL); /* the event */
end:
    ps_buf_clear(&out);
    tspace_close(&ts);
}

static void dedup_on_message_id(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"messageId\":\"d1\","
                       "\"receivedAt\":\"2024-01-01T00:00:00Z\"}");
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"messageId\":\"d1\","
                       "\"receivedAt\":\"2024-01-01T10:00:00Z\"}");
    CHECK_EQ_INT(ps_ingest_stats_get(ts.in)->duplicates, 1);
    /* outside the 24 h window the same id is accepted again */
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"messageId\":\"d1\","
                       "\"receivedAt\":\"2024-01-03T00:00:00Z\"}");
    CHECK_EQ_INT(ps_ingest_stats_get(ts.in)->duplicates, 1);
    CHECK_EQ_INT(ps_ingest_stats_get(ts.in)->accepted, 2);
end:
    tspace_close(&ts);
}

static uint64_t dedup_rows(tspace *ts)
{
    ps_txn *t;
    ps_store_counts n = {0};
    if (ps_txn_begin(ps_space_store(ts->sp), false, &t) != PS_OK)
        return 999;
    ps_store_counts_get(t, &n);
    ps_txn_abort(t);
    return n.dedups;
}

static void dedup_rows_expire_through_the_log(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    static const char *const lines[] = {
        "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"messageId\":\"d1\","
        "\"receivedAt\":\"2024-01-01T00:00:00Z\"}",
        "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"messageId\":\"d2\","
        "\"receivedAt\":\"2024-01-01T01:00:00Z\"}",
        "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"messageId\":\"d3\","
        "\"receivedAt\":\"2024-01-05T00:00:00Z\"}",
        /* d1 again, outside the window: accepted, its row rewritten */
        "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"messageId\":\"d1\","
        "\"receivedAt\":\"2024-01-05T06:00:00Z\"}",
        "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"messageId\":\"d4\","
        "\"receivedAt\":\"2024-01-05T12:00:00Z\"}",
    };
    for (size_t i = 0; i < 3; i++)
        tspace_ingest(&ts, lines[i]);
    CHECK_EQ_INT(dedup_rows(&ts), 1); /* d1 and d2 are more than 24 h older than d3 */
    tspace_ingest(&ts, lines[3]);
    tspace_ingest(&ts, lines[4]);
    CHECK_EQ_INT(ps_ingest_stats_get(ts.in)->duplicates, 0);
    CHECK_EQ_INT(dedup_rows(&ts), 3); /* d3, d1 (again) and d4 */
    /* within the window of the second d1, it is a duplicate */
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\","
                       "\"messageId\":\"d1\",\"receivedAt\":\"2024-01-05T20:00:00Z\"}");
    CHECK_EQ_INT(ps_ingest_stats_get(ts.in)->duplicates, 1);
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\","
                       "\"messageId\":\"d5\",\"receivedAt\":\"2024-01-09T00:00:00Z\"}");
    CHECK_EQ_INT(dedup_rows(&ts), 1);
end:
    tspace_close(&ts);
}

static size_t event_count(tspace *ts, const char *ident)
{
    ps_txn *t;
    const ps_rules *r;
    ps_profile p;
    uint64_t *members = NULL;
    size_t n = 0, count = 0;
    ps_event_ref refs[16];
    if (ps_txn_begin(ps_space_store(ts->sp), false, &t) != PS_OK)
        return 999;
    if (ps_space_rules(ts->sp, t, &r) == PS_OK &&
        ps_profile_find(t, r, -1, ident, strlen(ident), &p) == PS_OK &&
        ps_profile_members(t, p.seq, &members, &n) == PS_OK)
        ps_profile_events(t, members, n, &(ps_event_query){INT64_MIN, INT64_MAX, .limit = 16}, refs,
                          &count);
    free(members);
    ps_txn_abort(t);
    return count;
}

static void log_keeps_old_events(void)
{
    /* format 2: the log is the source of truth and keeps every message; the setting that
     * once purged events is accepted and has no effect */
    tspace ts;
    tspace_open(&ts, "{\"event_retention_days\":2}");
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"A\",\"userId\":\"u\",\"messageId\":\"1\","
                       "\"receivedAt\":\"2024-01-01T00:00:00Z\"}");
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"B\",\"userId\":\"u\",\"messageId\":\"2\","
                       "\"receivedAt\":\"2024-01-02T00:00:00Z\"}");
    CHECK_EQ_INT(event_count(&ts, "user_id:u"), 2);
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"C\",\"userId\":\"u\",\"messageId\":\"3\","
                       "\"receivedAt\":\"2024-01-03T12:00:00Z\"}");
    tspace_ingest(&ts, "{\"type\":\"track\",\"event\":\"D\",\"userId\":\"u\",\"messageId\":\"4\","
                       "\"receivedAt\":\"2024-02-01T00:00:00Z\"}");
    CHECK_EQ_INT(event_count(&ts, "user_id:u"), 4);
    CHECK(tspace_find(&ts, "user_id:u") != 0);
end:
    tspace_close(&ts);
}

static void segment_ids_are_deterministic(void)
{
    char a[PS_SEGMENT_ID_LEN + 1], b[PS_SEGMENT_ID_LEN + 1], c[PS_SEGMENT_ID_LEN + 1];
    ps_graph_segment_id("space", PS_USERS, 1, a);
    ps_graph_segment_id("space", PS_USERS, 1, b);
    ps_graph_segment_id("space", PS_USERS, 2, c);
    CHECK_EQ_STR(a, b);
    CHECK(strcmp(a, c) != 0);
    CHECK_EQ_INT(strlen(a), 31);
    CHECK(strncmp(a, "use_", 4) == 0);
    ps_graph_segment_id("space", PS_ACCOUNTS, 1, c);
    CHECK(strncmp(c, "acc_", 4) == 0);
end:;
}

/* The write path's identifier cache (storage) must never answer with a row that an aborted
 * transaction wrote or that a delete removed. */
static void identifier_cache_follows_commits_and_aborts(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    ps_store *s = ps_space_store(ts.sp);
    ps_txn *t = NULL;
    ps_mapping m = {.profile = 7}, got;
    CHECK_EQ_INT(ps_txn_begin(s, true, &t), PS_OK);
    CHECK_EQ_INT(ps_store_ident_put(t, 0, "email", "a@x", 3, &m), PS_OK);
    CHECK_EQ_INT(ps_store_ident_get(t, 0, "email", "a@x", 3, &got), PS_OK);
    CHECK_EQ_INT(got.profile, 7);
    ps_txn_abort(t);
    CHECK_EQ_INT(ps_txn_begin(s, true, &t), PS_OK);
    CHECK_EQ_INT(ps_store_ident_get(t, 0, "email", "a@x", 3, &got), PS_ENOTFOUND);
    CHECK_EQ_INT(ps_store_ident_put(t, 0, "email", "b@x", 3, &m), PS_OK);
    CHECK_EQ_INT(ps_txn_commit(t), PS_OK);
    CHECK_EQ_INT(ps_txn_begin(s, true, &t), PS_OK);
    CHECK_EQ_INT(ps_store_ident_get(t, 0, "email", "b@x", 3, &got), PS_OK);
    CHECK_EQ_INT(got.profile, 7);
    m.profile = 9; /* replaced in place, then deleted */
    CHECK_EQ_INT(ps_store_ident_put(t, 0, "email", "b@x", 3, &m), PS_OK);
    CHECK_EQ_INT(ps_store_ident_get(t, 0, "email", "b@x", 3, &got), PS_OK);
    CHECK_EQ_INT(got.profile, 9);
    CHECK_EQ_INT(ps_store_ident_del(t, 0, "email", "b@x", 3), PS_OK);
    CHECK_EQ_INT(ps_store_ident_get(t, 0, "email", "b@x", 3, &got), PS_ENOTFOUND);
    CHECK_EQ_INT(ps_txn_commit(t), PS_OK);
    t = NULL;
    /* a read transaction sees the committed state */
    CHECK_EQ_INT(ps_txn_begin(s, false, &t), PS_OK);
    CHECK_EQ_INT(ps_store_ident_get(t, 0, "email", "b@x", 3, &got), PS_ENOTFOUND);
    ps_txn_abort(t);
    t = NULL;
end:
    if (t)
        ps_txn_abort(t);
    tspace_close(&ts);
}

typedef struct audit_seen {
    uint64_t count, last_seq;
    bool ordered, intact;
    bool scrubbed; /* rows 3, 6, ... 600 have been scrubbed */
} audit_seen;

static bool audit_check(void *ud, const ps_audit_rec *r)
{
    audit_seen *a = ud;
    char want[16];
    snprintf(want, sizeof want, "v%llu", (unsigned long long)r->seq);
    bool scrubbed = a->scrubbed && r->seq % 3 == 0 && r->seq <= 600;
    a->ordered = a->ordered && r->seq > a->last_seq;
    a->intact = a->intact && (scrubbed ? r->value.len == 0
                                       : r->value.len == strlen(want) &&
                                             memcmp(r->value.ptr, want, r->value.len) == 0);
    a->last_seq = r->seq;
    a->count++;
    return true;
}

static bool scrub_thirds(void *ud, const ps_audit_rec *r)
{
    (void)ud;
    return r->seq % 3 == 0;
}

static ps_status append_audit(ps_txn *t, size_t n, uint64_t *log_seq)
{
    ps_status st = PS_OK;
    char pad[200], value[16];
    memset(pad, 'x', sizeof pad); /* rows of about 250 bytes: the table grows levels */
    for (size_t i = 0; i < n && st == PS_OK; i++) {
        uint64_t seq = ps_txn_peek(t, PS_CTR_AUDIT);
        snprintf(value, sizeof value, "v%llu", (unsigned long long)seq);
        ps_audit_rec a = {.kind = PS_AUDIT_MAPPING,
                          .message_id = {(const uint8_t *)pad, sizeof pad},
                          .type = PS_SLICE_STR("email"),
                          .value = PS_SLICE_STR(value)};
        st = ps_store_audit_append(t, &a);
        /* an event row and a log record between audit rows: each table its own end */
        ps_event_rec e = {.seq = seq, .type = PS_MSG_TRACK, .profile = 1, .name = a.type};
        if (st == PS_OK)
            st = ps_store_event_put(t, &e);
        if (st == PS_OK)
            st = ps_store_log_put(t, ++*log_seq, (ps_slice){(const uint8_t *)pad, sizeof pad});
    }
    return st;
}

/* Audit rows are appended through a cursor the write transaction keeps at the table's end; it
 * must stay right while rows are rewritten in place (erasure), pages split under it, and the
 * table is emptied (a rebuild), all in one transaction. */
static void appends_survive_rewrites_and_drops(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    ps_txn *t = NULL;
    size_t scrubbed = 0;
    uint64_t log_seq = 0; /* the log is kept by a rebuild: its numbers go on */
    CHECK_EQ_INT(ps_txn_begin(ps_space_store(ts.sp), true, &t), PS_OK);
    CHECK_EQ_INT(append_audit(t, 600, &log_seq), PS_OK);
    CHECK_EQ_INT(ps_store_audit_scrub(t, scrub_thirds, NULL, &scrubbed), PS_OK);
    CHECK_EQ_INT(scrubbed, 200);
    CHECK_EQ_INT(append_audit(t, 600, &log_seq), PS_OK);
    audit_seen a = {0, 0, true, true, true};
    CHECK_EQ_INT(ps_store_audit_scan(t, 0, audit_check, &a), PS_OK);
    CHECK_EQ_INT(a.count, 1200);
    CHECK(a.ordered && a.intact);
    ps_store_counts c;
    CHECK_EQ_INT(ps_store_counts_get(t, &c), PS_OK);
    CHECK_EQ_INT(c.audits, 1200);
    CHECK_EQ_INT(c.events, 1200);
    CHECK_EQ_INT(c.logs, 1200);
    CHECK_EQ_INT(ps_store_clear_derived(t), PS_OK);
    CHECK_EQ_INT(append_audit(t, 5, &log_seq), PS_OK);
    CHECK_EQ_INT(ps_txn_commit(t), PS_OK);
    t = NULL;
    CHECK_EQ_INT(ps_txn_begin(ps_space_store(ts.sp), false, &t), PS_OK);
    a = (audit_seen){0, 0, true, true, false};
    CHECK_EQ_INT(ps_store_audit_scan(t, 0, audit_check, &a), PS_OK);
    CHECK_EQ_INT(a.count, 5);
    CHECK_EQ_INT(a.last_seq, 5);
    CHECK(a.ordered && a.intact);
    CHECK_EQ_INT(ps_store_counts_get(t, &c), PS_OK);
    CHECK_EQ_INT(c.audits, 5);
    CHECK_EQ_INT(c.events, 5);
    CHECK_EQ_INT(c.logs, 1205);
end:
    if (t)
        ps_txn_abort(t);
    tspace_close(&ts);
}

/* Moves the space's message counter on to `last` (the number of the last message). */
static void set_last_message(tspace *ts, uint64_t last)
{
    ps_txn *t = NULL;
    CHECK_EQ_INT(ps_txn_begin(ps_space_store(ts->sp), true, &t), PS_OK);
    while (ps_txn_peek(t, PS_CTR_MESSAGE) <= last)
        ps_txn_next(t, PS_CTR_MESSAGE);
    CHECK_EQ_INT(ps_txn_commit(t), PS_OK);
end:;
}

/* A bulk loader's default batch is a quarter of the log, between its bounds, and an explicit
 * size is kept as given. */
static void bulk_batch_grows_with_the_log(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    ps_drop why;
    char line[160];
    const uint64_t lasts[] = {1, 4 * PS_INGEST_BATCH_MIN + 40000, 4 * PS_INGEST_BATCH_MAX + 7};
    const size_t sizes[] = {PS_INGEST_BATCH_MIN, PS_INGEST_BATCH_MIN + 10000,
                            PS_INGEST_BATCH_MAX};
    for (int i = 0; i < 3; i++) {
        set_last_message(&ts, lasts[i] - 1); /* the message below is number lasts[i] */
        int n = snprintf(line, sizeof line,
                         "{\"type\":\"track\",\"event\":\"e\",\"userId\":\"u%d\","
                         "\"messageId\":\"batch-%d\"}",
                         i, i);
        CHECK_EQ_INT(ps_ingest_payload(ts.in, (const uint8_t *)line, (size_t)n, 1, &why), PS_OK);
        CHECK_EQ_INT(ps_ingest_pending(ts.in), 1);
        CHECK_EQ_INT(ps_ingest_batch_size(ts.in), sizes[i]);
        CHECK(!ps_ingest_batch_full(ts.in, 0, 0));
        CHECK(ps_ingest_batch_full(ts.in, 1, 0));
        CHECK(!ps_ingest_batch_full(ts.in, 2, 0));
        CHECK_EQ_INT(ps_ingest_commit(ts.in), PS_OK);
    }
end:
    tspace_close(&ts);
}

/* A full default batch that would leave less than a batch behind takes the rest instead; an
 * unknown rest, a whole batch's worth left, or an explicit size commit where they are. */
static void bulk_batch_takes_a_short_rest(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    ps_drop why;
    char line[160];
    for (int i = 0; i < PS_INGEST_BATCH_MIN; i++) {
        int n = snprintf(line, sizeof line,
                         "{\"type\":\"track\",\"event\":\"e\",\"userId\":\"u%d\","
                         "\"messageId\":\"rest-%d\"}",
                         i % 100, i);
        CHECK_EQ_INT(ps_ingest_payload(ts.in, (const uint8_t *)line, (size_t)n, 1, &why), PS_OK);
        if (i + 1 < PS_INGEST_BATCH_MIN)
            CHECK(!ps_ingest_batch_full(ts.in, 0, 1));
    }
    CHECK_EQ_INT(ps_ingest_batch_size(ts.in), PS_INGEST_BATCH_MIN);
    CHECK(ps_ingest_batch_full(ts.in, 0, 0));
    CHECK(!ps_ingest_batch_full(ts.in, 0, 1));
    CHECK(!ps_ingest_batch_full(ts.in, 0, PS_INGEST_BATCH_MIN - 1));
    CHECK(ps_ingest_batch_full(ts.in, 0, PS_INGEST_BATCH_MIN));
    CHECK(ps_ingest_batch_full(ts.in, PS_INGEST_BATCH_MIN, 1));
    CHECK_EQ_INT(ps_ingest_commit(ts.in), PS_OK);
end:
    tspace_close(&ts);
}

/* The write transaction's profile cache gives back what was put, field for field: strings
 * that fit its record, ones too long for it (held on the heap), and short ones again; and the
 * commit writes the last of them. */
static void profile_cache_round_trip(void)
{
    tspace ts;
    tspace_open(&ts, NULL);
    static ps_profile want, got; /* 1.4 KB each */
    char long_id[PS_ID_BYTES];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    ps_txn *t = NULL;
    CHECK_EQ_INT(ps_txn_begin(ps_space_store(ts.sp), true, &t), PS_OK);
    memset(&want, 0, sizeof want);
    want.seq = 7777;
    want.parent = 3;
    want.merged_into = 3;
    want.collection = 1;
    want.member_count = 2;
    want.mapping_count = 9;
    want.created_ms = 1000;
    want.updated_ms = 2000;
    want.merged_ms = 3000;
    want.created_by = 42;
    snprintf(want.segment_id, sizeof want.segment_id, "use_012345678901234567890123456");
    const char *lasts[] = {"short", long_id, "m-2", long_id + 300};
    for (int round = 0; round < 4; round++) {
        snprintf(want.first_message_id, sizeof want.first_message_id, "%s",
                 round == 1 ? long_id : "first");
        snprintf(want.last_message_id, sizeof want.last_message_id, "%s", lasts[round]);
        snprintf(want.first_source_id, sizeof want.first_source_id, "src_%d", round);
        snprintf(want.last_source_id, sizeof want.last_source_id, "src_last");
        snprintf(want.merged_by_message_id, sizeof want.merged_by_message_id, "%s",
                 round == 3 ? long_id + 100 : "");
        want.updated_ms = 2000 + round;
        CHECK_EQ_INT(ps_store_profile_put(t, &want), PS_OK);
        memset(&got, 0xa5, sizeof got);
        CHECK_EQ_INT(ps_store_profile_get(t, want.seq, &got), PS_OK);
        CHECK(got.seq == want.seq && got.parent == want.parent &&
              got.merged_into == want.merged_into && got.collection == want.collection);
        CHECK(got.member_count == want.member_count && got.mapping_count == want.mapping_count);
        CHECK(got.created_ms == want.created_ms && got.updated_ms == want.updated_ms &&
              got.merged_ms == want.merged_ms && got.created_by == want.created_by);
        CHECK_EQ_STR(got.segment_id, want.segment_id);
        CHECK_EQ_STR(got.first_message_id, want.first_message_id);
        CHECK_EQ_STR(got.last_message_id, want.last_message_id);
        CHECK_EQ_STR(got.first_source_id, want.first_source_id);
        CHECK_EQ_STR(got.last_source_id, want.last_source_id);
        CHECK_EQ_STR(got.merged_by_message_id, want.merged_by_message_id);
        uint64_t parent = 0;
        CHECK_EQ_INT(ps_store_profile_parent(t, want.seq, &parent), PS_OK);
        CHECK(parent == want.parent);
    }
    CHECK_EQ_INT(ps_txn_commit(t), PS_OK);
    t = NULL;
    CHECK_EQ_INT(ps_txn_begin(ps_space_store(ts.sp), false, &t), PS_OK);
    memset(&got, 0, sizeof got);
    CHECK_EQ_INT(ps_store_profile_get(t, want.seq, &got), PS_OK);
    CHECK(got.updated_ms == 2003 && got.created_by == 42);
    CHECK_EQ_STR(got.last_message_id, long_id + 300);
    CHECK_EQ_STR(got.merged_by_message_id, long_id + 100);
    CHECK_EQ_STR(got.first_source_id, "src_3");
end:
    if (t)
        ps_txn_abort(t);
    tspace_close(&ts);
}

static const test_case tests[] = {
    {"identifier_cache_follows_commits_and_aborts", identifier_cache_follows_commits_and_aborts},
    {"priority_example_7_2", priority_example_7_2},
    {"e1_anonymous_to_known", e1_anonymous_to_known},
    {"e2_cross_device", e2_cross_device},
    {"e3_merge_oldest_survives", e3_merge_oldest_survives},
    {"e4_merge_protection", e4_merge_protection},
    {"merge_conflict_across_two_profiles", merge_conflict_across_two_profiles},
    {"weekly_window_and_grandfathering", weekly_window_and_grandfathering},
    {"new_profile_keeps_first_n", new_profile_keeps_first_n},
    {"blocked_values_do_not_resolve", blocked_values_do_not_resolve},
    {"merge_and_mapping_caps", merge_and_mapping_caps},
    {"traits_later_write_wins_across_merge", traits_later_write_wins_across_merge},
    {"dedup_on_message_id", dedup_on_message_id},
    {"dedup_rows_expire_through_the_log", dedup_rows_expire_through_the_log},
    {"log_keeps_old_events", log_keeps_old_events},
    {"segment_ids_are_deterministic", segment_ids_are_deterministic},
    {"bulk_batch_grows_with_the_log", bulk_batch_grows_with_the_log},
    {"bulk_batch_takes_a_short_rest", bulk_batch_takes_a_short_rest},
    {"profile_cache_round_trip", profile_cache_round_trip},
    {"appends_survive_rewrites_and_drops", appends_survive_rewrites_and_drops},
};
TEST_MAIN(tests)
