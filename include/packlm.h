/* packlm: packed-batch inference for Qwen3.5 hybrid linear-attention models.
 *
 * The one public header. Conventions:
 *   - opaque handles, created by *_open / *_new and released by a NULL-safe *_free;
 *   - every fallible function returns a plm_status and, when err is not NULL, fills it with a
 *     message naming the problem (the library never prints, exits or aborts);
 *   - outputs first, then inputs, then sizes; shapes are written next to pointers.
 *
 * The central structure is the step (plm_step): T tokens laid end to end, split into segments by
 * cu[]; segment s reads and writes the state of one sequence (state[s]). A fresh sequence, a chunk
 * of a long prompt and a single decode token are all just segments.
 */
#ifndef PACKLM_H
#define PACKLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */
typedef enum {
    PLM_OK = 0,
    PLM_ERR_IO,          /* a file could not be opened, read, mapped or written */
    PLM_ERR_FORMAT,      /* a file is malformed (safetensors, JSON, npy, tokenizer) */
    PLM_ERR_CONFIG,      /* config.json lacks a field or holds an unsupported value */
    PLM_ERR_INPUT,       /* bad caller input: token ids, positions, segments */
    PLM_ERR_STATE,       /* a state does not fit the step (wrong length, wrong model) */
    PLM_ERR_NOMEM,       /* allocation failed */
    PLM_ERR_UNSUPPORTED, /* valid but not supported by packlm */
    PLM_ERR_INTERNAL
} plm_status;

typedef struct {
    plm_status code;
    char msg[512];
} plm_error;

const char *plm_status_name(plm_status s);

/* ---------------------------------------------------------------- model */
typedef struct plm_model plm_model;

typedef struct {
    int32_t vocab_size;
    int32_t hidden_size;
    int32_t n_layers;
    int32_t n_linear_layers;    /* Gated DeltaNet layers */
    int32_t n_attention_layers; /* gated full-attention layers */
    int32_t is_moe;
    int32_t n_experts, n_experts_per_tok;
    int32_t eos_ids[8];          /* end-of-sequence ids from config / generation_config */
    int32_t n_eos;
    int64_t n_params;            /* parameters of the text model */
    int64_t n_active_params;     /* per token (MoE: top-k experts only) */
    size_t file_bytes;           /* bytes of the weight files mapped */
} plm_model_info;

/* Opens a Hugging Face Qwen3.5 checkpoint directory (config.json + model.safetensors or a sharded
 * index). Weights are mmapped read-only; every tensor is validated before use. */
plm_status plm_model_open(plm_model **out, const char *dir, plm_error *err);
void plm_model_free(plm_model *m);
const plm_model_info *plm_model_get_info(const plm_model *m);

/* ---------------------------------------------------------------- per-sequence state */
/* A sequence's state: conv tails and delta-rule states of the linear layers, keys and values of the
 * attention layers, and the number of tokens it holds. */
typedef struct plm_state plm_state;

plm_status plm_state_new(plm_state **out, const plm_model *m, plm_error *err);
void plm_state_free(plm_state *s);
void plm_state_reset(plm_state *s);                 /* back to an empty sequence */
int64_t plm_state_length(const plm_state *s);       /* tokens the state holds */
/* dst becomes an exact copy of src (fork). dst and src must belong to the same model. */
plm_status plm_state_copy(plm_state *dst, const plm_state *src, plm_error *err);
/* Bytes of memory the state uses now (allocated KV blocks included). */
size_t plm_state_bytes(const plm_state *s);
/* Bytes a state holding n tokens would use. */
size_t plm_state_bytes_at(const plm_model *m, int64_t n_tokens);

/* ---------------------------------------------------------------- the packed step */
typedef struct {
    int32_t n_tokens;
    const int32_t *tokens;  /* [n_tokens] */
    const int32_t *pos;     /* [n_tokens] position of each token in its own sequence; may be NULL
                               (then pos = state length + index within the segment) */
    int32_t n_seg;
    const int32_t *cu;      /* [n_seg + 1] segment s owns tokens cu[s] .. cu[s+1]-1; cu[0] = 0,
                               cu[n_seg] = n_tokens, every segment non-empty */
    plm_state *const *state;/* [n_seg] the state each segment continues and updates */
} plm_step;

/* What a step should produce. Everything is optional. */
typedef struct {
    /* logits of chosen rows: rows[i] is a token index of the step; logits is [n_rows, vocab].
       rows == NULL with n_rows == n_tokens means every token. */
    float *logits;
    const int32_t *rows;
    int32_t n_rows;
    /* streaming: when logits_cb is set, the logits of the rows are handed over block by block
       (first = index into rows, n rows of [vocab]) instead of being written to logits; the block
       is only valid during the call. Return non-zero to stop (the step still completes). */
    int (*logits_cb)(void *user, int32_t first, int32_t n, const float *block);
    void *cb_user;
    /* scoring: for each token t with target[t] >= 0, logprob[t] = log p(target[t] | prefix up to t),
       computed block by block without holding the logits of the whole step. */
    const int32_t *target;  /* [n_tokens] */
    float *logprob;         /* [n_tokens], untouched where target < 0 */
    /* debugging: [n_layers + 1, n_tokens, hidden]: embeddings, each layer's output, the last one
       after the final norm (the layout of transformers' output_hidden_states). */
    float *hidden;
} plm_outputs;

/* Running context: thread count and scratch memory, reused across steps. Not thread-safe: one
 * context per calling thread. */
typedef struct plm_ctx plm_ctx;

typedef struct {
    int32_t n_threads;      /* 0: all cores */
    int32_t use_reference;  /* 1: plain scalar reference kernels (slow; for testing) */
} plm_ctx_params;

plm_ctx_params plm_ctx_default_params(void);
plm_status plm_ctx_new(plm_ctx **out, const plm_model *m, const plm_ctx_params *p, plm_error *err);
void plm_ctx_free(plm_ctx *c);

/* Runs one packed step. Validates the step (token ids, segments, positions against the states)
 * before touching any state: on error no state has changed. */
plm_status plm_step_run(plm_ctx *c, const plm_step *step, const plm_outputs *out, plm_error *err);

/* ---------------------------------------------------------------- segments */
/* Splits a packed row into segments from its position ids: a segment starts at token 0 and wherever
 * pos[t] != pos[t-1] + 1. cu must hold n + 1 entries; *n_seg receives the count. Negative positions
 * are an error. */
plm_status plm_segments_from_positions(int32_t *cu, int32_t *n_seg, const int32_t *pos, int32_t n,
                                       plm_error *err);

/* Step planning under a token budget: sequences are taken in order, each piece is a contiguous part
 * of one sequence; a sequence that does not fit in the room left is split and its remainder opens
 * the next step. */
typedef struct {
    int32_t seq;     /* index of the sequence */
    int64_t offset;  /* first token of the piece within the sequence */
    int64_t len;     /* tokens in the piece (>= 1) */
} plm_piece;

/* Fills pieces[] (at most max_pieces) for the next step from the cursor (*seq, *offset), advancing
 * it; budget <= 0 means no limit. Empty sequences are skipped. Returns the number of pieces (0 when
 * every sequence is done). */
int32_t plm_plan_next(plm_piece *pieces, int32_t max_pieces, const int64_t *len, int32_t n_seqs, int32_t *seq,
                      int64_t *offset, int64_t budget);

/* ---------------------------------------------------------------- .npy */
/* Writes a float32 array atomically (temporary file + rename). */
plm_status plm_npy_save_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                            plm_error *err);
/* Reads a float32 little-endian C-order array; *data is malloc'ed, shape gets up to 8 dims. */
plm_status plm_npy_load_f32(float **data, int *ndim, int64_t shape[8], const char *path,
                            plm_error *err);

/* Streaming .npy writer for a large float32 [rows, cols] array, row block by row block, written to a
 * temporary file and renamed into place by commit (after a failure nothing is left behind). */
typedef struct plm_npy_writer plm_npy_writer;
plm_npy_writer *plm_npy_writer_open(const char *path, int64_t rows, int64_t cols, plm_error *err);
plm_status plm_npy_writer_write(plm_npy_writer *w, const float *rows_data, int64_t n_rows, plm_error *err);
/* Checks that every row was written, then fsyncs and renames; frees w either way. */
plm_status plm_npy_writer_commit(plm_npy_writer *w, plm_error *err);
void plm_npy_writer_abort(plm_npy_writer *w); /* removes the temporary file; frees w; NULL-safe */

/* Writes a whole file atomically (temporary file + rename). */
plm_status plm_write_file_atomic(const char *path, const void *data, size_t n, plm_error *err);

/* ---- tokenizer (reserved section) ---- */
/* Hugging Face tokenizer.json, byte-level BPE (Qwen). Every rule is read from the file: added
 * tokens (matched first, leftmost-longest), normalizer (NFC/NFD/NFKC/NFKD via utf8proc),
 * pre-tokenizer (Split regexes via PCRE2, ByteLevel), BPE merges by rank, ByteLevel decoder.
 * Types or options packlm does not implement are refused with PLM_ERR_UNSUPPORTED naming them.
 * A tokenizer is immutable once open: encode and decode may be called from several threads. */
typedef struct plm_tokenizer plm_tokenizer;

/* Opens tokenizer.json at path_json; also reads tokenizer_config.json from the same folder when
 * present (added_tokens_decoder, bos/eos/pad tokens, split_special_tokens,
 * clean_up_tokenization_spaces). */
plm_status plm_tokenizer_open(plm_tokenizer **out, const char *path_json, plm_error *err);
void plm_tokenizer_free(plm_tokenizer *t);
/* Encodes len bytes of UTF-8 text (special tokens written in the text become their ids; no
 * BOS/EOS is added). *ids is malloc'ed (never NULL on success; caller frees). Invalid UTF-8 is
 * PLM_ERR_INPUT with the byte offset in the message. */
plm_status plm_tokenizer_encode(const plm_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                size_t *n_ids, plm_error *err);
/* Decodes ids to UTF-8 (special tokens included as their text; byte sequences that are not valid
 * UTF-8 become U+FFFD). *text is malloc'ed and NUL-terminated; len may be NULL. An id outside the
 * vocabulary is PLM_ERR_INPUT. */
plm_status plm_tokenizer_decode(const plm_tokenizer *t, const int32_t *ids, size_t n, char **text,
                                size_t *len, plm_error *err);
/* Highest token id + 1 (model vocabulary and added tokens). */
int32_t plm_tokenizer_vocab_size(const plm_tokenizer *t);
/* Id of a token given as written in tokenizer.json (e.g. "<|im_end|>", "\u0120the"), or -1. */
int32_t plm_tokenizer_token_id(const plm_tokenizer *t, const char *token);
/* The token string of an id as written in tokenizer.json, or NULL. */
const char *plm_tokenizer_token_str(const plm_tokenizer *t, int32_t id);
/* Ids of tokenizer_config.json's bos_token / eos_token / pad_token, -1 when not set. */
int32_t plm_tokenizer_bos_id(const plm_tokenizer *t);
int32_t plm_tokenizer_eos_id(const plm_tokenizer *t);
int32_t plm_tokenizer_pad_id(const plm_tokenizer *t);

#ifdef __cplusplus
}
#endif
#endif /* PACKLM_H */
