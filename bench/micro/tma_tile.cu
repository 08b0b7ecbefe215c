// Before the delta rule's scan takes its chunk tiles by TMA (docs/cuda.md, "Open for the next GPU session"):
// 1. check: a 64 x 128 BF16 tile loaded by two 2-D TMA boxes of 64 x 64 with the 128-byte swizzle,
//    read back element by element and by the scan's three ldmatrix patterns (ldsm_a, ldsm_at, ldsm_bt
//    of kernels/mma.cuh) through the swizzled address, against the same tile in the scan's padded
//    layout (row stride 136); and rows past the array's end zero-filled by TMA;
// 2. time: the one-sequence scan's copies alone (128 blocks, one an SM, 512 chunks of 64 rows; each
//    chunk's Q, K, W (64 x 128) and P (64 x 64) of the block's head, two chunks' buffers), by four copy
//    warps with cp.async (as k_gdn_wy_scan<16, true, true> at 831efd8: wait for all, then the next) and
//    by one thread issuing TMA boxes onto an mbarrier, a chunk at a time and with the next in flight
//    (a scan refills a buffer only once its chunk is computed: between the two). No compute: the time a
//    chunk is what the copies alone cost, against about 2.85 us a chunk for the whole scan (1.46 ms at
//    Nsight Compute's clocks), of which its computing warps waited 42 % at the chunk's barrier.
// Run on a GPU machine:
//   nvcc -O2 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o tma_tile bench/micro/tma_tile.cu && ./tma_tile
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); exit(1); } } while (0)

constexpr int CH = 64, LK2 = 136;

// the element (row, col) of a 64 x 128 tile held as two 64 x 64 boxes, 128-byte swizzle (col % 8 == 0
// for an ldmatrix row address): box col / 64 at 8 KB, 128-byte rows, the 16-byte piece index XOR row % 8
__device__ __forceinline__ const __nv_bfloat16 *sw(const __nv_bfloat16 *t, int row, int col) {
    return t + (col >> 6) * 4096 + row * 64 + ((((col & 63) >> 3) ^ (row & 7)) << 3) + (col & 7);
}
__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], const __nv_bfloat16 *p, bool tr) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    if (tr)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
__device__ __forceinline__ void bar_init(uint64_t *b, int n) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"((unsigned)__cvta_generic_to_shared(b)), "r"(n));
}
/* the barrier's initialisation (and shared memory written by the threads) seen by the TMA unit */
__device__ __forceinline__ void fence_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
__device__ __forceinline__ void bar_expect(uint64_t *b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"((unsigned)__cvta_generic_to_shared(b)),
                 "r"(bytes) : "memory");
}
__device__ __forceinline__ void bar_wait(uint64_t *b, unsigned phase) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(b);
    unsigned done = 0;
    while (!done)
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                     : "=r"(done) : "r"(a), "r"(phase) : "memory");
}
__device__ __forceinline__ void tma2d(void *dst, const CUtensorMap *m, int c, int r, uint64_t *b) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
                 ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(m), "r"(c), "r"(r),
                 "r"((unsigned)__cvta_generic_to_shared(b)) : "memory");
}
__device__ __forceinline__ void cp16(void *d, const void *s) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"((unsigned)__cvta_generic_to_shared(d)), "l"(s));
}

// 1. one block of 128 threads: the tile at (t0, c0) of g [T][C]
__global__ void k_check(const __grid_constant__ CUtensorMap m, const __nv_bfloat16 *g, int T, int C, int t0, int c0,
                        int *bad) {
    __shared__ __align__(1024) __nv_bfloat16 tile[2 * 4096];
    __shared__ __align__(16) __nv_bfloat16 ref[CH * LK2];
    __shared__ uint64_t bar;
    const int tid = threadIdx.x, l = tid & 31, w = tid >> 5;
    if (tid == 0) bar_init(&bar, 1);
    for (int e = tid; e < 2 * 4096; e += blockDim.x) /* a NaN everywhere first: what TMA leaves unwritten fails */
        tile[e] = __ushort_as_bfloat16((unsigned short)0xFFFF);
    fence_async();
    __syncthreads();
    if (tid == 0) {
        bar_expect(&bar, 2 * 4096 * 2);
        tma2d(tile, &m, c0, t0, &bar);
        tma2d(tile + 4096, &m, c0 + 64, t0, &bar);
    }
    for (int e = tid; e < CH * 128; e += blockDim.x) {
        const int r = e / 128, c = e % 128;
        ref[r * LK2 + c] = t0 + r < T ? g[(size_t)(t0 + r) * C + c0 + c] : __float2bfloat16(0.0f);
    }
    bar_wait(&bar, 0);
    __syncthreads();
    int nb = 0;
    for (int e = tid; e < CH * 128; e += blockDim.x) {
        const int r = e / 128, c = e % 128;
        nb += __bfloat162float(*sw(tile, r, c)) != __bfloat162float(ref[r * LK2 + c]);
    }
    // the scan's fragment loads: ldsm_a (rows r0.., k0..), ldsm_at and ldsm_bt (rows k0.., columns m0..)
    for (int r0 = 16 * w; r0 < CH; r0 += 64)
        for (int k0 = 0; k0 < 128; k0 += 16) {
            uint32_t a[4], b[4];
            int row = r0 + (l & 7) + ((l >> 3) & 1) * 8, col = k0 + (l >> 4) * 8;
            ldsm4(a, ref + row * LK2 + col, false);
            ldsm4(b, sw(tile, row, col), false);
            for (int i = 0; i < 4; i++) nb += a[i] != b[i];
            row = r0 + (l & 7) + ((l >> 4) & 1) * 8, col = k0 + ((l >> 3) & 1) * 8; /* ldsm_at: k rows, m cols */
            ldsm4(a, ref + row * LK2 + col, true);
            ldsm4(b, sw(tile, row, col), true);
            for (int i = 0; i < 4; i++) nb += a[i] != b[i];
            row = r0 + (l & 7) + ((l >> 3) & 1) * 8, col = k0 + (l >> 4) * 8; /* ldsm_bt */
            ldsm4(a, ref + row * LK2 + col, true);
            ldsm4(b, sw(tile, row, col), true);
            for (int i = 0; i < 4; i++) nb += a[i] != b[i];
        }
    atomicAdd(bad, nb);
}

// 2a. four copy warps with cp.async (Q, K, W: 32 pieces a lane; P: 16), a chunk at a time
__global__ void __launch_bounds__(128, 1) k_copy_warps(const __nv_bfloat16 *Q, const __nv_bfloat16 *K,
                                                       const __nv_bfloat16 *W, const __nv_bfloat16 *P, int nch, int H) {
    extern __shared__ __align__(16) unsigned char smb[];
    __nv_bfloat16 *buf = reinterpret_cast<__nv_bfloat16 *>(smb); /* [2][3][64][136] + [2][64][72] */
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31, h = blockIdx.x % H;
    for (int c = 0; c < nch; c++) {
        const int b = c & 1;
        const int64_t t0 = (int64_t)c * CH;
        if (w < 3) {
            const __nv_bfloat16 *src = (w == 0 ? Q : w == 1 ? K : W) + t0 * H * 128 + h * 128;
            __nv_bfloat16 *dst = buf + (b * 3 + w) * CH * LK2;
            for (int u = 0; u < 32; u++) {
                const int r = (l >> 4) + 2 * u, c8 = (l & 15) * 8;
                cp16(dst + r * LK2 + c8, src + (int64_t)r * H * 128 + c8);
            }
        } else {
            const __nv_bfloat16 *src = P + t0 * H * 64 + h * 64;
            __nv_bfloat16 *dst = buf + 6 * CH * LK2 + b * CH * 72;
            for (int u = 0; u < 16; u++) {
                const int r = (l >> 3) + 4 * u, c8 = (l & 7) * 8;
                cp16(dst + r * 72 + c8, src + (int64_t)r * H * 64 + c8);
            }
        }
        asm volatile("cp.async.commit_group;\ncp.async.wait_all;\n" ::: "memory");
        __syncthreads();
    }
}

// 2b. one thread issuing the chunk's 7 boxes (Q, K, W two each; P one) onto the chunk's mbarrier, LA
// chunks ahead of the one waited for (1: one chunk in flight, as 2a; 2: the next chunk's copies in flight
// while one is waited for, as far as two buffers allow)
template <int LA>
__global__ void __launch_bounds__(32, 1) k_tma(const __grid_constant__ CUtensorMap mq, const __grid_constant__ CUtensorMap mk,
                                               const __grid_constant__ CUtensorMap mw, const __grid_constant__ CUtensorMap mp,
                                               int nch, int H) {
    extern __shared__ __align__(16) unsigned char smt[];
    /* [2][7][64][64], 1024-byte aligned (the 128-byte swizzle's period; the size has 1 KB to spare) */
    __nv_bfloat16 *buf = reinterpret_cast<__nv_bfloat16 *>(smt + ((1024 - (__cvta_generic_to_shared(smt) & 1023)) & 1023));
    __shared__ uint64_t bar[2];
    const int h = blockIdx.x % H;
    if (threadIdx.x == 0) bar_init(&bar[0], 1), bar_init(&bar[1], 1);
    fence_async();
    __syncwarp();
    auto issue = [&](int c) {
        const int b = c & 1, r = c * CH;
        __nv_bfloat16 *d = buf + b * 7 * 4096;
        bar_expect(&bar[b], 7 * 4096 * 2);
        tma2d(d, &mq, h * 128, r, &bar[b]), tma2d(d + 4096, &mq, h * 128 + 64, r, &bar[b]);
        tma2d(d + 2 * 4096, &mk, h * 128, r, &bar[b]), tma2d(d + 3 * 4096, &mk, h * 128 + 64, r, &bar[b]);
        tma2d(d + 4 * 4096, &mw, h * 128, r, &bar[b]), tma2d(d + 5 * 4096, &mw, h * 128 + 64, r, &bar[b]);
        tma2d(d + 6 * 4096, &mp, h * 64, r, &bar[b]);
    };
    if (threadIdx.x == 0) {
        for (int c = 0; c < LA && c < nch; c++) issue(c);
        for (int c = 0; c < nch; c++) {
            bar_wait(&bar[c & 1], (c >> 1) & 1);
            if (c + LA < nch) issue(c + LA);
        }
    }
}

static PFN_cuTensorMapEncodeTiled_v12000 enc;
static CUtensorMap map2d(void *p, uint64_t rows, uint64_t cols, uint32_t box_c) {
    CUtensorMap m;
    cuuint64_t dims[2] = {cols, rows}, strides[1] = {cols * 2};
    cuuint32_t box[2] = {box_c, 64}, es[2] = {1, 1};
    CUresult r = enc(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, p, dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                     CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        printf("cuTensorMapEncodeTiled: %d\n", (int)r);
        exit(1);
    }
    return m;
}

int main() {
    cudaDriverEntryPointQueryResult q;
    CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", (void **)&enc, 12000, cudaEnableDefault, &q));
    if (q != cudaDriverEntryPointSuccess || !enc) {
        printf("cuTensorMapEncodeTiled not found\n");
        return 1;
    }
    // 1. the check
    const int T = 300, C = 2048;
    std::vector<__nv_bfloat16> h((size_t)T * C);
    for (int r = 0; r < T; r++)
        for (int c = 0; c < C; c++) h[(size_t)r * C + c] = __float2bfloat16((float)((r * 37 + c * 11) % 509 - 254));
    __nv_bfloat16 *g;
    int *bad;
    CK(cudaMalloc(&g, h.size() * 2));
    CK(cudaMalloc(&bad, 4));
    CK(cudaMemcpy(g, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
    CUtensorMap m = map2d(g, T, C, 64);
    const int cases[4][2] = {{0, 0}, {64, 128}, {128, 1920}, {T - 40, 640}}; /* the last: 24 rows past the end */
    int total = 0;
    for (auto &cs : cases) {
        CK(cudaMemset(bad, 0, 4));
        k_check<<<1, 128>>>(m, g, T, C, cs[0], cs[1], bad);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        int nb;
        CK(cudaMemcpy(&nb, bad, 4, cudaMemcpyDeviceToHost));
        printf("check: tile at row %d, column %d: %d mismatches (elements and ldmatrix a / at / bt fragments)\n", cs[0],
               cs[1], nb);
        total += nb;
    }
    printf("check: %s\n", total ? "FAILED" : "ok");
    // 2. the copies alone, one sequence of 32,768 tokens, 16 heads, 128 blocks (8 a head)
    const int TT = 32768, H = 16, nch = TT / CH, nblk = 128;
    __nv_bfloat16 *Qd, *Kd, *Wd, *Pd;
    CK(cudaMalloc(&Qd, (size_t)TT * H * 128 * 2));
    CK(cudaMalloc(&Kd, (size_t)TT * H * 128 * 2));
    CK(cudaMalloc(&Wd, (size_t)TT * H * 128 * 2));
    CK(cudaMalloc(&Pd, (size_t)TT * H * 64 * 2));
    CK(cudaMemset(Qd, 0, (size_t)TT * H * 128 * 2));
    CK(cudaMemset(Kd, 0, (size_t)TT * H * 128 * 2));
    CK(cudaMemset(Wd, 0, (size_t)TT * H * 128 * 2));
    CK(cudaMemset(Pd, 0, (size_t)TT * H * 64 * 2));
    CUtensorMap mq = map2d(Qd, TT, H * 128, 64), mk = map2d(Kd, TT, H * 128, 64), mw = map2d(Wd, TT, H * 128, 64),
                mp = map2d(Pd, TT, H * 64, 64);
    const int s1 = (2 * 3 * CH * LK2 + 2 * CH * 72) * 2, s2 = 2 * 7 * 4096 * 2 + 1024;
    CK(cudaFuncSetAttribute(k_copy_warps, cudaFuncAttributeMaxDynamicSharedMemorySize, s1));
    CK(cudaFuncSetAttribute(k_tma<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, s2));
    CK(cudaFuncSetAttribute(k_tma<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, s2));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    for (int v = 0; v < 3; v++) {
        float best = 1e9;
        for (int it = 0; it < 6; it++) {
            cudaEventRecord(e0);
            if (v == 0) k_copy_warps<<<nblk, 128, s1>>>(Qd, Kd, Wd, Pd, nch, H);
            else if (v == 1) k_tma<1><<<nblk, 32, s2>>>(mq, mk, mw, mp, nch, H);
            else k_tma<2><<<nblk, 32, s2>>>(mq, mk, mw, mp, nch, H);
            CK(cudaGetLastError());
            cudaEventRecord(e1);
            CK(cudaEventSynchronize(e1));
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            if (it && ms < best) best = ms;
        }
        printf("copies alone, %s: %.3f ms, %.2f us a chunk (56 KB a block a chunk, %.2f TB/s from L2 in all)\n",
               v == 0   ? "four copy warps, cp.async, a chunk at a time"
               : v == 1 ? "one thread, TMA boxes, a chunk at a time"
                        : "one thread, TMA boxes, the next chunk in flight", best,
               best * 1e3 / nch, (double)nblk * nch * 56 * 1024 / (best * 1e-3) * 1e-12);
    }
    CK(cudaGetLastError());
    return total ? 1 : 0;
}
