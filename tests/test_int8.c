/* int8 weights end to end on the fixtures: the int8 model against the checkpoint's own precision,
 * and the int8 paths against each other.
 *
 * Tolerance rule. int8 changes the model (weights and activations rounded to 8 bits in blocks of
 * 32), so it is held to accuracy bounds measured on these fixtures, not to float rounding:
 *   - mean per-token KL(stored || int8) <= KL_MAX and greedy (argmax) agreement >= ARGMAX_MIN over
 *     every token of inputs.txt; perplexity of inputs.txt within PPL_REL of the stored model's;
 *     max|logit difference| / max|logit| is printed (recorded in the README), bounded by LOGIT_REL.
 *     Measured when written (tiny-dense / tiny-moe / tiny-vl): KL 1.9e-3 / 1.3e-2 / 3.1e-2, argmax
 *     0.93 / 0.82 / 0.97, perplexity +0.5 % / +0.2 % / +7.3 %, logit error 0.29 / 0.49 / 0.30 of
 *     max|logit| (the fixtures' hidden size is 64: two blocks a row, the worst case for block
 *     scales; tiny-vl's random weights give logits up to 56 and a perplexity of 3e14); the bounds,
 *     per fixture in main(), leave ~1.5x room.
 * Between int8 paths the quantized weights are the same bytes: a checkpoint written by
 * plm_model_save_int8 gives the same logits as quantizing at load (TOL). The kernels agree to float
 * rounding (the kernel harness, 1e-5), but through a whole model that rounding does not stay small:
 * quantizing an activation is a step function, and a value that lands within an ulp of a rounding
 * boundary moves by a whole step (1/127 of its block's max) in one path and not in the other. So
 * AVX2 (PLM_ISA=avx2) against AVX-512 VNNI, the scalar reference kernels, and a packed run in
 * another order and budget (packed equals alone) are held to TOL_PATH of max|logit| (measured
 * 1.2e-2 to 1.8e-2 on these fixtures). Paths this CPU cannot run are skipped, saying so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "runseq.h"
#include "testutil.h"

/* per fixture: KL_MAX, ARGMAX_MIN, PPL_REL, LOGIT_REL (see fixture()) */
#define TOL_TIED 0.2 /* a tied checkpoint's int8 embeddings against stored ones (measured 0.109) */
#define TOL 1e-5
#define TOL_PATH 5e-2

typedef struct {
    int32_t **seqs;
    int64_t *lens;
    int n;
    int64_t total;
    int V;
} inputs;

static float *run(const char *dir, const inputs *in, int weights, int reference, const int *order, int64_t budget,
                  float *lp) {
    plm_error err = {0};
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    if (!tu_check(plm_model_open(&m, dir, &err) == PLM_OK, "open %s %s", dir, err.msg)) return NULL;
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = 2;
    p.weights = weights;
    p.use_reference = reference;
    if (!tu_check(plm_ctx_new(&c, m, &p, &err) == PLM_OK, "context %s", err.msg)) {
        plm_model_free(m);
        return NULL;
    }
    float *lg = malloc((size_t)(in->total * in->V) * sizeof(float));
    plm_status st = tu_run_packed(c, m, in->seqs, in->lens, in->n, order, budget, lg, lp, &err);
    tu_check(st == PLM_OK, "run %s (weights %d, reference %d): %s", dir, weights, reference, err.msg);
    plm_ctx_free(c);
    plm_model_free(m);
    return lg;
}

static double ppl(const float *lp, const inputs *in) {
    double s = 0;
    int64_t n = 0, o = 0;
    for (int i = 0; i < in->n; o += in->lens[i], i++)
        for (int64_t t = 0; t + 1 < in->lens[i]; t++, n++) s += lp[o + t];
    return exp(-s / (double)n);
}

static void fixture(const char *name, int tied, double KL_MAX, double ARGMAX_MIN, double PPL_REL,
                    double LOGIT_REL) {
    char dir[256], path[512], qdir[256];
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    snprintf(path, sizeof path, "%s/inputs.txt", dir);
    inputs in = {0};
    in.n = tu_read_token_lines(path, &in.seqs, &in.lens);
    for (int i = 0; i < in.n; i++) in.total += in.lens[i];
    {
        plm_error err = {0};
        plm_model *m;
        if (!tu_check(plm_model_open(&m, dir, &err) == PLM_OK, "open %s", dir)) return;
        in.V = plm_model_get_info(m)->vocab_size;
        plm_model_free(m);
    }
    const size_t nl = (size_t)(in.total * in.V);
    float *lp0 = malloc(in.total * 4), *lp1 = malloc(in.total * 4);
    float *l0 = run(dir, &in, PLM_WEIGHTS_STORED, 0, NULL, 0, lp0);
    float *l1 = run(dir, &in, PLM_WEIGHTS_INT8, 0, NULL, 0, lp1);
    if (!l0 || !l1) return;
    /* accuracy against the stored precision */
    double kl = 0, agree = 0;
    for (int64_t t = 0; t < in.total; t++) {
        const float *a = l0 + t * in.V, *b = l1 + t * in.V;
        double ma = a[0], mb = b[0], sa = 0, sb = 0, k = 0;
        for (int v = 1; v < in.V; v++) ma = a[v] > ma ? a[v] : ma, mb = b[v] > mb ? b[v] : mb;
        for (int v = 0; v < in.V; v++) sa += exp(a[v] - ma), sb += exp(b[v] - mb);
        for (int v = 0; v < in.V; v++) {
            double la = a[v] - ma - log(sa), lb = b[v] - mb - log(sb);
            k += exp(la) * (la - lb);
        }
        kl += k;
        agree += plm_argmax_row(a, in.V) == plm_argmax_row(b, in.V);
    }
    kl /= (double)in.total;
    agree /= (double)in.total;
    const double p0 = ppl(lp0, &in), p1 = ppl(lp1, &in), lerr = tu_rel_err(l1, l0, nl);
    printf("%s int8 vs stored: mean KL %.3e, argmax agreement %.3f, ppl %.4f -> %.4f (%+.2f%%), "
           "max|dlogit|/max|logit| %.3f\n",
           name, kl, agree, p0, p1, 100 * (p1 / p0 - 1), lerr);
    tu_check(kl <= KL_MAX, "%s: mean KL(stored || int8) %.3e <= %.0e", name, kl, KL_MAX);
    tu_check(agree >= ARGMAX_MIN, "%s: argmax agreement %.3f >= %.2f", name, agree, ARGMAX_MIN);
    tu_check(fabs(p1 / p0 - 1) <= PPL_REL, "%s: perplexity change %.4f within %.2f", name, p1 / p0 - 1, PPL_REL);
    tu_check(lerr <= LOGIT_REL, "%s: max|dlogit|/max|logit| %.3f <= %.2f", name, lerr, LOGIT_REL);

    /* packed equals alone: another order and a small budget (sequences split across steps) */
    int *order = malloc(in.n * sizeof(int));
    for (int i = 0; i < in.n; i++) order[i] = in.n - 1 - i;
    float *lb = run(dir, &in, PLM_WEIGHTS_INT8, 0, order, 7, NULL);
    if (lb) tu_close(lb, l1, nl, TOL_PATH, "int8: reversed order, budget 7 = one packed step");
    free(order), free(lb);

    /* the narrower instruction set and the scalar reference */
    if (plm_isa_supported(PLM_ISA_AVX512VNNI) && plm_isa_supported(PLM_ISA_AVX2)) {
        setenv("PLM_ISA", "avx2", 1);
        float *la = run(dir, &in, PLM_WEIGHTS_INT8, 0, NULL, 0, NULL);
        unsetenv("PLM_ISA");
        if (la) tu_close(la, l1, nl, TOL_PATH, "int8: AVX2 path (PLM_ISA=avx2) = AVX-512 VNNI path");
        free(la);
    } else {
        printf("skip: %s: int8 AVX2 vs AVX-512 VNNI: this CPU runs only %s\n", name, plm_isa_name(plm_isa_best()));
    }
    float *lr = run(dir, &in, PLM_WEIGHTS_INT8, 1, NULL, 0, NULL);
    if (lr) tu_close(lr, l1, nl, TOL_PATH, "int8: scalar reference kernels");
    free(lr);

    /* packlm quantize's checkpoint: the same int8 model, loaded as a directory */
    snprintf(qdir, sizeof qdir, "/tmp/packlm-int8-%s-%d", name, (int)getpid());
    {
        plm_error err = {0};
        plm_model *m;
        if (tu_check(plm_model_open(&m, dir, &err) == PLM_OK, "open") &&
            tu_check(plm_model_save_int8(m, qdir, 0, 2, &err) == PLM_OK, "%s: save int8: %s", name, err.msg)) {
            float *lq = run(qdir, &in, PLM_WEIGHTS_STORED, 0, NULL, 0, NULL);
            /* tied embeddings: the checkpoint holds one int8 table, for lm_head and the embedding
               lookups, where quantizing at load keeps the lookups in the stored precision */
            if (lq)
                tu_close(lq, l1, nl, tied ? TOL_TIED : TOL,
                         tied ? "int8 checkpoint (packlm quantize, tied: int8 embeddings) ~ int8 at load"
                              : "int8 checkpoint (packlm quantize) = int8 at load");
            float *lq2 = run(qdir, &in, PLM_WEIGHTS_INT8, 0, NULL, 0, NULL);
            if (lq2 && lq) tu_close(lq2, lq, nl, 0, "int8 checkpoint with --weights int8 (nothing to quantize)");
            free(lq), free(lq2);
            /* memory: an int8 context on the checkpoint computes from its mapping, no copy made */
            plm_model *mq8;
            plm_ctx *c8 = NULL;
            if (plm_model_open(&mq8, qdir, &err) == PLM_OK) {
                plm_ctx_params p = plm_ctx_default_params();
                p.weights = PLM_WEIGHTS_INT8;
                if (tu_check(plm_ctx_new(&c8, mq8, &p, &err) == PLM_OK, "int8 context on the checkpoint: %s", err.msg))
                    tu_check(mq8->q8_bytes == 0, "%s: int8 checkpoint: no quantized copy allocated (%zu bytes)", name,
                             mq8->q8_bytes);
                plm_ctx_free(c8);
                plm_model_free(mq8);
            }
            /* CUDA contexts refuse int8 weights from host code, before touching a device */
            plm_model *mq;
            plm_ctx *c = NULL;
            if (plm_model_open(&mq, qdir, &err) == PLM_OK) {
                plm_ctx_params p = plm_ctx_default_params();
                p.device = "cuda";
                plm_status st = plm_ctx_new(&c, mq, &p, &err);
                tu_check(st == PLM_ERR_UNSUPPORTED && strstr(err.msg, "int8"), "int8 checkpoint on cuda refused: %s",
                         err.msg);
                plm_ctx_free(c);
                plm_model_free(mq);
            }
        }
        if (m) plm_model_free(m);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", qdir);
        if (system(cmd)) printf("note: could not remove %s\n", qdir);
    }
    free(l0), free(l1), free(lp0), free(lp1);
    tu_free_seqs(in.seqs, in.n);
    free(in.lens);
}

int main(void) {
    fixture("tiny-dense", 0, 3e-3, 0.85, 0.03, 0.45);
    fixture("tiny-moe", 0, 2e-2, 0.75, 0.03, 0.75);
    fixture("tiny-vl", 1, 5e-2, 0.90, 0.11, 0.45); /* tied embeddings, nested config */
    plm_error err = {0};
    plm_model *m;
    plm_ctx *c = NULL;
    if (plm_model_open(&m, "tests/data/tiny-dense", &err) == PLM_OK) {
        plm_ctx_params p = plm_ctx_default_params();
        p.weights = 7;
        tu_check(plm_ctx_new(&c, m, &p, &err) == PLM_ERR_INPUT, "unknown weights mode refused: %s", err.msg);
        p.weights = PLM_WEIGHTS_INT8;
        p.device = "cuda";
        tu_check(plm_ctx_new(&c, m, &p, &err) == PLM_ERR_UNSUPPORTED, "int8 on cuda refused: %s", err.msg);
        plm_model_free(m);
    }
    return tu_finish("test_int8");
}
