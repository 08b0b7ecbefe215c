#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "packlm.h"

void bench_report(bench_ctx *b, const char *key, const char *label, double value, const char *unit) {
    if (value != 0 && fabs(value) < 0.01) printf("  %-58s %12.3e %s\n", label, value, unit);
    else printf("  %-58s %12.2f %s\n", label, value, unit);
    fflush(stdout);
    if (b->n_figs < (int)(sizeof b->figs / sizeof b->figs[0])) {
        struct bench_fig *f = &b->figs[b->n_figs++];
        snprintf(f->key, sizeof f->key, "%s", key);
        snprintf(f->unit, sizeof f->unit, "%s", unit);
        f->value = value;
    }
}

int bench_write_json(const bench_ctx *b, const char *path) {
    char buf[16384];
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "{\n");
    for (int i = 0; i < b->n_figs && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "  \"%s\": {\"value\": %.6g, \"unit\": \"%s\"}%s\n",
                              b->figs[i].key, b->figs[i].value, b->figs[i].unit, i + 1 < b->n_figs ? "," : "");
    if (n < sizeof buf) n += (size_t)snprintf(buf + n, sizeof buf - n, "}\n");
    if (n >= sizeof buf) return 1;
    plm_error err = {0};
    if (plm_write_file_atomic(path, buf, n, &err)) {
        fprintf(stderr, "packlm bench: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) sscanf(line + 6, "%lf", &kb);
    fclose(f);
    return kb * 1024.0;
}

/* the contexts' weight mode, as --weights set it */
static plm_ctx_params weights_of(const bench_ctx *b) {
    plm_ctx_params p = plm_ctx_default_params();
    if (b->weights) plm_ctx_params_weights(&p, b->weights, NULL);
    return p;
}

/* bytes of weights one decode step streams: the checkpoint's bytes per parameter (stored), or int8
   blocks of 32 with an fp16 scale (34 bytes per 32 weights), with the lm_head (keep_head) and the
   linear-attention projections (unless ',linear') as stored. The small matrices int8 also keeps
   (in_proj_a / b, the router) count as int8 here: a fraction of a percent of the bytes. */
static double step_bytes(const bench_ctx *b, const plm_model_info *in) {
    const double per = in->n_params > 0 ? (double)in->file_bytes / (double)in->n_params : 2.0;
    const plm_ctx_params p = weights_of(b);
    if (p.weights != PLM_WEIGHTS_INT8) return per * (double)in->n_active_params;
    const double head = (double)in->vocab_size * in->hidden_size, q = 34.0 / 32.0;
    return q * (double)in->n_active_params + (p.int8_keep_head ? (per - q) * head : 0) +
           (p.int8_linear ? 0 : (per - q) * (double)in->n_linear_proj_params);
}

double bench_token_ceiling(const bench_ctx *b, const plm_model_info *in, int n_seq, int decode, int head,
                           const char **what) {
    const int bf16 = in->n_params > 0 && (double)in->file_bytes < 2.5 * (double)in->n_params; /* BF16 / F16 file */
    double peak = b->ceil.fma;
    *what = "fp32 FMA peak";
    if (weights_of(b).weights == PLM_WEIGHTS_INT8) peak = b->ceil.int8, *what = "int8 dot-product peak";
    else if (b->single_pass && bf16) peak = b->ceil.bf16, *what = "BF16 dot-product peak";
    const double per_token = (double)in->n_active_params - (head ? 0 : (double)in->vocab_size * in->hidden_size);
    const double compute = peak > 0 ? peak * 1e9 / (2.0 * per_token) : 0;
    const double memory = decode && b->ceil.stream > 0 ? b->ceil.stream * 1e9 / step_bytes(b, in) * n_seq : 0;
    if (memory > 0 && (compute <= 0 || memory < compute)) {
        *what = "weight streaming";
        return memory;
    }
    return compute;
}

void bench_report_vs_ceiling(bench_ctx *b, const char *key, const plm_model_info *in,
                             int n_seq, int decode, int head, double tokens_per_s) {
    const char *what;
    const double c = bench_token_ceiling(b, in, n_seq, decode, head, &what);
    if (c <= 0 || tokens_per_s <= 0) return;
    char k[64], l[160];
    snprintf(k, sizeof k, "%s_vs_ceiling", key);
    snprintf(l, sizeof l, "  / ceiling (%s: %.1f tokens/s)", what, c);
    bench_report(b, k, l, tokens_per_s / c, "x");
}
