/* Continuous batching: requests are admitted into state slots (at most max_seqs live), and every
 * step packs, under the token budget, first the next token of each decoding sequence, then prompt
 * chunks of the sequences reading their prompt, then the prompts of newly admitted requests, all in
 * admission order. Finished sequences free their slot (reset, KV room kept) for the next request.
 *
 * Planning touches no sequence: if the step fails nothing has advanced (a freshly admitted request
 * just keeps its slot with nothing read). Each sequence samples from its own random stream, one draw
 * per token, so its tokens do not depend on what it was batched with. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/error.h"

typedef struct {
    int32_t *prompt;      /* [n_prompt] */
    int64_t n_prompt, fed;/* prompt tokens, of which already in the state */
    int32_t max_new;
    plm_sampling sp;
    plm_rng rng;
    int ignore_eos;
    plm_gen_state st;
    int32_t *out;         /* [cap_out] tokens produced */
    int64_t n_out, cap_out;
    int slot;             /* -1 when none */
    int logprobs, top;    /* record log-probabilities (and the top alternatives) of produced tokens */
    float *lp, *top_lp;   /* [cap_out], [cap_out * top] */
    int32_t *top_id;      /* [cap_out * top] */
} gen_req;

typedef struct {
    int64_t req;
    int64_t len;          /* tokens in the segment */
    int want_row;         /* 1: the segment's last token yields the next token */
} gen_piece;

struct plm_generator {
    const plm_model *m;
    plm_ctx *ctx;
    plm_generator_params p;
    gen_req *r;
    int64_t n, cap;
    int64_t next_wait;    /* requests below this id have been admitted (or were done at once) */
    int64_t pending;      /* not finished */
    int64_t *live;        /* [n_live] ids of the live requests, admission order */
    int n_live;
    int64_t cap_live;
    plm_state **slot;     /* [n_slot] */
    int64_t *slot_owner;  /* [n_slot] request id or -1 */
    int n_slot;
    int64_t cap_slot, cap_owner;
    /* step buffers, grown on demand */
    gen_piece *pc;
    int32_t *tok, *cu, *rows, *amax_rows, *amax;
    plm_state **sst;
    float *logits, *work;
    int64_t cap_pc, cap_tok, cap_cu, cap_sst, cap_rows, cap_logits;
};

/* greedy as plm_sample_token reads it: temperature <= 0 */
static int is_greedy(const plm_sampling *sp) { return !(sp->temperature > 0.0f); }
/* rows that are sampled, or whose log-probabilities are kept, need their logits (else the argmax) */
static int needs_logits(const gen_req *r) { return !is_greedy(&r->sp) || r->logprobs; }

plm_status plm_generator_new(plm_generator **out, const plm_model *m, plm_ctx *ctx, const plm_generator_params *p,
                             plm_error *err) {
    *out = NULL;
    if (!m || !ctx) return plm_fail(err, PLM_ERR_INPUT, "generator: model and context are required");
    if (ctx->model != m) return plm_fail(err, PLM_ERR_INPUT, "generator: the context belongs to another model");
    plm_generator *g = calloc(1, sizeof *g);
    if (!g) return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a generator");
    g->m = m;
    g->ctx = ctx;
    if (p) g->p = *p;
    g->work = malloc(2 * (size_t)m->cfg.vocab_size * sizeof(float));
    if (!g->work) {
        plm_generator_free(g);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a generator");
    }
    *out = g;
    return PLM_OK;
}

void plm_generator_free(plm_generator *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n; i++) plm_generator_release(g, i);
    for (int i = 0; i < g->n_slot; i++) plm_state_free(g->slot[i]);
    free(g->r); free(g->live); free(g->slot); free(g->slot_owner);
    free(g->pc); free(g->tok); free(g->cu); free(g->rows); free(g->sst); free(g->logits); free(g->work);
    free(g->amax_rows); free(g->amax);
    free(g);
}

/* grows *p (elements of size sz) to hold n; 0 on success */
static int grow(void **p, int64_t *cap, int64_t n, size_t sz) {
    if (n <= *cap) return 0;
    int64_t c = *cap ? *cap : 16;
    while (c < n) c *= 2;
    void *q = realloc(*p, (size_t)c * sz);
    if (!q) return 1;
    *p = q;
    *cap = c;
    return 0;
}

plm_status plm_generator_add(plm_generator *g, int64_t *id, const plm_request *rq, plm_error *err) {
    if (id) *id = -1;
    const int32_t V = g->m->cfg.vocab_size;
    if (!rq || !rq->prompt || rq->n_prompt <= 0) return plm_fail(err, PLM_ERR_INPUT, "request has an empty prompt");
    if (rq->n_prompt > INT32_MAX / 2) return plm_fail(err, PLM_ERR_INPUT, "prompt of %lld tokens is too long", (long long)rq->n_prompt);
    if (rq->max_new_tokens < 0)
        return plm_fail(err, PLM_ERR_INPUT, "max_new_tokens is %d, must be >= 0", rq->max_new_tokens);
    for (int64_t i = 0; i < rq->n_prompt; i++)
        if (rq->prompt[i] < 0 || rq->prompt[i] >= V)
            return plm_fail(err, PLM_ERR_INPUT, "prompt token %d at index %lld is outside the vocabulary [0, %d)",
                            rq->prompt[i], (long long)i, V);
    const plm_sampling *sp = &rq->sampling;
    if (sp->temperature != sp->temperature || sp->top_p != sp->top_p || sp->top_k < 0)
        return plm_fail(err, PLM_ERR_INPUT, "bad sampling parameters (temperature %g, top_k %d, top_p %g)",
                        (double)sp->temperature, sp->top_k, (double)sp->top_p);
    if (grow((void **)&g->r, &g->cap, g->n + 1, sizeof *g->r))
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory adding a request");
    gen_req *r = &g->r[g->n];
    memset(r, 0, sizeof *r);
    r->prompt = malloc((size_t)rq->n_prompt * sizeof *r->prompt);
    if (!r->prompt) return plm_fail(err, PLM_ERR_NOMEM, "out of memory adding a request");
    memcpy(r->prompt, rq->prompt, (size_t)rq->n_prompt * sizeof *r->prompt);
    r->n_prompt = rq->n_prompt;
    r->max_new = rq->max_new_tokens;
    r->sp = *sp;
    r->rng = plm_rng_init(sp->seed, (uint64_t)(rq->stream >= 0 ? rq->stream : g->n));
    r->ignore_eos = rq->ignore_eos;
    r->logprobs = rq->logprobs != 0;
    r->top = r->logprobs ? (rq->top_logprobs < 0 ? 0 : rq->top_logprobs > 20 ? 20 : rq->top_logprobs) : 0;
    r->slot = -1;
    r->st = r->max_new == 0 ? PLM_GEN_DONE_LENGTH : PLM_GEN_WAITING;
    if (r->st == PLM_GEN_WAITING) g->pending++;
    if (id) *id = g->n;
    g->n++;
    return PLM_OK;
}

int64_t plm_generator_pending(const plm_generator *g) { return g->pending; }

plm_gen_state plm_generator_result(const plm_generator *g, int64_t id, const int32_t **tokens, int64_t *n) {
    if (tokens) *tokens = NULL;
    if (n) *n = 0;
    if (id < 0 || id >= g->n) return PLM_GEN_WAITING;
    if (tokens) *tokens = g->r[id].out;
    if (n) *n = g->r[id].n_out;
    return g->r[id].st;
}

size_t plm_generator_state_bytes(const plm_generator *g) {
    size_t b = 0;
    for (int i = 0; i < g->n_slot; i++) b += plm_state_bytes(g->slot[i]);
    return b;
}

int32_t plm_generator_slots(const plm_generator *g) { return g->n_slot; }

/* grows the log-probability arrays of r from cap_old to r->cap_out entries; 0 on success */
static int grow_lp(gen_req *r, int64_t cap_old) {
    if (r->lp && cap_old == r->cap_out) return 0;
    int64_t c = r->cap_out, t = r->top > 0 ? r->top : 1;
    float *a = realloc(r->lp, (size_t)c * sizeof *a);
    if (a) r->lp = a;
    float *b = realloc(r->top_lp, (size_t)(c * t) * sizeof *b);
    if (b) r->top_lp = b;
    int32_t *d = realloc(r->top_id, (size_t)(c * t) * sizeof *d);
    if (d) r->top_id = d;
    return !a || !b || !d;
}

/* log p of the chosen token and the top alternatives (by logit, then lower id) of one row of logits */
static void row_logprobs(gen_req *r, const float *x, int64_t V, int32_t tk) {
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    double s = 0;
    for (int64_t v = 0; v < V; v++) s += exp((double)x[v] - mx);
    const double lse = mx + log(s);
    const int64_t o = r->n_out - 1;
    r->lp[o] = (float)(x[tk] - lse);
    float *tl = r->top_lp + o * r->top;
    int32_t *ti = r->top_id + o * r->top;
    int n = 0;
    for (int64_t v = 0; v < V && r->top > 0; v++) { /* insertion into a sorted list of at most top entries */
        if (n == r->top && !(x[v] > tl[n - 1])) continue;
        int j = n < r->top ? n++ : n - 1;
        while (j > 0 && x[v] > tl[j - 1]) tl[j] = tl[j - 1], ti[j] = ti[j - 1], j--;
        tl[j] = x[v], ti[j] = (int32_t)v;
    }
    for (int j = 0; j < n; j++) tl[j] = (float)(tl[j] - lse);
}

/* A free slot (reset) for request id, or a new one; -1 on allocation failure. */
static int take_slot(plm_generator *g, int64_t id, plm_error *err) {
    for (int i = 0; i < g->n_slot; i++)
        if (g->slot_owner[i] < 0) {
            g->slot_owner[i] = id;
            plm_state_reset(g->slot[i]);
            return i;
        }
    if (grow((void **)&g->slot, &g->cap_slot, g->n_slot + 1, sizeof *g->slot) ||
        grow((void **)&g->slot_owner, &g->cap_owner, g->n_slot + 1, sizeof *g->slot_owner)) {
        plm_fail(err, PLM_ERR_NOMEM, "out of memory for a state slot");
        return -1;
    }
    if (plm_state_new_on(&g->slot[g->n_slot], g->ctx, err)) return -1;
    g->slot_owner[g->n_slot] = id;
    return g->n_slot++;
}

static plm_status add_piece(plm_generator *g, int64_t *np, int64_t req, int64_t len, int want_row, plm_error *err) {
    if (grow((void **)&g->pc, &g->cap_pc, *np + 1, sizeof *g->pc))
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory planning a step");
    g->pc[(*np)++] = (gen_piece){req, len, want_row};
    return PLM_OK;
}

/* Plans the step into g->pc; admits waiting requests while there is room. */
static plm_status plan(plm_generator *g, int64_t *n_pieces, plm_error *err) {
    int64_t room = g->p.max_batch_tokens > 0 ? g->p.max_batch_tokens : INT64_MAX, np = 0;
    /* a batch-invariant context: prompts are cut only at multiples of PLM_SPLIT_ALIGN (see
       plm_plan_next_aligned), so a sequence's delta-rule chunks fall where they fall alone */
    const int64_t align = g->ctx->p.batch_invariant && room >= PLM_SPLIT_ALIGN ? PLM_SPLIT_ALIGN : 1;
    plm_status st = PLM_OK;
    for (int i = 0; i < g->n_live && room > 0 && !st; i++) { /* decode tokens first */
        gen_req *r = &g->r[g->live[i]];
        if (r->st != PLM_GEN_DECODING) continue;
        st = add_piece(g, &np, g->live[i], 1, 1, err);
        room--;
    }
    for (int i = 0; i < g->n_live && room > 0 && !st; i++) { /* then prompts, admission order */
        gen_req *r = &g->r[g->live[i]];
        if (r->st != PLM_GEN_PROMPT) continue;
        int64_t left = r->n_prompt - r->fed, take = left <= room ? left : room / align * align;
        if (take <= 0) continue;
        st = add_piece(g, &np, g->live[i], take, take == left, err);
        room -= take;
    }
    const int cap = g->p.max_seqs > 0 ? g->p.max_seqs : INT32_MAX;
    while (!st && room > 0 && g->next_wait < g->n && g->n_live < cap) { /* then admit */
        gen_req *r = &g->r[g->next_wait];
        if (r->st != PLM_GEN_WAITING) {
            g->next_wait++;
            continue;
        }
        if (r->n_prompt > room && room < align) break; /* no aligned cut fits: admitted next step */
        if (grow((void **)&g->live, &g->cap_live, g->n_live + 1, sizeof *g->live)) {
            st = plm_fail(err, PLM_ERR_NOMEM, "out of memory admitting a request");
            break;
        }
        int s = take_slot(g, g->next_wait, err);
        if (s < 0) {
            st = err ? err->code : PLM_ERR_NOMEM;
            break;
        }
        r->slot = s;
        r->st = PLM_GEN_PROMPT;
        r->fed = 0;
        g->live[g->n_live++] = g->next_wait++;
        int64_t take = r->n_prompt <= room ? r->n_prompt : room / align * align;
        st = add_piece(g, &np, g->live[g->n_live - 1], take, take == r->n_prompt, err);
        room -= take;
    }
    *n_pieces = np;
    return st;
}

static int is_eos(const plm_model *m, int32_t t) {
    for (int i = 0; i < m->cfg.n_eos; i++)
        if (m->cfg.eos_ids[i] == t) return 1;
    return 0;
}

static void finish(plm_generator *g, int64_t id, plm_gen_state how) {
    gen_req *r = &g->r[id];
    r->st = how;
    if (r->slot >= 0) g->slot_owner[r->slot] = -1;
    r->slot = -1;
    g->pending--;
    int k = 0;
    for (int i = 0; i < g->n_live; i++)
        if (g->live[i] != id) g->live[k++] = g->live[i];
    g->n_live = k;
}

plm_status plm_generator_step(plm_generator *g, plm_gen_step_info *info, plm_error *err) {
    plm_gen_step_info inf = {0};
    if (info) *info = inf;
    int64_t np = 0;
    plm_status st = plan(g, &np, err);
    if (st) return st;
    if (np == 0) return PLM_OK;
    int64_t T = 0, nr = 0;
    for (int64_t i = 0; i < np; i++) {
        T += g->pc[i].len;
        nr += g->pc[i].want_row;
    }
    const int64_t V = g->m->cfg.vocab_size;
    if (grow((void **)&g->tok, &g->cap_tok, T, sizeof *g->tok) ||
        grow((void **)&g->cu, &g->cap_cu, np + 1, sizeof *g->cu) ||
        grow((void **)&g->sst, &g->cap_sst, np, sizeof *g->sst))
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a step of %lld tokens", (long long)T);
    for (int64_t i = 0; i < np; i++) { /* room for the tokens this step samples */
        gen_req *r = &g->r[g->pc[i].req];
        int64_t cap = r->cap_out;
        if (g->pc[i].want_row && (grow((void **)&r->out, &r->cap_out, r->n_out + 1, sizeof *r->out) ||
                                  (r->logprobs && grow_lp(r, cap))))
            return plm_fail(err, PLM_ERR_NOMEM, "out of memory for the tokens of request %lld",
                            (long long)g->pc[i].req);
    }
    /* greedy rows only need the argmax (computed where the step runs: a GPU sends back token ids);
       sampled rows need their logits */
    int64_t ns = 0;
    for (int64_t i = 0; i < np; i++) ns += g->pc[i].want_row && needs_logits(&g->r[g->pc[i].req]);
    if (nr > g->cap_rows || ns * V > g->cap_logits || !g->logits) {
        int64_t c = nr > 1 ? nr : 1, cl = (ns > 1 ? ns : 1) * V;
        float *l = cl > g->cap_logits || !g->logits ? realloc(g->logits, (size_t)cl * sizeof *l) : g->logits;
        int32_t *rw = realloc(g->rows, (size_t)c * sizeof *rw), *ar = realloc(g->amax_rows, (size_t)c * sizeof *ar);
        int32_t *am = realloc(g->amax, (size_t)c * sizeof *am);
        if (l) g->logits = l, g->cap_logits = cl > g->cap_logits ? cl : g->cap_logits;
        if (rw) g->rows = rw;
        if (ar) g->amax_rows = ar;
        if (am) g->amax = am;
        if (!l || !rw || !ar || !am)
            return plm_fail(err, PLM_ERR_NOMEM, "out of memory for the logits of %lld rows", (long long)nr);
        g->cap_rows = c;
    }
    int32_t t = 0, k = 0, ka = 0;
    g->cu[0] = 0;
    for (int64_t i = 0; i < np; i++) {
        gen_req *r = &g->r[g->pc[i].req];
        if (r->st == PLM_GEN_DECODING) {
            g->tok[t++] = r->out[r->n_out - 1];
            inf.decode_tokens++;
        } else {
            memcpy(g->tok + t, r->prompt + r->fed, (size_t)g->pc[i].len * sizeof *g->tok);
            t += (int32_t)g->pc[i].len;
            inf.prompt_tokens += (int32_t)g->pc[i].len;
        }
        g->cu[i + 1] = t;
        g->sst[i] = g->slot[r->slot];
        if (g->pc[i].want_row && !needs_logits(r)) g->amax_rows[ka++] = t - 1;
        else if (g->pc[i].want_row) g->rows[k++] = t - 1;
    }
    plm_step step = {(int32_t)T, g->tok, NULL, (int32_t)np, g->cu, g->sst, PLM_MEM_HOST};
    plm_outputs out;
    memset(&out, 0, sizeof out);
    if (k) {
        out.logits = g->logits;
        out.rows = g->rows;
        out.n_rows = k;
    }
    if (ka) {
        out.amax_rows = g->amax_rows;
        out.n_amax = ka;
        out.argmax = g->amax;
    }
    if ((st = plm_step_run(g->ctx, &step, &out, err))) return st;
    inf.n_tokens = (int32_t)T;
    /* advance: prompt positions, then the sampled tokens (their room was made before the step) */
    k = 0, ka = 0;
    for (int64_t i = 0; i < np; i++) {
        gen_req *r = &g->r[g->pc[i].req];
        if (r->st == PLM_GEN_PROMPT) r->fed += g->pc[i].len;
        if (!g->pc[i].want_row) continue;
        const double u = plm_rng_uniform(&r->rng); /* drawn for greedy too: one draw per token */
        const float *x = needs_logits(r) ? g->logits + (int64_t)k++ * V : NULL;
        int32_t tk = x ? plm_sample_token(x, (int32_t)V, &r->sp, u, g->work) : g->amax[ka++];
        r->out[r->n_out++] = tk;
        if (r->logprobs) row_logprobs(r, x, V, tk);
        r->st = PLM_GEN_DECODING;
        inf.new_tokens++;
        if (!r->ignore_eos && is_eos(g->m, tk)) finish(g, g->pc[i].req, PLM_GEN_DONE_EOS), inf.finished++;
        else if (r->n_out >= r->max_new) finish(g, g->pc[i].req, PLM_GEN_DONE_LENGTH), inf.finished++;
    }
    if (info) *info = inf;
    return PLM_OK;
}

plm_status plm_generator_cancel(plm_generator *g, int64_t id, plm_error *err) {
    if (id < 0 || id >= g->n) return plm_fail(err, PLM_ERR_INPUT, "no request %lld", (long long)id);
    const plm_gen_state st = g->r[id].st;
    if (st == PLM_GEN_WAITING || st == PLM_GEN_PROMPT || st == PLM_GEN_DECODING) finish(g, id, PLM_GEN_CANCELLED);
    return PLM_OK;
}

void plm_generator_release(plm_generator *g, int64_t id) {
    if (id < 0 || id >= g->n) return;
    plm_generator_cancel(g, id, NULL);
    gen_req *r = &g->r[id];
    free(r->prompt); free(r->out); free(r->lp); free(r->top_lp); free(r->top_id);
    r->prompt = r->out = r->top_id = NULL;
    r->lp = r->top_lp = NULL;
    r->n_out = r->cap_out = 0;
}

int32_t plm_generator_logprobs(const plm_generator *g, int64_t id, const float **lp, const int32_t **top_ids,
                               const float **top_lp) {
    if (lp) *lp = NULL;
    if (top_ids) *top_ids = NULL;
    if (top_lp) *top_lp = NULL;
    if (id < 0 || id >= g->n || !g->r[id].logprobs) return -1;
    const gen_req *r = &g->r[id];
    if (lp) *lp = r->lp;
    if (top_ids) *top_ids = r->top_id;
    if (top_lp) *top_lp = r->top_lp;
    return r->top;
}
