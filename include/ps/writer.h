/* SPDX-License-Identifier: MIT */
/* writer: the one writer thread of a space. Callers (HTTP workers) submit prepared
 * payloads; the writer resolves them in submission order through the ingest path and commits
 * them in groups: a group closes when the queue is empty, when it holds `batch_events`
 * accepted messages, or when it has been open `batch_ms`. Each submission's callback runs, on
 * the writer thread, only after the commit holding its events returned: PS_OK means durable.
 * The queue is bounded in bytes; a full queue refuses new work (PS_EBUSY) instead of growing. */
#ifndef PS_WRITER_H
#define PS_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "ps/ingest.h"
#include "ps/space.h"
#include "ps/status.h"

typedef struct ps_writer_opts {
    size_t batch_events; /* accepted messages per commit at most (0: 5000) */
    int batch_ms;        /* a group stays open this long at most (0: 20) */
    size_t queue_bytes;  /* memory queued payloads may hold (0: 64 MiB) */
} ps_writer_opts;

/* Outcome of one submission: PS_OK once committed durably; else what failed (then none of
 * the submission's events are stored). */
typedef void (*ps_writer_done)(void *ud, ps_status st);

typedef struct ps_writer ps_writer;

/* Starts the writer thread of `sp` (which must outlive it). */
ps_status ps_writer_start(ps_space *sp, const ps_writer_opts *opts, ps_writer **out);

/* Queues `p` (taken) with its callback. PS_EBUSY when the queue is full and PS_ECLOSED when
 * the writer is stopping; then `p` is freed and `done` is never called. */
ps_status ps_writer_submit(ps_writer *w, ps_prepared *p, ps_writer_done done, void *ud);

/* Stops taking work (submit says PS_ECLOSED from now on), resolves and commits everything
 * queued (callbacks run) and joins the thread. Idempotent; NULL is a no-op. */
void ps_writer_stop(ps_writer *w);
/* Stops the writer if needed and frees it. NULL is a no-op. */
void ps_writer_free(ps_writer *w);

#endif
