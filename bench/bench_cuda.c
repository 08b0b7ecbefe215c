/* packlm bench --device cuda: the GPU's ceilings measured in the same run (a BF16 GEMM on random
 * data, a device-to-device copy), then the packed model on the 0.8B shape through the public API:
 * score and prefill of 12,680 tokens in 32 long-tailed sequences (the case transformers + FLA is
 * timed on), many short segments against one long one, and the device memory the context holds.
 * Times are what plm_step_run takes, outputs copied back to the host included. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "model/cuda.h"
#include "packlm.h"

static int dev_index(const char *d) { return !strcmp(d, "cuda") ? 0 : atoi(d + 5); }

/* the 32 long-tailed sequences transformers + FLA is timed on (12,680 tokens); quick: a tenth */
static int long_tail(int *lens, int quick) {
    static const int base[16] = {2048, 1500, 900, 600, 400, 300, 200, 150, 100, 64, 40, 20, 10, 5, 2, 1};
    int total = 0;
    for (int i = 0; i < 32; i++) {
        lens[i] = quick ? (base[i % 16] + 9) / 10 : base[i % 16];
        total += lens[i];
    }
    return total;
}

static double best_of(plm_ctx *c, plm_model *m, int n, const int *lens, int score, int reps, int *fail) {
    double best = 1e30;
    for (int r = 0; r < reps && !*fail; r++) {
        double t = bench_run_step(c, m, n, lens, score, fail);
        best = t < best ? t : best;
    }
    return best;
}

/* the token mixers alone, on FLA's shapes, and a decode step's products (packlm bench --only mixers runs
 * just this) */
int bench_cuda_mixers(bench_ctx *b) {
    const int dev = dev_index(b->device);
    plm_error err = {0};
    int fail = 0;
    double tflops = 0, tbps = 0;
    if (plm_cuda_ceilings(dev, 2048, 2048, 2048, 1u << 30, 10, &tflops, &tbps, &err)) {
        fprintf(stderr, "packlm bench: %s\n", err.msg);
        return 1;
    }

    double ms[PLM_CUDA_MIXER_TIMES];
    if (plm_cuda_bench_mixers(dev, ms, &err)) {
        fprintf(stderr, "packlm bench: %s\n", err.msg);
        fail = 1;
    } else {
        const char *keys[PLM_CUDA_MIXER_TIMES] = {
            "cuda_gdn_15seq_ms", "cuda_gdn_1seq_ms", "cuda_gdn_512x64_ms", "cuda_gdn_decode1_ms",
            "cuda_gdn_decode16_ms", "cuda_gdn_decode256_ms", "cuda_conv_15seq_ms", "cuda_gdn_precise_15seq_ms",
            "cuda_gdn_precise_1seq_ms", "cuda_gdn_precise_512x64_ms", "cuda_gdn_simple_15seq_ms",
            "cuda_gdn_simple_1seq_ms", "cuda_gdn_simple_512x64_ms", "cuda_gdn_fused_15seq_ms",
            "cuda_gdn_fused_1seq_ms", "cuda_gdn_fused_512x64_ms", "cuda_gdn_wy_vt32_1seq_ms",
            "cuda_gdn_wy_512x64_ms", "cuda_gdn_prep_before_1seq_ms", "cuda_gdn_vt16_15seq_ms", "cuda_gemv_lm_head_ms",
            "cuda_gemv_6144x1024_ms",
            "cuda_cublas_lm_head_ms", "cuda_cublas_6144x1024_ms", "cuda_skinny_lm_head_t16_ms",
            "cuda_skinny_1024x3584_t16_ms", "cuda_cublas2_lm_head_t16_ms", "cuda_cublas2_1024x3584_t16_ms"};
        const char *labels[PLM_CUDA_MIXER_TIMES] = {
            "delta rule (tensor cores, bf16), 32,768 tokens as 15 sequences, 16 heads, K=V=128",
            "delta rule (tensor cores, bf16), one sequence of 32,768",
            "delta rule (tensor cores, bf16), 512 x 64",
            "delta rule decode step, 1 sequence",
            "delta rule decode step, 16 sequences",
            "delta rule decode step, 256 sequences",
            "conv1d + SiLU, [32,768 x 6,144], width 4, 15 sequences",
            "delta rule (tensor cores, precise), 15 sequences",
            "delta rule (tensor cores, precise), one sequence of 32,768",
            "delta rule (tensor cores, precise), 512 x 64",
            "delta rule (simple kernels), 15 sequences",
            "delta rule (simple kernels), one sequence of 32,768",
            "delta rule (simple kernels), 512 x 64",
            "delta rule (tensor cores, bf16, five-product scan), 15 sequences",
            "delta rule (tensor cores, bf16, five-product scan), one sequence of 32,768",
            "delta rule (tensor cores, bf16, five-product scan), 512 x 64",
            "delta rule (tensor cores, bf16, WY scan, value tiles of 32), one sequence of 32,768",
            "delta rule (tensor cores, bf16, WY scan), 512 x 64",
            "delta rule (tensor cores, bf16, WY scan, chunk prep before the scan), one sequence of 32,768",
            "delta rule (tensor cores, bf16, WY scan, value tiles of 16, prep beside), 15 sequences",
            "GEMV, BF16 weights [248,320 x 1,024] (lm_head), one FP32 row",
            "GEMV, BF16 weights [6,144 x 1,024], one FP32 row",
            "cuBLAS BF16 GEMM, [248,320 x 1,024], one BF16 row",
            "cuBLAS BF16 GEMM, [6,144 x 1,024], one BF16 row",
            "skinny GEMM, BF16 weights [248,320 x 1,024] (lm_head), 16 FP32 rows (split hi + lo)",
            "skinny GEMM, BF16 weights [1,024 x 3,584] (MLP down), 16 FP32 rows (split hi + lo)",
            "BF16 hi + lo conversion and cuBLAS's two passes, [248,320 x 1,024], 16 rows",
            "BF16 hi + lo conversion and cuBLAS's two passes, [1,024 x 3,584], 16 rows"};
        for (int i = 0; i < PLM_CUDA_MIXER_TIMES; i++) bench_report(b, keys[i], labels[i], ms[i], "ms");
        const double bytes = 2.0 * 32768 * 6144 * 4 + 6144 * 4 * 4; /* f32 in + out */
        bench_report(b, "cuda_conv_vs_copy", "conv1d bandwidth / copy ceiling", bytes / (ms[6] * 1e-3) * 1e-12 / tbps,
                     "x");
        /* the products' bandwidth: the bytes each needs at least (the weights once, the input rows as
           given and the outputs) over its time */
        const char *what[PLM_CUDA_GEMV_TIMES] = {
            "GEMV, lm_head", "GEMV, 6,144 x 1,024", "cuBLAS, lm_head", "cuBLAS, 6,144 x 1,024",
            "skinny GEMM, lm_head, 16 rows", "skinny GEMM, 1,024 x 3,584, 16 rows",
            "cuBLAS two passes, lm_head, 16 rows", "cuBLAS two passes, 1,024 x 3,584, 16 rows"};
        for (int i = 0; i < PLM_CUDA_GEMV_TIMES; i++) {
            const int j = PLM_CUDA_MIXER_TIMES - PLM_CUDA_GEMV_TIMES + i, stem = (int)strlen(keys[j]) - 3; /* no _ms */
            const int down = i >= 4 && i % 2; /* rows, cols, input rows and bytes an input value */
            const double rows = down ? 1024 : i % 2 ? 6144 : 248320, cols = down ? 3584 : 1024, T = i < 4 ? 1 : 16,
                         in = i == 2 || i == 3 ? 2 : 4;
            const double gbps = (rows * cols * 2 + T * cols * in + T * rows * 4) / (ms[j] * 1e-3) * 1e-9;
            char key[64], label[96];
            snprintf(key, sizeof key, "%.*s_gbps", stem, keys[j]);
            snprintf(label, sizeof label, "%s: bandwidth", what[i]);
            bench_report(b, key, label, gbps, "GB/s");
            snprintf(key, sizeof key, "%.*s_vs_copy", stem, keys[j]);
            snprintf(label, sizeof label, "%s: bandwidth / copy ceiling", what[i]);
            bench_report(b, key, label, gbps * 1e-3 / tbps, "x");
        }
    }
    return fail;
}

int bench_cuda(bench_ctx *b) {
    const int quick = b->quick, dev = dev_index(b->device);
    printf("cuda: prefill / score on %s%s\n", b->device, quick ? " (quick)" : "");
    plm_error err = {0};
    double tflops = 0, tbps = 0;
    const int G = quick ? 2048 : 8192;
    if (plm_cuda_ceilings(dev, G, G, G, quick ? (64u << 20) : (1u << 30), quick ? 3 : 10, &tflops, &tbps, &err)) {
        fprintf(stderr, "packlm bench: %s\n", err.msg);
        return 1;
    }
    char label[160];
    snprintf(label, sizeof label, "BF16 GEMM %dx%dx%d, random data (ceiling)", G, G, G);
    bench_report(b, "cuda_gemm_tflops", label, tflops, "TFLOP/s");
    bench_report(b, "cuda_copy_tbps", "device-to-device copy, read + written (ceiling)", tbps, "TB/s");

    plm_model *m = NULL;
    plm_ctx *c = NULL;
    if (plm_model_open(&m, b->model_dir, &err)) {
        fprintf(stderr, "packlm bench: %s\n", err.msg);
        return 1;
    }
    plm_ctx_params p = plm_ctx_default_params();
    p.device = b->device;
    if (plm_ctx_new(&c, m, &p, &err)) {
        fprintf(stderr, "packlm bench: %s\n", err.msg);
        plm_model_free(m);
        return 1;
    }
    const plm_model_info *in = plm_model_get_info(m);
    bench_report(b, "cuda_weight_mb", "device memory for the weights", plm_ctx_device_bytes(c) / 1048576.0, "MiB");
    int fail = 0, lens[512];
    const int n = 32, total = long_tail(lens, quick), reps = quick ? 1 : 3;
    const int warm[1] = {64};
    bench_run_step(c, m, 1, warm, 1, &fail);
    double ts = best_of(c, m, n, lens, 1, reps, &fail);
    double tp = best_of(c, m, n, lens, 0, reps, &fail);
    if (!fail) {
        const double fl = 2.0 * (double)in->n_active_params * total;
        snprintf(label, sizeof label, "score %d tokens in %d sequences (%d .. %d), packed: throughput", total, n,
                 lens[15], lens[0]);
        bench_report(b, "cuda_score_tokens_per_s", label, total / ts, "tokens/s");
        bench_report(b, "cuda_score_vs_gemm", "score model FLOP/s / GEMM ceiling", fl / ts * 1e-12 / tflops, "x");
        bench_report(b, "cuda_prefill_tokens_per_s", "prefill (last-token logits), same sequences: throughput",
                     total / tp, "tokens/s");
    }
    { /* the same score with single-pass BF16 GEMM inputs (transformers' BF16 arithmetic) */
        plm_ctx *c1 = NULL;
        plm_ctx_params p1 = p;
        p1.bf16_single_pass = 1;
        if (!fail && plm_ctx_new(&c1, m, &p1, &err) == PLM_OK) {
            bench_run_step(c1, m, 1, warm, 1, &fail);
            const double t = best_of(c1, m, n, lens, 1, reps, &fail);
            if (!fail)
                bench_report(b, "cuda_score_single_pass_tokens_per_s",
                             "score, same sequences, single-pass BF16 GEMM inputs: throughput", total / t, "tokens/s");
            /* every token's logits kept on the device, as transformers' full-logit run (FP32 here: twice
               its BF16 bytes) */
            float *dl = NULL;
            const size_t lb = (size_t)total * in->vocab_size * 4;
            if (!fail && plm_cuda_alloc(dev, (void **)&dl, lb, "the benchmark's logits", &err) == PLM_OK) {
                bench_run_step_dev(c1, m, n, lens, 0, dl, &fail); /* sizes the step's scratch */
                double tl = 1e30;
                for (int r = 0; r < reps && !fail; r++) {
                    const double t2 = bench_run_step_dev(c1, m, n, lens, 0, dl, &fail);
                    tl = t2 < tl ? t2 : tl;
                }
                if (!fail) {
                    snprintf(label, sizeof label,
                             "forward, same, every token's logits (FP32, %.1f GB) in device memory, single pass: "
                             "throughput", lb / 1e9);
                    bench_report(b, "cuda_logits_single_pass_tokens_per_s", label, total / tl, "tokens/s");
                }
                plm_cuda_free(dev, dl);
            } else if (!fail) {
                fprintf(stderr, "packlm bench: no room for the full-logit case: %s\n", err.msg);
            }
            plm_ctx_free(c1);
        }
    }
    /* many short segments against one long one, same total */
    const int tot = quick ? 4096 : 32768, nshort = tot / 64;
    int *one = malloc(sizeof *one), *many = malloc(nshort * sizeof *many);
    one[0] = tot;
    for (int i = 0; i < nshort; i++) many[i] = 64;
    double t1 = fail ? 0 : best_of(c, m, 1, one, 1, 1, &fail); /* one long: attention is quadratic here */
    double tm = fail ? 0 : best_of(c, m, nshort, many, 1, reps, &fail);
    if (!fail) {
        snprintf(label, sizeof label, "score 1 x %d: throughput", tot);
        bench_report(b, "cuda_score_one_long_tokens_per_s", label, tot / t1, "tokens/s");
        snprintf(label, sizeof label, "score %d x 64: throughput", nshort);
        bench_report(b, "cuda_score_many_short_tokens_per_s", label, tot / tm, "tokens/s");
        bench_report(b, "cuda_many_vs_one", "time of many short / time of one long (target <= 1.1)", tm / t1, "x");
    }
    bench_report(b, "cuda_device_mb", "device memory the context holds (weights + largest step's scratch)",
                 plm_ctx_device_bytes(c) / 1048576.0, "MiB");
    free(one), free(many);
    plm_ctx_free(c);
    plm_model_free(m);
    /* the token mixers after the context is gone, as --only mixers runs them: with the context still
       held, the 15-sequence delta rule read 1.43-1.50 ms against 1.25 alone (same build, same call) */
    if (!quick && !fail && bench_cuda_mixers(b)) fail = 1;
    return fail;
}
