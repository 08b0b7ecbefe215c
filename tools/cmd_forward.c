/* packlm forward: the logits of every token, as a float32 .npy [total tokens, vocab]. */
#include <stdio.h>
#include <string.h>

#include "cli_common.h"
#include "cmds.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: packlm forward --model DIR --input FILE --out OUT.npy [--max-batch-tokens N] [--threads N]\n"
            "                       [--device cpu|cuda[:N]] [--batch-invariant] [--bf16-single-pass]\n"
            "                       [--weights stored|int8[,OPTIONS]]\n"
            "\n"
            "Writes the logits of every input token, float32 [total tokens, vocab], sequences in input order.\n"
            "  --model DIR             Hugging Face Qwen3.5 checkpoint directory\n"
            "  --input FILE            one sequence per line (token ids), or JSONL lines with \"input_ids\"\n"
            "                          (and optional \"position_ids\": a packed row) or \"text\"\n"
            "  --out OUT.npy           output file (written atomically)\n"
            "  --max-batch-tokens N    at most N tokens per packed step (default 512); the result does not\n"
            "                          depend on N\n"
            "  --threads N             threads (default: all cores)\n"
            CLI_CTX_OPTS_HELP);
}

typedef struct {
    plm_npy_writer *w;
    plm_error *err;
    int64_t next;
} fwd_sink;

static int write_rows(void *user, int64_t first, int32_t n, const float *block) {
    fwd_sink *s = user;
    if (first != s->next) { /* rows arrive in input order; anything else is a bug */
        snprintf(s->err->msg, sizeof s->err->msg, "internal: rows out of order (%lld, expected %lld)",
                 (long long)first, (long long)s->next);
        s->err->code = PLM_ERR_INTERNAL;
        return 1;
    }
    if (plm_npy_writer_write(s->w, block, n, s->err)) return 1;
    s->next += n;
    return 0;
}

int cmd_forward(int argc, char **argv) {
    const char *cmd = "forward";
    cli_opts o = {.budget = 512};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_shared_opt(&o, cmd, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else { cli_error(cmd, "unknown or incomplete option '%s'", a); usage(stderr); return 2; }
    }
    if (!o.model || !o.input || !o.out) {
        cli_error(cmd, "--model, --input and --out are required");
        usage(stderr);
        return 2;
    }
    cli_session ss;
    cli_input in;
    plm_error err = {0};
    if (cli_open_job(&ss, &in, &o, cmd, 0)) return 1;
    fwd_sink sink = {NULL, &err, 0};
    sink.w = plm_npy_writer_open(o.out, in.total, ss.info->vocab_size, &err);
    int rc = 0;
    if (!sink.w) rc = cli_error(cmd, "%s", err.msg);
    cli_progress prog;
    cli_progress_start(&prog, "forward", in.total);
    if (!rc && cli_run(ss.ctx, ss.model, &in, o.budget, ss.invariant, write_rows, &sink, NULL, &prog, &err)) {
        plm_npy_writer_abort(sink.w);
        rc = cli_error(cmd, "%s", err.msg);
    } else if (!rc && plm_npy_writer_commit(sink.w, &err)) {
        rc = cli_error(cmd, "%s", err.msg);
    }
    cli_progress_end(&prog);
    if (!rc)
        fprintf(stderr, "forward: %d sequences, %lld tokens, logits [%lld, %d] -> %s\n", in.n, (long long)in.total,
                (long long)in.total, ss.info->vocab_size, o.out);
    cli_input_free(&in);
    cli_session_close(&ss);
    return rc;
}
