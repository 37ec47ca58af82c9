/* SPDX-License-Identifier: MIT */
/* log: the only global of the project is the threshold below. */
#include "ps/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/clock.h"
#include "ps/mem.h"

static ps_log_level threshold = PS_LOG_WARN;

static ps_log_format format = PS_LOG_LOGFMT;
static const char *const level_names[] = {"debug", "info", "warn", "error"}; /* by level */

void ps_log_init(ps_log_level default_level)
{
    threshold = default_level;
    const char *fmt = getenv("PS_LOG_FORMAT");
    bool fmt_bad = fmt && !ps_log_format_parse(fmt, &format); /* the default stays */
    const char *env = getenv("PS_LOG_LEVEL");
    bool level_bad = env != NULL;
    for (int i = PS_LOG_DEBUG; env && i <= PS_LOG_ERROR; i++)
        if (strcmp(env, level_names[i]) == 0) {
            threshold = (ps_log_level)i;
            level_bad = false;
        }
    /* a mistyped setting is said once, not silently dropped */
    if (fmt_bad)
        ps_log(PS_LOG_WARN,
               "msg=\"PS_LOG_FORMAT is not logfmt or json; logfmt is used\" value=\"%.40s\"", fmt);
    if (level_bad)
        ps_log(PS_LOG_WARN,
               "msg=\"PS_LOG_LEVEL is not debug, info, warn or error; the default is used\" "
               "value=\"%.40s\"",
               env);
}

void ps_log_set_format(ps_log_format f)
{
    format = f;
}

bool ps_log_format_parse(const char *name, ps_log_format *out)
{
    if (strcmp(name, "logfmt") == 0)
        *out = PS_LOG_LOGFMT;
    else if (strcmp(name, "json") == 0)
        *out = PS_LOG_JSON;
    else
        return false;
    return true;
}

/* Rewrites a logfmt line as a JSON object: key=value and key="quoted value" pairs; a token
 * without '=' becomes {"text": ...}. */
static void write_json(const char *line)
{
    ps_buf b;
    ps_buf_init(&b);
    ps_buf_putc(&b, '{');
    const char *p = line;
    bool first = true;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *key = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        size_t klen = (size_t)(p - key);
        ps_buf b_val;
        ps_buf_init(&b_val);
        if (*p == '=') {
            p++;
            if (*p == '"') { /* a quoted value: \" and \\ escape */
                p++;
                while (*p && *p != '"') {
                    if (*p == '\\' && p[1])
                        p++;
                    ps_buf_putc(&b_val, *p++);
                }
                if (*p == '"')
                    p++;
            } else {
                while (*p && *p != ' ')
                    ps_buf_putc(&b_val, *p++);
            }
        } else { /* a bare word */
            ps_buf_append(&b_val, key, klen);
            key = "text";
            klen = 4;
        }
        ps_buf_puts(&b, first ? "" : ",");
        first = false;
        ps_buf_json_str(&b, key, klen);
        ps_buf_putc(&b, ':');
        ps_buf_json_str(&b, b_val.len ? (const char *)b_val.ptr : "", b_val.len);
        ps_buf_clear(&b_val);
    }
    ps_buf_puts(&b, "}\n");
    fwrite(b.ptr, 1, b.len, stderr);
    ps_buf_clear(&b);
}

__attribute__((format(printf, 2, 0))) static void write_line(const char *level, const char *fmt,
                                                             va_list ap)
{
    char line[1024], tb[PS_TIME_BUF];
    /* every line says when: RFC 3339 in UTC, to the millisecond */
    int n = snprintf(line, sizeof line, "ts=%s level=%s ", ps_time_format(ps_clock_now_ms(), tb),
                     level);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (format == PS_LOG_JSON)
        write_json(line);
    else
        fprintf(stderr, "%s\n", line);
}

void ps_log(ps_log_level level, const char *fmt, ...)
{
    if (level < threshold)
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line(level_names[level], fmt, ap);
    va_end(ap);
}

void ps_log_access(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_line("access", fmt, ap);
    va_end(ap);
}
