/* What the subcommands share: option parsing helpers, opening a model, running all input
 * sequences through budgeted packed steps, progress on stderr. */
#ifndef PLM_CLI_COMMON_H
#define PLM_CLI_COMMON_H

#include <stdint.h>
#include <stdio.h>

#include "cli_input.h"
#include "cmds.h"
#include "packlm.h"

/* Prints "packlm <cmd>: error: <msg>" to stderr; returns 1. */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a positive integer option value; returns 0 on success. */
int cli_parse_int(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out);
double cli_now(void);

/* The options every model command shares. */
typedef struct {
    const char *model, *input, *out;
    int64_t budget, threads;
    const char *device; /* --device: cpu (default), cuda, cuda:N */
    int invariant;      /* --batch-invariant */
    int single_pass;     /* --bf16-single-pass */
    const char *weights; /* --weights: a plm_ctx_params_weights specification; NULL: stored */
} cli_opts;

/* The --help lines of the context options every model command shares (--batch-invariant,
   --bf16-single-pass, --device, --weights), in the commands' two-column layout. */
#define CLI_CTX_OPTS_HELP                                                                                       \
            "  --batch-invariant       bitwise the same results for a sequence whatever else shares its steps\n" \
            "                          (direct GEMMs for every row count, aligned splits; CPU only;\n" \
            "                          slower: docs/performance.md)\n" \
            "  --bf16-single-pass      BF16 weights multiply activations rounded once to BF16, as transformers\n" \
            "                          runs a BF16 model (CPU: vdpbf16ps where the CPU has AVX-512 BF16; faster\n" \
            "                          batched decode; results move by BF16 rounding)\n" \
            "  --device D              cpu (default), cuda or cuda:N (a build with CUDA: make CUDA=1)\n" \
            "  --weights W             stored (default), or int8 (int8 weights, quantized at start; the linear-\n" \
            "                          attention projections as stored) with any of ,linear (those in int8\n" \
            "                          too: faster, less accurate) ,keep-head (lm_head as stored) ,act16\n" \
            "                          (activations in two int8 levels: more accurate, slower prompts)\n"

/* --weights: a plm_ctx_params_weights specification; 0, or -1 with a message */
int cli_parse_weights(const char *cmd, const char *v);

/* If argv[*i] is --batch-invariant, --bf16-single-pass, or --model, --input, --out, --max-batch-tokens, --threads or --device with its value, stores it,
 * advances *i past the value and returns 1; returns 0 for any other argument and -1 (message printed)
 * for a bad value. */
int cli_shared_opt(cli_opts *o, const char *cmd, int argc, char **argv, int *i);
/* Opens the model (cli_session_open) and reads o->input (tolerant: rejected lines are kept as error
 * sequences, see cli_read_input_tolerant). Prints the error and returns 1 on failure. */
int cli_open_job(cli_session *ss, cli_input *in, const cli_opts *o, const char *cmd, int tolerant);

/* Writes text to path atomically, or to stdout when path is NULL; prints the error and returns 1 on
 * failure. */
int cli_write_output(const char *cmd, const char *path, const char *text, size_t len);

/* Progress reporter: silent for short runs, then a line every few seconds on stderr. */
typedef struct {
    const char *what;
    int64_t total, done;
    double t0, last;
    int printed;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *what, int64_t total);
void cli_progress_add(cli_progress *p, int64_t n);
void cli_progress_end(cli_progress *p);

/* Logits of consecutive tokens of the input (in input order), first = global token index. */
typedef int (*cli_rows_fn)(void *user, int64_t first, int32_t n, const float *block);

/* Runs every sequence of in through packed steps of at most budget tokens (<= 0: no limit),
 * in input order (aligned: sequences cut only at multiples of PLM_SPLIT_ALIGN, for batch invariance).
 * on_logits (optional) receives the logits of every token in input order;
 * logprob (optional, [in->total]) receives log p(next token) for every token but each
 * sequence's last. */
plm_status cli_run(plm_ctx *c, const plm_model *m, const cli_input *in, int64_t budget, int aligned,
                   cli_rows_fn on_logits, void *user, float *logprob, cli_progress *prog, plm_error *err);

#endif
