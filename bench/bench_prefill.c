/* Prefill / scoring figures, reported as ratios to this run's own measurements so that machine
 * noise cancels:
 *   1. the machine's ceiling: OpenBLAS sgemm GFLOP/s on the model's projection shapes;
 *   2. packed score throughput (plm_step_run with targets: the lm_head runs block-wise as `score`
 *      does): tokens/s, model GFLOP/s (2 x active weights per token), ratio to the ceiling;
 *   3. the same tokens as one segment vs many (1x1024, 4x256, 128x8): per-segment overhead; 256 x 8
 *      against 8 x 256 with the peak memory of the short sequences (every step as `score` runs it:
 *      whole sequences without states, any set-up inside the timed step);
 *   4. chunked vs recurrent delta rule on one long segment, same thread count;
 *   5. peak resident memory vs the checkpoint's file size. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "io/safetensors.h"
#include "kernels/fast.h"
#include "packlm.h"

static uint64_t rs = 0x70726566696c6cull;
static uint32_t rnd32(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (uint32_t)(rs >> 11);
}
static float unif(void) { return (float)(rnd32() >> 8) * (1.0f / 16777216.0f); }

/* GFLOP/s of y[T, R] = x[T, C] W^T (F32 sgemm), best of reps */
static double sgemm_rate(int T, int C, int R, int reps) {
    float *x = malloc((size_t)T * C * 4), *w = malloc((size_t)R * C * 4), *y = malloc((size_t)T * R * 4);
    for (size_t i = 0; i < (size_t)T * C; i++) x[i] = unif() - 0.5f;
    for (size_t i = 0; i < (size_t)R * C; i++) w[i] = unif() - 0.5f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, R, C, 1.0f, x, C, w, C, 0.0f, y, R); /* warm */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, R, C, 1.0f, x, C, w, C, 0.0f, y, R);
        double dt = bench_now() - t0;
        best = dt < best ? dt : best;
    }
    free(x), free(w), free(y);
    return 2.0 * T * C * (double)R / best * 1e-9;
}

/* time of packlm's matmul on BF16 weights / time of sgemm on the same weights held as F32, best of reps */
static double bf16_vs_f32(int T, int C, int R, int nth, int reps) {
    float *x = malloc((size_t)T * C * 4), *w = malloc((size_t)R * C * 4), *y = malloc((size_t)T * R * 4);
    uint16_t *wb = malloc((size_t)R * C * 2);
    for (size_t i = 0; i < (size_t)T * C; i++) x[i] = unif() - 0.5f;
    for (size_t i = 0; i < (size_t)R * C; i++) w[i] = unif() - 0.5f, wb[i] = plm_f32_to_bf16(w[i]);
    plm_mat W = {wb, PLM_DT_BF16, R, C, NULL};
    double tb = 1e30, tf = 1e30;
    for (int r = 0; r <= reps; r++) { /* the first round warms up */
        openblas_set_num_threads(nth);
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, R, C, 1.0f, x, C, w, C, 0.0f, y, R);
        double t1 = bench_now();
        plm_matmul_fast(y, x, T, &W, nth);
        double t2 = bench_now();
        if (r) tf = t1 - t0 < tf ? t1 - t0 : tf, tb = t2 - t1 < tb ? t2 - t1 : tb;
    }
    openblas_set_num_threads(nth);
    free(x), free(w), free(y), free(wb);
    return tb / tf;
}

/* one step over n_seg whole sequences of lens[s] tokens, as `packlm score` / `forward` run them:
   no states (state[s] = NULL, nothing kept); score: log-probabilities of every token whose next token
   is in the segment, else (prefill) the logits of each segment's last token; returns seconds (what
   plm_step_run takes, outputs copied back: any state set-up the step needs is inside) */
double bench_run_step(plm_ctx *c, plm_model *m, int n_seg, const int *lens, int score, int *fail) {
    return bench_run_step_dev(c, m, n_seg, lens, score, NULL, fail);
}

double bench_run_step_dev(plm_ctx *c, plm_model *m, int n_seg, const int *lens, int score, float *dev_logits,
                          int *fail) {
    const plm_model_info *in = plm_model_get_info(m);
    int T = 0;
    for (int s = 0; s < n_seg; s++) T += lens[s];
    int32_t *tok = malloc(T * 4), *tgt = malloc(T * 4), *cu = malloc((n_seg + 1) * 4);
    float *lp = malloc(T * 4), *logits = malloc((size_t)n_seg * in->vocab_size * 4);
    int32_t *rows = malloc(n_seg * 4);
    cu[0] = 0;
    for (int s = 0; s < n_seg; s++) cu[s + 1] = cu[s] + lens[s], rows[s] = cu[s + 1] - 1;
    plm_state **st = calloc(n_seg, sizeof *st); /* all NULL */
    plm_error err = {0};
    for (int t = 0; t < T; t++) tok[t] = (int32_t)(rnd32() % (uint32_t)in->vocab_size);
    for (int s = 0; s < n_seg; s++)
        for (int t = cu[s]; t < cu[s + 1]; t++) tgt[t] = t + 1 < cu[s + 1] ? tok[t + 1] : -1;
    double dt = -1;
    plm_step step = {T, tok, NULL, n_seg, cu, st, PLM_MEM_HOST};
    plm_outputs o = {0};
    if (dev_logits) { /* every token's logits, into device memory */
        o.logits = dev_logits;
        o.n_rows = T;
        o.mem = PLM_MEM_DEVICE;
    } else if (score) {
        o.target = tgt;
        o.logprob = lp;
    } else {
        o.logits = logits;
        o.rows = rows;
        o.n_rows = n_seg;
    }
    double t0 = bench_now();
    if (plm_step_run(c, &step, &o, &err)) goto out;
    dt = bench_now() - t0;
    for (int t = 0; score && !dev_logits && t < T; t++)
        if (tgt[t] >= 0 && !isfinite(lp[t])) {
            fprintf(stderr, "packlm bench: non-finite log-probability at token %d\n", t);
            dt = -1;
            break;
        }
out:
    if (dt < 0) {
        fprintf(stderr, "packlm bench: score step failed: %s\n", err.msg);
        *fail = 1;
    }
    free(st), free(tok), free(tgt), free(cu), free(lp), free(logits), free(rows);
    return dt;
}

static double run_step(plm_ctx *c, plm_model *m, int n_seg, int len, int score, int *fail) {
    int *lens = malloc(n_seg * sizeof *lens);
    for (int s = 0; s < n_seg; s++) lens[s] = len;
    double dt = bench_run_step(c, m, n_seg, lens, score, fail);
    free(lens);
    return dt;
}

static double best_step(plm_ctx *c, plm_model *m, int n_seg, int len, int score, int reps, int *fail) {
    double best = 1e30;
    for (int r = 0; r < reps && !*fail; r++) {
        double t = run_step(c, m, n_seg, len, score, fail);
        best = t < best ? t : best;
    }
    return best;
}

typedef void (*gdn_fn)(float *, float *const *, const float *, const float *, const float *, const float *,
                       const float *, const int32_t *, int, int, int, int, int, int);

static double time_gdn(gdn_fn f, int T, int H, int D, int nth, int reps) {
    const size_t n = (size_t)T * H * D;
    float *q = malloc(n * 4), *k = malloc(n * 4), *v = malloc(n * 4), *o = malloc(n * 4);
    float *g = malloc((size_t)T * H * 4), *b = malloc((size_t)T * H * 4), *S = calloc((size_t)H * D * D, 4);
    for (size_t i = 0; i < n; i++) q[i] = unif() - 0.5f, k[i] = unif() - 0.5f, v[i] = unif() - 0.5f;
    for (size_t i = 0; i < (size_t)T * H; i++) g[i] = -0.3f * unif(), b[i] = unif();
    plm_l2norm_rows(q, (int64_t)T * H, D, 1.0f / sqrtf((float)D));
    plm_l2norm_rows(k, (int64_t)T * H, D, 1.0f);
    int32_t cu[2] = {0, T};
    float *Sp[1] = {S};
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        memset(S, 0, (size_t)H * D * D * 4);
        double t0 = bench_now();
        f(o, Sp, q, k, v, g, b, cu, 1, H, H, D, D, nth);
        double dt = bench_now() - t0;
        best = dt < best ? dt : best;
    }
    free(q), free(k), free(v), free(o), free(g), free(b), free(S);
    return best;
}

int bench_prefill(bench_ctx *b) {
    const int quick = b->quick, nth = b->n_threads;
    printf("prefill / score (%d threads%s)\n", nth, quick ? ", quick" : "");
    openblas_set_num_threads(nth);

    /* 1. ceiling */
    const int Tg = quick ? 128 : 512, reps = quick ? 2 : 5;
    const int shp[3][2] = {{1024, 6144}, {1024, 3584}, {3584, 1024}};
    double sum_flop = 0, sum_time = 0;
    for (int i = 0; i < 3; i++) {
        double r = sgemm_rate(Tg, shp[i][0], shp[i][1], reps);
        char key[64], label[96];
        snprintf(key, sizeof key, "sgemm_%dx%d_gflops", shp[i][0], shp[i][1]);
        snprintf(label, sizeof label, "sgemm [%d] x [%d -> %d]", Tg, shp[i][0], shp[i][1]);
        bench_report(b, key, label, r, "GFLOP/s");
        double fl = 2.0 * Tg * shp[i][0] * shp[i][1] * 1e-9;
        sum_flop += fl, sum_time += fl / r;
    }
    const double ceiling = sum_flop / sum_time;
    bench_report(b, "sgemm_gflops", "sgemm ceiling (the three shapes together)", ceiling, "GFLOP/s");
    if (b->ceil.fma > 0) bench_report(b, "sgemm_vs_fma_peak", "  sgemm / fp32 FMA peak", ceiling / b->ceil.fma, "x");
    /* the BF16 decision: weights kept BF16 (packlm's matmul) vs an F32 copy (plain sgemm) */
    const int Tb[3] = {quick ? 128 : 512, 32, 1};
    for (int i = 0; i < 3; i++) {
        double r = bf16_vs_f32(Tb[i], 1024, quick ? 2048 : 32768, nth, reps);
        char key[64], label[96];
        snprintf(key, sizeof key, "bf16_vs_f32_T%d", Tb[i]);
        snprintf(label, sizeof label, "BF16 in place / F32 copy, [%d] x [1024 -> %d] (time ratio)", Tb[i],
                 quick ? 2048 : 32768);
        bench_report(b, key, label, r, "x");
    }

    /* 2. packed score throughput */
    plm_error err = {0};
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    if (plm_model_open(&m, b->model_dir, &err)) {
        fprintf(stderr, "packlm bench: %s\n", err.msg);
        return 1;
    }
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = nth;
    plm_ctx_params_weights(&p, b->weights, NULL);
    p.bf16_single_pass = b->single_pass;
    if (plm_ctx_new(&c, m, &p, &err)) {
        fprintf(stderr, "packlm bench: %s\n", err.msg);
        plm_model_free(m);
        return 1;
    }
    const plm_model_info *in = plm_model_get_info(m);
    int fail = 0;
    const int nseq = 4, len = quick ? 64 : 256, T = nseq * len;
    run_step(c, m, 1, 64, 1, &fail); /* warm-up: pages the weights in */
    double ts = best_step(c, m, nseq, len, 1, quick ? 1 : 2, &fail);
    if (fail) goto done;
    const double tok_s = T / ts, gfl = 2.0 * (double)in->n_active_params * T / ts * 1e-9;
    char label[128];
    snprintf(label, sizeof label, "score %d tokens packed as %dx%d: throughput", T, nseq, len);
    bench_report(b, "score_tokens_per_s", label, tok_s, "tokens/s");
    bench_report(b, "score_gflops", "score model GFLOP/s (2 x active params per token)", gfl, "GFLOP/s");
    bench_report(b, "score_vs_sgemm", "score GFLOP/s / sgemm ceiling", gfl / ceiling, "x");
    bench_report_vs_ceiling(b, "score", in, T, 0, 1, tok_s);
    /* prefill: the lm_head only for each segment's last token */
    {
        double tp = best_step(c, m, nseq, len, 0, quick ? 1 : 2, &fail);
        if (fail) goto done;
        const double head = (double)in->vocab_size * in->hidden_size;
        const double fl = 2.0 * ((double)in->n_active_params - head) * T + 2.0 * head * nseq;
        snprintf(label, sizeof label, "prefill %d tokens as %dx%d (last-token logits): throughput", T, nseq, len);
        bench_report(b, "prefill_tokens_per_s", label, T / tp, "tokens/s");
        bench_report(b, "prefill_gflops", "prefill model GFLOP/s", fl / tp * 1e-9, "GFLOP/s");
        bench_report(b, "prefill_vs_sgemm", "prefill GFLOP/s / sgemm ceiling", fl / tp * 1e-9 / ceiling, "x");
        bench_report_vs_ceiling(b, "prefill", in, T, 0, 0, T / tp);
    }
    const double rss = bench_peak_rss(), file = (double)in->file_bytes;
    bench_report(b, "peak_rss_mb", "peak resident memory (after scoring)", rss / 1048576.0, "MiB");
    bench_report(b, "file_mb", "checkpoint file size", file / 1048576.0, "MiB");
    bench_report(b, "rss_vs_file", "peak resident memory / file size", rss / file, "x");

    /* 3. one long segment vs many short ones, same total */
    const int tot = quick ? 256 : 1024;
    const int shapes[3][2] = {{1, tot}, {4, tot / 4}, {tot / 8, 8}};
    double t1 = 0, tlast = 0;
    for (int i = 0; i < 3 && !fail; i++) {
        double t = best_step(c, m, shapes[i][0], shapes[i][1], 1, quick ? 1 : 2, &fail);
        char key[64];
        snprintf(key, sizeof key, "segments_%dx%d_tokens_per_s", shapes[i][0], shapes[i][1]);
        snprintf(label, sizeof label, "%d tokens as %d x %d: throughput", tot, shapes[i][0], shapes[i][1]);
        bench_report(b, key, label, tot / t, "tokens/s");
        if (i == 0) t1 = t;
        tlast = t;
    }
    if (fail) goto done;
    snprintf(label, sizeof label, "time of %dx8 / time of 1x%d (per-segment overhead)", tot / 8, tot);
    bench_report(b, "segments_many_vs_one", label, tlast / t1, "x");

    /* 3b. many short sequences, what scoring a dataset of them costs: 256 x 8 against 8 x 256 tokens
       (one step each at `packlm score`'s default budget of 2048), and the peak resident memory of
       the short ones alone (the high-water mark is reset first, where the kernel allows it) */
    {
        const int ns = quick ? 64 : 256, nl = quick ? 32 : 256; /* ns x 8 vs (ns*8/nl) x nl */
        double tl = best_step(c, m, ns * 8 / nl, nl, 1, 1, &fail);
        FILE *cr = fopen("/proc/self/clear_refs", "w");
        int reset = cr && fputs("5", cr) >= 0;
        if (cr) reset &= fclose(cr) == 0;
        double tsh = fail ? 0 : best_step(c, m, ns, 8, 1, 1, &fail);
        if (fail) goto done;
        const double rs2 = bench_peak_rss();
        snprintf(label, sizeof label, "score %d x 8 tokens: throughput", ns);
        bench_report(b, "short_seqs_tokens_per_s", label, ns * 8 / tsh, "tokens/s");
        snprintf(label, sizeof label, "time of %d x 8 / time of %d x %d (same tokens, one step)", ns, ns * 8 / nl, nl);
        bench_report(b, "short_vs_long_seqs", label, tsh / tl, "x");
        snprintf(label, sizeof label, "peak resident memory scoring %d x 8%s", ns, reset ? "" : " (whole run so far)");
        bench_report(b, "short_seqs_peak_rss_mb", label, rs2 / 1048576.0, "MiB");
        bench_report(b, "short_seqs_rss_vs_file", "  / file size", rs2 / file, "x");
    }

    /* 4. chunked vs recurrent delta rule, one long segment */
    {
        const int Tg2 = quick ? 512 : 4096, H = quick ? 4 : 16, D = 128;
        double tr = time_gdn(plm_gdn_ref, Tg2, H, D, nth, 1);
        double trt = time_gdn(plm_gdn_recurrent, Tg2, H, D, nth, quick ? 1 : 2);
        double tc = time_gdn(plm_gdn_chunked, Tg2, H, D, nth, quick ? 1 : 3);
        snprintf(label, sizeof label, "delta rule T=%d, %d heads, K=V=%d: chunked", Tg2, H, D);
        bench_report(b, "gdn_chunked_tokens_per_s", label, Tg2 / tc, "tokens/s");
        bench_report(b, "gdn_recurrent_ref_tokens_per_s", "  recurrent reference (scalar)", Tg2 / tr, "tokens/s");
        bench_report(b, "gdn_recurrent_fast_tokens_per_s", "  recurrent fast (vectorised, threaded)", Tg2 / trt,
                     "tokens/s");
        bench_report(b, "gdn_chunked_vs_recurrent_ref", "chunked speedup over the recurrent reference", tr / tc, "x");
        bench_report(b, "gdn_chunked_vs_recurrent_fast", "chunked speedup over the fast recurrent", trt / tc, "x");
    }
done:
    plm_ctx_free(c);
    plm_model_free(m);
    return fail;
}
