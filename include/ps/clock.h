/* SPDX-License-Identifier: MIT */
/* clock: wall-clock milliseconds (swappable for tests) and ISO-8601 parsing and formatting.
 * All times in the store are int64 milliseconds since the Unix epoch, UTC. */
#ifndef PS_CLOCK_H
#define PS_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/status.h"

/* Milliseconds since the epoch. PS_FAKE_NOW_MS in the environment fixes it (tests). */
int64_t ps_clock_now_ms(void);

/* Parses an ISO-8601 / RFC 3339 time: "YYYY-MM-DD", optionally followed by
 * "Thh:mm[:ss[.frac]]" and "Z" or "+hh:mm"/"+hhmm"/"-hh:mm"; a missing zone means UTC.
 * Seconds run 00-59 (no leap second), and the instant in UTC must fall in years 0000-9999.
 * Writes milliseconds to *out. Returns PS_EINVAL on anything else. */
ps_status ps_time_parse(const char *s, size_t len, int64_t *out);

/* Formats `ms` as "YYYY-MM-DDThh:mm:ss.mmmZ" into `out` (at least PS_TIME_BUF bytes). Returns
 * `out`. */
char *ps_time_format(int64_t ms, char *out);
/* Appends `ms` formatted so, as a JSON string (quotes included). */
void ps_time_json(ps_buf *out, int64_t ms);

#define PS_TIME_BUF 64

#endif
