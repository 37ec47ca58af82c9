/* SPDX-License-Identifier: MIT */
/* ingest: accept -> dedup -> resolve users (and accounts on group) -> traits, links, event ->
 * metadata, all in the batch's write transaction (docs/architecture.md, Data flow). */
#include "ps/ingest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/clock.h"
#include "ps/diff.h"
#include "ps/graph.h"
#include "ps/graphdb.h"
#include "ps/history.h"
#include "ps/log.h"
#include "ps/msglog.h"
#include "ps/records.h"
#include "ps/regulation.h"
#include "ps/text.h"

#define PURGE_PER_COMMIT 10000 /* bound on expiry work added to a commit of fewer messages */

struct ps_ingest {
    ps_space *space;
    ps_ingest_opts opts;
    ps_txn *txn;
    const ps_rules *rules;
    ps_arena arena;
    ps_ingest_stats committed, pending;
    size_t pending_messages;
    int64_t newest_received_ms;
    ps_buf ids;            /* scratch: promoted ids of one event */
    ps_buf line;           /* scratch: one encoded log value */
    uint64_t replay_seq;   /* rebuilding: the logged message being derived again, else 0 */
    uint64_t message_seq;  /* the message being accepted (new profiles are named after it) */
    ps_slice replay_value; /* recovering the journal: the log value of the message, else empty */
    bool from_stream;      /* applying a replicated stream record: suppressions apply too */
    bool replay_spans_set; /* replaying: where the logged message's context and properties lie */
    int8_t shared;         /* the open batch's store is open in another process: -1 unknown */
    ps_body_spans replay_spans;
    ps_buf replay_line; /* recovering the journal: its line */
    ps_status failure;  /* storage failure inside a callback */
};

ps_status ps_ingest_begin(ps_space *sp, const ps_ingest_opts *opts, ps_ingest **out)
{
    ps_ingest *in = ps_xcalloc(1, sizeof *in);
    in->space = sp;
    in->opts = *opts;
    if (in->opts.source_id == NULL)
        in->opts.source_id = "profilectl";
    ps_arena_init(&in->arena);
    ps_buf_init(&in->ids);
    ps_buf_init(&in->line);
    ps_buf_init(&in->replay_line);
    *out = in;
    return PS_OK;
}

/* Whether the event's userId (when it has one) is suppressed, as of `t`. */
static bool suppressed_user(ps_txn *t, const ps_event *ev)
{
    for (size_t i = 0; i < ev->id_count; i++)
        if (ev->ids[i].collection == PS_USERS && strcmp(ev->ids[i].type, "user_id") == 0)
            return ps_regulation_suppressed(t, ev->ids[i].value, ev->ids[i].value_len);
    return false;
}

static void stats_add(ps_ingest_stats *into, const ps_ingest_stats *from)
{
    const uint64_t *f = (const uint64_t *)from;
    uint64_t *t = (uint64_t *)into;
    for (size_t i = 0; i < sizeof *from / sizeof(uint64_t); i++)
        t[i] += f[i];
}

static void batch_abort(ps_ingest *in)
{
    ps_txn_abort(in->txn);
    in->txn = NULL;
    memset(&in->pending, 0, sizeof in->pending);
    in->pending_messages = 0;
}

static ps_status open_batch(ps_ingest *in)
{
    if (in->txn)
        return PS_OK;
    ps_status st = ps_txn_begin(ps_space_store(in->space), true, &in->txn);
    if (st != PS_OK)
        return st;
    in->shared = -1;
    if ((st = ps_space_rules(in->space, in->txn, &in->rules)) != PS_OK)
        batch_abort(in);
    return st;
}

/* What the resolution is told of the message (its identifiers are added by the caller). */
static ps_resolve_in resolve_in_of(const ps_event *ev, ps_collection coll, uint64_t message_seq)
{
    return (ps_resolve_in){
        .collection = coll,
        .event_type = (uint8_t)ev->type,
        .message_id = ev->message_id,
        .source_id = ev->source_id,
        .timestamp_ms = ev->timestamp_ms,
        .received_ms = ev->received_ms,
        .message_seq = message_seq,
    };
}

/* Resolves the event's ids of one collection. */
static ps_status resolve_collection(ps_ingest *in, const ps_event *ev, ps_collection coll,
                                    uint64_t *profile, bool *promoted_out, size_t *first)
{
    size_t begin = ev->id_count, count = 0;
    for (size_t i = 0; i < ev->id_count; i++)
        if (ev->ids[i].collection == coll) {
            if (begin == ev->id_count)
                begin = i;
            count++;
        }
    *profile = 0;
    *first = begin;
    if (count == 0)
        return PS_OK;
    /* ids of one collection are contiguous except for externalIds; gather them */
    ps_ident *ids = ps_arena_alloc(&in->arena, count * sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; i < ev->id_count; i++)
        if (ev->ids[i].collection == coll)
            ids[n++] = ev->ids[i];
    ps_resolve_in rin = resolve_in_of(ev, coll, in->message_seq);
    rin.ids = ids;
    rin.count = n;
    ps_resolve_out rout = {.promoted = promoted_out};
    ps_status st = ps_graph_resolve(in->txn, in->rules, &rin, &rout);
    if (st != PS_OK)
        return st;
    *profile = rout.profile;
    in->pending.profiles_created += rout.created;
    in->pending.merges += rout.merges;
    in->pending.mappings += rout.mappings;
    in->pending.violations += rout.violations;
    /* the promoted flags are in gathered order: callers rebuild from `ids` */
    if (coll == PS_USERS) {
        ps_buf_reset(&in->ids);
        for (size_t i = 0; i < n; i++)
            if (promoted_out[i]) {
                ps_buf_append(&in->ids, ids[i].type, strlen(ids[i].type) + 1);
                ps_buf_append(&in->ids, ids[i].value, ids[i].value_len + 1);
            }
    }
    return PS_OK;
}

/* Appends the log value of `ev` to `out`: its stamps and the message as it arrived. */
static void log_encode(ps_space *sp, const ps_event *ev, bool portable, ps_buf *out)
{
    ps_log_rec lr = {0,
                     (uint8_t)ev->type,
                     ev->received_ms,
                     ev->timestamp_ms,
                     PS_SLICE_STR(ev->message_id),
                     PS_SLICE_STR(ev->source_id),
                     ev->message};
    ps_store_log_encode(ps_space_store(sp), &lr, portable, out);
}

static ps_status write_traits(ps_ingest *in, const ps_event *ev, uint64_t profile, uint64_t msg_seq,
                              ps_collection coll)
{
    ps_slice source = PS_SLICE_STR(ev->source_id);
    for (size_t i = 0; i < ev->trait_count; i++) {
        const ps_trait *tr = &ev->traits[i];
        ps_trait_rec rec = {
            .write_seq = msg_seq,
            .updated_ms = ev->received_ms,
            .deleted = tr->is_null,
            .source_id = source,
            .json = {(const uint8_t *)tr->json, tr->json_len},
        };
        ps_status st = ps_store_trait_put(in->txn, profile, tr->key, strlen(tr->key), &rec);
        if (st != PS_OK)
            return st;
    }
    if (ev->trait_count == 0)
        return PS_OK;
    in->pending.traits_written += ev->trait_count;
    ps_audit_rec a = {
        .kind = PS_AUDIT_TRAITS,
        .event_type = (uint8_t)ev->type,
        .collection = (uint8_t)coll,
        .profile = profile,
        .canonical = profile,
        .timestamp_ms = ev->timestamp_ms,
        .received_ms = ev->received_ms,
        .message_id = PS_SLICE_STR(ev->message_id),
        .source_id = source,
        .count = (uint32_t)ev->trait_count,
        .message_seq = msg_seq,
    };
    return ps_store_audit_append(in->txn, &a);
}

/* Accepts one validated message: dedup, the log, then what is derived from it. `logged` is
 * its log value when it was encoded already (prepared payloads), else NULL. */
/* The message's place in the log: appended now under a new sequence number, or (a
 * rebuild) the one it has. */
static ps_status log_message(ps_ingest *in, const ps_event *ev, const ps_slice *logged,
                             uint64_t *seq)
{
    uint64_t msg_seq = in->replay_seq;
    if (msg_seq == 0) { /* the log first: everything below is derived from it */
        msg_seq = ps_txn_next(in->txn, PS_CTR_MESSAGE);
        if (logged == NULL && in->replay_value.ptr)
            logged = &in->replay_value; /* from the journal: stored as it was journaled */
        ps_slice value = logged ? *logged : (ps_slice){NULL, 0};
        if (logged == NULL) {
            ps_buf_reset(&in->line);
            log_encode(in->space, ev, false, &in->line);
            value = (ps_slice){in->line.ptr, in->line.len};
        }
        ps_status st = ps_store_log_put(in->txn, msg_seq, value);
        if (st != PS_OK)
            return st;
    }
    *seq = in->message_seq = msg_seq;
    return PS_OK;
}

/* A filter's note: logged (so that a rebuild derives it again) and a violation row for the
 * change feed; no dedup claim, since the message itself was not taken. */
static ps_status accept_note(ps_ingest *in, const ps_event *ev, const ps_slice *logged)
{
    uint64_t msg_seq;
    ps_status st = log_message(in, ev, logged, &msg_seq);
    if (st != PS_OK)
        return st;
    ps_resolve_in ri = resolve_in_of(ev, PS_USERS, msg_seq);
    ri.event_type = (uint8_t)ev->filtered_type; /* the row names the dropped message's type */
    ps_ident id = {"filter", ev->filter, (uint32_t)strlen(ev->filter), PS_USERS, 0, NULL, 0};
    in->pending.violations++;
    return ps_graph_violation(in->txn, &ri, PS_VIOL_FILTERED, &id, 0);
}

static ps_status accept_event(ps_ingest *in, const ps_event *ev, const ps_slice *logged)
{
    if (ev->type == PS_MSG_FILTERED)
        return accept_note(in, ev, logged);
    const ps_rules_options *opt = ps_rules_options_get(in->rules);
    ps_status st;
    if (opt->dedup_window_ms > 0) {
        bool duplicate;
        st = ps_store_dedup_claim(in->txn, ev->message_id, ev->received_ms, opt->dedup_window_ms,
                                  &duplicate);
        if (st != PS_OK)
            return st;
        if (duplicate) {
            in->pending.duplicates++;
            return PS_OK;
        }
    }
    in->pending.accepted++;
    in->pending_messages++;
    if (ev->received_ms > in->newest_received_ms)
        in->newest_received_ms = ev->received_ms;
    uint64_t msg_seq;
    if ((st = log_message(in, ev, logged, &msg_seq)) != PS_OK)
        return st;
    bool *promoted = ps_arena_alloc(&in->arena, (ev->id_count + 1) * sizeof(bool));
    uint64_t user = 0, account = 0;
    size_t first;
    if ((st = resolve_collection(in, ev, PS_USERS, &user, promoted, &first)) != PS_OK)
        return st;
    if (ev->type == PS_MSG_GROUP &&
        (st = resolve_collection(in, ev, PS_ACCOUNTS, &account, promoted, &first)) != PS_OK)
        return st;
    if (user == 0 && account == 0) {
        in->pending.unresolved++;
        return PS_OK;
    }
    if (user && account) { /* a group call links the user and the account both ways */
        if ((st = ps_store_link_put(in->txn, user, account, ev->received_ms)) != PS_OK ||
            (st = ps_store_link_put(in->txn, account, user, ev->received_ms)) != PS_OK)
            return st;
    }
    if (ev->type == PS_MSG_IDENTIFY && user)
        st = write_traits(in, ev, user, msg_seq, PS_USERS);
    else if (ev->type == PS_MSG_GROUP && account)
        st = write_traits(in, ev, account, msg_seq, PS_ACCOUNTS);
    if (st != PS_OK)
        return st;
    if (ev->body.len && user) {
        ps_event_rec rec = {
            .seq = msg_seq,
            .type = (uint8_t)ev->type,
            .profile = user,
            .timestamp_ms = ev->timestamp_ms,
            .name = ev->name ? PS_SLICE_STR(ev->name) : PS_SLICE_STR(""),
            .ids = {in->ids.ptr, in->ids.len},
            .has_spans = true, /* a replay read a line made from the log: its own spans */
            .spans = in->replay_spans_set ? in->replay_spans : ev->spans,
        };
        if ((st = ps_store_event_put(in->txn, &rec)) != PS_OK)
            return st;
        in->pending.events_stored++;
    } else { /* no event row points at the message: this index does, for erasure */
        if ((user && (st = ps_store_pmsg_put(in->txn, user, msg_seq)) != PS_OK) ||
            (account && (st = ps_store_pmsg_put(in->txn, account, msg_seq)) != PS_OK))
            return st;
    }
    return PS_OK;
}

static ps_status on_message(void *ud, const ps_event *ev, ps_drop why, size_t index)
{
    (void)index;
    ps_ingest *in = ud;
    in->pending.messages++;
    /* a new message (not one the log or the journal holds already) from a suppressed userId
     * is refused here too: payloads read without ps_ingest_prepare, or read again */
    if (ev && (why == PS_DROP_NONE || why == PS_DROP_FILTERED) && in->replay_seq == 0 &&
        (in->replay_value.ptr == NULL || in->from_stream) &&
        ps_regulation_any_suppressed(in->txn) && suppressed_user(in->txn, ev)) {
        ev = NULL; /* not even a filter's note */
        if (why == PS_DROP_NONE)
            why = PS_DROP_SUPPRESSED;
    }
    if (ev && ev->type == PS_MSG_FILTERED)
        why = PS_DROP_FILTERED; /* a filter's note, new or replayed: its message was dropped */
    if (why != PS_DROP_NONE)
        in->pending.dropped[why]++;
    if (ev == NULL)
        return PS_OK;
    ps_status st = accept_event(in, ev, NULL);
    if (st != PS_OK)
        in->failure = st;
    return st;
}

/* Runs the parse over `json` with the batch's rules, accepting every message that passes. */
static ps_status ingest_parse(ps_ingest *in, const uint8_t *json, size_t len, ps_accept_opts *ao,
                              ps_drop *why)
{
    ao->rules = in->rules;
    in->failure = PS_OK;
    ps_status st = ps_event_parse(json, len, ao, &in->arena, on_message, in, why);
    ps_arena_clear(&in->arena);
    if (in->failure != PS_OK)
        return in->failure;
    if (st != PS_OK) {
        in->pending.messages++;
        in->pending.dropped[*why]++;
    }
    return st;
}

/* A storage error leaves the transaction unusable: the whole open batch goes. */
static ps_status batch_failed(ps_ingest *in, ps_status st)
{
    ps_log(PS_LOG_ERROR, "msg=\"ingest batch aborted\" reason=\"%s\"", ps_status_str(st));
    batch_abort(in);
    return st;
}

/* ---- guarded steps ----
 * Each step that reads or writes the store runs under ps_store_guarded(): when LMDB meets a
 * page it finds broken, the batch is aborted (nothing of it is committed) and PS_ECORRUPT
 * returned, instead of LMDB stopping the process. The batch's transaction lives in `in`, so
 * a step cut short leaves it for batch_failed() to end. */

typedef struct step {
    ps_ingest *in;
    ps_status (*fn)(struct step *);
    const uint8_t *json;
    size_t len;
    uint64_t sequence;
    ps_drop *why;
    const ps_prepared *prepared;
    ps_slice value;
    void *arg; /* a step's own */
} step;

static ps_status step_run(void *ud)
{
    step *s = ud;
    return s->fn(s);
}

static ps_status guarded(step s)
{
    ps_status st = ps_store_guarded(ps_space_store(s.in->space), step_run, &s);
    if (st == PS_ECORRUPT && s.in->txn) /* cut short where it was */
        batch_failed(s.in, st);
    return st;
}

static ps_status payload_step(step *s)
{
    ps_ingest *in = s->in;
    const uint8_t *json = s->json;
    size_t len = s->len;
    uint64_t sequence = s->sequence;
    ps_drop *why = s->why;
    ps_status st = open_batch(in);
    if (st != PS_OK)
        return st;
    ps_accept_opts ao = {
        .now_ms = ps_clock_now_ms(),
        .keep_received_at = in->opts.keep_received_at,
        .source_id = in->opts.source_id,
        .forced_type = in->opts.forced_type,
        .sequence = sequence,
    };
    in->pending.payloads++;
    st = ingest_parse(in, json, len, &ao, why);
    if (in->failure != PS_OK)
        return batch_failed(in, st);
    return st;
}

ps_status ps_ingest_payload(ps_ingest *in, const uint8_t *json, size_t len, uint64_t sequence,
                            ps_drop *why)
{
    return guarded((step){
        .in = in, .fn = payload_step, .json = json, .len = len, .sequence = sequence, .why = why});
}

/* ---- prepared payloads ---- */

struct ps_prepared {
    uint8_t *json; /* from the heap, or (borrowed_json) a copy in `arena` */
    size_t len;
    bool json_in_arena;
    char source_id[PS_SOURCE_ID_MAX + 1];
    ps_accept_opts opts; /* as parsed; opts.rules tells under which rules */
    ps_arena arena;      /* the events' strings */
    ps_event *events;    /* `one`, or an array from the heap */
    ps_event one;
    size_t count, cap;
    size_t notes; /* of the events, filters' notes of dropped messages (PS_MSG_FILTERED) */
    ps_prepared_drop *drops;
    size_t ndrops, dcap;
    size_t dropped_total;
    uint64_t dropped_by[PS_DROP__COUNT]; /* every drop, listed or not, by reason */
    uint8_t *logs;                       /* the events' log values, back to back, in `arena` */
    size_t *log_end;                     /* where each event's value ends in `logs` */
    ps_txn *suppress_txn;                /* while parsing, when the space suppresses some userIds */
    const ps_filter_set *filters;        /* the space's filters the payload was checked with */
    uint32_t filter_hits[PS_FILTERS_MAX];
};

/* Room for `n` more events: most payloads hold one, which needs no allocation. */
static void events_reserve(ps_prepared *p, size_t n)
{
    if (p->count + n <= p->cap)
        return;
    if (p->cap == 0) {
        p->events = &p->one;
        p->cap = 1;
        if (p->count + n <= p->cap)
            return;
    }
    size_t cap = 2 * p->cap;
    while (cap < p->count + n)
        cap *= 2;
    if (p->events == &p->one) {
        p->events = ps_xmalloc(cap * sizeof *p->events);
        p->events[0] = p->one;
    } else {
        p->events = ps_xrealloc(p->events, cap * sizeof *p->events);
    }
    p->cap = cap;
}

static ps_status collect_message(void *ud, const ps_event *ev, ps_drop why, size_t index)
{
    ps_prepared *p = ud;
    if (ev && (why == PS_DROP_NONE || why == PS_DROP_FILTERED) && p->suppress_txn &&
        suppressed_user(p->suppress_txn, ev)) {
        ev = NULL; /* refused at the door: never logged, not even as a filter's note */
        if (why == PS_DROP_NONE)
            why = PS_DROP_SUPPRESSED;
    }
    if (ev && ev->type == PS_MSG_FILTERED)
        why = PS_DROP_FILTERED; /* a filter's note, new or replayed: its message was dropped */
    if (why != PS_DROP_NONE) {
        p->dropped_by[why]++;
        if (p->dropped_total++ < PS_PREPARED_DROPS_LISTED) {
            if (p->ndrops == p->dcap) {
                p->dcap = p->dcap ? 2 * p->dcap : 8;
                p->drops = ps_xrealloc(p->drops, p->dcap * sizeof *p->drops);
            }
            p->drops[p->ndrops++] = (ps_prepared_drop){
                (uint32_t)index, why, why == PS_DROP_FILTERED && ev ? ev->filter : NULL};
        } /* else counted, not listed: a reply lists a bounded number */
        if (ev == NULL)
            return PS_OK;
        p->notes++; /* a filter's note: logged, journaled and applied like a message */
    }
    events_reserve(p, 1);
    p->events[p->count++] = *ev; /* its pointers are into p->arena or p->json */
    return PS_OK;
}

typedef struct view_call {
    ps_space *sp;
    ps_prepare_view *v; /* outlives the step: its transaction is ended by the caller */
} view_call;

static ps_status view_open_step(void *ud)
{
    view_call *c = ud;
    ps_prepare_view *v = c->v;
    ps_status st = ps_txn_begin(ps_space_store(c->sp), false, &v->txn);
    if (st == PS_OK)
        st = ps_space_rules(c->sp, v->txn, &v->rules);
    if (st == PS_OK)
        st = ps_space_filters(c->sp, v->txn, &v->filters);
    if (st == PS_OK && ps_filters_count(v->filters) == 0)
        v->filters = NULL;
    if (st == PS_OK)
        v->suppressing = ps_regulation_any_suppressed(v->txn);
    return st;
}

ps_status ps_prepare_view_open(ps_space *sp, ps_prepare_view *v)
{
    /* guarded: a damaged page under the settings, filters or suppressions fails the request
     * (PS_ECORRUPT), not the server */
    *v = (ps_prepare_view){0};
    view_call c = {sp, v};
    ps_status st = ps_store_guarded(ps_space_store(sp), view_open_step, &c);
    if (st != PS_OK)
        ps_prepare_view_close(v);
    return st;
}

void ps_prepare_view_close(ps_prepare_view *v)
{
    ps_txn_abort(v->txn);
    *v = (ps_prepare_view){0};
}

/* Each encoding thread's buffer for log values, reused from payload to payload. */
#define LOG_SCRATCH_KEEP ((size_t)1 << 20)

static void *log_scratch_make(void)
{
    return ps_xcalloc(1, sizeof(ps_buf));
}

static void log_scratch_free(void *b)
{
    ps_buf_clear(b);
    free(b);
}

static ps_thread_slot log_scratch_slot = PS_THREAD_SLOT(log_scratch_make, log_scratch_free);

typedef struct parse_call {
    ps_prepared *p;
    ps_prepare_refusal *refusal;
} parse_call;

static ps_status parse_step(void *ud)
{
    parse_call *c = ud;
    return ps_event_parse(c->p->json, c->p->len, &c->p->opts, &c->p->arena, collect_message, c->p,
                          &c->refusal->why);
}

ps_status ps_ingest_prepare(ps_space *sp, const ps_prepare_opts *o, uint8_t *json, size_t len,
                            ps_prepared **out, ps_prepare_refusal *refusal)
{
    *out = NULL;
    *refusal = (ps_prepare_refusal){PS_DROP_NONE, 0};
    ps_prepare_view own = {0};
    ps_status st = o->view ? PS_OK : ps_prepare_view_open(sp, &own);
    const ps_prepare_view v = o->view ? *o->view : own; /* rules and filters outlive `own` */
    if (st == PS_OK && !o->unlimited &&
        !ps_space_rate_take(sp, v.rules, PS_RATE_INGEST, o->now_ms, &refusal->retry_ms))
        st = PS_ELIMIT;
    /* the read transaction stays open through the parse only when there is a list to check */
    if (st != PS_OK || !v.suppressing)
        ps_prepare_view_close(&own);
    if (st != PS_OK) {
        if (!o->borrowed_json)
            free(json);
        return st;
    }
    ps_prepared *p = ps_xcalloc(1, sizeof *p);
    p->len = len;
    size_t sl = o->source_id ? strnlen(o->source_id, PS_SOURCE_ID_MAX) : 0;
    memcpy(p->source_id, o->source_id ? o->source_id : "", sl);
    p->source_id[sl] = 0;
    p->opts = (ps_accept_opts){
        .rules = v.rules,
        .now_ms = o->now_ms,
        .source_id = p->source_id,
        .forced_type = o->forced_type,
        .sequence = o->sequence,
        .require_batch = o->require_batch,
        .keep_received_at = o->keep_received_at,
        .filters = v.filters,
        .filter_hits = p->filter_hits,
    };
    p->filters = v.filters;
    ps_arena_init(&p->arena);
    /* a batch's events take 1.3-1.8 times its body in the arena (each message's text is
     * rebuilt with the batch's context, and each event has its own records); a payload waits a
     * while for the writer, and its memory counts against the space's queue, so a chunk sized
     * from the body, then quarters of it, beat doubling chunks, whose newest is mostly empty.
     * A borrowed body is copied in too. */
    ps_arena_reserve(&p->arena, len + len / 2 + (o->borrowed_json ? len : 0));
    if (o->borrowed_json) {
        p->json = ps_arena_alloc(&p->arena, len);
        memcpy(p->json, json, len);
        p->json_in_arena = true;
    } else {
        p->json = json;
    }
    p->suppress_txn = v.suppressing ? v.txn : NULL;
    parse_call pc = {p, refusal}; /* guarded when it looks subjects up in the store */
    st = p->suppress_txn ? ps_store_guarded(ps_space_store(sp), parse_step, &pc) : parse_step(&pc);
    p->suppress_txn = NULL;
    ps_prepare_view_close(&own);
    if (p->dropped_by[PS_DROP_FILTERED])
        ps_space_filter_hits_add(sp, p->filters, p->filter_hits);
    if (st != PS_OK) {
        ps_prepared_free(p);
        return st;
    }
    /* the costly part of storing a message, done here rather than on the writer, and the
     * hashes its identifiers are looked up by */
    if (p->count) {
        /* encoded in the thread's scratch buffer, then kept in the arena at their size */
        ps_buf *enc = ps_thread_slot_get(&log_scratch_slot);
        ps_buf_reset(enc);
        p->log_end = ps_arena_alloc(&p->arena, p->count * sizeof *p->log_end);
        for (size_t i = 0; i < p->count; i++) {
            ps_event *ev = &p->events[i];
            for (size_t k = 0; k < ev->id_count; k++) {
                ps_ident *id = &ev->ids[k];
                if (id->flag == PS_IDENT_OK)
                    id->key_hash =
                        ps_store_ident_hash(id->collection, id->type, id->value, id->value_len);
            }
            log_encode(sp, ev, o->portable_log, enc);
            p->log_end[i] = enc->len;
        }
        p->logs = ps_arena_alloc(&p->arena, enc->len);
        memcpy(p->logs, enc->ptr, enc->len);
        if (enc->cap > LOG_SCRATCH_KEEP)
            ps_buf_clear(enc); /* one huge batch does not pin its size in every thread */
        if (p->events != &p->one && p->cap > p->count) {
            p->events = ps_xrealloc(p->events, p->count * sizeof *p->events);
            p->cap = p->count;
        }
    }
    *out = p;
    return PS_OK;
}

size_t ps_prepared_accepted(const ps_prepared *p)
{
    return p->count - p->notes;
}

size_t ps_prepared_logged(const ps_prepared *p)
{
    return p->count;
}

size_t ps_prepared_dropped_total(const ps_prepared *p)
{
    return p->dropped_total;
}

uint64_t ps_prepared_dropped_by(const ps_prepared *p, ps_drop why)
{
    return (unsigned)why < PS_DROP__COUNT ? p->dropped_by[why] : 0;
}

size_t ps_prepared_dropped(const ps_prepared *p, const ps_prepared_drop **list)
{
    *list = p->drops;
    return p->ndrops;
}

size_t ps_prepared_bytes(const ps_prepared *p)
{
    return sizeof *p + (p->json_in_arena ? 0 : p->len) + ps_arena_bytes(&p->arena) +
           p->dcap * sizeof *p->drops + (p->events != &p->one ? p->cap * sizeof *p->events : 0);
}

void ps_prepared_free(ps_prepared *p)
{
    if (p == NULL)
        return;
    if (p->events != &p->one)
        free(p->events);
    free(p->drops);
    if (!p->json_in_arena)
        free(p->json);
    ps_arena_clear(&p->arena); /* log_end, logs and a borrowed body's copy too */
    free(p);
}

void ps_prepared_prefetch(const ps_prepared *p, int stage)
{
    if (stage == 0) {
        for (size_t o = 0; o < sizeof *p; o += 64)
            __builtin_prefetch((const char *)p + o);
        return;
    }
    size_t n = p->count < 2 ? p->count : 2;
    for (size_t o = 0; o < n * sizeof *p->events; o += 64)
        __builtin_prefetch((const char *)p->events + o);
    __builtin_prefetch(p->log_end);
    for (size_t o = 0; p->logs && o < 512; o += 64) /* most log values are shorter */
        __builtin_prefetch(p->logs + o);
    ps_arena_prefetch(&p->arena, 512);
}

void ps_ingest_prefetch(ps_ingest *in, const ps_prepared *p, int stage)
{
    if (in->txn == NULL || p->opts.rules != in->rules)
        return;
    for (size_t i = 0; i < p->count && i < 2; i++) {
        const ps_event *ev = &p->events[i];
        for (size_t k = 0; k < ev->id_count && k < 8; k++) {
            const ps_ident *id = &ev->ids[k];
            if (id->flag == PS_IDENT_OK)
                ps_store_ident_prefetch(in->txn, id->collection, id->type, id->value, id->value_len,
                                        id->key_hash, stage);
        }
    }
}

static ps_status prepared_step(step *s)
{
    ps_ingest *in = s->in;
    const ps_prepared *p = s->prepared;
    ps_status st = open_batch(in);
    if (st != PS_OK)
        return st;
    in->pending.payloads++;
    if (p->opts.rules != in->rules) { /* settings changed in between: read it again */
        ps_accept_opts ao = p->opts;
        ps_drop why;
        st = ingest_parse(in, p->json, p->len, &ao, &why);
        if (in->failure != PS_OK)
            return batch_failed(in, st);
        return PS_OK; /* it was readable when prepared, and reading does not depend on rules */
    }
    in->pending.messages += p->dropped_total;
    for (size_t i = 0; i < PS_DROP__COUNT; i++)
        in->pending.dropped[i] += p->dropped_by[i];
    for (size_t i = 0; i < p->count; i++) {
        if (p->events[i].type != PS_MSG_FILTERED) /* a note's message is counted as dropped */
            in->pending.messages++;
        size_t from = i ? p->log_end[i - 1] : 0;
        ps_slice logged = {p->logs + from, p->log_end[i] - from};
        st = accept_event(in, &p->events[i], &logged);
        ps_arena_clear(&in->arena);
        if (st != PS_OK)
            return batch_failed(in, st);
    }
    return PS_OK;
}

ps_status ps_ingest_prepared(ps_ingest *in, const ps_prepared *p)
{
    return guarded((step){.in = in, .fn = prepared_step, .prepared = p});
}

void ps_prepared_stream_record(const ps_prepared *p, size_t *i, ps_buf *out,
                               char id[PS_STREAM_ID_BUF])
{
    static const uint8_t key[16] = {0}; /* a duplicate key, not a secret */
    size_t n = ps_prepared_logged(p), first = *i, start = out->len;
    uint64_t digest = 0;
    for (; *i < n; (*i)++) {
        ps_slice v = ps_prepared_log_value(p, *i);
        if (*i > first && out->len - start + 4 + v.len > PS_STREAM_RECORD_MAX)
            break;
        uint8_t len[4];
        ps_put_be32(len, (uint32_t)v.len);
        ps_buf_append(out, len, 4);
        ps_buf_append(out, v.ptr, v.len);
        ps_slice mid = ps_store_log_value_id(v);
        digest = digest * 31 + ps_siphash(key, mid.ptr, mid.len);
    }
    ps_slice mid = ps_store_log_value_id(ps_prepared_log_value(p, first));
    if (*i - first == 1 && mid.len < PS_STREAM_ID_BUF)
        snprintf(id, PS_STREAM_ID_BUF, "%.*s", (int)mid.len, (const char *)mid.ptr);
    else
        snprintf(id, PS_STREAM_ID_BUF, "batch-%zu-%016llx", *i - first, (unsigned long long)digest);
}

ps_status ps_ingest_stream_messages(ps_ingest *in, ps_slice record, size_t *count)
{
    *count = 0;
    /* a stream record may come from a node that had not applied a suppression yet: the
     * suppression holds from its place in the stream on, on every node alike */
    in->from_stream = true;
    ps_status st = PS_OK;
    for (size_t off = 0; off < record.len && st == PS_OK;) {
        size_t len = off + 4 <= record.len ? ps_get_be32(record.ptr + off) : SIZE_MAX;
        if (len == SIZE_MAX || len > record.len - off - 4) {
            ps_log(PS_LOG_ERROR, "msg=\"stream record does not split into messages\" bytes=%zu",
                   record.len);
            ps_ingest_unreadable(in, PS_DROP_INVALID_JSON);
            break;
        }
        st = ps_ingest_logged(in, (ps_slice){record.ptr + off + 4, len});
        if (st == PS_OK)
            (*count)++;
        off += 4 + len;
    }
    in->from_stream = false;
    return st;
}

ps_slice ps_prepared_log_value(const ps_prepared *p, size_t i)
{
    size_t from = i ? p->log_end[i - 1] : 0;
    return (ps_slice){p->logs + from, p->log_end[i] - from};
}

void ps_ingest_unreadable(ps_ingest *in, ps_drop why)
{
    in->pending.payloads++;
    in->pending.messages++;
    in->pending.dropped[why]++;
}

size_t ps_ingest_pending(const ps_ingest *in)
{
    return in->pending_messages;
}

size_t ps_ingest_batch_size(ps_ingest *in)
{
    if (in->txn && in->shared < 0) /* asked once a batch: it reads LMDB's reader table */
        in->shared = ps_store_other_processes(ps_space_store(in->space)) > 0;
    if (in->shared > 0)
        return PS_INGEST_BATCH_MIN;
    uint64_t quarter = in->message_seq / 4;
    return quarter < PS_INGEST_BATCH_MIN   ? PS_INGEST_BATCH_MIN
           : quarter > PS_INGEST_BATCH_MAX ? PS_INGEST_BATCH_MAX
                                           : (size_t)quarter;
}

bool ps_ingest_batch_full(ps_ingest *in, size_t batch, uint64_t left)
{
    size_t size = batch ? batch : ps_ingest_batch_size(in);
    if (in->pending_messages < size)
        return false;
    bool fold = batch == 0 && in->shared == 0 && left > 0 && left < size &&
                in->pending_messages + left <= PS_INGEST_BATCH_MAX;
    return !fold;
}

bool ps_ingest_dict_due(const ps_ingest *in)
{
    return in->pending_messages >= PS_LOG_DICT_AFTER &&
           !ps_store_log_dict_ready(ps_space_store(in->space));
}

/* The dedup index expires; the log (and the events read from it) is kept, unless the settings
 * give it a retention: then messages received that long before the newest one go. Both are
 * measured in receivedAt, so a replay trims as the original did. */
static ps_status housekeeping(ps_ingest *in)
{
    const ps_rules_options *opt = ps_rules_options_get(in->rules);
    /* as many as the batch brought, at least: a large batch removes as fast as it adds */
    size_t most = in->pending_messages > PURGE_PER_COMMIT ? in->pending_messages : PURGE_PER_COMMIT;
    size_t n;
    ps_status st = PS_OK;
    if (opt->dedup_window_ms > 0)
        st =
            ps_store_dedup_expire(in->txn, in->newest_received_ms - opt->dedup_window_ms, most, &n);
    if (st == PS_OK && opt->log_retention_ms > 0 && in->replay_seq == 0)
        st = ps_store_log_trim(in->txn, in->newest_received_ms - opt->log_retention_ms, most, &n);
    return st;
}

static ps_status commit_step(step *s)
{
    ps_ingest *in = s->in;
    ps_status st = housekeeping(in);
    if (st != PS_OK) {
        batch_abort(in);
        return st;
    }
    st = ps_txn_commit(in->txn);
    in->txn = NULL;
    if (st == PS_OK)
        stats_add(&in->committed, &in->pending);
    memset(&in->pending, 0, sizeof in->pending);
    in->pending_messages = 0;
    return st;
}

ps_status ps_ingest_commit(ps_ingest *in)
{
    if (in->txn == NULL)
        return PS_OK;
    return guarded((step){.in = in, .fn = commit_step});
}

void ps_ingest_end(ps_ingest *in)
{
    if (in == NULL)
        return;
    if (in->txn)
        batch_abort(in);
    ps_arena_clear(&in->arena);
    ps_buf_clear(&in->ids);
    ps_buf_clear(&in->line);
    ps_buf_clear(&in->replay_line);
    free(in);
}

const ps_ingest_stats *ps_ingest_stats_get(const ps_ingest *in)
{
    return &in->committed;
}

/* ---- rebuild ---- */

typedef struct replay_ctx {
    ps_ingest *in;
    ps_status st;
} replay_ctx;

/* Runs a logged message through the same parse and accept path as at first: its line (the
 * stamps and the message) under the message's own stamps. How it is stored is the caller's:
 * under its own sequence number (in->replay_seq, a rebuild) or as a new message with the
 * journaled bytes (in->replay_value). A message the current rules cannot read derives
 * nothing. Returns a storage failure, or (*unreadable set) why the record has no line. */
static ps_status accept_logged(ps_ingest *in, const ps_log_rec *r, bool *unreadable)
{
    ps_status st = ps_history_line(r, &in->replay_line);
    *unreadable = st != PS_OK;
    if (st != PS_OK)
        return st;
    ps_accept_opts ao = {
        .now_ms = r->received_ms, .keep_received_at = true, .source_id = "", .sequence = r->seq};
    ps_drop why;
    in->pending.payloads++;
    in->replay_spans_set = ps_event_body_spans(r->json, &in->replay_spans);
    (void)ingest_parse(in, in->replay_line.ptr, in->replay_line.len, &ao, &why);
    in->replay_spans_set = false;
    ps_buf_reset(&in->replay_line);
    return in->failure;
}

/* Derives one logged message again, under its own sequence number. */
static bool replay_one(void *ud, const ps_log_rec *r)
{
    replay_ctx *c = ud;
    bool unreadable;
    c->in->replay_seq = r->seq;
    c->st = accept_logged(c->in, r, &unreadable);
    c->in->replay_seq = 0;
    return c->st == PS_OK;
}

/* ---- the journal ---- */

#define JOURNAL_APPLIED_KEY "journal/applied"
#define STREAM_APPLIED_KEY "stream/applied"
#define STREAM_ID_KEY "stream/id"

static ps_status mark_get(ps_space *sp, const char *key, uint64_t *pos)
{
    *pos = 0;
    ps_txn *t;
    ps_status st = ps_txn_begin(ps_space_store(sp), false, &t);
    if (st != PS_OK)
        return st;
    st = ps_store_meta_get_u64(t, key, pos);
    ps_txn_abort(t);
    return st;
}

static ps_status mark_put(ps_ingest *in, const char *key, uint64_t pos)
{
    ps_status st = open_batch(in);
    if (st == PS_OK && (st = ps_store_meta_put_u64(in->txn, key, pos)) != PS_OK)
        return batch_failed(in, st);
    return st;
}

ps_status ps_ingest_journal_applied(ps_space *sp, uint64_t *pos)
{
    ps_status st = mark_get(sp, JOURNAL_APPLIED_KEY, pos);
    return st == PS_ENOTFOUND ? PS_OK : st;
}

ps_status ps_ingest_journal_mark(ps_ingest *in, uint64_t pos)
{
    return mark_put(in, JOURNAL_APPLIED_KEY, pos);
}

ps_status ps_ingest_stream_applied(ps_space *sp, uint64_t *seq)
{
    return mark_get(sp, STREAM_APPLIED_KEY, seq);
}

ps_status ps_ingest_stream_mark(ps_ingest *in, uint64_t seq)
{
    return mark_put(in, STREAM_APPLIED_KEY, seq);
}

ps_status ps_ingest_stream_id(ps_space *sp, uint64_t *id)
{
    return mark_get(sp, STREAM_ID_KEY, id);
}

ps_status ps_ingest_stream_bind(ps_ingest *in, uint64_t id)
{
    return mark_put(in, STREAM_ID_KEY, id);
}

ps_status ps_ingest_settings(ps_ingest *in, const char *json, size_t len, ps_diags *diags)
{
    PS_ASSERT(in->pending_messages == 0);
    ps_status st = open_batch(in);
    if (st == PS_OK && (st = ps_space_settings_put(in->txn, json, len, diags)) != PS_OK &&
        st != PS_EINVAL)
        return batch_failed(in, st);
    return st;
}

ps_status ps_ingest_regulation(ps_ingest *in, uint64_t seq, ps_slice record)
{
    PS_ASSERT(in->pending_messages == 0);
    ps_status st = open_batch(in);
    if (st == PS_OK &&
        (st = ps_regulation_run_at(in->txn, ps_space_name(in->space), seq, record)) != PS_OK &&
        st != PS_EINVAL)
        return batch_failed(in, st);
    return st;
}

static ps_status logged_step(step *s)
{
    ps_ingest *in = s->in;
    ps_slice value = s->value;
    ps_status st = open_batch(in);
    if (st != PS_OK)
        return st;
    ps_log_rec r;
    bool unreadable = ps_store_log_decode(in->txn, value, &r) != PS_OK;
    if (!unreadable) {
        in->replay_value = value;
        st = accept_logged(in, &r, &unreadable);
        in->replay_value = (ps_slice){NULL, 0};
    }
    if (unreadable) { /* checksummed, yet unreadable: keep going without it */
        ps_log(PS_LOG_ERROR, "msg=\"journal record does not decode\" bytes=%zu", value.len);
        ps_ingest_unreadable(in, PS_DROP_INVALID_JSON);
        return PS_OK;
    }
    return st != PS_OK ? batch_failed(in, st) : PS_OK;
}

ps_status ps_ingest_logged(ps_ingest *in, ps_slice value)
{
    return guarded((step){.in = in, .fn = logged_step, .value = value});
}

typedef struct rebuild_run {
    const ps_rebuild_opts *o;
    ps_snapshot *before, *after; /* with o->diff */
} rebuild_run;

/* Clears the derived tables and replays the log into them, in the batch's transaction. */
static ps_status rebuild_step(step *s)
{
    ps_ingest *in = s->in;
    rebuild_run *run = s->arg;
    const ps_rebuild_opts *o = run->o;
    ps_status st = open_batch(in);
    uint64_t count = 0;
    bool incomplete = false;
    if (st == PS_OK)
        st = ps_store_log_info(in->txn, &count, &incomplete);
    if (st == PS_OK && incomplete && !o->force)
        st = PS_ECONFLICT;
    if (st == PS_OK && o->diff)
        st = ps_snapshot_take(in->txn, &run->before);
    if (st == PS_OK && o->settings &&
        (st = ps_store_meta_put(in->txn, "settings",
                                (ps_slice){(const uint8_t *)o->settings, o->settings_len})) ==
            PS_OK)
        st = ps_space_rules(in->space, in->txn, &in->rules); /* the replay runs under them */
    if (st == PS_OK)
        st = ps_store_clear_derived(in->txn);
    replay_ctx c = {in, PS_OK};
    if (st == PS_OK)
        st = ps_store_log_scan(in->txn, 1, true, replay_one, &c);
    if (st == PS_OK)
        st = c.st;
    if (st == PS_OK && o->diff)
        st = ps_snapshot_take(in->txn, &run->after);
    if (st == PS_OK && o->diff) {
        ps_diff_counts dc;
        ps_snapshot_diff(run->before, run->after, o->diff_first, o->diff, &dc);
    }
    return st;
}

ps_status ps_ingest_rebuild(ps_space *sp, const ps_rebuild_opts *o, ps_ingest_stats *stats,
                            ps_diags *diags)
{
    memset(stats, 0, sizeof *stats);
    if (o->settings) { /* the whole file is checked before anything is touched */
        ps_rules *r;
        ps_status st = ps_rules_parse(o->settings, o->settings_len, &r, diags);
        if (st != PS_OK)
            return st;
        ps_rules_free(r);
    }
    ps_ingest *in;
    ps_ingest_opts opts = {.keep_received_at = true};
    ps_status st = ps_ingest_begin(sp, &opts, &in);
    rebuild_run run = {o, NULL, NULL};
    if (st == PS_OK) /* guarded: a page that would stop LMDB fails the rebuild, unchanged */
        st = guarded((step){.in = in, .fn = rebuild_step, .arg = &run});
    ps_snapshot_free(run.before);
    ps_snapshot_free(run.after);
    if (st == PS_OK && o->dry_run) {
        stats_add(&in->committed, &in->pending); /* what the rebuild would have done */
        *stats = in->committed;
        batch_abort(in); /* nothing changes */
    } else if (st == PS_OK) {
        st = ps_ingest_commit(in); /* readers see the old state until this returns */
        if (st == PS_OK)
            *stats = in->committed;
    }
    ps_ingest_end(in);
    return st;
}
