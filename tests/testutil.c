#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tu_failures = 0, tu_checks = 0;

int tu_check(int cond, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    tu_checks++;
    if (!cond) tu_failures++;
    printf("%s ", cond ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    return cond;
}

double tu_max_abs_diff(const float *x, const float *ref, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(ref[i])) return INFINITY;
        double d = fabs((double)x[i] - (double)ref[i]);
        if (d > m) m = d;
    }
    return m;
}

double tu_max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return INFINITY;
        if (fabs(x[i]) > m) m = fabs(x[i]);
    }
    return m;
}

double tu_rel_err(const float *x, const float *ref, size_t n) {
    double d = tu_max_abs_diff(x, ref, n), s = tu_max_abs(ref, n);
    if (!isfinite(d) || !isfinite(s)) return INFINITY;
    return s > 0 ? d / s : d;
}

int tu_within(const float *x, const float *ref, size_t n, double rel, double *err_out) {
    double d = tu_max_abs_diff(x, ref, n), s = tu_max_abs(ref, n);
    int ok = isfinite(d) && isfinite(s) && d <= rel * s;
    if (err_out) *err_out = !isfinite(d) || !isfinite(s) ? INFINITY : s > 0 ? d / s : d;
    return ok;
}

int tu_close(const float *x, const float *ref, size_t n, double rel, const char *what) {
    double d = tu_max_abs_diff(x, ref, n), s = tu_max_abs(ref, n);
    return tu_check(tu_within(x, ref, n, rel, NULL), "%s: max|diff| %.3e, %.2e of max|ref| %.3f (bound %.0e)", what,
                    d, s > 0 ? d / s : d, s, rel);
}

void tu_worst(double *worst, double e) {
    if (isnan(e)) e = INFINITY;
    if (!(e <= *worst)) *worst = e;
}

void tu_poison(float *x, size_t n) {
    const uint32_t bits = 0x7fc0bad0u;
    for (size_t i = 0; i < n; i++) memcpy(x + i, &bits, sizeof bits);
}

int tu_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

int tu_read_token_lines(const char *path, int32_t ***seqs, int64_t **lens) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, cap = 16;
    *seqs = malloc(cap * sizeof **seqs);
    *lens = malloc(cap * sizeof **lens);
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        if (n == cap) {
            cap *= 2;
            *seqs = realloc(*seqs, cap * sizeof **seqs);
            *lens = realloc(*lens, cap * sizeof **lens);
        }
        int32_t *ids = malloc(strlen(line) * sizeof *ids + 4);
        int64_t k = 0;
        char *p = line, *end;
        for (;;) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            ids[k++] = (int32_t)v;
            p = end;
        }
        if (!k) { free(ids); continue; }
        (*seqs)[n] = ids;
        (*lens)[n] = k;
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

void tu_free_seqs(int32_t **seqs, int n) {
    for (int i = 0; i < n; i++) free(seqs[i]);
    free(seqs);
}

uint64_t tu_next(tu_rng *r) {
    uint64_t x = r->s ? r->s : 0x9E3779B97F4A7C15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->s = x;
}
float tu_uniform(tu_rng *r) { return (float)((tu_next(r) >> 40) * (1.0 / 16777216.0)); }
float tu_normal(tu_rng *r) {
    float u1 = tu_uniform(r) + 1e-7f, u2 = tu_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}
int tu_randint(tu_rng *r, int lo, int hi) { return lo + (int)(tu_next(r) % (uint64_t)(hi - lo + 1)); }
