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

#endif
