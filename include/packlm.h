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
 * of a long prompt and a single decode token are all just segments. A segment that is a whole
 * sequence, whose final state nobody needs (scoring, a forward pass), takes no state at all
 * (state[s] = NULL): memory then grows with the threads, not with the sequences of a step.
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
    int64_t n_linear_proj_params; /* of the linear-attention layers' in_proj_qkv, in_proj_z and out_proj
                                     (what int8 weights keep as stored unless int8_linear) */
} plm_model_info;

/* Opens a Hugging Face Qwen3.5 checkpoint directory (config.json + model.safetensors or a sharded
 * index). Weights are mmapped read-only; every tensor is validated before use. */
plm_status plm_model_open(plm_model **out, const char *dir, plm_error *err);
void plm_model_free(plm_model *m);
const plm_model_info *plm_model_get_info(const plm_model *m);
/* Writes the model with int8 weights (as PLM_WEIGHTS_INT8 computes with them; flags: PLM_INT8_*, as
 * plm_ctx_params' int8_keep_head and int8_linear) to out_dir: model.safetensors holding each int8 matrix as NAME (I8,
 * [rows, cols rounded up to 32]) and NAME_scale (F16, [rows, cols / 32 rounded up]), every other
 * tensor as stored, and the directory's other files (config, tokenizer) copied. The result opens
 * with plm_model_open. */
plm_status plm_model_save_int8(plm_model *m, const char *out_dir, int flags, int n_threads, plm_error *err);
enum {
    PLM_INT8_KEEP_HEAD = 1, /* lm_head (the embedding table when tied) as stored */
    PLM_INT8_LINEAR = 2     /* the linear-attention projections in int8 too */
};

/* ---------------------------------------------------------------- per-sequence state */
/* A sequence's state: conv tails and delta-rule states of the linear layers, keys and values of the
 * attention layers, and the number of tokens it holds. */
typedef struct plm_state plm_state;
typedef struct plm_ctx plm_ctx; /* the running context (below) */

plm_status plm_state_new(plm_state **out, const plm_model *m, plm_error *err); /* on the CPU */
/* A state on the device of context c (the CPU for a CPU context). Every state operation below works
 * on the state's own device (a CUDA state's data never passes through the host); a step only takes
 * states of its context's device, and copy / restore only between states of one device. */
plm_status plm_state_new_on(plm_state **out, const plm_ctx *c, plm_error *err);
void plm_state_free(plm_state *s);
void plm_state_reset(plm_state *s);                 /* back to an empty sequence */
int64_t plm_state_length(const plm_state *s);       /* tokens the state holds */
/* dst becomes an exact copy of src (fork). dst and src must belong to the same model. */
plm_status plm_state_copy(plm_state *dst, const plm_state *src, plm_error *err);
/* Memory of a state, in bytes, counting the float data it holds (not the few pointers around it):
 *   fixed  = n_linear_layers * ((conv_kernel - 1) * conv_dim + lin_v_heads * lin_k_dim * lin_v_dim) * 4
 *            with conv_dim = 2 * lin_k_heads * lin_k_dim + lin_v_heads * lin_v_dim
 *   kv(n)  = n_attention_layers * ceil(n / 64) * 64 * 2 * n_kv_heads * head_dim * 4
 * plm_state_bytes_at(m, n) = fixed + kv(n): what a fresh state holds after n tokens.
 * plm_state_bytes(s) = fixed + the KV blocks allocated now; KV blocks are kept by reset and restore
 * (a reused slot keeps its room), so it equals plm_state_bytes_at(m, the longest length held since
 * plm_state_new). E.g. Qwen3.5-0.8B (18 linear + 6 attention layers, 16 x 128 x 128 delta states,
 * 2 KV heads x 256): fixed = 20,201,472 bytes (19.3 MiB), plus 24,576 bytes (24 KiB) per token. */
size_t plm_state_bytes(const plm_state *s);
size_t plm_state_bytes_at(const plm_model *m, int64_t n_tokens);

/* Snapshots: rolling a sequence back to an earlier length. A snapshot copies the fixed-size part of
 * a state (conv tails and delta-rule states, fixed bytes above) and its length; the KV entries
 * before that length never change while the sequence only grows, so restoring needs no KV copy.
 * Every state has an identity that plm_state_new, reset and copy (for dst) renew: a snapshot only
 * restores into the state it was taken from, while that state still holds its first len tokens:
 * its length is >= the snapshot's, and no restore since the snapshot went below the snapshot's
 * length (the entries past a restore point are rewritten by later steps). Restoring does not use up
 * the snapshot: one snapshot can be restored many times (e.g. speculative decoding, beam search).
 * A device error halfway through a copy or restore leaves the destination reset (empty), never a mix. */
typedef struct plm_snapshot plm_snapshot;

plm_status plm_state_snapshot(plm_snapshot **out, const plm_state *s, plm_error *err);
/* Rolls s back to the snapshot. PLM_ERR_STATE, s untouched, when the snapshot does not apply. */
plm_status plm_state_restore(plm_state *s, const plm_snapshot *snap, plm_error *err);
int64_t plm_snapshot_length(const plm_snapshot *snap);
void plm_snapshot_free(plm_snapshot *snap);

/* ---------------------------------------------------------------- the packed step */
/* Where the data arrays of a step (plm_step.mem) or of its outputs (plm_outputs.mem) live.
 * PLM_MEM_DEVICE: in device memory of the context's GPU (cudaMalloc, a torch CUDA tensor, ...), read
 * and written there: no array passes through the host. Only a CUDA context takes it: a CPU context
 * refuses it (PLM_ERR_INPUT), and so does a CUDA context for a pointer that is host memory or memory
 * of another GPU (checked with cudaPointerGetAttributes; the sizes cannot be checked: as with host
 * memory, each array must hold what the shapes say). The layout stays on the host either way: cu,
 * state, rows and amax_rows are host arrays, because the host plans the step from them (KV tables,
 * chunk tables, output blocks).
 * Stream semantics: the library works on its context's own CUDA stream. Device inputs must be
 * complete when the call starts (synchronise the stream that wrote them: the library does not wait
 * for other streams); device outputs are complete when the call returns (plm_step_run synchronises
 * its stream before returning), so any stream may read them.
 * What crosses to the host in a step with device arrays: nothing of size T x vocab or T x hidden;
 * the validation reads back 8 int32 (the first bad token id, position and target with their
 * indices, and the number of targets >= 0); with device positions, cu and the segments' start
 * lengths go up for it (12 bytes a segment). */
typedef enum { PLM_MEM_HOST = 0, PLM_MEM_DEVICE = 1 } plm_mem;

typedef struct {
    int32_t n_tokens;
    const int32_t *tokens;  /* [n_tokens] */
    const int32_t *pos;     /* [n_tokens] position of each token in its own sequence; may be NULL
                               (then pos = state length + index within the segment) */
    int32_t n_seg;
    const int32_t *cu;      /* [n_seg + 1] segment s owns tokens cu[s] .. cu[s+1]-1; cu[0] = 0,
                               cu[n_seg] = n_tokens, every segment non-empty */
    plm_state *const *state;/* [n_seg] the state each segment continues and updates; state[s] = NULL:
                               segment s is a new sequence (positions from 0) whose final state is
                               not wanted. Such a segment costs no per-sequence memory: the kernels
                               start from zeros and keep nothing (its conv and delta-rule states live
                               in per-thread scratch, its attention reads the step's own keys and
                               values). A sequence split over several steps, or one that goes on
                               decoding, needs a state (plm_state_new) from its first piece on. */
    int32_t mem;            /* PLM_MEM_HOST (0) or PLM_MEM_DEVICE: where tokens and pos are (above);
                               with PLM_MEM_DEVICE the token ids and positions are validated on the
                               device, with the host path's messages */
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
    /* greedy decoding: argmax[i] = the token with the highest logit of token amax_rows[i] of the
       step (the first one on ties; NaN logits never win), for i < n_amax. Computed where the step
       runs: on a GPU no logits leave the device. */
    const int32_t *amax_rows;
    int32_t n_amax;
    int32_t *argmax;
    /* PLM_MEM_HOST (0) or PLM_MEM_DEVICE: where logits, target, logprob, hidden and argmax are
       (rows and amax_rows stay on the host). With PLM_MEM_DEVICE the results are bitwise those of
       the host path on the same context; logits_cb is refused (PLM_ERR_UNSUPPORTED: its blocks are
       host memory), pass logits instead. */
    int32_t mem;
} plm_outputs;

/* Running context (plm_ctx): device, thread count and scratch memory, reused across steps. Not
 * thread-safe: one context per calling thread. */

typedef struct {
    int32_t n_threads;      /* 0: all cores */
    int32_t use_reference;  /* 1: plain scalar reference kernels (slow; for testing; CPU only) */
    /* where the context runs: NULL or "cpu", "cuda" (= "cuda:0") or "cuda:N". A CUDA context
       uploads the weights once (BF16 stays BF16, F16 is widened to F32) and runs every step on
       that GPU; its states must be created on it (plm_state_new_on). A build without CUDA refuses
       "cuda" with PLM_ERR_UNSUPPORTED. */
    const char *device;
    /* CUDA: device bytes this context may allocate for weights and step scratch (0: no limit other
       than the card's). A step that would need more is refused before it starts. */
    size_t device_mem_limit;
    /* BF16 weights: 0 (default) keeps each GEMM's input in F32 (CUDA: split into two BF16 parts, two
       tensor-core passes: the CPU's arithmetic, results within ~1e-5 of it); 1 rounds the input to
       BF16 once, as transformers runs a BF16 model, and sums the BF16 products in F32 (CUDA: one
       pass, about twice the GEMM speed; CPU: vdpbf16ps where the CPU has AVX-512 BF16, two products
       per F32 lane, else the rounded input widened back to F32; PLM_ISA=avx2 or scalar in the
       environment forces the widened form or the scalar reference). Weights of other dtypes are
       not affected. Combines with batch_invariant (the vdpbf16ps kernel is batch-invariant as it
       stands). */
    int32_t bf16_single_pass;
    /* CPU: 1 makes a sequence's results (logits, log-probabilities, hidden states, hence sampled
       tokens) bitwise identical whatever else shares its steps and however many rows a step has,
       given the same split of its own tokens into steps (see plm_plan_next_aligned for splits that
       keep it across budgets and batches). Every BF16 GEMM then takes the direct kernel, whose
       per-row reduction order does not depend on the row count or the row's place, and every
       delta-rule segment the chunked form (chunks of PLM_SPLIT_ALIGN tokens from the segment's
       start). Covers BF16, F32 and F16 checkpoints: F32 and F16 weights then take a direct F32
       kernel of the same kind instead of OpenBLAS sgemm (whose reduction order depends on the
       matrix sizes). Its cost is measured in docs/performance.md. 0 (default): the fastest kernel
       for each shape. */
    int32_t batch_invariant;
    /* CPU: PLM_WEIGHTS_STORED (0) computes with the checkpoint's dtypes; PLM_WEIGHTS_INT8 with int8
       weights (blocks of 32 along the reduction, one fp16 scale each; activations quantized on the
       fly): the attention projections, MLP and expert matrices and lm_head are quantized when the
       first such context of a model starts, and shared by later ones (the linear-attention
       projections unless int8_linear; norms, conv weights, A_log, dt_bias, in_proj_a/b, router,
       shared_expert_gate and embeddings stay as stored). A
       checkpoint written by plm_model_save_int8 computes in int8 either way. CUDA contexts refuse
       int8 weights (PLM_ERR_UNSUPPORTED). */
    int32_t weights;
    /* with PLM_WEIGHTS_INT8: 1 keeps lm_head in its stored dtype */
    int32_t int8_keep_head;
    /* with PLM_WEIGHTS_INT8: the linear-attention projections (in_proj_qkv, in_proj_z, out_proj) stay
       in their stored dtype (0, the default: they carry most of int8's error, README "int8 weights")
       or are quantized too (1: a fifth fewer bytes, faster, about 4x the KL) */
    int32_t int8_linear;
    /* int8 matrices (PLM_WEIGHTS_INT8 or an int8 checkpoint): the activations are quantized per group
       of 4 values in one int8 level (8) or two (16: the first level's rounding error quantized again,
       about 15 bits, twice the integer work); 0: PLM_INT8_ACT_BITS_DEFAULT */
    int32_t int8_act_bits;
} plm_ctx_params;

enum { PLM_WEIGHTS_STORED = 0, PLM_WEIGHTS_INT8 = 1 };
#define PLM_INT8_ACT_BITS_DEFAULT 8

plm_ctx_params plm_ctx_default_params(void);
/* Sets weights, int8_keep_head, int8_linear and int8_act_bits of p from a specification: "stored",
 * or "int8" followed by any of ",keep-head", ",linear" (int8_linear = 1; ",keep-linear" is the
 * default, 0), ",act8", ",act16" ("int8-keep-head" is "int8,keep-head"). PLM_ERR_INPUT naming the
 * part not understood; p is unchanged then. */
plm_status plm_ctx_params_weights(plm_ctx_params *p, const char *spec, plm_error *err);
/* Errors of a CUDA context name the device and, for memory, the bytes asked for: no GPU visible,
 * a driver older than the runtime (PLM_ERR_UNSUPPORTED), device memory exhausted (PLM_ERR_NOMEM). */
plm_status plm_ctx_new(plm_ctx **out, const plm_model *m, const plm_ctx_params *p, plm_error *err);
void plm_ctx_free(plm_ctx *c);
/* "cpu" or "cuda:N". */
const char *plm_ctx_device(const plm_ctx *c);
/* Bytes of device memory the context holds now (weights + scratch; 0 on the CPU). */
size_t plm_ctx_device_bytes(const plm_ctx *c);

/* Runs one packed step. Validates the step (token ids, segments, positions against the states)
 * before touching any state: on error no state has changed. */
plm_status plm_step_run(plm_ctx *c, const plm_step *step, const plm_outputs *out, plm_error *err);

/* ---------------------------------------------------------------- segments */
/* Splits a packed row into segments from its position ids: a segment starts at token 0 and wherever
 * pos[t] != pos[t-1] + 1. cu must hold n + 1 entries; *n_seg receives the count. Negative positions
 * are an error. */
plm_status plm_segments_from_positions(int32_t *cu, int32_t *n_seg, const int32_t *pos, int32_t n,
                                       plm_error *err);
/* The same for position ids in device memory of context c's GPU (PLM_MEM_DEVICE; a CPU context
 * refuses it with PLM_ERR_INPUT): the boundaries are found on the device and only they come back,
 * cu (host, n + 1 entries) receiving the *n_seg + 1 offsets: 4 bytes a segment, never the [n]
 * positions. The same messages as plm_segments_from_positions. Synchronous (stream semantics as for
 * plm_step_run: pos must be complete when the call starts). */
plm_status plm_segments_from_positions_on(plm_ctx *c, int32_t *cu, int32_t *n_seg, const int32_t *pos, int32_t n,
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

/* Splits that keep batch invariance (plm_ctx_params.batch_invariant): as plm_plan_next, but a
 * sequence is only cut at a multiple of align tokens from its start (align > 0; PLM_SPLIT_ALIGN, the
 * delta rule's chunk, for invariance); when the room left holds less than align tokens and the rest
 * of the sequence does not fit, the step ends there. Then every piece starts at a multiple of align
 * and the delta rule's chunks (and attention's query blocks) fall at the same positions of the
 * sequence whatever the budget and the other sequences: its results are bitwise those of its run
 * alone (budget >= align; a smaller budget cuts at the budget). */
#define PLM_SPLIT_ALIGN 64
int32_t plm_plan_next_aligned(plm_piece *pieces, int32_t max_pieces, const int64_t *len, int32_t n_seqs,
                              int32_t *seq, int64_t *offset, int64_t budget, int64_t align);

/* ---------------------------------------------------------------- sampling */
/* How the next token is chosen from a row of logits. temperature <= 0 is greedy (the argmax; ties go
 * to the lowest id). Otherwise the logits are divided by temperature, cut to the top_k highest
 * (top_k <= 0: no cut) and then to the smallest set of highest-probability tokens whose mass reaches
 * top_p (top_p >= 1 or <= 0: no cut), renormalised, and one token is drawn. Candidates are ordered
 * by logit then id, so the result depends only on the logits and the random number. */
typedef struct {
    float temperature;
    int32_t top_k;
    float top_p;
    uint64_t seed;
} plm_sampling;

plm_sampling plm_sampling_greedy(void);

/* A per-sequence random stream: splitmix64 seeded from (seed, stream). One draw per token. */
typedef struct { uint64_t s; } plm_rng;
plm_rng plm_rng_init(uint64_t seed, uint64_t stream);
double plm_rng_uniform(plm_rng *r); /* [0, 1), 53 bits */

/* The token chosen from logits [vocab] with the uniform number u in [0, 1) (unused when greedy).
 * work must hold 2 * vocab floats (scratch). */
int32_t plm_sample_token(const float *logits, int32_t vocab, const plm_sampling *sp, double u, float *work);

/* ---------------------------------------------------------------- generation */
/* Continuous batching over packed steps. Requests (prompt + limits + sampling) are queued; every
 * plm_generator_step runs ONE packed step holding the next token of every decoding sequence and
 * then prompt chunks of sequences still reading their prompt (in admission order), under a token
 * budget per step and a cap on live sequences (each live sequence holds one state slot; finished
 * sequences hand their slot to the next waiting request, reset, with its KV room kept).
 * Every sequence's tokens are exactly those it would get generated alone (any budget, any cap): the
 * packed step computes each segment from its own state only, and sampling uses the sequence's own
 * random stream, drawn once per token. */
typedef struct plm_generator plm_generator;

typedef struct {
    int64_t max_batch_tokens; /* tokens per step; <= 0: no limit */
    int32_t max_seqs;         /* live sequences (state slots); <= 0: no limit */
} plm_generator_params;

typedef struct {
    const int32_t *prompt;    /* [n_prompt] token ids (copied by plm_generator_add) */
    int64_t n_prompt;         /* >= 1 */
    int32_t max_new_tokens;   /* >= 0 */
    plm_sampling sampling;
    int64_t stream;           /* random stream of the sequence; < 0: its request id */
    int32_t ignore_eos;       /* 1: do not stop at the model's end-of-sequence ids */
    int32_t logprobs;         /* 1: keep the log-probability of each produced token (natural log, of the
                                 model's distribution: before temperature, top-k and top-p); see
                                 plm_generator_logprobs. Its rows' logits then come back from the step */
    int32_t top_logprobs;     /* with logprobs: also keep the ids and log-probabilities of the
                                 top_logprobs (at most 20) most likely tokens of each row */
} plm_request;

typedef enum {
    PLM_GEN_WAITING = 0,  /* queued, no slot yet */
    PLM_GEN_PROMPT,       /* holds a slot, reading its prompt */
    PLM_GEN_DECODING,     /* producing tokens */
    PLM_GEN_DONE_EOS,     /* finished: produced an end-of-sequence id (included in the tokens) */
    PLM_GEN_DONE_LENGTH,  /* finished: max_new_tokens reached */
    PLM_GEN_CANCELLED     /* finished: plm_generator_cancel */
} plm_gen_state;

/* What one step did. */
typedef struct {
    int32_t n_tokens;         /* tokens in the step */
    int32_t prompt_tokens;    /* of which prompt tokens */
    int32_t decode_tokens;    /* of which generated tokens fed back */
    int32_t new_tokens;       /* tokens sampled in this step */
    int32_t finished;         /* requests that finished in this step */
} plm_gen_step_info;

/* ctx must belong to m and is used by every step; neither is owned. */
plm_status plm_generator_new(plm_generator **out, const plm_model *m, plm_ctx *ctx,
                             const plm_generator_params *p, plm_error *err);
void plm_generator_free(plm_generator *g);
/* Queues a request; *id receives its id (0, 1, 2, ... in order of adding). An invalid request (empty
 * prompt, id outside the vocabulary, negative limit) is refused with PLM_ERR_INPUT and nothing is
 * queued: the other requests are unaffected. */
plm_status plm_generator_add(plm_generator *g, int64_t *id, const plm_request *r, plm_error *err);
/* Runs one packed step (does nothing when no request is left). On error no sequence has advanced
 * and the step may be retried. info may be NULL. */
plm_status plm_generator_step(plm_generator *g, plm_gen_step_info *info, plm_error *err);
/* Requests not finished yet. */
int64_t plm_generator_pending(const plm_generator *g);
/* The tokens a request has produced so far (valid until the next step or free) and its state. */
plm_gen_state plm_generator_result(const plm_generator *g, int64_t id, const int32_t **tokens, int64_t *n);
/* Stops request id now if it is not finished: it becomes PLM_GEN_CANCELLED, keeps the tokens produced
 * so far, and its state slot is free for the next step (a waiting request never takes one). Other
 * requests are unaffected. Cancelling a finished request does nothing; an unknown id is PLM_ERR_INPUT. */
plm_status plm_generator_cancel(plm_generator *g, int64_t id, plm_error *err);
/* Cancels request id (as above) and frees its prompt, tokens and log-probabilities: a long-running
 * caller (a server) releases each request once it has read its result. The id stays valid (its
 * result is then empty); a few dozen bytes of bookkeeping per request remain until plm_generator_free. */
void plm_generator_release(plm_generator *g, int64_t id);
/* For a request added with logprobs = 1: lp[i] = log p(token i) for each produced token i, and
 * top_ids / top_lp [n, k] the k most likely tokens of each row (highest first, ties to the lower id)
 * with their log-probabilities; returns k, or -1 (pointers NULL) when the request kept none. Valid
 * until the next step, release or free. */
int32_t plm_generator_logprobs(const plm_generator *g, int64_t id, const float **lp, const int32_t **top_ids,
                               const float **top_lp);
/* Bytes of all state slots the generator holds (plm_state_bytes of each). */
size_t plm_generator_state_bytes(const plm_generator *g);
/* State slots created so far (never more than max_seqs). */
int32_t plm_generator_slots(const plm_generator *g);

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
