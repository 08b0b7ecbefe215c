/* config.json -> plm_config. Every field the forward needs is read here and nowhere else. */
#include "io/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/json_int.h"
#include "util/json_strict.h"

/* Reads a whole small file into a NUL-terminated buffer. */
static plm_status read_text(char **out, size_t *len, const char *path, int optional, plm_error *err) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (optional && errno == ENOENT) return PLM_OK;
        return plm_fail(err, PLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return plm_fail(err, PLM_ERR_IO, "%s: cannot seek", path); }
    long n = ftell(f);
    if (n < 0 || n > (64L << 20)) {
        fclose(f);
        return plm_fail(err, PLM_ERR_FORMAT, "%s: unreasonable size %ld bytes", path, n);
    }
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf) { fclose(f); return plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", path); }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return plm_fail(err, PLM_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    *len = (size_t)n;
    return PLM_OK;
}

/* One strict JSON object (util/json_strict.h): trailing bytes, NUL bytes and cJSON's lenient
 * forms are refused with the line and column. */
static plm_status parse_json(cJSON **out, const char *path, const char *text, size_t len, plm_error *err) {
    size_t bad = 0;
    const char *why = NULL;
    *out = NULL;
    size_t nul = SIZE_MAX;
    if (!plm_json_check(text, len, &bad, &why, &nul) || nul != SIZE_MAX) {
        long line, col;
        plm_json_line_col(text, why ? bad : nul, &line, &col);
        if (!why)
            return plm_fail(err, PLM_ERR_FORMAT, "%s: line %ld, column %ld: a string holds \\u0000", path, line, col);
        return plm_fail(err, PLM_ERR_FORMAT, "%s: line %ld, column %ld: malformed JSON: %s", path, line, col, why);
    }
    *out = cJSON_ParseWithLength(text, len);
    if (!*out) return plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", path);
    plm_json_mark_ints(text, len, *out);
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return plm_fail(err, PLM_ERR_FORMAT, "%s: top level is not a JSON object", path);
    }
    return PLM_OK;
}

typedef struct {
    const char *path;
    const cJSON *text;  /* text-level object (nested text_config or the root) */
    const cJSON *root;
} src_t;

static const cJSON *lookup(const src_t *s, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->text, key);
    if ((!v || cJSON_IsNull(v)) && s->root != s->text) v = cJSON_GetObjectItemCaseSensitive(s->root, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

/* The one check every integer read from a configuration file goes through: a JSON number written
 * as an integer (no fraction, no exponent: Python's json reads "2.0" as the float 2.0, which
 * transformers' config then carries as a float) within [lo, hi]. Returns NULL when it is, else why
 * not. */
static const char *json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return "must be an integer";
    const double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d)) return "must be an integer";
    if (d < (double)lo || d > (double)hi) return "is out of range";
    if (!plm_json_is_int(v)) return "float";
    *out = (int64_t)d;
    return NULL;
}

static plm_status int_fail(plm_error *err, const char *path, const char *key, const cJSON *v, const char *why,
                           int64_t lo, int64_t hi) {
    if (!strcmp(why, "float"))
        return plm_fail(err, PLM_ERR_CONFIG, "%s: field '%s' = %s is not a JSON integer (written with a fraction or an "
                        "exponent)", path, key, plm_json_float_literal(v) ? plm_json_float_literal(v) : "?");
    if (cJSON_IsNumber(v))
        return plm_fail(err, PLM_ERR_CONFIG, "%s: field '%s' = %.17g %s [%lld, %lld]", path, key, v->valuedouble,
                        !strcmp(why, "is out of range") ? "is out of range" : "is not an integer in",
                        (long long)lo, (long long)hi);
    return plm_fail(err, PLM_ERR_CONFIG, "%s: field '%s' %s", path, key, why);
}

static plm_status get_int(int32_t *out, const src_t *s, const char *key, int required, int32_t dflt,
                          int32_t lo, int32_t hi, plm_error *err) {
    const cJSON *v = lookup(s, key);
    if (!v) {
        if (required) return plm_fail(err, PLM_ERR_CONFIG, "%s: missing field '%s'", s->path, key);
        *out = dflt;
        return PLM_OK;
    }
    int64_t x = 0;
    const char *why = json_int(v, lo, hi, &x);
    if (why) return int_fail(err, s->path, key, v, why, lo, hi);
    *out = (int32_t)x;
    return PLM_OK;
}

/* A boolean field, or null / absent (*out unchanged). */
static plm_status get_bool(int32_t *out, const cJSON *v, const char *path, const char *key, plm_error *err) {
    if (!v || cJSON_IsNull(v)) return PLM_OK;
    if (!cJSON_IsBool(v)) return plm_fail(err, PLM_ERR_CONFIG, "%s: field '%s' must be true or false", path, key);
    *out = cJSON_IsTrue(v);
    return PLM_OK;
}

static plm_status get_num(double *out, const cJSON *v, const char *path, const char *key, plm_error *err) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return plm_fail(err, PLM_ERR_CONFIG, "%s: field '%s' must be a number", path, key);
    *out = v->valuedouble;
    return PLM_OK;
}

/* eos_token_id: null, an id or a list of ids, each an integer in [0, vocab_size); at most 8
 * distinct ids over config.json and generation_config.json. field names it in messages. */
static plm_status add_eos(plm_config *c, const cJSON *v, const char *path, const char *field, plm_error *err) {
    if (!v || cJSON_IsNull(v)) return PLM_OK;
    if (!cJSON_IsNumber(v) && !cJSON_IsArray(v))
        return plm_fail(err, PLM_ERR_CONFIG, "%s: field '%s' must be a token id or a list of token ids", path, field);
    const cJSON *e = cJSON_IsArray(v) ? v->child : v;
    for (int k = 0; e; e = cJSON_IsArray(v) ? e->next : NULL, k++) {
        char name[96];
        if (cJSON_IsArray(v)) snprintf(name, sizeof name, "%s[%d]", field, k);
        else snprintf(name, sizeof name, "%s", field);
        int64_t id = 0;
        const char *why = json_int(e, 0, (int64_t)c->vocab_size - 1, &id);
        if (why) {
            if (cJSON_IsNumber(e) && !strcmp(why, "is out of range"))
                return plm_fail(err, PLM_ERR_CONFIG, "%s: field '%s' = %.17g is not a token id (vocab_size is %d)",
                                path, name, e->valuedouble, c->vocab_size);
            return int_fail(err, path, name, e, why, 0, (int64_t)c->vocab_size - 1);
        }
        int dup = 0;
        for (int i = 0; i < c->n_eos; i++) dup |= c->eos_ids[i] == (int32_t)id;
        if (dup) continue;
        if (c->n_eos == (int)(sizeof c->eos_ids / sizeof c->eos_ids[0]))
            return plm_fail(err, PLM_ERR_UNSUPPORTED, "%s: field '%s': more than %d end-of-sequence ids", path, name,
                            (int)(sizeof c->eos_ids / sizeof c->eos_ids[0]));
        c->eos_ids[c->n_eos++] = (int32_t)id;
    }
    return PLM_OK;
}

static plm_status read_layer_types(plm_config *c, const src_t *s, plm_error *err) {
    const cJSON *lt = lookup(s, "layer_types");
    if (!lt) {
        int32_t every = 0;
        plm_status st = get_int(&every, s, "full_attention_interval", 0, 0, 1, 1 << 20, err);
        if (st) return st;
        if (!every) return plm_fail(err, PLM_ERR_CONFIG, "%s: missing field 'layer_types'", s->path);
        for (int i = 0; i < c->n_layers; i++)
            c->layer_type[i] = ((i + 1) % every) ? PLM_LAYER_LINEAR : PLM_LAYER_ATTENTION;
        return PLM_OK;
    }
    if (!cJSON_IsArray(lt)) return plm_fail(err, PLM_ERR_CONFIG, "%s: 'layer_types' must be a list", s->path);
    int n = cJSON_GetArraySize(lt);
    if (n != c->n_layers)
        return plm_fail(err, PLM_ERR_CONFIG, "%s: 'layer_types' has %d entries but num_hidden_layers is %d",
                        s->path, n, c->n_layers);
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(lt, i);
        if (cJSON_IsString(e) && !strcmp(e->valuestring, "linear_attention")) c->layer_type[i] = PLM_LAYER_LINEAR;
        else if (cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")) c->layer_type[i] = PLM_LAYER_ATTENTION;
        else if (cJSON_IsString(e))
            return plm_fail(err, PLM_ERR_UNSUPPORTED,
                            "%s: field 'layer_types[%d]' = '%s' is not supported (only 'linear_attention', "
                            "'full_attention')", s->path, i, e->valuestring);
        else
            return plm_fail(err, PLM_ERR_CONFIG, "%s: field 'layer_types[%d]' must be a string", s->path, i);
    }
    return PLM_OK;
}

/* rope_parameters (or the older rope_scaling), as transformers' Qwen3.5 text rotary embedding reads
 * it. rope_type must be "default" ("mrope", the older spelling of the multimodal form, is what
 * transformers maps to "default" too); any other type changes the frequencies and is refused by name.
 * mrope_section / mrope_interleaved describe M-RoPE: three position streams (temporal, height, width)
 * whose frequencies are interleaved (or laid out in sections) over the rotary channels. packlm runs
 * text only, where transformers expands the position ids to the three streams unchanged, so every
 * frequency sees the same position and M-RoPE is exactly the plain rotary below, whatever the
 * sections; they are still checked to have the form transformers indexes (three integers). */
static plm_status read_rope(plm_config *c, const src_t *s, plm_error *err) {
    const cJSON *rp = lookup(s, "rope_parameters");
    const char *rp_name = "rope_parameters";
    if (!rp) {
        rp = lookup(s, "rope_scaling");
        rp_name = "rope_scaling";
    }
    if (rp && !cJSON_IsObject(rp))
        return plm_fail(err, PLM_ERR_CONFIG, "%s: field '%s' must be an object", s->path, rp_name);
    const cJSON *theta = rp ? cJSON_GetObjectItemCaseSensitive(rp, "rope_theta") : NULL;
    if (!theta) theta = lookup(s, "rope_theta");
    if (!theta) return plm_fail(err, PLM_ERR_CONFIG, "%s: missing field 'rope_parameters.rope_theta'", s->path);
    plm_status st = get_num(&c->rope_theta, theta, s->path, "rope_theta", err);
    if (st) return st;
    if (c->rope_theta <= 0) return plm_fail(err, PLM_ERR_CONFIG, "%s: rope_theta must be positive", s->path);
    const char *type_key = "rope_type"; /* "type" in older rope_scaling objects */
    const cJSON *type = rp ? cJSON_GetObjectItemCaseSensitive(rp, type_key) : NULL;
    if (rp && (!type || cJSON_IsNull(type))) {
        type_key = "type";
        type = cJSON_GetObjectItemCaseSensitive(rp, type_key);
    }
    if (type && !cJSON_IsNull(type)) {
        if (!cJSON_IsString(type))
            return plm_fail(err, PLM_ERR_CONFIG, "%s: field '%s.%s' must be a string", s->path, rp_name, type_key);
        if (strcmp(type->valuestring, "default") && strcmp(type->valuestring, "mrope"))
            return plm_fail(err, PLM_ERR_UNSUPPORTED, "%s: field '%s.%s' = '%s' is not supported (only 'default')",
                            s->path, rp_name, type_key, type->valuestring);
    }
    const cJSON *sec = rp ? cJSON_GetObjectItemCaseSensitive(rp, "mrope_section") : NULL;
    if (sec && !cJSON_IsNull(sec)) {
        int ok = cJSON_IsArray(sec) && cJSON_GetArraySize(sec) == 3;
        for (const cJSON *e = ok ? sec->child : NULL; e; e = e->next) {
            int64_t x = 0;
            if (json_int(e, 0, 1 << 16, &x)) ok = 0;
        }
        if (!ok)
            return plm_fail(err, PLM_ERR_CONFIG, "%s: field '%s.mrope_section' must be a list of three integers",
                            s->path, rp_name);
    }
    int32_t interleaved = 0;
    char key[64];
    snprintf(key, sizeof key, "%s.mrope_interleaved", rp_name);
    if (rp && (st = get_bool(&interleaved, cJSON_GetObjectItemCaseSensitive(rp, "mrope_interleaved"), s->path, key,
                             err)))
        return st;
    const cJSON *prf = rp ? cJSON_GetObjectItemCaseSensitive(rp, "partial_rotary_factor") : NULL;
    if (!prf) prf = lookup(s, "partial_rotary_factor");
    double f = 0.25; /* the Qwen3.5 configuration default */
    if (prf && (st = get_num(&f, prf, s->path, "partial_rotary_factor", err))) return st;
    if (f <= 0 || f > 1)
        return plm_fail(err, PLM_ERR_CONFIG, "%s: partial_rotary_factor %g is not in (0, 1]", s->path, f);
    /* transformers: dim = int(head_dim * partial_rotary_factor), kept as is (an odd dim turns
     * dim + 1 channels, see plm_rope) */
    c->rope_dim = (int32_t)(c->head_dim * f);
    if (2 * ((c->rope_dim + 1) / 2) > c->head_dim)
        return plm_fail(err, PLM_ERR_CONFIG,
                        "%s: partial_rotary_factor %g gives an odd rotary dimension %d = head_dim, whose %d rotated "
                        "channels exceed head_dim (transformers cannot run it either)",
                        s->path, f, c->rope_dim, c->rope_dim + 1);
    return PLM_OK;
}

static plm_status fill(plm_config *c, const src_t *s, int is_moe, plm_error *err) {
    plm_status st;
#define INT(field, key, req, dflt, lo, hi) \
    if ((st = get_int(&c->field, s, key, req, dflt, lo, hi, err))) return st
    const int32_t BIG = 1 << 30;
    INT(vocab_size, "vocab_size", 1, 0, 1, BIG);
    INT(hidden_size, "hidden_size", 1, 0, 1, 1 << 20);
    INT(n_layers, "num_hidden_layers", 1, 0, 1, PLM_MAX_LAYERS);
    INT(n_heads, "num_attention_heads", 1, 0, 1, 1 << 16);
    INT(n_kv_heads, "num_key_value_heads", 1, 0, 1, 1 << 16);
    INT(head_dim, "head_dim", 1, 0, 2, 1 << 16);
    INT(lin_k_heads, "linear_num_key_heads", 1, 0, 1, 1 << 16);
    INT(lin_v_heads, "linear_num_value_heads", 1, 0, 1, 1 << 16);
    INT(lin_k_dim, "linear_key_head_dim", 1, 0, 1, 1 << 16);
    INT(lin_v_dim, "linear_value_head_dim", 1, 0, 1, 1 << 16);
    INT(conv_kernel, "linear_conv_kernel_dim", 1, 0, 1, 64);
    c->is_moe = is_moe;
    if (is_moe) {
        INT(n_experts, "num_experts", 1, 0, 1, 1 << 16);
        INT(n_experts_per_tok, "num_experts_per_tok", 1, 0, 1, 1 << 16);
        INT(moe_intermediate_size, "moe_intermediate_size", 1, 0, 1, BIG);
        INT(shared_intermediate_size, "shared_expert_intermediate_size", 1, 0, 0, BIG);
    } else {
        INT(intermediate_size, "intermediate_size", 1, 0, 1, BIG);
    }
#undef INT
    const cJSON *eps = lookup(s, "rms_norm_eps");
    if (!eps) return plm_fail(err, PLM_ERR_CONFIG, "%s: missing field 'rms_norm_eps'", s->path);
    double e = 0;
    if ((st = get_num(&e, eps, s->path, "rms_norm_eps", err))) return st;
    /* computed in float32: it must stay positive and finite there (1e-86 would become 0) */
    if (!(e > 0) || !((float)e > 0) || !isfinite((float)e))
        return plm_fail(err, PLM_ERR_CONFIG, "%s: rms_norm_eps = %g must be a positive float32", s->path, e);
    c->rms_eps = (float)e;
    const cJSON *act = lookup(s, "hidden_act");
    if (act && !cJSON_IsString(act))
        return plm_fail(err, PLM_ERR_CONFIG, "%s: field 'hidden_act' must be a string", s->path);
    if (act && strcmp(act->valuestring, "silu"))
        return plm_fail(err, PLM_ERR_UNSUPPORTED, "%s: field 'hidden_act' = '%s' is not supported (only 'silu')",
                        s->path, act->valuestring);
    int32_t bias = 0;
    if ((st = get_bool(&bias, lookup(s, "attention_bias"), s->path, "attention_bias", err))) return st;
    if (bias) return plm_fail(err, PLM_ERR_UNSUPPORTED, "%s: attention_bias = true is not supported", s->path);
    /* tie_word_embeddings: the outer (model-level) flag wins in the nested layout, as in transformers */
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(s->root, "tie_word_embeddings");
    if (!tie || cJSON_IsNull(tie)) tie = cJSON_GetObjectItemCaseSensitive(s->text, "tie_word_embeddings");
    c->tie_embeddings = 0;
    if ((st = get_bool(&c->tie_embeddings, tie, s->path, "tie_word_embeddings", err))) return st;
    if ((st = read_layer_types(c, s, err))) return st;
    if ((st = read_rope(c, s, err))) return st;
    if (s->text != s->root &&
        (st = add_eos(c, cJSON_GetObjectItemCaseSensitive(s->text, "eos_token_id"), s->path,
                      "text_config.eos_token_id", err)))
        return st;
    if ((st = add_eos(c, cJSON_GetObjectItemCaseSensitive(s->root, "eos_token_id"), s->path, "eos_token_id", err)))
        return st;
    return plm_config_validate(c, err);
}

plm_status plm_config_validate(const plm_config *c, plm_error *err) {
    if (c->n_heads % c->n_kv_heads)
        return plm_fail(err, PLM_ERR_CONFIG, "num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
                        c->n_heads, c->n_kv_heads);
    if (c->lin_v_heads % c->lin_k_heads)
        return plm_fail(err, PLM_ERR_CONFIG,
                        "linear_num_value_heads (%d) is not a multiple of linear_num_key_heads (%d)",
                        c->lin_v_heads, c->lin_k_heads);
    if (c->is_moe && c->n_experts_per_tok > c->n_experts)
        return plm_fail(err, PLM_ERR_CONFIG, "num_experts_per_tok (%d) exceeds num_experts (%d)",
                        c->n_experts_per_tok, c->n_experts);
    if (c->rope_dim < 0 || 2 * ((c->rope_dim + 1) / 2) > c->head_dim)
        return plm_fail(err, PLM_ERR_CONFIG, "the rotary embedding turns %d channels, more than head_dim (%d)",
                        2 * ((c->rope_dim + 1) / 2), c->head_dim);
    return PLM_OK;
}

plm_status plm_config_load(plm_config *c, const char *dir, plm_error *err) {
    memset(c, 0, sizeof *c);
    char path[4096], gpath[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(gpath, sizeof gpath, "%s/generation_config.json", dir);
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL, *gen = NULL;
    plm_status st = read_text(&text, &len, path, 0, err);
    if (st) return st;
    st = parse_json(&root, path, text, len, err);
    free(text);
    if (st) return st;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    src_t s = {path, root, root};
    int is_moe = 0;
    if (!cJSON_IsString(mt)) {
        st = plm_fail(err, PLM_ERR_CONFIG, "%s: missing field 'model_type'", path);
    } else if (!strcmp(mt->valuestring, "qwen3_5") || !strcmp(mt->valuestring, "qwen3_5_moe")) {
        s.text = cJSON_GetObjectItemCaseSensitive(root, "text_config");
        is_moe = !strcmp(mt->valuestring, "qwen3_5_moe");
        if (!cJSON_IsObject(s.text))
            st = plm_fail(err, PLM_ERR_CONFIG, "%s: model_type '%s' needs a 'text_config' object", path,
                          mt->valuestring);
    } else if (!strcmp(mt->valuestring, "qwen3_5_text") || !strcmp(mt->valuestring, "qwen3_5_moe_text")) {
        is_moe = !strcmp(mt->valuestring, "qwen3_5_moe_text");
    } else {
        st = plm_fail(err, PLM_ERR_UNSUPPORTED,
                      "%s: model_type '%s' is not a Qwen3.5 model (qwen3_5, qwen3_5_moe, qwen3_5_text, "
                      "qwen3_5_moe_text)", path, mt->valuestring);
    }
    if (!st) st = fill(c, &s, is_moe, err);
    cJSON_Delete(root);
    if (st) return st;
    /* generation_config.json: optional, adds end-of-sequence ids */
    st = read_text(&text, &len, gpath, 1, err);
    if (st || !text) return st;
    st = parse_json(&gen, gpath, text, len, err);
    free(text);
    if (st) return st;
    st = add_eos(c, cJSON_GetObjectItemCaseSensitive(gen, "eos_token_id"), gpath, "eos_token_id", err);
    cJSON_Delete(gen);
    return st;
}
