/* Causal attention within each segment on the GPU (plm_attn_ref's contract) over the blocked KV
 * cache: one warp per (token, query head) streams the keys 0 .. start[s] + i of its segment with an
 * online softmax (running maximum and sum), each lane holding hd/32 dims of the query and of the
 * output. GQA: query head h reads kv head h / (nh / nkv). */
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"
#include "kernels/kernels.h"

#define PER_LANE (PLM_CUDA_MAX_HD / 32)

__global__ void k_kv_append(float *const *kb, float *const *vb, const int32_t *boff, const float *k, const float *v,
                            const int64_t *start, const int32_t *cu, const int32_t *seg_of, int64_t T, int row) {
    const int64_t n = T * row;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = e / row;
        const int c = (int)(e % row), s = seg_of[t];
        const int64_t j = start[s] + (t - cu[s]);
        const int64_t b = boff[s] + j / PLM_KV_BLOCK, at = (j % PLM_KV_BLOCK) * row + c;
        kb[b][at] = k[e];
        vb[b][at] = v[e];
    }
}

extern "C" void plm_kv_append_cuda(float *const *kb, float *const *vb, const int32_t *boff, const float *k,
                                   const float *v, const int64_t *start, const int32_t *cu, const int32_t *seg_of,
                                   int64_t T, int nkv, int hd, void *stream) {
    const int row = nkv * hd;
    if (T > 0) k_kv_append<<<plm_blocks(T * row, 256), 256, 0, PLM_STREAM(stream)>>>(kb, vb, boff, k, v, start, cu, seg_of, T, row);
}

__global__ void k_attn(float *o, const float *q, float *const *kb, float *const *vb, const int32_t *boff,
                       const int64_t *start, const int32_t *cu, const int32_t *seg_of, int64_t T, int nh, int nkv,
                       int hd, float scale) {
    const int lane = threadIdx.x & 31;
    const int64_t n_warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t wid = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; wid < T * nh; wid += n_warps) {
    const int64_t t = wid / nh;
    const int h = (int)(wid % nh), s = seg_of[t], kvh = h / (nh / nkv);
    const int64_t n_keys = start[s] + (t - cu[s]) + 1;
    float qr[PER_LANE], acc[PER_LANE];
#pragma unroll
    for (int e = 0; e < PER_LANE; e++) {
        const int d = lane + 32 * e;
        qr[e] = 0.0f;
        acc[e] = 0.0f;
        if (d < hd) qr[e] = q[wid * hd + d];
    }
    float m = -INFINITY, l = 0.0f;
    float *const *kbs = kb + boff[s], *const *vbs = vb + boff[s];
    for (int64_t j = 0; j < n_keys; j++) {
        const int64_t off = ((j % PLM_KV_BLOCK) * nkv + kvh) * hd;
        const float *kr = kbs[j / PLM_KV_BLOCK] + off, *vr = vbs[j / PLM_KV_BLOCK] + off;
        float d = 0.0f;
#pragma unroll
        for (int e = 0; e < PER_LANE; e++)
            if (lane + 32 * e < hd) d += qr[e] * kr[lane + 32 * e];
        d = plm_warp_sum(d) * scale;
        const float mn = fmaxf(m, d), corr = expf(m - mn), p = expf(d - mn);
        l = l * corr + p;
#pragma unroll
        for (int e = 0; e < PER_LANE; e++)
            if (lane + 32 * e < hd) acc[e] = acc[e] * corr + p * vr[lane + 32 * e];
        m = mn;
    }
#pragma unroll
    for (int e = 0; e < PER_LANE; e++)
        if (lane + 32 * e < hd) o[wid * hd + lane + 32 * e] = acc[e] / l;
    } /* warps of the grid stride over (token, head) pairs */
}

extern "C" void plm_attn_cuda(float *o, const float *q, float *const *kb, float *const *vb, const int32_t *boff,
                              const int64_t *start, const int32_t *cu, const int32_t *seg_of, int64_t T, int nh,
                              int nkv, int hd, float scale, void *stream) {
    if (T <= 0) return;
    const int64_t threads = T * nh * 32;
    k_attn<<<plm_blocks(threads, 128), 128, 0, PLM_STREAM(stream)>>>(o, q, kb, vb, boff, start, cu, seg_of, T, nh, nkv, hd, scale);
}
