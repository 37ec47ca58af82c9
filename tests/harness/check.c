/* SPDX-License-Identifier: MIT */
/* check.c: the TAP runner. */
#include "check.h"

int test_failed;

int test_main(int argc, char **argv, const test_case *tests, size_t count)
{
    int failures = 0, run = 0;
    size_t planned = 0;
    for (size_t i = 0; i < count; i++)
        planned += argc < 2 || strcmp(argv[1], tests[i].name) == 0;
    printf("1..%zu\n", planned);
    for (size_t i = 0; i < count; i++) {
        if (argc >= 2 && strcmp(argv[1], tests[i].name) != 0)
            continue;
        test_failed = 0;
        tests[i].fn();
        run++;
        printf("%s %d - %s\n", test_failed ? "not ok" : "ok", run, tests[i].name);
        failures += test_failed;
    }
    if (planned == 0) {
        fprintf(stderr, "no test named %s\n", argc >= 2 ? argv[1] : "");
        return 1;
    }
    return failures ? 1 : 0;
}
