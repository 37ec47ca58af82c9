/* SPDX-License-Identifier: MIT */
/* The page audit (src/storage/pages.c): one store, then one field of one page changed at a
 * time in its data file, each a rule of LMDB's page layout that the audit must name; a write
 * transaction must refuse to begin on such a store, and begin again once the page is whole.
 * The test reads the file with its own small parser of LMDB's 64-bit layout (page header 16
 * bytes, node header 8, table record 48). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ps/store.h"

enum { PAGE = 4096, HDR = 16, NODE = 8 };

static uint16_t g16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static uint64_t g64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void p16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static void p64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static bool page_read(int fd, uint64_t pg, uint8_t *buf)
{
    return pread(fd, buf, PAGE, (off_t)(pg * PAGE)) == PAGE;
}

static bool page_write(int fd, uint64_t pg, const uint8_t *buf)
{
    return pwrite(fd, buf, PAGE, (off_t)(pg * PAGE)) == PAGE;
}

/* What the newest meta page names. */
typedef struct layout {
    uint64_t last_pg, free_root, main_root;
    uint64_t meta_root; /* the root of the table called "meta" */
    uint16_t meta_depth;
} layout;

static bool layout_read(int fd, layout *l)
{
    uint8_t m[2][PAGE];
    if (!page_read(fd, 0, m[0]) || !page_read(fd, 1, m[1]))
        return false;
    /* the meta: magic, version, address, map size (24), the free and main table records,
     * the last page, the transaction id */
    const uint8_t *meta =
        g64(m[0] + HDR + 24 + 96 + 8) > g64(m[1] + HDR + 24 + 96 + 8) ? m[0] : m[1];
    l->free_root = g64(meta + HDR + 24 + 40);
    l->main_root = g64(meta + HDR + 24 + 48 + 40);
    l->last_pg = g64(meta + HDR + 24 + 96);
    uint8_t p[PAGE];
    if (!page_read(fd, l->main_root, p) || g16(p + 10) != 0x02)
        return false;
    for (unsigned i = 0; i < (g16(p + 12) - HDR) / 2u; i++) {
        const uint8_t *node = p + g16(p + HDR + 2 * i);
        if (g16(node + 6) == 4 && memcmp(node + NODE, "meta", 4) == 0) {
            l->meta_depth = g16(node + NODE + 4 + 6);
            l->meta_root = g64(node + NODE + 4 + 40);
            return true;
        }
    }
    return false;
}

/* The audit's verdict on the store as the file now is: "" when whole, else its text. */
static const char *audit(ps_store *s)
{
    static char why[200];
    uint64_t reached, free_pages;
    ps_status st = ps_store_pages_audit(s, &reached, &free_pages, why, sizeof why);
    if (st == PS_OK)
        return reached > 0 ? "" : "nothing reached";
    return st == PS_ECORRUPT ? why : "audit failed";
}

static bool has(const char *text, const char *part)
{
    if (strstr(text, part))
        return true;
    fprintf(stderr, "  audit said \"%s\", not \"%s\"\n", text, part);
    return false;
}

/* A meta table of three levels' worth of rows (a branch over leaves), one value on overflow
 * pages, and a second transaction that frees pages (so that the free-page list has some). */
static ps_store *store_made(const char *dir)
{
    ps_store *s = NULL;
    ps_store_opts o = {.create = true, .map_size_bytes = 64u << 20};
    if (ps_store_open(dir, &o, &s) != PS_OK)
        return NULL;
    char key[32], val[64];
    static char big[10000];
    memset(big, 'b', sizeof big);
    for (int round = 0; round < 2; round++) {
        ps_txn *t;
        if (ps_txn_begin(s, true, &t) != PS_OK)
            return s;
        for (int i = 0; i < 600; i += round ? 7 : 1) {
            snprintf(key, sizeof key, "test/%05d", i);
            int n = snprintf(val, sizeof val, "value %d of round %d", i, round);
            (void)ps_store_meta_put(t, key, (ps_slice){(const uint8_t *)val, (size_t)n});
        }
        if (round == 0)
            (void)ps_store_meta_put(t, "test/big", (ps_slice){(const uint8_t *)big, sizeof big});
        if (ps_txn_commit(t) != PS_OK)
            return s;
    }
    return s;
}

/* A store from store_made, its directory, and its data file open for the test's changes. */
typedef struct fixture {
    const char *dir;
    ps_store *s;
    int fd;
} fixture;

static fixture fixture_make(void)
{
    fixture x = {tmpdir_make(), NULL, -1};
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", x.dir);
    x.s = store_made(x.dir);
    x.fd = open(path, O_RDWR);
    return x;
}

/* Closes the store and opens it again: a new handle, which has not audited yet. */
static bool reopen(fixture *x)
{
    ps_store_close(x->s);
    x->s = NULL;
    return ps_store_open(x->dir, &(ps_store_opts){.map_size_bytes = 64u << 20}, &x->s) == PS_OK;
}

static void fixture_end(fixture *x)
{
    if (x->fd >= 0)
        close(x->fd);
    ps_store_close(x->s);
    tmpdir_remove(x->dir);
}

static bool write_refused(ps_store *s)
{
    ps_txn *t;
    ps_status st = ps_txn_begin(s, true, &t);
    if (st == PS_OK)
        ps_txn_abort(t);
    return st == PS_ECORRUPT;
}

static void test_each_rule_is_named(void)
{
    fixture x = fixture_make();
    int fd = x.fd;
    layout l;
    uint8_t root[PAGE], leaf[PAGE], p[PAGE], keep[PAGE];
    CHECK(x.s != NULL && fd >= 0);
    CHECK(layout_read(fd, &l));
    CHECK_EQ_INT(l.meta_depth, 2); /* a branch over leaves */
    CHECK_EQ_STR(audit(x.s), "");
    CHECK(page_read(fd, l.meta_root, root) && g16(root + 10) == 0x01);
    /* the last leaf: rows past every key opening a store reads ("format", the dictionary's) */
    const uint8_t *last = root + g16(root + HDR + 2 * ((g16(root + 12) - HDR) / 2u - 1));
    uint64_t leaf_pg = g16(last) | (uint64_t)g16(last + 2) << 16 | (uint64_t)g16(last + 4) << 32;
    CHECK(page_read(fd, leaf_pg, leaf) && g16(leaf + 10) == 0x02);

    /* a leaf: each rule in turn, the page put back after each */
    memcpy(p, leaf, PAGE);
    p64(p, leaf_pg + 1);
    CHECK(page_write(fd, leaf_pg, p) && has(audit(x.s), "(meta): its header names another page"));
    memcpy(p, leaf, PAGE);
    p16(p + 10, 0x01);
    CHECK(page_write(fd, leaf_pg, p) && has(audit(x.s), "not the kind of page"));
    memcpy(p, leaf, PAGE);
    p16(p + 12, (uint16_t)(g16(leaf + 14) + 2)); /* lower past upper */
    CHECK(page_write(fd, leaf_pg, p) && has(audit(x.s), "free-space bounds outside the page"));
    memcpy(p, leaf, PAGE);
    p16(p + HDR, HDR); /* node 0 inside the offsets */
    CHECK(page_write(fd, leaf_pg, p) && has(audit(x.s), "a node offset outside"));
    memcpy(p, leaf, PAGE);
    p16(p + g16(leaf + HDR) + 6, 5000); /* node 0's key size */
    CHECK(page_write(fd, leaf_pg, p) && has(audit(x.s), "a key past the page's end"));
    memcpy(p, leaf, PAGE);
    p16(p + g16(leaf + HDR), 9000); /* node 0's value size (low half) */
    CHECK(page_write(fd, leaf_pg, p) && has(audit(x.s), "a node past the page's end"));
    memcpy(p, leaf, PAGE);
    p16(p + g16(leaf + HDR) + 4, 0x04); /* a node with duplicate keys, which no table has */
    CHECK(page_write(fd, leaf_pg, p) && has(audit(x.s), "a node of a kind this store never"));
    /* the store handle that wrote it audited before its first write, and trusts it since; a
     * new one audits before its first write, and refuses it */
    CHECK(reopen(&x));
    CHECK(write_refused(x.s));
    CHECK(write_refused(x.s)); /* and every later one */
    CHECK(reopen(&x)); /* the same, audited ahead on a thread of its own (a server's open) */
    ps_store_audit_ahead(x.s);
    ps_store_audit_ahead(x.s); /* once */
    CHECK(write_refused(x.s));
    CHECK(page_write(fd, leaf_pg, leaf) && strcmp(audit(x.s), "") == 0);

    /* the branch: a child outside the file, a child reached twice */
    memcpy(p, root, PAGE);
    p16(p + g16(root + HDR), (uint16_t)(l.last_pg + 5));
    p16(p + g16(root + HDR) + 2, (uint16_t)((l.last_pg + 5) >> 16));
    CHECK(page_write(fd, l.meta_root, p) && has(audit(x.s), "names a page outside the file"));
    memcpy(p, root, PAGE);
    memcpy(p + g16(root + HDR + 2), p + g16(root + HDR), 6); /* child 1 := child 0 */
    CHECK(page_write(fd, l.meta_root, p) && has(audit(x.s), "reached twice"));
    CHECK(page_write(fd, l.meta_root, root) && strcmp(audit(x.s), "") == 0);

    /* the value on overflow pages: its run said to be one page long */
    uint64_t ov = 0, big_leaf = 0;
    for (unsigned c = 0; c < (g16(root + 12) - HDR) / 2u && !ov; c++) {
        const uint8_t *b = root + g16(root + HDR + 2 * c);
        uint64_t pg = g16(b) | (uint64_t)g16(b + 2) << 16 | (uint64_t)g16(b + 4) << 32;
        CHECK(page_read(fd, pg, p));
        for (unsigned i = 0; i < (g16(p + 12) - HDR) / 2u; i++) {
            const uint8_t *node = p + g16(p + HDR + 2 * i);
            if (g16(node + 4) & 0x01) { /* on overflow pages */
                ov = g64(node + NODE + g16(node + 6));
                big_leaf = pg;
            }
        }
    }
    CHECK(ov != 0 && big_leaf != 0);
    CHECK(page_read(fd, ov, keep) && g16(keep + 10) == 0x04);
    memcpy(p, keep, PAGE);
    p16(p + 12, 1);
    p16(p + 14, 0);
    CHECK(page_write(fd, ov, p) && has(audit(x.s), "an overflow run shorter than its data"));
    memcpy(p, keep, PAGE);
    p16(p + 10, 0x02);
    CHECK(page_write(fd, ov, p) && has(audit(x.s), "not the overflow page its node names"));
    CHECK(page_write(fd, ov, keep) && strcmp(audit(x.s), "") == 0);

    /* the free-page list: a page the meta table uses, listed as free */
    CHECK(l.free_root != UINT64_MAX);
    CHECK(page_read(fd, l.free_root, keep) && g16(keep + 10) == 0x02);
    const uint8_t *rec = keep + g16(keep + HDR);
    CHECK((g16(rec + 4) & 0x01) == 0); /* inline: a count, then page numbers */
    size_t at = (size_t)(rec - keep) + NODE + g16(rec + 6);
    CHECK(g64(keep + at) >= 1);
    memcpy(p, keep, PAGE);
    p64(p + at + 8, l.meta_root);
    CHECK(page_write(fd, l.free_root, p) &&
          has(audit(x.s), "listed as free while a table uses it"));
    memcpy(p, keep, PAGE);
    p64(p + at + 8, l.last_pg + 1);
    CHECK(page_write(fd, l.free_root, p) && has(audit(x.s), "a free page number outside the file"));
    memcpy(p, keep, PAGE);
    p64(p + at, 100000); /* a count past the record's room */
    CHECK(page_write(fd, l.free_root, p) && has(audit(x.s), "counts more pages than it holds"));
    CHECK(page_write(fd, l.free_root, keep) && strcmp(audit(x.s), "") == 0);

    /* whole again: a new handle writes */
    CHECK(reopen(&x));
    ps_store_audit_ahead(x.s);
    CHECK(write_refused(x.s) == false);
end:
    fixture_end(&x);
}

static void test_free_pages_are_not_read(void)
{
    /* noise over every page the free-page list holds: they hold whatever they held */
    fixture x = fixture_make();
    int fd = x.fd;
    layout l;
    uint8_t f[PAGE], noise[PAGE];
    unsigned listed = 0;
    CHECK(x.s != NULL && fd >= 0 && layout_read(fd, &l));
    CHECK(page_read(fd, l.free_root, f) && g16(f + 10) == 0x02);
    srand(7);
    for (size_t i = 0; i < PAGE; i++)
        noise[i] = (uint8_t)rand();
    for (unsigned r = 0; r < (g16(f + 12) - HDR) / 2u; r++) {
        const uint8_t *rec = f + g16(f + HDR + 2 * r);
        CHECK((g16(rec + 4) & 0x01) == 0);
        const uint8_t *ids = rec + NODE + g16(rec + 6);
        for (uint64_t i = 1; i <= g64(ids); i++, listed++)
            CHECK(page_write(fd, g64(ids + 8 * i), noise));
    }
    CHECK(listed > 0);
    CHECK_EQ_STR(audit(x.s), "");
    CHECK(reopen(&x));
    CHECK(write_refused(x.s) == false);
end:
    fixture_end(&x);
}

int main(int argc, char **argv)
{
    static const test_case tests[] = {
        {"each_rule_is_named", test_each_rule_is_named},
        {"free_pages_are_not_read", test_free_pages_are_not_read},
    };
    return test_main(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
