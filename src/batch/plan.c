/* Step planning under a token budget (see plm_plan_next in packlm.h). */
#include "packlm.h"

int32_t plm_plan_next(plm_piece *pieces, int32_t max_pieces, const int64_t *len, int32_t n_seqs, int32_t *seq,
                      int64_t *offset, int64_t budget) {
    int32_t n = 0;
    int64_t room = budget > 0 ? budget : INT64_MAX;
    while (*seq < n_seqs && n < max_pieces && room > 0) {
        int64_t left = len[*seq] - *offset;
        if (left <= 0) {
            (*seq)++;
            *offset = 0;
            continue;
        }
        int64_t take = left < room ? left : room;
        pieces[n++] = (plm_piece){*seq, *offset, take};
        room -= take;
        *offset += take;
        if (*offset >= len[*seq]) {
            (*seq)++;
            *offset = 0;
        }
    }
    return n;
}
