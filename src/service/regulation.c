/* SPDX-License-Identifier: MIT */
/* regulation: the regulations of a space and the suppression list (see ps/regulation.h).
 * meta "regulation/<16 hex digits>": the regulation's JSON answer; "regulation/next": the next
 * sequence (8 bytes, big-endian); "regpending/<16 hex digits>": a regulation not run yet;
 * "suppress/<64 hex digits>": SHA-256 of a suppressed userId -> when (8 bytes, big-endian). */
#include "ps/regulation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/auth.h"
#include "ps/clock.h"
#include "ps/graph.h"
#include "ps/graphdb.h"
#include "ps/log.h"
#include "ps/msglog.h"
#include "ps/profile.h"
#include "ps/records.h"
#include "ps/text.h"

#define REG_PREFIX "regulation/"
#define REG_NEXT_KEY "regulation/next"
#define SUPPRESS_PREFIX "suppress/"

/* The SHA-256 of a userId in lowercase hex (64 digits and a NUL): how suppressions and the
 * subjects of a finished deletion are kept. */
static void subject_digest(const char *user_id, size_t len, char out[2 * PS_DIGEST_BYTES + 1])
{
    uint8_t d[PS_DIGEST_BYTES];
    ps_auth_digest(user_id, len, d);
    ps_hex(d, sizeof d, out);
}

static void suppress_key(const char *user_id, size_t len, char out[80])
{
    char hex[2 * PS_DIGEST_BYTES + 1];
    subject_digest(user_id, len, hex);
    snprintf(out, 80, SUPPRESS_PREFIX "%s", hex);
}

static bool any_key(void *ud, ps_slice key, ps_slice value)
{
    (void)key;
    (void)value;
    *(bool *)ud = true;
    return false;
}

bool ps_regulation_any_suppressed(ps_txn *t)
{
    bool any = false;
    (void)ps_store_meta_scan(t, SUPPRESS_PREFIX, any_key, &any);
    return any;
}

bool ps_regulation_suppressed(ps_txn *t, const char *user_id, size_t len)
{
    char key[80];
    suppress_key(user_id, len, key);
    ps_slice v;
    return ps_store_meta_get(t, key, &v) == PS_OK;
}

static void reg_key(uint64_t seq, char out[40])
{
    snprintf(out, 40, REG_PREFIX "%016llx", (unsigned long long)seq);
}

/* The regulation's JSON answer (Segment's field names). */
static void reg_json(ps_buf *out, const char *id, const ps_reg_request *rq, const char *status,
                     int64_t created_ms, int64_t finished_ms)
{
    char tb[PS_TIME_BUF];
    ps_buf_printf(out,
                  "{\"id\":\"%s\",\"regulationType\":\"%s\",\"subjectType\":\"USER_ID\","
                  "\"subjectIds\":[",
                  id, ps_reg_type_name(rq->type));
    /* a deletion keeps its subjects only as digests: the record of an erasure must not hold
     * what it erased (docs/privacy.md) */
    bool digests = rq->type == PS_REG_DELETE || rq->type == PS_REG_SUPPRESS_WITH_DELETE;
    for (size_t i = 0; i < rq->count; i++) {
        if (i)
            ps_buf_putc(out, ',');
        if (digests) {
            char hex[2 * PS_DIGEST_BYTES + 1];
            subject_digest(rq->subjects[i], strlen(rq->subjects[i]), hex);
            ps_buf_printf(out, "\"sha256:%s\"", hex);
        } else {
            ps_buf_json_str(out, rq->subjects[i], strlen(rq->subjects[i]));
        }
    }
    ps_time_format(created_ms, tb);
    ps_buf_printf(out, "],\"status\":\"%s\",\"createdAt\":\"%s\",\"finishedAt\":", status, tb);
    if (finished_ms) {
        ps_time_format(finished_ms, tb);
        ps_buf_printf(out, "\"%s\"}", tb);
    } else {
        ps_buf_puts(out, "null}");
    }
}

static ps_status suppress(ps_txn *t, const ps_reg_request *rq, bool on, int64_t now_ms)
{
    ps_status st = PS_OK;
    for (size_t i = 0; i < rq->count && st == PS_OK; i++) {
        char key[80];
        suppress_key(rq->subjects[i], strlen(rq->subjects[i]), key);
        if (on) {
            uint8_t v[8];
            ps_put_be64(v, (uint64_t)now_ms);
            st = ps_store_meta_put(t, key, (ps_slice){v, 8});
        } else if ((st = ps_store_meta_del(t, key)) == PS_ENOTFOUND) {
            st = PS_OK; /* was not suppressed: nothing to lift */
        }
    }
    return st;
}

/* ---- erasure ---- */

typedef struct u64_list {
    uint64_t *v;
    size_t n, cap;
} u64_list;

static void u64_add(u64_list *l, uint64_t x)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = ps_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = x;
}

static bool u64_has(const u64_list *l, uint64_t x)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == x)
            return true;
    return false;
}

typedef struct ident_item {
    char *type, *value;
    size_t value_len;
    uint64_t profile;
} ident_item;

typedef struct erase_ctx {
    ps_txn *t;
    u64_list profiles; /* the canonical and every member */
    u64_list seqs;     /* their messages */
    u64_list peers;    /* linked profiles */
    ident_item *ids;   /* their identifiers */
    size_t nids, idcap;
    size_t audit_rows;
} erase_ctx;

static bool add_ident(void *ud, uint64_t profile, const char *type, const char *value,
                      size_t value_len, int64_t first_seen_ms)
{
    (void)first_seen_ms;
    erase_ctx *c = ud;
    if (c->nids == c->idcap) {
        c->idcap = c->idcap ? c->idcap * 2 : 16;
        c->ids = ps_xrealloc(c->ids, c->idcap * sizeof *c->ids);
    }
    c->ids[c->nids++] =
        (ident_item){ps_xstrdup(type), ps_xstrndup(value, value_len), value_len, profile};
    return true;
}

static bool add_event_seq(void *ud, uint64_t profile, int64_t ts_ms, uint64_t seq,
                          const ps_event_rec *e)
{
    (void)profile;
    (void)ts_ms;
    (void)e;
    u64_add(&((erase_ctx *)ud)->seqs, seq);
    return true;
}

static bool add_seq(void *ud, uint64_t seq)
{
    u64_add(&((erase_ctx *)ud)->seqs, seq);
    return true;
}

static bool add_peer(void *ud, uint64_t from, uint64_t to, int64_t created_ms)
{
    (void)from;
    (void)created_ms;
    u64_add(&((erase_ctx *)ud)->peers, to);
    return true;
}

/* An audit row names the subject: one of its profiles, or one of its identifier values. */
static bool audit_names_subject(void *ud, const ps_audit_rec *r)
{
    erase_ctx *c = ud;
    if ((r->profile && u64_has(&c->profiles, r->profile)) ||
        (r->canonical && u64_has(&c->profiles, r->canonical)))
        return true;
    for (size_t i = 0; i < c->nids; i++)
        if (r->value.len == c->ids[i].value_len &&
            memcmp(r->value.ptr, c->ids[i].value, r->value.len) == 0)
            return true;
    return false;
}

static void erase_clear(erase_ctx *c)
{
    free(c->profiles.v);
    free(c->seqs.v);
    free(c->peers.v);
    for (size_t i = 0; i < c->nids; i++) {
        free(c->ids[i].type);
        free(c->ids[i].value);
    }
    free(c->ids);
}

/* Erases the user profile that `user_id` resolves to, with every profile merged into it:
 * identifiers (free again afterwards), traits, events and their messages in the log, the
 * messages without events (the pmsg index), links on both sides, the profile records and
 * their segment_ids; audit rows keep what happened but lose the identifier values. One
 * PII-free audit row per erased profile records the erasure. *erased: profiles erased. */
static ps_status erase_subject(ps_txn *t, const char *user_id, int64_t now_ms, size_t *erased)
{
    uint64_t canonical;
    ps_status st = ps_graph_lookup(t, PS_USERS, "user_id", user_id, strlen(user_id), &canonical);
    if (st == PS_ENOTFOUND)
        return PS_OK; /* nothing held about them */
    if (st != PS_OK)
        return st;
    erase_ctx c = {.t = t};
    st = ps_profile_members(t, canonical, &c.profiles.v, &c.profiles.n);
    c.profiles.cap = c.profiles.n;
    if (st == PS_OK && !u64_has(&c.profiles, canonical))
        u64_add(&c.profiles, canonical);
    for (size_t i = 0; i < c.profiles.n && st == PS_OK; i++) {
        uint64_t m = c.profiles.v[i];
        if ((st = ps_store_pmap_scan(t, m, NULL, add_ident, &c)) == PS_OK &&
            (st = ps_store_pevent_scan_asc(t, m, 0, 0, add_event_seq, &c)) == PS_OK &&
            (st = ps_store_pmsg_scan(t, m, add_seq, &c)) == PS_OK)
            st = ps_store_link_scan(t, m, add_peer, &c);
    }
    ps_profile p = {0};
    if (st == PS_OK)
        st = ps_store_profile_get(t, canonical, &p);
    for (size_t i = 0; i < c.nids && st == PS_OK; i++) {
        st = ps_store_ident_del(t, p.collection, c.ids[i].type, c.ids[i].value, c.ids[i].value_len);
        if (st == PS_ENOTFOUND)
            st = PS_OK;
    }
    for (size_t i = 0; i < c.seqs.n && st == PS_OK; i++)
        if ((st = ps_store_event_del(t, c.seqs.v[i])) == PS_OK)
            st = ps_store_log_del(t, c.seqs.v[i]);
    for (size_t i = 0; i < c.profiles.n && st == PS_OK; i++) {
        uint64_t m = c.profiles.v[i];
        for (size_t k = 0; k < c.peers.n && st == PS_OK; k++)
            st = ps_store_link_del(t, c.peers.v[k], m);
        if (st == PS_OK)
            st = ps_store_link_del_all(t, m);
        if (st == PS_OK)
            st = ps_store_trait_del_all(t, m);
        if (st == PS_OK)
            st = ps_store_pevent_del_all(t, m);
        if (st == PS_OK)
            st = ps_store_pmsg_del_all(t, m);
        if (st == PS_OK)
            st = ps_store_pmap_del_all(t, m);
        if (st == PS_OK)
            st = ps_store_profile_del(t, m);
    }
    if (st == PS_OK)
        st = ps_store_member_del_all(t, canonical);
    if (st == PS_OK)
        st = ps_store_audit_scrub(t, audit_names_subject, &c, &c.audit_rows);
    for (size_t i = 0; i < c.nids && st == PS_OK; i++) {
        /* REMOVED mappings: not the value, but the key a warehouse deletes it by (the change
         * feed's external_id_hash, docs/changes.md) */
        ps_slice type = PS_SLICE_STR(c.ids[i].type);
        char key[5 + 41] = "sha1:";
        ps_auth_sha1_hex(type, (ps_slice){(const uint8_t *)c.ids[i].value, c.ids[i].value_len},
                         key + 5);
        ps_audit_rec a = {.kind = PS_AUDIT_UNMAP,
                          .value = {(const uint8_t *)key, 45},
                          .collection = p.collection,
                          .profile = c.ids[i].profile,
                          .canonical = canonical,
                          .timestamp_ms = now_ms,
                          .received_ms = now_ms,
                          .type = type};
        st = ps_store_audit_append(t, &a);
    }
    for (size_t i = 0; i < c.profiles.n && st == PS_OK; i++) {
        ps_audit_rec a = {.kind = PS_AUDIT_ERASED,
                          .collection = p.collection,
                          .profile = c.profiles.v[i],
                          .canonical = canonical,
                          .timestamp_ms = now_ms,
                          .received_ms = now_ms};
        st = ps_store_audit_append(t, &a);
    }
    if (st == PS_OK)
        *erased += c.profiles.n;
    erase_clear(&c);
    return st;
}

/* Carries out `rq` inside `t`: erasures first, then the suppression list. */
static ps_status execute(ps_txn *t, const ps_reg_request *rq, int64_t now_ms, size_t *erased)
{
    ps_status st = PS_OK;
    bool deletes = rq->type == PS_REG_DELETE || rq->type == PS_REG_SUPPRESS_WITH_DELETE;
    for (size_t i = 0; deletes && i < rq->count && st == PS_OK; i++)
        st = erase_subject(t, rq->subjects[i], now_ms, erased);
    if (st == PS_OK && rq->type != PS_REG_DELETE)
        st = suppress(t, rq, rq->type != PS_REG_UNSUPPRESS, now_ms);
    return st;
}

static ps_status put_record(ps_txn *t, uint64_t seq, const ps_reg_request *rq, const char *status,
                            int64_t created_ms, int64_t finished_ms)
{
    char id[PS_REG_ID_BUF], key[40];
    snprintf(id, sizeof id, "reg_%016llx", (unsigned long long)seq);
    reg_key(seq, key);
    ps_buf rec;
    ps_buf_init(&rec);
    reg_json(&rec, id, rq, status, created_ms, finished_ms);
    ps_status st = ps_store_meta_put(t, key, (ps_slice){rec.ptr, rec.len});
    ps_buf_clear(&rec);
    return st;
}

/* Carries out regulation number `seq` in `t` at `now_ms` and records it FINISHED. */
static ps_status run_one(ps_txn *t, uint64_t seq, const ps_reg_request *rq, int64_t created_ms,
                         int64_t now_ms, size_t *erased)
{
    ps_status st = execute(t, rq, now_ms, erased);
    return st == PS_OK ? put_record(t, seq, rq, "FINISHED", created_ms, now_ms) : st;
}

static void log_applied(const char *space, uint64_t seq, const ps_reg_request *rq, size_t erased)
{
    ps_log(PS_LOG_INFO,
           "msg=\"regulation applied\" space=%s id=reg_%016llx type=%s subjects=%zu "
           "profiles_erased=%zu",
           space, (unsigned long long)seq, ps_reg_type_name(rq->type), rq->count, erased);
}

/* A regulation waiting for the space's writer: meta "regpending/<16 hex seq>" ->
 * [type u8][created_ms u64][per subject: length u16, bytes]. It holds the userIds until the
 * regulation has run. */
#define PENDING_PREFIX "regpending/"

static void pending_encode(const ps_reg_request *rq, int64_t created_ms, ps_buf *out)
{
    uint8_t head[9];
    head[0] = (uint8_t)rq->type;
    ps_put_be64(head + 1, (uint64_t)created_ms);
    ps_buf_append(out, head, sizeof head);
    for (size_t i = 0; i < rq->count; i++) {
        size_t n = strlen(rq->subjects[i]);
        uint8_t len[2] = {(uint8_t)(n >> 8), (uint8_t)n};
        ps_buf_append(out, len, 2);
        ps_buf_append(out, rq->subjects[i], n);
    }
}

static ps_status pending_decode(ps_slice v, ps_reg_request *rq, int64_t *created_ms)
{
    memset(rq, 0, sizeof *rq);
    if (v.len < 9 || v.ptr[0] >= PS_REG__COUNT)
        return PS_ECORRUPT;
    rq->type = (ps_reg_type)v.ptr[0];
    *created_ms = (int64_t)ps_get_be64(v.ptr + 1);
    rq->subjects = ps_xcalloc(PS_REG_SUBJECTS_MAX, sizeof *rq->subjects);
    for (size_t off = 9; off < v.len;) {
        size_t n = off + 2 <= v.len ? (size_t)v.ptr[off] << 8 | v.ptr[off + 1] : SIZE_MAX;
        if (n == SIZE_MAX || off + 2 + n > v.len || rq->count == PS_REG_SUBJECTS_MAX) {
            ps_reg_request_clear(rq);
            return PS_ECORRUPT;
        }
        rq->subjects[rq->count++] = ps_xstrndup((const char *)v.ptr + off + 2, n);
        off += 2 + n;
    }
    return PS_OK;
}

typedef struct create_call {
    const ps_reg_request *rq;
    int64_t now_ms;
    uint64_t seq;
} create_call;

static ps_status create_step(ps_txn *t, void *ud)
{
    create_call *c = ud;
    ps_status st = ps_store_meta_get_u64(t, REG_NEXT_KEY, &c->seq);
    if (st == PS_ENOTFOUND) {
        c->seq = 1;
        st = PS_OK;
    }
    if (st == PS_OK)
        st = put_record(t, c->seq, c->rq, "INITIALIZED", c->now_ms, 0);
    char key[48];
    snprintf(key, sizeof key, PENDING_PREFIX "%016llx", (unsigned long long)c->seq);
    ps_buf pending;
    ps_buf_init(&pending);
    pending_encode(c->rq, c->now_ms, &pending);
    if (st == PS_OK)
        st = ps_store_meta_put(t, key, (ps_slice){pending.ptr, pending.len});
    ps_buf_clear(&pending);
    return st == PS_OK ? ps_store_meta_put_u64(t, REG_NEXT_KEY, c->seq + 1) : st;
}

ps_status ps_regulation_create(ps_space *sp, const ps_reg_request *rq, int64_t now_ms,
                               char id[PS_REG_ID_BUF], uint64_t *seq_out)
{
    create_call c = {.rq = rq, .now_ms = now_ms};
    /* damaged pages: an error, and nothing is written */
    ps_status st = ps_store_write_guarded(ps_space_store(sp), create_step, &c);
    snprintf(id, PS_REG_ID_BUF, "reg_%016llx", (unsigned long long)c.seq);
    *seq_out = c.seq;
    return st;
}

typedef struct first_key {
    char key[48];
    bool found;
} first_key;

static bool take_first(void *ud, ps_slice key, ps_slice value)
{
    (void)value;
    first_key *f = ud;
    if (key.len < sizeof f->key) {
        memcpy(f->key, key.ptr, key.len);
        f->key[key.len] = 0;
        f->found = true;
    }
    return false;
}

/* The first waiting regulation, run in `t`: guarded, so that a damaged page it meets fails
 * it rather than the process (ps_store_guarded). What it reads into outlives the step. */
typedef struct pending_run {
    ps_txn *t;
    uint64_t up_to;
    int64_t now_ms;
    first_key f;
    uint64_t seq;
    bool later;   /* the first one waits for its own turn in the stream */
    bool decoded; /* rq holds a request (cleared by the caller) */
    ps_reg_request rq;
    size_t erased;
} pending_run;

static ps_status pending_step(void *ud)
{
    pending_run *r = ud;
    ps_status st = ps_store_meta_scan(r->t, PENDING_PREFIX, take_first, &r->f);
    if (st != PS_OK || !r->f.found)
        return st;
    r->seq = strtoull(r->f.key + sizeof PENDING_PREFIX - 1, NULL, 16);
    if (r->seq > r->up_to) {
        r->later = true;
        return PS_OK;
    }
    ps_slice v;
    int64_t created_ms = 0;
    if ((st = ps_store_meta_get(r->t, r->f.key, &v)) != PS_OK ||
        (st = pending_decode(v, &r->rq, &created_ms)) != PS_OK)
        return st;
    r->decoded = true;
    st = run_one(r->t, r->seq, &r->rq, created_ms, r->now_ms, &r->erased);
    return st == PS_OK ? ps_store_meta_del(r->t, r->f.key) : st;
}

ps_status ps_regulation_run_pending(ps_space *sp, int64_t now_ms, uint64_t up_to, size_t *ran)
{
    *ran = 0;
    for (;;) { /* one transaction per regulation, oldest first */
        if (!ps_regulation_any_pending(sp))
            return PS_OK; /* a read: no waiting for another writer when there is nothing */
        pending_run r = {.up_to = up_to, .now_ms = now_ms};
        ps_status st = ps_txn_begin(ps_space_store(sp), true, &r.t);
        if (st != PS_OK)
            return st;
        st = ps_store_guarded(ps_space_store(sp), pending_step, &r);
        if (st == PS_OK && r.decoded)
            log_applied(ps_space_name(sp), r.seq, &r.rq, r.erased);
        if (r.decoded)
            ps_reg_request_clear(&r.rq);
        if (st == PS_OK && (!r.f.found || r.later)) {
            ps_txn_abort(r.t);
            return PS_OK;
        }
        if (st == PS_OK) {
            st = ps_txn_commit(r.t);
        } else if (!r.f.found) { /* the scan itself failed */
            ps_txn_abort(r.t);
            return st;
        } else { /* it cannot run: record that, so that it does not block the ones after it */
            ps_txn_abort(r.t); /* one a damaged page broke is dropped, not handed back */
            ps_log(PS_LOG_ERROR, "msg=\"regulation failed\" space=%s id=reg_%016llx error=%s",
                   ps_space_name(sp), (unsigned long long)r.seq, ps_status_str(st));
            if (st != PS_ECORRUPT)
                return st; /* storage trouble: the next run tries again */
            ps_txn *t;
            if ((st = ps_txn_begin(ps_space_store(sp), true, &t)) != PS_OK)
                return st; /* a store whose writes broke refuses this too */
            ps_reg_request none = {.type = PS_REG_DELETE};
            if ((st = ps_store_meta_del(t, r.f.key)) == PS_OK)
                st = put_record(t, r.seq, &none, "FAILED", now_ms, now_ms);
            if (st == PS_OK)
                st = ps_txn_commit(t);
            else
                ps_txn_abort(t);
            if (st != PS_OK)
                return st;
            continue;
        }
        if (st != PS_OK)
            return st;
        (*ran)++;
    }
}

void ps_regulation_encode(const ps_reg_request *rq, int64_t created_ms, ps_buf *out)
{
    pending_encode(rq, created_ms, out);
}

ps_status ps_regulation_run_at(ps_txn *t, const char *space, uint64_t seq, ps_slice record)
{
    ps_reg_request rq;
    int64_t created_ms = 0;
    size_t erased = 0;
    ps_status st = pending_decode(record, &rq, &created_ms);
    if (st != PS_OK)
        return PS_EINVAL;
    st = run_one(t, seq, &rq, created_ms, created_ms, &erased);
    uint64_t next = 1;
    if (st == PS_OK && (st = ps_store_meta_get_u64(t, REG_NEXT_KEY, &next)) == PS_ENOTFOUND)
        st = PS_OK;
    if (st == PS_OK && next <= seq) /* a local id never reuses a replicated one */
        st = ps_store_meta_put_u64(t, REG_NEXT_KEY, seq + 1);
    if (st == PS_OK)
        log_applied(space, seq, &rq, erased);
    ps_reg_request_clear(&rq);
    return st;
}

static ps_status first_pending(ps_txn *t, void *ud)
{
    return ps_store_meta_scan(t, PENDING_PREFIX, take_first, ud);
}

bool ps_regulation_any_pending(ps_space *sp)
{
    first_key f = {{0}, false};
    (void)ps_store_read_guarded(ps_space_store(sp), first_pending, &f, NULL);
    return f.found;
}

ps_status ps_regulation_apply(ps_space *sp, const ps_reg_request *rq, int64_t now_ms,
                              char id[PS_REG_ID_BUF])
{
    size_t ran;
    uint64_t seq;
    ps_status st = ps_regulation_create(sp, rq, now_ms, id, &seq);
    return st == PS_OK ? ps_regulation_run_pending(sp, now_ms, seq, &ran) : st;
}

/* "reg_" + 16 lowercase hex digits -> its sequence; 0 when it is not such an id. */
static uint64_t id_seq(const char *id)
{
    if (strncmp(id, "reg_", 4) != 0 || strlen(id) != 20)
        return 0;
    uint64_t seq = 0;
    for (const char *p = id + 4; *p; p++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (d < 0)
            return 0;
        seq = seq << 4 | (uint64_t)d;
    }
    return seq;
}

typedef struct get_call {
    uint64_t seq;
    ps_buf *out;
} get_call;

static ps_status get_step(ps_txn *t, void *ud)
{
    get_call *g = ud;
    char key[40];
    reg_key(g->seq, key);
    ps_slice v;
    ps_status st = ps_store_meta_get(t, key, &v);
    if (st == PS_OK)
        ps_buf_append(g->out, v.ptr, v.len);
    return st;
}

ps_status ps_regulation_get(ps_space *sp, const char *id, ps_buf *out)
{
    get_call g = {id_seq(id), out};
    if (g.seq == 0)
        return PS_ENOTFOUND;
    return ps_store_read_guarded(ps_space_store(sp), get_step, &g, NULL);
}

typedef struct seq_list {
    uint64_t *seqs;
    size_t count, cap;
} seq_list;

static bool collect_seq(void *ud, ps_slice key, ps_slice value)
{
    (void)value;
    seq_list *l = ud;
    size_t pl = sizeof REG_PREFIX - 1;
    if (key.len != pl + 16)
        return true; /* "regulation/next" */
    char id[PS_REG_ID_BUF];
    snprintf(id, sizeof id, "reg_%.16s", (const char *)key.ptr + pl);
    uint64_t seq = id_seq(id);
    if (seq == 0)
        return true;
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->seqs = ps_xrealloc(l->seqs, l->cap * sizeof *l->seqs);
    }
    l->seqs[l->count++] = seq;
    return true;
}

/* The newest `limit` regulations before `before` (0: from the newest), read guarded. What
 * it collects outlives the step. */
typedef struct list_call {
    uint64_t before;
    size_t limit;
    ps_buf *out;
    uint64_t *next;
    size_t *count;
    seq_list l;
} list_call;

static ps_status list_step(ps_txn *t, void *ud)
{
    list_call *c = ud;
    ps_status st = ps_store_meta_scan(t, REG_PREFIX, collect_seq, &c->l); /* ascending */
    for (size_t i = c->l.count; st == PS_OK && i-- > 0;) {
        if (c->before && c->l.seqs[i] >= c->before)
            continue;
        if (*c->count == c->limit) {
            *c->next = c->l.seqs[i] + 1; /* continue with this one */
            break;
        }
        char key[40];
        reg_key(c->l.seqs[i], key);
        ps_slice v;
        if ((st = ps_store_meta_get(t, key, &v)) != PS_OK)
            break;
        if ((*c->count)++)
            ps_buf_putc(c->out, ',');
        ps_buf_append(c->out, v.ptr, v.len);
    }
    return st;
}

ps_status ps_regulation_list(ps_space *sp, uint64_t before, size_t limit, ps_buf *out,
                             uint64_t *next, size_t *count)
{
    *next = 0;
    *count = 0;
    list_call c = {before, limit, out, next, count, {NULL, 0, 0}};
    ps_status st = ps_store_read_guarded(ps_space_store(sp), list_step, &c, NULL);
    free(c.l.seqs);
    return st;
}
