#include "cli_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "packlm %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

int cli_parse_int(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        cli_error(cmd, "%s expects an integer in [%lld, %lld], got '%s'", opt, (long long)lo, (long long)hi,
                  s ? s : "");
        return 1;
    }
    *out = v;
    return 0;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_start(cli_progress *p, const char *what, int64_t total) {
    memset(p, 0, sizeof *p);
    p->what = what;
    p->total = total;
    p->t0 = p->last = cli_now();
}

static void progress_line(cli_progress *p, double now) {
    double el = now - p->t0, rate = el > 0 ? (double)p->done / el : 0;
    double eta = rate > 0 ? (double)(p->total - p->done) / rate : 0;
    fprintf(stderr, "%s: %lld / %lld tokens (%.0f%%), %.1f tokens/s, %.0f s elapsed, ~%.0f s left\n", p->what,
            (long long)p->done, (long long)p->total, p->total ? 100.0 * (double)p->done / (double)p->total : 100.0,
            rate, el, eta);
    p->printed = 1;
}

void cli_progress_add(cli_progress *p, int64_t n) {
    p->done += n;
    double now = cli_now();
    if (now - p->t0 >= 2.0 && now - p->last >= 5.0) {
        progress_line(p, now);
        p->last = now;
    }
}

void cli_progress_end(cli_progress *p) {
    if (p->printed) progress_line(p, cli_now());
}

typedef struct {
    cli_rows_fn fn;
    void *user;
    int64_t first; /* global index of the step's first token */
    int stop;
} rows_ctx;

static int on_block(void *user, int32_t first, int32_t n, const float *block) {
    rows_ctx *r = user;
    if (r->fn(r->user, r->first + first, n, block)) r->stop = 1;
    return r->stop;
}

plm_status cli_run(plm_ctx *c, const plm_model *m, const cli_input *in, int64_t budget, int aligned,
                   cli_rows_fn on_logits, void *user, float *logprob, cli_progress *prog, plm_error *err) {
    const int n = in->n;
    int64_t *lens = malloc((size_t)n * sizeof *lens), *base = malloc((size_t)n * sizeof *base);
    int64_t step_cap = budget > 0 ? budget : in->total;
    int32_t max_pieces = (int32_t)(step_cap < n ? step_cap : n) + 1;
    plm_piece *pc = malloc((size_t)max_pieces * sizeof *pc);
    int32_t *tok = malloc((size_t)step_cap * sizeof *tok), *tgt = malloc((size_t)step_cap * sizeof *tgt);
    int32_t *cu = malloc((size_t)(max_pieces + 1) * sizeof *cu);
    float *lp = malloc((size_t)step_cap * sizeof *lp);
    plm_state **pool = calloc((size_t)max_pieces, sizeof *pool), **sst = calloc((size_t)max_pieces, sizeof *sst);
    int *owner = malloc((size_t)max_pieces * sizeof *owner); /* sequence each pooled state serves, -1 free */
    plm_status st = PLM_OK;
    if (!lens || !base || !pc || !tok || !tgt || !cu || !lp || !pool || !sst || !owner)
        st = PLM_ERR_NOMEM;
    int64_t acc = 0;
    for (int i = 0; !st && i < n; i++) {
        lens[i] = in->seq[i].n;
        base[i] = acc;
        acc += lens[i];
    }
    for (int i = 0; !st && i < max_pieces; i++) owner[i] = -1;
    int32_t cs = 0;
    int64_t co = 0;
    rows_ctx rc = {on_logits, user, 0, 0};
    while (!st && !rc.stop) {
        int32_t np = plm_plan_next_aligned(pc, max_pieces, lens, n, &cs, &co, budget, aligned ? PLM_SPLIT_ALIGN : 1);
        if (!np) break;
        int32_t T = 0;
        cu[0] = 0;
        for (int p = 0; p < np; p++) {
            const cli_seq *q = &in->seq[pc[p].seq];
            /* a whole sequence in this step needs no state; a split one keeps a pooled state from its
               first piece to its last (pooled states are created when first needed, then reused) */
            int slot = -1;
            for (int i = 0; i < max_pieces && slot < 0 && pc[p].len < lens[pc[p].seq]; i++)
                if (owner[i] == pc[p].seq) slot = i;
            for (int i = 0; i < max_pieces && slot < 0 && pc[p].len < lens[pc[p].seq]; i++)
                if (owner[i] < 0) {
                    if (!pool[i] && (st = plm_state_new_on(&pool[i], c, err))) break;
                    slot = i;
                    owner[i] = pc[p].seq;
                    plm_state_reset(pool[i]);
                }
            if (st) break;
            sst[p] = slot < 0 ? NULL : pool[slot];
            for (int64_t j = pc[p].offset; j < pc[p].offset + pc[p].len; j++) {
                tok[T] = q->tok[j];
                tgt[T] = j + 1 < q->n ? q->tok[j + 1] : -1;
                T++;
            }
            cu[p + 1] = T;
        }
        if (st) break;
        plm_step step = {T, tok, NULL, np, cu, sst, PLM_MEM_HOST};
        plm_outputs out;
        memset(&out, 0, sizeof out);
        rc.first = base[pc[0].seq] + pc[0].offset;
        if (on_logits) {
            out.logits_cb = on_block;
            out.cb_user = &rc;
            out.n_rows = T;
        }
        if (logprob) {
            out.target = tgt;
            out.logprob = lp;
        }
        st = plm_step_run(c, &step, &out, err);
        if (st) break;
        if (logprob)
            for (int32_t t = 0; t < T; t++)
                if (tgt[t] >= 0) logprob[rc.first + t] = lp[t];
        for (int p = 0; p < np; p++) /* finished sequences give their state back */
            if (pc[p].offset + pc[p].len == lens[pc[p].seq])
                for (int i = 0; i < max_pieces; i++)
                    if (owner[i] == pc[p].seq) owner[i] = -1;
        if (prog) cli_progress_add(prog, T);
    }
    if (st == PLM_ERR_NOMEM && err && !err->msg[0]) snprintf(err->msg, sizeof err->msg, "out of memory");
    for (int i = 0; pool && i < max_pieces; i++) plm_state_free(pool[i]);
    free(lens); free(base); free(pc); free(tok); free(tgt); free(cu); free(lp); free(pool); free(sst); free(owner);
    return st;
}

plm_status cli_session_tokenizer(cli_session *s, plm_tokenizer **tok, plm_error *err) {
    if (!s->tok) {
        char path[4200];
        snprintf(path, sizeof path, "%s/tokenizer.json", s->dir);
        plm_status st = plm_tokenizer_open(&s->tok, path, err);
        if (st) return st;
    }
    *tok = s->tok;
    return PLM_OK;
}

static plm_status session_encode(void *user, const char *text, size_t len, int32_t **ids, size_t *n,
                                 plm_error *err) {
    plm_tokenizer *tok;
    plm_status st = cli_session_tokenizer(user, &tok, err);
    return st ? st : plm_tokenizer_encode(tok, text, len, ids, n, err);
}

int cli_parse_weights(const char *cmd, const char *v) {
    plm_ctx_params p = plm_ctx_default_params();
    plm_error err = {0};
    if (plm_ctx_params_weights(&p, v, &err)) return cli_error(cmd, "--weights: %s", err.msg);
    return 0;
}

plm_status cli_session_open(cli_session *s, const char *model_dir, int n_threads, const char *device,
                            int batch_invariant, int bf16_single_pass, const char *weights, plm_error *err) {
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", model_dir);
    s->enc = session_encode;
    s->enc_user = s;
    plm_status st = plm_model_open(&s->model, model_dir, err);
    if (st) return st;
    plm_ctx_params p = plm_ctx_default_params();
    p.n_threads = n_threads;
    p.device = device;
    p.batch_invariant = batch_invariant;
    p.bf16_single_pass = bf16_single_pass;
    s->invariant = batch_invariant;
    if ((weights && (st = plm_ctx_params_weights(&p, weights, err))) || (st = plm_ctx_new(&s->ctx, s->model, &p, err))) {
        plm_model_free(s->model);
        return st;
    }
    s->info = plm_model_get_info(s->model);
    return PLM_OK;
}

void cli_session_close(cli_session *s) {
    plm_tokenizer_free(s->tok);
    plm_ctx_free(s->ctx);
    plm_model_free(s->model);
    memset(s, 0, sizeof *s);
}

int cli_shared_opt(cli_opts *o, const char *cmd, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "--batch-invariant")) {
        o->invariant = 1;
        return 1;
    }
    if (!strcmp(a, "--bf16-single-pass")) {
        o->single_pass = 1;
        return 1;
    }
    if (*i + 1 >= argc) return 0;
    const char *v = argv[*i + 1];
    if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--input")) o->input = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--max-batch-tokens")) { if (cli_parse_int(cmd, a, v, 1, 1 << 30, &o->budget)) return -1; }
    else if (!strcmp(a, "--threads")) { if (cli_parse_int(cmd, a, v, 1, 1024, &o->threads)) return -1; }
    else if (!strcmp(a, "--device")) o->device = v;
    else if (!strcmp(a, "--weights")) { if (cli_parse_weights(cmd, v)) return -1; o->weights = v; }
    else return 0;
    (*i)++;
    return 1;
}

int cli_open_job(cli_session *ss, cli_input *in, const cli_opts *o, const char *cmd, int tolerant) {
    plm_error err = {0};
    if (cli_session_open(ss, o->model, (int)o->threads, o->device, o->invariant, o->single_pass, o->weights, &err))
        return cli_error(cmd, "%s", err.msg);
    plm_status st = tolerant ? cli_read_input_tolerant(in, o->input, ss->info->vocab_size, ss->enc, ss->enc_user, &err)
                             : cli_read_input(in, o->input, ss->info->vocab_size, ss->enc, ss->enc_user, &err);
    if (st) {
        cli_session_close(ss);
        return cli_error(cmd, "%s", err.msg);
    }
    return 0;
}

int cli_write_output(const char *cmd, const char *path, const char *text, size_t len) {
    plm_error err = {0};
    if (path) return plm_write_file_atomic(path, text, len, &err) ? cli_error(cmd, "%s", err.msg) : 0;
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout)) return cli_error(cmd, "cannot write to stdout");
    return 0;
}
