/* libFuzzer target for the tokenizer: the tokenizer.json loader and the encoder / decoder.
 *
 * The first input byte picks the mode:
 *   0: the rest is a whole tokenizer.json; when it loads, a few texts are encoded and decoded;
 *   1: the rest is a pre_tokenizer / normalizer / added_tokens fragment spliced into a small valid
 *      byte-level BPE tokenizer.json (reaches the pipeline options quickly); encodes likewise;
 *   2: the rest is text for the Qwen3 fixture tokenizer: encode must succeed exactly when the text
 *      is valid UTF-8, ids must lie in the vocabulary, and without '<' (no added token) decode must
 *      give back NFC(text);
 *   3: the rest is little-endian int32 ids for decode: valid UTF-8 out, or an error for a bad id.
 *
 * Build (tests/fuzz_tokenizer.sh does this):
 *   clang -g -O1 -fsanitize=fuzzer,address -Iinclude -Isrc fuzz/fuzz_tokenizer.c src/tok/(all .c)
 *         src/util/error.c -lpcre2-8 -lutf8proc -lcjson
 * Environment: PLM_FUZZ_TOKENIZER (default tests/data/tokenizer-qwen3/tokenizer.json);
 * PLM_FUZZ_SEED_DIR: write seed inputs there at start-up. */
#include "packlm.h"
#include "tok/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static plm_tokenizer *qwen;

static char *mini_json(const char *fragment, size_t frag_len, size_t *out_len) {
    size_t cap = 16384 + frag_len, n = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    n += (size_t)snprintf(b + n, cap - n, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    int m = 0;
    for (int c = 0; c < 256; c++) {
        int keep = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174);
        n += (size_t)snprintf(b + n, cap - n, "%s\"\\u%04x\": %d", c ? ", " : "", keep ? c : 256 + m++, c);
    }
    n += (size_t)snprintf(b + n, cap - n,
                          ", \"\\u0120t\": 256, \"he\": 257, \"\\u0120the\": 258, \"ab\": 259}, \"merges\": "
                          "[\"\\u0120 t\", \"h e\", \"\\u0120t he\", [\"a\", \"b\"]]}, \"decoder\": {\"type\": "
                          "\"ByteLevel\"}, ");
    memcpy(b + n, fragment, frag_len);
    n += frag_len;
    b[n++] = '}';
    *out_len = n;
    return b;
}

static const char *const TEXTS[] = {"the thex abab", " <x> ab cab\r\n\t  e\xCC\x81 \xE4\xB8\xAD\xE6\x96\x87",
                                    "<|im_start|>user\nhi<|im_end|>", ""};

static void exercise(const plm_tokenizer *t, const uint8_t *extra, size_t n_extra) {
    for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0] + 1; i++) {
        const char *s = i < sizeof TEXTS / sizeof TEXTS[0] ? TEXTS[i] : (const char *)extra;
        size_t n = i < sizeof TEXTS / sizeof TEXTS[0] ? strlen(s) : n_extra;
        int32_t *ids = NULL;
        size_t ni = 0;
        plm_error err;
        if (plm_tokenizer_encode(t, s, n, &ids, &ni, &err) == PLM_OK) {
            for (size_t k = 0; k < ni; k++)
                if (ids[k] < 0 || ids[k] >= plm_tokenizer_vocab_size(t)) __builtin_trap();
            char *back = NULL;
            size_t bl = 0;
            if (plm_tokenizer_decode(t, ids, ni, &back, &bl, &err) == PLM_OK) {
                if (tok_utf8_check(back, bl) != bl) __builtin_trap();
                free(back);
            }
            free(ids);
        }
    }
}

static void write_seed(const char *dir, const char *name, uint8_t mode, const void *data, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputc(mode, f);
    fwrite(data, 1, n, f);
    fclose(f);
}

static void write_seeds(const char *dir) {
    size_t n;
    char *j = mini_json("\"pre_tokenizer\": {\"type\": \"ByteLevel\"}", 38, &n);
    if (j) write_seed(dir, "seed-load-mini", 0, j, n);
    free(j);
    static const char *const frags[] = {
        "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}",
        "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}]}, \"pre_tokenizer\": "
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a|\\\\s+\"}, "
        "\"behavior\": \"MergedWithNext\", \"invert\": true}, {\"type\": \"ByteLevel\", \"use_regex\": false}]}",
        "\"added_tokens\": [{\"id\": 300, \"content\": \"<x>\", \"special\": true, \"normalized\": false, "
        "\"lstrip\": true, \"rstrip\": true}, {\"id\": 301, \"content\": \"ab\", \"normalized\": true, "
        "\"single_word\": true}], \"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
        "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Contiguous\"}, "
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}",
    };
    for (size_t i = 0; i < sizeof frags / sizeof frags[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "seed-fragment-%zu", i);
        write_seed(dir, name, 1, frags[i], strlen(frags[i]));
    }
    for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "seed-text-%zu", i);
        write_seed(dir, name, 2, TEXTS[i], strlen(TEXTS[i]));
    }
    int32_t ids[6] = {151644, 872, 198, 6023, 151645, 100};
    write_seed(dir, "seed-ids", 3, ids, sizeof ids);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *path = getenv("PLM_FUZZ_TOKENIZER");
    if (!path) path = "tests/data/tokenizer-qwen3/tokenizer.json";
    plm_error err;
    if (plm_tokenizer_open(&qwen, path, &err)) {
        fprintf(stderr, "fuzz_tokenizer: cannot open %s: %s\n", path, err.msg);
        exit(1);
    }
    const char *seeds = getenv("PLM_FUZZ_SEED_DIR");
    if (seeds) write_seeds(seeds);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint8_t mode = data[0] & 3;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    plm_error err;
    if (mode == 0 || mode == 1) {
        plm_tokenizer *t = NULL;
        plm_status st;
        if (mode == 0) {
            st = tok_load_memory(&t, (const char *)p, n, NULL, 0, &err);
        } else {
            size_t jl;
            char *j = mini_json((const char *)p, n, &jl);
            if (!j) return 0;
            st = tok_load_memory(&t, j, jl, NULL, 0, &err);
            free(j);
        }
        if ((st == PLM_OK) != (t != NULL)) __builtin_trap();
        if (t) exercise(t, p, n);
        plm_tokenizer_free(t);
        return 0;
    }
    if (mode == 2) {
        int32_t *ids = NULL;
        size_t ni = 0;
        plm_status st = plm_tokenizer_encode(qwen, (const char *)p, n, &ids, &ni, &err);
        bool valid = tok_utf8_check((const char *)p, n) == n;
        if ((st == PLM_OK) != valid) __builtin_trap();
        if (st) return 0;
        for (size_t k = 0; k < ni; k++)
            if (ids[k] < 0 || ids[k] >= plm_tokenizer_vocab_size(qwen)) __builtin_trap();
        char *back = NULL;
        size_t bl = 0;
        if (plm_tokenizer_decode(qwen, ids, ni, &back, &bl, &err)) __builtin_trap();
        if (!memchr(p, '<', n)) {
            utf8proc_uint8_t *nfc = NULL;
            utf8proc_ssize_t nl = utf8proc_map(p, (utf8proc_ssize_t)n, &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (nl < 0 || (size_t)nl != bl || memcmp(nfc, back, bl)) __builtin_trap();
            free(nfc);
        }
        free(back);
        free(ids);
        return 0;
    }
    size_t ni = n / 4;
    int32_t *ids = malloc(ni * sizeof *ids + 1);
    if (!ids) return 0;
    memcpy(ids, p, ni * sizeof *ids);
    int32_t v = plm_tokenizer_vocab_size(qwen);
    bool in_range = true;
    for (size_t k = 0; k < ni; k++) in_range &= ids[k] >= 0 && ids[k] < v;
    char *back = NULL;
    size_t bl = 0;
    plm_status st = plm_tokenizer_decode(qwen, ids, ni, &back, &bl, &err);
    if ((st == PLM_OK) != in_range) __builtin_trap();
    if (!st && (tok_utf8_check(back, bl) != bl || back[bl] != 0)) __builtin_trap();
    free(back);
    free(ids);
    return 0;
}
