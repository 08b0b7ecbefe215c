/* One token of the recurrent gated delta rule for one thread's slice of a head's state (k_gdn_rec of
 * gdn.cu and the decode step's k_gdn_dec of gdn_dec.cu; k_gdn_dec1 there repeats its sums on two
 * columns a thread, in the same order: change both or neither): the thread holds column j of key rows
 * GDN_REC_ROWS w .. GDN_REC_ROWS w + GDN_REC_ROWS - 1 in Sr (jv: j < dv; the rows past dk hold zeros),
 * a block is 32 lanes x nw warps. */
#ifndef PLM_KERNELS_GDN_REC_CUH
#define PLM_KERNELS_GDN_REC_CUH

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

#define GDN_REC_ROWS 32 /* key rows a thread */

/* S = exp(g) S; S += k (beta (v - S^T k))^T; returns (S^T q)[j] in warp 0 (0 elsewhere). kt, qt: the
 * token's key and query of this head's key head; g, beta, v: its gate, beta and value (v read only
 * where jv). ks, qs: shared [32 nw] (zero past dk: no garbage times a zero state), red, red2: shared
 * [nw][32]. Three barriers: every thread of the block calls it. */
__device__ __forceinline__ float gdn_rec_token(float (&Sr)[GDN_REC_ROWS], float *ks, float *qs, float (*red)[32],
                                               float (*red2)[32], const float *kt, const float *qt, const float *g,
                                               const float *beta, const float *v, int dk, bool jv) {
    const int lane = threadIdx.x, w = threadIdx.y, nw = blockDim.y, tid = w * 32 + lane, span = nw * 32;
    for (int e = tid; e < span; e += span) {
        float kv = 0.0f, qv = 0.0f;
        if (e < dk) {
            kv = kt[e];
            qv = qt[e];
        }
        ks[e] = kv;
        qs[e] = qv;
    }
    /* the token's gate, beta and value issued with k and q, before the barrier: one wait for memory a
       token instead of three (a decode step's blocks are latency-bound) */
    const float gt = *g, b = *beta, vt = jv ? *v : 0.0f;
    __syncthreads();
    const float decay = expf(gt);
    float part = 0.0f;
#pragma unroll
    for (int r = 0; r < GDN_REC_ROWS; r++) {
        Sr[r] *= decay;
        part += Sr[r] * ks[w * GDN_REC_ROWS + r];
    }
    red[w][lane] = part;
    __syncthreads();
    float kvm = 0.0f;
    for (int ww = 0; ww < nw; ww++) kvm += red[ww][lane];
    float delta = 0.0f;
    if (jv) delta = (vt - kvm) * b;
    float part2 = 0.0f;
#pragma unroll
    for (int r = 0; r < GDN_REC_ROWS; r++) {
        Sr[r] += ks[w * GDN_REC_ROWS + r] * delta;
        part2 += Sr[r] * qs[w * GDN_REC_ROWS + r];
    }
    red2[w][lane] = part2;
    __syncthreads();
    float acc = 0.0f;
    if (w == 0 && jv)
        for (int ww = 0; ww < nw; ww++) acc += red2[ww][lane];
    return acc;
}

#endif
