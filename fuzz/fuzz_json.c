/* SPDX-License-Identifier: MIT */
/* fuzz_json: the strict reader (ps_json_check) and the scratch tree built from what it passes
 * (ps_json_parse_scratch). For any input the reader passes, the scratch tree must be the tree
 * cJSON's own reader makes of the same bytes, node for node, since the event model reads
 * scratch trees with cJSON's accessors and prints traits with cJSON's printer. Text the reader
 * refuses gets no tree and a reason. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz.h"
#include "ps/json.h"

static bool same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Node for node: type, name, value, the links of each list (the first child's prev is the
 * last child, the last child's next is NULL), and numbers to the bit. */
static bool same_tree(const cJSON *a, const cJSON *b)
{
    if (a->type != b->type || a->valueint != b->valueint ||
        memcmp(&a->valuedouble, &b->valuedouble, sizeof a->valuedouble) != 0 ||
        !same_string(a->string, b->string) || !same_string(a->valuestring, b->valuestring))
        return false;
    const cJSON *x = a->child, *y = b->child;
    if ((x == NULL) != (y == NULL))
        return false;
    if (x == NULL)
        return true;
    const cJSON *x_last = NULL, *y_last = NULL;
    for (; x && y; x = x->next, y = y->next) {
        if (x != a->child && (x->prev != x_last || y->prev != y_last))
            return false;
        if (!same_tree(x, y))
            return false;
        x_last = x;
        y_last = y;
    }
    return x == NULL && y == NULL && a->child->prev == x_last && b->child->prev == y_last;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the text in its own allocation: a read past its end is a heap overflow */
    uint8_t *text = malloc(size ? size : 1);
    FUZZ_CHECK(text != NULL);
    if (size)
        memcpy(text, data, size);
    ps_json_diag d, d_nul;
    bool strict = ps_json_check(text, size, 0, &d);
    bool with_nul = ps_json_check(text, size, PS_JSON_ALLOW_NUL, &d_nul);
    FUZZ_CHECK(!strict || with_nul); /* allowing \u0000 only ever passes more */
    if (!strict)
        FUZZ_CHECK(d.error != PS_JSON_OK && d.offset <= size);
    for (int checked = 0; checked < 2; checked++) {
        if (checked && !with_nul)
            break;
        ps_json_diag pd;
        cJSON *mine = ps_json_parse_scratch(text, size, checked, &pd);
        if (!strict) {
            FUZZ_CHECK(mine == NULL && pd.error != PS_JSON_OK);
            continue;
        }
        cJSON *theirs = cJSON_ParseWithLength((const char *)text, size);
        FUZZ_CHECK(mine != NULL && theirs != NULL && pd.error == PS_JSON_OK);
        FUZZ_CHECK(mine->next == NULL && mine->prev == NULL && mine->string == NULL);
        FUZZ_CHECK(same_tree(mine, theirs));
        /* the event model prints trait values into a buffer first: the same text */
        static char small[4096];
        char *whole = cJSON_PrintUnformatted(mine);
        FUZZ_CHECK(whole != NULL);
        if (cJSON_PrintPreallocated(mine, small, (int)sizeof small, false))
            FUZZ_CHECK(strcmp(small, whole) == 0);
        cJSON_free(whole);
        ps_json_scratch_free(mine);
        cJSON_Delete(theirs);
    }
    free(text);
    return 0;
}
