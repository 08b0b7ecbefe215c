/* packlm tokenize: encode texts to ids, or decode ids to texts. */
#include "packlm.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "util/json_strict.h"

int cmd_tokenize(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f,
            "usage: packlm tokenize (--model DIR | --tokenizer FILE) --input FILE [--decode]\n"
            "\n"
            "Encodes each text of FILE and prints one line of space-separated token ids per text.\n"
            "FILE holds one text a line: a JSON object {\"text\": \"...\"} (JSONL), or else the\n"
            "line itself as plain text (without its line ending). FILE may be - for stdin.\n"
            "Special tokens written in a text (e.g. <|im_start|>) become their ids.\n"
            "\n"
            "  --model DIR       use DIR/tokenizer.json (and DIR/tokenizer_config.json)\n"
            "  --tokenizer FILE  use this tokenizer.json\n"
            "  --input FILE      the texts (or, with --decode, the ids)\n"
            "  --decode          read lines of ids (space or comma separated) and print one\n"
            "                    JSON line {\"text\": \"...\"} per line\n"
            "  --help            this text\n");
}

static int fail(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "packlm tokenize: error: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 1;
}

/* JSON string with explicit length (NUL and control characters escaped) */
static void put_json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (c < 0x20) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

static int encode_line(const plm_tokenizer *t, char *line, size_t n, size_t lineno, FILE *out) {
    const char *text = line;
    size_t len = n;
    json_t *doc = NULL;
    if (n && line[0] == '{') {
        /* a JSON object with a string "text" (jansson with JSON_ALLOW_NUL: an escaped U+0000 stays in
         * the text); a complete object followed by more than whitespace is an error, not a text;
         * anything else that starts with '{' is a plain-text line */
        size_t bad = 0;
        const char *why = NULL;
        if (plm_json_check(line, n, &bad, &why, NULL)) {
            json_error_t jerr;
            doc = json_loadb(line, n, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
            if (!doc) {
                fprintf(stderr, "packlm tokenize: error: line %zu: %s\n", lineno, jerr.text);
                return 1;
            }
            const json_t *tj = json_object_get(doc, "text");
            if (json_is_string(tj)) {
                text = json_string_value(tj);
                len = json_string_length(tj);
            }
        } else if (!strcmp(why, "unexpected characters after the JSON value")) {
            fprintf(stderr, "packlm tokenize: error: line %zu: malformed JSON at column %zu: %s\n", lineno, bad + 1, why);
            return 1;
        }
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    plm_error err = {0};
    plm_status st = plm_tokenizer_encode(t, text, len, &ids, &n_ids, &err);
    json_decref(doc);
    if (st) {
        fprintf(stderr, "packlm tokenize: error: line %zu: %s\n", lineno, err.msg);
        return 1;
    }
    for (size_t i = 0; i < n_ids; i++) fprintf(out, i ? " %d" : "%d", ids[i]);
    fputc('\n', out);
    free(ids);
    return 0;
}

static int decode_line(const plm_tokenizer *t, const char *line, size_t lineno, FILE *out) {
    size_t cap = 256, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return fail("out of memory%s%s", "", "");
    const char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',' || *p == '[' || *p == ']' || *p == '\r' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX) {
            fprintf(stderr, "packlm tokenize: error: line %zu: not a token id: \"%.20s\"\n", lineno, p);
            free(ids);
            return 1;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *ni = realloc(ids, cap * sizeof *ids);
            if (!ni) {
                free(ids);
                return fail("out of memory%s%s", "", "");
            }
            ids = ni;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    char *text = NULL;
    size_t len = 0;
    plm_error err = {0};
    plm_status st = plm_tokenizer_decode(t, ids, n, &text, &len, &err);
    free(ids);
    if (st) {
        fprintf(stderr, "packlm tokenize: error: line %zu: %s\n", lineno, err.msg);
        return 1;
    }
    fputs("{\"text\": ", out);
    put_json_string(out, text, len);
    fputs("}\n", out);
    free(text);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *tok_path = NULL, *input = NULL;
    bool decode = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--decode")) {
            decode = true;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--tokenizer") || !strcmp(a, "--input")) {
            if (i + 1 >= argc) {
                fail("%s needs a value%s", a, "");
                usage(stderr);
                return 2;
            }
            const char **dst = !strcmp(a, "--model") ? &model : !strcmp(a, "--tokenizer") ? &tok_path : &input;
            *dst = argv[++i];
        } else {
            fail("unknown argument \"%s\"%s", a, "");
            usage(stderr);
            return 2;
        }
    }
    if ((!model) == (!tok_path) || !input) {
        fail("%s%s", !input ? "--input is required" : "give exactly one of --model and --tokenizer", "");
        usage(stderr);
        return 2;
    }
    char *path = NULL;
    if (model) {
        size_t l = strlen(model);
        path = malloc(l + 32);
        if (!path) return fail("out of memory%s%s", "", "");
        snprintf(path, l + 32, "%s%stokenizer.json", model, l && model[l - 1] == '/' ? "" : "/");
    }
    plm_tokenizer *t = NULL;
    plm_error err = {0};
    if (plm_tokenizer_open(&t, path ? path : tok_path, &err)) {
        free(path);
        return fail("%s%s", err.msg, "");
    }
    free(path);
    FILE *in = strcmp(input, "-") ? fopen(input, "rb") : stdin;
    if (!in) {
        plm_tokenizer_free(t);
        return fail("cannot open %s: %s", input, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n') len--;
        if (len && line[len - 1] == '\r') len--;
        line[len] = 0;
        rc = decode ? decode_line(t, line, lineno, stdout) : encode_line(t, line, len, lineno, stdout);
    }
    if (!rc && ferror(in)) rc = fail("cannot read %s%s", input, "");
    if (in != stdin) fclose(in);
    free(line);
    plm_tokenizer_free(t);
    if (!rc && fflush(stdout)) rc = fail("cannot write the output%s%s", "", "");
    return rc;
}
