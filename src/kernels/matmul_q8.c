/* y[T, rows] = x[T, cols] . W^T with int8 weights (PLM_DT_Q8: blocks of 32 along cols, one fp16
 * scale per block, as llama.cpp's Q8_0). The activations are quantized on the fly the same way
 * (fp32 scales), every block's product is an exact int32 dot product, scaled by d_w * d_x and
 * summed in float.
 *   - plm_matmul_q8_ref: the scalar reference (the oracle of the kernel harness).
 *   - plm_matmul_q8_avx2: AVX2, 32 bytes a block: vpsignb / vpabsb make the unsigned x signed
 *     operand pair vpmaddubsw needs (|w| <= 127 and |x| <= 127 never saturate its int16 sums),
 *     vpmaddwd sums pairs into int32 lanes.
 *   - plm_matmul_q8_vnni: AVX-512 VNNI, two blocks (64 bytes) a vpdpbusd: x is stored as
 *     unsigned x + 128 and the accumulator starts at -128 * sum(w) (one more vpdpbusd per weight
 *     pair of blocks, shared by every x row), so each lane holds the exact signed dot product.
 * Both fast kernels walk the weight rows in L2-sized blocks, split statically over the OpenMP
 * threads (contiguous ranges, as the BF16 kernels), with register blocks of up to 4 x rows by
 * 2 weight rows (4 weight rows for a single x row: decode). Every output element is computed by
 * one thread in a fixed order: results do not depend on the thread count. */
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
void plm_q8_quantize_row(int8_t *q, uint16_t *d16, float *df, const float *x, int64_t C) {
    const int64_t nb = PLM_Q8_NB(C);
    for (int64_t b = 0; b < nb; b++) {
        const int64_t c0 = b * PLM_Q8_BLOCK, n = C - c0 < PLM_Q8_BLOCK ? C - c0 : PLM_Q8_BLOCK;
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
            d16[b] = h;
            d = plm_f16_to_f32(h);
        }
        if (df) df[b] = d;
        const float id = finite && d > 0.0f && d <= FLT_MAX ? 1.0f / d : 0.0f;
        if (q) {
            for (int64_t i = 0; i < n; i++) {
                float v = nearbyintf(x[c0 + i] * id);
                v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
                q[c0 + i] = (int8_t)v;
            }
            for (int64_t i = n; i < PLM_Q8_BLOCK; i++) q[c0 + i] = 0;
        }
    }
}

int plm_q8_quantize_mat(int8_t **qo, uint16_t **do16, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols, S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C);
    int8_t *q = malloc((size_t)(R * S) + 1);
    uint16_t *d = malloc((size_t)(R * nb) * sizeof(uint16_t) + 2);
    float *buf = malloc((size_t)((C ? C : 1) * (n_threads > 0 ? n_threads : 1)) * sizeof(float));
    if (!q || !d || !buf) {
        free(q), free(d), free(buf);
        return PLM_ERR_NOMEM;
    }
#pragma omp parallel num_threads(n_threads > 0 ? n_threads : 1)
    {
        float *row = buf + (size_t)C * (size_t)omp_get_thread_num();
#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            plm_mat_row(row, W, r);
            plm_q8_quantize_row(q + r * S, d + r * nb, NULL, row, C);
        }
    }
    free(buf);
    *qo = q;
    *do16 = d;
    return PLM_OK;
}

/* ---------------------------------------------------------------- reference */
void plm_matmul_q8_ref(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols, S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C);
    int8_t *xq = malloc((size_t)S + 1);
    float *xd = malloc((size_t)(nb + 1) * sizeof(float));
    if (!xq || !xd) { /* no memory: NaN rather than a wrong number */
        for (int64_t i = 0; i < T * R; i++) y[i] = NAN;
        free(xq), free(xd);
        return;
    }
    const int8_t *wq = (const int8_t *)W->data;
    for (int64_t t = 0; t < T; t++) {
        plm_q8_quantize_row(xq, NULL, xd, x + t * C, C);
        for (int64_t r = 0; r < R; r++) {
            const int8_t *w = wq + r * S;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                int32_t s = 0;
                for (int i = 0; i < PLM_Q8_BLOCK; i++) s += (int32_t)xq[b * 32 + i] * (int32_t)w[b * 32 + i];
                const float dw = plm_f16_to_f32(plm_ld_u16(W->scale, r * nb + b));
                acc += (float)s * (dw * xd[b]);
            }
            y[t * R + r] = acc;
        }
    }
    free(xq);
    free(xd);
}

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
#endif
    return 0;
}

const char *plm_isa_name(int isa) {
    switch (isa) {
    case PLM_ISA_AVX2: return "avx2";
    case PLM_ISA_AVX512VNNI: return "avx512vnni";
    case PLM_ISA_AVX512BF16: return "avx512bf16";
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

int plm_isa_best_bf16(void) {
    const int cap = isa_cap();
    if (cap == PLM_ISA_SCALAR) return PLM_ISA_SCALAR;
    return cap > PLM_ISA_AVX2 && plm_isa_supported(PLM_ISA_AVX512BF16) ? PLM_ISA_AVX512BF16 : PLM_ISA_AVX2;
}

#ifdef PLM_X86
/* ---------------------------------------------------------------- shared driver pieces */
/* x quantized once per call: xq [T, S], xd [T, nb] */
typedef struct {
    int8_t *xq;
    float *xd;
} qx;

static int quantize_x(qx *o, const float *x, int64_t T, int64_t C, int n_threads) {
    const int64_t S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C);
    o->xq = aligned_alloc(64, (((size_t)(T * S) + 63) / 64) * 64 + 64);
    o->xd = malloc((size_t)(T * nb + 1) * sizeof(float));
    if (!o->xq || !o->xd) {
        free(o->xq), free(o->xd);
        return -1;
    }
#pragma omp parallel for num_threads(plm_team(n_threads, 64.0 * (double)(T * C))) schedule(static)
    for (int64_t t = 0; t < T; t++) plm_q8_quantize_row(o->xq + t * S, NULL, o->xd + t * nb, x + t * C, C);
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

/* NT x rows (xq, xd: row stride S / nb) by NR weight rows (w, ws) */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void micro_avx2(
    float *y, int64_t ldy, const int8_t *xq, const float *xd, const int8_t *w, const void *ws, int64_t wsi,
    int64_t S, int64_t nb, const int NT, const int NR) {
    __m256 acc[4][4];
    #pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) acc[t][r] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        __m256i wv[4], aw[4];
        float dw[4];
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            wv[r] = _mm256_loadu_si256((const __m256i *)(w + r * S + b * 32));
            aw[r] = _mm256_sign_epi8(wv[r], wv[r]);
            dw[r] = f16_scalar(ws, wsi + r * nb + b);
        }
        #pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + t * S + b * 32));
            const float dx = xd[t * nb + b];
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                const __m256i p16 = _mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(xv, wv[r]));
                const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                acc[t][r] = _mm256_fmadd_ps(p, _mm256_set1_ps(dw[r] * dx), acc[t][r]);
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
    case 4: micro_avx2(yt + r, R, xqt, xdt, wq + r * S, W->scale, r * nb, S, nb, 4, NR); break;              \
    case 3: micro_avx2(yt + r, R, xqt, xdt, wq + r * S, W->scale, r * nb, S, nb, 3, NR); break;              \
    case 2: micro_avx2(yt + r, R, xqt, xdt, wq + r * S, W->scale, r * nb, S, nb, 2, NR); break;              \
    default: micro_avx2(yt + r, R, xqt, xdt, wq + r * S, W->scale, r * nb, S, nb, 1, NR); break;             \
    }

__attribute__((target("avx2,fma,f16c"), noinline)) static void block_avx2(float *y, const qx *x, int64_t T,
                                                                          const plm_mat *W, int64_t r0,
                                                                          int64_t r1) {
    const int64_t R = W->rows, C = W->cols, S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C);
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
        const float *xdt = x->xd + t0 * nb;
        float *yt = y + t0 * R;
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) AVX2_NT(2)
        for (; r < r1; r++) AVX2_NT(1)
    }
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

void plm_matmul_q8_avx2(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    if (trivial(y, T, W)) return;
    qx q;
    if (quantize_x(&q, x, T, W->cols, n_threads)) {
        plm_matmul_q8_ref(y, x, T, W, n_threads);
        return;
    }
    drive(block_avx2, y, &q, T, W, n_threads);
    free(q.xq), free(q.xd);
}

/* ---------------------------------------------------------------- AVX-512 VNNI */
#define VNNI_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"

/* for VNNI: x as unsigned bytes (x + 128) and per pair of blocks the two x scales spread over 16
   lanes (8 each); the odd last block keeps its scalar scale in xd */
typedef struct {
    uint8_t *xu;
    float *xs; /* [T, np, 16] */
} qxv;

/* NT x rows by NR weight rows, two blocks a step; an odd last block through 256-bit vpdpbusd */
__attribute__((target(VNNI_TARGET), always_inline)) static inline void micro_vnni(
    float *y, int64_t ldy, const uint8_t *xu, const float *xs, const float *xd, const int8_t *w, const void *ws,
    int64_t wsi, int64_t S, int64_t nb, const int NT, const int NR) {
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
            const __m512 dx = _mm512_load_ps(xs + (t * np + p) * 16);
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                const __m512 s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(nc[r], xv, wv[r]));
                acc[t][r] = _mm512_fmadd_ps(s, _mm512_mul_ps(dx, dw[r]), acc[t][r]);
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
                const __m256 s = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(nc, xv, wv));
                const __m256 v = _mm256_mul_ps(s, _mm256_set1_ps(dw * xd[t * nb + b]));
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
    case 4: micro_vnni(yt + r, R, xut, xst, xdt, wq + r * S, W->scale, r * nb, S, nb, 4, NR); break;         \
    case 3: micro_vnni(yt + r, R, xut, xst, xdt, wq + r * S, W->scale, r * nb, S, nb, 3, NR); break;         \
    case 2: micro_vnni(yt + r, R, xut, xst, xdt, wq + r * S, W->scale, r * nb, S, nb, 2, NR); break;         \
    default: micro_vnni(yt + r, R, xut, xst, xdt, wq + r * S, W->scale, r * nb, S, nb, 1, NR); break;        \
    }

__attribute__((target(VNNI_TARGET), noinline)) static void block_vnni(float *y, const qx *xq, int64_t T,
                                                                      const plm_mat *W, int64_t r0, int64_t r1) {
    const qx2 *x = (const qx2 *)xq;
    const int64_t R = W->rows, C = W->cols, S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C), np = nb / 2;
    const int8_t *wq = (const int8_t *)W->data;
    if (T == 1) {
        const uint8_t *xut = x->v.xu;
        const float *xst = x->v.xs, *xdt = x->q.xd;
        float *yt = y;
        const int nt = 1;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) VNNI_NT(4)
        for (; r < r1; r++) VNNI_NT(1)
        return;
    }
    for (int64_t t0 = 0; t0 < T; t0 += 4) {
        const int nt = (int)(T - t0 < 4 ? T - t0 : 4);
        const uint8_t *xut = x->v.xu + t0 * S;
        const float *xst = x->v.xs + t0 * np * 16, *xdt = x->q.xd + t0 * nb;
        float *yt = y + t0 * R;
        int64_t r = r0;
        if (T <= 32) /* 4 weight rows: measured faster for decode batches, slower for long prompts */
            for (; r + 4 <= r1; r += 4) VNNI_NT(4)
        for (; r + 2 <= r1; r += 2) VNNI_NT(2)
        for (; r < r1; r++) VNNI_NT(1)
    }
}

void plm_matmul_q8_vnni(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    if (trivial(y, T, W)) return;
    const int64_t C = W->cols, S = PLM_Q8_STRIDE(C), nb = PLM_Q8_NB(C), np = nb / 2;
    qx2 q;
    if (quantize_x(&q.q, x, T, C, n_threads)) {
        plm_matmul_q8_ref(y, x, T, W, n_threads);
        return;
    }
    /* xq becomes x + 128 in place */
    q.v.xu = (uint8_t *)q.q.xq;
    for (int64_t i = 0; i < T * S; i++) q.v.xu[i] = (uint8_t)(q.q.xq[i] ^ (int8_t)0x80);
    q.v.xs = aligned_alloc(64, (size_t)(T * np * 16 + 16) * sizeof(float));
    if (!q.v.xs) {
        free(q.q.xq), free(q.q.xd);
        plm_matmul_q8_ref(y, x, T, W, n_threads);
        return;
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t p = 0; p < np; p++)
            for (int j = 0; j < 16; j++) q.v.xs[(t * np + p) * 16 + j] = q.q.xd[t * nb + 2 * p + (j >> 3)];
    drive(block_vnni, y, (const qx *)&q, T, W, n_threads);
    free(q.q.xq), free(q.q.xd), free(q.v.xs);
}
#endif
