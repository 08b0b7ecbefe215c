/* y[T, rows] = x[T, cols] . W^T straight from BF16 weights, no F32 copy: a register block of 4 x
 * rows by 2 or 3 weight rows keeps 8 or 12 dot products in 8-lane accumulators while the weights
 * are widened to F32 in registers (16 at a time, as even and odd halves, x permuted to match), then
 * each accumulator is summed across lanes in a fixed order. Weight rows are split statically over
 * the threads (contiguous ranges) and walked in blocks of ~96 KiB so that a block stays in L2 while
 * every x row group passes over it, and the next block is prefetched meanwhile. Every output element
 * is the same sequence of explicit FMAs (plm_v8_fma) whatever the block shape it falls in, so a row's
 * result depends neither on T nor on the row's place (batch invariance rests on this). */
#pragma GCC optimize("fp-contract=fast")
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fast.h"
#include "kernels/simd.h"

/* ~96 KiB of weights per L2 block (a multiple of 6 rows), so that the block being computed and
   the next one being prefetched fit L2 together; x rows up to XREG_MAX_C floats use the
   x-in-register block (4 of them stay in L1 next to the weight rows) */
enum { BLOCK_BYTES = 96 * 1024, XREG_MAX_C = 1536 };

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

/* One register block: NT (<= 4) x rows by NR (<= 3) weight rows. Narrow rows (xreg): the NR <= 2
   weight rows are widened first and each x vector is loaded once into a register for NR FMAs;
   wide rows (x no longer fits L1 next to the weights): one weight row at a time with x as memory
   operands (12 accumulators + 2 widened vectors + the mask fill the 16 AVX2 registers). Either
   way every accumulator gets the same FMAs in the same order. pf: the rows RB further on (the
   next L2 block; 4 rows further on when T <= 4, where each block is read only once) or NULL;
   x row group pg of ng touches every ng-th of their cache lines, so the next block streams in
   evenly while this one is computed from L2.
   xp: x rows permuted per 16-block (C16 = C rounded down to 16); x: the original rows for the tail */
static inline __attribute__((always_inline)) void micro(float *y, int64_t ldy, const float *xp, const float *x,
                                                        int64_t C, const uint16_t *w, const int NT, const int NR,
                                                        const int xreg, const uint16_t *pf, int pg, int ng) {
    plm_v8 acc[4][3] = {{{0}}};
    const int64_t C16 = C & ~(int64_t)15;
    int cnt = pg;
    for (int64_t i = 0; i < C16; i += 16) {
        if (pf && !(i & 31)) { /* one 64-byte line per weight row every 32 columns */
            if (cnt == 0) {
                for (int r = 0; r < NR; r++) __builtin_prefetch(pf + r * C + i, 0, 3);
                cnt = ng;
            }
            cnt--;
        }
        if (xreg) {
            plm_v8 we[2], wo[2];
#pragma GCC unroll 2
            for (int r = 0; r < NR; r++) widen16(w + r * C + i, &we[r], &wo[r]);
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                plm_v8 xe = plm_v8_load(xp + t * C + i), xo = plm_v8_load(xp + t * C + i + 8);
#if defined(__AVX__) /* keep x in a register rather than a memory operand per FMA (needs 256-bit registers) */
                __asm__("" : "+x"(xe));
                __asm__("" : "+x"(xo));
#endif
#pragma GCC unroll 2
                for (int r = 0; r < NR; r++) acc[t][r] = plm_v8_fma(xe, we[r], acc[t][r]);
#pragma GCC unroll 2
                for (int r = 0; r < NR; r++) acc[t][r] = plm_v8_fma(xo, wo[r], acc[t][r]);
            }
        } else {
#pragma GCC unroll 3
            for (int r = 0; r < NR; r++) {
                plm_v8 we, wo;
                widen16(w + r * C + i, &we, &wo);
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++) {
                    acc[t][r] = plm_v8_fma(plm_v8_load(xp + t * C + i), we, acc[t][r]);
                    acc[t][r] = plm_v8_fma(plm_v8_load(xp + t * C + i + 8), wo, acc[t][r]);
                }
            }
        }
    }
    for (int t = 0; t < NT; t++)
        for (int r = 0; r < NR; r++) {
            float s = hsum8(acc[t][r]);
            for (int64_t e = C16; e < C; e++) s = fmaf(x[t * C + e], plm_bf16_to_f32(plm_ld_u16(w, r * C + e)), s);
            y[t * ldy + r] = s;
        }
}

#define MICRO_NT(NR, XREG)                                                                             \
    switch (nt) {                                                                                      \
    case 4: micro(yt + r, R, xpt, xt, C, W + r * C, 4, NR, XREG, pf, g, ng); break;                    \
    case 3: micro(yt + r, R, xpt, xt, C, W + r * C, 3, NR, XREG, pf, g, ng); break;                    \
    case 2: micro(yt + r, R, xpt, xt, C, W + r * C, 2, NR, XREG, pf, g, ng); break;                    \
    default: micro(yt + r, R, xpt, xt, C, W + r * C, 1, NR, XREG, pf, g, ng); break;                   \
    }

/* rows [r0, r1) of W against all T x rows, 4 x rows at a time, NR weight rows at a time (3 for
   wide rows: x as memory operands; 2 otherwise: x in registers); rb: the block size (for pf) */
static inline __attribute__((always_inline)) void block_nr(float *y, const float *xp, const float *x, int64_t T,
                                                           int64_t R, int64_t C, const uint16_t *W, int64_t r0,
                                                           int64_t r1, int64_t rb, const int NR) {
    const int ng = (int)((T + 3) / 4);
    const int64_t pd = ng > 1 ? rb : 4; /* prefetch distance in rows */
    for (int64_t t0 = 0; t0 < T; t0 += 4) {
        const int nt = (int)(T - t0 < 4 ? T - t0 : 4), g = (int)(t0 / 4);
        const float *xt = x + t0 * C, *xpt = xp + t0 * C;
        float *yt = y + t0 * R;
        int64_t r = r0;
        for (; r + NR <= r1; r += NR) {
            const uint16_t *pf = r + pd + NR <= R ? W + (r + pd) * C : NULL;
            MICRO_NT(NR, NR == 2)
        }
        for (; r < r1; r++) {
            const uint16_t *pf = NULL;
            MICRO_NT(1, 0)
        }
    }
}

static __attribute__((noinline)) void block_wide(float *y, const float *xp, const float *x, int64_t T, int64_t R,
                                                 int64_t C, const uint16_t *W, int64_t r0, int64_t r1, int64_t rb) {
    block_nr(y, xp, x, T, R, C, W, r0, r1, rb, 3);
}

static __attribute__((noinline)) void block_narrow(float *y, const float *xp, const float *x, int64_t T, int64_t R,
                                                   int64_t C, const uint16_t *W, int64_t r0, int64_t r1, int64_t rb) {
    block_nr(y, xp, x, T, R, C, W, r0, r1, rb, 2);
}

void plm_matmul_bf16(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols;
    if (W->dt != PLM_DT_BF16 || T == 0 || R == 0 || C == 0) {
        plm_matmul_ref(y, x, T, W, n_threads);
        return;
    }
    const uint16_t *w = (const uint16_t *)W->data;
    const int nth = plm_team(n_threads, (double)T * R * C);
    float *xp = aligned_alloc(64, ((size_t)(T * C) * sizeof(float) + 63) / 64 * 64); /* aligned x loads */
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
    int64_t RB = BLOCK_BYTES / (2 * C) / 6 * 6;
    if (RB < 6) RB = 6;
    const int64_t n_blocks = (R + RB - 1) / RB;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t b = 0; b < n_blocks; b++) {
        const int64_t r0 = b * RB, r1 = r0 + RB < R ? r0 + RB : R;
        if (C > XREG_MAX_C)
            block_wide(y, xp, x, T, R, C, w, r0, r1, RB);
        else
            block_narrow(y, xp, x, T, R, C, w, r0, r1, RB);
    }
    free(xp);
}
