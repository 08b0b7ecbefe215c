/* Chat templates for packlm serve. Rather than interpreting Jinja, the server renders the ChatML
 * form of Qwen's templates natively, and only for templates it recognises: a template is accepted
 * when it is one of the known texts (byte for byte, compared through a 64-bit FNV-1a hash and the
 * length). Anything else is refused at start-up (packlm serve --no-chat serves completions only). The
 * integration test checks the rendering against @huggingface/jinja on the template itself. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"


static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Qwen's plain ChatML template, as Qwen2-style checkpoints ship it. */
static const char CHATML_PLAIN[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* Qwen3's template (tools, the enable_thinking switch, reasoning_content), as Qwen3 checkpoints ship
 * it in tokenizer_config.json (tests/data/tokenizer-qwen3 holds a copy): its length and hash. */
#define QWEN3_TEMPLATE_LEN 4116
#define QWEN3_TEMPLATE_HASH 0x5dd4244f5f466bc0ull

int chat_template_kind(const char *tpl, char *why, size_t why_len) {
    const size_t n = strlen(tpl);
    const uint64_t h = fnv1a(tpl, n);
    if (n == strlen(CHATML_PLAIN) && !memcmp(tpl, CHATML_PLAIN, n)) return CHAT_CHATML;
    if (h == QWEN3_TEMPLATE_HASH && n == QWEN3_TEMPLATE_LEN) return CHAT_QWEN3;
    snprintf(why, why_len,
             "the chat template (%zu bytes, fnv1a %016llx) is not one packlm serve can render (Qwen3's ChatML "
             "template and plain ChatML are); run with --no-chat to serve completions only",
             n, (unsigned long long)h);
    return -1;
}

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }
static int ends(const char *s, const char *p) {
    size_t a = strlen(s), b = strlen(p);
    return a >= b && !memcmp(s + a - b, p, b);
}
/* python's s.strip/lstrip/rstrip('\n') on [b, e) */
static void strip_nl(const char **b, const char **e, int left, int right) {
    while (left && *b < *e && **b == '\n') (*b)++;
    while (right && *e > *b && (*e)[-1] == '\n') (*e)--;
}
/* last occurrence of needle in [b, e) or NULL */
static const char *last_of(const char *b, const char *e, const char *needle) {
    size_t k = strlen(needle);
    const char *best = NULL;
    for (const char *p = b; p + k <= e; p++)
        if (!memcmp(p, needle, k)) best = p;
    return best;
}
static const char *first_of(const char *b, const char *e, const char *needle) {
    size_t k = strlen(needle);
    for (const char *p = b; p + k <= e; p++)
        if (!memcmp(p, needle, k)) return p;
    return NULL;
}

char *chat_render(int kind, const chat_msg *msg, int n, int enable_thinking, char *why, size_t why_len) {
    sbuf b = {0};
    if (n < 1) {
        snprintf(why, why_len, "messages must hold at least one message");
        return NULL;
    }
    if (kind == CHAT_CHATML) {
        for (int i = 0; i < n; i++) {
            sb_add(&b, "<|im_start|>");
            sb_add(&b, msg[i].role);
            sb_add(&b, "\n");
            sb_add(&b, msg[i].content);
            sb_add(&b, "<|im_end|>\n");
        }
        sb_add(&b, "<|im_start|>assistant\n");
    } else { /* CHAT_QWEN3, without tools */
        if (!strcmp(msg[0].role, "system")) {
            sb_add(&b, "<|im_start|>system\n");
            sb_add(&b, msg[0].content);
            sb_add(&b, "<|im_end|>\n");
        }
        int multi_step_tool = 1, last_query = n - 1;
        for (int i = n - 1; i >= 0; i--) {
            const char *c = msg[i].content;
            if (multi_step_tool && !strcmp(msg[i].role, "user") &&
                !(starts(c, "<tool_response>") && ends(c, "</tool_response>"))) {
                multi_step_tool = 0;
                last_query = i;
            }
        }
        for (int i = 0; i < n; i++) {
            const char *role = msg[i].role, *c = msg[i].content;
            if (!strcmp(role, "user") || (!strcmp(role, "system") && i > 0)) {
                sb_add(&b, "<|im_start|>");
                sb_add(&b, role);
                sb_add(&b, "\n");
                sb_add(&b, c);
                sb_add(&b, "<|im_end|>\n");
            } else if (!strcmp(role, "assistant")) {
                const char *cb = c, *ce = c + strlen(c), *rb = "", *re = rb;
                if (msg[i].reasoning) {
                    rb = msg[i].reasoning;
                    re = rb + strlen(rb);
                } else if (first_of(c, ce, "</think>")) {
                    const char *last = last_of(c, ce, "</think>");
                    cb = last + 8; /* split('</think>')[-1].lstrip('\n') */
                    strip_nl(&cb, &ce, 1, 0);
                    const char *r0 = c, *r1 = first_of(c, c + strlen(c), "</think>"); /* split(..)[0] */
                    strip_nl(&r0, &r1, 0, 1);
                    const char *th = last_of(r0, r1, "<think>"); /* .split('<think>')[-1] */
                    if (th) r0 = th + 7;
                    strip_nl(&r0, &r1, 1, 0);
                    rb = r0;
                    re = r1;
                }
                sb_add(&b, "<|im_start|>assistant\n");
                if (i > last_query && (i == n - 1 || re > rb)) {
                    const char *s0 = rb, *s1 = re;
                    strip_nl(&s0, &s1, 1, 1);
                    sb_add(&b, "<think>\n");
                    sb_addn(&b, s0, (size_t)(s1 - s0));
                    sb_add(&b, "\n</think>\n\n");
                    strip_nl(&cb, &ce, 1, 0);
                }
                sb_addn(&b, cb, (size_t)(ce - cb));
                sb_add(&b, "<|im_end|>\n");
            } else if (!strcmp(role, "tool")) {
                if (i == 0 || strcmp(msg[i - 1].role, "tool")) sb_add(&b, "<|im_start|>user");
                sb_add(&b, "\n<tool_response>\n");
                sb_add(&b, c);
                sb_add(&b, "\n</tool_response>");
                if (i == n - 1 || strcmp(msg[i + 1].role, "tool")) sb_add(&b, "<|im_end|>\n");
            }
        }
        sb_add(&b, "<|im_start|>assistant\n");
        if (enable_thinking == 0) sb_add(&b, "<think>\n\n</think>\n\n");
    }
    if (b.oom || !b.p) {
        free(b.p);
        snprintf(why, why_len, "out of memory rendering the chat");
        return NULL;
    }
    return b.p;
}
