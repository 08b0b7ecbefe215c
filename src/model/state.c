/* Per-sequence state: conv tails and delta-rule states of the linear layers (fixed size), keys and
 * values of the attention layers in blocks of PLM_KV_BLOCK tokens that never move as they grow. */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/error.h"

static size_t conv_floats(const plm_model *m) { return (size_t)(m->cfg.conv_kernel - 1) * m->conv_dim; }
static size_t rec_floats(const plm_model *m) {
    const plm_config *c = &m->cfg;
    return (size_t)c->lin_v_heads * c->lin_k_dim * c->lin_v_dim;
}
static size_t kv_block_floats(const plm_model *m) {
    return (size_t)PLM_KV_BLOCK * m->cfg.n_kv_heads * m->cfg.head_dim;
}

plm_status plm_state_new(plm_state **out, const plm_model *m, plm_error *err) {
    *out = NULL;
    plm_state *s = calloc(1, sizeof *s);
    const int nl = m->info.n_linear_layers, na = m->info.n_attention_layers;
    if (!s) return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a state");
    s->model = m;
    s->conv = calloc((size_t)nl + 1, sizeof *s->conv);
    s->rec = calloc((size_t)nl + 1, sizeof *s->rec);
    s->kv = calloc((size_t)na + 1, sizeof *s->kv);
    int ok = s->conv && s->rec && s->kv;
    for (int i = 0; ok && i < nl; i++) {
        s->conv[i] = calloc(conv_floats(m) + 1, sizeof(float));
        s->rec[i] = calloc(rec_floats(m), sizeof(float));
        ok = s->conv[i] && s->rec[i];
    }
    if (!ok) {
        plm_state_free(s);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a state");
    }
    *out = s;
    return PLM_OK;
}

static void kv_free(plm_kv *kv) {
    for (int b = 0; b < kv->n_blocks; b++) {
        free(kv->k[b]);
        free(kv->v[b]);
    }
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

void plm_state_free(plm_state *s) {
    if (!s) return;
    const plm_model *m = s->model;
    for (int i = 0; i < m->info.n_linear_layers; i++) {
        if (s->conv) free(s->conv[i]);
        if (s->rec) free(s->rec[i]);
    }
    if (s->kv)
        for (int i = 0; i < m->info.n_attention_layers; i++) kv_free(&s->kv[i]);
    free(s->conv);
    free(s->rec);
    free(s->kv);
    free(s);
}

/* Keeps the KV blocks allocated (a reset state is usually reused for a new sequence). */
void plm_state_reset(plm_state *s) {
    const plm_model *m = s->model;
    for (int i = 0; i < m->info.n_linear_layers; i++) {
        memset(s->conv[i], 0, conv_floats(m) * sizeof(float));
        memset(s->rec[i], 0, rec_floats(m) * sizeof(float));
    }
    s->len = 0;
}

int64_t plm_state_length(const plm_state *s) { return s->len; }

plm_status plm_state_reserve(plm_state *s, int64_t n_total, plm_error *err) {
    const plm_model *m = s->model;
    const int need = (int)((n_total + PLM_KV_BLOCK - 1) / PLM_KV_BLOCK);
    for (int i = 0; i < m->info.n_attention_layers; i++) {
        plm_kv *kv = &s->kv[i];
        if (need > kv->cap_blocks) {
            int cap = kv->cap_blocks ? kv->cap_blocks : 4;
            while (cap < need) cap *= 2;
            float **k = realloc(kv->k, (size_t)cap * sizeof *k);
            if (k) kv->k = k;
            float **v = realloc(kv->v, (size_t)cap * sizeof *v);
            if (v) kv->v = v;
            if (!k || !v) return plm_fail(err, PLM_ERR_NOMEM, "out of memory growing a KV cache to %lld tokens",
                                          (long long)n_total);
            kv->cap_blocks = cap;
        }
        while (kv->n_blocks < need) {
            float *k = malloc(kv_block_floats(m) * sizeof(float));
            float *v = malloc(kv_block_floats(m) * sizeof(float));
            if (!k || !v) {
                free(k);
                free(v);
                return plm_fail(err, PLM_ERR_NOMEM, "out of memory growing a KV cache to %lld tokens",
                                (long long)n_total);
            }
            kv->k[kv->n_blocks] = k;
            kv->v[kv->n_blocks] = v;
            kv->n_blocks++;
        }
    }
    return PLM_OK;
}

plm_status plm_state_copy(plm_state *dst, const plm_state *src, plm_error *err) {
    const plm_model *m = src->model;
    if (dst->model != m) return plm_fail(err, PLM_ERR_STATE, "state copy between states of different models");
    if (dst == src) return PLM_OK;
    plm_status st = plm_state_reserve(dst, src->len, err);
    if (st) return st;
    for (int i = 0; i < m->info.n_linear_layers; i++) {
        memcpy(dst->conv[i], src->conv[i], conv_floats(m) * sizeof(float));
        memcpy(dst->rec[i], src->rec[i], rec_floats(m) * sizeof(float));
    }
    const int used = (int)((src->len + PLM_KV_BLOCK - 1) / PLM_KV_BLOCK);
    for (int i = 0; i < m->info.n_attention_layers; i++)
        for (int b = 0; b < used; b++) {
            memcpy(dst->kv[i].k[b], src->kv[i].k[b], kv_block_floats(m) * sizeof(float));
            memcpy(dst->kv[i].v[b], src->kv[i].v[b], kv_block_floats(m) * sizeof(float));
        }
    dst->len = src->len;
    return PLM_OK;
}

static size_t fixed_bytes(const plm_model *m) {
    return (size_t)m->info.n_linear_layers * (conv_floats(m) + rec_floats(m)) * sizeof(float);
}

size_t plm_state_bytes(const plm_state *s) {
    const plm_model *m = s->model;
    size_t kv = 0;
    for (int i = 0; i < m->info.n_attention_layers; i++)
        kv += (size_t)s->kv[i].n_blocks * 2 * kv_block_floats(m) * sizeof(float);
    return fixed_bytes(m) + kv;
}

size_t plm_state_bytes_at(const plm_model *m, int64_t n_tokens) {
    size_t blocks = (size_t)((n_tokens + PLM_KV_BLOCK - 1) / PLM_KV_BLOCK);
    return fixed_bytes(m) + (size_t)m->info.n_attention_layers * blocks * 2 * kv_block_floats(m) * sizeof(float);
}
