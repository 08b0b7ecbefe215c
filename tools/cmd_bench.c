/* packlm bench: speed on a random-weight Qwen3.5-0.8B-shaped checkpoint (built once, cached under
 * build/), or on an existing checkpoint with --model. Prints readable figures and, with --json,
 * writes them as one JSON object. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../bench/bench.h"
#include "cli_common.h"
#include "cmds.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: packlm bench [--threads N] [--json FILE] [--model DIR] [--quick]\n"
            "                    [--only ceilings|prefill|decode|tokenizer|mixers|peer|accuracy]\n"
            "                    [--device cpu|cuda[:N]]\n"
            "                    [--weights W] [--bf16-single-pass] [--rounds N]\n"
            "  Measures, on this machine: its ceilings (fp32 FMA, BF16 and int8 dot-product peaks from\n"
            "  register-only loops, streaming the weights), the OpenBLAS sgemm rate, packed score throughput,\n"
            "  per-segment overhead, chunked vs recurrent delta rule, peak memory, decode and tokenizer speed;\n"
            "  each throughput also as a fraction of the ceiling that bounds it.\n"
            "  --threads N   threads (default: all cores)\n"
            "  --json FILE   also write the figures as JSON\n"
            "  --model DIR   use this checkpoint instead of the random-weight 0.8B-shaped one\n"
            "                (built once into build/bench-model-0.8b/)\n"
            "  --quick       a small model and sizes: a smoke run of a few seconds\n"
            "  --weights W   stored (default), or int8 with options (packlm score --help)\n"
            "  --bf16-single-pass  BF16 weights times activations rounded once to BF16 (plm_ctx_params)\n"
            "  --rounds N    rounds of the peer section (default 3)\n"
            "  --only S      run one section: ceilings, prefill (sgemm, score, segments, delta rule, memory),\n"
            "                decode, tokenizer, mixers (with --device cuda: the delta rule, conv1d and GEMV alone), or\n"
            "                peer (llama.cpp's cases: prompt 512 with last-token logits, decode 1 and 16\n"
            "                sequences; best of --rounds and spread), or accuracy (each int8 mode against\n"
            "                the stored weights: per-token KL, top-1 agreement, perplexity change)\n"
            "  --device D    cpu (default), or cuda[:N]: the GPU's BF16 GEMM and copy ceilings, packed score\n"
            "                and prefill of 12,680 tokens in 32 long-tailed sequences, 512 x 64 against\n"
            "                1 x 32768, device memory, and decode at 1, 16 and 256 sequences\n");
}

int cmd_bench(int argc, char **argv) {
    const char *json = NULL, *model = NULL, *only = NULL, *device = "cpu";
    int64_t threads = 0, rounds = 3;
    int quick = 0, single_pass = 0;
    const char *weights = "stored";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            quick = 1;
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            if (cli_parse_int("bench", a, argv[++i], 1, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--json") && i + 1 < argc) {
            json = argv[++i];
        } else if (!strcmp(a, "--only") && i + 1 < argc) {
            only = argv[++i];
            if (strcmp(only, "ceilings") && strcmp(only, "prefill") && strcmp(only, "decode") &&
                strcmp(only, "tokenizer") && strcmp(only, "mixers") && strcmp(only, "peer") && strcmp(only, "accuracy"))
                return cli_error("bench",
                                 "--only expects ceilings, prefill, decode, tokenizer, mixers, peer or accuracy, got '%s'",
                                 only) + 1;
        } else if (!strcmp(a, "--weights") && i + 1 < argc) {
            if (cli_parse_weights("bench", argv[++i])) return 2;
            weights = argv[i];
        } else if (!strcmp(a, "--bf16-single-pass")) {
            single_pass = 1;
        } else if (!strcmp(a, "--rounds") && i + 1 < argc) {
            if (cli_parse_int("bench", a, argv[++i], 1, 100, &rounds)) return 2;
        } else if (!strcmp(a, "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(a, "--device") && i + 1 < argc) {
            device = argv[++i];
            if (strcmp(device, "cpu") && strcmp(device, "cuda") && strncmp(device, "cuda:", 5))
                return cli_error("bench", "--device expects cpu, cuda or cuda:N, got '%s'", device) + 1;
        } else {
            usage(stderr);
            return cli_error("bench", "unknown or incomplete option '%s'", a) + 1;
        }
    }
    static bench_ctx b;
    memset(&b, 0, sizeof b);
    char dir[512];
    if (model) {
        snprintf(dir, sizeof dir, "%s", model);
    } else if (bench_model_prepare(dir, sizeof dir, quick)) {
        return cli_error("bench", "could not prepare the benchmark checkpoint");
    }
    b.model_dir = dir;
    b.quick = quick;
    b.device = device;
    b.weights = weights;
    b.single_pass = single_pass;
    const int gpu = strcmp(device, "cpu") != 0;
    if (threads <= 0) threads = sysconf(_SC_NPROCESSORS_ONLN);
    b.n_threads = threads > 0 ? (int)threads : 1;
    printf("packlm bench: model %s, %s, %d threads%s\n", dir, device, b.n_threads, quick ? " (quick)" : "");
    int rc = 0;
#define RUN(name) ((!only && strcmp(name, "peer") && strcmp(name, "accuracy")) || (only && !strcmp(only, name)))
    /* the ceilings first: the CPU sections report their figures against them */
    if (!gpu && (RUN("ceilings") || (only && strcmp(only, "tokenizer"))) && bench_ceilings(&b)) rc = 1;
    if (RUN("prefill") && gpu && bench_cuda(&b)) {
        fprintf(stderr, "packlm bench: the CUDA prefill section failed\n");
        rc = 1;
    }
    if (RUN("prefill") && !gpu && bench_prefill(&b)) {
        fprintf(stderr, "packlm bench: the prefill section failed\n");
        rc = 1;
    }
    if (only && !strcmp(only, "mixers")) {
        if (!gpu) return cli_error("bench", "--only mixers times the GPU's kernels: it needs --device cuda") + 1;
        if (bench_cuda_mixers(&b)) rc = 1;
    }
    if (RUN("decode") && bench_decode(&b)) printf("decode: not available\n");
    if (only && !strcmp(only, "peer") && bench_peer(&b, (int)rounds)) rc = 1;
    if (only && !strcmp(only, "accuracy")) {
        if (gpu) return cli_error("bench", "--only accuracy compares the CPU's int8 weights: it runs on the CPU") + 1;
        if (bench_accuracy(&b)) rc = 1;
    }
    double mbps = 0;
    if (RUN("tokenizer") && !gpu) {
        printf("tokenizer\n");
        if (bench_tokenizer("tests/data/tokenizer-qwen3/tokenizer.json", &mbps) == 0)
            bench_report(&b, "tokenizer_mb_per_s", "tokenizer encoding, 1 thread", mbps, "MB/s");
        else
            printf("  tokenizer: not available\n");
    }
#undef RUN
    if (json && bench_write_json(&b, json)) rc = 1;
    return rc;
}
