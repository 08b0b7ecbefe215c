/* Products with BF16 weights for a few rows of input (decode): y[t, r] = sum_c W[r, c] x[t, c].
 * cuBLAS at T = 1 .. 8 reads the weights once per pass (twice for a split hi + lo input) behind a
 * conversion kernel; here one kernel reads every weight once, 16 bytes a load, for all T inputs at
 * once. A warp owns R rows (a row group) and, where the row groups are too few to fill the GPU, a
 * slice of the columns (ks warps of one block share a row group, summed through shared memory). Its
 * lanes take chunks of 8 columns (lane, lane + 32 ks, ...), U chunks a row in flight, the inputs read
 * through L1 (they are small and every warp reads them); the warp's sums close with a transposed
 * shuffle reduction. One launch takes up to PLM_GEMV_MULTI products that share the input (the
 * projections of one hidden state): their row groups form one grid, product after product, each with
 * the column split it would have alone, so each product's arithmetic is that of its own launch. */
#include <cuda_bf16.h>
#include <limits.h>
#include <string.h>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

#ifndef GEMV_WARPS
#define GEMV_WARPS 4        /* warps a block (a row group's column slices stay in one block: ks divides it) */
#endif
#ifndef GEMV_MIN_WARPS
#define GEMV_MIN_WARPS 2048 /* columns are split until a call has this many warps (about 16 an SM on 132) */
#endif
static_assert(GEMV_WARPS > 0 && (GEMV_WARPS & (GEMV_WARPS - 1)) == 0,
              "GEMV_WARPS a power of two: the column splits (powers of two) must divide it");

enum { IN_F32, IN_BF16, IN_BF16_LO }; /* x in FP32; BF16; BF16 hi plus its BF16 remainder lo */

/* Rows a warp: every 16 bytes of weights meet 32 bytes of each FP32 input read from L1, so at larger
 * T a warp takes more rows to share those reads (L1 then keeps pace with memory); at T = 1 two rows,
 * for more loads in flight and half the reductions. U: chunks a row in flight per lane, about 8 loads
 * of 16 bytes in all. P: the R * T sums padded to a power of two for the reduction, Q = 5 - log2 P. */
template <int T> struct gemv_shape {
    static constexpr int R = T < 2 ? 2 : T < 4 ? T : 4;
    static constexpr int U = 8 / R;
    static constexpr int P = R * T <= 2 ? 2 : R * T <= 4 ? 4 : R * T <= 8 ? 8 : R * T <= 16 ? 16 : 32;
    static constexpr int Q = P == 2 ? 4 : P == 4 ? 3 : P == 8 ? 2 : P == 16 ? 1 : 0;
};

/* Sums N values (a power of two, at most 32) over the warp, transposed: the exchange at offset O halves
 * the values a lane keeps (a lane with bit O set keeps the upper half and receives its partner's copy
 * of it), then offset O / 2; N - 1 + 5 - log2 N shuffles in all rather than 5 N. From O = 16, lane l
 * ends with the total of value l >> (5 - log2 N) in v[0]. */
template <int N, int O> __device__ __forceinline__ void warp_sums(float *v, int lane) {
    if constexpr (O > 0) {
        if constexpr (N > 1) {
            const bool up = lane & O;
#pragma unroll
            for (int j = 0; j < N / 2; j++) {
                const float send = up ? v[j] : v[j + N / 2], keep = up ? v[j + N / 2] : v[j];
                v[j] = keep + __shfl_xor_sync(0xffffffffu, send, O);
            }
        } else {
            v[0] += __shfl_xor_sync(0xffffffffu, v[0], O);
        }
        warp_sums<(N > 1 ? N / 2 : 1), O / 2>(v, lane);
    }
}

/* inputs at..at+7 as FP32 (hi + lo is exact in FP32: lo is below half an ulp of hi, 8 bits each) */
template <int IN> __device__ __forceinline__ void load8(float *v, const void *x, const uint16_t *lo, int64_t at) {
    if constexpr (IN == IN_F32) {
        const float4 a = __ldg((const float4 *)((const float *)x + at)),
                     b = __ldg((const float4 *)((const float *)x + at + 4));
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
        plm_unpack8(v, __ldg((const uint4 *)((const uint16_t *)x + at)));
        if constexpr (IN == IN_BF16_LO) {
            float l[8];
            plm_unpack8(l, __ldg((const uint4 *)(lo + at)));
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] += l[j];
        }
    }
}

template <int IN> __device__ __forceinline__ float load1(const void *x, const uint16_t *lo, int64_t at) {
    if constexpr (IN == IN_F32) {
        return __ldg((const float *)x + at);
    } else {
        float v = plm_bf16_bits_to_f32(__ldg((const unsigned short *)x + at));
        if constexpr (IN == IN_BF16_LO) v += plm_bf16_bits_to_f32(__ldg(lo + at));
        return v;
    }
}

__device__ __forceinline__ float dot8(uint4 w, const float *x, float acc) {
    float v[8];
    plm_unpack8(v, w);
#pragma unroll
    for (int j = 0; j < 8; j++) acc = fmaf(v[j], x[j], acc);
    return acc;
}

/* one round of a warp's weight loads: U chunks of 8 columns of each of its R rows, from chunk c0 on
 * (step apart; past n8: zeros, unused) */
template <int U, int R>
__device__ __forceinline__ void gemv_round(uint4 (*wv)[R], const uint16_t *const *Wr, int64_t c0, int64_t n8,
                                           int64_t step) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int64_t c = c0 + u * step;
#pragma unroll
        for (int i = 0; i < R; i++) wv[u][i] = c < n8 ? plm_ld_stream16(Wr[i] + c * 8) : make_uint4(0, 0, 0, 0);
    }
}

/* The rows of block b of one product: ks warps share a row group, each a slice of the columns. vec:
 * cols % 8 == 0 and W, x (or xb and lo) 16-byte aligned, so every row's chunks are 16-byte loads;
 * otherwise one column a lane at a time. Inlined into the kernels below: a product's arithmetic is
 * the same whichever launches it. It calls plm_pdl_enter (on every path, before x is read). */
/* GLU (R even): the gated product of the MLP instead, out[t, r] = silu(Wg[r] . x_t) (W[r] . x_t) as
 * BF16 hi + lo (what the swiglu kernel writes from the two products), W the up weights and Wg the gate
 * weights: a warp's rows are pairs (gate r, up r), R / 2 output rows a warp. Each sum is the one the
 * plain product computes for that row (the same column split, order and reduction), bit for bit. */
template <int T, int IN, bool GLU = false>
__device__ __forceinline__ void gemv_block(float (*part)[gemv_shape<T>::R * T], float *__restrict__ y,
                                           const uint16_t *__restrict__ W, const void *__restrict__ x,
                                           const uint16_t *__restrict__ lo, int64_t rows, int64_t cols, int ks,
                                           int vec, unsigned b, const uint16_t *__restrict__ Wg = nullptr,
                                           __nv_bfloat16 *__restrict__ ohi = nullptr,
                                           __nv_bfloat16 *__restrict__ olo = nullptr) {
    constexpr int R = gemv_shape<T>::R, U = gemv_shape<T>::U, P = gemv_shape<T>::P, Q = gemv_shape<T>::Q;
    static_assert(!GLU || R % 2 == 0, "GLU rows come in (gate, up) pairs");
    constexpr int RO = GLU ? R / 2 : R; /* output rows a warp */
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int64_t gw = (int64_t)b * GEMV_WARPS + w, r0 = gw / ks * RO;
    /* weight row i of this warp: output row r0 + i (GLU: r0 + i / 2 of the gate for even i, of W for odd) */
    auto wrow = [&](int i) {
        const int64_t r = GLU ? r0 + i / 2 : r0 + i;
        return (GLU && !(i & 1) ? Wg : W) + (r < rows ? r : rows - 1) * cols;
    };
    const int s = (int)(gw % ks); /* this warp's column slice; warps w - s .. w - s + ks - 1 share the rows */
    float acc[P]; /* acc[i * T + t]: row r0 + i, input t; the padding stays 0 */
#pragma unroll
    for (int k = 0; k < P; k++) acc[k] = 0.0f;
    if (r0 < rows && vec) { /* the rows past the end (a short last group) read the last row, and are not written */
        const uint16_t *Wr[R];
#pragma unroll
        for (int i = 0; i < R; i++) Wr[i] = wrow(i);
        const int64_t step = 32 * (int64_t)ks, n8 = cols >> 3;
        int64_t c0 = s * 32 + lane;
        uint4 wv[U][R]; /* every load of a round issued before its first product */
        gemv_round<U, R>(wv, Wr, c0, n8, step);
        plm_pdl_enter(); /* the weights are constant: the first round loads while the kernel before ends */
        for (; c0 < n8; c0 += U * step) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int64_t c = c0 + u * step;
                if (c >= n8) break;
#pragma unroll
                for (int t = 0; t < T; t++) {
                    float xv[8];
                    load8<IN>(xv, x, lo, t * cols + c * 8);
#pragma unroll
                    for (int i = 0; i < R; i++) acc[i * T + t] = dot8(wv[u][i], xv, acc[i * T + t]);
                }
            }
            if (c0 + U * step < n8) gemv_round<U, R>(wv, Wr, c0 + U * step, n8, step);
        }
    } else {
        plm_pdl_enter();
        if (r0 < rows) {
            const uint16_t *Wr[R];
#pragma unroll
            for (int i = 0; i < R; i++) Wr[i] = wrow(i);
            const int64_t step = 32 * (int64_t)ks;
            for (int64_t c = s * 32 + lane; c < cols; c += step) {
                float wv[R];
#pragma unroll
                for (int i = 0; i < R; i++) wv[i] = plm_bf16_bits_to_f32(__ldg((const unsigned short *)Wr[i] + c));
#pragma unroll
                for (int t = 0; t < T; t++) {
                    const float xv = load1<IN>(x, lo, t * cols + c);
#pragma unroll
                    for (int i = 0; i < R; i++) acc[i * T + t] = fmaf(wv[i], xv, acc[i * T + t]);
                }
            }
        }
    }
    /* lane k << Q (k < R * T) holds sum k: row r0 + k / T, input k % T */
    warp_sums<P, 16>(acc, lane);
    const float v = acc[0];
    const int k = lane >> Q, own = (lane & ((1 << Q) - 1)) == 0 && k < R * T;
    if constexpr (GLU) { /* sum k (k / T even: a gate row) meets its up row's, k + T, a shuffle away */
        float sum = v;
        if (ks > 1) {
            if (own) part[w][k] = v;
            __syncthreads(); /* ks is the block's: every warp of the block gets here */
            if (s != 0) return;
            sum = 0.0f;
            for (int j = 0; j < ks && lane < R * T; j++) sum += part[w + j][lane];
        }
        const int sh = ks > 1 ? 0 : Q, kk = lane >> sh; /* the lanes holding sums: lane = k << sh */
        const float up = __shfl_down_sync(0xffffffffu, sum, T << sh);
        if ((lane & ((1 << sh) - 1)) == 0 && kk < R * T && !((kk / T) & 1) && r0 + kk / (2 * T) < rows) {
            const float yv = plm_silu_d(sum) * up;
            const __nv_bfloat16 h = __float2bfloat16_rn(yv);
            const int64_t at = kk % T * rows + r0 + kk / (2 * T);
            ohi[at] = h;
            if (olo) olo[at] = __float2bfloat16_rn(yv - __bfloat162float(h));
        }
        return;
    }
    if (ks == 1) {
        if (own && r0 + k / T < rows) y[k % T * rows + r0 + k / T] = v;
        return;
    }
    if (own) part[w][k] = v;
    __syncthreads(); /* ks is the block's (one product's): every warp of the block gets here */
    if (s == 0 && lane < R * T && r0 + lane / T < rows) { /* the slices summed in order */
        float sum = 0.0f;
        for (int j = 0; j < ks; j++) sum += part[w + j][lane];
        y[lane % T * rows + r0 + lane / T] = sum;
    }
}

/* one product: its shape in the kernel's parameters */
template <int T, int IN>
__global__ void __launch_bounds__(32 * GEMV_WARPS)
    k_gemv(float *__restrict__ y, const uint16_t *__restrict__ W, const void *__restrict__ x,
           const uint16_t *__restrict__ lo, int64_t rows, int64_t cols, int ks, int vec) {
    __shared__ float part[GEMV_WARPS][gemv_shape<T>::R * T];
    gemv_block<T, IN>(part, y, W, x, lo, rows, cols, ks, vec, blockIdx.x);
}

/* Products that share the input, one launch: product j has blocks first[j] .. first[j + 1] - 1 (first
 * past the set: UINT_MAX, never reached). */
struct gemv_set {
    float *y[PLM_GEMV_MULTI];
    const uint16_t *W[PLM_GEMV_MULTI];
    int64_t rows[PLM_GEMV_MULTI];
    int ks[PLM_GEMV_MULTI], vec[PLM_GEMV_MULTI];
    unsigned first[PLM_GEMV_MULTI];
};

template <int T, int IN>
__global__ void __launch_bounds__(32 * GEMV_WARPS)
    k_gemv_multi(const gemv_set set, const void *__restrict__ x, const uint16_t *__restrict__ lo, int64_t cols) {
    __shared__ float part[GEMV_WARPS][gemv_shape<T>::R * T];
    /* this block's product: the last one starting at or before it (constant indices, so the set is read
       from the parameter bank, not copied to local memory) */
    int j = 0;
#pragma unroll
    for (int i = 1; i < PLM_GEMV_MULTI; i++)
        if (blockIdx.x >= set.first[i]) j = i;
    float *y = set.y[0];
    const uint16_t *W = set.W[0];
    int64_t rows = set.rows[0];
    int ks = set.ks[0], vec = set.vec[0];
    unsigned first = 0;
#pragma unroll
    for (int i = 1; i < PLM_GEMV_MULTI; i++)
        if (j == i) y = set.y[i], W = set.W[i], rows = set.rows[i], ks = set.ks[i], vec = set.vec[i], first = set.first[i];
    gemv_block<T, IN>(part, y, W, x, lo, rows, cols, ks, vec, blockIdx.x - first);
}

/* a product's column split: columns are split (ks warps share a row group) while warps are few and
 * every lane keeps a chunk; groups: its row groups, units: its 8-column chunks (vec) or columns */
static int gemv_split(int64_t groups, int64_t units) {
    int ks = 1;
    while (ks < GEMV_WARPS && groups * ks < GEMV_MIN_WARPS && units >= 64 * ks) ks *= 2;
    return ks;
}

/* n products (1 .. PLM_GEMV_MULTI) of set, their y, W, rows and vec filled: each one's column split as
 * it would be alone, its blocks after the previous product's; one product takes k_gemv */
template <int T, int IN>
static void launch(gemv_set set, int n, const void *x, const uint16_t *lo, int64_t cols, cudaStream_t st) {
    int64_t blocks = 0;
    for (int j = 0; j < PLM_GEMV_MULTI; j++) {
        if (j >= n) {
            set.ks[j] = 1, set.first[j] = UINT_MAX;
            continue;
        }
        const int64_t groups = (set.rows[j] + gemv_shape<T>::R - 1) / gemv_shape<T>::R,
                      units = set.vec[j] ? cols / 8 : cols;
        const int ks = gemv_split(groups, units);
        set.ks[j] = ks;
        set.first[j] = (unsigned)blocks;
        blocks += (groups * ks + GEMV_WARPS - 1) / GEMV_WARPS;
    }
    if (n == 1)
        k_gemv<T, IN><<<(unsigned)blocks, 32 * GEMV_WARPS, 0, st>>>(set.y[0], set.W[0], x, lo, set.rows[0], cols,
                                                                    set.ks[0], set.vec[0]);
    else
        k_gemv_multi<T, IN><<<(unsigned)blocks, 32 * GEMV_WARPS, 0, st>>>(set, x, lo, cols);
}

/* T as a template argument: one kernel for each T up to PLM_GEMV_MAX_T */
template <int IN, int T = 1>
static void launch_t(int64_t nt, const gemv_set &set, int n, const void *x, const uint16_t *lo, int64_t cols,
                     cudaStream_t st) {
    if (nt == T) launch<T, IN>(set, n, x, lo, cols, st);
    else if constexpr (T < PLM_GEMV_MAX_T) launch_t<IN, T + 1>(nt, set, n, x, lo, cols, st);
}

static void launch_in(const gemv_set &set, int n, const float *x, const void *xb, const uint16_t *lo, int64_t T,
                      int64_t cols, cudaStream_t st) {
    if (x) launch_t<IN_F32>(T, set, n, x, NULL, cols, st);
    else if (lo) launch_t<IN_BF16_LO>(T, set, n, xb, lo, cols, st);
    else launch_t<IN_BF16>(T, set, n, xb, NULL, cols, st);
}

extern "C" void plm_gemv_bf16_multi_cuda(int n, float *const *y, const void *const *W, const int64_t *rows,
                                         const float *x, const void *xb, const void *lo, int64_t T, int64_t cols,
                                         void *stream) {
    if (T < 1 || T > PLM_GEMV_MAX_T) return;
    const void *in = x ? (const void *)x : xb;
    const uint16_t *l16 = x ? NULL : (const uint16_t *)lo;
    const int in_vec = cols % 8 == 0 && plm_aligned16(in) && (!l16 || plm_aligned16(l16));
    cudaStream_t st = PLM_STREAM(stream);
    plm_product_sets<gemv_set>(
        n, y, W, rows, [&](const void *w) { return (int)(in_vec && plm_aligned16(w)); },
        [&](const gemv_set &set, int m) { launch_in(set, m, x, xb, l16, T, cols, st); });
}

extern "C" void plm_gemv_bf16_cuda(float *y, const void *W, const float *x, const void *xb, const void *lo, int64_t T,
                                   int64_t rows, int64_t cols, void *stream) {
    plm_gemv_bf16_multi_cuda(1, &y, &W, &rows, x, xb, lo, T, cols, stream);
}

/* the MLP's gated product for T rows (R even: T = 1, 2 or 4 .. 8), FP32 (IN_F32) or BF16 (IN_BF16)
 * input: a block's warps as gemv_block<GLU> lays them out */
template <int T, int IN>
__global__ void __launch_bounds__(32 * GEMV_WARPS)
    k_gemv_glu(__nv_bfloat16 *__restrict__ hi, __nv_bfloat16 *__restrict__ lo, const uint16_t *__restrict__ Wg,
               const uint16_t *__restrict__ Wu, const void *__restrict__ x, int64_t rows, int64_t cols, int ks,
               int vec) {
    __shared__ float part[GEMV_WARPS][gemv_shape<T>::R * T];
    gemv_block<T, IN, true>(part, NULL, Wu, x, NULL, rows, cols, ks, vec, blockIdx.x, Wg, hi, lo);
}

template <int T = 1>
static int launch_glu(int64_t nt, void *hi, void *lo, const void *Wg, const void *Wu, int64_t rows, const void *x,
                      int bf_in, int64_t cols, int vec, cudaStream_t st) {
    if constexpr (gemv_shape<T>::R % 2 == 0) {
        if (nt == T) {
            /* the column split the gate's product would have alone (launch), so that its sums are the same */
            const int64_t groups = (rows + gemv_shape<T>::R - 1) / gemv_shape<T>::R, units = vec ? cols / 8 : cols;
            const int ks = gemv_split(groups, units);
            const int64_t rpw = gemv_shape<T>::R / 2, warps = (rows + rpw - 1) / rpw * ks;
            const unsigned nb = (unsigned)((warps + GEMV_WARPS - 1) / GEMV_WARPS);
            if (bf_in)
                k_gemv_glu<T, IN_BF16><<<nb, 32 * GEMV_WARPS, 0, st>>>((__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo,
                                                                      (const uint16_t *)Wg, (const uint16_t *)Wu, x,
                                                                      rows, cols, ks, vec);
            else
                k_gemv_glu<T, IN_F32><<<nb, 32 * GEMV_WARPS, 0, st>>>((__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo,
                                                                     (const uint16_t *)Wg, (const uint16_t *)Wu, x, rows,
                                                                     cols, ks, vec);
            return 1;
        }
    }
    if constexpr (T < PLM_GEMV_MAX_T) return launch_glu<T + 1>(nt, hi, lo, Wg, Wu, rows, x, bf_in, cols, vec, st);
    return 0;
}

extern "C" int plm_gemv_glu_bf16_cuda(void *hi, void *lo, const void *Wg, const void *Wu, int64_t rows,
                                      const float *x, const void *xb, int64_t T, int64_t cols, void *stream) {
    if (T < 1 || T > PLM_GEMV_MAX_T || rows <= 0 || cols <= 0 || (!x && !xb)) return 0;
    /* one weight aligned and the other not: the plain products would sum them differently */
    if (plm_aligned16(Wg) != plm_aligned16(Wu)) return 0;
    const void *in = x ? (const void *)x : xb;
    const int vec = cols % 8 == 0 && plm_aligned16(in) && plm_aligned16(Wg) && plm_aligned16(Wu);
    return launch_glu(T, hi, lo, Wg, Wu, rows, in, !x, cols, vec, PLM_STREAM(stream));
}
