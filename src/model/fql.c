/* SPDX-License-Identifier: MIT */
/* fql: a recursive-descent parser into a fixed array of nodes, and a tree-walking evaluator
 * over cJSON (see ps/fql.h; the language is in docs/fql.md). Every bound is fixed when the
 * query compiles: node count, nesting depth, literal text. Evaluation recurses at most as
 * deep as the query nests and keeps the strings functions make in a stack buffer. */
#include "ps/fql.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ps/mem.h"

#define MAX_KIDS (2 * PS_FQL_MAX_NODES)
#define TEXT_BYTES (PS_FQL_MAX_BYTES + PS_FQL_MAX_NODES) /* decoded text and its NULs */
#define SCRATCH_BYTES 16384 /* strings made by functions during one evaluation */

typedef enum { N_LIT, N_PATH, N_LIST, N_NOT, N_AND, N_OR, N_CMP, N_IN, N_CALL } nkind;
typedef enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE } cmp_op;
typedef enum { V_NULL, V_BOOL, V_NUM, V_STR, V_LIST, V_OBJ } vtype;
typedef enum {
    F_CONTAINS,
    F_LENGTH,
    F_LOWER,
    F_UPPER,
    F_SNAKE,
    F_KEBAB,
    F_TITLE,
    F_TYPEOF,
    F_MATCH,
    F_BOOL,
    F_STRING,
    F_NUMBER,
    F__COUNT
} fn_id;

static const struct {
    const char *name;
    int arity;
} fns[F__COUNT] = {
    {"contains", 2},  {"length", 1},    {"lowercase", 1}, {"uppercase", 1},
    {"snakecase", 1}, {"kebabcase", 1}, {"titlecase", 1}, {"typeof", 1},
    {"match", 2},     {"bool", 1},      {"string", 1},    {"number", 1},
};

typedef struct node {
    uint8_t kind; /* nkind */
    uint8_t op;   /* cmp_op, fn_id, or the literal's vtype */
    uint16_t count;
    uint32_t first;    /* children: kids[first..first+count); a path: its segments likewise */
    double num;        /* number and bool literals */
    uint32_t off, len; /* string literals: text[off..off+len) */
} node;

struct ps_fql {
    node nodes[PS_FQL_MAX_NODES];
    uint32_t kids[MAX_KIDS];
    char text[TEXT_BYTES];
    size_t nnodes, nkids, ntext;
    uint32_t root;
};

/* ---- parsing ---- */

typedef struct parser {
    const char *s;
    size_t len, pos;
    ps_fql *q;
    int depth;
    char *err;
    size_t err_cap;
    bool failed;
} parser;

__attribute__((format(printf, 2, 3))) static bool fail(parser *p, const char *fmt, ...)
{
    if (p->failed)
        return false;
    p->failed = true;
    int n = snprintf(p->err, p->err_cap, "at %zu: ", p->pos);
    if (n >= 0 && (size_t)n < p->err_cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->err_cap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return false;
}

static void skip_space(parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static bool at(parser *p, char c)
{
    skip_space(p);
    return p->pos < p->len && p->s[p->pos] == c;
}

static bool eat(parser *p, char c)
{
    if (!at(p, c))
        return false;
    p->pos++;
    return true;
}

static int new_node(parser *p, nkind kind)
{
    if (p->q->nnodes >= PS_FQL_MAX_NODES) {
        fail(p, "the query is too long (at most %d operators and operands)", PS_FQL_MAX_NODES);
        return -1;
    }
    node *n = &p->q->nodes[p->q->nnodes];
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    return (int)p->q->nnodes++;
}

/* Children are gathered on a small stack while parsed, then copied to kids in order. */
static bool add_kids(parser *p, int at_node, const uint32_t *items, size_t count)
{
    ps_fql *q = p->q;
    if (q->nkids + count > MAX_KIDS || count > UINT16_MAX)
        return fail(p, "the query is too long");
    memcpy(&q->kids[q->nkids], items, count * sizeof *items);
    q->nodes[at_node].first = (uint32_t)q->nkids;
    q->nodes[at_node].count = (uint16_t)count;
    q->nkids += count;
    return true;
}

/* Appends `len` bytes and a NUL to the text; its offset in *off. */
static bool add_text(parser *p, const char *b, size_t len, uint32_t *off)
{
    ps_fql *q = p->q;
    if (q->ntext + len + 1 > TEXT_BYTES)
        return fail(p, "the query is too long");
    memcpy(q->text + q->ntext, b, len);
    q->text[q->ntext + len] = 0;
    *off = (uint32_t)q->ntext;
    q->ntext += len + 1;
    return true;
}

static int parse_or(parser *p);

static bool path_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* A string literal in double or single quotes; \ escapes the next character (\n \t too). */
static int parse_string(parser *p)
{
    char quote = p->s[p->pos++];
    size_t start = p->pos;
    char buf[PS_FQL_MAX_BYTES];
    size_t n = 0;
    while (p->pos < p->len && p->s[p->pos] != quote) {
        char c = p->s[p->pos++];
        if (c == '\\') {
            if (p->pos >= p->len)
                break;
            c = p->s[p->pos++];
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
        }
        buf[n++] = c; /* n < len <= PS_FQL_MAX_BYTES */
    }
    if (p->pos >= p->len) {
        p->pos = start - 1;
        fail(p, "a string is not closed: add the %c it needs", quote);
        return -1;
    }
    p->pos++;
    int id = new_node(p, N_LIT);
    if (id < 0 || !add_text(p, buf, n, &p->q->nodes[id].off))
        return -1;
    p->q->nodes[id].op = V_STR;
    p->q->nodes[id].len = (uint32_t)n;
    return id;
}

static int parse_number(parser *p)
{
    size_t start = p->pos;
    char buf[64];
    size_t n = 0;
    while (p->pos < p->len && n < sizeof buf - 1 && strchr("0123456789+-.eE", p->s[p->pos]) != NULL)
        buf[n++] = p->s[p->pos++];
    buf[n] = 0;
    char *end;
    double v = strtod(buf, &end);
    if (n == 0 || *end != 0 || !isfinite(v)) {
        p->pos = start;
        fail(p, "'%s' is not a number", buf);
        return -1;
    }
    int id = new_node(p, N_LIT);
    if (id >= 0) {
        p->q->nodes[id].op = V_NUM;
        p->q->nodes[id].num = v;
    }
    return id;
}

/* `(` args `)` or `[` items `]`: children of node `id`. */
/* One level deeper (a parenthesis, a list, a call, a '!'); false past PS_FQL_MAX_DEPTH. */
static bool deeper(parser *p)
{
    if (++p->depth <= PS_FQL_MAX_DEPTH)
        return true;
    return fail(p, "the query nests too deeply (at most %d)", PS_FQL_MAX_DEPTH);
}

static bool parse_items(parser *p, int id, char close, const char *what)
{
    uint32_t items[PS_FQL_MAX_NODES];
    size_t n = 0;
    if (!deeper(p))
        return false;
    if (!eat(p, close)) {
        do {
            if (n == PS_FQL_MAX_NODES)
                return fail(p, "too many %s", what);
            int c = parse_or(p);
            if (c < 0)
                return false;
            items[n++] = (uint32_t)c;
        } while (eat(p, ','));
        if (!eat(p, close))
            return fail(p, "expected ',' or '%c' in %s", close, what);
    }
    p->depth--;
    return add_kids(p, id, items, n);
}

/* A field path, a keyword literal or a function call. */
static int parse_word(parser *p)
{
    size_t start = p->pos;
    uint32_t segs[PS_FQL_MAX_NODES];
    size_t nseg = 0;
    char buf[PS_FQL_MAX_BYTES];
    bool escaped = false;
    for (;;) {
        size_t n = 0;
        while (p->pos < p->len) {
            char c = p->s[p->pos];
            if (c == '\\' && p->pos + 1 < p->len) {
                buf[n++] = p->s[p->pos + 1];
                p->pos += 2;
                escaped = true;
            } else if (path_char(c)) {
                buf[n++] = c;
                p->pos++;
            } else {
                break;
            }
        }
        if (n == 0) {
            fail(p, "expected a field name");
            return -1;
        }
        if (nseg == PS_FQL_MAX_NODES) {
            fail(p, "the field path is too long");
            return -1;
        }
        if (!add_text(p, buf, n, &segs[nseg]))
            return -1;
        nseg++;
        if (p->pos < p->len && p->s[p->pos] == '.') {
            p->pos++;
            continue;
        }
        break;
    }
    const char *w = p->q->text + segs[0];
    if (nseg == 1 && !escaped) {
        /* the keyword literals */
        if (strcmp(w, "true") == 0 || strcmp(w, "false") == 0 || strcmp(w, "null") == 0) {
            int id = new_node(p, N_LIT);
            if (id >= 0) {
                p->q->nodes[id].op = w[0] == 'n' ? V_NULL : V_BOOL;
                p->q->nodes[id].num = w[0] == 't';
            }
            return id;
        }
        if (at(p, '(')) {
            for (int f = 0; f < F__COUNT; f++)
                if (strcmp(w, fns[f].name) == 0) {
                    p->pos++;
                    int id = new_node(p, N_CALL);
                    if (id < 0)
                        return -1;
                    p->q->nodes[id].op = (uint8_t)f;
                    if (!parse_items(p, id, ')', "the arguments"))
                        return -1;
                    if (p->q->nodes[id].count != fns[f].arity) {
                        p->pos = start;
                        fail(p, "%s() takes %d argument%s, not %u", fns[f].name, fns[f].arity,
                             fns[f].arity == 1 ? "" : "s", p->q->nodes[id].count);
                        return -1;
                    }
                    return id;
                }
            p->pos = start;
            fail(p,
                 "unknown function '%s' (contains, length, lowercase, uppercase, snakecase, "
                 "kebabcase, titlecase, typeof, match, bool, string, number)",
                 w);
            return -1;
        }
    }
    int id = new_node(p, N_PATH);
    if (id < 0)
        return -1;
    /* a path's children are its segments' text offsets */
    return add_kids(p, id, segs, nseg) ? id : -1;
}

static int parse_primary(parser *p)
{
    skip_space(p);
    if (p->pos >= p->len) {
        fail(p, "the query ends where a value is expected");
        return -1;
    }
    char c = p->s[p->pos];
    if (c == '(') {
        p->pos++;
        if (!deeper(p))
            return -1;
        int id = parse_or(p);
        p->depth--;
        if (id >= 0 && !eat(p, ')')) {
            fail(p, "expected ')'");
            return -1;
        }
        return id;
    }
    if (c == '[') {
        p->pos++;
        int id = new_node(p, N_LIST);
        if (id < 0 || !parse_items(p, id, ']', "the list"))
            return -1;
        return id;
    }
    if (c == '"' || c == '\'')
        return parse_string(p);
    if ((c >= '0' && c <= '9') ||
        (c == '-' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9'))
        return parse_number(p);
    if (path_char(c) || c == '\\')
        return parse_word(p);
    fail(p, "unexpected '%c'", c);
    return -1;
}

static bool word_ahead(parser *p, const char *w)
{
    skip_space(p);
    size_t n = strlen(w);
    return p->len - p->pos >= n && memcmp(p->s + p->pos, w, n) == 0 &&
           (p->pos + n == p->len || !path_char(p->s[p->pos + n]));
}

static int parse_cmp(parser *p)
{
    int left = parse_primary(p);
    if (left < 0)
        return -1;
    skip_space(p);
    int op = -1;
    const char *s = p->s + p->pos;
    size_t rest = p->len - p->pos;
    if (rest >= 2 && s[0] == '!' && s[1] == '=')
        op = OP_NE, p->pos += 2;
    else if (rest >= 2 && s[0] == '<' && s[1] == '=')
        op = OP_LE, p->pos += 2;
    else if (rest >= 2 && s[0] == '>' && s[1] == '=')
        op = OP_GE, p->pos += 2;
    else if (rest >= 1 && s[0] == '=')
        op = OP_EQ, p->pos += rest >= 2 && s[1] == '=' ? 2u : 1u; /* '==' reads as '=' */
    else if (rest >= 1 && s[0] == '<')
        op = OP_LT, p->pos++;
    else if (rest >= 1 && s[0] == '>')
        op = OP_GT, p->pos++;
    bool in = op < 0 && word_ahead(p, "in");
    if (op < 0 && !in)
        return left;
    if (in)
        p->pos += 2;
    int right = parse_primary(p);
    if (right < 0)
        return -1;
    int id = new_node(p, in ? N_IN : N_CMP);
    if (id < 0)
        return -1;
    p->q->nodes[id].op = (uint8_t)(in ? 0 : op);
    uint32_t kids[2] = {(uint32_t)left, (uint32_t)right};
    return add_kids(p, id, kids, 2) ? id : -1;
}

static int parse_unary(parser *p)
{
    if (at(p, '!') && !(p->pos + 1 < p->len && p->s[p->pos + 1] == '=')) {
        p->pos++;
        if (!deeper(p))
            return -1;
        int inner = parse_unary(p);
        p->depth--;
        if (inner < 0)
            return -1;
        int id = new_node(p, N_NOT);
        uint32_t k = (uint32_t)inner;
        return id >= 0 && add_kids(p, id, &k, 1) ? id : -1;
    }
    return parse_cmp(p);
}

/* A run of operands joined by one operator ("and" or "or"). */
static int parse_chain(parser *p, const char *word, nkind kind, int (*operand)(parser *))
{
    int first = operand(p);
    if (first < 0 || !word_ahead(p, word))
        return first;
    uint32_t items[PS_FQL_MAX_NODES];
    size_t n = 0;
    items[n++] = (uint32_t)first;
    while (word_ahead(p, word)) {
        p->pos += strlen(word);
        if (n == PS_FQL_MAX_NODES) {
            fail(p, "the query is too long");
            return -1;
        }
        int next = operand(p);
        if (next < 0)
            return -1;
        items[n++] = (uint32_t)next;
    }
    int id = new_node(p, kind);
    return id >= 0 && add_kids(p, id, items, n) ? id : -1;
}

static int parse_and(parser *p)
{
    return parse_chain(p, "and", N_AND, parse_unary);
}

static int parse_or(parser *p)
{
    return parse_chain(p, "or", N_OR, parse_and);
}

ps_status ps_fql_compile(const char *src, size_t len, ps_fql **out, char *err, size_t err_cap)
{
    *out = NULL;
    if (err_cap)
        err[0] = 0;
    parser p = {.s = src, .len = len, .err = err, .err_cap = err_cap};
    if (len > PS_FQL_MAX_BYTES) {
        fail(&p, "the query is %zu bytes; at most %d", len, PS_FQL_MAX_BYTES);
        return PS_EINVAL;
    }
    if (memchr(src, 0, len)) {
        p.pos = (size_t)((const char *)memchr(src, 0, len) - src);
        fail(&p, "the query holds a NUL byte");
        return PS_EINVAL;
    }
    p.q = ps_xcalloc(1, sizeof *p.q);
    int root = parse_or(&p);
    skip_space(&p);
    if (root >= 0 && p.pos < p.len)
        fail(&p, "unexpected '%c' after a complete expression", p.s[p.pos]);
    if (root < 0 || p.failed) {
        if (!p.failed)
            fail(&p, "not a query");
        free(p.q);
        return PS_EINVAL;
    }
    p.q->root = (uint32_t)root;
    *out = p.q;
    return PS_OK;
}

void ps_fql_free(ps_fql *q)
{
    free(q);
}

/* ---- evaluation ---- */

typedef struct val {
    vtype t;
    double n;          /* V_BOOL (0 or 1), V_NUM */
    const char *s;     /* V_STR */
    size_t len;        /* V_STR */
    const cJSON *j;    /* V_LIST, V_OBJ from the message */
    const node *items; /* V_LIST from a list literal (then j is NULL) */
} val;

typedef struct scratch {
    char buf[SCRATCH_BYTES];
    size_t used;
} scratch;

typedef struct eval_ctx {
    const ps_fql *q;
    const cJSON *msg;
    scratch *sc;
} eval_ctx;

static val v_null(void)
{
    return (val){.t = V_NULL};
}

static val v_bool(bool b)
{
    return (val){.t = V_BOOL, .n = b};
}

static val v_num(double d)
{
    return (val){.t = V_NUM, .n = d};
}

static val v_str(const char *s, size_t len)
{
    return (val){.t = V_STR, .s = s, .len = len};
}

static val from_json(const cJSON *j)
{
    if (j == NULL || cJSON_IsNull(j))
        return v_null();
    if (cJSON_IsBool(j))
        return v_bool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j))
        return v_num(j->valuedouble);
    if (cJSON_IsString(j))
        return v_str(j->valuestring, strlen(j->valuestring));
    if (cJSON_IsArray(j))
        return (val){.t = V_LIST, .j = j};
    if (cJSON_IsObject(j))
        return (val){.t = V_OBJ, .j = j};
    return v_null();
}

static val eval(const eval_ctx *c, uint32_t id);

static bool truthy(const val *v)
{
    return v->t == V_BOOL && v->n != 0;
}

static bool equal(const val *a, const val *b)
{
    if (a->t != b->t)
        return false;
    switch (a->t) {
    case V_NULL: return true;
    case V_BOOL:
    case V_NUM: return a->n == b->n;
    case V_STR: return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
    default: return false; /* lists and objects are not compared by value */
    }
}

/* -1, 0, 1, or 2 when the two do not order (only numbers with numbers, strings with
 * strings, byte-wise). */
static int order(const val *a, const val *b)
{
    if (a->t == V_NUM && b->t == V_NUM)
        return a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
    if (a->t == V_STR && b->t == V_STR) {
        size_t n = a->len < b->len ? a->len : b->len;
        int r = memcmp(a->s, b->s, n);
        if (r)
            return r < 0 ? -1 : 1;
        return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
    }
    return 2;
}

/* Calls `fn` on each item of list `l` until it returns true. */
static bool any_item(const eval_ctx *c, const val *l, bool (*fn)(const val *, const void *),
                     const void *arg)
{
    if (l->items) {
        const node *n = l->items;
        for (uint16_t i = 0; i < n->count; i++) {
            val v = eval(c, c->q->kids[n->first + i]);
            if (fn(&v, arg))
                return true;
        }
        return false;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, l->j)
    {
        val v = from_json(it);
        if (fn(&v, arg))
            return true;
    }
    return false;
}

static bool equal_to(const val *v, const void *arg)
{
    return equal(v, arg);
}

static size_t list_size(const eval_ctx *c, const val *l)
{
    (void)c;
    return l->items ? l->items->count : (size_t)cJSON_GetArraySize(l->j);
}

/* Room for a made string, or NULL when this evaluation has used its scratch. */
static char *room(const eval_ctx *c, size_t len)
{
    if (c->sc->used + len > SCRATCH_BYTES)
        return NULL;
    char *r = c->sc->buf + c->sc->used;
    c->sc->used += len;
    return r;
}

static bool is_lower(char ch)
{
    return ch >= 'a' && ch <= 'z';
}

static bool is_upper(char ch)
{
    return ch >= 'A' && ch <= 'Z';
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool word_char(char ch)
{
    return is_lower(ch) || is_upper(ch) || is_digit(ch) || (unsigned char)ch >= 0x80;
}

static char to_lower(char ch)
{
    return is_upper(ch) ? (char)(ch - 'A' + 'a') : ch;
}

static char to_upper(char ch)
{
    return is_lower(ch) ? (char)(ch - 'a' + 'A') : ch;
}

/* snakecase, kebabcase, titlecase: words are runs of letters and digits, split also where a
 * lower-case letter or digit meets an upper-case one ("userId" -> user, id) and before the
 * last capital of a run of capitals followed by a lower-case letter ("HTTPServer" -> http,
 * server). */
static val recase(const eval_ctx *c, const val *s, char sep, bool title)
{
    char *out = room(c, s->len * 2 + 1);
    if (out == NULL)
        return v_null();
    size_t n = 0;
    bool in_word = false;
    for (size_t i = 0; i < s->len; i++) {
        char ch = s->s[i];
        if (!word_char(ch)) {
            in_word = false;
            continue;
        }
        bool boundary = false;
        if (in_word && i > 0) {
            char prev = s->s[i - 1];
            char next = i + 1 < s->len ? s->s[i + 1] : 0;
            boundary = (is_upper(ch) && (is_lower(prev) || is_digit(prev))) ||
                       (is_upper(ch) && is_upper(prev) && is_lower(next));
        }
        if (n > 0 && (!in_word || boundary))
            out[n++] = sep;
        bool first = !in_word || boundary;
        out[n++] = title && first ? to_upper(ch) : to_lower(ch);
        in_word = true;
    }
    c->sc->used -= s->len * 2 + 1 - n; /* give back what was not used */
    return v_str(out, n);
}

/* Full-string glob: * any run, ? one byte, [abc] [a-z] [!a-z] a class, \x the byte x. */
static bool glob(const char *p, size_t pl, const char *s, size_t sl)
{
    size_t pi = 0, si = 0, star_p = SIZE_MAX, star_s = 0;
    while (si < sl) {
        if (pi < pl && p[pi] == '*') {
            star_p = ++pi;
            star_s = si;
            continue;
        }
        if (pi < pl) {
            size_t adv = 0, sadv = 1;
            bool ok = false;
            if (p[pi] == '?') { /* one character: a whole UTF-8 sequence */
                ok = true;
                adv = 1;
                if ((unsigned char)s[si] >= 0xC0)
                    while (si + sadv < sl && sadv < 4 &&
                           ((unsigned char)s[si + sadv] & 0xC0) == 0x80)
                        sadv++;
            } else if (p[pi] == '[') {
                size_t k = pi + 1;
                bool neg = k < pl && (p[k] == '!' || p[k] == '^');
                if (neg)
                    k++;
                bool hit = false, closed = false;
                for (size_t first = k; k < pl; k++) {
                    if (p[k] == ']' && k > first) {
                        closed = true;
                        break;
                    }
                    char lo = p[k], hi = lo;
                    if (k + 2 < pl && p[k + 1] == '-' && p[k + 2] != ']') {
                        hi = p[k + 2];
                        k += 2;
                    }
                    if ((unsigned char)s[si] >= (unsigned char)lo &&
                        (unsigned char)s[si] <= (unsigned char)hi)
                        hit = true;
                }
                if (closed) {
                    ok = hit != neg;
                    adv = k + 1 - pi;
                } else { /* an unclosed '[' is itself */
                    ok = s[si] == '[';
                    adv = 1;
                }
            } else if (p[pi] == '\\' && pi + 1 < pl) {
                ok = s[si] == p[pi + 1];
                adv = 2;
            } else {
                ok = s[si] == p[pi];
                adv = 1;
            }
            if (ok) {
                pi += adv;
                si += sadv;
                continue;
            }
        }
        if (star_p == SIZE_MAX)
            return false;
        pi = star_p; /* let the last * take one more byte */
        si = ++star_s;
    }
    while (pi < pl && p[pi] == '*')
        pi++;
    return pi == pl;
}

static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static val call(const eval_ctx *c, const node *n)
{
    val a = eval(c, c->q->kids[n->first]);
    val b = n->count > 1 ? eval(c, c->q->kids[n->first + 1]) : v_null();
    switch ((fn_id)n->op) {
    case F_CONTAINS:
        if (a.t == V_STR && b.t == V_STR) {
            if (b.len == 0)
                return v_bool(true);
            for (size_t i = 0; i + b.len <= a.len; i++)
                if (memcmp(a.s + i, b.s, b.len) == 0)
                    return v_bool(true);
            return v_bool(false);
        }
        return v_bool(a.t == V_LIST && any_item(c, &a, equal_to, &b));
    case F_LENGTH:
        return v_num(a.t == V_STR    ? (double)utf8_chars(a.s, a.len)
                     : a.t == V_LIST ? (double)list_size(c, &a)
                     : a.t == V_OBJ  ? (double)cJSON_GetArraySize(a.j)
                                     : 0);
    case F_LOWER:
    case F_UPPER: {
        if (a.t != V_STR)
            return v_null();
        char *out = room(c, a.len);
        if (out == NULL)
            return v_null();
        for (size_t i = 0; i < a.len; i++)
            out[i] = n->op == F_LOWER ? to_lower(a.s[i]) : to_upper(a.s[i]);
        return v_str(out, a.len);
    }
    case F_SNAKE: return a.t == V_STR ? recase(c, &a, '_', false) : v_null();
    case F_KEBAB: return a.t == V_STR ? recase(c, &a, '-', false) : v_null();
    case F_TITLE: return a.t == V_STR ? recase(c, &a, ' ', true) : v_null();
    case F_TYPEOF: {
        static const char *const names[] = {"null", "bool", "number", "string", "list", "object"};
        return v_str(names[a.t], strlen(names[a.t]));
    }
    case F_MATCH: return v_bool(a.t == V_STR && b.t == V_STR && glob(b.s, b.len, a.s, a.len));
    case F_BOOL:
        switch (a.t) {
        case V_BOOL: return a;
        case V_NUM: return v_bool(a.n != 0);
        case V_STR:
            return v_bool((a.len == 4 && memcmp(a.s, "true", 4) == 0) ||
                          (a.len == 1 && a.s[0] == '1'));
        case V_LIST: return v_bool(list_size(c, &a) > 0);
        case V_OBJ: return v_bool(cJSON_GetArraySize(a.j) > 0);
        default: return v_bool(false);
        }
    case F_STRING:
        switch (a.t) {
        case V_STR: return a;
        case V_BOOL: return a.n != 0 ? v_str("true", 4) : v_str("false", 5);
        case V_NULL: return v_str("null", 4);
        case V_NUM: {
            char tmp[40];
            int len = a.n == floor(a.n) && fabs(a.n) < 1e15
                          ? snprintf(tmp, sizeof tmp, "%.0f", a.n)
                          : snprintf(tmp, sizeof tmp, "%.17g", a.n);
            char *out = len > 0 ? room(c, (size_t)len) : NULL;
            if (out == NULL)
                return v_null();
            memcpy(out, tmp, (size_t)len);
            return v_str(out, (size_t)len);
        }
        default: return v_null();
        }
    case F_NUMBER:
        switch (a.t) {
        case V_NUM: return a;
        case V_BOOL: return v_num(a.n);
        case V_STR: {
            char tmp[64];
            if (a.len == 0 || a.len >= sizeof tmp)
                return v_null();
            memcpy(tmp, a.s, a.len);
            tmp[a.len] = 0;
            char *end;
            double d = strtod(tmp, &end);
            /* decimal text only: no leading blank, hex, inf or nan */
            bool plain = strspn(tmp, "0123456789+-.eE") == a.len;
            return plain && *end == 0 && isfinite(d) ? v_num(d) : v_null();
        }
        default: return v_null();
        }
    case F__COUNT: break;
    }
    return v_null();
}

static val eval(const eval_ctx *c, uint32_t id)
{
    const node *n = &c->q->nodes[id];
    const uint32_t *k = &c->q->kids[n->first];
    switch ((nkind)n->kind) {
    case N_LIT:
        if (n->op == V_STR)
            return v_str(c->q->text + n->off, n->len);
        return n->op == V_NULL ? v_null() : n->op == V_BOOL ? v_bool(n->num != 0) : v_num(n->num);
    case N_PATH: {
        const cJSON *j = c->msg;
        for (uint16_t i = 0; i < n->count && j; i++) {
            const char *seg = c->q->text + k[i];
            if (cJSON_IsObject(j)) {
                j = cJSON_GetObjectItemCaseSensitive(j, seg);
            } else if (cJSON_IsArray(j) && is_digit(seg[0]) && strlen(seg) < 10) {
                j = cJSON_GetArrayItem(j, atoi(seg)); /* an index into a list */
            } else {
                j = NULL;
            }
        }
        return from_json(j);
    }
    case N_LIST: return (val){.t = V_LIST, .items = n};
    case N_NOT: {
        val v = eval(c, k[0]);
        return v_bool(!truthy(&v));
    }
    case N_AND:
    case N_OR:
        for (uint16_t i = 0; i < n->count; i++) {
            val v = eval(c, k[i]);
            if (truthy(&v) == (n->kind == N_OR))
                return v_bool(n->kind == N_OR);
        }
        return v_bool(n->kind == N_AND);
    case N_CMP: {
        val a = eval(c, k[0]), b = eval(c, k[1]);
        if (n->op == OP_EQ)
            return v_bool(equal(&a, &b));
        if (n->op == OP_NE)
            return v_bool(!equal(&a, &b));
        int o = order(&a, &b);
        if (o == 2)
            return v_bool(false);
        switch ((cmp_op)n->op) {
        case OP_LT: return v_bool(o < 0);
        case OP_LE: return v_bool(o <= 0);
        case OP_GT: return v_bool(o > 0);
        default: return v_bool(o >= 0);
        }
    }
    case N_IN: {
        val a = eval(c, k[0]), l = eval(c, k[1]);
        return v_bool(l.t == V_LIST && any_item(c, &l, equal_to, &a));
    }
    case N_CALL: return call(c, n);
    }
    return v_null();
}

bool ps_fql_matches(const ps_fql *q, const void *msg)
{
    scratch sc;
    sc.used = 0;
    eval_ctx c = {q, msg, &sc};
    val v = eval(&c, q->root);
    return truthy(&v);
}
