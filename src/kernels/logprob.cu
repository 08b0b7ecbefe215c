/* Log-probability of a target under each row of logits on the GPU (plm_logprob_ref's contract):
 * one block per row; the maximum, then the sum of exp(l - max) accumulated in double. And the
 * greedy choice, argmax per row (plm_argmax_row's contract), so decoding needs no logits on the host. */
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

__global__ void k_logprob(float *lp, const float *logits, const int32_t *target, int V) {
    __shared__ float sh[32];
    __shared__ double shd[32];
    const float *l = logits + (int64_t)blockIdx.x * V;
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, l[v]);
    mx = plm_block_max(mx, sh);
    double sum = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) sum += (double)expf(l[v] - mx);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if ((threadIdx.x & 31) == 0) shd[threadIdx.x >> 5] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        double tot = 0.0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) tot += shd[w];
        lp[blockIdx.x] = (float)((double)(l[target[blockIdx.x]] - mx) - log(tot));
    }
}

extern "C" void plm_logprob_cuda(float *lp, const float *logits, const int32_t *target, int n, int V, void *stream) {
    if (n > 0) k_logprob<<<(unsigned)n, 256, 0, PLM_STREAM(stream)>>>(lp, logits, target, V);
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
