/* Hopper's warpgroup products (wgmma.mma_async, sm_90a): a warpgroup of four warps multiplies a 64-row
 * A by an N-column B, both read from shared memory through descriptors, into FP32 accumulators spread
 * over its 128 threads, without the per-warp fragment loads of mma.sync (each warp of an mma.sync tiling
 * loads its own copy of the operands a product shares: four times the shared-memory traffic at the delta
 * rule's scan's shapes).
 *
 * Operands live in shared memory as tiles of [rows][64] BF16 (128 bytes a row) in the 128-byte swizzle:
 * the 16-byte piece p of row r sits at piece p ^ (r & 7) of its row, and a tile starts on a 1,024-byte
 * boundary (the swizzle works on address bits 4-6 against 7-9). One tile layout serves both ways an
 * operand is read:
 *   K-major (the product's reduction index runs along the row: A = W [i][d] for X = W S): a k-step of
 *   16 is 32 bytes further along the rows, 8-row groups 1,024 bytes apart;
 *   MN-major (the output's row or column index runs along the row, the reduction index down the rows:
 *   B = S [d][c] for X = W S, A = K [j][d] for K^T V'): a k-step of 16 is 16 rows (2,048 bytes) down,
 *   and the instruction's transpose bit is set.
 * The accumulators of m64nNk16: thread (warp w of the group, lane 4 g + t) holds d[4 n + 0, 1] at row
 * 16 w + g, columns 8 n + 2 t, + 1, and d[4 n + 2, 3] at row 16 w + g + 8 (mma.sync's C layout, repeated
 * over the N / 8 column blocks). */
#ifndef PLM_KERNELS_WGMMA_CUH
#define PLM_KERNELS_WGMMA_CUH

#include <stdint.h>

#include "kernels/mma.cuh"

/* wgmma exists only in the architecture-specific sm_90a code; elsewhere the kernels that use it trap
 * (the host chooses them only on a device of compute capability 9.0, where the sm_90a code runs) */
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define PLM_WGMMA 1
#else
#define PLM_WGMMA 0
#endif

/* byte offset of element (r, c) (c < 64, or a 16-byte piece's first element) in a swizzled [rows][64]
 * BF16 tile */
__device__ __forceinline__ unsigned sw128(int r, int c) {
    return (unsigned)(r * 128 + ((((c >> 3) ^ r) & 7) << 4) + (c & 7) * 2);
}

/* the shared-memory descriptor of an operand starting at shared address a (a tile's start, plus 32
 * bytes a K-major k-step or 2,048 bytes an MN-major one), 128-byte swizzle. Both strides are 1,024
 * bytes: the stride between 8-row groups, and (MN-major) between 64-element groups along the row,
 * which these 64-wide tiles never reach */
__device__ __forceinline__ uint64_t wg_desc(unsigned a) {
    return (uint64_t)((a & 0x3ffff) >> 4) | ((uint64_t)(1024 >> 4) << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}

__device__ __forceinline__ void wg_fence(void) {
#if PLM_WGMMA
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_commit(void) {
#if PLM_WGMMA
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_wait0(void) {
#if PLM_WGMMA
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}
/* the accumulators pinned in place: an empty statement that reads and writes each, so that the
 * compiler moves no arithmetic on them across the fence before the products or the wait after them */
__device__ __forceinline__ void wg_pin(float (&d)[32]) {
#pragma unroll
    for (int i = 0; i < 32; i++) asm volatile("" : "+f"(d[i])::"memory");
}
/* generic-proxy writes to shared memory (st.shared, cp.async) made visible to the async proxy that
 * wgmma reads through: each writing thread, before the barrier that hands the data over */
__device__ __forceinline__ void fence_async_smem(void) {
#if PLM_WGMMA
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

/* a warp's 16 x 64 block of m64nNk16 accumulator rows (its rows 16 w .. 16 w + 15 of the group's 64) to or
 * from a swizzled BF16 tile, by ldmatrix / stmatrix: four 8 x 8 matrices an instruction, lane l giving
 * the address of row l % 8 of matrix l / 8 (matrices: rows 0-7 and 8-15 of column blocks n, n + 1), and
 * each register holding the pair a thread's accumulators hold (row g, columns 2 t, 2 t + 1 of a block).
 * wg_rows_addr: lane l's address for the column blocks 0, 1; for blocks n, n + 1 (n even) it is that
 * address ^ (n << 4) (the tile's rows are 128-byte aligned, the swizzle an exclusive or) */
__device__ __forceinline__ unsigned wg_rows_addr(unsigned tile, int w) {
    const int l = threadIdx.x & 31, rr = l & 7, m = l >> 3;
    return tile + (unsigned)((16 * w + 8 * (m & 1) + rr) * 128) + (unsigned)((((m >> 1) ^ rr) & 7) << 4);
}
/* acc [4 n + 0, 1] (row g), [4 n + 2, 3] (row g + 8) of column blocks n = 0 .. 7, as BF16, into the tile */
__device__ __forceinline__ void wg_store_rows(unsigned a, const float (&acc)[32]) {
#pragma unroll
    for (int n = 0; n < 8; n += 2) {
        const uint32_t r0 = pack_bf16(acc[4 * n], acc[4 * n + 1]), r1 = pack_bf16(acc[4 * n + 2], acc[4 * n + 3]),
                       r2 = pack_bf16(acc[4 * n + 4], acc[4 * n + 5]), r3 = pack_bf16(acc[4 * n + 6], acc[4 * n + 7]);
        asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(a ^ (unsigned)(n << 4)),
                     "r"(r0), "r"(r1), "r"(r2), "r"(r3)
                     : "memory");
    }
}
/* the same block of a BF16 tile into pairs: u[4 n + 0, 1] as acc's [4 n + 0, 1], as floats */
__device__ __forceinline__ void wg_load_rows(float (&u)[32], unsigned a) {
#pragma unroll
    for (int n = 0; n < 8; n += 2) {
        uint32_t r[4];
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a ^ (unsigned)(n << 4))
                     : "memory");
#pragma unroll
        for (int j = 0; j < 4; j++) {
            u[4 * n + 2 * j] = __uint_as_float(r[j] << 16);
            u[4 * n + 2 * j + 1] = __uint_as_float(r[j] & 0xffff0000u);
        }
    }
}

/* d (+)= A B, m64n64k16, BF16 in, FP32 accumulators; TA / TB: the operand is MN-major (transposed);
 * acc: 0 overwrites d, 1 adds to it */
template <int TA, int TB>
__device__ __forceinline__ void wg_mma64(float (&d)[32], uint64_t da, uint64_t db, int acc) {
#if PLM_WGMMA
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                 "%32, %33, p, 1, 1, %35, %36;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),
                   "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
                   "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),
                   "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(acc), "n"(TA), "n"(TB));
#else
    (void)d, (void)da, (void)db, (void)acc;
#endif
}

/* acc (+)= A B over KS k-steps of 16, as one wgmma group with the accumulators pinned across its fences:
 * step ks's operands at a0 + (ks / 4) a_tile + (ks % 4) a_k (a 64-wide tile holds four k-steps) and
 * likewise for B; the first step overwrites acc unless add */
template <int TA, int TB, int KS>
__device__ __forceinline__ void wg_gemm(float (&acc)[32], unsigned a0, unsigned a_tile, unsigned a_k, unsigned b0,
                                        unsigned b_tile, unsigned b_k, bool add) {
    wg_pin(acc);
    wg_fence();
#pragma unroll
    for (int ks = 0; ks < KS; ks++)
        wg_mma64<TA, TB>(acc, wg_desc(a0 + (ks >> 2) * a_tile + (ks & 3) * a_k),
                         wg_desc(b0 + (ks >> 2) * b_tile + (ks & 3) * b_k), add || ks > 0);
    wg_commit();
    wg_wait0();
    wg_pin(acc);
}

#endif
