/* SPDX-License-Identifier: MIT */
/* mem: fatal-on-exhaustion allocation, ps_buf and ps_arena. */
#include "ps/mem.h"
#include "ps/text.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void oom(size_t size)
{
    fprintf(stderr, "level=fatal msg=\"out of memory\" bytes=%zu\n", size);
    abort();
}

void *ps_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

void *ps_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        oom(count * size);
    return p;
}

void *ps_xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

char *ps_xstrdup(const char *s)
{
    return ps_xstrndup(s, strlen(s));
}

char *ps_xstrndup(const char *s, size_t len)
{
    char *p = ps_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void ps_buf_init(ps_buf *b)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
}

void ps_buf_clear(ps_buf *b)
{
    free(b->ptr);
    ps_buf_init(b);
}

void ps_buf_reset(ps_buf *b)
{
    b->len = 0;
    if (b->ptr)
        b->ptr[0] = 0;
}

void ps_buf_reserve(ps_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->ptr = ps_xrealloc(b->ptr, cap);
    b->cap = cap;
}

void ps_buf_fit(ps_buf *b)
{
    if (b->ptr && b->cap > b->len + 1) {
        b->ptr = ps_xrealloc(b->ptr, b->len + 1);
        b->cap = b->len + 1;
    }
}

void ps_buf_printf(ps_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        ps_buf_append(b, tmp, (size_t)n);
        return;
    }
    ps_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf((char *)b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

size_t ps_u64_dec(uint64_t v, char out[PS_U64_DEC_MAX])
{
    char digits[PS_U64_DEC_MAX];
    size_t d = sizeof digits;
    do
        digits[--d] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    memcpy(out, digits + d, sizeof digits - d);
    return sizeof digits - d;
}

void ps_buf_u64(ps_buf *b, uint64_t v)
{
    char digits[PS_U64_DEC_MAX];
    ps_buf_append(b, digits, ps_u64_dec(v, digits));
}

void ps_buf_be64(ps_buf *b, uint64_t v)
{
    uint8_t tmp[8];
    for (int i = 7; i >= 0; i--) {
        tmp[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
    ps_buf_append(b, tmp, 8);
}

void ps_buf_json_str(ps_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* the bytes with a two-character escape; other control bytes are written \u00XX */
    static const char short_escape[256] = {
        ['"'] = '"', ['\\'] = '\\', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
    };
    if (b->len + len + 2 >= b->cap)
        ps_buf_reserve(b, len + 2);
    const char *end = s + len, *run = s;
    const char *p = ps_json_string_run(s, end, PS_JSON_STOP_CONTROL);
    if (p == end) { /* most strings: nothing to escape, one copy between the quotes */
        uint8_t *o = b->ptr + b->len;
        o[0] = '"';
        if (len)
            memcpy(o + 1, s, len);
        o[len + 1] = '"';
        o[len + 2] = 0;
        b->len += len + 2;
        return;
    }
    ps_buf_putc(b, '"');
    for (;; p++) { /* from one byte that needs an escape to the next */
        p = ps_json_string_run(p, end, PS_JSON_STOP_CONTROL);
        if (p == end)
            break;
        unsigned char c = (unsigned char)*p;
        ps_buf_append(b, run, (size_t)(p - run));
        run = p + 1;
        char esc[6] = {'\\', short_escape[c], '0', '0', hex[c >> 4], hex[c & 15]};
        if (esc[1]) {
            ps_buf_append(b, esc, 2);
        } else {
            esc[1] = 'u';
            ps_buf_append(b, esc, 6);
        }
    }
    ps_buf_append(b, run, (size_t)(end - run));
    ps_buf_putc(b, '"');
}

struct ps_arena_chunk {
    ps_arena_chunk *next;
    size_t used;
    size_t cap;
    _Alignas(16) unsigned char data[];
};

/* An arena's first chunk is small, since most arenas hold one message; each further chunk
 * doubles, up to ARENA_CHUNK_MAX. First chunks are kept per thread for the next arena (at most
 * ARENA_KEEP of them): an arena per message would otherwise take one from malloc and give it
 * back every time, at a cost that grows with fragmentation. */
#define ARENA_FIRST 4096
#define ARENA_CHUNK_MAX (256 * 1024)
#define ARENA_KEEP 256

typedef struct arena_cache {
    ps_arena_chunk *head;
    size_t count;
} arena_cache;

static void cache_free(void *p)
{
    arena_cache *ac = p;
    while (ac->head) {
        ps_arena_chunk *next = ac->head->next;
        free(ac->head);
        ac->head = next;
    }
    free(ac);
}

static void *cache_make(void)
{
    return ps_xcalloc(1, sizeof(arena_cache));
}

static ps_thread_slot cache_slot = PS_THREAD_SLOT(cache_make, cache_free);

static arena_cache *thread_cache(void)
{
    return ps_thread_slot_get(&cache_slot);
}

void ps_arena_init(ps_arena *a)
{
    a->head = NULL;
    a->step = 0;
}

void ps_arena_clear(ps_arena *a)
{
    arena_cache *ac = a->head ? thread_cache() : NULL;
    ps_arena_chunk *c = a->head;
    while (c) {
        ps_arena_chunk *next = c->next;
        if (c->cap == ARENA_FIRST && ac->count < ARENA_KEEP) {
            c->next = ac->head;
            ac->head = c;
            ac->count++;
        } else {
            free(c);
        }
        c = next;
    }
    a->head = NULL;
    a->step = 0;
}

/* An empty chunk of `cap` bytes from the heap. Sizes handed out are multiples of 16, so any
 * cap works. */
static ps_arena_chunk *chunk_new(size_t cap)
{
    ps_arena_chunk *c = ps_xmalloc(sizeof *c + cap);
    *c = (ps_arena_chunk){.next = NULL, .used = 0, .cap = cap};
    return c;
}

void ps_arena_reserve(ps_arena *a, size_t bytes)
{
    if (a->head || bytes <= ARENA_FIRST)
        return;
    a->head = chunk_new(bytes);
    a->step = bytes / 4 > ARENA_FIRST ? bytes / 4 : ARENA_FIRST;
}

void *ps_arena_alloc(ps_arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    ps_arena_chunk *c = a->head;
    if (c == NULL || c->cap - c->used < size) {
        arena_cache *ac = c == NULL && size <= ARENA_FIRST ? thread_cache() : NULL;
        if (ac && ac->head) {
            c = ac->head;
            ac->head = c->next;
            ac->count--;
        } else {
            size_t prev = c ? c->cap : 0;
            size_t cap = a->step                       ? a->step
                         : prev == 0                   ? ARENA_FIRST
                         : prev >= ARENA_CHUNK_MAX / 2 ? ARENA_CHUNK_MAX
                                                       : 2 * prev;
            c = chunk_new(cap < size ? size : cap);
        }
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

size_t ps_arena_bytes(const ps_arena *a)
{
    size_t n = 0;
    for (const ps_arena_chunk *c = a->head; c; c = c->next)
        n += sizeof *c + c->cap;
    return n;
}

void ps_arena_prefetch(const ps_arena *a, size_t bytes)
{
    const unsigned char *c = (const unsigned char *)a->head;
    for (size_t o = 0; c && o < sizeof(ps_arena_chunk) + bytes; o += 64)
        __builtin_prefetch(c + o); /* a hint: never faults, even past the chunk's end */
}

char *ps_arena_strndup(ps_arena *a, const char *s, size_t len)
{
    char *p = ps_arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = 0;
    return p;
}

void *ps_thread_slot_get(ps_thread_slot *s)
{
    static pthread_mutex_t keys = PTHREAD_MUTEX_INITIALIZER;
    if (!atomic_load_explicit(&s->ready, memory_order_acquire)) {
        pthread_mutex_lock(&keys);
        if (!atomic_load_explicit(&s->ready, memory_order_relaxed)) {
            if (pthread_key_create(&s->key, s->free) != 0)
                abort(); /* out of keys: a fixed handful are made */
            atomic_store_explicit(&s->ready, 1, memory_order_release);
        }
        pthread_mutex_unlock(&keys);
    }
    void *p = pthread_getspecific(s->key);
    if (p == NULL && (p = s->make()) != NULL)
        pthread_setspecific(s->key, p);
    return p;
}

void ps_mem_keep_freed(void)
{
    /* buffers up to 32 MiB (glibc's largest threshold) come from the heap, and the heap is
     * trimmed only past 512 MiB free: what a request or a batch frees serves the next one */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

void ps_mem_reserve_heap(size_t bytes)
{
    /* blocks below the mmap threshold come from the heap; freed, they stay in it (the trim
     * threshold is above `bytes`) and serve later allocations without growing the heap again.
     * No transparent huge pages: on this project's VMs the host takes freed guest memory
     * back, and a cold 2 MiB fault cost more than the 4 KiB faults it saves
     * (docs/benchmarks.md, "Heap reserve without huge pages"). */
#if defined(__SANITIZE_ADDRESS__)
    (void)bytes; /* the sanitizer's allocator has its own heap */
#else
    enum {
        BLOCK = 30 << 20,
        MAX_BLOCKS = 16
    }; /* 480 MiB: below the trim threshold, or the
        * last free would hand it all back */
    void *blocks[MAX_BLOCKS];
    size_t n = 0;
    for (; n < MAX_BLOCKS && n * BLOCK < bytes; n++)
        if ((blocks[n] = malloc(BLOCK)) == NULL)
            break;
    while (n)
        free(blocks[--n]);
#endif
}
