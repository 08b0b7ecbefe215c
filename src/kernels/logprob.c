/* Log-probability of a target token under each row of logits: lp = l[target] - max - log(sum exp(l - max)).
 * Reference: scalar, exp in double. Fast: 8-lane max and exp (simd.h), float lane sums folded into a
 * double every 1024 values, rows split over threads (each row summed by one thread in a fixed
 * order: reproducible). Used by scoring, where a 248k vocabulary makes this a visible cost. */
#include <math.h>
#include <omp.h>

#include "kernels/fast.h"
#include "kernels/kernels.h"
#include "kernels/simd.h"

void plm_logprob_ref(float *lp, const float *logits, const int32_t *target, int n, int V, int n_threads) {
    for (int i = 0; i < n; i++) {
        const float *l = logits + (int64_t)i * V;
        float mx = l[0];
        for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += exp((double)(l[v] - mx));
        lp[i] = (float)((double)(l[target[i]] - mx) - log(sum));
    }
}

static float row_logprob(const float *l, int32_t target, int V) {
    int v = 0;
    plm_v8 m8 = plm_v8_set1(-INFINITY);
    for (; v + 8 <= V; v += 8) {
        plm_v8 x = plm_v8_load(l + v);
        m8 = plm_v8_sel(x > m8, x, m8);
    }
    float mx = -INFINITY;
    for (int j = 0; j < 8; j++) mx = m8[j] > mx ? m8[j] : mx;
    for (; v < V; v++) mx = l[v] > mx ? l[v] : mx;
    if (!(mx > -INFINITY)) return mx == mx ? -INFINITY : mx; /* all -inf, or NaN: propagate */
    const plm_v8 mv = plm_v8_set1(mx);
    double sum = 0.0;
    v = 0;
    while (v + 8 <= V) {
        plm_v8 acc = plm_v8_set1(0.0f);
        int end = v + 1024 <= V ? v + 1024 : V - (V - v) % 8;
        for (; v < end; v += 8) acc += plm_v8_exp(plm_v8_load(l + v) - mv);
        for (int j = 0; j < 8; j++) sum += acc[j];
    }
    for (; v < V; v++) sum += plm_expf_fast(l[v] - mx);
    return (float)((double)(l[target] - mx) - log(sum));
}

void plm_logprob_fast(float *lp, const float *logits, const int32_t *target, int n, int V, int n_threads) {
    const int team = plm_team(n_threads, (double)n * V * 4);
#pragma omp parallel for num_threads(team) schedule(static)
    for (int i = 0; i < n; i++) lp[i] = row_logprob(logits + (int64_t)i * V, target[i], V);
}
