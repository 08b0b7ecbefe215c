/* .npy files (NumPy format 1.0 / 2.0), float32 little-endian C order only. The whole-array
 * functions are public (packlm.h: plm_npy_save_f32, plm_npy_load_f32); so is the streaming
 * writer for arrays too large to hold: [rows, cols] written row block by row block.
 *
 * File layout: "\x93NUMPY", major, minor, header length (u16 LE for 1.0, u32 LE for 2.0), then a
 * Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (d0, d1, ...), } padded
 * with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes; then the data. */
#ifndef PLM_IO_NPY_H
#define PLM_IO_NPY_H

#include <stdint.h>

#include "packlm.h"

/* The streaming writer (plm_npy_writer_open / _write / _commit / _abort) is declared in packlm.h. */

#endif
