/* Decoding: ids -> bytes (byte-level alphabet undone at load time) -> UTF-8, with invalid
 * sequences replaced by U+FFFD the way Rust's String::from_utf8_lossy does (one replacement per
 * maximal invalid subpart). */
#include "tok/tok_internal.h"
#include "util/error.h"

#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when invalid; *bad gets the length of
 * the maximal invalid subpart then (>= 1). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad) {
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    size_t k = 1;
    for (; k < need; k++) {
        if (k >= n) break;
        unsigned b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) break;
    }
    if (k == need) return need;
    *bad = k;
    return 0;
}

static const char *const CLEANUPS[][2] = {
    {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
    {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
};

/* transformers' clean_up_tokenization, applied in place, in order */
static size_t clean_up(char *s, size_t n) {
    for (size_t r = 0; r < sizeof CLEANUPS / sizeof CLEANUPS[0]; r++) {
        const char *from = CLEANUPS[r][0], *to = CLEANUPS[r][1];
        size_t lf = strlen(from), lt = strlen(to), o = 0;
        for (size_t i = 0; i < n;) {
            if (i + lf <= n && !memcmp(s + i, from, lf)) {
                memcpy(s + o, to, lt);
                o += lt;
                i += lf;
            } else
                s[o++] = s[i++];
        }
        n = o;
    }
    return n;
}

plm_status plm_tokenizer_decode(const plm_tokenizer *t, const int32_t *ids, size_t n, char **text,
                                size_t *len, plm_error *err) {
    if (!text) return plm_fail(err, PLM_ERR_INPUT, "plm_tokenizer_decode: NULL output");
    *text = NULL;
    if (len) *len = 0;
    if (!t || (!ids && n)) return plm_fail(err, PLM_ERR_INPUT, "plm_tokenizer_decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || t->dec_off[id] == UINT32_MAX)
            return plm_fail(err, PLM_ERR_INPUT, "token id %d at index %zu is not in the vocabulary (size %d)",
                            id, i, t->n_ids);
        total += t->dec_len[id];
    }
    char *raw = malloc(total + 1);
    if (!raw) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(raw + o, t->dec_pool + t->dec_off[ids[i]], t->dec_len[ids[i]]);
        o += t->dec_len[ids[i]];
    }
    /* lossy UTF-8: count replacements first */
    size_t extra = 0, n_bad = 0, bad;
    for (size_t i = 0; i < total;) {
        size_t l = utf8_seq((const unsigned char *)raw + i, total - i, &bad);
        if (l) i += l;
        else extra += 3 - (bad < 3 ? bad : 3), i += bad, n_bad++;
    }
    char *out = raw;
    size_t on = total;
    if (n_bad || total != o) { /* a 3-byte invalid subpart costs no extra byte, but is replaced all the same */
        out = malloc(total + extra + 1);
        if (!out) {
            free(raw);
            return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
        }
        on = 0;
        for (size_t i = 0; i < total;) {
            size_t l = utf8_seq((const unsigned char *)raw + i, total - i, &bad);
            if (l) {
                memcpy(out + on, raw + i, l);
                on += l;
                i += l;
            } else {
                memcpy(out + on, "\xEF\xBF\xBD", 3);
                on += 3;
                i += bad;
            }
        }
        free(raw);
    }
    if (t->clean_up_spaces) on = clean_up(out, on);
    out[on] = 0;
    *text = out;
    if (len) *len = on;
    return PLM_OK;
}
