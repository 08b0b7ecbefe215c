/* Per-sequence state: conv tails and delta-rule states of the linear layers (fixed size), keys and
 * values of the attention layers in blocks of PLM_KV_BLOCK tokens that never move as they grow.
 * Snapshots copy the fixed-size part only (see packlm.h). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda.h"
#include "model/model.h"
#include "util/error.h"

static size_t conv_floats(const plm_model *m) { return (size_t)(m->cfg.conv_kernel - 1) * m->conv_dim; }
static size_t rec_floats(const plm_model *m) {
    const plm_config *c = &m->cfg;
    return (size_t)c->lin_v_heads * c->lin_k_dim * c->lin_v_dim;
}
size_t plm_state_layer_floats(const plm_model *m) { return conv_floats(m) + rec_floats(m); }
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

/* A device state's conv tails and delta-rule states cleared, a layer's pair in one memset. */
static plm_status dev_zero(plm_state *s, plm_error *err) {
    const size_t bytes = plm_state_layer_floats(s->model) * sizeof(float);
    for (int i = 0; i < s->model->info.n_linear_layers; i++) {
        const plm_status st = plm_cuda_memset0(s->dev, s->conv[i], bytes, err);
        if (st) return st;
    }
    return PLM_OK;
}

static plm_status state_alloc(plm_state **out, const plm_model *m, int dev, plm_cuda *g, plm_error *err) {
    *out = NULL;
    plm_state *s = calloc(1, sizeof *s);
    const int nl = m->info.n_linear_layers, na = m->info.n_attention_layers;
    if (!s) return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a state");
    s->model = m;
    s->dev = dev;
    new_identity(s);
    s->conv = calloc((size_t)nl + 1, sizeof *s->conv);
    s->rec = calloc((size_t)nl + 1, sizeof *s->rec);
    s->kv = calloc((size_t)na + 1, sizeof *s->kv);
    int ok = s->conv && s->rec && s->kv;
    s->slot = -1;
    if (ok && dev >= 0 && nl) { /* a slot of the context's slabs: per layer the conv tail, then the delta-rule state */
        plm_status st = plm_cuda_slot_take(g, &s->slots, &s->slot, s->conv, err);
        for (int i = 0; !st && i < nl; i++) s->rec[i] = s->conv[i] + conv_floats(m);
        if (!st) st = dev_zero(s, err);
        if (st) {
            plm_state_free(s);
            return st;
        }
    }
    for (int i = 0; ok && dev < 0 && i < nl; i++) {
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

plm_status plm_state_new(plm_state **out, const plm_model *m, plm_error *err) {
    return state_alloc(out, m, -1, NULL, err);
}

plm_status plm_state_new_on(plm_state **out, const plm_ctx *c, plm_error *err) {
    return state_alloc(out, c->model, c->dev, c->cuda, err);
}

static void kv_free(plm_kv *kv, int dev) {
    for (int b = 0; dev < 0 && b < kv->n_blocks; b++) {
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
    for (int i = 0; s->dev < 0 && i < m->info.n_linear_layers; i++) {
        if (s->conv) free(s->conv[i]);
        if (s->rec) free(s->rec[i]);
    }
    if (s->kv)
        for (int i = 0; i < m->info.n_attention_layers; i++) kv_free(&s->kv[i], s->dev);
    if (s->dev >= 0) {
        plm_cuda_slot_give(s->slots, s->slot);
        for (int i = 0; i < s->n_slabs; i++) plm_cuda_free(s->dev, s->slabs[i]);
        free(s->slabs);
    }
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
    if (s->dev >= 0) dev_zero(s, NULL); /* an error here is the device's sticky error: the next step reports it */
    for (int i = 0; s->dev < 0 && i < m->info.n_linear_layers; i++) {
        memset(s->conv[i], 0, conv_floats(m) * sizeof(float));
        memset(s->rec[i], 0, rec_floats(m) * sizeof(float));
    }
    s->len = 0;
    new_identity(s);
}

int64_t plm_state_length(const plm_state *s) { return s->len; }

/* CUDA: the blocks missing in every attention layer come from one new device slab (exactly the blocks
 * needed, so plm_state_bytes keeps its formula). */
static plm_status reserve_dev(plm_state *s, int need, plm_error *err) {
    const plm_model *m = s->model;
    const int na = m->info.n_attention_layers;
    const int have = na ? s->kv[0].n_blocks : need;
    if (need <= have) return PLM_OK;
    if (s->n_slabs == s->cap_slabs) {
        int cap = s->cap_slabs ? 2 * s->cap_slabs : 8;
        void **p = realloc(s->slabs, (size_t)cap * sizeof *p);
        if (!p) return plm_fail(err, PLM_ERR_NOMEM, "out of memory growing a KV cache");
        s->slabs = p;
        s->cap_slabs = cap;
    }
    const int grow = need - have;
    const size_t bb = kv_block_floats(m) * sizeof(float);
    void *slab;
    plm_status st = plm_cuda_alloc(s->dev, &slab, (size_t)grow * 2 * na * bb, "KV cache blocks", err);
    if (st) return st;
    s->slabs[s->n_slabs++] = slab;
    for (int i = 0; i < na; i++) {
        plm_kv *kv = &s->kv[i];
        for (int b = 0; b < grow; b++) {
            kv->k[kv->n_blocks] = (float *)((char *)slab + ((size_t)i * 2 * grow + b) * bb);
            kv->v[kv->n_blocks] = (float *)((char *)slab + ((size_t)i * 2 * grow + grow + b) * bb);
            kv->n_blocks++;
        }
    }
    return PLM_OK;
}

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
        if (s->dev >= 0) continue;
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
    return s->dev >= 0 ? reserve_dev(s, need, err) : PLM_OK;
}

/* memcpy on the state's device */
static plm_status mem_copy(int dev, void *dst, const void *src, size_t n, plm_error *err) {
    if (dev >= 0) return plm_cuda_copy(dev, dst, src, n, err);
    memcpy(dst, src, n);
    return PLM_OK;
}

/* The fixed part (conv tails, delta-rule states) from src[] to dst[] per layer; on the device a layer's
 * conv tail and state lie one after the other (a slot, or a snapshot's layer), so one copy a layer. */
static plm_status fixed_copy(int dev, const plm_model *m, float *const *dconv, float *const *drec,
                             const float *const *sconv, const float *const *srec, plm_error *err) {
    const int nl = m->info.n_linear_layers;
    const size_t cb = conv_floats(m) * sizeof(float), rb = rec_floats(m) * sizeof(float);
    if (dev >= 0) {
        for (int i = 0; i < nl; i++) {
            const plm_status st = plm_cuda_copy(dev, dconv[i], sconv[i], cb + rb, err);
            if (st) return st;
        }
        return PLM_OK;
    }
    for (int i = 0; i < nl; i++) {
        memcpy(dconv[i], sconv[i], cb);
        memcpy(drec[i], srec[i], rb);
    }
    return PLM_OK;
}

static const char *dev_name(int dev, char buf[16]) {
    if (dev < 0) return "cpu";
    snprintf(buf, 16, "cuda:%d", dev);
    return buf;
}

plm_status plm_state_copy(plm_state *dst, const plm_state *src, plm_error *err) {
    const plm_model *m = src->model;
    if (dst->model != m) return plm_fail(err, PLM_ERR_STATE, "state copy between states of different models");
    if (dst == src) return PLM_OK;
    char b1[16], b2[16];
    if (dst->dev != src->dev)
        return plm_fail(err, PLM_ERR_STATE, "state copy from a state on %s to one on %s", dev_name(src->dev, b1),
                        dev_name(dst->dev, b2));
    plm_status st = plm_state_reserve(dst, src->len, err);
    if (!st)
        st = fixed_copy(src->dev, m, dst->conv, dst->rec, (const float *const *)src->conv,
                        (const float *const *)src->rec, err);
    const int used = (int)((src->len + PLM_KV_BLOCK - 1) / PLM_KV_BLOCK);
    const size_t bb = kv_block_floats(m) * sizeof(float);
    for (int i = 0; i < m->info.n_attention_layers && !st; i++)
        for (int b = 0; b < used && !st; b++) {
            st = mem_copy(src->dev, dst->kv[i].k[b], src->kv[i].k[b], bb, err);
            if (!st) st = mem_copy(src->dev, dst->kv[i].v[b], src->kv[i].v[b], bb, err);
        }
    if (st) { /* a device error halfway: dst is an empty sequence again, never a mix */
        plm_state_reset(dst);
        return st;
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
    int dev;     /* where data lives: -1 host, N cuda:N (the state's device) */
    float *data; /* [n_linear] of conv tails then delta-rule states */
};

plm_status plm_state_snapshot(plm_snapshot **out, const plm_state *s, plm_error *err) {
    *out = NULL;
    const plm_model *m = s->model;
    const int nl = m->info.n_linear_layers;
    const size_t cf = conv_floats(m), rf = rec_floats(m), bytes = ((size_t)nl * (cf + rf) + 1) * sizeof(float);
    plm_snapshot *p = calloc(1, sizeof *p);
    if (!p) return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a snapshot");
    p->dev = s->dev;
    if (s->dev >= 0) {
        plm_status st = plm_cuda_alloc(s->dev, (void **)&p->data, bytes, "a snapshot", err);
        if (st) {
            free(p);
            return st;
        }
    } else if (!(p->data = malloc(bytes))) {
        free(p);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a snapshot");
    }
    p->model = m;
    p->id = s->id;
    p->time = tick();
    p->len = s->len;
    float *dc[nl ? nl : 1], *dr[nl ? nl : 1];
    for (int i = 0; i < nl; i++) {
        dc[i] = p->data + (size_t)i * (cf + rf);
        dr[i] = dc[i] + cf;
    }
    plm_status st = fixed_copy(s->dev, m, dc, dr, (const float *const *)s->conv, (const float *const *)s->rec, err);
    if (st) {
        plm_snapshot_free(p);
        return st;
    }
    *out = p;
    return PLM_OK;
}

plm_status plm_state_restore(plm_state *s, const plm_snapshot *p, plm_error *err) {
    const plm_model *m = s->model;
    if (!p) return plm_fail(err, PLM_ERR_INPUT, "restore: no snapshot");
    if (p->model != m) return plm_fail(err, PLM_ERR_STATE, "restore: the snapshot belongs to another model");
    if (p->dev != s->dev) return plm_fail(err, PLM_ERR_STATE, "restore: the snapshot is on another device");
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
    const int nl = m->info.n_linear_layers;
    const size_t cf = conv_floats(m), rf = rec_floats(m);
    const float *sc[nl ? nl : 1], *sr[nl ? nl : 1];
    for (int i = 0; i < nl; i++) {
        sc[i] = p->data + (size_t)i * (cf + rf);
        sr[i] = sc[i] + cf;
    }
    plm_status st = fixed_copy(s->dev, m, s->conv, s->rec, sc, sr, err);
    if (st) { /* a device error halfway (a layer at a time): an empty sequence again, never a mix */
        plm_state_reset(s);
        return st;
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
    if (p->dev >= 0) plm_cuda_free(p->dev, p->data);
    else free(p->data);
    free(p);
}
