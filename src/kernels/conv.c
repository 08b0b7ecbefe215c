/* Causal depthwise conv1d (no bias) + SiLU over packed segments, reference. For token t of a
 * segment the window is its own K inputs ending at t, reaching into the segment's tail (the K-1
 * inputs before the segment, zeros for a fresh sequence) and never into another segment. A NULL
 * tail reads as zeros and keeps nothing. */
#include <string.h>

#include "kernels/kernels.h"

void plm_conv_ref(float *y, float *const *tail, const float *x, const float *w, const int32_t *cu, int n_seg,
                  int C, int K, int n_threads) {
    const int P = K - 1;
    for (int s = 0; s < n_seg; s++) {
        const int64_t t0 = cu[s], L = cu[s + 1] - cu[s];
        float *tl = tail[s]; /* [P, C], or NULL: zeros, nothing kept */
        for (int64_t i = 0; i < L; i++) {
            for (int c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int j = 0; j < K; j++) {
                    int64_t src = i - (K - 1) + j; /* index within the segment; < 0 reads the tail */
                    float xv = src >= 0 ? x[(t0 + src) * C + c] : tl ? tl[(P + src) * C + c] : 0.0f;
                    acc += w[c * K + j] * xv;
                }
                y[(t0 + i) * C + c] = plm_silu(acc);
            }
        }
        /* new tail: the last P inputs of (old tail ++ segment) */
        if (P == 0 || !tl) continue;
        if (L >= P) {
            memcpy(tl, x + (t0 + L - P) * C, (size_t)P * C * sizeof(float));
        } else {
            memmove(tl, tl + L * C, (size_t)(P - L) * C * sizeof(float));
            memcpy(tl + (P - L) * C, x + t0 * C, (size_t)L * C * sizeof(float));
        }
    }
}
