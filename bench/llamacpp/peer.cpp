// llama.cpp's side of packlm's peer cases (packlm bench --only peer), timed through libllama so that
// both tools run exactly the same work: (1) a prompt of 512 tokens in one batch, logits of its last
// token only (llama-bench -p 512); (2) one sequence: a 32-token prompt, then 31 decode steps of one
// token, greedy (llama-bench -n 32 times the steps the same way, without the prompt); (3) 16
// sequences: 16 prompts of 32 tokens in one batch, then 31 decode steps of 16 tokens, greedy,
// aggregate tokens/s of the decode steps (llama-batched-bench -npp 32 -ntg 32 -npl 16, S_TG).
// Prompts are pseudo-random ids (the same mix as packlm's bench). Each round prints one JSON line.
// usage: llama-peer MODEL.gguf THREADS ROUNDS
// build (libllama and ggml built as bench/llamacpp/README.md says):
//   g++ -O2 -march=native -std=c++17 -I$SRC/include -I$SRC/ggml/include peer.cpp -o llama-peer \
//       $SRC/build/src/libllama.a $SRC/build/ggml/src/libggml.a $SRC/build/ggml/src/libggml-cpu.a \
//       $SRC/build/ggml/src/libggml-base.a -fopenmp -lpthread -ldl
#include "llama.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static void quiet_log(ggml_log_level level, const char * text, void *) {
    if (level >= GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

static int argmax(const float * l, int V) {
    int b = 0;
    for (int v = 1; v < V; v++) if (l[v] > l[b]) b = v;
    return b;
}

// n sequences with prompts of plen tokens in one batch (logits at each last token), then
// steps decode steps of n tokens; returns {prompt seconds, decode seconds}
static bool run(llama_context * ctx, int V, int n, int plen, int steps, int salt, double * tp, double * td) {
    llama_memory_clear(llama_get_memory(ctx), true);
    llama_batch batch = llama_batch_init(n * plen > n ? n * plen : n, 0, 1);
    std::vector<int> last(n), pos(n);
    batch.n_tokens = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < plen; j++) {
            const int k = batch.n_tokens++;
            batch.token[k] = (llama_token) (mix((uint64_t) (i + salt) * 1000003u + (uint64_t) j) % (uint64_t) V);
            batch.pos[k] = j;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = i;
            batch.logits[k] = j == plen - 1;
        }
        pos[i] = plen;
    }
    const double t0 = now_s();
    if (llama_decode(ctx, batch)) { llama_batch_free(batch); return false; }
    for (int i = 0; i < n; i++) last[i] = argmax(llama_get_logits_ith(ctx, (i + 1) * plen - 1), V);
    const double t1 = now_s();
    for (int s = 0; s < steps; s++) {
        batch.n_tokens = 0;
        for (int i = 0; i < n; i++) {
            const int k = batch.n_tokens++;
            batch.token[k] = last[i];
            batch.pos[k] = pos[i]++;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = i;
            batch.logits[k] = 1;
        }
        if (llama_decode(ctx, batch)) { llama_batch_free(batch); return false; }
        for (int i = 0; i < n; i++) last[i] = argmax(llama_get_logits_ith(ctx, i), V);
    }
    const double t2 = now_s();
    *tp = t1 - t0;
    *td = t2 - t1;
    llama_batch_free(batch);
    return true;
}

int main(int argc, char ** argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s MODEL THREADS ROUNDS\n", argv[0]); return 1; }
    const int n_threads = atoi(argv[2]), rounds = atoi(argv[3]);
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "load failed\n"); return 1; }
    const int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 4096;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_seq_max = 16;
    cp.kv_unified = true; // one KV buffer for all sequences (a 512-token prompt fits)
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "context failed\n"); return 1; }
    double tp, td;
    if (!run(ctx, V, 1, 32, 2, 999, &tp, &td)) { fprintf(stderr, "warm-up failed\n"); return 1; }  // pages weights in
    for (int r = 0; r < rounds; r++) {
        double p512, d1p, d1, d16p, d16;
        if (!run(ctx, V, 1, 512, 0, r, &p512, &td) || !run(ctx, V, 1, 32, 31, r, &d1p, &d1) ||
            !run(ctx, V, 16, 32, 31, r, &d16p, &d16)) {
            fprintf(stderr, "decode failed\n");
            return 1;
        }
        printf("{\"prompt\": %.3f, \"decode1\": %.3f, \"decode16\": %.3f}\n", 512 / p512, 31 / d1, 16 * 31 / d16);
        fflush(stdout);
    }
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
