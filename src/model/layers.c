/* The layers of a Qwen3.5 text model over a packed step. Projections and MLPs are GEMMs over all
 * T rows; only the token mixers (conv, delta rule, attention) look at the segments. */
#include <math.h>
#include <string.h>

#include "model/model.h"

size_t plm_layers_scratch(const plm_model *m, int64_t T) {
    const plm_config *c = &m->cfg;
    const size_t pad = 16 * 16; /* alignment slack of plm_take */
    /* raw and mixed [T, conv_dim], b and a [T, nv]: q, k, v and then z reuse raw, o reuses mixed
       (plm_linear_attn_forward) */
    size_t lin = 2 * (size_t)m->conv_dim + 2 * (size_t)c->lin_v_heads;
    size_t nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    /* qg (2), q, gate, o; k, v; views of k, v as caches for segments without a state (a plm_kv and
       at most 2 block pointers per token each for keys and values) */
    size_t att = 5 * nh * hd + 2 * nkv * hd + 16;
    size_t mlp = 2 * (size_t)c->intermediate_size;
    if (c->is_moe)
        mlp = (size_t)c->n_experts + 2 * (size_t)c->n_experts_per_tok + 2 * (size_t)c->hidden_size +
              2 * (size_t)c->moe_intermediate_size + 2 * (size_t)c->shared_intermediate_size + 1;
    size_t per = lin > att ? lin : att;
    per = per > mlp ? per : mlp;
    return per * (size_t)T + pad + 64;
}

void plm_linear_attn_forward(plm_ctx *c, const plm_layer *L, const plm_run *r, float *out, const float *h,
                             plm_arena a) {
    const plm_model *m = c->model;
    const plm_config *cf = &m->cfg;
    const int64_t T = r->T;
    const int nk = cf->lin_k_heads, nv = cf->lin_v_heads, dk = cf->lin_k_dim, dv = cf->lin_v_dim;
    const int CD = m->conv_dim, K = cf->conv_kernel, nth = c->p.n_threads;
    /* scratch: raw [T, CD] (the projection; once convolved, q | k | v [T, qk] [T, qk] [T, vv], then
       z [T, vv]) and mixed [T, CD] (the convolved rows; then o [T, vv]): 2 * CD floats a token, the
       step's largest per-token scratch (h, the layer's input, stays valid for z's projection) */
    const size_t qk = (size_t)nk * dk, vv = (size_t)nv * dv;
    float *raw = plm_take(&a, (size_t)T * CD), *mixed = plm_take(&a, (size_t)T * CD);
    float *bb = plm_take(&a, (size_t)T * nv), *aa = plm_take(&a, (size_t)T * nv);
    float *q = raw, *k = raw + T * qk, *v = raw + 2 * T * qk, *z = raw, *o = mixed;
    float *tails[r->n_seg > 0 ? r->n_seg : 1], *S[r->n_seg > 0 ? r->n_seg : 1];
    for (int s = 0; s < r->n_seg; s++) { /* no state: the kernels start from zeros, keep nothing */
        tails[s] = r->state[s] ? r->state[s]->conv[L->lin_index] : NULL;
        S[s] = r->state[s] ? r->state[s]->rec[L->lin_index] : NULL;
    }
    plm_kmatmul(&c->k, raw, h, T, &L->qkv, nth);
    plm_kmatmul(&c->k, bb, h, T, &L->b, nth);
    plm_kmatmul(&c->k, aa, h, T, &L->a, nth);
    c->k.conv(mixed, tails, raw, L->conv_w, r->cu, r->n_seg, CD, K, nth);
    for (int64_t t = 0; t < T; t++) {
        const float *row = mixed + t * CD;
        memcpy(q + t * qk, row, qk * sizeof(float));
        memcpy(k + t * qk, row + qk, qk * sizeof(float));
        memcpy(v + t * vv, row + 2 * qk, vv * sizeof(float));
    }
    plm_l2norm_rows(q, T * nk, dk, 1.0f / sqrtf((float)dk));
    plm_l2norm_rows(k, T * nk, dk, 1.0f);
    for (int64_t t = 0; t < T; t++)
        for (int hh = 0; hh < nv; hh++) {
            float *bp = bb + t * nv + hh, *ap = aa + t * nv + hh;
            *bp = plm_sigmoid(*bp);
            *ap = L->neg_A[hh] * plm_softplus(*ap + L->dt_bias[hh]); /* g: log decay */
        }
    c->k.gdn(o, S, q, k, v, aa, bb, r->cu, r->n_seg, nk, nv, dk, dv, nth);
    plm_kmatmul(&c->k, z, h, T, &L->z, nth);
    plm_rmsnorm_gated(o, o, z, L->gnorm, T * nv, dv, cf->rms_eps);
    plm_kmatmul(&c->k, out, o, T, &L->out, nth);
}

void plm_attention_forward(plm_ctx *c, const plm_layer *L, const plm_run *r, float *out, const float *h,
                           plm_arena a) {
    const plm_config *cf = &c->model->cfg;
    const int64_t T = r->T;
    const int nh = cf->n_heads, nkv = cf->n_kv_heads, hd = cf->head_dim, nth = c->p.n_threads;
    float *qg = plm_take(&a, (size_t)T * nh * 2 * hd), *q = plm_take(&a, (size_t)T * nh * hd);
    float *gate = plm_take(&a, (size_t)T * nh * hd), *k = plm_take(&a, (size_t)T * nkv * hd);
    float *v = plm_take(&a, (size_t)T * nkv * hd), *o = plm_take(&a, (size_t)T * nh * hd);
    plm_kmatmul(&c->k, qg, h, T, &L->q, nth);
    plm_kmatmul(&c->k, k, h, T, &L->k, nth);
    plm_kmatmul(&c->k, v, h, T, &L->v, nth);
    for (int64_t t = 0; t < T; t++) /* per head: [query | gate] */
        for (int hh = 0; hh < nh; hh++) {
            const float *src = qg + (t * nh + hh) * 2 * hd;
            memcpy(q + (t * nh + hh) * hd, src, (size_t)hd * sizeof(float));
            memcpy(gate + (t * nh + hh) * hd, src + hd, (size_t)hd * sizeof(float));
        }
    plm_rmsnorm_zc(q, q, L->q_norm, T * nh, hd, cf->rms_eps);
    plm_rmsnorm_zc(k, k, L->k_norm, T * nkv, hd, cf->rms_eps);
    plm_rope(q, r->pos, T, nh, hd, cf->rope_dim, cf->rope_theta);
    plm_rope(k, r->pos, T, nkv, hd, cf->rope_dim, cf->rope_theta);
    const plm_kv *kvs[r->n_seg > 0 ? r->n_seg : 1];
    const size_t row = (size_t)nkv * hd;
    /* a segment without a state sees only its own keys and values: a cache view over the rows of k
       and v (blocks of PLM_KV_BLOCK rows laid out as the cache's), nothing copied */
    plm_kv *views = (plm_kv *)plm_take(&a, ((size_t)r->n_seg * sizeof(plm_kv) + 3) / 4);
    float **bpe = (float **)plm_take(&a, (size_t)2 * (T + r->n_seg) * sizeof(float *) / sizeof(float));
    for (int s = 0; s < r->n_seg; s++) {
        if (r->state[s]) continue;
        const int64_t t0 = r->cu[s], len = r->cu[s + 1] - t0;
        const int nb = (int)((len + PLM_KV_BLOCK - 1) / PLM_KV_BLOCK);
        plm_kv *w = &views[s];
        w->k = bpe, w->v = bpe + nb, bpe += 2 * nb;
        for (int b = 0; b < nb; b++) {
            w->k[b] = k + (t0 + (int64_t)b * PLM_KV_BLOCK) * row;
            w->v[b] = v + (t0 + (int64_t)b * PLM_KV_BLOCK) * row;
        }
        w->n_blocks = w->cap_blocks = nb;
        kvs[s] = w;
    }
    for (int s = 0; s < r->n_seg; s++) { /* append the new keys and values (room reserved before) */
        if (!r->state[s]) continue;
        plm_kv *kv = &r->state[s]->kv[L->attn_index];
        kvs[s] = kv;
        for (int64_t t = r->cu[s]; t < r->cu[s + 1]; t++) {
            int64_t j = r->start[s] + (t - r->cu[s]);
            memcpy(kv->k[j / PLM_KV_BLOCK] + (j % PLM_KV_BLOCK) * row, k + t * row, row * sizeof(float));
            memcpy(kv->v[j / PLM_KV_BLOCK] + (j % PLM_KV_BLOCK) * row, v + t * row, row * sizeof(float));
        }
    }
    c->k.attn(o, q, kvs, r->start, r->cu, r->n_seg, nh, nkv, hd, 1.0f / sqrtf((float)hd), nth);
    for (int64_t i = 0; i < T * nh * hd; i++) o[i] *= plm_sigmoid(gate[i]);
    plm_kmatmul(&c->k, out, o, T, &L->o, nth);
}

static void moe_forward(plm_ctx *c, const plm_layer *L, int64_t T, float *out, const float *h, plm_arena a) {
    const plm_config *cf = &c->model->cfg;
    const int E = cf->n_experts, k = cf->n_experts_per_tok, H = cf->hidden_size, nth = c->p.n_threads;
    const int Im = cf->moe_intermediate_size, Is = cf->shared_intermediate_size;
    float *logits = plm_take(&a, (size_t)T * E), *w = plm_take(&a, (size_t)T * k);
    int32_t *idx = (int32_t *)plm_take(&a, (size_t)T * k);
    float *xe = plm_take(&a, (size_t)T * H), *ye = plm_take(&a, (size_t)T * H);
    float *ge = plm_take(&a, (size_t)T * (Im > Is ? Im : Is)), *ue = plm_take(&a, (size_t)T * (Im > Is ? Im : Is));
    float *we = plm_take(&a, (size_t)T);
    plm_kmatmul(&c->k, logits, h, T, &L->router, nth);
    plm_moe_route(idx, w, logits, T, E, k);
    memset(out, 0, (size_t)T * H * sizeof(float));
    int32_t *tok = (int32_t *)logits; /* logits are consumed: reuse as the token list */
    for (int e = 0; e < E; e++) {
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++)
            for (int j = 0; j < k; j++)
                if (idx[t * k + j] == e) {
                    tok[n] = (int32_t)t;
                    we[n] = w[t * k + j];
                    memcpy(xe + n * H, h + t * H, (size_t)H * sizeof(float));
                    n++;
                }
        if (!n) continue;
        plm_kmatmul(&c->k, ge, xe, n, &L->e_gate[e], nth);
        plm_kmatmul(&c->k, ue, xe, n, &L->e_up[e], nth);
        plm_swiglu(ge, ue, n * Im);
        plm_kmatmul(&c->k, ye, ge, n, &L->e_down[e], nth);
        for (int64_t i = 0; i < n; i++)
            for (int d = 0; d < H; d++) out[tok[i] * H + d] += we[i] * ye[i * H + d];
    }
    if (Is <= 0) return;
    plm_kmatmul(&c->k, ge, h, T, &L->sh_gate, nth);
    plm_kmatmul(&c->k, ue, h, T, &L->sh_up, nth);
    plm_swiglu(ge, ue, T * Is);
    plm_kmatmul(&c->k, ye, ge, T, &L->sh_down, nth);
    plm_kmatmul(&c->k, we, h, T, &L->sh_score, nth);
    for (int64_t t = 0; t < T; t++) {
        const float g = plm_sigmoid(we[t]);
        for (int d = 0; d < H; d++) out[t * H + d] += g * ye[t * H + d];
    }
}

void plm_mlp_forward(plm_ctx *c, const plm_layer *L, const plm_run *r, float *out, const float *h, plm_arena a) {
    const plm_config *cf = &c->model->cfg;
    const int64_t T = r->T;
    if (cf->is_moe) {
        moe_forward(c, L, T, out, h, a);
        return;
    }
    const int I = cf->intermediate_size, nth = c->p.n_threads;
    float *g = plm_take(&a, (size_t)T * I), *u = plm_take(&a, (size_t)T * I);
    plm_kmatmul(&c->k, g, h, T, &L->gate, nth);
    plm_kmatmul(&c->k, u, h, T, &L->up, nth);
    plm_swiglu(g, u, T * I);
    plm_kmatmul(&c->k, out, g, T, &L->down, nth);
}
