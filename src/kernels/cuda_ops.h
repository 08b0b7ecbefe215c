/* The CUDA kernels (the .cu files of src/kernels): the same ops as the CPU kernels of kernels.h, over the same packed
 * layouts, on device memory. Every pointer is a device pointer, arrays of per-segment pointers
 * included; `stream` is a cudaStream_t (NULL: the default stream). The launchers only enqueue work:
 * the caller checks cudaGetLastError and synchronises. seg_of[t] is the segment of token t (the
 * inverse of cu), so a kernel can run one thread per token without searching cu.
 * C callable: the test harness (tests/test_cuda.c) drives each against its CPU reference. */
#ifndef PLM_KERNELS_CUDA_OPS_H
#define PLM_KERNELS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* limits of the kernels (checked when a CUDA context opens a model) */
#define PLM_CUDA_MAX_DK 256   /* delta-rule key dim */
#define PLM_CUDA_MAX_HD 512   /* attention head dim */
#define PLM_CUDA_MAX_K 16     /* conv taps */

/* conv1d + SiLU: plm_conv_ref's contract; tail is a device array [n_seg] of device pointers. */
void plm_conv_cuda(float *y, float *const *tail, const float *x, const float *w, const int32_t *cu,
                   const int32_t *seg_of, int n_seg, int64_t T, int C, int K, void *stream);
/* the same with x BF16 (__nv_bfloat16 [T, C], the single-pass projection's output), each value widened
 * exactly; tails stay FP32 */
void plm_conv_bf16_cuda(float *y, float *const *tail, const void *x, const float *w, const int32_t *cu,
                        const int32_t *seg_of, int n_seg, int64_t T, int C, int K, void *stream);
/* and with y BF16 too (__nv_bfloat16 [T, C], each output rounded once) */
void plm_conv_bb_cuda(void *y, float *const *tail, const void *x, const float *w, const int32_t *cu,
                      const int32_t *seg_of, int n_seg, int64_t T, int C, int K, void *stream);
/* gated delta rule: plm_gdn_ref's contract (S: device array [n_seg] of [nv, dk, dv] states). Each
 * segment runs token by token (the recurrent form) with its state held in registers. */
void plm_gdn_cuda(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                  const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv, void *stream);
/* the same, recurrent form only, for the segments shorter than skip_from tokens (the others untouched) */
void plm_gdn_rec_cuda(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                      const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv, int skip_from,
                      void *stream);
/* The linear-attention mixer of a decode step, every segment one token (n_seg == T, segment t = token
 * t; kernels/gdn_dec.cu): conv1d + SiLU from raw [T, 2 nk dk + nv dv] and each segment's tail (the tails
 * shifted to take the token), the q/k L2 norms (q scaled by 1/sqrt(dk)), sigmoid(b) into beta and the
 * log decay neg_A softplus(a + dt_bias) into g, with q, k, v (FP32 work arrays) written out; then the
 * delta rule's step on each state S[t] into o (FP32 [T, nv dv] work) and the gated RMSNorm
 * gnorm o / rms(o) silu(z) per value head, written to y (FP32 [T, nv dv], may be o) or, y NULL, to hi
 * (and lo when not NULL) as BF16 hi + remainder, as plm_rmsnorm_gated_bf16_cuda writes them. ld: 0,
 * each input [T, its width]; otherwise row t of raw, b, a and z each at t * ld (the four projections
 * stacked into one product, row t [raw | z | b | a]). With ld 0, b may alias beta and a g (not with a
 * stacked input: a token's beta would overwrite another token's b). ctr: PLM_GDN_DEC_CTRS counters of
 * device memory, zero before the first call (each call leaves them zero); calls sharing them run one
 * after another. What plm_gdn_dec_fits
 * refuses is not run: the caller takes the five-kernel path. Under programmatic launch (a graph's
 * programmatic edges) the tails, the states, conv_w and gnorm are read before the kernels wait for the
 * one launched before them: that one must not write them (the step's projections write raw, b, a, z). */
#define PLM_GDN_DEC_CTRS 65536
int plm_gdn_dec_fits(int64_t T, int nk, int nv, int dk, int dv, int K);
/* Whether plm_gdn_dec_cuda runs as one kernel (within plm_gdn_dec_fits: nv == nk, dk and dv at most 128,
 * dv even, K at most 8; never with -DPLM_GDN_DEC_FUSED=0): then q, k, v, beta and g may be NULL (not
 * written; outputs, tails and states the two kernels' bit for bit), ctr and o unused, S[t] 8-byte aligned. */
int plm_gdn_dec_fused_fits(int nk, int nv, int dk, int dv, int K);
void plm_gdn_dec_cuda(float *y, void *hi, void *lo, float *o, unsigned *ctr, float *const *tails, float *const *S,
                      const float *raw, const float *conv_w, float *q, float *k, float *v, float *beta, float *g,
                      const float *b, const float *a, const float *neg_A, const float *dt_bias, const float *z,
                      const float *gnorm, int64_t T, int nk, int nv, int dk, int dv, int K, float eps, int64_t ld,
                      void *stream);
/* The same always in the two kernels (where plm_gdn_dec_fits): the op harness compares the forms' bits. */
void plm_gdn_dec2_cuda(float *y, void *hi, void *lo, float *o, unsigned *ctr, float *const *tails, float *const *S,
                       const float *raw, const float *conv_w, float *q, float *k, float *v, float *beta, float *g,
                       const float *b, const float *a, const float *neg_A, const float *dt_bias, const float *z,
                       const float *gnorm, int64_t T, int nk, int nv, int dk, int dv, int K, float eps, int64_t ld,
                       void *stream);
/* The gated delta rule on tensor cores (kernels/gdn_tc.cu): segments of PLM_GDN_CHUNKED_MIN tokens or
 * more in chunks of PLM_GDN_CHUNK, every chunk's state-free part in parallel, then the state scan;
 * shorter segments take the recurrent form, unless plm_gdn_chunks folded them into the table (a chunk
 * each: up to PLM_GDN_FOLD_MAX of them beside longer ones). tab: plm_gdn_chunks' table (pairs: segment, first token;
 * room for 2 * (T / PLM_GDN_CHUNK + n_seg) entries), built on the host from the host's cu and uploaded,
 * with n_long and n_short as it counts them; work: plm_gdn_work_floats(T, ...) floats of device memory.
 * flags: PLM_GDN_PRECISE splits operands into two BF16 parts (FP32-grade; otherwise one BF16
 * rounding per operand); PLM_GDN_VT32 / PLM_GDN_VT64 force the scan's value tile (the op harness
 * tests both; otherwise chosen by the work's shape). Key dims above PLM_GDN_TC_MAX_DK (see
 * plm_gdn_tc_fits) run plm_gdn_cuda instead. */
/* whether programmatic dependent launch may link kernels on device dev: compute capability 9 (the
 * build's cubin; any other device runs the compute_80 PTX, which has no grid-dependency instructions),
 * not under CUDA_FORCE_PTX_JIT (the same PTX), and not switched off by PLM_PDL=0. One answer for the
 * step's graphs and the delta rule's prep-beside-the-scan launch. */
int plm_cuda_pdl_ok(int dev);
#define PLM_GDN_CHUNK 64
#define PLM_GDN_CHUNKED_MIN 16
#define PLM_GDN_TC_MAX_DK 128
#define PLM_GDN_PRECISE 1
#define PLM_GDN_VT32 2
#define PLM_GDN_VT64 4
#define PLM_GDN_BF2 8   /* single pass, BF16 copies, tiles of 64: two sets of input blocks, one block an SM */
#define PLM_GDN_VT16 16 /* single pass, BF16 copies: value tiles of 16 (chosen by itself when tiles of 32 would
                           leave SMs idle) */
/* single pass from BF16 copies: the WY scan (W and U from the chunk prep, two rounds of products a chunk)
 * where segments average two chunks or more, the five-product scan otherwise; these force either. Where
 * every chunked segment is one chunk and neither is set, one kernel does the prep and the scan (value
 * tiles of 64: the VT and BF2 flags do not apply there) */
#define PLM_GDN_FUSED 32
#define PLM_GDN_WY 64
/* the WY scan at value tiles of 16 with 4 warps doing both products of a chunk's first round, instead of
 * 8 warps in two roles (the default there) */
#define PLM_GDN_WY4 128
/* at value tiles of 16 the WY scan's chunk prep runs beside the scan (on Hopper, a programmatic launch;
 * not while the stream is being captured); PLM_GDN_PREP_BEFORE runs it before the scan instead, and for
 * tests PLM_GDN_PREP_FEW caps the prep's grid beside the scan at 3 blocks so that each walks many items */
#define PLM_GDN_PREP_BEFORE 256
#define PLM_GDN_PREP_FEW 512
/* at value tiles of 16 in two roles, the chunks' copies on the computing warps themselves instead of
 * on four copy warps (the default where the key dimension padded to 16 is a power of two) */
#define PLM_GDN_NO_PROD 1024
/* the WY scan at value tiles of 64 on mma.sync even where the warpgroup-product scan (Hopper) would run */
#define PLM_GDN_MMA_SYNC 2048
/* plm_gdn_chunks fills tab and returns its chunks; n_long: segments of PLM_GDN_CHUNKED_MIN tokens or more;
 * n_short: segments of 1 .. PLM_GDN_CHUNKED_MIN - 1 tokens listed too, a chunk each (where there are long
 * ones and at most PLM_GDN_FOLD_MAX short ones; else 0, and the recurrent form takes them) */
#define PLM_GDN_FOLD_MAX 16
int plm_gdn_chunks(int32_t *tab, const int32_t *cu, int n_seg, int *n_long, int *n_short);
size_t plm_gdn_work_floats(int64_t T, int nv, int dk, int dv);
int plm_gdn_tc_fits(int dk, int dv);
/* qkv_bf (single pass only, may be NULL): BF16 copies of q, k and v laid end to end (q [T, nk, dk],
 * k likewise, v [T, nv, dv]), as plm_gdn_prep_cuda writes them; used when plm_gdn_bf_fits(dk, dv): the
 * tensor-core kernels take the shape (plm_gdn_tc_fits) and dk, dv are multiples of 8 */
int plm_gdn_bf_fits(int dk, int dv);
/* the WY scan at value tiles of 64 runs on warpgroup products (k_gdn_wg_scan) for this key dimension on
 * the current device: 1; 0 where the device is not of compute capability 9.0 (or the driver compiles the
 * portable PTX), the key dimension is not 64 or 128, or PLM_GDN_MMA_SYNC is in flags; -1 on a 9.0 device
 * whose loaded code is not the sm_90a build's (the op harness fails that: variant 16 would test the
 * mma.sync scan twice) */
int plm_gdn_wg_ok(int dk, int flags);
void plm_gdn_tc_cuda(float *o, float *const *S, const float *q, const float *k, const float *v, const void *qkv_bf,
                     const float *g, const float *beta, const int32_t *cu, int n_seg, int64_t T, const int32_t *tab,
                     int n_chunks, int n_long, int n_short, float *work, int nk, int nv, int dk, int dv, int flags,
                     void *stream);
/* from the conv output mixed [T, 2*nk*dk + nv*dv] and the projections b, a [T, nv]: q, k [T, nk, dk]
 * L2-normalised (q also scaled by 1/sqrt(dk)), v [T, nv, dv], beta = sigmoid(b) and the log decay
 * g = neg_A * softplus(a + dt_bias), each [T, nv] (beta may alias b, g may alias a) */
void plm_gdn_prep_cuda(float *q, float *k, float *v, float *beta, float *g, const float *mixed, const float *b,
                       const float *a, const float *neg_A, const float *dt_bias, int64_t T, int nk, int nv, int dk,
                       int dv, void *stream);
/* the same, also writing the BF16 copies of q, k, v that plm_gdn_tc_cuda's qkv_bf takes */
void plm_gdn_prep_bf_cuda(float *q, float *k, float *v, void *qkv_bf, float *beta, float *g, const float *mixed,
                          const float *b, const float *a, const float *neg_A, const float *dt_bias, int64_t T, int nk,
                          int nv, int dk, int dv, void *stream);
/* the same from BF16 mixed (__nv_bfloat16 [T, conv_dim], plm_conv_bb_cuda's output), each value widened
 * exactly; q, k, v (FP32) only for the tokens of segments shorter than PLM_GDN_CHUNKED_MIN (cu, seg_of:
 * device tables of the step, not NULL), the ones plm_gdn_tc_cuda's recurrent kernel reads when it reads
 * the copies (plm_gdn_bf_fits; otherwise its simple kernels read every token's: use
 * plm_gdn_prep_bf_cuda), the copies (qkv_bf, not NULL) for every token */
void plm_gdn_prep_bb_cuda(float *q, float *k, float *v, void *qkv_bf, float *beta, float *g, const void *mixed,
                          const float *b, const float *a, const float *neg_A, const float *dt_bias, const int32_t *cu,
                          const int32_t *seg_of, int64_t T, int nk, int nv, int dk, int dv, void *stream);
/* KV cache blocks of one attention layer: block b of segment s is kb[boff[s] + b] (vb likewise), each
 * [PLM_KV_BLOCK, nkv, hd]. Append writes token t's k, v [T, nkv, hd] at its position start[s] + (t - cu[s]),
 * and, where kbf and vbf are not NULL, their BF16 roundings into kbf, vbf [T, nkv, hd] (the single-pass
 * attention reads the step's own keys from there). */
void plm_kv_append_cuda(float *const *kb, float *const *vb, const int32_t *boff, const float *k, const float *v,
                        void *kbf, void *vbf, const int64_t *start, const int32_t *cu, const int32_t *seg_of,
                        int64_t T, int nkv, int hd, void *stream);
/* A decode step's attention inputs in one launch: the zero-centred RMSNorm of each query head (read from
 * qg [T, nh, 2 hd], q then the gate, as the q projection writes them) and key head (k [T, nkv, hd]) with
 * q_norm / k_norm, RoPE over their first rot dims at pos[t] (plm_rope_cuda's pairs), the queries into q
 * [T, nh, hd], the keys and values v [T, nkv, hd] appended to the KV blocks as plm_kv_append_cuda does.
 * What plm_attn_dec_prep_fits refuses is not run. */
int plm_attn_dec_prep_fits(int64_t T, int hd, int rot);
void plm_attn_dec_prep_cuda(float *q, float *const *kb, float *const *vb, const int32_t *boff, const float *qg,
                            const float *k, const float *v, const float *q_norm, const float *k_norm,
                            const int64_t *start, const int32_t *cu, const int32_t *seg_of, const int64_t *pos,
                            const float *inv_freq, int64_t T, int nh, int nkv, int hd, int rot, float eps,
                            void *stream);
/* attention: plm_attn_ref's contract over the blocks above (online softmax, GQA) */
void plm_attn_cuda(float *o, const float *q, float *const *kb, float *const *vb, const int32_t *boff,
                   const int64_t *start, const int32_t *cu, const int32_t *seg_of, int64_t T, int nh, int nkv, int hd,
                   float scale, void *stream);
/* idx[i] = plm_argmax_row(logits[i], V) (the first maximum; NaN never wins; a row of NaN gives 0), one
 * block a row; any V and alignment */
void plm_argmax_cuda(int32_t *idx, const float *logits, int n, int V, void *stream);
/* the same over BF16 logits (n rows of V; single-pass steps' greedy rows, as a BF16 lm_head gives them) */
void plm_argmax_bf16_cuda(int32_t *idx, const void *logits, int n, int V, void *stream);
/* The same attention, tiled: a block takes up to PLM_ATTN_ROWS query rows, QT = PLM_ATTN_ROWS / (nh /
 * nkv) consecutive tokens of one segment times the query heads of one kv head, and streams the
 * segment's keys in tiles of 32 through shared memory, so each key and value is read once per block
 * rather than once per (token, head). tiles[2i], tiles[2i+1]: segment and first token of tile i
 * (plm_attn_tiles builds them on the host). Head dims up to 256. */
#define PLM_ATTN_ROWS 64
#define PLM_ATTN_TILED_MAX_HD 256
int plm_attn_qt(int nh, int nkv);
/* fills tiles (room for n_tokens / qt + n_seg pairs) from the host's cu; returns the count */
int plm_attn_tiles(int32_t *tiles, const int32_t *cu, int n_seg, int qt);
void plm_attn_tiled_cuda(float *o, const float *q, float *const *kb, float *const *vb, const int32_t *boff,
                         const int64_t *start, const int32_t *cu, const int32_t *tiles, int n_tiles, int nh, int nkv,
                         int hd, float scale, void *stream);
/* The same tiles on tensor cores (kernels/attn.cu, flash-attention style, 64 query rows a block;
 * PLM_ATTN_ROWS must stay 64 for the tiles to match): precise splits operands into hi + lo BF16
 * parts (FP32-grade), 0 rounds them to BF16 once. Shapes outside plm_attn_tc_fits (nh / nkv > 64,
 * head dims above 256) run plm_attn_tiled_cuda. */
int plm_attn_tc_fits(int nh, int nkv, int hd);
/* Options of plm_attn_tc_cuda (NULL: none).
 * kbf, vbf: the step's keys and values rounded to BF16, [T, nkv, hd] (plm_kv_append_cuda writes them):
 *   the single-pass kernel reads the step's own keys there by cp.async, under its products, and only
 *   a cached prefix from the FP32 blocks (used where hd is a multiple of 8).
 * split > 1: each tile's keys in split shares, one block each (flash-decoding, for steps with too few
 *   tiles to fill the GPU); partial results in part (plm_attn_part_floats floats), then merged into o.
 * T: the step's tokens (with split). */
typedef struct {
    const void *kbf, *vbf;
    int split;
    float *part;
    int64_t T;
} plm_attn_opt;
#define PLM_ATTN_SPLIT_MAX 16
/* the splits for a step of n_tiles tiles whose longest segment spans max_key_blocks KV blocks, on a GPU
 * of n_sm SMs: 1 where the tiles fill it, else enough for about two blocks an SM (<= PLM_ATTN_SPLIT_MAX) */
int plm_attn_split(int n_tiles, int nkv, int max_key_blocks, int n_sm);
size_t plm_attn_part_floats(int split, int64_t T, int nh, int hd);
void plm_attn_tc_cuda(float *o, const float *q, float *const *kb, float *const *vb, const int32_t *boff,
                      const int64_t *start, const int32_t *cu, const int32_t *tiles, int n_tiles, int nh, int nkv,
                      int hd, float scale, int precise, const plm_attn_opt *opt, void *stream);
/* Attention of decode steps (segments of one or two tokens): a block per (token, kv head, key split)
 * in FP32, the query heads of one kv head sharing each tile of keys; split > 1 writes partial results
 * into part (plm_attn_part_floats) and merges them into o. Shapes outside plm_attn_dec_fits (nh / nkv
 * > 8, head dims above 256) run plm_attn_cuda. */
int plm_attn_dec_fits(int nh, int nkv, int hd);
void plm_attn_dec_cuda(float *o, const float *q, float *const *kb, float *const *vb, const int32_t *boff,
                       const int64_t *start, const int32_t *cu, const int32_t *seg_of, int64_t T, int nh, int nkv,
                       int hd, float scale, int split, float *part, void *stream);
/* lp[i] = log softmax(logits[i])[target[i]] */
void plm_logprob_cuda(float *lp, const float *logits, const int32_t *target, int n, int V, void *stream);
/* the same over BF16 logits (__nv_bfloat16 [n, V]: the single-pass lm_head's output), each widened exactly */
void plm_logprob_bf16_cuda(float *lp, const void *logits, const int32_t *target, int n, int V, void *stream);

/* row and element-wise ops, as their CPU twins in kernels.h */
void plm_rmsnorm_zc_cuda(float *y, const float *x, const float *w, int64_t rows, int n, float eps, void *stream);
/* the same with x's rows x_stride floats apart (y contiguous): the attention's queries read in place from
 * the q projection's [T, nh, 2 hd] output (x = qg, x_stride = 2 hd) */
void plm_rmsnorm_zc_rows_cuda(float *y, const float *x, int64_t x_stride, const float *w, int64_t rows, int n,
                              float eps, void *stream);
/* x += d, then h = rmsnorm_zc(x) * (1 + w): the residual add fused with the next norm. Under programmatic
 * launch x and w are read before the kernel waits for the one launched before it (which writes d, not x) */
void plm_add_rmsnorm_zc_cuda(float *h, float *x, const float *d, const float *w, int64_t rows, int n, float eps,
                             void *stream);
/* the general form: x += d, or with d2 x += (d + d2) (a product's halves, summed first as
 * plm_add_halves_cuda sums them); h as above; hi (__nv_bfloat16 [rows, n], NULL: none) and lo (NULL:
 * none) h's BF16 form and remainder as plm_to_bf16_cuda writes them, the next GEMM's input */
void plm_add_rmsnorm_zc_split_cuda(float *h, void *hi, void *lo, float *x, const float *d, const float *d2,
                                   const float *w, int64_t rows, int n, float eps, void *stream);
/* the same with a product's parts (split-K) summed first: d [parts, rows, n], x += ((d0 + d1) + d2) + ..
 * (parts 2: plm_add_rmsnorm_zc_split_cuda's order with d2 = d + rows n) */
void plm_add_rmsnorm_zc_parts_cuda(float *h, void *hi, void *lo, float *x, const float *d, int parts, const float *w,
                                   int64_t rows, int n, float eps, void *stream);
void plm_rmsnorm_gated_cuda(float *y, const float *x, const float *z, const float *w, int64_t rows, int n, float eps,
                            void *stream);
/* inv_freq [ceil(rot/2)] as plm_rope computes it (host side, float); turns 2 * ceil(rot/2) channels */
void plm_rope_cuda(float *x, const int64_t *pos, int64_t T, int nh, int hd, int rot, const float *inv_freq,
                   void *stream);
/* the elementwise steps whose result only feeds a BF16 GEMM, written straight as its input: hi the BF16
 * rounding of the FP32 result, lo (when not NULL) the BF16 of the remainder, as plm_to_bf16_cuda makes */
void plm_swiglu_bf16_cuda(void *hi, void *lo, const float *gate, const float *up, int64_t n, void *stream);
/* the same from one FP32 [rows, 2 I] array gu whose rows hold gate then up (the gate and up projections
 * stacked into one product): hi, lo [rows, I] */
void plm_swiglu_bf16_rows_cuda(void *hi, void *lo, const float *gu, int64_t rows, int64_t I, void *stream);
/* y[i] = a[i] + a[n + i] (a: [2 n], a product's halves over hi rows then lo rows); y may not overlap a */
void plm_add_halves_cuda(float *y, const float *a, int64_t n, void *stream);
void plm_gate_mul_bf16_cuda(void *hi, void *lo, const float *o, const float *gate, int64_t n, void *stream);
/* the same with the gate read in place from qg [rows, 2 hd] (each head's query then gate): o [rows, hd] */
void plm_gate_mul_qg_bf16_cuda(void *hi, void *lo, const float *o, const float *qg, int64_t rows, int hd, void *stream);
/* the gated norm's single-pass form with z BF16 (__nv_bfloat16 [rows, n], the z projection's BF16 output):
 * hi = bf16(w x / rms(x) silu(z)) */
void plm_rmsnorm_gated_bz_cuda(void *hi, const float *x, const void *z, const float *w, int64_t rows, int n, float eps,
                               void *stream);
void plm_rmsnorm_gated_bf16_cuda(void *hi, void *lo, const float *x, const float *z, const float *w, int64_t rows,
                                 int n, float eps, void *stream);
void plm_swiglu_cuda(float *gate, const float *up, int64_t n, void *stream);
/* out = bf16(silu(gate) up) from BF16 gate and up (single-pass GEMM outputs), each widened exactly; all
 * three __nv_bfloat16 [n] */
void plm_swiglu_bb_cuda(void *out, const void *gate, const void *up, int64_t n, void *stream);
/* the same from one [rows, 2 I] BF16 array gu whose rows hold gate then up (one product of the gate and
 * up projections stacked): out [rows, I] */
void plm_swiglu_bb_rows_cuda(void *out, const void *gu, int64_t rows, int64_t I, void *stream);
void plm_moe_route_cuda(int32_t *idx, float *w, const float *logits, int64_t T, int E, int k, void *stream);
/* x[T, cols] = rows tokens[t] of E (bf16 != 0: BF16, else F32) */
void plm_embed_rows_cuda(float *x, const void *E, int bf16, int64_t cols, const int32_t *tokens, int64_t T,
                         void *stream);
/* qg [T, nh, 2*hd] (per head: query then gate) -> q, gate [T, nh, hd] */
void plm_split_qgate_cuda(float *q, float *gate, const float *qg, int64_t T, int nh, int hd, void *stream);
/* o *= sigmoid(gate) */
void plm_gate_mul_cuda(float *o, const float *gate, int64_t n, void *stream);
/* dst[i, :] = src[rows[i], :] for i < n */
void plm_gather_rows_cuda(float *dst, const float *src, const int32_t *rows, int64_t n, int cols, void *stream);
/* out[t, :] = sum_j w[t*k + j] * ye[map[t*k + j], :] (MoE combine, j in order) */
void plm_moe_combine_cuda(float *out, const float *ye, const int32_t *map, const float *w, int64_t T, int k, int H,
                          void *stream);
/* out[t, :] += sigmoid(score[t]) * y[t, :] (the shared expert's gate) */
void plm_sigmoid_scale_add_cuda(float *out, const float *y, const float *score, int64_t T, int H, void *stream);
/* y[t, r] = sum_c W[r, c] x[t, c] for a few input rows (kernels/gemv.cu): W BF16 [rows, cols]
 * row-major, y FP32 [T, rows], sums in FP32, every weight read once. The input is x (FP32 [T, cols],
 * each weight times x unrounded) when x != NULL; else xb (BF16 [T, cols]) plus, when lo != NULL, its
 * BF16 remainder (hi + lo taken as the FP32 value), as plm_to_bf16_cuda writes them. T from 1 to
 * PLM_GEMV_MAX_T (others launch nothing); any cols and alignment (16-byte loads where cols % 8 == 0
 * and the pointers are 16-byte aligned, one column at a time otherwise). */
#define PLM_GEMV_MAX_T 8
void plm_gemv_bf16_cuda(float *y, const void *W, const float *x, const void *xb, const void *lo, int64_t T,
                        int64_t rows, int64_t cols, void *stream);
/* n products that share the input (the same x, or xb and lo, T and cols), y[j] = W[j] x with W[j] BF16
 * [rows[j], cols]: y, W and rows are host arrays of n entries, the pointers in them device pointers.
 * Up to PLM_GEMV_MULTI products a launch (more take further launches); each product's result is that
 * of its own plm_gemv_bf16_cuda call, bit for bit (the same column split and reduction order). */
#define PLM_GEMV_MULTI 4
void plm_gemv_bf16_multi_cuda(int n, float *const *y, const void *const *W, const int64_t *rows, const float *x,
                              const void *xb, const void *lo, int64_t T, int64_t cols, void *stream);
/* The MLP's gated product for T <= PLM_GEMV_MAX_T rows of FP32 x (decode, precise) or, x NULL, of BF16
 * xb (decode, single pass): out[t, r] = silu(Wg[r] . x_t) (Wu[r] . x_t) for r < rows, written as BF16 hi
 * (+ lo, its remainder, where lo is not NULL) [T, rows], each sum bit for bit the plain GEMV's on the
 * same input, the result what plm_swiglu_bf16_cuda writes from the two products. One launch instead of
 * two; returns 0 (launching nothing) where T has no such kernel (T = 3), the arguments are empty, or one
 * of Wg and Wu is 16-byte aligned and the other not. The output must not overlap the input. */
int plm_gemv_glu_bf16_cuda(void *hi, void *lo, const void *Wg, const void *Wu, int64_t rows, const float *x,
                           const void *xb, int64_t T, int64_t cols, void *stream);
/* The same products for PLM_GEMV_MAX_T < T <= PLM_SKINNY_MAX_T input rows (kernels/skinny.cu), on tensor
 * cores (BF16 operands, FP32 sums), every weight read once: the same W, y and three input forms, x
 * taken as hi + lo BF16 parts (split as plm_to_bf16_cuda splits it, so x gives the bits of its own
 * hi + lo), xb alone as one BF16 pass. Other T launch nothing; any cols and alignment. work:
 * plm_skinny_work_bytes() bytes of device memory, zero before its first use (every launch leaves it
 * so), where products of few rows split their columns over several blocks (partial sums added in a
 * fixed order: the same bits every run); NULL: no split. A stream's launches may share one work area
 * (they run in turn), concurrent launches may not. The multi form as plm_gemv_bf16_multi_cuda's, each
 * product's result its own launch's bit for bit. */
#define PLM_SKINNY_MAX_T 64
size_t plm_skinny_work_bytes(void);
void plm_skinny_bf16_cuda(float *y, const void *W, const float *x, const void *xb, const void *lo, int64_t T,
                          int64_t rows, int64_t cols, void *work, void *stream);
void plm_skinny_bf16_multi_cuda(int n, float *const *y, const void *const *W, const int64_t *rows, const float *x,
                                const void *xb, const void *lo, int64_t T, int64_t cols, void *work, void *stream);
/* float to bf16 (round to nearest even), n elements; dst is a __nv_bfloat16 array. With lo != NULL
 * also the remainder lo = bf16(src - dst), so that dst + lo carries src to about 2^-17. */
void plm_to_bf16_cuda(void *dst, void *lo, const float *src, int64_t n, void *stream);

#ifdef __cplusplus
}
#endif
#endif
