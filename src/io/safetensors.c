/* safetensors reader: every file is mmapped read-only (PROT_READ, MAP_PRIVATE) and its header is
 * validated field by field before any tensor is handed out. Lookup is a binary search over the
 * names sorted once at open. Directories and sharded indexes: safetensors_index.c.
 *
 * File layout: [u64 LE header length N][N bytes of JSON][data section]. Each JSON entry is
 * name -> {"dtype": str, "shape": [u, ...], "data_offsets": [begin, end]}, offsets relative to the
 * data section; "__metadata__" -> {str: str} is skipped. */
#include "io/safetensors.h"
#include "io/safetensors_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
#include "util/json_int.h"
#include "util/json_strict.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* a larger header length is treated as corrupt */
#define ST_MAX_INT 9007199254740992.0       /* 2^53: doubles hold integers exactly up to here */

/* ---------------------------------------------------------------- set bookkeeping */
plm_status plm_st_set_new(plm_st_set **out, plm_error *err) {
    *out = calloc(1, sizeof **out);
    return *out ? PLM_OK : plm_fail(err, PLM_ERR_NOMEM, "safetensors: out of memory");
}

void plm_st_close(plm_st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n_files; i++) {
        if (s->files[i].map) munmap(s->files[i].map, s->files[i].size);
        free(s->files[i].path);
    }
    for (int i = 0; i < s->n; i++) free((char *)s->t[i].name);
    free(s->files);
    free(s->t);
    free(s->sorted);
    free(s);
}

int plm_st_count(const plm_st_set *s) { return s ? s->n : 0; }

const plm_st_tensor *plm_st_at(const plm_st_set *s, int i) {
    return (s && i >= 0 && i < s->n) ? &s->t[i] : NULL;
}

size_t plm_st_file_bytes(const plm_st_set *s) { return s ? s->total_bytes : 0; }

typedef struct {
    const char *name;
    int idx;
} name_idx;

static int cmp_name_idx(const void *a, const void *b) {
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

plm_status plm_st_finish(plm_st_set *s, plm_error *err) {
    size_t n = (size_t)s->n;
    name_idx *p = malloc(sizeof *p * (n ? n : 1));
    free(s->sorted);
    s->sorted = malloc(sizeof *s->sorted * (n ? n : 1));
    if (!p || !s->sorted) {
        free(p);
        return plm_fail(err, PLM_ERR_NOMEM, "safetensors: out of memory");
    }
    for (size_t i = 0; i < n; i++) p[i] = (name_idx){s->t[i].name, (int)i};
    qsort(p, n, sizeof *p, cmp_name_idx);
    for (size_t i = 0; i < n; i++) s->sorted[i] = p[i].idx;
    free(p);
    for (size_t i = 1; i < n; i++) {
        const plm_st_tensor *a = &s->t[s->sorted[i - 1]], *b = &s->t[s->sorted[i]];
        if (strcmp(a->name, b->name) == 0)
            return plm_fail(err, PLM_ERR_FORMAT, "tensor '%s' appears twice (in %s and in %s)",
                            a->name, s->files[a->file].path, s->files[b->file].path);
    }
    return PLM_OK;
}

int plm_st_find_index(const plm_st_set *s, const char *name) {
    if (!s || !name || !s->sorted) return -1;
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, s->t[s->sorted[mid]].name);
        if (c == 0) return s->sorted[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

const plm_st_tensor *plm_st_find(const plm_st_set *s, const char *name) {
    int i = plm_st_find_index(s, name);
    return i < 0 ? NULL : &s->t[i];
}

/* ---------------------------------------------------------------- one header entry */
/* A non-negative integer <= 2^53 written as a JSON integer (the reference reads usize through serde:
 * "8.0" and "1e3" are refused there; cJSON parses every number as a double, util/json_int.h marks
 * the integer literals). */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!plm_json_is_int(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > ST_MAX_INT || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Describes why json_uint refused v, for messages (buf: room for the literal). */
static const char *json_uint_why(const cJSON *v, char *buf, size_t cap) {
    if (!cJSON_IsNumber(v)) return "is not a number";
    double d = v->valuedouble;
    if (!(d >= 0.0)) return "is negative";
    if (d > ST_MAX_INT) return "is too large (over 2^53)";
    if (d == floor(d) && plm_json_float_literal(v)) {
        snprintf(buf, cap, "= %.40s is not a JSON integer (written with a fraction or an exponent)",
                 plm_json_float_literal(v));
        return buf;
    }
    return "is not an integer";
}

typedef struct {
    uint64_t begin, end;
    int idx; /* into s->t */
} range;

static int cmp_range(const void *a, const void *b) {
    const range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Validates one entry of file f and fills t (name excepted) and r. */
static plm_status parse_entry(plm_st_tensor *t, range *r, const plm_st_file *f, const char *name,
                              const cJSON *e, plm_error *err) {
    const char *path = f->path;
    char why[128];
    if (!cJSON_IsObject(e))
        return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt || !sh || !off)
        return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': missing \"%s\"", path, name,
                        !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", path, name);
    size_t ebits;
    t->dtype = plm_dtype_from_name(dt->valuestring, &ebits);
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->valuestring);
    if (!ebits)
        return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.40s'", path, name,
                        dt->valuestring);

    if (!cJSON_IsArray(sh))
        return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': shape is not an array", path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > 8)
        return plm_fail(err, PLM_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (at most 8)", path,
                        name, nd);
    t->ndim = nd;
    /* element count and byte size in checked arithmetic, left to right as the reference
     * (safetensors' Metadata::validate: try_fold(checked_mul)): a zero dimension after an
     * overflowing prefix does not excuse the overflow */
    uint64_t count = 1;
    int d = 0;
    for (const cJSON *v = sh->child; v; v = v->next, d++) {
        uint64_t dim;
        if (!json_uint(v, &dim))
            return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': shape[%d] %s", path, name, d,
                            json_uint_why(v, why, sizeof why));
        t->shape[d] = (int64_t)dim;
        if (__builtin_mul_overflow(count, dim, &count))
            return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': shape product overflows (at shape[%d])",
                            path, name, d);
    }
    uint64_t need_bits;
    if (__builtin_mul_overflow(count, (uint64_t)ebits, &need_bits))
        return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': shape product overflows", path, name);
    if (need_bits % 8)
        return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': %llu elements of %s do not fill whole bytes",
                        path, name, (unsigned long long)count, t->dtype_name);
    const uint64_t need = need_bits / 8;

    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': data_offsets is not an array of 2",
                        path, name);
    const cJSON *b = off->child, *en = b->next;
    if (!json_uint(b, &r->begin))
        return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': data_offsets[0] %s", path, name,
                        json_uint_why(b, why, sizeof why));
    if (!json_uint(en, &r->end))
        return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': data_offsets[1] %s", path, name,
                        json_uint_why(en, why, sizeof why));
    if (r->begin > r->end)
        return plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] begin after end",
                        path, name, (unsigned long long)r->begin, (unsigned long long)r->end);
    if (r->end > f->data_len)
        return plm_fail(err, PLM_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] exceed the data section (%llu bytes)",
                        path, name, (unsigned long long)r->begin, (unsigned long long)r->end,
                        (unsigned long long)f->data_len);
    uint64_t nbytes = r->end - r->begin;
    if (nbytes != need)
        return plm_fail(err, PLM_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape x %s "
                        "needs %llu",
                        path, name, (unsigned long long)r->begin, (unsigned long long)r->end,
                        (unsigned long long)nbytes, t->dtype_name,
                        (unsigned long long)need);
    t->data = f->data + r->begin;
    t->nbytes = (size_t)nbytes;
    return PLM_OK;
}

/* ---------------------------------------------------------------- one file */
static plm_status map_file(plm_st_file *f, const char *path, plm_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return plm_fail(err, PLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return plm_fail(err, PLM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return plm_fail(err, PLM_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return plm_fail(err, PLM_ERR_IO, "%s: file is empty", path);
    }
    if (st.st_size < 8) {
        close(fd);
        return plm_fail(err, PLM_ERR_FORMAT, "%s: file is %lld bytes, shorter than the 8-byte header length",
                        path, (long long)st.st_size);
    }
    f->size = (size_t)st.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return plm_fail(err, PLM_ERR_IO, "%s: cannot mmap: %s", path, strerror(e));
    f->map = m;
    return PLM_OK;
}

static plm_status grow(void **p, int *cap, int need, size_t elem, plm_error *err) {
    if (need <= *cap) return PLM_OK;
    int nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > (1 << 29)) return plm_fail(err, PLM_ERR_NOMEM, "safetensors: too many entries");
        nc *= 2;
    }
    void *q = realloc(*p, elem * (size_t)nc);
    if (!q) return plm_fail(err, PLM_ERR_NOMEM, "safetensors: out of memory");
    *p = q;
    *cap = nc;
    return PLM_OK;
}

/* Parses the header of the last file of s and appends its tensors. */
static plm_status parse_header(plm_st_set *s, plm_error *err) {
    const int fi = s->n_files - 1;
    plm_st_file *f = &s->files[fi];
    const uint8_t *m = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | m[i]; /* little endian */
    if (hlen > ST_MAX_HEADER)
        return plm_fail(err, PLM_ERR_FORMAT, "%s: header length %llu is absurd (over 100 MB)", f->path,
                        (unsigned long long)hlen);
    if (hlen > f->size - 8)
        return plm_fail(err, PLM_ERR_FORMAT, "%s: header length %llu exceeds the file (%zu bytes)",
                        f->path, (unsigned long long)hlen, f->size);
    f->data = m + 8 + hlen;
    f->data_len = f->size - 8 - hlen;

    const char *js = (const char *)m + 8;
    size_t bad = 0;
    const char *why = NULL;
    /* strict JSON, then only whitespace up to the data section (Hugging Face pads with spaces) */
    size_t nul = SIZE_MAX;
    if (!plm_json_check(js, (size_t)hlen, &bad, &why, &nul))
        return plm_fail(err, PLM_ERR_FORMAT, "%s: header is not valid JSON: %s (at byte %zu of %llu)", f->path,
                        why, bad, (unsigned long long)hlen);
    if (nul != SIZE_MAX) /* cJSON would cut the name or string there */
        return plm_fail(err, PLM_ERR_FORMAT, "%s: header: a string holds \\u0000 (at byte %zu)", f->path, nul);
    cJSON *root = cJSON_ParseWithLength(js, (size_t)hlen);
    if (!root) return plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory parsing the header", f->path);
    plm_json_mark_ints(js, (size_t)hlen, root);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return plm_fail(err, PLM_ERR_FORMAT, "%s: header is not a JSON object", f->path);
    }
    int n_entries = cJSON_GetArraySize(root);
    range *rs = malloc(sizeof *rs * (size_t)(n_entries > 0 ? n_entries : 1));
    plm_status st = rs ? PLM_OK : plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", f->path);
    int nr = 0;
    for (const cJSON *e = root->child; e && st == PLM_OK; e = e->next) {
        const char *name = e->string ? e->string : "";
        if (strcmp(name, "__metadata__") == 0) {
            if (!cJSON_IsObject(e) && !cJSON_IsNull(e))
                st = plm_fail(err, PLM_ERR_FORMAT, "%s: __metadata__ is not a JSON object", f->path);
            continue;
        }
        if ((st = grow((void **)&s->t, &s->cap, s->n + 1, sizeof *s->t, err)) != PLM_OK) break;
        plm_st_tensor *t = &s->t[s->n];
        memset(t, 0, sizeof *t);
        if ((st = parse_entry(t, &rs[nr], f, name, e, err)) != PLM_OK) break;
        if (!(t->name = strdup(name))) {
            st = plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", f->path);
            break;
        }
        t->file = fi;
        rs[nr++].idx = s->n++;
    }
    cJSON_Delete(root);
    if (st == PLM_OK) {
        /* the tensors, in order of their offsets, must tile the data section exactly: each begins
         * where the one before it ends, the first at 0, the last at the end of the file (the
         * reference's Metadata::validate and its "does not fully cover the buffer" check) */
        qsort(rs, (size_t)nr, sizeof *rs, cmp_range);
        uint64_t at = 0;
        int prev = -1;
        for (int i = 0; i < nr && st == PLM_OK; i++) {
            if (rs[i].begin < at)
                st = plm_fail(err, PLM_ERR_FORMAT,
                              "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", f->path,
                              s->t[rs[prev].idx].name, (unsigned long long)rs[prev].begin,
                              (unsigned long long)rs[prev].end, s->t[rs[i].idx].name,
                              (unsigned long long)rs[i].begin, (unsigned long long)rs[i].end);
            else if (rs[i].begin > at)
                st = plm_fail(err, PLM_ERR_FORMAT,
                              "%s: tensor '%s' begins at byte %llu of the data section but the tensors before "
                              "it end at %llu: the tensors must cover the data section without gaps",
                              f->path, s->t[rs[i].idx].name, (unsigned long long)rs[i].begin,
                              (unsigned long long)at);
            at = rs[i].end;
            prev = i;
        }
        if (st == PLM_OK && at != f->data_len)
            st = plm_fail(err, PLM_ERR_FORMAT,
                          "%s: the tensors cover %llu bytes but the data section holds %llu: %llu bytes after "
                          "the last tensor (the tensors must cover the data section exactly)",
                          f->path, (unsigned long long)at, (unsigned long long)f->data_len,
                          (unsigned long long)(f->data_len - at));
    }
    free(rs);
    return st;
}

plm_status plm_st_add_file(plm_st_set *s, const char *path, plm_error *err) {
    plm_status st = grow((void **)&s->files, &s->cap_files, s->n_files + 1, sizeof *s->files, err);
    if (st != PLM_OK) return st;
    plm_st_file *f = &s->files[s->n_files];
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path))) return plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", path);
    s->n_files++; /* from here plm_st_close releases it */
    if ((st = map_file(f, path, err)) != PLM_OK) return st;
    s->total_bytes += f->size;
    return parse_header(s, err);
}

plm_status plm_st_open_file(plm_st_set **out, const char *path, plm_error *err) {
    *out = NULL;
    plm_st_set *s;
    plm_status st = plm_st_set_new(&s, err);
    if (st != PLM_OK) return st;
    if ((st = plm_st_add_file(s, path, err)) == PLM_OK) st = plm_st_finish(s, err);
    if (st != PLM_OK) {
        plm_st_close(s);
        return st;
    }
    *out = s;
    return PLM_OK;
}
