/* SPDX-License-Identifier: MIT */
/* ratelimit: token bucket arithmetic (see ratelimit.h). */
#include "ps/ratelimit.h"

bool ps_bucket_take(ps_bucket *b, uint32_t rate, uint32_t burst, int64_t now_ms,
                    int64_t *retry_after_ms)
{
    if (rate == 0)
        return true;
    double cap = burst ? (double)burst : (double)rate;
    if (!b->started || b->tokens > cap) {
        b->started = true;
        b->tokens = cap;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) { /* a clock that steps back never refills */
        b->tokens += (double)(now_ms - b->last_ms) * (double)rate / 1000.0;
        if (b->tokens > cap)
            b->tokens = cap;
        b->last_ms = now_ms;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    int64_t wait = (int64_t)((1.0 - b->tokens) * 1000.0 / (double)rate) + 1;
    *retry_after_ms = wait;
    return false;
}
