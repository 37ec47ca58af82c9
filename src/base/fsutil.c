/* SPDX-License-Identifier: MIT */
#include "ps/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps/log.h"

ps_status ps_dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return PS_EIO;
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? PS_OK : PS_EIO;
}

ps_status ps_mkdirs(const char *dir)
{
    char tmp[4096];
    size_t len = strlen(dir);
    if (len >= sizeof tmp)
        return PS_EINVAL;
    memcpy(tmp, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] == '/' || tmp[i] == 0) {
            char c = tmp[i];
            tmp[i] = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                ps_log(PS_LOG_ERROR, "msg=\"cannot create directory\" path=\"%s\" error=\"%s\"",
                       tmp, strerror(errno));
                return PS_EIO;
            }
            tmp[i] = c;
        }
    }
    return PS_OK;
}

int ps_lock_exclusive(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC); /* a directory, or a file that exists */
    if (fd < 0)
        return -1;
    int rc;
    while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR)
        ;
    if (rc != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}
