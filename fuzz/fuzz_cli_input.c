/* libFuzzer target for the CLI's input reader (tools/cli_input.c): lines of token ids and JSONL
 * lines ({"input_ids": [...], "position_ids": [...]} packed rows, {"text": "..."}).
 *
 * Input: byte 0 bit 0 = tolerant reading (as `generate`), else strict (as `forward` / `score`);
 * the rest is the file. The "tokenizer" maps each byte of a text to its value as id (so an escaped
 * U+0000 must reach it as id 0) and refuses texts holding byte 0xFF. On success every sequence is
 * either an error line or non-empty with every id inside the vocabulary, and the total adds up.
 *
 * PLM_FUZZ_SEED_DIR: write seed inputs there and exit. */
#include "packlm.h"
#include "cli_input.h"

#include "fuzz_common.h"

enum { VOCAB = 300 };

static plm_status enc_bytes(void *user, const char *text, size_t len, int32_t **ids, size_t *n, plm_error *err) {
    if (memchr(text, 0xff, len)) {
        snprintf(err->msg, sizeof err->msg, "byte 0xff in the text");
        err->code = PLM_ERR_INPUT;
        return PLM_ERR_INPUT;
    }
    *ids = malloc((len ? len : 1) * sizeof **ids);
    if (!*ids) return PLM_ERR_NOMEM;
    for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
    *n = len;
    return PLM_OK;
}

static void write_seeds(const char *out) {
    static const char *const files[] = {
        "5 17 3\n1 2 3 4\n",
        "{\"input_ids\": [5, 17, 3]}\n{\"input_ids\": [1, 2, 3, 9, 8], \"position_ids\": [0, 1, 2, 0, 1]}\n"
        "{\"input_ids\": [4, 4], \"position_ids\": [2, 3]}\n",
        "{\"text\": \"Hello\"}\n{\"text\": \"ab\\u0000cd \\ud83d\\ude00 \\n\"}\n7 8 9\n",
        "{\"input_ids\": [1, 2]} {\"input_ids\": [3]} 7 8 garbage\n",
        "1 2 3\n\n{\"input_ids\": [299, 300]}\n{\"input_ids\": [1], \"input_ids\": [2]}\n  4 x 5\n{\"text\": 3}\n",
        "{\"input_ids\": [1, 2, 3], \"position_ids\": [5, 6, 7]}\n{\"input_ids\": [1.5]}\n{\"input_ids\": []}\n",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        for (int tol = 0; tol < 2; tol++) {
            char nm[64];
            snprintf(nm, sizeof nm, "seed-%zu-%s", i, tol ? "tolerant" : "strict");
            fz_seed(out, nm, tol, files[i], strlen(files[i]), NULL, 0);
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *seeds = getenv("PLM_FUZZ_SEED_DIR");
    if (seeds) {
        write_seeds(seeds);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    cli_input in;
    plm_error err;
    err.msg[0] = 0;
    plm_status st = cli_read_input_buffer(&in, (const char *)data + 1, size - 1, "input", VOCAB, enc_bytes, NULL,
                                          data[0] & 1, &err);
    if (st != PLM_OK) {
        if (!err.msg[0] || in.n != 0 || in.seq) __builtin_trap();
        return 0;
    }
    if (in.n < 1) __builtin_trap();
    int64_t total = 0;
    int errors = 0;
    for (int i = 0; i < in.n; i++) {
        const cli_seq *q = &in.seq[i];
        if (q->line < 1 || (i && q->line < in.seq[i - 1].line)) __builtin_trap();
        if (q->error) {
            if (!(data[0] & 1) || q->n != 0) __builtin_trap();
            errors++;
            continue;
        }
        if (q->n < 1 || !q->tok) __builtin_trap();
        for (int64_t k = 0; k < q->n; k++)
            if (q->tok[k] < 0 || q->tok[k] >= VOCAB) __builtin_trap();
        total += q->n;
    }
    if (total != in.total || errors != in.n_errors) __builtin_trap();
    cli_input_free(&in);
    return 0;
}
