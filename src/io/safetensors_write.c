/* safetensors writer: tensors are copied in as added, then written as
 *   [u64 LE N][N bytes of JSON, padded with spaces so that N % 8 == 0][data, in the order added]
 * to a temporary file that is fsynced and renamed over the destination (io/atomic.h). */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "util/error.h"

#define ST_MAX_OFFSET ((uint64_t)1 << 53) /* offsets are JSON numbers: exact as doubles up to 2^53 */

typedef struct {
    char *name;
    plm_dtype dt;
    int ndim;
    int64_t shape[8];
    void *data;
    size_t nbytes;
} wentry;

struct plm_st_writer {
    wentry *e;
    int n, cap;
};

plm_st_writer *plm_st_writer_new(void) { return calloc(1, sizeof(plm_st_writer)); }

void plm_st_writer_free(plm_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].data);
    }
    free(w->e);
    free(w);
}

plm_status plm_st_writer_add(plm_st_writer *w, const char *name, plm_dtype dt, int ndim,
                             const int64_t *shape, const void *data, plm_error *err) {
    if (!w || !name) return plm_fail(err, PLM_ERR_INPUT, "safetensors writer: NULL writer or name");
    if (!name[0] || strcmp(name, "__metadata__") == 0)
        return plm_fail(err, PLM_ERR_INPUT, "safetensors writer: invalid tensor name '%s'", name);
    size_t esize = plm_dtype_size(dt);
    if (esize == 0 || dt == PLM_DT_Q8)
        return plm_fail(err, PLM_ERR_INPUT, "safetensors writer: tensor '%s': unsupported dtype", name);
    if (ndim < 0 || ndim > 8 || (ndim > 0 && !shape))
        return plm_fail(err, PLM_ERR_INPUT, "safetensors writer: tensor '%s': bad ndim %d", name, ndim);
    uint64_t count = 1;
    int zero = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return plm_fail(err, PLM_ERR_INPUT, "safetensors writer: tensor '%s': shape[%d] = %lld",
                            name, d, (long long)shape[d]);
        uint64_t dim = (uint64_t)shape[d];
        if (dim == 0) zero = 1;
        else if (count > ST_MAX_OFFSET / dim) count = ST_MAX_OFFSET + 1; /* saturate */
        else count *= dim;
    }
    if (zero) count = 0;
    if (count > ST_MAX_OFFSET / esize)
        return plm_fail(err, PLM_ERR_INPUT, "safetensors writer: tensor '%s': too large", name);
    size_t nbytes = (size_t)(count * esize);
    if (nbytes > 0 && !data)
        return plm_fail(err, PLM_ERR_INPUT, "safetensors writer: tensor '%s': NULL data", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return plm_fail(err, PLM_ERR_INPUT, "safetensors writer: tensor '%s' added twice", name);
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 16;
        wentry *ne = nc > w->cap ? realloc(w->e, sizeof *ne * (size_t)nc) : NULL;
        if (!ne) return plm_fail(err, PLM_ERR_NOMEM, "safetensors writer: out of memory");
        w->e = ne;
        w->cap = nc;
    }
    wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->data = malloc(nbytes ? nbytes : 1);
    if (!e->name || !e->data) {
        free(e->name);
        free(e->data);
        return plm_fail(err, PLM_ERR_NOMEM, "safetensors writer: out of memory");
    }
    if (nbytes) memcpy(e->data, data, nbytes);
    e->dt = dt;
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
    e->nbytes = nbytes;
    w->n++;
    return PLM_OK;
}

/* The header JSON (unpadded), malloc'ed; NULL on allocation failure or offsets past 2^53. */
static char *build_header(const plm_st_writer *w) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    if (!root || !meta) goto fail;
    if (!cJSON_AddStringToObject(meta, "format", "pt")) goto fail;
    cJSON_AddItemToObject(root, "__metadata__", meta);
    meta = NULL;
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wentry *e = &w->e[i];
        if (e->nbytes > ST_MAX_OFFSET - off) goto fail;
        cJSON *o = cJSON_CreateObject(), *sh = cJSON_CreateArray(), *of = cJSON_CreateArray();
        if (o) cJSON_AddItemToObject(root, e->name, o);
        if (!o || !sh || !of) {
            cJSON_Delete(sh);
            cJSON_Delete(of);
            goto fail;
        }
        cJSON_AddItemToObject(o, "shape", sh);
        cJSON_AddItemToObject(o, "data_offsets", of);
        if (!cJSON_AddStringToObject(o, "dtype", plm_dtype_name(e->dt))) goto fail;
        for (int d = 0; d < e->ndim; d++) {
            cJSON *v = cJSON_CreateNumber((double)e->shape[d]);
            if (!v) goto fail;
            cJSON_AddItemToArray(sh, v);
        }
        cJSON *b = cJSON_CreateNumber((double)off), *en = cJSON_CreateNumber((double)(off + e->nbytes));
        if (b) cJSON_AddItemToArray(of, b);
        if (en) cJSON_AddItemToArray(of, en);
        if (!b || !en) goto fail;
        off += e->nbytes;
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
fail:
    cJSON_Delete(meta);
    cJSON_Delete(root);
    return NULL;
}

plm_status plm_st_writer_save(plm_st_writer *w, const char *path, plm_error *err) {
    if (!w || !path) return plm_fail(err, PLM_ERR_INPUT, "safetensors writer: NULL writer or path");
    char *json = build_header(w);
    if (!json) return plm_fail(err, PLM_ERR_NOMEM, "%s: cannot build the header (out of memory or too large)", path);
    size_t len = strlen(json);
    size_t padded = (len + 7) & ~(size_t)7; /* HF pads the header with spaces to a multiple of 8 */
    char *hdr = malloc(8 + padded);
    if (!hdr) {
        free(json);
        return plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < 8; i++) hdr[i] = (char)(((uint64_t)padded >> (8 * i)) & 0xff); /* u64 LE */
    memcpy(hdr + 8, json, len);
    memset(hdr + 8 + len, ' ', padded - len);
    free(json);

    plm_atomic_file f;
    plm_status st = plm_atomic_open(&f, path, err);
    if (st == PLM_OK) st = plm_atomic_write(&f, hdr, 8 + padded, err);
    for (int i = 0; i < w->n && st == PLM_OK; i++)
        st = plm_atomic_write(&f, w->e[i].data, w->e[i].nbytes, err);
    free(hdr);
    if (st != PLM_OK) {
        plm_atomic_abort(&f);
        return st;
    }
    return plm_atomic_commit(&f, err);
}
