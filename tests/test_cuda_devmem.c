/* Steps whose arrays are in device memory (plm_step.mem / plm_outputs.mem = PLM_MEM_DEVICE) against
 * the host-pointer path on the same CUDA context, bit for bit (memcmp): every fixture packed in one
 * step (logits of every row, log-probabilities of the next tokens, greedy choices, hidden states),
 * device inputs with host outputs and the reverse, chosen rows, sequences split over two steps with
 * states and device positions, and segments from device position ids. Refusals: the host path's
 * messages for a bad token id, position or target found on the device (no state changed); host
 * memory declared device; a CPU context given device arrays; logits_cb with device outputs; an
 * unknown mem value; memory of another GPU (where two are visible). Every device output is poisoned
 * before the run and followed by a guard that must come back untouched.
 * Built only with CUDA (make CUDA=1); skipped with a message where no GPU is usable, unless
 * PLM_REQUIRE_CUDA=1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devutil.h"
#include "model/cuda.h"
#include "testutil.h"

#define GUARD 64 /* bytes after every device buffer */
static plm_error E;

/* a device copy of bytes from h (NULL: the poison pattern 0xff, NaN as floats, -1 as int32) with a
 * guard of 0xa5 bytes after it */
static void *dput(const void *h, size_t bytes) {
    void *d = NULL;
    if (plm_cuda_alloc(0, &d, bytes + GUARD, "test buffer", &E)) return NULL;
    unsigned char *tmp = malloc(bytes + GUARD);
    if (h) memcpy(tmp, h, bytes);
    else memset(tmp, 0xff, bytes);
    memset(tmp + bytes, 0xa5, GUARD);
    plm_cuda_upload(0, d, tmp, bytes + GUARD, &E);
    free(tmp);
    return d;
}

/* copies bytes back into h, checks the guard; keeps d */
static int dget(void *h, const void *d, size_t bytes, const char *what) {
    unsigned char *tmp = malloc(bytes + GUARD);
    int ok = plm_cuda_download(0, tmp, d, bytes + GUARD, &E) == PLM_OK;
    for (size_t i = 0; ok && i < GUARD; i++) ok = tmp[bytes + i] == 0xa5;
    tu_check(ok, "%s: read back, guard after the output untouched", what);
    memcpy(h, tmp, bytes);
    free(tmp);
    return ok;
}

static int same(const void *a, const void *b, size_t bytes, const char *what) {
    return tu_check(!memcmp(a, b, bytes), "%s: bitwise equal to the host path (%zu bytes)", what, bytes);
}

typedef struct {
    int32_t T, n, V, H, NL;
    int32_t *tok, *pos, *cu, *tgt, *arow;
    plm_state **none;
} packed;

static void pack(packed *p, int32_t **seqs, const int64_t *lens, int n, const plm_model_info *in) {
    memset(p, 0, sizeof *p);
    p->n = n, p->V = in->vocab_size, p->H = in->hidden_size, p->NL = in->n_layers;
    for (int i = 0; i < n; i++) p->T += (int32_t)lens[i];
    p->tok = malloc(p->T * 4), p->pos = malloc(p->T * 4), p->tgt = malloc(p->T * 4);
    p->cu = malloc((n + 1) * 4), p->arow = malloc(n * 4), p->none = calloc(n, sizeof *p->none);
    p->cu[0] = 0;
    for (int i = 0; i < n; i++) {
        p->cu[i + 1] = p->cu[i] + (int32_t)lens[i];
        p->arow[i] = p->cu[i + 1] - 1;
        for (int32_t j = 0; j < lens[i]; j++) {
            const int32_t t = p->cu[i] + j;
            p->tok[t] = seqs[i][j];
            p->pos[t] = j;
            p->tgt[t] = j + 1 < lens[i] ? seqs[i][j + 1] : -1;
        }
    }
}

static void unpack(packed *p) { free(p->tok), free(p->pos), free(p->tgt), free(p->cu), free(p->arow), free(p->none); }

/* results of one step: logits [T, V], logprob [T], argmax [n], hidden [NL + 1, T, H] */
typedef struct {
    float *lg, *lp, *hid;
    int32_t *am;
} results;

static void res_new(results *r, const packed *p) {
    r->lg = malloc((size_t)p->T * p->V * 4), r->lp = malloc((size_t)p->T * 4);
    r->hid = malloc((size_t)(p->NL + 1) * p->T * p->H * 4), r->am = malloc((size_t)p->n * 4);
    memset(r->lg, 0xff, (size_t)p->T * p->V * 4); /* the device buffers' poison: untouched entries compare too */
    memset(r->lp, 0xff, (size_t)p->T * 4);
    memset(r->hid, 0xff, (size_t)(p->NL + 1) * p->T * p->H * 4);
    memset(r->am, 0xff, (size_t)p->n * 4);
}

static void res_free(results *r) { free(r->lg), free(r->lp), free(r->hid), free(r->am); }

/* one step over the packed fixture: inputs from host or device, outputs to host or device */
static plm_status run_packed(plm_ctx *c, const packed *p, int din, int dout, results *r, const char *what) {
    const size_t T = p->T, lgb = T * p->V * 4, hidb = (size_t)(p->NL + 1) * T * p->H * 4;
    void *dtok = din ? dput(p->tok, T * 4) : NULL, *dpos = din ? dput(p->pos, T * 4) : NULL;
    void *dtgt = dout ? dput(p->tgt, T * 4) : NULL, *dlg = dout ? dput(NULL, lgb) : NULL;
    void *dlp = dout ? dput(NULL, T * 4) : NULL, *dhid = dout ? dput(NULL, hidb) : NULL;
    void *dam = dout ? dput(NULL, (size_t)p->n * 4) : NULL;
    plm_step s = {p->T, din ? dtok : p->tok, din ? dpos : p->pos, p->n, p->cu, p->none, din ? PLM_MEM_DEVICE : PLM_MEM_HOST};
    plm_outputs o = {0};
    o.mem = dout ? PLM_MEM_DEVICE : PLM_MEM_HOST;
    o.logits = dout ? dlg : r->lg;
    o.n_rows = p->T;
    o.target = dout ? dtgt : p->tgt;
    o.logprob = dout ? dlp : r->lp;
    o.hidden = dout ? dhid : r->hid;
    o.amax_rows = p->arow;
    o.n_amax = p->n;
    o.argmax = dout ? dam : r->am;
    plm_status st = plm_step_run(c, &s, &o, &E);
    tu_check(st == PLM_OK, "%s: step with %s inputs and %s outputs ran (%s)", what, din ? "device" : "host",
             dout ? "device" : "host", E.msg);
    if (dout) {
        dget(r->lg, dlg, lgb, what);
        dget(r->lp, dlp, T * 4, what);
        dget(r->hid, dhid, hidb, what);
        dget(r->am, dam, (size_t)p->n * 4, what);
    }
    void *all[] = {dtok, dpos, dtgt, dlg, dlp, dhid, dam};
    for (int i = 0; i < 7; i++) plm_cuda_free(0, all[i]);
    return st;
}

static void compare_fixture(const char *name) {
    char dir[256], path[512], what[300];
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    plm_model *m = NULL;
    plm_ctx *c = NULL;
    if (!tu_check(plm_model_open(&m, dir, &E) == PLM_OK, "%s: open (%s)", name, E.msg)) return;
    if (tu_ctx_on(&c, m, "cuda", 2, name)) {
        plm_model_free(m);
        return;
    }
    int32_t **seqs = NULL;
    int64_t *lens = NULL;
    snprintf(path, sizeof path, "%s/inputs.txt", dir);
    const int n = tu_read_token_lines(path, &seqs, &lens);
    packed p;
    pack(&p, seqs, lens, n, plm_model_get_info(m));
    const size_t T = p.T, V = p.V;

    /* 1. every output, host path against device arrays (both sides, then one side each) */
    results host, dev;
    res_new(&host, &p);
    run_packed(c, &p, 0, 0, &host, name);
    for (int mode = 1; mode < 4; mode++) {
        const int din = mode & 1, dout = mode >> 1;
        snprintf(what, sizeof what, "%s, %s inputs, %s outputs", name, din ? "device" : "host", dout ? "device" : "host");
        res_new(&dev, &p);
        if (run_packed(c, &p, din, dout, &dev, what) == PLM_OK) {
            char w2[400];
            snprintf(w2, sizeof w2, "%s: logits [%zu, %zu]", what, T, V);
            same(dev.lg, host.lg, T * V * 4, w2);
            snprintf(w2, sizeof w2, "%s: log-probabilities (untouched where target < 0)", what);
            same(dev.lp, host.lp, T * 4, w2);
            snprintf(w2, sizeof w2, "%s: hidden states", what);
            same(dev.hid, host.hid, (size_t)(p.NL + 1) * T * p.H * 4, w2);
            snprintf(w2, sizeof w2, "%s: greedy choices", what);
            same(dev.am, host.am, (size_t)p.n * 4, w2);
        }
        res_free(&dev);
    }

    /* 2. chosen rows (host list, device logits): the last token of every sequence, in reverse order */
    {
        int32_t *rows = malloc(n * 4);
        for (int i = 0; i < n; i++) rows[i] = p.cu[n - i] - 1;
        float *hl = malloc((size_t)n * V * 4), *dl = malloc((size_t)n * V * 4);
        plm_step s = {p.T, p.tok, NULL, n, p.cu, p.none, PLM_MEM_HOST};
        plm_outputs o = {0};
        o.logits = hl, o.rows = rows, o.n_rows = n;
        tu_check(plm_step_run(c, &s, &o, &E) == PLM_OK, "%s: chosen rows on the host (%s)", name, E.msg);
        void *dtok = dput(p.tok, T * 4), *dlg = dput(NULL, (size_t)n * V * 4);
        s.tokens = dtok, s.mem = PLM_MEM_DEVICE;
        o.logits = dlg, o.mem = PLM_MEM_DEVICE;
        tu_check(plm_step_run(c, &s, &o, &E) == PLM_OK, "%s: chosen rows on the device (%s)", name, E.msg);
        dget(dl, dlg, (size_t)n * V * 4, name);
        snprintf(what, sizeof what, "%s: logits of %d chosen rows", name, n);
        same(dl, hl, (size_t)n * V * 4, what);
        plm_cuda_free(0, dtok), plm_cuda_free(0, dlg);
        free(rows), free(hl), free(dl);
    }
    /* 2b. every token's row twice (2 T rows: more than a block of the lm_head, the second block starting
       wherever 2 T x V floats put it in the caller's array): device logits bitwise the host's */
    {
        const int nr = 2 * (int)T;
        int32_t *rows = malloc((size_t)nr * 4);
        for (int i = 0; i < nr; i++) rows[i] = i / 2;
        float *hl = malloc((size_t)nr * V * 4), *dl = malloc((size_t)nr * V * 4);
        plm_step s = {p.T, p.tok, NULL, n, p.cu, p.none, PLM_MEM_HOST};
        plm_outputs o = {0};
        o.logits = hl, o.rows = rows, o.n_rows = nr;
        tu_check(plm_step_run(c, &s, &o, &E) == PLM_OK, "%s: every row twice on the host (%s)", name, E.msg);
        void *dlg = dput(NULL, (size_t)nr * V * 4);
        o.logits = dlg, o.mem = PLM_MEM_DEVICE;
        tu_check(plm_step_run(c, &s, &o, &E) == PLM_OK, "%s: every row twice on the device (%s)", name, E.msg);
        dget(dl, dlg, (size_t)nr * V * 4, name);
        snprintf(what, sizeof what, "%s: logits of every row twice (%d rows)", name, nr);
        same(dl, hl, (size_t)nr * V * 4, what);
        plm_cuda_free(0, dlg);
        free(rows), free(hl), free(dl);
    }

    /* 3. sequences split over two steps with states, positions given (on the device for the device run) */
    {
        float *lg[2] = {NULL, NULL};
        int64_t len_after[2][64];
        const int ns = n < 64 ? n : 64;
        for (int d = 0; d < 2; d++) {
            plm_state **st = calloc(ns, sizeof *st);
            for (int i = 0; i < ns; i++) plm_state_new_on(&st[i], c, &E);
            int32_t *cu = malloc((ns + 1) * 4), *tk = malloc(T * 4), *ps = malloc(T * 4);
            int32_t total2 = 0;
            for (int half = 0; half < 2; half++) {
                int32_t k = 0;
                cu[0] = 0;
                for (int i = 0; i < ns; i++) {
                    const int32_t h = (int32_t)(lens[i] + 1) / 2, a = half ? h : 0, b = half ? (int32_t)lens[i] : h;
                    for (int32_t j = a; j < b; j++) tk[k] = seqs[i][j], ps[k++] = j;
                    cu[i + 1] = k;
                }
                /* a sequence of one token has no second half: keep only non-empty segments */
                int32_t m2 = 0, cu2[65];
                plm_state *st2[64];
                cu2[0] = 0;
                for (int i = 0; i < ns; i++)
                    if (cu[i + 1] > cu[i]) cu2[m2 + 1] = cu[i + 1], st2[m2++] = st[i];
                if (!m2) continue;
                void *dtk = d ? dput(tk, (size_t)k * 4) : NULL, *dps = d ? dput(ps, (size_t)k * 4) : NULL;
                plm_step s = {k, d ? dtk : tk, d ? dps : ps, m2, cu2, st2, d ? PLM_MEM_DEVICE : PLM_MEM_HOST};
                plm_outputs o = {0};
                float *out = malloc((size_t)k * V * 4);
                void *dout = d ? dput(NULL, (size_t)k * V * 4) : NULL;
                o.logits = d ? dout : out, o.n_rows = k, o.mem = d ? PLM_MEM_DEVICE : PLM_MEM_HOST;
                tu_check(plm_step_run(c, &s, &o, &E) == PLM_OK, "%s: split step %d with states, %s positions (%s)",
                         name, half, d ? "device" : "host", E.msg);
                if (d) dget(out, dout, (size_t)k * V * 4, name);
                if (half) lg[d] = out, total2 = k;
                else free(out);
                plm_cuda_free(0, dtk), plm_cuda_free(0, dps), plm_cuda_free(0, dout);
            }
            for (int i = 0; i < ns; i++) len_after[d][i] = plm_state_length(st[i]), plm_state_free(st[i]);
            free(st), free(cu), free(tk), free(ps);
            if (d && lg[0] && lg[1]) {
                snprintf(what, sizeof what, "%s: second halves' logits after states carried over", name);
                same(lg[1], lg[0], (size_t)total2 * V * 4, what);
            }
        }
        tu_check(!memcmp(len_after[0], len_after[1], (size_t)ns * 8), "%s: state lengths after the split steps agree",
                 name);
        free(lg[0]), free(lg[1]);
    }

    /* 4. segments from device position ids */
    {
        int32_t *hcu = malloc((T + 1) * 4), *dcu = malloc((T + 1) * 4), hn = 0, dn = -1;
        plm_segments_from_positions(hcu, &hn, p.pos, p.T, &E);
        void *dpos = dput(p.pos, T * 4);
        tu_check(plm_segments_from_positions_on(c, dcu, &dn, dpos, p.T, &E) == PLM_OK && dn == hn &&
                     !memcmp(dcu, hcu, (size_t)(hn + 1) * 4),
                 "%s: segments from device position ids: %d, as from host ones (%s)", name, dn, E.msg);
        plm_cuda_free(0, dpos);
        free(hcu), free(dcu);
    }
    res_free(&host);
    unpack(&p);
    tu_free_seqs(seqs, n);
    free(lens);
    plm_ctx_free(c);
    plm_model_free(m);
}

/* the same refusal, with the same code and message, from host and device arrays */
static void same_refusal(plm_ctx *c, const plm_step *hs, const plm_outputs *ho, const plm_step *ds,
                         const plm_outputs *dout, plm_state *st, const char *what) {
    plm_error e1 = {0}, e2 = {0};
    const int64_t len0 = st ? plm_state_length(st) : 0;
    plm_status a = plm_step_run(c, hs, ho, &e1), b = plm_step_run(c, ds, dout, &e2);
    tu_check(a != PLM_OK && a == b && !strcmp(e1.msg, e2.msg) && (!st || plm_state_length(st) == len0),
             "%s: refused as from host arrays (%s / %s: \"%s\")", what, plm_status_name(b), plm_status_name(a), e2.msg);
}

static int never(void *u, int32_t first, int32_t n, const float *block) { return 0; }

static void refusals(void) {
    plm_model *m = NULL;
    plm_ctx *c = NULL, *cpu = NULL;
    if (!tu_check(plm_model_open(&m, "tests/data/tiny-dense", &E) == PLM_OK, "open tiny-dense (%s)", E.msg)) return;
    if (tu_ctx_on(&c, m, "cuda", 2, "refusals")) {
        plm_model_free(m);
        return;
    }
    plm_ctx_new(&cpu, m, NULL, &E);
    plm_state *s = NULL;
    plm_state_new_on(&s, c, &E);
    plm_state *none[1] = {NULL}, *one[1] = {s};
    int32_t cu[2] = {0, 3}, good[3] = {1, 2, 3}, bad[3] = {1, 99999, 2}, neg[3] = {1, 2, -4};
    int32_t pos_new[3] = {0, 1, 5}, pos_st[3] = {0, 2, 3}, tgt_bad[3] = {1, 600, -1};
    void *dgood = dput(good, 12), *dbad = dput(bad, 12), *dneg = dput(neg, 12), *dpn = dput(pos_new, 12);
    void *dps = dput(pos_st, 12), *dtb = dput(tgt_bad, 12), *dlp = dput(NULL, 12), *dlg = dput(NULL, 3 * 512 * 4);
    float hlp[3], hlg[3 * 512];

    /* what the device finds, reported as the host path reports it */
    plm_step h = {3, bad, NULL, 1, cu, one, PLM_MEM_HOST}, d = {3, dbad, NULL, 1, cu, one, PLM_MEM_DEVICE};
    same_refusal(c, &h, NULL, &d, NULL, s, "a token id outside the vocabulary, on the device");
    h.tokens = neg, d.tokens = dneg;
    same_refusal(c, &h, NULL, &d, NULL, s, "a negative token id, on the device");
    h.tokens = good, d.tokens = dgood, h.state = d.state = none, h.pos = pos_new, d.pos = dpn;
    same_refusal(c, &h, NULL, &d, NULL, NULL, "a position that jumps in a segment without a state, on the device");
    h.state = d.state = one, h.pos = pos_st, d.pos = dps;
    same_refusal(c, &h, NULL, &d, NULL, s, "a position that does not continue the state, on the device");
    h.pos = d.pos = NULL;
    plm_outputs ho = {0}, dout = {0};
    ho.target = tgt_bad, ho.logprob = hlp;
    dout.target = dtb, dout.logprob = dlp, dout.mem = PLM_MEM_DEVICE;
    same_refusal(c, &h, &ho, &d, &dout, s, "a target outside the vocabulary, on the device");

    /* where the arrays are */
    plm_error e = {0};
    plm_step lie = {3, good, NULL, 1, cu, one, PLM_MEM_DEVICE};
    plm_status st = plm_step_run(c, &lie, NULL, &e);
    tu_check(st == PLM_ERR_INPUT && strstr(e.msg, "plm_step.tokens is host memory") && plm_state_length(s) == 0,
             "host tokens declared device memory: refused (\"%s\")", e.msg);
    lie.tokens = dgood, lie.pos = pos_st;
    st = plm_step_run(c, &lie, NULL, &e);
    tu_check(st == PLM_ERR_INPUT && strstr(e.msg, "plm_step.pos is host memory"),
             "host positions declared device memory: refused (\"%s\")", e.msg);
    plm_step ok = {3, dgood, NULL, 1, cu, none, PLM_MEM_DEVICE};
    plm_outputs lo = {0};
    lo.logits = hlg, lo.n_rows = 3, lo.mem = PLM_MEM_DEVICE;
    st = plm_step_run(c, &ok, &lo, &e);
    tu_check(st == PLM_ERR_INPUT && strstr(e.msg, "plm_outputs.logits is host memory"),
             "host logits declared device memory: refused (\"%s\")", e.msg);
    lo.logits = dlg, lo.target = good, lo.logprob = dlp;
    st = plm_step_run(c, &ok, &lo, &e);
    tu_check(st == PLM_ERR_INPUT && strstr(e.msg, "plm_outputs.target is host memory"),
             "host targets declared device memory: refused (\"%s\")", e.msg);
    lo.target = NULL, lo.logprob = NULL, lo.logits = NULL, lo.logits_cb = never;
    st = plm_step_run(c, &ok, &lo, &e);
    tu_check(st == PLM_ERR_UNSUPPORTED && strstr(e.msg, "logits_cb"), "logits_cb with device outputs: refused (\"%s\")",
             e.msg);
    ok.mem = 7;
    st = plm_step_run(c, &ok, NULL, &e);
    tu_check(st == PLM_ERR_INPUT && strstr(e.msg, "plm_step.mem is 7"), "an unknown mem value: refused (\"%s\")", e.msg);
    plm_step cs = {3, dgood, NULL, 1, cu, none, PLM_MEM_DEVICE};
    st = plm_step_run(cpu, &cs, NULL, &e);
    tu_check(st == PLM_ERR_INPUT && strstr(e.msg, "runs on cpu"), "a CPU context given device tokens: refused (\"%s\")",
             e.msg);
    plm_outputs co = {0};
    co.logits = dlg, co.n_rows = 3, co.mem = PLM_MEM_DEVICE;
    cs.tokens = good, cs.mem = PLM_MEM_HOST;
    st = plm_step_run(cpu, &cs, &co, &e);
    tu_check(st == PLM_ERR_INPUT && strstr(e.msg, "runs on cpu"), "a CPU context given device outputs: refused (\"%s\")",
             e.msg);

    /* segments from device positions: the host function's messages */
    int32_t pneg[4] = {0, 1, -3, 0}, hcu[5], dcu[5], hn, dn;
    void *dpneg = dput(pneg, 16);
    plm_error e1 = {0}, e2 = {0};
    plm_status a = plm_segments_from_positions(hcu, &hn, pneg, 4, &e1);
    plm_status b = plm_segments_from_positions_on(c, dcu, &dn, dpneg, 4, &e2);
    tu_check(a == PLM_ERR_INPUT && a == b && !strcmp(e1.msg, e2.msg), "a negative device position id: \"%s\"", e2.msg);
    b = plm_segments_from_positions_on(c, dcu, &dn, pneg, 4, &e2);
    tu_check(b == PLM_ERR_INPUT && strstr(e2.msg, "host memory"), "host position ids as device ones: \"%s\"", e2.msg);
    b = plm_segments_from_positions_on(cpu, dcu, &dn, dpneg, 4, &e2);
    tu_check(b == PLM_ERR_INPUT && strstr(e2.msg, "runs on cpu"), "device position ids on a CPU context: \"%s\"", e2.msg);

    /* memory of another GPU */
    plm_ctx *c1 = NULL;
    plm_ctx_params pp = plm_ctx_default_params();
    pp.device = "cuda:1";
    if (plm_ctx_new(&c1, m, &pp, &e) == PLM_OK) {
        plm_step other = {3, dgood, NULL, 1, cu, none, PLM_MEM_DEVICE};
        st = plm_step_run(c1, &other, NULL, &e);
        tu_check(st == PLM_ERR_INPUT && strstr(e.msg, "memory of cuda:0 but the context runs on cuda:1"),
                 "memory of cuda:0 given to a context on cuda:1: refused (\"%s\")", e.msg);
        plm_ctx_free(c1);
    } else printf("SKIP memory of another GPU: no second GPU (%s)\n", e.msg);

    /* after all the refusals the context still runs, and the state never moved */
    plm_step fine = {3, dgood, NULL, 1, cu, one, PLM_MEM_DEVICE};
    tu_check(plm_step_run(c, &fine, NULL, &e) == PLM_OK && plm_state_length(s) == 3,
             "a good device step after the refusals runs (%s)", e.msg);
    void *all[] = {dgood, dbad, dneg, dpn, dps, dtb, dlp, dlg, dpneg};
    for (int i = 0; i < 9; i++) plm_cuda_free(0, all[i]);
    plm_state_free(s);
    plm_ctx_free(cpu);
    plm_ctx_free(c);
    plm_model_free(m);
}

int main(void) {
    plm_error e = {0};
    if (!plm_cuda_built() || plm_cuda_probe(0, &e)) {
        const char *req = getenv("PLM_REQUIRE_CUDA");
        const char *why = plm_cuda_built() ? e.msg : "this build has no CUDA backend (make CUDA=1)";
        if (req && !strcmp(req, "1")) {
            tu_check(0, "CUDA required (PLM_REQUIRE_CUDA=1) but unusable: %s", why);
            return tu_finish("test_cuda_devmem");
        }
        printf("SKIP test_cuda_devmem: %s\n", why);
        return 0;
    }
    const char *names[] = {"tiny-dense", "tiny-moe", "tiny-vl"};
    for (int i = 0; i < 3; i++) compare_fixture(names[i]);
    refusals();
    return tu_finish("test_cuda_devmem");
}
