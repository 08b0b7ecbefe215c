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
 * Each form also checks its sums against the host's, so a form that races in fact shows it.
 * Build: nvcc -O2 -std=c++17 -gencode arch=compute_90,code=sm_90 -o race_pattern race_pattern.cu
 * Run:   compute-sanitizer --tool racecheck ./race_pattern MODE   (MODE 0-4; no argument: all, unchecked)
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

int main(int argc, char **argv) {
    const int first = argc > 1 ? atoi(argv[1]) : 0, last = argc > 1 ? first : 4;
    const size_t n = (size_t)NCHUNK * ROWS * COLS;
    std::vector<__nv_bfloat16> hx(n);
    std::vector<float> fx(n);
    for (size_t i = 0; i < n; i++) {
        hx[i] = __float2bfloat16((float)((i * 37) % 11) - 5.f);
        fx[i] = __bfloat162float(hx[i]);
    }
    __nv_bfloat16 *dx;
    float *dout;
    cudaMalloc(&dx, n * sizeof(__nv_bfloat16));
    cudaMalloc(&dout, NCHUNK * 32 * NCW * sizeof(float));
    cudaMemcpy(dx, hx.data(), n * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice);
    int bad_all = 0;
    for (int mode = first; mode <= last; mode++) {
        std::vector<float> out(NCHUNK * 32 * NCW);
        for (int rep = 0; rep < 50; rep++) {
            k_pattern<<<1, NALL>>>(dx, dout, mode);
            if (cudaDeviceSynchronize() != cudaSuccess) {
                printf("mode %d: launch failed: %s\n", mode, cudaGetErrorString(cudaGetLastError()));
                return 2;
            }
        }
        cudaMemcpy(out.data(), dout, out.size() * sizeof(float), cudaMemcpyDeviceToHost);
        double got = 0, want = 0; /* the whole chunk's sum: every form reads every element once */
        int bad = 0;
        for (int c = 0; c < NCHUNK; c++) {
            got = want = 0;
            for (int t = 0; t < 32 * NCW; t++) got += out[c * 32 * NCW + t];
            for (int i = 0; i < ROWS * COLS; i++) want += fx[(size_t)c * ROWS * COLS + i];
            bad += got != want;
        }
        printf("mode %d: %d of %d chunks' sums wrong\n", mode, bad, NCHUNK);
        bad_all += mode != 4 && bad;
    }
    cudaFree(dx);
    cudaFree(dout);
    return bad_all ? 1 : 0;
}
