/* SPDX-License-Identifier: MIT */
/* csv: the streaming reader gives the same records whatever the chunking, and the header
 * rules. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ps/csv.h"

typedef struct collected {
    ps_buf text; /* records as fields joined by '|' and records by '\n' */
    size_t records;
} collected;

static bool collect(void *ud, const ps_slice *f, size_t n)
{
    collected *c = ud;
    for (size_t i = 0; i < n; i++) {
        if (i)
            ps_buf_putc(&c->text, '|');
        ps_buf_append(&c->text, f[i].ptr, f[i].len);
    }
    ps_buf_putc(&c->text, '\n');
    c->records++;
    return true;
}

/* Reads `in` in chunks of `step` bytes. */
static ps_csv_error read_all(const char *in, size_t step, collected *out)
{
    ps_csv *c = ps_csv_new();
    size_t len = strlen(in);
    ps_csv_error e = PS_CSV_OK;
    for (size_t at = 0; at < len && e == PS_CSV_OK; at += step)
        e = ps_csv_feed(c, (const uint8_t *)in + at, at + step < len ? step : len - at, collect,
                        out);
    if (e == PS_CSV_OK)
        e = ps_csv_finish(c, collect, out);
    ps_csv_free(c);
    return e;
}

static void chunking(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"a,b\r\n1,2\r\n", "a|b\n1|2\n"},
        {"a,b\n1,2", "a|b\n1|2\n"},
        {"a,b\r1,2\r", "a|b\n1|2\n"},
        {"\"x, y\",\"say \"\"hi\"\"\"\n", "x, y|say \"hi\"\n"},
        {"\"line\nbreak\",z\n", "line\nbreak|z\n"},
        {"a,,c\n,\n", "a||c\n|\n"},
        {"\"\"\n", "\n"},
        {"a,b\n\n1,2\r\n\r\n\n", "a|b\n1|2\n"}, /* blank lines are no records */
        {"\xef\xbb\xbf"
         "a,b\n1,2\n",
         "a|b\n1|2\n"}, /* a byte order mark is skipped */
        {"\xef\xbb"
         "x,b\n",
         "\xef\xbb"
         "x|b\n"}, /* half a mark is data */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (size_t step = 1; step <= 8; step++) {
            collected c = {{0}, 0};
            CHECK(read_all(cases[i].in, step, &c) == PS_CSV_OK);
            CHECK_EQ_STR((const char *)c.text.ptr, cases[i].want);
            ps_buf_clear(&c.text);
        }
    collected c = {{0}, 0};
    CHECK(read_all("a,\"open\n", 3, &c) == PS_CSV_PARSE);
    CHECK(read_all("a,b\"c\n", 2, &c) == PS_CSV_PARSE);
    CHECK(read_all("\"a\"b\n", 1, &c) == PS_CSV_PARSE);
    ps_buf_clear(&c.text);
end:;
}

static void header_rules(void)
{
    ps_slice h[3];
#define H3(a, b, c) (h[0] = PS_SLICE_STR(a), h[1] = PS_SLICE_STR(b), h[2] = PS_SLICE_STR(c))
    H3("user_id", "Plan", "plan");
    CHECK(ps_csv_check_header(h, 3) == PS_CSV_OK);
    H3("user_id", "Café", "x!@#$%^&*()_+-=[]{}:\\|.`~<>/?");
    CHECK(ps_csv_check_header(h, 3) == PS_CSV_OK);
    H3("user_id", "", "plan");
    CHECK(ps_csv_check_header(h, 3) == PS_CSV_EMPTY_HEADER);
    H3("user_id", " plan", "x");
    CHECK(ps_csv_check_header(h, 3) == PS_CSV_HEADER_SPACES);
    H3("user_id", "my  plan", "x");
    CHECK(ps_csv_check_header(h, 3) == PS_CSV_HEADER_SPACES);
    H3("user_id", "plan;", "x");
    CHECK(ps_csv_check_header(h, 3) == PS_CSV_INVALID_CHARACTER);
    H3("user_id",
       "a\xc3\x97"
       "b",
       "x"); /* the multiplication sign */
    CHECK(ps_csv_check_header(h, 3) == PS_CSV_INVALID_CHARACTER);
    H3("user_id", "plan", "plan");
    CHECK(ps_csv_check_header(h, 3) == PS_CSV_DUPLICATE_HEADER);
    CHECK(strstr(ps_csv_error_message(PS_CSV_TOO_MANY_ROWS), "1000000") != NULL);
end:;
}

static const test_case tests[] = {
    {"chunking", chunking},
    {"header_rules", header_rules},
};
TEST_MAIN(tests)
