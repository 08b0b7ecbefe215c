/* Every CUDA kernel against its CPU reference on fresh random inputs: segment lengths 1, 63, 64, 65
 * and long, hundreds of segments in one step, states carried in, outputs poisoned with NaN before
 * the run, guard regions after every device output that must come back untouched. Tolerances are
 * relative to the reference's largest magnitude (tu_close): 1e-5 for element-wise and short sums,
 * 1e-4 for the delta rule's long sums. Skipped with a message where no GPU is usable (a build
 * without CUDA, no device), unless PLM_REQUIRE_CUDA=1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_ops.h"
#include "kernels/kernels.h"
#include "model/cuda.h"
#include "testutil.h"

#define GUARD 32
#define TOL 1e-5
#define TOL_GDN 1e-4
#define TOL_GDN_BF16 1e-2
/* an output rounded once to BF16 (single pass): half a step of rounding, at most 2^-8 of the value, plus
   the FP32 arithmetic's order against the reference (TOL): within one step, 2^-7 of max|ref| */
#define TOL_BF16_OUT (1.0 / 128)
/* attention on tensor cores with split operands: products of hi + lo parts, the lo x lo term dropped
 * (about 2^-16 relative per product), accumulated over the head dim and the keys */
#define TOL_ATTN_TC 1e-4

static tu_rng R = {0xc0da0c0da0ull};
static plm_error ERR;

static void fill(float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * tu_uniform(&R);
}

/* device copy of n floats (+ GUARD canary floats after) */
static float *dput(const float *h, size_t n) {
    void *d = NULL;
    if (plm_cuda_alloc(0, &d, (n + GUARD) * 4, "test buffer", &ERR)) return NULL;
    float *tmp = malloc((n + GUARD) * 4);
    if (h) memcpy(tmp, h, n * 4);
    else
        for (size_t i = 0; i < n; i++) tmp[i] = NAN; /* poison: every element must be written */
    for (size_t i = 0; i < GUARD; i++) tmp[n + i] = 12345.0f;
    plm_cuda_upload(0, d, tmp, (n + GUARD) * 4, &ERR);
    free(tmp);
    return d;
}

static void *dput_bytes(const void *h, size_t bytes) {
    void *d = NULL;
    if (plm_cuda_alloc(0, &d, bytes, "test buffer", &ERR)) return NULL;
    if (h) plm_cuda_upload(0, d, h, bytes, &ERR);
    return d;
}

/* copies n floats back, checks the guard, frees */
static int dget(float *h, float *d, size_t n, const char *what) {
    float *tmp = malloc((n + GUARD) * 4);
    plm_cuda_download(0, tmp, d, (n + GUARD) * 4, &ERR);
    int ok = 1;
    for (size_t i = 0; i < GUARD; i++) ok &= tmp[n + i] == 12345.0f;
    tu_check(ok, "%s: guard after the output untouched", what);
    memcpy(h, tmp, n * 4);
    free(tmp);
    plm_cuda_free(0, d);
    return ok;
}

/* device room for n BF16 values, every one poisoned with BF16 NaN (0xffff), then dput's guard */
static float *dput_bf16_nan(size_t n) {
    const size_t nb = (n + 1) / 2;
    float *tmp = malloc((nb + GUARD) * 4);
    memset(tmp, 0xff, nb * 4);
    for (size_t i = 0; i < GUARD; i++) tmp[nb + i] = 12345.0f;
    void *d = NULL;
    if (!plm_cuda_alloc(0, &d, (nb + GUARD) * 4, "test buffer", &ERR)) plm_cuda_upload(0, d, tmp, (nb + GUARD) * 4, &ERR);
    free(tmp);
    return d;
}

/* n BF16 values in dhi (dput_bf16_nan(n)) and, where dlo is not NULL, their BF16 remainders in dlo:
 * copied back with their guards checked, widened into y as hi + lo; frees both */
static void dget_bf16(float *y, float *dhi, float *dlo, size_t n, const char *what) {
    const size_t nb = (n + 1) / 2;
    float *hb = malloc(nb * 4), *lb = malloc(nb * 4);
    dget(hb, dhi, nb, what);
    if (dlo) dget(lb, dlo, nb, what);
    const uint16_t *h16 = (const uint16_t *)hb, *l16 = (const uint16_t *)lb;
    for (size_t i = 0; i < n; i++) y[i] = plm_bf16_to_f32(h16[i]) + (dlo ? plm_bf16_to_f32(l16[i]) : 0.0f);
    free(hb), free(lb);
}

static int sync_ok(const char *what) {
    plm_error e = {0};
    return tu_check(plm_cuda_sync(0, &e) == PLM_OK, "%s: kernels ran (%s)", what, e.msg);
}

/* n floats (or 2n BF16) of two device arrays the same bit for bit (their guards checked; frees both) */
static int same_bits(float *d1, float *d2, size_t n, const char *what) {
    float *a = malloc(n * 4 + 4), *b = malloc(n * 4 + 4);
    int ok = dget(a, d1, n, what) & dget(b, d2, n, what);
    ok = ok && !memcmp(a, b, n * 4);
    free(a), free(b);
    return ok;
}

static int32_t *make_cu(const int *lens, int n_seg, int64_t *T) {
    int32_t *cu = malloc((n_seg + 1) * sizeof *cu);
    cu[0] = 0;
    for (int s = 0; s < n_seg; s++) cu[s + 1] = cu[s] + lens[s];
    *T = cu[n_seg];
    return cu;
}

static int32_t *make_seg_of(const int32_t *cu, int n_seg, int64_t T) {
    int32_t *so = malloc((T ? T : 1) * sizeof *so);
    for (int s = 0; s < n_seg; s++)
        for (int32_t t = cu[s]; t < cu[s + 1]; t++) so[t] = s;
    return so;
}

/* per-segment device buffers of n floats each (copied from h[s]), and the device array of them */
static float **dput_each(float **h, int n_seg, size_t n, float ***dev_arr) {
    float **d = malloc(n_seg * sizeof *d);
    for (int s = 0; s < n_seg; s++) d[s] = dput(h[s], n);
    *dev_arr = dput_bytes(d, n_seg * sizeof(float *));
    return d;
}

/* bf 1: x as BF16 (plm_conv_bf16_cuda, the single-pass projection's output), against the reference on the
 * same values widened; bf 2: y as BF16 too (plm_conv_bb_cuda), within its rounding */
static void test_conv_form(const int *lens, int n_seg, int C, int K, const char *label, int bf) {
    int64_t T;
    int32_t *cu = make_cu(lens, n_seg, &T), *so = make_seg_of(cu, n_seg, T);
    const size_t P = (size_t)(K - 1) * C;
    float *x = malloc(T * C * 4), *w = malloc((size_t)C * K * 4), *y = malloc(T * C * 4), *yr = malloc(T * C * 4);
    uint16_t *x16 = malloc(T * C * 2 + 2);
    float **tl = malloc(n_seg * sizeof *tl), **tr = malloc(n_seg * sizeof *tr);
    fill(x, T * C, -2, 2);
    for (int64_t i = 0; bf && i < T * C; i++) x16[i] = plm_f32_to_bf16(x[i]), x[i] = plm_bf16_to_f32(x16[i]);
    fill(w, (size_t)C * K, -1, 1);
    for (int s = 0; s < n_seg; s++) {
        tl[s] = malloc(P * 4 + 4);
        tr[s] = malloc(P * 4 + 4);
        fill(tl[s], P, -2, 2); /* a state carried in */
        memcpy(tr[s], tl[s], P * 4);
    }
    plm_conv_ref(yr, tr, x, w, cu, n_seg, C, K, 1);
    float *dx = bf ? NULL : dput(x, T * C), *dw = dput(w, (size_t)C * K), **dta;
    float *dy = dput(NULL, bf == 2 ? (T * C + 1) / 2 : T * C); /* BF16 y: NaN bits until written, a guard after */
    void *dx16 = bf ? dput_bytes(x16, T * C * 2 + 2) : NULL;
    float **dt = dput_each(tl, n_seg, P, &dta);
    int32_t *dcu = dput_bytes(cu, (n_seg + 1) * 4), *dso = dput_bytes(so, T * 4);
    if (bf == 2) plm_conv_bb_cuda(dy, dta, dx16, dw, dcu, dso, n_seg, T, C, K, NULL);
    else if (bf) plm_conv_bf16_cuda(dy, dta, dx16, dw, dcu, dso, n_seg, T, C, K, NULL);
    else plm_conv_cuda(dy, dta, dx, dw, dcu, dso, n_seg, T, C, K, NULL);
    char what[160];
    snprintf(what, sizeof what, "conv%s %s (T=%lld, C=%d, K=%d)",
             bf == 2 ? " BF16 to BF16" : bf ? " of BF16 input" : "", label, (long long)T, C, K);
    if (sync_ok(what)) {
        dget(y, dy, bf == 2 ? (T * C + 1) / 2 : T * C, what);
        if (bf == 2) { /* widen in place, from the end */
            const uint16_t *y16 = (const uint16_t *)y;
            for (int64_t i = T * C - 1; i >= 0; i--) y[i] = plm_bf16_to_f32(y16[i]);
        }
        tu_close(y, yr, T * C, bf == 2 ? TOL_BF16_OUT : TOL, what);
        int tok = 1;
        for (int s = 0; s < n_seg; s++) {
            float *g = malloc(P * 4 + 4);
            tok &= dget(g, dt[s], P, what);
            tok &= tu_max_abs_diff(g, tr[s], P) == 0.0;
            free(g);
        }
        tu_check(tok, "%s: every segment's new tail exact", what);
    }
    plm_cuda_free(0, dx), plm_cuda_free(0, dx16), plm_cuda_free(0, dw), plm_cuda_free(0, dta), plm_cuda_free(0, dcu);
    plm_cuda_free(0, dso);
    for (int s = 0; s < n_seg; s++) free(tl[s]), free(tr[s]);
    free(dt), free(tl), free(tr), free(x), free(x16), free(w), free(y), free(yr), free(cu), free(so);
}

static void test_conv(const int *lens, int n_seg, int C, int K, const char *label) {
    test_conv_form(lens, n_seg, C, K, label, 0);
    test_conv_form(lens, n_seg, C, K, label, 1);
    test_conv_form(lens, n_seg, C, K, label, 2);
}

/* plm_gdn_chunks' table: long segments in chunks of 64, short ones (1 .. 15 tokens) a chunk each where
 * there are long ones and at most PLM_GDN_FOLD_MAX short ones, empty ones never; starts ascending */
static void test_gdn_chunks(void) {
    int32_t tab[2 * 64], cu[40];
    const int lens[] = {3, 0, 70, 1, 15, 16};
    cu[0] = 0;
    for (int i = 0; i < 6; i++) cu[i + 1] = cu[i] + lens[i];
    int nl = -1, ns = -1;
    int n = plm_gdn_chunks(tab, cu, 6, &nl, &ns);
    const int32_t want[] = {0, 0, 2, 3, 2, 67, 3, 73, 4, 74, 5, 89};
    int ok = n == 6 && nl == 2 && ns == 3;
    for (int i = 0; ok && i < 12; i++) ok = tab[i] == want[i];
    tu_check(ok, "plm_gdn_chunks: 3 short segments folded beside 2 long ones (n %d, long %d, short %d)", n, nl, ns);
    /* PLM_GDN_FOLD_MAX + 1 short ones: none folded */
    cu[0] = 0;
    for (int i = 0; i < PLM_GDN_FOLD_MAX + 2; i++) cu[i + 1] = cu[i] + (i == 3 ? 64 : 2);
    n = plm_gdn_chunks(tab, cu, PLM_GDN_FOLD_MAX + 2, &nl, &ns);
    tu_check(n == 1 && nl == 1 && ns == 0 && tab[0] == 3 && tab[1] == 6,
             "plm_gdn_chunks: %d short segments are not folded (n %d, long %d, short %d)", PLM_GDN_FOLD_MAX + 1, n, nl, ns);
    /* exactly PLM_GDN_FOLD_MAX: folded */
    n = plm_gdn_chunks(tab, cu, PLM_GDN_FOLD_MAX + 1, &nl, &ns);
    ok = n == PLM_GDN_FOLD_MAX + 1 && nl == 1 && ns == PLM_GDN_FOLD_MAX;
    for (int i = 0; ok && i < n; i++) ok = tab[2 * i] == i && tab[2 * i + 1] == cu[i]; /* a chunk a segment, in order */
    tu_check(ok, "plm_gdn_chunks: %d short segments are folded, a chunk each in segment order (n %d, long %d, short %d)",
             PLM_GDN_FOLD_MAX, n, nl, ns);
    /* short ones only (decode): nothing listed */
    n = plm_gdn_chunks(tab, cu, 3, &nl, &ns);
    tu_check(n == 0 && nl == 0 && ns == 0, "plm_gdn_chunks: short segments alone are not listed (n %d)", n);
}

/* The WY prep beside the copy warps' scan (its items walked by a grid of one block an SM, or of 3 blocks,
 * each chunk marked done and the scan waiting for the marks; prep_item8) gives the bytes of the prep run
 * before the same scan (PLM_GDN_PREP_BEFORE; prep_item8<true>, its warps split by role): the same products in
 * the same order, only the hand-off and the warps' roles differ. A
 * stronger check than the bound against the FP32 reference, which a chunk read before its prep wrote it
 * could pass where stale values are close. */
static void test_gdn_prep_forms(const int *lens, int n_seg, int nk, int nv, int dk, int dv, const char *label) {
    int64_t T;
    int32_t *cu = make_cu(lens, n_seg, &T);
    const size_t qn = T * nk * dk, vn = T * nv * dv, sn = (size_t)nv * dk * dv;
    float *q = malloc(qn * 4), *k = malloc(qn * 4), *v = malloc(vn * 4), *g = malloc(T * nv * 4), *b = malloc(T * nv * 4);
    fill(v, vn, -1, 1);
    fill(g, T * nv, -0.3f, 0.0f);
    fill(b, T * nv, 0.0f, 1.0f);
    fill(q, qn, -1, 1);
    fill(k, qn, -1, 1);
    plm_l2norm_rows(q, T * nk, dk, 1.0f / sqrtf((float)dk));
    plm_l2norm_rows(k, T * nk, dk, 1.0f);
    float **S0 = malloc(n_seg * sizeof *S0);
    for (int s = 0; s < n_seg; s++) {
        S0[s] = malloc(sn * 4);
        fill(S0[s], sn, -0.5f, 0.5f);
    }
    int32_t *tab = malloc((size_t)2 * (T / PLM_GDN_CHUNK + n_seg) * 4 + 4);
    int nl = 0, nsh = 0;
    const int nc = plm_gdn_chunks(tab, cu, n_seg, &nl, &nsh);
    float *dq = dput(q, qn), *dk_ = dput(k, qn), *dv_ = dput(v, vn), *dg = dput(g, T * nv), *db = dput(b, T * nv);
    int32_t *dcu = dput_bytes(cu, (n_seg + 1) * 4), *dtab = dput_bytes(tab, (size_t)2 * nc * 4 + 4);
    void *qkvb = dput_bytes(NULL, (size_t)(2 * qn + vn) * 2);
    plm_to_bf16_cuda(qkvb, NULL, dq, qn, NULL);
    plm_to_bf16_cuda((char *)qkvb + qn * 2, NULL, dk_, qn, NULL);
    plm_to_bf16_cuda((char *)qkvb + qn * 4, NULL, dv_, vn, NULL);
    const int forms[2] = {PLM_GDN_WY | PLM_GDN_VT16, PLM_GDN_WY | PLM_GDN_VT16 | PLM_GDN_PREP_FEW};
    const char *names[2] = {"a block an SM", "3 blocks"};
    for (int f = 0; f < 2; f++) {
        float *o[2], *st[2];
        int ok = 1;
        for (int w = 0; w < 2; w++) {
            float **dSa, **dS = dput_each(S0, n_seg, sn, &dSa);
            float *doo = dput(NULL, vn), *work = dput(NULL, plm_gdn_work_floats(T, nv, dk, dv));
            plm_gdn_tc_cuda(doo, dSa, dq, dk_, dv_, qkvb, dg, db, dcu, n_seg, T, dtab, nc, nl, nsh, work, nk, nv, dk, dv,
                            w ? forms[f] : PLM_GDN_WY | PLM_GDN_VT16 | PLM_GDN_PREP_BEFORE, NULL);
            ok &= sync_ok("the WY prep beside the scan and before it");
            o[w] = malloc(vn * 4);
            st[w] = malloc((size_t)n_seg * sn * 4);
            ok &= dget(o[w], doo, vn, "the WY prep beside the scan and before it");
            for (int s = 0; s < n_seg; s++)
                ok &= dget(st[w] + (size_t)s * sn, dS[s], sn, "the WY prep beside the scan and before it");
            plm_cuda_free(0, dSa), plm_cuda_free(0, work);
            free(dS);
        }
        for (size_t i = 0; ok && i < vn; i++) ok = isfinite(o[0][i]); /* two NaN poisons would compare equal */
        tu_check(ok && !memcmp(o[0], o[1], vn * 4) && !memcmp(st[0], st[1], (size_t)n_seg * sn * 4),
                 "gated delta rule, the WY prep beside the scan in %s against before it, %s (T=%lld, %d segments, dk=%d "
                 "dv=%d): the same outputs and final states, bit for bit", names[f], label, (long long)T, n_seg, dk, dv);
        free(o[0]), free(o[1]), free(st[0]), free(st[1]);
    }
    plm_cuda_free(0, qkvb), plm_cuda_free(0, dq), plm_cuda_free(0, dk_), plm_cuda_free(0, dv_), plm_cuda_free(0, dg);
    plm_cuda_free(0, db), plm_cuda_free(0, dcu), plm_cuda_free(0, dtab);
    for (int s = 0; s < n_seg; s++) free(S0[s]);
    free(S0), free(tab), free(q), free(k), free(v), free(g), free(b), free(cu);
}

/* variant 0: plm_gdn_cuda (the simple kernels); 1, 2: plm_gdn_tc_cuda precise with value tiles of 64
 * and 32; 3, 4: single pass (tiles of 64, 32); 5 .. 7: single pass from BF16 copies of q, k, v with the
 * five-product scan (tiles of 64; of 32 with two sets of blocks; of 64 with two sets); 8: the same with
 * tiles of 16; 9, 10: the WY scan (the default from BF16 copies for longer segments), tiles of 32 and 16
 * (16: eight warps in two roles, the chunk prep beside the scan: on Hopper a programmatic launch, the
 * scan waiting for each chunk's mark); 11: tiles of 16 with four warps doing both products; 12: tiles
 * of 16 with the prep before the scan (PLM_GDN_PREP_BEFORE); 13: the prep beside the scan with its
 * grid capped at 3 blocks, so that each block walks many items and the scan waits for marks not yet
 * set; 14: from BF16 copies with no flag, the form a step chooses (where every chunked segment is one
 * chunk, the prep and the scan in one kernel); 15: as 10 with the computing warps issuing the chunks'
 * copies themselves (PLM_GDN_NO_PROD; 10, 12 and 13 have four copy warps issue them where the key dimension
 * padded to 16 is a power of two, as in the 0.8B shape); 16: the WY scan at value tiles of 64 (on an sm_90
 * device with dk 64 or 128, four warpgroups' wgmma products; else 16 warps of mma.sync); 17: the same on
 * mma.sync always (PLM_GDN_MMA_SYNC). Single
 * pass: one BF16 rounding per operand, bound TOL_GDN_BF16 (the rounding of q, k, v and the chunk's
 * intermediates to 8 significant bits, accumulated over a chunk of 64) */
#define N_GDN_VARIANTS 18
static void test_gdn_variant(const int *lens, int n_seg, int nk, int nv, int dk, int dv, float g_lo, const char *label,
                             int variant) {
    int64_t T;
    int32_t *cu = make_cu(lens, n_seg, &T);
    const size_t qn = T * nk * dk, vn = T * nv * dv, sn = (size_t)nv * dk * dv;
    float *q = malloc(qn * 4), *k = malloc(qn * 4), *v = malloc(vn * 4), *g = malloc(T * nv * 4), *b = malloc(T * nv * 4);
    float *o = malloc(vn * 4), *orf = malloc(vn * 4);
    fill(v, vn, -1, 1);
    fill(g, T * nv, g_lo, 0.0f);
    fill(b, T * nv, 0.0f, 1.0f);
    fill(q, qn, -1, 1);
    fill(k, qn, -1, 1);
    plm_l2norm_rows(q, T * nk, dk, 1.0f / sqrtf((float)dk));
    plm_l2norm_rows(k, T * nk, dk, 1.0f);
    float **S = malloc(n_seg * sizeof *S), **Sr = malloc(n_seg * sizeof *Sr);
    for (int s = 0; s < n_seg; s++) {
        S[s] = malloc(sn * 4);
        Sr[s] = malloc(sn * 4);
        fill(S[s], sn, -0.5f, 0.5f);
        memcpy(Sr[s], S[s], sn * 4);
    }
    plm_gdn_ref(orf, Sr, q, k, v, g, b, cu, n_seg, nk, nv, dk, dv, 1);
    float *dq = dput(q, qn), *dk_ = dput(k, qn), *dv_ = dput(v, vn), *dg = dput(g, T * nv), *db = dput(b, T * nv);
    float *doo = dput(NULL, vn), **dSa;
    float **dS = dput_each(S, n_seg, sn, &dSa);
    int32_t *dcu = dput_bytes(cu, (n_seg + 1) * 4), *dtab = NULL;
    float *work = NULL;
    const double tol = variant >= 3 ? TOL_GDN_BF16 : TOL_GDN;
    if (variant == 0) {
        plm_gdn_cuda(doo, dSa, dq, dk_, dv_, dg, db, dcu, n_seg, nk, nv, dk, dv, NULL);
    } else {
        int32_t *tab = malloc((size_t)2 * (T / PLM_GDN_CHUNK + n_seg) * 4 + 4);
        int nl = 0, nsh = 0;
        const int nc = plm_gdn_chunks(tab, cu, n_seg, &nl, &nsh);
        const int F = PLM_GDN_FUSED;
        const int flags[N_GDN_VARIANTS] = {0, PLM_GDN_PRECISE | PLM_GDN_VT64, PLM_GDN_PRECISE | PLM_GDN_VT32, PLM_GDN_VT64,
                               PLM_GDN_VT32, F | PLM_GDN_VT64, F | PLM_GDN_VT32, F | PLM_GDN_VT64 | PLM_GDN_BF2,
                               F | PLM_GDN_VT16, PLM_GDN_WY | PLM_GDN_VT32, PLM_GDN_WY | PLM_GDN_VT16,
                               PLM_GDN_WY | PLM_GDN_VT16 | PLM_GDN_WY4, PLM_GDN_WY | PLM_GDN_VT16 | PLM_GDN_PREP_BEFORE,
                               PLM_GDN_WY | PLM_GDN_VT16 | PLM_GDN_PREP_FEW, 0,
                               PLM_GDN_WY | PLM_GDN_VT16 | PLM_GDN_NO_PROD, PLM_GDN_WY | PLM_GDN_VT64,
                               PLM_GDN_WY | PLM_GDN_VT64 | PLM_GDN_MMA_SYNC};
        dtab = dput_bytes(tab, (size_t)2 * nc * 4 + 4);
        work = dput(NULL, plm_gdn_work_floats(T, nv, dk, dv));
        void *qkvb = NULL; /* variants 5 .. 7: q, k, v from their BF16 copies */
        if (variant >= 5) {
            qkvb = dput_bytes(NULL, (size_t)(2 * qn + vn) * 2);
            plm_to_bf16_cuda(qkvb, NULL, dq, qn, NULL);
            plm_to_bf16_cuda((char *)qkvb + qn * 2, NULL, dk_, qn, NULL);
            plm_to_bf16_cuda((char *)qkvb + qn * 4, NULL, dv_, vn, NULL);
        }
        plm_gdn_tc_cuda(doo, dSa, dq, dk_, dv_, qkvb, dg, db, dcu, n_seg, T, dtab, nc, nl, nsh, work, nk, nv, dk, dv,
                        flags[variant], NULL);
        if (qkvb) plm_cuda_free(0, qkvb);
        free(tab);
    }
    char what[200];
    snprintf(what, sizeof what, "gated delta rule%s %s (T=%lld, %d segments, nk=%d nv=%d dk=%d dv=%d)",
             variant == 0   ? ""
             : variant == 1 ? " [tensor cores, precise, value tiles of 64]"
             : variant == 2 ? " [tensor cores, precise, value tiles of 32]"
             : variant == 3 ? " [tensor cores, bf16, value tiles of 64]"
             : variant == 4 ? " [tensor cores, bf16, value tiles of 32, staged]"
             : variant == 5 ? " [tensor cores, bf16 copies, value tiles of 64]"
             : variant == 6 ? " [tensor cores, bf16 copies, value tiles of 32, two sets]"
             : variant == 7 ? " [tensor cores, bf16 copies, value tiles of 64, two sets]"
             : variant == 8 ? " [tensor cores, bf16 copies, value tiles of 16, two sets]"
             : variant == 9 ? " [tensor cores, bf16 copies, WY scan, value tiles of 32]"
             : variant == 10 ? " [tensor cores, bf16 copies, WY scan, value tiles of 16, two roles, prep beside]"
             : variant == 11 ? " [tensor cores, bf16 copies, WY scan, value tiles of 16, four warps]"
             : variant == 12 ? " [tensor cores, bf16 copies, WY scan, value tiles of 16, prep before]"
             : variant == 13 ? " [tensor cores, bf16 copies, WY scan, value tiles of 16, prep beside in 3 blocks]"
             : variant == 15 ? " [tensor cores, bf16 copies, WY scan, value tiles of 16, two roles, no copy warp]"
             : variant == 16 ? " [tensor cores, bf16 copies, WY scan, value tiles of 64, wgmma where it fits]"
             : variant == 17 ? " [tensor cores, bf16 copies, WY scan, value tiles of 64, mma.sync]"
                             : " [tensor cores, bf16 copies, the default choice (one-chunk kernel where it applies)]",
             label,
             (long long)T, n_seg, nk, nv, dk, dv);
    if (sync_ok(what)) {
        dget(o, doo, vn, what);
        tu_close(o, orf, vn, tol, what);
        double worst = 0;
        int ok = 1;
        for (int s = 0; s < n_seg; s++) {
            float *got = malloc(sn * 4);
            ok &= dget(got, dS[s], sn, what);
            double d = tu_max_abs_diff(got, Sr[s], sn), m = tu_max_abs(Sr[s], sn);
            double r = m > 0 ? d / m : d;
            if (!(r <= worst)) worst = r; /* NaN-safe: NaN makes worst NaN and fails below */
            free(got);
        }
        tu_check(ok && worst <= tol, "%s: final states, worst max|diff|/max|ref| %.2e (bound %.0e)", what, worst, tol);
    }
    plm_cuda_free(0, dq), plm_cuda_free(0, dk_), plm_cuda_free(0, dv_), plm_cuda_free(0, dg), plm_cuda_free(0, db);
    plm_cuda_free(0, dSa), plm_cuda_free(0, dcu), plm_cuda_free(0, dtab), plm_cuda_free(0, work);
    for (int s = 0; s < n_seg; s++) free(S[s]), free(Sr[s]);
    free(dS), free(S), free(Sr), free(q), free(k), free(v), free(g), free(b), free(o), free(orf), free(cu);
}

/* PLM_TEST_GDN_VARIANT=n: the delta-rule shapes in variant n only, and nothing else (so that a slow tool,
 * compute-sanitizer's racecheck, can look at one kernel's launches); -1, the default: every variant */
static int only_variant = -1;

static void test_gdn(const int *lens, int n_seg, int nk, int nv, int dk, int dv, float g_lo, const char *label) {
    for (int variant = 0; variant < N_GDN_VARIANTS; variant++)
        if (only_variant < 0 || variant == only_variant)
            test_gdn_variant(lens, n_seg, nk, nv, dk, dv, g_lo, label, variant);
}

/* The CPU layer's delta-rule inputs from the conv output mixed [T, 2 nk dk + nv dv]: q, k (L2 norms, q
 * scaled by 1/sqrt(dk)), v, beta = sigmoid(b), g = negA softplus(a + dtb) */
static void prep_ref(float *q, float *k, float *v, float *beta, float *g, const float *mixed, const float *b,
                     const float *a, const float *negA, const float *dtb, int64_t T, int nk, int nv, int dk, int dv) {
    const int CD = 2 * nk * dk + nv * dv;
    for (int64_t t = 0; t < T; t++) {
        memcpy(q + t * nk * dk, mixed + t * CD, nk * dk * 4);
        memcpy(k + t * nk * dk, mixed + t * CD + nk * dk, nk * dk * 4);
        memcpy(v + t * nv * dv, mixed + t * CD + 2 * nk * dk, nv * dv * 4);
        for (int h = 0; h < nv; h++) {
            beta[t * nv + h] = plm_sigmoid(b[t * nv + h]);
            g[t * nv + h] = negA[h] * plm_softplus(a[t * nv + h] + dtb[h]);
        }
    }
    plm_l2norm_rows(q, T * nk, dk, 1.0f / sqrtf((float)dk));
    plm_l2norm_rows(k, T * nk, dk, 1.0f);
}

/* q, k L2 norms, beta and the log decay from the conv output, against the CPU layer's sequence */
static void test_gdn_prep(int64_t T, int nk, int nv, int dk, int dv) {
    const int CD = 2 * nk * dk + nv * dv;
    float *mixed = malloc(T * CD * 4), *b = malloc(T * nv * 4), *a = malloc(T * nv * 4), *negA = malloc(nv * 4),
          *dtb = malloc(nv * 4);
    fill(mixed, T * CD, -2, 2);
    fill(b, T * nv, -4, 4);
    fill(a, T * nv, -30, 30); /* both sides of softplus's threshold */
    fill(negA, nv, -2, -0.1f);
    fill(dtb, nv, -1, 1);
    float *q = malloc(T * nk * dk * 4), *k = malloc(T * nk * dk * 4), *v = malloc(T * nv * dv * 4);
    float *beta = malloc(T * nv * 4), *g = malloc(T * nv * 4);
    prep_ref(q, k, v, beta, g, mixed, b, a, negA, dtb, T, nk, nv, dk, dv);
    float *dm = dput(mixed, T * CD), *dbb = dput(b, T * nv), *da = dput(a, T * nv), *dn = dput(negA, nv),
          *ddt = dput(dtb, nv);
    float *dq = dput(NULL, T * nk * dk), *dk_ = dput(NULL, T * nk * dk), *dv_ = dput(NULL, T * nv * dv);
    /* the BF16 copies' form: same FP32 outputs (beta, g into fresh buffers), and copies that are their
     * round-to-nearest-even BF16 values exactly */
    const int64_t nqk = T * nk * dk, nb16 = 2 * nqk + T * nv * dv;
    float *dq2 = dput(NULL, nqk), *dk2 = dput(NULL, nqk), *dv2 = dput(NULL, T * nv * dv), *db2 = dput(NULL, T * nv),
          *dg2 = dput(NULL, T * nv);
    uint16_t *dcopy = dput_bytes(NULL, nb16 * 2);
    plm_gdn_prep_bf_cuda(dq2, dk2, dv2, dcopy, db2, dg2, dm, dbb, da, dn, ddt, T, nk, nv, dk, dv, NULL);
    plm_gdn_prep_cuda(dq, dk_, dv_, dbb, da, dm, dbb, da, dn, ddt, T, nk, nv, dk, dv, NULL); /* beta, g in place */
    char what[128];
    snprintf(what, sizeof what, "delta-rule inputs (T=%lld, nk=%d nv=%d dk=%d dv=%d)", (long long)T, nk, nv, dk, dv);
    float *dx[5] = {dq, dk_, dv_, dbb, da}, *dy[5] = {dq2, dk2, dv2, db2, dg2};
    const int64_t nx[5] = {nqk, nqk, T * nv * dv, T * nv, T * nv};
    if (sync_ok(what)) {
        float *x = malloc(T * (nk * dk > nv * dv ? nk * dk : nv * dv) * 4);
        /* the BF16-copy form against the plain one, bit for bit (dget frees: the copies' form first) */
        float *y = malloc(T * (nk * dk > nv * dv ? nk * dk : nv * dv) * 4);
        uint16_t *c16 = malloc(nb16 * 2);
        plm_cuda_download(0, c16, dcopy, nb16 * 2, &ERR);
        int same = 1;
        int64_t bad = -1;
        for (int i = 0; i < 5; i++) {
            plm_cuda_download(0, x, dx[i], nx[i] * 4, &ERR);
            dget(y, dy[i], nx[i], what);
            same &= !memcmp(x, y, nx[i] * 4);
            const int64_t base = i == 0 ? 0 : i == 1 ? nqk : 2 * nqk;
            for (int64_t e = 0; i < 3 && e < nx[i] && bad < 0; e++)
                if (c16[base + e] != plm_f32_to_bf16(x[e])) bad = base + e;
        }
        tu_check(same, "%s: q, k, v, beta, g identical with the BF16 copies written", what);
        tu_check(bad < 0, "%s: BF16 copies are the rounded q, k, v (first difference at %lld)", what, (long long)bad);
        free(y), free(c16);
        dget(x, dq, T * nk * dk, what), tu_close(x, q, T * nk * dk, TOL, "  q (L2 norm, 1/sqrt(dk))");
        dget(x, dk_, T * nk * dk, what), tu_close(x, k, T * nk * dk, TOL, "  k (L2 norm)");
        dget(x, dv_, T * nv * dv, what), tu_close(x, v, T * nv * dv, 0.0, "  v (copied)");
        dget(x, dbb, T * nv, what), tu_close(x, beta, T * nv, TOL, "  beta = sigmoid(b)");
        dget(x, da, T * nv, what), tu_close(x, g, T * nv, TOL, "  g = -exp(A_log) softplus(a + dt_bias)");
        free(x);
    } else {
        for (int i = 0; i < 5; i++) plm_cuda_free(0, dx[i]), plm_cuda_free(0, dy[i]);
    }
    plm_cuda_free(0, dcopy);
    plm_cuda_free(0, dm), plm_cuda_free(0, dn), plm_cuda_free(0, ddt);
    free(mixed), free(b), free(a), free(negA), free(dtb), free(q), free(k), free(v), free(beta), free(g);
}

/* The decode mixer (plm_gdn_dec_cuda: T one-token segments) against the CPU layer's sequence: conv with
 * each segment's tail (plm_conv_ref, which also shifts the tails), the q/k L2 norms, sigmoid(b) and the
 * log decay, the delta rule on carried-in states (plm_gdn_ref) and the gated RMSNorm. form 0: FP32
 * output, bound TOL_GDN (the delta rule's, as test_gdn's decode tokens have it); 1: BF16 hi + lo (their
 * sum within the same bound); 2: BF16 hi alone (one BF16 step); 3: as 1, with raw, z, b and a read from
 * one stacked array, row t [raw | z | b | a] (ld their widths' sum: the four projections as one product)
 * and beta and g written to their own arrays; 4 (where the mixer is one kernel, as the engine calls it):
 * stacked in, BF16 hi out, no work arrays (q, k, v, beta and g NULL). The work arrays q, k, v, beta, g
 * (where given), the new tails (exact: copies) and the final states are checked too. */
static void test_gdn_dec(int64_t T, int nk, int nv, int dk, int dv, int K, int form) {
    if (form == 4 && !plm_gdn_dec_fused_fits(nk, nv, dk, dv, K)) return; /* the work arrays are needed */
    const int CD = 2 * nk * dk + nv * dv, P = K - 1;
    const size_t sn = (size_t)nv * dk * dv, tn = (size_t)P * CD, qn = T * nk * dk, vn = T * nv * dv;
    int32_t *cu = malloc((T + 1) * 4);
    for (int64_t t = 0; t <= T; t++) cu[t] = (int32_t)t;
    float *x = malloc(T * CD * 4), *w = malloc((size_t)CD * K * 4), *mixed = malloc(T * CD * 4);
    float *b = malloc(T * nv * 4), *a = malloc(T * nv * 4), *negA = malloc(nv * 4), *dtb = malloc(nv * 4);
    float *z = malloc(vn * 4), *gw = malloc(dv * 4), *o = malloc(vn * 4), *ref = malloc(vn * 4);
    float *q = malloc(qn * 4), *k = malloc(qn * 4), *v = malloc(vn * 4), *beta = malloc(T * nv * 4),
          *g = malloc(T * nv * 4);
    fill(x, T * CD, -2, 2);
    fill(w, (size_t)CD * K, -1, 1);
    fill(b, T * nv, -4, 4);
    fill(a, T * nv, -30, 30);
    fill(negA, nv, -2, -0.1f);
    fill(dtb, nv, -1, 1);
    fill(z, vn, -3, 3);
    fill(gw, dv, 0.5f, 1.5f);
    float **tl = malloc(T * sizeof *tl), **tr = malloc(T * sizeof *tr), **S = malloc(T * sizeof *S),
          **Sr = malloc(T * sizeof *Sr);
    for (int64_t t = 0; t < T; t++) {
        tl[t] = malloc(tn * 4 + 4), tr[t] = malloc(tn * 4 + 4), S[t] = malloc(sn * 4), Sr[t] = malloc(sn * 4);
        fill(tl[t], tn, -2, 2);
        memcpy(tr[t], tl[t], tn * 4);
        fill(S[t], sn, -0.5f, 0.5f);
        memcpy(Sr[t], S[t], sn * 4);
    }
    plm_conv_ref(mixed, tr, x, w, cu, (int)T, CD, K, 1);
    prep_ref(q, k, v, beta, g, mixed, b, a, negA, dtb, T, nk, nv, dk, dv);
    plm_gdn_ref(o, Sr, q, k, v, g, beta, cu, (int)T, nk, nv, dk, dv, 1);
    plm_rmsnorm_gated(ref, o, z, gw, T * nv, dv, 1e-6f);
    const int stk = form == 3 || form == 4, nowork = form == 4;
    const int64_t ld = stk ? CD + (int64_t)nv * dv + 2 * nv : 0;
    float *dx, *dz, *dbb, *da, *bin, *ain; /* bin, ain: b and a as the mixer reads them; dbb, da: beta, g */
    float *xstk = NULL;
    if (stk) {
        float *xs = malloc(T * ld * 4);
        for (int64_t t = 0; t < T; t++) {
            memcpy(xs + t * ld, x + t * CD, (size_t)CD * 4);
            memcpy(xs + t * ld + CD, z + t * nv * dv, (size_t)nv * dv * 4);
            memcpy(xs + t * ld + CD + nv * dv, b + t * nv, (size_t)nv * 4);
            memcpy(xs + t * ld + CD + nv * dv + nv, a + t * nv, (size_t)nv * 4);
        }
        dx = dput(xs, T * ld);
        xstk = xs; /* checked unchanged after the call */
        dz = dx + CD, bin = dz + nv * dv, ain = bin + nv;
        dbb = dput(NULL, T * nv), da = dput(NULL, T * nv);
    } else {
        dx = dput(x, T * CD), dz = dput(z, vn), bin = dbb = dput(b, T * nv), ain = da = dput(a, T * nv);
    }
    float *dw = dput(w, (size_t)CD * K), *dn = dput(negA, nv), *ddt = dput(dtb, nv), *dgw = dput(gw, dv);
    float *dq = dput(NULL, qn), *dk_ = dput(NULL, qn), *dv_ = dput(NULL, vn), *dy = form ? NULL : dput(NULL, vn);
    float *dhi = form ? dput_bf16_nan(vn) : NULL, *dlo = form == 1 || form == 3 ? dput_bf16_nan(vn) : NULL;
    float **dta, **dSa;
    float **dt = dput_each(tl, (int)T, tn, &dta), **dS = dput_each(S, (int)T, sn, &dSa);
    char what[160];
    snprintf(what, sizeof what, "decode mixer, %s%s (T=%lld, nk=%d nv=%d dk=%d dv=%d, K=%d)",
             form == 0   ? "FP32 out"
             : form == 1 ? "BF16 hi + lo out"
             : form == 2 ? "BF16 out"
             : form == 3 ? "stacked in, BF16 hi + lo out"
                         : "stacked in, BF16 out, no work arrays",
             plm_gdn_dec_fused_fits(nk, nv, dk, dv, K) ? ", one kernel" : ", two kernels", (long long)T, nk, nv, dk,
             dv, K);
    tu_check(plm_gdn_dec_fits(T, nk, nv, dk, dv, K), "%s: the shape fits", what);
    float *dov = dput(NULL, vn); /* the delta rule's outputs before the norm (work) */
    unsigned *ctr = calloc(PLM_GDN_DEC_CTRS, sizeof *ctr), *dctr = dput_bytes(ctr, PLM_GDN_DEC_CTRS * sizeof *ctr);
    /* where the mixer is one kernel: the two kernels on the same inputs first (fresh tails, states, b
       and a), for a comparison of every bit after */
    const int two = plm_gdn_dec_fused_fits(nk, nv, dk, dv, K);
    float **dt2 = NULL, **dS2 = NULL, **dta2 = NULL, **dSa2 = NULL, *dy2 = NULL, *dhi2 = NULL, *dlo2 = NULL;
    if (two) {
        dt2 = dput_each(tl, (int)T, tn, &dta2), dS2 = dput_each(S, (int)T, sn, &dSa2);
        dy2 = form ? NULL : dput(NULL, vn);
        dhi2 = form ? dput_bf16_nan(vn) : NULL, dlo2 = form == 1 || form == 3 ? dput_bf16_nan(vn) : NULL;
        float *q2 = dput(NULL, qn), *k2 = dput(NULL, qn), *v2 = dput(NULL, vn), *be2 = dput(NULL, T * nv),
              *g2 = dput(NULL, T * nv), *o2 = dput(NULL, vn);
        float *b2 = stk ? bin : dput(b, T * nv), *a2 = stk ? ain : dput(a, T * nv);
        unsigned *c2 = dput_bytes(ctr, PLM_GDN_DEC_CTRS * sizeof *ctr);
        plm_gdn_dec2_cuda(dy2, dhi2, dlo2, o2, c2, dta2, dSa2, dx, dw, q2, k2, v2, be2, g2, b2, a2, dn, ddt, dz, dgw, T,
                          nk, nv, dk, dv, K, 1e-6f, ld, NULL);
        plm_cuda_sync(0, &ERR);
        plm_cuda_free(0, q2), plm_cuda_free(0, k2), plm_cuda_free(0, v2), plm_cuda_free(0, be2);
        plm_cuda_free(0, g2), plm_cuda_free(0, o2), plm_cuda_free(0, c2);
        if (!stk) plm_cuda_free(0, b2), plm_cuda_free(0, a2);
    }
    plm_gdn_dec_cuda(dy, dhi, dlo, dov, dctr, dta, dSa, dx, dw, nowork ? NULL : dq, nowork ? NULL : dk_,
                     nowork ? NULL : dv_, nowork ? NULL : dbb, nowork ? NULL : da, bin, ain, dn, ddt, dz, dgw, T, nk, nv,
                     dk, dv, K, 1e-6f, ld, NULL);
    if (two && sync_ok(what)) { /* copies of the one kernel's results, read before the checks free them */
        int same = 1;
        float *cy = form ? NULL : dput(NULL, vn), *chi = form ? dput_bf16_nan(vn) : NULL,
              *clo = form == 1 || form == 3 ? dput_bf16_nan(vn) : NULL;
        if (cy) plm_cuda_copy(0, cy, dy, vn * 4, &ERR), same &= same_bits(cy, dy2, vn, what);
        if (chi) plm_cuda_copy(0, chi, dhi, (vn + 1) / 2 * 4, &ERR), same &= same_bits(chi, dhi2, (vn + 1) / 2, what);
        if (clo) plm_cuda_copy(0, clo, dlo, (vn + 1) / 2 * 4, &ERR), same &= same_bits(clo, dlo2, (vn + 1) / 2, what);
        for (int64_t t = 0; t < T; t++) {
            float *ct = dput(NULL, tn), *cs = dput(NULL, sn);
            plm_cuda_copy(0, ct, dt[t], tn * 4, &ERR), plm_cuda_copy(0, cs, dS[t], sn * 4, &ERR);
            same &= same_bits(ct, dt2[t], tn, what) & same_bits(cs, dS2[t], sn, what);
        }
        tu_check(same, "%s: outputs, tails and states the two kernels' bit for bit", what);
        plm_cuda_free(0, dta2), plm_cuda_free(0, dSa2);
        free(dt2), free(dS2);
    }
    if (sync_ok(what)) {
        if (form == 0) {
            dget(o, dy, vn, what);
        } else {
            dget_bf16(o, dhi, dlo, vn, what);
            dhi = dlo = NULL; /* freed */
        }
        tu_close(o, ref, vn, form == 2 || form == 4 ? TOL_BF16_OUT : TOL_GDN, what);
        float *got = malloc((qn > vn ? qn : vn) * 4 + 4);
        if (!nowork) {
            dget(got, dq, qn, what), tu_close(got, q, qn, TOL, "  q (conv, L2 norm, 1/sqrt(dk))");
            dget(got, dk_, qn, what), tu_close(got, k, qn, TOL, "  k (conv, L2 norm)");
            dget(got, dv_, vn, what), tu_close(got, v, vn, TOL, "  v (conv)");
            dget(got, dbb, T * nv, what), tu_close(got, beta, T * nv, TOL, "  beta = sigmoid(b)");
            dget(got, da, T * nv, what), tu_close(got, g, T * nv, TOL, "  g = -exp(A_log) softplus(a + dt_bias)");
        } else {
            plm_cuda_free(0, dq), plm_cuda_free(0, dk_), plm_cuda_free(0, dv_), plm_cuda_free(0, dbb);
            plm_cuda_free(0, da);
        }
        free(got);
        int tok = 1;
        double worst = 0;
        for (int64_t t = 0; t < T; t++) {
            float *gt = malloc((tn > sn ? tn : sn) * 4 + 4);
            tok &= dget(gt, dt[t], tn, what);
            tok &= tu_max_abs_diff(gt, tr[t], tn) == 0.0;
            tok &= dget(gt, dS[t], sn, what);
            const double d = tu_max_abs_diff(gt, Sr[t], sn), m = tu_max_abs(Sr[t], sn), r = m > 0 ? d / m : d;
            if (!(r <= worst)) worst = r;
            free(gt);
        }
        tu_check(tok, "%s: every segment's new conv tail exact", what);
        plm_cuda_download(0, ctr, dctr, PLM_GDN_DEC_CTRS * sizeof *ctr, &ERR);
        int zero = 1;
        for (int i = 0; i < PLM_GDN_DEC_CTRS; i++) zero &= ctr[i] == 0;
        tu_check(zero, "%s: the counters are back to zero", what);
        if (stk) { /* the stacked input is read, never written */
            float *back = malloc(T * ld * 4);
            plm_cuda_download(0, back, dx, (size_t)T * ld * 4, &ERR);
            tu_check(!memcmp(back, xstk, (size_t)T * ld * 4), "%s: the stacked input unchanged", what);
            free(back);
        }
        tu_check(worst <= TOL_GDN, "%s: final states, worst max|diff|/max|ref| %.2e (bound %.0e)", what, worst, TOL_GDN);
    } else {
        plm_cuda_free(0, dq), plm_cuda_free(0, dk_), plm_cuda_free(0, dv_), plm_cuda_free(0, dy);
        plm_cuda_free(0, dbb), plm_cuda_free(0, da);
    }
    plm_cuda_free(0, dx), plm_cuda_free(0, dw), plm_cuda_free(0, dn), plm_cuda_free(0, ddt);
    if (!stk) plm_cuda_free(0, dz); /* stacked: inside dx */
    free(xstk);
    plm_cuda_free(0, dgw), plm_cuda_free(0, dhi), plm_cuda_free(0, dlo), plm_cuda_free(0, dta), plm_cuda_free(0, dSa);
    plm_cuda_free(0, dov), plm_cuda_free(0, dctr);
    free(ctr);
    for (int64_t t = 0; t < T; t++) free(tl[t]), free(tr[t]), free(S[t]), free(Sr[t]);
    free(dt), free(dS), free(tl), free(tr), free(S), free(Sr), free(cu), free(x), free(w), free(mixed), free(b);
    free(a), free(negA), free(dtb), free(z), free(gw), free(o), free(ref), free(q), free(k), free(v), free(beta), free(g);
}

/* The prep from BF16 mixed (plm_gdn_prep_bb_cuda, single pass): against plm_gdn_prep_bf_cuda on the same
 * values widened. beta and g bit for bit; q, k, v for the tokens of segments shorter than
 * PLM_GDN_CHUNKED_MIN within TOL of the reference's scale (the 16-byte form sums a head's squares in
 * another order), the others left as they were (NaN); the BF16 copies of every token within one BF16
 * step of each reference copy (at most 2^-7 |x|: the other sum order may round a value to the neighbour) */
static void test_gdn_prep_bb(const int *lens, int n_seg, int nk, int nv, int dk, int dv) {
    int64_t T;
    int32_t *cu = make_cu(lens, n_seg, &T), *so = make_seg_of(cu, n_seg, T);
    const int CD = 2 * nk * dk + nv * dv;
    const int64_t nqk = T * nk * dk, nvv = T * nv * dv, nb16 = 2 * nqk + nvv;
    float *mixed = malloc(T * CD * 4), *b = malloc(T * nv * 4), *a = malloc(T * nv * 4), *negA = malloc(nv * 4),
          *dtb = malloc(nv * 4);
    uint16_t *m16 = malloc(T * CD * 2);
    fill(mixed, T * CD, -2, 2);
    for (int64_t i = 0; i < T * CD; i++) m16[i] = plm_f32_to_bf16(mixed[i]), mixed[i] = plm_bf16_to_f32(m16[i]);
    fill(b, T * nv, -4, 4);
    fill(a, T * nv, -30, 30);
    fill(negA, nv, -2, -0.1f);
    fill(dtb, nv, -1, 1);
    float *dm = dput(mixed, T * CD), *dbb = dput(b, T * nv), *da = dput(a, T * nv), *dn = dput(negA, nv),
          *ddt = dput(dtb, nv);
    uint16_t *dm16 = dput_bytes(m16, T * CD * 2);
    int32_t *dcu = dput_bytes(cu, (n_seg + 1) * 4), *dso = dput_bytes(so, T * 4);
    const int64_t nx[5] = {nqk, nqk, nvv, T * nv, T * nv};
    float *dr[5], *dg[5];
    for (int i = 0; i < 5; i++) dr[i] = dput(NULL, nx[i]), dg[i] = dput(NULL, nx[i]);
    uint16_t *drc = dput_bytes(NULL, nb16 * 2), *dgc = dput_bytes(NULL, nb16 * 2);
    plm_gdn_prep_bf_cuda(dr[0], dr[1], dr[2], drc, dr[3], dr[4], dm, dbb, da, dn, ddt, T, nk, nv, dk, dv, NULL);
    plm_gdn_prep_bb_cuda(dg[0], dg[1], dg[2], dgc, dg[3], dg[4], dm16, dbb, da, dn, ddt, dcu, dso, T, nk, nv, dk, dv,
                         NULL);
    char what[160];
    snprintf(what, sizeof what, "delta-rule inputs from BF16 mixed (T=%lld, %d segments, nk=%d nv=%d dk=%d dv=%d)",
             (long long)T, n_seg, nk, nv, dk, dv);
    if (sync_ok(what)) {
        uint16_t *rc = malloc(nb16 * 2), *gc = malloc(nb16 * 2);
        plm_cuda_download(0, rc, drc, nb16 * 2, &ERR);
        plm_cuda_download(0, gc, dgc, nb16 * 2, &ERR);
        int64_t bad = -1;
        for (int64_t e = 0; e < nb16 && bad < 0; e++) {
            const float x = plm_bf16_to_f32(rc[e]), y = plm_bf16_to_f32(gc[e]);
            if (!(fabsf(x - y) <= fabsf(x) * (1.0f / 128.0f))) bad = e;
        }
        tu_check(bad < 0, "%s: the BF16 copies within one BF16 step (first over at %lld)", what, (long long)bad);
        int unwritten = 1, exact = 1;
        for (int i = 0; i < 5; i++) {
            float *x = malloc(nx[i] * 4), *y = malloc(nx[i] * 4), *xs = malloc(nx[i] * 4), *ys = malloc(nx[i] * 4);
            dget(x, dr[i], nx[i], what), dget(y, dg[i], nx[i], what);
            const int64_t per = nx[i] / T;
            int64_t ns = 0;
            for (int64_t e = 0; e < nx[i]; e++) {
                const int64_t t = e / per;
                if (i >= 3 || cu[so[t] + 1] - cu[so[t]] < PLM_GDN_CHUNKED_MIN) xs[ns] = x[e], ys[ns++] = y[e];
                else unwritten &= y[e] != y[e];
            }
            if (i >= 3) exact &= !memcmp(x, y, nx[i] * 4);
            else if (ns) {
                char w2[200];
                snprintf(w2, sizeof w2, "%s: %s of the short segments' tokens", what, i == 0 ? "q" : i == 1 ? "k" : "v");
                tu_close(ys, xs, ns, TOL, w2);
            }
            free(x), free(y), free(xs), free(ys);
        }
        tu_check(unwritten, "%s: q, k, v of the chunked segments' tokens not written", what);
        tu_check(exact, "%s: beta and g identical", what);
        free(rc), free(gc);
    }
    plm_cuda_free(0, drc), plm_cuda_free(0, dgc), plm_cuda_free(0, dm16), plm_cuda_free(0, dcu), plm_cuda_free(0, dso);
    plm_cuda_free(0, dm), plm_cuda_free(0, dbb), plm_cuda_free(0, da), plm_cuda_free(0, dn), plm_cuda_free(0, ddt);
    free(mixed), free(m16), free(b), free(a), free(negA), free(dtb), free(cu), free(so);
}

/* A step of few tokens spreads each token of the delta-rule prep over several blocks (slices of its
 * heads), one of GDN_PREP_BLOCKS (256) tokens or more keeps a block a token: the first n tokens run
 * alone must give the rows of the whole (unsliced) run bit for bit, both forms, BF16 copies included.
 * Outputs poisoned and guarded. */
static void test_gdn_prep_slices(int64_t T, int nk, int nv, int dk, int dv) {
    const int CD = 2 * nk * dk + nv * dv;
    const int64_t nqk = T * nk * dk, nvv = T * nv * dv, nb16 = 2 * nqk + nvv;
    float *mixed = malloc(T * CD * 4), *b = malloc(T * nv * 4), *a = malloc(T * nv * 4), *negA = malloc(nv * 4),
          *dtb = malloc(nv * 4);
    fill(mixed, T * CD, -2, 2);
    fill(b, T * nv, -4, 4);
    fill(a, T * nv, -30, 30);
    fill(negA, nv, -2, -0.1f);
    fill(dtb, nv, -1, 1);
    float *dm = dput(mixed, T * CD), *dbb = dput(b, T * nv), *da = dput(a, T * nv), *dn = dput(negA, nv),
          *ddt = dput(dtb, nv);
    /* the whole run: rows of reference (q, k, v, beta, g, then the copies) */
    const int64_t nx[5] = {nqk, nqk, nvv, T * nv, T * nv};
    float *ref[5], *dr[5];
    for (int i = 0; i < 5; i++) ref[i] = malloc(nx[i] * 4), dr[i] = dput(NULL, nx[i]);
    uint16_t *rc = malloc(nb16 * 2 + 2);
    float *drc = dput(NULL, (nb16 + 1) / 2);
    plm_gdn_prep_bf_cuda(dr[0], dr[1], dr[2], drc, dr[3], dr[4], dm, dbb, da, dn, ddt, T, nk, nv, dk, dv, NULL);
    char what[160];
    snprintf(what, sizeof what, "delta-rule inputs, %lld tokens in one block each (nk=%d nv=%d dk=%d dv=%d)",
             (long long)T, nk, nv, dk, dv);
    if (!sync_ok(what)) return;
    for (int i = 0; i < 5; i++) dget(ref[i], dr[i], nx[i], what);
    dget((float *)rc, drc, (nb16 + 1) / 2, what);
    const int64_t ns[6] = {1, 2, 3, 8, 64, 255};
    for (int c = 0; c < 6 && ns[c] < T; c++)
        for (int bf = 0; bf < 2; bf++) {
            const int64_t n = ns[c], mqk = n * nk * dk, mvv = n * nv * dv, m16 = 2 * mqk + mvv;
            const int64_t mx[5] = {mqk, mqk, mvv, n * nv, n * nv};
            float *d[5], *dc = bf ? dput(NULL, (m16 + 1) / 2) : NULL;
            for (int i = 0; i < 5; i++) d[i] = dput(NULL, mx[i]);
            if (bf) plm_gdn_prep_bf_cuda(d[0], d[1], d[2], dc, d[3], d[4], dm, dbb, da, dn, ddt, n, nk, nv, dk, dv, NULL);
            else plm_gdn_prep_cuda(d[0], d[1], d[2], d[3], d[4], dm, dbb, da, dn, ddt, n, nk, nv, dk, dv, NULL);
            snprintf(what, sizeof what, "delta-rule inputs%s, the first %lld tokens alone (nk=%d nv=%d dk=%d dv=%d)",
                     bf ? " with BF16 copies" : "", (long long)n, nk, nv, dk, dv);
            if (!sync_ok(what)) continue;
            int same = 1;
            float *x = malloc(nx[0] > nx[2] ? nx[0] * 4 : nx[2] * 4);
            for (int i = 0; i < 5; i++) {
                dget(x, d[i], mx[i], what);
                same &= !memcmp(x, ref[i], mx[i] * 4);
            }
            if (bf) { /* q, k and v blocks of n tokens against the first n tokens' of the whole run's */
                uint16_t *c16 = malloc(m16 * 2 + 2);
                dget((float *)c16, dc, (m16 + 1) / 2, what);
                same &= !memcmp(c16, rc, mqk * 2) && !memcmp(c16 + mqk, rc + nqk, mqk * 2) &&
                        !memcmp(c16 + 2 * mqk, rc + 2 * nqk, mvv * 2);
                free(c16);
            }
            tu_check(same, "%s: the whole run's rows bit for bit", what);
            free(x);
        }
    for (int i = 0; i < 5; i++) free(ref[i]);
    plm_cuda_free(0, dm), plm_cuda_free(0, dbb), plm_cuda_free(0, da), plm_cuda_free(0, dn), plm_cuda_free(0, ddt);
    free(rc), free(mixed), free(b), free(a), free(negA), free(dtb);
}

/* KV append + attention over blocked caches with a cached prefix per segment */
static void test_attn(const int *lens, const int *starts, int n_seg, int nh, int nkv, int hd, const char *label) {
    int64_t T;
    int32_t *cu = make_cu(lens, n_seg, &T), *so = make_seg_of(cu, n_seg, T);
    const int row = nkv * hd;
    const size_t blk = (size_t)PLM_KV_BLOCK * row;
    float *q = malloc(T * nh * hd * 4), *kn = malloc(T * row * 4), *vn = malloc(T * row * 4);
    float *o = malloc(T * nh * hd * 4), *orf = malloc(T * nh * hd * 4);
    fill(q, T * nh * hd, -1, 1);
    fill(kn, T * row, -1, 1);
    fill(vn, T * row, -1, 1);
    plm_kv *kv = calloc(n_seg, sizeof *kv);
    const plm_kv **kvp = malloc(n_seg * sizeof *kvp);
    int64_t *start = malloc(n_seg * 8);
    int32_t *boff = malloc((n_seg + 1) * 4);
    boff[0] = 0;
    for (int s = 0; s < n_seg; s++) {
        start[s] = starts[s];
        const int64_t total = starts[s] + lens[s];
        const int nb = (int)((total + PLM_KV_BLOCK - 1) / PLM_KV_BLOCK);
        boff[s + 1] = boff[s] + nb;
        kv[s].k = malloc(nb * sizeof(float *));
        kv[s].v = malloc(nb * sizeof(float *));
        kv[s].n_blocks = kv[s].cap_blocks = nb;
        for (int b = 0; b < nb; b++) {
            kv[s].k[b] = malloc(blk * 4);
            kv[s].v[b] = malloc(blk * 4);
            fill(kv[s].k[b], blk, -1, 1); /* the cached prefix (and garbage past the end) */
            fill(kv[s].v[b], blk, -1, 1);
        }
        kvp[s] = &kv[s];
    }
    /* device blocks: the same contents before the append */
    const int nbt = boff[n_seg];
    float **hk = malloc(nbt * sizeof *hk), **hv = malloc(nbt * sizeof *hv);
    for (int s = 0; s < n_seg; s++)
        for (int b = 0; b < boff[s + 1] - boff[s]; b++) {
            hk[boff[s] + b] = dput(kv[s].k[b], blk);
            hv[boff[s] + b] = dput(kv[s].v[b], blk);
        }
    /* CPU: append, then attend */
    for (int s = 0; s < n_seg; s++)
        for (int32_t t = cu[s]; t < cu[s + 1]; t++) {
            int64_t j = start[s] + (t - cu[s]);
            memcpy(kv[s].k[j / PLM_KV_BLOCK] + (j % PLM_KV_BLOCK) * row, kn + t * row, row * 4);
            memcpy(kv[s].v[j / PLM_KV_BLOCK] + (j % PLM_KV_BLOCK) * row, vn + t * row, row * 4);
        }
    const float scale = 1.0f / sqrtf((float)hd);
    plm_attn_ref(orf, q, kvp, start, cu, n_seg, nh, nkv, hd, scale, 1);
    float **dkt = dput_bytes(hk, nbt * sizeof *hk), **dvt = dput_bytes(hv, nbt * sizeof *hv);
    float *dq = dput(q, T * nh * hd), *dkn = dput(kn, T * row), *dvn = dput(vn, T * row), *doo = dput(NULL, T * nh * hd);
    int32_t *dboff = dput_bytes(boff, (n_seg + 1) * 4), *dcu = dput_bytes(cu, (n_seg + 1) * 4),
            *dso = dput_bytes(so, T * 4);
    int64_t *dst = dput_bytes(start, n_seg * 8);
    float *dkbf = dput(NULL, (T * row + 1) / 2), *dvbf = dput(NULL, (T * row + 1) / 2); /* BF16 copies */
    plm_kv_append_cuda(dkt, dvt, dboff, dkn, dvn, dkbf, dvbf, dst, dcu, dso, T, nkv, hd, NULL);
    plm_attn_cuda(doo, dq, dkt, dvt, dboff, dst, dcu, dso, T, nh, nkv, hd, scale, NULL);
    /* the tiled kernel on the same cache */
    const int qt = plm_attn_qt(nh, nkv);
    int32_t *tiles = malloc((T / qt + n_seg + 1) * 2 * sizeof *tiles);
    const int n_tiles = plm_attn_tiles(tiles, cu, n_seg, qt);
    int32_t *dtiles = dput_bytes(tiles, (size_t)n_tiles * 2 * sizeof *tiles);
    float *doo2 = dput(NULL, T * nh * hd);
    const int tc = plm_attn_tc_fits(nh, nkv, hd);
    if (hd <= PLM_ATTN_TILED_MAX_HD)
        plm_attn_tiled_cuda(doo2, dq, dkt, dvt, dboff, dst, dcu, dtiles, n_tiles, nh, nkv, hd, scale, NULL);
    /* tensor cores, precise and BF16: keys from the cache, or the step's own from its BF16 copies
       (the append wrote them); each tile whole, or its keys in 3 and PLM_ATTN_SPLIT_MAX splits merged */
    enum { NV = 7 };
    static const struct {
        int precise, bf_copy, split;
        const char *name;
    } var[NV] = {{1, 0, 1, "precise"},
                 {0, 0, 1, "bf16, keys from the cache"},
                 {0, 1, 1, "bf16, the step's keys from their BF16 copy"},
                 {1, 0, 3, "precise, keys in 3 splits"},
                 {1, 0, PLM_ATTN_SPLIT_MAX, "precise, keys in 16 splits"},
                 {0, 1, 3, "bf16 copy, keys in 3 splits"},
                 {0, 0, PLM_ATTN_SPLIT_MAX, "bf16, keys in 16 splits"}};
    float *dov[NV] = {0}, *dpart[NV] = {0};
    if (tc)
        for (int i = 0; i < NV; i++) {
            dov[i] = dput(NULL, T * nh * hd);
            const size_t pn = plm_attn_part_floats(var[i].split, T, nh, hd);
            dpart[i] = pn ? dput(NULL, pn) : NULL;
            const plm_attn_opt opt = {var[i].bf_copy ? dkbf : NULL, var[i].bf_copy ? dvbf : NULL, var[i].split,
                                      dpart[i], T};
            plm_attn_tc_cuda(dov[i], dq, dkt, dvt, dboff, dst, dcu, dtiles, n_tiles, nh, nkv, hd, scale,
                             var[i].precise, &opt, NULL);
        }
    /* the decode kernel (FP32, a block per token): whole, and keys in 3 and PLM_ATTN_SPLIT_MAX splits */
    enum { ND = 3 };
    static const int dsplit[ND] = {1, 3, PLM_ATTN_SPLIT_MAX};
    float *dod[ND] = {0}, *dpd[ND] = {0};
    for (int i = 0; i < ND; i++) {
        dod[i] = dput(NULL, T * nh * hd);
        const size_t pn = plm_attn_part_floats(dsplit[i], T, nh, hd);
        dpd[i] = pn ? dput(NULL, pn) : NULL;
        plm_attn_dec_cuda(dod[i], dq, dkt, dvt, dboff, dst, dcu, dso, T, nh, nkv, hd, scale, dsplit[i], dpd[i], NULL);
    }
    char what[160];
    snprintf(what, sizeof what, "attention %s (T=%lld, %d segments, nh=%d nkv=%d hd=%d)", label, (long long)T, n_seg,
             nh, nkv, hd);
    if (sync_ok(what)) {
        dget(o, doo, T * nh * hd, what);
        tu_close(o, orf, T * nh * hd, TOL, what);
        for (int i = 0; i < ND; i++) {
            char wd[320];
            snprintf(wd, sizeof wd, "%s, decode kernel, %d split%s%s", what, dsplit[i], dsplit[i] > 1 ? "s" : "",
                     plm_attn_dec_fits(nh, nkv, hd) ? "" : " (shape outside it: the simple kernel)");
            dget(o, dod[i], T * nh * hd, wd);
            tu_close(o, orf, T * nh * hd, TOL, wd);
            if (dpd[i]) {
                float *ph = malloc(plm_attn_part_floats(dsplit[i], T, nh, hd) * 4);
                dget(ph, dpd[i], plm_attn_part_floats(dsplit[i], T, nh, hd), wd);
                free(ph);
            }
            dod[i] = dpd[i] = NULL;
        }
        if (hd <= PLM_ATTN_TILED_MAX_HD) {
            char w2[200];
            snprintf(w2, sizeof w2, "%s, tiled (%d tiles of %d tokens)", what, n_tiles, qt);
            dget(o, doo2, T * nh * hd, w2);
            doo2 = NULL;
            tu_close(o, orf, T * nh * hd, TOL, w2);
        }
        for (int i = 0; tc && i < NV; i++) {
            char w3[320];
            snprintf(w3, sizeof w3, "%s, tensor cores, %s", what, var[i].name);
            dget(o, dov[i], T * nh * hd, w3);
            tu_close(o, orf, T * nh * hd, var[i].precise ? TOL_ATTN_TC : TOL_GDN_BF16, w3);
            if (dpart[i]) { /* the partials' guard */
                float *ph = malloc(plm_attn_part_floats(var[i].split, T, nh, hd) * 4);
                dget(ph, dpart[i], plm_attn_part_floats(var[i].split, T, nh, hd), w3);
                free(ph);
            }
            dov[i] = dpart[i] = NULL;
        }
        { /* the BF16 copies of the step's keys and values: the CPU's rounding of each */
            uint16_t *kr = malloc(T * row * 2), *vr = malloc(T * row * 2);
            float *kg = malloc(((T * row + 1) / 2) * 4), *vg = malloc(((T * row + 1) / 2) * 4);
            for (int64_t t = 0; t < T; t++) {
                plm_bf16_round_row(kr + t * row, kn + t * row, row);
                plm_bf16_round_row(vr + t * row, vn + t * row, row);
            }
            const int okk = dget(kg, dkbf, (T * row + 1) / 2, what) && !memcmp(kg, kr, T * row * 2);
            const int okv = dget(vg, dvbf, (T * row + 1) / 2, what) && !memcmp(vg, vr, T * row * 2);
            dkbf = dvbf = NULL;
            tu_check(okk && okv, "%s: the append's BF16 copies of k and v equal the CPU's rounding", what);
            free(kr), free(vr), free(kg), free(vg);
        }
        int ok = 1; /* the caches: every block equal to the CPU's after the append */
        float *g = malloc(blk * 4);
        for (int s = 0; s < n_seg; s++)
            for (int b = 0; b < boff[s + 1] - boff[s]; b++) {
                ok &= dget(g, hk[boff[s] + b], blk, what) && !memcmp(g, kv[s].k[b], blk * 4);
                ok &= dget(g, hv[boff[s] + b], blk, what) && !memcmp(g, kv[s].v[b], blk * 4);
            }
        free(g);
        tu_check(ok, "%s: KV blocks after the append equal the CPU's", what);
    }
    plm_cuda_free(0, dkt), plm_cuda_free(0, dvt), plm_cuda_free(0, dq), plm_cuda_free(0, dkn), plm_cuda_free(0, dvn);
    plm_cuda_free(0, dboff), plm_cuda_free(0, dcu), plm_cuda_free(0, dso), plm_cuda_free(0, dst);
    plm_cuda_free(0, dtiles), plm_cuda_free(0, doo2), plm_cuda_free(0, dkbf), plm_cuda_free(0, dvbf);
    for (int i = 0; i < NV; i++) plm_cuda_free(0, dov[i]), plm_cuda_free(0, dpart[i]);
    for (int i = 0; i < ND; i++) plm_cuda_free(0, dod[i]), plm_cuda_free(0, dpd[i]);
    free(tiles);
    for (int s = 0; s < n_seg; s++) {
        for (int b = 0; b < kv[s].n_blocks; b++) free(kv[s].k[b]), free(kv[s].v[b]);
        free(kv[s].k), free(kv[s].v);
    }
    free(kv), free(kvp), free(start), free(boff), free(hk), free(hv), free(q), free(kn), free(vn), free(o), free(orf);
    free(cu), free(so);
}

static void test_rowops(int64_t rows, int n) {
    const size_t N = rows * n;
    float *x = malloc(N * 4), *d = malloc(N * 4), *z = malloc(N * 4), *w = malloc(n * 4), *ref = malloc(N * 4),
          *y = malloc(N * 4), *xr = malloc(N * 4);
    fill(x, N, -3, 3), fill(d, N, -1, 1), fill(z, N, -4, 4), fill(w, n, -0.5f, 0.5f);
    char what[128];
    float *dx = dput(x, N), *dw = dput(w, n), *dy = dput(NULL, N);
    plm_rmsnorm_zc_cuda(dy, dx, dw, rows, n, 1e-6f, NULL);
    plm_rmsnorm_zc(ref, x, w, rows, n, 1e-6f);
    snprintf(what, sizeof what, "zero-centred RMSNorm [%lld x %d]", (long long)rows, n);
    if (sync_ok(what)) dget(y, dy, N, what), tu_close(y, ref, N, TOL, what);
    /* rows read in place from a [rows, 2n] array (query then gate, as the q projection writes them): the
       norm of the first halves, and o times sigmoid of the second halves as BF16 hi + lo and hi alone */
    {
        float *qg = malloc(2 * N * 4), *gr = malloc(N * 4);
        for (int64_t r = 0; r < rows; r++) {
            memcpy(qg + 2 * r * n, x + r * n, n * 4);
            memcpy(qg + (2 * r + 1) * n, z + r * n, n * 4);
        }
        float *dqg = dput(qg, 2 * N), *dd0 = dput(d, N);
        dy = dput(NULL, N);
        plm_rmsnorm_zc_rows_cuda(dy, dqg, 2 * (int64_t)n, dw, rows, n, 1e-6f, NULL);
        snprintf(what, sizeof what, "zero-centred RMSNorm of rows 2n apart [%lld x %d]", (long long)rows, n);
        if (sync_ok(what)) dget(y, dy, N, what), tu_close(y, ref, N, TOL, what);
        for (size_t i = 0; i < N; i++) gr[i] = d[i] * plm_sigmoid(z[i]);
        for (int split = 1; split >= 0; split--) {
            float *dhi = dput_bf16_nan(N), *dlo = split ? dput_bf16_nan(N) : NULL;
            plm_gate_mul_qg_bf16_cuda(dhi, dlo, dd0, dqg, rows, n, NULL);
            snprintf(what, sizeof what, "sigmoid gate read in place, BF16 %s [%lld x %d]", split ? "hi + lo" : "hi",
                     (long long)rows, n);
            if (sync_ok(what)) dget_bf16(y, dhi, dlo, N, what), tu_close(y, gr, N, split ? TOL : TOL_BF16_OUT, what);
        }
        plm_cuda_free(0, dqg), plm_cuda_free(0, dd0);
        free(qg), free(gr);
    }
    /* residual add fused with the norm */
    float *dd = dput(d, N), *dh = dput(NULL, N);
    dy = dput(x, N);
    plm_add_rmsnorm_zc_cuda(dh, dy, dd, dw, rows, n, 1e-6f, NULL);
    for (size_t i = 0; i < N; i++) xr[i] = x[i] + d[i];
    plm_rmsnorm_zc(ref, xr, w, rows, n, 1e-6f);
    snprintf(what, sizeof what, "residual add + RMSNorm [%lld x %d]", (long long)rows, n);
    if (sync_ok(what)) {
        dget(y, dy, N, what), tu_close(y, xr, N, 0.0, "  the sum, exact");
        dget(y, dh, N, what), tu_close(y, ref, N, TOL, what);
    }
    /* the same writing h's BF16 form too (single pass): h as the plain form's, hb its rounding bit for bit */
    {
        float *dh2 = dput(NULL, N), *dhb = dput(NULL, (N + 1) / 2), *h1 = malloc(N * 4), *hb = malloc((N + 1) / 2 * 4);
        float *dd2 = dput(d, N), *dh1 = dput(NULL, N);
        dy = dput(x, N);
        float *dy2 = dput(x, N);
        plm_add_rmsnorm_zc_cuda(dh1, dy, dd2, dw, rows, n, 1e-6f, NULL);
        plm_add_rmsnorm_zc_split_cuda(dh2, dhb, NULL, dy2, dd2, NULL, dw, rows, n, 1e-6f, NULL);
        snprintf(what, sizeof what, "residual add + RMSNorm with its BF16 form [%lld x %d]", (long long)rows, n);
        if (sync_ok(what)) {
            dget(h1, dh1, N, what), dget(y, dh2, N, what), dget(hb, dhb, (N + 1) / 2, what);
            const uint16_t *h16 = (const uint16_t *)hb;
            int same = !memcmp(h1, y, N * 4), exact = 1;
            for (size_t i = 0; i < N; i++) exact &= h16[i] == plm_f32_to_bf16(y[i]);
            tu_check(same, "%s: h as the plain form's", what);
            tu_check(exact, "%s: the BF16 form is h rounded", what);
            dget(y, dy, N, what), dget(h1, dy2, N, what);
            tu_check(!memcmp(y, h1, N * 4), "%s: the residual sum as the plain form's", what);
        }
        plm_cuda_free(0, dd2);
        free(h1), free(hb);
    }
    /* the general form: x += (d + d2) (a stacked product's halves) writing h's BF16 hi and lo: h and the
       sum as the plain form's on d + d2 summed here (bit for bit: the same FP32 additions), hi and lo
       h's split exactly */
    {
        float *ds = malloc(N * 4), *d2 = malloc(N * 4), *h1 = malloc(N * 4), *hb = malloc((N + 1) / 2 * 4),
              *lb = malloc((N + 1) / 2 * 4);
        fill(d2, N, -1, 1);
        for (size_t i = 0; i < N; i++) ds[i] = d[i] + d2[i];
        float *dds = dput(ds, N), *dh1 = dput(NULL, N), *dy1 = dput(x, N);
        float *dd1 = dput(d, N), *dd2 = dput(d2, N), *dh2 = dput(NULL, N), *dy2 = dput(x, N);
        float *dhb = dput(NULL, (N + 1) / 2), *dlb = dput(NULL, (N + 1) / 2);
        plm_add_rmsnorm_zc_cuda(dh1, dy1, dds, dw, rows, n, 1e-6f, NULL);
        plm_add_rmsnorm_zc_split_cuda(dh2, dhb, dlb, dy2, dd1, dd2, dw, rows, n, 1e-6f, NULL);
        snprintf(what, sizeof what, "residual add of two halves + RMSNorm, BF16 hi + lo [%lld x %d]", (long long)rows, n);
        if (sync_ok(what)) {
            dget(h1, dh1, N, what), dget(y, dh2, N, what), dget(hb, dhb, (N + 1) / 2, what), dget(lb, dlb, (N + 1) / 2, what);
            const uint16_t *h16 = (const uint16_t *)hb, *l16 = (const uint16_t *)lb;
            int exact = 1;
            for (size_t i = 0; i < N; i++) {
                const uint16_t hi = plm_f32_to_bf16(y[i]);
                exact &= h16[i] == hi && l16[i] == plm_f32_to_bf16(y[i] - plm_bf16_to_f32(hi));
            }
            tu_check(!memcmp(h1, y, N * 4), "%s: h as the plain form's on the summed halves", what);
            tu_check(exact, "%s: hi and lo are h's split", what);
            dget(h1, dy1, N, what), dget(y, dy2, N, what);
            tu_check(!memcmp(y, h1, N * 4), "%s: the residual sum as the plain form's", what);
        } else {
            plm_cuda_free(0, dh1), plm_cuda_free(0, dh2), plm_cuda_free(0, dhb), plm_cuda_free(0, dlb);
            plm_cuda_free(0, dy1), plm_cuda_free(0, dy2);
        }
        plm_cuda_free(0, dds), plm_cuda_free(0, dd1), plm_cuda_free(0, dd2);
        free(ds), free(d2), free(h1), free(hb), free(lb);
    }
    /* split-K parts: x += ((d0 + d1) + d2) + .. (parts [P, rows, n] one after another), h and its BF16
       form: bit for bit the plain form on the parts summed here in that order */
    for (int P = 1; P <= 4; P++) {
        float *dp = malloc(P * N * 4), *ds = malloc(N * 4), *h1 = malloc(N * 4), *hb = malloc((N + 1) / 2 * 4);
        fill(dp, P * N, -1, 1);
        for (size_t i = 0; i < N; i++) {
            float e = dp[i];
            for (int k = 1; k < P; k++) e += dp[k * N + i];
            ds[i] = e;
        }
        float *dds = dput(ds, N), *dh1 = dput(NULL, N), *dy1 = dput(x, N);
        float *ddp = dput(dp, P * N), *dh2 = dput(NULL, N), *dy2 = dput(x, N), *dhb = dput(NULL, (N + 1) / 2);
        plm_add_rmsnorm_zc_cuda(dh1, dy1, dds, dw, rows, n, 1e-6f, NULL);
        plm_add_rmsnorm_zc_parts_cuda(dh2, dhb, NULL, dy2, ddp, P, dw, rows, n, 1e-6f, NULL);
        snprintf(what, sizeof what, "residual add of %d split-K parts + RMSNorm, BF16 [%lld x %d]", P, (long long)rows, n);
        if (sync_ok(what)) {
            dget(h1, dh1, N, what), dget(y, dh2, N, what), dget(hb, dhb, (N + 1) / 2, what);
            const uint16_t *h16 = (const uint16_t *)hb;
            int exact = 1;
            for (size_t i = 0; i < N; i++) exact &= h16[i] == plm_f32_to_bf16(y[i]);
            tu_check(!memcmp(h1, y, N * 4), "%s: h as the plain form's on the summed parts", what);
            tu_check(exact, "%s: the BF16 form is h rounded", what);
            dget(h1, dy1, N, what), dget(y, dy2, N, what);
            tu_check(!memcmp(y, h1, N * 4), "%s: the residual sum as the plain form's", what);
        } else {
            plm_cuda_free(0, dh1), plm_cuda_free(0, dh2), plm_cuda_free(0, dhb);
            plm_cuda_free(0, dy1), plm_cuda_free(0, dy2);
        }
        plm_cuda_free(0, dds), plm_cuda_free(0, ddp);
        free(dp), free(ds), free(h1), free(hb);
    }
    /* gated RMSNorm */
    float *dz = dput(z, N);
    dy = dput(NULL, N);
    plm_rmsnorm_gated_cuda(dy, dx, dz, dw, rows, n, 1e-6f, NULL);
    plm_rmsnorm_gated(ref, x, z, w, rows, n, 1e-6f);
    snprintf(what, sizeof what, "gated RMSNorm [%lld x %d]", (long long)rows, n);
    if (sync_ok(what)) dget(y, dy, N, what), tu_close(y, ref, N, TOL, what);
    /* its single-pass form from BF16 z: against the reference on z widened, within BF16 rounding */
    {
        uint16_t *z16 = malloc(N * 2 + 2);
        for (size_t i = 0; i < N; i++) z16[i] = plm_f32_to_bf16(z[i]), xr[i] = plm_bf16_to_f32(z16[i]);
        plm_rmsnorm_gated(ref, x, xr, w, rows, n, 1e-6f);
        uint16_t *dz16 = dput_bytes(z16, N * 2 + 2);
        float *dhi = dput(NULL, (N + 1) / 2), *hb = malloc((N + 1) / 2 * 4);
        plm_rmsnorm_gated_bz_cuda(dhi, dx, dz16, dw, rows, n, 1e-6f, NULL);
        snprintf(what, sizeof what, "gated RMSNorm from BF16 z, as BF16 [%lld x %d]", (long long)rows, n);
        if (sync_ok(what)) {
            dget(hb, dhi, (N + 1) / 2, what);
            for (size_t i = 0; i < N; i++) y[i] = plm_bf16_to_f32(((const uint16_t *)hb)[i]);
            tu_close(y, ref, N, TOL_BF16_OUT, what);
        }
        plm_cuda_free(0, dz16);
        free(z16), free(hb);
    }
    /* SwiGLU, sigmoid gate */
    memcpy(ref, x, N * 4);
    plm_swiglu(ref, z, N);
    dy = dput(x, N);
    plm_swiglu_cuda(dy, dz, N, NULL);
    if (sync_ok("swiglu")) dget(y, dy, N, "swiglu"), tu_close(y, ref, N, TOL, "swiglu");
    for (size_t i = 0; i < N; i++) ref[i] = x[i] * plm_sigmoid(z[i]);
    dy = dput(x, N);
    plm_gate_mul_cuda(dy, dz, N, NULL);
    if (sync_ok("sigmoid gate")) dget(y, dy, N, "sigmoid gate"), tu_close(y, ref, N, TOL, "sigmoid gate");
    /* the forms that write the next GEMM's BF16 input: hi, and lo the BF16 of the remainder (hi + lo is
       the FP32 value within 2^-16), or hi alone (single pass: within BF16 rounding) */
    for (int split = 1; split >= 0; split--) {
        char w2[160];
        for (int op = 0; op < 4; op++) {
            float *dhi = dput_bf16_nan(N), *dlo = split ? dput_bf16_nan(N) : NULL, *dgu = NULL;
            if (op == 3) { /* swiglu from one [rows, 2n] array, rows gate then up (the stacked product) */
                float *gu = malloc(2 * N * 4);
                for (int64_t r = 0; r < rows; r++)
                    memcpy(gu + 2 * r * n, x + r * n, (size_t)n * 4), memcpy(gu + (2 * r + 1) * n, z + r * n, (size_t)n * 4);
                dgu = dput(gu, 2 * N);
                free(gu);
                plm_swiglu_bf16_rows_cuda(dhi, dlo, dgu, rows, n, NULL);
                memcpy(ref, x, N * 4);
                plm_swiglu(ref, z, N);
            } else if (op == 0) {
                plm_rmsnorm_gated_bf16_cuda(dhi, dlo, dx, dz, dw, rows, n, 1e-6f, NULL);
                plm_rmsnorm_gated(ref, x, z, w, rows, n, 1e-6f);
            } else if (op == 1) {
                plm_swiglu_bf16_cuda(dhi, dlo, dx, dz, N, NULL);
                memcpy(ref, x, N * 4);
                plm_swiglu(ref, z, N);
            } else {
                plm_gate_mul_bf16_cuda(dhi, dlo, dx, dz, N, NULL);
                for (size_t i = 0; i < N; i++) ref[i] = x[i] * plm_sigmoid(z[i]);
            }
            snprintf(w2, sizeof w2, "%s as BF16 %s [%lld x %d]",
                     op == 0 ? "gated RMSNorm" : op == 1 ? "swiglu" : op == 2 ? "sigmoid gate" : "swiglu of stacked rows",
                     split ? "hi + lo" : "(single pass)",
                     (long long)rows, n);
            if (sync_ok(w2)) dget_bf16(y, dhi, dlo, N, w2), tu_close(y, ref, N, split ? TOL : TOL_BF16_OUT, w2);
            plm_cuda_free(0, dgu);
        }
    }
    /* SwiGLU of BF16 gate and up (single-pass GEMM outputs) into BF16: against the reference on the
       widened values, within BF16 rounding; off 1: every array one element past 16 bytes (scalar form) */
    for (int off = 0; off < 2; off++) {
        uint16_t *g16 = malloc((N + 1) * 2), *u16 = malloc((N + 1) * 2), *o16 = malloc((N + 1) * 2);
        for (size_t i = 0; i < N; i++) {
            g16[off + i] = plm_f32_to_bf16(x[i]), u16[off + i] = plm_f32_to_bf16(z[i]);
            ref[i] = plm_bf16_to_f32(g16[off + i]);
            xr[i] = plm_bf16_to_f32(u16[off + i]);
        }
        plm_swiglu(ref, xr, N);
        uint16_t *dg = dput_bytes(g16, (N + 1) * 2), *du = dput_bytes(u16, (N + 1) * 2);
        float *dout = dput(NULL, (N + 2) / 2); /* NaN bits until written, a guard after */
        plm_swiglu_bb_cuda((uint16_t *)dout + off, dg + off, du + off, N, NULL);
        char w3[128];
        snprintf(w3, sizeof w3, "swiglu of BF16 gate and up, offset %d [%lld x %d]", off, (long long)rows, n);
        if (sync_ok(w3)) {
            float *ob = malloc(((N + 2) / 2) * 4);
            dget(ob, dout, (N + 2) / 2, w3);
            memcpy(o16, (uint16_t *)ob + off, N * 2);
            for (size_t i = 0; i < N; i++) y[i] = plm_bf16_to_f32(o16[i]);
            tu_close(y, ref, N, TOL_BF16_OUT, w3);
            free(ob);
        }
        plm_cuda_free(0, dg), plm_cuda_free(0, du);
        free(g16), free(u16), free(o16);
    }
    /* the same from one [rows, 2n] array whose rows hold gate then up (the stacked product's output) */
    {
        uint16_t *gu = malloc(2 * N * 2), *o16 = malloc(N * 2 + 4);
        for (int64_t r = 0; r < rows; r++)
            for (int c = 0; c < n; c++) {
                gu[2 * r * n + c] = plm_f32_to_bf16(x[r * n + c]);
                gu[(2 * r + 1) * n + c] = plm_f32_to_bf16(z[r * n + c]);
                ref[r * n + c] = plm_bf16_to_f32(gu[2 * r * n + c]);
                xr[r * n + c] = plm_bf16_to_f32(gu[(2 * r + 1) * n + c]);
            }
        plm_swiglu(ref, xr, N);
        uint16_t *dgu = dput_bytes(gu, 2 * N * 2);
        float *dout = dput(NULL, (N + 1) / 2);
        plm_swiglu_bb_rows_cuda(dout, dgu, rows, n, NULL);
        char w3[128];
        snprintf(w3, sizeof w3, "swiglu of BF16 gate and up rows [%lld x 2 x %d]", (long long)rows, n);
        if (sync_ok(w3)) {
            dget((float *)o16, dout, (N + 1) / 2, w3);
            for (size_t i = 0; i < N; i++) y[i] = plm_bf16_to_f32(o16[i]);
            tu_close(y, ref, N, TOL_BF16_OUT, w3);
        }
        plm_cuda_free(0, dgu);
        free(gu), free(o16);
    }
    plm_cuda_free(0, dx), plm_cuda_free(0, dw), plm_cuda_free(0, dd), plm_cuda_free(0, dz);
    free(x), free(d), free(z), free(w), free(ref), free(y), free(xr);
}

/* plm_add_halves_cuda: y = a[0 .. n) + a[n .. 2n), bit for bit the FP32 sums; n % 4 != 0 takes the
 * scalar kernel; y's guard region untouched */
static void test_add_halves(int64_t n) {
    float *a = malloc(2 * n * 4), *ref = malloc(n * 4), *y = malloc(n * 4);
    fill(a, 2 * n, -3, 3);
    for (int64_t i = 0; i < n; i++) ref[i] = a[i] + a[n + i];
    float *da = dput(a, 2 * n), *dy = dput(NULL, n);
    plm_add_halves_cuda(dy, da, n, NULL);
    char what[96];
    snprintf(what, sizeof what, "add of a product's halves (n=%lld)", (long long)n);
    if (sync_ok(what)) {
        dget(y, dy, n, what);
        tu_check(tu_max_abs_diff(y, ref, n) == 0.0, "%s: bit for bit", what);
    } else {
        plm_cuda_free(0, dy);
    }
    plm_cuda_free(0, da);
    free(a), free(ref), free(y);
}

static void test_rope(int64_t T, int nh, int hd, int rot) {
    const size_t N = T * nh * hd;
    float *x = malloc(N * 4), *ref = malloc(N * 4), *y = malloc(N * 4), inv[PLM_CUDA_MAX_HD];
    int64_t *pos = malloc(T * 8);
    fill(x, N, -1, 1);
    for (int64_t t = 0; t < T; t++) pos[t] = tu_randint(&R, 0, 40000); /* long contexts: large angles */
    memcpy(ref, x, N * 4);
    plm_rope(ref, pos, T, nh, hd, rot, 1e7);
    const int half = (rot + 1) / 2; /* an odd rot: ceil(rot/2) frequencies, rot + 1 channels turn */
    for (int i = 0; i < half; i++) inv[i] = 1.0f / powf(1e7f, (float)(2 * i) / (float)rot);
    float *dx = dput(x, N), *di = dput(inv, half);
    int64_t *dp = dput_bytes(pos, T * 8);
    plm_rope_cuda(dx, dp, T, nh, hd, rot, di, NULL);
    char what[96];
    snprintf(what, sizeof what, "RoPE (T=%lld, nh=%d, hd=%d, rot=%d)", (long long)T, nh, hd, rot);
    if (sync_ok(what)) dget(y, dx, N, what), tu_close(y, ref, N, TOL, what);
    plm_cuda_free(0, di), plm_cuda_free(0, dp);
    free(x), free(ref), free(y), free(pos);
}

/* A decode step's attention inputs in one launch (plm_attn_dec_prep_cuda) against the CPU's sequence:
 * zero-centred RMSNorm of the query heads (the first half of each 2 hd row of qg) and key heads, RoPE
 * at each token's position (long contexts: large angles), the keys and values written into the KV
 * block at the segment's position; every other value of the blocks untouched (compared exactly). */
static void test_attn_dec_prep(int n_seg, const int *starts, int nh, int nkv, int hd, int rot) {
    const int64_t T = n_seg;
    const int row = nkv * hd, half = (rot + 1) / 2;
    const size_t blk = (size_t)PLM_KV_BLOCK * row;
    int32_t *cu = malloc((T + 1) * 4), *so = malloc(T * 4), *boff = malloc((T + 1) * 4);
    int64_t *start = malloc(T * 8), *pos = malloc(T * 8);
    float *qg = malloc(T * nh * 2 * hd * 4), *q = malloc(T * nh * hd * 4), *k = malloc(T * row * 4),
          *kr = malloc(T * row * 4), *v = malloc(T * row * 4), *qw = malloc(hd * 4), *kw = malloc(hd * 4);
    float inv[PLM_CUDA_MAX_HD];
    fill(qg, T * nh * 2 * hd, -2, 2);
    fill(k, T * row, -2, 2);
    fill(v, T * row, -1, 1);
    fill(qw, hd, -0.5f, 0.5f);
    fill(kw, hd, -0.5f, 0.5f);
    for (int i = 0; i < half; i++) inv[i] = 1.0f / powf(1e7f, (float)(2 * i) / (float)rot);
    boff[0] = 0;
    for (int64_t t = 0; t < T; t++) {
        cu[t] = (int32_t)t, so[t] = (int32_t)t, start[t] = starts[t], pos[t] = starts[t];
        boff[t + 1] = boff[t] + starts[t] / PLM_KV_BLOCK + 1;
        for (int h = 0; h < nh; h++) memcpy(q + (t * nh + h) * hd, qg + (t * nh + h) * 2 * hd, hd * 4);
    }
    cu[T] = (int32_t)T;
    plm_rmsnorm_zc(q, q, qw, T * nh, hd, 1e-6f);
    plm_rmsnorm_zc(kr, k, kw, T * nkv, hd, 1e-6f);
    plm_rope(q, pos, T, nh, hd, rot, 1e7);
    plm_rope(kr, pos, T, nkv, hd, rot, 1e7);
    const int nbt = boff[T];
    float **hk = malloc(nbt * sizeof *hk), **hv = malloc(nbt * sizeof *hv), **dk = malloc(nbt * sizeof *dk),
          **dv = malloc(nbt * sizeof *dv);
    for (int b = 0; b < nbt; b++) {
        hk[b] = malloc(blk * 4), hv[b] = malloc(blk * 4);
        fill(hk[b], blk, -1, 1), fill(hv[b], blk, -1, 1);
        dk[b] = dput(hk[b], blk), dv[b] = dput(hv[b], blk);
    }
    char *wrote = calloc((size_t)nbt * PLM_KV_BLOCK, 1); /* the key rows the step writes */
    for (int64_t t = 0; t < T; t++) { /* the expected blocks */
        const int64_t j = start[t], b = boff[t] + j / PLM_KV_BLOCK, at = (j % PLM_KV_BLOCK) * row;
        memcpy(hk[b] + at, kr + t * row, row * 4);
        memcpy(hv[b] + at, v + t * row, row * 4);
        wrote[b * PLM_KV_BLOCK + j % PLM_KV_BLOCK] = 1;
    }
    float **dkt = dput_bytes(dk, nbt * sizeof *dk), **dvt = dput_bytes(dv, nbt * sizeof *dv);
    float *dqg = dput(qg, T * nh * 2 * hd), *dkk = dput(k, T * row), *dvv = dput(v, T * row), *dq = dput(NULL, T * nh * hd);
    float *dqw = dput(qw, hd), *dkw = dput(kw, hd), *dinv = dput(inv, half);
    int32_t *dboff = dput_bytes(boff, (T + 1) * 4), *dcu = dput_bytes(cu, (T + 1) * 4), *dso = dput_bytes(so, T * 4);
    int64_t *dst = dput_bytes(start, T * 8), *dpos = dput_bytes(pos, T * 8);
    char what[160];
    snprintf(what, sizeof what, "decode attention inputs (T=%lld, nh=%d nkv=%d hd=%d rot=%d)", (long long)T, nh, nkv,
             hd, rot);
    tu_check(plm_attn_dec_prep_fits(T, hd, rot), "%s: the shape fits", what);
    plm_attn_dec_prep_cuda(dq, dkt, dvt, dboff, dqg, dkk, dvv, dqw, dkw, dst, dcu, dso, dpos, dinv, T, nh, nkv, hd, rot,
                           1e-6f, NULL);
    if (sync_ok(what)) {
        float *y = malloc(T * nh * hd * 4), *gb = malloc(blk * 4);
        dget(y, dq, T * nh * hd, what), tu_close(y, q, T * nh * hd, TOL, what);
        double wk = 0, wu = 0, wv = 0;
        const double mk = tu_max_abs(kr, T * row);
        for (int b = 0; b < nbt; b++) {
            dget(gb, dk[b], blk, what);
            for (int r = 0; r < PLM_KV_BLOCK; r++) { /* the step's key rows within TOL, every other one exact */
                const double d = tu_max_abs_diff(gb + (size_t)r * row, hk[b] + (size_t)r * row, row);
                double *worst = wrote[b * PLM_KV_BLOCK + r] ? &wk : &wu;
                if (!(d <= *worst)) *worst = d;
            }
            dget(gb, dv[b], blk, what);
            const double e = tu_max_abs_diff(gb, hv[b], blk);
            if (!(e <= wv)) wv = e;
        }
        tu_check(wk <= TOL * mk && wu == 0.0 && wv == 0.0,
                 "%s: KV blocks: the step's keys within %.0e of max|ref| (%.2e), every other key and every value "
                 "exact (%.2e, %.2e)", what, TOL, mk > 0 ? wk / mk : wk, wu, wv);
        free(y), free(gb);
    } else {
        for (int b = 0; b < nbt; b++) plm_cuda_free(0, dk[b]), plm_cuda_free(0, dv[b]);
        plm_cuda_free(0, dq);
    }
    plm_cuda_free(0, dkt), plm_cuda_free(0, dvt), plm_cuda_free(0, dqg), plm_cuda_free(0, dkk), plm_cuda_free(0, dvv);
    plm_cuda_free(0, dqw), plm_cuda_free(0, dkw), plm_cuda_free(0, dinv), plm_cuda_free(0, dboff), plm_cuda_free(0, dcu);
    plm_cuda_free(0, dso), plm_cuda_free(0, dst), plm_cuda_free(0, dpos);
    for (int b = 0; b < nbt; b++) free(hk[b]), free(hv[b]);
    free(wrote);
    free(hk), free(hv), free(dk), free(dv), free(cu), free(so), free(boff), free(start), free(pos), free(qg), free(q);
    free(k), free(kr), free(v), free(qw), free(kw);
}

static void test_route(int64_t T, int E, int k) {
    float *l = malloc(T * E * 4), *w = malloc(T * k * 4), *wr = malloc(T * k * 4);
    int32_t *idx = malloc(T * k * 4), *ir = malloc(T * k * 4);
    fill(l, T * E, -3, 3);
    for (int64_t t = 0; t < T; t += 7) l[t * E + 1] = l[t * E + 2]; /* ties go to the lower index */
    plm_moe_route(ir, wr, l, T, E, k);
    float *dl = dput(l, T * E), *dw = dput(NULL, T * k);
    int32_t *di = dput_bytes(NULL, T * k * 4);
    plm_moe_route_cuda(di, dw, dl, T, E, k, NULL);
    char what[96];
    snprintf(what, sizeof what, "MoE routing (T=%lld, E=%d, k=%d)", (long long)T, E, k);
    if (sync_ok(what)) {
        plm_cuda_download(0, idx, di, T * k * 4, &ERR);
        tu_check(!memcmp(idx, ir, T * k * 4), "%s: the same experts", what);
        dget(w, dw, T * k, what), tu_close(w, wr, T * k, TOL, what);
    }
    plm_cuda_free(0, dl), plm_cuda_free(0, di);
    free(l), free(w), free(wr), free(idx), free(ir);
}

static void test_logprob(int n, int V, float spread) {
    float *l = malloc((size_t)n * V * 4), *lp = malloc(n * 4), *ref = malloc(n * 4);
    int32_t *tg = malloc(n * 4);
    fill(l, (size_t)n * V, -spread, spread);
    for (int i = 0; i < n; i++) tg[i] = tu_randint(&R, 0, V - 1);
    plm_logprob_ref(ref, l, tg, n, V, 1);
    float *dl = dput(l, (size_t)n * V), *dlp = dput(NULL, n);
    int32_t *dt = dput_bytes(tg, n * 4);
    plm_logprob_cuda(dlp, dl, dt, n, V, NULL);
    char what[128];
    snprintf(what, sizeof what, "log-probabilities (%d rows of %d, logits within +-%g)", n, V, spread);
    if (sync_ok(what)) dget(lp, dlp, n, what), tu_close(lp, ref, n, TOL, what);
    /* BF16 logits (the single-pass lm_head's), against the reference on the same values widened; odd
       offsets: rows not 16-byte aligned (the scalar form) */
    for (int off = 0; off < 2; off++) {
        uint16_t *l16 = malloc(((size_t)n * V + off) * 2);
        for (size_t i = 0; i < (size_t)n * V; i++) {
            l16[off + i] = plm_f32_to_bf16(l[i]);
            l[i] = plm_bf16_to_f32(l16[off + i]);
        }
        plm_logprob_ref(ref, l, tg, n, V, 1);
        uint16_t *dl16 = dput_bytes(l16, ((size_t)n * V + off) * 2);
        dlp = dput(NULL, n);
        plm_logprob_bf16_cuda(dlp, dl16 + off, dt, n, V, NULL);
        snprintf(what, sizeof what, "log-probabilities of BF16 logits (%d rows of %d, within +-%g, offset %d)", n, V,
                 spread, off);
        if (sync_ok(what)) dget(lp, dlp, n, what), tu_close(lp, ref, n, TOL, what);
        plm_cuda_free(0, dl16);
        free(l16);
    }
    plm_cuda_free(0, dl), plm_cuda_free(0, dt);
    free(l), free(lp), free(ref), free(tg);
}

/* the kernel's choices in di against the CPU's want (n rows; got: room for them) */
static void argmax_agree(const char *what, const int32_t *di, int32_t *got, const int32_t *want, int n) {
    if (!sync_ok(what)) return;
    plm_cuda_download(0, got, di, n * 4, &ERR);
    int bad = -1;
    for (int i = 0; i < n && bad < 0; i++)
        if (got[i] != want[i]) bad = i;
    if (bad < 0) tu_check(1, "%s: the same token as the CPU in every row", what);
    else tu_check(0, "%s: row %d (case %d): %d, the CPU %d", what, bad, bad % 10, got[bad], want[bad]);
}

/* Row i takes case i % 10. off: the rows start that many floats past a 16-byte boundary (with V % 4 != 0
 * the rows' alignment varies anyway): the kernel's scalar head before the first whole float4. */
static void test_argmax(int n, int V, int off) {
    float *l = malloc(((size_t)n * V + off) * 4), *rows = l + off;
    int32_t *got = malloc(n * 4), *want = malloc(n * 4);
    fill(l, (size_t)n * V + off, -5, 5);
    for (int i = 0; i < n; i++) {
        float *r = rows + (size_t)i * V;
        switch (i % 10) {
        case 1: r[V - 1] = r[V / 2] = r[7 % V] = 9.0f; break; /* ties: the first wins */
        case 2: r[0] = NAN, r[V / 3] = 8.0f; break;            /* a leading NaN never wins */
        case 3: r[V / 2] = NAN, r[V - 1] = 7.0f; break;        /* nor a NaN elsewhere */
        case 4: for (int v = 0; v < V; v++) r[v] = -INFINITY; r[V - 2 > 0 ? V - 2 : 0] = -1e30f; break;
        case 5: r[V - 1] = 9.0f; break; /* the maximum in the last element (the tail when V % 4 != 0) */
        case 6: /* ties spread over threads, float4 lanes and a thread's rounds of loads: the lowest wins */
            for (int j = 0; j < 6; j++) {
                const int at = V - 1 - j * 4097; /* 1024 float4 and a lane apart */
                if (at >= 0) r[at] = 9.0f;
                if (at - 16384 >= 0) r[at - 16384] = 9.0f; /* a round of 1024 threads' loads before */
                r[(V / 3 + 37 * j + 1) % V] = 9.0f;        /* other threads */
            }
            break;
        case 7: for (int v = 0; v < V; v++) r[v] = NAN; break; /* all NaN: 0 */
        case 8: /* NaN but for one -inf at the end */
            for (int v = 0; v < V; v++) r[v] = NAN;
            r[V - 1] = -INFINITY;
            break;
        case 9: /* -0 and +0 are equal: the first of them wins */
            for (int v = 0; v < V; v++) r[v] = -1.0f;
            r[V / 2] = 0.0f, r[V / 4] = -0.0f, r[V - 1] = 0.0f;
            break;
        }
        want[i] = plm_argmax_row(r, V);
    }
    float *dl = dput(l, (size_t)n * V + off);
    int32_t *di = dput_bytes(NULL, n * 4);
    plm_argmax_cuda(di, dl + off, n, V, NULL);
    char what[128];
    snprintf(what, sizeof what, "argmax (%d rows of %d, %d floats off alignment: ties, NaN, -inf, -0)", n, V, off);
    argmax_agree(what, di, got, want, n);
    /* the same rows in BF16 (the single-pass lm_head's greedy rows), against the CPU on the values widened:
       rounding makes ties of their own (values of the random rows round to one BF16 maximum), and a row
       starts off BF16 values past a boundary */
    uint16_t *l16 = malloc(((size_t)n * V + off) * 2);
    for (size_t i = 0; i < (size_t)n * V; i++) {
        l16[off + i] = plm_f32_to_bf16(rows[i]);
        rows[i] = plm_bf16_to_f32(l16[off + i]);
    }
    int ties = 0;
    for (int i = 0; i < n; i++) {
        const float *r = rows + (size_t)i * V;
        want[i] = plm_argmax_row(r, V);
        int k = 0;
        for (int v = 0; v < V; v++) k += r[v] == r[want[i]];
        ties += k > 1;
    }
    uint16_t *dl16 = dput_bytes(l16, ((size_t)n * V + off) * 2);
    plm_cuda_memset0(0, di, n * 4, &ERR);
    plm_argmax_bf16_cuda(di, dl16 + off, n, V, NULL);
    snprintf(what, sizeof what, "argmax of BF16 rows (%d rows of %d, %d values off alignment, %d rows with tied maxima)",
             n, V, off, ties);
    argmax_agree(what, di, got, want, n);
    plm_cuda_free(0, dl16);
    free(l16);
    plm_cuda_free(0, dl), plm_cuda_free(0, di);
    free(l), free(got), free(want);
}

/* The small-T GEMV (plm_gemv_bf16_cuda) in its three input forms against a double-precision sum of
 * bf16(W) times the input as the form takes it: x (FP32), float(hi), or float(hi) + float(lo). Bound
 * per output: |y - ref| <= TOL_GEMV * sum_c |W| |x|, the scale of an FP32 accumulation's error (a lane
 * sums cols / 32 products at most, then 5 shuffles and up to 4 column slices: 2^-24 each, relative to
 * that sum); NaN fails. y is poisoned and guarded. w_off / x_off move the weights / the inputs that many
 * elements off their allocations' alignment (the kernel's one-column-a-lane form). */
#define TOL_GEMV 1e-5

/* A product's case: random BF16 weights W [rows x cols] (w_off elements past their allocation's
 * start), inputs x [T x cols] (x_off past) and their BF16 split hi + lo (plm_to_bf16_cuda's), all
 * uploaded. */
typedef struct {
    uint16_t *W, *hi, *lo, *dW, *dhi, *dlo;
    float *x, *dx;
    int T, w_off, x_off;
    int64_t rows, cols;
} prod_case;

static void prod_case_make(prod_case *c, int T, int64_t rows, int64_t cols, int w_off, int x_off) {
    const size_t nw = rows * cols + w_off, nx = T * cols + x_off;
    *c = (prod_case){.T = T, .w_off = w_off, .x_off = x_off, .rows = rows, .cols = cols};
    c->W = malloc(nw * 2 + 2), c->hi = malloc(nx * 2 + 2), c->lo = malloc(nx * 2 + 2), c->x = malloc(nx * 4 + 4);
    for (size_t i = 0; i < nw; i++) c->W[i] = plm_f32_to_bf16(-1.0f + 2.0f * tu_uniform(&R));
    fill(c->x, nx, -2, 2);
    for (size_t i = 0; i < nx; i++) {
        c->hi[i] = plm_f32_to_bf16(c->x[i]);
        c->lo[i] = plm_f32_to_bf16(c->x[i] - plm_bf16_to_f32(c->hi[i]));
    }
    c->dW = dput_bytes(c->W, nw * 2), c->dhi = dput_bytes(c->hi, nx * 2), c->dlo = dput_bytes(c->lo, nx * 2);
    c->dx = dput(c->x, nx);
}

static void prod_case_free(prod_case *c) {
    plm_cuda_free(0, c->dW), plm_cuda_free(0, c->dhi), plm_cuda_free(0, c->dlo), plm_cuda_free(0, c->dx);
    free(c->W), free(c->hi), free(c->lo), free(c->x);
}

/* the device inputs of form f: x (FP32), hi (BF16), or hi + lo */
static const float *prod_x(const prod_case *c, int f) { return f == 0 ? c->dx + c->x_off : NULL; }
static const void *prod_xb(const prod_case *c, int f) { return f ? c->dhi + c->x_off : NULL; }
static const void *prod_lo(const prod_case *c, int f) { return f == 2 ? c->dlo + c->x_off : NULL; }
static const char *PROD_FORM[3] = {"FP32 input", "BF16 input", "BF16 hi + lo input"};

/* ref[t rows + r]: the double sum of bf16(W) times form f's input (x, float(hi), or float(hi) +
 * float(lo)), scale: the sum of |W| |input|; rows not sampled (sample > 1: every sample-th row and the
 * first and last 256 are) get scale -1 */
static void prod_ref(double *ref, double *scale, const prod_case *c, int f, int sample) {
    const int64_t rows = c->rows, cols = c->cols;
    for (int t = 0; t < c->T; t++)
        for (int64_t r = 0; r < rows; r++) {
            const int want = sample <= 1 || r % sample == 0 || r < 256 || r >= rows - 256;
            double sum = 0, abs_sum = 0;
            for (int64_t c0 = 0; c0 < cols && want; c0++) {
                const size_t at = c->x_off + t * cols + c0;
                const double v = f == 0 ? c->x[at]
                                 : f == 1 ? plm_bf16_to_f32(c->hi[at])
                                          : (double)plm_bf16_to_f32(c->hi[at]) + plm_bf16_to_f32(c->lo[at]);
                const double p = plm_bf16_to_f32(c->W[c->w_off + r * cols + c0]) * v;
                sum += p;
                abs_sum += fabs(p);
            }
            ref[t * rows + r] = sum;
            scale[t * rows + r] = want ? abs_sum : -1;
        }
}

/* every output within TOL_GEMV * scale of ref (NaN fails); outputs of scale -1 only written (no NaN) */
static void prod_check(const float *y, const double *ref, const double *scale, size_t ny, const char *what) {
    double worst = 0;
    size_t bad = ny, checked = 0;
    for (size_t i = 0; i < ny; i++) {
        if (scale[i] < 0) {
            if (y[i] != y[i] && bad == ny) bad = i; /* written: the poison is gone */
            continue;
        }
        const double e = fabs(y[i] - ref[i]);
        checked++;
        if (!(e <= TOL_GEMV * scale[i]) && bad == ny) bad = i; /* NaN fails */
        tu_worst(&worst, scale[i] > 0 ? e / scale[i] : e);
    }
    if (bad == ny)
        tu_check(1, "%s: |y - ref| <= %.0e sum|W||x| (worst %.2e of it, %zu outputs of %zu against the reference)",
                 what, TOL_GEMV, worst, checked, ny);
    else tu_check(0, "%s: output %zu: |%g - %g| > %.0e x %g", what, bad, y[bad], ref[bad], TOL_GEMV, scale[bad]);
}

static void test_gemv(int T, int64_t rows, int64_t cols, int w_off, int x_off, const char *label) {
    const size_t ny = T * rows;
    prod_case c;
    prod_case_make(&c, T, rows, cols, w_off, x_off);
    float *y = malloc(ny * 4);
    double *ref = malloc(ny * 8), *scale = malloc(ny * 8);
    for (int f = 0; f < 3; f++) {
        prod_ref(ref, scale, &c, f, 1);
        float *dy = dput(NULL, ny);
        plm_gemv_bf16_cuda(dy, c.dW + w_off, prod_x(&c, f), prod_xb(&c, f), prod_lo(&c, f), T, rows, cols, NULL);
        char what[200];
        snprintf(what, sizeof what, "GEMV %s (T=%d, [%lld x %lld], %s)", label, T, (long long)rows, (long long)cols,
                 PROD_FORM[f]);
        if (!sync_ok(what)) continue;
        dget(y, dy, ny, what);
        prod_check(y, ref, scale, ny, what);
    }
    prod_case_free(&c);
    free(y), free(ref), free(scale);
}

/* the skinny GEMM's workspace (plm_skinny_work_bytes, zeroed once): every launch leaves it zeroed */
static void *SK_WORK;

/* one product / n products of one input: the GEMV up to PLM_GEMV_MAX_T inputs, the skinny GEMM above */
static void prod_one(float *y, const void *W, const float *x, const void *xb, const void *lo, int T, int64_t rows,
                     int64_t cols) {
    if (T <= PLM_GEMV_MAX_T) plm_gemv_bf16_cuda(y, W, x, xb, lo, T, rows, cols, NULL);
    else plm_skinny_bf16_cuda(y, W, x, xb, lo, T, rows, cols, SK_WORK, NULL);
}
static void prod_multi(int n, float *const *y, const void *const *W, const int64_t *rows, const float *x,
                       const void *xb, const void *lo, int T, int64_t cols) {
    if (T <= PLM_GEMV_MAX_T) plm_gemv_bf16_multi_cuda(n, y, W, rows, x, xb, lo, T, cols, NULL);
    else plm_skinny_bf16_multi_cuda(n, y, W, rows, x, xb, lo, T, cols, SK_WORK, NULL);
}

/* The grouped GEMV (plm_gemv_bf16_multi_cuda; above PLM_GEMV_MAX_T inputs the grouped skinny GEMM,
 * plm_skinny_bf16_multi_cuda): n products of one input, each with its own weights (w_off[j] elements
 * off alignment: that product alone takes the one-column-a-lane form) and row count, against n separate
 * single-product calls (each checked against a double sum by test_gemv / test_skinny), bit for bit, in
 * the three input forms. Both sets of outputs are poisoned and guarded. More than PLM_GEMV_MULTI
 * products take further launches. */
static void test_gemv_multi(int T, int n, const int64_t *rows, int64_t cols, const int *w_off, int x_off,
                            const char *label) {
    const size_t nx = T * cols + x_off;
    uint16_t *hi = malloc(nx * 2 + 2), *lo = malloc(nx * 2 + 2);
    float *x = malloc(nx * 4 + 4);
    fill(x, nx, -2, 2);
    for (size_t i = 0; i < nx; i++) {
        hi[i] = plm_f32_to_bf16(x[i]);
        lo[i] = plm_f32_to_bf16(x[i] - plm_bf16_to_f32(hi[i]));
    }
    uint16_t *dhi = dput_bytes(hi, nx * 2), *dlo = dput_bytes(lo, nx * 2);
    float *dx = dput(x, nx);
    uint16_t **dW = malloc(n * sizeof *dW);
    const void **Wj = malloc(n * sizeof *Wj);
    for (int j = 0; j < n; j++) {
        const size_t nw = rows[j] * cols + w_off[j];
        uint16_t *W = malloc(nw * 2 + 2);
        for (size_t i = 0; i < nw; i++) W[i] = plm_f32_to_bf16(-1.0f + 2.0f * tu_uniform(&R));
        dW[j] = dput_bytes(W, nw * 2);
        Wj[j] = dW[j] + w_off[j];
        free(W);
    }
    float **ys = malloc(n * sizeof *ys), **ym = malloc(n * sizeof *ym);
    for (int f = 0; f < 3; f++) {
        const float *in = f == 0 ? dx + x_off : NULL;
        const void *inb = f ? dhi + x_off : NULL, *inl = f == 2 ? dlo + x_off : NULL;
        for (int j = 0; j < n; j++) {
            ys[j] = dput(NULL, T * rows[j]);
            ym[j] = dput(NULL, T * rows[j]);
            prod_one(ys[j], Wj[j], in, inb, inl, T, rows[j], cols);
        }
        prod_multi(n, ym, (const void *const *)Wj, rows, in, inb, inl, T, cols);
        char what[240];
        int at = snprintf(what, sizeof what, "grouped %s %s (T=%d, %d products of",
                          T <= PLM_GEMV_MAX_T ? "GEMV" : "skinny GEMM", label, T, n);
        for (int j = 0; j < n && at < (int)sizeof what - 40; j++)
            at += snprintf(what + at, sizeof what - at, " %lld%s", (long long)rows[j], w_off[j] ? "*" : "");
        snprintf(what + at, sizeof what - at, " rows x %lld, %s)", (long long)cols, PROD_FORM[f]);
        if (!sync_ok(what)) continue;
        int same = 1, bad = -1;
        for (int j = 0; j < n; j++) {
            float *a = malloc(T * rows[j] * 4), *b = malloc(T * rows[j] * 4);
            dget(a, ys[j], T * rows[j], what);
            dget(b, ym[j], T * rows[j], what);
            size_t nan = 0;
            for (int64_t i = 0; i < T * rows[j]; i++) nan += a[i] != a[i];
            if ((memcmp(a, b, T * rows[j] * 4) || nan) && bad < 0) bad = j;
            same &= !memcmp(a, b, T * rows[j] * 4) && !nan;
            free(a), free(b);
        }
        if (same) tu_check(1, "%s: every product as its own launch, bit for bit", what);
        else tu_check(0, "%s: product %d differs from its own launch (or left NaN)", what, bad);
    }
    for (int j = 0; j < n; j++) plm_cuda_free(0, dW[j]);
    plm_cuda_free(0, dhi), plm_cuda_free(0, dlo), plm_cuda_free(0, dx);
    free(dW), free(Wj), free(ys), free(ym), free(hi), free(lo), free(x);
}

/* The MLP's gated GEMV (plm_gemv_glu_bf16_cuda: silu(Wg x) (Wu x) as BF16 hi + lo, or hi alone) against
 * the two products by the grouped GEMV and plm_swiglu_bf16_cuda, which the tests above check against
 * double sums and the CPU's SwiGLU: the same words, bit for bit (each sum is the plain GEMV's, with the
 * same column split). Outputs poisoned with BF16 NaN and guarded. T with no such kernel (3), and
 * weights of which one is 16-byte aligned and the other not (the plain products would sum them
 * differently), must return 0 and launch nothing. w_off: both weights that many elements off
 * alignment; up_off: the up weights that many more. Each case twice: FP32 input (precise), and the
 * input's BF16 form (single pass, hi alone) against the grouped GEMV on the same BF16 input. */
static void test_gemv_glu_in(int T, int64_t rows, int64_t cols, int w_off, int up_off, int x_off, int with_lo,
                             int bf_in, const char *label);

static void test_gemv_glu(int T, int64_t rows, int64_t cols, int w_off, int up_off, int x_off, int with_lo,
                          const char *label) {
    test_gemv_glu_in(T, rows, cols, w_off, up_off, x_off, with_lo, 0, label);
    test_gemv_glu_in(T, rows, cols, w_off, up_off, x_off, 0, 1, label); /* single pass: BF16 input, hi alone */
}

static void test_gemv_glu_in(int T, int64_t rows, int64_t cols, int w_off, int up_off, int x_off, int with_lo,
                             int bf_in, const char *label) {
    const size_t nx = T * cols + x_off, nw = rows * cols + w_off + up_off, ny = (size_t)T * rows, nb = (ny + 1) / 2;
    float *x = malloc(nx * 4 + 4);
    uint16_t *W = malloc(2 * nw * 2 + 4), *xh = malloc(nx * 2 + 2);
    fill(x, nx, -2, 2);
    for (size_t i = 0; i < nx; i++) xh[i] = plm_f32_to_bf16(x[i]);
    for (size_t i = 0; i < 2 * nw; i++) W[i] = plm_f32_to_bf16(-1.0f + 2.0f * tu_uniform(&R));
    float *dx = dput(x, nx);
    uint16_t *dxb = dput_bytes(xh, nx * 2);
    uint16_t *dWg = dput_bytes(W, nw * 2), *dWu = dput_bytes(W + nw, nw * 2);
    float *yg = dput(NULL, ny), *yu = dput(NULL, ny);
    float *rh = dput_bf16_nan(ny), *rl = with_lo ? dput_bf16_nan(ny) : NULL;
    float *gh = dput_bf16_nan(ny), *gl = with_lo ? dput_bf16_nan(ny) : NULL;
    float *const ys[2] = {yg, yu};
    const uint16_t *Wg = dWg + w_off, *Wu = dWu + w_off + up_off;
    const void *const ws[2] = {Wg, Wu};
    const int64_t rs[2] = {rows, rows};
    plm_gemv_bf16_multi_cuda(2, ys, ws, rs, bf_in ? NULL : dx + x_off, bf_in ? dxb + x_off : NULL, NULL, T, cols, NULL);
    plm_swiglu_bf16_cuda(rh, rl, yg, yu, (int64_t)ny, NULL);
    const int ran = plm_gemv_glu_bf16_cuda(gh, gl, Wg, Wu, rows, bf_in ? NULL : dx + x_off, bf_in ? dxb + x_off : NULL,
                                           T, cols, NULL);
    const int mixed = (((uintptr_t)Wg & 15) == 0) != (((uintptr_t)Wu & 15) == 0);
    char what[200];
    snprintf(what, sizeof what, "gated GEMV %s (T=%d, [%lld x %lld]%s%s)", label, T, (long long)rows, (long long)cols,
             with_lo ? ", hi + lo" : ", hi alone", bf_in ? ", BF16 input" : "");
    if (T == 3 || mixed) {
        tu_check(!ran, "%s: %s: returns 0", what, T == 3 ? "no kernel for T = 3" : "one weight aligned, one not");
    } else if (tu_check(ran, "%s: launched", what) && sync_ok(what)) {
        float *a = malloc(nb * 4), *b = malloc(nb * 4);
        int same = 1;
        size_t nan = 0;
        for (int part = 0; part < (with_lo ? 2 : 1); part++) {
            dget(a, part ? rl : rh, nb, what); /* dget frees what it reads back */
            dget(b, part ? gl : gh, nb, what);
            same &= !memcmp(a, b, ny * 2);
            for (size_t i = 0; i < ny; i++) nan += ((const uint16_t *)b)[i] == 0xffff;
        }
        rh = gh = rl = gl = NULL;
        tu_check(same && !nan, "%s: the two products and the swiglu kernel's words, bit for bit (%zu left unwritten)",
                 what, nan);
        free(a), free(b);
    }
    plm_cuda_free(0, dx), plm_cuda_free(0, dxb), plm_cuda_free(0, dWg), plm_cuda_free(0, dWu), plm_cuda_free(0, yg);
    plm_cuda_free(0, yu);
    float *left[4] = {rh, gh, rl, gl};
    for (int i = 0; i < 4; i++)
        if (left[i]) plm_cuda_free(0, left[i]);
    free(x), free(W), free(xh);
}

/* The skinny GEMM (plm_skinny_bf16_cuda, PLM_GEMV_MAX_T < T <= PLM_SKINNY_MAX_T) in its three input
 * forms against a double-precision sum of bf16(W) times the input as the form takes it: x (FP32, the
 * kernel splits it into hi + lo: within 2^-18 of x), float(hi), or float(hi) + float(lo). Bound per
 * output as test_gemv's: |y - ref| <= TOL_GEMV * sum_c |W| |x| (FP32 sums on tensor cores, the
 * products of both parts exact, a split's partial sums added in FP32). split: with the workspace (the
 * columns of few rows split over blocks) or without (NULL: one block a band). sample > 1: the
 * reference only for every sample-th row and the first and last 256 (the lm_head's 248,320 rows),
 * every output still checked written (no NaN) and guarded. Also: the FP32 form gives exactly the bits
 * of the hi + lo form (the kernel splits x as plm_to_bf16_cuda does, the host's split here), and a
 * second run the same bits as the first. */
static void test_skinny(int T, int64_t rows, int64_t cols, int w_off, int x_off, int split, int sample,
                        const char *label) {
    const size_t ny = T * rows;
    prod_case c;
    prod_case_make(&c, T, rows, cols, w_off, x_off);
    float *y = malloc(ny * 4), *y0 = malloc(ny * 4), *y2 = malloc(ny * 4);
    double *ref = malloc(ny * 8), *scale = malloc(ny * 8);
    void *work = split ? SK_WORK : NULL;
    int got = 0; /* outputs of the FP32 (1) and the hi + lo (2) forms read back */
    for (int f = 0; f < 3; f++) {
        prod_ref(ref, scale, &c, f, sample);
        char what[240];
        snprintf(what, sizeof what, "skinny GEMM %s (T=%d, [%lld x %lld], %s%s)", label, T, (long long)rows,
                 (long long)cols, PROD_FORM[f], split ? "" : ", no workspace");
        float *dy = dput(NULL, ny);
        plm_skinny_bf16_cuda(dy, c.dW + w_off, prod_x(&c, f), prod_xb(&c, f), prod_lo(&c, f), T, rows, cols, work, NULL);
        if (!sync_ok(what)) continue;
        dget(y, dy, ny, what);
        prod_check(y, ref, scale, ny, what);
        if (f == 0) memcpy(y0, y, ny * 4), got |= 1;
        if (f == 2) memcpy(y2, y, ny * 4), got |= 2;
        /* the same call again: the same bits (the partial sums of a split added in a fixed order) */
        dy = dput(NULL, ny);
        plm_skinny_bf16_cuda(dy, c.dW + w_off, prod_x(&c, f), prod_xb(&c, f), prod_lo(&c, f), T, rows, cols, work, NULL);
        if (!sync_ok(what)) continue;
        float *again = malloc(ny * 4);
        dget(again, dy, ny, what);
        tu_check(!memcmp(again, y, ny * 4), "%s: a second run gives the same bits", what);
        free(again);
    }
    if (got == 3)
        tu_check(!memcmp(y0, y2, ny * 4), "skinny GEMM %s (T=%d, [%lld x %lld]): the FP32 input gives the bits of "
                 "its hi + lo", label, T, (long long)rows, (long long)cols);
    prod_case_free(&c);
    free(y), free(y0), free(y2), free(ref), free(scale);
}

static void test_embed_gather(int64_t V, int H, int64_t T) {
    float *E32 = malloc(V * H * 4), *x = malloc(T * H * 4), *ref = malloc(T * H * 4);
    uint16_t *E16 = malloc(V * H * 2);
    int32_t *tok = malloc(T * 4);
    fill(E32, V * H, -1, 1);
    for (int64_t i = 0; i < V * H; i++) E16[i] = plm_f32_to_bf16(E32[i]);
    for (int64_t t = 0; t < T; t++) tok[t] = tu_randint(&R, 0, (int)V - 1);
    int32_t *dtok = dput_bytes(tok, T * 4);
    for (int bf = 0; bf < 2; bf++) {
        plm_mat M = {bf ? (const void *)E16 : E32, bf ? PLM_DT_BF16 : PLM_DT_F32, V, H, NULL};
        plm_embed_rows(ref, &M, tok, T);
        void *dE = bf ? dput_bytes(E16, V * H * 2) : (void *)dput(E32, V * H);
        float *dx = dput(NULL, T * H);
        plm_embed_rows_cuda(dx, dE, bf, H, dtok, T, NULL);
        const char *what = bf ? "embedding rows (BF16)" : "embedding rows (F32)";
        if (sync_ok(what)) dget(x, dx, T * H, what), tu_close(x, ref, T * H, 0.0, what);
        plm_cuda_free(0, dE);
    }
    /* row gather (lm_head blocks, experts) */
    float *dE = dput(E32, V * H), *dx = dput(NULL, T * H);
    plm_gather_rows_cuda(dx, dE, dtok, T, H, NULL);
    for (int64_t t = 0; t < T; t++) memcpy(ref + t * H, E32 + (int64_t)tok[t] * H, H * 4);
    if (sync_ok("row gather")) dget(x, dx, T * H, "row gather"), tu_close(x, ref, T * H, 0.0, "row gather");
    plm_cuda_free(0, dE), plm_cuda_free(0, dtok);
    free(E32), free(E16), free(x), free(ref), free(tok);
}

int main(void) {
    plm_error e = {0};
    if (!plm_cuda_built() || plm_cuda_probe(0, &e)) {
        const char *req = getenv("PLM_REQUIRE_CUDA");
        if (req && !strcmp(req, "1")) {
            tu_check(0, "CUDA required (PLM_REQUIRE_CUDA=1) but unusable: %s",
                     plm_cuda_built() ? e.msg : "this build has no CUDA (make CUDA=1)");
            return tu_finish("test_cuda_ops");
        }
        printf("SKIP test_cuda_ops: %s\n", plm_cuda_built() ? e.msg : "this build has no CUDA backend (make CUDA=1)");
        return 0;
    }

    const char *ov = getenv("PLM_TEST_GDN_VARIANT");
    if (ov && *ov) {
        char *end = NULL;
        const long n = strtol(ov, &end, 10);
        if (*end || n < 0 || n >= N_GDN_VARIANTS) {
            tu_check(0, "PLM_TEST_GDN_VARIANT=%s: a variant number 0 .. %d expected", ov, N_GDN_VARIANTS - 1);
            return tu_finish("test_cuda_ops");
        }
        only_variant = (int)n;
        printf("test_cuda_ops: the delta-rule shapes in variant %d only (PLM_TEST_GDN_VARIANT)\n", only_variant);
    }
    const int l1[] = {1, 3, 63, 64, 65, 2, 130}, l2[] = {1}, l3[] = {700};
    if (only_variant < 0) test_gdn_chunks();
    int many[400];
    if (only_variant < 0) {
        /* conv: boundary lengths, one long segment, hundreds of short ones, K = 4 and others */
        test_conv(l1, 7, 37, 4, "boundary lengths");
        test_conv(l1, 7, 40, 4, "boundary lengths, float4 rows");
        const int l5[] = {17, 1, 15, 16, 33, 2, 3};
        test_conv(l5, 7, 264, 4, "segments starting inside a run of 16, 66 channel groups");
        test_conv(l2, 1, 100, 4, "one token");
        test_conv(l3, 1, 64, 4, "one long segment");
        test_conv(l1, 7, 40, 2, "K = 2");
        test_conv(l1, 7, 24, 6, "K = 6");
    }
    for (int i = 0; i < 400; i++) many[i] = tu_randint(&R, 1, 6);
    if (only_variant < 0) test_conv(many, 400, 48, 4, "400 short segments");

    /* delta rule: the fixtures' odd shapes, the 0.8B shape (dk = dv = 128), a long segment */
    /* (segments of 16 tokens or more take the chunked form, shorter ones the recurrent one) */
    const int l4[] = {15, 16, 17, 1, 129, 128, 127};
    test_gdn(l1, 7, 2, 4, 16, 24, -0.3f, "boundary lengths");
    test_gdn(l1, 7, 2, 4, 128, 128, -0.3f, "boundary lengths");
    test_gdn(l4, 7, 2, 2, 64, 100, -0.3f, "around the form switch and two chunks");
    {
        const int w128 = plm_gdn_wg_ok(128, 0), w64 = plm_gdn_wg_ok(64, 0);
        tu_check(w128 >= 0 && w64 >= 0 && w128 == w64 && !plm_gdn_wg_ok(96, 0) && !plm_gdn_wg_ok(128, PLM_GDN_MMA_SYNC),
                 "the wgmma scan: %s (dk 128: %d, dk 64: %d; never for dk 96 or with PLM_GDN_MMA_SYNC)",
                 w128 > 0 ? "runs on this device (variant 16 tests it)" : "not for this device (variant 16 = 17)", w128,
                 w64);
    }
    test_gdn(l4, 7, 2, 4, 128, 192, -0.3f, "dv = 192 (the WY prep's V block wider than K's)");
    /* the wgmma scan's (variant 16) last value tile narrower than 64, and four tiles */
    test_gdn(l4, 7, 2, 4, 128, 96, -0.3f, "dk = 128, dv = 96 (a last value tile of 32)");
    test_gdn(l1, 7, 2, 2, 64, 72, -0.3f, "dk = 64, dv = 72 (a last value tile of 8)");
    test_gdn(l4, 7, 1, 2, 128, 256, -0.3f, "dv = 256 (four value tiles of 64)");
    test_gdn(l3, 1, 1, 2, 128, 128, -0.3f, "one long segment");
    test_gdn(l3, 1, 1, 2, 128, 128, -8.0f, "one long segment, strong decay");
    /* the scan's copy warps where dk is short of its padding (dk 24 -> 32, 120 -> 128: the pieces past dk
       skipped, the padding columns left zero) */
    test_gdn(l3, 1, 1, 2, 24, 16, -0.3f, "one long segment, dk = 24");
    test_gdn(l4, 7, 2, 2, 120, 32, -0.3f, "around the form switch and two chunks, dk = 120");
    const int l7[] = {16, 17, 40, 63, 64, 5, 1, 64, 33}; /* every chunked segment one chunk */
    test_gdn(l7, 9, 2, 4, 128, 128, -0.3f, "one-chunk segments");
    test_gdn(l7, 9, 2, 2, 40, 72, -0.3f, "one-chunk segments, dk = 40, dv = 72 (a value tile of 8)");
    int shortish[120];
    for (int i = 0; i < 120; i++) shortish[i] = tu_randint(&R, 8, 64);
    test_gdn(shortish, 120, 4, 8, 64, 64, -0.3f, "120 segments of 8 .. 64 tokens");
    int multi[40]; /* many segments of two or three chunks: more scan blocks than fit at once, in
                      segment order, each waiting (prep beside) for its own segment's marks */
    for (int i = 0; i < 40; i++) multi[i] = tu_randint(&R, 65, 160);
    test_gdn(multi, 40, 2, 4, 64, 64, -0.3f, "40 segments of 65 .. 160 tokens");
    const int l6[] = {2048}; /* 32 chunks x 8 heads: the prep beside the scan walks 256 items */
    test_gdn(l6, 1, 4, 8, 64, 64, -0.3f, "one segment of 2,048 tokens, 8 heads");
    test_gdn(many, 300, 2, 4, 32, 40, -0.3f, "300 short segments");
    test_gdn(l2, 1, 3, 3, 200, 70, -0.3f, "one token, dk = 200");
    test_gdn(l1, 7, 1, 2, 200, 70, -0.3f, "dk = 200 (recurrent form only)");
    const int dec[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    test_gdn(dec, 16, 16, 16, 128, 128, -0.3f, "16 decode tokens");
    /* short segments beside long ones: up to PLM_GDN_FOLD_MAX folded into the chunks (a chunk each),
       one more and all of them take the recurrent form; empty segments beside both */
    int fold16[17], fold17[18];
    for (int i = 0; i < 17; i++) fold16[i] = i == 5 ? 150 : tu_randint(&R, 1, 15);
    for (int i = 0; i < 18; i++) fold17[i] = i == 0 ? 90 : tu_randint(&R, 1, 15);
    test_gdn(fold16, 17, 2, 4, 128, 128, -0.3f, "16 short segments beside a long one (folded)");
    test_gdn(fold17, 18, 2, 4, 128, 128, -0.3f, "17 short segments beside a long one (recurrent)");
    const int empt[] = {0, 5, 0, 100, 0, 15, 0};
    test_gdn(empt, 7, 2, 4, 64, 64, -0.3f, "empty segments beside short and long ones");
    if (only_variant < 0) {
        test_gdn_prep_forms(l4, 7, 2, 4, 128, 128, "around the form switch and two chunks");
        test_gdn_prep_forms(l4, 7, 2, 4, 120, 192, "dk = 120, dv = 192");
        test_gdn_prep_forms(l3, 1, 1, 2, 128, 128, "one long segment");
    }
    if (only_variant >= 0) return tu_finish("test_cuda_ops");
    test_gdn_prep(37, 2, 4, 16, 24);
    test_gdn_prep(9, 16, 32, 128, 128);
    test_gdn_prep(1, 16, 16, 128, 128); /* a decode token: 8 slices of 4 heads */
    {
        const int lp1[] = {1, 15, 16, 17, 70, 3}, lp2[] = {200};
        test_gdn_prep_bb(lp1, 6, 2, 4, 16, 24);
        test_gdn_prep_bb(lp1, 6, 2, 4, 12, 20); /* dk % 8 != 0: the general kernel */
        test_gdn_prep_bb(lp1, 6, 16, 32, 128, 128);
        test_gdn_prep_bb(lp2, 1, 16, 16, 128, 128);
    }
    { /* the decode mixer, every shape in forms 0 .. 4: T, nk, nv, dk, dv, K */
        static const int dec_shapes[][6] = {
            {1, 16, 16, 128, 128, 4},
            {37, 16, 32, 128, 128, 4},
            {5, 2, 4, 16, 24, 4},
            {3, 3, 6, 136, 40, 2},
            {2, 1, 3, 30, 70, 6},
            {300, 2, 2, 32, 32, 4},
            {2, 1, 2, 256, 256, 4}, /* the widest head: two channels a thread */
            /* one value head a key head: partial row groups and column tiles, the widest head */
            {7, 3, 3, 136, 40, 4},
            {4, 2, 2, 30, 70, 4},
            {3, 1, 1, 256, 256, 4},
            {2, 2, 2, 8, 8, 4},
            /* many sequences, one value head a key head (one kernel: several rounds of the grid), odd dk, K = 6 */
            {64, 16, 16, 128, 128, 4},
            {45, 1, 1, 31, 24, 4},
            {34, 3, 3, 30, 70, 6},
            /* the same with two value heads a key head (two kernels: k_gdn_dec at 7 blocks an SM;
               k_gdn_dec_in4 four tokens a block from 32 sequences, the last block with 1 or 2) */
            {45, 1, 2, 31, 24, 4},
            {34, 3, 6, 30, 70, 6},
            {300, 2, 4, 32, 32, 4},
            /* one kernel: 256 sequences of the 0.8B shape (16 rounds of the grid), K = 2; dv odd: two */
            {256, 16, 16, 128, 128, 4},
            {5, 2, 2, 16, 24, 2},
            {3, 2, 2, 16, 15, 4},
            /* one kernel: 2 and 3 row groups (3: two warps hold no state), dk past a multiple of 32 in
               several groups, dv 128 over few rows, the smallest head, K = 1 (no tail), 3, 5, 7, 8 */
            {9, 2, 2, 64, 128, 4},
            {5, 3, 3, 65, 126, 8},
            {4, 2, 2, 100, 66, 1},
            {3, 1, 1, 1, 2, 5},
            {33, 2, 2, 96, 128, 3},
            {2, 1, 1, 127, 2, 7},
        };
        for (int form = 0; form < 5; form++)
            for (size_t i = 0; i < sizeof dec_shapes / sizeof dec_shapes[0]; i++) {
                const int *d = dec_shapes[i];
                test_gdn_dec(d[0], d[1], d[2], d[3], d[4], d[5], form);
            }
    }
#if !defined(PLM_GDN_DEC_FUSED) || PLM_GDN_DEC_FUSED /* -DPLM_GDN_DEC_FUSED=0: the two kernels everywhere (an A/B) */
    tu_check(plm_gdn_dec_fused_fits(16, 16, 128, 128, 4) && plm_gdn_dec_fused_fits(1, 1, 1, 2, 8) &&
                 plm_gdn_dec_fits(5000, 16, 16, 128, 128, 4) && /* one kernel: no counters to run out of */
                 !plm_gdn_dec_fused_fits(16, 32, 128, 128, 4) && !plm_gdn_dec_fused_fits(2, 2, 129, 128, 4) &&
                 !plm_gdn_dec_fused_fits(2, 2, 128, 130, 4) && !plm_gdn_dec_fused_fits(2, 2, 16, 15, 4) &&
                 !plm_gdn_dec_fused_fits(2, 2, 16, 16, 9),
             "decode mixer in one kernel: nv == nk, dk and dv up to 128, dv even, up to 8 taps; else refused");
#endif
    tu_check(!plm_gdn_dec_fits(1, 2, 4, 300, 128, 4) && !plm_gdn_dec_fits(1, 2, 4, 128, 300, 4) &&
                 !plm_gdn_dec_fits(70000, 2, 4, 16, 16, 4) && !plm_gdn_dec_fits(5000, 16, 32, 128, 128, 4) &&
                 !plm_gdn_dec_fits(1, 3, 4, 16, 16, 4) && !plm_gdn_dec_fits(1, 2, 4, 16, 16, 9),
             "decode mixer: dims past 256, 65535 tokens or more counters than it has, heads not a multiple, "
             "9 taps: refused");
    test_gdn_prep_slices(300, 16, 16, 128, 128);
    test_gdn_prep_slices(300, 3, 5, 24, 40); /* 6 heads (2 slices), dk below a warp */

    /* attention: fresh and cached prefixes, block edges, GQA, head dims 32 and 256 */
    const int al[] = {1, 63, 64, 65, 5, 1}, as[] = {0, 0, 1, 63, 127, 300};
    test_attn(al, as, 6, 4, 2, 32, "prompts and cached prefixes");
    test_attn(al, as, 6, 8, 2, 256, "0.8B head shape");
    int ml[200], ms[200];
    for (int i = 0; i < 200; i++) ml[i] = tu_randint(&R, 1, 4), ms[i] = tu_randint(&R, 0, 150);
    test_attn(ml, ms, 200, 4, 1, 64, "200 segments");
    const int dl[] = {1, 1, 1}, ds[] = {0, 64, 1000};
    test_attn(dl, ds, 3, 6, 3, 48, "decode tokens");
    const int ll[] = {300, 70}, ls[] = {0, 33};
    test_attn(ll, ls, 2, 8, 2, 256, "long prompts, many key tiles");
    test_attn(ll, ls, 2, 4, 4, 64, "no GQA (rep 1: 64 tokens a tile)");
    test_attn(al, as, 6, 16, 2, 128, "rep 8");
    test_attn(al, as, 6, 2, 1, 512, "head dim 512 (untiled kernel only)");
    test_attn(al, as, 6, 4, 2, 30, "head dim 30 (no BF16 copy, unaligned cache rows)");
    const int dl2[] = {1, 1, 1, 1}, ds2[] = {0, 64, 1000, 2047};
    test_attn(dl2, ds2, 4, 8, 2, 256, "decode, 0.8B head shape, caches of 1 to 33 blocks");

    test_add_halves(256 * 1024);
    test_add_halves(1001);
    test_rowops(37, 64);
    test_rowops(5, 1024);
    test_rowops(200, 24);
    test_rowops(203, 128); /* a warp a row (value heads), rows not a multiple of the block's 4 */
    test_rowops(3, 256);
    test_rowops(7, 520);   /* past a warp's row: a block a row */
    test_rowops(9, 30);    /* n not a multiple of 4: the scalar kernels */
    test_rowops(2, 4100);  /* past a thread a float4 for the residual add */
    {
        const int st1[] = {0}, st3[] = {5, 64, 40000}, st7[] = {0, 1, 63, 64, 65, 1000, 2047};
        test_attn_dec_prep(1, st1, 8, 2, 256, 64); /* the 0.8B shape */
        test_attn_dec_prep(3, st3, 6, 3, 48, 48);
        test_attn_dec_prep(7, st7, 4, 4, 30, 7);   /* odd rot, head dim not a multiple of 32 */
        test_attn_dec_prep(3, st3, 2, 1, 512, 0);  /* no rotation, the widest head */
        tu_check(!plm_attn_dec_prep_fits(1, 1024, 64) && !plm_attn_dec_prep_fits(1, 64, 65),
                 "decode attention inputs: head dim past 512 and rotation past the head refused");
    }
    test_rope(50, 4, 32, 8);
    test_rope(20, 8, 256, 64);
    test_rope(30, 3, 7, 5); /* odd head and rotary dims */
    test_rope(20, 2, 10, 3);
    test_route(97, 8, 2);
    test_route(33, 64, 8);
    test_logprob(7, 512, 5);
    test_logprob(3, 151936, 30);
    test_logprob(5, 1001, 20);   /* V % 4 != 0: the scalar path */
    test_logprob(4, 13, 3);      /* fewer values than threads */
    test_logprob(1, 1, 3);
    test_logprob(2, 248323, 40); /* the vectorised rows' tail */
    test_logprob(300, 2048, 10);
    test_embed_gather(512, 64, 300);
    test_argmax(25, 512, 0);
    test_argmax(10, 248320, 0);  /* a decode step's row */
    test_argmax(10, 248320, 1);  /* unaligned rows */
    test_argmax(10, 248323, 0);  /* V % 4 != 0: every row aligned differently, tails of 3 */
    test_argmax(20, 151937, 2);
    test_argmax(300, 2048, 3);   /* many rows, one block each */
    test_argmax(10, 13, 1);      /* fewer values than a warp */
    test_argmax(10, 1, 0);
    test_argmax(10, 5, 3);       /* one value before the boundary, one float4 */

    /* GEMV: every T up to 8 takes its own kernel (rows a warp: 2, 2, 3, 4, 4) */
    const int gemv_T[5] = {1, 2, 3, 7, 8};
    for (int i = 0; i < 5; i++) {
        const int T = gemv_T[i];
        test_gemv(T, 301, 1000, 0, 0, "125 chunks of 8 a row, the last row group short");
        test_gemv(T, 1024, 3584, 0, 0, "the down projection's shape: columns split over warps");
        test_gemv(T, 5, 4104, 0, 0, "5 rows: columns split over 4 warps");
        test_gemv(T, 3, 16, 0, 0, "fewer rows than a warp's");
        test_gemv(T, 65537, 16, 0, 0, "65,537 rows");
        test_gemv(T, 77, 37, 0, 0, "cols % 8 != 0");
        test_gemv(T, 301, 1000, 1, 0, "weights 2 bytes off alignment");
        test_gemv(T, 301, 1000, 0, 3, "inputs 3 elements off alignment");
        test_gemv(T, 40, 2000, 1, 0, "unaligned weights, columns split over warps");
    }
    /* skinny GEMM (9 .. 64 inputs on tensor cores): every n-tile count; short bands (301 rows), fewer
       rows than a warp's 16, columns split over 4, 8 and 14 blocks (both ways of adding the partials),
       cols % 8 != 0, weights or inputs off alignment, no workspace; the 0.8B shapes: qkv (at T = 64 the
       workspace caps its split at 2), the down projection, and the lm_head at 16 sequences */
    if (plm_cuda_alloc(0, &SK_WORK, plm_skinny_work_bytes(), "test buffer", &ERR) ||
        plm_cuda_memset0(0, SK_WORK, plm_skinny_work_bytes(), &ERR))
        tu_check(0, "skinny GEMM workspace: %s", ERR.msg);
    const int sk_T[8] = {9, 15, 16, 17, 31, 32, 33, 64};
    for (int i = 0; i < 8; i++) {
        const int T = sk_T[i];
        test_skinny(T, 301, 1024, 0, 0, 1, 1, "301 rows (a short band), columns split over 4 blocks");
        test_skinny(T, 17, 3584, 0, 0, 1, 1, "17 rows, columns split over 14 blocks");
        test_skinny(T, 16, 37, 0, 0, 1, 1, "cols % 8 != 0");
    }
    test_skinny(9, 1, 1024, 0, 0, 1, 1, "one row");
    test_skinny(17, 15, 2048, 0, 0, 1, 1, "15 rows, columns split over 8 blocks");
    test_skinny(33, 16, 1024, 0, 0, 1, 1, "16 rows");
    test_skinny(31, 2048, 1024, 0, 0, 1, 1, "2048 rows");
    test_skinny(17, 301, 1024, 1, 0, 1, 1, "weights 2 bytes off alignment");
    test_skinny(31, 301, 1024, 0, 3, 1, 1, "inputs 3 elements off alignment");
    test_skinny(64, 40, 2000, 1, 3, 1, 1, "weights and inputs off alignment, columns split");
    test_skinny(9, 77, 37, 1, 3, 1, 1, "unaligned, cols % 8 != 0");
    test_skinny(16, 301, 1024, 0, 0, 0, 1, "301 rows");
    test_skinny(33, 1024, 3584, 0, 0, 0, 3, "the down projection's shape");
    test_skinny(16, 6144, 1024, 0, 0, 1, 7, "the qkv projection's shape");
    test_skinny(64, 6144, 1024, 0, 0, 1, 7, "the qkv projection's shape");
    test_skinny(16, 1024, 3584, 0, 0, 1, 3, "the down projection's shape");
    test_skinny(64, 1024, 3584, 0, 0, 1, 3, "the down projection's shape");
    test_skinny(16, 248320, 1024, 0, 0, 1, 61, "the lm_head");

    /* grouped GEMV (from T = 16 the grouped skinny GEMM): the 0.8B shape's projections of one hidden
       state (at T = 1 the linear layer's have their columns split 1, 2 and 4 ways in one grid; from 16
       each product's columns split over as many blocks as alone), odd row counts (short last row
       groups), a product off alignment among aligned ones, cols % 8 != 0, an unaligned input, one
       product and more than a launch takes */
    const int z0[5] = {0, 0, 0, 0, 0}, z1[4] = {0, 1, 0, 0};
    const int64_t lin[4] = {6144, 2048, 16, 16}, att[3] = {4096, 512, 512}, mlp[2] = {3584, 3584};
    const int64_t odd[4] = {3, 301, 5, 2049}, few[2] = {77, 3}, five[5] = {7, 300, 16, 2048, 9}, one[1] = {301};
    const int multi_T[8] = {1, 2, 3, 7, 8, 16, 33, 64}; /* from 16: the grouped skinny GEMM */
    for (int i = 0; i < 8; i++) {
        const int T = multi_T[i];
        test_gemv_multi(T, 4, lin, 1024, z0, 0, "linear layer: qkv, z, b, a");
        test_gemv_multi(T, 3, att, 1024, z0, 0, "attention: q (with gate), k, v");
        test_gemv_multi(T, 2, mlp, 1024, z0, 0, "MLP: gate, up");
        test_gemv_multi(T, 4, odd, 1000, z0, 0, "odd row counts");
        test_gemv_multi(T, 4, odd, 2000, z1, 0, "the second product 2 bytes off alignment");
        test_gemv_multi(T, 2, few, 37, z0, 0, "cols % 8 != 0");
        test_gemv_multi(T, 4, lin, 1024, z0, 3, "inputs 3 elements off alignment");
        test_gemv_multi(T, 1, one, 1000, z0, 0, "one product");
        test_gemv_multi(T, 5, five, 1024, z0, 0, "five products: two launches");
    }
    /* the gated GEMV at every T it takes (and 3, which it does not): the 0.8B MLP's shape (at T = 1 the
       gate's columns split 2 ways), few rows (4 ways), a short last row group, cols % 8 != 0, weights
       and inputs off alignment, hi alone */
    for (int T = 1; T <= PLM_GEMV_MAX_T; T++) {
        test_gemv_glu(T, 3584, 1024, 0, 0, 0, 1, "MLP shape");
        test_gemv_glu(T, 5, 4104, 0, 0, 0, 1, "5 rows, columns split over 4 warps");
        test_gemv_glu(T, 301, 1000, 0, 0, 0, 1, "301 rows");
        test_gemv_glu(T, 77, 37, 0, 0, 0, 1, "cols % 8 != 0");
        test_gemv_glu(T, 301, 1000, 1, 0, 0, 1, "weights 2 bytes off alignment");
        test_gemv_glu(T, 301, 1000, 0, 1, 0, 1, "up weights 2 bytes off alignment, gate aligned");
        test_gemv_glu(T, 301, 1000, 0, 0, 3, 1, "inputs 3 elements off alignment");
        test_gemv_glu(T, 1030, 512, 0, 0, 0, 0, "hi alone");
        tu_check(!plm_gemv_glu_bf16_cuda(NULL, NULL, NULL, NULL, 8, NULL, NULL, T, 64, NULL),
                 "gated GEMV (T=%d): no input, FP32 or BF16: returns 0", T);
    }
    plm_cuda_free(0, SK_WORK);
    return tu_finish("test_cuda_ops");
}
