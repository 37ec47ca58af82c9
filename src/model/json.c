/* SPDX-License-Identifier: MIT */
/* json: a strict validator that runs before any tree is built of untrusted bytes, scanners over
 * the validated text, and the builder of scratch trees (cJSON nodes made from validated text).
 * The validator is a single forward pass with an explicit stack, so its cost is linear in the
 * input and its memory is fixed. */
#include "ps/json.h"

#include <limits.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ps/mem.h"
#include "ps/status.h"
#include "ps/text.h"

typedef struct vstate {
    const uint8_t *s, *p, *end;
    unsigned flags;
    ps_json_error error;
} vstate;

static bool fail(vstate *v, ps_json_error e)
{
    v->error = e;
    return false;
}

static void skip_ws(vstate *v)
{
    v->p = (const uint8_t *)ps_json_skip_ws((const char *)v->p, (const char *)v->end);
}

static int hex4(const uint8_t *p)
{
    int x = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        x = x << 4 | d;
    }
    return x;
}

/* One UTF-8 sequence starting at a byte >= 0x80: no overlongs, no surrogates, <= U+10FFFF. */
static bool utf8_seq(vstate *v)
{
    const uint8_t *p = v->p;
    uint8_t c = *p;
    size_t n;
    uint32_t min, cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 1, min = 0x80, cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2, min = 0x800, cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3, min = 0x10000, cp = c & 0x07u;
    } else {
        return fail(v, PS_JSON_UTF8);
    }
    if ((size_t)(v->end - p) <= n)
        return fail(v, PS_JSON_UTF8);
    for (size_t i = 1; i <= n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return fail(v, PS_JSON_UTF8);
        cp = cp << 6 | (p[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return fail(v, PS_JSON_UTF8);
    v->p += n + 1;
    return true;
}

static bool string(vstate *v) /* v->p at the opening quote */
{
    v->p++;
    for (;;) {
        const uint8_t *p = (const uint8_t *)ps_json_string_run(
            (const char *)v->p, (const char *)v->end, PS_JSON_STOP_CONTROL | PS_JSON_STOP_HIGH);
        v->p = p;
        if (p >= v->end)
            return fail(v, PS_JSON_SYNTAX);
        uint8_t c = *p;
        if (c == '"') {
            v->p++;
            return true;
        }
        if (c < 0x20)
            return fail(v, PS_JSON_CONTROL);
        if (c >= 0x80) {
            if (!utf8_seq(v))
                return false;
            continue;
        }
        /* a backslash */
        if (v->end - p < 2)
            return fail(v, PS_JSON_SYNTAX);
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't': v->p += 2; continue;
        case 'u': break;
        default: return fail(v, PS_JSON_SYNTAX);
        }
        if (v->end - p < 6)
            return fail(v, PS_JSON_SYNTAX);
        int u = hex4(p + 2);
        if (u < 0)
            return fail(v, PS_JSON_SYNTAX);
        if (u == 0 && !(v->flags & PS_JSON_ALLOW_NUL))
            return fail(v, PS_JSON_NUL);
        if (u >= 0xDC00 && u <= 0xDFFF)
            return fail(v, PS_JSON_UTF8); /* a low surrogate without a high one */
        if (u >= 0xD800 && u <= 0xDBFF) {
            int lo = v->end - p >= 12 && p[6] == '\\' && p[7] == 'u' ? hex4(p + 8) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF)
                return fail(v, PS_JSON_UTF8);
            v->p += 12;
        } else {
            v->p += 6;
        }
    }
}

static bool digits(vstate *v)
{
    const uint8_t *start = v->p;
    while (v->p < v->end && *v->p >= '0' && *v->p <= '9')
        v->p++;
    return v->p > start || fail(v, PS_JSON_SYNTAX);
}

static bool number(vstate *v)
{
    if (*v->p == '-')
        v->p++;
    if (v->p < v->end && *v->p == '0')
        v->p++;
    else if (!digits(v))
        return false;
    if (v->p < v->end && *v->p == '.') {
        v->p++;
        if (!digits(v))
            return false;
    }
    if (v->p < v->end && (*v->p == 'e' || *v->p == 'E')) {
        v->p++;
        if (v->p < v->end && (*v->p == '+' || *v->p == '-'))
            v->p++;
        if (!digits(v))
            return false;
    }
    return true;
}

static bool literal(vstate *v, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(v->end - v->p) < n || memcmp(v->p, word, n) != 0)
        return fail(v, PS_JSON_SYNTAX);
    v->p += n;
    return true;
}

/* A scalar at v->p (not an object or array). */
static bool scalar(vstate *v)
{
    switch (*v->p) {
    case '"': return string(v);
    case 't': return literal(v, "true");
    case 'f': return literal(v, "false");
    case 'n': return literal(v, "null");
    default:
        if (*v->p == '-' || (*v->p >= '0' && *v->p <= '9'))
            return number(v);
        return fail(v, PS_JSON_SYNTAX);
    }
}

/* The value grammar with an explicit stack of open containers ('{' or '['). */
static bool value(vstate *v)
{
    uint8_t stack[PS_JSON_DEPTH_MAX];
    size_t depth = 0;
    for (;;) {
        /* expect a value */
        skip_ws(v);
        if (v->p >= v->end)
            return fail(v, PS_JSON_SYNTAX);
        uint8_t c = *v->p;
        if (c == '{' || c == '[') {
            if (depth == PS_JSON_DEPTH_MAX)
                return fail(v, PS_JSON_DEPTH);
            stack[depth++] = c;
            v->p++;
            skip_ws(v);
            if (v->p < v->end && *v->p == (c == '{' ? '}' : ']')) {
                v->p++;
                depth--;
                goto after_value;
            }
            if (c == '[')
                continue;
            goto member_key;
        }
        if (!scalar(v))
            return false;
    after_value:
        for (;;) {
            if (depth == 0)
                return true;
            skip_ws(v);
            if (v->p >= v->end)
                return fail(v, PS_JSON_SYNTAX);
            uint8_t close = stack[depth - 1] == '{' ? '}' : ']';
            if (*v->p == close) {
                v->p++;
                depth--;
                continue;
            }
            if (*v->p != ',')
                return fail(v, PS_JSON_SYNTAX);
            v->p++;
            if (stack[depth - 1] == '[')
                break; /* the next element */
            skip_ws(v);
            goto member_key;
        }
        continue;
    member_key:
        if (v->p >= v->end || *v->p != '"')
            return fail(v, PS_JSON_SYNTAX);
        if (!string(v))
            return false;
        skip_ws(v);
        if (v->p >= v->end || *v->p != ':')
            return fail(v, PS_JSON_SYNTAX);
        v->p++;
    }
}

bool ps_json_check(const uint8_t *s, size_t len, unsigned flags, ps_json_diag *diag)
{
    vstate v = {s, s, s + len, flags, PS_JSON_OK};
    skip_ws(&v);
    if (v.p == v.end) {
        v.error = PS_JSON_EMPTY;
    } else if (value(&v)) {
        skip_ws(&v);
        if (v.p != v.end)
            v.error = PS_JSON_TRAILING;
    }
    if (diag) {
        diag->error = v.error;
        diag->offset = (size_t)(v.p - s);
    }
    return v.error == PS_JSON_OK;
}

struct cJSON *ps_json_parse(const uint8_t *s, size_t len, ps_json_diag *diag)
{
    ps_json_diag d;
    if (!ps_json_check(s, len, 0, &d)) {
        if (diag)
            *diag = d;
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength((const char *)s, len);
    if (root == NULL) /* accepted here but not by cJSON: treat as a syntax error */
        d = (ps_json_diag){PS_JSON_SYNTAX, 0};
    if (diag)
        *diag = d;
    return root;
}

/* ---- scratch trees ----
 *
 * A tree of text the strict reader passed, built in the calling thread's scratch arena. It is
 * the tree cJSON 1.7's reader makes of the same text, node for node (the unit tests and
 * fuzz_json compare the two): the same types, names, decoded strings, numbers (strtod of the
 * same characters, however many) and links, including a list's first child pointing back at
 * its last.
 * Validated text lets it skip every check cJSON makes, copy strings without escapes whole and
 * read short integers without strtod: about a quarter of cJSON's instructions. */

static _Thread_local ps_arena scratch;
static _Thread_local bool scratch_held;

static const char *skip_string(const char *p, const char *end);

typedef struct tstate {
    const char *p, *end;
} tstate;

static cJSON *tree_node(int type)
{
    cJSON *n = ps_arena_alloc(&scratch, sizeof *n);
    memset(n, 0, sizeof *n);
    n->type = type;
    return n;
}

/* The string at t->p (its opening quote), decoded into the arena. */
static char *tree_string(tstate *t)
{
    const char *q = t->p + 1, *r = ps_json_string_run(q, t->end, 0);
    if (*r == '"') { /* no escape: the bytes as they are */
        t->p = r + 1;
        return ps_arena_strndup(&scratch, q, (size_t)(r - q));
    }
    const char *e = skip_string(t->p, t->end);
    size_t raw = (size_t)(e - t->p), n = 0; /* decoding never lengthens a string */
    char *out = ps_arena_alloc(&scratch, raw - 1);
    (void)ps_json_key_decode((ps_slice){(const uint8_t *)t->p, raw}, out, raw - 2, &n);
    out[n] = 0;
    t->p = e;
    return out;
}

static void tree_number(tstate *t, cJSON *n)
{
    const char *s = t->p, *e = s;
    bool plain = true; /* an optional minus and digits only */
    for (; e < t->end; e++) {
        char c = *e;
        if (c >= '0' && c <= '9')
            continue;
        if (c == '-' && e == s)
            continue;
        if (c != '+' && c != '-' && c != '.' && c != 'e' && c != 'E')
            break;
        plain = false;
    }
    size_t len = (size_t)(e - s), digits = len - (*s == '-');
    double d;
    if (plain && digits <= 15) { /* exact in a double: what strtod would round it to */
        uint64_t v = 0;
        for (const char *c = s + (*s == '-'); c < e; c++)
            v = v * 10 + (uint64_t)(*c - '0');
        d = *s == '-' ? -(double)v : (double)v;
    } else { /* strtod of a copy with the locale's decimal point, as cJSON reads it */
        char small[64], *buf = len < sizeof small ? small : ps_arena_alloc(&scratch, len + 1);
        const char point = localeconv()->decimal_point[0];
        for (size_t i = 0; i < len; i++)
            buf[i] = s[i] == '.' ? point : s[i];
        buf[len] = 0;
        d = strtod(buf, NULL);
    }
    n->valuedouble = d;
    n->valueint = d >= INT_MAX ? INT_MAX : d <= (double)INT_MIN ? INT_MIN : (int)d;
    t->p = e;
}

static cJSON *tree_value(tstate *t);

static cJSON *tree_container(tstate *t, bool object)
{
    cJSON *n = tree_node(object ? cJSON_Object : cJSON_Array), *last = NULL;
    const char close = object ? '}' : ']';
    t->p = ps_json_skip_ws(t->p + 1, t->end);
    if (*t->p == close) {
        t->p++;
        return n;
    }
    for (;;) {
        char *name = NULL;
        if (object) {
            name = tree_string(t);
            t->p = ps_json_skip_ws(ps_json_skip_ws(t->p, t->end) + 1, t->end); /* past ':' */
        }
        cJSON *v = tree_value(t);
        v->string = name;
        if (last) {
            last->next = v;
            v->prev = last;
        } else {
            n->child = v;
        }
        last = v;
        t->p = ps_json_skip_ws(t->p, t->end);
        if (*t->p++ == close)
            break;
        t->p = ps_json_skip_ws(t->p, t->end); /* past ',' */
    }
    n->child->prev = last;
    return n;
}

static cJSON *tree_value(tstate *t)
{
    cJSON *n;
    switch (*t->p) {
    case '{': return tree_container(t, true);
    case '[': return tree_container(t, false);
    case '"':
        n = tree_node(cJSON_String);
        n->valuestring = tree_string(t);
        return n;
    case 't':
        t->p += 4;
        n = tree_node(cJSON_True);
        n->valueint = 1;
        return n;
    case 'f': t->p += 5; return tree_node(cJSON_False);
    case 'n': t->p += 4; return tree_node(cJSON_NULL);
    default:
        n = tree_node(cJSON_Number);
        tree_number(t, n);
        return n;
    }
}

static bool has_nul_escape(const uint8_t *s, size_t len)
{
    const uint8_t *end = s + len;
    for (const uint8_t *p = s; (p = memchr(p, '\\', (size_t)(end - p))) != NULL; p++)
        if (end - p >= 6 && memcmp(p + 1, "u0000", 5) == 0)
            return true;
    return false;
}

struct cJSON *ps_json_parse_scratch(const uint8_t *s, size_t len, bool checked_nul,
                                    ps_json_diag *diag)
{
    PS_ASSERT(!scratch_held);
    ps_json_diag d = {PS_JSON_OK, 0};
    /* text that passed with \u0000 allowed passes without when it has no "\u0000" */
    bool valid = checked_nul && !has_nul_escape(s, len);
    if (!valid && !ps_json_check(s, len, 0, &d)) {
        if (diag)
            *diag = d;
        return NULL;
    }
    tstate t = {(const char *)s, (const char *)s + len};
    t.p = ps_json_skip_ws(t.p, t.end);
    cJSON *root = tree_value(&t);
    scratch_held = true;
    if (diag)
        *diag = d;
    return root;
}

void ps_json_scratch_free(struct cJSON *root)
{
    if (root == NULL)
        return;
    PS_ASSERT(scratch_held);
    scratch_held = false;
    ps_arena_clear(&scratch);
}

const char *ps_json_error_message(ps_json_error e)
{
    switch (e) {
    case PS_JSON_OK: return "valid JSON";
    case PS_JSON_EMPTY: return "the body is empty";
    case PS_JSON_SYNTAX: return "the body is not valid JSON";
    case PS_JSON_UTF8: return "a string is not valid UTF-8";
    case PS_JSON_CONTROL:
        return "a string contains a raw control character (0x00-0x1F); "
               "escape it";
    case PS_JSON_NUL: return "a string contains \\u0000, which is not accepted";
    case PS_JSON_TRAILING: return "there is data after the JSON value";
    case PS_JSON_DEPTH: return "objects and arrays are nested too deeply";
    }
    return "invalid JSON";
}

/* ---- scanners ---- */

const char *ps_json_skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Bytes the raw scanner must stop at inside an object or array: '"' and the brackets; every
 * other byte is skipped in a tight loop. Inside a string, ps_json_string_run finds '"' and
 * '\\' a word at a time. */
static const uint8_t in_container[256] = {['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1};

static const char *skip_string(const char *p, const char *end) /* p at the opening quote */
{
    p++;
    while (p < end) {
        p = ps_json_string_run(p, end, 0);
        if (p >= end)
            break;
        if (*p == '"')
            return p + 1;
        if (end - p < 2) /* a backslash that ends the text */
            break;
        p += 2; /* a backslash and the byte it escapes */
    }
    return NULL;
}

const char *ps_json_skip_value(const char *p, const char *end)
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

void ps_json_iter_init(ps_json_iter *it, const char *p, const char *end)
{
    it->p = ps_json_skip_ws(p, end);
    it->end = end;
    it->started = false;
}

bool ps_json_iter_next(ps_json_iter *it, ps_json_member *m)
{
    const char *p = it->p, *end = it->end;
    if (p == NULL || p >= end)
        return false;
    if (!it->started) {
        if (*p != '{')
            return (it->p = NULL), false;
        it->started = true;
        p = ps_json_skip_ws(p + 1, end);
    } else if (*p == ',') {
        p = ps_json_skip_ws(p + 1, end);
    }
    if (p >= end || *p != '"')
        return (it->p = NULL), false;
    const char *kend = skip_string(p, end);
    if (kend == NULL)
        return (it->p = NULL), false;
    m->key = (ps_slice){(const uint8_t *)p, (size_t)(kend - p)};
    p = ps_json_skip_ws(kend, end);
    if (p >= end || *p != ':')
        return (it->p = NULL), false;
    p = ps_json_skip_ws(p + 1, end);
    const char *vend = ps_json_skip_value(p, end);
    if (vend == NULL)
        return (it->p = NULL), false;
    m->value = (ps_slice){(const uint8_t *)p, (size_t)(vend - p)};
    it->p = ps_json_skip_ws(vend, end);
    return true;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool ps_json_key_decode(ps_slice key, char *out, size_t cap, size_t *out_len)
{
    const uint8_t *p = key.ptr + 1, *end = key.ptr + key.len - 1; /* inside the quotes */
    size_t n = 0;
    while (p < end) {
        char tmp[4];
        size_t w;
        if (*p != '\\') {
            tmp[0] = (char)*p++;
            w = 1;
        } else {
            uint8_t e = p[1];
            p += 2;
            switch (e) {
            case 'b': tmp[0] = '\b', w = 1; break;
            case 'f': tmp[0] = '\f', w = 1; break;
            case 'n': tmp[0] = '\n', w = 1; break;
            case 'r': tmp[0] = '\r', w = 1; break;
            case 't': tmp[0] = '\t', w = 1; break;
            case 'u': {
                unsigned cp = (unsigned)hex4(p);
                p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6) {
                    unsigned lo = (unsigned)hex4(p + 2);
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
                w = put_utf8(tmp, cp);
                break;
            }
            default: tmp[0] = (char)e, w = 1; break;
            }
        }
        if (n + w > cap)
            return false;
        memcpy(out + n, tmp, w);
        n += w;
    }
    *out_len = n;
    return true;
}

bool ps_json_key_is(ps_slice key, const char *name)
{
    size_t nl = strlen(name);
    if (key.len < 2)
        return false;
    if (memchr(key.ptr, '\\', key.len) == NULL)
        return key.len == nl + 2 && memcmp(key.ptr + 1, name, nl) == 0;
    char buf[64];
    size_t n;
    return nl <= sizeof buf && ps_json_key_decode(key, buf, sizeof buf, &n) && n == nl &&
           memcmp(buf, name, nl) == 0;
}
