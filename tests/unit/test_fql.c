/* SPDX-License-Identifier: MIT */
/* fql: every operator and function, null handling, escapes, and the compile errors. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "ps/fql.h"

static const char *const MSG =
    "{\"type\":\"track\",\"event\":\"Button Clicked\",\"userId\":\"u-1\",\"anonymousId\":null,"
    "\"context\":{\"library\":{\"name\":\"analytics.js\",\"version\":\"1.0\"},"
    "\"page\":{\"path\":\"/internal/admin\"},\"ip\":\"10.0.0.7\"},"
    "\"properties\":{\"features\":[\"discounts\",\"dark-mode\"],\"price\":19.99,\"qty\":3,"
    "\"product 1\":{\"price\":\"19.99\"},\"a.b\":true,\"flag\":false,\"empty\":\"\","
    "\"camel\":\"userSignedUp HTTPServer v2\",\"n\":\"42\",\"obj\":{\"x\":1,\"y\":2},"
    "\"tags\":[1,\"1\",null],\"unicode\":\"\xc3\xa9t\xc3\xa9\"}}";

/* 1 match, 0 no match, -1 compile error */
static int run(const cJSON *msg, const char *q)
{
    ps_fql *f;
    char err[200];
    if (ps_fql_compile(q, strlen(q), &f, err, sizeof err) != PS_OK)
        return -1;
    int r = ps_fql_matches(f, msg);
    ps_fql_free(f);
    return r;
}

static const struct {
    const char *q;
    int want;
} cases[] = {
    /* paths, equality, escapes */
    {"type = 'track'", 1},
    {"type = \"track\"", 1},
    {"type == 'track'", 1},
    {"type != 'track'", 0},
    {"event = 'Button Clicked'", 1},
    {"context.library.name = 'analytics.js'", 1},
    {"context.library.version = '1.0'", 1},
    {"context.library.version = 1.0", 0}, /* a string is not a number */
    {"properties.product\\ 1.price = '19.99'", 1},
    {"properties.a\\.b = true", 1},
    {"properties.a.b = true", 0},
    {"properties.missing = null", 1},
    {"anonymousId = null", 1},
    {"userId = null", 0},
    {"properties.features.1 = 'dark-mode'", 1},
    {"'it''s' = 'x'", -1},
    {"'it\\'s' != 'x'", 1},
    /* comparisons */
    {"properties.price > 19", 1},
    {"properties.price >= 19.99", 1},
    {"properties.price < 20", 1},
    {"properties.price <= 19.98", 0},
    {"properties.qty = 3", 1},
    {"properties.qty = 3.0", 1},
    {"properties.qty > -1", 1},
    {"properties.qty > 1e1", 0},
    {"properties.n > 5", 0},       /* a string does not order against a number */
    {"properties.n < '5'", 1},     /* strings order byte-wise */
    {"properties.missing > 0", 0}, /* null orders against nothing */
    {"properties.missing < 0", 0},
    /* boolean operators and grouping */
    {"type = 'track' and userId = 'u-1'", 1},
    {"type = 'track' and userId = 'x'", 0},
    {"type = 'x' or userId = 'u-1'", 1},
    {"type = 'x' or userId = 'x' or event = 'Button Clicked'", 1},
    {"!(type = 'x')", 1},
    {"!type = 'track'", 0}, /* ! takes the whole comparison */
    {"!type = 'page'", 1},
    {"! properties.flag", 1},
    {"!properties.missing", 1},
    {"!!properties.a\\.b", 1},
    {"(type = 'x' or type = 'track') and !(userId = 'x')", 1},
    {"type = 'x' or type = 'track' and userId = 'x'", 0}, /* and before or */
    {"properties.flag", 0},
    {"properties.a\\.b", 1},
    {"type", 0}, /* only the boolean true matches */
    /* in */
    {"type in ['page', 'track']", 1},
    {"type in ['page', 'screen']", 0},
    {"properties.qty in [1, 2, 3]", 1},
    {"'discounts' in properties.features", 1},
    {"'premium' in properties.features", 0},
    {"null in properties.tags", 1},
    {"1 in properties.tags", 1},
    {"type in 'track'", 0},
    {"type in []", 0},
    /* contains */
    {"contains(context.page.path, '/internal')", 1},
    {"contains(context.page.path, 'nope')", 0},
    {"contains(properties.missing, 'a')", 0},
    {"contains(event, '')", 1},
    {"contains(properties.features, 'discounts')", 1},
    {"contains(properties.qty, 3)", 0},
    /* length */
    {"length(userId) = 3", 1},
    {"length(properties.unicode) = 3", 1},
    {"length(properties.features) = 2", 1},
    {"length(properties.obj) = 2", 1},
    {"length(properties.missing) = 0", 1},
    {"length(properties.qty) = 0", 1},
    {"length(['a', 'b', 'c']) = 3", 1},
    {"length(properties.empty) > 0", 0},
    /* case */
    {"lowercase(event) = 'button clicked'", 1},
    {"uppercase(event) = 'BUTTON CLICKED'", 1},
    {"lowercase(properties.missing) = null", 1},
    {"lowercase(properties.qty) = null", 1},
    {"uppercase(null) = null", 1},
    {"snakecase(properties.camel) = 'user_signed_up_http_server_v2'", 1},
    {"kebabcase(properties.camel) = 'user-signed-up-http-server-v2'", 1},
    {"titlecase(properties.camel) = 'User Signed Up Http Server V2'", 1},
    {"snakecase(event) = 'button_clicked'", 1},
    {"kebabcase('  --Hello__World--  ') = 'hello-world'", 1},
    {"titlecase('hello world') = 'Hello World'", 1},
    {"snakecase(null) = null", 1},
    /* typeof */
    {"typeof(userId) = 'string'", 1},
    {"typeof(properties.qty) = 'number'", 1},
    {"typeof(properties.flag) = 'bool'", 1},
    {"typeof(properties.features) = 'list'", 1},
    {"typeof(properties.obj) = 'object'", 1},
    {"typeof(properties.missing) = 'null'", 1},
    {"typeof(anonymousId) = 'null'", 1},
    {"typeof([1]) = 'list'", 1},
    /* match: full-string, case-sensitive glob */
    {"match(event, 'Button *')", 1},
    {"match(event, 'button *')", 0},
    {"match(event, 'Button')", 0},
    {"match(event, '*Click*')", 1},
    {"match(userId, 'u-?')", 1},
    {"match(userId, 'u-?"
     "?')",
     0}, /* split: no trigraph */
    {"match(userId, 'u-[0-9]')", 1},
    {"match(userId, 'u-[!0-9]')", 0},
    {"match(userId, '[abu]-1')", 1},
    {"match(context.ip, '10.*.*.*')", 1},
    {"match('a*b', 'a\\\\*b')", 1},
    {"match('axb', 'a\\\\*b')", 0},
    {"match('[x', '[x')", 1},
    {"match(properties.missing, '*')", 0},
    {"match('', '*')", 1},
    {"match('abc', '*a*b*c*')", 1},
    {"match('abcabd', '*abd')", 1},
    {"match(properties.unicode, '?t?')", 1}, /* ? is one character, not one byte */
    {"match(properties.unicode, '?" "?t?" "?')", 0},
    /* conversions */
    {"bool(properties.a\\.b)", 1},
    {"bool('true')", 1},
    {"bool('1')", 1},
    {"bool('false')", 0},
    {"bool('yes')", 0},
    {"bool(0)", 0},
    {"bool(2)", 1},
    {"bool(null)", 0},
    {"bool(properties.features)", 1},
    {"string(properties.qty) = '3'", 1},
    {"string(properties.price) = '19.989999999999998'", 1},
    {"string(true) = 'true'", 1},
    {"string(null) = 'null'", 1},
    {"string(userId) = 'u-1'", 1},
    {"number(properties.n) = 42", 1},
    {"number(properties.n) > 41.5", 1},
    {"number('4x') = null", 1},
    {"number('0x10') = null", 1},
    {"number(' 1') = null", 1},
    {"number(true) = 1", 1},
    {"number(null) = null", 1},
    {"number(properties.qty) = 3", 1},
    /* nesting */
    {"lowercase(uppercase(event)) = 'button clicked'", 1},
    {"length(lowercase(event)) = 14", 1},
    {"contains(lowercase(context.page.path), 'admin') and !match(userId, 'test-*')", 1},
};

static void operators_and_functions(void)
{
    cJSON *msg = cJSON_Parse(MSG);
    CHECK(msg != NULL);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int got = run(msg, cases[i].q);
        if (got != cases[i].want)
            fprintf(stderr, "  query %s: got %d, want %d\n", cases[i].q, got, cases[i].want);
        CHECK_EQ_INT(got, cases[i].want);
    }
end:
    cJSON_Delete(msg);
}

static void errors_name_the_position(void)
{
    static const struct {
        const char *q, *err;
    } bad[] = {
        {"", "at 0: the query ends where a value is expected"},
        {"userId = oops\"", "at 13: unexpected '\"' after a complete expression"},
        {"type = 'track", "at 7: a string is not closed: add the ' it needs"},
        {"(type = 'a'", "at 11: expected ')'"},
        {"type = ", "at 7: the query ends where a value is expected"},
        {"type in ['a' 'b']", "at 13: expected ',' or ']' in the list"},
        {"nosuch(type)", "at 0: unknown function 'nosuch' (contains, length, lowercase, "
                         "uppercase, snakecase, kebabcase, titlecase, typeof, match, bool, "
                         "string, number)"},
        {"length(a, b)", "at 0: length() takes 1 argument, not 2"},
        {"match(a)", "at 0: match() takes 2 arguments, not 1"},
        {"type = 1.2.3", "at 7: '1.2.3' is not a number"},
        {"type = @", "at 7: unexpected '@'"},
        {"a..b = 1", "at 2: expected a field name"},
        {"type = 'a' and", "at 14: the query ends where a value is expected"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ps_fql *f = NULL;
        char err[300];
        CHECK(ps_fql_compile(bad[i].q, strlen(bad[i].q), &f, err, sizeof err) == PS_EINVAL);
        CHECK(f == NULL);
        CHECK_EQ_STR(err, bad[i].err);
    }
end:;
}

static void bounds(void)
{
    ps_fql *f = NULL;
    char err[200];
    size_t n = PS_FQL_MAX_BYTES + 1;
    char *big = malloc(n + 1);
    CHECK(big != NULL);
    memset(big, 'a', n);
    big[n] = 0;
    CHECK(ps_fql_compile(big, n, &f, err, sizeof err) == PS_EINVAL);
    CHECK(strstr(err, "at most 4096") != NULL);
    /* nesting past the depth limit is refused, not a stack overflow */
    memset(big, '(', 200);
    strcpy(big + 200, "true");
    CHECK(ps_fql_compile(big, strlen(big), &f, err, sizeof err) == PS_EINVAL);
    CHECK(strstr(err, "nests too deeply") != NULL);
    memset(big, '!', 200);
    strcpy(big + 200, "true");
    CHECK(ps_fql_compile(big, strlen(big), &f, err, sizeof err) == PS_EINVAL);
    /* too many operands */
    size_t at = 0;
    for (int i = 0; i < 600 && at + 16 < n; i++)
        at += (size_t)sprintf(big + at, "%sa=%d", i ? " or " : "", i % 10);
    CHECK(ps_fql_compile(big, at, &f, err, sizeof err) == PS_EINVAL);
    CHECK(strstr(err, "too long") != NULL);
    /* a NUL inside is refused */
    CHECK(ps_fql_compile("a = 1\0b", 7, &f, err, sizeof err) == PS_EINVAL);
    /* string functions over more text than the scratch holds give null, not a crash */
    cJSON *msg = cJSON_CreateObject();
    char *longs = malloc(20000);
    CHECK(msg != NULL && longs != NULL);
    memset(longs, 'A', 19999);
    longs[19999] = 0;
    cJSON_AddStringToObject(msg, "s", longs);
    CHECK_EQ_INT(run(msg, "lowercase(s) = null"), 1);
    CHECK_EQ_INT(run(msg, "length(s) = 19999"), 1);
    cJSON_Delete(msg);
    free(longs);
end:
    free(big);
}

static const test_case tests[] = {
    {"operators_and_functions", operators_and_functions},
    {"errors_name_the_position", errors_name_the_position},
    {"bounds", bounds},
};
TEST_MAIN(tests)
