/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "check.h"
#include "ps/clock.h"
#include "ps/text.h"

static void time_roundtrip(void)
{
    int64_t ms;
    char tb[PS_TIME_BUF];
    CHECK(ps_time_parse("2022-05-02T14:01:00Z", 20, &ms) == PS_OK);
    CHECK_EQ_STR(ps_time_format(ms, tb), "2022-05-02T14:01:00.000Z");
    CHECK(ps_time_parse("2018-01-05T00:16:35.663Z", 24, &ms) == PS_OK);
    CHECK_EQ_INT(ms, 1515111395663LL);
    CHECK(ps_time_parse("2006-01-02", 10, &ms) == PS_OK);
    CHECK_EQ_STR(ps_time_format(ms, tb), "2006-01-02T00:00:00.000Z");
    CHECK(ps_time_parse("2020-02-29T10:00:00+02:00", 25, &ms) == PS_OK);
    CHECK_EQ_STR(ps_time_format(ms, tb), "2020-02-29T08:00:00.000Z");
    CHECK(ps_time_parse("1969-12-31T23:59:59.5Z", 22, &ms) == PS_OK);
    CHECK_EQ_INT(ms, -500);
    CHECK(ps_time_parse("2021-02-29", 10, &ms) == PS_EINVAL);
    CHECK(ps_time_parse("2021-13-01", 10, &ms) == PS_EINVAL);
    CHECK(ps_time_parse("yesterday", 9, &ms) == PS_EINVAL);
    CHECK(ps_time_parse("2021-01-01T10:00:00Zjunk", 24, &ms) == PS_EINVAL);
end:;
}

static void utf8(void)
{
    size_t n;
    CHECK(ps_utf8_valid((const uint8_t *)"h\xc3\xa9llo", 6, &n));
    CHECK_EQ_INT(n, 5);
    CHECK(!ps_utf8_valid((const uint8_t *)"\xc3", 1, NULL));
    CHECK(!ps_utf8_valid((const uint8_t *)"\xc0\xaf", 2, NULL));        /* overlong */
    CHECK(!ps_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3, NULL));    /* surrogate */
    CHECK(ps_utf8_valid((const uint8_t *)"\xf0\x9f\x98\x80", 4, &n));  /* emoji */
    CHECK_EQ_INT(n, 1);
    /* across the 8-byte ASCII fast path */
    CHECK(ps_utf8_valid((const uint8_t *)"abcdefgh\xc3\xa9ijklmnopq", 19, &n));
    CHECK_EQ_INT(n, 18);
    CHECK(!ps_utf8_valid((const uint8_t *)"abcdefghi\xffjklmnopq", 18, NULL));
    CHECK(!ps_utf8_valid((const uint8_t *)"abcdefghijklmnop\xe2\x82", 18, NULL));
end:;
}

static void base62(void)
{
    char out[32];
    uint8_t zero[4] = {0};
    ps_base62(zero, 4, out, 5);
    CHECK_EQ_STR(out, "00000");
    uint8_t v[2] = {0, 62};
    ps_base62(v, 2, out, 3);
    CHECK_EQ_STR(out, "010");
    uint8_t key[16] = {0};
    CHECK(ps_siphash(key, "a", 1) != ps_siphash(key, "b", 1));
    CHECK(ps_siphash(key, "abc", 3) == ps_siphash(key, "abc", 3));
end:;
}

static void trim(void)
{
    const char *s = " \t\v a b \f\r\n";
    size_t len = strlen(s);
    ps_trim(&s, &len);
    CHECK_EQ_INT(len, 3);
    CHECK(strncmp(s, "a b", 3) == 0);
    s = " \n ";
    len = 3;
    ps_trim(&s, &len);
    CHECK_EQ_INT(len, 0);
end:;
}

static const test_case tests[] = {
    {"time_roundtrip", time_roundtrip},
    {"utf8", utf8},
    {"base62", base62},
    {"trim", trim},
};
TEST_MAIN(tests)
