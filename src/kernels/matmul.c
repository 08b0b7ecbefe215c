/* y[T, rows] = x[T, cols] . W^T. Reference: plain loops converting W row by row. Fast: OpenBLAS
 * sgemm; BF16/F16 weights are converted one panel of rows at a time into a small buffer (the model
 * stays BF16 in memory), F32 weights are used in place. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

void plm_matmul_ref(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    enum { CHUNK = 512 };
    const int64_t R = W->rows, C = W->cols;
    float buf[CHUNK];
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = 0; r < R; r++) y[t * R + r] = 0.0f;
    for (int64_t r = 0; r < R; r++) {
        for (int64_t c0 = 0; c0 < C; c0 += CHUNK) {
            int64_t nc = C - c0 < CHUNK ? C - c0 : CHUNK;
            plm_mat sub = {NULL, W->dt, 1, nc};
            sub.data = (const char *)W->data + (size_t)(r * C + c0) * plm_dtype_size(W->dt);
            plm_mat_row(buf, &sub, 0);
            for (int64_t t = 0; t < T; t++) {
                const float *xr = x + t * C + c0;
                float acc = 0.0f;
                for (int64_t i = 0; i < nc; i++) acc += xr[i] * buf[i];
                y[t * R + r] += acc;
            }
        }
    }
}

#define PANEL_ROWS 256

void plm_matmul_blas(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols;
    if (T == 0 || R == 0) return;
    if (C == 0) {
        memset(y, 0, (size_t)(T * R) * sizeof(float));
        return;
    }
    if (W->dt == PLM_DT_F32 && ((uintptr_t)W->data % sizeof(float)) == 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)R, (int)C, 1.0f, x, (int)C,
                    (const float *)W->data, (int)C, 0.0f, y, (int)R);
        return;
    }
    float *panel = malloc((size_t)(PANEL_ROWS * C) * sizeof(float));
    if (!panel) {
        plm_matmul_ref(y, x, T, W, n_threads);
        return;
    }
    for (int64_t r0 = 0; r0 < R; r0 += PANEL_ROWS) {
        int64_t nr = R - r0 < PANEL_ROWS ? R - r0 : PANEL_ROWS;
        for (int64_t r = 0; r < nr; r++) plm_mat_row(panel + r * C, W, r0 + r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)nr, (int)C, 1.0f, x, (int)C, panel,
                    (int)C, 0.0f, y + r0, (int)R);
    }
    free(panel);
}
