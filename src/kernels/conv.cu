/* Causal depthwise conv1d + SiLU over packed segments on the GPU (plm_conv_ref's contract). One
 * thread per (token, channel) reads its K inputs from the segment or the segment's tail, never from
 * another segment; a second launch then replaces each segment's tail by its last K-1 inputs (after
 * every read of the old tails, in stream order). */
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

__global__ void k_conv(float *y, float *const *tail, const float *x, const float *w, const int32_t *cu,
                       const int32_t *seg_of, int64_t T, int C, int K) {
    const int64_t n = T * C;
    const int P = K - 1;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = e / C;
        const int c = (int)(e % C);
        const int s = seg_of[t];
        const int64_t i = t - cu[s];
        const float *tl = tail[s];
        float acc = 0.0f;
        for (int j = 0; j < K; j++) {
            const int64_t src = i - P + j; /* index within the segment; < 0 reads the tail */
            /* choose the address, then load once: no load of x before the segment is ever issued */
            const float *xp = src >= 0 ? x + (t - i + src) * C + c : tl + (P + src) * C + c;
            acc += w[c * K + j] * *xp;
        }
        y[e] = plm_silu_d(acc);
    }
}

/* new tail row r = element L + r of (old tail ++ segment); rows ascending, so the in-place shift only
 * reads rows not yet written */
__global__ void k_conv_tail(float *const *tail, const float *x, const int32_t *cu, int n_seg, int C, int K) {
    const int64_t n = (int64_t)n_seg * C;
    const int P = K - 1;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int s = (int)(e / C), c = (int)(e % C);
        const int64_t t0 = cu[s], L = cu[s + 1] - t0;
        float *tl = tail[s];
        for (int r = 0; r < P; r++) {
            const int64_t q = L + r;
            const float *from = q < P ? tl + q * C + c : x + (t0 + q - P) * C + c;
            tl[r * C + c] = *from;
        }
    }
}

extern "C" void plm_conv_cuda(float *y, float *const *tail, const float *x, const float *w, const int32_t *cu,
                              const int32_t *seg_of, int n_seg, int64_t T, int C, int K, void *stream) {
    if (T <= 0) return;
    k_conv<<<plm_blocks(T * C, 256), 256, 0, PLM_STREAM(stream)>>>(y, tail, x, w, cu, seg_of, T, C, K);
    if (K > 1) k_conv_tail<<<plm_blocks((int64_t)n_seg * C, 256), 256, 0, PLM_STREAM(stream)>>>(tail, x, cu, n_seg, C, K);
}
