#include "cli_input.h"

#include <ctype.h>
#include <jansson.h>
#include <limits.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json_int.h"
#include "util/json_strict.h"

static plm_status fail(plm_error *err, plm_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
    return code;
}

static cli_seq *push_seq(cli_input *in, int line) {
    if (in->n == in->cap) {
        int cap = in->cap ? in->cap * 2 : 64;
        cli_seq *s = realloc(in->seq, (size_t)cap * sizeof *s);
        if (!s) return NULL;
        in->seq = s;
        in->cap = cap;
    }
    cli_seq *s = &in->seq[in->n++];
    memset(s, 0, sizeof *s);
    s->line = line;
    return s;
}

static plm_status append(cli_seq *s, const int32_t *ids, int64_t n, plm_error *err) {
    int32_t *p = realloc(s->tok, (size_t)(s->n + n) * sizeof *p);
    if (!p && s->n + n > 0) return fail(err, PLM_ERR_NOMEM, "out of memory");
    s->tok = p;
    memcpy(s->tok + s->n, ids, (size_t)n * sizeof *ids);
    s->n += n;
    return PLM_OK;
}

static plm_status check_id(int64_t v, int32_t vocab, int line, int64_t idx, plm_error *err) {
    if (v < 0 || v >= vocab)
        return fail(err, PLM_ERR_INPUT, "line %d: token id %lld at index %lld is outside the vocabulary [0, %d)",
                    line, (long long)v, (long long)idx, vocab);
    return PLM_OK;
}

static plm_status parse_ids_line(cli_input *in, const char *line, int lineno, int32_t vocab, plm_error *err) {
    size_t cap = strlen(line) / 2 + 1;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return fail(err, PLM_ERR_NOMEM, "out of memory");
    int64_t n = 0;
    const char *p = line;
    plm_status st = PLM_OK;
    while (*p && !st) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const char *tok = p;
        while (*p && !isspace((unsigned char)*p)) p++;
        int len = (int)(p - tok);
        int digits = len > 0 && len <= 12;
        for (int i = 0; digits && i < len; i++) digits = isdigit((unsigned char)tok[i]);
        if (!digits) {
            st = fail(err, PLM_ERR_INPUT, "line %d: '%.*s' at index %lld is not a token id (a non-negative integer)",
                      lineno, len > 40 ? 40 : len, tok, (long long)n);
            break;
        }
        int64_t v = strtoll(tok, NULL, 10);
        if ((st = check_id(v, vocab, lineno, n, err))) break;
        ids[n++] = (int32_t)v;
    }
    if (!st && n == 0) st = fail(err, PLM_ERR_INPUT, "line %d: empty sequence", lineno);
    if (!st) {
        cli_seq *s = push_seq(in, lineno);
        st = s ? append(s, ids, n, err) : fail(err, PLM_ERR_NOMEM, "out of memory");
    }
    free(ids);
    return st;
}

/* The literal of field[i] as written in the line (for messages; "?" if it cannot be found): the line
 * is parsed once more with cJSON, whose numbers util/json_int.h marks with their literals. Only on
 * the error path. */
static const char *float_literal(const char *line, size_t len, const char *field, int64_t i, char *buf, size_t cap) {
    snprintf(buf, cap, "?");
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!o) return buf;
    plm_json_mark_ints(line, len, o);
    const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, field), (int)i);
    const char *lit = e ? plm_json_float_literal(e) : NULL;
    if (lit) snprintf(buf, cap, "%s", lit);
    cJSON_Delete(o);
    return buf;
}

/* An array of integers (token ids or positions): JSON integers (jansson keeps integers and reals
 * apart); line, len: the JSON text, for the literal of a number written otherwise. */
static plm_status int_array(int32_t **out, int64_t *n, const json_t *a, const char *field, int lineno,
                            int64_t hi, const char *line, size_t len, plm_error *err) {
    if (!json_is_array(a)) return fail(err, PLM_ERR_INPUT, "line %d: '%s' must be a list of integers", lineno, field);
    int64_t k = (int64_t)json_array_size(a);
    int32_t *v = malloc((size_t)(k ? k : 1) * sizeof *v);
    if (!v) return fail(err, PLM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < k; i++) {
        const json_t *e = json_array_get(a, (size_t)i);
        const double d = json_is_number(e) ? json_number_value(e) : NAN;
        if (!json_is_number(e) || d != floor(d) || fabs(d) > 2e9) {
            free(v);
            return fail(err, PLM_ERR_INPUT, "line %d: %s[%lld] is not an integer", lineno, field, (long long)i);
        }
        if (json_is_real(e)) { /* 2.0: Python's json reads a float, which no embedding takes */
            char lit[64];
            free(v);
            return fail(err, PLM_ERR_INPUT,
                        "line %d: %s[%lld] = %s is not a JSON integer (written with a fraction or an exponent)", lineno,
                        field, (long long)i, float_literal(line, len, field, i, lit, sizeof lit));
        }
        if (d < 0 || d >= (double)hi) {
            free(v);
            if (hi < INT32_MAX)
                return fail(err, PLM_ERR_INPUT, "line %d: %s[%lld] = %.0f is outside the vocabulary [0, %lld)", lineno,
                            field, (long long)i, d, (long long)hi);
            return fail(err, PLM_ERR_INPUT, "line %d: %s[%lld] = %.0f is negative", lineno, field, (long long)i, d);
        }
        v[i] = (int32_t)d;
    }
    *out = v;
    *n = k;
    return PLM_OK;
}

/* line: the JSON text (from its '{' to the end of the line, n bytes); col0: the column of its
 * first byte in the file's line, for messages. The strict checker (util/json_strict.h) gives the
 * line and column of any syntax error; jansson then builds the value with JSON_ALLOW_NUL, so a
 * string keeps every character, an escaped U+0000 included (json_string_length). */
static plm_status parse_json_line(cli_input *in, const char *line, size_t len, long col0, int lineno, int32_t vocab,
                                  cli_encode_fn enc, void *enc_user, plm_error *err) {
    size_t bad = 0, nul = SIZE_MAX;
    const char *why = NULL;
    if (!plm_json_check(line, len, &bad, &why, &nul))
        return fail(err, PLM_ERR_INPUT, "line %d: malformed JSON at column %ld: %s", lineno, col0 + (long)bad, why);
    static const char *const keys[3] = {"input_ids", "position_ids", "text"};
    for (int k = 0; k < 3; k++) { /* a repeated key would be ambiguous (jansson keeps the last) */
        if (plm_json_member_count(line, len, keys[k], NULL, NULL) > 1)
            return fail(err, PLM_ERR_INPUT, "line %d: key '%s' appears twice", lineno, keys[k]);
        /* "text\u0000" reads as "text" to anything that stops at NUL */
        if (nul != SIZE_MAX && plm_json_key_cut_at_nul(line, len, keys[k]))
            return fail(err, PLM_ERR_INPUT, "line %d: a key holds \\u0000", lineno);
    }
    /* jansson keeps U+0000 in strings (JSON_ALLOW_NUL) but refuses it in keys: a key holding it is
       none of ours, so it is parsed with U+0001 instead */
    char *fixed = NULL;
    if (nul != SIZE_MAX && (fixed = malloc(len + 1))) {
        memcpy(fixed, line, len);
        fixed[len] = 0;
        plm_json_fix_key_nul(fixed, len);
    } else if (nul != SIZE_MAX) {
        return fail(err, PLM_ERR_NOMEM, "out of memory");
    }
    json_error_t jerr;
    json_t *o = json_loadb(fixed ? fixed : line, len, JSON_ALLOW_NUL | JSON_DECODE_ANY,
                           &jerr);
    free(fixed);
    if (!o) /* the checker accepted it: what is left is memory (or a limit of jansson's) */
        return fail(err, PLM_ERR_INPUT, "line %d: JSON at column %ld: %s", lineno, col0 + (long)jerr.position,
                    jerr.text);
    if (!json_is_object(o)) {
        json_decref(o);
        return fail(err, PLM_ERR_INPUT, "line %d: a JSON line must be an object", lineno);
    }
    const json_t *ids_j = json_object_get(o, "input_ids");
    const json_t *pos_j = json_object_get(o, "position_ids");
    const json_t *text_j = json_object_get(o, "text");
    int32_t *ids = NULL, *pos = NULL, *cu = NULL;
    int64_t n = 0, np = 0;
    plm_status st = PLM_OK;
    int from_text = 0;
    if (ids_j) {
        st = int_array(&ids, &n, ids_j, "input_ids", lineno, vocab, line, len, err);
    } else if (text_j) {
        if (!json_is_string(text_j)) st = fail(err, PLM_ERR_INPUT, "line %d: 'text' must be a string", lineno);
        else if (!enc) st = fail(err, PLM_ERR_INPUT, "line %d: text input needs a tokenizer (tokenizer.json in the model directory)", lineno);
        else {
            size_t nn = 0, tl = json_string_length(text_j);
            const char *text = json_string_value(text_j);
            st = enc(enc_user, text, tl, &ids, &nn, err);
            if (st) {
                char m[sizeof err->msg];
                snprintf(m, sizeof m, "%s", err->msg);
                fail(err, st, "line %d: %s", lineno, m);
            }
            n = (int64_t)nn;
            for (int64_t i = 0; !st && i < n; i++) st = check_id(ids[i], vocab, lineno, i, err);
            from_text = 1;
        }
    } else {
        st = fail(err, PLM_ERR_INPUT, "line %d: JSON line has neither 'input_ids' nor 'text'", lineno);
    }
    if (!st && n == 0) st = fail(err, PLM_ERR_INPUT, "line %d: empty sequence", lineno);
    if (!st && pos_j) {
        st = int_array(&pos, &np, pos_j, "position_ids", lineno, INT32_MAX, line, len, err);
        if (!st && np != n)
            st = fail(err, PLM_ERR_INPUT, "line %d: position_ids has %lld entries but input_ids has %lld", lineno,
                      (long long)np, (long long)n);
    }
    if (!st && pos) { /* a packed row */
        cu = malloc((size_t)(n + 1) * sizeof *cu);
        int32_t n_seg = 0;
        if (!cu) st = fail(err, PLM_ERR_NOMEM, "out of memory");
        if (!st) {
            st = plm_segments_from_positions(cu, &n_seg, pos, (int32_t)n, err);
            if (st) {
                char m[sizeof err->msg];
                snprintf(m, sizeof m, "%s", err->msg);
                fail(err, st, "line %d: %s", lineno, m);
            }
        }
        for (int32_t s = 0; !st && s < n_seg; s++) {
            int32_t p0 = pos[cu[s]];
            cli_seq *q;
            if (p0 == 0) {
                q = push_seq(in, lineno);
                if (!q) st = fail(err, PLM_ERR_NOMEM, "out of memory");
            } else {
                q = in->n ? &in->seq[in->n - 1] : NULL;
                if (!q || q->n != p0)
                    st = fail(err, PLM_ERR_INPUT,
                              "line %d: position ids jump to %d at index %d, but the sequence before it holds %lld "
                              "tokens (a segment starting at p > 0 must continue a sequence of exactly p tokens)",
                              lineno, p0, cu[s], q ? (long long)q->n : 0LL);
            }
            if (!st) st = append(q, ids + cu[s], cu[s + 1] - cu[s], err);
        }
    } else if (!st) {
        cli_seq *q = push_seq(in, lineno);
        st = q ? append(q, ids, n, err) : fail(err, PLM_ERR_NOMEM, "out of memory");
        if (!st) q->from_text = from_text;
    }
    free(ids);
    free(pos);
    free(cu);
    json_decref(o);
    return st;
}

/* Tolerant mode: undoes what a failed line added (its own sequences, tokens appended to the sequence
 * before it) and records the line as one rejected sequence. */
static plm_status reject_line(cli_input *in, int n_before, int64_t prev_n, int lineno, plm_error *err) {
    while (in->n > n_before) free(in->seq[--in->n].tok);
    if (in->n > 0 && in->seq[in->n - 1].n > prev_n) in->seq[in->n - 1].n = prev_n;
    char *msg = strdup(err->msg);
    cli_seq *s = msg ? push_seq(in, lineno) : NULL;
    if (!s) {
        free(msg);
        return fail(err, PLM_ERR_NOMEM, "out of memory");
    }
    s->error = msg;
    in->n_errors++;
    err->code = PLM_OK;
    err->msg[0] = 0;
    return PLM_OK;
}

static plm_status read_stream(cli_input *in, FILE *f, const char *name, int32_t vocab, cli_encode_fn enc,
                              void *enc_user, int tolerant, plm_error *err) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    plm_status st = PLM_OK;
    while (!st && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (lineno == INT_MAX) {
            st = fail(err, PLM_ERR_INPUT, "line %d: too many lines", lineno);
            break;
        }
        if ((size_t)len != strlen(line)) {
            st = fail(err, PLM_ERR_INPUT, "line %d: contains a NUL byte at column %zu", lineno, strlen(line) + 1);
            if (tolerant) st = reject_line(in, in->n, in->n ? in->seq[in->n - 1].n : 0, lineno, err);
            if (st) break;
            continue;
        }
        const char *p = line;
        while (isspace((unsigned char)*p)) p++;
        const int n_before = in->n;
        const int64_t prev_n = in->n ? in->seq[in->n - 1].n : 0;
        if (*p == '{')
            st = parse_json_line(in, p, (size_t)len - (size_t)(p - line), (long)(p - line) + 1, lineno, vocab, enc,
                                 enc_user, err);
        else st = parse_ids_line(in, p, lineno, vocab, err);
        if (st && tolerant && st != PLM_ERR_NOMEM) st = reject_line(in, n_before, prev_n, lineno, err);
    }
    if (!st && ferror(f)) st = fail(err, PLM_ERR_IO, "%s: read error", name);
    free(line);
    if (!st && in->n == 0) st = fail(err, PLM_ERR_INPUT, "%s: no sequences", name);
    if (st) {
        char m[sizeof err->msg];
        snprintf(m, sizeof m, "%s", err->msg);
        if (strncmp(m, name, strlen(name))) fail(err, st, "%s: %s", name, m);
        cli_input_free(in);
        return st;
    }
    for (int i = 0; i < in->n; i++) in->total += in->seq[i].n;
    return PLM_OK;
}

static plm_status read_input(cli_input *in, const char *path, int32_t vocab, cli_encode_fn enc, void *enc_user,
                             int tolerant, plm_error *err) {
    memset(in, 0, sizeof *in);
    FILE *f = fopen(path, "r");
    if (!f) return fail(err, PLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    plm_status st = read_stream(in, f, path, vocab, enc, enc_user, tolerant, err);
    fclose(f);
    return st;
}

plm_status cli_read_input_buffer(cli_input *in, const char *buf, size_t len, const char *name, int32_t vocab,
                                 cli_encode_fn enc, void *enc_user, int tolerant, plm_error *err) {
    memset(in, 0, sizeof *in);
    if (len == 0) return fail(err, PLM_ERR_INPUT, "%s: no sequences", name);
    FILE *f = fmemopen((void *)buf, len, "r");
    if (!f) return fail(err, PLM_ERR_NOMEM, "%s: cannot read from memory: %s", name, strerror(errno));
    plm_status st = read_stream(in, f, name, vocab, enc, enc_user, tolerant, err);
    fclose(f);
    return st;
}

plm_status cli_read_input(cli_input *in, const char *path, int32_t vocab, cli_encode_fn enc, void *enc_user,
                          plm_error *err) {
    return read_input(in, path, vocab, enc, enc_user, 0, err);
}

plm_status cli_read_input_tolerant(cli_input *in, const char *path, int32_t vocab, cli_encode_fn enc,
                                   void *enc_user, plm_error *err) {
    return read_input(in, path, vocab, enc, enc_user, 1, err);
}

void cli_input_free(cli_input *in) {
    for (int i = 0; i < in->n; i++) {
        free(in->seq[i].tok);
        free(in->seq[i].error);
    }
    free(in->seq);
    memset(in, 0, sizeof *in);
}
