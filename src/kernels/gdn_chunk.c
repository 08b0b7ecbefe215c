/* Gated delta rule, chunked (UT / WY representation, chunk PLM_GDN_CHUNK), over packed segments.
 * Chunks never cross a segment boundary; a segment's last chunk may be short. Per chunk of L
 * tokens with inclusive cumulative log decay c_i and state S [dk, dv] from before the chunk:
 *   A[i][j]  = beta_i (k_i . k_j) exp(c_i - c_j)              j < i  (strictly lower)
 *   [W | U] = (I + A)^-1 [beta k exp(c) | beta v]             inverse by forward substitution
 *   V' = U - W S                                              (the new values)
 *   O  = (q exp(c)) S + ((q k^T) * exp(c_i - c_j), j <= i) V'
 *   S  = exp(c_L) S + (k exp(c_L - c))^T V'
 * the same recursion as the recurrent form, with the work in small GEMMs. Threaded over
 * (segment, value head) pairs; segments of at most PLM_GDN_RECURRENT_MAX tokens use the
 * recurrent form (cheaper for decode). A segment without a state (S[s] NULL) runs on one state of
 * its thread, zeroed first (the recurrent form starts without reading it) and discarded after. */
#pragma GCC optimize("fp-contract=fast")
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fast.h"
#include "kernels/simd.h"

enum { CH = PLM_GDN_CHUNK };

typedef struct {
    float *KQ;  /* [2L, dk]: rows 0..L-1 keys, L..2L-1 queries */
    float *Kt;  /* [dk, L] keys transposed, then (k exp(c_L - c))^T */
    float *G;   /* [2L, L] = KQ . Kt: k.k and q.k */
    float *B;   /* [L, dk + dv]: right-hand sides [beta k exp(c) | beta v] */
    float *R;   /* [L, dk + dv]: [W | U], then U becomes V' */
    float *X;   /* [L, L] (I + A)^-1, then the decay-masked causal q.k */
    float *Qe;  /* [L, dk] q exp(c) */
    float *O;   /* [L, dv] */
    float *gc;  /* [L] */
    float *dec; /* [L] */
} chunk_ws;

static float *ws_alloc(chunk_ws *w, int dk, int dv) {
    const size_t sizes[10] = {(size_t)2 * CH * dk, (size_t)dk * CH, 2 * CH * CH, (size_t)CH * (dk + dv),
                              (size_t)CH * (dk + dv), CH * CH, (size_t)CH * dk, (size_t)CH * dv, CH, CH};
    size_t n = 0;
    for (int i = 0; i < 10; i++) n += (sizes[i] + 15) & ~(size_t)15;
    float *base = aligned_alloc(64, n * sizeof(float)), *p = base;
    if (!base) return NULL;
    float **dst[10] = {&w->KQ, &w->Kt, &w->G, &w->B, &w->R, &w->X, &w->Qe, &w->O, &w->gc, &w->dec};
    for (int i = 0; i < 10; i++) *dst[i] = p, p += (sizes[i] + 15) & ~(size_t)15;
    return base;
}

/* row[j] = scale * exp(c_i - c_j) * g[j] for j < n (vectorised exp) */
static inline void decay_row(float *row, const float *g, const float *gc, float ci, float scale, int n) {
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        plm_v8 e = plm_v8_exp(ci - plm_v8_load(gc + j));
        plm_v8_store(row + j, scale * e * plm_v8_load(g + j));
    }
    for (; j < n; j++) row[j] = scale * plm_expf_fast(ci - gc[j]) * g[j];
}

static void chunk_pair(const chunk_ws *w, float *o, float *S, const float *q, const float *k, const float *v,
                       const float *g, const float *beta, int64_t t0, int64_t t1, int kh, int h, int nk, int nv,
                       int dk, int dv) {
    const int ldr = dk + dv;
    float *KQ = w->KQ, *Kt = w->Kt, *G = w->G, *B = w->B, *R = w->R, *X = w->X, *Qe = w->Qe, *O = w->O;
    float *gc = w->gc, *dec = w->dec;
    for (int64_t c0 = t0; c0 < t1; c0 += CH) {
        const int L = (int)(t1 - c0 < CH ? t1 - c0 : CH);
        float acc = 0.0f;
        for (int i = 0; i < L; i++) gc[i] = acc += g[(c0 + i) * nv + h];
        for (int i = 0; i < L; i++) { /* gather the chunk's rows */
            const float *kr = k + ((c0 + i) * nk + kh) * dk, *qr = q + ((c0 + i) * nk + kh) * dk;
            const float *vr = v + ((c0 + i) * nv + h) * dv;
            const float b = beta[(c0 + i) * nv + h], e = expf(gc[i]), be = b * e;
            float *Kr = KQ + (size_t)i * dk, *Qr = KQ + (size_t)(L + i) * dk, *Qer = Qe + (size_t)i * dk;
            float *Br = B + (size_t)i * ldr;
#pragma omp simd
            for (int d = 0; d < dk; d++) {
                Kr[d] = kr[d];
                Qr[d] = qr[d];
                Qer[d] = qr[d] * e;
                Br[d] = kr[d] * be;
            }
#pragma omp simd
            for (int d = 0; d < dv; d++) Br[dk + d] = vr[d] * b;
        }
        for (int i = 0; i < L; i++)
            for (int d = 0; d < dk; d++) Kt[(size_t)d * L + i] = KQ[(size_t)i * dk + d];
        plm_gemm_f32(G, L, KQ, dk, Kt, L, 2 * L, L, dk, 1.0f, 0); /* k.k and q.k */
        /* X = (I + A)^-1, A[i][j] = beta_i (k_i.k_j) exp(c_i - c_j) (j < i): X_i = e_i - sum_m A_im X_m */
        for (int i = 0; i < L; i++) {
            float *Xi = X + (size_t)i * L, arow[CH];
            decay_row(arow, G + (size_t)i * L, gc, gc[i], beta[(c0 + i) * nv + h], i);
            for (int j = 0; j < L; j++) Xi[j] = j == i ? 1.0f : 0.0f;
            for (int m = 0; m < i; m++) {
                const float a = arow[m];
                const float *Xm = X + (size_t)m * L;
#pragma omp simd
                for (int j = 0; j <= m; j++) Xi[j] -= a * Xm[j];
            }
        }
        /* [W | U] = X B, row blocks of 4 stop at the diagonal */
        for (int i0 = 0; i0 < L; i0 += 4) {
            const int mr = L - i0 < 4 ? L - i0 : 4;
            plm_gemm_f32(R + (size_t)i0 * ldr, ldr, X + (size_t)i0 * L, L, B, ldr, mr, ldr, i0 + mr, 1.0f, 0);
        }
        /* V' = U - W S (in R's U columns) */
        plm_gemm_f32(R + dk, ldr, R, ldr, S, dv, L, dv, dk, -1.0f, 1);
        /* O = Qe S + P V', P = (q.k) exp(c_i - c_j) for j <= i (into X) */
        plm_gemm_f32(O, dv, Qe, dk, S, dv, L, dv, dk, 1.0f, 0);
        for (int i = 0; i < L; i++) {
            float *Pi = X + (size_t)i * L;
            decay_row(Pi, G + (size_t)(L + i) * L, gc, gc[i], 1.0f, i + 1);
            for (int j = i + 1; j < L; j++) Pi[j] = 0.0f;
        }
        for (int i0 = 0; i0 < L; i0 += 4) {
            const int mr = L - i0 < 4 ? L - i0 : 4;
            plm_gemm_f32(O + (size_t)i0 * dv, dv, X + (size_t)i0 * L, L, R + dk, ldr, mr, dv, i0 + mr, 1.0f, 1);
        }
        for (int i = 0; i < L; i++) {
            float *op = o + ((c0 + i) * nv + h) * dv;
            memcpy(op, O + (size_t)i * dv, (size_t)dv * sizeof(float));
        }
        /* S = exp(c_L) S + (k exp(c_L - c))^T V' */
        const float gl = gc[L - 1], el = expf(gl);
        for (int i = 0; i < L; i++) dec[i] = expf(gl - gc[i]);
        for (int d = 0; d < dk; d++) {
            float *kt = Kt + (size_t)d * L;
#pragma omp simd
            for (int i = 0; i < L; i++) kt[i] *= dec[i];
        }
#pragma omp simd
        for (size_t e = 0; e < (size_t)dk * dv; e++) S[e] *= el;
        plm_gemm_f32(S, dv, Kt, L, R + dk, ldr, dk, dv, L, 1.0f, 1);
    }
}

static void gdn_driver(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                       const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv,
                       int n_threads, int rec_max) {
    const int rep = nv / nk;
    const int64_t n_pairs = (int64_t)n_seg * nv;
#pragma omp parallel num_threads(plm_team(n_threads, (double)cu[n_seg] * nv * dk * dv * 4))
    {
        chunk_ws w;
        float *base = NULL, *fresh = NULL; /* fresh: this thread's state for segments without one */
        int tried = 0;
#pragma omp for schedule(dynamic)
        for (int64_t p = 0; p < n_pairs; p++) {
            const int s = (int)(p / nv), h = (int)(p % nv);
            if (cu[s + 1] - cu[s] > rec_max && !tried) {
                base = ws_alloc(&w, dk, dv);
                if (!fresh) fresh = malloc((size_t)dk * dv * sizeof(float));
                tried = 1;
            }
            const int chunked = cu[s + 1] - cu[s] > rec_max && base;
            float *Sh = S[s] ? S[s] + (size_t)h * dk * dv : chunked && fresh ? fresh : NULL;
            if (!S[s] && Sh) memset(Sh, 0, (size_t)dk * dv * sizeof(float));
            if (chunked && Sh)
                chunk_pair(&w, o, Sh, q, k, v, g, beta, cu[s], cu[s + 1], h / rep, h, nk, nv, dk, dv);
            else if (Sh) /* short segment, or no scratch memory: the recurrent form */
                plm_gdn_pair_recurrent(o, Sh, q, k, v, g, beta, cu[s], cu[s + 1], h / rep, h, nk, nv, dk, dv, 0);
            else /* no state: recurrent on this thread's scratch */
                plm_gdn_pair_scratch(o, &fresh, q, k, v, g, beta, cu[s], cu[s + 1], h / rep, h, nk, nv, dk, dv);
        }
        free(base);
        free(fresh);
    }
}

void plm_gdn_fast(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                  const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv, int n_threads) {
    gdn_driver(o, S, q, k, v, g, beta, cu, n_seg, nk, nv, dk, dv, n_threads, PLM_GDN_RECURRENT_MAX);
}

void plm_gdn_chunked(float *o, float *const *S, const float *q, const float *k, const float *v, const float *g,
                     const float *beta, const int32_t *cu, int n_seg, int nk, int nv, int dk, int dv,
                     int n_threads) {
    gdn_driver(o, S, q, k, v, g, beta, cu, n_seg, nk, nv, dk, dv, n_threads, 0);
}
