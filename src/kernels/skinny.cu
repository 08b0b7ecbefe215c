/* Products with BF16 weights for 9 .. 64 rows of input (several sequences decoding together) on
 * tensor cores: y[t, r] = sum_c W[r, c] x[t, c], every weight read once.
 *
 * Above PLM_GEMV_MAX_T rows the FP32 FMAs of kernels/gemv.cu outweigh the bytes, while cuBLAS reads
 * the weights once per pass (twice for the precise hi + lo input) behind a conversion kernel. Here
 * mma.sync m16n8k16 takes the WEIGHTS as the A operand (16 rows x 16 columns a fragment), loaded
 * straight from global memory 16 bytes a lane past L1, and the inputs as the B operand (8 rows of
 * input, tokens, an n-tile), staged a chunk of columns at a time into shared memory as BF16: hi and,
 * precise, lo, each FP32 input split as plm_to_bf16_cuda splits it, so that the FP32 form gives the
 * hi + lo form's bits. The products are W hi + W lo (the two passes of cuBLAS, in one).
 *
 * Columns are permuted within each group of 32 so that 16 bytes of a weight row are the A fragments
 * of two mma's and 16 bytes of an input row their B fragments: lane 4g + t holds columns 8t .. 8t + 7
 * of rows g and g + 8, and mma j (0, 1) takes words 2j and 2j + 1 of them, i.e. k = 2t, 2t + 1 is
 * column 8t + 4j, + 1 and k = 2t + 8, 2t + 9 is column 8t + 4j + 2, + 3, for A and B alike (a sum over
 * k does not depend on which column each k names, only on the pairing being the same on both sides).
 *
 * A block of SK_WARPS warps owns a band of RB rows (16 a warp) and a span of the columns, which it
 * walks in chunks of KC: the next chunk's inputs are staged into the second of two shared buffers
 * before this chunk's products, and each 32-column group's weight registers load the next chunk's
 * group as soon as its products are issued, so a warp keeps a chunk of weight loads in flight; one
 * barrier a chunk. Where the bands are too few to fill the GPU the columns are split over S blocks a band, each
 * writing its partial sums into a workspace; the band's last block to finish (an atomic counter that
 * wraps back to zero for the next launch) adds the S partials in split order: the same bits every
 * run, whichever block is last. Up to PLM_GEMV_MULTI products that share the input run in one launch,
 * each with the decomposition (and so the bits) it would have alone. */
#include <cuda_bf16.h>
#include <limits.h>
#include <string.h>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"
#include "kernels/mma.cuh"

#define SK_WARPS 8          /* warps a block */
#define SK_MIN_BLOCKS 256   /* the columns are split until a call has this many blocks (about two an SM on 132) */
#define SK_MIN_SPAN 256     /* columns a split at least (its partial sums stay small next to its weights) */
#define SK_MAX_SPLIT 16     /* splits a band at most */
#define SK_SLOT_FLOATS (1 << 20) /* workspace of one product of a launch: partial sums (4 MiB) */
#define SK_SLOT_BANDS 1024       /* and counters: bands of a split product at most */

enum { IN_F32, IN_BF16, IN_BF16_LO }; /* x in FP32 (split in hi + lo); BF16; BF16 hi plus its remainder lo */

/* NT n-tiles of 8 inputs (T <= 8 NT). MT: m-tiles of 16 rows a warp (2 would let each input fragment
 * serve 32 rows, but its 64 accumulators at T = 64 leave one block an SM). KC: columns a chunk, its
 * weights 2 MT KC / 32 loads of 16 bytes a lane (8 in flight, or 4 from T = 33, where the inputs'
 * double buffer would pass 48 KB and the products take longer); MINB blocks an SM (registers <= 128). */
template <int NT> struct sk_shape {
    static constexpr int MT = 1;
    static constexpr int KC = NT <= 4 ? 128 : 64;
    static constexpr int MINB = 2;
    static constexpr int G = KC / 32;             /* 32-column groups a chunk */
    static constexpr int UPR = KC / 8;            /* 16-byte units of an input row in a chunk (>= 8: swizzle) */
    static constexpr int N = NT * 8;              /* input rows staged (zero from T on) */
    static constexpr int RB = SK_WARPS * 16 * MT; /* rows a band */
    static constexpr int UNITS = N * UPR;         /* units staged a chunk */
    static constexpr int PER = (UNITS + 32 * SK_WARPS - 1) / (32 * SK_WARPS); /* ... a thread */
};

/* 8 BF16 at p[0 .. 7], those at or past column ce (p[0] being column c) zero: one 16-byte load where
 * vec (p 16-byte aligned and c + 8 <= ce), else one value at a time */
__device__ __forceinline__ uint4 sk_ld_w(const uint16_t *p, int c, int ce, int vec) {
    if (c >= ce) return make_uint4(0, 0, 0, 0);
    if (vec) return plm_ld_stream16(p);
    uint32_t w[4];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const uint32_t a = c + 2 * k < ce ? __ldg((const unsigned short *)p + 2 * k) : 0,
                       b = c + 2 * k + 1 < ce ? __ldg((const unsigned short *)p + 2 * k + 1) : 0;
        w[k] = a | b << 16;
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

/* Staging of one 16-byte unit (8 columns of one input row) of a chunk: loaded into a (and b) first,
 * split / stored into shared memory after the chunk's products. F32: a, b the 8 floats' bits; BF16: a
 * hi; BF16_LO: a hi, b lo. Zero past T and past ce. vec: 16-byte loads (x, lo aligned, cols a multiple
 * of 4 (F32) or 8 (BF16)) where the unit lies before ce. */
template <int IN>
__device__ __forceinline__ void sk_in_load(uint4 &a, uint4 &b, const void *x, const uint16_t *lo, int64_t cols,
                                           int T, int n, int c, int ce, int vec) {
    a = b = make_uint4(0, 0, 0, 0);
    if (n >= T || c >= ce) return;
    const int64_t at = n * cols + c;
    if constexpr (IN == IN_F32) {
        const float *p = (const float *)x + at;
        if (vec && c + 8 <= ce) {
            const float4 u = __ldg((const float4 *)p), v = __ldg((const float4 *)p + 1);
            a = make_uint4(__float_as_uint(u.x), __float_as_uint(u.y), __float_as_uint(u.z), __float_as_uint(u.w));
            b = make_uint4(__float_as_uint(v.x), __float_as_uint(v.y), __float_as_uint(v.z), __float_as_uint(v.w));
        } else {
            uint32_t f[8];
#pragma unroll
            for (int k = 0; k < 8; k++) f[k] = c + k < ce ? __float_as_uint(__ldg(p + k)) : 0u;
            a = make_uint4(f[0], f[1], f[2], f[3]);
            b = make_uint4(f[4], f[5], f[6], f[7]);
        }
    } else {
        const unsigned short *p = (const unsigned short *)x + at, *q = IN == IN_BF16_LO ? lo + at : p;
        if (vec && c + 8 <= ce) {
            a = __ldg((const uint4 *)p);
            if constexpr (IN == IN_BF16_LO) b = __ldg((const uint4 *)q);
        } else {
            uint32_t h[4], l[4];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const bool e0 = c + 2 * k < ce, e1 = c + 2 * k + 1 < ce;
                h[k] = (e0 ? __ldg(p + 2 * k) : 0u) | (e1 ? __ldg(p + 2 * k + 1) : 0u) << 16;
                l[k] = 0;
                if constexpr (IN == IN_BF16_LO)
                    l[k] = (e0 ? __ldg(q + 2 * k) : 0u) | (e1 ? __ldg(q + 2 * k + 1) : 0u) << 16;
            }
            a = make_uint4(h[0], h[1], h[2], h[3]);
            b = make_uint4(l[0], l[1], l[2], l[3]);
        }
    }
}

template <int IN> __device__ __forceinline__ void sk_in_store(uint4 *hi, uint4 *lo, int at, uint4 a, uint4 b) {
    if constexpr (IN == IN_F32) { /* hi = bf16(x), lo = bf16(x - hi): plm_to_bf16_cuda's split */
        uint4 h, l;
        split_pair(__uint_as_float(a.x), __uint_as_float(a.y), h.x, l.x);
        split_pair(__uint_as_float(a.z), __uint_as_float(a.w), h.y, l.y);
        split_pair(__uint_as_float(b.x), __uint_as_float(b.y), h.z, l.z);
        split_pair(__uint_as_float(b.z), __uint_as_float(b.w), h.w, l.w);
        hi[at] = h;
        lo[at] = l;
    } else {
        hi[at] = a;
        if constexpr (IN == IN_BF16_LO) lo[at] = b;
    }
}

/* Input unit u of staged row n sits at unit u ^ 4 (n odd) of its row: a warp's fragment reads (rows
 * 2p, 2p + 1 and units 4q .. 4q + 3 a quarter warp) and the staging's stores (8 consecutive units of
 * a row) then meet every bank once. */
__device__ __forceinline__ int sk_unit(int n, int u, int upr) { return n * upr + (u ^ (n & 1) << 2); }

/* The N x KC inputs of the chunk at column c0 into a buffer (hi, lo), PER units a thread: all loaded,
 * then split and stored */
template <int NT, int IN>
__device__ __forceinline__ void sk_stage(uint4 *hi, uint4 *lo_s, const void *x, const uint16_t *lo, int64_t cols, int T,
                                         int c0, int ce, int xvec) {
    using S = sk_shape<NT>;
    uint4 a[S::PER], b[S::PER];
#pragma unroll
    for (int k = 0; k < S::PER; k++) {
        const int e = threadIdx.x + k * 32 * SK_WARPS, n = e / S::UPR, u = e % S::UPR;
        if (e < S::UNITS) sk_in_load<IN>(a[k], b[k], x, lo, cols, T, n, c0 + 8 * u, ce, xvec);
    }
#pragma unroll
    for (int k = 0; k < S::PER; k++) {
        const int e = threadIdx.x + k * 32 * SK_WARPS, n = e / S::UPR, u = e % S::UPR;
        if (e < S::UNITS) sk_in_store<IN>(hi, lo_s, sk_unit(n, u, S::UPR), a[k], b[k]);
    }
}

/* y rows r0 .. r0 + RB - 1 (those below rows) of the T inputs: the S partial sums at p ([S][T][RB],
 * 16-byte aligned) added in split order, U outputs of 4 a thread at a time with 8 / U of their
 * partials' float4 each in flight */
template <int U>
__device__ __forceinline__ void sk_reduce(float *__restrict__ y, const float *__restrict__ p, int S, int T, int RB,
                                          int64_t rows, int64_t r0) {
    constexpr int SB = 8 / U; /* splits a batch */
    const int q4 = RB / 4, nq = T * q4, nth = blockDim.x;
    const int64_t per = (int64_t)T * RB; /* floats of one split */
    for (int e0 = threadIdx.x; e0 < nq; e0 += nth * U) {
        float4 a[U];
        for (int s0 = 0; s0 < S; s0 += SB) {
            float4 v[U][SB];
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int k = 0; k < SB; k++)
                    if (s0 + k < S && e0 + u * nth < nq)
                        v[u][k] = __ldcg((const float4 *)(p + (s0 + k) * per) + e0 + u * nth);
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int k = 0; k < SB; k++) {
                    if (s0 + k >= S) break;
                    if (s0 + k == 0) a[u] = v[u][k];
                    else a[u].x += v[u][k].x, a[u].y += v[u][k].y, a[u].z += v[u][k].z, a[u].w += v[u][k].w;
                }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int e = e0 + u * nth;
            if (e >= nq) break;
            const int n = e / q4;
            const int64_t r = r0 + (int64_t)(e - n * q4) * 4;
            float *o = y + n * rows + r;
            if (r < rows) o[0] = a[u].x;
            if (r + 1 < rows) o[1] = a[u].y;
            if (r + 2 < rows) o[2] = a[u].z;
            if (r + 3 < rows) o[3] = a[u].w;
        }
    }
}

/* Products that share the input, one launch: product j has blocks first[j] .. first[j + 1] - 1 (first
 * past the set: UINT_MAX, never reached), split[j] blocks a band, each span[j] columns (a multiple of
 * 8); its partial sums and counters are slot j of the workspace. */
struct sk_set {
    float *y[PLM_GEMV_MULTI];
    const uint16_t *W[PLM_GEMV_MULTI];
    int64_t rows[PLM_GEMV_MULTI], span[PLM_GEMV_MULTI];
    int split[PLM_GEMV_MULTI], vec[PLM_GEMV_MULTI];
    unsigned first[PLM_GEMV_MULTI];
};

template <int NT, int IN>
__global__ void __launch_bounds__(32 * SK_WARPS, sk_shape<NT>::MINB)
    k_skinny(const sk_set set, const void *__restrict__ x, const uint16_t *__restrict__ lo, int T, int64_t cols,
             int xvec, float *__restrict__ part, unsigned *__restrict__ ctr) {
    using S = sk_shape<NT>;
    constexpr int MT = S::MT, KC = S::KC, G = S::G, UPR = S::UPR, RB = S::RB;
    constexpr int P = IN == IN_BF16 ? 1 : 2; /* parts of the staged input: hi (and lo) */
    __shared__ uint4 xs[2][P][S::UNITS];
    __shared__ int last;

    /* this block's product: the last one starting at or before it (constant indices, so the set is read
       from the parameter bank, not copied to local memory) */
    int j = 0;
#pragma unroll
    for (int i = 1; i < PLM_GEMV_MULTI; i++)
        if (blockIdx.x >= set.first[i]) j = i;
    float *y = set.y[0];
    const uint16_t *W = set.W[0];
    int64_t rows = set.rows[0], span = set.span[0];
    int split = set.split[0], vec = set.vec[0];
    unsigned first = 0;
#pragma unroll
    for (int i = 1; i < PLM_GEMV_MULTI; i++)
        if (j == i)
            y = set.y[i], W = set.W[i], rows = set.rows[i], span = set.span[i], split = set.split[i],
            vec = set.vec[i], first = set.first[i];
    const unsigned b = blockIdx.x - first;
    const int64_t band = b / split;
    const int s = (int)(b % split);
    const int cb = (int)(s * span), ce = (int)(cb + span < cols ? cb + span : cols); /* cols < 2^31 */

    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g = lane >> 2, t = lane & 3;
    const int64_t r0 = band * RB + w * 16 * MT; /* this warp's first row */
    /* rows g and g + 8 of each m-tile (those past the end read the last row and are not written); a
       warp wholly past the end loads nothing (its column end is its start) */
    const int wce = r0 < rows ? ce : cb;
    const uint16_t *wr[MT][2];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int64_t r = r0 + 16 * m + 8 * h + g;
            wr[m][h] = W + (r < rows ? r : rows - 1) * cols;
        }
    float acc[MT][NT][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++) acc[m][nt][0] = acc[m][nt][1] = acc[m][nt][2] = acc[m][nt][3] = 0.0f;

    /* chunk 0: weights in registers (constant: they load while the kernel before ends), then the inputs
       staged once that kernel is done (plm_pdl_enter, before anything else global is touched) */
    uint4 wq[G][MT][2]; /* group q of the chunk being multiplied, then (once used) of the next one */
    auto load_group = [&](int q, int c0) { /* group q of the chunk at column c0 into wq[q] */
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int c = c0 + 32 * q + 8 * t;
                wq[q][m][h] = sk_ld_w(wr[m][h] + c, c, wce, vec);
            }
    };
#pragma unroll
    for (int q = 0; q < G; q++) load_group(q, cb);
    plm_pdl_enter();
    sk_stage<NT, IN>(xs[0][0], xs[0][P - 1], x, lo, cols, T, cb, ce, xvec);
    __syncthreads();

    const int nch = (ce - cb + KC - 1) / KC;
#pragma unroll 1
    for (int i = 0; i < nch; i++) {
        const int cn = cb + (i + 1) * KC; /* the next chunk (nothing is loaded past ce) */
        /* its inputs into the other buffer (last read before the previous barrier), under the weight
           loads in flight */
        if (i + 1 < nch) sk_stage<NT, IN>(xs[(i + 1) & 1][0], xs[(i + 1) & 1][P - 1], x, lo, cols, T, cn, ce, xvec);
        /* this chunk's products: per 32-column group and n-tile one 16-byte read of the inputs (hi, lo);
           each group's registers then load the next chunk's group */
        const uint4 *xh = xs[i & 1][0], *xl = xs[i & 1][P - 1];
#pragma unroll
        for (int q = 0; q < G; q++) {
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const int at = sk_unit(nt * 8 + g, 4 * q + t, UPR);
                const uint4 bh = xh[at];
                uint4 bl = make_uint4(0, 0, 0, 0);
                if constexpr (P == 2) bl = xl[at];
#pragma unroll
                for (int m = 0; m < MT; m++) {
                    const uint4 u0 = wq[q][m][0], u1 = wq[q][m][1];
                    const uint32_t a0[4] = {u0.x, u1.x, u0.y, u1.y}, a1[4] = {u0.z, u1.z, u0.w, u1.w};
                    mma16816(acc[m][nt], a0, bh.x, bh.y);
                    mma16816(acc[m][nt], a1, bh.z, bh.w);
                    if constexpr (P == 2) {
                        mma16816(acc[m][nt], a0, bl.x, bl.y);
                        mma16816(acc[m][nt], a1, bl.z, bl.w);
                    }
                }
            }
            load_group(q, cn);
        }
        __syncthreads();
    }

    /* acc[m][nt][k]: row r0 + 16 m + g + 8 (k >> 1), input 8 nt + 2 t + (k & 1) */
    if (split == 1) {
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const int64_t r = r0 + 16 * m + g + 8 * (k >> 1);
                    const int n = 8 * nt + 2 * t + (k & 1);
                    if (n < T && r < rows) y[n * rows + r] = acc[m][nt][k];
                }
        return;
    }
    /* a split: this block's partial sums [T][RB] (rows past the end included), then the band's last
       block adds them up */
    part += (int64_t)j * SK_SLOT_FLOATS + band * split * T * RB;
    float *mine = part + (int64_t)s * T * RB;
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const int rr = w * 16 * MT + 16 * m + g + 8 * (k >> 1), n = 8 * nt + 2 * t + (k & 1);
                if (n < T) mine[n * RB + rr] = acc[m][nt][k];
            }
    __threadfence(); /* the partial sums visible device-wide before the count says so */
    __syncthreads();
    if (tid == 0) last = atomicInc(ctr + (int64_t)j * SK_SLOT_BANDS + band, (unsigned)split - 1) == (unsigned)split - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (split <= 4) sk_reduce<2>(y, part, split, T, RB, rows, band * RB);
    else sk_reduce<1>(y, part, split, T, RB, rows, band * RB);
}

/* Columns of a product over blocks: the splits of a band and (span) the columns of each, a multiple of
 * 8. Split while the call has fewer than SK_MIN_BLOCKS blocks, each split keeping SK_MIN_SPAN columns
 * and the partial sums fitting the product's slot; no workspace, no split. */
static int sk_split(int64_t rows, int64_t cols, int64_t T, int RB, int work, int64_t *span) {
    const int64_t bands = (rows + RB - 1) / RB;
    int64_t S = 1;
    if (work && bands < SK_MIN_BLOCKS && bands <= SK_SLOT_BANDS) {
        S = (SK_MIN_BLOCKS + bands - 1) / bands;
        if (S > SK_MAX_SPLIT) S = SK_MAX_SPLIT;
        if (S > cols / SK_MIN_SPAN) S = cols / SK_MIN_SPAN;
        if (S > SK_SLOT_FLOATS / (bands * T * RB)) S = SK_SLOT_FLOATS / (bands * T * RB);
        if (S < 1) S = 1;
    }
    const int64_t n8 = (cols + 7) / 8, per = (n8 + S - 1) / S;
    *span = per * 8;
    return (int)((n8 + per - 1) / per); /* no empty split */
}

/* n products (1 .. PLM_GEMV_MULTI) of set, their y, W, rows and vec filled: each one's decomposition as
 * it would be alone, its blocks after the previous product's */
template <int NT, int IN>
static void sk_launch(sk_set set, int n, const void *x, const uint16_t *lo, int64_t T, int64_t cols, int xvec,
                      void *work, cudaStream_t st) {
    constexpr int RB = sk_shape<NT>::RB;
    int64_t blocks = 0;
    for (int j = 0; j < PLM_GEMV_MULTI; j++) {
        if (j >= n) {
            set.split[j] = 1, set.span[j] = cols, set.first[j] = UINT_MAX;
            continue;
        }
        set.split[j] = sk_split(set.rows[j], cols, T, RB, work != NULL, &set.span[j]);
        set.first[j] = (unsigned)blocks;
        blocks += (set.rows[j] + RB - 1) / RB * set.split[j];
    }
    float *part = (float *)work;
    unsigned *ctr = work ? (unsigned *)(part + (size_t)PLM_GEMV_MULTI * SK_SLOT_FLOATS) : NULL;
    k_skinny<NT, IN><<<(unsigned)blocks, 32 * SK_WARPS, 0, st>>>(set, x, lo, (int)T, cols, xvec, part, ctr);
}

/* NT as a template argument: one kernel for each 8 inputs from 9 to PLM_SKINNY_MAX_T */
template <int IN, int NT = 2>
static void sk_launch_nt(int nt, const sk_set &set, int n, const void *x, const uint16_t *lo, int64_t T, int64_t cols,
                         int xvec, void *work, cudaStream_t st) {
    if (nt == NT) sk_launch<NT, IN>(set, n, x, lo, T, cols, xvec, work, st);
    else if constexpr (NT < PLM_SKINNY_MAX_T / 8) sk_launch_nt<IN, NT + 1>(nt, set, n, x, lo, T, cols, xvec, work, st);
}

static void sk_launch_in(const sk_set &set, int n, const float *x, const void *xb, const uint16_t *lo, int64_t T,
                         int64_t cols, int xvec, void *work, cudaStream_t st) {
    const int nt = (int)((T + 7) / 8);
    if (x) sk_launch_nt<IN_F32>(nt, set, n, x, NULL, T, cols, xvec, work, st);
    else if (lo) sk_launch_nt<IN_BF16_LO>(nt, set, n, xb, lo, T, cols, xvec, work, st);
    else sk_launch_nt<IN_BF16>(nt, set, n, xb, NULL, T, cols, xvec, work, st);
}

extern "C" size_t plm_skinny_work_bytes(void) {
    return (size_t)PLM_GEMV_MULTI * (SK_SLOT_FLOATS * sizeof(float) + SK_SLOT_BANDS * sizeof(unsigned));
}

extern "C" void plm_skinny_bf16_multi_cuda(int n, float *const *y, const void *const *W, const int64_t *rows,
                                           const float *x, const void *xb, const void *lo, int64_t T, int64_t cols,
                                           void *work, void *stream) {
    if (T <= PLM_GEMV_MAX_T || T > PLM_SKINNY_MAX_T || cols <= 0) return;
    const uint16_t *l16 = x ? NULL : (const uint16_t *)lo;
    const int xvec = x ? plm_aligned16(x) && cols % 4 == 0
                       : plm_aligned16(xb) && (!l16 || plm_aligned16(l16)) && cols % 8 == 0;
    cudaStream_t st = PLM_STREAM(stream);
    plm_product_sets<sk_set>(
        n, y, W, rows, [&](const void *w) { return (int)(cols % 8 == 0 && plm_aligned16(w)); },
        [&](const sk_set &set, int m) { sk_launch_in(set, m, x, xb, l16, T, cols, xvec, work, st); });
}

extern "C" void plm_skinny_bf16_cuda(float *y, const void *W, const float *x, const void *xb, const void *lo,
                                     int64_t T, int64_t rows, int64_t cols, void *work, void *stream) {
    plm_skinny_bf16_multi_cuda(1, &y, &W, &rows, x, xb, lo, T, cols, work, stream);
}
