/* Gated delta rule on the GPU (plm_gdn_ref's contract):
 *   S = exp(g) S;  S += k (beta (v - S^T k))^T;  o = S^T q     per segment, per value head.
 * The columns of S (value dims) evolve independently, so every block owns (segment, head, 32
 * columns of S) and keeps that slice on chip for the whole segment: read once, written once.
 *
 * Two forms. Recurrent (one-token and short segments): lane j holds column j, warp w key rows
 * 32w .. 32w+31 of it, in registers; the two dot products over the key dim reduce across warps
 * through shared memory. Chunked (segments of PLM_GDN_CUDA_CHUNKED_MIN tokens or more, key dim up
 * to 128): the UT / WY form of kernels/gdn_chunk.c over chunks of 64 tokens that never cross a
 * segment boundary (the last one may be short), with the state slice in shared memory:
 *   A[i][j] = beta_i (k_i . k_j) exp(c_i - c_j), j < i;  [W | U] = (I + A)^-1 [beta k exp(c) | beta v]
 *   V' = U - W S;  O = (q exp(c)) S + ((q k^T) exp(c_i - c_j), j <= i) V';  S = exp(c_L) S + (k exp(c_L - c))^T V'
 * with c the inclusive cumulative log decay within the chunk. Plain fp32 arithmetic in both. */
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"
#include "kernels/gdn_rec.cuh"

#define ROWS GDN_REC_ROWS /* key rows per thread */
#define CHUNK 64
#define TILE 32 /* value columns per block */
#define CHUNK_THREADS 256
#define CHUNKED_MIN 16     /* segments at least this long take the chunked form */
#define CHUNKED_MAX_DK 128 /* its shared memory holds three [64, dk] blocks */

/* 96 registers (166 unbounded, no spills either way): five blocks of 128 threads an SM instead of
 * three, so a decode step of many sequences keeps more of their states in flight */
__global__ void __maxnreg__(96) k_gdn_rec(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                          const float *beta, const int32_t *cu, int nk, int nv, int dk, int dv, int skip_from) {
    plm_pdl_enter();
    __shared__ float ks[PLM_CUDA_MAX_DK], qs[PLM_CUDA_MAX_DK], red[PLM_CUDA_MAX_DK / ROWS][32],
        red2[PLM_CUDA_MAX_DK / ROWS][32];
    const int s = blockIdx.z, h = blockIdx.y, lane = threadIdx.x, w = threadIdx.y;
    const int j = blockIdx.x * 32 + lane, kh = h / (nv / nk);
    if (cu[s + 1] - cu[s] >= skip_from) return; /* the chunked kernel takes this segment */
    const bool jv = j < dv;
    /* this thread's column j of rows w * ROWS .. : Sp[r * dv] (one base pointer, so the compiler does
       not keep 32 addresses alive from the loads to the stores) */
    float *const Sp = S[s] + (size_t)h * dk * dv + (size_t)w * ROWS * dv + j;
    const int nr = jv ? (dk - w * ROWS < ROWS ? dk - w * ROWS : ROWS) : 0;
    float Sr[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) Sr[r] = r < nr ? Sp[(size_t)r * dv] : 0.0f;
    for (int64_t t = cu[s]; t < cu[s + 1]; t++) {
        const int64_t th = t * nv + h;
        const float acc = gdn_rec_token(Sr, ks, qs, red, red2, k + (t * nk + kh) * dk, q + (t * nk + kh) * dk, g + th,
                                        beta + th, v + th * dv + j, dk, jv);
        if (w == 0 && jv) o[th * dv + j] = acc;
    }
#pragma unroll
    for (int r = 0; r < ROWS; r++)
        if (r < nr) Sp[(size_t)r * dv] = Sr[r];
}

/* keys and queries are stored with rows of dk + 1 floats: the dot products between rows (A, q.k)
 * then read 32 different banks across a warp instead of one */
static size_t chunk_smem(int dk) {
    return ((size_t)2 * CHUNK * (dk + 1) + (size_t)CHUNK * dk + CHUNK * CHUNK + 3 * CHUNK * TILE + (size_t)dk * TILE +
            4 * CHUNK) * sizeof(float);
}

__global__ void __launch_bounds__(CHUNK_THREADS) k_gdn_chunk(float *o, float *const *S, const float *q, const float *k,
                                                             const float *v, const float *g, const float *beta,
                                                             const int32_t *cu, int nk, int nv, int dk, int dv) {
    plm_pdl_enter();
    extern __shared__ float sm[];
    const int s = blockIdx.z, h = blockIdx.y, j0 = blockIdx.x * TILE, kh = h / (nv / nk), tid = threadIdx.x;
    const int64_t t_beg = cu[s], t_end = cu[s + 1];
    if (t_end - t_beg < CHUNKED_MIN) return; /* the recurrent kernel takes this segment */
    const int ld = dk + 1; /* row stride of Ks, Qs */
    float *Ks = sm, *Qs = Ks + CHUNK * ld, *W = Qs + CHUNK * ld, *A = W + CHUNK * dk; /* A: then the masked q.k */
    float *Vt = A + CHUNK * CHUNK, *U = Vt + CHUNK * TILE, *Ot = U + CHUNK * TILE, *St = Ot + CHUNK * TILE;
    float *G = St + dk * TILE, *Bt = G + CHUNK, *Eg = Bt + CHUNK, *Dl = Eg + CHUNK; /* exp(c_i), exp(c_L - c_j) */
    float *Sh = S[s] + (size_t)h * dk * dv;
    for (int e = tid; e < dk * TILE; e += CHUNK_THREADS) {
        const int d = e / TILE, c = e % TILE;
        float x = 0.0f;
        if (j0 + c < dv) x = Sh[(size_t)d * dv + j0 + c];
        St[e] = x;
    }
    for (int64_t t0 = t_beg; t0 < t_end; t0 += CHUNK) {
        const int L = t_end - t0 < CHUNK ? (int)(t_end - t0) : CHUNK;
        /* 1. the chunk's keys, queries, value columns, decays and betas */
        for (int e = tid; e < L * dk; e += CHUNK_THREADS) {
            const int i = e / dk, d = e % dk;
            Ks[i * ld + d] = k[((t0 + i) * nk + kh) * dk + d];
            Qs[i * ld + d] = q[((t0 + i) * nk + kh) * dk + d];
        }
        for (int e = tid; e < L * TILE; e += CHUNK_THREADS) {
            const int i = e / TILE, c = e % TILE;
            float x = 0.0f;
            if (j0 + c < dv) x = v[((t0 + i) * nv + h) * dv + j0 + c];
            Vt[e] = x;
        }
        for (int i = tid; i < L; i += CHUNK_THREADS) {
            G[i] = g[(t0 + i) * nv + h];
            Bt[i] = beta[(t0 + i) * nv + h];
        }
        __syncthreads();
        if (tid == 0)
            for (int i = 1; i < L; i++) G[i] += G[i - 1]; /* inclusive cumulative log decay */
        __syncthreads();
        for (int i = tid; i < L; i += CHUNK_THREADS) {
            Eg[i] = expf(G[i]);
            Dl[i] = expf(G[L - 1] - G[i]);
        }
        __syncthreads();
        /* 2. A (strictly lower), and the right-hand sides [beta k exp(c) | beta v] */
        for (int e = tid; e < L * L; e += CHUNK_THREADS) {
            const int i = e / L, jj = e % L;
            float a = 0.0f;
            if (jj < i) {
                for (int d = 0; d < dk; d++) a += Ks[i * ld + d] * Ks[jj * ld + d];
                a *= Bt[i] * expf(G[i] - G[jj]);
            }
            A[i * CHUNK + jj] = a;
        }
        for (int e = tid; e < L * dk; e += CHUNK_THREADS) {
            const int i = e / dk, d = e % dk;
            W[e] = Ks[i * ld + d] * Bt[i] * Eg[i];
        }
        for (int e = tid; e < L * TILE; e += CHUNK_THREADS) U[e] = Vt[e] * Bt[e / TILE];
        __syncthreads();
        /* 3. forward substitution: row i of [W | U] -= sum_{j<i} A[i][j] row j */
        for (int i = 1; i < L; i++) {
            for (int col = tid; col < dk + TILE; col += CHUNK_THREADS) {
                float *x = col < dk ? W + i * dk + col : U + i * TILE + (col - dk);
                const int stride = col < dk ? dk : TILE;
                const float *xc = col < dk ? W + col : U + (col - dk);
                float acc = *x;
                for (int jj = 0; jj < i; jj++) acc -= A[i * CHUNK + jj] * xc[jj * stride];
                *x = acc;
            }
            __syncthreads();
        }
        /* 4. the new values V' = U - W S */
        for (int e = tid; e < L * TILE; e += CHUNK_THREADS) {
            const int i = e / TILE, c = e % TILE;
            float acc = 0.0f;
            for (int d = 0; d < dk; d++) acc += W[i * dk + d] * St[d * TILE + c];
            U[e] -= acc;
        }
        /* 5. the causal, decay-masked q.k (into A) */
        for (int e = tid; e < L * L; e += CHUNK_THREADS) {
            const int i = e / L, jj = e % L;
            float a = 0.0f;
            if (jj <= i) {
                for (int d = 0; d < dk; d++) a += Qs[i * ld + d] * Ks[jj * ld + d];
                a *= expf(G[i] - G[jj]);
            }
            A[i * CHUNK + jj] = a;
        }
        __syncthreads();
        /* 6. outputs: (q exp(c)) S + P V' */
        for (int e = tid; e < L * TILE; e += CHUNK_THREADS) {
            const int i = e / TILE, c = e % TILE;
            float acc = 0.0f, acc2 = 0.0f;
            for (int d = 0; d < dk; d++) acc += Qs[i * ld + d] * St[d * TILE + c];
            for (int jj = 0; jj <= i; jj++) acc2 += A[i * CHUNK + jj] * U[jj * TILE + c];
            Ot[e] = acc * Eg[i] + acc2;
        }
        __syncthreads();
        for (int e = tid; e < L * TILE; e += CHUNK_THREADS) {
            const int i = e / TILE, c = e % TILE;
            if (j0 + c < dv) o[((t0 + i) * nv + h) * dv + j0 + c] = Ot[e];
        }
        /* 7. the state: exp(c_L) S + (k exp(c_L - c))^T V' */
        const float gl = G[L - 1];
        for (int e = tid; e < dk * TILE; e += CHUNK_THREADS) {
            const int d = e / TILE, c = e % TILE;
            float acc = 0.0f;
            for (int jj = 0; jj < L; jj++) acc += Ks[jj * ld + d] * Dl[jj] * U[jj * TILE + c];
            St[e] = St[e] * expf(gl) + acc;
        }
        __syncthreads();
    }
    for (int e = tid; e < dk * TILE; e += CHUNK_THREADS) {
        const int d = e / TILE, c = e % TILE;
        if (j0 + c < dv) Sh[(size_t)d * dv + j0 + c] = St[e];
    }
}

extern "C" void plm_gdn_cuda(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                             const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv,
                             void *stream) {
    if (n_seg <= 0 || dk <= 0 || dk > PLM_CUDA_MAX_DK) return;
    int skip_from = 0x7fffffff;
    if (dk <= CHUNKED_MAX_DK) { /* long segments: chunked; the rest (decode tokens): recurrent */
        const size_t smem = chunk_smem(dk);
        if (cudaFuncSetAttribute(k_gdn_chunk, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) == cudaSuccess) {
            dim3 cgrid((unsigned)((dv + TILE - 1) / TILE), (unsigned)nv, (unsigned)n_seg);
            k_gdn_chunk<<<cgrid, CHUNK_THREADS, smem, PLM_STREAM(stream)>>>(o, S, q, k, v, g, beta, cu, nk, nv, dk, dv);
            skip_from = CHUNKED_MIN;
        }
    }
    plm_gdn_rec_cuda(o, S, q, k, v, g, beta, cu, n_seg, nk, nv, dk, dv, skip_from, stream);
}

extern "C" void plm_gdn_rec_cuda(float *o, float *const *S, const float *q, const float *k, const float *v,
                                 const float *g, const float *beta, const int32_t *cu, int n_seg, int nk, int nv,
                                 int dk, int dv, int skip_from, void *stream) {
    if (n_seg <= 0 || dk <= 0 || dk > PLM_CUDA_MAX_DK) return;
    dim3 grid((unsigned)((dv + 31) / 32), (unsigned)nv, (unsigned)n_seg);
    dim3 block(32, (unsigned)((dk + ROWS - 1) / ROWS));
    k_gdn_rec<<<grid, block, 0, PLM_STREAM(stream)>>>(o, S, q, k, v, g, beta, cu, nk, nv, dk, dv, skip_from);
}
