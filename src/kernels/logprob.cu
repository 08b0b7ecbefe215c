/* Log-probability of a target under each row of logits on the GPU (plm_logprob_ref's contract):
 * one block per row; the maximum, then the sum of exp(l - max) accumulated in double. And the
 * greedy choice, argmax per row (plm_argmax_row's contract), so decoding needs no logits on the host. */
#include <cuda_bf16.h>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

/* One pass over the row: each thread keeps a running maximum m and sum s = sum exp(l - m) (the
 * exponentials in float, as the CPU takes them; each group of 16 summed in float, the groups added in
 * double, as the CPU folds float lane sums into a double), rescaling s when m grows, 16 values (16 bytes
 * a load, several loads in flight) at a time; then the threads' (m, s) pairs are combined. The row is
 * read once (the two-pass form read it twice, from DRAM: a block of rows is larger than L2). A double
 * conversion and add per value had made the kernel compute-bound on BF16 rows. */
#define LP_THREADS 512

/* E: float (rows 16-byte aligned and V % 4 == 0 for VEC: float4 loads) or __nv_bfloat16 (the single-pass
 * lm_head's BF16 logits; VEC: V % 8 == 0, 8 values a 16-byte load) */
template <typename E, bool VEC>
__global__ void __launch_bounds__(LP_THREADS) k_logprob(float *lp, const E *logits, const int32_t *target, int V) {
    plm_pdl_enter();
    __shared__ float shm[LP_THREADS / 32];
    __shared__ double shs[LP_THREADS / 32];
    const E *l = logits + (int64_t)blockIdx.x * V;
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
        float part = 0.0f; /* a group's exponentials summed in float (each <= 1), the group added in double */
#pragma unroll
        for (int u = 0; u < 16; u++)
            if (u < n) part += expf(x[u] - m);
        s += (double)part;
    };
    int v0 = 0;
    if (VEC) { /* 16-byte loads, 16 values a round (four loads of float, two of BF16), two rounds' loads
                  issued before the first round's arithmetic */
        constexpr int PER = 16 / sizeof(E), LD = 16 / PER, NL = 2 * LD;
        const uint4 *l4 = reinterpret_cast<const uint4 *>(l);
        const int n4 = V / PER;
        for (int i = threadIdx.x; i < n4; i += NL * LP_THREADS) {
            uint4 f[NL];
#pragma unroll
            for (int u = 0; u < NL; u++)
                if (i + u * LP_THREADS < n4) f[u] = __ldcs(l4 + i + u * LP_THREADS);
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float x[16];
                int n = 0;
#pragma unroll
                for (int u = 0; u < LD; u++)
                    if (i + (r * LD + u) * LP_THREADS < n4) {
                        const E *e = reinterpret_cast<const E *>(&f[r * LD + u]);
#pragma unroll
                        for (int j = 0; j < PER; j++) x[PER * u + j] = plm_f32(e[j]);
                        n = PER * (u + 1);
                    }
                if (n) add(x, n);
            }
        }
        v0 = n4 * PER;
    }
    for (int v = v0 + threadIdx.x; v < V; v += LP_THREADS) {
        const float x = plm_f32(l[v]);
        add(&x, 1);
    }
    /* combine: M the row's maximum, S = sum s exp(m - M) over the threads that saw a value */
    const float M = plm_block_max(m, shm);
    double part = s > 0.0 ? s * (double)expf(m - M) : (s != s ? s : 0.0);
    for (int o = 16; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
    if ((threadIdx.x & 31) == 0) shs[threadIdx.x >> 5] = part;
    __syncthreads();
    if (threadIdx.x == 0) {
        double tot = 0.0;
        for (int w = 0; w < LP_THREADS / 32; w++) tot += shs[w];
        lp[blockIdx.x] = (float)((double)(plm_f32(l[target[blockIdx.x]]) - M) - log(tot));
    }
}

extern "C" void plm_logprob_cuda(float *lp, const float *logits, const int32_t *target, int n, int V, void *stream) {
    if (n <= 0) return;
    if (V % 4 == 0 && plm_aligned16(logits))
        k_logprob<float, true><<<(unsigned)n, LP_THREADS, 0, PLM_STREAM(stream)>>>(lp, logits, target, V);
    else
        k_logprob<float, false><<<(unsigned)n, LP_THREADS, 0, PLM_STREAM(stream)>>>(lp, logits, target, V);
}

extern "C" void plm_logprob_bf16_cuda(float *lp, const void *logits, const int32_t *target, int n, int V,
                                      void *stream) {
    if (n <= 0) return;
    const __nv_bfloat16 *l = (const __nv_bfloat16 *)logits;
    if (V % 8 == 0 && plm_aligned16(logits))
        k_logprob<__nv_bfloat16, true><<<(unsigned)n, LP_THREADS, 0, PLM_STREAM(stream)>>>(lp, l, target, V);
    else
        k_logprob<__nv_bfloat16, false><<<(unsigned)n, LP_THREADS, 0, PLM_STREAM(stream)>>>(lp, l, target, V);
}

/* Greedy choice, one block a row, plm_argmax_row's result: of (value, index) pairs a number beats NaN,
 * a larger value beats a smaller, equal values go to the lower index; a row of NaN gives 0. A thread's
 * candidate starts as (-inf, AM_NONE): any number, -inf included, beats it through the index, a NaN never
 * does (every comparison with NaN is false), so candidates are never NaN and that order is total on
 * them: any split of the row over threads and any reduction order give the same index. A row of NaN
 * keeps AM_NONE, written as 0.
 * The row is read as float4 from its first 16-byte boundary (the up to 3 values before it and the up
 * to 3 after the last whole float4 one a thread), AM_U loads of 16 bytes in flight a thread, so that
 * one block keeps an SM's share of L2 bandwidth busy on a decode step's row (248,320 logits just written
 * by the lm_head; 256 threads of one scalar load at a time took 0.43 ms on it). */
#define AM_THREADS 1024
#define AM_U 4
#define AM_NONE 0x7fffffff

__device__ __forceinline__ void amax_take(float v, int i, float &bv, int &bi) {
    if (v > bv || (v == bv && i < bi)) bv = v, bi = i; /* false for a NaN v */
}

/* the same for the G values f of v .. v + G - 1: their maximum m (NaN only if all are) against the
 * candidate, then the first of them equal to m. Ties need only v < bi: a thread's values are disjoint
 * groups, so bi is below v or past v + G - 1. G - 1 fmaxf and a test a group rather than G tests. */
template <int G> __device__ __forceinline__ void amax_take_g(const float (&f)[G], int v, float &bv, int &bi) {
    float m = f[0];
#pragma unroll
    for (int j = 1; j < G; j++) m = fmaxf(m, f[j]);
    if (m > bv || (m == bv && v < bi)) {
        int j = 0;
        while (j < G - 1 && f[j] != m) j++;
        bv = m, bi = v + j;
    }
}

__device__ __forceinline__ void amax_warp(float &bv, int &bi) {
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        amax_take(ov, oi, bv, bi);
    }
}

__device__ __forceinline__ float am_value(float x) { return x; }
__device__ __forceinline__ float am_value(__nv_bfloat16 x) { return __bfloat162float(x); }

/* E: float (float4 groups) or __nv_bfloat16 (groups of 8): 16 bytes a load either way */
template <typename E>
__global__ void __launch_bounds__(AM_THREADS) k_argmax(int32_t *idx, const E *logits, int V) {
    plm_pdl_enter();
    constexpr int G = 16 / sizeof(E); /* values a 16-byte load */
    __shared__ float sv[32];
    __shared__ int si[32];
    const E *l = logits + (int64_t)blockIdx.x * V;
    const int nt = blockDim.x, tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    float bv = -INFINITY;
    int bi = AM_NONE;
    /* head: the values before the first 16-byte boundary (all of them if the row is not aligned to its
       element size) */
    const uintptr_t a = (uintptr_t)l;
    int head = (a & (sizeof(E) - 1)) ? V : (int)(((16 - (a & 15)) & 15) / sizeof(E));
    head = head < V ? head : V;
    const int ng = (V - head) / G, tail = head + G * ng; /* whole groups, then the tail's 0 .. G - 1 values */
    for (int v = tid; v < head; v += nt) amax_take(am_value(l[v]), v, bv, bi);
    if (tail + tid < V) amax_take(am_value(l[tail + tid]), tail + tid, bv, bi);
    const uint4 *lg = reinterpret_cast<const uint4 *>(l + head);
    for (int i0 = tid; i0 < ng; i0 += AM_U * nt) {
        uint4 f[AM_U]; /* every load of the round issued before the first comparison; NaN past the end */
#pragma unroll
        for (int u = 0; u < AM_U; u++)
            f[u] = i0 + u * nt < ng ? __ldcs(lg + i0 + u * nt) : make_uint4(~0u, ~0u, ~0u, ~0u);
#pragma unroll
        for (int u = 0; u < AM_U; u++) {
            float v[G];
            if constexpr (G == 4) {
                v[0] = __uint_as_float(f[u].x), v[1] = __uint_as_float(f[u].y);
                v[2] = __uint_as_float(f[u].z), v[3] = __uint_as_float(f[u].w);
            } else {
                plm_unpack8(v, f[u]);
            }
            amax_take_g<G>(v, head + G * (i0 + u * nt), bv, bi);
        }
    }
    amax_warp(bv, bi);
    if (lane == 0) sv[w] = bv, si[w] = bi;
    __syncthreads();
    if (w == 0) {
        const int nw = nt >> 5;
        bv = lane < nw ? sv[lane] : -INFINITY;
        bi = lane < nw ? si[lane] : AM_NONE;
        amax_warp(bv, bi);
        if (lane == 0) idx[blockIdx.x] = bi == AM_NONE ? 0 : bi; /* all NaN: 0, as on the CPU */
    }
}

/* threads a row: AM_THREADS, fewer (down to a warp) for rows too short to give each one a round of loads */
static int am_threads(int V, int per_load) {
    int threads = 32;
    while (threads < AM_THREADS && (int64_t)threads * per_load * AM_U < V) threads *= 2;
    return threads;
}

extern "C" void plm_argmax_cuda(int32_t *idx, const float *logits, int n, int V, void *stream) {
    if (n <= 0) return;
    k_argmax<float><<<(unsigned)n, am_threads(V, 4), 0, PLM_STREAM(stream)>>>(idx, logits, V);
}

extern "C" void plm_argmax_bf16_cuda(int32_t *idx, const void *logits, int n, int V, void *stream) {
    if (n <= 0) return;
    k_argmax<__nv_bfloat16><<<(unsigned)n, am_threads(V, 8), 0, PLM_STREAM(stream)>>>(
        idx, (const __nv_bfloat16 *)logits, V);
}
