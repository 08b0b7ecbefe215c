/* y[T, rows] = x[T, cols] . W^T, fast paths.
 *   - F32 weights: OpenBLAS sgemm in place; T <= PLM_DIRECT_MAX_T: the direct F32 GEMM (matmul_f32.c).
 *   - F16 weights: the direct GEMM of matmul_f32.c (F16 widened in registers), every T.
 *   - BF16 weights, T > PLM_DIRECT_MAX_T: the weights stay BF16 in memory; the weight rows are
 *     cut into panels of at most PLM_PANEL_FLOATS (sized to stay in L3; OpenBLAS packs from them), split statically over the OpenMP
 *     threads; each thread converts a panel to F32 into its own buffer and runs a single-threaded
 *     sgemm of all T rows against it. OpenBLAS is kept at one thread: its pthreads and the OpenMP
 *     team spinning on the same cores cost more than the GEMM itself.
 *   - PLM_GEMV_MAX_T < T <= PLM_DIRECT_MAX_T: the direct BF16 GEMM of matmul_bf16.c.
 *   - T <= PLM_GEMV_MAX_T (decode): a direct GEMV that converts 8 weights at a time in registers
 *     and dots them with each x row, threaded over weight rows (static partition).
 * plm_matmul_fast_avx512 (the kernel table's choice where the CPU has AVX-512) is the same but for
 * BF16 weights at PLM_GEMV_MAX_T < T <= PLM_DIRECT_MAX_T, which take the 512-bit direct GEMM of
 * matmul_bf16_avx512.c. */
#pragma GCC optimize("fp-contract=fast")
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fast.h"
#include "kernels/simd.h"

#ifndef PLM_PANEL_FLOATS
#define PLM_PANEL_FLOATS (1024 * 1024) /* 4 MiB of f32 per panel: one per thread stays in L3 */
#endif

typedef uint16_t plm_u16x8 __attribute__((vector_size(16)));
typedef uint32_t plm_u32x8 __attribute__((vector_size(32)));

static inline plm_v8 bf16x8(const uint16_t *p) {
    plm_u16x8 h;
    memcpy(&h, p, sizeof h);
    plm_u32x8 u = __builtin_convertvector(h, plm_u32x8) << 16;
    plm_v8 f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void convert_row(float *dst, const plm_mat *W, int64_t r) {
    if (W->dt != PLM_DT_BF16) {
        plm_mat_row(dst, W, r);
        return;
    }
    const int64_t C = W->cols;
    const uint16_t *s = (const uint16_t *)W->data + r * C;
    int64_t i = 0;
    for (; i + 8 <= C; i += 8) plm_v8_store(dst + i, bf16x8(s + i));
    for (; i < C; i++) dst[i] = plm_bf16_to_f32(plm_ld_u16(s, i));
}

static inline float hsum(plm_v8 v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* one weight row against NT rows of x (NT a constant after inlining) */
static inline __attribute__((always_inline)) void gemv_row(float *y, const float *x, const uint16_t *wr, int64_t C,
                                                           int64_t R, int64_t r, const int NT) {
    plm_v8 a0[4] = {{0}}, a1[4] = {{0}};
    int64_t i = 0;
    for (; i + 16 <= C; i += 16) {
        /* the row two ahead, at the pace of this one: the hardware prefetchers alone leave the stream
           short of the machine's rate (as in the int8 GEMV) */
        if (NT == 1) __builtin_prefetch(wr + 2 * C + i, 0, 3);
        const plm_v8 w0 = bf16x8(wr + i), w1 = bf16x8(wr + i + 8);
        for (int t = 0; t < NT; t++) {
            a0[t] += w0 * plm_v8_load(x + t * C + i);
            a1[t] += w1 * plm_v8_load(x + t * C + i + 8);
        }
    }
    for (int t = 0; t < NT; t++) {
        float s = hsum(a0[t] + a1[t]);
        for (int64_t e = i; e < C; e++) s += plm_bf16_to_f32(plm_ld_u16(wr, e)) * x[t * C + e];
        y[t * R + r] = s;
    }
}

void plm_matmul_gemv(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols;
    if (W->dt != PLM_DT_BF16 || T > 4) {
        plm_matmul_fast(y, x, T, W, n_threads);
        return;
    }
    const uint16_t *base = (const uint16_t *)W->data;
#pragma omp parallel for num_threads(plm_team(n_threads, (double)T * R * C)) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const uint16_t *wr = base + r * C;
        switch (T) {
        case 1: gemv_row(y, x, wr, C, R, r, 1); break;
        case 2: gemv_row(y, x, wr, C, R, r, 2); break;
        case 3: gemv_row(y, x, wr, C, R, r, 3); break;
        default: gemv_row(y, x, wr, C, R, r, 4); break;
        }
    }
}

void plm_matmul_fast(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols;
    if (T == 0 || R == 0) return;
    if (W->dt == PLM_DT_Q8) { /* callers go through plm_kmatmul; this keeps a direct call correct */
        plm_matmul_q8_ref(y, x, T, W, n_threads);
        return;
    }
    if (C == 0) {
        memset(y, 0, (size_t)(T * R) * sizeof(float));
        return;
    }
    if (W->dt == PLM_DT_BF16 && T <= PLM_GEMV_MAX_T) {
        plm_matmul_gemv(y, x, T, W, n_threads);
        return;
    }
    if (W->dt == PLM_DT_BF16 && T <= PLM_DIRECT_MAX_T) {
        plm_matmul_bf16(y, x, T, W, n_threads);
        return;
    }
    /* F16 weights: the direct kernel (widened in registers) at every T, in the invariant kernel's row
       groups: converting panels to F32 for sgemm cost 2.4x the score time and 13x the decode time
       (docs/performance.md). F32 weights: the direct kernel for decode-sized steps, where sgemm's
       small-M paths are slow (2x at T = 1); OpenBLAS's tuned sgemm above that */
    if (W->dt == PLM_DT_F16) {
        plm_matmul_invariant(y, x, T, W, n_threads);
        return;
    }
    if (W->dt == PLM_DT_F32 && T <= PLM_DIRECT_MAX_T) {
        plm_matmul_f32(y, x, T, W, n_threads);
        return;
    }
    /* panels of at most PLM_PANEL_FLOATS, as many per thread for every thread, rows a multiple of 16 */
    const int nth = plm_team(n_threads, (double)T * R * C);
    int64_t pmax = PLM_PANEL_FLOATS / C;
    pmax = pmax < 16 ? 16 : pmax;
    int64_t n_panels = (R + (int64_t)nth * pmax - 1) / ((int64_t)nth * pmax) * nth;
    int64_t pr = (R + n_panels - 1) / n_panels;
    pr = (pr + 15) & ~(int64_t)15;
    if (pr > R) pr = R;
    n_panels = (R + pr - 1) / pr;
    const size_t psz = (((size_t)(pr * C) * sizeof(float) + 63) / 64) * 64;
    /* each thread converts its own panels (F32 weights in place when aligned) and runs a single-threaded
       sgemm on them: OpenBLAS's own threads would fight the OpenMP team for the cores (the context
       holds OpenBLAS at one thread) */
    const int in_place = W->dt == PLM_DT_F32 && ((uintptr_t)W->data % sizeof(float)) == 0;
    float *panels = in_place ? NULL : aligned_alloc(64, psz * (size_t)nth);
    if (!in_place && !panels) {
        plm_matmul_ref(y, x, T, W, n_threads);
        return;
    }

#pragma omp parallel num_threads(nth)
    {
        float *panel = in_place ? NULL : (float *)((char *)panels + psz * (size_t)omp_get_thread_num());
#pragma omp for schedule(static)
        for (int64_t pi = 0; pi < n_panels; pi++) {
            const int64_t r0 = pi * pr, nr = R - r0 < pr ? R - r0 : pr;
            const float *pw = panel;
            if (in_place) pw = (const float *)W->data + r0 * C;
            else
                for (int64_t r = 0; r < nr; r++) convert_row(panel + r * C, W, r0 + r);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)nr, (int)C, 1.0f, x, (int)C, pw,
                        (int)C, 0.0f, y + r0, (int)R);
        }
    }
    free(panels);
}

void plm_matmul_fast_avx512(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    if (W->dt == PLM_DT_BF16 && T > PLM_GEMV_MAX_T && T <= PLM_DIRECT_MAX_T)
        plm_matmul_bf16_avx512(y, x, T, W, n_threads);
    else plm_matmul_fast(y, x, T, W, n_threads);
}

#ifndef PLM_INVARIANT_TB
#define PLM_INVARIANT_TB 64
#endif
void plm_matmul_invariant(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int direct = W->dt == PLM_DT_BF16 || W->dt == PLM_DT_F32 || W->dt == PLM_DT_F16;
    if (!direct || T <= 0 || W->rows <= 0 || W->cols <= 0) {
        plm_matmul_fast(y, x, T, W, n_threads);
        return;
    }
    /* rows of x in groups of PLM_INVARIANT_TB: each group's x stays in cache while the weights stream
       past it once (how the rows are grouped does not change any row's arithmetic) */
    for (int64_t t0 = 0; t0 < T; t0 += PLM_INVARIANT_TB) {
        const int64_t nt = T - t0 < PLM_INVARIANT_TB ? T - t0 : PLM_INVARIANT_TB;
        if (W->dt == PLM_DT_BF16) plm_matmul_bf16(y + t0 * W->rows, x + t0 * W->cols, nt, W, n_threads);
        else plm_matmul_f32(y + t0 * W->rows, x + t0 * W->cols, nt, W, n_threads);
    }
}
