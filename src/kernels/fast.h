/* The fast kernel variants (registered by dispatch.c; same contracts as the references in
 * kernels.h). All are threaded with OpenMP over independent pieces of work (segments, heads,
 * query blocks, rows); every output element is computed by one thread in a fixed order, so
 * results are bit-for-bit reproducible whatever the schedule. */
#ifndef PLM_KERNELS_FAST_H
#define PLM_KERNELS_FAST_H

#include "kernels/kernels.h"

/* gated delta rule: chunked (UT/WY, chunk 64) for segments longer than PLM_GDN_RECURRENT_MAX,
   recurrent for shorter ones; threaded over (segment, value head). S[s] may be NULL (kernels.h) */
#define PLM_GDN_CHUNK 64
#define PLM_GDN_RECURRENT_MAX 8
void plm_gdn_fast(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                  const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv, int n_threads);
/* every segment chunked (for tests and the benchmark) */
void plm_gdn_chunked(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                     const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv,
                     int n_threads);
/* recurrent, vectorised and threaded over (segment, value head) */
void plm_gdn_recurrent(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                       const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv,
                       int n_threads);
/* one (segment, head) pair, recurrent; used by the threaded drivers. fresh: S holds nothing yet
   (read as zeros, only written) */
void plm_gdn_pair_recurrent(float *o, float *S, const float *q, const float *k, const float *v, const float *g,
                            const float *beta, int64_t t0, int64_t t1, int kh, int h, int nk, int nv, int dk,
                            int dv, int fresh);
/* the same for a segment without a state (S[s] NULL: starts from zeros, nothing kept): the state
   lives in *scratch, the calling thread's [dk, dv] buffer (malloc'ed on first use when NULL, freed by
   the caller) */
void plm_gdn_pair_scratch(float *o, float **scratch, const float *q, const float *k, const float *v, const float *g,
                          const float *beta, int64_t t0, int64_t t1, int kh, int h, int nk, int nv, int dk, int dv);

void plm_conv_fast(float *y, float *const *tail, const float *x, const float *w, const int32_t *cu, int n_seg,
                   int C, int K, int n_threads);
void plm_attn_fast(float *o, const float *q, const plm_kv *const *kv, const int64_t *start, const int32_t *cu,
                   int n_seg, int nh, int nkv, int hd, float scale, int n_threads);
/* BF16 weights: panels converted in parallel then OpenBLAS sgemm; T <= PLM_GEMV_MAX_T: direct
   convert-and-dot GEMV threaded over weight rows (handles up to 4 rows; measured best for 1) */
#define PLM_GEMV_MAX_T 1
/* PLM_GEMV_MAX_T < T <= PLM_DIRECT_MAX_T: the direct BF16 GEMM (no converted panel); F32 weights,
   T <= PLM_DIRECT_MAX_T: the direct F32 GEMM (F16 weights take it at every T) */
#ifndef PLM_DIRECT_MAX_T
#define PLM_DIRECT_MAX_T 32
#endif

/* work (multiply-adds) below which a kernel runs on the calling thread alone: a parallel region
   costs a fork/join, and much more when the cores are shared with other processes */
#define PLM_PAR_MIN_WORK (1 << 18)
static inline int plm_team(int n_threads, double work) {
    return work < PLM_PAR_MIN_WORK || n_threads < 1 ? 1 : n_threads;
}
void plm_logprob_fast(float *lp, const float *logits, const int32_t *target, int n, int V, int n_threads);
void plm_matmul_fast(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
/* plm_matmul_fast with BF16 weights at PLM_GEMV_MAX_T < T <= PLM_DIRECT_MAX_T through
   plm_matmul_bf16_avx512 (the kernel table's choice where the CPU has AVX-512) */
void plm_matmul_fast_avx512(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
void plm_matmul_gemv(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
/* batch-invariant matmul: BF16 weights always through plm_matmul_bf16, F32 and F16 weights through
   plm_matmul_f32 (each output element is one fixed sequence of FMAs over its row, whatever T and the
   row's place) */
void plm_matmul_invariant(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
/* BF16 weights used in place: convert-in-registers register-blocked GEMM, threaded over weight rows */
void plm_matmul_bf16(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
/* the same arithmetic on 512-bit vectors (matmul_bf16_avx512.c: AVX-512 F and BW); run only where
   plm_isa_supported(PLM_ISA_AVX512) says so. Every output element is one fixed sequence of FMAs over its
   row whatever T and the row's place */
void plm_matmul_bf16_avx512(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
/* F32 and F16 weights (F16 widened in registers), the same register-blocked direct GEMM with explicit
   FMAs (matmul_f32.c); other dtypes: plm_matmul_fast */
void plm_matmul_f32(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
/* single-pass BF16 (matmul_bf16sp.c; the semantics of plm_matmul_bf16sp_ref, for BF16 weights; other
   dtypes as plm_matmul_fast / plm_matmul_invariant):
     _dpbf16: AVX-512 BF16 (vdpbf16ps: two BF16 products per F32 lane); every output element is one
              fixed sequence of instructions over its row, so it is batch-invariant as it stands;
              run only where plm_isa_supported(PLM_ISA_AVX512BF16) says so
     _avx2:   the rounded activations widened back to F32, then plm_matmul_fast (any CPU)
     _avx2_inv: the same through plm_matmul_invariant (batch-invariant mode) */
void plm_matmul_bf16sp_dpbf16(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
void plm_matmul_bf16sp_avx2(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
void plm_matmul_bf16sp_avx2_inv(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
/* int8 weights (PLM_DT_Q8; matmul_q8.c): AVX2 (vpmaddubsw) and AVX-512 VNNI (vpdpbusd); x86 only,
   run only where plm_isa_supported says so */
void plm_matmul_q8_avx2(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
void plm_matmul_q8_vnni(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
/* the same with activations in two int8 levels (plm_q8x2_quantize_row) */
void plm_matmul_q8x2_avx2(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
void plm_matmul_q8x2_vnni(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);

#endif
