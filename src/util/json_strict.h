/* Strict JSON (RFC 8259) checking, shared by every reader of JSON from a file: the safetensors
 * header, the shard index, config.json / generation_config.json and the CLI's JSONL lines.
 *
 * cJSON, which builds the trees, is lenient: it stops at the first complete value (what follows is
 * the caller's problem), treats every byte <= 0x20 as whitespace, accepts raw control characters
 * and invalid UTF-8 in strings, leading zeros and "1." in numbers, and cuts strings at an escaped
 * U+0000. Every document is therefore checked here first: exactly one value, surrounded only by
 * the four JSON whitespace characters; strings of valid UTF-8 without raw control characters and
 * with well-formed escapes (surrogates paired); numbers as the grammar says; nesting at most
 * PLM_JSON_MAX_DEPTH. A failure gives the byte offset and a reason, which callers turn into a
 * line and column. The CLI's JSONL lines are then built by jansson with JSON_ALLOW_NUL, which keeps
 * an escaped U+0000 in a string (tools/cli_input.c); the readers in the library use cJSON and refuse
 * \u0000 (nul_off below).
 *
 * Header-only (static inline) so that the CLI, which links only the public library API, uses the
 * same code. */
#ifndef PLM_UTIL_JSON_STRICT_H
#define PLM_UTIL_JSON_STRICT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PLM_JSON_MAX_DEPTH 512

typedef struct {
    const unsigned char *s;
    size_t n, i;
    const char *why;   /* set on failure; i is then the offset of the offending byte */
    size_t nul_off;    /* offset of the first \u0000 escape in a string, SIZE_MAX when none */
    int in_key;        /* the string being read is an object key */
    unsigned char *key_fix; /* when set (a writable copy of s): \u0000 in keys is rewritten \u0001 */
    size_t n_fixed;
} plm_json_lex;

static inline int plm_json_fail_(plm_json_lex *L, const char *why) {
    if (!L->why) L->why = why;
    return 0;
}

static inline void plm_json_ws_(plm_json_lex *L) {
    while (L->i < L->n && (L->s[L->i] == ' ' || L->s[L->i] == '\t' || L->s[L->i] == '\n' || L->s[L->i] == '\r'))
        L->i++;
}

/* Length of the valid UTF-8 sequence at p (at most avail bytes), 0 when invalid (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). */
static inline size_t plm_utf8_seq(const unsigned char *p, size_t avail) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) { len = 3; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) { len = 4; hi = 0x8F; }
    else return 0;
    if (avail < len) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if (p[k] < 0x80 || p[k] > 0xBF) return 0;
    return len;
}

static inline int plm_json_hex4_(const unsigned char *p, unsigned *out) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = p[k], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        v = v * 16 + d;
    }
    *out = v;
    return 1;
}

/* At '"': checks the string literal and steps past it. */
static inline int plm_json_string_(plm_json_lex *L) {
    L->i++;
    for (;;) {
        if (L->i >= L->n) return plm_json_fail_(L, "unterminated string");
        unsigned c = L->s[L->i];
        if (c == '"') {
            L->i++;
            return 1;
        }
        if (c < 0x20) return plm_json_fail_(L, "control character in a string (escape it)");
        if (c == '\\') {
            if (L->i + 1 >= L->n) return plm_json_fail_(L, "unterminated string");
            unsigned e = L->s[L->i + 1];
            if (e == 'u') {
                unsigned u, u2;
                if (L->i + 6 > L->n || !plm_json_hex4_(L->s + L->i + 2, &u))
                    return plm_json_fail_(L, "invalid \\u escape");
                if (u >= 0xDC00 && u <= 0xDFFF) return plm_json_fail_(L, "unpaired surrogate in a \\u escape");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (L->i + 12 > L->n || L->s[L->i + 6] != '\\' || L->s[L->i + 7] != 'u' ||
                        !plm_json_hex4_(L->s + L->i + 8, &u2) || u2 < 0xDC00 || u2 > 0xDFFF)
                        return plm_json_fail_(L, "unpaired surrogate in a \\u escape");
                    L->i += 12;
                    continue;
                }
                if (u == 0 && L->nul_off == SIZE_MAX) L->nul_off = L->i;
                if (u == 0 && L->in_key && L->key_fix) {
                    L->key_fix[L->i + 5] = '1';
                    L->n_fixed++;
                }
                L->i += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", (int)e) || e == 0) return plm_json_fail_(L, "invalid escape in a string");
            L->i += 2;
            continue;
        }
        size_t k = plm_utf8_seq(L->s + L->i, L->n - L->i);
        if (!k) return plm_json_fail_(L, "invalid UTF-8 in a string");
        L->i += k;
    }
}

static inline int plm_json_digit_(plm_json_lex *L) { return L->i < L->n && L->s[L->i] >= '0' && L->s[L->i] <= '9'; }

static inline int plm_json_number_(plm_json_lex *L) {
    if (L->s[L->i] == '-') L->i++;
    if (!plm_json_digit_(L)) return plm_json_fail_(L, "invalid number");
    if (L->s[L->i] == '0') {
        L->i++;
        if (plm_json_digit_(L)) return plm_json_fail_(L, "invalid number (leading zero)");
    } else {
        while (plm_json_digit_(L)) L->i++;
    }
    if (L->i < L->n && L->s[L->i] == '.') {
        L->i++;
        if (!plm_json_digit_(L)) return plm_json_fail_(L, "invalid number (no digit after '.')");
        while (plm_json_digit_(L)) L->i++;
    }
    if (L->i < L->n && (L->s[L->i] == 'e' || L->s[L->i] == 'E')) {
        L->i++;
        if (L->i < L->n && (L->s[L->i] == '+' || L->s[L->i] == '-')) L->i++;
        if (!plm_json_digit_(L)) return plm_json_fail_(L, "invalid number (no digit in the exponent)");
        while (plm_json_digit_(L)) L->i++;
    }
    return 1;
}

static inline int plm_json_value_(plm_json_lex *L, int depth) {
    plm_json_ws_(L);
    if (L->i >= L->n) return plm_json_fail_(L, "unexpected end of input (a value is missing)");
    unsigned c = L->s[L->i];
    if (c == '"') return plm_json_string_(L);
    if (c == '-' || (c >= '0' && c <= '9')) return plm_json_number_(L);
    static const char *const words[3] = {"true", "false", "null"};
    for (int w = 0; w < 3; w++) {
        size_t k = strlen(words[w]);
        if (c == (unsigned char)words[w][0]) {
            if (L->n - L->i < k || memcmp(L->s + L->i, words[w], k)) return plm_json_fail_(L, "invalid literal");
            L->i += k;
            return 1;
        }
    }
    if (c != '{' && c != '[') return plm_json_fail_(L, "unexpected character (not the start of a value)");
    if (depth >= PLM_JSON_MAX_DEPTH) return plm_json_fail_(L, "nesting too deep");
    const unsigned close = c == '{' ? '}' : ']';
    L->i++;
    plm_json_ws_(L);
    if (L->i < L->n && L->s[L->i] == close) {
        L->i++;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            plm_json_ws_(L);
            if (L->i >= L->n || L->s[L->i] != '"') return plm_json_fail_(L, "expected a string key");
            L->in_key = 1;
            const int ok = plm_json_string_(L);
            L->in_key = 0;
            if (!ok) return 0;
            plm_json_ws_(L);
            if (L->i >= L->n || L->s[L->i] != ':') return plm_json_fail_(L, "expected ':' after a key");
            L->i++;
        }
        if (!plm_json_value_(L, depth + 1)) return 0;
        plm_json_ws_(L);
        if (L->i >= L->n) return plm_json_fail_(L, "unexpected end of input (unclosed object or array)");
        if (L->s[L->i] == ',') {
            L->i++;
            continue;
        }
        if (L->s[L->i] == close) {
            L->i++;
            return 1;
        }
        return plm_json_fail_(L, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

/* 1 when s[0, n) is exactly one JSON value with only whitespace around it. On failure *bad_off is
 * the offset of the offending byte and *why the reason. *nul_off (may be NULL): the offset of the
 * first \u0000 escape in a string (which cJSON would cut the string at), SIZE_MAX when none. */
static inline int plm_json_check(const char *s, size_t n, size_t *bad_off, const char **why, size_t *nul_off) {
    plm_json_lex L = {(const unsigned char *)s, n, 0, NULL, SIZE_MAX, 0, NULL, 0};
    int ok = plm_json_value_(&L, 0);
    if (ok) {
        plm_json_ws_(&L);
        if (L.i < n) ok = plm_json_fail_(&L, "unexpected characters after the JSON value");
    }
    if (bad_off) *bad_off = L.i;
    if (why) *why = ok ? NULL : L.why;
    if (nul_off) *nul_off = L.nul_off;
    return ok;
}

/* In s[0, n), a writable document accepted by plm_json_check: rewrites every \u0000 escape inside an
 * object key (at any depth) as \u0001, leaving string values alone; returns how many. For parsers
 * that keep U+0000 in values but cannot hold it in keys (jansson's JSON_ALLOW_NUL). */
static inline size_t plm_json_fix_key_nul(char *s, size_t n) {
    plm_json_lex L = {(const unsigned char *)s, n, 0, NULL, SIZE_MAX, 0, (unsigned char *)s, 0};
    plm_json_value_(&L, 0);
    return L.n_fixed;
}

/* 1-based line and column (in bytes) of offset off in s. */
static inline void plm_json_line_col(const char *s, size_t off, long *line, long *col) {
    long l = 1;
    size_t start = 0;
    for (size_t k = 0; k < off; k++)
        if (s[k] == '\n') {
            l++;
            start = k + 1;
        }
    *line = l;
    *col = (long)(off - start) + 1;
}

/* Decodes the string literal at s (s[0] == '"'; the document was accepted by plm_json_check) into
 * a malloc'ed buffer of *len bytes plus a terminating NUL; embedded U+0000 is kept. NULL when out
 * of memory. */
static inline char *plm_json_decode_string(const char *s, size_t n, size_t *len) {
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0, i = 1;
    while (i < n && s[i] != '"') {
        if (s[i] != '\\') {
            out[o++] = s[i++];
            continue;
        }
        char e = s[i + 1];
        i += 2;
        if (e != 'u') {
            out[o++] = e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
            continue;
        }
        unsigned u = 0, u2 = 0;
        plm_json_hex4_((const unsigned char *)s + i, &u);
        i += 4;
        if (u >= 0xD800 && u <= 0xDBFF) {
            plm_json_hex4_((const unsigned char *)s + i + 2, &u2);
            i += 6;
            u = 0x10000 + ((u - 0xD800) << 10) + (u2 - 0xDC00);
        }
        if (u < 0x80) {
            out[o++] = (char)u;
        } else if (u < 0x800) {
            out[o++] = (char)(0xC0 | (u >> 6));
            out[o++] = (char)(0x80 | (u & 0x3F));
        } else if (u < 0x10000) {
            out[o++] = (char)(0xE0 | (u >> 12));
            out[o++] = (char)(0x80 | ((u >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (u & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | (u >> 18));
            out[o++] = (char)(0x80 | ((u >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((u >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (u & 0x3F));
        }
    }
    out[o] = 0;
    *len = o;
    return out;
}

/* In a document accepted by plm_json_check whose value is an object: the number of members whose
 * (decoded) key is key, and the span [*beg, *end) of the first one's value (beg, end may be NULL).
 * 0 when absent, when the value is not an object, or out of memory. */
static inline int plm_json_member_count(const char *s, size_t n, const char *key, size_t *beg, size_t *end) {
    plm_json_lex L = {(const unsigned char *)s, n, 0, NULL, SIZE_MAX, 0, NULL, 0};
    int count = 0;
    plm_json_ws_(&L);
    if (L.i >= n || s[L.i] != '{') return 0;
    L.i++;
    for (;;) {
        plm_json_ws_(&L);
        if (L.i >= n || s[L.i] != '"') return count;
        size_t k0 = L.i;
        if (!plm_json_string_(&L)) return 0;
        size_t klen = 0;
        char *k = plm_json_decode_string(s + k0, L.i - k0, &klen);
        if (!k) return 0;
        int match = klen == strlen(key) && memcmp(k, key, klen) == 0;
        free(k);
        plm_json_ws_(&L);
        L.i++; /* ':' */
        plm_json_ws_(&L);
        size_t v0 = L.i;
        if (!plm_json_value_(&L, 0)) return 0;
        if (match && !count++) {
            if (beg) *beg = v0;
            if (end) *end = L.i;
        }
        plm_json_ws_(&L);
        if (L.i >= n || s[L.i] != ',') return count;
        L.i++;
    }
}

/* In a document accepted by plm_json_check whose value is an object: 1 when a member's key holds
 * U+0000 and reads as key up to it (what a reader that stops at NUL would take for key). */
static inline int plm_json_key_cut_at_nul(const char *s, size_t n, const char *key) {
    plm_json_lex L = {(const unsigned char *)s, n, 0, NULL, SIZE_MAX, 0, NULL, 0};
    plm_json_ws_(&L);
    if (L.i >= n || s[L.i] != '{') return 0;
    L.i++;
    for (;;) {
        plm_json_ws_(&L);
        if (L.i >= n || s[L.i] != '"') return 0;
        size_t k0 = L.i;
        if (!plm_json_string_(&L)) return 0;
        size_t klen = 0;
        char *k = plm_json_decode_string(s + k0, L.i - k0, &klen);
        if (!k) return 0;
        int cut = strlen(k) < klen && !strcmp(k, key);
        free(k);
        if (cut) return 1;
        plm_json_ws_(&L);
        L.i++; /* ':' */
        if (!plm_json_value_(&L, 0)) return 0;
        plm_json_ws_(&L);
        if (L.i >= n || s[L.i] != ',') return 0;
        L.i++;
    }
}

/* The span of the value of the first member whose key is key (see plm_json_member_count); 0 when
 * absent. */
static inline int plm_json_member(const char *s, size_t n, const char *key, size_t *beg, size_t *end) {
    return plm_json_member_count(s, n, key, beg, end) > 0;
}

#endif
