/* packlm bench: sections that each measure one thing and report figures through bench_report,
 * which prints a readable line and records the figure for --json. */
#ifndef PLM_BENCH_H
#define PLM_BENCH_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *model_dir;  /* the benchmark checkpoint (built by bench_model_prepare) */
    const char *device;     /* "cpu" or "cuda[:N]" */
    int n_threads;
    int quick;              /* smaller sizes: a smoke run for the test suite */
    const char *weights;    /* the contexts' weights (plm_ctx_params_weights) */
    /* recorded figures */
    struct bench_fig { char key[64]; double value; char unit[24]; } figs[128];
    int n_figs;
} bench_ctx;

/* Prints "  <label>: <value> <unit>" and records key = value for the JSON output. */
void bench_report(bench_ctx *b, const char *key, const char *label, double value, const char *unit);
/* Writes all recorded figures as one JSON object; returns 0 on success. */
int bench_write_json(const bench_ctx *b, const char *path);
double bench_now(void);
/* Peak resident set size of this process, bytes (VmHWM). */
double bench_peak_rss(void);

/* Sections. Each returns 0 on success and prints its own heading. */
int bench_model_prepare(char *dir, size_t dir_len, int quick); /* random-weight 0.8B-shaped BF16 checkpoint */
int bench_prefill(bench_ctx *b);   /* sgemm ceiling, score throughput, segment overhead, delta rule, memory */
int bench_decode(bench_ctx *b);    /* decode tokens/s with 1, 4, 16 sequences; mixed run */
int bench_tokenizer(const char *tokenizer_json, double *mb_per_s); /* encoding MB/s, single thread */
int bench_cuda(bench_ctx *b);      /* --device cuda: ceilings, packed score/prefill, segments, memory */
int bench_cuda_mixers(bench_ctx *b); /* --device cuda: the delta rule and conv1d alone, on FLA's shapes */

/* One step of n_seg fresh segments (lens[s] tokens) on c's device: score (log-probabilities) or
 * prefill (last-token logits); seconds, or -1 with *fail set. */
#include "packlm.h"
double bench_run_step(plm_ctx *c, plm_model *m, int n_seg, const int *lens, int score, int *fail);

/* n prompts of lens[i] pseudo-random ids through the generator (greedy, max_new each); the figures */
typedef struct {
    double wall, decode_s, prefill_s;
    int64_t decode_tokens, new_tokens, prompt_tokens;
} run_fig;
int bench_gen_run(run_fig *f, plm_ctx *c, const plm_model *m, int n, const int64_t *lens, int32_t max_new,
                  int64_t budget, int32_t cap);
/* the cases llama.cpp's tools time (llama-bench -p 512 -n 32, llama-batched-bench -npp 32 -ntg 32
   -npl 1,16): prompt of 512 tokens with last-token logits, decode of 1 and of 16 sequences; rounds
   of each, the best and the spread reported */
int bench_peer(bench_ctx *b, int rounds);
/* int8 accuracy on text: each int8 mode against the stored weights, per-token KL (mean, 99th
   percentile), top-1 agreement, perplexity change */
int bench_accuracy(bench_ctx *b);

#endif
