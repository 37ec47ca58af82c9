/* SPDX-License-Identifier: MIT */
/* source: sources and write keys in the catalog environment DATA/meta. Records (in the meta
 * table of that environment):
 *   "source/<space>/<source_id>" -> OFFSET 0 SIZE 32 SHA-256 of the write key;
 *                                   OFFSET 32 SIZE 8 creation ms, big-endian; then the name.
 *   "wkey/<64 hex of SHA-256>"   -> "<space>\0<source_id>"
 *   "origins/<space>/<source_id>" -> the web origins allowed, sorted, '\n' between them;
 *                                   absent when any origin may send.
 * The first two are written in one transaction, so a key never points at a missing source. */
#include "ps/source.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ps/auth.h"
#include "ps/store.h"
#include "ps/text.h"

#define SOURCE_PREFIX "source/"
#define WKEY_PREFIX "wkey/"
#define ORIGINS_PREFIX "origins/"
#define SOURCE_REC_MIN (PS_DIGEST_BYTES + 8)
#define KEY_CAP (sizeof ORIGINS_PREFIX + PS_SPACE_NAME_MAX + PS_SOURCE_ID_BUF + 8)
#define WKEY_CAP (sizeof WKEY_PREFIX + 2 * PS_DIGEST_BYTES + 1)

struct ps_sources {
    ps_store *store;
};

ps_status ps_sources_open(const char *data_dir, bool create, ps_sources **out)
{
    char dir[4096];
    int n = snprintf(dir, sizeof dir, "%s/meta", data_dir);
    if (n < 0 || (size_t)n >= sizeof dir)
        return PS_EINVAL;
    /* small map: the catalog holds a few records per source */
    ps_store_opts opts = {.map_size_bytes = 64ULL << 20, .create = create};
    ps_store *st;
    ps_status rc = ps_store_open(dir, &opts, &st);
    if (rc != PS_OK)
        return rc;
    ps_sources *s = ps_xcalloc(1, sizeof *s);
    s->store = st;
    *out = s;
    return PS_OK;
}

void ps_sources_close(ps_sources *s)
{
    if (s == NULL)
        return;
    ps_store_close(s->store);
    free(s);
}

static void wkey_name(const uint8_t hash[PS_DIGEST_BYTES], char out[WKEY_CAP])
{
    memcpy(out, WKEY_PREFIX, sizeof WKEY_PREFIX - 1);
    ps_hex(hash, PS_DIGEST_BYTES, out + sizeof WKEY_PREFIX - 1);
}

/* Decodes a "source/<space>/<id>" record into `out`; false when it is not well formed. */
static bool source_decode(const char *space, ps_slice key, ps_slice value, ps_source_info *out)
{
    size_t skip = sizeof SOURCE_PREFIX - 1 + strlen(space) + 1;
    size_t idl = key.len - skip, nl = value.len - SOURCE_REC_MIN;
    if (key.len <= skip || idl >= PS_SOURCE_ID_BUF || value.len < SOURCE_REC_MIN ||
        nl > PS_SOURCE_NAME_MAX)
        return false;
    memset(out, 0, sizeof *out);
    memcpy(out->source_id, key.ptr + skip, idl);
    memcpy(out->name, value.ptr + SOURCE_REC_MIN, nl);
    snprintf(out->space, sizeof out->space, "%s", space);
    out->created_ms = (int64_t)ps_get_be64(value.ptr + PS_DIGEST_BYTES);
    return true;
}

/* Copies the origin list of (space, source_id) into out->origins (empty when none). */
static ps_status origins_load(ps_txn *t, const char *space, const char *source_id,
                              ps_source_info *out)
{
    char key[KEY_CAP];
    ps_slice v;
    snprintf(key, sizeof key, ORIGINS_PREFIX "%s/%s", space, source_id);
    out->origins[0] = 0;
    ps_status st = ps_store_meta_get(t, key, &v);
    if (st == PS_ENOTFOUND)
        return PS_OK;
    if (st != PS_OK)
        return st;
    if (v.len >= sizeof out->origins || memchr(v.ptr, 0, v.len))
        return PS_ECORRUPT;
    memcpy(out->origins, v.ptr, v.len);
    out->origins[v.len] = 0;
    return PS_OK;
}

typedef struct scan_ctx {
    ps_txn *t;
    const char *space;
    const char *name; /* looking for this name (or source id, when by_id) */
    bool by_id;
    bool found;
    ps_status st; /* of loading an origin list */
    char found_id[PS_SOURCE_ID_BUF];
    size_t count;
    ps_source_fn fn;
    void *ud;
} scan_ctx;

static bool scan_source(void *ud, ps_slice key, ps_slice value)
{
    scan_ctx *c = ud;
    ps_source_info info;
    if (!source_decode(c->space, key, value, &info))
        return true; /* not ours: skip */
    c->count++;
    if (c->name &&
        (strcmp(info.name, c->name) == 0 || (c->by_id && strcmp(info.source_id, c->name) == 0))) {
        c->found = true;
        snprintf(c->found_id, sizeof c->found_id, "%s", info.source_id);
    }
    if (!c->fn)
        return true;
    if ((c->st = origins_load(c->t, c->space, info.source_id, &info)) != PS_OK)
        return false;
    return c->fn(c->ud, &info);
}

static ps_status scan_space(ps_txn *t, scan_ctx *c)
{
    char prefix[KEY_CAP];
    snprintf(prefix, sizeof prefix, SOURCE_PREFIX "%s/", c->space);
    c->t = t;
    ps_status st = ps_store_meta_scan(t, prefix, scan_source, c);
    return st != PS_OK ? st : c->st;
}

ps_status ps_source_create(ps_sources *s, const char *space, const char *name, int64_t now_ms,
                           ps_source_info *out)
{
    if (!ps_space_name_valid(space) || (name && !ps_space_name_valid(name)))
        return PS_EINVAL;
    ps_txn *t;
    ps_status st = ps_txn_begin(s->store, true, &t);
    if (st != PS_OK)
        return st;
    memset(out, 0, sizeof *out);
    snprintf(out->space, sizeof out->space, "%s", space);
    out->created_ms = now_ms;
    scan_ctx c = {.space = space, .name = name};
    if ((st = scan_space(t, &c)) != PS_OK)
        goto fail;
    if (name && c.found) {
        st = PS_ECONFLICT;
        goto fail;
    }
    if (name) {
        snprintf(out->name, sizeof out->name, "%s", name);
    } else {
        for (size_t n = c.count + 1;; n++) { /* first free "source-N" */
            snprintf(out->name, sizeof out->name, "source-%zu", n);
            scan_ctx again = {.space = space, .name = out->name};
            if ((st = scan_space(t, &again)) != PS_OK)
                goto fail;
            if (!again.found)
                break;
        }
    }
    uint8_t raw[24];
    ps_auth_random(raw, 12);
    memcpy(out->source_id, "src_", 4);
    ps_base62(raw, 12, out->source_id + 4, 16);
    ps_auth_random(raw, sizeof raw);
    ps_base62(raw, sizeof raw, out->write_key, 32); /* about 190 bits */

    size_t nl = strlen(out->name);
    uint8_t rec[SOURCE_REC_MIN + PS_SOURCE_NAME_MAX];
    ps_auth_digest(out->write_key, strlen(out->write_key), rec);
    ps_put_be64(rec + PS_DIGEST_BYTES, (uint64_t)now_ms);
    memcpy(rec + SOURCE_REC_MIN, out->name, nl);
    char key[KEY_CAP], wkey[WKEY_CAP], target[PS_SPACE_NAME_MAX + PS_SOURCE_ID_BUF + 2];
    snprintf(key, sizeof key, SOURCE_PREFIX "%s/%s", space, out->source_id);
    wkey_name(rec, wkey);
    int tl = snprintf(target, sizeof target, "%s%c%s", space, 0, out->source_id);
    if ((st = ps_store_meta_put(t, key, (ps_slice){rec, SOURCE_REC_MIN + nl})) != PS_OK ||
        (st = ps_store_meta_put(t, wkey, (ps_slice){(const uint8_t *)target, (size_t)tl})) != PS_OK)
        goto fail;
    return ps_txn_commit(t);
fail:
    ps_txn_abort(t);
    return st;
}

static ps_status list_step(ps_txn *t, void *ud)
{
    return scan_space(t, ud);
}

ps_status ps_source_list(ps_sources *s, const char *space, ps_source_fn fn, void *ud)
{
    if (!ps_space_name_valid(space))
        return PS_EINVAL;
    scan_ctx c = {.space = space, .fn = fn, .ud = ud};
    return ps_store_read_guarded(s->store, list_step, &c, NULL);
}

/* A write key's row, read guarded: a damaged page fails the request that presented the key,
 * not the server. */
typedef struct find_call {
    const char *wkey;
    bool with_origins;
    ps_source_info *out;
} find_call;

static ps_status find_step(ps_txn *t, void *ud)
{
    find_call *f = ud;
    ps_source_info *out = f->out;
    ps_slice v;
    ps_status st = ps_store_meta_get(t, f->wkey, &v);
    if (st == PS_ENOTFOUND)
        return PS_EAUTH;
    if (st != PS_OK)
        return st;
    const uint8_t *nul = memchr(v.ptr, 0, v.len);
    size_t sl = nul ? (size_t)(nul - v.ptr) : 0, il = nul ? v.len - sl - 1 : 0;
    if (nul == NULL || sl == 0 || sl > PS_SPACE_NAME_MAX || il == 0 || il >= PS_SOURCE_ID_BUF)
        return PS_ECORRUPT;
    memcpy(out->space, v.ptr, sl);
    memcpy(out->source_id, nul + 1, il);
    return f->with_origins ? origins_load(t, out->space, out->source_id, out) : PS_OK;
}

ps_status ps_source_find(ps_sources *s, const char *key, size_t len, bool with_origins,
                         ps_source_info *out)
{
    if (len == 0 || len > PS_WRITE_KEY_MAX)
        return PS_EAUTH;
    uint8_t hash[PS_DIGEST_BYTES];
    char wkey[WKEY_CAP];
    ps_auth_digest(key, len, hash);
    wkey_name(hash, wkey);
    memset(out, 0, offsetof(ps_source_info, origins) + 1); /* origins: an empty list */
    find_call f = {wkey, with_origins, out};
    return ps_store_read_guarded(s->store, find_step, &f, NULL);
}

/* ---- web origins ---- */

bool ps_origin_normalize(const char *in, size_t len, char *out)
{
    size_t skip;
    if (len > PS_ORIGIN_MAX)
        return false;
    if (len > 8 && strncasecmp(in, "https://", 8) == 0)
        skip = 8;
    else if (len > 7 && strncasecmp(in, "http://", 7) == 0)
        skip = 7;
    else
        return false;
    size_t i = skip, label = 0, port = 0;
    bool colon = false;
    if (len - i > 2 && in[i] == '*' && in[i + 1] == '.')
        i += 2; /* every subdomain of what follows */
    size_t host_start = i;
    for (; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (colon) {
            if (ch < '0' || ch > '9' || ++port > 5)
                return false;
        } else if (ch == ':') {
            if (label == 0)
                return false;
            colon = true;
        } else if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '-') {
            if (++label > 63)
                return false;
        } else {
            return false; /* a path, user info, brackets, spaces: not an origin */
        }
    }
    if (i == host_start || (!colon && label == 0) || (colon && port == 0))
        return false;
    memcpy(out, in, len);
    out[len] = 0;
    ps_ascii_lower(out, len);
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

ps_status ps_source_set_origins(ps_sources *s, const char *space, const char *source,
                                const char *const *origins, size_t n, size_t *bad)
{
    const char *sorted[PS_ORIGINS_MAX];
    *bad = n;
    if (!ps_space_name_valid(space) || n > PS_ORIGINS_MAX)
        return PS_EINVAL;
    char(*mine)[PS_ORIGIN_MAX + 1] = ps_xcalloc(PS_ORIGINS_MAX, sizeof *mine);
    for (size_t i = 0; i < n; i++) {
        if (!ps_origin_normalize(origins[i], strlen(origins[i]), mine[i])) {
            *bad = i;
            free(mine);
            return PS_EINVAL;
        }
        sorted[i] = mine[i];
    }
    qsort(sorted, n, sizeof *sorted, cmp_str);
    ps_buf list = {0};
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
            continue; /* listed twice */
        if (list.len)
            ps_buf_putc(&list, '\n');
        ps_buf_puts(&list, sorted[i]);
    }
    ps_txn *t;
    ps_status st = ps_txn_begin(s->store, true, &t);
    if (st != PS_OK)
        goto out;
    scan_ctx c = {.space = space, .name = source, .by_id = true};
    if ((st = scan_space(t, &c)) == PS_OK && !c.found)
        st = PS_ENOTFOUND;
    if (st == PS_OK) {
        char key[KEY_CAP];
        snprintf(key, sizeof key, ORIGINS_PREFIX "%s/%s", space, c.found_id);
        if (n == 0) {
            st = ps_store_meta_del(t, key);
            if (st == PS_ENOTFOUND)
                st = PS_OK;
        } else {
            st = ps_store_meta_put(t, key, (ps_slice){list.ptr, list.len});
        }
    }
    if (st == PS_OK)
        st = ps_txn_commit(t);
    else
        ps_txn_abort(t);
out:
    ps_buf_clear(&list);
    free(mine);
    return st;
}

/* True when origin `o` (lower case) is `entry` or, for a "*." entry, one of its subdomains
 * with the same scheme and port. */
static bool origin_matches(const char *entry, size_t el, const char *o, size_t ol)
{
    if (el == ol && memcmp(entry, o, el) == 0)
        return true;
    const char *star = memchr(entry, '*', el);
    if (star == NULL)
        return false;
    size_t scheme = (size_t)(star - entry), rest = el - scheme - 1; /* ".example.com[:p]" */
    if (ol <= scheme + rest || memcmp(o, entry, scheme) != 0 ||
        memcmp(o + ol - rest, star + 1, rest) != 0)
        return false;
    for (size_t i = scheme; i < ol - rest; i++) /* the subdomain part: a host, no port */
        if (o[i] == ':' || o[i] == '/')
            return false;
    return true;
}

bool ps_source_origin_allowed(const ps_source_info *src, const char *origin, size_t len)
{
    if (src->origins[0] == 0 || origin == NULL)
        return true;
    char o[PS_ORIGIN_MAX + 1];
    if (!ps_origin_normalize(origin, len, o) || memchr(o, '*', len))
        return false;
    for (const char *p = src->origins; *p;) {
        const char *nl = strchr(p, '\n');
        size_t el = nl ? (size_t)(nl - p) : strlen(p);
        if (origin_matches(p, el, o, len))
            return true;
        p += el + (nl != NULL);
    }
    return false;
}
