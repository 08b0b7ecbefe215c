/* y[T, rows] = x[T, cols] . W^T from BF16 weights with F32 activations on 512-bit vectors (AVX-512 F
 * and BW; compiled with target attributes, chosen when the context starts where the CPU has them):
 * the arithmetic of matmul_bf16.c (each BF16 weight widened exactly to F32, F32 FMAs, F32 sums) with
 * 16 lanes per FMA instead of 8, and all 32 vector registers.
 *   - Widening: 32 BF16 weights are loaded as 16 u32 pairs; the low halves (even columns) become F32
 *     with one shift, the high halves (odd columns) with one mask. The x rows are copied once per
 *     call with each column block split into its 16 even then 16 odd elements to match, zero-padded
 *     to 32; a partial block of weights is a masked load (zeros, nothing read outside the row), so
 *     there is no scalar tail.
 *   - Column blocks of 32 from column 0 (col_blocks), whatever the weights' address; when every row
 *     starts at the same 4-byte-aligned offset from a cache line (C a multiple of 32), each block is
 *     read as the two aligned lines it spans, combined in registers (vpermt2d), as loads split across
 *     two lines cost more.
 *   - Register blocks of NTB x rows by NRB weight rows: the NRB weight rows' block is widened into
 *     registers once, then every x row's even and odd vectors are loaded once for NRB FMAs each.
 *   - Weight rows are split statically over the threads (contiguous ranges) in blocks of ~96 KiB
 *     that stay in L2 while every x row group passes over them; the next block is prefetched
 *     meanwhile, one line per weight row every few steps, spread over the x row groups.
 * Every output element is the same sequence of FMAs (its column blocks in order, even then odd half
 * into one 16-lane accumulator), then one fixed tree over the lanes, whatever T, the register block,
 * the row's place, the thread count or the weights' address. */
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PLM_X86 1
#endif

#include "kernels/fast.h"
#include "kernels/kernels.h"

#ifdef PLM_X86
#define AVX512_TARGET "avx2,fma,avx512f,avx512bw,avx512vl"

/* ~96 KiB of weights per L2 block (the block being computed and the next one fit L2 together);
   register blocks of NTB x rows by NRB weight rows: 16 accumulators, 8 widened weight vectors, 2 x
   vectors, the mask and the permutation of the 32 registers (4 x 4 measured against 5 x 4, 4 x 5,
   6 x 3, 8 x 2, 3 x 6, 2 x 8, and 96 KiB against 48, 192 and 384, at 16 rows on the model's shapes:
   the others the same or slower) */
enum { BLOCK_BYTES = 96 * 1024, NTB = 4, NRB = 4 };

/* a fixed tree over the 16 lanes (not _mm512_reduce_add_ps, whose order is the compiler's) */
__attribute__((target(AVX512_TARGET), always_inline)) static inline float hsum16(__m512 v) {
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); /* AVX-512 F only */
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}

/* The columns of every row: nf full blocks of 32, then a tail of C mod 32 (tmask: its columns; 0: no
   tail); x is permuted block by block alike, each block padded to 32 with zeros. The blocks start at
   column 0 wherever the weights lie, so results do not depend on their address. o4: where every row
   starts at the same 4-byte-aligned offset from a cache line (C a multiple of 32), that offset in
   dwords, and the blocks are read as two aligned loads combined in registers (vpermt2d); 0 otherwise
   (plain loads). The mapped checkpoints' tensors start 16 or 48 bytes off a line, where the plain
   loads, split across two lines, took 1.2-1.3x the time of aligned ones at 16 rows. */
typedef struct {
    int64_t C, Cp, nf; /* columns; x row stride (32 per block); full blocks */
    __mmask32 tmask;
    int o4;
} cols;

static cols col_blocks(const void *w, int64_t C) {
    const uintptr_t a = (uintptr_t)w;
    cols c = {C, (C + 31) / 32 * 32, C / 32, (__mmask32)((1ull << (C % 32)) - 1), 0};
    if (a % 4 == 0 && C % 32 == 0) c.o4 = (int)(a % 64 / 4);
    return c;
}

/* x rows [T, C] -> xp [T, Cp]: every block of 32 columns as its even then odd elements (16 each), zeros
   after column C */
__attribute__((target(AVX512_TARGET))) static void permute_rows(float *xp, const float *x, int64_t T,
                                                                const cols *c) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int64_t t = 0; t < T; t++) {
        const float *s = x + t * c->C;
        float *d = xp + t * c->Cp;
        for (int64_t k = 0; k < c->C; k += 32) {
            const int64_t n = c->C - k < 32 ? c->C - k : 32;
            const __mmask16 m0 = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
            const __mmask16 m1 = (__mmask16)(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
            const __m512 a = _mm512_maskz_loadu_ps(m0, s + k), b = _mm512_maskz_loadu_ps(m1, s + k + 16);
            _mm512_store_ps(d + k, _mm512_permutex2var_ps(a, even, b));
            _mm512_store_ps(d + k + 16, _mm512_permutex2var_ps(a, odd, b));
        }
    }
}

/* how step reads a block of weights: one load (PLAIN), a masked one (TAIL: the last, partial
   block; the rest reads as zeros, nothing outside the row is touched), or two aligned loads
   combined (ALIGNED; FIRST / LAST / ONLY: the row's first / last / only block, whose line before / after
   the row is a masked load of the row's part of it) */
enum { PLAIN, TAIL, ALIGNED, FIRST, LAST, ONLY };

/* the 32 BF16 weights of a block, as 16 u32 pairs */
__attribute__((target(AVX512_TARGET), always_inline)) static inline __m512i wload(const uint16_t *p, const cols *c,
                                                                                  __m512i idx, const int how) {
    if (how == PLAIN) return _mm512_loadu_si512((const void *)p);
    if (how == TAIL) return _mm512_maskz_loadu_epi16(c->tmask, p);
    const char *a = (const char *)p - 4 * c->o4; /* the line p starts in */
    const __mmask16 head = (__mmask16)(0xffffu << c->o4), rest = (__mmask16)~head;
    const __m512i lo = how == FIRST || how == ONLY ? _mm512_maskz_load_epi32(head, a) : _mm512_load_si512(a);
    const __m512i hi = how == LAST || how == ONLY ? _mm512_maskz_load_epi32(rest, a + 64) : _mm512_load_si512(a + 64);
    return _mm512_permutex2var_epi32(lo, idx, hi);
}

/* one column block of NT x rows (xp: its even and odd vectors, row stride Cp) by NR weight rows (w:
   its first column, row stride C) into acc: the weight rows widened once (the low halves of the u32
   pairs, the even columns, shifted up; the high halves, the odd columns, masked), then each x row's
   two vectors loaded once for NR FMAs each */
__attribute__((target(AVX512_TARGET), always_inline)) static inline void step(__m512 acc[][NRB], const float *xp,
                                                                              const uint16_t *w, const cols *c,
                                                                              __m512i idx, const int NT,
                                                                              const int NR, const int how) {
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    __m512 we[NRB], wo[NRB];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        __m512i u = wload(w + r * c->C, c, idx, how);
        __asm__("" : "+v"(u)); /* one load, not one memory operand each for the shift and the mask */
        we[r] = _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
        wo[r] = _mm512_castsi512_ps(_mm512_and_si512(u, hi));
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        __m512 xe = _mm512_load_ps(xp + t * c->Cp), xo = _mm512_load_ps(xp + t * c->Cp + 16);
        __asm__("" : "+v"(xe)); /* x in a register for NR FMAs, not a memory operand of each */
        __asm__("" : "+v"(xo));
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) acc[t][r] = _mm512_fmadd_ps(xe, we[r], acc[t][r]);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) acc[t][r] = _mm512_fmadd_ps(xo, wo[r], acc[t][r]);
    }
}

/* block b's lines of the NR rows at pf (the next L2 block's) when it is x row group pg's turn (cnt
   counts down from pg, every ng blocks) */
__attribute__((target(AVX512_TARGET), always_inline)) static inline void prefetch(const uint16_t *pf, const cols *c,
                                                                                  int64_t b, int *cnt, int ng,
                                                                                  const int NR) {
    if (!pf) return;
    if (*cnt == 0) {
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) _mm_prefetch((const char *)(pf + r * c->C + b * 32), _MM_HINT_T1);
        *cnt = ng;
    }
    (*cnt)--;
}

/* blocks [b0, b1) of one register block, read as how */
__attribute__((target(AVX512_TARGET), always_inline)) static inline void steps(__m512 acc[][NRB], const float *xp,
                                                                               const uint16_t *w, const cols *c,
                                                                               __m512i idx, int64_t b0, int64_t b1,
                                                                               const uint16_t *pf, int *cnt, int ng,
                                                                               const int NT, const int NR,
                                                                               const int how) {
    for (int64_t b = b0; b < b1; b++) {
        prefetch(pf, c, b, cnt, ng, NR);
        step(acc, xp + b * 32, w + b * 32, c, idx, NT, NR, how);
    }
}

/* One register block: NT (<= NTB) x rows by NR (<= NRB) weight rows over the column blocks of c. pf:
   the same rows of the next L2 block or NULL, of which x row group pg of ng prefetches every ng-th
   line. */
__attribute__((target(AVX512_TARGET), always_inline)) static inline void micro(float *y, int64_t ldy,
                                                                               const float *xp, const uint16_t *w,
                                                                               const cols *c, const uint16_t *pf,
                                                                               int pg, int ng, const int NT,
                                                                               const int NR) {
    const int64_t nf = c->nf;
    const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(c->o4));
    __m512 acc[NTB][NRB];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) acc[t][r] = _mm512_setzero_ps();
    if (pf) /* the line of each row's end, which the blocks' prefetches miss when the rows are not aligned */
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) _mm_prefetch((const char *)(pf + r * c->C + c->C - 1), _MM_HINT_T1);
    int cnt = pg;
    if (!c->o4) {
        steps(acc, xp, w, c, idx, 0, nf, pf, &cnt, ng, NT, NR, PLAIN);
        if (c->tmask) step(acc, xp + nf * 32, w + nf * 32, c, idx, NT, NR, TAIL);
    } else if (nf == 1) {
        steps(acc, xp, w, c, idx, 0, 1, pf, &cnt, ng, NT, NR, ONLY);
    } else {
        steps(acc, xp, w, c, idx, 0, 1, pf, &cnt, ng, NT, NR, FIRST);
        steps(acc, xp, w, c, idx, 1, nf - 1, pf, &cnt, ng, NT, NR, ALIGNED);
        steps(acc, xp, w, c, idx, nf - 1, nf, pf, &cnt, ng, NT, NR, LAST);
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) y[t * ldy + r] = hsum16(acc[t][r]);
}

#define MICRO_NT(NR)                                                                                        \
    switch (nt) {                                                                                           \
    case 4: micro(yt + r, R, xt, w + r * C, c, pf, g, ng, 4, NR); break;                                   \
    case 3: micro(yt + r, R, xt, w + r * C, c, pf, g, ng, 3, NR); break;                                   \
    case 2: micro(yt + r, R, xt, w + r * C, c, pf, g, ng, 2, NR); break;                                   \
    default: micro(yt + r, R, xt, w + r * C, c, pf, g, ng, 1, NR); break;                                  \
    }

/* weight rows [r0, r1) against all T x rows; rb: the block size (the prefetch distance) */
__attribute__((target(AVX512_TARGET), noinline)) static void block(float *y, const float *xp, int64_t T,
                                                                   const uint16_t *w, int64_t R, const cols *c,
                                                                   int64_t r0, int64_t r1, int64_t rb) {
    const int64_t C = c->C;
    const int ng = (int)((T + NTB - 1) / NTB);
    for (int64_t t0 = 0; t0 < T; t0 += NTB) {
        const int nt = (int)(T - t0 < NTB ? T - t0 : NTB), g = (int)(t0 / NTB);
        const float *xt = xp + t0 * c->Cp;
        float *yt = y + t0 * R;
        int64_t r = r0;
        for (; r + NRB <= r1; r += NRB) {
            const uint16_t *pf = r + rb + NRB <= R ? w + (r + rb) * C : NULL; /* the next block */
            MICRO_NT(NRB)
        }
        for (; r < r1; r++) {
            const uint16_t *pf = NULL;
            MICRO_NT(1)
        }
    }
}

void plm_matmul_bf16_avx512(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    const int64_t R = W->rows, C = W->cols;
    if (W->dt != PLM_DT_BF16 || T <= 0 || R <= 0 || C <= 0) {
        plm_matmul_fast(y, x, T, W, n_threads);
        return;
    }
    const uint16_t *w = (const uint16_t *)W->data;
    const cols c = col_blocks(w, C);
    float *xp = aligned_alloc(64, (size_t)(T * c.Cp) * sizeof *xp); /* every x load aligned */
    if (!xp) { /* no room for the permuted rows: the 256-bit kernels need none */
        plm_matmul_fast(y, x, T, W, n_threads);
        return;
    }
    permute_rows(xp, x, T, &c);
    const int nth = plm_team(n_threads, (double)T * R * C);
    int64_t RB = BLOCK_BYTES / (2 * C) / NRB * NRB;
    if (RB < NRB) RB = NRB;
    const int64_t n_blocks = (R + RB - 1) / RB;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t b = 0; b < n_blocks; b++) {
        const int64_t r0 = b * RB, r1 = r0 + RB < R ? r0 + RB : R;
        block(y, xp, T, w, R, &c, r0, r1, RB);
    }
    free(xp);
}
#else
void plm_matmul_bf16_avx512(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads) {
    plm_matmul_bf16(y, x, T, W, n_threads);
}
#endif
