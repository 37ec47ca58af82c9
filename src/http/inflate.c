/* SPDX-License-Identifier: MIT */
/* inflate: Content-Encoding gzip and deflate request bodies (zlib). The inflated size is
 * bounded by the route's limit, so a small body that expands without end (a "zip bomb")
 * costs at most that many bytes of output and the input's length of work, then 413. */
#include "http_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

int http_body_coding(const char *value, size_t len)
{
    if (value == NULL || (len == 8 && strncasecmp(value, "identity", 8) == 0))
        return CODING_IDENTITY;
    if ((len == 4 && strncasecmp(value, "gzip", 4) == 0) ||
        (len == 6 && strncasecmp(value, "x-gzip", 6) == 0))
        return CODING_GZIP;
    if (len == 7 && strncasecmp(value, "deflate", 7) == 0)
        return CODING_DEFLATE;
    return -1;
}

int http_body_inflate(int coding, const uint8_t *in, size_t len, size_t limit, uint8_t **out,
                      size_t *out_len, const char **why)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    int bits = 15 + 16; /* gzip */
    if (coding == CODING_DEFLATE) {
        /* "deflate" should be zlib-wrapped (RFC 9110), but some clients send it raw */
        bool zlib = len >= 2 && (in[0] & 0x0F) == 8 && ((in[0] << 8) | in[1]) % 31 == 0;
        bits = zlib ? 15 : -15;
    }
    if (inflateInit2(&z, bits) != Z_OK) {
        *why = "The body cannot be decompressed now.";
        return 503;
    }
    uint8_t *buf = ps_xmalloc(limit + 1);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = buf;
    z.avail_out = (uInt)(limit + 1); /* one byte more than allowed tells "over the limit" */
    int rc = inflate(&z, Z_FINISH);
    size_t n = (size_t)z.total_out;
    bool trailing = rc == Z_STREAM_END && z.avail_in > 0;
    inflateEnd(&z);
    int status = 0;
    if (n > limit) {
        *why = "The decompressed body is over the limit of this route.";
        status = 413;
    } else if (rc != Z_STREAM_END || trailing) {
        *why = "The body is not valid for its Content-Encoding.";
        status = 400;
    }
    if (status) {
        free(buf);
        return status;
    }
    *out = buf;
    *out_len = n;
    return 0;
}
