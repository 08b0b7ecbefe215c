/* Per-sequence state: conv tails and delta-rule states of the linear layers (fixed size), keys and
 * values of the attention layers in blocks of PLM_KV_BLOCK tokens that never move as they grow.
 * Snapshots copy the fixed-size part only (see packlm.h). */
#include <stdatomic.h>
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

/* Process-wide clock for identities and snapshot / restore times (never 0). */
static atomic_uint_least64_t g_clock = 1;
static uint64_t tick(void) { return (uint64_t)atomic_fetch_add(&g_clock, 1); }

static void new_identity(plm_state *s) {
    s->id = tick();
    s->n_rb = 0;
}

plm_status plm_state_new(plm_state **out, const plm_model *m, plm_error *err) {
    *out = NULL;
    plm_state *s = calloc(1, sizeof *s);
    const int nl = m->info.n_linear_layers, na = m->info.n_attention_layers;
    if (!s) return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a state");
    s->model = m;
    new_identity(s);
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
    free(s->rb_time);
    free(s->rb_len);
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
    new_identity(s);
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
    new_identity(dst);
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

/* ---------------------------------------------------------------- snapshots
 * A snapshot taken at time t with length L applies to its state while the state's first L KV entries
 * are the ones it had at t: the state's length is >= L and every restore after t went to a length
 * >= L (a restore to r lets later steps rewrite the entries from r on). The state keeps its restores
 * as a stack of (time, length) with lengths strictly increasing upwards: a new restore to r pops the
 * entries with length >= r (their constraint is implied by the new one) and is pushed, so the
 * smallest length restored after t is the lowest entry with time > t. */
struct plm_snapshot {
    const plm_model *model;
    uint64_t id, time;
    int64_t len;
    float *data; /* [n_linear] of conv tails then delta-rule states */
};

plm_status plm_state_snapshot(plm_snapshot **out, const plm_state *s, plm_error *err) {
    *out = NULL;
    const plm_model *m = s->model;
    const size_t cf = conv_floats(m), rf = rec_floats(m);
    plm_snapshot *p = calloc(1, sizeof *p);
    if (p) p->data = malloc(((size_t)m->info.n_linear_layers * (cf + rf) + 1) * sizeof(float));
    if (!p || !p->data) {
        plm_snapshot_free(p);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a snapshot");
    }
    p->model = m;
    p->id = s->id;
    p->time = tick();
    p->len = s->len;
    float *d = p->data;
    for (int i = 0; i < m->info.n_linear_layers; i++, d += cf + rf) {
        memcpy(d, s->conv[i], cf * sizeof(float));
        memcpy(d + cf, s->rec[i], rf * sizeof(float));
    }
    *out = p;
    return PLM_OK;
}

plm_status plm_state_restore(plm_state *s, const plm_snapshot *p, plm_error *err) {
    const plm_model *m = s->model;
    if (!p) return plm_fail(err, PLM_ERR_INPUT, "restore: no snapshot");
    if (p->model != m) return plm_fail(err, PLM_ERR_STATE, "restore: the snapshot belongs to another model");
    if (p->id != s->id)
        return plm_fail(err, PLM_ERR_STATE,
                        "restore: the snapshot was taken from another sequence (the state was created, reset or "
                        "copied into since)");
    if (s->len < p->len)
        return plm_fail(err, PLM_ERR_STATE, "restore: the state holds %lld tokens, fewer than the snapshot's %lld",
                        (long long)s->len, (long long)p->len);
    for (int i = 0; i < s->n_rb; i++)
        if (s->rb_time[i] > p->time) {
            if (s->rb_len[i] < p->len)
                return plm_fail(err, PLM_ERR_STATE,
                                "restore: the state was rolled back to %lld tokens after this snapshot of %lld "
                                "tokens was taken; its later entries may have been rewritten",
                                (long long)s->rb_len[i], (long long)p->len);
            break;
        }
    int n = s->n_rb;
    while (n > 0 && s->rb_len[n - 1] >= p->len) n--;
    if (n == s->cap_rb) {
        int cap = s->cap_rb ? 2 * s->cap_rb : 8;
        uint64_t *t = realloc(s->rb_time, (size_t)cap * sizeof *t);
        if (t) s->rb_time = t;
        int64_t *l = realloc(s->rb_len, (size_t)cap * sizeof *l);
        if (l) s->rb_len = l;
        if (!t || !l) return plm_fail(err, PLM_ERR_NOMEM, "out of memory restoring a snapshot");
        s->cap_rb = cap;
    }
    const size_t cf = conv_floats(m), rf = rec_floats(m);
    const float *d = p->data;
    for (int i = 0; i < m->info.n_linear_layers; i++, d += cf + rf) {
        memcpy(s->conv[i], d, cf * sizeof(float));
        memcpy(s->rec[i], d + cf, rf * sizeof(float));
    }
    s->len = p->len;
    s->rb_time[n] = tick();
    s->rb_len[n] = p->len;
    s->n_rb = n + 1;
    return PLM_OK;
}

int64_t plm_snapshot_length(const plm_snapshot *p) { return p ? p->len : 0; }

void plm_snapshot_free(plm_snapshot *p) {
    if (!p) return;
    free(p->data);
    free(p);
}
