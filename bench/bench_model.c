/* The benchmark checkpoint: random weights in the real Qwen3.5-0.8B text shape (hidden 1024, 24
 * layers as 3 linear : 1 attention, 16 k/v linear heads of 128, 8 query / 2 kv heads of 256, MLP
 * 3584, vocab 248320, tied embeddings, BF16), with a config.json as transformers writes it. Built
 * once into build/bench-model-0.8b/ (or build/bench-model-quick/, a much smaller shape, for
 * --quick) and reused while its config.json and model.safetensors are there. The build runs in a
 * child process so that the writer's copy of the tensors does not count in the benchmark's peak
 * resident memory. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "io/safetensors.h"
#include "packlm.h"

typedef struct {
    const char *dir;
    int hidden, layers, lin_kh, lin_vh, lin_kd, lin_vd, nh, nkv, hd, inter, vocab, conv;
} shape;

static const shape FULL = {"build/bench-model-0.8b", 1024, 24, 16, 16, 128, 128, 8, 2, 256, 3584, 248320, 4};
static const shape QUICK = {"build/bench-model-quick", 256, 4, 2, 4, 64, 64, 4, 2, 64, 512, 4096, 4};

static uint64_t rng_s = 0x62656e63686d6f64ull;
static inline uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng_s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline float unif(void) { return (float)(rnd() >> 40) * (1.0f / 16777216.0f); } /* [0, 1) */

/* kind: 0 uniform(-a, a) matrix, 1 constant a */
static int add(plm_st_writer *w, const char *name, plm_dtype dt, int ndim, const int64_t *shp, int kind, float a) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shp[i];
    size_t es = plm_dtype_size(dt);
    void *buf = malloc(n * es);
    if (!buf) return 1;
    for (size_t i = 0; i < n; i++) {
        float v = kind == 0 ? a * (2.0f * unif() - 1.0f) : a;
        if (dt == PLM_DT_BF16) ((uint16_t *)buf)[i] = plm_f32_to_bf16(v);
        else ((float *)buf)[i] = v;
    }
    plm_error err = {0};
    plm_status st = plm_st_writer_add(w, name, dt, ndim, shp, buf, &err);
    free(buf);
    if (st) fprintf(stderr, "packlm bench: %s\n", err.msg);
    return st != PLM_OK;
}

static int write_config(const shape *s) {
    char path[512], lt[2048];
    size_t n = 0;
    for (int i = 0; i < s->layers; i++)
        n += (size_t)snprintf(lt + n, sizeof lt - n, "%s\n    \"%s\"", i ? "," : "",
                              (i % 4 == 3) ? "full_attention" : "linear_attention");
    char cfg[8192];
    int len = snprintf(cfg, sizeof cfg,
                       "{\n"
                       "  \"architectures\": [\n    \"Qwen3_5ForCausalLM\"\n  ],\n"
                       "  \"attention_bias\": false,\n  \"attention_dropout\": 0.0,\n"
                       "  \"bos_token_id\": null,\n  \"dtype\": \"bfloat16\",\n  \"eos_token_id\": %d,\n"
                       "  \"full_attention_interval\": 4,\n  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n"
                       "  \"hidden_size\": %d,\n  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n"
                       "  \"layer_types\": [%s\n  ],\n"
                       "  \"linear_conv_kernel_dim\": %d,\n  \"linear_key_head_dim\": %d,\n"
                       "  \"linear_num_key_heads\": %d,\n  \"linear_num_value_heads\": %d,\n"
                       "  \"linear_value_head_dim\": %d,\n  \"max_position_embeddings\": 262144,\n"
                       "  \"model_type\": \"qwen3_5_text\",\n  \"num_attention_heads\": %d,\n"
                       "  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n  \"pad_token_id\": null,\n"
                       "  \"partial_rotary_factor\": 0.25,\n  \"rms_norm_eps\": 1e-06,\n"
                       "  \"rope_parameters\": {\n    \"partial_rotary_factor\": 0.25,\n"
                       "    \"rope_theta\": 10000000,\n    \"rope_type\": \"default\"\n  },\n"
                       "  \"tie_word_embeddings\": true,\n  \"transformers_version\": \"5.17.0\",\n"
                       "  \"use_cache\": true,\n  \"vocab_size\": %d\n}\n",
                       s->vocab - 274 /* 248046 in the full shape, always inside the vocabulary */, s->hd,
                       s->hidden, s->inter, lt, s->conv, s->lin_kd, s->lin_kh, s->lin_vh, s->lin_vd, s->nh,
                       s->layers, s->nkv, s->vocab);
    snprintf(path, sizeof path, "%s/config.json", s->dir);
    plm_error err = {0};
    if (plm_write_file_atomic(path, cfg, (size_t)len, &err)) {
        fprintf(stderr, "packlm bench: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static int build(const shape *s) {
    const int64_t H = s->hidden, V = s->vocab, I = s->inter;
    const int64_t qk = (int64_t)s->lin_kh * s->lin_kd, vv = (int64_t)s->lin_vh * s->lin_vd, cd = 2 * qk + vv;
    const float aw = 0.03f; /* ~ N(0, 0.02) in scale */
    plm_st_writer *w = plm_st_writer_new();
    char nm[256];
    int bad = 0;
#define SH(...) ((const int64_t[]){__VA_ARGS__})
    bad |= add(w, "model.embed_tokens.weight", PLM_DT_BF16, 2, SH(V, H), 0, aw);
    for (int l = 0; l < s->layers && !bad; l++) {
#define T(suffix, dt, nd, shp, kind, a) \
    (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix), bad |= add(w, nm, dt, nd, shp, kind, a))
        T("input_layernorm.weight", PLM_DT_BF16, 1, SH(H), 1, 0.0f);
        T("post_attention_layernorm.weight", PLM_DT_BF16, 1, SH(H), 1, 0.0f);
        T("mlp.gate_proj.weight", PLM_DT_BF16, 2, SH(I, H), 0, aw);
        T("mlp.up_proj.weight", PLM_DT_BF16, 2, SH(I, H), 0, aw);
        T("mlp.down_proj.weight", PLM_DT_BF16, 2, SH(H, I), 0, aw);
        if (l % 4 == 3) {
            const int64_t nh = s->nh, nkv = s->nkv, hd = s->hd;
            T("self_attn.q_proj.weight", PLM_DT_BF16, 2, SH(nh * 2 * hd, H), 0, aw);
            T("self_attn.k_proj.weight", PLM_DT_BF16, 2, SH(nkv * hd, H), 0, aw);
            T("self_attn.v_proj.weight", PLM_DT_BF16, 2, SH(nkv * hd, H), 0, aw);
            T("self_attn.o_proj.weight", PLM_DT_BF16, 2, SH(H, nh * hd), 0, aw);
            T("self_attn.q_norm.weight", PLM_DT_BF16, 1, SH(hd), 1, 0.0f);
            T("self_attn.k_norm.weight", PLM_DT_BF16, 1, SH(hd), 1, 0.0f);
        } else {
            T("linear_attn.in_proj_qkv.weight", PLM_DT_BF16, 2, SH(cd, H), 0, aw);
            T("linear_attn.in_proj_z.weight", PLM_DT_BF16, 2, SH(vv, H), 0, aw);
            T("linear_attn.in_proj_b.weight", PLM_DT_BF16, 2, SH(s->lin_vh, H), 0, aw);
            T("linear_attn.in_proj_a.weight", PLM_DT_BF16, 2, SH(s->lin_vh, H), 0, aw);
            T("linear_attn.out_proj.weight", PLM_DT_BF16, 2, SH(H, vv), 0, aw);
            T("linear_attn.conv1d.weight", PLM_DT_BF16, 3, SH(cd, 1, s->conv), 0, 0.5f);
            T("linear_attn.A_log", PLM_DT_F32, 1, SH(s->lin_vh), 1, 0.5f);
            T("linear_attn.dt_bias", PLM_DT_BF16, 1, SH(s->lin_vh), 1, 1.0f);
            T("linear_attn.norm.weight", PLM_DT_BF16, 1, SH(s->lin_vd), 1, 1.0f);
        }
#undef T
    }
    bad |= add(w, "model.norm.weight", PLM_DT_BF16, 1, SH(H), 1, 0.0f);
#undef SH
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", s->dir);
    plm_error err = {0};
    if (!bad && plm_st_writer_save(w, path, &err)) {
        fprintf(stderr, "packlm bench: %s\n", err.msg);
        bad = 1;
    }
    plm_st_writer_free(w);
    return bad || write_config(s);
}

static int exists(const char *dir, const char *file) {
    char p[512];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return stat(p, &sb) == 0 && sb.st_size > 0;
}

int bench_model_prepare(char *dir, size_t dir_len, int quick) {
    const shape *s = quick ? &QUICK : &FULL;
    snprintf(dir, dir_len, "%s", s->dir);
    /* config.json is rewritten each time (cheap; an older build may have written an outdated one) */
    if (exists(s->dir, "config.json") && exists(s->dir, "model.safetensors")) return write_config(s);
    mkdir("build", 0777);
    if (mkdir(s->dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "packlm bench: cannot create %s: %s\n", s->dir, strerror(errno));
        return 1;
    }
    printf("building the benchmark checkpoint in %s (once) ...\n", s->dir);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return build(s);
    if (pid == 0) _exit(build(s) ? 1 : 0);
    int status = 0;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "packlm bench: building the benchmark checkpoint failed\n");
        return 1;
    }
    return 0;
}
