/* The kernel table: references first, then the fast variants this build has. */
#include "kernels/fast.h"
#include "kernels/kernels.h"
#include "packlm.h"

_Static_assert(PLM_SPLIT_ALIGN == PLM_GDN_CHUNK, "aligned splits fall on delta-rule chunk boundaries");

void plm_kernels_init(plm_kernels *k, int reference_only, int batch_invariant, int bf16_single_pass) {
    k->matmul = plm_matmul_ref;
    k->gdn = plm_gdn_ref;
    k->conv = plm_conv_ref;
    k->attn = plm_attn_ref;
    k->logprob = plm_logprob_ref;
    k->matmul_q8 = plm_matmul_q8_ref;
    k->matmul_bf16 = bf16_single_pass ? plm_matmul_bf16sp_ref : plm_matmul_ref;
    k->isa = PLM_ISA_SCALAR;
    k->isa_bf16 = PLM_ISA_SCALAR;
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
    if (batch_invariant) {
        /* one reduction order per row whatever the step: the direct GEMMs (BF16, F32, F16) for every
           row count, the chunked delta rule for every segment (the other kernels already work per row /
           per segment) */
        k->matmul = plm_matmul_invariant;
        k->gdn = plm_gdn_chunked;
    }
    k->isa_bf16 = plm_isa_best_bf16(bf16_single_pass);
    if (!bf16_single_pass) {
        /* BF16 weights, F32 activations: the 512-bit direct GEMM where the CPU has AVX-512 (batch-
           invariant mode keeps plm_matmul_invariant, matmul_bf16.c for every row count), PLM_ISA=scalar
           the reference */
        if (k->isa_bf16 == PLM_ISA_AVX512 && !batch_invariant) k->matmul_bf16 = plm_matmul_fast_avx512;
        else if (k->isa_bf16 == PLM_ISA_SCALAR) k->matmul_bf16 = plm_matmul_ref;
        else {
            k->isa_bf16 = PLM_ISA_AVX2;
            k->matmul_bf16 = k->matmul;
        }
        return;
    }
    /* BF16 weights times BF16-rounded activations: vdpbf16ps where the CPU has it (batch-invariant by
       construction), else the rounded activations widened to F32 through the F32-activation kernels */
    if (k->isa_bf16 == PLM_ISA_AVX512BF16) k->matmul_bf16 = plm_matmul_bf16sp_dpbf16;
    else if (k->isa_bf16 == PLM_ISA_AVX2)
        k->matmul_bf16 = batch_invariant ? plm_matmul_bf16sp_avx2_inv : plm_matmul_bf16sp_avx2;
    else k->matmul_bf16 = plm_matmul_bf16sp_ref;
}

void plm_kernels_int8_act(plm_kernels *k, int bits) {
    if (bits != 16) return;
    k->matmul_q8 = plm_matmul_q8x2_ref;
#if defined(__x86_64__) || defined(__i386__)
    if (k->isa == PLM_ISA_AVX512VNNI) k->matmul_q8 = plm_matmul_q8x2_vnni;
    else if (k->isa == PLM_ISA_AVX2) k->matmul_q8 = plm_matmul_q8x2_avx2;
#endif
}
