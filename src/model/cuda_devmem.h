/* Internal to the CUDA backend (model/cuda_backend.cu): steps whose arrays are in device memory
 * (PLM_MEM_DEVICE), model/cuda_devmem.cu. Every launch is asynchronous on stream st. */
#ifndef PLM_MODEL_CUDA_DEVMEM_H
#define PLM_MODEL_CUDA_DEVMEM_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "packlm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* PLM_OK when p is device memory of cuda:dev (or managed memory); otherwise PLM_ERR_INPUT naming
 * what (e.g. "plm_step.tokens") and where p is: host memory, or another GPU. */
plm_status plm_devmem_where(int dev, const void *p, const char *what, plm_error *err);

/* The validation of a step's device arrays, into r[PLM_DEVMEM_CHECK_INTS] (device): r[0] the first
 * index t whose tok[t] is outside [0, V) and r[1] that id; r[2] the first t whose pos[t] is not
 * start[s] + (t - cu[s]) for its segment s (cu[0 .. ns], start[0 .. ns-1] device copies) and r[3]
 * that position; r[4] the first t whose tgt[t] >= V and r[5] that target; r[6] the number of
 * tgt[t] >= 0. An index is -1 where nothing is wrong. tok, pos, tgt: each may be NULL (not checked). */
#define PLM_DEVMEM_CHECK_INTS 8
void plm_devmem_check(int32_t *r, const int32_t *tok, const int32_t *pos, const int32_t *tgt, const int32_t *cu,
                      const int64_t *start, int ns, int32_t T, int32_t V, cudaStream_t st);
/* The rows t with tgt[t] >= 0 in ascending order, rows[i] = t and tgt_out[i] = tgt[t]: the table the
 * host path builds for scoring, built on the device. */
void plm_devmem_score_rows(int32_t *rows, int32_t *tgt_out, const int32_t *tgt, int32_t T, cudaStream_t st);
/* dst[rows[i]] = src[i], i < n */
void plm_devmem_scatter(float *dst, const float *src, const int32_t *rows, int64_t n, cudaStream_t st);
/* plm_segments_from_positions on the device: cu[0 .. k] (cu holds n + 1) the segment starts and n,
 * r[0] = k, r[1] the first index of a negative position (-1: none), r[2] that position. */
void plm_devmem_seg_starts(int32_t *cu, int32_t *r, const int32_t *pos, int32_t n, cudaStream_t st);

#ifdef __cplusplus
}
#endif
#endif
