/* Accuracy of int8 weights on text: the checkpoint run in its own precision (the reference) and each
 * int8 mode run on the same tokens, compared token by token: mean and 99th-percentile per-token
 * KL(reference || int8) of the next-token distributions, top-1 (greedy) agreement, perplexity of the
 * text under each, and max|logit difference| / max|logit|.
 *
 * The text is bench_tok_text's generated mixed-language text, tokenized with the Qwen3 tokenizer of
 * tests/data (ids taken modulo the vocabulary when the model's is smaller), cut into n_seq
 * sequences of len tokens; each sequence runs in steps of CHUNK tokens carrying its state, as a long
 * prompt does, so the delta rule's state carries the error along the sequence. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "bench.h"
#include "packlm.h"

size_t bench_tok_text(char **out, size_t target_bytes, uint64_t seed);

#define CHUNK 128

typedef struct {
    double kl_sum, agree, nll, max_dl, max_l;
    double *kl; /* [n_tokens] per token */
} stats;

/* log-sum-exp of a row */
static double lse(const float *a, int V) {
    float m = a[0];
    for (int v = 1; v < V; v++) m = a[v] > m ? a[v] : m;
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)(a[v] - m));
    return m + log(s);
}

static int argmax(const float *a, int V) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (a[v] > a[best]) best = v;
    return best;
}

/* per token of a chunk: KL(ref || x), agreement, -log p(next) under x; ref's own NLL into nll_ref */
static void compare(stats *s, double *nll_ref, const float *ref, const float *x, int n, int V, const int32_t *next,
                    int64_t t0) {
    double kl_sum = 0, agree = 0, nll = 0, nllr = 0, max_dl = 0, max_l = 0;
#pragma omp parallel for schedule(static) reduction(+ : kl_sum, agree, nll, nllr) reduction(max : max_dl, max_l)
    for (int i = 0; i < n; i++) {
        const float *a = ref + (size_t)i * V, *b = x + (size_t)i * V;
        const double la = lse(a, V), lb = lse(b, V);
        double k = 0, dl = 0, ml = 0;
        for (int v = 0; v < V; v++) {
            const double pa = (double)a[v] - la, pb = (double)b[v] - lb;
            k += exp(pa) * (pa - pb);
            const double d = fabs((double)a[v] - b[v]);
            dl = d > dl ? d : dl;
            ml = fabs(a[v]) > ml ? fabs(a[v]) : ml;
        }
        s->kl[t0 + i] = k;
        kl_sum += k;
        agree += argmax(a, V) == argmax(b, V);
        if (next[i] >= 0) nll += lb - b[next[i]], nllr += la - a[next[i]];
        max_dl = dl > max_dl ? dl : max_dl;
        max_l = ml > max_l ? ml : max_l;
    }
    s->kl_sum += kl_sum, s->agree += agree, s->nll += nll, *nll_ref += nllr;
    s->max_dl = max_dl > s->max_dl ? max_dl : s->max_dl;
    s->max_l = max_l > s->max_l ? max_l : s->max_l;
}

/* a JSON key from a mode name: "int8,linear,act8" -> "int8_linear_act8" */
static void key_clean(char *k) {
    for (; *k; k++)
        if (*k == ',' || *k == '-') *k = '_';
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* runs tokens [0, n) of one sequence through c in steps of CHUNK with a state, logits of every token
   of chunk k into buf (the caller's per-chunk callback consumes them) */
typedef struct {
    plm_ctx *c;
    plm_state *st;
} runner;

static int run_chunk(runner *r, const int32_t *tok, int n, float *logits, plm_error *err) {
    const int32_t cu[2] = {0, n};
    plm_state *sv[1] = {r->st};
    plm_step step = {n, tok, NULL, 1, cu, sv, PLM_MEM_HOST};
    plm_outputs o = {0};
    o.logits = logits;
    o.n_rows = n;
    return plm_step_run(r->c, &step, &o, err) != PLM_OK;
}

int bench_accuracy(bench_ctx *b) {
    const int quick = b->quick, n_seq = quick ? 2 : 4, len = quick ? 256 : 1024;
    /* --weights int8...: that mode alone; else the four the README's table compares */
    const char *four[] = {"int8,linear,act8", "int8,linear,act16", "int8,act8", "int8,act16"};
    const char *one[] = {b->weights};
    const int just_one = !strncmp(b->weights, "int8", 4);
    const char *const *all = just_one ? one : four;
    const int n_modes = just_one ? 1 : 4;
    printf("accuracy: int8 against the stored weights, %d sequences of %d tokens (%d threads)\n", n_seq, len,
           b->n_threads);
    plm_error err = {0};
    plm_model *m = NULL;
    plm_tokenizer *tk = NULL;
    if (plm_model_open(&m, b->model_dir, &err) ||
        plm_tokenizer_open(&tk, "tests/data/tokenizer-qwen3/tokenizer.json", &err)) {
        fprintf(stderr, "packlm bench: accuracy: %s\n", err.msg);
        plm_model_free(m);
        return 1;
    }
    const int V = plm_model_get_info(m)->vocab_size;
    /* the text: enough bytes for n_seq * len tokens */
    int32_t *ids = NULL;
    size_t n_ids = 0;
    for (size_t bytes = (size_t)n_seq * len * 4; n_ids < (size_t)n_seq * len; bytes *= 2) {
        char *txt = NULL;
        size_t nb = bench_tok_text(&txt, bytes, 0x61636375ull);
        free(ids);
        ids = NULL;
        plm_status st = plm_tokenizer_encode(tk, txt, nb, &ids, &n_ids, &err);
        free(txt);
        if (st) {
            fprintf(stderr, "packlm bench: accuracy: %s\n", err.msg);
            plm_tokenizer_free(tk);
            plm_model_free(m);
            return 1;
        }
    }
    plm_tokenizer_free(tk);
    for (size_t i = 0; i < n_ids; i++) ids[i] %= V;

    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = b->n_threads;
    runner ref = {0}, run[8] = {{0}};
    int fail = plm_ctx_new(&ref.c, m, &p, &err) != PLM_OK;
    for (int k = 0; k < n_modes && !fail; k++)
        fail = plm_ctx_params_weights(&p, all[k], &err) || plm_ctx_new(&run[k].c, m, &p, &err);
    const int64_t N = (int64_t)n_seq * len;
    stats s[8] = {{0}};
    double nll_ref = 0;
    float *lr = malloc((size_t)CHUNK * V * sizeof(float)), *lx = malloc((size_t)CHUNK * V * sizeof(float));
    int32_t next[CHUNK];
    for (int k = 0; k < n_modes; k++) s[k].kl = calloc((size_t)N, sizeof(double));
    if (!lr || !lx) fail = 1;
    const double t0 = bench_now();
    for (int q = 0; q < n_seq && !fail; q++) {
        const int32_t *tok = ids + (size_t)q * len;
        fail = plm_state_new(&ref.st, m, &err) != PLM_OK;
        for (int k = 0; k < n_modes && !fail; k++) fail = plm_state_new(&run[k].st, m, &err) != PLM_OK;
        for (int c0 = 0; c0 < len && !fail; c0 += CHUNK) {
            const int n = len - c0 < CHUNK ? len - c0 : CHUNK;
            for (int i = 0; i < n; i++) next[i] = c0 + i + 1 < len ? tok[c0 + i + 1] : -1;
            fail = run_chunk(&ref, tok + c0, n, lr, &err);
            for (int k = 0; k < n_modes && !fail; k++) {
                double dummy = 0;
                fail = run_chunk(&run[k], tok + c0, n, lx, &err);
                if (!fail) compare(&s[k], k ? &dummy : &nll_ref, lr, lx, n, V, next, (int64_t)q * len + c0);
            }
        }
        plm_state_free(ref.st);
        ref.st = NULL;
        for (int k = 0; k < n_modes; k++) plm_state_free(run[k].st), run[k].st = NULL;
    }
    if (fail) fprintf(stderr, "packlm bench: accuracy: %s\n", err.msg[0] ? err.msg : "out of memory");
    const double n_pred = (double)n_seq * (len - 1);
    const double ppl_ref = exp(nll_ref / n_pred);
    if (!fail) {
        printf("  %d tokens in %.1f s; reference perplexity %.4g\n", (int)N, bench_now() - t0, ppl_ref);
        bench_report(b, "accuracy_ref_ppl", "reference (stored weights) perplexity", ppl_ref, "");
    }
    for (int k = 0; k < n_modes && !fail; k++) {
        char key[64], label[128];
        qsort(s[k].kl, (size_t)N, sizeof(double), cmp_d);
        const double p99 = s[k].kl[(size_t)floor(0.99 * (double)(N - 1))];
        const double ppl = exp(s[k].nll / n_pred);
#define REP(suffix, text, value, unit)                                                                       \
    (snprintf(key, sizeof key, "accuracy_%s_%s", all[k], suffix), key_clean(key),                               \
     snprintf(label, sizeof label, "%s: %s", all[k], text), bench_report(b, key, label, value, unit))
        REP("kl_mean", "mean KL(stored || int8) per token", s[k].kl_sum / (double)N, "nats");
        REP("kl_p99", "99th percentile KL per token", p99, "nats");
        REP("top1", "top-1 agreement", 100.0 * s[k].agree / (double)N, "%");
        REP("ppl_change", "perplexity change", 100.0 * (ppl / ppl_ref - 1.0), "%");
        REP("logit_err", "max|dlogit| / max|logit|", s[k].max_dl / s[k].max_l, "");
#undef REP
    }
    for (int k = 0; k < n_modes; k++) plm_ctx_free(run[k].c), free(s[k].kl);
    plm_ctx_free(ref.c);
    free(lr), free(lx), free(ids);
    plm_model_free(m);
    return fail;
}
