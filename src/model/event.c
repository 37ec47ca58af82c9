/* SPDX-License-Identifier: MIT */
/* event: the accept side of ingestion. The cJSON tree never leaves this file: everything the
 * rest of the system needs is copied into the caller's arena as ps_event fields. */
#include "ps/event.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ps/clock.h"
#include "ps/text.h"

static const char *const drop_names[PS_DROP__COUNT] = {
    "none",          "invalid_json",        "not_object",        "too_large",
    "invalid_utf8",  "invalid_type",        "no_user_anon_id",   "missing_event_name",
    "group_id_empty", "group_id_too_long",  "invalid_message_id", "message_id_too_long",
    "too_many_traits", "too_many_properties", "invalid_field",   "invalid_timestamp",
    "before_1970",   "too_many_items",      "duplicate",          "missing_batch",
};

const char *ps_drop_name(ps_drop d)
{
    return (unsigned)d < PS_DROP__COUNT ? drop_names[d] : "unknown";
}

static const char *const type_names[] = {"none", "identify", "track", "page",
                                         "screen", "group", "alias"};

const char *ps_msg_type_name(ps_msg_type t)
{
    return (unsigned)t <= PS_MSG_ALIAS ? type_names[t] : "none";
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

static const cJSON *get(const cJSON *obj, const char *key)
{
    return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

/* Canonical decimal text of a JSON number (SPEC 18.Q7). */
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

static void add_id(parse_ctx *c, ps_collection coll, const char *type, const cJSON *raw,
                   ps_ident_flag flag)
{
    const ps_type_rule *rule = ps_rules_type(c->opts->rules, type);
    if (!rule->enabled)
        return;
    char numbuf[40];
    const char *text = scalar_text(raw, numbuf);
    if (text == NULL)
        return; /* null, bool, object, array: never identifiers (18.Q7) */
    size_t len = strlen(text);
    ps_trim(&text, &len);
    if (len == 0)
        return;
    if (flag == PS_IDENT_OK && len > PS_VALUE_MAX) {
        flag = PS_IDENT_TOO_LONG;
        len = PS_VALUE_MAX; /* kept truncated only for the violation record */
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
    id->flag = (uint8_t)flag;
}

/* Custom key identifiers: top-level keys equal to the snake or lowerCamel form (18.Q9). */
static void add_custom(parse_ctx *c, ps_collection coll, const cJSON *const *objs, size_t n)
{
    size_t count;
    const ps_custom_key *keys = ps_rules_custom_keys(c->opts->rules, &count);
    for (size_t k = 0; k < count; k++) {
        if (keys[k].collection != coll)
            continue;
        for (size_t o = 0; o < n; o++) {
            add_id(c, coll, keys[k].type, get(objs[o], keys[k].snake), PS_IDENT_OK);
            if (strcmp(keys[k].snake, keys[k].camel) != 0)
                add_id(c, coll, keys[k].type, get(objs[o], keys[k].camel), PS_IDENT_OK);
        }
    }
}

/* context.externalIds entries {id, type, collection, encoding}, all four required (SPEC 5.3). */
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
        ps_collection cl;
        if (strcmp(coll->valuestring, "users") == 0)
            cl = PS_USERS;
        else if (strcmp(coll->valuestring, "accounts") == 0 && accounts_too)
            cl = PS_ACCOUNTS;
        else
            continue; /* accounts ids on non-group calls are ignored (18.Q27) */
        add_id(c, cl, tbuf, id,
               strcmp(enc->valuestring, "none") == 0 ? PS_IDENT_OK : PS_IDENT_BAD_ENCODING);
    }
}

static void extract_ids(parse_ctx *c, const cJSON *msg)
{
    ps_event *ev = c->ev;
    const cJSON *context = get(msg, "context"), *traits = get(msg, "traits"),
                *props = get(msg, "properties"), *ctraits = get(context, "traits"),
                *device = get(context, "device");
    bool identify = ev->type == PS_MSG_IDENTIFY, group = ev->type == PS_MSG_GROUP;

    add_id(c, PS_USERS, "user_id", get(msg, "userId"), PS_IDENT_OK);
    if (identify)
        add_id(c, PS_USERS, "email", get(traits, "email"), PS_IDENT_OK);
    add_id(c, PS_USERS, "email", get(ctraits, "email"), PS_IDENT_OK);
    if (ps_rules_options_get(c->opts->rules)->email_from_properties)
        add_id(c, PS_USERS, "email", get(props, "email"), PS_IDENT_OK);
    add_id(c, PS_USERS, "anonymous_id", get(msg, "anonymousId"), PS_IDENT_OK);

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
        add_id(c, PS_USERS, t, get(device, "id"), PS_IDENT_OK);
        if (cJSON_IsTrue(get(device, "adTrackingEnabled"))) {
            snprintf(t, sizeof t, "%s.idfa", family);
            add_id(c, PS_USERS, t, get(device, "advertisingId"), PS_IDENT_OK);
        }
        snprintf(t, sizeof t, "%s.push_token", family);
        add_id(c, PS_USERS, t, get(device, "token"), PS_IDENT_OK);
    }
    /* ga_client_id: context.integrations first, then the top-level integrations (18.Q10) */
    const cJSON *ga = get(get(get(context, "integrations"), "Google Analytics"), "clientId");
    if (scalar_text(ga, (char[40]){0}) == NULL)
        ga = get(get(get(msg, "integrations"), "Google Analytics"), "clientId");
    add_id(c, PS_USERS, "ga_client_id", ga, PS_IDENT_OK);

    /* optional built-ins, disabled unless the settings enable them (18.Q1) */
    const cJSON *xid = get(ctraits, "crossDomainId");
    add_id(c, PS_USERS, "cross_domain_id", xid ? xid : get(msg, "cross_domain_id"), PS_IDENT_OK);
    add_id(c, PS_USERS, "braze_id", get(get(context, "Braze"), "braze_id"), PS_IDENT_OK);

    const cJSON *user_objs[3];
    size_t n = 0;
    if (identify)
        user_objs[n++] = traits;
    user_objs[n++] = ctraits;
    user_objs[n++] = props;
    add_custom(c, PS_USERS, user_objs, n);
    add_external_ids(c, get(context, "externalIds"), group);

    if (group) {
        add_id(c, PS_ACCOUNTS, "group_id", get(msg, "groupId"), PS_IDENT_OK);
        const cJSON *acc_objs[1] = {traits};
        add_custom(c, PS_ACCOUNTS, acc_objs, 1);
    }
}

static size_t object_size(const cJSON *obj)
{
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) n++;
    return n;
}

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
        char *text = cJSON_PrintUnformatted(it);
        if (text == NULL)
            return PS_DROP_INVALID_FIELD;
        size_t tl = strlen(text);
        t->json = ps_arena_strndup(c->arena, text, tl);
        t->json_len = (uint32_t)tl;
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
 * receivedAt (SPEC 2.2). Present-but-invalid fields drop the message. */
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
        if (!cJSON_IsString(t) || (ev->type = type_from_name(t->valuestring)) == PS_MSG_NONE)
            return PS_DROP_INVALID_TYPE;
    }
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
    default:
        break;
    }
    if ((ev->type == PS_MSG_IDENTIFY || ev->type == PS_MSG_GROUP) &&
        object_size(traits) >= PS_TRAITS_MAX)
        return PS_DROP_TOO_MANY_TRAITS;
    if ((ev->type == PS_MSG_TRACK || ev->type == PS_MSG_PAGE || ev->type == PS_MSG_SCREEN) &&
        object_size(props) > PS_PROPERTIES_MAX)
        return PS_DROP_TOO_MANY_PROPERTIES;

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

    if (ev->message_id == NULL) {
        /* stamped once at acceptance; a replayed log carries it from then on (D1) */
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
    if (ev->type == PS_MSG_TRACK || ev->type == PS_MSG_PAGE || ev->type == PS_MSG_SCREEN)
        ev->body = body;
    return PS_DROP_NONE;
}

static ps_status one_message(const ps_accept_opts *opts, ps_arena *arena, const cJSON *msg,
                             ps_slice body, size_t index, ps_event_fn fn, void *ud)
{
    ps_event ev;
    memset(&ev, 0, sizeof ev);
    parse_ctx c = {opts, arena, &ev, 0};
    ps_drop d = check_message(&c, msg, index, body);
    return fn(ud, d == PS_DROP_NONE ? &ev : NULL, d, index);
}

/* Adds the envelope's keys that the item lacks (shallow), for context and integrations. */
static void merge_envelope(cJSON *item, const cJSON *envelope, const char *key)
{
    const cJSON *src = get(envelope, key);
    if (!cJSON_IsObject(src))
        return;
    cJSON *dst = cJSON_GetObjectItemCaseSensitive(item, key);
    if (dst == NULL) {
        cJSON_AddItemToObject(item, key, cJSON_Duplicate(src, 1));
        return;
    }
    if (!cJSON_IsObject(dst))
        return;
    const cJSON *it;
    cJSON_ArrayForEach(it, src)
    {
        if (cJSON_GetObjectItemCaseSensitive(dst, it->string) == NULL)
            cJSON_AddItemToObject(dst, it->string, cJSON_Duplicate(it, 1));
    }
}

ps_status ps_event_parse(const uint8_t *json, size_t len, const ps_accept_opts *opts,
                         ps_arena *arena, ps_event_fn fn, void *ud, ps_drop *why)
{
    *why = PS_DROP_NONE;
    if (len > PS_BATCH_MAX_BYTES) {
        *why = PS_DROP_TOO_LARGE;
        return PS_ETOOBIG;
    }
    if (!ps_utf8_valid(json, len, NULL)) {
        *why = PS_DROP_INVALID_UTF8;
        return PS_EINVAL;
    }
    cJSON *root = cJSON_ParseWithLength((const char *)json, len);
    if (root == NULL) {
        *why = PS_DROP_INVALID_JSON;
        return PS_EINVAL;
    }
    ps_status st = PS_OK;
    cJSON *batch = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "batch") : NULL;
    if (batch == NULL && opts->require_batch) {
        *why = cJSON_IsObject(root) ? PS_DROP_NOT_BATCH : PS_DROP_NOT_OBJECT;
        st = PS_EINVAL;
        goto done;
    }
    if (batch == NULL || opts->forced_type != PS_MSG_NONE) {
        if (len > PS_MESSAGE_MAX_BYTES) {
            *why = PS_DROP_TOO_LARGE;
            st = PS_ETOOBIG;
        } else if (!cJSON_IsObject(root)) {
            *why = PS_DROP_NOT_OBJECT;
            st = PS_EINVAL;
        } else {
            st = one_message(opts, arena, root, (ps_slice){json, len}, 0, fn, ud);
        }
        goto done;
    }
    if (!cJSON_IsArray(batch)) {
        *why = PS_DROP_INVALID_FIELD;
        st = PS_EINVAL;
        goto done;
    }
    size_t count = (size_t)cJSON_GetArraySize(batch), index = 0;
    cJSON *item;
    cJSON_ArrayForEach(item, batch)
    {
        if (count > PS_BATCH_MAX_ITEMS) {
            st = fn(ud, NULL, PS_DROP_TOO_MANY_ITEMS, index++);
        } else if (!cJSON_IsObject(item)) {
            st = fn(ud, NULL, PS_DROP_NOT_OBJECT, index++);
        } else {
            merge_envelope(item, root, "context");
            merge_envelope(item, root, "integrations");
            const cJSON *sent = get(root, "sentAt"); /* clock-skew correction per item */
            if (cJSON_IsString(sent) && get(item, "sentAt") == NULL)
                cJSON_AddItemToObject(item, "sentAt", cJSON_Duplicate(sent, 0));
            char *text = cJSON_PrintUnformatted(item);
            PS_ASSERT(text != NULL);
            size_t tl = strlen(text);
            char *copy = ps_arena_strndup(arena, text, tl);
            cJSON_free(text);
            st = one_message(opts, arena, item, (ps_slice){(const uint8_t *)copy, tl}, index++,
                             fn, ud);
        }
        if (st != PS_OK)
            break;
    }
done:
    cJSON_Delete(root);
    return st;
}

/* Skips JSON whitespace. */
static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Bytes the raw scanner must stop at: inside a string, '"' and '\\'; inside an object or
 * array, '"' and the brackets. Every other byte is skipped in a tight loop. */
static const uint8_t in_string[256] = {['"'] = 1, ['\\'] = 1};
static const uint8_t in_container[256] = {['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1,
                                          [']'] = 1};

static const char *skip_string(const char *p, const char *end) /* p at the opening quote */
{
    for (p++; p < end; p++) {
        while (p < end && !in_string[(uint8_t)*p])
            p++;
        if (p >= end)
            break;
        if (*p == '"')
            return p + 1;
        p++; /* the escaped byte */
    }
    return NULL;
}

/* Skips one JSON value of text known to be valid (stored events were validated at ingest).
 * Returns the end of the value, or NULL if the text is not as expected. */
static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p != '{' && *p != '[') { /* number, true, false, null */
        while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
               *p != '\n' && *p != '\r')
            p++;
        return p;
    }
    int depth = 0;
    while (p < end) {
        while (p < end && !in_container[(uint8_t)*p])
            p++;
        if (p >= end)
            break;
        if (*p == '"') {
            if ((p = skip_string(p, end)) == NULL)
                return NULL;
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if (--depth == 0)
            return p + 1;
        p++;
    }
    return NULL;
}

/* Finds the top-level members `keys` of the object in [p, end) in one pass, without building
 * a tree: vals[i] gets the raw value of keys[i], {NULL, 0} when absent. Returns false when
 * the text needs the full parser (escaped keys, unexpected shape). */
static bool find_members(const char *p, const char *end, const char *const *keys, size_t count,
                         ps_slice *vals)
{
    size_t missing = count;
    for (size_t i = 0; i < count; i++)
        vals[i] = (ps_slice){NULL, 0};
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return false;
    p = skip_ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *k = p + 1, *q = memchr(k, '"', (size_t)(end - k));
        if (q == NULL || memchr(k, '\\', (size_t)(q - k)))
            return false;
        p = skip_ws(q + 1, end);
        if (p >= end || *p != ':')
            return false;
        const char *val = skip_ws(p + 1, end), *after = skip_value(val, end);
        if (after == NULL)
            return false;
        size_t kl = (size_t)(q - k);
        for (size_t i = 0; i < count; i++)
            if (vals[i].ptr == NULL && strlen(keys[i]) == kl && memcmp(k, keys[i], kl) == 0) {
                vals[i] = (ps_slice){(const uint8_t *)val, (size_t)(after - val)};
                if (--missing == 0)
                    return true; /* what follows is not read: the text was validated */
                break;
            }
        p = skip_ws(after, end);
        if (p < end && *p == ',')
            p = skip_ws(p + 1, end);
    }
    return p < end && *p == '}';
}

#define BODY_MEMBERS_MAX 8

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
    cJSON *root = cJSON_ParseWithLength(start, body.len); /* rare: let cJSON read it */
    for (size_t i = 0; i < count; i++) {
        const cJSON *v = get(root, keys[i]);
        char *text = v ? cJSON_PrintUnformatted(v) : NULL;
        ps_buf_printf(out, ",\"%s\":%s", keys[i], text ? text : "null");
        cJSON_free(text);
    }
    cJSON_Delete(root);
}

bool ps_event_write_key(const uint8_t *json, size_t len, char *out, size_t cap)
{
    const char *start = (const char *)json;
    static const char *const key[] = {"writeKey"};
    ps_slice val;
    if (!find_members(start, start + len, key, 1, &val)) { /* rare shapes: the full parser */
        cJSON *root = cJSON_ParseWithLength(start, len);
        const cJSON *k = get(root, "writeKey");
        bool ok = cJSON_IsString(k) && strlen(k->valuestring) < cap;
        if (ok)
            memcpy(out, k->valuestring, strlen(k->valuestring) + 1);
        cJSON_Delete(root);
        return ok;
    }
    /* a plain string: quotes around bytes without escapes */
    const char *v = (const char *)val.ptr;
    size_t vl = val.len;
    if (v == NULL || vl < 2 || v[0] != '"' || v[vl - 1] != '"' || memchr(v, '\\', vl) ||
        vl - 2 >= cap)
        return false;
    memcpy(out, v + 1, vl - 2);
    out[vl - 2] = 0;
    return true;
}

static const char *const drop_messages[PS_DROP__COUNT] = {
    [PS_DROP_INVALID_JSON] = "The body is not valid JSON.",
    [PS_DROP_NOT_OBJECT] = "A message must be a JSON object.",
    [PS_DROP_TOO_LARGE] = "The message is over 32 KB (a batch: over 500 KB).",
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
};

const char *ps_drop_message(ps_drop d)
{
    return (unsigned)d < PS_DROP__COUNT && drop_messages[d] ? drop_messages[d] : "Dropped.";
}

ps_status ps_event_parse_delete_ids(const char *json, size_t len, char *type, char *value,
                                    size_t *value_len, const char **why)
{
    ps_status st = PS_EINVAL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *list = get(root, "delete_external_ids"), *item, *id, *ty;
    if (root == NULL) {
        *why = "the body is not valid JSON";
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
