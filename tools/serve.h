/* packlm serve: the parts shared between its files. */
#ifndef PLM_SERVE_H
#define PLM_SERVE_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A growing string; oom is set (and further appends ignored) when memory runs out. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static inline void sb_addn(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static inline void sb_add(sbuf *b, const char *s) { sb_addn(b, s, strlen(s)); }

/* Chat templates (serve_jinja.c): a Jinja interpreter for the subset chat templates use. */
typedef struct jtpl jtpl;
struct cJSON;
/* The parsed template, or NULL with the reason (a construct outside the subset, a syntax error). */
jtpl *jinja_parse(const char *src, char *why, size_t why_len);
/* The template rendered with the variables of the object ctx (malloc'ed), or NULL with the reason
 * (raise_exception's message, a type error). */
char *jinja_render(const jtpl *t, const struct cJSON *ctx, char *why, size_t why_len);
void jinja_free(jtpl *t);

/* Tool calls (serve_tools.c) in the two formats Qwen's templates ask for. */
enum { TOOL_FMT_JSON = 0, TOOL_FMT_XML = 1 };
#define TOOL_OPEN "<tool_call>"
#define TOOL_CLOSE "</tool_call>"
typedef struct {
    char *name, *args; /* args: JSON text as json.dumps writes it */
    char id[40];
} tool_call;
/* json.dumps(x, ensure_ascii=False) */
void json_dumps_py(sbuf *b, const struct cJSON *x);
/* one call from the text between the tags; 0 ok, -1 when it does not parse */
int tool_parse_one(const char *body, size_t n, int fmt, const struct cJSON *tools, tool_call *out);
/* the calls of a whole answer; see serve_tools.c */
int tool_parse_all(const char *text, int fmt, const struct cJSON *tools, tool_call **calls, size_t *content_len);
void tool_calls_free(tool_call *c, int n);

#endif
