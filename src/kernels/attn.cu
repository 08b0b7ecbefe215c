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

/* ---------------------------------------------------------------- tiled */
#define KT 32 /* keys per tile */
#define ATT_THREADS 256

extern "C" int plm_attn_qt(int nh, int nkv) {
    const int rep = nh / nkv;
    return rep >= PLM_ATTN_ROWS ? 1 : PLM_ATTN_ROWS / rep;
}

extern "C" int plm_attn_tiles(int32_t *tiles, const int32_t *cu, int n_seg, int qt) {
    int n = 0;
    for (int s = 0; s < n_seg; s++)
        for (int32_t t = cu[s]; t < cu[s + 1]; t += qt) {
            tiles[2 * n] = s;
            tiles[2 * n + 1] = t;
            n++;
        }
    return n;
}

/* Shared memory: Q [rows][hd], K [KT][hd + 1] (padded: lane j reads row j, 32 banks), V [KT][hd].
 * Warp w owns rows w, w + 8, ...; per row and key tile: lane j scores key j, the tile's maximum and
 * sum come from warp reductions, then every lane adds p_j v_j over its hd / 32 output dims. */
__global__ void __launch_bounds__(ATT_THREADS) k_attn_tiled(float *o, const float *q, float *const *kb,
                                                            float *const *vb, const int32_t *boff,
                                                            const int64_t *start, const int32_t *cu,
                                                            const int32_t *tiles, int nh, int nkv, int hd,
                                                            float scale) {
    extern __shared__ float sm[];
    const int rep = nh / nkv, qt = rep >= PLM_ATTN_ROWS ? 1 : PLM_ATTN_ROWS / rep, rows = qt * rep;
    const int s = tiles[2 * blockIdx.x], kvh = blockIdx.y, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int64_t t0 = tiles[2 * blockIdx.x + 1], t_end = cu[s + 1] < t0 + qt ? cu[s + 1] : t0 + qt;
    const int64_t p0 = start[s] + (t0 - cu[s]);            /* position of the tile's first token */
    const int64_t n_keys = start[s] + (t_end - cu[s]);     /* keys the last token sees */
    float *Q = sm, *K = Q + rows * hd, *V = K + KT * (hd + 1);
    for (int e = threadIdx.x; e < rows * hd; e += ATT_THREADS) {
        const int r = e / hd, d = e % hd;
        const int64_t t = t0 + r / rep;
        float x = 0.0f;
        if (t < t_end) x = q[(t * nh + kvh * rep + r % rep) * hd + d] * scale;
        Q[e] = x;
    }
    float m[PLM_ATTN_ROWS / 8], l[PLM_ATTN_ROWS / 8], acc[PLM_ATTN_ROWS / 8][PLM_ATTN_TILED_MAX_HD / 32];
#pragma unroll
    for (int i = 0; i < PLM_ATTN_ROWS / 8; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int e = 0; e < PLM_ATTN_TILED_MAX_HD / 32; e++) acc[i][e] = 0.0f;
    }
    float *const *kbs = kb + boff[s], *const *vbs = vb + boff[s];
    for (int64_t j0 = 0; j0 < n_keys; j0 += KT) {
        __syncthreads(); /* the previous tile is no longer read */
        for (int e = threadIdx.x; e < KT * hd; e += ATT_THREADS) {
            const int jj = e / hd, d = e % hd;
            const int64_t j = j0 + jj;
            float kx = 0.0f, vx = 0.0f;
            if (j < n_keys) {
                const int64_t off = ((j % PLM_KV_BLOCK) * nkv + kvh) * hd + d;
                kx = kbs[j / PLM_KV_BLOCK][off];
                vx = vbs[j / PLM_KV_BLOCK][off];
            }
            K[jj * (hd + 1) + d] = kx;
            V[jj * hd + d] = vx;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < PLM_ATTN_ROWS / 8; i++) {
            const int r = w + 8 * i;
            if (r >= rows) break;
            const int64_t pos = p0 + r / rep; /* this row's token sees keys 0 .. pos */
            if (t0 + r / rep >= t_end) break;
            const int64_t j = j0 + lane;
            float sc = 0.0f;
            const float *qr = Q + r * hd, *kr = K + lane * (hd + 1);
            for (int d = 0; d < hd; d++) sc += qr[d] * kr[d];
            if (j > pos) sc = -INFINITY;
            const float mt = plm_warp_max(sc);
            if (mt == -INFINITY) continue; /* the whole tile is in this row's future */
            const float mn = fmaxf(m[i], mt), corr = expf(m[i] - mn), pj = expf(sc - mn);
            l[i] = l[i] * corr + plm_warp_sum(pj);
            m[i] = mn;
#pragma unroll
            for (int e = 0; e < PLM_ATTN_TILED_MAX_HD / 32; e++) acc[i][e] *= corr;
            for (int jj = 0; jj < KT; jj++) {
                const float pb = __shfl_sync(0xffffffffu, pj, jj);
                const float *vr = V + jj * hd;
#pragma unroll
                for (int e = 0; e < PLM_ATTN_TILED_MAX_HD / 32; e++)
                    if (lane + 32 * e < hd) acc[i][e] += pb * vr[lane + 32 * e];
            }
        }
    }
#pragma unroll
    for (int i = 0; i < PLM_ATTN_ROWS / 8; i++) {
        const int r = w + 8 * i;
        if (r >= rows) break;
        const int64_t t = t0 + r / rep;
        if (t >= t_end) break;
        float *orow = o + (t * nh + kvh * rep + r % rep) * hd;
#pragma unroll
        for (int e = 0; e < PLM_ATTN_TILED_MAX_HD / 32; e++)
            if (lane + 32 * e < hd) orow[lane + 32 * e] = acc[i][e] / l[i];
    }
}

extern "C" void plm_attn_tiled_cuda(float *o, const float *q, float *const *kb, float *const *vb, const int32_t *boff,
                                    const int64_t *start, const int32_t *cu, const int32_t *tiles, int n_tiles, int nh,
                                    int nkv, int hd, float scale, void *stream) {
    if (n_tiles <= 0 || hd > PLM_ATTN_TILED_MAX_HD) return;
    const int rows = plm_attn_qt(nh, nkv) * (nh / nkv);
    const size_t smem = ((size_t)rows * hd + (size_t)KT * (hd + 1) + (size_t)KT * hd) * sizeof(float);
    cudaFuncSetAttribute(k_attn_tiled, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    dim3 grid((unsigned)n_tiles, (unsigned)nkv);
    k_attn_tiled<<<grid, ATT_THREADS, smem, PLM_STREAM(stream)>>>(o, q, kb, vb, boff, start, cu, tiles, nh, nkv, hd, scale);
}
