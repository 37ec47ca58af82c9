/* SPDX-License-Identifier: MIT */
/* process: this process's resource figures from /proc (see ps/process.h). */
#include "ps/process.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The system's boot time, seconds since the epoch (/proc/stat "btime"). */
static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    char line[256];
    double btime = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "btime ", 6) == 0) {
            btime = strtod(line + 6, NULL);
            break;
        }
    if (f)
        fclose(f);
    return btime;
}

/* The fields of /proc/PID/stat after the command name (from field 3, "state"), read into
 * `buf`; NULL when there is no such process. The name in parentheses may hold spaces and
 * parentheses: the fields start after its last ')'. */
static const char *stat_fields(long pid, char *buf, size_t cap)
{
    char path[64];
    if (pid)
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return NULL;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p + 2 : NULL;
}

unsigned long long ps_process_start_ticks(long pid)
{
    char buf[1024];
    const char *p = stat_fields(pid, buf, sizeof buf);
    unsigned long long start = 0;
    /* fields 3..22: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime cutime cstime priority nice threads itrealvalue starttime */
    if (p == NULL || sscanf(p,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
                            "%*d %*d %*d %llu",
                            &start) != 1)
        return 0;
    return start;
}

bool ps_process_get(ps_process_figures *out)
{
    memset(out, 0, sizeof *out);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out->max_fds = rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            out->open_fds += e->d_name[0] != '.';
        out->open_fds--; /* the directory stream's own */
        closedir(d);
    }
    char buf[1024];
    const char *p = stat_fields(0, buf, sizeof buf);
    if (p == NULL)
        return false;
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    /* fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime cutime cstime priority nice threads itrealvalue starttime vsize rss */
    if (sscanf(p,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
               "%llu %llu %lld",
               &utime, &stime, &start, &vsize, &rss) != 5)
        return false;
    double tick = (double)sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (tick <= 0 || page <= 0)
        return false;
    out->cpu_seconds = (double)(utime + stime) / tick;
    out->start_time_seconds = boot_time() + (double)start / tick;
    out->virtual_bytes = vsize;
    out->resident_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)page : 0;
    return true;
}
