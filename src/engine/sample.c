/* Choosing the next token from a row of logits: greedy, or temperature / top-k / top-p sampling with
 * one uniform number per token from the sequence's own random stream (see packlm.h).
 *
 * Candidates are ordered by (logit descending, id ascending), a total order, so the kept set and the
 * draw depend only on the logits and u. Top-p never sorts the whole vocabulary: the m best are
 * selected (quickselect), sorted, and m grows (x8) until their mass reaches top_p. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "packlm.h"

plm_sampling plm_sampling_greedy(void) {
    plm_sampling s = {0.0f, 0, 1.0f, 0};
    return s;
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

plm_rng plm_rng_init(uint64_t seed, uint64_t stream) {
    uint64_t a = seed, b = stream ^ 0xD1B54A32D192ED03ull;
    plm_rng r = {splitmix(&a) ^ splitmix(&b)};
    splitmix(&r.s);
    return r;
}

double plm_rng_uniform(plm_rng *r) { return (double)(splitmix(&r->s) >> 11) * (1.0 / 9007199254740992.0); }

/* a before b: higher logit first, then lower id */
static inline int before(const float *l, int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); }

static int32_t argmax(const float *l, int32_t V) { return plm_argmax_row(l, V); }

/* Moves the m best of idx[0..n) (by `before`) to idx[0..m), in any order. */
static void select_top(int32_t *idx, int32_t n, int32_t m, const float *l) {
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const int32_t p = idx[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (before(l, idx[i], p)) i++;
            while (before(l, p, idx[j])) j--;
            if (i <= j) {
                int32_t t = idx[i];
                idx[i++] = idx[j];
                idx[j--] = t;
            }
        }
        if (m - 1 <= j) hi = j;
        else if (m - 1 >= i) lo = i;
        else break;
    }
}

static _Thread_local const float *t_logits; /* qsort has no user pointer */
static int cmp_idx(const void *pa, const void *pb) {
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    return before(t_logits, a, b) ? -1 : before(t_logits, b, a) ? 1 : 0;
}

static void sort_idx(int32_t *idx, int32_t n, const float *l) {
    t_logits = l;
    qsort(idx, (size_t)n, sizeof *idx, cmp_idx);
}

int32_t plm_sample_token(const float *logits, int32_t V, const plm_sampling *sp, double u, float *work) {
    if (!sp || !(sp->temperature > 0.0f) || V <= 1 || sp->top_k == 1) return argmax(logits, V);
    int32_t *idx = (int32_t *)work;
    for (int32_t v = 0; v < V; v++) idx[v] = v;
    int32_t n = V;
    if (sp->top_k > 0 && sp->top_k < V) {
        select_top(idx, V, sp->top_k, logits);
        n = sp->top_k;
    }
    const double inv_t = 1.0 / (double)sp->temperature;
    const double mx = (double)logits[argmax(logits, V)];
    /* total mass of the candidates (at temperature), then the nucleus */
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) total += exp(((double)logits[idx[i]] - mx) * inv_t);
    int32_t keep = n;
    double mass = total;
    const int nucleus = sp->top_p > 0.0f && sp->top_p < 1.0f;
    if (nucleus) {
        const double want = (double)sp->top_p * total;
        int32_t m = n < 64 ? n : 64;
        for (;;) {
            if (m < n) select_top(idx, n, m, logits);
            sort_idx(idx, m, logits);
            double acc = 0.0;
            int32_t k = 0;
            while (k < m && acc < want) acc += exp(((double)logits[idx[k++]] - mx) * inv_t);
            if (acc >= want || m == n) {
                keep = k;
                mass = acc;
                break;
            }
            m = m > n / 8 ? n : m * 8;
        }
    } else if (n < V) {
        sort_idx(idx, n, logits); /* top-k: a fixed order for the draw (else id order) */
    }
    double target = u * mass, acc = 0.0;
    for (int32_t i = 0; i < keep; i++) {
        acc += exp(((double)logits[idx[i]] - mx) * inv_t);
        if (target < acc) return idx[i];
    }
    return idx[keep - 1];
}
