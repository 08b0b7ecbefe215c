/* Causal depthwise conv1d + SiLU over packed segments on the GPU (plm_conv_ref's contract). k_conv4
 * (K = 4, the models' width) streams float4 rows with the window in registers; k_conv, one thread
 * per (token, channel), takes every other shape and reads its K inputs from the segment or the segment's tail, never from
 * another segment; a second launch then replaces each segment's tail by its last K-1 inputs (after
 * every read of the old tails, in stream order). */
#include <cuda_bf16.h>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

/* inputs are FP32 or BF16 (the single-pass projection's output, widened exactly: plm_f32, plm_ld4);
   tails are FP32 */
/* outputs: FP32, or BF16 (rounded once, as transformers' BF16 conv writes them) */
__device__ __forceinline__ void cst1(float *p, float v) { *p = v; }
__device__ __forceinline__ void cst1(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void cst4(float *p, float4 v) { *reinterpret_cast<float4 *>(p) = v; }
__device__ __forceinline__ void cst4(__nv_bfloat16 *p, float4 v) {
    uint2 u;
    *reinterpret_cast<__nv_bfloat162 *>(&u.x) = __floats2bfloat162_rn(v.x, v.y);
    *reinterpret_cast<__nv_bfloat162 *>(&u.y) = __floats2bfloat162_rn(v.z, v.w);
    *reinterpret_cast<uint2 *>(p) = u;
}
/* four values from any address: one load where aligned */
__device__ __forceinline__ float4 cv4(const float *p) {
    return ((uintptr_t)p & 15) == 0 ? *reinterpret_cast<const float4 *>(p) : make_float4(p[0], p[1], p[2], p[3]);
}
__device__ __forceinline__ float4 cv4(const __nv_bfloat16 *p) {
    if (((uintptr_t)p & 7) == 0) return plm_ld4(p);
    return make_float4(plm_f32(p[0]), plm_f32(p[1]), plm_f32(p[2]), plm_f32(p[3]));
}

template <typename X, typename Y>
__global__ void k_conv(Y *y, float *const *tail, const X *x, const float *w, const int32_t *cu,
                       const int32_t *seg_of, int64_t T, int C, int K) {
    plm_pdl_enter();
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
            /* no load of x before the segment is ever issued */
            acc += w[c * K + j] * (src >= 0 ? plm_f32(x[(t - i + src) * C + c]) : tl[(P + src) * C + c]);
        }
        cst1(y + e, plm_silu_d(acc));
    }
}

/* new tail row r = element L + r of (old tail ++ segment); rows ascending, so the in-place shift only
 * reads rows not yet written */
template <typename X>
__global__ void k_conv_tail(float *const *tail, const X *x, const int32_t *cu, int n_seg, int C, int K) {
    plm_pdl_enter();
    const int64_t n = (int64_t)n_seg * C;
    const int P = K - 1;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int s = (int)(e / C), c = (int)(e % C);
        const int64_t t0 = cu[s], L = cu[s + 1] - t0;
        float *tl = tail[s];
        for (int r = 0; r < P; r++) {
            const int64_t q = L + r;
            tl[r * C + c] = q < P ? tl[q * C + c] : plm_f32(x[(t0 + q - P) * C + c]);
        }
    }
}

/* The common case (K = 4, C a multiple of 4, 16-byte aligned rows): a thread owns 4 channels of a run
 * of CONV_RUN consecutive tokens, reads each input once as a float4 and keeps the last K-1 inputs of
 * its segment in registers (refilled from the segment's tail where a segment starts inside the run). */
#define CONV_RUN 16
template <int K, typename X, typename Y>
__global__ void __launch_bounds__(64) k_conv4(Y *y, float *const *tail, const X *x, const float *w,
                                              const int32_t *cu, const int32_t *seg_of, int64_t T, int C) {
    plm_pdl_enter();
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
                win[P - 1 - m] = src >= 0 ? cv4(x + (t - 1 - m) * C + c) : cv4(tl + (P + src) * C + c);
            }
            s_prev = s;
        }
        const float4 cur = plm_ld4(x + t * C + c);
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int j = 0; j < P; j++) {
            acc.x += wk[j].x * win[j].x, acc.y += wk[j].y * win[j].y;
            acc.z += wk[j].z * win[j].z, acc.w += wk[j].w * win[j].w;
        }
        acc.x += wk[P].x * cur.x, acc.y += wk[P].y * cur.y, acc.z += wk[P].z * cur.z, acc.w += wk[P].w * cur.w;
        cst4(y + t * C + c, make_float4(plm_silu_d(acc.x), plm_silu_d(acc.y), plm_silu_d(acc.z), plm_silu_d(acc.w)));
#pragma unroll
        for (int j = 0; j + 1 < P; j++) win[j] = win[j + 1];
        if (P > 0) win[P - 1] = cur;
    }
}

template <typename X, typename Y>
static void conv_launch(Y *y, float *const *tail, const X *x, const float *w, const int32_t *cu,
                        const int32_t *seg_of, int n_seg, int64_t T, int C, int K, void *stream) {
    if (T <= 0) return;
    /* float4 rows need C % 4 == 0 and 16-byte aligned x and y (a tail that is not aligned is read
     * element by element); grid.y counts runs of tokens */
    if (K == 4 && C % 4 == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)y & 15) == 0 &&
        T <= (int64_t)65535 * CONV_RUN) {
        dim3 grid((unsigned)((C / 4 + 63) / 64), (unsigned)((T + CONV_RUN - 1) / CONV_RUN));
        k_conv4<4, X, Y><<<grid, 64, 0, PLM_STREAM(stream)>>>(y, tail, x, w, cu, seg_of, T, C);
    } else {
        k_conv<X, Y><<<plm_blocks(T * C, 256), 256, 0, PLM_STREAM(stream)>>>(y, tail, x, w, cu, seg_of, T, C, K);
    }
    if (K > 1)
        k_conv_tail<X><<<plm_blocks((int64_t)n_seg * C, 256), 256, 0, PLM_STREAM(stream)>>>(tail, x, cu, n_seg, C, K);
}

extern "C" void plm_conv_cuda(float *y, float *const *tail, const float *x, const float *w, const int32_t *cu,
                              const int32_t *seg_of, int n_seg, int64_t T, int C, int K, void *stream) {
    conv_launch(y, tail, x, w, cu, seg_of, n_seg, T, C, K, stream);
}

extern "C" void plm_conv_bf16_cuda(float *y, float *const *tail, const void *x, const float *w, const int32_t *cu,
                                   const int32_t *seg_of, int n_seg, int64_t T, int C, int K, void *stream) {
    conv_launch(y, tail, (const __nv_bfloat16 *)x, w, cu, seg_of, n_seg, T, C, K, stream);
}

extern "C" void plm_conv_bb_cuda(void *y, float *const *tail, const void *x, const float *w, const int32_t *cu,
                                 const int32_t *seg_of, int n_seg, int64_t T, int C, int K, void *stream) {
    conv_launch((__nv_bfloat16 *)y, tail, (const __nv_bfloat16 *)x, w, cu, seg_of, n_seg, T, C, K, stream);
}
