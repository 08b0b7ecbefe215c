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
// Then (2026-11-30, 07:40 UTC) the ring form (k_dec_ring: persistent blocks, one thread moving whole
// 64 KB states between global and shared memory by bulk copies, 2 or 3 buffers: 0.1802 / 0.1416 ms, no
// faster than the register form; inside the step it was slower, 178-189 us against 168-172, so it was
// not kept) and the engine's layout as it was (a sequence's 18 layers in one pool allocation: 0.1503 ms,
// 0.1554 with the ending) against a layer's states side by side in one slab (0.1383 / 0.1456): what
// moved the engine's states into per-layer slabs (plm_cuda_slot_take). The ring's results are checked
// against the register form's on random states (max |diff| 3.6e-7 of 1.36).
#include <cstdio>
#include <cmath>
#include <cstdint>
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


/* The ring form: persistent blocks of 256 threads, one (token, head) state (64 KB, contiguous) an item;
 * one thread moves whole states between global and shared memory with bulk copies (cp.async.bulk onto
 * an mbarrier for loads, bulk stores read out of shared memory), NBUF buffers: loads run NBUF - 1
 * items ahead and the stores drain behind, so no register holds a state on its way in or out. Thread
 * (half, j) sums rows 64 half .. 64 half + 63 of column j in shared memory. */
__device__ __forceinline__ unsigned sa(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void bar_wait(uint64_t *b, unsigned phase) {
    unsigned done = 0;
    while (!done)
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                     : "=r"(done) : "r"(sa(b)), "r"(phase) : "memory");
}
template <int NBUF>
__global__ void __launch_bounds__(256, 1) k_dec_ring(float *o, float *const *Stab, const float *q, const float *k,
                                                    const float *v, const float *g, const float *beta, int T, int nv) {
    constexpr int DK = 128, DV = 128;
    constexpr unsigned BYTES = DK * DV * 4;
    extern __shared__ __align__(128) float ring[];
    __shared__ __align__(8) uint64_t full[NBUF];
    __shared__ float ks[DK], qs[DK], p1[2][DV], p2[2][DV];
    const int tid = threadIdx.x, j = tid & (DV - 1), hf = tid >> 7;
    const int items = T * nv, mine = (items - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x;
    auto src = [&](int i) {
        const int it = blockIdx.x + i * gridDim.x;
        return Stab[it / nv] + (size_t)(it % nv) * DK * DV;
    };
    auto load = [&](int i) {
        uint64_t *b = &full[i % NBUF];
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sa(b)), "r"(BYTES) : "memory");
        const float *s0 = src(i);
        float *d0 = ring + (size_t)(i % NBUF) * DK * DV;
        for (int c = 0; c < 4; c++)
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                         ::"r"(sa(d0 + c * DK * DV / 4)), "l"(s0 + c * DK * DV / 4), "r"(BYTES / 4), "r"(sa(b)) : "memory");
    };
    if (tid == 0) {
        for (int b = 0; b < NBUF; b++)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(sa(&full[b])), "r"(1));
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        for (int i = 0; i < NBUF - 1 && i < mine; i++) load(i);
    }
    __syncthreads();
    for (int i = 0; i < mine; i++) {
        const int it = blockIdx.x + i * gridDim.x, t = it / nv;
        if (tid < DK) { ks[tid] = k[(size_t)t * DK + tid]; qs[tid] = q[(size_t)t * DK + tid]; }
        const float gt = g[it], b = beta[it], vt = v[(size_t)it * DV + j];
        bar_wait(&full[i % NBUF], (unsigned)(i / NBUF) & 1u);
        __syncthreads();
        float *S = ring + (size_t)(i % NBUF) * DK * DV + (size_t)hf * 64 * DV + j;
        const float *kk = ks + hf * 64, *qq = qs + hf * 64;
        const float decay = expf(gt);
        float part = 0.f;
#pragma unroll 16
        for (int r = 0; r < 64; r++) part += (S[r * DV] * decay) * kk[r];
        p1[hf][j] = part;
        __syncthreads();
        const float delta = (vt - (p1[0][j] + p1[1][j])) * b;
        float pq = 0.f;
#pragma unroll 16
        for (int r = 0; r < 64; r++) {
            const float x = S[r * DV] * decay + kk[r] * delta;
            S[r * DV] = x;
            pq += x * qq[r];
        }
        p2[hf][j] = pq;
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        __syncthreads();
        if (tid == 0) {
            float *d0 = src(i);
            const float *s0 = ring + (size_t)(i % NBUF) * DK * DV;
            asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(d0), "r"(sa(s0)), "r"(BYTES)
                         : "memory");
            asm volatile("cp.async.bulk.commit_group;" ::: "memory");
            if (i + NBUF - 1 < mine) {
                asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(NBUF - 2) : "memory");
                load(i + NBUF - 1);
            }
        }
        if (tid < DV) o[(size_t)it * DV + j] = p2[0][j] + p2[1][j];
    }
    if (tid == 0) asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}

template <int NBUF>
float run_ring(float *o, float *const *Stab, float *q, float *k, float *v, float *g, float *b, int T, int nv, int per_sm,
               cudaEvent_t e0, cudaEvent_t e1) {
    const int smem = NBUF * 128 * 128 * 4;
    CK(cudaFuncSetAttribute(k_dec_ring<NBUF>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    int nsm;
    cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, 0);
    float best = 1e9;
    for (int it = 0; it < 12; it++) {
        cudaEventRecord(e0);
        for (int l = 0; l < 4; l++) k_dec_ring<NBUF><<<nsm * per_sm, 256, smem>>>(o, Stab, q, k, v, g, b, T, nv);
        cudaEventRecord(e1);
        CK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (it && ms / 4 < best) best = ms / 4;
    }
    CK(cudaGetLastError());
    printf("ring, %d buffers of 64 KB, %d block(s) an SM: %.4f ms  %.2f TB/s\n", NBUF, per_sm, best,
           2.0 * T * nv * 128 * 128 * 4 / best / 1e9);
    return best;
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
    printf("the ring form (states in their own allocations, through the table):\n");
    run<32, 1, true>(o, NULL, dtab, q, k, v, g, b, T, nv, dk, dv, e0, e1);
    run_ring<2>(o, dtab, q, k, v, g, b, T, nv, 1, e0, e1);
    run_ring<3>(o, dtab, q, k, v, g, b, T, nv, 1, e0, e1);
    /* the engine's layout: a sequence's whole state one allocation from the default pool (per layer the conv
       tail, 3 x 6,144 floats, then the delta rule's state), the step reading layer 5's states */
    {
        const size_t conv = 3 * 6144, per = conv + (size_t)nv * dk * dv;
        float *seq[T], *lay[T], **ltab;
        for (int t = 0; t < T; t++) {
            CK(cudaMallocAsync((void **)&seq[t], 18 * per * 4, 0));
            cudaMemsetAsync(seq[t], 0, 18 * per * 4, 0);
            lay[t] = seq[t] + 5 * per + conv;
        }
        CK(cudaMalloc(&ltab, T * sizeof *ltab));
        CK(cudaMemcpy(ltab, lay, T * sizeof *ltab, cudaMemcpyHostToDevice));
        CK(cudaDeviceSynchronize());
        printf("the engine's layout (a sequence's 18 layers one pool allocation, layer 5):\n");
        run<32, 1, true>(o, NULL, ltab, q, k, v, g, b, T, nv, dk, dv, e0, e1);
        run<32, 1, true, true>(o, NULL, ltab, q, k, v, g, b, T, nv, dk, dv, e0, e1, na);
        run_ring<3>(o, ltab, q, k, v, g, b, T, nv, 1, e0, e1);
        for (int t = 0; t < T; t++) lay[t] = seq[t] + (5 * per + conv + 131071) / 131072 * 131072; /* 512 KB from the base */
        CK(cudaMemcpy(ltab, lay, T * sizeof *ltab, cudaMemcpyHostToDevice));
        printf("the same allocations, each state 512 KB-aligned:\n");
        run<32, 1, true>(o, NULL, ltab, q, k, v, g, b, T, nv, dk, dv, e0, e1);
        float *slab;
        CK(cudaMallocAsync((void **)&slab, 18 * (size_t)T * nv * dk * dv * 4, 0));
        for (int t = 0; t < T; t++) lay[t] = slab + (5 * (size_t)T + t) * nv * dk * dv;
        CK(cudaMemcpy(ltab, lay, T * sizeof *ltab, cudaMemcpyHostToDevice));
        CK(cudaDeviceSynchronize());
        printf("a layer-major slab (every sequence's layer-5 state side by side):\n");
        run<32, 1, true>(o, NULL, ltab, q, k, v, g, b, T, nv, dk, dv, e0, e1);
        run<32, 1, true, true>(o, NULL, ltab, q, k, v, g, b, T, nv, dk, dv, e0, e1, na);
    }
    /* the ring's results against the register form's on the same random states (one launch each from equal copies) */
    {
        float *Sc, *o2, **tab2;
        CK(cudaMalloc(&Sc, ns * 4)); CK(cudaMalloc(&o2, T * nv * dv * 4)); CK(cudaMalloc(&tab2, T * sizeof *tab2));
        float *h2[T];
        for (int t = 0; t < T; t++) h2[t] = Sc + (size_t)t * nv * dk * dv;
        CK(cudaMemcpy(tab2, h2, T * sizeof *tab2, cudaMemcpyHostToDevice));
        k_fill<<<132 * 8, 512>>>(S, ns);
        k_fill<<<132 * 8, 512>>>(k, T * dk);
        k_fill<<<132 * 8, 512>>>(q, T * dk);
        k_fill<<<132 * 8, 512>>>(v, T * nv * dv);
        k_fill<<<132 * 8, 512>>>(b, T * nv);
        CK(cudaMemcpy(Sc, S, ns * 4, cudaMemcpyDeviceToDevice));
        k_dec<32, 1, false><<<dim3(dv / 32, nv, T), dim3(32, 4)>>>(o, S, NULL, q, k, v, g, b, nv, dk, dv, norm_args{});
        CK(cudaFuncSetAttribute(k_dec_ring<3>, cudaFuncAttributeMaxDynamicSharedMemorySize, 3 * 65536));
        k_dec_ring<3><<<132, 256, 3 * 65536>>>(o2, tab2, q, k, v, g, b, T, nv);
        CK(cudaDeviceSynchronize());
        float *a = (float *)malloc(ns * 4), *c = (float *)malloc(ns * 4), *oa = (float *)malloc(T * nv * dv * 4),
              *oc = (float *)malloc(T * nv * dv * 4);
        CK(cudaMemcpy(a, S, ns * 4, cudaMemcpyDeviceToHost)); CK(cudaMemcpy(c, Sc, ns * 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(oa, o, T * nv * dv * 4, cudaMemcpyDeviceToHost)); CK(cudaMemcpy(oc, o2, T * nv * dv * 4, cudaMemcpyDeviceToHost));
        double ds = 0, dout = 0, ms = 0, mo = 0;
        for (size_t i = 0; i < ns; i++) { ds = fmax(ds, fabs(a[i] - c[i])); ms = fmax(ms, fabs(a[i])); }
        for (size_t i = 0; i < (size_t)T * nv * dv; i++) { dout = fmax(dout, fabs(oa[i] - oc[i])); mo = fmax(mo, fabs(oa[i])); }
        printf("ring against the register form: states max |diff| %.3g (max %.3g), outputs %.3g (max %.3g)\n", ds, ms, dout, mo);
    }
    return 0;
}
