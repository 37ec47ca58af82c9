/* SPDX-License-Identifier: MIT */
/* space: a space is one LMDB environment under DATA/spaces/<name>/ holding its identity
 * graph and its identity settings. Creates, lists and opens spaces; reads and replaces
 * settings (new settings apply to events processed afterwards only). */
#ifndef PS_SPACE_H
#define PS_SPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/filters.h"
#include "ps/mem.h"
#include "ps/rules.h"
#include "ps/status.h"
#include "ps/store.h"

#define PS_SPACE_NAME_MAX 64

typedef struct ps_space ps_space;

/* True for 1-64 characters of A-Z a-z 0-9 '_' '-'. */
bool ps_space_name_valid(const char *name);

/* Creates space `name` with `settings` JSON (NULL for defaults). PS_ECONFLICT if it exists;
 * PS_EINVAL with `diags` filled when the settings are invalid (nothing is created). */
/* Checks what the environment tells every space's store (PS_MAP_SIZE): PS_EINVAL, logged with
 * the reason, when it is not usable. A server checks it before it starts. */
ps_status ps_space_env_check(void);

ps_status ps_space_create(const char *data_dir, const char *name, const char *settings,
                          size_t settings_len, ps_diags *diags);

/* Opens an existing space. PS_ENOTFOUND if there is none. Returns an owned space; close it
 * with ps_space_close(). */
ps_status ps_space_open(const char *data_dir, const char *name, bool read_only, ps_space **out);
void ps_space_close(ps_space *sp);

ps_store *ps_space_store(ps_space *sp);
/* Runs fn(t, ud) in a read transaction of its own on the space's store, guarded
 * (ps_store_read_guarded): a damaged page fn meets ends it with PS_ECORRUPT, not the
 * process. For commands that read the space through the read model. */
ps_status ps_space_read(ps_space *sp, ps_status (*fn)(ps_txn *t, void *ud), void *ud);
/* The pid of another running process (a profiled) that keeps the space's write lock since a
 * write of its met a damaged page, else 0 (ps_store_broken_writer). */
long ps_space_broken_writer(ps_space *sp);
/* Audits the space's pages now, on a thread of its own, rather than at its first write
 * (ps_store_audit_ahead): a server calls it when it opens a space. */
void ps_space_audit_ahead(ps_space *sp);
const char *ps_space_name(const ps_space *sp);
const char *ps_space_dir(const ps_space *sp); /* DATA/spaces/<name> */

/* The space's current rules as seen by `t`, reloaded when the settings changed. Safe to call
 * from several threads. Borrowed: valid until ps_space_close() (replaced rules are kept). */
ps_status ps_space_rules(ps_space *sp, ps_txn *t, const ps_rules **out);
/* The space's cursor secret (PS_SECRET_BYTES, auth.h), read through `t` the first time and
 * kept: it never changes once the space has one. */
ps_status ps_space_secret(ps_space *sp, ps_txn *t, uint8_t out[32]);

/* The space's event filters as of `t` (meta PS_FILTERS_KEY), compiled once per version and
 * borrowed until the space closes. */
#define PS_FILTERS_KEY "filters"
ps_status ps_space_filters(ps_space *sp, ps_txn *t, const ps_filter_set **out);
/* Adds the drops of one payload (`hits`, by filter index of `set`) to the space's counts. */
void ps_space_filter_hits_add(ps_space *sp, const ps_filter_set *set, const uint32_t *hits);
/* The current filters' names and their drops since the space opened; returns how many. */
size_t ps_space_filter_hits(ps_space *sp, char names[][PS_FILTER_NAME_MAX + 1], uint64_t *hits);

/* A space's figures for /metrics, as one read transaction sees them. */
#define PS_SPACE_VIOLATION_REASONS 16 /* at least the resolution's reasons (ps_violation) */
typedef struct ps_space_figures {
    uint64_t profiles;    /* canonical ones */
    uint64_t identifiers; /* mapped to profiles */
    uint64_t merges;      /* profiles merged into others, ever */
    uint64_t events;      /* track, page and screen events kept for the Profile API */
    uint64_t map_bytes, used_bytes;
    uint64_t violations[PS_SPACE_VIOLATION_REASONS]; /* ever, by ps_violation */
    bool damaged; /* a read or write of this process met a page LMDB found damaged (even when
                   * the other figures cannot be read) */
} ps_space_figures;
ps_status ps_space_figures_get(ps_space *sp, ps_space_figures *out);

/* The space's two request rate limits (docs/http-api.md): each has its own token bucket. */
typedef enum ps_rate_kind {
    PS_RATE_API,    /* Profile API: api_rate_limit_* */
    PS_RATE_INGEST, /* Tracking API: ingest_rate_limit_* */
} ps_rate_kind;

/* Takes one request of `kind` from the space's token bucket (rate and burst from `r`).
 * Returns false when over the limit, with *retry_ms the wait. Thread-safe. */
bool ps_space_rate_take(ps_space *sp, const ps_rules *r, ps_rate_kind kind, int64_t now_ms,
                        int64_t *retry_ms);

/* Replaces the settings after validating them whole. */
ps_status ps_space_settings_set(ps_space *sp, const char *json, size_t len, ps_diags *diags);
/* The same inside the write transaction `t` (which commits it). */
ps_status ps_space_settings_put(ps_txn *t, const char *json, size_t len, ps_diags *diags);

/* Appends the effective settings (configured plus auto-added types, ranked) as JSON. */
ps_status ps_space_settings_get(ps_space *sp, ps_buf *out);

/* Names of every space, sorted. Returns an owned array of owned strings; free with
 * ps_space_list_free(). */
ps_status ps_space_list(const char *data_dir, char ***names, size_t *count);
void ps_space_list_free(char **names, size_t count);

/* Copies the space, consistent as of one moment, into `data_dir`/spaces/<name> (the
 * directories are made; the space must not exist there): the copy is a space a server or
 * profilectl can open with --data `data_dir`. *log_seq receives the last message of the log
 * it holds (where a copy taken for a replica resumes), *records the records copied. */
ps_status ps_space_snapshot(ps_space *sp, const char *data_dir, uint64_t *records,
                            uint64_t *log_seq);

/* Rewrites the space's store into fresh pages and swaps it in (ps_store_compact): after a
 * deletion, no byte of what was erased stays in its file. PS_EBUSY while another process
 * (a server) has the space open. Sizes: allocated bytes of the data file. */
ps_status ps_space_compact(ps_space *sp, uint64_t *bytes_before, uint64_t *bytes_after);

#endif
