/* .npy files (NumPy format 1.0 / 2.0), float32 little-endian C order only. The whole-array
 * functions are public (packlm.h: plm_npy_save_f32, plm_npy_load_f32); this adds a streaming
 * writer for arrays too large to hold: [rows, cols] written row block by row block.
 *
 * File layout: "\x93NUMPY", major, minor, header length (u16 LE for 1.0, u32 LE for 2.0), then a
 * Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (d0, d1, ...), } padded
 * with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes; then the data. */
#ifndef PLM_IO_NPY_H
#define PLM_IO_NPY_H

#include <stdint.h>

#include "packlm.h"

typedef struct plm_npy_writer plm_npy_writer;

/* Starts writing a [rows, cols] float32 array to a temporary file next to path. NULL on error. */
plm_npy_writer *plm_npy_writer_open(const char *path, int64_t rows, int64_t cols, plm_error *err);
/* Appends n_rows rows (n_rows * cols floats). More rows than announced is PLM_ERR_INPUT. After a
 * failed write the caller still owns w and ends it with plm_npy_writer_abort. */
plm_status plm_npy_writer_write(plm_npy_writer *w, const float *rows_data, int64_t n_rows,
                                plm_error *err);
/* Checks that every row was written, then fsync + rename over path. Always frees w; on failure
 * the temporary file is removed and path is untouched. */
plm_status plm_npy_writer_commit(plm_npy_writer *w, plm_error *err);
/* Removes the temporary file and frees w. NULL-safe. */
void plm_npy_writer_abort(plm_npy_writer *w);

#endif
