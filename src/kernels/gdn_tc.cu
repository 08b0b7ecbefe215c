/* Gated delta rule on tensor cores: the chunked (UT / WY) form of gdn.cu's k_gdn_chunk, split so
 * that everything that does not depend on the state runs in parallel over all chunks, and only the
 * state scan walks a segment's chunks in order.
 *
 * Per chunk of 64 tokens within a segment (the last one short), c the inclusive cumulative log decay:
 *   A[i][j] = beta_i (k_i . k_j) exp(c_i - c_j)  (j < i)      T = (I + A)^-1
 *   P[i][j] = (q_i . k_j) exp(c_i - c_j)  (j <= i)
 * then, in order over the chunks, with S the [dk, dv] state:
 *   V' = T diag(beta) (V - diag(exp(c)) K S)          (= U - W S of the WY form)
 *   O = diag(exp(c)) Q S + P V'      S = exp(c_L) S + (diag(exp(c_L - c)) K)^T V'
 *
 * k_gdn_tc_prep: one block per (chunk, value head): c, A (K K^T on tensor cores), T by substitution
 * on the triangle in registers, and P, written to a work area indexed by token (T and P: 64 floats a
 * token and head, c: one). Its WY form (single pass from BF16 copies, segments of two chunks or more
 * on average) inverts by blocks of 16 and writes W = T diag(beta exp(c)) K and U = T diag(beta) V
 * instead of T.
 * k_gdn_tc_scan / k_gdn_bf_scan: one block per (segment, value head, VT value columns), the column
 * tiles of one segment and head side by side (they read the same keys and queries): the state slice
 * stays on chip for the whole segment; per chunk five products on tensor cores. k_gdn_wy_scan: the
 * same walk from W and U, two rounds of products a chunk.
 *
 * Tensor cores take BF16 operands with FP32 accumulation (mma.sync m16n8k16, sm_80 and later). The
 * precise form splits every operand into two BF16 parts (hi + lo, about 2^-16 relative) and runs
 * three products (hi hi, hi lo, lo hi): FP32-grade results, as the BF16 GEMMs do with split inputs.
 * The single form rounds each operand to BF16 once, as transformers + FLA compute in BF16.
 * Everything in shared memory stays FP32; operands are rounded as they are loaded into fragments. */
#include <stdlib.h>

#include <type_traits>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

#define CH PLM_GDN_CHUNK /* 64 */
#define MIN_LEN PLM_GDN_CHUNKED_MIN
/* row strides in shared memory: blocks read as rows of A operands (pairs along a row) take 8 mod 32
 * (a half warp's 8-byte loads hit 32 different banks); blocks read down their columns (B operands
 * stored k-major) take 4 mod 32 */
#define LDK (PLM_GDN_TC_MAX_DK + 8) /* [64, dk] blocks */
#define LDC (CH + 8)                /* [64, 64] blocks */
#define PLM_GDN_WY_MAX_DV 256       /* the WY prep holds a chunk's V whole */

#include "kernels/mma.cuh"
#include "kernels/wgmma.cuh"

/* the five-product scan's k loops unrolled to their largest K (the fragments' addresses as immediate
 * offsets): 512 x 64 1.675 -> 1.605 ms on the H200. The same in the chunk prep (its K K^T and Q K^T,
 * and W and U) measured no faster and is left rolled. */
#define KU_DK PLM_GDN_TC_MAX_DK
#define KU_CH CH

/* a [64, pad) block of rows t0 .. t0+L-1 of a [T, heads, stride] array (head hd, columns c0 ..) */
__device__ __forceinline__ void load_rows(float *dst, int ld, const float *src, int64_t t0, int L, int heads, int hd,
                                          int stride, int c0, int cols, int pad) {
    load_block(dst, ld, src + (t0 * heads + hd) * (int64_t)stride + c0, (int64_t)heads * stride, L, cols, CH, pad);
}

/* ---- per chunk: c, A, T, W, U, P ----------------------------------------------------------------- */

#define PREP_THREADS 128

#define LK2 (PLM_GDN_TC_MAX_DK + 8) /* BF16 rows of [64, dk] blocks: ldmatrix rows 16 bytes apart mod 128 */
#define LC2 (CH + 8)

/* BFIN: q and k arrive as BF16 copies (cp.async into BF16 blocks, fragments by ldmatrix: a quarter of
 * the FP32 form's shared memory for them), single pass only */
static size_t prep_smem(bool bfin, bool wy, int dv) {
    const size_t lq = wy && pad16(dv) + 8 > LK2 ? pad16(dv) + 8 : LK2; /* WY: V takes Q's place once P is out */
    return bfin ? (size_t)CH * (LK2 + lq) * 2 + ((size_t)CH * LDC + 3 * CH) * sizeof(float)
                : ((size_t)2 * CH * LDK + CH * LDC + 2 * CH) * sizeof(float);
}

/* exp of a log decay (<= 0 where the kernels take it): FP32's expf for the precise form, the hardware's
 * exp2 (relative error about 1e-6 here) where the result is rounded to BF16 anyway */
template <bool SPLIT> __device__ __forceinline__ float dexp(float x) { return SPLIT ? expf(x) : __expf(x); }

/* the pair x0, x1 at i, i + 1 (i even) of an FP32 (SPLIT) or BF16 array */
template <bool SPLIT> __device__ __forceinline__ void put2(float *base, int64_t i, float x0, float x1) {
    if (SPLIT)
        *reinterpret_cast<float2 *>(base + i) = make_float2(x0, x1);
    else
        reinterpret_cast<uint32_t *>(base)[i >> 1] = pack_bf16(x0, x1);
}

/* the state pair at p, p + 1 (columns c, c + 1 of a row; ok0, ok1: inside the state): one 8-byte global
 * load where both are inside and p is 8-byte aligned (dv even), else one or two 4-byte loads; the state
 * arrives through a pointer table, so the address space is named here (generic loads otherwise) */
__device__ __forceinline__ float2 state_ld2(const float *p, bool ok0, bool ok1) {
    if (ok0 && ok1 && !((uintptr_t)p & 7)) return __ldg(reinterpret_cast<const float2 *>(p));
    return make_float2(ok0 ? __ldg(p) : 0.0f, ok1 ? __ldg(p + 1) : 0.0f);
}
__device__ __forceinline__ void state_st2(float *p, bool ok0, bool ok1, float x0, float x1) {
    if (ok0 && ok1 && !((uintptr_t)p & 7)) {
        __stcg(reinterpret_cast<float2 *>(p), make_float2(x0, x1));
        return;
    }
    if (ok0) __stcg(p, x0);
    if (ok1) __stcg(p + 1, x1);
}

/* an output pair at p, p + 1 (ok0, ok1: inside the tile): one 8-byte store where both are inside and p
 * is 8-byte aligned, else one or two 4-byte stores (a warp's rows then fill whole 32-byte sectors) */
__device__ __forceinline__ void out_st2(float *p, bool ok0, bool ok1, float x0, float x1) {
    if (ok0 && ok1 && !((uintptr_t)p & 7)) {
        *reinterpret_cast<float2 *>(p) = make_float2(x0, x1);
        return;
    }
    if (ok0) p[0] = x0;
    if (ok1) p[1] = x1;
}

/* acc[0 .. NT) -= (A_hi + A_lo) (B_hi + B_lo) without the lo lo term, for A (16 x 16 KS) in accumulator
 * layout (ain[2 ks + 0/1]: columns 16 ks .. +7, +8 .. +15) and B pairs fb(k, n) (k even): a product
 * chained from registers, FP32-grade */
template <int KS, int NT, class FB>
__device__ __forceinline__ void mma_sub_regs(float (&acc)[NT][4], const float (&ain)[2 * KS][4], int n0, FB fb) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        uint32_t ah[4], al[4];
        split_pair(-ain[2 * ks][0], -ain[2 * ks][1], ah[0], al[0]);
        split_pair(-ain[2 * ks][2], -ain[2 * ks][3], ah[1], al[1]);
        split_pair(-ain[2 * ks + 1][0], -ain[2 * ks + 1][1], ah[2], al[2]);
        split_pair(-ain[2 * ks + 1][2], -ain[2 * ks + 1][3], ah[3], al[3]);
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const int n = n0 + 8 * nt + g;
            mma_split3(acc[nt], ah, al, fb(16 * ks + 2 * t, n), fb(16 * ks + 2 * t + 8, n));
        }
    }
}

/* named barriers (bar.sync / bar.arrive id, n threads; id 0 is __syncthreads') */
__device__ __forceinline__ void nbar_sync(int id, int n) { asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void nbar_arrive(int id, int n) {
    asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(n) : "memory");
}

/* T = (I + A)^-1 in place of A (FP32 [64][LDC], strictly lower, zero elsewhere; T lower, unit diagonal),
 * by blocks of 16 (128 threads): the four diagonal blocks by forward substitution, one a warp (lanes 2j
 * and 2j+1 on column j); then [D0 0; A10 D1]^-1 has the block -D1 A10 D0 (and likewise rows 48..63), and
 * the whole has T[32:64, 0:32] = -Ybot A[32:64, 0:32] Ytop, with Ytop, Ybot the inverses of the two
 * halves. Products on tensor cores with split operands (FP32-grade); four barriers (the block's, or with w4 named barrier 1 over warps 0-3). */
/* w4: only warps 0-3 run it, meeting on named barrier 1 instead of the whole block's */
__device__ __forceinline__ void tri_inverse(float *As, bool w4 = false) {
    auto sync = [&] {
        if (w4)
            nbar_sync(1, 128);
        else
            __syncthreads();
    };
    const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31;
    /* warps 0-3 do the work; a block's further warps (the one-chunk kernel's) only meet the barriers, or,
       with w4, do not take part */
    if (w < 4) { /* D_w = (I + A_ww)^-1 */
        const int j = lane >> 1, p = lane & 1, b = 16 * w;
        float x[16];
#pragma unroll
        for (int i = 0; i < 16; i++) {
            float acc = 0.0f;
#pragma unroll
            for (int m = 0; m < i; m++) /* x stays in registers: every index a constant */
                if ((m & 1) == p) acc += As[(b + i) * LDC + b + m] * x[m];
            acc += __shfl_xor_sync(0xffffffffu, acc, 1);
            x[i] = (i == j ? 1.0f : 0.0f) - acc;
        }
        __syncwarp();
#pragma unroll
        for (int i = 0; i < 16; i++)
            if ((i & 1) == p) As[(b + i) * LDC + b + j] = x[i];
    }
    sync();
    if (w < 2) { /* E = -D_{2w+1} A_{2w+1,2w} D_{2w}, over A_{2w+1,2w} */
        const int b = 32 * w;
        float hacc[2][4], eacc[2][4];
        zero_acc(hacc);
        zero_acc(eacc);
        warp_mma<true>(hacc, b + 16, b, 16, [&](int r, int k) { return row2(As, LDC, r, b + 16 + k); },
                       [&](int k, int n) { return col2(As, LDC, b + 16 + k, n); });
        mma_sub_regs<1>(eacc, hacc, b, [&](int k, int n) { return col2(As, LDC, b + k, n); });
        __syncwarp();
        each_acc(eacc, b + 16, b, [&](int r, int c, float x) { As[r * LDC + c] = x; });
    }
    sync();
    { /* T[32:64, 0:32] = -(Ybot A[32:64, 0:32]) Ytop: this warp's 16 rows, 16 of the columns */
        const int r0 = 32 + 16 * ((w & 3) >> 1), c0 = 16 * (w & 1);
        float nacc[4][4], facc[2][4];
        zero_acc(nacc);
        zero_acc(facc);
        if (w < 4) {
            warp_mma<true>(nacc, r0, 0, 32, [&](int r, int k) { return row2(As, LDC, r, 32 + k); },
                           [&](int k, int n) { return col2(As, LDC, 32 + k, n); });
            mma_sub_regs<2>(facc, nacc, c0, [&](int k, int n) { return col2(As, LDC, k, n); });
        }
        sync(); /* every warp has read A[32:64, 0:32] */
        if (w < 4) each_acc(facc, r0, c0, [&](int r, int c, float x) { As[r * LDC + c] = x; });
    }
    sync();
}

/* T and P go out as FP32 for the precise scan, as BF16 (the same indices) for the single-pass one */
template <bool SPLIT> __device__ __forceinline__ void put(float *base, int64_t i, float x) {
    if (SPLIT)
        base[i] = x;
    else
        reinterpret_cast<__nv_bfloat16 *>(base)[i] = __float2bfloat16_rn(x);
}

/* A quad's 4 x 4 words transposed: lane t4 of the quad holds v[k] = M[t4][k]; returns M[0 .. 3][t4]
 * (as one 16-byte word: the quad's pairs of columns for combination t4). Two butterfly exchanges
 * (lanes 2 apart, then 1 apart), two shuffles each; the positions chosen by selects, not indices. */
__device__ __forceinline__ uint4 quad_transpose(const uint32_t (&v)[4], int t4) {
    const bool b1 = t4 & 2, b0 = t4 & 1;
    uint32_t u[2][2]; /* u[s][j]: M[(t4 & 1) | s << 1][2 b1 + j] */
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const uint32_t keep = b1 ? v[j + 2] : v[j], send = b1 ? v[j] : v[j + 2];
        const uint32_t got = __shfl_xor_sync(0xffffffffu, send, 2);
        u[0][j] = b1 ? got : keep;
        u[1][j] = b1 ? keep : got;
    }
    uint32_t out[4];
#pragma unroll
    for (int s = 0; s < 2; s++) { /* keep column pair b0 of this lane's combination, send the other */
        const uint32_t keep = b0 ? u[s][1] : u[s][0], send = b0 ? u[s][0] : u[s][1];
        const uint32_t got = __shfl_xor_sync(0xffffffffu, send, 1);
        out[2 * s] = b0 ? got : keep;
        out[2 * s + 1] = b0 ? keep : got;
    }
    return make_uint4(out[0], out[1], out[2], out[3]);
}
/* A quad's BF16 pairs pk (k: n-tile k & 1 of row half k >> 1, as a lane's accumulators hold them) of
 * rows r, r + 8 and 16 columns from c0, as four 16-byte stores (quad_transpose): lane t4 writes row
 * r + 8 (t4 >> 1), columns c0 + 8 (t4 & 1) .. + 7, at base + row rs + column; rows from L and columns
 * from n left alone (the prep's P, W and U) */
__device__ __forceinline__ void quad_store16(__nv_bfloat16 *base, int64_t rs, const uint32_t (&pk)[4], int r, int c0,
                                             int t4, int L, int n) {
    const uint4 word = quad_transpose(pk, t4);
    const int i = r + 8 * (t4 >> 1), c = c0 + 8 * (t4 & 1);
    if (i < L && c < n) *reinterpret_cast<uint4 *>(base + i * rs + c) = word;
}

/* One warp: the chunk's inclusive scan of the log decay into Cs (two tokens a lane; past L the last
 * value) and its beta into Bs (0 past L), for chunk rows t0 .. t0 + L - 1 of value head h. */
__device__ __forceinline__ void chunk_decay(float *Cs, float *Bs, const float *g, const float *beta, int64_t t0,
                                            int L, int nv, int h, int lane) {
    const int i = 2 * lane;
    const float g0 = i < L ? g[(t0 + i) * nv + h] : 0.0f, g1 = i + 1 < L ? g[(t0 + i + 1) * nv + h] : 0.0f;
    float sum = g0 + g1;
    for (int o = 1; o < 32; o <<= 1) {
        const float y = __shfl_up_sync(0xffffffffu, sum, o);
        if (lane >= o) sum += y;
    }
    Cs[i] = sum - g1;
    Cs[i + 1] = sum;
    Bs[i] = i < L ? beta[(t0 + i) * nv + h] : 0.0f;
    Bs[i + 1] = i + 1 < L ? beta[(t0 + i + 1) * nv + h] : 0.0f;
}

/* chunk_decay and, for the WY form, W's column scales beta exp(c) into Ew (one warp) */
__device__ __forceinline__ void chunk_decay_wy(float *Cs, float *Bs, float *Ew, const float *g, const float *beta,
                                               int64_t t0, int L, int nv, int h, int lane) {
    chunk_decay(Cs, Bs, g, beta, t0, L, nv, h, lane);
    const int i = 2 * lane;
    Ew[i] = Bs[i] * __expf(Cs[i]), Ew[i + 1] = Bs[i + 1] * __expf(Cs[i + 1]);
}

template <bool SPLIT, bool BFIN>
__device__ __forceinline__ void prep_item(int ci, int h, float *Tg, float *Pg, float *Gg, const float *q,
                                          const float *k, const __nv_bfloat16 *qkvb, const float *g, const float *beta,
                                          const int32_t *cu, const int32_t *tab, int64_t T, int nk, int nv, int dk,
                                          int dv) {
    extern __shared__ __align__(16) float sm[];
    float *Ks = sm, *Qs = Ks + CH * LDK, *As = BFIN ? sm + CH * LK2 : Qs + CH * LDK; /* BFIN: 2 BF16 blocks */
    float *Gs = As + CH * LDC, *Bs = Gs + CH; /* c, beta */
    __nv_bfloat16 *Kh = reinterpret_cast<__nv_bfloat16 *>(sm), *Qh = Kh + CH * LK2;
    const int kh = h / (nv / nk), tid = threadIdx.x, w = tid >> 5, lane = tid & 31;
    const int s = tab[2 * ci];
    const int64_t t0 = tab[2 * ci + 1];
    const int L = min(CH, (int)(cu[s + 1] - t0)), DK = pad16(dk);
    if (BFIN) As = reinterpret_cast<float *>(Qh + CH * LK2), Gs = As + CH * LDC, Bs = Gs + CH; /* Kh, Qh, then A */
    if (BFIN) {
        load_b16_64<2, PLM_GDN_TC_MAX_DK>(Kh, LK2, qkvb + T * nk * dk + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, L, dk);
        load_b16_64<2, PLM_GDN_TC_MAX_DK>(Qh, LK2, qkvb + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, L, dk);
        for (int e = tid; e < CH * (DK - dk); e += PREP_THREADS) { /* padding columns */
            const int r = e / (DK - dk), c = dk + e % (DK - dk);
            Kh[r * LK2 + c] = Qh[r * LK2 + c] = __float2bfloat16_rn(0.0f);
        }
    } else {
        load_rows(Ks, LDK, k, t0, L, nk, kh, dk, 0, dk, DK);
        load_rows(Qs, LDK, q, t0, L, nk, kh, dk, 0, dk, DK);
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    if (w == 0) chunk_decay(Gs, Bs, g, beta, t0, L, nv, h, lane); /* c and beta */
    copies_done();
    { /* A = beta_i (k_i . k_j) exp(c_i - c_j), j < i; P likewise from q, j <= i (straight to global) */
        float acc[8][4];
        const int r0 = 16 * w;
        /* acc = X[r0 .. r0+15] K^T over all 64 columns, X = K or Q */
        auto xkt = [&](const float *X, const __nv_bfloat16 *Xh) {
            zero_acc(acc);
            if (BFIN) {
                mma_rows_bt(acc, Xh, LK2, r0, Kh, LK2, 0, DK);
            } else {
                warp_mma<SPLIT>(acc, r0, 0, DK, [&](int r, int c) { return row2(X, LDK, r, c); },
                                [&](int c, int n) { return row2(Ks, LDK, n, c); });
            }
        };
        xkt(Ks, Kh);
        each_acc(acc, r0, 0, [&](int i, int j, float x) {
            As[i * LDC + j] = j < i ? x * Bs[i] * dexp<SPLIT>(Gs[i] - Gs[j]) : 0.0f;
        });
        xkt(Qs, Qh);
        const int g4 = lane >> 2, t4 = lane & 3;
        auto pval = [&](int nt, int hf, int odd) { /* P[i, j] of this lane's accumulator element */
            const int i = r0 + g4 + 8 * hf, j = 8 * nt + 2 * t4 + odd;
            return j <= i ? acc[nt][2 * hf + odd] * dexp<SPLIT>(Gs[i] - Gs[j]) : 0.0f;
        };
        if (!SPLIT) { /* BF16: a quad's two rows x 16 columns as four 16-byte stores (quad_transpose) */
#pragma unroll
            for (int m = 0; m < 4; m++) {
                uint32_t pk[4];
#pragma unroll
                for (int k = 0; k < 4; k++)
                    pk[k] = pack_bf16(pval(2 * m + (k & 1), k >> 1, 0), pval(2 * m + (k & 1), k >> 1, 1));
                quad_store16(reinterpret_cast<__nv_bfloat16 *>(Pg) + (t0 * nv + h) * CH, (int64_t)nv * CH, pk, r0 + g4,
                             16 * m, t4, L, CH);
            }
        } else {
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int i = r0 + g4 + 8 * hf, j = 8 * nt + 2 * t4;
                    if (i < L) put2<SPLIT>(Pg, ((t0 + i) * nv + h) * CH + j, pval(nt, hf, 0), pval(nt, hf, 1));
                }
        }
    }
    if (tid < L) Gg[(t0 + tid) * nv + h] = Gs[tid];
    __syncthreads();
    /* T = (I + A)^-1, lower unit triangular, by forward substitution on each column: lanes 2j' and
     * 2j'+1 of a warp share column j (every thread of the block busy), each summing half of every
     * row's products (m = 4 n + 2 p .. +1, p its parity), combined across the pair; the column lives
     * in registers (fully unrolled), rows past L have A = 0 and come out as the identity's */
    {
        const int j = tid >> 1, p = tid & 1;
        float x[CH];
#pragma unroll
        for (int i = 0; i < CH; i++) {
            float acc = 0.0f;
#pragma unroll
            for (int m = 0; m < (i & ~3); m += 4) {
                const float2 a2 = *reinterpret_cast<const float2 *>(As + i * LDC + m + 2 * p);
                acc += p ? a2.x * x[m + 2] + a2.y * x[m + 3] : a2.x * x[m] + a2.y * x[m + 1];
            }
#pragma unroll
            for (int m = i & ~3; m < i; m++)
                if ((m & 1) == p) acc += As[i * LDC + m] * x[m];
            acc += __shfl_xor_sync(0xffffffffu, acc, 1);
            x[i] = (i == j ? 1.0f : 0.0f) - acc;
        }
        const int64_t tj = (t0 * nv + h) * (int64_t)CH + j;
#pragma unroll
        for (int i = 0; i < CH; i++)
            if (i < L && (i & 1) == p) put<SPLIT>(Tg, tj + (int64_t)i * nv * CH, x[i]);
    }
}

/* items (chunk ci, value head h) in the order ci nv + h, a block each */
template <bool SPLIT, bool BFIN>
__global__ void __launch_bounds__(PREP_THREADS)
    k_gdn_tc_prep(float *Tg, float *Pg, float *Gg, const float *q, const float *k, const __nv_bfloat16 *qkvb,
                  const float *g, const float *beta, const int32_t *cu, const int32_t *tab, int64_t T, int nk, int nv,
                  int dk, int dv) {
    plm_pdl_enter();
    prep_item<SPLIT, BFIN>((int)(blockIdx.x / (unsigned)nv), (int)(blockIdx.x % (unsigned)nv), Tg, Pg, Gg, q, k, qkvb, g,
                           beta, cu, tab, T, nk, nv, dk, dv);
}

/* The WY form's prep (single pass from BF16 copies only): instead of T, W = T diag(beta exp(c)) K and
 * U = T diag(beta) V (BF16, [T, nv, dk] and [T, nv, dv]), so that the scan's chain per chunk is V' = U - W S,
 * then the output and the state update. 8 warps (256 threads) capped at PLM_GDN_PREP8_REGS registers a
 * thread: four blocks an SM alone, one beside the copy warps' scan block (43,008 of an SM's 65,536
 * registers). A and P: warp w takes rows 16 (w & 3), columns 32 (w >> 2) .. + 31 (a tile wholly above
 * the diagonal writes its zeros without products); the inverse on warps 0-3; then W on warps 0-3 while
 * warps 4-7 compute U. It replaced a 4-warp form at 128 registers (four blocks of 4 warps an SM alone,
 * one beside the scan) that gave the same bytes: 15 sequences 0.86 -> 0.82 ms, one sequence 1.13 ->
 * 1.09 on the H200 (docs/performance.md, 2026-11-30 03:36 section). */
#define PREP8_THREADS 256

/* the 8-warp prep's last phase: W = T diag(beta exp(c)) K (warps 0-3) or U = T diag(beta) V (warps 4-7),
 * rows r0 .. r0 + 15 of T diag(scale) times K or V, 16 columns at a time, out as a quad's four 16-byte
 * stores (dk and dv are multiples of 8 where the WY form runs) */
__device__ __forceinline__ void prep8_wu(const __nv_bfloat16 *Kh, const __nv_bfloat16 *Vh, const float *As,
                                         const float *Bs, const float *Ew, __nv_bfloat16 *Wg, __nv_bfloat16 *Ug,
                                         int64_t t0, int L, int h, int nv, int dk, int dv) {
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g4 = lane >> 2, t4 = lane & 3;
    const int DK = pad16(dk), DV = pad16(dv), LVH = DV + 8;
    const bool wk = w < 4;
    const int r0 = 16 * (w & 3), ncol = wk ? DK : DV, n = wk ? dk : dv, ldx = wk ? LK2 : LVH;
    const __nv_bfloat16 *X = wk ? Kh : Vh;
    const float *sc = wk ? Ew : Bs;
    __nv_bfloat16 *out = (wk ? Wg : Ug) + (t0 * nv + h) * (int64_t)n;
    uint32_t a[CH / 16][4];
#pragma unroll
    for (int kk = 0; kk < CH / 16; kk++)
#pragma unroll
        for (int q4 = 0; q4 < 4; q4++) {
            const int r = r0 + g4 + 8 * (q4 & 1), c = 16 * kk + 2 * t4 + 8 * (q4 >> 1);
            const float2 x = row2(As, LDC, r, c);
            a[kk][q4] = pack_bf16(x.x * sc[c], x.y * sc[c + 1]);
        }
    for (int c0 = 0; c0 < ncol; c0 += 16) {
        float acc[2][4];
        zero_acc(acc);
#pragma unroll
        for (int kk = 0; kk < CH / 16; kk++) {
            uint32_t b[4];
            ldsm_bt(b, X, ldx, 16 * kk, c0);
            mma16816(acc[0], a[kk], b[0], b[1]);
            mma16816(acc[1], a[kk], b[2], b[3]);
        }
        uint32_t pk[4];
#pragma unroll
        for (int k = 0; k < 4; k++) pk[k] = pack_bf16(acc[k & 1][2 * (k >> 1)], acc[k & 1][2 * (k >> 1) + 1]);
        quad_store16(out, (int64_t)nv * n, pk, r0 + g4, c0, t4, L, n);
    }
}

/* the 8-warp prep's shared blocks: Kh, then Qh (V [64, LVH] in its place once P is out), then A, c,
 * beta and W's column scales (prep_smem(true, true, dv)) */
__device__ __forceinline__ void prep8_blocks(float *sm, int LVH, __nv_bfloat16 *&Kh, __nv_bfloat16 *&Qh,
                                             __nv_bfloat16 *&Vh, float *&As, float *&Gs, float *&Bs, float *&Ew) {
    Kh = reinterpret_cast<__nv_bfloat16 *>(sm), Qh = Kh + CH * LK2, Vh = Qh;
    As = reinterpret_cast<float *>(Qh + CH * (LVH > LK2 ? LVH : LK2)), Gs = As + CH * LDC, Bs = Gs + CH, Ew = Bs + CH;
}

/* what both 8-warp item forms do before their products: K and Q into Kh and Qh (padding columns
 * zeroed), the chunk's c and beta and W's column scales beta exp(c) (warp 0), the copies waited for */
__device__ __forceinline__ void prep8_load(__nv_bfloat16 *Kh, __nv_bfloat16 *Qh, float *Gs, float *Bs, float *Ew,
                                           const __nv_bfloat16 *qkvb, const float *g, const float *beta, int64_t t0,
                                           int L, int64_t T, int nk, int nv, int h, int kh, int dk, int DK, int tid,
                                           int w, int lane) {
    load_b16_64<4, PLM_GDN_TC_MAX_DK>(Kh, LK2, qkvb + T * nk * dk + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, L, dk);
    load_b16_64<4, PLM_GDN_TC_MAX_DK>(Qh, LK2, qkvb + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, L, dk);
    for (int e = tid; e < CH * (DK - dk); e += PREP8_THREADS) { /* padding columns */
        const int r = e / (DK - dk), c = dk + e % (DK - dk);
        Kh[r * LK2 + c] = Qh[r * LK2 + c] = __float2bfloat16_rn(0.0f);
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    if (w == 0) chunk_decay_wy(Gs, Bs, Ew, g, beta, t0, L, nv, h, lane);
    copies_done();
}

/* P = (Q K^T) exp(c_i - c_j) for j <= i (0 above the diagonal), a warp's 16 rows from r0 by 16 NM columns
 * from n0 of its accumulators (NM pairs of 8-column tiles), stored as BF16 rows of the chunk's P */
template <int NM>
__device__ __forceinline__ void prep8_store_p(float *Pg, const float (&acc)[2 * NM][4], const float *Gs, int64_t t0,
                                              int nv, int h, int r0, int n0, int g4, int t4, int L) {
    auto pval = [&](int nt, int hf, int odd) {
        const int i = r0 + g4 + 8 * hf, j = n0 + 8 * nt + 2 * t4 + odd;
        return j <= i ? acc[nt][2 * hf + odd] * __expf(Gs[i] - Gs[j]) : 0.0f;
    };
#pragma unroll
    for (int m = 0; m < NM; m++) {
        uint32_t pk[4];
#pragma unroll
        for (int k = 0; k < 4; k++)
            pk[k] = pack_bf16(pval(2 * m + (k & 1), k >> 1, 0), pval(2 * m + (k & 1), k >> 1, 1));
        quad_store16(reinterpret_cast<__nv_bfloat16 *>(Pg) + (t0 * nv + h) * CH, (int64_t)nv * CH, pk, r0 + g4,
                     n0 + 16 * m, t4, L, CH);
    }
}

/* prep_item8<true>: the 8-warp prep with its work split by role (the prep before the scan; beside the copy warps' scan,
 * where one prep block shares an SM with a scan block, it made one sequence slower on the H200: 1.08 ->
 * 1.18 ms, so the walking prep keeps prep_item8<false>; before the scan: 15 sequences' prep 0.336 -> 0.320 ms
 * under ncu, 0.82 -> 0.80-0.81 ms in all with the mma.sync scan): warps 0-3 compute A over all 64
 * columns and invert it (meeting on named barrier 1), while warps 4-7 compute P (Q K^T, all 64 columns),
 * store it, and, once all four are done with Q (named barrier 2), load V into Q's place; then the whole
 * block computes W and U. P and V's load leave the chain that leads to T. The same products in the same
 * order as prep_item8<false>: the same bytes. */
/* prep_item8<false> keeps every warp on every phase (the walking prep beside the scan); both load the same
 * blocks (prep8_blocks, prep8_load) */
template <bool SPLIT>
__device__ __forceinline__ void prep_item8(int ci, int h, float *Pg, float *Gg, __nv_bfloat16 *Wg, __nv_bfloat16 *Ug,
                                           const __nv_bfloat16 *qkvb, const float *g, const float *beta,
                                           const int32_t *cu, const int32_t *tab, int64_t T, int nk, int nv, int dk,
                                           int dv) {
    extern __shared__ __align__(16) float sm[];
    const int kh = h / (nv / nk), tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g4 = lane >> 2, t4 = lane & 3;
    const int s = tab[2 * ci];
    const int64_t t0 = tab[2 * ci + 1];
    const int L = min(CH, (int)(cu[s + 1] - t0)), DK = pad16(dk), DV = pad16(dv), LVH = DV + 8;
    __nv_bfloat16 *Kh, *Qh, *Vh;
    float *As, *Gs, *Bs, *Ew;
    prep8_blocks(sm, LVH, Kh, Qh, Vh, As, Gs, Bs, Ew);
    prep8_load(Kh, Qh, Gs, Bs, Ew, qkvb, g, beta, t0, L, T, nk, nv, h, kh, dk, DK, tid, w, lane);
    if constexpr (!SPLIT) {
        { /* A = beta_i (k_i . k_j) exp(c_i - c_j), j < i, and P from q, j <= i: this warp's 16 x 32 tile */
            const int r0 = 16 * (w & 3), n0 = 32 * (w >> 2);
            const bool live = n0 <= r0 + 15; /* some j <= i in the tile */
            float ka[4][4], acc[4][4]; /* K K^T and Q K^T together: each B fragment of K loaded once */
            zero_acc(ka);
            zero_acc(acc);
            if (live)
                for (int k0 = 0; k0 < DK; k0 += 16) {
                    uint32_t ak[4], aq[4];
                    ldsm_a(ak, Kh, LK2, r0, k0);
                    ldsm_a(aq, Qh, LK2, r0, k0);
#pragma unroll
                    for (int np = 0; np < 2; np++) {
                        uint32_t b[4];
                        ldsm_b(b, Kh, LK2, n0 + 16 * np, k0);
                        mma16816(ka[2 * np], ak, b[0], b[1]);
                        mma16816(ka[2 * np + 1], ak, b[2], b[3]);
                        mma16816(acc[2 * np], aq, b[0], b[1]);
                        mma16816(acc[2 * np + 1], aq, b[2], b[3]);
                    }
                }
            each_acc(ka, r0, n0, [&](int i, int j, float x) { As[i * LDC + j] = j < i ? x * Bs[i] * __expf(Gs[i] - Gs[j]) : 0.0f; });
            prep8_store_p<2>(Pg, acc, Gs, t0, nv, h, r0, n0, g4, t4, L);
        }
        if (tid < L) Gg[(t0 + tid) * nv + h] = Gs[tid];
        __syncthreads();
        /* V into Q's place (in flight during the inverse), T in A's place */
        load_b16_64<4, PLM_GDN_WY_MAX_DV>(Vh, LVH, qkvb + 2 * T * nk * dk + (t0 * nv + h) * (int64_t)dv, (int64_t)nv * dv, L, dv);
        for (int e = tid; e < CH * (DV - dv); e += PREP8_THREADS)
            Vh[(e / (DV - dv)) * LVH + dv + e % (DV - dv)] = __float2bfloat16_rn(0.0f);
        tri_inverse(As);
        copies_done();
        prep8_wu(Kh, Vh, As, Bs, Ew, Wg, Ug, t0, L, h, nv, dk, dv);
    } else {
        if (tid < L) Gg[(t0 + tid) * nv + h] = Gs[tid];
        const int r0 = 16 * (w & 3);
        float acc[8][4]; /* this warp's 16 rows of K K^T (warps 0-3) or Q K^T (4-7), all 64 columns */
        zero_acc(acc);
        mma_rows_bt(acc, w < 4 ? Kh : Qh, LK2, r0, Kh, LK2, 0, DK);
        if (w < 4) {
            each_acc(acc, r0, 0, [&](int i, int j, float x) { As[i * LDC + j] = j < i ? x * Bs[i] * __expf(Gs[i] - Gs[j]) : 0.0f; });
            __syncwarp(); /* the inverse's first phase reads only this warp's own diagonal block; its barriers order the rest */
            tri_inverse(As, true);
        } else {
            prep8_store_p<4>(Pg, acc, Gs, t0, nv, h, r0, 0, g4, t4, L);
            nbar_sync(2, 128); /* warps 4-7 are done with Q: V takes its place */
            const int vt = tid - 128, vi = vt >> 1, vc0 = (vt & 1) * 8; /* 2 threads a row, as load_b16_64<2, ...> */
            const bool vok = vi < L;
            const __nv_bfloat16 *vs = qkvb + 2 * T * nk * dk + (t0 * nv + h) * (int64_t)dv;
            vs = (vok ? vs + vi * (int64_t)nv * dv : vs) + vc0;
            const unsigned vd = (unsigned)__cvta_generic_to_shared(Vh + vi * LVH + vc0);
#pragma unroll 1
            for (int u = 0; u < PLM_GDN_WY_MAX_DV / 16; u++)
                if (vc0 + 16 * u < dv) cp_async16(vd + 32 * u, vs + 16 * u, vok ? 16 : 0);
            for (int e = vt; e < CH * (DV - dv); e += 128)
                Vh[(e / (DV - dv)) * LVH + dv + e % (DV - dv)] = __float2bfloat16_rn(0.0f);
            asm volatile("cp.async.commit_group;\ncp.async.wait_all;\n" ::: "memory");
        }
        __syncthreads(); /* T from warps 0-3, V from warps 4-7 */
        prep8_wu(Kh, Vh, As, Bs, Ew, Wg, Ug, t0, L, h, nv, dk, dv);
    }
}

/* the 8-warp WY prep's kernel: a block an item, or (ready != NULL) a grid of fewer blocks walking the
 * items and marking each done, as k_gdn_tc_prep */
/* 64: four blocks an SM (16,384 registers each; 24 bytes spilled), and one beside the copy warps' scan
 * (43,008); 72 (three an SM) measured 0.35 ms against 0.34 for the 15 sequences' prep, 88 (two) 0.42 */
#ifndef PLM_GDN_PREP8_REGS
#define PLM_GDN_PREP8_REGS 64
#endif
__global__ void __maxnreg__(PLM_GDN_PREP8_REGS)
    k_gdn_tc_prep8(float *Pg, float *Gg, __nv_bfloat16 *Wg, __nv_bfloat16 *Ug, const __nv_bfloat16 *qkvb, const float *g,
                   const float *beta, const int32_t *cu, const int32_t *tab, int n_chunks, int *ready, int64_t T, int nk,
                   int nv, int dk, int dv) {
    plm_pdl_enter();
    if (!ready) { /* the prep before the scan: split by role (prep_item8<true>) */
        prep_item8<true>((int)(blockIdx.x / (unsigned)nv), (int)(blockIdx.x % (unsigned)nv), Pg, Gg, Wg, Ug, qkvb, g, beta, cu,
                   tab, T, nk, nv, dk, dv);
        return;
    }
    for (unsigned item = blockIdx.x; item < (unsigned)n_chunks * (unsigned)nv; item += gridDim.x) {
        prep_item8<false>((int)(item / (unsigned)nv), (int)(item % (unsigned)nv), Pg, Gg, Wg, Ug, qkvb, g, beta, cu, tab, T, nk,
                   nv, dk, dv);
        __syncthreads(); /* every thread's stores are done (and the next item may reuse the blocks) */
        if (threadIdx.x == 0) {
            __threadfence();
            atomicExch(ready + item, 1);
        }
    }
}

/* ---- the state scan: per (segment, value head, VT columns) --------------------------------------- */

/* A scan block's segment s, value head h and first value column j0, from its index in a one-dimensional
 * grid of n_seg x nv x ntile blocks in segment order, then head, then tile. Blocks start in index order,
 * so a segment's blocks for every head start together, the first segments' first (the longest, where a
 * packed batch is sorted); with segments x tiles in x and heads in y, every segment's head-0 blocks
 * started first and a long segment's last heads a wave or more later, on the critical path. */
__device__ __forceinline__ void scan_block(int nv, int ntile, int vt, int &s, int &h, int &j0) {
    const int sh = (int)(blockIdx.x / (unsigned)ntile);
    s = sh / nv, h = sh % nv, j0 = (int)(blockIdx.x % (unsigned)ntile) * vt;
}

template <int VT> static size_t scan_smem(void) {
    return ((size_t)3 * CH * LDK + (size_t)2 * CH * LDC + (size_t)CH * (VT + 4) + (size_t)VT * LDK + (size_t)VT * LDC +
            6 * CH) * sizeof(float);
}

/* Loads are issued a chunk ahead, into each block as soon as the current chunk is done with it: c and
 * beta at once, V after R, T after V', Q, P and K (two buffers) after O. */
template <bool SPLIT, int VT>
__global__ void __launch_bounds__(VT * 4)
    k_gdn_tc_scan(float *o, float *const *S, const float *Tg, const float *Pg, const float *Gg, const float *q,
                  const float *k, const float *v, const float *beta, const int32_t *cu, int n_seg, int nk, int nv,
                  int dk, int dv, int min_len) {
    plm_pdl_enter();
    constexpr int CG = VT / 32, NW = 4 * CG, LDV = VT + 4; /* column groups of 32; warps */
    extern __shared__ float sm[];
    float *Qs = sm, *Kb = Qs + CH * LDK, *Ts = Kb + 2 * CH * LDK, *Ps = Ts + CH * LDC, *Vs = Ps + CH * LDC;
    /* St: the state slice transposed ([VT][dk]), Xt: R then V' transposed ([VT][64]): the B operands
     * of K S, Q S, T R, P V' and K^T V' read pairs along their rows (one 8-byte load each) */
    float *St = Vs + CH * LDV, *Xt = St + VT * LDK, *Gs = Xt + VT * LDC, *Dl = Gs + CH, *Bs = Dl + CH, *Gr = Bs + CH;
    float *Br = Gr + CH; /* exp(c_i), exp(c_L - c_j), beta; c and beta as loaded */
    int s, h, j0;
    scan_block(nv, (dv + VT - 1) / VT, VT, s, h, j0);
    const int kh = h / (nv / nk), tid = threadIdx.x, w = tid >> 5, DK = pad16(dk), VC = min(VT, dv - j0);
    const int64_t t_beg = cu[s], t_end = cu[s + 1];
    if (t_end - t_beg < min_len) return; /* the recurrent kernel takes this segment (or it is empty) */
    float *Sh = S[s] + (size_t)h * dk * dv;
    auto len = [&](int64_t t) { return t_end - t < CH ? (int)(t_end - t) : CH; };
    {
        const int L = len(t_beg);
        load_rows(Gr, 1, Gg, t_beg, L, nv, h, 1, 0, 1, 1);
        load_rows(Br, 1, beta, t_beg, L, nv, h, 1, 0, 1, 1);
        load_rows(Ts, LDC, Tg, t_beg, L, nv, h, CH, 0, CH, CH);
        load_rows(Qs, LDK, q, t_beg, L, nk, kh, dk, 0, dk, DK);
        load_rows(Ps, LDC, Pg, t_beg, L, nv, h, CH, 0, CH, CH);
        load_rows(Kb, LDK, k, t_beg, L, nk, kh, dk, 0, dk, DK);
        load_rows(Vs, LDV, v, t_beg, L, nv, h, dv, j0, VC, VT);
    }
    for (int e = tid; e < VT * DK; e += NW * 32) { /* S transposed: rows of the state are columns here */
        const int d = e / VT, c = e - d * VT;
        St[c * LDK + d] = d < dk && c < VC ? Sh[(size_t)d * dv + j0 + c] : 0.0f;
    }
    const int vr0 = 16 * (w / CG), vn0 = 32 * (w % CG); /* this warp's tile of V' and O */
    int kb = 0;
    for (int64_t t0 = t_beg; t0 < t_end; t0 += CH) {
        const int L = len(t0);
        const int64_t t1 = t0 + CH;
        const bool next = t1 < t_end;
        const int L1 = next ? len(t1) : 0;
        float *Ks = Kb + kb * CH * LDK;
        copies_done(); /* this chunk's blocks are in */
        const float gl = Gr[L - 1];
        for (int i = tid; i < CH; i += NW * 32) {
            const float c = i < L ? Gr[i] : gl;
            Gs[i] = expf(c);
            Dl[i] = expf(gl - c);
            Bs[i] = Br[i];
        }
        __syncthreads();
        if (next) {
            load_rows(Gr, 1, Gg, t1, L1, nv, h, 1, 0, 1, 1);
            load_rows(Br, 1, beta, t1, L1, nv, h, 1, 0, 1, 1);
        }
        { /* R = diag(beta) (V - diag(exp(c)) K S), into Xt transposed */
            float acc[4][4];
            zero_acc(acc);
            warp_mma<SPLIT>(acc, vr0, vn0, DK, [&](int r, int c) { return row2(Ks, LDK, r, c); },
                            [&](int c, int n) { return row2(St, LDK, n, c); });
            each_acc(acc, vr0, vn0,
                     [&](int i, int c, float x) { Xt[c * LDC + i] = Bs[i] * (Vs[i * LDV + c] - Gs[i] * x); });
        }
        __syncthreads();
        if (next) load_rows(Vs, LDV, v, t1, L1, nv, h, dv, j0, VC, VT); /* V read: the next chunk's */
        { /* V' = T R, into Xt once every warp has read R */
            float acc[4][4];
            zero_acc(acc);
            warp_mma<SPLIT>(acc, vr0, vn0, CH, [&](int r, int c) { return row2(Ts, LDC, r, c); },
                            [&](int c, int n) { return row2(Xt, LDC, n, c); });
            __syncthreads();
            each_acc(acc, vr0, vn0, [&](int i, int c, float x) { Xt[c * LDC + i] = x; });
        }
        __syncthreads();
        if (next) load_rows(Ts, LDC, Tg, t1, L1, nv, h, CH, 0, CH, CH);
        { /* O = diag(exp(c)) Q S + P V' */
            float acc[4][4], acc2[4][4];
            zero_acc(acc);
            zero_acc(acc2);
            warp_mma<SPLIT>(acc, vr0, vn0, DK, [&](int r, int c) { return row2(Qs, LDK, r, c); },
                            [&](int c, int n) { return row2(St, LDK, n, c); });
            warp_mma<SPLIT>(acc2, vr0, vn0, CH, [&](int r, int c) { return row2(Ps, LDC, r, c); },
                            [&](int c, int n) { return row2(Xt, LDC, n, c); });
            const int lane = tid & 31, gq = lane >> 2, tq = lane & 3;
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                const int c = vn0 + 8 * nt + 2 * tq;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = vr0 + gq + (e >> 1) * 8, cc = c + (e & 1);
                    if (i < L && cc < VC)
                        o[((t0 + i) * nv + h) * (int64_t)dv + j0 + cc] = acc[nt][e] * Gs[i] + acc2[nt][e];
                }
            }
        }
        __syncthreads();
        if (next) {
            load_rows(Qs, LDK, q, t1, L1, nk, kh, dk, 0, dk, DK);
            load_rows(Ps, LDC, Pg, t1, L1, nv, h, CH, 0, CH, CH);
            load_rows(Kb + (kb ^ 1) * CH * LDK, LDK, k, t1, L1, nk, kh, dk, 0, dk, DK);
        }
        { /* S = exp(c_L) S + (diag(exp(c_L - c)) K)^T V': [DK, VT], tasks of 16 rows x 32 columns */
            float acc[2][4][4];
            const int ntask = (DK / 16) * CG;
#pragma unroll
            for (int a = 0; a < 2; a++) {
                const int task = w + a * NW;
                zero_acc(acc[a]);
                if (task < ntask)
                    warp_mma<SPLIT>(acc[a], 16 * (task / CG), 32 * (task % CG), CH,
                                    [&](int r, int c) {
                                        return make_float2(Ks[c * LDK + r] * Dl[c], Ks[(c + 1) * LDK + r] * Dl[c + 1]);
                                    },
                                    [&](int c, int n) { return row2(Xt, LDC, n, c); });
            }
            __syncthreads(); /* every read of S, V' and this chunk's K is done */
            const float el = expf(gl);
#pragma unroll
            for (int a = 0; a < 2; a++) {
                const int task = w + a * NW;
                if (task < ntask)
                    each_acc(acc[a], 16 * (task / CG), 32 * (task % CG),
                             [&](int d, int c, float x) { St[c * LDK + d] = St[c * LDK + d] * el + x; });
            }
        }
        kb ^= 1;
    }
    __syncthreads();
    for (int e = tid; e < dk * VT; e += NW * 32) {
        const int d = e / VT, c = e - d * VT;
        if (c < VC) Sh[(size_t)d * dv + j0 + c] = St[c * LDK + d];
    }
}

/* ---- the single-pass scan: BF16 blocks, the state in registers --------------------------------------
 * The same per-chunk products with every operand in BF16 shared memory (fragments by ldmatrix) and T
 * and P as the single-pass prep wrote them (BF16). The FP32 state slice lives in the accumulators of
 * the state update (each warp owns 16 x 32 tiles of it); a BF16 copy, transposed, is the B operand
 * of K S and Q S. The state update takes (diag(exp(c_L - c)) K)^T V' as K^T (diag(exp(c_L - c)) V').
 * About 100 KB a block (VT = 64): two blocks an SM. */
/* Where q, k, v come from (MODE):
 *  SYNC   FP32 q, k, v read and rounded into the BF16 blocks at the end of each chunk (two blocks an SM
 *         hide each other's loads);
 *  STAGE  FP32, by cp.async into FP32 staging blocks while the chunk runs, rounded at the top of the
 *         next (value tiles of 32: few long segments leave one block an SM, nothing else hides loads);
 *  BF     BF16 copies (written by plm_gdn_prep_cuda) by cp.async straight into the blocks, issued at
 *         the end of each chunk (two blocks an SM);
 *  BF2    the same into a second set of blocks (q, k, v, T, P), issued at the top of the chunk before,
 *         so a whole chunk's work hides them (one block an SM). */
enum { SYNC, STAGE, BF, BF2 };
#define LQF (PLM_GDN_TC_MAX_DK + 4)
template <int VT, int MODE> static size_t scan_bf_smem(void) {
    const size_t nb = MODE == BF2 ? 2 : 1; /* sets of the per-chunk input blocks */
    return (nb * ((size_t)2 * CH * LK2 + (size_t)2 * CH * LC2 + (size_t)CH * (VT + 8)) + (size_t)VT * LK2 +
            (size_t)2 * VT * LC2) * 2 + 5 * CH * sizeof(float) +
           (MODE == STAGE ? ((size_t)2 * CH * LQF + (size_t)CH * (VT + 4)) * sizeof(float) : 0);
}

/* n rows x pcol FP32 (row stride lds) of src rounded into dst (row stride ldd BF16), pcol % 4 == 0 */
__device__ __forceinline__ void round_block(__nv_bfloat16 *dst, int ldd, const float *src, int lds, int n, int pcol) {
    const int per = pcol >> 2;
    for (int e = threadIdx.x; e < n * per; e += blockDim.x) {
        const int i = e / per, c = (e - i * per) * 4;
        const float4 x = *reinterpret_cast<const float4 *>(src + i * lds + c);
        *reinterpret_cast<uint2 *>(dst + i * ldd + c) = make_uint2(pack_bf16(x.x, x.y), pack_bf16(x.z, x.w));
    }
}

/* columns c0 .. c1-1 of n rows of a BF16 block set to zero (the padding cp.async never writes) */
__device__ __forceinline__ void zero_cols(__nv_bfloat16 *X, int ld, int n, int c0, int c1) {
    const int w = c1 - c0;
    if (w <= 0) return;
    for (int e = threadIdx.x; e < n * w; e += blockDim.x) X[(e / w) * ld + c0 + e % w] = __float2bfloat16_rn(0.0f);
}

/* threads of a scan block: 16 rows x 32 columns a warp (tiles of 32, 64), 16 x 16 (tiles of 16) */
#define BF_THREADS(VT) ((VT) >= 32 ? (VT) * 4 : 128)

/* The state slice of a scan block: tasks of 16 rows (of dk) x 8 NTW columns, CG column groups, two a warp
 * at most (warps w and w + NW); calls f(a, nt, e, d, c) for every accumulator element [a][nt][e] of this
 * warp's tasks, at state row d, column c of the tile. */
template <int NTW, int CG, int NW, typename F> __device__ __forceinline__ void each_state_elem(int ntask, F f) {
    constexpr int CW = 8 * NTW;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int a = 0; a < 2; a++) {
        const int task = w + a * NW, d0 = 16 * (task / CG), c0 = CW * (task % CG);
        if (task < ntask)
#pragma unroll
            for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) f(a, nt, e, d0 + g + 8 * (e >> 1), c0 + 8 * nt + 2 * t4 + (e & 1));
    }
}

/* One chunk of the five-product scan, every thread of the block: R = diag(beta) (V - diag(exp(c)) K S)
 * and V' = T R (through Xt), the chunk's output O = diag(exp(c)) Q S + P V' (rows past L not written),
 * and the update's product up = K^T (diag(exp(c_L - c)) V') (through Xd) for the caller's state tasks.
 * Sb holds the state in BF16 [VT][LK2]; Gs = exp(c), Dl = exp(c_L - c), Bs = beta, all [CH]. A warp
 * owns rows 16 (w / CG) and columns CW (w % CG) of the products over the chunk. No barrier after the
 * last product: the caller's update of Sb needs one. */
template <int NTW, int CG, int NW>
__device__ __forceinline__ void bf_chunk(float (&up)[2][NTW][4], float *o, int64_t t0, int L, int h, int nv, int dv,
                                         int j0, int VC, int DK, int ntask, const __nv_bfloat16 *Qs,
                                         const __nv_bfloat16 *Ks, const __nv_bfloat16 *Vs, int LV,
                                         const __nv_bfloat16 *Ts, const __nv_bfloat16 *Ps, const __nv_bfloat16 *Sb,
                                         __nv_bfloat16 *Xt, __nv_bfloat16 *Xd, const float *Gs, const float *Dl,
                                         const float *Bs) {
    constexpr int CW = 8 * NTW;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int vr0 = 16 * (w / CG), vn0 = CW * (w % CG);
    { /* R = diag(beta) (V - diag(exp(c)) K S), into Xt transposed */
        float acc[NTW][4];
        zero_acc(acc);
        mma_rows_bt<KU_DK>(acc, Ks, LK2, vr0, Sb, LK2, vn0, DK);
        each_acc(acc, vr0, vn0, [&](int i, int c, float x) {
            Xt[c * LC2 + i] = __float2bfloat16_rn(Bs[i] * (__bfloat162float(Vs[i * LV + c]) - Gs[i] * x));
        });
    }
    __syncthreads();
    float vacc[NTW][4]; /* V' = T R */
    zero_acc(vacc);
    mma_rows_bt<KU_CH>(vacc, Ts, LC2, vr0, Xt, LC2, vn0, CH);
    __syncthreads(); /* every warp has read R */
    each_acc(vacc, vr0, vn0, [&](int i, int c, float x) {
        Xt[c * LC2 + i] = __float2bfloat16_rn(x);
        Xd[c * LC2 + i] = __float2bfloat16_rn(Dl[i] * x);
    });
    __syncthreads();
    { /* O = diag(exp(c)) Q S + P V' */
        float acc[NTW][4], acc2[NTW][4];
        zero_acc(acc);
        zero_acc(acc2);
        mma_rows_bt<KU_DK>(acc, Qs, LK2, vr0, Sb, LK2, vn0, DK);
        mma_rows_bt<KU_CH>(acc2, Ps, LC2, vr0, Xt, LC2, vn0, CH);
#pragma unroll
        for (int nt = 0; nt < NTW; nt++) {
            const int c = vn0 + 8 * nt + 2 * t4;
#pragma unroll
            for (int hf = 0; hf < 2; hf++) { /* columns c, c + 1 of row i as one pair */
                const int i = vr0 + g + 8 * hf;
                if (i < L)
                    out_st2(o + ((t0 + i) * nv + h) * (int64_t)dv + j0 + c, c < VC, c + 1 < VC,
                            acc[nt][2 * hf] * Gs[i] + acc2[nt][2 * hf], acc[nt][2 * hf + 1] * Gs[i] + acc2[nt][2 * hf + 1]);
            }
        }
    }
#pragma unroll
    for (int a = 0; a < 2; a++) { /* up = K^T (diag(exp(c_L - c)) V') on this warp's state tasks */
        const int task = w + a * NW, d0 = 16 * (task / CG), c0 = CW * (task % CG);
        zero_acc(up[a]);
        if (task < ntask)
#pragma unroll
            for (int k0 = 0; k0 < CH; k0 += 16) {
                uint32_t af[4];
                ldsm_at(af, Ks, LK2, d0, k0);
                mma_bn(up[a], af, Xd, LC2, c0, k0);
            }
    }
}

template <int VT, int MODE>
__global__ void __launch_bounds__(BF_THREADS(VT), MODE == STAGE || MODE == BF2 ? 1 : 2)
    k_gdn_bf_scan(float *o, float *const *S, const float *Tg, const float *Pg, const float *Gg, const float *q,
                  const float *k, const float *v, const __nv_bfloat16 *qkvb, const float *beta, const int32_t *cu,
                  int64_t T, int n_seg, int nk, int nv, int dk, int dv, int min_len) {
    plm_pdl_enter();
    constexpr int NTW = VT >= 32 ? 4 : 2, CW = 8 * NTW, CG = VT / CW, NW = 4 * CG; /* a warp: 16 rows x CW */
    constexpr int LV = VT + 8, NB = MODE == BF2 ? 2 : 1;
    constexpr int SET = 2 * CH * LK2 + 2 * CH * LC2 + CH * LV; /* one set of input blocks, BF16 elements */
    extern __shared__ __align__(16) unsigned char smb[];
    __nv_bfloat16 *set0 = reinterpret_cast<__nv_bfloat16 *>(smb), *Sb = set0 + NB * SET, *Xt = Sb + VT * LK2;
    __nv_bfloat16 *Xd = Xt + VT * LC2;
    float *Gs = reinterpret_cast<float *>(Xd + VT * LC2), *Dl = Gs + CH, *Bs = Dl + CH, *Gr = Bs + CH, *Br = Gr + CH;
    float *Qf = Br + CH, *Kf = Qf + CH * LQF, *Vf = Kf + CH * LQF; /* STAGE only */
    const __nv_bfloat16 *Tb = reinterpret_cast<const __nv_bfloat16 *>(Tg), *Pb = reinterpret_cast<const __nv_bfloat16 *>(Pg);
    const __nv_bfloat16 *Qb = qkvb, *Kb = qkvb + T * nk * dk, *Vb = qkvb + 2 * T * nk * dk;
    int s, h, j0;
    scan_block(nv, (dv + VT - 1) / VT, VT, s, h, j0);
    const int kh = h / (nv / nk), tid = threadIdx.x;
    const int DK = pad16(dk), VC = min(VT, dv - j0);
    const int64_t t_beg = cu[s], t_end = cu[s + 1];
    if (t_end - t_beg < min_len) return; /* the recurrent kernel takes this segment (or it is empty) */
    float *Sh = S[s] + (size_t)h * dk * dv;
    auto len = [&](int64_t t) { return t_end - t < CH ? (int)(t_end - t) : CH; };
    /* the input blocks of set b: Q, K [64, LK2], T, P [64, LC2], V [64, LV] */
    auto Qs_ = [&](int b) { return set0 + b * SET; };
    auto Ks_ = [&](int b) { return set0 + b * SET + CH * LK2; };
    auto Ts_ = [&](int b) { return set0 + b * SET + 2 * CH * LK2; };
    auto Ps_ = [&](int b) { return set0 + b * SET + 2 * CH * LK2 + CH * LC2; };
    auto Vs_ = [&](int b) { return set0 + b * SET + 2 * CH * LK2 + 2 * CH * LC2; };
    auto load_tp = [&](int64_t t0, int b) { /* T, P (cp.async, committed with what follows) */
        const int L = len(t0);
        load_b16_64<BF_THREADS(VT) / 64, CH>(Ts_(b), LC2, Tb + (t0 * nv + h) * CH, (int64_t)nv * CH, L, CH);
        load_b16_64<BF_THREADS(VT) / 64, CH>(Ps_(b), LC2, Pb + (t0 * nv + h) * CH, (int64_t)nv * CH, L, CH);
    };
    auto load_gb = [&](int64_t t0) { /* c and beta */
        const int L = len(t0);
        load_rows(Gr, 1, Gg, t0, L, nv, h, 1, 0, 1, 1);
        load_rows(Br, 1, beta, t0, L, nv, h, 1, 0, 1, 1);
    };
    auto load_qkv = [&](int64_t t0, int b) {
        const int L = len(t0);
        if (MODE == BF || MODE == BF2) {
            load_b16_64<BF_THREADS(VT) / 64, PLM_GDN_TC_MAX_DK>(Qs_(b), LK2, Qb + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, L, dk);
            load_b16_64<BF_THREADS(VT) / 64, PLM_GDN_TC_MAX_DK>(Ks_(b), LK2, Kb + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, L, dk);
            load_b16_64<BF_THREADS(VT) / 64, VT>(Vs_(b), LV, Vb + (t0 * nv + h) * (int64_t)dv + j0, (int64_t)nv * dv, L, VC);
        } else if (MODE == STAGE) {
            load_rows(Qf, LQF, q, t0, L, nk, kh, dk, 0, dk, DK);
            load_rows(Kf, LQF, k, t0, L, nk, kh, dk, 0, dk, DK);
            load_rows(Vf, VT + 4, v, t0, L, nv, h, dv, j0, VC, VT);
        } else {
            load_bf16(Qs_(b), LK2, q + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, L, dk, CH, DK);
            load_bf16(Ks_(b), LK2, k + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, L, dk, CH, DK);
            load_bf16(Vs_(b), LV, v + (t0 * nv + h) * (int64_t)dv + j0, (int64_t)nv * dv, L, VC, CH, VT);
        }
    };
    if (MODE == BF || MODE == BF2) /* padding columns the copies never touch */
        for (int b = 0; b < NB; b++) {
            zero_cols(Qs_(b), LK2, CH, dk, DK);
            zero_cols(Ks_(b), LK2, CH, dk, DK);
            zero_cols(Vs_(b), LV, CH, VC, VT);
        }
    const int ntask = (DK / 16) * CG;
    float sacc[2][NTW][4];
    auto each_state = [&](auto f) { each_state_elem<NTW, CG, NW>(ntask, f); };
    /* the first chunk's copies go out first, so that the state's loads wait behind them, not before */
    load_gb(t_beg);
    load_tp(t_beg, 0);
    load_qkv(t_beg, 0);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    zero_acc(sacc[0]);
    zero_acc(sacc[1]);
    each_state([&](int a, int nt, int e, int d, int c) { /* pairs: e even, then e + 1 at c + 1 */
        if (e & 1) return;
        const float2 x = state_ld2(Sh + (size_t)d * dv + j0 + c, d < dk && c < VC, d < dk && c + 1 < VC);
        sacc[a][nt][e] = x.x;
        sacc[a][nt][e + 1] = x.y;
        Sb[c * LK2 + d] = __float2bfloat16_rn(x.x);
        Sb[(c + 1) * LK2 + d] = __float2bfloat16_rn(x.y);
    });
    int cb = 0; /* the set holding this chunk's blocks */
    for (int64_t t0 = t_beg; t0 < t_end; t0 += CH) {
        const int L = len(t0);
        const bool next = t0 + CH < t_end;
        __nv_bfloat16 *Qs = Qs_(cb), *Ks = Ks_(cb), *Ts = Ts_(cb), *Ps = Ps_(cb), *Vs = Vs_(cb);
        copies_done();
        if (MODE == STAGE) {
            round_block(Qs, LK2, Qf, LQF, CH, DK);
            round_block(Ks, LK2, Kf, LQF, CH, DK);
            round_block(Vs, LV, Vf, VT + 4, CH, VT);
        }
        const float gl = Gr[L - 1];
        for (int i = tid; i < CH; i += NW * 32) {
            const float c = i < L ? Gr[i] : gl;
            Gs[i] = expf(c);
            Dl[i] = expf(gl - c);
            Bs[i] = Br[i];
        }
        __syncthreads();
        if (next && (MODE == STAGE || MODE == BF2)) { /* staging, or the other set, is free: load ahead */
            load_gb(t0 + CH);
            load_qkv(t0 + CH, cb ^ 1);
            if (MODE == BF2) load_tp(t0 + CH, cb ^ 1);
            asm volatile("cp.async.commit_group;\n" ::: "memory");
        }
        float up[2][NTW][4];
        bf_chunk<NTW, CG, NW>(up, o, t0, L, h, nv, dv, j0, VC, DK, ntask, Qs, Ks, Vs, LV, Ts, Ps, Sb, Xt, Xd, Gs, Dl, Bs);
        { /* S = exp(c_L) S + K^T (diag(exp(c_L - c)) V') */
            __syncthreads(); /* every read of Sb and of this chunk's blocks is done */
            const float el = expf(gl);
            each_state([&](int a, int nt, int e, int d, int c) {
                const float x = sacc[a][nt][e] * el + up[a][nt][e];
                sacc[a][nt][e] = x;
                Sb[c * LK2 + d] = __float2bfloat16_rn(x);
            });
        }
        if (next && (MODE == SYNC || MODE == BF)) { /* into the blocks just read */
            load_gb(t0 + CH);
            load_tp(t0 + CH, 0);
            load_qkv(t0 + CH, 0);
            asm volatile("cp.async.commit_group;\n" ::: "memory");
        } else if (next && MODE == STAGE) {
            load_tp(t0 + CH, 0);
            asm volatile("cp.async.commit_group;\n" ::: "memory");
        }
        if (MODE == BF2) cb ^= 1;
    }
    each_state([&](int a, int nt, int e, int d, int c) {
        if (!(e & 1))
            state_st2(Sh + (size_t)d * dv + j0 + c, d < dk && c < VC, d < dk && c + 1 < VC, sacc[a][nt][e],
                      sacc[a][nt][e + 1]);
    });
}

/* ---- one-chunk segments: the prep and the scan in one kernel ---------------------------------------
 * Where every segment the chunked form takes is one chunk (many short prompts, 512 x 64), the prep
 * writes T and P for each (segment, head) and the five-product scan reads them back, its state's load,
 * its chunk and its state's store in series. Here one block per (segment, value head, 64 value
 * columns) does both: c and beta, A = K K^T on four warps and P = Q K^T on the other four (tensor
 * cores), T = (I + A)^-1 (tri_inverse on warps 0-3), then the scan's chunk (R, V' = T R, the output,
 * the update), with T and P never leaving shared memory; A's FP32 block then holds R and V'. The
 * inverse is computed once per value tile (twice a head at dv = 128). Single pass from BF16 copies. */
#define ONE_VT 64
static size_t one_smem(void) {
    return ((size_t)2 * CH * LK2 + (size_t)CH * (ONE_VT + 8) + (size_t)2 * CH * LC2 + (size_t)ONE_VT * LK2) * 2 +
           (size_t)CH * LDC * sizeof(float) + 4 * CH * sizeof(float);
}

__global__ void __launch_bounds__(256, 2)
    k_gdn_one(float *o, float *const *S, const __nv_bfloat16 *qkvb, const float *g, const float *beta,
              const int32_t *cu, int64_t T, int nk, int nv, int dk, int dv, int min_len) {
    plm_pdl_enter();
    constexpr int VT = ONE_VT, NTW = 4, CG = 2, NW = 8, LV = VT + 8;
    static_assert(2 * VT * LC2 * 2 <= CH * LDC * 4, "R and V' fit in A's block");
    extern __shared__ __align__(16) unsigned char smb[];
    __nv_bfloat16 *Qs = reinterpret_cast<__nv_bfloat16 *>(smb), *Ks = Qs + CH * LK2, *Vs = Ks + CH * LK2;
    __nv_bfloat16 *Ts = Vs + CH * LV, *Ps = Ts + CH * LC2, *Sb = Ps + CH * LC2; /* Sb: the state [VT][dk] */
    float *As = reinterpret_cast<float *>(Sb + VT * LK2), *Cs = As + CH * LDC, *Bs = Cs + CH, *Ge = Bs + CH;
    float *Dl = Ge + CH;
    __nv_bfloat16 *Xt = reinterpret_cast<__nv_bfloat16 *>(As), *Xd = Xt + VT * LC2; /* once T is out */
    const int ntile = (dv + VT - 1) / VT, s = blockIdx.x / ntile, h = blockIdx.y, j0 = (blockIdx.x % ntile) * VT;
    const int kh = h / (nv / nk), tid = threadIdx.x, w = tid >> 5, lane = tid & 31;
    const int DK = pad16(dk), VC = min(VT, dv - j0);
    const int64_t t0 = cu[s];
    const int L = (int)(cu[s + 1] - t0);
    if (L < min_len || L > CH) return; /* the recurrent kernel (or empty), or (never, as dispatched) a longer one */
    const __nv_bfloat16 *Qg = qkvb, *Kg = qkvb + T * nk * dk, *Vg = qkvb + 2 * T * nk * dk;
    float *Sh = S[s] + (size_t)h * dk * dv;
    load_b16_64<4, PLM_GDN_TC_MAX_DK>(Qs, LK2, Qg + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, L, dk);
    load_b16_64<4, PLM_GDN_TC_MAX_DK>(Ks, LK2, Kg + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, L, dk);
    load_b16_64<4, VT>(Vs, LV, Vg + (t0 * nv + h) * (int64_t)dv + j0, (int64_t)nv * dv, L, VC);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    zero_cols(Qs, LK2, CH, dk, DK); /* padding columns the copies never touch */
    zero_cols(Ks, LK2, CH, dk, DK);
    zero_cols(Vs, LV, CH, VC, VT);
    if (w == 0) chunk_decay(Cs, Bs, g, beta, t0, L, nv, h, lane);
    const int ntask = (DK / 16) * CG; /* the state slice's tasks: 16 rows x 32 columns, two a warp */
    float sacc[2][NTW][4];
    auto each_state = [&](auto f) { each_state_elem<NTW, CG, NW>(ntask, f); };
    zero_acc(sacc[0]);
    zero_acc(sacc[1]);
    /* the state's loads are issued here and first used after the inverse: A, P and T hide them */
    each_state([&](int a, int nt, int e, int d, int c) { /* pairs: e even, then e + 1 at c + 1 */
        if (e & 1) return;
        const float2 x = state_ld2(Sh + (size_t)d * dv + j0 + c, d < dk && c < VC, d < dk && c + 1 < VC);
        sacc[a][nt][e] = x.x;
        sacc[a][nt][e + 1] = x.y;
    });
    copies_done();
    { /* A = beta_i (k_i . k_j) exp(c_i - c_j), j < i (warps 0-3); P likewise from q, j <= i (4-7) */
        float acc[8][4];
        const int r0 = 16 * (w & 3);
        zero_acc(acc);
        mma_rows_bt<PLM_GDN_TC_MAX_DK>(acc, w < 4 ? Ks : Qs, LK2, r0, Ks, LK2, 0, DK);
        if (w < 4)
            each_acc(acc, r0, 0, [&](int i, int j, float x) {
                As[i * LDC + j] = j < i ? x * Bs[i] * __expf(Cs[i] - Cs[j]) : 0.0f;
            });
        else
            each_acc(acc, r0, 0, [&](int i, int j, float x) {
                Ps[i * LC2 + j] = __float2bfloat16_rn(j <= i ? x * __expf(Cs[i] - Cs[j]) : 0.0f);
            });
    }
    __syncthreads();
    tri_inverse(As); /* ends with a barrier */
    for (int e = tid; e < CH * CH / 2; e += NW * 32) { /* T to BF16 */
        const int i = e / (CH / 2), j = 2 * (e % (CH / 2));
        *reinterpret_cast<uint32_t *>(Ts + i * LC2 + j) = pack_bf16(As[i * LDC + j], As[i * LDC + j + 1]);
    }
    const float gl = Cs[L - 1];
    if (tid < CH) {
        Ge[tid] = expf(Cs[tid]);
        Dl[tid] = expf(gl - Cs[tid]);
    }
    each_state([&](int a, int nt, int e, int d, int c) { Sb[c * LK2 + d] = __float2bfloat16_rn(sacc[a][nt][e]); });
    __syncthreads(); /* T is out of A's block: R and V' take it; the state is in Sb */
    { /* the chunk, then S = exp(c_L) S + K^T (diag(exp(c_L - c)) V'), straight out */
        float up[2][NTW][4];
        bf_chunk<NTW, CG, NW>(up, o, t0, L, h, nv, dv, j0, VC, DK, ntask, Qs, Ks, Vs, LV, Ts, Ps, Sb, Xt, Xd, Ge, Dl, Bs);
        const float el = expf(gl);
        each_state([&](int a, int nt, int e, int d, int c) {
            if (!(e & 1))
                state_st2(Sh + (size_t)d * dv + j0 + c, d < dk && c < VC, d < dk && c + 1 < VC,
                          sacc[a][nt][e] * el + up[a][nt][e], sacc[a][nt][e + 1] * el + up[a][nt][e + 1]);
        });
    }
}

/* ---- the WY scan: V' = U - W S, then the output and the state update ---------------------------------
 * With W and U from the prep (k_gdn_tc_prep<..., WY>), a chunk is two rounds of products with one
 * barrier between them: X = W S and Y = Q S (both from the state), V' = U - X; then O = exp(c) Y + P V'
 * and the update K^T (diag(exp(c_L - c)) V'). The five-product scan above chains four rounds. The
 * state's BF16 copy and V' are kept by rows ([dk][VT], [64][VT]: the accumulators' pairs are adjacent,
 * so one 4-byte store each) and read as B operands by transposing ldmatrix. Inputs are loaded a chunk
 * ahead: K and P (two sets) at the top of the chunk before, Q, W, U and c once the first round is done
 * with them. About 111 KB a block at value tiles of 32: two blocks (16 warps) an SM. */
/* CG column groups of warps: 4 CG warps, each 16 rows x VT / CG columns. At value tiles of 32, two
 * groups (8 warps of 16 x 16, 118 registers) against one (4 warps of 16 x 32, 152): twice the warps an
 * SM at the same shared memory to hide each other's latency; 15 sequences 1.47 -> 1.32 ms, 512 x 64
 * 2.09 -> 1.70 ms on the H200 */
/* At value tiles of 64, four groups (16 warps, one block an SM, 126 registers): the same warp tiles and
 * state tasks as two blocks of 32, but a chunk's K, Q, W and P are copied once for 64 columns instead of
 * twice. 15 sequences 0.93 -> 0.88 ms on the H200 (the scan 0.524 -> 0.479 ms under Nsight Compute) */
#define WY_CG(VT) ((VT) / 16)
/* ROLES (value tiles of 16, few long segments: one block an SM, nothing else to hide its latency): 8
 * warps in two roles instead of 4 doing both. Warps 0-3 take X = W S and V' (16 rows each), warps 4-7
 * Y = Q S, then the output from their Y; all eight one 16 x 16 task of the state update. Each warp's
 * chain is about half as long and two warps a scheduler hide each other's latency. */
#define WY_NW(VT, ROLES) ((ROLES) ? 8 : 4 * WY_CG(VT))
/* PROD (roles only): four more warps issue every chunk's copies (one a scheduler: K; W and c; Q and U;
 * P), into two chunks' worth of buffers (Q, W, U and c doubled too), so that the eight computing warps
 * never spend their issue slots on copy addresses (about two thirds of their instructions at one
 * sequence of 32,768 on the H200). One copy warp for all of them was slower than none: 2.48 against
 * 1.63 ms */
#define WY_NP 4
template <int VT, bool PROD = false> static size_t scan_wy_smem(void) {
    const size_t nb = PROD ? 2 : 1;
    return ((size_t)(2 + 2 * nb) * CH * LK2 + (size_t)2 * CH * LC2 +
            (size_t)((1 + nb) * CH + CH + PLM_GDN_TC_MAX_DK) * (VT + 8)) * 2 + nb * CH * sizeof(float);
}
/* the copy warps' barriers (bar 0 is __syncthreads), per buffer b and per half of a chunk's blocks: A
 * (Q, W, U and c: read before the chunk's middle) and B (K and P: read after it). "full": the half's
 * copies landed (its two copy warps arrive, the computing warps wait); "empty": every computing warp is
 * done with the half (they arrive, its copy warps wait). A's buffer is released at the chunk's middle,
 * so its refill for chunk c + 2 starts half a chunk before B's; B's "full" is also the computing warps'
 * mid-chunk barrier (all of them wait there: V' is whole). Each counts the 256 computing threads and
 * the half's 64 copy threads. */
#define BAR_FULL_A(b) (2 + (b))
#define BAR_EMPTY_A(b) (4 + (b))
#define BAR_FULL_B(b) (6 + (b))
#define BAR_EMPTY_B(b) (8 + (b))
/* warp_load_b16's whole-chunk case at 1 << LPR pieces a row: 2 << LPR copies a lane, unrolled (no row
 * test; an address add each side and the copy) */
template <int LPR>
__device__ __forceinline__ void warp_load_whole(unsigned d, const __nv_bfloat16 *sp, int64_t ss, unsigned ds) {
#pragma unroll
    for (int u = 0; u < (2 << LPR); u++, sp += ss, d += ds) cp_async16(d, sp);
}
/* one warp: rows 0 .. 63 of a BF16 block (row stride rs elements; rows from L on zero-filled), columns
 * 0 .. cols-1 (a multiple of 8) into dst (row stride ld), 1 << lpr 16-byte pieces a row (at most 32) */
__device__ __forceinline__ void warp_load_b16(__nv_bfloat16 *dst, int ld, const __nv_bfloat16 *src, int64_t rs, int L,
                                              int cols, int lpr) {
    const int lane = threadIdx.x & 31, c8 = (lane & ((1 << lpr) - 1)) * 8, r0 = lane >> lpr, step = 32 >> lpr;
    if (c8 >= cols) return;
    const __nv_bfloat16 *sp = src + (int64_t)r0 * rs + c8;
    unsigned d = (unsigned)__cvta_generic_to_shared(dst + r0 * ld + c8);
    const int64_t ss = (int64_t)step * rs;
    const unsigned ds = (unsigned)(step * ld * 2);
    if (L == CH) { /* a whole chunk (all but a segment's last): no row test, no select */
        switch (lpr) {
        case 1: warp_load_whole<1>(d, sp, ss, ds); return;
        case 2: warp_load_whole<2>(d, sp, ss, ds); return;
        case 3: warp_load_whole<3>(d, sp, ss, ds); return;
        case 4: warp_load_whole<4>(d, sp, ss, ds); return;
        case 5: warp_load_whole<5>(d, sp, ss, ds); return;
        default: break;
        }
    }
#pragma unroll 4
    for (int r = r0; r < CH; r += step, sp += ss, d += ds) cp_async16(d, r < L ? sp : src, r < L ? 16 : 0);
}
static __host__ __device__ inline int ilog2(int n) {
    int l = 0;
    while ((1 << l) < n) l++;
    return l;
}
/* the copy warp's shape: the key dimension padded to 16 a power of two (pieces a row a power of two) */
static bool wy_prod_fits(int dk) {
    const int DK = pad16(dk);
    return (DK & (DK - 1)) == 0 && DK <= PLM_GDN_TC_MAX_DK;
}

/* a kernel's dynamic shared memory, and the whole carveout for shared memory: the scans and the prep
 * need two blocks an SM (or a scan block beside a prep block) of up to 145 KB, and with no preference
 * the driver may configure the SM for fewer (the 15-sequence scan read 1.2 ms alone and 1.5 ms right
 * after a model's steps in one process) */
template <typename K> static void smem_attr(K *fn, int bytes) {
    cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    cudaFuncSetAttribute(fn, cudaFuncAttributePreferredSharedMemoryCarveout, (int)cudaSharedmemCarveoutMaxShared);
}

/* until the chunk prep has marked *p (ld.acquire, the prep's stores before its mark); a mark that never
 * comes (no prep item wrote it) traps after about 4 s instead of hanging */
__device__ __forceinline__ void wait_ready(const int *p) {
    unsigned ns = 32;
    for (long long n = 0;; n++) {
        int v;
        asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
        if (v) return;
        if (n > (1LL << 24)) __trap();
        __nanosleep(ns);
        if (ns < 256) ns <<= 1;
    }
}

/* ready (NULL: none): the prep runs beside this scan (launched as its programmatic dependent, the
 * prep's blocks all resident and marking each (chunk, head) done in ready[ci nv + h]); each chunk's P, W,
 * U and c are loaded only once marked, and the grid-wide wait, which would wait for the whole prep,
 * is left out. The scan's other inputs (q, k, v, the states) come from before the prep, whose blocks
 * each waited for them before letting this grid launch. */
template <int VT, bool ROLES, bool PROD>
__global__ void __launch_bounds__(32 * (WY_NW(VT, ROLES) + (PROD ? WY_NP : 0)), PROD || VT == 64 ? 1 : 2)
    k_gdn_wy_scan(float *o, float *const *S, const __nv_bfloat16 *Wg, const __nv_bfloat16 *Ug,
                  const __nv_bfloat16 *Pb, const float *Gg, const __nv_bfloat16 *qkvb, const int32_t *cu, int64_t T,
                  int nk, int nv, int dk, int dv, const int *ready, const int32_t *tab, int n_chunks, int min_len) {
    if (ready)
        plm_pdl_trigger();
    else
        plm_pdl_enter();
    constexpr int CG = ROLES ? 1 : WY_CG(VT), NW = WY_NW(VT, ROLES), CW = VT / CG, NTW = CW / 8, LV = VT + 8,
                  TPR = NW / 2;
    static_assert(VT == 16 || VT == 32 || VT == 64, "value tiles of 16, 32 or 64");
    static_assert(!ROLES || VT == 16, "roles at value tiles of 16");
    static_assert(!PROD || ROLES, "the copy warp with roles");
    constexpr int NB = PROD ? 2 : 1, NHALF = 32 * NW + 32 * WY_NP / 2; /* buffers; a half's barrier's threads */
    static_assert(!PROD || WY_NP == 4, "the copy warps: two for each half of a chunk's blocks");
    static_assert(NTW % 2 == 0, "pairs of n-tiles a warp");
    extern __shared__ __align__(16) unsigned char smb[];
    __nv_bfloat16 *Qb = reinterpret_cast<__nv_bfloat16 *>(smb), *Wb = Qb + NB * CH * LK2, *Kb = Wb + NB * CH * LK2;
    __nv_bfloat16 *Pb2 = Kb + 2 * CH * LK2, *Ub = Pb2 + 2 * CH * LC2, *Xt = Ub + NB * CH * LV, *Xd = Xt + CH * LV;
    __nv_bfloat16 *Sb = Xd + CH * LV; /* [dk][VT] */
    float *Gb = reinterpret_cast<float *>(Sb + PLM_GDN_TC_MAX_DK * LV);
    __nv_bfloat16 *Qs = Qb, *Ws = Wb, *Us = Ub;
    float *Gr = Gb;
    const __nv_bfloat16 *Qg = qkvb, *Kg = qkvb + T * nk * dk;
    int s, h, j0;
    scan_block(nv, (dv + VT - 1) / VT, VT, s, h, j0);
    const int kh = h / (nv / nk), tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int DK = pad16(dk), VC = min(VT, dv - j0), vr0 = 16 * (w & 3), vc0 = ROLES ? 0 : CW * (w >> 2);
    const bool xw = !ROLES || w < 4, yw = !ROLES || w >= 4; /* this warp computes X and V'; Y and O */
    const int64_t t_beg = cu[s], t_end = cu[s + 1];
    if (t_end - t_beg < min_len) return; /* the recurrent kernel takes this segment (or it is empty) */
    float *Sh = S[s] + (size_t)h * dk * dv;
    auto len = [&](int64_t t) { return t_end - t < CH ? (int)(t_end - t) : CH; };
    /* chunk t0's rows of this block's inputs in global memory (row strides: nk dk for K and Q, nv dk,
     * nv dv and nv CH for W, U and P); c's row i (rows past L read row 0, zero-filled by copy4) */
    auto k_at = [&](int64_t t0) { return Kg + (t0 * nk + kh) * (int64_t)dk; };
    auto q_at = [&](int64_t t0) { return Qg + (t0 * nk + kh) * (int64_t)dk; };
    auto w_at = [&](int64_t t0) { return Wg + (t0 * nv + h) * (int64_t)dk; };
    auto u_at = [&](int64_t t0) { return Ug + (t0 * nv + h) * (int64_t)dv + j0; };
    auto p_at = [&](int64_t t0) { return Pb + (t0 * nv + h) * CH; };
    auto c_at = [&](int64_t t0, int i, int L) { return Gg + (t0 + (i < L ? i : 0)) * nv + h; };
    auto load_kp = [&](int64_t t0, int b) {
        const int L = len(t0);
        load_b16_64<TPR, PLM_GDN_TC_MAX_DK>(Kb + b * CH * LK2, LK2, k_at(t0), (int64_t)nk * dk, L, dk);
        load_b16_64<TPR, CH>(Pb2 + b * CH * LC2, LC2, p_at(t0), (int64_t)nv * CH, L, CH);
    };
    auto load_qwu = [&](int64_t t0) {
        const int L = len(t0);
        load_b16_64<TPR, PLM_GDN_TC_MAX_DK>(Qs, LK2, q_at(t0), (int64_t)nk * dk, L, dk);
        load_b16_64<TPR, PLM_GDN_TC_MAX_DK>(Ws, LK2, w_at(t0), (int64_t)nv * dk, L, dk);
        load_b16_64<TPR, VT>(Us, LV, u_at(t0), (int64_t)nv * dv, L, VC);
        if (tid < CH) copy4(Gr + tid, c_at(t0, tid, L), tid < L);
    };
    for (int b = 0; b < NB; b++) { /* padding columns the copies never touch */
        zero_cols(Qb + b * CH * LK2, LK2, CH, dk, DK);
        zero_cols(Wb + b * CH * LK2, LK2, CH, dk, DK);
        zero_cols(Ub + b * CH * LV, LV, CH, VC, VT);
    }
    zero_cols(Kb, LK2, CH, dk, DK);
    zero_cols(Kb + CH * LK2, LK2, CH, dk, DK);
    /* the state slice: tasks of 16 rows (of dk) x CW columns, two a warp at most; each_state calls
     * f(a, nt, hf, d, c) for the accumulator pair [a][nt][2 hf .. 2 hf + 1] of this warp's tasks, at
     * state row d, columns c, c + 1 of the tile */
    const int ntask = DK / 16 * CG;
    float sacc[2][NTW][4];
    auto each_state = [&](auto f) {
#pragma unroll
        for (int a = 0; a < 2; a++) {
            const int task = w + NW * a;
            if (task < ntask)
#pragma unroll
                for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                    for (int hf = 0; hf < 2; hf++)
                        f(a, nt, hf, 16 * (task / CG) + g + 8 * hf, CW * (task % CG) + 8 * nt + 2 * t4);
        }
    };
    auto put_pair = [&](__nv_bfloat16 *X, int i, int c, float x0, float x1) {
        *reinterpret_cast<uint32_t *>(X + i * LV + c) = pack_bf16(x0, x1);
    };
    int ci0 = 0; /* with ready: this segment's first chunk in the prep's table (its starts ascend) */
    if (ready) {
        for (int lo = 0, hi = n_chunks - 1;;) {
            if (lo >= hi) {
                ci0 = lo;
                break;
            }
            const int mid = (lo + hi) >> 1;
            if (tab[2 * mid + 1] < t_beg)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (!PROD && tid == 0) wait_ready(ready + (size_t)ci0 * nv + h);
    }
    if (PROD) {
        __syncthreads(); /* the zeroed padding, before any copy lands beside it */
        if (w >= NW) { /* the copy warps: chunk c's half into buffer c & 1 once the computing warps are
                          done with chunk c - 2's half there (and, with ready, W, U, P and c once the prep
                          marked the chunk). Half A: warps 1 (W, c) and 2 (Q, U); half B: 0 (K) and 3 (P) */
            const int pw = w - NW, lk = ilog2(DK / 8), lu = ilog2(VT / 8);
            const bool half_a = pw == 1 || pw == 2;
            for (int64_t t0 = t_beg; t0 < t_end; t0 += CH) {
                const int c = (int)((t0 - t_beg) / CH), b = c & 1, L = len(t0);
                if (c >= 2) nbar_sync(half_a ? BAR_EMPTY_A(b) : BAR_EMPTY_B(b), NHALF);
                if (ready && pw != 0) { /* all but K come from the prep, or wait with what does */
                    if (lane == 0) wait_ready(ready + (size_t)(ci0 + c) * nv + h);
                    __syncwarp();
                }
                if (pw == 0) {
                    warp_load_b16(Kb + b * CH * LK2, LK2, k_at(t0), (int64_t)nk * dk, L, dk, lk);
                } else if (pw == 1) {
                    warp_load_b16(Wb + b * CH * LK2, LK2, w_at(t0), (int64_t)nv * dk, L, dk, lk);
                    for (int i = lane; i < CH; i += 32) copy4(Gb + b * CH + i, c_at(t0, i, L), i < L);
                } else if (pw == 2) {
                    warp_load_b16(Qb + b * CH * LK2, LK2, q_at(t0), (int64_t)nk * dk, L, dk, lk);
                    warp_load_b16(Ub + b * CH * LV, LV, u_at(t0), (int64_t)nv * dv, L, VC, lu);
                } else {
                    warp_load_b16(Pb2 + b * CH * LC2, LC2, p_at(t0), (int64_t)nv * CH, L, CH, 3);
                }
                asm volatile("cp.async.commit_group;\ncp.async.wait_all;\n" ::: "memory");
                __syncwarp(); /* bar.arrive is .aligned: the lanes that left warp_load_b16 early rejoin first */
                nbar_arrive(half_a ? BAR_FULL_A(b) : BAR_FULL_B(b), NHALF);
            }
            return;
        }
    } else {
        if (ready) __syncthreads();
        load_kp(t_beg, 0); /* the first chunk's copies before the state's loads */
        load_qwu(t_beg);
    }
    zero_acc(sacc[0]);
    zero_acc(sacc[1]);
    each_state([&](int a, int nt, int hf, int d, int c) {
        const float2 x = state_ld2(Sh + (size_t)d * dv + j0 + c, d < dk && c < VC, d < dk && c + 1 < VC);
        sacc[a][nt][2 * hf] = x.x;
        sacc[a][nt][2 * hf + 1] = x.y;
        put_pair(Sb, d, c, x.x, x.y);
    });
    int kb = 0;
    for (int64_t t0 = t_beg; t0 < t_end; t0 += CH) {
        const int L = len(t0);
        const bool next = t0 + CH < t_end;
        const __nv_bfloat16 *Ks = Kb + kb * CH * LK2, *Ps = Pb2 + kb * CH * LC2;
        if (PROD) { /* this chunk's Q, W, U and c (the copy warps' mark), and the state as the last chunk
                       left it (every computing warp waits here) */
            nbar_sync(BAR_FULL_A(kb), NHALF);
            Qs = Qb + kb * CH * LK2, Ws = Wb + kb * CH * LK2, Us = Ub + kb * CH * LV, Gr = Gb + kb * CH;
        } else {
            if (ready && next && tid == 0) wait_ready(ready + (size_t)(ci0 + (int)((t0 - t_beg) / CH) + 1) * nv + h);
            copies_done(); /* this chunk's blocks, and the state as the last chunk left it (and the next marked) */
            if (next) load_kp(t0 + CH, kb ^ 1);
        }
        const float gl = Gr[L - 1];
        float ec[2], dl[2]; /* exp(c_i) and exp(c_L - c_i) of this thread's two rows */
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int i = vr0 + g + 8 * hf;
            const float c = i < L ? Gr[i] : gl;
            ec[hf] = __expf(c);
            dl[hf] = __expf(gl - c);
        }
        /* X = W S and Y = Q S, sharing the state's fragments (ROLES: X on warps 0-3, Y on 4-7); unrolled
         * over the key dimension so that the fragments' addresses take immediate offsets (40 instructions
         * a k-step rolled, mostly address arithmetic: 15 sequences 1.36 -> 1.25 ms on the H200) */
        float xa[NTW][4], ya[NTW][4];
        zero_acc(xa);
        zero_acc(ya);
        if (ROLES) { /* xa holds X on warps 0-3, Y on warps 4-7 */
            const __nv_bfloat16 *A = xw ? Ws : Qs;
#pragma unroll
            for (int k0 = 0; k0 < PLM_GDN_TC_MAX_DK; k0 += 16) {
                if (k0 >= DK) break;
                uint32_t a[4];
                ldsm_a(a, A, LK2, vr0, k0);
                mma_bk(xa, a, Sb, LV, vc0, k0);
            }
        } else {
#pragma unroll
            for (int k0 = 0; k0 < PLM_GDN_TC_MAX_DK; k0 += 16) {
                if (k0 >= DK) break;
                uint32_t aw[4], aq[4];
                ldsm_a(aw, Ws, LK2, vr0, k0);
                ldsm_a(aq, Qs, LK2, vr0, k0);
#pragma unroll
                for (int np = 0; np < NTW / 2; np++) {
                    uint32_t b[4];
                    ldsm_bt(b, Sb, LV, k0, vc0 + 16 * np);
                    mma16816(xa[2 * np], aw, b[0], b[1]);
                    mma16816(xa[2 * np + 1], aw, b[2], b[3]);
                    mma16816(ya[2 * np], aq, b[0], b[1]);
                    mma16816(ya[2 * np + 1], aq, b[2], b[3]);
                }
            }
        }
        /* V' = U - X into Xt, and scaled by exp(c_L - c) into Xd */
        if (xw)
#pragma unroll
            for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int i = vr0 + g + 8 * hf, c = vc0 + 8 * nt + 2 * t4;
                    const __nv_bfloat162 u = *reinterpret_cast<const __nv_bfloat162 *>(Us + i * LV + c);
                    const float x0 = __low2float(u) - xa[nt][2 * hf], x1 = __high2float(u) - xa[nt][2 * hf + 1];
                    put_pair(Xt, i, c, x0, x1);
                    put_pair(Xd, i, c, dl[hf] * x0, dl[hf] * x1);
                }
        if (PROD) { /* Q, W, U and c are read: their refill may start; then this chunk's K and P, V' whole
                       and the state's BF16 copy read (every computing warp waits at B's "full") */
            if (t0 + 2 * CH < t_end) nbar_arrive(BAR_EMPTY_A(kb), NHALF);
            nbar_sync(BAR_FULL_B(kb), NHALF);
        } else {
            __syncthreads(); /* V' is whole; Q, W, U, c and the state's BF16 copy are read */
            if (next) load_qwu(t0 + CH);
        }
        if (yw) { /* O = diag(exp(c)) Y + P V' */
            const float(&yv)[NTW][4] = ROLES ? xa : ya;
            float pa[NTW][4];
            zero_acc(pa);
#pragma unroll
            for (int k0 = 0; k0 < CH; k0 += 16) {
                uint32_t a[4];
                ldsm_a(a, Ps, LC2, vr0, k0);
                mma_bk(pa, a, Xt, LV, vc0, k0);
            }
#pragma unroll
            for (int nt = 0; nt < NTW; nt++) {
                const int c = vc0 + 8 * nt + 2 * t4;
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int i = vr0 + g + 8 * hf;
                    float *dst = o + ((t0 + i) * nv + h) * (int64_t)dv + j0 + c;
                    if (i < L && c < VC) /* VC is even: the pair is whole */
                        *reinterpret_cast<float2 *>(dst) = make_float2(yv[nt][2 * hf] * ec[hf] + pa[nt][2 * hf],
                                                                       yv[nt][2 * hf + 1] * ec[hf] + pa[nt][2 * hf + 1]);
                }
            }
        }
        { /* S = exp(c_L) S + K^T Xd, into the accumulators and the BF16 copy (read only before the barrier) */
            float up[2][NTW][4];
#pragma unroll
            for (int a = 0; a < 2; a++) {
                const int task = w + NW * a;
                zero_acc(up[a]);
                if (task < ntask)
#pragma unroll
                    for (int k0 = 0; k0 < CH; k0 += 16) {
                        uint32_t af[4];
                        ldsm_at(af, Ks, LK2, 16 * (task / CG), k0);
                        mma_bk(up[a], af, Xd, LV, CW * (task % CG), k0);
                    }
            }
            const float el = expf(gl);
            each_state([&](int a, int nt, int hf, int d, int c) {
                const float x0 = sacc[a][nt][2 * hf] * el + up[a][nt][2 * hf];
                const float x1 = sacc[a][nt][2 * hf + 1] * el + up[a][nt][2 * hf + 1];
                sacc[a][nt][2 * hf] = x0;
                sacc[a][nt][2 * hf + 1] = x1;
                put_pair(Sb, d, c, x0, x1);
            });
        }
        if (PROD && t0 + 2 * CH < t_end) nbar_arrive(BAR_EMPTY_B(kb), NHALF); /* K and P: the copy warps refill them */
        kb ^= 1;
    }
    each_state([&](int a, int nt, int hf, int d, int c) {
        state_st2(Sh + (size_t)d * dv + j0 + c, d < dk && c < VC, d < dk && c + 1 < VC, sacc[a][nt][2 * hf],
                  sacc[a][nt][2 * hf + 1]);
    });
}

/* ---- the WY scan on warpgroup products (wgmma, Hopper) -----------------------------------------------
 * The same walk as k_gdn_wy_scan at value tiles of 64, with every product a warpgroup's wgmma reading its
 * operands from shared memory once (k_gdn_wy_scan's 16 warps each load the fragments they need: about
 * 490 KB of shared-memory traffic a chunk, where the copies and these products need about 220 KB). Four
 * warpgroups, two phases a chunk, a barrier after each:
 *   A: group 0 X = W S, then V' = U - X into Xt and exp(c_L - c) V' into Xd (BF16); group 1 Y = Q S;
 *      groups 2 and 3 issue the copies of the chunk after next (three buffers);
 *   B: group 1 O = diag(exp(c)) Y + P V' (Y scaled in its accumulators, then P Xt added), written out;
 *      groups 2 and 3 the state's rows 0-63 and 64-127: S = exp(c_L) S + K^T Xd in their accumulators
 *      (FP32 for the whole segment), then its BF16 copy for the next chunk's X and Y.
 * Key dimensions of 64 or 128 (NKB tiles of 64 columns); any value dimension (the last tile's columns
 * past dv zero). Shared memory: K, Q, W (three buffers, NKB tiles each), P, U (three buffers), the
 * state's BF16 copy (NKB tiles), Xt, Xd: 8 KB tiles in the 128-byte swizzle (wgmma.cuh), and c: 226 KB at
 * dk 128, one block an SM.
 * Its time is its instructions as much as its products: on the H200 (15 sequences, 32,768 tokens), the
 * first form (per-piece copy addresses, accumulators stored a pair at a time) issued about 600
 * instructions a warp a chunk and took 0.39 ms; copies whose rows move by a constant, ldmatrix /
 * stmatrix for U, Xt, Xd and the state's copy, and three buffers instead of two: 0.26 ms (the mma.sync
 * scan: 0.48). Group 1 a chunk behind on named barriers (its products off the chain, the state's copy and
 * Xt doubled, two buffers to fit) was slower: 0.27 ms. */
#define WG_TILE 8192
#define WG_NB 3 /* input buffers: a chunk's copies are issued two chunks ahead */
template <int NKB> static size_t scan_wg_smem(void) {
    return (size_t)WG_TILE * (3 * WG_NB * NKB + 2 * WG_NB + NKB + 2) + WG_NB * CH * 4 + 1024;
}
template <int NKB>
__global__ void __launch_bounds__(512, 1)
    k_gdn_wg_scan(float *o, float *const *S, const __nv_bfloat16 *Wg, const __nv_bfloat16 *Ug, const __nv_bfloat16 *Pb,
                  const float *Gg, const __nv_bfloat16 *qkvb, const int32_t *cu, int64_t T, int nk, int nv, int dk,
                  int dv, int min_len) {
    plm_pdl_enter();
#if PLM_WGMMA
    extern __shared__ __align__(16) unsigned char smw[];
    const unsigned sbase = ((unsigned)__cvta_generic_to_shared(smw) + 1023u) & ~1023u;
    unsigned char *gbase = smw + (sbase - (unsigned)__cvta_generic_to_shared(smw));
    /* tile offsets from sbase: K, Q, W [buffer][kb], P, U [buffer], the state's copy [kb], Xt, Xd; then c */
    constexpr int NB = WG_NB;
    constexpr unsigned OK_ = 0, OQ = NB * NKB * WG_TILE, OW = 2 * NB * NKB * WG_TILE, OP = 3 * NB * NKB * WG_TILE,
                       OU = OP + NB * WG_TILE, OS = OU + NB * WG_TILE, OXT = OS + NKB * WG_TILE, OXD = OXT + WG_TILE,
                       OC = OXD + WG_TILE;
    float *Gc = reinterpret_cast<float *>(gbase + OC);
    int s, h, j0;
    scan_block(nv, (dv + 63) / 64, 64, s, h, j0);
    const int kh = h / (nv / nk), tid = threadIdx.x, wg = tid >> 7, wl = (tid >> 5) & 3, lane = tid & 31,
              g = lane >> 2, t4 = lane & 3, VC = min(64, dv - j0);
    const int64_t t_beg = cu[s], t_end = cu[s + 1];
    if (t_end - t_beg < min_len) return; /* the recurrent kernel takes this segment (or it is empty) */
    float *Sh = S[s] + (size_t)h * dk * dv;
    const __nv_bfloat16 *Qg = qkvb, *Kg = qkvb + T * nk * dk;
    auto len = [&](int64_t t) { return t_end - t < CH ? (int)(t_end - t) : CH; };
    /* chunk t0's copies into buffer b (groups 2 and 3, 256 threads): rows past L zero-filled, U's columns
     * past VC too; c's rows past L read row 0 (never used) */
    auto issue = [&](int64_t t0, int b) {
        if (t0 >= t_end) return;
        const int L = len(t0), e0 = tid - 256;
        /* PR 16-byte pieces a row: thread e0 copies piece e0 % PR of rows e0 / PR + RS u, the same piece
         * and swizzle in every row it copies (RS is a multiple of 8), so only the rows' offsets move */
        auto rows = [&](auto pr, unsigned dst, const __nv_bfloat16 *src, int64_t rs, bool colok) {
            constexpr int PR = decltype(pr)::value, RS = 256 / PR;
            const int p = e0 % PR, r0 = e0 / PR;
            const unsigned d = dst + (p >> 3) * WG_TILE + r0 * 128 + (((p & 7) ^ (r0 & 7)) << 4);
            const __nv_bfloat16 *sp = src + r0 * rs + p * 8;
#pragma unroll
            for (int u = 0; u < CH / RS; u++) {
                const bool ok = colok && r0 + RS * u < L;
                cp_async16(d + RS * u * 128, ok ? sp + (int64_t)RS * u * rs : src, ok ? 16 : 0);
            }
        };
        using PK = std::integral_constant<int, 8 * NKB>;
        using P8 = std::integral_constant<int, 8>;
        rows(PK(), sbase + OK_ + b * NKB * WG_TILE, Kg + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, true);
        rows(PK(), sbase + OQ + b * NKB * WG_TILE, Qg + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, true);
        rows(PK(), sbase + OW + b * NKB * WG_TILE, Wg + (t0 * nv + h) * (int64_t)dk, (int64_t)nv * dk, true);
        rows(P8(), sbase + OP + b * WG_TILE, Pb + (t0 * nv + h) * (int64_t)CH, (int64_t)nv * CH, true);
        rows(P8(), sbase + OU + b * WG_TILE, Ug + (t0 * nv + h) * (int64_t)dv + j0, (int64_t)nv * dv, (e0 & 7) * 8 < VC);
        if (e0 < CH) copy4(Gc + b * CH + e0, Gg + (t0 + (e0 < L ? e0 : 0)) * nv + h, e0 < L);
    };
    /* one group a chunk (empty past the segment's end), so that a chunk's copies are done once at most
       NB - 2 groups are outstanding */
    auto commit = [&]() { asm volatile("cp.async.commit_group;\n" ::: "memory"); };
    auto landed = [&]() { asm volatile("cp.async.wait_group %0;\n" ::"n"(NB - 2) : "memory"); };
    /* the accumulators' rows and columns: row 16 wl + g + 8 hf, column 8 n + 2 t4 (+ 1) */
    float acc[32];
#pragma unroll
    for (int e = 0; e < 32; e++) acc[e] = 0.0f;
    const int mh = wg - 2; /* groups 2, 3: the state's rows 64 mh .. 64 mh + 63 */
    const bool sw = wg >= 2 && mh < NKB;
    const unsigned rows_a = wg_rows_addr(sbase, wl); /* + a tile's offset: this warp's ldmatrix / stmatrix rows */
    if (wg >= 2)
        for (int c = 0; c < NB - 1; c++) issue(t_beg + (int64_t)c * CH, c), commit();
    if (sw) {
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int d = 64 * mh + 16 * wl + g + 8 * hf, c = 8 * n + 2 * t4;
                const float2 x = state_ld2(Sh + (size_t)d * dv + j0 + c, c < VC, c + 1 < VC);
                acc[4 * n + 2 * hf] = x.x, acc[4 * n + 2 * hf + 1] = x.y;
            }
        wg_store_rows(rows_a + OS + mh * WG_TILE, acc);
    }
    if (wg >= 2) landed();
    fence_async_smem();
    __syncthreads();
    int b = 0;
    for (int64_t t0 = t_beg; t0 < t_end; t0 += CH, b = b == NB - 1 ? 0 : b + 1) {
        const int L = len(t0);
        const float *Gr = Gc + b * CH;
        const float gl = Gr[L - 1];
        if (wg >= 2) { /* NB - 1 chunks ahead, into the buffer read last before the last barrier */
            issue(t0 + (int64_t)(NB - 1) * CH, b == 0 ? NB - 1 : b - 1);
            commit();
        }
        if (wg < 2) { /* phase A: X = W S (group 0), Y = Q S (group 1), over the key dimension */
            const unsigned A = sbase + (wg == 0 ? OW : OQ) + b * NKB * WG_TILE;
            wg_gemm<0, 1, 4 * NKB>(acc, A, WG_TILE, 32, sbase + OS, WG_TILE, 2048, false);
            if (wg == 0) { /* V' = U - X, and exp(c_L - c) V' */
                float dl[2];
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int i = 16 * wl + g + 8 * hf;
                    dl[hf] = __expf(gl - (i < L ? Gr[i] : gl));
                }
                float u[32];
                wg_load_rows(u, rows_a + OU + b * WG_TILE);
#pragma unroll
                for (int e = 0; e < 32; e++) acc[e] = u[e] - acc[e];
                wg_store_rows(rows_a + OXT, acc);
#pragma unroll
                for (int e = 0; e < 32; e++) acc[e] *= dl[(e >> 1) & 1];
                wg_store_rows(rows_a + OXD, acc);
                fence_async_smem();
            }
        }
        __syncthreads(); /* V' whole; the state's copy read */
        if (wg == 1) { /* phase B: O = diag(exp(c)) Y + P V' */
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int i = 16 * wl + g + 8 * hf;
                const float ec = __expf(i < L ? Gr[i] : gl);
#pragma unroll
                for (int n = 0; n < 8; n++) acc[4 * n + 2 * hf] *= ec, acc[4 * n + 2 * hf + 1] *= ec;
            }
            wg_gemm<0, 1, 4>(acc, sbase + OP + b * WG_TILE, 0, 32, sbase + OXT, 0, 2048, true);
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int i = 16 * wl + g + 8 * hf;
                if (i < L) {
                    float *dst = o + ((t0 + i) * nv + h) * (int64_t)dv + j0;
#pragma unroll
                    for (int n = 0; n < 8; n++) {
                        const int c = 8 * n + 2 * t4;
                        if (c < VC) /* VC is even: the pair is whole */
                            *reinterpret_cast<float2 *>(dst + c) = make_float2(acc[4 * n + 2 * hf], acc[4 * n + 2 * hf + 1]);
                    }
                }
            }
        } else if (sw) { /* S = exp(c_L) S + K^T Xd: the keys' tile mh read transposed */
            const float el = expf(gl);
#pragma unroll
            for (int e = 0; e < 32; e++) acc[e] *= el;
            wg_gemm<1, 1, 4>(acc, sbase + OK_ + (b * NKB + mh) * WG_TILE, 0, 2048, sbase + OXD, 0, 2048, true);
            wg_store_rows(rows_a + OS + mh * WG_TILE, acc);
        }
        if (wg >= 2) landed(); /* the next chunk's inputs */
        fence_async_smem();
        __syncthreads(); /* the state's copy written; Xt, Xd, P, K, this buffer read */
    }
    if (sw) {
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int d = 64 * mh + 16 * wl + g + 8 * hf, c = 8 * n + 2 * t4;
                state_st2(Sh + (size_t)d * dv + j0 + c, c < VC, c + 1 < VC, acc[4 * n + 2 * hf], acc[4 * n + 2 * hf + 1]);
            }
    }
#else
    (void)o, (void)S, (void)Wg, (void)Ug, (void)Pb, (void)Gg, (void)qkvb, (void)cu, (void)T, (void)nk, (void)nv;
    (void)dk, (void)dv, (void)min_len;
    __trap();
#endif
}

/* ---- the WY chunk prep on warpgroup products (wgmma, Hopper) -----------------------------------------
 * prep_item8<true>'s work with its four products on wgmma: per item (chunk, value head), two warpgroups.
 *   loads (all): K, Q and V into 128-byte-swizzled tiles ([64][64] BF16, dk / 64 and dv / 64 of them),
 *     rows past L zero; c, beta and W's column scales (warp 0, chunk_decay);
 *   group 0: A = K K^T (K-major both sides), scaled by beta_i exp(c_i - c_j) below the diagonal, into
 *     FP32 A for the inverse, which group 0 then runs on its own barrier (tri_inverse's w4 form);
 *   group 1: P = Q K^T the same way, scaled by exp(c_i - c_j) on and below the diagonal, out as BF16;
 *   all: T diag(beta exp(c)) and T diag(beta) as BF16 tiles (in Q's place);
 *   group 0: W = (T diag(beta exp c)) K, a 64-column tile of dk at a time (K read MN-major); group 1:
 *     U = (T diag(beta)) V likewise.
 * Its outputs are the same products as prep_item8<false>'s at BF16 operands, summed in another order: not
 * the same bytes, so it runs only before the wgmma scan (never where test_gdn_prep_forms compares the
 * prep before the scan with the prep beside it). dk 64 or 128, dv a multiple of 64 up to 256. */
#define WP_THREADS 256
/* not yet run on a GPU (written 2026-11-30 after the session's device time was spent): off unless a
 * build asks for it (make CUDA=1 CPPFLAGS=-DPLM_GDN_WG_PREP=1); tests/cuda_build.sh compiles it */
#ifndef PLM_GDN_WG_PREP
#define PLM_GDN_WG_PREP 0
#endif
template <int NKB> static size_t prep_wg_smem(int dv) {
    const int nvb = dv / 64, nq = NKB > 2 ? NKB : 2; /* Q's tiles hold the two T tiles afterwards */
    return (size_t)WG_TILE * (NKB + nq + nvb) + (size_t)CH * LDC * 4 + 3 * CH * 4 + 1024;
}
template <int NKB>
__global__ void __launch_bounds__(WP_THREADS, 2)
    k_gdn_wg_prep(float *Pg, float *Gg, __nv_bfloat16 *Wg, __nv_bfloat16 *Ug, const __nv_bfloat16 *qkvb, const float *g,
                  const float *beta, const int32_t *cu, const int32_t *tab, int64_t T, int nk, int nv, int dk, int dv) {
    plm_pdl_enter();
#if PLM_WGMMA
    extern __shared__ __align__(16) unsigned char smw[];
    const unsigned sbase = ((unsigned)__cvta_generic_to_shared(smw) + 1023u) & ~1023u;
    unsigned char *gbase = smw + (sbase - (unsigned)__cvta_generic_to_shared(smw));
    const int nvb = dv / 64, nq = NKB > 2 ? NKB : 2;
    const unsigned OK_ = 0, OQ = NKB * WG_TILE, OV = OQ + nq * WG_TILE, OA = OV + nvb * WG_TILE;
    const unsigned OTW = OQ, OTU = OQ + WG_TILE; /* T's two scaled BF16 forms, once Q is read */
    float *As = reinterpret_cast<float *>(gbase + OA), *Gs = As + CH * LDC, *Bs = Gs + CH, *Ew = Bs + CH;
    const int ci = (int)(blockIdx.x / (unsigned)nv), h = (int)(blockIdx.x % (unsigned)nv);
    const int kh = h / (nv / nk), tid = threadIdx.x, wg = tid >> 7, wl = (tid >> 5) & 3, lane = tid & 31,
              g4 = lane >> 2, t4 = lane & 3;
    const int s = tab[2 * ci];
    const int64_t t0 = tab[2 * ci + 1];
    const int L = min(CH, (int)(cu[s + 1] - t0));
    /* rows 0 .. 63 of a [rows][n] BF16 matrix (row stride rs) into n / 64 swizzled tiles at dst: piece p
     * (16 bytes) of row r to tile p / 8, piece (p & 7) ^ (r & 7); rows from L zero-filled */
    auto load = [&](unsigned dst, const __nv_bfloat16 *src, int64_t rs, int n) {
        const int pr = n / 8;
        for (int e = tid; e < CH * pr; e += WP_THREADS) {
            const int r = e / pr, p = e % pr;
            const bool ok = r < L;
            cp_async16(dst + (p >> 3) * WG_TILE + sw128(r, (p & 7) * 8), ok ? src + r * rs + p * 8 : src, ok ? 16 : 0);
        }
    };
    load(sbase + OK_, qkvb + T * nk * dk + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, dk);
    load(sbase + OQ, qkvb + (t0 * nk + kh) * (int64_t)dk, (int64_t)nk * dk, dk);
    load(sbase + OV, qkvb + 2 * T * nk * dk + (t0 * nv + h) * (int64_t)dv, (int64_t)nv * dv, dv);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    if (tid < 32) chunk_decay_wy(Gs, Bs, Ew, g, beta, t0, L, nv, h, lane);
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    fence_async_smem();
    __syncthreads();
    if (tid < L) Gg[(t0 + tid) * nv + h] = Gs[tid];
    float acc[32];
#pragma unroll
    for (int e = 0; e < 32; e++) acc[e] = 0.0f;
    { /* A = K K^T (group 0), P = Q K^T (group 1): the keys' tiles as B, K-major (no transpose) */
        const unsigned A = sbase + (wg == 0 ? OK_ : OQ);
        wg_gemm<0, 0, 4 * NKB>(acc, A, WG_TILE, 32, sbase + OK_, WG_TILE, 32, false);
    }
    if (wg == 0) { /* A's rows 16 wl .. + 15, all 64 columns, scaled and masked, into FP32 A; then T */
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int i = 16 * wl + g4 + 8 * hf;
            const float bi = Bs[i], ci_ = Gs[i];
#pragma unroll
            for (int n = 0; n < 8; n++) {
                const int j = 8 * n + 2 * t4;
                const float x0 = j < i ? acc[4 * n + 2 * hf] * bi * __expf(ci_ - Gs[j]) : 0.0f;
                const float x1 = j + 1 < i ? acc[4 * n + 2 * hf + 1] * bi * __expf(ci_ - Gs[j + 1]) : 0.0f;
                *reinterpret_cast<float2 *>(As + i * LDC + j) = make_float2(x0, x1);
            }
        }
        __syncwarp(); /* the inverse's first phase reads only this warp's own diagonal block; its barriers order the rest */
        tri_inverse(As, true);
    } else { /* P's rows, scaled and masked, out as BF16 (a quad's 16-byte stores, rows from L left alone) */
        __nv_bfloat16 *Pd = reinterpret_cast<__nv_bfloat16 *>(Pg) + (t0 * nv + h) * CH;
        auto pval = [&](int n, int hf, int odd) {
            const int i = 16 * wl + g4 + 8 * hf, j = 8 * n + 2 * t4 + odd;
            return j <= i ? acc[4 * n + 2 * hf + odd] * __expf(Gs[i] - Gs[j]) : 0.0f;
        };
#pragma unroll
        for (int m = 0; m < 4; m++) {
            uint32_t pk[4];
#pragma unroll
            for (int k = 0; k < 4; k++) pk[k] = pack_bf16(pval(2 * m + (k & 1), k >> 1, 0), pval(2 * m + (k & 1), k >> 1, 1));
            quad_store16(Pd, (int64_t)nv * CH, pk, 16 * wl + g4, 16 * m, t4, L, CH);
        }
    }
    __syncthreads(); /* T whole; Q read by the products (its tiles take T's BF16 forms now) */
    for (int e = tid; e < CH * CH / 2; e += WP_THREADS) { /* T diag(beta exp c) and T diag(beta), pairs */
        const int i = e >> 5, j = (e & 31) * 2;
        const float2 t = *reinterpret_cast<const float2 *>(As + i * LDC + j);
        const unsigned o = sw128(i, j);
        const uint32_t w2 = pack_bf16(t.x * Ew[j], t.y * Ew[j + 1]), u2 = pack_bf16(t.x * Bs[j], t.y * Bs[j + 1]);
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sbase + OTW + o), "r"(w2) : "memory");
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sbase + OTU + o), "r"(u2) : "memory");
    }
    fence_async_smem();
    __syncthreads();
    { /* W = T' K (group 0), U = T'' V (group 1): a 64-column tile of the output at a time */
        const int nt = wg == 0 ? NKB : nvb, n = wg == 0 ? dk : dv;
        const unsigned A = sbase + (wg == 0 ? OTW : OTU), B0 = sbase + (wg == 0 ? OK_ : OV);
        __nv_bfloat16 *out = (wg == 0 ? Wg : Ug) + (t0 * nv + h) * (int64_t)n;
        for (int tb = 0; tb < nt; tb++) {
            wg_gemm<0, 1, 4>(acc, A, 0, 32, B0 + tb * WG_TILE, 0, 2048, false);
#pragma unroll
            for (int m = 0; m < 4; m++) {
                uint32_t pk[4];
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const int e = 4 * (2 * m + (k & 1)) + 2 * (k >> 1);
                    pk[k] = pack_bf16(acc[e], acc[e + 1]);
                }
                quad_store16(out, (int64_t)nv * n, pk, 16 * wl + g4, 64 * tb + 16 * m, t4, L, n);
            }
        }
    }
#else
    (void)Pg, (void)Gg, (void)Wg, (void)Ug, (void)qkvb, (void)g, (void)beta, (void)cu, (void)tab, (void)T, (void)nk;
    (void)nv, (void)dk, (void)dv;
    __trap();
#endif
}

/* ---- host side ------------------------------------------------------------------------------------ */

extern "C" int plm_gdn_chunks(int32_t *tab, const int32_t *cu, int n_seg, int *n_long, int *n_short) {
    int nl = 0, ns = 0;
    for (int s = 0; s < n_seg; s++) {
        const int32_t len = cu[s + 1] - cu[s];
        nl += len >= MIN_LEN;
        ns += len > 0 && len < MIN_LEN;
    }
    /* a few short segments beside chunked ones are folded in, a chunk each (a chunk of fewer than 16
       tokens is valid for every chunked kernel), so that no recurrent launch follows the scan */
    const bool fold = nl > 0 && ns <= PLM_GDN_FOLD_MAX;
    int n = 0;
    for (int s = 0; s < n_seg; s++) {
        const int32_t len = cu[s + 1] - cu[s];
        if (len < MIN_LEN && !(fold && len > 0)) continue;
        for (int32_t t = cu[s]; t < cu[s + 1]; t += CH) {
            tab[2 * n] = s;
            tab[2 * n + 1] = t;
            n++;
        }
    }
    if (n_long) *n_long = nl;
    if (n_short) *n_short = fold ? ns : 0;
    return n;
}

extern "C" size_t plm_gdn_work_floats(int64_t T, int nv, int dk, int dv) {
    /* T, P and c of every token and head (FP32 or BF16); WY: P, W and U in BF16, c, and a mark for every
     * (chunk, head): at most T / 64 + T / 16 chunks (one a started 64 tokens, segments of 16 tokens up),
     * and PLM_GDN_FOLD_MAX short segments folded in */
    const size_t tp = (size_t)T * nv * (2 * CH + 1),
                 wy = ((size_t)T * nv * (CH + dk + dv) + 1) / 2 + (size_t)T * nv +
                      ((size_t)T / CH + (size_t)T / MIN_LEN + 1 + PLM_GDN_FOLD_MAX) * nv;
    return tp > wy ? tp : wy;
}

/* streaming multiprocessors of the current device (an attribute query: no synchronisation) */
static int sm_count(void) {
    int dev = 0, n = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n > 0 ? n : 132;
}

extern "C" int plm_cuda_pdl_ok(int dev) {
    int major = 0;
    const char *pdl = getenv("PLM_PDL"), *jit = getenv("CUDA_FORCE_PTX_JIT");
    return cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major == 9 &&
           !(pdl && !strcmp(pdl, "0")) && !(jit && *jit && strcmp(jit, "0"));
}

/* the WY scan on warpgroup products (k_gdn_wg_scan): key dimensions of 64 or 128, on a device of compute
 * capability 9.0 (the sm_90a code; not where the driver would compile the portable PTX instead), unless
 * PLM_GDN_MMA_SYNC asks for the mma.sync scan; -1: a 9.0 device whose loaded kernel does not come from
 * Hopper code (a build without sm_90a: it would have only its trap) */
extern "C" int plm_gdn_wg_ok(int dk, int flags) {
    int dev = 0, major = 0, minor = 0;
    const char *jit = getenv("CUDA_FORCE_PTX_JIT");
    if (!(dk == 64 || dk == 128) || (flags & PLM_GDN_MMA_SYNC) || cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess || major != 9 ||
        minor != 0 || (jit && *jit && strcmp(jit, "0")))
        return 0;
    cudaFuncAttributes fa;
    return cudaFuncGetAttributes(&fa, k_gdn_wg_scan<2>) == cudaSuccess && fa.ptxVersion >= 90 ? 1 : -1;
}
static bool wg_scan_ok(int dk, int flags) { return plm_gdn_wg_ok(dk, flags) == 1; }

extern "C" int plm_gdn_tc_fits(int dk, int dv) { return dk >= 1 && dk <= PLM_GDN_TC_MAX_DK && dv >= 1; }

extern "C" int plm_gdn_bf_fits(int dk, int dv) { return plm_gdn_tc_fits(dk, dv) && dk % 8 == 0 && dv % 8 == 0; }

extern "C" void plm_gdn_tc_cuda(float *o, float *const *S, const float *q, const float *k, const float *v,
                                const void *qkv_bf, const float *g, const float *beta, const int32_t *cu, int n_seg,
                                int64_t T, const int32_t *tab, int n_chunks, int n_long, int n_short, float *work,
                                int nk, int nv,
                                int dk, int dv, int flags, void *stream) {
    if (n_seg <= 0) return;
    if (!plm_gdn_tc_fits(dk, dv)) {
        plm_gdn_cuda(o, S, q, k, v, g, beta, cu, n_seg, nk, nv, dk, dv, stream);
        return;
    }
    cudaStream_t st = PLM_STREAM(stream);
    float *Tg = work, *Pg = Tg + (size_t)T * nv * CH, *Gg = Pg + (size_t)T * nv * CH;
    const int precise = flags & PLM_GDN_PRECISE;
    const __nv_bfloat16 *qkvb = !precise && qkv_bf && plm_gdn_bf_fits(dk, dv) ? (const __nv_bfloat16 *)qkv_bf : NULL;
    /* single pass from the BF16 copies: the WY scan pays for its larger prep where segments have chunks
     * to walk; one-chunk segments (512 x 64) run the five-product scan with value tiles of 64 */
    /* the choices below count long segments and their chunks only (n_short folded ones aside); min_len:
     * the shortest segment the chunked kernels take (1 where plm_gdn_chunks folded the short ones in) */
    const int n_lchunks = n_chunks - n_short, min_len = n_short > 0 ? 1 : MIN_LEN;
    const int wy = qkvb && dv <= PLM_GDN_WY_MAX_DV && !(flags & PLM_GDN_FUSED) &&
                   ((flags & PLM_GDN_WY) || n_lchunks >= 2 * n_long);
    __nv_bfloat16 *Wy = reinterpret_cast<__nv_bfloat16 *>(work) + (size_t)T * nv * CH, *Uy = Wy + (size_t)T * nv * dk;
    if (wy) Pg = work, Gg = reinterpret_cast<float *>(Uy + (size_t)T * nv * dv); /* [P | W | U] BF16, then c */
    /* single pass from BF16 copies where every segment the chunked form takes is one chunk: the prep
     * and the scan in one kernel (PLM_GDN_FUSED: the prep, then the five-product scan) */
    const int one = qkvb && n_chunks > 0 && n_lchunks == n_long && !(flags & (PLM_GDN_FUSED | PLM_GDN_WY));
    if (one) {
        const int sb = (int)one_smem();
        smem_attr(k_gdn_one, sb);
        k_gdn_one<<<dim3((unsigned)(n_seg * ((dv + ONE_VT - 1) / ONE_VT)), (unsigned)nv), 256, sb, st>>>(
            o, S, qkvb, g, beta, cu, T, nk, nv, dk, dv, min_len);
    } else if (n_chunks > 0) {
        /* value tiles of 64 columns (8 warps a block; the WY scan 16), or of 32 (4 warps; the WY scan 8)
         * when tiles of 64 would leave most SMs idle (a few long segments: one block a segment, head and
         * tile walks all its chunks), or of 16 when even those would */
        int vt = dv > 32 && (long)n_long * nv * ((dv + 63) / 64) >= 2L * sm_count() ? 64 : 32;
        /* so few blocks of 32 that SMs idle: tiles of 16 (single pass from BF16 copies), twice the blocks */
        if (vt == 32 && qkvb && (long)n_long * nv * ((dv + 31) / 32) < sm_count()) vt = 16;
        if (flags & PLM_GDN_VT32) vt = 32;
        if (flags & PLM_GDN_VT64) vt = 64;
        if ((flags & PLM_GDN_VT16) && qkvb) vt = 16;
        const int ntile = (dv + vt - 1) / vt;
        /* the WY scan at tiles of 64 on warpgroup products (a device query and a function attribute:
           asked once a call) */
        const bool wgs = wy && vt == 64 && wg_scan_ok(dk, flags);
        /* few long segments (value tiles of 16, a scan block an SM at most): the prep
         * runs beside the scan instead of before it. Its grid is two blocks an SM, each walking the
         * items in chunk order and marking them; the scan is its programmatic dependent (it launches
         * once every prep block has started, so the prep never waits behind the scan's blocks), and
         * waits for each chunk's mark. Only where the launch can overlap (Hopper, not switched off):
         * elsewhere the prep's grid would only lose occupancy; nor while the stream is being captured
         * (the step's graphs make their own programmatic edges). One sequence of 32,768: 1.80 -> 1.69
         * ms on the H200. PLM_GDN_PREP_BEFORE: the prep before the scan. */
        int dev = 0;
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        int *ready = wy && vt == 16 && !(flags & PLM_GDN_PREP_BEFORE) && cudaGetDevice(&dev) == cudaSuccess &&
                             plm_cuda_pdl_ok(dev) && cudaStreamIsCapturing(st, &cs) == cudaSuccess &&
                             cs == cudaStreamCaptureStatusNone
                         ? reinterpret_cast<int *>(Gg + (size_t)T * nv)
                         : NULL;
        /* the scan with its copy warps (a larger block) leaves room beside it for one prep block, not two:
           a second would wait for a scan block to finish, with its items, which the scan waits for */
        const bool prod = wy && vt == 16 && !(flags & (PLM_GDN_WY4 | PLM_GDN_NO_PROD)) && wy_prod_fits(dk);
        const long items = (long)n_chunks * nv,
                   few = flags & PLM_GDN_PREP_FEW ? 3 : ready && prod ? (long)sm_count() : 2L * sm_count();
        dim3 pgrid((unsigned)(ready && items > few ? few : items)), sgrid((unsigned)((long)n_seg * nv * ntile)); /* scan_block's order */
        if (ready) cudaMemsetAsync(ready, 0, (size_t)items * sizeof(int), st);
#define PREP(SPLIT, BFIN)                                                                                           \
    do {                                                                                                            \
        const size_t ps = prep_smem(BFIN, false, dv);                                                               \
        smem_attr(k_gdn_tc_prep<SPLIT, BFIN>, (int)ps);                                                             \
        k_gdn_tc_prep<SPLIT, BFIN><<<pgrid, PREP_THREADS, ps, st>>>(Tg, Pg, Gg, q, k, qkvb, g, beta, cu, tab, T, nk, nv, \
                                                                    dk, dv);                                        \
    } while (0)
#define GO(SPLIT, VT)                                                                                               \
    do {                                                                                                            \
        smem_attr(k_gdn_tc_scan<SPLIT, VT>, (int)scan_smem<VT>());                                                  \
        k_gdn_tc_scan<SPLIT, VT><<<sgrid, VT * 4, scan_smem<VT>(), st>>>(o, S, Tg, Pg, Gg, q, k, v, beta, cu, n_seg, \
                                                                          nk, nv, dk, dv, min_len);                 \
    } while (0)
#define GB(VT, MODE)                                                                                                \
    do {                                                                                                            \
        const int sb = (int)scan_bf_smem<VT, MODE>();                                                               \
        smem_attr(k_gdn_bf_scan<VT, MODE>, sb);                                                                     \
        k_gdn_bf_scan<VT, MODE><<<sgrid, BF_THREADS(VT), sb, st>>>(o, S, Tg, Pg, Gg, q, k, v, qkvb, beta, cu, T, n_seg, nk, nv, \
                                                            dk, dv, min_len);                                       \
    } while (0)
#define GW(VT, ROLES, PROD)                                                                                         \
    do {                                                                                                            \
        const int sb = (int)scan_wy_smem<VT, PROD>();                                                               \
        smem_attr(k_gdn_wy_scan<VT, ROLES, PROD>, sb);                                                              \
        cudaLaunchConfig_t cfg = {};                                                                                \
        cudaLaunchAttribute at[1];                                                                                  \
        cfg.gridDim = sgrid, cfg.blockDim = dim3(32 * (WY_NW(VT, ROLES) + (PROD ? WY_NP : 0)));                \
        cfg.dynamicSmemBytes = (size_t)sb;                                                                          \
        cfg.stream = st;                                                                                            \
        /* ready implies plm_cuda_pdl_ok. With an earlier launch's error pending (the prep's own, perhaps:      \
           then no mark would ever come) the scan goes plainly and without the marks, ordered after the prep   \
           by the stream, and the error stays for the step to report: clearing a refused programmatic launch's \
           error below must not clear that one too */                                                          \
        const int *rdy = ready && cudaPeekAtLastError() == cudaSuccess ? ready : NULL;                              \
        if (rdy) {                                                                                                  \
            at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;                                          \
            at[0].val.programmaticStreamSerializationAllowed = 1;                                                   \
            cfg.attrs = at, cfg.numAttrs = 1;                                                                       \
        }                                                                                                           \
        for (int tries = 0; tries < 2; tries++) { /* refused as programmatic: launched plainly */                  \
            if (cudaLaunchKernelEx(&cfg, k_gdn_wy_scan<VT, ROLES, PROD>, o, S, (const __nv_bfloat16 *)Wy,                 \
                                   (const __nv_bfloat16 *)Uy, (const __nv_bfloat16 *)Pg, (const float *)Gg, qkvb, cu, \
                                   T, nk, nv, dk, dv, rdy, tab, n_chunks, min_len) == cudaSuccess ||                \
                !cfg.numAttrs)                                                                                      \
                break;                                                                                              \
            cudaGetLastError();                                                                                     \
            cfg.numAttrs = 0;                                                                                       \
        }                                                                                                           \
    } while (0)
#define GWG(NKB)                                                                                                    \
    do {                                                                                                            \
        const int sb = (int)scan_wg_smem<NKB>();                                                                    \
        smem_attr(k_gdn_wg_scan<NKB>, sb);                                                                          \
        k_gdn_wg_scan<NKB><<<sgrid, 512, sb, st>>>(o, S, (const __nv_bfloat16 *)Wy, (const __nv_bfloat16 *)Uy,      \
                                                   (const __nv_bfloat16 *)Pg, (const float *)Gg, qkvb, cu, T, nk, nv, \
                                                   dk, dv, min_len);                                                \
    } while (0)
#if PLM_GDN_WG_PREP
        if (wgs && !ready && dv % 64 == 0) { /* before the wgmma scan */
            if (dk == 128) {
                const int ps = (int)prep_wg_smem<2>(dv);
                smem_attr(k_gdn_wg_prep<2>, ps);
                k_gdn_wg_prep<2><<<pgrid, WP_THREADS, ps, st>>>(Pg, Gg, Wy, Uy, qkvb, g, beta, cu, tab, T, nk, nv, dk, dv);
            } else {
                const int ps = (int)prep_wg_smem<1>(dv);
                smem_attr(k_gdn_wg_prep<1>, ps);
                k_gdn_wg_prep<1><<<pgrid, WP_THREADS, ps, st>>>(Pg, Gg, Wy, Uy, qkvb, g, beta, cu, tab, T, nk, nv, dk, dv);
            }
        } else
#endif
        if (wy) {
            const size_t ps = prep_smem(true, true, dv);
            smem_attr(k_gdn_tc_prep8, (int)ps);
            k_gdn_tc_prep8<<<pgrid, PREP8_THREADS, ps, st>>>(Pg, Gg, Wy, Uy, qkvb, g, beta, cu, tab, n_chunks, ready, T, nk,
                                                             nv, dk, dv);
        }
        if (wy) {
#ifdef PLM_GDN_NO_ROLES
            flags |= PLM_GDN_WY4;
#endif
            if (vt == 16 && (flags & PLM_GDN_WY4))
                GW(16, false, false);
            else if (prod)
                GW(16, true, true);
            else if (vt == 16)
                GW(16, true, false);
            else if (wgs && dk == 128)
                GWG(2);
            else if (wgs)
                GWG(1);
            else if (vt == 64)
                GW(64, false, false);
            else
                GW(32, false, false);
        } else if (precise) {
            PREP(true, false);
            if (vt == 64)
                GO(true, 64);
            else
                GO(true, 32);
        } else if (qkvb) { /* T and P in BF16, q, k, v from their BF16 copies by cp.async */
            PREP(false, true);
            if (vt == 64 && (flags & PLM_GDN_BF2))
                GB(64, BF2);
            else if (vt == 64)
                GB(64, BF);
            else if (vt == 16)
                GB(16, BF2);
            else
                GB(32, BF2);
        } else { /* T and P in BF16, q, k, v rounded as they are loaded */
            PREP(false, false);
            if (vt == 64)
                GB(64, SYNC);
            else
                GB(32, STAGE);
        }
#undef GW
#undef GWG
#undef GB
#undef GO
#undef PREP
    }
    /* segments shorter than MIN_LEN (decode tokens): the recurrent form; none when every segment is long
     * (its blocks would only return: 25-42 us of empty blocks at 15 and 512 segments on the H200) or the
     * short ones are folded into the chunks (the rest, if any, empty) */
    if (n_chunks == 0 || (n_short == 0 && n_long < n_seg))
        plm_gdn_rec_cuda(o, S, q, k, v, g, beta, cu, n_seg, nk, nv, dk, dv, n_chunks > 0 ? MIN_LEN : 0x7fffffff, stream);
}
