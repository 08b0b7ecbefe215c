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

enum { CHAT_QWEN3 = 1, CHAT_CHATML = 2 };

typedef struct {
    const char *role;      /* system, user, assistant, tool */
    const char *content;
    const char *reasoning; /* assistant's reasoning_content, or NULL */
} chat_msg;

/* The renderer for a chat template (CHAT_*), or -1 with the reason in why. */
int chat_template_kind(const char *tpl, char *why, size_t why_len);
/* The prompt text of a conversation plus the generation prompt (malloc'ed), or NULL with why.
 * enable_thinking: -1 not given, 0 false, 1 true. */
char *chat_render(int kind, const chat_msg *msg, int n, int enable_thinking, char *why, size_t why_len);

#endif
