/* packlm forward: the logits of every token, as a float32 .npy [total tokens, vocab]. */
#include <stdio.h>
#include <string.h>

#include "cli_common.h"
#include "cmds.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: packlm forward --model DIR --input FILE --out OUT.npy [--max-batch-tokens N] [--threads N]\n"
            "\n"
            "Writes the logits of every input token, float32 [total tokens, vocab], sequences in input order.\n"
            "  --model DIR             Hugging Face Qwen3.5 checkpoint directory\n"
            "  --input FILE            one sequence per line (token ids), or JSONL lines with \"input_ids\"\n"
            "                          (and optional \"position_ids\": a packed row) or \"text\"\n"
            "  --out OUT.npy           output file (written atomically)\n"
            "  --max-batch-tokens N    at most N tokens per packed step (default 512); the result does not\n"
            "                          depend on N\n"
            "  --threads N             threads (default: all cores)\n");
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
    const char *cmd = "forward", *model = NULL, *input = NULL, *outp = NULL;
    int64_t budget = 512, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--model") && v) model = argv[++i];
        else if (!strcmp(a, "--input") && v) input = argv[++i];
        else if (!strcmp(a, "--out") && v) outp = argv[++i];
        else if (!strcmp(a, "--max-batch-tokens") && v) { if (cli_parse_int(cmd, a, argv[++i], 1, 1 << 30, &budget)) return 2; }
        else if (!strcmp(a, "--threads") && v) { if (cli_parse_int(cmd, a, argv[++i], 1, 1024, &threads)) return 2; }
        else { cli_error(cmd, "unknown or incomplete option '%s'", a); usage(stderr); return 2; }
    }
    if (!model || !input || !outp) {
        cli_error(cmd, "--model, --input and --out are required");
        usage(stderr);
        return 2;
    }
    cli_session ss;
    plm_error err = {0};
    if (cli_session_open(&ss, model, (int)threads, &err)) return cli_error(cmd, "%s", err.msg);
    cli_input in;
    if (cli_read_input(&in, input, ss.info->vocab_size, ss.enc, ss.enc_user, &err)) {
        cli_session_close(&ss);
        return cli_error(cmd, "%s", err.msg);
    }
    fwd_sink sink = {NULL, &err, 0};
    sink.w = plm_npy_writer_open(outp, in.total, ss.info->vocab_size, &err);
    int rc = 0;
    if (!sink.w) rc = cli_error(cmd, "%s", err.msg);
    cli_progress prog;
    cli_progress_start(&prog, "forward", in.total);
    if (!rc && cli_run(ss.ctx, ss.model, &in, budget, write_rows, &sink, NULL, &prog, &err)) {
        plm_npy_writer_abort(sink.w);
        rc = cli_error(cmd, "%s", err.msg);
    } else if (!rc && plm_npy_writer_commit(sink.w, &err)) {
        rc = cli_error(cmd, "%s", err.msg);
    }
    cli_progress_end(&prog);
    if (!rc)
        fprintf(stderr, "forward: %d sequences, %lld tokens, logits [%lld, %d] -> %s\n", in.n, (long long)in.total,
                (long long)in.total, ss.info->vocab_size, outp);
    cli_input_free(&in);
    cli_session_close(&ss);
    return rc;
}
