/* The CLI end to end: forward reproduces the fixtures' logits for any token budget and input form
 * (token lines, one packed JSONL row with position ids, several rows with a sequence continuing
 * across rows); score prints one line per sequence; every bad input is refused with a message
 * naming the problem, a non-zero exit (not a crash) and no output file. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "devutil.h"
#include "synth.h"
#include "testutil.h"

static char tmp[] = "/tmp/packlm-cli-XXXXXX";
static char out_text[1 << 16];

/* Runs a shell command line, captures stdout+stderr into out_text, returns the exit status
 * (128 + signal when killed). */
static int run(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out_text, 1, sizeof out_text - 1, p);
    out_text[n] = 0;
    int st = pclose(p);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

static int exists(const char *path) {
    struct stat s;
    return stat(path, &s) == 0;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void compare_npy(const char *got_path, const char *ref_path, const char *what) {
    float *got = NULL, *ref = NULL;
    int nd1, nd2;
    int64_t s1[8], s2[8];
    plm_error err = {0};
    if (!tu_check(plm_npy_load_f32(&got, &nd1, s1, got_path, &err) == PLM_OK, "%s: output readable %s", what, err.msg))
        return;
    plm_npy_load_f32(&ref, &nd2, s2, ref_path, &err);
    if (tu_check(nd1 == 2 && nd2 == 2 && s1[0] == s2[0] && s1[1] == s2[1], "%s: shape [%lld, %lld]", what,
                 (long long)s1[0], (long long)s1[1]))
        tu_close(got, ref, (size_t)(s1[0] * s1[1]), 1e-4, what);
    free(got);
    free(ref);
}

/* A JSONL file holding the sequences of inputs.txt: rows of `per_row` sequences with position ids;
 * split_last: the last sequence of each row is cut in two, its second half opening the next row. */
static void make_jsonl(const char *in_txt, const char *out, int per_row, int split) {
    FILE *f = fopen(in_txt, "r"), *o = fopen(out, "w");
    char line[1 << 14];
    int in_row = 0;
    char ids[1 << 16] = "", pos[1 << 16] = "";
    while (f && o && fgets(line, sizeof line, f)) {
        int p = 0, n_tok = 0;
        char *s = line, *e;
        long v;
        while ((v = strtol(s, &e, 10)), e != s) n_tok++, s = e;
        int cut = split ? n_tok / 2 : -1;
        s = line;
        while ((v = strtol(s, &e, 10)), e != s) {
            if (p == cut && cut > 0 && (ids[0] || pos[0])) { /* close the row mid-sequence */
                fprintf(o, "{\"input_ids\": [%s], \"position_ids\": [%s]}\n", ids, pos);
                ids[0] = pos[0] = 0;
                in_row = 0;
            }
            snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%ld", ids[0] ? ", " : "", v);
            snprintf(pos + strlen(pos), sizeof pos - strlen(pos), "%s%d", pos[0] ? ", " : "", p);
            p++;
            s = e;
        }
        if (++in_row >= per_row) {
            fprintf(o, "{\"input_ids\": [%s], \"position_ids\": [%s]}\n", ids, pos);
            ids[0] = pos[0] = 0;
            in_row = 0;
        }
    }
    if (o && ids[0]) fprintf(o, "{\"input_ids\": [%s], \"position_ids\": [%s]}\n", ids, pos);
    if (f) fclose(f);
    if (o) fclose(o);
}

/* score's numbers against log-softmax of the fixture's reference logits: per sequence the token count
 * (length - 1), the summed log-probability, the perplexity exp(-s/n), and for a one-token sequence
 * (appended to the input) tokens 0, logprob 0 and ppl null; for several budgets, to stdout and --out. */
static void score_numbers(const char *name) {
    char dir[256], path[300], in[300], sp[300], what[300];
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    snprintf(path, sizeof path, "%s/inputs.txt", dir);
    int32_t **seqs;
    int64_t *lens;
    int n = tu_read_token_lines(path, &seqs, &lens);
    float *ref = NULL;
    int nd;
    int64_t sh[8];
    plm_error err = {0};
    snprintf(path, sizeof path, "%s/logits.npy", dir);
    if (!tu_check(n > 0 && plm_npy_load_f32(&ref, &nd, sh, path, &err) == PLM_OK && nd == 2, "%s: fixture for score %s",
                  name, err.msg)) {
        if (n > 0) tu_free_seqs(seqs, n);
        return;
    }
    const int64_t V = sh[1];
    /* the expected lines: n sequences, then a one-token sequence */
    const size_t nn = n > 0 ? (size_t)n : 1;
    double *want = calloc(nn, sizeof *want), *mag = calloc(nn, sizeof *mag);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        for (int64_t j = 0; j + 1 < lens[i]; j++) {
            const float *l = ref + (off + j) * V;
            double mx = l[0], z = 0;
            for (int64_t v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
            for (int64_t v = 0; v < V; v++) z += exp(l[v] - mx);
            double x = l[seqs[i][j + 1]] - mx - log(z);
            want[i] += x;
            mag[i] += fabs(x);
        }
        off += lens[i];
    }
    snprintf(in, sizeof in, "%s/%s-score.txt", tmp, name);
    FILE *f = fopen(in, "w");
    for (int i = 0; f && i < n; i++) {
        for (int64_t j = 0; j < lens[i]; j++) fprintf(f, "%s%d", j ? " " : "", seqs[i][j]);
        fprintf(f, "\n");
    }
    if (f) {
        fprintf(f, "%d\n", seqs[0][0]);
        fclose(f);
    }
    snprintf(sp, sizeof sp, "%s/score.jsonl", tmp);
    const int budgets[] = {0, 1, 7};
    for (int b = 0; b < 3; b++) {
        char opt[64] = "";
        if (budgets[b]) snprintf(opt, sizeof opt, "--max-batch-tokens %d", budgets[b]);
        unlink(sp);
        int rc = b == 1 ? run("(build/packlm score --model %s --input %s --threads 2 %s > %s)", dir, in, opt, sp)
                        : run("build/packlm score --model %s --input %s --out %s --threads 2 %s", dir, in, sp, opt);
        snprintf(what, sizeof what, "%s: score %s%s", name, b == 1 ? "to stdout " : "", opt[0] ? opt : "(default budget)");
        if (!tu_check(rc == 0, "%s exits 0 (%d) %s", what, rc, rc ? out_text : "")) continue;
        f = fopen(sp, "r");
        char l[4096];
        int lines = 0, idx_ok = 1, tok_ok = 1, ppl_ok = 1, one_ok = 0;
        double worst = 0;
        while (f && fgets(l, sizeof l, f)) {
            cJSON *o = cJSON_Parse(l);
            const cJSON *ix = cJSON_GetObjectItem(o, "index"), *tk = cJSON_GetObjectItem(o, "tokens"),
                        *lp = cJSON_GetObjectItem(o, "logprob"), *pp = cJSON_GetObjectItem(o, "ppl");
            const int i = lines++;
            if (!o || !cJSON_IsNumber(ix) || !cJSON_IsNumber(tk) || !cJSON_IsNumber(lp) || ix->valueint != i) {
                idx_ok = 0;
                cJSON_Delete(o);
                continue;
            }
            if (i < n) {
                const double s = lp->valuedouble, k = (double)(lens[i] - 1);
                tok_ok &= tk->valuedouble == k;
                /* each term within 1e-4 of the reference scale, the sum within 1e-4 of the summed magnitudes
                   (plus the 1e-6 the output prints) */
                double e = fabs(s - want[i]) / ((mag[i] > 0 ? mag[i] : 1.0) * 1e-4 + 1e-6);
                tu_worst(&worst, e);
                if (k > 0) ppl_ok &= cJSON_IsNumber(pp) && fabs(pp->valuedouble - exp(-want[i] / k)) <=
                                                              1e-4 * exp(-want[i] / k) * (1 + mag[i] / k);
                else ppl_ok &= cJSON_IsNull(pp);
            } else if (i == n) {
                one_ok = tk->valuedouble == 0 && lp->valuedouble == 0 && cJSON_IsNull(pp);
            }
            cJSON_Delete(o);
        }
        if (f) fclose(f);
        tu_check(lines == n + 1 && idx_ok, "%s: %d lines for %d sequences, indices in order", what, lines, n + 1);
        tu_check(tok_ok, "%s: token counts = length - 1", what);
        tu_check(worst <= 1.0, "%s: summed log-probabilities equal log-softmax of the reference logits (worst %.3g of the bound)",
                 what, worst);
        tu_check(ppl_ok, "%s: perplexity = exp(-logprob / tokens) of the reference", what);
        tu_check(one_ok, "%s: a one-token sequence: tokens 0, logprob 0, ppl null", what);
    }
    free(want);
    free(mag);
    free(ref);
    tu_free_seqs(seqs, n);
    free(lens);
}

static void good_paths(const char *name) {
    char dir[256], ref[300], out[300], in[300], jl[300], what[300];
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    snprintf(ref, sizeof ref, "%s/logits.npy", dir);
    snprintf(in, sizeof in, "%s/inputs.txt", dir);
    snprintf(out, sizeof out, "%s/%s.npy", tmp, name);
    const int budgets[] = {1, 50, 0};
    for (int b = 0; b < 3; b++) {
        char opt[64] = "";
        if (budgets[b]) snprintf(opt, sizeof opt, "--max-batch-tokens %d", budgets[b]);
        int rc = run("build/packlm forward --model %s --input %s --out %s --threads 2 %s", dir, in, out, opt);
        snprintf(what, sizeof what, "%s: forward %s", name, opt[0] ? opt : "(default budget)");
        if (tu_check(rc == 0, "%s exits 0 (%d) %s", what, rc, rc ? out_text : "")) compare_npy(out, ref, what);
    }
    for (int mode = 0; mode < 3; mode++) {
        int per_row = mode == 0 ? 1000 : 2, split = mode == 2;
        snprintf(jl, sizeof jl, "%s/%s-%d.jsonl", tmp, name, mode);
        make_jsonl(in, jl, per_row, split);
        int rc = run("build/packlm forward --model %s --input %s --out %s --max-batch-tokens 40", dir, jl, out);
        snprintf(what, sizeof what, "%s: forward JSONL %s", name,
                 mode == 0 ? "one packed row with position ids" : mode == 1 ? "rows of 2 sequences" :
                 "rows with sequences continuing across rows");
        if (tu_check(rc == 0, "%s exits 0 (%d) %s", what, rc, rc ? out_text : "")) compare_npy(out, ref, what);
    }
    score_numbers(name);
}

/* Expects failure: exit status in [1, 127], the message contains `needle`, no output left. */
static void refuse(const char *what, const char *needle, const char *cmdfmt, ...) {
    char cmd[4096], outp[300];
    snprintf(outp, sizeof outp, "%s/refused.out", tmp);
    unlink(outp);
    va_list ap;
    va_start(ap, cmdfmt);
    vsnprintf(cmd, sizeof cmd, cmdfmt, ap);
    va_end(ap);
    int rc = run("%s", cmd);
    char *nl = strchr(out_text, '\n');
    if (nl && nl[1] == 0) *nl = 0;
    tu_check(rc >= 1 && rc < 128 && strstr(out_text, needle) && !exists(outp), "refuses %s: rc %d, \"%.300s\"", what,
             rc, out_text);
}

static void model_copy(const char *dst, const char *src) { run("rm -rf %s && cp -r %s %s", dst, src, dst); }

static void bad_inputs(void) {
    char m[300], in[300], o[300], f[300];
    snprintf(o, sizeof o, "%s/refused.out", tmp);
    snprintf(in, sizeof in, "tests/data/tiny-dense/inputs.txt");
    const char *good = "tests/data/tiny-dense";
#define FWD(model, input) "build/packlm forward --model %s --input %s --out %s", model, input, o
    refuse("a missing model directory", "config.json", FWD("/nonexistent/model", in));
    snprintf(m, sizeof m, "%s/m", tmp);
    /* config.json problems */
    model_copy(m, good);
    run("sed -i 's/\"hidden_size\": 64,//' %s/config.json", m);
    refuse("a config missing hidden_size", "missing field 'hidden_size'", FWD(m, in));
    model_copy(m, good);
    run("sed -i 's/\"layer_types\"/\"layer_typos\"/' %s/config.json", m);
    refuse("a config missing layer_types", "layer_types", FWD(m, in));
    model_copy(m, good);
    run("printf '{\"model_type\": \"qwen3_5_text\", ' > %s/config.json", m);
    refuse("malformed config JSON", "malformed JSON", FWD(m, in));
    model_copy(m, good);
    run("sed -i 's/\"intermediate_size\": 128/\"intermediate_size\": 100/' %s/config.json", m);
    refuse("a tensor shape that does not match the config", "mlp.gate_proj.weight", FWD(m, in));
    model_copy(m, good);
    run("sed -i 's/qwen3_5_text/llama/' %s/config.json", m);
    refuse("another model type", "llama", FWD(m, in));
    /* safetensors problems */
    model_copy(m, good);
    run("truncate -s 500000 %s/model.safetensors", m);
    refuse("a truncated safetensors file", "model.safetensors", FWD(m, in));
    model_copy(m, good);
    run("printf '\\377\\377\\377\\377\\000\\000\\000\\000' | dd of=%s/model.safetensors bs=1 count=8 conv=notrunc status=none", m);
    refuse("a header length past the end of the file", "header", FWD(m, in));
    model_copy(m, good);
    run("truncate -s 4 %s/model.safetensors", m);
    refuse("a 4-byte safetensors file", "model.safetensors", FWD(m, in));
    model_copy(m, good);
    /* lie about one tensor: same header length, offsets pushed past the data section */
    run("perl -0pi -e 's/(\"lm_head.weight\":\\{\"dtype\":\"F32\",\"shape\":\\[512,64\\],\"data_offsets\":\\[)0,/${1}9,/' %s/model.safetensors", m);
    run("grep -c 'data_offsets\":\\[9,' %s/model.safetensors", m);
    if (atoi(out_text) > 0) refuse("a tensor whose byte range does not match its shape", "lm_head.weight", FWD(m, in));
    else tu_check(0, "could not craft the lying-offset safetensors (header layout changed?)");
    run("rm -f %s/model.safetensors", m);
    refuse("a model directory without weights", "model.safetensors", FWD(m, in));
    /* inputs */
    struct { const char *what, *text, *needle; } cases[] = {
        {"a token id outside the vocabulary", "1 2 512\n", "outside the vocabulary"},
        {"a negative token id", "1 -2 3\n", "not a token id"},
        {"a token that is not a number", "1 abc 3\n", "not a token id"},
        {"a fractional token id", "1 2.5\n", "not a token id"},
        {"an empty sequence (blank line)", "1 2\n\n3 4\n", "empty sequence"},
        {"an empty input_ids list", "{\"input_ids\": []}\n", "empty sequence"},
        {"a broken JSONL line", "{\"input_ids\": [1, 2\n", "malformed JSON"},
        {"a JSONL token id out of range", "{\"input_ids\": [1, 999]}\n", "outside the vocabulary"},
        {"a JSONL token id that is a string", "{\"input_ids\": [1, \"7\"]}\n", "not an integer"},
        {"negative position ids", "{\"input_ids\": [1, 2], \"position_ids\": [-1, 0]}\n", "negative"},
        {"position ids that jump without a state", "{\"input_ids\": [1, 2, 3], \"position_ids\": [0, 1, 5]}\n", "jump"},
        {"a first position > 0 with nothing to continue", "{\"input_ids\": [1, 2], \"position_ids\": [3, 4]}\n", "jump"},
        {"position_ids of another length", "{\"input_ids\": [1, 2, 3], \"position_ids\": [0, 1]}\n", "position_ids has 2"},
        {"a JSONL line without input_ids", "{\"tokens\": [1, 2]}\n", "neither"},
        {"an empty file", "", "no sequences"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(f, sizeof f, "%s/bad%zu.txt", tmp, i);
        write_file(f, cases[i].text);
        refuse(cases[i].what, cases[i].needle, FWD(good, f));
        refuse(cases[i].what, cases[i].needle, "build/packlm score --model %s --input %s --out %s", good, f, o);
    }
    refuse("a missing input file", "cannot open", FWD(good, "/nonexistent/input.txt"));
    refuse("a zero token budget", "--max-batch-tokens", "build/packlm forward --model %s --input %s --out %s --max-batch-tokens 0", good, in, o);
    refuse("an unknown option", "unknown", "build/packlm forward --model %s --input %s --out %s --bogus", good, in, o);
    refuse("an unknown command", "unknown command", "build/packlm frobnicate");
    refuse("an output in a missing directory", "refused.out", "build/packlm forward --model %s --input %s --out /nonexistent/dir/refused.out", good, in);
#undef FWD
}

/* Text in: a random model whose vocabulary covers the bundled Qwen tokenizer; scoring {"text"} lines
 * must equal scoring the ids `packlm tokenize` prints for them. */
static void text_input(void) {
    char dir[300], texts[300], ids[300], a[300], b[300];
    snprintf(dir, sizeof dir, "%s/textmodel", tmp);
    mkdir(dir, 0700);
    tu_rng r = {77};
    synth_spec s;
    synth_random_spec(&s, &r);
    s.c.vocab_size = 151669; /* the tokenizer's: every generated id decodes */
    s.c.hidden_size = 8;
    s.dtype = PLM_DT_BF16;
    plm_error err = {0};
    if (!tu_check(synth_write(&s, dir, &r, &err) == PLM_OK, "text model written %s", err.msg)) return;
    run("cp tests/data/tokenizer-qwen3/tokenizer.json tests/data/tokenizer-qwen3/tokenizer_config.json %s/", dir);
    snprintf(texts, sizeof texts, "%s/texts.jsonl", tmp);
    write_file(texts, "{\"text\": \"Hello, world! packlm packs sequences.\"}\n"
                      "{\"text\": \"<|im_start|>user\\nWie geht's? \\u00e9t\\u00e9 \\ud83d\\ude00<|im_end|>\"}\n"
                      "{\"text\": \"x\"}\n");
    snprintf(ids, sizeof ids, "%s/ids.txt", tmp);
    int rc = run("build/packlm tokenize --model %s --input %s > %s", dir, texts, ids);
    tu_check(rc == 0, "tokenize the texts (%d)", rc);
    snprintf(a, sizeof a, "%s/a.jsonl", tmp);
    snprintf(b, sizeof b, "%s/b.jsonl", tmp);
    rc = run("build/packlm score --model %s --input %s --out %s", dir, texts, a);
    tu_check(rc == 0, "score with text input (%d) %s", rc, rc ? out_text : "");
    rc = run("build/packlm score --model %s --input %s --out %s", dir, ids, b);
    tu_check(rc == 0, "score with the same ids (%d)", rc);
    rc = run("cmp %s %s", a, b);
    tu_check(rc == 0, "text input scores exactly as its token ids");
    /* generate: text lines give JSON lines {"index", "text", "ids"} whose ids equal those of the same
       prompt given as ids, and whose text is the decoding of those ids */
    char g1[300], g2[300];
    snprintf(g1, sizeof g1, "%s/g1.txt", tmp);
    snprintf(g2, sizeof g2, "%s/g2.txt", tmp);
    rc = run("build/packlm generate --model %s --input %s --max-new-tokens 5 --ignore-eos --out %s", dir, texts, g1);
    int rc2 = run("build/packlm generate --model %s --input %s --max-new-tokens 5 --ignore-eos --out %s", dir, ids, g2);
    tu_check(rc == 0 && rc2 == 0, "generate with text and with ids (%d, %d)", rc, rc2);
    FILE *f1 = fopen(g1, "r"), *f2 = fopen(g2, "r");
    char l1[8192], l2[8192];
    int lines = 0;
    while (f1 && f2 && fgets(l1, sizeof l1, f1) && fgets(l2, sizeof l2, f2)) {
        cJSON *o = cJSON_Parse(l1);
        const cJSON *txt = cJSON_GetObjectItem(o, "text"), *arr = cJSON_GetObjectItem(o, "ids"), *e;
        char joined[8192] = "";
        cJSON_ArrayForEach(e, arr) snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%d",
                                            joined[0] ? " " : "", (int)e->valuedouble);
        l2[strcspn(l2, "\n")] = 0;
        tu_check(cJSON_IsString(txt) && !strcmp(joined, l2), "generate line %d: text JSON ids [%s] = ids run [%s]",
                 lines, joined, l2);
        cJSON_Delete(o);
        lines++;
    }
    tu_check(lines == 3, "generate printed %d lines for 3 texts", lines);
    if (f1) fclose(f1);
    if (f2) fclose(f2);
    write_file(texts, "{\"text\": 5}\n");
    rc = run("build/packlm score --model %s --input %s", dir, texts);
    tu_check(rc == 1 && strstr(out_text, "'text' must be a string"), "refuses a non-string text: %.200s", out_text);
    write_file(texts, "{\"text\": \"hi\"}\n");
    rc = run("build/packlm score --model tests/data/tiny-dense --input %s", texts, "");
    tu_check(rc == 1 && strstr(out_text, "tokenizer.json"), "refuses text without a tokenizer: %.200s", out_text);

    /* reproducers (tests/data/repro): an escaped U+0000 is part of the text, not its end */
    rc = run("build/packlm tokenize --model %s --input tests/data/repro/input-text-nul-truncated", dir);
    char nul_ids[256];
    snprintf(nul_ids, sizeof nul_ids, "%.250s", out_text);
    plm_tokenizer *tk = NULL;
    int32_t *want = NULL;
    size_t nw = 0;
    char want_s[256] = "";
    if (plm_tokenizer_open(&tk, "tests/data/tokenizer-qwen3/tokenizer.json", &err) == PLM_OK &&
        plm_tokenizer_encode(tk, "ab\0cd", 5, &want, &nw, &err) == PLM_OK)
        for (size_t i = 0; i < nw; i++)
            snprintf(want_s + strlen(want_s), sizeof want_s - strlen(want_s), "%s%d", i ? " " : "", want[i]);
    strncat(want_s, "\n", sizeof want_s - strlen(want_s) - 1);
    tu_check(rc == 0 && nw >= 3 && !strcmp(nul_ids, want_s),
             "tokenize encodes the whole \"ab\\u0000cd\": [%.60s] = encode(\"ab\\0cd\") [%.60s]", nul_ids, want_s);
    free(want);
    plm_tokenizer_free(tk);
    rc = run("build/packlm score --model %s --input tests/data/repro/input-text-nul-truncated --out %s", dir, a);
    write_file(b, "");
    FILE *fi = fopen(ids, "w");
    if (fi) {
        fputs(nul_ids, fi);
        fclose(fi);
    }
    rc2 = run("build/packlm score --model %s --input %s --out %s", dir, ids, b);
    tu_check(rc == 0 && rc2 == 0 && run("cmp %s %s", a, b) == 0, "score of the NUL text equals score of its ids");
    write_file(texts, "{\"text\": \"a\"} x\n");
    rc = run("build/packlm tokenize --model %s --input %s", dir, texts);
    tu_check(rc == 1 && strstr(out_text, "line 1: malformed JSON at column 15: unexpected characters after the JSON value"),
             "tokenize refuses a JSON line with trailing characters: %.200s", out_text);
}

static void repro_inputs(void) {
    char o[300];
    snprintf(o, sizeof o, "%s/refused.out", tmp);
    refuse("input-trailing-garbage-accepted",
           "input-trailing-garbage-accepted: line 1: malformed JSON at column 23: unexpected characters after the JSON value",
           "build/packlm score --model tests/data/tiny-dense --input tests/data/repro/input-trailing-garbage-accepted "
           "--out %s", o);
    refuse("st-count-params-overflow", "tensor 'zz': shape product overflows",
           "build/packlm score --model tests/data/repro/st-count-params-overflow.model --input "
           "tests/data/tiny-dense/inputs.txt --out %s", o);
    refuse("cfg-eos-float-cast-overflow", "config.json: field 'eos_token_id' = 1e+20 is not a token id",
           "build/packlm score --model tests/data/repro/cfg-eos-float-cast-overflow.model --input "
           "tests/data/tiny-dense/inputs.txt --out %s", o);
    int rc = run("build/packlm score --model tests/data/repro/st-bf16-odd-header.model --input "
                 "tests/data/tiny-dense/inputs.txt");
    tu_check(rc == 0 && strstr(out_text, "\"logprob\""), "st-bf16-odd-header scores (rc %d)", rc);
    /* a data section with bytes after the last tensor, or a gap: refused as the reference refuses them */
    char m[300];
    snprintf(m, sizeof m, "%s/trailing", tmp);
    model_copy(m, "tests/data/tiny-dense");
    run("printf 'xyz' >> %s/model.safetensors", m);
    refuse("bytes after the last tensor", "3 bytes after the last tensor",
           "build/packlm score --model %s --input tests/data/tiny-dense/inputs.txt --out %s", m, o);
    /* a shard index followed by a second object and garbage */
    model_copy(m, "tests/data/tiny-dense");
    run("mv %s/model.safetensors %s/model-00001-of-00001.safetensors", m, m);
    {
        char shard[400], idx[400];
        snprintf(shard, sizeof shard, "%s/model-00001-of-00001.safetensors", m);
        snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", m);
        plm_st_set *set = NULL;
        plm_error err = {0};
        FILE *f = fopen(idx, "w");
        if (f && plm_st_open_file(&set, shard, &err) == PLM_OK) {
            fputs("{\"weight_map\": {", f);
            for (int i = 0; i < plm_st_count(set); i++)
                fprintf(f, "%s\"%s\": \"model-00001-of-00001.safetensors\"", i ? ", " : "", plm_st_at(set, i)->name);
            fputs("}}\n", f);
        }
        if (f) fclose(f);
        plm_st_close(set);
    }
    rc = run("build/packlm score --model %s --input tests/data/tiny-dense/inputs.txt", m);
    if (tu_check(rc == 0, "the sharded copy scores (%d: %.200s)", rc, out_text)) {
        run("printf '{\"weight_map\": {}} garbage\\n' >> %s/model.safetensors.index.json", m);
        refuse("a shard index with a second object", "model.safetensors.index.json: line 2, column 1: invalid JSON",
               "build/packlm score --model %s --input tests/data/tiny-dense/inputs.txt --out %s", m, o);
    }
}

/* The context flags reach the context: --batch-invariant and --bf16-single-pass on the F32 fixture
 * (single pass leaves F32 weights alone: the fixture's logits either way), and on a BF16 copy
 * single pass changes the logits by BF16 rounding only (||diff|| / ||ref|| in (0, 1e-1]). */
static void context_flags(const char *name) {
    char dir[256], ref[300], in[300], out[300], bdir[300], what[300];
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    snprintf(ref, sizeof ref, "%s/logits.npy", dir);
    snprintf(in, sizeof in, "%s/inputs.txt", dir);
    snprintf(out, sizeof out, "%s/%s-flags.npy", tmp, name);
    const char *flags[] = {"--batch-invariant", "--bf16-single-pass", "--batch-invariant --bf16-single-pass"};
    for (int f = 0; f < 3; f++) {
        int rc = run("build/packlm forward --model %s --input %s --out %s --threads 2 %s", dir, in, out, flags[f]);
        snprintf(what, sizeof what, "%s: forward %s", name, flags[f]);
        if (tu_check(rc == 0, "%s exits 0 (%d) %s", what, rc, rc ? out_text : "")) compare_npy(out, ref, what);
    }
    plm_error err = {0};
    snprintf(bdir, sizeof bdir, "%s/%s-bf16", tmp, name);
    if (!tu_check(tu_write_bf16_copy(dir, bdir, &err) == PLM_OK, "%s: BF16 copy (%s)", name, err.msg)) return;
    char o1[320], o2[320];
    snprintf(o1, sizeof o1, "%s/a.npy", bdir);
    snprintf(o2, sizeof o2, "%s/b.npy", bdir);
    int rc1 = run("build/packlm forward --model %s --input %s --out %s", bdir, in, o1);
    int rc2 = run("build/packlm forward --model %s --input %s --out %s --bf16-single-pass", bdir, in, o2);
    if (!tu_check(rc1 == 0 && rc2 == 0, "%s: BF16 copy, forward with and without --bf16-single-pass exit 0", name))
        return;
    float *a = NULL, *b = NULL;
    int nd;
    int64_t sh[8];
    if (plm_npy_load_f32(&a, &nd, sh, o1, &err) == PLM_OK && plm_npy_load_f32(&b, &nd, sh, o2, &err) == PLM_OK) {
        double d = 0, r = 0;
        for (int64_t i = 0; i < sh[0] * sh[1]; i++) d += (double)(b[i] - a[i]) * (b[i] - a[i]), r += (double)a[i] * a[i];
        const double rel = r > 0 ? sqrt(d / r) : INFINITY;
        tu_check(rel > 0 && rel <= 1e-1, "%s: BF16 copy, --bf16-single-pass moves the logits by BF16 rounding: "
                 "||diff|| / ||ref|| %.2e (in (0, 1e-1])", name, rel);
    }
    free(a), free(b);
}

int main(void) {
    if (!exists("build/packlm")) {
        printf("FAIL build/packlm is missing: run make first\n");
        return 1;
    }
    if (!mkdtemp(tmp)) return 1;
    tu_check(run("build/packlm --help") == 0 && strstr(out_text, "forward"), "packlm --help lists the commands");
    tu_check(run("build/packlm forward --help") == 0 && strstr(out_text, "--max-batch-tokens"), "forward --help");
    tu_check(run("build/packlm score --help") == 0 && strstr(out_text, "ppl"), "score --help");
    const char *names[] = {"tiny-dense", "tiny-moe", "tiny-vl"};
    for (int i = 0; i < 3; i++) good_paths(names[i]);
    context_flags("tiny-dense");
    bad_inputs();
    text_input();
    repro_inputs();
    run("rm -rf %s", tmp);
    return tu_finish("test_cli");
}
