/* SPDX-License-Identifier: MIT */
/* fuzz_cursor: ps_cursor_decode on any text (the first byte picks the kind) must reject it or
 * give back content that encodes to the very same text; and any position encodes to a cursor
 * that decodes to itself, while a changed character, kind or secret is rejected. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ps/cursor.h"
#include "ps/mem.h"
#include "ps/text.h"

static const uint8_t secret[32] = "fuzz-cursor-secret-0123456789ab";
static const uint8_t other_secret[32] = "fuzz-cursor-secret-0123456789ac";
static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static bool in_alphabet(char c)
{
    return c != 0 && strchr(alphabet, c) != NULL;
}

/* Decoding arbitrary text: rejected, or the content re-encodes to exactly that text. */
static void decode_any(uint8_t kind, const char *s, size_t len, uint8_t *pos)
{
    uint64_t profile = 0;
    size_t pos_len = 0;
    ps_status st = ps_cursor_decode(secret, kind, s, len, &profile, pos, &pos_len);
    FUZZ_CHECK(st == PS_OK || st == PS_EINVAL);
    if (st != PS_OK)
        return;
    FUZZ_CHECK(pos_len <= PS_CURSOR_POS_MAX);
    char out[PS_CURSOR_MAX + 1];
    FUZZ_CHECK(ps_cursor_encode(secret, kind, profile, pos, pos_len, out) == PS_OK);
    FUZZ_CHECK(strlen(out) == len && memcmp(out, s, len) == 0);
}

static void round_trip(uint8_t kind, uint64_t profile, const uint8_t *in, size_t in_len,
                       size_t flip_at, uint8_t flip_by, uint8_t *pos)
{
    char out[PS_CURSOR_MAX + 1];
    FUZZ_CHECK(ps_cursor_encode(secret, kind, profile, in, in_len, out) == PS_OK);
    size_t olen = strlen(out);
    FUZZ_CHECK(olen > 0 && olen <= PS_CURSOR_MAX);
    for (size_t i = 0; i < olen; i++)
        FUZZ_CHECK(in_alphabet(out[i]));

    uint64_t got = 0;
    size_t got_len = 0;
    FUZZ_CHECK(ps_cursor_decode(secret, kind, out, olen, &got, pos, &got_len) == PS_OK);
    FUZZ_CHECK(got == profile && got_len == in_len);
    FUZZ_CHECK(in_len == 0 || memcmp(pos, in, in_len) == 0);

    /* another list, another space, a cut cursor: all rejected */
    FUZZ_CHECK(ps_cursor_decode(secret, (uint8_t)(kind + 1), out, olen, &got, pos, &got_len) ==
               PS_EINVAL);
    FUZZ_CHECK(ps_cursor_decode(other_secret, kind, out, olen, &got, pos, &got_len) == PS_EINVAL);
    FUZZ_CHECK(ps_cursor_decode(secret, kind, out, olen - 1, &got, pos, &got_len) == PS_EINVAL);

    /* one character changed to another of the alphabet (or not): rejected or the same */
    size_t at = flip_at % olen;
    const char *c = strchr(alphabet, out[at]);
    FUZZ_CHECK(c != NULL);
    size_t shift = 1 + flip_by % 63u;
    out[at] = flip_by >= 0xf0 ? (char)flip_by : alphabet[((size_t)(c - alphabet) + shift) % 64];
    got = 0;
    got_len = 0;
    ps_status st = ps_cursor_decode(secret, kind, out, olen, &got, pos, &got_len);
    FUZZ_CHECK(st == PS_EINVAL || (st == PS_OK && got == profile && got_len == in_len &&
                                   (in_len == 0 || memcmp(pos, in, in_len) == 0)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t kind = data[0];
    size_t len = size - 1;
    /* exactly sized heap copies: ASan sees a read or write past either end */
    char *text = malloc(len ? len : 1);
    uint8_t *pos = malloc(PS_CURSOR_POS_MAX);
    FUZZ_CHECK(text != NULL && pos != NULL);
    if (len)
        memcpy(text, data + 1, len);

    decode_any(kind, text, len, pos);

    /* the same bytes as a cursor's content: profile, flip place and shift, then position */
    uint8_t head[10] = {0};
    memcpy(head, data + 1, len < sizeof head ? len : sizeof head);
    const uint8_t *in = data + 1 + (len < sizeof head ? len : sizeof head);
    size_t in_len = len < sizeof head ? 0 : len - sizeof head;
    if (in_len <= PS_CURSOR_POS_MAX) {
        round_trip(kind, ps_get_be64(head), in, in_len, head[8], head[9], pos);
    } else {
        char out[PS_CURSOR_MAX + 1];
        FUZZ_CHECK(ps_cursor_encode(secret, kind, 1, in, in_len, out) == PS_ETOOBIG);
    }
    free(text);
    free(pos);
    return 0;
}
