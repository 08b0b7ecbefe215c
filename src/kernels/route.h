/* MoE routing of one token, shared by the CPU (kernels/ops.c) and the GPU (kernels/ops.cu): softmax
 * over the E router logits, the top k by probability (ties to the lower index, as a stable sort
 * would), renormalised to sum to 1. One definition, compiled by both compilers. */
#ifndef PLM_KERNELS_ROUTE_H
#define PLM_KERNELS_ROUTE_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define PLM_HD __host__ __device__
#else
#define PLM_HD
#endif

static inline PLM_HD void plm_route_token(int32_t *ti, float *tw, const float *l, int E, int k) {
    float mx = l[0];
    for (int e = 1; e < E; e++) mx = l[e] > mx ? l[e] : mx;
    float sum = 0.0f;
    for (int e = 0; e < E; e++) sum += expf(l[e] - mx);
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int q = 0; q < j; q++) taken |= ti[q] == e;
            if (!taken && (best < 0 || l[e] > l[best])) best = e;
        }
        ti[j] = best;
        tw[j] = expf(l[best] - mx) / sum;
    }
    float s = 0.0f;
    for (int j = 0; j < k; j++) s += tw[j];
    for (int j = 0; j < k; j++) tw[j] /= s;
}

#endif
