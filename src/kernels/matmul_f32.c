/* y[T, rows] = x[T, cols] . W^T for F32 and F16 weights without OpenBLAS: the batch-invariant GEMM
 * (plm_ctx_params.batch_invariant). OpenBLAS sgemm picks its kernels and blockings from the matrix
 * sizes (a GEMV for one row, small-matrix and edge kernels), so a row's sum can change with T; here
 * every output element is the same sequence of explicit FMAs (plm_v8_fma) whatever the block it
 * falls in: 8-lane accumulators over the row's columns 8 at a time in order, one fixed lane reduction,
 * then the last C mod 8 columns one fmaf each. F16 weights are widened in registers (F16C), 8 at a
 * time. Register blocks of up to 4 x rows by 3 weight rows (1 x row by 4 weight rows for decode);
 * weight rows are split statically over the threads in L2-sized blocks as in matmul_bf16.c, and
 * every x row group passes over a block while it is in L2. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fast.h"
#include "kernels/simd.h"

/* ~96 KiB of weights per L2 block */
enum { BLOCK_BYTES = 96 * 1024 };

typedef short plm_i16x8 __attribute__((vector_size(16)));

/* 8 weights from column i of a row, as F32 */
static inline __attribute__((always_inline)) plm_v8 wload(const void *w, int64_t i, const int f16) {
    if (!f16) return plm_v8_load((const float *)w + i);
#if defined(__F16C__)
    plm_i16x8 h;
    memcpy(&h, (const uint16_t *)w + i, sizeof h);
    return __builtin_ia32_vcvtph2ps256(h);
#else
    plm_v8 v;
    for (int j = 0; j < 8; j++) v[j] = plm_f16_to_f32(plm_ld_u16(w, i + j));
    return v;
#endif
}

static inline float wscalar(const void *w, int64_t i, const int f16) {
    if (f16) return plm_f16_to_f32(plm_ld_u16(w, i));
    float v;
    memcpy(&v, (const char *)w + 4 * i, sizeof v);
    return v;
}

static inline float hsum8(plm_v8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

/* NT (<= 4) x rows by NR (<= 4) weight rows starting at w (row stride C elements of es bytes) */
static inline __attribute__((always_inline)) void micro(float *y, int64_t ldy, const float *x, int64_t C,
                                                        const char *w, const int f16, const int NT, const int NR) {
    const int64_t es = f16 ? 2 : 4, C8 = C & ~(int64_t)7;
    plm_v8 acc[4][4] = {{{0}}};
    for (int64_t i = 0; i < C8; i += 8) {
        plm_v8 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) wv[r] = wload(w + r * C * es, i, f16);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const plm_v8 xv = plm_v8_load(x + t * C + i);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[t][r] = plm_v8_fma(xv, wv[r], acc[t][r]);
        }
    }
    for (int t = 0; t < NT; t++)
        for (int r = 0; r < NR; r++) {
            float s = hsum8(acc[t][r]);
            for (int64_t e = C8; e < C; e++) s = fmaf(x[t * C + e], wscalar(w + r * C * es, e, f16), s);
            y[t * ldy + r] = s;
        }
}

#define MICRO_NT(NR)                                                                                        \
    switch (nt) {                                                                                           \
    case 4: micro(yt + r, R, xt, C, w + r * C * es, f16, 4, NR); break;                                     \
    case 3: micro(yt + r, R, xt, C, w + r * C * es, f16, 3, NR); break;                                     \
    case 2: micro(yt + r, R, xt, C, w + r * C * es, f16, 2, NR); break;                                     \
    default: micro(yt + r, R, xt, C, w + r * C * es, f16, 1, NR); break;                                    \
    }

/* weight rows [r0, r1) against all T x rows */
static inline __attribute__((always_inline)) void block(float *y, const float *x, int64_t T, int64_t R, int64_t C,
                                                        const char *w, int64_t r0, int64_t r1, const int f16) {
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
    for (int64_t t0 = 0; t0 < T; t0 += 4) {
        const int nt = (int)(T - t0 < 4 ? T - t0 : 4);
        const float *xt = x + t0 * C;
        float *yt = y + t0 * R;
        int64_t r = r0;
        for (; r + 3 <= r1; r += 3) MICRO_NT(3)
        for (; r < r1; r++) MICRO_NT(1)
    }
}

static __attribute__((noinline)) void block_f32(float *y, const float *x, int64_t T, int64_t R, int64_t C,
                                                const char *w, int64_t r0, int64_t r1) {
    block(y, x, T, R, C, w, r0, r1, 0);
}

static __attribute__((noinline)) void block_f16(float *y, const float *x, int64_t T, int64_t R, int64_t C,
                                                const char *w, int64_t r0, int64_t r1) {
    block(y, x, T, R, C, w, r0, r1, 1);
}

void plm_matmul_f32(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols;
    if ((W->dt != PLM_DT_F32 && W->dt != PLM_DT_F16) || T <= 0 || R <= 0 || C <= 0) {
        plm_matmul_fast(y, x, T, W, n_threads);
        return;
    }
    const int f16 = W->dt == PLM_DT_F16;
    const int nth = plm_team(n_threads, (double)T * R * C);
    int64_t RB = T == 1 ? ((R + nth - 1) / nth + 3) / 4 * 4 : BLOCK_BYTES / ((f16 ? 2 : 4) * C) / 6 * 6;
    if (RB < 6) RB = 6;
    const int64_t n_blocks = (R + RB - 1) / RB;
    const char *w = (const char *)W->data;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t b = 0; b < n_blocks; b++) {
        const int64_t r0 = b * RB, r1 = r0 + RB < R ? r0 + RB : R;
        if (f16) block_f16(y, x, T, R, C, w, r0, r1);
        else block_f32(y, x, T, R, C, w, r0, r1);
    }
}
