/* The running context: kernel table, thread count, scratch memory reused across steps. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#include "model/model.h"
#include "util/error.h"

plm_ctx_params plm_ctx_default_params(void) {
    plm_ctx_params p = {0, 0};
    return p;
}

plm_status plm_ctx_new(plm_ctx **out, const plm_model *m, const plm_ctx_params *p, plm_error *err) {
    *out = NULL;
    plm_ctx *c = calloc(1, sizeof *c);
    if (!c) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    c->model = m;
    c->p = p ? *p : plm_ctx_default_params();
    if (c->p.n_threads <= 0) c->p.n_threads = omp_get_num_procs();
    if (c->p.n_threads < 1) c->p.n_threads = 1;
    /* packlm threads its own work (OpenMP) and calls OpenBLAS from inside it, one panel per thread:
       OpenBLAS's own threads would only fight the team for the cores. Its thread count is
       process-wide; packlm sets it to one. */
    openblas_set_num_threads(1);
    plm_kernels_init(&c->k, c->p.use_reference);
    *out = c;
    return PLM_OK;
}

void plm_ctx_free(plm_ctx *c) {
    if (!c) return;
    free(c->scratch);
    free(c);
}

float *plm_ctx_scratch(plm_ctx *c, size_t n) {
    if (n > c->scratch_n) {
        free(c->scratch);
        c->scratch = aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
        c->scratch_n = c->scratch ? n : 0;
    }
    return c->scratch;
}
