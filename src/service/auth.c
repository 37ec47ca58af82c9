/* SPDX-License-Identifier: MIT */
/* auth: access tokens (hashed at rest, found by their hash) and the cursor secret.
 * Record layout of "token/<name>": OFFSET 0 SIZE 32 SHA-256 of the token; OFFSET 32 SIZE 8
 * creation time in ms, big-endian; OFFSET 40 SIZE 1 role (ps_token_role). A 40-byte record
 * (made before roles) is an admin token.
 * Index row "tokenhash/<64 hex digits of the SHA-256>": OFFSET 0 SIZE 1 role; then the
 * token's name. "tokenhash-index" (8 bytes, version 1) says every token has its row; a space
 * without it (made before the index) is checked by comparing with every token until
 * ps_auth_tokens_index_ensure() builds it. */
#include "ps/auth.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ps/mem.h"
#include "ps/text.h"

#define TOKEN_PREFIX "token/"
#define TOKEN_REC_OLD (SHA256_DIGEST_LENGTH + 8)
#define TOKEN_REC_BYTES (TOKEN_REC_OLD + 1)
#define SECRET_KEY "secret/cursor"
#define INDEX_PREFIX "tokenhash/"
#define INDEX_READY "tokenhash-index"
#define INDEX_KEY_BYTES (sizeof INDEX_PREFIX + 2 * SHA256_DIGEST_LENGTH)

static void index_key(const uint8_t hash[SHA256_DIGEST_LENGTH], char key[INDEX_KEY_BYTES])
{
    memcpy(key, INDEX_PREFIX, sizeof INDEX_PREFIX - 1);
    ps_hex(hash, SHA256_DIGEST_LENGTH, key + sizeof INDEX_PREFIX - 1);
}

/* The index row of token `name` whose record is `rec`. */
static ps_status index_put(ps_txn *t, const char *name, ps_slice rec)
{
    char key[INDEX_KEY_BYTES];
    uint8_t v[1 + PS_TOKEN_NAME_MAX];
    size_t n = strlen(name);
    index_key(rec.ptr, key);
    v[0] = (uint8_t)(rec.len == TOKEN_REC_BYTES ? rec.ptr[TOKEN_REC_OLD] : PS_ROLE_ADMIN);
    memcpy(v + 1, name, n);
    return ps_store_meta_put(t, key, (ps_slice){v, 1 + n});
}

void ps_auth_random(uint8_t *out, size_t len)
{
    int ok = RAND_bytes(out, (int)len);
    PS_ASSERT(ok == 1); /* no entropy: nothing safe to hand out */
}

/* SHA-256 fetched once for the process: the one-shot SHA256() looks the algorithm up on
 * every call, which cost more than hashing a token (docs/benchmarks.md). */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* A context per thread, kept: EVP_Digest() makes and frees one on every call, which cost a
 * third of hashing a token. */
static void *md_ctx_make(void)
{
    return EVP_MD_CTX_new();
}

static void md_ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static ps_thread_slot md_ctx_slot = PS_THREAD_SLOT(md_ctx_make, md_ctx_free);

static void sha256(const void *in, size_t len, uint8_t out[PS_DIGEST_BYTES])
{
    pthread_once(&sha256_once, sha256_fetch);
    EVP_MD_CTX *c = ps_thread_slot_get(&md_ctx_slot);
    unsigned n = 0;
    int ok = sha256_md && c && EVP_DigestInit_ex2(c, sha256_md, NULL) == 1 &&
             EVP_DigestUpdate(c, in, len) == 1 && EVP_DigestFinal_ex(c, out, &n) == 1;
    PS_ASSERT(ok && n == PS_DIGEST_BYTES); /* only memory exhaustion fails here */
}

void ps_auth_digest(const void *in, size_t len, uint8_t out[PS_DIGEST_BYTES])
{
    sha256(in, len, out);
}

void ps_auth_sha1_hex(ps_slice a, ps_slice b, char out[41])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha1(), NULL) == 1 &&
             EVP_DigestUpdate(c, a.ptr, a.len) == 1 && EVP_DigestUpdate(c, b.ptr, b.len) == 1 &&
             EVP_DigestFinal_ex(c, md, &n) == 1 && n == 20;
    EVP_MD_CTX_free(c);
    PS_ASSERT(ok); /* only memory exhaustion fails here */
    ps_hex(md, 20, out);
}

const char *ps_token_role_name(ps_token_role r)
{
    return r == PS_ROLE_READ ? "read" : "admin";
}

bool ps_token_role_parse(const char *s, ps_token_role *out)
{
    if (strcmp(s, "read") == 0)
        *out = PS_ROLE_READ;
    else if (strcmp(s, "admin") == 0)
        *out = PS_ROLE_ADMIN;
    else
        return false;
    return true;
}

static bool token_rec_ok(ps_slice v)
{
    return v.len == TOKEN_REC_OLD ||
           (v.len == TOKEN_REC_BYTES && v.ptr[TOKEN_REC_OLD] <= (uint8_t)PS_ROLE_READ);
}

static ps_token_role token_rec_role(ps_slice v)
{
    return v.len == TOKEN_REC_BYTES ? (ps_token_role)v.ptr[TOKEN_REC_OLD] : PS_ROLE_ADMIN;
}

typedef struct count_ctx {
    size_t count;
} count_ctx;

static bool count_token(void *ud, ps_slice key, ps_slice value)
{
    (void)key;
    (void)value;
    ((count_ctx *)ud)->count++;
    return true;
}

/* Token changes and listings run guarded (ps_store_write_guarded): a damaged page fails the
 * command, and a change that met one writes nothing. */
typedef struct create_call {
    const char *name;
    ps_token_role role;
    int64_t now_ms;
    char *token, *name_out;
} create_call;

static ps_status create_step(ps_txn *t, void *ud)
{
    create_call *c = ud;
    char key[sizeof TOKEN_PREFIX + PS_TOKEN_NAME_MAX + 24];
    ps_slice existing;
    ps_status st;
    if (c->name) {
        snprintf(key, sizeof key, TOKEN_PREFIX "%s", c->name);
        snprintf(c->name_out, PS_TOKEN_NAME_MAX + 1, "%s", c->name);
        st = ps_store_meta_get(t, key, &existing);
    } else {
        count_ctx n = {0};
        st = ps_store_meta_scan(t, TOKEN_PREFIX, count_token, &n);
        for (size_t k = n.count + 1; st == PS_OK; k++) { /* first free "token-N" */
            snprintf(c->name_out, PS_TOKEN_NAME_MAX + 1, "token-%zu", k);
            snprintf(key, sizeof key, TOKEN_PREFIX "%s", c->name_out);
            if ((st = ps_store_meta_get(t, key, &existing)) != PS_OK)
                break;
        }
    }
    if (st == PS_OK)
        return PS_ECONFLICT;
    if (st != PS_ENOTFOUND)
        return st;
    uint8_t secret[32], rec[TOKEN_REC_BYTES];
    ps_auth_random(secret, sizeof secret);
    memcpy(c->token, "pat_", 4);
    ps_b64url_encode(secret, sizeof secret, c->token + 4);
    sha256(c->token, strlen(c->token), rec);
    ps_put_be64(rec + SHA256_DIGEST_LENGTH, (uint64_t)c->now_ms);
    rec[TOKEN_REC_OLD] = (uint8_t)c->role;
    st = ps_store_meta_put(t, key, (ps_slice){rec, sizeof rec});
    return st == PS_OK ? index_put(t, c->name_out, (ps_slice){rec, sizeof rec}) : st;
}

ps_status ps_auth_token_create(ps_space *sp, const char *name, ps_token_role role, int64_t now_ms,
                               char token[PS_TOKEN_BUF], char *name_out)
{
    if (name && !ps_name_valid(name, PS_TOKEN_NAME_MAX))
        return PS_EINVAL;
    create_call c = {name, role, now_ms, token, name_out};
    return ps_store_write_guarded(ps_space_store(sp), create_step, &c);
}

typedef struct list_ctx {
    ps_token_fn fn;
    void *ud;
} list_ctx;

static bool list_token(void *ud, ps_slice key, ps_slice value)
{
    list_ctx *c = ud;
    char name[PS_TOKEN_NAME_MAX + 1];
    size_t len = key.len - (sizeof TOKEN_PREFIX - 1);
    if (len > PS_TOKEN_NAME_MAX || !token_rec_ok(value))
        return true; /* not ours: skip */
    memcpy(name, key.ptr + sizeof TOKEN_PREFIX - 1, len);
    name[len] = 0;
    return c->fn(c->ud, name, token_rec_role(value),
                 (int64_t)ps_get_be64(value.ptr + SHA256_DIGEST_LENGTH));
}

static ps_status list_step(ps_txn *t, void *ud)
{
    return ps_store_meta_scan(t, TOKEN_PREFIX, list_token, ud);
}

ps_status ps_auth_token_list(ps_space *sp, ps_token_fn fn, void *ud)
{
    list_ctx c = {fn, ud};
    return ps_store_read_guarded(ps_space_store(sp), list_step, &c, NULL);
}

static ps_status revoke_step(ps_txn *t, void *ud)
{
    const char *key = ud;
    ps_slice rec;
    char hkey[INDEX_KEY_BYTES];
    ps_status st = ps_store_meta_get(t, key, &rec);
    if (st == PS_OK && token_rec_ok(rec)) {
        index_key(rec.ptr, hkey);
        st = ps_store_meta_del(t, hkey);
        st = st == PS_ENOTFOUND ? PS_OK : st; /* a space whose index is not built yet */
    }
    return st == PS_OK ? ps_store_meta_del(t, key) : st;
}

ps_status ps_auth_token_revoke(ps_space *sp, const char *name)
{
    if (!ps_space_name_valid(name))
        return PS_ENOTFOUND;
    char key[sizeof TOKEN_PREFIX + PS_TOKEN_NAME_MAX];
    snprintf(key, sizeof key, TOKEN_PREFIX "%s", name);
    return ps_store_write_guarded(ps_space_store(sp), revoke_step, key);
}

typedef struct check_ctx {
    uint8_t hash[SHA256_DIGEST_LENGTH];
    int matched;
    unsigned role; /* of the matching token: OR-ed in without a branch on the match */
} check_ctx;

static bool check_token(void *ud, ps_slice key, ps_slice value)
{
    (void)key;
    check_ctx *c = ud;
    if (token_rec_ok(value)) { /* compare with every token: no early exit */
        int same = CRYPTO_memcmp(value.ptr, c->hash, SHA256_DIGEST_LENGTH) == 0;
        c->matched |= same;
        c->role |= (unsigned)token_rec_role(value) & (0u - (unsigned)same);
    }
    return true;
}

ps_status ps_auth_token_check(ps_txn *t, const char *token, size_t len, ps_token_role *role)
{
    check_ctx c = {{0}, 0, 0};
    sha256(token, len, c.hash);
    char key[INDEX_KEY_BYTES];
    ps_slice v;
    uint64_t version;
    index_key(c.hash, key);
    ps_status st = ps_store_meta_get(t, key, &v); /* docs/security.md, "Access tokens" */
    if (st == PS_OK && (v.len < 1 || v.ptr[0] > (uint8_t)PS_ROLE_READ))
        return PS_ECORRUPT;
    if (st == PS_OK)
        *role = (ps_token_role)v.ptr[0];
    if (st != PS_ENOTFOUND)
        return st;
    st = ps_store_meta_get_u64(t, INDEX_READY, &version);
    if (st == PS_OK)
        return PS_EAUTH;
    if (st != PS_ENOTFOUND)
        return st;
    st = ps_store_meta_scan(t, TOKEN_PREFIX, check_token, &c); /* no index yet */
    if (st != PS_OK)
        return st;
    *role = c.role ? PS_ROLE_READ : PS_ROLE_ADMIN;
    return c.matched ? PS_OK : PS_EAUTH;
}

/* The name of token record `key`, false when the row is not a token's. */
static bool token_name(ps_slice key, ps_slice value, char name[PS_TOKEN_NAME_MAX + 1])
{
    size_t len = key.len - (sizeof TOKEN_PREFIX - 1);
    if (len > PS_TOKEN_NAME_MAX || !token_rec_ok(value))
        return false; /* the scan of a check skips it too */
    memcpy(name, key.ptr + sizeof TOKEN_PREFIX - 1, len);
    name[len] = 0;
    return true;
}

typedef struct index_ctx {
    ps_txn *t;
    ps_status st;
    size_t tokens;
    bool exact; /* every token so far has its row, with its role and name */
} index_ctx;

static bool index_has(void *ud, ps_slice key, ps_slice value)
{
    index_ctx *c = ud;
    char name[PS_TOKEN_NAME_MAX + 1], hkey[INDEX_KEY_BYTES];
    if (!token_name(key, value, name))
        return true;
    c->tokens++;
    index_key(value.ptr, hkey);
    ps_slice v;
    size_t n = strlen(name);
    c->st = ps_store_meta_get(c->t, hkey, &v);
    c->exact = c->st == PS_OK && v.len == 1 + n && v.ptr[0] == (uint8_t)token_rec_role(value) &&
               memcmp(v.ptr + 1, name, n) == 0;
    c->st = c->st == PS_ENOTFOUND ? PS_OK : c->st;
    return c->exact && c->st == PS_OK;
}

/* Whether the index is built and matches the tokens exactly (a build without it may have
 * created or revoked tokens since). */
static ps_status index_exact(ps_txn *t, bool *exact)
{
    uint64_t version;
    count_ctx rows = {0};
    index_ctx c = {t, PS_OK, 0, true};
    ps_status st = ps_store_meta_get_u64(t, INDEX_READY, &version);
    *exact = st == PS_OK && version == 1;
    if (st == PS_ENOTFOUND)
        return PS_OK;
    if (st == PS_OK && *exact)
        st = ps_store_meta_scan(t, TOKEN_PREFIX, index_has, &c);
    if (st == PS_OK && c.exact)
        st = ps_store_meta_scan(t, INDEX_PREFIX, count_token, &rows);
    *exact = *exact && c.exact && rows.count == c.tokens;
    return st == PS_OK ? c.st : st;
}

static bool index_token(void *ud, ps_slice key, ps_slice value)
{
    index_ctx *c = ud;
    char name[PS_TOKEN_NAME_MAX + 1];
    if (!token_name(key, value, name))
        return true;
    c->st = index_put(c->t, name, value);
    return c->st == PS_OK;
}

/* Writes the index again from the token records. */
static ps_status index_rebuild(ps_txn *t)
{
    index_ctx c = {t, PS_OK, 0, true};
    ps_status st = ps_store_meta_del_prefix(t, INDEX_PREFIX);
    if (st == PS_OK)
        st = ps_store_meta_scan(t, TOKEN_PREFIX, index_token, &c);
    st = st == PS_OK ? c.st : st;
    return st == PS_OK ? ps_store_meta_put_u64(t, INDEX_READY, 1) : st;
}

static ps_status exact_step(ps_txn *t, void *ud)
{
    return index_exact(t, ud);
}

static ps_status rebuild_step(ps_txn *t, void *ud)
{
    (void)ud;
    bool exact;
    ps_status st = index_exact(t, &exact); /* another process may have built it meanwhile */
    return st == PS_OK && !exact ? index_rebuild(t) : st;
}

/* Both steps run guarded: a space opened on damaged pages fails to open, not the process. */
ps_status ps_auth_tokens_index_ensure(ps_store *s)
{
    bool exact;
    ps_status st = ps_store_read_guarded(s, exact_step, &exact, NULL);
    if (st != PS_OK || exact)
        return st;
    return ps_store_write_guarded(s, rebuild_step, NULL);
}

ps_status ps_auth_secret(ps_txn *t, uint8_t out[PS_SECRET_BYTES])
{
    ps_slice v;
    ps_status st = ps_store_meta_get(t, SECRET_KEY, &v);
    if (st != PS_OK)
        return st;
    if (v.len != PS_SECRET_BYTES)
        return PS_ECORRUPT;
    memcpy(out, v.ptr, PS_SECRET_BYTES);
    return PS_OK;
}

static ps_status secret_read_step(ps_txn *t, void *ud)
{
    return ps_auth_secret(t, ud);
}

static ps_status secret_make_step(ps_txn *t, void *ud)
{
    uint8_t *secret = ud;
    ps_status st = ps_auth_secret(t, secret); /* another process may have won the race */
    if (st != PS_ENOTFOUND)
        return st;
    ps_auth_random(secret, PS_SECRET_BYTES);
    return ps_store_meta_put(t, SECRET_KEY, (ps_slice){secret, PS_SECRET_BYTES});
}

ps_status ps_auth_secret_ensure(ps_store *s)
{
    uint8_t secret[PS_SECRET_BYTES];
    ps_status st = ps_store_read_guarded(s, secret_read_step, secret, NULL);
    return st == PS_ENOTFOUND ? ps_store_write_guarded(s, secret_make_step, secret) : st;
}
