/* Decode speed through the generator (continuous batching over packed steps): aggregate tokens/s of
 * decode-only steps with 1, 4 and 16 concurrent sequences and the 16 : 1 ratio (a step streams the
 * weights once, so 16 sequences should cost little more than one; on a GPU 1, 16 and 256 and the
 * 256 : 1 ratio, 63 steps each), then a mixed run: 16 prompts of
 * long-tailed lengths, 32 new tokens each, default budget and cap, wall time. Greedy, end-of-sequence
 * ids ignored so every run produces the same number of tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "packlm.h"

static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}


int bench_gen_run(run_fig *f, plm_ctx *c, const plm_model *m, int n, const int64_t *lens, int32_t max_new,
                  int64_t budget, int32_t cap) {
    plm_error err = {0};
    const int32_t V = plm_model_get_info(m)->vocab_size;
    plm_generator *g = NULL;
    plm_generator_params gp = {budget, cap};
    memset(f, 0, sizeof *f);
    if (plm_generator_new(&g, m, c, &gp, &err)) goto fail;
    for (int i = 0; i < n; i++) {
        int32_t *p = malloc((size_t)lens[i] * sizeof *p);
        if (!p) goto fail;
        for (int64_t j = 0; j < lens[i]; j++) p[j] = (int32_t)(mix((uint64_t)i * 1000003u + (uint64_t)j) % (uint64_t)V);
        plm_request rq = {p, lens[i], max_new, plm_sampling_greedy(), i, 1, 0, 0};
        plm_status st = plm_generator_add(g, NULL, &rq, &err);
        free(p);
        if (st) goto fail;
    }
    double t0 = bench_now();
    while (plm_generator_pending(g) > 0) {
        plm_gen_step_info inf;
        double ts = bench_now();
        if (plm_generator_step(g, &inf, &err)) goto fail;
        double dt = bench_now() - ts;
        if (inf.prompt_tokens) f->prefill_s += dt;
        else {
            f->decode_s += dt;
            f->decode_tokens += inf.new_tokens;
        }
        f->prompt_tokens += inf.prompt_tokens;
        f->new_tokens += inf.new_tokens;
    }
    f->wall = bench_now() - t0;
    plm_generator_free(g);
    return 0;
fail:
    fprintf(stderr, "packlm bench: decode: %s\n", err.msg[0] ? err.msg : "out of memory");
    plm_generator_free(g);
    return 1;
}

int bench_decode(bench_ctx *b) {
    printf("decode\n");
    plm_error err = {0};
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    if (plm_model_open(&m, b->model_dir, &err)) {
        fprintf(stderr, "packlm bench: decode: %s\n", err.msg);
        return 1;
    }
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = b->n_threads;
    p.device = b->device;
    plm_ctx_params_weights(&p, b->weights, NULL);
    p.bf16_single_pass = b->single_pass;
    if (plm_ctx_new(&c, m, &p, &err)) {
        fprintf(stderr, "packlm bench: decode: %s\n", err.msg);
        plm_model_free(m);
        return 1;
    }
    const int gpu = b->device && strcmp(b->device, "cpu");
    /* on a GPU, 64 new tokens a sequence (63 decode steps). A step shape's first run captures its CUDA
       graph and loads the kernels it meets first: about 14 ms more than a step at 256 sequences, 0.2 ms a
       step over 63. Every count gets the same warm-up, a run of two new tokens that captures its decode
       step's graph (timed and reported as its own line; the first count's also pages the weights in), so
       the three rates are steady rates alike (until 2026-11-30 a one-sequence warm-up ran first, so only
       that count had its graph captured before its timed run) */
    const int32_t new_tokens = b->quick ? 6 : gpu ? 64 : 16;
    const int64_t prompt = b->quick ? 8 : 32;
    int rc = 0;
    run_fig f;
    int64_t lens[256];
    for (int i = 0; i < 256; i++) lens[i] = prompt;
    if (!gpu) rc |= bench_gen_run(&f, c, m, 1, lens, 2, 0, 0); /* warm-up: page the weights in, size the scratch */
    const int counts[3] = {1, gpu ? 16 : 4, gpu ? 256 : 16}; /* a GPU batches far more */
    double tps[3] = {0, 0, 0};
    for (int k = 0; k < 3 && !rc; k++) {
        char key[64], label[96];
        if (gpu) {
            rc |= bench_gen_run(&f, c, m, counts[k], lens, 2, 0, 0);
            snprintf(key, sizeof key, "decode_first_step_ms_%d", counts[k]);
            snprintf(label, sizeof label, "decode, %d sequence%s: first step (captures its graph)", counts[k],
                     counts[k] > 1 ? "s" : "");
            if (rc) break;
            bench_report(b, key, label, f.decode_s * 1e3, "ms");
        }
        rc |= bench_gen_run(&f, c, m, counts[k], lens, new_tokens, 0, 0);
        tps[k] = f.decode_s > 0 ? (double)f.decode_tokens / f.decode_s : 0;
        snprintf(key, sizeof key, "decode_tokens_per_s_%d", counts[k]);
        snprintf(label, sizeof label, "decode, %d sequence%s (aggregate, %lld steps of %d)", counts[k],
                 counts[k] > 1 ? "s" : "", (long long)(f.decode_tokens / counts[k]), counts[k]);
        bench_report(b, key, label, tps[k], "tokens/s");
        if (!gpu) bench_report_vs_ceiling(b, key, plm_model_get_info(m), counts[k], 1, 1, tps[k]);
    }
    if (!rc && tps[0] > 0 && !gpu)
        bench_report(b, "decode_ratio_16_vs_1", "decode speed-up, 16 vs 1 sequences (target >= 4)", tps[2] / tps[0], "x");
    if (!rc && tps[0] > 0 && gpu)
        bench_report(b, "decode_ratio_256_vs_1", "decode speed-up, 256 vs 1 sequences (target >= 50)", tps[2] / tps[0],
                     "x");
    /* mixed: long-tailed prompt lengths, 32 new tokens each, the CLI's default budget and cap */
    static const int64_t tail[16] = {3, 5, 7, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64, 96, 200, 500};
    for (int i = 0; i < 16; i++) lens[i] = b->quick ? (tail[i] + 3) / 4 : tail[i];
    const int32_t mixed_new = b->quick ? 8 : 32;
    if (!rc) rc |= bench_gen_run(&f, c, m, 16, lens, mixed_new, 512, 64);
    if (!rc) {
        char label[128];
        snprintf(label, sizeof label, "mixed: 16 prompts (%lld tokens, 3..%lld), %d new each: wall time",
                 (long long)f.prompt_tokens, (long long)lens[15], mixed_new);
        bench_report(b, "mixed_wall_s", label, f.wall, "s");
        bench_report(b, "mixed_tokens_per_s", "mixed: prompt + new tokens per second of wall time",
                     (double)(f.prompt_tokens + f.new_tokens) / f.wall, "tokens/s");
        bench_report(b, "mixed_decode_tokens_per_s", "mixed: decode-only steps", 
                     f.decode_s > 0 ? (double)f.decode_tokens / f.decode_s : 0, "tokens/s");
    }
    plm_ctx_free(c);
    plm_model_free(m);
    return rc;
}
