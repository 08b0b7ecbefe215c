/* Tool calls in generated text, as vLLM's parsers read them:
 *   hermes / Qwen3:  <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
 *   Qwen3-Coder / Qwen3.5 (qwen3_coder):
 *                    <tool_call>\n<function=f>\n<parameter=p>\nvalue\n</parameter>\n</function>\n</tool_call>
 * The arguments come back as JSON text the way Python's json.dumps(..., ensure_ascii=False) writes it. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

static void py_num(sbuf *b, double f) {
    char t[64];
    if (f == floor(f) && fabs(f) < 9.007199254740992e15) snprintf(t, sizeof t, "%lld", (long long)f);
    else if (!isfinite(f)) snprintf(t, sizeof t, isnan(f) ? "NaN" : f > 0 ? "Infinity" : "-Infinity");
    else
        for (int p = 15; p <= 17; p++) {
            snprintf(t, sizeof t, "%.*g", p, f);
            if (strtod(t, NULL) == f) break;
        }
    sb_add(b, t);
}
static void py_str(sbuf *b, const char *s) {
    sb_add(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char e[8];
        switch (c) {
        case '"': sb_add(b, "\\\""); break;
        case '\\': sb_add(b, "\\\\"); break;
        case '\n': sb_add(b, "\\n"); break;
        case '\r': sb_add(b, "\\r"); break;
        case '\t': sb_add(b, "\\t"); break;
        case '\b': sb_add(b, "\\b"); break;
        case '\f': sb_add(b, "\\f"); break;
        default:
            if (c < 0x20) {
                snprintf(e, sizeof e, "\\u%04x", c);
                sb_add(b, e);
            } else sb_addn(b, s, 1);
        }
    }
    sb_add(b, "\"");
}
/* json.dumps(x, ensure_ascii=False): ", " and ": " separators */
void json_dumps_py(sbuf *b, const cJSON *x) {
    if (!x || cJSON_IsNull(x)) sb_add(b, "null");
    else if (cJSON_IsBool(x)) sb_add(b, cJSON_IsTrue(x) ? "true" : "false");
    else if (cJSON_IsNumber(x)) py_num(b, x->valuedouble);
    else if (cJSON_IsString(x)) py_str(b, x->valuestring);
    else if (cJSON_IsArray(x) || cJSON_IsObject(x)) {
        int obj = cJSON_IsObject(x);
        sb_add(b, obj ? "{" : "[");
        for (const cJSON *c = x->child; c; c = c->next) {
            if (c != x->child) sb_add(b, ", ");
            if (obj) {
                py_str(b, c->string ? c->string : "");
                sb_add(b, ": ");
            }
            json_dumps_py(b, c);
        }
        sb_add(b, obj ? "}" : "]");
    } else sb_add(b, "null");
}

static const char *find(const char *b, const char *e, const char *needle) {
    size_t k = strlen(needle);
    for (const char *p = b; p + k <= e; p++)
        if (!memcmp(p, needle, k)) return p;
    return NULL;
}

/* the JSON Schema type of parameter p of function f in tools, or NULL */
static const char *param_type(const cJSON *tools, const char *f, const char *p) {
    for (const cJSON *t = tools ? tools->child : NULL; t; t = t->next) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsString(nm) || strcmp(nm->valuestring, f)) continue;
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fn, "parameters"), "properties");
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pr, p), "type");
        return cJSON_IsString(ty) ? ty->valuestring : NULL;
    }
    return NULL;
}

/* an XML parameter's text as a JSON value, by the parameter's schema type (vLLM's qwen3_coder rules) */
static cJSON *xml_value(const char *v, const char *type) {
    if (!strcmp(v, "null")) return cJSON_CreateNull();
    if (type && (!strcmp(type, "string") || !strcmp(type, "str") || !strcmp(type, "text") || !strcmp(type, "enum")))
        return cJSON_CreateString(v);
    if (type && (!strncmp(type, "int", 3) || !strcmp(type, "number") || !strncmp(type, "float", 5))) {
        char *e;
        double d = strtod(v, &e);
        if (e != v && !*e) return cJSON_CreateNumber(d);
        return cJSON_CreateString(v);
    }
    if (type && !strncmp(type, "bool", 4)) {
        if (!strcmp(v, "true") || !strcmp(v, "True")) return cJSON_CreateTrue();
        if (!strcmp(v, "false") || !strcmp(v, "False")) return cJSON_CreateFalse();
        return cJSON_CreateString(v);
    }
    cJSON *j = cJSON_Parse(v);
    return j ? j : cJSON_CreateString(v);
}

static void new_id(tool_call *c) {
    static unsigned long long ctr;
    unsigned long long x = (unsigned long long)rand() << 32 ^ (unsigned long long)rand() ^ (++ctr * 0x9E3779B97F4A7C15ull);
    snprintf(c->id, sizeof c->id, "call_%016llx", x);
}

/* one call from the text between <tool_call> and </tool_call>; 0 ok */
int tool_parse_one(const char *b, size_t n, int fmt, const cJSON *tools, tool_call *out) {
    memset(out, 0, sizeof *out);
    const char *e = b + n;
    char *txt = malloc(n + 1);
    if (!txt) return -1;
    memcpy(txt, b, n);
    txt[n] = 0;
    int rc = -1;
    sbuf a = {0};
    if (fmt == TOOL_FMT_JSON) {
        cJSON *j = cJSON_Parse(txt);
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(j, "name");
        const cJSON *ar = cJSON_GetObjectItemCaseSensitive(j, "arguments");
        if (cJSON_IsObject(j) && cJSON_IsString(nm) && ar) {
            json_dumps_py(&a, ar);
            out->name = strdup(nm->valuestring);
            rc = 0;
        }
        cJSON_Delete(j);
    } else {
        const char *f = find(b, e, "<function=");
        const char *fe = f ? find(f, e, ">") : NULL;
        if (f && fe) {
            out->name = malloc((size_t)(fe - f - 10) + 1);
            if (out->name) {
                memcpy(out->name, f + 10, (size_t)(fe - f - 10));
                out->name[fe - f - 10] = 0;
            }
            cJSON *args = cJSON_CreateObject();
            const char *p = fe + 1, *fend = find(p, e, "</function>");
            if (!fend) fend = e;
            rc = out->name && args ? 0 : -1;
            while (!rc && (p = find(p, fend, "<parameter=")) != NULL) {
                const char *pe = find(p, fend, ">");
                if (!pe) break;
                const char *vb = pe + 1, *ve = find(vb, fend, "</parameter>"), *nx = find(vb, fend, "<parameter=");
                if (!ve || (nx && nx < ve)) ve = nx ? nx : fend;
                const char *after = ve;
                if (vb < ve && *vb == '\n') vb++;
                if (ve > vb && ve[-1] == '\n') ve--;
                char *pn = strndup(p + 11, (size_t)(pe - p - 11)), *pv = strndup(vb, (size_t)(ve - vb));
                if (!pn || !pv) rc = -1;
                else cJSON_AddItemToObject(args, pn, xml_value(pv, param_type(tools, out->name, pn)));
                free(pn);
                free(pv);
                p = after;
            }
            if (!rc) json_dumps_py(&a, args);
            cJSON_Delete(args);
        }
    }
    free(txt);
    if (!rc && (a.oom || !a.p)) rc = -1;
    if (rc) {
        free(out->name);
        free(a.p);
        memset(out, 0, sizeof *out);
        return -1;
    }
    out->args = a.p;
    new_id(out);
    return 0;
}

void tool_calls_free(tool_call *c, int n) {
    for (int i = 0; i < n; i++) free(c[i].name), free(c[i].args);
    free(c);
}

/* All calls of a whole answer (vLLM: <tool_call>(.*?)</tool_call>|<tool_call>(.*) ; any call that does
 * not parse makes the whole answer plain content). Returns the number of calls (0: none, the text is
 * all content) with *content_len the bytes of content before the first call; -1 out of memory. */
int tool_parse_all(const char *t, int fmt, const cJSON *tools, tool_call **calls, size_t *content_len) {
    const char *e = t + strlen(t), *first = find(t, e, TOOL_OPEN);
    *calls = NULL;
    *content_len = (size_t)(e - t);
    if (!first) return 0;
    int n = 0, cap = 0;
    tool_call *c = NULL;
    for (const char *p = first; p; p = find(p, e, TOOL_OPEN)) {
        const char *b = p + strlen(TOOL_OPEN), *q = find(b, e, TOOL_CLOSE);
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            tool_call *x = realloc(c, (size_t)cap * sizeof *x);
            if (!x) {
                tool_calls_free(c, n);
                return -1;
            }
            c = x;
        }
        if (tool_parse_one(b, (size_t)((q ? q : e) - b), fmt, tools, &c[n])) {
            tool_calls_free(c, n);
            return 0;
        }
        n++;
        p = q ? q + strlen(TOOL_CLOSE) : e;
    }
    *calls = c;
    *content_len = (size_t)(first - t);
    return n;
}
