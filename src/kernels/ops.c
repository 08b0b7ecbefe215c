/* Row and element-wise ops: norms, RoPE, SwiGLU, MoE routing, embedding lookup. One plain
 * implementation each, written so the compiler vectorises the inner loops: sums of squares are
 * `omp simd` reductions (a fixed lane order, so results are the same run to run), SiLU uses the
 * 8-lane exp of simd.h. */
#pragma GCC optimize("fp-contract=fast")
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/route.h"
#include "kernels/simd.h"

static inline float sumsq(const float *x, int n) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    return ss;
}

void plm_mat_row(float *dst, const plm_mat *W, int64_t r) {
    const int64_t n = W->cols;
    switch (W->dt) {
    case PLM_DT_F32: memcpy(dst, (const float *)W->data + r * n, (size_t)n * sizeof(float)); break;
    case PLM_DT_BF16: { /* the row may lie at any address (see plm_ld_u16) */
        const unsigned char *s = (const unsigned char *)W->data + 2 * r * n;
        for (int64_t i = 0; i < n; i++) dst[i] = plm_bf16_to_f32(plm_ld_u16(s, i));
        break;
    }
    case PLM_DT_F16: {
        const unsigned char *s = (const unsigned char *)W->data + 2 * r * n;
        for (int64_t i = 0; i < n; i++) dst[i] = plm_f16_to_f32(plm_ld_u16(s, i));
        break;
    }
    case PLM_DT_Q8: {
        const int8_t *q = (const int8_t *)W->data + r * PLM_Q8_STRIDE(n);
        const int64_t nb = PLM_Q8_NB(n);
        for (int64_t i = 0; i < n; i++) dst[i] = (float)q[i] * plm_f16_to_f32(plm_ld_u16(W->scale, r * nb + i / 32));
        break;
    }
    default: memset(dst, 0, (size_t)n * sizeof(float)); break; /* refused at load */
    }
}

int32_t plm_argmax_row(const float *l, int32_t V) {
    int32_t best = 0;
    for (int32_t v = 1; v < V; v++)
        if (l[v] > l[best] || (l[best] != l[best] && l[v] == l[v])) best = v;
    return best;
}

void plm_embed_rows(float *x, const plm_mat *E, const int32_t *tokens, int64_t T) {
    for (int64_t t = 0; t < T; t++) plm_mat_row(x + t * E->cols, E, tokens[t]);
}

void plm_rmsnorm_zc(float *y, const float *x, const float *w, int64_t T, int n, float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * n;
        float *yr = y + t * n;
        float r = 1.0f / sqrtf(sumsq(xr, n) / (float)n + eps);
#pragma omp simd
        for (int i = 0; i < n; i++) yr[i] = xr[i] * r * (1.0f + w[i]);
    }
}

void plm_rmsnorm_gated(float *y, const float *x, const float *z, const float *w, int64_t rows, int n, float eps) {
    for (int64_t t = 0; t < rows; t++) {
        const float *xr = x + t * n, *zr = z + t * n;
        float *yr = y + t * n;
        float r = 1.0f / sqrtf(sumsq(xr, n) / (float)n + eps);
        int i = 0;
        for (; i + 8 <= n; i += 8)
            plm_v8_store(yr + i, plm_v8_load(w + i) * (plm_v8_load(xr + i) * r) * plm_v8_silu(plm_v8_load(zr + i)));
        for (; i < n; i++) yr[i] = w[i] * (xr[i] * r) * plm_silu_fast(zr[i]);
    }
}

void plm_l2norm_rows(float *x, int64_t rows, int n, float scale) {
    for (int64_t t = 0; t < rows; t++) {
        float *xr = x + t * n;
        float r = scale / sqrtf(sumsq(xr, n) + 1e-6f);
#pragma omp simd
        for (int i = 0; i < n; i++) xr[i] *= r;
    }
}

void plm_rope(float *x, const int64_t *pos, int64_t T, int nh, int hd, int rot, double theta) {
    /* as transformers' default rotary: dim = rot = int(head_dim * partial_rotary_factor),
     * inv_freq = 1 / theta^(arange(0, dim, 2) / dim): ceil(dim/2) frequencies over the even indices
     * below dim, each divided by dim itself (an odd dim included); apply_rotary_pos_emb then turns
     * cos.shape[-1] = 2 * ceil(dim/2) channels, rotate_half pairing channel i with i + half.
     * Computed in float32 as torch does (exponent (2i)/dim, the power and the reciprocal each rounded
     * to float), and angles float(pos) * inv_freq in float32, as transformers' float32 matmul. */
    const int half = (rot + 1) / 2;
    float inv_freq[half > 0 ? half : 1];
    for (int i = 0; i < half; i++) inv_freq[i] = 1.0f / powf((float)theta, (float)(2 * i) / (float)rot);
    for (int64_t t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            float ang = (float)pos[t] * inv_freq[i];
            float c = cosf(ang), s = sinf(ang);
            for (int h = 0; h < nh; h++) {
                float *v = x + (t * nh + h) * hd;
                float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
}

void plm_swiglu(float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) plm_v8_store(gate + i, plm_v8_silu(plm_v8_load(gate + i)) * plm_v8_load(up + i));
    for (; i < n; i++) gate[i] = plm_silu_fast(gate[i]) * up[i];
}

void plm_moe_route(int32_t *idx, float *w, const float *logits, int64_t T, int E, int k) {
    for (int64_t t = 0; t < T; t++) plm_route_token(idx + t * k, w + t * k, logits + t * E, E, k);
}
