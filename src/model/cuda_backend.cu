/* The CUDA backend: a context's device side. It uploads the weights once (BF16 stays BF16, F32
 * stays F32, F16 is widened to F32), keeps a stream, a cuBLAS handle and the step's scratch, and runs
 * a validated step (model/step.c) over the layers exactly as model/layers.c does on the CPU:
 * projections, MLPs, experts and the lm_head as cuBLAS GEMMs over all T rows; the token mixers
 * (kernels/conv.cu, gdn.cu, attn.cu) driven by the step's segments and each segment's state.
 *
 * One step = one upload of its small tables (tokens, segments, positions, state and KV block
 * pointers) from pinned memory, the layers on the stream, then the requested outputs copied back
 * (or, for PLM_MEM_DEVICE arrays, read and written in device memory: model/cuda_devmem.cu).
 * MoE layers read the routing back to group tokens by expert (one synchronisation per MoE layer).
 * Every allocation is made before the first layer runs: a step that does not fit is refused with the
 * bytes it needed and no state changed. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "model/cuda.h"
#include "model/model.h"
#include "util/error.h"
}
#include "kernels/cuda_ops.h"
#include "model/cuda_devmem.h"

#define OUT_ROWS_MAX 1024           /* rows of logits per lm_head block */
#define BLAS_WS_BYTES (32u << 20)   /* cuBLAS workspace (32 MiB, as cuBLAS advises for Hopper) */
#define GRAPH_MAX_T 256             /* steps of at most this many tokens run their layers as a graph */
#define GRAPH_SLOTS 4
#ifndef PLM_GRAPH_UPDATE /* 0: a new plan's graph is always instantiated anew (for comparison) */
#define PLM_GRAPH_UPDATE 1
#endif
#define STACK_MAX_T 256             /* precise products of at most this many rows and ... */
#define STACK_MAX_ROWS 4096         /* ... at most this many weight rows run hi and lo as one pass */
#ifndef PLM_SPLITK /* single pass: a layer's output product of more rows than the skinny GEMM takes, as long as
                      its parts fit in stk (1,024 rows at the 0.8B shape), in this many column slices (256
                      sequences' decode: 1 slice 54,124-54,194 tokens/s, 2 slices 55,096-55,566, 4 slices
                      54,396-54,865, one call on the H200; measured at 256 rows only; -DPLM_SPLITK=1: none) */
#define PLM_SPLITK 2
#endif
#define OUT_BYTES_MAX (512u << 20)  /* and at most this many bytes of them (each block reads the whole lm_head) */

typedef struct {
    const void *d;
    int bf16; /* 1: BF16, 0: F32 */
    int64_t rows, cols;
} dmat;

typedef struct {
    float *in_norm, *post_norm, *conv_w, *neg_A, *dt_bias, *gnorm, *q_norm, *k_norm;
    dmat qkv, z, b, a, out, q, k, v, o, gate, up, down, router, sh_gate, sh_up, sh_down, sh_score;
    dmat *e_gate, *e_up, *e_down;
} dlayer;

struct plm_cuda {
    int dev;
    char name[16];
    const plm_model *m;
    cudaStream_t st;
    cublasHandle_t blas;
    size_t limit;              /* 0: none */
    char *w;                   /* all weights, one allocation */
    size_t w_bytes, w_used;
    dmat embed, lm_head;
    float *final_norm, *inv_freq;
    dlayer *L;
    char *scr;                 /* step scratch (device) */
    size_t scr_bytes;
    char *pin;                 /* step tables and small outputs (pinned host) */
    size_t pin_bytes;
    /* what the pinned tables' state pointers (conv, rec, KV blocks) hold since the last step: its
       segments' states, their identities and KV block counts, at these tables' addresses (tab_n -1:
       nothing known). A state's conv, rec and KV block pointers never change in its life (slots and
       slabs never move; KV blocks are only appended) and a new life is a new identity, so a segment
       with the same three at the same place needs no rewrite */
    const plm_state **tab_st;
    uint64_t *tab_id;
    int *tab_nb, tab_cap, tab_n, tab_nbt;
    const void *tab_at[4];
    int in_step;               /* a step's upload was queued and the step has not synced since (an error
                                  return): its copies may still land in the pinned block */
    char *aux;                 /* device tables of the checks of PLM_MEM_DEVICE arrays (cuda_devmem.cu) */
    size_t aux_bytes;
    int max_cols;              /* widest GEMM input (bf16 staging) */
    int split;                 /* BF16 GEMMs take their input as two BF16 parts (F32 accuracy) */
    int n_sm;                  /* the device's SMs (attention's key splits) */
    const void *xb_of, *xb_at; /* the GEMM input whose BF16 form is in xb_at, and its length */
    int64_t xb_n;
    void *blas_ws;             /* cuBLAS workspace, set explicitly so GEMMs can be captured in graphs */
    void *sk_work;             /* the skinny GEMM's partial sums and counters (plm_skinny_work_bytes, zeroed once) */
    float *stk;                /* a stacked precise product's two halves, or a split-K product's parts (2 STACK_MAX_T x STACK_MAX_ROWS floats) */
    const float *defer_to;     /* a stacked product into this (the step's layer output) leaves its halves in stk ... */
    int deferred;              /* ... and sets this to their count: the residual add + norm sums them (add_norm) */
    unsigned *dec_ctr;         /* the decode mixer's counters (PLM_GDN_DEC_CTRS, zeroed once) */
    /* the layers of small steps (decode) replayed as CUDA graphs, keyed by the step's whole plan (its
     * shape and every scratch address); least recently used replaced */
    struct graph_slot *graphs;
    unsigned graph_clock;
    plm_slots *slots;          /* the states' slabs (plm_cuda_slot_take) */
    unsigned blas_calls;       /* cuBLAS calls made: a captured graph that holds none links its kernels by
                                  programmatic edges (every packlm kernel waits for its predecessors) */
    int pdl;                   /* those edges are used (PLM_PDL=0 turns them off) */
    unsigned n_capture, n_update; /* graphs captured, and of them those that updated the one they replaced */
#ifdef PLM_STEP_TIMING
    /* a measuring build (-DPLM_STEP_TIMING): each step's GPU time in three parts, and the GPU's idle
       time before it, from CUDA events; summed per step size and printed to stderr on close */
    cudaEvent_t ev[4], ev_last;
    int have_last;
    struct { int64_t T, seen, n; double gap, up, layers, tail, host_in, host_prep, host_plan, host_tab, host_out; } tm[8];
    struct timespec tw_end; /* the last step's return */
    double capture_ms, inst_ms;
#endif
};

/* ---------------------------------------------------------------- errors and memory */
static plm_status cu_fail(plm_error *err, int dev, const char *what, cudaError_t e) {
    cudaGetLastError(); /* clear a non-sticky error */
    return plm_fail(err, PLM_ERR_INTERNAL, "cuda:%d: %s: %s (%s)", dev, what, cudaGetErrorString(e),
                    cudaGetErrorName(e));
}

#define CK(dev, what, call)                                                                                         \
    do {                                                                                                            \
        cudaError_t e_ = (call);                                                                                    \
        if (e_ != cudaSuccess) return cu_fail(err, (dev), (what), e_);                                              \
    } while (0)

static plm_status oom(plm_error *err, int dev, size_t bytes, const char *what) {
    size_t fr = 0, tot = 0;
    cudaGetLastError();
    cudaMemGetInfo(&fr, &tot);
    return plm_fail(err, PLM_ERR_NOMEM,
                    "cuda:%d: out of device memory: %zu bytes (%.1f MiB) asked for %s, %zu bytes free of %zu", dev,
                    bytes, bytes / 1048576.0, what, fr, tot);
}

static plm_status dev_malloc(int dev, void **p, size_t bytes, const char *what, plm_error *err) {
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
    if (e == cudaErrorMemoryAllocation) return oom(err, dev, bytes, what);
    if (e != cudaSuccess) return cu_fail(err, dev, what, e);
    return PLM_OK;
}

extern "C" int plm_cuda_built(void) { return 1; }

/* States, KV slabs and snapshots come from the device's stream-ordered memory pool on the legacy
 * default stream (ordered with every context's stream), which keeps freed memory for reuse: a KV
 * block every 64 tokens or a fresh state per sequence costs microseconds, not a cudaMalloc. */
static void keep_pool(int dev) {
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    cudaGetLastError();
}

extern "C" plm_status plm_cuda_alloc(int dev, void **p, size_t bytes, const char *what, plm_error *err) {
    *p = NULL;
    CK(dev, "selecting the device", cudaSetDevice(dev));
    keep_pool(dev);
    cudaError_t e = cudaMallocAsync(p, bytes ? bytes : 16, 0);
    if (e == cudaErrorMemoryAllocation) return oom(err, dev, bytes, what);
    if (e != cudaSuccess) return cu_fail(err, dev, what, e);
    return PLM_OK;
}

/* ---------------------------------------------------------------- the states' slabs */
#define SLOT_GROUPS 64 /* groups of slabs at most */
#ifndef SLOT_GROUP_MIN  /* slots of the first group; each next group twice the one before, up to SLOT_GROUP_MAX */
#define SLOT_GROUP_MIN 4
#endif
#ifndef SLOT_GROUP_MAX
#define SLOT_GROUP_MAX (SLOT_GROUP_MIN > 64 ? SLOT_GROUP_MIN : 64)
#endif
static_assert(SLOT_GROUP_MIN >= 1 && SLOT_GROUP_MAX >= SLOT_GROUP_MIN, "slab groups of at least one slot");

struct plm_slots {
    int dev, nl;
    size_t per; /* floats a slot in each layer's slab */
    pthread_mutex_t mu;
    int refs; /* the context's (until plm_cuda_close) and one a slot taken */
    int n_groups, n_slots;
    float **slab[SLOT_GROUPS]; /* [group][layer] */
    int first[SLOT_GROUPS + 1];
    int *free_ids, n_free;
};

static void slots_drop(plm_slots *a) { /* a->mu held; unlocks, and frees a when nothing refers to it */
    const int last = --a->refs == 0;
    pthread_mutex_unlock(&a->mu);
    if (!last) return;
    for (int gi = 0; gi < a->n_groups; gi++) {
        for (int l = 0; l < a->nl; l++) plm_cuda_free(a->dev, a->slab[gi][l]);
        free(a->slab[gi]);
    }
    pthread_mutex_destroy(&a->mu);
    free(a->free_ids);
    free(a);
}

static plm_slots *slots_new(int dev, int nl, size_t per) {
    plm_slots *a = (plm_slots *)calloc(1, sizeof *a);
    if (!a) return NULL;
    if (pthread_mutex_init(&a->mu, NULL)) {
        free(a);
        return NULL;
    }
    a->dev = dev, a->nl = nl, a->per = per, a->refs = 1;
    return a;
}

/* one more group of slabs (a->mu held): PLM_OK or why not; its slots go on the free list, lowest first.
 * Where the device cannot hold the group's size, half of it, down to one slot. */
static plm_status slots_grow(plm_slots *a, plm_error *err) {
    if (a->n_groups == SLOT_GROUPS)
        return plm_fail(err, PLM_ERR_NOMEM, "cuda:%d: more than %d states at once", a->dev, a->n_slots);
    int n = SLOT_GROUP_MIN;
    for (int i = 0; i < a->n_groups && n < SLOT_GROUP_MAX; i++) n *= 2;
    n = n < SLOT_GROUP_MAX ? n : SLOT_GROUP_MAX;
    float **slab = (float **)calloc((size_t)(a->nl ? a->nl : 1), sizeof *slab);
    int *ids = (int *)realloc(a->free_ids, (size_t)(a->n_slots + n) * sizeof *ids);
    if (ids) a->free_ids = ids;
    if (!slab || !ids) {
        free(slab);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory for the states' slabs");
    }
    for (int l = 0; l < a->nl; l++) {
        char what[64];
        snprintf(what, sizeof what, "a slab of %d states' layer %d", n, l);
        const plm_status st = plm_cuda_alloc(a->dev, (void **)&slab[l], (size_t)n * a->per * sizeof(float), what, err);
        if (st) {
            for (int j = 0; j < l; j++) plm_cuda_free(a->dev, slab[j]);
            if (st == PLM_ERR_NOMEM && n > 1) { /* a smaller group, from layer 0 again */
                n /= 2;
                l = -1;
                continue;
            }
            free(slab);
            return st;
        }
    }
    a->slab[a->n_groups] = slab;
    a->first[a->n_groups] = a->n_slots;
    a->n_groups++;
    a->n_slots += n;
    a->first[a->n_groups] = a->n_slots;
    for (int i = a->n_slots - 1; i >= a->n_slots - n; i--) a->free_ids[a->n_free++] = i;
    return PLM_OK;
}

extern "C" plm_status plm_cuda_slot_take(plm_cuda *g, plm_slots **from, int *slot, float **layer, plm_error *err) {
    *from = NULL;
    *slot = -1;
    plm_slots *a = g->slots;
    if (!a) return plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory for the states' slabs", g->name);
    pthread_mutex_lock(&a->mu);
    if (!a->n_free) {
        const plm_status st = slots_grow(a, err);
        if (st) {
            pthread_mutex_unlock(&a->mu);
            return st;
        }
    }
    const int id = a->free_ids[--a->n_free];
    a->refs++;
    int gi = 0;
    while (id >= a->first[gi + 1]) gi++;
    for (int l = 0; l < a->nl; l++) layer[l] = a->slab[gi][l] + (size_t)(id - a->first[gi]) * a->per;
    pthread_mutex_unlock(&a->mu);
    *from = a;
    *slot = id;
    return PLM_OK;
}

extern "C" void plm_cuda_slot_give(plm_slots *a, int slot) {
    if (!a || slot < 0) return;
    pthread_mutex_lock(&a->mu);
    a->free_ids[a->n_free++] = slot;
    slots_drop(a);
}

extern "C" void plm_cuda_free(int dev, void *p) {
    if (!p) return;
    cudaSetDevice(dev);
    cudaFreeAsync(p, 0);
}

extern "C" plm_status plm_cuda_memset0(int dev, void *p, size_t bytes, plm_error *err) {
    CK(dev, "selecting the device", cudaSetDevice(dev));
    if (bytes) CK(dev, "clearing a state", cudaMemset(p, 0, bytes));
    return PLM_OK;
}

extern "C" plm_status plm_cuda_copy(int dev, void *dst, const void *src, size_t bytes, plm_error *err) {
    CK(dev, "selecting the device", cudaSetDevice(dev));
    if (bytes) CK(dev, "copying device memory", cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
    return PLM_OK;
}

extern "C" plm_status plm_cuda_download(int dev, void *host, const void *src, size_t bytes, plm_error *err) {
    CK(dev, "selecting the device", cudaSetDevice(dev));
    if (bytes) CK(dev, "copying to the host", cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost));
    return PLM_OK;
}

extern "C" plm_status plm_cuda_upload(int dev, void *dst, const void *host, size_t bytes, plm_error *err) {
    CK(dev, "selecting the device", cudaSetDevice(dev));
    if (bytes) CK(dev, "copying to the device", cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice));
    return PLM_OK;
}

extern "C" plm_status plm_cuda_sync(int dev, plm_error *err) {
    CK(dev, "selecting the device", cudaSetDevice(dev));
    CK(dev, "a kernel launch", cudaGetLastError());
    CK(dev, "running kernels", cudaDeviceSynchronize());
    return PLM_OK;
}

/* ---------------------------------------------------------------- opening: device and weights */
static plm_status check_device(int dev, plm_error *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorInsufficientDriver) {
        int dv = 0, rv = 0;
        cudaDriverGetVersion(&dv);
        cudaRuntimeGetVersion(&rv);
        cudaGetLastError();
        if (dv == 0)
            return plm_fail(err, PLM_ERR_UNSUPPORTED, "cuda:%d: no NVIDIA driver is loaded, so no CUDA device is visible",
                            dev);
        return plm_fail(err, PLM_ERR_UNSUPPORTED,
                        "cuda:%d: the NVIDIA driver supports CUDA %d.%d, older than packlm's CUDA runtime %d.%d: "
                        "update the driver",
                        dev, dv / 1000, dv % 1000 / 10, rv / 1000, rv % 1000 / 10);
    }
    if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
        cudaGetLastError();
        return plm_fail(err, PLM_ERR_UNSUPPORTED, "cuda:%d: no CUDA device is visible (%s)", dev,
                        e == cudaSuccess ? "none found" : cudaGetErrorString(e));
    }
    if (e != cudaSuccess) return cu_fail(err, dev, "looking for CUDA devices", e);
    if (dev >= n) return plm_fail(err, PLM_ERR_INPUT, "cuda:%d: no such device (%d CUDA device%s visible)", dev, n,
                                  n == 1 ? "" : "s");
    CK(dev, "selecting the device", cudaSetDevice(dev));
    return PLM_OK;
}

/* Weights go into one allocation in two passes: the first only counts (g->w == NULL), the second
 * copies. F16 is widened to F32 on the host, a row block at a time. */
static plm_status put_bytes(plm_cuda *g, void **dst, const void *src, size_t bytes, plm_error *err) {
    const size_t at = g->w_used;
    g->w_used += (bytes + 255) & ~(size_t)255;
    if (!g->w) return PLM_OK;
    *dst = g->w + at;
    CK(g->dev, "uploading weights", cudaMemcpy(*dst, src, bytes, cudaMemcpyHostToDevice));
    return PLM_OK;
}

/* widen: store F32 whatever the checkpoint holds (the MoE router and the shared expert's gate: tiny
 * matrices whose outputs pick experts, so they see the activations unrounded, as on the CPU) */
static plm_status put_mat_w(plm_cuda *g, dmat *d, const plm_mat *W, int widen, plm_error *err) {
    d->rows = W->rows;
    d->cols = W->cols;
    d->bf16 = W->dt == PLM_DT_BF16 && !widen;
    const size_t n = (size_t)W->rows * W->cols;
    if (W->dt == PLM_DT_F32 || d->bf16) return put_bytes(g, (void **)&d->d, W->data, n * (d->bf16 ? 2 : 4), err);
    const size_t at = g->w_used;
    g->w_used += (n * 4 + 255) & ~(size_t)255;
    if (!g->w) return PLM_OK;
    d->d = g->w + at;
    const int64_t rows_per = 4096;
    float *buf = (float *)malloc((size_t)rows_per * W->cols * sizeof(float));
    if (!buf) return plm_fail(err, PLM_ERR_NOMEM, "out of host memory widening F16 weights");
    for (int64_t r0 = 0; r0 < W->rows; r0 += rows_per) {
        const int64_t nr = W->rows - r0 < rows_per ? W->rows - r0 : rows_per;
        for (int64_t r = 0; r < nr; r++) plm_mat_row(buf + r * W->cols, W, r0 + r);
        cudaError_t e = cudaMemcpy((float *)d->d + r0 * W->cols, buf, (size_t)nr * W->cols * sizeof(float),
                                   cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            free(buf);
            return cu_fail(err, g->dev, "uploading weights", e);
        }
    }
    free(buf);
    return PLM_OK;
}

static plm_status put_mat(plm_cuda *g, dmat *d, const plm_mat *W, plm_error *err) {
    return put_mat_w(g, d, W, 0, err);
}

static plm_status put_vec(plm_cuda *g, float **d, const float *src, size_t n, plm_error *err) {
    return put_bytes(g, (void **)d, src, n * sizeof(float), err);
}

static plm_status upload(plm_cuda *g, plm_error *err) {
    const plm_model *m = g->m;
    const plm_config *c = &m->cfg;
    const int H = c->hidden_size;
    plm_status st = put_mat(g, &g->embed, &m->embed, err);
    if (!st && m->lm_head.data == m->embed.data) g->lm_head = g->embed; /* tied */
    else if (!st) st = put_mat(g, &g->lm_head, &m->lm_head, err);
    if (!st) st = put_vec(g, &g->final_norm, m->final_norm, H, err);
    const int half = (c->rope_dim + 1) / 2; /* as plm_rope: ceil(dim/2) frequencies, divided by dim */
    float inv[PLM_CUDA_MAX_HD / 2 + 1];
    for (int i = 0; i < half; i++) inv[i] = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)c->rope_dim);
    if (!st) st = put_vec(g, &g->inv_freq, inv, half > 0 ? half : 1, err);
    for (int li = 0; li < c->n_layers && !st; li++) {
        const plm_layer *L = &m->layers[li];
        dlayer *D = &g->L[li];
        st = put_vec(g, &D->in_norm, L->in_norm, H, err);
        if (!st) st = put_vec(g, &D->post_norm, L->post_norm, H, err);
        if (L->type == PLM_LAYER_LINEAR) {
            const int nv = c->lin_v_heads;
            if (!st) st = put_mat(g, &D->qkv, &L->qkv, err);
            if (!st) st = put_mat(g, &D->z, &L->z, err);
            if (!st) st = put_mat(g, &D->b, &L->b, err);
            if (!st) st = put_mat(g, &D->a, &L->a, err);
            if (!st) st = put_mat(g, &D->out, &L->out, err);
            if (!st) st = put_vec(g, &D->conv_w, L->conv_w, (size_t)m->conv_dim * c->conv_kernel, err);
            if (!st) st = put_vec(g, &D->neg_A, L->neg_A, nv, err);
            if (!st) st = put_vec(g, &D->dt_bias, L->dt_bias, nv, err);
            if (!st) st = put_vec(g, &D->gnorm, L->gnorm, c->lin_v_dim, err);
        } else {
            if (!st) st = put_mat(g, &D->q, &L->q, err);
            if (!st) st = put_mat(g, &D->k, &L->k, err);
            if (!st) st = put_mat(g, &D->v, &L->v, err);
            if (!st) st = put_mat(g, &D->o, &L->o, err);
            if (!st) st = put_vec(g, &D->q_norm, L->q_norm, c->head_dim, err);
            if (!st) st = put_vec(g, &D->k_norm, L->k_norm, c->head_dim, err);
        }
        if (!c->is_moe) {
            if (!st) st = put_mat(g, &D->gate, &L->gate, err);
            if (!st) st = put_mat(g, &D->up, &L->up, err);
            if (!st) st = put_mat(g, &D->down, &L->down, err);
            continue;
        }
        if (!st) st = put_mat_w(g, &D->router, &L->router, 1, err);
        for (int e = 0; e < c->n_experts && !st; e++) {
            st = put_mat(g, &D->e_gate[e], &L->e_gate[e], err);
            if (!st) st = put_mat(g, &D->e_up[e], &L->e_up[e], err);
            if (!st) st = put_mat(g, &D->e_down[e], &L->e_down[e], err);
        }
        if (c->shared_intermediate_size > 0) {
            if (!st) st = put_mat(g, &D->sh_gate, &L->sh_gate, err);
            if (!st) st = put_mat(g, &D->sh_up, &L->sh_up, err);
            if (!st) st = put_mat(g, &D->sh_down, &L->sh_down, err);
            if (!st) st = put_mat_w(g, &D->sh_score, &L->sh_score, 1, err);
        }
    }
    return st;
}

extern "C" plm_status plm_cuda_probe(int dev, plm_error *err) { return check_device(dev, err); }

static plm_status check_shapes(const plm_model *m, int dev, plm_error *err) {
    const plm_config *c = &m->cfg;
    if (c->lin_k_dim > PLM_CUDA_MAX_DK)
        return plm_fail(err, PLM_ERR_UNSUPPORTED, "cuda:%d: linear_key_head_dim %d is over the CUDA kernels' %d", dev,
                        c->lin_k_dim, PLM_CUDA_MAX_DK);
    if (c->head_dim > PLM_CUDA_MAX_HD || (c->rope_dim + 1) / 2 > PLM_CUDA_MAX_HD / 2)
        return plm_fail(err, PLM_ERR_UNSUPPORTED, "cuda:%d: head_dim %d is over the CUDA kernels' %d", dev, c->head_dim,
                        PLM_CUDA_MAX_HD);
    if (c->conv_kernel > PLM_CUDA_MAX_K)
        return plm_fail(err, PLM_ERR_UNSUPPORTED, "cuda:%d: linear_conv_kernel_dim %d is over the CUDA kernels' %d",
                        dev, c->conv_kernel, PLM_CUDA_MAX_K);
    return PLM_OK;
}

extern "C" plm_status plm_cuda_open(plm_cuda **out, const plm_model *m, int dev, size_t mem_limit,
                                    int bf16_single_pass, plm_error *err) {
    *out = NULL;
    plm_status st = check_device(dev, err);
    if (!st) st = check_shapes(m, dev, err);
    if (st) return st;
    const plm_config *c = &m->cfg;
    plm_cuda *g = (plm_cuda *)calloc(1, sizeof *g);
    if (!g) return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a CUDA context");
    g->dev = dev;
    snprintf(g->name, sizeof g->name, "cuda:%d", dev);
    g->m = m;
    g->limit = mem_limit;
    g->slots = slots_new(dev, m->info.n_linear_layers, plm_state_layer_floats(m));
    if (!g->slots) {
        plm_cuda_close(g);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a CUDA context");
    }
    g->split = !bf16_single_pass;
    if (cudaDeviceGetAttribute(&g->n_sm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || g->n_sm < 1)
        g->n_sm = 1;
    g->L = (dlayer *)calloc((size_t)c->n_layers, sizeof *g->L);
    if (!g->L) {
        plm_cuda_close(g);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a CUDA context");
    }
    for (int li = 0; li < c->n_layers && c->is_moe; li++) {
        g->L[li].e_gate = (dmat *)calloc((size_t)c->n_experts * 3, sizeof(dmat));
        if (!g->L[li].e_gate) {
            plm_cuda_close(g);
            return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a CUDA context");
        }
        g->L[li].e_up = g->L[li].e_gate + c->n_experts;
        g->L[li].e_down = g->L[li].e_up + c->n_experts;
    }
    cudaError_t e = cudaStreamCreate(&g->st);
    if (e != cudaSuccess) {
        plm_cuda_close(g);
        return cu_fail(err, dev, "creating a stream", e);
    }
    /* programmatic edges in small steps' graphs: the kernels wait for their predecessors only where they
       were compiled for sm_90 (plm_cuda_pdl_ok) */
    g->pdl = plm_cuda_pdl_ok(dev);
    if (cublasCreate(&g->blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(g->blas, g->st) != CUBLAS_STATUS_SUCCESS ||
        cublasSetMathMode(g->blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
        plm_cuda_close(g);
        return plm_fail(err, PLM_ERR_INTERNAL, "cuda:%d: cuBLAS could not be initialised", dev);
    }
    st = dev_malloc(dev, &g->blas_ws, BLAS_WS_BYTES, "the cuBLAS workspace", err);
    if (!st && cublasSetWorkspace(g->blas, g->blas_ws, BLAS_WS_BYTES) != CUBLAS_STATUS_SUCCESS)
        st = plm_fail(err, PLM_ERR_INTERNAL, "cuda:%d: cuBLAS refused its workspace", dev);
    if (!st) st = dev_malloc(dev, &g->sk_work, plm_skinny_work_bytes(), "the skinny GEMM's workspace", err);
    if (!st && (g->split || PLM_SPLITK > 1)) /* the precise mode stacks hi and lo; the single pass's split-K parts */
        st = dev_malloc(dev, (void **)&g->stk, (size_t)2 * STACK_MAX_T * STACK_MAX_ROWS * sizeof(float),
                        "the stacked products' halves", err);
    if (!st) {
        const cudaError_t e0 = cudaMemset(g->sk_work, 0, plm_skinny_work_bytes());
        if (e0 != cudaSuccess) st = cu_fail(err, dev, "clearing the skinny GEMM's workspace", e0);
    }
    if (!st) st = dev_malloc(dev, (void **)&g->dec_ctr, PLM_GDN_DEC_CTRS * sizeof(unsigned), "the decode mixer's counters",
                             err);
    if (!st) {
        const cudaError_t e0 = cudaMemset(g->dec_ctr, 0, PLM_GDN_DEC_CTRS * sizeof(unsigned));
        if (e0 != cudaSuccess) st = cu_fail(err, dev, "clearing the decode mixer's counters", e0);
    }
    if (st) {
        plm_cuda_close(g);
        return st;
    }
    st = upload(g, err); /* counting pass */
    if (!st) {
        g->w_bytes = g->w_used;
        g->w_used = 0;
        if (g->limit && g->w_bytes > g->limit)
            st = plm_fail(err, PLM_ERR_NOMEM,
                          "cuda:%d: the weights need %zu bytes of device memory, over the context's limit of %zu", dev,
                          g->w_bytes, g->limit);
        else st = dev_malloc(dev, (void **)&g->w, g->w_bytes, "the weights", err);
    }
    if (!st) st = upload(g, err);
    if (st) {
        plm_cuda_close(g);
        return st;
    }
    int mc = c->hidden_size;
    const int cols[] = {c->intermediate_size, c->moe_intermediate_size, c->shared_intermediate_size,
                        c->lin_v_heads * c->lin_v_dim, c->n_heads * c->head_dim};
    for (int i = 0; i < 5; i++) mc = cols[i] > mc ? cols[i] : mc;
    g->max_cols = mc;
    *out = g;
    return PLM_OK;
}

static void graphs_free(plm_cuda *g);

#ifdef PLM_STEP_TIMING
static double ms_between(struct timespec a, struct timespec b) {
    return (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) * 1e-6;
}
#endif

extern "C" void plm_cuda_close(plm_cuda *g) {
    if (!g) return;
    cudaSetDevice(g->dev);
    if (g->st) cudaStreamSynchronize(g->st);
#ifdef PLM_STEP_TIMING
    for (int i = 0; i < 8; i++)
        if (g->tm[i].n) fprintf(stderr, "step timing: T=%lld, %lld steps: GPU idle before %.4f ms, upload %.4f, layers %.4f, "
                        "lm_head and outputs %.4f; host inside the step call %.4f ms (before the upload %.4f: "
                        "planning %.4f, the segments' tables %.4f), between step calls %.4f (means)\n",
                (long long)g->tm[i].T, (long long)g->tm[i].n, g->tm[i].gap / g->tm[i].n, g->tm[i].up / g->tm[i].n,
                g->tm[i].layers / g->tm[i].n, g->tm[i].tail / g->tm[i].n, g->tm[i].host_in / g->tm[i].n,
                g->tm[i].host_prep / g->tm[i].n, g->tm[i].host_plan / g->tm[i].n, g->tm[i].host_tab / g->tm[i].n,
                g->tm[i].host_out / g->tm[i].n);
    fprintf(stderr, "step timing: %u graphs captured (%.2f ms capturing, %.2f ms instantiating or updating), %u of "
                    "them updated an older graph in place\n", g->n_capture, g->capture_ms, g->inst_ms, g->n_update);
    if (g->ev[0]) {
        for (int i = 0; i < 4; i++) cudaEventDestroy(g->ev[i]);
        cudaEventDestroy(g->ev_last);
    }
#endif
    graphs_free(g);
    if (g->blas) cublasDestroy(g->blas);
    if (g->st) cudaStreamDestroy(g->st);
    cudaFree(g->blas_ws);
    cudaFree(g->sk_work);
    cudaFree(g->stk);
    cudaFree(g->dec_ctr);
    cudaFree(g->w);
    cudaFree(g->scr);
    cudaFree(g->aux);
    cudaFreeHost(g->pin);
    if (g->slots) { /* the slabs stay while states hold slots */
        pthread_mutex_lock(&g->slots->mu);
        slots_drop(g->slots);
    }
    if (g->L && g->m->cfg.is_moe)
        for (int li = 0; li < g->m->cfg.n_layers; li++) free(g->L[li].e_gate);
    free(g->L);
    free(g->tab_st);
    free(g->tab_id);
    free(g->tab_nb);
    free(g);
}

extern "C" void plm_cuda_graph_counts(const plm_cuda *g, unsigned *captured, unsigned *updated) {
    *captured = g ? g->n_capture : 0;
    *updated = g ? g->n_update : 0;
}

extern "C" size_t plm_cuda_bytes(const plm_cuda *g) { return g->w_bytes + g->scr_bytes + g->aux_bytes; }

/* ---------------------------------------------------------------- the step */
/* bump allocation over a region: the first pass over a plan counts (base NULL) */
typedef struct {
    char *base;
    size_t used;
} bump;

static void *take(bump *b, size_t bytes) {
    const size_t at = b->used;
    b->used += (bytes + 255) & ~(size_t)255;
    return b->base ? b->base + at : NULL;
}

/* Device scratch of one step, and the pinned host tables it uploads. */
typedef struct {
    int64_t T;
    int n_seg, nbt; /* nbt: KV blocks over all segments (one layer) */
    /* device */
    float *x, *h, *mo, *work, *out_logits, *out_lp, *out_rows;
    void *xb;       /* bf16 staging of a GEMM input */
    size_t work_floats;
    int32_t *tokens, *cu, *seg_of, *boff, *score_rows, *score_tgt, *logit_rows, *amax_rows, *amax, *moe_map, *atiles;
    int32_t *gtab; /* the delta rule's chunks (plm_gdn_chunks) */
    int n_atiles, attn_qt, n_gchunks, n_glong, n_gshort;
    int attn_split; /* key splits of the attention tiles (small steps; 1: none) */
    int attn_dec;   /* every segment holds at most ATTN_DEC_MAX_LEN tokens: plm_attn_dec_cuda */
    int dec1;       /* every segment holds one token (decode): the linear layers' plm_gdn_dec_cuda */
    int64_t *start, *pos;
    float **conv_tab, **rec_tab, **ktab, **vtab, *moe_w;
    int32_t *moe_tok;
    /* host (pinned): the same tables, uploaded in one copy; moe_host for routing read back */
    char *h_base;
    size_t h_bytes;
    int32_t *h_moe, *h_moe_tok, *h_moe_map;
    float *h_moe_w, *h_lp;
    int32_t *h_amax;
    int64_t n_score, n_logit, n_amax, out_block;
    int64_t score_block; /* rows of a block of the scored rows */
    int score_bf16;      /* single pass: the scored rows' logits in BF16 (as transformers' BF16 lm_head) */
} plan;

struct graph_slot {
    plan key; /* memset before filling: padding compares equal */
    cudaGraphExec_t exec;
    unsigned used;
};

static void graphs_free(plm_cuda *g) {
    if (!g->graphs) return;
    for (int i = 0; i < GRAPH_SLOTS; i++)
        if (g->graphs[i].exec) cudaGraphExecDestroy(g->graphs[i].exec);
    free(g->graphs);
    g->graphs = NULL;
}

#define ATTN_SPLIT_MAX_T 64 /* steps of at most this many tokens may split the attention's keys */
#define ATTN_DEC_MAX_LEN 2  /* steps whose segments are at most this long take the decode attention */

/* Floats of the layers' work area for T tokens: the largest of the linear, attention and MLP layers'
 * pieces (wtake), each piece rounded up to 64 floats. */
static size_t layer_work_floats(const plm_model *m, int64_t T) {
    const plm_config *c = &m->cfg;
    const size_t nk = c->lin_k_heads, nv = c->lin_v_heads, dk = c->lin_k_dim, dv = c->lin_v_dim;
    const size_t gw = plm_gdn_work_floats(1, (int)nv, (int)dk, (int)dv); /* per token: in raw */
    const size_t lin = ((size_t)m->conv_dim > gw ? (size_t)m->conv_dim : gw) + (size_t)m->conv_dim + 3 * nv * dv +
                       2 * nv + 2 * nk * dk + ((size_t)m->conv_dim + 1) / 2; /* 10 pieces */
    const size_t nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    /* 8 pieces: q and gate, q, gate, k, v, o, the BF16 copies of k and v; small steps also the key
       splits' partial results */
    size_t att = 5 * nh * hd + 3 * nkv * hd;
    if (T <= ATTN_SPLIT_MAX_T) att += (size_t)PLM_ATTN_SPLIT_MAX * nh * (hd + 2);
    size_t mlp = 2 * (size_t)c->intermediate_size;                                    /* 2 pieces */
    if (c->is_moe) {                                                                  /* 8 pieces */
        const size_t k = c->n_experts_per_tok, H = c->hidden_size;
        const size_t wide = k * c->moe_intermediate_size > (size_t)c->shared_intermediate_size
                                ? k * c->moe_intermediate_size : (size_t)c->shared_intermediate_size;
        mlp = (size_t)c->n_experts + 2 * k + 2 * k * H + 2 * wide + 1;
    }
    size_t per = lin > att ? lin : att;
    per = per > mlp ? per : mlp;
    return per * (size_t)T + 10 * 64; /* + the rounding of at most 10 pieces */
}

/* Lays the step out over the device region d and host region hst (NULL: count only). */
static void lay_out(plan *p, const plm_cuda *g, bump *d, bump *hst, int moe_k) {
    const plm_model *m = g->m;
    const plm_config *c = &m->cfg;
    const int64_t T = p->T, H = c->hidden_size, V = c->vocab_size;
    const int nl = m->info.n_linear_layers, na = m->info.n_attention_layers, ns = p->n_seg;
    p->x = (float *)take(d, T * H * 4);
    p->h = (float *)take(d, T * H * 4);
    p->mo = (float *)take(d, T * H * 4);
    p->work_floats = layer_work_floats(m, T);
    p->work = (float *)take(d, p->work_floats * 4);
    p->xb = take(d, (size_t)T * g->max_cols * 2 * (g->split ? 2 : 1));
    const int64_t ob = p->out_block, sb = p->score_block;
    const int64_t fb = ob * V * 4, sbb = sb * V * (p->score_bf16 ? 2 : 4); /* FP32 blocks, scored blocks */
    const int64_t lb = fb > sbb ? fb : sbb;
    p->out_logits = (float *)take(d, (size_t)lb);
    p->out_rows = (float *)take(d, (ob > sb ? ob : sb) * H * 4);
    p->out_lp = (float *)take(d, p->n_score * 4);
    p->amax = (int32_t *)take(d, p->n_amax * 4);
    p->moe_w = (float *)take(d, moe_k ? T * moe_k * 4 : 0);
    p->moe_map = (int32_t *)take(d, moe_k ? T * moe_k * 4 : 0);
    p->moe_tok = (int32_t *)take(d, moe_k ? T * moe_k * 4 : 0);
    /* tables: the same layout on both sides, uploaded as one block */
    const size_t h0 = hst->used;
#define TABLE(field, type, n)                                                                                       \
    do {                                                                                                            \
        p->field = (type *)take(d, (size_t)(n) * sizeof(type));                                                     \
        take(hst, (size_t)(n) * sizeof(type));                                                                      \
    } while (0)
    TABLE(tokens, int32_t, T);
    TABLE(cu, int32_t, ns + 1);
    TABLE(seg_of, int32_t, T);
    TABLE(boff, int32_t, ns + 1);
    TABLE(start, int64_t, ns);
    TABLE(pos, int64_t, T);
    TABLE(conv_tab, float *, (size_t)nl * ns);
    TABLE(rec_tab, float *, (size_t)nl * ns);
    TABLE(ktab, float *, (size_t)na * p->nbt);
    TABLE(vtab, float *, (size_t)na * p->nbt);
    TABLE(score_rows, int32_t, p->n_score);
    TABLE(score_tgt, int32_t, p->n_score);
    TABLE(logit_rows, int32_t, p->n_logit);
    TABLE(amax_rows, int32_t, p->n_amax);
    TABLE(atiles, int32_t, na ? 2 * (T / p->attn_qt + ns + 1) : 0);
    TABLE(gtab, int32_t, nl ? 2 * (T / PLM_GDN_CHUNK + ns) : 0);
#undef TABLE
    p->h_bytes = hst->used - h0;
    p->h_base = hst->base ? hst->base + h0 : NULL;
    p->h_moe = (int32_t *)take(hst, moe_k ? T * moe_k * 4 : 0);
    p->h_moe_w = (float *)take(hst, moe_k ? T * moe_k * 4 : 0);
    p->h_moe_tok = (int32_t *)take(hst, moe_k ? T * moe_k * 4 : 0);
    p->h_moe_map = (int32_t *)take(hst, moe_k ? T * moe_k * 4 : 0);
    p->h_lp = (float *)take(hst, p->n_score * 4);
    p->h_amax = (int32_t *)take(hst, p->n_amax * 4);
}

/* host address of a table field: the same offset from the first table in the pinned block */
#define HOST(p, field, type) ((type *)((p)->h_base + ((char *)(p)->field - (char *)(p)->tokens)))

/* y = x W^T. keep: reuse x's BF16 form in xb if g->xb_of says xb holds this x's conversion (every
 * writer of a product's input refreshes or clears g->xb_of: add_norm writes h's BF16 form itself), so
 * the projections that share one input convert it once. x NULL
 * (BF16 weights only): xb already holds the input, written by a fused kernel (xb_lo says where).
 * BF16 weights and T <= PLM_GEMV_MAX_T (decode): one GEMV kernel, every weight read once; the precise
 * form gives it x itself (FP32, unrounded: no conversion), the single pass x's BF16 form. Up to
 * PLM_SKINNY_MAX_T rows (several sequences decoding together) the same with the skinny GEMM on tensor
 * cores, which splits the precise x into hi + lo itself. */
/* n products of one input with BF16 weights for T <= PLM_SKINNY_MAX_T rows: the GEMV up to
 * PLM_GEMV_MAX_T, the skinny GEMM above; x (FP32) or xb (BF16, with lo its remainder or NULL) */
static void small_products(plm_cuda *g, int n, float *const *y, const void *const *W, const int64_t *rows,
                           const float *x, const void *xb, const void *lo, int64_t T, int64_t cols) {
    if (x) xb = lo = NULL;
    if (T <= PLM_GEMV_MAX_T) plm_gemv_bf16_multi_cuda(n, y, W, rows, x, xb, lo, T, cols, g->st);
    else plm_skinny_bf16_multi_cuda(n, y, W, rows, x, xb, lo, T, cols, g->sk_work, g->st);
}

static plm_status gemm_k(plm_cuda *g, float *y, const float *x, int64_t T, const dmat *W, void *xb, int keep,
                         plm_error *err) {
    if (T <= 0) return PLM_OK;
    if (y == g->defer_to) g->deferred = 0; /* y written whole below, unless stacked */
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s;
    if (!W->bf16) {
        g->blas_calls++;
        s = cublasSgemm(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)W->rows, (int)T, (int)W->cols, &one, (const float *)W->d,
                        (int)W->cols, x, (int)W->cols, &zero, y, (int)W->rows);
    } else { /* x as BF16 (hi), and with split its remainder (lo): y = W hi + W lo */
        void *lo = g->split ? (char *)xb + (size_t)T * W->cols * 2 : NULL;
        const int small = T <= PLM_SKINNY_MAX_T; /* GEMV or skinny GEMM: every weight read once */
        if (x && lo && small) { /* precise: x itself, no conversion */
            g->xb_of = NULL; /* xb is not written: it holds no conversion the next call could reuse */
            small_products(g, 1, &y, &W->d, &W->rows, x, NULL, NULL, T, W->cols);
            return PLM_OK;
        }
        if (!x) /* the caller wrote the BF16 input into xb itself */
            g->xb_of = NULL;
        else if (!(keep && g->xb_of == x && g->xb_at == xb && g->xb_n == T * W->cols)) {
            plm_to_bf16_cuda(xb, lo, x, T * W->cols, g->st);
            g->xb_of = x, g->xb_at = xb, g->xb_n = T * W->cols;
        }
        if (small) { /* single pass from x's BF16 form, or a fused kernel's hi (+ lo) */
            small_products(g, 1, &y, &W->d, &W->rows, NULL, xb, lo, T, W->cols);
            return PLM_OK;
        }
        g->blas_calls++;
        if (lo && T <= STACK_MAX_T && W->rows <= STACK_MAX_ROWS) {
            /* precise, a step of few rows (decode of many sequences) and a narrow product: one pass over
               hi and lo as 2T rows (they lie one after the other in xb) into g->stk, then the halves
               added, as the second pass's beta = 1 adds them: cuBLAS fills the GPU better with 2T rows
               than in two passes of T (1024 x 2048 at T = 256: 11.7 against 16.5 us) */
            s = cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)W->rows, (int)(2 * T), (int)W->cols, &one, W->d,
                             CUDA_R_16BF, (int)W->cols, xb, CUDA_R_16BF, (int)W->cols, &zero, g->stk, CUDA_R_32F,
                             (int)W->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (s == CUBLAS_STATUS_SUCCESS) {
                if (y == g->defer_to) g->deferred = 2; /* the layer's output: add_norm sums the halves */
                else plm_add_halves_cuda(y, g->stk, T * W->rows, g->st);
            }
            lo = NULL; /* summed */
        } else if (!lo && y == g->defer_to && g->stk && PLM_SPLITK > 1 && W->cols % (8 * PLM_SPLITK) == 0 &&
                   PLM_SPLITK * T * W->rows <= 2 * (int64_t)STACK_MAX_T * STACK_MAX_ROWS) {
            /* single pass, a layer's output (out, o or down projection: 1024 wide at the 0.8B shape) of
               as many rows as stk holds the parts of: PLM_SPLITK products over slices of the columns in one batched
               launch, PLM_SPLITK times the thread blocks (a 256 x 1024 output is a few dozen tiles for
               132 SMs); add_norm sums the parts */
            const int64_t kc = W->cols / PLM_SPLITK;
            s = cublasGemmStridedBatchedEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)W->rows, (int)T, (int)kc, &one, W->d,
                                           CUDA_R_16BF, (int)W->cols, kc, xb, CUDA_R_16BF, (int)W->cols, kc, &zero,
                                           g->stk, CUDA_R_32F, (int)W->rows, T * W->rows, PLM_SPLITK,
                                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (s == CUBLAS_STATUS_SUCCESS) g->deferred = PLM_SPLITK;
        } else {
            s = cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)W->rows, (int)T, (int)W->cols, &one, W->d,
                             CUDA_R_16BF, (int)W->cols, xb, CUDA_R_16BF, (int)W->cols, &zero, y, CUDA_R_32F,
                             (int)W->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        }
        if (s == CUBLAS_STATUS_SUCCESS && lo)
            s = cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)W->rows, (int)T, (int)W->cols, &one, W->d,
                             CUDA_R_16BF, (int)W->cols, lo, CUDA_R_16BF, (int)W->cols, &one, y, CUDA_R_32F,
                             (int)W->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    }
    if (s != CUBLAS_STATUS_SUCCESS)
        return plm_fail(err, PLM_ERR_INTERNAL, "%s: cuBLAS GEMM [%lld x %lld] x [%lld rows] failed (%s)", g->name,
                        (long long)W->rows, (long long)W->cols, (long long)T, cublasGetStatusString(s));
    return PLM_OK;
}

/* where the remainder half of a split BF16 input of T x cols goes in xb (NULL: single pass) */
static void *xb_lo(const plm_cuda *g, void *xb, int64_t T, int64_t cols) {
    return g->split ? (char *)xb + (size_t)T * cols * 2 : NULL;
}

static plm_status gemm(plm_cuda *g, float *y, const float *x, int64_t T, const dmat *W, void *xb, plm_error *err) {
    return gemm_k(g, y, x, T, W, xb, 0, err);
}

/* y (BF16 [T, W->rows]) = x W^T in one BF16 pass (single-pass mode, BF16 W, through cuBLAS): x rounded
 * to BF16 into xb (kept for gemm_k's reuse; keep: reuse it as gemm_k does), the FP32 sums rounded once
 * to BF16 as cuBLAS writes them, as transformers' BF16 model writes its projections' outputs */
static plm_status gemm_bf16_out(plm_cuda *g, void *y, const float *x, int64_t T, const dmat *W, void *xb, int keep,
                                plm_error *err) {
    const float one = 1.0f, zero = 0.0f;
    if (!(keep && g->xb_of == x && g->xb_at == xb && g->xb_n == T * W->cols)) {
        plm_to_bf16_cuda(xb, NULL, x, T * W->cols, g->st);
        g->xb_of = x, g->xb_at = xb, g->xb_n = T * W->cols;
    }
    g->blas_calls++;
    const cublasStatus_t s = cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)W->rows, (int)T, (int)W->cols, &one,
                                          W->d, CUDA_R_16BF, (int)W->cols, xb, CUDA_R_16BF, (int)W->cols, &zero, y,
                                          CUDA_R_16BF, (int)W->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS)
        return plm_fail(err, PLM_ERR_INTERNAL, "%s: cuBLAS GEMM [%lld x %lld] x [%lld rows] failed (%s)", g->name,
                        (long long)W->rows, (long long)W->cols, (long long)T, cublasGetStatusString(s));
    return PLM_OK;
}

/* single pass with BF16 W at more rows than the skinny GEMM takes (cuBLAS): the product may write BF16 */
static int bf16_outputs(const plm_cuda *g, int64_t T, const dmat *W) {
    return !g->split && W->bf16 && T > PLM_SKINNY_MAX_T;
}

/* rows of an lm_head block for n rows of logits of elem bytes each: at most OUT_ROWS_MAX, OUT_BYTES_MAX
 * and the step's T, at least 1 (0 when n is) */
static int64_t out_rows_of(int64_t n, int64_t V, int elem, int64_t T) {
    int64_t ob = (int64_t)(OUT_BYTES_MAX / ((size_t)V * elem));
    ob = ob < 1 ? 1 : ob > OUT_ROWS_MAX ? OUT_ROWS_MAX : ob;
    ob = ob < T ? ob : T; /* a block's BF16 input goes into xb, sized for T rows (rows may repeat: n > T) */
    return n < ob ? n : ob;
}

#define TRY(x)                                                                                                      \
    do {                                                                                                            \
        plm_status st_ = (x);                                                                                       \
        if (st_) return st_;                                                                                        \
    } while (0)

/* y[i] = x W[i]^T for n products of one input x (the projections of one hidden state). BF16 weights of
 * one width and T <= PLM_SKINNY_MAX_T (decode, one or several sequences): one grouped launch of the
 * GEMV (T <= PLM_GEMV_MAX_T) or the skinny GEMM, with gemm_k's input and precision (precise: x itself;
 * single pass: x converted to BF16 once, the conversion kept for reuse as gemm_k keeps it); each y[i]
 * is what gemm_k writes, bit for bit. Otherwise gemm_k in turn, the first converting x and the others
 * reusing it. */
static plm_status gemm_shared(plm_cuda *g, int n, float *const *y, const float *x, int64_t T, const dmat *const *W,
                              void *xb, plm_error *err) {
    int grouped = T > 0 && T <= PLM_SKINNY_MAX_T && n <= PLM_GEMV_MULTI && x;
    for (int i = 0; i < n && grouped; i++) grouped = W[i]->bf16 && W[i]->cols == W[0]->cols;
    if (!grouped) {
        for (int i = 0; i < n; i++) TRY(gemm_k(g, y[i], x, T, W[i], xb, 1, err)); /* any conversion of x kept */
        return PLM_OK;
    }
    const void *wd[PLM_GEMV_MULTI];
    int64_t rows[PLM_GEMV_MULTI];
    for (int i = 0; i < n; i++) wd[i] = W[i]->d, rows[i] = W[i]->rows;
    const int64_t cols = W[0]->cols;
    const float *in = x; /* precise: x itself, no conversion (xb not written) */
    if (!g->split) { /* single pass: x's BF16 form, as gemm_k makes it (or keeps it: add_norm's) */
        if (!(g->xb_of == x && g->xb_at == xb && g->xb_n == T * cols)) plm_to_bf16_cuda(xb, NULL, x, T * cols, g->st);
        g->xb_of = x, g->xb_at = xb, g->xb_n = T * cols;
        in = NULL;
    } else
        g->xb_of = NULL;
    small_products(g, n, y, wd, rows, in, xb, NULL, T, cols);
    return PLM_OK;
}

static float *wtake(float **at, size_t n) {
    float *p = *at;
    *at += (n + 63) & ~(size_t)63;
    return p;
}

/* every layer checks that its pieces fit the work area layer_work_floats sized */
static plm_status work_fits(const plan *p, const float *at, const plm_cuda *g, plm_error *err) {
    if (at <= p->work + p->work_floats) return PLM_OK;
    return plm_fail(err, PLM_ERR_INTERNAL, "%s: a layer needs %zu floats of work area, %zu were laid out", g->name,
                    (size_t)(at - p->work), p->work_floats);
}

/* whether n BF16 matrices of one width lie one after another in device memory (upload puts a layer's
 * projections so): then they are one matrix of their rows stacked, and one product computes them all */
static int adjacent(const dmat *const *W, int n) {
    for (int i = 0; i < n; i++)
        if (!W[i]->bf16 || W[i]->cols != W[0]->cols ||
            (i && W[i]->d != (const char *)W[i - 1]->d + (size_t)W[i - 1]->rows * W[i - 1]->cols * 2))
            return 0;
    return 1;
}

static plm_status linear_layer(plm_cuda *g, const plm_layer *Lh, const dlayer *L, const plan *p, plm_error *err) {
    const plm_model *m = g->m;
    const plm_config *cf = &m->cfg;
    const int64_t T = p->T;
    const int nk = cf->lin_k_heads, nv = cf->lin_v_heads, dk = cf->lin_k_dim, dv = cf->lin_v_dim;
    const int CD = m->conv_dim, K = cf->conv_kernel, ns = p->n_seg, li = Lh->lin_index;
    float *at = p->work;
    const size_t gw = plm_gdn_work_floats(T, nv, dk, dv); /* the delta rule's work area: raw, once conv read it */
    float *raw = wtake(&at, (size_t)T * CD > gw ? (size_t)T * CD : gw), *mixed = wtake(&at, (size_t)T * CD);
    float *z = wtake(&at, (size_t)T * nv * dv), *bb = wtake(&at, (size_t)T * nv), *aa = wtake(&at, (size_t)T * nv);
    float *q = wtake(&at, (size_t)T * nk * dk), *k = wtake(&at, (size_t)T * nk * dk);
    float *v = wtake(&at, (size_t)T * nv * dv), *o = wtake(&at, (size_t)T * nv * dv);
    void *qkvb = wtake(&at, ((size_t)T * CD + 1) / 2); /* BF16 copies of q, k, v for the single-pass kernels */
    TRY(work_fits(p, at, g, err));
    /* single pass, chunked segments on the tensor-core kernels: the BF16 copies of q, k, v they read
       (plm_gdn_bf_fits says whether they do; the simple kernels read FP32 q, k, v for every token) */
    if (g->split || !p->n_gchunks || !plm_gdn_bf_fits(dk, dv)) qkvb = NULL;
    float *const *tails = p->conv_tab + (size_t)li * ns;
    /* decode of more sequences than the skinny GEMM takes (cuBLAS): the four projections as one product
       of their weights stacked (two cuBLAS passes instead of eight in the precise mode, one instead of
       four in the single pass; the two small ones alone cost as much as the widest), row t [raw | z | b
       | a] over raw and mixed (unused here), which the decode mixer reads in place. The single pass
       takes it too: its products keep FP32 outputs here, as at 64 rows and fewer (the GEMV and the
       skinny GEMM), where the prompt path rounds them to BF16 for its BF16 conv */
    {
        const dmat *const ws[4] = {&L->qkv, &L->z, &L->b, &L->a};
        const int64_t ld = (int64_t)CD + (int64_t)nv * dv + 2 * nv;
        if (p->dec1 && T > PLM_SKINNY_MAX_T && L->out.bf16 && adjacent(ws, 4) && L->qkv.rows == CD &&
            L->z.rows == (int64_t)nv * dv && L->b.rows == nv && L->a.rows == nv &&
            (size_t)(mixed - raw) + (size_t)T * CD >= (size_t)T * ld && plm_gdn_dec_fits(T, nk, nv, dk, dv, K)) {
            const dmat st = {L->qkv.d, 1, ld, L->qkv.cols};
            TRY(gemm_k(g, raw, p->h, T, &st, p->xb, 1, err)); /* h's BF16 form if add_norm wrote it */
            const float *zs = raw + CD, *bs = zs + (size_t)nv * dv, *as = bs + nv;
            const int f = plm_gdn_dec_fused_fits(nk, nv, dk, dv, K); /* one kernel: no work arrays */
            plm_gdn_dec_cuda(NULL, p->xb, xb_lo(g, p->xb, T, L->out.cols), o, g->dec_ctr, tails,
                             p->rec_tab + (size_t)li * ns, raw, L->conv_w, f ? NULL : q, f ? NULL : k, f ? NULL : v,
                             f ? NULL : bb, f ? NULL : aa, bs, as, L->neg_A, L->dt_bias, zs, L->gnorm, T, nk, nv, dk,
                             dv, K, cf->rms_eps, ld, g->st);
            return gemm_k(g, p->mo, NULL, T, &L->out, p->xb, 0, err);
        }
    }
    /* single pass: z in BF16 too, read by the gated norm's BF16 form */
    const int zb = bf16_outputs(g, T, &L->qkv) && bf16_outputs(g, T, &L->z) && L->out.bf16;
    if (bf16_outputs(g, T, &L->qkv)) { /* single pass: the widest projection writes BF16, the conv reads it */
        TRY(gemm_bf16_out(g, raw, p->h, T, &L->qkv, p->xb, 1, err)); /* h's BF16 form if add_norm wrote it */
        if (zb) TRY(gemm_bf16_out(g, z, p->h, T, &L->z, p->xb, 1, err));
        else TRY(gemm_k(g, z, p->h, T, &L->z, p->xb, 1, err));
        TRY(gemm_k(g, bb, p->h, T, &L->b, p->xb, 1, err));
        TRY(gemm_k(g, aa, p->h, T, &L->a, p->xb, 1, err));
        if (qkvb) { /* and the conv writes BF16 too, as transformers' BF16 conv; q, k, v in FP32 only for
                       the recurrent kernel's short segments */
            plm_conv_bb_cuda(mixed, tails, raw, L->conv_w, p->cu, p->seg_of, ns, T, CD, K, g->st);
            plm_gdn_prep_bb_cuda(q, k, v, qkvb, bb, aa, mixed, bb, aa, L->neg_A, L->dt_bias, p->cu, p->seg_of, T, nk,
                                 nv, dk, dv, g->st);
        } else {
            plm_conv_bf16_cuda(mixed, tails, raw, L->conv_w, p->cu, p->seg_of, ns, T, CD, K, g->st);
            plm_gdn_prep_cuda(q, k, v, bb, aa, mixed, bb, aa, L->neg_A, L->dt_bias, T, nk, nv, dk, dv, g->st);
        }
    } else {
        float *const ys[4] = {raw, z, bb, aa};
        const dmat *const ws[4] = {&L->qkv, &L->z, &L->b, &L->a};
        TRY(gemm_shared(g, 4, ys, p->h, T, ws, p->xb, err));
        /* decode: the mixer in one kernel or two. They read the tails and the states before their
           programmatic wait: the kernels launched right before them (these projections, then
           k_gdn_dec_in) must not write those (cuda_ops.h) */
        if (p->dec1 && plm_gdn_dec_fits(T, nk, nv, dk, dv, K)) {
            /* the normed outputs as the out projection's BF16 input (hi, + lo where split), or in FP32 over o */
            const int bf = L->out.bf16, f = plm_gdn_dec_fused_fits(nk, nv, dk, dv, K);
            plm_gdn_dec_cuda(bf ? NULL : o, bf ? p->xb : NULL, bf ? xb_lo(g, p->xb, T, L->out.cols) : NULL, o,
                             g->dec_ctr, tails, p->rec_tab + (size_t)li * ns, raw, L->conv_w, f ? NULL : q,
                             f ? NULL : k, f ? NULL : v, f ? NULL : bb, f ? NULL : aa, bb, aa, L->neg_A, L->dt_bias,
                             z, L->gnorm, T, nk, nv, dk, dv, K, cf->rms_eps, 0, g->st);
            return bf ? gemm_k(g, p->mo, NULL, T, &L->out, p->xb, 0, err) : gemm(g, p->mo, o, T, &L->out, p->xb, err);
        }
        plm_conv_cuda(mixed, tails, raw, L->conv_w, p->cu, p->seg_of, ns, T, CD, K, g->st);
        if (qkvb)
            plm_gdn_prep_bf_cuda(q, k, v, qkvb, bb, aa, mixed, bb, aa, L->neg_A, L->dt_bias, T, nk, nv, dk, dv, g->st);
        else
            plm_gdn_prep_cuda(q, k, v, bb, aa, mixed, bb, aa, L->neg_A, L->dt_bias, T, nk, nv, dk, dv, g->st);
    }
    plm_gdn_tc_cuda(o, p->rec_tab + (size_t)li * ns, q, k, v, qkvb, aa, bb, p->cu, ns, T, p->gtab, p->n_gchunks,
                    p->n_glong, p->n_gshort, raw, nk, nv, dk, dv, g->split ? PLM_GDN_PRECISE : 0, g->st);
    if (zb) { /* the same from BF16 z */
        plm_rmsnorm_gated_bz_cuda(p->xb, o, z, L->gnorm, T * nv, dv, cf->rms_eps, g->st);
        return gemm_k(g, p->mo, NULL, T, &L->out, p->xb, 0, err);
    }
    if (L->out.bf16) { /* the gated norm writes the out projection's BF16 input */
        plm_rmsnorm_gated_bf16_cuda(p->xb, xb_lo(g, p->xb, T, L->out.cols), o, z, L->gnorm, T * nv, dv, cf->rms_eps,
                                    g->st);
        return gemm_k(g, p->mo, NULL, T, &L->out, p->xb, 0, err);
    }
    plm_rmsnorm_gated_cuda(o, o, z, L->gnorm, T * nv, dv, cf->rms_eps, g->st);
    return gemm(g, p->mo, o, T, &L->out, p->xb, err);
}

static plm_status attention_layer(plm_cuda *g, const plm_layer *Lh, const dlayer *L, const plan *p, plm_error *err) {
    const plm_config *cf = &g->m->cfg;
    const int64_t T = p->T;
    const int nh = cf->n_heads, nkv = cf->n_kv_heads, hd = cf->head_dim, ai = Lh->attn_index;
    float *at = p->work;
    float *qg = wtake(&at, (size_t)T * nh * 2 * hd), *q = wtake(&at, (size_t)T * nh * hd);
    float *gate = wtake(&at, (size_t)T * nh * hd), *k = wtake(&at, (size_t)T * nkv * hd);
    float *v = wtake(&at, (size_t)T * nkv * hd), *o = wtake(&at, (size_t)T * nh * hd);
    void *kbf = g->split || p->attn_dec ? NULL : wtake(&at, ((size_t)T * nkv * hd + 1) / 2);
    void *vbf = g->split || p->attn_dec ? NULL : wtake(&at, ((size_t)T * nkv * hd + 1) / 2);
    float *part = p->attn_split > 1 ? wtake(&at, plm_attn_part_floats(p->attn_split, T, nh, hd)) : NULL;
    TRY(work_fits(p, at, g, err));
    float *const ys[3] = {qg, k, v};
    const dmat *const ws[3] = {&L->q, &L->k, &L->v};
    TRY(gemm_shared(g, 3, ys, p->h, T, ws, p->xb, err));
    float *const *kt = p->ktab + (size_t)ai * p->nbt, *const *vt = p->vtab + (size_t)ai * p->nbt;
    if (p->attn_dec && L->o.bf16 && plm_attn_dec_prep_fits(T, hd, cf->rope_dim)) { /* decode: one launch */
        plm_attn_dec_prep_cuda(q, kt, vt, p->boff, qg, k, v, L->q_norm, L->k_norm, p->start, p->cu, p->seg_of, p->pos,
                               g->inv_freq, T, nh, nkv, hd, cf->rope_dim, cf->rms_eps, g->st);
    } else {
        /* BF16 o projection: the queries normalised and the gate read in place from qg; otherwise split */
        if (L->o.bf16) plm_rmsnorm_zc_rows_cuda(q, qg, 2 * (int64_t)hd, L->q_norm, T * nh, hd, cf->rms_eps, g->st);
        else {
            plm_split_qgate_cuda(q, gate, qg, T, nh, hd, g->st);
            plm_rmsnorm_zc_cuda(q, q, L->q_norm, T * nh, hd, cf->rms_eps, g->st);
        }
        plm_rmsnorm_zc_cuda(k, k, L->k_norm, T * nkv, hd, cf->rms_eps, g->st);
        plm_rope_cuda(q, p->pos, T, nh, hd, cf->rope_dim, g->inv_freq, g->st);
        plm_rope_cuda(k, p->pos, T, nkv, hd, cf->rope_dim, g->inv_freq, g->st);
        plm_kv_append_cuda(kt, vt, p->boff, k, v, kbf, vbf, p->start, p->cu, p->seg_of, T, nkv, hd, g->st);
    }
    const plm_attn_opt ao = {kbf, vbf, p->attn_split, part, T};
    if (p->attn_dec) /* decode: a block per (token, kv head, key split) */
        plm_attn_dec_cuda(o, q, kt, vt, p->boff, p->start, p->cu, p->seg_of, T, nh, nkv, hd, 1.0f / sqrtf((float)hd),
                          p->attn_split, part, g->st);
    else if (hd <= PLM_ATTN_TILED_MAX_HD) /* tensor cores where the shape fits, the tiled kernel otherwise */
        plm_attn_tc_cuda(o, q, kt, vt, p->boff, p->start, p->cu, p->atiles, p->n_atiles, nh, nkv, hd,
                         1.0f / sqrtf((float)hd), g->split, &ao, g->st);
    else
        plm_attn_cuda(o, q, kt, vt, p->boff, p->start, p->cu, p->seg_of, T, nh, nkv, hd, 1.0f / sqrtf((float)hd), g->st);
    if (L->o.bf16) {
        plm_gate_mul_qg_bf16_cuda(p->xb, xb_lo(g, p->xb, T, L->o.cols), o, qg, T * nh, hd, g->st);
        return gemm_k(g, p->mo, NULL, T, &L->o, p->xb, 0, err);
    }
    plm_gate_mul_cuda(o, gate, T * nh * hd, g->st);
    return gemm(g, p->mo, o, T, &L->o, p->xb, err);
}

/* MoE: route on the device, read the routing back, group the (token, expert) pairs by expert (the
 * CPU's order: experts ascending, tokens ascending within one), run each expert's GEMMs over its
 * rows, then combine per token. */
static plm_status moe_layer(plm_cuda *g, const dlayer *L, const plan *p, plm_error *err) {
    const plm_config *cf = &g->m->cfg;
    const int64_t T = p->T;
    const int E = cf->n_experts, k = cf->n_experts_per_tok, H = cf->hidden_size;
    const int Im = cf->moe_intermediate_size, Is = cf->shared_intermediate_size;
    const int64_t Tk = T * k, wide = (int64_t)k * Im > Is ? (int64_t)k * Im : Is;
    float *at = p->work;
    float *logits = wtake(&at, (size_t)T * E), *w = wtake(&at, (size_t)Tk);
    int32_t *idx = (int32_t *)wtake(&at, (size_t)Tk);
    float *xe = wtake(&at, (size_t)Tk * H), *ye = wtake(&at, (size_t)Tk * H);
    float *ge = wtake(&at, (size_t)T * wide), *ue = wtake(&at, (size_t)T * wide);
    float *sc = wtake(&at, (size_t)T);
    TRY(work_fits(p, at, g, err));
    TRY(gemm(g, logits, p->h, T, &L->router, p->xb, err));
    plm_moe_route_cuda(idx, w, logits, T, E, k, g->st);
    CK(g->dev, "reading the expert routing", cudaMemcpyAsync(p->h_moe, idx, Tk * 4, cudaMemcpyDeviceToHost, g->st));
    CK(g->dev, "reading the expert routing", cudaMemcpyAsync(p->h_moe_w, w, Tk * 4, cudaMemcpyDeviceToHost, g->st));
    CK(g->dev, "routing experts", cudaStreamSynchronize(g->st));
    /* counting sort by expert: rows of expert e are n0[e] .. n0[e+1]-1, tokens ascending within */
    int64_t *n0 = (int64_t *)calloc((size_t)E + 1, sizeof *n0), *fill = (int64_t *)malloc((size_t)E * sizeof *fill);
    if (!n0 || !fill) {
        free(n0);
        free(fill);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory routing %lld tokens", (long long)T);
    }
    const int32_t *ex = p->h_moe;
    int32_t *tok = p->h_moe_tok, *map = p->h_moe_map;
    for (int64_t i = 0; i < Tk; i++) n0[ex[i] + 1]++;
    for (int e = 0; e < E; e++) n0[e + 1] += n0[e];
    memcpy(fill, n0, (size_t)E * sizeof *fill);
    for (int64_t t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            const int64_t r = fill[ex[t * k + j]]++;
            tok[r] = (int32_t)t;
            map[t * k + j] = (int32_t)r;
        }
    free(fill);
    /* each token's k rows in expert order, the order in which the CPU adds them */
    float *wt = p->h_moe_w;
    for (int64_t t = 0; t < T; t++)
        for (int a = 1; a < k; a++)
            for (int b = a; b > 0 && map[t * k + b] < map[t * k + b - 1]; b--) {
                const int32_t tm = map[t * k + b];
                map[t * k + b] = map[t * k + b - 1];
                map[t * k + b - 1] = tm;
                const float tw = wt[t * k + b];
                wt[t * k + b] = wt[t * k + b - 1];
                wt[t * k + b - 1] = tw;
            }
    cudaError_t e1 = cudaMemcpyAsync(p->moe_tok, tok, Tk * 4, cudaMemcpyHostToDevice, g->st);
    if (e1 == cudaSuccess) e1 = cudaMemcpyAsync(p->moe_w, wt, Tk * 4, cudaMemcpyHostToDevice, g->st);
    if (e1 == cudaSuccess) e1 = cudaMemcpyAsync(p->moe_map, map, Tk * 4, cudaMemcpyHostToDevice, g->st);
    plm_status st = e1 == cudaSuccess ? PLM_OK : cu_fail(err, g->dev, "uploading the expert routing", e1);
    plm_gather_rows_cuda(xe, p->h, p->moe_tok, Tk, H, g->st);
    for (int e = 0; e < E && !st; e++) {
        const int64_t r0 = n0[e], n = n0[e + 1] - n0[e];
        if (!n) continue;
        st = gemm(g, ge, xe + r0 * H, n, &L->e_gate[e], p->xb, err);
        if (!st) st = gemm_k(g, ue, xe + r0 * H, n, &L->e_up[e], p->xb, 1, err);
        if (!st) plm_swiglu_cuda(ge, ue, n * Im, g->st);
        if (!st) st = gemm(g, ye + r0 * H, ge, n, &L->e_down[e], p->xb, err);
    }
    free(n0);
    if (st) return st;
    plm_moe_combine_cuda(p->mo, ye, p->moe_map, p->moe_w, T, k, H, g->st);
    if (Is <= 0) return PLM_OK;
    TRY(gemm(g, ge, p->h, T, &L->sh_gate, p->xb, err));
    TRY(gemm_k(g, ue, p->h, T, &L->sh_up, p->xb, 1, err));
    plm_swiglu_cuda(ge, ue, T * Is, g->st);
    TRY(gemm(g, ye, ge, T, &L->sh_down, p->xb, err));
    TRY(gemm(g, sc, p->h, T, &L->sh_score, p->xb, err));
    plm_sigmoid_scale_add_cuda(p->mo, ye, sc, T, H, g->st);
    return PLM_OK;
}

static plm_status mlp_layer(plm_cuda *g, const dlayer *L, const plan *p, plm_error *err) {
    const plm_config *cf = &g->m->cfg;
    if (cf->is_moe) return moe_layer(g, L, p, err);
    const int64_t T = p->T;
    const int I = cf->intermediate_size;
    float *gg = p->work, *u = p->work + (((size_t)T * I + 63) & ~(size_t)63);
    float *const ys[2] = {gg, u};
    const dmat *const ws[2] = {&L->gate, &L->up};
    if (bf16_outputs(g, T, &L->gate) && L->up.bf16 && L->down.bf16) { /* single pass: BF16 gate and up */
        if (adjacent(ws, 2)) {
            /* up right after gate in device memory (as uploaded): one product of the two stacked */
            const dmat gu = {L->gate.d, 1, L->gate.rows + L->up.rows, L->gate.cols};
            TRY(gemm_bf16_out(g, gg, p->h, T, &gu, p->xb, 1, err));
            plm_swiglu_bb_rows_cuda(p->xb, gg, T, I, g->st);
            return gemm_k(g, p->mo, NULL, T, &L->down, p->xb, 0, err);
        }
        TRY(gemm_bf16_out(g, gg, p->h, T, &L->gate, p->xb, 1, err)); /* h's BF16 form if add_norm wrote it */
        TRY(gemm_bf16_out(g, u, p->h, T, &L->up, p->xb, 1, err));
        plm_swiglu_bb_cuda(p->xb, gg, u, T * I, g->st);
        return gemm_k(g, p->mo, NULL, T, &L->down, p->xb, 0, err);
    }
    /* decode, precise, BF16 weights: the gated product in one GEMV launch, straight into the down
       projection's BF16 hi + lo input (the same values as the two products and the swiglu kernel) */
#ifndef PLM_NO_GLU_GEMV
    const int glu = T <= PLM_GEMV_MAX_T && L->gate.bf16 && L->up.bf16 && L->down.bf16 && L->gate.cols == L->up.cols &&
                    L->gate.rows == I && L->up.rows == I && L->down.cols == I;
    if (glu && g->split &&
        plm_gemv_glu_bf16_cuda(p->xb, xb_lo(g, p->xb, T, I), L->gate.d, L->up.d, I, p->h, NULL, T, L->gate.cols, g->st))
        return gemm_k(g, p->mo, NULL, T, &L->down, p->xb, 0, err);
    /* single pass: the same from h's BF16 form where the add + norm left it in xb, into the gate's room
       as BF16 (the input stays in xb): the values of the two products from xb and the swiglu kernel */
    if (glu && !g->split && g->xb_of == p->h && g->xb_at == p->xb && g->xb_n == T * L->gate.cols &&
        plm_gemv_glu_bf16_cuda(gg, NULL, L->gate.d, L->up.d, I, NULL, p->xb, T, L->gate.cols, g->st))
        return gemm_k(g, p->mo, NULL, T, &L->down, gg, 0, err);
#endif
    /* precise, more rows than the skinny GEMM takes (cuBLAS): gate and up as one product of the two
       stacked, rows [gate | up] over gg and u */
    if (g->split && T > PLM_SKINNY_MAX_T && L->down.bf16 && adjacent(ws, 2) && L->gate.rows == I && L->up.rows == I &&
        L->down.cols == I) {
        const dmat gu = {L->gate.d, 1, 2 * (int64_t)I, L->gate.cols};
        TRY(gemm_k(g, gg, p->h, T, &gu, p->xb, 1, err));
        plm_swiglu_bf16_rows_cuda(p->xb, xb_lo(g, p->xb, T, I), gg, T, I, g->st);
        return gemm_k(g, p->mo, NULL, T, &L->down, p->xb, 0, err);
    }
    TRY(gemm_shared(g, 2, ys, p->h, T, ws, p->xb, err));
    if (L->down.bf16) {
        plm_swiglu_bf16_cuda(p->xb, xb_lo(g, p->xb, T, L->down.cols), gg, u, T * I, g->st);
        return gemm_k(g, p->mo, NULL, T, &L->down, p->xb, 0, err);
    }
    plm_swiglu_cuda(gg, u, T * I, g->st);
    return gemm(g, p->mo, gg, T, &L->down, p->xb, err);
}

/* Sizes the step's device scratch and pinned tables; grows them (before anything runs) if needed. */
static plm_status prepare(plm_cuda *g, plan *p, plm_error *err) {
    const int moe_k = g->m->cfg.is_moe ? g->m->cfg.n_experts_per_tok : 0;
    bump d = {NULL, 0}, h = {NULL, 0};
    lay_out(p, g, &d, &h, moe_k);
    if (d.used > g->scr_bytes) {
        const size_t want = d.used + d.used / 8; /* some room for the next, slightly larger step */
        if (g->limit && g->w_bytes + d.used > g->limit)
            return plm_fail(err, PLM_ERR_NOMEM,
                            "%s: a step of %lld tokens needs %zu bytes of device scratch; with the weights' %zu bytes "
                            "that is over the context's limit of %zu (use a smaller --max-batch-tokens)",
                            g->name, (long long)p->T, d.used, g->w_bytes, g->limit);
        cudaFree(g->scr);
        g->scr = NULL;
        g->scr_bytes = 0;
        size_t got = g->limit && g->w_bytes + want > g->limit ? d.used : want;
        plm_status st = dev_malloc(g->dev, (void **)&g->scr, got, "step scratch", err);
        if (st) {
            char what[96];
            snprintf(what, sizeof what, "the scratch of a step of %lld tokens", (long long)p->T);
            return oom(err, g->dev, d.used, what);
        }
        g->scr_bytes = got;
    }
    if (h.used > g->pin_bytes) {
        cudaFreeHost(g->pin);
        g->pin = NULL;
        g->pin_bytes = 0;
        g->tab_n = -1; /* new pinned memory holds no tables, wherever it lies */
        cudaError_t e = cudaMallocHost((void **)&g->pin, h.used + h.used / 8);
        if (e != cudaSuccess) {
            cudaGetLastError();
            return plm_fail(err, PLM_ERR_NOMEM, "%s: out of pinned host memory (%zu bytes) for a step's tables",
                            g->name, h.used);
        }
        g->pin_bytes = h.used + h.used / 8;
    }
    d.base = g->scr;
    d.used = 0;
    h.base = g->pin;
    h.used = 0;
    lay_out(p, g, &d, &h, moe_k);
    return PLM_OK;
}

/* x += mo, then h = rmsnorm(x) (1 + w). A layer output left as a stacked product's two halves
 * (g->deferred) is summed here, in the order plm_add_halves_cuda sums it. At more rows than the skinny
 * GEMM takes, or at any T in the single-pass mode, where products follow (feeds), h's BF16 form too
 * (hi, and lo in the precise mode), as
 * gemm_k would convert it, into xb, marked as the conversion the next products reuse (gemm_k's keep);
 * otherwise no conversion of the new h exists. The add + norm reads x before its programmatic wait
 * (cuda_ops.h): the kernel launched right before it (the out / o / down projection, or the MoE
 * combine) must not write x, so two add_norms never run back to back. */
static void add_norm(plm_cuda *g, const plan *p, const float *w, int feeds) {
    const plm_config *cf = &g->m->cfg;
    const int64_t T = p->T, H = cf->hidden_size;
    const float *d = g->deferred ? g->stk : p->mo;
    const int parts = g->deferred ? g->deferred : 1;
    g->deferred = 0;
    if (feeds && (T > PLM_SKINNY_MAX_T || !g->split) && !cf->is_moe) { /* single pass: at any T */
        plm_add_rmsnorm_zc_parts_cuda(p->h, p->xb, xb_lo(g, p->xb, T, H), p->x, d, parts, w, T, (int)H, cf->rms_eps,
                                      g->st);
        g->xb_of = p->h, g->xb_at = p->xb, g->xb_n = T * H;
        return;
    }
    plm_add_rmsnorm_zc_parts_cuda(p->h, NULL, NULL, p->x, d, parts, w, T, (int)H, cf->rms_eps, g->st);
    g->xb_of = NULL;
}

/* the embedding, the layers and the final norm into p->h; hid (host, may be NULL) takes the hidden
 * states after the embedding and after each layer */
static plm_status run_layers_in(plm_cuda *g, const plan *p, float *hid, cudaMemcpyKind to_out, plm_error *err) {
    const plm_model *m = g->m;
    const plm_config *cf = &m->cfg;
    const int64_t T = p->T, H = cf->hidden_size;
    plm_embed_rows_cuda(p->x, g->embed.d, g->embed.bf16, H, p->tokens, T, g->st);
    if (hid) CK(g->dev, "reading hidden states", cudaMemcpyAsync(hid, p->x, (size_t)T * H * 4, to_out, g->st));
    plm_rmsnorm_zc_cuda(p->h, p->x, g->L[0].in_norm, T, (int)H, cf->rms_eps, g->st);
    g->xb_of = NULL; /* p->h changed */
    for (int li = 0; li < cf->n_layers; li++) {
        const plm_layer *Lh = &m->layers[li];
        const dlayer *L = &g->L[li];
        if (Lh->type == PLM_LAYER_LINEAR) TRY(linear_layer(g, Lh, L, p, err));
        else TRY(attention_layer(g, Lh, L, p, err));
        add_norm(g, p, L->post_norm, 1);
        TRY(mlp_layer(g, L, p, err));
        /* the final norm feeds the output stage, which gathers its rows and converts them itself */
        add_norm(g, p, li + 1 < cf->n_layers ? g->L[li + 1].in_norm : g->final_norm, li + 1 < cf->n_layers);
        if (hid && li + 1 < cf->n_layers)
            CK(g->dev, "reading hidden states",
               cudaMemcpyAsync(hid + (li + 1) * T * H, p->x, (size_t)T * H * 4, to_out, g->st));
        CK(g->dev, "a kernel launch", cudaGetLastError());
    }
    if (hid)
        CK(g->dev, "reading hidden states",
           cudaMemcpyAsync(hid + (int64_t)cf->n_layers * T * H, p->h, (size_t)T * H * 4, to_out, g->st));
    return PLM_OK;
}

/* the layers' outputs into p->mo may be left as a stacked product's halves for add_norm to sum; no
 * other product's output may, whatever way the layers end */
static plm_status run_layers(plm_cuda *g, const plan *p, float *hid, cudaMemcpyKind to_out, plm_error *err) {
    g->defer_to = p->mo;
    g->deferred = 0;
    const plm_status st = run_layers_in(g, p, hid, to_out, err);
    g->defer_to = NULL;
    g->deferred = 0;
    return st;
}

/* Makes every kernel-to-kernel edge of a captured graph programmatic (programmatic dependent launch):
 * the next kernel is scheduled as soon as every block of the one before has started (each calls
 * plm_pdl_enter first: it waits there for its predecessors to complete, then lets its successor be
 * scheduled), so one launch overlaps the drain of the one before. Only where every kernel is packlm's:
 * cuBLAS's kernels do not wait. */
static cudaError_t pdl_edges(cudaGraph_t graph) {
    size_t n = 0;
    cudaError_t e = cudaGraphGetEdges(graph, NULL, NULL, NULL, &n);
    if (e != cudaSuccess || !n) return e;
    cudaGraphNode_t *from = (cudaGraphNode_t *)malloc(2 * n * sizeof *from);
    if (!from) return cudaErrorMemoryAllocation;
    cudaGraphNode_t *to = from + n;
    e = cudaGraphGetEdges(graph, from, to, NULL, &n);
    for (size_t i = 0; i < n && e == cudaSuccess; i++) {
        cudaGraphNodeType a, b;
        e = cudaGraphNodeGetType(from[i], &a);
        if (e == cudaSuccess) e = cudaGraphNodeGetType(to[i], &b);
        if (e != cudaSuccess || a != cudaGraphNodeTypeKernel || b != cudaGraphNodeTypeKernel) continue;
        cudaGraphEdgeData ed;
        memset(&ed, 0, sizeof ed);
        ed.from_port = cudaGraphKernelNodePortProgrammatic;
        ed.type = cudaGraphDependencyTypeProgrammatic;
        e = cudaGraphRemoveDependencies(graph, &from[i], &to[i], NULL, 1);
        if (e == cudaSuccess) e = cudaGraphAddDependencies(graph, &from[i], &to[i], &ed, 1);
    }
    free(from);
    return e;
}

/* run_layers as a CUDA graph: a step whose plan (shape, tables' sizes, every scratch address) equals
 * a captured one replays it; the tables it reads were uploaded into the same addresses just before.
 * Dense models only (MoE routing reads back to the host mid-step), no hidden states. */
static plm_status run_layers_graph(plm_cuda *g, const plan *p, plm_error *err) {
    if (!g->graphs) {
        g->graphs = (struct graph_slot *)calloc(GRAPH_SLOTS, sizeof *g->graphs);
        if (!g->graphs) return run_layers(g, p, NULL, cudaMemcpyDeviceToHost, err);
    }
    /* a new plan replaces the least recently used graph of the same size of step whose KV tables were
       smaller, if there is one (its sequences grew: the same kernels, other arguments), else the least
       recently used. Only growth: two plans of one size that alternate (other outputs, another
       cohort's stride) keep a graph each instead of updating one slot back and forth. */
    int slot = 0, same = -1;
    for (int i = 0; i < GRAPH_SLOTS; i++) {
        struct graph_slot *gs = &g->graphs[i];
        if (gs->exec && !memcmp(&gs->key, p, sizeof *p)) {
            gs->used = ++g->graph_clock;
            CK(g->dev, "replaying a step's graph", cudaGraphLaunch(gs->exec, g->st));
            return PLM_OK;
        }
        if (gs->used < g->graphs[slot].used) slot = i;
        if (gs->exec && gs->key.T == p->T && gs->key.n_seg == p->n_seg && gs->key.nbt < p->nbt &&
            (same < 0 || gs->used < g->graphs[same].used))
            same = i;
    }
    if (same >= 0) slot = same;
    struct graph_slot *gs = &g->graphs[slot];
#ifdef PLM_STEP_TIMING
    struct timespec tc0, tc1, tc2;
    clock_gettime(CLOCK_MONOTONIC, &tc0);
#endif
    g->xb_of = NULL; /* every conversion the layers need is recorded */
    CK(g->dev, "capturing a step's graph", cudaStreamBeginCapture(g->st, cudaStreamCaptureModeRelaxed));
    const unsigned blas0 = g->blas_calls;
    plm_status st = run_layers(g, p, NULL, cudaMemcpyDeviceToHost, err);
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(g->st, &graph);
    g->xb_of = NULL;
    const int pdl = !st && e == cudaSuccess && g->pdl && g->blas_calls == blas0;
    if (pdl) e = pdl_edges(graph);
#ifdef PLM_STEP_TIMING
    clock_gettime(CLOCK_MONOTONIC, &tc1);
#endif
    /* the graph replaced is updated in place where its topology is the same (cheaper than a new
       instantiation); else it goes and the new one is instantiated. A failed capture leaves the slot's
       graph (and its key) as they were. */
    int updated = 0, fresh = 0;
    if (!st && e == cudaSuccess) {
        if (PLM_GRAPH_UPDATE && gs->exec && same == slot) {
            cudaGraphExecUpdateResultInfo info;
            updated = cudaGraphExecUpdate(gs->exec, graph, &info) == cudaSuccess;
            if (!updated) cudaGetLastError();
        }
        if (!updated) {
            if (gs->exec) cudaGraphExecDestroy(gs->exec);
            gs->exec = NULL;
            fresh = 1;
            e = cudaGraphInstantiate(&gs->exec, graph, 0);
        }
    }
    if (graph) cudaGraphDestroy(graph);
    g->n_capture += !st && e == cudaSuccess;
    g->n_update += updated;
#ifdef PLM_STEP_TIMING
    clock_gettime(CLOCK_MONOTONIC, &tc2);
    g->capture_ms += ms_between(tc0, tc1);
    g->inst_ms += ms_between(tc1, tc2);
#endif
    if (st || e != cudaSuccess) {
        if (fresh) gs->exec = NULL; /* the instantiation failed: the slot is empty */
        cudaGetLastError();
        if (!st && pdl) { /* programmatic edges refused here: plain graphs from now on */
            g->pdl = 0;
            return run_layers_graph(g, p, err);
        }
        return st ? st : cu_fail(err, g->dev, "capturing a step's graph", e);
    }
    memcpy(&gs->key, p, sizeof *p);
    gs->used = ++g->graph_clock;
    CK(g->dev, "replaying a step's graph", cudaGraphLaunch(gs->exec, g->st));
    return PLM_OK;
}

/* ---------------------------------------------------------------- arrays in device memory */
extern "C" plm_status plm_cuda_where(plm_ctx *c, const void *p, const char *what, plm_error *err) {
    CK(c->cuda->dev, "selecting the device", cudaSetDevice(c->cuda->dev));
    return plm_devmem_where(c->cuda->dev, p, what, err);
}

/* g->aux holds at least bytes (its contents are not kept) */
static plm_status aux_room(plm_cuda *g, size_t bytes, plm_error *err) {
    if (bytes <= g->aux_bytes) return PLM_OK;
    bytes += bytes / 8;
    if (g->limit && g->w_bytes + g->scr_bytes + bytes > g->limit)
        return plm_fail(err, PLM_ERR_NOMEM,
                        "%s: checking device arrays needs %zu bytes of device memory; with the weights and the step "
                        "scratch (%zu bytes) that is over the context's limit of %zu",
                        g->name, bytes, g->w_bytes + g->scr_bytes, g->limit);
    cudaFree(g->aux);
    g->aux = NULL;
    g->aux_bytes = 0;
    TRY(dev_malloc(g->dev, (void **)&g->aux, bytes, "the checks of device arrays", err));
    g->aux_bytes = bytes;
    return PLM_OK;
}

extern "C" plm_status plm_cuda_check_arrays(plm_ctx *c, const int32_t *tokens, const int32_t *pos, const int32_t *target,
                                            int32_t T, const int32_t *cu, const int64_t *start, int ns,
                                            plm_cuda_check *r, plm_error *err) {
    plm_cuda *g = c->cuda;
    memset(r, 0, sizeof *r);
    r->bad_token = r->bad_pos = r->bad_target = -1;
    if (!tokens && !pos && !target) return PLM_OK;
    CK(g->dev, "selecting the device", cudaSetDevice(g->dev));
    CK(g->dev, "an earlier launch", cudaGetLastError());
    const size_t rb = 256, cb = pos ? ((size_t)(ns + 1) * 4 + 255) & ~(size_t)255 : 0, sb = pos ? (size_t)ns * 8 : 0;
    TRY(aux_room(g, rb + cb + sb, err));
    int32_t *dr = (int32_t *)g->aux, *dcu = pos ? (int32_t *)(g->aux + rb) : NULL;
    int64_t *dstart = pos ? (int64_t *)(g->aux + rb + cb) : NULL;
    if (pos) {
        CK(g->dev, "uploading the segments", cudaMemcpyAsync(dcu, cu, (size_t)(ns + 1) * 4, cudaMemcpyHostToDevice, g->st));
        CK(g->dev, "uploading the segments", cudaMemcpyAsync(dstart, start, (size_t)ns * 8, cudaMemcpyHostToDevice, g->st));
    }
    plm_devmem_check(dr, tokens, pos, target, dcu, dstart, ns, T, g->m->cfg.vocab_size, g->st);
    CK(g->dev, "a kernel launch", cudaGetLastError());
    int32_t h[PLM_DEVMEM_CHECK_INTS];
    CK(g->dev, "checking the step's device arrays", cudaMemcpyAsync(h, dr, sizeof h, cudaMemcpyDeviceToHost, g->st));
    CK(g->dev, "checking the step's device arrays", cudaStreamSynchronize(g->st));
    r->bad_token = h[0], r->token = h[1];
    r->bad_pos = h[2], r->pos = h[3];
    r->bad_target = h[4], r->target = h[5];
    r->n_score = h[6];
    return PLM_OK;
}

extern "C" plm_status plm_cuda_segments(plm_ctx *c, int32_t *cu, int32_t *n_seg, const int32_t *pos, int32_t n,
                                        plm_error *err) {
    plm_cuda *g = c->cuda;
    *n_seg = 0;
    CK(g->dev, "selecting the device", cudaSetDevice(g->dev));
    CK(g->dev, "an earlier launch", cudaGetLastError());
    const size_t rb = 256;
    TRY(aux_room(g, rb + (size_t)(n + 1) * 4, err));
    int32_t *dr = (int32_t *)g->aux, *dcu = (int32_t *)(g->aux + rb);
    plm_devmem_seg_starts(dcu, dr, pos, n, g->st);
    CK(g->dev, "a kernel launch", cudaGetLastError());
    int32_t h[4];
    CK(g->dev, "finding segments", cudaMemcpyAsync(h, dr, sizeof h, cudaMemcpyDeviceToHost, g->st));
    CK(g->dev, "finding segments", cudaStreamSynchronize(g->st));
    if (h[1] >= 0) return plm_fail(err, PLM_ERR_INPUT, "position id %d at index %d is negative", h[2], h[1]);
    CK(g->dev, "reading segments", cudaMemcpyAsync(cu, dcu, (size_t)(h[0] + 1) * 4, cudaMemcpyDeviceToHost, g->st));
    CK(g->dev, "reading segments", cudaStreamSynchronize(g->st));
    *n_seg = h[0];
    return PLM_OK;
}

/* ---------------------------------------------------------------- the step, run */
extern "C" plm_status plm_cuda_step(plm_ctx *c, const plm_step *s, const plm_outputs *out, const int64_t *start,
                                    const plm_cuda_check *chk, plm_error *err) {
    plm_cuda *g = c->cuda;
    const plm_model *m = g->m;
    const plm_config *cf = &m->cfg;
    const int64_t T = s->n_tokens, H = cf->hidden_size, V = cf->vocab_size;
    const int ns = s->n_seg, nl = m->info.n_linear_layers, na = m->info.n_attention_layers;
    const int dev_in = s->mem == PLM_MEM_DEVICE, dev_out = out && out->mem == PLM_MEM_DEVICE;
    const cudaMemcpyKind to_out = dev_out ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost;
    CK(g->dev, "selecting the device", cudaSetDevice(g->dev));
    CK(g->dev, "an earlier launch", cudaGetLastError());
#ifdef PLM_STEP_TIMING
    struct timespec tw0;
    clock_gettime(CLOCK_MONOTONIC, &tw0);
    if (!g->ev[0]) {
        for (int i = 0; i < 4; i++) cudaEventCreate(&g->ev[i]);
        cudaEventCreate(&g->ev_last);
    }
#endif

    plan p;
    memset(&p, 0, sizeof p);
    p.T = T;
    p.n_seg = ns;
    for (int i = 0; i < ns; i++) p.nbt += (int)((start[i] + (s->cu[i + 1] - s->cu[i]) + PLM_KV_BLOCK - 1) / PLM_KV_BLOCK);
    { /* the KV tables' stride, a power of two (at least 16): a decode step's graph then survives its
         sequences' growth until their KV blocks double (rounded to 16, 256 sequences a few tokens apart
         crossed a multiple every few steps, each a new capture: 2-3 ms capturing, about 1 instantiating).
         Steps too large for a graph take the count as it is. */
        int nbt = 16;
        while (nbt < p.nbt && T <= GRAPH_MAX_T) nbt *= 2;
        p.nbt = nbt > p.nbt ? nbt : p.nbt;
    }
    const int want_logits = out && (out->logits || out->logits_cb);
    p.n_logit = want_logits ? (out->rows ? out->n_rows : T) : 0;
    if (out && out->target && out->logprob) {
        if (dev_out) p.n_score = chk ? chk->n_score : 0; /* counted on the device by the validation */
        else
            for (int64_t t = 0; t < T; t++) p.n_score += out->target[t] >= 0;
    }
    p.n_amax = out && out->n_amax > 0 ? out->n_amax : 0;
    p.attn_qt = plm_attn_qt(cf->n_heads, cf->n_kv_heads);
    /* blocks of rows through the lm_head: the logits and greedy rows in FP32, the scored rows in BF16 in
       single-pass mode where cuBLAS runs them (more rows than the skinny GEMM takes) */
    const int64_t need_rows = p.n_logit > p.n_amax ? p.n_logit : p.n_amax;
    p.score_bf16 = bf16_outputs(g, p.n_score, &g->lm_head);
    p.out_block = out_rows_of(need_rows, V, 4, T);
    p.score_block = out_rows_of(p.n_score, V, p.score_bf16 ? 2 : 4, T);
    if (g->in_step) { /* the last step returned an error after its upload: its copies (in and out of the
                         pinned block) finish before this step writes there, and its tables are not known */
        cudaStreamSynchronize(g->st);
        cudaGetLastError();
        g->in_step = 0;
        g->tab_n = -1;
    }
    TRY(prepare(g, &p, err));
#ifdef PLM_STEP_TIMING
    struct timespec twp, twt;
    clock_gettime(CLOCK_MONOTONIC, &twp);
#endif

    /* the step's tables, in one upload */
    if (!dev_in) memcpy(HOST(&p, tokens, int32_t), s->tokens, (size_t)T * 4);
    memcpy(HOST(&p, cu, int32_t), s->cu, (size_t)(ns + 1) * 4);
    int32_t *seg_of = HOST(&p, seg_of, int32_t), *boff = HOST(&p, boff, int32_t);
    int64_t *pos = HOST(&p, pos, int64_t);
    memcpy(HOST(&p, start, int64_t), start, (size_t)ns * 8);
    float **ct = HOST(&p, conv_tab, float *), **rt = HOST(&p, rec_tab, float *);
    float **kt = HOST(&p, ktab, float *), **vt = HOST(&p, vtab, float *);
    /* the states' pointers: a segment whose state, identity and KV block count are those the tables
       hold at this place from the step before keeps its conv and rec entries; the KV entries are
       rewritten from the first segment that differs on (a change of block count moves the segments
       after it). Decode steps of the same sequences rewrite nothing between KV block edges. */
    const int known = g->tab_n == ns && g->tab_nbt == p.nbt && g->tab_at[0] == ct && g->tab_at[1] == rt &&
                      g->tab_at[2] == kt && g->tab_at[3] == vt;
    if (ns > g->tab_cap) {
        const plm_state **a = (const plm_state **)realloc(g->tab_st, (size_t)ns * sizeof *a);
        if (a) g->tab_st = a;
        uint64_t *b = (uint64_t *)realloc(g->tab_id, (size_t)ns * sizeof *b);
        if (b) g->tab_id = b;
        int *nbs = (int *)realloc(g->tab_nb, (size_t)ns * sizeof *nbs);
        if (nbs) g->tab_nb = nbs;
        if (a && b && nbs) g->tab_cap = ns;
    }
    const int keep = ns <= g->tab_cap; /* else (out of memory) every entry is written and nothing kept */
    int kv_from = ns;
    boff[0] = 0;
    for (int i = 0; i < ns; i++) {
        const plm_state *st = s->state[i];
        const int nb = (int)((start[i] + (s->cu[i + 1] - s->cu[i]) + PLM_KV_BLOCK - 1) / PLM_KV_BLOCK);
        boff[i + 1] = boff[i] + nb;
        for (int32_t t = s->cu[i]; t < s->cu[i + 1]; t++) {
            seg_of[t] = i;
            pos[t] = start[i] + (t - s->cu[i]);
        }
        const int same = known && keep && g->tab_st[i] == st && g->tab_id[i] == st->id;
        if (!same)
            for (int l = 0; l < nl; l++) {
                ct[(size_t)l * ns + i] = st->conv[l];
                rt[(size_t)l * ns + i] = st->rec[l];
            }
        if ((!same || g->tab_nb[i] != nb) && kv_from == ns) kv_from = i;
        if (keep) g->tab_st[i] = st, g->tab_id[i] = st->id, g->tab_nb[i] = nb;
    }
    for (int i = kv_from; i < ns; i++) {
        const plm_state *st = s->state[i];
        const int nb = boff[i + 1] - boff[i];
        for (int a = 0; a < na; a++)
            for (int b = 0; b < nb; b++) {
                kt[(size_t)a * p.nbt + boff[i] + b] = st->kv[a].k[b];
                vt[(size_t)a * p.nbt + boff[i] + b] = st->kv[a].v[b];
            }
    }
    g->tab_n = keep ? ns : -1, g->tab_nbt = p.nbt;
    g->tab_at[0] = ct, g->tab_at[1] = rt, g->tab_at[2] = kt, g->tab_at[3] = vt;
#ifdef PLM_STEP_TIMING
    clock_gettime(CLOCK_MONOTONIC, &twt);
#endif
    int32_t *sr = HOST(&p, score_rows, int32_t), *stg = HOST(&p, score_tgt, int32_t);
    if (p.n_score && !dev_out) {
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++)
            if (out->target[t] >= 0) {
                sr[n] = (int32_t)t;
                stg[n++] = out->target[t];
            }
    }
    int32_t *lr = HOST(&p, logit_rows, int32_t);
    for (int64_t i = 0; i < p.n_logit; i++) lr[i] = out->rows ? out->rows[i] : (int32_t)i;
    if (p.n_amax) memcpy(HOST(&p, amax_rows, int32_t), out->amax_rows, (size_t)p.n_amax * 4);
    if (na) p.n_atiles = plm_attn_tiles(HOST(&p, atiles, int32_t), s->cu, ns, p.attn_qt);
    if (na) { /* the longest segment (the decode kernel) and its KV blocks, rounded up to a power of two
                 so that a decode step's graph survives its sequences' growth (the key splits) */
        int lmax = 0, kbmax = 1;
        for (int i = 0; i < ns; i++) {
            lmax = s->cu[i + 1] - s->cu[i] > lmax ? s->cu[i + 1] - s->cu[i] : lmax;
            while (kbmax < boff[i + 1] - boff[i]) kbmax *= 2;
        }
        p.attn_dec = lmax <= ATTN_DEC_MAX_LEN && plm_attn_dec_fits(cf->n_heads, cf->n_kv_heads, cf->head_dim);
        if (T <= ATTN_SPLIT_MAX_T)
            p.attn_split = plm_attn_split(p.attn_dec ? (int)T : p.n_atiles, cf->n_kv_heads, kbmax, g->n_sm);
    }
    if (m->info.n_linear_layers) p.n_gchunks = plm_gdn_chunks(HOST(&p, gtab, int32_t), s->cu, ns, &p.n_glong, &p.n_gshort);
    p.dec1 = ns == T;
    for (int i = 0; i < ns && p.dec1; i++) p.dec1 = s->cu[i + 1] - s->cu[i] == 1;
#ifdef PLM_STEP_TIMING
    struct timespec twu;
    clock_gettime(CLOCK_MONOTONIC, &twu);
    cudaEventRecord(g->ev[0], g->st);
#endif
    g->in_step = 1;
    CK(g->dev, "uploading the step", cudaMemcpyAsync(p.tokens, p.h_base, p.h_bytes, cudaMemcpyHostToDevice, g->st));
    /* device arrays (PLM_MEM_DEVICE) go into the same tables on the device: the tokens copied, the
       scored rows compacted there (the order the host uses, so the same lm_head blocks) */
    if (dev_in)
        CK(g->dev, "reading the step's tokens",
           cudaMemcpyAsync(p.tokens, s->tokens, (size_t)T * 4, cudaMemcpyDeviceToDevice, g->st));
    if (p.n_score && dev_out) plm_devmem_score_rows(p.score_rows, p.score_tgt, out->target, (int32_t)T, g->st);

    /* the layers: small steps replay a graph of them (captured on first use of their shape) */
    float *hid = out ? out->hidden : NULL;
#ifdef PLM_STEP_TIMING
    cudaEventRecord(g->ev[1], g->st);
#endif
    if (!hid && !cf->is_moe && T <= GRAPH_MAX_T) TRY(run_layers_graph(g, &p, err));
    else TRY(run_layers(g, &p, hid, to_out, err));
#ifdef PLM_STEP_TIMING
    cudaEventRecord(g->ev[2], g->st);
#endif

    /* outputs: logits rows and log-probabilities, out_block rows of lm_head at a time */
    for (int64_t i0 = 0; i0 < p.n_logit; i0 += p.out_block) {
        const int64_t nb = p.n_logit - i0 < p.out_block ? p.n_logit - i0 : p.out_block;
        plm_gather_rows_cuda(p.out_rows, p.h, p.logit_rows + i0, nb, (int)H, g->st);
        if (dev_out && !out->logits_cb && ((uintptr_t)(out->logits + i0 * V) & 255) == 0) {
            /* straight into the caller's device array: the same blocks, and an output as aligned as the
               scratch (the product may choose its kernel by alignment), so the same bits */
            TRY(gemm(g, out->logits + i0 * V, p.out_rows, nb, &g->lm_head, p.xb, err));
            continue;
        }
        TRY(gemm(g, p.out_logits, p.out_rows, nb, &g->lm_head, p.xb, err));
        if (out->logits_cb) {
            float *buf = (float *)malloc((size_t)nb * V * 4);
            if (!buf) return plm_fail(err, PLM_ERR_NOMEM, "out of memory for a block of logits");
            cudaError_t e = cudaMemcpyAsync(buf, p.out_logits, (size_t)nb * V * 4, cudaMemcpyDeviceToHost, g->st);
            if (e == cudaSuccess) e = cudaStreamSynchronize(g->st);
            if (e != cudaSuccess) {
                free(buf);
                return cu_fail(err, g->dev, "reading logits", e);
            }
            const int stop = out->logits_cb(out->cb_user, (int32_t)i0, (int32_t)nb, buf);
            free(buf);
            if (stop) break;
        } else {
            CK(g->dev, "reading logits",
               cudaMemcpyAsync(out->logits + i0 * V, p.out_logits, (size_t)nb * V * 4, to_out, g->st));
        }
    }
    for (int64_t i0 = 0; i0 < p.n_score; i0 += p.score_block) { /* log-probabilities stay on the device */
        const int64_t nb = p.n_score - i0 < p.score_block ? p.n_score - i0 : p.score_block;
        plm_gather_rows_cuda(p.out_rows, p.h, p.score_rows + i0, nb, (int)H, g->st);
        if (p.score_bf16) {
            TRY(gemm_bf16_out(g, p.out_logits, p.out_rows, nb, &g->lm_head, p.xb, 0, err));
            plm_logprob_bf16_cuda(p.out_lp + i0, p.out_logits, p.score_tgt + i0, (int)nb, (int)V, g->st);
            continue;
        }
        TRY(gemm(g, p.out_logits, p.out_rows, nb, &g->lm_head, p.xb, err));
        plm_logprob_cuda(p.out_lp + i0, p.out_logits, p.score_tgt + i0, (int)nb, (int)V, g->st);
    }
    if (p.n_score && dev_out) plm_devmem_scatter(out->logprob, p.out_lp, p.score_rows, p.n_score, g->st);
    else if (p.n_score)
        CK(g->dev, "reading log-probabilities",
           cudaMemcpyAsync(p.h_lp, p.out_lp, (size_t)p.n_score * 4, cudaMemcpyDeviceToHost, g->st));
    const int amax_bf16 = bf16_outputs(g, p.n_amax, &g->lm_head); /* for every block of the step alike */
    for (int64_t i0 = 0; i0 < p.n_amax; i0 += p.out_block) { /* greedy choices: only token ids come back */
        const int64_t nb = p.n_amax - i0 < p.out_block ? p.n_amax - i0 : p.out_block;
        plm_gather_rows_cuda(p.out_rows, p.h, p.amax_rows + i0, nb, (int)H, g->st);
        if (amax_bf16) { /* single pass: BF16 logits, as transformers' BF16 lm_head gives them to its argmax
                            (half the bytes written and read) */
            TRY(gemm_bf16_out(g, p.out_logits, p.out_rows, nb, &g->lm_head, p.xb, 0, err));
            plm_argmax_bf16_cuda(p.amax + i0, p.out_logits, (int)nb, (int)V, g->st);
            continue;
        }
        TRY(gemm(g, p.out_logits, p.out_rows, nb, &g->lm_head, p.xb, err));
        plm_argmax_cuda(p.amax + i0, p.out_logits, (int)nb, (int)V, g->st);
    }
    if (p.n_amax)
        CK(g->dev, "reading the greedy choices",
           cudaMemcpyAsync(dev_out ? (void *)out->argmax : (void *)p.h_amax, p.amax, (size_t)p.n_amax * 4, to_out,
                           g->st));
    CK(g->dev, "a kernel launch", cudaGetLastError());
#ifdef PLM_STEP_TIMING
    cudaEventRecord(g->ev[3], g->st);
#endif
    CK(g->dev, "running the step", cudaStreamSynchronize(g->st));
    g->in_step = 0;
#ifdef PLM_STEP_TIMING
    {
        float f[4] = {0, 0, 0, 0};
        cudaEventElapsedTime(&f[1], g->ev[0], g->ev[1]);
        cudaEventElapsedTime(&f[2], g->ev[1], g->ev[2]);
        cudaEventElapsedTime(&f[3], g->ev[2], g->ev[3]);
        if (g->have_last) cudaEventElapsedTime(&f[0], g->ev_last, g->ev[0]);
        cudaEventRecord(g->ev_last, g->st);
        g->have_last = 1;
        struct timespec tw1;
        clock_gettime(CLOCK_MONOTONIC, &tw1);
        int i = 0;
        while (i < 8 && g->tm[i].seen && g->tm[i].T != T) i++;
        if (i == 8) { /* a ninth size of step: the last row starts over for it */
            i = 7;
            memset(&g->tm[7], 0, sizeof g->tm[7]);
        }
        g->tm[i].T = T;
        if (++g->tm[i].seen > 2) { /* the first two steps of a size capture its graph */
            g->tm[i].n++;
            g->tm[i].gap += f[0], g->tm[i].up += f[1], g->tm[i].layers += f[2], g->tm[i].tail += f[3];
            g->tm[i].host_in += ms_between(tw0, tw1);
            g->tm[i].host_prep += ms_between(tw0, twu);
            g->tm[i].host_plan += ms_between(tw0, twp);
            g->tm[i].host_tab += ms_between(twp, twt);
            g->tm[i].host_out += ms_between(g->tw_end, tw0);
        }
        g->tw_end = tw1;
        cudaGetLastError(); /* a timing call's error is not the step's */
    }
#endif
    if (dev_out) return PLM_OK; /* every output is in place on the device */
    if (p.n_amax) memcpy(out->argmax, p.h_amax, (size_t)p.n_amax * 4);
    for (int64_t i = 0; i < p.n_score; i++) out->logprob[sr[i]] = p.h_lp[i];
    return PLM_OK;
}

/* ---------------------------------------------------------------- ceilings for the benchmark */
__global__ void k_fill_random(__nv_bfloat16 *x, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        x[i] = __float2bfloat16_rn((float)(h & 0xffff) / 65536.0f - 0.5f);
    }
}

extern "C" plm_status plm_cuda_ceilings(int dev, int m, int n, int k, size_t bytes, int reps, double *gemm_tflops,
                                        double *copy_tbps, plm_error *err) {
    plm_status st = check_device(dev, err);
    if (st) return st;
    void *a = NULL, *b = NULL, *c = NULL, *src = NULL, *dst = NULL;
    cublasHandle_t h = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    st = dev_malloc(dev, &a, (size_t)m * k * 2, "a benchmark matrix", err);
    if (!st) st = dev_malloc(dev, &b, (size_t)k * n * 2, "a benchmark matrix", err);
    if (!st) st = dev_malloc(dev, &c, (size_t)m * n * 4, "a benchmark matrix", err);
    if (!st) st = dev_malloc(dev, &src, bytes, "a benchmark buffer", err);
    if (!st) st = dev_malloc(dev, &dst, bytes, "a benchmark buffer", err);
    if (!st && (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS || cudaEventCreate(&e0) || cudaEventCreate(&e1)))
        st = plm_fail(err, PLM_ERR_INTERNAL, "cuda:%d: cannot set up the ceilings", dev);
    if (!st) {
        k_fill_random<<<1024, 256>>>((__nv_bfloat16 *)a, (size_t)m * k, 1u);
        k_fill_random<<<1024, 256>>>((__nv_bfloat16 *)b, (size_t)k * n, 2u);
        cudaMemset(src, 1, bytes);
        const float one = 1.0f, zero = 0.0f;
        float best_g = 1e30f, best_c = 1e30f;
        for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
            float ms = 0;
            cudaEventRecord(e0);
            cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, b, CUDA_R_16BF, k, a, CUDA_R_16BF, k, &zero, c,
                         CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            cudaEventRecord(e1);
            cudaEventSynchronize(e1);
            cudaEventElapsedTime(&ms, e0, e1);
            if (r >= 0 && ms < best_g) best_g = ms;
            cudaEventRecord(e0);
            cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice);
            cudaEventRecord(e1);
            cudaEventSynchronize(e1);
            cudaEventElapsedTime(&ms, e0, e1);
            if (r >= 0 && ms < best_c) best_c = ms;
        }
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) st = cu_fail(err, dev, "measuring the ceilings", e);
        *gemm_tflops = 2.0 * m * n * k / (best_g * 1e-3) * 1e-12;
        *copy_tbps = 2.0 * bytes / (best_c * 1e-3) * 1e-12;
    }
    if (h) cublasDestroy(h);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a), cudaFree(b), cudaFree(c), cudaFree(src), cudaFree(dst);
    return st;
}

__global__ void k_fill_uniform(float *x, size_t n, float lo, float hi, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed * 0x9e3779b9u;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        x[i] = lo + (hi - lo) * (float)(h >> 8) * (1.0f / 16777216.0f);
    }
}

/* median of 20 timed calls after 3 warm-ups */
template <typename F> static float time_median(F fn, cudaEvent_t a, cudaEvent_t b) {
    for (int r = 0; r < 3; r++) fn();
    float t[20];
    for (int r = 0; r < 20; r++) {
        cudaEventRecord(a);
        fn();
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        cudaEventElapsedTime(&t[r], a, b);
    }
    for (int i = 1; i < 20; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            float x = t[j];
            t[j] = t[j - 1], t[j - 1] = x;
        }
    return t[10];
}

/* ms[0..3]: y = W x for one input row, W BF16 [248,320 x 1,024] (the lm_head) and [6,144 x 1,024]: the
 * GEMV kernel with x in FP32 (the precise form decode runs), then cuBLAS's BF16 GEMM with x in BF16
 * (one pass). ms[4..7]: 16 input rows (16 sequences decoding), W the lm_head and [1,024 x 3,584] (the
 * 0.8B MLP's down projection): the skinny GEMM with x in FP32 (the precise form, split in the kernel),
 * then what gemm_k ran before it: x converted to BF16 hi + lo and cuBLAS's two passes. The smaller
 * shapes are timed over the disjoint slices of the larger W in turn (40 and 69 of them), that time
 * over their number a call: 503 MB, over 8 times the L2, so their weights come from memory too. */
static plm_status bench_gemv(int dev, double ms[PLM_CUDA_GEMV_TIMES], plm_error *err) {
    const int64_t V = 248320, H = 1024, S = 6144, I = 3584, TS = 16;
    void *w = NULL, *xb = NULL, *work = NULL;
    float *x = NULL, *y = NULL;
    cublasHandle_t h = NULL;
    cudaEvent_t a = NULL, b = NULL;
    plm_status st = dev_malloc(dev, &w, (size_t)V * H * 2, "benchmark buffers", err);
    if (!st) st = dev_malloc(dev, (void **)&x, (size_t)TS * I * 4, "benchmark buffers", err);
    if (!st) st = dev_malloc(dev, &xb, (size_t)TS * I * 2 * 2, "benchmark buffers", err);
    if (!st) st = dev_malloc(dev, (void **)&y, (size_t)TS * V * 4, "benchmark buffers", err);
    if (!st) st = dev_malloc(dev, &work, plm_skinny_work_bytes(), "benchmark buffers", err);
    if (!st && (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS || cudaEventCreate(&a) || cudaEventCreate(&b) ||
                cudaMemset(work, 0, plm_skinny_work_bytes())))
        st = plm_fail(err, PLM_ERR_INTERNAL, "cuda:%d: cannot set up the GEMV timings", dev);
    if (!st) {
        k_fill_random<<<1024, 256>>>((__nv_bfloat16 *)w, (size_t)V * H, 8u);
        k_fill_uniform<<<64, 256>>>(x, (size_t)TS * I, -1.0f, 1.0f, 9);
        plm_to_bf16_cuda(xb, NULL, x, H, NULL);
        const float one = 1.0f, zero = 0.0f;
        for (int c = 0; c < 2; c++) {
            const int64_t rows = c ? S : V, n = c ? V / S : 1;
            ms[c] = time_median([&] {
                for (int64_t i = 0; i < n; i++)
                    plm_gemv_bf16_cuda(y, (char *)w + i * rows * H * 2, x, NULL, NULL, 1, rows, H, NULL);
            }, a, b) / n;
            ms[2 + c] = time_median([&] {
                for (int64_t i = 0; i < n; i++)
                    cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, 1, (int)H, &one, (char *)w + i * rows * H * 2,
                                 CUDA_R_16BF, (int)H, xb, CUDA_R_16BF, (int)H, &zero, y, CUDA_R_32F, (int)rows,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            }, a, b) / n;
        }
        for (int c = 0; c < 2; c++) { /* 16 rows: the lm_head, then the down projection */
            const int64_t rows = c ? H : V, cols = c ? I : H, n = V * H / (rows * cols);
            void *lo = (char *)xb + (size_t)TS * cols * 2;
            ms[4 + c] = time_median([&] {
                for (int64_t i = 0; i < n; i++)
                    plm_skinny_bf16_cuda(y, (char *)w + i * rows * cols * 2, x, NULL, NULL, TS, rows, cols, work, NULL);
            }, a, b) / n;
            ms[6 + c] = time_median([&] {
                for (int64_t i = 0; i < n; i++) {
                    const void *wi = (char *)w + i * rows * cols * 2;
                    plm_to_bf16_cuda(xb, lo, x, TS * cols, NULL);
                    cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)TS, (int)cols, &one, wi, CUDA_R_16BF,
                                 (int)cols, xb, CUDA_R_16BF, (int)cols, &zero, y, CUDA_R_32F, (int)rows,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
                    cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)TS, (int)cols, &one, wi, CUDA_R_16BF,
                                 (int)cols, lo, CUDA_R_16BF, (int)cols, &one, y, CUDA_R_32F, (int)rows,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
                }
            }, a, b) / n;
        }
        cudaError_t e = cudaDeviceSynchronize();
        if (e == cudaSuccess) e = cudaGetLastError();
        if (e != cudaSuccess) st = cu_fail(err, dev, "timing the GEMV", e);
    }
    if (h) cublasDestroy(h);
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    cudaFree(w), cudaFree(x), cudaFree(xb), cudaFree(y), cudaFree(work);
    return st;
}

extern "C" plm_status plm_cuda_bench_mixers(int dev, double ms[PLM_CUDA_MIXER_TIMES], plm_error *err) {
    plm_status st = check_device(dev, err);
    if (st) return st;
    const int H = 16, D = 128, TT = 32768, C = 6144, NS = 512;
    const int lens15[15] = {8200, 6000, 4000, 3500, 3000, 2500, 2000, 1500, 1000, 500, 300, 200, 50, 10, 8};
    const size_t qk = (size_t)TT * H * D, mixed_n = (size_t)TT * (3 * H * D);
    float *mixed = NULL, *q = NULL, *k = NULL, *v = NULL, *g = NULL, *beta = NULL, *o = NULL, *S = NULL, *negA = NULL,
          *dtb = NULL, *xc = NULL, *yc = NULL, *wc = NULL, *tails = NULL;
    float **Sp = NULL, **Tp = NULL, *work = NULL;
    void *qkvb = NULL;
    int32_t *cu = NULL, *so = NULL, *tab = NULL;
    cudaEvent_t a = NULL, b = NULL;
    void **bufs[] = {(void **)&mixed, (void **)&q, (void **)&k, (void **)&v, (void **)&g, (void **)&beta, (void **)&o,
                     (void **)&S, (void **)&negA, (void **)&dtb, (void **)&xc, (void **)&yc, (void **)&wc,
                     (void **)&tails, (void **)&Sp, (void **)&Tp, (void **)&cu, (void **)&so, (void **)&tab,
                     (void **)&work, &qkvb};
    const size_t sizes[] = {mixed_n * 4, qk * 4, qk * 4, qk * 4, (size_t)TT * H * 4, (size_t)TT * H * 4, qk * 4,
                            (size_t)NS * H * D * D * 4, (size_t)H * 4, (size_t)H * 4, (size_t)TT * C * 4,
                            (size_t)TT * C * 4, (size_t)C * 4 * 4, (size_t)15 * 3 * C * 4, (size_t)NS * 8,
                            (size_t)15 * 8, (size_t)(NS + 1) * 4, (size_t)TT * 4, (size_t)2 * (TT / 64 + NS) * 4,
                            plm_gdn_work_floats(TT, H, D, D) * 4, qk * 3 * 2};
    const int nbufs = (int)(sizeof sizes / sizeof sizes[0]);
    for (int i = 0; i < nbufs && !st; i++) st = dev_malloc(dev, bufs[i], sizes[i], "benchmark buffers", err);
    if (!st && (cudaEventCreate(&a) || cudaEventCreate(&b)))
        st = plm_fail(err, PLM_ERR_INTERNAL, "cuda:%d: cannot create events", dev);
    if (!st) {
        k_fill_uniform<<<1024, 256>>>(mixed, mixed_n, -1.0f, 1.0f, 1);
        k_fill_uniform<<<256, 256>>>(beta, (size_t)TT * H, 0.0f, 1.0f, 2);  /* -> sigmoid: 0.5 .. 0.73 */
        k_fill_uniform<<<256, 256>>>(g, (size_t)TT * H, -5.0f, -2.0f, 3);   /* -> log decay about -0.03 */
        k_fill_uniform<<<1, 32>>>(negA, H, -1.0f, -1.0f, 4);
        k_fill_uniform<<<1, 32>>>(dtb, H, 0.0f, 0.0f, 5);
        k_fill_uniform<<<1024, 256>>>(xc, (size_t)TT * C, -1.0f, 1.0f, 6);
        k_fill_uniform<<<64, 256>>>(wc, (size_t)C * 4, -0.5f, 0.5f, 7);
        plm_gdn_prep_bf_cuda(q, k, v, qkvb, beta, g, mixed, beta, g, negA, dtb, TT, H, H, D, D, NULL);
        float *hS[NS], *hT[15];
        for (int i = 0; i < NS; i++) hS[i] = S + (size_t)i * H * D * D;
        for (int i = 0; i < 15; i++) hT[i] = tails + (size_t)i * 3 * C;
        cudaMemcpy(Sp, hS, sizeof hS, cudaMemcpyHostToDevice);
        cudaMemcpy(Tp, hT, sizeof hT, cudaMemcpyHostToDevice);
        int32_t hcu[NS + 1], htab[2 * (TT / 64 + NS)];
        /* delta rule: 15 sequences, one, 512 x 64 (states zeroed once: the timing does not depend on them);
         * tensor cores in BF16 (as FLA computes), precise, and the simple kernels */
        for (int c = 0; c < 3; c++) {
            const int n = c == 0 ? 15 : c == 1 ? 1 : NS;
            hcu[0] = 0;
            for (int i = 0; i < n; i++) hcu[i + 1] = hcu[i] + (c == 0 ? lens15[i] : c == 1 ? TT : 64);
            int nl = 0, nsh = 0;
            const int nc = plm_gdn_chunks(htab, hcu, n, &nl, &nsh);
            cudaMemcpy(cu, hcu, (n + 1) * 4, cudaMemcpyHostToDevice);
            cudaMemcpy(tab, htab, (size_t)2 * nc * 4, cudaMemcpyHostToDevice);
            cudaMemset(S, 0, sizes[7]);
            /* single pass from BF16 copies of q, k, v (FLA's inputs are BF16 too); precise from FP32 */
            auto tc = [&](const void *qb, int flags) {
                return time_median(
                    [&] { plm_gdn_tc_cuda(o, Sp, q, k, v, qb, g, beta, cu, n, TT, tab, nc, nl, nsh, work, H, H, D, D, flags, NULL); },
                    a, b);
            };
            ms[c] = tc(qkvb, 0);
            ms[7 + c] = tc(NULL, PLM_GDN_PRECISE);
            ms[13 + c] = tc(qkvb, PLM_GDN_FUSED);
            if (c >= 1) ms[15 + c] = tc(qkvb, PLM_GDN_WY | (c == 1 ? PLM_GDN_VT32 : 0));
            if (c == 0) ms[19] = tc(qkvb, PLM_GDN_VT16);
            if (c == 1) ms[18] = tc(qkvb, PLM_GDN_PREP_BEFORE);
            ms[10 + c] = time_median([&] { plm_gdn_cuda(o, Sp, q, k, v, g, beta, cu, n, H, H, D, D, NULL); }, a, b);
        }
        /* decode steps: N sequences of one token */
        const int dn[3] = {1, 16, 256};
        for (int c = 0; c < 3; c++) {
            for (int i = 0; i <= dn[c]; i++) hcu[i] = i;
            cudaMemcpy(cu, hcu, (dn[c] + 1) * 4, cudaMemcpyHostToDevice);
            ms[3 + c] = time_median([&] { plm_gdn_cuda(o, Sp, q, k, v, g, beta, cu, dn[c], H, H, D, D, NULL); }, a, b);
        }
        /* conv1d over the 15 sequences */
        int32_t *hso2 = (int32_t *)malloc((size_t)TT * 4);
        hcu[0] = 0;
        for (int i = 0; i < 15; i++) {
            hcu[i + 1] = hcu[i] + lens15[i];
            for (int t = hcu[i]; t < hcu[i + 1]; t++) hso2[t] = i;
        }
        cudaMemcpy(cu, hcu, 16 * 4, cudaMemcpyHostToDevice);
        if (hso2) cudaMemcpy(so, hso2, (size_t)TT * 4, cudaMemcpyHostToDevice);
        free(hso2);
        ms[6] = time_median([&] { plm_conv_cuda(yc, Tp, xc, wc, cu, so, 15, TT, C, 4, NULL); }, a, b);
        cudaError_t e = cudaDeviceSynchronize();
        if (e == cudaSuccess) e = cudaGetLastError();
        if (e != cudaSuccess) st = cu_fail(err, dev, "timing the token mixers", e);
    }
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    for (int i = 0; i < nbufs; i++) cudaFree(*bufs[i]);
    return st ? st : bench_gemv(dev, ms + PLM_CUDA_MIXER_TIMES - PLM_CUDA_GEMV_TIMES, err);
}
