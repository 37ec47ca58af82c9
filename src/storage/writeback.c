/* SPDX-License-Identifier: MIT */
/* writeback: a store's commit writes its pages back in bounded steps before the sync.
 *
 * LMDB ends every commit by handing the data file's dirty pages to the kernel (pwritev) and
 * calling fdatasync(2) on it, which sends them to the disk at once: on a store of a few
 * hundred thousand events that is 100 MB or more. The server's journal syncs a few kilobytes
 * on the same disk every millisecond or so to acknowledge requests, and a sync issued behind
 * such a burst waits for all of it (20-30 ms here, the acknowledgement tail).
 *
 * LMDB has no hook between the two steps, so this file defines fdatasync(2) for the whole
 * process: LMDB's call resolves to it, as a call from a shared library to a function the
 * executable defines does. For the data file of a store that asked for it
 * (ps_store_pace_writeback), it first writes the dirty pages back range by range with
 * sync_file_range(2), waiting for each range, and then runs the real fdatasync, which finds
 * little left and still makes the file's data and size durable. A step covers 1 MiB of the
 * file (more on a file over 1 GiB: 1,024 steps at most), which this machine's disk writes in
 * a few milliseconds at worst. Every other file descriptor goes straight to the system call,
 * as glibc's fdatasync does. LMDB writes its meta page only after this returns, so the order that
 * keeps the store whole across a power loss (data durable, then the meta page naming it) holds.
 *
 * docs/decisions/0014-paced-writeback.md has the measurements. */
#define _GNU_SOURCE
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PACED_FDS 65536           /* descriptors past it are synced unpaced */
#define STEP_MIN ((off_t)1 << 20) /* bytes of the file per step, at least */
#define STEPS_MAX 1024            /* steps per sync, at most: larger files take larger steps */

static _Atomic uint64_t paced[PACED_FDS / 64];
static _Atomic uint64_t steps_taken;

static bool fd_paced(int fd)
{
    return fd >= 0 && fd < PACED_FDS &&
           (atomic_load_explicit(&paced[fd / 64], memory_order_relaxed) >> (fd % 64) & 1);
}

static void mark(int fd, bool on)
{
    if (fd < 0 || fd >= PACED_FDS)
        return;
    uint64_t bit = (uint64_t)1 << (fd % 64);
    if (on)
        atomic_fetch_or(&paced[fd / 64], bit);
    else
        atomic_fetch_and(&paced[fd / 64], ~bit);
}

void ps_store_pace_writeback(ps_store *s, bool on)
{
    int fd;
    if (s && mdb_env_get_fd(s->env, &fd) == 0)
        mark(fd, on);
}

uint64_t ps_store_writeback_steps(void)
{
    return atomic_load(&steps_taken);
}

/* Writes the file's dirty pages back a step at a time, each waited for. 0, or -1 with errno
 * set by the step that failed (its error is reported here and not again by a later sync). */
static int write_back(int fd)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return -1;
    /* a step over clean pages costs a system call (3-6 us here): a 10 GiB store would spend
     * 50 ms a commit on them in 1 MiB steps, so a large file takes fewer, larger steps. Its
     * commits dirty a smaller share of it, so that a step still holds little to write. */
    off_t step = sb.st_size / STEPS_MAX;
    step = step < STEP_MIN ? STEP_MIN : (step + STEP_MIN - 1) / STEP_MIN * STEP_MIN;
    for (off_t off = 0; off < sb.st_size; off += step) {
        if (sync_file_range(fd, off, step,
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                SYNC_FILE_RANGE_WAIT_AFTER) != 0)
            return errno == EINVAL || errno == ESPIPE ? 0 : -1; /* not a file that pages */
        atomic_fetch_add_explicit(&steps_taken, 1, memory_order_relaxed);
    }
    return 0;
}

int fdatasync(int fd)
{
    if (fd_paced(fd) && write_back(fd) != 0)
        return -1;
    return (int)syscall(SYS_fdatasync, fd);
}
