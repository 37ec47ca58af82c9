/* SPDX-License-Identifier: MIT */
/* status: names of status codes, the always-on assertion and user-facing diagnostics. */
#include "ps/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ps_status_str(ps_status st)
{
    switch (st) {
    case PS_OK: return "ok";
    case PS_ENOTFOUND: return "not found";
    case PS_EINVAL: return "invalid input";
    case PS_ETOOBIG: return "too big";
    case PS_ECONFLICT: return "conflict";
    case PS_EAUTH: return "authentication failed";
    case PS_EFULL: return "store is full";
    case PS_ECORRUPT: return "corrupt data";
    case PS_EIO: return "i/o error";
    case PS_EBUSY: return "busy";
    case PS_ECLOSED: return "shutting down";
    case PS_ELIMIT: return "rate limited";
    case PS_EFORMAT: return "older store format";
    }
    return "unknown status";
}

void ps_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "level=fatal msg=\"assertion failed\" expr=\"%s\" at=%s:%d\n", expr, file,
            line);
    abort();
}

ps_status ps_diag_set(ps_diag *diag, ps_status st, const char *path, const char *fmt, ...)
{
    if (diag == NULL)
        return st;
    snprintf(diag->path, sizeof diag->path, "%s", path ? path : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(diag->message, sizeof diag->message, fmt, ap);
    va_end(ap);
    return st;
}
