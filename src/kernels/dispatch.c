/* The kernel table: references first, then the fast variants this build has. */
#include "kernels/fast.h"
#include "kernels/kernels.h"

void plm_kernels_init(plm_kernels *k, int reference_only) {
    k->matmul = plm_matmul_ref;
    k->gdn = plm_gdn_ref;
    k->conv = plm_conv_ref;
    k->attn = plm_attn_ref;
    k->logprob = plm_logprob_ref;
    if (reference_only) return;
    k->matmul = plm_matmul_fast;
    k->gdn = plm_gdn_fast;
    k->conv = plm_conv_fast;
    k->attn = plm_attn_fast;
    k->logprob = plm_logprob_fast;
}
