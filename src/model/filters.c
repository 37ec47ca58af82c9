/* SPDX-License-Identifier: MIT */
/* filters: the filter document parsed, compiled and changed (see ps/filters.h). */
#include "ps/filters.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ps/clock.h"
#include "ps/json.h"
#include "ps/text.h"

typedef struct filter {
    char name[PS_FILTER_NAME_MAX + 1];
    char *fql;
    ps_fql *q;
    bool enabled;
    int64_t created_ms;
} filter;

struct ps_filter_set {
    filter items[PS_FILTERS_MAX];
    size_t count;
};

bool ps_filter_name_valid(const char *name)
{
    return ps_name_valid(name, PS_FILTER_NAME_MAX);
}

void ps_filters_free(ps_filter_set *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->count; i++) {
        free(s->items[i].fql);
        ps_fql_free(s->items[i].q);
    }
    free(s);
}

/* A name a new filter (or a renamed one) may take in `s`: PS_EINVAL when it is malformed,
 * PS_ECONFLICT when it is taken; `err` says which. */
static ps_status check_name(const ps_filter_set *s, const char *name, char *err, size_t err_cap)
{
    if (!ps_filter_name_valid(name)) {
        snprintf(err, err_cap, "filter name '%.80s' must be 1-%d characters of A-Z a-z 0-9 _ -",
                 name, PS_FILTER_NAME_MAX);
        return PS_EINVAL;
    }
    for (size_t i = 0; s && i < s->count; i++)
        if (strcmp(s->items[i].name, name) == 0) {
            snprintf(err, err_cap, "there is already a filter named '%s'", name);
            return PS_ECONFLICT;
        }
    return PS_OK;
}

/* Checks one more filter for `s` (its name, the count, its query): PS_OK with the compiled
 * query in *q, else a status and `err` (see ps_filters_add). */
static ps_status check_new(const ps_filter_set *s, const char *name, const char *fql, ps_fql **q,
                           char *err, size_t err_cap)
{
    ps_status st = check_name(s, name, err, err_cap);
    if (st != PS_OK)
        return st;
    if (ps_filters_count(s) == PS_FILTERS_MAX) {
        snprintf(err, err_cap, "a space has at most %d filters", PS_FILTERS_MAX);
        return PS_EINVAL;
    }
    char why[200];
    if (ps_fql_compile(fql, strlen(fql), q, why, sizeof why) != PS_OK) {
        snprintf(err, err_cap, "filter '%s': the query is not valid FQL: %s", name, why);
        return PS_EINVAL;
    }
    return PS_OK;
}

/* Adds one filter to `s`, checking it; false with `err` otherwise. */
static bool add(ps_filter_set *s, const char *name, const char *fql, bool enabled,
                int64_t created_ms, char *err, size_t err_cap)
{
    ps_fql *q;
    if (check_new(s, name, fql, &q, err, err_cap) != PS_OK)
        return false;
    filter *f = &s->items[s->count++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->fql = ps_xstrdup(fql);
    f->q = q;
    f->enabled = enabled;
    f->created_ms = created_ms;
    return true;
}

ps_status ps_filters_parse(const char *doc, size_t len, ps_filter_set **out, char *err,
                           size_t err_cap)
{
    *out = ps_xcalloc(1, sizeof **out);
    if (len == 0)
        return PS_OK;
    cJSON *root = cJSON_ParseWithLength(doc, len);
    ps_status st = PS_OK;
    if (!cJSON_IsArray(root)) {
        snprintf(err, err_cap, "the filters are not a JSON array");
        st = PS_EINVAL;
    }
    const cJSON *it, *list = st == PS_OK ? root : NULL;
    cJSON_ArrayForEach(it, list)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name"),
                    *fql = cJSON_GetObjectItemCaseSensitive(it, "if"),
                    *on = cJSON_GetObjectItemCaseSensitive(it, "enabled"),
                    *at = cJSON_GetObjectItemCaseSensitive(it, "created_at");
        int64_t ms = 0;
        if (!cJSON_IsString(name) || !cJSON_IsString(fql) || !cJSON_IsBool(on) ||
            !cJSON_IsString(at) ||
            ps_time_parse(at->valuestring, strlen(at->valuestring), &ms) != PS_OK) {
            snprintf(err, err_cap, "a filter needs name, if, enabled and created_at");
            st = PS_EINVAL;
            break;
        }
        if (!add(*out, name->valuestring, fql->valuestring, cJSON_IsTrue(on), ms, err, err_cap)) {
            st = PS_EINVAL;
            break;
        }
    }
    cJSON_Delete(root);
    if (st != PS_OK) {
        ps_filters_free(*out);
        *out = NULL;
    }
    return st;
}

size_t ps_filters_count(const ps_filter_set *s)
{
    return s ? s->count : 0;
}

ps_filter_info ps_filters_get(const ps_filter_set *s, size_t i)
{
    const filter *f = &s->items[i];
    return (ps_filter_info){f->name, f->fql, f->enabled, f->created_ms};
}

int ps_filters_match(const ps_filter_set *s, const void *msg)
{
    for (size_t i = 0; s && i < s->count; i++)
        if (s->items[i].enabled && ps_fql_matches(s->items[i].q, msg))
            return (int)i;
    return -1;
}

static void write_doc(const filter *items, size_t n, ps_buf *out)
{
    ps_buf_putc(out, '[');
    for (size_t i = 0; i < n; i++) {
        char tb[PS_TIME_BUF];
        ps_buf_puts(out, i ? ",{\"name\":" : "{\"name\":");
        ps_buf_json_str(out, items[i].name, strlen(items[i].name));
        ps_buf_puts(out, ",\"if\":");
        ps_buf_json_str(out, items[i].fql, strlen(items[i].fql));
        ps_buf_printf(out, ",\"enabled\":%s,\"created_at\":\"%s\"}",
                      items[i].enabled ? "true" : "false", ps_time_format(items[i].created_ms, tb));
    }
    ps_buf_putc(out, ']');
}

ps_status ps_filters_parse_request(const char *body, size_t len, ps_filter_request *out,
                                   const char **why)
{
    memset(out, 0, sizeof *out);
    out->enabled = -1;
    ps_json_diag d;
    cJSON *root = ps_json_parse((const uint8_t *)body, len, &d); /* outside JSON: strict */
    ps_status st = PS_OK;
    *why = "";
    if (root == NULL) {
        *why = ps_json_error_message(d.error);
        st = PS_EINVAL;
    } else if (!cJSON_IsObject(root)) {
        *why = "The body must be a JSON object: {\"name\", \"if\", \"enabled\"}.";
        st = PS_EINVAL;
    }
    const cJSON *it, *members = st == PS_OK ? root : NULL;
    cJSON_ArrayForEach(it, members)
    {
        if (strcmp(it->string, "name") == 0 && cJSON_IsString(it) &&
            strlen(it->valuestring) <= PS_FILTER_NAME_MAX) {
            snprintf(out->name, sizeof out->name, "%s", it->valuestring);
            out->has_name = true;
        } else if (strcmp(it->string, "name") == 0) {
            *why = "`name` must be a string of 1-64 characters of A-Z a-z 0-9 _ -.";
            st = PS_EINVAL;
        } else if (strcmp(it->string, "if") == 0 && cJSON_IsString(it) && out->fql == NULL) {
            out->fql = ps_xstrdup(it->valuestring);
        } else if (strcmp(it->string, "if") == 0) {
            *why = "`if` must be a string: the filter's FQL query.";
            st = PS_EINVAL;
        } else if (strcmp(it->string, "enabled") == 0 && cJSON_IsBool(it)) {
            out->enabled = cJSON_IsTrue(it);
        } else if (strcmp(it->string, "enabled") == 0) {
            *why = "`enabled` must be true or false.";
            st = PS_EINVAL;
        } else {
            *why = "Unknown member: a filter has only `name`, `if` and `enabled`.";
            st = PS_EINVAL;
        }
        if (st != PS_OK)
            break;
    }
    cJSON_Delete(root);
    if (st != PS_OK)
        ps_filter_request_clear(out);
    return st;
}

void ps_filter_request_clear(ps_filter_request *r)
{
    free(r->fql);
    r->fql = NULL;
}

void ps_filters_json(const ps_filter_set *s, ps_buf *out)
{
    write_doc(s ? s->items : NULL, ps_filters_count(s), out);
}

ps_status ps_filters_add(const ps_filter_set *s, const char *name, const char *fql, bool enabled,
                         int64_t now_ms, ps_buf *out, char *err, size_t err_cap)
{
    ps_fql *q;
    ps_status st = check_new(s, name, fql, &q, err, err_cap);
    if (st != PS_OK)
        return st;
    ps_fql_free(q); /* checked: the stored document is compiled when it is read */
    filter all[PS_FILTERS_MAX];
    size_t n = ps_filters_count(s);
    for (size_t i = 0; i < n; i++)
        all[i] = s->items[i];
    all[n] = (filter){.fql = (char *)fql, .enabled = enabled, .created_ms = now_ms};
    snprintf(all[n].name, sizeof all[n].name, "%s", name);
    write_doc(all, n + 1, out);
    return PS_OK;
}

ps_status ps_filters_update(const ps_filter_set *s, const char *name, const char *new_name,
                            int enabled, ps_buf *out, char *err, size_t err_cap)
{
    if (s == NULL) {
        snprintf(err, err_cap, "no filter named '%.80s'", name);
        return PS_ENOTFOUND;
    }
    filter all[PS_FILTERS_MAX];
    size_t n = s->count, at = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        all[i] = s->items[i];
        if (strcmp(all[i].name, name) == 0)
            at = i;
    }
    if (at == SIZE_MAX) {
        snprintf(err, err_cap, "no filter named '%.80s'", name);
        return PS_ENOTFOUND;
    }
    if (new_name && strcmp(new_name, name) != 0) {
        ps_status st = check_name(s, new_name, err, err_cap);
        if (st != PS_OK)
            return st;
        snprintf(all[at].name, sizeof all[at].name, "%s", new_name);
    }
    if (enabled >= 0)
        all[at].enabled = enabled != 0;
    write_doc(all, n, out);
    return PS_OK;
}

ps_status ps_filters_remove(const ps_filter_set *s, const char *name, ps_buf *out)
{
    if (s == NULL)
        return PS_ENOTFOUND;
    filter all[PS_FILTERS_MAX];
    size_t n = 0, total = ps_filters_count(s);
    for (size_t i = 0; i < total; i++)
        if (strcmp(s->items[i].name, name) != 0)
            all[n++] = s->items[i];
    if (n == total)
        return PS_ENOTFOUND;
    write_doc(all, n, out);
    return PS_OK;
}
