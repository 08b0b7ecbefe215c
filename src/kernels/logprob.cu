/* Log-probability of a target under each row of logits on the GPU (plm_logprob_ref's contract):
 * one block per row; the maximum, then the sum of exp(l - max) accumulated in double. And the
 * greedy choice, argmax per row (plm_argmax_row's contract), so decoding needs no logits on the host. */
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

/* One pass over the row: each thread keeps a running maximum m and sum s = sum exp(l - m) (the
 * exponentials in float, as the CPU takes them, added in double), rescaling s when m grows, 16 values
 * (four float4 loads in flight) at a time; then the threads' (m, s) pairs are combined. The row is
 * read once (the two-pass form read it twice, from DRAM: a block of rows is larger than L2). */
#define LP_THREADS 512
template <bool VEC>
__global__ void __launch_bounds__(LP_THREADS) k_logprob(float *lp, const float *logits, const int32_t *target, int V) {
    __shared__ float shm[LP_THREADS / 32];
    __shared__ double shs[LP_THREADS / 32];
    const float *l = logits + (int64_t)blockIdx.x * V;
    float m = -INFINITY;
    double s = 0.0;
    auto add = [&](const float *x, int n) {
        float mx = m;
#pragma unroll
        for (int u = 0; u < 16; u++)
            if (u < n) mx = fmaxf(mx, x[u]);
        if (mx > m) { /* m = -inf: s is 0 and stays 0 */
            s *= (double)expf(m - mx);
            m = mx;
        }
#pragma unroll
        for (int u = 0; u < 16; u++)
            if (u < n) s += (double)expf(x[u] - m);
    };
    int v0 = 0;
    if (VEC) { /* rows start 16-byte aligned (V a multiple of 4) */
        const float4 *l4 = reinterpret_cast<const float4 *>(l);
        const int n4 = V >> 2;
        for (int i = threadIdx.x; i < n4; i += 4 * LP_THREADS) {
            float x[16];
            int n = 0;
#pragma unroll
            for (int u = 0; u < 4; u++)
                if (i + u * LP_THREADS < n4) {
                    const float4 f = __ldcs(l4 + i + u * LP_THREADS);
                    x[4 * u] = f.x, x[4 * u + 1] = f.y, x[4 * u + 2] = f.z, x[4 * u + 3] = f.w;
                    n = 4 * u + 4;
                }
            add(x, n);
        }
        v0 = n4 << 2;
    }
    for (int v = v0 + threadIdx.x; v < V; v += LP_THREADS) add(l + v, 1);
    /* combine: M the row's maximum, S = sum s exp(m - M) over the threads that saw a value */
    const float M = plm_block_max(m, shm);
    double part = s > 0.0 ? s * (double)expf(m - M) : (s != s ? s : 0.0);
    for (int o = 16; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
    if ((threadIdx.x & 31) == 0) shs[threadIdx.x >> 5] = part;
    __syncthreads();
    if (threadIdx.x == 0) {
        double tot = 0.0;
        for (int w = 0; w < LP_THREADS / 32; w++) tot += shs[w];
        lp[blockIdx.x] = (float)((double)(l[target[blockIdx.x]] - M) - log(tot));
    }
}

extern "C" void plm_logprob_cuda(float *lp, const float *logits, const int32_t *target, int n, int V, void *stream) {
    if (n <= 0) return;
    if (V % 4 == 0 && ((uintptr_t)logits & 15) == 0)
        k_logprob<true><<<(unsigned)n, LP_THREADS, 0, PLM_STREAM(stream)>>>(lp, logits, target, V);
    else
        k_logprob<false><<<(unsigned)n, LP_THREADS, 0, PLM_STREAM(stream)>>>(lp, logits, target, V);
}

/* (value, index) pairs: a beats b when a is a number and b is not, or a > b, or equal with a lower index */
__device__ __forceinline__ bool plm_amax_before(float va, int ia, float vb, int ib) {
    if (va != va) return false;
    if (vb != vb) return true;
    return va > vb || (va == vb && ia < ib);
}

__global__ void k_argmax(int32_t *idx, const float *logits, int V) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const float *l = logits + (int64_t)blockIdx.x * V;
    float bv = NAN;
    int bi = 0x7fffffff;
    for (int v = threadIdx.x; v < V; v += blockDim.x)
        if (plm_amax_before(l[v], v, bv, bi)) bv = l[v], bi = v;
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (plm_amax_before(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if ((threadIdx.x & 31) == 0) sv[threadIdx.x >> 5] = bv, si[threadIdx.x >> 5] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++)
            if (plm_amax_before(sv[w], si[w], bv, bi)) bv = sv[w], bi = si[w];
        idx[blockIdx.x] = bi == 0x7fffffff ? 0 : bi; /* all NaN: 0, as on the CPU */
    }
}

extern "C" void plm_argmax_cuda(int32_t *idx, const float *logits, int n, int V, void *stream) {
    if (n > 0) k_argmax<<<(unsigned)n, 256, 0, PLM_STREAM(stream)>>>(idx, logits, V);
}
