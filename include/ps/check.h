/* SPDX-License-Identifier: MIT */
/* check: verifies every invariant of a space's graph in one read transaction, in constant
 * memory: flat union-find (parents are canonical, no cycles), members and counts agree,
 * identifiers and per-profile mappings agree both ways, events and their index agree,
 * links exist both ways, the audit log accounts for every profile, merge and mapping. */
#ifndef PS_CHECK_H
#define PS_CHECK_H

#include <stdint.h>

#include "ps/space.h"
#include "ps/status.h"

#define PS_CHECK_SHOWN 20

typedef struct ps_check_report {
    uint64_t profiles, canonical, identifiers, events, links, audit_rows;
    uint64_t problems;
    char shown[PS_CHECK_SHOWN][200]; /* the first problems, one line each */
} ps_check_report;

/* Runs every check. Returns PS_OK when the graph is consistent, PS_ECORRUPT when problems
 * were found (listed in `report`), or a storage error. */
ps_status ps_check_space(ps_space *sp, ps_check_report *report);

#endif
