/* The model fixtures (checkpoints saved by transformers, logits of each sequence run alone):
 * packed runs under many packings must match to 1e-4 * max|ref|, per-layer hidden states too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runseq.h"
#include "testutil.h"

#define REL 1e-4

static void shuffle(int *a, int n, tu_rng *r) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(tu_next(r) % (uint64_t)(i + 1)), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static int run_fixture(const char *name, int n_threads, int reference) {
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    plm_error err = {0};
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    TU_REQUIRE_OK(plm_model_open(&m, dir, &err), &err);
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = n_threads;
    p.use_reference = reference;
    TU_REQUIRE_OK(plm_ctx_new(&c, m, &p, &err), &err);
    const plm_model_info *in = plm_model_get_info(m);
    const int V = in->vocab_size, H = in->hidden_size, NL = in->n_layers;

    int32_t **seqs;
    int64_t *lens;
    snprintf(path, sizeof path, "%s/inputs.txt", dir);
    int n = tu_read_token_lines(path, &seqs, &lens);
    tu_check(n > 0, "%s: read %d sequences", name, n);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += lens[i];
    float *ref = NULL, *hid_ref = NULL;
    int nd;
    int64_t shape[8];
    snprintf(path, sizeof path, "%s/logits.npy", dir);
    TU_REQUIRE_OK(plm_npy_load_f32(&ref, &nd, shape, path, &err), &err);
    tu_check(nd == 2 && shape[0] == total && shape[1] == V, "%s: logits.npy shape [%lld, %lld]", name,
             (long long)shape[0], (long long)shape[1]);
    float *got = malloc((size_t)total * V * sizeof *got);
    char what[160];
    const char *tag = reference ? " (reference kernels)" : "";

    /* 1. everything in one step, input order */
    tu_poison(got, (size_t)total * V);
    TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, NULL, 0, got, NULL, &err), &err);
    snprintf(what, sizeof what, "%s%s: all sequences in one step", name, tag);
    tu_close(got, ref, (size_t)total * V, REL, what);
    {   /* bit-for-bit reproducible run to run */
        float *again = malloc((size_t)total * V * sizeof *again);
        TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, NULL, 0, again, NULL, &err), &err);
        tu_check(!memcmp(got, again, (size_t)total * V * sizeof *got), "%s%s: a second run is bit-for-bit identical",
                 name, tag);
        free(again);
    }

    /* 2. one sequence per step (budget = longest would still pack several; run each alone) */
    tu_poison(got, (size_t)total * V);
    for (int i = 0; i < n; i++) {
        int64_t off = 0;
        for (int j = 0; j < i; j++) off += lens[j];
        TU_REQUIRE_OK(tu_run_packed(c, m, &seqs[i], &lens[i], 1, NULL, 0, got + off * V, NULL, &err), &err);
    }
    snprintf(what, sizeof what, "%s%s: each sequence alone", name, tag);
    tu_close(got, ref, (size_t)total * V, REL, what);

    /* 3. token budgets: 1, small odd, chunk-sized, random */
    tu_rng rng = {0x5eed + (uint64_t)V};
    int64_t budgets[] = {1, 7, 63, 64, 65, 100, 0};
    for (int b = 0; b < 7; b++) {
        int64_t bud = budgets[b] ? budgets[b] : tu_randint(&rng, 2, 300);
        if (reference && bud != 1 && bud != 7 && bud != 65) continue; /* slow kernels: three budgets */
        tu_poison(got, (size_t)total * V);
        TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, NULL, bud, got, NULL, &err), &err);
        snprintf(what, sizeof what, "%s%s: token budget %lld per step", name, tag, (long long)bud);
        tu_close(got, ref, (size_t)total * V, REL, what);
    }

    /* 4. shuffled order, with and without a budget */
    int *order = malloc(n * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int r = 0; r < 3; r++) {
        shuffle(order, n, &rng);
        int64_t bud = r == 0 ? 0 : tu_randint(&rng, 1, 90);
        tu_poison(got, (size_t)total * V);
        TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, order, bud, got, NULL, &err), &err);
        snprintf(what, sizeof what, "%s%s: shuffled order %d, budget %lld", name, tag, r, (long long)bud);
        tu_close(got, ref, (size_t)total * V, REL, what);
    }
    free(order);

    /* 5. scoring: log p(next token) from the blocked head equals log_softmax of the reference, token
     *    by token and summed per sequence (what `packlm score` prints), under several budgets */
    float *lp = malloc(total * sizeof *lp), *lpref = calloc(total, sizeof *lpref);
    double *sum = malloc(n * sizeof *sum), *sumref = calloc(n, sizeof *sumref), *absref = calloc(n, sizeof *absref);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        for (int64_t j = 0; j + 1 < lens[i]; j++) {
            const float *l = ref + (off + j) * V;
            double mx = l[0], s = 0;
            for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
            for (int v = 0; v < V; v++) s += exp(l[v] - mx);
            double x = l[seqs[i][j + 1]] - mx - log(s);
            lpref[off + j] = (float)x;
            sumref[i] += x;
            absref[i] += fabs(x);
        }
        off += lens[i];
    }
    const int64_t sbud[] = {50, 1, 0};
    for (int b = 0; b < 3; b++) {
        TU_REQUIRE_OK(tu_run_packed(c, m, seqs, lens, n, NULL, sbud[b], NULL, lp, &err), &err);
        snprintf(what, sizeof what, "%s%s: next-token log-probabilities (score path, budget %lld)", name, tag,
                 (long long)sbud[b]);
        tu_close(lp, lpref, total, REL, what);
        off = 0;
        double worst = 0;
        for (int i = 0; i < n; i++) {
            sum[i] = 0;
            for (int64_t j = 0; j + 1 < lens[i]; j++) sum[i] += lp[off + j];
            off += lens[i];
            /* each term within REL of the reference's scale: the sum within REL of the summed magnitudes */
            double e = fabs(sum[i] - sumref[i]) / (absref[i] > 0 ? absref[i] : 1.0);
            if (!isfinite(sum[i])) e = INFINITY;
            tu_worst(&worst, e);
        }
        tu_check(worst <= REL, "%s%s: summed log-probability per sequence (budget %lld): worst |diff| / sum|ref| %.2e",
                 name, tag, (long long)sbud[b], worst);
    }
    free(lp);
    free(lpref);
    free(sum);
    free(sumref);
    free(absref);

    /* 6. hidden states of sequence 0, layer by layer */
    snprintf(path, sizeof path, "%s/hidden_seq0.npy", dir);
    TU_REQUIRE_OK(plm_npy_load_f32(&hid_ref, &nd, shape, path, &err), &err);
    if (tu_check(nd == 3 && shape[0] == NL + 1 && shape[1] == lens[0] && shape[2] == H, "%s: hidden_seq0 shape",
                 name)) {
        float *hid = malloc((size_t)(NL + 1) * lens[0] * H * sizeof *hid);
        tu_poison(hid, (size_t)(NL + 1) * lens[0] * H);
        plm_state *st;
        TU_REQUIRE_OK(plm_state_new(&st, m, &err), &err);
        int32_t cu[2] = {0, (int32_t)lens[0]};
        plm_step step = {(int32_t)lens[0], seqs[0], NULL, 1, cu, &st};
        plm_outputs out = {0};
        out.hidden = hid;
        TU_REQUIRE_OK(plm_step_run(c, &step, &out, &err), &err);
        for (int l = 0; l <= NL; l++) {
            snprintf(what, sizeof what, "%s%s: hidden state %d of %d (sequence 0)", name, tag, l, NL);
            tu_close(hid + (size_t)l * lens[0] * H, hid_ref + (size_t)l * lens[0] * H, (size_t)lens[0] * H, REL, what);
        }
        plm_state_free(st);
        free(hid);
    }
    free(got);
    free(ref);
    free(hid_ref);
    tu_free_seqs(seqs, n);
    free(lens);
    plm_ctx_free(c);
    plm_model_free(m);
    return 0;
}

int main(void) {
    const char *names[] = {"tiny-dense", "tiny-moe", "tiny-vl"};
    for (int i = 0; i < 3; i++) {
        run_fixture(names[i], 2, 0);
        run_fixture(names[i], 1, 1);
    }
    return tu_finish("test_fixtures");
}
