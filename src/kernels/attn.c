/* Causal attention within each segment, reference: query i of segment s sees the segment's cached
 * keys 0 .. start[s] + i (its own new keys already appended to the cache). GQA: query head h reads
 * kv head h / (nh / nkv). Softmax in float32 with the maximum subtracted, as transformers' eager path. */
#include <math.h>

#include "kernels/kernels.h"

static inline const float *kv_row(float *const *blocks, int64_t j, int nkv, int hd, int kvh) {
    return blocks[j / PLM_KV_BLOCK] + ((j % PLM_KV_BLOCK) * nkv + kvh) * hd;
}

static inline float dot(const float *a, const float *b, int n) {
    float d = 0.0f;
    for (int e = 0; e < n; e++) d += a[e] * b[e];
    return d;
}

void plm_attn_ref(float *o, const float *q, const plm_kv *const *kv, const int64_t *start, const int32_t *cu,
                  int n_seg, int nh, int nkv, int hd, float scale, int n_threads) {
    const int rep = nh / nkv;
    for (int s = 0; s < n_seg; s++) {
        for (int64_t t = cu[s]; t < cu[s + 1]; t++) {
            const int64_t n_keys = start[s] + (t - cu[s]) + 1;
            for (int h = 0; h < nh; h++) {
                const float *qh = q + (t * nh + h) * hd;
                const int kvh = h / rep;
                float mx = -INFINITY; /* pass 1: the maximum score */
                for (int64_t j = 0; j < n_keys; j++) {
                    float d = dot(qh, kv_row(kv[s]->k, j, nkv, hd, kvh), hd) * scale;
                    mx = d > mx ? d : mx;
                }
                float *oh = o + (t * nh + h) * hd, sum = 0.0f;
                for (int e = 0; e < hd; e++) oh[e] = 0.0f;
                for (int64_t j = 0; j < n_keys; j++) { /* pass 2: weights and values */
                    float p = expf(dot(qh, kv_row(kv[s]->k, j, nkv, hd, kvh), hd) * scale - mx);
                    const float *vj = kv_row(kv[s]->v, j, nkv, hd, kvh);
                    sum += p;
                    for (int e = 0; e < hd; e++) oh[e] += p * vj[e];
                }
                for (int e = 0; e < hd; e++) oh[e] /= sum;
            }
        }
    }
}
