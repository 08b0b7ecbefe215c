/* The kernel table: references first, then the fast variants this build has. */
#include "kernels/fast.h"
#include "kernels/kernels.h"
#include "packlm.h"

_Static_assert(PLM_SPLIT_ALIGN == PLM_GDN_CHUNK, "aligned splits fall on delta-rule chunk boundaries");

void plm_kernels_init(plm_kernels *k, int reference_only, int batch_invariant) {
    k->matmul = plm_matmul_ref;
    k->gdn = plm_gdn_ref;
    k->conv = plm_conv_ref;
    k->attn = plm_attn_ref;
    k->logprob = plm_logprob_ref;
    k->matmul_q8 = plm_matmul_q8_ref;
    k->isa = PLM_ISA_SCALAR;
    if (reference_only) return;
#if defined(__x86_64__) || defined(__i386__)
    k->isa = plm_isa_best();
    if (k->isa == PLM_ISA_AVX512VNNI) k->matmul_q8 = plm_matmul_q8_vnni;
    else if (k->isa == PLM_ISA_AVX2) k->matmul_q8 = plm_matmul_q8_avx2;
#endif
    k->matmul = plm_matmul_fast;
    k->gdn = plm_gdn_fast;
    k->conv = plm_conv_fast;
    k->attn = plm_attn_fast;
    k->logprob = plm_logprob_fast;
    if (!batch_invariant) return;
    /* one reduction order per row whatever the step: the direct BF16 GEMM for every row count, the
       chunked delta rule for every segment (the other kernels already work per row / per segment) */
    k->matmul = plm_matmul_invariant;
    k->gdn = plm_gdn_chunked;
}

void plm_kernels_int8_act(plm_kernels *k, int bits) {
    if (bits != 16) return;
    k->matmul_q8 = plm_matmul_q8x2_ref;
#if defined(__x86_64__) || defined(__i386__)
    if (k->isa == PLM_ISA_AVX512VNNI) k->matmul_q8 = plm_matmul_q8x2_vnni;
    else if (k->isa == PLM_ISA_AVX2) k->matmul_q8 = plm_matmul_q8x2_avx2;
#endif
}
