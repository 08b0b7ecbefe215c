/* packlm serve: an OpenAI-compatible HTTP server on the continuous-batching generator.
 *
 * Threads: libmicrohttpd runs one thread per connection; those threads only parse requests, queue
 * jobs and write answers. One engine thread owns the model, the context, the states and the
 * generator: it takes queued jobs, runs packed steps (every live request's next token and prompt
 * chunks, under the token budget) and publishes each job's new tokens. The two sides meet in one
 * mutex: the queue of new jobs, the jobs' published tokens and cancel flags, and the counters of
 * /metrics; a condition variable wakes the engine (new work) and another the HTTP threads (a step
 * ended).
 *
 * Log-probabilities: the generator keeps the chosen token's log-probability and the top
 * alternatives of each produced token for requests that ask (plm_request.logprobs). The prompt's own
 * log-probabilities (echo + logprobs) are computed by the engine thread in packed scoring steps of
 * their own (plm_outputs.target / logprob, the same path as packlm score, and the logits of the rows
 * streamed block by block for the top alternatives) before the request joins the generator.
 *
 * Cancellation: a client that disconnects, or a stop string found in the text, sets the job's
 * cancel flag; the engine cancels it in the generator before its next step (plm_generator_cancel),
 * which frees its state slot. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli_common.h"
#include "cmds.h"
#include "serve.h"

#define MAX_BODY (8u << 20) /* request bodies above this answer 413 */
#define MAX_PROMPTS SERVE_MAX_PROMPTS
#define MAX_STOP SERVE_MAX_STOP
#define MAX_TOP SERVE_MAX_TOP
#define GATHER_QUIET 0.002 /* an idle engine starts when no request arrived for this long, */
#define GATHER_MAX 0.010   /* or after this long */
#define READER_WAIT 0.002  /* the most an engine step waits for streaming connections to take its tokens */

static void usage(FILE *f) {
    fprintf(f,
            "usage: packlm serve --model DIR [--host 127.0.0.1] [--port 8080] [--max-batch-tokens N] [--max-seqs N]\n"
            "                    [--threads N] [--api-key KEY] [--device cpu|cuda[:N]] [--max-queue N]\n"
            "                    [--tokenizer FILE] [--served-model-name NAME] [--max-model-len N] [--no-chat]\n"
            "\n"
            "An OpenAI-compatible HTTP server. Every request joins the same packed steps of a continuous-batching\n"
            "generator; a request's tokens do not depend on what else is being served.\n"
            "Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health,\n"
            "GET /metrics (Prometheus text), POST /tokenize (text or messages -> rendered prompt and ids).\n"
            "  --model DIR             Hugging Face Qwen3.5 checkpoint directory\n"
            "  --host H                address to listen on (default 127.0.0.1; IPv6 too: ::1, or :: for all\n"
            "                          addresses, IPv4 included)\n"
            "  --port P                port (default 8080; 0: any free port, printed on stderr)\n"
            "  --max-batch-tokens N    at most N tokens per packed step (default 512)\n"
            "  --max-seqs N            at most N sequences in flight, each holding one state (default 64)\n"
            "  --threads N             compute threads (default: all cores)\n"
            "  --api-key KEY           require 'Authorization: Bearer KEY' (all paths but /health)\n"
            CLI_CTX_OPTS_HELP
            "  --max-queue N           requests waiting or running at most (default 256); more answer 429\n"
            "  --tokenizer FILE        tokenizer.json (default: DIR/tokenizer.json when present; without one,\n"
            "                          prompts must be token ids and answers carry ids only)\n"
            "  --served-model-name S   the model's name in the API (default: the directory's name)\n"
            "  --max-model-len N       prompt + max_tokens limit (default: max_position_embeddings)\n"
            "  --no-chat               serve without a chat template (/v1/chat/completions answers 400)\n"
            "The chat template comes from chat_template.jinja (or tokenizer_config.json) next to the tokenizer and is\n"
            "rendered by packlm's Jinja interpreter (the subset chat templates use: Qwen's templates with tools and\n"
            "the thinking switch); serve refuses to start with a template outside that subset.\n"
            "Request bodies are limited to 8 MiB (413). SIGINT / SIGTERM stop the server.\n");
}

/* ------------------------------------------------------------------ growing strings */
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_addn(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* ------------------------------------------------------------------ jobs */
enum { FIN_NONE = 0, FIN_EOS, FIN_LENGTH, FIN_CANCEL, FIN_ERROR };

typedef struct job job;
struct job {
    /* the request: written by the HTTP thread before queueing, then read-only */
    int32_t *prompt;
    int64_t n_prompt;
    int32_t max_new;
    plm_sampling sp;
    int ignore_eos;
    int logprobs, top;   /* keep the produced tokens' log-probabilities, top alternatives */
    int echo;            /* score the prompt first (prompt log-probabilities) */
    /* engine thread only */
    int64_t gen_id;
    int in_gen;
    /* shared, under server.mu */
    int32_t *tok;
    float *lp, *top_lp;
    int32_t *top_id;
    int64_t n_tok, cap_tok;
    float *plp, *ptop_lp; /* [n_prompt], [n_prompt * top]: prompt log-probabilities (echo) */
    int32_t *ptop_id;
    int echo_done;
    int done, fin, cancel;
    char err[512];
    int refs;
    double t_submit, t_first;
    job *next;
    /* the HTTP thread that waits for this job, under server.mu */
    pthread_cond_t *cv; /* its condition variable; NULL once the connection is gone */
    int wake_each;      /* wake it at every new token (streaming, stop strings), else when done */
    int unread;         /* new tokens it has not taken yet (counted in server.unread) */
};

typedef struct {
    /* set up before the threads start, then read-only */
    plm_model *m;
    plm_ctx *c;
    plm_tokenizer *tok;
    const plm_model_info *info;
    jtpl *tpl;              /* the chat template, or NULL */
    char *bos_tok, *eos_tok; /* tokenizer_config.json's bos_token / eos_token, for the template */
    int tool_fmt;            /* TOOL_FMT_*: how the template asks for tool calls */
    char name[256];
    const char *api_key;
    int64_t max_len, max_queue, budget;
    int32_t stop_id;   /* the tokenizer's eos id when the model's eos ids lack it, else -1 */
    long created;
    /* engine thread only */
    plm_generator *g;
    job **act;
    int n_act, cap_act;
    plm_state **pool;
    int n_pool;
    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv_engine;
    job *inq, *inq_tail;
    int stop;
    int64_t inflight;  /* queued or running jobs */
    int64_t running;   /* jobs holding a generator slot or being scored */
    int64_t waiting;   /* queued, not yet holding one */
    int32_t slots;
    int64_t n_requests, n_errors, n_prompt_tok, n_gen_tok, n_steps, n_ttft;
    double step_sum, step_last, ttft_sum, rate, rate_t0;
    int64_t rate_n0;
    int64_t unread;    /* jobs with tokens their streaming connection has not taken yet */
} server;

static double now_s(void) { return cli_now(); }
/* now + secs, for pthread_cond_timedwait */
static struct timespec deadline(double secs) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ns = ts.tv_nsec + (long)(secs * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    return ts;
}

static plm_status fail_nomem(plm_error *err) {
    if (err) {
        err->code = PLM_ERR_NOMEM;
        snprintf(err->msg, sizeof err->msg, "out of memory");
    }
    return PLM_ERR_NOMEM;
}

static void job_unref_locked(job *j) {
    if (--j->refs > 0) return;
    free(j->prompt);
    free(j->tok); free(j->lp); free(j->top_lp); free(j->top_id);
    free(j->plp); free(j->ptop_lp); free(j->ptop_id);
    free(j);
}

/* ------------------------------------------------------------------ the engine thread */
/* copies the generator's new tokens of j into the job; finishes it when the generator did */
/* the job's HTTP thread learns of new tokens (streaming) or of the end */
static void notify_locked(server *s, job *j, int done) {
    if (!j->cv || (!done && !j->wake_each)) return;
    pthread_cond_signal(j->cv);
    if (!done && !j->unread) {
        j->unread = 1;
        s->unread++;
    }
}
/* the connection took the job's tokens (or is gone) */
static void taken_locked(server *s, job *j) {
    if (!j->unread) return;
    j->unread = 0;
    if (--s->unread == 0) pthread_cond_signal(&s->cv_engine);
}
static void publish_locked(server *s, job *j) {
    const int32_t *t;
    int64_t n;
    plm_gen_state st = plm_generator_result(s->g, j->gen_id, &t, &n);
    if (n > j->n_tok) notify_locked(s, j, 0);
    if (n > j->n_tok) {
        if (n > j->cap_tok) {
            int64_t c = j->cap_tok ? j->cap_tok * 2 : 64;
            while (c < n) c *= 2;
            int32_t *a = realloc(j->tok, (size_t)c * sizeof *a);
            if (a) j->tok = a;
            int ok = a != NULL;
            if (j->logprobs) {
                float *b = realloc(j->lp, (size_t)c * sizeof *b);
                if (b) j->lp = b;
                float *d = realloc(j->top_lp, (size_t)(c * (j->top + 1)) * sizeof *d);
                if (d) j->top_lp = d;
                int32_t *e = realloc(j->top_id, (size_t)(c * (j->top + 1)) * sizeof *e);
                if (e) j->top_id = e;
                ok = ok && b && d && e;
            }
            if (!ok) {
                snprintf(j->err, sizeof j->err, "out of memory");
                j->fin = FIN_ERROR;
                return;
            }
            j->cap_tok = c;
        }
        const float *lp, *tl;
        const int32_t *ti;
        int k = j->logprobs ? plm_generator_logprobs(s->g, j->gen_id, &lp, &ti, &tl) : -1;
        for (int64_t i = j->n_tok; i < n; i++) {
            j->tok[i] = t[i];
            if (k >= 0) {
                j->lp[i] = lp[i];
                memcpy(j->top_lp + i * j->top, tl + i * k, (size_t)j->top * sizeof *tl);
                memcpy(j->top_id + i * j->top, ti + i * k, (size_t)j->top * sizeof *ti);
            }
        }
        if (j->n_tok == 0) {
            j->t_first = now_s();
            s->ttft_sum += j->t_first - j->t_submit;
            s->n_ttft++;
        }
        int64_t from = j->n_tok;
        j->n_tok = n;
        s->n_gen_tok += n - from;
        for (int64_t i = from; s->stop_id >= 0 && !j->ignore_eos && i < n; i++)
            if (t[i] == s->stop_id) { /* the tokenizer's end-of-sequence token stops like the model's */
                j->n_tok = i + 1;
                j->fin = FIN_EOS;
                break;
            }
    }
    if (!j->fin && st == PLM_GEN_DONE_EOS) j->fin = FIN_EOS;
    if (!j->fin && st == PLM_GEN_DONE_LENGTH) j->fin = FIN_LENGTH;
    if (!j->fin && st == PLM_GEN_CANCELLED) j->fin = FIN_CANCEL;
}

static void finish_locked(server *s, job *j, int fin) {
    if (!j->fin) j->fin = fin;
    j->done = 1;
    s->inflight--;
    notify_locked(s, j, 1);
    job_unref_locked(j);
}

/* Scores the prompts of jobs js[0..n) in packed steps (each from a fresh state): prompt token i's
 * log-probability given its prefix, and its top alternatives. */
typedef struct {
    job **rj;     /* per row */
    int64_t *rpos;
} top_ctx;

static void row_top(job *j, int64_t pos, const float *x, int64_t V) {
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    double sum = 0;
    for (int64_t v = 0; v < V; v++) sum += exp((double)x[v] - mx);
    const double lse = mx + log(sum);
    float *tl = j->ptop_lp + pos * j->top;
    int32_t *ti = j->ptop_id + pos * j->top;
    int n = 0;
    for (int64_t v = 0; v < V; v++) {
        if (n == j->top && !(x[v] > tl[n - 1])) continue;
        int k = n < j->top ? n++ : n - 1;
        while (k > 0 && x[v] > tl[k - 1]) tl[k] = tl[k - 1], ti[k] = ti[k - 1], k--;
        tl[k] = x[v], ti[k] = (int32_t)v;
    }
    for (int k = 0; k < n; k++) tl[k] = (float)(tl[k] - lse);
}

typedef struct {
    top_ctx tc;
    int64_t V;
} rows_user;

static int on_rows_v(void *user, int32_t first, int32_t n, const float *block) {
    rows_user *u = user;
    for (int32_t r = 0; r < n; r++)
        row_top(u->tc.rj[first + r], u->tc.rpos[first + r], block + (int64_t)r * u->V, u->V);
    return 0;
}

static plm_status score_jobs(server *s, job **js, int n, plm_error *err) {
    plm_status st = PLM_OK;
    if (n > s->n_pool) {
        plm_state **p = realloc(s->pool, (size_t)n * sizeof *p);
        if (!p) return fail_nomem(err);
        s->pool = p;
        for (; s->n_pool < n; s->n_pool++)
            if ((st = plm_state_new_on(&s->pool[s->n_pool], s->c, err))) return st;
    }
    int64_t *lens = malloc((size_t)n * sizeof *lens), total = 0;
    if (!lens) return fail_nomem(err);
    for (int i = 0; i < n; i++) {
        lens[i] = js[i]->n_prompt;
        total += lens[i];
        plm_state_reset(s->pool[i]);
    }
    const int64_t cap = s->budget > 0 && s->budget < total ? s->budget : total;
    plm_piece *pc = malloc((size_t)(n + 1) * sizeof *pc);
    int32_t *tok = malloc((size_t)cap * sizeof *tok), *tgt = malloc((size_t)cap * sizeof *tgt);
    int32_t *cu = malloc((size_t)(n + 2) * sizeof *cu), *rows = malloc((size_t)cap * sizeof *rows);
    float *lp = malloc((size_t)cap * sizeof *lp);
    plm_state **sst = malloc((size_t)(n + 1) * sizeof *sst);
    rows_user ru = {{malloc((size_t)cap * sizeof(job *)), malloc((size_t)cap * sizeof(int64_t))}, s->info->vocab_size};
    if (!pc || !tok || !tgt || !cu || !rows || !lp || !sst || !ru.tc.rj || !ru.tc.rpos) st = fail_nomem(err);
    int32_t cs = 0;
    int64_t co = 0;
    while (!st) {
        int32_t np = plm_plan_next(pc, n + 1, lens, n, &cs, &co, s->budget);
        if (!np) break;
        int32_t T = 0, nr = 0;
        cu[0] = 0;
        for (int p = 0; p < np; p++) {
            job *j = js[pc[p].seq];
            for (int64_t q = pc[p].offset; q < pc[p].offset + pc[p].len; q++) {
                tok[T] = j->prompt[q];
                tgt[T] = q + 1 < j->n_prompt ? j->prompt[q + 1] : -1;
                if (j->top > 0 && q + 1 < j->n_prompt) {
                    rows[nr] = T;
                    ru.tc.rj[nr] = j;
                    ru.tc.rpos[nr++] = q + 1;
                }
                T++;
            }
            cu[p + 1] = T;
            sst[p] = s->pool[pc[p].seq];
        }
        plm_step step = {T, tok, NULL, np, cu, sst, PLM_MEM_HOST};
        plm_outputs out;
        memset(&out, 0, sizeof out);
        out.target = tgt;
        out.logprob = lp;
        if (nr) {
            out.rows = rows;
            out.n_rows = nr;
            out.logits_cb = on_rows_v;
            out.cb_user = &ru;
        }
        if ((st = plm_step_run(s->c, &step, &out, err))) break;
        T = 0;
        for (int p = 0; p < np; p++) {
            job *j = js[pc[p].seq];
            for (int64_t q = pc[p].offset; q < pc[p].offset + pc[p].len; q++, T++)
                if (q + 1 < j->n_prompt) j->plp[q + 1] = lp[T];
        }
    }
    free(lens); free(pc); free(tok); free(tgt); free(cu); free(rows); free(lp); free(sst);
    free(ru.tc.rj); free(ru.tc.rpos);
    return st;
}

static int act_push(server *s, job *j) {
    if (s->n_act == s->cap_act) {
        int c = s->cap_act ? s->cap_act * 2 : 64;
        job **a = realloc(s->act, (size_t)c * sizeof *a);
        if (!a) return 1;
        s->act = a;
        s->cap_act = c;
    }
    s->act[s->n_act++] = j;
    return 0;
}

static void *engine_main(void *arg) {
    server *s = arg;
    plm_error err = {0};
    job **fresh = NULL, **echo = NULL;
    int cap_fresh = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !s->inq && s->n_act == 0) pthread_cond_wait(&s->cv_engine, &s->mu);
        if (s->stop) break;
        if (s->n_act == 0) { /* idle until now: requests that arrive together start together (up to 10 ms) */
            double t_end = now_s() + GATHER_MAX;
            for (int n = 0, m;;) {
                m = 0;
                for (job *j = s->inq; j; j = j->next) m++;
                if (m == n || now_s() >= t_end) break;
                n = m;
                struct timespec ts = deadline(GATHER_QUIET);
                pthread_cond_timedwait(&s->cv_engine, &s->mu, &ts);
            }
        }
        /* take the new jobs */
        int nf = 0;
        for (job *j = s->inq; j; j = j->next) nf++;
        if (nf > cap_fresh) {
            job **a = realloc(fresh, (size_t)nf * sizeof *a), **b = realloc(echo, (size_t)nf * sizeof *b);
            if (a) fresh = a;
            if (b) echo = b;
            if (!a || !b) { /* answer them all with an error rather than lose them */
                for (job *j = s->inq, *nx; j; j = nx) {
                    nx = j->next;
                    snprintf(j->err, sizeof j->err, "out of memory");
                    finish_locked(s, j, FIN_ERROR);
                }
                s->inq = s->inq_tail = NULL;
                nf = 0;
            } else {
                cap_fresh = nf;
            }
        }
        nf = 0;
        for (job *j = s->inq; j; j = j->next) fresh[nf++] = j;
        s->inq = s->inq_tail = NULL;
        /* cancellations: the slot is free before the next step */
        for (int i = 0; i < s->n_act; i++)
            if (s->act[i]->cancel) plm_generator_cancel(s->g, s->act[i]->gen_id, NULL);
        pthread_mutex_unlock(&s->mu);

        /* prompts to score first (echo), then everything joins the generator */
        int ne = 0;
        for (int i = 0; i < nf; i++)
            if (fresh[i]->echo && !fresh[i]->cancel) echo[ne++] = fresh[i];
        plm_status est = ne ? score_jobs(s, echo, ne, &err) : PLM_OK;
        for (int i = 0; i < nf; i++) {
            job *j = fresh[i];
            if (j->echo && est) {
                snprintf(j->err, sizeof j->err, "%s", err.msg);
                j->fin = FIN_ERROR;
            }
            if (j->fin || j->cancel || j->max_new == 0) continue;
            plm_request rq = {j->prompt, j->n_prompt, j->max_new, j->sp, 0, j->ignore_eos, j->logprobs, j->top};
            if (plm_generator_add(s->g, &j->gen_id, &rq, &err) || act_push(s, j)) {
                snprintf(j->err, sizeof j->err, "%s", err.msg);
                j->fin = FIN_ERROR;
                if (j->gen_id >= 0) plm_generator_release(s->g, j->gen_id);
                continue;
            }
            j->in_gen = 1;
        }
        /* one packed step */
        plm_gen_step_info inf = {0};
        double t0 = now_s(), dt = 0;
        plm_status st = PLM_OK;
        if (plm_generator_pending(s->g) > 0) {
            st = plm_generator_step(s->g, &inf, &err);
            dt = now_s() - t0;
        }
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < nf; i++) {
            job *j = fresh[i];
            j->echo_done = 1;
            if (!j->in_gen) finish_locked(s, j, j->cancel ? FIN_CANCEL : FIN_LENGTH);
        }
        int k = 0;
        int64_t running = 0, waiting = 0;
        for (int i = 0; i < s->n_act; i++) {
            job *j = s->act[i];
            if (st) {
                snprintf(j->err, sizeof j->err, "%s", err.msg);
                j->fin = FIN_ERROR;
            } else {
                publish_locked(s, j);
            }
            if (j->fin) {
                plm_generator_release(s->g, j->gen_id);
                finish_locked(s, j, j->fin);
                continue;
            }
            plm_gen_state gs = plm_generator_result(s->g, j->gen_id, NULL, NULL);
            if (gs == PLM_GEN_WAITING) waiting++;
            else running++;
            s->act[k++] = j;
        }
        s->n_act = k;
        s->running = running;
        s->waiting = waiting;
        s->slots = plm_generator_slots(s->g);
        s->n_prompt_tok += inf.prompt_tokens;
        if (inf.n_tokens) {
            s->n_steps++;
            s->step_sum += dt;
            s->step_last = dt;
        }
        double tn = now_s();
        if (tn - s->rate_t0 >= 2.0) {
            s->rate = (double)(s->n_gen_tok - s->rate_n0) / (tn - s->rate_t0);
            s->rate_t0 = tn;
            s->rate_n0 = s->n_gen_tok;
        }
        /* the streaming connections take this step's tokens before the next step starts, rather than
         * compete with it for the cores (at most a quarter of a step's time, 2 ms) */
        double wait_end = now_s() + (dt * 0.25 < READER_WAIT ? dt * 0.25 : READER_WAIT);
        while (s->unread > 0 && !s->stop && now_s() < wait_end) {
            struct timespec ts = deadline(wait_end - now_s());
            pthread_cond_timedwait(&s->cv_engine, &s->mu, &ts);
        }
    }
    pthread_mutex_unlock(&s->mu);
    free(fresh);
    free(echo);
    return NULL;
}

/* ------------------------------------------------------------------ HTTP side */
typedef struct {
    size_t sent;     /* bytes of text already streamed */
    int64_t sent_tok;/* tokens whose log-probabilities were streamed */
    int64_t sent_ids;/* tokens whose ids were streamed */
    int stopped;     /* a stop string was found: text ends at cut */
    size_t cut;
    int final;       /* finish_reason sent */
    int head;        /* chat: role chunk / completions: echo chunk sent */
    size_t tsent;    /* tool parsing: bytes of prefill + text handled */
    int in_call;     /* tool parsing: inside <tool_call> at tsent */
    int ncalls;      /* tool parsing: calls streamed */
} jview;

typedef struct {
    server *s;
    sbuf body;
    int too_big;
    int fd;
    /* the generation being served */
    int chat;        /* 0: completions, 1: chat */
    job *jobs[MAX_PROMPTS];
    char *ptext[MAX_PROMPTS]; /* prompt as text (echo), malloc'ed */
    jview v[MAX_PROMPTS];
    int n_jobs;
    int stream, echo, logprobs, top, include_usage, return_ids;
    char *stop[MAX_STOP];
    size_t max_stop;
    int n_stop;
    char id[48];
    long created;
    sbuf out;        /* SSE bytes not yet handed to MHD */
    size_t out_off;
    int ended;
    /* chat with tools */
    int tool_parse;  /* answers are read for tool calls (tool_choice other than none) */
    int parallel;    /* parallel_tool_calls (false: the first call only) */
    char *prefill;   /* the answer's forced start (tool_choice required or a named function), or NULL */
    cJSON *tools;    /* the request's tools (parameter types for the XML format) */
    pthread_cond_t cv; /* signalled when its jobs make progress */
} conn;

static void conn_free(conn *c) {
    server *s = c->s;
    pthread_mutex_lock(&s->mu);
    int wake = 0;
    for (int i = 0; i < c->n_jobs; i++) {
        if (!c->jobs[i]->done) {
            c->jobs[i]->cancel = 1;
            wake = 1;
        }
        c->jobs[i]->cv = NULL;
        taken_locked(s, c->jobs[i]);
        job_unref_locked(c->jobs[i]);
    }
    if (wake) pthread_cond_signal(&s->cv_engine);
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&c->cv);
    for (int i = 0; i < c->n_jobs; i++) free(c->ptext[i]);
    for (int i = 0; i < c->n_stop; i++) free(c->stop[i]);
    free(c->prefill);
    cJSON_Delete(c->tools);
    free(c->body.p);
    free(c->out.p);
    free(c);
}

static enum MHD_Result reply(struct MHD_Connection *mc, unsigned status, const char *type, char *text) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(mc, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_json(conn *c, struct MHD_Connection *mc, unsigned status, cJSON *o) {
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!t) return MHD_NO;
    return reply(mc, status, "application/json", t);
}

static enum MHD_Result reply_error(conn *c, struct MHD_Connection *mc, unsigned status, const char *code,
                                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result reply_error(conn *c, struct MHD_Connection *mc, unsigned status, const char *code,
                                   const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->s->mu);
    c->s->n_errors++;
    pthread_mutex_unlock(&c->s->mu);
    return reply_json(c, mc, status, serve_error_json(status, code, msg));
}

/* peer closed its side (a disconnecting client) */
static int peer_gone(int fd) {
    if (fd < 0) return 0;
    char ch;
    ssize_t r = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0) return 1;
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return 1;
    return 0;
}

/* the text of the ids, or a placeholder without a tokenizer */
static char *decode(server *s, const int32_t *ids, int64_t n) {
    char *t = NULL;
    plm_error err = {0};
    if (s->tok && n > 0 && !plm_tokenizer_decode(s->tok, ids, (size_t)n, &t, NULL, &err)) return t;
    return strdup("");
}

static char *token_str(server *s, int32_t id) {
    if (!s->tok) {
        char b[32];
        snprintf(b, sizeof b, "token_id:%d", id);
        return strdup(b);
    }
    return decode(s, &id, 1);
}

/* A snapshot of a job, copied under the lock. */
typedef struct {
    int32_t *tok;
    float *lp, *top_lp;
    int32_t *top_id;
    int64_t n;
    int done, fin, echo_done;
    char err[512];
} snap;

static void snap_free(snap *p) {
    free(p->tok); free(p->lp); free(p->top_lp); free(p->top_id);
    memset(p, 0, sizeof *p);
}

static void take_snap_locked(job *j, snap *p) {
    snap_free(p);
    p->n = j->n_tok;
    p->done = j->done;
    p->fin = j->fin;
    p->echo_done = j->echo_done;
    snprintf(p->err, sizeof p->err, "%s", j->err);
    size_t n = (size_t)(p->n ? p->n : 1);
    p->tok = malloc(n * sizeof *p->tok);
    if (p->tok && p->n) memcpy(p->tok, j->tok, (size_t)p->n * sizeof *p->tok);
    if (j->logprobs) {
        p->lp = malloc(n * sizeof *p->lp);
        p->top_lp = malloc(n * (size_t)(j->top + 1) * sizeof *p->top_lp);
        p->top_id = malloc(n * (size_t)(j->top + 1) * sizeof *p->top_id);
        if (p->lp && p->top_lp && p->top_id && p->n) {
            memcpy(p->lp, j->lp, (size_t)p->n * sizeof *p->lp);
            memcpy(p->top_lp, j->top_lp, (size_t)(p->n * j->top) * sizeof *p->top_lp);
            memcpy(p->top_id, j->top_id, (size_t)(p->n * j->top) * sizeof *p->top_id);
        }
    }
}

/* The generated text of a job so far: tokens decoded (a final end-of-sequence token left out), cut
 * at the first stop string. *safe = bytes that can be streamed now (text that no later token or
 * stop string can change). Returns the malloc'ed text. */
static char *job_text(conn *c, int i, const snap *p, size_t *len, size_t *safe) {
    server *s = c->s;
    int64_t n = p->n;
    if (p->fin == FIN_EOS && n > 0) n--;
    char *t = decode(s, p->tok, n);
    size_t L = t ? strlen(t) : 0;
    jview *v = &c->v[i];
    if (!v->stopped)
        for (int k = 0; k < c->n_stop; k++) {
            char *f = t ? strstr(t, c->stop[k]) : NULL;
            if (f && (!v->stopped || (size_t)(f - t) < v->cut)) {
                v->stopped = 1;
                v->cut = (size_t)(f - t);
            }
        }
    if (v->stopped && v->cut < L) L = v->cut;
    if (t) t[L] = 0;
    size_t sf = L;
    if (!v->stopped && !p->done) {
        while (sf >= 3 && !memcmp(t + sf - 3, "\xEF\xBF\xBD", 3)) sf -= 3; /* an unfinished character */
        size_t hold = c->max_stop > 0 ? c->max_stop - 1 : 0;
        sf = sf > hold ? sf - hold : 0;
        while (sf > 0 && ((unsigned char)t[sf] & 0xC0) == 0x80) sf--;
    }
    *len = L;
    *safe = sf;
    return t;
}

static const char *fin_reason(const snap *p, const jview *v) {
    if (v->stopped || p->fin == FIN_EOS) return "stop";
    return "length";
}

/* OpenAI completions logprobs object for tokens [a, b) of the job, prompt tokens first with echo */
static cJSON *completion_logprobs(conn *c, int i, const snap *p, int64_t a, int64_t b, int with_prompt, size_t *off) {
    server *s = c->s;
    job *j = c->jobs[i];
    cJSON *o = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens"), *tlp = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs"), *to = cJSON_AddArrayToObject(o, "text_offset");
    for (int pass = with_prompt ? 0 : 1; pass < 2; pass++) {
        int64_t from = pass ? a : 0, to_ = pass ? b : j->n_prompt;
        for (int64_t q = from; q < to_; q++) {
            int32_t id = pass ? p->tok[q] : j->prompt[q];
            char *ts = token_str(s, id);
            cJSON_AddItemToArray(toks, cJSON_CreateString(ts ? ts : ""));
            cJSON_AddItemToArray(to, cJSON_CreateNumber((double)*off));
            *off += ts ? strlen(ts) : 0;
            free(ts);
            float l = pass ? p->lp[q] : j->plp[q];
            if (!pass && q == 0) {
                cJSON_AddItemToArray(tlp, cJSON_CreateNull());
                cJSON_AddItemToArray(top, cJSON_CreateNull());
                continue;
            }
            cJSON_AddItemToArray(tlp, isfinite(l) ? cJSON_CreateNumber(l) : cJSON_CreateNumber(-9999.0));
            cJSON *d = cJSON_CreateObject();
            for (int k = 0; k < c->top; k++) {
                int32_t tid = pass ? p->top_id[q * j->top + k] : j->ptop_id[q * j->top + k];
                float tl = pass ? p->top_lp[q * j->top + k] : j->ptop_lp[q * j->top + k];
                char *tn = token_str(s, tid);
                if (tn && !cJSON_GetObjectItemCaseSensitive(d, tn)) cJSON_AddNumberToObject(d, tn, tl);
                free(tn);
            }
            cJSON_AddItemToArray(top, d);
        }
    }
    return o;
}

/* chat logprobs: {"content": [{token, logprob, bytes, top_logprobs: [...]}]} for tokens [a, b) */
static cJSON *chat_logprobs(conn *c, int i, const snap *p, int64_t a, int64_t b) {
    server *s = c->s;
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "content");
    for (int64_t q = a; q < b; q++) {
        cJSON *e = cJSON_CreateObject();
        char *ts = token_str(s, p->tok[q]);
        cJSON_AddStringToObject(e, "token", ts ? ts : "");
        cJSON_AddNumberToObject(e, "logprob", p->lp[q]);
        cJSON *by = cJSON_AddArrayToObject(e, "bytes");
        for (const unsigned char *u = (const unsigned char *)ts; u && *u; u++) cJSON_AddItemToArray(by, cJSON_CreateNumber(*u));
        free(ts);
        cJSON *tl = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int k = 0; k < c->top; k++) {
            cJSON *x = cJSON_CreateObject();
            char *tn = token_str(s, p->top_id[q * c->jobs[i]->top + k]);
            cJSON_AddStringToObject(x, "token", tn ? tn : "");
            cJSON_AddNumberToObject(x, "logprob", p->top_lp[q * c->jobs[i]->top + k]);
            cJSON *bb = cJSON_AddArrayToObject(x, "bytes");
            for (const unsigned char *u = (const unsigned char *)tn; u && *u; u++) cJSON_AddItemToArray(bb, cJSON_CreateNumber(*u));
            free(tn);
            cJSON_AddItemToArray(tl, x);
        }
        cJSON_AddItemToArray(arr, e);
    }
    return o;
}

static void add_usage(conn *c, cJSON *o, const snap *ps) {
    int64_t pt = 0, ct = 0;
    for (int i = 0; i < c->n_jobs; i++) {
        pt += c->jobs[i]->n_prompt;
        ct += ps[i].n;
    }
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)pt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)ct);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(pt + ct));
}

static cJSON *ids_array(const int32_t *t, int64_t n) {
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(t[i]));
    return a;
}

static cJSON *envelope(conn *c, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)c->created);
    cJSON_AddStringToObject(o, "model", c->s->name);
    return o;
}

/* marks jobs whose text reached a stop string for cancellation; snapshots all; 1 when all are done */
static int refresh(conn *c, snap *ps) {
    server *s = c->s;
    pthread_mutex_lock(&s->mu);
    int all = 1;
    for (int i = 0; i < c->n_jobs; i++) {
        take_snap_locked(c->jobs[i], &ps[i]);
        taken_locked(s, c->jobs[i]);
        all &= ps[i].done;
    }
    pthread_mutex_unlock(&s->mu);
    if (c->n_stop) {
        int wake = 0;
        for (int i = 0; i < c->n_jobs; i++) {
            if (c->v[i].stopped || ps[i].done) continue;
            size_t L, sf;
            free(job_text(c, i, &ps[i], &L, &sf));
            if (c->v[i].stopped) wake = 1;
        }
        if (wake) {
            pthread_mutex_lock(&s->mu);
            for (int i = 0; i < c->n_jobs; i++)
                if (c->v[i].stopped && !c->jobs[i]->done) c->jobs[i]->cancel = 1;
            pthread_cond_signal(&s->cv_engine);
            pthread_mutex_unlock(&s->mu);
        }
    }
    return all;
}

/* until the connection's jobs make progress (or secs pass: a disconnect is noticed by polling) */
static void wait_progress(conn *c, double secs) {
    struct timespec ts = deadline(secs);
    server *s = c->s;
    pthread_mutex_lock(&s->mu);
    int ready = 0;
    for (int i = 0; i < c->n_jobs; i++) ready |= c->jobs[i]->unread || c->jobs[i]->done;
    if (!ready) pthread_cond_timedwait(&c->cv, &s->mu, &ts);
    pthread_mutex_unlock(&s->mu);
}

/* a tool call as the API writes it; index >= 0 in streamed deltas */
static cJSON *call_json(const tool_call *tc, int index) {
    cJSON *o = cJSON_CreateObject();
    if (index >= 0) cJSON_AddNumberToObject(o, "index", index);
    cJSON_AddStringToObject(o, "id", tc->id);
    cJSON_AddStringToObject(o, "type", "function");
    cJSON *f = cJSON_AddObjectToObject(o, "function");
    cJSON_AddStringToObject(f, "name", tc->name);
    cJSON_AddStringToObject(f, "arguments", tc->args);
    return o;
}

static const char *find_in(const char *b, const char *e, const char *needle) {
    size_t k = strlen(needle);
    for (const char *p = b; p + k <= e; p++)
        if (!memcmp(p, needle, k)) return p;
    return NULL;
}

/* Streaming with tool parsing: the delta for the answer's text so far (the prefill, then t[0, upto)).
 * Content streams until a <tool_call> opens (a possible partial opening tag is held back); a call is
 * sent whole, in one delta, once its closing tag arrives (or the answer ends). As in the
 * non-streaming answer, text after the first call is not content, and a call that does not parse
 * is sent as content when no call came before it. */
static void tool_delta(conn *c, jview *v, const char *t, size_t upto, int fin, cJSON *d) {
    sbuf f = {0}, content = {0};
    sb_add(&f, c->prefill ? c->prefill : "");
    sb_addn(&f, t, upto);
    if (f.oom) {
        free(f.p);
        return;
    }
    const char *full = f.p, *end = full + f.n;
    const size_t ko = strlen(TOOL_OPEN), kc = strlen(TOOL_CLOSE);
    cJSON *calls = NULL;
    while (v->tsent <= f.n) {
        const char *at = full + v->tsent;
        if (!v->in_call) {
            const char *o = find_in(at, end, TOOL_OPEN);
            if (o) {
                if (!v->ncalls) sb_addn(&content, at, (size_t)(o - at));
                v->tsent = (size_t)(o - full);
                v->in_call = 1;
                continue;
            }
            size_t lim = f.n;
            if (!fin) /* hold back a tail that may be the start of <tool_call> */
                for (size_t j = f.n > v->tsent + ko ? f.n - ko : v->tsent; j < f.n; j++)
                    if (!memcmp(full + j, TOOL_OPEN, f.n - j)) {
                        lim = j;
                        break;
                    }
            if (!v->ncalls) sb_addn(&content, at, lim - v->tsent);
            v->tsent = lim;
            break;
        }
        const char *b = at + ko, *q = find_in(b, end, TOOL_CLOSE);
        if (!q && !fin) break;
        const char *stop = q ? q + kc : end;
        tool_call tc;
        if (!tool_parse_one(b, (size_t)((q ? q : end) - b), c->s->tool_fmt, c->tools, &tc)) {
            if (v->ncalls == 0 || c->parallel) {
                if (!calls) calls = cJSON_CreateArray();
                cJSON_AddItemToArray(calls, call_json(&tc, v->ncalls));
                v->ncalls++;
            }
            free(tc.name);
            free(tc.args);
        } else if (!v->ncalls) sb_addn(&content, at, (size_t)(stop - at));
        v->tsent = (size_t)(stop - full);
        v->in_call = 0;
        if (!q) break;
    }
    if (content.n) cJSON_AddStringToObject(d, "content", content.p);
    if (calls) cJSON_AddItemToObject(d, "tool_calls", calls);
    free(content.p);
    free(f.p);
}

/* the whole answer of a non-streaming request */
static enum MHD_Result answer_full(conn *c, struct MHD_Connection *mc) {
    server *s = c->s;
    snap ps[MAX_PROMPTS];
    memset(ps, 0, sizeof ps);
    for (;;) {
        int all = refresh(c, ps);
        int stopped_all = 1;
        for (int i = 0; i < c->n_jobs; i++) stopped_all &= ps[i].done || c->v[i].stopped;
        if (all) break;
        (void)stopped_all;
        if (peer_gone(c->fd)) {
            for (int i = 0; i < c->n_jobs; i++) snap_free(&ps[i]);
            return MHD_NO; /* the connection closes; the completion handler cancels the jobs */
        }
        wait_progress(c, 0.1);
    }
    for (int i = 0; i < c->n_jobs; i++)
        if (ps[i].fin == FIN_ERROR) {
            enum MHD_Result r = reply_error(c, mc, 500, "internal_error", "generation failed: %s", ps[i].err);
            for (int k = 0; k < c->n_jobs; k++) snap_free(&ps[k]);
            return r;
        }
    cJSON *o = envelope(c, c->chat ? "chat.completion" : "text_completion");
    cJSON *ch = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < c->n_jobs; i++) {
        size_t L, sf;
        char *t = job_text(c, i, &ps[i], &L, &sf);
        cJSON *x = cJSON_CreateObject();
        int calls = 0;
        cJSON_AddNumberToObject(x, "index", i);
        if (c->chat) {
            cJSON *m = cJSON_AddObjectToObject(x, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            if (c->tool_parse) {
                sbuf full = {0};
                sb_add(&full, c->prefill ? c->prefill : "");
                sb_add(&full, t ? t : "");
                tool_call *tc = NULL;
                size_t cl = 0;
                int nc = full.p ? tool_parse_all(full.p, s->tool_fmt, c->tools, &tc, &cl) : 0;
                if (nc > 0) {
                    if (cl) {
                        full.p[cl] = 0;
                        cJSON_AddStringToObject(m, "content", full.p);
                    } else cJSON_AddNullToObject(m, "content");
                    cJSON *arr = cJSON_AddArrayToObject(m, "tool_calls");
                    for (int k = 0; k < nc && (k == 0 || c->parallel); k++) cJSON_AddItemToArray(arr, call_json(&tc[k], -1));
                    calls = 1;
                } else cJSON_AddStringToObject(m, "content", full.p ? full.p : "");
                tool_calls_free(tc, nc > 0 ? nc : 0);
                free(full.p);
            } else cJSON_AddStringToObject(m, "content", t ? t : "");
            if (c->logprobs) cJSON_AddItemToObject(x, "logprobs", chat_logprobs(c, i, &ps[i], 0, ps[i].n));
            else cJSON_AddNullToObject(x, "logprobs");
        } else {
            sbuf full = {0};
            if (c->echo) {
                if (c->ptext[i]) sb_add(&full, c->ptext[i]);
                else {
                    char *pt = decode(s, c->jobs[i]->prompt, c->jobs[i]->n_prompt);
                    sb_add(&full, pt ? pt : "");
                    free(pt);
                }
            }
            sb_add(&full, t ? t : "");
            cJSON_AddStringToObject(x, "text", full.p ? full.p : "");
            free(full.p);
            size_t off = 0;
            if (c->logprobs) cJSON_AddItemToObject(x, "logprobs", completion_logprobs(c, i, &ps[i], 0, ps[i].n, c->echo, &off));
            else cJSON_AddNullToObject(x, "logprobs");
        }
        cJSON_AddStringToObject(x, "finish_reason", calls ? "tool_calls" : fin_reason(&ps[i], &c->v[i]));
        cJSON_AddItemToObject(x, "token_ids", ids_array(ps[i].tok, ps[i].n));
        if (c->echo) cJSON_AddItemToObject(x, "prompt_token_ids", ids_array(c->jobs[i]->prompt, c->jobs[i]->n_prompt));
        cJSON_AddItemToArray(ch, x);
        free(t);
    }
    add_usage(c, o, ps);
    for (int i = 0; i < c->n_jobs; i++) snap_free(&ps[i]);
    return reply_json(c, mc, 200, o);
}

static void sse(conn *c, cJSON *o) {
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    sb_add(&c->out, "data: ");
    sb_add(&c->out, t ? t : "{}");
    sb_add(&c->out, "\n\n");
    free(t);
}

/* builds the SSE events for what happened since the last call; 1 when the stream is complete */
static int stream_events(conn *c) {
    server *s = c->s;
    snap ps[MAX_PROMPTS];
    memset(ps, 0, sizeof ps);
    int all = refresh(c, ps), complete = 1;
    for (int i = 0; i < c->n_jobs; i++) {
        jview *v = &c->v[i];
        job *j = c->jobs[i];
        if (v->final) continue;
        if (ps[i].fin == FIN_ERROR) {
            cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
            cJSON_AddStringToObject(e, "message", ps[i].err);
            cJSON_AddStringToObject(e, "type", "server_error");
            cJSON_AddStringToObject(e, "code", "internal_error");
            sse(c, o);
            v->final = 1;
            continue;
        }
        if (!v->head) { /* chat: the role; completions with echo: the prompt (and its log-probabilities) */
            if (c->chat) {
                cJSON *o = envelope(c, "chat.completion.chunk"), *ch = cJSON_AddArrayToObject(o, "choices");
                cJSON *x = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(x, "delta");
                cJSON_AddNumberToObject(x, "index", i);
                cJSON_AddStringToObject(d, "role", "assistant");
                cJSON_AddStringToObject(d, "content", "");
                cJSON_AddNullToObject(x, "logprobs");
                cJSON_AddNullToObject(x, "finish_reason");
                cJSON_AddItemToArray(ch, x);
                sse(c, o);
                v->head = 1;
            } else if (!c->echo) {
                v->head = 1;
            } else if (ps[i].echo_done) {
                cJSON *o = envelope(c, "text_completion"), *ch = cJSON_AddArrayToObject(o, "choices");
                cJSON *x = cJSON_CreateObject();
                cJSON_AddNumberToObject(x, "index", i);
                char *pt = c->ptext[i] ? strdup(c->ptext[i]) : decode(s, j->prompt, j->n_prompt);
                cJSON_AddStringToObject(x, "text", pt ? pt : "");
                free(pt);
                size_t off = 0;
                if (c->logprobs) cJSON_AddItemToObject(x, "logprobs", completion_logprobs(c, i, &ps[i], 0, 0, 1, &off));
                else cJSON_AddNullToObject(x, "logprobs");
                cJSON_AddNullToObject(x, "finish_reason");
                cJSON_AddItemToArray(ch, x);
                sse(c, o);
                v->head = 1;
            } else {
                complete = 0;
                continue;
            }
        }
        size_t L, sf;
        char *t = job_text(c, i, &ps[i], &L, &sf);
        int fin = ps[i].done || v->stopped;
        size_t upto = fin ? L : sf;
        int64_t ntok = ps[i].n;
        if (upto > v->sent || ntok > v->sent_ids || fin) { /* an event per step that produced a token */
            cJSON *o = envelope(c, c->chat ? "chat.completion.chunk" : "text_completion");
            cJSON *ch = cJSON_AddArrayToObject(o, "choices"), *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "index", i);
            char save = 0;
            if (t) {
                save = t[upto];
                t[upto] = 0;
            }
            const char *piece = t ? t + (v->sent < upto ? v->sent : upto) : "";
            if (c->chat && c->tool_parse) {
                tool_delta(c, v, t ? t : "", upto, fin, cJSON_AddObjectToObject(x, "delta"));
            } else if (c->chat) {
                cJSON *d = cJSON_AddObjectToObject(x, "delta");
                if (upto > v->sent) cJSON_AddStringToObject(d, "content", piece);
            } else {
                cJSON_AddStringToObject(x, "text", piece);
            }
            if (t) t[upto] = save;
            if (c->logprobs && ntok > v->sent_tok) {
                size_t off = v->sent;
                cJSON_AddItemToObject(x, "logprobs", c->chat ? chat_logprobs(c, i, &ps[i], v->sent_tok, ntok)
                                                             : completion_logprobs(c, i, &ps[i], v->sent_tok, ntok, 0, &off));
                v->sent_tok = ntok;
            } else {
                cJSON_AddNullToObject(x, "logprobs");
            }
            if (fin) cJSON_AddStringToObject(x, "finish_reason", v->ncalls ? "tool_calls" : fin_reason(&ps[i], v));
            else cJSON_AddNullToObject(x, "finish_reason");
            cJSON_AddItemToObject(x, "token_ids", ids_array(ps[i].tok + v->sent_ids, ntok - v->sent_ids));
            v->sent_ids = ntok;
            cJSON_AddItemToArray(ch, x);
            sse(c, o);
            if (upto > v->sent) v->sent = upto;
            if (fin) v->final = 1;
        }
        free(t);
        if (!v->final) complete = 0;
    }
    if (complete && all) {
        if (c->include_usage) {
            cJSON *o = envelope(c, c->chat ? "chat.completion.chunk" : "text_completion");
            cJSON_AddArrayToObject(o, "choices");
            add_usage(c, o, ps);
            sse(c, o);
        }
        sb_add(&c->out, "data: [DONE]\n\n");
    }
    for (int i = 0; i < c->n_jobs; i++) snap_free(&ps[i]);
    return complete && all;
}

static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max) {
    conn *c = cls;
    (void)pos;
    for (;;) {
        if (c->out.n > c->out_off) {
            size_t k = c->out.n - c->out_off;
            if (k > max) k = max;
            memcpy(buf, c->out.p + c->out_off, k);
            c->out_off += k;
            if (c->out_off == c->out.n) c->out.n = c->out_off = 0;
            return (ssize_t)k;
        }
        if (c->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        if (c->out.oom) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (stream_events(c)) {
            c->ended = 1;
            continue;
        }
        if (c->out.n > c->out_off) continue;
        if (peer_gone(c->fd)) return MHD_CONTENT_READER_END_WITH_ERROR;
        wait_progress(c, 0.1);
    }
}

/* ---- the endpoints */
static enum MHD_Result submit(conn *c, struct MHD_Connection *mc, int32_t **ids, const int64_t *n, int n_prompts,
                             int32_t max_new, const plm_sampling *sp, int ignore_eos) {
    server *s = c->s;
    for (int i = 0; i < n_prompts; i++) {
        job *j = calloc(1, sizeof *j);
        if (j && c->echo && c->logprobs) {
            j->plp = calloc((size_t)n[i], sizeof *j->plp);
            j->ptop_lp = calloc((size_t)(n[i] * (c->top + 1)), sizeof *j->ptop_lp);
            j->ptop_id = calloc((size_t)(n[i] * (c->top + 1)), sizeof *j->ptop_id);
            if (!j->plp || !j->ptop_lp || !j->ptop_id) {
                free(j->plp); free(j->ptop_lp); free(j->ptop_id); free(j);
                j = NULL;
            }
        }
        if (!j) {
            for (int k = i; k < n_prompts; k++) free(ids[k]), ids[k] = NULL;
            return reply_error(c, mc, 500, "out_of_memory", "out of memory");
        }
        j->prompt = ids[i];
        ids[i] = NULL;
        j->n_prompt = n[i];
        j->max_new = max_new;
        j->sp = *sp;
        j->ignore_eos = ignore_eos;
        j->logprobs = c->logprobs;
        j->top = c->logprobs ? c->top : 0;
        j->echo = c->echo && c->logprobs;
        j->gen_id = -1;
        j->refs = 2;
        j->cv = &c->cv;
        j->wake_each = c->stream || c->n_stop > 0;
        j->t_submit = now_s();
        c->jobs[c->n_jobs++] = j;
    }
    pthread_mutex_lock(&s->mu);
    if (s->inflight + c->n_jobs > s->max_queue) {
        int64_t q = s->inflight;
        for (int i = 0; i < c->n_jobs; i++) {
            c->jobs[i]->refs = 1;
            job_unref_locked(c->jobs[i]);
        }
        c->n_jobs = 0;
        pthread_mutex_unlock(&s->mu);
        return reply_error(c, mc, 429, "queue_full",
                           "the server is busy: %lld requests are queued or running (--max-queue %lld); retry later",
                           (long long)q, (long long)s->max_queue);
    }
    for (int i = 0; i < c->n_jobs; i++) {
        job *j = c->jobs[i];
        if (s->inq_tail) s->inq_tail->next = j;
        else s->inq = j;
        s->inq_tail = j;
    }
    s->inflight += c->n_jobs;
    s->n_requests++;
    pthread_cond_signal(&s->cv_engine);
    pthread_mutex_unlock(&s->mu);
    if (!c->stream) return answer_full(c, mc);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_cb, c, NULL);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(mc, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* what request parsing reads of the server */
static serve_view view_of(const server *s) {
    serve_view v = {0};
    v.tok = s->tok;
    v.vocab_size = s->info->vocab_size;
    v.tpl = s->tpl;
    v.bos_tok = s->bos_tok;
    v.eos_tok = s->eos_tok;
    v.tool_fmt = s->tool_fmt;
    v.name = s->name;
    v.max_len = s->max_len;
    return v;
}

/* /tokenize: the rendered prompt and its ids */
static enum MHD_Result answer_tokenize(conn *c, struct MHD_Connection *mc, serve_req *r) {
    server *s = c->s;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", (double)r->n[0]);
    cJSON_AddNumberToObject(o, "max_model_len", (double)s->max_len);
    cJSON_AddItemToObject(o, "tokens", ids_array(r->ids[0], r->n[0]));
    cJSON_AddStringToObject(o, "prompt", r->text);
    return reply_json(c, mc, 200, o);
}

/* a parsed completions or chat request: the connection takes its options, the jobs its prompts */
static enum MHD_Result answer_generate(conn *c, struct MHD_Connection *mc, serve_req *r) {
    c->chat = r->chat;
    c->stream = r->stream;
    c->echo = r->echo;
    c->logprobs = r->logprobs;
    c->top = r->top;
    c->include_usage = r->include_usage;
    for (int i = 0; i < r->n_stop; i++) c->stop[i] = r->stop[i], r->stop[i] = NULL;
    c->n_stop = r->n_stop;
    c->max_stop = r->max_stop;
    for (int i = 0; i < r->n_prompts; i++) c->ptext[i] = r->ptext[i], r->ptext[i] = NULL;
    c->tool_parse = r->tool_parse;
    c->parallel = r->parallel;
    c->tools = r->tools, r->tools = NULL;
    c->prefill = r->prefill, r->prefill = NULL;
    snprintf(c->id, sizeof c->id, "%s-%llx%04x", r->chat ? "chatcmpl" : "cmpl", (unsigned long long)(now_s() * 1e6),
             (unsigned)rand() & 0xffff);
    c->created = (long)time(NULL);
    return submit(c, mc, r->ids, r->n, r->n_prompts, (int32_t)r->max_new, &r->sp, r->ignore_eos);
}

static enum MHD_Result do_metrics(conn *c, struct MHD_Connection *mc) {
    server *s = c->s;
    sbuf b = {0};
    pthread_mutex_lock(&s->mu);
#define METRIC(name, type, help, fmt, val)                                                                   \
    sb_printf(&b, "# HELP packlm_" name " " help "\n# TYPE packlm_" name " " type "\npacklm_" name " " fmt "\n", val)
    METRIC("requests_total", "counter", "HTTP generation requests accepted.", "%lld", (long long)s->n_requests);
    METRIC("request_errors_total", "counter", "Requests answered with an error.", "%lld", (long long)s->n_errors);
    METRIC("sequences_waiting", "gauge", "Sequences queued, not holding a state slot yet.", "%lld",
           (long long)(s->inflight - s->running));
    METRIC("sequences_running", "gauge", "Sequences holding a state slot.", "%lld", (long long)s->running);
    METRIC("state_slots", "gauge", "State slots the generator has created.", "%d", s->slots);
    METRIC("prompt_tokens_total", "counter", "Prompt tokens read by the generator.", "%lld", (long long)s->n_prompt_tok);
    METRIC("generation_tokens_total", "counter", "Tokens generated.", "%lld", (long long)s->n_gen_tok);
    METRIC("generation_tokens_per_second", "gauge", "Tokens generated per second over the last few seconds.", "%.3f",
           now_s() - s->rate_t0 < 10 ? s->rate : 0.0);
    METRIC("steps_total", "counter", "Packed steps run.", "%lld", (long long)s->n_steps);
    METRIC("step_seconds_sum", "counter", "Time spent in packed steps.", "%.6f", s->step_sum);
    METRIC("step_seconds_last", "gauge", "Duration of the last packed step.", "%.6f", s->step_last);
    METRIC("time_to_first_token_seconds_sum", "counter", "Sum over requests of the time to the first token.", "%.6f",
           s->ttft_sum);
    METRIC("time_to_first_token_seconds_count", "counter", "Requests that got a first token.", "%lld",
           (long long)s->n_ttft);
#undef METRIC
    pthread_mutex_unlock(&s->mu);
    if (b.oom || !b.p) return reply_error(c, mc, 500, "out_of_memory", "out of memory");
    return reply(mc, 200, "text/plain; version=0.0.4", b.p);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    server *s = cls;
    conn *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        c->s = s;
        pthread_cond_init(&c->cv, NULL);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        *con_cls = c;
        return MHD_YES;
    }
    if (*upload_size) {
        if (c->body.n + *upload_size > MAX_BODY) c->too_big = 1;
        if (!c->too_big) sb_addn(&c->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (c->too_big) return reply_error(c, mc, 413, "request_too_large", "the request body is larger than %u bytes", MAX_BODY);
    if (c->body.oom) return reply_error(c, mc, 500, "out_of_memory", "out of memory");
    const int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    const int which = serve_endpoint(url);
    if (which == SERVE_EP_HEALTH) {
        if (!get) return reply_error(c, mc, 405, "method_not_allowed", "%s %s: use GET", method, url);
        return reply(mc, 200, "application/json", strdup("{\"status\":\"ok\"}"));
    }
    if (s->api_key) {
        const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization");
        size_t kl = strlen(s->api_key);
        int ok = h && !strncmp(h, "Bearer ", 7) && strlen(h + 7) == kl;
        unsigned diff = 0;
        for (size_t i = 0; ok && i < kl; i++) diff |= (unsigned char)h[7 + i] ^ (unsigned char)s->api_key[i];
        if (!ok || diff)
            return reply_error(c, mc, 401, "invalid_api_key",
                               h ? "incorrect API key provided" : "missing API key: send 'Authorization: Bearer KEY'");
    }
    if (which == SERVE_EP_METRICS) {
        if (!get) return reply_error(c, mc, 405, "method_not_allowed", "%s %s: use GET", method, url);
        return do_metrics(c, mc);
    }
    if (which == SERVE_EP_MODELS) {
        if (!get) return reply_error(c, mc, 405, "method_not_allowed", "%s %s: use GET", method, url);
        cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "object", "list");
        cJSON_AddStringToObject(m, "id", s->name);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)s->created);
        cJSON_AddStringToObject(m, "owned_by", "packlm");
        cJSON_AddNumberToObject(m, "max_model_len", (double)s->max_len);
        cJSON_AddItemToArray(d, m);
        return reply_json(c, mc, 200, o);
    }
    if (!which) return reply_error(c, mc, 404, "not_found", "no such path: %s %s", method, url);
    if (!post) return reply_error(c, mc, 405, "method_not_allowed", "%s %s: use POST", method, url);
    const serve_view v = view_of(s);
    serve_req r;
    unsigned st = serve_parse_request(&v, which, c->body.p, c->body.n, &r);
    enum MHD_Result res = st                          ? reply_error(c, mc, st, r.code, "%s", r.why)
                          : which == SERVE_EP_TOKENIZE ? answer_tokenize(c, mc, &r)
                                                       : answer_generate(c, mc, &r);
    serve_req_free(&r);
    return res;
}

static void completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)mc;
    (void)toe;
    if (*con_cls) conn_free(*con_cls);
    *con_cls = NULL;
}

/* ------------------------------------------------------------------ start-up */
static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    sbuf b = {0};
    char tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) sb_addn(&b, tmp, k);
    fclose(f);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (!b.p) b.p = calloc(1, 1);
    if (len) *len = b.n;
    return b.p;
}

static int64_t config_max_len(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *t = read_text(p, NULL);
    cJSON *o = t ? cJSON_Parse(t) : NULL;
    free(t);
    int64_t v = 0;
    cJSON *tc = cJSON_GetObjectItemCaseSensitive(o, "text_config");
    cJSON *x = cJSON_GetObjectItemCaseSensitive(tc ? tc : o, "max_position_embeddings");
    if (cJSON_IsNumber(x) && x->valuedouble >= 1) v = (int64_t)x->valuedouble;
    cJSON_Delete(o);
    return v > 0 ? v : 32768;
}

/* tokenizer_config.json's special token k as text: a string or {"content": ...}; NULL if absent */
static char *special_token(cJSON *o, const char *k) {
    cJSON *t = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsObject(t)) t = cJSON_GetObjectItemCaseSensitive(t, "content");
    return cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
}

/* the chat template next to the tokenizer: chat_template.jinja, else tokenizer_config.json's
 * chat_template (a string, or a list of {name, template}: "default"); NULL when there is none.
 * The bos / eos token texts the template may use come along into s. */
static char *find_template(server *s, const char *tok_path) {
    char dir[4200], p[4300];
    snprintf(dir, sizeof dir, "%s", tok_path);
    char *sl = strrchr(dir, '/');
    if (sl) *sl = 0;
    else snprintf(dir, sizeof dir, ".");
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    char *j = read_text(p, NULL);
    cJSON *o = j ? cJSON_Parse(j) : NULL;
    free(j);
    s->bos_tok = special_token(o, "bos_token");
    s->eos_tok = special_token(o, "eos_token");
    snprintf(p, sizeof p, "%s/chat_template.jinja", dir);
    char *t = read_text(p, NULL);
    cJSON *ct = cJSON_GetObjectItemCaseSensitive(o, "chat_template");
    if (t) {
    } else if (cJSON_IsString(ct)) t = strdup(ct->valuestring);
    else if (cJSON_IsArray(ct))
        for (cJSON *x = ct->child; x && !t; x = x->next) {
            cJSON *nm = cJSON_GetObjectItemCaseSensitive(x, "name"), *tp = cJSON_GetObjectItemCaseSensitive(x, "template");
            if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default") && cJSON_IsString(tp)) t = strdup(tp->valuestring);
        }
    cJSON_Delete(o);
    return t;
}

/* The chat template parsed, and tried on a one-message conversation; NULL with why when packlm
 * cannot render it (then serve refuses to start). */
static jtpl *load_template(server *s, const char *text, char *why, size_t wl) {
    char e[400];
    jtpl *t = jinja_parse(text, e, sizeof e);
    if (!t) {
        snprintf(why, wl, "the chat template uses what packlm serve cannot render: %s; run with --no-chat to serve "
                          "completions only", e);
        return NULL;
    }
    cJSON *req = cJSON_Parse("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
    const serve_view v = view_of(s);
    cJSON *ctx = req ? serve_chat_context(&v, req, e, sizeof e) : NULL;
    char *out = ctx ? jinja_render(t, ctx, e, sizeof e) : NULL;
    if (!out) {
        snprintf(why, wl, "the chat template fails on a one-message conversation: %s; run with --no-chat to serve "
                          "completions only", req ? e : "out of memory");
        jinja_free(t);
        t = NULL;
    }
    free(out);
    cJSON_Delete(ctx);
    cJSON_Delete(req);
    return t;
}

/* what start-up built, in reverse: the generator, tokenizer, session, template and tokens */
static void server_free(server *s, cli_session *ss) {
    plm_generator_free(s->g);
    plm_tokenizer_free(s->tok);
    cli_session_close(ss);
    jinja_free(s->tpl);
    free(s->bos_tok);
    free(s->eos_tok);
    free(s);
}

int cmd_serve(int argc, char **argv) {
    const char *cmd = "serve";
    cli_opts o = {.budget = 512};
    const char *host = "127.0.0.1", *api_key = NULL, *tok_path = NULL, *name = NULL;
    int64_t port = 8080, max_seqs = 64, max_queue = 256, max_len = 0;
    int no_chat = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_shared_opt(&o, cmd, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--no-chat")) no_chat = 1;
        else if (!strcmp(a, "--host") && v) host = argv[++i];
        else if (!strcmp(a, "--api-key") && v) api_key = argv[++i];
        else if (!strcmp(a, "--tokenizer") && v) tok_path = argv[++i];
        else if (!strcmp(a, "--served-model-name") && v) name = argv[++i];
        else if (!strcmp(a, "--port") && v) { if (cli_parse_int(cmd, a, argv[++i], 0, 65535, &port)) return 2; }
        else if (!strcmp(a, "--max-seqs") && v) { if (cli_parse_int(cmd, a, argv[++i], 1, 1 << 20, &max_seqs)) return 2; }
        else if (!strcmp(a, "--max-queue") && v) { if (cli_parse_int(cmd, a, argv[++i], 1, 1 << 24, &max_queue)) return 2; }
        else if (!strcmp(a, "--max-model-len") && v) { if (cli_parse_int(cmd, a, argv[++i], 1, INT32_MAX / 2, &max_len)) return 2; }
        else { cli_error(cmd, "unknown or incomplete option '%s'", a); usage(stderr); return 2; }
    }
    if (!o.model || o.input || o.out) {
        cli_error(cmd, o.model ? "--input and --out do not apply to serve" : "--model is required");
        usage(stderr);
        return 2;
    }
    if (api_key && !*api_key) return cli_error(cmd, "--api-key must not be empty"), 2;
    server *s = calloc(1, sizeof *s);
    cli_session ss;
    plm_error err = {0};
    if (!s) return cli_error(cmd, "out of memory");
    if (cli_session_open(&ss, o.model, (int)o.threads, o.device, o.invariant, o.single_pass, o.weights, &err)) {
        free(s);
        return cli_error(cmd, "%s", err.msg);
    }
    s->m = ss.model;
    s->c = ss.ctx;
    s->info = ss.info;
    s->api_key = api_key;
    s->budget = o.budget;
    s->max_queue = max_queue;
    s->max_len = max_len ? max_len : config_max_len(o.model);
    s->created = (long)time(NULL);
    s->stop_id = -1;
    if (name) snprintf(s->name, sizeof s->name, "%s", name);
    else {
        char d[4096];
        snprintf(d, sizeof d, "%s", o.model);
        size_t l = strlen(d);
        while (l > 1 && d[l - 1] == '/') d[--l] = 0;
        const char *b = strrchr(d, '/');
        snprintf(s->name, sizeof s->name, "%s", b ? b + 1 : d);
    }
    char tp[4200];
    if (tok_path) snprintf(tp, sizeof tp, "%s", tok_path);
    else snprintf(tp, sizeof tp, "%s/tokenizer.json", o.model);
    int rc = 0;
    if (tok_path || access(tp, R_OK) == 0) {
        if (plm_tokenizer_open(&s->tok, tp, &err)) rc = cli_error(cmd, "%s", err.msg);
    }
    if (!rc && s->tok) {
        int32_t e = plm_tokenizer_eos_id(s->tok), in = 0;
        for (int i = 0; i < s->info->n_eos; i++) in |= s->info->eos_ids[i] == e;
        if (e >= 0 && e < s->info->vocab_size && !in) s->stop_id = e;
        char *t = no_chat ? NULL : find_template(s, tp);
        if (t) {
            char why[900];
            s->tpl = load_template(s, t, why, sizeof why);
            s->tool_fmt = strstr(t, "<function=") ? TOOL_FMT_XML : TOOL_FMT_JSON;
            if (!s->tpl) rc = cli_error(cmd, "%s", why);
            free(t);
        }
    }
    plm_generator_params gp = {o.budget, (int32_t)max_seqs};
    if (!rc && plm_generator_new(&s->g, s->m, s->c, &gp, &err)) rc = cli_error(cmd, "%s", err.msg);
    /* the address: IPv4 or IPv6 (a literal such as :: or ::1, or a name) */
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    int v6 = 0;
    if (!rc && inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
    } else if (!rc && inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        v6 = 1;
    } else if (!rc) {
        struct addrinfo hints = {0}, *ai = NULL;
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, NULL, &hints, &ai) || !ai) rc = cli_error(cmd, "cannot resolve --host '%s'", host);
        else {
            memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
            v6 = ai->ai_family == AF_INET6;
        }
        if (ai) freeaddrinfo(ai);
    }
    if (v6) a6->sin6_port = htons((uint16_t)port);
    else a4->sin_port = htons((uint16_t)port);
    /* :: also takes IPv4 connections (dual stack), as 0.0.0.0 and :: do in most servers */
    int any6 = v6 && IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr);
    if (rc) return server_free(s, &ss), rc;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv_engine, NULL);
    s->rate_t0 = now_s();
    /* SIGINT / SIGTERM are taken by sigwait below: blocked in every thread */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t eng;
    if (pthread_create(&eng, NULL, engine_main, s)) return cli_error(cmd, "cannot start the engine thread");
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG |
            (any6 ? MHD_USE_DUAL_STACK : v6 ? MHD_USE_IPv6 : 0),
        (uint16_t)port, NULL, NULL, handler, s, MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)(max_queue + 256),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
    if (!d) {
        rc = cli_error(cmd, "cannot listen on %s%s%s:%lld (%s)", strchr(host, ':') ? "[" : "", host,
                       strchr(host, ':') ? "]" : "", (long long)port, strerror(errno));
    } else {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        fprintf(stderr,
                "packlm serve: model '%s' (vocab %d, max_model_len %lld, chat %s) on %s; listening on http://%s%s%s:%u\n",
                s->name, s->info->vocab_size, (long long)s->max_len,
                s->tpl ? "template" : "off",
                plm_ctx_device(s->c), strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
                di ? di->port : (unsigned)port);
        int sig = 0;
        sigwait(&sigs, &sig);
        fprintf(stderr, "packlm serve: signal %d, stopping\n", sig);
        MHD_stop_daemon(d);
    }
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv_engine);
    pthread_mutex_unlock(&s->mu);
    pthread_join(eng, NULL);
    for (int i = 0; i < s->n_act; i++) job_unref_locked(s->act[i]);
    for (job *j = s->inq, *nx; j; j = nx) nx = j->next, job_unref_locked(j);
    for (int i = 0; i < s->n_pool; i++) plm_state_free(s->pool[i]);
    free(s->pool);
    free(s->act);
    server_free(s, &ss);
    return rc;
}
