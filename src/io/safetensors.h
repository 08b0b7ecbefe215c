/* safetensors: read-only mmap of one or more (sharded) files, every header field validated.
 *
 * Layout of a file: u64 little-endian header length N, N bytes of JSON header
 * {"name": {"dtype": "F32"|"BF16"|"F16"|..., "shape": [...], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {...}}, then the data section; offsets are relative to the data section. */
#ifndef PLM_IO_SAFETENSORS_H
#define PLM_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "packlm.h"

/* PLM_DT_OTHER: a dtype packlm does not compute with (I64, F64, U8, BOOL, F8_E4M3, ...). Such
 * tensors are kept in the set (their name is in plm_st_tensor.dtype_name) so a loader can refuse
 * them by name, only if it uses them. */
/* PLM_DT_I8: int8 values (the quantized weights of an int8 checkpoint, read and written).
 * PLM_DT_Q8: never in a file: a matrix in packlm's int8 layout (plm_mat with scales; kernels.h). */
typedef enum { PLM_DT_F32 = 0, PLM_DT_BF16, PLM_DT_F16, PLM_DT_I8, PLM_DT_Q8, PLM_DT_OTHER } plm_dtype;

size_t plm_dtype_size(plm_dtype dt);        /* 0 for PLM_DT_OTHER; 1 for I8 and Q8 (the int8 values) */
const char *plm_dtype_name(plm_dtype dt);   /* "F32", "BF16", "F16", "I8", "Q8", "OTHER" */

typedef struct {
    const char *name;       /* points into the set's own storage */
    plm_dtype dtype;
    char dtype_name[16];    /* the header's dtype string ("F32", "I64", ...), truncated to 15 */
    int ndim;
    int64_t shape[8];
    const void *data;       /* inside the read-only mapping */
    size_t nbytes;
    int file;               /* index of the shard that holds it */
} plm_st_tensor;

typedef struct plm_st_set plm_st_set; /* all tensors of a checkpoint, from one or several files */

/* Opens dir/model.safetensors, or every shard named by dir/model.safetensors.index.json.
 * Validates: header length within the file, JSON well formed, each entry's dtype known (tensors of
 * other dtypes are refused by name only when looked up), shape non-negative with no overflow,
 * data_offsets within the data section and equal in size to shape x dtype, no two tensors
 * overlapping, names unique across shards; the index's weight_map must agree with the shards. */
plm_status plm_st_open_dir(plm_st_set **out, const char *dir, plm_error *err);
/* Opens a single file (same validation). */
plm_status plm_st_open_file(plm_st_set **out, const char *path, plm_error *err);
void plm_st_close(plm_st_set *s);

int plm_st_count(const plm_st_set *s);
const plm_st_tensor *plm_st_at(const plm_st_set *s, int i);
/* NULL when absent. A tensor of dtype PLM_DT_OTHER is returned too: the caller checks dtype. */
const plm_st_tensor *plm_st_find(const plm_st_set *s, const char *name);
size_t plm_st_file_bytes(const plm_st_set *s); /* total bytes of all mapped files */

/* Writer (tests and the benchmark build checkpoints with it). Tensors are added in order, then
 * written as one file atomically (temporary file + rename). */
typedef struct plm_st_writer plm_st_writer;
plm_st_writer *plm_st_writer_new(void);
/* Copies data (nbytes = product(shape) * dtype size). Names must be unique and non-empty;
 * PLM_DT_OTHER is refused (PLM_ERR_INPUT). */
plm_status plm_st_writer_add(plm_st_writer *w, const char *name, plm_dtype dt, int ndim,
                             const int64_t *shape, const void *data, plm_error *err);
/* Header: JSON padded with spaces to a length multiple of 8 (as Hugging Face writes it), with
 * "__metadata__": {"format": "pt"}; data in the order added. On failure no file is left behind. */
plm_status plm_st_writer_save(plm_st_writer *w, const char *path, plm_error *err);
void plm_st_writer_free(plm_st_writer *w);

/* Element i of a 16-bit tensor at p. Mapped tensors lie where their file puts them and the format
 * allows any offset (an odd header length misaligns every tensor), so scalar reads of file data go
 * through memcpy: no misaligned uint16_t load. */
static inline uint16_t plm_ld_u16(const void *p, int64_t i) {
    uint16_t v;
    memcpy(&v, (const unsigned char *)p + 2 * i, sizeof v);
    return v;
}

/* Conversions (scalar; the hot paths have their own). */
static inline float plm_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}
uint16_t plm_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */
float plm_f16_to_f32(uint16_t h);
uint16_t plm_f32_to_f16(float f);

#endif
