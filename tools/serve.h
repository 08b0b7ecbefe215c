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

#endif
