/* .npy reader and writers (float32, little endian, C order). Layout in io/npy.h. The writers go
 * through io/atomic.h: the destination appears only once the whole file is written and synced.
 * Assumes a little-endian host (the data is copied as is). */
#include "io/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/atomic.h"
#include "util/error.h"

#define NPY_MAX_HEADER (1u << 20)            /* a longer header is treated as corrupt */
#define NPY_MAX_BYTES ((uint64_t)1 << 60)    /* bound on data sizes, keeps arithmetic in range */

/* product(shape) * 4 with overflow checks; -1 when a dim is negative or the size is absurd. */
static int64_t f32_bytes(int ndim, const int64_t *shape) {
    uint64_t n = 4;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return -1;
        if (shape[d] == 0) n = 0;
        else if (n > NPY_MAX_BYTES / (uint64_t)shape[d]) return -1;
        else n *= (uint64_t)shape[d];
    }
    return (int64_t)n;
}

/* Writes magic + version + header into buf (at least 256 bytes); returns the total size, a
 * multiple of 64. Version 1.0: the header of at most 8 dims always fits a u16 length. */
static size_t make_header(char *buf, int ndim, const int64_t *shape) {
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int d = 0; d < ndim; d++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%s%lld", d ? ", " : "", (long long)shape[d]);
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", ndim == 1 ? "," : "");
    size_t total = 10 + (size_t)n + 1; /* prefix, dict, '\n' */
    size_t padded = (total + 63) & ~(size_t)63;
    size_t hl = padded - 10;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hl & 0xff);
    buf[9] = (char)(hl >> 8);
    memcpy(buf + 10, dict, (size_t)n);
    memset(buf + 10 + n, ' ', padded - total);
    buf[padded - 1] = '\n';
    return padded;
}

plm_status plm_npy_save_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                            plm_error *err) {
    if (!path) return plm_fail(err, PLM_ERR_INPUT, "npy: NULL path");
    if (ndim < 0 || ndim > 8 || (ndim > 0 && !shape))
        return plm_fail(err, PLM_ERR_INPUT, "%s: npy: bad ndim %d", path, ndim);
    int64_t nbytes = f32_bytes(ndim, shape);
    if (nbytes < 0) return plm_fail(err, PLM_ERR_INPUT, "%s: npy: negative or absurd shape", path);
    if (nbytes > 0 && !data) return plm_fail(err, PLM_ERR_INPUT, "%s: npy: NULL data", path);
    char hdr[256];
    size_t hlen = make_header(hdr, ndim, shape);
    plm_atomic_file f;
    plm_status st = plm_atomic_open(&f, path, err);
    if (st == PLM_OK) st = plm_atomic_write(&f, hdr, hlen, err);
    if (st == PLM_OK) st = plm_atomic_write(&f, data, (size_t)nbytes, err);
    if (st != PLM_OK) {
        plm_atomic_abort(&f);
        return st;
    }
    return plm_atomic_commit(&f, err);
}

/* ---------------------------------------------------------------- header parsing */
/* A cursor over the header dict; p never passes e. */
typedef struct {
    const char *p, *e;
} cur;

static void skip_ws(cur *c) {
    while (c->p < c->e && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int eat(cur *c, char ch) {
    skip_ws(c);
    if (c->p < c->e && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string ('...' or "...") without escapes, copied into out (truncated). */
static int read_str(cur *c, char *out, size_t cap) {
    skip_ws(c);
    if (c->p >= c->e || (*c->p != '\'' && *c->p != '"')) return 0;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->e && *c->p != q) {
        if (n + 1 < cap) out[n++] = *c->p;
        c->p++;
    }
    out[n] = 0;
    if (c->p >= c->e) return 0;
    c->p++;
    return 1;
}

static int read_word(cur *c, const char *w) {
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->e - c->p) >= n && memcmp(c->p, w, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

/* (d0, d1, ...) with optional trailing comma; dims are non-negative decimal integers. */
static const char *read_shape(cur *c, int *ndim, int64_t shape[8]) {
    if (!eat(c, '(')) return "shape is not a tuple";
    *ndim = 0;
    for (;;) {
        if (eat(c, ')')) return NULL;
        skip_ws(c);
        if (c->p >= c->e || *c->p < '0' || *c->p > '9') return "shape holds a non-integer or negative dim";
        int64_t v = 0;
        while (c->p < c->e && *c->p >= '0' && *c->p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return "shape dim too large";
            v = v * 10 + (*c->p++ - '0');
        }
        if (c->p < c->e && *c->p == 'L') c->p++; /* Python 2 long */
        if (*ndim == 8) return "shape has more than 8 dims";
        shape[(*ndim)++] = v;
        if (eat(c, ',')) continue;
        if (eat(c, ')')) return NULL;
        return "shape tuple is malformed";
    }
}

/* Parses the dict; returns NULL or what is wrong. */
static const char *parse_dict(const char *h, size_t n, int *ndim, int64_t shape[8]) {
    cur c = {h, h + n};
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!eat(&c, '{')) return "header is not a dict";
    while (!eat(&c, '}')) {
        char key[32], val[32];
        if (!read_str(&c, key, sizeof key) || !eat(&c, ':')) return "header dict is malformed";
        if (strcmp(key, "descr") == 0) {
            if (!read_str(&c, val, sizeof val)) return "descr is not a string";
            if (strcmp(val, "<f4") != 0) return "descr is not '<f4' (only little-endian float32 is read)";
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (read_word(&c, "True")) return "fortran_order is True (only C order is read)";
            if (!read_word(&c, "False")) return "fortran_order is not False";
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            const char *why = read_shape(&c, ndim, shape);
            if (why) return why;
            have_shape = 1;
        } else {
            return "header dict has an unexpected key";
        }
        if (!eat(&c, ',')) {
            if (!eat(&c, '}')) return "header dict is malformed";
            break;
        }
    }
    skip_ws(&c);
    if (c.p != c.e && !(c.e - c.p == 1 && *c.p == 0)) return "header has bytes after the dict";
    if (!have_descr || !have_order || !have_shape) return "header lacks descr, fortran_order or shape";
    return NULL;
}

plm_status plm_npy_load_f32(float **data, int *ndim, int64_t shape[8], const char *path,
                            plm_error *err) {
    *data = NULL;
    *ndim = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return plm_fail(err, PLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    plm_status st = PLM_OK;
    char *hdr = NULL;
    unsigned char pre[12];
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = plm_fail(err, PLM_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 10 || fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = plm_fail(err, PLM_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    uint64_t prefix, hl;
    if (pre[6] == 1) {
        prefix = 10;
        hl = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
    } else if (pre[6] == 2) {
        if (size < 12 || fread(pre + 10, 1, 2, f) != 2) {
            st = plm_fail(err, PLM_ERR_FORMAT, "%s: npy: truncated header", path);
            goto done;
        }
        prefix = 12;
        hl = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
    } else {
        st = plm_fail(err, PLM_ERR_FORMAT, "%s: npy: unsupported format version %d.%d", path, pre[6], pre[7]);
        goto done;
    }
    if (hl > NPY_MAX_HEADER || hl > size - prefix) {
        st = plm_fail(err, PLM_ERR_FORMAT, "%s: npy: header length %llu exceeds the file (%llu bytes)",
                      path, (unsigned long long)hl, (unsigned long long)size);
        goto done;
    }
    if (!(hdr = malloc(hl + 1))) {
        st = plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(hdr, 1, hl, f) != hl) {
        st = plm_fail(err, PLM_ERR_IO, "%s: short read", path);
        goto done;
    }
    hdr[hl] = 0;
    const char *why = parse_dict(hdr, hl, ndim, shape);
    if (why) {
        st = plm_fail(err, PLM_ERR_FORMAT, "%s: npy: %s", path, why);
        goto done;
    }
    int64_t need = f32_bytes(*ndim, shape);
    uint64_t have = size - prefix - hl;
    if (need < 0 || have != (uint64_t)need) {
        st = plm_fail(err, PLM_ERR_FORMAT, "%s: npy: data is %llu bytes but the shape needs %lld", path,
                      (unsigned long long)have, (long long)need);
        goto done;
    }
    if (!(*data = malloc(need ? (size_t)need : 1))) {
        st = plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory (%lld bytes)", path, (long long)need);
        goto done;
    }
    if (fread(*data, 1, (size_t)need, f) != (size_t)need) {
        st = plm_fail(err, PLM_ERR_IO, "%s: short read", path);
        goto done;
    }
done:
    if (st != PLM_OK) {
        free(*data);
        *data = NULL;
        *ndim = 0;
    }
    free(hdr);
    fclose(f);
    return st;
}

/* ---------------------------------------------------------------- streaming writer */
struct plm_npy_writer {
    plm_atomic_file f;
    int64_t rows, cols, written;
};

plm_npy_writer *plm_npy_writer_open(const char *path, int64_t rows, int64_t cols, plm_error *err) {
    int64_t shape[2] = {rows, cols};
    if (!path) {
        plm_fail(err, PLM_ERR_INPUT, "npy: NULL path");
        return NULL;
    }
    if (f32_bytes(2, shape) < 0) {
        plm_fail(err, PLM_ERR_INPUT, "%s: npy: bad shape [%lld, %lld]", path, (long long)rows,
                 (long long)cols);
        return NULL;
    }
    plm_npy_writer *w = calloc(1, sizeof *w);
    if (!w) {
        plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    w->rows = rows;
    w->cols = cols;
    char hdr[256];
    size_t hlen = make_header(hdr, 2, shape);
    if (plm_atomic_open(&w->f, path, err) != PLM_OK) {
        free(w);
        return NULL;
    }
    if (plm_atomic_write(&w->f, hdr, hlen, err) != PLM_OK) {
        plm_npy_writer_abort(w);
        return NULL;
    }
    return w;
}

plm_status plm_npy_writer_write(plm_npy_writer *w, const float *rows_data, int64_t n_rows,
                                plm_error *err) {
    if (!w) return plm_fail(err, PLM_ERR_INPUT, "npy writer: NULL writer");
    if (n_rows < 0 || n_rows > w->rows - w->written)
        return plm_fail(err, PLM_ERR_INPUT, "%s: npy: writing %lld rows after %lld of %lld", w->f.path,
                        (long long)n_rows, (long long)w->written, (long long)w->rows);
    size_t n = (size_t)n_rows * (size_t)w->cols * sizeof(float); /* <= the checked total */
    if (n > 0 && !rows_data) return plm_fail(err, PLM_ERR_INPUT, "%s: npy: NULL rows", w->f.path);
    plm_status st = plm_atomic_write(&w->f, rows_data, n, err);
    if (st == PLM_OK) w->written += n_rows;
    return st;
}

plm_status plm_npy_writer_commit(plm_npy_writer *w, plm_error *err) {
    if (!w) return plm_fail(err, PLM_ERR_INPUT, "npy writer: NULL writer");
    plm_status st;
    if (w->written != w->rows) {
        st = plm_fail(err, PLM_ERR_INPUT, "%s: npy: only %lld of %lld rows written", w->f.path,
                      (long long)w->written, (long long)w->rows);
        plm_atomic_abort(&w->f);
    } else {
        st = plm_atomic_commit(&w->f, err);
    }
    free(w);
    return st;
}

void plm_npy_writer_abort(plm_npy_writer *w) {
    if (!w) return;
    plm_atomic_abort(&w->f);
    free(w);
}
