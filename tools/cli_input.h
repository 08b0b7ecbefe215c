/* Input files of forward / score / generate: one sequence per line as whitespace-separated token
 * ids, or JSONL lines {"input_ids": [...], "position_ids": [...]} / {"text": "..."}. A JSONL line
 * with position_ids is a packed row: a segment starts wherever the position does not continue the
 * previous one; a segment starting at p > 0 continues the sequence just before it, which must then
 * hold exactly p tokens. */
#ifndef PLM_CLI_INPUT_H
#define PLM_CLI_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "packlm.h"

typedef struct {
    int32_t *tok;
    int64_t n;
    int line;          /* 1-based line where the sequence starts */
    int from_text;     /* 1 when it came from a "text" field */
    char *error;       /* tolerant reading: why the line was rejected (tok NULL, n 0); else NULL */
} cli_seq;

typedef struct {
    cli_seq *seq;
    int n, cap;
    int64_t total;     /* tokens of all sequences */
    int n_errors;      /* tolerant reading: rejected lines */
} cli_input;

/* Turns text into ids (the tokenizer); NULL when none is available. Returns PLM_OK or fills err. */
typedef plm_status (*cli_encode_fn)(void *user, const char *text, size_t len, int32_t **ids, size_t *n,
                                    plm_error *err);

/* Reads and validates the whole file (ids in [0, vocab)). On error err names the line. */
plm_status cli_read_input(cli_input *in, const char *path, int32_t vocab, cli_encode_fn enc, void *enc_user,
                          plm_error *err);
/* Tolerant reading (generate): a line that fails becomes one sequence with .error set (message
 * naming the line) and the others are kept; only I/O errors and an empty file fail the whole read. */
plm_status cli_read_input_tolerant(cli_input *in, const char *path, int32_t vocab, cli_encode_fn enc,
                                   void *enc_user, plm_error *err);
/* The same reading from len bytes in memory (name stands for the file in messages); tolerant as
 * cli_read_input_tolerant. The fuzz target of the reader calls this. */
plm_status cli_read_input_buffer(cli_input *in, const char *buf, size_t len, const char *name, int32_t vocab,
                                 cli_encode_fn enc, void *enc_user, int tolerant, plm_error *err);
void cli_input_free(cli_input *in);

#endif
