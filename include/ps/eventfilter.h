/* SPDX-License-Identifier: MIT */
/* eventfilter: a space's event filters kept in its store (docs/filters.md). Each change is one
 * write transaction on meta PS_FILTERS_KEY, checked whole first; it applies to every message
 * accepted after it commits, at both doors (the Tracking API, profilectl ingest). Messages
 * already in the log are never filtered again, so a rebuild agrees with what was accepted. */
#ifndef PS_EVENTFILTER_H
#define PS_EVENTFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/filters.h"
#include "ps/mem.h"
#include "ps/space.h"
#include "ps/status.h"

/* Each returns PS_OK, or PS_EINVAL / PS_ECONFLICT / PS_ENOTFOUND with `err` naming the
 * problem, or a storage status. */
ps_status ps_eventfilter_create(ps_space *sp, const char *name, const char *fql, bool enabled,
                                int64_t now_ms, char *err, size_t err_cap);
ps_status ps_eventfilter_update(ps_space *sp, const char *name, const char *new_name, int enabled,
                                char *err, size_t err_cap);
ps_status ps_eventfilter_delete(ps_space *sp, const char *name, char *err, size_t err_cap);
/* The filters as a JSON array ([{"name","if","enabled","created_at"}...]). */
ps_status ps_eventfilter_list(ps_space *sp, ps_buf *out);

#endif
