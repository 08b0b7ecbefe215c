/* y[T, rows] = x[T, cols] . W^T for BF16 weights with BF16 activations ("single pass",
 * plm_ctx_params.bf16_single_pass): each x row is rounded once to BF16 as torch casts it
 * (plm_bf16_round_row), then every product of two BF16 values is formed exactly in F32 and summed in
 * F32, as transformers runs a BF16 model. The semantics are plm_matmul_bf16sp_ref's; the variants
 * differ only in the order of the F32 sum.
 *   - plm_matmul_bf16sp_dpbf16: AVX-512 BF16. vdpbf16ps adds two BF16 products to each of 16 F32
 *     lanes, so one instruction does 32 multiply-adds (an F32 FMA on the same register: 16). The
 *     rounded rows are kept in a buffer padded with zeros to a multiple of 32 columns; the weights'
 *     last partial block is a masked load (zeros). Register blocks of up to 6 x rows by 4 weight rows
 *     (8 weight rows for one x row: decode), weight rows split statically over the threads in
 *     L2-sized blocks as the other direct kernels, the next block prefetched meanwhile. Every
 *     output element is the same sequence of vdpbf16ps over its blocks of 32 in order, then one
 *     fixed lane reduction, whatever the block shape, T, the row's place or the thread count:
 *     batch-invariant as it stands.
 *     vdpbf16ps reads BF16 subnormals as zero and flushes subnormal results (DAZ / FTZ); products
 *     below 2^-126 are lost, nothing else.
 *   - plm_matmul_bf16sp_avx2: the rounded activations widened back to F32, then the F32-activation
 *     kernels (plm_matmul_fast; plm_matmul_invariant for _inv): the same products, exact in F32, the
 *     same F32 sums. Runs on any CPU (named for the AVX2 machines it is chosen on). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PLM_X86 1
#endif

#include "kernels/fast.h"
#include "kernels/kernels.h"

/* x rounded to BF16 then widened back to F32 (exactly representable): xr [T, C] */
static float *round_widen(const float *x, int64_t T, int64_t C, int n_threads) {
    float *xr = malloc((size_t)(T * C + 1) * sizeof *xr);
    if (!xr) return NULL;
#pragma omp parallel for num_threads(plm_team(n_threads, 16.0 * (double)(T * C))) schedule(static)
    for (int64_t i = 0; i < T * C; i++) xr[i] = plm_bf16_to_f32(plm_f32_to_bf16(x[i]));
    return xr;
}

static void widened(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads, int invariant) {
    void (*base)(float *, const float *, int64_t, const plm_mat *, int) =
        invariant ? plm_matmul_invariant : plm_matmul_fast;
    if (W->dt != PLM_DT_BF16 || T <= 0 || W->rows <= 0 || W->cols <= 0) {
        base(y, x, T, W, n_threads);
        return;
    }
    float *xr = round_widen(x, T, W->cols, n_threads);
    if (!xr) {
        plm_matmul_bf16sp_ref(y, x, T, W, n_threads);
        return;
    }
    base(y, xr, T, W, n_threads);
    free(xr);
}

void plm_matmul_bf16sp_avx2(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    widened(y, x, T, W, n_threads, 0);
}

void plm_matmul_bf16sp_avx2_inv(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    widened(y, x, T, W, n_threads, 1);
}

#ifdef PLM_X86
#define BF16_TARGET "avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16"

/* ~128 KiB of weights per L2 block */
enum { BLOCK_BYTES = 128 * 1024 };

/* x rows rounded to BF16: [T, Cp] with Cp = C rounded up to 32, zero padded. Integer rounding as
   plm_f32_to_bf16 (not vcvtne2ps2bf16, which reads subnormals as zero). */
__attribute__((target(BF16_TARGET))) static void round_rows(uint16_t *xb, const float *x, int64_t T, int64_t C,
                                                            int64_t Cp, int n_threads) {
#pragma omp parallel for num_threads(plm_team(n_threads, 16.0 * (double)(T * C))) schedule(static)
    for (int64_t t = 0; t < T; t++) {
        const float *xs = x + t * C;
        uint16_t *d = xb + t * Cp;
        const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff), qnan = _mm512_set1_epi32(0x400000);
        int64_t c = 0;
        for (; c + 16 <= C; c += 16) {
            const __m512 v = _mm512_loadu_ps(xs + c);
            const __m512i u = _mm512_castps_si512(v);
            const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
            r = _mm512_mask_or_epi32(r, nan, u, qnan); /* NaN: its top half with the quiet bit */
            _mm256_storeu_si256((__m256i *)(d + c), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
        }
        for (; c < C; c++) d[c] = plm_f32_to_bf16(xs[c]);
        for (; c < Cp; c++) d[c] = 0;
    }
}

/* One register block: NT (<= 6) x rows by NR (<= 8, NT * NR <= 24) weight rows. nb full blocks of 32
   columns, then a masked last block when C is not a multiple of 32 (tail: its mask). pf: the same
   rows of the next L2 block (or NULL), of which x row group pg of ng prefetches every ng-th line, so
   the next block streams in evenly while this one is computed from L2. */
__attribute__((target(BF16_TARGET), always_inline)) static inline void micro(float *y, int64_t ldy,
                                                                             const uint16_t *xb, int64_t Cp,
                                                                             const uint16_t *w, int64_t C,
                                                                             int64_t nb, __mmask32 tail,
                                                                             const uint16_t *pf, int pg, int ng,
                                                                             const int NT, const int NR) {
    __m512 acc[6][8];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) acc[t][r] = _mm512_setzero_ps();
    int cnt = pg;
    for (int64_t b = 0; b < nb; b++) {
        if (pf) { /* x row group pg of ng prefetches every ng-th line of the next rows */
            if (cnt == 0) {
#pragma GCC unroll 8
                for (int r = 0; r < NR; r++) _mm_prefetch((const char *)(pf + r * C + b * 32), _MM_HINT_T1);
                cnt = ng;
            }
            cnt--;
        }
        __m512i wv[8];
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            wv[r] = _mm512_loadu_si512((const void *)(w + r * C + b * 32));
            __asm__("" : "+v"(wv[r])); /* keep the weights in registers (not reloaded per x row) */
        }
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const __m512i xv = _mm512_loadu_si512((const void *)(xb + t * Cp + b * 32));
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) acc[t][r] = _mm512_dpbf16_ps(acc[t][r], (__m512bh)xv, (__m512bh)wv[r]);
        }
    }
    if (tail) {
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            const __m512i wv = _mm512_maskz_loadu_epi16(tail, (const void *)(w + r * C + nb * 32));
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const __m512i xv = _mm512_loadu_si512((const void *)(xb + t * Cp + nb * 32));
                acc[t][r] = _mm512_dpbf16_ps(acc[t][r], (__m512bh)xv, (__m512bh)wv);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[t][r]);
}

#define MICRO_NT(NR)                                                                                        \
    switch (nt) {                                                                                           \
    case 6: micro(yt + r, R, xt, Cp, w + r * C, C, nb, tail, pf, g, ng, 6, NR); break;                      \
    case 5: micro(yt + r, R, xt, Cp, w + r * C, C, nb, tail, pf, g, ng, 5, NR); break;                      \
    case 4: micro(yt + r, R, xt, Cp, w + r * C, C, nb, tail, pf, g, ng, 4, NR); break;                      \
    case 3: micro(yt + r, R, xt, Cp, w + r * C, C, nb, tail, pf, g, ng, 3, NR); break;                      \
    case 2: micro(yt + r, R, xt, Cp, w + r * C, C, nb, tail, pf, g, ng, 2, NR); break;                      \
    default: micro(yt + r, R, xt, Cp, w + r * C, C, nb, tail, pf, g, ng, 1, NR); break;                     \
    }

/* register block of the GEMM: NTB x rows by NRB weight rows (24 accumulators, 4 weight vectors and one
   x vector of the 32 registers); measured against 8 x 3, 4 x 6 and 4 x 4 on the model's shapes */
enum { NTB = 6, NRB = 4 };
/* weight rows [r0, r1) against all T x rows */
__attribute__((target(BF16_TARGET), noinline)) static void block(float *y, const uint16_t *xb, int64_t T,
                                                                 int64_t Cp, const uint16_t *w, int64_t R,
                                                                 int64_t C, int64_t r0, int64_t r1, int64_t rb) {
    const int64_t nb = C / 32;
    const __mmask32 tail = (__mmask32)((1ull << (C % 32)) - 1);
    if (T == 1) { /* decode: 8 weight rows per block */
        const uint16_t *xt = xb;
        float *yt = y;
        const int nt = 1, g = 0, ng = 1;
        int64_t r = r0;
        const uint16_t *pf = NULL; /* one pass over the rows: the hardware prefetcher keeps up (measured) */
        for (; r + 8 <= r1; r += 8) MICRO_NT(8)
        for (; r < r1; r++) MICRO_NT(1)
        return;
    }
    const int ng = (int)((T + NTB - 1) / NTB);
    for (int64_t t0 = 0; t0 < T; t0 += NTB) {
        const int nt = (int)(T - t0 < NTB ? T - t0 : NTB), g = (int)(t0 / NTB);
        const uint16_t *xt = xb + t0 * Cp;
        float *yt = y + t0 * R;
        int64_t r = r0;
        for (; r + NRB <= r1; r += NRB) {
            const uint16_t *pf = r + rb + NRB <= R ? w + (r + rb) * C : NULL; /* the next block */
            MICRO_NT(NRB)
        }
        for (; r < r1; r++) {
            const uint16_t *pf = NULL;
            MICRO_NT(1)
        }
    }
}

void plm_matmul_bf16sp_dpbf16(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols, Cp = (C + 31) / 32 * 32;
    if (W->dt != PLM_DT_BF16 || T <= 0 || R <= 0 || C <= 0) {
        plm_matmul_fast(y, x, T, W, n_threads);
        return;
    }
    uint16_t *xb = aligned_alloc(64, (size_t)(T * Cp) * sizeof *xb); /* rows of Cp: every x load aligned */
    if (!xb) {
        plm_matmul_bf16sp_ref(y, x, T, W, n_threads);
        return;
    }
    round_rows(xb, x, T, C, Cp, n_threads);
    const int nth = plm_team(n_threads, (double)T * R * C);
    int64_t RB = T == 1 ? ((R + nth - 1) / nth + 7) / 8 * 8 : BLOCK_BYTES / (2 * C) / NRB * NRB;
    if (RB < 8) RB = 8;
    const int64_t n_blocks = (R + RB - 1) / RB;
    const uint16_t *w = (const uint16_t *)W->data;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t b = 0; b < n_blocks; b++) {
        const int64_t r0 = b * RB, r1 = r0 + RB < R ? r0 + RB : R;
        block(y, xb, T, Cp, w, R, C, r0, r1, RB);
    }
    free(xb);
}
#else
void plm_matmul_bf16sp_dpbf16(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    plm_matmul_bf16sp_avx2(y, x, T, W, n_threads);
}
#endif
