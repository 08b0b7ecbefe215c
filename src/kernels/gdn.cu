/* Gated delta rule on the GPU, recurrent form (plm_gdn_ref's contract):
 *   S = exp(g) S;  S += k (beta (v - S^T k))^T;  o = S^T q     per segment, per value head.
 * The columns of S (value dims) evolve independently, so a block owns (segment, head, 32 columns):
 * lane j holds column j, warp w rows 32w .. 32w+31 of it, in registers, for the whole segment; the
 * two dot products over the key dim reduce across warps through shared memory. The state is read
 * once at the start and written once at the end. */
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

#define ROWS 32 /* key rows per thread */

__global__ void k_gdn_rec(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                          const float *beta, const int32_t *cu, int nk, int nv, int dk, int dv) {
    __shared__ float ks[PLM_CUDA_MAX_DK], qs[PLM_CUDA_MAX_DK], red[PLM_CUDA_MAX_DK / ROWS][32],
        red2[PLM_CUDA_MAX_DK / ROWS][32];
    const int s = blockIdx.z, h = blockIdx.y, lane = threadIdx.x, w = threadIdx.y, nw = blockDim.y;
    const int j = blockIdx.x * 32 + lane, kh = h / (nv / nk);
    const bool jv = j < dv;
    float *Sh = S[s] + (size_t)h * dk * dv;
    float Sr[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        const int i = w * ROWS + r;
        Sr[r] = 0.0f;
        if (jv && i < dk) Sr[r] = Sh[(size_t)i * dv + j];
    }
    const int tid = w * 32 + lane, span = nw * 32;
    for (int64_t t = cu[s]; t < cu[s + 1]; t++) {
        for (int e = tid; e < span; e += span) { /* zero past dk: no garbage times a zero state */
            float kv = 0.0f, qv = 0.0f;
            if (e < dk) {
                kv = k[(t * nk + kh) * dk + e];
                qv = q[(t * nk + kh) * dk + e];
            }
            ks[e] = kv;
            qs[e] = qv;
        }
        __syncthreads();
        const float decay = expf(g[t * nv + h]), b = beta[t * nv + h];
        float part = 0.0f;
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            Sr[r] *= decay;
            part += Sr[r] * ks[w * ROWS + r];
        }
        red[w][lane] = part;
        __syncthreads();
        float kvm = 0.0f;
        for (int ww = 0; ww < nw; ww++) kvm += red[ww][lane];
        float delta = 0.0f;
        if (jv) delta = (v[(t * nv + h) * dv + j] - kvm) * b;
        float part2 = 0.0f;
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            Sr[r] += ks[w * ROWS + r] * delta;
            part2 += Sr[r] * qs[w * ROWS + r];
        }
        red2[w][lane] = part2;
        __syncthreads();
        if (w == 0 && jv) {
            float acc = 0.0f;
            for (int ww = 0; ww < nw; ww++) acc += red2[ww][lane];
            o[(t * nv + h) * dv + j] = acc;
        }
    }
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        const int i = w * ROWS + r;
        if (jv && i < dk) Sh[(size_t)i * dv + j] = Sr[r];
    }
}

extern "C" void plm_gdn_cuda(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                             const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv,
                             void *stream) {
    if (n_seg <= 0 || dk <= 0 || dk > PLM_CUDA_MAX_DK) return;
    dim3 grid((unsigned)((dv + 31) / 32), (unsigned)nv, (unsigned)n_seg);
    dim3 block(32, (unsigned)((dk + ROWS - 1) / ROWS));
    k_gdn_rec<<<grid, block, 0, PLM_STREAM(stream)>>>(o, S, q, k, v, g, beta, cu, nk, nv, dk, dv);
}
