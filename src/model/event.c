/* SPDX-License-Identifier: MIT */
/* event: the accept side of ingestion. The cJSON tree never leaves this file: everything the
 * rest of the system needs is copied into the caller's arena as ps_event fields. */
#include "ps/event.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ps/clock.h"
#include "ps/filters.h"
#include "ps/json.h"
#include "ps/text.h"

static const char *const drop_names[PS_DROP__COUNT] = {
    "none",
    "invalid_json",
    "not_object",
    "too_large",
    "invalid_utf8",
    "invalid_type",
    "no_user_anon_id",
    "missing_event_name",
    "group_id_empty",
    "group_id_too_long",
    "invalid_message_id",
    "message_id_too_long",
    "too_many_traits",
    "too_many_properties",
    "invalid_field",
    "invalid_timestamp",
    "before_1970",
    "too_many_items",
    "duplicate",
    "missing_batch",
    "trailing_data",
    "control_character",
    "nul_character",
    "too_deep",
    "suppressed",
    "filtered",
};

const char *ps_drop_name(ps_drop d)
{
    return (unsigned)d < PS_DROP__COUNT ? drop_names[d] : "unknown";
}

static const char *const type_names[] = {"none",   "identify", "track", "page",
                                         "screen", "group",    "alias", "filtered"};

const char *ps_msg_type_name(ps_msg_type t)
{
    return (unsigned)t <= PS_MSG_FILTERED ? type_names[t] : "none";
}

static ps_msg_type type_from_name(const char *s)
{
    for (int i = 1; i <= PS_MSG_ALIAS; i++)
        if (strcmp(s, type_names[i]) == 0)
            return (ps_msg_type)i;
    return PS_MSG_NONE;
}

typedef struct parse_ctx {
    const ps_accept_opts *opts;
    ps_arena *arena;
    ps_event *ev;
    size_t id_cap;
} parse_ctx;

/* The first member of `obj` named `key` (case-sensitive); members without a name (never in
 * parsed input) are passed over, and so are those whose first byte differs, without a call to
 * strcmp. */
static const cJSON *get(const cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj))
        return NULL;
    for (const cJSON *m = obj->child; m; m = m->next)
        if (m->string && m->string[0] == key[0] && strcmp(m->string, key) == 0)
            return m;
    return NULL;
}

/* Canonical decimal text of a JSON number: a number used as an identifier becomes this text. */
static void number_text(double d, char out[40])
{
    if (d == floor(d) && fabs(d) < 9007199254740992.0)
        snprintf(out, 40, "%lld", (long long)d);
    else
        snprintf(out, 40, "%.17g", d);
}

/* A string or number field as text; NULL for anything else or an empty/blank string. */
static const char *scalar_text(const cJSON *v, char numbuf[40])
{
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsNumber(v)) {
        number_text(v->valuedouble, numbuf);
        return numbuf;
    }
    return NULL;
}

/* Adds candidate `raw` of `type`; `from` names where it was found (with `key`, when not
 * NULL, appended: a custom key). */
static void add_id(parse_ctx *c, ps_collection coll, const char *type, const cJSON *raw,
                   ps_ident_flag flag, const char *from, const char *key)
{
    char numbuf[40];
    const char *text = scalar_text(raw, numbuf);
    if (text == NULL)
        return; /* absent, null, bool, object, array: never identifiers */
    const ps_type_rule *rule = ps_rules_type(c->opts->rules, type);
    if (!rule->enabled)
        return;
    size_t len = strlen(text);
    ps_trim(&text, &len);
    if (len == 0)
        return;
    if (flag == PS_IDENT_OK && len > PS_VALUE_MAX) {
        flag = PS_IDENT_TOO_LONG;
        /* kept truncated only for the violation record: cut at a character boundary, and
         * trimmed again, so that the record is valid UTF-8 like every other value */
        len = PS_VALUE_MAX;
        while (len > 0 && ((uint8_t)text[len] & 0xC0) == 0x80)
            len--;
        ps_trim(&text, &len);
    }
    char *value = ps_arena_strndup(c->arena, text, len);
    if (rule->lowercase)
        ps_ascii_lower(value, len);
    ps_event *ev = c->ev;
    for (size_t i = 0; i < ev->id_count; i++) /* unique (collection, type, value) */
        if (ev->ids[i].collection == coll && strcmp(ev->ids[i].type, type) == 0 &&
            strcmp(ev->ids[i].value, value) == 0)
            return;
    if (flag == PS_IDENT_OK && ps_rules_blocked(c->opts->rules, type, value))
        flag = PS_IDENT_BLOCKED;
    if (ev->id_count == c->id_cap) {
        size_t cap = c->id_cap ? c->id_cap * 2 : 8;
        ps_ident *ids = ps_arena_alloc(c->arena, cap * sizeof *ids);
        if (ev->id_count)
            memcpy(ids, ev->ids, ev->id_count * sizeof *ids);
        ev->ids = ids;
        c->id_cap = cap;
    }
    ps_ident *id = &ev->ids[ev->id_count++];
    id->type = rule->type[0] ? rule->type : ps_arena_strndup(c->arena, type, strlen(type));
    id->value = value;
    id->value_len = (uint32_t)len;
    id->collection = (uint8_t)coll;
    id->key_hash = 0; /* ingest fills it in for the writer */
    if (key) {
        size_t fl = strlen(from), kl = strlen(key);
        char *path = ps_arena_alloc(c->arena, fl + kl + 2);
        memcpy(path, from, fl);
        path[fl] = '.';
        memcpy(path + fl + 1, key, kl + 1);
        from = path;
    }
    id->from = from;
    id->flag = (uint8_t)flag;
}

/* A custom key's member found in one of the objects add_custom reads. */
typedef struct custom_hit {
    uint32_t key, obj;
    bool camel;
    const cJSON *value;
} custom_hit;

static int custom_hit_cmp(const void *a, const void *b)
{
    const custom_hit *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->obj != y->obj)
        return x->obj < y->obj ? -1 : 1;
    return (int)x->camel - (int)y->camel;
}

/* Custom key identifiers: top-level keys equal to the snake or lowerCamel form. They are added
 * by key (in ps_rules_custom_keys order), then by object, the snake form before the camel
 * one; of members with the same name, the first counts. Each object's members are looked up
 * in the rules' sorted name index once, instead of each name being searched for in each
 * object. */
static void add_custom(parse_ctx *c, ps_collection coll, const cJSON *const *objs,
                       const char *const *names, size_t n)
{
    size_t key_count, name_count;
    const ps_custom_key *keys = ps_rules_custom_keys(c->opts->rules, &key_count);
    const ps_custom_name *index = ps_rules_custom_names(c->opts->rules, &name_count);
    custom_hit *hits = NULL;
    size_t count = 0, cap = 0;
    for (size_t o = 0; o < n && name_count; o++) {
        if (!cJSON_IsObject(objs[o]))
            continue;
        size_t first = count; /* this object's hits start here */
        for (const cJSON *m = objs[o]->child; m; m = m->next) {
            if (m->string == NULL)
                continue;
            size_t lo = 0, hi = name_count; /* the first index entry >= the member's name */
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(index[mid].name, m->string) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (; lo < name_count && strcmp(index[lo].name, m->string) == 0; lo++) {
                const ps_custom_name *e = &index[lo];
                if (keys[e->key].collection != coll)
                    continue;
                bool seen = false; /* a later member of the same name does not count */
                for (size_t h = first; h < count && !seen; h++)
                    seen = hits[h].key == e->key && hits[h].camel == e->camel;
                if (seen)
                    continue;
                if (count == cap) {
                    size_t ncap = cap ? 2 * cap : 8;
                    custom_hit *grown = ps_arena_alloc(c->arena, ncap * sizeof *grown);
                    if (count)
                        memcpy(grown, hits, count * sizeof *hits);
                    hits = grown;
                    cap = ncap;
                }
                hits[count++] = (custom_hit){e->key, (uint32_t)o, e->camel, m};
            }
        }
    }
    if (count > 1)
        qsort(hits, count, sizeof *hits, custom_hit_cmp);
    for (size_t h = 0; h < count; h++) {
        const ps_custom_key *k = &keys[hits[h].key];
        add_id(c, coll, k->type, hits[h].value, PS_IDENT_OK, names[hits[h].obj],
               hits[h].camel ? k->camel : k->snake);
    }
}

/* context.externalIds entries {id, type, collection, encoding}, all four required. */
static void add_external_ids(parse_ctx *c, const cJSON *arr, bool accounts_too)
{
    if (!cJSON_IsArray(arr))
        return;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *id = get(it, "id"), *type = get(it, "type"), *coll = get(it, "collection"),
                    *enc = get(it, "encoding");
        if (!cJSON_IsString(type) || !cJSON_IsString(coll) || !cJSON_IsString(enc) || id == NULL)
            continue;
        char tbuf[PS_TYPE_MAX + 1];
        const char *t = type->valuestring;
        size_t tl = strlen(t);
        ps_trim(&t, &tl);
        if (tl == 0 || tl > PS_TYPE_MAX)
            continue;
        memcpy(tbuf, t, tl);
        tbuf[tl] = 0;
        ps_ascii_lower(tbuf, tl);
        if (!ps_rules_type_name_valid(tbuf, tl))
            continue;
        int cl = ps_collection_parse(coll->valuestring);
        if (cl < 0 || (cl == PS_ACCOUNTS && !accounts_too))
            continue; /* accounts ids on non-group calls are ignored */
        add_id(c, (ps_collection)cl, tbuf, id,
               strcmp(enc->valuestring, "none") == 0 ? PS_IDENT_OK : PS_IDENT_BAD_ENCODING,
               "context.externalIds", NULL);
    }
}

static void extract_ids(parse_ctx *c, const cJSON *msg)
{
    ps_event *ev = c->ev;
    const cJSON *context = get(msg, "context"), *traits = get(msg, "traits"),
                *props = get(msg, "properties"), *ctraits = get(context, "traits"),
                *device = get(context, "device");
    bool identify = ev->type == PS_MSG_IDENTIFY, group = ev->type == PS_MSG_GROUP;

    add_id(c, PS_USERS, "user_id", get(msg, "userId"), PS_IDENT_OK, "userId", NULL);
    if (identify)
        add_id(c, PS_USERS, "email", get(traits, "email"), PS_IDENT_OK, "traits.email", NULL);
    add_id(c, PS_USERS, "email", get(ctraits, "email"), PS_IDENT_OK, "context.traits.email", NULL);
    if (ps_rules_options_get(c->opts->rules)->email_from_properties)
        add_id(c, PS_USERS, "email", get(props, "email"), PS_IDENT_OK, "properties.email", NULL);
    add_id(c, PS_USERS, "anonymous_id", get(msg, "anonymousId"), PS_IDENT_OK, "anonymousId", NULL);

    const cJSON *dtype = get(device, "type");
    const char *family = NULL;
    if (cJSON_IsString(dtype)) {
        if (strcmp(dtype->valuestring, "ios") == 0)
            family = "ios";
        else if (strcmp(dtype->valuestring, "android") == 0)
            family = "android";
    }
    if (family) {
        char t[32];
        snprintf(t, sizeof t, "%s.id", family);
        add_id(c, PS_USERS, t, get(device, "id"), PS_IDENT_OK, "context.device.id", NULL);
        if (cJSON_IsTrue(get(device, "adTrackingEnabled"))) {
            snprintf(t, sizeof t, "%s.idfa", family);
            add_id(c, PS_USERS, t, get(device, "advertisingId"), PS_IDENT_OK,
                   "context.device.advertisingId", NULL);
        }
        snprintf(t, sizeof t, "%s.push_token", family);
        add_id(c, PS_USERS, t, get(device, "token"), PS_IDENT_OK, "context.device.token", NULL);
    }
    /* ga_client_id: context.integrations first, then the top-level integrations */
    const cJSON *ga = get(get(get(context, "integrations"), "Google Analytics"), "clientId");
    const char *ga_from = "context.integrations.Google Analytics.clientId";
    if (scalar_text(ga, (char[40]){0}) == NULL) {
        ga = get(get(get(msg, "integrations"), "Google Analytics"), "clientId");
        ga_from = "integrations.Google Analytics.clientId";
    }
    add_id(c, PS_USERS, "ga_client_id", ga, PS_IDENT_OK, ga_from, NULL);

    /* optional built-ins, disabled unless the settings enable them */
    const cJSON *xid = get(ctraits, "crossDomainId");
    add_id(c, PS_USERS, "cross_domain_id", xid ? xid : get(msg, "cross_domain_id"), PS_IDENT_OK,
           xid ? "context.traits.crossDomainId" : "cross_domain_id", NULL);
    add_id(c, PS_USERS, "braze_id", get(get(context, "Braze"), "braze_id"), PS_IDENT_OK,
           "context.Braze.braze_id", NULL);

    const cJSON *user_objs[3];
    const char *user_names[3];
    size_t n = 0;
    if (identify) {
        user_names[n] = "traits";
        user_objs[n++] = traits;
    }
    user_names[n] = "context.traits";
    user_objs[n++] = ctraits;
    user_names[n] = "properties";
    user_objs[n++] = props;
    add_custom(c, PS_USERS, user_objs, user_names, n);
    add_external_ids(c, get(context, "externalIds"), group);

    if (group) {
        add_id(c, PS_ACCOUNTS, "group_id", get(msg, "groupId"), PS_IDENT_OK, "groupId", NULL);
        const cJSON *acc_objs[1] = {traits};
        const char *acc_names[1] = {"traits"};
        add_custom(c, PS_ACCOUNTS, acc_objs, acc_names, 1);
    }
}

static size_t object_size(const cJSON *obj)
{
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) n++;
    return n;
}

/* A trait's value printed up to this size needs no allocation of its own (cJSON's printer
 * asks for a few bytes more room than it uses). */
#define TRAIT_PRINT_BUF 4096

static ps_drop collect_traits(parse_ctx *c, const cJSON *traits)
{
    ps_event *ev = c->ev;
    size_t n = object_size(traits);
    if (n == 0)
        return PS_DROP_NONE;
    ev->traits = ps_arena_alloc(c->arena, n * sizeof *ev->traits);
    const cJSON *it;
    cJSON_ArrayForEach(it, traits)
    {
        size_t klen = strlen(it->string);
        if (klen == 0 || klen > PS_TRAIT_KEY_MAX) {
            ev->traits_skipped++;
            continue;
        }
        ps_trait *t = &ev->traits[ev->trait_count++];
        t->key = ps_arena_strndup(c->arena, it->string, klen);
        t->is_null = cJSON_IsNull(it);
        if (t->is_null) {
            t->json = "null";
            t->json_len = 4;
            continue;
        }
        /* most values fit the thread's buffer: printed there, without a malloc per trait */
        static _Thread_local char small[TRAIT_PRINT_BUF];
        bool fits = cJSON_PrintPreallocated((cJSON *)it, small, (int)sizeof small, false);
        char *text = fits ? small : cJSON_PrintUnformatted(it);
        if (text == NULL)
            return PS_DROP_INVALID_FIELD;
        size_t tl = strlen(text);
        t->json = ps_arena_strndup(c->arena, text, tl);
        t->json_len = (uint32_t)tl;
        if (!fits)
            cJSON_free(text);
    }
    return PS_DROP_NONE;
}

static ps_drop parse_time(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsString(v))
        return PS_DROP_INVALID_TIMESTAMP;
    if (ps_time_parse(v->valuestring, strlen(v->valuestring), out) != PS_OK)
        return PS_DROP_INVALID_TIMESTAMP;
    return PS_DROP_NONE;
}

/* timestamp, else receivedAt - (sentAt - originalTimestamp), else originalTimestamp, else
 * receivedAt. Present-but-invalid fields drop the message. */
static ps_drop event_time(const cJSON *msg, int64_t received, int64_t *out)
{
    const cJSON *ts = get(msg, "timestamp"), *orig = get(msg, "originalTimestamp"),
                *sent = get(msg, "sentAt");
    ps_drop d;
    if (ts && !cJSON_IsNull(ts))
        return parse_time(ts, out);
    if (orig && !cJSON_IsNull(orig)) {
        int64_t o, s;
        if ((d = parse_time(orig, &o)) != PS_DROP_NONE)
            return d;
        if (sent && !cJSON_IsNull(sent)) {
            if ((d = parse_time(sent, &s)) != PS_DROP_NONE)
                return d;
            *out = received - (s - o);
        } else {
            *out = o;
        }
        return PS_DROP_NONE;
    }
    *out = received;
    return PS_DROP_NONE;
}

/* receivedAt (a replay keeps the logged one), the event's time and source_id. */
static ps_drop stamp(parse_ctx *c, const cJSON *msg)
{
    const ps_accept_opts *o = c->opts;
    ps_event *ev = c->ev;
    ev->received_ms = o->now_ms;
    ps_drop d;
    const cJSON *rcv = get(msg, "receivedAt");
    if (o->keep_received_at && rcv && !cJSON_IsNull(rcv))
        if ((d = parse_time(rcv, &ev->received_ms)) != PS_DROP_NONE)
            return d;
    if ((d = event_time(msg, ev->received_ms, &ev->timestamp_ms)) != PS_DROP_NONE)
        return d;
    if (ev->timestamp_ms < 0 || ev->received_ms < 0)
        return PS_DROP_BEFORE_1970;
    ev->source_id = o->source_id ? o->source_id : "";
    const cJSON *sid = get(msg, "source_id");
    if (o->keep_received_at && cJSON_IsString(sid) && sid->valuestring[0] &&
        strlen(sid->valuestring) <= PS_SOURCE_ID_MAX)
        ev->source_id = ps_arena_strndup(c->arena, sid->valuestring, strlen(sid->valuestring));
    return PS_DROP_NONE;
}

/* A filter's note read back from the log: its messageId, stamps, the filter's name and the
 * dropped message's type. */
static ps_drop check_note(parse_ctx *c, const cJSON *msg, ps_slice body)
{
    ps_event *ev = c->ev;
    const cJSON *mid = get(msg, "messageId"), *f = get(msg, "filter"), *t = get(msg, "event_type");
    size_t cps = 0;
    if (!cJSON_IsString(mid) || mid->valuestring[0] == 0)
        return PS_DROP_INVALID_MESSAGE_ID;
    ps_utf8_valid((const uint8_t *)mid->valuestring, strlen(mid->valuestring), &cps);
    if (cps > PS_MESSAGE_ID_MAX)
        return PS_DROP_MESSAGE_ID_TOO_LONG;
    if (!cJSON_IsString(f) || !ps_filter_name_valid(f->valuestring) || !cJSON_IsString(t) ||
        (ev->filtered_type = type_from_name(t->valuestring)) == PS_MSG_NONE)
        return PS_DROP_INVALID_FIELD;
    ps_drop d = stamp(c, msg);
    if (d != PS_DROP_NONE)
        return d;
    ev->message_id = ps_arena_strndup(c->arena, mid->valuestring, strlen(mid->valuestring));
    ev->filter = ps_arena_strndup(c->arena, f->valuestring, strlen(f->valuestring));
    ev->message = body;
    return PS_DROP_NONE;
}

/* The note the log keeps of `ev`, which filter `name` dropped: `note` is filled in. */
static void make_note(ps_arena *arena, const ps_event *ev, const char *name, ps_event *note)
{
    char tb[PS_TIME_BUF];
    const char *type = ps_msg_type_name(ev->type), *ts = ps_time_format(ev->timestamp_ms, tb);
    /* the name is [A-Za-z0-9_-] and the type and time need no escaping */
    size_t len = strlen("{\"type\":\"filtered\",\"filter\":\"\",\"event_type\":\"\","
                        "\"timestamp\":\"\"}") +
                 strlen(name) + strlen(type) + strlen(ts);
    char *json = ps_arena_alloc(arena, len + 1);
    int n = snprintf(json, len + 1,
                     "{\"type\":\"filtered\",\"filter\":\"%s\",\"event_type\":\"%s\","
                     "\"timestamp\":\"%s\"}",
                     name, type, ts);
    PS_ASSERT(n >= 0 && (size_t)n == len);
    *note = (ps_event){
        .type = PS_MSG_FILTERED,
        .message_id = ev->message_id,
        .source_id = ev->source_id,
        .timestamp_ms = ev->timestamp_ms,
        .received_ms = ev->received_ms,
        .message = {(const uint8_t *)json, len},
        .filter = name,
        .filtered_type = ev->type,
        .ids = ev->ids, /* for the door's suppression check; a note never logs them */
        .id_count = ev->id_count,
    };
}

static ps_drop check_message(parse_ctx *c, const cJSON *msg, size_t index, ps_slice body)
{
    const ps_accept_opts *o = c->opts;
    ps_event *ev = c->ev;
    if (!cJSON_IsObject(msg))
        return PS_DROP_NOT_OBJECT;
    if (body.len > PS_MESSAGE_MAX_BYTES)
        return PS_DROP_TOO_LARGE;

    ev->type = o->forced_type;
    if (ev->type == PS_MSG_NONE) {
        const cJSON *t = get(msg, "type");
        if (cJSON_IsString(t) && o->keep_received_at && strcmp(t->valuestring, "filtered") == 0)
            ev->type = PS_MSG_FILTERED; /* a replayed log's note; never from a client */
        else if (!cJSON_IsString(t) || (ev->type = type_from_name(t->valuestring)) == PS_MSG_NONE)
            return PS_DROP_INVALID_TYPE;
    }
    if (ev->type == PS_MSG_FILTERED)
        return check_note(c, msg, body);
    char nb[40], nb2[40];
    const cJSON *uid = get(msg, "userId"), *aid = get(msg, "anonymousId");
    const char *us = scalar_text(uid, nb), *as = scalar_text(aid, nb2);
    if ((us == NULL || us[0] == 0) && (as == NULL || as[0] == 0))
        return PS_DROP_NO_USER_ANON_ID;

    const cJSON *context = get(msg, "context"), *traits = get(msg, "traits"),
                *props = get(msg, "properties");
    if ((context && !cJSON_IsObject(context) && !cJSON_IsNull(context)) ||
        (traits && !cJSON_IsObject(traits) && !cJSON_IsNull(traits)) ||
        (props && !cJSON_IsObject(props) && !cJSON_IsNull(props)))
        return PS_DROP_INVALID_FIELD;

    const cJSON *mid = get(msg, "messageId");
    size_t cps = 0;
    if (mid && !cJSON_IsNull(mid)) {
        if (!cJSON_IsString(mid))
            return PS_DROP_INVALID_MESSAGE_ID;
        size_t ml = strlen(mid->valuestring);
        ps_utf8_valid((const uint8_t *)mid->valuestring, ml, &cps);
        if (cps > PS_MESSAGE_ID_MAX)
            return PS_DROP_MESSAGE_ID_TOO_LONG;
        if (ml)
            ev->message_id = ps_arena_strndup(c->arena, mid->valuestring, ml);
    }

    switch (ev->type) {
    case PS_MSG_TRACK: {
        const cJSON *e = get(msg, "event");
        if (!cJSON_IsString(e) || e->valuestring[0] == 0)
            return PS_DROP_MISSING_EVENT_NAME;
        ev->name = ps_arena_strndup(c->arena, e->valuestring, strlen(e->valuestring));
        const cJSON *cg = get(context, "groupId");
        if (cJSON_IsString(cg)) {
            if (cg->valuestring[0] == 0)
                return PS_DROP_GROUP_ID_EMPTY;
            ps_utf8_valid((const uint8_t *)cg->valuestring, strlen(cg->valuestring), &cps);
            if (cps > PS_GROUP_ID_MAX)
                return PS_DROP_GROUP_ID_TOO_LONG;
        }
        break;
    }
    case PS_MSG_PAGE:
    case PS_MSG_SCREEN: {
        const cJSON *nm = get(msg, "name");
        if (cJSON_IsString(nm) && nm->valuestring[0])
            ev->name = ps_arena_strndup(c->arena, nm->valuestring, strlen(nm->valuestring));
        break;
    }
    case PS_MSG_GROUP: {
        const char *g = scalar_text(get(msg, "groupId"), nb);
        if (g == NULL || g[0] == 0)
            return PS_DROP_GROUP_ID_EMPTY;
        ps_utf8_valid((const uint8_t *)g, strlen(g), &cps);
        if (cps > PS_GROUP_ID_MAX)
            return PS_DROP_GROUP_ID_TOO_LONG;
        ev->group_id = ps_arena_strndup(c->arena, g, strlen(g));
        break;
    }
    default: break;
    }
    if ((ev->type == PS_MSG_IDENTIFY || ev->type == PS_MSG_GROUP) &&
        object_size(traits) >= PS_TRAITS_MAX)
        return PS_DROP_TOO_MANY_TRAITS;
    if ((ev->type == PS_MSG_TRACK || ev->type == PS_MSG_PAGE || ev->type == PS_MSG_SCREEN) &&
        object_size(props) > PS_PROPERTIES_MAX)
        return PS_DROP_TOO_MANY_PROPERTIES;

    ps_drop d = stamp(c, msg);
    if (d != PS_DROP_NONE)
        return d;

    if (ev->message_id == NULL) {
        /* stamped once at acceptance; a replayed log carries it from then on, so replays are
         * deterministic (docs/architecture.md, Determinism) */
        uint8_t key[16] = "ps-message-id-k";
        uint64_t h = ps_siphash(key, body.ptr, body.len);
        uint64_t mix[3] = {h, (uint64_t)ev->received_ms, o->sequence * 4096 + index};
        h = ps_siphash(key, mix, sizeof mix);
        char idbuf[48];
        snprintf(idbuf, sizeof idbuf, "ps-%016llx", (unsigned long long)h);
        ev->message_id = ps_arena_strndup(c->arena, idbuf, strlen(idbuf));
    }

    extract_ids(c, msg);
    if (ev->type == PS_MSG_IDENTIFY || ev->type == PS_MSG_GROUP)
        if ((d = collect_traits(c, traits)) != PS_DROP_NONE)
            return d;
    if (ev->type == PS_MSG_TRACK || ev->type == PS_MSG_PAGE || ev->type == PS_MSG_SCREEN) {
        ev->body = body;
        (void)ps_event_body_spans(body, &ev->spans); /* here, off the writer's thread */
    }
    ev->message = body;
    return PS_DROP_NONE;
}

static ps_status one_message(const ps_accept_opts *opts, ps_arena *arena, const cJSON *msg,
                             ps_slice body, size_t index, ps_event_fn fn, void *ud)
{
    ps_event ev;
    memset(&ev, 0, sizeof ev);
    parse_ctx c = {opts, arena, &ev, 0};
    ps_drop d = check_message(&c, msg, index, body);
    if (d == PS_DROP_NONE && opts->filters && ev.type != PS_MSG_FILTERED) {
        /* valid: the space's filters see it whole */
        int hit = ps_filters_match(opts->filters, msg);
        if (hit >= 0) {
            if (opts->filter_hits)
                opts->filter_hits[hit]++;
            ps_event note;
            make_note(arena, &ev, ps_filters_get(opts->filters, (size_t)hit).name, &note);
            return fn(ud, &note, PS_DROP_FILTERED, index);
        }
    }
    return fn(ud, d == PS_DROP_NONE ? &ev : NULL, d, index);
}

/* ---- payloads and batches ---- */

/* The drop for a JSON problem found by the strict reader. */
static ps_drop json_drop(ps_json_error e)
{
    switch (e) {
    case PS_JSON_UTF8: return PS_DROP_INVALID_UTF8;
    case PS_JSON_CONTROL: return PS_DROP_CONTROL_CHARACTER;
    case PS_JSON_NUL: return PS_DROP_NUL_CHARACTER;
    case PS_JSON_TRAILING: return PS_DROP_TRAILING_DATA;
    case PS_JSON_DEPTH: return PS_DROP_TOO_DEEP;
    default: return PS_DROP_INVALID_JSON;
    }
}

/* One member of a batch envelope's context or integrations. */
typedef struct env_member {
    ps_json_member m;
    ps_slice name; /* the decoded key */
    uint32_t seen; /* the generation of the last item that has this key */
    bool is_dup;   /* a later occurrence of a key: cJSON keeps the first, so do we */
} env_member;

/* A sort entry: the decoded key and the member's position. */
typedef struct name_ref {
    ps_slice name;
    uint32_t index;
} name_ref;

/* The envelope's context or integrations object, merged shallowly into each item: the item
 * keeps its own members and gains the envelope's members it lacks. Members are looked up by
 * binary search over `by_name`, so an item costs O(its members x log(envelope members)) and
 * nothing an outsider sends can make that quadratic
 * (tests/unit/test_event.c envelope_bounds). */
typedef struct env_obj {
    const char *key;
    ps_slice raw; /* the whole object; ptr NULL when the envelope has none */
    env_member *members;
    name_ref *by_name; /* sorted by name */
    size_t count;
    uint32_t *uniq; /* members that are not later duplicates, in text order */
    size_t uniq_count;
    size_t bytes; /* `,"key":value` of every member in uniq */
} env_obj;

static int name_cmp(ps_slice a, ps_slice b)
{
    int c = memcmp(a.ptr, b.ptr, a.len < b.len ? a.len : b.len);
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

/* Decodes a validated key into `name` (arena copy only when it has escapes). */
static ps_slice key_name(ps_arena *arena, ps_slice key)
{
    if (memchr(key.ptr, '\\', key.len) == NULL)
        return (ps_slice){key.ptr + 1, key.len - 2};
    char *out = ps_arena_alloc(arena, key.len);
    size_t n = 0;
    PS_ASSERT(ps_json_key_decode(key, out, key.len, &n));
    return (ps_slice){(const uint8_t *)out, n};
}

static int name_ref_cmp(const void *a, const void *b)
{
    const name_ref *x = a, *y = b;
    int c = name_cmp(x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index); /* first occurrence first */
}

static void env_init(env_obj *e, const char *key, ps_slice raw, ps_arena *arena)
{
    memset(e, 0, sizeof *e);
    e->key = key;
    if (raw.ptr == NULL || raw.ptr[0] != '{')
        return;
    e->raw = raw;
    ps_json_iter it;
    ps_json_member m;
    ps_json_iter_init(&it, (const char *)raw.ptr, (const char *)raw.ptr + raw.len);
    while (ps_json_iter_next(&it, &m))
        e->count++;
    if (e->count == 0)
        return;
    e->members = ps_arena_alloc(arena, e->count * sizeof *e->members);
    e->by_name = ps_arena_alloc(arena, e->count * sizeof *e->by_name);
    size_t i = 0;
    ps_json_iter_init(&it, (const char *)raw.ptr, (const char *)raw.ptr + raw.len);
    while (ps_json_iter_next(&it, &m)) {
        e->members[i] = (env_member){m, key_name(arena, m.key), 0, false};
        e->by_name[i] = (name_ref){e->members[i].name, (uint32_t)i};
        i++;
    }
    qsort(e->by_name, e->count, sizeof *e->by_name, name_ref_cmp);
    for (i = 1; i < e->count; i++)
        if (name_cmp(e->by_name[i].name, e->by_name[i - 1].name) == 0)
            e->members[e->by_name[i].index].is_dup = true;
    e->uniq = ps_arena_alloc(arena, e->count * sizeof *e->uniq);
    for (i = 0; i < e->count; i++)
        if (!e->members[i].is_dup) {
            e->uniq[e->uniq_count++] = (uint32_t)i;
            e->bytes += 1 + e->members[i].m.key.len + 1 + e->members[i].m.value.len;
        }
}

static env_member *env_find(const env_obj *e, ps_slice name)
{
    size_t lo = 0, hi = e->count;
    while (lo < hi) { /* the first entry not below `name` */
        size_t mid = lo + (hi - lo) / 2;
        if (name_cmp(e->by_name[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < e->count && name_cmp(e->by_name[lo].name, name) == 0)
        return &e->members[e->by_name[lo].index];
    return NULL;
}

/* An insertion into an item's text: `count` pieces before byte `at`. */
typedef struct insertion {
    size_t at;
    enum { INS_MEMBER, INS_ENV_MEMBERS } kind;
    const char *key; /* INS_MEMBER: `,"key":raw` */
    ps_slice raw;
    const env_obj *env; /* INS_ENV_MEMBERS: the unseen members of `env` */
    bool comma_first;
} insertion;

typedef struct batch_ctx {
    const ps_accept_opts *opts;
    ps_arena *arena;
    ps_event_fn fn;
    void *ud;
    env_obj env[2]; /* context, integrations */
    ps_slice sent_at;
    uint32_t gen;
    size_t expanded; /* bytes of items after merging, so far */
} batch_ctx;

/* Marks the envelope members that the item object `obj` has; returns the bytes the unseen
 * ones add (`,"key":value` each), and whether the object is empty. */
static size_t env_unseen_bytes(batch_ctx *b, env_obj *e, ps_slice obj, bool *is_empty)
{
    ps_json_iter it;
    ps_json_member m;
    ps_json_iter_init(&it, (const char *)obj.ptr, (const char *)obj.ptr + obj.len);
    *is_empty = true;
    size_t seen = 0; /* O(item members x log(envelope members)): never a walk of the envelope */
    while (ps_json_iter_next(&it, &m)) {
        *is_empty = false;
        env_member *em = env_find(e, key_name(b->arena, m.key));
        if (em && em->seen != b->gen) {
            em->seen = b->gen;
            seen += 1 + em->m.key.len + 1 + em->m.value.len;
        }
    }
    return e->bytes - seen;
}

static char *emit(char *out, const void *p, size_t n)
{
    memcpy(out, p, n);
    return out + n;
}

static char *emit_insertion(char *o, const batch_ctx *b, const insertion *in)
{
    bool comma = in->comma_first;
    if (in->kind == INS_MEMBER) {
        if (comma)
            *o++ = ',';
        *o++ = '"';
        o = emit(o, in->key, strlen(in->key));
        o = emit(o, "\":", 2);
        return emit(o, in->raw.ptr, in->raw.len);
    }
    /* walks the envelope only for an item that fits in 32 KB after merging: the item then
     * holds all but 32 KB of the envelope, so the envelope is small */
    const env_obj *e = in->env;
    for (size_t i = 0; i < e->uniq_count; i++) {
        const env_member *em = &e->members[e->uniq[i]];
        if (em->seen == b->gen)
            continue;
        if (comma)
            *o++ = ',';
        comma = true;
        o = emit(o, em->m.key.ptr, em->m.key.len);
        *o++ = ':';
        o = emit(o, em->m.value.ptr, em->m.value.len);
    }
    return o;
}

/* One batch item: merge the envelope (checking the merged size before building it), parse it
 * strictly, and hand it to one_message(). */
static ps_status batch_item(batch_ctx *b, const char *s, size_t len, size_t index)
{
    if (len > PS_MESSAGE_MAX_BYTES)
        return b->fn(b->ud, NULL, PS_DROP_TOO_LARGE, index);
    if (*s != '{')
        return b->fn(b->ud, NULL, PS_DROP_NOT_OBJECT, index);
    b->gen++;
    ps_slice own[2] = {{NULL, 0}, {NULL, 0}};
    bool has_sent = false;
    size_t members = 0;
    ps_json_iter it;
    ps_json_member m;
    ps_json_iter_init(&it, s, s + len);
    while (ps_json_iter_next(&it, &m)) {
        members++;
        for (int k = 0; k < 2; k++)
            if (own[k].ptr == NULL && ps_json_key_is(m.key, b->env[k].key))
                own[k] = m.value;
        has_sent = has_sent || ps_json_key_is(m.key, "sentAt");
    }
    insertion ins[4];
    size_t nins = 0, total = len;
    for (int k = 0; k < 2; k++) {
        env_obj *e = &b->env[k];
        if (e->raw.ptr == NULL)
            continue;
        if (own[k].ptr == NULL) {
            ins[nins++] = (insertion){len - 1, INS_MEMBER, e->key, e->raw, NULL, members > 0};
            total += (members > 0 ? 1u : 0u) + 3 + strlen(e->key) + e->raw.len;
            members++;
        } else if (own[k].ptr[0] == '{') {
            bool is_empty;
            size_t add = env_unseen_bytes(b, e, own[k], &is_empty);
            if (add == 0)
                continue;
            size_t close = (size_t)((const char *)own[k].ptr - s) + own[k].len - 1;
            ins[nins++] = (insertion){close, INS_ENV_MEMBERS, NULL, {NULL, 0}, e, !is_empty};
            total += add - is_empty;
        }
    }
    if (b->sent_at.ptr && !has_sent) { /* clock-skew correction per item */
        ins[nins++] = (insertion){len - 1, INS_MEMBER, "sentAt", b->sent_at, NULL, members > 0};
        total += (members > 0 ? 1u : 0u) + 3 + strlen("sentAt") + b->sent_at.len;
    }
    if (total > PS_MESSAGE_MAX_BYTES || total > PS_BATCH_EXPANDED_MAX_BYTES - b->expanded)
        return b->fn(b->ud, NULL, PS_DROP_TOO_LARGE, index);
    b->expanded += total;

    char *text = ps_arena_alloc(b->arena, total + 1), *o = text;
    size_t from = 0;
    for (size_t i = 1; i < nins; i++) /* into text order; equal positions keep their order */
        for (size_t j = i; j > 0 && ins[j].at < ins[j - 1].at; j--) {
            insertion t = ins[j];
            ins[j] = ins[j - 1];
            ins[j - 1] = t;
        }
    for (size_t i = 0; i < nins; i++) {
        o = emit(o, s + from, ins[i].at - from);
        from = ins[i].at;
        o = emit_insertion(o, b, &ins[i]);
    }
    o = emit(o, s + from, len - from);
    PS_ASSERT((size_t)(o - text) == total);
    *o = 0;

    /* the item and what was inserted into it are spans of the payload, which passed the strict
     * reader with \u0000 allowed, and no deeper than the payload: only a \u0000 can refuse it */
    ps_json_diag d;
    cJSON *item = ps_json_parse_scratch((const uint8_t *)text, total, true, &d);
    if (item == NULL)
        return b->fn(b->ud, NULL, json_drop(d.error), index);
    ps_status st = one_message(b->opts, b->arena, item, (ps_slice){(const uint8_t *)text, total},
                               index, b->fn, b->ud);
    ps_json_scratch_free(item);
    return st;
}

ps_status ps_event_parse(const uint8_t *json, size_t len, const ps_accept_opts *opts,
                         ps_arena *arena, ps_event_fn fn, void *ud, ps_drop *why)
{
    *why = PS_DROP_NONE;
    if (len > PS_BATCH_MAX_BYTES) {
        *why = PS_DROP_TOO_LARGE;
        return PS_ETOOBIG;
    }
    /* the whole payload once; \u0000 is refused per message below, so that one bad item
     * does not cost the rest of its batch */
    ps_json_diag d;
    if (!ps_json_check(json, len, PS_JSON_ALLOW_NUL, &d)) {
        *why = json_drop(d.error);
        return PS_EINVAL;
    }
    const char *s = (const char *)json, *end = s + len, *top = ps_json_skip_ws(s, end);
    if (!opts->require_batch && *top == '{' && len <= PS_MESSAGE_MAX_BYTES) {
        /* most likely one message: parsed once, and read as a batch only when it has one */
        cJSON *root = ps_json_parse_scratch(json, len, true, &d); /* checked above */
        if (root && (opts->forced_type != PS_MSG_NONE ||
                     cJSON_GetObjectItemCaseSensitive(root, "batch") == NULL)) {
            ps_status st = one_message(opts, arena, root, (ps_slice){json, len}, 0, fn, ud);
            ps_json_scratch_free(root);
            return st;
        }
        /* a batch, or refused whole (a \u0000 refuses only its own item in a batch): below */
        if (root)
            ps_json_scratch_free(root);
    }
    ps_slice batch = {NULL, 0}, context = {NULL, 0}, integrations = {NULL, 0}, sent = {NULL, 0};
    ps_json_iter it;
    ps_json_member m;
    ps_json_iter_init(&it, top, end);
    while (ps_json_iter_next(&it, &m)) { /* first occurrences, as cJSON reads them */
        if (batch.ptr == NULL && ps_json_key_is(m.key, "batch"))
            batch = m.value;
        else if (context.ptr == NULL && ps_json_key_is(m.key, "context"))
            context = m.value;
        else if (integrations.ptr == NULL && ps_json_key_is(m.key, "integrations"))
            integrations = m.value;
        else if (sent.ptr == NULL && ps_json_key_is(m.key, "sentAt"))
            sent = m.value;
    }
    if (batch.ptr == NULL && opts->require_batch) {
        *why = *top == '{' ? PS_DROP_NOT_BATCH : PS_DROP_NOT_OBJECT;
        return PS_EINVAL;
    }
    if (batch.ptr == NULL || opts->forced_type != PS_MSG_NONE) {
        if (len > PS_MESSAGE_MAX_BYTES) {
            *why = PS_DROP_TOO_LARGE;
            return PS_ETOOBIG;
        }
        if (*top != '{') {
            *why = PS_DROP_NOT_OBJECT;
            return PS_EINVAL;
        }
        cJSON *root = ps_json_parse_scratch(json, len, true, &d); /* checked above */
        if (root == NULL) {
            *why = json_drop(d.error);
            return PS_EINVAL;
        }
        ps_status st = one_message(opts, arena, root, (ps_slice){json, len}, 0, fn, ud);
        ps_json_scratch_free(root);
        return st;
    }
    if (batch.ptr[0] != '[') {
        *why = PS_DROP_INVALID_FIELD;
        return PS_EINVAL;
    }
    const char *bend = (const char *)batch.ptr + batch.len, *p;
    size_t count = 0;
    for (p = ps_json_skip_ws((const char *)batch.ptr + 1, bend); p < bend && *p != ']';) {
        p = ps_json_skip_ws(ps_json_skip_value(p, bend), bend);
        count++;
        if (*p == ',')
            p = ps_json_skip_ws(p + 1, bend);
    }
    ps_status st = PS_OK;
    if (count > PS_BATCH_MAX_ITEMS) { /* every item is dropped, none is read */
        for (size_t i = 0; i < count && st == PS_OK; i++)
            st = fn(ud, NULL, PS_DROP_TOO_MANY_ITEMS, i);
        return st;
    }
    batch_ctx b = {.opts = opts, .arena = arena, .fn = fn, .ud = ud};
    env_init(&b.env[0], "context", context, arena);
    env_init(&b.env[1], "integrations", integrations, arena);
    if (sent.ptr && sent.ptr[0] == '"')
        b.sent_at = sent;
    size_t index = 0;
    for (p = ps_json_skip_ws((const char *)batch.ptr + 1, bend); p < bend && *p != ']';) {
        const char *after = ps_json_skip_value(p, bend);
        st = batch_item(&b, p, (size_t)(after - p), index++);
        if (st != PS_OK)
            break;
        p = ps_json_skip_ws(after, bend);
        if (*p == ',')
            p = ps_json_skip_ws(p + 1, bend);
    }
    return st;
}

/* Finds the top-level members `keys` of the object in [p, end) (validated text) in one pass:
 * vals[i] gets the raw value of keys[i]'s first occurrence, {NULL, 0} when absent. False when
 * the text is not an object. */
static bool find_members(const char *p, const char *end, const char *const *keys, size_t count,
                         ps_slice *vals)
{
    size_t missing = count;
    for (size_t i = 0; i < count; i++)
        vals[i] = (ps_slice){NULL, 0};
    ps_json_iter it;
    ps_json_member m;
    ps_json_iter_init(&it, p, end);
    if (it.p >= end || *it.p != '{')
        return false;
    while (missing && ps_json_iter_next(&it, &m))
        for (size_t i = 0; i < count; i++)
            if (vals[i].ptr == NULL && ps_json_key_is(m.key, keys[i])) {
                vals[i] = m.value;
                missing--;
                break;
            }
    return true;
}

#define BODY_MEMBERS_MAX 8

void ps_event_log_json(ps_msg_type type, ps_slice message_id, int64_t received_ms,
                       ps_slice source_id, ps_slice message, ps_buf *out)
{
    static const char *const stamped[] = {"type", "messageId", "receivedAt", "source_id",
                                          "writeKey"};
    char tb[PS_TIME_BUF];
    ps_buf_puts(out, "{\"type\":\"");
    ps_buf_puts(out, ps_msg_type_name(type));
    ps_buf_puts(out, "\",\"messageId\":");
    ps_buf_json_str(out, (const char *)message_id.ptr, message_id.len);
    ps_buf_puts(out, ",\"receivedAt\":\"");
    ps_buf_puts(out, ps_time_format(received_ms, tb));
    ps_buf_puts(out, "\",\"source_id\":");
    ps_buf_json_str(out, (const char *)source_id.ptr, source_id.len);
    ps_json_iter it;
    ps_json_member m;
    const char *start = (const char *)message.ptr;
    ps_json_iter_init(&it, start, start + message.len);
    while (ps_json_iter_next(&it, &m)) {
        bool skip = false;
        for (size_t i = 0; i < sizeof stamped / sizeof *stamped && !skip; i++)
            skip = ps_json_key_is(m.key, stamped[i]);
        if (skip)
            continue;
        ps_buf_putc(out, ',');
        ps_buf_append(out, m.key.ptr, m.key.len);
        ps_buf_putc(out, ':');
        ps_buf_append(out, m.value.ptr, m.value.len);
    }
    ps_buf_putc(out, '}');
}

bool ps_event_body_spans(ps_slice body, ps_body_spans *out)
{
    static const char *const keys[] = {"context", "properties"};
    const char *start = (const char *)body.ptr;
    ps_slice vals[2];
    *out = (ps_body_spans){0, 0, 0, 0};
    if (body.len > UINT32_MAX || !find_members(start, start + body.len, keys, 2, vals))
        return false;
    if (vals[0].ptr)
        *out = (ps_body_spans){(uint32_t)((const char *)vals[0].ptr - start), (uint32_t)vals[0].len,
                               0, 0};
    if (vals[1].ptr) {
        out->properties_at = (uint32_t)((const char *)vals[1].ptr - start);
        out->properties_len = (uint32_t)vals[1].len;
    }
    return true;
}

void ps_event_body_members(ps_slice body, const char *const *keys, size_t count, ps_buf *out)
{
    const char *start = (const char *)body.ptr, *end = start + body.len;
    ps_slice vals[BODY_MEMBERS_MAX];
    PS_ASSERT(count <= BODY_MEMBERS_MAX);
    if (find_members(start, end, keys, count, vals)) {
        for (size_t i = 0; i < count; i++) {
            ps_buf_puts(out, ",\"");
            ps_buf_puts(out, keys[i]);
            ps_buf_puts(out, "\":");
            if (vals[i].ptr)
                ps_buf_append(out, vals[i].ptr, vals[i].len);
            else
                ps_buf_puts(out, "null");
        }
        return;
    }
    for (size_t i = 0; i < count; i++) /* not an object: it has none of the members */
        ps_buf_printf(out, ",\"%s\":null", keys[i]);
}

bool ps_event_write_key(const uint8_t *json, size_t len, char *out, size_t cap)
{
    const char *start = (const char *)json;
    static const char *const key[] = {"writeKey"};
    ps_slice val;
    size_t n;
    if (len > PS_BATCH_MAX_BYTES || !ps_json_check(json, len, PS_JSON_ALLOW_NUL, NULL) ||
        !find_members(start, start + len, key, 1, &val) || val.ptr == NULL || val.ptr[0] != '"')
        return false;
    /* a string value decodes like a key; a NUL would cut the key short: refuse it */
    if (!ps_json_key_decode(val, out, cap - 1, &n) || memchr(out, 0, n))
        return false;
    out[n] = 0;
    return true;
}

static const char *const drop_messages[PS_DROP__COUNT] = {
    [PS_DROP_INVALID_JSON] = "The body is not valid JSON.",
    [PS_DROP_NOT_OBJECT] = "A message must be a JSON object.",
    [PS_DROP_TOO_LARGE] = "The message is over 32 KB (a batch: over 500 KB, or over 4 MB once its "
                          "context is merged into every item).",
    [PS_DROP_INVALID_UTF8] = "The body is not valid UTF-8.",
    [PS_DROP_INVALID_TYPE] = "The message needs a type: identify, track, page, screen, group "
                             "or alias.",
    [PS_DROP_NO_USER_ANON_ID] = "The message needs a userId or an anonymousId.",
    [PS_DROP_MISSING_EVENT_NAME] = "A track call needs a non-empty event name.",
    [PS_DROP_GROUP_ID_EMPTY] = "groupId is empty.",
    [PS_DROP_GROUP_ID_TOO_LONG] = "groupId is over 500 characters.",
    [PS_DROP_INVALID_MESSAGE_ID] = "messageId must be a string.",
    [PS_DROP_MESSAGE_ID_TOO_LONG] = "messageId is over 100 characters.",
    [PS_DROP_TOO_MANY_TRAITS] = "The message has 300 traits or more.",
    [PS_DROP_TOO_MANY_PROPERTIES] = "The message has more than 300 properties.",
    [PS_DROP_INVALID_FIELD] = "context, traits and properties must be objects; batch an array.",
    [PS_DROP_INVALID_TIMESTAMP] = "A timestamp is not ISO-8601.",
    [PS_DROP_BEFORE_1970] = "The event is dated before 1970-01-01.",
    [PS_DROP_TOO_MANY_ITEMS] = "The batch has more than 2500 messages.",
    [PS_DROP_DUPLICATE] = "A message with this messageId was already accepted.",
    [PS_DROP_NOT_BATCH] = "The body must be {\"batch\": [...]}.",
    [PS_DROP_TRAILING_DATA] = "There is data after the JSON value; send one JSON object.",
    [PS_DROP_CONTROL_CHARACTER] = "A string contains a raw control character (0x00-0x1F); "
                                  "escape it as \\n, \\t or \\u00XX.",
    [PS_DROP_NUL_CHARACTER] = "A string contains \\u0000 (NUL), which is not accepted.",
    [PS_DROP_TOO_DEEP] = "Objects and arrays are nested more than 64 levels deep.",
    [PS_DROP_SUPPRESSED] = "The userId is suppressed (a regulation): its messages are not kept.",
    [PS_DROP_FILTERED] = "The message matched one of the space's event filters.",
};

const char *ps_drop_message(ps_drop d)
{
    return (unsigned)d < PS_DROP__COUNT && drop_messages[d] ? drop_messages[d] : "Dropped.";
}

ps_status ps_event_parse_delete_ids(const char *json, size_t len, char *type, char *value,
                                    size_t *value_len, const char **why)
{
    ps_status st = PS_EINVAL;
    ps_json_diag d;
    cJSON *root = ps_json_parse((const uint8_t *)json, len, &d);
    const cJSON *list = get(root, "delete_external_ids"), *item, *id, *ty;
    if (root == NULL) {
        *why = ps_json_error_message(d.error);
    } else if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
        *why = "Missing required parameters: delete_external_ids must list one identifier";
    } else if (cJSON_GetArraySize(list) > 1) {
        *why = "Only one external_id can be deleted at a time.";
        st = PS_ETOOBIG;
    } else if (!cJSON_IsString(id = get(item = cJSON_GetArrayItem(list, 0), "id")) ||
               !cJSON_IsString(ty = get(item, "type"))) {
        *why = "Missing required parameters: each entry needs string `id` and `type`";
    } else {
        const char *t = ty->valuestring, *v = id->valuestring;
        size_t tl = strlen(t), vl = strlen(v);
        ps_trim(&t, &tl);
        ps_trim(&v, &vl);
        if (tl == 0 || tl > PS_TYPE_MAX || vl == 0 || vl > PS_VALUE_MAX) {
            *why = "the identifier's `type` or `id` is empty or too long";
        } else {
            memcpy(type, t, tl);
            type[tl] = 0;
            ps_ascii_lower(type, tl);
            memcpy(value, v, vl);
            value[vl] = 0;
            *value_len = vl;
            st = PS_OK;
        }
    }
    cJSON_Delete(root);
    return st;
}

/* ---- regulations ---- */

static const char *const reg_names[PS_REG__COUNT] = {
    "DELETE_INTERNAL", "SUPPRESS_WITH_DELETE_INTERNAL", "SUPPRESS_ONLY", "UNSUPPRESS"};

const char *ps_reg_type_name(ps_reg_type t)
{
    return (unsigned)t < PS_REG__COUNT ? reg_names[t] : "UNKNOWN";
}

bool ps_reg_type_parse(const char *s, ps_reg_type *out)
{
    for (int i = 0; i < PS_REG__COUNT; i++)
        if (strcmp(s, reg_names[i]) == 0) {
            *out = (ps_reg_type)i;
            return true;
        }
    if (strcmp(s, "DELETE_ONLY") == 0) /* no destinations here: the same as _INTERNAL */
        *out = PS_REG_DELETE;
    else if (strcmp(s, "SUPPRESS_WITH_DELETE") == 0)
        *out = PS_REG_SUPPRESS_WITH_DELETE;
    else
        return false;
    return true;
}

void ps_reg_request_clear(ps_reg_request *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->subjects[i]);
    free(r->subjects);
    r->subjects = NULL;
    r->count = 0;
}

ps_status ps_event_parse_regulation(const char *json, size_t len, ps_reg_request *out,
                                    const char **why)
{
    memset(out, 0, sizeof *out);
    ps_json_diag d;
    cJSON *root = ps_json_parse((const uint8_t *)json, len, &d);
    const cJSON *type = get(root, "regulationType"), *subject = get(root, "subjectType"),
                *ids = get(root, "subjectIds");
    ps_status st = PS_EINVAL;
    if (root == NULL)
        *why = ps_json_error_message(d.error);
    else if (!cJSON_IsObject(root))
        *why = "The body must be a JSON object.";
    else if (!cJSON_IsString(type) || !ps_reg_type_parse(type->valuestring, &out->type))
        *why = "regulationType must be one of DELETE_INTERNAL, DELETE_ONLY, "
               "SUPPRESS_WITH_DELETE_INTERNAL, SUPPRESS_WITH_DELETE, SUPPRESS_ONLY, UNSUPPRESS.";
    else if (!cJSON_IsString(subject) || strcmp(subject->valuestring, "USER_ID") != 0)
        *why = "subjectType must be USER_ID.";
    else if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) < 1 ||
             cJSON_GetArraySize(ids) > PS_REG_SUBJECTS_MAX)
        *why = "subjectIds must be an array of 1 to 5000 userIds.";
    else
        st = PS_OK;
    if (st == PS_OK) {
        out->subjects = ps_xcalloc((size_t)cJSON_GetArraySize(ids), sizeof *out->subjects);
        const cJSON *it;
        cJSON_ArrayForEach(it, ids)
        {
            const char *v = cJSON_IsString(it) ? it->valuestring : NULL;
            size_t vl = v ? strlen(v) : 0;
            if (v)
                ps_trim(&v, &vl);
            if (v == NULL || vl == 0 || vl > PS_VALUE_MAX) {
                *why = "Each subjectId must be a non-empty string of at most 400 bytes.";
                st = PS_EINVAL;
                break;
            }
            out->subjects[out->count++] = ps_xstrndup(v, vl);
        }
    }
    if (st != PS_OK)
        ps_reg_request_clear(out);
    cJSON_Delete(root);
    return st;
}
