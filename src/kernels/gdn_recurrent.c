/* Gated delta rule, recurrent form, vectorised and threaded over (segment, value head) pairs.
 * Per token: kv = exp(g) S^T k; S = exp(g) S + k (beta (v - kv))^T; o = S^T q. Two passes over
 * S [dk, dv] per token (the decay is folded into the first). Cheaper than the chunked form for
 * very short segments (decode). A segment without a state (S[s] NULL) starts from zeros in
 * per-thread scratch and keeps nothing (see gdn_chunk.c). */
#pragma GCC optimize("fp-contract=fast")
#include <math.h>
#include <stdlib.h>

#include "kernels/fast.h"

void plm_gdn_pair_recurrent(float *o, float *S, const float *q, const float *k, const float *v, const float *g,
                            const float *beta, int64_t t0, int64_t t1, int kh, int h, int nk, int nv, int dk,
                            int dv, int fresh) {
    float kvm[dv], ot[dv];
    if (fresh && t0 < t1) { /* S = 0 before the first token: S = k (beta v)^T, o = S^T q, nothing read;
                               the same numbers as the general form below on a zeroed S */
        const float *qt = q + (t0 * nk + kh) * dk, *kt = k + (t0 * nk + kh) * dk;
        const float *vt = v + (t0 * nv + h) * dv;
        const float b = beta[t0 * nv + h];
#pragma omp simd
        for (int j = 0; j < dv; j++) kvm[j] = vt[j] * b;
        for (int j = 0; j < dv; j++) ot[j] = 0.0f;
        for (int i = 0; i < dk; i++) {
            const float ki = kt[i], qi = qt[i];
            float *Si = S + (size_t)i * dv;
#pragma omp simd
            for (int j = 0; j < dv; j++) {
                float s = ki * kvm[j];
                Si[j] = s;
                ot[j] += s * qi;
            }
        }
        float *op = o + (t0 * nv + h) * dv;
        for (int j = 0; j < dv; j++) op[j] = ot[j];
        t0++;
    }
    for (int64_t t = t0; t < t1; t++) {
        const float *qt = q + (t * nk + kh) * dk, *kt = k + (t * nk + kh) * dk;
        const float *vt = v + (t * nv + h) * dv;
        const float decay = expf(g[t * nv + h]), b = beta[t * nv + h];
        for (int j = 0; j < dv; j++) kvm[j] = 0.0f;
        for (int i = 0; i < dk; i++) {
            const float ki = kt[i];
            const float *Si = S + (size_t)i * dv;
#pragma omp simd
            for (int j = 0; j < dv; j++) kvm[j] += Si[j] * ki;
        }
#pragma omp simd
        for (int j = 0; j < dv; j++) kvm[j] = (vt[j] - decay * kvm[j]) * b;
        for (int j = 0; j < dv; j++) ot[j] = 0.0f;
        for (int i = 0; i < dk; i++) {
            const float ki = kt[i], qi = qt[i];
            float *Si = S + (size_t)i * dv;
#pragma omp simd
            for (int j = 0; j < dv; j++) {
                float s = decay * Si[j] + ki * kvm[j];
                Si[j] = s;
                ot[j] += s * qi;
            }
        }
        float *op = o + (t * nv + h) * dv;
        for (int j = 0; j < dv; j++) op[j] = ot[j];
    }
}

void plm_gdn_recurrent(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                       const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv,
                       int n_threads) {
    const int rep = nv / nk;
    const int64_t n_pairs = (int64_t)n_seg * nv;
#pragma omp parallel num_threads(plm_team(n_threads, (double)cu[n_seg] * nv * dk * dv * 4))
    {
        float *scratch = NULL;
#pragma omp for schedule(dynamic)
        for (int64_t p = 0; p < n_pairs; p++) {
            const int s = (int)(p / nv), h = (int)(p % nv);
            if (S[s])
                plm_gdn_pair_recurrent(o, S[s] + (size_t)h * dk * dv, q, k, v, g, beta, cu[s], cu[s + 1], h / rep, h,
                                       nk, nv, dk, dv, 0);
            else
                plm_gdn_pair_scratch(o, &scratch, q, k, v, g, beta, cu[s], cu[s + 1], h / rep, h, nk, nv, dk, dv);
        }
        free(scratch);
    }
}

/* the pair without a state: one fresh delta-rule state of this thread (*scratch, allocated on first
   use and freed by the caller; on the stack if that fails), nothing kept */
static void pair_on_stack(float *o, const float *q, const float *k, const float *v, const float *g,
                          const float *beta, int64_t t0, int64_t t1, int kh, int h, int nk, int nv, int dk, int dv) {
    float S[(size_t)dk * dv];
    plm_gdn_pair_recurrent(o, S, q, k, v, g, beta, t0, t1, kh, h, nk, nv, dk, dv, 1);
}

void plm_gdn_pair_scratch(float *o, float **scratch, const float *q, const float *k, const float *v, const float *g,
                          const float *beta, int64_t t0, int64_t t1, int kh, int h, int nk, int nv, int dk, int dv) {
    if (!*scratch) *scratch = malloc((size_t)dk * dv * sizeof(float));
    if (*scratch) plm_gdn_pair_recurrent(o, *scratch, q, k, v, g, beta, t0, t1, kh, h, nk, nv, dk, dv, 1);
    else pair_on_stack(o, q, k, v, g, beta, t0, t1, kh, h, nk, nv, dk, dv);
}
