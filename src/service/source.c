/* SPDX-License-Identifier: MIT */
/* source: sources and write keys in the catalog environment DATA/meta. Records (in the meta
 * table of that environment):
 *   "source/<space>/<source_id>" -> OFFSET 0 SIZE 32 SHA-256 of the write key;
 *                                   OFFSET 32 SIZE 8 creation ms, big-endian; then the name.
 *   "wkey/<64 hex of SHA-256>"   -> "<space>\0<source_id>"
 * Both are written in one transaction, so a key never points at a missing source. */
#include "ps/source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/auth.h"
#include "ps/store.h"
#include "ps/text.h"

#define SOURCE_PREFIX "source/"
#define WKEY_PREFIX "wkey/"
#define SOURCE_REC_MIN (PS_DIGEST_BYTES + 8)
#define KEY_CAP (sizeof SOURCE_PREFIX + PS_SPACE_NAME_MAX + PS_SOURCE_ID_BUF + 8)
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
    static const char hex[] = "0123456789abcdef";
    memcpy(out, WKEY_PREFIX, sizeof WKEY_PREFIX - 1);
    char *p = out + sizeof WKEY_PREFIX - 1;
    for (size_t i = 0; i < PS_DIGEST_BYTES; i++) {
        *p++ = hex[hash[i] >> 4];
        *p++ = hex[hash[i] & 15];
    }
    *p = 0;
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

typedef struct scan_ctx {
    const char *space;
    const char *name;   /* looking for this name */
    bool found;
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
    if (c->name && strcmp(info.name, c->name) == 0)
        c->found = true;
    return c->fn ? c->fn(c->ud, &info) : true;
}

static ps_status scan_space(ps_txn *t, scan_ctx *c)
{
    char prefix[KEY_CAP];
    snprintf(prefix, sizeof prefix, SOURCE_PREFIX "%s/", c->space);
    return ps_store_meta_scan(t, prefix, scan_source, c);
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
        (st = ps_store_meta_put(t, wkey, (ps_slice){(const uint8_t *)target, (size_t)tl})) !=
            PS_OK)
        goto fail;
    return ps_txn_commit(t);
fail:
    ps_txn_abort(t);
    return st;
}

ps_status ps_source_list(ps_sources *s, const char *space, ps_source_fn fn, void *ud)
{
    if (!ps_space_name_valid(space))
        return PS_EINVAL;
    ps_txn *t;
    ps_status st = ps_txn_begin(s->store, false, &t);
    if (st != PS_OK)
        return st;
    scan_ctx c = {.space = space, .fn = fn, .ud = ud};
    st = scan_space(t, &c);
    ps_txn_abort(t);
    return st;
}

ps_status ps_source_find(ps_sources *s, const char *key, size_t len, ps_source_info *out)
{
    if (len == 0 || len > PS_WRITE_KEY_MAX)
        return PS_EAUTH;
    uint8_t hash[PS_DIGEST_BYTES];
    char wkey[WKEY_CAP];
    ps_auth_digest(key, len, hash);
    wkey_name(hash, wkey);
    ps_txn *t;
    ps_status st = ps_txn_begin(s->store, false, &t);
    if (st != PS_OK)
        return st;
    ps_slice v;
    memset(out, 0, sizeof *out);
    if ((st = ps_store_meta_get(t, wkey, &v)) == PS_OK) {
        const uint8_t *nul = memchr(v.ptr, 0, v.len);
        size_t sl = nul ? (size_t)(nul - v.ptr) : 0, il = nul ? v.len - sl - 1 : 0;
        if (nul == NULL || sl == 0 || sl > PS_SPACE_NAME_MAX || il == 0 ||
            il >= PS_SOURCE_ID_BUF) {
            st = PS_ECORRUPT;
        } else {
            memcpy(out->space, v.ptr, sl);
            memcpy(out->source_id, nul + 1, il);
        }
    } else if (st == PS_ENOTFOUND) {
        st = PS_EAUTH;
    }
    ps_txn_abort(t);
    return st;
}
