/* Internal: what the host side (context, states, step) asks of the CUDA backend. Implemented in
 * model/cuda_backend.cu when the build has CUDA (make CUDA=1), and by model/cuda_stub.c otherwise,
 * whose functions all answer PLM_ERR_UNSUPPORTED. All functions are C. */
#ifndef PLM_MODEL_CUDA_H
#define PLM_MODEL_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "packlm.h"

#ifdef __cplusplus
extern "C" {
#endif

struct plm_model;
struct plm_ctx;
typedef struct plm_cuda plm_cuda;

/* 1 when this build has the CUDA backend. */
int plm_cuda_built(void);

/* Whether cuda:dev can be used: PLM_OK, or why not (no driver, no device, an old driver). */
plm_status plm_cuda_probe(int dev, plm_error *err);
/* Opens cuda:dev for model m: checks the device and driver, creates the stream and cuBLAS handle,
 * uploads the weights. mem_limit: bytes this context may allocate (0: no limit). */
plm_status plm_cuda_open(plm_cuda **out, const struct plm_model *m, int dev, size_t mem_limit, int bf16_single_pass,
                         plm_error *err);
void plm_cuda_close(plm_cuda *g);
size_t plm_cuda_bytes(const plm_cuda *g);
/* decode graphs captured so far, and how many of them updated the graph they replaced in place (tests) */
void plm_cuda_graph_counts(const plm_cuda *g, unsigned *captured, unsigned *updated);

/* Steps with arrays in device memory (PLM_MEM_DEVICE). plm_cuda_where: PLM_OK when p is memory of
 * the context's GPU, else PLM_ERR_INPUT naming what and where p is (host memory, another GPU). */
plm_status plm_cuda_where(struct plm_ctx *c, const void *p, const char *what, plm_error *err);
/* What the device found in a step's device arrays; an index is -1 where nothing is wrong. */
typedef struct {
    int32_t bad_token, token;   /* the first index whose token id is outside [0, vocab), and the id */
    int32_t bad_pos, pos;       /* the first index whose position is not start[s] + offset in segment s */
    int32_t bad_target, target; /* the first index whose target is >= vocab */
    int32_t n_score;            /* targets >= 0 */
    int32_t unused;
} plm_cuda_check;
/* Checks the device arrays among tokens, pos, target (NULL: not on the device, not checked) of a step
 * of T tokens with valid segments cu[0 .. n_seg] (host) and start lengths start[] (host): one launch
 * sequence and one read-back of 32 bytes. */
plm_status plm_cuda_check_arrays(struct plm_ctx *c, const int32_t *tokens, const int32_t *pos, const int32_t *target,
                                 int32_t T, const int32_t *cu, const int64_t *start, int n_seg, plm_cuda_check *r,
                                 plm_error *err);
/* plm_segments_from_positions_on for a CUDA context (pos: device memory, checked by the caller). */
plm_status plm_cuda_segments(struct plm_ctx *c, int32_t *cu, int32_t *n_seg, const int32_t *pos, int32_t n,
                             plm_error *err);

/* Runs a validated step whose states are on the context's device and hold KV room for it; start[s]
 * is segment s's length before the step. Lengths are not advanced here. On error no state has
 * changed if the error came before the layers ran (memory is checked first). chk: the validation of
 * the step's device arrays (NULL when none is on the device; its n_score counts the targets when
 * out->target is). */
plm_status plm_cuda_step(struct plm_ctx *c, const plm_step *s, const plm_outputs *out, const int64_t *start,
                         const plm_cuda_check *chk, plm_error *err);

/* States' fixed parts on the device: slots in slabs a linear layer, so that one layer's states of many
 * sequences lie side by side (a decode step of 256 sequences streams them about 9 % faster than from
 * one allocation a sequence holding all its layers: bench/micro/decode_state.cu). A slot holds in each
 * layer's slab `per` floats (the conv tail, then the delta-rule state); layer[i] receives its address
 * in layer i (the contents are not cleared). Slabs are added as slots run out (4, 8, .. 64 slots a
 * group) and kept; they outlive the context while a slot is taken. Thread-safe. */
typedef struct plm_slots plm_slots;
plm_status plm_cuda_slot_take(plm_cuda *g, plm_slots **from, int *slot, float **layer, plm_error *err);
void plm_cuda_slot_give(plm_slots *a, int slot);

/* Device memory for states and snapshots (synchronous with respect to every stream of the device). */
plm_status plm_cuda_alloc(int dev, void **p, size_t bytes, const char *what, plm_error *err);
void plm_cuda_free(int dev, void *p);
plm_status plm_cuda_memset0(int dev, void *p, size_t bytes, plm_error *err);
plm_status plm_cuda_copy(int dev, void *dst, const void *src, size_t bytes, plm_error *err); /* device to device */
plm_status plm_cuda_download(int dev, void *host, const void *src, size_t bytes, plm_error *err);
plm_status plm_cuda_upload(int dev, void *dst, const void *host, size_t bytes, plm_error *err);
/* The benchmark's ceilings on cuda:dev: a BF16 GEMM [m, k] x [k, n] (fp32 accumulation) on random
 * data in TFLOP/s, and a device-to-device copy of `bytes` in TB/s (bytes read plus written); the
 * best of reps timed runs after a warm-up, timed with events. */
plm_status plm_cuda_ceilings(int dev, int m, int n, int k, size_t bytes, int reps, double *gemm_tflops,
                             double *copy_tbps, plm_error *err);
/* The token mixers alone on the shapes FLA is timed on (16 heads, K = V = 128, fp32, random inputs;
 * CUDA events, 3 warm-ups, median of 20 calls): ms[0..2] the delta rule over 32,768 tokens as 15
 * sequences (8,200 .. 8), as one, as 512 x 64; ms[3..5] a decode step of 1, 16, 256 sequences;
 * ms[6] conv1d + SiLU over [32,768 x 6,144], width 4, the 15 sequences. The delta rule's three cases
 * on tensor cores with BF16 operands (as FLA computes) in ms[0..2], precise in ms[7..9], with the
 * simple kernels (plm_gdn_cuda) in ms[10..12], and with the five-product scan in place of the WY one
 * in ms[13..15]; ms[16] one sequence with the WY scan's value tiles of 32 (ms[1] chooses 16), ms[17]
 * 512 x 64 with the WY scan (ms[2] chooses the one-chunk kernel, ms[15] the prep and the five-product
 * scan), ms[18] one sequence with the chunk
 * prep before the scan (PLM_GDN_PREP_BEFORE; ms[1] runs it beside the scan), ms[19] the 15 sequences
 * at value tiles of 16 (PLM_GDN_VT16: where it can, the copy warps' scan with the prep beside it; ms[0]
 * chooses tiles of 32 with the prep before). The last PLM_CUDA_GEMV_TIMES: a
 * decode step's products, one input row and BF16 weights of the lm_head's [248,320 x 1,024] and of
 * [6,144 x 1,024], by the GEMV kernel (FP32 input), then by cuBLAS's BF16 GEMM (BF16 input, one pass);
 * then 16 input rows (16 sequences) and the lm_head's and the down projection's [1,024 x 3,584] weights,
 * by the skinny GEMM (FP32 input), then by the BF16 hi + lo conversion and cuBLAS's two passes. */
#define PLM_CUDA_GEMV_TIMES 8
#define PLM_CUDA_MIXER_TIMES (20 + PLM_CUDA_GEMV_TIMES)
plm_status plm_cuda_bench_mixers(int dev, double ms[PLM_CUDA_MIXER_TIMES], plm_error *err);
/* Waits for the device's work; reports a failed launch or kernel (for the op tests). */
plm_status plm_cuda_sync(int dev, plm_error *err);

#ifdef __cplusplus
}
#endif
#endif
