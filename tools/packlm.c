/* packlm: the command-line tool, a thin user of the library (include/packlm.h). */
#include <stdio.h>
#include <string.h>

#include "cmds.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: packlm <command> [options]   (packlm <command> --help for its options)\n"
            "\n"
            "Packed-batch inference for Qwen3.5 hybrid linear-attention models (dense and MoE).\n"
            "\n"
            "commands:\n"
            "  forward    logits of every token of every input sequence, as a .npy file\n"
            "  score      log-probability and perplexity of each input sequence (JSONL)\n"
            "  generate   continue prompts: greedy or sampled, continuous batching\n"
            "  tokenize   text to token ids and back with the model's tokenizer.json\n"
            "  serve      an OpenAI-compatible HTTP server (completions, chat) on continuous batching\n"
            "  bench      speed on a random-weight Qwen3.5-0.8B-shaped model\n"
            "  quantize   write a checkpoint with int8 weights (loads with --model like any other)\n");
}

typedef struct {
    const char *name;
    int (*fn)(int, char **);
} command;

int main(int argc, char **argv) {
    static const command cmds[] = {
        {"forward", cmd_forward},
        {"score", cmd_score},
        {"tokenize", cmd_tokenize},
        {"generate", cmd_generate},
        {"serve", cmd_serve},
        {"bench", cmd_bench},
        {"quantize", cmd_quantize},
    };
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "packlm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
