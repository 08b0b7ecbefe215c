/* Small row-major GEMM for the token mixers: register blocks of 6 (or 4) rows x 16 columns (two 8-lane
 * vectors), then 8-column and scalar tails. The k loop runs in order for every element, so the
 * result does not depend on how callers split the work. */
#pragma GCC optimize("fp-contract=fast")
#include "kernels/simd.h"

static inline __attribute__((always_inline)) void gemm_rows(float *C, int64_t ldc, const float *A, int64_t lda,
                                                            const float *B, int64_t ldb, const int MR, int N,
                                                            int K, float alpha, int acc) {
    int j = 0;
    for (; j + 16 <= N; j += 16) {
        plm_v8 c0[6] = {{0}}, c1[6] = {{0}};
        for (int p = 0; p < K; p++) {
            const plm_v8 b0 = plm_v8_load(B + p * ldb + j), b1 = plm_v8_load(B + p * ldb + j + 8);
#pragma GCC unroll 6
            for (int r = 0; r < MR; r++) {
                const float a = A[r * lda + p];
                c0[r] += a * b0;
                c1[r] += a * b1;
            }
        }
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            float *cr = C + r * ldc + j;
            plm_v8 o0 = alpha * c0[r], o1 = alpha * c1[r];
            if (acc) {
                o0 += plm_v8_load(cr);
                o1 += plm_v8_load(cr + 8);
            }
            plm_v8_store(cr, o0);
            plm_v8_store(cr + 8, o1);
        }
    }
    for (; j + 8 <= N; j += 8) {
        plm_v8 c0[6] = {{0}};
        for (int p = 0; p < K; p++) {
            const plm_v8 b0 = plm_v8_load(B + p * ldb + j);
#pragma GCC unroll 6
            for (int r = 0; r < MR; r++) c0[r] += A[r * lda + p] * b0;
        }
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            float *cr = C + r * ldc + j;
            plm_v8 o0 = alpha * c0[r];
            if (acc) o0 += plm_v8_load(cr);
            plm_v8_store(cr, o0);
        }
    }
    for (; j < N; j++)
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            float s = 0.0f;
            for (int p = 0; p < K; p++) s += A[r * lda + p] * B[p * ldb + j];
            C[r * ldc + j] = (acc ? C[r * ldc + j] : 0.0f) + alpha * s;
        }
}

void plm_gemm_f32(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int M, int N,
                  int K, float alpha, int acc) {
    int i = 0;
    for (; i + 6 <= M; i += 6) gemm_rows(C + i * ldc, ldc, A + i * lda, lda, B, ldb, 6, N, K, alpha, acc);
    for (; i + 4 <= M; i += 4) gemm_rows(C + i * ldc, ldc, A + i * lda, lda, B, ldb, 4, N, K, alpha, acc);
    for (; i < M; i++) gemm_rows(C + i * ldc, ldc, A + i * lda, lda, B, ldb, 1, N, K, alpha, acc);
}
