/* Internal to the safetensors reader (safetensors.c, safetensors_index.c). */
#ifndef PLM_IO_SAFETENSORS_INTERNAL_H
#define PLM_IO_SAFETENSORS_INTERNAL_H

#include "io/safetensors.h"

typedef struct {
    char *path;           /* as opened (used in messages) */
    void *map;            /* whole file, PROT_READ / MAP_PRIVATE */
    size_t size;
    const uint8_t *data;  /* data section: map + 8 + header length */
    uint64_t data_len;
} plm_st_file;

struct plm_st_set {
    plm_st_file *files;
    int n_files, cap_files;
    plm_st_tensor *t;     /* in file order, then header order; names owned (malloc'ed) */
    int n, cap;
    int *sorted;          /* [n] indices of t sorted by name (plm_st_finish) */
    size_t total_bytes;
};

plm_status plm_st_set_new(plm_st_set **out, plm_error *err);
/* Maps one file, validates its header and appends its tensors (file index = s->n_files - 1). */
plm_status plm_st_add_file(plm_st_set *s, const char *path, plm_error *err);
/* Builds the sorted name index; refuses names that appear twice. */
plm_status plm_st_finish(plm_st_set *s, plm_error *err);
/* Index of the tensor in s->t, or -1. */
int plm_st_find_index(const plm_st_set *s, const char *name);

/* Dtype from a header string and its element size in bits; *elem_bits = 0 when the string is not
 * a safetensors dtype. */
plm_dtype plm_dtype_from_name(const char *name, size_t *elem_bits);

#endif
