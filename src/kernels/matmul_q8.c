/* y[T, rows] = x[T, cols] . W^T with int8 weights (PLM_DT_Q8: blocks of 32 along cols, one fp16
 * scale per block, as llama.cpp's Q8_0). The activations are quantized on the fly to int8 with one
 * fp32 scale per group of PLM_Q8_XG = 4 values: the 4 products one int32 lane of vpdpbusd /
 * vpmaddwd sums, which every kernel converts to float and scales lane by lane anyway, so the finer
 * groups cost nothing over llama.cpp's one scale per 32 and round x about 1.6x more finely (measured:
 * 0.53x the KL on the 0.8B shape). Each group's product is an exact int32 dot product, scaled by
 * d_w * d_x and summed in float. The x2 variants (plm_matmul_q8x2_*) quantize the activations in two
 * int8 levels: the first as above, the second the first's rounding error in steps of d/256, so that
 * x is held to about 15 bits; a group's product is 256 * (q1 . w) + (q2 . w), still exact in int32,
 * scaled by d_w * d/256. Same weights, twice the integer dot products.
 *   - plm_matmul_q8_ref: the scalar reference (the oracle of the kernel harness).
 *   - plm_matmul_q8_avx2: AVX2, 32 bytes a block: vpsignb / vpabsb make the unsigned x signed
 *     operand pair vpmaddubsw needs (|w| <= 127 and |x| <= 127 never saturate its int16 sums),
 *     vpmaddwd sums pairs into int32 lanes.
 *   - plm_matmul_q8_vnni: AVX-512 VNNI, two blocks (64 bytes) a vpdpbusd: x is stored as
 *     unsigned x + 128 and the accumulator starts at -128 * sum(w) (one more vpdpbusd per weight
 *     pair of blocks, shared by every x row), so each lane holds the exact signed dot product. One x
 *     row (decode) takes a 256-bit form instead (gemv256: |w| and sign(x, w) into vpdpbusd).
 * Both fast kernels walk the weight rows in L2-sized blocks, split statically over the OpenMP
 * threads (contiguous ranges, as the BF16 kernels), with register blocks of up to 4 x rows by
 * 2 weight rows (4 weight rows for a single x row: decode, which prefetches the rows two groups
 * ahead). Every output element is computed by one thread in a fixed order: results do not depend
 * on the thread count. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PLM_X86 1
#endif

#include "kernels/fast.h"
#include "kernels/kernels.h"

/* ---------------------------------------------------------------- quantization */
/* x[C] in groups of G values up to whole blocks of 32 (C rounded up; the padding is zero): q, and
   per group d = max|x| / 127 (fp16-rounded into d16 when given, q computed with the rounded scale),
   q = round-to-nearest-even(x / d) in [-127, 127]; all-zero groups d = 0, non-finite ones NaN */
static void quant_groups(int8_t *q, uint16_t *d16, float *df, const float *x, int64_t C, int G) {
    const int64_t ng = PLM_Q8_STRIDE(C) / G;
    for (int64_t g = 0; g < ng; g++) {
        const int64_t c0 = g * G, n = C - c0 < G ? (C - c0 > 0 ? C - c0 : 0) : G;
        float amax = 0.0f;
        int finite = 1;
        for (int64_t i = 0; i < n; i++) {
            const float a = fabsf(x[c0 + i]);
            finite &= a <= FLT_MAX;
            amax = a > amax ? a : amax;
        }
        float d = finite ? amax / 127.0f : NAN;
        if (d16) {
            const uint16_t h = plm_f32_to_f16(d);
            d16[g] = h;
            d = plm_f16_to_f32(h);
        }
        if (df) df[g] = d;
        const float id = finite && d > 0.0f && d <= FLT_MAX ? 1.0f / d : 0.0f;
        if (q) {
            for (int64_t i = 0; i < n; i++) {
                float v = nearbyintf(x[c0 + i] * id);
                v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
                q[c0 + i] = (int8_t)v;
            }
            for (int64_t i = n; i < G; i++) q[c0 + i] = 0;
        }
    }
}

void plm_q8_quantize_row(int8_t *q, uint16_t *d16, float *df, const float *x, int64_t C) {
    quant_groups(q, d16, df, x, C, PLM_Q8_BLOCK);
}

void plm_q8_quantize_act(int8_t *q1, int8_t *q2, float *df, const float *x, int64_t C) {
    const int G = PLM_Q8_XG;
    const int64_t ng = PLM_Q8_STRIDE(C) / G;
    quant_groups(q1, NULL, df, x, C, G);
    if (!q2) return;
    for (int64_t g = 0; g < ng; g++) {
        const int64_t c0 = g * G, n = C - c0 < G ? (C - c0 > 0 ? C - c0 : 0) : G;
        const float d = df[g], id = d > 0.0f && d <= FLT_MAX ? 1.0f / d : 0.0f;
        for (int64_t i = 0; i < n; i++) {
            /* the remainder of x / d after the first level, in [-1/2, 1/2] up to rounding, in 256ths */
            float v = nearbyintf((x[c0 + i] * id - (float)q1[c0 + i]) * 256.0f);
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
            q2[c0 + i] = (int8_t)(v == v ? v : 0.0f);
        }
        for (int64_t i = n; i < G; i++) q2[c0 + i] = 0;
        df[g] = d * (1.0f / 256.0f);
    }
}

int plm_q8_quantize_rows(int8_t *q, uint16_t *d, const plm_mat *W, int64_t r0, int64_t r1, int n_threads) {
    const int64_t C = W->cols, S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C);
    float *buf = malloc((size_t)((C ? C : 1) * (n_threads > 0 ? n_threads : 1)) * sizeof(float));
    if (!buf) return PLM_ERR_NOMEM;
#pragma omp parallel num_threads(n_threads > 0 ? n_threads : 1)
    {
        float *row = buf + (size_t)C * (size_t)omp_get_thread_num();
#pragma omp for schedule(static)
        for (int64_t r = r0; r < r1; r++) {
            plm_mat_row(row, W, r);
            plm_q8_quantize_row(q + r * S, d + r * nb, NULL, row, C);
        }
    }
    free(buf);
    return PLM_OK;
}

int plm_q8_quantize_mat(int8_t **qo, uint16_t **do16, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols, S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C);
    int8_t *q = malloc((size_t)(R * S) + 1);
    uint16_t *d = malloc((size_t)(R * nb) * sizeof(uint16_t) + 2);
    if (!q || !d || plm_q8_quantize_rows(q, d, W, 0, R, n_threads)) {
        free(q), free(d);
        return PLM_ERR_NOMEM;
    }
    *qo = q;
    *do16 = d;
    return PLM_OK;
}

/* ---------------------------------------------------------------- reference */
static void ref(float *y, const float *x, int64_t T, const plm_mat *W, const int LV) {
    const int64_t R = W->rows, C = W->cols, S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C), G = PLM_Q8_XG;
    int8_t *xq = malloc((size_t)(LV * S) + 1);
    float *xd = malloc((size_t)(S / G + 1) * sizeof(float));
    if (!xq || !xd) { /* no memory: NaN rather than a wrong number */
        for (int64_t i = 0; i < T * R; i++) y[i] = NAN;
        free(xq), free(xd);
        return;
    }
    const int8_t *wq = (const int8_t *)W->data, *xq2 = xq + S;
    for (int64_t t = 0; t < T; t++) {
        plm_q8_quantize_act(xq, LV == 2 ? xq + S : NULL, xd, x + t * C, C);
        for (int64_t r = 0; r < R; r++) {
            const int8_t *w = wq + r * S;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const float dw = plm_f16_to_f32(plm_ld_u16(W->scale, r * nb + b));
                for (int64_t g = b * PLM_Q8_BLOCK / G; g < (b + 1) * PLM_Q8_BLOCK / G; g++) {
                    int32_t s = 0, s2 = 0;
                    for (int64_t i = g * G; i < (g + 1) * G; i++) s += (int32_t)xq[i] * (int32_t)w[i];
                    if (LV == 2) {
                        for (int64_t i = g * G; i < (g + 1) * G; i++) s2 += (int32_t)xq2[i] * (int32_t)w[i];
                        s = s * 256 + s2;
                    }
                    acc += (float)s * (dw * xd[g]);
                }
            }
            y[t * R + r] = acc;
        }
    }
    free(xq);
    free(xd);
}

void plm_matmul_q8_ref(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) { ref(y, x, T, W, 1); }
void plm_matmul_q8x2_ref(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) { ref(y, x, T, W, 2); }

/* ---------------------------------------------------------------- instruction sets */
int plm_isa_supported(int isa) {
    if (isa == PLM_ISA_SCALAR) return 1;
#ifdef PLM_X86
    __builtin_cpu_init();
    /* F16C (fp16 scales) comes with every AVX2 CPU (Haswell, Zen); clang's builtin cannot name it */
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == PLM_ISA_AVX2) return avx2;
    const int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl");
    if (isa == PLM_ISA_AVX512VNNI) return avx512 && __builtin_cpu_supports("avx512vnni");
    if (isa == PLM_ISA_AVX512BF16) return avx512 && __builtin_cpu_supports("avx512bf16");
    if (isa == PLM_ISA_AVX512) return avx512;
#endif
    return 0;
}

const char *plm_isa_name(int isa) {
    switch (isa) {
    case PLM_ISA_AVX2: return "avx2";
    case PLM_ISA_AVX512VNNI: return "avx512vnni";
    case PLM_ISA_AVX512BF16: return "avx512bf16";
    case PLM_ISA_AVX512: return "avx512";
    default: return "scalar";
    }
}

/* the cap PLM_ISA sets: scalar, avx2, or none (INT32_MAX) */
static int isa_cap(void) {
    const char *e = getenv("PLM_ISA");
    if (e && !strcmp(e, "scalar")) return PLM_ISA_SCALAR;
    if (e && !strcmp(e, "avx2")) return PLM_ISA_AVX2;
    return INT32_MAX;
}

int plm_isa_best(void) {
    int best = PLM_ISA_SCALAR;
    for (int i = PLM_ISA_AVX2; i <= PLM_ISA_AVX512VNNI; i++)
        if (plm_isa_supported(i)) best = i;
    const int cap = isa_cap();
    return cap < best ? cap : best;
}

int plm_isa_best_bf16(int single_pass) {
    const int cap = isa_cap(), wide = single_pass ? PLM_ISA_AVX512BF16 : PLM_ISA_AVX512;
    if (cap == PLM_ISA_SCALAR) return PLM_ISA_SCALAR;
    return cap > PLM_ISA_AVX2 && plm_isa_supported(wide) ? wide : PLM_ISA_AVX2;
}

#ifdef PLM_X86
/* ---------------------------------------------------------------- shared driver pieces */
/* x quantized once per call: xq [T, S] (then the second level, xq + T * S, [T, S], with LV = 2),
   xd [T, S / PLM_Q8_XG]: a scale per int32 lane of the dot products */
typedef struct {
    int8_t *xq;
    float *xd;
    int64_t lv2; /* offset of the second level in xq (T * S) */
} qx;

static int quantize_x(qx *o, const float *x, int64_t T, int64_t C, int n_threads, int LV) {
    const int64_t S = PLM_Q8_STRIDE(C);
    o->xq = aligned_alloc(64, (((size_t)(LV * T * S) + 63) / 64) * 64 + 64);
    o->xd = aligned_alloc(64, ((size_t)(T * S / PLM_Q8_XG) * sizeof(float) + 63) / 64 * 64 + 64);
    o->lv2 = T * S;
    if (!o->xq || !o->xd) {
        free(o->xq), free(o->xd);
        return -1;
    }
#pragma omp parallel for num_threads(plm_team(n_threads, 64.0 * (double)(T * C))) schedule(static)
    for (int64_t t = 0; t < T; t++) {
        plm_q8_quantize_act(o->xq + t * S, LV == 2 ? o->xq + T * S + t * S : NULL, o->xd + t * (S / PLM_Q8_XG), x + t * C,
                            C);
    }
    return 0;
}

/* weight rows per L2 block: ~128 KiB, a multiple of 4 */
static int64_t row_block(int64_t S) {
    int64_t rb = (128 * 1024) / (S ? S : 1) / 4 * 4;
    return rb < 4 ? 4 : rb;
}

/* ---------------------------------------------------------------- AVX2 */
__attribute__((target("avx2,fma,f16c"))) static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma,f16c"))) static inline float f16_scalar(const void *p, int64_t i) {
    return _cvtsh_ss(plm_ld_u16(p, i));
}

/* NT x rows (xq, xd: row stride S / S / PLM_Q8_XG; LV = 2: second level at xq + lv2) by NR weight rows
   (w, ws) */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void micro_avx2(
    float *y, int64_t ldy, const int8_t *xq, const float *xd, const int8_t *w, const void *ws, int64_t wsi,
    int64_t S, int64_t nb, const int NT, const int NR, const int LV, int64_t lv2) {
    __m256 acc[4][4];
    #pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) acc[t][r] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), c256 = _mm256_set1_epi16(256);
    for (int64_t b = 0; b < nb; b++) {
        __m256i wv[4], aw[4];
        float dw[4];
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            /* decode: the rows two groups ahead, line by line at the pace of this group (the hardware
               prefetchers alone left one thread at ~16 GB/s out of cache, ~32 with this) */
            if (NT == 1) _mm_prefetch((const char *)w + 2 * NR * S + (b * NR + r) * 32, _MM_HINT_T0);
            wv[r] = _mm256_loadu_si256((const __m256i *)(w + r * S + b * 32));
            aw[r] = _mm256_sign_epi8(wv[r], wv[r]);
            dw[r] = f16_scalar(ws, wsi + r * nb + b);
        }
        #pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + t * S + b * 32));
            const __m256 dx = _mm256_loadu_ps(xd + t * (S / PLM_Q8_XG) + b * 8); /* a scale per lane */
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                const __m256i p16 = _mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(xv, wv[r]));
                __m256i p32;
                if (LV == 2) { /* 256 * (q1 . w) + q2 . w: pair sums of q1 . w times 256 fit int32 */
                    const __m256i x2 = _mm256_loadu_si256((const __m256i *)(xq + lv2 + t * S + b * 32));
                    const __m256i p16b = _mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(x2, wv[r]));
                    p32 = _mm256_add_epi32(_mm256_madd_epi16(p16, c256), _mm256_madd_epi16(p16b, ones));
                } else {
                    p32 = _mm256_madd_epi16(p16, ones);
                }
                const __m256 p = _mm256_cvtepi32_ps(p32);
                acc[t][r] = _mm256_fmadd_ps(p, _mm256_mul_ps(_mm256_set1_ps(dw[r]), dx), acc[t][r]);
            }
        }
    }
    #pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) y[t * ldy + r] = hsum256(acc[t][r]);
}

#define AVX2_NT(NR)                                                                                          \
    switch (nt) {                                                                                            \
    case 4: micro_avx2(yt + r, R, xqt, xdt, wq + r * S, W->scale, r * nb, S, nb, 4, NR, LV, lv2); break;     \
    case 3: micro_avx2(yt + r, R, xqt, xdt, wq + r * S, W->scale, r * nb, S, nb, 3, NR, LV, lv2); break;     \
    case 2: micro_avx2(yt + r, R, xqt, xdt, wq + r * S, W->scale, r * nb, S, nb, 2, NR, LV, lv2); break;     \
    default: micro_avx2(yt + r, R, xqt, xdt, wq + r * S, W->scale, r * nb, S, nb, 1, NR, LV, lv2); break;    \
    }

__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void block_avx2_lv(
    float *y, const qx *x, int64_t T, const plm_mat *W, int64_t r0, int64_t r1, const int LV) {
    const int64_t R = W->rows, C = W->cols, S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C), lv2 = x->lv2;
    const int8_t *wq = (const int8_t *)W->data;
    if (T == 1) { /* decode: 4 weight rows at a time */
        const int8_t *xqt = x->xq;
        const float *xdt = x->xd;
        float *yt = y;
        const int nt = 1;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) AVX2_NT(4)
        for (; r < r1; r++) AVX2_NT(1)
        return;
    }
    for (int64_t t0 = 0; t0 < T; t0 += 4) {
        const int nt = (int)(T - t0 < 4 ? T - t0 : 4);
        const int8_t *xqt = x->xq + t0 * S;
        const float *xdt = x->xd + t0 * (S / PLM_Q8_XG);
        float *yt = y + t0 * R;
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) AVX2_NT(2)
        for (; r < r1; r++) AVX2_NT(1)
    }
}

__attribute__((target("avx2,fma,f16c"), noinline)) static void block_avx2(float *y, const qx *x, int64_t T,
                                                                          const plm_mat *W, int64_t r0,
                                                                          int64_t r1) {
    block_avx2_lv(y, x, T, W, r0, r1, 1);
}

__attribute__((target("avx2,fma,f16c"), noinline)) static void block_avx2_x2(float *y, const qx *x, int64_t T,
                                                                             const plm_mat *W, int64_t r0,
                                                                             int64_t r1) {
    block_avx2_lv(y, x, T, W, r0, r1, 2);
}

typedef void (*block_fn)(float *y, const qx *x, int64_t T, const plm_mat *W, int64_t r0, int64_t r1);

static void drive(block_fn blk, float *y, const qx *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols, S = PLM_Q8_STRIDE(C);
    const int nth = plm_team(n_threads, (double)T * R * C);
    const int64_t RB = T == 1 ? (R + nth - 1) / nth : row_block(S);
    const int64_t n_blocks = (R + RB - 1) / RB;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t b = 0; b < n_blocks; b++) {
        const int64_t r0 = b * RB, r1 = r0 + RB < R ? r0 + RB : R;
        blk(y, x, T, W, r0, r1);
    }
}

static int trivial(float *y, int64_t T, const plm_mat *W) {
    if (T == 0 || W->rows == 0) return 1;
    if (W->cols == 0) {
        memset(y, 0, (size_t)(T * W->rows) * sizeof(float));
        return 1;
    }
    return 0;
}

static void avx2(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads, int LV) {
    if (trivial(y, T, W)) return;
    qx q;
    if (quantize_x(&q, x, T, W->cols, n_threads, LV)) {
        ref(y, x, T, W, LV);
        return;
    }
    drive(LV == 2 ? block_avx2_x2 : block_avx2, y, &q, T, W, n_threads);
    free(q.xq), free(q.xd);
}

void plm_matmul_q8_avx2(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    avx2(y, x, T, W, n_threads, 1);
}
void plm_matmul_q8x2_avx2(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    avx2(y, x, T, W, n_threads, 2);
}

/* ---------------------------------------------------------------- AVX-512 VNNI */
#define VNNI_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"

/* for VNNI: x as unsigned bytes (x + 128) (its scales, one per lane, in xd) */
typedef struct {
    uint8_t *xu;
} qxv;

/* NT x rows by NR weight rows, two blocks a step; an odd last block through 256-bit vpdpbusd; LV = 2:
   the second level at xu + lv2 */
__attribute__((target(VNNI_TARGET), always_inline)) static inline void micro_vnni(
    float *y, int64_t ldy, const uint8_t *xu, const float *xd, const int8_t *w, const void *ws, int64_t wsi,
    int64_t S, int64_t nb, const int NT, const int NR, const int LV, int64_t lv2) {
    const int64_t ldx = S / PLM_Q8_XG; /* xd's row stride */
    const int64_t np = nb / 2;
    __m512 acc[4][4];
    #pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) acc[t][r] = _mm512_setzero_ps();
    const __m512i c80 = _mm512_set1_epi8((char)0x80);
    const __m512i spread = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int64_t p = 0; p < np; p++) {
        __m512i wv[4], nc[4];
        __m512 dw[4];
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            wv[r] = _mm512_loadu_si512((const void *)(w + r * S + p * 64));
            nc[r] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                     _mm512_dpbusd_epi32(_mm512_setzero_si512(), c80, wv[r]));
            uint32_t h2;
            memcpy(&h2, (const char *)ws + 2 * (wsi + r * nb + 2 * p), 4);
            const __m128 d2 = _mm_cvtph_ps(_mm_cvtsi32_si128((int)h2));
            dw[r] = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(d2));
        }
        #pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const __m512i xv = _mm512_loadu_si512((const void *)(xu + t * S + p * 64));
            const __m512 dx = _mm512_loadu_ps(xd + t * ldx + p * 16);
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                __m512i si = _mm512_dpbusd_epi32(nc[r], xv, wv[r]);
                if (LV == 2) {
                    const __m512i x2 = _mm512_loadu_si512((const void *)(xu + lv2 + t * S + p * 64));
                    si = _mm512_add_epi32(_mm512_slli_epi32(si, 8), _mm512_dpbusd_epi32(nc[r], x2, wv[r]));
                }
                acc[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(si), _mm512_mul_ps(dx, dw[r]), acc[t][r]);
            }
        }
    }
    if (nb & 1) {
        const int64_t b = nb - 1;
        const __m256i c80h = _mm256_set1_epi8((char)0x80);
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + r * S + b * 32));
            const __m256i nc = _mm256_sub_epi32(_mm256_setzero_si256(),
                                                _mm256_dpbusd_epi32(_mm256_setzero_si256(), c80h, wv));
            const float dw = _cvtsh_ss(plm_ld_u16(ws, wsi + r * nb + b));
            #pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(xu + t * S + b * 32));
                __m256i si = _mm256_dpbusd_epi32(nc, xv, wv);
                if (LV == 2) {
                    const __m256i x2 = _mm256_loadu_si256((const __m256i *)(xu + lv2 + t * S + b * 32));
                    si = _mm256_add_epi32(_mm256_slli_epi32(si, 8), _mm256_dpbusd_epi32(nc, x2, wv));
                }
                const __m256 s = _mm256_cvtepi32_ps(si);
                const __m256 v = _mm256_mul_ps(s, _mm256_mul_ps(_mm256_set1_ps(dw), _mm256_loadu_ps(xd + t * ldx + b * 8)));
                acc[t][r] = _mm512_add_ps(acc[t][r], _mm512_zextps256_ps512(v));
            }
        }
    }
    #pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[t][r]);
}

typedef struct {
    qx q;
    qxv v;
} qx2;

#define VNNI_NT(NR)                                                                                          \
    switch (nt) {                                                                                            \
    case 4: micro_vnni(yt + r, R, xut, xdt, wq + r * S, W->scale, r * nb, S, nb, 4, NR, LV, lv2); break; \
    case 3: micro_vnni(yt + r, R, xut, xdt, wq + r * S, W->scale, r * nb, S, nb, 3, NR, LV, lv2); break; \
    case 2: micro_vnni(yt + r, R, xut, xdt, wq + r * S, W->scale, r * nb, S, nb, 2, NR, LV, lv2); break; \
    default: micro_vnni(yt + r, R, xut, xdt, wq + r * S, W->scale, r * nb, S, nb, 1, NR, LV, lv2); break; \
    }

__attribute__((target(VNNI_TARGET), always_inline)) static inline void block_vnni_lv(
    float *y, const qx *xq, int64_t T, const plm_mat *W, int64_t r0, int64_t r1, const int LV) {
    const qx2 *x = (const qx2 *)xq;
    const int64_t R = W->rows, C = W->cols, S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C), lv2 = xq->lv2;
    const int8_t *wq = (const int8_t *)W->data;
    for (int64_t t0 = 0; t0 < T; t0 += 4) { /* T > 1 (decode: gemv256) */
        const int nt = (int)(T - t0 < 4 ? T - t0 : 4);
        const uint8_t *xut = x->v.xu + t0 * S;
        const float *xdt = x->q.xd + t0 * (S / PLM_Q8_XG);
        float *yt = y + t0 * R;
        int64_t r = r0;
        if (T <= 32) /* 4 weight rows: measured faster for decode batches, slower for long prompts */
            for (; r + 4 <= r1; r += 4) VNNI_NT(4)
        for (; r + 2 <= r1; r += 2) VNNI_NT(2)
        for (; r < r1; r++) VNNI_NT(1)
    }
}

__attribute__((target(VNNI_TARGET), noinline)) static void block_vnni(float *y, const qx *xq, int64_t T,
                                                                      const plm_mat *W, int64_t r0, int64_t r1) {
    block_vnni_lv(y, xq, T, W, r0, r1, 1);
}

__attribute__((target(VNNI_TARGET), noinline)) static void block_vnni_x2(float *y, const qx *xq, int64_t T,
                                                                         const plm_mat *W, int64_t r0, int64_t r1) {
    block_vnni_lv(y, xq, T, W, r0, r1, 2);
}

/* Decode (one x row), NR weight rows, 256 bits a block: the AVX2 kernel's operands (|w| unsigned,
   sign(x, w) signed) into one vpdpbusd in place of vpmaddubsw + vpmaddwd, and the rows two groups
   ahead prefetched line by line at the pace of this group (prefetches may run past the matrix: they
   never fault). Measured on this kind of CPU (one thread, [6144 x 1024] out of cache): faster than
   the 512-bit form of the GEMM kernel (~27 -> ~34 GB/s), whose lane-spread scales and two-block
   steps cost more than they save at one x row. */
__attribute__((target(VNNI_TARGET), always_inline)) static inline void gemv256_rows(
    float *y, const int8_t *xq, const float *xd, const int8_t *w, const void *ws, int64_t wsi, int64_t S, int64_t nb,
    int64_t lv2, const int NR, const int LV) {
    __m256 acc[4];
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * 32));
        const __m256i xv2 = LV == 2 ? _mm256_loadu_si256((const __m256i *)(xq + lv2 + b * 32)) : xv;
        const __m256 dx = _mm256_loadu_ps(xd + b * 8);
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            _mm_prefetch((const char *)w + 2 * NR * S + (b * NR + r) * 32, _MM_HINT_T0);
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + r * S + b * 32));
            const __m256i aw = _mm256_abs_epi8(wv);
            __m256i si = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, _mm256_sign_epi8(xv, wv));
            if (LV == 2)
                si = _mm256_add_epi32(_mm256_slli_epi32(si, 8),
                                      _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, _mm256_sign_epi8(xv2, wv)));
            const float dw = _cvtsh_ss(plm_ld_u16(ws, wsi + r * nb + b));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), _mm256_mul_ps(_mm256_set1_ps(dw), dx), acc[r]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++) y[r] = hsum256(acc[r]);
}

__attribute__((target(VNNI_TARGET), always_inline)) static inline void gemv256_lv(float *y, const qx *x,
                                                                                 const plm_mat *W, int64_t r0,
                                                                                 int64_t r1, const int LV) {
    const int64_t C = W->cols, S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C);
    const int8_t *wq = (const int8_t *)W->data;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) gemv256_rows(y + r, x->xq, x->xd, wq + r * S, W->scale, r * nb, S, nb, x->lv2, 4, LV);
    for (; r < r1; r++) gemv256_rows(y + r, x->xq, x->xd, wq + r * S, W->scale, r * nb, S, nb, x->lv2, 1, LV);
}

__attribute__((target(VNNI_TARGET), noinline)) static void gemv256(float *y, const qx *x, int64_t T,
                                                                   const plm_mat *W, int64_t r0, int64_t r1) {
    gemv256_lv(y, x, W, r0, r1, 1);
}

__attribute__((target(VNNI_TARGET), noinline)) static void gemv256_x2(float *y, const qx *x, int64_t T,
                                                                      const plm_mat *W, int64_t r0, int64_t r1) {
    gemv256_lv(y, x, W, r0, r1, 2);
}

static void vnni(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads, int LV) {
    if (trivial(y, T, W)) return;
    const int64_t C = W->cols, S = PLM_Q8_STRIDE(C);
    qx2 q;
    if (quantize_x(&q.q, x, T, C, n_threads, LV)) {
        ref(y, x, T, W, LV);
        return;
    }
    if (T == 1) {
        drive(LV == 2 ? gemv256_x2 : gemv256, y, &q.q, T, W, n_threads);
        free(q.q.xq), free(q.q.xd);
        return;
    }
    /* xq becomes x + 128 in place (both levels) */
    q.v.xu = (uint8_t *)q.q.xq;
    for (int64_t i = 0; i < LV * T * S; i++) q.v.xu[i] = (uint8_t)(q.q.xq[i] ^ (int8_t)0x80);
    drive(LV == 2 ? block_vnni_x2 : block_vnni, y, (const qx *)&q, T, W, n_threads);
    free(q.q.xq), free(q.q.xd);
}

void plm_matmul_q8_vnni(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    vnni(y, x, T, W, n_threads, 1);
}
void plm_matmul_q8x2_vnni(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    vnni(y, x, T, W, n_threads, 2);
}
#endif
