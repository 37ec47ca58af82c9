/* SPDX-License-Identifier: MIT */
/* cursor: opaque page tokens for the Profile API. A cursor names a list (its kind), the
 * canonical profile it pages through, and a position inside the list, signed with the space's
 * secret so that a tampered, truncated or foreign (other space, other list) cursor is
 * rejected rather than trusted.
 *
 * Layout before base64url: OFFSET 0 SIZE 1 version (1); OFFSET 1 SIZE 1 kind; OFFSET 2 SIZE 8
 * profile seq, big-endian; OFFSET 10 SIZE n position bytes; then SIZE 16 the first bytes of
 * HMAC-SHA256(secret, everything before). */
#ifndef PS_CURSOR_H
#define PS_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#include "ps/status.h"

#define PS_CURSOR_POS_MAX 512 /* position bytes */
#define PS_CURSOR_MAX 720     /* characters of an encoded cursor, NUL excluded */

/* Encodes a cursor into `out` (capacity PS_CURSOR_MAX + 1). PS_ETOOBIG when the position
 * is over PS_CURSOR_POS_MAX. */
ps_status ps_cursor_encode(const uint8_t secret[32], uint8_t kind, uint64_t profile,
                           const uint8_t *pos, size_t pos_len, char *out);

/* Decodes and verifies a cursor of `kind`. Writes the profile and the position (capacity
 * PS_CURSOR_POS_MAX) only on success. PS_EINVAL for anything malformed or not signed by
 * `secret` for this kind. */
ps_status ps_cursor_decode(const uint8_t secret[32], uint8_t kind, const char *s, size_t len,
                           uint64_t *profile, uint8_t *pos, size_t *pos_len);

#endif
