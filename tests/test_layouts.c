/* Checkpoint layouts against the transformers fixtures: the same weights rewritten as shards with an
 * index, as fused MoE experts (experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I]), and
 * with mtp.* / visual tensors of other dtypes that must be ignored, give the fixture's logits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors.h"
#include "runseq.h"
#include "testutil.h"

static char tmp[] = "/tmp/packlm-layouts-XXXXXX";

static int sh(const char *fmt, const char *a, const char *b) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    return system(cmd);
}

static void check_logits(const char *dir, const char *fixture, const char *what) {
    char path[512];
    plm_error err = {0};
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    if (!tu_check(plm_model_open(&m, dir, &err) == PLM_OK, "%s: opens (%s)", what, err.msg)) return;
    plm_ctx_new(&c, m, NULL, &err);
    int32_t **seqs;
    int64_t *lens, total = 0;
    snprintf(path, sizeof path, "tests/data/%s/inputs.txt", fixture);
    int n = tu_read_token_lines(path, &seqs, &lens);
    for (int i = 0; i < n; i++) total += lens[i];
    float *ref = NULL;
    int nd;
    int64_t shape[8];
    snprintf(path, sizeof path, "tests/data/%s/logits.npy", fixture);
    plm_npy_load_f32(&ref, &nd, shape, path, &err);
    const int V = plm_model_get_info(m)->vocab_size;
    float *got = malloc((size_t)total * V * sizeof *got);
    if (tu_check(tu_run_packed(c, m, seqs, lens, n, NULL, 77, got, NULL, &err) == PLM_OK, "%s: runs (%s)", what,
                 err.msg))
        tu_close(got, ref, (size_t)total * V, 1e-4, what);
    free(got);
    free(ref);
    tu_free_seqs(seqs, n);
    free(lens);
    plm_ctx_free(c);
    plm_model_free(m);
}

/* Rewrites src/model.safetensors into dst: n_shards shards + index (n_shards > 1), or one file;
 * fuse: per-expert MoE weights become fused tensors; extra: add mtp.* and visual tensors. */
static void rewrite(const char *src, const char *dst, int n_shards, int fuse, int extra) {
    char path[512];
    plm_error err = {0};
    plm_st_set *st = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    if (!tu_check(plm_st_open_file(&st, path, &err) == PLM_OK, "open %s", path)) return;
    mkdir(dst, 0700);
    sh("cp %s/config.json %s/", src, dst);
    int nt = plm_st_count(st);
    plm_st_writer *w[8];
    for (int s = 0; s < n_shards; s++) w[s] = plm_st_writer_new();
    char index[1 << 16];
    size_t ix = (size_t)snprintf(index, sizeof index, "{\"metadata\": {}, \"weight_map\": {");
    int first = 1;
    for (int i = 0; i < nt; i++) {
        const plm_st_tensor *t = plm_st_at(st, i);
        int shard = i % n_shards;
        const char *e = strstr(t->name, ".mlp.experts.");
        if (fuse && e) {
            int ex = -1;
            char proj[32] = "";
            if (sscanf(e, ".mlp.experts.%d.%31[a-z_]", &ex, proj) != 2 || ex != 0 || strcmp(proj, "gate_proj"))
                continue; /* the fused tensors are written once, at expert 0's gate_proj */
            char prefix[256], nm[512];
            snprintf(prefix, sizeof prefix, "%.*s", (int)(e - t->name), t->name);
            int E = 0;
            for (;; E++) {
                snprintf(nm, sizeof nm, "%s.mlp.experts.%d.gate_proj.weight", prefix, E);
                if (!plm_st_find(st, nm)) break;
            }
            const int64_t I = t->shape[0], H = t->shape[1];
            float *gu = malloc((size_t)(E * 2 * I * H) * sizeof(float)), *dn = malloc((size_t)(E * H * I) * sizeof(float));
            for (int x = 0; x < E; x++) {
                snprintf(nm, sizeof nm, "%s.mlp.experts.%d.gate_proj.weight", prefix, x);
                memcpy(gu + (size_t)x * 2 * I * H, plm_st_find(st, nm)->data, (size_t)(I * H) * sizeof(float));
                snprintf(nm, sizeof nm, "%s.mlp.experts.%d.up_proj.weight", prefix, x);
                memcpy(gu + (size_t)x * 2 * I * H + I * H, plm_st_find(st, nm)->data, (size_t)(I * H) * sizeof(float));
                snprintf(nm, sizeof nm, "%s.mlp.experts.%d.down_proj.weight", prefix, x);
                memcpy(dn + (size_t)x * H * I, plm_st_find(st, nm)->data, (size_t)(H * I) * sizeof(float));
            }
            snprintf(nm, sizeof nm, "%s.mlp.experts.gate_up_proj", prefix);
            plm_st_writer_add(w[shard], nm, PLM_DT_F32, 3, (int64_t[]){E, 2 * I, H}, gu, &err);
            snprintf(nm, sizeof nm, "%s.mlp.experts.down_proj", prefix);
            plm_st_writer_add(w[shard], nm, PLM_DT_F32, 3, (int64_t[]){E, H, I}, dn, &err);
            free(gu);
            free(dn);
            continue;
        }
        plm_st_writer_add(w[shard], t->name, t->dtype, t->ndim, t->shape, t->data, &err);
        ix += (size_t)snprintf(index + ix, sizeof index - ix, "%s\"%s\": \"model-%05d-of-%05d.safetensors\"",
                               first ? "" : ", ", t->name, shard + 1, n_shards);
        first = 0;
    }
    if (extra) { /* tensors packlm must ignore, in a dtype it does not compute with */
        static const float junk[4] = {1, 2, 3, 4};
        plm_st_writer_add(w[0], "mtp.fc.weight", PLM_DT_F32, 2, (int64_t[]){2, 2}, junk, &err);
        plm_st_writer_add(w[0], "model.visual.patch_embed.proj.weight", PLM_DT_F32, 1, (int64_t[]){4}, junk, &err);
    }
    snprintf(index + ix, sizeof index - ix, "}}\n");
    for (int s = 0; s < n_shards; s++) {
        if (n_shards == 1) snprintf(path, sizeof path, "%s/model.safetensors", dst);
        else snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dst, s + 1, n_shards);
        tu_check(plm_st_writer_save(w[s], path, &err) == PLM_OK, "write %s %s", path, err.msg);
        plm_st_writer_free(w[s]);
    }
    if (n_shards > 1) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dst);
        FILE *f = fopen(path, "w");
        if (f) {
            fputs(index, f);
            fclose(f);
        }
    }
    plm_st_close(st);
}

int main(void) {
    if (!mkdtemp(tmp)) return 1;
    char d[512];
    snprintf(d, sizeof d, "%s/dense-sharded", tmp);
    rewrite("tests/data/tiny-dense", d, 3, 0, 0);
    check_logits(d, "tiny-dense", "tiny-dense as 3 shards + model.safetensors.index.json");
    snprintf(d, sizeof d, "%s/moe-fused", tmp);
    rewrite("tests/data/tiny-moe", d, 1, 1, 1);
    check_logits(d, "tiny-moe", "tiny-moe with fused experts, plus mtp.* and visual tensors");
    snprintf(d, sizeof d, "%s/vl-sharded", tmp);
    rewrite("tests/data/tiny-vl", d, 2, 0, 0);
    check_logits(d, "tiny-vl", "tiny-vl (nested config, tied) as 2 shards");
    sh("rm -rf %s%s", tmp, "");
    return tu_finish("test_layouts");
}
