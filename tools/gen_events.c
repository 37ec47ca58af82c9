/* SPDX-License-Identifier: MIT */
/* gen_events: deterministic synthetic Segment event log (NDJSON) for tests and benchmarks.
 * People have devices and anonymous sessions, log in (linking them), change email, join
 * groups; some devices are shared and some ids are junk. Every line carries receivedAt, so
 * replays are deterministic (docs/architecture.md, Determinism).
 *
 *   gen_events [--events N] [--seed S] [--people P] [--start-ms MS] [--truth FILE]
 *              [--realistic [--without LIST]] [--days D]               > log.ndjson
 *
 * --truth FILE writes "messageId<TAB>who" per event: the true person behind it (or the shared
 * QA account), for resolution quality (docs/benchmarks.md). --realistic draws a population
 * with the behaviours that make identity resolution hard (below), screen and alias calls and
 * bodies of 0.5-2 KB. Without it the output is as it always was. */
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

/* ---- the --realistic population ----
 * People have up to three surfaces (a desktop browser, a phone browser, an app), each with its
 * own anonymousId; the app also sends a device id and a push token. Some people are far more
 * active than others. Behaviours, each on by default with --realistic and switched off by
 * --without NAME[,NAME]:
 *   browsers  cookies expire and get cleared, browsers change and apps are reinstalled: a
 *             surface starts over with a new anonymousId (and on iOS a new device id)
 *   family    households of three share a tablet (one device id) that stays signed in; a
 *             member who finds another's account signs out (a new anonymousId) and in
 *   qa        a few staff testers log in as the shared account "qa-test-user" on test devices
 *             (reset often) and now and then on their own browser; their QA events belong to
 *             the QA account in the truth file ("qa-account"), not to the tester
 *   kiosk     in-store tablets: one Android device id shared by every customer, a fresh
 *             anonymousId per visit, signed in or not
 *   push      a recycled push token: a reinstalled app now and then receives a token that
 *             another person's app had before
 *   junk      SDK bugs: userIds such as "null" or "undefined", anonymousIds of "undefined"
 * With --days D the events spread over D days (people live for months); without it, 20 events
 * per second of simulated time as in the classic log. */
enum {
    B_BROWSERS = 1,
    B_FAMILY = 2,
    B_QA = 4,
    B_KIOSK = 8,
    B_PUSH = 16,
    B_JUNK = 32,
};
static const char *const behaviour_names[] = {"browsers", "family", "qa", "kiosk", "push", "junk"};

typedef struct surface {
    uint32_t gen;    /* how many times it started over */
    int64_t born_ms; /* when the current anonymousId appeared */
    bool logged_in;
    bool used;
} surface;

typedef struct folk_rec {
    surface s[3];      /* desktop browser, phone browser, app */
    int64_t cookie_ms; /* how long this person's browser cookies live */
    uint32_t device_gen, token_gen, email_version;
    uint64_t token_owner; /* whose token the app holds (push recycling), +1; 0: its own */
    uint32_t token_owner_gen;
    surface qa; /* testers: the test device */
    uint64_t tablet_user; /* a household's first member: who is signed in on its tablet, +1 */
    uint32_t tablet_gen;  /* and how often someone signed out there */
} folk_rec;

static unsigned behaviours = B_BROWSERS | B_FAMILY | B_QA | B_KIOSK | B_PUSH | B_JUNK;
static folk_rec *folk;

/* Who is in a household or a tester: a hash of the person number, so that neither depends on
 * how active someone is (the lowest numbers are the most active). */
static uint64_t mix(uint64_t x)
{
    x = (x ^ (x >> 31)) * 0x7fb5d329728ea185ULL;
    return x ^ (x >> 27);
}

static uint64_t population; /* people */

static bool is_tester(uint64_t p)
{
    return (behaviours & B_QA) && (mix(p + 77) % 1000 == 0 || p == population / 3);
}

static bool in_household(uint64_t p)
{
    return (behaviours & B_FAMILY) && mix(p / 3 + 1) % 32 == 0;
}

/* The identifiers of one realistic event, and who it really belongs to. */
typedef struct who {
    char user[64];    /* ,"userId":"..." member text with its trailing comma, or "" */
    char anon[64];    /* the anonymousId */
    char device[160]; /* ,"device":{...} member text, or "" */
    char label[32];   /* the truth */
    bool app;         /* screen calls come from apps */
    bool email;       /* identify calls may carry the person's email */
    uint32_t email_version;
} who;

static void start_over(surface *s, int64_t now)
{
    s->gen += s->used;
    s->born_ms = now;
    s->logged_in = false;
    s->used = true;
}

static void realistic_who(uint64_t seed, uint64_t p, int64_t now, who *w)
{
    (void)seed;
    folk_rec *me = &folk[p];
    memset(w, 0, sizeof *w);
    snprintf(w->label, sizeof w->label, "%" PRIu64, p);
    w->email = true;
    w->email_version = me->email_version;
    if (me->cookie_ms == 0)
        me->cookie_ms = (7 + (int64_t)below(110)) * 86400000LL;
    bool ios = p % 2 == 0;
    uint64_t roll = below(1000);

    if (is_tester(p) && roll < 400) { /* QA work, logged in as the shared account */
        surface *s = &me->qa;
        bool own_browser = below(100) < 15;
        if (own_browser)
            s = &me->s[0];
        if (!s->used || (!own_browser && below(20) == 0))
            start_over(s, now);
        snprintf(w->user, sizeof w->user, "\"userId\":\"qa-test-user\",");
        if (own_browser)
            snprintf(w->anon, sizeof w->anon, "anon-%" PRIu64 "-0-%u", p, s->gen);
        else
            snprintf(w->anon, sizeof w->anon, "qa-dev-%" PRIu64 "-%u", p, s->gen);
        snprintf(w->label, sizeof w->label, "qa-account");
        w->email = false;
        return;
    }
    if (in_household(p) && roll < 150) { /* the family tablet */
        uint64_t home = p / 3;
        snprintf(w->device, sizeof w->device,
                 ",\"device\":{\"id\":\"fam-ipad-%" PRIu64 "\",\"type\":\"ios\"}", home);
        /* the app stays signed in as whoever signed in last; a member who finds someone
         * else's account (or none) signs out, which starts a new anonymousId (the SDKs'
         * reset()), and signs in as themselves; now and then an event goes out in between */
        folk_rec *tablet = &folk[home * 3];
        bool anonymous = tablet->tablet_user != p + 1 && below(10) < 3;
        if (tablet->tablet_user != p + 1)
            tablet->tablet_gen++;
        tablet->tablet_user = p + 1;
        snprintf(w->anon, sizeof w->anon, "fam-%" PRIu64 "-%u", home, tablet->tablet_gen);
        if (!anonymous)
            snprintf(w->user, sizeof w->user, "\"userId\":\"user-%" PRIu64 "\",", p);
        w->app = true;
        return;
    }
    if ((behaviours & B_KIOSK) && roll >= 990) { /* a visit to a store tablet */
        uint64_t kiosk = below(4), day = (uint64_t)(now / 86400000);
        snprintf(w->anon, sizeof w->anon, "kiosk-%" PRIu64 "-%" PRIu64 "-%" PRIu64, kiosk, p, day);
        snprintf(w->device, sizeof w->device,
                 ",\"device\":{\"id\":\"store-tab-%" PRIu64 "\",\"type\":\"android\"}", kiosk);
        if (below(2) == 0)
            snprintf(w->user, sizeof w->user, "\"userId\":\"user-%" PRIu64 "\",", p);
        w->app = true;
        return;
    }
    unsigned k = roll % 100 < 55 ? 0 : roll % 100 < 75 ? 1 : 2;
    surface *s = &me->s[k];
    if (!s->used)
        start_over(s, now);
    else if (behaviours & B_BROWSERS) {
        if (k < 2 && (now - s->born_ms > me->cookie_ms || below(150) == 0))
            start_over(s, now); /* cookies expired or cleared, or another browser */
        else if (k == 2 && below(250) == 0) {
            start_over(s, now); /* the app reinstalled: iOS gives a new device id */
            if (ios)
                me->device_gen++;
            me->token_gen++;
            me->token_owner = 0;
            if ((behaviours & B_PUSH) && below(20) == 0 && p > 0) {
                me->token_owner = p; /* a token the previous person's app had */
                me->token_owner_gen = folk[p - 1].token_gen;
            }
        }
    }
    if (!s->logged_in && below(4) == 0)
        s->logged_in = true;
    else if (s->logged_in && below(40) == 0)
        s->logged_in = false;
    if (s->logged_in)
        snprintf(w->user, sizeof w->user, "\"userId\":\"user-%" PRIu64 "\",", p);
    snprintf(w->anon, sizeof w->anon, "anon-%" PRIu64 "-%u-%u", p, k, s->gen);
    if (k == 2) {
        char tok[48];
        if (me->token_owner)
            snprintf(tok, sizeof tok, "tok-%" PRIu64 "-%u", me->token_owner - 1,
                     me->token_owner_gen);
        else
            snprintf(tok, sizeof tok, "tok-%" PRIu64 "-%u", p, me->token_gen);
        snprintf(w->device, sizeof w->device,
                 ",\"device\":{\"id\":\"dev-%" PRIu64 "-%u\",\"type\":\"%s\",\"token\":\"%s\"}", p,
                 me->device_gen, ios ? "ios" : "android", tok);
        w->app = true;
    }
    if (below(2000) == 0)
        me->email_version++; /* a new address */
    if (behaviours & B_JUNK) {
        if (w->user[0] && below(400) == 0)
            snprintf(w->user, sizeof w->user, "\"userId\":\"%s\",", junk[below(6)]);
        if (!w->user[0] && below(1000) == 0)
            snprintf(w->anon, sizeof w->anon, "undefined");
    }
}

/* Bodies of the --realistic log: screen calls from apps, alias calls, identify and group as in
 * the classic log, and page/track with bodies of about 0.5-2 KB. */
static void emit_realistic(uint64_t seed, uint64_t i, uint64_t person, const who *w, const char *ts,
                           const char *rcv, uint64_t kind)
{
    char pad[1600];
    size_t plen = 300 + below(1300);
    for (size_t k = 0; k < plen; k++)
        pad[k] = (char)('a' + (i + k * 7) % 26);
    pad[plen] = 0;
    const char *user = w->user, *anon = w->anon, *device = w->device;
    if (kind < 12) { /* identify: email may change over time */
        char email[96] = "";
        if (w->email && (user[0] || below(20) == 0))
            snprintf(email, sizeof email, "\"email\":\"Person%" PRIu64 ".v%u@Example.com\",",
                     person, w->email_version);
        printf("{\"type\":\"identify\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
               "\"anonymousId\":\"%s\",\"traits\":{%s\"plan\":\"%s\",\"logins\":%" PRIu64
               "},\"context\":{\"library\":{\"name\":\"analytics.js\",\"version\":\"5.2.0\"}%s},"
               "\"timestamp\":\"%s\",\"receivedAt\":\"%s\"}\n",
               seed, i, user, anon, email, below(2) ? "pro" : "free", below(1000), device, ts, rcv);
    } else if (kind < 15) {
        printf("{\"type\":\"group\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
               "\"anonymousId\":\"%s\",\"groupId\":\"org-%" PRIu64 "\",\"traits\":{"
               "\"name\":\"Org %" PRIu64 "\",\"employees\":%" PRIu64 "},\"timestamp\":\"%s\","
               "\"receivedAt\":\"%s\"}\n",
               seed, i, user, anon, person % 97, person % 97, below(5000), ts, rcv);
    } else if (w->app && kind >= 60) {
        printf("{\"type\":\"screen\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
               "\"anonymousId\":\"%s\",\"name\":\"Screen %" PRIu64
               "\",\"properties\":{\"pad\":\"%s\"},\"context\":{\"app\":{\"name\":"
               "\"shop-ios\",\"version\":\"4.1\"}%s},\"timestamp\":\"%s\","
               "\"receivedAt\":\"%s\"}\n",
               seed, i, user, anon, below(12), pad, device, ts, rcv);
    } else if (kind >= 88 && user[0]) { /* alias: previousId must never merge */
        printf("{\"type\":\"alias\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
               "\"previousId\":\"%s\",\"context\":{\"note\":\"%s\"},\"timestamp\":\"%s\","
               "\"receivedAt\":\"%s\"}\n",
               seed, i, user, anon, pad, ts, rcv);
    } else {
        printf("{\"type\":\"%s\",\"messageId\":\"m-%" PRIu64 "-%" PRIu64 "\",%s"
               "\"anonymousId\":\"%s\",\"%s\":\"%s\",\"properties\":{\"sku\":\"SKU-%" PRIu64
               "\",\"price\":%" PRIu64 ",\"pad\":\"%s\"},\"context\":{\"library\":{"
               "\"name\":\"analytics.js\",\"version\":\"5.2.0\"},\"ip\":\"198.51.100.%" PRIu64
               "\"%s},\"timestamp\":\"%s\",\"receivedAt\":\"%s\"}\n",
               kind < 40 ? "page" : "track", seed, i, user, anon, kind < 40 ? "name" : "event",
               kind < 40 ? pages[below(5)] : events[below(6)], below(5000), below(500), pad,
               person % 250, device, ts, rcv);
    }
}

static bool parse_without(const char *list)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        size_t k = 0, n = sizeof behaviour_names / sizeof *behaviour_names;
        while (k < n && strcmp(tok, behaviour_names[k]) != 0)
            k++;
        if (k == n) {
            fprintf(stderr,
                    "gen_events: unknown behaviour %s (known: browsers, family, qa, kiosk, "
                    "push, junk)\n",
                    tok);
            return false;
        }
        behaviours &= ~(1u << k);
    }
    return true;
}

int main(int argc, char **argv)
{
    uint64_t n = 10000, seed = 1, people = 0, days = 0;
    int64_t start_ms = 1767225600000LL; /* 2026-01-01 */
    FILE *truth = NULL;
    bool realistic = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs("usage: gen_events [--events N] [--seed S] [--people P] [--start-ms MS]\n"
                  "                  [--truth FILE] [--realistic [--without LIST]] [--days D]\n"
                  "                  > log.ndjson\n"
                  "A deterministic synthetic Segment event log (NDJSON) for tests and\n"
                  "benchmarks: N events (10000) of P people (N/20), from MS (2026-01-01) on.\n"
                  "--truth FILE writes messageId<TAB>person per event (the QA account's events:\n"
                  "qa-account). --realistic draws people with browsers, phones and apps,\n"
                  "screen and alias calls and bodies of 0.5-2 KB, and these behaviours:\n"
                  "browsers, family, qa, kiosk, push, junk (docs/benchmarks.md); switch some\n"
                  "off with --without NAME[,NAME]. --days D spreads the events over D days\n"
                  "(default: 20 events per second of simulated time).\n",
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
        if (strcmp(argv[i], "--without") == 0) {
            if (!parse_without(argv[++i]))
                return 1;
            continue;
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
        else if (strcmp(argv[i], "--days") == 0)
            days = strtoull(argv[i + 1], NULL, 10);
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
    if (realistic)
        folk = calloc(people, sizeof *folk);
    population = people;
    for (uint64_t i = 0; i < n; i++) {
        /* 20 events/s of simulated time, or n events over the days asked for */
        int64_t t = start_ms + (days ? (int64_t)((double)i * (double)days * 86400000.0 / (double)n)
                                     : (int64_t)(i * 50));
        iso(t, ts, sizeof ts);
        iso(t + 120, rcv, sizeof rcv);
        if (realistic) {
            /* most events from anyone, 30% from a heavy few (density 1/sqrt(x)) */
            double u = (double)(rnd() >> 11) / 9007199254740992.0;
            uint64_t person = below(10) < 7 ? below(people) : (uint64_t)(u * u * (double)people);
            who w;
            realistic_who(seed, person, t, &w);
            if (truth)
                fprintf(truth, "m-%" PRIu64 "-%" PRIu64 "\t%s\n", seed, i, w.label);
            emit_realistic(seed, i, person, &w, ts, rcv, below(100));
            continue;
        }
        uint64_t person = below(people);
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
    free(folk);
    return 0;
}
