/* Binding a checkpoint's tensors to the model: names under "model." or "model.language_model.",
 * every shape checked against the config, small vectors converted to f32 once, matrices left in
 * the read-only mapping in their stored dtype. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/error.h"

typedef struct {
    plm_model *m;
    const char *prefix; /* "model." or "model.language_model." */
    plm_error *err;
} binder;

static const plm_st_tensor *find(binder *b, const char *name, int ndim, const int64_t *shape, plm_status *st) {
    const plm_st_tensor *t = plm_st_find(b->m->st, name);
    if (!t) {
        *st = plm_fail(b->err, PLM_ERR_FORMAT, "checkpoint has no tensor '%s'", name);
        return NULL;
    }
    if (t->dtype != PLM_DT_F32 && t->dtype != PLM_DT_BF16 && t->dtype != PLM_DT_F16) {
        *st = plm_fail(b->err, PLM_ERR_UNSUPPORTED, "tensor '%s' has dtype %s (supported: F32, BF16, F16)", name,
                       t->dtype_name);
        return NULL;
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char got[128] = "", want[128] = "";
        for (int i = 0; i < t->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        for (int i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "", (long long)shape[i]);
        *st = plm_fail(b->err, PLM_ERR_FORMAT, "tensor '%s' has shape [%s] but the config implies [%s]", name, got,
                       want);
        return NULL;
    }
    *st = PLM_OK;
    return t;
}

/* An int8 matrix as packlm quantize writes it: name I8 [rows, PLM_Q8_STRIDE(cols)] and name + "_scale"
   F16 [rows, PLM_Q8_NB(cols)] */
static plm_status mat_q8(binder *b, plm_mat *out, const plm_st_tensor *t, const char *name, int64_t rows,
                         int64_t cols) {
    plm_status st;
    const int64_t shape[2] = {rows, PLM_Q8_STRIDE(cols)}, sshape[2] = {rows, PLM_Q8_NB(cols)};
    if (t->ndim != 2 || t->shape[0] != shape[0] || t->shape[1] != shape[1])
        return plm_fail(b->err, PLM_ERR_FORMAT,
                        "int8 tensor '%s' must have shape [%lld, %lld] (the config's [%lld, %lld] in blocks of %d)",
                        name, (long long)shape[0], (long long)shape[1], (long long)rows, (long long)cols,
                        PLM_Q8_BLOCK);
    char sn[544];
    snprintf(sn, sizeof sn, "%s_scale", name);
    const plm_st_tensor *sc = find(b, sn, 2, sshape, &st);
    if (!sc) return st;
    if (sc->dtype != PLM_DT_F16)
        return plm_fail(b->err, PLM_ERR_FORMAT, "int8 scales '%s' must be F16, not %s", sn, sc->dtype_name);
    *out = (plm_mat){t->data, PLM_DT_Q8, rows, cols, sc->data};
    b->m->file_q8 = 1;
    return PLM_OK;
}

static plm_status mat(binder *b, plm_mat *out, const char *name, int64_t rows, int64_t cols) {
    plm_status st;
    const plm_st_tensor *tq = plm_st_find(b->m->st, name);
    if (tq && tq->dtype == PLM_DT_I8) return mat_q8(b, out, tq, name, rows, cols);
    int64_t shape[2] = {rows, cols};
    const plm_st_tensor *t = find(b, name, 2, shape, &st);
    if (!t) return st;
    *out = (plm_mat){t->data, t->dtype, rows, cols, NULL};
    return PLM_OK;
}

static float *own(plm_model *m, size_t n) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        m->owned = p;
        m->cap_owned = cap;
    }
    float *f = malloc((n ? n : 1) * sizeof(float));
    if (f) m->owned[m->n_owned++] = f;
    return f;
}

/* A tensor of n values (any shape with that many elements given by ndim/shape) copied to f32. */
static plm_status vec(binder *b, float **out, const char *name, int ndim, const int64_t *shape) {
    plm_status st;
    const plm_st_tensor *t = find(b, name, ndim, shape, &st);
    if (!t) return st;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *f = own(b->m, (size_t)n);
    if (!f) return plm_fail(b->err, PLM_ERR_NOMEM, "out of memory copying '%s'", name);
    plm_mat row = {t->data, t->dtype, 1, n, NULL};
    plm_mat_row(f, &row, 0);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(f[i])) return plm_fail(b->err, PLM_ERR_FORMAT, "tensor '%s' holds a non-finite value", name);
    *out = f;
    return PLM_OK;
}

static plm_status vec1(binder *b, float **out, const char *name, int64_t n) { return vec(b, out, name, 1, &n); }

#define NAME(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)

static plm_status bind_mlp(binder *b, plm_layer *L, const char *lp) {
    const plm_config *c = &b->m->cfg;
    const int64_t H = c->hidden_size;
    char nm[512];
    plm_status st;
    if (!c->is_moe) {
        const int64_t I = c->intermediate_size;
        if ((st = mat(b, &L->gate, NAME("%smlp.gate_proj.weight", lp), I, H))) return st;
        if ((st = mat(b, &L->up, NAME("%smlp.up_proj.weight", lp), I, H))) return st;
        return mat(b, &L->down, NAME("%smlp.down_proj.weight", lp), H, I);
    }
    const int64_t E = c->n_experts, Im = c->moe_intermediate_size, Is = c->shared_intermediate_size;
    if ((st = mat(b, &L->router, NAME("%smlp.gate.weight", lp), E, H))) return st;
    L->e_gate = calloc((size_t)E * 3, sizeof(plm_mat));
    if (!L->e_gate) return plm_fail(b->err, PLM_ERR_NOMEM, "out of memory");
    L->e_up = L->e_gate + E;
    L->e_down = L->e_gate + 2 * E;
    if (plm_st_find(b->m->st, NAME("%smlp.experts.gate_up_proj", lp))) {
        /* fused: gate_up_proj [E, 2*Im, H] (gate rows first), down_proj [E, H, Im] */
        int64_t s1[3] = {E, 2 * Im, H}, s2[3] = {E, H, Im};
        const plm_st_tensor *gu = find(b, nm, 3, s1, &st);
        if (!gu) return st;
        const plm_st_tensor *dn = find(b, NAME("%smlp.experts.down_proj", lp), 3, s2, &st);
        if (!dn) return st;
        size_t es = plm_dtype_size(gu->dtype), ds = plm_dtype_size(dn->dtype);
        for (int64_t e = 0; e < E; e++) {
            const char *base = (const char *)gu->data + (size_t)(e * 2 * Im * H) * es;
            L->e_gate[e] = (plm_mat){base, gu->dtype, Im, H, NULL};
            L->e_up[e] = (plm_mat){base + (size_t)(Im * H) * es, gu->dtype, Im, H, NULL};
            L->e_down[e] = (plm_mat){(const char *)dn->data + (size_t)(e * H * Im) * ds, dn->dtype, H, Im, NULL};
        }
    } else {
        for (int64_t e = 0; e < E; e++) {
            if ((st = mat(b, &L->e_gate[e], NAME("%smlp.experts.%lld.gate_proj.weight", lp, (long long)e), Im, H)))
                return st;
            if ((st = mat(b, &L->e_up[e], NAME("%smlp.experts.%lld.up_proj.weight", lp, (long long)e), Im, H)))
                return st;
            if ((st = mat(b, &L->e_down[e], NAME("%smlp.experts.%lld.down_proj.weight", lp, (long long)e), H, Im)))
                return st;
        }
    }
    if (Is > 0) {
        if ((st = mat(b, &L->sh_gate, NAME("%smlp.shared_expert.gate_proj.weight", lp), Is, H))) return st;
        if ((st = mat(b, &L->sh_up, NAME("%smlp.shared_expert.up_proj.weight", lp), Is, H))) return st;
        if ((st = mat(b, &L->sh_down, NAME("%smlp.shared_expert.down_proj.weight", lp), H, Is))) return st;
        if ((st = mat(b, &L->sh_score, NAME("%smlp.shared_expert_gate.weight", lp), 1, H))) return st;
    }
    return PLM_OK;
}

static plm_status bind_layer(binder *b, int i) {
    plm_model *m = b->m;
    const plm_config *c = &m->cfg;
    plm_layer *L = &m->layers[i];
    const int64_t H = c->hidden_size;
    char lp[256], nm[512];
    plm_status st;
    snprintf(lp, sizeof lp, "%slayers.%d.", b->prefix, i);
    L->type = c->layer_type[i];
    if ((st = vec1(b, &L->in_norm, NAME("%sinput_layernorm.weight", lp), H))) return st;
    if ((st = vec1(b, &L->post_norm, NAME("%spost_attention_layernorm.weight", lp), H))) return st;
    if (L->type == PLM_LAYER_LINEAR) {
        const int64_t nk = c->lin_k_heads, nv = c->lin_v_heads, dk = c->lin_k_dim, dv = c->lin_v_dim;
        const int64_t cd = 2 * nk * dk + nv * dv, K = c->conv_kernel;
        if ((st = mat(b, &L->qkv, NAME("%slinear_attn.in_proj_qkv.weight", lp), cd, H))) return st;
        if ((st = mat(b, &L->z, NAME("%slinear_attn.in_proj_z.weight", lp), nv * dv, H))) return st;
        if ((st = mat(b, &L->b, NAME("%slinear_attn.in_proj_b.weight", lp), nv, H))) return st;
        if ((st = mat(b, &L->a, NAME("%slinear_attn.in_proj_a.weight", lp), nv, H))) return st;
        if ((st = mat(b, &L->out, NAME("%slinear_attn.out_proj.weight", lp), H, nv * dv))) return st;
        int64_t cs[3] = {cd, 1, K};
        if ((st = vec(b, &L->conv_w, NAME("%slinear_attn.conv1d.weight", lp), 3, cs))) return st;
        if ((st = vec1(b, &L->neg_A, NAME("%slinear_attn.A_log", lp), nv))) return st;
        for (int64_t h = 0; h < nv; h++) L->neg_A[h] = -expf(L->neg_A[h]);
        if ((st = vec1(b, &L->dt_bias, NAME("%slinear_attn.dt_bias", lp), nv))) return st;
        if ((st = vec1(b, &L->gnorm, NAME("%slinear_attn.norm.weight", lp), dv))) return st;
    } else {
        const int64_t nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
        if ((st = mat(b, &L->q, NAME("%sself_attn.q_proj.weight", lp), nh * hd * 2, H))) return st;
        if ((st = mat(b, &L->k, NAME("%sself_attn.k_proj.weight", lp), nkv * hd, H))) return st;
        if ((st = mat(b, &L->v, NAME("%sself_attn.v_proj.weight", lp), nkv * hd, H))) return st;
        if ((st = mat(b, &L->o, NAME("%sself_attn.o_proj.weight", lp), H, nh * hd))) return st;
        if ((st = vec1(b, &L->q_norm, NAME("%sself_attn.q_norm.weight", lp), hd))) return st;
        if ((st = vec1(b, &L->k_norm, NAME("%sself_attn.k_norm.weight", lp), hd))) return st;
    }
    return bind_mlp(b, L, lp);
}

/* Parameter counts in checked arithmetic: the reader has bounded every tensor's bytes by its file,
 * but a zero-size tensor may carry huge dimensions, and the config's products are its own. */
static plm_status count_params(plm_model *m, plm_error *err) {
    const plm_config *c = &m->cfg;
    int64_t total = 0, active, lin = 0;
    for (int i = 0; i < plm_st_count(m->st); i++) {
        const plm_st_tensor *t = plm_st_at(m->st, i);
        if (strstr(t->name, "visual.") || !strncmp(t->name, "mtp.", 4)) continue;
        int64_t n = 1;
        for (int d = 0; d < t->ndim; d++)
            if (__builtin_mul_overflow(n, t->shape[d], &n))
                return plm_fail(err, PLM_ERR_FORMAT, "tensor '%s': element count overflows", t->name);
        if (__builtin_add_overflow(total, n, &total))
            return plm_fail(err, PLM_ERR_FORMAT, "tensor '%s': parameter count overflows", t->name);
        if (strstr(t->name, "linear_attn.in_proj_qkv.weight") || strstr(t->name, "linear_attn.in_proj_z.weight") ||
            strstr(t->name, "linear_attn.out_proj.weight"))
            lin += n; /* <= total: no overflow */
    }
    active = total;
    int64_t inactive = 0, head = 0;
    if (c->is_moe) {
        int64_t per_expert = 3 * (int64_t)c->moe_intermediate_size * c->hidden_size; /* < 2^53 */
        if (__builtin_mul_overflow((int64_t)c->n_layers * (c->n_experts - c->n_experts_per_tok), per_expert,
                                   &inactive) ||
            __builtin_sub_overflow(active, inactive, &active))
            return plm_fail(err, PLM_ERR_CONFIG, "active parameter count overflows");
    }
    /* the embedding table is a lookup, not a product; the lm_head is */
    if (!c->tie_embeddings) head = (int64_t)c->vocab_size * c->hidden_size;
    m->info.n_params = total;
    m->info.n_active_params = active - head;
    m->info.n_linear_proj_params = lin;
    return PLM_OK;
}

/* Widths the layers compute with as int: derived from config fields in 64 bits, refused when they
 * do not fit (before any tensor is bound to them). */
static plm_status check_widths(const plm_config *c, plm_error *err) {
    const struct {
        const char *what;
        int64_t v;
    } w[] = {
        {"2 * linear_num_key_heads * linear_key_head_dim + linear_num_value_heads * linear_value_head_dim",
         2 * (int64_t)c->lin_k_heads * c->lin_k_dim + (int64_t)c->lin_v_heads * c->lin_v_dim},
        {"2 * num_attention_heads * head_dim", 2 * (int64_t)c->n_heads * c->head_dim},
        {"num_key_value_heads * head_dim", (int64_t)c->n_kv_heads * c->head_dim},
        {"linear_num_key_heads * linear_key_head_dim", (int64_t)c->lin_k_heads * c->lin_k_dim},
        {"2 * intermediate_size", 2 * (int64_t)c->intermediate_size},
        {"2 * moe_intermediate_size", 2 * (int64_t)c->moe_intermediate_size},
        {"2 * shared_expert_intermediate_size", 2 * (int64_t)c->shared_intermediate_size},
        {"num_experts * hidden_size", (int64_t)c->n_experts * c->hidden_size},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
        if (w[i].v > INT32_MAX)
            return plm_fail(err, PLM_ERR_CONFIG, "config: %s = %lld is too large (at most %d)", w[i].what,
                            (long long)w[i].v, INT32_MAX);
    return PLM_OK;
}

plm_status plm_model_open(plm_model **out, const char *dir, plm_error *err) {
    *out = NULL;
    plm_model *m = calloc(1, sizeof *m);
    if (!m) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&m->q8_lock, NULL);
    m->dir = strdup(dir);
    if (!m->dir) {
        free(m);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    }
    plm_status st = plm_config_load(&m->cfg, dir, err);
    if (!st && (st = check_widths(&m->cfg, err))) plm_fail_prefix(err, st, "%s", dir);
    if (!st) st = plm_st_open_dir(&m->st, dir, err);
    if (st) {
        plm_model_free(m);
        return st;
    }
    const plm_config *c = &m->cfg;
    binder b = {m, "model.", err};
    if (plm_st_find(m->st, "model.language_model.embed_tokens.weight")) b.prefix = "model.language_model.";
    m->prefix = b.prefix;
    char nm[512];
    const int64_t V = c->vocab_size, H = c->hidden_size;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) st = plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    if (!st) st = mat(&b, &m->embed, NAME("%sembed_tokens.weight", b.prefix), V, H);
    if (!st) st = vec1(&b, &m->final_norm, NAME("%snorm.weight", b.prefix), H);
    if (!st) {
        if (c->tie_embeddings) m->lm_head = m->embed;
        else st = mat(&b, &m->lm_head, "lm_head.weight", V, H);
    }
    int n_lin = 0, n_att = 0;
    for (int i = 0; !st && i < c->n_layers; i++) {
        st = bind_layer(&b, i);
        m->layers[i].lin_index = m->layers[i].type == PLM_LAYER_LINEAR ? n_lin++ : -1;
        m->layers[i].attn_index = m->layers[i].type == PLM_LAYER_ATTENTION ? n_att++ : -1;
    }
    if (st) {
        plm_fail_prefix(err, st, "%s", dir);
        plm_model_free(m);
        return st;
    }
    m->conv_dim = 2 * c->lin_k_heads * c->lin_k_dim + c->lin_v_heads * c->lin_v_dim;
    plm_model_info *in = &m->info;
    in->vocab_size = c->vocab_size;
    in->hidden_size = c->hidden_size;
    in->n_layers = c->n_layers;
    in->n_linear_layers = n_lin;
    in->n_attention_layers = n_att;
    in->is_moe = c->is_moe;
    in->n_experts = c->n_experts;
    in->n_experts_per_tok = c->n_experts_per_tok;
    in->n_eos = c->n_eos;
    memcpy(in->eos_ids, c->eos_ids, sizeof in->eos_ids);
    in->file_bytes = plm_st_file_bytes(m->st);
    if ((st = count_params(m, err))) {
        plm_fail_prefix(err, st, "%s", dir);
        plm_model_free(m);
        return st;
    }
    *out = m;
    return PLM_OK;
}

void plm_model_free(plm_model *m) {
    if (!m) return;
    plm_model_int8_free(m);
    pthread_mutex_destroy(&m->q8_lock);
    free(m->dir);
    if (m->layers)
        for (int i = 0; i < m->cfg.n_layers; i++) free(m->layers[i].e_gate);
    free(m->layers);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    plm_st_close(m->st);
    free(m);
}

const plm_model_info *plm_model_get_info(const plm_model *m) { return &m->info; }
