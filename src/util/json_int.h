/* Integers in JSON must be integers: a field the reference readers take as an integer (safetensors'
 * shapes and data offsets, serde usize; config.json's sizes, which Python's json turns into float
 * for "2.0") must be written as a JSON integer, -?(0|[1-9][0-9]*), not with a fraction or an
 * exponent ("8.0", "1e3"), even when the value is integral.
 *
 * cJSON keeps only the double, so the text is walked once more after parsing, alongside the tree:
 * every number item is marked PLM_JSON_INT when its literal is an integer, and a number written
 * otherwise keeps its literal in valuestring (freed by cJSON_Delete) for messages. The document must
 * have passed plm_json_check (util/json_strict.h) and the tree come from cJSON_ParseWithLength on
 * the same bytes: both then hold the same values in the same order (duplicate keys included).
 *
 * Header-only (static inline), like json_strict.h. */
#ifndef PLM_UTIL_JSON_INT_H
#define PLM_UTIL_JSON_INT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A type flag bit cJSON leaves alone (it uses 0xFF for the kind, 256 and 512 for its own flags). */
#define PLM_JSON_INT (1 << 14)

static inline size_t plm_json_mark_ws_(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

static inline size_t plm_json_mark_str_(const char *s, size_t n, size_t i) {
    i++; /* the opening quote */
    while (i < n && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
    return i + 1;
}

/* Walks the value at s[i] together with item; returns the offset after it. */
static inline size_t plm_json_mark_(const char *s, size_t n, size_t i, cJSON *item) {
    i = plm_json_mark_ws_(s, n, i);
    if (i >= n || !item) return n;
    const char c = s[i];
    if (c == '{' || c == '[') {
        const char close = c == '{' ? '}' : ']';
        cJSON *ch = item->child;
        i = plm_json_mark_ws_(s, n, i + 1);
        if (i < n && s[i] == close) return i + 1;
        while (i < n) {
            if (c == '{') {
                i = plm_json_mark_ws_(s, n, plm_json_mark_str_(s, n, plm_json_mark_ws_(s, n, i)));
                i++; /* ':' */
            }
            i = plm_json_mark_ws_(s, n, plm_json_mark_(s, n, i, ch));
            ch = ch ? ch->next : NULL;
            if (i < n && s[i] == ',') {
                i++;
                continue;
            }
            return i + 1; /* the closing bracket */
        }
        return n;
    }
    if (c == '"') return plm_json_mark_str_(s, n, i);
    if (c == 't' || c == 'f' || c == 'n') {
        while (i < n && s[i] >= 'a' && s[i] <= 'z') i++;
        return i;
    }
    size_t b = i;
    int integer = 1;
    while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '+' || s[i] == '.' || s[i] == 'e' ||
                     s[i] == 'E')) {
        if (s[i] == '.' || s[i] == 'e' || s[i] == 'E') integer = 0;
        i++;
    }
    if (cJSON_IsNumber(item)) {
        if (integer) {
            item->type |= PLM_JSON_INT;
        } else if (!item->valuestring) {
            char *lit = (char *)malloc(i - b + 1);
            if (lit) {
                memcpy(lit, s + b, i - b);
                lit[i - b] = 0;
                item->valuestring = lit;
            }
        }
    }
    return i;
}

/* Marks the integer literals of root, the tree of s[0..n) (see above). */
static inline void plm_json_mark_ints(const char *s, size_t n, cJSON *root) { plm_json_mark_(s, n, 0, root); }

/* v is a number written as a JSON integer. */
static inline int plm_json_is_int(const cJSON *v) { return cJSON_IsNumber(v) && (v->type & PLM_JSON_INT); }

/* The literal of a number written with a fraction or an exponent, else NULL. */
static inline const char *plm_json_float_literal(const cJSON *v) {
    return cJSON_IsNumber(v) && !(v->type & PLM_JSON_INT) ? v->valuestring : NULL;
}

#endif
