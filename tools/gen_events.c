/* SPDX-License-Identifier: MIT */
/* gen_events: deterministic synthetic Segment event log (NDJSON) for tests and benchmarks.
 * People have devices and anonymous sessions, log in (linking them), change email, join
 * groups; some devices are shared and some ids are junk. Every line carries receivedAt, so
 * replays are deterministic (docs/architecture.md, Determinism).
 *
 *   gen_events [--events N] [--seed S] [--people P] [--start-ms MS] [--truth FILE]
 *              [--realistic]                                           > log.ndjson
 *
 * --truth FILE writes "messageId<TAB>person" per event: the true person behind it, for
 * resolution quality (docs/benchmarks.md). --realistic adds what benchmarks need and tests do
 * not: screen and alias calls, a mobile app beside the web site (cross-app ids), a QA userId
 * shared by many people, and bodies of 0.5-2 KB. Without it the output is as it always was. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

static void iso(int64_t ms, char *out, size_t cap)
{
    int64_t secs = ms / 1000, days = secs / 86400, rem = secs % 86400;
    /* civil from days */
    int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    snprintf(out, cap,
             "%04" PRId64 "-%02" PRId64 "-%02" PRId64 "T%02" PRId64 ":%02" PRId64 ":%02" PRId64
             ".%03" PRId64 "Z",
             y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000);
}

static const char *const pages[] = {"/", "/pricing", "/docs", "/blog/launch", "/checkout"};
static const char *const events[] = {"Product Viewed", "Product Added",     "Order Completed",
                                     "Signed In",      "Experiment Viewed", "Video Played"};
static const char *const junk[] = {"null", "0", "undefined", "-1", "anonymous", "00000"};

/* The --realistic variants: a mobile app (screen calls, its own anonymous ids, the same
 * userId when logged in: cross-app), alias calls, a QA account shared by many testers, and
 * padded bodies. Returns false to let the classic generator write this event. */
static bool emit_realistic(uint64_t seed, uint64_t i, uint64_t person, uint64_t session,
                           const char *anon, const char *device, const char *user, const char *ts,
                           const char *rcv, uint64_t kind)
{
    char pad[1600];
    size_t plen = 300 + below(1300); /* bodies of about 0.5-2 KB */
    for (size_t k = 0; k < plen; k++)
        pad[k] = (char)('a' + (i + k * 7) % 26);
    pad[plen] = 0;
    const char *qa = below(300) == 0 ? "\"userId\":\"qa-test-user\"," : NULL;
    if (qa)
        user = qa;
    if (kind >= 90) { /* the mobile app */
        printf("{\"type\":\"screen\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
               "\"anonymousId\":\"app-%" PRIu64 "-%" PRIu64 "\",\"name\":\"Screen %" PRIu64
               "\",\"properties\":{\"pad\":\"%s\"},\"context\":{\"app\":{\"name\":"
               "\"shop-ios\",\"version\":\"4.1\"}%s},\"timestamp\":\"%s\","
               "\"receivedAt\":\"%s\"}\n",
               seed, i, user, person, session, below(12), pad, device, ts, rcv);
        return true;
    }
    if (kind >= 88 && user[0]) { /* alias: previousId must never merge */
        printf("{\"type\":\"alias\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
               "\"previousId\":\"%s\",\"context\":{\"note\":\"%s\"},\"timestamp\":\"%s\","
               "\"receivedAt\":\"%s\"}\n",
               seed, i, user, anon, pad, ts, rcv);
        return true;
    }
    if (kind >= 15) { /* page and track with realistic bodies */
        printf("{\"type\":\"%s\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
               "\"anonymousId\":\"%s\",\"%s\":\"%s\",\"properties\":{\"sku\":\"SKU-%" PRIu64
               "\",\"price\":%" PRIu64 ",\"pad\":\"%s\"},\"context\":{\"library\":{"
               "\"name\":\"analytics.js\",\"version\":\"5.2.0\"},\"ip\":\"198.51.100.%" PRIu64
               "\"%s},\"timestamp\":\"%s\",\"receivedAt\":\"%s\"}\n",
               kind < 40 ? "page" : "track", seed, i, user, anon, kind < 40 ? "name" : "event",
               kind < 40 ? pages[below(5)] : events[below(6)], below(5000), below(500), pad,
               person % 250, device, ts, rcv);
        return true;
    }
    (void)session;
    return false; /* identify and group as in the classic log */
}

int main(int argc, char **argv)
{
    uint64_t n = 10000, seed = 1, people = 0;
    int64_t start_ms = 1767225600000LL; /* 2026-01-01 */
    FILE *truth = NULL;
    bool realistic = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs("usage: gen_events [--events N] [--seed S] [--people P] [--start-ms MS]\n"
                  "                  [--truth FILE] [--realistic]   > log.ndjson\n"
                  "A deterministic synthetic Segment event log (NDJSON) for tests and\n"
                  "benchmarks: N events (10000) of P people (N/20), from MS (2026-01-01) on.\n"
                  "--truth FILE writes messageId<TAB>person per event; --realistic adds\n"
                  "screen and alias calls, a mobile app, a shared QA userId and larger bodies.\n",
                  stdout);
            return 0;
        }
        if (strcmp(argv[i], "--realistic") == 0) {
            realistic = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "gen_events: %s needs a value\n", argv[i]);
            return 1;
        }
        if (strcmp(argv[i], "--truth") == 0) {
            if ((truth = fopen(argv[++i], "w")) == NULL) {
                perror(argv[i]);
                return 1;
            }
            continue;
        }
        if (strcmp(argv[i], "--events") == 0)
            n = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--people") == 0)
            people = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--start-ms") == 0)
            start_ms = strtoll(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "gen_events: unknown option %s\n", argv[i]);
            return 1;
        }
        i++;
    }
    if (people == 0)
        people = n / 20 + 1;
    rng_state = seed;
    char ts[96], rcv[96];
    for (uint64_t i = 0; i < n; i++) {
        uint64_t person = below(people);
        int64_t t = start_ms + (int64_t)(i * 50); /* 20 events/s of simulated time */
        iso(t, ts, sizeof ts);
        iso(t + 120, rcv, sizeof rcv);
        uint64_t session = below(4); /* a person has a few anonymous sessions / devices */
        bool shared_device = below(200) == 0;
        bool logged_in = below(3) != 0;
        bool junk_user = below(500) == 0;
        char anon[64], device[96], user[64];
        snprintf(anon, sizeof anon, "anon-%" PRIu64 "-%" PRIu64, person, session);
        snprintf(device, sizeof device, ",\"device\":{\"id\":\"dev-%" PRIu64 "\",\"type\":\"%s\"}",
                 shared_device ? (uint64_t)7 : person * 4 + session,
                 (person + session) % 2 ? "ios" : "android");
        if (junk_user)
            snprintf(user, sizeof user, "\"userId\":\"%s\",", junk[below(6)]);
        else if (logged_in)
            snprintf(user, sizeof user, "\"userId\":\"user-%" PRIu64 "\",", person);
        else
            user[0] = 0;
        uint64_t kind = below(100);
        if (truth)
            fprintf(truth, "m-%" PRIu64 "-%" PRIu64 "\t%" PRIu64 "\n", seed, i, person);
        if (realistic &&
            emit_realistic(seed, i, person, session, anon, device, user, ts, rcv, kind))
            continue;
        char props[512];
        snprintf(props, sizeof props,
                 "\"properties\":{\"sku\":\"SKU-%" PRIu64 "\",\"price\":%" PRIu64 ".%02" PRIu64
                 ",\"currency\":\"USD\",\"category\":\"cat-%" PRIu64
                 "\",\"note\":\"synthetic event %" PRIu64 " for load and determinism tests\"}",
                 below(5000), below(500), below(100), below(40), i);
        const char *ctx_common = "\"library\":{\"name\":\"analytics.js\",\"version\":\"5.2.0\"},"
                                 "\"ip\":\"203.0.113.9\",\"userAgent\":\"Mozilla/5.0 (X11; "
                                 "Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36\"";
        if (kind < 12) {
            /* identify: email may change over time */
            uint64_t version = below(10) == 0 ? 1 : 0;
            printf("{\"type\":\"identify\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
                   "\"anonymousId\":\"%s\",\"traits\":{\"email\":\"Person%" PRIu64 ".v%" PRIu64
                   "@Example.com\",\"plan\":\"%s\",\"logins\":%" PRIu64
                   ",\"name\":\"Person %" PRIu64 "\"},\"context\":{%s%s},\"timestamp\":\"%s\","
                   "\"receivedAt\":\"%s\"}\n",
                   seed, i, user[0] ? user : "", anon, person, version, below(2) ? "pro" : "free",
                   below(1000), person, ctx_common, device, ts, rcv);
        } else if (kind < 15) {
            printf("{\"type\":\"group\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
                   "\"anonymousId\":\"%s\",\"groupId\":\"org-%" PRIu64 "\",\"traits\":{"
                   "\"name\":\"Org %" PRIu64 "\",\"employees\":%" PRIu64 "},\"context\":{%s},"
                   "\"timestamp\":\"%s\",\"receivedAt\":\"%s\"}\n",
                   seed, i, user[0] ? user : "", anon, person % 97, person % 97, below(5000),
                   ctx_common, ts, rcv);
        } else if (kind < 40) {
            printf("{\"type\":\"page\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
                   "\"anonymousId\":\"%s\",\"name\":\"%s\",%s,\"context\":{%s,\"page\":{"
                   "\"path\":\"%s\"}},\"timestamp\":\"%s\",\"receivedAt\":\"%s\"}\n",
                   seed, i, user[0] ? user : "", anon, pages[below(5)], props, ctx_common,
                   pages[below(5)], ts, rcv);
        } else {
            printf("{\"type\":\"track\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
                   "\"anonymousId\":\"%s\",\"event\":\"%s\",%s,\"context\":{%s%s},"
                   "\"timestamp\":\"%s\",\"receivedAt\":\"%s\"}\n",
                   seed, i, user[0] ? user : "", anon, events[below(6)], props, ctx_common, device,
                   ts, rcv);
        }
    }
    return 0;
}
