/* Dtype names and sizes, and scalar conversions f32 <-> bf16 / f16 (round to nearest even). */
#include <string.h>

#include "io/safetensors.h"
#include "io/safetensors_internal.h"

/* Element sizes in bits of the dtypes safetensors defines (the reference's Dtype::bitsize); only
 * F32/BF16/F16 are computed with, I8 holds int8 weights. Any other dtype string is refused, as the reference does. */
static const struct {
    const char *name;
    plm_dtype dt;
    size_t bits;
} k_dtypes[] = {
    {"F32", PLM_DT_F32, 32},     {"BF16", PLM_DT_BF16, 16},    {"F16", PLM_DT_F16, 16},
    {"F64", PLM_DT_OTHER, 64},   {"I64", PLM_DT_OTHER, 64},    {"U64", PLM_DT_OTHER, 64},
    {"I32", PLM_DT_OTHER, 32},   {"U32", PLM_DT_OTHER, 32},    {"I16", PLM_DT_OTHER, 16},
    {"U16", PLM_DT_OTHER, 16},   {"I8", PLM_DT_I8, 8},      {"U8", PLM_DT_OTHER, 8},
    {"BOOL", PLM_DT_OTHER, 8},   {"F8_E4M3", PLM_DT_OTHER, 8}, {"F8_E5M2", PLM_DT_OTHER, 8},
    {"F8_E8M0", PLM_DT_OTHER, 8}, {"F6_E2M3", PLM_DT_OTHER, 6}, {"F6_E3M2", PLM_DT_OTHER, 6},
    {"F4", PLM_DT_OTHER, 4},     {"C64", PLM_DT_OTHER, 64},
};

plm_dtype plm_dtype_from_name(const char *name, size_t *elem_bits) {
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (strcmp(name, k_dtypes[i].name) == 0) {
            *elem_bits = k_dtypes[i].bits;
            return k_dtypes[i].dt;
        }
    *elem_bits = 0;
    return PLM_DT_OTHER;
}

size_t plm_dtype_size(plm_dtype dt) {
    switch (dt) {
    case PLM_DT_F32: return 4;
    case PLM_DT_BF16: return 2;
    case PLM_DT_F16: return 2;
    case PLM_DT_I8: return 1;
    case PLM_DT_Q8: return 1;
    default: return 0;
    }
}

const char *plm_dtype_name(plm_dtype dt) {
    switch (dt) {
    case PLM_DT_F32: return "F32";
    case PLM_DT_BF16: return "BF16";
    case PLM_DT_F16: return "F16";
    case PLM_DT_I8: return "I8";
    case PLM_DT_Q8: return "Q8";
    default: return "OTHER";
    }
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t plm_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even; overflow carries into inf */
    return (uint16_t)(u >> 16);
}

/* f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float plm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        if (m == 0) return bits_f32(sign);
        uint32_t ex = 113; /* subnormal m * 2^-24: normalise the mantissa */
        while (!(m & 0x400u)) {
            m <<= 1;
            ex--;
        }
        return bits_f32(sign | (ex << 23) | ((m & 0x3ffu) << 13));
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t plm_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t au = u & 0x7fffffffu;
    if (au > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((au >> 13) & 0x3ffu)); /* NaN */
    if (au >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (au >= 0x38800000u) { /* normal: >= 2^-14 */
        uint32_t h = ((((au >> 23) - 112) << 10) | ((au >> 13) & 0x3ffu));
        uint32_t rem = au & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* carry may bump the exponent */
        return (uint16_t)(sign | h);
    }
    if (au <= 0x33000000u) return sign; /* <= 2^-25 rounds to zero (ties to even) */
    /* subnormal: value / 2^-24 = mant >> (126 - exp), shift in 14..24 */
    uint32_t exp = au >> 23, mant = (au & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exp;
    uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}
