/* Internal helpers for the fast kernels: an 8-lane float vector (GCC vector extension; the
 * compiler picks the instructions for -march) with unaligned load/store, and a small row-major
 * GEMM used inside the token mixers (chunked delta rule, tiled attention). Nothing here
 * allocates or threads: callers split the work themselves. */
#ifndef PLM_KERNELS_SIMD_H
#define PLM_KERNELS_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float plm_v8 __attribute__((vector_size(32)));
typedef int32_t plm_v8i __attribute__((vector_size(32)));

static inline plm_v8 plm_v8_set1(float a) { return (plm_v8){a, a, a, a, a, a, a, a}; }
/* m ? a : b per lane (m from a vector comparison: all ones or zero) */
static inline plm_v8 plm_v8_sel(plm_v8i m, plm_v8 a, plm_v8 b) {
    return (plm_v8)(((plm_v8i)a & m) | ((plm_v8i)b & ~m));
}

static inline plm_v8 plm_v8_load(const float *p) {
    plm_v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void plm_v8_store(float *p, plm_v8 v) { memcpy(p, &v, sizeof v); }
/* a * b + c rounded once, always (fp-contract may or may not fuse a written a * b + c, and may decide
   differently in two instantiations of one loop: kernels whose bits must not depend on the shape
   use this) */
static inline plm_v8 plm_v8_fma(plm_v8 a, plm_v8 b, plm_v8 c) {
#if defined(__FMA__)
    return __builtin_ia32_vfmaddps256(a, b, c);
#else
    plm_v8 r;
    for (int i = 0; i < 8; i++) r[i] = fmaf(a[i], b[i], c[i]);
    return r;
#endif
}

/* C[M, N] = (acc ? C : 0) + alpha * A[M, K] . B[K, N]; all row-major with leading dimensions.
 * Deterministic: every element is summed in the same order whatever the caller's threading. */
void plm_gemm_f32(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int M, int N,
                  int K, float alpha, int acc);

/* Vectorisable exp for the row ops (relative error ~2 ulp over the float range; exp(-inf) = 0,
 * exp(NaN) = NaN, overflow -> inf). */
static inline float plm_expf_fast(float x) {
    const float hi = 88.3762626647949f, lo = -110.0f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    xc = xc == xc ? xc : 0.0f; /* NaN: computed as exp(0) (a NaN -> int conversion is undefined), NaN returned */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
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
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float y = p * s1 * s2;
    y = x > hi ? __builtin_inff() : y;
    return x != x ? x : y;
}

/* the same exp on 8 lanes (plm_expf_fast's steps; no branches, so it vectorises) */
static inline plm_v8 plm_v8_exp(plm_v8 x) {
    const plm_v8 hi = plm_v8_set1(88.3762626647949f), lo = plm_v8_set1(-110.0f);
    plm_v8 xc = plm_v8_sel(x > hi, hi, x);
    xc = plm_v8_sel(xc < lo, lo, xc);
    xc = plm_v8_sel(xc != xc, plm_v8_set1(0.0f), xc); /* NaN lanes: as exp(0), NaN returned */
    const plm_v8 magic = plm_v8_set1(12582912.0f); /* 1.5 * 2^23: rounds to nearest */
    plm_v8 n = (xc * 1.44269504088896341f + magic) - magic;
    plm_v8 r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    plm_v8 p = plm_v8_set1(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    plm_v8i ni = __builtin_convertvector(n, plm_v8i), n1 = ni / 2, n2 = ni - n1;
    plm_v8 s1 = (plm_v8)((n1 + 127) << 23), s2 = (plm_v8)((n2 + 127) << 23);
    plm_v8 y = p * s1 * s2;
    y = plm_v8_sel(x > hi, plm_v8_set1(__builtin_inff()), y);
    return plm_v8_sel(x != x, x, y);
}

/* silu(x) = x / (1 + exp(-x)), 8 lanes and scalar */
static inline plm_v8 plm_v8_silu(plm_v8 x) { return x / (1.0f + plm_v8_exp(-x)); }
static inline float plm_silu_fast(float x) { return x / (1.0f + plm_expf_fast(-x)); }

#endif
