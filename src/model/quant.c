/* int8 weights: the quantized copies an int8 context computes with (built once per model, at the
 * first such context), and packlm quantize's writer (the same copies saved as safetensors, I8
 * values + F16 scales, loadable as a checkpoint directory).
 *
 * What is quantized (the matrices every token streams through): the attention projections
 * (q/k/v/o_proj), the MLP and expert matrices (gate/up/down, shared expert gate/up/down), lm_head
 * unless kept, and the linear-attention projections (in_proj_qkv, in_proj_z, out_proj) when asked
 * (int8_linear: by default they stay as stored, they carry most of the error). Those are quantized
 * when the first context that wants them starts; contexts that keep them share the other int8
 * matrices through a second layer table. What stays as stored: norms, conv1d weights,
 * A_log, dt_bias (f32 copies already), in_proj_a / in_proj_b (the decay and beta gates: [n_v, H],
 * a fraction of a percent of the bytes, and they feed exponentials), the router and
 * shared_expert_gate (they pick experts; an error there changes a choice, not a value), and the
 * embedding table (a lookup of one row per token: it costs no bandwidth worth saving). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <omp.h>

#include "io/atomic.h"
#include "model/model.h"
#include "util/error.h"

static int keep_buf(plm_model *m, void *p) {
    if (m->n_q8_bufs == m->cap_q8_bufs) {
        int cap = m->cap_q8_bufs ? 2 * m->cap_q8_bufs : 64;
        void **n = realloc(m->q8_bufs, (size_t)cap * sizeof *n);
        if (!n) return -1;
        m->q8_bufs = n;
        m->cap_q8_bufs = cap;
    }
    m->q8_bufs[m->n_q8_bufs++] = p;
    return 0;
}

/* The source pages of rows r0 .. r1-1 of a quantized matrix are not read again by an int8 context:
   hand them back (a read-only file mapping: they are read again from the file should anything touch
   them). Whole pages inside the rows only. */
static void drop_pages(const plm_mat *W, int64_t r0, int64_t r1) {
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE), rb = (size_t)W->cols * plm_dtype_size(W->dt);
    const uintptr_t a = (uintptr_t)W->data + (size_t)r0 * rb, e = (uintptr_t)W->data + (size_t)r1 * rb;
    const uintptr_t a0 = (a + pg - 1) / pg * pg, e0 = e / pg * pg;
    if (e0 > a0) madvise((void *)a0, e0 - a0, MADV_DONTNEED);
}

/* rows quantized between page hand-backs: at most ~8 MiB of the source resident at once */
#define Q8_CHUNK_BYTES (8u << 20)

/* The int8 copies of one build (every layer's matrices, the linear-attention projections, the head)
 * live in one arena of 2 MiB pages (MADV_HUGEPAGE): decoding streams them once a token, and with 4 KiB
 * pages the hardware prefetcher stops at every page edge and the TLB misses every 4 KiB. One
 * allocation: at most one partial 2 MiB page of slack a build. */
#define Q8_HUGE ((size_t)2 << 20)
typedef struct {
    char *base;
    size_t used, cap;
} q8_arena;

static size_t q8_part(size_t n) { return (n + 63) & ~(size_t)63; }

/* the bytes of W's int8 values and of its block scales (one slack element each) */
static void q8_sizes(const plm_mat *W, size_t *qb, size_t *db) {
    *qb = (size_t)(W->rows * PLM_Q8_STRIDE(W->cols)) + 1;
    *db = (size_t)(W->rows * PLM_Q8_NB(W->cols)) * sizeof(uint16_t) + 2;
}

/* the arena bytes q8 takes for W (0: nothing to quantize) */
static size_t q8_need(const plm_mat *W) {
    if (W->dt == PLM_DT_Q8 || !W->data) return 0;
    size_t qb, db;
    q8_sizes(W, &qb, &db);
    return q8_part(qb) + q8_part(db);
}

/* an arena of n bytes, kept with the model (freed with it); none (base NULL) when n is 0 or memory is
   short: q8 then allocates each matrix itself */
static q8_arena arena_new(plm_model *m, size_t n) {
    q8_arena a = {NULL, 0, 0};
    if (!n) return a;
    const size_t cap = (n + Q8_HUGE - 1) / Q8_HUGE * Q8_HUGE;
    char *p = aligned_alloc(Q8_HUGE, cap);
    if (!p) return a;
    if (keep_buf(m, p)) {
        free(p);
        return a;
    }
    madvise(p, cap, MADV_HUGEPAGE); /* a hint: without it (or transparent huge pages off) 4 KiB pages */
    a.base = p, a.cap = cap;
    return a;
}

static void *arena_take(q8_arena *a, size_t n) {
    if (!a || !a->base || a->used + q8_part(n) > a->cap) return NULL;
    void *p = a->base + a->used;
    a->used += q8_part(n);
    return p;
}

static plm_status q8(plm_model *m, plm_mat *out, const plm_mat *W, q8_arena *ar, int n_threads, int drop,
                     plm_error *err) {
    *out = *W;
    if (W->dt == PLM_DT_Q8 || !W->data) return PLM_OK;
    const int64_t R = W->rows, C = W->cols;
    size_t qb, db;
    q8_sizes(W, &qb, &db);
    int8_t *q = arena_take(ar, qb);
    uint16_t *d = q ? arena_take(ar, db) : NULL;
    int bad = 0;
    if (!d) { /* no arena, or no room left in it: this matrix on its own, freed with the model once kept (a
                 q taken from the arena stays there unused) */
        q = malloc(qb);
        d = malloc(db);
        bad = !q || !d ? 2 : keep_buf(m, q) ? 2 : keep_buf(m, d) ? 1 : 0;
    }
    if (bad) {
        if (bad == 2) free(q);
        free(d);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory quantizing a [%lld, %lld] matrix to int8",
                        (long long)R, (long long)C);
    }
    const size_t rb = (size_t)(C ? C : 1) * plm_dtype_size(W->dt);
    const int64_t chunk = Q8_CHUNK_BYTES / rb > 0 ? (int64_t)(Q8_CHUNK_BYTES / rb) : 1;
    for (int64_t r0 = 0; r0 < R; r0 += chunk) {
        const int64_t r1 = r0 + chunk < R ? r0 + chunk : R;
        if (plm_q8_quantize_rows(q, d, W, r0, r1, n_threads))
            return plm_fail(err, PLM_ERR_NOMEM, "out of memory quantizing a [%lld, %lld] matrix to int8",
                            (long long)R, (long long)C);
        if (drop) drop_pages(W, r0, r1);
    }
    *out = (plm_mat){q, PLM_DT_Q8, R, C, d};
    m->q8_bytes += (size_t)(R * PLM_Q8_STRIDE(C)) + (size_t)(R * PLM_Q8_NB(C)) * sizeof(uint16_t);
    return PLM_OK;
}

/* every large matrix but the linear-attention projections (build_linear) */
static plm_status build_layers(plm_model *m, int n_threads, plm_error *err) {
    const plm_config *c = &m->cfg;
    plm_layer *ls = calloc((size_t)c->n_layers, sizeof *ls);
    if (!ls) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    size_t need = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const plm_layer *S = &m->layers[i];
        const plm_mat *src[] = {&S->q, &S->k, &S->v, &S->o, &S->gate, &S->up, &S->down, &S->sh_gate, &S->sh_up,
                                &S->sh_down};
        for (size_t j = 0; j < sizeof src / sizeof src[0]; j++) need += q8_need(src[j]);
        for (int64_t e = 0; S->e_gate && e < 3 * (int64_t)c->n_experts; e++) need += q8_need(&S->e_gate[e]);
    }
    q8_arena ar = arena_new(m, need);
    plm_status st = PLM_OK;
    for (int i = 0; !st && i < c->n_layers; i++) {
        plm_layer *L = &ls[i];
        const plm_layer *S = &m->layers[i];
        *L = *S;
        L->e_gate = L->e_up = L->e_down = NULL;
        plm_mat *dst[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down, &L->sh_gate, &L->sh_up, &L->sh_down};
        const plm_mat *src[] = {&S->q, &S->k, &S->v, &S->o, &S->gate, &S->up, &S->down, &S->sh_gate, &S->sh_up,
                                &S->sh_down};
        for (size_t j = 0; !st && j < sizeof dst / sizeof dst[0]; j++)
            st = q8(m, dst[j], src[j], &ar, n_threads, 1, err);
        if (!st && S->e_gate) {
            const int64_t E = c->n_experts;
            L->e_gate = calloc((size_t)E * 3, sizeof(plm_mat));
            if (!L->e_gate || keep_buf(m, L->e_gate)) {
                free(L->e_gate);
                L->e_gate = NULL;
                st = plm_fail(err, PLM_ERR_NOMEM, "out of memory");
                break;
            }
            L->e_up = L->e_gate + E;
            L->e_down = L->e_gate + 2 * E;
            for (int64_t e = 0; !st && e < 3 * E; e++)
                st = q8(m, &L->e_gate[e], &S->e_gate[e], &ar, n_threads, 1, err);
        }
    }
    if (st) {
        free(ls);
        return st;
    }
    m->q8_layers = ls;
    return PLM_OK;
}

/* the linear-attention projections of q8_layers, on the first context that does not keep them */
static plm_status build_linear(plm_model *m, int n_threads, plm_error *err) {
    size_t need = 0;
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const plm_layer *S = &m->layers[i];
        if (S->type == PLM_LAYER_LINEAR) need += q8_need(&S->qkv) + q8_need(&S->z) + q8_need(&S->out);
    }
    q8_arena ar = arena_new(m, need);
    plm_status st = PLM_OK;
    for (int i = 0; !st && i < m->cfg.n_layers; i++) {
        plm_layer *L = &m->q8_layers[i];
        const plm_layer *S = &m->layers[i];
        if (L->type != PLM_LAYER_LINEAR) continue;
        if (!(st = q8(m, &L->qkv, &S->qkv, &ar, n_threads, 1, err)) &&
            !(st = q8(m, &L->z, &S->z, &ar, n_threads, 1, err)))
            st = q8(m, &L->out, &S->out, &ar, n_threads, 1, err);
    }
    if (!st) m->q8_linear = 1;
    return st;
}

/* q8_layers with the linear-attention projections as stored (the same int8 matrices otherwise) */
static plm_status build_keep_linear(plm_model *m, plm_error *err) {
    plm_layer *ls = malloc((size_t)m->cfg.n_layers * sizeof *ls);
    if (!ls) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->cfg.n_layers; i++) {
        ls[i] = m->q8_layers[i];
        ls[i].qkv = m->layers[i].qkv, ls[i].z = m->layers[i].z, ls[i].out = m->layers[i].out;
    }
    m->q8_layers_kl = ls;
    return PLM_OK;
}

plm_status plm_model_int8(plm_model *m, int keep_head, int keep_linear, int n_threads, const plm_layer **layers,
                          const plm_mat **head, plm_error *err) {
    plm_status st = PLM_OK;
    pthread_mutex_lock(&m->q8_lock);
    if (!m->q8_layers) st = build_layers(m, n_threads, err);
    if (!st && !keep_linear && !m->q8_linear) st = build_linear(m, n_threads, err);
    if (!st && keep_linear && !m->q8_layers_kl) st = build_keep_linear(m, err);
    if (!st && !keep_head && m->q8_head.dt != PLM_DT_Q8) {
        /* a tied head is the embedding table, still used for lookups: its pages are handed back
           too, and only the rows looked up come back (one 4 KiB page a token at most) */
        q8_arena ar = arena_new(m, q8_need(&m->lm_head));
        st = q8(m, &m->q8_head, &m->lm_head, &ar, n_threads, 1, err);
        if (st) m->q8_head = (plm_mat){0};
    }
    pthread_mutex_unlock(&m->q8_lock);
    if (st) return st;
    *layers = keep_linear ? m->q8_layers_kl : m->q8_layers;
    *head = keep_head ? &m->lm_head : &m->q8_head;
    return PLM_OK;
}

void plm_model_int8_free(plm_model *m) {
    for (int i = 0; i < m->n_q8_bufs; i++) free(m->q8_bufs[i]);
    free(m->q8_bufs);
    free(m->q8_layers);
    free(m->q8_layers_kl);
    m->q8_bufs = NULL;
    m->q8_layers = m->q8_layers_kl = NULL;
    m->q8_linear = 0;
    m->n_q8_bufs = m->cap_q8_bufs = 0;
    m->q8_bytes = 0;
}

/* ---------------------------------------------------------------- packlm quantize */
typedef struct {
    char name[600];
    const plm_mat *q; /* the int8 copy */
} qname;

static int add_q8(plm_st_writer *w, const char *name, const plm_mat *q, plm_error *err) {
    const int64_t s1[2] = {q->rows, PLM_Q8_STRIDE(q->cols)}, s2[2] = {q->rows, PLM_Q8_NB(q->cols)};
    char sn[640];
    snprintf(sn, sizeof sn, "%s_scale", name);
    plm_status st = plm_st_writer_add(w, name, PLM_DT_I8, 2, s1, q->data, err);
    return st ? st : plm_st_writer_add(w, sn, PLM_DT_F16, 2, s2, q->scale, err);
}

static int is_weight_file(const char *n) {
    size_t l = strlen(n);
    return (l > 12 && !strcmp(n + l - 12, ".safetensors")) || !strcmp(n, "model.safetensors.index.json");
}

static plm_status copy_file(const char *from, const char *to, plm_error *err) {
    FILE *f = fopen(from, "rb");
    if (!f) return plm_fail(err, PLM_ERR_IO, "cannot read %s: %s", from, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t k; buf && (k = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += k;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            } else
                buf = nb;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return plm_fail(err, bad ? PLM_ERR_IO : PLM_ERR_NOMEM, "cannot read %s", from);
    }
    plm_status st = plm_write_file_atomic(to, buf, n, err);
    free(buf);
    return st;
}

plm_status plm_model_save_int8(plm_model *m, const char *out_dir, int flags, int n_threads, plm_error *err) {
    const plm_layer *ls;
    const plm_mat *head;
    if (n_threads <= 0) n_threads = omp_get_num_procs();
    plm_status st = plm_model_int8(m, !!(flags & PLM_INT8_KEEP_HEAD), !(flags & PLM_INT8_LINEAR), n_threads, &ls,
                                   &head, err);
    if (st) return st;
    if (mkdir(out_dir, 0777) && errno != EEXIST)
        return plm_fail(err, PLM_ERR_IO, "cannot create %s: %s", out_dir, strerror(errno));
    if (!strcmp(out_dir, m->dir)) return plm_fail(err, PLM_ERR_INPUT, "--out must differ from --model");
    const plm_config *c = &m->cfg;
    /* the int8 matrices by checkpoint name (experts always per expert) */
    int cap = 16 * c->n_layers + 3 * (c->is_moe ? c->n_experts : 0) * c->n_layers + 4, nq = 0;
    qname *qn = calloc((size_t)cap, sizeof *qn);
    if (!qn) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
#define QN(MAT, ...)                                                                                          \
    do {                                                                                                     \
        if ((MAT)->dt == PLM_DT_Q8) {                                                                        \
            snprintf(qn[nq].name, sizeof qn[nq].name, __VA_ARGS__);                                          \
            qn[nq++].q = (MAT);                                                                              \
        }                                                                                                    \
    } while (0)
    const char *p = m->prefix;
    for (int i = 0; i < c->n_layers; i++) {
        const plm_layer *L = &ls[i];
        if (L->type == PLM_LAYER_LINEAR) {
            QN(&L->qkv, "%slayers.%d.linear_attn.in_proj_qkv.weight", p, i);
            QN(&L->z, "%slayers.%d.linear_attn.in_proj_z.weight", p, i);
            QN(&L->out, "%slayers.%d.linear_attn.out_proj.weight", p, i);
        } else {
            QN(&L->q, "%slayers.%d.self_attn.q_proj.weight", p, i);
            QN(&L->k, "%slayers.%d.self_attn.k_proj.weight", p, i);
            QN(&L->v, "%slayers.%d.self_attn.v_proj.weight", p, i);
            QN(&L->o, "%slayers.%d.self_attn.o_proj.weight", p, i);
        }
        if (!c->is_moe) {
            QN(&L->gate, "%slayers.%d.mlp.gate_proj.weight", p, i);
            QN(&L->up, "%slayers.%d.mlp.up_proj.weight", p, i);
            QN(&L->down, "%slayers.%d.mlp.down_proj.weight", p, i);
        } else {
            for (int e = 0; e < c->n_experts; e++) {
                QN(&L->e_gate[e], "%slayers.%d.mlp.experts.%d.gate_proj.weight", p, i, e);
                QN(&L->e_up[e], "%slayers.%d.mlp.experts.%d.up_proj.weight", p, i, e);
                QN(&L->e_down[e], "%slayers.%d.mlp.experts.%d.down_proj.weight", p, i, e);
            }
            if (c->shared_intermediate_size > 0) {
                QN(&L->sh_gate, "%slayers.%d.mlp.shared_expert.gate_proj.weight", p, i);
                QN(&L->sh_up, "%slayers.%d.mlp.shared_expert.up_proj.weight", p, i);
                QN(&L->sh_down, "%slayers.%d.mlp.shared_expert.down_proj.weight", p, i);
            }
        }
    }
    if (head->dt == PLM_DT_Q8) {
        if (c->tie_embeddings) QN(head, "%sembed_tokens.weight", p);
        else QN(head, "lm_head.weight");
    }
#undef QN
    plm_st_writer *w = plm_st_writer_new();
    if (!w) {
        free(qn);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; !st && i < nq; i++) st = add_q8(w, qn[i].name, qn[i].q, err);
    /* every other tensor as stored, except those replaced (a matrix, its old scales, fused experts) */
    char nm[700];
    for (int i = 0; !st && i < plm_st_count(m->st); i++) {
        const plm_st_tensor *t = plm_st_at(m->st, i);
        int skip = (c->is_moe && strstr(t->name, "mlp.experts.") != NULL);
        for (int j = 0; !skip && j < nq; j++) {
            snprintf(nm, sizeof nm, "%s_scale", qn[j].name);
            skip = !strcmp(t->name, qn[j].name) || !strcmp(t->name, nm);
        }
        if (!skip && t->dtype == PLM_DT_OTHER)
            st = plm_fail(err, PLM_ERR_UNSUPPORTED, "tensor '%s' has dtype %s: not copied", t->name, t->dtype_name);
        if (!skip && !st) st = plm_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err);
    }
    free(qn);
    snprintf(nm, sizeof nm, "%s/model.safetensors", out_dir);
    if (!st) st = plm_st_writer_save(w, nm, err);
    plm_st_writer_free(w);
    /* config, tokenizer and the rest, as they are */
    DIR *d = st ? NULL : opendir(m->dir);
    if (!st && !d) st = plm_fail(err, PLM_ERR_IO, "cannot list %s: %s", m->dir, strerror(errno));
    for (struct dirent *e; d && !st && (e = readdir(d));) {
        char from[4096], to[4096];
        struct stat sb;
        snprintf(from, sizeof from, "%s/%s", m->dir, e->d_name);
        if (e->d_name[0] == '.' || is_weight_file(e->d_name) || stat(from, &sb) || !S_ISREG(sb.st_mode)) continue;
        snprintf(to, sizeof to, "%s/%s", out_dir, e->d_name);
        st = copy_file(from, to, err);
    }
    if (d) closedir(d);
    return st;
}
