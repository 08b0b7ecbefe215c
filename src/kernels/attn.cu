/* Causal attention within each segment on the GPU (plm_attn_ref's contract) over the blocked KV
 * cache: one warp per (token, query head) streams the keys 0 .. start[s] + i of its segment with an
 * online softmax (running maximum and sum), each lane holding hd/32 dims of the query and of the
 * output. GQA: query head h reads kv head h / (nh / nkv). */
#include <cuda_bf16.h>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"
#include "kernels/kernels.h"

#define PER_LANE (PLM_CUDA_MAX_HD / 32)

__global__ void k_kv_append(float *const *kb, float *const *vb, const int32_t *boff, const float *k, const float *v,
                            __nv_bfloat16 *kbf, __nv_bfloat16 *vbf, const int64_t *start, const int32_t *cu,
                            const int32_t *seg_of, int64_t T, int row) {
    plm_pdl_enter();
    const int64_t n = T * row;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = e / row;
        const int c = (int)(e % row), s = seg_of[t];
        const int64_t j = start[s] + (t - cu[s]);
        const int64_t b = boff[s] + j / PLM_KV_BLOCK, at = (j % PLM_KV_BLOCK) * row + c;
        kb[b][at] = k[e];
        vb[b][at] = v[e];
        if (kbf) kbf[e] = __float2bfloat16_rn(k[e]), vbf[e] = __float2bfloat16_rn(v[e]);
    }
}

extern "C" void plm_kv_append_cuda(float *const *kb, float *const *vb, const int32_t *boff, const float *k,
                                   const float *v, void *kbf, void *vbf, const int64_t *start, const int32_t *cu,
                                   const int32_t *seg_of, int64_t T, int nkv, int hd, void *stream) {
    const int row = nkv * hd;
    if (T > 0)
        k_kv_append<<<plm_blocks(T * row, 256), 256, 0, PLM_STREAM(stream)>>>(
            kb, vb, boff, k, v, (__nv_bfloat16 *)kbf, (__nv_bfloat16 *)vbf, start, cu, seg_of, T, row);
}

/* A decode step's attention inputs in one kernel (plm_rmsnorm_zc_rows_cuda on q and k, plm_rope_cuda on
 * both, plm_kv_append_cuda): token blockIdx.x, a warp a head of the nh query heads (read from qg, rows
 * of 2 hd: q then the gate), nkv key heads and nkv value heads. The normalised row goes through the
 * warp's shared row for the rotation's pairs (i, i + half); queries to q, keys and values into the
 * segment's KV block. */
__global__ void __launch_bounds__(128) k_attn_dec_prep(float *q, float *const *kb, float *const *vb,
                                                       const int32_t *boff, const float *qg, const float *k,
                                                       const float *v, const float *qw, const float *kw,
                                                       const int64_t *start, const int32_t *cu, const int32_t *seg_of,
                                                       const int64_t *pos, const float *inv_freq, int nh, int nkv,
                                                       int hd, int half, float eps) {
    plm_pdl_enter();
    __shared__ float row[4][PLM_CUDA_MAX_HD];
    const int64_t t = blockIdx.x;
    const int lane = threadIdx.x & 31, wi = threadIdx.x >> 5, u = blockIdx.y * 4 + wi;
    if (u >= nh + 2 * nkv) return;
    const int s = seg_of[t];
    const int64_t j = start[s] + (t - cu[s]), blk = boff[s] + j / PLM_KV_BLOCK;
    const int64_t at = (j % PLM_KV_BLOCK) * nkv * hd; /* the token's row in its KV block */
    if (u >= nh + nkv) { /* a value head: copied */
        const int h = u - nh - nkv;
        for (int i = lane; i < hd; i += 32) vb[blk][at + h * hd + i] = v[(t * nkv + h) * hd + i];
        return;
    }
    const bool isq = u < nh;
    const int h = isq ? u : u - nh;
    const float *x = isq ? qg + (t * nh + h) * 2 * hd : k + (t * nkv + h) * hd, *w = isq ? qw : kw;
    float *r = row[wi];
    float ss = 0.0f;
    for (int i = lane; i < hd; i += 32) {
        const float xv = x[i];
        r[i] = xv;
        ss += xv * xv;
    }
    const float inv = 1.0f / sqrtf(plm_warp_sum(ss) / (float)hd + eps);
    __syncwarp();
    for (int i = lane; i < hd; i += 32) r[i] = r[i] * inv * (1.0f + w[i]);
    __syncwarp();
    const float p0 = (float)pos[t];
    float *dst = isq ? q + (t * nh + h) * hd : kb[blk] + at + h * hd;
    for (int i = lane; i < hd; i += 32) {
        float y = r[i];
        if (i < 2 * half) { /* rotated: (i, i + half) */
            const int m = i < half ? i : i - half;
            const float ang = p0 * inv_freq[m];
            const float c = cosf(ang), sn = sinf(ang);
            y = i < half ? r[i] * c - r[i + half] * sn : r[i] * c + r[i - half] * sn;
        }
        dst[i] = y;
    }
}

extern "C" int plm_attn_dec_prep_fits(int64_t T, int hd, int rot) {
    return T > 0 && T <= 0x7fffffff && hd > 0 && hd <= PLM_CUDA_MAX_HD && (rot + 1) / 2 * 2 <= hd;
}

extern "C" void plm_attn_dec_prep_cuda(float *q, float *const *kb, float *const *vb, const int32_t *boff,
                                       const float *qg, const float *k, const float *v, const float *q_norm,
                                       const float *k_norm, const int64_t *start, const int32_t *cu,
                                       const int32_t *seg_of, const int64_t *pos, const float *inv_freq, int64_t T,
                                       int nh, int nkv, int hd, int rot, float eps, void *stream) {
    if (!plm_attn_dec_prep_fits(T, hd, rot)) return;
    k_attn_dec_prep<<<dim3((unsigned)T, (unsigned)((nh + 2 * nkv + 3) / 4)), 128, 0, PLM_STREAM(stream)>>>(
        q, kb, vb, boff, qg, k, v, q_norm, k_norm, start, cu, seg_of, pos, inv_freq, nh, nkv, hd, (rot + 1) / 2, eps);
}

__global__ void k_attn(float *o, const float *q, float *const *kb, float *const *vb, const int32_t *boff,
                       const int64_t *start, const int32_t *cu, const int32_t *seg_of, int64_t T, int nh, int nkv,
                       int hd, float scale) {
    plm_pdl_enter();
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
    plm_pdl_enter();
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

/* ---------------------------------------------------------------- tensor cores */
/* The same tiles on tensor cores, flash-attention style: 64 query rows a block (4 warps of 16 rows,
 * each the whole head dim), keys in tiles of one KV block (PLM_KV_BLOCK = 64 tokens): S = Q K^T on
 * mma.sync (BF16 operands, or split hi + lo: FP32-grade), scale, causal mask, online softmax in
 * registers (a row's four lanes reduce by shuffles), then O += P V with P taken straight from S's
 * accumulators as the A operand. The next tile's keys load while this tile's P V runs, its values
 * while the next S runs. Head dims up to 256 (padded to 16), rows per block 64 (nh / nkv <= 64). */
#include "kernels/mma.cuh"

#define TC_ROWS 64
#define TC_KEYS PLM_KV_BLOCK

/* One tile of scores through the online softmax, for the lane's two rows (g, g + 8): scale, causal
 * mask (key j visible to a row at position pos when j <= pos; pos -1 sees nothing), the running
 * maximum m and sum l updated, sc turned into the tile's unnormalised probabilities, and the output
 * accumulators acc rescaled to the new maximum. */
/* the lane's two output rows (r, r + 8 of the tile; row r is token t0 + r / rep, head kvh * rep +
 * r % rep), normalised by their sums; rows that saw no token (pos -1) are not written */
template <int NTO>
__device__ __forceinline__ void store_rows(float *o, const float (&acc)[NTO][4], const float (&l)[2],
                                           const int64_t (&pos)[2], int64_t t0, int r, int t4, int rep, int nh,
                                           int kvh, int hd) {
#pragma unroll
    for (int h = 0; h < 2; h++, r += 8) {
        if (pos[h] < 0) continue;
        const int64_t t = t0 + r / rep;
        float *orow = o + (t * nh + kvh * rep + r % rep) * (int64_t)hd;
        const float inv = 1.0f / l[h];
#pragma unroll
        for (int nt = 0; nt < NTO; nt++) {
            const int c = 8 * nt + 2 * t4;
            if (c < hd) orow[c] = acc[nt][2 * h] * inv;
            if (c + 1 < hd) orow[c + 1] = acc[nt][2 * h + 1] * inv;
        }
    }
}

/* Key splits (flash-decoding): where a step has too few tiles to fill the GPU (decode), blockIdx.z
 * takes a share of the tile's key blocks, [ja, jb), and writes its unnormalised partial output and
 * its (running maximum, sum) per row into part; k_attn_merge then combines the splits per row. */
__device__ __forceinline__ void split_keys(int64_t n_keys, int64_t &ja, int64_t &jb) {
    const int64_t nkb = (n_keys + TC_KEYS - 1) / TC_KEYS, per = (nkb + gridDim.z - 1) / gridDim.z;
    ja = (int64_t)blockIdx.z * per * TC_KEYS;
    jb = ja + per * TC_KEYS < n_keys ? ja + per * TC_KEYS : n_keys;
    if (ja > jb) ja = jb;
}

/* part: [split][T][nh][hd] partial outputs, then [split][T][nh] pairs (m, l) */
template <int NTO>
__device__ __forceinline__ void store_part(float *part, int64_t T, const float (&acc)[NTO][4], const float (&m)[2],
                                           const float (&l)[2], const int64_t (&pos)[2], int64_t t0, int r, int t4,
                                           int rep, int nh, int kvh, int hd) {
    float *ml = part + (size_t)gridDim.z * T * nh * hd;
#pragma unroll
    for (int h = 0; h < 2; h++, r += 8) {
        if (pos[h] < 0) continue;
        const int64_t row = ((int64_t)blockIdx.z * T + t0 + r / rep) * nh + kvh * rep + r % rep;
        float *orow = part + row * hd;
#pragma unroll
        for (int nt = 0; nt < NTO; nt++) {
            const int c = 8 * nt + 2 * t4;
            if (c < hd) orow[c] = acc[nt][2 * h];
            if (c + 1 < hd) orow[c + 1] = acc[nt][2 * h + 1];
        }
        if (t4 == 0) ml[2 * row] = m[h], ml[2 * row + 1] = l[h];
    }
}

/* a tile's rows: normalised into o, or (a key split) its partials into part */
template <int NTO>
__device__ __forceinline__ void store_out(float *o, float *part, int64_t T, const float (&acc)[NTO][4],
                                          const float (&m)[2], const float (&l)[2], const int64_t (&pos)[2],
                                          int64_t t0, int r, int t4, int rep, int nh, int kvh, int hd) {
    if (gridDim.z > 1)
        store_part(part, T, acc, m, l, pos, t0, r, t4, rep, nh, kvh, hd);
    else
        store_rows(o, acc, l, pos, t0, r, t4, rep, nh, kvh, hd);
}

/* o[t, h] from the splits' partials: weights exp(m_z - max m), normalised by the weighted sums */
__global__ void k_attn_merge(float *o, const float *part, int split, int64_t T, int nh, int hd) {
    plm_pdl_enter();
    const int64_t row = blockIdx.x, R = T * nh;
    const float *ml = part + (size_t)split * R * hd;
    float M = -INFINITY, L = 0.0f;
    for (int z = 0; z < split; z++) M = fmaxf(M, ml[2 * (z * R + row)]);
    for (int z = 0; z < split; z++) {
        const float mz = ml[2 * (z * R + row)];
        if (mz != -INFINITY) L += ml[2 * (z * R + row) + 1] * expf(mz - M);
    }
    for (int c = threadIdx.x; c < hd; c += blockDim.x) {
        float acc = 0.0f;
        for (int z = 0; z < split; z++) {
            const float mz = ml[2 * (z * R + row)];
            if (mz != -INFINITY) acc += part[(z * R + row) * hd + c] * expf(mz - M);
        }
        o[row * hd + c] = acc / L;
    }
}

/* the key splits' partials of both kernels into o (nothing without splits) */
static void merge_splits(float *o, const float *part, int split, int64_t T, int nh, int hd, cudaStream_t st) {
    if (split > 1) k_attn_merge<<<(unsigned)(T * nh), hd >= 256 ? 256 : (hd + 31) & ~31, 0, st>>>(o, part, split, T, nh, hd);
}

template <int NTO>
__device__ __forceinline__ void online_softmax(float (&sc)[TC_KEYS / 8][4], float (&acc)[NTO][4], float (&m)[2],
                                               float (&l)[2], const int64_t (&pos)[2], int64_t j0, int t4,
                                               float scale) {
    float mx[2] = {-INFINITY, -INFINITY};
    int lim[2]; /* key j0 + k is visible to row h when k <= lim[h] */
#pragma unroll
    for (int h = 0; h < 2; h++) lim[h] = pos[h] - j0 < TC_KEYS ? (int)(pos[h] - j0) : TC_KEYS;
#pragma unroll
    for (int nt = 0; nt < TC_KEYS / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int h = e >> 1;
            const float x = nt * 8 + 2 * t4 + (e & 1) <= lim[h] ? sc[nt][e] * scale : -INFINITY;
            sc[nt][e] = x;
            mx[h] = fmaxf(mx[h], x);
        }
    float corr[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
        const float mn = fmaxf(m[h], mx[h]);
        const float base = mn == -INFINITY ? 0.0f : mn; /* a row that has seen nothing yet */
        corr[h] = expf(m[h] - base);
        m[h] = mn;
        mx[h] = base;
    }
    float rs[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < TC_KEYS / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float p = expf(sc[nt][e] - mx[e >> 1]);
            sc[nt][e] = p;
            rs[e >> 1] += p;
        }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        rs[h] += __shfl_xor_sync(0xffffffffu, rs[h], 1);
        rs[h] += __shfl_xor_sync(0xffffffffu, rs[h], 2);
        l[h] = l[h] * corr[h] + rs[h];
    }
#pragma unroll
    for (int nt = 0; nt < NTO; nt++) {
        acc[nt][0] *= corr[0], acc[nt][1] *= corr[0];
        acc[nt][2] *= corr[1], acc[nt][3] *= corr[1];
    }
}

static size_t attn_tc_smem(int HP) {
    return ((size_t)TC_ROWS * (HP + 8) + (size_t)TC_KEYS * (HP + 8) + (size_t)TC_KEYS * (HP + 4)) * sizeof(float);
}

template <bool SPLIT, int NTO>
__global__ void __launch_bounds__(128) k_attn_tc(float *o, const float *q, float *const *kb, float *const *vb,
                                                 const int32_t *boff, const int64_t *start, const int32_t *cu,
                                                 const int32_t *tiles, int nh, int nkv, int hd, float scale,
                                                 float *part, int64_t T) {
    plm_pdl_enter();
    extern __shared__ float sm[];
    const int HP = pad16(hd), LQ = HP + 8, LV = HP + 4;
    float *Qs = sm, *Ks = Qs + TC_ROWS * LQ, *Vs = Ks + TC_KEYS * LQ;
    const int rep = nh / nkv, qt = TC_ROWS / rep, rows = qt * rep;
    const int s = tiles[2 * blockIdx.x], kvh = blockIdx.y, tid = threadIdx.x, w = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, t4 = lane & 3;
    const int64_t t0 = tiles[2 * blockIdx.x + 1], t_end = cu[s + 1] < t0 + qt ? cu[s + 1] : t0 + qt;
    const int64_t p0 = start[s] + (t0 - cu[s]);        /* position of the tile's first token */
    const int64_t n_keys = start[s] + (t_end - cu[s]); /* keys the last token sees */
    float *const *kbs = kb + boff[s], *const *vbs = vb + boff[s];
    const int64_t krow = (int64_t)nkv * hd;
    /* Q rows: row r is token t0 + r / rep, head kvh * rep + r % rep */
    {
        const bool v4 = (hd & 3) == 0 && ((uintptr_t)q & 15) == 0;
        const int per = v4 ? HP / 4 : HP;
        for (int e = tid; e < TC_ROWS * per; e += 128) {
            const int r = e / per, c = (e - r * per) * (v4 ? 4 : 1);
            const int64_t t = t0 + r / rep;
            const bool ok = r < rows && t < t_end && c < hd;
            const float *src = ok ? q + (t * nh + kvh * rep + r % rep) * (int64_t)hd + c : q;
            if (v4)
                copy16(Qs + r * LQ + c, src, ok);
            else
                copy4(Qs + r * LQ + c, src, ok);
        }
    }
    int64_t ja = 0, jb = n_keys; /* this block's keys: all, or its split's share */
    if (gridDim.z > 1) split_keys(n_keys, ja, jb);
    if (ja < jb) {
        const int nk = (int)(jb - ja < TC_KEYS ? jb - ja : TC_KEYS);
        load_block(Ks, LQ, kbs[ja / TC_KEYS] + (int64_t)kvh * hd, krow, nk, hd, TC_KEYS, HP);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        load_block(Vs, LV, vbs[ja / TC_KEYS] + (int64_t)kvh * hd, krow, nk, hd, TC_KEYS, HP);
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    const int r0 = 16 * w;
    /* this lane's two rows (g, g + 8): their positions (-1: past the tile's tokens, sees nothing) */
    int64_t pos[2];
    for (int h = 0; h < 2; h++) {
        const int r = r0 + g + 8 * h;
        pos[h] = r < rows && t0 + r / rep < t_end ? p0 + r / rep : -1;
    }
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, acc[NTO][4];
    zero_acc(acc);
    for (int64_t j0 = ja; j0 < jb; j0 += TC_KEYS) {
        const int64_t j1 = j0 + TC_KEYS;
        const int nk1 = (int)(jb - j1 < TC_KEYS ? jb - j1 : TC_KEYS);
        asm volatile("cp.async.wait_group 1;\n" ::: "memory"); /* this tile's keys */
        __syncthreads();
        float sc[TC_KEYS / 8][4];
        zero_acc(sc);
        warp_mma<SPLIT>(sc, r0, 0, HP, [&](int r, int c) { return row2(Qs, LQ, r, c); },
                        [&](int c, int n) { return row2(Ks, LQ, n, c); });
        __syncthreads(); /* keys read: the next tile's go there */
        if (j1 < jb) load_block(Ks, LQ, kbs[j1 / TC_KEYS] + (int64_t)kvh * hd, krow, nk1, hd, TC_KEYS, HP);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        /* scale, mask, online softmax over this tile */
        online_softmax(sc, acc, m, l, pos, j0, t4, scale);
        asm volatile("cp.async.wait_group 1;\n" ::: "memory"); /* this tile's values */
        __syncthreads();
        /* O += P V: P's A fragments come from S's accumulators (key pairs 2t, 2t+1 and 2t+8, 2t+9) */
#pragma unroll
        for (int kk = 0; kk < TC_KEYS / 16; kk++) {
            uint32_t ah[4], al[4];
            const float *p0r = sc[2 * kk], *p1r = sc[2 * kk + 1];
            if (SPLIT) {
                split_pair(p0r[0], p0r[1], ah[0], al[0]);
                split_pair(p0r[2], p0r[3], ah[1], al[1]);
                split_pair(p1r[0], p1r[1], ah[2], al[2]);
                split_pair(p1r[2], p1r[3], ah[3], al[3]);
            } else {
                ah[0] = pack_bf16(p0r[0], p0r[1]);
                ah[1] = pack_bf16(p0r[2], p0r[3]);
                ah[2] = pack_bf16(p1r[0], p1r[1]);
                ah[3] = pack_bf16(p1r[2], p1r[3]);
            }
            const int ka = 16 * kk + 2 * t4;
#pragma unroll
            for (int nt = 0; nt < NTO; nt++) {
                const int n = 8 * nt + g;
                if (8 * nt >= HP) break;
                const float2 y0 = col2(Vs, LV, ka, n), y1 = col2(Vs, LV, ka + 8, n);
                if (SPLIT) {
                    mma_split3(acc[nt], ah, al, y0, y1);
                } else {
                    mma16816(acc[nt], ah, pack_bf16(y0.x, y0.y), pack_bf16(y1.x, y1.y));
                }
            }
        }
        __syncthreads(); /* values read: the next tile's go there */
        if (j1 < jb) load_block(Vs, LV, vbs[j1 / TC_KEYS] + (int64_t)kvh * hd, krow, nk1, hd, TC_KEYS, HP);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    store_out(o, part, T, acc, m, l, pos, t0, r0 + g, t4, rep, nh, kvh, hd);
}

/* One tile of 64 keys [j0, j0 + nk) of a segment into a BF16 block [TC_KEYS][ld] (zero past nk and hd):
 * keys before the step (j < st, the cached prefix) from the FP32 cache block, rounded as they are
 * stored (synchronous loads, U chunks of 32 bytes in flight a thread); keys of the step itself from its
 * BF16 copy bf ([T][nkv][hd], already offset to the segment's first token and this kv head; rows
 * nkv * hd apart) by cp.async, landing under the products that follow. bf NULL: all from the cache.
 * Chunks of 8 columns: with bf, hd is a multiple of 8. U: chunks in flight a thread. */
template <int U>
__device__ __forceinline__ void load_kv_tile(__nv_bfloat16 *dst, int ld, const float *cache, int64_t krow,
                                             const __nv_bfloat16 *bf, int64_t j0, int nk, int64_t st, int hd, int HP) {
    const int cpr = HP >> 3, nt = blockDim.x, di = nt / cpr, dc = (nt % cpr) * 8, kr = (int)krow;
    const __nv_bfloat16 *bfb = bf ? bf + (j0 - st) * krow : NULL; /* row i of the tile at bfb + i * krow */
    if (bf && j0 >= st && nk == TC_KEYS && hd == HP && dc == 0) {
        /* a whole tile of the step's own keys (prompts): only copies, each thread one column chunk */
        const int c = (threadIdx.x % cpr) * 8;
        const unsigned d0 = (unsigned)__cvta_generic_to_shared(dst + c);
        for (int i = threadIdx.x / cpr; i < TC_KEYS; i += di) cp_async16(d0 + 2u * (unsigned)(i * ld), bfb + i * kr + c);
        return;
    }
    const bool v4 = (((uintptr_t)cache & 15) | (krow & 3) | (hd & 3)) == 0;
    const int sb = st > j0 ? (int)(st - j0 < TC_KEYS ? st - j0 : TC_KEYS) : 0; /* rows before sb: cached */
    int i = threadIdx.x / cpr, c = (threadIdx.x % cpr) * 8; /* walks the tile nt chunks at a time */
    while (i < TC_KEYS) {
        float4 x[U][2];
        int at[U]; /* this thread's chunks that it writes itself (cache or zero): their offsets; -1 none */
#pragma unroll
        for (int u = 0; u < U; u++) {
            x[u][0] = x[u][1] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            at[u] = i < TC_KEYS ? i * ld + c : -1;
            if (i < nk && c < hd) {
                if (bf && i >= sb) {
                    cp_async16((unsigned)__cvta_generic_to_shared(dst + i * ld + c), bfb + i * kr + c);
                    at[u] = -1;
                } else {
                    const float *src = cache + i * kr + c;
                    if (v4) {
                        x[u][0] = *reinterpret_cast<const float4 *>(src);
                        if (c + 4 < hd) x[u][1] = *reinterpret_cast<const float4 *>(src + 4);
                    } else {
                        float y[8];
#pragma unroll
                        for (int e = 0; e < 8; e++) y[e] = c + e < hd ? src[e] : 0.0f;
                        x[u][0] = make_float4(y[0], y[1], y[2], y[3]);
                        x[u][1] = make_float4(y[4], y[5], y[6], y[7]);
                    }
                }
            }
            i += di, c += dc;
            if (c >= HP) c -= HP, i++;
        }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (at[u] >= 0)
                *reinterpret_cast<uint4 *>(dst + at[u]) =
                    make_uint4(pack_bf16(x[u][0].x, x[u][0].y), pack_bf16(x[u][0].z, x[u][0].w),
                               pack_bf16(x[u][1].x, x[u][1].y), pack_bf16(x[u][1].z, x[u][1].w));
    }
}

/* Single-pass BF16 form: the same tiles with Q, K and V rounded to BF16 as they enter shared memory
 * (half the bytes: two blocks of 4 warps fit an SM, where the FP32 blocks fit one) and every fragment
 * taken by ldmatrix. Keys and values of the step itself come from its BF16 copies (kbf, vbf) by
 * cp.async: the next tile's keys load under this tile's softmax and P V, its values under the next
 * S = Q K^T, as in the precise kernel. */
template <int NTO>
__global__ void __launch_bounds__(128, 2) k_attn_bf(float *o, const float *q, float *const *kb, float *const *vb,
                                                    const __nv_bfloat16 *kbf, const __nv_bfloat16 *vbf,
                                                    const int32_t *boff, const int64_t *start, const int32_t *cu,
                                                    const int32_t *tiles, int nh, int nkv, int hd, float scale,
                                                    float *part, int64_t T) {
    plm_pdl_enter();
    extern __shared__ __align__(16) unsigned char smb[];
    const int HP = pad16(hd), LD = HP + 8; /* rows of (HP + 8) BF16: ldmatrix rows 16 bytes apart mod 128 */
    __nv_bfloat16 *Qs = reinterpret_cast<__nv_bfloat16 *>(smb), *Ks = Qs + TC_ROWS * LD, *Vs = Ks + TC_KEYS * LD;
    const int rep = nh / nkv, qt = TC_ROWS / rep, rows = qt * rep;
    const int s = tiles[2 * blockIdx.x], kvh = blockIdx.y, tid = threadIdx.x, w = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, t4 = lane & 3;
    const int64_t t0 = tiles[2 * blockIdx.x + 1], t_end = cu[s + 1] < t0 + qt ? cu[s + 1] : t0 + qt;
    const int64_t p0 = start[s] + (t0 - cu[s]), st = start[s];
    const int64_t n_keys = start[s] + (t_end - cu[s]);
    float *const *kbs = kb + boff[s], *const *vbs = vb + boff[s];
    const int64_t krow = (int64_t)nkv * hd;
    const __nv_bfloat16 *ks = kbf ? kbf + (int64_t)cu[s] * krow + (int64_t)kvh * hd : NULL;
    const __nv_bfloat16 *vs = vbf ? vbf + (int64_t)cu[s] * krow + (int64_t)kvh * hd : NULL;
    int64_t ja = 0, jb = n_keys; /* this block's keys: all, or its split's share */
    if (gridDim.z > 1) split_keys(n_keys, ja, jb);
    auto load_k = [&](int64_t j0) {
        const int nk = (int)(jb - j0 < TC_KEYS ? jb - j0 : TC_KEYS);
        load_kv_tile<NTO >= 32 ? 2 : 4>(Ks, LD, kbs[j0 / TC_KEYS] + (int64_t)kvh * hd, krow, ks, j0, nk, st, hd, HP);
    };
    auto load_v = [&](int64_t j0) {
        const int nk = (int)(jb - j0 < TC_KEYS ? jb - j0 : TC_KEYS);
        load_kv_tile<NTO >= 32 ? 2 : 4>(Vs, LD, vbs[j0 / TC_KEYS] + (int64_t)kvh * hd, krow, vs, j0, nk, st, hd, HP);
    };
    if (ja < jb) {
        load_k(ja);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        load_v(ja);
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    { /* Q rows: row r is token t0 + r / rep, head kvh * rep + r % rep, at qb + qoff[r] */
        __shared__ int qoff[TC_ROWS];
        const float *qb = q + (t0 * nh + kvh * rep) * (int64_t)hd;
        const int nr = (int)((t_end - t0) * rep < rows ? (t_end - t0) * rep : rows), per = HP / 4;
        const bool v4 = (((uintptr_t)qb & 15) | (hd & 3)) == 0;
        if (tid < TC_ROWS) qoff[tid] = ((tid / rep) * nh + tid % rep) * hd;
        __syncthreads();
        int r = tid / per, c = (tid % per) * 4;
        const int dr = 128 / per, dcc = (128 % per) * 4;
        while (r < TC_ROWS) {
            float4 x[4];
            int at[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                x[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                at[u] = r < TC_ROWS ? r * LD + c : -1;
                if (r < nr && c < hd) {
                    const float *src = qb + qoff[r] + c;
                    if (v4)
                        x[u] = *reinterpret_cast<const float4 *>(src);
                    else
                        x[u] = make_float4(src[0], c + 1 < hd ? src[1] : 0.0f, c + 2 < hd ? src[2] : 0.0f,
                                           c + 3 < hd ? src[3] : 0.0f);
                }
                r += dr, c += dcc;
                if (c >= HP) c -= HP, r++;
            }
#pragma unroll
            for (int u = 0; u < 4; u++)
                if (at[u] >= 0)
                    *reinterpret_cast<uint2 *>(Qs + at[u]) =
                        make_uint2(pack_bf16(x[u].x, x[u].y), pack_bf16(x[u].z, x[u].w));
        }
    }
    const int r0 = 16 * w;
    int64_t pos[2];
    for (int h = 0; h < 2; h++) {
        const int r = r0 + g + 8 * h;
        pos[h] = r < rows && t0 + r / rep < t_end ? p0 + r / rep : -1;
    }
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, acc[NTO][4];
    zero_acc(acc);
    for (int64_t j0 = ja; j0 < jb; j0 += TC_KEYS) {
        const int64_t j1 = j0 + TC_KEYS;
        asm volatile("cp.async.wait_group 1;\n" ::: "memory"); /* this tile's keys */
        __syncthreads();
        float sc[TC_KEYS / 8][4];
        zero_acc(sc);
        mma_rows_bt(sc, Qs, LD, r0, Ks, LD, 0, HP);
        __syncthreads(); /* keys read: the next tile's go there */
        if (j1 < jb) load_k(j1);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        online_softmax(sc, acc, m, l, pos, j0, t4, scale);
        asm volatile("cp.async.wait_group 1;\n" ::: "memory"); /* this tile's values */
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TC_KEYS / 16; kk++) {
            const float *p0r = sc[2 * kk], *p1r = sc[2 * kk + 1];
            const uint32_t a[4] = {pack_bf16(p0r[0], p0r[1]), pack_bf16(p0r[2], p0r[3]), pack_bf16(p1r[0], p1r[1]),
                                   pack_bf16(p1r[2], p1r[3])};
#pragma unroll
            for (int np = 0; np < NTO / 2; np++) {
                if (16 * np >= HP) break;
                uint32_t b[4];
                ldsm_bt(b, Vs, LD, 16 * kk, 16 * np);
                mma16816(acc[2 * np], a, b[0], b[1]);
                mma16816(acc[2 * np + 1], a, b[2], b[3]);
            }
        }
        __syncthreads(); /* values read: the next tile's go there */
        if (j1 < jb) load_v(j1);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    store_out(o, part, T, acc, m, l, pos, t0, r0 + g, t4, rep, nh, kvh, hd);
}

extern "C" int plm_attn_tc_fits(int nh, int nkv, int hd) { return nh / nkv <= TC_ROWS && hd >= 1 && hd <= 256; }

extern "C" size_t plm_attn_part_floats(int split, int64_t T, int nh, int hd) {
    return split > 1 ? (size_t)split * T * nh * (hd + 2) : 0;
}

extern "C" int plm_attn_split(int n_tiles, int nkv, int max_key_blocks, int n_sm) {
    const int blocks = n_tiles * nkv;
    if (blocks <= 0 || blocks >= n_sm || max_key_blocks < 2) return 1;
    int split = (2 * n_sm + blocks - 1) / blocks;
    split = split < max_key_blocks ? split : max_key_blocks;
    return split < PLM_ATTN_SPLIT_MAX ? split : PLM_ATTN_SPLIT_MAX;
}

extern "C" void plm_attn_tc_cuda(float *o, const float *q, float *const *kb, float *const *vb, const int32_t *boff,
                                 const int64_t *start, const int32_t *cu, const int32_t *tiles, int n_tiles, int nh,
                                 int nkv, int hd, float scale, int precise, const plm_attn_opt *opt, void *stream) {
    if (n_tiles <= 0) return;
    if (!plm_attn_tc_fits(nh, nkv, hd)) {
        plm_attn_tiled_cuda(o, q, kb, vb, boff, start, cu, tiles, n_tiles, nh, nkv, hd, scale, stream);
        return;
    }
    const int HP = pad16(hd);
    const size_t smem = attn_tc_smem(HP);
    const int split = opt && opt->split > 1 && opt->part ? opt->split : 1;
    float *part = split > 1 ? opt->part : NULL;
    const int64_t T = opt ? opt->T : 0;
    const __nv_bfloat16 *kbf = opt && (hd & 7) == 0 ? (const __nv_bfloat16 *)opt->kbf : NULL;
    const __nv_bfloat16 *vbf = kbf ? (const __nv_bfloat16 *)opt->vbf : NULL;
    if (!vbf) kbf = NULL;
    dim3 grid((unsigned)n_tiles, (unsigned)nkv, (unsigned)split);
    cudaStream_t st = PLM_STREAM(stream);
#define GO(SPLIT, NTO)                                                                                              \
    do {                                                                                                            \
        cudaFuncSetAttribute(k_attn_tc<SPLIT, NTO>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);        \
        k_attn_tc<SPLIT, NTO><<<grid, 128, smem, st>>>(o, q, kb, vb, boff, start, cu, tiles, nh, nkv, hd, scale,    \
                                                       part, T);                                                    \
    } while (0)
    if (precise) {
        if (HP <= 64)
            GO(true, 8);
        else if (HP <= 128)
            GO(true, 16);
        else
            GO(true, 32);
    } else {
        const size_t sb = (size_t)(TC_ROWS + 2 * TC_KEYS) * (HP + 8) * 2;
#define GB(NTO)                                                                                                     \
    do {                                                                                                            \
        cudaFuncSetAttribute(k_attn_bf<NTO>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sb);                 \
        k_attn_bf<NTO><<<grid, 128, sb, st>>>(o, q, kb, vb, kbf, vbf, boff, start, cu, tiles, nh, nkv, hd, scale,   \
                                              part, T);                                                             \
    } while (0)
        if (HP <= 64)
            GB(8);
        else if (HP <= 128)
            GB(16);
        else
            GB(32);
#undef GB
    }
#undef GO
    merge_splits(o, part, split, T, nh, hd, st);
}

/* ---------------------------------------------------------------- decode */
/* Attention of steps whose segments hold one or two tokens (decode): a block per (token, kv head,
 * key split) in FP32, the query heads of the kv head spread over the 4 warps (two heads a warp where
 * nh / nkv > 4). Per tile of 32 keys (K and V rows copied into shared memory by cp.async): lane j
 * scores key j against each head's query, the warp takes the tile's maximum and sum by shuffles, then
 * each lane adds the tile's values into its 4 .. 8 output columns. A 64-row tile of the tensor-core
 * kernels carries 1 .. 8 real rows at decode and walks every key in one block; here the keys are split
 * over blocks (flash-decoding) and nothing is computed for padding. */
#define DEC_KEYS 32
#define DEC_MAX_REP 8

template <int NC>
__global__ void __launch_bounds__(128) k_attn_dec(float *o, const float *q, float *const *kb, float *const *vb,
                                                  const int32_t *boff, const int64_t *start, const int32_t *cu,
                                                  const int32_t *seg_of, int nh, int nkv, int hd, float scale,
                                                  float *part, int64_t T) {
    plm_pdl_enter();
    extern __shared__ __align__(16) float smf[];
    const int rep = nh / nkv, H4 = (hd + 3) & ~3, LK = H4 + 4; /* K rows padded: lanes read rows 4 banks apart */
    float *Qs = smf, *Ks = Qs + rep * H4, *Vs = Ks + DEC_KEYS * LK;
    const int64_t t = blockIdx.x;
    const int kvh = blockIdx.y, s = seg_of[t], tid = threadIdx.x, w = tid >> 5, lane = tid & 31;
    const int64_t n_keys = start[s] + (t - cu[s]) + 1;
    int64_t ja = 0, jb = n_keys;
    if (gridDim.z > 1) split_keys(n_keys, ja, jb);
    float *const *kbs = kb + boff[s], *const *vbs = vb + boff[s];
    const int64_t krow = (int64_t)nkv * hd;
    const bool v4 = (hd & 3) == 0;
    for (int h = w; h < rep; h += 4) /* the queries, scaled: a warp a head */
        for (int c = lane; c < H4; c += 32) Qs[h * H4 + c] = c < hd ? q[(t * nh + kvh * rep + h) * (int64_t)hd + c] * scale : 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float4 acc[2][NC];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int u = 0; u < NC; u++) acc[i][u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int64_t j0 = ja; j0 < jb; j0 += DEC_KEYS) {
        const int nk = (int)(jb - j0 < DEC_KEYS ? jb - j0 : DEC_KEYS);
        __syncthreads(); /* the previous tile is read */
        for (int i = w; i < nk; i += 4) { /* a warp a key row (rows of one tile share a KV block) */
            const int64_t j = j0 + i;
            const int64_t at = (j % PLM_KV_BLOCK) * krow + (int64_t)kvh * hd;
            const float *ks = kbs[j / PLM_KV_BLOCK] + at, *vs = vbs[j / PLM_KV_BLOCK] + at;
            if (v4)
                for (int c = 4 * lane; c < H4; c += 128) {
                    copy16(Ks + i * LK + c, ks + c, true);
                    copy16(Vs + i * H4 + c, vs + c, true);
                }
            else
                for (int c = lane; c < H4; c += 32) {
                    copy4(Ks + i * LK + c, c < hd ? ks + c : ks, c < hd);
                    copy4(Vs + i * H4 + c, c < hd ? vs + c : vs, c < hd);
                }
        }
        copies_done();
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int h = w + 4 * i;
            if (h >= rep) continue;
            float sc = -INFINITY;
            if (lane < nk) {
                const float4 *kr = reinterpret_cast<const float4 *>(Ks + lane * LK);
                const float4 *qr = reinterpret_cast<const float4 *>(Qs + h * H4);
                float d0 = 0.0f, d1 = 0.0f;
                for (int c = 0; c < H4 / 4; c += 2) {
                    const float4 a = kr[c], b = qr[c];
                    d0 += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
                    if (c + 1 < H4 / 4) {
                        const float4 a1 = kr[c + 1], b1 = qr[c + 1];
                        d1 += a1.x * b1.x + a1.y * b1.y + a1.z * b1.z + a1.w * b1.w;
                    }
                }
                sc = d0 + d1;
            }
            float mx = sc;
            for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            const float mn = fmaxf(m[i], mx); /* finite: the tile has a key */
            const float corr = expf(m[i] - mn), p = lane < nk ? expf(sc - mn) : 0.0f;
            float ps = p;
            for (int off = 16; off > 0; off >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off);
            l[i] = l[i] * corr + ps;
            m[i] = mn;
#pragma unroll
            for (int u = 0; u < NC; u++) {
                acc[i][u].x *= corr, acc[i][u].y *= corr, acc[i][u].z *= corr, acc[i][u].w *= corr;
            }
            for (int j = 0; j < nk; j++) {
                const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
                for (int u = 0; u < NC; u++) {
                    const int c = 4 * lane + 128 * u;
                    if (c < H4) {
                        const float4 y = *reinterpret_cast<const float4 *>(Vs + j * H4 + c);
                        acc[i][u].x += pj * y.x, acc[i][u].y += pj * y.y, acc[i][u].z += pj * y.z,
                            acc[i][u].w += pj * y.w;
                    }
                }
            }
        }
    }
    float *ml = part ? part + (size_t)gridDim.z * T * nh * hd : NULL;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int h = w + 4 * i;
        if (h >= rep) continue;
        const int64_t row = ((part ? (int64_t)blockIdx.z * T : 0) + t) * nh + kvh * rep + h;
        float *dst = (part ? part : o) + row * hd;
        const float inv = part ? 1.0f : 1.0f / l[i];
#pragma unroll
        for (int u = 0; u < NC; u++) {
            const int c = 4 * lane + 128 * u;
            const float y[4] = {acc[i][u].x * inv, acc[i][u].y * inv, acc[i][u].z * inv, acc[i][u].w * inv};
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (c + e < hd) dst[c + e] = y[e];
        }
        if (part && lane == 0) ml[2 * row] = m[i], ml[2 * row + 1] = l[i];
    }
}

extern "C" int plm_attn_dec_fits(int nh, int nkv, int hd) {
    return nh / nkv <= DEC_MAX_REP && hd >= 1 && hd <= 256;
}

extern "C" void plm_attn_dec_cuda(float *o, const float *q, float *const *kb, float *const *vb, const int32_t *boff,
                                  const int64_t *start, const int32_t *cu, const int32_t *seg_of, int64_t T, int nh,
                                  int nkv, int hd, float scale, int split, float *part, void *stream) {
    if (T <= 0) return;
    if (!plm_attn_dec_fits(nh, nkv, hd)) {
        plm_attn_cuda(o, q, kb, vb, boff, start, cu, seg_of, T, nh, nkv, hd, scale, stream);
        return;
    }
    if (split < 2 || !part) split = 1, part = NULL;
    const int H4 = (hd + 3) & ~3;
    const size_t smem = ((size_t)(nh / nkv) * H4 + (size_t)DEC_KEYS * (H4 + 4) + (size_t)DEC_KEYS * H4) * 4;
    dim3 grid((unsigned)T, (unsigned)nkv, (unsigned)split);
    cudaStream_t st = PLM_STREAM(stream);
#define GD(NC)                                                                                                      \
    do {                                                                                                            \
        cudaFuncSetAttribute(k_attn_dec<NC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);               \
        k_attn_dec<NC><<<grid, 128, smem, st>>>(o, q, kb, vb, boff, start, cu, seg_of, nh, nkv, hd, scale, part, T); \
    } while (0)
    if (H4 <= 128)
        GD(1);
    else
        GD(2);
#undef GD
    merge_splits(o, part, split, T, nh, hd, st);
}
