#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void synth_random_spec(synth_spec *s, tu_rng *r) {
    memset(s, 0, sizeof *s);
    plm_config *c = &s->c;
    c->vocab_size = tu_randint(r, 40, 120);
    c->hidden_size = tu_randint(r, 3, 12) * 4;
    c->n_layers = tu_randint(r, 1, 5);
    for (int i = 0; i < c->n_layers; i++) c->layer_type[i] = tu_randint(r, 0, 2) == 0 ? PLM_LAYER_ATTENTION : PLM_LAYER_LINEAR;
    c->rms_eps = 1e-6f;
    c->tie_embeddings = tu_randint(r, 0, 1);
    c->n_kv_heads = tu_randint(r, 1, 3);
    c->n_heads = c->n_kv_heads * tu_randint(r, 1, 3);
    c->head_dim = tu_randint(r, 3, 18); /* odd ones too */
    static const double fr[] = {0.25, 0.5, 0.75, 1.0};
    s->rot_factor = fr[tu_randint(r, 0, 3)];
    c->rope_dim = (int)(c->head_dim * s->rot_factor); /* odd ones too: 2 * ceil(dim/2) channels turn */
    if (2 * ((c->rope_dim + 1) / 2) > c->head_dim) { /* odd dim = head_dim: refused, as transformers fails */
        s->rot_factor = 0.5;
        c->rope_dim = (int)(c->head_dim * s->rot_factor);
    }
    s->mrope = tu_randint(r, 0, 1);
    c->rope_theta = tu_randint(r, 0, 1) ? 10000.0 : 1e6;
    c->lin_k_heads = tu_randint(r, 1, 3);
    c->lin_v_heads = c->lin_k_heads * tu_randint(r, 1, 3);
    c->lin_k_dim = tu_randint(r, 3, 17);
    c->lin_v_dim = tu_randint(r, 3, 19);
    c->conv_kernel = tu_randint(r, 2, 5);
    c->is_moe = tu_randint(r, 0, 2) == 0;
    if (c->is_moe) {
        c->n_experts = tu_randint(r, 2, 6);
        c->n_experts_per_tok = tu_randint(r, 1, c->n_experts);
        c->moe_intermediate_size = tu_randint(r, 4, 24);
        c->shared_intermediate_size = tu_randint(r, 0, 1) ? tu_randint(r, 4, 24) : 0;
    } else {
        c->intermediate_size = tu_randint(r, 8, 64);
    }
    static const plm_dtype dts[] = {PLM_DT_F32, PLM_DT_BF16, PLM_DT_F16};
    s->dtype = dts[tu_randint(r, 0, 2)];
    s->nested = tu_randint(r, 0, 1);
    s->fused_experts = tu_randint(r, 0, 1);
}

void synth_unusual_spec(synth_spec *s, int which, tu_rng *r) {
    synth_random_spec(s, r); /* random dtype, layout, theta; the shape below */
    plm_config *c = &s->c;
    static const struct {
        const char *layers;
        int V, H, nkv, nh, hd, nk, nv, dk, dv, moe;
        double f;
    } u[SYNTH_N_UNUSUAL] = {
        /* odd head_dim 7, rotary dim int(7 * 0.75) = 5 (6 channels turn); 1 k head for 6 v heads */
        {"LAL", 101, 20, 1, 5, 7, 1, 6, 5, 11, 0, 0.75},
        /* a single linear layer; d_k 13 != d_v 3; odd head_dim 9 never used */
        {"L", 77, 16, 1, 3, 9, 1, 4, 13, 3, 1, 0.25},
        /* a single attention layer: head_dim 6, rotary dim 3 (4 channels turn), 1 kv head for 7 */
        {"A", 99, 12, 1, 7, 6, 2, 2, 4, 4, 0, 0.5},
        /* int(10 * 0.3) = 3 (10 * 0.3 is 3.0000000000000004); odd hidden size */
        {"AL", 61, 13, 2, 4, 10, 2, 6, 6, 9, 0, 0.3},
        /* head_dim 5 fully rotary but one: int(5 * 0.9) = 4; a single MoE attention layer */
        {"A", 45, 8, 1, 3, 5, 1, 1, 3, 5, 1, 0.9},
    };
    const int w = which % SYNTH_N_UNUSUAL;
    c->n_layers = (int)strlen(u[w].layers);
    for (int i = 0; i < c->n_layers; i++) c->layer_type[i] = u[w].layers[i] == 'L' ? PLM_LAYER_LINEAR : PLM_LAYER_ATTENTION;
    c->vocab_size = u[w].V;
    c->hidden_size = u[w].H;
    c->n_kv_heads = u[w].nkv;
    c->n_heads = u[w].nh;
    c->head_dim = u[w].hd;
    s->rot_factor = u[w].f;
    c->rope_dim = (int)(c->head_dim * s->rot_factor);
    c->lin_k_heads = u[w].nk;
    c->lin_v_heads = u[w].nv;
    c->lin_k_dim = u[w].dk;
    c->lin_v_dim = u[w].dv;
    if (u[w].moe && !c->is_moe) {
        c->is_moe = 1;
        c->n_experts = 3;
        c->n_experts_per_tok = 2;
        c->moe_intermediate_size = 7;
        c->shared_intermediate_size = 5;
    } else if (!u[w].moe && c->is_moe) {
        c->is_moe = 0;
        c->intermediate_size = 19;
    }
    s->mrope = w % 2 == 0;
}

typedef struct {
    plm_st_writer *w;
    tu_rng *r;
    const synth_spec *s;
    plm_error *err;
    plm_status st;
} wctx;

/* kind: 0 matrix (randn / sqrt(cols)), 1 norm (0.2 randn), 2 A_log, 3 dt_bias / conv (0.5 randn),
 * 4 gated norm weight (1 + 0.2 randn), 5 embedding (randn) */
static void add(wctx *x, const char *name, int ndim, const int64_t *shape, int kind) {
    if (x->st) return;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc((size_t)n * sizeof *v);
    uint16_t *h = malloc((size_t)n * sizeof *h);
    const double sc = kind == 0 ? 1.0 / sqrt((double)shape[ndim - 1]) : 1.0;
    for (int64_t i = 0; i < n; i++) {
        float g = tu_normal(x->r);
        switch (kind) {
        case 0: v[i] = (float)(g * sc); break;
        case 1: v[i] = 0.2f * g; break;
        case 2: v[i] = logf(0.3f + 2.7f * tu_uniform(x->r)); break;
        case 3: v[i] = 0.5f * g; break;
        case 4: v[i] = 1.0f + 0.2f * g; break;
        default: v[i] = g; break;
        }
    }
    /* matrices in the spec's dtype; vectors stay F32 as checkpoints often keep A_log */
    plm_dtype dt = (kind == 0 || kind == 5) ? x->s->dtype : PLM_DT_F32;
    const void *data = v;
    if (dt == PLM_DT_BF16) for (int64_t i = 0; i < n; i++) h[i] = plm_f32_to_bf16(v[i]);
    if (dt == PLM_DT_F16) for (int64_t i = 0; i < n; i++) h[i] = plm_f32_to_f16(v[i]);
    if (dt != PLM_DT_F32) data = h;
    x->st = plm_st_writer_add(x->w, name, dt, ndim, shape, data, x->err);
    free(v);
    free(h);
}

#define SH(...) ((const int64_t[]){__VA_ARGS__})
#define NM(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)

static void write_config(const synth_spec *s, FILE *f) {
    const plm_config *c = &s->c;
    char lt[PLM_MAX_LAYERS * 24] = "";
    for (int i = 0; i < c->n_layers; i++)
        snprintf(lt + strlen(lt), sizeof lt - strlen(lt), "%s\"%s\"", i ? ", " : "",
                 c->layer_type[i] == PLM_LAYER_LINEAR ? "linear_attention" : "full_attention");
    char text[4096];
    int n = snprintf(text, sizeof text,
                     "{\"model_type\": \"%s\", \"vocab_size\": %d, \"hidden_size\": %d, \"num_hidden_layers\": %d,\n"
                     " \"layer_types\": [%s], \"rms_norm_eps\": 1e-06, \"hidden_act\": \"silu\",\n"
                     " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d,\n"
                     " \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": %.1f, "
                     "\"partial_rotary_factor\": %.17g%s},\n"
                     " \"linear_num_key_heads\": %d, \"linear_num_value_heads\": %d, \"linear_key_head_dim\": %d,\n"
                     " \"linear_value_head_dim\": %d, \"linear_conv_kernel_dim\": %d, \"tie_word_embeddings\": %s",
                     c->is_moe ? "qwen3_5_moe_text" : "qwen3_5_text", c->vocab_size, c->hidden_size, c->n_layers, lt,
                     c->n_heads, c->n_kv_heads, c->head_dim, c->rope_theta,
                     s->rot_factor > 0 ? s->rot_factor : (double)c->rope_dim / c->head_dim,
                     s->mrope ? ", \"mrope_section\": [11, 11, 10], \"mrope_interleaved\": true" : "",
                     c->lin_k_heads, c->lin_v_heads, c->lin_k_dim, c->lin_v_dim, c->conv_kernel,
                     c->tie_embeddings ? "true" : "false");
    if (c->is_moe)
        n += snprintf(text + n, sizeof text - n,
                      ", \"num_experts\": %d, \"num_experts_per_tok\": %d, \"moe_intermediate_size\": %d, "
                      "\"shared_expert_intermediate_size\": %d}",
                      c->n_experts, c->n_experts_per_tok, c->moe_intermediate_size, c->shared_intermediate_size);
    else
        n += snprintf(text + n, sizeof text - n, ", \"intermediate_size\": %d}", c->intermediate_size);
    if (s->nested)
        fprintf(f, "{\"model_type\": \"%s\", \"tie_word_embeddings\": %s, \"text_config\": %s}\n",
                c->is_moe ? "qwen3_5_moe" : "qwen3_5", c->tie_embeddings ? "true" : "false", text);
    else
        fprintf(f, "%s\n", text);
}

plm_status synth_write(const synth_spec *s, const char *dir, tu_rng *r, plm_error *err) {
    const plm_config *c = &s->c;
    char path[1024], nm[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return PLM_ERR_IO;
    write_config(s, f);
    fclose(f);
    wctx x = {plm_st_writer_new(), r, s, err, PLM_OK};
    const char *p = s->nested ? "model.language_model." : "model.";
    const int64_t V = c->vocab_size, H = c->hidden_size;
    add(&x, NM("%sembed_tokens.weight", p), 2, SH(V, H), 5);
    add(&x, NM("%snorm.weight", p), 1, SH(H), 1);
    if (!c->tie_embeddings) add(&x, "lm_head.weight", 2, SH(V, H), 0);
    for (int i = 0; i < c->n_layers; i++) {
        char lp[256];
        snprintf(lp, sizeof lp, "%slayers.%d.", p, i);
        add(&x, NM("%sinput_layernorm.weight", lp), 1, SH(H), 1);
        add(&x, NM("%spost_attention_layernorm.weight", lp), 1, SH(H), 1);
        if (c->layer_type[i] == PLM_LAYER_LINEAR) {
            const int64_t nk = c->lin_k_heads, nv = c->lin_v_heads, dk = c->lin_k_dim, dv = c->lin_v_dim;
            const int64_t cd = 2 * nk * dk + nv * dv;
            add(&x, NM("%slinear_attn.in_proj_qkv.weight", lp), 2, SH(cd, H), 0);
            add(&x, NM("%slinear_attn.in_proj_z.weight", lp), 2, SH(nv * dv, H), 0);
            add(&x, NM("%slinear_attn.in_proj_b.weight", lp), 2, SH(nv, H), 0);
            add(&x, NM("%slinear_attn.in_proj_a.weight", lp), 2, SH(nv, H), 0);
            add(&x, NM("%slinear_attn.out_proj.weight", lp), 2, SH(H, nv * dv), 0);
            add(&x, NM("%slinear_attn.conv1d.weight", lp), 3, SH(cd, 1, c->conv_kernel), 3);
            add(&x, NM("%slinear_attn.A_log", lp), 1, SH(nv), 2);
            add(&x, NM("%slinear_attn.dt_bias", lp), 1, SH(nv), 3);
            add(&x, NM("%slinear_attn.norm.weight", lp), 1, SH(dv), 4);
        } else {
            const int64_t nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
            add(&x, NM("%sself_attn.q_proj.weight", lp), 2, SH(nh * hd * 2, H), 0);
            add(&x, NM("%sself_attn.k_proj.weight", lp), 2, SH(nkv * hd, H), 0);
            add(&x, NM("%sself_attn.v_proj.weight", lp), 2, SH(nkv * hd, H), 0);
            add(&x, NM("%sself_attn.o_proj.weight", lp), 2, SH(H, nh * hd), 0);
            add(&x, NM("%sself_attn.q_norm.weight", lp), 1, SH(hd), 1);
            add(&x, NM("%sself_attn.k_norm.weight", lp), 1, SH(hd), 1);
        }
        if (!c->is_moe) {
            const int64_t I = c->intermediate_size;
            add(&x, NM("%smlp.gate_proj.weight", lp), 2, SH(I, H), 0);
            add(&x, NM("%smlp.up_proj.weight", lp), 2, SH(I, H), 0);
            add(&x, NM("%smlp.down_proj.weight", lp), 2, SH(H, I), 0);
            continue;
        }
        const int64_t E = c->n_experts, Im = c->moe_intermediate_size, Is = c->shared_intermediate_size;
        add(&x, NM("%smlp.gate.weight", lp), 2, SH(E, H), 0);
        if (s->fused_experts) {
            add(&x, NM("%smlp.experts.gate_up_proj", lp), 3, SH(E, 2 * Im, H), 0);
            add(&x, NM("%smlp.experts.down_proj", lp), 3, SH(E, H, Im), 0);
        } else {
            for (int64_t e = 0; e < E; e++) {
                add(&x, NM("%smlp.experts.%lld.gate_proj.weight", lp, (long long)e), 2, SH(Im, H), 0);
                add(&x, NM("%smlp.experts.%lld.up_proj.weight", lp, (long long)e), 2, SH(Im, H), 0);
                add(&x, NM("%smlp.experts.%lld.down_proj.weight", lp, (long long)e), 2, SH(H, Im), 0);
            }
        }
        if (Is > 0) {
            add(&x, NM("%smlp.shared_expert.gate_proj.weight", lp), 2, SH(Is, H), 0);
            add(&x, NM("%smlp.shared_expert.up_proj.weight", lp), 2, SH(Is, H), 0);
            add(&x, NM("%smlp.shared_expert.down_proj.weight", lp), 2, SH(H, Is), 0);
            add(&x, NM("%smlp.shared_expert_gate.weight", lp), 2, SH(1, H), 0);
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!x.st) x.st = plm_st_writer_save(x.w, path, err);
    plm_st_writer_free(x.w);
    return x.st;
}
