/* SPDX-License-Identifier: MIT */
/* process: this process's resource figures from /proc (Linux), for /metrics, and the start
 * time that tells one process from another that reuses its pid. */
#ifndef PS_PROCESS_H
#define PS_PROCESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ps_process_figures {
    double cpu_seconds;        /* user + system */
    double start_time_seconds; /* since the epoch */
    uint64_t resident_bytes, virtual_bytes;
    uint64_t open_fds, max_fds;
} ps_process_figures;

/* False when /proc cannot be read (the figures are then zero). */
bool ps_process_get(ps_process_figures *out);

/* Process `pid`'s start time, in clock ticks after boot (field 22 of /proc/PID/stat); 0 when
 * there is no such process. With the pid it names one process, even once the pid is reused. */
unsigned long long ps_process_start_ticks(long pid);

#endif
