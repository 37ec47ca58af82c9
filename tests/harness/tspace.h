/* SPDX-License-Identifier: MIT */
/* tspace.h: a throwaway space in a temp directory, fed through the real ingest path. */
#ifndef PS_TEST_TSPACE_H
#define PS_TEST_TSPACE_H

#include <stdint.h>

#include "ps/ingest.h"
#include "ps/space.h"

typedef struct tspace {
    char dir[256];
    ps_space *sp;
    ps_ingest *in;
} tspace;

/* Creates a space with `settings` (NULL: defaults). Aborts the test binary on failure. */
void tspace_open(tspace *ts, const char *settings);
void tspace_close(tspace *ts);
/* Ingests one NDJSON line and commits. Returns the payload status. */
ps_status tspace_ingest(tspace *ts, const char *line);
/* The canonical seq of `ident` ("type:value" or segment_id), 0 when not found. */
uint64_t tspace_find(tspace *ts, const char *ident);
/* Writes the canonical segment_id of `ident` into out (32 bytes); "" when not found. */
void tspace_segment_id(tspace *ts, const char *ident, char *out);
/* Counts the audit rows of `kind` (and `reason` when non-zero). */
uint64_t tspace_audit_count(tspace *ts, int kind, int reason);

#endif
