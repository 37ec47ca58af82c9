/* SPDX-License-Identifier: MIT */
/* fuzz_delete_body: ps_event_parse_delete_ids, the body of the Profile API's Delete Profile
 * Identifier route, into buffers of exactly the documented capacities. An accepted body
 * gives a NUL-terminated, trimmed, lowercased type and a non-empty value within bounds. */
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
    char *type = malloc(PS_TYPE_MAX + 1), *value = malloc(PS_VALUE_MAX + 1);
    FUZZ_CHECK(json != NULL && type != NULL && value != NULL);
    if (size)
        memcpy(json, data, size);
    size_t value_len = (size_t)-1;
    const char *why = NULL;
    ps_status st = ps_event_parse_delete_ids(json, size, type, value, &value_len, &why);
    if (st == PS_OK) {
        FUZZ_CHECK(memchr(type, 0, PS_TYPE_MAX + 1) != NULL);
        FUZZ_CHECK(memchr(value, 0, PS_VALUE_MAX + 1) != NULL);
        size_t tl = strlen(type);
        FUZZ_CHECK(tl > 0 && tl <= PS_TYPE_MAX);
        FUZZ_CHECK(!is_blank(type[0]) && !is_blank(type[tl - 1]));
        for (size_t i = 0; i < tl; i++)
            FUZZ_CHECK(type[i] < 'A' || type[i] > 'Z');
        FUZZ_CHECK(value_len > 0 && value_len <= PS_VALUE_MAX);
        FUZZ_CHECK(value_len == strlen(value));
        FUZZ_CHECK(!is_blank(value[0]) && !is_blank(value[value_len - 1]));
    } else {
        FUZZ_CHECK(st == PS_EINVAL || st == PS_ETOOBIG);
        FUZZ_CHECK(why != NULL && why[0] != 0);
    }
    free(json);
    free(type);
    free(value);
    return 0;
}
