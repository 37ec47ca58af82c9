/* SPDX-License-Identifier: MIT */
/* store: one LMDB environment per space, its transactions, counters and meta table. The
 * storage layer is the only one that sees LMDB, msgpack and zstd; records cross it as plain
 * structs, through this header and the tables' own: ps/graphdb.h (the identity graph),
 * ps/records.h (traits, events, links, audit) and ps/msglog.h (the message log and dedup).
 * Layouts are in docs/storage-format.md and in the comments of src/storage/store.c.
 *
 * Lifetimes: strings returned as ps_slice or `const char *` from a read are borrowed: valid
 * until the transaction ends, and in a write transaction only until the next write. */
#ifndef PS_STORE_H
#define PS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/mem.h"
#include "ps/status.h"

#define PS_STORE_FORMAT 2    /* on-disk format version written in meta */
#define PS_ID_BYTES 404      /* a message id (100 code points) or identifier value */
#define PS_SEGMENT_ID_LEN 31 /* "use_" + 27 base62 */

typedef struct ps_store ps_store;
typedef struct ps_txn ps_txn;

typedef struct ps_store_opts {
    uint64_t map_size_bytes; /* 0: PS_MAP_SIZE from the environment, else 16 GiB */
    bool read_only;
    bool create;     /* create the directory and environment when missing */
    bool any_format; /* open an older format too (for ps_store_migrate() only) */
} ps_store_opts;

/* Opens the environment in directory `dir`. Refuses a newer format (PS_ECORRUPT) and an older
 * one that holds data (PS_EFORMAT, unless opts->any_format); an older store without profiles
 * or events (the catalog, a new space) is marked current on open. Writes the current format
 * into a new store. Returns an owned store; close it with ps_store_close(). */
ps_status ps_store_open(const char *dir, const ps_store_opts *opts, ps_store **out);
/* The map size PS_MAP_SIZE asks for (*out 0 when it is unset), or PS_EINVAL (logged) when it
 * is not a number of bytes from 64 KiB to 64 TiB. A server checks it once at start. */
ps_status ps_store_env_map_size(uint64_t *out);
void ps_store_close(ps_store *s);
/* The store's format as found at open (PS_STORE_FORMAT unless opened with any_format). */
int ps_store_format(const ps_store *s);
/* The space name the store was opened for (last path component). Borrowed. */
const char *ps_store_name(const ps_store *s);
/* Map size in bytes and bytes in use, for metrics and errors. */
void ps_store_usage(ps_store *s, uint64_t *map_bytes, uint64_t *used_bytes);

/* Whether the store's commits write the data file back in steps of a few milliseconds each
 * before they sync it, rather than in one burst (src/storage/writeback.c): another file's
 * sync on the same disk, such as the server's journal, then waits for one step, not for the
 * whole commit. A commit takes about a tenth longer. Off by default; the server turns it on
 * for a space whose journal it writes. */
void ps_store_pace_writeback(ps_store *s, bool on);
/* Steps taken by paced commits in this process (for tests). */
uint64_t ps_store_writeback_steps(void);

/* One read or write transaction. Write transactions are serialized by LMDB (one writer per
 * environment, across processes). Commit makes the whole transaction durable at once. */
ps_status ps_txn_begin(ps_store *s, bool write, ps_txn **out);
ps_status ps_txn_commit(ps_txn *t); /* frees `t` whatever the result */
void ps_txn_abort(ps_txn *t);       /* frees `t`; NULL is a no-op */
/* The store a transaction belongs to. */
ps_store *ps_txn_store(ps_txn *t);
/* The snapshot a transaction reads: later commits give larger numbers. */
uint64_t ps_txn_snapshot(ps_txn *t);
/* Whether it is a write transaction (whose snapshot number is the one its commit will have,
 * and names nothing committed before then). */
bool ps_txn_writable(const ps_txn *t);

/* Monotonic counters kept in meta, loaded once per write transaction. */
#define PS_CTR_VIOLATION_SLOTS 16
typedef enum ps_counter {
    PS_CTR_PROFILE = 0, /* profile sequence numbers, from 1 */
    PS_CTR_MESSAGE,     /* accepted messages in processing order, from 1 */
    PS_CTR_AUDIT,       /* audit rows, from 1 */
    PS_CTR_MAPPING,     /* identifier mappings (map_ ids), from 1 */
    PS_CTR_MERGE,       /* absorbed profiles, from 1 (stores of older builds lack it: 1) */
    PS_CTR_VIOLATION,   /* violations recorded, one counter per reason from here on (the
                         * resolver's ps_violation; older stores lack them: 1) */
    PS_CTR__COUNT = PS_CTR_VIOLATION + PS_CTR_VIOLATION_SLOTS
} ps_counter;
/* Returns the next value of `c` and advances it (write transactions only). */
uint64_t ps_txn_next(ps_txn *t, ps_counter c);
/* The next value that ps_txn_next() would return, without advancing it. */
uint64_t ps_txn_peek(ps_txn *t, ps_counter c);

/* ---- meta: named values (settings JSON, versions) ---- */
ps_status ps_store_meta_get(ps_txn *t, const char *key, ps_slice *out);
ps_status ps_store_meta_put(ps_txn *t, const char *key, ps_slice value);
/* A number kept in meta as 8 big-endian bytes (a mark, a counter): PS_ENOTFOUND when absent
 * (*out untouched), PS_ECORRUPT when the value is not 8 bytes. */
ps_status ps_store_meta_get_u64(ps_txn *t, const char *key, uint64_t *out);
ps_status ps_store_meta_put_u64(ps_txn *t, const char *key, uint64_t value);
ps_status ps_store_meta_del(ps_txn *t, const char *key); /* PS_ENOTFOUND when absent */
/* Deletes every entry whose key starts with `prefix` (a non-empty string); none is PS_OK. */
ps_status ps_store_meta_del_prefix(ps_txn *t, const char *prefix);
typedef bool (*ps_meta_fn)(void *ud, ps_slice key, ps_slice value);
/* Visits the meta entries whose key starts with `prefix`, by key. */
ps_status ps_store_meta_scan(ps_txn *t, const char *prefix, ps_meta_fn fn, void *ud);

/* Empties every derived table (all but meta and the log) and restarts their counters; the
 * message counter, settings, tokens and the log stay. For a rebuild from the log. */
ps_status ps_store_clear_derived(ps_txn *t);

/* Entry counts of every named database, for `check` and metrics. */
typedef struct ps_store_counts {
    uint64_t profiles, segids, idents, pmaps, members, traits, events, pevents, links, dedups,
        audits, logs;
} ps_store_counts;
ps_status ps_store_counts_get(ps_txn *t, ps_store_counts *out);
/* Reads every page the newest snapshot of the store reaches, and LMDB's list of free pages,
 * with pread, and checks each page against LMDB's layout: what a write would
 * trust (a write copies the pages it changes by the offsets in their headers). PS_ECORRUPT,
 * with the first damage in `why` ("page N: what"), when one breaks it. *reached: pages the
 * tables use; *free_pages: pages free for later writes. Every process audits a store so before
 * its first write to it (a damaged page then refuses every write of the process). */
ps_status ps_store_pages_audit(ps_store *s, uint64_t *reached, uint64_t *free_pages, char *why,
                               size_t why_cap);
/* Starts that audit before the first write on a thread of its own, so that the first write
 * finds it done (or waits only for the rest of it): for a server, when it opens a space. The
 * thread ends with the audit; ps_store_close waits for it. Two at most run at once in a
 * process; past that the store is audited at its first write, as without this call. */
void ps_store_audit_ahead(ps_store *s);

/* Rewrites the store into fresh pages (records copied in key order into a new file) and
 * swaps the new file in with one rename; closes *s and reopens it. Erased records leave no
 * bytes behind, not even in the free space of live pages. Only when no other process has the
 * store open (ps_store_other_processes). Sizes: allocated bytes of data.mdb. */
ps_status ps_store_compact(ps_store **s, const char *dir, uint64_t *bytes_before,
                           uint64_t *bytes_after);
/* Writes a consistent copy of the store (one read transaction's view) into the new directory
 * `dir` (made, with the directories above it), record by record, so that no byte of an erased
 * record comes along; writers go on meanwhile. PS_ECONFLICT when `dir` exists; on failure nothing
 * stays behind. */
ps_status ps_store_snapshot(ps_store *s, const char *dir, uint64_t *records);
/* Removes the files of a closed store in `dir`, then `dir` when that leaves it empty: what a
 * creation that failed half-way made. */
void ps_store_remove(const char *dir);
/* How many other processes have reader slots in the store (stale slots are cleared first). */
int ps_store_other_processes(ps_store *s);

/* Runs fn(ud), which uses the store `s`, and returns what it returns, except that when LMDB
 * meets a damaged page of `s` (an assertion it would abort on, a read or write through the map
 * that faults, or a segmentation fault in LMDB's code: an offset from a damaged page that
 * points past a page copied to the heap) fn is cut short where it is and PS_ECORRUPT comes back:
 * the thread goes on, and the store is marked damaged. What fn began is left for the caller to end:
 * the transactions it opened are still open (abort them; a write transaction must not be
 * committed), its own allocations are lost. So every transaction fn uses must be kept in
 * memory that outlives fn. Guards nest. */
ps_status ps_store_guarded(ps_store *s, ps_status (*fn)(void *ud), void *ud);
/* ps_store_guarded() for the common case: fn(t, ud) in a read transaction of its own, which
 * ends however fn ends. *ran (when not NULL) says whether fn ran: false when the transaction
 * could not begin, whose status comes back. */
ps_status ps_store_read_guarded(ps_store *s, ps_status (*fn)(ps_txn *t, void *ud), void *ud,
                                bool *ran);
/* ps_store_guarded() for a change: fn(t, ud) in a write transaction of its own, committed
 * (the commit guarded too) when fn returns PS_OK and aborted otherwise. A damaged page met on
 * the way gives PS_ECORRUPT, and nothing fn did is written. */
ps_status ps_store_write_guarded(ps_store *s, ps_status (*fn)(ps_txn *t, void *ud), void *ud);
/* Whether a guarded call of this process met a damaged page in the store. */
bool ps_store_damaged(ps_store *s);
/* The pid of another running process that keeps the store's writer lock since a write of its
 * met a damaged page (it leaves a note, `writer.broken`, beside the data file), else 0. No
 * write transaction can begin while it runs. */
long ps_store_broken_writer(ps_store *s);

#endif
