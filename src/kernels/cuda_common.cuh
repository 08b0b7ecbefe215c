/* Shared device helpers of the CUDA kernels: reductions and launch shapes. */
#ifndef PLM_KERNELS_CUDA_COMMON_CUH
#define PLM_KERNELS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#define PLM_STREAM(s) ((cudaStream_t)(s))

/* Programmatic dependent launch (sm_90): every kernel calls this first, before it touches global
 * memory. griddepcontrol.wait returns once the grids this one depends on have completed and their
 * writes are visible (at once when it was launched without a programmatic dependency); then the next
 * kernel may be scheduled while this one runs, and waits in turn. A small step's graph links its
 * kernels by programmatic edges (cuda_backend.cu), so each launch overlaps the tail of the one
 * before. Every kernel of the step must call it: the wait is what orders them. */
__device__ __forceinline__ void plm_pdl_enter() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* the second half of plm_pdl_enter alone: for a kernel that orders itself on its predecessor's results
 * by flags instead of the grid-wide wait (the delta rule's scan behind its chunk prep) */
__device__ __forceinline__ void plm_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float plm_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float plm_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
 * sh: 32 floats of shared memory, reusable right after the call returns. */
__device__ __forceinline__ float plm_block_sum(float v, float *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = plm_warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return plm_warp_sum(v);
}

__device__ __forceinline__ float plm_block_max(float v, float *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = plm_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return plm_warp_max(v);
}

__device__ __forceinline__ float plm_sigmoid_d(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float plm_silu_d(float x) { return x / (1.0f + expf(-x)); }

/* y written as the BF16 input of the next GEMM: hi = bf16(y), with lo (when not NULL) the BF16 of the
 * remainder */
__device__ __forceinline__ void put_bf16(__nv_bfloat16 *hi, __nv_bfloat16 *lo, int64_t i, float y) {
    const __nv_bfloat16 h = __float2bfloat16_rn(y);
    hi[i] = h;
    if (lo) lo[i] = __float2bfloat16_rn(y - __bfloat162float(h));
}
__device__ __forceinline__ float plm_bf16_bits_to_f32(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }

/* 8 BF16 (element 2j in the low half of word j) to FP32, exactly */
__device__ __forceinline__ void plm_unpack8(float *v, uint4 b) {
    const uint32_t u[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        v[2 * j] = __uint_as_float(u[j] << 16);
        v[2 * j + 1] = __uint_as_float(u[j] & 0xffff0000u);
    }
}

/* 16 bytes of weights that are read once: past L1 (which keeps the inputs the other operand reads) */
__device__ __forceinline__ uint4 plm_ld_stream16(const uint16_t *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

/* blocks of `threads` covering n items (grid-stride loops take the rest) */
static inline unsigned plm_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 1048576 ? 1048576 : b);
}

/* threads for a block that reduces rows of n: a multiple of 32, 32 .. 1024 */
static inline int plm_row_threads(int n) {
    int t = 32;
    while (t < n && t < 256) t *= 2;
    return t;
}

static inline int plm_aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* Products of one input in launches of as many as a Set holds (its y, W, rows and vec arrays), empty
 * ones skipped as they would be alone: vec_of(W[j]) sets vec, launch(set, m) runs m of them. The grouped
 * GEMV and the skinny GEMM gather their products this way. */
template <typename Set, typename VecOf, typename Launch>
static void plm_product_sets(int n, float *const *y, const void *const *W, const int64_t *rows, VecOf vec_of,
                             Launch launch) {
    constexpr int MAX = (int)(sizeof(Set::y) / sizeof(Set::y[0]));
    Set set;
    memset(&set, 0, sizeof set);
    int m = 0;
    for (int j = 0; j < n; j++) {
        if (rows[j] <= 0) continue;
        set.y[m] = y[j];
        set.W[m] = (const uint16_t *)W[j];
        set.rows[m] = rows[j];
        set.vec[m] = vec_of(W[j]);
        if (++m == MAX) {
            launch(set, m);
            m = 0;
        }
    }
    if (m) launch(set, m);
}

/* a value of an FP32 or BF16 array as float (BF16 widened exactly): kernels templated on the input type */
__device__ __forceinline__ float plm_f32(float x) { return x; }
__device__ __forceinline__ float plm_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
/* values 4i .. 4i + 3 from an aligned address: one 16-byte (FP32) or 8-byte (BF16) load */
__device__ __forceinline__ float4 plm_ld4(const float *p, int64_t i = 0) { return reinterpret_cast<const float4 *>(p)[i]; }
__device__ __forceinline__ float4 plm_ld4(const __nv_bfloat16 *p, int64_t i = 0) {
    const uint2 u = reinterpret_cast<const uint2 *>(p)[i];
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.y));
    return make_float4(a.x, a.y, b.x, b.y);
}

#endif
