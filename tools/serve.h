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

/* ------------------------------------------------------------------ requests
 * What the server does with a request before it reaches the engine: the endpoint of a path, the
 * body parsed and every field validated, chat messages rendered through the template, prompts
 * tokenised and checked against the vocabulary and the context length. No socket, no engine: the
 * fuzz target (fuzz/fuzz_serve.c) calls the same functions as the HTTP handler. */
#include <stdint.h>

#include "packlm.h"

#define SERVE_MAX_PROMPTS 64 /* prompts of one completion request */
#define SERVE_MAX_STOP 8
#define SERVE_MAX_TOP 20

enum {
    SERVE_EP_NONE = 0, /* 404 */
    SERVE_EP_COMPLETIONS = 1,
    SERVE_EP_CHAT = 2,
    SERVE_EP_TOKENIZE = 3,
    SERVE_EP_HEALTH = 4,
    SERVE_EP_METRICS = 5,
    SERVE_EP_MODELS = 6,
};

/* The endpoint a path names (exact match), SERVE_EP_NONE for any other. */
int serve_endpoint(const char *url);

/* What request parsing needs to know about the server (read-only). */
typedef struct {
    const plm_tokenizer *tok; /* NULL: prompts must be token ids */
    int32_t vocab_size;
    int chat_kind;            /* CHAT_*, 0 without a template */
    const char *name;         /* the served model name */
    int64_t max_len;          /* prompt + max_tokens limit */
} serve_view;

/* A parsed, validated request. */
typedef struct {
    int chat, stream, echo, logprobs, top, include_usage, ignore_eos;
    char *stop[SERVE_MAX_STOP]; /* non-empty stop strings (malloc'ed) */
    int n_stop;
    size_t max_stop;            /* the longest one's length */
    int n_prompts;
    int32_t *ids[SERVE_MAX_PROMPTS]; /* malloc'ed; n[i] >= 1 ids in [0, vocab_size) */
    int64_t n[SERVE_MAX_PROMPTS];
    char *ptext[SERVE_MAX_PROMPTS];  /* a string prompt's text (completions echo), else NULL */
    int64_t max_new;            /* in [0, INT32_MAX]; longest prompt + max_new <= max_len */
    plm_sampling sp;
    char *text;                 /* /tokenize: the text that was tokenised (malloc'ed) */
    /* a refusal: the HTTP status, the error code and the message */
    unsigned status;
    const char *code;
    char why[600];
} serve_req;

/* Parses the body of a POST to ep (SERVE_EP_COMPLETIONS, _CHAT or _TOKENIZE): body[0..n) with
 * body[n] == 0 (body may be NULL: an empty body). Returns 0 with r filled (the caller owns what it
 * holds: serve_req_free), or the HTTP status (400) with r->code and r->why set (n_prompts is then
 * 0; serve_req_free is still called). */
unsigned serve_parse_request(const serve_view *v, int ep, const char *body, size_t n, serve_req *r);
void serve_req_free(serve_req *r);

/* The JSON of an error answer, {"error": {"message", "type", "param": null, "code"}}, the type
 * following the status; the message is made valid UTF-8 (an invalid byte becomes U+FFFD), so that
 * the answer is JSON whatever the request held. Returns a cJSON object (cJSON_Delete). */
struct cJSON;
struct cJSON *serve_error_json(unsigned status, const char *code, const char *msg);

#endif
