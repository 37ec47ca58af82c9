/* SPDX-License-Identifier: MIT */
#include "ps/fsutil.h"

#include <fcntl.h>
#include <unistd.h>

ps_status ps_dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return PS_EIO;
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? PS_OK : PS_EIO;
}
