/* SPDX-License-Identifier: MIT */
/* log: leveled key=value lines on stderr. The level comes from PS_LOG_LEVEL
 * (debug|info|warn|error), default warn for tools and info for the server. */
#ifndef PS_LOG_H
#define PS_LOG_H

#include <stdbool.h>

typedef enum ps_log_level { PS_LOG_DEBUG, PS_LOG_INFO, PS_LOG_WARN, PS_LOG_ERROR } ps_log_level;

/* Sets the threshold; PS_LOG_LEVEL in the environment overrides it. */
void ps_log_init(ps_log_level default_level);

/* How lines are written: logfmt ("ts=... level=... key=value ...", the default) or one JSON
 * object per line with the same keys (values that were quoted or not, as strings). */
typedef enum ps_log_format { PS_LOG_LOGFMT, PS_LOG_JSON } ps_log_format;
void ps_log_set_format(ps_log_format f);
/* "logfmt" or "json"; false for anything else. */
bool ps_log_format_parse(const char *name, ps_log_format *out);

/* Writes "ts=<time> level=<l> <fmt...>\n" when `level` is at or above the threshold. The
 * format is key=value pairs; a value with spaces is double-quoted. */
void ps_log(ps_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same at level "access", whatever the threshold (the server's --access-log). */
void ps_log_access(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
