/* SPDX-License-Identifier: MIT */
/* journal: segments of length-prefixed, checksummed records appended by one process (see
 * ps/journal.h). A record is [u32 length][u32 crc32 of the length bytes and the payload]
 * [payload], little-endian. Segments are allocated whole when created (fallocate), so that a
 * full disk shows up there, as an error, and never in the middle of a group. */
#define _DEFAULT_SOURCE /* flock */
#include "ps/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "ps/fsutil.h"
#include "ps/log.h"

#define HEAD 8
#define PREFIX "journal-"

struct ps_journal {
    char *dir;
    int lock_fd;
    pthread_mutex_t lock; /* guards fd and seg_start against ps_journal_release's reads */
    int fd;               /* the segment appends go to, or -1 */
    int prev_fd;          /* the segment a group began in, written and not yet synced, or -1 */
    uint64_t seg_start;   /* its position */
    uint64_t seg_used;    /* bytes written to it */
    ps_buf pending;       /* records appended since the last sync */
    uint64_t next_start;  /* where the next segment starts */
    bool broken;          /* a sync failed: nothing is appended any more */
};

static void path_of(const char *dir, uint64_t start, char *out, size_t cap)
{
    snprintf(out, cap, "%s/" PREFIX "%016" PRIx64, dir, start);
}

/* The segments' start positions, ascending. */
static size_t list_segments(const char *dir, uint64_t **out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strncmp(name, PREFIX, strlen(PREFIX)) != 0 || strlen(name) != strlen(PREFIX) + 16)
            continue;
        char *end;
        uint64_t start = strtoull(name + strlen(PREFIX), &end, 16);
        if (*end != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            *out = ps_xrealloc(*out, cap * sizeof **out);
        }
        (*out)[n++] = start;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) /* few segments: insertion sort */
        for (size_t k = i; k > 0 && (*out)[k] < (*out)[k - 1]; k--) {
            uint64_t t = (*out)[k];
            (*out)[k] = (*out)[k - 1];
            (*out)[k - 1] = t;
        }
    return n;
}

bool ps_journal_present(const char *dir)
{
    uint64_t *segs;
    size_t n = list_segments(dir, &segs);
    free(segs);
    return n > 0;
}

ps_status ps_journal_open(const char *dir, ps_journal **out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/journal.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        ps_log(PS_LOG_ERROR, "msg=\"cannot open journal lock\" path=%s error=\"%s\"", path,
               strerror(errno));
        return PS_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return PS_EBUSY;
    }
    ps_journal *j = ps_xcalloc(1, sizeof *j);
    j->dir = ps_xstrdup(dir);
    j->lock_fd = fd;
    j->fd = -1;
    j->prev_fd = -1;
    pthread_mutex_init(&j->lock, NULL);
    ps_buf_init(&j->pending);
    *out = j;
    return PS_OK;
}

void ps_journal_close(ps_journal *j)
{
    if (j == NULL)
        return;
    if (j->fd >= 0)
        close(j->fd);
    if (j->prev_fd >= 0)
        close(j->prev_fd);
    pthread_mutex_destroy(&j->lock);
    close(j->lock_fd); /* releases the flock */
    ps_buf_clear(&j->pending);
    free(j->dir);
    free(j);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t record_crc(const uint8_t *len_bytes, const uint8_t *payload, size_t len)
{
    uLong c = crc32(0L, len_bytes, 4);
    return (uint32_t)crc32(c, payload, (uInt)len);
}

/* Whether a whole record starts at `off` of the `size` bytes at `m`. */
static bool record_at(const uint8_t *m, size_t size, uint64_t off)
{
    if (off + HEAD > size)
        return false;
    uint32_t len = get_le32(m + off), crc = get_le32(m + off + 4);
    return len != 0 && len <= PS_JOURNAL_RECORD_MAX && off + HEAD + len <= size &&
           record_crc(m + off, m + off + HEAD, len) == crc;
}

/* The first offset after `off` where a whole record starts, or `size`. A record that does
 * not check out is the end of what was written (a crash cut the last write short, and the
 * allocated rest is zeros), unless whole records follow it: then it was damaged where it lay,
 * and what follows is still applied. */
static uint64_t next_record(const uint8_t *m, size_t size, uint64_t off)
{
    for (uint64_t p = off + 1; p + HEAD <= size; p++)
        if (m[p] != 0 && record_at(m, size, p)) /* a record's length is never 0 */
            return p;
    return size;
}

/* Visits the whole records of one segment from `off`; false when `fn` stopped. */
static bool scan_segment(const char *dir, uint64_t start, uint64_t off, ps_journal_fn fn, void *ud,
                         uint64_t *last, ps_status *st)
{
    char path[4096];
    path_of(dir, start, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true; /* released meanwhile: nothing there any more */
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size <= (off_t)off) {
        close(fd);
        return true;
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        *st = PS_EIO;
        return false;
    }
    bool going = true;
    while (off + HEAD <= size) {
        if (!record_at(m, size, off)) {
            if (get_le32(m + off) == 0 && get_le32(m + off + 4) == 0)
                break; /* the end of what was written */
            uint64_t next = next_record(m, size, off);
            if (next == size)
                break; /* a write a crash cut short */
            ps_log(PS_LOG_ERROR,
                   "msg=\"journal record damaged; skipped to the next whole one\" path=%s "
                   "offset=%llu skipped_bytes=%llu",
                   path, (unsigned long long)off, (unsigned long long)(next - off));
            off = next;
            continue;
        }
        uint32_t len = get_le32(m + off);
        off += HEAD + len;
        *last = start + off;
        if (!fn(ud, start + off, (ps_slice){m + off - len, len})) {
            going = false;
            break;
        }
    }
    munmap(m, size);
    return going;
}

ps_status ps_journal_scan(const char *dir, uint64_t from, ps_journal_fn fn, void *ud,
                          uint64_t *last)
{
    *last = from;
    uint64_t *segs;
    size_t n = list_segments(dir, &segs);
    ps_status st = PS_OK;
    for (size_t i = 0; i < n; i++) {
        uint64_t start = segs[i];
        if (start + PS_JOURNAL_SEGMENT <= from)
            continue;
        if (!scan_segment(dir, start, from > start ? from - start : 0, fn, ud, last, &st))
            break;
    }
    free(segs);
    return st;
}

ps_status ps_journal_start(ps_journal *j, uint64_t applied)
{
    uint64_t *segs;
    size_t n = list_segments(j->dir, &segs);
    uint64_t next = (applied + PS_JOURNAL_SEGMENT - 1) / PS_JOURNAL_SEGMENT * PS_JOURNAL_SEGMENT;
    if (n && segs[n - 1] + PS_JOURNAL_SEGMENT > next)
        next = segs[n - 1] + PS_JOURNAL_SEGMENT;
    free(segs);
    j->next_start = next;
    return PS_OK;
}

/* Opens the next segment, allocated whole, and makes its name durable. */
static ps_status new_segment(ps_journal *j)
{
    char path[4096];
    path_of(j->dir, j->next_start, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno == ENOSPC ? PS_EFULL : PS_EIO;
    int rc = posix_fallocate(fd, 0, PS_JOURNAL_SEGMENT);
    if (rc == 0 && ps_dir_sync(j->dir) != PS_OK)
        rc = errno ? errno : EIO;
    if (rc != 0) {
        close(fd);
        unlink(path);
        ps_log(PS_LOG_ERROR, "msg=\"cannot allocate journal segment\" path=%s error=\"%s\"", path,
               strerror(rc));
        return rc == ENOSPC ? PS_EFULL : PS_EIO;
    }
    pthread_mutex_lock(&j->lock);
    if (j->fd >= 0) /* written, synced with the rest of the group (ps_journal_sync) */
        j->prev_fd = j->fd;
    j->fd = fd;
    j->seg_start = j->next_start;
    pthread_mutex_unlock(&j->lock);
    j->seg_used = 0;
    j->next_start += PS_JOURNAL_SEGMENT;
    return PS_OK;
}

static ps_status write_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
    while (len) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return errno == ENOSPC ? PS_EFULL : PS_EIO;
        p += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return PS_OK;
}

/* Writes the pending records to the current segment (and, with `sync`, makes the group
 * durable: the segment it began in too). Any failure stops the journal: what reached the disk
 * is unknown, and a later group must not be written over it. */
static ps_status flush(ps_journal *j, bool sync)
{
    ps_status st =
        j->pending.len ? write_all(j->fd, j->pending.ptr, j->pending.len, j->seg_used) : PS_OK;
    if (st == PS_OK)
        j->seg_used += j->pending.len;
    ps_buf_reset(&j->pending);
    if (st == PS_OK && sync && j->prev_fd >= 0) {
        if (fdatasync(j->prev_fd) != 0)
            st = PS_EIO;
        close(j->prev_fd);
        j->prev_fd = -1;
    }
    if (st == PS_OK && sync && fdatasync(j->fd) != 0)
        st = PS_EIO;
    if (st != PS_OK) {
        ps_log(PS_LOG_ERROR, "msg=\"journal write failed\" error=\"%s\"", strerror(errno));
        j->broken = true;
    }
    return st;
}

ps_status ps_journal_append(ps_journal *j, ps_slice rec, uint64_t *end)
{
    if (j->broken)
        return PS_EIO;
    if (rec.len == 0 || rec.len > PS_JOURNAL_RECORD_MAX)
        return PS_ETOOBIG;
    size_t need = HEAD + rec.len;
    if (j->fd < 0 || j->seg_used + j->pending.len + need > PS_JOURNAL_SEGMENT) {
        /* the group so far goes to the current segment, written now and synced with the
         * rest at ps_journal_sync; the rest goes to a new one */
        ps_status st = j->fd >= 0 ? flush(j, false) : PS_OK;
        if (st == PS_OK)
            st = new_segment(j);
        if (st != PS_OK)
            return st;
    }
    uint8_t head[HEAD];
    put_le32(head, (uint32_t)rec.len);
    put_le32(head + 4, record_crc(head, rec.ptr, rec.len));
    ps_buf_append(&j->pending, head, HEAD);
    ps_buf_append(&j->pending, rec.ptr, rec.len);
    *end = j->seg_start + j->seg_used + j->pending.len;
    return PS_OK;
}

ps_status ps_journal_sync(ps_journal *j)
{
    if (j->broken) {
        ps_buf_reset(&j->pending);
        return PS_EIO;
    }
    if (j->fd < 0)
        return PS_OK; /* nothing appended yet */
    return flush(j, true);
}

void ps_journal_discard(ps_journal *j)
{
    ps_buf_reset(&j->pending);
}

void ps_journal_release(ps_journal *j, uint64_t applied, bool all)
{
    uint64_t *segs;
    size_t n = list_segments(j->dir, &segs);
    pthread_mutex_lock(&j->lock);
    bool open = j->fd >= 0;
    uint64_t seg_start = j->seg_start;
    pthread_mutex_unlock(&j->lock);
    for (size_t i = 0; i < n; i++) {
        bool current = open && segs[i] >= seg_start; /* appends may be going there */
        /* wholly applied when the next segment starts at or before `applied` */
        bool done = all || (i + 1 < n && segs[i + 1] <= applied);
        if (!done || (current && !all))
            continue;
        if (current) {
            close(j->fd);
            j->fd = -1;
        }
        char path[4096];
        path_of(j->dir, segs[i], path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT)
            ps_log(PS_LOG_WARN, "msg=\"cannot remove journal segment\" path=%s error=\"%s\"", path,
                   strerror(errno));
    }
    free(segs);
}
