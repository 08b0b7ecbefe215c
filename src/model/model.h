/* Internal: the bound weights of a Qwen3.5 text model, per-sequence state, and the running context. */
#ifndef PLM_MODEL_MODEL_H
#define PLM_MODEL_MODEL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "io/config.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "packlm.h"

typedef struct {
    int type; /* PLM_LAYER_* */
    float *in_norm, *post_norm; /* [hidden] raw weights (used as 1 + w) */
    /* Gated DeltaNet */
    plm_mat qkv, z, b, a, out;  /* [conv_dim, H], [nv*dv, H], [nv, H], [nv, H], [H, nv*dv] */
    float *conv_w;              /* [conv_dim, kernel] */
    float *neg_A;               /* [nv] -exp(A_log) */
    float *dt_bias;             /* [nv] */
    float *gnorm;               /* [dv] gated RMSNorm weight (plain) */
    /* gated attention */
    plm_mat q, k, v, o;         /* [nh*2*hd, H], [nkv*hd, H], [nkv*hd, H], [H, nh*hd] */
    float *q_norm, *k_norm;     /* [hd] (1 + w) */
    /* dense MLP */
    plm_mat gate, up, down;     /* [I, H], [I, H], [H, I] */
    /* MoE */
    plm_mat router;             /* [E, H] */
    plm_mat *e_gate, *e_up, *e_down; /* [E] of [Im, H], [Im, H], [H, Im] */
    plm_mat sh_gate, sh_up, sh_down, sh_score; /* shared expert; sh_score [1, H] */
    int lin_index, attn_index;  /* index among layers of its type */
} plm_layer;

struct plm_model {
    plm_config cfg;
    plm_model_info info;
    plm_st_set *st;
    plm_mat embed, lm_head;     /* [V, H] */
    float *final_norm;          /* [H] */
    plm_layer *layers;
    void **owned;               /* f32 copies made at load (small vectors) */
    int n_owned, cap_owned;
    int conv_dim;               /* 2*nk*dk + nv*dv */
    char *dir;                  /* the checkpoint directory */
    const char *prefix;         /* "model." or "model.language_model." */
    int file_q8;                /* the checkpoint holds int8 (Q8) matrices (written by packlm quantize) */
    /* int8 copies made for contexts that ask for int8 weights (model/quant.c): built once, on the
       first such context, shared by later ones, freed with the model */
    pthread_mutex_t q8_lock;
    plm_layer *q8_layers;       /* NULL until built; linear-attention projections int8 once q8_linear */
    plm_layer *q8_layers_kl;    /* q8_layers with the linear-attention projections as stored */
    int q8_linear;
    plm_mat q8_head;            /* dt PLM_DT_Q8 once built */
    void **q8_bufs;
    int n_q8_bufs, cap_q8_bufs;
    size_t q8_bytes;            /* int8 values and scales quantized at load (0 for an int8 checkpoint) */
};

/* The layers and lm_head an int8 context computes with: every large matrix (projections, MLP and
 * expert weights; lm_head unless keep_head; the linear-attention projections unless keep_linear) in
 * PLM_DT_Q8, quantized from the checkpoint's dtype on the first call that needs it; norms, conv
 * weights, A_log, dt_bias, the small gate projections (in_proj_a, in_proj_b, shared_expert_gate) and
 * the router stay as stored. */
plm_status plm_model_int8(plm_model *m, int keep_head, int keep_linear, int n_threads, const plm_layer **layers,
                          const plm_mat **head, plm_error *err);
void plm_model_int8_free(plm_model *m);


struct plm_state {
    const plm_model *model;
    int dev;         /* -1: host memory; N: every pointer below (data, not the arrays) is on cuda:N */
    int64_t len;
    float **conv;    /* [n_linear] of [kernel-1, conv_dim]: the last inputs, oldest first */
    float **rec;     /* [n_linear] of [nv, dk, dv] */
    plm_kv *kv;      /* [n_attention] */
    /* identity for snapshots (renewed by new / reset / copy) and the restores since, as a stack of
       (time, length) with lengths increasing upwards: see state.c */
    uint64_t id;
    uint64_t *rb_time;
    int64_t *rb_len;
    int n_rb, cap_rb;
    /* CUDA states: conv and rec point into a slot of the context's per-layer slabs (plm_cuda_slot_take);
       KV blocks come from slabs of their own, one device allocation per growth, never moved */
    struct plm_slots *slots;
    int slot;
    void **slabs;
    int n_slabs, cap_slabs;
};

/* Makes room in every attention layer's cache for n_total tokens (no data moves). */
plm_status plm_state_reserve(plm_state *s, int64_t n_total, plm_error *err);
/* Floats of one linear layer's fixed state: the conv tail, then the delta-rule state (a device slot's
 * size in each layer's slab). */
size_t plm_state_layer_floats(const plm_model *m);

typedef struct plm_cuda plm_cuda; /* a CUDA context's device side (model/cuda.h) */

struct plm_ctx {
    const plm_model *model;
    plm_ctx_params p;
    int dev;          /* -1: CPU; N: cuda:N */
    char dev_name[16];
    plm_cuda *cuda;   /* NULL on the CPU */
    plm_kernels k;    /* dispatch table: reference or fast */
    const plm_layer *layers; /* the model's, or its int8 copies (plm_ctx_params.weights) */
    const plm_mat *lm_head;
    float *scratch;   /* grown on demand */
    size_t scratch_n;
    /* CUDA: device states standing in for the segments of a step that have none (step.c) */
    plm_state **scratch_states;
    int n_scratch_states;
};

/* Scratch of at least n floats (contents undefined). NULL on allocation failure. */
float *plm_ctx_scratch(plm_ctx *c, size_t n);

#endif

/* A bump allocator over the context's scratch, 64-byte aligned pieces. */
typedef struct {
    float *base;
    size_t cap, used; /* in floats */
} plm_arena;

static inline float *plm_take(plm_arena *a, size_t n) {
    size_t at = a->used;
    a->used += (n + 15) & ~(size_t)15;
    return a->used <= a->cap ? a->base + at : NULL;
}

/* A validated step as the layers see it. */
typedef struct {
    int64_t T;
    int n_seg;
    const int32_t *cu;        /* [n_seg + 1] */
    const int64_t *start;     /* [n_seg] tokens each state held before the step */
    const int64_t *pos;       /* [T] */
    plm_state *const *state;  /* [n_seg] */
} plm_run;

/* Floats of scratch the layers need for T tokens (beyond the 3 [T, hidden] buffers). */
size_t plm_layers_scratch(const plm_model *m, int64_t T);
/* Each writes the layer's mixer / MLP output for the normalised input h [T, H] into out [T, H]. */
void plm_linear_attn_forward(plm_ctx *c, const plm_layer *L, const plm_run *r, float *out, const float *h,
                             plm_arena a);
void plm_attention_forward(plm_ctx *c, const plm_layer *L, const plm_run *r, float *out, const float *h,
                           plm_arena a);
void plm_mlp_forward(plm_ctx *c, const plm_layer *L, const plm_run *r, float *out, const float *h, plm_arena a);
