/* packlm score: summed log-probability and perplexity of every input sequence, as JSONL. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"
#include "cmds.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: packlm score --model DIR --input FILE [--out FILE.jsonl] [--max-batch-tokens N] [--threads N]\n"
            "                       [--device cpu|cuda[:N]] [--batch-invariant] [--bf16-single-pass]\n"
            "                       [--weights stored|int8[,OPTIONS]]\n"
            "\n"
            "One JSONL line per input sequence, in input order:\n"
            "  {\"index\": i, \"tokens\": n, \"logprob\": s, \"ppl\": p}\n"
            "n = predicted tokens (length - 1), s = sum of natural-log probabilities of each token given its\n"
            "prefix, p = exp(-s / n) (null when n = 0). Logits are computed block by block, never for a whole\n"
            "step at once.\n"
            "  --model DIR             Hugging Face Qwen3.5 checkpoint directory\n"
            "  --input FILE            token-id lines or JSONL (see packlm forward --help)\n"
            "  --out FILE.jsonl        output file, written atomically (default: stdout)\n"
            "  --max-batch-tokens N    at most N tokens per packed step (default 2048)\n"
            "  --threads N             threads (default: all cores)\n"
            CLI_CTX_OPTS_HELP);
}

int cmd_score(int argc, char **argv) {
    const char *cmd = "score";
    cli_opts o = {.budget = 2048};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_shared_opt(&o, cmd, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else { cli_error(cmd, "unknown or incomplete option '%s'", a); usage(stderr); return 2; }
    }
    if (!o.model || !o.input) {
        cli_error(cmd, "--model and --input are required");
        usage(stderr);
        return 2;
    }
    cli_session ss;
    cli_input in;
    plm_error err = {0};
    if (cli_open_job(&ss, &in, &o, cmd, 0)) return 1;
    float *lp = calloc((size_t)in.total, sizeof *lp);
    int rc = 0;
    cli_progress prog;
    cli_progress_start(&prog, "score", in.total);
    double t0 = cli_now();
    if (!lp) rc = cli_error(cmd, "out of memory");
    else if (cli_run(ss.ctx, ss.model, &in, o.budget, ss.invariant, NULL, NULL, lp, &prog, &err)) rc = cli_error(cmd, "%s", err.msg);
    cli_progress_end(&prog);
    double el = cli_now() - t0;
    /* format everything, then write it in one go (atomically for --out) */
    char *text = NULL;
    size_t tlen = 0;
    FILE *mem = rc ? NULL : open_memstream(&text, &tlen);
    int64_t off = 0;
    for (int i = 0; mem && i < in.n; i++) {
        double s = 0;
        int64_t n = in.seq[i].n - 1;
        for (int64_t j = 0; j < n; j++) s += lp[off + j];
        off += in.seq[i].n;
        if (n > 0) fprintf(mem, "{\"index\": %d, \"tokens\": %lld, \"logprob\": %.6f, \"ppl\": %.6g}\n", i, (long long)n, s, exp(-s / (double)n));
        else fprintf(mem, "{\"index\": %d, \"tokens\": 0, \"logprob\": 0.0, \"ppl\": null}\n", i);
    }
    if (mem) fclose(mem);
    if (!rc) rc = cli_write_output(cmd, o.out, text, tlen);
    if (!rc)
        fprintf(stderr, "score: %d sequences, %lld tokens in %.2f s (%.1f tokens/s)\n", in.n, (long long)in.total,
                el, el > 0 ? (double)in.total / el : 0.0);
    free(text);
    free(lp);
    cli_input_free(&in);
    cli_session_close(&ss);
    return rc;
}
