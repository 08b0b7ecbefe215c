/* Internal helpers for the fast kernels: an 8-lane float vector (GCC vector extension; the
 * compiler picks the instructions for -march) with unaligned load/store, and a small row-major
 * GEMM used inside the token mixers (chunked delta rule, tiled attention). Nothing here
 * allocates or threads: callers split the work themselves. */
#ifndef PLM_KERNELS_SIMD_H
#define PLM_KERNELS_SIMD_H

#include <stdint.h>
#include <string.h>

typedef float plm_v8 __attribute__((vector_size(32)));

static inline plm_v8 plm_v8_load(const float *p) {
    plm_v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void plm_v8_store(float *p, plm_v8 v) { memcpy(p, &v, sizeof v); }

/* C[M, N] = (acc ? C : 0) + alpha * A[M, K] . B[K, N]; all row-major with leading dimensions.
 * Deterministic: every element is summed in the same order whatever the caller's threading. */
void plm_gemm_f32(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int M, int N,
                  int K, float alpha, int acc);

/* Vectorisable exp for the row ops (relative error ~2 ulp over the float range; exp(-inf) = 0,
 * exp(NaN) = NaN, overflow -> inf). */
static inline float plm_expf_fast(float x) {
    const float hi = 88.3762626647949f, lo = -103.972f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    float n = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* scale by 2^n in two steps so that n down to -150 stays exact (denormals) */
    int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;
    int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float y = p * s1 * s2;
    y = x > hi ? __builtin_inff() : y;
    return x != x ? x : y;
}

#endif
