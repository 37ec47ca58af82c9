/* SPDX-License-Identifier: MIT */
/* rules: defaults, ranking, blocked values (suggested and presets), validation. */
#include <stdio.h>
#include <string.h>
#include <time.h>

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
    const char *want[] = {"$.identifiers.user_id.limit",
                          "$.identifiers.user_id.frequency",
                          "$.identifiers.Bad Type",
                          "$.identifiers.phone.keys[0]",
                          "$.identifiers.phone.blocked[0]",
                          "$.dedup_window_hours",
                          "$.surprise"};
    for (size_t i = 0; i < 7; i++)
        CHECK_EQ_STR(d.items[i].path, want[i]);
    CHECK(parse("[1,2]", &d) == NULL);
    CHECK_EQ_STR(d.items[0].path, "$");
    CHECK(parse("{\"identifiers\":", &d) == NULL);
    CHECK(strstr(d.items[0].message, "not valid JSON") != NULL);
    /* the strict reader: a second document, or a NUL in a key, is refused */
    CHECK(parse("{} {}", &d) == NULL);
    CHECK(strstr(d.items[0].message, "after the JSON value") != NULL);
    CHECK(parse("{\"merge_limit\\u0000x\":1}", &d) == NULL);
    CHECK(strstr(d.items[0].message, "\\u0000") != NULL);
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
                        NULL),
             *back = NULL;
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

/* Rules with one space-wide blocked regex, or NULL (with `d` filled) when it is refused. */
static ps_rules *with_regex(const char *pattern, ps_diags *d)
{
    ps_buf json;
    ps_buf_init(&json);
    ps_buf_puts(&json, "{\"suggested_blocked\":false,\"blocked\":[{\"kind\":\"regex\",\"value\":");
    ps_buf_json_str(&json, pattern, strlen(pattern));
    ps_buf_puts(&json, "}]}");
    ps_rules *r = parse((const char *)json.ptr, d);
    ps_buf_clear(&json);
    return r;
}

static void regex_cannot_escape_whole_value(void)
{
    ps_diags d;
    /* these closed the old "^(...)$" wrapper early; now they are unbalanced patterns */
    ps_rules *r = with_regex("x)|(.*", &d);
    CHECK(r == NULL);
    CHECK_EQ_INT(d.count, 1);
    CHECK_EQ_STR(d.items[0].path, "$.blocked[0]");
    CHECK(strstr(d.items[0].message, "invalid regular expression") != NULL);
    CHECK(with_regex("a)|(b", &d) == NULL);
    CHECK_EQ_STR(d.items[0].path, "$.blocked[0]");
    /* an alternation is whole-value on each side, with no wrapper to break out of */
    r = with_regex("a|b", &d);
    CHECK(r != NULL);
    CHECK(ps_rules_blocked(r, "user_id", "a"));
    CHECK(ps_rules_blocked(r, "user_id", "b"));
    CHECK(!ps_rules_blocked(r, "user_id", "ab"));
    CHECK(!ps_rules_blocked(r, "user_id", "zzzb"));
    CHECK(!ps_rules_blocked(r, "user_id", "anything"));
    ps_rules_free(r);
    r = with_regex("ab", &d);
    CHECK(r != NULL);
    CHECK(ps_rules_blocked(r, "user_id", "ab"));
    CHECK(!ps_rules_blocked(r, "user_id", "xaby"));
    CHECK(!ps_rules_blocked(r, "user_id", "xab"));
    CHECK(!ps_rules_blocked(r, "user_id", "abx"));
    ps_rules_free(r);
    /* '$' is the end of the value, not a place before a final newline; '.' takes a newline */
    r = with_regex("a.c$", &d);
    CHECK(r != NULL);
    CHECK(ps_rules_blocked(r, "user_id", "a\nc"));
    CHECK(!ps_rules_blocked(r, "user_id", "abc\n"));
    ps_rules_free(r);
    /* values are matched as UTF-8 characters; an invalid value is not blocked by a regex */
    r = with_regex("caf.", &d);
    CHECK(r != NULL);
    CHECK(ps_rules_blocked(r, "user_id", "caf\xc3\xa9"));
    CHECK(!ps_rules_blocked(r, "user_id", "caf\xc3"));
    ps_rules_free(r);
    r = NULL;
end:
    ps_rules_free(r);
}

static void suggested_regex_still_works(void)
{
    ps_rules *r = ps_rules_default();
    CHECK(ps_rules_blocked(r, "user_id", "000"));
    CHECK(ps_rules_blocked(r, "user_id", "-"));
    CHECK(ps_rules_blocked(r, "user_id", "0-0-"));
    CHECK(!ps_rules_blocked(r, "user_id", "012"));
    CHECK(!ps_rules_blocked(r, "user_id", "000\n"));
    CHECK(!ps_rules_blocked(r, "user_id", "\xff")); /* not UTF-8: no regex match, no crash */
end:
    ps_rules_free(r);
}

static void regex_compile_cost_is_bounded(void)
{
    ps_diags d;
    ps_rules *r = NULL;
    /* nested counted repeats: PCRE2 refuses the compiled size before building it */
    CHECK(with_regex("((a{1,100}){1,100}){1,100}", &d) == NULL);
    CHECK_EQ_INT(d.count, 1);
    CHECK_EQ_STR(d.items[0].path, "$.blocked[0]");
    CHECK(strstr(d.items[0].message, "too complex") != NULL);
    /* a one-character repeat compiles small whatever its count: the count itself is bounded */
    CHECK(with_regex("x{1,32767}", &d) == NULL);
    CHECK_EQ_STR(d.items[0].path, "$.blocked[0]");
    CHECK(strstr(d.items[0].message, "repeat count 32767 over 400") != NULL);
    CHECK(with_regex("[a-z]{401}", &d) == NULL);
    CHECK(with_regex("x{,1000}", &d) == NULL);
    r = with_regex("x{1,400}", &d); /* as long as the longest value: allowed */
    CHECK(r != NULL);
    ps_rules_free(r);
    /* braces that are not repeats do not count */
    r = with_regex("\\x{1000}|[{999}]|\\Q{999}\\E|(?#{999})", &d);
    CHECK(r != NULL);
    CHECK(ps_rules_blocked(r, "user_id", "\xe1\x80\x80"));
    CHECK(ps_rules_blocked(r, "user_id", "{999}"));
    ps_rules_free(r);
    r = NULL;
    /* under PCRE2's own size limit but over ours */
    CHECK(with_regex("(?:(?:ab){1,400}){1,5}", &d) == NULL);
    CHECK(strstr(d.items[0].message, "regex is too complex: compiled size") != NULL);
    CHECK(strstr(d.items[0].message, "bytes over 32768") != NULL);
    /* length and nesting */
    char longest[PS_REGEX_PATTERN_MAX + 2];
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = 0;
    CHECK(with_regex(longest, &d) == NULL);
    CHECK(strstr(d.items[0].message, "too long: 257 bytes over 256") != NULL);
    longest[PS_REGEX_PATTERN_MAX] = 0;
    r = with_regex(longest, &d);
    CHECK(r != NULL);
    ps_rules_free(r);
    r = NULL;
    char nest[2 * (PS_REGEX_NEST_MAX + 1) + 2];
    size_t n = 0;
    for (int i = 0; i <= PS_REGEX_NEST_MAX; i++)
        nest[n++] = '(';
    nest[n++] = 'a';
    for (int i = 0; i <= PS_REGEX_NEST_MAX; i++)
        nest[n++] = ')';
    nest[n] = 0;
    CHECK(with_regex(nest, &d) == NULL);
    CHECK(strstr(d.items[0].message, "too complex") != NULL);
    /* per-type lists name their own path; invalid UTF-8 in a pattern is refused */
    CHECK(parse("{\"identifiers\":{\"email\":{\"blocked\":[\"ok\",{\"value\":\"x{1,32767}\","
                "\"kind\":\"regex\"}]}}}",
                &d) == NULL);
    CHECK_EQ_STR(d.items[0].path, "$.identifiers.email.blocked[1]");
    CHECK(with_regex("\xff", &d) == NULL); /* the JSON reader refuses it first */
    CHECK(strstr(d.items[0].message, "UTF-8") != NULL);
    CHECK(with_regex("a\\Cb", &d) == NULL); /* \C could split a UTF-8 character */
end:
    ps_rules_free(r);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void regex_match_cost_is_bounded(void)
{
    ps_diags d;
    const char *value = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac"; /* 39 a's, then c */
    ps_rules *r = with_regex("(a+)+b", &d);
    CHECK(r != NULL);
    double t0 = seconds();
    CHECK(!ps_rules_blocked(r, "user_id", value));
    ps_rules_free(r);
    /* Here the first branch backtracks 2^39 ways before the second would match: the match
     * limit stops it, and a value whose match was not found within the limits is not blocked,
     * the same answer every time. Without the limit this would not finish. */
    r = with_regex("(a+)+b|a*c", &d);
    CHECK(r != NULL);
    for (int i = 0; i < 3; i++)
        CHECK(!ps_rules_blocked(r, "user_id", value));
    CHECK(ps_rules_blocked(r, "user_id", "aac")); /* short: decided within the limits */
    CHECK(ps_rules_blocked(r, "user_id", "ab"));
    CHECK(seconds() - t0 < 5.0);
    ps_rules_free(r);
    /* a group per character over the longest value stays within the depth and heap limits */
    r = with_regex("(?:(a)|b)*", &d);
    CHECK(r != NULL);
    char longest[PS_VALUE_MAX + 1];
    memset(longest, 'a', PS_VALUE_MAX);
    longest[PS_VALUE_MAX] = 0;
    CHECK(ps_rules_blocked(r, "user_id", longest));
end:
    ps_rules_free(r);
}

static void numbers_out_of_range(void)
{
    ps_diags d;
    ps_rules *r = NULL;
    /* infinities, doubles and integers beyond every integer type, and plain out-of-range */
    const char *bad[] = {
        "1e400",      "-1e400", "1e300", "-1e300", "18446744073709551616", "9223372036854775808",
        "4294967296", "100001", "-1",    "1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"merge_limit\": %s}", bad[i]);
        CHECK_EQ_INT(ps_rules_parse(json, strlen(json), &r, &d), PS_EINVAL);
        CHECK(r == NULL);
        CHECK_EQ_INT(d.count, 1);
        CHECK_EQ_STR(d.items[0].path, "$.merge_limit");
        CHECK_EQ_STR(d.items[0].message, "must be an integer from 0 to 100000");
    }
    CHECK(parse("{\"identifiers\":{\"phone\":{\"limit\":1e400,\"priority\":-1e400}}}", &d) == NULL);
    CHECK_EQ_INT(d.count, 2);
    CHECK_EQ_STR(d.items[0].path, "$.identifiers.phone.limit");
    CHECK_EQ_STR(d.items[1].path, "$.identifiers.phone.priority");
    r = parse("{\"merge_limit\": 100000, \"mapping_limit\": 1e6}", &d);
    CHECK(r != NULL);
    CHECK_EQ_INT(ps_rules_options_get(r)->merge_limit, 100000);
    CHECK_EQ_INT(ps_rules_options_get(r)->mapping_limit, 1000000);
end:
    ps_rules_free(r);
}

static void seen_types_keep_their_collection(void)
{
    ps_buf out;
    ps_buf_init(&out);
    ps_rules *r = ps_rules_default(), *back = NULL;
    CHECK(!ps_rules_type_configured(r, "acct_id"));
    CHECK(ps_rules_type_configured(r, "group_id"));
    const ps_seen_type seen[] = {{"acct_id", PS_ACCOUNTS}, {"zz_id", PS_USERS}};
    ps_rules_to_json_seen(r, seen, 2, &out);
    CHECK(strstr((const char *)out.ptr,
                 "\"acct_id\": {\"rank\": 3, \"priority\": null, \"collection\": \"accounts\"") !=
          NULL);
    CHECK(strstr((const char *)out.ptr,
                 "\"zz_id\": {\"rank\": 15, \"priority\": null, \"collection\": \"users\"") !=
          NULL);
    back = parse((const char *)out.ptr, NULL);
    CHECK(back != NULL);
    CHECK_EQ_INT(ps_rules_type(back, "acct_id")->collection, PS_ACCOUNTS);
end:
    ps_buf_clear(&out);
    ps_rules_free(r);
    ps_rules_free(back);
}

/* Prints `r`, parses the print and prints that again: the two texts must be equal. Returns the
 * parsed rules (owned), or NULL when the print did not parse or the texts differ. */
static ps_rules *round_trip(const ps_rules *r)
{
    ps_buf out, again;
    ps_buf_init(&out);
    ps_buf_init(&again);
    ps_rules_to_json(r, NULL, 0, &out);
    ps_rules *back = parse((const char *)out.ptr, NULL);
    if (back)
        ps_rules_to_json(back, NULL, 0, &again);
    if (back && (out.len != again.len || memcmp(out.ptr, again.ptr, out.len) != 0)) {
        ps_rules_free(back);
        back = NULL;
    }
    ps_buf_clear(&out);
    ps_buf_clear(&again);
    return back;
}

/* A built-in type set to "priority": null keeps that through settings get and set (found by
 * fuzz_settings: the key used to be left out, and parsing brought the default rank back). */
static void priority_null_round_trip(void)
{
    ps_rules *r = parse("{\"identifiers\":{\"user_id\":{\"priority\":null}}}", NULL), *back = NULL;
    CHECK(r != NULL);
    CHECK_EQ_INT(ps_rules_type(r, "user_id")->priority, 0);
    back = round_trip(r);
    CHECK(back != NULL);
    CHECK_EQ_INT(ps_rules_type(back, "user_id")->priority, 0);
end:
    ps_rules_free(r);
    ps_rules_free(back);
}

/* The recommended preset parses, says what docs/identity-settings.md says, and its printed
 * form parses to the same rules. */
static void recommended_preset(void)
{
    ps_diags d = {0};
    const char *json = ps_rules_preset("recommended");
    ps_rules *r = json ? parse(json, &d) : NULL, *back = NULL;
    CHECK(r != NULL);
    CHECK(ps_rules_preset("nope") == NULL);
    if (r == NULL)
        goto end;
    CHECK(ps_rules_options_get(r)->block_shared_values);
    CHECK(ps_rules_blocked(r, "anonymous_id", "undefined")); /* junk_ids */
    const ps_type_rule *anon = ps_rules_type(r, "anonymous_id");
    CHECK_EQ_INT(anon->limit, 1);
    CHECK_EQ_INT(anon->frequency, PS_FREQ_WEEKLY);
    CHECK(ps_rules_rank_cmp(r, "anonymous_id", "ios.id") < 0);
    CHECK(ps_rules_rank_cmp(r, "ios.id", "ios.push_token") < 0);
    CHECK(ps_rules_rank_cmp(r, "ios.push_token", "ios.idfa") < 0);
    char why[200];
    CHECK(ps_rules_blocked_by(r, "anonymous_id", "undefined", why, sizeof why));
    CHECK(strstr(why, "junk_ids") != NULL);
    CHECK(ps_rules_blocked_by(r, "user_id", "null", why, sizeof why));
    CHECK(strstr(why, "suggested") != NULL);
    back = round_trip(r);
    CHECK(back != NULL);
    CHECK(ps_rules_options_get(back)->block_shared_values);
end:
    ps_rules_free(r);
    ps_rules_free(back);
}

static const test_case tests[] = {
    {"defaults", defaults},
    {"recommended_preset", recommended_preset},
    {"ranking", ranking},
    {"blocked", blocked},
    {"validation_names_every_path", validation_names_every_path},
    {"to_json_round_trip", to_json_round_trip},
    {"priority_null_round_trip", priority_null_round_trip},
    {"regex_cannot_escape_whole_value", regex_cannot_escape_whole_value},
    {"suggested_regex_still_works", suggested_regex_still_works},
    {"regex_compile_cost_is_bounded", regex_compile_cost_is_bounded},
    {"regex_match_cost_is_bounded", regex_match_cost_is_bounded},
    {"numbers_out_of_range", numbers_out_of_range},
    {"seen_types_keep_their_collection", seen_types_keep_their_collection},
};
TEST_MAIN(tests)
