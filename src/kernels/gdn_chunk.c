/* Gated delta rule, chunked (UT / WY representation, chunk PLM_GDN_CHUNK), over packed segments.
 * Chunks never cross a segment boundary; a segment's last chunk may be short. Per chunk of L
 * tokens with inclusive cumulative log decay c_i and state S [dk, dv] from before the chunk:
 *   A[i][j]  = beta_i (k_i . k_j) exp(c_i - c_j)              j < i  (strictly lower)
 *   (I + A) [W | U] = [beta k exp(c) | beta v]                forward substitution
 *   V' = U - W S                                              (the new values)
 *   O  = (q exp(c)) S + ((q k^T) * exp(c_i - c_j), j <= i) V'
 *   S  = exp(c_L) S + (k exp(c_L - c))^T V'
 * the same recursion as the recurrent form, with the work in small GEMMs. Threaded over
 * (segment, value head) pairs; segments of at most PLM_GDN_RECURRENT_MAX tokens use the
 * recurrent form (cheaper for decode). */
#pragma GCC optimize("fp-contract=fast")
#include <math.h>
#include <stdlib.h>

#include "kernels/fast.h"
#include "kernels/simd.h"

enum { CH = PLM_GDN_CHUNK };

typedef struct {
    float *KQ;  /* [2L, dk]: rows 0..L-1 keys, L..2L-1 queries */
    float *Kt;  /* [dk, L] keys transposed, then (k exp(c_L - c))^T */
    float *G;   /* [2L, L] = KQ . Kt: k.k and q.k */
    float *R;   /* [L, dk + dv]: [W | U], then U becomes V' */
    float *Qe;  /* [L, dk] q exp(c) */
    float *O;   /* [L, dv] */
    float *P;   /* [L, L] decay-masked causal q.k */
    float *gc;  /* [L] */
} chunk_ws;

static float *ws_alloc(chunk_ws *w, int dk, int dv) {
    size_t n = (size_t)2 * CH * dk + (size_t)dk * CH + 2 * CH * CH + (size_t)CH * (dk + dv) + (size_t)CH * dk +
               (size_t)CH * dv + CH * CH + CH;
    float *base = malloc(n * sizeof(float));
    if (!base) return NULL;
    float *p = base;
    w->KQ = p, p += (size_t)2 * CH * dk;
    w->Kt = p, p += (size_t)dk * CH;
    w->G = p, p += 2 * CH * CH;
    w->R = p, p += (size_t)CH * (dk + dv);
    w->Qe = p, p += (size_t)CH * dk;
    w->O = p, p += (size_t)CH * dv;
    w->P = p, p += CH * CH;
    w->gc = p;
    return base;
}

static void chunk_pair(const chunk_ws *w, float *o, float *S, const float *q, const float *k, const float *v,
                       const float *g, const float *beta, int64_t t0, int64_t t1, int kh, int h, int nk, int nv,
                       int dk, int dv) {
    const int ldr = dk + dv;
    float *KQ = w->KQ, *Kt = w->Kt, *G = w->G, *R = w->R, *Qe = w->Qe, *O = w->O, *P = w->P, *gc = w->gc;
    for (int64_t c0 = t0; c0 < t1; c0 += CH) {
        const int L = (int)(t1 - c0 < CH ? t1 - c0 : CH);
        float acc = 0.0f;
        for (int i = 0; i < L; i++) gc[i] = acc += g[(c0 + i) * nv + h];
        for (int i = 0; i < L; i++) { /* gather the chunk's rows */
            const float *kr = k + ((c0 + i) * nk + kh) * dk, *qr = q + ((c0 + i) * nk + kh) * dk;
            const float *vr = v + ((c0 + i) * nv + h) * dv;
            const float b = beta[(c0 + i) * nv + h], e = expf(gc[i]);
            float *Kr = KQ + (size_t)i * dk, *Qr = KQ + (size_t)(L + i) * dk, *Qer = Qe + (size_t)i * dk;
            float *Rr = R + (size_t)i * ldr;
            for (int d = 0; d < dk; d++) {
                Kr[d] = kr[d];
                Qr[d] = qr[d];
                Qer[d] = qr[d] * e;
                Rr[d] = kr[d] * (b * e);
                Kt[(size_t)d * L + i] = kr[d];
            }
            for (int d = 0; d < dv; d++) Rr[dk + d] = vr[d] * b;
        }
        plm_gemm_f32(G, L, KQ, dk, Kt, L, 2 * L, L, dk, 1.0f, 0); /* k.k and q.k */
        /* forward substitution, row by row: R_i -= sum_{j<i} A_ij R_j */
        for (int i = 1; i < L; i++) {
            const float bi = beta[(c0 + i) * nv + h];
            float *Ri = R + (size_t)i * ldr;
            for (int j = 0; j < i; j++) {
                const float a = bi * G[i * L + j] * expf(gc[i] - gc[j]);
                const float *Rj = R + (size_t)j * ldr;
#pragma omp simd
                for (int d = 0; d < ldr; d++) Ri[d] -= a * Rj[d];
            }
        }
        /* V' = U - W S (in R's U columns) */
        plm_gemm_f32(R + dk, ldr, R, ldr, S, dv, L, dv, dk, -1.0f, 1);
        /* O = Qe S + P V' */
        plm_gemm_f32(O, dv, Qe, dk, S, dv, L, dv, dk, 1.0f, 0);
        for (int i = 0; i < L; i++)
            for (int j = 0; j < L; j++)
                P[i * L + j] = j <= i ? G[(L + i) * L + j] * expf(gc[i] - gc[j]) : 0.0f;
        plm_gemm_f32(O, dv, P, L, R + dk, ldr, L, dv, L, 1.0f, 1);
        for (int i = 0; i < L; i++) {
            float *op = o + ((c0 + i) * nv + h) * dv;
            for (int d = 0; d < dv; d++) op[d] = O[(size_t)i * dv + d];
        }
        /* S = exp(c_L) S + (k exp(c_L - c))^T V' */
        const float gl = gc[L - 1], el = expf(gl);
        float dec[CH];
        for (int i = 0; i < L; i++) dec[i] = expf(gl - gc[i]);
        for (int d = 0; d < dk; d++)
            for (int i = 0; i < L; i++) Kt[(size_t)d * L + i] *= dec[i];
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
        float *base = NULL;
        int tried = 0;
#pragma omp for schedule(dynamic)
        for (int64_t p = 0; p < n_pairs; p++) {
            const int s = (int)(p / nv), h = (int)(p % nv);
            float *Sh = S[s] + (size_t)h * dk * dv;
            if (cu[s + 1] - cu[s] > rec_max && !tried) {
                base = ws_alloc(&w, dk, dv);
                tried = 1;
            }
            if (cu[s + 1] - cu[s] > rec_max && base)
                chunk_pair(&w, o, Sh, q, k, v, g, beta, cu[s], cu[s + 1], h / rep, h, nk, nv, dk, dv);
            else /* short segment, or no scratch memory: the recurrent form */
                plm_gdn_pair_recurrent(o, Sh, q, k, v, g, beta, cu[s], cu[s + 1], h / rep, h, nk, nv, dk, dv);
        }
        free(base);
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
