/* The linear-attention mixer of a decode step (every segment one token) in one or two kernels, not five:
 *   k_gdn_dec_in: conv1d + SiLU from the segment's tail (and the tail shifted to take the token), the
 *                 q/k L2 norms, the v copy, sigmoid(beta) and the log decay (plm_conv_cuda, then
 *                 plm_gdn_prep_cuda);
 *   k_gdn_dec:    the gated delta rule's step (plm_gdn_rec_cuda's arithmetic, column by column) and
 *                 the gated RMSNorm of the head's outputs, written as the out projection's input
 *                 (plm_rmsnorm_gated_bf16_cuda / plm_rmsnorm_gated_cuda).
 * A decode step is bound by its kernels' count, not their bytes: these are 2 launches where there were
 * 5, each read of a value the same as in the kernels they replace (same order of sums), so the outputs
 * are theirs up to the norms' reduction order. Where a value head has its own key head and heads are
 * at most 128 wide (the Qwen3.5 shapes), k_gdn_dec1 does both in one launch, bit for bit the same. */
#include <cuda_bf16.h>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"
#include "kernels/gdn_rec.cuh"

#define DEC_ROWS GDN_REC_ROWS
#define DEC_IN_THREADS 128
#define DEC_MAX_K 8      /* conv taps */
#ifndef DEC_IN_MANY /* steps of at least this many sequences take k_gdn_dec_in4 */
#define DEC_IN_MANY 32
#endif
#ifndef PLM_GDN_DEC_REGS /* k_gdn_dec's register cap: 72 (4 bytes spilled), seven blocks an SM; at 96 (five
                            blocks) it took 0.165-0.169 ms a layer at 256 sequences, 0.152-0.155 at 72 */
#define PLM_GDN_DEC_REGS 72
#endif

/* token t's sigmoid(b) and log decay neg_A softplus(a + dt_bias), the block's threads over the nv heads */
__device__ __forceinline__ void dec_gates(float *beta, float *g, const float *b, const float *a, const float *neg_A,
                                          const float *dt_bias, int64_t t, int64_t ldba, int nv) {
    for (int h = threadIdx.x; h < nv; h += DEC_IN_THREADS) {
        const float bv = b[t * ldba + h], av = a[t * ldba + h] + dt_bias[h];
        beta[t * nv + h] = plm_sigmoid_d(bv);
        g[t * nv + h] = neg_A[h] * (av > 20.0f ? av : log1pf(expf(av)));
    }
}

/* Head unit blockIdx.x of the 2 nk + nv (q heads, k heads, v heads), token blockIdx.y; a thread a channel
 * (two where the head is wider than the block). Every load of a channel (its taps, the tail's K-1 rows,
 * the token) is issued before any store: one trip to memory; the taps and the tail (written by the step
 * before) before the wait for the kernel launched before (programmatic launch: the projections that
 * wrote x, b and a). The conv's sums run in k_conv4's order. */
__global__ void __launch_bounds__(DEC_IN_THREADS)
    k_gdn_dec_in(float *q, float *k, float *v, float *beta, float *g, float *const *tail, const float *x,
                 const float *w, const float *b, const float *a, const float *neg_A, const float *dt_bias, int nk,
                 int nv, int dk, int dv, int K, int64_t ldx, int64_t ldba) {
    __shared__ float sh[32];
    const int u = blockIdx.x, tid = threadIdx.x, P = K - 1;
    const int64_t t = blockIdx.y;
    const int CD = 2 * nk * dk + nv * dv, qk = u < 2 * nk, n = qk ? dk : dv;
    const int c0 = qk ? u * dk : 2 * nk * dk + (u - 2 * nk) * dv;
    float *tl = tail[t];
    float wk[2][DEC_MAX_K], win[2][DEC_MAX_K], cur[2];
#pragma unroll
    for (int m = 0; m < 2; m++) {
        const int c = c0 + tid + m * DEC_IN_THREADS;
        if (tid + m * DEC_IN_THREADS >= n) continue;
#pragma unroll
        for (int j = 0; j < DEC_MAX_K; j++) {
            if (j < K) wk[m][j] = w[c * K + j];
            if (j < P) win[m][j] = __ldcg(tl + (int64_t)j * CD + c); /* mutable: L2, not L1 */
        }
    }
    plm_pdl_enter();
#pragma unroll
    for (int m = 0; m < 2; m++)
        if (tid + m * DEC_IN_THREADS < n) cur[m] = x[t * ldx + c0 + tid + m * DEC_IN_THREADS];
    float y[2] = {0.0f, 0.0f}, ss = 0.0f;
#pragma unroll
    for (int m = 0; m < 2; m++) {
        const int c = c0 + tid + m * DEC_IN_THREADS;
        if (tid + m * DEC_IN_THREADS >= n) continue;
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < DEC_MAX_K - 1; j++)
            if (j < P) acc += wk[m][j] * win[m][j];
#pragma unroll
        for (int j = 0; j < DEC_MAX_K; j++)
            if (j == P) acc += wk[m][j] * cur[m];
#pragma unroll
        for (int j = 0; j + 1 < DEC_MAX_K - 1; j++) /* the tail shifted by one row, the token last */
            if (j + 1 < P) tl[(int64_t)j * CD + c] = win[m][j + 1];
        if (P > 0) tl[(int64_t)(P - 1) * CD + c] = cur[m];
        y[m] = plm_silu_d(acc);
        ss += y[m] * y[m];
    }
    float r = 1.0f;
    if (qk) r = (u < nk ? 1.0f / sqrtf((float)dk) : 1.0f) / sqrtf(plm_block_sum(ss, sh) + 1e-6f);
    float *dst = u < nk ? q + (t * nk + u) * dk : qk ? k + (t * nk + u - nk) * dk : v + (t * nv + u - 2 * nk) * dv;
#pragma unroll
    for (int m = 0; m < 2; m++)
        if (tid + m * DEC_IN_THREADS < n) dst[tid + m * DEC_IN_THREADS] = qk ? y[m] * r : y[m];
    if (u == 0) dec_gates(beta, g, b, a, neg_A, dt_bias, t, ldba, nv);
}

/* k_gdn_dec_in for steps of many sequences with heads of at most DEC_IN_THREADS channels: a block takes
 * DEC_IN_TPB tokens of one head unit (blockIdx.y DEC_IN_TPB ..), a thread one channel of each. The taps
 * are loaded once for the block's tokens, and every token's loads are issued before any arithmetic
 * (a block a token left about six rounds of short blocks, each a chain of memory waits, at 256
 * sequences); sums and norms in k_gdn_dec_in's order. */
#define DEC_IN_TPB 4
__global__ void __launch_bounds__(DEC_IN_THREADS)
    k_gdn_dec_in4(float *q, float *k, float *v, float *beta, float *g, float *const *tail, const float *x,
                  const float *w, const float *b, const float *a, const float *neg_A, const float *dt_bias, int nk,
                  int nv, int dk, int dv, int K, int64_t ldx, int64_t ldba, int64_t T) {
    __shared__ float sh[DEC_IN_TPB][32];
    const int u = blockIdx.x, tid = threadIdx.x, lane = tid & 31, wi = tid >> 5, P = K - 1;
    const int64_t t0 = (int64_t)blockIdx.y * DEC_IN_TPB;
    const int nt = T - t0 < DEC_IN_TPB ? (int)(T - t0) : DEC_IN_TPB;
    const int CD = 2 * nk * dk + nv * dv, qk = u < 2 * nk, n = qk ? dk : dv;
    const int c = (qk ? u * dk : 2 * nk * dk + (u - 2 * nk) * dv) + tid;
    const bool on = tid < n;
    float wk[DEC_MAX_K], win[DEC_IN_TPB][DEC_MAX_K - 1], cur[DEC_IN_TPB];
    float *tl[DEC_IN_TPB];
#pragma unroll
    for (int i = 0; i < DEC_IN_TPB; i++) tl[i] = i < nt ? tail[t0 + i] : NULL;
    if (on) {
#pragma unroll
        for (int j = 0; j < DEC_MAX_K; j++)
            if (j < K) wk[j] = w[c * K + j];
#pragma unroll
        for (int i = 0; i < DEC_IN_TPB; i++)
#pragma unroll
            for (int j = 0; j < DEC_MAX_K - 1; j++)
                if (i < nt && j < P) win[i][j] = __ldcg(tl[i] + (int64_t)j * CD + c); /* mutable: L2, not L1 */
    }
    plm_pdl_enter();
#pragma unroll
    for (int i = 0; i < DEC_IN_TPB; i++)
        if (on && i < nt) cur[i] = x[(t0 + i) * ldx + c];
    float y[DEC_IN_TPB];
#pragma unroll
    for (int i = 0; i < DEC_IN_TPB; i++) {
        y[i] = 0.0f;
        if (!on || i >= nt) continue;
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < DEC_MAX_K - 1; j++)
            if (j < P) acc += wk[j] * win[i][j];
#pragma unroll
        for (int j = 0; j < DEC_MAX_K; j++)
            if (j == P) acc += wk[j] * cur[i];
#pragma unroll
        for (int j = 0; j + 1 < DEC_MAX_K - 1; j++) /* the tail shifted by one row, the token last */
            if (j + 1 < P) tl[i][(int64_t)j * CD + c] = win[i][j + 1];
        if (P > 0) tl[i][(int64_t)(P - 1) * CD + c] = cur[i];
        y[i] = plm_silu_d(acc);
    }
    float r[DEC_IN_TPB];
    if (qk) { /* plm_block_sum's order, the tokens' sums side by side */
#pragma unroll
        for (int i = 0; i < DEC_IN_TPB; i++) {
            const float s = plm_warp_sum(y[i] * y[i]);
            if (lane == 0) sh[i][wi] = s;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < DEC_IN_TPB; i++) {
            const float tot = plm_warp_sum(lane < (int)(blockDim.x >> 5) ? sh[i][lane] : 0.0f);
            r[i] = (u < nk ? 1.0f / sqrtf((float)dk) : 1.0f) / sqrtf(tot + 1e-6f);
        }
    }
#pragma unroll
    for (int i = 0; i < DEC_IN_TPB; i++) {
        if (!on || i >= nt) continue;
        const int64_t t = t0 + i;
        float *dst = u < nk ? q + (t * nk + u) * dk : qk ? k + (t * nk + u - nk) * dk : v + (t * nv + u - 2 * nk) * dv;
        dst[tid] = qk ? y[i] * r[i] : y[i];
    }
    if (u == 0)
        for (int i = 0; i < nt; i++) dec_gates(beta, g, b, a, neg_A, dt_bias, t0 + i, ldba, nv);
}

/* a normed output at index at: to y (FP32), or y NULL, to hi (+ lo) as BF16 hi + remainder */
__device__ __forceinline__ void dec_out(float *y, __nv_bfloat16 *hi, __nv_bfloat16 *lo, int64_t at, float out) {
    if (y) y[at] = out;
    else put_bf16(hi, lo, at, out);
}

/* 1 / rms of a head's dv outputs (val(c): output c) for the gated RMSNorm, in k_gdn_dec's order, which
 * k_gdn_dec1 keeps: threads tid < span (32 nw, whole warps) sum the squares of outputs tid, tid + span,
 * .., then each warp its threads', then the nw warps' sums in order. Every thread of the block calls it
 * (a barrier); sh: nw floats of shared memory. */
template <class F>
__device__ __forceinline__ float dec_inv_rms(F val, int tid, int lane, int w, int span, int nw, int dv, float eps,
                                             float *sh) {
    if (tid < span) {
        float ss = 0.0f;
        for (int c = tid; c < dv; c += span) {
            const float ov = val(c);
            ss += ov * ov;
        }
        ss = plm_warp_sum(ss);
        if (lane == 0) sh[w] = ss;
    }
    __syncthreads();
    float tot = 0.0f;
    for (int ww = 0; ww < nw; ww++) tot += sh[ww];
    return 1.0f / sqrtf(tot / (float)dv + eps);
}

/* (column tile blockIdx.x of 32, value head blockIdx.y, token blockIdx.z), k_gdn_rec's block: lane j
 * holds column 32 blockIdx.x + j of key rows 32 w .. 32 w + 31 of the state in registers, for the one
 * token; the state (written by the step before) is loaded before the wait for the kernel launched
 * before (programmatic launch: k_gdn_dec_in). Each block writes its 32 outputs to o; the head's last
 * block to finish (a counter per (token, head) that it sets back to zero for the next launch) then
 * applies the gated RMSNorm to the head's whole row, summing its squares in one fixed order whichever
 * block that is. Output: y (FP32) or hi (+ lo) BF16. */
__global__ void __maxnreg__(PLM_GDN_DEC_REGS)
    k_gdn_dec(float *y, __nv_bfloat16 *hi, __nv_bfloat16 *lo, float *o, unsigned *ctr, float *const *S, const float *q,
              const float *k, const float *v, const float *g, const float *beta, const float *z, const float *gw, int nk,
              int nv, int dk, int dv, float eps, int64_t ldz) {
    __shared__ float ks[PLM_CUDA_MAX_DK], qs[PLM_CUDA_MAX_DK], red[PLM_CUDA_MAX_DK / DEC_ROWS][32],
        red2[PLM_CUDA_MAX_DK / DEC_ROWS][32], sh[PLM_CUDA_MAX_DK / DEC_ROWS];
    __shared__ int last;
    const int h = blockIdx.y, lane = threadIdx.x, w = threadIdx.y, nw = blockDim.y;
    const int64_t t = blockIdx.z, th = t * nv + h;
    const int j = blockIdx.x * 32 + lane, kh = h / (nv / nk);
    const bool jv = j < dv;
    float *const Sp = S[t] + (size_t)h * dk * dv + (size_t)w * DEC_ROWS * dv + j;
    const int nr = jv ? (dk - w * DEC_ROWS < DEC_ROWS ? dk - w * DEC_ROWS : DEC_ROWS) : 0;
    float Sr[DEC_ROWS];
#pragma unroll
    for (int r = 0; r < DEC_ROWS; r++) Sr[r] = r < nr ? __ldcg(Sp + (size_t)r * dv) : 0.0f; /* mutable: L2 */
    plm_pdl_enter();
    const int tid = w * 32 + lane, span = nw * 32;
    const float acc = gdn_rec_token(Sr, ks, qs, red, red2, k + (t * nk + kh) * dk, q + (t * nk + kh) * dk, g + th,
                                    beta + th, v + th * dv + j, dk, jv);
    if (w == 0 && jv) o[th * dv + j] = acc;
#pragma unroll
    for (int r = 0; r < DEC_ROWS; r++)
        if (r < nr) Sp[(size_t)r * dv] = Sr[r];
    __syncthreads(); /* this block's outputs are written */
    if (tid == 0) {
        __threadfence();
        last = atomicAdd(ctr + th, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence(); /* every block's outputs of this head are visible */
    const float *orow = o + th * dv;
    const float inv = dec_inv_rms([&](int c) { return __ldcg(orow + c); }, tid, lane, w, span, nw, dv, eps, sh);
    for (int c = tid; c < dv; c += span)
        dec_out(y, hi, lo, th * dv + c, gw[c] * (__ldcg(orow + c) * inv) * plm_silu_d(z[t * ldz + (int64_t)h * dv + c]));
    if (tid == 0) ctr[th] = 0; /* for the next launch */
}

/* ---------------------------------------------------------------- one kernel: k_gdn_dec1 */
/* The whole mixer of a decode step in one launch where a value head has its own key head (nv == nk)
 * and the head is at most 128 wide (dv even): a block per (value head blockIdx.x, token blockIdx.y),
 * FUSED_THREADS threads. Warp w holds key rows 32 (w mod RG) .. + 31 of columns 64 (w / RG) + 2 lane
 * and + 1 of the state in registers (RG = dk / 32 rounded up, two columns a lane), loaded before the
 * programmatic wait with the taps, tails and norm weights; then the block does k_gdn_dec_in's work: thread i convolves
 * q channel i (i < dk), k channel i - KOFF (KOFF = dk rounded up to 32) and v channel i (i < dv), shifts
 * their tails, and takes the q and k norms over its warps in k_gdn_dec_in's order; thread 0 the gates.
 * Then the delta rule's step (gdn_rec_token's sums, column by column, in the same order) and the gated
 * RMSNorm of the head's outputs, which the block holds whole: no work arrays between two kernels, no
 * counter, no second pass over the outputs by a last block. The outputs are those of the two-kernel
 * form bit for bit (same sums in the same order). q, k, v, beta and g are written where not NULL
 * (the op harness reads them); the engine passes NULL. The state moves as float2: S[t] 8-byte aligned. */
#define FUSED_THREADS 256
#define FUSED_MAX_D 128

extern "C" int plm_gdn_dec_fused_fits(int nk, int nv, int dk, int dv, int K) {
#ifdef PLM_GDN_DEC_FUSED
    if (!PLM_GDN_DEC_FUSED) return 0;
#endif
    return nk > 0 && nv == nk && dk >= 1 && dk <= FUSED_MAX_D && dv >= 2 && dv <= FUSED_MAX_D && dv % 2 == 0 &&
           K >= 1 && K <= DEC_MAX_K;
}

/* channel c of token t: conv1d over the tail's P rows and the token (k_gdn_dec_in's order), the tail
 * shifted to take the token, SiLU */
template <int KM>
struct conv_ch {
    float wk[KM], win[KM - 1];
};

template <int KM>
__device__ __forceinline__ float conv_token(const conv_ch<KM> &ch, float cur, float *tl, int64_t CD, int c, int P) {
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < KM - 1; j++)
        if (j < P) acc += ch.wk[j] * ch.win[j];
#pragma unroll
    for (int j = 0; j < KM; j++)
        if (j == P) acc += ch.wk[j] * cur;
#pragma unroll
    for (int j = 0; j + 1 < KM - 1; j++) /* the tail shifted by one row, the token last */
        if (j + 1 < P) tl[(int64_t)j * CD + c] = ch.win[j + 1];
    if (P > 0) tl[(int64_t)(P - 1) * CD + c] = cur;
    return plm_silu_d(acc);
}

template <int KM> /* K <= KM taps */
__global__ void __launch_bounds__(FUSED_THREADS, 2)
    k_gdn_dec1(float *y, __nv_bfloat16 *hi, __nv_bfloat16 *lo, float *q, float *k, float *v, float *beta, float *g,
               float *const *tail, float *const *S, const float *x, const float *w, const float *b, const float *a,
               const float *neg_A, const float *dt_bias, const float *z, const float *gw, int nk, int nv, int dk,
               int dv, int K, float eps, int64_t ldx, int64_t ldba, int64_t ldz) {
    __shared__ float ks[FUSED_MAX_D], qs[FUSED_MAX_D], vs[FUSED_MAX_D], os[FUSED_MAX_D];
    __shared__ float red[FUSED_MAX_D / 32][FUSED_MAX_D], red2[FUSED_MAX_D / 32][FUSED_MAX_D];
    __shared__ float shq[FUSED_THREADS / 32], shk[FUSED_THREADS / 32], sho[FUSED_MAX_D / 32], gate[2];
    const int h = blockIdx.x, tid = threadIdx.x, lane = tid & 31, wi = tid >> 5, P = K - 1;
    const int64_t t = blockIdx.y, th = t * nv + h;
    const int RG = (dk + 31) >> 5, CG = (dv + 63) >> 6, rg = wi % RG, cg = wi / RG;
    const int j0 = 64 * cg + 2 * lane;
    const bool jv = cg < CG && j0 < dv; /* dv even: j0 + 1 < dv too */
    const int nr = dk - 32 * rg < 32 ? dk - 32 * rg : 32;
    float *const Sp = S[t] + (size_t)h * dk * dv + (size_t)(32 * rg) * dv + j0;
    float2 Sr[32];
#pragma unroll
    for (int r = 0; r < 32; r++) /* mutable: L2 */
        Sr[r] = jv && r < nr ? __ldcg(reinterpret_cast<const float2 *>(Sp + (size_t)r * dv)) : make_float2(0.0f, 0.0f);
    /* the block's channels: q (tid < dk) or k (KOFF <= tid < KOFF + dk) of key head h, and v (tid < dv) */
    const int CD = 2 * nk * dk + nv * dv, KOFF = 32 * RG;
    const bool on_q = tid < dk, on_k = tid >= KOFF && tid < KOFF + dk, on_v = tid < dv;
    const int c1 = on_q ? h * dk + tid : nk * dk + h * dk + (tid - KOFF), c2 = 2 * nk * dk + h * dv + tid;
    float *tl = tail[t];
    conv_ch<KM> A, B;
#pragma unroll
    for (int j = 0; j < KM; j++) {
        if (j < K && (on_q || on_k)) A.wk[j] = w[c1 * K + j];
        if (j < K && on_v) B.wk[j] = w[c2 * K + j];
        if (j < P && (on_q || on_k)) A.win[j] = __ldcg(tl + (int64_t)j * CD + c1); /* mutable: L2, not L1 */
        if (j < P && on_v) B.win[j] = __ldcg(tl + (int64_t)j * CD + c2);
    }
    const float gwc = on_v ? gw[tid] : 0.0f;
    plm_pdl_enter();
    const float cur1 = on_q || on_k ? x[t * ldx + c1] : 0.0f, cur2 = on_v ? x[t * ldx + c2] : 0.0f;
    /* output channel tid's gate, read with the token's inputs: not a wait for memory at the block's end */
    const float gz = on_v ? plm_silu_d(z[t * ldz + (int64_t)h * dv + tid]) : 0.0f;
    const float y1 = on_q || on_k ? conv_token(A, cur1, tl, CD, c1, P) : 0.0f;
    const float y2 = on_v ? conv_token(B, cur2, tl, CD, c2, P) : 0.0f;
    { /* the q and k norms: warp sums, then k_gdn_dec_in's sum of its warps' sums */
        const float sq = plm_warp_sum(on_q ? y1 * y1 : 0.0f), sk = plm_warp_sum(on_k ? y1 * y1 : 0.0f);
        if (lane == 0) shq[wi] = sq, shk[wi] = sk;
    }
    if (tid == 0) {
        const float bv = b[t * ldba + h], av = a[t * ldba + h] + dt_bias[h];
        gate[0] = plm_sigmoid_d(bv);
        gate[1] = neg_A[h] * (av > 20.0f ? av : log1pf(expf(av)));
        if (beta) beta[th] = gate[0];
        if (g) g[th] = gate[1];
    }
    __syncthreads();
    /* every lane of every warp in both sums (a shuffle waits for the whole warp) */
    const float tq = plm_warp_sum(lane < RG ? shq[lane] : 0.0f), tk = plm_warp_sum(lane < RG ? shk[RG + lane] : 0.0f);
    if (on_q) {
        const float qv = y1 * (1.0f / sqrtf((float)dk) / sqrtf(tq + 1e-6f));
        qs[tid] = qv;
        if (q) q[(t * nk + h) * dk + tid] = qv;
    } else if (tid < KOFF) {
        qs[tid] = 0.0f; /* rows past dk: zeros (the state's rows there are zeros too) */
    }
    if (on_k) {
        const float kv = y1 * (1.0f / sqrtf(tk + 1e-6f));
        ks[tid - KOFF] = kv;
        if (k) k[(t * nk + h) * dk + tid - KOFF] = kv;
    } else if (tid >= KOFF + dk && tid < 2 * KOFF) {
        ks[tid - KOFF] = 0.0f;
    }
    if (on_v) {
        vs[tid] = y2;
        if (v) v[th * dv + tid] = y2;
    }
    __syncthreads();
    /* the delta rule's step: gdn_rec_token's arithmetic on two columns */
    const float decay = expf(gate[1]), bt = gate[0];
    const bool sw = cg < CG;
    float p0 = 0.0f, p1 = 0.0f;
#pragma unroll
    for (int r = 0; r < 32; r++) {
        const float kr = ks[32 * rg + r];
        Sr[r].x *= decay, Sr[r].y *= decay;
        p0 += Sr[r].x * kr, p1 += Sr[r].y * kr;
    }
    if (sw) red[rg][j0] = p0, red[rg][j0 + 1] = p1;
    __syncthreads();
    float kv0 = 0.0f, kv1 = 0.0f;
    if (sw)
        for (int r = 0; r < RG; r++) kv0 += red[r][j0], kv1 += red[r][j0 + 1];
    float d0 = 0.0f, d1 = 0.0f;
    if (jv) d0 = (vs[j0] - kv0) * bt, d1 = (vs[j0 + 1] - kv1) * bt;
    float o0 = 0.0f, o1 = 0.0f;
#pragma unroll
    for (int r = 0; r < 32; r++) {
        const float kr = ks[32 * rg + r], qr = qs[32 * rg + r];
        Sr[r].x += kr * d0, Sr[r].y += kr * d1;
        o0 += Sr[r].x * qr, o1 += Sr[r].y * qr;
    }
#pragma unroll
    for (int r = 0; r < 32; r++)
        if (jv && r < nr) *reinterpret_cast<float2 *>(Sp + (size_t)r * dv) = Sr[r];
    if (sw) red2[rg][j0] = o0, red2[rg][j0 + 1] = o1;
    __syncthreads();
    if (rg == 0 && jv) {
        float a0 = 0.0f, a1 = 0.0f;
        for (int r = 0; r < RG; r++) a0 += red2[r][j0], a1 += red2[r][j0 + 1];
        os[j0] = a0, os[j0 + 1] = a1;
    }
    __syncthreads();
    /* the gated RMSNorm: k_gdn_dec's ending (dec_inv_rms), its threads (32 RG) summing in its order */
    const float inv = dec_inv_rms([&](int c) { return os[c]; }, tid, lane, wi, 32 * RG, RG, dv, eps, sho);
    if (on_v) dec_out(y, hi, lo, th * dv + tid, gwc * (os[tid] * inv) * gz);
}

extern "C" int plm_gdn_dec_fits(int64_t T, int nk, int nv, int dk, int dv, int K) {
    return T > 0 && T <= 65535 && nk > 0 && nv % nk == 0 && dk > 0 && dk <= PLM_CUDA_MAX_DK && dv > 0 &&
           dv <= 2 * DEC_IN_THREADS && K >= 1 && K <= DEC_MAX_K &&
           (T * nv <= PLM_GDN_DEC_CTRS || plm_gdn_dec_fused_fits(nk, nv, dk, dv, K)); /* one kernel: no counters */
}

extern "C" void plm_gdn_dec_cuda(float *y, void *hi, void *lo, float *o, unsigned *ctr, float *const *tails,
                                 float *const *S, const float *raw, const float *conv_w, float *q, float *k, float *v,
                                 float *beta, float *g, const float *b, const float *a, const float *neg_A,
                                 const float *dt_bias, const float *z, const float *gnorm, int64_t T, int nk, int nv,
                                 int dk, int dv, int K, float eps, int64_t ld, void *stream) {
    if (!plm_gdn_dec_fits(T, nk, nv, dk, dv, K)) return;
    const int64_t CD = 2 * (int64_t)nk * dk + (int64_t)nv * dv;
    if (plm_gdn_dec_fused_fits(nk, nv, dk, dv, K)) {
        const dim3 grid((unsigned)nv, (unsigned)T);
        const int64_t ldx = ld ? ld : CD, ldba = ld ? ld : nv, ldz = ld ? ld : (int64_t)nv * dv;
        if (K <= 4)
            k_gdn_dec1<4><<<grid, FUSED_THREADS, 0, PLM_STREAM(stream)>>>(
                y, (__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo, q, k, v, beta, g, tails, S, raw, conv_w, b, a, neg_A,
                dt_bias, z, gnorm, nk, nv, dk, dv, K, eps, ldx, ldba, ldz);
        else
            k_gdn_dec1<DEC_MAX_K><<<grid, FUSED_THREADS, 0, PLM_STREAM(stream)>>>(
                y, (__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo, q, k, v, beta, g, tails, S, raw, conv_w, b, a, neg_A,
                dt_bias, z, gnorm, nk, nv, dk, dv, K, eps, ldx, ldba, ldz);
        return;
    }
    plm_gdn_dec2_cuda(y, hi, lo, o, ctr, tails, S, raw, conv_w, q, k, v, beta, g, b, a, neg_A, dt_bias, z, gnorm, T, nk,
                      nv, dk, dv, K, eps, ld, stream);
}

extern "C" void plm_gdn_dec2_cuda(float *y, void *hi, void *lo, float *o, unsigned *ctr, float *const *tails,
                                  float *const *S, const float *raw, const float *conv_w, float *q, float *k, float *v,
                                  float *beta, float *g, const float *b, const float *a, const float *neg_A,
                                  const float *dt_bias, const float *z, const float *gnorm, int64_t T, int nk, int nv,
                                  int dk, int dv, int K, float eps, int64_t ld, void *stream) {
    if (!plm_gdn_dec_fits(T, nk, nv, dk, dv, K)) return;
    const int64_t CD = 2 * (int64_t)nk * dk + (int64_t)nv * dv;
    if (T >= DEC_IN_MANY && dk <= DEC_IN_THREADS && dv <= DEC_IN_THREADS)
        k_gdn_dec_in4<<<dim3((unsigned)(2 * nk + nv), (unsigned)((T + DEC_IN_TPB - 1) / DEC_IN_TPB)), DEC_IN_THREADS, 0,
                        PLM_STREAM(stream)>>>(q, k, v, beta, g, tails, raw, conv_w, b, a, neg_A, dt_bias, nk, nv, dk, dv,
                                              K, ld ? ld : CD, ld ? ld : nv, T);
    else
        k_gdn_dec_in<<<dim3((unsigned)(2 * nk + nv), (unsigned)T), DEC_IN_THREADS, 0, PLM_STREAM(stream)>>>(
            q, k, v, beta, g, tails, raw, conv_w, b, a, neg_A, dt_bias, nk, nv, dk, dv, K, ld ? ld : CD, ld ? ld : nv);
    const dim3 grid((unsigned)((dv + 31) / 32), (unsigned)nv, (unsigned)T),
        block(32, (unsigned)((dk + DEC_ROWS - 1) / DEC_ROWS));
    const int64_t ldz = ld ? ld : (int64_t)nv * dv;
    k_gdn_dec<<<grid, block, 0, PLM_STREAM(stream)>>>(y, (__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo, o, ctr, S, q, k, v, g,
                                                      beta, z, gnorm, nk, nv, dk, dv, eps, ldz);
}
