/* Property tests on random configurations and random weights made in C: a packed run equals each
 * sequence run alone, under any packing and token budget, for segment lengths 1, 63, 64, 65 and
 * longer; and the fast kernels equal the reference kernels end to end. After the random ones, fixed
 * unusual shapes (synth_unusual_spec): odd head and rotary dims, one k head for many v heads,
 * d_k != d_v, a single layer of each kind, a vocabulary that is not a multiple of 8. Tolerance: 1e-4 * max|alone|. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runseq.h"
#include "synth.h"

#define REL 1e-4
#define N_MODELS 24

static void describe(const synth_spec *s, char *buf, size_t n) {
    const plm_config *c = &s->c;
    char lt[64] = "";
    for (int i = 0; i < c->n_layers && i < 60; i++) lt[i] = c->layer_type[i] == PLM_LAYER_LINEAR ? 'L' : 'A';
    snprintf(buf, n, "%s %s %s V%d H%d [%s] nk%d nv%d dk%d dv%d K%d | nh%d nkv%d hd%d rot%d%s | %s E%d k%d%s%s",
             plm_dtype_name(s->dtype), s->nested ? "nested" : "flat", c->tie_embeddings ? "tied" : "untied",
             c->vocab_size, c->hidden_size, lt, c->lin_k_heads, c->lin_v_heads, c->lin_k_dim, c->lin_v_dim, c->conv_kernel, c->n_heads,
             c->n_kv_heads, c->head_dim, c->rope_dim, s->mrope ? " mrope" : "", c->is_moe ? "moe" : "dense", c->n_experts, c->n_experts_per_tok,
             c->is_moe && c->shared_intermediate_size ? " +shared" : "", c->is_moe && s->fused_experts ? " fused" : "");
}

/* idx < N_MODELS: a random configuration; after that the unusual shapes of synth_unusual_spec */
static int one_model(int idx, tu_rng *r, const char *root) {
    synth_spec s;
    if (idx < N_MODELS) synth_random_spec(&s, r);
    else synth_unusual_spec(&s, idx - N_MODELS, r);
    char dir[512], what[512], desc[256];
    snprintf(dir, sizeof dir, "%s/m%d", root, idx);
    mkdir(dir, 0700);
    describe(&s, desc, sizeof desc);
    plm_error err = {0};
    TU_REQUIRE_OK(synth_write(&s, dir, r, &err), &err);
    plm_model *m = NULL;
    plm_ctx *c = NULL, *cref = NULL;
    TU_REQUIRE_OK(plm_model_open(&m, dir, &err), &err);
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = 2;
    TU_REQUIRE_OK(plm_ctx_new(&c, m, &p, &err), &err);
    p.use_reference = 1;
    TU_REQUIRE_OK(plm_ctx_new(&cref, m, &p, &err), &err);
    const int V = plm_model_get_info(m)->vocab_size;

    /* sequences: the chunk edge cases plus random lengths */
    int64_t lens[8] = {1, 63, 64, 65, 0, 0, 0, 0};
    int n = 4 + tu_randint(r, 1, 4);
    for (int i = 4; i < n; i++) lens[i] = tu_randint(r, 1, i == 4 ? 200 : 40);
    int32_t *seqs[8];
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        seqs[i] = malloc(lens[i] * sizeof(int32_t));
        for (int64_t j = 0; j < lens[i]; j++) seqs[i][j] = tu_randint(r, 0, V - 1);
        total += lens[i];
    }
    float *alone = malloc((size_t)total * V * sizeof(float)), *got = malloc((size_t)total * V * sizeof(float));
    int64_t off = 0;
    tu_poison(alone, (size_t)total * V);
    for (int i = 0; i < n; i++) {
        TU_REQUIRE_OK(tu_run_packed(c, m, &seqs[i], &lens[i], 1, NULL, 0, alone + off * V, NULL, &err), &err);
        off += lens[i];
    }
    TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, NULL, 0, got, NULL, &err), &err);
    snprintf(what, sizeof what, "model %d (%s): one packed step vs alone", idx, desc);
    tu_close(got, alone, (size_t)total * V, REL, what);
    { /* whole sequences without states (NULL), mixed with some that have one: the same logits, bit for bit */
        int32_t *tok = malloc((size_t)total * sizeof *tok), cu[9];
        plm_state *sts[8];
        cu[0] = 0;
        for (int i = 0; i < n; i++) {
            memcpy(tok + cu[i], seqs[i], (size_t)lens[i] * sizeof *tok);
            cu[i + 1] = cu[i] + (int32_t)lens[i];
            sts[i] = NULL;
            if (i % 2) TU_REQUIRE_OK(plm_state_new(&sts[i], m, &err), &err);
        }
        float *nos = malloc((size_t)total * V * sizeof(float));
        plm_step step = {(int32_t)total, tok, NULL, n, cu, sts, PLM_MEM_HOST};
        plm_outputs o = {0};
        o.logits = nos;
        o.n_rows = (int32_t)total;
        TU_REQUIRE_OK(plm_step_run(c, &step, &o, &err), &err);
        tu_check(memcmp(nos, got, (size_t)total * V * sizeof(float)) == 0,
                 "model %d: whole sequences without states (every other one) give the logits of states, bit for bit", idx);
        int lens_ok = 1;
        for (int i = 1; i < n; i += 2) lens_ok &= plm_state_length(sts[i]) == lens[i];
        tu_check(lens_ok, "model %d: the segments with states advanced them", idx);
        for (int i = 0; i < n; i++) plm_state_free(sts[i]), sts[i] = NULL;
        TU_REQUIRE_OK(plm_step_run(cref, &step, &o, &err), &err);
        snprintf(what, sizeof what, "model %d: reference kernels without states vs fast alone", idx);
        tu_close(nos, alone, (size_t)total * V, REL, what);
        free(nos);
        free(tok);
    }
    int64_t bud = tu_randint(r, 1, 80);
    int order[8];
    for (int i = 0; i < n; i++) order[i] = n - 1 - i;
    TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, order, bud, got, NULL, &err), &err);
    snprintf(what, sizeof what, "model %d: reversed order, budget %lld vs alone", idx, (long long)bud);
    tu_close(got, alone, (size_t)total * V, REL, what);
    TU_REQUIRE_OK(tu_run_packed(cref, m, seqs, lens, n, NULL, 97, got, NULL, &err), &err);
    snprintf(what, sizeof what, "model %d: reference kernels, budget 97 vs fast alone", idx);
    tu_close(got, alone, (size_t)total * V, REL, what);
    for (int i = 0; i < n; i++) free(seqs[i]);
    free(alone);
    free(got);
    plm_ctx_free(c);
    plm_ctx_free(cref);
    plm_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    char root[] = "/tmp/packlm-prop-XXXXXX";
    if (!mkdtemp(root)) return 1;
    tu_rng r = {argc > 1 ? strtoull(argv[1], NULL, 0) : 20261127};
    printf("seed %llu, models in %s\n", (unsigned long long)r.s, root);
    for (int i = 0; i < N_MODELS + SYNTH_N_UNUSUAL; i++) one_model(i, &r, root);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) printf("note: could not remove %s\n", root);
    return tu_finish("test_property");
}
