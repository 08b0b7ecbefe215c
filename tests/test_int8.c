/* int8 weights end to end on the fixtures: each int8 mode against the checkpoint's own precision,
 * and the int8 paths against each other.
 *
 * Tolerance rule. int8 changes the model, so it is held to what its rounding should cost, measured
 * by a noise model rather than by packlm's own int8 output: the checkpoint with every matrix int8
 * quantizes (the linear-attention projections too in the ,linear modes) perturbed by an
 * independent uniform error of half an int8 step, w + d (u - 1/2) with d = fp16(max|w| / 127) over
 * w's block of 32, run in the stored precision (mean over NOISE_DRAWS draws). int8 rounds the same
 * weights to the same grid, so with activations in two levels (act16: their own rounding ~256x
 * smaller) its mean per-token KL(stored || int8) over every token of inputs.txt is held to
 * KL_NOISE_X16 times the noise model's (rounding is not independent noise; one fixture's KL varies
 * 3x between draws). act8 rounds every matmul's input to the same 8-bit grid as well, a second
 * perturbation of the kind at each of them: KL_NOISE_X8. The most accurate mode
 * modes that keep the linear-attention projections (the default among them) are held to the issue's
 * target of >= 95 % greedy (argmax) agreement.
 * Perplexity and max|dlogit| / max|logit| are printed (README). The fixtures' hidden size is 64
 * (two blocks a row: the worst case for block scales) and their weights random (tiny-vl's logits
 * reach 56), so these are stress figures.
 * Between int8 paths the quantized weights are the same bytes: a checkpoint written by
 * plm_model_save_int8 gives the same logits as quantizing at load (TOL). The kernels agree to float
 * rounding (the kernel harness, 1e-5), but through a whole model that rounding does not stay small:
 * quantizing an activation is a step function, and a value that lands within an ulp of a rounding
 * boundary moves by a whole step (1/127 of its block's max) in one path and not in the other. So
 * AVX2 (PLM_ISA=avx2) against AVX-512 VNNI, the scalar reference kernels, and a packed run in
 * another order and budget (packed equals alone), with every matrix in int8 (,linear), are held to
 * TOL_PATH of max|logit| (measured up to 1.3e-2 with act8, 1.8e-4 with act16, whose steps are 256x
 * finer). Paths this CPU cannot run are skipped, saying so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "runseq.h"
#include "testutil.h"

#define KL_NOISE_X16 2.0 /* int8 with act16 against the noise model's KL (see the rule) */
#define KL_NOISE_X8 4.0  /* with act8 */
#define NOISE_DRAWS 4
#define AGREE_TARGET 0.95
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

/* weights: a plm_ctx_params_weights specification */
static float *run(const char *dir, const inputs *in, const char *weights, int reference, const int *order,
                  int64_t budget, float *lp) {
    plm_error err = {0};
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    if (!tu_check(plm_model_open(&m, dir, &err) == PLM_OK, "open %s %s", dir, err.msg)) return NULL;
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = 2;
    p.use_reference = reference;
    if (!tu_check(plm_ctx_params_weights(&p, weights, &err) == PLM_OK && plm_ctx_new(&c, m, &p, &err) == PLM_OK,
                  "context (%s) %s", weights, err.msg)) {
        plm_model_free(m);
        return NULL;
    }
    float *lg = malloc((size_t)(in->total * in->V) * sizeof(float));
    plm_status st = tu_run_packed(c, m, in->seqs, in->lens, in->n, order, budget, lg, lp, &err);
    tu_check(st == PLM_OK, "run %s (weights %s, reference %d): %s", dir, weights, reference, err.msg);
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

/* ---------------------------------------------------------------- the noise model (the rule) */
/* The matrices int8 quantizes, by checkpoint name (the text model's: no vision tower, no MTP head) */
static int quantized_name(const char *n, int tied, int keep_linear) {
    static const char *lin[] = {"in_proj_qkv.weight", "in_proj_z.weight", "out_proj.weight"};
    static const char *other[] = {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
                                  "gate_proj.weight", "up_proj.weight", "down_proj.weight"};
    const size_t l = strlen(n);
#define ENDS(sfx) (l >= strlen(sfx) && !strcmp(n + l - strlen(sfx), sfx))
    if (strstr(n, "visual.") || !strncmp(n, "mtp.", 4)) return 0;
    for (size_t i = 0; !keep_linear && i < 3; i++)
        if (ENDS(lin[i]) && strstr(n, "linear_attn.")) return 1;
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (ENDS(other[i]) && !strstr(n, "linear_attn.")) return 1;
    return tied ? ENDS("embed_tokens.weight") : !strcmp(n, "lm_head.weight");
#undef ENDS
}

/* dir's checkpoint with every matrix that int8 quantizes (keep_linear: but the linear-attention
   projections) perturbed by w + d * (u - 1/2), u uniform in [0, 1), d the int8 step of w's block of
   32 along its row (fp16 max|w| / 127): int8 rounding's error, drawn independently; written to out */
static int make_noisy(const char *dir, const char *out, int keep_linear, uint64_t seed) {
    plm_error err = {0};
    plm_model *m;
    if (!tu_check(plm_model_open(&m, dir, &err) == PLM_OK, "open %s: %s", dir, err.msg)) return 1;
    mkdir(out, 0777);
    plm_st_writer *w = plm_st_writer_new();
    tu_rng rng = {seed};
    plm_status st = PLM_OK;
    for (int i = 0; !st && i < plm_st_count(m->st); i++) {
        const plm_st_tensor *t = plm_st_at(m->st, i);
        if (t->ndim != 2 || !quantized_name(t->name, m->cfg.tie_embeddings, keep_linear)) {
            st = plm_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err);
            continue;
        }
        const int64_t R = t->shape[0], C = t->shape[1];
        plm_mat W = {t->data, t->dtype, R, C, NULL};
        float *f = malloc((size_t)(R * C) * sizeof(float));
        for (int64_t r = 0; r < R; r++) {
            float *row = f + r * C;
            plm_mat_row(row, &W, r);
            for (int64_t c0 = 0; c0 < C; c0 += 32) {
                float amax = 0;
                for (int64_t c = c0; c < C && c < c0 + 32; c++) amax = fabsf(row[c]) > amax ? fabsf(row[c]) : amax;
                const float d = plm_f16_to_f32(plm_f32_to_f16(amax / 127.0f));
                for (int64_t c = c0; c < C && c < c0 + 32; c++) row[c] += d * (tu_uniform(&rng) - 0.5f);
            }
        }
        st = plm_st_writer_add(w, t->name, PLM_DT_F32, 2, t->shape, f, &err);
        free(f);
    }
    char path[600], from[600];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    if (!st) st = plm_st_writer_save(w, path, &err);
    plm_st_writer_free(w);
    snprintf(from, sizeof from, "%s/config.json", dir);
    snprintf(path, sizeof path, "%s/config.json", out);
    FILE *fi = fopen(from, "rb");
    char buf[1 << 16];
    const size_t n = fi ? fread(buf, 1, sizeof buf, fi) : 0;
    if (fi) fclose(fi);
    if (!st) st = plm_write_file_atomic(path, buf, n, &err);
    plm_model_free(m);
    return !tu_check(st == PLM_OK && n > 0 && n < sizeof buf, "noise model of %s written: %s", dir, err.msg);
}

typedef struct {
    double kl, agree, ppl, lerr;
} acc;

/* per token over every token of the inputs: KL(ref || x) and argmax agreement (means), perplexity
   (from lp, when given), max|x - ref| / max|ref| */
static acc compare(const float *ref, const float *x, const float *lp, const inputs *in) {
    acc a = {0};
    for (int64_t t = 0; t < in->total; t++) {
        const float *p = ref + t * in->V, *q = x + t * in->V;
        double mp = p[0], mq = q[0], sp = 0, sq = 0, k = 0;
        for (int v = 1; v < in->V; v++) mp = p[v] > mp ? p[v] : mp, mq = q[v] > mq ? q[v] : mq;
        for (int v = 0; v < in->V; v++) sp += exp(p[v] - mp), sq += exp(q[v] - mq);
        for (int v = 0; v < in->V; v++) {
            double lp_ = p[v] - mp - log(sp), lq = q[v] - mq - log(sq);
            k += exp(lp_) * (lp_ - lq);
        }
        a.kl += k;
        a.agree += plm_argmax_row(p, in->V) == plm_argmax_row(q, in->V);
    }
    a.kl /= (double)in->total;
    a.agree /= (double)in->total;
    a.ppl = lp ? ppl(lp, in) : 0;
    a.lerr = tu_rel_err(x, ref, (size_t)(in->total * in->V));
    return a;
}

static void fixture(const char *name, int tied) {
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
    float *l0 = run(dir, &in, "stored", 0, NULL, 0, lp0);
    float *l1 = run(dir, &in, "int8", 0, NULL, 0, lp1); /* the default int8 mode: the paths below */
    if (!l0 || !l1) return;
    const double p0 = ppl(lp0, &in);
    /* the noise models: all quantized matrices perturbed, and all but the linear-attention projections */
    acc noise[2] = {{0}};
    for (int kl = 0; kl < 2; kl++) {
        for (int dr = 0; dr < NOISE_DRAWS; dr++) {
            char ndir[256];
            snprintf(ndir, sizeof ndir, "/tmp/packlm-noise-%s-%d-%d", name, kl, (int)getpid());
            float *ln = make_noisy(dir, ndir, kl, 0x6e6f697365ull + 1000003ull * (uint64_t)(2 * dr + kl))
                            ? NULL
                            : run(ndir, &in, "stored", 0, NULL, 0, NULL);
            const acc a = ln ? compare(l0, ln, NULL, &in) : (acc){0};
            noise[kl].kl += a.kl / NOISE_DRAWS, noise[kl].agree += a.agree / NOISE_DRAWS;
            noise[kl].lerr = a.lerr > noise[kl].lerr ? a.lerr : noise[kl].lerr;
            free(ln);
            char cmd[600];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", ndir);
            if (system(cmd)) printf("note: could not remove %s\n", ndir);
        }
        printf("%s noise model (%s, mean of %d draws): mean KL %.3e, argmax agreement %.3f, max|dlogit|/max|logit| "
               "%.3f (worst draw)\n", name, kl ? "keep-linear" : "all", NOISE_DRAWS, noise[kl].kl, noise[kl].agree,
               noise[kl].lerr);
    }
    /* each mode against the stored precision */
    const struct {
        const char *spec;
        int keep_linear, act16;
    } modes[] = {{"int8,linear,act8", 0, 0}, {"int8,linear,act16", 0, 1}, {"int8,keep-linear,act8", 1, 0},
                 {"int8,keep-linear,act16", 1, 1}};
    for (int k = 0; k < 4; k++) {
        float *lp = malloc(in.total * 4), *lx = run(dir, &in, modes[k].spec, 0, NULL, 0, lp);
        if (!lx) continue;
        const acc a = compare(l0, lx, lp, &in), n = noise[modes[k].keep_linear];
        printf("%s %s vs stored: mean KL %.3e (%.2f x the noise model's), argmax agreement %.3f, ppl %.4g -> %.4g "
               "(%+.2f%%), max|dlogit|/max|logit| %.3f\n",
               name, modes[k].spec, a.kl, a.kl / n.kl, a.agree, p0, a.ppl, 100 * (a.ppl / p0 - 1), a.lerr);
        const double f = modes[k].act16 ? KL_NOISE_X16 : KL_NOISE_X8;
        tu_check(a.kl <= f * n.kl, "%s %s: mean KL %.3e <= %.0f x the noise model's %.3e", name, modes[k].spec, a.kl, f,
                 n.kl);
        if (modes[k].keep_linear)
            tu_check(a.agree >= AGREE_TARGET, "%s %s: argmax agreement %.3f >= %.2f (the issue's target)", name,
                     modes[k].spec, a.agree, AGREE_TARGET);
        if (k == 2) tu_close(lx, l1, nl, 0, "int8 is int8,keep-linear,act8 (the default)");
        free(lx), free(lp);
    }

    /* the int8 paths against each other, on every matrix (,linear), in both activation precisions:
       packed equals alone (another order and a small budget: sequences split across steps), the
       narrower instruction set, the scalar reference */
    const char *paths[] = {"int8,linear", "int8,linear,act16"};
    for (int pi = 0; pi < 2; pi++) {
        const char *sp = paths[pi];
        char what[160];
        float *lbase = run(dir, &in, sp, 0, NULL, 0, NULL);
        if (!lbase) continue;
        int *order = malloc(in.n * sizeof(int));
        for (int i = 0; i < in.n; i++) order[i] = in.n - 1 - i;
        float *lb = run(dir, &in, sp, 0, order, 7, NULL);
        snprintf(what, sizeof what, "%s: reversed order, budget 7 = one packed step", sp);
        if (lb) tu_close(lb, lbase, nl, TOL_PATH, what);
        free(order), free(lb);
        if (plm_isa_supported(PLM_ISA_AVX512VNNI) && plm_isa_supported(PLM_ISA_AVX2)) {
            setenv("PLM_ISA", "avx2", 1);
            float *la = run(dir, &in, sp, 0, NULL, 0, NULL);
            unsetenv("PLM_ISA");
            snprintf(what, sizeof what, "%s: AVX2 path (PLM_ISA=avx2) = AVX-512 VNNI path", sp);
            if (la) tu_close(la, lbase, nl, TOL_PATH, what);
            free(la);
        } else {
            printf("skip: %s: %s AVX2 vs AVX-512 VNNI: this CPU runs only %s\n", name, sp,
                   plm_isa_name(plm_isa_best()));
        }
        float *lr = run(dir, &in, sp, 1, NULL, 0, NULL);
        snprintf(what, sizeof what, "%s: scalar reference kernels", sp);
        if (lr) tu_close(lr, lbase, nl, TOL_PATH, what);
        free(lr), free(lbase);
    }

    /* packlm quantize's checkpoint: the same int8 model, loaded as a directory */
    snprintf(qdir, sizeof qdir, "/tmp/packlm-int8-%s-%d", name, (int)getpid());
    {
        plm_error err = {0};
        plm_model *m;
        if (tu_check(plm_model_open(&m, dir, &err) == PLM_OK, "open") &&
            tu_check(plm_model_save_int8(m, qdir, 0, 2, &err) == PLM_OK, "%s: save int8: %s", name, err.msg)) {
            float *lq = run(qdir, &in, "stored", 0, NULL, 0, NULL);
            /* tied embeddings: the checkpoint holds one int8 table, for lm_head and the embedding
               lookups, where quantizing at load keeps the lookups in the stored precision */
            if (lq)
                tu_close(lq, l1, nl, tied ? TOL_TIED : TOL,
                         tied ? "int8 checkpoint (packlm quantize, tied: int8 embeddings) ~ int8 at load"
                              : "int8 checkpoint (packlm quantize) = int8 at load");
            float *lq2 = run(qdir, &in, "int8", 0, NULL, 0, NULL);
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
    fixture("tiny-dense", 0);
    fixture("tiny-moe", 0);
    fixture("tiny-vl", 1); /* tied embeddings, nested config */
    plm_error err = {0};
    plm_model *m;
    plm_ctx *c = NULL;
    if (plm_model_open(&m, "tests/data/tiny-dense", &err) == PLM_OK) {
        plm_ctx_params p = plm_ctx_default_params();
        p.weights = 7;
        tu_check(plm_ctx_new(&c, m, &p, &err) == PLM_ERR_INPUT, "unknown weights mode refused: %s", err.msg);
        p.weights = PLM_WEIGHTS_INT8;
        p.int8_act_bits = 12;
        tu_check(plm_ctx_new(&c, m, &p, &err) == PLM_ERR_INPUT, "int8_act_bits 12 refused: %s", err.msg);
        p.int8_act_bits = 0;
        p.device = "cuda";
        tu_check(plm_ctx_new(&c, m, &p, &err) == PLM_ERR_UNSUPPORTED, "int8 on cuda refused: %s", err.msg);
        plm_model_free(m);
    }
    /* the weights specification */
    const struct {
        const char *spec;
        int ok, weights, keep_head, linear, bits;
    } specs[] = {{"stored", 1, 0, 0, 0, 0},           {"int8", 1, 1, 0, 0, 0},
                 {"int8-keep-head", 1, 1, 1, 0, 0},   {"int8,keep-head", 1, 1, 1, 0, 0},
                 {"int8,linear,act8", 1, 1, 0, 1, 8}, {"int8,act16,keep-head,linear", 1, 1, 1, 1, 16},
                 {"int8,linear,keep-linear", 1, 1, 0, 0, 0},
                 {"int4", 0, 0, 0, 0, 0},              {"int8,", 0, 0, 0, 0, 0},
                 {"int8,act4", 0, 0, 0, 0, 0},         {"int8keep-head", 0, 0, 0, 0, 0},
                 {"stored,act8", 0, 0, 0, 0, 0},       {"", 0, 0, 0, 0, 0}};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        plm_ctx_params p = plm_ctx_default_params();
        p.int8_act_bits = 99; /* untouched on refusal */
        plm_status st = plm_ctx_params_weights(&p, specs[i].spec, &err);
        if (specs[i].ok)
            tu_check(!st && p.weights == specs[i].weights && p.int8_keep_head == specs[i].keep_head &&
                         p.int8_linear == specs[i].linear && p.int8_act_bits == specs[i].bits,
                     "weights \"%s\" read", specs[i].spec);
        else
            tu_check(st == PLM_ERR_INPUT && p.int8_act_bits == 99, "weights \"%s\" refused: %s", specs[i].spec,
                     err.msg);
    }
    /* packlm quantize --linear: the checkpoint computes as int8,linear does at load */
    {
        char qdir[256];
        snprintf(qdir, sizeof qdir, "/tmp/packlm-int8kl-%d", (int)getpid());
        inputs in = {0};
        in.n = tu_read_token_lines("tests/data/tiny-dense/inputs.txt", &in.seqs, &in.lens);
        for (int i = 0; i < in.n; i++) in.total += in.lens[i];
        if (plm_model_open(&m, "tests/data/tiny-dense", &err) == PLM_OK) {
            in.V = plm_model_get_info(m)->vocab_size;
            if (tu_check(plm_model_save_int8(m, qdir, PLM_INT8_LINEAR, 2, &err) == PLM_OK, "save --linear: %s",
                         err.msg)) {
                float *la = run("tests/data/tiny-dense", &in, "int8,linear", 0, NULL, 0, NULL);
                float *lq = run(qdir, &in, "stored", 0, NULL, 0, NULL);
                if (la && lq) tu_close(lq, la, (size_t)(in.total * in.V), TOL, "int8 checkpoint --linear = int8,linear at load");
                free(la), free(lq);
            }
            plm_model_free(m);
        }
        tu_free_seqs(in.seqs, in.n);
        free(in.lens);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", qdir);
        if (system(cmd)) printf("note: could not remove %s\n", qdir);
    }
    return tu_finish("test_int8");
}
