/* SPDX-License-Identifier: MIT */
/* rules: defaults (SPEC 16), ranking (6.3), blocked values (6.2, D7), validation (5.5). */
#include <string.h>

#include "check.h"
#include "ps/rules.h"

static ps_rules *parse(const char *json, ps_diags *d)
{
    ps_rules *r = NULL;
    if (ps_rules_parse(json, strlen(json), &r, d) != PS_OK)
        return NULL;
    return r;
}

static void defaults(void)
{
    ps_rules *r = ps_rules_default();
    const ps_type_rule *u = ps_rules_type(r, "user_id"), *e = ps_rules_type(r, "email");
    CHECK_EQ_INT(u->limit, 1);
    CHECK_EQ_INT(u->priority, 1);
    CHECK_EQ_INT(e->limit, 5);
    CHECK_EQ_INT(e->priority, 2);
    CHECK(e->lowercase);
    CHECK_EQ_INT(ps_rules_type(r, "group_id")->collection, PS_ACCOUNTS);
    CHECK(!ps_rules_type(r, "braze_id")->enabled);
    /* an unseen type gets the auto-add defaults */
    const ps_type_rule *x = ps_rules_type(r, "shopify_id");
    CHECK_EQ_INT(x->limit, 5);
    CHECK_EQ_INT(x->frequency, PS_FREQ_EVER);
    CHECK_EQ_INT(ps_rules_options_get(r)->merge_limit, 100);
    CHECK_EQ_INT(ps_rules_options_get(r)->mapping_limit, 1000);
    CHECK_EQ_INT(ps_rules_options_get(r)->dedup_window_ms, 24 * 3600 * 1000LL);
end:
    ps_rules_free(r);
}

static void ranking(void)
{
    ps_rules *r = ps_rules_default();
    /* user_id 1, email 2, then alphabetical: android.id < anonymous_id < ga_client_id */
    CHECK(ps_rules_rank_cmp(r, "user_id", "email") < 0);
    CHECK(ps_rules_rank_cmp(r, "email", "android.id") < 0);
    CHECK(ps_rules_rank_cmp(r, "android.id", "anonymous_id") < 0);
    CHECK(ps_rules_rank_cmp(r, "anonymous_id", "ga_client_id") < 0);
    CHECK(ps_rules_rank_cmp(r, "zeta_id", "anonymous_id") > 0);
    CHECK(ps_rules_rank_cmp(r, "email", "email") == 0);
    ps_rules_free(r);
    /* an explicit priority ranks above every unranked type */
    r = parse("{\"identifiers\":{\"phone\":{\"priority\":3}}}", NULL);
    CHECK(r != NULL);
    CHECK(ps_rules_rank_cmp(r, "phone", "android.id") < 0);
    CHECK(ps_rules_rank_cmp(r, "email", "phone") < 0);
end:
    ps_rules_free(r);
}

static void blocked(void)
{
    ps_rules *r = ps_rules_default();
    CHECK(ps_rules_blocked(r, "user_id", "null"));
    CHECK(ps_rules_blocked(r, "user_id", "-1"));
    CHECK(ps_rules_blocked(r, "anonymous_id", "anonymous"));
    CHECK(ps_rules_blocked(r, "user_id", "0"));
    CHECK(ps_rules_blocked(r, "user_id", "000-00"));
    CHECK(ps_rules_blocked(r, "user_id", "")); /* ^[0-]*$ matches the empty value */
    CHECK(!ps_rules_blocked(r, "user_id", "0a"));
    CHECK(!ps_rules_blocked(r, "user_id", "NULL")); /* exact matches are case-sensitive */
    CHECK(!ps_rules_blocked(r, "user_id", "undefined"));
    ps_rules_free(r);
    r = parse("{\"blocked_presets\":[\"junk_ids\"],\"identifiers\":{\"user_id\":{\"blocked\":"
              "[{\"value\":\"qa-.*\",\"kind\":\"regex\"},\"abc123\"]}}}",
              NULL);
    CHECK(r != NULL);
    CHECK(ps_rules_blocked(r, "email", "undefined"));
    CHECK(ps_rules_blocked(r, "user_id", "qa-7"));
    CHECK(!ps_rules_blocked(r, "user_id", "xqa-7")); /* whole-value match */
    CHECK(ps_rules_blocked(r, "user_id", "abc123"));
    CHECK(!ps_rules_blocked(r, "email", "abc123")); /* per-type list */
    ps_rules_free(r);
    r = parse("{\"suggested_blocked\":false}", NULL);
    CHECK(r != NULL);
    CHECK(!ps_rules_blocked(r, "user_id", "null"));
end:
    ps_rules_free(r);
}

static void validation_names_every_path(void)
{
    ps_diags d;
    ps_rules *r = parse("{\"identifiers\":{\"user_id\":{\"limit\":0,\"frequency\":\"hourly\"},"
                        "\"Bad Type\":{},\"phone\":{\"keys\":[\"Phone\"],\"blocked\":[{\"value\":"
                        "\"(\",\"kind\":\"regex\"}]}},\"dedup_window_hours\":-1,\"surprise\":1}",
                        &d);
    CHECK(r == NULL);
    CHECK_EQ_INT(d.count, 7);
    const char *want[] = {"$.identifiers.user_id.limit", "$.identifiers.user_id.frequency",
                          "$.identifiers.Bad Type", "$.identifiers.phone.keys[0]",
                          "$.identifiers.phone.blocked[0]", "$.dedup_window_hours",
                          "$.surprise"};
    for (size_t i = 0; i < 7; i++)
        CHECK_EQ_STR(d.items[i].path, want[i]);
    CHECK(parse("[1,2]", &d) == NULL);
    CHECK_EQ_STR(d.items[0].path, "$");
    CHECK(parse("{\"identifiers\":", &d) == NULL);
    CHECK(strstr(d.items[0].message, "not valid JSON") != NULL);
end:
    ps_rules_free(r);
}

static void to_json_round_trip(void)
{
    ps_buf out;
    ps_buf_init(&out);
    ps_rules *r = parse("{\"identifiers\":{\"phone\":{\"limit\":2,\"frequency\":\"weekly\","
                        "\"keys\":[\"phone_number\"]}},\"blocked\":[\"x\"],"
                        "\"ingest_rate_limit_per_second\":1000,\"ingest_rate_limit_burst\":50,"
                        "\"api_rate_limit_per_second\":100}",
                        NULL), *back = NULL;
    CHECK(r != NULL);
    const char *seen[] = {"zz_custom"};
    ps_rules_to_json(r, seen, 1, &out);
    back = parse((const char *)out.ptr, NULL);
    CHECK(back != NULL);
    CHECK_EQ_INT(ps_rules_type(back, "phone")->limit, 2);
    CHECK_EQ_INT(ps_rules_type(back, "phone")->frequency, PS_FREQ_WEEKLY);
    CHECK(ps_rules_blocked(back, "email", "x"));
    CHECK_EQ_INT(ps_rules_options_get(back)->ingest_rate_per_second, 1000);
    CHECK_EQ_INT(ps_rules_options_get(back)->ingest_rate_burst, 50);
    CHECK_EQ_INT(ps_rules_options_get(back)->api_rate_per_second, 100);
    CHECK_EQ_INT(ps_rules_options_get(back)->api_rate_burst, 0);
    CHECK(ps_rules_blocked(back, "email", "null"));
    size_t n;
    const ps_custom_key *k = ps_rules_custom_keys(back, &n);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(k[0].camel, "phoneNumber");
    CHECK(strstr((const char *)out.ptr, "\"zz_custom\": {\"rank\": 15") != NULL);
end:
    ps_buf_clear(&out);
    ps_rules_free(r);
    ps_rules_free(back);
}

static const test_case tests[] = {
    {"defaults", defaults},
    {"ranking", ranking},
    {"blocked", blocked},
    {"validation_names_every_path", validation_names_every_path},
    {"to_json_round_trip", to_json_round_trip},
};
TEST_MAIN(tests)
