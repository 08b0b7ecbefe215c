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
    int single_pass;        /* plm_ctx_params.bf16_single_pass of the contexts */
    /* the machine's ceilings (bench_ceilings; 0 where not measured): GFLOP/s or GOP/s over all
       threads, 2 per multiply-add, and GB/s */
    struct {
        double fma, fma256, bf16, int8, stream;
        int fma_width;
        const char *int8_isa;
    } ceil;
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
int bench_ceilings(bench_ctx *b);  /* fp32 FMA, BF16 and int8 dot-product peaks; weight streaming GB/s */
int bench_model_prepare(char *dir, size_t dir_len, int quick); /* random-weight 0.8B-shaped BF16 checkpoint */
int bench_prefill(bench_ctx *b);   /* sgemm ceiling, score throughput, segment overhead, delta rule, memory */
int bench_decode(bench_ctx *b);    /* decode tokens/s with 1, 4, 16 sequences; mixed run */
int bench_tokenizer(const char *tokenizer_json, double *mb_per_s); /* encoding MB/s, single thread */
int bench_cuda(bench_ctx *b);      /* --device cuda: ceilings, packed score/prefill, segments, memory */
int bench_cuda_mixers(bench_ctx *b); /* --device cuda: the delta rule, conv1d and the decode GEMV alone */

/* One step of n_seg fresh segments (lens[s] tokens) on c's device: score (log-probabilities) or
 * prefill (last-token logits); seconds, or -1 with *fail set. */
#include "packlm.h"
double bench_run_step(plm_ctx *c, plm_model *m, int n_seg, const int *lens, int score, int *fail);
/* the same with dev_logits (device memory of the context's GPU, [T, vocab]) not NULL: every token's
   logits written there, score ignored */
double bench_run_step_dev(plm_ctx *c, plm_model *m, int n_seg, const int *lens, int score, float *dev_logits,
                          int *fail);

/* The ceilings that bound a step of n_seq decode rows (or n_seq tokens of a prompt), in tokens/s: its
   arithmetic, 2 multiply-adds' worth per active parameter per token (lm_head included when head) at
   the peak of the contexts' kernels (int8: the int8 dot product; single-pass BF16 weights:
   vdpbf16ps; otherwise the fp32 FMA), and, for decode, streaming the weights once per step; the
   lower of the two, 0 where not measured. *what names the one that binds. */
double bench_token_ceiling(const bench_ctx *b, const plm_model_info *in, int n_seq, int decode, int head,
                           const char **what);
/* Prints and records "<key>_vs_ceiling": tokens_per_s / bench_token_ceiling (nothing without one) */
void bench_report_vs_ceiling(bench_ctx *b, const char *key, const plm_model_info *in,
                             int n_seq, int decode, int head, double tokens_per_s);

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
