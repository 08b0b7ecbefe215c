/* Test driver: feeds whole sequences through packed steps in a given order and token budget and
 * gathers the logits of every token in input order. */
#ifndef PLM_RUNSEQ_H
#define PLM_RUNSEQ_H

#include "packlm.h"

/* order: feeding order (NULL = input order); budget <= 0: everything in one step.
 * logits: [sum lens, vocab] in input order (may be NULL); logprob: [sum lens] log p(next token)
 * for every token, 0 for each sequence's last (may be NULL). Both are filled with NaN first, and so
 * is the step's own output before each step: whatever no step writes stays NaN. */
plm_status tu_run_packed(plm_ctx *c, const plm_model *m, int32_t *const *seqs, const int64_t *lens, int n,
                         const int *order, int64_t budget, float *logits, float *logprob, plm_error *err);
/* The same; states [n] (may be NULL) receives each sequence's final state (the caller frees them). */
plm_status tu_run_packed_states(plm_ctx *c, const plm_model *m, int32_t *const *seqs, const int64_t *lens, int n,
                                const int *order, int64_t budget, float *logits, float *logprob, plm_state **states,
                                plm_error *err);

/* The same with steps planned by plm_plan_next_aligned(align). */
plm_status tu_run_packed_aligned(plm_ctx *c, const plm_model *m, int32_t *const *seqs, const int64_t *lens, int n,
                                 const int *order, int64_t budget, int64_t align, float *logits, float *logprob,
                                 plm_state **states, plm_error *err);

#endif
