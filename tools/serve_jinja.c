/* A Jinja interpreter for chat templates: the subset that Hugging Face chat templates use (Qwen's
 * ChatML templates with tools, the thinking switch, macros and namespaces; most others), with
 * transformers' environment (trim_blocks, lstrip_blocks, no trailing newline, tojson with
 * ensure_ascii=False). String semantics follow Python's Jinja (str.strip('\n') strips newlines only).
 *
 * A template is parsed once at start-up; anything outside the subset (an unknown statement, filter,
 * test, function or method, or a syntax error) makes jinja_parse fail with the reason, and the server
 * refuses to start rather than render the template wrongly. Rendering works in one arena that is
 * freed at the end; errors (raise_exception, a type error) unwind with longjmp to jinja_render. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

/* ---------------------------------------------------------------- arena */
typedef struct ablk {
    struct ablk *next;
    size_t used, cap;
    char mem[];
} ablk;
typedef struct {
    ablk *head;
    int oom;
} arena;

static void *aalloc(arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->used + n > a->head->cap) {
        size_t cap = n > 65536 ? n : 65536;
        ablk *b = malloc(sizeof *b + cap);
        if (!b) {
            a->oom = 1;
            return NULL;
        }
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = a->head->mem + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}
static void afree(arena *a) {
    while (a->head) {
        ablk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

/* ---------------------------------------------------------------- syntax tree */
enum {
    N_BLOCK, N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_BREAK, N_CONTINUE, /* statements */
    N_LIT, N_NAME, N_ATTR, N_INDEX, N_SLICE, N_CALL, N_FILTER, N_TEST, N_BIN, N_NOT, N_NEG, N_AND, N_OR, N_COND,
    N_LIST, N_DICT
};
enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_MACRO };

typedef struct node node;
typedef struct jstr {
    size_t n;
    char p[];
} jstr;
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct {
    int t;
    union {
        int b;
        long long i;
        double f;
        jstr *s;
        jlist *l;
        jdict *d;
        const node *m;
    };
} jv;
struct jlist {
    jv *v;
    int n, cap;
};
struct jdict {
    jstr **k;
    jv *v;
    int n, cap;
};

struct node {
    int k;
    node *a, *b, *c, *d;
    node **v; /* children: block statements, arguments, list items, dict key/value pairs */
    const char **names; /* keyword argument names (NULL: positional), for targets, macro parameters */
    int nv, nn;
    const char *s; /* name, operator, filter/test/method name */
    int neg;
    jv lit;
};

struct jtpl {
    arena ar;
    node *root;
};

/* ---------------------------------------------------------------- lexer */
enum { T_END, T_TEXT, T_OEXPR, T_CEXPR, T_OSTMT, T_CSTMT, T_NAME, T_STR, T_INT, T_FLOAT, T_OP };
typedef struct {
    int t;
    const char *s; /* T_NAME, T_OP: NUL-terminated; T_TEXT / T_STR: the text (jstr) */
    jstr *str;
    long long i;
    double f;
    const char *at; /* where in the source */
} tok;

typedef struct {
    arena *ar;
    tok *t;
    int n, cap, pos;
    char *why;
    size_t wl;
    int bad;
    const char *src, *at; /* the source; where the lexer is */
} P;

static void perr(P *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void perr(P *p, const char *fmt, ...) {
    if (p->bad) return;
    p->bad = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, p->wl, fmt, ap);
    va_end(ap);
}
static jstr *mkstr(arena *a, const char *s, size_t n) {
    jstr *r = aalloc(a, sizeof *r + n + 1);
    if (!r) return NULL;
    r->n = n;
    memcpy(r->p, s, n);
    r->p[n] = 0;
    return r;
}
static char *astrdup(arena *a, const char *s, size_t n) {
    char *r = aalloc(a, n + 1);
    if (r) memcpy(r, s, n);
    return r;
}
static tok *push(P *p, int t) {
    if (p->n == p->cap) {
        int c = p->cap ? p->cap * 2 : 256;
        tok *q = realloc(p->t, (size_t)c * sizeof *q);
        if (!q) {
            perr(p, "out of memory");
            return NULL;
        }
        p->t = q;
        p->cap = c;
    }
    tok *r = &p->t[p->n++];
    memset(r, 0, sizeof *r);
    r->t = t;
    r->at = p->at;
    return r;
}

/* The tokens of one tag's inside, from *sp up to its closing }} or %}; returns the position after it. */
static const char *lex_tag(P *p, const char *s, const char *end, int stmt, int *rtrim) {
    int depth = 0;
    *rtrim = 0;
    while (s < end && !p->bad) {
        if (isspace((unsigned char)*s)) {
            s++;
            continue;
        }
        p->at = s;
        if (depth == 0) {
            const char *close = stmt ? "%}" : "}}";
            if (*s == '-' && s + 2 < end + 1 && !strncmp(s + 1, close, 2)) {
                *rtrim = 1;
                return s + 3;
            }
            if (!strncmp(s, close, 2)) return s + 2;
        }
        if (isalpha((unsigned char)*s) || *s == '_') {
            const char *b = s;
            while (s < end && (isalnum((unsigned char)*s) || *s == '_')) s++;
            tok *t = push(p, T_NAME);
            if (t) t->s = astrdup(p->ar, b, (size_t)(s - b));
        } else if (isdigit((unsigned char)*s)) {
            const char *b = s;
            while (s < end && isdigit((unsigned char)*s)) s++;
            int fl = 0;
            if (s + 1 < end && *s == '.' && isdigit((unsigned char)s[1])) {
                fl = 1;
                s++;
                while (s < end && isdigit((unsigned char)*s)) s++;
            }
            char tmp[64];
            snprintf(tmp, sizeof tmp, "%.*s", (int)(s - b), b);
            tok *t = push(p, fl ? T_FLOAT : T_INT);
            if (t) {
                t->i = strtoll(tmp, NULL, 10);
                t->f = strtod(tmp, NULL);
            }
        } else if (*s == '\'' || *s == '"') {
            char q = *s++;
            sbuf b = {0};
            sb_add(&b, "");
            while (s < end && *s != q) {
                if (*s == '\\' && s + 1 < end) {
                    char e = s[1], o;
                    switch (e) {
                    case 'n': o = '\n'; break;
                    case 't': o = '\t'; break;
                    case 'r': o = '\r'; break;
                    case 'b': o = '\b'; break;
                    case 'f': o = '\f'; break;
                    case 'v': o = '\v'; break;
                    case '\'': case '"': case '\\': o = e; break;
                    default: perr(p, "unsupported escape \\%c in a string literal", e); o = e;
                    }
                    sb_addn(&b, &o, 1);
                    s += 2;
                } else sb_addn(&b, s++, 1);
            }
            if (s >= end) perr(p, "unterminated string literal");
            s++;
            tok *t = push(p, T_STR);
            if (t) t->str = mkstr(p->ar, b.p ? b.p : "", b.n);
            free(b.p);
        } else {
            static const char *ops2[] = {"==", "!=", "<=", ">=", "//", "**", NULL};
            const char *op = NULL;
            for (int i = 0; ops2[i]; i++)
                if (!strncmp(s, ops2[i], 2)) op = ops2[i];
            char one[2] = {*s, 0};
            if (!op) {
                if (!strchr("+-*/%~<>=()[]{},.:|", *s)) {
                    perr(p, "unexpected character '%c' in a tag", *s);
                    break;
                }
                op = one;
            }
            if (*op == '{' || *op == '(' || *op == '[') depth++;
            if (*op == '}' || *op == ')' || *op == ']') depth--;
            tok *t = push(p, T_OP);
            if (t) t->s = astrdup(p->ar, op, strlen(op));
            s += strlen(op);
        }
    }
    if (!p->bad) perr(p, "a tag is not closed");
    return end;
}

/* The whole template into tokens: text, {{ expr }}, {% stmt %}; comments dropped. Whitespace control
 * ({%- -%}), trim_blocks and lstrip_blocks applied to the text as Jinja does. */
static void lex(P *p, const char *src) {
    size_t L = strlen(src);
    if (L && src[L - 1] == '\n') L--; /* keep_trailing_newline=False */
    const char *s = src, *end = src + L;
    int ltrim_next = 0, trim_nl = 0;
    while (s < end && !p->bad) {
        const char *o = s;
        while (o < end && !(o[0] == '{' && o + 1 < end && (o[1] == '{' || o[1] == '%' || o[1] == '#'))) o++;
        const char *tb = s, *te = o;
        if (ltrim_next)
            while (tb < te && isspace((unsigned char)*tb)) tb++;
        else if (trim_nl && tb < te && *tb == '\n') tb++;
        else if (trim_nl && tb + 1 < te && tb[0] == '\r' && tb[1] == '\n') tb += 2;
        ltrim_next = trim_nl = 0;
        if (o < end) {
            int minus = o + 2 < end && o[2] == '-';
            if (minus)
                while (te > tb && isspace((unsigned char)te[-1])) te--;
            else if (o[1] != '{') { /* lstrip_blocks: only blanks between the line start and the tag */
                const char *q = te;
                while (q > tb && (q[-1] == ' ' || q[-1] == '\t')) q--;
                if (q == src || q[-1] == '\n') te = q;
            }
        }
        if (te > tb) {
            tok *t = push(p, T_TEXT);
            if (t) t->str = mkstr(p->ar, tb, (size_t)(te - tb));
        }
        if (o >= end) break;
        p->at = o;
        const char *in = o + 2 + (o[2] == '-');
        int rt = 0;
        if (o[1] == '#') {
            const char *c = strstr(in, "#}");
            if (!c || c >= end + 2) {
                perr(p, "a comment is not closed");
                break;
            }
            rt = c > in && c[-1] == '-';
            s = c + 2;
            trim_nl = 1;
        } else {
            int stmt = o[1] == '%';
            push(p, stmt ? T_OSTMT : T_OEXPR);
            s = lex_tag(p, in, end, stmt, &rt);
            push(p, stmt ? T_CSTMT : T_CEXPR);
            trim_nl = stmt;
        }
        if (rt) ltrim_next = 1, trim_nl = 0;
    }
    push(p, T_END);
}

/* ---------------------------------------------------------------- parser */
static tok *cur(P *p) { return &p->t[p->pos]; }
static int is_op(P *p, const char *op) { return cur(p)->t == T_OP && !strcmp(cur(p)->s, op); }
static int is_kw(P *p, const char *kw) { return cur(p)->t == T_NAME && !strcmp(cur(p)->s, kw); }
static int is_kw_at(P *p, int k, const char *kw) {
    return p->pos + k < p->n && p->t[p->pos + k].t == T_NAME && !strcmp(p->t[p->pos + k].s, kw);
}
static int accept_op(P *p, const char *op) {
    if (!is_op(p, op)) return 0;
    p->pos++;
    return 1;
}
static int accept_kw(P *p, const char *kw) {
    if (!is_kw(p, kw)) return 0;
    p->pos++;
    return 1;
}
static void expect_op(P *p, const char *op) {
    if (!accept_op(p, op)) perr(p, "expected '%s'", op);
}
static const char *expect_name(P *p) {
    if (cur(p)->t != T_NAME) {
        perr(p, "expected a name");
        return "";
    }
    return p->t[p->pos++].s;
}
static node *mk(P *p, int k) {
    node *n = aalloc(p->ar, sizeof *n);
    if (!n) perr(p, "out of memory");
    else n->k = k;
    return n;
}
typedef struct {
    node **v;
    const char **names;
    int n, cap;
} nvec;
static void nv_push(P *p, nvec *v, node *x, const char *name) {
    if (v->n == v->cap) {
        int c = v->cap ? v->cap * 2 : 8;
        node **a = aalloc(p->ar, (size_t)c * sizeof *a);
        const char **b = aalloc(p->ar, (size_t)c * sizeof *b);
        if (!a || !b) {
            perr(p, "out of memory");
            return;
        }
        if (v->n) memcpy(a, v->v, (size_t)v->n * sizeof *a), memcpy(b, v->names, (size_t)v->n * sizeof *b);
        v->v = a;
        v->names = b;
        v->cap = c;
    }
    v->v[v->n] = x;
    v->names[v->n++] = name;
}

static node *p_expr(P *p);
static node *p_or(P *p);
static node *p_unary(P *p, int filters);

static void p_args(P *p, node *n) { /* after '(' : a, b, k=v ... ')' */
    nvec v = {0};
    while (!p->bad && !is_op(p, ")")) {
        const char *kw = NULL;
        if (cur(p)->t == T_NAME && p->t[p->pos + 1].t == T_OP && !strcmp(p->t[p->pos + 1].s, "=")) {
            kw = cur(p)->s;
            p->pos += 2;
        }
        nv_push(p, &v, p_expr(p), kw);
        if (!accept_op(p, ",")) break;
    }
    expect_op(p, ")");
    n->v = v.v;
    n->names = v.names;
    n->nv = v.n;
}

static const char *FILTERS[] = {"tojson", "length", "count", "trim", "string", "safe", "upper", "lower", "capitalize",
                                "title", "items", "list", "first", "last", "join", "default", "d", "reverse", "int",
                                "float", "abs", "e", "escape", "dictsort", "replace", "unique", "map", "select",
                                "reject", "selectattr", "rejectattr", "min", "max", "sum", NULL};
static const char *TESTS[] = {"defined", "undefined", "none", "string", "number", "integer", "float", "boolean", "true",
                              "false", "mapping", "iterable", "sequence", "callable", "odd", "even", "equalto", "eq",
                              "ne", "lower", "upper", "in", NULL};
static const char *METHODS[] = {"startswith", "endswith", "split", "strip", "lstrip", "rstrip", "upper", "lower",
                                "replace", "title", "capitalize", "items", "keys", "values", "get", "count", "find",
                                NULL};
static const char *FUNCS[] = {"raise_exception", "namespace", "range", "dict", NULL};
static int in_list(const char **l, const char *s) {
    for (int i = 0; l[i]; i++)
        if (!strcmp(l[i], s)) return 1;
    return 0;
}

static node *p_primary(P *p) {
    tok *t = cur(p);
    node *n = NULL;
    if (t->t == T_STR) {
        n = mk(p, N_LIT);
        if (n) n->lit.t = V_STR, n->lit.s = t->str;
        p->pos++;
        while (cur(p)->t == T_STR && n) { /* adjacent literals concatenate */
            jstr *a = n->lit.s, *b = cur(p)->str, *c = aalloc(p->ar, sizeof *c + a->n + b->n + 1);
            if (!c) break;
            c->n = a->n + b->n;
            memcpy(c->p, a->p, a->n);
            memcpy(c->p + a->n, b->p, b->n + 1);
            n->lit.s = c;
            p->pos++;
        }
    } else if (t->t == T_INT || t->t == T_FLOAT) {
        n = mk(p, N_LIT);
        if (n) {
            if (t->t == T_INT) n->lit.t = V_INT, n->lit.i = t->i;
            else n->lit.t = V_FLOAT, n->lit.f = t->f;
        }
        p->pos++;
    } else if (t->t == T_NAME) {
        const char *s = t->s;
        p->pos++;
        n = mk(p, N_LIT);
        if (!n) return NULL;
        if (!strcmp(s, "true") || !strcmp(s, "True")) n->lit.t = V_BOOL, n->lit.b = 1;
        else if (!strcmp(s, "false") || !strcmp(s, "False")) n->lit.t = V_BOOL, n->lit.b = 0;
        else if (!strcmp(s, "none") || !strcmp(s, "None")) n->lit.t = V_NONE;
        else n->k = N_NAME, n->s = s;
    } else if (accept_op(p, "(")) {
        n = p_expr(p);
        if (is_op(p, ",")) { /* a tuple: a list */
            nvec v = {0};
            nv_push(p, &v, n, NULL);
            while (accept_op(p, ",") && !is_op(p, ")")) nv_push(p, &v, p_expr(p), NULL);
            n = mk(p, N_LIST);
            if (n) n->v = v.v, n->nv = v.n;
        }
        expect_op(p, ")");
    } else if (accept_op(p, "[")) {
        nvec v = {0};
        while (!p->bad && !is_op(p, "]")) {
            nv_push(p, &v, p_expr(p), NULL);
            if (!accept_op(p, ",")) break;
        }
        expect_op(p, "]");
        n = mk(p, N_LIST);
        if (n) n->v = v.v, n->nv = v.n;
    } else if (accept_op(p, "{")) {
        nvec v = {0};
        while (!p->bad && !is_op(p, "}")) {
            nv_push(p, &v, p_expr(p), NULL);
            expect_op(p, ":");
            nv_push(p, &v, p_expr(p), NULL);
            if (!accept_op(p, ",")) break;
        }
        expect_op(p, "}");
        n = mk(p, N_DICT);
        if (n) n->v = v.v, n->nv = v.n;
    } else {
        perr(p, "unexpected %s in an expression", t->t == T_OP ? t->s : t->t == T_END ? "end of template" : "token");
    }
    return n;
}

static node *p_postfix(P *p, node *n) {
    while (!p->bad) {
        if (accept_op(p, ".")) {
            node *a = mk(p, N_ATTR);
            if (!a) return n;
            a->a = n;
            a->s = expect_name(p);
            n = a;
        } else if (accept_op(p, "[")) {
            node *a = mk(p, N_INDEX);
            if (!a) return n;
            a->a = n;
            node *part[3] = {NULL, NULL, NULL};
            int k = 0, slice = 0;
            while (!p->bad) {
                if (!is_op(p, ":") && !is_op(p, "]")) part[k] = p_expr(p);
                if (accept_op(p, ":")) {
                    slice = 1;
                    if (++k > 2) {
                        perr(p, "bad slice");
                        break;
                    }
                } else break;
            }
            expect_op(p, "]");
            if (slice) {
                a->k = N_SLICE;
                a->b = part[0];
                a->c = part[1];
                a->d = part[2];
            } else {
                a->b = part[0];
                if (!a->b) perr(p, "empty subscript");
            }
            n = a;
        } else if (accept_op(p, "(")) {
            node *c = mk(p, N_CALL);
            if (!c) return n;
            c->a = n;
            p_args(p, c);
            if (n && n->k == N_ATTR && !in_list(METHODS, n->s)) perr(p, "method '%s' is not supported", n->s);
            n = c;
        } else break;
    }
    return n;
}

static node *p_filters(P *p, node *n) {
    while (!p->bad) {
        if (accept_op(p, "|")) {
            node *f = mk(p, N_FILTER);
            if (!f) return n;
            f->a = n;
            f->s = expect_name(p);
            if (!in_list(FILTERS, f->s)) perr(p, "filter '%s' is not supported", f->s);
            if (accept_op(p, "(")) p_args(p, f);
            n = f;
        } else if (accept_kw(p, "is")) {
            node *t = mk(p, N_TEST);
            if (!t) return n;
            t->a = n;
            t->neg = accept_kw(p, "not");
            t->s = is_kw(p, "none") || is_kw(p, "true") || is_kw(p, "false") ? p->t[p->pos++].s : expect_name(p);
            if (!in_list(TESTS, t->s)) perr(p, "test '%s' is not supported", t->s);
            if (accept_op(p, "(")) p_args(p, t);
            else if (cur(p)->t == T_STR || cur(p)->t == T_INT || cur(p)->t == T_FLOAT) {
                nvec v = {0};
                nv_push(p, &v, p_primary(p), NULL);
                t->v = v.v, t->names = v.names, t->nv = v.n;
            }
            n = t;
        } else break;
    }
    return n;
}

static node *p_unary(P *p, int filters) {
    node *n;
    if (accept_op(p, "-")) {
        n = mk(p, N_NEG);
        if (n) n->a = p_unary(p, 0);
    } else if (accept_op(p, "+")) {
        n = p_unary(p, 0);
    } else n = p_postfix(p, p_primary(p));
    return filters ? p_filters(p, n) : n;
}
static node *bin(P *p, const char *op, node *a, node *b) {
    node *n = mk(p, N_BIN);
    if (n) n->s = op, n->a = a, n->b = b;
    return n;
}
static node *p_pow(P *p) {
    node *n = p_unary(p, 1);
    while (!p->bad && accept_op(p, "**")) n = bin(p, "**", n, p_unary(p, 1));
    return n;
}
static node *p_math2(P *p) {
    node *n = p_pow(p);
    while (!p->bad && (is_op(p, "*") || is_op(p, "/") || is_op(p, "//") || is_op(p, "%"))) {
        const char *op = p->t[p->pos++].s;
        n = bin(p, op, n, p_pow(p));
    }
    return n;
}
static node *p_concat(P *p) {
    node *n = p_math2(p);
    while (!p->bad && accept_op(p, "~")) n = bin(p, "~", n, p_math2(p));
    return n;
}
static node *p_math1(P *p) {
    node *n = p_concat(p);
    while (!p->bad && (is_op(p, "+") || is_op(p, "-"))) {
        const char *op = p->t[p->pos++].s;
        n = bin(p, op, n, p_concat(p));
    }
    return n;
}
static node *p_compare(P *p) {
    node *n = p_math1(p);
    while (!p->bad) {
        const char *op = NULL;
        if (is_op(p, "==") || is_op(p, "!=") || is_op(p, "<") || is_op(p, ">") || is_op(p, "<=") || is_op(p, ">="))
            op = p->t[p->pos++].s;
        else if (accept_kw(p, "in")) op = "in";
        else if (is_kw(p, "not") && is_kw_at(p, 1, "in")) {
            p->pos += 2;
            op = "notin";
        } else break;
        n = bin(p, op, n, p_math1(p));
    }
    return n;
}
static node *p_not(P *p) {
    if (accept_kw(p, "not")) {
        node *n = mk(p, N_NOT);
        if (n) n->a = p_not(p);
        return n;
    }
    return p_compare(p);
}
static node *p_and(P *p) {
    node *n = p_not(p);
    while (!p->bad && accept_kw(p, "and")) {
        node *a = mk(p, N_AND);
        if (!a) break;
        a->a = n, a->b = p_not(p), n = a;
    }
    return n;
}
static node *p_or(P *p) {
    node *n = p_and(p);
    while (!p->bad && accept_kw(p, "or")) {
        node *a = mk(p, N_OR);
        if (!a) break;
        a->a = n, a->b = p_and(p), n = a;
    }
    return n;
}
static node *p_expr(P *p) {
    node *n = p_or(p);
    while (!p->bad && accept_kw(p, "if")) {
        node *c = mk(p, N_COND);
        if (!c) break;
        c->a = n;
        c->b = p_or(p);
        if (accept_kw(p, "else")) c->c = p_expr(p);
        n = c;
    }
    return n;
}

static node *p_block(P *p, const char **ends, const char **which);

static void expect_close(P *p) {
    if (cur(p)->t != T_CSTMT) perr(p, "expected the end of the statement");
    else p->pos++;
}

/* one statement after {% ; returns NULL for an end keyword (left for the caller) */
static node *p_stmt(P *p) {
    if (accept_kw(p, "if")) {
        node *n = mk(p, N_IF), *top = n;
        if (!n) return NULL;
        n->a = p_expr(p);
        expect_close(p);
        for (;;) {
            const char *ends[] = {"elif", "else", "endif", NULL}, *w = NULL;
            n->b = p_block(p, ends, &w);
            if (p->bad || !w) return top;
            if (!strcmp(w, "elif")) {
                node *e = mk(p, N_IF);
                if (!e) return top;
                e->a = p_expr(p);
                expect_close(p);
                n->c = e;
                n = e;
            } else if (!strcmp(w, "else")) {
                expect_close(p);
                const char *ends2[] = {"endif", NULL};
                n->c = p_block(p, ends2, &w);
                if (!p->bad && w) expect_close(p);
                return top;
            } else {
                expect_close(p);
                return top;
            }
        }
    }
    if (accept_kw(p, "for")) {
        node *n = mk(p, N_FOR);
        if (!n) return NULL;
        nvec t = {0};
        do nv_push(p, &t, NULL, expect_name(p));
        while (accept_op(p, ","));
        n->names = t.names;
        n->nn = t.n;
        if (!accept_kw(p, "in")) perr(p, "expected 'in' in a for statement");
        n->a = p_or(p); /* not p_expr: 'if' filters the loop */
        if (accept_kw(p, "if")) n->d = p_expr(p);
        if (accept_kw(p, "recursive")) perr(p, "recursive loops are not supported");
        expect_close(p);
        const char *ends[] = {"else", "endfor", NULL}, *w = NULL;
        n->b = p_block(p, ends, &w);
        if (!p->bad && w && !strcmp(w, "else")) {
            expect_close(p);
            const char *ends2[] = {"endfor", NULL};
            n->c = p_block(p, ends2, &w);
        }
        if (!p->bad && w) expect_close(p);
        return n;
    }
    if (accept_kw(p, "set")) {
        node *n = mk(p, N_SET);
        if (!n) return NULL;
        n->s = expect_name(p);
        if (accept_op(p, ".")) n->names = aalloc(p->ar, sizeof(char *)), n->names[0] = expect_name(p), n->nn = 1;
        if (is_op(p, ",")) perr(p, "set with several targets is not supported");
        if (accept_op(p, "=")) {
            n->a = p_expr(p);
            expect_close(p);
        } else {
            n->k = N_SETBLOCK;
            expect_close(p);
            const char *ends[] = {"endset", NULL}, *w = NULL;
            n->b = p_block(p, ends, &w);
            if (!p->bad && w) expect_close(p);
        }
        return n;
    }
    if (accept_kw(p, "macro")) {
        node *n = mk(p, N_MACRO);
        if (!n) return NULL;
        n->s = expect_name(p);
        expect_op(p, "(");
        nvec v = {0};
        while (!p->bad && !is_op(p, ")")) {
            const char *nm = expect_name(p);
            node *dflt = accept_op(p, "=") ? p_expr(p) : NULL;
            nv_push(p, &v, dflt, nm);
            if (!accept_op(p, ",")) break;
        }
        expect_op(p, ")");
        n->v = v.v, n->names = v.names, n->nv = n->nn = v.n;
        expect_close(p);
        const char *ends[] = {"endmacro", NULL}, *w = NULL;
        n->b = p_block(p, ends, &w);
        if (!p->bad && w) expect_close(p);
        return n;
    }
    if (accept_kw(p, "break") || accept_kw(p, "continue")) {
        node *n = mk(p, !strcmp(p->t[p->pos - 1].s, "break") ? N_BREAK : N_CONTINUE);
        expect_close(p);
        return n;
    }
    if (accept_kw(p, "generation") || accept_kw(p, "endgeneration")) { /* transformers' assistant-mask markers */
        expect_close(p);
        return mk(p, N_BLOCK);
    }
    perr(p, "statement '%s' is not supported", cur(p)->t == T_NAME ? cur(p)->s : "?");
    return NULL;
}

static node *p_block(P *p, const char **ends, const char **which) {
    node *b = mk(p, N_BLOCK);
    nvec v = {0};
    *which = NULL;
    while (!p->bad && b) {
        tok *t = cur(p);
        if (t->t == T_END) {
            if (ends) perr(p, "missing {%% %s %%}", ends[0]);
            break;
        }
        if (t->t == T_TEXT) {
            node *n = mk(p, N_TEXT);
            if (n) n->lit.t = V_STR, n->lit.s = t->str;
            nv_push(p, &v, n, NULL);
            p->pos++;
        } else if (t->t == T_OEXPR) {
            p->pos++;
            node *n = mk(p, N_OUT);
            if (n) n->a = p_expr(p);
            if (cur(p)->t != T_CEXPR) perr(p, "expected }}");
            else p->pos++;
            nv_push(p, &v, n, NULL);
        } else if (t->t == T_OSTMT) {
            p->pos++;
            if (ends && cur(p)->t == T_NAME)
                for (int i = 0; ends[i]; i++)
                    if (!strcmp(cur(p)->s, ends[i])) {
                        *which = ends[i];
                        p->pos++;
                        goto out;
                    }
            const char *kw = cur(p)->t == T_NAME ? cur(p)->s : "";
            if (!strncmp(kw, "end", 3) || !strcmp(kw, "elif") || !strcmp(kw, "else")) {
                perr(p, "unexpected {%% %s %%}", kw);
                break;
            }
            nv_push(p, &v, p_stmt(p), NULL);
        } else {
            perr(p, "unexpected token");
            break;
        }
    }
out:
    if (b) b->v = v.v, b->nv = v.n;
    return b;
}

/* names called as functions: a known function or a macro the template defines */
static void collect_macros(const node *n, nvec *m, P *p) {
    if (!n) return;
    if (n->k == N_MACRO) nv_push(p, m, NULL, n->s);
    if (n->k == N_BLOCK || n->k == N_IF || n->k == N_FOR || n->k == N_MACRO || n->k == N_SETBLOCK) {
        for (int i = 0; n->k == N_BLOCK && i < n->nv; i++) collect_macros(n->v[i], m, p);
        collect_macros(n->b, m, p);
        collect_macros(n->c, m, p);
    }
}
static void check_calls(const node *n, const nvec *m, P *p) {
    if (!n || p->bad) return;
    if (n->k == N_CALL && n->a && n->a->k == N_NAME && !in_list(FUNCS, n->a->s)) {
        int ok = 0;
        for (int i = 0; i < m->n; i++) ok |= !strcmp(m->names[i], n->a->s);
        if (!ok) perr(p, "function '%s' is not supported", n->a->s);
    }
    if (n->k == N_CALL && n->a && n->a->k != N_NAME && n->a->k != N_ATTR) perr(p, "only names and methods can be called");
    check_calls(n->a, m, p);
    check_calls(n->b, m, p);
    check_calls(n->c, m, p);
    check_calls(n->d, m, p);
    for (int i = 0; i < n->nv; i++) check_calls(n->v[i], m, p);
}

jtpl *jinja_parse(const char *src, char *why, size_t wl) {
    jtpl *t = calloc(1, sizeof *t);
    if (!t) return snprintf(why, wl, "out of memory"), NULL;
    P p = {.ar = &t->ar, .why = why, .wl = wl, .src = src, .at = src};
    lex(&p, src);
    int lexed = !p.bad;
    if (!p.bad) t->root = p_block(&p, NULL, &(const char *){NULL});
    if (!p.bad) {
        nvec m = {0};
        collect_macros(t->root, &m, &p);
        check_calls(t->root, &m, &p);
    }
    if (!p.bad && t->ar.oom) perr(&p, "out of memory");
    if (p.bad) {
        /* where: the line of the token that failed */
        const char *at = lexed && p.pos < p.n && p.t[p.pos].at ? p.t[p.pos].at : p.at;
        int line = 1;
        for (const char *q = src; q < at && *q; q++) line += *q == '\n';
        size_t l = strlen(why);
        if (l + 40 < wl) snprintf(why + l, wl - l, " (line %d)", line);
        free(p.t);
        jinja_free(t);
        return NULL;
    }
    free(p.t);
    return t;
}

void jinja_free(jtpl *t) {
    if (!t) return;
    afree(&t->ar);
    free(t);
}

/* ---------------------------------------------------------------- values */
typedef struct scope {
    struct scope *up;
    jdict *vars;
} scope;
typedef struct {
    arena ar;
    jmp_buf jb;
    char *why;
    size_t wl;
    scope *globals;
    int brk; /* 1 break, 2 continue */
    int depth;
    sbuf *tmp[256]; /* live temporary buffers, freed if rendering fails */
    int ntmp;
} R;

static void rerr(R *r, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void rerr(R *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, r->wl, fmt, ap);
    va_end(ap);
    longjmp(r->jb, 1);
}
static void *ralloc(R *r, size_t n) {
    void *p = aalloc(&r->ar, n);
    if (!p) rerr(r, "out of memory");
    return p;
}
/* a temporary output buffer (freed by tdone, or by jinja_render when rendering fails) */
static sbuf *tbuf(R *r) {
    if (r->ntmp == 256) rerr(r, "output nested too deep");
    sbuf *b = ralloc(r, sizeof *b);
    r->tmp[r->ntmp++] = b;
    sb_add(b, "");
    return b;
}
static jv vstr(R *r, const char *s, size_t n);
static jv tdone(R *r, sbuf *b) { /* the buffer as a string value; the buffer is freed */
    if (b->oom) rerr(r, "out of memory");
    jv v = vstr(r, b->p, b->n);
    free(b->p);
    b->p = NULL;
    for (int i = r->ntmp - 1; i >= 0; i--)
        if (r->tmp[i] == b) {
            r->tmp[i] = r->tmp[--r->ntmp];
            break;
        }
    return v;
}
static jv vstr(R *r, const char *s, size_t n) {
    jv v = {.t = V_STR};
    v.s = mkstr(&r->ar, s, n);
    if (!v.s) rerr(r, "out of memory");
    return v;
}
static jv vcstr(R *r, const char *s) { return vstr(r, s, strlen(s)); }
static jv vbool(int b) { return (jv){.t = V_BOOL, .b = !!b}; }
static jv vint(long long i) { return (jv){.t = V_INT, .i = i}; }
static jv vnone(void) { return (jv){.t = V_NONE}; }
static jv vundef(void) { return (jv){.t = V_UNDEF}; }
static jlist *lnew(R *r) { return ralloc(r, sizeof(jlist)); }
static void lpush(R *r, jlist *l, jv v) {
    if (l->n == l->cap) {
        int c = l->cap ? l->cap * 2 : 8;
        jv *a = ralloc(r, (size_t)c * sizeof *a);
        if (l->n) memcpy(a, l->v, (size_t)l->n * sizeof *a);
        l->v = a;
        l->cap = c;
    }
    l->v[l->n++] = v;
}
static jv vlist(jlist *l) { return (jv){.t = V_LIST, .l = l}; }
static jdict *dnew(R *r) { return ralloc(r, sizeof(jdict)); }
static int dfind(const jdict *d, const char *k, size_t n) {
    for (int i = 0; d && i < d->n; i++)
        if (d->k[i]->n == n && !memcmp(d->k[i]->p, k, n)) return i;
    return -1;
}
static void dset(R *r, jdict *d, const char *k, size_t n, jv v) {
    int i = dfind(d, k, n);
    if (i >= 0) {
        d->v[i] = v;
        return;
    }
    if (d->n == d->cap) {
        int c = d->cap ? d->cap * 2 : 8;
        jstr **a = ralloc(r, (size_t)c * sizeof *a);
        jv *b = ralloc(r, (size_t)c * sizeof *b);
        if (d->n) memcpy(a, d->k, (size_t)d->n * sizeof *a), memcpy(b, d->v, (size_t)d->n * sizeof *b);
        d->k = a;
        d->v = b;
        d->cap = c;
    }
    d->k[d->n] = mkstr(&r->ar, k, n);
    if (!d->k[d->n]) rerr(r, "out of memory");
    d->v[d->n++] = v;
}
static jv dget(const jdict *d, const char *k, size_t n) {
    int i = dfind(d, k, n);
    return i >= 0 ? d->v[i] : vundef();
}

static jv from_json(R *r, const cJSON *j) {
    if (!j || cJSON_IsNull(j)) return vnone();
    if (cJSON_IsBool(j)) return vbool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double f = j->valuedouble;
        if (f == floor(f) && fabs(f) < 9.007199254740992e15) return vint((long long)f);
        return (jv){.t = V_FLOAT, .f = f};
    }
    if (cJSON_IsString(j)) return vcstr(r, j->valuestring);
    if (cJSON_IsArray(j)) {
        jlist *l = lnew(r);
        for (const cJSON *x = j->child; x; x = x->next) lpush(r, l, from_json(r, x));
        return vlist(l);
    }
    if (cJSON_IsObject(j)) {
        jdict *d = dnew(r);
        for (const cJSON *x = j->child; x; x = x->next)
            if (x->string) dset(r, d, x->string, strlen(x->string), from_json(r, x));
        return (jv){.t = V_DICT, .d = d};
    }
    return vnone();
}

static int truthy(jv v) {
    switch (v.t) {
    case V_BOOL: return v.b;
    case V_INT: return v.i != 0;
    case V_FLOAT: return v.f != 0;
    case V_STR: return v.s->n > 0;
    case V_LIST: return v.l->n > 0;
    case V_DICT: return v.d->n > 0;
    case V_MACRO: return 1;
    default: return 0;
    }
}
static const char *tname(jv v) {
    static const char *n[] = {"undefined", "none", "bool", "int", "float", "str", "list", "dict", "macro"};
    return n[v.t];
}

static void fmt_float(char *b, size_t bl, double f) {
    if (isnan(f)) {
        snprintf(b, bl, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(b, bl, f > 0 ? "inf" : "-inf");
        return;
    }
    for (int p = 15; p <= 17; p++) {
        snprintf(b, bl, "%.*g", p, f);
        if (strtod(b, NULL) == f) break;
    }
    if (!strpbrk(b, ".en")) strncat(b, ".0", bl - strlen(b) - 1); /* Python's repr: 2.0 */
}

static void json_str(sbuf *b, const char *s, size_t n) {
    sb_add(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"') sb_add(b, "\\\"");
        else if (c == '\\') sb_add(b, "\\\\");
        else if (c == '\n') sb_add(b, "\\n");
        else if (c == '\r') sb_add(b, "\\r");
        else if (c == '\t') sb_add(b, "\\t");
        else if (c == '\b') sb_add(b, "\\b");
        else if (c == '\f') sb_add(b, "\\f");
        else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            sb_add(b, e);
        } else sb_addn(b, (const char *)&s[i], 1);
    }
    sb_add(b, "\"");
}
/* Python's json.dumps(v, ensure_ascii=False, indent=indent) as transformers' tojson does */
static void to_json(R *r, sbuf *b, jv v, int indent, int depth) {
    char t[64];
    switch (v.t) {
    case V_UNDEF:
    case V_NONE: sb_add(b, "null"); break;
    case V_BOOL: sb_add(b, v.b ? "true" : "false"); break;
    case V_INT: snprintf(t, sizeof t, "%lld", v.i), sb_add(b, t); break;
    case V_FLOAT:
        fmt_float(t, sizeof t, v.f);
        sb_add(b, !strcmp(t, "nan") ? "NaN" : !strcmp(t, "inf") ? "Infinity" : !strcmp(t, "-inf") ? "-Infinity" : t);
        break;
    case V_STR: json_str(b, v.s->p, v.s->n); break;
    case V_LIST:
    case V_DICT: {
        int n = v.t == V_LIST ? v.l->n : v.d->n;
        sb_add(b, v.t == V_LIST ? "[" : "{");
        for (int i = 0; i < n; i++) {
            if (i) sb_add(b, indent ? "," : ", ");
            if (indent) {
                sb_add(b, "\n");
                for (int k = 0; k < indent * (depth + 1); k++) sb_add(b, " ");
            }
            if (v.t == V_DICT) {
                json_str(b, v.d->k[i]->p, v.d->k[i]->n);
                sb_add(b, ": ");
                to_json(r, b, v.d->v[i], indent, depth + 1);
            } else to_json(r, b, v.l->v[i], indent, depth + 1);
        }
        if (indent && n) {
            sb_add(b, "\n");
            for (int k = 0; k < indent * depth; k++) sb_add(b, " ");
        }
        sb_add(b, v.t == V_LIST ? "]" : "}");
        break;
    }
    default: rerr(r, "cannot convert a %s to JSON", tname(v));
    }
}

/* Python's repr, for values inside a printed list or dict */
static void to_text(R *r, sbuf *b, jv v);
static void py_repr(R *r, sbuf *b, jv v) {
    if (v.t == V_STR) {
        int dq = memchr(v.s->p, '\'', v.s->n) && !memchr(v.s->p, '"', v.s->n);
        char q = dq ? '"' : '\'';
        sb_addn(b, &q, 1);
        for (size_t i = 0; i < v.s->n; i++) {
            unsigned char c = (unsigned char)v.s->p[i];
            char e[8];
            if (c == '\\' || c == (unsigned char)q) {
                sb_add(b, "\\");
                sb_addn(b, (const char *)&v.s->p[i], 1);
            } else if (c == '\n') sb_add(b, "\\n");
            else if (c == '\r') sb_add(b, "\\r");
            else if (c == '\t') sb_add(b, "\\t");
            else if (c < 0x20 || c == 0x7f) {
                snprintf(e, sizeof e, "\\x%02x", c);
                sb_add(b, e);
            } else sb_addn(b, (const char *)&v.s->p[i], 1);
        }
        sb_addn(b, &q, 1);
    } else if (v.t == V_LIST || v.t == V_DICT) {
        int n = v.t == V_LIST ? v.l->n : v.d->n;
        sb_add(b, v.t == V_LIST ? "[" : "{");
        for (int i = 0; i < n; i++) {
            if (i) sb_add(b, ", ");
            if (v.t == V_DICT) {
                py_repr(r, b, (jv){.t = V_STR, .s = v.d->k[i]});
                sb_add(b, ": ");
                py_repr(r, b, v.d->v[i]);
            } else py_repr(r, b, v.l->v[i]);
        }
        sb_add(b, v.t == V_LIST ? "]" : "}");
    } else if (v.t == V_UNDEF) sb_add(b, "None");
    else to_text(r, b, v);
}

/* str(v) as Jinja prints it */
static void to_text(R *r, sbuf *b, jv v) {
    char t[64];
    switch (v.t) {
    case V_UNDEF: break;
    case V_NONE: sb_add(b, "None"); break;
    case V_BOOL: sb_add(b, v.b ? "True" : "False"); break;
    case V_INT: snprintf(t, sizeof t, "%lld", v.i), sb_add(b, t); break;
    case V_FLOAT: fmt_float(t, sizeof t, v.f), sb_add(b, t); break;
    case V_STR: sb_addn(b, v.s->p, v.s->n); break;
    case V_LIST:
    case V_DICT: py_repr(r, b, v); break;
    default: sb_add(b, "<macro>");
    }
}
static jv as_str(R *r, jv v) {
    if (v.t == V_STR) return v;
    sbuf *b = tbuf(r);
    to_text(r, b, v);
    jv s = tdone(r, b);
    return s;
}

static int veq(jv a, jv b) {
    if ((a.t == V_INT || a.t == V_FLOAT || a.t == V_BOOL) && (b.t == V_INT || b.t == V_FLOAT || b.t == V_BOOL)) {
        double x = a.t == V_INT ? (double)a.i : a.t == V_FLOAT ? a.f : a.b;
        double y = b.t == V_INT ? (double)b.i : b.t == V_FLOAT ? b.f : b.b;
        return x == y;
    }
    if (a.t != b.t) return 0;
    switch (a.t) {
    case V_UNDEF:
    case V_NONE: return 1;
    case V_STR: return a.s->n == b.s->n && !memcmp(a.s->p, b.s->p, a.s->n);
    case V_LIST:
        if (a.l->n != b.l->n) return 0;
        for (int i = 0; i < a.l->n; i++)
            if (!veq(a.l->v[i], b.l->v[i])) return 0;
        return 1;
    case V_DICT:
        if (a.d->n != b.d->n) return 0;
        for (int i = 0; i < a.d->n; i++)
            if (!veq(a.d->v[i], dget(b.d, a.d->k[i]->p, a.d->k[i]->n))) return 0;
        return 1;
    default: return a.m == b.m;
    }
}
static int is_num(jv v) { return v.t == V_INT || v.t == V_FLOAT; }
static double num(jv v) { return v.t == V_INT ? (double)v.i : v.f; }

static int contains(R *r, jv hay, jv x) {
    if (hay.t == V_STR) {
        if (x.t != V_STR) rerr(r, "'in <string>' needs a string on the left, not a %s", tname(x));
        if (!x.s->n) return 1;
        for (size_t i = 0; i + x.s->n <= hay.s->n; i++)
            if (!memcmp(hay.s->p + i, x.s->p, x.s->n)) return 1;
        return 0;
    }
    if (hay.t == V_LIST) {
        for (int i = 0; i < hay.l->n; i++)
            if (veq(hay.l->v[i], x)) return 1;
        return 0;
    }
    if (hay.t == V_DICT) return x.t == V_STR && dfind(hay.d, x.s->p, x.s->n) >= 0;
    if (hay.t == V_UNDEF) return 0;
    rerr(r, "'in' needs a string, list or dict on the right, not a %s", tname(hay));
}

/* ---------------------------------------------------------------- evaluation */
static jv eval(R *r, scope *sc, const node *n);
static void exec_block(R *r, scope *sc, const node *n, sbuf *out);

static jv lookup(scope *sc, const char *name) {
    for (; sc; sc = sc->up) {
        int i = dfind(sc->vars, name, strlen(name));
        if (i >= 0) return sc->vars->v[i];
    }
    return vundef();
}

/* Python's str.strip(chars) family; chars NULL: whitespace */
static jv pystrip(R *r, jv s, const jv *chars, int left, int right) {
    const char *b = s.s->p, *e = s.s->p + s.s->n;
    const char *set = chars && chars->t == V_STR ? chars->s->p : NULL;
    size_t sn = set ? chars->s->n : 0;
#define STRIPS(c) (set ? memchr(set, (c), sn) != NULL : isspace((unsigned char)(c)))
    while (left && b < e && STRIPS(*b)) b++;
    while (right && e > b && STRIPS(e[-1])) e--;
#undef STRIPS
    return vstr(r, b, (size_t)(e - b));
}

static jv split(R *r, jv s, const jv *sep, long long maxsplit) {
    jlist *l = lnew(r);
    const char *p = s.s->p, *e = p + s.s->n;
    if (!sep || sep->t == V_NONE) {
        for (;;) {
            while (p < e && isspace((unsigned char)*p)) p++;
            if (p >= e) break;
            if (maxsplit >= 0 && l->n >= maxsplit) {
                const char *q = e;
                while (q > p && isspace((unsigned char)q[-1])) q--;
                lpush(r, l, vstr(r, p, (size_t)(q - p)));
                break;
            }
            const char *q = p;
            while (q < e && !isspace((unsigned char)*q)) q++;
            lpush(r, l, vstr(r, p, (size_t)(q - p)));
            p = q;
        }
        return vlist(l);
    }
    if (sep->t != V_STR) rerr(r, "split() needs a string separator");
    if (!sep->s->n) rerr(r, "split(): empty separator");
    for (;;) {
        const char *q = NULL;
        if (maxsplit < 0 || l->n < maxsplit)
            for (const char *x = p; x + sep->s->n <= e; x++)
                if (!memcmp(x, sep->s->p, sep->s->n)) {
                    q = x;
                    break;
                }
        if (!q) {
            lpush(r, l, vstr(r, p, (size_t)(e - p)));
            break;
        }
        lpush(r, l, vstr(r, p, (size_t)(q - p)));
        p = q + sep->s->n;
    }
    return vlist(l);
}

static jv replace(R *r, jv s, jv a, jv b, long long count) {
    if (a.t != V_STR || b.t != V_STR) rerr(r, "replace() needs strings");
    sbuf *o = tbuf(r);
    const char *p = s.s->p, *e = p + s.s->n;
    long long done = 0;
    while (p <= e) {
        const char *q = NULL;
        if (count < 0 || done < count) {
            if (!a.s->n) q = p; /* Python inserts b between characters */
            else
                for (const char *x = p; x + a.s->n <= e; x++)
                    if (!memcmp(x, a.s->p, a.s->n)) {
                        q = x;
                        break;
                    }
        }
        if (!q) {
            sb_addn(o, p, (size_t)(e - p));
            break;
        }
        sb_addn(o, p, (size_t)(q - p));
        sb_addn(o, b.s->p, b.s->n);
        done++;
        if (!a.s->n) {
            if (q >= e) break;
            sb_addn(o, q, 1);
            p = q + 1;
        } else p = q + a.s->n;
    }
    jv v = tdone(r, o);
    return v;
}

static jv case_map(R *r, jv s, int mode) { /* 0 lower, 1 upper, 2 capitalize, 3 title (ASCII letters) */
    jv o = vstr(r, s.s->p, s.s->n);
    int start = 1;
    for (size_t i = 0; i < o.s->n; i++) {
        char *c = &o.s->p[i];
        if (mode == 0) *c = (char)tolower((unsigned char)*c);
        else if (mode == 1) *c = (char)toupper((unsigned char)*c);
        else if (mode == 2) *c = (char)(i == 0 ? toupper((unsigned char)*c) : tolower((unsigned char)*c));
        else {
            *c = (char)(start ? toupper((unsigned char)*c) : tolower((unsigned char)*c));
            start = !isalnum((unsigned char)*c);
        }
    }
    return o;
}

typedef struct {
    jv pos[8];
    int np;
    const char *kn[8];
    jv kv[8];
    int nk;
} args;
static void eval_args(R *r, scope *sc, const node *n, args *a) {
    memset(a, 0, sizeof *a);
    for (int i = 0; i < n->nv; i++) {
        jv v = eval(r, sc, n->v[i]);
        if (n->names[i]) {
            if (a->nk == 8) rerr(r, "too many keyword arguments");
            a->kn[a->nk] = n->names[i];
            a->kv[a->nk++] = v;
        } else {
            if (a->np == 8) rerr(r, "too many arguments");
            a->pos[a->np++] = v;
        }
    }
}
static const jv *arg(const args *a, int i, const char *name) {
    if (i < a->np) return &a->pos[i];
    for (int k = 0; name && k < a->nk; k++)
        if (!strcmp(a->kn[k], name)) return &a->kv[k];
    return NULL;
}
static long long int_arg(R *r, const args *a, int i, const char *name, long long dflt) {
    const jv *v = arg(a, i, name);
    if (!v || v->t == V_NONE) return dflt;
    if (v->t != V_INT) rerr(r, "%s must be an integer", name ? name : "the argument");
    return v->i;
}

static jv items_of(R *r, jv d) {
    if (d.t == V_UNDEF || d.t == V_NONE) return vlist(lnew(r));
    if (d.t != V_DICT) rerr(r, "items() of a %s", tname(d));
    jlist *l = lnew(r);
    for (int i = 0; i < d.d->n; i++) {
        jlist *p = lnew(r);
        lpush(r, p, (jv){.t = V_STR, .s = d.d->k[i]});
        lpush(r, p, d.d->v[i]);
        lpush(r, l, vlist(p));
    }
    return vlist(l);
}
static jv to_list(R *r, jv v) {
    if (v.t == V_LIST) return v;
    if (v.t == V_DICT) {
        jlist *l = lnew(r);
        for (int i = 0; i < v.d->n; i++) lpush(r, l, (jv){.t = V_STR, .s = v.d->k[i]});
        return vlist(l);
    }
    if (v.t == V_STR) { /* characters (UTF-8 sequences) */
        jlist *l = lnew(r);
        for (size_t i = 0; i < v.s->n;) {
            size_t k = 1;
            while (i + k < v.s->n && ((unsigned char)v.s->p[i + k] & 0xC0) == 0x80) k++;
            lpush(r, l, vstr(r, v.s->p + i, k));
            i += k;
        }
        return vlist(l);
    }
    if (v.t == V_UNDEF) return vlist(lnew(r));
    rerr(r, "a %s is not iterable", tname(v));
}

static int run_test(R *r, const char *t, jv v, const args *a) {
    if (!strcmp(t, "defined")) return v.t != V_UNDEF;
    if (!strcmp(t, "undefined")) return v.t == V_UNDEF;
    if (!strcmp(t, "none")) return v.t == V_NONE;
    if (!strcmp(t, "string")) return v.t == V_STR;
    if (!strcmp(t, "number")) return v.t == V_INT || v.t == V_FLOAT;
    if (!strcmp(t, "integer")) return v.t == V_INT;
    if (!strcmp(t, "float")) return v.t == V_FLOAT;
    if (!strcmp(t, "boolean")) return v.t == V_BOOL;
    if (!strcmp(t, "true")) return v.t == V_BOOL && v.b;
    if (!strcmp(t, "false")) return v.t == V_BOOL && !v.b;
    if (!strcmp(t, "mapping")) return v.t == V_DICT;
    if (!strcmp(t, "iterable")) return v.t == V_STR || v.t == V_LIST || v.t == V_DICT;
    if (!strcmp(t, "sequence")) return v.t == V_STR || v.t == V_LIST || v.t == V_DICT;
    if (!strcmp(t, "callable")) return v.t == V_MACRO;
    if (!strcmp(t, "odd") || !strcmp(t, "even")) {
        if (v.t != V_INT) rerr(r, "'%s' needs an integer", t);
        return (v.i % 2 != 0) == !strcmp(t, "odd");
    }
    if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        if (v.t != V_STR) return 0;
        for (size_t i = 0; i < v.s->n; i++)
            if (t[0] == 'l' ? isupper((unsigned char)v.s->p[i]) : islower((unsigned char)v.s->p[i])) return 0;
        return 1;
    }
    const jv *o = arg(a, 0, NULL);
    if (!o) rerr(r, "test '%s' needs an argument", t);
    if (!strcmp(t, "ne")) return !veq(v, *o);
    if (!strcmp(t, "in")) return contains(r, *o, v);
    return veq(v, *o); /* equalto, eq */
}

static jv attr(R *r, jv v, const char *name) {
    if (v.t == V_DICT) return dget(v.d, name, strlen(name));
    (void)r;
    return vundef();
}

static jv index_of(R *r, jv v, jv k) {
    if (v.t == V_DICT) {
        if (k.t != V_STR) return vundef();
        return dget(v.d, k.s->p, k.s->n);
    }
    if (v.t == V_LIST || v.t == V_STR) {
        if (k.t != V_INT) rerr(r, "indices must be integers, not %s", tname(k));
        if (v.t == V_STR) v = to_list(r, v);
        long long i = k.i < 0 ? k.i + v.l->n : k.i;
        if (i < 0 || i >= v.l->n) return vundef();
        return v.l->v[i];
    }
    if (v.t == V_UNDEF) return vundef();
    rerr(r, "a %s cannot be indexed", tname(v));
}

static jv slice(R *r, jv v, const node *n, scope *sc) {
    int str = v.t == V_STR;
    if (str) v = to_list(r, v);
    if (v.t != V_LIST) rerr(r, "a %s cannot be sliced", tname(v));
    long long len = v.l->n, step = 1, a, b;
    jv ja = n->b ? eval(r, sc, n->b) : vnone(), jb = n->c ? eval(r, sc, n->c) : vnone(),
       js = n->d ? eval(r, sc, n->d) : vnone();
    if (js.t == V_INT) step = js.i;
    else if (js.t != V_NONE) rerr(r, "slice step must be an integer");
    if (!step) rerr(r, "slice step cannot be zero");
    if (ja.t == V_NONE) a = step > 0 ? 0 : len - 1;
    else {
        if (ja.t != V_INT) rerr(r, "slice indices must be integers");
        a = ja.i < 0 ? ja.i + len : ja.i;
        if (step > 0) a = a < 0 ? 0 : a > len ? len : a;
        else a = a < -1 ? -1 : a > len - 1 ? len - 1 : a;
    }
    if (jb.t == V_NONE) b = step > 0 ? len : -1;
    else {
        if (jb.t != V_INT) rerr(r, "slice indices must be integers");
        b = jb.i < 0 ? jb.i + len : jb.i;
        if (step > 0) b = b < 0 ? 0 : b > len ? len : b;
        else b = b < -1 ? -1 : b > len - 1 ? len - 1 : b;
    }
    jlist *l = lnew(r);
    for (long long i = a; step > 0 ? i < b : i > b; i += step) lpush(r, l, v.l->v[i]);
    if (!str) return vlist(l);
    sbuf *o = tbuf(r);
    for (int i = 0; i < l->n; i++) sb_addn(o, l->v[i].s->p, l->v[i].s->n);
    jv s = tdone(r, o);
    return s;
}

static jv call_macro(R *r, const node *m, const args *a) {
    if (++r->depth > 64) rerr(r, "macro calls nested too deep");
    scope sc = {r->globals, dnew(r)};
    if (a->np > m->nn) rerr(r, "macro '%s' takes %d arguments", m->s, m->nn);
    for (int i = 0; i < m->nn; i++) {
        const jv *v = i < a->np ? &a->pos[i] : NULL;
        for (int k = 0; !v && k < a->nk; k++)
            if (!strcmp(a->kn[k], m->names[i])) v = &a->kv[k];
        jv x = v ? *v : m->v[i] ? eval(r, &sc, m->v[i]) : vundef();
        dset(r, sc.vars, m->names[i], strlen(m->names[i]), x);
    }
    for (int k = 0; k < a->nk; k++) {
        int ok = 0;
        for (int i = 0; i < m->nn; i++) ok |= !strcmp(a->kn[k], m->names[i]);
        if (!ok) rerr(r, "macro '%s' has no argument '%s'", m->s, a->kn[k]);
    }
    sbuf *out = tbuf(r);
    exec_block(r, &sc, m->b, out);
    r->brk = 0;
    r->depth--;
    jv s = tdone(r, out);
    return s;
}

static jv call(R *r, scope *sc, const node *n) {
    args a;
    const node *f = n->a;
    if (f->k == N_ATTR) {
        jv o = eval(r, sc, f->a);
        eval_args(r, sc, n, &a);
        const char *m = f->s;
        if (o.t == V_STR) {
            if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
                const jv *p = arg(&a, 0, NULL);
                if (!p) rerr(r, "%s() needs an argument", m);
                jlist one = {(jv *)p, 1, 1}, *l = p->t == V_LIST ? p->l : &one;
                for (int i = 0; i < l->n; i++) {
                    jv x = l->v[i];
                    if (x.t != V_STR) rerr(r, "%s() needs strings", m);
                    if (x.s->n <= o.s->n &&
                        !memcmp(m[0] == 's' ? o.s->p : o.s->p + o.s->n - x.s->n, x.s->p, x.s->n))
                        return vbool(1);
                }
                return vbool(0);
            }
            if (!strcmp(m, "split")) return split(r, o, arg(&a, 0, "sep"), int_arg(r, &a, 1, "maxsplit", -1));
            if (!strcmp(m, "strip")) return pystrip(r, o, arg(&a, 0, NULL), 1, 1);
            if (!strcmp(m, "lstrip")) return pystrip(r, o, arg(&a, 0, NULL), 1, 0);
            if (!strcmp(m, "rstrip")) return pystrip(r, o, arg(&a, 0, NULL), 0, 1);
            if (!strcmp(m, "lower")) return case_map(r, o, 0);
            if (!strcmp(m, "upper")) return case_map(r, o, 1);
            if (!strcmp(m, "capitalize")) return case_map(r, o, 2);
            if (!strcmp(m, "title")) return case_map(r, o, 3);
            if (!strcmp(m, "replace")) {
                const jv *x = arg(&a, 0, NULL), *y = arg(&a, 1, NULL);
                if (!x || !y) rerr(r, "replace() needs two arguments");
                return replace(r, o, *x, *y, int_arg(r, &a, 2, "count", -1));
            }
            if (!strcmp(m, "count") || !strcmp(m, "find")) {
                const jv *x = arg(&a, 0, NULL);
                if (!x || x->t != V_STR) rerr(r, "%s() needs a string", m);
                long long c = 0;
                for (size_t i = 0; i + x->s->n <= o.s->n;) {
                    if (!memcmp(o.s->p + i, x->s->p, x->s->n)) {
                        if (m[0] == 'f') return vint((long long)i);
                        c++;
                        i += x->s->n ? x->s->n : 1;
                    } else i++;
                }
                return vint(m[0] == 'f' ? -1 : c);
            }
        } else if (o.t == V_DICT) {
            if (!strcmp(m, "items")) return items_of(r, o);
            if (!strcmp(m, "keys")) return to_list(r, o);
            if (!strcmp(m, "values")) {
                jlist *l = lnew(r);
                for (int i = 0; i < o.d->n; i++) lpush(r, l, o.d->v[i]);
                return vlist(l);
            }
            if (!strcmp(m, "get")) {
                const jv *k = arg(&a, 0, NULL), *d = arg(&a, 1, NULL);
                if (!k) rerr(r, "get() needs a key");
                jv v = index_of(r, o, *k);
                return v.t != V_UNDEF ? v : d ? *d : vnone();
            }
        }
        rerr(r, "a %s has no method '%s'", tname(o), m);
    }
    const char *name = f->s;
    jv mv = lookup(sc, name);
    eval_args(r, sc, n, &a);
    if (mv.t == V_MACRO) return call_macro(r, mv.m, &a);
    if (!strcmp(name, "raise_exception")) {
        const jv *m = arg(&a, 0, NULL);
        jv s = m ? as_str(r, *m) : vcstr(r, "raise_exception");
        rerr(r, "%s", s.s->p);
    }
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        jdict *d = dnew(r);
        for (int i = 0; i < a.np; i++)
            if (a.pos[i].t == V_DICT)
                for (int k = 0; k < a.pos[i].d->n; k++)
                    dset(r, d, a.pos[i].d->k[k]->p, a.pos[i].d->k[k]->n, a.pos[i].d->v[k]);
        for (int i = 0; i < a.nk; i++) dset(r, d, a.kn[i], strlen(a.kn[i]), a.kv[i]);
        return (jv){.t = V_DICT, .d = d};
    }
    if (!strcmp(name, "range")) {
        long long s0 = 0, e, st = 1;
        if (a.np == 1) e = int_arg(r, &a, 0, NULL, 0);
        else s0 = int_arg(r, &a, 0, NULL, 0), e = int_arg(r, &a, 1, NULL, 0), st = int_arg(r, &a, 2, NULL, 1);
        if (!st) rerr(r, "range() step cannot be zero");
        if ((e - s0) / st > 100000) rerr(r, "range() too long");
        jlist *l = lnew(r);
        for (long long i = s0; st > 0 ? i < e : i > e; i += st) lpush(r, l, vint(i));
        return vlist(l);
    }
    rerr(r, "'%s' is not callable", name);
}

static jv sort_items(R *r, jv d) { /* dictsort: by key */
    jv l = items_of(r, d);
    for (int i = 1; i < l.l->n; i++)
        for (int k = i; k > 0; k--) {
            jstr *x = l.l->v[k - 1].l->v[0].s, *y = l.l->v[k].l->v[0].s;
            size_t m = x->n < y->n ? x->n : y->n;
            int c = memcmp(x->p, y->p, m);
            if (c < 0 || (c == 0 && x->n <= y->n)) break;
            jv t = l.l->v[k];
            l.l->v[k] = l.l->v[k - 1];
            l.l->v[k - 1] = t;
        }
    return l;
}

static jv filter(R *r, scope *sc, const node *n) {
    jv v = eval(r, sc, n->a);
    args a;
    eval_args(r, sc, n, &a);
    const char *f = n->s;
    if (!strcmp(f, "tojson")) {
        sbuf *b = tbuf(r);
        to_json(r, b, v, (int)int_arg(r, &a, 0, "indent", 0), 0);
        jv s = tdone(r, b);
        return s;
    }
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        if (v.t == V_STR) return vint((long long)to_list(r, v).l->n);
        if (v.t == V_LIST) return vint(v.l->n);
        if (v.t == V_DICT) return vint(v.d->n);
        if (v.t == V_UNDEF) return vint(0);
        rerr(r, "length of a %s", tname(v));
    }
    if (!strcmp(f, "trim")) {
        v = as_str(r, v);
        return pystrip(r, v, arg(&a, 0, "chars"), 1, 1);
    }
    if (!strcmp(f, "string")) return as_str(r, v);
    if (!strcmp(f, "safe") || !strcmp(f, "e") || !strcmp(f, "escape")) return v; /* no autoescape */
    if (!strcmp(f, "upper")) return case_map(r, as_str(r, v), 1);
    if (!strcmp(f, "lower")) return case_map(r, as_str(r, v), 0);
    if (!strcmp(f, "capitalize")) return case_map(r, as_str(r, v), 2);
    if (!strcmp(f, "title")) return case_map(r, as_str(r, v), 3);
    if (!strcmp(f, "items")) return items_of(r, v);
    if (!strcmp(f, "dictsort")) return sort_items(r, v);
    if (!strcmp(f, "list")) return to_list(r, v);
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        jv l = to_list(r, v);
        return l.l->n ? l.l->v[f[0] == 'f' ? 0 : l.l->n - 1] : vundef();
    }
    if (!strcmp(f, "reverse")) {
        jv l = to_list(r, v);
        jlist *o = lnew(r);
        for (int i = l.l->n - 1; i >= 0; i--) lpush(r, o, l.l->v[i]);
        if (v.t != V_STR) return vlist(o);
        sbuf *b = tbuf(r);
        for (int i = 0; i < o->n; i++) sb_addn(b, o->v[i].s->p, o->v[i].s->n);
        jv s = tdone(r, b);
        return s;
    }
    if (!strcmp(f, "join")) {
        jv l = to_list(r, v);
        const jv *sep = arg(&a, 0, "d");
        sbuf *b = tbuf(r);
        for (int i = 0; i < l.l->n; i++) {
            if (i && sep) to_text(r, b, *sep);
            jv x = l.l->v[i];
            const jv *at = arg(&a, 1, "attribute");
            if (at && at->t == V_STR) x = attr(r, x, at->s->p);
            to_text(r, b, x);
        }
        jv s = tdone(r, b);
        return s;
    }
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        const jv *d = arg(&a, 0, "default_value"), *b = arg(&a, 1, "boolean");
        int use = b && truthy(*b) ? !truthy(v) : v.t == V_UNDEF;
        return use ? (d ? *d : vcstr(r, "")) : v;
    }
    if (!strcmp(f, "int")) {
        if (v.t == V_INT) return v;
        if (v.t == V_FLOAT) return vint((long long)v.f);
        if (v.t == V_BOOL) return vint(v.b);
        if (v.t == V_STR) {
            char *e;
            long long i = strtoll(v.s->p, &e, 10);
            return vint(e != v.s->p ? i : 0);
        }
        return vint(0);
    }
    if (!strcmp(f, "float")) {
        if (is_num(v)) return (jv){.t = V_FLOAT, .f = num(v)};
        if (v.t == V_STR) return (jv){.t = V_FLOAT, .f = strtod(v.s->p, NULL)};
        return (jv){.t = V_FLOAT, .f = 0};
    }
    if (!strcmp(f, "abs")) {
        if (v.t == V_INT) return vint(v.i < 0 ? -v.i : v.i);
        if (v.t == V_FLOAT) return (jv){.t = V_FLOAT, .f = fabs(v.f)};
        rerr(r, "abs of a %s", tname(v));
    }
    if (!strcmp(f, "replace")) {
        const jv *x = arg(&a, 0, NULL), *y = arg(&a, 1, NULL);
        if (!x || !y) rerr(r, "replace needs two arguments");
        return replace(r, as_str(r, v), *x, *y, int_arg(r, &a, 2, "count", -1));
    }
    if (!strcmp(f, "unique")) {
        jv l = to_list(r, v);
        jlist *o = lnew(r);
        for (int i = 0; i < l.l->n; i++)
            if (!contains(r, vlist(o), l.l->v[i])) lpush(r, o, l.l->v[i]);
        return vlist(o);
    }
    if (!strcmp(f, "min") || !strcmp(f, "max") || !strcmp(f, "sum")) {
        jv l = to_list(r, v);
        if (!strcmp(f, "sum")) {
            double s = 0;
            int fl = 0;
            for (int i = 0; i < l.l->n; i++) {
                if (!is_num(l.l->v[i])) rerr(r, "sum of a %s", tname(l.l->v[i]));
                fl |= l.l->v[i].t == V_FLOAT;
                s += num(l.l->v[i]);
            }
            return fl ? (jv){.t = V_FLOAT, .f = s} : vint((long long)s);
        }
        if (!l.l->n) return vundef();
        jv best = l.l->v[0];
        for (int i = 1; i < l.l->n; i++) {
            jv x = l.l->v[i];
            if (!is_num(x) || !is_num(best)) rerr(r, "%s of non-numbers", f);
            if (f[1] == 'i' ? num(x) < num(best) : num(x) > num(best)) best = x;
        }
        return best;
    }
    /* map / select / reject / selectattr / rejectattr */
    jv l = to_list(r, v);
    jlist *o = lnew(r);
    if (!strcmp(f, "map")) {
        const jv *at = arg(&a, 99, "attribute");
        const jv *fn = a.np ? &a.pos[0] : NULL;
        for (int i = 0; i < l.l->n; i++) {
            jv x = l.l->v[i];
            if (at && at->t == V_STR) {
                x = attr(r, x, at->s->p);
                const jv *d = arg(&a, 99, "default");
                if (x.t == V_UNDEF && d) x = *d;
            } else if (fn && fn->t == V_STR) {
                if (!strcmp(fn->s->p, "upper")) x = case_map(r, as_str(r, x), 1);
                else if (!strcmp(fn->s->p, "lower")) x = case_map(r, as_str(r, x), 0);
                else if (!strcmp(fn->s->p, "string")) x = as_str(r, x);
                else if (!strcmp(fn->s->p, "trim")) x = pystrip(r, as_str(r, x), NULL, 1, 1);
                else if (!strcmp(fn->s->p, "tojson")) {
                    sbuf *b = tbuf(r);
                    to_json(r, b, x, 0, 0);
                    x = tdone(r, b);
                } else rerr(r, "map('%s') is not supported", fn->s->p);
            } else rerr(r, "map needs attribute= or a filter name");
            lpush(r, o, x);
        }
        return vlist(o);
    }
    int byattr = f[strlen(f) - 4] == 'a' && !strcmp(f + strlen(f) - 4, "attr"), rej = f[0] == 'r';
    int ai = 0;
    const jv *at = NULL;
    if (byattr) {
        at = arg(&a, 0, NULL);
        if (!at || at->t != V_STR) rerr(r, "%s needs an attribute name", f);
        ai = 1;
    }
    const jv *tn = arg(&a, ai, NULL);
    if (tn && (tn->t != V_STR || !in_list(TESTS, tn->s->p))) rerr(r, "%s: unsupported test", f);
    args ta = {0};
    for (int i = ai + 1; i < a.np; i++) ta.pos[ta.np++] = a.pos[i];
    for (int i = 0; i < l.l->n; i++) {
        jv x = l.l->v[i], y = byattr ? attr(r, x, at->s->p) : x;
        int ok = tn ? run_test(r, tn->s->p, y, &ta) : truthy(y);
        if (ok != rej) lpush(r, o, x);
    }
    return vlist(o);
}

static jv arith(R *r, const char *op, jv a, jv b) {
    if (!strcmp(op, "~")) {
        sbuf *s = tbuf(r);
        to_text(r, s, a);
        to_text(r, s, b);
        jv v = tdone(r, s);
        return v;
    }
    if (!strcmp(op, "+")) {
        if (a.t == V_STR && b.t == V_STR) {
            jstr *c = ralloc(r, sizeof *c + a.s->n + b.s->n + 1);
            c->n = a.s->n + b.s->n;
            memcpy(c->p, a.s->p, a.s->n);
            memcpy(c->p + a.s->n, b.s->p, b.s->n);
            return (jv){.t = V_STR, .s = c};
        }
        if (a.t == V_LIST && b.t == V_LIST) {
            jlist *l = lnew(r);
            for (int i = 0; i < a.l->n; i++) lpush(r, l, a.l->v[i]);
            for (int i = 0; i < b.l->n; i++) lpush(r, l, b.l->v[i]);
            return vlist(l);
        }
    }
    if (!strcmp(op, "*") && ((a.t == V_STR && b.t == V_INT) || (a.t == V_INT && b.t == V_STR))) {
        jv s = a.t == V_STR ? a : b;
        long long k = a.t == V_INT ? a.i : b.i;
        if (k * (long long)s.s->n > (1 << 24)) rerr(r, "string repetition too long");
        sbuf *o = tbuf(r);
        for (long long i = 0; i < k; i++) sb_addn(o, s.s->p, s.s->n);
        jv v = tdone(r, o);
        return v;
    }
    if (!is_num(a) || !is_num(b)) rerr(r, "unsupported operand types for %s: %s and %s", op, tname(a), tname(b));
    int ints = a.t == V_INT && b.t == V_INT;
    double x = num(a), y = num(b);
    switch (op[0]) {
    case '+': return ints ? vint(a.i + b.i) : (jv){.t = V_FLOAT, .f = x + y};
    case '-': return ints ? vint(a.i - b.i) : (jv){.t = V_FLOAT, .f = x - y};
    case '*':
        if (op[1] == '*') return ints && b.i >= 0 ? vint((long long)pow(x, y)) : (jv){.t = V_FLOAT, .f = pow(x, y)};
        return ints ? vint(a.i * b.i) : (jv){.t = V_FLOAT, .f = x * y};
    case '/':
        if (y == 0) rerr(r, "division by zero");
        if (op[1] == '/') return ints ? vint((long long)floor(x / y)) : (jv){.t = V_FLOAT, .f = floor(x / y)};
        return (jv){.t = V_FLOAT, .f = x / y};
    case '%':
        if (y == 0) rerr(r, "modulo by zero");
        if (ints) return vint(((a.i % b.i) + b.i) % b.i);
        return (jv){.t = V_FLOAT, .f = x - y * floor(x / y)};
    }
    rerr(r, "operator %s", op);
}

static jv eval(R *r, scope *sc, const node *n) {
    switch (n->k) {
    case N_LIT: return n->lit;
    case N_NAME: return lookup(sc, n->s);
    case N_ATTR: return attr(r, eval(r, sc, n->a), n->s);
    case N_INDEX: {
        jv v = eval(r, sc, n->a);
        return index_of(r, v, eval(r, sc, n->b));
    }
    case N_SLICE: return slice(r, eval(r, sc, n->a), n, sc);
    case N_CALL: return call(r, sc, n);
    case N_FILTER: return filter(r, sc, n);
    case N_TEST: {
        jv v = eval(r, sc, n->a);
        args a;
        eval_args(r, sc, n, &a);
        return vbool(run_test(r, n->s, v, &a) != n->neg);
    }
    case N_NOT: return vbool(!truthy(eval(r, sc, n->a)));
    case N_NEG: {
        jv v = eval(r, sc, n->a);
        if (v.t == V_INT) return vint(-v.i);
        if (v.t == V_FLOAT) return (jv){.t = V_FLOAT, .f = -v.f};
        rerr(r, "cannot negate a %s", tname(v));
    }
    case N_AND: {
        jv a = eval(r, sc, n->a);
        return truthy(a) ? eval(r, sc, n->b) : a;
    }
    case N_OR: {
        jv a = eval(r, sc, n->a);
        return truthy(a) ? a : eval(r, sc, n->b);
    }
    case N_COND: return truthy(eval(r, sc, n->b)) ? eval(r, sc, n->a) : n->c ? eval(r, sc, n->c) : vundef();
    case N_LIST: {
        jlist *l = lnew(r);
        for (int i = 0; i < n->nv; i++) lpush(r, l, eval(r, sc, n->v[i]));
        return vlist(l);
    }
    case N_DICT: {
        jdict *d = dnew(r);
        for (int i = 0; i + 1 < n->nv; i += 2) {
            jv k = eval(r, sc, n->v[i]);
            if (k.t != V_STR) rerr(r, "dict keys must be strings");
            dset(r, d, k.s->p, k.s->n, eval(r, sc, n->v[i + 1]));
        }
        return (jv){.t = V_DICT, .d = d};
    }
    case N_BIN: {
        const char *op = n->s;
        jv a = eval(r, sc, n->a), b = eval(r, sc, n->b);
        if (!strcmp(op, "==")) return vbool(veq(a, b));
        if (!strcmp(op, "!=")) return vbool(!veq(a, b));
        if (!strcmp(op, "in")) return vbool(contains(r, b, a));
        if (!strcmp(op, "notin")) return vbool(!contains(r, b, a));
        if (op[0] == '<' || op[0] == '>') {
            int c;
            if (is_num(a) && is_num(b)) c = num(a) < num(b) ? -1 : num(a) > num(b);
            else if (a.t == V_STR && b.t == V_STR) {
                size_t m = a.s->n < b.s->n ? a.s->n : b.s->n;
                c = memcmp(a.s->p, b.s->p, m);
                if (!c) c = a.s->n < b.s->n ? -1 : a.s->n > b.s->n;
            } else rerr(r, "cannot compare a %s with a %s", tname(a), tname(b));
            if (!strcmp(op, "<")) return vbool(c < 0);
            if (!strcmp(op, ">")) return vbool(c > 0);
            if (!strcmp(op, "<=")) return vbool(c <= 0);
            return vbool(c >= 0);
        }
        return arith(r, op, a, b);
    }
    }
    rerr(r, "bad expression");
}

static void set_var(R *r, scope *sc, const char *name, jv v) { dset(r, sc->vars, name, strlen(name), v); }

static void exec_node(R *r, scope *sc, const node *n, sbuf *out) {
    switch (n->k) {
    case N_BLOCK: exec_block(r, sc, n, out); return;
    case N_TEXT: sb_addn(out, n->lit.s->p, n->lit.s->n); return;
    case N_OUT: to_text(r, out, eval(r, sc, n->a)); return;
    case N_IF:
        for (const node *x = n; x;) {
            if (x->k != N_IF) { /* the else block */
                exec_block(r, sc, x, out);
                return;
            }
            if (truthy(eval(r, sc, x->a))) {
                exec_block(r, sc, x->b, out);
                return;
            }
            x = x->c;
        }
        return;
    case N_SET: {
        jv v = eval(r, sc, n->a);
        if (n->nn) { /* ns.attr = v */
            jv ns = lookup(sc, n->s);
            if (ns.t != V_DICT) rerr(r, "cannot set an attribute of '%s' (a %s)", n->s, tname(ns));
            dset(r, ns.d, n->names[0], strlen(n->names[0]), v);
        } else set_var(r, sc, n->s, v);
        return;
    }
    case N_SETBLOCK: {
        sbuf *b = tbuf(r);
        exec_block(r, sc, n->b, b);
        jv v = tdone(r, b);
        if (n->nn) {
            jv ns = lookup(sc, n->s);
            if (ns.t != V_DICT) rerr(r, "cannot set an attribute of '%s'", n->s);
            dset(r, ns.d, n->names[0], strlen(n->names[0]), v);
        } else set_var(r, sc, n->s, v);
        return;
    }
    case N_MACRO: set_var(r, sc, n->s, (jv){.t = V_MACRO, .m = n}); return;
    case N_BREAK: r->brk = 1; return;
    case N_CONTINUE: r->brk = 2; return;
    case N_FOR: {
        jv it = eval(r, sc, n->a);
        if (it.t == V_DICT) it = to_list(r, it); /* keys */
        else if (it.t != V_LIST) it = to_list(r, it);
        jlist *items = it.l;
        if (n->d) { /* the loop filter, with the loop variables bound */
            jlist *f = lnew(r);
            for (int i = 0; i < items->n; i++) {
                scope fs = {sc, dnew(r)};
                jv x = items->v[i];
                if (n->nn == 1) set_var(r, &fs, n->names[0], x);
                else
                    for (int k = 0; k < n->nn; k++)
                        set_var(r, &fs, n->names[k], x.t == V_LIST && k < x.l->n ? x.l->v[k] : vundef());
                if (truthy(eval(r, &fs, n->d))) lpush(r, f, x);
            }
            items = f;
        }
        if (!items->n) {
            if (n->c) exec_block(r, sc, n->c, out);
            return;
        }
        for (int i = 0; i < items->n; i++) {
            scope ls = {sc, dnew(r)};
            jv x = items->v[i];
            if (n->nn == 1) set_var(r, &ls, n->names[0], x);
            else {
                if (x.t != V_LIST || x.l->n != n->nn) rerr(r, "cannot unpack a %s into %d names", tname(x), n->nn);
                for (int k = 0; k < n->nn; k++) set_var(r, &ls, n->names[k], x.l->v[k]);
            }
            jdict *loop = dnew(r);
            long long L = items->n;
            dset(r, loop, "index", 5, vint(i + 1));
            dset(r, loop, "index0", 6, vint(i));
            dset(r, loop, "revindex", 8, vint(L - i));
            dset(r, loop, "revindex0", 9, vint(L - i - 1));
            dset(r, loop, "first", 5, vbool(i == 0));
            dset(r, loop, "last", 4, vbool(i == L - 1));
            dset(r, loop, "length", 6, vint(L));
            if (i > 0) dset(r, loop, "previtem", 8, items->v[i - 1]);
            if (i + 1 < L) dset(r, loop, "nextitem", 8, items->v[i + 1]);
            set_var(r, &ls, "loop", (jv){.t = V_DICT, .d = loop});
            exec_block(r, &ls, n->b, out);
            if (r->brk == 1) {
                r->brk = 0;
                break;
            }
            r->brk = 0;
        }
        return;
    }
    }
    rerr(r, "bad statement");
}

static void exec_block(R *r, scope *sc, const node *n, sbuf *out) {
    if (!n) return;
    if (n->k != N_BLOCK) {
        exec_node(r, sc, n, out);
        return;
    }
    for (int i = 0; i < n->nv && !r->brk; i++) {
        exec_node(r, sc, n->v[i], out);
        if (out->oom) rerr(r, "out of memory");
    }
}

char *jinja_render(const jtpl *t, const cJSON *ctx, char *why, size_t wl) {
    R *r = calloc(1, sizeof *r);
    if (!r) return snprintf(why, wl, "out of memory"), NULL;
    r->why = why;
    r->wl = wl;
    char *res = NULL;
    if (!setjmp(r->jb)) {
        scope *g = ralloc(r, sizeof *g);
        g->vars = dnew(r);
        r->globals = g;
        for (const cJSON *x = ctx ? ctx->child : NULL; x; x = x->next)
            if (x->string) set_var(r, g, x->string, from_json(r, x));
        sbuf *out = tbuf(r);
        exec_block(r, g, t->root, out);
        if (out->oom) rerr(r, "out of memory");
        res = out->p;
        out->p = NULL;
        r->ntmp--;
    } else {
        res = NULL;
    }
    for (int i = 0; i < r->ntmp; i++) free(r->tmp[i]->p); /* after a failure: the buffers still live */
    afree(&r->ar);
    free(r);
    return res;
}
