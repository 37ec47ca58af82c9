/* SPDX-License-Identifier: MIT */
/* mem: allocation that never returns NULL (out of memory is fatal), owned byte buffers and a
 * bump arena. Sizes that come from input are checked by callers before they reach here. */
#ifndef PS_MEM_H
#define PS_MEM_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Like malloc/realloc/strdup, but log and abort on exhaustion. Never return NULL. */
void *ps_xmalloc(size_t size);
void *ps_xcalloc(size_t count, size_t size);
void *ps_xrealloc(void *ptr, size_t size);
char *ps_xstrdup(const char *s);
char *ps_xstrndup(const char *s, size_t len);

/* Borrowed bytes: valid as long as whatever owns them. */
typedef struct ps_slice {
    const uint8_t *ptr;
    size_t len;
} ps_slice;

#define PS_SLICE_STR(s) ((ps_slice){(const uint8_t *)(s), strlen(s)})

/* Owned growable bytes, always NUL-terminated past `len` once anything was appended. */
typedef struct ps_buf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} ps_buf;

void ps_buf_init(ps_buf *b);
void ps_buf_clear(ps_buf *b); /* frees the memory; the buf may be reused after */
void ps_buf_reset(ps_buf *b); /* len = 0, keeps the memory */
void ps_buf_reserve(ps_buf *b, size_t extra);
/* Gives back the room past len (and its NUL), for a buffer that is done growing and will be
 * kept a while. */
void ps_buf_fit(ps_buf *b);

/* Appending is inline: replies are built from many short pieces, and a piece that fits (the
 * usual case) costs a copy; a string literal's length is known when compiling. */
static inline void ps_buf_append(ps_buf *b, const void *data, size_t len)
{
    if (b->len + len >= b->cap)
        ps_buf_reserve(b, len);
    if (len)
        memcpy(b->ptr + b->len, data, len);
    b->len += len;
    b->ptr[b->len] = 0;
}

static inline void ps_buf_puts(ps_buf *b, const char *s)
{
    ps_buf_append(b, s, strlen(s));
}

static inline void ps_buf_putc(ps_buf *b, char c)
{
    if (b->len + 1 >= b->cap)
        ps_buf_reserve(b, 1);
    b->ptr[b->len++] = (uint8_t)c;
    b->ptr[b->len] = 0;
}
void ps_buf_printf(ps_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ps_buf_u64(ps_buf *b, uint64_t v); /* decimal digits */
/* `v` in decimal digits into `out` (no terminator); returns how many. */
#define PS_U64_DEC_MAX 20
size_t ps_u64_dec(uint64_t v, char out[PS_U64_DEC_MAX]);
void ps_buf_be64(ps_buf *b, uint64_t v);
/* Appends `s` as a JSON string literal, quotes included. Invalid UTF-8 is never passed here. */
void ps_buf_json_str(ps_buf *b, const char *s, size_t len);
static inline void ps_buf_json_cstr(ps_buf *b, const char *s)
{
    ps_buf_json_str(b, s, strlen(s));
}

/* Reads one byte of every page of [p, p+n): bytes a store maps from its file fault here, if
 * they are going to (a damaged or short file), and not later under a lock that a guarded
 * call (ps_store_guarded) would then leave held. */
static inline void ps_touch(const void *p, size_t n)
{
    const volatile unsigned char *b = p;
    for (size_t i = 0; i < n; i += 4096)
        (void)b[i];
    if (n)
        (void)b[n - 1];
}

/* Bump allocator: many small allocations freed at once with ps_arena_clear(). */
/* Process setting for the long-running programs: freed memory, large buffers included, is
 * kept for reuse instead of being handed back to the kernel and faulted in again (a page
 * fault is the dearest part of a fresh buffer on virtual machines). Call first in main(). */
/* An object each thread makes on its first use and that is freed when the thread ends (a
 * compression context, a match buffer, a cache). Define one per kind, statically:
 *   static ps_thread_slot slot = PS_THREAD_SLOT(make, free);
 * `make` returns the new object (NULL: none, asked again next time). */
typedef struct ps_thread_slot {
    void *(*make)(void);
    void (*free)(void *);
    _Atomic(int) ready; /* the key exists */
    pthread_key_t key;
} ps_thread_slot;
#define PS_THREAD_SLOT(make_fn, free_fn)                                                           \
    {                                                                                              \
        (make_fn), (free_fn), 0, 0                                                                 \
    }
void *ps_thread_slot_get(ps_thread_slot *s);

void ps_mem_keep_freed(void);
/* Grows the heap by about `bytes` (up to 480 MiB) and frees it again, so that the calling
 * thread's later allocations find room without growing or trimming the heap. Call after
 * ps_mem_keep_freed(), from a program about to build a large write transaction. Address
 * space only: memory is used as it is touched. Only the calling thread's malloc arena (the
 * main one) gains. */
void ps_mem_reserve_heap(size_t bytes);

typedef struct ps_arena_chunk ps_arena_chunk;
typedef struct ps_arena {
    ps_arena_chunk *head;
    size_t step; /* 0: each chunk doubles the last; else the size of chunks after a reserve */
} ps_arena;

void ps_arena_init(ps_arena *a);
void ps_arena_clear(ps_arena *a); /* frees every allocation; the arena may be reused */
/* For an empty arena whose caller knows about how much it will take: the first chunk holds
 * `bytes` (when that is more than a first chunk usually holds), and any further chunk a quarter
 * of it, instead of a series of doubling chunks whose newest is mostly empty. Until cleared. */
void ps_arena_reserve(ps_arena *a, size_t bytes);
/* Returns `size` bytes aligned for any type. Valid until ps_arena_clear(). */
void *ps_arena_alloc(ps_arena *a, size_t size);
/* Returns a NUL-terminated copy of `len` bytes of `s`. Valid until ps_arena_clear(). */
char *ps_arena_strndup(ps_arena *a, const char *s, size_t len);
/* Bytes the arena holds from the heap (for memory bounds). */
size_t ps_arena_bytes(const ps_arena *a);
/* Asks the processor for the first `bytes` of the newest chunk (a hint, for an arena another
 * thread filled). */
void ps_arena_prefetch(const ps_arena *a, size_t bytes);

/* Big-endian u64 in 8 bytes: the byte order of every key and cursor position, so that byte
 * comparison is numeric order. */
static inline void ps_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline uint64_t ps_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static inline void ps_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline uint32_t ps_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif
