/* SPDX-License-Identifier: MIT */
/* auth: Profile API access tokens and the space's secret for signing cursors. Tokens live in
 * the space's meta table as SHA-256 hashes under "token/<name>" (never the token itself), with
 * an index row keyed by the hash, so that a check is one lookup however many tokens the space
 * has; the secret lives under "secret/cursor". Every check reads inside the caller's
 * transaction, so a token created or revoked by another process counts from the next request
 * on. */
#ifndef PS_AUTH_H
#define PS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps/space.h"
#include "ps/status.h"
#include "ps/store.h"

#define PS_TOKEN_NAME_MAX 64 /* bytes; same alphabet as space names */
#define PS_TOKEN_BUF 48      /* "pat_" + 43 base64url characters + NUL */
#define PS_SECRET_BYTES 32
#define PS_DIGEST_BYTES 32 /* SHA-256 */

/* Fills `out` from the system's CSPRNG (aborts when it has no entropy). */
void ps_auth_random(uint8_t *out, size_t len);
/* SHA-256 of `in`: how credentials are kept at rest. */
void ps_auth_digest(const void *in, size_t len, uint8_t out[PS_DIGEST_BYTES]);

/* Hex SHA-1 of the concatenation of `a` and `b`: the change feed's external_id_hash, as
 * Profiles Sync computes it (an identifier's key in a warehouse, not a credential). */
void ps_auth_sha1_hex(ps_slice a, ps_slice b, char out[41]);

/* What a token may do: an admin token may also change the space (regulations, the
 * identifier delete route); a read token may only read. Tokens made before roles existed are
 * admin tokens. */
typedef enum ps_token_role { PS_ROLE_ADMIN = 0, PS_ROLE_READ = 1 } ps_token_role;
const char *ps_token_role_name(ps_token_role r);
/* Parses "read" or "admin"; false otherwise. */
bool ps_token_role_parse(const char *s, ps_token_role *out);

/* Creates an access token for the space. `name` NULL picks "token-N". Writes the token
 * (shown once, not stored) into `token` and the name used into `name_out` (capacity
 * PS_TOKEN_NAME_MAX + 1). PS_EINVAL for a bad name, PS_ECONFLICT when it is taken. */
ps_status ps_auth_token_create(ps_space *sp, const char *name, ps_token_role role, int64_t now_ms,
                               char token[PS_TOKEN_BUF], char *name_out);

typedef bool (*ps_token_fn)(void *ud, const char *name, ps_token_role role, int64_t created_ms);
/* Visits the space's tokens by name; never exposes secrets. */
ps_status ps_auth_token_list(ps_space *sp, ps_token_fn fn, void *ud);

/* Revokes token `name`. PS_ENOTFOUND when there is none. */
ps_status ps_auth_token_revoke(ps_space *sp, const char *name);

/* PS_OK with the token's role when `token` is one of the space's tokens, else PS_EAUTH. The
 * token's SHA-256 is looked up in the index: the time taken may tell something about how the
 * hash of what was sent compares with stored hashes, never anything about a token itself
 * (docs/security.md, "Access tokens"). A space whose index is not built yet is checked against
 * every token in constant time. */
ps_status ps_auth_token_check(ps_txn *t, const char *token, size_t len, ps_token_role *role);

/* Builds the token index of a space made before it (a write transaction, only then). */
ps_status ps_auth_tokens_index_ensure(ps_store *s);

/* Creates the space's cursor secret when it has none (a write transaction, only then). */
ps_status ps_auth_secret_ensure(ps_store *s);
/* Reads the space's cursor secret. PS_ENOTFOUND before ps_auth_secret_ensure(). */
ps_status ps_auth_secret(ps_txn *t, uint8_t out[PS_SECRET_BYTES]);

#endif
