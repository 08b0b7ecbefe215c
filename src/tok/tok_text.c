/* UTF-8 validation and Unicode normalization (through utf8proc). */
#include "tok/tok_internal.h"
#include "util/error.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

size_t tok_utf8_check(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        if (i + 8 <= len) { /* ASCII fast path */
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (!(v & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0) lo = 0xA0;      /* overlong */
            else if (c == 0xED) hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0) lo = 0x90;      /* overlong */
            else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
        } else
            return i;
        if (i + n > len) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += n;
    }
    return len;
}

int tok_utf8_next(const unsigned char *s, int32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = (int32_t)c;
        return 1;
    }
    if (c < 0xE0) {
        *cp = (int32_t)(((c & 0x1F) << 6) | (s[1] & 0x3F));
        return 2;
    }
    if (c < 0xF0) {
        *cp = (int32_t)(((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F));
        return 3;
    }
    *cp = (int32_t)(((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F));
    return 4;
}

#define BIT_SET(b, i) ((b)[(i) >> 3] |= (uint8_t)(1u << ((i)&7)))
#define BIT_GET(b, i) (((b)[(i) >> 3] >> ((i)&7)) & 1u)

/* Marks the code points that NFC may change or combine with what precedes them: non-zero
 * combining class, canonical decompositions that do not compose back to themselves, and every
 * non-initial element of a canonical decomposition (e.g. Hangul V/T jamo, Indic vowel signs).
 * A code point left unmarked is a stable starter: NFC never changes it and the text can be
 * normalized piecewise between such code points. The table depends only on utf8proc's Unicode
 * data, so it is built once per process (about 1.1 million code points examined) and shared by
 * every tokenizer; it is never freed. */
static uint8_t *nfc_table;

static void nfc_table_build(void) {
    uint8_t *b = calloc(0x110000 / 8, 1);
    if (!b) return;
    for (int32_t cp = 0x80; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        const utf8proc_property_t *p = utf8proc_get_property(cp);
        if (p->combining_class) BIT_SET(b, cp);
        if (p->decomp_seqindex == UINT16_MAX || p->decomp_type != 0) continue;
        utf8proc_int32_t d[32];
        int last = 0;
        utf8proc_ssize_t n = utf8proc_decompose_char(cp, d, 32, UTF8PROC_DECOMPOSE, &last);
        for (utf8proc_ssize_t k = 1; k < n && k < 32; k++) BIT_SET(b, d[k]);
        utf8proc_uint8_t enc[8], *res = NULL;
        utf8proc_ssize_t el = utf8proc_encode_char(cp, enc);
        utf8proc_ssize_t rl = utf8proc_map(enc, el, &res, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (rl != el || memcmp(res, enc, (size_t)el)) BIT_SET(b, cp);
        free(res);
    }
    for (int32_t cp = 0x1160; cp <= 0x11FF; cp++) BIT_SET(b, cp); /* Hangul V and T jamo */
    nfc_table = b;
}

plm_status tok_nfc_table(const uint8_t **out, plm_error *err) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, nfc_table_build);
    if (!nfc_table) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    *out = nfc_table;
    return PLM_OK;
}

static plm_status map(const char *s, size_t n, utf8proc_option_t opt, char **out, size_t *out_len,
                      plm_error *err) {
    utf8proc_uint8_t *r = NULL;
    utf8proc_ssize_t rl = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &r, opt);
    if (rl < 0) {
        free(r);
        return plm_fail(err, rl == UTF8PROC_ERROR_NOMEM ? PLM_ERR_NOMEM : PLM_ERR_INPUT,
                        "normalization failed: %s", utf8proc_errmsg(rl));
    }
    *out = (char *)r;
    *out_len = (size_t)rl;
    return PLM_OK;
}

/* NFC using the stable-starter table: only the stretches around marked code points go through
 * utf8proc. Returns PLM_OK with *out == NULL when s is already NFC. */
static plm_status nfc_fast(const uint8_t *unsafe, const char *s, size_t n, char **out,
                           size_t *out_len, plm_error *err) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    /* first marked code point */
    for (;;) {
        while (i < n && u[i] < 0x80) i++;
        if (i >= n) {
            *out = NULL;
            return PLM_OK;
        }
        int32_t cp;
        int l = tok_utf8_next(u + i, &cp);
        if (BIT_GET(unsafe, cp)) break;
        i += (size_t)l;
    }
    size_t cap = n + n / 4 + 64, o = 0;
    char *buf = malloc(cap);
    if (!buf) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    /* segments start at stable starters; seg = start of the current segment, dirty = it holds a
       marked code point */
    size_t seg = 0, j = 0, copied = 0;
    bool dirty = false;
    while (j <= n) {
        int32_t cp = 0;
        int l = 1;
        bool starter = true;
        if (j < n) {
            l = tok_utf8_next(u + j, &cp);
            starter = cp < 0x80 || !BIT_GET(unsafe, cp);
        }
        if (starter) {
            if (dirty) {
                /* copy [copied, seg) verbatim, then the normalized [seg, j) */
                char *r;
                size_t rl;
                plm_status st = map(s + seg, j - seg, UTF8PROC_STABLE | UTF8PROC_COMPOSE, &r, &rl, err);
                if (st) {
                    free(buf);
                    return st;
                }
                size_t need = o + (seg - copied) + rl + (n - j) + 1;
                if (need > cap) {
                    cap = need + need / 2;
                    char *nb = realloc(buf, cap);
                    if (!nb) {
                        free(r);
                        free(buf);
                        return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
                    }
                    buf = nb;
                }
                memcpy(buf + o, s + copied, seg - copied);
                o += seg - copied;
                memcpy(buf + o, r, rl);
                o += rl;
                free(r);
                copied = j;
                dirty = false;
            }
            seg = j;
        } else
            dirty = true;
        if (j == n) break;
        j += (size_t)l;
    }
    if (o + (n - copied) + 1 > cap) {
        char *nb = realloc(buf, o + (n - copied) + 1);
        if (!nb) {
            free(buf);
            return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
        }
        buf = nb;
    }
    memcpy(buf + o, s + copied, n - copied);
    o += n - copied;
    *out = buf;
    *out_len = o;
    return PLM_OK;
}

plm_status tok_normalize(const plm_tokenizer *t, const char *s, size_t n, const char **out,
                         size_t *out_len, char **owned, plm_error *err) {
    *out = s;
    *out_len = n;
    *owned = NULL;
    if (t->n_norms == 0) return PLM_OK;
    if (t->nfc_unsafe) {
        char *r = NULL;
        size_t rl = 0;
        plm_status st = nfc_fast(t->nfc_unsafe, s, n, &r, &rl, err);
        if (st || !r) return st;
        *out = *owned = r;
        *out_len = rl;
        return PLM_OK;
    }
    bool ascii = true;
    for (size_t i = 0; i < n && ascii; i++) ascii = (unsigned char)s[i] < 0x80;
    if (ascii) return PLM_OK; /* every normalization form leaves ASCII alone */
    for (int k = 0; k < t->n_norms; k++) {
        utf8proc_option_t opt = UTF8PROC_STABLE;
        switch (t->norms[k]) {
        case TOK_NORM_NFC: opt |= UTF8PROC_COMPOSE; break;
        case TOK_NORM_NFD: opt |= UTF8PROC_DECOMPOSE; break;
        case TOK_NORM_NFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
        case TOK_NORM_NFKD: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
        }
        char *r;
        size_t rl;
        plm_status st = map(*out, *out_len, opt, &r, &rl, err);
        if (st) {
            free(*owned);
            *owned = NULL;
            return st;
        }
        free(*owned);
        *out = *owned = r;
        *out_len = rl;
    }
    return PLM_OK;
}
