/* The file parsers against bad input, each case asserting the exact outcome: the strict JSON
 * checker (util/json_strict.h) on its own; config.json / generation_config.json integers and
 * end-of-sequence ids; the reproducers of tests/data/repro (an overflowing zero-size tensor, an
 * eos id of 1e20, a BF16 checkpoint whose odd header length misaligns every tensor: it must
 * compute bit for bit as the aligned file); the CLI's input reader (tools/cli_input.c, compiled in
 * here): one JSON value per line, refused with line and column, and "text" decoded with its NULs. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/config.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util/json_strict.h"

#include "../tools/cli_input.c"

static char g_tmp[] = "/tmp/packlm-parsers-XXXXXX";

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *b = malloc((size_t)len + 1);
    if (fread(b, 1, (size_t)len, f) != (size_t)len) len = 0;
    b[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spit(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

/* Expects failure with a message containing every given substring (NULL-terminated list). */
static void expect_fail(plm_status st, const plm_error *err, const char *what, ...) {
    va_list ap;
    va_start(ap, what);
    int ok = st != PLM_OK;
    const char *want, *missing = NULL;
    while ((want = va_arg(ap, const char *)))
        if (ok && !strstr(err->msg, want)) missing = want;
    va_end(ap);
    tu_check(ok && !missing, "%s: refused naming it (%s)%s%s", what, st ? err->msg : "accepted",
             missing ? " -- missing: " : "", missing ? missing : "");
}

/* ---------------------------------------------------------------- strict JSON */
static void test_json_strict(void) {
    static const struct {
        const char *text;
        int ok;
        size_t off;
        const char *why;
    } cases[] = {
        {"{\"a\": [1, -2.5e+3, true, false, null, \"x\\n\\u00e9\\ud83d\\ude00\"]}", 1, 0, NULL},
        {"  {} \r\n\t", 1, 0, NULL},
        {"{} {}", 0, 3, "after the JSON value"},
        {"{\"input_ids\": [1, 2]} {\"input_ids\": [3]} 7 8 garbage", 0, 22, "after the JSON value"},
        {"[1,]", 0, 3, "not the start of a value"},
        {"{\"a\" 1}", 0, 5, "expected ':'"},
        {"{\"a\": 1,}", 0, 8, "expected a string key"},
        {"01", 0, 1, "leading zero"},
        {"1.", 0, 2, "no digit after '.'"},
        {"1e+", 0, 3, "exponent"},
        {"-", 0, 1, "invalid number"},
        {"\"a\tb\"", 0, 2, "control character"},
        {"\"\\x\"", 0, 1, "invalid escape"},
        {"\"\\u12g4\"", 0, 1, "invalid \\u escape"},
        {"\"\\udc00\"", 0, 1, "unpaired surrogate"},
        {"\"\\ud800x\"", 0, 1, "unpaired surrogate"},
        {"\"\xc0\xaf\"", 0, 1, "invalid UTF-8"},
        {"\"\xed\xa0\x80\"", 0, 1, "invalid UTF-8"},
        {"\"\xf4\x90\x80\x80\"", 0, 1, "invalid UTF-8"},
        {"\"abc", 0, 4, "unterminated string"},
        {"[1", 0, 2, "unclosed"},
        {"", 0, 0, "a value is missing"},
        {"tru", 0, 0, "invalid literal"},
        {"\x01{}", 0, 0, "not the start of a value"},
        {"{}\x0b", 0, 2, "after the JSON value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t off = 99;
        const char *why = NULL;
        int ok = plm_json_check(cases[i].text, strlen(cases[i].text), &off, &why, NULL);
        if (cases[i].ok)
            tu_check(ok, "json %zu accepted (%s)", i, why ? why : "");
        else
            tu_check(!ok && off == cases[i].off && why && strstr(why, cases[i].why),
                     "json %zu refused at byte %zu (%s), got %s at %zu", i, cases[i].off, cases[i].why,
                     ok ? "accepted" : why, off);
    }
    char deep[2 * PLM_JSON_MAX_DEPTH + 8];
    memset(deep, '[', PLM_JSON_MAX_DEPTH + 1);
    memset(deep + PLM_JSON_MAX_DEPTH + 1, ']', PLM_JSON_MAX_DEPTH + 1);
    const char *why = NULL;
    tu_check(!plm_json_check(deep, 2 * PLM_JSON_MAX_DEPTH + 2, NULL, &why, NULL) && strstr(why, "too deep"),
             "nesting deeper than %d refused", PLM_JSON_MAX_DEPTH);
    tu_check(plm_json_check(deep + 1, 2 * PLM_JSON_MAX_DEPTH, NULL, &why, NULL), "nesting of %d accepted",
             PLM_JSON_MAX_DEPTH);
    /* a NUL byte ends nothing: it is an error, not the end of the document */
    tu_check(!plm_json_check("{}\0garbage", 10, NULL, &why, NULL), "raw NUL after the value refused");

    size_t nul = 0;
    const char *doc = "{\"te\\u0078t\": \"a\\u0000b\\ud83d\\ude00\\\"\", \"text\": 1}";
    tu_check(plm_json_check(doc, strlen(doc), NULL, NULL, &nul) && nul == 16, "\\u0000 found at byte 16 (%zu)", nul);
    size_t b = 0, e = 0, len = 0;
    int found = plm_json_member(doc, strlen(doc), "text", &b, &e);
    tu_check(found && b == 14 && e == 38,
             "member lookup decodes keys and finds the first 'text' (%zu..%zu)", b, e);
    char *s = plm_json_decode_string(doc + b, e - b, &len);
    tu_check(s && len == 8 && memcmp(s, "a\0b\xf0\x9f\x98\x80\"", 8) == 0, "string decoded with its NUL (%zu bytes)",
             len);
    free(s);
    long line = 0, col = 0;
    plm_json_line_col("{\n  \"a\": 1,\n  x", 14, &line, &col);
    tu_check(line == 3 && col == 3, "line 3, column 3 (%ld, %ld)", line, col);
}

/* ---------------------------------------------------------------- config.json */
static char g_base_cfg[1 << 14];

/* Writes dir/config.json = the tiny-dense config with the text `from` replaced by `to`, and
 * dir/generation_config.json = gen (none when NULL); loads it. */
static plm_status load_cfg(plm_config *c, const char *from, const char *to, const char *gen, plm_error *err) {
    char dir[256], p[300], text[1 << 14];
    snprintf(dir, sizeof dir, "%s/cfg", g_tmp);
    mkdir(dir, 0755);
    const char *at = from ? strstr(g_base_cfg, from) : NULL;
    if (from && !at) {
        tu_check(0, "test bug: '%s' not in the config", from);
        return PLM_ERR_INPUT;
    }
    if (at)
        snprintf(text, sizeof text, "%.*s%s%s", (int)(at - g_base_cfg), g_base_cfg, to, at + strlen(from));
    else
        snprintf(text, sizeof text, "%s", g_base_cfg);
    snprintf(p, sizeof p, "%s/config.json", dir);
    spit(p, text, strlen(text));
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    unlink(p);
    if (gen) spit(p, gen, strlen(gen));
    return plm_config_load(c, dir, err);
}

static void test_config(void) {
    size_t n = 0;
    char *base = slurp("tests/data/tiny-dense/config.json", &n);
    snprintf(g_base_cfg, sizeof g_base_cfg, "%s", base ? base : "");
    free(base);
    plm_config c;
    plm_error err;
    const char *E = "\"eos_token_id\": null";
    tu_check(load_cfg(&c, NULL, NULL, NULL, &err) == PLM_OK && c.n_eos == 0, "the fixture config loads (%s)",
             err.msg);
    /* end-of-sequence ids: token ids inside the vocabulary (512), named when not */
    expect_fail(load_cfg(&c, E, "\"eos_token_id\": 1e20", NULL, &err), &err, "eos 1e20", "config.json",
                "field 'eos_token_id' = 1e+20 is not a token id (vocab_size is 512)", NULL);
    expect_fail(load_cfg(&c, E, "\"eos_token_id\": 2.75", NULL, &err), &err, "eos 2.75",
                "field 'eos_token_id' = 2.75 is not an integer", NULL);
    expect_fail(load_cfg(&c, E, "\"eos_token_id\": 512", NULL, &err), &err, "eos = vocab_size",
                "field 'eos_token_id' = 512 is not a token id", NULL);
    expect_fail(load_cfg(&c, E, "\"eos_token_id\": -1", NULL, &err), &err, "eos -1", "'eos_token_id' = -1", NULL);
    expect_fail(load_cfg(&c, E, "\"eos_token_id\": [3, 1e300]", NULL, &err), &err, "eos list",
                "field 'eos_token_id[1]' = 1.0000000000000001e+300 is not a token id", NULL);
    expect_fail(load_cfg(&c, E, "\"eos_token_id\": [3, \"4\"]", NULL, &err), &err, "eos string",
                "field 'eos_token_id[1]' must be an integer", NULL);
    expect_fail(load_cfg(&c, E, "\"eos_token_id\": {}", NULL, &err), &err, "eos object",
                "field 'eos_token_id' must be a token id or a list", NULL);
    expect_fail(load_cfg(&c, E, "\"eos_token_id\": [1, 2, 3, 4, 5, 6, 7, 8, 9]", NULL, &err), &err, "9 eos ids",
                "more than 8", NULL);
    tu_check(load_cfg(&c, E, "\"eos_token_id\": [7, 511, 7]", "{\"eos_token_id\": [511, 3]}", &err) == PLM_OK &&
                 c.n_eos == 3 && c.eos_ids[0] == 7 && c.eos_ids[1] == 511 && c.eos_ids[2] == 3,
             "eos ids from both files, without repeats (%s)", err.msg);
    static const char *const bad_gen[][2] = {
        {"{\"eos_token_id\": 1e20}", "field 'eos_token_id' = 1e+20 is not a token id"},
        {"{\"eos_token_id\": 2.75}", "field 'eos_token_id' = 2.75 is not an integer"},
        {"{\"eos_token_id\": [1, 600]}", "field 'eos_token_id[1]' = 600 is not a token id"},
        {"{\"eos_token_id\": 1} x", "line 1, column 21: malformed JSON: unexpected characters after the JSON value"},
        {"{\"eos_token_id\": 1}\n{}", "line 2, column 1"},
        {"{\"eos_token_id\": 01}", "line 1, column 19: malformed JSON: invalid number (leading zero)"},
    };
    for (size_t i = 0; i < sizeof bad_gen / sizeof bad_gen[0]; i++)
        expect_fail(load_cfg(&c, NULL, NULL, bad_gen[i][0], &err), &err, bad_gen[i][0], "generation_config.json",
                    bad_gen[i][1], NULL);
    /* every integer field: an integer in range */
    expect_fail(load_cfg(&c, "\"vocab_size\": 512", "\"vocab_size\": 512.5", NULL, &err), &err, "vocab 512.5",
                "field 'vocab_size' = 512.5 is not an integer in [1, 1073741824]", NULL);
    expect_fail(load_cfg(&c, "\"vocab_size\": 512", "\"vocab_size\": 1e20", NULL, &err), &err, "vocab 1e20",
                "field 'vocab_size' = 1e+20 is out of range [1, 1073741824]", NULL);
    /* integers written as JSON integers: Python's json reads 4.0 as a float, which transformers'
       config then carries (range(4.0) fails); the value alone (integral) does not make it one */
    expect_fail(load_cfg(&c, "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 4.0", NULL, &err), &err,
                "num_hidden_layers 4.0",
                "config.json: field 'num_hidden_layers' = 4.0 is not a JSON integer (written with a fraction or an "
                "exponent)", NULL);
    expect_fail(load_cfg(&c, "\"hidden_size\": 64", "\"hidden_size\": 6.4e1", NULL, &err), &err, "hidden_size 6.4e1",
                "config.json: field 'hidden_size' = 6.4e1 is not a JSON integer (written with a fraction or an "
                "exponent)", NULL);
    expect_fail(load_cfg(&c, "\"vocab_size\": 512", "\"vocab_size\": 512E0", NULL, &err), &err, "vocab_size 512E0",
                "config.json: field 'vocab_size' = 512E0 is not a JSON integer (written with a fraction or an "
                "exponent)", NULL);
    expect_fail(load_cfg(&c, E, "\"eos_token_id\": [1, 2.0]", NULL, &err), &err, "eos [1, 2.0]",
                "config.json: field 'eos_token_id[1]' = 2.0 is not a JSON integer (written with a fraction or an "
                "exponent)", NULL);
    expect_fail(load_cfg(&c, NULL, NULL, "{\"eos_token_id\": 1e1}", &err), &err, "generation eos 1e1",
                "generation_config.json: field 'eos_token_id' = 1e1 is not a JSON integer (written with a fraction "
                "or an exponent)", NULL);
    /* floats stay floats, integers elsewhere in the document do not confuse the walk */
    tu_check(load_cfg(&c, "\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e-06, \"x\": [1.5, {\"a]\\\"\": 2.0}]", NULL,
                      &err) == PLM_OK && c.n_layers == 4,
             "floats, nested values and strings with brackets around integer fields load (%s)", err.msg);
    expect_fail(load_cfg(&c, "\"vocab_size\": 512", "\"vocab_size\": \"512\"", NULL, &err), &err, "vocab string",
                "field 'vocab_size' must be an integer", NULL);
    expect_fail(load_cfg(&c, "\"head_dim\": 32", "\"head_dim\": -32", NULL, &err), &err, "head_dim -32",
                "field 'head_dim' = -32 is out of range", NULL);
    expect_fail(load_cfg(&c, "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0", NULL, &err), &err,
                "tie 0", "field 'tie_word_embeddings' must be true or false", NULL);
    expect_fail(load_cfg(&c, "\"attention_bias\": false", "\"attention_bias\": \"no\"", NULL, &err), &err,
                "attention_bias string", "field 'attention_bias' must be true or false", NULL);
    /* found by fuzz_config: a positive double that float32 rounds to 0 */
    expect_fail(load_cfg(&c, "\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e-86", NULL, &err), &err,
                "rms_norm_eps 1e-86", "rms_norm_eps = 1e-86 must be a positive float32", NULL);
    expect_fail(load_cfg(&c, "\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e300", NULL, &err), &err,
                "rms_norm_eps 1e300", "rms_norm_eps = 1e+300 must be a positive float32", NULL);
    /* one JSON document: nothing but whitespace after it, no NUL, no lenient forms */
    expect_fail(load_cfg(&c, "\"vocab_size\": 512\n}", "\"vocab_size\": 512\n} {\"vocab_size\": 9}", NULL, &err),
                &err, "a second object after config.json", "config.json: line", "column 3",
                "unexpected characters after the JSON value", NULL);
    expect_fail(load_cfg(&c, "\"qwen3_5_text\"", "\"qwen3_5_text\\u0000x\"", NULL, &err), &err,
                "model_type with \\u0000", "a string holds \\u0000", NULL);
    expect_fail(load_cfg(&c, "\"vocab_size\": 512", "\"vocab_size\": 0512", NULL, &err), &err, "vocab 0512",
                "leading zero", NULL);
}

/* Loads the fixture config with two replacements (from1 -> to1 first, then load_cfg's). */
static plm_status load_cfg2(plm_config *c, const char *from1, const char *to1, const char *from, const char *to,
                            plm_error *err) {
    char saved[sizeof g_base_cfg];
    memcpy(saved, g_base_cfg, sizeof saved);
    const char *at = strstr(saved, from1);
    if (!at) {
        tu_check(0, "test bug: '%s' not in the config", from1);
        return PLM_ERR_INPUT;
    }
    snprintf(g_base_cfg, sizeof g_base_cfg, "%.*s%s%s", (int)(at - saved), saved, to1, at + strlen(from1));
    plm_status st = load_cfg(c, from, to, NULL, err);
    memcpy(g_base_cfg, saved, sizeof saved);
    return st;
}

/* Rotary dimensions as transformers derives them, the M-RoPE keys of real Qwen3.5 checkpoints, and
 * every rope type, activation or layer type packlm does not compute refused with its name. */
static void test_config_model_kinds(void) {
    plm_config c;
    plm_error err;
    const char *T = "\"rope_type\": \"default\"", *F = "\"partial_rotary_factor\": 0.25,\n    \"rope_theta\"";
    plm_status st = load_cfg(&c, F, "\"partial_rotary_factor\": 0.15625,\n    \"rope_theta\"", NULL, &err);
    tu_check(st == PLM_OK && c.rope_dim == 5, "head_dim 32 x 0.15625: odd rotary dim 5 kept, not rounded (%d, %s)",
             c.rope_dim, st ? err.msg : "");
    st = load_cfg(&c, F, "\"partial_rotary_factor\": 0.3,\n    \"rope_theta\"", NULL, &err);
    tu_check(st == PLM_OK && c.rope_dim == 9, "head_dim 32 x 0.3 = 9.6: int() gives 9 (%d, %s)", c.rope_dim,
             st ? err.msg : "");
    st = load_cfg2(&c, "\"head_dim\": 32", "\"head_dim\": 33", F, "\"partial_rotary_factor\": 0.5,\n    \"rope_theta\"",
                   &err);
    tu_check(st == PLM_OK && c.rope_dim == 16 && c.head_dim == 33, "odd head_dim 33 x 0.5: dim 16 (%d, %s)",
             c.rope_dim, st ? err.msg : "");
    expect_fail(load_cfg2(&c, "\"head_dim\": 32", "\"head_dim\": 33", F,
                          "\"partial_rotary_factor\": 1.0,\n    \"rope_theta\"", &err),
                &err, "odd head_dim fully rotary", "partial_rotary_factor 1 gives an odd rotary dimension 33 = head_dim",
                "34 rotated channels exceed head_dim", NULL);
    /* M-RoPE keys as real checkpoints write them: text positions make it the plain rotary */
    st = load_cfg(&c, T, "\"rope_type\": \"default\", \"mrope_section\": [11, 11, 10], \"mrope_interleaved\": true",
                  NULL, &err);
    tu_check(st == PLM_OK && c.rope_dim == 8, "mrope_section + mrope_interleaved accepted (%s)", st ? err.msg : "");
    st = load_cfg(&c, T, "\"rope_type\": \"mrope\", \"mrope_section\": [2, 1, 1]", NULL, &err);
    tu_check(st == PLM_OK && c.rope_dim == 8, "rope_type 'mrope' (transformers maps it to 'default') accepted (%s)",
             st ? err.msg : "");
    expect_fail(load_cfg(&c, T, "\"rope_type\": \"default\", \"mrope_section\": [11, 11]", NULL, &err), &err,
                "mrope_section of two", "field 'rope_parameters.mrope_section' must be a list of three integers", NULL);
    expect_fail(load_cfg(&c, T, "\"rope_type\": \"default\", \"mrope_section\": [11, 11, 1.5]", NULL, &err), &err,
                "mrope_section 1.5", "'rope_parameters.mrope_section'", NULL);
    expect_fail(load_cfg(&c, T, "\"rope_type\": \"default\", \"mrope_interleaved\": 1", NULL, &err), &err,
                "mrope_interleaved 1", "field 'rope_parameters.mrope_interleaved' must be true or false", NULL);
    /* rope types that change the frequencies */
    static const char *const types[] = {"yarn", "linear", "dynamic", "llama3", "longrope", "axial"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char to[96], want[128];
        snprintf(to, sizeof to, "\"rope_type\": \"%s\", \"factor\": 4.0", types[i]);
        snprintf(want, sizeof want, "field 'rope_parameters.rope_type' = '%s' is not supported", types[i]);
        st = load_cfg(&c, T, to, NULL, &err);
        expect_fail(st, &err, to, want, NULL);
        tu_check(st == PLM_ERR_UNSUPPORTED, "rope_type '%s': PLM_ERR_UNSUPPORTED (%d)", types[i], (int)st);
    }
    expect_fail(load_cfg(&c, T, "\"rope_type\": 7", NULL, &err), &err, "rope_type 7",
                "field 'rope_parameters.rope_type' must be a string", NULL);
    const char *RP = "\"rope_parameters\": {\n    \"partial_rotary_factor\": 0.25,\n    \"rope_theta\": 10000.0,\n"
                     "    \"rope_type\": \"default\"\n  }";
    expect_fail(load_cfg(&c, RP, "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0, \"rope_theta\": 1e4}", NULL,
                         &err),
                &err, "legacy rope_scaling.type linear", "field 'rope_scaling.type' = 'linear' is not supported", NULL);
    st = load_cfg(&c, RP, "\"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [1, 1, 2], \"rope_theta\": 1e4}", NULL,
                  &err);
    tu_check(st == PLM_OK && c.rope_dim == 8 && c.rope_theta == 1e4,
             "legacy rope_scaling {type: mrope} with the top-level partial_rotary_factor (%s)", st ? err.msg : "");
    expect_fail(load_cfg(&c, RP, "\"rope_parameters\": [1]", NULL, &err), &err, "rope_parameters a list",
                "field 'rope_parameters' must be an object", NULL);
    /* activations and layer kinds */
    st = load_cfg(&c, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu_pytorch_tanh\"", NULL, &err);
    expect_fail(st, &err, "hidden_act gelu", "field 'hidden_act' = 'gelu_pytorch_tanh' is not supported (only 'silu')",
                NULL);
    tu_check(st == PLM_ERR_UNSUPPORTED, "hidden_act gelu: PLM_ERR_UNSUPPORTED (%d)", (int)st);
    expect_fail(load_cfg(&c, "\"hidden_act\": \"silu\"", "\"hidden_act\": [\"silu\"]", NULL, &err), &err,
                "hidden_act list", "field 'hidden_act' must be a string", NULL);
    st = load_cfg(&c, "\"full_attention\"\n", "\"sliding_attention\"\n", NULL, &err);
    expect_fail(st, &err, "a sliding_attention layer",
                "field 'layer_types[3]' = 'sliding_attention' is not supported (only 'linear_attention', "
                "'full_attention')", NULL);
    tu_check(st == PLM_ERR_UNSUPPORTED, "layer type sliding_attention: PLM_ERR_UNSUPPORTED (%d)", (int)st);
    expect_fail(load_cfg(&c, "\"full_attention\"\n", "null\n", NULL, &err), &err, "a null layer type",
                "field 'layer_types[3]' must be a string", NULL);
}

/* ---------------------------------------------------------------- reproducers */
static void test_repro_models(void) {
    plm_model *m = NULL;
    plm_error err;
    expect_fail(plm_model_open(&m, "tests/data/repro/st-count-params-overflow.model", &err), &err,
                "st-count-params-overflow", "model.safetensors: tensor 'zz': shape product overflows", NULL);
    tu_check(m == NULL, "no model handed out");
    expect_fail(plm_model_open(&m, "tests/data/repro/cfg-eos-float-cast-overflow.model", &err), &err,
                "cfg-eos-float-cast-overflow", "config.json: field 'eos_token_id' = 1e+20 is not a token id", NULL);
}

/* The odd-header BF16 checkpoint computes exactly as the same bytes with an even header length. */
static void test_odd_alignment(void) {
    const char *odd = "tests/data/repro/st-bf16-odd-header.model";
    char even[256], p[300];
    snprintf(even, sizeof even, "%s/even", g_tmp);
    mkdir(even, 0755);
    size_t n = 0, cn = 0;
    snprintf(p, sizeof p, "%s/model.safetensors", odd);
    unsigned char *b = (unsigned char *)slurp(p, &n);
    snprintf(p, sizeof p, "%s/config.json", odd);
    char *cfg = slurp(p, &cn);
    if (!tu_check(b && cfg && n > 8, "read the reproducer")) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    tu_check(hl % 2 == 1, "its header length %llu is odd", (unsigned long long)hl);
    /* the same header plus one space of padding: every tensor 2-byte aligned */
    unsigned char *e = malloc(n + 1);
    uint64_t hl2 = hl + 1;
    for (int i = 0; i < 8; i++) e[i] = (unsigned char)(hl2 >> (8 * i));
    memcpy(e + 8, b + 8, hl);
    e[8 + hl] = ' ';
    memcpy(e + 9 + hl, b + 8 + hl, n - 8 - hl);
    snprintf(p, sizeof p, "%s/model.safetensors", even);
    spit(p, e, n + 1);
    snprintf(p, sizeof p, "%s/config.json", even);
    spit(p, cfg, cn);
    free(e);
    free(b);
    free(cfg);

    plm_st_set *s = NULL;
    plm_error err;
    snprintf(p, sizeof p, "%s/model.safetensors", odd);
    if (tu_check(plm_st_open_file(&s, p, &err) == PLM_OK, "open %s (%s)", p, err.msg)) {
        const plm_st_tensor *t = plm_st_find(s, "model.embed_tokens.weight");
        tu_check(t && t->dtype == PLM_DT_BF16 && ((uintptr_t)t->data & 1), "the embedding lies at an odd address");
        plm_st_close(s);
    }
    plm_model *mo = NULL, *me = NULL;
    if (!tu_check(plm_model_open(&mo, odd, &err) == PLM_OK, "odd-header model opens (%s)", err.msg) ||
        !tu_check(plm_model_open(&me, even, &err) == PLM_OK, "aligned model opens (%s)", err.msg)) {
        plm_model_free(mo);
        plm_model_free(me);
        return;
    }
    const int32_t V = plm_model_get_info(mo)->vocab_size;
    int32_t tokens[7] = {1, 5, 9, 200, 17, 3, 511}, cu[3] = {0, 4, 7};
    for (int ref = 0; ref < 2; ref++)
        for (int T = 1; T <= 7; T += 6) { /* 1 token: the GEMV path; 7 tokens: GEMM */
            float *lo = malloc(sizeof(float) * 7 * (size_t)V), *le = malloc(sizeof(float) * 7 * (size_t)V);
            plm_model *ms[2] = {mo, me};
            float *outs[2] = {lo, le};
            int ok = 1;
            for (int k = 0; k < 2 && ok; k++) {
                plm_ctx_params cp = plm_ctx_default_params();
                cp.use_reference = ref;
                cp.n_threads = 2;
                plm_ctx *c = NULL;
                plm_state *a = NULL, *bb = NULL;
                ok = plm_ctx_new(&c, ms[k], &cp, &err) == PLM_OK && plm_state_new(&a, ms[k], &err) == PLM_OK &&
                     plm_state_new(&bb, ms[k], &err) == PLM_OK;
                plm_state *st[2] = {a, bb};
                int32_t cu1[2] = {0, 1};
                plm_step step = T == 7 ? (plm_step){7, tokens, NULL, 2, cu, st, PLM_MEM_HOST}
                                             : (plm_step){1, tokens, NULL, 1, cu1, st, PLM_MEM_HOST};
                plm_outputs out = {.logits = outs[k], .n_rows = T};
                ok = ok && plm_step_run(c, &step, &out, &err) == PLM_OK;
                plm_state_free(a);
                plm_state_free(bb);
                plm_ctx_free(c);
            }
            tu_check(ok && memcmp(lo, le, sizeof(float) * (size_t)T * (size_t)V) == 0,
                     "%s kernels, %d token(s): misaligned BF16 logits equal the aligned ones bit for bit (%s)",
                     ref ? "reference" : "fast", T, ok ? "" : err.msg);
            free(lo);
            free(le);
        }
    plm_model_free(mo);
    plm_model_free(me);
}

/* ---------------------------------------------------------------- the CLI's input reader */
static char g_enc_text[64];
static size_t g_enc_len;

static plm_status enc_bytes(void *user, const char *text, size_t len, int32_t **ids, size_t *n, plm_error *err) {
    g_enc_len = len < sizeof g_enc_text ? len : sizeof g_enc_text;
    memcpy(g_enc_text, text, g_enc_len);
    *ids = malloc((len ? len : 1) * sizeof **ids);
    for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
    *n = len;
    return PLM_OK;
}

static plm_status read_mem(cli_input *in, const char *text, int tolerant, plm_error *err) {
    return cli_read_input_buffer(in, text, strlen(text), "in.jsonl", 300, enc_bytes, NULL, tolerant, err);
}

static void test_cli_reader(void) {
    cli_input in;
    plm_error err;
    size_t n = 0;
    char *garbage = slurp("tests/data/repro/input-trailing-garbage-accepted", &n);
    expect_fail(read_mem(&in, garbage, 0, &err), &err, "input-trailing-garbage-accepted",
                "in.jsonl: line 1: malformed JSON at column 23: unexpected characters after the JSON value", NULL);
    free(garbage);
    char *nul = slurp("tests/data/repro/input-text-nul-truncated", &n);
    g_enc_len = 0;
    tu_check(read_mem(&in, nul, 0, &err) == PLM_OK && in.n == 1 && in.seq[0].n == 5 && g_enc_len == 5 &&
                 memcmp(g_enc_text, "ab\0cd", 5) == 0,
             "input-text-nul-truncated: the tokenizer gets all 5 bytes \"ab\\0cd\" (%zu; %s)", g_enc_len, err.msg);
    if (in.n) cli_input_free(&in);
    free(nul);
    /* every escape reaches the tokenizer as its character (jansson, JSON_ALLOW_NUL); a key holding
       \u0000 elsewhere in the line (top level or nested) is not one of ours and does not matter */
    static const struct { const char *line, *want; size_t n; } keep[] = {
        {"{\"text\": \"\\u0000\"}\n", "\0", 1},
        {"{\"text\": \"x\\u0000\\u0000y\\u0000\", \"meta\": {\"k\\u0000\": [1]}}\n", "x\0\0y\0", 5},
        {"{\"a\\u0000b\": 1, \"text\": \"\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\\b\\f\\r\\u0001\"}\n",
         "\xc3\xa9\xf0\x9f\x98\x80\n\t\"\\/\b\f\r\x01", 15},
    };
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        g_enc_len = 0;
        plm_status st = read_mem(&in, keep[i].line, 0, &err);
        tu_check(st == PLM_OK && g_enc_len == keep[i].n && memcmp(g_enc_text, keep[i].want, keep[i].n) == 0,
                 "text line %zu: the tokenizer gets all %zu bytes (%zu; %s)", i, keep[i].n, g_enc_len,
                 st ? err.msg : "ok");
        if (!st) cli_input_free(&in);
    }
    tu_check(read_mem(&in, "{\"input_ids\": [1, 2], \"x\\u0000\": 0}\n", 0, &err) == PLM_OK && in.n == 1 &&
                 in.seq[0].n == 2,
             "input_ids beside a key holding \\u0000: accepted (%s)", err.msg);
    if (in.n) cli_input_free(&in);
    expect_fail(read_mem(&in, "1 2\n  {\"input_ids\": [3]}  x\n", 0, &err), &err, "garbage after an indented line",
                "line 2: malformed JSON at column 23", NULL);
    expect_fail(read_mem(&in, "{\"input_ids\": [3]}\n{\"input_ids\": [1], \"input_ids\": [2]}\n", 0, &err), &err,
                "repeated key", "line 2: key 'input_ids' appears twice", NULL);
    expect_fail(read_mem(&in, "{\"te\\u0000xt\": \"a\"}\n", 0, &err), &err, "NUL in a key",
                "line 1: JSON line has neither", NULL);
    expect_fail(read_mem(&in, "{\"text\\u0000\": \"a\"}\n", 0, &err), &err, "key 'text\\u0000'",
                "line 1: a key holds \\u0000", NULL);
    expect_fail(read_mem(&in, "{\"input_ids\": [1, 2]}\n{\"input_ids\": [01]}\n", 0, &err), &err, "leading zero",
                "line 2: malformed JSON at column 17: invalid number (leading zero)", NULL);
    expect_fail(read_mem(&in, "{\"input_ids\": [1, 2.0]}\n", 0, &err), &err, "2.0",
                "line 1: input_ids[1] = 2.0 is not a JSON integer (written with a fraction or an exponent)", NULL);
    expect_fail(read_mem(&in, "{\"text\": \"x\", \"input_ids\": [3e0]}\n", 0, &err), &err, "3e0",
                "line 1: input_ids[0] = 3e0 is not a JSON integer (written with a fraction or an exponent)", NULL);
    expect_fail(read_mem(&in, "{\"input_ids\": [1, 2.5]}\n", 0, &err), &err, "2.5", "line 1: input_ids[1] is not an integer",
                NULL);
    expect_fail(read_mem(&in, "[1, 2]\n", 0, &err), &err, "a JSON array line", "line 1: '[1,' at index 0", NULL);
    expect_fail(read_mem(&in, "{\"input_ids\": [1]}\n\"x\"\n", 0, &err), &err, "a JSON string line", "line 2", NULL);
    /* tolerant: the bad line becomes an error sequence naming line and column, the rest is kept */
    tu_check(read_mem(&in, "1 2\n{\"input_ids\": [3]} {}\n4\n", 1, &err) == PLM_OK && in.n == 3 && in.n_errors == 1 &&
                 in.seq[1].error && strstr(in.seq[1].error, "line 2: malformed JSON at column 20") &&
                 in.seq[2].n == 1 && in.total == 3,
             "tolerant reading keeps the good lines (%s)", in.n > 1 && in.seq[1].error ? in.seq[1].error : err.msg);
    if (in.n) cli_input_free(&in);
}

int main(void) {
    if (!mkdtemp(g_tmp)) return 1;
    test_json_strict();
    test_config();
    test_config_model_kinds();
    test_repro_models();
    test_odd_alignment();
    test_cli_reader();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", g_tmp);
    return tu_finish("test_parsers");
}
