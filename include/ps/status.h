/* SPDX-License-Identifier: MIT */
/* status: the project's only error vocabulary. Every function that can fail returns one of
 * these; ps_status_str() names it. Mapping to HTTP codes and exit codes lives at the edges. */
#ifndef PS_STATUS_H
#define PS_STATUS_H

typedef enum ps_status {
    PS_OK = 0,
    PS_ENOTFOUND = -1, /* the thing asked for does not exist */
    PS_EINVAL = -2,    /* input failed validation */
    PS_ETOOBIG = -3,   /* input exceeds a configured bound */
    PS_ECONFLICT = -4, /* would break a rule or an existing entry */
    PS_EAUTH = -5,     /* missing or wrong credentials */
    PS_EFULL = -6,     /* storage map is full */
    PS_ECORRUPT = -7,  /* stored data fails a consistency check */
    PS_EIO = -8,       /* operating system or LMDB I/O failure */
    PS_EBUSY = -9,     /* a bounded queue is full: retry later */
    PS_ECLOSED = -10,  /* the component is shutting down */
    PS_ELIMIT = -11,   /* a rate limit refuses the request: retry later */
    PS_EFORMAT = -12,  /* the store is in an older format: `profilectl migrate` upgrades it */
} ps_status;

/* Returns a static, lowercase name for `st` ("not found", ...). Never NULL. */
const char *ps_status_str(ps_status st);

/* Always-on assertion for states that corrupt data if ignored: logs file:line and aborts. */
#define PS_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ps_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)

_Noreturn void ps_assert_fail(const char *expr, const char *file, int line);

/* A diagnostic for parsers that face users: a message and, when known, a JSON path. */
typedef struct ps_diag {
    char path[128];
    char message[256];
} ps_diag;

/* Fills `diag` (if not NULL) with a path and a printf-style message. Returns `st`. */
ps_status ps_diag_set(ps_diag *diag, ps_status st, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
