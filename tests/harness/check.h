/* SPDX-License-Identifier: MIT */
/* check.h: a tiny TAP test runner. Each test file has a table of {name, fn}; CHECK macros
 * record a failure and jump to the test's `end:` label for cleanup. `./test_x name` runs one. */
#ifndef PS_TEST_CHECK_H
#define PS_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

extern int test_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
            test_failed = 1;                                                                       \
            goto end;                                                                              \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                      \
        if (va_ != vb_) {                                                                          \
            fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, \
                    va_, vb_);                                                                     \
            test_failed = 1;                                                                       \
            goto end;                                                                              \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *sa_ = (a), *sb_ = (b);                                                         \
        if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0) {                                 \
            fprintf(stderr, "  FAIL %s:%d: %s == %s (\"%s\" != \"%s\")\n", __FILE__, __LINE__, #a, \
                    #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                               \
            test_failed = 1;                                                                       \
            goto end;                                                                              \
        }                                                                                          \
    } while (0)

/* Runs the table (or the one test named in argv[1]) and prints TAP. Returns the exit code. */
int test_main(int argc, char **argv, const test_case *tests, size_t count);

/* A fresh temporary directory (removed by tmpdir_remove). Returns a static-lifetime path
 * valid until the next call. */
const char *tmpdir_make(void);
void tmpdir_remove(const char *path);

#define TEST_MAIN(table)                                                                           \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return test_main(argc, argv, table, sizeof table / sizeof table[0]);                       \
    }

#endif
