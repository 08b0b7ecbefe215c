/* Atomic file writing: data goes to a temporary file in the destination's directory
 * ("<path>.tmp.XXXXXX"), which commit fsyncs and renames over the path. Until commit succeeds the
 * destination is untouched; abort (or a failed commit) removes the temporary file. */
#ifndef PLM_IO_ATOMIC_H
#define PLM_IO_ATOMIC_H

#include <stddef.h>

#include "packlm.h"

typedef struct {
    int fd;        /* -1 once closed */
    char *tmp;     /* temporary path (malloc'ed) */
    char *path;    /* destination (malloc'ed) */
} plm_atomic_file;

plm_status plm_atomic_open(plm_atomic_file *f, const char *path, plm_error *err);
/* Writes all n bytes (retries short writes and EINTR). */
plm_status plm_atomic_write(plm_atomic_file *f, const void *buf, size_t n, plm_error *err);
/* fsync, close, rename, fsync of the directory (best effort). Always releases f; on failure the
 * temporary file is removed. */
plm_status plm_atomic_commit(plm_atomic_file *f, plm_error *err);
/* Removes the temporary file and releases f. Safe on a zeroed or already released f. */
void plm_atomic_abort(plm_atomic_file *f);

#endif
