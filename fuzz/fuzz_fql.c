/* SPDX-License-Identifier: MIT */
/* fuzz_fql: ps_fql_compile on any bytes; a query that compiles is evaluated against a fixed
 * message and against an empty one. Compiling refuses what is over its bounds with a message
 * that names a position inside the input; evaluating never fails. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz.h"
#include "ps/fql.h"

static const char MSG[] =
    "{\"type\":\"track\",\"event\":\"Button Clicked\",\"userId\":\"u-1\",\"anonymousId\":null,"
    "\"context\":{\"library\":{\"name\":\"analytics.js\"},\"page\":{\"path\":\"/a/b\"}},"
    "\"properties\":{\"features\":[\"x\",1,null,{\"k\":[]}],\"price\":19.99,\"flag\":true,"
    "\"camel\":\"someHTTPThing v2\",\"product 1\":{\"price\":\"1\"}}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cJSON *msg, *empty;
    if (msg == NULL) {
        msg = cJSON_Parse(MSG);
        empty = cJSON_CreateObject();
        FUZZ_CHECK(msg != NULL && empty != NULL);
    }
    ps_fql *q = NULL;
    char err[256];
    ps_status st = ps_fql_compile((const char *)data, size, &q, err, sizeof err);
    if (st != PS_OK) {
        FUZZ_CHECK(st == PS_EINVAL && q == NULL);
        FUZZ_CHECK(strncmp(err, "at ", 3) == 0);
        FUZZ_CHECK((size_t)strtoul(err + 3, NULL, 10) <= size);
        return 0;
    }
    FUZZ_CHECK(q != NULL && size <= PS_FQL_MAX_BYTES);
    bool a = ps_fql_matches(q, msg), b = ps_fql_matches(q, msg);
    FUZZ_CHECK(a == b); /* no state carried between evaluations */
    (void)ps_fql_matches(q, empty);
    ps_fql_free(q);
    return 0;
}
