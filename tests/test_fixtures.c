/* The model fixtures (checkpoints saved by transformers, logits of each sequence run alone):
 * packed runs under many packings must match to 1e-4 * max|ref|, per-layer hidden states too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "devutil.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "model/cuda.h"
#include "runseq.h"
#include "synth.h"
#include "testutil.h"

#define REL 1e-4

/* the first maximum, NaN never winning: written here from the definition, not taken from packlm */
static int32_t plm_argmax_row_test(const float *l, int V) {
    int32_t best = -1;
    for (int32_t v = 0; v < V; v++)
        if (l[v] == l[v] && (best < 0 || l[v] > l[best])) best = v;
    return best < 0 ? 0 : best;
}

static void shuffle(int *a, int n, tu_rng *r) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(tu_next(r) % (uint64_t)(i + 1)), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* The same model through a BF16 copy of the checkpoint on device, against the CPU's fast path on the
 * same BF16 weights (F32 activations), every sequence in one step and under a small budget.
 * Default (two-part BF16 GEMM inputs, F32 accuracy): within 3e-2 * max|ref| on every logit.
 * Single pass (GEMM inputs rounded to BF16, as transformers runs a BF16 model): these random tiny
 * models amplify that rounding to 5-30% of max|ref| on single logits (the cast of the weights alone
 * moves the CPU's logits as much, printed below), so the rule there is the BF16-operand one over all
 * logits, ||got - ref|| / ||ref|| <= 1e-1: it catches layout errors (which give ~1), not rounding. */
static double rel_l2(const float *x, const float *ref, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = (double)x[i] - ref[i];
        d += e * e;
        r += (double)ref[i] * ref[i];
    }
    return d == d && r > 0 ? sqrt(d / r) : INFINITY;
}

/* the fixture's BF16 copy, written under build/ (its directory into bdir) and opened; NULL on failure
   (reported) */
static plm_model *open_bf16_copy(const char *name, char *bdir, size_t bdir_size) {
    char dir[256];
    plm_error err = {0};
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    snprintf(bdir, bdir_size, "build/tmp-bf16-%s", name);
    mkdir("build", 0755);
    if (!tu_check(tu_write_bf16_copy(dir, bdir, &err) == PLM_OK, "%s: BF16 copy written (%s)", name, err.msg))
        return NULL;
    plm_model *m = NULL;
    if (!tu_check(plm_model_open(&m, bdir, &err) == PLM_OK, "%s: BF16 copy opens (%s)", name, err.msg)) return NULL;
    return m;
}

/* Scoring in single-pass mode: a step that scores more rows than the skinny GEMM takes has cuBLAS write
 * its logits in BF16, as transformers' BF16 lm_head does, and reads those. Expected: log_softmax of the
 * same context's FP32 logits under the same budget (the same steps, so the same hidden states and GEMM
 * inputs) rounded to BF16. The FP32 sums of the two GEMMs may differ in order and so round a logit to
 * the neighbouring BF16 value, a step of at most 2^-7 |l| <= 2^-7 max|l|: bound, per token, two such
 * steps (2^-6 max|l|: the target's plus the log-sum-exp's). A layout or row error gives differences of
 * order max|l|. Budgets: one step (BF16 logits) and steps of 7 tokens (FP32 logits from the GEMV). */
static void score_single_pass(plm_ctx *c1, const plm_model *m, const char *name, const char *device,
                              int32_t *const *seqs, const int64_t *lens, int n, int64_t total, int V, float *buf) {
    plm_error err = {0};
    float *lp = malloc(total * sizeof *lp), *want = calloc(total, sizeof *want), *tol = calloc(total, sizeof *tol);
    const int64_t budgets[] = {0, 7};
    for (int b = 0; b < 2; b++) {
        if (!tu_check(tu_run_packed(c1, m, seqs, lens, n, NULL, budgets[b], buf, NULL, &err) == PLM_OK,
                      "%s: single-pass logits (%s)", name, err.msg))
            break;
        int64_t off = 0;
        for (int i = 0; i < n; off += lens[i++])
            for (int64_t j = 0; j + 1 < lens[i]; j++) {
                float *l = buf + (off + j) * V;
                double mx = -INFINITY, s = 0, amax = 0;
                for (int v = 0; v < V; v++) {
                    l[v] = plm_bf16_to_f32(plm_f32_to_bf16(l[v]));
                    mx = l[v] > mx ? l[v] : mx;
                    amax = fabs(l[v]) > amax ? fabs(l[v]) : amax;
                }
                for (int v = 0; v < V; v++) s += exp(l[v] - mx);
                want[off + j] = (float)(l[seqs[i][j + 1]] - mx - log(s));
                tol[off + j] = (float)(amax / 64.0);
            }
        if (!tu_check(tu_run_packed(c1, m, seqs, lens, n, NULL, budgets[b], NULL, lp, &err) == PLM_OK,
                      "%s: single-pass score (%s)", name, err.msg))
            break;
        int64_t bad = -1;
        double worst = 0;
        for (int64_t t = 0; t < total; t++) {
            const double e = fabs((double)lp[t] - want[t]);
            if (!(e <= tol[t]) && bad < 0) bad = t;
            if (e == e && tol[t] > 0) tu_worst(&worst, e / tol[t]);
        }
        tu_check(bad < 0, "%s on %s: single-pass log-probabilities, budget %lld, against log_softmax of its BF16-rounded "
                 "logits: worst |diff| %.2f of the bound (2^-6 max|l|)%s", name, device, (long long)budgets[b], worst,
                 bad < 0 ? "" : " (a token over it or NaN)");
    }
    free(lp), free(want), free(tol);
}

static void run_bf16(const char *name, const char *device) {
    char dir[256], bdir[256], path[512], what[200];
    plm_error err = {0};
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    plm_model *m = open_bf16_copy(name, bdir, sizeof bdir);
    if (!m) return;
    plm_ctx *c = NULL, *cpu = NULL;
    if (tu_ctx_on(&c, m, device, 2, name)) {
        plm_model_free(m);
        return;
    }
    plm_ctx_params sp = plm_ctx_default_params();
    sp.device = device;
    sp.bf16_single_pass = 1;
    plm_ctx *c1 = NULL;
    tu_check(plm_ctx_new(&c1, m, &sp, &err) == PLM_OK, "%s: single-pass BF16 context (%s)", name, err.msg);
    plm_ctx_new(&cpu, m, NULL, &err);
    const int V = plm_model_get_info(m)->vocab_size;
    int32_t **seqs;
    int64_t *lens, total = 0, shape[8];
    int nd;
    snprintf(path, sizeof path, "%s/inputs.txt", dir);
    int n = tu_read_token_lines(path, &seqs, &lens);
    for (int i = 0; i < n; i++) total += lens[i];
    const size_t N = (size_t)total * V;
    float *ref = NULL, *got = malloc(N * sizeof *got), *cref = malloc(N * sizeof *cref);
    snprintf(path, sizeof path, "%s/logits.npy", dir);
    tu_check(tu_run_packed(cpu, m, seqs, lens, n, NULL, 0, cref, NULL, &err) == PLM_OK, "%s: BF16 on the CPU (%s)", name,
             err.msg);
    if (plm_npy_load_f32(&ref, &nd, shape, path, &err) == PLM_OK) {
        const double scale = tu_max_abs(ref, N);
        printf("info %s: the BF16 cast moves the CPU's logits by %.3g of max|F32 ref| %.3g\n", name,
               tu_max_abs_diff(cref, ref, N) / scale, scale);
        /* 100: steps of 100 rows, over the skinny GEMM's 64 (cuBLAS, the stacked products), then a remainder */
        const int64_t budgets[] = {0, 7, 100};
        for (int mode = 0; mode < 2 && c1; mode++)
            for (int b = 0; b < 3; b++) {
                for (size_t i = 0; i < N; i++) got[i] = NAN;
                tu_check(tu_run_packed(mode ? c1 : c, m, seqs, lens, n, NULL, budgets[b], got, NULL, &err) == PLM_OK,
                         "%s: BF16 run (%s)", name, err.msg);
                snprintf(what, sizeof what, "%s on %s, BF16 weights%s, budget %lld, against the CPU on the same weights",
                         name, device, mode ? " (single pass)" : "", (long long)budgets[b]);
                if (!mode) tu_close(got, cref, N, 3e-2, what);
                else {
                    const double r2 = rel_l2(got, cref, N);
                    tu_check(r2 <= 1e-1, "%s: ||diff|| / ||ref|| %.2e (bound 1e-1; largest difference %.3g of max|ref|)",
                             what, r2, tu_max_abs_diff(got, cref, N) / tu_max_abs(cref, N));
                }
            }
    }
    if (c1) score_single_pass(c1, m, name, device, seqs, lens, n, total, V, got);
    plm_ctx_free(c1);
    free(ref);
    free(got);
    free(cref);
    tu_free_seqs(seqs, n);
    free(lens);
    plm_ctx_free(cpu);
    plm_ctx_free(c);
    plm_model_free(m);
}

/* Errors on a device: the CPU path's messages for bad input, a state of another device refused, a
 * memory limit too small for the weights or for a step refused cleanly (no state changed), an
 * impossible allocation reported with its size. */
static void device_errors(const char *name, const char *device) {
    char dir[256];
    plm_error err = {0}, err2 = {0};
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    plm_model *m = NULL;
    plm_ctx *c = NULL, *cpu = NULL;
    if (plm_model_open(&m, dir, &err)) return;
    if (tu_ctx_on(&c, m, device, 2, name)) {
        plm_model_free(m);
        return;
    }
    plm_ctx_new(&cpu, m, NULL, &err);
    plm_state *s = NULL, *sc = NULL;
    plm_state_new_on(&s, c, &err);
    plm_state_new(&sc, m, &err);
    int32_t bad[3] = {1, 99999, 2}, cu[2] = {0, 3};
    plm_step step = {3, bad, NULL, 1, cu, &s, PLM_MEM_HOST}, stepc = {3, bad, NULL, 1, cu, &sc, PLM_MEM_HOST};
    plm_status a = plm_step_run(c, &step, NULL, &err), b = plm_step_run(cpu, &stepc, NULL, &err2);
    tu_check(a == PLM_ERR_INPUT && a == b && !strcmp(err.msg, err2.msg) && plm_state_length(s) == 0,
             "%s on %s: a bad token id refused as on the CPU (\"%s\")", name, device, err.msg);
    int32_t good[3] = {1, 2, 3};
    plm_step mixed = {3, good, NULL, 1, cu, &sc, PLM_MEM_HOST};
    a = plm_step_run(c, &mixed, NULL, &err);
    tu_check(a == PLM_ERR_STATE && strstr(err.msg, "cpu"), "%s on %s: a CPU state refused (\"%s\")", name, device,
             err.msg);
    tu_check(plm_state_copy(s, sc, &err) == PLM_ERR_STATE, "%s on %s: no copy between devices (\"%s\")", name, device,
             err.msg);
    /* limits */
    plm_ctx *tiny = NULL;
    plm_ctx_params p = plm_ctx_default_params();
    p.device = device;
    p.device_mem_limit = 4096;
    a = plm_ctx_new(&tiny, m, &p, &err);
    tu_check(a == PLM_ERR_NOMEM && strstr(err.msg, "limit") && !tiny,
             "%s on %s: a limit below the weights refused at open (\"%s\")", name, device, err.msg);
    plm_ctx *fresh = NULL; /* a context that ran no step holds the weights only */
    p.device_mem_limit = 0;
    plm_ctx_new(&fresh, m, &p, &err);
    const size_t wbytes = fresh ? plm_ctx_device_bytes(fresh) : 0;
    plm_ctx_free(fresh);
    p.device_mem_limit = wbytes + wbytes / 8 + 65536; /* the weights and a small step */
    if (plm_ctx_new(&tiny, m, &p, &err) == PLM_OK) {
        const int T = 4000;
        int32_t *tok = calloc(T, sizeof *tok), cu2[2] = {0, T};
        plm_step big = {T, tok, NULL, 1, cu2, &s, PLM_MEM_HOST};
        plm_state_reset(s);
        a = plm_step_run(tiny, &big, NULL, &err);
        tu_check(a == PLM_ERR_NOMEM && strstr(err.msg, "4000 tokens") && plm_state_length(s) == 0,
                 "%s on %s: a step over the memory limit refused before it starts (\"%s\")", name, device, err.msg);
        plm_step small = {3, good, NULL, 1, cu, &s, PLM_MEM_HOST};
        a = plm_step_run(tiny, &small, NULL, &err);
        tu_check(a == PLM_OK && plm_state_length(s) == 3, "%s on %s: a small step still runs under the limit", name,
                 device);
        free(tok);
        plm_ctx_free(tiny);
    } else tu_check(0, "%s on %s: context under a limit just above the weights: %s", name, device, err.msg);
    void *pbig = NULL;
    a = plm_cuda_alloc(0, &pbig, (size_t)1 << 52, "an impossible test allocation", &err);
    tu_check(a == PLM_ERR_NOMEM && strstr(err.msg, "4503599627370496 bytes") && !pbig,
             "%s on %s: an impossible allocation is a clean out-of-memory error (\"%s\")", name, device, err.msg);
    plm_state_free(s);
    plm_state_free(sc);
    plm_ctx_free(cpu);
    plm_ctx_free(c);
    plm_model_free(m);
}

/* Arrays declared device memory (PLM_MEM_DEVICE) on a CPU context: refused before anything reads them,
 * as is a mem value that is neither kind (tests/test_cuda_devmem.c covers CUDA contexts). */
static void device_arrays_on_cpu(void) {
    plm_error err = {0};
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    if (plm_model_open(&m, "tests/data/tiny-dense", &err) || plm_ctx_new(&c, m, NULL, &err)) {
        tu_check(0, "device arrays on the CPU: open (%s)", err.msg);
        plm_model_free(m);
        return;
    }
    plm_state *s = NULL;
    plm_state_new(&s, m, &err);
    int32_t tok[3] = {1, 2, 3}, cu[2] = {0, 3}, pos[3] = {0, 1, 2};
    float lg[3 * 512];
    plm_step step = {3, tok, NULL, 1, cu, &s, PLM_MEM_DEVICE};
    plm_status a = plm_step_run(c, &step, NULL, &err);
    tu_check(a == PLM_ERR_INPUT && strstr(err.msg, "tokens are declared device memory") && strstr(err.msg, "runs on cpu") &&
                 plm_state_length(s) == 0,
             "a CPU context refuses device tokens (\"%s\")", err.msg);
    step.mem = PLM_MEM_HOST;
    plm_outputs out = {0};
    out.logits = lg, out.n_rows = 3, out.mem = PLM_MEM_DEVICE;
    a = plm_step_run(c, &step, &out, &err);
    tu_check(a == PLM_ERR_INPUT && strstr(err.msg, "outputs are declared device memory") && plm_state_length(s) == 0,
             "a CPU context refuses device outputs (\"%s\")", err.msg);
    out.mem = 2;
    a = plm_step_run(c, &step, &out, &err);
    tu_check(a == PLM_ERR_INPUT && strstr(err.msg, "plm_outputs.mem is 2"), "an unknown outputs mem refused (\"%s\")",
             err.msg);
    step.mem = -1;
    a = plm_step_run(c, &step, NULL, &err);
    tu_check(a == PLM_ERR_INPUT && strstr(err.msg, "plm_step.mem is -1"), "an unknown step mem refused (\"%s\")", err.msg);
    int32_t cuo[4], n = -1;
    a = plm_segments_from_positions_on(c, cuo, &n, pos, 3, &err);
    tu_check(a == PLM_ERR_INPUT && strstr(err.msg, "runs on cpu") && n == 0,
             "a CPU context refuses device position ids (\"%s\")", err.msg);
    out.mem = PLM_MEM_HOST;
    step.mem = PLM_MEM_HOST;
    err.msg[0] = 0;
    a = plm_step_run(c, &step, &out, &err);
    tu_check(a == PLM_OK && plm_state_length(s) == 3, "the same step with host arrays runs (%s)", err.msg);
    plm_state_free(s);
    plm_ctx_free(c);
    plm_model_free(m);
}

static int run_fixture(const char *name, int n_threads, int reference, const char *device) {
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    plm_error err = {0};
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    TU_REQUIRE_OK(plm_model_open(&m, dir, &err), &err);
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = n_threads;
    p.use_reference = reference;
    p.device = device;
    if (strcmp(device, "cpu")) {
        if (tu_ctx_on(&c, m, device, n_threads, name)) {
            plm_model_free(m);
            return 0;
        }
    } else TU_REQUIRE_OK(plm_ctx_new(&c, m, &p, &err), &err);
    const plm_model_info *in = plm_model_get_info(m);
    const int V = in->vocab_size, H = in->hidden_size, NL = in->n_layers;

    int32_t **seqs;
    int64_t *lens;
    snprintf(path, sizeof path, "%s/inputs.txt", dir);
    int n = tu_read_token_lines(path, &seqs, &lens);
    tu_check(n > 0, "%s: read %d sequences", name, n);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += lens[i];
    float *ref = NULL, *hid_ref = NULL;
    int nd;
    int64_t shape[8];
    snprintf(path, sizeof path, "%s/logits.npy", dir);
    TU_REQUIRE_OK(plm_npy_load_f32(&ref, &nd, shape, path, &err), &err);
    tu_check(nd == 2 && shape[0] == total && shape[1] == V, "%s: logits.npy shape [%lld, %lld]", name,
             (long long)shape[0], (long long)shape[1]);
    float *got = malloc((size_t)total * V * sizeof *got);
    char what[160];
    char tag[64];
    snprintf(tag, sizeof tag, "%s%s%s", reference ? " (reference kernels)" : "", strcmp(device, "cpu") ? " on " : "",
             strcmp(device, "cpu") ? device : "");

    /* 1. everything in one step, input order */
    tu_poison(got, (size_t)total * V);
    TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, NULL, 0, got, NULL, &err), &err);
    snprintf(what, sizeof what, "%s%s: all sequences in one step", name, tag);
    tu_close(got, ref, (size_t)total * V, REL, what);
    {   /* bit-for-bit reproducible run to run */
        float *again = malloc((size_t)total * V * sizeof *again);
        TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, NULL, 0, again, NULL, &err), &err);
        tu_check(!memcmp(got, again, (size_t)total * V * sizeof *got), "%s%s: a second run is bit-for-bit identical",
                 name, tag);
        free(again);
    }

    /* 2. one sequence per step (budget = longest would still pack several; run each alone) */
    tu_poison(got, (size_t)total * V);
    for (int i = 0; i < n; i++) {
        int64_t off = 0;
        for (int j = 0; j < i; j++) off += lens[j];
        TU_REQUIRE_OK(tu_run_packed(c, m, &seqs[i], &lens[i], 1, NULL, 0, got + off * V, NULL, &err), &err);
    }
    snprintf(what, sizeof what, "%s%s: each sequence alone", name, tag);
    tu_close(got, ref, (size_t)total * V, REL, what);

    /* 3. token budgets: 1, small odd, chunk-sized, random */
    tu_rng rng = {0x5eed + (uint64_t)V};
    int64_t budgets[] = {1, 7, 63, 64, 65, 100, 0};
    for (int b = 0; b < 7; b++) {
        int64_t bud = budgets[b] ? budgets[b] : tu_randint(&rng, 2, 300);
        if (reference && bud != 1 && bud != 7 && bud != 65) continue; /* slow kernels: three budgets */
        tu_poison(got, (size_t)total * V);
        TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, NULL, bud, got, NULL, &err), &err);
        snprintf(what, sizeof what, "%s%s: token budget %lld per step", name, tag, (long long)bud);
        tu_close(got, ref, (size_t)total * V, REL, what);
    }

    /* 4. shuffled order, with and without a budget */
    int *order = malloc(n * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int r = 0; r < 3; r++) {
        shuffle(order, n, &rng);
        int64_t bud = r == 0 ? 0 : tu_randint(&rng, 1, 90);
        tu_poison(got, (size_t)total * V);
        TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, order, bud, got, NULL, &err), &err);
        snprintf(what, sizeof what, "%s%s: shuffled order %d, budget %lld", name, tag, r, (long long)bud);
        tu_close(got, ref, (size_t)total * V, REL, what);
    }
    free(order);

    /* 5. scoring: log p(next token) from the blocked head equals log_softmax of the reference, token
     *    by token and summed per sequence (what `packlm score` prints), under several budgets */
    float *lp = malloc(total * sizeof *lp), *lpref = calloc(total, sizeof *lpref);
    double *sum = malloc(n * sizeof *sum), *sumref = calloc(n, sizeof *sumref), *absref = calloc(n, sizeof *absref);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        for (int64_t j = 0; j + 1 < lens[i]; j++) {
            const float *l = ref + (off + j) * V;
            double mx = l[0], s = 0;
            for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
            for (int v = 0; v < V; v++) s += exp(l[v] - mx);
            double x = l[seqs[i][j + 1]] - mx - log(s);
            lpref[off + j] = (float)x;
            sumref[i] += x;
            absref[i] += fabs(x);
        }
        off += lens[i];
    }
    const int64_t sbud[] = {50, 1, 0};
    for (int b = 0; b < 3; b++) {
        TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, NULL, sbud[b], NULL, lp, &err), &err);
        snprintf(what, sizeof what, "%s%s: next-token log-probabilities (score path, budget %lld)", name, tag,
                 (long long)sbud[b]);
        tu_close(lp, lpref, total, REL, what);
        off = 0;
        double worst = 0;
        for (int i = 0; i < n; i++) {
            sum[i] = 0;
            for (int64_t j = 0; j + 1 < lens[i]; j++) sum[i] += lp[off + j];
            off += lens[i];
            /* each term within REL of the reference's scale: the sum within REL of the summed magnitudes */
            double e = fabs(sum[i] - sumref[i]) / (absref[i] > 0 ? absref[i] : 1.0);
            if (!isfinite(sum[i])) e = INFINITY;
            tu_worst(&worst, e);
        }
        tu_check(worst <= REL, "%s%s: summed log-probability per sequence (budget %lld): worst |diff| / sum|ref| %.2e",
                 name, tag, (long long)sbud[b], worst);
    }
    free(lp);
    free(lpref);
    free(sum);
    free(sumref);
    free(absref);

    /* 5b. greedy choices computed where the step runs: each one's logit is the row's maximum */
    {
        int32_t *rows = malloc(total * sizeof *rows), *am = malloc(total * sizeof *am), *cu = malloc((n + 1) * 4);
        int32_t *toks = malloc(total * sizeof *toks);
        plm_state **st = calloc(n, sizeof *st);
        cu[0] = 0;
        for (int i = 0; i < n; i++) {
            cu[i + 1] = cu[i] + (int32_t)lens[i];
            memcpy(toks + cu[i], seqs[i], lens[i] * sizeof *toks);
            plm_state_new_on(&st[i], c, &err);
        }
        for (int64_t t = 0; t < total; t++) rows[t] = (int32_t)(total - 1 - t), am[t] = -1; /* any order */
        plm_step step = {(int32_t)total, toks, NULL, n, cu, st, PLM_MEM_HOST};
        plm_outputs out = {0};
        out.logits = got;
        out.n_rows = (int32_t)total;
        out.amax_rows = rows;
        out.n_amax = (int32_t)total;
        out.argmax = am;
        int ok = plm_step_run(c, &step, &out, &err) == PLM_OK;
        const double scale = tu_max_abs(got, (size_t)total * V);
        for (int64_t t = 0; ok && t < total; t++) {
            const float *l = got + (size_t)rows[t] * V;
            ok &= am[t] >= 0 && am[t] < V && l[am[t]] >= l[plm_argmax_row_test(l, V)] - 1e-6 * scale;
        }
        tu_check(ok, "%s%s: argmax outputs (%lld rows, reversed order) pick each row's largest logit", name, tag,
                 (long long)total);
        for (int i = 0; i < n; i++) plm_state_free(st[i]);
        free(rows), free(am), free(cu), free(toks), free(st);
    }

    /* 6. hidden states of sequence 0, layer by layer */
    snprintf(path, sizeof path, "%s/hidden_seq0.npy", dir);
    TU_REQUIRE_OK(plm_npy_load_f32(&hid_ref, &nd, shape, path, &err), &err);
    if (tu_check(nd == 3 && shape[0] == NL + 1 && shape[1] == lens[0] && shape[2] == H, "%s: hidden_seq0 shape",
                 name)) {
        float *hid = malloc((size_t)(NL + 1) * lens[0] * H * sizeof *hid);
        tu_poison(hid, (size_t)(NL + 1) * lens[0] * H);
        plm_state *st;
        TU_REQUIRE_OK(plm_state_new_on(&st, c, &err), &err);
        int32_t cu[2] = {0, (int32_t)lens[0]};
        plm_step step = {(int32_t)lens[0], seqs[0], NULL, 1, cu, &st, PLM_MEM_HOST};
        plm_outputs out = {0};
        out.hidden = hid;
        TU_REQUIRE_OK(plm_step_run(c, &step, &out, &err), &err);
        for (int l = 0; l <= NL; l++) {
            snprintf(what, sizeof what, "%s%s: hidden state %d of %d (sequence 0)", name, tag, l, NL);
            tu_close(hid + (size_t)l * lens[0] * H, hid_ref + (size_t)l * lens[0] * H, (size_t)lens[0] * H, REL, what);
        }
        plm_state_free(st);
        free(hid);
    }
    free(got);
    free(ref);
    free(hid_ref);
    tu_free_seqs(seqs, n);
    free(lens);
    plm_ctx_free(c);
    plm_model_free(m);
    return 0;
}

/* Single-pass BF16 on the CPU (plm_ctx_params.bf16_single_pass): the BF16 copy of the fixture, each
 * GEMM input rounded once to BF16. The single-pass reference kernels against F32 activations on the
 * same weights, by the BF16-operand rule of run_bf16 (||diff|| / ||ref|| <= 1e-1, and not 0); the
 * fast paths (vdpbf16ps where the CPU has it, the widened form under PLM_ISA=avx2), packed under
 * several budgets, against the single-pass reference. Those multiply the same BF16 pairs and differ
 * only in the order of F32 sums, but one ulp of difference in a layer's output can flip the BF16
 * rounding of the next layer's input, so the runs part by BF16 rounding steps, not F32 ones (measured
 * on the fixtures: largest differences 1e-3 .. 7e-3 of max|ref|, ||diff|| / ||ref|| 0.9e-3 .. 2.2e-3): the rule is the norm one,
 * REL_SP, which a wrong layout or a missing rounding (~1, or the F32-activation difference above)
 * fails. The kernel harness checks the arithmetic itself, and the rounding bit for bit. */
#define REL_SP 1e-2
#define CHECK_OK(expr) tu_check((expr) == PLM_OK, "%s: %s (%s)", name, #expr, err.msg)
static void run_bf16_cpu(const char *name) {
    char dir[256], bdir[256], path[512], what[200];
    plm_error err = {0};
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    plm_model *m = open_bf16_copy(name, bdir, sizeof bdir);
    if (!m) return;
    plm_ctx *cf32 = NULL, *cref = NULL, *cfast = NULL, *cavx2 = NULL;
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = 2;
    CHECK_OK(plm_ctx_new(&cf32, m, &p, &err));
    p.bf16_single_pass = 1;
    CHECK_OK(plm_ctx_new(&cfast, m, &p, &err));
    setenv("PLM_ISA", "avx2", 1);
    CHECK_OK(plm_ctx_new(&cavx2, m, &p, &err));
    unsetenv("PLM_ISA");
    p.use_reference = 1;
    CHECK_OK(plm_ctx_new(&cref, m, &p, &err));
    const int V = plm_model_get_info(m)->vocab_size;
    int32_t **seqs;
    int64_t *lens, total = 0;
    snprintf(path, sizeof path, "%s/inputs.txt", dir);
    int n = tu_read_token_lines(path, &seqs, &lens);
    for (int i = 0; i < n; i++) total += lens[i];
    const size_t N = (size_t)total * V;
    float *f32 = malloc(N * 4), *ref = malloc(N * 4), *got = malloc(N * 4);
    if (cf32 && cfast && cavx2 && cref) {
        tu_poison(f32, N), tu_poison(ref, N);
        CHECK_OK(tu_run_packed(cf32, m, seqs, lens, n, NULL, 0, f32, NULL, &err));
        CHECK_OK(tu_run_packed(cref, m, seqs, lens, n, NULL, 1, ref, NULL, &err));
        const double r2 = rel_l2(ref, f32, N);
        tu_check(r2 <= 1e-1 && r2 > 0, "%s: single-pass reference against F32 activations: ||diff|| / ||ref|| %.2e "
                 "(bound 1e-1, and not 0: the rounding happens)", name, r2);
        const int64_t budgets[] = {0, 1, 7, 65};
        for (int k = 0; k < 2; k++)
            for (int b = 0; b < 4; b++) {
                tu_poison(got, N);
                CHECK_OK(tu_run_packed(k ? cavx2 : cfast, m, seqs, lens, n, NULL, budgets[b], got, NULL, &err));
                snprintf(what, sizeof what, "%s: single-pass BF16 %s, budget %lld, against the single-pass reference",
                         name, k ? "widened (PLM_ISA=avx2)" : "fast (this CPU's best)", (long long)budgets[b]);
                const double d2 = rel_l2(got, ref, N);
                tu_check(d2 <= REL_SP, "%s: ||diff|| / ||ref|| %.2e (bound %.0e; largest difference %.3g of max|ref|)",
                         what, d2, REL_SP, tu_max_abs_diff(got, ref, N) / tu_max_abs(ref, N));
            }
    }
    free(f32), free(ref), free(got);
    tu_free_seqs(seqs, n);
    free(lens);
    plm_ctx_free(cf32), plm_ctx_free(cref), plm_ctx_free(cfast), plm_ctx_free(cavx2);
    plm_model_free(m);
}

/* The model info's count of the linear-attention projections against the shapes transformers gives
 * them: in_proj_qkv [2 nk dk + nv dv, H], in_proj_z [nv dv, H], out_proj [H, nv dv] in every linear
 * layer. */
static int info_counts(const char *name) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    plm_error err = {0};
    plm_config cf;
    plm_model *m = NULL;
    TU_REQUIRE_OK(plm_config_load(&cf, dir, &err), &err);
    TU_REQUIRE_OK(plm_model_open(&m, dir, &err), &err);
    const plm_model_info *in = plm_model_get_info(m);
    const int64_t H = cf.hidden_size, qk = (int64_t)cf.lin_k_heads * cf.lin_k_dim, v = (int64_t)cf.lin_v_heads * cf.lin_v_dim;
    int64_t nl = 0;
    for (int l = 0; l < cf.n_layers; l++) nl += cf.layer_type[l] == PLM_LAYER_LINEAR;
    const int64_t want = nl * (H * (2 * qk + v) + 2 * H * v);
    tu_check(in->n_linear_proj_params == want && want > 0 && want < in->n_params,
             "%s: linear-attention projection parameters %lld, from the config %lld (of %lld)", name,
             (long long)in->n_linear_proj_params, (long long)want, (long long)in->n_params);
    plm_model_free(m);
    return 0;
}

/* A 3-layer synthetic BF16 model (linear, attention, linear; vocab 96, hidden 64, dense MLP) with the
 * given linear-attention heads and dims, written into dir and opened; NULL (a failed check) otherwise. */
static plm_model *small_bf16_model(tu_rng *r, int nk, int nv, int dk, int dv, const char *dir, const char *what) {
    synth_spec sp;
    synth_random_spec(&sp, r);
    plm_config *c = &sp.c;
    c->n_layers = 3;
    c->layer_type[0] = c->layer_type[2] = PLM_LAYER_LINEAR;
    c->layer_type[1] = PLM_LAYER_ATTENTION;
    c->vocab_size = 96, c->hidden_size = 64, c->n_kv_heads = 1, c->n_heads = 2, c->head_dim = 16;
    sp.rot_factor = 0.5, c->rope_dim = 8;
    c->lin_k_heads = nk, c->lin_v_heads = nv, c->lin_k_dim = dk, c->lin_v_dim = dv, c->conv_kernel = 4;
    c->is_moe = 0, c->intermediate_size = 48;
    sp.dtype = PLM_DT_BF16;
    plm_error err = {0};
    mkdir("build", 0755);
    mkdir(dir, 0755);
    if (!tu_check(synth_write(&sp, dir, r, &err) == PLM_OK, "%s: model written (%s)", what, err.msg)) return NULL;
    plm_model *m = NULL;
    if (!tu_check(plm_model_open(&m, dir, &err) == PLM_OK, "%s: model opens (%s)", what, err.msg)) return NULL;
    return m;
}

/* Single pass with delta-rule key dims over the tensor-core kernels' 128 (synthetic BF16 model, dk = 136):
 * those run the simple kernels, which read FP32 q, k, v for every token, so the BF16-input prep that
 * writes them only for short segments must not be taken. A step of 100 tokens (one segment of 70, one
 * of 30: cuBLAS products with BF16 outputs) on cuda against the CPU on the same weights, by the
 * BF16-operand rule of run_bf16 (||diff|| / ||ref|| <= 1e-1); q, k, v left unwritten read another
 * layer's values and give differences of order 1. */
static void wide_keys_single_pass(void) {
    tu_rng r = {0x5eedULL};
    plm_model *m = small_bf16_model(&r, 1, 2, 136, 16, "build/tmp-wide-keys", "wide keys");
    if (!m) return;
    const int V = plm_model_get_info(m)->vocab_size;
    plm_error err = {0};
    plm_ctx_params p = plm_ctx_default_params();
    p.device = "cuda:0";
    p.bf16_single_pass = 1;
    plm_ctx *g = NULL, *cpu = NULL;
    if (tu_ctx_with(&g, m, &p, "wide keys, single pass")) {
        plm_model_free(m);
        return;
    }
    tu_check(plm_ctx_new(&cpu, m, NULL, &err) == PLM_OK, "wide keys: CPU context (%s)", err.msg);
    int64_t lens[2] = {70, 30};
    int32_t *seqs[2];
    for (int i = 0; i < 2; i++) {
        seqs[i] = malloc(lens[i] * sizeof **seqs);
        for (int64_t t = 0; t < lens[i]; t++) seqs[i][t] = tu_randint(&r, 0, V - 1);
    }
    const size_t N = (size_t)100 * V;
    float *got = malloc(N * 4), *ref = malloc(N * 4);
    if (g && cpu && tu_check(tu_run_packed(cpu, m, seqs, lens, 2, NULL, 0, ref, NULL, &err) == PLM_OK,
                             "wide keys: CPU run (%s)", err.msg) &&
        tu_check(tu_run_packed(g, m, seqs, lens, 2, NULL, 0, got, NULL, &err) == PLM_OK,
                 "wide keys: cuda run (%s)", err.msg)) {
        const double r2 = rel_l2(got, ref, N);
        tu_check(r2 <= 1e-1, "wide keys (dk = 136), single pass on cuda:0, one step of 70 + 30 tokens, against the CPU "
                 "on the same weights: ||diff|| / ||ref|| %.2e (bound 1e-1)", r2);
    }
    free(got), free(ref), free(seqs[0]), free(seqs[1]);
    plm_ctx_free(g), plm_ctx_free(cpu);
    plm_model_free(m);
}

/* A decode step of more sequences than the skinny GEMM takes (80 one-token segments: cuBLAS products,
 * where the linear layers' four input projections run as one product of their stacked weights and the
 * decode mixer reads its output in place, and the MLP's gate and up as one) after a prompt step of 80 x 3
 * tokens (T = 240: the stacked gate and up in a prompt step), on cuda in the default precise mode against
 * the CPU on the same BF16 weights (synthetic model), the logits of every step: the prompts, then three
 * decode steps (the first captured as a graph, a plain run with the hidden states, which are compared
 * too, the graph's replay). Bound 1e-3 of max|ref|:
 * the precise products are FP32-grade (the fixtures' BF16 runs get within 1e-4), while a row of another
 * projection or token read in place moves logits by order 1. single: the same in the single-pass mode
 * (its 80-row decode steps take the stacked products and the fused decode kernels too), against the
 * same CPU run by run_bf16's rule for BF16 operands, ||diff|| / ||ref|| <= 1e-1. */
static void many_decode(int single) {
    tu_rng r = {0xdec0de5ULL};
    plm_model *m = small_bf16_model(&r, 2, 4, 16, 24, "build/tmp-many-decode", "many decode");
    if (!m) return;
    const plm_model_info *c = plm_model_get_info(m);
    plm_error err = {0};
    plm_ctx *g = NULL, *cpu = NULL;
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = 2;
    p.device = "cuda:0";
    p.bf16_single_pass = single;
    if (tu_ctx_with(&g, m, &p, single ? "many decode, single pass" : "many decode")) {
        plm_model_free(m);
        return;
    }
    tu_check(plm_ctx_new(&cpu, m, NULL, &err) == PLM_OK, "many decode: CPU context (%s)", err.msg);
    enum { NS = 80, P = 3 };
    const int V = c->vocab_size;
    int32_t *prompt = malloc(NS * P * 4), *next = malloc(NS * 4), *cu = malloc((NS + 1) * 4), *cu1 = malloc((NS + 1) * 4);
    for (int i = 0; i < NS * P; i++) prompt[i] = tu_randint(&r, 0, V - 1);
    for (int i = 0; i < NS; i++) next[i] = tu_randint(&r, 0, V - 1);
    for (int i = 0; i <= NS; i++) cu[i] = i * P, cu1[i] = i;
    plm_state *sg[NS] = {0}, *sc[NS] = {0};
    int ok = g && cpu;
    for (int i = 0; i < NS && ok; i++)
        ok = plm_state_new_on(&sg[i], g, &err) == PLM_OK && plm_state_new(&sc[i], m, &err) == PLM_OK;
    float *got = malloc((size_t)NS * P * V * 4), *ref = malloc((size_t)NS * P * V * 4);
    const size_t nhid = (size_t)(c->n_layers + 1) * NS * c->hidden_size;
    float *hg = malloc(nhid * 4), *hc = malloc(nhid * 4);
    /* the prompts, then three decode steps: the first of its shape (captured as a graph), one run
       plainly (the hidden states asked for), the same shape again (the graph replayed) */
    for (int s = 0; s < 4 && ok; s++) {
        const int32_t T = s ? NS : NS * P;
        for (int i = 0; i < NS && s > 1; i++) next[i] = (next[i] + 7 * s + i) % V;
        plm_step sg_step = {T, s ? next : prompt, NULL, NS, s ? cu1 : cu, sg, PLM_MEM_HOST};
        plm_step sc_step = {T, s ? next : prompt, NULL, NS, s ? cu1 : cu, sc, PLM_MEM_HOST};
        plm_outputs og = {0}, oc = {0};
        og.logits = got, og.n_rows = T, oc.logits = ref, oc.n_rows = T;
        if (s == 2) og.hidden = hg, oc.hidden = hc, tu_poison(hg, nhid), tu_poison(hc, nhid);
        tu_poison(got, (size_t)T * V), tu_poison(ref, (size_t)T * V);
        ok = tu_check(plm_step_run(g, &sg_step, &og, &err) == PLM_OK, "many decode: cuda step (%s)", err.msg) &&
             tu_check(plm_step_run(cpu, &sc_step, &oc, &err) == PLM_OK, "many decode: CPU step (%s)", err.msg);
        char what[200];
        const char *mode = single ? "single pass" : "precise";
        if (s)
            snprintf(what, sizeof what, "80 sequences decoding on cuda (%s), step %d%s, against the CPU on the same "
                     "BF16 weights", mode, s, s == 1 ? " (the first of its shape)" : s == 2 ? " (hidden states asked for: "
                     "run plainly)" : " (the shape again)");
        else
            snprintf(what, sizeof what, "their prompts, 80 x 3 tokens in one step, on cuda (%s) against the CPU", mode);
        if (ok && !single) {
            tu_close(got, ref, (size_t)T * V, 1e-3, what);
            if (s == 2) tu_close(hg, hc, nhid, 1e-3, "  and its hidden states");
        } else if (ok) { /* single pass: run_bf16's rule for BF16 operands */
            const double r2 = rel_l2(got, ref, (size_t)T * V);
            tu_check(r2 <= 1e-1, "%s: ||diff|| / ||ref|| %.2e (bound 1e-1)", what, r2);
            if (s == 2) {
                const double h2 = rel_l2(hg, hc, nhid);
                tu_check(h2 <= 1e-1, "  and its hidden states: ||diff|| / ||ref|| %.2e (bound 1e-1)", h2);
            }
        }
    }
    free(hg), free(hc);
    for (int i = 0; i < NS; i++) plm_state_free(sg[i]), plm_state_free(sc[i]);
    free(got), free(ref), free(prompt), free(next), free(cu), free(cu1);
    plm_ctx_free(g), plm_ctx_free(cpu);
    plm_model_free(m);
}

int main(void) {
    const char *names[] = {"tiny-dense", "tiny-moe", "tiny-vl"};
    for (int i = 0; i < 3; i++) {
        info_counts(names[i]);
        run_fixture(names[i], 2, 0, "cpu");
        run_fixture(names[i], 1, 1, "cpu");
        run_fixture(names[i], 2, 0, "cuda");
        run_bf16(names[i], "cuda:0");
        run_bf16_cpu(names[i]);
        device_errors(names[i], "cuda");
    }
    device_arrays_on_cpu();
    wide_keys_single_pass();
    many_decode(0);
    many_decode(1);
    return tu_finish("test_fixtures");
}
