/* SPDX-License-Identifier: MIT */
/* fsutil: small file-system steps shared by the modules that make files durable. */
#ifndef PS_FSUTIL_H
#define PS_FSUTIL_H

#include "ps/status.h"

/* Makes the names in directory `dir` durable (fsync of the directory): after a file in it was
 * created, renamed or removed. PS_EIO when it cannot be opened or synced. */
ps_status ps_dir_sync(const char *dir);

#endif
