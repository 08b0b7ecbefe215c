/* Tensor-core building blocks of the CUDA kernels (gdn_tc.cu, attn.cu): mma.sync m16n8k16 with BF16
 * operands and FP32 accumulation (sm_80 and later), fragment loaders over FP32 shared memory (one
 * BF16 rounding per operand, or split into hi + lo parts and three products: FP32-grade), and
 * cp.async copies of row blocks into shared memory. */
#ifndef PLM_KERNELS_MMA_CUH
#define PLM_KERNELS_MMA_CUH

#include <cuda_bf16.h>
#include <stdint.h>

static __host__ __device__ inline int pad16(int n) { return (n + 15) & ~15; }

/* ---- fragments of mma.sync.m16n8k16 (row.col, bf16 x bf16 -> f32) ---------------------------------
 * lane = 4 g + t. A (16 x 16): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..).
 * B (16 x 8, k x n): b0 (2t..2t+1, g), b1 (2t+8..2t+9, g). C (16 x 8): c0, c1 (g, 2t..2t+1),
 * c2, c3 (g+8, 2t..2t+1). The lower half of each 32-bit register holds the lower index. */

__device__ __forceinline__ uint32_t pack_bf16(float x, float y) {
    __nv_bfloat162 v = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* hi = bf16(x, y); lo = bf16 of the remainders */
__device__ __forceinline__ void split_pair(float x, float y, uint32_t &hi, uint32_t &lo) {
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    hi = *reinterpret_cast<uint32_t *>(&h);
    lo = pack_bf16(x - __low2float(h), y - __high2float(h));
}

__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* acc += (ah + al) (B_hi + B_lo) without the lo lo term, the B fragment's pairs y0 (k = 2t, 2t + 1) and
 * y1 (k = 2t + 8, 2t + 9) split here: an FP32-grade product from BF16 tensor cores */
__device__ __forceinline__ void mma_split3(float (&acc)[4], const uint32_t (&ah)[4], const uint32_t (&al)[4], float2 y0,
                                           float2 y1) {
    uint32_t bh0, bl0, bh1, bl1;
    split_pair(y0.x, y0.y, bh0, bl0);
    split_pair(y1.x, y1.y, bh1, bl1);
    mma16816(acc, ah, bh0, bh1);
    mma16816(acc, ah, bl0, bl1);
    mma16816(acc, al, bh0, bh1);
}

/* acc[nt] += A[r0 .. r0+15][0 .. K) B[0 .. K)[n0 + 8 nt .. +7] for nt < NT. fa(r, k) returns the pair
 * A[r][k], A[r][k+1] and fb(k, n) the pair B[k][n], B[k+1][n] (k even; zero in any padding); K a
 * multiple of 16. */
template <bool SPLIT, int NT, class FA, class FB>
__device__ __forceinline__ void warp_mma(float (&acc)[NT][4], int r0, int n0, int K, FA fa, FB fb) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll 4
    for (int k0 = 0; k0 < K; k0 += 16) {
        uint32_t ah[4], al[4];
        const int ka = k0 + 2 * t;
        const float2 x0 = fa(r0 + g, ka), x1 = fa(r0 + g + 8, ka), x2 = fa(r0 + g, ka + 8), x3 = fa(r0 + g + 8, ka + 8);
        if (SPLIT) {
            split_pair(x0.x, x0.y, ah[0], al[0]);
            split_pair(x1.x, x1.y, ah[1], al[1]);
            split_pair(x2.x, x2.y, ah[2], al[2]);
            split_pair(x3.x, x3.y, ah[3], al[3]);
        } else {
            ah[0] = pack_bf16(x0.x, x0.y);
            ah[1] = pack_bf16(x1.x, x1.y);
            ah[2] = pack_bf16(x2.x, x2.y);
            ah[3] = pack_bf16(x3.x, x3.y);
        }
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const int n = n0 + 8 * nt + g;
            const float2 y0 = fb(ka, n), y1 = fb(ka + 8, n);
            if (SPLIT) {
                mma_split3(acc[nt], ah, al, y0, y1);
            } else {
                mma16816(acc[nt], ah, pack_bf16(y0.x, y0.y), pack_bf16(y1.x, y1.y));
            }
        }
    }
}

/* operand pairs from shared memory: along a row (8-byte aligned) and down a column */
__device__ __forceinline__ float2 row2(const float *X, int ld, int r, int c) {
    return *reinterpret_cast<const float2 *>(X + r * ld + c);
}
__device__ __forceinline__ float2 col2(const float *X, int ld, int r, int c) {
    return make_float2(X[r * ld + c], X[(r + 1) * ld + c]);
}

template <int NT> __device__ __forceinline__ void zero_acc(float (&acc)[NT][4]) {
#pragma unroll
    for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
}

/* calls f(row, col, value) for each accumulator element of the warp tile at (r0, n0) */
template <int NT, class F> __device__ __forceinline__ void each_acc(const float (&acc)[NT][4], int r0, int n0, F f) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const int c = n0 + 8 * nt + 2 * t;
        f(r0 + g, c, acc[nt][0]);
        f(r0 + g, c + 1, acc[nt][1]);
        f(r0 + g + 8, c, acc[nt][2]);
        f(r0 + g + 8, c + 1, acc[nt][3]);
    }
}

/* Copies into shared memory with every copy in flight at once (cp.async, 16 bytes where the layout
 * allows, zero-filled outside the source), so a block waits for memory once per block of rows, not
 * once per element. Completed by copies_done() (all) or cp.async.wait_group. */
__device__ __forceinline__ void copy4(float *dst, const float *src, bool ok) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 4 : 0));
}
/* 16 bytes from src to the shared-memory address d (a __cvta_generic_to_shared value); with bytes,
 * only that many read and the rest zero-filled */
__device__ __forceinline__ void cp_async16(unsigned d, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));
}
__device__ __forceinline__ void cp_async16(unsigned d, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void copy16(float *dst, const float *src, bool ok) {
    cp_async16((unsigned)__cvta_generic_to_shared(dst), src, ok ? 16 : 0);
}
__device__ __forceinline__ void copies_done(void) {
    asm volatile("cp.async.commit_group;\ncp.async.wait_all;\n" ::: "memory");
    __syncthreads();
}

/* rows x cols of src (row stride rs floats) into a prow x pcol block of dst (row stride ld, a multiple
 * of 4), zero outside */
__device__ __forceinline__ void load_block(float *dst, int ld, const float *src, int64_t rs, int rows, int cols,
                                           int prow, int pcol) {
    const int vec = (((uintptr_t)src & 15) | (rs & 3) | (cols & 3) | (pcol & 3)) == 0 ? 4 : 1;
    const int pv = pcol / vec, nt = blockDim.x, di = nt / pv, dc = (nt % pv) * vec;
    int i = threadIdx.x / pv, c = (threadIdx.x % pv) * vec; /* walks the block nt elements at a time */
    for (; i < prow; i += di, c += dc) {
        if (c >= pcol) c -= pcol, i++;
        if (i >= prow) break;
        const bool ok = i < rows && c < cols;
        if (vec == 4)
            copy16(dst + i * ld + c, ok ? src + i * rs + c : src, ok);
        else
            copy4(dst + i * ld + c, ok ? src + i * rs + c : src, ok);
    }
}

/* ---- BF16 operands in shared memory, fragments by ldmatrix -----------------------------------------
 * A (16 x 16, row-major rows of a [rows][ld] BF16 block at (r0, k0)); B pairs of n-tiles from a block
 * stored [n][k] (ldsm_b: two 16 x 8 fragments, n0 .. n0+15) or [k][n] (ldsm_bt, transposed on load). */
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const __nv_bfloat16 *p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const __nv_bfloat16 *p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void ldsm_a(uint32_t (&a)[4], const __nv_bfloat16 *X, int ld, int r0, int k0) {
    const int l = threadIdx.x & 31;
    ldsm_x4(a, X + (r0 + (l & 7) + ((l >> 3) & 1) * 8) * ld + k0 + (l >> 4) * 8);
}
__device__ __forceinline__ void ldsm_b(uint32_t (&b)[4], const __nv_bfloat16 *X, int ld, int n0, int k0) {
    const int l = threadIdx.x & 31;
    ldsm_x4(b, X + (n0 + (l & 7) + (l >> 4) * 8) * ld + k0 + ((l >> 3) & 1) * 8);
}
/* A (16 x 16 at (m0, k0)) from a block stored [k][m] (a transposed operand) */
__device__ __forceinline__ void ldsm_at(uint32_t (&a)[4], const __nv_bfloat16 *X, int ld, int m0, int k0) {
    const int l = threadIdx.x & 31;
    ldsm_x4_t(a, X + (k0 + (l & 7) + ((l >> 4) & 1) * 8) * ld + m0 + ((l >> 3) & 1) * 8);
}
/* acc[0 .. NT) += A (16 x 16, in a) times the NT n-tiles of B at columns n0 .. n0 + 8 NT of a BF16
 * block stored [n][k] (k0 .. k0 + 15) */
template <int NT>
__device__ __forceinline__ void mma_bn(float (&acc)[NT][4], const uint32_t (&a)[4], const __nv_bfloat16 *B, int ld,
                                       int n0, int k0) {
#pragma unroll
    for (int np = 0; np < NT / 2; np++) {
        uint32_t b[4];
        ldsm_b(b, B, ld, n0 + 16 * np, k0);
        mma16816(acc[2 * np], a, b[0], b[1]);
        mma16816(acc[2 * np + 1], a, b[2], b[3]);
    }
}

/* acc[0 .. NT) += A[r0 .. r0+15][0 .. K) B[n0 .. n0 + 8 NT)[0 .. K)^T: both BF16 blocks stored by rows
 * ([m][k] and [n][k]), K a multiple of 16; KMAX > 0 (K <= KMAX): unrolled, the fragments' addresses
 * as immediate offsets (a rolled k-step spends several times its ldmatrix and mma on address
 * arithmetic) */
template <int KMAX = 0, int NT>
__device__ __forceinline__ void mma_rows_bt(float (&acc)[NT][4], const __nv_bfloat16 *A, int lda, int r0,
                                            const __nv_bfloat16 *B, int ldb, int n0, int K) {
    if (KMAX > 0) {
#pragma unroll
        for (int k0 = 0; k0 < (KMAX > 0 ? KMAX : 16); k0 += 16) {
            if (k0 >= K) break;
            uint32_t a[4];
            ldsm_a(a, A, lda, r0, k0);
            mma_bn(acc, a, B, ldb, n0, k0);
        }
    } else {
        for (int k0 = 0; k0 < K; k0 += 16) {
            uint32_t a[4];
            ldsm_a(a, A, lda, r0, k0);
            mma_bn(acc, a, B, ldb, n0, k0);
        }
    }
}

/* rows x cols (a multiple of 8) of BF16 src (row stride rs) into a prow-row block of dst (row stride
 * ld, 16-byte aligned rows) by cp.async, zero-filled past rows */
__device__ __forceinline__ void load_b16(__nv_bfloat16 *dst, int ld, const __nv_bfloat16 *src, int64_t rs, int rows,
                                         int prow, int cols) {
    const int per = cols >> 3;
    for (int e = threadIdx.x; e < prow * per; e += blockDim.x) {
        const int i = e / per, c = (e - i * per) * 8;
        const bool ok = i < rows;
        cp_async16((unsigned)__cvta_generic_to_shared(dst + i * ld + c), ok ? src + i * rs + c : src, ok ? 16 : 0);
    }
}
/* the same for a 64-row block, TPR threads a row (blockDim.x = 64 TPR), cols <= MAXC: 16-byte pieces,
 * no division (the per-chunk loads of the delta-rule kernels: load_b16's index arithmetic cost more than
 * the copies). Kept rolled, although it spends 17 instructions a piece (36 % of the one-sequence WY
 * scan's instructions on the H200): unrolled (one base address each side and immediate offsets), that
 * scan measured 2.11 ms against 1.96 in one call, and 2.17 against 1.89 in an earlier form. */
template <int TPR, int MAXC>
__device__ __forceinline__ void load_b16_64(__nv_bfloat16 *dst, int ld, const __nv_bfloat16 *src, int64_t rs,
                                            int rows, int cols) {
    const int i = threadIdx.x / TPR, c0 = (threadIdx.x % TPR) * 8;
    const bool ok = i < rows;
    const __nv_bfloat16 *s = (ok ? src + i * rs : src) + c0;
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst + i * ld + c0), n = ok ? 16 : 0;
#pragma unroll 1
    for (int u = 0; u < (MAXC + 8 * TPR - 1) / (8 * TPR); u++)
        if (c0 + 8 * TPR * u < cols) cp_async16(d + 16 * TPR * u, s + 8 * TPR * u, n);
}
__device__ __forceinline__ void ldsm_bt(uint32_t (&b)[4], const __nv_bfloat16 *X, int ld, int k0, int n0) {
    const int l = threadIdx.x & 31;
    ldsm_x4_t(b, X + (k0 + (l & 7) + ((l >> 3) & 1) * 8) * ld + n0 + (l >> 4) * 8);
}
/* acc[0 .. NT) += A (16 x 16, in a) times the NT n-tiles of B at columns n0 .. n0 + 8 NT of a BF16
 * block stored [k][n] (rows k0 .. k0 + 15): mma_bn's twin for B stored the other way */
template <int NT>
__device__ __forceinline__ void mma_bk(float (&acc)[NT][4], const uint32_t (&a)[4], const __nv_bfloat16 *B, int ld,
                                       int n0, int k0) {
#pragma unroll
    for (int np = 0; np < NT / 2; np++) {
        uint32_t b[4];
        ldsm_bt(b, B, ld, k0, n0 + 16 * np);
        mma16816(acc[2 * np], a, b[0], b[1]);
        mma16816(acc[2 * np + 1], a, b[2], b[3]);
    }
}

/* rows x cols of FP32 src (row stride rs) rounded to BF16 into a prow x pcol block of dst (row stride
 * ld elements, 8-byte aligned rows; pcol a multiple of 4), zero outside; four loads in flight a thread */
__device__ __forceinline__ void load_bf16(__nv_bfloat16 *dst, int ld, const float *src, int64_t rs, int rows, int cols,
                                          int prow, int pcol) {
    const bool v4 = (((uintptr_t)src & 15) | (rs & 3) | (cols & 3)) == 0;
    const int per = pcol >> 2, n = prow * per, nt = blockDim.x;
    for (int e0 = threadIdx.x; e0 < n; e0 += 4 * nt) {
        float4 x[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int e = e0 + u * nt, i = e / per, c = (e - i * per) * 4;
            x[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (e < n && i < rows && c < cols) {
                const float *s = src + i * rs + c;
                if (v4)
                    x[u] = *reinterpret_cast<const float4 *>(s);
                else {
                    x[u].x = s[0];
                    if (c + 1 < cols) x[u].y = s[1];
                    if (c + 2 < cols) x[u].z = s[2];
                    if (c + 3 < cols) x[u].w = s[3];
                }
            }
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int e = e0 + u * nt, i = e / per, c = (e - i * per) * 4;
            if (e < n) *reinterpret_cast<uint2 *>(dst + i * ld + c) = make_uint2(pack_bf16(x[u].x, x[u].y), pack_bf16(x[u].z, x[u].w));
        }
    }
}

#endif
