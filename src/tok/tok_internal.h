/* Tokenizer internals shared by tok_load.c, tok_encode.c, tok_decode.c and tok_text.c.
 *
 * Model: byte-level BPE as described by a Hugging Face tokenizer.json. Vocabulary strings are
 * byte-level encoded (GPT-2 bytes_to_unicode); at load time every token is mapped back to the raw
 * bytes it stands for, so encoding works on bytes directly: a pre-token's bytes become byte-token
 * ids, merged pairwise by rank through a hash keyed by (id_a, id_b).
 */
#ifndef PLM_TOK_INTERNAL_H
#define PLM_TOK_INTERNAL_H

#include "packlm.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* ---- hashing */
static inline uint64_t tok_hash_bytes(const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        __builtin_memcpy(&v, p, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    h *= 0x9E3779B97F4A7C15ull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t tok_hash_pair(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

/* A string table: strings stored in one pool, found by content through an open-addressing hash
 * whose slots hold id + 1 (0 = empty). */
typedef struct {
    char *pool;          /* every string, NUL-terminated */
    size_t pool_len, pool_cap;
    uint32_t *off;       /* [n_ids] offset of id's string in pool, UINT32_MAX if id has none */
    uint32_t *len;       /* [n_ids] */
    int32_t *slots;      /* [mask + 1] */
    uint32_t mask;
} tok_strtab;

/* ---- merges: (a, b) -> (rank, merged id) */
typedef struct {
    uint64_t key;   /* a << 32 | b; UINT64_MAX = empty */
    uint32_t rank;
    int32_t id;
} tok_merge;

/* ---- added tokens */
typedef struct {
    char *content;
    size_t len;
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} tok_added;

/* Leftmost-longest literal matcher over a set of added tokens: candidates by first byte,
 * longest first. */
typedef struct {
    int32_t *idx;        /* indices into tok->added, grouped by first byte, longest first */
    uint32_t start[257]; /* idx[start[b] .. start[b+1]) have first byte b */
    int n;
} tok_matcher;

/* ---- normalizers */
typedef enum { TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD } tok_norm_kind;

/* ---- pre-tokenizer steps */
typedef enum {
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS
} tok_split_behavior;

typedef struct {
    bool is_bytelevel;   /* ByteLevel step; otherwise Split */
    bool add_prefix_space; /* ByteLevel */
    tok_split_behavior behavior; /* Split (ByteLevel with use_regex: Isolated on the GPT-2 regex) */
    bool invert;
    pcre2_code *re;      /* NULL for a ByteLevel step without use_regex */
    bool jit;
} tok_pretok_step;

#define TOK_MAX_STEPS 8
#define TOK_MAX_NORMS 8

typedef struct tok_scratch tok_scratch;

struct plm_tokenizer {
    int32_t n_ids;       /* highest id + 1 (model vocabulary and added tokens) */
    tok_strtab str;      /* token strings as written in tokenizer.json (byte-level form) */
    tok_strtab raw;      /* model vocabulary by raw bytes (only tokens that are byte-level strings) */
    /* decoded bytes of each id (what decode emits); dec_off[id] == UINT32_MAX: no such id */
    char *dec_pool;
    uint32_t *dec_off, *dec_len;
    int32_t byte_id[256];    /* id of the token for a single byte, -1 if none */

    tok_merge *merges;
    uint32_t merge_mask;
    size_t n_merges;
    bool ignore_merges;
    int32_t unk_id;      /* -1: none */
    bool fuse_unk;

    tok_added *added;
    int n_added;
    bool *is_added;      /* [n_ids] */
    bool *in_vocab;      /* [n_ids] ids of the model vocabulary */
    tok_matcher match_raw;   /* added tokens with normalized = false, matched on the input text */
    tok_matcher match_norm;  /* normalized = true, matched on the normalized text */

    tok_norm_kind norms[TOK_MAX_NORMS];
    int n_norms;
    const uint8_t *nfc_unsafe; /* bitmap over code points: may change under NFC (or compose
                                  with a neighbour); NULL unless the normalizer is exactly NFC;
                                  shared (tok_nfc_table), not owned */

    tok_pretok_step steps[TOK_MAX_STEPS];
    int n_steps;

    bool split_special_tokens;   /* tokenizer_config: special tokens are not matched */
    bool clean_up_spaces;        /* tokenizer_config: clean_up_tokenization_spaces */
    int32_t bos_id, eos_id, pad_id;

    _Atomic(tok_scratch *) spare; /* one reusable encoder scratch (word cache) */
};

/* tok_load.c */
plm_status tok_load_memory(plm_tokenizer **out, const char *json, size_t json_len,
                           const char *config_json, size_t config_len, plm_error *err);
int32_t tok_strtab_find(const tok_strtab *t, const char *s, size_t n);

/* tok_text.c: UTF-8 and normalization */
/* Returns len when s[0..len) is valid UTF-8 (no surrogates, nothing above U+10FFFF, no overlong
 * forms), else the offset of the first invalid byte. */
size_t tok_utf8_check(const char *s, size_t len);
/* Decodes one code point of valid UTF-8; returns its length. */
int tok_utf8_next(const unsigned char *s, int32_t *cp);
/* The process-wide NFC table (built on first use, never freed). */
plm_status tok_nfc_table(const uint8_t **out, plm_error *err);
/* Applies the normalizers to s (valid UTF-8). *out points either to s (unchanged) or to a
 * malloc'ed buffer stored in *owned (caller frees). */
plm_status tok_normalize(const plm_tokenizer *t, const char *s, size_t n, const char **out,
                         size_t *out_len, char **owned, plm_error *err);

/* tok_encode.c */
void tok_scratch_free(tok_scratch *s);

#endif
