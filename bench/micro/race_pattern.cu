/* Does compute-sanitizer's racecheck understand the delta-rule scan's copy-warp hand-off?
 *
 * The scan's copy warps fill a double buffer with cp.async, wait for their own copies and
 * bar.arrive on the buffer's "full" barrier; the computing warps bar.sync there, read the buffer with
 * ldmatrix and bar.arrive on its "empty" barrier, where the copy warps bar.sync before refilling it.
 * This program runs that hand-off alone, in a few forms, so that racecheck's verdict on each can be
 * compared with what the PTX memory model says of it:
 *   0  cp.async writes, ldmatrix reads (the scan's form)           correct
 *   1  cp.async writes, plain shared loads                           correct
 *   2  plain stores (ld.global + st.shared), ldmatrix reads          correct
 *   3  as 0 with every barrier a bar.sync of all warps               correct
 *   4  as 0 without the wait on "empty" (the copy overwrites a buffer being read)   racy
 *   5  the scan's shape: 8 computing warps, 4 copy warps in two halves (A and B, each with its own
 *      full / empty barriers of 256 + 64 threads, B's full also the computing warps' mid-chunk
 *      barrier), copy loops whose lanes leave at different trips, __syncwarp before bar.arrive,
 *      ldmatrix reads                                                  correct
 *   6  as 5 with half B read by plain shared loads                     correct
 * Each form also checks its sums against the host's, so a form that races in fact shows it.
 * Build: nvcc -O2 -std=c++17 -gencode arch=compute_90,code=sm_90 -o race_pattern race_pattern.cu
 * Run:   compute-sanitizer --tool racecheck ./race_pattern MODE   (MODE 0-6; no argument: all, unchecked)
 * Not built by make. */
#include <cuda_bf16.h>
#include <cstdio>
#include <cstdlib>
#include <vector>

constexpr int ROWS = 64, COLS = 16, LD = 24, NCW = 2, NALL = 32 * (NCW + 1), NCHUNK = 9;

__device__ __forceinline__ void bar_sync(int id, int n) { asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void bar_arrive(int id, int n) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void cp16(void *dst, const void *src) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));
}
__device__ __forceinline__ void ldsm4(unsigned (&r)[4], const __nv_bfloat16 *p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ float sum_pair(unsigned u) {
    __nv_bfloat162 v = *reinterpret_cast<__nv_bfloat162 *>(&u);
    return __low2float(v) + __high2float(v);
}

/* x: NCHUNK chunks of ROWS x COLS; out[chunk][thread of the computing warps]: that thread's sum */
__global__ void k_pattern(const __nv_bfloat16 *x, float *out, int mode) {
    __shared__ __align__(128) __nv_bfloat16 buf[2][ROWS * LD];
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const bool all_sync = mode == 3;
    if (w == NCW) { /* the copy warp */
        for (int c = 0; c < NCHUNK; c++) {
            const int b = c & 1;
            if (c >= 2 && mode != 4) bar_sync(4 + b, NALL);
            for (int p = lane; p < ROWS * 2; p += 32) { /* two 16-byte pieces a row */
                const int r = p >> 1, h = p & 1;
                const __nv_bfloat16 *src = x + ((size_t)c * ROWS + r) * COLS + 8 * h;
                __nv_bfloat16 *dst = &buf[b][r * LD + 8 * h];
                if (mode == 2)
                    *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
                else
                    cp16(dst, src);
            }
            asm volatile("cp.async.commit_group;\ncp.async.wait_all;\n" ::: "memory");
            __syncwarp();
            all_sync ? bar_sync(2 + b, NALL) : bar_arrive(2 + b, NALL);
        }
        return;
    }
    for (int c = 0; c < NCHUNK; c++) {
        const int b = c & 1;
        bar_sync(2 + b, NALL);
        float s = 0.f;
        if (mode == 1) { /* plain loads: this thread's rows, every column */
            for (int r = threadIdx.x; r < ROWS; r += 32 * NCW)
                for (int k = 0; k < COLS; k++) s += __bfloat162float(buf[b][r * LD + k]);
        } else { /* ldmatrix: warp w reads rows 32 w .. 32 w + 31, two 16 x 16 tiles */
            for (int t = 0; t < 2; t++) {
                unsigned r4[4];
                const int row = 32 * w + 16 * t + (lane & 15), col = 8 * (lane >> 4);
                ldsm4(r4, &buf[b][row * LD + col]);
                for (int i = 0; i < 4; i++) s += sum_pair(r4[i]);
            }
        }
        out[c * 32 * NCW + threadIdx.x] = s;
        if (c + 2 < NCHUNK && mode != 4) all_sync ? bar_sync(4 + b, NALL) : bar_arrive(4 + b, NALL);
    }
}

/* modes 5, 6: x as in k_pattern, two blocks of ROWS x COLS a chunk (A: chunk 2c, B: chunk 2c + 1 of x);
 * out[chunk][computing thread]: the thread's sum over both halves (each 16 x 16 tile is read by two
 * warps, w and w + 4) */
constexpr int SCW = 8, SALL = 32 * SCW + 64, SCHUNK = NCHUNK / 2;
__global__ void k_scan_shape(const __nv_bfloat16 *x, float *out, int mode) {
    __shared__ __align__(128) __nv_bfloat16 bufA[2][ROWS * LD], bufB[2][ROWS * LD];
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (w >= SCW) { /* copy warps: 1, 2 half A (rows 0-39, 40-63), 0, 3 half B (the same split) */
        const int pw = w - SCW;
        const bool half_a = pw == 1 || pw == 2, first = pw == 0 || pw == 1;
        const int r0 = first ? 0 : 40, nrow = first ? 40 : 24; /* 80 or 48 pieces: lanes leave at trip 2 or 3 */
        for (int c = 0; c < SCHUNK; c++) {
            const int b = c & 1;
            if (c >= 2) bar_sync(half_a ? 4 + b : 8 + b, SALL);
            __nv_bfloat16 *buf = half_a ? bufA[b] : bufB[b];
            const __nv_bfloat16 *src0 = x + (size_t)(2 * c + (half_a ? 0 : 1)) * ROWS * COLS;
            for (int p = lane; p < nrow * 2; p += 32) {
                const int r = r0 + (p >> 1), h = p & 1;
                cp16(&buf[r * LD + 8 * h], src0 + (size_t)r * COLS + 8 * h);
            }
            asm volatile("cp.async.commit_group;\ncp.async.wait_all;\n" ::: "memory");
            __syncwarp();
            bar_arrive(half_a ? 2 + b : 6 + b, SALL);
        }
        return;
    }
    const int row = 16 * (w & 3) + (lane & 15), col = 8 * (lane >> 4);
    for (int c = 0; c < SCHUNK; c++) {
        const int b = c & 1;
        float s = 0.f;
        unsigned r4[4];
        bar_sync(2 + b, SALL); /* A landed */
        ldsm4(r4, &bufA[b][row * LD + col]);
        for (int i = 0; i < 4; i++) s += sum_pair(r4[i]);
        if (c + 2 < SCHUNK) bar_arrive(4 + b, SALL); /* A read */
        bar_sync(6 + b, SALL);                       /* B landed; every computing warp is past A */
        if (mode == 6) {
            for (int k = 0; k < 8; k++) s += __bfloat162float(bufB[b][row * LD + col + k]);
        } else {
            ldsm4(r4, &bufB[b][row * LD + col]);
            for (int i = 0; i < 4; i++) s += sum_pair(r4[i]);
        }
        out[c * 32 * SCW + threadIdx.x] = s;
        if (c + 2 < SCHUNK) bar_arrive(8 + b, SALL); /* B read */
    }
}

int main(int argc, char **argv) {
    const int first = argc > 1 ? atoi(argv[1]) : 0, last = argc > 1 ? first : 6;
    const size_t n = (size_t)NCHUNK * ROWS * COLS, nout = (size_t)SCHUNK * 32 * SCW > (size_t)NCHUNK * 32 * NCW
                                                               ? (size_t)SCHUNK * 32 * SCW
                                                               : (size_t)NCHUNK * 32 * NCW;
    std::vector<__nv_bfloat16> hx(n);
    std::vector<float> fx(n);
    for (size_t i = 0; i < n; i++) {
        hx[i] = __float2bfloat16((float)((i * 37) % 11) - 5.f);
        fx[i] = __bfloat162float(hx[i]);
    }
    __nv_bfloat16 *dx;
    float *dout;
    cudaMalloc(&dx, n * sizeof(__nv_bfloat16));
    cudaMalloc(&dout, nout * sizeof(float));
    cudaMemcpy(dx, hx.data(), n * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice);
    auto block_sum = [&](int c) { /* x's chunk c, every element */
        double v = 0;
        for (int i = 0; i < ROWS * COLS; i++) v += fx[(size_t)c * ROWS * COLS + i];
        return v;
    };
    int bad_all = 0;
    for (int mode = first; mode <= last; mode++) {
        const bool shape = mode >= 5;
        const int nch = shape ? SCHUNK : NCHUNK, nthr = shape ? 32 * SCW : 32 * NCW;
        std::vector<float> out(nout);
        for (int rep = 0; rep < 50; rep++) {
            if (shape)
                k_scan_shape<<<1, SALL>>>(dx, dout, mode);
            else
                k_pattern<<<1, NALL>>>(dx, dout, mode);
            if (cudaDeviceSynchronize() != cudaSuccess) {
                printf("mode %d: launch failed: %s\n", mode, cudaGetErrorString(cudaGetLastError()));
                return 2;
            }
        }
        cudaMemcpy(out.data(), dout, out.size() * sizeof(float), cudaMemcpyDeviceToHost);
        int bad = 0;
        for (int c = 0; c < nch; c++) { /* 0-4: every element once; 5, 6: both halves, each tile twice */
            double got = 0;
            for (int t = 0; t < nthr; t++) got += out[(size_t)c * nthr + t];
            const double want = shape ? 2 * (block_sum(2 * c) + block_sum(2 * c + 1)) : block_sum(c);
            bad += got != want;
        }
        printf("mode %d: %d of %d chunks' sums wrong\n", mode, bad, nch);
        bad_all += mode != 4 && bad;
    }
    cudaFree(dx);
    cudaFree(dout);
    return bad_all ? 1 : 0;
}
