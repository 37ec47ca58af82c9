/* SPDX-License-Identifier: MIT */
/* api: Profile API use cases over the read model (see api.h). Parameter rules are those of
 * docs/http-api.md: limits out of range are 400 validation_error, non-numbers 400
 * invalid_request_error, and cursors are signed positions bound to the list and profile. */
#include "ps/api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/auth.h"
#include "ps/changes.h"
#include "ps/clock.h"
#include "ps/cursor.h"
#include "ps/event.h"
#include "ps/eventfilter.h"
#include "ps/graph.h"
#include "ps/graphdb.h"
#include "ps/import.h"
#include "ps/log.h"
#include "ps/profile.h"
#include "ps/records.h"
#include "ps/regulation.h"
#include "ps/text.h"

#define LIST_MAX 200 /* names in include/exclude */

static const char *const route_names[] = {
    "traits",
    "external_ids",
    "events",
    "metadata",
    "links",
    "merges",
    "profiles",
    "external_ids_delete",
    "regulations_create",
    "regulations_list",
    "regulation",
    "changes",
    "filters_list",
    "filters_create",
    "filter_update",
    "filter_delete",
    "imports_create",
    "import",
};

/* Every route has its name: a route added to the enum without one fails here, not at run
 * time. */
_Static_assert(sizeof route_names / sizeof *route_names == PS_API__ROUTES, "a name per route");

const char *ps_api_route_name(ps_api_route r)
{
    return (unsigned)r < PS_API__ROUTES ? route_names[r] : "unknown";
}

bool ps_api_route_changes(ps_api_route r)
{
    return r == PS_API_DELETE_IDS || r == PS_API_REG_CREATE ||
           (r >= PS_API_FILTER_LIST && r <= PS_API_FILTER_DELETE) || r == PS_API_IMPORT_CREATE;
}

void ps_api_error(ps_api_reply *out, int status, const char *code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    while (len > 0 && !ps_utf8_valid((const uint8_t *)msg, len, NULL))
        len--; /* a truncated echo of client input must stay valid UTF-8 */
    out->status = status;
    ps_buf_reset(&out->body);
    ps_buf_printf(&out->body, "{\"error\":{\"code\":\"%s\",\"message\":", code);
    ps_buf_json_str(&out->body, msg, len);
    ps_buf_puts(&out->body, "}}");
}

typedef struct ctx {
    ps_space *sp;
    const ps_api_request *rq;
    ps_api_reply *out;
    ps_txn *t;
    const ps_rules *rules;
    uint8_t secret[PS_SECRET_BYTES];
    uint8_t coll;
    ps_profile p;
    uint64_t *members;
    size_t n;
    ps_token_role role;
    bool authorized;
} ctx;

/* ---- parameters ---- */

static const ps_api_param *param(const ctx *c, const char *name)
{
    for (size_t i = 0; i < c->rq->param_count; i++)
        if (strcmp(c->rq->params[i].name, name) == 0)
            return &c->rq->params[i];
    return NULL;
}

/* Echoes client text in messages: at most 100 bytes. */
#define ECHO(p) (int)((p)->value_len < 100 ? (p)->value_len : 100), (p)->value

static bool get_limit(ctx *c, size_t def, size_t max, size_t *out)
{
    const ps_api_param *p = param(c, "limit");
    if (p == NULL) {
        *out = def;
        return true;
    }
    size_t v = 0;
    bool digits = p->value_len > 0 && p->value_len <= 9;
    for (size_t i = 0; digits && i < p->value_len; i++) {
        digits = p->value[i] >= '0' && p->value[i] <= '9';
        v = v * 10 + (size_t)(p->value[i] - '0');
    }
    if (!digits) {
        ps_api_error(c->out, 400, "invalid_request_error",
                     "The parameter `limit` must be a whole number, got `%.*s`.", ECHO(p));
        return false;
    }
    if (v < 1 || v > max) {
        ps_api_error(c->out, 400, "validation_error",
                     "The parameter `limit` must be between 1 and %zu, got %zu.", max, v);
        return false;
    }
    *out = v;
    return true;
}

static bool get_bool(ctx *c, const char *name, bool *out)
{
    const ps_api_param *p = param(c, name);
    *out = false;
    if (p == NULL || strcmp(p->value, "false") == 0)
        return true;
    if (strcmp(p->value, "true") == 0) {
        *out = true;
        return true;
    }
    ps_api_error(c->out, 400, "validation_error",
                 "The parameter `%s` must be true or false, got `%.*s`.", name, ECHO(p));
    return false;
}

/* Splits a comma-separated parameter into trimmed, non-empty names (borrowed slices). */
static bool get_list(ctx *c, const char *name, ps_slice *items, size_t *count)
{
    const ps_api_param *p = param(c, name);
    *count = 0;
    if (p == NULL)
        return true;
    const char *s = p->value, *end = s + p->value_len;
    while (s <= end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *stop = comma ? comma : end;
        const char *item = s;
        size_t len = (size_t)(stop - s);
        ps_trim(&item, &len);
        if (len > 0) {
            if (*count == LIST_MAX) {
                ps_api_error(c->out, 400, "validation_error",
                             "The parameter `%s` lists more than %d names.", name, LIST_MAX);
                return false;
            }
            items[(*count)++] = (ps_slice){(const uint8_t *)item, len};
        }
        s = stop + 1;
    }
    return true;
}

static bool get_time(ctx *c, const char *name, bool *has, int64_t *ms)
{
    const ps_api_param *p = param(c, name);
    *has = p != NULL && p->value_len > 0;
    if (!*has || ps_time_parse(p->value, p->value_len, ms) == PS_OK)
        return true;
    ps_api_error(c->out, 400, "validation_error",
                 "The parameter `%s` must be an ISO-8601 time such as 2024-01-02 or "
                 "2024-01-02T15:04:05Z, got `%.*s`.",
                 name, ECHO(p));
    return false;
}

/* Reads `next`, or `cursor` as some clients name it (absent, empty or "0": the first page).
 * The cursor must be this list's and name the same canonical profile (or one merged into it
 * since). */
static bool get_cursor(ctx *c, uint64_t owner, uint8_t *pos, size_t *pos_len, bool *has)
{
    const ps_api_param *p = param(c, "next");
    *has = false;
    if (p == NULL)
        p = param(c, "cursor");
    if (p == NULL || p->value_len == 0 || (p->value_len == 1 && p->value[0] == '0'))
        return true;
    uint64_t named, canonical = 0;
    if (ps_cursor_decode(c->secret, (uint8_t)c->rq->route, p->value, p->value_len, &named, pos,
                         pos_len) != PS_OK) {
        ps_api_error(c->out, 400, "invalid_request_error",
                     "The parameter `%s` is not a cursor issued for this list.", p->name);
        return false;
    }
    bool same = c->rq->route == PS_API_PROFILES
                    ? named == owner
                    : ps_graph_find(c->t, named, &canonical) == PS_OK && canonical == owner;
    if (!same) {
        ps_api_error(c->out, 400, "invalid_request_error",
                     "The parameter `%s` is a cursor of another profile or collection.", p->name);
        return false;
    }
    *has = true;
    return true;
}

static bool storage_error(ctx *c, ps_status st)
{
    if (st == PS_EFULL)
        ps_api_error(c->out, 503, "storage_full", "The space's storage is full.");
    else
        ps_api_error(c->out, 500, "internal_error", "Storage error: %s.", ps_status_str(st));
    return false;
}

/* ---- replies ---- */

static void put_url(ctx *c)
{
    ps_buf *b = &c->out->body;
    ps_buf_putc(b, '"');
    if (c->rq->base_url)
        ps_buf_puts(b, c->rq->base_url);
    ps_buf_puts(b, "/v1/spaces/");
    ps_buf_puts(b, c->rq->space_name);
    ps_buf_puts(b, "/collections/");
    ps_buf_puts(b, ps_collection_name(c->coll));
    ps_buf_puts(b, "/profiles");
    if (c->rq->route != PS_API_PROFILES) {
        ps_buf_putc(b, '/');
        ps_buf_puts(b, c->p.segment_id);
        ps_buf_putc(b, '/');
        ps_buf_puts(b, route_names[c->rq->route]);
    }
    ps_buf_putc(b, '"');
}

/* Appends ,"cursor":{…}. `pos` is where the next page starts (ignored without has_more). */
static void put_cursor(ctx *c, bool has_more, uint64_t owner, const uint8_t *pos, size_t pos_len,
                       size_t limit)
{
    ps_buf *b = &c->out->body;
    char next[PS_CURSOR_MAX + 1] = "";
    if (has_more) {
        if (pos_len > PS_CURSOR_POS_MAX)
            pos_len = PS_CURSOR_POS_MAX; /* a key prefix still resumes at the right place */
        ps_cursor_encode(c->secret, (uint8_t)c->rq->route, owner, pos, pos_len, next);
    }
    ps_buf_puts(b, ",\"cursor\":{\"url\":");
    put_url(c);
    ps_buf_puts(b, has_more ? ",\"has_more\":true,\"next\":\"" : ",\"has_more\":false,\"next\":\"");
    ps_buf_puts(b, next);
    ps_buf_puts(b, "\",\"limit\":");
    ps_buf_u64(b, limit);
    ps_buf_putc(b, '}');
}

/* ---- /traits ---- */

typedef struct trait_page {
    ctx *c;
    const ps_slice *incl;
    size_t nincl, limit, shown;
    bool verbose, has_more;
    ps_buf next; /* first key of the next page */
} trait_page;

/* Adds one live trait (keys arrive in byte order, from the page start); false once the page
 * is full. */
static bool page_trait(void *ud, const ps_trait_view *tr)
{
    trait_page *pg = ud;
    const char *key = tr->key;
    size_t key_len = tr->key_len;
    ps_slice json = tr->json, source_id = tr->source_id;
    int64_t updated_ms = tr->updated_ms;
    bool wanted = pg->nincl == 0;
    for (size_t k = 0; k < pg->nincl && !wanted; k++)
        wanted = pg->incl[k].len == key_len && memcmp(pg->incl[k].ptr, key, key_len) == 0;
    if (!wanted)
        return true;
    if (pg->shown == pg->limit) {
        pg->has_more = true;
        ps_buf_append(&pg->next, key, key_len);
        return false;
    }
    ps_buf *b = &pg->c->out->body;
    if (pg->shown++)
        ps_buf_putc(b, ',');
    ps_buf_json_str(b, key, key_len);
    ps_buf_putc(b, ':');
    if (pg->verbose) {
        char tb[PS_TIME_BUF];
        ps_buf_puts(b, "{\"value\":");
        ps_buf_append(b, json.ptr, json.len);
        ps_buf_puts(b, ",\"source_id\":");
        ps_buf_json_str(b, (const char *)source_id.ptr, source_id.len);
        ps_buf_printf(b, ",\"updated_at\":\"%s\"}", ps_time_format(updated_ms, tb));
    } else {
        ps_buf_append(b, json.ptr, json.len);
    }
    return true;
}

static bool serve_traits(ctx *c)
{
    size_t limit, nincl;
    bool verbose, has_pos;
    ps_slice incl[LIST_MAX];
    uint8_t pos[PS_CURSOR_POS_MAX];
    size_t pos_len = 0;
    const ps_api_param *cls = param(c, "class");
    if (!get_limit(c, 10, 200, &limit) || !get_bool(c, "verbose", &verbose) ||
        !get_list(c, "include", incl, &nincl) || !get_cursor(c, c->p.seq, pos, &pos_len, &has_pos))
        return false;
    if (cls && strcmp(cls->value, "audience") != 0 && strcmp(cls->value, "computed_trait") != 0) {
        ps_api_error(c->out, 400, "validation_error",
                     "The parameter `class` must be audience or computed_trait, got `%.*s`.",
                     ECHO(cls));
        return false;
    }
    trait_page pg = {c, incl, nincl, limit, 0, verbose, false, {NULL, 0, 0}};
    ps_buf_init(&pg.next);
    ps_buf_puts(&c->out->body, "{\"traits\":{");
    ps_status st = PS_OK;
    if (cls) {
        /* audiences and computed traits are Engage's; this store has none */
    } else {
        st = ps_profile_traits_each(c->t, c->members, c->n, has_pos ? (const char *)pos : NULL,
                                    pos_len, page_trait, &pg);
    }
    if (st != PS_OK) {
        ps_buf_clear(&pg.next);
        return storage_error(c, st);
    }
    ps_buf_putc(&c->out->body, '}');
    put_cursor(c, pg.has_more, c->p.seq, pg.next.ptr, pg.next.len, limit);
    ps_buf_putc(&c->out->body, '}');
    ps_buf_clear(&pg.next);
    return true;
}

/* ---- /external_ids ---- */

typedef struct extid_page {
    ctx *c;
    const ps_slice *types;
    size_t ntypes, limit, shown;
    uint8_t next[PS_TYPE_MAX + 1 + PS_VALUE_MAX];
    size_t next_len;
    bool has_more;
} extid_page;

static bool page_extid(void *ud, const ps_extid *x)
{
    extid_page *pg = ud;
    size_t tl = strlen(x->type);
    uint8_t key[sizeof pg->next];
    memcpy(key, x->type, tl + 1);
    memcpy(key + tl + 1, x->value, x->value_len);
    size_t kl = tl + 1 + x->value_len;
    bool wanted = pg->ntypes == 0;
    for (size_t k = 0; k < pg->ntypes && !wanted; k++)
        wanted = pg->types[k].len == tl && memcmp(pg->types[k].ptr, x->type, tl) == 0;
    if (!wanted)
        return true;
    if (pg->shown == pg->limit) {
        pg->has_more = true;
        memcpy(pg->next, key, kl);
        pg->next_len = kl;
        return false;
    }
    if (pg->shown++)
        ps_buf_putc(&pg->c->out->body, ',');
    ps_profile_extid_json(&pg->c->out->body, x, PS_EXTID_SOURCE | PS_EXTID_FIRST);
    return true;
}

static bool serve_external_ids(ctx *c)
{
    size_t limit, ntypes, pos_len = 0;
    bool verbose, has_pos;
    ps_slice types[LIST_MAX];
    uint8_t pos[PS_CURSOR_POS_MAX];
    if (!get_limit(c, 10, 100, &limit) || !get_bool(c, "verbose", &verbose) ||
        !get_list(c, "include", types, &ntypes) ||
        !get_cursor(c, c->p.seq, pos, &pos_len, &has_pos))
        return false;
    extid_page pg = {c, types, ntypes, limit, 0, {0}, 0, false};
    ps_buf_puts(&c->out->body, "{\"data\":[");
    ps_status st = ps_profile_external_ids_from(c->t, &c->p, has_pos ? (const char *)pos : NULL,
                                                pos_len, page_extid, &pg);
    if (st != PS_OK)
        return storage_error(c, st);
    ps_buf_putc(&c->out->body, ']');
    put_cursor(c, pg.has_more, c->p.seq, pg.next, pg.next_len, limit);
    ps_buf_putc(&c->out->body, '}');
    return true;
}

/* ---- /events ---- */

static bool serve_events(ctx *c)
{
    size_t limit, nincl, nexcl, pos_len = 0;
    bool has_start, has_end, has_pos;
    int64_t start = 0, end = 0;
    ps_slice incl[LIST_MAX], excl[LIST_MAX];
    uint8_t pos[PS_CURSOR_POS_MAX];
    if (!get_limit(c, 10, 100, &limit) || !get_time(c, "start", &has_start, &start) ||
        !get_time(c, "end", &has_end, &end) || !get_list(c, "include", incl, &nincl) ||
        !get_list(c, "exclude", excl, &nexcl) || !get_cursor(c, c->p.seq, pos, &pos_len, &has_pos))
        return false;
    const ps_api_param *sort = param(c, "sort");
    bool asc = sort && strcmp(sort->value, "asc") == 0;
    if (sort && !asc && strcmp(sort->value, "desc") != 0) {
        ps_api_error(c->out, 400, "validation_error",
                     "The parameter `sort` must be asc or desc, got `%.*s`.", ECHO(sort));
        return false;
    }
    if (has_pos && (pos_len != 17 || pos[16] != (uint8_t)asc)) {
        ps_api_error(c->out, 400, "invalid_request_error",
                     "The parameter `next` was issued for the other sort order.");
        return false;
    }
    /* the window: [now - lookback, ...) on event timestamp, narrowed by start/end, which are
     * exclusive */
    ps_event_query q = {
        .min_ts = c->rq->now_ms - ps_rules_options_get(c->rules)->events_lookback_ms,
        .max_ts = has_end ? end : INT64_MAX,
        .ascending = asc,
        .has_after = has_pos,
        .after_ts = has_pos ? (int64_t)ps_get_be64(pos) : 0,
        .after_seq = has_pos ? ps_get_be64(pos + 8) : 0,
        .include = incl,
        .include_count = nincl,
        .exclude = excl,
        .exclude_count = nexcl,
        .limit = limit + 1,
    };
    if (has_start && start != INT64_MAX && start + 1 > q.min_ts)
        q.min_ts = start + 1;
    ps_event_ref *refs = ps_xmalloc((limit + 1) * sizeof *refs);
    size_t count = 0;
    ps_status st = ps_profile_events(c->t, c->members, c->n, &q, refs, &count);
    ps_buf *b = &c->out->body;
    ps_buf_puts(b, "{\"data\":[");
    if (st == PS_OK)
        st = ps_profile_events_json(c->t, &c->p, refs, count < limit ? count : limit, b);
    if (st != PS_OK) {
        free(refs);
        return storage_error(c, st);
    }
    ps_buf_putc(b, ']');
    bool more = count > limit;
    uint8_t next[17];
    if (more) {
        ps_put_be64(next, (uint64_t)refs[limit - 1].timestamp_ms);
        ps_put_be64(next + 8, refs[limit - 1].seq);
        next[16] = (uint8_t)asc;
    }
    put_cursor(c, more, c->p.seq, next, sizeof next, limit);
    ps_buf_putc(b, '}');
    free(refs);
    return true;
}

/* ---- /metadata ---- */

static bool serve_metadata(ctx *c)
{
    bool verbose;
    if (!get_bool(c, "verbose", &verbose))
        return false;
    ps_buf_puts(&c->out->body, "{\"metadata\":");
    ps_profile_metadata_json(&c->out->body, &c->p);
    ps_buf_putc(&c->out->body, '}');
    return true;
}

/* ---- /merges ---- */

/* Every profile merged into this one, directly or not, with what it merged into, when and by
 * which message; no paging: the merge limit bounds the list. */
static bool serve_merges(ctx *c)
{
    ps_buf *b = &c->out->body;
    ps_buf_puts(b, "{\"segment_id\":");
    ps_buf_json_cstr(b, c->p.segment_id);
    ps_buf_puts(b, ",\"data\":[");
    ps_status st = ps_profile_merges_json(c->t, &c->p, c->members, c->n, b);
    if (st != PS_OK)
        return storage_error(c, st);
    ps_buf_puts(b, "]}");
    return true;
}

/* ---- /links ---- */

static bool serve_links(ctx *c)
{
    size_t limit, pos_len = 0, nlinks = 0;
    bool has_pos;
    uint8_t pos[PS_CURSOR_POS_MAX];
    uint64_t *links = NULL;
    if (!get_limit(c, 20, 20, &limit) || !get_cursor(c, c->p.seq, pos, &pos_len, &has_pos))
        return false;
    if (has_pos && pos_len != 8) {
        ps_api_error(c->out, 400, "invalid_request_error", "The parameter `next` is malformed.");
        return false;
    }
    uint64_t after = has_pos ? ps_get_be64(pos) : 0;
    ps_status st = ps_profile_links(c->t, c->members, c->n, &links, &nlinks);
    ps_buf *b = &c->out->body;
    ps_buf_puts(b, "{\"data\":[");
    size_t shown = 0, i = 0;
    for (; i < nlinks && st == PS_OK && shown < limit; i++) {
        if (links[i] <= after)
            continue;
        ps_profile lp;
        if ((st = ps_profile_get(c->t, links[i], &lp)) != PS_OK)
            break;
        ps_buf_printf(b, "%s{\"to_collection\":\"%s\",\"external_ids\":[", shown++ ? "," : "",
                      ps_collection_name(lp.collection));
        st = ps_profile_external_ids_json(c->t, &lp, PS_EXTID_SOURCE, b);
        ps_buf_puts(b, "]}");
    }
    if (st != PS_OK) {
        free(links);
        return storage_error(c, st);
    }
    ps_buf_putc(b, ']');
    if (i < nlinks) { /* a cursor only when there is more */
        uint8_t next[8];
        ps_put_be64(next, links[i - 1]);
        put_cursor(c, true, c->p.seq, next, sizeof next, limit);
    }
    ps_buf_putc(b, '}');
    free(links);
    return true;
}

/* ---- /profiles (list) ---- */

typedef struct list_page {
    ctx *c;
    size_t limit, shown;
    uint64_t last;
    bool has_more;
} list_page;

static bool list_profile(void *ud, const ps_profile *p)
{
    list_page *pg = ud;
    if (p->parent != 0 || p->collection != pg->c->coll)
        return true;
    if (pg->shown == pg->limit) {
        pg->has_more = true;
        return false;
    }
    ps_buf *b = &pg->c->out->body;
    ps_buf_puts(b, pg->shown++ ? ",{\"segment_id\":\"" : "{\"segment_id\":\"");
    ps_buf_puts(b, p->segment_id);
    ps_buf_puts(b, "\",\"metadata\":");
    ps_profile_metadata_json(b, p);
    ps_buf_putc(b, '}');
    pg->last = p->seq;
    return true;
}

static bool serve_profiles(ctx *c)
{
    size_t limit, pos_len = 0;
    bool has_pos;
    uint8_t pos[PS_CURSOR_POS_MAX];
    if (!get_limit(c, 10, 100, &limit) || !get_cursor(c, c->coll, pos, &pos_len, &has_pos))
        return false;
    if (has_pos && pos_len != 8) {
        ps_api_error(c->out, 400, "invalid_request_error", "The parameter `next` is malformed.");
        return false;
    }
    list_page pg = {c, limit, 0, 0, false};
    ps_buf_puts(&c->out->body, "{\"data\":[");
    ps_status st =
        ps_profile_scan_desc(c->t, has_pos ? ps_get_be64(pos) : UINT64_MAX, list_profile, &pg);
    if (st != PS_OK)
        return storage_error(c, st);
    ps_buf_putc(&c->out->body, ']');
    uint8_t next[8];
    ps_put_be64(next, pg.last);
    put_cursor(c, pg.has_more, c->coll, next, sizeof next, limit);
    ps_buf_putc(&c->out->body, '}');
    return true;
}

/* ---- POST …/external_ids/delete ---- */

static bool serve_delete(ctx *c)
{
    const ps_api_request *rq = c->rq;
    if (c->coll != PS_USERS) {
        ps_api_error(c->out, 400, "bad_request", "Invalid collection: %s.", rq->collection);
        return false;
    }
    const char *colon = memchr(rq->ident, ':', rq->ident_len);
    size_t tl = colon ? (size_t)(colon - rq->ident) : rq->ident_len;
    if (colon == NULL || tl != 7 || memcmp(rq->ident, "user_id", 7) != 0) {
        ps_api_error(c->out, 400, "bad_request",
                     "Invalid URL: valid `user_id` is required. Unsupported `%.*s`.",
                     (int)(tl < 64 ? tl : 64), rq->ident);
        return false;
    }
    char type[PS_TYPE_MAX + 1], value[PS_VALUE_MAX + 1];
    size_t vl;
    const char *why = "";
    ps_status st = ps_event_parse_delete_ids(rq->body, rq->body_len, type, value, &vl, &why);
    if (st != PS_OK) {
        ps_api_error(c->out, 400, "bad_request", "%s", why);
        return false;
    }
    const ps_type_rule *rule = ps_rules_type(c->rules, type);
    if (strcmp(type, "group_id") == 0 || rule->collection != PS_USERS) {
        ps_api_error(c->out, 400, "unsupported_eid_type", "Unsupported external id type.");
        return false;
    }
    if (rule->lowercase)
        ps_ascii_lower(value, vl);
    /* the lookup id, normalized as ingest would */
    const char *lv = colon + 1;
    size_t ll = rq->ident_len - tl - 1;
    ps_trim(&lv, &ll);
    if (strcmp(type, "user_id") == 0 && ll == vl && memcmp(lv, value, vl) == 0) {
        ps_api_error(c->out, 400, "bad_request",
                     "External id specification must differ from lookup id.");
        return false;
    }
    /* the read transaction authenticated the request; the change gets its own writer */
    ps_txn_abort(c->t);
    c->t = NULL;
    if ((st = ps_txn_begin(ps_space_store(c->sp), true, &c->t)) != PS_OK)
        return storage_error(c, st);
    ps_profile p;
    st = ps_profile_find(c->t, c->rules, PS_USERS, rq->ident, rq->ident_len, &p);
    if (st == PS_ENOTFOUND || st == PS_EINVAL) {
        ps_api_error(c->out, 404, "not_found", "The resource was not found.");
        return false;
    }
    ps_resolve_in in = {
        .collection = PS_USERS,
        .event_type = 0,
        .message_id = "",
        .source_id = "profile-api-source",
        .timestamp_ms = rq->now_ms,
        .received_ms = rq->now_ms,
    };
    if (st == PS_OK)
        st = ps_graph_unmap(c->t, p.seq, type, value, vl, &in);
    if (st == PS_ENOTFOUND) {
        ps_api_error(c->out, 404, "eid_not_found", "External identifier not found.");
        return false;
    }
    if (st == PS_OK) {
        st = ps_txn_commit(c->t);
        c->t = NULL;
    }
    if (st != PS_OK)
        return storage_error(c, st);
    ps_log(PS_LOG_INFO, "msg=\"identifier removed\" space=%s segment_id=%s type=%s", rq->space_name,
           p.segment_id, type);
    c->out->status = 200;
    ps_buf_puts(&c->out->body,
                "{\"code\":\"success\",\"message\":\"External identifier has been deleted.\"}");
    return true;
}

/* ---- regulations ---- */

#define REG_PAGE_DEFAULT 10
#define REG_PAGE_MAX 50

static void serve_regulations(ctx *c)
{
    const ps_api_request *rq = c->rq;
    ps_api_reply *out = c->out;
    ps_status st;
    if (rq->route == PS_API_REG_CREATE) {
        ps_reg_request reg;
        const char *why = "";
        if (ps_event_parse_regulation(rq->body ? rq->body : "", rq->body_len, &reg, &why) !=
            PS_OK) {
            ps_api_error(out, 400, "bad_request", "%s", why);
            return;
        }
        if (rq->replicated) { /* the stream takes it; the transport publishes the record */
            ps_regulation_encode(&reg, rq->now_ms, &out->body);
            ps_reg_request_clear(&reg);
            out->publish_regulation = true;
            return;
        }
        char id[PS_REG_ID_BUF];
        st = ps_regulation_create(c->sp, &reg, rq->now_ms, id, &out->regulation_seq);
        ps_reg_request_clear(&reg);
        if (st != PS_OK) {
            storage_error(c, st);
            return;
        }
        ps_buf_printf(&out->body, "{\"data\":{\"regulateId\":\"%s\"}}", id);
        return;
    }
    if (rq->route == PS_API_REG_GET) {
        ps_buf_puts(&out->body, "{\"data\":{\"regulation\":");
        st = ps_regulation_get(c->sp, rq->ident, &out->body);
        if (st == PS_ENOTFOUND) {
            ps_api_error(out, 404, "not_found", "No regulation with this id in the space.");
            return;
        }
        if (st != PS_OK) {
            storage_error(c, st);
            return;
        }
        ps_buf_puts(&out->body, "}}");
        return;
    }
    /* the list: newest first; `cursor` continues where the last page stopped */
    size_t limit = REG_PAGE_DEFAULT;
    uint64_t before = 0;
    const ps_api_param *lp = param(c, "limit"), *cp = param(c, "cursor");
    if (lp) {
        char *end;
        unsigned long v = strtoul(lp->value, &end, 10);
        if (*end || v < 1 || v > REG_PAGE_MAX) {
            ps_api_error(out, 400, "validation_error",
                         "The parameter `limit` must be a number from 1 to %d.", REG_PAGE_MAX);
            return;
        }
        limit = v;
    }
    if (cp && cp->value[0]) {
        char *end;
        unsigned long long v = strtoull(cp->value, &end, 10);
        if (*end || v == 0) {
            ps_api_error(out, 400, "invalid_request_error",
                         "The parameter `cursor` is not a cursor this API returned.");
            return;
        }
        before = v;
    }
    uint64_t next;
    size_t count;
    ps_buf_puts(&out->body, "{\"data\":{\"regulations\":[");
    st = ps_regulation_list(c->sp, before, limit, &out->body, &next, &count);
    if (st != PS_OK) {
        storage_error(c, st);
        return;
    }
    ps_buf_puts(&out->body, "],\"pagination\":{\"current\":");
    if (before)
        ps_buf_printf(&out->body, "\"%llu\"", (unsigned long long)before);
    else
        ps_buf_puts(&out->body, "\"\"");
    ps_buf_puts(&out->body, ",\"next\":");
    if (next)
        ps_buf_printf(&out->body, "\"%llu\"", (unsigned long long)next);
    else
        ps_buf_puts(&out->body, "null");
    ps_buf_puts(&out->body, "}}}");
    (void)count;
}

/* False (and a 400) when a query parameter is given twice. */
static bool params_once(ctx *c)
{
    const ps_api_request *rq = c->rq;
    for (size_t i = 0; i < rq->param_count; i++)
        for (size_t k = i + 1; k < rq->param_count; k++)
            if (strcmp(rq->params[i].name, rq->params[k].name) == 0) {
                ps_api_error(c->out, 400, "invalid_request_error",
                             "The parameter `%.60s` is given more than once.", rq->params[i].name);
                return false;
            }
    return true;
}

/* ---- the change feed ---- */

#define CHANGES_PAGE_DEFAULT 100
#define CHANGES_PAGE_MAX 1000
#define CHANGES_WAIT_MAX_S 30

typedef struct changes_page {
    ps_buf *body;
    size_t rows;
} changes_page;

static bool page_change(void *ud, const ps_change_row *r)
{
    changes_page *pg = ud;
    if (pg->rows++)
        ps_buf_putc(pg->body, ',');
    ps_changes_row_json(r, true, pg->body);
    return true;
}

/* A whole number of at most `digits` digits; false (and a 400) otherwise. */
static bool get_whole(ctx *c, const char *name, int digits, uint64_t max, uint64_t *out)
{
    const ps_api_param *p = param(c, name);
    *out = 0;
    if (p == NULL)
        return true;
    bool ok = p->value_len > 0 && p->value_len <= (size_t)digits;
    for (size_t i = 0; ok && i < p->value_len; i++) {
        ok = p->value[i] >= '0' && p->value[i] <= '9';
        *out = *out * 10 + (uint64_t)(p->value[i] - '0');
    }
    if (!ok || *out > max) {
        ps_api_error(c->out, 400, "validation_error",
                     "The parameter `%s` must be a whole number from 0 to %llu, got `%.*s`.", name,
                     (unsigned long long)max, ECHO(p));
        return false;
    }
    return true;
}

static void serve_changes(ctx *c)
{
    ps_api_reply *out = c->out;
    size_t limit;
    uint64_t after, wait_s;
    unsigned tables = PS_CH_ALL;
    const ps_api_param *tp = param(c, "table");
    if (!get_limit(c, CHANGES_PAGE_DEFAULT, CHANGES_PAGE_MAX, &limit) ||
        !get_whole(c, "after", 19, INT64_MAX, &after) ||
        !get_whole(c, "wait", 2, CHANGES_WAIT_MAX_S, &wait_s))
        return;
    if (tp && !ps_changes_table_parse(tp->value, &tables)) {
        ps_api_error(out, 400, "validation_error",
                     "The parameter `table` must be id_graph_updates, "
                     "external_id_mapping_updates, profile_traits_updates or violations, got "
                     "`%.*s`.",
                     ECHO(tp));
        return;
    }
    changes_page pg = {&out->body, 0};
    uint64_t next;
    ps_buf_puts(&out->body, "{\"data\":[");
    ps_status st = ps_changes_scan(c->sp, after, limit, tables, page_change, &pg, &next);
    if (st != PS_OK) {
        storage_error(c, st);
        return;
    }
    ps_buf_printf(&out->body, "],\"next\":%llu}", (unsigned long long)next);
    if (pg.rows == 0 && wait_s > 0)
        out->wait_ms = (int64_t)wait_s * 1000;
}

/* ---- event filters ---- */

static void serve_filters(ctx *c)
{
    const ps_api_request *rq = c->rq;
    ps_api_reply *out = c->out;
    char err[400] = "";
    ps_status st = PS_OK;
    if (rq->route != PS_API_FILTER_LIST && rq->route != PS_API_FILTER_DELETE) {
        ps_filter_request fr;
        const char *why;
        if (ps_filters_parse_request(rq->body ? rq->body : "", rq->body_len, &fr, &why) != PS_OK) {
            ps_api_error(out, 400, "bad_request", "%s", why);
            return;
        }
        if (rq->route == PS_API_FILTER_CREATE && (!fr.has_name || fr.fql == NULL))
            ps_api_error(out, 400, "bad_request",
                         "A filter needs `name` and `if` (its FQL query); `enabled` is optional "
                         "(default true).");
        else if (rq->route == PS_API_FILTER_UPDATE && fr.fql)
            ps_api_error(out, 400, "bad_request",
                         "A filter's query is not changed in place: delete the filter and create "
                         "it again. PATCH takes `name` (a rename) and `enabled`.");
        else if (rq->route == PS_API_FILTER_CREATE)
            st = ps_eventfilter_create(c->sp, fr.name, fr.fql, fr.enabled != 0, rq->now_ms, err,
                                       sizeof err);
        else
            st = ps_eventfilter_update(c->sp, rq->ident, fr.has_name ? fr.name : NULL, fr.enabled,
                                       err, sizeof err);
        ps_filter_request_clear(&fr);
        if (out->status != 200)
            return;
    } else if (rq->route == PS_API_FILTER_DELETE) {
        st = ps_eventfilter_delete(c->sp, rq->ident, err, sizeof err);
    }
    if (st == PS_EINVAL)
        ps_api_error(out, 400, "bad_request", "%s", err);
    else if (st == PS_ECONFLICT)
        ps_api_error(out, 409, "conflict", "%s", err);
    else if (st == PS_ENOTFOUND)
        ps_api_error(out, 404, "not_found", "%s", err);
    else if (st != PS_OK)
        storage_error(c, st);
    if (st != PS_OK)
        return;
    ps_buf_puts(&out->body, "{\"data\":{\"filters\":");
    if ((st = ps_eventfilter_list(c->sp, &out->body)) != PS_OK) {
        storage_error(c, st);
        return;
    }
    ps_buf_puts(&out->body, "}}");
}

/* ---- CSV imports ---- */

static void serve_import(ctx *c)
{
    const ps_api_request *rq = c->rq;
    ps_api_reply *out = c->out;
    ps_status st;
    if (rq->route == PS_API_IMPORT_GET) {
        ps_buf_puts(&out->body, "{\"data\":{\"import\":");
        st = ps_import_status(c->sp, rq->ident, &out->body);
        if (st == PS_ENOTFOUND)
            ps_api_error(out, 404, "not_found", "No such import.");
        else if (st != PS_OK)
            storage_error(c, st);
        else
            ps_buf_puts(&out->body, "}}");
        return;
    }
    char id[PS_IMPORT_ID_BUF];
    st = ps_import_submit(c->sp, (const uint8_t *)(rq->body ? rq->body : ""), rq->body_len,
                          rq->now_ms, id);
    if (st != PS_OK) {
        storage_error(c, st);
        return;
    }
    out->import_queued = true;
    ps_buf_printf(&out->body, "{\"data\":{\"importId\":\"%s\",\"status\":\"QUEUED\"}}", id);
}

/* ---- entry ---- */

/* Checks the request's token in c->t and sets c->role; false once it wrote the 401 or 403.
 * *st: a storage error (then true is returned, for the caller to report). */
static bool token_allows(ctx *c, ps_status *st)
{
    const ps_api_request *rq = c->rq;
    *st = ps_auth_token_check(c->t, rq->token, rq->token_len, &c->role);
    if (*st == PS_EAUTH) {
        ps_api_error(c->out, 401, "authentication_error",
                     "The access token is not valid for this space.");
        return false;
    }
    if (*st == PS_OK && c->role != PS_ROLE_ADMIN && ps_api_route_changes(rq->route)) {
        ps_api_error(c->out, 403, "forbidden",
                     "This access token may only read; changing the space needs an admin token "
                     "(profilectl token create SPACE --role admin).");
        return false;
    }
    return true;
}

static bool authorize(ctx *c)
{
    const ps_api_request *rq = c->rq;
    if (rq->token == NULL) {
        ps_api_error(c->out, 401, "authentication_error",
                     "Missing access token: send it as the HTTP Basic username with an empty "
                     "password.");
        return false;
    }
    if (c->sp == NULL) {
        ps_api_error(c->out, 401, "authentication_error",
                     "The access token is not valid for this space.");
        return false;
    }
    ps_status st = ps_txn_begin(ps_space_store(c->sp), false, &c->t);
    if (st == PS_OK && !token_allows(c, &st))
        return false;
    if (st == PS_OK)
        st = ps_space_rules(c->sp, c->t, &c->rules);
    if (st != PS_OK)
        return storage_error(c, st);
    int64_t wait_ms = 0;
    if (!rq->recheck && !ps_space_rate_take(c->sp, c->rules, PS_RATE_API, rq->now_ms, &wait_ms)) {
        c->out->retry_after_s = (wait_ms + 999) / 1000;
        ps_api_error(c->out, 429, "rate_limit_error", "Too many requests hit the API too quickly.");
        return false;
    }
    if (rq->before_read) { /* what it waits for lands after this snapshot: take a new one, ask
                            * again whether the token stands (it may be gone since), and read
                            * the settings the new snapshot holds */
        ps_txn_abort(c->t);
        c->t = NULL;
        if (!rq->before_read(rq->before_read_ud, c->out))
            return false;
        if ((st = ps_txn_begin(ps_space_store(c->sp), false, &c->t)) == PS_OK &&
            !token_allows(c, &st))
            return false;
        if (st == PS_OK)
            st = ps_space_rules(c->sp, c->t, &c->rules);
    }
    if (st == PS_OK)
        st = ps_space_secret(c->sp, c->t, c->secret);
    if (st != PS_OK)
        return storage_error(c, st);
    return true;
}

static bool find_profile(ctx *c)
{
    const ps_api_request *rq = c->rq;
    ps_status st = ps_profile_find(c->t, c->rules, c->coll, rq->ident, rq->ident_len, &c->p);
    if (st == PS_EINVAL) {
        ps_api_error(c->out, 400, "invalid_request_error",
                     "The profile identifier must be type:value (for example user_id:u123) or "
                     "a segment_id.");
        return false;
    }
    if (st == PS_ENOTFOUND) {
        ps_api_error(c->out, 404, "not_found", "Profile was not found.");
        return false;
    }
    if (st == PS_OK)
        st = ps_profile_members(c->t, c->p.seq, &c->members, &c->n);
    return st == PS_OK || storage_error(c, st);
}

/* The routes of one collection's profiles, once authorized. Every transaction they use is
 * c->t, so that a guarded call cut short leaves nothing open that ps_api_serve does not end. */
static void serve_collection(ctx *c)
{
    const ps_api_request *rq = c->rq;
    int coll = ps_collection_parse(rq->collection);
    if (coll >= 0) {
        c->coll = (uint8_t)coll;
    } else {
        ps_api_error(c->out, 400, "validation_error",
                     "The parameter `collection` must be users or accounts.");
        return;
    }
    if (!params_once(c))
        return;
    switch (rq->route) {
    case PS_API_PROFILES: serve_profiles(c); break;
    case PS_API_DELETE_IDS: serve_delete(c); break;
    case PS_API_TRAITS:
    case PS_API_EXTERNAL_IDS:
    case PS_API_EVENTS:
    case PS_API_METADATA:
    case PS_API_LINKS:
    case PS_API_MERGES:
        if (!find_profile(c))
            break;
        if (rq->route == PS_API_TRAITS)
            serve_traits(c);
        else if (rq->route == PS_API_EXTERNAL_IDS)
            serve_external_ids(c);
        else if (rq->route == PS_API_EVENTS)
            serve_events(c);
        else if (rq->route == PS_API_METADATA)
            serve_metadata(c);
        else if (rq->route == PS_API_MERGES)
            serve_merges(c);
        else
            serve_links(c);
        break;
    case PS_API__ROUTES:
    default: ps_api_error(c->out, 404, "not_found", "No such route."); break;
    }
}

static ps_status authorize_guarded(void *ud)
{
    ctx *c = ud;
    c->authorized = authorize(c);
    return PS_OK;
}

static ps_status serve_collection_guarded(void *ud)
{
    serve_collection(ud);
    return PS_OK;
}

/* A damaged page stopped a guarded step: whatever it began to answer gives way to the error. */
static bool damaged(ctx *c, ps_status guarded)
{
    if (guarded == PS_OK)
        return false;
    ps_buf_reset(&c->out->body);
    c->out->retry_after_s = 0;
    storage_error(c, guarded);
    return true;
}

/* Reads run guarded: a page LMDB finds broken fails the request, not the server. Without a
 * space there is nothing to read, and authorize() answers at once. */
static bool authorize_reading(ctx *c)
{
    if (c->sp == NULL)
        return authorize(c);
    return !damaged(c, ps_store_guarded(ps_space_store(c->sp), authorize_guarded, c)) &&
           c->authorized;
}

void ps_api_serve(ps_space *sp, const ps_api_request *rq, ps_api_reply *out)
{
    ctx c = {.sp = sp, .rq = rq, .out = out};
    out->status = 200;
    out->retry_after_s = 0;
    out->regulation_seq = 0;
    out->wait_ms = 0;
    out->import_queued = false;
    out->publish_regulation = false;
    ps_buf_reset(&out->body);
    if (!authorize_reading(&c))
        goto done;
    if (rq->replicated && (rq->route == PS_API_DELETE_IDS || rq->route == PS_API_IMPORT_CREATE)) {
        ps_api_error(out, 409, "not_replicated", "%s",
                     rq->route == PS_API_DELETE_IDS
                         ? "This space is replicated, and deleting one identifier does "
                           "not travel in its stream: create a DELETE regulation for the "
                           "userId instead."
                         : "This space is replicated, and CSV imports do not travel in "
                           "its stream: send the rows as identify calls instead.");
        goto done;
    }
    if (rq->route >= PS_API_REG_CREATE && rq->route < PS_API__ROUTES) {
        ps_txn_abort(c.t); /* the space's own routes run their own transactions (unguarded:
                            * a guard cut short would leave them open) */
        c.t = NULL;
        switch (rq->route) {
        case PS_API_CHANGES:
            if (params_once(&c))
                serve_changes(&c); /* from its own snapshot, the newest */
            break;
        case PS_API_FILTER_LIST:
        case PS_API_FILTER_CREATE:
        case PS_API_FILTER_UPDATE:
        case PS_API_FILTER_DELETE: serve_filters(&c); break;
        case PS_API_IMPORT_CREATE:
        case PS_API_IMPORT_GET: serve_import(&c); break;
        default: serve_regulations(&c); break;
        }
        goto done;
    }
    (void)damaged(&c, ps_store_guarded(ps_space_store(sp), serve_collection_guarded, &c));
done:
    ps_txn_abort(c.t);
    free(c.members);
}
