/* Shared test helpers: checks that count failures, a relative comparator, file helpers. */
#ifndef PLM_TESTUTIL_H
#define PLM_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "packlm.h"

extern int tu_failures, tu_checks;

/* Records one check; prints "ok" or "FAIL" with the message. Returns cond. */
int tu_check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The one comparator of the suite. Every value of x and ref must be finite: a NaN or an infinity
 * anywhere (even the same infinity in both at the same place) fails every comparison.
 *   tu_rel_err: max|x - ref| / max|ref| (max|x - ref| when ref is all zeros); +inf when anything is
 *               not finite.
 *   tu_within:  1 when everything is finite and max|x - ref| <= rel * max|ref| (rel 0: bitwise
 *               equal values); *err_out (may be NULL) receives tu_rel_err. */
double tu_rel_err(const float *x, const float *ref, size_t n);
int tu_within(const float *x, const float *ref, size_t n, double rel, double *err_out);
/* max |x - ref| and max |x|; +inf when any value is not finite */
double tu_max_abs_diff(const float *x, const float *ref, size_t n);
double tu_max_abs(const float *x, size_t n);
/* tu_within as a recorded check; prints the figures. */
int tu_close(const float *x, const float *ref, size_t n, double rel, const char *what);
/* Worst-error update that NaN cannot skip: a NaN error becomes +inf and is kept. */
void tu_worst(double *worst, double e);
/* Fills x with a NaN pattern, so that any output a run fails to write fails the comparison. */
void tu_poison(float *x, size_t n);

/* Prints the summary and returns the process exit code. */
int tu_finish(const char *name);

/* Reads whitespace-separated token lines (one sequence per line). Returns the count; fills *seqs
 * (malloc'ed arrays) and *lens. */
int tu_read_token_lines(const char *path, int32_t ***seqs, int64_t **lens);
void tu_free_seqs(int32_t **seqs, int n);

/* xorshift PRNG */
typedef struct { uint64_t s; } tu_rng;
uint64_t tu_next(tu_rng *r);
float tu_uniform(tu_rng *r); /* [0, 1) */
float tu_normal(tu_rng *r);
int tu_randint(tu_rng *r, int lo, int hi); /* [lo, hi] */

#define TU_REQUIRE_OK(expr, errp)                                                  \
    do {                                                                           \
        plm_status st_ = (expr);                                                   \
        if (!tu_check(st_ == PLM_OK, "%s -> %s", #expr, (errp)->msg)) return 1;   \
    } while (0)

#endif
