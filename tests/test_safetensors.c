/* Tests of the safetensors reader/writer, the dtype conversions and the .npy reader/writers:
 * round trips bit-exact, then every kind of corrupt file written byte by byte into a temporary
 * directory, each of which must be refused with the right code and a message naming the problem. */
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/npy.h"
#include "io/safetensors.h"
#include "packlm.h"

static int n_ok, n_fail;
static char g_dir[64];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            n_ok++;                                                                                \
        } else {                                                                                   \
            n_fail++;                                                                              \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

static void section(const char *name, int fails_before) {
    printf("%s %s\n", n_fail == fails_before ? "ok  " : "FAIL", name);
}

static char *path_in(const char *name) {
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", g_dir, name);
    return p;
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    if (n) fwrite(b, 1, n, f);
    fclose(f);
}

/* A safetensors file from a header string (unpadded) and data_len bytes of 0x5a. */
static void write_st(const char *path, const char *header, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char *b = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(((uint64_t)hl >> (8 * i)) & 0xff);
    memcpy(b + 8, header, hl);
    memset(b + 8 + hl, 0x5a, data_len);
    write_bytes(path, b, 8 + hl + data_len);
    free(b);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static size_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

/* Expects a failure of code with a message containing every substring given (NULL-terminated). */
static void expect_fail_(int line, plm_status st, plm_status code, const plm_error *err, ...) {
    int good = st == code && err->code == code;
    va_list ap;
    va_start(ap, err);
    const char *bad = NULL;
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(err->msg, s) && !bad) bad = s;
    va_end(ap);
    if (good && !bad) {
        n_ok++;
    } else {
        n_fail++;
        printf("FAIL line %d: got %s (%d) \"%s\"; wanted %s%s%s\n", line, plm_status_name(st), st,
               err->msg, plm_status_name(code), bad ? " with " : "", bad ? bad : "");
    }
}
#define EXPECT_FAIL(st, code, err, ...) expect_fail_(__LINE__, st, code, err, __VA_ARGS__, (char *)NULL)

/* ---------------------------------------------------------------- writer round trip */
static void test_roundtrip(void) {
    int f0 = n_fail;
    plm_error err = {0};
    float a[15], scalar = -3.25f;
    uint16_t b[7], c[6], odd[1] = {0x3f80};
    for (int i = 0; i < 15; i++) a[i] = (float)i * 0.37f - 2.0f;
    for (int i = 0; i < 7; i++) b[i] = plm_f32_to_bf16((float)i * 1.5f - 4.0f);
    for (int i = 0; i < 6; i++) c[i] = plm_f32_to_f16((float)i / 3.0f);
    const int64_t sa[2] = {3, 5}, sb[1] = {7}, sc[3] = {2, 3, 1}, se[3] = {4, 0, 3},
                  so[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    plm_st_writer *w = plm_st_writer_new();
    CHECK(w != NULL, "writer_new");
    CHECK(plm_st_writer_add(w, "a.f32", PLM_DT_F32, 2, sa, a, &err) == PLM_OK, "%s", err.msg);
    CHECK(plm_st_writer_add(w, "b.bf16", PLM_DT_BF16, 1, sb, b, &err) == PLM_OK, "%s", err.msg);
    CHECK(plm_st_writer_add(w, "c.f16", PLM_DT_F16, 3, sc, c, &err) == PLM_OK, "%s", err.msg);
    CHECK(plm_st_writer_add(w, "scalar", PLM_DT_F32, 0, NULL, &scalar, &err) == PLM_OK, "%s", err.msg);
    CHECK(plm_st_writer_add(w, "empty", PLM_DT_F32, 3, se, NULL, &err) == PLM_OK, "%s", err.msg);
    CHECK(plm_st_writer_add(w, "odd \"quoted\"/name", PLM_DT_BF16, 8, so, odd, &err) == PLM_OK, "%s", err.msg);
    EXPECT_FAIL(plm_st_writer_add(w, "a.f32", PLM_DT_F32, 2, sa, a, &err), PLM_ERR_INPUT, &err, "twice");
    EXPECT_FAIL(plm_st_writer_add(w, "x", PLM_DT_OTHER, 2, sa, a, &err), PLM_ERR_INPUT, &err, "dtype");
    const int64_t neg[1] = {-1};
    EXPECT_FAIL(plm_st_writer_add(w, "x", PLM_DT_F32, 1, neg, a, &err), PLM_ERR_INPUT, &err, "shape[0]");
    EXPECT_FAIL(plm_st_writer_add(w, "", PLM_DT_F32, 1, sb, a, &err), PLM_ERR_INPUT, &err, "name");

    const char *path = path_in("rt.safetensors");
    CHECK(plm_st_writer_save(w, path, &err) == PLM_OK, "save: %s", err.msg);
    EXPECT_FAIL(plm_st_writer_save(w, "/nonexistent-dir-plm/x.safetensors", &err), PLM_ERR_IO, &err,
                "nonexistent-dir-plm");
    plm_st_writer_free(w);
    plm_st_writer_free(NULL);

    /* raw layout: header length multiple of 8, padded with spaces after the JSON */
    FILE *f = fopen(path, "rb");
    unsigned char len8[8];
    CHECK(f && fread(len8, 1, 8, f) == 8, "read header length");
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | len8[i];
    CHECK(hl % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hl);
    char *hdr = calloc(1, hl + 1);
    CHECK(fread(hdr, 1, hl, f) == hl, "read header");
    fclose(f);
    size_t k = hl;
    while (k > 0 && hdr[k - 1] == ' ') k--;
    CHECK(k > 0 && hdr[k - 1] == '}' && hl - k < 8, "header padding: '%s'", hdr);
    CHECK(strstr(hdr, "\"__metadata__\"") != NULL, "metadata present");
    free(hdr);

    plm_st_set *s = NULL;
    CHECK(plm_st_open_file(&s, path, &err) == PLM_OK, "open: %s", err.msg);
    if (!s) return;
    CHECK(plm_st_count(s) == 6, "count %d", plm_st_count(s));
    CHECK(plm_st_file_bytes(s) == file_size(path), "file_bytes");
    CHECK(strcmp(plm_st_at(s, 0)->name, "a.f32") == 0 && plm_st_at(s, 6) == NULL && plm_st_at(s, -1) == NULL,
          "plm_st_at order");
    const plm_st_tensor *t = plm_st_find(s, "a.f32");
    CHECK(t && t->dtype == PLM_DT_F32 && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 5 &&
              t->nbytes == sizeof a && memcmp(t->data, a, sizeof a) == 0 && t->file == 0 &&
              strcmp(t->dtype_name, "F32") == 0,
          "a.f32");
    t = plm_st_find(s, "b.bf16");
    CHECK(t && t->dtype == PLM_DT_BF16 && t->ndim == 1 && t->shape[0] == 7 && t->nbytes == sizeof b &&
              memcmp(t->data, b, sizeof b) == 0,
          "b.bf16");
    t = plm_st_find(s, "c.f16");
    CHECK(t && t->dtype == PLM_DT_F16 && t->ndim == 3 && t->shape[2] == 1 && memcmp(t->data, c, sizeof c) == 0,
          "c.f16");
    t = plm_st_find(s, "scalar");
    CHECK(t && t->ndim == 0 && t->nbytes == 4 && memcmp(t->data, &scalar, 4) == 0, "scalar");
    t = plm_st_find(s, "empty");
    CHECK(t && t->ndim == 3 && t->shape[1] == 0 && t->nbytes == 0, "empty");
    t = plm_st_find(s, "odd \"quoted\"/name");
    CHECK(t && t->ndim == 8 && t->nbytes == 2 && memcmp(t->data, odd, 2) == 0, "8-d, quoted name");
    CHECK(plm_st_find(s, "nope") == NULL && plm_st_find(s, "") == NULL, "absent names");
    plm_st_close(s);
    plm_st_close(NULL);

    /* the same file through a directory */
    char *d = path_in("rtdir");
    mkdir(d, 0755);
    char p2[300];
    snprintf(p2, sizeof p2, "%s/model.safetensors", d);
    CHECK(rename(path, p2) == 0, "rename");
    CHECK(plm_st_open_dir(&s, d, &err) == PLM_OK && plm_st_count(s) == 6, "open_dir: %s", err.msg);
    plm_st_close(s);
    CHECK(count_entries(g_dir) == 1, "no temporary files left (%d entries)", count_entries(g_dir));
    section("safetensors writer round trip", f0);
}

/* ---------------------------------------------------------------- conversions */
static void test_conversions(void) {
    int f0 = n_fail;
    int bad_bf = 0, bad_h = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float x = plm_bf16_to_f32((uint16_t)h);
        uint16_t back = plm_f32_to_bf16(x);
        if (isnan(x) ? !isnan(plm_bf16_to_f32(back)) : back != h) bad_bf++;
        float y = plm_f16_to_f32((uint16_t)h);
        uint16_t hb = plm_f32_to_f16(y);
        if (isnan(y) ? !isnan(plm_f16_to_f32(hb)) : hb != h) bad_h++;
    }
    CHECK(bad_bf == 0, "bf16 round trip: %d mismatches", bad_bf);
    CHECK(bad_h == 0, "f16 round trip: %d mismatches", bad_h);
    union { uint32_t u; float f; } v;
    v.u = 0x3f808000u; /* halfway, even below */
    CHECK(plm_f32_to_bf16(v.f) == 0x3f80, "bf16 tie to even (down)");
    v.u = 0x3f818000u; /* halfway, odd below */
    CHECK(plm_f32_to_bf16(v.f) == 0x3f82, "bf16 tie to even (up)");
    v.u = 0x3f808001u;
    CHECK(plm_f32_to_bf16(v.f) == 0x3f81, "bf16 above half");
    CHECK(plm_f32_to_bf16(INFINITY) == 0x7f80 && isnan(plm_bf16_to_f32(plm_f32_to_bf16(NAN))), "bf16 inf/nan");
    CHECK(plm_f32_to_f16(65504.0f) == 0x7bff && plm_f32_to_f16(65519.0f) == 0x7bff &&
              plm_f32_to_f16(65520.0f) == 0x7c00 && plm_f32_to_f16(-1e9f) == 0xfc00,
          "f16 overflow rounding");
    CHECK(plm_f32_to_f16(ldexpf(1, -24)) == 1 && plm_f32_to_f16(ldexpf(1, -25)) == 0 &&
              plm_f32_to_f16(ldexpf(1.5f, -25)) == 1 && plm_f32_to_f16(ldexpf(3, -25)) == 2 &&
              plm_f32_to_f16(ldexpf(1, -14)) == 0x400 && plm_f32_to_f16(-0.0f) == 0x8000,
          "f16 subnormals");
    CHECK(plm_f32_to_f16(1.0f) == 0x3c00 && plm_f16_to_f32(0x3555) == 0x3555 * 0.0f + 0.333251953125f,
          "f16 values");
    CHECK(isnan(plm_f16_to_f32(plm_f32_to_f16(NAN))) && plm_f32_to_f16(INFINITY) == 0x7c00, "f16 inf/nan");
#ifdef __FLT16_MAX__
    /* against the compiler's conversion on a sweep of f32 bit patterns */
    int bad = 0;
    for (uint64_t u = 0; u < 0x100000000ull; u += 0x1357u) {
        v.u = (uint32_t)u;
        _Float16 r = (_Float16)v.f;
        uint16_t rb;
        memcpy(&rb, &r, 2);
        uint16_t mine = plm_f32_to_f16(v.f);
        if (isnan(v.f) ? !isnan(plm_f16_to_f32(mine)) : mine != rb) bad++;
    }
    CHECK(bad == 0, "f16 vs _Float16: %d mismatches", bad);
#endif
    CHECK(plm_dtype_size(PLM_DT_BF16) == 2 && plm_dtype_size(PLM_DT_OTHER) == 0 &&
              strcmp(plm_dtype_name(PLM_DT_F16), "F16") == 0,
          "dtype size/name");
    section("dtype conversions", f0);
}

/* ---------------------------------------------------------------- corrupt files */
typedef struct {
    const char *header;   /* NULL: raw bytes below */
    size_t data_len;
    plm_status code;
    const char *want1, *want2;
} st_case;

static void test_corrupt(void) {
    int f0 = n_fail;
    plm_error err;
    plm_st_set *s = (plm_st_set *)1;
    const char *p = path_in("bad.safetensors");

    write_bytes(p, "", 0);
    EXPECT_FAIL(plm_st_open_file(&s, p, &err), PLM_ERR_IO, &err, "bad.safetensors", "empty");
    CHECK(s == NULL, "out cleared on failure");
    write_bytes(p, "\x05\0\0\0\0", 5);
    EXPECT_FAIL(plm_st_open_file(&s, p, &err), PLM_ERR_FORMAT, &err, "bad.safetensors", "shorter than");
    unsigned char big[50] = {0xe8, 0x03}; /* header length 1000 in a 50-byte file */
    write_bytes(p, big, sizeof big);
    EXPECT_FAIL(plm_st_open_file(&s, p, &err), PLM_ERR_FORMAT, &err, "header length 1000 exceeds");
    unsigned char huge[50] = {0, 0, 0, 0, 0, 1}; /* 2^40 */
    write_bytes(p, huge, sizeof huge);
    EXPECT_FAIL(plm_st_open_file(&s, p, &err), PLM_ERR_FORMAT, &err, "absurd");
    EXPECT_FAIL(plm_st_open_file(&s, path_in("missing.safetensors"), &err), PLM_ERR_IO, &err,
                "missing.safetensors");
    EXPECT_FAIL(plm_st_open_file(&s, g_dir, &err), PLM_ERR_IO, &err, "not a regular file");

    static const st_case cases[] = {
        {"{not json", 0, PLM_ERR_FORMAT, "not valid JSON", NULL},
        {"", 0, PLM_ERR_FORMAT, "not valid JSON", NULL},
        {"[1, 2]", 0, PLM_ERR_FORMAT, "not a JSON object", NULL},
        {"{} x", 0, PLM_ERR_FORMAT, "after the JSON", NULL},
        {"{\"w\": 3}", 0, PLM_ERR_FORMAT, "'w'", "not a JSON object"},
        {"{\"w\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8, PLM_ERR_FORMAT, "'w'", "dtype"},
        {"{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8, PLM_ERR_FORMAT, "'w'", "shape"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, PLM_ERR_FORMAT, "'w'", "data_offsets"},
        {"{\"w\": {\"dtype\": 4, \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, PLM_ERR_FORMAT, "'w'", "dtype is not a string"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": \"2\", \"data_offsets\": [0, 8]}}", 8, PLM_ERR_FORMAT, "'w'", "shape is not an array"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8, PLM_ERR_FORMAT, "'w'", "shape[0] is negative"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1, 2.5], \"data_offsets\": [0, 8]}}", 8, PLM_ERR_FORMAT, "'w'", "shape[1] is not an integer"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}", 8, PLM_ERR_FORMAT, "'w'", "shape[0] is not a number"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1e300], \"data_offsets\": [0, 8]}}", 8, PLM_ERR_FORMAT, "'w'", "too large"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8, PLM_ERR_FORMAT, "'w'", "overflows"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 8, PLM_ERR_UNSUPPORTED, "'w'", "9 dimensions"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", 8, PLM_ERR_FORMAT, "'w'", "array of 2"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": {\"a\": 1}}}", 8, PLM_ERR_FORMAT, "'w'", "array of 2"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}", 8, PLM_ERR_FORMAT, "'w'", "data_offsets[0] is negative"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8.5]}}", 8, PLM_ERR_FORMAT, "'w'", "data_offsets[1] is not an integer"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8, PLM_ERR_FORMAT, "'w'", "begin after end"},
        {"{\"model.layers.0.mlp.up_proj.weight\": {\"dtype\": \"F32\", \"shape\": [200], \"data_offsets\": [100, 900]}}",
         512, PLM_ERR_FORMAT,
         "bad.safetensors: tensor 'model.layers.0.mlp.up_proj.weight': data_offsets [100, 900] exceed the data section (512 bytes)", NULL},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, PLM_ERR_FORMAT, "'w'", "hold 8 bytes but shape x F32 needs 12"},
        {"{\"w\": {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", 16, PLM_ERR_FORMAT, "'w'", "needs 8"},
        {"{\"w\": {\"dtype\": \"I64\", \"shape\": [3], \"data_offsets\": [0, 16]}}", 16, PLM_ERR_FORMAT, "'w'", "I64 needs 24"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, "
         "\"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 24, PLM_ERR_FORMAT, "'a' [0, 16] and 'b' [8, 24] overlap", NULL},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [0, 32]}, "
         "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [12, 16]}}", 32, PLM_ERR_FORMAT, "overlap", NULL},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
         "\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8, PLM_ERR_FORMAT, "'w' appears twice", NULL},
        {"{\"__metadata__\": \"pt\", \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, PLM_ERR_FORMAT, "__metadata__", NULL},
        /* checked size arithmetic: a zero dimension after an overflowing prefix (as the reference) */
        {"{\"zz\": {\"dtype\": \"F32\", \"shape\": [9007199254740992, 9007199254740992, 0], \"data_offsets\": [0, 0]}}", 0, PLM_ERR_FORMAT, "'zz'", "shape product overflows"},
        {"{\"zz\": {\"dtype\": \"F64\", \"shape\": [2305843009213693952], \"data_offsets\": [0, 0]}}", 0, PLM_ERR_FORMAT, "'zz'", "too large"},
        {"{\"w\": {\"dtype\": \"WEIRD\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2, PLM_ERR_FORMAT, "'w'", "unknown dtype 'WEIRD'"},
        {"{\"w\": {\"dtype\": \"F4\", \"shape\": [3], \"data_offsets\": [0, 2]}}", 2, PLM_ERR_FORMAT, "'w'", "whole bytes"},
        /* integers written as JSON integers (the reference reads usize through serde: 8.0 and 1e3 refused) */
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]}}", 8, PLM_ERR_FORMAT,
         "tensor 'w': shape[0] = 2.0 is not a JSON integer (written with a fraction or an exponent)", NULL},
        {"{\"w\": {\"dtype\": \"U8\", \"shape\": [1, 1e3], \"data_offsets\": [0, 1000]}}", 1000, PLM_ERR_FORMAT,
         "tensor 'w': shape[1] = 1e3 is not a JSON integer (written with a fraction or an exponent)", NULL},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8.0]}}", 8, PLM_ERR_FORMAT,
         "tensor 'w': data_offsets[1] = 8.0 is not a JSON integer (written with a fraction or an exponent)", NULL},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0E0, 8]}}", 8, PLM_ERR_FORMAT,
         "tensor 'w': data_offsets[0] = 0E0 is not a JSON integer (written with a fraction or an exponent)", NULL},
        {"{\"__metadata__\": {\"format\": \"pt\"}, \"a\\\"]},[\": {\"dtype\": \"F32\", \"shape\": [2], "
         "\"data_offsets\": [0, 8.00]}}", 8, PLM_ERR_FORMAT,
         "tensor 'a\"]},[': data_offsets[1] = 8.00 is not a JSON integer (written with a fraction or an exponent)", NULL},
        /* the data section covered exactly: no gap, no bytes after the last tensor */
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
         "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}", 12, PLM_ERR_FORMAT, "tensor 'b' begins at byte 8", "end at 4"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8, PLM_ERR_FORMAT, "tensor 'a' begins at byte 4", "gaps"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 9, PLM_ERR_FORMAT, "cover 4 bytes but the data section holds 9", "5 bytes after the last tensor"},
        {"{}", 3, PLM_ERR_FORMAT, "cover 0 bytes but the data section holds 3", NULL},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
         "\"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}}", 8, PLM_ERR_FORMAT, "'a' [0, 8] and 'z' [4, 4] overlap", NULL},
        /* strict JSON: one value, whitespace only after it, no lenient forms */
        {"{} {}", 0, PLM_ERR_FORMAT, "not valid JSON", "after the JSON value (at byte 3"},
        {"{}\x01", 0, PLM_ERR_FORMAT, "not valid JSON", "at byte 2"},
        {"\x01{}", 0, PLM_ERR_FORMAT, "not valid JSON", "at byte 0"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [01], \"data_offsets\": [0, 4]}}", 4, PLM_ERR_FORMAT, "leading zero", NULL},
        {"{\"w\xff\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, PLM_ERR_FORMAT, "invalid UTF-8", "at byte 3"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4],}}", 4, PLM_ERR_FORMAT, "expected a string key", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const st_case *c = &cases[i];
        write_st(p, c->header, c->data_len);
        s = NULL;
        plm_status st = plm_st_open_file(&s, p, &err);
        int before = n_fail;
        expect_fail_(__LINE__, st, c->code, &err, c->want1, c->want2, (char *)NULL);
        if (n_fail != before) printf("     case %zu: header %s\n", i, c->header);
        CHECK(s == NULL, "case %zu: out not NULL", i);
        plm_st_close(s);
    }

    /* a NUL byte in the header's padding (cJSON would stop there; the reference refuses it) */
    {
        static const char h[] = "{}  \0\0\0\0";
        unsigned char raw[8 + sizeof h - 1] = {sizeof h - 1};
        memcpy(raw + 8, h, sizeof h - 1);
        write_bytes(p, raw, sizeof raw);
        EXPECT_FAIL(plm_st_open_file(&s, p, &err), PLM_ERR_FORMAT, &err, "not valid JSON", "at byte 4");
    }

    /* valid: other dtypes kept with their name, zero-size tensors at a shared offset, padding */
    write_st(p,
             "{\"__metadata__\": {\"format\": \"pt\"}, \"ids\": {\"dtype\": \"I64\", \"shape\": [2], "
             "\"data_offsets\": [0, 16]}, \"f8\": {\"dtype\": \"F8_E4M3\", \"shape\": [2, 2], "
             "\"data_offsets\": [16, 20]}, \"f4\": {\"dtype\": \"F4\", \"shape\": [3, 2], "
             "\"data_offsets\": [20, 23]}, \"z1\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [16, 16]}, "
             "\"z2\": {\"dtype\": \"BF16\", \"shape\": [3, 0], \"data_offsets\": [16, 16]}, "
             "\"z3\": {\"dtype\": \"F32\", \"shape\": [0, 9007199254740992, 9007199254740992], \"data_offsets\": [23, 23]}}"
             "     \n\t\r ",
             23);
    s = NULL;
    CHECK(plm_st_open_file(&s, p, &err) == PLM_OK, "other dtypes: %s", err.msg);
    if (s) {
        const plm_st_tensor *t = plm_st_find(s, "ids");
        CHECK(t && t->dtype == PLM_DT_OTHER && strcmp(t->dtype_name, "I64") == 0 && t->nbytes == 16,
              "I64 kept");
        t = plm_st_find(s, "f8");
        CHECK(t && t->dtype == PLM_DT_OTHER && strcmp(t->dtype_name, "F8_E4M3") == 0, "F8 kept");
        t = plm_st_find(s, "f4");
        CHECK(t && t->dtype == PLM_DT_OTHER && t->nbytes == 3, "F4 kept (4 bits an element)");
        CHECK(plm_st_find(s, "z1") && plm_st_find(s, "z2") && plm_st_find(s, "z3") && plm_st_count(s) == 6,
              "zero-size");
        plm_st_close(s);
    }
    unlink(p);
    section("safetensors corrupt files refused", f0);
}

/* ---------------------------------------------------------------- directories and shards */
static void write_index(const char *dir, const char *json) {
    char p[300];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_bytes(p, json, strlen(json));
}

static void test_dirs(void) {
    int f0 = n_fail;
    plm_error err;
    plm_st_set *s = NULL;
    EXPECT_FAIL(plm_st_open_dir(&s, "/nonexistent-dir-plm", &err), PLM_ERR_IO, &err, "nonexistent-dir-plm");
    char *d = path_in("shards");
    mkdir(d, 0755);
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_IO, &err, "no model.safetensors");
    char file[300];
    snprintf(file, sizeof file, "%s/file", d);
    write_bytes(file, "x", 1);
    EXPECT_FAIL(plm_st_open_dir(&s, file, &err), PLM_ERR_IO, &err, "not a directory");
    unlink(file);

    float v1[4] = {1, 2, 3, 4}, v2[2] = {5, 6}, v3[3] = {7, 8, 9};
    const int64_t s4[1] = {4}, s2[1] = {2}, s3[1] = {3};
    char p1[300], p2[300], p3[300];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", d);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", d);
    snprintf(p3, sizeof p3, "%s/extra.safetensors", d);
    plm_st_writer *w = plm_st_writer_new();
    plm_st_writer_add(w, "a", PLM_DT_F32, 1, s4, v1, &err);
    plm_st_writer_add(w, "b", PLM_DT_F32, 1, s2, v2, &err);
    CHECK(plm_st_writer_save(w, p1, &err) == PLM_OK, "%s", err.msg);
    plm_st_writer_free(w);
    w = plm_st_writer_new();
    plm_st_writer_add(w, "c", PLM_DT_F32, 1, s3, v3, &err);
    CHECK(plm_st_writer_save(w, p2, &err) == PLM_OK, "%s", err.msg);
    plm_st_writer_free(w);
    w = plm_st_writer_new();
    plm_st_writer_add(w, "a", PLM_DT_F32, 1, s2, v2, &err);
    CHECK(plm_st_writer_save(w, p3, &err) == PLM_OK, "%s", err.msg);
    plm_st_writer_free(w);

    write_index(d, "{\"metadata\": {\"total_size\": 36}, \"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", "
                   "\"c\": \"model-00002-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\"}}");
    CHECK(plm_st_open_dir(&s, d, &err) == PLM_OK, "sharded: %s", err.msg);
    if (s) {
        const plm_st_tensor *t = plm_st_find(s, "c");
        CHECK(plm_st_count(s) == 3 && t && t->file == 1 && memcmp(t->data, v3, sizeof v3) == 0, "shard 2");
        t = plm_st_find(s, "b");
        CHECK(t && t->file == 0 && memcmp(t->data, v2, sizeof v2) == 0, "shard 1");
        CHECK(plm_st_file_bytes(s) == file_size(p1) + file_size(p2), "file bytes of shards");
        plm_st_close(s);
        s = NULL;
    }
    const char *A = "\"a\": \"model-00001-of-00002.safetensors\", ", *B = "\"b\": \"model-00001-of-00002.safetensors\"";
    char js[1024];
    write_index(d, "{\"weight_map\": {\"a\": ");
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "model.safetensors.index.json", "JSON");
    /* a valid index followed by a second object and garbage: one JSON value per document */
    snprintf(js, sizeof js, "{\"weight_map\": {%s%s, \"c\": \"model-00002-of-00002.safetensors\"}}\n"
                            "{\"weight_map\": {}} garbage\n", A, B);
    write_index(d, js);
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "model.safetensors.index.json",
                "line 2, column 1: invalid JSON: unexpected characters after the JSON value");
    write_index(d, "{\"weight_map\":\n {\"a\": \"x\\u0000\", \"b\": 01}}");
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "line 2, column 25", "leading zero");
    write_index(d, "{\"weights\": {}}");
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "index.json", "weight_map");
    write_index(d, "{\"weight_map\": {}}");
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "index.json", "empty");
    write_index(d, "{\"weight_map\": {\"a\": 3}}");
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "'a'", "shard file name");
    write_index(d, "{\"weight_map\": {\"a\": \"../x.safetensors\"}}");
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "'a'", "shard file name");
    snprintf(js, sizeof js, "{\"weight_map\": {%s%s, \"c\": \"model-00003-of-00003.safetensors\"}}", A, B);
    write_index(d, js);
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_IO, &err, "model-00003-of-00003.safetensors", "cannot open");
    snprintf(js, sizeof js, "{\"weight_map\": {%s%s, \"c\": \"model-00002-of-00002.safetensors\", "
                            "\"d\": \"model-00002-of-00002.safetensors\"}}", A, B);
    write_index(d, js);
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "'d'", "absent");
    snprintf(js, sizeof js, "{\"weight_map\": {%s\"c\": \"model-00002-of-00002.safetensors\"}}", A);
    write_index(d, js);
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "'b'", "not listed");
    snprintf(js, sizeof js, "{\"weight_map\": {%s\"b\": \"model-00002-of-00002.safetensors\", "
                            "\"c\": \"model-00002-of-00002.safetensors\"}}", A);
    write_index(d, js);
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "'b'", "found in");
    snprintf(js, sizeof js, "{\"weight_map\": {%s%s, \"a\": \"extra.safetensors\", \"c\": \"model-00002-of-00002.safetensors\"}}", A, B);
    write_index(d, js);
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "'a' appears twice");
    write_st(p2, "{\"c\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 16]}}", 16);
    snprintf(js, sizeof js, "{\"weight_map\": {%s%s, \"c\": \"model-00002-of-00002.safetensors\"}}", A, B);
    write_index(d, js);
    EXPECT_FAIL(plm_st_open_dir(&s, d, &err), PLM_ERR_FORMAT, &err, "model-00002-of-00002.safetensors", "'c'");
    CHECK(s == NULL, "out NULL after failures");

    /* a checkpoint written by Hugging Face, when the test data is present */
    if (file_size("tests/data/tiny-dense/model.safetensors") > 0) {
        CHECK(plm_st_open_dir(&s, "tests/data/tiny-dense", &err) == PLM_OK && plm_st_count(s) > 0,
              "tiny-dense: %s", err.msg);
        plm_st_close(s);
    }
    section("safetensors directories and shards", f0);
}

/* ---------------------------------------------------------------- npy */
static void write_npy_raw(const char *path, int major, const char *dict, size_t data_len) {
    unsigned char b[4096];
    size_t dl = strlen(dict), pre = major == 1 ? 10 : 12;
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    size_t hl = dl + 1;
    for (size_t i = 0; i < pre - 8; i++) b[8 + i] = (unsigned char)((hl >> (8 * i)) & 0xff);
    memcpy(b + pre, dict, dl);
    b[pre + dl] = '\n';
    memset(b + pre + hl, 0x11, data_len);
    write_bytes(path, b, pre + hl + data_len);
}

static void test_npy(void) {
    int f0 = n_fail;
    plm_error err;
    float *data = NULL;
    int nd = -1;
    int64_t sh[8];
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i * -0.5f + 1e-3f;
    const char *p = path_in("a.npy");
    const int64_t shapes[4][3] = {{2, 3}, {5}, {0}, {0, 4}};
    const int nds[4] = {2, 1, 0, 2};
    for (int k = 0; k < 4; k++) {
        CHECK(plm_npy_save_f32(p, v, nds[k], shapes[k], &err) == PLM_OK, "save: %s", err.msg);
        CHECK(file_size(p) % 4 == 0, "size");
        CHECK(plm_npy_load_f32(&data, &nd, sh, p, &err) == PLM_OK, "load: %s", err.msg);
        int64_t n = 1;
        for (int d = 0; d < nds[k]; d++) n *= shapes[k][d];
        int same = nd == nds[k] && data != NULL;
        for (int d = 0; same && d < nd; d++) same = sh[d] == shapes[k][d];
        CHECK(same && memcmp(data, v, (size_t)n * 4) == 0, "npy round trip %d", k);
        free(data);
        data = NULL;
    }
    /* exact header of a [2, 3] array */
    const int64_t s23[2] = {2, 3};
    plm_npy_save_f32(p, v, 2, s23, &err);
    unsigned char raw[128];
    FILE *f = fopen(p, "rb");
    CHECK(f && fread(raw, 1, 128, f) == 128, "read");
    fclose(f);
    const char *want = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    CHECK(memcmp(raw, "\x93NUMPY\x01\x00", 8) == 0 && raw[8] + 256 * raw[9] == 118 &&
              memcmp(raw + 10, want, strlen(want)) == 0 && raw[127] == '\n' && raw[126] == ' ' &&
              file_size(p) == 128 + 24,
          "npy header layout");
    const int64_t s5[1] = {5};
    plm_npy_save_f32(p, v, 1, s5, &err);
    f = fopen(p, "rb");
    memset(raw, 0, sizeof raw);
    CHECK(f && fread(raw, 1, 127, f) == 127 && strstr((char *)raw + 10, "'shape': (5,), }") != NULL, "1-d tuple");
    fclose(f);

    /* version 2.0, other key order, double quotes */
    write_npy_raw(p, 2, "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<f4\"}", 12);
    CHECK(plm_npy_load_f32(&data, &nd, sh, p, &err) == PLM_OK && nd == 1 && sh[0] == 3, "v2: %s", err.msg);
    free(data);
    data = NULL;

    struct { const char *dict; int major; size_t data; const char *want; } bad[] = {
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 1, 16, "descr"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 1, 8, "descr"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 1, 16, "fortran_order"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 1, 12, "data is 12 bytes but the shape needs 16"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 1, 20, "data is 20 bytes"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 2), }", 1, 16, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,), }", 1, 16, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, }", 1, 16, "lacks"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 1, 8, "unexpected key"},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }", 1, 8, "malformed"},
        {"['descr']", 1, 8, "not a dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } xx", 1, 8, "after the dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999), }", 1, 8, "shape needs -1"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 3, 8, "version 3.0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_npy_raw(p, bad[i].major, bad[i].dict, bad[i].data);
        data = (float *)1;
        EXPECT_FAIL(plm_npy_load_f32(&data, &nd, sh, p, &err), PLM_ERR_FORMAT, &err, "a.npy", bad[i].want);
        CHECK(data == NULL, "data NULL after failure %zu", i);
    }
    write_bytes(p, "\x93NUMPX\x01\x00\x10\x00", 10);
    EXPECT_FAIL(plm_npy_load_f32(&data, &nd, sh, p, &err), PLM_ERR_FORMAT, &err, "a.npy", "magic");
    write_bytes(p, "", 0);
    EXPECT_FAIL(plm_npy_load_f32(&data, &nd, sh, p, &err), PLM_ERR_FORMAT, &err, "a.npy", "magic");
    write_bytes(p, "\x93NUMPY\x01\x00\xff\x00{}", 12);
    EXPECT_FAIL(plm_npy_load_f32(&data, &nd, sh, p, &err), PLM_ERR_FORMAT, &err, "a.npy", "header length 255 exceeds");
    unlink(p);
    EXPECT_FAIL(plm_npy_load_f32(&data, &nd, sh, p, &err), PLM_ERR_IO, &err, "a.npy");
    EXPECT_FAIL(plm_npy_save_f32("/nonexistent-dir-plm/a.npy", v, 2, s23, &err), PLM_ERR_IO, &err, "nonexistent-dir-plm");
    const int64_t sneg[1] = {-1};
    EXPECT_FAIL(plm_npy_save_f32(p, v, 1, sneg, &err), PLM_ERR_INPUT, &err, "a.npy");

    /* streaming writer: [10, 3] in blocks of 4 and 6 */
    float big[30];
    for (int i = 0; i < 30; i++) big[i] = (float)i * 0.25f;
    plm_npy_writer *nw = plm_npy_writer_open(p, 10, 3, &err);
    CHECK(nw != NULL, "writer open: %s", err.msg);
    CHECK(plm_npy_writer_write(nw, big, 4, &err) == PLM_OK, "%s", err.msg);
    CHECK(file_size(p) == 0, "nothing at the destination before commit");
    CHECK(plm_npy_writer_write(nw, big + 12, 6, &err) == PLM_OK, "%s", err.msg);
    EXPECT_FAIL(plm_npy_writer_write(nw, big, 1, &err), PLM_ERR_INPUT, &err, "rows");
    CHECK(plm_npy_writer_commit(nw, &err) == PLM_OK, "commit: %s", err.msg);
    CHECK(plm_npy_load_f32(&data, &nd, sh, p, &err) == PLM_OK && nd == 2 && sh[0] == 10 && sh[1] == 3 &&
              memcmp(data, big, sizeof big) == 0,
          "streamed array: %s", err.msg);
    free(data);
    data = NULL;
    unlink(p);
    int before = count_entries(g_dir);
    nw = plm_npy_writer_open(p, 10, 3, &err);
    plm_npy_writer_write(nw, big, 4, &err);
    CHECK(count_entries(g_dir) == before + 1, "temporary file while writing");
    EXPECT_FAIL(plm_npy_writer_commit(nw, &err), PLM_ERR_INPUT, &err, "4 of 10 rows");
    CHECK(count_entries(g_dir) == before && file_size(p) == 0, "nothing left after a failed commit");
    nw = plm_npy_writer_open(p, 2, 2, &err);
    plm_npy_writer_abort(nw);
    plm_npy_writer_abort(NULL);
    CHECK(count_entries(g_dir) == before, "nothing left after abort");
    CHECK(plm_npy_writer_open("/nonexistent-dir-plm/x.npy", 2, 2, &err) == NULL && err.code == PLM_ERR_IO,
          "writer open in a missing dir");
    CHECK(plm_npy_writer_open(p, -1, 2, &err) == NULL && err.code == PLM_ERR_INPUT, "writer bad shape");

    /* files written by numpy, when the test data is present */
    if (file_size("tests/data/gdn-cases/case0_q.npy") > 0) {
        CHECK(plm_npy_load_f32(&data, &nd, sh, "tests/data/gdn-cases/case0_q.npy", &err) == PLM_OK && nd > 0,
              "numpy-written file: %s", err.msg);
        free(data);
        data = NULL;
    }
    section("npy reader and writers", f0);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/plm_st_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 2;
    }
    test_roundtrip();
    test_conversions();
    test_corrupt();
    test_dirs();
    test_npy();
    printf("%s: %d checks passed, %d failed\n", n_fail ? "FAIL" : "ok", n_ok, n_fail);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (n_fail == 0 && system(cmd) != 0) printf("(could not remove %s)\n", g_dir);
    return n_fail ? 1 : 0;
}
