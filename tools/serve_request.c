/* packlm serve: a request from its path and body to the point where it is queued for the engine —
 * the body parsed, every field validated, chat messages rendered, prompts tokenised and checked.
 * Nothing here touches a socket or the engine: the HTTP handler (cmd_serve.c) and the fuzz target
 * (fuzz/fuzz_serve.c) call the same functions. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"
#include "util/json_strict.h"

int serve_endpoint(const char *url) {
    if (!strcmp(url, "/health")) return SERVE_EP_HEALTH;
    if (!strcmp(url, "/metrics")) return SERVE_EP_METRICS;
    if (!strcmp(url, "/v1/models")) return SERVE_EP_MODELS;
    if (!strcmp(url, "/v1/completions")) return SERVE_EP_COMPLETIONS;
    if (!strcmp(url, "/v1/chat/completions")) return SERVE_EP_CHAT;
    if (!strcmp(url, "/tokenize")) return SERVE_EP_TOKENIZE;
    return SERVE_EP_NONE;
}

void serve_req_free(serve_req *r) {
    for (int i = 0; i < SERVE_MAX_STOP; i++) free(r->stop[i]), r->stop[i] = NULL;
    for (int i = 0; i < SERVE_MAX_PROMPTS; i++) {
        free(r->ids[i]), r->ids[i] = NULL;
        free(r->ptext[i]), r->ptext[i] = NULL;
    }
    free(r->text);
    r->text = NULL;
    cJSON_Delete(r->tools);
    r->tools = NULL;
    free(r->prefill);
    r->prefill = NULL;
    r->n_stop = r->n_prompts = 0;
}

/* ---- request fields: absent or null keeps the default; a wrong type or range is an error (1) */
static int f_num(cJSON *o, const char *k, double lo, double hi, double *out, char *why, size_t wl) {
    cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!x || cJSON_IsNull(x)) return 0;
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= lo && x->valuedouble <= hi)) {
        snprintf(why, wl, "'%s' must be a number in [%g, %g]", k, lo, hi);
        return 1;
    }
    *out = x->valuedouble;
    return 0;
}
static int f_int(cJSON *o, const char *k, double lo, double hi, int64_t *out, char *why, size_t wl) {
    cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!x || cJSON_IsNull(x)) return 0;
    if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || !(x->valuedouble >= lo && x->valuedouble <= hi)) {
        snprintf(why, wl, "'%s' must be an integer in [%.0f, %.0f]", k, lo, hi);
        return 1;
    }
    *out = (int64_t)x->valuedouble;
    return 0;
}
static int f_bool(cJSON *o, const char *k, int *out, char *why, size_t wl) {
    cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!x || cJSON_IsNull(x)) return 0;
    if (!cJSON_IsBool(x)) {
        snprintf(why, wl, "'%s' must be a boolean", k);
        return 1;
    }
    *out = cJSON_IsTrue(x);
    return 0;
}

/* ids of one prompt (a string or an array of token ids): malloc'ed; NULL with why */
static int32_t *prompt_ids(const serve_view *s, cJSON *p, int64_t *n, char **text, int idx, char *why, size_t wl) {
    *n = 0;
    *text = NULL;
    const int32_t V = s->vocab_size;
    if (cJSON_IsString(p)) {
        if (!s->tok) {
            snprintf(why, wl, "this server has no tokenizer: send prompts as token ids");
            return NULL;
        }
        int32_t *ids = NULL;
        size_t k = 0;
        plm_error err = {0};
        if (plm_tokenizer_encode(s->tok, p->valuestring, strlen(p->valuestring), &ids, &k, &err)) {
            snprintf(why, wl, "prompt %d: %s", idx, err.msg);
            return NULL;
        }
        for (size_t i = 0; i < k; i++)
            if (ids[i] < 0 || ids[i] >= V) {
                snprintf(why, wl, "prompt %d: token %d at index %zu is outside the model's vocabulary [0, %d)", idx,
                         ids[i], i, V);
                free(ids);
                return NULL;
            }
        *n = (int64_t)k;
        *text = strdup(p->valuestring);
        return ids;
    }
    if (!cJSON_IsArray(p)) {
        snprintf(why, wl, "'prompt' must be a string, an array of token ids or an array of either");
        return NULL;
    }
    int k = cJSON_GetArraySize(p);
    int32_t *ids = malloc((size_t)(k ? k : 1) * sizeof *ids);
    if (!ids) {
        snprintf(why, wl, "out of memory");
        return NULL;
    }
    int i = 0;
    for (cJSON *x = p->child; x; x = x->next, i++) {
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble)) {
            snprintf(why, wl, "prompt %d: element %d is not an integer token id", idx, i);
            free(ids);
            return NULL;
        }
        if (!(x->valuedouble >= 0 && x->valuedouble < V)) {
            snprintf(why, wl, "prompt %d: token id %.0f at index %d is outside the vocabulary [0, %d)", idx,
                     x->valuedouble, i, V);
            free(ids);
            return NULL;
        }
        ids[i] = (int32_t)x->valuedouble;
    }
    *n = k;
    return ids;
}

/* sampling, limits, stop strings: the fields completions and chat share; 0 ok, else why is set */
static int common_fields(const serve_view *s, serve_req *r, cJSON *req, int chat, char *why, size_t wl) {
    cJSON *model = cJSON_GetObjectItemCaseSensitive(req, "model");
    if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model)) return snprintf(why, wl, "'model' must be a string"), 1;
        if (strcmp(model->valuestring, s->name))
            return snprintf(why, wl, "model_not_found:the model '%s' does not exist; this server serves '%s'",
                            model->valuestring, s->name), 1;
    }
    double temperature = 1.0, top_p = 1.0, pp = 0, fp = 0;
    int64_t top_k = 0, seed = INT64_MIN, n = 1;
    r->max_new = chat ? -1 : 16;
    int stream = 0;
    if (f_num(req, "temperature", 0, 100, &temperature, why, wl) || f_num(req, "top_p", 0, 1, &top_p, why, wl) ||
        f_int(req, "top_k", -1, 1 << 30, &top_k, why, wl) || f_int(req, "seed", -9.2e18, 9.2e18, &seed, why, wl) ||
        f_int(req, "n", 1, 1 << 20, &n, why, wl) || f_int(req, "max_tokens", 0, 1 << 30, &r->max_new, why, wl) ||
        (chat && f_int(req, "max_completion_tokens", 0, 1 << 30, &r->max_new, why, wl)) ||
        f_bool(req, "stream", &stream, why, wl) || f_bool(req, "ignore_eos", &r->ignore_eos, why, wl) ||
        f_num(req, "presence_penalty", -2, 2, &pp, why, wl) || f_num(req, "frequency_penalty", -2, 2, &fp, why, wl))
        return 1;
    if (n != 1) return snprintf(why, wl, "'n' must be 1: packlm serve returns one choice per prompt"), 1;
    if (pp != 0 || fp != 0) return snprintf(why, wl, "presence_penalty and frequency_penalty are not supported"), 1;
    if (top_p <= 0) return snprintf(why, wl, "'top_p' must be in (0, 1]"), 1;
    r->stream = stream;
    cJSON *so = cJSON_GetObjectItemCaseSensitive(req, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so) || f_bool(so, "include_usage", &r->include_usage, why, wl))
            return snprintf(why, wl, "'stream_options' must be an object like {\"include_usage\": true}"), 1;
    }
    cJSON *st = cJSON_GetObjectItemCaseSensitive(req, "stop");
    if (st && !cJSON_IsNull(st)) {
        if (cJSON_IsString(st)) {
            if (*st->valuestring) r->stop[r->n_stop++] = strdup(st->valuestring);
        } else if (cJSON_IsArray(st) && cJSON_GetArraySize(st) <= SERVE_MAX_STOP) {
            for (cJSON *x = st->child; x; x = x->next) {
                if (!cJSON_IsString(x)) return snprintf(why, wl, "'stop' must be a string or an array of strings"), 1;
                if (*x->valuestring) r->stop[r->n_stop++] = strdup(x->valuestring);
            }
        } else {
            return snprintf(why, wl, "'stop' must be a string or an array of at most %d strings", SERVE_MAX_STOP), 1;
        }
        for (int i = 0; i < r->n_stop; i++) {
            if (!r->stop[i]) return snprintf(why, wl, "out of memory"), 1;
            size_t l = strlen(r->stop[i]);
            if (l > r->max_stop) r->max_stop = l;
        }
        if (r->n_stop && !s->tok) return snprintf(why, wl, "stop strings need a tokenizer"), 1;
    }
    static uint64_t counter = 0; /* a default seed per request (sampling without 'seed') */
    uint64_t sd = seed != INT64_MIN ? (uint64_t)seed
                                    : ((uint64_t)time(NULL) << 20) ^
                                          __atomic_add_fetch(&counter, 0x9E3779B97F4A7C15ull, __ATOMIC_RELAXED);
    r->sp = (plm_sampling){(float)temperature, (int32_t)(top_k < 0 ? 0 : top_k), (float)top_p, sd};
    return 0;
}

/* a refusal (400): "model_not_found:" and "context_length_exceeded:" prefixes of why name the
 * code; any other reason is an invalid_request */
static unsigned bad(serve_req *r, const char *why) {
    const char *code = "invalid_request", *msg = why;
    if (!strncmp(why, "model_not_found:", 16)) code = "model_not_found", msg = why + 16;
    else if (!strncmp(why, "context_length_exceeded:", 24)) code = "context_length_exceeded", msg = why + 24;
    if (msg != r->why) memmove(r->why, msg, strlen(msg) + 1);
    r->code = code;
    r->status = 400;
    return 400;
}

/* the length check shared by both endpoints */
static int check_len(const serve_view *s, const int64_t *n, int k, int64_t *max_new, char *why, size_t wl) {
    int64_t longest = 0;
    for (int i = 0; i < k; i++) {
        if (n[i] < 1) return snprintf(why, wl, "prompt %d is empty", i), 1;
        if (n[i] > longest) longest = n[i];
    }
    if (*max_new < 0) *max_new = s->max_len - longest > 0 ? s->max_len - longest : 0;
    if (longest + *max_new > s->max_len)
        return snprintf(why, wl,
                        "context_length_exceeded:this model's maximum context length is %lld tokens; the prompt holds "
                        "%lld tokens and max_tokens asks for %lld more",
                        (long long)s->max_len, (long long)longest, (long long)*max_new), 1;
    if (*max_new > INT32_MAX) *max_new = INT32_MAX;
    return 0;
}

static unsigned parse_completions(const serve_view *s, serve_req *r, cJSON *req) {
    char *why = r->why;
    const size_t wl = sizeof r->why;
    int64_t lp = -1;
    if (common_fields(s, r, req, 0, why, wl) || f_bool(req, "echo", &r->echo, why, wl) ||
        f_int(req, "logprobs", 0, SERVE_MAX_TOP, &lp, why, wl))
        return bad(r, why);
    r->logprobs = lp >= 0;
    r->top = lp > 0 ? (int)lp : 0;
    cJSON *p = cJSON_GetObjectItemCaseSensitive(req, "prompt");
    if (!p) return bad(r, "'prompt' is required");
    cJSON *list[SERVE_MAX_PROMPTS];
    int k = 0;
    /* a list of prompts: strings or arrays of ids; else one prompt */
    if (cJSON_IsArray(p) && p->child && (cJSON_IsString(p->child) || cJSON_IsArray(p->child))) {
        for (cJSON *x = p->child; x; x = x->next) {
            if (k == SERVE_MAX_PROMPTS) {
                snprintf(why, wl, "at most %d prompts per request", SERVE_MAX_PROMPTS);
                return bad(r, why);
            }
            list[k++] = x;
        }
    } else {
        list[k++] = p;
    }
    for (int i = 0; i < k; i++) {
        r->ids[i] = prompt_ids(s, list[i], &r->n[i], &r->ptext[i], i, why, wl);
        if (!r->ids[i]) return bad(r, why);
    }
    if (check_len(s, r->n, k, &r->max_new, why, wl)) return bad(r, why);
    r->n_prompts = k;
    return 0;
}

cJSON *serve_chat_context(const serve_view *s, cJSON *req, char *why, size_t wl) {
    cJSON *ms = cJSON_GetObjectItemCaseSensitive(req, "messages");
    if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) < 1)
        return snprintf(why, wl, "'messages' must be a non-empty array"), NULL;
    cJSON *ctx = cJSON_CreateObject(), *out = cJSON_AddArrayToObject(ctx, "messages");
    if (!out) goto nomem;
    int i = 0;
    for (cJSON *x = ms->child; x; x = x->next, i++) {
        cJSON *r = cJSON_GetObjectItemCaseSensitive(x, "role");
        if (!cJSON_IsObject(x) || !cJSON_IsString(r)) {
            snprintf(why, wl, "messages[%d] must be an object with a string 'role'", i);
            goto bad;
        }
        if (strcmp(r->valuestring, "system") && strcmp(r->valuestring, "user") && strcmp(r->valuestring, "assistant") &&
            strcmp(r->valuestring, "tool")) {
            snprintf(why, wl, "messages[%d]: role '%s' is not one of system, user, assistant, tool", i, r->valuestring);
            goto bad;
        }
        cJSON *m = cJSON_Duplicate(x, 1);
        if (!m || !cJSON_AddItemToArray(out, m)) goto nomem;
        cJSON *ct = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!ct || cJSON_IsNull(ct)) {
            cJSON_DeleteItemFromObjectCaseSensitive(m, "content");
            if (!cJSON_AddStringToObject(m, "content", "")) goto nomem;
        } else if (cJSON_IsArray(ct)) { /* content parts: the text parts, one a line */
            sbuf b = {0};
            sb_add(&b, "");
            for (cJSON *pt = ct->child; pt; pt = pt->next) {
                cJSON *ty = cJSON_GetObjectItemCaseSensitive(pt, "type"), *tx = cJSON_GetObjectItemCaseSensitive(pt, "text");
                if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text") || !cJSON_IsString(tx)) {
                    free(b.p);
                    snprintf(why, wl, "messages[%d]: only text content parts are supported", i);
                    goto bad;
                }
                if (pt != ct->child) sb_add(&b, "\n");
                sb_add(&b, tx->valuestring);
            }
            cJSON *str = b.oom ? NULL : cJSON_CreateString(b.p);
            free(b.p);
            if (!str || !cJSON_ReplaceItemInObjectCaseSensitive(m, "content", str)) goto nomem;
        } else if (!cJSON_IsString(ct)) {
            snprintf(why, wl, "messages[%d]: 'content' must be a string or an array of text parts", i);
            goto bad;
        }
        cJSON *rc = cJSON_GetObjectItemCaseSensitive(m, "reasoning_content");
        if (rc && !cJSON_IsNull(rc) && !cJSON_IsString(rc)) {
            snprintf(why, wl, "messages[%d]: 'reasoning_content' must be a string", i);
            goto bad;
        }
        cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        if (tc && !cJSON_IsNull(tc)) {
            if (!cJSON_IsArray(tc)) {
                snprintf(why, wl, "messages[%d]: 'tool_calls' must be an array", i);
                goto bad;
            }
            for (cJSON *c = tc->child; c; c = c->next) {
                cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "function");
                cJSON *nm = cJSON_GetObjectItemCaseSensitive(f, "name"), *ar = cJSON_GetObjectItemCaseSensitive(f, "arguments");
                if (!cJSON_IsObject(c) || !cJSON_IsObject(f) || !cJSON_IsString(nm)) {
                    snprintf(why, wl, "messages[%d]: each tool call needs a 'function' with a string 'name'", i);
                    goto bad;
                }
                if (cJSON_IsString(ar)) { /* the arguments' JSON text becomes an object, as vLLM does */
                    cJSON *pa = cJSON_Parse(ar->valuestring);
                    if (pa && cJSON_IsObject(pa)) cJSON_ReplaceItemInObjectCaseSensitive(f, "arguments", pa);
                    else cJSON_Delete(pa);
                }
            }
        }
    }
    cJSON *tools = cJSON_GetObjectItemCaseSensitive(req, "tools");
    if (tools && !cJSON_IsNull(tools)) {
        if (!cJSON_IsArray(tools)) {
            snprintf(why, wl, "'tools' must be an array");
            goto bad;
        }
        i = 0;
        for (cJSON *t = tools->child; t; t = t->next, i++) {
            cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type"), *f = cJSON_GetObjectItemCaseSensitive(t, "function");
            if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "function") || !cJSON_IsObject(f) ||
                !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(f, "name"))) {
                snprintf(why, wl, "tools[%d] must be {\"type\": \"function\", \"function\": {\"name\": ...}}", i);
                goto bad;
            }
            cJSON *pa = cJSON_GetObjectItemCaseSensitive(f, "parameters");
            if (pa && !cJSON_IsNull(pa) && !cJSON_IsObject(pa)) {
                snprintf(why, wl, "tools[%d].function.parameters must be an object (a JSON Schema)", i);
                goto bad;
            }
        }
        if (cJSON_GetArraySize(tools) > 0) {
            cJSON *tc = cJSON_Duplicate(tools, 1);
            if (!tc || !cJSON_AddItemToObject(ctx, "tools", tc)) goto nomem;
        }
    }
    int agp = 1;
    if (f_bool(req, "add_generation_prompt", &agp, why, wl)) goto bad;
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", agp);
    if (s->bos_tok) cJSON_AddStringToObject(ctx, "bos_token", s->bos_tok);
    if (s->eos_tok) cJSON_AddStringToObject(ctx, "eos_token", s->eos_tok);
    cJSON *kw = cJSON_GetObjectItemCaseSensitive(req, "chat_template_kwargs");
    if (kw && !cJSON_IsNull(kw)) {
        if (!cJSON_IsObject(kw)) {
            snprintf(why, wl, "'chat_template_kwargs' must be an object like {\"enable_thinking\": false}");
            goto bad;
        }
        for (cJSON *k = kw->child; k; k = k->next) {
            if (!k->string || !strcmp(k->string, "messages")) continue;
            cJSON *d = cJSON_Duplicate(k, 1);
            if (!d) goto nomem;
            cJSON_DeleteItemFromObjectCaseSensitive(ctx, k->string);
            cJSON_AddItemToObject(ctx, k->string, d);
        }
    }
    return ctx;
nomem:
    snprintf(why, wl, "out of memory");
bad:
    cJSON_Delete(ctx);
    return NULL;
}

/* messages -> the rendered prompt (malloc'ed), or NULL with why */
static char *render_messages(const serve_view *s, cJSON *req, char *why, size_t wl) {
    if (!s->tpl) return snprintf(why, wl, "this server has no chat template (use /v1/completions)"), NULL;
    cJSON *ctx = serve_chat_context(s, req, why, wl);
    if (!ctx) return NULL;
    char err[400];
    char *out = jinja_render(s->tpl, ctx, err, sizeof err);
    cJSON_Delete(ctx);
    if (!out) snprintf(why, wl, "the chat template cannot render these messages: %s", err);
    return out;
}

/* tools, tool_choice, parallel_tool_calls: what the answer is read for; 0 ok, else why is set */
static int tool_choice(const serve_view *v, serve_req *c, cJSON *req, char *why, size_t wl) {
    cJSON *tools = cJSON_GetObjectItemCaseSensitive(req, "tools"), *ch = cJSON_GetObjectItemCaseSensitive(req, "tool_choice");
    int have = cJSON_IsArray(tools) && cJSON_GetArraySize(tools) > 0;
    c->parallel = 1;
    if (f_bool(req, "parallel_tool_calls", &c->parallel, why, wl)) return -1;
    const char *mode = have ? "auto" : "none", *name = NULL;
    cJSON *name_item = NULL;
    if (ch && !cJSON_IsNull(ch)) {
        if (cJSON_IsString(ch)) mode = ch->valuestring;
        else if (cJSON_IsObject(ch)) {
            cJSON *ty = cJSON_GetObjectItemCaseSensitive(ch, "type"), *f = cJSON_GetObjectItemCaseSensitive(ch, "function");
            cJSON *nm = cJSON_GetObjectItemCaseSensitive(f, "name");
            if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "function") || !cJSON_IsString(nm))
                return snprintf(why, wl, "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                         "{\"type\": \"function\", \"function\": {\"name\": ...}}"), -1;
            mode = "function";
            name = nm->valuestring;
            name_item = nm;
        } else return snprintf(why, wl, "'tool_choice' must be a string or an object"), -1;
        if (strcmp(mode, "none") && strcmp(mode, "auto") && strcmp(mode, "required") && strcmp(mode, "function"))
            return snprintf(why, wl, "'tool_choice' must be \"none\", \"auto\", \"required\" or a named function"), -1;
        if (strcmp(mode, "none") && !have)
            return snprintf(why, wl, "'tool_choice' \"%s\" needs a non-empty 'tools' list", name ? name : mode), -1;
    }
    if (name) {
        int found = 0;
        for (cJSON *t = tools->child; t; t = t->next) {
            cJSON *nm = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
            found |= cJSON_IsString(nm) && !strcmp(nm->valuestring, name);
        }
        if (!found) return snprintf(why, wl, "'tool_choice' names '%s', which is not among the tools", name), -1;
    }
    if (!strcmp(mode, "none")) return 0;
    c->tool_parse = 1;
    c->tools = cJSON_Duplicate(tools, 1);
    if (!c->tools) return snprintf(why, wl, "out of memory"), -1;
    if (!strcmp(mode, "required") || name) { /* the answer is made to start with a call (no constrained decoding) */
        sbuf b = {0};
        sb_add(&b, TOOL_OPEN "\n");
        if (name && v->tool_fmt == TOOL_FMT_XML) {
            sb_add(&b, "<function=");
            sb_add(&b, name);
            sb_add(&b, ">\n");
        } else if (name) {
            sb_add(&b, "{\"name\": ");
            json_dumps_py(&b, name_item);
            sb_add(&b, ", \"arguments\": ");
        }
        if (b.oom) return free(b.p), snprintf(why, wl, "out of memory"), -1;
        c->prefill = b.p;
    }
    return 0;
}

static unsigned parse_chat(const serve_view *s, serve_req *r, cJSON *req) {
    char *why = r->why;
    const size_t wl = sizeof r->why;
    int64_t top = 0;
    int lp = 0;
    r->chat = 1;
    if (common_fields(s, r, req, 1, why, wl) || f_bool(req, "logprobs", &lp, why, wl) ||
        f_int(req, "top_logprobs", 0, SERVE_MAX_TOP, &top, why, wl))
        return bad(r, why);
    r->logprobs = lp;
    r->top = lp ? (int)top : 0;
    if (tool_choice(s, r, req, why, wl)) return bad(r, why);
    char *text = render_messages(s, req, why, wl);
    if (!text) return bad(r, why);
    if (r->prefill) { /* the answer starts with the call: after the generation prompt (and a closed think block) */
        sbuf b = {0};
        sb_add(&b, text);
        const char *turn = strstr(text, "<|im_start|>assistant\n"), *nx;
        while (turn && (nx = strstr(turn + 1, "<|im_start|>assistant\n"))) turn = nx;
        if (turn && strstr(turn, "<think>") && !strstr(turn, "</think>")) sb_add(&b, "\n</think>\n\n");
        sb_add(&b, r->prefill);
        free(text);
        text = b.p;
        if (!text || b.oom) return free(text), bad(r, "out of memory");
    }
    cJSON *tmp = cJSON_CreateString(text);
    free(text);
    char *pt = NULL;
    r->ids[0] = tmp ? prompt_ids(s, tmp, &r->n[0], &pt, 0, why, wl) : NULL;
    cJSON_Delete(tmp);
    free(pt);
    if (!r->ids[0]) return bad(r, why[0] ? why : "out of memory");
    if (check_len(s, r->n, 1, &r->max_new, why, wl)) return bad(r, why);
    r->n_prompts = 1;
    return 0;
}

static unsigned parse_tokenize(const serve_view *s, serve_req *r, cJSON *req) {
    char *why = r->why;
    const size_t wl = sizeof r->why;
    char *text = NULL;
    cJSON *p = cJSON_GetObjectItemCaseSensitive(req, "prompt");
    if (cJSON_GetObjectItemCaseSensitive(req, "messages")) text = render_messages(s, req, why, wl);
    else if (cJSON_IsString(p)) text = strdup(p->valuestring);
    else snprintf(why, wl, "give 'prompt' (a string) or 'messages'");
    if (!text) return bad(r, why);
    cJSON *tmp = cJSON_CreateString(text);
    char *pt = NULL;
    r->ids[0] = prompt_ids(s, tmp, &r->n[0], &pt, 0, why, wl);
    cJSON_Delete(tmp);
    free(pt);
    if (!r->ids[0]) {
        free(text);
        return bad(r, why);
    }
    r->n_prompts = 1;
    r->text = text;
    return 0;
}

unsigned serve_parse_request(const serve_view *v, int ep, const char *body, size_t n, serve_req *r) {
    memset(r, 0, sizeof *r);
    /* the body must be one strict JSON value (RFC 8259: valid UTF-8, nothing after the value, no
       raw control characters in strings); cJSON alone stops at a NUL byte, accepts invalid UTF-8
       (which the error answers would then echo) and cuts strings at an escaped NUL */
    size_t off = 0, nul = SIZE_MAX;
    const char *jwhy = NULL;
    if (!body || !plm_json_check(body, n, &off, &jwhy, &nul)) {
        long line = 1, col = 1;
        if (body) plm_json_line_col(body, off, &line, &col);
        if (body && jwhy)
            snprintf(r->why, sizeof r->why, "the request body is not valid JSON: %s at line %ld, column %ld", jwhy,
                     line, col);
        else snprintf(r->why, sizeof r->why, "the request body is not valid JSON");
        r->code = "invalid_json";
        return r->status = 400;
    }
    if (nul != SIZE_MAX) {
        long line = 1, col = 1;
        plm_json_line_col(body, nul, &line, &col);
        snprintf(r->why, sizeof r->why,
                 "the request body holds \\u0000 (NUL) in a string at line %ld, column %ld: not supported", line, col);
        r->code = "invalid_request";
        return r->status = 400;
    }
    const char *end = NULL;
    cJSON *req = cJSON_ParseWithLengthOpts(body, n + 1, &end, 1);
    if (!req) {
        snprintf(r->why, sizeof r->why, "the request body is not valid JSON");
        r->code = "invalid_json";
        return r->status = 400;
    }
    if (!cJSON_IsObject(req)) {
        cJSON_Delete(req);
        snprintf(r->why, sizeof r->why, "the request body must be a JSON object");
        r->code = "invalid_request";
        return r->status = 400;
    }
    unsigned st = ep == SERVE_EP_COMPLETIONS ? parse_completions(v, r, req)
                  : ep == SERVE_EP_CHAT      ? parse_chat(v, r, req)
                                             : parse_tokenize(v, r, req);
    cJSON_Delete(req);
    return st;
}

cJSON *serve_error_json(unsigned status, const char *code, const char *msg) {
    const char *type = status == 401 ? "authentication_error"
                       : status == 404 ? "not_found_error"
                       : status == 429 ? "rate_limit_error"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    /* the message as valid UTF-8: a path or a truncated message may hold anything */
    size_t n = strlen(msg), o = 0;
    char *u = malloc(3 * n + 1);
    if (u) {
        for (size_t i = 0; i < n;) {
            size_t k = plm_utf8_seq((const unsigned char *)msg + i, n - i);
            if (k) {
                memcpy(u + o, msg + i, k);
                o += k;
                i += k;
            } else {
                memcpy(u + o, "\xEF\xBF\xBD", 3); /* U+FFFD */
                o += 3;
                i++;
            }
        }
        u[o] = 0;
    }
    cJSON *obj = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(obj, "error");
    cJSON_AddStringToObject(e, "message", u ? u : "out of memory");
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNullToObject(e, "param");
    cJSON_AddStringToObject(e, "code", code);
    free(u);
    return obj;
}
