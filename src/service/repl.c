/* SPDX-License-Identifier: MIT */
/* repl: NATS JetStream behind a small interface (ps/repl.h, docs/replication.md). The only
 * file that includes nats.h.
 *
 * Publishing is asynchronous: a group of records goes out without waiting, and one wait
 * collects the acknowledgements (the ack handler counts them and keeps the highest sequence).
 * Reading uses an ordered consumer: an ephemeral push consumer without acknowledgements that
 * the library recreates when it misses a heartbeat; its caller checks the sequence of every
 * record as well, and opens a new one from where it stands on any gap. */
#include "ps/repl.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "ps/log.h"

#define MAX_SERVERS 16
#define DEFAULT_TIMEOUT_MS 5000
#define RECONNECT_WAIT_MS 250
#define KIND_HEADER "Ps-Kind"
#define NAME_MAX_LEN 96

#if defined(__SANITIZE_ADDRESS__)
/* The sanitizer build's leak check skips messages libnats allocates. Now and then (2 of 49
 * runs of test_replication's publishing test on a busy machine) a message the library read
 * from the server (natsMsg_create from natsConn_processMsg, on the connection's reading
 * thread; 177 bytes) is unfreed at exit. libnats has no frame pointers, so with the default
 * unwinder the report's stack ends at natsMsg_create and no narrower rule matches; the rule
 * also hides a leak of a message this file creates. PS_REPORT_NATS_LEAKS=1 turns it off
 * (docs/fuzzing.md). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return getenv("PS_REPORT_NATS_LEAKS") ? "" : "leak:natsMsg_create\n";
}
#endif

typedef struct ps_repl_pub ps_repl_pub;

struct ps_repl {
    natsConnection *nc;
    natsOptions *opts;
    int replicas;
    int timeout_ms;
    pthread_mutex_t lock; /* guards retired */
    ps_repl_pub *retired; /* closed publishers: an acknowledgement already on its way may
                           * still reach one, so they are freed with the connection */
};

/* The messages of the group in flight, by address: an acknowledgement counts only for a
 * message of the group waited for now. One that comes after its group's wait gave up (the
 * library may be delivering it already when the wait takes the pending list back) is not
 * counted for the next group. The message lives until its handler has run, so its address
 * is not reused meanwhile. Open addressing; TOMB marks a removed slot. */
typedef struct inflight {
    const void **slots;
    size_t cap, used; /* used counts removed slots too, until the next clear */
} inflight;

static const char tomb_mark;
#define TOMB ((const void *)&tomb_mark)

static size_t slot_of(const void *m, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)m;
    x ^= x >> 29;
    x *= 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 20) & (cap - 1);
}

static void inflight_add(inflight *f, const void *m)
{
    if ((f->used + 1) * 2 > f->cap) { /* grow, leaving the removed slots behind */
        inflight old = *f;
        f->cap = old.cap ? old.cap * 2 : 64;
        f->slots = ps_xcalloc(f->cap, sizeof *f->slots);
        f->used = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.slots[i] && old.slots[i] != TOMB)
                inflight_add(f, old.slots[i]);
        free(old.slots);
    }
    size_t i = slot_of(m, f->cap);
    while (f->slots[i] && f->slots[i] != TOMB)
        i = (i + 1) & (f->cap - 1);
    if (f->slots[i] == NULL)
        f->used++;
    f->slots[i] = m;
}

/* Removes `m`; false when it was not in flight (a late acknowledgement). */
static bool inflight_take(inflight *f, const void *m)
{
    if (f->cap == 0)
        return false;
    for (size_t i = slot_of(m, f->cap); f->slots[i]; i = (i + 1) & (f->cap - 1))
        if (f->slots[i] == m) {
            f->slots[i] = TOMB;
            return true;
        }
    return false;
}

static void inflight_clear(inflight *f)
{
    if (f->cap)
        memset(f->slots, 0, f->cap * sizeof *f->slots);
    f->used = 0;
}

struct ps_repl_pub {
    ps_repl_pub *next; /* on the retired list */
    ps_repl *r;
    jsCtx *js;
    char subject[NAME_MAX_LEN];
    pthread_mutex_t lock; /* the ack handler runs on the library's thread */
    inflight group;       /* sent, not yet answered */
    uint64_t sent, acked, failed, last_seq;
    bool ever_sent; /* the library keeps no pending list before the first send (asking for
                     * it then crashes) */
    char first_error[120];
};

struct ps_repl_sub {
    jsCtx *js;
    natsSubscription *sub;
};

static void names(const char *space, char *stream, char *subject)
{
    snprintf(stream, NAME_MAX_LEN, "PS_%s", space);
    snprintf(subject, NAME_MAX_LEN, "ps.%s", space);
}

/* A failed call of the library as our status (a missing stream is told apart where it
 * matters, by its JetStream error code). */
static ps_status from_nats(natsStatus s)
{
    switch (s) {
    case NATS_OK: return PS_OK;
    case NATS_NO_MEMORY: return PS_EFULL;
    case NATS_CONNECTION_CLOSED: return PS_ECLOSED;
    default: return PS_EIO;
    }
}

/* One server of the list: "[nats://]host:port", copied as "nats://host:port". */
static bool server_ok(const char *s, size_t len, char *out, size_t cap, char *why, size_t wl)
{
    const char *scheme = "nats://";
    if (len >= strlen(scheme) && strncmp(s, scheme, strlen(scheme)) == 0) {
        s += strlen(scheme);
        len -= strlen(scheme);
    } else if (memchr(s, '/', len) != NULL) {
        snprintf(why, wl, "'%.*s' is not a nats://HOST:PORT address", (int)len, s);
        return false;
    }
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ':')
            colon = s + i;
    if (colon == NULL || colon == s) {
        snprintf(why, wl, "'%.*s' lacks a host or a :PORT", (int)len, s);
        return false;
    }
    for (const char *c = s; c < colon; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != '[' && *c != ']' &&
            *c != ':') {
            snprintf(why, wl, "the host of '%.*s' has a character hosts do not have", (int)len, s);
            return false;
        }
    long port = 0;
    size_t digits = 0;
    for (const char *c = colon + 1; c < s + len; c++, digits++) {
        if (!isdigit((unsigned char)*c) || digits >= 5) {
            port = -1;
            break;
        }
        port = port * 10 + (*c - '0');
    }
    if (digits == 0 || port < 1 || port > 65535) {
        snprintf(why, wl, "the port of '%.*s' is not a number from 1 to 65535", (int)len, s);
        return false;
    }
    if ((size_t)snprintf(out, cap, "nats://%.*s", (int)len, s) >= cap) {
        snprintf(why, wl, "'%.*s' is too long", (int)len, s);
        return false;
    }
    return true;
}

/* With a callback, a first connection that fails goes on in the background instead of
 * blocking the caller until it succeeds. */
static void on_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    (void)closure;
    ps_log(PS_LOG_INFO, "msg=\"connected to NATS\"");
}

ps_status ps_repl_connect(const ps_repl_opts *o, ps_repl **out, char *why, size_t why_len)
{
    *out = NULL;
    char servers[MAX_SERVERS][160];
    const char *list[MAX_SERVERS];
    int n = 0;
    const char *p = o->urls ? o->urls : "";
    if (*p == 0) {
        snprintf(why, why_len, "no NATS server given");
        return PS_EINVAL;
    }
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (n == MAX_SERVERS) {
            snprintf(why, why_len, "more than %d NATS servers given", MAX_SERVERS);
            return PS_EINVAL;
        }
        if (!server_ok(p, len, servers[n], sizeof servers[n], why, why_len))
            return PS_EINVAL;
        list[n] = servers[n];
        n++;
        p += len + (end ? 1 : 0);
        if (end && *p == 0) {
            snprintf(why, why_len, "the server list ends with a comma");
            return PS_EINVAL;
        }
    }
    int replicas = o->replicas ? o->replicas : (n < 3 ? n : 3);
    if (replicas < 1 || replicas > PS_REPL_MAX_REPLICAS) {
        snprintf(why, why_len, "replicas must be from 1 to %d", PS_REPL_MAX_REPLICAS);
        return PS_EINVAL;
    }
    ps_repl *r = ps_xcalloc(1, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    r->replicas = replicas;
    r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    natsStatus s = natsOptions_Create(&r->opts);
    if (s == NATS_OK)
        s = natsOptions_SetServers(r->opts, list, n);
    if (s == NATS_OK)
        s = natsOptions_SetName(r->opts, "profiled");
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(r->opts, -1); /* for as long as the servers are away */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(r->opts, RECONNECT_WAIT_MS);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(r->opts, 2000);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(r->opts, true, on_connected, NULL);
    if (s == NATS_OK) {
        s = natsConnection_Connect(&r->nc, r->opts);
        if (s == NATS_NOT_YET_CONNECTED) /* it goes on trying in the background */
            s = NATS_OK;
    }
    if (s != NATS_OK) {
        snprintf(why, why_len, "cannot connect to NATS: %s", natsStatus_GetText(s));
        ps_repl_close(r);
        return PS_EIO;
    }
    *out = r;
    return PS_OK;
}

void ps_repl_close(ps_repl *r)
{
    if (r == NULL)
        return;
    if (r->nc) {
        natsConnection_Close(r->nc);
        natsConnection_Destroy(r->nc);
    }
    natsOptions_Destroy(r->opts);
    while (r->retired) { /* no acknowledgement reaches them now */
        ps_repl_pub *p = r->retired;
        r->retired = p->next;
        if (p->js)
            jsCtx_Destroy(p->js);
        pthread_mutex_destroy(&p->lock);
        free(p->group.slots);
        free(p);
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

bool ps_repl_connected(ps_repl *r)
{
    return r && r->nc && natsConnection_Status(r->nc) == NATS_CONN_STATUS_CONNECTED;
}

void ps_repl_shutdown(void)
{
    nats_CloseAndWait(2000);
}

static natsStatus js_open(ps_repl *r, jsOptions *jo, jsCtx **js)
{
    jo->Wait = r->timeout_ms;
    return natsConnection_JetStream(js, r->nc, jo);
}

/* What the stream of `space` is now, creating it when it is missing and `create` allows.
 * PS_ENOTFOUND when it is missing and may not be created. */
static ps_status stream_info(ps_repl *r, jsCtx *js, const char *space, bool create,
                             ps_repl_info *out)
{
    char stream[NAME_MAX_LEN], subject[NAME_MAX_LEN];
    names(space, stream, subject);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
    bool missing = s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr;
    if (s != NATS_OK && !missing)
        return PS_EIO;
    if (missing && !create)
        return PS_ENOTFOUND;
    if (missing) {
        jsStreamConfig cfg;
        jsStreamConfig_Init(&cfg);
        const char *subjects[1] = {subject};
        cfg.Name = stream;
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.Storage = js_FileStorage;
        cfg.Replicas = r->replicas;
        cfg.Duplicates = (int64_t)PS_REPL_DUP_WINDOW_S * 1000000000;
        jerr = 0;
        s = js_AddStream(&si, js, &cfg, NULL, &jerr);
        if (s == NATS_OK)
            ps_log(PS_LOG_INFO, "msg=\"stream created\" stream=%s replicas=%d", stream,
                   r->replicas);
        else if (jerr != JSStreamNameExistErr) { /* else another node made it first */
            ps_log(PS_LOG_WARN, "msg=\"cannot create stream\" stream=%s error=\"%s\" code=%d",
                   stream, natsStatus_GetText(s), (int)jerr);
            return PS_EIO;
        }
        jsStreamInfo_Destroy(si);
        si = NULL;
        if (js_GetStreamInfo(&si, js, stream, NULL, &jerr) != NATS_OK)
            return PS_EIO;
    }
    out->id = si->Created > 0 ? (uint64_t)si->Created : 1;
    out->last_seq = si->State.LastSeq;
    if (si->Config && si->Config->Replicas != r->replicas)
        ps_log(PS_LOG_WARN,
               "msg=\"the stream keeps another number of copies than this node asks for\" "
               "stream=%s replicas=%lld wanted=%d",
               stream, (long long)si->Config->Replicas, r->replicas);
    jsStreamInfo_Destroy(si);
    return PS_OK;
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    ps_repl_pub *p = closure;
    pthread_mutex_lock(&p->lock);
    bool ours = inflight_take(&p->group, msg); /* else its group's wait gave up already */
    if (ours && pa && pae == NULL) {
        p->acked++;
        if (pa->Sequence > p->last_seq)
            p->last_seq = pa->Sequence;
    } else if (ours) {
        p->failed++;
        if (p->first_error[0] == 0 && pae)
            snprintf(p->first_error, sizeof p->first_error, "%s (code %d)",
                     pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err), (int)pae->ErrCode);
    }
    pthread_mutex_unlock(&p->lock);
    natsMsg_Destroy(msg);
}

ps_status ps_repl_pub_open(ps_repl *r, const char *space, bool create, ps_repl_pub **out)
{
    *out = NULL;
    ps_repl_pub *p = ps_xcalloc(1, sizeof *p);
    p->r = r;
    char stream[NAME_MAX_LEN];
    names(space, stream, p->subject);
    pthread_mutex_init(&p->lock, NULL);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = p;
    jo.PublishAsync.MaxPending = 65536;
    ps_status st = from_nats(js_open(r, &jo, &p->js));
    ps_repl_info info;
    if (st == PS_OK)
        st = stream_info(r, p->js, space, create, &info);
    if (st != PS_OK) {
        ps_repl_pub_close(p);
        return st;
    }
    *out = p;
    return PS_OK;
}

ps_status ps_repl_pub_add(ps_repl_pub *p, ps_repl_kind kind, const char *msg_id, size_t id_len,
                          ps_slice data)
{
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, p->subject, NULL, (const char *)data.ptr, (int)data.len);
    char kind_s[4];
    snprintf(kind_s, sizeof kind_s, "%d", (int)kind);
    if (s == NATS_OK && kind != PS_REPL_MESSAGES)
        s = natsMsgHeader_Set(m, KIND_HEADER, kind_s);
    char id[PS_REPL_ID_MAX + 1];
    jsPubOptions po;
    jsPubOptions_Init(&po);
    if (msg_id && id_len > 0) {
        size_t n = id_len < PS_REPL_ID_MAX ? id_len : PS_REPL_ID_MAX;
        memcpy(id, msg_id, n);
        id[n] = 0;
        po.MsgId = id;
    }
    if (s == NATS_OK) {
        natsMsg *sending = m; /* in flight before its ack can come */
        pthread_mutex_lock(&p->lock);
        inflight_add(&p->group, sending);
        p->sent++;
        pthread_mutex_unlock(&p->lock);
        s = js_PublishMsgAsync(p->js, &m, &po);
        if (s == NATS_OK) {
            p->ever_sent = true;
        } else { /* still ours */
            pthread_mutex_lock(&p->lock);
            inflight_take(&p->group, sending);
            p->sent--;
            pthread_mutex_unlock(&p->lock);
        }
    }
    natsMsg_Destroy(m); /* NULL once the library took it */
    return from_nats(s);
}

ps_status ps_repl_pub_wait(ps_repl_pub *p, uint64_t *last_seq)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = p->r->timeout_ms;
    natsStatus s = p->ever_sent ? js_PublishAsyncComplete(p->js, &po) : NATS_OK;
    if (s != NATS_OK) { /* take back what is unanswered: those acks will not be counted */
        natsMsgList pending;
        if (js_PublishAsyncGetPendingList(&pending, p->js) == NATS_OK)
            natsMsgList_Destroy(&pending);
    }
    pthread_mutex_lock(&p->lock);
    bool ok = s == NATS_OK && p->failed == 0 && p->acked == p->sent;
    if (!ok)
        ps_log(PS_LOG_WARN,
               "msg=\"stream did not acknowledge\" subject=%s sent=%llu acked=%llu "
               "failed=%llu error=\"%s\"",
               p->subject, (unsigned long long)p->sent, (unsigned long long)p->acked,
               (unsigned long long)p->failed,
               p->first_error[0] ? p->first_error : natsStatus_GetText(s));
    *last_seq = p->last_seq;
    p->sent = p->acked = p->failed = p->last_seq = 0;
    p->first_error[0] = 0;
    inflight_clear(&p->group); /* what is still unanswered counts for nobody now */
    pthread_mutex_unlock(&p->lock);
    return ok ? PS_OK : PS_EIO;
}

void ps_repl_pub_close(ps_repl_pub *p)
{
    if (p == NULL)
        return;
    natsMsgList pending;
    if (p->js && p->ever_sent && js_PublishAsyncGetPendingList(&pending, p->js) == NATS_OK)
        natsMsgList_Destroy(&pending);
    pthread_mutex_lock(&p->r->lock);
    p->next = p->r->retired;
    p->r->retired = p;
    pthread_mutex_unlock(&p->r->lock);
}

ps_status ps_repl_sub_open(ps_repl *r, const char *space, uint64_t from, bool create,
                           ps_repl_info *info, ps_repl_sub **out, char *why, size_t why_len)
{
    *out = NULL;
    snprintf(why, why_len, "the stream's state could not be read");
    char stream[NAME_MAX_LEN], subject[NAME_MAX_LEN];
    names(space, stream, subject);
    ps_repl_sub *s = ps_xcalloc(1, sizeof *s);
    jsOptions jo;
    jsOptions_Init(&jo);
    natsStatus ns = js_open(r, &jo, &s->js);
    jsErrCode jerr = 0;
    ps_status st = ns == NATS_OK ? stream_info(r, s->js, space, create, info) : PS_EIO;
    if (st != PS_OK) { /* the cluster is not there yet, or the stream is missing */
        natsStatus last = NATS_OK;
        const char *text = nats_GetLastError(&last);
        if (st == PS_EIO && text)
            snprintf(why, why_len, "the stream's state could not be read: %s", text);
        ps_repl_sub_close(s);
        return st;
    }
    if (ns == NATS_OK) {
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = stream;
        so.Ordered = true;
        so.Config.DeliverPolicy = js_DeliverByStartSequence;
        so.Config.OptStartSeq = from ? from : 1;
        ns = js_SubscribeSync(&s->sub, s->js, subject, NULL, &so, &jerr);
    }
    if (ns == NATS_OK)
        ns = natsSubscription_SetPendingLimits(s->sub, -1, 256 << 20);
    if (ns != NATS_OK) {
        const char *text = nats_GetLastError(&ns);
        snprintf(why, why_len, "subscribing failed: %s (code %d)",
                 text ? text : natsStatus_GetText(ns), (int)jerr);
        ps_repl_sub_close(s);
        return (ns == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) ? PS_ENOTFOUND : PS_EIO;
    }
    *out = s;
    return PS_OK;
}

ps_status ps_repl_sub_next(ps_repl_sub *s, int timeout_ms, ps_repl_msg *m)
{
    memset(m, 0, sizeof *m);
    natsMsg *msg = NULL;
    natsStatus ns = natsSubscription_NextMsg(&msg, s->sub, timeout_ms);
    if (ns == NATS_TIMEOUT)
        return PS_ENOTFOUND;
    if (ns != NATS_OK)
        return PS_EIO;
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) { /* not a stream record */
        natsMsg_Destroy(msg);
        return PS_EIO;
    }
    m->seq = meta->Sequence.Stream;
    m->pending = meta->NumPending;
    jsMsgMetaData_Destroy(meta);
    const char *kind = NULL;
    m->kind = PS_REPL_MESSAGES;
    if (natsMsgHeader_Get(msg, KIND_HEADER, &kind) == NATS_OK && kind)
        m->kind = (ps_repl_kind)atoi(kind);
    m->data = (ps_slice){(const uint8_t *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg)};
    m->handle = msg;
    return PS_OK;
}

void ps_repl_msg_free(ps_repl_msg *m)
{
    natsMsg_Destroy(m->handle);
    m->handle = NULL;
}

void ps_repl_sub_close(ps_repl_sub *s)
{
    if (s == NULL)
        return;
    if (s->sub) {
        natsSubscription_Unsubscribe(s->sub); /* the ephemeral consumer goes too */
        natsSubscription_Destroy(s->sub);
    }
    jsCtx_Destroy(s->js);
    free(s);
}

ps_status ps_repl_stream(ps_repl *r, const char *space, ps_repl_info *info)
{
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    ps_status st =
        js_open(r, &jo, &js) == NATS_OK ? stream_info(r, js, space, false, info) : PS_EIO;
    jsCtx_Destroy(js);
    return st;
}
