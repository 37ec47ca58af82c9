/* SPDX-License-Identifier: MIT */
/* pages: the page audit. LMDB trusts its data file: a write transaction copies each page it
 * changes using the offsets in that page's header, so a page damaged outside LMDB (a disk, a
 * stray write) can make LMDB write past a heap page before anything faults. Reads are guarded
 * (guard.c) and only read; writes cannot be guarded that way. So before this process's first
 * write to a store, every page the newest snapshot reaches is read here, with pread (a map
 * of its own would take the process's address-space lock for every page it faults in, and
 * for its unmapping, which the server's readers then wait behind), and checked against
 * LMDB's page layout (docs/architecture.md, "Damaged pages"):
 *
 *   meta pages 0 and 1: magic, version; the one of the snapshot names the free-page tree and
 *     the main tree, each a root page and a depth;
 *   branch and leaf pages: the header names the page itself, the right kind for its level, the
 *     node offsets within the page, each node (8 bytes, key, data) within the page; a branch
 *     node's child inside the used file; nothing reached twice;
 *   a leaf node's data either inline, or on overflow pages (a run, its first page saying so),
 *     or (main tree only) a named table's 48-byte record, whose tree is walked in turn;
 *   the free-page list: records of a count and page numbers, each page past the metas, inside
 *     the file, not reached by any tree and not listed twice.
 *
 * The layout is LMDB's 64-bit data format version 1, which this project's LMDB (0.9) writes;
 * no table here uses duplicate keys, so the sub-page kinds never occur and are damage. */
#define _GNU_SOURCE /* SCHED_IDLE */
#include "store_int.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    HDR = 16, /* page header: page number (8), pad (2), flags (2), lower/upper or run (4) */
    NODE = 8, /* node header: size or child (2+2), flags (2), key size (2) */
    DB_RECORD = 48,
    META_DBS = HDR + 24, /* after magic (4), version (4), address (8), map size (8) */
    MAX_DEPTH = 32,      /* LMDB's cursor stack: no tree is deeper */
    /* page buffers: the main tree's levels, a named table's below them, an overflow page's
     * header below that; the last two hold the meta pages */
    SLOTS = 2 * MAX_DEPTH + 4,
    P_BRANCH = 0x01,
    P_LEAF = 0x02,
    P_OVERFLOW = 0x04,
    F_BIGDATA = 0x01,
    F_SUBDATA = 0x02,
};
#define META_MAGIC 0xBEEFC0DEu
#define NO_PAGE UINT64_MAX

typedef struct audit {
    int fd;
    uint8_t *slots;  /* a page buffer per level of the walk (pread, no map: see st_pages_audit) */
    uint8_t *record; /* a free-list record on overflow pages, read whole */
    size_t record_cap;
    uint64_t psize, last_pg; /* the snapshot's last page */
    uint8_t *seen;           /* a bit per page: reached by a tree */
    uint8_t *freed;          /* a bit per page: listed as free */
    uint64_t reached, free_pages;
    const _Atomic(bool) *stop; /* asked to stop (the store closes): no verdict */
    bool stopped;
    const char *table; /* the tree being walked, for the message */
    char named[32];    /* a named table's name, as its record in the main tree has it */
    char *why;
    size_t why_cap;
} audit;

static uint16_t u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint32_t u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint64_t u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static bool bad(audit *a, uint64_t pg, const char *what)
{
    if (!a->why[0])
        snprintf(a->why, a->why_cap, "page %llu (%s): %s", (unsigned long long)pg, a->table, what);
    return false;
}

static bool bit_test_set(uint8_t *bits, uint64_t pg)
{
    bool was = bits[pg >> 3] & (1u << (pg & 7));
    bits[pg >> 3] |= (uint8_t)(1u << (pg & 7));
    return was;
}

/* Takes pages [pg, pg + count) for a tree: inside the snapshot, past the metas, new. */
static bool take(audit *a, uint64_t pg, uint64_t count, uint64_t from)
{
    if (a->stop && atomic_load_explicit(a->stop, memory_order_relaxed))
        return !(a->stopped = true);
    if (pg < 2 || count == 0 || pg > a->last_pg || count > a->last_pg - pg + 1)
        return bad(a, from, "names a page outside the file");
    for (uint64_t i = 0; i < count; i++)
        if (bit_test_set(a->seen, pg + i))
            return bad(a, pg + i, "reached twice");
    a->reached += count;
    return true;
}

/* Page `pg` read into the walk's buffer `slot` (NULL, with the reason, when it cannot be). */
static const uint8_t *page_read(audit *a, uint64_t pg, unsigned slot)
{
    if (slot >= SLOTS) {
        bad(a, pg, "tables nested deeper than LMDB's cursor stack");
        return NULL;
    }
    uint8_t *buf = a->slots + (size_t)slot * a->psize;
    if (pread(a->fd, buf, a->psize, (off_t)(pg * a->psize)) != (ssize_t)a->psize) {
        bad(a, pg, "cannot be read");
        return NULL;
    }
    return buf;
}

static bool tree(audit *a, const uint8_t *db, bool main, bool free_tree, uint64_t from,
                 unsigned slot);

/* A leaf node's data: inline, on an overflow run, or a named table's record. *data is where
 * its bytes are (a free-list record on an overflow run is read whole; other overflow data is
 * not read, *data NULL). `page` is page `pg`, in buffer `slot`. */
static bool leaf_data(audit *a, uint64_t pg, const uint8_t *page, const uint8_t *node,
                      const uint8_t **data, uint64_t *size, bool main, bool free_tree,
                      unsigned slot)
{
    uint16_t flags = u16(node + 4), ksize = u16(node + 6);
    uint64_t dsize = u16(node) | (uint64_t)u16(node + 2) << 16;
    uint64_t off = (uint64_t)(node - page) + NODE + ksize;
    if (flags & ~(F_BIGDATA | F_SUBDATA) || (flags & F_SUBDATA && (!main || flags & F_BIGDATA)))
        return bad(a, pg, "a node of a kind this store never writes");
    if (flags & F_BIGDATA) {
        if (off + 8 > a->psize)
            return bad(a, pg, "a node past the page's end");
        uint64_t ov = u64(page + off);
        uint64_t need = (HDR - 1 + dsize) / a->psize + 1;
        if (!take(a, ov, 1, pg))
            return false;
        const uint8_t *first = page_read(a, ov, slot + 1);
        if (!first)
            return false;
        uint64_t run = u32(first + 12);
        if (u64(first) != ov || u16(first + 10) != P_OVERFLOW)
            return bad(a, ov, "not the overflow page its node names");
        if (run < need)
            return bad(a, ov, "an overflow run shorter than its data");
        if (run > 1 && !take(a, ov + 1, run - 1, ov))
            return false;
        *data = NULL;
        *size = dsize;
        if (free_tree) {
            if (dsize > a->record_cap) {
                a->record = ps_xrealloc(a->record, dsize);
                a->record_cap = dsize;
            }
            if (pread(a->fd, a->record, dsize, (off_t)(ov * a->psize + HDR)) != (ssize_t)dsize)
                return bad(a, ov, "cannot be read");
            *data = a->record;
        }
        return true;
    }
    if (off + dsize > a->psize)
        return bad(a, pg, "a node past the page's end");
    *data = page + off;
    *size = dsize;
    if (flags & F_SUBDATA) {
        if (dsize != DB_RECORD)
            return bad(a, pg, "a table record of the wrong size");
        size_t n = 0; /* the key is the table's name: printable, or not quoted at all */
        for (uint16_t i = 0; i < ksize && n < sizeof a->named - 1; i++)
            a->named[n++] =
                node[NODE + i] >= 0x20 && node[NODE + i] < 0x7f ? (char)node[NODE + i] : '?';
        a->named[n] = '\0';
        a->table = a->named;
        bool ok = tree(a, page + off, false, false, pg, slot + 1);
        a->table = "the list of tables";
        return ok;
    }
    return true;
}

/* The free-page list's record: a count, then that many page numbers (room for more). */
static bool free_record(audit *a, uint64_t pg, uint16_t ksize, const uint8_t *data, uint64_t size)
{
    if (ksize != 8 || size < 8 || size % 8)
        return bad(a, pg, "a free-list record of the wrong size");
    uint64_t n = u64(data);
    if (n > size / 8 - 1)
        return bad(a, pg, "a free-list record that counts more pages than it holds");
    for (uint64_t i = 1; i <= n; i++) {
        uint64_t f = u64(data + i * 8);
        if (f < 2 || f > a->last_pg)
            return bad(a, pg, "a free page number outside the file");
        if (bit_test_set(a->freed, f))
            return bad(a, f, "listed as free twice");
    }
    a->free_pages += n;
    return true;
}

static bool page_walk(audit *a, uint64_t pg, unsigned level, bool main, bool free_tree,
                      uint64_t from, unsigned slot)
{
    if (!take(a, pg, 1, from))
        return false;
    const uint8_t *page = page_read(a, pg, slot);
    if (!page)
        return false;
    uint16_t flags = u16(page + 10), lower = u16(page + 12), upper = u16(page + 14);
    if (u64(page) != pg)
        return bad(a, pg, "its header names another page");
    if (flags != (level > 1 ? P_BRANCH : P_LEAF))
        return bad(a, pg, "not the kind of page its tree's depth calls for");
    if (lower < HDR || (lower - HDR) % 2 || lower > upper || upper > a->psize)
        return bad(a, pg, "free-space bounds outside the page");
    unsigned n = (unsigned)(lower - HDR) / 2;
    if (level > 1 && n == 0)
        return bad(a, pg, "a branch page without children");
    for (unsigned i = 0; i < n; i++) {
        uint16_t at = u16(page + HDR + 2 * i);
        if (at < upper || (uint64_t)at + NODE > a->psize)
            return bad(a, pg, "a node offset outside the page's used space");
        const uint8_t *node = page + at;
        uint16_t ksize = u16(node + 6);
        if ((uint64_t)at + NODE + ksize > a->psize)
            return bad(a, pg, "a key past the page's end");
        if (level > 1) {
            uint64_t child =
                u16(node) | (uint64_t)u16(node + 2) << 16 | (uint64_t)u16(node + 4) << 32;
            if (!page_walk(a, child, level - 1, main, free_tree, pg, slot + 1))
                return false;
            continue;
        }
        const uint8_t *data;
        uint64_t size;
        if (!leaf_data(a, pg, page, node, &data, &size, main, free_tree, slot))
            return false;
        if (free_tree && !free_record(a, pg, ksize, data, size))
            return false;
    }
    return true;
}

/* A table's 48-byte record: pad (4), flags (2), depth (2), four counts (32), root (8). */
static bool tree(audit *a, const uint8_t *db, bool main, bool free_tree, uint64_t from,
                 unsigned slot)
{
    uint16_t depth = u16(db + 6);
    uint64_t root = u64(db + 40);
    if (root == NO_PAGE)
        return true; /* an empty table */
    if (depth < 1 || depth > MAX_DEPTH)
        return bad(a, from, "a table of an impossible depth");
    return page_walk(a, root, depth, main, free_tree, from, slot);
}

static ps_status audit_once(MDB_env *env, const _Atomic(bool) *stop, char *why, size_t why_cap,
                            uint64_t *reached, uint64_t *free_pages, bool *raced)
{
    why[0] = '\0';
    *raced = false;
    *reached = *free_pages = 0;
    int fd;
    MDB_stat es;
    struct stat fs;
    if (mdb_env_get_fd(env, &fd) || mdb_env_stat(env, &es) || fstat(fd, &fs))
        return PS_EIO;
    /* our own read transaction holds the snapshot: no writer reuses its pages meanwhile */
    MDB_txn *rt;
    int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &rt);
    if (rc)
        return rc == MDB_READERS_FULL ? PS_EBUSY : PS_EIO;
    uint64_t txnid = mdb_txn_id(rt);
    audit a = {.fd = fd, .psize = es.ms_psize, .stop = stop, .why = why, .why_cap = why_cap};
    uint64_t file_pages = (uint64_t)fs.st_size / a.psize;
    ps_status st = PS_OK;
    a.slots = ps_xmalloc((size_t)SLOTS * a.psize);
    a.table = "the meta pages";
    const uint8_t *meta = NULL;
    if (file_pages < 2) {
        snprintf(why, why_cap, "a data file shorter than its two meta pages");
        st = PS_ECORRUPT;
    }
    for (unsigned m = 0; st == PS_OK && m < 2; m++) { /* into the last two buffers */
        const uint8_t *p = page_read(&a, m, SLOTS - 2 + m);
        if (!p)
            st = PS_EIO;
        else if (u32(p + HDR) == META_MAGIC && u32(p + HDR + 4) == 1 &&
                 u64(p + META_DBS + 2 * DB_RECORD + 8) == txnid)
            meta = p;
    }
    if (st == PS_OK && !meta) {
        /* two commits since our snapshot began overwrote its meta page: LMDB read it anyway */
        *raced = true;
        st = PS_EBUSY;
    }
    if (st == PS_OK) {
        a.last_pg = u64(meta + META_DBS + 2 * DB_RECORD);
        if (a.last_pg >= file_pages) {
            snprintf(why, why_cap, "the meta page counts %llu pages, the file holds %llu",
                     (unsigned long long)a.last_pg + 1, (unsigned long long)file_pages);
            st = PS_ECORRUPT;
        }
    }
    if (st == PS_OK) {
        a.seen = ps_xcalloc(1, a.last_pg / 8 + 1);
        a.freed = ps_xcalloc(1, a.last_pg / 8 + 1);
        a.table = "the list of tables";
        bool ok = tree(&a, meta + META_DBS + DB_RECORD, true, false, 0, 0);
        a.table = "the free-page list";
        ok = ok && tree(&a, meta + META_DBS, false, true, 0, 0);
        for (uint64_t pg = 2; ok && pg <= a.last_pg; pg++)
            if ((a.seen[pg >> 3] & a.freed[pg >> 3]) & (1u << (pg & 7)))
                ok = bad(&a, pg, "listed as free while a table uses it");
        st = ok ? PS_OK : a.stopped ? PS_ECLOSED : PS_ECORRUPT;
        free(a.seen);
        free(a.freed);
    }
    free(a.slots);
    free(a.record);
    mdb_txn_abort(rt);
    *reached = a.reached;
    *free_pages = a.free_pages;
    return st;
}

ps_status st_pages_audit(MDB_env *env, const _Atomic(bool) *stop, char *why, size_t why_cap,
                         uint64_t *reached, uint64_t *free_pages)
{
    bool raced = true;
    ps_status st = PS_EBUSY;
    for (int i = 0; raced && i < 8; i++)
        st = audit_once(env, stop, why, why_cap, reached, free_pages, &raced);
    if (raced)
        snprintf(why, why_cap, "other writers committed faster than the audit could begin");
    return st;
}

/* Before this process's first write to `s`: its pages, audited once (pages.c). A damaged
 * page refuses every write from then on; reads go on, guarded. */
/* Records the audit's verdict once (the first audit to end, of a write or of the audit
 * ahead), and says a damaged page in the log. */
static void verdict(ps_store *s, ps_status st, const char *why)
{
    int none = 0;
    if ((st != PS_OK && st != PS_ECORRUPT) ||
        !atomic_compare_exchange_strong(&s->audited, &none, st == PS_OK ? 1 : 2))
        return; /* (no memory, a busy reader table: the next write tries again) */
    atomic_store(&s->ahead_stop, true); /* an audit ahead still walking holds a snapshot */
    if (st == PS_ECORRUPT)
        ps_log(PS_LOG_ERROR,
               "msg=\"store corrupt: a damaged page; no writes from this process\" store=%s "
               "page=\"%s\" hint=\"restore the space from a snapshot, or salvage its log into "
               "a new space (docs/profilectl.md, log --salvage)\"",
               s->name, why);
}

ps_status st_pages_audited(ps_store *s)
{
    if (atomic_load(&s->audited) == 0) {
        pthread_mutex_lock(&s->audit_lock); /* two first writes audit once */
        if (atomic_load(&s->audited) == 0) {
            char why[160];
            uint64_t reached, free_pages;
            ps_status st = st_pages_audit(s->env, NULL, why, sizeof why, &reached, &free_pages);
            verdict(s, st, why);
            if (st != PS_OK && st != PS_ECORRUPT) {
                pthread_mutex_unlock(&s->audit_lock);
                return st;
            }
        }
        pthread_mutex_unlock(&s->audit_lock);
    }
    return atomic_load(&s->audited) == 1 ? PS_OK : PS_ECORRUPT;
}

/* At most this many audits ahead run at once in a process (a burst of spaces opened must not
 * become a burst of threads); a store past the bound is audited at its first write. */
#define AUDITS_AHEAD_MAX 2
static _Atomic(int) audits_ahead;

/* The audit ahead runs only on CPU time nothing else wants (SCHED_IDLE), so that the reads a
 * server answers meanwhile do not wait for it (it cost /traits half its p99 on a 1 GB space
 * while it ran at normal priority). It takes no lock: a write that comes first audits for
 * itself, and whichever ends first gives the verdict. */
static void *audit_ahead_run(void *arg)
{
    ps_store *s = arg;
    struct sched_param none = {0};
    (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &none);
    char why[160];
    uint64_t reached, free_pages;
    if (atomic_load(&s->audited) == 0)
        verdict(s, st_pages_audit(s->env, &s->ahead_stop, why, sizeof why, &reached, &free_pages),
                why);
    atomic_fetch_sub(&audits_ahead, 1);
    return NULL;
}

void ps_store_audit_ahead(ps_store *s)
{
    if (atomic_load(&s->audited) != 0 || s->auditor_started)
        return;
    if (atomic_fetch_add(&audits_ahead, 1) >= AUDITS_AHEAD_MAX ||
        pthread_create(&s->auditor, NULL, audit_ahead_run, s) != 0) {
        atomic_fetch_sub(&audits_ahead, 1);
        return;
    }
    s->auditor_started = true;
}

ps_status ps_store_pages_audit(ps_store *s, uint64_t *reached, uint64_t *free_pages, char *why,
                               size_t why_cap)
{
    ps_status st = st_pages_audit(s->env, NULL, why, why_cap, reached, free_pages);
    if (st == PS_OK) /* a later write of this process need not audit again (a damaged page is
                      * left to the write's own audit, which says so in the log) */
        verdict(s, st, why);
    return st;
}
