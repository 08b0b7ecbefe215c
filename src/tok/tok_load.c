/* Loading tokenizer.json (+ tokenizer_config.json): vocabulary, merges, added tokens, normalizer,
 * pre-tokenizer, decoder. Every rule comes from the file; anything not implemented is refused by
 * name with PLM_ERR_UNSUPPORTED. */
#include "tok/tok_internal.h"
#include "util/error.h"
#include "util/json_int.h"
#include "util/json_strict.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- byte-level alphabet */
/* GPT-2 bytes_to_unicode: printable bytes map to themselves, the others to U+0100 onwards. */
static void bytelevel_maps(int32_t b2u[256], int16_t u2b[324]) {
    for (int i = 0; i < 324; i++) u2b[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        b2u[b] = keep ? b : 256 + n++;
        u2b[b2u[b]] = (int16_t)b;
    }
}

/* Decodes a byte-level string into raw bytes (out needs n bytes). Returns the byte count, or -1
 * when a character is not in the byte-level alphabet (or s is not valid UTF-8). */
static long bytelevel_decode(const int16_t u2b[324], const char *s, size_t n, char *out) {
    if (tok_utf8_check(s, n) != n) return -1;
    size_t i = 0, o = 0;
    while (i < n) {
        int32_t cp;
        i += (size_t)tok_utf8_next((const unsigned char *)s + i, &cp);
        if (cp >= 324 || u2b[cp] < 0) return -1;
        out[o++] = (char)u2b[cp];
    }
    return (long)o;
}

/* ---------------------------------------------------------------- string tables */
static plm_status strtab_init(tok_strtab *t, int32_t n_ids, size_t n_keys, plm_error *err) {
    memset(t, 0, sizeof *t);
    uint32_t cap = 16;
    while (cap < 2 * n_keys + 16) cap *= 2;
    t->off = malloc(sizeof *t->off * (size_t)(n_ids > 0 ? n_ids : 1));
    t->len = calloc((size_t)(n_ids > 0 ? n_ids : 1), sizeof *t->len);
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->off || !t->len || !t->slots) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < n_ids; i++) t->off[i] = UINT32_MAX;
    t->mask = cap - 1;
    return PLM_OK;
}

static void strtab_free(tok_strtab *t) {
    free(t->pool);
    free(t->off);
    free(t->len);
    free(t->slots);
}

int32_t tok_strtab_find(const tok_strtab *t, const char *s, size_t n) {
    uint32_t i = (uint32_t)tok_hash_bytes(s, n) & t->mask;
    for (;;) {
        int32_t v = t->slots[i];
        if (!v) return -1;
        int32_t id = v - 1;
        if (t->len[id] == n && memcmp(t->pool + t->off[id], s, n) == 0) return id;
        i = (i + 1) & t->mask;
    }
}

/* Adds string s for id. Returns 1 if added, 0 if the id already has a string or the string is
 * already present (*other = its id; with keep_dup the string is still stored for id, unindexed),
 * -1 when out of memory. */
static int strtab_add(tok_strtab *t, int32_t id, const char *s, size_t n, int32_t *other,
                      bool keep_dup) {
    *other = -1;
    if (t->off[id] != UINT32_MAX) {
        *other = id;
        return 0;
    }
    int32_t f = tok_strtab_find(t, s, n);
    if (f >= 0) {
        *other = f;
        if (!keep_dup) return 0;
    }
    if (t->pool_len + n + 1 > t->pool_cap || !t->pool) {
        size_t cap = t->pool_cap ? t->pool_cap : 1 << 16;
        while (cap < t->pool_len + n + 1) cap *= 2;
        if (cap > UINT32_MAX) return -1;
        char *p = realloc(t->pool, cap);
        if (!p) return -1;
        t->pool = p;
        t->pool_cap = cap;
    }
    memcpy(t->pool + t->pool_len, s, n);
    t->pool[t->pool_len + n] = 0;
    t->off[id] = (uint32_t)t->pool_len;
    t->len[id] = (uint32_t)n;
    t->pool_len += n + 1;
    if (f >= 0) return 0;
    uint32_t i = (uint32_t)tok_hash_bytes(s, n) & t->mask;
    while (t->slots[i]) i = (i + 1) & t->mask;
    t->slots[i] = id + 1;
    return 1;
}

/* ---------------------------------------------------------------- helpers */
static plm_status read_file(const char *path, char **data, size_t *len, bool missing_ok,
                            plm_error *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (missing_ok && errno == ENOENT) return PLM_OK;
        return plm_fail(err, PLM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return plm_fail(err, PLM_ERR_NOMEM, "out of memory reading %s", path);
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb) free(buf);
        buf = nb;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return plm_fail(err, PLM_ERR_IO, "cannot read %s", path);
    }
    *data = buf;
    *len = n;
    return PLM_OK;
}

static const char *jtype(const cJSON *o) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

/* an id: a JSON integer (util/json_int.h marks them: "5.0" is refused as the reference's serde u32
 * refuses it) in [0, 2^28) */
static bool jint(const cJSON *v, int32_t *out) {
    if (!cJSON_IsNumber(v) || !plm_json_is_int(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d < (1 << 28)) || d != (double)(int32_t)d) return false;
    *out = (int32_t)d;
    return true;
}

/* "<|x|>" or {"content": "<|x|>"} */
static const char *token_spec(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

/* ---------------------------------------------------------------- sections */
static plm_status parse_normalizer(plm_tokenizer *t, const cJSON *n, plm_error *err) {
    if (!n || cJSON_IsNull(n)) return PLM_OK;
    const char *type = jtype(n);
    if (!type) return plm_fail(err, PLM_ERR_FORMAT, "normalizer has no type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list))
            return plm_fail(err, PLM_ERR_FORMAT, "normalizer Sequence without a normalizers list");
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            if (cJSON_IsObject(it) && jtype(it) && !strcmp(jtype(it), "Sequence"))
                return plm_fail(err, PLM_ERR_UNSUPPORTED, "nested normalizer Sequence not supported");
            plm_status s = parse_normalizer(t, it, err);
            if (s) return s;
        }
        return PLM_OK;
    }
    tok_norm_kind k;
    if (!strcmp(type, "NFC")) k = TOK_NORM_NFC;
    else if (!strcmp(type, "NFD")) k = TOK_NORM_NFD;
    else if (!strcmp(type, "NFKC")) k = TOK_NORM_NFKC;
    else if (!strcmp(type, "NFKD")) k = TOK_NORM_NFKD;
    else return plm_fail(err, PLM_ERR_UNSUPPORTED, "normalizer type \"%s\" not supported", type);
    if (t->n_norms >= TOK_MAX_NORMS) return plm_fail(err, PLM_ERR_UNSUPPORTED, "too many normalizers");
    t->norms[t->n_norms++] = k;
    return PLM_OK;
}

static plm_status compile_regex(tok_pretok_step *st, const char *pat, size_t len, bool literal,
                                plm_error *err) {
    int ec;
    PCRE2_SIZE eo;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    st->re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &ec, &eo, NULL);
    if (!st->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return plm_fail(err, PLM_ERR_UNSUPPORTED,
                        "pre_tokenizer Split regex does not compile with PCRE2 at offset %zu: %s",
                        (size_t)eo, (const char *)msg);
    }
    st->jit = pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE) == 0;
    return PLM_OK;
}

static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static plm_status parse_pretok(plm_tokenizer *t, const cJSON *p, plm_error *err) {
    if (!p || cJSON_IsNull(p)) return PLM_OK;
    const char *type = jtype(p);
    if (!type) return plm_fail(err, PLM_ERR_FORMAT, "pre_tokenizer has no type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return plm_fail(err, PLM_ERR_FORMAT, "pre_tokenizer Sequence without a pretokenizers list");
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            if (cJSON_IsObject(it) && jtype(it) && !strcmp(jtype(it), "Sequence"))
                return plm_fail(err, PLM_ERR_UNSUPPORTED, "nested pre_tokenizer Sequence not supported");
            plm_status s = parse_pretok(t, it, err);
            if (s) return s;
        }
        return PLM_OK;
    }
    if (t->n_steps >= TOK_MAX_STEPS) return plm_fail(err, PLM_ERR_UNSUPPORTED, "too many pre_tokenizers");
    tok_pretok_step *st = &t->steps[t->n_steps];
    memset(st, 0, sizeof *st);
    if (!strcmp(type, "ByteLevel")) {
        st->is_bytelevel = true;
        st->add_prefix_space = jbool(p, "add_prefix_space", true);
        st->behavior = TOK_SPLIT_ISOLATED;
        t->n_steps++;
        if (jbool(p, "use_regex", true))
            return compile_regex(st, GPT2_REGEX, sizeof GPT2_REGEX - 1, false, err);
        return PLM_OK;
    }
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        if (!cJSON_IsString(b))
            return plm_fail(err, PLM_ERR_FORMAT, "pre_tokenizer Split has no behavior");
        const char *bs = b->valuestring;
        if (!strcmp(bs, "Isolated")) st->behavior = TOK_SPLIT_ISOLATED;
        else if (!strcmp(bs, "Removed")) st->behavior = TOK_SPLIT_REMOVED;
        else if (!strcmp(bs, "MergedWithPrevious")) st->behavior = TOK_SPLIT_MERGED_PREV;
        else if (!strcmp(bs, "MergedWithNext")) st->behavior = TOK_SPLIT_MERGED_NEXT;
        else if (!strcmp(bs, "Contiguous")) st->behavior = TOK_SPLIT_CONTIGUOUS;
        else return plm_fail(err, PLM_ERR_UNSUPPORTED, "pre_tokenizer Split behavior \"%s\" not supported", bs);
        st->invert = jbool(p, "invert", false);
        t->n_steps++;
        if (cJSON_IsString(re)) return compile_regex(st, re->valuestring, strlen(re->valuestring), false, err);
        if (cJSON_IsString(str)) return compile_regex(st, str->valuestring, strlen(str->valuestring), true, err);
        return plm_fail(err, PLM_ERR_FORMAT, "pre_tokenizer Split has no Regex or String pattern");
    }
    return plm_fail(err, PLM_ERR_UNSUPPORTED, "pre_tokenizer type \"%s\" not supported", type);
}

static plm_status check_decoder(const cJSON *d, plm_error *err) {
    const char *type = d && !cJSON_IsNull(d) ? jtype(d) : "null";
    if (!type) return plm_fail(err, PLM_ERR_FORMAT, "decoder has no type");
    if (!strcmp(type, "ByteLevel")) return PLM_OK;
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders");
        const cJSON *it;
        int n = 0;
        cJSON_ArrayForEach(it, list) {
            const char *ty = cJSON_IsObject(it) ? jtype(it) : NULL;
            if (!ty || strcmp(ty, "ByteLevel"))
                return plm_fail(err, PLM_ERR_UNSUPPORTED, "decoder \"%s\" in Sequence not supported",
                                ty ? ty : "?");
            n++;
        }
        if (n) return PLM_OK;
    }
    return plm_fail(err, PLM_ERR_UNSUPPORTED, "decoder type \"%s\" not supported (ByteLevel only)", type);
}

static int cmp_added_len(const void *a, const void *b, void *ctx) {
    const tok_added *ad = ctx;
    const tok_added *x = &ad[*(const int32_t *)a], *y = &ad[*(const int32_t *)b];
    if (x->content[0] != y->content[0]) return (unsigned char)x->content[0] - (unsigned char)y->content[0];
    return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

static plm_status build_matcher(tok_matcher *m, const plm_tokenizer *t, bool normalized,
                                plm_error *err) {
    m->idx = malloc(sizeof(int32_t) * (size_t)(t->n_added + 1));
    if (!m->idx) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    m->n = 0;
    for (int i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        if (a->normalized != normalized || a->len == 0) continue;
        if (a->special && t->split_special_tokens) continue;
        m->idx[m->n++] = i;
    }
    qsort_r(m->idx, (size_t)m->n, sizeof(int32_t), cmp_added_len, t->added);
    int j = 0;
    for (int b = 0; b < 256; b++) {
        m->start[b] = (uint32_t)j;
        while (j < m->n && (unsigned char)t->added[m->idx[j]].content[0] == b) j++;
    }
    m->start[256] = (uint32_t)j;
    return PLM_OK;
}

/* ---------------------------------------------------------------- the loader */
typedef struct {
    const char *content;
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} added_spec;

static plm_status add_spec(added_spec **specs, int *n, const cJSON *o, int32_t id_hint,
                           plm_error *err) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "content");
    int32_t id = id_hint;
    if (id < 0 && !jint(cJSON_GetObjectItemCaseSensitive(o, "id"), &id))
        return plm_fail(err, PLM_ERR_FORMAT, "added token without a valid id");
    if (!cJSON_IsString(c)) return plm_fail(err, PLM_ERR_FORMAT, "added token %d has no content", id);
    for (int i = 0; i < *n; i++)
        if ((*specs)[i].id == id) {
            if (strcmp((*specs)[i].content, c->valuestring))
                return plm_fail(err, PLM_ERR_FORMAT, "added token %d is both \"%s\" and \"%s\"", id,
                                (*specs)[i].content, c->valuestring);
            return PLM_OK;
        }
    added_spec *ns = realloc(*specs, sizeof **specs * (size_t)(*n + 1));
    if (!ns) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    *specs = ns;
    added_spec *s = &ns[(*n)++];
    s->content = c->valuestring;
    s->id = id;
    bool special = jbool(o, "special", false);
    s->special = special;
    s->single_word = jbool(o, "single_word", false);
    s->lstrip = jbool(o, "lstrip", false);
    s->rstrip = jbool(o, "rstrip", false);
    s->normalized = jbool(o, "normalized", !special);
    return PLM_OK;
}

static plm_status load(plm_tokenizer *t, cJSON *root, cJSON *cfg, plm_error *err) {
    plm_status st;
    if (!cJSON_IsObject(root)) return plm_fail(err, PLM_ERR_FORMAT, "tokenizer.json is not a JSON object");
    const cJSON *trunc = cJSON_GetObjectItemCaseSensitive(root, "truncation");
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "padding");
    if (trunc && !cJSON_IsNull(trunc)) return plm_fail(err, PLM_ERR_UNSUPPORTED, "truncation settings not supported");
    if (pad && !cJSON_IsNull(pad)) return plm_fail(err, PLM_ERR_UNSUPPORTED, "padding settings not supported");

    /* model */
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return plm_fail(err, PLM_ERR_FORMAT, "tokenizer.json has no model");
    const char *mtype = jtype(model);
    if (mtype && strcmp(mtype, "BPE"))
        return plm_fail(err, PLM_ERR_UNSUPPORTED, "model type \"%s\" not supported (BPE only)", mtype);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab)) return plm_fail(err, PLM_ERR_FORMAT, "model has no vocab object");
    if (!cJSON_IsArray(merges)) return plm_fail(err, PLM_ERR_FORMAT, "model has no merges list");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble != 0.0 && dropout->valuedouble != 1.0)
        return plm_fail(err, PLM_ERR_UNSUPPORTED, "BPE dropout not supported");
    const char *sfx[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, sfx[i]);
        if (cJSON_IsString(v) && v->valuestring[0])
            return plm_fail(err, PLM_ERR_UNSUPPORTED, "BPE %s not supported", sfx[i]);
    }
    if (jbool(model, "byte_fallback", false))
        return plm_fail(err, PLM_ERR_UNSUPPORTED, "BPE byte_fallback not supported");
    t->ignore_merges = jbool(model, "ignore_merges", false);
    t->fuse_unk = jbool(model, "fuse_unk", false);

    /* added tokens: tokenizer.json, then tokenizer_config.json's added_tokens_decoder */
    added_spec *specs = NULL;
    int n_specs = 0;
    const cJSON *alist = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *it;
    st = PLM_OK;
    cJSON_ArrayForEach(it, alist) {
        if ((st = add_spec(&specs, &n_specs, it, -1, err))) break;
    }
    const cJSON *dec = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder") : NULL;
    if (!st && cJSON_IsObject(dec)) {
        cJSON_ArrayForEach(it, dec) {
            char *end;
            long id = strtol(it->string, &end, 10);
            if (*end || id < 0 || id >= (1 << 28)) {
                st = plm_fail(err, PLM_ERR_FORMAT, "tokenizer_config.json: bad added token id \"%s\"", it->string);
                break;
            }
            if ((st = add_spec(&specs, &n_specs, it, (int32_t)id, err))) break;
        }
    }
    if (st) {
        free(specs);
        return st;
    }

    /* id range */
    int32_t max_id = -1;
    size_t n_vocab = 0;
    cJSON_ArrayForEach(it, vocab) {
        int32_t id;
        if (!jint(it, &id)) {
            free(specs);
            if (cJSON_IsNumber(it) && !plm_json_is_int(it))
                return plm_fail(err, PLM_ERR_FORMAT, "vocab entry \"%.100s\": id %s is not a JSON integer (written with a "
                                "fraction or an exponent)", it->string ? it->string : "?",
                                plm_json_float_literal(it) ? plm_json_float_literal(it) : "?");
            return plm_fail(err, PLM_ERR_FORMAT, "vocab entry has a bad id");
        }
        if (id > max_id) max_id = id;
        n_vocab++;
    }
    for (int i = 0; i < n_specs; i++)
        if (specs[i].id > max_id) max_id = specs[i].id;
    t->n_ids = max_id + 1;
    if (t->n_ids <= 0) {
        free(specs);
        return plm_fail(err, PLM_ERR_FORMAT, "empty vocabulary");
    }

    if ((st = strtab_init(&t->str, t->n_ids, n_vocab + (size_t)n_specs, err)) ||
        (st = strtab_init(&t->raw, t->n_ids, n_vocab, err))) {
        free(specs);
        return st;
    }
    t->in_vocab = calloc((size_t)t->n_ids, sizeof(bool));
    if (!t->in_vocab) {
        free(specs);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    }
    bool *in_vocab = t->in_vocab;
    int32_t b2u[256];
    int16_t u2b[324];
    bytelevel_maps(b2u, u2b);
    size_t maxlen = 0;
    cJSON_ArrayForEach(it, vocab) {
        int32_t id = 0, other;
        jint(it, &id);
        size_t n = strlen(it->string);
        int r = strtab_add(&t->str, id, it->string, n, &other, false);
        in_vocab[id] = true;
        if (r < 0) st = plm_fail(err, PLM_ERR_NOMEM, "out of memory");
        else if (r == 0) st = plm_fail(err, PLM_ERR_FORMAT, "vocab: token \"%.100s\" (id %d) clashes with id %d", it->string, id, other);
        if (st) break;
        if (n > maxlen) maxlen = n;
    }
    if (st) {
        free(specs);
        return st;
    }

    /* decoded bytes of every id; raw-bytes table of the model vocabulary */
    t->dec_off = malloc(sizeof(uint32_t) * (size_t)t->n_ids);
    t->dec_len = calloc((size_t)t->n_ids, sizeof(uint32_t));
    t->is_added = calloc((size_t)t->n_ids, sizeof(bool));
    t->added = calloc((size_t)(n_specs + 1), sizeof(tok_added));
    for (int i = 0; i < n_specs; i++) {
        size_t n = strlen(specs[i].content);
        if (n > maxlen) maxlen = n;
    }
    char *tmp = malloc(maxlen + 1);
    size_t dcap = t->str.pool_len + 1024, dlen = 0;
    t->dec_pool = malloc(dcap);
    if (!t->dec_off || !t->dec_len || !t->is_added || !t->added || !tmp || !t->dec_pool) {
        free(specs);
        free(tmp);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i < t->n_ids; i++) t->dec_off[i] = UINT32_MAX;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (int i = 0; i < n_specs; i++) {
        tok_added *a = &t->added[t->n_added++];
        a->len = strlen(specs[i].content);
        a->content = malloc(a->len + 1);
        if (!a->content) {
            free(specs);
            free(tmp);
            return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
        }
        memcpy(a->content, specs[i].content, a->len + 1);
        a->id = specs[i].id;
        a->single_word = specs[i].single_word;
        a->lstrip = specs[i].lstrip;
        a->rstrip = specs[i].rstrip;
        a->normalized = specs[i].normalized;
        a->special = specs[i].special;
        t->is_added[a->id] = true;
        if (tok_utf8_check(a->content, a->len) != a->len) st = plm_fail(err, PLM_ERR_FORMAT, "added token %d is not valid UTF-8", a->id);
        int32_t other;
        if (!st && t->str.off[a->id] != UINT32_MAX &&
            (t->str.len[a->id] != a->len || memcmp(t->str.pool + t->str.off[a->id], a->content, a->len)))
            st = plm_fail(err, PLM_ERR_FORMAT, "added token %d \"%s\" differs from the vocab's \"%s\"",
                          a->id, a->content, t->str.pool + t->str.off[a->id]);
        if (!st && strtab_add(&t->str, a->id, a->content, a->len, &other, true) < 0) st = plm_fail(err, PLM_ERR_NOMEM, "out of memory");
        if (st) {
            free(specs);
            free(tmp);
            return st;
        }
    }
    free(specs);
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (t->str.off[id] == UINT32_MAX) continue;
        const char *s = t->str.pool + t->str.off[id];
        size_t n = t->str.len[id];
        long nb = bytelevel_decode(u2b, s, n, tmp);
        bool raw = nb >= 0;
        if (!raw) { /* not a byte-level string: decodes to itself */
            memcpy(tmp, s, n);
            nb = (long)n;
        }
        if (dlen + (size_t)nb > dcap) {
            while (dlen + (size_t)nb > dcap) dcap *= 2;
            char *p = realloc(t->dec_pool, dcap);
            if (!p) {
                free(tmp);
                return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
            }
            t->dec_pool = p;
        }
        memcpy(t->dec_pool + dlen, tmp, (size_t)nb);
        t->dec_off[id] = (uint32_t)dlen;
        t->dec_len[id] = (uint32_t)nb;
        dlen += (size_t)nb;
        if (raw && nb > 0 && in_vocab[id]) {
            int32_t other;
            if (strtab_add(&t->raw, id, tmp, (size_t)nb, &other, false) < 0) {
                free(tmp);
                return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
            }
            if (nb == 1) t->byte_id[(unsigned char)tmp[0]] = id;
        }
    }
    free(tmp);
    if (t->dec_pool && dlen > UINT32_MAX) return plm_fail(err, PLM_ERR_FORMAT, "vocabulary too large");

    /* unk */
    t->unk_id = -1;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        t->unk_id = tok_strtab_find(&t->str, unk->valuestring, strlen(unk->valuestring));
        if (t->unk_id < 0) return plm_fail(err, PLM_ERR_FORMAT, "unk_token \"%s\" is not in the vocab", unk->valuestring);
    }

    /* merges */
    size_t n_m = (size_t)cJSON_GetArraySize(merges), cap = 16;
    while (cap < 2 * n_m + 16) cap *= 2;
    t->merges = malloc(sizeof(tok_merge) * cap);
    if (!t->merges) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < cap; i++) t->merges[i].key = UINT64_MAX;
    t->merge_mask = (uint32_t)(cap - 1);
    char *buf = NULL;
    size_t bcap = 0;
    uint32_t rank = 0;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            const char *s = it->valuestring, *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                free(buf);
                return plm_fail(err, PLM_ERR_FORMAT, "merge %u \"%.100s\" is not two tokens", rank, s);
            }
            a = s, la = (size_t)(sp - s), b = sp + 1, lb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 0)) && cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring, la = strlen(a);
            b = cJSON_GetArrayItem(it, 1)->valuestring, lb = strlen(b);
        } else {
            free(buf);
            return plm_fail(err, PLM_ERR_FORMAT, "merge %u is neither \"a b\" nor [a, b]", rank);
        }
        if (!buf || la + lb > bcap) { /* allocated even for two empty parts: memcpy never sees NULL */
            bcap = 2 * (la + lb) + 64;
            char *nb = realloc(buf, bcap);
            if (!nb) {
                free(buf);
                return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
            }
            buf = nb;
        }
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int32_t ia = tok_strtab_find(&t->str, a, la), ib = tok_strtab_find(&t->str, b, lb);
        int32_t im = tok_strtab_find(&t->str, buf, la + lb);
        if (ia < 0 || ib < 0 || im < 0 || !in_vocab[ia] || !in_vocab[ib] || !in_vocab[im]) {
            plm_status s = plm_fail(err, PLM_ERR_FORMAT, "merge %u (\"%.*s\" \"%.*s\"): %s not in the vocab",
                                    rank, (int)(la > 60 ? 60 : la), a, (int)(lb > 60 ? 60 : lb), b,
                                    ia < 0 || ib < 0 ? "a part is" : "the result is");
            free(buf);
            return s;
        }
        uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        uint32_t i = (uint32_t)tok_hash_pair(ia, ib) & t->merge_mask;
        while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
        if (t->merges[i].key == UINT64_MAX) { /* the first (lowest-ranked) occurrence wins */
            t->merges[i].key = key;
            t->merges[i].rank = rank;
            t->merges[i].id = im;
            t->n_merges++;
        }
        rank++;
    }
    free(buf);

    /* pipeline */
    if ((st = parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err))) return st;
    if ((st = parse_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err))) return st;
    bool bytelevel = false;
    for (int i = 0; i < t->n_steps; i++) bytelevel |= t->steps[i].is_bytelevel;
    if (!bytelevel)
        return plm_fail(err, PLM_ERR_UNSUPPORTED,
                        "pre_tokenizer has no ByteLevel step: only byte-level BPE is supported");
    if ((st = check_decoder(cJSON_GetObjectItemCaseSensitive(root, "decoder"), err))) return st;
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (post && !cJSON_IsNull(post)) {
        const char *pt = jtype(post);
        if (!pt || strcmp(pt, "ByteLevel"))
            return plm_fail(err, PLM_ERR_UNSUPPORTED, "post_processor type \"%s\" not supported (ByteLevel only)",
                            pt ? pt : "?");
    }
    if (t->n_norms == 1 && t->norms[0] == TOK_NORM_NFC && (st = tok_nfc_table(&t->nfc_unsafe, err))) return st;

    /* tokenizer_config.json */
    t->bos_id = t->eos_id = t->pad_id = -1;
    if (cfg) {
        t->split_special_tokens = jbool(cfg, "split_special_tokens", false);
        t->clean_up_spaces = jbool(cfg, "clean_up_tokenization_spaces", false);
        const char *names[3] = {"bos_token", "eos_token", "pad_token"};
        int32_t *dst[3] = {&t->bos_id, &t->eos_id, &t->pad_id};
        for (int i = 0; i < 3; i++) {
            const char *s = token_spec(cJSON_GetObjectItemCaseSensitive(cfg, names[i]));
            if (!s) continue;
            *dst[i] = tok_strtab_find(&t->str, s, strlen(s));
            if (*dst[i] < 0)
                return plm_fail(err, PLM_ERR_FORMAT, "tokenizer_config.json: %s \"%s\" is not a token", names[i], s);
        }
    }
    if ((st = build_matcher(&t->match_raw, t, false, err))) return st;
    if ((st = build_matcher(&t->match_norm, t, true, err))) return st;
    return PLM_OK;
}

plm_status tok_load_memory(plm_tokenizer **out, const char *json, size_t json_len,
                           const char *config_json, size_t config_len, plm_error *err) {
    *out = NULL;
    plm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    atomic_init(&t->spare, NULL);
    /* strict JSON first (one value, valid UTF-8, nothing after it), as the reference's serde reads it;
       then the tree, with every integer literal marked for jint */
    size_t bad = 0;
    const char *why = NULL;
    if (!plm_json_check(json, json_len, &bad, &why, NULL)) {
        long line = 1, col = 1;
        plm_json_line_col(json, bad, &line, &col);
        plm_tokenizer_free(t);
        return plm_fail(err, PLM_ERR_FORMAT, "tokenizer.json is not valid JSON at line %ld, column %ld: %s", line, col,
                        why ? why : "malformed");
    }
    cJSON *root = cJSON_ParseWithLength(json, json_len);
    cJSON *cfg = NULL;
    plm_status st = PLM_OK;
    if (!root) st = plm_fail(err, PLM_ERR_FORMAT, "tokenizer.json is not valid JSON (near byte %zu)",
                             (size_t)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0));
    else plm_json_mark_ints(json, json_len, root);
    if (!st && config_json) {
        cfg = cJSON_ParseWithLength(config_json, config_len);
        if (!cfg || !cJSON_IsObject(cfg)) st = plm_fail(err, PLM_ERR_FORMAT, "tokenizer_config.json is not a JSON object");
    }
    if (!st) st = load(t, root, cfg, err);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    if (st) {
        plm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return PLM_OK;
}

plm_status plm_tokenizer_open(plm_tokenizer **out, const char *path_json, plm_error *err) {
    if (!out || !path_json) return plm_fail(err, PLM_ERR_INPUT, "plm_tokenizer_open: NULL argument");
    *out = NULL;
    char *json, *cfg = NULL;
    size_t n, ncfg = 0;
    plm_status st = read_file(path_json, &json, &n, false, err);
    if (st) return st;
    size_t pl = strlen(path_json);
    char *cpath = malloc(pl + 32);
    if (!cpath) {
        free(json);
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    }
    const char *slash = strrchr(path_json, '/');
    size_t dl = slash ? (size_t)(slash - path_json + 1) : 0;
    memcpy(cpath, path_json, dl);
    strcpy(cpath + dl, "tokenizer_config.json");
    st = read_file(cpath, &cfg, &ncfg, true, err);
    if (!st) {
        st = tok_load_memory(out, json, n, cfg, ncfg, err);
        if (st) plm_fail_prefix(err, st, "%s", path_json);
    }
    free(cpath);
    free(json);
    free(cfg);
    return st;
}

void plm_tokenizer_free(plm_tokenizer *t) {
    if (!t) return;
    strtab_free(&t->str);
    strtab_free(&t->raw);
    free(t->dec_pool);
    free(t->dec_off);
    free(t->dec_len);
    free(t->merges);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->is_added);
    free(t->in_vocab);
    free(t->match_raw.idx);
    free(t->match_norm.idx);
    for (int i = 0; i < t->n_steps; i++) pcre2_code_free(t->steps[i].re);
    tok_scratch_free(atomic_exchange(&t->spare, NULL));
    free(t);
}

int32_t plm_tokenizer_vocab_size(const plm_tokenizer *t) { return t ? t->n_ids : 0; }

int32_t plm_tokenizer_token_id(const plm_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    size_t n = strlen(token);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, token, n)) return t->added[i].id;
    return tok_strtab_find(&t->str, token, n);
}

const char *plm_tokenizer_token_str(const plm_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_ids || t->str.off[id] == UINT32_MAX) return NULL;
    return t->str.pool + t->str.off[id];
}

int32_t plm_tokenizer_bos_id(const plm_tokenizer *t) { return t ? t->bos_id : -1; }
int32_t plm_tokenizer_eos_id(const plm_tokenizer *t) { return t ? t->eos_id : -1; }
int32_t plm_tokenizer_pad_id(const plm_tokenizer *t) { return t ? t->pad_id : -1; }
