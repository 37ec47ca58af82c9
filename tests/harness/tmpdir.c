/* SPDX-License-Identifier: MIT */
/* tmpdir.c: temporary data directories for store tests, removed unless PS_TEST_KEEP=1. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"

const char *tmpdir_make(void)
{
    static char path[256];
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/ps-test-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(path) == NULL) {
        perror("mkdtemp");
        abort();
    }
    return path;
}

static int remove_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void tmpdir_remove(const char *path)
{
    const char *keep = getenv("PS_TEST_KEEP");
    if (keep && keep[0] == '1') {
        fprintf(stderr, "# kept %s\n", path);
        return;
    }
    nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}
