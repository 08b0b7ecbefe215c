/* Random Qwen3.5 checkpoints made in C for property tests: a random configuration (odd head
 * counts, v-heads a multiple of k-heads, d_k != d_v, any layer order, dense or MoE), random
 * weights, written as config.json + model.safetensors in any of the layouts transformers uses. */
#ifndef PLM_TEST_SYNTH_H
#define PLM_TEST_SYNTH_H

#include "io/config.h"
#include "io/safetensors.h"
#include "testutil.h"

typedef struct {
    plm_config c;
    plm_dtype dtype;   /* storage dtype of the matrices */
    int nested;        /* qwen3_5 layout: text_config + model.language_model. prefix */
    int fused_experts; /* experts.gate_up_proj / experts.down_proj */
} synth_spec;

/* Draws a random small configuration. */
void synth_random_spec(synth_spec *s, tu_rng *r);
/* Writes dir/config.json and dir/model.safetensors (dir must exist). */
plm_status synth_write(const synth_spec *s, const char *dir, tu_rng *r, plm_error *err);

#endif
