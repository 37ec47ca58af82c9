/* SPDX-License-Identifier: MIT */
/* parse_bench: the C_parse ceiling (docs/benchmarks.md): cJSON parse + delete of every line of an
 * NDJSON file, timed after the file is in memory. Prints events/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: parse_bench FILE\n");
        return 1;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)size + 1);
    if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    fclose(f);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    size_t count = 0, bad = 0;
    char *p = data, *end = data + size;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        cJSON *root = cJSON_ParseWithLength(p, len);
        if (root)
            count++;
        else
            bad++;
        cJSON_Delete(root);
        p += len + 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    printf("{\"events\":%zu,\"invalid\":%zu,\"seconds\":%.3f,\"events_per_s\":%.0f,"
           "\"bytes\":%ld}\n",
           count, bad, secs, (double)count / secs, size);
    free(data);
    return 0;
}
