/* SPDX-License-Identifier: MIT */
/* log: the only global of the project is the threshold below. */
#include "ps/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/clock.h"

static ps_log_level threshold = PS_LOG_WARN;

void ps_log_init(ps_log_level default_level)
{
    threshold = default_level;
    const char *env = getenv("PS_LOG_LEVEL");
    if (env == NULL)
        return;
    if (strcmp(env, "debug") == 0)
        threshold = PS_LOG_DEBUG;
    else if (strcmp(env, "info") == 0)
        threshold = PS_LOG_INFO;
    else if (strcmp(env, "warn") == 0)
        threshold = PS_LOG_WARN;
    else if (strcmp(env, "error") == 0)
        threshold = PS_LOG_ERROR;
}

void ps_log(ps_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < threshold)
        return;
    char line[1024], tb[PS_TIME_BUF];
    /* every line says when: RFC 3339 in UTC, to the millisecond */
    int n = snprintf(line, sizeof line, "ts=%s level=%s ", ps_time_format(ps_clock_now_ms(), tb),
                     names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
