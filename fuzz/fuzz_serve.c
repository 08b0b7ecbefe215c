/* libFuzzer target for the HTTP request path of packlm serve: what the server does with a path and
 * a body up to the point where the request would be queued for the engine (tools/serve_request.c,
 * the same functions the libmicrohttpd handler calls): the endpoint of the path, the body parsed as
 * JSON, every field validated, chat messages rendered by the Jinja interpreter through Qwen3's
 * template (tokenizer_config.json) or the Qwen3.5-style one with XML tool calls, tools and
 * tool_choice read, prompts
 * tokenised with the Qwen3 fixture tokenizer and checked against the vocabulary and the context
 * length.
 *
 * Input: byte 0 picks the server (bits 0-1: chat template none / Qwen3 / XML tools / Qwen3; bit 2: no
 * tokenizer, prompts must be ids; bits 3-4: max_model_len 32768 / 16 / 1 / 2^30; bit 5: a model
 * vocabulary of 1000 ids, smaller than the tokenizer's). The rest is the path, a newline, and the
 * body (no newline: the path alone, an empty body).
 *
 * Checked besides the sanitizers: an accepted request holds 1..64 prompts (one for chat and
 * /tokenize), each non-empty (except /tokenize) with every id inside the model's vocabulary, the
 * longest prompt plus max_tokens within max_model_len, max_tokens in [0, 2^31), at most 8 non-empty
 * stop strings whose longest length is max_stop, top_logprobs in [0, 20] only with logprobs,
 * temperature in [0, 100], top_p in (0, 1]; text prompts and stop strings only with a tokenizer,
 * chat only with a template. A refusal is a 400 with a known code and a non-empty message; error
 * answers (serve_error_json, also the 404 that quotes the path) and /tokenize answers serialise to
 * JSON that the strict checker (src/util/json_strict.h) accepts.
 *
 * Environment: PLM_FUZZ_TOKENIZER (default tests/data/tokenizer-qwen3/tokenizer.json; its folder's
 * tokenizer_config.json gives the Qwen3 template), PLM_FUZZ_TEMPLATES (default
 * tests/data/chat-templates, for xml-tools.jinja). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "packlm.h"
#include "serve.h"
#include "util/json_strict.h"

static plm_tokenizer *qwen;
static jtpl *tpl_qwen3, *tpl_xml;

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *t = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (t && fread(t, 1, (size_t)n, f) != (size_t)n) {
        free(t);
        t = NULL;
    }
    if (t) t[n] = 0;
    fclose(f);
    return t;
}

static jtpl *parse_or_die(const char *src, const char *what) {
    char why[400];
    jtpl *t = src ? jinja_parse(src, why, sizeof why) : NULL;
    if (!t) {
        fprintf(stderr, "fuzz_serve: cannot use %s: %s\n", what, src ? why : "not found");
        exit(1);
    }
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *path = getenv("PLM_FUZZ_TOKENIZER");
    if (!path) path = "tests/data/tokenizer-qwen3/tokenizer.json";
    plm_error err;
    if (plm_tokenizer_open(&qwen, path, &err)) {
        fprintf(stderr, "fuzz_serve: cannot open %s: %s\n", path, err.msg);
        exit(1);
    }
    char p[4200];
    snprintf(p, sizeof p, "%.*s/tokenizer_config.json", (int)(strrchr(path, '/') ? strrchr(path, '/') - path : 1),
             strrchr(path, '/') ? path : ".");
    char *cfg = slurp(p);
    cJSON *o = cfg ? cJSON_Parse(cfg) : NULL;
    cJSON *ct = cJSON_GetObjectItemCaseSensitive(o, "chat_template");
    tpl_qwen3 = parse_or_die(cJSON_IsString(ct) ? ct->valuestring : NULL, p);
    cJSON_Delete(o);
    free(cfg);
    const char *dir = getenv("PLM_FUZZ_TEMPLATES");
    snprintf(p, sizeof p, "%s/xml-tools.jinja", dir ? dir : "tests/data/chat-templates");
    char *x = slurp(p);
    tpl_xml = parse_or_die(x, p);
    free(x);
    return 0;
}

/* the answer a handler would build serialises to strict JSON */
static void check_json(cJSON *o) {
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!t) __builtin_trap();
    if (!plm_json_check(t, strlen(t), NULL, NULL, NULL)) __builtin_trap();
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const uint8_t cfg = data[0];
    static const int64_t max_lens[4] = {32768, 16, 1, (int64_t)1 << 30};
    const jtpl *tpls[4] = {NULL, tpl_qwen3, tpl_xml, tpl_qwen3};
    serve_view v = {0};
    v.tok = (cfg & 4) ? NULL : qwen;
    v.vocab_size = (cfg & 32) ? 1000 : plm_tokenizer_vocab_size(qwen);
    v.tpl = tpls[cfg & 3];
    v.bos_tok = NULL;
    v.eos_tok = "<|im_end|>";
    v.tool_fmt = (cfg & 3) == 2 ? TOOL_FMT_XML : TOOL_FMT_JSON;
    v.name = "fuzz-model";
    v.max_len = max_lens[(cfg >> 3) & 3];
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    const char *nl = memchr(rest, '\n', n);
    size_t plen = nl ? (size_t)(nl - rest) : n;
    char *path = malloc(plen + 1);
    if (!path) return 0;
    memcpy(path, rest, plen);
    path[plen] = 0;
    int ep = serve_endpoint(path);
    if (ep == SERVE_EP_NONE) { /* the 404 answer quotes the path */
        char msg[600];
        snprintf(msg, sizeof msg, "no such path: %s %s", "POST", path);
        check_json(serve_error_json(404, "not_found", msg));
    }
    free(path);
    if (ep != SERVE_EP_COMPLETIONS && ep != SERVE_EP_CHAT && ep != SERVE_EP_TOKENIZE) return 0;
    /* the body as the handler holds it: NUL-terminated, NULL when empty */
    size_t blen = nl ? n - plen - 1 : 0;
    char *body = NULL;
    if (blen) {
        body = malloc(blen + 1);
        if (!body) return 0;
        memcpy(body, nl + 1, blen);
        body[blen] = 0;
    }
    serve_req r;
    unsigned st = serve_parse_request(&v, ep, body, blen, &r);
    free(body);
    if (st) {
        if (st != 400 || !r.code || !r.why[0] || r.n_prompts) __builtin_trap();
        static const char *const codes[] = {"invalid_json", "invalid_request", "model_not_found",
                                            "context_length_exceeded"};
        int known = 0;
        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) known |= !strcmp(r.code, codes[i]);
        if (!known) __builtin_trap();
        check_json(serve_error_json(st, r.code, r.why));
        serve_req_free(&r);
        return 0;
    }
    const int32_t V = v.vocab_size;
    if (r.n_prompts < 1 || r.n_prompts > SERVE_MAX_PROMPTS) __builtin_trap();
    if (ep != SERVE_EP_COMPLETIONS && r.n_prompts != 1) __builtin_trap();
    int64_t longest = 0;
    for (int i = 0; i < r.n_prompts; i++) {
        if (!r.ids[i] || r.n[i] < 0 || (ep != SERVE_EP_TOKENIZE && r.n[i] < 1)) __builtin_trap();
        for (int64_t k = 0; k < r.n[i]; k++)
            if (r.ids[i][k] < 0 || r.ids[i][k] >= V) __builtin_trap();
        if (r.ptext[i] && !v.tok) __builtin_trap();
        if (r.n[i] > longest) longest = r.n[i];
    }
    if (ep == SERVE_EP_TOKENIZE) {
        if (!r.text || !v.tok) __builtin_trap();
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "tokens");
        cJSON_AddNumberToObject(o, "count", (double)r.n[0]);
        for (int64_t k = 0; k < r.n[0]; k++) cJSON_AddItemToArray(a, cJSON_CreateNumber(r.ids[0][k]));
        cJSON_AddStringToObject(o, "prompt", r.text);
        check_json(o);
        serve_req_free(&r);
        return 0;
    }
    if (r.max_new < 0 || r.max_new > INT32_MAX || longest + r.max_new > v.max_len) __builtin_trap();
    if (r.n_stop < 0 || r.n_stop > SERVE_MAX_STOP || (r.n_stop && !v.tok)) __builtin_trap();
    size_t ms = 0;
    for (int i = 0; i < r.n_stop; i++) {
        size_t l = strlen(r.stop[i]);
        if (!l) __builtin_trap();
        ms = l > ms ? l : ms;
    }
    if (ms != r.max_stop) __builtin_trap();
    if (r.top < 0 || r.top > SERVE_MAX_TOP || (r.top && !r.logprobs)) __builtin_trap();
    if (!(r.sp.temperature >= 0 && r.sp.temperature <= 100) || !(r.sp.top_p > 0 && r.sp.top_p <= 1) || r.sp.top_k < 0)
        __builtin_trap();
    if (ep == SERVE_EP_CHAT && (!r.chat || !v.tpl)) __builtin_trap();
    if (r.prefill && !r.tool_parse) __builtin_trap(); /* a forced call start only when calls are read */
    serve_req_free(&r);
    return 0;
}
