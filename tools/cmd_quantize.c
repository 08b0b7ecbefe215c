/* packlm quantize: a checkpoint with int8 weights, written once (plm_model_save_int8), so that the
 * conversion is not paid at every start; the output directory loads with --model like any other. */
#include <stdio.h>
#include <string.h>

#include "cli_common.h"
#include "cmds.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: packlm quantize --model DIR --out DIR [--keep-head] [--linear] [--threads N]\n"
            "  Writes OUT/model.safetensors with the projection, MLP and expert matrices and lm_head in int8\n"
            "  (blocks of 32 along each row, one fp16 scale a block: NAME as I8 and NAME_scale as F16), every\n"
            "  other tensor as stored, and copies DIR's other files (config.json, tokenizer). The result runs\n"
            "  in int8 on the CPU with any command's --model.\n"
            "  --keep-head   keep lm_head (the embedding table when tied) as stored\n"
            "  --linear      the linear-attention projections (in_proj_qkv, in_proj_z, out_proj) in int8 too\n"
            "                (by default as stored: a fifth fewer bytes, about 4x the KL; --weights int8,linear)\n"
            "  --threads N   threads (default: all cores)\n");
}

int cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *out = NULL;
    int64_t threads = 0;
    int keep = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--keep-head")) {
            keep |= PLM_INT8_KEEP_HEAD;
        } else if (!strcmp(a, "--linear")) {
            keep |= PLM_INT8_LINEAR;
        } else if (!strcmp(a, "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(a, "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            if (cli_parse_int("quantize", a, argv[++i], 1, 1024, &threads)) return 2;
        } else {
            usage(stderr);
            return cli_error("quantize", "unknown or incomplete option '%s'", a) + 1;
        }
    }
    if (!model || !out) {
        usage(stderr);
        return cli_error("quantize", "--model and --out are required") + 1;
    }
    plm_error err = {0};
    plm_model *m = NULL;
    if (plm_model_open(&m, model, &err)) return cli_error("quantize", "%s", err.msg);
    double t0 = cli_now();
    plm_status st = plm_model_save_int8(m, out, keep, (int)threads, &err);
    plm_model_free(m);
    if (st) return cli_error("quantize", "%s", err.msg);
    fprintf(stderr, "quantize: wrote %s/model.safetensors in %.1f s\n", out, cli_now() - t0);
    return 0;
}
