/* Encoding: added tokens, normalizer, pre-tokenizer (PCRE2), byte-level BPE with a word cache.
 *
 * Pipeline for a text (as Hugging Face tokenizers does it):
 *   1. split on added tokens with normalized = false (leftmost-longest; lstrip / rstrip /
 *      single_word honoured); they become their ids;
 *   2. each other piece is normalized, then split on added tokens with normalized = true;
 *   3. each remaining piece goes through the pre-tokenizer steps (Split regexes, ByteLevel);
 *   4. each pre-token is BPE-encoded: its bytes become byte tokens, merged by lowest rank,
 *      leftmost first. Results are cached per pre-token.
 */
#include "tok/tok_internal.h"
#include "util/error.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define CACHE_MAX_SLOTS (1u << 20)
#define CACHE_MAX_BYTES ((size_t)64 << 20)
#define CACHE_MAX_WORD 256
#define SMALL_WORD 48

typedef struct {
    uint64_t h;
    uint32_t key_off, key_len, ids_off, n_ids; /* key_len == 0: empty slot */
} cache_slot;

struct tok_scratch {
    cache_slot *slots;
    uint32_t mask, count;
    char *keys;
    size_t keys_len, keys_cap;
    int32_t *cids;
    size_t cids_len, cids_cap;
    /* BPE work arrays, [work_cap] each; heap is [3 * work_cap] */
    int32_t *sym, *nxt, *prv, *mid;
    uint32_t *rk;
    uint64_t *heap;
    size_t work_cap;
    /* PCRE2 */
    pcre2_match_data *md[TOK_MAX_STEPS];
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    /* ByteLevel add_prefix_space copies, one per step */
    char *pfx[TOK_MAX_STEPS];
    size_t pfx_cap[TOK_MAX_STEPS];
};

typedef struct {
    int32_t *v;
    size_t n, cap;
} idvec;

typedef struct {
    const plm_tokenizer *t;
    tok_scratch *s;
    idvec out;
    plm_error *err;
} enc;

void tok_scratch_free(tok_scratch *s) {
    if (!s) return;
    free(s->slots);
    free(s->keys);
    free(s->cids);
    free(s->sym);
    free(s->nxt);
    free(s->prv);
    free(s->mid);
    free(s->rk);
    free(s->heap);
    for (int i = 0; i < TOK_MAX_STEPS; i++) {
        pcre2_match_data_free(s->md[i]);
        free(s->pfx[i]);
    }
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jstack);
    free(s);
}

static tok_scratch *scratch_new(const plm_tokenizer *t) {
    tok_scratch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->mask = (1u << 14) - 1;
    s->slots = calloc((size_t)s->mask + 1, sizeof *s->slots);
    s->mctx = pcre2_match_context_create(NULL);
    s->jstack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
    bool ok = s->slots && s->mctx && s->jstack;
    if (ok) pcre2_jit_stack_assign(s->mctx, NULL, s->jstack);
    for (int i = 0; ok && i < t->n_steps; i++) {
        if (!t->steps[i].re) continue;
        s->md[i] = pcre2_match_data_create_from_pattern(t->steps[i].re, NULL);
        ok = s->md[i] != NULL;
    }
    if (!ok) {
        tok_scratch_free(s);
        return NULL;
    }
    return s;
}

static inline bool push(enc *e, int32_t id) {
    if (e->out.n == e->out.cap) {
        size_t cap = e->out.cap ? e->out.cap * 2 : 64;
        int32_t *v = realloc(e->out.v, cap * sizeof *v);
        if (!v) return false;
        e->out.v = v;
        e->out.cap = cap;
    }
    e->out.v[e->out.n++] = id;
    return true;
}

static plm_status nomem(enc *e) { return plm_fail(e->err, PLM_ERR_NOMEM, "out of memory while encoding"); }

/* ---------------------------------------------------------------- BPE */
static inline const tok_merge *merge_find(const plm_tokenizer *t, int32_t a, int32_t b) {
    if ((a | b) < 0) return NULL;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t i = (uint32_t)tok_hash_pair(a, b) & t->merge_mask;
    for (;;) {
        const tok_merge *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == UINT64_MAX) return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

static bool work_reserve(tok_scratch *s, size_t n) {
    if (n <= s->work_cap) return true;
    size_t cap = n < 64 ? 64 : n * 2;
    int32_t *a = realloc(s->sym, cap * 4);
    if (a) s->sym = a;
    int32_t *b = realloc(s->nxt, cap * 4);
    if (b) s->nxt = b;
    int32_t *c = realloc(s->prv, cap * 4);
    if (c) s->prv = c;
    int32_t *d = realloc(s->mid, cap * 4);
    if (d) s->mid = d;
    uint32_t *r = realloc(s->rk, cap * 4);
    if (r) s->rk = r;
    uint64_t *h = realloc(s->heap, cap * 3 * 8);
    if (h) s->heap = h;
    if (!a || !b || !c || !d || !r || !h) return false;
    s->work_cap = cap;
    return true;
}

static inline void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static inline uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

/* BPE of w[0..n) into s->sym; returns the symbol count (symbols may be -1: byte without token). */
static size_t bpe(const plm_tokenizer *t, tok_scratch *s, const unsigned char *w, size_t n) {
    int32_t *sym = s->sym;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[w[i]];
    if (n <= SMALL_WORD) {
        uint32_t *rk = s->rk;
        int32_t *mid = s->mid;
        size_t m = n;
        for (size_t i = 0; i + 1 < m; i++) {
            const tok_merge *g = merge_find(t, sym[i], sym[i + 1]);
            rk[i] = g ? g->rank : UINT32_MAX;
            mid[i] = g ? g->id : -1;
        }
        while (m > 1) {
            uint32_t best = UINT32_MAX;
            size_t bi = 0;
            for (size_t i = 0; i + 1 < m; i++)
                if (rk[i] < best) best = rk[i], bi = i;
            if (best == UINT32_MAX) break;
            sym[bi] = mid[bi];
            memmove(sym + bi + 1, sym + bi + 2, (m - bi - 2) * sizeof *sym);
            memmove(rk + bi, rk + bi + 1, (m - bi - 2) * sizeof *rk);
            memmove(mid + bi, mid + bi + 1, (m - bi - 2) * sizeof *mid);
            m--;
            for (size_t k = bi ? bi - 1 : 0; k <= bi && k + 1 < m; k++) {
                const tok_merge *g = merge_find(t, sym[k], sym[k + 1]);
                rk[k] = g ? g->rank : UINT32_MAX;
                mid[k] = g ? g->id : -1;
            }
        }
        return m;
    }
    /* long words: linked list + heap of (rank, position), stale entries skipped */
    int32_t *nxt = s->nxt, *prv = s->prv;
    uint64_t *heap = s->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        nxt[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prv[i] = (int32_t)i - 1;
        if (i + 1 < n) {
            const tok_merge *g = merge_find(t, sym[i], sym[i + 1]);
            if (g) heap_push(heap, &hn, (uint64_t)g->rank << 32 | i);
        }
    }
    while (hn) {
        uint64_t top = heap_pop(heap, &hn);
        uint32_t rank = (uint32_t)(top >> 32);
        int32_t p = (int32_t)(uint32_t)top;
        if (sym[p] == INT32_MIN || nxt[p] < 0) continue;
        int32_t q = nxt[p];
        const tok_merge *g = merge_find(t, sym[p], sym[q]);
        if (!g || g->rank != rank) continue;
        sym[p] = g->id;
        sym[q] = INT32_MIN; /* removed */
        nxt[p] = nxt[q];
        if (nxt[q] >= 0) prv[nxt[q]] = p;
        if (prv[p] >= 0) {
            const tok_merge *h = merge_find(t, sym[prv[p]], sym[p]);
            if (h) heap_push(heap, &hn, (uint64_t)h->rank << 32 | (uint32_t)prv[p]);
        }
        if (nxt[p] >= 0) {
            const tok_merge *h = merge_find(t, sym[p], sym[nxt[p]]);
            if (h) heap_push(heap, &hn, (uint64_t)h->rank << 32 | (uint32_t)p);
        }
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = nxt[i]) sym[m++] = sym[i];
    return m;
}

/* Appends symbols to the output: -1 (a byte with no token) becomes unk, or is dropped. */
static bool emit_syms(enc *e, const int32_t *sym, size_t m) {
    const plm_tokenizer *t = e->t;
    for (size_t i = 0; i < m; i++) {
        int32_t id = sym[i];
        if (id < 0) {
            if (t->unk_id < 0) continue;
            if (t->fuse_unk && e->out.n && e->out.v[e->out.n - 1] == t->unk_id && i && sym[i - 1] < 0) continue;
            id = t->unk_id;
        }
        if (!push(e, id)) return false;
    }
    return true;
}

static bool cache_grow(tok_scratch *s) {
    uint32_t cap = (s->mask + 1) * 2;
    cache_slot *ns = calloc(cap, sizeof *ns);
    if (!ns) return false;
    for (uint32_t i = 0; i <= s->mask; i++) {
        if (!s->slots[i].key_len) continue;
        uint32_t j = (uint32_t)s->slots[i].h & (cap - 1);
        while (ns[j].key_len) j = (j + 1) & (cap - 1);
        ns[j] = s->slots[i];
    }
    free(s->slots);
    s->slots = ns;
    s->mask = cap - 1;
    return true;
}

static void cache_clear(tok_scratch *s) {
    memset(s->slots, 0, ((size_t)s->mask + 1) * sizeof *s->slots);
    s->count = 0;
    s->keys_len = 0;
    s->cids_len = 0;
}

static plm_status word(enc *e, const char *w, size_t n) {
    const plm_tokenizer *t = e->t;
    tok_scratch *s = e->s;
    if (n == 0) return PLM_OK;
    if (n == 1) {
        int32_t id = t->byte_id[(unsigned char)w[0]];
        return emit_syms(e, &id, 1) ? PLM_OK : nomem(e);
    }
    if (t->ignore_merges) {
        int32_t id = tok_strtab_find(&t->raw, w, n);
        if (id >= 0) return push(e, id) ? PLM_OK : nomem(e);
    }
    bool cacheable = n <= CACHE_MAX_WORD;
    uint64_t h = 0;
    uint32_t slot = 0;
    if (cacheable) {
        h = tok_hash_bytes(w, n);
        slot = (uint32_t)h & s->mask;
        for (;;) {
            cache_slot *c = &s->slots[slot];
            if (!c->key_len) break;
            if (c->h == h && c->key_len == n && !memcmp(s->keys + c->key_off, w, n)) {
                const int32_t *ids = s->cids + c->ids_off;
                if (e->out.n + c->n_ids > e->out.cap) {
                    size_t cap = e->out.cap ? e->out.cap : 64;
                    while (cap < e->out.n + c->n_ids) cap *= 2;
                    int32_t *v = realloc(e->out.v, cap * sizeof *v);
                    if (!v) return nomem(e);
                    e->out.v = v;
                    e->out.cap = cap;
                }
                memcpy(e->out.v + e->out.n, ids, c->n_ids * sizeof *ids);
                e->out.n += c->n_ids;
                return PLM_OK;
            }
            slot = (slot + 1) & s->mask;
        }
    }
    if (!work_reserve(s, n)) return nomem(e);
    size_t m = bpe(t, s, (const unsigned char *)w, n);
    size_t before = e->out.n;
    if (!emit_syms(e, s->sym, m)) return nomem(e);
    if (!cacheable) return PLM_OK;
    /* cache the ids just emitted */
    size_t k = e->out.n - before;
    if (s->keys_len + n > CACHE_MAX_BYTES || s->count + 1 > (s->mask + 1) / 4 * 3) {
        if (s->mask + 1 < CACHE_MAX_SLOTS && s->keys_len + n <= CACHE_MAX_BYTES) {
            if (!cache_grow(s)) return PLM_OK;
        } else
            cache_clear(s);
        slot = (uint32_t)h & s->mask;
        while (s->slots[slot].key_len) slot = (slot + 1) & s->mask;
    }
    if (s->keys_len + n > s->keys_cap) {
        size_t cap = s->keys_cap ? s->keys_cap * 2 : 1 << 16;
        while (cap < s->keys_len + n) cap *= 2;
        char *p = realloc(s->keys, cap);
        if (!p) return PLM_OK;
        s->keys = p;
        s->keys_cap = cap;
    }
    if (s->cids_len + k > s->cids_cap) {
        size_t cap = s->cids_cap ? s->cids_cap * 2 : 1 << 14;
        while (cap < s->cids_len + k) cap *= 2;
        int32_t *p = realloc(s->cids, cap * sizeof *p);
        if (!p) return PLM_OK;
        s->cids = p;
        s->cids_cap = cap;
    }
    cache_slot *c = &s->slots[slot];
    c->h = h;
    c->key_off = (uint32_t)s->keys_len;
    c->key_len = (uint32_t)n;
    c->ids_off = (uint32_t)s->cids_len;
    c->n_ids = (uint32_t)k;
    memcpy(s->keys + s->keys_len, w, n);
    s->keys_len += n;
    memcpy(s->cids + s->cids_len, e->out.v + before, k * sizeof(int32_t));
    s->cids_len += k;
    s->count++;
    return PLM_OK;
}

/* ---------------------------------------------------------------- pre-tokenizer */
static plm_status pretok(enc *e, int k, const char *str, size_t n);

typedef struct {
    tok_split_behavior b;
    bool has, pend_match;
    size_t pend;
} splitter;

static plm_status seg(enc *e, int k, const char *str, splitter *sp, size_t a, size_t b, bool match) {
    plm_status st = PLM_OK;
    switch (sp->b) {
    case TOK_SPLIT_ISOLATED: return pretok(e, k + 1, str + a, b - a);
    case TOK_SPLIT_REMOVED: return match ? PLM_OK : pretok(e, k + 1, str + a, b - a);
    case TOK_SPLIT_MERGED_PREV:
        if (!match) {
            sp->pend = a, sp->has = true;
            return PLM_OK;
        }
        st = pretok(e, k + 1, str + (sp->has ? sp->pend : a), b - (sp->has ? sp->pend : a));
        sp->has = false;
        return st;
    case TOK_SPLIT_MERGED_NEXT:
        if (match) {
            if (sp->has) st = pretok(e, k + 1, str + sp->pend, a - sp->pend);
            sp->pend = a, sp->has = true;
        } else if (!sp->has)
            sp->pend = a, sp->has = true;
        return st;
    case TOK_SPLIT_CONTIGUOUS:
        if (match && sp->has && sp->pend_match) return PLM_OK;
        if (sp->has) st = pretok(e, k + 1, str + sp->pend, a - sp->pend);
        sp->pend = a, sp->has = true, sp->pend_match = match;
        return st;
    }
    return st;
}

static plm_status pretok(enc *e, int k, const char *str, size_t n) {
    const plm_tokenizer *t = e->t;
    if (n == 0) return PLM_OK;
    if (k == t->n_steps) return word(e, str, n);
    const tok_pretok_step *step = &t->steps[k];
    tok_scratch *s = e->s;
    if (step->is_bytelevel && step->add_prefix_space && str[0] != ' ') {
        if (n + 1 > s->pfx_cap[k]) {
            size_t cap = 2 * (n + 1);
            char *p = realloc(s->pfx[k], cap);
            if (!p) return nomem(e);
            s->pfx[k] = p;
            s->pfx_cap[k] = cap;
        }
        s->pfx[k][0] = ' ';
        memcpy(s->pfx[k] + 1, str, n);
        str = s->pfx[k];
        n++;
    }
    if (!step->re) return pretok(e, k + 1, str, n);
    splitter sp = {step->behavior, false, false, 0};
    pcre2_match_data *md = s->md[k];
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t pos = 0, last = 0;
    plm_status st = PLM_OK;
    while (pos < n) {
        int rc = step->jit ? pcre2_jit_match(step->re, (PCRE2_SPTR)str, n, pos, 0, md, s->mctx)
                           : pcre2_match(step->re, (PCRE2_SPTR)str, n, pos, PCRE2_NO_UTF_CHECK, md, s->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return plm_fail(e->err, PLM_ERR_INPUT, "pre-tokenizer regex failed: %s", (const char *)msg);
        }
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* empty match: ignore it, move on one character */
            if (ms >= n) break;
            pos = ms + 1;
            while (pos < n && ((unsigned char)str[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (ms > last && (st = seg(e, k, str, &sp, last, ms, step->invert))) return st;
        if ((st = seg(e, k, str, &sp, ms, me, !step->invert))) return st;
        last = pos = me;
    }
    if (last < n && (st = seg(e, k, str, &sp, last, n, step->invert))) return st;
    if (sp.b != TOK_SPLIT_ISOLATED && sp.b != TOK_SPLIT_REMOVED && sp.has)
        st = pretok(e, k + 1, str + sp.pend, n - sp.pend);
    return st;
}

/* ---------------------------------------------------------------- added tokens */
static bool is_ws(int32_t c) { /* Unicode White_Space (Rust char::is_whitespace) */
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static bool is_word(int32_t c) { /* alphanumeric or '_' */
    if (c == '_') return true;
    utf8proc_category_t k = utf8proc_category(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

static size_t prev_char(const char *s, size_t i, int32_t *cp) { /* start of the char before i */
    size_t j = i - 1;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
    tok_utf8_next((const unsigned char *)s + j, cp);
    return j;
}

typedef plm_status (*piece_fn)(enc *e, const char *s, size_t n);

static plm_status split_added(enc *e, const tok_matcher *m, const char *s, size_t n, piece_fn fn) {
    if (m->n == 0) return fn(e, s, n);
    const plm_tokenizer *t = e->t;
    size_t off = 0, i = 0;
    plm_status st;
    while (i < n) {
        unsigned c = (unsigned char)s[i];
        uint32_t a = m->start[c], b = m->start[c + 1];
        const tok_added *hit = NULL;
        for (uint32_t k = a; k < b; k++) {
            const tok_added *ad = &t->added[m->idx[k]];
            if (ad->len <= n - i && !memcmp(s + i, ad->content, ad->len)) {
                hit = ad;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t start = i, stop = i + hit->len;
        i = stop;
        int32_t cp;
        if (hit->single_word) {
            if (start > 0 && (prev_char(s, start, &cp), is_word(cp))) continue;
            if (stop < n && (tok_utf8_next((const unsigned char *)s + stop, &cp), is_word(cp))) continue;
        }
        if (hit->lstrip) {
            while (start > off) {
                size_t j = prev_char(s, start, &cp);
                if (!is_ws(cp)) break;
                start = j;
            }
        }
        if (hit->rstrip) {
            while (stop < n) {
                int l = tok_utf8_next((const unsigned char *)s + stop, &cp);
                if (!is_ws(cp)) break;
                stop += (size_t)l;
            }
            i = stop;
        }
        if (start > off && (st = fn(e, s + off, start - off))) return st;
        if (!push(e, hit->id)) return nomem(e);
        off = stop;
    }
    if (off < n) return fn(e, s + off, n - off);
    return PLM_OK;
}

static plm_status after_norm_piece(enc *e, const char *s, size_t n) { return pretok(e, 0, s, n); }

static plm_status raw_piece(enc *e, const char *s, size_t n) {
    const char *ns;
    size_t nn;
    char *owned;
    plm_status st = tok_normalize(e->t, s, n, &ns, &nn, &owned, e->err);
    if (st) return st;
    st = split_added(e, &e->t->match_norm, ns, nn, after_norm_piece);
    free(owned);
    return st;
}

plm_status plm_tokenizer_encode(const plm_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                size_t *n_ids, plm_error *err) {
    if (!ids || !n_ids) return plm_fail(err, PLM_ERR_INPUT, "plm_tokenizer_encode: NULL output");
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len)) return plm_fail(err, PLM_ERR_INPUT, "plm_tokenizer_encode: NULL argument");
    size_t bad = tok_utf8_check(text, len);
    if (bad != len)
        return plm_fail(err, PLM_ERR_INPUT, "invalid UTF-8 in text at byte offset %zu (byte 0x%02X)", bad,
                        (unsigned char)text[bad]);
    plm_tokenizer *mt = (plm_tokenizer *)t; /* only the atomic spare-scratch slot is written */
    enc e = {t, atomic_exchange(&mt->spare, NULL), {NULL, 0, 0}, err};
    if (!e.s && !(e.s = scratch_new(t))) return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    e.out.cap = len / 4 + 16; /* about 4 bytes a token: few reallocations */
    if (!(e.out.v = malloc(e.out.cap * sizeof(int32_t)))) {
        tok_scratch_free(atomic_exchange(&mt->spare, e.s));
        return plm_fail(err, PLM_ERR_NOMEM, "out of memory");
    }
    plm_status st = len ? split_added(&e, &t->match_raw, text, len, raw_piece) : PLM_OK;
    tok_scratch_free(atomic_exchange(&mt->spare, e.s));
    if (st) {
        free(e.out.v);
        return st;
    }
    *ids = e.out.v;
    *n_ids = e.out.n;
    return PLM_OK;
}
