#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "packlm.h"

void bench_report(bench_ctx *b, const char *key, const char *label, double value, const char *unit) {
    if (value != 0 && fabs(value) < 0.01) printf("  %-58s %12.3e %s\n", label, value, unit);
    else printf("  %-58s %12.2f %s\n", label, value, unit);
    fflush(stdout);
    if (b->n_figs < (int)(sizeof b->figs / sizeof b->figs[0])) {
        struct bench_fig *f = &b->figs[b->n_figs++];
        snprintf(f->key, sizeof f->key, "%s", key);
        snprintf(f->unit, sizeof f->unit, "%s", unit);
        f->value = value;
    }
}

int bench_write_json(const bench_ctx *b, const char *path) {
    char buf[16384];
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "{\n");
    for (int i = 0; i < b->n_figs && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "  \"%s\": {\"value\": %.6g, \"unit\": \"%s\"}%s\n",
                              b->figs[i].key, b->figs[i].value, b->figs[i].unit, i + 1 < b->n_figs ? "," : "");
    if (n < sizeof buf) n += (size_t)snprintf(buf + n, sizeof buf - n, "}\n");
    if (n >= sizeof buf) return 1;
    plm_error err = {0};
    if (plm_write_file_atomic(path, buf, n, &err)) {
        fprintf(stderr, "packlm bench: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) sscanf(line + 6, "%lf", &kb);
    fclose(f);
    return kb * 1024.0;
}
