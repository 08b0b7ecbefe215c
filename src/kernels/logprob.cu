/* Log-probability of a target under each row of logits on the GPU (plm_logprob_ref's contract):
 * one block per row; the maximum, then the sum of exp(l - max) accumulated in double. */
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
