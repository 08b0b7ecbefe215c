/* The three cases packlm is compared on with llama.cpp (bench/llamacpp/): a prompt of 512 tokens
 * with the last token's logits (llama-bench -p 512), decode of one sequence (llama-bench -n 32) and
 * of 16 sequences together (llama-batched-bench -npp 32 -ntg 32 -npl 16, aggregate), each timed in
 * `rounds` rounds; the best round and the spread (slowest / best - 1) are reported. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "packlm.h"

int bench_peer(bench_ctx *b, int rounds) {
    printf("peer cases (%s weights, %d rounds)\n", b->weights, rounds);
    plm_error err = {0};
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    if (plm_model_open(&m, b->model_dir, &err)) {
        fprintf(stderr, "packlm bench: peer: %s\n", err.msg);
        return 1;
    }
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = b->n_threads;
    plm_ctx_params_weights(&p, b->weights, NULL);
    p.bf16_single_pass = b->single_pass;
    double t0 = bench_now();
    if (plm_ctx_new(&c, m, &p, &err)) {
        fprintf(stderr, "packlm bench: peer: %s\n", err.msg);
        plm_model_free(m);
        return 1;
    }
    bench_report(b, "peer_ctx_start_s", "context start (int8: quantizing the weights)", bench_now() - t0, "s");
    const int plen = b->quick ? 64 : 512, gen = b->quick ? 4 : 32;
    int64_t lens[16];
    for (int i = 0; i < 16; i++) lens[i] = 32;
    int fail = 0, rc = 0;
    run_fig f;
    rc |= bench_gen_run(&f, c, m, 1, lens, 2, 0, 0); /* warm-up */
    double best[3] = {0, 0, 0}, worst[3] = {1e30, 1e30, 1e30};
    for (int r = 0; r < rounds && !rc && !fail; r++) {
        double v[3];
        double dt = bench_run_step(c, m, 1, &plen, 0, &fail);
        v[0] = dt > 0 ? plen / dt : 0;
        rc |= bench_gen_run(&f, c, m, 1, lens, gen, 0, 0);
        v[1] = f.decode_s > 0 ? (double)f.decode_tokens / f.decode_s : 0;
        rc |= bench_gen_run(&f, c, m, 16, lens, gen, 0, 0);
        v[2] = f.decode_s > 0 ? (double)f.decode_tokens / f.decode_s : 0;
        printf("  round %d: prompt %d %.1f tokens/s, decode 1 %.2f, decode 16 %.2f tokens/s\n", r + 1, plen, v[0],
               v[1], v[2]);
        for (int k = 0; k < 3; k++) {
            best[k] = v[k] > best[k] ? v[k] : best[k];
            worst[k] = v[k] < worst[k] ? v[k] : worst[k];
        }
    }
    if (!rc && !fail) {
        static const char *keys[3] = {"peer_prompt512", "peer_decode1", "peer_decode16"};
        static const char *labels[3] = {"prompt, last-token logits", "decode, 1 sequence",
                                        "decode, 16 sequences aggregate"};
        for (int k = 0; k < 3; k++) {
            char key[64], label[128];
            snprintf(key, sizeof key, "%s_tokens_per_s", keys[k]);
            snprintf(label, sizeof label, "%s: best of %d", labels[k], rounds);
            bench_report(b, key, label, best[k], "tokens/s");
            static const int nseq[3] = {512, 1, 16};
            bench_report_vs_ceiling(b, key, plm_model_get_info(m), nseq[k], k > 0, k > 0, best[k]);
            snprintf(key, sizeof key, "%s_spread", keys[k]);
            snprintf(label, sizeof label, "%s: spread (best / slowest - 1)", labels[k]);
            bench_report(b, key, label, worst[k] > 0 ? best[k] / worst[k] - 1 : 0, "x");
        }
        bench_report(b, "peer_peak_rss_mb", "peak resident memory", bench_peak_rss() / 1048576.0, "MiB");
    }
    plm_ctx_free(c);
    plm_model_free(m);
    return rc || fail;
}
