/* One packed step: validate everything first (no state changes on error), reserve KV room, run the
 * layers over all T tokens, then produce the requested outputs (logits rows, log-probabilities). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda.h"
#include "model/model.h"
#include "util/error.h"

#define OUT_BLOCK 32 /* tokens per lm_head block when scoring or emitting logits */

/* Where the step's arrays are (PLM_MEM_DEVICE: memory of the context's GPU, checked pointer by
 * pointer before anything reads them). */
static plm_status check_mem(plm_ctx *c, const plm_step *s, const plm_outputs *out, plm_error *err) {
    if (s->mem != PLM_MEM_HOST && s->mem != PLM_MEM_DEVICE)
        return plm_fail(err, PLM_ERR_INPUT, "plm_step.mem is %d: PLM_MEM_HOST (0) or PLM_MEM_DEVICE (1)", s->mem);
    if (out && out->mem != PLM_MEM_HOST && out->mem != PLM_MEM_DEVICE)
        return plm_fail(err, PLM_ERR_INPUT, "plm_outputs.mem is %d: PLM_MEM_HOST (0) or PLM_MEM_DEVICE (1)", out->mem);
    const int din = s->mem == PLM_MEM_DEVICE, dout = out && out->mem == PLM_MEM_DEVICE;
    if (!din && !dout) return PLM_OK;
    if (c->dev < 0)
        return plm_fail(err, PLM_ERR_INPUT,
                        "the step's %s declared device memory (PLM_MEM_DEVICE) but the context runs on cpu: device "
                        "arrays need a CUDA context", din ? "tokens are" : "outputs are");
    plm_status st;
    if (din && (st = plm_cuda_where(c, s->tokens, "plm_step.tokens", err))) return st;
    if (din && s->pos && (st = plm_cuda_where(c, s->pos, "plm_step.pos", err))) return st;
    if (!dout) return PLM_OK;
    if (out->logits_cb)
        return plm_fail(err, PLM_ERR_UNSUPPORTED,
                        "logits_cb hands over host blocks: with PLM_MEM_DEVICE outputs pass logits (device memory)");
    const void *ptr[5] = {out->logits, out->target, out->logprob, out->hidden, out->n_amax > 0 ? out->argmax : NULL};
    const char *name[5] = {"plm_outputs.logits", "plm_outputs.target", "plm_outputs.logprob", "plm_outputs.hidden",
                           "plm_outputs.argmax"};
    for (int i = 0; i < 5; i++)
        if (ptr[i] && (st = plm_cuda_where(c, ptr[i], name[i], err))) return st;
    return PLM_OK;
}

static int cmp_ptr(const void *a, const void *b) {
    const uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return (x > y) - (x < y);
}

/* Whether two segments of the step name one state: 0 for certain, else 1 (then the pairwise search
 * in validate finds which, in its order). Sorted, not pairwise: 256 sequences are 32,640 pairs. */
static int shares_state(const plm_step *s) {
    const int n = s->n_seg;
    if (n <= 16) return 1;
    const plm_state *buf[256], **p = n <= 256 ? buf : malloc((size_t)n * sizeof *p);
    if (!p) return 1;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (s->state[i]) p[k++] = s->state[i];
    qsort(p, (size_t)k, sizeof *p, cmp_ptr);
    int dup = 0;
    for (int i = 1; i < k && !dup; i++) dup = p[i] == p[i - 1];
    if (p != buf) free(p);
    return dup;
}

/* Token ids, segments, positions and states; with device arrays (PLM_MEM_DEVICE) the ids, positions
 * and targets are checked on the device (chk receives what it found, and the count of targets) and
 * reported here with the host path's messages. */
static plm_status validate(plm_ctx *c, const plm_step *s, const plm_outputs *out, plm_cuda_check *chk,
                           plm_error *err) {
    const plm_model *m = c->model;
    if (!s || s->n_tokens <= 0) return plm_fail(err, PLM_ERR_INPUT, "step has no tokens");
    if (!s->tokens || !s->cu || !s->state) return plm_fail(err, PLM_ERR_INPUT, "step is missing tokens, cu or state");
    plm_status rc = check_mem(c, s, out, err);
    if (rc) return rc;
    if (s->n_seg <= 0) return plm_fail(err, PLM_ERR_INPUT, "step has no segments");
    if (s->cu[0] != 0) return plm_fail(err, PLM_ERR_INPUT, "cu[0] is %d, must be 0", s->cu[0]);
    for (int i = 0; i < s->n_seg; i++)
        if (s->cu[i + 1] <= s->cu[i])
            return plm_fail(err, PLM_ERR_INPUT, "segment %d is empty or reversed (cu %d -> %d)", i, s->cu[i],
                            s->cu[i + 1]);
    if (s->cu[s->n_seg] != s->n_tokens)
        return plm_fail(err, PLM_ERR_INPUT, "cu ends at %d but the step has %d tokens", s->cu[s->n_seg], s->n_tokens);
    const int din = s->mem == PLM_MEM_DEVICE, dout = out && out->mem == PLM_MEM_DEVICE;
    if (din || (dout && out->target)) {
        int64_t start_buf[64], *start = s->n_seg <= 64 ? start_buf : malloc((size_t)s->n_seg * sizeof *start);
        if (!start) return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a step of %d segments", s->n_seg);
        for (int i = 0; i < s->n_seg; i++) start[i] = s->state[i] ? s->state[i]->len : 0;
        rc = plm_cuda_check_arrays(c, din ? s->tokens : NULL, din ? s->pos : NULL, dout ? out->target : NULL,
                                   s->n_tokens, s->cu, start, s->n_seg, chk, err);
        if (start != start_buf) free(start);
        if (rc) return rc;
        if (din && chk->bad_token >= 0)
            return plm_fail(err, PLM_ERR_INPUT, "token %d at index %d is outside the vocabulary [0, %d)", chk->token,
                            chk->bad_token, m->cfg.vocab_size);
    }
    if (!din)
        for (int32_t t = 0; t < s->n_tokens; t++)
            if (s->tokens[t] < 0 || s->tokens[t] >= m->cfg.vocab_size)
                return plm_fail(err, PLM_ERR_INPUT, "token %d at index %d is outside the vocabulary [0, %d)",
                                s->tokens[t], t, m->cfg.vocab_size);
    const int32_t *pos = din ? NULL : s->pos; /* host positions; device ones: chk->bad_pos */
    const int shared = shares_state(s);
    for (int i = 0; i < s->n_seg; i++) {
        const plm_state *st = s->state[i];
        const int32_t bad = din && s->pos && chk->bad_pos >= s->cu[i] && chk->bad_pos < s->cu[i + 1] ? chk->bad_pos : -1;
        if (!st) { /* a whole sequence from its first token, nothing kept */
            for (int32_t t = s->cu[i]; pos && t < s->cu[i + 1]; t++)
                if (pos[t] != t - s->cu[i])
                    return plm_fail(err, PLM_ERR_STATE,
                                    "segment %d: token %d has position %d but the segment has no state (a new "
                                    "sequence: expected position %d)", i, t, pos[t], t - s->cu[i]);
            if (bad >= 0)
                return plm_fail(err, PLM_ERR_STATE,
                                "segment %d: token %d has position %d but the segment has no state (a new "
                                "sequence: expected position %d)", i, bad, chk->pos, bad - s->cu[i]);
            continue;
        }
        if (st->model != m) return plm_fail(err, PLM_ERR_STATE, "segment %d's state belongs to another model", i);
        if (st->dev != c->dev)
            return plm_fail(err, PLM_ERR_STATE, "segment %d's state is on %s but the context runs on %s", i,
                            st->dev < 0 ? "cpu" : "another device", c->dev_name);
        for (int j = 0; shared && j < i; j++)
            if (s->state[j] == st)
                return plm_fail(err, PLM_ERR_INPUT, "segments %d and %d share one state in the same step", j, i);
        if (bad >= 0)
            return plm_fail(err, PLM_ERR_STATE,
                            "segment %d: token %d has position %d but its state holds %lld tokens "
                            "(expected position %lld)", i, bad, chk->pos, (long long)st->len,
                            (long long)(st->len + (bad - s->cu[i])));
        if (!pos) continue;
        for (int32_t t = s->cu[i]; t < s->cu[i + 1]; t++) {
            int64_t want = st->len + (t - s->cu[i]);
            if (pos[t] != want)
                return plm_fail(err, PLM_ERR_STATE,
                                "segment %d: token %d has position %d but its state holds %lld tokens "
                                "(expected position %lld)", i, t, pos[t], (long long)st->len, (long long)want);
        }
    }
    return PLM_OK;
}

/* logits of rows (token indices; NULL = all) of the final hidden states xn: into out->logits [n, V]
 * with one pass over lm_head (blk holds n rows when rows are chosen), or block by block handed to
 * out->logits_cb (blk, buf hold OUT_BLOCK rows) */
static void head_rows(plm_ctx *c, const plm_outputs *out, const float *xn, int64_t n, float *blk, float *buf) {
    const plm_model *m = c->model;
    const int H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    const int32_t *rows = out->rows;
    if (!out->logits_cb) { /* decode: every chosen row in one GEMM, the weights streamed once */
        if (rows)
            for (int64_t i = 0; i < n; i++) memcpy(blk + i * H, xn + (int64_t)rows[i] * H, (size_t)H * sizeof(float));
        plm_kmatmul(&c->k, out->logits, rows ? blk : xn, n, c->lm_head, c->p.n_threads);
        return;
    }
    for (int64_t i0 = 0; i0 < n; i0 += OUT_BLOCK) {
        int64_t nb = n - i0 < OUT_BLOCK ? n - i0 : OUT_BLOCK;
        for (int64_t i = 0; i < nb; i++)
            memcpy(blk + i * H, xn + (int64_t)(rows ? rows[i0 + i] : i0 + i) * H, (size_t)H * sizeof(float));
        float *dst = out->logits_cb ? buf : out->logits + i0 * V;
        plm_kmatmul(&c->k, dst, blk, nb, c->lm_head, c->p.n_threads);
        if (out->logits_cb && out->logits_cb(out->cb_user, (int32_t)i0, (int32_t)nb, buf)) break;
    }
}

static void argmax_rows(plm_ctx *c, const plm_outputs *out, const float *xn, float *blk, float *buf) {
    const plm_model *m = c->model;
    const int H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    for (int64_t i0 = 0; i0 < out->n_amax; i0 += OUT_BLOCK) {
        const int64_t nb = out->n_amax - i0 < OUT_BLOCK ? out->n_amax - i0 : OUT_BLOCK;
        for (int64_t i = 0; i < nb; i++)
            memcpy(blk + i * H, xn + (int64_t)out->amax_rows[i0 + i] * H, (size_t)H * sizeof(float));
        plm_kmatmul(&c->k, buf, blk, nb, c->lm_head, c->p.n_threads);
        for (int64_t i = 0; i < nb; i++) out->argmax[i0 + i] = plm_argmax_row(buf + i * V, V);
    }
}

static void score_rows(plm_ctx *c, const plm_outputs *out, const float *xn, int64_t T, float *blk, float *buf) {
    const plm_model *m = c->model;
    const int H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    int32_t rows[OUT_BLOCK], tgt[OUT_BLOCK];
    float lp[OUT_BLOCK];
    int64_t t = 0;
    while (t < T) {
        int nb = 0;
        for (; t < T && nb < OUT_BLOCK; t++)
            if (out->target[t] >= 0) {
                tgt[nb] = out->target[t];
                rows[nb++] = (int32_t)t;
            }
        if (!nb) break;
        for (int i = 0; i < nb; i++) memcpy(blk + i * H, xn + (int64_t)rows[i] * H, (size_t)H * sizeof(float));
        plm_kmatmul(&c->k, buf, blk, nb, c->lm_head, c->p.n_threads);
        c->k.logprob(lp, buf, tgt, nb, V, c->p.n_threads);
        for (int i = 0; i < nb; i++) out->logprob[rows[i]] = lp[i];
    }
}

/* The step on the GPU (model/cuda_backend.cu), which takes a state for every segment: a segment
 * without one runs on a scratch state of the context (kept between steps, reset before each use:
 * device memory for the most stateless segments of a step so far). */
static plm_status cuda_step(plm_ctx *c, const plm_step *s, const plm_outputs *out, const plm_cuda_check *chk,
                            plm_error *err) {
    plm_status st = PLM_OK;
    int n_free = 0;
    for (int i = 0; i < s->n_seg; i++) n_free += !s->state[i];
    if (n_free > c->n_scratch_states) {
        plm_state **p = realloc(c->scratch_states, (size_t)n_free * sizeof *p);
        if (!p) return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a step of %d segments", s->n_seg);
        c->scratch_states = p;
        for (; c->n_scratch_states < n_free; c->n_scratch_states++)
            if ((st = plm_state_new_on(&p[c->n_scratch_states], c, err))) return st;
    }
    int64_t start_buf[64], *start = s->n_seg <= 64 ? start_buf : malloc((size_t)s->n_seg * sizeof *start);
    plm_state *sb_buf[64], **sts = s->n_seg <= 64 ? sb_buf : malloc((size_t)s->n_seg * sizeof *sts);
    if (!start || !sts) st = plm_fail(err, PLM_ERR_NOMEM, "out of memory for a step of %d segments", s->n_seg);
    for (int i = 0, j = 0; !st && i < s->n_seg; i++) {
        if ((sts[i] = s->state[i])) continue;
        sts[i] = c->scratch_states[j++];
        plm_state_reset(sts[i]);
        st = plm_state_reserve(sts[i], s->cu[i + 1] - s->cu[i], err);
    }
    for (int i = 0; !st && i < s->n_seg; i++) start[i] = sts[i]->len;
    if (!st) {
        plm_step ds = *s;
        ds.state = sts;
        st = plm_cuda_step(c, &ds, out, start, chk, err);
    }
    if (!st)
        for (int i = 0; i < s->n_seg; i++)
            if (s->state[i]) s->state[i]->len += s->cu[i + 1] - s->cu[i];
    if (start != start_buf) free(start);
    if (sts != sb_buf) free(sts);
    return st;
}

plm_status plm_step_run(plm_ctx *c, const plm_step *s, const plm_outputs *out, plm_error *err) {
    const plm_model *m = c->model;
    const plm_config *cf = &m->cfg;
    plm_cuda_check chk = {-1, 0, -1, 0, -1, 0, 0, 0};
    plm_status st = validate(c, s, out, &chk, err);
    if (st) return st;
    const int dev_arrays = s->mem == PLM_MEM_DEVICE || (out && out->mem == PLM_MEM_DEVICE);
    if (out && out->target && out->mem == PLM_MEM_DEVICE) {
        if (chk.bad_target >= 0)
            return plm_fail(err, PLM_ERR_INPUT, "target %d at index %d is outside the vocabulary", chk.target,
                            chk.bad_target);
    } else if (out && out->target)
        for (int32_t t = 0; t < s->n_tokens; t++)
            if (out->target[t] >= cf->vocab_size)
                return plm_fail(err, PLM_ERR_INPUT, "target %d at index %d is outside the vocabulary",
                                out->target[t], t);
    if (out && (out->logits || out->logits_cb) && out->rows)
        for (int32_t i = 0; i < out->n_rows; i++)
            if (out->rows[i] < 0 || out->rows[i] >= s->n_tokens)
                return plm_fail(err, PLM_ERR_INPUT, "output row %d is not a token of the step", out->rows[i]);
    if (out && out->n_amax > 0) {
        if (!out->amax_rows || !out->argmax)
            return plm_fail(err, PLM_ERR_INPUT, "argmax requested for %d rows without amax_rows or argmax", out->n_amax);
        for (int32_t i = 0; i < out->n_amax; i++)
            if (out->amax_rows[i] < 0 || out->amax_rows[i] >= s->n_tokens)
                return plm_fail(err, PLM_ERR_INPUT, "argmax row %d is not a token of the step", out->amax_rows[i]);
    }
    for (int i = 0; i < s->n_seg; i++) /* KV room first: after this nothing can fail */
        if (s->state[i] &&
            (st = plm_state_reserve(s->state[i], s->state[i]->len + (s->cu[i + 1] - s->cu[i]), err)))
            return st;
    if (c->dev >= 0) return cuda_step(c, s, out, dev_arrays ? &chk : NULL, err);

    const int64_t T = s->n_tokens, H = cf->hidden_size, V = cf->vocab_size;
    const int n_seg = s->n_seg;
    /* output buffers: chosen rows gathered (blk), a block of logits for streaming / scoring (buf) */
    const int want_logits = out && (out->logits || out->logits_cb);
    const int64_t n_rows = want_logits ? (out->rows ? out->n_rows : T) : 0;
    const int blocked = out && (out->logits_cb || (out->target && out->logprob) || out->n_amax > 0);
    const size_t gathered = want_logits && !out->logits_cb && out->rows ? (size_t)n_rows : 0;
    const size_t blk_rows = blocked && gathered < OUT_BLOCK ? OUT_BLOCK : gathered;
    /* x, h, mo [T, H]; then the layers' scratch, which the output buffers (used after the last
       layer) share */
    const size_t outs = blk_rows * H + (blocked ? (size_t)OUT_BLOCK * V : 0) + 32, lay = plm_layers_scratch(m, T);
    const size_t need = 3 * (size_t)T * H + 48 + (lay > outs ? lay : outs) + 64;
    float *base = plm_ctx_scratch(c, need);
    int64_t *idx64 = malloc(((size_t)T + n_seg) * sizeof(int64_t));
    if (!base || !idx64) {
        free(idx64);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a step of %lld tokens", (long long)T);
    }
    plm_arena a = {base, need, 0};
    float *x = plm_take(&a, T * H), *h = plm_take(&a, T * H), *mo = plm_take(&a, T * H);
    plm_arena ao = a; /* the output buffers, over the layers' scratch */
    float *blk = plm_take(&ao, blk_rows * H), *buf = blocked ? plm_take(&ao, (size_t)OUT_BLOCK * V) : NULL;
    int64_t *pos = idx64, *start = idx64 + T;
    for (int i = 0; i < n_seg; i++) {
        start[i] = s->state[i] ? s->state[i]->len : 0;
        for (int32_t t = s->cu[i]; t < s->cu[i + 1]; t++) pos[t] = start[i] + (t - s->cu[i]);
    }
    plm_run r = {T, n_seg, s->cu, start, pos, s->state};
    float *hid = out ? out->hidden : NULL;

    plm_embed_rows(x, &m->embed, s->tokens, T);
    if (hid) memcpy(hid, x, (size_t)(T * H) * sizeof(float));
    for (int li = 0; li < cf->n_layers; li++) {
        const plm_layer *L = &c->layers[li];
        plm_rmsnorm_zc(h, x, L->in_norm, T, (int)H, cf->rms_eps);
        if (L->type == PLM_LAYER_LINEAR) plm_linear_attn_forward(c, L, &r, mo, h, a);
        else plm_attention_forward(c, L, &r, mo, h, a);
        for (int64_t i = 0; i < T * H; i++) x[i] += mo[i];
        plm_rmsnorm_zc(h, x, L->post_norm, T, (int)H, cf->rms_eps);
        plm_mlp_forward(c, L, &r, mo, h, a);
        for (int64_t i = 0; i < T * H; i++) x[i] += mo[i];
        if (hid && li + 1 < cf->n_layers) memcpy(hid + (li + 1) * T * H, x, (size_t)(T * H) * sizeof(float));
    }
    for (int i = 0; i < n_seg; i++)
        if (s->state[i]) s->state[i]->len += s->cu[i + 1] - s->cu[i];
    plm_rmsnorm_zc(h, x, m->final_norm, T, (int)H, cf->rms_eps);
    if (hid) memcpy(hid + (int64_t)cf->n_layers * T * H, h, (size_t)(T * H) * sizeof(float));
    if (want_logits && n_rows > 0) head_rows(c, out, h, n_rows, blk, buf);
    if (out && out->target && out->logprob) score_rows(c, out, h, T, blk, buf);
    if (out && out->n_amax > 0) argmax_rows(c, out, h, blk, buf);
    free(idx64);
    return PLM_OK;
}

plm_status plm_segments_from_positions_on(plm_ctx *c, int32_t *cu, int32_t *n_seg, const int32_t *pos, int32_t n,
                                          plm_error *err) {
    *n_seg = 0;
    if (c->dev < 0)
        return plm_fail(err, PLM_ERR_INPUT,
                        "position ids declared device memory (PLM_MEM_DEVICE) but the context runs on cpu: device "
                        "arrays need a CUDA context");
    if (n <= 0) return plm_fail(err, PLM_ERR_INPUT, "empty packed row");
    if (!pos || !cu) return plm_fail(err, PLM_ERR_INPUT, "plm_segments_from_positions_on: pos or cu is NULL");
    plm_status st = plm_cuda_where(c, pos, "position ids", err);
    if (st) return st;
    return plm_cuda_segments(c, cu, n_seg, pos, n, err);
}

plm_status plm_segments_from_positions(int32_t *cu, int32_t *n_seg, const int32_t *pos, int32_t n,
                                       plm_error *err) {
    *n_seg = 0;
    if (n <= 0) return plm_fail(err, PLM_ERR_INPUT, "empty packed row");
    int32_t k = 0;
    for (int32_t t = 0; t < n; t++) {
        if (pos[t] < 0) return plm_fail(err, PLM_ERR_INPUT, "position id %d at index %d is negative", pos[t], t);
        if (t == 0 || pos[t] != pos[t - 1] + 1) cu[k++] = t;
    }
    cu[k] = n;
    *n_seg = k;
    return PLM_OK;
}
