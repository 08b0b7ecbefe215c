/* Kernel harness in the spirit of ggml's test-backend-ops: every fast variant against its scalar
 * reference on random inputs at edge sizes (segment lengths 1, 63, 64, 65, 200, 300, many
 * segments, non-zero initial states, d_k != d_v, n_v = 2 n_k, odd channel / head sizes), with
 *   - a normalised bound: max|x - ref| <= TOL * max|ref| (NaN always fails),
 *   - guard regions after every output buffer (a canary that must stay untouched),
 *   - run-to-run reproducibility (bit-for-bit, same thread count),
 *   - 1 and 2 threads, with sizes above PLM_PAR_MIN_WORK so the threaded paths really run,
 *   - a comparator self-test that must reject a perturbed output and a NaN.
 * Plus the recorded gdn-cases (transformers' recurrent reference) against both delta-rule kernels. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fast.h"
#include "kernels/kernels.h"
#include "kernels/simd.h"
#include "testutil.h"

#define TOL_F32 1e-5   /* element-wise / GEMM-like f32 ops: conv, attention, matmul */
#define TOL_GDN 1e-4   /* delta rule: chunked vs recurrent reassociates long sums with decays */
#define TOL_CASES 1e-4 /* recorded transformers cases */
#define TOL_EXP 1e-6   /* the vectorised exp, relative, over the normal range */
#define GUARD 64
#define CANARY 0x7fc0dead /* a NaN pattern no kernel writes */

/* ---------------------------------------------------------------- buffers with guards */
/* n floats, poisoned with NaN (an output the kernel does not write fails the comparison, whatever
 * the allocator hands back), then the canary */
static float *gbuf(size_t n) {
    float *p = malloc((n + GUARD) * sizeof(float));
    uint32_t c = CANARY;
    tu_poison(p, n);
    for (size_t i = 0; i < GUARD; i++) memcpy(p + n + i, &c, sizeof c);
    return p;
}
static int guard_ok(const float *p, size_t n) {
    uint32_t c;
    for (size_t i = 0; i < GUARD; i++) {
        memcpy(&c, p + n + i, sizeof c);
        if (c != CANARY) return 0;
    }
    return 1;
}
static int check_guard(const float *p, size_t n, const char *what) {
    return tu_check(guard_ok(p, n), "%s: guard region after the output untouched", what);
}

/* the comparator (testutil.c): 1 when max|x - ref| <= tol * max|ref| and everything is finite */
static int close_rel(const float *x, const float *ref, size_t n, double tol, double *rel_out) {
    return tu_within(x, ref, n, tol, rel_out);
}
static int check_close(const float *x, const float *ref, size_t n, double tol, const char *what) {
    double r;
    int ok = close_rel(x, ref, n, tol, &r);
    return tu_check(ok, "%s: max|diff|/max|ref| %.2e (bound %.0e)", what, r, tol);
}

static tu_rng R = {0x6b65726e656c73ull};
static void fill(float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * tu_uniform(&R);
}

static void comparator_selftest(void) {
    enum { N = 257 };
    float a[N], b[N];
    fill(a, N, -1, 1);
    memcpy(b, a, sizeof a);
    double r;
    tu_check(close_rel(b, a, N, 1e-5, &r) && r == 0, "comparator: identical arrays pass");
    b[100] += 1e-3f;
    tu_check(!close_rel(b, a, N, 1e-5, &r), "comparator: a perturbed element (1e-3) fails at 1e-5");
    tu_check(close_rel(b, a, N, 1e-2, &r) && r > 0, "comparator: ... and passes at 1e-2");
    tu_check(!close_rel(b, a, N, 0.0, &r), "comparator: tolerance 0 demands equal values");
    b[100] = a[100];
    b[7] = NAN;
    tu_check(!close_rel(b, a, N, 1e30, &r) && !(r < INFINITY), "comparator: a NaN in the output fails at any tolerance");
    tu_check(!close_rel(a, b, N, 1e30, &r), "comparator: a NaN in the reference fails at any tolerance");
    b[7] = INFINITY;
    tu_check(!close_rel(b, a, N, 1e30, &r), "comparator: an infinity in the output fails at any tolerance");
    tu_check(!close_rel(a, b, N, 1e30, &r), "comparator: an infinity in the reference fails (no infinite scale)");
    float c[N];
    memcpy(c, a, sizeof a);
    c[7] = INFINITY;
    b[50] = a[50] + 100.0f; /* a large error elsewhere: inf - inf must not hide it */
    tu_check(!close_rel(b, c, N, 1e30, &r), "comparator: the same infinity in both at the same place fails");
    b[50] = a[50];
    c[7] = b[7] = -INFINITY;
    tu_check(!close_rel(b, c, N, 1e30, &r), "comparator: the same -infinity in both fails");
    tu_check(!isfinite(tu_rel_err(b, c, N)) && !isfinite(tu_max_abs_diff(b, c, N)) && !isfinite(tu_max_abs(c, N)),
             "comparator: error figures of non-finite arrays are +inf");
    float z0[4] = {0, 0, 0, 0}, z1[4] = {0, 1e-30f, 0, 0};
    tu_check(close_rel(z0, z0, 4, 0.0, &r) && !close_rel(z1, z0, 4, 1e30, &r),
             "comparator: an all-zero reference demands exact zeros");
    double w = 0;
    tu_worst(&w, 1e-3);
    tu_worst(&w, NAN);
    tu_worst(&w, 1e-6);
    tu_check(w == INFINITY, "worst-error update keeps a NaN (as +inf), whatever comes after it");
    w = 0;
    tu_worst(&w, 2e-3);
    tu_worst(&w, 1e-3);
    tu_check(w == 2e-3, "worst-error update keeps the largest");
    float g[4] = {0};
    float *p = gbuf(4);
    tu_check(isnan(p[0]) && isnan(p[3]), "gbuf: output poisoned with NaN");
    memcpy(p, g, sizeof g);
    tu_check(guard_ok(p, 4), "guard: fresh canary intact");
    p[4 + 3] = 0.0f;
    tu_check(!guard_ok(p, 4), "guard: an overwrite past the end is detected");
    free(p);
}

/* ---------------------------------------------------------------- gated delta rule */
typedef void (*gdn_fn)(float *, float *const *, const float *, const float *, const float *, const float *,
                       const float *, const int32_t *, int, int, int, int, int, int);

/* random inputs of the delta rule for segments lens: cu, and q, k (L2-normalised, q scaled by
   1/sqrt(dk)), v, the log decays g (strong: a tenth of them strong, up to -8) and beta; returns T */
static int64_t gdn_inputs(const int *lens, int n_seg, int nk, int nv, int dk, int dv, int strong, int32_t *cu,
                          float **q, float **k, float **v, float **g, float **b) {
    cu[0] = 0;
    for (int s = 0; s < n_seg; s++) cu[s + 1] = cu[s] + lens[s];
    const int64_t T = cu[n_seg];
    const size_t nq = (size_t)T * nk * dk, nvv = (size_t)T * nv * dv;
    *q = malloc(nq * 4), *k = malloc(nq * 4), *v = malloc(nvv * 4), *g = malloc(T * nv * 4), *b = malloc(T * nv * 4);
    fill(*q, nq, -1, 1);
    fill(*k, nq, -1, 1);
    fill(*v, nvv, -1, 1);
    for (int64_t i = 0; i < T * nv; i++) {
        const float u = tu_uniform(&R);
        (*g)[i] = strong && u < 0.1f ? -8.0f * tu_uniform(&R) : -0.5f * tu_uniform(&R);
        (*b)[i] = tu_uniform(&R);
    }
    plm_l2norm_rows(*q, T * nk, dk, 1.0f / sqrtf((float)dk));
    plm_l2norm_rows(*k, T * nk, dk, 1.0f);
    return T;
}

static void test_gdn(const char *name, const int *lens, int n_seg, int nk, int nv, int dk, int dv) {
    int32_t cu[n_seg + 1];
    float *q, *k, *v, *g, *b;
    const int64_t T = gdn_inputs(lens, n_seg, nk, nv, dk, dv, 1, cu, &q, &k, &v, &g, &b); /* decays mostly mild */
    const size_t nvv = (size_t)T * nv * dv, ns = (size_t)nv * dk * dv;
    float *S0 = malloc(ns * n_seg * 4);
    fill(S0, ns * n_seg, -0.5f, 0.5f);
    float *oref = gbuf(nvv), *Sref = malloc(ns * n_seg * 4);
    memcpy(Sref, S0, ns * n_seg * 4);
    float *Sp[n_seg];
    for (int s = 0; s < n_seg; s++) Sp[s] = Sref + s * ns;
    plm_gdn_ref(oref, Sp, q, k, v, g, b, cu, n_seg, nk, nv, dk, dv, 1);
    const struct { const char *n; gdn_fn f; } fs[] = {
        {"fast", plm_gdn_fast}, {"chunked", plm_gdn_chunked}, {"recurrent", plm_gdn_recurrent}};
    for (int fi = 0; fi < (int)(sizeof fs / sizeof fs[0]); fi++)
        for (int nth = 1; nth <= 2; nth++) {
            float *o = gbuf(nvv), *o2 = gbuf(nvv);
            float *Sx[n_seg], *S2[n_seg];
            for (int s = 0; s < n_seg; s++) {
                Sx[s] = gbuf(ns);
                S2[s] = gbuf(ns);
                memcpy(Sx[s], S0 + s * ns, ns * 4);
                memcpy(S2[s], S0 + s * ns, ns * 4);
            }
            fs[fi].f(o, Sx, q, k, v, g, b, cu, n_seg, nk, nv, dk, dv, nth);
            fs[fi].f(o2, S2, q, k, v, g, b, cu, n_seg, nk, nv, dk, dv, nth);
            char what[200];
            snprintf(what, sizeof what, "gdn %s %s (T %lld, %d seg, nk %d nv %d dk %d dv %d, %d thr): o", fs[fi].n,
                     name, (long long)T, n_seg, nk, nv, dk, dv, nth);
            check_close(o, oref, nvv, TOL_GDN, what);
            check_guard(o, nvv, what);
            int sok = 1, gok = 1, rep = memcmp(o, o2, nvv * 4) == 0;
            double worst = 0, r;
            for (int s = 0; s < n_seg; s++) {
                sok &= close_rel(Sx[s], Sp[s], ns, TOL_GDN, &r);
                tu_worst(&worst, r);
                gok &= guard_ok(Sx[s], ns);
                rep &= memcmp(Sx[s], S2[s], ns * 4) == 0;
                free(Sx[s]);
                free(S2[s]);
            }
            tu_check(sok, "%s -> final states: worst max|diff|/max|ref| %.2e (bound %.0e)", what, worst, TOL_GDN);
            tu_check(gok, "%s -> state guards untouched", what);
            tu_check(rep, "%s -> bit-for-bit reproducible run to run", what);
            free(o);
            free(o2);
        }
    free(q), free(k), free(v), free(g), free(b), free(S0), free(oref), free(Sref);
}

/* recorded transformers cases: q, k raw (l2norm applied here), states [N, H, K, V] */
static int load(float **x, const char *dir, int c, const char *what, size_t want) {
    char path[512];
    int nd;
    int64_t sh[8];
    plm_error err = {0};
    snprintf(path, sizeof path, "%s/case%d_%s.npy", dir, c, what);
    if (plm_npy_load_f32(x, &nd, sh, path, &err)) return tu_check(0, "load %s: %s", path, err.msg), 0;
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)sh[i];
    return tu_check(n == want, "load %s: %zu values", path, n);
}

static void test_gdn_cases(void) {
    const char *dir = "tests/data/gdn-cases";
    char path[512];
    snprintf(path, sizeof path, "%s/cases.json", dir);
    FILE *f = fopen(path, "rb");
    if (!tu_check(f != NULL, "open %s", path)) return;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf), *cases = cJSON_GetObjectItem(root, "cases"), *cs;
    tu_check(cJSON_IsArray(cases) && cJSON_GetArraySize(cases) >= 3, "cases.json lists the cases");
    cJSON_ArrayForEach(cs, cases) {
        const int c = cJSON_GetObjectItem(cs, "case")->valueint, H = cJSON_GetObjectItem(cs, "H")->valueint;
        const int K = cJSON_GetObjectItem(cs, "K")->valueint, V = cJSON_GetObjectItem(cs, "V")->valueint;
        const double scale = cJSON_GetObjectItem(cs, "scale")->valuedouble;
        const int has_init = cJSON_IsTrue(cJSON_GetObjectItem(cs, "has_initial_state"));
        cJSON *cuj = cJSON_GetObjectItem(cs, "cu_seqlens");
        const int N = cJSON_GetArraySize(cuj) - 1;
        int32_t cu[N + 1];
        for (int i = 0; i <= N; i++) cu[i] = cJSON_GetArrayItem(cuj, i)->valueint;
        const int64_t T = cu[N];
        float *q, *k, *v, *g, *b, *o, *fs, *is = NULL;
        const size_t ns = (size_t)H * K * V;
        if (!load(&q, dir, c, "q", T * H * K) || !load(&k, dir, c, "k", T * H * K) ||
            !load(&v, dir, c, "v", T * H * V) || !load(&g, dir, c, "g", T * H) || !load(&b, dir, c, "beta", T * H) ||
            !load(&o, dir, c, "o", T * H * V) || !load(&fs, dir, c, "final_state", ns * N) ||
            (has_init && !load(&is, dir, c, "initial_state", ns * N)))
            continue;
        plm_l2norm_rows(q, T * H, K, (float)scale);
        plm_l2norm_rows(k, T * H, K, 1.0f);
        const struct { const char *n; gdn_fn f; } fns[] = {
            {"reference", plm_gdn_ref}, {"recurrent", plm_gdn_recurrent}, {"chunked", plm_gdn_chunked},
            {"fast", plm_gdn_fast}};
        const int n_fns = (int)(sizeof fns / sizeof fns[0]);
        for (int fi = 0; fi < n_fns; fi++) {
            float *out = gbuf((size_t)T * H * V), *st = gbuf(ns * N), *Sp[N];
            for (int s = 0; s < N; s++) Sp[s] = st + s * ns;
            if (is) memcpy(st, is, ns * N * 4);
            else memset(st, 0, ns * N * 4);
            fns[fi].f(out, Sp, q, k, v, g, b, cu, N, H, H, K, V, 2);
            char what[160];
            snprintf(what, sizeof what, "gdn-cases case %d (%d segments, H %d K %d V %d%s) %s: o", c, N, H, K, V,
                     is ? ", initial state" : "", fns[fi].n);
            check_close(out, o, (size_t)T * H * V, TOL_CASES, what);
            check_guard(out, (size_t)T * H * V, what);
            snprintf(what, sizeof what, "gdn-cases case %d %s: final states", c, fns[fi].n);
            check_close(st, fs, ns * N, TOL_CASES, what);
            free(out), free(st);
        }
        free(q), free(k), free(v), free(g), free(b), free(o), free(fs), free(is);
    }
    cJSON_Delete(root);
}

/* segments without a state (S[s] NULL: zeros in, nothing kept) give bit for bit what zeroed states
   give, in every form and thread count; the other segments' states are unaffected */
static void test_gdn_stateless(const int *lens, int n_seg, int nk, int nv, int dk, int dv) {
    int32_t cu[n_seg + 1];
    float *q, *k, *v, *g, *b;
    const int64_t T = gdn_inputs(lens, n_seg, nk, nv, dk, dv, 0, cu, &q, &k, &v, &g, &b);
    const size_t nvv = (size_t)T * nv * dv, ns = (size_t)nv * dk * dv;
    const struct { const char *n; gdn_fn f; } fs[] = {
        {"ref", plm_gdn_ref}, {"fast", plm_gdn_fast}, {"chunked", plm_gdn_chunked}, {"recurrent", plm_gdn_recurrent}};
    for (int fi = 0; fi < (int)(sizeof fs / sizeof fs[0]); fi++)
        for (int nth = 1; nth <= 2; nth++) {
            float *o1 = gbuf(nvv), *o2 = gbuf(nvv), *Sa[n_seg], *Sb[n_seg];
            for (int s = 0; s < n_seg; s++) {
                Sa[s] = calloc(ns, 4);
                Sb[s] = s % 2 ? calloc(ns, 4) : NULL;
            }
            fs[fi].f(o1, Sa, q, k, v, g, b, cu, n_seg, nk, nv, dk, dv, nth);
            fs[fi].f(o2, Sb, q, k, v, g, b, cu, n_seg, nk, nv, dk, dv, nth);
            int same = memcmp(o1, o2, nvv * 4) == 0;
            for (int s = 1; s < n_seg; s += 2) same &= memcmp(Sa[s], Sb[s], ns * 4) == 0;
            tu_check(same, "gdn %s (%d seg, nk %d nv %d dk %d dv %d, %d thr): segments without a state give what "
                     "zeroed states give, bit for bit", fs[fi].n, n_seg, nk, nv, dk, dv, nth);
            check_guard(o2, nvv, "gdn without states");
            for (int s = 0; s < n_seg; s++) free(Sa[s]), free(Sb[s]);
            free(o1), free(o2);
        }
    free(q), free(k), free(v), free(g), free(b);
}

/* ---------------------------------------------------------------- conv */
static void test_conv(const int *lens, int n_seg, int C, int K) {
    int32_t cu[n_seg + 1];
    cu[0] = 0;
    for (int s = 0; s < n_seg; s++) cu[s + 1] = cu[s] + lens[s];
    const int64_t T = cu[n_seg];
    const size_t nt = (size_t)(K - 1) * C;
    float *x = malloc(T * C * 4), *w = malloc((size_t)C * K * 4), *t0 = malloc(nt * n_seg * 4 + 4);
    fill(x, T * C, -2, 2);
    fill(w, (size_t)C * K, -1, 1);
    fill(t0, nt * n_seg, -2, 2);
    float *yr = gbuf(T * C), *tr = malloc(nt * n_seg * 4 + 4), *trp[n_seg];
    memcpy(tr, t0, nt * n_seg * 4);
    for (int s = 0; s < n_seg; s++) trp[s] = tr + s * nt;
    plm_conv_ref(yr, trp, x, w, cu, n_seg, C, K, 1);
    for (int nth = 1; nth <= 2; nth++) {
        float *y = gbuf(T * C), *tf = gbuf(nt * n_seg), *tfp[n_seg];
        memcpy(tf, t0, nt * n_seg * 4);
        for (int s = 0; s < n_seg; s++) tfp[s] = tf + s * nt;
        plm_conv_fast(y, tfp, x, w, cu, n_seg, C, K, nth);
        char what[160];
        snprintf(what, sizeof what, "conv fast (T %lld, %d seg, C %d, K %d, %d thr): y", (long long)T, n_seg, C, K, nth);
        check_close(y, yr, T * C, TOL_F32, what);
        check_guard(y, T * C, what);
        snprintf(what, sizeof what, "conv fast (T %lld, %d seg, C %d, K %d, %d thr): tails", (long long)T, n_seg, C,
                 K, nth);
        check_close(tf, tr, nt * n_seg, 0.0, what);
        check_guard(tf, nt * n_seg, what);
        free(y), free(tf);
    }
    /* no tail (NULL): zeros before the segment, nothing kept; the same outputs as zeroed tails */
    for (int nth = 1; nth <= 2; nth++) {
        float *y1 = gbuf(T * C), *y2 = gbuf(T * C), *tz = calloc(nt * n_seg + 1, 4), *tzp[n_seg], *tnp[n_seg];
        for (int s = 0; s < n_seg; s++) tzp[s] = tz + s * nt, tnp[s] = NULL;
        plm_conv_fast(y1, tzp, x, w, cu, n_seg, C, K, nth);
        plm_conv_fast(y2, tnp, x, w, cu, n_seg, C, K, nth);
        tu_check(memcmp(y1, y2, (size_t)T * C * 4) == 0, "conv fast (C %d, K %d, %d thr): no tail = zeroed tails", C,
                 K, nth);
        memset(tz, 0, (nt * n_seg + 1) * 4); /* the fast run kept its last inputs there */
        plm_conv_ref(y1, tzp, x, w, cu, n_seg, C, K, nth);
        plm_conv_ref(y2, tnp, x, w, cu, n_seg, C, K, nth);
        tu_check(memcmp(y1, y2, (size_t)T * C * 4) == 0, "conv ref (C %d, K %d): no tail = zeroed tails", C, K);
        free(y1), free(y2), free(tz);
    }
    free(x), free(w), free(t0), free(yr), free(tr);
}

/* ---------------------------------------------------------------- attention */
static void test_attn(const int *lens, const int *starts, int n_seg, int nh, int nkv, int hd) {
    int32_t cu[n_seg + 1];
    int64_t start[n_seg];
    cu[0] = 0;
    for (int s = 0; s < n_seg; s++) cu[s + 1] = cu[s] + lens[s], start[s] = starts[s];
    const int64_t T = cu[n_seg];
    const size_t row = (size_t)nkv * hd;
    plm_kv kvs[n_seg];
    const plm_kv *kp[n_seg];
    for (int s = 0; s < n_seg; s++) {
        int64_t n = start[s] + lens[s];
        int nb = (int)((n + PLM_KV_BLOCK - 1) / PLM_KV_BLOCK);
        kvs[s].k = malloc(nb * sizeof(float *));
        kvs[s].v = malloc(nb * sizeof(float *));
        kvs[s].n_blocks = kvs[s].cap_blocks = nb;
        for (int i = 0; i < nb; i++) {
            kvs[s].k[i] = malloc(PLM_KV_BLOCK * row * 4);
            kvs[s].v[i] = malloc(PLM_KV_BLOCK * row * 4);
            fill(kvs[s].k[i], PLM_KV_BLOCK * row, -2, 2);
            fill(kvs[s].v[i], PLM_KV_BLOCK * row, -1, 1);
        }
        kp[s] = &kvs[s];
    }
    float *q = malloc(T * nh * hd * 4);
    fill(q, T * nh * hd, -2, 2);
    float *oref = gbuf(T * nh * hd);
    const float scale = 1.0f / sqrtf((float)hd);
    plm_attn_ref(oref, q, kp, start, cu, n_seg, nh, nkv, hd, scale, 1);
    for (int nth = 1; nth <= 2; nth++) {
        float *o = gbuf(T * nh * hd), *o2 = gbuf(T * nh * hd);
        plm_attn_fast(o, q, kp, start, cu, n_seg, nh, nkv, hd, scale, nth);
        plm_attn_fast(o2, q, kp, start, cu, n_seg, nh, nkv, hd, scale, nth);
        char what[160];
        snprintf(what, sizeof what, "attn fast (T %lld, %d seg, nh %d nkv %d hd %d, %d thr)", (long long)T, n_seg, nh,
                 nkv, hd, nth);
        check_close(o, oref, T * nh * hd, TOL_F32, what);
        check_guard(o, T * nh * hd, what);
        tu_check(!memcmp(o, o2, T * nh * hd * 4), "%s: bit-for-bit reproducible", what);
        free(o), free(o2);
    }
    for (int s = 0; s < n_seg; s++) {
        for (int i = 0; i < kvs[s].n_blocks; i++) free(kvs[s].k[i]), free(kvs[s].v[i]);
        free(kvs[s].k), free(kvs[s].v);
    }
    free(q), free(oref);
}

/* ---------------------------------------------------------------- matmul */
static void test_matmul(plm_dtype dt, int64_t T, int64_t rows, int64_t cols) {
    const size_t nw = (size_t)rows * cols;
    void *wd = malloc(nw * 4);
    float *wf = malloc(nw * 4);
    fill(wf, nw, -1, 1);
    for (size_t i = 0; i < nw; i++) {
        if (dt == PLM_DT_BF16) ((uint16_t *)wd)[i] = plm_f32_to_bf16(wf[i]);
        else if (dt == PLM_DT_F16) ((uint16_t *)wd)[i] = plm_f32_to_f16(wf[i]);
        else ((float *)wd)[i] = wf[i];
    }
    plm_mat W = {wd, dt, rows, cols, NULL};
    float *x = malloc(T * cols * 4);
    fill(x, T * cols, -1, 1);
    float *yr = gbuf(T * rows);
    plm_matmul_ref(yr, x, T, &W, 1);
    const struct { const char *n; int isa; void (*f)(float *, const float *, int64_t, const plm_mat *, int); } fs[] = {
        {"fast", PLM_ISA_SCALAR, plm_matmul_fast},           {"gemv", PLM_ISA_SCALAR, plm_matmul_gemv},
        {"bf16", PLM_ISA_SCALAR, plm_matmul_bf16},           {"f32", PLM_ISA_SCALAR, plm_matmul_f32},
        {"invariant", PLM_ISA_SCALAR, plm_matmul_invariant}, {"fast avx512", PLM_ISA_AVX512, plm_matmul_fast_avx512},
        {"bf16 avx512", PLM_ISA_AVX512, plm_matmul_bf16_avx512}};
    for (int fi = 0; fi < (int)(sizeof fs / sizeof fs[0]); fi++)
        for (int nth = 1; nth <= 2; nth++) {
            if (!plm_isa_supported(fs[fi].isa)) {
                if (nth == 1) printf("skip: matmul %s: this CPU cannot run it\n", fs[fi].n);
                continue;
            }
            float *y = gbuf(T * rows), *y2 = gbuf(T * rows);
            fs[fi].f(y, x, T, &W, nth);
            fs[fi].f(y2, x, T, &W, nth);
            char what[160];
            snprintf(what, sizeof what, "matmul %s %s [%lld x %lld] x [%lld -> %lld], %d thr", fs[fi].n,
                     plm_dtype_name(dt), (long long)T, (long long)cols, (long long)cols, (long long)rows, nth);
            check_close(y, yr, T * rows, TOL_F32, what);
            check_guard(y, T * rows, what);
            tu_check(!memcmp(y, y2, T * rows * 4), "%s: bit-for-bit reproducible", what);
            free(y), free(y2);
        }
    free(wd), free(wf), free(x), free(yr);
}

/* Batch invariance of a matmul: every row of a T-row call is bitwise the same row computed alone
   (T = 1) and inside a call over a different slice of rows (rows 1 .. T-1 at other places). */
static void check_rows_invariant(void (*f)(float *, const float *, int64_t, const plm_mat *, int), const char *name,
                                 const plm_mat *W, const float *x, int64_t T, int nth) {
    const int64_t R = W->rows, C = W->cols;
    float *all = gbuf(T * R), *one = gbuf(R), *part = T > 1 ? gbuf((T - 1) * R) : NULL;
    f(all, x, T, W, nth);
    int same = 1;
    for (int64_t t = 0; t < T; t++) {
        f(one, x + t * C, 1, W, 1);
        same &= !memcmp(one, all + t * R, R * 4);
    }
    if (part) {
        f(part, x + C, T - 1, W, 2);
        same &= !memcmp(part, all + R, (T - 1) * R * 4);
    }
    tu_check(same, "matmul %s %s [%lld x %lld] x [%lld -> %lld], %d thr: every row bitwise as alone and as a "
             "row of another batch", name, plm_dtype_name(W->dt), (long long)T, (long long)C, (long long)C,
             (long long)R, nth);
    check_guard(all, T * R, name);
    free(all), free(one), free(part);
}

static void test_matmul_invariant(plm_dtype dt, int64_t T, int64_t rows, int64_t cols) {
    const size_t nw = (size_t)rows * cols;
    void *wd = malloc(nw * 4 + 4);
    for (size_t i = 0; i < nw; i++) {
        const float v = 2 * tu_uniform(&R) - 1;
        if (dt == PLM_DT_BF16) ((uint16_t *)wd)[i] = plm_f32_to_bf16(v);
        else if (dt == PLM_DT_F16) ((uint16_t *)wd)[i] = plm_f32_to_f16(v);
        else ((float *)wd)[i] = v;
    }
    plm_mat W = {wd, dt, rows, cols, NULL};
    float *x = malloc((size_t)(T * cols + 1) * 4);
    fill(x, T * cols, -1, 1);
    for (int nth = 1; nth <= 2; nth++) check_rows_invariant(plm_matmul_invariant, "invariant", &W, x, T, nth);
    if (dt == PLM_DT_BF16 && plm_isa_supported(PLM_ISA_AVX512BF16))
        for (int nth = 1; nth <= 2; nth++) check_rows_invariant(plm_matmul_bf16sp_dpbf16, "bf16sp dpbf16", &W, x, T, nth);
    if (dt == PLM_DT_BF16)
        for (int nth = 1; nth <= 2; nth++)
            check_rows_invariant(plm_matmul_bf16sp_avx2_inv, "bf16sp avx2 invariant", &W, x, T, nth);
    free(wd), free(x);
}

/* The 512-bit direct BF16 GEMM (plm_matmul_bf16_avx512) against the reference, same tolerance rule as
   the other F32-activation matmuls (TOL_F32 * max|ref|: only the order of the F32 sum differs), with
   the same weights placed at every kind of offset from a 64-byte boundary: 0, 4-byte multiples (4, 16
   and 48, the mapped checkpoints', 60: when the rows are a multiple of 32 columns the kernel reads
   each block as two aligned loads combined), 2 and 62 (plain loads) and 1 (odd). The results must be
   bitwise the same at every offset (the blocks never depend on the address: test_parsers' odd-header
   checkpoint relies on it), and a row alone bitwise the same row in any batch. */
static void test_matmul_bf16_avx512(int64_t T, int64_t rows, int64_t cols) {
    if (!plm_isa_supported(PLM_ISA_AVX512)) return; /* main says so once */
    static const int offs[] = {0, 4, 16, 48, 60, 2, 62, 1};
    const size_t nw = (size_t)rows * cols;
    uint16_t *w0 = malloc(nw * 2);
    for (size_t i = 0; i < nw; i++) w0[i] = plm_f32_to_bf16(2 * tu_uniform(&R) - 1);
    float *x = malloc((size_t)(T * cols + 1) * 4);
    fill(x, T * cols, -1, 1);
    float *yr = gbuf(T * rows), *y0 = gbuf(T * rows);
    plm_mat W = {w0, PLM_DT_BF16, rows, cols, NULL};
    plm_matmul_ref(yr, x, T, &W, 1);
    for (int oi = 0; oi < (int)(sizeof offs / sizeof offs[0]); oi++) {
        void *buf; /* ends where the weights end: AddressSanitizer (tests/sanitize.sh) sees any read past them */
        if (!tu_check(!posix_memalign(&buf, 64, offs[oi] + nw * 2), "allocate the weights")) break;
        memcpy((char *)buf + offs[oi], w0, nw * 2); /* may be odd: the kernel must cope */
        W.data = (char *)buf + offs[oi];
        for (int nth = 1; nth <= 2; nth++) {
            float *y = gbuf(T * rows), *y2 = gbuf(T * rows);
            plm_matmul_bf16_avx512(y, x, T, &W, nth);
            plm_matmul_bf16_avx512(y2, x, T, &W, nth);
            char what[160];
            snprintf(what, sizeof what, "matmul bf16 avx512 [%lld x %lld] x [%lld -> %lld], weights %d bytes off a "
                     "line, %d thr", (long long)T, (long long)cols, (long long)cols, (long long)rows, offs[oi], nth);
            check_close(y, yr, T * rows, TOL_F32, what);
            check_guard(y, T * rows, what);
            tu_check(!memcmp(y, y2, T * rows * 4), "%s: bit-for-bit reproducible", what);
            if (oi == 0 && nth == 1) memcpy(y0, y, T * rows * 4);
            else tu_check(!memcmp(y, y0, T * rows * 4), "%s: bitwise as at offset 0, 1 thread", what);
            free(y), free(y2);
        }
        if (oi == 1) check_rows_invariant(plm_matmul_bf16_avx512, "bf16 avx512", &W, x, T, 2);
        free(buf);
    }
    free(w0), free(x), free(yr), free(y0);
}

/* ---------------------------------------------------------------- single-pass BF16 matmul */
/* Tolerance rule for the single-pass BF16 kernels. All of them multiply the same BF16 pairs (x rounded
   once by the same rule), and a product of two BF16 values is exact in F32; they differ only in the
   order of the F32 sum over the C columns. Each order is within (C - 1) u sum|p| of the exact sum
   (u = 2^-24, p the products), so element by element
       |y - ref| <= 2 (C - 1) u sum_c |bf16(x_c) w_c|        (the forward bound of two summation orders)
   and, as for the other GEMMs, max|y - ref| <= TOL_F32 max|ref|. The reference itself is checked
   against the exact sum of the same products (double precision) under (C - 1) u sum|p|, and against
   the F32-activation product: their difference is the activation rounding, at most 2^-8 |x_c| per
   column (half a unit in the last place of an 8-bit significand), so |ref - ref_f32| <=
   2^-8 sum|x_c w_c| + 2 (C - 1) u sum|x_c w_c| (1.01 x the first term bounds both here). vdpbf16ps reads subnormal BF16 inputs as zero: the random inputs have none, and
   the rounding cases below keep away from them. */
static int within_sum_bound(const float *y, const double *bound, const float *ref, size_t n, double *worst) {
    int ok = 1;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)y[i] - ref[i]);
        ok &= isfinite(y[i]) && d <= bound[i];
        if (bound[i] > 0 && d / bound[i] > *worst) *worst = d / bound[i];
    }
    return ok;
}

static void test_matmul_bf16sp(int64_t T, int64_t rows, int64_t cols) {
    const size_t nw = (size_t)rows * cols;
    uint16_t *wd = malloc(nw * 2 + 2);
    for (size_t i = 0; i < nw; i++) wd[i] = plm_f32_to_bf16(2 * tu_uniform(&R) - 1);
    plm_mat W = {wd, PLM_DT_BF16, rows, cols, NULL};
    float *x = malloc((size_t)(T * cols + 1) * 4);
    fill(x, T * cols, -3, 3);
    const size_t n = (size_t)(T * rows);
    float *yr = gbuf(n), *yf = gbuf(n);
    double *sump = malloc(n * sizeof *sump + 8), *bound = malloc(n * sizeof *bound + 8),
           *bact = malloc(n * sizeof *bact + 8);
    float *exact = malloc(n * 4 + 4);
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = 0; r < rows; r++) {
            double e = 0, a = 0, af = 0;
            for (int64_t c = 0; c < cols; c++) {
                const double w = plm_bf16_to_f32(wd[r * cols + c]), xc = x[t * cols + c];
                const double p = (double)plm_bf16_to_f32(plm_f32_to_bf16(x[t * cols + c])) * w;
                e += p, a += fabs(p), af += fabs(xc * w);
            }
            const size_t i = (size_t)(t * rows + r);
            exact[i] = (float)e, sump[i] = a;
            bound[i] = 2.0 * (double)(cols > 1 ? cols - 1 : 1) * 0x1p-24 * a;
            bact[i] = 1.01 * 0x1p-8 * af;
        }
    plm_matmul_bf16sp_ref(yr, x, T, &W, 1);
    plm_matmul_ref(yf, x, T, &W, 1);
    char what[200];
    double worst;
    snprintf(what, sizeof what, "matmul bf16sp ref [%lld x %lld] x [%lld -> %lld]", (long long)T, (long long)cols,
             (long long)cols, (long long)rows);
    check_guard(yr, n, what);
    {
        int ok = 1;
        double w2 = 0;
        for (size_t i = 0; i < n; i++) {
            const double d = fabs((double)yr[i] - exact[i]) - 0x1p-24 * fabs(exact[i]); /* exact[] itself rounded */
            ok &= isfinite(yr[i]) && d <= bound[i] / 2;
            if (bound[i] > 0 && d / (bound[i] / 2) > w2) w2 = d / (bound[i] / 2);
        }
        tu_check(ok, "%s: against the exact sum of the same BF16 products, |diff| <= (C-1) u sum|p| (worst %.3f of "
                 "the bound)", what, w2);
    }
    const int act_ok = within_sum_bound(yr, bact, yf, n, &worst);
    tu_check(act_ok, "%s: against F32 activations, |diff| <= 2^-8 sum|x w| (activation rounding; worst %.3f of "
             "the bound)", what, worst);
    const struct { const char *n; int isa; void (*f)(float *, const float *, int64_t, const plm_mat *, int); } fs[] = {
        {"dpbf16", PLM_ISA_AVX512BF16, plm_matmul_bf16sp_dpbf16},
        {"avx2 (widened)", PLM_ISA_SCALAR, plm_matmul_bf16sp_avx2},
        {"avx2 (widened, invariant)", PLM_ISA_SCALAR, plm_matmul_bf16sp_avx2_inv}};
    for (int fi = 0; fi < 3; fi++) {
        if (!plm_isa_supported(fs[fi].isa)) {
            printf("skip: matmul bf16sp %s: this CPU cannot run it\n", fs[fi].n);
            continue;
        }
        for (int nth = 1; nth <= 2; nth++) {
            float *y = gbuf(n), *y2 = gbuf(n);
            fs[fi].f(y, x, T, &W, nth);
            fs[fi].f(y2, x, T, &W, nth);
            snprintf(what, sizeof what, "matmul bf16sp %s [%lld x %lld] x [%lld -> %lld], %d thr", fs[fi].n,
                     (long long)T, (long long)cols, (long long)cols, (long long)rows, nth);
            const int sum_ok = within_sum_bound(y, bound, yr, n, &worst);
            tu_check(sum_ok, "%s: |diff| <= 2 (C-1) u sum|p| element-wise (worst %.3f of the bound)", what, worst);
            check_close(y, yr, n, TOL_F32, what);
            check_guard(y, n, what);
            tu_check(!memcmp(y, y2, n * 4), "%s: bit-for-bit reproducible", what);
            free(y), free(y2);
        }
    }
    free(wd), free(x), free(yr), free(yf), free(sump), free(bound), free(bact), free(exact);
}

/* The activation rounding itself, bit for bit: cases whose products and sums are all exact (one weight
   1.0, the rest 0), so every variant must return bf16(x) exactly: ties to even both ways, values
   just above and below a tie, negative numbers, the largest finite values (rounding up to infinity),
   infinities, normal values near the smallest normal; a NaN input gives NaN. */
static void test_bf16sp_rounding(void) {
    static const uint32_t in[] = {
        0x3f808000u, /* 1 + 2^-8: a tie, to even (1.0) */
        0x3f818000u, /* 1 + 3 * 2^-8: a tie, to even (1 + 2^-6) */
        0x3f808001u, /* just above a tie: up */
        0x3f807fffu, /* just below a tie: down */
        0xbf818000u, /* negative tie */
        0x7f7fffffu, /* FLT_MAX: rounds to +inf */
        0xff7f8000u, /* -(largest tie): to even, -inf */
        0x7f7f7fffu, /* below that tie: largest finite BF16 */
        0x7f800000u, /* +inf */
        0xff800000u, /* -inf */
        0x00808000u, /* the smallest normal's neighbourhood, a tie */
        0x00818001u,
        0x42c80000u, /* 100 */
        0x80000000u, /* -0 */
        0x3eaaaaabu, /* 1/3 */
    };
    enum { N = sizeof in / sizeof in[0], C = 37 }; /* C: a partial block after one full one */
    static const uint16_t want[N] = {0x3f80, 0x3f82, 0x3f81, 0x3f80, 0xbf82, 0x7f80, 0xff80, 0x7f7f,
                                     0x7f80, 0xff80, 0x0080, 0x0082, 0x42c8, 0x8000, 0x3eab};
    for (int i = 0; i < N; i++) {
        float f;
        memcpy(&f, &in[i], 4);
        tu_check(plm_f32_to_bf16(f) == want[i], "bf16 rounding of 0x%08x: 0x%04x (want 0x%04x)", in[i],
                 plm_f32_to_bf16(f), want[i]);
    }
    /* through the kernels: x = [0 ... v at column j ... 0], the weight row has 1.0 at column j */
    const struct { const char *n; int isa; void (*f)(float *, const float *, int64_t, const plm_mat *, int); } fs[] = {
        {"ref", PLM_ISA_SCALAR, plm_matmul_bf16sp_ref},
        {"dpbf16", PLM_ISA_AVX512BF16, plm_matmul_bf16sp_dpbf16},
        {"avx2 (widened)", PLM_ISA_SCALAR, plm_matmul_bf16sp_avx2}};
    uint16_t w[3 * C];
    plm_mat W = {w, PLM_DT_BF16, 3, C, NULL};
    for (int fi = 0; fi < 3; fi++) {
        if (!plm_isa_supported(fs[fi].isa)) continue;
        int ok = 1;
        for (int j = 0; j < C; j += 5) { /* j in the full block and in the masked tail */
            memset(w, 0, sizeof w);
            w[0 * C + j] = 0x3f80;                     /* 1.0 */
            w[1 * C + j] = 0xbf80;                     /* -1.0 */
            w[2 * C + (j + 1) % C] = 0x3f80;           /* another column: 0 */
            float x[N * C + 1], y[N * 3 + GUARD];
            memset(x, 0, sizeof x);
            for (int i = 0; i < N; i++) memcpy(&x[i * C + j], &in[i], 4);
            fs[fi].f(y, x, N, &W, 1);
            for (int i = 0; i < N; i++) {
                const float v = plm_bf16_to_f32(want[i]);
                ok &= !memcmp(&y[i * 3], &v, 4) || (v == 0 && y[i * 3] == 0);
                ok &= y[i * 3 + 1] == -v;
                ok &= isinf(v) ? isnan(y[i * 3 + 2]) : y[i * 3 + 2] == 0; /* 0 x inf */
            }
        }
        tu_check(ok, "matmul bf16sp %s: the activations rounded to BF16 bit for bit (ties to even, overflow to "
                 "infinity), in the full block and in the tail", fs[fi].n);
        float xn[C], yn[3];
        for (int c = 0; c < C; c++) xn[c] = 0.5f;
        xn[3] = NAN;
        memset(w, 0, sizeof w);
        for (int c = 0; c < C; c++) w[c] = w[C + c] = w[2 * C + c] = 0x3f80;
        fs[fi].f(yn, xn, 1, &W, 1);
        tu_check(isnan(yn[0]) && isnan(yn[1]) && isnan(yn[2]), "matmul bf16sp %s: a NaN activation gives NaN",
                 fs[fi].n);
    }
}

/* ---------------------------------------------------------------- int8 matmul */
/* Tolerance rule for the int8 kernels: every block's int32 dot product is exact in all of them,
   so the fast variants differ from the reference only in the order of the float sum over blocks
   (one rounding each): TOL_Q8 * max|ref|, as for the f32 GEMM. The reference itself is checked
   against the f32 product of the dequantized weights and x: the activation rounding (at most
   d_x / 2 an element) bounds that difference, tested at TOL_Q8_ACT * max|ref|. With activations
   in two levels (x2) the rounding left is the second level's, d_x / 512 an element (d_x / 256 where
   the remainder is clamped to 127): TOL_Q8_ACT / 128. */
#define TOL_Q8 1e-5
#define TOL_Q8_ACT 3e-2
#define TOL_Q8X2_ACT (TOL_Q8_ACT / 128)
static void test_matmul_q8(int64_t T, int64_t rows, int64_t cols, float xspread) {
    const size_t nw = (size_t)rows * cols;
    float *wf = malloc(nw * 4 + 4);
    fill(wf, nw, -1, 1);
    if (nw > 40) wf[37] = 9.0f; /* an outlier: its block's scale, not the row's */
    plm_mat Wf = {wf, PLM_DT_F32, rows, cols, NULL};
    int8_t *q;
    uint16_t *d;
    if (!tu_check(plm_q8_quantize_mat(&q, &d, &Wf, 2) == PLM_OK, "quantize [%lld x %lld]", (long long)rows,
                  (long long)cols))
        return;
    plm_mat W = {q, PLM_DT_Q8, rows, cols, d};
    /* the quantized weights round-trip within half a step of their block */
    float *row = malloc((size_t)(cols + 1) * 4);
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        plm_mat_row(row, &W, r);
        for (int64_t c = 0; c < cols; c++) {
            double dq = plm_f16_to_f32(d[r * PLM_Q8_NB(cols) + c / 32]);
            double e = fabs(row[c] - wf[r * cols + c]) / (dq > 0 ? dq : 1);
            if (e > worst) worst = e;
        }
    }
    tu_check(worst <= 0.5 + 1e-3, "q8 [%lld x %lld]: |w - deq(q(w))| <= d/2 (worst %.3f d)", (long long)rows,
             (long long)cols, worst);
    float *x = malloc((size_t)(T * cols + 1) * 4);
    fill(x, T * cols, -xspread, xspread);
    float *yr = gbuf(T * rows), *yf = gbuf(T * rows);
    plm_matmul_q8_ref(yr, x, T, &W, 1);
    /* the f32 product with the dequantized weights: the reference differs by activation rounding only */
    float *wd = malloc(nw * 4 + 4);
    for (int64_t r = 0; r < rows; r++) plm_mat_row(wd + r * cols, &W, r);
    plm_mat Wd = {wd, PLM_DT_F32, rows, cols, NULL};
    plm_matmul_ref(yf, x, T, &Wd, 1);
    char what[160];
    snprintf(what, sizeof what, "matmul q8 ref [%lld x %lld] x [%lld -> %lld] vs f32 of dequantized weights",
             (long long)T, (long long)cols, (long long)cols, (long long)rows);
    check_close(yr, yf, T * rows, TOL_Q8_ACT, what);
    check_guard(yr, T * rows, what);
    /* two-level activations: each element within one second-level step, the product within TOL_Q8X2_ACT */
    float *yr2 = gbuf(T * rows);
    {
        int8_t *q1 = malloc((size_t)PLM_Q8_STRIDE(cols) + 1), *q2 = malloc((size_t)PLM_Q8_STRIDE(cols) + 1);
        float *df = malloc((size_t)(PLM_Q8_STRIDE(cols) / PLM_Q8_XG + 1) * 4);
        double worst1 = 0, worst2 = 0;
        for (int64_t t = 0; t < T; t++) {
            plm_q8_quantize_act(q1, NULL, df, x + t * cols, cols);
            for (int64_t c = 0; c < cols; c++) {
                const double f = df[c / PLM_Q8_XG], e = fabs(x[t * cols + c] - f * q1[c]);
                if (f > 0 && e / f > worst1) worst1 = e / f;
            }
            plm_q8_quantize_act(q1, q2, df, x + t * cols, cols);
            for (int64_t c = 0; c < cols; c++) {
                const double f = df[c / PLM_Q8_XG], e = fabs(x[t * cols + c] - f * (256.0 * q1[c] + q2[c]));
                if (f > 0 && e / f > worst2) worst2 = e / f;
            }
        }
        tu_check(worst1 <= 0.5 + 1e-3, "q8 activations [%lld x %lld]: |x - d q| <= d/2 (worst %.3f d)", (long long)T,
                 (long long)cols, worst1);
        tu_check(worst2 <= 1.0 + 1e-3, "q8x2 activations [%lld x %lld]: |x - df (256 q1 + q2)| <= df (worst %.3f df)",
                 (long long)T, (long long)cols, worst2);
        free(q1), free(q2), free(df);
        plm_matmul_q8x2_ref(yr2, x, T, &W, 1);
        snprintf(what, sizeof what, "matmul q8x2 ref [%lld x %lld] x [%lld -> %lld] vs f32 of dequantized weights",
                 (long long)T, (long long)cols, (long long)cols, (long long)rows);
        check_close(yr2, yf, T * rows, TOL_Q8X2_ACT, what);
        check_guard(yr2, T * rows, what);
    }
    const struct {
        const char *n;
        int isa;
        void (*f)(float *, const float *, int64_t, const plm_mat *, int);
        const float *ref;
    } fs[] = {{"q8 avx2", PLM_ISA_AVX2, plm_matmul_q8_avx2, yr},
              {"q8 avx512vnni", PLM_ISA_AVX512VNNI, plm_matmul_q8_vnni, yr},
              {"q8x2 avx2", PLM_ISA_AVX2, plm_matmul_q8x2_avx2, yr2},
              {"q8x2 avx512vnni", PLM_ISA_AVX512VNNI, plm_matmul_q8x2_vnni, yr2}};
    for (int fi = 0; fi < 4; fi++) {
        if (!plm_isa_supported(fs[fi].isa)) {
            printf("skip: matmul %s: this CPU cannot run it\n", fs[fi].n);
            continue;
        }
        for (int nth = 1; nth <= 2; nth++) {
            float *y = gbuf(T * rows), *y2 = gbuf(T * rows);
            fs[fi].f(y, x, T, &W, nth);
            fs[fi].f(y2, x, T, &W, nth);
            snprintf(what, sizeof what, "matmul %s [%lld x %lld] x [%lld -> %lld], %d thr", fs[fi].n,
                     (long long)T, (long long)cols, (long long)cols, (long long)rows, nth);
            check_close(y, fs[fi].ref, T * rows, TOL_Q8, what);
            check_guard(y, T * rows, what);
            tu_check(!memcmp(y, y2, T * rows * 4), "%s: bit-for-bit reproducible", what);
            free(y), free(y2);
        }
    }
    free(wf), free(q), free(d), free(row), free(x), free(yr), free(yr2), free(yf), free(wd);
}

/* the dispatch table picks the widest int8 path the CPU has, and PLM_ISA narrows it */
static void test_isa_switch(void) {
    const char *old = getenv("PLM_ISA");
    char *saved = old ? strdup(old) : NULL;
    plm_kernels k;
    unsetenv("PLM_ISA");
    plm_kernels_init(&k, 0, 0, 0);
    int best = k.isa;
    printf("int8 kernels: this CPU runs %s (avx2 %s, avx512vnni %s)\n", plm_isa_name(best),
           plm_isa_supported(PLM_ISA_AVX2) ? "yes" : "no", plm_isa_supported(PLM_ISA_AVX512VNNI) ? "yes" : "no");
    tu_check(plm_isa_supported(best), "the chosen int8 path is supported");
    setenv("PLM_ISA", "avx2", 1);
    plm_kernels_init(&k, 0, 0, 0);
    tu_check(k.isa == (best < PLM_ISA_AVX2 ? best : PLM_ISA_AVX2), "PLM_ISA=avx2 narrows the int8 path (%s)",
             plm_isa_name(k.isa));
    setenv("PLM_ISA", "scalar", 1);
    plm_kernels_init(&k, 0, 0, 0);
    tu_check(k.isa == PLM_ISA_SCALAR && k.matmul_q8 == plm_matmul_q8_ref, "PLM_ISA=scalar: the reference");
    plm_kernels_init(&k, 0, 0, 1);
    tu_check(k.isa_bf16 == PLM_ISA_SCALAR && k.matmul_bf16 == plm_matmul_bf16sp_ref,
             "PLM_ISA=scalar: the single-pass BF16 reference");
    plm_kernels_init(&k, 0, 0, 0);
    tu_check(k.isa_bf16 == PLM_ISA_SCALAR && k.matmul_bf16 == plm_matmul_ref,
             "PLM_ISA=scalar: the BF16 reference (F32 activations)");
    plm_kernels_init(&k, 0, 1, 0);
    tu_check(k.isa_bf16 == PLM_ISA_SCALAR && k.matmul_bf16 == plm_matmul_ref,
             "PLM_ISA=scalar, batch-invariant: the BF16 reference (one order per row)");
    plm_kernels_init(&k, 1, 0, 0);
    tu_check(k.matmul_q8 == plm_matmul_q8_ref, "reference table: the int8 reference");
    tu_check(k.matmul_bf16 == plm_matmul_ref && k.isa_bf16 == PLM_ISA_SCALAR, "reference table: the BF16 reference");
    plm_kernels_init(&k, 1, 0, 1);
    tu_check(k.matmul_bf16 == plm_matmul_bf16sp_ref, "reference table, single pass: the single-pass reference");
    setenv("PLM_ISA", "avx2", 1);
    plm_kernels_init(&k, 0, 0, 1);
    tu_check(k.isa_bf16 == PLM_ISA_AVX2 && k.matmul_bf16 == plm_matmul_bf16sp_avx2,
             "PLM_ISA=avx2: single-pass BF16 through widened activations");
    plm_kernels_init(&k, 0, 1, 1);
    tu_check(k.matmul_bf16 == plm_matmul_bf16sp_avx2_inv && k.matmul == plm_matmul_invariant,
             "PLM_ISA=avx2, batch-invariant: widened activations through the invariant kernels");
    plm_kernels_init(&k, 0, 0, 0);
    tu_check(k.isa_bf16 == PLM_ISA_AVX2 && k.matmul_bf16 == plm_matmul_fast,
             "PLM_ISA=avx2: BF16 weights, F32 activations through the 256-bit kernels");
    unsetenv("PLM_ISA");
    plm_kernels_init(&k, 0, 0, 1);
    const int bf = plm_isa_supported(PLM_ISA_AVX512BF16);
    printf("single-pass BF16: this CPU runs %s (avx512bf16 %s)\n", plm_isa_name(k.isa_bf16), bf ? "yes" : "no");
    tu_check(bf ? k.matmul_bf16 == plm_matmul_bf16sp_dpbf16 && k.isa_bf16 == PLM_ISA_AVX512BF16
                : k.matmul_bf16 == plm_matmul_bf16sp_avx2 && k.isa_bf16 == PLM_ISA_AVX2,
             "single pass: vdpbf16ps where the CPU has it, else widened");
    tu_check(k.matmul == plm_matmul_fast, "single pass: F32 / F16 weights keep the F32 kernels");
    plm_kernels_init(&k, 0, 0, 0);
    const int a512 = plm_isa_supported(PLM_ISA_AVX512);
    printf("BF16 weights, F32 activations: this CPU runs %s (avx512 %s)\n", plm_isa_name(k.isa_bf16),
           a512 ? "yes" : "no");
    tu_check(a512 ? k.matmul_bf16 == plm_matmul_fast_avx512 && k.isa_bf16 == PLM_ISA_AVX512
                  : k.matmul_bf16 == plm_matmul_fast && k.isa_bf16 == PLM_ISA_AVX2,
             "default: BF16 weights, F32 activations through the 512-bit GEMM where the CPU has AVX-512");
    tu_check(k.matmul == plm_matmul_fast, "default: F32 / F16 weights through plm_matmul_fast");
    plm_kernels_init(&k, 0, 1, 0);
    tu_check(k.matmul_bf16 == plm_matmul_invariant && k.matmul == plm_matmul_invariant && k.isa_bf16 == PLM_ISA_AVX2,
             "batch-invariant: every dtype through the invariant kernels");
    if (saved) setenv("PLM_ISA", saved, 1);
    else unsetenv("PLM_ISA");
    free(saved);
}

/* ---------------------------------------------------------------- exp and row ops */
static void test_exp(void) {
    double worst = 0, worst8 = 0;
    int specials = 1;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000.0f;
        double e = exp((double)x);
        float lanes[8], xs[8];
        for (int l = 0; l < 8; l++) xs[l] = x;
        plm_v8_store(lanes, plm_v8_exp(plm_v8_load(xs)));
        double r1 = fabs(plm_expf_fast(x) - e) / e, r8 = fabs(lanes[3] - e) / e;
        tu_worst(&worst, r1);
        tu_worst(&worst8, r8);
    }
    const float sx[8] = {-INFINITY, INFINITY, NAN, 100.0f, -200.0f, 0.0f, -0.0f, 1.0f};
    float sy[8];
    plm_v8_store(sy, plm_v8_exp(plm_v8_load(sx)));
    for (int l = 0; l < 8; l++) {
        float a = plm_expf_fast(sx[l]), b = sy[l], e = expf(sx[l]);
        int ok = (isnan(e) && isnan(a) && isnan(b)) || (a == e && b == e) || (fabsf(a - e) <= 1e-6f * e && fabsf(b - e) <= 1e-6f * e);
        specials &= ok;
    }
    tu_check(worst <= TOL_EXP && worst8 <= TOL_EXP, "exp fast: worst relative error %.2e scalar, %.2e 8-lane (bound %.0e)",
             worst, worst8, TOL_EXP);
    tu_check(specials, "exp fast: -inf -> 0, inf -> inf, NaN -> NaN, overflow -> inf, underflow -> 0, exp(0) = 1");
}

/* ---------------------------------------------------------------- rotary embedding
 * The reference follows transformers' Qwen3.5 text rotary embedding (Qwen3_5TextRotaryEmbedding,
 * apply_interleaved_mrope, apply_rotary_pos_emb, rotate_half), written here from those formulas in
 * float32 as torch computes them, not from packlm's kernel:
 *   dim      = int(head_dim * partial_rotary_factor)
 *   inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))      ceil(dim/2) entries
 *   freqs[s, t, j] = inv_freq[j] * position_ids[s, t]     three streams s = T, H, W (M-RoPE); for
 *                    text, 2-D position ids are expanded to the three streams unchanged
 *   apply_interleaved_mrope: freqs_t = freqs[0]; for s in (1, 2):
 *                    idx = slice(s, mrope_section[s] * 3, 3); freqs_t[..., idx] = freqs[s][..., idx]
 *   emb = cat(freqs_t, freqs_t); cos = emb.cos(); sin = emb.sin()
 *   rotary_dim = cos.shape[-1]; q_rot, q_pass = q[..., :rotary_dim], q[..., rotary_dim:]
 *   q_embed = cat(q_rot * cos + rotate_half(q_rot) * sin, q_pass);  rotate_half(x) = cat(-x2, x1)
 * With the three streams equal (text), the interleaving picks the same value everywhere, so M-RoPE
 * is the plain rotary: the test runs the reference through it and expects plm_rope exactly. */
static void rope_reference(float *out, const float *x, const int64_t *pos3[3], int64_t T, int nh, int hd, double f,
                           float base, const int section[3]) {
    const int dim = (int)(hd * f);
    int nf = 0;
    float inv_freq[512];
    for (int j = 0; j < dim; j += 2) inv_freq[nf++] = 1.0f / powf(base, (float)j / (float)dim);
    const int rotary_dim = 2 * nf; /* cos.shape[-1] */
    float freqs[3][512], emb[1024];
    for (int64_t t = 0; t < T; t++) {
        for (int s = 0; s < 3; s++)
            for (int j = 0; j < nf; j++) freqs[s][j] = inv_freq[j] * (float)pos3[s][t];
        for (int s = 1; s <= 2; s++) /* apply_interleaved_mrope */
            for (int j = s; j < section[s] * 3 && j < nf; j += 3) freqs[0][j] = freqs[s][j];
        for (int j = 0; j < nf; j++) emb[j] = emb[j + nf] = freqs[0][j];
        for (int h = 0; h < nh; h++) {
            const float *q = x + (t * nh + h) * hd;
            float *o = out + (t * nh + h) * hd;
            for (int i = 0; i < rotary_dim; i++) {
                const float rh = i < nf ? -q[i + nf] : q[i - nf]; /* rotate_half(q_rot)[i] */
                o[i] = q[i] * cosf(emb[i]) + rh * sinf(emb[i]);
            }
            for (int i = rotary_dim; i < hd; i++) o[i] = q[i]; /* q_pass */
        }
    }
}

static void test_rope(int64_t T, int nh, int hd, double f, float base) {
    const size_t N = (size_t)T * nh * hd;
    const int dim = (int)(hd * f);
    float *x = malloc(N * 4), *ref = malloc(N * 4), *y = gbuf(N);
    int64_t *pos = malloc(T * 8), *pos1 = malloc(T * 8), *pos2 = malloc(T * 8);
    fill(x, N, -1, 1);
    for (int64_t t = 0; t < T; t++) pos[t] = t < 3 ? t : tu_randint(&R, 0, 5000);
    const int64_t *text[3] = {pos, pos, pos};
    static const int qwen_section[3] = {11, 11, 10}, small_section[3] = {2, 2, 1};
    char what[160];
    memcpy(y, x, N * 4);
    plm_rope(y, pos, T, nh, hd, dim, base);
    rope_reference(ref, x, text, T, nh, hd, f, base, qwen_section);
    snprintf(what, sizeof what, "rope hd %d, factor %g: dim %d (%d channels turn), theta %g, vs transformers", hd, f,
             dim, 2 * ((dim + 1) / 2), base);
    check_close(y, ref, N, TOL_F32, what);
    check_guard(y, N, what);
    /* M-RoPE of text positions: the same streams three times, sections that interleave inside nf */
    rope_reference(ref, x, text, T, nh, hd, f, base, small_section);
    snprintf(what, sizeof what, "rope hd %d dim %d: interleaved M-RoPE [2, 2, 1] with equal streams = plain", hd, dim);
    check_close(y, ref, N, TOL_F32, what);
    if (dim >= 4) { /* ... and the reference's M-RoPE is live: distinct streams give other values */
        for (int64_t t = 0; t < T; t++) pos1[t] = pos[t] + 7, pos2[t] = pos[t] + 13;
        const int64_t *img[3] = {pos, pos1, pos2};
        rope_reference(ref, x, img, T, nh, hd, f, base, small_section);
        const double r = tu_rel_err(y, ref, N);
        tu_check(r > 1e-3, "rope hd %d dim %d: distinct M-RoPE streams differ (%.2e)", hd, dim, r);
    }
    free(x), free(ref), free(y), free(pos), free(pos1), free(pos2);
}

/* ---------------------------------------------------------------- row ops */
static void test_rowops(int rows, int n) {
    const size_t N = (size_t)rows * n;
    float *x = malloc(N * 4), *z = malloc(N * 4), *w = malloc(n * 4), *ref = malloc(N * 4);
    fill(x, N, -3, 3);
    fill(z, N, -12, 12);
    fill(w, n, -1, 1);
    char what[128];
    float *y = gbuf(N);
    plm_rmsnorm_zc(y, x, w, rows, n, 1e-6f);
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i];
        double k = 1.0 / sqrt(ss / n + 1e-6);
        for (int i = 0; i < n; i++) ref[r * n + i] = (float)(x[r * n + i] * k * (1.0 + w[i]));
    }
    snprintf(what, sizeof what, "rmsnorm_zc [%d, %d]", rows, n);
    check_close(y, ref, N, TOL_F32, what);
    check_guard(y, N, what);
    tu_poison(y, N);
    plm_rmsnorm_gated(y, x, z, w, rows, n, 1e-6f);
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i];
        double k = 1.0 / sqrt(ss / n + 1e-6);
        for (int i = 0; i < n; i++) {
            double zz = z[r * n + i];
            ref[r * n + i] = (float)(w[i] * x[r * n + i] * k * zz / (1.0 + exp(-zz)));
        }
    }
    snprintf(what, sizeof what, "rmsnorm_gated [%d, %d]", rows, n);
    check_close(y, ref, N, TOL_F32, what);
    check_guard(y, N, what);
    memcpy(y, z, N * 4);
    plm_swiglu(y, x, (int64_t)N);
    for (size_t i = 0; i < N; i++) ref[i] = (float)((double)z[i] / (1.0 + exp(-(double)z[i])) * x[i]);
    snprintf(what, sizeof what, "swiglu [%zu]", N);
    check_close(y, ref, N, TOL_F32, what);
    check_guard(y, N, what);
    memcpy(y, x, N * 4);
    plm_l2norm_rows(y, rows, n, 0.25f);
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i];
        for (int i = 0; i < n; i++) ref[r * n + i] = (float)(x[r * n + i] * 0.25 / sqrt(ss + 1e-6));
    }
    snprintf(what, sizeof what, "l2norm_rows [%d, %d]", rows, n);
    check_close(y, ref, N, TOL_F32, what);
    check_guard(y, N, what);
    free(x), free(z), free(w), free(ref), free(y);
}

/* ---------------------------------------------------------------- log-probabilities (scoring) */
static void test_logprob(int n, int V, float spread) {
    float *l = malloc((size_t)n * V * 4), *lr = gbuf(n), *lf = gbuf(n), *lf2 = gbuf(n);
    int32_t *tg = malloc(n * sizeof *tg);
    fill(l, (size_t)n * V, -spread, spread);
    for (int i = 0; i < n; i++) tg[i] = (int32_t)(tu_next(&R) % (uint64_t)V);
    plm_logprob_ref(lr, l, tg, n, V, 1);
    for (int nth = 1; nth <= 2; nth++) {
        char what[128];
        snprintf(what, sizeof what, "logprob fast, %d rows of %d logits (spread %g), %d thr", n, V, spread, nth);
        tu_poison(lf, n);
        tu_poison(lf2, n);
        plm_logprob_fast(lf, l, tg, n, V, nth);
        plm_logprob_fast(lf2, l, tg, n, V, nth);
        check_close(lf, lr, n, TOL_F32, what);
        check_guard(lf, n, what);
        tu_check(!memcmp(lf, lf2, n * 4), "%s: bit-for-bit reproducible", what);
    }
    free(l), free(lr), free(lf), free(lf2), free(tg);
}

/* logits far apart (a spread of 2000: exp of the raw differences overflows even a double): both
 * kernels against log-softmax computed here with the maximum subtracted, in double */
static void test_logprob_extreme(void) {
    enum { N = 6, V = 1029 };
    float *l = malloc((size_t)N * V * 4), *lr = gbuf(N), *lf = gbuf(N), want[N];
    int32_t tg[N];
    for (int i = 0; i < N; i++) {
        float *row = l + (size_t)i * V;
        fill(row, V, -1000, 1000);
        row[(i * 131) % V] = 1000.0f + (float)i; /* a clear maximum, somewhere */
        tg[i] = i % 2 ? (i * 131) % V : (int32_t)(tu_next(&R) % V);
        double mx = row[0], z = 0;
        for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++) z += exp((double)row[v] - mx);
        want[i] = (float)((double)row[tg[i]] - mx - log(z));
    }
    plm_logprob_ref(lr, l, tg, N, V, 1);
    plm_logprob_fast(lf, l, tg, N, V, 2);
    check_close(lr, want, N, TOL_F32, "logprob reference, logits spread over 2000: against log-softmax in double");
    check_close(lf, want, N, TOL_F32, "logprob fast, logits spread over 2000: against log-softmax in double");
    free(l), free(lr), free(lf);
}

int main(void) {
    comparator_selftest();
    test_exp();
    test_rowops(3, 1027);
    test_rowops(5, 128);
    test_rowops(1, 7);
    /* rotary: odd and even rotary dims, odd head dims, the model's 256 x 0.25 */
    test_rope(37, 3, 7, 0.75, 1e7f);   /* dim 5: 6 channels turn, 1 passes */
    test_rope(20, 2, 10, 0.3, 1e4f);   /* 10 * 0.3 = 3.0000000000000004: dim 3 */
    test_rope(20, 4, 6, 0.5, 1e6f);    /* dim 3 */
    test_rope(9, 1, 5, 0.25, 1e4f);    /* dim 1: one frequency (1), 2 channels */
    test_rope(16, 3, 9, 1.0 / 3, 1e7f);/* dim 2 (9 / 3 = 2.9999...) */
    test_rope(11, 2, 18, 1.0, 1e4f);   /* fully rotary, even */
    test_rope(40, 2, 256, 0.25, 1e7f); /* Qwen3.5: dim 64 */
    test_rope(5, 2, 2, 0.25, 1e4f);    /* dim 0: nothing turns */
    /* delta rule: edge lengths, many segments, n_v = 2 n_k, d_k != d_v, and the model's 128 x 128 */
    const int l1[] = {1}, l63[] = {63}, l64[] = {64}, l65[] = {65}, llong[] = {200, 300};
    const int many[] = {1, 63, 64, 65, 2, 7, 1, 128, 129, 9, 1, 33};
    test_gdn("len 1", l1, 1, 2, 4, 16, 24);
    test_gdn("len 63", l63, 1, 2, 4, 16, 24);
    test_gdn("len 64", l64, 1, 2, 4, 16, 24);
    test_gdn("len 65", l65, 1, 2, 4, 32, 16);
    test_gdn("long", llong, 2, 1, 2, 24, 40);
    test_gdn("many", many, 12, 2, 4, 16, 24);
    test_gdn("model heads", l65, 1, 1, 2, 128, 128);
    test_gdn_cases();
    test_gdn_stateless(many, 12, 2, 4, 16, 24);
    test_gdn_stateless(llong, 2, 1, 2, 24, 40);
    test_gdn_stateless(l65, 1, 1, 2, 128, 128);
    /* conv: segments shorter than the kernel's history, channel counts off the block size */
    const int cl[] = {1, 2, 3, 64, 65, 1, 5};
    test_conv(cl, 7, 300, 4);
    test_conv(l63, 1, 513, 4);
    test_conv(cl, 7, 17, 2);
    const int cbig[] = {1, 300, 2, 65}; /* large enough to run threaded (PLM_PAR_MIN_WORK) */
    test_conv(cbig, 4, 1000, 4);
    /* attention: cached prefixes, decode rows, query blocks crossing key blocks, GQA */
    const int al[] = {1, 33, 64, 65, 130, 1}, as[] = {0, 5, 0, 64, 3, 200};
    test_attn(al, as, 6, 4, 2, 40);
    test_attn(l1, as + 5, 1, 8, 2, 256);
    test_attn(l65, as + 4, 1, 8, 2, 256);
    /* matmul: decode sizes (GEMV), tails, F16, F32 */
    const int64_t Ts[] = {1, 2, 3, 4, 5, 64};
    for (int i = 0; i < 6; i++) test_matmul(PLM_DT_BF16, Ts[i], 300, 203);
    test_matmul(PLM_DT_BF16, 7, 40, 1024);
    test_matmul(PLM_DT_BF16, 1, 2050, 264); /* threaded GEMV */
    test_matmul(PLM_DT_BF16, 3, 1500, 203);
    test_matmul(PLM_DT_BF16, 33, 700, 100); /* direct BF16 GEMM: row/column tails, 4-row groups */
    test_matmul(PLM_DT_BF16, 30, 1001, 160);
    test_matmul(PLM_DT_F16, 3, 50, 77);
    test_matmul(PLM_DT_F16, 9, 50, 77);
    test_matmul(PLM_DT_F32, 9, 50, 77);
    test_matmul(PLM_DT_F32, 1, 1030, 259); /* the direct F32 kernel: decode, threaded, column tails */
    test_matmul(PLM_DT_F32, 17, 301, 203);
    test_matmul(PLM_DT_F16, 1, 1030, 259);
    test_matmul(PLM_DT_F16, 17, 301, 203);
    /* batch invariance: a row alone, in a batch, at another place */
    const int64_t Ti[] = {1, 5, 16, 17, 70};
    for (int i = 0; i < 5; i++) {
        test_matmul_invariant(PLM_DT_F32, Ti[i], 301, 203);
        test_matmul_invariant(PLM_DT_F16, Ti[i], 301, 203);
        test_matmul_invariant(PLM_DT_BF16, Ti[i], 301, 203);
    }
    test_matmul_invariant(PLM_DT_F32, 9, 1200, 1024);
    test_matmul_invariant(PLM_DT_BF16, 9, 1200, 1040);
    /* the 512-bit BF16 GEMM: x rows 1-5, 7, 8, 15-17, 31, 32 (groups of 4 with tails), weight rows off
       the 4-row register block, columns below one block, odd, one, two and more full blocks with and
       without a tail, at every offset of the weights (test_matmul_bf16_avx512); threaded sizes */
    if (!plm_isa_supported(PLM_ISA_AVX512)) printf("skip: matmul bf16 avx512: this CPU cannot run it\n");
    const int64_t Ta[] = {1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32};
    const int64_t Ra[] = {1, 3, 4, 5, 7, 301};
    const int64_t Ca[] = {1, 15, 16, 31, 32, 33, 64, 77, 96, 203, 1024};
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 6; j++) test_matmul_bf16_avx512(Ta[i], Ra[j], Ca[(i + j) % 11]);
    for (int c = 0; c < 11; c++) test_matmul_bf16_avx512(5, 9, Ca[c]);
    test_matmul_bf16_avx512(16, 1030, 1024); /* the model's rows, threaded */
    test_matmul_bf16_avx512(16, 130, 3584);
    test_matmul_bf16_avx512(32, 77, 2048);
    /* single-pass BF16: decode rows 1 and 15-17 (a 16-sequence step), 4-row groups with tails, columns
       of 1, 31, 32, 33 (the masked block) and odd, weight rows 1, 7, 15, 16, 17 (register-block tails),
       threaded sizes, the model's 1024 and 3584 */
    test_bf16sp_rounding();
    const int64_t Tb[] = {1, 2, 3, 4, 5, 15, 16, 17, 33, 64};
    const int64_t Rb[] = {1, 7, 15, 16, 17, 300};
    const int64_t Cb[] = {1, 31, 32, 33, 203};
    for (int i = 0; i < 10; i++)
        for (int j = 0; j < 6; j++) test_matmul_bf16sp(Tb[i], Rb[j], Cb[(i + j) % 5]);
    for (int c = 0; c < 5; c++) test_matmul_bf16sp(16, 17, Cb[c]);
    test_matmul_bf16sp(1, 2050, 264);  /* threaded decode */
    test_matmul_bf16sp(16, 1030, 1024);
    test_matmul_bf16sp(3, 130, 3584);
    test_matmul_bf16sp(70, 301, 1025);
    /* int8: decode (1 row: 4-row weight groups, threaded over rows), 2..5 rows (x groups of 4 with
       tails), a prompt chunk; columns of 1 block, odd block counts (the VNNI single-block tail),
       partial last blocks (zero padding), the model's 1024 and 3584 */
    test_isa_switch();
    const int64_t Tq[] = {1, 2, 3, 4, 5, 9, 64};
    for (int i = 0; i < 7; i++) test_matmul_q8(Tq[i], 301, 203, 1);
    test_matmul_q8(1, 7, 32, 1);
    test_matmul_q8(3, 5, 96, 1);
    test_matmul_q8(1, 2050, 264, 1);   /* threaded GEMV */
    test_matmul_q8(1, 1027, 1024, 4);
    test_matmul_q8(6, 130, 3584, 1);
    test_matmul_q8(1, 67, 650, 1);     /* decode: 21 blocks, a full and a partial group of 16 and an odd one */
    test_matmul_q8(1, 5, 3584, 1);
    test_matmul_q8(33, 700, 100, 1);
    test_matmul_q8(1, 3, 48, 100);
    test_matmul_q8(2, 1, 1, 1);
    test_logprob(3, 7, 5);        /* shorter than one vector */
    test_logprob(5, 1027, 30);    /* tails */
    test_logprob(40, 248320, 20); /* the Qwen3.5 vocabulary, threaded */
    test_logprob_extreme();
    return tu_finish("test_kernels");
}
