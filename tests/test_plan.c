/* Step planning and positions, asserted directly.
 *   - plm_plan_next (src/batch/plan.c) on fixed and random lengths, budgets and piece limits: no step
 *     over the budget, every piece non-empty, each sequence covered exactly once in order with
 *     contiguous offsets, a sequence at most once per step, every step as full as the budget and the
 *     piece limit allow, and the cursor left at the end.
 *   - positions of later segments: after packed runs over several steps (each sequence split into
 *     segments that start at other positions and sit at other indices of a step), every attention
 *     cache holds the keys of a run of that sequence alone (keys are stored after RoPE, so they carry
 *     the absolute position), and the linear-attention states equal the alone run's; a sequence that
 *     sat as a later segment of a step continues in the next step with the logits of its run alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "runseq.h"
#include "testutil.h"

/* ---------------------------------------------------------------- the planner */
/* Runs the planner to the end; returns 1 when every property holds, else prints the first violation. */
static int plan_ok(const int64_t *len, int32_t n, int64_t budget, int32_t max_pieces, const char *what) {
    plm_piece *pc = malloc((size_t)(max_pieces + 1) * sizeof *pc);
    int64_t *done = calloc((size_t)(n > 0 ? n : 1), sizeof *done), left = 0;
    for (int32_t i = 0; i < n; i++) left += len[i];
    int32_t seq = 0, last_seq = -1;
    int64_t off = 0, steps = 0;
    int ok = 1;
    char why[200] = "";
#define BAD(...) do { snprintf(why, sizeof why, __VA_ARGS__); ok = 0; goto out; } while (0)
    for (;;) {
        pc[max_pieces].len = -12345; /* a canary past the limit */
        int32_t np = plm_plan_next(pc, max_pieces, len, n, &seq, &off, budget);
        if (pc[max_pieces].len != -12345) BAD("step %lld wrote past max_pieces", (long long)steps);
        if (np < 0 || np > max_pieces) BAD("step %lld: %d pieces (limit %d)", (long long)steps, np, max_pieces);
        if (np == 0) {
            if (left) BAD("step %lld: no pieces but %lld tokens left", (long long)steps, (long long)left);
            break;
        }
        if (steps++ > 100000) BAD("does not terminate");
        int64_t tok = 0;
        int32_t prev = -1;
        for (int32_t p = 0; p < np; p++) {
            const plm_piece *q = &pc[p];
            if (q->seq < 0 || q->seq >= n) BAD("step %lld piece %d: sequence %d", (long long)steps, p, q->seq);
            if (q->len < 1) BAD("step %lld piece %d: length %lld", (long long)steps, p, (long long)q->len);
            if (q->seq <= prev) BAD("step %lld: sequence %d after %d in one step", (long long)steps, q->seq, prev);
            if (q->seq < last_seq) BAD("step %lld: sequence %d after %d", (long long)steps, q->seq, last_seq);
            for (int32_t s = last_seq + 1; s < q->seq; s++) /* sequences passed over must be complete */
                if (done[s] != len[s]) BAD("sequence %d skipped with %lld of %lld tokens", s, (long long)done[s], (long long)len[s]);
            if (q->seq > last_seq && last_seq >= 0 && done[last_seq] != len[last_seq])
                BAD("sequence %d left at %lld of %lld", last_seq, (long long)done[last_seq], (long long)len[last_seq]);
            if (q->offset != done[q->seq])
                BAD("sequence %d: piece at offset %lld, expected %lld (the position its state holds)", q->seq,
                    (long long)q->offset, (long long)done[q->seq]);
            if (q->offset + q->len > len[q->seq]) BAD("sequence %d: piece runs past its end", q->seq);
            done[q->seq] += q->len;
            tok += q->len;
            left -= q->len;
            prev = last_seq = q->seq;
        }
        if (budget > 0 && tok > budget) BAD("step %lld: %lld tokens over the budget %lld", (long long)steps, (long long)tok, (long long)budget);
        /* as full as allowed: a step stops short of the budget only at the piece limit or the end */
        if ((budget <= 0 || tok < budget) && np < max_pieces && left)
            BAD("step %lld: %lld tokens, %d pieces, but %lld tokens wait", (long long)steps, (long long)tok, np, (long long)left);
    }
    for (int32_t i = 0; i < n; i++)
        if (done[i] != len[i]) BAD("sequence %d: %lld of %lld tokens planned", i, (long long)done[i], (long long)len[i]);
    if (plm_plan_next(pc, max_pieces, len, n, &seq, &off, budget) != 0) BAD("a finished plan gives more pieces");
out:
#undef BAD
    if (!ok) printf("  %s: %s\n", what, why);
    free(pc);
    free(done);
    return ok;
}

static void test_planner(void) {
    const int64_t l1[] = {5, 0, 3, 64, 1, 0, 65, 2};
    const int n1 = 8;
    const int64_t budgets[] = {0, 1, 2, 3, 7, 63, 64, 65, 140, 1000};
    for (int b = 0; b < 10; b++)
        for (int mp = 1; mp <= 9; mp++) {
            char what[96];
            snprintf(what, sizeof what, "budget %lld, %d pieces", (long long)budgets[b], mp);
            if (!plan_ok(l1, n1, budgets[b], mp, what)) tu_check(0, "planner on fixed lengths: %s", what);
        }
    tu_check(1, "planner on fixed lengths (zeros, 1, 64, 65) x 10 budgets x piece limits 1-9");
    tu_check(plan_ok(l1, 0, 5, 4, "no sequences") && plan_ok(l1 + 1, 1, 5, 4, "one empty sequence"),
             "planner: no sequences, or only empty ones, give no step");
    /* exact step counts: budget 1 -> one token a step; no budget -> one step */
    plm_piece pc[16];
    int32_t seq = 0, steps = 0, np;
    int64_t off = 0, tot = 0;
    for (int i = 0; i < n1; i++) tot += l1[i];
    while ((np = plm_plan_next(pc, 16, l1, n1, &seq, &off, 1)) > 0) steps += np == 1 && pc[0].len == 1;
    tu_check(steps == tot, "planner: budget 1 gives %d one-token steps for %lld tokens", steps, (long long)tot);
    seq = 0, off = 0;
    np = plm_plan_next(pc, 16, l1, n1, &seq, &off, 0);
    tu_check(np == 6 && plm_plan_next(pc, 16, l1, n1, &seq, &off, 0) == 0,
             "planner: no budget packs the 6 non-empty sequences in one step (%d pieces)", np);
    seq = 0, off = 0;
    np = plm_plan_next(pc, 16, l1, n1, &seq, &off, 70);
    tu_check(np == 3 && pc[2].seq == 3 && pc[2].offset == 0 && pc[2].len == 62 && seq == 3 && off == 62,
             "planner: budget 70 cuts sequence 3 after 62 tokens and leaves the cursor there");
    np = plm_plan_next(pc, 16, l1, n1, &seq, &off, 70);
    tu_check(np >= 1 && pc[0].seq == 3 && pc[0].offset == 62 && pc[0].len == 2,
             "planner: the next step continues sequence 3 at offset 62");
    /* random lengths, budgets and piece limits */
    tu_rng r = {0x706c616eull};
    int bad = 0, cases = 0;
    for (int k = 0; k < 3000; k++) {
        int n = tu_randint(&r, 0, 24);
        int64_t len[24];
        for (int i = 0; i < n; i++) len[i] = tu_randint(&r, 0, 5) == 0 ? 0 : tu_randint(&r, 1, tu_randint(&r, 0, 3) ? 40 : 300);
        int64_t budget = tu_randint(&r, 0, 4) == 0 ? 0 : tu_randint(&r, 1, tu_randint(&r, 0, 1) ? 20 : 400);
        int32_t mp = tu_randint(&r, 1, n + 2);
        char what[96];
        snprintf(what, sizeof what, "random case %d: %d sequences, budget %lld, %d pieces", k, n, (long long)budget, mp);
        if (!plan_ok(len, n, budget, mp, what) && bad++ < 5) tu_check(0, "%s", what);
        cases++;
    }
    tu_check(!bad, "planner on %d random cases (lengths 0-300, budgets 1-400 or none, piece limits): budget, "
                   "contiguous offsets, order, full steps (%d failed)", cases, bad);
    /* aligned: every piece starts at a multiple of 64 of its sequence, the budget holds, every token is
       planned once in order, and a step ends only when the next aligned piece does not fit */
    bad = 0;
    for (int k = 0; k < 2000; k++) {
        int n = tu_randint(&r, 1, 12);
        int64_t len[12], next_off[12] = {0}, budget = tu_randint(&r, 0, 3) == 0 ? 0 : tu_randint(&r, 64, 500);
        for (int i = 0; i < n; i++) len[i] = tu_randint(&r, 0, 6) == 0 ? 0 : tu_randint(&r, 1, 400);
        int32_t cs = 0, guard = 0;
        int64_t co = 0;
        int32_t got;
        int ok = 1, last_seq = 0;
        while (ok && (got = plm_plan_next_aligned(pc, 16, len, n, &cs, &co, budget, 64)) > 0 && guard++ < 10000) {
            int64_t used = 0;
            for (int p = 0; p < got; p++) {
                const plm_piece *q = &pc[p];
                ok &= q->offset % 64 == 0 && q->len >= 1 && q->offset == next_off[q->seq] && q->seq >= last_seq;
                ok &= q->offset + q->len == len[q->seq] || q->len % 64 == 0;
                next_off[q->seq] += q->len;
                last_seq = q->seq;
                used += q->len;
            }
            ok &= budget == 0 || used <= budget;
            int32_t nx = cs;
            int64_t nxo = co;
            while (nx < n && len[nx] - nxo <= 0) nx++, nxo = 0; /* the next non-empty piece */
            if (budget && got < 16 && nx < n) { /* the step ended: the next piece would not fit */
                int64_t left = len[nx] - nxo, room = budget - used;
                ok &= left > room && room < 64;
            }
        }
        for (int i = 0; i < n; i++) ok &= next_off[i] == len[i];
        if (!ok && bad++ < 3) tu_check(0, "aligned planner, random case %d (%d sequences, budget %lld)", k, n,
                                       (long long)budget);
    }
    tu_check(!bad, "aligned planner (align 64) on 2000 random cases: pieces start at multiples of 64, cut only "
                   "there, within the budget, every token once, in order (%d failed)", bad);
}

/* ---------------------------------------------------------------- positions over several steps */
static double cache_err(const plm_state *a, const plm_state *b, const plm_model *m, int64_t n, int *worst_row) {
    const plm_config *cf = &m->cfg;
    const int na = plm_model_get_info(m)->n_attention_layers;
    const size_t row = (size_t)cf->n_kv_heads * cf->head_dim;
    double worst = 0;
    *worst_row = -1;
    for (int l = 0; l < na; l++)
        for (int64_t j = 0; j < n; j++) {
            const float *ka = a->kv[l].k[j / PLM_KV_BLOCK] + (j % PLM_KV_BLOCK) * row;
            const float *kb = b->kv[l].k[j / PLM_KV_BLOCK] + (j % PLM_KV_BLOCK) * row;
            const float *va = a->kv[l].v[j / PLM_KV_BLOCK] + (j % PLM_KV_BLOCK) * row;
            const float *vb = b->kv[l].v[j / PLM_KV_BLOCK] + (j % PLM_KV_BLOCK) * row;
            double e = tu_rel_err(ka, kb, row), ev = tu_rel_err(va, vb, row);
            if (!(e <= worst)) *worst_row = (int)j;
            tu_worst(&worst, e);
            tu_worst(&worst, ev);
        }
    return worst;
}

static double linear_err(const plm_state *a, const plm_state *b, const plm_model *m) {
    const plm_config *cf = &m->cfg;
    const int nl = plm_model_get_info(m)->n_linear_layers;
    const size_t nc = (size_t)(cf->conv_kernel - 1) * m->conv_dim, nr = (size_t)cf->lin_v_heads * cf->lin_k_dim * cf->lin_v_dim;
    double worst = 0;
    for (int l = 0; l < nl; l++) {
        tu_worst(&worst, tu_rel_err(a->conv[l], b->conv[l], nc));
        tu_worst(&worst, tu_rel_err(a->rec[l], b->rec[l], nr));
    }
    return worst;
}

#define REL_STATE 1e-4

static int test_positions(const char *name) {
    char dir[256], path[512], what[256];
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    plm_error err = {0};
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    TU_REQUIRE_OK(plm_model_open(&m, dir, &err), &err);
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = 2;
    TU_REQUIRE_OK(plm_ctx_new(&c, m, &p, &err), &err);
    int32_t **seqs;
    int64_t *lens;
    snprintf(path, sizeof path, "%s/inputs.txt", dir);
    const int n = tu_read_token_lines(path, &seqs, &lens);
    const int V = plm_model_get_info(m)->vocab_size;
    if (!tu_check(n >= 3 && plm_model_get_info(m)->n_attention_layers > 0, "%s: %d sequences, attention layers", name, n))
        return 1;
    plm_state **alone = calloc(n, sizeof *alone), **packed = calloc(n, sizeof *packed);
    for (int i = 0; i < n; i++) {
        plm_state *one[1];
        TU_REQUIRE_OK(tu_run_packed_states(c, m, &seqs[i], &lens[i], 1, NULL, 0, NULL, NULL, one, &err), &err);
        alone[i] = one[0];
    }
    int order[64];
    for (int i = 0; i < n; i++) order[i] = n - 1 - i;
    const int64_t budgets[] = {0, 5, 7, 13, 64};
    for (int b = 0; b < 5; b++)
        for (int rev = 0; rev < 2; rev++) {
            TU_REQUIRE_OK(tu_run_packed_states(c, m, seqs, lens, n, rev ? order : NULL, budgets[b], NULL, NULL, packed, &err),
                          &err);
            double wk = 0, wl = 0;
            int len_ok = 1, wrow = -1, wseq = -1;
            for (int i = 0; i < n; i++) {
                int row;
                double e = cache_err(packed[i], alone[i], m, lens[i], &row);
                if (!(e <= wk)) wrow = row, wseq = i;
                tu_worst(&wk, e);
                tu_worst(&wl, linear_err(packed[i], alone[i], m));
                len_ok &= plm_state_length(packed[i]) == lens[i];
                plm_state_free(packed[i]);
            }
            snprintf(what, sizeof what, "%s: budget %lld%s: each sequence's", name, (long long)budgets[b],
                     rev ? ", reversed order" : "");
            tu_check(len_ok, "%s state holds its length", what);
            tu_check(wk <= REL_STATE, "%s attention caches (keys after RoPE: absolute positions) equal its run alone: "
                     "worst %.2e (sequence %d, position %d), bound %.0e", what, wk, wseq, wrow, REL_STATE);
            tu_check(wl <= REL_STATE, "%s conv tails and delta-rule states equal its run alone: worst %.2e", what, wl);
        }
    /* a sequence that was a later segment of step 1 continues as segment 0 of step 2: its logits in step 2
       equal those of its run alone (the cached keys and the new queries must agree on positions) */
    const int a = 0, b2 = 1;
    const int64_t ha = lens[a] / 2 > 0 ? lens[a] / 2 : 1, hb = lens[b2] / 2 > 0 ? lens[b2] / 2 : 1;
    float *ref = malloc((size_t)lens[b2] * V * sizeof *ref), *got = malloc((size_t)lens[b2] * V * sizeof *got);
    TU_REQUIRE_OK(tu_run_packed(c, m, &seqs[b2], &lens[b2], 1, NULL, 0, ref, NULL, &err), &err);
    plm_state *sa, *sb;
    TU_REQUIRE_OK(plm_state_new(&sa, m, &err), &err);
    TU_REQUIRE_OK(plm_state_new(&sb, m, &err), &err);
    int32_t tok[4096];
    memcpy(tok, seqs[a], ha * sizeof *tok);
    memcpy(tok + ha, seqs[b2], hb * sizeof *tok);
    int32_t cu1[3] = {0, (int32_t)ha, (int32_t)(ha + hb)};
    plm_state *st1[2] = {sa, sb};
    plm_step s1 = {(int32_t)(ha + hb), tok, NULL, 2, cu1, st1, PLM_MEM_HOST};
    float *lg1 = malloc((size_t)(ha + hb) * V * sizeof *lg1);
    plm_outputs o1 = {0};
    o1.logits = lg1;
    o1.n_rows = (int32_t)(ha + hb);
    TU_REQUIRE_OK(plm_step_run(c, &s1, &o1, &err), &err);
    memcpy(got, lg1 + (size_t)ha * V, (size_t)hb * V * sizeof *got);
    const int64_t rb = lens[b2] - hb;
    if (rb > 0) {
        int32_t cu2[2] = {0, (int32_t)rb};
        plm_state *st2[1] = {sb};
        plm_step s2 = {(int32_t)rb, seqs[b2] + hb, NULL, 1, cu2, st2, PLM_MEM_HOST};
        plm_outputs o2 = {0};
        o2.logits = got + (size_t)hb * V;
        o2.n_rows = (int32_t)rb;
        tu_poison(got + (size_t)hb * V, (size_t)rb * V);
        TU_REQUIRE_OK(plm_step_run(c, &s2, &o2, &err), &err);
    }
    snprintf(what, sizeof what, "%s: sequence %d as segment 1 of step 1 (%lld tokens), then segment 0 of step 2: "
             "logits vs alone", name, b2, (long long)hb);
    tu_close(got, ref, (size_t)lens[b2] * V, 1e-4, what);
    { /* a segment without a state is a new sequence: positions from 0, nothing kept */
        int32_t pos_bad[2] = {1, 2}, pos_ok[2] = {0, 1}, cu0[2] = {0, 2}, tk2[2] = {seqs[a][0], seqs[a][0]};
        plm_state *none[1] = {NULL};
        plm_step sn = {2, tk2, pos_bad, 1, cu0, none, PLM_MEM_HOST};
        plm_status stn = plm_step_run(c, &sn, NULL, &err);
        tu_check(stn == PLM_ERR_STATE && strstr(err.msg, "no state"),
                 "%s: a stateless segment at position 1 is refused (\"%s\")", name, err.msg);
        sn.pos = pos_ok;
        tu_check(plm_step_run(c, &sn, NULL, &err) == PLM_OK, "%s: a stateless segment at positions 0, 1 runs", name);
        plm_state *dup[2] = {NULL, NULL};
        int32_t cu2n[3] = {0, 1, 2};
        plm_step s2n = {2, tk2, NULL, 2, cu2n, dup, PLM_MEM_HOST};
        tu_check(plm_step_run(c, &s2n, NULL, &err) == PLM_OK, "%s: several stateless segments in one step run", name);
    }
    { /* two segments naming one state are refused, with both indices, on either side of the sorted check
         (more than 16 segments; more than 256 sort a heap copy); the state is untouched */
        enum { NS = 300 };
        plm_state *sts[NS];
        int32_t tk[NS], cu[NS + 1];
        int made = 0;
        for (int i = 0; i < NS; i++) {
            made += plm_state_new(&sts[i], m, &err) == PLM_OK;
            tk[i] = seqs[a][i % lens[a]];
            cu[i] = i;
        }
        cu[NS] = NS;
        if (!tu_check(made == NS, "%s: %d states made (%s)", name, NS, err.msg)) return 1;
        const int ns[3] = {3, 40, NS}, first[3] = {0, 5, 17}, second[3] = {2, 33, 290};
        for (int k = 0; k < 3; k++) {
            plm_state *keep = sts[second[k]];
            const int64_t len0 = plm_state_length(sts[first[k]]);
            sts[second[k]] = sts[first[k]];
            plm_step sd = {ns[k], tk, NULL, ns[k], cu, sts, PLM_MEM_HOST};
            char want[64];
            snprintf(want, sizeof want, "segments %d and %d share one state", first[k], second[k]);
            plm_status sst = plm_step_run(c, &sd, NULL, &err);
            tu_check(sst == PLM_ERR_INPUT && strstr(err.msg, want), "%s: %d segments, %d and %d sharing a state: refused "
                     "(\"%s\")", name, ns[k], first[k], second[k], err.msg);
            tu_check(plm_state_length(sts[first[k]]) == len0, "%s: the shared state is untouched", name);
            sts[second[k]] = keep;
            memset(&err, 0, sizeof err);
            tu_check(plm_step_run(c, &sd, NULL, &err) == PLM_OK, "%s: %d segments with their own states run (%s)", name,
                     ns[k], err.msg);
        }
        for (int i = 0; i < NS; i++) plm_state_free(sts[i]);
    }
    free(lg1);
    free(ref);
    free(got);
    plm_state_free(sa);
    plm_state_free(sb);
    for (int i = 0; i < n; i++) plm_state_free(alone[i]);
    free(alone);
    free(packed);
    tu_free_seqs(seqs, n);
    free(lens);
    plm_ctx_free(c);
    plm_model_free(m);
    return 0;
}

int main(void) {
    test_planner();
    const char *names[] = {"tiny-dense", "tiny-moe", "tiny-vl"};
    for (int i = 0; i < 3; i++) test_positions(names[i]);
    return tu_finish("test_plan");
}
