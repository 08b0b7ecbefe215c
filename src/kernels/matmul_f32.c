/* y[T, rows] = x[T, cols] . W^T for F32 and F16 weights without OpenBLAS: the batch-invariant GEMM
 * (plm_ctx_params.batch_invariant). OpenBLAS sgemm picks its kernels and blockings from the matrix
 * sizes (a GEMV for one row, small-matrix and edge kernels), so a row's sum can change with T; here
 * every output element is the same sequence of explicit FMAs whatever the block it falls in: VL-lane
 * accumulators (16 with AVX-512, else 8) over the row's columns VL at a time in order, one fixed lane
 * reduction, then the last C mod VL columns one fmaf each. F16 weights are widened in registers
 * (vcvtph2ps), VL at a time. Register blocks of up to NTB x rows by NRB weight rows (one x row by 4
 * weight rows for decode); weight rows are split statically over the threads in L2-sized blocks as in
 * matmul_bf16.c, and every x row group passes over a block while it is in L2. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fast.h"
#include "kernels/simd.h"

/* ~96 KiB of weights per L2 block */
enum { BLOCK_BYTES = 96 * 1024 };

/* The vector the accumulators use: 16 lanes with AVX-512 (32 registers: register blocks of 6 x rows by
   4 weight rows), else the 8-lane plm_v8 (16 registers: 4 by 3). */
#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 fvec;
enum { VL = 16, NTB = 6, NRB = 4 };
static inline fvec vzero(void) { return _mm512_setzero_ps(); }
static inline fvec vload(const float *p) { return _mm512_loadu_ps(p); }
static inline fvec vload_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline fvec vfma(fvec a, fvec b, fvec c) { return _mm512_fmadd_ps(a, b, c); }
/* a fixed tree over the lanes (not _mm512_reduce_add_ps, whose order is the compiler's to choose) */
static inline float vsum(fvec v) {
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); /* AVX-512 F only */
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    float l[4];
    _mm_storeu_ps(l, q);
    return (l[0] + l[2]) + (l[1] + l[3]);
}
#else
typedef plm_v8 fvec;
enum { VL = 8, NTB = 4, NRB = 3 };
typedef short plm_i16x8 __attribute__((vector_size(16)));
static inline fvec vzero(void) { return plm_v8_set1(0.0f); }
static inline fvec vload(const float *p) { return plm_v8_load(p); }
static inline fvec vload_f16(const uint16_t *p) {
#if defined(__F16C__)
    plm_i16x8 h;
    memcpy(&h, p, sizeof h);
    return __builtin_ia32_vcvtph2ps256(h);
#else
    plm_v8 v;
    for (int j = 0; j < 8; j++) v[j] = plm_f16_to_f32(plm_ld_u16(p, j));
    return v;
#endif
}
static inline fvec vfma(fvec a, fvec b, fvec c) { return plm_v8_fma(a, b, c); }
static inline float vsum(fvec v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }
#endif

/* VL weights from column i of a row, as F32 */
static inline __attribute__((always_inline)) fvec wload(const void *w, int64_t i, const int f16) {
    return f16 ? vload_f16((const uint16_t *)w + i) : vload((const float *)w + i);
}

static inline float wscalar(const void *w, int64_t i, const int f16) {
    if (f16) return plm_f16_to_f32(plm_ld_u16(w, i));
    float v;
    memcpy(&v, (const char *)w + 4 * i, sizeof v);
    return v;
}

/* NT (<= NTB) x rows by NR (<= NRB, or 4 for one x row) weight rows starting at w (row stride C
   elements of es bytes) */
static inline __attribute__((always_inline)) void micro(float *y, int64_t ldy, const float *x, int64_t ldx,
                                                        int64_t C, const char *w, const int f16, const int NT,
                                                        const int NR) {
    const int64_t es = f16 ? 2 : 4, CV = C / VL * VL;
    fvec acc[NTB][4];
#pragma GCC unroll 6
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) acc[t][r] = vzero();
    for (int64_t i = 0; i < CV; i += VL) {
        fvec wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) wv[r] = wload(w + r * C * es, i, f16);
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) {
            const fvec xv = vload(x + t * ldx + i);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[t][r] = vfma(xv, wv[r], acc[t][r]);
        }
    }
    for (int t = 0; t < NT; t++)
        for (int r = 0; r < NR; r++) {
            float s = vsum(acc[t][r]);
            for (int64_t e = CV; e < C; e++) s = fmaf(x[t * ldx + e], wscalar(w + r * C * es, e, f16), s);
            y[t * ldy + r] = s;
        }
}

#define MICRO_NT(NR)                                                                                        \
    switch (nt) {                                                                                           \
    case 6: micro(yt + r, R, xt, ldx, C, w + r * C * es, f16, NTB >= 6 ? 6 : 1, NR); break;                      \
    case 5: micro(yt + r, R, xt, ldx, C, w + r * C * es, f16, NTB >= 5 ? 5 : 1, NR); break;                      \
    case 4: micro(yt + r, R, xt, ldx, C, w + r * C * es, f16, 4, NR); break;                                     \
    case 3: micro(yt + r, R, xt, ldx, C, w + r * C * es, f16, 3, NR); break;                                     \
    case 2: micro(yt + r, R, xt, ldx, C, w + r * C * es, f16, 2, NR); break;                                     \
    default: micro(yt + r, R, xt, ldx, C, w + r * C * es, f16, 1, NR); break;                                    \
    }

/* weight rows [r0, r1) against all T x rows */
static inline __attribute__((always_inline)) void block(float *y, const float *x, int64_t ldx, int64_t T, int64_t R,
                                                        int64_t C, const char *w, int64_t r0, int64_t r1,
                                                        const int f16) {
    const int64_t es = f16 ? 2 : 4;
    if (T == 1) {
        const float *xt = x;
        float *yt = y;
        const int nt = 1;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) MICRO_NT(4)
        for (; r < r1; r++) MICRO_NT(1)
        return;
    }
    for (int64_t t0 = 0; t0 < T; t0 += NTB) {
        const int nt = (int)(T - t0 < NTB ? T - t0 : NTB);
        const float *xt = x + t0 * ldx;
        float *yt = y + t0 * R;
        int64_t r = r0;
        for (; r + NRB <= r1; r += NRB) MICRO_NT(NRB)
        for (; r < r1; r++) MICRO_NT(1)
    }
}

static __attribute__((noinline)) void block_f32(float *y, const float *x, int64_t ldx, int64_t T, int64_t R,
                                                int64_t C, const char *w, int64_t r0, int64_t r1) {
    block(y, x, ldx, T, R, C, w, r0, r1, 0);
}

static __attribute__((noinline)) void block_f16(float *y, const float *x, int64_t ldx, int64_t T, int64_t R,
                                                int64_t C, const char *w, int64_t r0, int64_t r1) {
    block(y, x, ldx, T, R, C, w, r0, r1, 1);
}

void plm_matmul_f32(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols;
    if ((W->dt != PLM_DT_F32 && W->dt != PLM_DT_F16) || T <= 0 || R <= 0 || C <= 0) {
        plm_matmul_fast(y, x, T, W, n_threads);
        return;
    }
    const int f16 = W->dt == PLM_DT_F16;
    const int nth = plm_team(n_threads, (double)T * R * C);
    int64_t RB = T == 1 ? ((R + nth - 1) / nth + 3) / 4 * 4 : BLOCK_BYTES / ((f16 ? 2 : 4) * C) / 12 * 12;
    if (RB < 12) RB = 12;
    const int64_t n_blocks = (R + RB - 1) / RB;
    const char *w = (const char *)W->data;
    /* x rows are read many times each: a copy with every row on a 64-byte boundary when they are not
       (misaligned vector loads cost far more here than the copy) */
    const int64_t ldx = (C + 15) / 16 * 16;
    float *xa = NULL;
    if ((uintptr_t)x % 64 || ldx != C) {
        xa = aligned_alloc(64, (size_t)(T * ldx) * sizeof *xa);
        if (xa)
            for (int64_t t = 0; t < T; t++) memcpy(xa + t * ldx, x + t * C, (size_t)C * sizeof *xa);
    }
    const float *xr = xa ? xa : x;
    const int64_t ld = xa ? ldx : C;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t b = 0; b < n_blocks; b++) {
        const int64_t r0 = b * RB, r1 = r0 + RB < R ? r0 + RB : R;
        if (f16) block_f16(y, xr, ld, T, R, C, w, r0, r1);
        else block_f32(y, xr, ld, T, R, C, w, r0, r1);
    }
    free(xa);
}
