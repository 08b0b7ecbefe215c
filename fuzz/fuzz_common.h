/* Helpers shared by the libFuzzer targets: a private scratch directory (in /dev/shm when there is
 * one) and whole-file writes. Header-only; each target is one translation unit. */
#ifndef PLM_FUZZ_COMMON_H
#define PLM_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static char fz_dirs_[4][512];

/* Removes the scratch directories (flat: files only) at exit. */
static inline void fz_cleanup_(void) {
    for (int i = 0; i < 4; i++) {
        if (!fz_dirs_[i][0]) continue;
        DIR *d = opendir(fz_dirs_[i]);
        if (d) {
            char p[1024];
            for (struct dirent *e; (e = readdir(d));) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                snprintf(p, sizeof p, "%s/%s", fz_dirs_[i], e->d_name);
                unlink(p);
            }
            closedir(d);
        }
        rmdir(fz_dirs_[i]);
    }
}

/* Creates a fresh directory named after tag, removed at exit; exits when it cannot (the fuzzer
 * cannot run without it). */
static inline void fz_mkdtemp(char *out, size_t cap, const char *tag) {
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(out, cap, "%s/plm-fuzz-%s-XXXXXX", base, tag);
    if (!mkdtemp(out)) {
        perror("fuzz: mkdtemp");
        exit(1);
    }
    for (int i = 0; i < 4; i++)
        if (!fz_dirs_[i][0]) {
            if (i == 0 || !fz_dirs_[0][0]) atexit(fz_cleanup_);
            snprintf(fz_dirs_[i], sizeof fz_dirs_[i], "%s", out);
            break;
        }
}

static inline void fz_path(char *out, size_t cap, const char *dir, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Writes n bytes to dir/name (replacing it); returns 0 on success. */
static inline int fz_write(const char *dir, const char *name, const void *data, size_t n) {
    char p[4096];
    fz_path(p, sizeof p, dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) != 0 || w != n) ? -1 : 0;
}

static inline void fz_unlink(const char *dir, const char *name) {
    char p[4096];
    fz_path(p, sizeof p, dir, name);
    unlink(p);
}

/* Reads a whole file (malloc'ed); NULL on failure. */
static inline unsigned char *fz_read(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *b = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) *n = (size_t)len;
    return b;
}

/* Writes a seed input: the mode byte, then the parts one after the other. */
static inline void fz_seed(const char *dir, const char *name, int mode, const void *a, size_t na, const void *b,
                           size_t nb) {
    char p[4096];
    fz_path(p, sizeof p, dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    if (mode >= 0) fputc(mode, f);
    if (na) fwrite(a, 1, na, f);
    if (nb) fwrite(b, 1, nb, f);
    fclose(f);
}

#endif
