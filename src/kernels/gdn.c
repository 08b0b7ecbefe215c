/* Gated delta rule, recurrent reference: per segment, per value head, per token
 *   S = exp(g) S;  S += k (beta (v - S^T k))^T;  o = S^T q
 * with S [dk, dv]. The segment starts from S[s] and leaves its final state there; a segment with
 * S[s] NULL starts from zeros and keeps nothing. */
#include <math.h>

#include "kernels/kernels.h"

static void gdn_head_ref(float *o, float *S, const float *q, const float *k, const float *v, const float *g,
                         const float *beta, int64_t t0, int64_t t1, int kh, int h, int nk, int nv, int dk, int dv) {
    float kv_mem[dv];
    for (int64_t t = t0; t < t1; t++) {
        const float *qt = q + (t * nk + kh) * dk, *kt = k + (t * nk + kh) * dk;
        const float *vt = v + (t * nv + h) * dv;
        const float decay = expf(g[t * nv + h]), b = beta[t * nv + h];
        for (int i = 0; i < dk * dv; i++) S[i] *= decay;
        for (int j = 0; j < dv; j++) kv_mem[j] = 0.0f;
        for (int i = 0; i < dk; i++)
            for (int j = 0; j < dv; j++) kv_mem[j] += S[i * dv + j] * kt[i];
        for (int j = 0; j < dv; j++) kv_mem[j] = (vt[j] - kv_mem[j]) * b;
        for (int i = 0; i < dk; i++)
            for (int j = 0; j < dv; j++) S[i * dv + j] += kt[i] * kv_mem[j];
        float *ot = o + (t * nv + h) * dv;
        for (int j = 0; j < dv; j++) ot[j] = 0.0f;
        for (int i = 0; i < dk; i++)
            for (int j = 0; j < dv; j++) ot[j] += S[i * dv + j] * qt[i];
    }
}

void plm_gdn_ref(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                 const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv, int n_threads) {
    const int rep = nv / nk;
    for (int s = 0; s < n_seg; s++)
        for (int h = 0; h < nv; h++) {
            if (S[s]) {
                gdn_head_ref(o, S[s] + (size_t)h * dk * dv, q, k, v, g, beta, cu[s], cu[s + 1], h / rep, h, nk, nv,
                             dk, dv);
                continue;
            }
            float Sz[(size_t)dk * dv]; /* no state: zeros, discarded */
            for (size_t i = 0; i < (size_t)dk * dv; i++) Sz[i] = 0.0f;
            gdn_head_ref(o, Sz, q, k, v, g, beta, cu[s], cu[s + 1], h / rep, h, nk, nv, dk, dv);
        }
}
