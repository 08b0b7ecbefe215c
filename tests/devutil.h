/* Test helpers for the devices a test runs on: the CPU always, CUDA where this build has it and a GPU
 * is visible. Elsewhere the CUDA part is skipped with a message, unless PLM_REQUIRE_CUDA=1 is set
 * (the GPU run sets it), which turns the skip into a failure. */
#ifndef PLM_DEVUTIL_H
#define PLM_DEVUTIL_H

#include "packlm.h"

/* Opens a context on device for m. For "cuda", returns 1 (skip) with a SKIP line when no GPU can be
 * used and PLM_REQUIRE_CUDA is unset; 0 when opened; -1 (a failed check) otherwise. */
int tu_ctx_on(plm_ctx **c, const plm_model *m, const char *device, int n_threads, const char *what);
/* the same with the context's parameters given whole (p->device names the device) */
int tu_ctx_with(plm_ctx **c, const plm_model *m, const plm_ctx_params *p, const char *what);
/* Writes a BF16 copy of the checkpoint in dir (config.json, generation_config.json if any,
 * model.safetensors with every F32 tensor rounded to BF16) into out_dir (created). */
plm_status tu_write_bf16_copy(const char *dir, const char *out_dir, plm_error *err);

#endif
