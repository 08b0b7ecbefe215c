/* Causal depthwise conv1d + SiLU over packed segments, threaded over (segment, channel block)
 * and vectorised over channels (weights transposed to [K, block] per work item). The tails are
 * updated after all outputs are written, as in the reference; a NULL tail reads as zeros and keeps
 * nothing. */
#pragma GCC optimize("fp-contract=fast")
#include <string.h>

#include "kernels/fast.h"
#include "kernels/simd.h"

enum { CB = 256 };

void plm_conv_fast(float *y, float *const *tail, const float *x, const float *w, const int32_t *cu, int n_seg,
                   int C, int K, int n_threads) {
    const int P = K - 1, nb = (C + CB - 1) / CB;
    const int64_t n_items = (int64_t)n_seg * nb;
#pragma omp parallel for num_threads(plm_team(n_threads, (double)cu[n_seg] * C * K)) schedule(dynamic)
    for (int64_t it = 0; it < n_items; it++) {
        const int s = (int)(it / nb), c0 = (int)(it % nb) * CB, nc = C - c0 < CB ? C - c0 : CB;
        const int64_t t0 = cu[s], L = cu[s + 1] - cu[s];
        const float *tl = tail[s];
        float wt[K][CB], acc[CB], zeros[CB];
        if (!tl)
            for (int c = 0; c < nc; c++) zeros[c] = 0.0f;
        for (int j = 0; j < K; j++)
            for (int c = 0; c < nc; c++) wt[j][c] = w[(int64_t)(c0 + c) * K + j];
        for (int64_t i = 0; i < L; i++) {
            for (int c = 0; c < nc; c++) acc[c] = 0.0f;
            for (int j = 0; j < K; j++) {
                const int64_t src = i - P + j;
                const float *row = src >= 0 ? x + (t0 + src) * C + c0 : tl ? tl + (P + src) * C + c0 : zeros;
                const float *wj = wt[j];
#pragma omp simd
                for (int c = 0; c < nc; c++) acc[c] += wj[c] * row[c];
            }
            float *yr = y + (t0 + i) * C + c0;
            int c = 0;
            for (; c + 8 <= nc; c += 8) plm_v8_store(yr + c, plm_v8_silu(plm_v8_load(acc + c)));
            for (; c < nc; c++) yr[c] = plm_silu_fast(acc[c]);
        }
    }
    if (P == 0) return;
    for (int s = 0; s < n_seg; s++) {
        const int64_t t0 = cu[s], L = cu[s + 1] - cu[s];
        float *tl = tail[s];
        if (!tl) continue;
        if (L >= P) {
            memcpy(tl, x + (t0 + L - P) * C, (size_t)P * C * sizeof(float));
        } else {
            memmove(tl, tl + L * C, (size_t)(P - L) * C * sizeof(float));
            memcpy(tl + (P - L) * C, x + t0 * C, (size_t)L * C * sizeof(float));
        }
    }
}
