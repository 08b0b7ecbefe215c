/* Causal attention within each segment, tiled with an online softmax: work items are (segment,
 * query block of QB queries, head), threaded with a dynamic schedule; each item walks the
 * segment's cached key blocks (PLM_KV_BLOCK keys, one cache block each) up to the last key its
 * queries may see: scores = Q K^T (small GEMM), running max / sum per query, O += P V. */
#pragma GCC optimize("fp-contract=fast")
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "kernels/fast.h"
#include "kernels/simd.h"

enum { QB = 32, KB = PLM_KV_BLOCK };

static void attn_item(float *o, const float *q, const plm_kv *kv, int64_t start, int64_t t0, int64_t i0, int nq,
                      int h, int nh, int nkv, int hd, float scale, float *Qb, float *Kt, float *Sc, float *Ob,
                      float *m, float *l) {
    const int kvh = h / (nh / nkv);
    const int64_t ld = (int64_t)nkv * hd;
    for (int r = 0; r < nq; r++) {
        const float *qr = q + ((t0 + i0 + r) * nh + h) * hd;
        for (int d = 0; d < hd; d++) Qb[r * hd + d] = qr[d] * scale;
        m[r] = -INFINITY;
        l[r] = 0.0f;
        for (int d = 0; d < hd; d++) Ob[r * hd + d] = 0.0f;
    }
    const int64_t n_keys = start + i0 + nq; /* keys the block's last query sees */
    for (int64_t j0 = 0; j0 < n_keys; j0 += KB) {
        const int nk = (int)(n_keys - j0 < KB ? n_keys - j0 : KB);
        const float *kb = kv->k[j0 / KB] + (int64_t)kvh * hd, *vb = kv->v[j0 / KB] + (int64_t)kvh * hd;
        for (int j = 0; j < nk; j++)
            for (int d = 0; d < hd; d++) Kt[d * nk + j] = kb[j * ld + d];
        plm_gemm_f32(Sc, nk, Qb, hd, Kt, nk, nq, nk, hd, 1.0f, 0);
        for (int r = 0; r < nq; r++) {
            const int64_t lim = start + i0 + r + 1 - j0; /* keys j < lim are visible */
            const int vis = (int)(lim < nk ? lim : nk);
            float *sr = Sc + r * nk;
            float mx = m[r];
            for (int j = 0; j < vis; j++) mx = sr[j] > mx ? sr[j] : mx;
            const float corr = expf(m[r] - mx); /* exp(-inf) = 0 on the first block */
            float sum = 0.0f;
            int j = 0;
            for (; j + 8 <= vis; j += 8) plm_v8_store(sr + j, plm_v8_exp(plm_v8_load(sr + j) - mx));
            for (; j < vis; j++) sr[j] = plm_expf_fast(sr[j] - mx);
            for (j = 0; j < vis; j++) sum += sr[j];
            for (int j = vis < 0 ? 0 : vis; j < nk; j++) sr[j] = 0.0f;
            l[r] = l[r] * corr + sum;
            m[r] = mx;
            if (corr != 1.0f)
                for (int d = 0; d < hd; d++) Ob[r * hd + d] *= corr;
        }
        plm_gemm_f32(Ob, hd, Sc, nk, vb, ld, nq, hd, nk, 1.0f, 1);
    }
    for (int r = 0; r < nq; r++) {
        float *orow = o + ((t0 + i0 + r) * nh + h) * hd;
        const float inv = 1.0f / l[r];
        for (int d = 0; d < hd; d++) orow[d] = Ob[r * hd + d] * inv;
    }
}

void plm_attn_fast(float *o, const float *q, const plm_kv *const *kv, const int64_t *start, const int32_t *cu,
                   int n_seg, int nh, int nkv, int hd, float scale, int n_threads) {
    double work = 0;
    for (int s = 0; s < n_seg; s++) work += (double)(cu[s + 1] - cu[s]) * (start[s] + cu[s + 1] - cu[s]);
    const int nth = plm_team(n_threads, work * nh * hd);
    const size_t wsz = (size_t)QB * hd * 2 + (size_t)hd * KB + QB * KB + 2 * QB;
    int64_t *boff = malloc(((size_t)n_seg + 1) * sizeof *boff);
    float *all = malloc(wsz * nth * sizeof(float));
    if (!boff || !all) {
        free(boff);
        free(all);
        plm_attn_ref(o, q, kv, start, cu, n_seg, nh, nkv, hd, scale, n_threads);
        return;
    }
    boff[0] = 0;
    for (int s = 0; s < n_seg; s++) boff[s + 1] = boff[s] + (cu[s + 1] - cu[s] + QB - 1) / QB;
    const int64_t n_items = boff[n_seg] * nh;
#pragma omp parallel num_threads(nth)
    {
        float *ws = all + wsz * (size_t)omp_get_thread_num();
        float *Qb = ws, *Ob = ws + (size_t)QB * hd, *Kt = Ob + (size_t)QB * hd, *Sc = Kt + (size_t)hd * KB;
        float *m = Sc + QB * KB, *l = m + QB;
#pragma omp for schedule(dynamic)
        for (int64_t it = 0; it < n_items; it++) {
            const int h = (int)(it % nh);
            const int64_t b = it / nh;
            int lo = 0, hi = n_seg - 1; /* the segment holding query block b */
            while (lo < hi) {
                int mid = (lo + hi + 1) / 2;
                if (boff[mid] <= b) lo = mid;
                else hi = mid - 1;
            }
            const int s = lo;
            const int64_t i0 = (b - boff[s]) * QB, L = cu[s + 1] - cu[s];
            const int nq = (int)(L - i0 < QB ? L - i0 : QB);
            attn_item(o, q, kv[s], start[s], cu[s], i0, nq, h, nh, nkv, hd, scale, Qb, Kt, Sc, Ob, m, l);
        }
    }
    free(all);
    free(boff);
}
