/* SPDX-License-Identifier: MIT */
/* event: ingestion drops, stamping (receivedAt, messageId) and identifier extraction from
 * exactly the documented locations. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "ps/event.h"

typedef struct got {
    int calls;
    ps_drop why;
    char ids[2048]; /* "coll/type:value[flag] " in order */
    char message_id[128];
    char source_id[80];
    int64_t ts, received;
    size_t traits;
    char trait0[256];
    size_t body_len;
} got;

static ps_status sink(void *ud, const ps_event *ev, ps_drop why, size_t index)
{
    (void)index;
    got *g = ud;
    g->calls++;
    g->why = why;
    if (ev == NULL)
        return PS_OK;
    g->ids[0] = 0;
    for (size_t i = 0; i < ev->id_count; i++) {
        char one[512];
        snprintf(one, sizeof one, "%s%s:%s%s ", ev->ids[i].collection ? "acc/" : "",
                 ev->ids[i].type, ev->ids[i].value,
                 ev->ids[i].flag == PS_IDENT_BLOCKED    ? "[blocked]"
                 : ev->ids[i].flag == PS_IDENT_TOO_LONG ? "[long]"
                 : ev->ids[i].flag                      ? "[encoding]"
                                                        : "");
        strncat(g->ids, one, sizeof g->ids - strlen(g->ids) - 1);
    }
    snprintf(g->message_id, sizeof g->message_id, "%s", ev->message_id);
    snprintf(g->source_id, sizeof g->source_id, "%s", ev->source_id);
    g->ts = ev->timestamp_ms;
    g->received = ev->received_ms;
    g->traits = ev->trait_count;
    if (ev->trait_count)
        snprintf(g->trait0, sizeof g->trait0, "%s=%s%s", ev->traits[0].key, ev->traits[0].json,
                 ev->traits[0].is_null ? "(remove)" : "");
    g->body_len = ev->body.len;
    return PS_OK;
}

static ps_rules *rules;

static got run_opts(const char *json, bool keep, ps_msg_type forced)
{
    got g;
    memset(&g, 0, sizeof g);
    ps_arena a;
    ps_arena_init(&a);
    ps_accept_opts o = {.rules = rules,
                        .now_ms = 1700000000000LL,
                        .keep_received_at = keep,
                        .source_id = "src",
                        .forced_type = forced};
    ps_drop why;
    ps_status st = ps_event_parse((const uint8_t *)json, strlen(json), &o, &a, sink, &g, &why);
    if (st != PS_OK) {
        g.calls = -1;
        g.why = why;
    }
    ps_arena_clear(&a);
    return g;
}

static got run(const char *json)
{
    return run_opts(json, true, PS_MSG_NONE);
}

static void default_locations(void)
{
    rules = ps_rules_default();
    got g = run("{\"type\":\"identify\",\"userId\":\" u1 \",\"anonymousId\":\"a1\","
                "\"traits\":{\"email\":\" Jane@Example.COM \"},\"context\":{\"device\":{"
                "\"id\":\"d1\",\"type\":\"ios\",\"advertisingId\":\"ad1\",\"adTrackingEnabled\":"
                "true,\"token\":\"tok\"},\"integrations\":{\"Google Analytics\":{\"clientId\":"
                "\"ga1\"}}}}");
    CHECK_EQ_INT(g.why, PS_DROP_NONE);
    CHECK_EQ_STR(g.ids, "user_id:u1 email:jane@example.com anonymous_id:a1 ios.id:d1 "
                        "ios.idfa:ad1 ios.push_token:tok ga_client_id:ga1 ");
    /* idfa needs adTrackingEnabled; other device types give nothing; GA from top level */
    g = run("{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a1\",\"context\":{\"device\":"
            "{\"id\":\"d1\",\"type\":\"android\",\"advertisingId\":\"ad1\"},\"traits\":{\"email\":"
            "\"x@y.z\"}},\"integrations\":{\"Google Analytics\":{\"clientId\":\"ga2\"}},"
            "\"properties\":{\"email\":\"p@q.r\"}}");
    CHECK_EQ_STR(g.ids, "email:x@y.z anonymous_id:a1 android.id:d1 ga_client_id:ga2 ");
    g = run("{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a1\",\"context\":{\"device\":"
            "{\"id\":\"d1\",\"type\":\"phone\"}}}");
    CHECK_EQ_STR(g.ids, "anonymous_id:a1 ");
    /* traits.email counts on identify only; group traits.email is an account trait */
    g = run("{\"type\":\"track\",\"event\":\"E\",\"userId\":7,\"traits\":{\"email\":\"a@b\"}}");
    CHECK_EQ_STR(g.ids, "user_id:7 ");
    g = run("{\"type\":\"group\",\"userId\":\"u1\",\"groupId\":\"g1\",\"traits\":{\"email\":"
            "\"team@x.com\",\"name\":\"X\"}}");
    CHECK_EQ_STR(g.ids, "user_id:u1 acc/group_id:g1 ");
    CHECK_EQ_INT(g.traits, 2);
    /* alias: previousId is never an identifier */
    g = run("{\"type\":\"alias\",\"userId\":\"u2\",\"previousId\":\"u1\"}");
    CHECK_EQ_STR(g.ids, "user_id:u2 ");
end:
    ps_rules_free(rules);
}

static void never_identifiers_and_blocked(void)
{
    rules = ps_rules_default();
    got g = run("{\"type\":\"identify\",\"userId\":\"null\",\"anonymousId\":\"a\",\"traits\":{"
                "\"email\":null}}");
    CHECK_EQ_STR(g.ids, "user_id:null[blocked] anonymous_id:a ");
    g = run("{\"type\":\"identify\",\"userId\":true,\"anonymousId\":\"a\",\"traits\":{"
            "\"email\":{\"x\":1}}}");
    CHECK_EQ_STR(g.ids, "anonymous_id:a ");
    g = run("{\"type\":\"identify\",\"userId\":\"   \",\"anonymousId\":\"000\"}");
    CHECK_EQ_STR(g.ids, "anonymous_id:000[blocked] ");
end:
    ps_rules_free(rules);
}

static void custom_and_external_ids(void)
{
    ps_diags d;
    const char *s = "{\"identifiers\":{\"app_id\":{\"keys\":[\"app_id\"]},\"phone\":{"
                    "\"keys\":[\"phone\"]}}}";
    CHECK(ps_rules_parse(s, strlen(s), &rules, &d) == PS_OK);
    got g = run("{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a\",\"properties\":{"
                "\"appId\":\"A1\",\"app_id\":\"A2\",\"phone_number\":\"555\"},\"context\":{"
                "\"externalIds\":[{\"id\":\"123\",\"type\":\" Phone \",\"collection\":\"users\","
                "\"encoding\":\"none\"},{\"id\":\"9\",\"type\":\"shop_id\",\"collection\":"
                "\"users\",\"encoding\":\"base64\"},{\"id\":\"acc9\",\"type\":\"crm_id\","
                "\"collection\":\"accounts\",\"encoding\":\"none\"},{\"id\":\"x\",\"type\":"
                "\"no_encoding\",\"collection\":\"users\"}]}}");
    /* both key forms promoted, phone_number doesn't match "phone", types lowercased,
     * bad encoding flagged, accounts ids ignored off group calls */
    CHECK_EQ_STR(g.ids, "anonymous_id:a app_id:A2 app_id:A1 phone:123 shop_id:9[encoding] ");
    g = run("{\"type\":\"group\",\"userId\":\"u\",\"groupId\":\"g\",\"context\":{\"externalIds\":"
            "[{\"id\":\"acc9\",\"type\":\"crm_id\",\"collection\":\"accounts\",\"encoding\":"
            "\"none\"}]}}");
    CHECK_EQ_STR(g.ids, "user_id:u acc/crm_id:acc9 acc/group_id:g ");
    /* by key, then by object (traits, context.traits, properties), the snake form before the
     * camel one; of two members with one name the first counts */
    g = run("{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{\"phone\":\"P1\","
            "\"appId\":\"X\",\"phone\":\"P0\",\"app_id\":\"W\"},\"context\":{\"traits\":{"
            "\"phone\":\"P2\",\"app_id\":\"Y\",\"appId\":7}},\"properties\":{\"phone\":"
            "\"P3\",\"appId\":null,\"phone\":\"P4\"}}");
    CHECK_EQ_STR(g.ids, "user_id:u app_id:W app_id:X app_id:Y app_id:7 phone:P1 phone:P2 phone:P3 ");
    ps_rules_free(rules);
    /* one key's camel form is another's snake form: one member gives both; an accounts key is
     * not read on a users call; a group call reads the accounts key from traits, which are
     * the account's there (the ab_1 member is not a user's identifier) */
    s = "{\"identifiers\":{\"ab\":{\"keys\":[\"ab_1\"]},\"abx\":{\"keys\":[\"ab1\"]},"
        "\"crm\":{\"collection\":\"accounts\",\"keys\":[\"crm_id\"]}}}";
    CHECK(ps_rules_parse(s, strlen(s), &rules, &d) == PS_OK);
    g = run("{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{\"ab1\":\"V\","
            "\"crm_id\":\"C\"}}");
    CHECK_EQ_STR(g.ids, "user_id:u ab:V abx:V ");
    g = run("{\"type\":\"group\",\"userId\":\"u\",\"groupId\":\"g\",\"traits\":{"
            "\"crmId\":\"C\",\"ab_1\":\"Z\"}}");
    CHECK_EQ_STR(g.ids, "user_id:u acc/group_id:g acc/crm:C ");
end:
    ps_rules_free(rules);
}

static void drops(void)
{
    rules = ps_rules_default();
    char big[40000];
    CHECK_EQ_INT(run("{\"type\":\"track\",\"event\":\"E\"}").why, PS_DROP_NO_USER_ANON_ID);
    CHECK_EQ_INT(run("{\"type\":\"track\",\"userId\":\"u\"}").why, PS_DROP_MISSING_EVENT_NAME);
    CHECK_EQ_INT(run("{\"type\":\"fly\",\"userId\":\"u\"}").why, PS_DROP_INVALID_TYPE);
    CHECK_EQ_INT(run("{\"type\":\"group\",\"userId\":\"u\",\"groupId\":\"\"}").why,
                 PS_DROP_GROUP_ID_EMPTY);
    CHECK_EQ_INT(run("{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"context\":{"
                     "\"groupId\":\"\"}}")
                     .why,
                 PS_DROP_GROUP_ID_EMPTY);
    CHECK_EQ_INT(run("{\"type\":\"identify\",\"userId\":\"u\",\"timestamp\":\"soon\"}").why,
                 PS_DROP_INVALID_TIMESTAMP);
    CHECK_EQ_INT(run("{\"type\":\"identify\",\"userId\":\"u\",\"timestamp\":\"1969-01-01\"}").why,
                 PS_DROP_BEFORE_1970);
    CHECK_EQ_INT(run("{\"type\":\"identify\",\"userId\":\"u\",\"traits\":[1]}").why,
                 PS_DROP_INVALID_FIELD);
    /* messageId: 100 code points pass, 101 don't */
    char mid[600];
    int n = snprintf(mid, sizeof mid, "{\"type\":\"identify\",\"userId\":\"u\",\"messageId\":\"");
    for (int i = 0; i < 100; i++)
        n += snprintf(mid + n, sizeof mid - (size_t)n, "\xc3\xa9");
    snprintf(mid + n, sizeof mid - (size_t)n, "\"}");
    CHECK_EQ_INT(run(mid).why, PS_DROP_NONE);
    snprintf(mid + n, sizeof mid - (size_t)n, "x\"}");
    CHECK_EQ_INT(run(mid).why, PS_DROP_MESSAGE_ID_TOO_LONG);
    /* traits: 299 keys pass, 300 are rejected on identify */
    for (int keys = 299; keys <= 300; keys++) {
        n = snprintf(big, sizeof big, "{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{");
        for (int i = 0; i < keys; i++)
            n += snprintf(big + n, sizeof big - (size_t)n, "%s\"k%d\":%d", i ? "," : "", i, i);
        snprintf(big + n, sizeof big - (size_t)n, "}}");
        CHECK_EQ_INT(run(big).why, keys == 300 ? PS_DROP_TOO_MANY_TRAITS : PS_DROP_NONE);
    }
    /* properties: 300 pass, 301 are dropped */
    for (int keys = 300; keys <= 301; keys++) {
        n = snprintf(big, sizeof big,
                     "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\","
                     "\"properties\":{");
        for (int i = 0; i < keys; i++)
            n += snprintf(big + n, sizeof big - (size_t)n, "%s\"k%d\":%d", i ? "," : "", i, i);
        snprintf(big + n, sizeof big - (size_t)n, "}}");
        CHECK_EQ_INT(run(big).why, keys == 301 ? PS_DROP_TOO_MANY_PROPERTIES : PS_DROP_NONE);
    }
    /* whole payload unreadable */
    got g = run("{\"type\":");
    CHECK_EQ_INT(g.calls, -1);
    CHECK_EQ_INT(g.why, PS_DROP_INVALID_JSON);
    g = run("{\"type\":\"identify\",\"userId\":\"\xff\"}");
    CHECK_EQ_INT(g.why, PS_DROP_INVALID_UTF8);
    memset(big, ' ', sizeof big);
    memcpy(big, "{\"type\":\"identify\",\"userId\":\"u\"", 31);
    memcpy(big + sizeof big - 2, "}", 2);
    g = run(big);
    CHECK_EQ_INT(g.why, PS_DROP_TOO_LARGE);
end:
    ps_rules_free(rules);
}

static void stamps_and_batches(void)
{
    rules = ps_rules_default();
    /* a replay keeps a logged receivedAt; the HTTP path always stamps */
    got g = run("{\"type\":\"identify\",\"userId\":\"u\",\"receivedAt\":\"2020-01-01T00:00:00Z\"}");
    CHECK_EQ_INT(g.received, 1577836800000LL);
    CHECK_EQ_INT(g.ts, 1577836800000LL);
    CHECK(strncmp(g.message_id, "ps-", 3) == 0);
    g = run_opts("{\"type\":\"identify\",\"userId\":\"u\",\"receivedAt\":\"2020-01-01T00:00:00Z\"}",
                 false, PS_MSG_NONE);
    CHECK_EQ_INT(g.received, 1700000000000LL);
    CHECK_EQ_STR(g.source_id, "src");
    /* timestamp = receivedAt - (sentAt - originalTimestamp) */
    g = run("{\"type\":\"identify\",\"userId\":\"u\",\"receivedAt\":\"2020-01-01T00:00:10Z\","
            "\"sentAt\":\"2020-01-01T00:00:05Z\",\"originalTimestamp\":\"2020-01-01T00:00:03Z\"}");
    CHECK_EQ_INT(g.ts, 1577836808000LL);
    /* forced type (HTTP /v1/track) */
    g = run_opts("{\"event\":\"E\",\"userId\":\"u\"}", false, PS_MSG_TRACK);
    CHECK_EQ_INT(g.why, PS_DROP_NONE);
    CHECK(g.body_len > 0);
    /* a batch: envelope context merged into items, bad items dropped, good ones kept */
    g = run("{\"batch\":[{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a\"},"
            "{\"type\":\"track\",\"event\":\"E\"},7,{\"type\":\"identify\",\"userId\":\"u\","
            "\"context\":{\"device\":{\"id\":\"own\",\"type\":\"ios\"}}}],"
            "\"context\":{\"device\":{\"id\":\"d\",\"type\":\"android\"}}}");
    CHECK_EQ_INT(g.calls, 4);
    CHECK_EQ_INT(g.why, PS_DROP_NONE);
    CHECK_EQ_STR(g.ids, "user_id:u ios.id:own ");
    g = run("{\"batch\":[{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a\"}],"
            "\"context\":{\"device\":{\"id\":\"d\",\"type\":\"android\"}}}");
    CHECK_EQ_STR(g.ids, "anonymous_id:a android.id:d ");
    /* trait null means remove */
    g = run("{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{\"plan\":null}}");
    CHECK_EQ_STR(g.trait0, "plan=null(remove)");
end:
    ps_rules_free(rules);
}

static uint64_t next_random(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* A random JSON value: nesting, arrays, numbers, and strings with quotes, backslashes,
 * braces and control bytes, so the raw scanner meets every kind of byte. */
static cJSON *random_value(uint64_t *s, int depth);

static cJSON *random_object(uint64_t *s, int depth)
{
    static const char *const names[] = {"context", "properties", "type", "c", "x\"y", ""};
    cJSON *o = cJSON_CreateObject();
    int n = (int)(next_random(s) % 6);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToObject(o, names[next_random(s) % 6], random_value(s, depth + 1));
    return o;
}

static cJSON *random_value(uint64_t *s, int depth)
{
    static const char pieces[] = "a\"\\{}[],: \n\x01\xc3\xa9";
    switch (depth > 4 ? next_random(s) % 3 : next_random(s) % 5) {
    case 0: {
        char str[16];
        size_t n = next_random(s) % sizeof str;
        for (size_t i = 0; i < n; i++)
            str[i] = pieces[next_random(s) % (sizeof pieces - 3)]; /* ASCII pieces only */
        str[n] = 0;
        return cJSON_CreateString(str);
    }
    case 1: return cJSON_CreateNumber((double)(int64_t)(next_random(s) % 2000) / 8.0 - 100);
    case 2: return next_random(s) % 2 ? cJSON_CreateNull() : cJSON_CreateTrue();
    case 3: return random_object(s, depth);
    default: {
        cJSON *a = cJSON_CreateArray();
        for (int i = (int)(next_random(s) % 4); i > 0; i--)
            cJSON_AddItemToArray(a, random_value(s, depth + 1));
        return a;
    }
    }
}

/* The raw-span reader of stored bodies must agree with cJSON, and fall back to it when the
 * text is unusual (escaped keys). */
static void body_members(void)
{
    static const char *const keys[] = {"context", "properties"};
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"{\"type\":\"track\",\"properties\":{\"a\":[1,{\"b\":\"}]\\\"\"}]},\"context\":{}}",
         ",\"context\":{},\"properties\":{\"a\":[1,{\"b\":\"}]\\\"\"}]}"},
        {"{ \"context\" : { \"ip\" : \"1.2.3.4\" } , \"n\": -1.5e3, \"t\":true }",
         ",\"context\":{ \"ip\" : \"1.2.3.4\" },\"properties\":null"},
        {"{\"prop\\u0065rties\":1,\"context\":2}", ",\"context\":2,\"properties\":1"},
        {"{\"properties\":\"x,}\",\"context\":null}", ",\"context\":null,\"properties\":\"x,}\""},
        {"[1,2]", ",\"context\":null,\"properties\":null"},
        /* the first of duplicated keys, as cJSON; nested namesakes never match */
        {"{\"x\":{\"context\":1},\"context\":2,\"context\":3,\"properties\":[\"\\\\\"]}",
         ",\"context\":2,\"properties\":[\"\\\\\"]"},
        {"{\"a\":[[[{\"b\":[]}]]],\"properties\":{\"c\":\"{[\"}}",
         ",\"context\":null,\"properties\":{\"c\":\"{[\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ps_buf b;
        ps_buf_init(&b);
        ps_event_body_members(PS_SLICE_STR(cases[i].body), keys, 2, &b);
        ps_buf_putc(&b, 0);
        int same = strcmp((const char *)b.ptr, cases[i].want) == 0;
        if (!same)
            fprintf(stderr, "  case %zu: %s\n", i, (const char *)b.ptr);
        ps_buf_clear(&b);
        CHECK(same);
    }
    /* random documents, printed by cJSON, read both ways */
    uint64_t seed = 42;
    for (int round = 0; round < 300; round++) {
        cJSON *doc = random_object(&seed, 0);
        char *text = cJSON_PrintUnformatted(doc);
        ps_buf raw, want;
        ps_buf_init(&raw);
        ps_buf_init(&want);
        ps_event_body_members(PS_SLICE_STR(text), keys, 2, &raw);
        for (size_t k = 0; k < 2; k++) {
            char *v = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(doc, keys[k]));
            ps_buf_printf(&want, ",\"%s\":%s", keys[k], v ? v : "null");
            cJSON_free(v);
        }
        bool same = raw.len == want.len && memcmp(raw.ptr, want.ptr, raw.len) == 0;
        if (!same)
            fprintf(stderr, "  round %d: %s\n", round, text);
        ps_buf_clear(&raw);
        ps_buf_clear(&want);
        cJSON_free(text);
        cJSON_Delete(doc);
        CHECK(same);
    }
end:;
}

/* The Tracking API finds writeKey without a full parse; odd shapes go to cJSON, and
 * anything that is not a plain string is no key. */
static void write_key(void)
{
    static const struct {
        const char *body, *want; /* NULL: no key */
    } cases[] = {
        {"{\"writeKey\":\"abc123\",\"batch\":[]}", "abc123"},
        {"{\"batch\":[{\"writeKey\":\"inner\"}], \"writeKey\" : \"outer\"}", "outer"},
        {"{\"batch\":[]}", NULL},
        {"{\"writeKey\":123}", NULL},
        {"{\"writeKey\":null}", NULL},
        {"{\"writeKey\":\"a\\\"b\"}", "a\"b"},                /* escapes are decoded */
        {"{\"writeKey\":\"a\\u0000b\"}", NULL},               /* a NUL would cut the key short */
        {"{\"writeKey\":\"k1\"}{\"writeKey\":\"k2\"}", NULL}, /* not one JSON value */
        {"{\"write\\u004bey\":\"esc\"}", "esc"},              /* escaped name: the full parser */
        {"{\"writeKey\":\"", NULL},                           /* truncated */
        {"[\"writeKey\"]", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char key[16] = "unchanged";
        bool found = ps_event_write_key((const uint8_t *)cases[i].body, strlen(cases[i].body), key,
                                        sizeof key);
        bool ok = cases[i].want ? found && strcmp(key, cases[i].want) == 0 : !found;
        if (!ok)
            fprintf(stderr, "  case %zu: found %d %s\n", i, found, key);
        CHECK(ok);
    }
    char small[4];
    CHECK(!ps_event_write_key((const uint8_t *)"{\"writeKey\":\"toolong\"}", 23, small,
                              sizeof small));
end:;
}

/* Collects every callback of a parse: drops by index and accepted bodies. */
typedef struct seen {
    size_t calls, accepted;
    ps_drop why[8];
    char body[8][512];
    char ids[8][1024];
    size_t drops[PS_DROP__COUNT];
} seen;

static ps_status collect(void *ud, const ps_event *ev, ps_drop why, size_t index)
{
    seen *s = ud;
    s->calls++;
    s->drops[why]++;
    if (index < 8) {
        s->why[index] = why;
        if (ev) {
            snprintf(s->body[index], sizeof s->body[index], "%.*s", (int)ev->body.len,
                     (const char *)ev->body.ptr);
            for (size_t i = 0; i < ev->id_count; i++) {
                size_t n = strlen(s->ids[index]);
                snprintf(s->ids[index] + n, sizeof s->ids[index] - n, "%s:%s ", ev->ids[i].type,
                         ev->ids[i].value);
            }
        }
    }
    if (ev)
        s->accepted++;
    return PS_OK;
}

static ps_status parse_into(const char *json, size_t len, seen *s, ps_drop *why)
{
    memset(s, 0, sizeof *s);
    ps_arena a;
    ps_arena_init(&a);
    ps_rules *r = ps_rules_default();
    ps_accept_opts o = {.rules = r, .now_ms = 1700000000000LL, .source_id = "src"};
    ps_status st = ps_event_parse((const uint8_t *)json, len, &o, &a, collect, s, why);
    ps_arena_clear(&a);
    ps_rules_free(r);
    return st;
}

/* One JSON reader for every message: trailing data, raw control characters and \u0000 are
 * refused, for single messages and batch items alike. */
static void strict_json(void)
{
    seen s;
    ps_drop why;
    const char *two = "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u1\"}"
                      "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u2\"}";
    CHECK_EQ_INT(parse_into(two, strlen(two), &s, &why), PS_EINVAL);
    CHECK_EQ_INT(why, PS_DROP_TRAILING_DATA);
    CHECK_EQ_INT(s.calls, 0);
    const char *ctl = "{\"type\":\"track\",\"event\":\"E\\u0001\",\"userId\":\"u\x01v\"}";
    CHECK_EQ_INT(parse_into(ctl, strlen(ctl), &s, &why), PS_EINVAL);
    CHECK_EQ_INT(why, PS_DROP_CONTROL_CHARACTER);
    const char *escaped = "{\"type\":\"track\",\"event\":\"E\\u0001\",\"userId\":\"u\\tv\"}";
    CHECK_EQ_INT(parse_into(escaped, strlen(escaped), &s, &why), PS_OK);
    CHECK_EQ_INT(s.accepted, 1);
    const char *nul = "{\"type\":\"identify\",\"userId\":\"victim\\u0000suffix\"}";
    CHECK_EQ_INT(parse_into(nul, strlen(nul), &s, &why), PS_EINVAL);
    CHECK_EQ_INT(why, PS_DROP_NUL_CHARACTER);
    const char *nul_key = "{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{\"ab\\u0000c\":1}}";
    CHECK_EQ_INT(parse_into(nul_key, strlen(nul_key), &s, &why), PS_EINVAL);
    CHECK_EQ_INT(why, PS_DROP_NUL_CHARACTER);
    /* an escaped backslash before "u0000" is no NUL */
    const char *not_nul = "{\"type\":\"identify\",\"userId\":\"a\\\\u0000b\"}";
    CHECK_EQ_INT(parse_into(not_nul, strlen(not_nul), &s, &why), PS_OK);
    CHECK_EQ_STR(s.ids[0], "user_id:a\\u0000b ");
    /* in a batch only the item with the NUL goes */
    const char *batch = "{\"batch\":[{\"type\":\"identify\",\"userId\":\"a\\u0000b\"},"
                        "{\"type\":\"identify\",\"userId\":\"ok\"}]}";
    CHECK_EQ_INT(parse_into(batch, strlen(batch), &s, &why), PS_OK);
    CHECK_EQ_INT(s.why[0], PS_DROP_NUL_CHARACTER);
    CHECK_EQ_INT(s.why[1], PS_DROP_NONE);
    CHECK_EQ_STR(s.ids[1], "user_id:ok ");
    const char *tail = "{\"batch\":[{\"type\":\"identify\",\"userId\":\"u\"}]} []";
    CHECK_EQ_INT(parse_into(tail, strlen(tail), &s, &why), PS_EINVAL);
    CHECK_EQ_INT(why, PS_DROP_TRAILING_DATA);
end:;
}

/* The envelope's context, integrations and sentAt go into each item (shallow: the item's own
 * members win), in text, without re-serializing the item. */
static void envelope_merge(void)
{
    seen s;
    ps_drop why;
    const char *batch =
        "{\"context\":{\"a\":1,\"b\":2,\"a\":9},\"integrations\":{\"X\":true},"
        "\"sentAt\":\"2024-01-01T00:00:00Z\",\"batch\":["
        "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u1\"},"
        "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u2\",\"context\":{\"b\":3,\"c\":4}},"
        "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u3\",\"context\":{}},"
        "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u4\",\"context\":null,"
        "\"sentAt\":\"2024-01-01T00:00:01Z\",\"integrations\":{\"X\":false}},"
        "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u5\",\"context\":{\"\\u0061\":0}}]}";
    CHECK_EQ_INT(parse_into(batch, strlen(batch), &s, &why), PS_OK);
    CHECK_EQ_INT(s.accepted, 5);
    CHECK_EQ_STR(s.body[0], "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u1\",\"context\":"
                            "{\"a\":1,\"b\":2,\"a\":9},\"integrations\":{\"X\":true},\"sentAt\":"
                            "\"2024-01-01T00:00:00Z\"}");
    CHECK_EQ_STR(s.body[1], "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u2\",\"context\":"
                            "{\"b\":3,\"c\":4,\"a\":1},\"integrations\":{\"X\":true},\"sentAt\":"
                            "\"2024-01-01T00:00:00Z\"}");
    CHECK_EQ_STR(s.body[2], "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u3\",\"context\":"
                            "{\"a\":1,\"b\":2},\"integrations\":{\"X\":true},\"sentAt\":"
                            "\"2024-01-01T00:00:00Z\"}");
    CHECK_EQ_STR(s.body[3], "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u4\",\"context\":"
                            "null,\"sentAt\":\"2024-01-01T00:00:01Z\",\"integrations\":"
                            "{\"X\":false}}");
    CHECK_EQ_STR(s.body[4], "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u5\",\"context\":"
                            "{\"\\u0061\":0,\"b\":2},\"integrations\":{\"X\":true},\"sentAt\":"
                            "\"2024-01-01T00:00:00Z\"}");
    /* identifiers come from the merged context */
    const char *ids = "{\"context\":{\"traits\":{\"email\":\"e@x.io\"}},\"batch\":["
                      "{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u1\"}]}";
    CHECK_EQ_INT(parse_into(ids, strlen(ids), &s, &why), PS_OK);
    CHECK_EQ_STR(s.ids[0], "user_id:u1 email:e@x.io ");
end:;
}

/* A large envelope cannot multiply: the merged size is known before anything is built, each
 * item stays under 32 KB and the whole batch under PS_BATCH_EXPANDED_MAX_BYTES. */
static void envelope_bounds(void)
{
    seen s;
    ps_drop why;
    ps_buf b;
    ps_buf_init(&b);
    ps_buf_puts(&b, "{\"context\":{");
    for (int i = 0; i < 30000; i++)
        ps_buf_printf(&b, "%s\"k%d\":1", i ? "," : "", i);
    ps_buf_puts(&b, "},\"batch\":[");
    for (int i = 0; i < 2500; i++)
        ps_buf_printf(&b, "%s{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\"}", i ? "," : "");
    ps_buf_puts(&b, "]}");
    CHECK(b.len < PS_BATCH_MAX_BYTES);
    CHECK_EQ_INT(parse_into((const char *)b.ptr, b.len, &s, &why), PS_OK);
    CHECK_EQ_INT(s.calls, 2500);
    CHECK_EQ_INT(s.drops[PS_DROP_TOO_LARGE], 2500);

    /* a 30 KB context fits each item, but not 2,500 times */
    ps_buf_reset(&b);
    ps_buf_puts(&b, "{\"context\":{\"pad\":\"");
    for (int i = 0; i < 30000; i++)
        ps_buf_putc(&b, 'x');
    ps_buf_puts(&b, "\"},\"batch\":[");
    for (int i = 0; i < 2500; i++)
        ps_buf_printf(&b, "%s{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\"}", i ? "," : "");
    ps_buf_puts(&b, "]}");
    CHECK_EQ_INT(parse_into((const char *)b.ptr, b.len, &s, &why), PS_OK);
    CHECK_EQ_INT(s.calls, 2500);
    CHECK(s.accepted > 100 && s.accepted < 2500);
    CHECK(s.accepted * 30000 <= PS_BATCH_EXPANDED_MAX_BYTES);
    CHECK_EQ_INT(s.drops[PS_DROP_TOO_LARGE], 2500 - s.accepted);

    /* many duplicate envelope keys and items with their own context: work stays linear */
    ps_buf_reset(&b);
    ps_buf_puts(&b, "{\"context\":{");
    for (int i = 0; i < 55000; i++)
        ps_buf_puts(&b, i ? ",\"a\":0" : "\"a\":0");
    ps_buf_puts(&b, "},\"batch\":[");
    for (int i = 0; i < 2500; i++)
        ps_buf_printf(&b, "%s{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"context\":{}}",
                      i ? "," : "");
    ps_buf_puts(&b, "]}");
    CHECK(b.len < PS_BATCH_MAX_BYTES);
    CHECK_EQ_INT(parse_into((const char *)b.ptr, b.len, &s, &why), PS_OK);
    CHECK_EQ_INT(s.accepted, 2500);
    CHECK(strstr(s.body[0], "\"context\":{\"a\":0}") != NULL);

    /* too many items: each dropped, none read */
    ps_buf_reset(&b);
    ps_buf_puts(&b, "{\"batch\":[");
    for (int i = 0; i < 100000; i++)
        ps_buf_puts(&b, i ? ",0" : "0");
    ps_buf_puts(&b, "]}");
    CHECK_EQ_INT(parse_into((const char *)b.ptr, b.len, &s, &why), PS_OK);
    CHECK_EQ_INT(s.drops[PS_DROP_TOO_MANY_ITEMS], 100000);
end:
    ps_buf_clear(&b);
}

/* An identifier over 400 bytes is kept, cut, for its violation record: cut at a character
 * boundary and trimmed, like every other value. */
static void long_identifier_cut(void)
{
    seen s;
    ps_drop why;
    char json[1024], value[512];
    memset(value, 'a', 399);
    strcpy(value + 399, "\xc3\xa9z"); /* an e-acute across byte 400 */
    snprintf(json, sizeof json, "{\"type\":\"identify\",\"userId\":\"%s\"}", value);
    CHECK_EQ_INT(parse_into(json, strlen(json), &s, &why), PS_OK);
    CHECK_EQ_INT(strlen(s.ids[0]), strlen("user_id:") + 399 + 1);
    memset(value, 'a', 399);
    strcpy(value + 399, " zz"); /* a blank at byte 399, the last one kept */
    snprintf(json, sizeof json, "{\"type\":\"identify\",\"userId\":\"%s\"}", value);
    CHECK_EQ_INT(parse_into(json, strlen(json), &s, &why), PS_OK);
    CHECK_EQ_INT(strlen(s.ids[0]), strlen("user_id:") + 399 + 1);
end:;
}

/* Spans give what a read of the body through gives: the first occurrence of each member,
 * nothing for an absent one. */
static void body_spans(void)
{
    static const char *const bodies[] = {
        "{\"type\":\"track\",\"properties\":{\"a\":[1,{\"b\":\"}\"}]},\"context\":{\"ip\":\"1\"}}",
        "{\"context\":null,\"x\":\"\\\"context\\\"\",\"context\":{\"later\":1}}",
        "{ \"event\" : \"E\" }",
        "[1,2]",
    };
    static const char *const keys[] = {"context", "properties"};
    ps_buf want, have;
    ps_buf_init(&want);
    ps_buf_init(&have);
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        ps_slice body = PS_SLICE_STR(bodies[i]);
        ps_body_spans sp;
        bool object = ps_event_body_spans(body, &sp);
        CHECK(object == (bodies[i][0] == '{'));
        ps_buf_reset(&want);
        ps_buf_reset(&have);
        ps_event_body_members(body, keys, 2, &want);
        ps_buf_puts(&have, ",\"context\":");
        if (sp.context_len)
            ps_buf_append(&have, body.ptr + sp.context_at, sp.context_len);
        else
            ps_buf_puts(&have, "null");
        ps_buf_puts(&have, ",\"properties\":");
        if (sp.properties_len)
            ps_buf_append(&have, body.ptr + sp.properties_at, sp.properties_len);
        else
            ps_buf_puts(&have, "null");
        CHECK_EQ_STR((const char *)have.ptr, (const char *)want.ptr);
    }
end:
    ps_buf_clear(&want);
    ps_buf_clear(&have);
}

static const test_case tests[] = {
    {"body_members", body_members},
    {"body_spans", body_spans},
    {"write_key", write_key},
    {"default_locations", default_locations},
    {"never_identifiers_and_blocked", never_identifiers_and_blocked},
    {"custom_and_external_ids", custom_and_external_ids},
    {"drops", drops},
    {"stamps_and_batches", stamps_and_batches},
    {"strict_json", strict_json},
    {"envelope_merge", envelope_merge},
    {"envelope_bounds", envelope_bounds},
    {"long_identifier_cut", long_identifier_cut},
};
TEST_MAIN(tests)
