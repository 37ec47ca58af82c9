/* SPDX-License-Identifier: MIT */
/* ratelimit: a token bucket over caller-supplied time, so tests and replays control the clock.
 * Not synchronized: the owner serializes calls. */
#ifndef PS_RATELIMIT_H
#define PS_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ps_bucket {
    double tokens;
    int64_t last_ms;
    bool started;
} ps_bucket;

/* Takes one token from a bucket refilled at `rate` tokens per second up to `burst` (0: the
 * rate). A rate of 0 means no limit. Returns true when the request may go ahead; otherwise
 * *retry_after_ms receives the wait until a token is available (at least 1). A bucket starts
 * full. */
bool ps_bucket_take(ps_bucket *b, uint32_t rate, uint32_t burst, int64_t now_ms,
                    int64_t *retry_after_ms);

#endif
