// The decode mixer's state traffic alone at 256 sequences (16 heads, 128 x 128 FP32 states: 537 MB read
// and written a layer): a device copy of the states, then a kernel of k_gdn_dec's form (the state read,
// one delta-rule step, the state written, no norm) at R key rows a thread and C columns a lane, each the
// best of 11 rounds of 4 launches; PTR: each token's state in its own allocation, its address read
// from a table first, as the engine's k_gdn_dec reads S[t]; NORM: then k_gdn_dec's ending, each block
// counting itself done on a per-(token, head) counter after a fence and the head's last block reading
// the head's 128 outputs back for the gated RMSNorm (BF16 out), to see what that ending costs beside
// the state's bytes (inside a decode step k_gdn_dec takes 0.164 ms a layer under Nsight Compute at
// real clocks, against 0.139 here without it). Run on a GPU machine:
//   nvcc -O2 -std=c++17 -gencode arch=compute_90,code=sm_90 -o decode_state bench/micro/decode_state.cu && ./decode_state
// (docs/performance.md, 19:58 UTC section: 3.88 TB/s at R = 32, C = 1, the copy's rate). The last rows take
// the states from cudaMalloc and from the default stream-ordered pool (where the engine's states live), both
// filled with random values: 0.1389 and 0.1384 ms on 2026-11-30, so neither the pool nor the values matter.
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); exit(1); } } while (0)

struct norm_args {
    unsigned *ctr;
    const float *z, *gw;
    unsigned short *out;
};

template <int R, int C, bool PTR, bool NORM = false>
__global__ void __launch_bounds__(32 * (128 / R)) k_dec(float *o, float *S, float *const *Stab, const float *q,
                                                       const float *k, const float *v, const float *g,
                                                       const float *beta, int nv, int dk, int dv, norm_args na) {
    constexpr int NW = 128 / R;
    __shared__ float ks[128], qs[128], red[NW][32 * C], red2[NW][32 * C];
    const int h = blockIdx.y, lane = threadIdx.x, w = threadIdx.y;
    const long t = blockIdx.z, th = t * nv + h;
    const int j = blockIdx.x * 32 * C + lane * C;
    float *Sp = PTR ? Stab[t] + ((size_t)h * dk + (size_t)w * R) * dv + j : S + (th * dk + (size_t)w * R) * dv + j;
    float Sr[R][C];
#pragma unroll
    for (int r = 0; r < R; r++) {
        if (C == 2) {
            float2 x = __ldcg((const float2 *)(Sp + (size_t)r * dv));
            Sr[r][0] = x.x, Sr[r][C - 1] = x.y;
        } else
            Sr[r][0] = __ldcg(Sp + (size_t)r * dv);
    }
    const int tid = w * 32 + lane;
    if (tid < dk) { ks[tid] = k[t * dk + tid]; qs[tid] = q[t * dk + tid]; }
    const float gt = g[th], b = beta[th];
    float vt[C];
#pragma unroll
    for (int c = 0; c < C; c++) vt[c] = v[th * dv + j + c];
    __syncthreads();
    const float decay = expf(gt);
    float part[C] = {};
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int c = 0; c < C; c++) { Sr[r][c] *= decay; part[c] += Sr[r][c] * ks[w * R + r]; }
#pragma unroll
    for (int c = 0; c < C; c++) red[w][lane * C + c] = part[c];
    __syncthreads();
    float delta[C], p2[C] = {};
#pragma unroll
    for (int c = 0; c < C; c++) {
        float kvm = 0.f;
        for (int ww = 0; ww < NW; ww++) kvm += red[ww][lane * C + c];
        delta[c] = (vt[c] - kvm) * b;
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int c = 0; c < C; c++) { Sr[r][c] += ks[w * R + r] * delta[c]; p2[c] += Sr[r][c] * qs[w * R + r]; }
#pragma unroll
    for (int c = 0; c < C; c++) red2[w][lane * C + c] = p2[c];
#pragma unroll
    for (int r = 0; r < R; r++) {
        if (C == 2) __stcg((float2 *)(Sp + (size_t)r * dv), make_float2(Sr[r][0], Sr[r][C - 1]));
        else __stcg(Sp + (size_t)r * dv, Sr[r][0]);
    }
    __syncthreads();
    if (w == 0)
        for (int c = 0; c < C; c++) {
            float acc = 0.f;
            for (int ww = 0; ww < NW; ww++) acc += red2[ww][lane * C + c];
            o[th * dv + j + c] = acc;
        }
    if (!NORM) return;
    __shared__ int last;
    __shared__ float sh[NW];
    __syncthreads();
    if (tid == 0) {
        __threadfence();
        last = atomicAdd(na.ctr + th, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    float ss = 0.f;
    for (int c = tid; c < dv; c += 32 * NW) {
        const float ov = __ldcg(o + th * dv + c);
        ss += ov * ov;
    }
    for (int off = 16; off; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (lane == 0) sh[w] = ss;
    __syncthreads();
    float tot = 0.f;
    for (int ww = 0; ww < NW; ww++) tot += sh[ww];
    const float inv = 1.0f / sqrtf(tot / (float)dv + 1e-6f);
    for (int c = tid; c < dv; c += 32 * NW) {
        const float zv = na.z[th * dv + c], x = na.gw[c] * __ldcg(o + th * dv + c) * inv * zv / (1.0f + expf(-zv));
        na.out[th * dv + c] = (unsigned short)(__float_as_uint(x) >> 16);
    }
    if (tid == 0) na.ctr[th] = 0;
}

/* states of random-looking values in [-0.5, 0.5) (a hash of the index), not zeros: as a decode step's */
__global__ void k_fill(float *d, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned x = (unsigned)i * 2654435761u;
        x ^= x >> 15, x *= 2246822519u, x ^= x >> 13;
        d[i] = (float)(x >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
}

__global__ void k_copy(float4 *d, const float4 *s, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) d[i] = s[i];
}

template <int R, int C, bool PTR = false, bool NORM = false>
float run(float *o, float *S, float *const *Stab, float *q, float *k, float *v, float *g, float *b, int T, int nv, int dk,
          int dv, cudaEvent_t e0, cudaEvent_t e1, norm_args na = {}) {
    dim3 grid(dv / (32 * C), nv, T), block(32, 128 / R);
    float best = 1e9;
    for (int it = 0; it < 12; it++) {
        cudaEventRecord(e0);
        for (int l = 0; l < 4; l++) k_dec<R, C, PTR, NORM><<<grid, block>>>(o, S, Stab, q, k, v, g, b, nv, dk, dv, na);
        cudaEventRecord(e1);
        CK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (it && ms / 4 < best) best = ms / 4;
    }
    cudaFuncAttributes a;
    cudaFuncGetAttributes(&a, k_dec<R, C, PTR, NORM>);
    int nb;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, k_dec<R, C, PTR, NORM>, 32 * (128 / R), 0);
    double bytes = 2.0 * T * nv * dk * dv * 4;
    printf("R=%2d C=%d%s%s: %.4f ms  %.2f TB/s  regs %d  blocks/SM %d\n", R, C, PTR ? " (own allocations, table)" : "",
           NORM ? " (+ counter and last-block norm)" : "", best,
           bytes / best / 1e9, a.numRegs, nb);
    return best;
}

int main() {
    const int T = 256, nv = 16, dk = 128, dv = 128;
    size_t ns = (size_t)T * nv * dk * dv;
    float *S, *S2, *o, *q, *k, *v, *g, *b;
    CK(cudaMalloc(&S, ns * 4)); CK(cudaMalloc(&S2, ns * 4));
    CK(cudaMalloc(&o, T * nv * dv * 4)); CK(cudaMalloc(&q, T * dk * 4)); CK(cudaMalloc(&k, T * dk * 4));
    CK(cudaMalloc(&v, T * nv * dv * 4)); CK(cudaMalloc(&g, T * nv * 4)); CK(cudaMalloc(&b, T * nv * 4));
    cudaMemset(S, 0, ns * 4); cudaMemset(q, 0, T * dk * 4); cudaMemset(k, 0, T * dk * 4); cudaMemset(v, 0, T * nv * dv * 4);
    cudaMemset(g, 0, T * nv * 4); cudaMemset(b, 0, T * nv * 4);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0); cudaEventCreate(&e1);
    float best = 1e9;
    for (int it = 0; it < 12; it++) {
        cudaEventRecord(e0);
        k_copy<<<132 * 8, 512>>>((float4 *)S2, (const float4 *)S, ns / 4);
        cudaEventRecord(e1);
        CK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (it && ms < best) best = ms;
    }
    printf("copy of the states: %.4f ms  %.2f TB/s\n", best, 2.0 * ns * 4 / best / 1e9);
    run<32, 1>(o, S, NULL, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    run<16, 1>(o, S, NULL, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    run<8, 1>(o, S, NULL, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    run<32, 2>(o, S, NULL, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    run<16, 2>(o, S, NULL, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    run<8, 2>(o, S, NULL, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    /* each token's state allocated on its own (as plm_state_new_on does) and found through a table */
    float *own[T], **dtab;
    for (int t = 0; t < T; t++) {
        CK(cudaMalloc(&own[t], (size_t)nv * dk * dv * 4));
        cudaMemset(own[t], 0, (size_t)nv * dk * dv * 4);
    }
    CK(cudaMalloc(&dtab, T * sizeof *dtab));
    CK(cudaMemcpy(dtab, own, T * sizeof *dtab, cudaMemcpyHostToDevice));
    run<32, 1, true>(o, NULL, dtab, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    run<16, 1, true>(o, NULL, dtab, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    run<32, 2, true>(o, NULL, dtab, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    /* k_gdn_dec's ending: the counter, the fence and the head's last block's gated norm */
    norm_args na;
    float *z, *gw;
    CK(cudaMalloc(&na.ctr, (size_t)T * nv * sizeof(unsigned)));
    CK(cudaMalloc(&z, (size_t)T * nv * dv * 4));
    CK(cudaMalloc(&gw, (size_t)dv * 4));
    CK(cudaMalloc(&na.out, (size_t)T * nv * dv * 2));
    cudaMemset(na.ctr, 0, (size_t)T * nv * sizeof(unsigned));
    cudaMemset(z, 0, (size_t)T * nv * dv * 4);
    cudaMemset(gw, 0, (size_t)dv * 4);
    na.z = z, na.gw = gw;
    run<32, 1, true, true>(o, NULL, dtab, q, k, v, g, b, T, nv, dk, dv, e0, e1, na);
    run<32, 2, true, true>(o, NULL, dtab, q, k, v, g, b, T, nv, dk, dv, e0, e1, na);
    /* where the states come from: cudaMalloc against the device's default stream-ordered pool (cudaMallocAsync,
       where the engine takes them), both holding random values (zeros would compress where memory is
       compressible) */
    float *Sa;
    CK(cudaMallocAsync((void **)&Sa, ns * 4, 0));
    k_fill<<<132 * 8, 512>>>(S, ns);
    k_fill<<<132 * 8, 512>>>(Sa, ns);
    CK(cudaDeviceSynchronize());
    printf("states from cudaMalloc, random values:\n");
    run<32, 1>(o, S, NULL, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    run<32, 2>(o, S, NULL, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    printf("states from cudaMallocAsync (the default pool), random values:\n");
    run<32, 1>(o, Sa, NULL, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    run<32, 2>(o, Sa, NULL, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    return 0;
}
