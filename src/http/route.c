/* SPDX-License-Identifier: MIT */
/* route: what a request's path, query and Authorization header say, decoded without I/O so
 * that it can be fuzzed (fuzz/fuzz_http.c): Profile API routes with their percent-decoded
 * identifier, query parameters and token, Tracking API routes, and Basic credentials. */
#include "http_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ps/event.h"
#include "ps/text.h"

/* Splits the raw path into segments (not decoded). Returns the count, or -1 when there are
 * too many or an empty one (a doubled or trailing slash). */
static int split_path(char *path, char **seg)
{
    if (path[0] != '/')
        return -1;
    char *p = path + 1;
    if (*p == 0)
        return 0;
    for (int n = 0;;) {
        char *slash = strchr(p, '/');
        if (n == MAX_SEGMENTS || slash == p || (slash == NULL && *p == 0))
            return -1;
        seg[n++] = p;
        if (slash == NULL)
            return n;
        *slash = 0;
        p = slash + 1;
    }
}

/* Decodes the query string into params; names and values are copied into `store`. */
static bool parse_query(const char *q, char *store, ps_api_param *params, size_t *count,
                        const char **why)
{
    *count = 0;
    if (q == NULL)
        return true;
    size_t o = 0;
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > 0) {
            if (*count == MAX_PARAMS) {
                *why = "The query string has too many parameters.";
                return false;
            }
            const char *eq = memchr(q, '=', len);
            size_t nl = eq ? (size_t)(eq - q) : len, dl;
            ps_api_param *p = &params[(*count)++];
            p->name = store + o;
            if (!ps_pct_decode(q, nl, true, store + o, &dl))
                goto bad;
            if (memchr(store + o, 0, dl))
                goto nul;
            o += dl;
            store[o++] = 0;
            p->value = store + o;
            p->value_len = 0;
            if (eq && !ps_pct_decode(eq + 1, len - nl - 1, true, store + o, &p->value_len))
                goto bad;
            if (memchr(store + o, 0, p->value_len))
                goto nul;
            o += p->value_len;
            store[o++] = 0;
        }
        q += len + (amp ? 1 : 0);
    }
    return true;
bad:
    *why = "The query string has a malformed percent-encoding.";
    return false;
nul:
    *why = "The query string contains a NUL byte.";
    return false;
}

bool http_basic_user(const char *h, size_t hl, bool only_basic, char *user, size_t cap, size_t *len)
{
    *len = 0;
    if (h == NULL)
        return true;
    if (hl < 6 || strncasecmp(h, "Basic ", 6) != 0)
        return !only_basic;
    const char *b64 = h + 6;
    size_t bl = hl - 6, n;
    ps_trim(&b64, &bl);
    uint8_t raw[MAX_AUTH_BYTES];
    if (!ps_b64_decode(b64, bl, false, raw, sizeof raw, &n) || memchr(raw, 0, n))
        return false;
    const uint8_t *colon = memchr(raw, ':', n);
    size_t ul = colon ? (size_t)(colon - raw) : n;
    if (ul == 0 || ul >= cap)
        return false;
    memcpy(user, raw, ul);
    user[ul] = 0;
    *len = ul;
    return true;
}

/* The Profile API's token: the Basic username (the colon may be left out), or a Bearer
 * token, which some clients send instead. */
static bool access_token(const char *h, size_t hl, char *token, size_t cap, size_t *len)
{
    if (h == NULL || hl < 7 || strncasecmp(h, "Bearer ", 7) != 0)
        return http_basic_user(h, hl, true, token, cap, len);
    const char *v = h + 7;
    size_t vl = hl - 7;
    ps_trim(&v, &vl);
    *len = 0;
    if (vl == 0 || vl >= cap || memchr(v, ' ', vl))
        return false;
    memcpy(token, v, vl);
    token[vl] = 0;
    *len = vl;
    return true;
}

/* Routes `/v1/spaces/{space}/collections/{c}/profiles[/{ident}/{resource}[/delete]]` (and the
 * legacy `/v1/namespaces/…`). Returns the route or -1 for no route; *method_ok tells whether
 * the method fits it. */
static int route_of(char **seg, int n, int method, bool *method_ok)
{
    *method_ok = method == HTTP_GET || method == HTTP_HEAD; /* HEAD: the same, bodiless */
    if ((n == 4 || n == 5) && strcmp(seg[0], "v1") == 0 && strcmp(seg[1], "spaces") == 0 &&
        strcmp(seg[3], "regulations") == 0) {
        if (n == 5)
            return PS_API_REG_GET;
        *method_ok = *method_ok || method == HTTP_POST;
        return method == HTTP_POST ? PS_API_REG_CREATE : PS_API_REG_LIST;
    }
    if (n == 4 && strcmp(seg[0], "v1") == 0 && strcmp(seg[1], "spaces") == 0 &&
        strcmp(seg[3], "changes") == 0)
        return PS_API_CHANGES;
    if ((n == 4 || n == 5) && strcmp(seg[0], "v1") == 0 && strcmp(seg[1], "spaces") == 0 &&
        strcmp(seg[3], "imports") == 0) {
        if (n == 4) {
            *method_ok = method == HTTP_POST;
            return PS_API_IMPORT_CREATE;
        }
        return PS_API_IMPORT_GET; /* GET or HEAD */
    }
    if ((n == 4 || n == 5) && strcmp(seg[0], "v1") == 0 && strcmp(seg[1], "spaces") == 0 &&
        strcmp(seg[3], "filters") == 0) {
        if (n == 4) {
            *method_ok = *method_ok || method == HTTP_POST;
            return method == HTTP_POST ? PS_API_FILTER_CREATE : PS_API_FILTER_LIST;
        }
        *method_ok = method == HTTP_PATCH || method == HTTP_DELETE;
        return method == HTTP_DELETE ? PS_API_FILTER_DELETE : PS_API_FILTER_UPDATE;
    }
    if (n < 6 || strcmp(seg[0], "v1") != 0 ||
        (strcmp(seg[1], "spaces") != 0 && strcmp(seg[1], "namespaces") != 0) ||
        strcmp(seg[3], "collections") != 0 || strcmp(seg[5], "profiles") != 0)
        return -1;
    if (n == 6)
        return PS_API_PROFILES;
    if (n == 8) /* a profile's resource: the route's own name (ps_api_route_name) */
        for (int r = PS_API_TRAITS; r <= PS_API_MERGES; r++)
            if (strcmp(seg[7], ps_api_route_name((ps_api_route)r)) == 0)
                return r;
    if (n == 9 && strcmp(seg[7], "external_ids") == 0 && strcmp(seg[8], "delete") == 0) {
        *method_ok = method == HTTP_POST;
        return PS_API_DELETE_IDS;
    }
    return -1;
}

int http_route_of_request(const char *path, int method, char *scratch)
{
    char *seg[MAX_SEGMENTS];
    bool method_ok;
    int n = split_path(strcpy(scratch, path), seg);
    int route = n < 0 ? -1 : route_of(seg, n, method, &method_ok);
    return route >= 0 && method_ok ? route : -1;
}

bool http_url_host_chars_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr(".-:[]/_~", s[i])))
            return false;
    return true;
}

bool http_track_settings_route(const char *path, char *key, size_t cap)
{
    static const char prefix[] = "/v1/projects/", suffix[] = "/settings";
    size_t pl = sizeof prefix - 1, sl = sizeof suffix - 1, len = strlen(path), kl;
    if (len <= pl + sl || strncmp(path, prefix, pl) != 0 || strcmp(path + len - sl, suffix) != 0)
        return false;
    const char *k = path + pl;
    size_t raw = len - pl - sl;
    if (memchr(k, '/', raw) || raw >= cap || !ps_pct_decode(k, raw, false, key, &kl) || kl == 0 ||
        memchr(key, 0, kl))
        return false;
    key[kl] = 0;
    return true;
}

int http_route_profile(char *path, const char *query, int method, const char *auth, size_t auth_len,
                       char *query_store, char *ident_store, ps_api_param *params, char *token,
                       ps_api_request *out, const char **allow, const char **why)
{
    char *seg[MAX_SEGMENTS];
    int n;
    bool method_ok;
    memset(out, 0, sizeof *out);
    *why = "";
    int route = (n = split_path(path, seg)) < 0 ? -1 : route_of(seg, n, method, &method_ok);
    if (route < 0) {
        *why = n == 7 && strcmp(seg[5], "profiles") == 0
                   ? "No such route: name what to read after the profile, /traits, "
                     "/external_ids, /events, /metadata or /links."
                   : "No such route.";
        return 404;
    }
    out->route = (ps_api_route)route;
    if (!method_ok) {
        bool one_filter = route == PS_API_FILTER_UPDATE || route == PS_API_FILTER_DELETE;
        bool list = route == PS_API_REG_LIST || route == PS_API_FILTER_LIST;
        *allow = route == PS_API_DELETE_IDS || route == PS_API_IMPORT_CREATE ? "POST"
                 : list                                                      ? "GET, POST"
                 : one_filter                                                ? "PATCH, DELETE"
                                                                             : "GET";
        *why = route == PS_API_DELETE_IDS || route == PS_API_IMPORT_CREATE
                   ? "Use POST on this route."
               : list       ? "Use GET or POST on this route."
               : one_filter ? "Use PATCH or DELETE on this route."
                            : "Use GET on this route.";
        return 405;
    }
    bool reg = route >= PS_API_REG_CREATE; /* and every later route: no collection */
    out->space_name = seg[2];
    out->collection = reg ? NULL : seg[4];
    out->params = params;
    if (!parse_query(query, query_store, params, &out->param_count, why))
        return 400;
    if (route == PS_API_REG_GET || route == PS_API_FILTER_UPDATE || route == PS_API_FILTER_DELETE ||
        route == PS_API_IMPORT_GET) {
        size_t len = strlen(seg[4]);
        if (len > 64) /* ids are "reg_" and 16 hex digits: a longer one is simply unknown */
            len = 0;
        memcpy(ident_store, seg[4], len);
        ident_store[len] = 0;
        out->ident = ident_store;
        out->ident_len = len;
    } else if (n >= 8) {
        if (!ps_pct_decode(seg[6], strlen(seg[6]), false, ident_store, &out->ident_len) ||
            memchr(ident_store, 0, out->ident_len)) {
            *why = "The profile identifier has a malformed percent-encoding.";
            return 400;
        }
        out->ident = ident_store;
    }
    if (!access_token(auth, auth_len, token, MAX_AUTH_BYTES, &out->token_len)) {
        *why = "The Authorization header must be Basic base64(<token>:) or Bearer <token>.";
        return 401;
    }
    out->token = out->token_len ? token : NULL;
    return 0;
}

static const struct {
    const char *name;
    ps_msg_type type;
} routes[] = {
    {"identify", PS_MSG_IDENTIFY}, {"i", PS_MSG_IDENTIFY},  {"track", PS_MSG_TRACK},
    {"t", PS_MSG_TRACK},           {"page", PS_MSG_PAGE},   {"p", PS_MSG_PAGE},
    {"screen", PS_MSG_SCREEN},     {"s", PS_MSG_SCREEN},    {"group", PS_MSG_GROUP},
    {"g", PS_MSG_GROUP},           {"alias", PS_MSG_ALIAS}, {"a", PS_MSG_ALIAS},
    {"batch", PS_MSG_NONE},        {"b", PS_MSG_NONE},      {"import", PS_MSG_NONE},
};

int http_track_route(const char *path, int *type)
{
    if (strncmp(path, "/v1/", 4) != 0)
        return -1;
    const char *name = path + 4;
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '/') /* some clients add a trailing slash */
        len--;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (strlen(routes[i].name) == len && memcmp(routes[i].name, name, len) == 0) {
            *type = (int)routes[i].type;
            return routes[i].type == PS_MSG_NONE ? ROUTE_BATCH : ROUTE_TRACK;
        }
    return -1;
}

int http_operational_route(const char *path)
{
    return strcmp(path, "/healthz") == 0   ? ROUTE_HEALTHZ
           : strcmp(path, "/metrics") == 0 ? ROUTE_METRICS
                                           : -1;
}

const http_ui_asset *http_ui_route(const char *path, bool *redirect)
{
    *redirect = strcmp(path, "/ui") == 0;
    if (*redirect)
        return &http_ui_assets[0];
    if (strncmp(path, "/ui/", 4) != 0)
        return NULL;
    const char *name = path[4] ? path + 4 : "index.html";
    for (size_t i = 0; i < http_ui_asset_count; i++)
        if (strcmp(http_ui_assets[i].name, name) == 0)
            return &http_ui_assets[i];
    return NULL;
}

/* The profile routes, under the prefix P: /v1/spaces and its legacy twin /v1/namespaces. */
/* clang-format off */
#define PROFILE_ROUTES(P)                                                         \
    {"GET", P "/{ident}/traits", PS_API_TRAITS},                                  \
    {"GET", P "/{ident}/external_ids", PS_API_EXTERNAL_IDS},                      \
    {"GET", P "/{ident}/events", PS_API_EVENTS},                                  \
    {"GET", P "/{ident}/metadata", PS_API_METADATA},                              \
    {"GET", P "/{ident}/links", PS_API_LINKS},                                    \
    {"GET", P "/{ident}/merges", PS_API_MERGES},                                  \
    {"GET", P, PS_API_PROFILES},                                                  \
    {"POST", P "/{ident}/external_ids/delete", PS_API_DELETE_IDS}
/* clang-format on */
const http_route_entry http_routes[] = {
    {"GET", "/healthz", ROUTE_HEALTHZ},
    {"GET", "/metrics", ROUTE_METRICS},
    {"GET", "/ui/", ROUTE_UI},
    {"GET", "/ui/index.html", ROUTE_UI},
    {"GET", "/ui/app.js", ROUTE_UI},
    {"GET", "/ui/app.css", ROUTE_UI},
    PROFILE_ROUTES("/v1/spaces/{space}/collections/{collection}/profiles"),
    PROFILE_ROUTES("/v1/namespaces/{space}/collections/{collection}/profiles"),
    {"POST", "/v1/spaces/{space}/regulations", PS_API_REG_CREATE},
    {"GET", "/v1/spaces/{space}/regulations", PS_API_REG_LIST},
    {"GET", "/v1/spaces/{space}/regulations/{id}", PS_API_REG_GET},
    {"GET", "/v1/spaces/{space}/changes", PS_API_CHANGES},
    {"GET", "/v1/spaces/{space}/filters", PS_API_FILTER_LIST},
    {"POST", "/v1/spaces/{space}/filters", PS_API_FILTER_CREATE},
    {"PATCH", "/v1/spaces/{space}/filters/{name}", PS_API_FILTER_UPDATE},
    {"DELETE", "/v1/spaces/{space}/filters/{name}", PS_API_FILTER_DELETE},
    {"POST", "/v1/spaces/{space}/imports", PS_API_IMPORT_CREATE},
    {"GET", "/v1/spaces/{space}/imports/{id}", PS_API_IMPORT_GET},
    {"POST", "/v1/identify", ROUTE_TRACK},
    {"POST", "/v1/i", ROUTE_TRACK},
    {"POST", "/v1/track", ROUTE_TRACK},
    {"POST", "/v1/t", ROUTE_TRACK},
    {"POST", "/v1/page", ROUTE_TRACK},
    {"POST", "/v1/p", ROUTE_TRACK},
    {"POST", "/v1/screen", ROUTE_TRACK},
    {"POST", "/v1/s", ROUTE_TRACK},
    {"POST", "/v1/group", ROUTE_TRACK},
    {"POST", "/v1/g", ROUTE_TRACK},
    {"POST", "/v1/alias", ROUTE_TRACK},
    {"POST", "/v1/a", ROUTE_TRACK},
    {"POST", "/v1/batch", ROUTE_BATCH},
    {"POST", "/v1/b", ROUTE_BATCH},
    {"POST", "/v1/import", ROUTE_BATCH},
    {"GET", "/v1/projects/{writeKey}/settings", ROUTE_SETTINGS},
};
const size_t http_route_count = sizeof http_routes / sizeof *http_routes;

/* The tracking routes and the message-type table above serve the same paths. */
_Static_assert(sizeof routes / sizeof *routes == 15, "a route entry per tracking path");

bool http_route_entry_check(const http_route_entry *e, char *why, size_t cap)
{
    static const struct {
        const char *name, *value;
    } fill[] = {{"{space}", "s"},  {"{collection}", "users"}, {"{ident}", "user_id:u1"},
                {"{id}", "reg_0"}, {"{name}", "f"},           {"{writeKey}", "k"}};
    char path[256] = "", scratch[256];
    for (const char *p = e->path; *p;) {
        size_t k = 0, n = sizeof fill / sizeof *fill;
        while (k < n && strncmp(p, fill[k].name, strlen(fill[k].name)) != 0)
            k++;
        size_t len = strlen(path);
        if (k < n) {
            snprintf(path + len, sizeof path - len, "%s", fill[k].value);
            p += strlen(fill[k].name);
        } else if (len + 1 < sizeof path) {
            path[len] = *p++;
            path[len + 1] = 0;
        } else {
            p++;
        }
    }
    int method = http_method_parse(e->method);
    int got, type;
    char key[64];
    bool redirect;
    if (e->route == ROUTE_HEALTHZ || e->route == ROUTE_METRICS)
        got = http_operational_route(path);
    else if (e->route == ROUTE_UI)
        got = http_ui_route(path, &redirect) && !redirect ? ROUTE_UI : -1;
    else if (e->route == ROUTE_TRACK || e->route == ROUTE_BATCH)
        got = method == HTTP_POST ? http_track_route(path, &type) : -1;
    else if (e->route == ROUTE_SETTINGS)
        got = method == HTTP_GET && http_track_settings_route(path, key, sizeof key)
                  ? ROUTE_SETTINGS
                  : -1;
    else
        got = http_route_of_request(path, method, scratch);
    if (got != e->route)
        snprintf(why, cap, "%s %s is routed to %d, not %d", e->method, path, got, e->route);
    return got == e->route;
}
