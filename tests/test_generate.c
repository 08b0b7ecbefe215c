/* Generation: transformers' greedy continuations (generate.json) under every budget and cap;
 * continuous batching equal to one-at-a-time (greedy and sampled); fork and rollback bitwise equal to
 * recomputation; state memory as documented; the sampler against a brute-force reference. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda.h"
#include "model/model.h"
#include "devutil.h"
#include "testutil.h"

typedef struct {
    int32_t **tok;   /* [n] tokens produced by each request */
    int64_t *n;
    int *state;
} gen_out;

static void gen_out_free(gen_out *o, int n) {
    for (int i = 0; o->tok && i < n; i++) free(o->tok[i]);
    free(o->tok);
    free(o->n);
    free(o->state);
    memset(o, 0, sizeof *o);
}

/* Runs requests [n] through one generator; stream of request i is i. Returns 0 on success. */
static int gen_run(gen_out *o, plm_ctx *c, const plm_model *m, int32_t *const *seqs, const int64_t *lens, int n,
                   const int32_t *max_new, const plm_sampling *sp, int64_t budget, int32_t cap, size_t *bytes,
                   int32_t *slots, int64_t first_stream) {
    plm_error err = {0};
    plm_generator *g = NULL;
    plm_generator_params gp = {budget, cap};
    o->tok = calloc(n, sizeof *o->tok);
    o->n = calloc(n, sizeof *o->n);
    o->state = calloc(n, sizeof *o->state);
    if (plm_generator_new(&g, m, c, &gp, &err)) return tu_check(0, "generator_new: %s", err.msg), 1;
    for (int i = 0; i < n; i++) {
        plm_request rq = {seqs[i], lens[i], max_new[i], *sp, first_stream + i, 0, 0, 0};
        int64_t id;
        if (plm_generator_add(g, &id, &rq, &err) || id != i) {
            tu_check(0, "generator_add %d: %s", i, err.msg);
            plm_generator_free(g);
            return 1;
        }
    }
    int64_t steps = 0;
    while (plm_generator_pending(g) > 0) {
        plm_gen_step_info inf;
        if (plm_generator_step(g, &inf, &err)) {
            tu_check(0, "generator_step: %s", err.msg);
            plm_generator_free(g);
            return 1;
        }
        if ((budget > 0 && inf.n_tokens > budget) || inf.n_tokens == 0 ||
            (cap > 0 && plm_generator_slots(g) > cap)) {
            tu_check(0, "step %lld: %d tokens (budget %lld), %d slots (cap %d)", (long long)steps, inf.n_tokens,
                     (long long)budget, plm_generator_slots(g), cap);
            plm_generator_free(g);
            return 1;
        }
        steps++;
    }
    for (int i = 0; i < n; i++) {
        const int32_t *t;
        o->state[i] = plm_generator_result(g, i, &t, &o->n[i]);
        o->tok[i] = malloc((size_t)(o->n[i] + 1) * sizeof(int32_t));
        memcpy(o->tok[i], t, (size_t)o->n[i] * sizeof(int32_t));
    }
    if (bytes) *bytes = plm_generator_state_bytes(g);
    if (slots) *slots = plm_generator_slots(g);
    plm_generator_free(g);
    return 0;
}

/* each of the n requests generated alone (request i on stream i) into o; nonzero if a run failed */
static int gen_alone(gen_out *o, plm_ctx *c, const plm_model *m, int32_t *const *seqs, const int64_t *lens, int n,
                     const int32_t *max_new, const plm_sampling *sp) {
    o->tok = calloc(n, sizeof *o->tok);
    o->n = calloc(n, sizeof *o->n);
    o->state = calloc(n, sizeof *o->state);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        gen_out one = {0};
        bad |= gen_run(&one, c, m, &seqs[i], &lens[i], 1, &max_new[i], sp, 0, 0, NULL, NULL, i) != 0;
        o->tok[i] = one.tok ? one.tok[0] : NULL;
        o->n[i] = one.n ? one.n[0] : 0;
        if (one.tok) one.tok[0] = NULL;
        gen_out_free(&one, 1);
    }
    return bad;
}

static int same_tokens(const gen_out *a, const gen_out *b, int n) {
    for (int i = 0; i < n; i++)
        if (a->n[i] != b->n[i] || memcmp(a->tok[i], b->tok[i], (size_t)a->n[i] * sizeof(int32_t))) return 0;
    return 1;
}

typedef struct {
    plm_model *m;
    plm_ctx *c, *cref;
    int32_t **seqs;
    int64_t *lens;
    int n;
} fixture;

/* 0: open; 1: the device is not available here (skipped with a message); -1: failed */
static int fixture_open(fixture *f, const char *name, const char *device) {
    char dir[256], path[512];
    plm_error err = {0};
    memset(f, 0, sizeof *f);
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    TU_REQUIRE_OK(plm_model_open(&f->m, dir, &err), &err);
    int r = tu_ctx_on(&f->c, f->m, device, 2, name);
    if (r) {
        plm_model_free(f->m);
        return r;
    }
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = 1;
    p.use_reference = 1;
    TU_REQUIRE_OK(plm_ctx_new(&f->cref, f->m, &p, &err), &err);
    snprintf(path, sizeof path, "%s/inputs.txt", dir);
    f->n = tu_read_token_lines(path, &f->seqs, &f->lens);
    return tu_check(f->n > 0, "%s: %d prompts", name, f->n) ? 0 : -1;
}

static void fixture_close(fixture *f) {
    tu_free_seqs(f->seqs, f->n);
    free(f->lens);
    plm_ctx_free(f->c);
    plm_ctx_free(f->cref);
    plm_model_free(f->m);
}

/* 1. transformers' greedy continuations, all prompts decoded together */
static void check_generate_json(fixture *f, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "tests/data/%s/generate.json", name);
    FILE *fp = fopen(path, "rb");
    if (!tu_check(fp != NULL, "%s: open generate.json", name)) return;
    char *txt = malloc(1 << 20);
    size_t nr = fread(txt, 1, (1 << 20) - 1, fp);
    txt[nr] = 0;
    fclose(fp);
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    if (!tu_check(cJSON_IsArray(root), "%s: generate.json parses", name)) return;
    int32_t *max_new = calloc(f->n, sizeof *max_new);
    int n_ref = cJSON_GetArraySize(root), want_new = 0;
    for (int i = 0; i < f->n; i++) max_new[i] = 4 + i % 5; /* the other prompts decode alongside */
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        int pi = cJSON_GetObjectItem(e, "prompt_index")->valueint;
        want_new = cJSON_GetArraySize(cJSON_GetObjectItem(e, "new_tokens"));
        if (pi >= 0 && pi < f->n) max_new[pi] = want_new;
    }
    plm_sampling greedy = plm_sampling_greedy();
    const int64_t budgets[] = {1, 3, 64, 0};
    const int32_t caps[] = {1, 2, 0};
    for (int b = 0; b < 4; b++)
        for (int k = 0; k < 3; k++) {
            gen_out o = {0};
            if (gen_run(&o, f->c, f->m, f->seqs, f->lens, f->n, max_new, &greedy, budgets[b], caps[k], NULL, NULL, 0))
                continue;
            int ok = 1, checked = 0;
            cJSON_ArrayForEach(e, root) {
                int pi = cJSON_GetObjectItem(e, "prompt_index")->valueint;
                const cJSON *nt = cJSON_GetObjectItem(e, "new_tokens");
                int64_t nn = cJSON_GetArraySize(nt);
                ok &= o.n[pi] == nn && o.state[pi] == PLM_GEN_DONE_LENGTH;
                for (int64_t j = 0; ok && j < nn; j++) ok &= o.tok[pi][j] == cJSON_GetArrayItem(nt, (int)j)->valueint;
                checked++;
            }
            tu_check(ok && checked == n_ref, "%s: generate.json continuations (%d prompts) with %d prompts decoded together, budget %lld, cap %d",
                     name, checked, f->n, (long long)budgets[b], caps[k]);
            gen_out_free(&o, f->n);
        }
    free(max_new);
    cJSON_Delete(root);
}

/* 2. continuous batching equals one-at-a-time, for many budgets and caps */
static void check_batching(fixture *f, const char *name, int reference) {
    plm_ctx *c = reference ? f->cref : f->c;
    int32_t *max_new = calloc(f->n, sizeof *max_new);
    for (int i = 0; i < f->n; i++) max_new[i] = 3 + (i * 5) % 9;
    plm_sampling sps[3] = {plm_sampling_greedy(), {0.9f, 40, 0.9f, 1234}, {1.3f, 0, 1.0f, 99}};
    const char *spn[3] = {"greedy", "T=0.9 top-k 40 top-p 0.9", "T=1.3"};
    const int64_t budgets[] = {1, 2, 3, 5, 17, 64, 100, 0};
    const int32_t caps[] = {1, 2, 3, 0};
    const int nb = reference ? 2 : 8; /* the reference kernels are slow: fewer budgets */
    const int64_t rb[] = {3, 0};
    for (int s = 0; s < 3; s++) {
        gen_out alone = {0};
        gen_alone(&alone, c, f->m, f->seqs, f->lens, f->n, max_new, &sps[s]);
        int all_ok = 1, runs = 0;
        for (int b = 0; b < nb; b++)
            for (int k = 0; k < 4; k++) {
                gen_out o = {0};
                int64_t bud = reference ? rb[b] : budgets[b];
                if (reference && caps[k] == 3) continue;
                if (gen_run(&o, c, f->m, f->seqs, f->lens, f->n, max_new, &sps[s], bud, caps[k], NULL, NULL, 0)) {
                    all_ok = 0;
                    continue;
                }
                int ok = same_tokens(&o, &alone, f->n);
                if (!ok) tu_check(0, "%s%s %s: budget %lld cap %d differs from one at a time", name,
                                  reference ? " (reference)" : "", spn[s], (long long)bud, caps[k]);
                all_ok &= ok;
                runs++;
                gen_out_free(&o, f->n);
            }
        int lens_ok = 1;
        for (int i = 0; i < f->n; i++) lens_ok &= alone.n[i] == max_new[i];
        tu_check(all_ok && lens_ok, "%s%s %s: %d batched runs (budgets x caps) equal one-at-a-time generation",
                 name, reference ? " (reference kernels)" : "", spn[s], runs);
        gen_out_free(&alone, f->n);
    }
    /* the same seed reproduces; another seed differs somewhere */
    gen_out a = {0}, b = {0}, d = {0};
    plm_sampling sp2 = sps[2];
    gen_run(&a, c, f->m, f->seqs, f->lens, f->n, max_new, &sp2, 7, 2, NULL, NULL, 0);
    gen_run(&b, c, f->m, f->seqs, f->lens, f->n, max_new, &sp2, 0, 0, NULL, NULL, 0);
    sp2.seed++;
    gen_run(&d, c, f->m, f->seqs, f->lens, f->n, max_new, &sp2, 0, 0, NULL, NULL, 0);
    tu_check(same_tokens(&a, &b, f->n) && !same_tokens(&a, &d, f->n), "%s%s: same seed -> same ids, other seed differs",
             name, reference ? " (reference)" : "");
    gen_out_free(&a, f->n);
    gen_out_free(&b, f->n);
    gen_out_free(&d, f->n);
    free(max_new);
}

/* one step of toks [n] on state s; logits of every token into lg [n, V] */
static plm_status run_tokens(plm_ctx *c, plm_state *s, const int32_t *toks, int32_t n, float *lg, plm_error *err) {
    int32_t cu[2] = {0, n};
    plm_step st = {n, toks, NULL, 1, cu, &s, PLM_MEM_HOST};
    plm_outputs out;
    memset(&out, 0, sizeof out);
    if (lg) tu_poison(lg, (size_t)n * plm_model_get_info(c->model)->vocab_size); /* no stale answer survives */
    out.logits = lg;
    out.n_rows = n;
    return plm_step_run(c, &st, &out, err);
}

/* 3. fork and rollback are exact: memcmp against recomputation from scratch with the same steps */
static int check_fork_rollback(fixture *f, const char *name) {
    plm_error err = {0};
    const int V = plm_model_get_info(f->m)->vocab_size;
    int si = 0;
    for (int i = 0; i < f->n; i++)
        if (f->lens[i] > f->lens[si]) si = i;
    const int32_t *P = f->seqs[si];
    const int32_t L = (int32_t)(f->lens[si] * 2 / 3), K = 10;
    int32_t Q[10];
    for (int i = 0; i < K; i++) Q[i] = (P[i] * 7 + 3) % V;
    float *l1 = malloc((size_t)K * V * sizeof *l1), *l2 = malloc((size_t)K * V * sizeof *l2);
    float *tmp = malloc((size_t)(L + K) * V * sizeof *tmp);
    plm_state *s, *fork, *fresh;
    plm_snapshot *snap = NULL, *snap2 = NULL;
    TU_REQUIRE_OK(plm_state_new_on(&s, f->c, &err), &err);
    TU_REQUIRE_OK(plm_state_new_on(&fork, f->c, &err), &err);
    TU_REQUIRE_OK(plm_state_new_on(&fresh, f->c, &err), &err);
    TU_REQUIRE_OK(run_tokens(f->c, s, P, L, tmp, &err), &err);
    TU_REQUIRE_OK(plm_state_snapshot(&snap, s, &err), &err);
    tu_check(plm_snapshot_length(snap) == L, "%s: snapshot at %d tokens", name, L);
    for (int i = 0; i < K; i++) TU_REQUIRE_OK(run_tokens(f->c, s, P + L + i, 1, l1 + (size_t)i * V, &err), &err);
    /* rollback, then the same decode steps again */
    TU_REQUIRE_OK(plm_state_restore(s, snap, &err), &err);
    tu_check(plm_state_length(s) == L, "%s: restored length %lld", name, (long long)plm_state_length(s));
    for (int i = 0; i < K; i++) TU_REQUIRE_OK(run_tokens(f->c, s, P + L + i, 1, l2 + (size_t)i * V, &err), &err);
    tu_check(!memcmp(l1, l2, (size_t)K * V * sizeof *l1), "%s: rollback then %d decode steps: logits bitwise equal", name, K);
    {   /* speculative decoding rolls back to one point again and again: the rollback record stays bounded */
        int n0 = s->n_rb, grew = 0;
        plm_status rs = PLM_OK;
        for (int i = 0; i < 50 && !rs; i++) {
            rs = run_tokens(f->c, s, P + L, 1, NULL, &err);
            if (!rs) rs = plm_state_restore(s, snap, &err);
            grew |= s->n_rb > n0;
        }
        tu_check(!rs && !grew && plm_state_length(s) == L, "%s: 50 rollbacks to one snapshot: rollback record stays at %d entries",
                 name, n0);
    }
    /* recomputation from scratch, same steps */
    TU_REQUIRE_OK(run_tokens(f->c, fresh, P, L, tmp, &err), &err);
    for (int i = 0; i < K; i++) TU_REQUIRE_OK(run_tokens(f->c, fresh, P + L + i, 1, l2 + (size_t)i * V, &err), &err);
    tu_check(!memcmp(l1, l2, (size_t)K * V * sizeof *l1), "%s: decode after rollback equals recomputation from scratch (memcmp)", name);
    /* rollback then a chunk of K tokens, against a fresh state fed L then the chunk */
    TU_REQUIRE_OK(plm_state_restore(s, snap, &err), &err);
    TU_REQUIRE_OK(run_tokens(f->c, s, Q, K, l1, &err), &err);
    plm_state_reset(fresh);
    TU_REQUIRE_OK(run_tokens(f->c, fresh, P, L, tmp, &err), &err);
    TU_REQUIRE_OK(run_tokens(f->c, fresh, Q, K, l2, &err), &err);
    tu_check(!memcmp(l1, l2, (size_t)K * V * sizeof *l1), "%s: rollback then a %d-token chunk of other tokens equals recomputation", name, K);
    /* fork at L: the fork continues with Q, the original with P; both equal recomputation */
    TU_REQUIRE_OK(plm_state_restore(s, snap, &err), &err);
    TU_REQUIRE_OK(plm_state_copy(fork, s, &err), &err);
    for (int i = 0; i < K; i++) TU_REQUIRE_OK(run_tokens(f->c, fork, Q + i, 1, l1 + (size_t)i * V, &err), &err);
    plm_state_reset(fresh);
    TU_REQUIRE_OK(run_tokens(f->c, fresh, P, L, tmp, &err), &err);
    for (int i = 0; i < K; i++) TU_REQUIRE_OK(run_tokens(f->c, fresh, Q + i, 1, l2 + (size_t)i * V, &err), &err);
    tu_check(!memcmp(l1, l2, (size_t)K * V * sizeof *l1), "%s: fork decoding other tokens equals recomputation (memcmp)", name);
    for (int i = 0; i < K; i++) TU_REQUIRE_OK(run_tokens(f->c, s, P + L + i, 1, l1 + (size_t)i * V, &err), &err);
    plm_state_reset(fresh);
    TU_REQUIRE_OK(run_tokens(f->c, fresh, P, L, tmp, &err), &err);
    for (int i = 0; i < K; i++) TU_REQUIRE_OK(run_tokens(f->c, fresh, P + L + i, 1, l2 + (size_t)i * V, &err), &err);
    tu_check(!memcmp(l1, l2, (size_t)K * V * sizeof *l1), "%s: the original after the fork is undisturbed (memcmp)", name);

    /* refusals */
    plm_status st = plm_state_restore(fork, snap, &err);
    tu_check(st == PLM_ERR_STATE, "%s: snapshot refused by its fork (another identity): %s", name, err.msg);
    st = plm_state_restore(fresh, snap, &err);
    tu_check(st == PLM_ERR_STATE, "%s: snapshot refused by another state: %s", name, err.msg);
    memset(&err, 0, sizeof err);
    TU_REQUIRE_OK(plm_state_snapshot(&snap2, s, &err), &err); /* at L + K */
    TU_REQUIRE_OK(plm_state_restore(s, snap, &err), &err);    /* back to L */
    st = plm_state_restore(s, snap2, &err);
    tu_check(st == PLM_ERR_STATE, "%s: a longer snapshot is refused by a shorter state: %s", name, err.msg);
    memset(&err, 0, sizeof err);
    TU_REQUIRE_OK(run_tokens(f->c, s, Q, K, l1, &err), &err); /* length L + K again, other tokens */
    st = plm_state_restore(s, snap2, &err);
    tu_check(st == PLM_ERR_STATE, "%s: a snapshot past a later rollback point is refused: %s", name, err.msg);
    memset(&err, 0, sizeof err);
    TU_REQUIRE_OK(plm_state_restore(s, snap, &err), &err);
    tu_check(plm_state_length(s) == L, "%s: the earlier snapshot still restores", name);
    plm_state_reset(s);
    st = plm_state_restore(s, snap, &err);
    tu_check(st == PLM_ERR_STATE, "%s: snapshot refused after reset: %s", name, err.msg);
    plm_snapshot_free(snap);
    plm_snapshot_free(snap2);
    plm_state_free(s);
    plm_state_free(fork);
    plm_state_free(fresh);
    free(l1);
    free(l2);
    free(tmp);
    return 0;
}

/* 4. memory per sequence as documented in packlm.h */
static int check_memory(fixture *f, const char *name) {
    plm_error err = {0};
    const plm_config *cf = &f->m->cfg;
    const plm_model_info *in = plm_model_get_info(f->m);
    const size_t conv_dim = 2 * (size_t)cf->lin_k_heads * cf->lin_k_dim + (size_t)cf->lin_v_heads * cf->lin_v_dim;
    const size_t fixed = (size_t)in->n_linear_layers *
                         ((cf->conv_kernel - 1) * conv_dim + (size_t)cf->lin_v_heads * cf->lin_k_dim * cf->lin_v_dim) * 4;
    const size_t per_tok = (size_t)in->n_attention_layers * 2 * cf->n_kv_heads * cf->head_dim * 4;
    const int64_t ns[] = {0, 1, 5, 63, 64, 65, 129};
    int ok = 1;
    for (int i = 0; i < 7; i++) {
        int64_t n = ns[i];
        size_t want = fixed + (size_t)((n + 63) / 64) * 64 * per_tok;
        plm_state *s;
        TU_REQUIRE_OK(plm_state_new_on(&s, f->c, &err), &err);
        int32_t *toks = calloc(n + 1, sizeof *toks);
        if (n) TU_REQUIRE_OK(run_tokens(f->c, s, toks, (int32_t)n, NULL, &err), &err);
        ok &= plm_state_bytes_at(f->m, n) == want && plm_state_bytes(s) == want;
        if (!ok) printf("  n %lld: bytes %zu, bytes_at %zu, formula %zu\n", (long long)n, plm_state_bytes(s),
                        plm_state_bytes_at(f->m, n), want);
        plm_state_reset(s); /* a reset state keeps its room */
        ok &= plm_state_bytes(s) == want;
        free(toks);
        plm_state_free(s);
    }
    tu_check(ok, "%s: plm_state_bytes = plm_state_bytes_at = fixed %zu + ceil(n/64)*64 * %zu per token", name, fixed,
             per_tok);
    /* the generator: cap 1 holds one slot, as big as the longest sequence it held */
    int32_t *max_new = calloc(f->n, sizeof *max_new);
    int64_t longest = 0;
    for (int i = 0; i < f->n; i++) {
        max_new[i] = 5;
        if (f->lens[i] + max_new[i] - 1 > longest) longest = f->lens[i] + max_new[i] - 1;
    }
    plm_sampling g = plm_sampling_greedy();
    gen_out o = {0};
    size_t bytes = 0;
    int32_t slots = 0;
    gen_run(&o, f->c, f->m, f->seqs, f->lens, f->n, max_new, &g, 0, 1, &bytes, &slots, 0);
    tu_check(slots == 1 && bytes == plm_state_bytes_at(f->m, longest),
             "%s: cap 1: %d slot of %zu bytes = plm_state_bytes_at(longest %lld)", name, slots, bytes, (long long)longest);
    gen_out_free(&o, f->n);
    gen_run(&o, f->c, f->m, f->seqs, f->lens, f->n, max_new, &g, 0, 0, &bytes, &slots, 0);
    size_t sum = 0;
    for (int i = 0; i < f->n; i++) sum += plm_state_bytes_at(f->m, f->lens[i] + max_new[i] - 1);
    tu_check(slots == f->n && bytes == sum, "%s: no cap: %d slots, %zu bytes = sum of plm_state_bytes_at", name, slots, bytes);
    gen_out_free(&o, f->n);
    free(max_new);
    return 0;
}

/* 5. stop at an end-of-sequence id; invalid requests are refused alone */
static void check_eos_and_refusals(fixture *f, const char *name) {
    plm_error err = {0};
    plm_sampling g = plm_sampling_greedy();
    int32_t mx = 8;
    gen_out o = {0};
    gen_run(&o, f->c, f->m, &f->seqs[1], &f->lens[1], 1, &mx, &g, 0, 0, NULL, NULL, 0);
    if (!tu_check(o.n && o.n[0] == 8, "%s: 8 tokens without eos", name)) return;
    int32_t eos = o.tok[0][3];
    int first = 0;
    while (o.tok[0][first] != eos) first++;
    plm_model *m = f->m;
    int32_t saved_n = m->cfg.n_eos, saved = m->cfg.eos_ids[0];
    m->cfg.n_eos = 1;
    m->cfg.eos_ids[0] = eos;
    gen_out e = {0};
    gen_run(&e, f->c, f->m, &f->seqs[1], &f->lens[1], 1, &mx, &g, 0, 0, NULL, NULL, 0);
    tu_check(e.n && e.n[0] == first + 1 && e.state[0] == PLM_GEN_DONE_EOS && !memcmp(e.tok[0], o.tok[0], (first + 1) * 4),
             "%s: stops at the end-of-sequence id %d after %lld tokens (included)", name, eos, e.n ? (long long)e.n[0] : -1LL);
    m->cfg.n_eos = saved_n;
    m->cfg.eos_ids[0] = saved;
    gen_out_free(&o, 1);
    gen_out_free(&e, 1);

    plm_generator *gen = NULL;
    plm_generator_params gp = {0, 0};
    if (plm_generator_new(&gen, f->m, f->c, &gp, &err)) return;
    int32_t bad[3] = {1, 100000, 2};
    plm_request rq = {bad, 3, 4, g, -1, 0, 0, 0};
    int64_t id = 0;
    tu_check(plm_generator_add(gen, &id, &rq, &err) == PLM_ERR_INPUT && id == -1, "%s: bad token refused: %s", name, err.msg);
    rq.n_prompt = 0;
    tu_check(plm_generator_add(gen, &id, &rq, &err) == PLM_ERR_INPUT, "%s: empty prompt refused: %s", name, err.msg);
    rq.prompt = f->seqs[0];
    rq.n_prompt = f->lens[0];
    rq.max_new_tokens = 0;
    tu_check(plm_generator_add(gen, &id, &rq, &err) == PLM_OK && id == 0 &&
                 plm_generator_result(gen, 0, NULL, NULL) == PLM_GEN_DONE_LENGTH && plm_generator_pending(gen) == 0,
             "%s: max_new_tokens 0 finishes at once", name);
    plm_generator_free(gen);
}

/* brute force: sort everything, cut, draw */
static int32_t sample_ref(const float *l, int V, const plm_sampling *sp, double u) {
    int32_t *idx = malloc(V * sizeof *idx);
    for (int i = 0; i < V; i++) idx[i] = i;
    for (int i = 1; i < V; i++) { /* insertion sort: logit desc, id asc */
        int32_t x = idx[i];
        int j = i - 1;
        while (j >= 0 && (l[idx[j]] < l[x] || (l[idx[j]] == l[x] && idx[j] > x))) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = x;
    }
    if (!(sp->temperature > 0)) {
        int32_t r = idx[0];
        free(idx);
        return r;
    }
    int n = sp->top_k > 0 && sp->top_k < V ? sp->top_k : V;
    double mx = l[idx[0]], tot = 0;
    for (int i = 0; i < n; i++) tot += exp((l[idx[i]] - mx) / sp->temperature);
    int keep = n;
    if (sp->top_p > 0 && sp->top_p < 1) {
        double acc = 0;
        keep = 0;
        while (keep < n && acc < sp->top_p * tot) acc += exp((l[idx[keep++]] - mx) / sp->temperature);
        tot = acc;
    }
    if (n == V && !(sp->top_p > 0 && sp->top_p < 1)) /* no cut at all: the draw runs over the ids in id order */
        for (int i = 0; i < V; i++) idx[i] = i;
    double acc = 0, tgt = u * tot;
    int32_t r = idx[keep - 1];
    for (int i = 0; i < keep; i++) {
        acc += exp((l[idx[i]] - mx) / sp->temperature);
        if (tgt < acc) {
            r = idx[i];
            break;
        }
    }
    free(idx);
    return r;
}

static void check_sampler(void) {
    tu_rng rng = {42};
    const int V = 3000;
    float *l = malloc(V * sizeof *l), *work = malloc(2 * V * sizeof *work);
    int ok = 1, cases = 0;
    plm_sampling sps[] = {{0, 0, 1, 0}, {1, 1, 1, 0}, {0.7f, 50, 0.9f, 0}, {1, 0, 0.95f, 0}, {1.5f, 7, 1, 0},
                          {1, 0, 0.3f, 0}, {0.01f, 0, 1, 0}};
    for (int t = 0; t < 60; t++) {
        for (int v = 0; v < V; v++) l[v] = 3.0f * tu_normal(&rng);
        if (t % 3 == 0) for (int v = 0; v < V; v += 7) l[v] = l[0]; /* ties */
        for (size_t s = 0; s < sizeof sps / sizeof sps[0]; s++) {
            double u = tu_uniform(&rng);
            const plm_sampling *sp = &sps[s];
            int32_t a = plm_sample_token(l, V, sp, u, work);
            int32_t b = sample_ref(l, V, sp->top_k == 1 ? &sps[0] : sp, u);
            if (a != b && ok) printf("  case %d setting %zu: sampler %d, reference %d\n", t, s, a, b);
            ok &= a == b;
            cases++;
        }
    }
    tu_check(ok, "sampler equals a brute-force sort-cut-draw on %d cases (greedy, top-k, top-p, ties)", cases);
    /* ties at the top: candidates are ordered by logit, then id */
    for (int v = 0; v < V; v++) l[v] = tu_normal(&rng);
    l[17] = l[2900] = 10.0f;
    plm_sampling g0 = plm_sampling_greedy(), k1 = {1.0f, 1, 1.0f, 0}, k2 = {1.0f, 2, 1.0f, 0};
    tu_check(plm_sample_token(l, V, &g0, 0.5, work) == 17 && plm_sample_token(l, V, &k1, 0.9, work) == 17 &&
                 plm_sample_token(l, V, &k2, 0.25, work) == 17 && plm_sample_token(l, V, &k2, 0.75, work) == 2900,
             "tied maxima: greedy and top-k 1 take the lower id; top-k 2 draws them in id order");
    /* unrestricted temperature sampling: frequencies follow softmax(l / T) */
    const int Vs = 6, N = 60000;
    float ls[6] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.0f};
    int cnt[6] = {0};
    plm_rng r = plm_rng_init(5, 1);
    plm_sampling sp = {0.8f, 0, 1.0f, 5};
    for (int i = 0; i < N; i++) cnt[plm_sample_token(ls, Vs, &sp, plm_rng_uniform(&r), work)]++;
    double z = 0, worst = 0;
    for (int v = 0; v < Vs; v++) z += exp(ls[v] / 0.8);
    for (int v = 0; v < Vs; v++) {
        double p = exp(ls[v] / 0.8) / z, dev = fabs(cnt[v] / (double)N - p) / sqrt(p * (1 - p) / N);
        worst = dev > worst ? dev : worst;
    }
    tu_check(worst < 5.0, "temperature sampling frequencies follow the softmax (worst %.2f sigma)", worst);
    plm_rng r1 = plm_rng_init(9, 3), r2 = plm_rng_init(9, 3), r3 = plm_rng_init(9, 4);
    double a1 = plm_rng_uniform(&r1), a2 = plm_rng_uniform(&r2), a3 = plm_rng_uniform(&r3);
    tu_check(a1 == a2 && a1 != a3 && a1 >= 0 && a1 < 1, "random streams: same (seed, stream) repeat, others differ");
    free(l);
    free(work);
}

/* 6. cancellation frees the slot at once; kept log-probabilities equal scoring the sequence */
static void check_cancel_logprobs(fixture *f, const char *name) {
    plm_error err = {0};
    plm_sampling g = plm_sampling_greedy();
    int32_t mx[3] = {6, 6, 6};
    gen_out o = {0};
    gen_run(&o, f->c, f->m, f->seqs, f->lens, 3, mx, &g, 0, 0, NULL, NULL, 0);
    plm_generator *gen = NULL;
    plm_generator_params gp = {0, 1};
    if (plm_generator_new(&gen, f->m, f->c, &gp, &err)) return;
    int64_t id[3];
    for (int i = 0; i < 3; i++) {
        plm_request rq = {f->seqs[i], f->lens[i], 6, g, i, 1, i == 2, 3};
        if (plm_generator_add(gen, &id[i], &rq, &err)) return;
    }
    int ok = plm_generator_step(gen, NULL, &err) == PLM_OK && plm_generator_step(gen, NULL, &err) == PLM_OK;
    ok &= plm_generator_cancel(gen, 0, &err) == PLM_OK && plm_generator_cancel(gen, 1, &err) == PLM_OK;
    ok &= plm_generator_cancel(gen, 7, &err) == PLM_ERR_INPUT;
    const int32_t *t;
    int64_t n;
    ok &= plm_generator_result(gen, 0, &t, &n) == PLM_GEN_CANCELLED && n == 2 && !memcmp(t, o.tok[0], 8);
    ok &= plm_generator_result(gen, 1, NULL, &n) == PLM_GEN_CANCELLED && n == 0 && plm_generator_pending(gen) == 1;
    while (ok && plm_generator_pending(gen) > 0) ok &= plm_generator_step(gen, NULL, &err) == PLM_OK;
    ok &= plm_generator_result(gen, 2, &t, &n) == PLM_GEN_DONE_LENGTH && n == 6 && !memcmp(t, o.tok[2], 24);
    tu_check(ok && plm_generator_slots(gen) == 1, "%s: cancelled requests free their slot; the others are unchanged: %s", name, err.msg);
    const float *lp, *tl;
    const int32_t *ti;
    int k = plm_generator_logprobs(gen, 2, &lp, &ti, &tl);
    /* score prompt + produced tokens: logprob of token j given its prefix */
    int64_t L = f->lens[2] + 5;
    int32_t *seq = malloc(L * sizeof *seq), *tgt = malloc(L * sizeof *tgt);
    float *slp = calloc(L, sizeof *slp);
    memcpy(seq, f->seqs[2], f->lens[2] * sizeof *seq);
    memcpy(seq + f->lens[2], t, 5 * sizeof *seq);
    for (int64_t j = 0; j < L; j++) tgt[j] = j + 1 < L ? seq[j + 1] : t[5];
    plm_state *s = NULL;
    int32_t cu[2] = {0, (int32_t)L};
    double worst = 0;
    if (k == 3 && !plm_state_new_on(&s, f->c, &err)) {
        plm_step st = {(int32_t)L, seq, NULL, 1, cu, &s, PLM_MEM_HOST};
        plm_outputs out;
        memset(&out, 0, sizeof out);
        out.target = tgt;
        out.logprob = slp;
        ok = plm_step_run(f->c, &st, &out, &err) == PLM_OK;
        for (int j = 0; j < 6; j++) {
            double d = fabs(slp[f->lens[2] - 1 + j] - lp[j]);
            worst = d > worst ? d : worst;
            ok &= ti[j * 3] == t[j] && tl[j * 3] == lp[j] && tl[j * 3 + 1] <= tl[j * 3] && tl[j * 3 + 2] <= tl[j * 3 + 1];
        }
    } else ok = 0;
    tu_check(ok && worst < 1e-4, "%s: kept log-probabilities equal scoring (max diff %.2g), greedy = top 1", name, worst);
    plm_state_free(s);
    free(seq); free(tgt); free(slp);
    plm_generator_release(gen, 2);
    tu_check(plm_generator_result(gen, 2, NULL, &n) == PLM_GEN_DONE_LENGTH && n == 0 &&
             plm_generator_logprobs(gen, 2, &lp, NULL, NULL) == 3 && !lp, "%s: release frees the tokens", name);
    plm_generator_free(gen);
    gen_out_free(&o, 3);
}

/* 7. device states live in slots of the context's per-layer slabs: a layer's states of consecutive slots
 * side by side (what the decode step streams fastest), every slot distinct, a new state zero even in a
 * reused slot, and the slabs kept while states hold slots after their context is freed */
static void check_state_slabs(fixture *f, const char *name) {
    const plm_model *m = f->m;
    const int nl = m->info.n_linear_layers;
    if (!nl) return;
    const size_t per = (size_t)(m->cfg.conv_kernel - 1) * m->conv_dim +
                       (size_t)m->cfg.lin_v_heads * m->cfg.lin_k_dim * m->cfg.lin_v_dim;
    plm_error err = {0};
    plm_ctx *c;
    if (tu_ctx_on(&c, m, "cuda", 1, name)) return;
    enum { N = 13 }; /* three groups of slabs: 4 + 8 + 1 */
    plm_state *s[N] = {0};
    int ok = 1, adjacent = 1, distinct = 1, apart = 1, zero = 1;
    for (int i = 0; i < N && ok; i++) ok = plm_state_new_on(&s[i], c, &err) == PLM_OK;
    tu_check(ok, "%s: %d device states%s%s", name, N, err.msg[0] ? ": " : "", err.msg);
    if (!ok) {
        for (int i = 0; i < N; i++) plm_state_free(s[i]);
        plm_ctx_free(c);
        return;
    }
    for (int l = 0; l < nl; l++) { /* groups of at least 4 slots, doubling: at most two group starts in 13 */
        int gaps = 0;
        for (int i = 1; i < N; i++) {
            const int adj = s[i]->conv[l] == s[i - 1]->conv[l] + per;
            gaps += !adj;
            if (i < 4) adjacent &= adj;
            for (int j = 0; j < i; j++) distinct &= s[i]->conv[l] != s[j]->conv[l];
        }
        adjacent &= gaps <= 2;
        for (int k = 0; k < l; k++) /* a state's layers in slabs of their own: no two overlap */
            apart &= s[0]->conv[l] >= s[0]->conv[k] + per || s[0]->conv[k] >= s[0]->conv[l] + per;
    }
    tu_check(adjacent && distinct && apart,
             "%s: a layer's states side by side in its slab (adjacent %d, distinct %d, layers apart %d)", name,
             adjacent, distinct, apart);
    /* a slot given back and taken again comes back cleared, every layer (conv tail and state) */
    float *junk = malloc(per * sizeof *junk), *back = malloc(per * sizeof *back);
    for (size_t e = 0; e < per; e++) junk[e] = 1.0f + (float)e;
    float *slot[64];
    const int nc = nl < 64 ? nl : 64;
    for (int l = 0; l < nc; l++) {
        slot[l] = s[N - 1]->conv[l];
        ok = ok && plm_cuda_upload(0, slot[l], junk, per * sizeof *junk, &err) == PLM_OK;
    }
    plm_state_free(s[N - 1]);
    s[N - 1] = NULL;
    ok = ok && plm_state_new_on(&s[N - 1], c, &err) == PLM_OK;
    for (int l = 0; ok && l < nc; l++) {
        ok = s[N - 1]->conv[l] == slot[l] && plm_cuda_download(0, back, slot[l], per * sizeof *back, &err) == PLM_OK;
        for (size_t e = 0; ok && e < per; e++) zero &= back[e] == 0.0f;
    }
    tu_check(ok && zero, "%s: a reused slot starts cleared in all %d layers%s%s", name, nc, err.msg[0] ? ": " : "",
             err.msg);
    plm_ctx_free(c); /* the states outlive it: their slabs stay until the last is freed */
    ok = s[0] && plm_cuda_upload(0, s[0]->conv[nl - 1], junk, per / 2 * sizeof *junk, &err) == PLM_OK &&
         plm_cuda_download(0, back, s[0]->conv[nl - 1], per / 2 * sizeof *back, &err) == PLM_OK &&
         !memcmp(back, junk, per / 2 * sizeof *back);
    tu_check(ok, "%s: a state's slot still holds what is written to it after its context is freed%s%s", name,
             err.msg[0] ? ": " : "", err.msg);
    free(junk), free(back);
    for (int i = 0; i < N; i++) plm_state_free(s[i]);
}

/* A decode step's CUDA graph is keyed by its plan, which holds the KV tables' stride (the KV blocks of
 * all sequences, rounded up to a power of two): 72 sequences of 60 prompt tokens decoding together go
 * from 72 blocks (stride 128) to 144 (stride 256) at their 65th token, so the graph of 72 one-token
 * segments is captured again there and updated in place over the one it replaces (run_layers_graph:
 * the same size of step, smaller KV tables). More than 64 sequences: smaller decode steps also split
 * the attention's keys by the longest sequence's blocks, which changes the graph's kernels at that
 * step (a new instantiation, not an update). Each sequence's greedy tokens must equal its generation
 * alone, before and after that step, and on a GPU whose decode steps are graphs one update happens. */
static void check_graph_growth(fixture *f, const char *name) {
    enum { N = 72, P = 60 };
    int32_t *seqs[N], max_new[N];
    int64_t lens[N];
    for (int i = 0; i < N; i++) {
        seqs[i] = malloc(P * sizeof *seqs[i]);
        const int k = i % f->n;
        for (int t = 0; t < P; t++) seqs[i][t] = f->seqs[k][(t + i) % f->lens[k]];
        lens[i] = P;
        max_new[i] = 12;
    }
    const plm_sampling sp = plm_sampling_greedy();
    gen_out alone = {0}, all = {0};
    int ok = !gen_alone(&alone, f->c, f->m, seqs, lens, N, max_new, &sp);
    unsigned cap0 = 0, upd0 = 0, cap1 = 0, upd1 = 0;
    plm_cuda_graph_counts(f->c->cuda, &cap0, &upd0);
    ok = ok && !gen_run(&all, f->c, f->m, seqs, lens, N, max_new, &sp, 0, 0, NULL, NULL, 0);
    plm_cuda_graph_counts(f->c->cuda, &cap1, &upd1);
    int lens_ok = 1;
    for (int i = 0; ok && i < N; i++) lens_ok &= all.n[i] == max_new[i] && alone.n[i] == max_new[i];
    tu_check(ok && lens_ok && same_tokens(&all, &alone, N),
             "%s: %d sequences decoding across their KV tables' growth (stride 128 -> 256) give each one's tokens "
             "alone", name, N);
    if (f->c->cuda && cap1 > cap0) /* a device whose decode steps replay graphs (dense models) */
        tu_check(upd1 - upd0 >= 1, "%s: the growth's new decode graph updated the one it replaced in place "
                 "(%u graphs captured, %u updates)", name, cap1 - cap0, upd1 - upd0);
    gen_out_free(&alone, N);
    if (all.tok) gen_out_free(&all, N);
    for (int i = 0; i < N; i++) free(seqs[i]);
}

int main(void) {
    check_sampler();
    const char *names[] = {"tiny-dense", "tiny-moe", "tiny-vl"};
    const char *devices[] = {"cpu", "cuda"};
    for (int d = 0; d < 2; d++)
    for (int i = 0; i < 3; i++) {
        fixture f;
        if (fixture_open(&f, names[i], devices[d])) continue;
        printf("--- %s on %s\n", names[i], devices[d]);
        check_generate_json(&f, names[i]);
        check_batching(&f, names[i], 0);
        if (d == 0) check_batching(&f, names[i], 1); /* the reference kernels run on the CPU only */
        check_fork_rollback(&f, names[i]);
        check_memory(&f, names[i]);
        check_eos_and_refusals(&f, names[i]);
        check_cancel_logprobs(&f, names[i]);
        if (d == 1) check_state_slabs(&f, names[i]);
        check_graph_growth(&f, names[i]);
        fixture_close(&f);
    }
    return tu_finish("test_generate");
}
