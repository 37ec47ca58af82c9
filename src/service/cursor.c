/* SPDX-License-Identifier: MIT */
/* cursor: sign and verify page positions (see cursor.h). */
#include "ps/cursor.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "ps/mem.h"
#include "ps/text.h"

#define CURSOR_VERSION 1
#define HEAD_BYTES 10
#define MAC_BYTES 16
#define RAW_MAX (HEAD_BYTES + PS_CURSOR_POS_MAX + MAC_BYTES)

/* HMAC-SHA256 contexts are kept per thread, keyed with the last secret used: a one-shot HMAC
 * fetches the algorithm and sets the key up on every call, which cost more than the rest of a
 * cursor (docs/benchmarks.md). */
typedef struct mac_cache {
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx;
    uint8_t key[32];
    bool keyed;
} mac_cache;

static void mac_cache_free(void *p)
{
    mac_cache *c = p;
    EVP_MAC_CTX_free(c->ctx);
    EVP_MAC_free(c->mac);
    free(c);
}

static void *mac_cache_make(void)
{
    mac_cache *c = ps_xcalloc(1, sizeof *c);
    c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    c->ctx = c->mac ? EVP_MAC_CTX_new(c->mac) : NULL;
    PS_ASSERT(c->ctx != NULL);
    return c;
}

static ps_thread_slot mac_slot = PS_THREAD_SLOT(mac_cache_make, mac_cache_free);

static void mac(const uint8_t secret[32], const uint8_t *data, size_t len, uint8_t out[32])
{
    mac_cache *c = ps_thread_slot_get(&mac_slot);
    int ok;
    if (c->keyed && CRYPTO_memcmp(c->key, secret, 32) == 0) {
        ok = EVP_MAC_init(c->ctx, NULL, 0, NULL); /* the key it has */
    } else {
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                               OSSL_PARAM_construct_end()};
        ok = EVP_MAC_init(c->ctx, secret, 32, params);
        memcpy(c->key, secret, 32);
        c->keyed = ok == 1;
    }
    size_t out_len = 0;
    ok = ok == 1 && EVP_MAC_update(c->ctx, data, len) == 1 &&
         EVP_MAC_final(c->ctx, out, &out_len, 32) == 1;
    PS_ASSERT(ok && out_len == 32);
}

ps_status ps_cursor_encode(const uint8_t secret[32], uint8_t kind, uint64_t profile,
                           const uint8_t *pos, size_t pos_len, char *out)
{
    if (pos_len > PS_CURSOR_POS_MAX)
        return PS_ETOOBIG;
    uint8_t raw[RAW_MAX], digest[32];
    raw[0] = CURSOR_VERSION;
    raw[1] = kind;
    for (int i = 0; i < 8; i++)
        raw[2 + i] = (uint8_t)(profile >> (56 - 8 * i));
    if (pos_len)
        memcpy(raw + HEAD_BYTES, pos, pos_len);
    size_t n = HEAD_BYTES + pos_len;
    mac(secret, raw, n, digest);
    memcpy(raw + n, digest, MAC_BYTES);
    ps_b64url_encode(raw, n + MAC_BYTES, out);
    return PS_OK;
}

ps_status ps_cursor_decode(const uint8_t secret[32], uint8_t kind, const char *s, size_t len,
                           uint64_t *profile, uint8_t *pos, size_t *pos_len)
{
    uint8_t raw[RAW_MAX], digest[32];
    size_t n;
    if (len > PS_CURSOR_MAX || !ps_b64_decode(s, len, true, raw, sizeof raw, &n) ||
        n < HEAD_BYTES + MAC_BYTES)
        return PS_EINVAL;
    n -= MAC_BYTES;
    mac(secret, raw, n, digest);
    if (CRYPTO_memcmp(digest, raw + n, MAC_BYTES) != 0 || raw[0] != CURSOR_VERSION ||
        raw[1] != kind)
        return PS_EINVAL;
    uint64_t p = 0;
    for (int i = 0; i < 8; i++)
        p = p << 8 | raw[2 + i];
    *profile = p;
    *pos_len = n - HEAD_BYTES;
    if (*pos_len)
        memcpy(pos, raw + HEAD_BYTES, *pos_len);
    return PS_OK;
}
