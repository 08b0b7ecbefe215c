/* y[T, rows] = x[T, cols] . W^T, the reference: plain loops converting W chunk by chunk. The fast
 * variants (BF16 GEMV, direct BF16 GEMM, threaded converted panels + sgemm) are in matmul_fast.c and
 * matmul_bf16.c. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

void plm_matmul_ref(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    enum { CHUNK = 512 };
    const int64_t R = W->rows, C = W->cols;
    float buf[CHUNK];
    if (W->dt == PLM_DT_Q8) {
        plm_matmul_q8_ref(y, x, T, W, n_threads);
        return;
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = 0; r < R; r++) y[t * R + r] = 0.0f;
    for (int64_t r = 0; r < R; r++) {
        for (int64_t c0 = 0; c0 < C; c0 += CHUNK) {
            int64_t nc = C - c0 < CHUNK ? C - c0 : CHUNK;
            plm_mat sub = {NULL, W->dt, 1, nc, NULL};
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

void plm_bf16_round_row(uint16_t *xb, const float *x, int64_t C) {
    for (int64_t c = 0; c < C; c++) xb[c] = plm_f32_to_bf16(x[c]);
}

void plm_matmul_bf16sp_ref(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols;
    if (W->dt != PLM_DT_BF16) {
        plm_matmul_ref(y, x, T, W, n_threads);
        return;
    }
    uint16_t *xb = malloc((size_t)(C + 1) * sizeof *xb);
    if (!xb) { /* no memory: NaN rather than a wrong number */
        for (int64_t i = 0; i < T * R; i++) y[i] = NAN;
        return;
    }
    for (int64_t t = 0; t < T; t++) {
        plm_bf16_round_row(xb, x + t * C, C);
        for (int64_t r = 0; r < R; r++) {
            float acc = 0.0f;
            for (int64_t c = 0; c < C; c++) {
                const float p = plm_bf16_to_f32(xb[c]) * plm_bf16_to_f32(plm_ld_u16(W->data, r * C + c));
                acc += p;
            }
            y[t * R + r] = acc;
        }
    }
    free(xb);
}
