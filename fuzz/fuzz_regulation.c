/* SPDX-License-Identifier: MIT */
/* fuzz_regulation: ps_event_parse_regulation, the body of the regulations route. An accepted
 * body has a known type and 1 to PS_REG_SUBJECTS_MAX userIds, each a non-empty C string of at
 * most PS_VALUE_MAX bytes without surrounding blanks; a refused one says why. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ps/event.h"

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = malloc(size ? size : 1);
    FUZZ_CHECK(json != NULL);
    if (size)
        memcpy(json, data, size);
    ps_reg_request rq;
    const char *why = NULL;
    ps_status st = ps_event_parse_regulation(json, size, &rq, &why);
    if (st == PS_OK) {
        FUZZ_CHECK((unsigned)rq.type < PS_REG__COUNT);
        FUZZ_CHECK(rq.count >= 1 && rq.count <= PS_REG_SUBJECTS_MAX);
        for (size_t i = 0; i < rq.count; i++) {
            size_t n = strlen(rq.subjects[i]);
            FUZZ_CHECK(n > 0 && n <= PS_VALUE_MAX);
            FUZZ_CHECK(!is_blank(rq.subjects[i][0]) && !is_blank(rq.subjects[i][n - 1]));
        }
        ps_reg_type back;
        FUZZ_CHECK(ps_reg_type_parse(ps_reg_type_name(rq.type), &back) && back == rq.type);
        ps_reg_request_clear(&rq);
        FUZZ_CHECK(rq.subjects == NULL && rq.count == 0);
    } else {
        FUZZ_CHECK(st == PS_EINVAL);
        FUZZ_CHECK(why != NULL && why[0] != 0);
        FUZZ_CHECK(rq.subjects == NULL && rq.count == 0);
    }
    free(json);
    return 0;
}
