/* SPDX-License-Identifier: MIT */
/* fsutil: small file-system steps shared by the modules that make files durable. */
#ifndef PS_FSUTIL_H
#define PS_FSUTIL_H

#include "ps/status.h"

/* Makes the names in directory `dir` durable (fsync of the directory): after a file in it was
 * created, renamed or removed. PS_EIO when it cannot be opened or synced. */
ps_status ps_dir_sync(const char *dir);

/* Creates directory `dir` and the missing ones above it (mode 0755). PS_EINVAL for a path
 * of 4096 bytes or more, PS_EIO (logged with the system's reason) when one cannot be made. */
ps_status ps_mkdirs(const char *dir);

/* Opens `path` (a directory, or a file that exists) and waits for an exclusive lock on it
 * (flock), which the kernel releases when the returned descriptor is closed or the process
 * ends, so a crash leaves no stale lock. Returns the descriptor, or -1 (errno set). Release
 * with close(). */
int ps_lock_exclusive(const char *path);

#endif
