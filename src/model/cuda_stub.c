/* The CUDA backend's entry points in a build without CUDA (plain `make`): every one refuses. A CUDA
 * build (make CUDA=1) compiles model/cuda_backend.cu instead of this file. */
#include "model/cuda.h"
#include "util/error.h"

#define NO_CUDA "this packlm was built without CUDA (rebuild with make CUDA=1)"

int plm_cuda_built(void) { return 0; }
plm_status plm_cuda_probe(int dev, plm_error *err) { return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA); }

plm_status plm_cuda_open(plm_cuda **out, const struct plm_model *m, int dev, size_t mem_limit, int bf16_single_pass,
                         plm_error *err) {
    *out = NULL;
    return plm_fail(err, PLM_ERR_UNSUPPORTED, "cuda:%d: %s", dev, NO_CUDA);
}
void plm_cuda_close(plm_cuda *g) { (void)g; }
size_t plm_cuda_bytes(const plm_cuda *g) { return 0; }
void plm_cuda_graph_counts(const plm_cuda *g, unsigned *captured, unsigned *updated) { *captured = *updated = 0; }
plm_status plm_cuda_step(struct plm_ctx *c, const plm_step *s, const plm_outputs *out, const int64_t *start,
                         const plm_cuda_check *chk, plm_error *err) {
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
plm_status plm_cuda_where(struct plm_ctx *c, const void *p, const char *what, plm_error *err) {
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
plm_status plm_cuda_check_arrays(struct plm_ctx *c, const int32_t *tokens, const int32_t *pos, const int32_t *target,
                                 int32_t T, const int32_t *cu, const int64_t *start, int n_seg, plm_cuda_check *r,
                                 plm_error *err) {
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
plm_status plm_cuda_segments(struct plm_ctx *c, int32_t *cu, int32_t *n_seg, const int32_t *pos, int32_t n,
                             plm_error *err) {
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
plm_status plm_cuda_alloc(int dev, void **p, size_t bytes, const char *what, plm_error *err) {
    *p = NULL;
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
void plm_cuda_free(int dev, void *p) { (void)p; }
plm_status plm_cuda_slot_take(plm_cuda *g, plm_slots **from, int *slot, float **layer, plm_error *err) {
    *from = NULL;
    *slot = -1;
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
void plm_cuda_slot_give(plm_slots *a, int slot) { (void)a, (void)slot; }
plm_status plm_cuda_memset0(int dev, void *p, size_t bytes, plm_error *err) {
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
plm_status plm_cuda_copy(int dev, void *dst, const void *src, size_t bytes, plm_error *err) {
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
plm_status plm_cuda_download(int dev, void *host, const void *src, size_t bytes, plm_error *err) {
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
plm_status plm_cuda_upload(int dev, void *dst, const void *host, size_t bytes, plm_error *err) {
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
plm_status plm_cuda_sync(int dev, plm_error *err) { return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA); }
plm_status plm_cuda_ceilings(int dev, int m, int n, int k, size_t bytes, int reps, double *gemm_tflops,
                             double *copy_tbps, plm_error *err) {
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
plm_status plm_cuda_bench_mixers(int dev, double ms[PLM_CUDA_MIXER_TIMES], plm_error *err) {
    return plm_fail(err, PLM_ERR_UNSUPPORTED, NO_CUDA);
}
