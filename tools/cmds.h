/* The subcommands of the packlm CLI, and the session (model + context + tokenizer) they share. */
#ifndef PLM_CMDS_H
#define PLM_CMDS_H

#include "cli_input.h"
#include "packlm.h"

int cmd_forward(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_quantize(int argc, char **argv);

typedef struct {
    plm_model *model;
    plm_ctx *ctx;
    const plm_model_info *info;
    cli_encode_fn enc;  /* text -> ids with the model directory's tokenizer.json (opened on first use) */
    void *enc_user;     /* the session itself */
    plm_tokenizer *tok; /* NULL until needed; see cli_session_tokenizer */
    char dir[4096];
    int invariant;      /* the context is batch-invariant: steps are planned with aligned splits */
} cli_session;

/* The model directory's tokenizer, opened on first use. */
plm_status cli_session_tokenizer(cli_session *s, plm_tokenizer **tok, plm_error *err);

/* batch_invariant: plm_ctx_params.batch_invariant (--batch-invariant); bf16_single_pass:
   plm_ctx_params.bf16_single_pass (--bf16-single-pass); weights: a plm_ctx_params_weights
   specification (--weights), NULL for the stored weights */
plm_status cli_session_open(cli_session *s, const char *model_dir, int n_threads, const char *device,
                            int batch_invariant, int bf16_single_pass, const char *weights, plm_error *err);
void cli_session_close(cli_session *s);

#endif
