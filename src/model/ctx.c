/* The running context: kernel table, thread count, scratch memory reused across steps. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#include <stdio.h>
#include <string.h>

#include "model/cuda.h"
#include "model/model.h"
#include "util/error.h"

plm_ctx_params plm_ctx_default_params(void) {
    plm_ctx_params p = {0};
    return p;
}

plm_status plm_ctx_params_weights(plm_ctx_params *p, const char *spec, plm_error *err) {
    if (!spec) return plm_fail(err, PLM_ERR_INPUT, "no weights specification");
    plm_ctx_params q = *p;
    q.int8_keep_head = q.int8_linear = 0;
    q.int8_act_bits = 0;
    if (!strcmp(spec, "stored")) {
        q.weights = PLM_WEIGHTS_STORED;
        *p = q;
        return PLM_OK;
    }
    const char *s = spec;
    if (!strncmp(s, "int8-keep-head", 14) && (!s[14] || s[14] == ',')) q.int8_keep_head = 1, s += 14;
    else if (!strncmp(s, "int8", 4) && (!s[4] || s[4] == ',')) s += 4;
    else
        return plm_fail(err, PLM_ERR_INPUT, "weights \"%s\": expected stored, or int8 with any of ,keep-head "
                        ",linear ,keep-linear ,act8 ,act16", spec);
    q.weights = PLM_WEIGHTS_INT8;
    while (*s == ',') {
        const char *e = strchr(s + 1, ',');
        const size_t n = e ? (size_t)(e - s - 1) : strlen(s + 1);
        if (n == 9 && !strncmp(s + 1, "keep-head", n)) q.int8_keep_head = 1;
        else if (n == 6 && !strncmp(s + 1, "linear", n)) q.int8_linear = 1;
        else if (n == 11 && !strncmp(s + 1, "keep-linear", n)) q.int8_linear = 0;
        else if (n == 4 && !strncmp(s + 1, "act8", n)) q.int8_act_bits = 8;
        else if (n == 5 && !strncmp(s + 1, "act16", n)) q.int8_act_bits = 16;
        else
            return plm_fail(err, PLM_ERR_INPUT, "weights \"%s\": unknown int8 option \"%.*s\" (keep-head, linear, "
                            "keep-linear, act8, act16)", spec, (int)(n < 64 ? n : 64), s + 1);
        s += 1 + n;
    }
    if (*s) return plm_fail(err, PLM_ERR_INPUT, "weights \"%s\": expected stored, or int8 with options", spec);
    *p = q;
    return PLM_OK;
}

/* "cpu" -> -1, "cuda" -> 0, "cuda:N" -> N; -2 when malformed */
static int parse_device(const char *d) {
    if (!d || !strcmp(d, "cpu")) return -1;
    if (!strcmp(d, "cuda")) return 0;
    if (strncmp(d, "cuda:", 5) || !d[5] || strlen(d + 5) > 4) return -2;
    int n = 0;
    for (const char *q = d + 5; *q; q++) {
        if (*q < '0' || *q > '9') return -2;
        n = n * 10 + (*q - '0');
    }
    return n;
}

plm_status plm_ctx_new(plm_ctx **out, const plm_model *m, const plm_ctx_params *p, plm_error *err) {
    *out = NULL;
    plm_ctx *c = calloc(1, sizeof *c);
    if (!c) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    c->model = m;
    c->p = p ? *p : plm_ctx_default_params();
    c->dev = parse_device(c->p.device);
    c->p.device = NULL; /* not kept: the caller's string need not outlive the context */
    if (c->dev == -2) {
        free(c);
        return plm_fail(err, PLM_ERR_INPUT, "unknown device \"%s\" (expected cpu, cuda or cuda:N)", p->device);
    }
    if (c->dev < 0) snprintf(c->dev_name, sizeof c->dev_name, "cpu");
    else snprintf(c->dev_name, sizeof c->dev_name, "cuda:%d", c->dev);
    if (c->p.weights != PLM_WEIGHTS_STORED && c->p.weights != PLM_WEIGHTS_INT8) {
        free(c);
        return plm_fail(err, PLM_ERR_INPUT, "unknown weights mode %d (expected stored or int8)", (int)p->weights);
    }
    if (!c->p.int8_act_bits) c->p.int8_act_bits = PLM_INT8_ACT_BITS_DEFAULT;
    if (c->p.int8_act_bits != 8 && c->p.int8_act_bits != 16) {
        free(c);
        return plm_fail(err, PLM_ERR_INPUT, "int8_act_bits %d: expected 8, 16 or 0 (the default)", (int)p->int8_act_bits);
    }
    if (c->dev >= 0 && (c->p.weights == PLM_WEIGHTS_INT8 || m->file_q8)) {
        free(c);
        return plm_fail(err, PLM_ERR_UNSUPPORTED, "int8 weights run on the CPU only, not on %s%s", p->device,
                        m->file_q8 ? " (this checkpoint holds int8 matrices)" : "");
    }
    if (c->dev >= 0) {
        if (c->p.use_reference) {
            free(c);
            return plm_fail(err, PLM_ERR_UNSUPPORTED, "the reference kernels run on the CPU only, not on %s",
                            p->device);
        }
        if (c->p.batch_invariant) {
            free(c);
            return plm_fail(err, PLM_ERR_UNSUPPORTED, "batch-invariant kernels run on the CPU only, not on %s",
                            p->device);
        }
        plm_status st = plm_cuda_open(&c->cuda, m, c->dev, c->p.device_mem_limit, c->p.bf16_single_pass, err);
        if (st) {
            free(c);
            return st;
        }
    }
    if (c->p.n_threads <= 0) c->p.n_threads = omp_get_num_procs();
    if (c->p.n_threads < 1) c->p.n_threads = 1;
    /* packlm threads its own work (OpenMP) and calls OpenBLAS from inside it, one panel per thread:
       OpenBLAS's own threads would only fight the team for the cores. Its thread count is
       process-wide; packlm sets it to one. */
    openblas_set_num_threads(1);
    plm_kernels_init(&c->k, c->p.use_reference, c->p.batch_invariant, c->p.bf16_single_pass);
    plm_kernels_int8_act(&c->k, c->p.int8_act_bits);
    c->layers = m->layers;
    c->lm_head = &m->lm_head;
    if (c->p.weights == PLM_WEIGHTS_INT8) {
        /* the model's int8 copies are built once, under the model's lock (the model is otherwise
           read-only and may be shared between contexts) */
        plm_status st = plm_model_int8((plm_model *)m, c->p.int8_keep_head, !c->p.int8_linear, c->p.n_threads,
                                       &c->layers, &c->lm_head, err);
        if (st) {
            plm_ctx_free(c);
            return st;
        }
    }
    *out = c;
    return PLM_OK;
}

void plm_ctx_free(plm_ctx *c) {
    if (!c) return;
    for (int i = 0; i < c->n_scratch_states; i++) plm_state_free(c->scratch_states[i]);
    free(c->scratch_states);
    plm_cuda_close(c->cuda);
    free(c->scratch);
    free(c);
}

const char *plm_ctx_device(const plm_ctx *c) { return c->dev_name; }

size_t plm_ctx_device_bytes(const plm_ctx *c) { return c->cuda ? plm_cuda_bytes(c->cuda) : 0; }

float *plm_ctx_scratch(plm_ctx *c, size_t n) {
    if (n > c->scratch_n) {
        free(c->scratch);
        c->scratch = aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
        c->scratch_n = c->scratch ? n : 0;
    }
    return c->scratch;
}
