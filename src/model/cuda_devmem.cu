/* Steps whose arrays are in device memory (PLM_MEM_DEVICE): where a pointer lives, and the few
 * kernels that keep such arrays on the device: the step's validation (first bad token id, position
 * and target, the count of targets), the compaction of the scored rows, the scatter of their
 * log-probabilities, and segment boundaries from position ids. Internal to model/cuda_backend.cu
 * (model/cuda_devmem.h). */
#include <cuda_runtime.h>
#include <string.h>

#include "model/cuda_devmem.h"
extern "C" {
#include "util/error.h"
}

#define NONE 0x7fffffff

extern "C" plm_status plm_devmem_where(int dev, const void *p, const char *what, plm_error *err) {
    cudaPointerAttributes a;
    memset(&a, 0, sizeof a);
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) { /* older runtimes: unregistered host memory */
        cudaGetLastError();
        a.type = cudaMemoryTypeUnregistered;
    }
    if ((a.type == cudaMemoryTypeDevice && a.device == dev) || a.type == cudaMemoryTypeManaged) return PLM_OK;
    if (a.type == cudaMemoryTypeDevice)
        return plm_fail(err, PLM_ERR_INPUT, "%s is memory of cuda:%d but the context runs on cuda:%d", what, a.device,
                        dev);
    return plm_fail(err, PLM_ERR_INPUT, "%s is host memory (%s), not device memory of cuda:%d as PLM_MEM_DEVICE declares",
                    what, a.type == cudaMemoryTypeHost ? "pinned" : "not allocated through CUDA", dev);
}

/* ---------------------------------------------------------------- the step's validation */
__global__ void k_check_init(int32_t *r) {
    if (threadIdx.x < PLM_DEVMEM_CHECK_INTS)
        r[threadIdx.x] = (threadIdx.x == 0 || threadIdx.x == 2 || threadIdx.x == 4) ? NONE : 0;
}

__global__ void k_check(int32_t *r, const int32_t *tok, const int32_t *pos, const int32_t *tgt, const int32_t *cu,
                        const int64_t *start, int ns, int32_t T, int32_t V) {
    int cnt = 0;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < T; t += (int64_t)gridDim.x * blockDim.x) {
        if (tok) {
            const int32_t x = tok[t];
            if (x < 0 || x >= V) atomicMin(&r[0], (int)t);
        }
        if (pos) {
            int lo = 0, hi = ns - 1; /* the segment of t: the last s with cu[s] <= t */
            while (lo < hi) {
                const int mid = (lo + hi + 1) >> 1;
                if (cu[mid] <= t) lo = mid;
                else hi = mid - 1;
            }
            if ((int64_t)pos[t] != start[lo] + (t - cu[lo])) atomicMin(&r[2], (int)t);
        }
        if (tgt) {
            const int32_t y = tgt[t];
            if (y >= V) atomicMin(&r[4], (int)t);
            cnt += y >= 0;
        }
    }
    for (int o = 16; o > 0; o >>= 1) cnt += __shfl_xor_sync(0xffffffffu, cnt, o);
    if ((threadIdx.x & 31) == 0 && cnt) atomicAdd(&r[6], cnt);
}

__global__ void k_check_values(int32_t *r, const int32_t *tok, const int32_t *pos, const int32_t *tgt) {
    if (threadIdx.x) return;
    if (r[0] != NONE) r[1] = tok[r[0]];
    if (r[2] != NONE) r[3] = pos[r[2]];
    if (r[4] != NONE) r[5] = tgt[r[4]];
    for (int i = 0; i < 6; i += 2)
        if (r[i] == NONE) r[i] = -1;
}

extern "C" void plm_devmem_check(int32_t *r, const int32_t *tok, const int32_t *pos, const int32_t *tgt,
                                 const int32_t *cu, const int64_t *start, int ns, int32_t T, int32_t V,
                                 cudaStream_t st) {
    k_check_init<<<1, 32, 0, st>>>(r);
    int blocks = (int)((T + 255) / 256);
    blocks = blocks < 1 ? 1 : blocks > 1024 ? 1024 : blocks;
    k_check<<<blocks, 256, 0, st>>>(r, tok, pos, tgt, cu, start, ns, T, V);
    k_check_values<<<1, 32, 0, st>>>(r, tok, pos, tgt);
}

/* ---------------------------------------------------------------- stable compaction (one block) */
/* Every index t < n for which keep(t) holds, in ascending order, written by put(slot, t); returns the
 * count to thread 0 (and every thread) through *total. blockDim.x: a multiple of 32, at most 1024. */
template <typename Keep, typename Put>
__device__ void compact(int32_t n, Keep keep, Put put, int32_t *total) {
    __shared__ int warp_n[32];
    __shared__ int base;
    if (threadIdx.x == 0) base = 0;
    __syncthreads();
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int32_t t0 = 0; t0 < n; t0 += blockDim.x) {
        const int32_t t = t0 + threadIdx.x;
        const bool k = t < n && keep(t);
        const unsigned m = __ballot_sync(0xffffffffu, k);
        if (lane == 0) warp_n[w] = __popc(m);
        __syncthreads();
        int at = base + __popc(m & ((1u << lane) - 1u));
        for (int i = 0; i < w; i++) at += warp_n[i];
        if (k) put(at, t);
        __syncthreads();
        if (threadIdx.x == 0)
            for (int i = 0; i < nw; i++) base += warp_n[i];
        __syncthreads();
    }
    *total = base;
}

struct keep_target {
    const int32_t *tgt;
    __device__ bool operator()(int32_t t) const { return tgt[t] >= 0; }
};
struct put_row {
    int32_t *rows, *tgt_out;
    const int32_t *tgt;
    __device__ void operator()(int at, int32_t t) const {
        rows[at] = t;
        tgt_out[at] = tgt[t];
    }
};

__global__ void k_score_rows(int32_t *rows, int32_t *tgt_out, const int32_t *tgt, int32_t T) {
    int32_t n;
    compact(T, keep_target{tgt}, put_row{rows, tgt_out, tgt}, &n);
}

extern "C" void plm_devmem_score_rows(int32_t *rows, int32_t *tgt_out, const int32_t *tgt, int32_t T, cudaStream_t st) {
    k_score_rows<<<1, 1024, 0, st>>>(rows, tgt_out, tgt, T);
}

__global__ void k_scatter(float *dst, const float *src, const int32_t *rows, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[rows[i]] = src[i];
}

extern "C" void plm_devmem_scatter(float *dst, const float *src, const int32_t *rows, int64_t n, cudaStream_t st) {
    if (n <= 0) return;
    int64_t blocks = (n + 255) / 256;
    k_scatter<<<(unsigned)(blocks > 1024 ? 1024 : blocks), 256, 0, st>>>(dst, src, rows, n);
}

struct keep_start {
    const int32_t *pos;
    __device__ bool operator()(int32_t t) const { return t == 0 || (int64_t)pos[t] != (int64_t)pos[t - 1] + 1; }
};
struct put_start {
    int32_t *cu;
    __device__ void operator()(int at, int32_t t) const { cu[at] = t; }
};

/* r[0]: segments, r[1]: the first negative position's index (-1: none), r[2]: its value */
__global__ void k_seg_starts(int32_t *cu, int32_t *r, const int32_t *pos, int32_t n) {
    if (threadIdx.x == 0) r[1] = NONE;
    __syncthreads();
    for (int32_t t = threadIdx.x; t < n; t += blockDim.x)
        if (pos[t] < 0) atomicMin(&r[1], (int)t);
    int32_t k;
    compact(n, keep_start{pos}, put_start{cu}, &k);
    __syncthreads();
    if (threadIdx.x == 0) {
        cu[k] = n;
        r[0] = k;
        if (r[1] == NONE) r[1] = -1, r[2] = 0;
        else r[2] = pos[r[1]];
    }
}

extern "C" void plm_devmem_seg_starts(int32_t *cu, int32_t *r, const int32_t *pos, int32_t n, cudaStream_t st) {
    k_seg_starts<<<1, 1024, 0, st>>>(cu, r, pos, n);
}
