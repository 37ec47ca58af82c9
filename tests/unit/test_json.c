/* SPDX-License-Identifier: MIT */
/* json: the strict reader's verdict on valid and invalid text, and the raw scanners. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "ps/json.h"

static bool check(const char *s, ps_json_error want, unsigned flags)
{
    ps_json_diag d;
    bool ok = ps_json_check((const uint8_t *)s, strlen(s), flags, &d);
    if (d.error != want || ok != (want == PS_JSON_OK)) {
        fprintf(stderr, "  `%s`: error %d, want %d\n", s, (int)d.error, (int)want);
        return false;
    }
    return true;
}

static void verdicts(void)
{
    static const struct {
        const char *text;
        ps_json_error want;
    } cases[] = {
        {"{}", PS_JSON_OK},
        {" {\"a\" : [1, -0.5e+3, true, false, null, \"x\", {}, []]} \r\n", PS_JSON_OK},
        {"\"\\u00e9\\ud83d\\ude00\\n\\/\"", PS_JSON_OK},
        {"\"caf\xc3\xa9\"", PS_JSON_OK},
        {"0", PS_JSON_OK},
        {"", PS_JSON_EMPTY},
        {"  \n", PS_JSON_EMPTY},
        {"{\"a\":1}{\"b\":2}", PS_JSON_TRAILING},
        {"{\"a\":1} x", PS_JSON_TRAILING},
        {"[1] [2]", PS_JSON_TRAILING},
        {"{\"a\":\"x\ty\"}", PS_JSON_CONTROL},
        {"{\"a\":\"x\ny\"}", PS_JSON_CONTROL},
        {"{\"a\x01\":1}", PS_JSON_CONTROL},
        {"{\"a\":\"x\\u0000y\"}", PS_JSON_NUL},
        {"{\"a\\u0000b\":1}", PS_JSON_NUL},
        {"\"\\ud800\"", PS_JSON_UTF8},
        {"\"\\udc00\"", PS_JSON_UTF8},
        {"\"\\ud800\\u0041\"", PS_JSON_UTF8},
        {"\"\xc0\xaf\"", PS_JSON_UTF8},     /* overlong */
        {"\"\xed\xa0\x80\"", PS_JSON_UTF8}, /* a surrogate in UTF-8 */
        {"\"\xf4\x90\x80\x80\"", PS_JSON_UTF8},
        {"\"\xe2\x82\"", PS_JSON_UTF8},
        {"{\"a\":01}", PS_JSON_SYNTAX},
        {"{\"a\":1,}", PS_JSON_SYNTAX},
        {"[1,]", PS_JSON_SYNTAX},
        {"{a:1}", PS_JSON_SYNTAX},
        {"{\"a\" 1}", PS_JSON_SYNTAX},
        {"[1 2]", PS_JSON_SYNTAX},
        {"tru", PS_JSON_SYNTAX},
        {"-", PS_JSON_SYNTAX},
        {"1.", PS_JSON_SYNTAX},
        {"1e", PS_JSON_SYNTAX},
        {"\"\\x\"", PS_JSON_SYNTAX},
        {"\"\\u12\"", PS_JSON_SYNTAX},
        {"\"abc", PS_JSON_SYNTAX},
        {"{\"a\":", PS_JSON_SYNTAX},
        {"[", PS_JSON_SYNTAX},
        {"}", PS_JSON_SYNTAX},
        {"\xef\xbb\xbf{}", PS_JSON_SYNTAX}, /* a byte order mark is not JSON */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK(check(cases[i].text, cases[i].want, 0));
    CHECK(check("{\"a\":\"x\\u0000y\"}", PS_JSON_OK, PS_JSON_ALLOW_NUL));
    /* the NUL check is on the decoded value, not on the six characters */
    CHECK(check("\"\\\\u0000\"", PS_JSON_OK, 0));
end:;
}

static void depth(void)
{
    char buf[2 * PS_JSON_DEPTH_MAX + 8];
    size_t n = 0;
    for (int i = 0; i < PS_JSON_DEPTH_MAX; i++)
        buf[n++] = '[';
    for (int i = 0; i < PS_JSON_DEPTH_MAX; i++)
        buf[n++] = ']';
    buf[n] = 0;
    CHECK(check(buf, PS_JSON_OK, 0));
    memmove(buf + 1, buf, n + 1);
    buf[0] = '[';
    buf[n + 1] = ']';
    buf[n + 2] = 0;
    CHECK(check(buf, PS_JSON_DEPTH, 0));
    /* a million brackets: refused at the limit, without recursion */
    size_t big = 1000000;
    char *deep = malloc(big + 1);
    memset(deep, '[', big);
    deep[big] = 0;
    CHECK(check(deep, PS_JSON_DEPTH, 0));
    free(deep);
end:;
}

static void parse_and_scan(void)
{
    const char *text = "{\"a\":1,\"b\\u0063\":{\"x\":[1,\"]\"]},\"d\":\"q\\\"\"}";
    ps_json_diag d;
    cJSON *root = ps_json_parse((const uint8_t *)text, strlen(text), &d);
    CHECK(root != NULL);
    CHECK(cJSON_GetObjectItemCaseSensitive(root, "bc") != NULL);
    cJSON_Delete(root);
    CHECK(ps_json_parse((const uint8_t *)"{\"a\":\"\\u0000\"}", 14, &d) == NULL);
    CHECK_EQ_INT(d.error, PS_JSON_NUL);

    ps_json_iter it;
    ps_json_member m;
    ps_json_iter_init(&it, text, text + strlen(text));
    CHECK(ps_json_iter_next(&it, &m));
    CHECK(ps_json_key_is(m.key, "a"));
    CHECK(m.value.len == 1 && m.value.ptr[0] == '1');
    CHECK(ps_json_iter_next(&it, &m));
    CHECK(ps_json_key_is(m.key, "bc"));
    CHECK(!ps_json_key_is(m.key, "b"));
    CHECK(m.value.len == strlen("{\"x\":[1,\"]\"]}"));
    CHECK(ps_json_iter_next(&it, &m));
    CHECK(ps_json_key_is(m.key, "d"));
    CHECK(m.value.len == 5);
    CHECK(!ps_json_iter_next(&it, &m));

    char out[8];
    size_t n;
    CHECK(ps_json_key_decode((ps_slice){(const uint8_t *)"\"\\u00e9\\ud83d\\ude00\"", 20}, out,
                             sizeof out, &n));
    CHECK(n == 6 && memcmp(out, "\xc3\xa9\xf0\x9f\x98\x80", 6) == 0);
    CHECK(
        !ps_json_key_decode((ps_slice){(const uint8_t *)"\"123456789\"", 11}, out, sizeof out, &n));
end:;
}


/* The scratch tree is the tree cJSON makes of the same text (fuzz_json compares any input):
 * a few of the cases where a reader of its own could differ. */
static void scratch_tree(void)
{
    static const char *const texts[] = {
        "{\"a\":[1,2,3],\"a\":{},\"\":\"\"}",
        "[-0, 0.1, 1e400, -1e400, 123456789012345, 1234567890123456, 9007199254740993]",
        "[2147483647, 2147483648, -2147483648, -2147483649, 1.5e3, 1E+2, 0e0]",
        "[1000000000000000000000000000000000000000000000000000000000000000000000000000000]",
        "\"\\u00e9\\ud83d\\ude00\\n\\/\\\"\\\\\\b\\f\\r\\t\"",
        " {\"k\\u0062\" : [ true , false , null , [ ] , { } ] } ",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const uint8_t *t = (const uint8_t *)texts[i];
        size_t len = strlen(texts[i]);
        cJSON *theirs = cJSON_ParseWithLength(texts[i], len);
        ps_json_diag d;
        cJSON *mine = ps_json_parse_scratch(t, len, false, &d);
        CHECK(theirs != NULL && mine != NULL);
        char *a = cJSON_PrintUnformatted(theirs), *b = cJSON_PrintUnformatted(mine);
        CHECK(a != NULL && b != NULL && strcmp(a, b) == 0);
        cJSON_free(a);
        cJSON_free(b);
        ps_json_scratch_free(mine);
        cJSON_Delete(theirs);
    }
    /* the details a print does not show */
    const char *text = "[-0, 3000000000, true, \"x\", {\"n\":-1.25}]";
    ps_json_diag d;
    cJSON *root = ps_json_parse_scratch((const uint8_t *)text, strlen(text), false, &d);
    CHECK(root != NULL && cJSON_IsArray(root) && d.error == PS_JSON_OK);
    cJSON *zero = root->child, *big = zero->next, *yes = big->next, *obj = yes->next->next;
    CHECK(cJSON_IsNumber(zero) && zero->valuedouble == 0 && signbit(zero->valuedouble));
    CHECK(big->valueint == INT_MAX && big->valuedouble == 3e9);
    CHECK(cJSON_IsTrue(yes) && yes->valueint == 1);
    CHECK(root->child->prev == obj && obj->next == NULL && big->prev == zero);
    CHECK(strcmp(obj->child->string, "n") == 0 && obj->child->valuedouble == -1.25);
    CHECK(obj->child->prev == obj->child);
    ps_json_scratch_free(root);
    /* a refused text gets no tree, whatever the caller checked */
    CHECK(ps_json_parse_scratch((const uint8_t *)"{\"a\":\"\\u0000\"}", 14, true, &d) == NULL);
    CHECK_EQ_INT(d.error, PS_JSON_NUL);
end:;
}

static const test_case tests[] = {
    {"verdicts", verdicts},
    {"depth", depth},
    {"parse_and_scan", parse_and_scan},
    {"scratch_tree", scratch_tree},
};
TEST_MAIN(tests)
