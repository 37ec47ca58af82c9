/* SPDX-License-Identifier: MIT */
/* Model test: thousands of random event sequences (few ids, many collisions, junk values,
 * limits and sliding windows) are resolved by the engine and by a tiny reference
 * implementation of the resolution loop (docs/architecture.md) over plain arrays; the
 * partitions of identifiers into profiles must agree, and so must the number of merges.
 * Sequences are namespaced into one store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ps/clock.h"
#include "ps/graph.h"
#include "tspace.h"

#define SEQUENCES 2000
#define EVENTS 24
#define NTYPES 4
#define MAXIDS (EVENTS * NTYPES)
#define DAY 86400000LL

/* Extraction order and priority order coincide here: user_id, email, anonymous_id, ios.id */
static const char *const type_names[NTYPES] = {"user_id", "email", "anonymous_id", "ios.id"};
static const int limits[NTYPES] = {1, 2, 3, 2};
static const int64_t windows[NTYPES] = {0, 7 * DAY, 0, 1 * DAY};
static const char settings[] =
    "{\"identifiers\":{\"email\":{\"limit\":2,\"frequency\":\"weekly\"},"
    "\"anonymous_id\":{\"limit\":3},\"ios.id\":{\"limit\":2,\"frequency\":\"daily\"}}}";

typedef struct ref_id {
    int type;
    char value[32];
    int profile; /* owning profile as first mapped; -1 unmapped */
    int64_t first_seen;
} ref_id;

typedef struct ref {
    ref_id ids[MAXIDS];
    int nids;
    int parent[MAXIDS]; /* profile -> canonical (itself when canonical) */
    int nprofiles;
    int merges;
} ref;

static uint64_t rng;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int find(ref *r, int p)
{
    while (r->parent[p] != p)
        p = r->parent[p];
    return p;
}

static int lookup(ref *r, int type, const char *value)
{
    for (int i = 0; i < r->nids; i++)
        if (r->ids[i].type == type && strcmp(r->ids[i].value, value) == 0)
            return i;
    return -1;
}

static bool blocked(const char *v)
{
    return strcmp(v, "null") == 0 || strcmp(v, "0") == 0;
}

/* The resolution loop over arrays. ev[i] is the value of type i or NULL. */
static void ref_resolve(ref *r, const char *ev[NTYPES], int64_t t)
{
    bool active[NTYPES];
    int owner[NTYPES];
    int n = 0;
    for (int k = 0; k < NTYPES; k++) {
        active[k] = ev[k] && !blocked(ev[k]);
        owner[k] = -1;
        if (active[k]) {
            n++;
            int at = lookup(r, k, ev[k]);
            if (at >= 0)
                owner[k] = find(r, r->ids[at].profile);
        }
    }
    if (n == 0)
        return;
    for (;;) {
        int set[NTYPES], ns = 0;
        for (int k = 0; k < NTYPES; k++) {
            if (!active[k] || owner[k] < 0)
                continue;
            bool dup = false;
            for (int j = 0; j < ns; j++)
                dup |= set[j] == owner[k];
            if (!dup)
                set[ns++] = owner[k];
        }
        if (ns == 0) {
            int p = r->nprofiles++;
            r->parent[p] = p;
            for (int k = 0; k < NTYPES; k++) /* one value per type per event: all fit */
                if (active[k]) {
                    ref_id *x = &r->ids[r->nids++];
                    x->type = k;
                    snprintf(x->value, sizeof x->value, "%s", ev[k]);
                    x->profile = p;
                    x->first_seen = t;
                }
            return;
        }
        bool violation = false;
        for (int T = 0; T < NTYPES && !violation; T++) {
            bool relevant = (active[T] && owner[T] < 0) || ns > 1;
            if (!relevant)
                continue;
            int total = 0, max_held = 0, in_window = 0;
            for (int j = 0; j < ns; j++) {
                int held = 0;
                for (int i = 0; i < r->nids; i++) {
                    if (r->ids[i].type != T || find(r, r->ids[i].profile) != set[j])
                        continue;
                    held++;
                    if (windows[T] == 0 || (r->ids[i].first_seen > t - windows[T] &&
                                            r->ids[i].first_seen <= t))
                        in_window++;
                }
                total += held;
                if (held > max_held)
                    max_held = held;
            }
            if (active[T] && owner[T] < 0) {
                total++;
                in_window++;
            }
            violation = total > max_held && in_window > limits[T];
        }
        if (!violation) {
            int s = set[0];
            for (int j = 1; j < ns; j++)
                if (set[j] < s)
                    s = set[j];
            for (int j = 0; j < ns; j++)
                if (set[j] != s) {
                    r->parent[set[j]] = s;
                    r->merges++;
                }
            for (int k = 0; k < NTYPES; k++)
                if (active[k] && owner[k] < 0) {
                    ref_id *x = &r->ids[r->nids++];
                    x->type = k;
                    snprintf(x->value, sizeof x->value, "%s", ev[k]);
                    x->profile = s;
                    x->first_seen = t;
                }
            return;
        }
        for (int k = NTYPES - 1; k >= 0; k--) /* demote the lowest priority on the event */
            if (active[k]) {
                active[k] = false;
                break;
            }
    }
}

static void random_sequences_agree(void)
{
    tspace ts;
    tspace_open(&ts, settings);
    static ref refs[SEQUENCES];
    static char events[SEQUENCES][EVENTS][NTYPES][16];
    static bool present[SEQUENCES][EVENTS][NTYPES];
    rng = 0x9e3779b97f4a7c15ULL;
    char line[1024];
    uint64_t engine_merges = 0;
    for (int s = 0; s < SEQUENCES; s++) {
        ref *r = &refs[s];
        memset(r, 0, sizeof *r);
        int64_t t = 1700000000000LL;
        /* pool sizes vary per sequence: some crowded, some sparse */
        int pool = 2 + (int)(next_rand() % 5);
        for (int e = 0; e < EVENTS; e++) {
            t += (int64_t)(next_rand() % 4 == 0 ? (next_rand() % (3 * DAY)) : 60000);
            const char *ev[NTYPES];
            for (int k = 0; k < NTYPES; k++) {
                present[s][e][k] = next_rand() % 3 == 0;
                if (k == 2 && !present[s][e][0])
                    present[s][e][k] = true; /* a message needs userId or anonymousId */
                uint64_t v = next_rand() % (uint64_t)(pool + 1);
                if (v == (uint64_t)pool)
                    snprintf(events[s][e][k], 16, "%s", next_rand() % 2 ? "null" : "0");
                else
                    snprintf(events[s][e][k], 16, "s%d-%c%llu", s, "uead"[k],
                             (unsigned long long)v);
                ev[k] = present[s][e][k] ? events[s][e][k] : NULL;
            }
            ref_resolve(r, ev, t);
            /* the same event as a Segment message */
            char ts_buf[PS_TIME_BUF];
            int n = snprintf(line, sizeof line, "{\"type\":\"identify\",\"messageId\":\"s%d-%d\","
                                                "\"receivedAt\":\"%s\"",
                             s, e, ps_time_format(t, ts_buf));
            if (ev[0])
                n += snprintf(line + n, sizeof line - (size_t)n, ",\"userId\":\"%s\"", ev[0]);
            if (ev[2])
                n += snprintf(line + n, sizeof line - (size_t)n, ",\"anonymousId\":\"%s\"",
                              ev[2]);
            if (ev[1])
                n += snprintf(line + n, sizeof line - (size_t)n, ",\"traits\":{\"email\":\"%s\"}",
                              ev[1]);
            if (ev[3])
                n += snprintf(line + n, sizeof line - (size_t)n,
                              ",\"context\":{\"device\":{\"id\":\"%s\",\"type\":\"ios\"}}", ev[3]);
            snprintf(line + n, sizeof line - (size_t)n, "}");
            ps_drop why;
            CHECK(ps_ingest_payload(ts.in, (const uint8_t *)line, strlen(line), 1, &why) ==
                  PS_OK);
        }
        if (s % 100 == 99)
            CHECK(ps_ingest_commit(ts.in) == PS_OK);
    }
    CHECK(ps_ingest_commit(ts.in) == PS_OK);
    engine_merges = ps_ingest_stats_get(ts.in)->merges;

    /* compare partitions: engine canonical <-> reference canonical must be a bijection */
    uint64_t ref_merges = 0;
    int checked = 0;
    for (int s = 0; s < SEQUENCES; s++) {
        ref *r = &refs[s];
        ref_merges += (uint64_t)r->merges;
        uint64_t engine_of[MAXIDS] = {0};
        for (int i = 0; i < r->nids; i++) {
            char ident[64];
            snprintf(ident, sizeof ident, "%s:%s", type_names[r->ids[i].type], r->ids[i].value);
            uint64_t e = tspace_find(&ts, ident);
            if (e == 0)
                fprintf(stderr, "  sequence %d: %s mapped by the reference only\n", s, ident);
            CHECK(e != 0);
            int c = find(r, r->ids[i].profile);
            if (engine_of[c] == 0)
                engine_of[c] = e;
            if (engine_of[c] != e)
                fprintf(stderr, "  sequence %d: %s split from its reference profile\n", s, ident);
            CHECK(engine_of[c] == e);
            checked++;
        }
        for (int a = 0; a < r->nprofiles; a++) /* distinct reference profiles stay distinct */
            for (int b = a + 1; b < r->nprofiles; b++)
                if (engine_of[a] && engine_of[b] && engine_of[a] == engine_of[b]) {
                    fprintf(stderr, "  sequence %d: engine joined what the reference kept apart\n",
                            s);
                    CHECK(false);
                }
        /* and every value the engine mapped, the reference mapped too */
        for (int e = 0; e < EVENTS; e++)
            for (int k = 0; k < NTYPES; k++) {
                if (!present[s][e][k] || lookup(r, k, events[s][e][k]) >= 0)
                    continue;
                char ident[64];
                snprintf(ident, sizeof ident, "%s:%s", type_names[k], events[s][e][k]);
                if (tspace_find(&ts, ident) != 0)
                    fprintf(stderr, "  sequence %d: %s mapped by the engine only\n", s, ident);
                CHECK(tspace_find(&ts, ident) == 0);
            }
    }
    CHECK_EQ_INT(engine_merges, ref_merges);
    CHECK(checked > SEQUENCES * 5);
    CHECK(ref_merges > 100); /* the corpus really exercises merges */
    printf("# %d identifiers compared, %llu merges\n", checked, (unsigned long long)ref_merges);
end:
    tspace_close(&ts);
}

static const test_case tests[] = {
    {"random_sequences_agree", random_sequences_agree},
};
TEST_MAIN(tests)
