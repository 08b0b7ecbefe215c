/* Kernels over a packed step. Each op family has a plain scalar reference (the oracle, *_ref) and
 * may have fast variants; the dispatch table plm_kernels is filled once per context (references
 * first, then overridden), so call sites never #ifdef.
 *
 * Packed layouts: a step of T tokens is split into n_seg segments by cu[n_seg+1]; per-token tensors
 * are row-major [T, ...]; per-segment states are passed as arrays of pointers, one per segment. */
#ifndef PLM_KERNELS_H
#define PLM_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

/* A weight matrix as stored: row-major [rows, cols], F32/BF16/F16, usually inside the mapping.
 * PLM_DT_Q8 (int8 weights): data holds int8 rows of PLM_Q8_STRIDE(cols) bytes (cols rounded up to
 * whole blocks of PLM_Q8_BLOCK, zero-padded), scale the fp16 scales [rows, PLM_Q8_NB(cols)]: weight
 * (r, c) = data[r][c] * scale[r][c / 32], data in [-127, 127]. Either may lie at any alignment. */
typedef struct {
    const void *data;
    plm_dtype dt;
    int64_t rows, cols;
    const void *scale; /* PLM_DT_Q8 only */
} plm_mat;

#define PLM_Q8_BLOCK 32
#define PLM_Q8_NB(cols) (((cols) + PLM_Q8_BLOCK - 1) / PLM_Q8_BLOCK)
#define PLM_Q8_STRIDE(cols) (PLM_Q8_NB(cols) * PLM_Q8_BLOCK)

/* The KV cache of one attention layer of one sequence, in blocks that never move. */
#define PLM_KV_BLOCK 64
typedef struct {
    float **k, **v; /* [n_blocks] of [PLM_KV_BLOCK, nkv, hd] */
    int n_blocks, cap_blocks;
} plm_kv;

typedef struct {
    /* y[T, W.rows] = x[T, W.cols] . W^T */
    void (*matmul)(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
    /* gated delta rule over packed segments: q,k [T, nk, dk] (l2-normalised, q scaled),
       v [T, nv, dv], g (log decay), beta [T, nv]; S[s] -> [nv, dk, dv] in (initial) and out (final),
       or NULL: the segment starts from zeros and its final state is not kept (kernel scratch);
       o [T, nv, dv]. Value head h reads key head h / (nv / nk). */
    void (*gdn)(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv, int n_threads);
    /* causal depthwise conv1d + SiLU over packed segments: x, y [T, C]; w [C, K];
       tail[s] -> [K-1, C] the segment's previous K-1 inputs (zeros for a fresh sequence), replaced
       by its last K-1 inputs on return; or NULL: zeros before the segment, nothing kept. */
    void (*conv)(float *y, float *const *tail, const float *x, const float *w, const int32_t *cu, int n_seg,
                 int C, int K, int n_threads);
    /* attention within each segment: q [T, nh, hd]; keys/values of segment s are kv[s] positions
       0 .. start[s] + (t - cu[s]) for its token t (the new ones already appended); o [T, nh, hd]. */
    void (*attn)(float *o, const float *q, const plm_kv *const *kv, const int64_t *start, const int32_t *cu,
                 int n_seg, int nh, int nkv, int hd, float scale, int n_threads);
    /* lp[i] = log softmax(logits[i])[target[i]] for n rows of V logits */
    void (*logprob)(float *lp, const float *logits, const int32_t *target, int n, int V, int n_threads);
    /* matmul for PLM_DT_Q8 weights (the int8 path: x quantized per block of 32 on the fly) */
    void (*matmul_q8)(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
    /* matmul for BF16 weights: matmul's own kernel, or with bf16_single_pass the BF16-activation path
       (x rounded once to BF16, products of BF16 pairs summed in F32: plm_matmul_bf16sp_ref) */
    void (*matmul_bf16)(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
    int isa;      /* PLM_ISA_*: the widest instruction set the int8 kernels use in this table */
    int isa_bf16; /* PLM_ISA_* of matmul_bf16. Single pass: SCALAR (the reference), AVX2 (BF16
                     activations widened to F32, the F32 kernels) or AVX512BF16 (vdpbf16ps). F32
                     activations: SCALAR (plm_matmul_ref), AVX2 (the 256-bit kernels; always in
                     batch-invariant mode) or AVX512 (the 512-bit direct GEMM for 2..32 rows) */
} plm_kernels;

/* Instruction sets of the int8 kernels (SCALAR, AVX2, AVX512VNNI, narrowest first), of the
   single-pass BF16 kernels (SCALAR, AVX2, AVX512BF16) and of the BF16-weight kernels with F32
   activations (SCALAR, AVX2, AVX512: AVX-512 F, BW and VL). */
enum { PLM_ISA_SCALAR = 0, PLM_ISA_AVX2 = 1, PLM_ISA_AVX512VNNI = 2, PLM_ISA_AVX512BF16 = 3, PLM_ISA_AVX512 = 4 };
/* The widest int8 PLM_ISA_* this CPU and build can run, lowered by the environment variable
   PLM_ISA=scalar|avx2 (forces the narrower path; a wider name than the CPU has is ignored). */
int plm_isa_best(void);
/* The same for the BF16-weight matmul. single_pass: AVX512BF16 where the CPU has AVX-512 BF16, else
   AVX2 (the widened form runs on any CPU). F32 activations: AVX512 where the CPU has AVX-512 F, BW and
   VL, else AVX2 (the 256-bit kernels are plain C vectors: any CPU). PLM_ISA=avx2 or scalar narrows
   either likewise. */
int plm_isa_best_bf16(int single_pass);
/* 1 when this CPU and build can run isa */
int plm_isa_supported(int isa);
const char *plm_isa_name(int isa);

/* batch_invariant: kernels whose per-row results do not depend on the other rows of the step
   (plm_ctx_params.batch_invariant); bf16_single_pass: BF16 weights multiply BF16-rounded activations
   (plm_ctx_params.bf16_single_pass) */
void plm_kernels_init(plm_kernels *k, int reference_only, int batch_invariant, int bf16_single_pass);
/* bits = 16: the int8 matmuls of the table quantize activations in two levels (plm_matmul_q8x2_*, same
   instruction set); 8 leaves them as plm_kernels_init chose */
void plm_kernels_int8_act(plm_kernels *k, int bits);

/* y = x . W^T for any weight dtype through the table */
static inline void plm_kmatmul(const plm_kernels *k, float *y, const float *x, int64_t T, const plm_mat *W,
                               int n_threads) {
    if (W->dt == PLM_DT_Q8) k->matmul_q8(y, x, T, W, n_threads);
    else if (W->dt == PLM_DT_BF16) k->matmul_bf16(y, x, T, W, n_threads);
    else k->matmul(y, x, T, W, n_threads);
}

/* ---------------------------------------------------------------- single-pass BF16 */
/* xb[C] = x[C] rounded to BF16 as torch casts (round to nearest even; subnormals kept, overflow to
   infinity), a NaN stays a NaN (plm_f32_to_bf16) */
void plm_bf16_round_row(uint16_t *xb, const float *x, int64_t C);
/* The reference of the single-pass BF16 matmul: each x row rounded once to BF16 (plm_bf16_round_row),
   y[t, r] = sum over c in order of bf16(x[t, c]) * w[r, c], every product formed in F32 (exact: two
   8-bit significands) and summed in F32. Weights of another dtype: plm_matmul_ref (no rounding). */
void plm_matmul_bf16sp_ref(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);

/* ---------------------------------------------------------------- int8 (Q8) */
/* Quantizes one row of C floats in blocks of 32: q[PLM_Q8_STRIDE(C)] (zero-padded) and one scale per
   block, d = max|x| / 127, q = round-to-nearest-even(x / d) in [-127, 127]; an all-zero block has
   d = 0 and q = 0; a block holding a non-finite value has d = NaN (its products are NaN). Weights
   keep fp16 scales (d16; q computed with the rounded scale); activations fp32 (df). Either pointer
   may be NULL. */
void plm_q8_quantize_row(int8_t *q, uint16_t *d16, float *df, const float *x, int64_t C);
/* Activations: as plm_q8_quantize_row but one fp32 scale per group of PLM_Q8_XG values (df
   [PLM_Q8_STRIDE(C) / PLM_Q8_XG]: one int32 lane of the dot-product instructions each, so the kernels
   scale lane by lane at no extra cost). q2 non-NULL: a second level, q2 = round-to-nearest-even((x / d
   - q1) * 256) in [-127, 127] (the first level's rounding error in 256ths of d), and df = d / 256:
   x ~ df * (256 q1 + q2), about 15 bits. */
#define PLM_Q8_XG 4
void plm_q8_quantize_act(int8_t *q1, int8_t *q2, float *df, const float *x, int64_t C);
/* A quantized copy of W (any dtype): q [rows, PLM_Q8_STRIDE(cols)] and d16 [rows, PLM_Q8_NB(cols)]
   allocated with malloc (freed by the caller); threaded over rows. PLM_ERR_NOMEM on failure. */
int plm_q8_quantize_mat(int8_t **q, uint16_t **d16, const plm_mat *W, int n_threads);
/* Rows r0 .. r1-1 of W into q and d16 laid out as plm_q8_quantize_mat's (whole-matrix buffers). */
int plm_q8_quantize_rows(int8_t *q, uint16_t *d16, const plm_mat *W, int64_t r0, int64_t r1, int n_threads);
/* The reference: x quantized per row with plm_q8_quantize_act, each group's int32 dot product times
   d_w * d_x, summed over the groups in order, in float. */
void plm_matmul_q8_ref(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
/* The same with x in two levels: each group's 256 * (q1 . w) + (q2 . w) in int32, times d_w * df. */
void plm_matmul_q8x2_ref(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);

/* references */
void plm_matmul_ref(float *y, const float *x, int64_t T, const plm_mat *W, int n_threads);
void plm_gdn_ref(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                 const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv, int n_threads);
void plm_conv_ref(float *y, float *const *tail, const float *x, const float *w, const int32_t *cu, int n_seg,
                  int C, int K, int n_threads);
void plm_attn_ref(float *o, const float *q, const plm_kv *const *kv, const int64_t *start, const int32_t *cu,
                  int n_seg, int nh, int nkv, int hd, float scale, int n_threads);
void plm_logprob_ref(float *lp, const float *logits, const int32_t *target, int n, int V, int n_threads);
/* the fast variants are declared in kernels/fast.h */

/* element-wise and row ops (single implementations; vectorised by the compiler) */
/* y[T, n] = x * rsqrt(mean(x^2) + eps) * (1 + w)  (zero-centred RMSNorm); y may alias x */
void plm_rmsnorm_zc(float *y, const float *x, const float *w, int64_t T, int n, float eps);
/* per row of n: y = rmsnorm(x) * w * silu(z)  (gated RMSNorm, plain weight); y may alias x */
void plm_rmsnorm_gated(float *y, const float *x, const float *z, const float *w, int64_t rows, int n, float eps);
/* per row of n: x *= scale * rsqrt(sum x^2 + 1e-6) */
void plm_l2norm_rows(float *x, int64_t rows, int n, float scale);
/* rotate-half RoPE of each head of x [T, nh, hd] at positions pos[T], as transformers' default
 * rotary with dim = rot = int(head_dim * partial_rotary_factor): ceil(rot/2) frequencies
 * 1 / theta^(2i/rot), turning the first 2 * ceil(rot/2) channels (an odd rot turns rot + 1; the
 * caller guarantees 2 * ceil(rot/2) <= hd); the channels after them pass through */
void plm_rope(float *x, const int64_t *pos, int64_t T, int nh, int hd, int rot, double theta);
/* g = x * silu(g) elementwise (SwiGLU: writes silu(gate) * up into gate) */
void plm_swiglu(float *gate, const float *up, int64_t n);
/* x[T, E] -> per token the top k (indices, renormalised softmax weights) */
void plm_moe_route(int32_t *idx, float *w, const float *logits, int64_t T, int E, int k);
/* embedding rows: x[T, H] = E[tokens] */
void plm_embed_rows(float *x, const plm_mat *E, const int32_t *tokens, int64_t T);
/* the first maximum of l[0..V); NaN never wins (a leading NaN is replaced by the first number) */
int32_t plm_argmax_row(const float *l, int32_t V);
/* one matrix row converted to f32 */
void plm_mat_row(float *dst, const plm_mat *W, int64_t r);

static inline float plm_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float plm_silu(float x) { return x / (1.0f + expf(-x)); }
static inline float plm_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

#endif
