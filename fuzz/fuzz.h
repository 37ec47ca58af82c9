/* SPDX-License-Identifier: MIT */
/* fuzz: what every fuzz target shares: the libFuzzer entry point's prototype (defined once per
 * target, called by libFuzzer or by replay.c) and FUZZ_CHECK, an always-on assertion that
 * aborts so that both libFuzzer and the sanitizers report a broken invariant as a crash. */
#ifndef PS_FUZZ_H
#define PS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline _Noreturn void fuzz_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", file, line, expr);
    abort();
}

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(#cond, __FILE__, __LINE__);                                                  \
    } while (0)

#endif
