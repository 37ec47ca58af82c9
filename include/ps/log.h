/* SPDX-License-Identifier: MIT */
/* log: leveled key=value lines on stderr. The level comes from PS_LOG_LEVEL
 * (debug|info|warn|error), default warn for tools and info for the server. */
#ifndef PS_LOG_H
#define PS_LOG_H

typedef enum ps_log_level { PS_LOG_DEBUG, PS_LOG_INFO, PS_LOG_WARN, PS_LOG_ERROR } ps_log_level;

/* Sets the threshold; PS_LOG_LEVEL in the environment overrides it. */
void ps_log_init(ps_log_level default_level);
/* Writes "level=<l> <fmt...>\n" when `level` is at or above the threshold. */
void ps_log(ps_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
