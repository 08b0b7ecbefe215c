/* Step planning under a token budget (see plm_plan_next in packlm.h). */
#include "packlm.h"

int32_t plm_plan_next(plm_piece *pieces, int32_t max_pieces, const int64_t *len, int32_t n_seqs, int32_t *seq,
                      int64_t *offset, int64_t budget) {
    return plm_plan_next_aligned(pieces, max_pieces, len, n_seqs, seq, offset, budget, 1);
}

int32_t plm_plan_next_aligned(plm_piece *pieces, int32_t max_pieces, const int64_t *len, int32_t n_seqs,
                              int32_t *seq, int64_t *offset, int64_t budget, int64_t align) {
    if (align < 1) align = 1;
    if (budget > 0 && budget < align) align = 1; /* no aligned cut fits: cut at the budget */
    int32_t n = 0;
    int64_t room = budget > 0 ? budget : INT64_MAX;
    while (*seq < n_seqs && n < max_pieces && room > 0) {
        int64_t left = len[*seq] - *offset;
        if (left <= 0) {
            (*seq)++;
            *offset = 0;
            continue;
        }
        int64_t take = left <= room ? left : room / align * align;
        if (take <= 0) break; /* less than align tokens of room: the rest opens the next step */
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
