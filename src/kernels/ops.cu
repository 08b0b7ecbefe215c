/* Row and element-wise ops on the GPU: the CUDA twins of kernels/ops.c (norms, RoPE, SwiGLU, MoE
 * routing, embedding rows) plus the small gathers and gates the CUDA step needs. One block per row
 * for the norms, grid-stride loops for element-wise work. */
#include <cuda_bf16.h>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"
#include "kernels/route.h"

__global__ void k_rmsnorm_zc(float *y, const float *x, const float *w, int n, float eps) {
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    const float inv = 1.0f / sqrtf(plm_block_sum(ss, sh) / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[r * n + i] = xr[i] * inv * (1.0f + w[i]);
}

__global__ void k_add_rmsnorm_zc(float *h, float *x, const float *d, const float *w, int n, float eps) {
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    float *xr = x + r * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i] + d[r * n + i];
        xr[i] = v;
        ss += v * v;
    }
    const float inv = 1.0f / sqrtf(plm_block_sum(ss, sh) / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) h[r * n + i] = xr[i] * inv * (1.0f + w[i]);
}

__global__ void k_rmsnorm_gated(float *y, const float *x, const float *z, const float *w, int n, float eps) {
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    const float inv = 1.0f / sqrtf(plm_block_sum(ss, sh) / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[r * n + i] = w[i] * (xr[i] * inv) * plm_silu_d(z[r * n + i]);
}

extern "C" void plm_rmsnorm_zc_cuda(float *y, const float *x, const float *w, int64_t rows, int n, float eps,
                                    void *stream) {
    if (rows > 0) k_rmsnorm_zc<<<(unsigned)rows, plm_row_threads(n), 0, PLM_STREAM(stream)>>>(y, x, w, n, eps);
}

extern "C" void plm_add_rmsnorm_zc_cuda(float *h, float *x, const float *d, const float *w, int64_t rows, int n,
                                        float eps, void *stream) {
    if (rows > 0) k_add_rmsnorm_zc<<<(unsigned)rows, plm_row_threads(n), 0, PLM_STREAM(stream)>>>(h, x, d, w, n, eps);
}

/* the same, written as the BF16 input of the next GEMM: hi = bf16(y), with lo the BF16 of the remainder */
__device__ __forceinline__ void put_bf16(__nv_bfloat16 *hi, __nv_bfloat16 *lo, int64_t i, float y) {
    const __nv_bfloat16 h = __float2bfloat16_rn(y);
    hi[i] = h;
    if (lo) lo[i] = __float2bfloat16_rn(y - __bfloat162float(h));
}

__global__ void k_rmsnorm_gated_bf16(__nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *x, const float *z,
                                     const float *w, int n, float eps) {
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    const float inv = 1.0f / sqrtf(plm_block_sum(ss, sh) / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) put_bf16(hi, lo, r * n + i, w[i] * (xr[i] * inv) * plm_silu_d(z[r * n + i]));
}

extern "C" void plm_rmsnorm_gated_bf16_cuda(void *hi, void *lo, const float *x, const float *z, const float *w,
                                            int64_t rows, int n, float eps, void *stream) {
    if (rows > 0)
        k_rmsnorm_gated_bf16<<<(unsigned)rows, plm_row_threads(n), 0, PLM_STREAM(stream)>>>(
            (__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo, x, z, w, n, eps);
}

extern "C" void plm_rmsnorm_gated_cuda(float *y, const float *x, const float *z, const float *w, int64_t rows, int n,
                                       float eps, void *stream) {
    if (rows > 0) k_rmsnorm_gated<<<(unsigned)rows, plm_row_threads(n), 0, PLM_STREAM(stream)>>>(y, x, z, w, n, eps);
}

/* Token blockIdx.x, slice blockIdx.y of gridDim.y: a warp per q or k head (L2 norm), then the v copy and
 * beta and g per value head, each shared out over the slices' warps and threads (one slice: the whole
 * token in one block). A head's arithmetic is the same in any slice: one warp, the same lanes. */
__global__ void k_gdn_prep(float *q, float *k, float *v, __nv_bfloat16 *qkvb, int64_t T, float *beta, float *g,
                           const float *mixed, const float *b, const float *a, const float *neg_A,
                           const float *dt_bias, int nk, int nv, int dk, int dv) {
    const int64_t t = blockIdx.x;
    const int CD = 2 * nk * dk + nv * dv;
    const float *row = mixed + t * CD;
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5, w = blockIdx.y * nw + (threadIdx.x >> 5);
    const int tid = blockIdx.y * blockDim.x + threadIdx.x, nt = gridDim.y * blockDim.x; /* over the slices */
    const float qscale = 1.0f / sqrtf((float)dk);
    for (int hh = w; hh < 2 * nk; hh += gridDim.y * nw) { /* heads 0..nk-1: q, nk..2nk-1: k */
        const float *src = row + (int64_t)hh * dk;
        float ss = 0.0f;
        for (int i = lane; i < dk; i += 32) ss += src[i] * src[i];
        ss = plm_warp_sum(ss);
        const float r = (hh < nk ? qscale : 1.0f) / sqrtf(ss + 1e-6f);
        const int64_t at = hh < nk ? (t * nk + hh) * dk : (t * nk + hh - nk) * dk;
        float *dst = (hh < nk ? q : k) + at;
        __nv_bfloat16 *db = qkvb ? qkvb + (hh < nk ? 0 : T * nk * dk) + at : NULL;
        for (int i = lane; i < dk; i += 32) {
            const float y = src[i] * r;
            dst[i] = y;
            if (db) db[i] = __float2bfloat16_rn(y);
        }
    }
    for (int i = tid; i < nv * dv; i += nt) {
        const float y = row[2 * nk * dk + i];
        v[t * nv * dv + i] = y;
        if (qkvb) qkvb[2 * T * nk * dk + t * nv * dv + i] = __float2bfloat16_rn(y);
    }
    for (int h = tid; h < nv; h += nt) {
        const float bv = b[t * nv + h], av = a[t * nv + h] + dt_bias[h];
        beta[t * nv + h] = plm_sigmoid_d(bv);
        g[t * nv + h] = neg_A[h] * (av > 20.0f ? av : log1pf(expf(av)));
    }
}

/* Blocks of GDN_PREP_THREADS, T x slices of them: a step of few tokens (decode) spreads each token over
 * up to one slice per GDN_PREP_THREADS / 32 heads (a warp a head) until the grid has about
 * GDN_PREP_BLOCKS blocks; a step of GDN_PREP_BLOCKS tokens or more keeps one block a token. */
#define GDN_PREP_THREADS 128
#define GDN_PREP_BLOCKS 256

static void gdn_prep(float *q, float *k, float *v, __nv_bfloat16 *qkvb, float *beta, float *g, const float *mixed,
                     const float *b, const float *a, const float *neg_A, const float *dt_bias, int64_t T, int nk, int nv,
                     int dk, int dv, cudaStream_t st) {
    if (T <= 0) return;
    const int warps = GDN_PREP_THREADS / 32, most = (2 * nk + warps - 1) / warps;
    int64_t slices = (GDN_PREP_BLOCKS + T - 1) / T;
    slices = slices < most ? slices : most;
    slices = slices < 1 ? 1 : slices > 65535 ? 65535 : slices;
    k_gdn_prep<<<dim3((unsigned)T, (unsigned)slices), GDN_PREP_THREADS, 0, st>>>(q, k, v, qkvb, T, beta, g, mixed, b, a,
                                                                                  neg_A, dt_bias, nk, nv, dk, dv);
}

extern "C" void plm_gdn_prep_cuda(float *q, float *k, float *v, float *beta, float *g, const float *mixed,
                                  const float *b, const float *a, const float *neg_A, const float *dt_bias, int64_t T,
                                  int nk, int nv, int dk, int dv, void *stream) {
    gdn_prep(q, k, v, NULL, beta, g, mixed, b, a, neg_A, dt_bias, T, nk, nv, dk, dv, PLM_STREAM(stream));
}

extern "C" void plm_gdn_prep_bf_cuda(float *q, float *k, float *v, void *qkv_bf, float *beta, float *g,
                                     const float *mixed, const float *b, const float *a, const float *neg_A,
                                     const float *dt_bias, int64_t T, int nk, int nv, int dk, int dv, void *stream) {
    gdn_prep(q, k, v, (__nv_bfloat16 *)qkv_bf, beta, g, mixed, b, a, neg_A, dt_bias, T, nk, nv, dk, dv,
             PLM_STREAM(stream));
}

__global__ void k_rope(float *x, const int64_t *pos, int64_t T, int nh, int hd, int half, const float *inv_freq) {
    const int64_t n = T * nh * half;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(e % half);
        const int64_t th = e / half, t = th / nh;
        const float ang = (float)pos[t] * inv_freq[i];
        const float c = cosf(ang), s = sinf(ang);
        float *v = x + th * hd;
        const float p = v[i], q = v[i + half];
        v[i] = p * c - q * s;
        v[i + half] = q * c + p * s;
    }
}

extern "C" void plm_rope_cuda(float *x, const int64_t *pos, int64_t T, int nh, int hd, int rot, const float *inv_freq,
                              void *stream) {
    const int half = (rot + 1) / 2; /* as plm_rope: an odd rot turns rot + 1 channels */
    if (T > 0 && half > 0)
        k_rope<<<plm_blocks(T * nh * half, 256), 256, 0, PLM_STREAM(stream)>>>(x, pos, T, nh, hd, half, inv_freq);
}

__global__ void k_swiglu(float *gate, const float *up, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        gate[i] = plm_silu_d(gate[i]) * up[i];
}

extern "C" void plm_swiglu_cuda(float *gate, const float *up, int64_t n, void *stream) {
    if (n > 0) k_swiglu<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>(gate, up, n);
}

__global__ void k_swiglu_bf16(__nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *gate, const float *up, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        put_bf16(hi, lo, i, plm_silu_d(gate[i]) * up[i]);
}

extern "C" void plm_swiglu_bf16_cuda(void *hi, void *lo, const float *gate, const float *up, int64_t n, void *stream) {
    if (n > 0)
        k_swiglu_bf16<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>((__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo,
                                                                          gate, up, n);
}

__global__ void k_gate_mul_bf16(__nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *o, const float *gate, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float y = o[i];
        y *= plm_sigmoid_d(gate[i]);
        put_bf16(hi, lo, i, y);
    }
}

extern "C" void plm_gate_mul_bf16_cuda(void *hi, void *lo, const float *o, const float *gate, int64_t n, void *stream) {
    if (n > 0)
        k_gate_mul_bf16<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>((__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo,
                                                                            o, gate, n);
}

__global__ void k_gate_mul(float *o, const float *gate, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        o[i] *= plm_sigmoid_d(gate[i]);
}

extern "C" void plm_gate_mul_cuda(float *o, const float *gate, int64_t n, void *stream) {
    if (n > 0) k_gate_mul<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>(o, gate, n);
}

/* one thread per token: the CPU's routing function itself (kernels/route.h) */
__global__ void k_moe_route(int32_t *idx, float *w, const float *logits, int64_t T, int E, int k) {
    const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t < T) plm_route_token(idx + t * k, w + t * k, logits + t * E, E, k);
}

extern "C" void plm_moe_route_cuda(int32_t *idx, float *w, const float *logits, int64_t T, int E, int k, void *stream) {
    if (T > 0) k_moe_route<<<plm_blocks(T, 128), 128, 0, PLM_STREAM(stream)>>>(idx, w, logits, T, E, k);
}

__global__ void k_embed(float *x, const void *E, int bf16, int64_t cols, const int32_t *tokens) {
    const int64_t t = blockIdx.x, r = tokens[t];
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
        if (bf16) x[t * cols + i] = plm_bf16_bits_to_f32(((const uint16_t *)E)[r * cols + i]);
        else x[t * cols + i] = ((const float *)E)[r * cols + i];
}

extern "C" void plm_embed_rows_cuda(float *x, const void *E, int bf16, int64_t cols, const int32_t *tokens, int64_t T,
                                    void *stream) {
    if (T > 0) k_embed<<<(unsigned)T, 256, 0, PLM_STREAM(stream)>>>(x, E, bf16, cols, tokens);
}

__global__ void k_split_qgate(float *q, float *gate, const float *qg, int64_t n, int hd) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t th = e / hd;
        const int i = (int)(e % hd);
        q[e] = qg[th * 2 * hd + i];
        gate[e] = qg[th * 2 * hd + hd + i];
    }
}

extern "C" void plm_split_qgate_cuda(float *q, float *gate, const float *qg, int64_t T, int nh, int hd, void *stream) {
    const int64_t n = T * nh * hd;
    if (n > 0) k_split_qgate<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>(q, gate, qg, n, hd);
}

__global__ void k_gather_rows(float *dst, const float *src, const int32_t *rows, int64_t n, int cols) {
    const int64_t i = blockIdx.x;
    if (i >= n) return;
    const float *s = src + (int64_t)rows[i] * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dst[i * cols + c] = s[c];
}

extern "C" void plm_gather_rows_cuda(float *dst, const float *src, const int32_t *rows, int64_t n, int cols,
                                     void *stream) {
    if (n > 0) k_gather_rows<<<(unsigned)n, 256, 0, PLM_STREAM(stream)>>>(dst, src, rows, n, cols);
}

__global__ void k_moe_combine(float *out, const float *ye, const int32_t *map, const float *w, int k, int H) {
    const int64_t t = blockIdx.x;
    for (int d = threadIdx.x; d < H; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < k; j++) acc += w[t * k + j] * ye[(int64_t)map[t * k + j] * H + d];
        out[t * H + d] = acc;
    }
}

extern "C" void plm_moe_combine_cuda(float *out, const float *ye, const int32_t *map, const float *w, int64_t T, int k,
                                     int H, void *stream) {
    if (T > 0) k_moe_combine<<<(unsigned)T, 256, 0, PLM_STREAM(stream)>>>(out, ye, map, w, k, H);
}

__global__ void k_sigmoid_scale_add(float *out, const float *y, const float *score, int64_t n, int H) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
        out[e] += plm_sigmoid_d(score[e / H]) * y[e];
}

extern "C" void plm_sigmoid_scale_add_cuda(float *out, const float *y, const float *score, int64_t T, int H,
                                           void *stream) {
    const int64_t n = T * H;
    if (n > 0) k_sigmoid_scale_add<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>(out, y, score, n, H);
}

__global__ void k_to_bf16(__nv_bfloat16 *dst, __nv_bfloat16 *lo, const float *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const __nv_bfloat16 hi = __float2bfloat16_rn(src[i]);
        dst[i] = hi;
        if (lo) lo[i] = __float2bfloat16_rn(src[i] - __bfloat162float(hi));
    }
}

/* four values a thread: 16-byte loads, 8-byte stores (every pointer 16- / 8-byte aligned, n % 4 == 0) */
__global__ void k_to_bf16_4(__nv_bfloat162 *dst, __nv_bfloat162 *lo, const float4 *src, int64_t n4) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
        const float4 x = src[i];
        const __nv_bfloat162 h0 = __floats2bfloat162_rn(x.x, x.y), h1 = __floats2bfloat162_rn(x.z, x.w);
        dst[2 * i] = h0, dst[2 * i + 1] = h1;
        if (lo) {
            const float2 f0 = __bfloat1622float2(h0), f1 = __bfloat1622float2(h1);
            lo[2 * i] = __floats2bfloat162_rn(x.x - f0.x, x.y - f0.y);
            lo[2 * i + 1] = __floats2bfloat162_rn(x.z - f1.x, x.w - f1.y);
        }
    }
}

extern "C" void plm_to_bf16_cuda(void *dst, void *lo, const float *src, int64_t n, void *stream) {
    if (n <= 0) return;
    if (n % 4 == 0 && ((uintptr_t)src & 15) == 0 && ((uintptr_t)dst & 7) == 0 && ((uintptr_t)lo & 7) == 0)
        k_to_bf16_4<<<plm_blocks(n / 4, 256), 256, 0, PLM_STREAM(stream)>>>((__nv_bfloat162 *)dst, (__nv_bfloat162 *)lo,
                                                                            (const float4 *)src, n / 4);
    else
        k_to_bf16<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>((__nv_bfloat16 *)dst, (__nv_bfloat16 *)lo, src, n);
}
