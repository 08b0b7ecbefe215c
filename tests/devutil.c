#include "devutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors.h"
#include "testutil.h"

int tu_ctx_with(plm_ctx **c, const plm_model *m, const plm_ctx_params *p, const char *what) {
    plm_error err = {0};
    const char *device = p->device ? p->device : "cpu";
    *c = NULL;
    plm_status st = plm_ctx_new(c, m, p, &err);
    if (!st) return 0;
    const char *req = getenv("PLM_REQUIRE_CUDA");
    if (strncmp(device, "cuda", 4) == 0 && st == PLM_ERR_UNSUPPORTED && !(req && !strcmp(req, "1"))) {
        printf("SKIP %s on %s: %s\n", what, device, err.msg);
        return 1;
    }
    tu_check(0, "%s: context on %s: %s", what, device, err.msg);
    return -1;
}

int tu_ctx_on(plm_ctx **c, const plm_model *m, const char *device, int n_threads, const char *what) {
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = n_threads;
    p.device = device;
    return tu_ctx_with(c, m, &p, what);
}

static int copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb");
    if (!a) return -1;
    FILE *b = fopen(to, "wb");
    if (!b) {
        fclose(a);
        return -1;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    return fclose(b);
}

plm_status tu_write_bf16_copy(const char *dir, const char *out_dir, plm_error *err) {
    char a[512], b[512];
    mkdir(out_dir, 0755);
    snprintf(a, sizeof a, "%s/config.json", dir);
    snprintf(b, sizeof b, "%s/config.json", out_dir);
    if (copy_file(a, b)) return PLM_ERR_IO;
    snprintf(a, sizeof a, "%s/generation_config.json", dir);
    snprintf(b, sizeof b, "%s/generation_config.json", out_dir);
    copy_file(a, b); /* optional */
    plm_st_set *s = NULL;
    plm_status st = plm_st_open_dir(&s, dir, err);
    if (st) return st;
    plm_st_writer *w = plm_st_writer_new();
    for (int i = 0; i < plm_st_count(s) && !st; i++) {
        const plm_st_tensor *t = plm_st_at(s, i);
        if (t->dtype != PLM_DT_F32) {
            st = plm_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err);
            continue;
        }
        size_t n = t->nbytes / 4;
        uint16_t *h = malloc((n ? n : 1) * 2);
        const float *f = t->data;
        for (size_t j = 0; j < n; j++) h[j] = plm_f32_to_bf16(f[j]);
        st = plm_st_writer_add(w, t->name, PLM_DT_BF16, t->ndim, t->shape, h, err);
        free(h);
    }
    snprintf(b, sizeof b, "%s/model.safetensors", out_dir);
    if (!st) st = plm_st_writer_save(w, b, err);
    plm_st_writer_free(w);
    plm_st_close(s);
    return st;
}
