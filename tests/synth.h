/* Random Qwen3.5 checkpoints made in C for property tests: a random configuration (odd head
 * counts, v-heads a multiple of k-heads, d_k != d_v, odd head and rotary dims, any layer order, dense or MoE), random
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
    double rot_factor; /* partial_rotary_factor written (c.rope_dim = int(head_dim * it)); 0: rope_dim /
                        * head_dim, for an even rope_dim set by hand */
    int mrope;         /* write the M-RoPE keys of real checkpoints (mrope_section, mrope_interleaved) */
} synth_spec;

/* Draws a random small configuration. */
void synth_random_spec(synth_spec *s, tu_rng *r);
/* Unusual fixed shapes, which = 0 .. SYNTH_N_UNUSUAL-1: odd head dims with odd rotary dims, one
 * k head for many v heads, d_k != d_v, a single layer of each kind, vocab not a multiple of 8. */
#define SYNTH_N_UNUSUAL 5
void synth_unusual_spec(synth_spec *s, int which, tu_rng *r);
/* Writes dir/config.json and dir/model.safetensors (dir must exist). */
plm_status synth_write(const synth_spec *s, const char *dir, tu_rng *r, plm_error *err);

#endif
