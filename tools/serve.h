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
    const jtpl *tpl;          /* the chat template, or NULL */
    const char *bos_tok, *eos_tok; /* tokenizer_config.json's bos_token / eos_token, for the template */
    int tool_fmt;             /* TOOL_FMT_*: how the template asks for tool calls */
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
    /* chat with tools: the answer is read for tool calls (tool_parse) against tools (owned), calls in
       parallel allowed; prefill: what the answer was made to start with (owned), or NULL */
    int tool_parse, parallel;
    struct cJSON *tools;
    char *prefill;
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
/* The chat request's variables for the template, as vLLM passes them: messages (content parts joined,
 * a null content as "", tool calls' JSON arguments parsed), tools, add_generation_prompt, bos/eos
 * tokens, then chat_template_kwargs. NULL with why on a malformed request. */
struct cJSON *serve_chat_context(const serve_view *v, struct cJSON *req, char *why, size_t wl);

/* The JSON of an error answer, {"error": {"message", "type", "param": null, "code"}}, the type
 * following the status; the message is made valid UTF-8 (an invalid byte becomes U+FFFD), so that
 * the answer is JSON whatever the request held. Returns a cJSON object (cJSON_Delete). */
struct cJSON;
struct cJSON *serve_error_json(unsigned status, const char *code, const char *msg);

#endif
