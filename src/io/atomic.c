/* Atomic file writing: temporary file in the same directory + fsync + rename. */
#include "io/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

static void release(plm_atomic_file *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    free(f->tmp);
    free(f->path);
    f->tmp = f->path = NULL;
}

plm_status plm_atomic_open(plm_atomic_file *f, const char *path, plm_error *err) {
    f->fd = -1;
    f->tmp = f->path = NULL;
    size_t n = strlen(path);
    if (n == 0) return plm_fail(err, PLM_ERR_INPUT, "empty output path");
    f->path = malloc(n + 1);
    f->tmp = malloc(n + sizeof ".tmp.XXXXXX");
    if (!f->path || !f->tmp) {
        release(f);
        return plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(f->path, path, n + 1);
    memcpy(f->tmp, path, n);
    memcpy(f->tmp + n, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    f->fd = mkstemp(f->tmp);
    if (f->fd < 0) {
        int e = errno;
        release(f);
        return plm_fail(err, PLM_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(e));
    }
    (void)fchmod(f->fd, 0644); /* mkstemp makes 0600; give the usual mode of a written file */
    return PLM_OK;
}

plm_status plm_atomic_write(plm_atomic_file *f, const void *buf, size_t n, plm_error *err) {
    const char *p = buf;
    if (f->fd < 0) return plm_fail(err, PLM_ERR_INTERNAL, "write to a closed file");
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(f->fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return plm_fail(err, PLM_ERR_IO, "%s: write failed: %s", f->path, strerror(errno));
        }
        if (w == 0) return plm_fail(err, PLM_ERR_IO, "%s: write made no progress", f->path);
        p += w;
        n -= (size_t)w;
    }
    return PLM_OK;
}

/* fsync of the directory holding path, so the rename itself is durable. Errors are ignored. */
static void sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

plm_status plm_atomic_commit(plm_atomic_file *f, plm_error *err) {
    if (f->fd < 0) {
        plm_atomic_abort(f);
        return plm_fail(err, PLM_ERR_INTERNAL, "commit of a closed file");
    }
    if (fsync(f->fd) != 0) {
        plm_status st = plm_fail(err, PLM_ERR_IO, "%s: fsync failed: %s", f->path, strerror(errno));
        plm_atomic_abort(f);
        return st;
    }
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0) {
        plm_status st = plm_fail(err, PLM_ERR_IO, "%s: close failed: %s", f->path, strerror(errno));
        plm_atomic_abort(f);
        return st;
    }
    if (rename(f->tmp, f->path) != 0) {
        plm_status st = plm_fail(err, PLM_ERR_IO, "%s: cannot rename %s into place: %s", f->path,
                                 f->tmp, strerror(errno));
        plm_atomic_abort(f);
        return st;
    }
    sync_dir(f->path);
    release(f);
    return PLM_OK;
}

void plm_atomic_abort(plm_atomic_file *f) {
    if (!f || !f->tmp) return; /* never opened, or already released (tmp is set exactly while open) */
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (f->tmp) unlink(f->tmp);
    release(f);
}
