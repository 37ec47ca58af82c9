/* SPDX-License-Identifier: MIT */
/* journal: the server's write-ahead file of accepted messages (docs/storage-format.md,
 * Journal). The Tracking API acknowledges a request once its messages are appended here and
 * synced: a sequential write of about 200 bytes a message. The space's store takes them
 * later, in larger commits, and records how far it got; whoever opens the space after a crash
 * applies the rest. Files in the store's directory: `journal.lock` (an flock held by the one
 * process that appends) and segments `journal-<start position, 16 hex digits>` of at most
 * PS_JOURNAL_SEGMENT bytes. A position is a byte offset in the journal as one stream. */
#ifndef PS_JOURNAL_H
#define PS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/status.h"

#define PS_JOURNAL_SEGMENT (64u << 20)
#define PS_JOURNAL_RECORD_MAX (1u << 20) /* a record is one encoded log value */

typedef struct ps_journal ps_journal;

/* Takes the journal of the store directory `dir` (creating nothing yet). PS_EBUSY when another
 * process holds it; PS_EIO when the lock file cannot be made. */
ps_status ps_journal_open(const char *dir, ps_journal **out);
/* Releases the lock. NULL is a no-op. */
void ps_journal_close(ps_journal *j);

/* Whether `dir` holds journal segments (looks only; takes no lock). */
bool ps_journal_present(const char *dir);

/* Visits the records of the journal in `dir` from position `from` in order; `end` is the
 * position after the record. A record that is not whole (a write cut short by a crash) ends
 * its segment. `fn` returns false to stop. *last gets the position after the last record
 * visited, or `from`. Needs no lock: a reader sees at least what was synced. */
typedef bool (*ps_journal_fn)(void *ud, uint64_t end, ps_slice rec);
ps_status ps_journal_scan(const char *dir, uint64_t from, ps_journal_fn fn, void *ud,
                          uint64_t *last);

/* Appends go to a new segment after every existing one (so a torn tail is never written
 * over) and at or past `applied` (the store's position: positions only grow, even after
 * every segment was removed). Call once, after recovery, before the first append. */
ps_status ps_journal_start(ps_journal *j, uint64_t applied);
/* Adds a record to the pending group; *end is the position after it. Nothing is written
 * before ps_journal_sync. PS_ETOOBIG for a record over PS_JOURNAL_RECORD_MAX. */
ps_status ps_journal_append(ps_journal *j, ps_slice rec, uint64_t *end);
/* Writes the pending group and makes it durable. On failure the group is dropped (its
 * positions are used again) and PS_EIO or PS_EFULL (no space) is returned. */
ps_status ps_journal_sync(ps_journal *j);
/* Drops the pending group unwritten. */
void ps_journal_discard(ps_journal *j);
/* Removes the segments that lie wholly before `applied` (never the one appends go to);
 * `all`: every segment, when everything appended is applied (a clean stop). */
void ps_journal_release(ps_journal *j, uint64_t applied, bool all);

#endif
