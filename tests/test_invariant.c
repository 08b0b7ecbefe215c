/* Batch invariance (plm_ctx_params.batch_invariant): on the fast kernels, each sequence's logits and
 * log-probabilities are bitwise those of its run alone in one step, whatever else shares its steps,
 * in whatever order, under random budgets with aligned splits (plm_plan_next_aligned), with and
 * without states; and the generator's tokens and log-probabilities are bitwise those of each request
 * alone. Random checkpoints (dense and MoE, odd shapes) from tests/synth.c, with BF16 weights (the
 * direct BF16 GEMM), F32 and F16 weights (the direct F32 GEMM instead of OpenBLAS), and BF16 weights
 * with bf16_single_pass (vdpbf16ps where the CPU has it, else the widened form through the direct
 * kernels); the same again with PLM_ISA=avx2 when the CPU has AVX-512 BF16. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runseq.h"
#include "synth.h"

#define N_MODELS 10

/* the weights and modes of model i */
static const struct {
    plm_dtype dt;
    int single_pass;
    const char *isa; /* PLM_ISA for the context, or NULL */
} MODES[N_MODELS] = {{PLM_DT_BF16, 0, NULL}, {PLM_DT_F32, 0, NULL},  {PLM_DT_F16, 0, NULL}, {PLM_DT_BF16, 1, NULL},
                     {PLM_DT_BF16, 1, "avx2"}, {PLM_DT_BF16, 0, NULL}, {PLM_DT_F32, 0, NULL}, {PLM_DT_F16, 0, NULL},
                     {PLM_DT_BF16, 1, NULL},   {PLM_DT_F32, 1, NULL}};

static int one_model(int idx, tu_rng *r, const char *root) {
    synth_spec s;
    synth_random_spec(&s, r);
    s.dtype = MODES[idx].dt;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/m%d", root, idx);
    mkdir(dir, 0700);
    plm_error err = {0};
    TU_REQUIRE_OK(synth_write(&s, dir, r, &err), &err);
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    TU_REQUIRE_OK(plm_model_open(&m, dir, &err), &err);
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = 2;
    p.batch_invariant = 1;
    p.bf16_single_pass = MODES[idx].single_pass;
    if (MODES[idx].isa) setenv("PLM_ISA", MODES[idx].isa, 1); /* read when the context starts */
    const plm_status cst = plm_ctx_new(&c, m, &p, &err);
    if (MODES[idx].isa) unsetenv("PLM_ISA");
    TU_REQUIRE_OK(cst, &err);
    char mode[96];
    snprintf(mode, sizeof mode, "%s, %s weights%s%s%s", s.c.is_moe ? "MoE" : "dense", plm_dtype_name(s.dtype),
             MODES[idx].single_pass ? ", single pass" : "", MODES[idx].isa ? ", PLM_ISA=" : "",
             MODES[idx].isa ? MODES[idx].isa : "");
    const int V = plm_model_get_info(m)->vocab_size;
    int n = (int)tu_randint(r, 3, 8);
    int64_t lens[8], total = 0, base[8];
    int32_t *seqs[8];
    for (int i = 0; i < n; i++) {
        lens[i] = tu_randint(r, 0, 3) == 0 ? tu_randint(r, 1, 9) : tu_randint(r, 1, 260);
        seqs[i] = malloc(lens[i] * sizeof(int32_t));
        for (int64_t j = 0; j < lens[i]; j++) seqs[i][j] = (int32_t)tu_randint(r, 0, V - 1);
        base[i] = total;
        total += lens[i];
    }
    float *alone = malloc((size_t)total * V * sizeof(float)), *lpa = malloc((size_t)total * sizeof(float));
    float *got = malloc((size_t)total * V * sizeof(float)), *lpg = malloc((size_t)total * sizeof(float));
    for (int i = 0; i < n; i++) /* alone: the whole sequence in one step */
        TU_REQUIRE_OK(tu_run_packed_aligned(c, m, &seqs[i], &lens[i], 1, NULL, 0, 1, alone + base[i] * V, lpa + base[i],
                                            NULL, &err), &err);
    for (int round = 0; round < 4; round++) {
        int order[8];
        for (int i = 0; i < n; i++) order[i] = i;
        for (int i = n - 1; i > 0; i--) { /* a random order */
            int j = (int)tu_randint(r, 0, i), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        const int64_t budget = round == 0 ? 0 : tu_randint(r, PLM_SPLIT_ALIGN, 600);
        TU_REQUIRE_OK(tu_run_packed_aligned(c, m, seqs, lens, n, order, budget, PLM_SPLIT_ALIGN, got, lpg, NULL, &err),
                      &err);
        for (int i = 0; i < n; i++) {
            int same = memcmp(got + base[i] * V, alone + base[i] * V, (size_t)lens[i] * V * sizeof(float)) == 0 &&
                       memcmp(lpg + base[i], lpa + base[i], (size_t)lens[i] * sizeof(float)) == 0;
            if (!same && getenv("INV_DEBUG")) {
                int first = -1, cnt = 0; double mx = 0;
                for (int64_t t = 0; t < lens[i]; t++) {
                    int d = memcmp(got + (base[i] + t) * V, alone + (base[i] + t) * V, (size_t)V * 4) != 0;
                    if (d) { cnt++; if (first < 0) first = (int)t; }
                    for (int v = 0; v < V; v++) { double e = fabs(got[(base[i] + t) * V + v] - alone[(base[i] + t) * V + v]); if (e > mx) mx = e; }
                }
                printf("debug: seq %d len %lld: %d rows differ, first %d, max diff %g; order pos", i, (long long)lens[i], cnt, first, mx);
                for (int k = 0; k < n; k++) if (order[k] == i) printf(" %d", k);
                printf(" spec nh %d nkv %d hd %d rot %d nk %d nv %d dk %d dv %d H %d\n", s.c.n_heads, s.c.n_kv_heads, s.c.head_dim, s.c.rope_dim, s.c.lin_k_heads, s.c.lin_v_heads, s.c.lin_k_dim, s.c.lin_v_dim, s.c.hidden_size);
            }
            tu_check(same, "model %d (%s), round %d (budget %lld, %d sequences): sequence %d (%lld tokens): logits and "
                     "log-probabilities bitwise those of its run alone", idx, mode, round,
                     (long long)budget, n, i, (long long)lens[i]);
        }
    }
    free(alone), free(lpa), free(got), free(lpg);

    /* the generator: every request alone, then all together under a small budget */
    int32_t *tok_alone[8];
    int64_t ntok_alone[8];
    float *lp_alone[8];
    for (int pass = 0; pass < 2; pass++) {
        plm_generator *g = NULL;
        plm_generator_params gp = {pass ? tu_randint(r, PLM_SPLIT_ALIGN, 200) : 0, pass ? 3 : 1};
        TU_REQUIRE_OK(plm_generator_new(&g, m, c, &gp, &err), &err);
        for (int i = 0; i < n; i++) {
            plm_request q = {0};
            q.prompt = seqs[i];
            q.n_prompt = lens[i];
            q.max_new_tokens = 6;
            q.sampling.temperature = 0.9f;
            q.sampling.seed = 7;
            q.ignore_eos = 1;
            q.logprobs = 1;
            int64_t id;
            TU_REQUIRE_OK(plm_generator_add(g, &id, &q, &err), &err);
            if (!pass) { /* alone: run it to the end before the next one is added */
                while (plm_generator_pending(g)) TU_REQUIRE_OK(plm_generator_step(g, NULL, &err), &err);
                const int32_t *t;
                const float *lp;
                plm_generator_result(g, id, &t, &ntok_alone[i]);
                plm_generator_logprobs(g, id, &lp, NULL, NULL);
                tok_alone[i] = malloc((ntok_alone[i] + 1) * sizeof(int32_t));
                lp_alone[i] = malloc((ntok_alone[i] + 1) * sizeof(float));
                memcpy(tok_alone[i], t, ntok_alone[i] * sizeof(int32_t));
                memcpy(lp_alone[i], lp, ntok_alone[i] * sizeof(float));
            }
        }
        while (pass && plm_generator_pending(g)) TU_REQUIRE_OK(plm_generator_step(g, NULL, &err), &err);
        for (int i = 0; pass && i < n; i++) {
            const int32_t *t;
            const float *lp;
            int64_t nt;
            plm_generator_result(g, i, &t, &nt);
            plm_generator_logprobs(g, i, &lp, NULL, NULL);
            tu_check(nt == ntok_alone[i] && !memcmp(t, tok_alone[i], nt * sizeof(int32_t)) &&
                         !memcmp(lp, lp_alone[i], nt * sizeof(float)),
                     "model %d (%s): generator (budget %lld, 3 live): request %d's tokens and log-probabilities "
                     "bitwise those of it alone", idx, mode, (long long)gp.max_batch_tokens, i);
        }
        plm_generator_free(g);
    }
    for (int i = 0; i < n; i++) free(seqs[i]), free(tok_alone[i]), free(lp_alone[i]);
    plm_ctx_free(c);
    plm_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    char root[] = "/tmp/packlm-inv-XXXXXX";
    if (!mkdtemp(root)) return 1;
    tu_rng r = {argc > 1 ? strtoull(argv[1], NULL, 0) : 20261129};
    printf("seed %llu, models in %s\n", (unsigned long long)r.s, root);
    for (int i = 0; i < N_MODELS; i++) one_model(i, &r, root);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) printf("note: could not remove %s\n", root);
    return tu_finish("test_invariant");
}
