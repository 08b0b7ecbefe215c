/* plm_write_file_atomic: a whole file through the atomic writer. */
#include "io/atomic.h"

plm_status plm_write_file_atomic(const char *path, const void *data, size_t n, plm_error *err) {
    plm_atomic_file f;
    plm_status st = plm_atomic_open(&f, path, err);
    if (st) return st;
    if ((st = plm_atomic_write(&f, data, n, err))) {
        plm_atomic_abort(&f);
        return st;
    }
    return plm_atomic_commit(&f, err);
}
