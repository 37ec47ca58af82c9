/* SPDX-License-Identifier: MIT */
/* rules: identity settings. Validation collects every error with its JSON path instead of
 * stopping at the first, so an operator fixes a file in one pass. */
#include "ps/rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "ps/json.h"
#include "ps/text.h"

typedef struct blocked {
    char *value;
    bool is_regex;
    pcre2_code *re; /* NULL for an exact value */
} blocked;

typedef struct type_entry {
    ps_type_rule rule;
    char *name;
    blocked *blocked;
    size_t blocked_count;
    char **keys;
    size_t key_count;
} type_entry;

struct ps_rules {
    type_entry *types; /* sorted by name */
    size_t type_count;
    blocked *global; /* applies to every type: suggested list, presets, space-wide */
    size_t global_count;
    ps_custom_key *custom;
    size_t custom_count;
    ps_custom_name *custom_names; /* the sorted name index (ps_rules_custom_names) */
    size_t custom_name_count;
    ps_rules_options opt;
    ps_type_rule fallback;
    bool suggested_blocked;
    bool junk_preset;
    uint32_t dedup_hours, retention_days, lookback_days, log_days;
    /* PCRE2 contexts. Matching only reads `gen` and `match`, so threads may share them; the
     * compile context is needed while the rules are built and freed by finish(). */
    pcre2_general_context *gen;
    pcre2_compile_context *compile;
    pcre2_match_context *match;
};

static const char *const freq_names[] = {"ever", "daily", "weekly", "monthly", "annually"};
static const int64_t freq_ms[] = {0, 86400000LL, 7 * 86400000LL, 30 * 86400000LL,
                                  365 * 86400000LL};

/* Segment's suggested blocked values, on by default. */
static const char *const suggested_exact[] = {"-1", "null", "anonymous"};
static const char *const suggested_regex = "^[0-]*$";
/* Opt-in preset of common junk ids. */
static const char *const junk_exact[] = {
    "undefined", "Undefined", "UNDEFINED", "none",    "None",  "NONE",  "nan",
    "NaN",       "NAN",       "NULL",      "Null",    "nil",   "true",  "false",
    "True",      "False",     "guest",     "Guest",   "unknown", "n/a", "N/A",
    "not_authenticated", "[object Object]", "\"null\"", "\"undefined\"", "\"\""};

/* The 11 onboarding defaults plus the two optional built-ins. */
static const struct {
    const char *name;
    ps_collection collection;
    uint32_t limit, priority;
    bool enabled, lowercase;
} builtin[] = {
    {"android.id", PS_USERS, 5, 0, true, false},
    {"android.idfa", PS_USERS, 5, 0, true, false},
    {"android.push_token", PS_USERS, 5, 0, true, false},
    {"anonymous_id", PS_USERS, 5, 0, true, false},
    {"braze_id", PS_USERS, 5, 0, false, false},
    {"cross_domain_id", PS_USERS, 5, 0, false, false},
    {"email", PS_USERS, 5, 2, true, true},
    {"ga_client_id", PS_USERS, 5, 0, true, false},
    {"group_id", PS_ACCOUNTS, 5, 0, true, false},
    {"ios.id", PS_USERS, 5, 0, true, false},
    {"ios.idfa", PS_USERS, 5, 0, true, false},
    {"ios.push_token", PS_USERS, 5, 0, true, false},
    {"user_id", PS_USERS, 1, 1, true, false},
};

/* The settings presets (docs/identity-settings.md explains every rule of "recommended"). A
 * preset is a settings document: a space created with it stores it as its settings. */
static const struct {
    const char *name, *json;
} presets[] = {
    {"recommended",
     "{\n"
     "  \"version\": 1,\n"
     "  \"blocked_presets\": [\"junk_ids\"],\n"
     "  \"block_shared_values\": true,\n"
     "  \"identifiers\": {\n"
     "    \"user_id\": {\"priority\": 1, \"limit\": 1, \"frequency\": \"ever\"},\n"
     "    \"email\": {\"priority\": 2, \"limit\": 5, \"frequency\": \"ever\"},\n"
     "    \"anonymous_id\": {\"priority\": 3, \"limit\": 1, \"frequency\": \"weekly\"},\n"
     "    \"ga_client_id\": {\"priority\": 3, \"limit\": 1, \"frequency\": \"weekly\"},\n"
     "    \"ios.id\": {\"priority\": 4, \"limit\": 2, \"frequency\": \"monthly\"},\n"
     "    \"android.id\": {\"priority\": 4, \"limit\": 2, \"frequency\": \"monthly\"},\n"
     "    \"ios.push_token\": {\"priority\": 5, \"limit\": 1, \"frequency\": \"monthly\"},\n"
     "    \"android.push_token\": {\"priority\": 5, \"limit\": 1, \"frequency\": \"monthly\"},\n"
     "    \"ios.idfa\": {\"priority\": 6, \"limit\": 1, \"frequency\": \"monthly\"},\n"
     "    \"android.idfa\": {\"priority\": 6, \"limit\": 1, \"frequency\": \"monthly\"}\n"
     "  }\n"
     "}\n"},
};

const char *ps_rules_preset(const char *name)
{
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (strcmp(presets[i].name, name) == 0)
            return presets[i].json;
    return NULL;
}

const char *ps_rules_preset_names(void)
{
    return "recommended";
}

const char *ps_frequency_name(ps_frequency f)
{
    return freq_names[f];
}

static void blocked_free(blocked *b)
{
    free(b->value);
    pcre2_code_free(b->re);
}

void ps_rules_free(ps_rules *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->type_count; i++) {
        type_entry *t = &r->types[i];
        free(t->name);
        for (size_t k = 0; k < t->blocked_count; k++)
            blocked_free(&t->blocked[k]);
        free(t->blocked);
        for (size_t k = 0; k < t->key_count; k++)
            free(t->keys[k]);
        free(t->keys);
    }
    free(r->types);
    for (size_t k = 0; k < r->global_count; k++)
        blocked_free(&r->global[k]);
    free(r->global);
    for (size_t k = 0; k < r->custom_count; k++)
        free((char *)r->custom[k].camel);
    free(r->custom);
    free(r->custom_names);
    pcre2_compile_context_free(r->compile);
    pcre2_match_context_free(r->match);
    pcre2_general_context_free(r->gen);
    free(r);
}

/* PCRE2 allocates through these, so running out of memory aborts as everywhere else in the
 * project instead of turning into a failed match: an answer never depends on the memory left. */
static void *re_alloc(PCRE2_SIZE size, void *ud)
{
    (void)ud;
    return ps_xmalloc(size);
}

static void re_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

/* Reads decimal digits, saturating: the caller only compares the count with a small bound. */
static unsigned long read_count(const char **s)
{
    unsigned long n = 0;
    for (; **s >= '0' && **s <= '9'; (*s)++)
        if (n < 100000000UL)
            n = n * 10 + (unsigned long)(**s - '0');
    return n;
}

/* The largest count in the pattern's counted repeats ({n}, {n,}, {n,m}, {,m}), or 0. PCRE2
 * compiles a counted repeat of one character or class into a few bytes whatever the count, so
 * the compiled-size bound does not catch x{1,32767}; this check refuses counts that cannot mean
 * anything for values of at most PS_VALUE_MAX bytes. It skips text that PCRE2 reads as literal
 * or as an escape's argument (\Q...\E, \x{...} and the like, character classes, (?#...)
 * comments) and counts any other {digits} group, so a literal brace group can be refused too.
 * It bounds meaning, not cost: the compile and match limits bound cost on their own. */
static unsigned long largest_repeat(const char *p)
{
    unsigned long most = 0;
    bool in_class = false;
    while (*p) {
        if (p[0] == '\\' && p[1] == 'Q') {
            const char *e = strstr(p + 2, "\\E");
            if (e == NULL)
                break;
            p = e + 2;
        } else if (p[0] == '\\') {
            bool braced = p[1] != 0 && strchr("xopPgk", p[1]) != NULL && p[2] == '{';
            if (braced || (p[1] == 'N' && strncmp(p + 2, "{U+", 3) == 0)) {
                const char *e = strchr(p + 2, '}');
                if (e == NULL)
                    break;
                p = e + 1;
            } else if (p[1] == 'c' && p[2] != 0) {
                p += 3; /* \cX: the next character is the escape's argument */
            } else {
                p += p[1] ? 2 : 1;
            }
        } else if (in_class) {
            const char *q = p + 2;
            if (p[0] == '[' && p[1] == ':') { /* a POSIX class such as [:alpha:] */
                if (*q == '^')
                    q++;
                while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z'))
                    q++;
            }
            if (p[0] == '[' && p[1] == ':' && q[0] == ':' && q[1] == ']') {
                p = q + 2;
            } else {
                in_class = *p != ']';
                p++;
            }
        } else if (*p == '[') {
            in_class = true;
            p++;
            if (*p == '^')
                p++;
            if (*p == ']') /* first in a class, ']' is literal */
                p++;
        } else if (strncmp(p, "(?#", 3) == 0) {
            const char *e = strchr(p, ')');
            if (e == NULL)
                break;
            p = e + 1;
        } else if (*p == '{') {
            const char *s = p + 1;
            unsigned long lo = read_count(&s), hi = 0;
            bool digits = s > p + 1;
            if (*s == ',') {
                const char *from = ++s;
                hi = read_count(&s);
                digits |= s > from;
            }
            if (digits && *s == '}') {
                most = lo > most ? lo : most;
                most = hi > most ? hi : most;
            }
            p++;
        } else {
            p++;
        }
    }
    return most;
}

/* Compiles a blocked-value regex, or returns NULL with the reason in `why`. The pattern must
 * match the whole value: PCRE2_ANCHORED and PCRE2_ENDANCHORED say so outside the pattern text,
 * where no pattern can close them off (wrapping the text as "^(...)$" let "x)|(.*" escape).
 * DOTALL and DOLLAR_ENDONLY keep '.' and '$' as in POSIX ERE: '.' matches a newline and '$'
 * only the end of the value. Values are UTF-8; \C could split a character, so it is refused. */
static pcre2_code *compile_blocked(const ps_rules *r, const char *pattern, char *why, size_t cap)
{
    size_t len = strlen(pattern);
    if (len > PS_REGEX_PATTERN_MAX) {
        snprintf(why, cap, "regex is too long: %zu bytes over %d", len, PS_REGEX_PATTERN_MAX);
        return NULL;
    }
    unsigned long repeat = largest_repeat(pattern);
    if (repeat > PS_REGEX_REPEAT_MAX) {
        snprintf(why, cap, "regex is too complex: repeat count %lu over %d (the longest value)",
                 repeat, PS_REGEX_REPEAT_MAX);
        return NULL;
    }
    int code;
    PCRE2_SIZE offset;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, len,
                      PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF | PCRE2_NEVER_BACKSLASH_C |
                          PCRE2_DOTALL | PCRE2_DOLLAR_ENDONLY,
                      &code, &offset, r->compile);
    if (re == NULL) {
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", code);
        bool cost = code == PCRE2_ERROR_PATTERN_TOO_LARGE ||
                    code == PCRE2_ERROR_PARENTHESES_NEST_TOO_DEEP ||
                    code == PCRE2_ERROR_PATTERN_TOO_COMPLICATED;
        snprintf(why, cap, "%s at byte %zu: %s",
                 cost ? "regex is too complex" : "invalid regular expression", (size_t)offset,
                 (const char *)msg);
        return NULL;
    }
    size_t size = 0;
    pcre2_pattern_info(re, PCRE2_INFO_SIZE, &size);
    if (size > PS_REGEX_CODE_MAX) {
        pcre2_code_free(re);
        snprintf(why, cap, "regex is too complex: compiled size %zu bytes over %d", size,
                 PS_REGEX_CODE_MAX);
        return NULL;
    }
    return re;
}

/* Takes ownership of `re` (NULL for an exact value). */
static void add_blocked(blocked **list, size_t *count, const char *value, pcre2_code *re)
{
    *list = ps_xrealloc(*list, (*count + 1) * sizeof **list);
    blocked *b = &(*list)[*count];
    b->value = ps_xstrdup(value);
    b->is_regex = re != NULL;
    b->re = re;
    (*count)++;
}

static type_entry *find_type(const ps_rules *r, const char *name)
{
    size_t lo = 0, hi = r->type_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->types[mid].name, name);
        if (c == 0)
            return &r->types[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static type_entry *add_type(ps_rules *r, const char *name)
{
    type_entry *t = find_type(r, name);
    if (t)
        return t;
    r->types = ps_xrealloc(r->types, (r->type_count + 1) * sizeof *r->types);
    size_t pos = r->type_count;
    while (pos > 0 && strcmp(r->types[pos - 1].name, name) > 0)
        pos--;
    memmove(&r->types[pos + 1], &r->types[pos], (r->type_count - pos) * sizeof *r->types);
    r->type_count++;
    t = &r->types[pos];
    memset(t, 0, sizeof *t);
    t->name = ps_xstrdup(name);
    t->rule.collection = PS_USERS;
    t->rule.limit = 5;
    t->rule.enabled = true;
    /* rule.type pointers are fixed up in finish(), as the array may still move */
    return t;
}

static ps_rules *rules_new(void)
{
    ps_rules *r = ps_xcalloc(1, sizeof *r);
    r->gen = pcre2_general_context_create(re_alloc, re_free, NULL);
    r->compile = pcre2_compile_context_create(r->gen);
    r->match = pcre2_match_context_create(r->gen);
    PS_ASSERT(r->gen && r->compile && r->match); /* allocated with ps_xmalloc */
    pcre2_set_max_pattern_length(r->compile, PS_REGEX_PATTERN_MAX);
    pcre2_set_parens_nest_limit(r->compile, PS_REGEX_NEST_MAX);
    pcre2_set_match_limit(r->match, PS_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(r->match, PS_REGEX_DEPTH_LIMIT);
    pcre2_set_heap_limit(r->match, PS_REGEX_HEAP_KIB);
    r->suggested_blocked = true;
    r->dedup_hours = 24;
    r->retention_days = 14;
    r->lookback_days = 14;
    r->opt.merge_limit = 100;
    r->opt.mapping_limit = 1000;
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++) {
        type_entry *t = add_type(r, builtin[i].name);
        t->rule.collection = builtin[i].collection;
        t->rule.limit = builtin[i].limit;
        t->rule.priority = builtin[i].priority;
        t->rule.enabled = builtin[i].enabled;
        t->rule.lowercase = builtin[i].lowercase;
    }
    return r;
}

static char *camel_of(const char *snake)
{
    size_t len = strlen(snake);
    char *out = ps_xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (snake[i] == '_' && i + 1 < len && o > 0) {
            char c = snake[++i];
            out[o++] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
        } else {
            out[o++] = snake[i];
        }
    }
    out[o] = 0;
    return out;
}

static int custom_cmp(const void *a, const void *b)
{
    const ps_custom_key *x = a, *y = b;
    int c = strcmp(x->type, y->type);
    return c ? c : strcmp(x->snake, y->snake);
}

static int custom_name_cmp(const void *a, const void *b)
{
    const ps_custom_name *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c == 0 && x->key != y->key)
        c = x->key < y->key ? -1 : 1;
    return c ? c : (int)x->camel - (int)y->camel;
}

/* The sorted name index over the (sorted) custom keys. */
static void index_custom_names(ps_rules *r)
{
    r->custom_names = ps_xcalloc(2 * r->custom_count + 1, sizeof *r->custom_names);
    for (size_t k = 0; k < r->custom_count; k++) {
        const ps_custom_key *c = &r->custom[k];
        r->custom_names[r->custom_name_count++] = (ps_custom_name){c->snake, (uint32_t)k, false};
        if (strcmp(c->snake, c->camel) != 0)
            r->custom_names[r->custom_name_count++] = (ps_custom_name){c->camel, (uint32_t)k, true};
    }
    qsort(r->custom_names, r->custom_name_count, sizeof *r->custom_names, custom_name_cmp);
}

static void finish(ps_rules *r)
{
    if (r->suggested_blocked) {
        for (size_t i = 0; i < sizeof suggested_exact / sizeof *suggested_exact; i++)
            add_blocked(&r->global, &r->global_count, suggested_exact[i], NULL);
        char why[256];
        pcre2_code *re = compile_blocked(r, suggested_regex, why, sizeof why);
        PS_ASSERT(re != NULL);
        add_blocked(&r->global, &r->global_count, suggested_regex, re);
    }
    pcre2_compile_context_free(r->compile);
    r->compile = NULL;
    if (r->junk_preset)
        for (size_t i = 0; i < sizeof junk_exact / sizeof *junk_exact; i++)
            add_blocked(&r->global, &r->global_count, junk_exact[i], NULL);
    for (size_t i = 0; i < r->type_count; i++) {
        type_entry *t = &r->types[i];
        t->rule.type = t->name;
        t->rule.window_ms = freq_ms[t->rule.frequency];
        for (size_t k = 0; k < t->key_count; k++) {
            r->custom = ps_xrealloc(r->custom, (r->custom_count + 1) * sizeof *r->custom);
            ps_custom_key *c = &r->custom[r->custom_count++];
            c->type = t->name;
            c->snake = t->keys[k];
            c->camel = camel_of(t->keys[k]);
            c->collection = t->rule.collection;
        }
    }
    if (r->custom_count > 1)
        qsort(r->custom, r->custom_count, sizeof *r->custom, custom_cmp);
    index_custom_names(r);
    r->fallback.type = "";
    r->fallback.collection = PS_USERS;
    r->fallback.limit = 5;
    r->fallback.enabled = true;
    r->opt.dedup_window_ms = (int64_t)r->dedup_hours * 3600000LL;
    r->opt.event_retention_ms = (int64_t)r->retention_days * 86400000LL;
    r->opt.events_lookback_ms = (int64_t)r->lookback_days * 86400000LL;
    r->opt.log_retention_ms = (int64_t)r->log_days * 86400000LL;
}

ps_rules *ps_rules_default(void)
{
    ps_rules *r = rules_new();
    finish(r);
    return r;
}

/* ---- validation ---- */

typedef struct parse_ctx {
    ps_diags *diags;
    ps_rules *r;
} parse_ctx;

static void err(parse_ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err(parse_ctx *c, const char *path, const char *fmt, ...)
{
    if (c->diags == NULL)
        return;
    if (c->diags->count >= PS_DIAGS_MAX) {
        c->diags->dropped++;
        return;
    }
    ps_diag *d = &c->diags->items[c->diags->count++];
    snprintf(d->path, sizeof d->path, "%s", path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof d->message, fmt, ap);
    va_end(ap);
}

/* out = a + sep + b, truncated to fit: paths are for display, a cut one still helps. */
static void join_path(char *out, size_t cap, const char *a, const char *sep, const char *b)
{
    size_t n = 0;
    for (const char *parts[3] = {a, sep, b}, **p = parts; p < parts + 3; p++)
        for (const char *s = *p; *s && n + 1 < cap; s++)
            out[n++] = *s;
    out[n] = 0;
}

const char *ps_collection_name(ps_collection c)
{
    return c == PS_ACCOUNTS ? "accounts" : "users";
}

int ps_collection_parse(const char *name)
{
    return strcmp(name, "users") == 0      ? PS_USERS
           : strcmp(name, "accounts") == 0 ? PS_ACCOUNTS
                                            : -1;
}

bool ps_rules_type_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > PS_TYPE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
              ch == '-'))
            return false;
    }
    return true;
}

static bool valid_key_name(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return false;
    }
    return true;
}

static bool get_uint(parse_ctx *c, const cJSON *v, const char *path, uint32_t lo, uint32_t hi,
                     uint32_t *out)
{
    /* The range test comes first and is written so NaN fails it: converting a double outside
     * the target type's range (1e400 parses as infinity) is undefined behaviour. */
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    if (!cJSON_IsNumber(v) || !(d >= (double)lo && d <= (double)hi) || (double)(uint32_t)d != d) {
        err(c, path, "must be an integer from %u to %u", lo, hi);
        return false;
    }
    *out = (uint32_t)d;
    return true;
}

static bool get_bool(parse_ctx *c, const cJSON *v, const char *path, bool *out)
{
    if (!cJSON_IsBool(v)) {
        err(c, path, "must be true or false");
        return false;
    }
    *out = cJSON_IsTrue(v);
    return true;
}

/* Validates a blocked list; when `entry` is NULL the values are added to the global list. */
static void parse_blocked(parse_ctx *c, const cJSON *arr, const char *path, type_entry *entry)
{
    if (!cJSON_IsArray(arr)) {
        err(c, path, "must be an array of {\"value\", \"kind\"} objects");
        return;
    }
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        char p[128];
        snprintf(p, sizeof p, "%s[%d]", path, i++);
        const cJSON *val = NULL, *kind = NULL;
        if (cJSON_IsString(it)) {
            val = it; /* shorthand: a bare string is an exact value */
        } else if (cJSON_IsObject(it)) {
            const cJSON *f;
            cJSON_ArrayForEach(f, it)
            {
                if (strcmp(f->string, "value") == 0)
                    val = f;
                else if (strcmp(f->string, "kind") == 0)
                    kind = f;
                else
                    err(c, p, "unknown key \"%s\" (expected value, kind)", f->string);
            }
        } else {
            err(c, p, "must be a string or a {\"value\", \"kind\"} object");
            continue;
        }
        if (!cJSON_IsString(val) || val->valuestring[0] == 0 ||
            strlen(val->valuestring) > PS_VALUE_MAX) {
            err(c, p, "value must be a non-empty string of at most %d bytes", PS_VALUE_MAX);
            continue;
        }
        bool is_regex = false;
        if (kind) {
            if (cJSON_IsString(kind) && strcmp(kind->valuestring, "regex") == 0)
                is_regex = true;
            else if (!cJSON_IsString(kind) || strcmp(kind->valuestring, "exact") != 0) {
                err(c, p, "kind must be \"exact\" or \"regex\"");
                continue;
            }
        }
        pcre2_code *re = NULL;
        if (is_regex) {
            char why[200];
            re = compile_blocked(c->r, val->valuestring, why, sizeof why);
            if (re == NULL) {
                err(c, p, "%s", why);
                continue;
            }
        }
        if (entry)
            add_blocked(&entry->blocked, &entry->blocked_count, val->valuestring, re);
        else
            add_blocked(&c->r->global, &c->r->global_count, val->valuestring, re);
    }
}

static void parse_identifier(parse_ctx *c, const cJSON *obj, const char *type_path)
{
    const char *name = obj->string;
    if (!ps_rules_type_name_valid(name, strlen(name))) {
        err(c, type_path, "identifier type must be 1-%d characters of a-z, 0-9, '_', '.', '-'",
            PS_TYPE_MAX);
        return;
    }
    if (!cJSON_IsObject(obj)) {
        err(c, type_path, "must be an object");
        return;
    }
    type_entry *t = add_type(c->r, name);
    const cJSON *f;
    char p[160];
    cJSON_ArrayForEach(f, obj)
    {
        join_path(p, sizeof p, type_path, ".", f->string);
        if (strcmp(f->string, "limit") == 0) {
            get_uint(c, f, p, 1, 1000, &t->rule.limit);
        } else if (strcmp(f->string, "frequency") == 0) {
            bool ok = false;
            for (int k = 0; k < 5 && cJSON_IsString(f); k++)
                if (strcmp(f->valuestring, freq_names[k]) == 0) {
                    t->rule.frequency = (ps_frequency)k;
                    ok = true;
                }
            if (!ok)
                err(c, p, "must be one of ever, daily, weekly, monthly, annually");
        } else if (strcmp(f->string, "priority") == 0) {
            if (!cJSON_IsNull(f))
                get_uint(c, f, p, 1, 1000, &t->rule.priority);
            else
                t->rule.priority = 0;
        } else if (strcmp(f->string, "rank") == 0) {
            /* written by `settings get` for reading; ignored on input */
        } else if (strcmp(f->string, "enabled") == 0) {
            get_bool(c, f, p, &t->rule.enabled);
        } else if (strcmp(f->string, "lowercase") == 0) {
            get_bool(c, f, p, &t->rule.lowercase);
        } else if (strcmp(f->string, "collection") == 0) {
            int cl = cJSON_IsString(f) ? ps_collection_parse(f->valuestring) : -1;
            if (cl >= 0)
                t->rule.collection = (ps_collection)cl;
            else
                err(c, p, "must be \"users\" or \"accounts\"");
        } else if (strcmp(f->string, "keys") == 0) {
            if (!cJSON_IsArray(f)) {
                err(c, p, "must be an array of snake_case trait/property keys");
                continue;
            }
            const cJSON *k;
            int i = 0;
            cJSON_ArrayForEach(k, f)
            {
                char kp[180];
                snprintf(kp, sizeof kp, "%s[%d]", p, i++);
                if (!cJSON_IsString(k) || !valid_key_name(k->valuestring)) {
                    err(c, kp, "must be a snake_case key (a-z, 0-9, '_'), 1-128 characters");
                    continue;
                }
                t->keys = ps_xrealloc(t->keys, (t->key_count + 1) * sizeof *t->keys);
                t->keys[t->key_count++] = ps_xstrdup(k->valuestring);
            }
        } else if (strcmp(f->string, "blocked") == 0) {
            parse_blocked(c, f, p, t);
        } else {
            err(c, p, "unknown key (expected limit, frequency, priority, enabled, lowercase, "
                      "collection, keys, blocked)");
        }
    }
}

ps_status ps_rules_parse(const char *json, size_t len, ps_rules **out, ps_diags *diags)
{
    ps_diags local;
    if (diags == NULL)
        diags = &local;
    memset(diags, 0, sizeof *diags);
    ps_json_diag jd; /* the one strict reader: no trailing data, no \u0000 in keys */
    cJSON *root = ps_json_parse((const uint8_t *)json, len, &jd);
    if (root == NULL) {
        snprintf(diags->items[0].path, sizeof diags->items[0].path, "$");
        snprintf(diags->items[0].message, sizeof diags->items[0].message,
                 "not valid JSON: %s (at byte %zu)", ps_json_error_message(jd.error), jd.offset);
        diags->count = 1;
        return PS_EINVAL;
    }
    parse_ctx c = {diags, rules_new()};
    if (!cJSON_IsObject(root)) {
        err(&c, "$", "must be a JSON object");
        goto done;
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, root)
    {
        char p[160];
        snprintf(p, sizeof p, "$.%s", f->string);
        if (strcmp(f->string, "version") == 0) {
            uint32_t v;
            get_uint(&c, f, p, 1, 1, &v);
        } else if (strcmp(f->string, "identifiers") == 0) {
            if (!cJSON_IsObject(f)) {
                err(&c, p, "must be an object keyed by identifier type");
                continue;
            }
            const cJSON *idf;
            cJSON_ArrayForEach(idf, f)
            {
                char tp[160];
                snprintf(tp, sizeof tp, "$.identifiers.%s", idf->string);
                parse_identifier(&c, idf, tp);
            }
        } else if (strcmp(f->string, "blocked") == 0) {
            parse_blocked(&c, f, p, NULL);
        } else if (strcmp(f->string, "suggested_blocked") == 0) {
            get_bool(&c, f, p, &c.r->suggested_blocked);
        } else if (strcmp(f->string, "blocked_presets") == 0) {
            const cJSON *it;
            int i = 0;
            if (!cJSON_IsArray(f)) {
                err(&c, p, "must be an array of preset names");
                continue;
            }
            cJSON_ArrayForEach(it, f)
            {
                char ip[180];
                snprintf(ip, sizeof ip, "%s[%d]", p, i++);
                if (cJSON_IsString(it) && strcmp(it->valuestring, "junk_ids") == 0)
                    c.r->junk_preset = true;
                else
                    err(&c, ip, "unknown preset (known: junk_ids)");
            }
        } else if (strcmp(f->string, "email_from_properties") == 0) {
            get_bool(&c, f, p, &c.r->opt.email_from_properties);
        } else if (strcmp(f->string, "block_shared_values") == 0) {
            get_bool(&c, f, p, &c.r->opt.block_shared_values);
        } else if (strcmp(f->string, "dedup_window_hours") == 0) {
            get_uint(&c, f, p, 0, 24 * 365, &c.r->dedup_hours);
        } else if (strcmp(f->string, "event_retention_days") == 0) {
            get_uint(&c, f, p, 1, 36500, &c.r->retention_days);
        } else if (strcmp(f->string, "events_lookback_days") == 0) {
            get_uint(&c, f, p, 1, 36500, &c.r->lookback_days);
        } else if (strcmp(f->string, "log_retention_days") == 0) {
            get_uint(&c, f, p, 0, 36500, &c.r->log_days);
        } else if (strcmp(f->string, "merge_limit") == 0) {
            get_uint(&c, f, p, 0, 100000, &c.r->opt.merge_limit);
        } else if (strcmp(f->string, "mapping_limit") == 0) {
            get_uint(&c, f, p, 1, 1000000, &c.r->opt.mapping_limit);
        } else if (strcmp(f->string, "api_rate_limit_per_second") == 0) {
            get_uint(&c, f, p, 0, 10000000, &c.r->opt.api_rate_per_second);
        } else if (strcmp(f->string, "api_rate_limit_burst") == 0) {
            get_uint(&c, f, p, 0, 10000000, &c.r->opt.api_rate_burst);
        } else if (strcmp(f->string, "ingest_rate_limit_per_second") == 0) {
            get_uint(&c, f, p, 0, 10000000, &c.r->opt.ingest_rate_per_second);
        } else if (strcmp(f->string, "ingest_rate_limit_burst") == 0) {
            get_uint(&c, f, p, 0, 10000000, &c.r->opt.ingest_rate_burst);
        } else {
            err(&c, p, "unknown setting");
        }
    }
    if (diags->count == 0 && c.r->log_days != 0 && c.r->log_days < c.r->lookback_days)
        err(&c, "$.log_retention_days",
            "must be 0 (keep the log) or at least events_lookback_days: the Profile API's "
            "events are read from the log");
    if (diags->count == 0 && c.r->log_days != 0 && (uint64_t)c.r->log_days * 24 < c.r->dedup_hours)
        err(&c, "$.log_retention_days",
            "must be 0 (keep the log) or cover dedup_window_hours: duplicates are found "
            "through the log");
done:
    cJSON_Delete(root);
    if (diags->count > 0) {
        ps_rules_free(c.r);
        return PS_EINVAL;
    }
    finish(c.r);
    *out = c.r;
    return PS_OK;
}

const ps_type_rule *ps_rules_type(const ps_rules *r, const char *type)
{
    type_entry *t = find_type(r, type);
    return t ? &t->rule : &r->fallback;
}

const ps_type_rule *ps_rules_type_at(const ps_rules *r, size_t i, size_t *count)
{
    *count = r->type_count;
    return i < r->type_count ? &r->types[i].rule : NULL;
}

bool ps_rules_type_configured(const ps_rules *r, const char *type)
{
    return find_type(r, type) != NULL;
}

int ps_rules_rank_cmp(const ps_rules *r, const char *a, const char *b)
{
    int c = strcmp(a, b);
    if (c == 0)
        return 0;
    uint32_t pa = ps_rules_type(r, a)->priority, pb = ps_rules_type(r, b)->priority;
    if (pa && pb && pa != pb)
        return pa < pb ? -1 : 1;
    if (pa && !pb)
        return -1;
    if (!pa && pb)
        return 1;
    return c;
}

/* Match data is per thread, because a pcre2_match_data cannot be shared by threads while the
 * rules are; it keeps the frames pcre2_match allocated, so a match allocates nothing once the
 * thread has matched. */
static void md_free(void *md)
{
    pcre2_match_data_free(md);
}

static void *md_make(void)
{
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    PS_ASSERT(md != NULL);
    return md;
}

static ps_thread_slot md_slot = PS_THREAD_SLOT(md_make, md_free);

static pcre2_match_data *thread_match_data(void)
{
    return ps_thread_slot_get(&md_slot);
}

/* One value against one blocked list. Only a match blocks: no match, a match or depth or heap
 * limit reached, or a value that is not valid UTF-8 all leave the value unblocked by that
 * regex (see PS_REGEX_MATCH_LIMIT in rules.h for why). */
/* The index of the first entry of `list` that blocks `value`, or SIZE_MAX. */
static size_t match_list(const ps_rules *r, const blocked *list, size_t count, const char *value,
                         size_t len)
{
    for (size_t i = 0; i < count; i++) {
        if (list[i].is_regex) {
            /* 0 is a match too: it says one pair of offsets was too few to hold the groups */
            if (pcre2_match(list[i].re, (PCRE2_SPTR)value, len, 0, 0, thread_match_data(),
                            r->match) >= 0)
                return i;
        } else if (strcmp(list[i].value, value) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

bool ps_rules_blocked(const ps_rules *r, const char *type, const char *value)
{
    return ps_rules_blocked_by(r, type, value, NULL, 0);
}

bool ps_rules_blocked_by(const ps_rules *r, const char *type, const char *value, char *why,
                         size_t cap)
{
    size_t len = strlen(value);
    size_t hit = match_list(r, r->global, r->global_count, value, len);
    const blocked *entry = NULL;
    const char *list = NULL;
    if (hit != SIZE_MAX) {
        /* the global list holds the space's own entries, then the suggested ones, then the
         * junk_ids preset's (finish()) */
        size_t suggested = r->suggested_blocked ? 4 : 0,
               junk = r->junk_preset ? sizeof junk_exact / sizeof *junk_exact : 0,
               own = r->global_count - suggested - junk;
        entry = &r->global[hit];
        list = hit < own                ? "the space's blocked list"
               : hit < own + suggested ? "Segment's suggested blocked values"
                                        : "the junk_ids preset";
    } else {
        type_entry *t = find_type(r, type);
        if (t && (hit = match_list(r, t->blocked, t->blocked_count, value, len)) != SIZE_MAX) {
            entry = &t->blocked[hit];
            list = "the type's blocked list";
        }
    }
    if (entry && why)
        snprintf(why, cap, "%s: %s %s", list, entry->is_regex ? "regex" : "value",
                 entry->value);
    return entry != NULL;
}

const ps_rules_options *ps_rules_options_get(const ps_rules *r)
{
    return &r->opt;
}

const ps_custom_key *ps_rules_custom_keys(const ps_rules *r, size_t *count)
{
    *count = r->custom_count;
    return r->custom;
}

const ps_custom_name *ps_rules_custom_names(const ps_rules *r, size_t *count)
{
    *count = r->custom_name_count;
    return r->custom_names;
}

static void blocked_json(ps_buf *out, const blocked *list, size_t count)
{
    ps_buf_putc(out, '[');
    for (size_t i = 0; i < count; i++) {
        ps_buf_puts(out, i ? ",{\"value\":" : "{\"value\":");
        ps_buf_json_str(out, list[i].value, strlen(list[i].value));
        ps_buf_puts(out, list[i].is_regex ? ",\"kind\":\"regex\"}" : ",\"kind\":\"exact\"}");
    }
    ps_buf_putc(out, ']');
}

/* The collection an auto-added type was first seen in, as ps_rules_to_json shows it. */
static ps_collection seen_collection(const ps_seen_type *seen, size_t seen_count, const char *name)
{
    for (size_t i = 0; i < seen_count; i++)
        if (strcmp(seen[i].type, name) == 0)
            return seen[i].collection;
    return PS_USERS;
}

void ps_rules_to_json_seen(const ps_rules *r, const ps_seen_type *seen, size_t seen_count,
                           ps_buf *out)
{
    /* every configured type plus seen ones, ranked */
    size_t n = 0;
    const char **names = ps_xmalloc((r->type_count + seen_count) * sizeof *names);
    for (size_t i = 0; i < r->type_count; i++)
        names[n++] = r->types[i].name;
    for (size_t i = 0; i < seen_count; i++)
        if (find_type(r, seen[i].type) == NULL) {
            bool dup = false;
            for (size_t k = r->type_count; k < n; k++)
                dup |= strcmp(names[k], seen[i].type) == 0;
            if (!dup)
                names[n++] = seen[i].type;
        }
    for (size_t i = 1; i < n; i++) /* insertion sort: a few dozen names, no global context */
        for (size_t k = i; k > 0 && ps_rules_rank_cmp(r, names[k - 1], names[k]) > 0; k--) {
            const char *tmp = names[k];
            names[k] = names[k - 1];
            names[k - 1] = tmp;
        }
    ps_buf_printf(out,
                  "{\n  \"version\": 1,\n  \"suggested_blocked\": %s,\n  \"blocked_presets\": [%s],\n"
                  "  \"email_from_properties\": %s,\n  \"block_shared_values\": %s,\n"
                  "  \"dedup_window_hours\": %u,\n"
                  "  \"event_retention_days\": %u,\n  \"events_lookback_days\": %u,\n"
                  "  \"log_retention_days\": %u,\n"
                  "  \"merge_limit\": %u,\n  \"mapping_limit\": %u,\n"
                  "  \"api_rate_limit_per_second\": %u,\n  \"api_rate_limit_burst\": %u,\n"
                  "  \"ingest_rate_limit_per_second\": %u,\n  \"ingest_rate_limit_burst\": %u,\n"
                  "  \"blocked\": ",
                  r->suggested_blocked ? "true" : "false", r->junk_preset ? "\"junk_ids\"" : "",
                  r->opt.email_from_properties ? "true" : "false",
                  r->opt.block_shared_values ? "true" : "false", r->dedup_hours,
                  r->retention_days, r->lookback_days, r->log_days, r->opt.merge_limit,
                  r->opt.mapping_limit,
                  r->opt.api_rate_per_second, r->opt.api_rate_burst,
                  r->opt.ingest_rate_per_second, r->opt.ingest_rate_burst);
    /* the space-wide list without the suggested/preset entries, which are flags above */
    size_t builtin_count = (r->suggested_blocked ? 4 : 0) +
                           (r->junk_preset ? sizeof junk_exact / sizeof *junk_exact : 0);
    size_t user_count = r->global_count - builtin_count;
    blocked_json(out, r->global, user_count);
    ps_buf_puts(out, ",\n  \"identifiers\": {");
    for (size_t i = 0; i < n; i++) {
        const ps_type_rule *t = ps_rules_type(r, names[i]);
        type_entry *e = find_type(r, names[i]);
        /* an auto-added type belongs to the collection it was seen in, not the fallback's */
        ps_collection coll = e ? t->collection : seen_collection(seen, seen_count, names[i]);
        ps_buf_puts(out, i ? ",\n    " : "\n    ");
        ps_buf_json_str(out, names[i], strlen(names[i]));
        ps_buf_printf(out, ": {\"rank\": %zu, ", i + 1);
        if (t->priority) /* null, not absent: a built-in type's default rank is not 0 */
            ps_buf_printf(out, "\"priority\": %u, ", t->priority);
        else
            ps_buf_puts(out, "\"priority\": null, ");
        ps_buf_printf(out,
                      "\"collection\": \"%s\", \"limit\": %u, \"frequency\": \"%s\", "
                      "\"enabled\": %s, \"lowercase\": %s",
                      ps_collection_name(coll), t->limit,
                      freq_names[t->frequency], t->enabled ? "true" : "false",
                      t->lowercase ? "true" : "false");
        if (e && e->key_count) {
            ps_buf_puts(out, ", \"keys\": [");
            for (size_t k = 0; k < e->key_count; k++) {
                if (k)
                    ps_buf_putc(out, ',');
                ps_buf_json_str(out, e->keys[k], strlen(e->keys[k]));
            }
            ps_buf_putc(out, ']');
        }
        if (e && e->blocked_count) {
            ps_buf_puts(out, ", \"blocked\": ");
            blocked_json(out, e->blocked, e->blocked_count);
        }
        ps_buf_putc(out, '}');
    }
    ps_buf_puts(out, "\n  }\n}\n");
    free(names);
}

void ps_rules_to_json(const ps_rules *r, const char *const *seen, size_t seen_count, ps_buf *out)
{
    ps_seen_type *types = ps_xmalloc(seen_count * sizeof *types);
    for (size_t i = 0; i < seen_count; i++)
        types[i] = (ps_seen_type){seen[i], PS_USERS};
    ps_rules_to_json_seen(r, types, seen_count, out);
    free(types);
}
