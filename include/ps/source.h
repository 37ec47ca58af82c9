/* SPDX-License-Identifier: MIT */
/* source: Tracking API sources and their write keys. A write key names no space, so the
 * mapping key -> (space, source) lives in the catalog environment DATA/meta
 * (docs/storage-format.md), which every process opens beside the spaces. Keys are stored as
 * SHA-256 hashes only; a key belongs to exactly one source of one space. A source created
 * while a server runs counts from the server's next request (each lookup reads a fresh
 * transaction). */
#ifndef PS_SOURCE_H
#define PS_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/space.h"
#include "ps/status.h"

#define PS_SOURCE_NAME_MAX 64 /* same alphabet as space names */
#define PS_SOURCE_ID_BUF 24   /* "src_" + 16 base62 characters + NUL */
#define PS_WRITE_KEY_BUF 40   /* 32 base62 characters + NUL */
#define PS_WRITE_KEY_MAX 256  /* longest key a lookup reads; longer ones cannot match */
#define PS_ORIGINS_MAX 16     /* web origins one source may list */
#define PS_ORIGIN_MAX 253     /* longest origin, "https://" and port included */

typedef struct ps_sources ps_sources;

/* Opens the catalog DATA/meta, creating it when `create` and it is missing (PS_ENOTFOUND
 * otherwise). Returns an owned handle; close it with ps_sources_close(). Thread-safe. */
ps_status ps_sources_open(const char *data_dir, bool create, ps_sources **out);
void ps_sources_close(ps_sources *s);

typedef struct ps_source_info {
    char source_id[PS_SOURCE_ID_BUF];
    char write_key[PS_WRITE_KEY_BUF]; /* only from ps_source_create(): shown once */
    char name[PS_SOURCE_NAME_MAX + 1];
    char space[PS_SPACE_NAME_MAX + 1];
    int64_t created_ms;
    /* The web origins this source takes events from, one per line (sorted, lower case);
     * empty: any origin. Filled by ps_source_list() and ps_source_find(with_origins). */
    char origins[PS_ORIGINS_MAX * (PS_ORIGIN_MAX + 1)];
} ps_source_info;

/* Creates a source of `space` (which the caller has checked exists). `name` NULL picks
 * "source-N". PS_EINVAL for a bad name, PS_ECONFLICT when the space has a source by it. */
ps_status ps_source_create(ps_sources *s, const char *space, const char *name, int64_t now_ms,
                           ps_source_info *out);

typedef bool (*ps_source_fn)(void *ud, const ps_source_info *src);
/* Visits the sources of `space` by source id; write_key is empty. */
ps_status ps_source_list(ps_sources *s, const char *space, ps_source_fn fn, void *ud);

/* The source a write key belongs to (space and source_id; name stays empty), with its web
 * origins only when `with_origins` (a request without an Origin header needs none: one
 * catalog read less). PS_EAUTH when the key is unknown. */
ps_status ps_source_find(ps_sources *s, const char *key, size_t len, bool with_origins,
                         ps_source_info *out);

/* Replaces the allow list of web origins of the source of `space` named or identified by
 * `source` (n == 0 clears it: any origin). Each origin is checked and normalized with
 * ps_origin_normalize() first. PS_EINVAL names no origin; `*bad` is set to the index of the
 * first invalid one (or n when there are too many). PS_ENOTFOUND: no such source. */
ps_status ps_source_set_origins(ps_sources *s, const char *space, const char *source,
                                const char *const *origins, size_t n, size_t *bad);

/* Checks a web origin as a browser sends it in the Origin header, "scheme://host[:port]"
 * with scheme http or https and no path, and writes its lower-case form to `out`
 * (PS_ORIGIN_MAX + 1 bytes). A host may start with "*." to stand for every subdomain of
 * the rest. False when `in` is not such an origin. */
bool ps_origin_normalize(const char *in, size_t len, char *out);

/* True when a request with Origin header `origin` (len bytes; NULL: none, as from a server)
 * may use `src`: no allow list, no Origin header, or an origin the list names or matches
 * through a "*." entry. */
bool ps_source_origin_allowed(const ps_source_info *src, const char *origin, size_t len);

#endif
