/* libFuzzer target for the checkpoint loader: safetensors files (single or sharded with an index)
 * bound to a model, then one small packed step when the model opens, so that a header lie that
 * passes validation shows up as an out-of-bounds read under AddressSanitizer.
 *
 * Input: byte 0 picks the case: bit 0 = sharded, bit 1 = the MoE model (else the dense one).
 *   single:  the rest is model.safetensors;
 *   sharded: [u16 LE n][n bytes of model.safetensors.index.json][u32 LE m][m bytes of
 *            model-00001-of-00002.safetensors][the rest: model-00002-of-00002.safetensors]
 *            (lengths are clipped to what is there).
 * The config.json of each model is fixed (written at start-up by tests/synth.c from a fixed spec).
 *
 * Build and run: tests/fuzz_parsers.sh (brief, in the suite), scripts/fuzz-long.sh (a campaign).
 * PLM_FUZZ_SEED_DIR: write the seed inputs there at start-up and exit. */
#include "packlm.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "synth.h"

#include "fuzz_common.h"

static char g_dir[2][512]; /* [dense, moe] */

static void spec_of(synth_spec *s, int moe) {
    memset(s, 0, sizeof *s);
    plm_config *c = &s->c;
    c->vocab_size = 40;
    c->hidden_size = 8;
    c->n_layers = 2;
    c->layer_type[0] = PLM_LAYER_LINEAR;
    c->layer_type[1] = PLM_LAYER_ATTENTION;
    c->rms_eps = 1e-6f;
    c->tie_embeddings = moe;
    c->n_heads = 2;
    c->n_kv_heads = 1;
    c->head_dim = 4;
    c->rope_dim = 2;
    c->rope_theta = 10000.0;
    c->lin_k_heads = 1;
    c->lin_v_heads = 2;
    c->lin_k_dim = 3;
    c->lin_v_dim = 5;
    c->conv_kernel = 3;
    c->is_moe = moe;
    if (moe) {
        c->n_experts = 3;
        c->n_experts_per_tok = 2;
        c->moe_intermediate_size = 4;
        c->shared_intermediate_size = 4;
    } else {
        c->intermediate_size = 8;
    }
    s->dtype = PLM_DT_BF16;
    s->nested = moe;
    s->fused_experts = moe;
}

static const char *const SHARD[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};

static void clear_weights(const char *dir) {
    fz_unlink(dir, "model.safetensors");
    fz_unlink(dir, "model.safetensors.index.json");
    fz_unlink(dir, SHARD[0]);
    fz_unlink(dir, SHARD[1]);
}

static void run_step(const plm_model *m) {
    plm_error err;
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = 1;
    plm_ctx *c = NULL;
    plm_state *a = NULL, *b = NULL;
    const plm_model_info *in = plm_model_get_info(m);
    if (in->vocab_size != 40) __builtin_trap(); /* the config is fixed */
    if (plm_ctx_new(&c, m, &p, &err) == PLM_OK && plm_state_new(&a, m, &err) == PLM_OK &&
        plm_state_new(&b, m, &err) == PLM_OK) {
        int32_t tokens[3] = {1, 39, 7}, cu[3] = {0, 2, 3};
        plm_state *st[2] = {a, b};
        plm_step step = {3, tokens, NULL, 2, cu, st, PLM_MEM_HOST};
        float logits[3 * 40];
        plm_outputs out = {.logits = logits, .n_rows = 3};
        if (plm_step_run(c, &step, &out, &err) != PLM_OK) __builtin_trap(); /* an opened model must run */
    }
    plm_state_free(a);
    plm_state_free(b);
    plm_ctx_free(c);
}

/* ---------------------------------------------------------------- seeds */
static unsigned char *file_bytes(const char *dir, const char *name, size_t *n) {
    char p[1024];
    fz_path(p, sizeof p, dir, name);
    return fz_read(p, n);
}

/* The same tensors with another dtype and header padding (pad spaces after the JSON). */
static int rewrite(const plm_st_set *s, const char *path, plm_dtype dt, int first, int last) {
    plm_st_writer *w = plm_st_writer_new();
    plm_error err;
    int bad = 0;
    for (int i = first; i < last && !bad; i++) {
        const plm_st_tensor *t = plm_st_at(s, i);
        int64_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
        float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
        void *o = malloc((size_t)(n ? n : 1) * 4);
        plm_mat row = {t->data, t->dtype, 1, n};
        plm_mat_row(f, &row, 0);
        for (int64_t k = 0; k < n; k++) {
            if (dt == PLM_DT_F32) ((float *)o)[k] = f[k];
            else if (dt == PLM_DT_BF16) ((uint16_t *)o)[k] = plm_f32_to_bf16(f[k]);
            else ((uint16_t *)o)[k] = plm_f32_to_f16(f[k]);
        }
        bad = plm_st_writer_add(w, t->name, dt, t->ndim, t->shape, o, &err) != PLM_OK;
        free(f);
        free(o);
    }
    if (!bad) bad = plm_st_writer_save(w, path, &err) != PLM_OK;
    plm_st_writer_free(w);
    return bad;
}

/* Re-pads the header of a file to an odd length: every tensor misaligned. */
static unsigned char *odd_header(const unsigned char *b, size_t n, size_t *out_n) {
    uint64_t old = 0;
    for (int i = 7; i >= 0; i--) old = old << 8 | b[i];
    size_t j = (size_t)old, data = n - 8 - (size_t)old;
    while (j > 0 && b[8 + j - 1] == ' ') j--; /* the JSON ends at '}' */
    size_t hl = j % 2 ? j : j + 1;
    unsigned char *o = malloc(8 + hl + data);
    for (int i = 0; i < 8; i++) o[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(o + 8, b + 8, j);
    if (hl > j) o[8 + j] = ' ';
    memcpy(o + 8 + hl, b + 8 + old, data);
    *out_n = 8 + hl + data;
    return o;
}

static void write_seeds(const char *out) {
    static const char *const kind[2] = {"dense", "moe"};
    static const plm_dtype dts[3] = {PLM_DT_F32, PLM_DT_BF16, PLM_DT_F16};
    static const char *const dtn[3] = {"f32", "bf16", "f16"};
    for (int moe = 0; moe < 2; moe++) {
        char src[1024], tmp[1024], name[128];
        fz_path(src, sizeof src, g_dir[moe], "model.safetensors");
        plm_st_set *s = NULL;
        plm_error err;
        if (plm_st_open_file(&s, src, &err)) {
            fprintf(stderr, "fuzz_safetensors: %s\n", err.msg);
            exit(1);
        }
        fz_path(tmp, sizeof tmp, g_dir[moe], "seed.safetensors");
        for (int k = 0; k < 3; k++) {
            size_t n = 0;
            if (rewrite(s, tmp, dts[k], 0, plm_st_count(s))) exit(1);
            unsigned char *b = file_bytes(g_dir[moe], "seed.safetensors", &n);
            snprintf(name, sizeof name, "single-%s-%s", kind[moe], dtn[k]);
            fz_seed(out, name, moe << 1, b, n, NULL, 0);
            if (dts[k] == PLM_DT_BF16) {
                size_t on = 0;
                unsigned char *o = odd_header(b, n, &on);
                snprintf(name, sizeof name, "single-%s-bf16-odd-header", kind[moe]);
                fz_seed(out, name, moe << 1, o, on, NULL, 0);
                free(o);
            }
            free(b);
        }
        /* sharded: the first half of the tensors in shard 1, the rest in shard 2 (BF16) */
        int nt = plm_st_count(s), half = nt / 2;
        char idx[16384];
        size_t il = (size_t)snprintf(idx, sizeof idx, "{\"metadata\": {}, \"weight_map\": {");
        for (int i = 0; i < nt; i++)
            il += (size_t)snprintf(idx + il, sizeof idx - il, "%s\"%s\": \"%s\"", i ? ", " : "", plm_st_at(s, i)->name,
                                   SHARD[i >= half]);
        il += (size_t)snprintf(idx + il, sizeof idx - il, "}}\n");
        size_t n1 = 0, n2 = 0;
        if (rewrite(s, tmp, PLM_DT_BF16, 0, half)) exit(1);
        unsigned char *b1 = file_bytes(g_dir[moe], "seed.safetensors", &n1);
        if (rewrite(s, tmp, PLM_DT_BF16, half, nt)) exit(1);
        unsigned char *b2 = file_bytes(g_dir[moe], "seed.safetensors", &n2);
        size_t total = 2 + il + 4 + n1 + n2;
        unsigned char *q = malloc(total), *w = q;
        *w++ = (unsigned char)il;
        *w++ = (unsigned char)(il >> 8);
        memcpy(w, idx, il);
        w += il;
        for (int i = 0; i < 4; i++) *w++ = (unsigned char)(n1 >> (8 * i));
        memcpy(w, b1, n1);
        w += n1;
        memcpy(w, b2, n2);
        snprintf(name, sizeof name, "sharded-%s-bf16", kind[moe]);
        fz_seed(out, name, 1 | moe << 1, q, total, NULL, 0);
        free(q);
        free(b1);
        free(b2);
        fz_unlink(g_dir[moe], "seed.safetensors");
        plm_st_close(s);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    for (int moe = 0; moe < 2; moe++) {
        fz_mkdtemp(g_dir[moe], sizeof g_dir[moe], moe ? "st-moe" : "st-dense");
        synth_spec sp;
        spec_of(&sp, moe);
        tu_rng r = {0x5eed + (uint64_t)moe};
        plm_error err;
        if (synth_write(&sp, g_dir[moe], &r, &err) != PLM_OK) {
            fprintf(stderr, "fuzz_safetensors: cannot write the model in %s\n", g_dir[moe]);
            exit(1);
        }
        plm_model *m = NULL;
        if (plm_model_open(&m, g_dir[moe], &err)) {
            fprintf(stderr, "fuzz_safetensors: the fixed model does not open: %s\n", err.msg);
            exit(1);
        }
        plm_model_free(m);
    }
    const char *seeds = getenv("PLM_FUZZ_SEED_DIR");
    if (seeds) {
        write_seeds(seeds);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const int sharded = data[0] & 1, moe = (data[0] >> 1) & 1;
    const char *dir = g_dir[moe];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    clear_weights(dir);
    if (!sharded) {
        if (fz_write(dir, "model.safetensors", p, n)) return 0;
    } else {
        size_t il = n >= 2 ? (size_t)p[0] | (size_t)p[1] << 8 : 0;
        p += n >= 2 ? 2 : n;
        n -= n >= 2 ? 2 : n;
        if (il > n) il = n;
        fz_write(dir, "model.safetensors.index.json", p, il);
        p += il;
        n -= il;
        size_t n1 = n >= 4 ? (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24 : 0;
        p += n >= 4 ? 4 : n;
        n -= n >= 4 ? 4 : n;
        if (n1 > n) n1 = n;
        fz_write(dir, SHARD[0], p, n1);
        fz_write(dir, SHARD[1], p + n1, n - n1);
    }
    plm_model *m = NULL;
    plm_error err;
    plm_status st = plm_model_open(&m, dir, &err);
    if ((st == PLM_OK) != (m != NULL)) __builtin_trap();
    if (st != PLM_OK && !err.msg[0]) __builtin_trap(); /* every refusal says why */
    if (m) run_step(m);
    plm_model_free(m);
    return 0;
}
