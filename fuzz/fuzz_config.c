/* libFuzzer target for config.json and generation_config.json (src/io/config.c).
 *
 * Input: byte 0 bit 0 set: [u16 LE n][n bytes of config.json][the rest: generation_config.json];
 * clear: the rest is config.json alone. When the config loads, what it holds must be in range:
 * sizes positive, layer types known, every end-of-sequence id inside the vocabulary.
 *
 * PLM_FUZZ_SEED_DIR: write seed inputs there (from the fixtures' configs) and exit. */
#include "packlm.h"
#include "io/config.h"

#include "fuzz_common.h"

static char g_dir[512];

static void seed_from(const char *out, const char *name, const char *model) {
    char p[1024], g[1024];
    snprintf(p, sizeof p, "%s/config.json", model);
    snprintf(g, sizeof g, "%s/generation_config.json", model);
    size_t n = 0, gn = 0;
    unsigned char *c = fz_read(p, &n), *gc = fz_read(g, &gn);
    if (!c) {
        fprintf(stderr, "fuzz_config: cannot read %s\n", p);
        exit(1);
    }
    char nm[256];
    snprintf(nm, sizeof nm, "%s-config", name);
    fz_seed(out, nm, 0, c, n, NULL, 0);
    if (gc) {
        unsigned char *b = malloc(2 + n);
        b[0] = (unsigned char)n;
        b[1] = (unsigned char)(n >> 8);
        memcpy(b + 2, c, n);
        snprintf(nm, sizeof nm, "%s-config-and-generation", name);
        fz_seed(out, nm, 1, b, 2 + n, gc, gn);
        free(b);
    }
    free(c);
    free(gc);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fz_mkdtemp(g_dir, sizeof g_dir, "config");
    const char *seeds = getenv("PLM_FUZZ_SEED_DIR");
    if (seeds) {
        seed_from(seeds, "tiny-dense", "tests/data/tiny-dense");
        seed_from(seeds, "tiny-moe", "tests/data/tiny-moe");
        seed_from(seeds, "tiny-vl", "tests/data/tiny-vl");
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    fz_unlink(g_dir, "generation_config.json");
    if (data[0] & 1) {
        size_t cl = n >= 2 ? (size_t)p[0] | (size_t)p[1] << 8 : 0;
        p += n >= 2 ? 2 : n;
        n -= n >= 2 ? 2 : n;
        if (cl > n) cl = n;
        if (fz_write(g_dir, "config.json", p, cl) || fz_write(g_dir, "generation_config.json", p + cl, n - cl))
            return 0;
    } else if (fz_write(g_dir, "config.json", p, n)) {
        return 0;
    }
    plm_config c;
    plm_error err;
    err.msg[0] = 0;
    plm_status st = plm_config_load(&c, g_dir, &err);
    if (st != PLM_OK) {
        if (!err.msg[0]) __builtin_trap(); /* every refusal says why */
        return 0;
    }
    if (c.vocab_size < 1 || c.hidden_size < 1 || c.n_layers < 1 || c.n_layers > PLM_MAX_LAYERS) __builtin_trap();
    for (int i = 0; i < c.n_layers; i++)
        if (c.layer_type[i] != PLM_LAYER_LINEAR && c.layer_type[i] != PLM_LAYER_ATTENTION) __builtin_trap();
    if (c.n_eos < 0 || c.n_eos > 8) __builtin_trap();
    for (int i = 0; i < c.n_eos; i++)
        if (c.eos_ids[i] < 0 || c.eos_ids[i] >= c.vocab_size) __builtin_trap();
    if (c.rope_dim < 0 || 2 * ((c.rope_dim + 1) / 2) > c.head_dim || !(c.rope_theta > 0) || !(c.rms_eps > 0)) __builtin_trap();
    if (plm_config_validate(&c, &err) != PLM_OK) __builtin_trap();
    return 0;
}
