/* The Qwen3.5 text configuration, read from a Hugging Face config.json (flat qwen3_5_text /
 * qwen3_5_moe_text, or nested under text_config in qwen3_5 / qwen3_5_moe). */
#ifndef PLM_IO_CONFIG_H
#define PLM_IO_CONFIG_H

#include <stdint.h>

#include "packlm.h"

enum { PLM_LAYER_LINEAR = 0, PLM_LAYER_ATTENTION = 1 };
#define PLM_MAX_LAYERS 1024

typedef struct {
    int32_t vocab_size, hidden_size, n_layers;
    uint8_t layer_type[PLM_MAX_LAYERS];
    float rms_eps;
    int32_t tie_embeddings;
    /* gated attention */
    int32_t n_heads, n_kv_heads, head_dim, rope_dim; /* rope_dim: int(head_dim * partial_rotary_factor), as
                                                      * transformers; 2 * ceil(rope_dim/2) channels turn */
    double rope_theta;
    /* Gated DeltaNet */
    int32_t lin_k_heads, lin_v_heads, lin_k_dim, lin_v_dim, conv_kernel;
    /* MLP / MoE */
    int32_t is_moe;
    int32_t intermediate_size;                     /* dense MLP */
    int32_t n_experts, n_experts_per_tok, moe_intermediate_size, shared_intermediate_size;
    int32_t norm_topk_prob;
    /* end of sequence ids (config.json and generation_config.json) */
    int32_t eos_ids[8], n_eos;
} plm_config;

/* Reads dir/config.json (and dir/generation_config.json when present). Every field the model needs
 * must be present and valid; errors name the field. */
plm_status plm_config_load(plm_config *cfg, const char *dir, plm_error *err);
/* Checks internal consistency (head counts divide, sizes positive, ...). */
plm_status plm_config_validate(const plm_config *cfg, plm_error *err);

#endif
