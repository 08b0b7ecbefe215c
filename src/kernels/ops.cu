/* Row and element-wise ops on the GPU: the CUDA twins of kernels/ops.c (norms, RoPE, SwiGLU, MoE
 * routing, embedding rows) plus the small gathers and gates the CUDA step needs. One block per row
 * for the norms, grid-stride loops for element-wise work. */
#include <cuda_bf16.h>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"
#include "kernels/route.h"

/* four values at hi + 4i (8-byte aligned), as put_bf16 writes them one at a time */
__device__ __forceinline__ void put4_bf16(__nv_bfloat16 *hi, __nv_bfloat16 *lo, int64_t i, float4 y) {
    const __nv_bfloat162 h0 = __floats2bfloat162_rn(y.x, y.y), h1 = __floats2bfloat162_rn(y.z, y.w);
    __nv_bfloat162 *H = reinterpret_cast<__nv_bfloat162 *>(hi) + 2 * i;
    H[0] = h0, H[1] = h1;
    if (lo) {
        const float2 f0 = __bfloat1622float2(h0), f1 = __bfloat1622float2(h1);
        __nv_bfloat162 *L = reinterpret_cast<__nv_bfloat162 *>(lo) + 2 * i;
        L[0] = __floats2bfloat162_rn(y.x - f0.x, y.y - f0.y);
        L[1] = __floats2bfloat162_rn(y.z - f1.x, y.w - f1.y);
    }
}

/* Rows of n <= 512 values, n % 4 == 0 (the delta rule's value heads, the attention heads): a warp a
 * row, four rows a block, float4 loads, the sum of squares by shuffles. A block a row of 128 threads
 * spent most of its time in the block reduction's barriers. Gated: y = w x / rms(x) silu(z), into y
 * (FP32) or hi (+ lo) BF16. Plain zero-centred (z NULL): y = x / rms(x) (1 + w). */
#define ROW4_MAX 512
/* xs: the stride of x's rows in floats (n: contiguous; the attention's q rows inside q + gate: 2n) */
template <typename Z>
__global__ void k_rmsnorm_row4(float *y, __nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *x, int64_t xs, const Z *z,
                               const float *w, int64_t rows, int n, float eps) {
    plm_pdl_enter();
    const int64_t r = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= rows) return;
    const int lane = threadIdx.x & 31, n4 = n >> 2;
    const float4 *xr = reinterpret_cast<const float4 *>(x + r * xs);
    float4 xv[ROW4_MAX / 128];
    float ss = 0.0f;
#pragma unroll
    for (int u = 0; u < ROW4_MAX / 128; u++) {
        const int c = lane + 32 * u;
        xv[u] = c < n4 ? xr[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        ss += xv[u].x * xv[u].x + xv[u].y * xv[u].y + xv[u].z * xv[u].z + xv[u].w * xv[u].w;
    }
    const float inv = 1.0f / sqrtf(plm_warp_sum(ss) / (float)n + eps);
#pragma unroll
    for (int u = 0; u < ROW4_MAX / 128; u++) {
        const int c = lane + 32 * u;
        if (c >= n4) break;
        const float4 wv = reinterpret_cast<const float4 *>(w)[c];
        float4 o;
        if (z) {
            const float4 zv = plm_ld4(z + r * n, c); /* FP32, or BF16 (the z projection's single-pass output) */
            o = make_float4(wv.x * (xv[u].x * inv) * plm_silu_d(zv.x), wv.y * (xv[u].y * inv) * plm_silu_d(zv.y),
                            wv.z * (xv[u].z * inv) * plm_silu_d(zv.z), wv.w * (xv[u].w * inv) * plm_silu_d(zv.w));
        } else {
            o = make_float4(xv[u].x * inv * (1.0f + wv.x), xv[u].y * inv * (1.0f + wv.y), xv[u].z * inv * (1.0f + wv.z),
                            xv[u].w * inv * (1.0f + wv.w));
        }
        if (y)
            reinterpret_cast<float4 *>(y + r * n)[c] = o;
        else
            put4_bf16(hi, lo, r * n4 + c, o);
    }
}

/* the row kernel fits: n a multiple of 4 up to ROW4_MAX, every array 16-byte aligned (8 for BF16) */
static bool row4_fits(int n, const void *a, const void *b, const void *c, const void *d, const void *e) {
    return n % 4 == 0 && n <= ROW4_MAX &&
           ((((uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d) & 15) | ((uintptr_t)e & 7)) == 0;
}

template <typename Z>
static void row4(float *y, void *hi, void *lo, const float *x, int64_t xs, const Z *z, const float *w, int64_t rows,
                 int n, float eps, void *stream) {
    k_rmsnorm_row4<Z><<<(unsigned)((rows + 3) / 4), 128, 0, PLM_STREAM(stream)>>>(
        y, (__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo, x, xs, z, w, rows, n, eps);
}

__global__ void k_rmsnorm_zc(float *y, const float *x, int64_t xs, const float *w, int n, float eps) {
    plm_pdl_enter();
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * xs;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    const float inv = 1.0f / sqrtf(plm_block_sum(ss, sh) / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[r * n + i] = xr[i] * inv * (1.0f + w[i]);
}

/* parts: d2 == NULL: d alone; else d + d2, then (np > 2) the parts at d + k (d2 - d), k = 2 .. np - 1 */
__global__ void k_add_rmsnorm_zc(float *h, float *x, const float *d, const float *d2, int np, const float *w, int n,
                                 float eps) {
    plm_pdl_enter();
    __shared__ float sh[32];
    const int64_t r = blockIdx.x, ps = d2 - d;
    float *xr = x + r * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float e = d2 ? d[r * n + i] + d2[r * n + i] : d[r * n + i];
        for (int k = 2; k < np; k++) e += d[k * ps + r * n + i];
        float v = xr[i] + e;
        xr[i] = v;
        ss += v * v;
    }
    const float inv = 1.0f / sqrtf(plm_block_sum(ss, sh) / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) h[r * n + i] = xr[i] * inv * (1.0f + w[i]);
}

__global__ void k_rmsnorm_gated(float *y, const float *x, const float *z, const float *w, int n, float eps) {
    plm_pdl_enter();
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    const float inv = 1.0f / sqrtf(plm_block_sum(ss, sh) / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[r * n + i] = w[i] * (xr[i] * inv) * plm_silu_d(z[r * n + i]);
}

extern "C" void plm_rmsnorm_zc_rows_cuda(float *y, const float *x, int64_t x_stride, const float *w, int64_t rows,
                                         int n, float eps, void *stream) {
    if (rows > 0 && x_stride % 4 == 0 && row4_fits(n, x, w, y, NULL, NULL))
        row4<float>(y, NULL, NULL, x, x_stride, NULL, w, rows, n, eps, stream);
    else if (rows > 0)
        k_rmsnorm_zc<<<(unsigned)rows, plm_row_threads(n), 0, PLM_STREAM(stream)>>>(y, x, x_stride, w, n, eps);
}

extern "C" void plm_rmsnorm_zc_cuda(float *y, const float *x, const float *w, int64_t rows, int n, float eps,
                                    void *stream) {
    plm_rmsnorm_zc_rows_cuda(y, x, n, w, rows, n, eps, stream);
}

/* the same for n % 4 == 0, n <= 4096 (the hidden size): a thread one float4 of the row */
/* x (the residual stream) and w are read before the wait for the kernel launched before (programmatic
 * launch: the product that wrote d); x was written further back (the add before this one) */
__global__ void k_add_rmsnorm_zc4(float *h, __nv_bfloat16 *hb, __nv_bfloat16 *lb, float *x, const float *d,
                                  const float *d2, int np, const float *w, int n, float eps) {
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    const int c = threadIdx.x, n4 = n >> 2;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f), a = v, wv = v;
    if (c < n4) /* x is mutable (read through L2, not L1), w constant */
        a = __ldcg(reinterpret_cast<const float4 *>(x + r * n) + c), wv = reinterpret_cast<const float4 *>(w)[c];
    plm_pdl_enter();
    if (c < n4) {
        float4 b = reinterpret_cast<const float4 *>(d + r * n)[c];
        if (d2) { /* the product's two halves, summed first (as plm_add_halves_cuda) */
            const float4 e = reinterpret_cast<const float4 *>(d2 + r * n)[c];
            b = make_float4(b.x + e.x, b.y + e.y, b.z + e.z, b.w + e.w);
            for (int k = 2; k < np; k++) { /* split-K parts past the second, in order */
                const float4 f = reinterpret_cast<const float4 *>(d + k * (d2 - d) + r * n)[c];
                b = make_float4(b.x + f.x, b.y + f.y, b.z + f.z, b.w + f.w);
            }
        }
        v = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
        reinterpret_cast<float4 *>(x + r * n)[c] = v;
    }
    const float inv = 1.0f / sqrtf(plm_block_sum(v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w, sh) / (float)n + eps);
    if (c < n4) {
        const float4 y = make_float4(v.x * inv * (1.0f + wv.x), v.y * inv * (1.0f + wv.y), v.z * inv * (1.0f + wv.z),
                                     v.w * inv * (1.0f + wv.w));
        reinterpret_cast<float4 *>(h + r * n)[c] = y;
        if (hb) put4_bf16(hb, lb, r * n4 + c, y);
    }
}

static void add_rmsnorm(float *h, void *hb, void *lb, float *x, const float *d, const float *d2, int np, const float *w,
                        int64_t rows, int n, float eps, cudaStream_t st) {
    if (rows <= 0) return;
    if (n % 4 == 0 && n <= 4096 && (((uintptr_t)h | (uintptr_t)x | (uintptr_t)d | (uintptr_t)d2 | (uintptr_t)w) & 15) == 0 &&
        (((uintptr_t)hb | (uintptr_t)lb) & 7) == 0) {
        k_add_rmsnorm_zc4<<<(unsigned)rows, ((n / 4 + 31) / 32) * 32, 0, st>>>(h, (__nv_bfloat16 *)hb, (__nv_bfloat16 *)lb,
                                                                                x, d, d2, np, w, n, eps);
        return;
    }
    k_add_rmsnorm_zc<<<(unsigned)rows, plm_row_threads(n), 0, st>>>(h, x, d, d2, np, w, n, eps);
    if (hb) plm_to_bf16_cuda(hb, lb, h, rows * n, st);
}

extern "C" void plm_add_rmsnorm_zc_cuda(float *h, float *x, const float *d, const float *w, int64_t rows, int n,
                                        float eps, void *stream) {
    add_rmsnorm(h, NULL, NULL, x, d, NULL, 1, w, rows, n, eps, PLM_STREAM(stream));
}

extern "C" void plm_add_rmsnorm_zc_split_cuda(float *h, void *hi, void *lo, float *x, const float *d, const float *d2,
                                              const float *w, int64_t rows, int n, float eps, void *stream) {
    add_rmsnorm(h, hi, lo, x, d, d2, d2 ? 2 : 1, w, rows, n, eps, PLM_STREAM(stream));
}

extern "C" void plm_add_rmsnorm_zc_parts_cuda(float *h, void *hi, void *lo, float *x, const float *d, int parts,
                                              const float *w, int64_t rows, int n, float eps, void *stream) {
    add_rmsnorm(h, hi, lo, x, d, parts > 1 ? d + rows * n : NULL, parts > 1 ? parts : 1, w, rows, n, eps,
                PLM_STREAM(stream));
}


template <typename Z>
__global__ void k_rmsnorm_gated_bf16(__nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *x, const Z *z,
                                     const float *w, int n, float eps) {
    plm_pdl_enter();
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    const float inv = 1.0f / sqrtf(plm_block_sum(ss, sh) / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        put_bf16(hi, lo, r * n + i, w[i] * (xr[i] * inv) * plm_silu_d(plm_f32(z[r * n + i])));
}

extern "C" void plm_rmsnorm_gated_bf16_cuda(void *hi, void *lo, const float *x, const float *z, const float *w,
                                            int64_t rows, int n, float eps, void *stream) {
    if (rows > 0 && row4_fits(n, x, z, w, NULL, (const void *)((uintptr_t)hi | (uintptr_t)lo)))
        row4(NULL, hi, lo, x, n, z, w, rows, n, eps, stream);
    else if (rows > 0)
        k_rmsnorm_gated_bf16<float><<<(unsigned)rows, plm_row_threads(n), 0, PLM_STREAM(stream)>>>(
            (__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo, x, z, w, n, eps);
}

extern "C" void plm_rmsnorm_gated_bz_cuda(void *hi, const float *x, const void *z, const float *w, int64_t rows, int n,
                                          float eps, void *stream) {
    const __nv_bfloat16 *zb = (const __nv_bfloat16 *)z;
    if (rows > 0 && row4_fits(n, x, w, NULL, NULL, (const void *)((uintptr_t)hi | (uintptr_t)z)))
        row4(NULL, hi, NULL, x, n, zb, w, rows, n, eps, stream);
    else if (rows > 0)
        k_rmsnorm_gated_bf16<__nv_bfloat16><<<(unsigned)rows, plm_row_threads(n), 0, PLM_STREAM(stream)>>>(
            (__nv_bfloat16 *)hi, NULL, x, zb, w, n, eps);
}

extern "C" void plm_rmsnorm_gated_cuda(float *y, const float *x, const float *z, const float *w, int64_t rows, int n,
                                       float eps, void *stream) {
    if (rows > 0 && row4_fits(n, x, z, w, y, NULL))
        row4(y, NULL, NULL, x, n, z, w, rows, n, eps, stream);
    else if (rows > 0)
        k_rmsnorm_gated<<<(unsigned)rows, plm_row_threads(n), 0, PLM_STREAM(stream)>>>(y, x, z, w, n, eps);
}

/* Token blockIdx.x, slice blockIdx.y of gridDim.y: a warp per q or k head (L2 norm), then the v copy and
 * beta and g per value head, each shared out over the slices' warps and threads (one slice: the whole
 * token in one block). A head's arithmetic is the same in any slice: one warp, the same lanes. mixed is
 * FP32 or BF16 (X); q, k, v (FP32) are written for every token when seg_of is NULL, else only for the
 * tokens of segments shorter than fp32_min (the recurrent kernel's; the chunked ones read qkvb). */
template <typename X>
__global__ void k_gdn_prep(float *q, float *k, float *v, __nv_bfloat16 *qkvb, int64_t T, float *beta, float *g,
                           const X *mixed, const float *b, const float *a, const float *neg_A,
                           const float *dt_bias, int nk, int nv, int dk, int dv, const int32_t *cu,
                           const int32_t *seg_of, int fp32_min) {
    plm_pdl_enter();
    const int64_t t = blockIdx.x;
    const int CD = 2 * nk * dk + nv * dv;
    const X *row = mixed + t * CD;
    const bool f32 = !seg_of || cu[seg_of[t] + 1] - cu[seg_of[t]] < fp32_min;
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5, w = blockIdx.y * nw + (threadIdx.x >> 5);
    const int tid = blockIdx.y * blockDim.x + threadIdx.x, nt = gridDim.y * blockDim.x; /* over the slices */
    const float qscale = 1.0f / sqrtf((float)dk);
    for (int hh = w; hh < 2 * nk; hh += gridDim.y * nw) { /* heads 0..nk-1: q, nk..2nk-1: k */
        const X *src = row + (int64_t)hh * dk;
        float ss = 0.0f;
        for (int i = lane; i < dk; i += 32) ss += plm_f32(src[i]) * plm_f32(src[i]);
        ss = plm_warp_sum(ss);
        const float r = (hh < nk ? qscale : 1.0f) / sqrtf(ss + 1e-6f);
        const int64_t at = hh < nk ? (t * nk + hh) * dk : (t * nk + hh - nk) * dk;
        float *dst = (hh < nk ? q : k) + at;
        __nv_bfloat16 *db = qkvb ? qkvb + (hh < nk ? 0 : T * nk * dk) + at : NULL;
        for (int i = lane; i < dk; i += 32) {
            const float y = plm_f32(src[i]) * r;
            if (f32) dst[i] = y;
            if (db) db[i] = __float2bfloat16_rn(y);
        }
    }
    for (int i = tid; i < nv * dv; i += nt) {
        const float y = plm_f32((row + 2 * nk * dk)[i]);
        if (f32) v[t * nv * dv + i] = y;
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

template <typename X>
static void gdn_prep(float *q, float *k, float *v, __nv_bfloat16 *qkvb, float *beta, float *g, const X *mixed,
                     const float *b, const float *a, const float *neg_A, const float *dt_bias, int64_t T, int nk, int nv,
                     int dk, int dv, const int32_t *cu, const int32_t *seg_of, int fp32_min, cudaStream_t st) {
    if (T <= 0) return;
    const int warps = GDN_PREP_THREADS / 32, most = (2 * nk + warps - 1) / warps;
    int64_t slices = (GDN_PREP_BLOCKS + T - 1) / T;
    slices = slices < most ? slices : most;
    slices = slices < 1 ? 1 : slices > 65535 ? 65535 : slices;
    k_gdn_prep<X><<<dim3((unsigned)T, (unsigned)slices), GDN_PREP_THREADS, 0, st>>>(
        q, k, v, qkvb, T, beta, g, mixed, b, a, neg_A, dt_bias, nk, nv, dk, dv, cu, seg_of, fp32_min);
}

extern "C" void plm_gdn_prep_cuda(float *q, float *k, float *v, float *beta, float *g, const float *mixed,
                                  const float *b, const float *a, const float *neg_A, const float *dt_bias, int64_t T,
                                  int nk, int nv, int dk, int dv, void *stream) {
    gdn_prep(q, k, v, NULL, beta, g, mixed, b, a, neg_A, dt_bias, T, nk, nv, dk, dv, NULL, NULL, 0, PLM_STREAM(stream));
}

extern "C" void plm_gdn_prep_bf_cuda(float *q, float *k, float *v, void *qkv_bf, float *beta, float *g,
                                     const float *mixed, const float *b, const float *a, const float *neg_A,
                                     const float *dt_bias, int64_t T, int nk, int nv, int dk, int dv, void *stream) {
    gdn_prep(q, k, v, (__nv_bfloat16 *)qkv_bf, beta, g, mixed, b, a, neg_A, dt_bias, T, nk, nv, dk, dv, NULL, NULL, 0,
             PLM_STREAM(stream));
}

/* From BF16 mixed, 16 bytes (8 values) a lane: a q or k head over LPH = dk / 8 lanes (32 / LPH heads a
 * warp at a time, the sum of squares over the head's lanes by shuffles), v copied 8 values a thread,
 * then beta and g; a block a token. Needs dk / 8 a power of two <= 32, nv * dv % 8 == 0 and every
 * array 16-byte aligned (gdn_prep_bb8_fits). The FP32 q, k, v as k_gdn_prep writes them (fp32_min). */
template <int LPH>
__global__ void __launch_bounds__(GDN_PREP_THREADS) k_gdn_prep_bb8(float *q, float *k, float *v, __nv_bfloat16 *qkvb,
                                                                   int64_t T, float *beta, float *g,
                                                                   const __nv_bfloat16 *mixed, const float *b,
                                                                   const float *a, const float *neg_A,
                                                                   const float *dt_bias, int nk, int nv, int dk, int dv,
                                                                   const int32_t *cu, const int32_t *seg_of,
                                                                   int fp32_min) {
    plm_pdl_enter();
    constexpr int HPW = 32 / LPH;
    const int64_t t = blockIdx.x;
    const int CD = 2 * nk * dk + nv * dv;
    const __nv_bfloat16 *row = mixed + t * CD;
    const bool f32 = cu[seg_of[t] + 1] - cu[seg_of[t]] < fp32_min;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5, li = lane % LPH;
    const float qscale = 1.0f / sqrtf((float)dk);
    for (int h0 = w * HPW; h0 < 2 * nk; h0 += nw * HPW) { /* heads 0..nk-1: q, nk..2nk-1: k */
        const int hh = h0 + lane / LPH;
        const bool ok = hh < 2 * nk;
        uint4 u = make_uint4(0, 0, 0, 0);
        if (ok) u = *reinterpret_cast<const uint4 *>(row + (int64_t)hh * dk + li * 8);
        const __nv_bfloat162 *u2 = reinterpret_cast<const __nv_bfloat162 *>(&u);
        float x[8], ss = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float2 f = __bfloat1622float2(u2[j]);
            x[2 * j] = f.x, x[2 * j + 1] = f.y;
            ss += f.x * f.x + f.y * f.y;
        }
#pragma unroll
        for (int o = LPH / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if (!ok) continue;
        const float r = (hh < nk ? qscale : 1.0f) / sqrtf(ss + 1e-6f);
        const int64_t at = (t * nk + (hh < nk ? hh : hh - nk)) * dk + li * 8;
        uint4 o4;
        __nv_bfloat162 *o2 = reinterpret_cast<__nv_bfloat162 *>(&o4);
#pragma unroll
        for (int j = 0; j < 8; j++) x[j] *= r;
#pragma unroll
        for (int j = 0; j < 4; j++) o2[j] = __floats2bfloat162_rn(x[2 * j], x[2 * j + 1]);
        *reinterpret_cast<uint4 *>(qkvb + (hh < nk ? 0 : T * nk * dk) + at) = o4;
        if (f32) {
            float4 *dst = reinterpret_cast<float4 *>((hh < nk ? q : k) + at);
            dst[0] = make_float4(x[0], x[1], x[2], x[3]);
            dst[1] = make_float4(x[4], x[5], x[6], x[7]);
        }
    }
    const uint4 *vs = reinterpret_cast<const uint4 *>(row + 2 * nk * dk);
    uint4 *vb = reinterpret_cast<uint4 *>(qkvb + 2 * T * nk * dk + t * nv * dv);
    for (int i = threadIdx.x; i < nv * dv / 8; i += blockDim.x) {
        const uint4 u = vs[i];
        vb[i] = u;
        if (f32) {
            const __nv_bfloat162 *u2 = reinterpret_cast<const __nv_bfloat162 *>(&u);
            const float2 f0 = __bfloat1622float2(u2[0]), f1 = __bfloat1622float2(u2[1]);
            const float2 f2 = __bfloat1622float2(u2[2]), f3 = __bfloat1622float2(u2[3]);
            float4 *dst = reinterpret_cast<float4 *>(v + t * nv * dv) + 2 * i;
            dst[0] = make_float4(f0.x, f0.y, f1.x, f1.y);
            dst[1] = make_float4(f2.x, f2.y, f3.x, f3.y);
        }
    }
    for (int h = threadIdx.x; h < nv; h += blockDim.x) {
        const float bv = b[t * nv + h], av = a[t * nv + h] + dt_bias[h];
        beta[t * nv + h] = plm_sigmoid_d(bv);
        g[t * nv + h] = neg_A[h] * (av > 20.0f ? av : log1pf(expf(av)));
    }
}

extern "C" void plm_gdn_prep_bb_cuda(float *q, float *k, float *v, void *qkv_bf, float *beta, float *g,
                                     const void *mixed, const float *b, const float *a, const float *neg_A,
                                     const float *dt_bias, const int32_t *cu, const int32_t *seg_of, int64_t T, int nk,
                                     int nv, int dk, int dv, void *stream) {
    const int lph = dk / 8;
    const bool fits = dk % 8 == 0 && lph >= 1 && lph <= 32 && (lph & (lph - 1)) == 0 && (nv * dv) % 8 == 0 &&
                      plm_aligned16(q) && plm_aligned16(k) && plm_aligned16(v) && plm_aligned16(qkv_bf) &&
                      plm_aligned16(mixed);
    cudaStream_t st = PLM_STREAM(stream);
    const __nv_bfloat16 *mx = (const __nv_bfloat16 *)mixed;
    __nv_bfloat16 *qb = (__nv_bfloat16 *)qkv_bf;
#define BB8(L)                                                                                                      \
    k_gdn_prep_bb8<L><<<(unsigned)T, GDN_PREP_THREADS, 0, st>>>(q, k, v, qb, T, beta, g, mx, b, a, neg_A, dt_bias, nk, \
                                                               nv, dk, dv, cu, seg_of, PLM_GDN_CHUNKED_MIN)
    if (T <= 0) return;
    if (!fits || T > 2147483647) gdn_prep(q, k, v, qb, beta, g, mx, b, a, neg_A, dt_bias, T, nk, nv, dk, dv, cu, seg_of,
                                          PLM_GDN_CHUNKED_MIN, st);
    else if (lph == 1) BB8(1);
    else if (lph == 2) BB8(2);
    else if (lph == 4) BB8(4);
    else if (lph == 8) BB8(8);
    else if (lph == 16) BB8(16);
    else BB8(32);
#undef BB8
}

__global__ void k_rope(float *x, const int64_t *pos, int64_t T, int nh, int hd, int half, const float *inv_freq) {
    plm_pdl_enter();
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
    plm_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        gate[i] = plm_silu_d(gate[i]) * up[i];
}

extern "C" void plm_swiglu_cuda(float *gate, const float *up, int64_t n, void *stream) {
    if (n > 0) k_swiglu<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>(gate, up, n);
}

__global__ void k_swiglu_bf16(__nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *gate, const float *up, int64_t n) {
    plm_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        put_bf16(hi, lo, i, plm_silu_d(gate[i]) * up[i]);
}

/* BF16 gate and up (single-pass GEMM outputs) of rows of I values, row t of each at t * ld (out rows
 * contiguous), 8 values a thread by 16-byte loads where every pointer and ld is 16-byte aligned and
 * I % 8 == 0 (one at a time otherwise) */
template <bool VEC>
__global__ void k_swiglu_bb(__nv_bfloat16 *out, const __nv_bfloat16 *gate, const __nv_bfloat16 *up, int64_t rows,
                            int64_t I, int64_t ld) {
    plm_pdl_enter();
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    if constexpr (VEC) {
        const int64_t i8 = I / 8;
        for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < rows * i8; e += step) {
            const int64_t t = e / i8, c = e - t * i8;
            const uint4 g4 = reinterpret_cast<const uint4 *>(gate + t * ld)[c];
            const uint4 u4 = reinterpret_cast<const uint4 *>(up + t * ld)[c];
            const __nv_bfloat162 *g = reinterpret_cast<const __nv_bfloat162 *>(&g4);
            const __nv_bfloat162 *u = reinterpret_cast<const __nv_bfloat162 *>(&u4);
            uint4 o4;
            __nv_bfloat162 *o = reinterpret_cast<__nv_bfloat162 *>(&o4);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const float2 gf = __bfloat1622float2(g[j]), uf = __bfloat1622float2(u[j]);
                o[j] = __floats2bfloat162_rn(plm_silu_d(gf.x) * uf.x, plm_silu_d(gf.y) * uf.y);
            }
            reinterpret_cast<uint4 *>(out)[e] = o4;
        }
    } else {
        for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < rows * I; e += step) {
            const int64_t t = e / I, c = e - t * I;
            out[e] = __float2bfloat16_rn(plm_silu_d(__bfloat162float(gate[t * ld + c])) * __bfloat162float(up[t * ld + c]));
        }
    }
}

static void swiglu_bb(void *out, const void *gate, const void *up, int64_t rows, int64_t I, int64_t ld,
                      cudaStream_t st) {
    if (rows <= 0 || I <= 0) return;
    __nv_bfloat16 *o = (__nv_bfloat16 *)out;
    const __nv_bfloat16 *g = (const __nv_bfloat16 *)gate, *u = (const __nv_bfloat16 *)up;
    if (I % 8 == 0 && ld % 8 == 0 && plm_aligned16(out) && plm_aligned16(gate) && plm_aligned16(up))
        k_swiglu_bb<true><<<plm_blocks(rows * I / 8, 256), 256, 0, st>>>(o, g, u, rows, I, ld);
    else
        k_swiglu_bb<false><<<plm_blocks(rows * I, 256), 256, 0, st>>>(o, g, u, rows, I, ld);
}

extern "C" void plm_swiglu_bb_cuda(void *out, const void *gate, const void *up, int64_t n, void *stream) {
    swiglu_bb(out, gate, up, 1, n, n, PLM_STREAM(stream));
}

extern "C" void plm_swiglu_bb_rows_cuda(void *out, const void *gu, int64_t rows, int64_t I, void *stream) {
    swiglu_bb(out, gu, (const __nv_bfloat16 *)gu + I, rows, I, 2 * I, PLM_STREAM(stream));
}

__global__ void k_swiglu_bf16_4(__nv_bfloat16 *hi, __nv_bfloat16 *lo, const float4 *gate, const float4 *up, int64_t n4) {
    plm_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
        const float4 g = gate[i], u = up[i];
        put4_bf16(hi, lo, i,
                  make_float4(plm_silu_d(g.x) * u.x, plm_silu_d(g.y) * u.y, plm_silu_d(g.z) * u.z, plm_silu_d(g.w) * u.w));
    }
}

extern "C" void plm_swiglu_bf16_cuda(void *hi, void *lo, const float *gate, const float *up, int64_t n, void *stream) {
    if (n > 0 && n % 4 == 0 && ((((uintptr_t)gate | (uintptr_t)up) & 15) | (((uintptr_t)hi | (uintptr_t)lo) & 7)) == 0)
        k_swiglu_bf16_4<<<plm_blocks(n / 4, 256), 256, 0, PLM_STREAM(stream)>>>(
            (__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo, (const float4 *)gate, (const float4 *)up, n / 4);
    else if (n > 0)
        k_swiglu_bf16<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>((__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo,
                                                                          gate, up, n);
}

/* the same from one FP32 [rows, 2 I] array gu whose rows hold gate then up (the stacked product's
 * output), out [rows, I]: four values a thread by 16-byte loads where gu is 16-byte aligned, hi and lo
 * 8-byte aligned and I % 4 == 0, one at a time otherwise */
template <bool VEC>
__global__ void k_swiglu_bf16_rows(__nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *gu, int64_t rows, int64_t I) {
    plm_pdl_enter();
    const int64_t step = (int64_t)gridDim.x * blockDim.x, w = VEC ? I / 4 : I;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < rows * w; e += step) {
        const int64_t t = e / w, c = e - t * w;
        if constexpr (VEC) {
            const float4 g = reinterpret_cast<const float4 *>(gu + 2 * I * t)[c];
            const float4 u = reinterpret_cast<const float4 *>(gu + 2 * I * t + I)[c];
            put4_bf16(hi, lo, e,
                      make_float4(plm_silu_d(g.x) * u.x, plm_silu_d(g.y) * u.y, plm_silu_d(g.z) * u.z,
                                  plm_silu_d(g.w) * u.w));
        } else {
            put_bf16(hi, lo, e, plm_silu_d(gu[2 * I * t + c]) * gu[2 * I * t + I + c]);
        }
    }
}

extern "C" void plm_swiglu_bf16_rows_cuda(void *hi, void *lo, const float *gu, int64_t rows, int64_t I, void *stream) {
    if (rows <= 0 || I <= 0) return;
    __nv_bfloat16 *h = (__nv_bfloat16 *)hi, *l = (__nv_bfloat16 *)lo;
    if (I % 4 == 0 && (((uintptr_t)gu & 15) | (((uintptr_t)hi | (uintptr_t)lo) & 7)) == 0)
        k_swiglu_bf16_rows<true><<<plm_blocks(rows * I / 4, 256), 256, 0, PLM_STREAM(stream)>>>(h, l, gu, rows, I);
    else
        k_swiglu_bf16_rows<false><<<plm_blocks(rows * I, 256), 256, 0, PLM_STREAM(stream)>>>(h, l, gu, rows, I);
}

/* y[i] = a[i] + a[n + i]: the two halves of a product over stacked inputs (hi rows, then lo rows) */
__global__ void k_add_halves4(float4 *y, const float4 *a, int64_t n4) {
    plm_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
        const float4 u = a[i], v = a[n4 + i];
        y[i] = make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w);
    }
}

__global__ void k_add_halves(float *y, const float *a, int64_t n) {
    plm_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = a[i] + a[n + i];
}

extern "C" void plm_add_halves_cuda(float *y, const float *a, int64_t n, void *stream) {
    if (n <= 0) return;
    if (n % 4 == 0 && (((uintptr_t)y | (uintptr_t)a) & 15) == 0)
        k_add_halves4<<<plm_blocks(n / 4, 256), 256, 0, PLM_STREAM(stream)>>>((float4 *)y, (const float4 *)a, n / 4);
    else
        k_add_halves<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>(y, a, n);
}

__global__ void k_gate_mul_bf16(__nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *o, const float *gate, int64_t n) {
    plm_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float y = o[i];
        y *= plm_sigmoid_d(gate[i]);
        put_bf16(hi, lo, i, y);
    }
}

/* the gate read in place from the q projection's output qg [rows, 2 hd] (per head: query then gate) */
__global__ void k_gate_mul_qg_bf16(__nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *o, const float *qg, int64_t n,
                                   int hd) {
    plm_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t th = i / hd;
        put_bf16(hi, lo, i, o[i] * plm_sigmoid_d(qg[th * 2 * hd + hd + (i - th * hd)]));
    }
}

extern "C" void plm_gate_mul_qg_bf16_cuda(void *hi, void *lo, const float *o, const float *qg, int64_t rows, int hd,
                                          void *stream) {
    const int64_t n = rows * hd;
    if (n > 0)
        k_gate_mul_qg_bf16<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>((__nv_bfloat16 *)hi,
                                                                               (__nv_bfloat16 *)lo, o, qg, n, hd);
}

extern "C" void plm_gate_mul_bf16_cuda(void *hi, void *lo, const float *o, const float *gate, int64_t n, void *stream) {
    if (n > 0)
        k_gate_mul_bf16<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>((__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo,
                                                                            o, gate, n);
}

__global__ void k_gate_mul(float *o, const float *gate, int64_t n) {
    plm_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        o[i] *= plm_sigmoid_d(gate[i]);
}

extern "C" void plm_gate_mul_cuda(float *o, const float *gate, int64_t n, void *stream) {
    if (n > 0) k_gate_mul<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>(o, gate, n);
}

/* one thread per token: the CPU's routing function itself (kernels/route.h) */
__global__ void k_moe_route(int32_t *idx, float *w, const float *logits, int64_t T, int E, int k) {
    plm_pdl_enter();
    const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t < T) plm_route_token(idx + t * k, w + t * k, logits + t * E, E, k);
}

extern "C" void plm_moe_route_cuda(int32_t *idx, float *w, const float *logits, int64_t T, int E, int k, void *stream) {
    if (T > 0) k_moe_route<<<plm_blocks(T, 128), 128, 0, PLM_STREAM(stream)>>>(idx, w, logits, T, E, k);
}

__global__ void k_embed(float *x, const void *E, int bf16, int64_t cols, const int32_t *tokens) {
    plm_pdl_enter();
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
    plm_pdl_enter();
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
    plm_pdl_enter();
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
    plm_pdl_enter();
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
    plm_pdl_enter();
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
        out[e] += plm_sigmoid_d(score[e / H]) * y[e];
}

extern "C" void plm_sigmoid_scale_add_cuda(float *out, const float *y, const float *score, int64_t T, int H,
                                           void *stream) {
    const int64_t n = T * H;
    if (n > 0) k_sigmoid_scale_add<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>(out, y, score, n, H);
}

__global__ void k_to_bf16(__nv_bfloat16 *dst, __nv_bfloat16 *lo, const float *src, int64_t n) {
    plm_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const __nv_bfloat16 hi = __float2bfloat16_rn(src[i]);
        dst[i] = hi;
        if (lo) lo[i] = __float2bfloat16_rn(src[i] - __bfloat162float(hi));
    }
}

/* four values a thread: 16-byte loads, 8-byte stores (every pointer 16- / 8-byte aligned, n % 4 == 0) */
__global__ void k_to_bf16_4(__nv_bfloat16 *dst, __nv_bfloat16 *lo, const float4 *src, int64_t n4) {
    plm_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x)
        put4_bf16(dst, lo, i, src[i]);
}

extern "C" void plm_to_bf16_cuda(void *dst, void *lo, const float *src, int64_t n, void *stream) {
    if (n <= 0) return;
    if (n % 4 == 0 && ((uintptr_t)src & 15) == 0 && ((uintptr_t)dst & 7) == 0 && ((uintptr_t)lo & 7) == 0)
        k_to_bf16_4<<<plm_blocks(n / 4, 256), 256, 0, PLM_STREAM(stream)>>>((__nv_bfloat16 *)dst, (__nv_bfloat16 *)lo,
                                                                            (const float4 *)src, n / 4);
    else
        k_to_bf16<<<plm_blocks(n, 256), 256, 0, PLM_STREAM(stream)>>>((__nv_bfloat16 *)dst, (__nv_bfloat16 *)lo, src, n);
}
