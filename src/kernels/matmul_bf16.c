/* y[T, rows] = x[T, cols] . W^T straight from BF16 weights, no F32 copy: a register block of 4 x
 * rows by 3 weight rows keeps 12 dot products in 8-lane accumulators while the weights are
 * widened to F32 in registers (16 at a time, as even and odd halves, x permuted to match), then
 * each accumulator is summed across lanes in a fixed order. Weight rows are split statically over the threads (contiguous ranges) and walked
 * in blocks of RB rows so that a block stays in L2 while every x row group passes over it. */
#pragma GCC optimize("fp-contract=fast")
#include <stdlib.h>
#include <string.h>

#include "kernels/fast.h"
#include "kernels/simd.h"

enum { RB = 48 }; /* weight rows per L2 block (multiple of 3) */

/* 16 BF16 weights as 8 u32 pairs: the low halves (even elements) and high halves (odd elements)
   become two F32 vectors with one shift / one mask; x rows are stored with each 16-block split
   into its even and odd elements to match. */
static inline void widen16(const uint16_t *p, plm_v8 *even, plm_v8 *odd) {
    plm_v8i u;
    memcpy(&u, p, sizeof u);
    *even = (plm_v8)(u << 16);
    *odd = (plm_v8)(u & (plm_v8i){-65536, -65536, -65536, -65536, -65536, -65536, -65536, -65536});
}

static inline float hsum8(plm_v8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

/* xp: x rows permuted per 16-block (C16 = C rounded down to 16); x: the original rows for the tail */
static inline __attribute__((always_inline)) void micro(float *y, int64_t ldy, const float *xp, const float *x,
                                                        int64_t C, const uint16_t *w, const int NT, const int NR) {
    plm_v8 acc[4][3] = {{{0}}};
    const int64_t C16 = C & ~(int64_t)15;
    for (int64_t i = 0; i < C16; i += 16) {
        /* one weight row at a time: 12 accumulators + 2 widened vectors + the mask fit the 16
           registers of AVX2 (x is read as memory operands) */
#pragma GCC unroll 3
        for (int r = 0; r < NR; r++) {
            plm_v8 we, wo;
            widen16(w + r * C + i, &we, &wo);
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                acc[t][r] += plm_v8_load(xp + t * C + i) * we;
                acc[t][r] += plm_v8_load(xp + t * C + i + 8) * wo;
            }
        }
    }
    for (int t = 0; t < NT; t++)
        for (int r = 0; r < NR; r++) {
            float s = hsum8(acc[t][r]);
            for (int64_t e = C16; e < C; e++) s += x[t * C + e] * plm_bf16_to_f32(w[r * C + e]);
            y[t * ldy + r] = s;
        }
}

static void block(float *y, const float *xp, const float *x, int64_t T, int64_t R, int64_t C, const uint16_t *W,
                  int64_t r0, int64_t r1) {
    for (int64_t t0 = 0; t0 < T; t0 += 4) {
        const int nt = (int)(T - t0 < 4 ? T - t0 : 4);
        const float *xt = x + t0 * C, *xpt = xp + t0 * C;
        float *yt = y + t0 * R;
        int64_t r = r0;
        for (; r + 3 <= r1; r += 3) {
            switch (nt) {
            case 4: micro(yt + r, R, xpt, xt, C, W + r * C, 4, 3); break;
            case 3: micro(yt + r, R, xpt, xt, C, W + r * C, 3, 3); break;
            case 2: micro(yt + r, R, xpt, xt, C, W + r * C, 2, 3); break;
            default: micro(yt + r, R, xpt, xt, C, W + r * C, 1, 3); break;
            }
        }
        for (; r < r1; r++) {
            switch (nt) {
            case 4: micro(yt + r, R, xpt, xt, C, W + r * C, 4, 1); break;
            case 3: micro(yt + r, R, xpt, xt, C, W + r * C, 3, 1); break;
            case 2: micro(yt + r, R, xpt, xt, C, W + r * C, 2, 1); break;
            default: micro(yt + r, R, xpt, xt, C, W + r * C, 1, 1); break;
            }
        }
    }
}

void plm_matmul_bf16(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols;
    if (W->dt != PLM_DT_BF16 || T == 0 || R == 0 || C == 0) {
        plm_matmul_ref(y, x, T, W, n_threads);
        return;
    }
    const uint16_t *w = (const uint16_t *)W->data;
    const int nth = plm_team(n_threads, (double)T * R * C);
    float *xp = malloc((size_t)(T * C) * sizeof(float));
    if (!xp) {
        plm_matmul_ref(y, x, T, W, n_threads);
        return;
    }
    for (int64_t t = 0; t < T; t++) /* even / odd split of every 16-block */
        for (int64_t i = 0; i + 16 <= C; i += 16)
            for (int j = 0; j < 8; j++) {
                xp[t * C + i + j] = x[t * C + i + 2 * j];
                xp[t * C + i + 8 + j] = x[t * C + i + 2 * j + 1];
            }
    const int64_t n_blocks = (R + RB - 1) / RB;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t b = 0; b < n_blocks; b++) {
        const int64_t r0 = b * RB, r1 = r0 + RB < R ? r0 + RB : R;
        block(y, xp, x, T, R, C, w, r0, r1);
    }
    free(xp);
}
