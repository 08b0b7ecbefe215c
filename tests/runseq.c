#include "runseq.h"

#include "testutil.h"

#include <stdlib.h>
#include <string.h>

plm_status tu_run_packed(plm_ctx *c, const plm_model *m, int32_t *const *seqs, const int64_t *lens, int n,
                         const int *order, int64_t budget, float *logits, float *logprob, plm_error *err) {
    return tu_run_packed_states(c, m, seqs, lens, n, order, budget, logits, logprob, NULL, err);
}

plm_status tu_run_packed_states(plm_ctx *c, const plm_model *m, int32_t *const *seqs, const int64_t *lens, int n,
                                const int *order, int64_t budget, float *logits, float *logprob, plm_state **states,
                                plm_error *err) {
    return tu_run_packed_aligned(c, m, seqs, lens, n, order, budget, 1, logits, logprob, states, err);
}

plm_status tu_run_packed_aligned(plm_ctx *c, const plm_model *m, int32_t *const *seqs, const int64_t *lens, int n,
                                 const int *order, int64_t budget, int64_t align, float *logits, float *logprob,
                                 plm_state **states, plm_error *err) {
    const int V = plm_model_get_info(m)->vocab_size;
    int64_t *olen = malloc(n * sizeof *olen), *base = malloc(n * sizeof *base), total = 0;
    plm_state **st = calloc(n, sizeof *st);
    plm_piece *pc = malloc((n + 1) * sizeof *pc);
    for (int i = 0; i < n; i++) {
        base[i] = total;
        total += lens[i];
    }
    for (int i = 0; i < n; i++) olen[i] = lens[order ? order[i] : i];
    int32_t *tok = malloc(total * sizeof *tok), *pos = malloc(total * sizeof *pos), *tgt = malloc(total * sizeof *tgt);
    int32_t *cu = malloc((n + 2) * sizeof *cu), *rows = malloc(total * sizeof *rows);
    plm_state **sst = malloc((n + 1) * sizeof *sst);
    float *lg = logits ? malloc((size_t)total * V * sizeof *lg) : NULL, *lp = malloc(total * sizeof *lp);
    plm_status status = PLM_OK;
    /* every output starts as NaN: a row no step writes fails the comparison */
    if (logits) tu_poison(logits, (size_t)total * V);
    if (logprob) tu_poison(logprob, (size_t)total);
    for (int i = 0; i < n && !status; i++) status = plm_state_new_on(&st[i], c, err);
    int32_t cs = 0;
    int64_t co = 0;
    while (!status) {
        int32_t np = plm_plan_next_aligned(pc, n + 1, olen, n, &cs, &co, budget, align);
        if (!np) break;
        int32_t T = 0;
        cu[0] = 0;
        for (int p = 0; p < np; p++) {
            int s = order ? order[pc[p].seq] : pc[p].seq;
            for (int64_t i = 0; i < pc[p].len; i++) {
                int64_t j = pc[p].offset + i;
                tok[T] = seqs[s][j];
                pos[T] = (int32_t)j;
                tgt[T] = j + 1 < lens[s] ? seqs[s][j + 1] : -1;
                T++;
            }
            cu[p + 1] = T;
            sst[p] = st[s];
        }
        plm_step step = {T, tok, pos, np, cu, sst, PLM_MEM_HOST};
        if (lg) tu_poison(lg, (size_t)T * V);
        tu_poison(lp, (size_t)T);
        plm_outputs out = {0};
        out.logits = lg;
        out.n_rows = T;
        out.target = logprob ? tgt : NULL;
        out.logprob = lp;
        status = plm_step_run(c, &step, &out, err);
        if (status) break;
        int32_t t = 0;
        for (int p = 0; p < np; p++) {
            int s = order ? order[pc[p].seq] : pc[p].seq;
            for (int64_t i = 0; i < pc[p].len; i++, t++) {
                int64_t dst = base[s] + pc[p].offset + i;
                if (logits) memcpy(logits + dst * V, lg + (int64_t)t * V, (size_t)V * sizeof(float));
                if (logprob) logprob[dst] = tgt[t] >= 0 ? lp[t] : 0.0f; /* a sequence's last token: 0 */
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (states) states[i] = status ? NULL : st[i];
        if (!states || status) plm_state_free(st[i]);
    }
    free(olen); free(base); free(st); free(pc); free(tok); free(pos); free(tgt); free(cu); free(rows);
    free(sst); free(lg); free(lp);
    return status;
}
