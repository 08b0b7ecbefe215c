/* packlm generate: continue every input prompt (greedy or sampled) with continuous batching; one
 * output line per input sequence, in input order. A rejected line is reported and the others still
 * run (exit status 1 when any failed). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"
#include "cmds.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: packlm generate --model DIR --input FILE --max-new-tokens N\n"
            "                       [--greedy | --temperature T [--top-k K] [--top-p P] [--seed S]]\n"
            "                       [--ignore-eos] [--max-batch-tokens N] [--max-seqs N] [--out FILE] [--threads N]\n"
            "                       [--device cpu|cuda[:N]] [--weights stored|int8[,OPTIONS]]\n"
            "                       [--batch-invariant] [--bf16-single-pass]\n"
            "\n"
            "Continues every input sequence and prints one line per input sequence, in input order: the new\n"
            "token ids separated by spaces (an end-of-sequence id that stopped it is included); for a\n"
            "{\"text\": ...} input line, a JSON line {\"index\": i, \"text\": continuation, \"ids\": [...]}; or\n"
            "'error: <why>' for a sequence that was rejected (bad token id, empty line, malformed JSON); the\n"
            "other sequences still complete. Exit status 1 when any sequence failed.\n"
            "Every sequence gets exactly the tokens it would get alone: batching does not change them, and\n"
            "sampling draws from a random stream of its own, derived from (seed, index in the input).\n"
            "  --model DIR             Hugging Face Qwen3.5 checkpoint directory\n"
            "  --input FILE            token-id lines or JSONL (see packlm forward --help)\n"
            "  --max-new-tokens N      at most N new tokens per sequence (required)\n"
            "  --greedy                pick the most likely token (the default)\n"
            "  --temperature T         sample at temperature T (0: greedy)\n"
            "  --top-k K               sample among the K most likely tokens (0: all; default 0)\n"
            "  --top-p P               sample within the smallest set of mass >= P (default 1: all)\n"
            "  --seed S                random seed (default 0)\n"
            "  --ignore-eos            do not stop at the model's end-of-sequence ids\n"
            "  --max-batch-tokens N    at most N tokens per packed step (default 512)\n"
            "  --max-seqs N            at most N sequences in flight, each holding one state (default 64)\n"
            "  --out FILE              output file, written atomically (default: stdout)\n"
            "  --threads N             threads (default: all cores)\n"
            CLI_CTX_OPTS_HELP
            "At the end, stderr gets a summary: prefill tokens/s (steps holding prompt tokens) and decode\n"
            "tokens/s (steps holding only generated tokens).\n");
}

static int parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || !(v >= lo && v <= hi)) {
        cli_error(cmd, "%s expects a number in [%g, %g], got '%s'", opt, lo, hi, s ? s : "");
        return 1;
    }
    *out = v;
    return 0;
}

/* {"index": i, "text": "<decoded continuation>", "ids": [...]} for a sequence given as text (jansson:
   the text keeps every character, a U+0000 included, as the input reader does) */
static plm_status print_text_line(FILE *f, cli_session *ss, int index, const int32_t *t, int64_t n, plm_error *err) {
    plm_tokenizer *tok;
    char *text = NULL;
    size_t tlen = 0;
    plm_status st = cli_session_tokenizer(ss, &tok, err);
    if (!st) st = plm_tokenizer_decode(tok, t, (size_t)n, &text, &tlen, err);
    if (st) return st;
    json_t *o = json_object(), *a = json_array();
    int bad = !o || !a || json_object_set_new(o, "index", json_integer(index)) ||
              json_object_set_new(o, "text", json_stringn(text, tlen));
    for (int64_t j = 0; !bad && j < n; j++) bad = json_array_append_new(a, json_integer(t[j]));
    bad = bad || json_object_set(o, "ids", a); /* keys in this order */
    char *line = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line) fprintf(f, "%s\n", line);
    free(line);
    json_decref(a);
    json_decref(o);
    free(text);
    if (!line) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return err->code = PLM_ERR_NOMEM;
    }
    return PLM_OK;
}

int cmd_generate(int argc, char **argv) {
    const char *cmd = "generate";
    cli_opts o = {.budget = 512};
    int64_t max_new = -1, max_seqs = 64, top_k = 0, seed = 0;
    double temperature = 0.0, top_p = 1.0;
    int greedy = 0, sampled = 0, ignore_eos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_shared_opt(&o, cmd, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--greedy")) greedy = 1;
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = 1;
        else if (!strcmp(a, "--max-new-tokens") && v) { if (cli_parse_int(cmd, a, argv[++i], 0, 1 << 24, &max_new)) return 2; }
        else if (!strcmp(a, "--max-seqs") && v) { if (cli_parse_int(cmd, a, argv[++i], 1, 1 << 20, &max_seqs)) return 2; }
        else if (!strcmp(a, "--top-k") && v) { sampled = 1; if (cli_parse_int(cmd, a, argv[++i], 0, 1 << 30, &top_k)) return 2; }
        else if (!strcmp(a, "--seed") && v) { sampled = 1; if (cli_parse_int(cmd, a, argv[++i], 0, INT64_MAX, &seed)) return 2; }
        else if (!strcmp(a, "--temperature") && v) { sampled = 1; if (parse_float(cmd, a, argv[++i], 0, 1e4, &temperature)) return 2; }
        else if (!strcmp(a, "--top-p") && v) { sampled = 1; if (parse_float(cmd, a, argv[++i], 0, 1, &top_p)) return 2; }
        else { cli_error(cmd, "unknown or incomplete option '%s'", a); usage(stderr); return 2; }
    }
    if (!o.model || !o.input || max_new < 0) {
        cli_error(cmd, "--model, --input and --max-new-tokens are required");
        usage(stderr);
        return 2;
    }
    if (greedy && sampled) {
        cli_error(cmd, "--greedy cannot be combined with --temperature / --top-k / --top-p / --seed");
        return 2;
    }
    if (sampled && temperature <= 0.0 && (top_k > 0 || top_p < 1.0))
        fprintf(stderr, "packlm generate: note: temperature 0 is greedy; --top-k / --top-p have no effect\n");
    cli_session ss;
    cli_input in;
    plm_error err = {0};
    if (cli_open_job(&ss, &in, &o, cmd, 1)) return 1;
    char **why = calloc((size_t)in.n, sizeof *why); /* per sequence: the rejection message, or NULL */
    int64_t *ids = malloc((size_t)in.n * sizeof *ids);
    plm_generator *g = NULL;
    plm_generator_params gp = {o.budget, (int32_t)max_seqs};
    int rc = 0, n_failed = 0;
    if (!why || !ids) rc = cli_error(cmd, "out of memory");
    else if (plm_generator_new(&g, ss.model, ss.ctx, &gp, &err)) rc = cli_error(cmd, "%s", err.msg);
    plm_sampling sp = {(float)temperature, (int32_t)top_k, (float)top_p, (uint64_t)seed};
    int64_t prompt_total = 0;
    for (int i = 0; !rc && i < in.n; i++) {
        const cli_seq *q = &in.seq[i];
        ids[i] = -1;
        if (q->error) {
            why[i] = strdup(q->error);
        } else {
            plm_request rq = {q->tok, q->n, (int32_t)max_new, sp, i, ignore_eos, 0, 0};
            if (plm_generator_add(g, &ids[i], &rq, &err)) {
                if (err.code == PLM_ERR_NOMEM) rc = cli_error(cmd, "%s", err.msg);
                size_t l = strlen(err.msg) + 32;
                why[i] = malloc(l);
                if (why[i]) snprintf(why[i], l, "line %d: %s", q->line, err.msg);
            } else {
                prompt_total += q->n;
            }
        }
        if (why[i]) {
            fprintf(stderr, "packlm generate: error: %s\n", why[i]);
            n_failed++;
        }
    }
    cli_progress prog;
    cli_progress_start(&prog, "generate", prompt_total + (int64_t)(in.n - n_failed) * max_new);
    double t0 = cli_now(), t_prefill = 0, t_decode = 0;
    int64_t n_prefill = 0, n_decode = 0, n_new = 0;
    while (!rc && plm_generator_pending(g) > 0) {
        plm_gen_step_info inf;
        double ts = cli_now();
        if (plm_generator_step(g, &inf, &err)) {
            rc = cli_error(cmd, "%s", err.msg);
            break;
        }
        double dt = cli_now() - ts;
        if (inf.prompt_tokens > 0) {
            t_prefill += dt;
            n_prefill += inf.prompt_tokens;
        } else {
            t_decode += dt;
            n_decode += inf.new_tokens;
        }
        n_new += inf.new_tokens;
        cli_progress_add(&prog, inf.prompt_tokens + inf.new_tokens);
    }
    cli_progress_end(&prog);
    double el = cli_now() - t0;
    char *text = NULL;
    size_t tlen = 0;
    FILE *mem = rc ? NULL : open_memstream(&text, &tlen);
    for (int i = 0; mem && i < in.n; i++) {
        if (why[i]) {
            fprintf(mem, "error: %s\n", why[i]);
            continue;
        }
        const int32_t *t;
        int64_t n;
        plm_generator_result(g, ids[i], &t, &n);
        if (in.seq[i].from_text) {
            if (print_text_line(mem, &ss, i, t, n, &err)) rc = cli_error(cmd, "%s", err.msg);
            continue;
        }
        for (int64_t j = 0; j < n; j++) fprintf(mem, j ? " %d" : "%d", t[j]);
        fputc('\n', mem);
    }
    if (mem) fclose(mem);
    if (!rc) rc = cli_write_output(cmd, o.out, text, tlen);
    if (!rc) {
        fprintf(stderr,
                "generate: %d sequences (%d failed), %lld prompt + %lld new tokens in %.2f s; prefill %.1f tokens/s "
                "(%lld tokens, %.2f s), decode %.1f tokens/s (%lld tokens, %.2f s)\n",
                in.n, n_failed, (long long)prompt_total, (long long)n_new, el,
                t_prefill > 0 ? (double)n_prefill / t_prefill : 0.0, (long long)n_prefill, t_prefill,
                t_decode > 0 ? (double)n_decode / t_decode : 0.0, (long long)n_decode, t_decode);
        if (n_failed) rc = 1;
    }
    free(text);
    for (int i = 0; why && i < in.n; i++) free(why[i]);
    free(why);
    free(ids);
    plm_generator_free(g);
    cli_input_free(&in);
    cli_session_close(&ss);
    return rc;
}
