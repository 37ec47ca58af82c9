/* SPDX-License-Identifier: MIT */
/* fuzz_event: ps_event_parse under the default rules, with the accept options taken from the
 * first input byte, then the raw scanners (ps_event_write_key, ps_event_body_members) on the
 * same bytes. Checks what every accepted message promises the layers above it, and that the
 * same payload parsed twice gives the same messages. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ps/event.h"
#include "ps/filters.h"
#include "ps/json.h"
#include "ps/text.h"

#define NOW_MS 1700000000000LL
#define SOURCE_ID "fuzz-source"

/* Option byte: bits 0-2 forced type (0 and 7: none), bit 3 require_batch, bit 4
 * keep_received_at, bit 5 a source_id, bits 6-7 stop the parse at that callback (0: never). */
typedef struct run {
    ps_accept_opts opts;
    unsigned stop_at;
    size_t calls;
    uint64_t digest;
} run;

static const ps_rules *default_rules(void)
{
    static ps_rules *rules;
    if (rules == NULL)
        rules = ps_rules_default();
    return rules;
}

static bool utf8(const char *s, size_t len)
{
    return ps_utf8_valid((const uint8_t *)s, len, NULL);
}

static bool has_nul(const void *p, size_t len)
{
    return len > 0 && memchr(p, 0, len) != NULL;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Folds `len` bytes and a separator into the run's digest. */
static void mix(run *r, const void *p, size_t len)
{
    static const uint8_t key[16] = "fuzz-event-hash";
    uint64_t parts[2] = {r->digest, ps_siphash(key, p, len)};
    r->digest = ps_siphash(key, parts, sizeof parts);
}

static void mix_str(run *r, const char *s)
{
    mix(r, s ? s : "(null)", s ? strlen(s) + 1 : 7);
}

/* ps_event_body_members as the Profile API calls it, behind a prefix that makes a whole
 * object. The output never holds a NUL the body did not hold. */
static void check_members(ps_slice body, bool body_nul_free)
{
    static const char *const keys[] = {"context", "properties", "traits"};
    static const char head[] = "{\"x\":0,\"context\":";
    ps_buf out;
    ps_buf_init(&out);
    ps_buf_puts(&out, "{\"x\":0");
    ps_event_body_members(body, keys, 3, &out);
    ps_buf_putc(&out, '}');
    FUZZ_CHECK(out.len > sizeof head - 1 && memcmp(out.ptr, head, sizeof head - 1) == 0);
    FUZZ_CHECK(out.ptr[out.len] == 0);
    FUZZ_CHECK(out.ptr[out.len - 1] == '}');
    if (body_nul_free)
        FUZZ_CHECK(!has_nul(out.ptr, out.len));
    ps_buf_clear(&out);
}

static void check_ident(const ps_event *ev, size_t i)
{
    const ps_ident *id = &ev->ids[i];
    FUZZ_CHECK(id->type != NULL && id->value != NULL);
    FUZZ_CHECK(ps_rules_type_name_valid(id->type, strlen(id->type)));
    FUZZ_CHECK(id->value_len == strlen(id->value)); /* no NUL inside an identifier */
    FUZZ_CHECK(id->value_len > 0 && id->value_len <= PS_VALUE_MAX);
    FUZZ_CHECK(!is_blank(id->value[0]));
    /* also for a value over PS_VALUE_MAX, kept cut for its violation record */
    FUZZ_CHECK(!is_blank(id->value[id->value_len - 1]));
    FUZZ_CHECK(utf8(id->value, id->value_len));
    FUZZ_CHECK(id->collection == PS_USERS || id->collection == PS_ACCOUNTS);
    FUZZ_CHECK(id->collection == PS_USERS || ev->type == PS_MSG_GROUP);
    FUZZ_CHECK(id->flag <= PS_IDENT_BAD_ENCODING);
    const ps_type_rule *rule = ps_rules_type(default_rules(), id->type);
    FUZZ_CHECK(rule->enabled);
    if (id->flag == PS_IDENT_OK)
        FUZZ_CHECK(!ps_rules_blocked(default_rules(), id->type, id->value));
    if (rule->lowercase)
        for (size_t k = 0; k < id->value_len; k++)
            FUZZ_CHECK(id->value[k] < 'A' || id->value[k] > 'Z');
    for (size_t k = 0; k < i; k++) /* (collection, type, value) is unique in one event */
        FUZZ_CHECK(ev->ids[k].collection != id->collection ||
                   strcmp(ev->ids[k].type, id->type) != 0 ||
                   strcmp(ev->ids[k].value, id->value) != 0);
}

static void check_trait(const ps_trait *t)
{
    FUZZ_CHECK(t->key != NULL && t->json != NULL);
    size_t klen = strlen(t->key);
    FUZZ_CHECK(klen > 0 && klen <= PS_TRAIT_KEY_MAX);
    FUZZ_CHECK(utf8(t->key, klen));
    FUZZ_CHECK(t->json_len > 0 && t->json_len == strlen(t->json));
    FUZZ_CHECK(utf8(t->json, t->json_len));
    FUZZ_CHECK(!t->is_null || strcmp(t->json, "null") == 0);
}

static void check_event(run *r, const ps_event *ev)
{
    const ps_accept_opts *o = &r->opts;
    /* a filter's note only as a replay reads it back (no filters here) */
    FUZZ_CHECK(ev->type > PS_MSG_NONE &&
               (ev->type <= PS_MSG_ALIAS || (ev->type == PS_MSG_FILTERED && o->keep_received_at)));
    if (ev->type == PS_MSG_FILTERED) {
        FUZZ_CHECK(ev->filter != NULL && ps_filter_name_valid(ev->filter));
        FUZZ_CHECK(ev->filtered_type > PS_MSG_NONE && ev->filtered_type <= PS_MSG_ALIAS);
        FUZZ_CHECK(ev->id_count == 0 && ev->trait_count == 0);
    }
    FUZZ_CHECK(o->forced_type == PS_MSG_NONE || ev->type == o->forced_type);

    FUZZ_CHECK(ev->message_id != NULL);
    size_t mlen = strlen(ev->message_id), cps = 0;
    FUZZ_CHECK(mlen > 0);
    FUZZ_CHECK(ps_utf8_valid((const uint8_t *)ev->message_id, mlen, &cps));
    FUZZ_CHECK(cps <= PS_MESSAGE_ID_MAX);

    FUZZ_CHECK(ev->source_id != NULL && utf8(ev->source_id, strlen(ev->source_id)));
    if (!o->keep_received_at)
        FUZZ_CHECK(strcmp(ev->source_id, o->source_id ? o->source_id : "") == 0);
    else
        FUZZ_CHECK(strlen(ev->source_id) <= PS_SOURCE_ID_MAX);

    FUZZ_CHECK(ev->timestamp_ms >= 0 && ev->received_ms >= 0);
    /* a batch item's text is built (the envelope merged in) and never read strictly again:
     * it must be what the strict reader passes */
    FUZZ_CHECK(ps_json_check(ev->message.ptr, ev->message.len, PS_JSON_ALLOW_NUL, NULL));
    if (!o->keep_received_at)
        FUZZ_CHECK(ev->received_ms == NOW_MS);

    if (ev->body.len) { /* the spans point where a read of the body through finds them */
        const ps_body_spans *sp = &ev->spans;
        FUZZ_CHECK((uint64_t)sp->context_at + sp->context_len <= ev->message.len);
        FUZZ_CHECK((uint64_t)sp->properties_at + sp->properties_len <= ev->message.len);
        static const char *const keys[] = {"context", "properties"};
        ps_buf want, have;
        ps_buf_init(&want);
        ps_buf_init(&have);
        ps_event_body_members(ev->message, keys, 2, &want);
        ps_buf_puts(&have, ",\"context\":");
        if (sp->context_len)
            ps_buf_append(&have, ev->message.ptr + sp->context_at, sp->context_len);
        else
            ps_buf_puts(&have, "null");
        ps_buf_puts(&have, ",\"properties\":");
        if (sp->properties_len)
            ps_buf_append(&have, ev->message.ptr + sp->properties_at, sp->properties_len);
        else
            ps_buf_puts(&have, "null");
        FUZZ_CHECK(have.len == want.len && memcmp(have.ptr, want.ptr, want.len) == 0);
        ps_buf_clear(&want);
        ps_buf_clear(&have);
    }
    if (ev->type == PS_MSG_TRACK)
        FUZZ_CHECK(ev->name != NULL && ev->name[0] != 0);
    if (ev->name)
        FUZZ_CHECK(utf8(ev->name, strlen(ev->name)));
    FUZZ_CHECK((ev->type == PS_MSG_GROUP) == (ev->group_id != NULL));
    if (ev->group_id) {
        size_t glen = strlen(ev->group_id);
        FUZZ_CHECK(glen > 0 && ps_utf8_valid((const uint8_t *)ev->group_id, glen, &cps));
        FUZZ_CHECK(cps <= PS_GROUP_ID_MAX);
    }

    FUZZ_CHECK(ev->id_count == 0 || ev->ids != NULL);
    for (size_t i = 0; i < ev->id_count; i++)
        check_ident(ev, i);

    bool has_traits = ev->type == PS_MSG_IDENTIFY || ev->type == PS_MSG_GROUP;
    FUZZ_CHECK(has_traits || (ev->trait_count == 0 && ev->traits_skipped == 0));
    FUZZ_CHECK(ev->trait_count + ev->traits_skipped < PS_TRAITS_MAX);
    FUZZ_CHECK(ev->trait_count == 0 || ev->traits != NULL);
    for (size_t i = 0; i < ev->trait_count; i++)
        check_trait(&ev->traits[i]);

    bool has_body =
        ev->type == PS_MSG_TRACK || ev->type == PS_MSG_PAGE || ev->type == PS_MSG_SCREEN;
    FUZZ_CHECK(has_body == (ev->body.len > 0));
    if (ev->body.len > 0) {
        FUZZ_CHECK(ev->body.ptr != NULL && ev->body.len <= PS_MESSAGE_MAX_BYTES);
        FUZZ_CHECK(ps_utf8_valid(ev->body.ptr, ev->body.len, NULL));
        check_members(ev->body, true);
    }

    mix(r, &ev->type, sizeof ev->type);
    mix_str(r, ev->message_id);
    mix_str(r, ev->source_id);
    mix(r, &ev->timestamp_ms, sizeof ev->timestamp_ms);
    mix_str(r, ev->name);
    mix_str(r, ev->group_id);
    for (size_t i = 0; i < ev->id_count; i++) {
        mix_str(r, ev->ids[i].type);
        mix_str(r, ev->ids[i].value);
        mix(r, &ev->ids[i].flag, 1);
    }
    for (size_t i = 0; i < ev->trait_count; i++) {
        mix_str(r, ev->traits[i].key);
        mix_str(r, ev->traits[i].json);
    }
    if (ev->body.len > 0)
        mix(r, ev->body.ptr, ev->body.len);
}

static ps_status on_event(void *ud, const ps_event *ev, ps_drop why, size_t index)
{
    run *r = ud;
    FUZZ_CHECK(index == r->calls); /* one callback per item, in order */
    r->calls++;
    FUZZ_CHECK((unsigned)why < PS_DROP__COUNT);
    FUZZ_CHECK((ev == NULL) == (why != PS_DROP_NONE));
    FUZZ_CHECK(ps_drop_name(why) != NULL && ps_drop_message(why) != NULL);
    mix(r, &why, sizeof why);
    if (ev)
        check_event(r, ev);
    return r->calls == r->stop_at ? PS_ECLOSED : PS_OK;
}

static uint64_t parse_once(const uint8_t *json, size_t len, const run *proto, ps_arena *arena)
{
    run r = *proto;
    ps_drop why = PS_DROP__COUNT;
    ps_status st = ps_event_parse(json, len, &r.opts, arena, on_event, &r, &why);
    FUZZ_CHECK((unsigned)why < PS_DROP__COUNT);
    if (st == PS_OK) {
        FUZZ_CHECK(why == PS_DROP_NONE);
        FUZZ_CHECK(r.stop_at == 0 || r.calls < r.stop_at);
    } else if (st == PS_ECLOSED) { /* our callback's status, handed back */
        FUZZ_CHECK(r.stop_at > 0 && r.calls == r.stop_at);
    } else {
        FUZZ_CHECK(st == PS_EINVAL || st == PS_ETOOBIG);
        FUZZ_CHECK(why != PS_DROP_NONE && r.calls == 0);
    }
    mix(&r, &st, sizeof st);
    ps_arena_clear(arena);
    return r.digest;
}

static void check_write_key(const uint8_t *data, size_t size)
{
    size_t cap = 1 + (size & 63);
    char *out = malloc(cap); /* exactly `cap` bytes, so ASan sees an overflow */
    FUZZ_CHECK(out != NULL);
    if (ps_event_write_key(data, size, out, cap)) {
        FUZZ_CHECK(memchr(out, 0, cap) != NULL);
        FUZZ_CHECK(has_nul(data, size) || strlen(out) < cap);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ps_arena arena;
    static bool ready;
    if (!ready) {
        ps_arena_init(&arena);
        ready = true;
    }
    if (size < 1)
        return 0;
    uint8_t b = data[0];
    run proto = {0};
    proto.opts.rules = default_rules();
    proto.opts.now_ms = NOW_MS;
    proto.opts.forced_type = (b & 7) == 7 ? PS_MSG_NONE : (ps_msg_type)(b & 7);
    proto.opts.require_batch = (b & 0x08) != 0;
    proto.opts.keep_received_at = (b & 0x10) != 0;
    proto.opts.source_id = (b & 0x20) ? SOURCE_ID : NULL;
    proto.opts.sequence = 7;
    proto.stop_at = (unsigned)(b >> 6);

    /* the payload in its own allocation: a read past its end is a heap overflow */
    size_t len = size - 1;
    uint8_t *json = malloc(len ? len : 1);
    FUZZ_CHECK(json != NULL);
    if (len)
        memcpy(json, data + 1, len);

    uint64_t first = parse_once(json, len, &proto, &arena);
    uint64_t second = parse_once(json, len, &proto, &arena);
    FUZZ_CHECK(first == second); /* same bytes, same options: same messages */

    check_write_key(json, len);
    check_members((ps_slice){json, len}, !has_nul(json, len));
    free(json);
    return 0;
}
