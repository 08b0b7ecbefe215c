/* Causal depthwise conv1d + SiLU over packed segments on the GPU (plm_conv_ref's contract). k_conv4
 * (K = 4, the models' width) streams float4 rows with the window in registers; k_conv, one thread
 * per (token, channel), takes every other shape and reads its K inputs from the segment or the segment's tail, never from
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

/* The common case (K = 4, C a multiple of 4, 16-byte aligned rows): a thread owns 4 channels of a run
 * of CONV_RUN consecutive tokens, reads each input once as a float4 and keeps the last K-1 inputs of
 * its segment in registers (refilled from the segment's tail where a segment starts inside the run). */
#define CONV_RUN 16
template <int K>
__global__ void __launch_bounds__(64) k_conv4(float *y, float *const *tail, const float *x, const float *w,
                                              const int32_t *cu, const int32_t *seg_of, int64_t T, int C) {
    constexpr int P = K - 1;
    const int cg = blockIdx.x * 64 + threadIdx.x, c = 4 * cg;
    if (c >= C) return;
    const int64_t t0 = (int64_t)blockIdx.y * CONV_RUN, t1 = t0 + CONV_RUN < T ? t0 + CONV_RUN : T;
    float4 wk[K]; /* wk[j]: tap j of the four channels */
#pragma unroll
    for (int j = 0; j < K; j++)
        wk[j] = make_float4(w[(c + 0) * K + j], w[(c + 1) * K + j], w[(c + 2) * K + j], w[(c + 3) * K + j]);
    float4 win[P]; /* win[P - 1 - m]: the input m + 1 tokens back, within the segment or its tail */
    int s_prev = -1;
    for (int64_t t = t0; t < t1; t++) {
        const int s = seg_of[t];
        if (s != s_prev) { /* the run's first token, or a segment starts here: fill from x and the tail */
            const int64_t i = t - cu[s];
            const float *tl = tail[s];
#pragma unroll
            for (int m = 0; m < P; m++) {
                const int64_t src = i - 1 - m;
                const float *xp = src >= 0 ? x + (t - 1 - m) * C + c : tl + (P + src) * C + c;
                win[P - 1 - m] = ((uintptr_t)xp & 15) == 0 ? *reinterpret_cast<const float4 *>(xp)
                                                           : make_float4(xp[0], xp[1], xp[2], xp[3]);
            }
            s_prev = s;
        }
        const float4 cur = *reinterpret_cast<const float4 *>(x + t * C + c);
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int j = 0; j < P; j++) {
            acc.x += wk[j].x * win[j].x, acc.y += wk[j].y * win[j].y;
            acc.z += wk[j].z * win[j].z, acc.w += wk[j].w * win[j].w;
        }
        acc.x += wk[P].x * cur.x, acc.y += wk[P].y * cur.y, acc.z += wk[P].z * cur.z, acc.w += wk[P].w * cur.w;
        *reinterpret_cast<float4 *>(y + t * C + c) =
            make_float4(plm_silu_d(acc.x), plm_silu_d(acc.y), plm_silu_d(acc.z), plm_silu_d(acc.w));
#pragma unroll
        for (int j = 0; j + 1 < P; j++) win[j] = win[j + 1];
        if (P > 0) win[P - 1] = cur;
    }
}

extern "C" void plm_conv_cuda(float *y, float *const *tail, const float *x, const float *w, const int32_t *cu,
                              const int32_t *seg_of, int n_seg, int64_t T, int C, int K, void *stream) {
    if (T <= 0) return;
    /* float4 rows need C % 4 == 0 and 16-byte aligned x and y (a tail that is not aligned is read
     * element by element); grid.y counts runs of tokens */
    if (K == 4 && C % 4 == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)y & 15) == 0 &&
        T <= (int64_t)65535 * CONV_RUN) {
        dim3 grid((unsigned)((C / 4 + 63) / 64), (unsigned)((T + CONV_RUN - 1) / CONV_RUN));
        k_conv4<4><<<grid, 64, 0, PLM_STREAM(stream)>>>(y, tail, x, w, cu, seg_of, T, C);
    } else {
        k_conv<<<plm_blocks(T * C, 256), 256, 0, PLM_STREAM(stream)>>>(y, tail, x, w, cu, seg_of, T, C, K);
    }
    if (K > 1) k_conv_tail<<<plm_blocks((int64_t)n_seg * C, 256), 256, 0, PLM_STREAM(stream)>>>(tail, x, cu, n_seg, C, K);
}
