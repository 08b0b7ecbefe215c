/* The machine's own ceilings, measured rather than assumed, so that every throughput figure of the
 * other sections can be read against the one that bounds it:
 *   - arithmetic peaks from register-only loops (24 independent accumulators per thread, no memory
 *     operand, the operands pinned in registers so nothing folds away), on every thread at once:
 *       fp32 FMA: vfmadd on the widest vectors the CPU has (512-bit with AVX-512, else 256-bit),
 *                 and on 256-bit ones (the width of packlm's 8-lane plm_v8 kernels: the one-row
 *                 GEMV, the batch-invariant BF16 GEMM, every BF16 kernel under PLM_ISA=avx2);
 *       BF16 dot product: vdpbf16ps (AVX-512 BF16; 2 products per F32 lane);
 *       int8 dot product: vpdpbusd (AVX-512 VNNI; 4 products per int32 lane), else
 *                 vpmaddubsw + vpmaddwd (AVX2; what the int8 AVX2 kernel does per 32 products);
 *     each counted as 2 operations per multiply-add (GFLOP/s, GOP/s), best of 5 (short runs: on a
 *     shared machine the best one is the one nothing else interrupted);
 *   - a streaming read of the checkpoint's weight files (mmapped, read once to page them in, then
 *     summed with 256-bit loads split over the threads), GB/s, best of 3.
 * A section that knows what bounds it reports its figure against these (bench_ctx.ceil). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PLM_X86 1
#endif

#include "bench.h"
#include "kernels/fast.h"
#include "kernels/kernels.h"

enum { NACC = 24 };

#ifdef PLM_X86
/* multiply-adds of one thread's loop of it iterations */
__attribute__((target("avx512f"))) static double loop_fma512(long it) {
    __m512 a[NACC], x = _mm512_set1_ps(1.0f), w = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < NACC; i++) a[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < it; k++) {
        __asm__("" : "+v"(x), "+v"(w));
#pragma GCC unroll 24
        for (int i = 0; i < NACC; i++) a[i] = _mm512_fmadd_ps(a[i], x, w);
    }
    __m512 s = a[0];
    for (int i = 1; i < NACC; i++) s = _mm512_add_ps(s, a[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)it * NACC * 16;
}

__attribute__((target("avx2,fma"))) static double loop_fma256(long it) {
    __m256 a[NACC], x = _mm256_set1_ps(1.0f), w = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < NACC; i++) a[i] = _mm256_set1_ps((float)i);
    for (long k = 0; k < it; k++) {
        __asm__("" : "+x"(x), "+x"(w));
#pragma GCC unroll 24
        for (int i = 0; i < NACC; i++) a[i] = _mm256_fmadd_ps(a[i], x, w);
    }
    __m256 s = a[0];
    for (int i = 1; i < NACC; i++) s = _mm256_add_ps(s, a[i]);
    volatile float sink = _mm256_cvtss_f32(s);
    (void)sink;
    return (double)it * NACC * 8;
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) static double loop_dpbf16(long it) {
    __m512 a[NACC];
    __m512i x = _mm512_set1_epi16(0x3f80), w = _mm512_set1_epi16(0x3380);
    for (int i = 0; i < NACC; i++) a[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < it; k++) {
        __asm__("" : "+v"(x), "+v"(w));
#pragma GCC unroll 24
        for (int i = 0; i < NACC; i++) a[i] = _mm512_dpbf16_ps(a[i], (__m512bh)x, (__m512bh)w);
    }
    __m512 s = a[0];
    for (int i = 1; i < NACC; i++) s = _mm512_add_ps(s, a[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)it * NACC * 32;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double loop_vnni(long it) {
    __m512i a[NACC], x = _mm512_set1_epi8(3), w = _mm512_set1_epi8(-2);
    for (int i = 0; i < NACC; i++) a[i] = _mm512_set1_epi32(i);
    for (long k = 0; k < it; k++) {
        __asm__("" : "+v"(x), "+v"(w));
#pragma GCC unroll 24
        for (int i = 0; i < NACC; i++) a[i] = _mm512_dpbusd_epi32(a[i], x, w);
    }
    __m512i s = a[0];
    for (int i = 1; i < NACC; i++) s = _mm512_add_epi32(s, a[i]);
    volatile int sink = _mm512_reduce_add_epi32(s);
    (void)sink;
    return (double)it * NACC * 64;
}

/* vpmaddubsw (u8 x s8 pairs -> s16) + vpmaddwd (-> s32) + vpaddd: 32 products per three instructions */
__attribute__((target("avx2"))) static double loop_maddubs(long it) {
    enum { NA = 12 };
    __m256i a[NA], x = _mm256_set1_epi8(3), w = _mm256_set1_epi8(-2), one = _mm256_set1_epi16(1);
    for (int i = 0; i < NA; i++) a[i] = _mm256_set1_epi32(i);
    for (long k = 0; k < it; k++) {
        __asm__("" : "+x"(x), "+x"(w), "+x"(one));
#pragma GCC unroll 12
        for (int i = 0; i < NA; i++)
            a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), one));
    }
    __m256i s = a[0];
    for (int i = 1; i < NA; i++) s = _mm256_add_epi32(s, a[i]);
    volatile int sink = _mm256_extract_epi32(s, 0);
    (void)sink;
    return (double)it * NA * 32;
}
#endif

typedef double (*loop_fn)(long it);

/* 2 x multiply-adds per second over all threads, best of 5, in units of 1e9 */
static double peak(loop_fn f, long it, int nth) {
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double ops = 0;
        const double t0 = bench_now();
#pragma omp parallel num_threads(nth) reduction(+ : ops)
        ops += f(it);
        const double dt = bench_now() - t0;
        best = 2.0 * ops / dt * 1e-9 > best ? 2.0 * ops / dt * 1e-9 : best;
    }
    return best;
}

/* ---------------------------------------------------------------- streaming read */
typedef unsigned long long plm_v4q __attribute__((vector_size(32)));

/* a checksum of the bytes (unsigned: wraps) */
static unsigned long long sum_bytes(const unsigned char *p, size_t n) {
    plm_v4q a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        plm_v4q v0, v1, v2, v3;
        memcpy(&v0, p + i, 32), memcpy(&v1, p + i + 32, 32), memcpy(&v2, p + i + 64, 32), memcpy(&v3, p + i + 96, 32);
        a0 += v0, a1 += v1, a2 += v2, a3 += v3;
    }
    a0 += a1 + a2 + a3;
    unsigned long long s = a0[0] + a0[1] + a0[2] + a0[3];
    for (; i < n; i++) s += p[i];
    return s;
}

/* the *.safetensors files of dir, mapped; returns how many (at most max) */
static int map_weights(const char *dir, const unsigned char **p, size_t *n, int max) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d)) && k < max) {
        const size_t L = strlen(e->d_name);
        if (L < 12 || strcmp(e->d_name + L - 12, ".safetensors")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        const int fd = open(path, O_RDONLY);
        struct stat st;
        if (fd < 0) continue;
        if (fstat(fd, &st) == 0 && st.st_size > 0) {
            void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
            if (m != MAP_FAILED) p[k] = m, n[k] = (size_t)st.st_size, k++;
        }
        close(fd);
    }
    closedir(d);
    return k;
}

static double stream_rate(const char *dir, int nth, double *bytes_out) {
    enum { MAXF = 64 };
    const unsigned char *p[MAXF];
    size_t n[MAXF], total = 0;
    const int nf = map_weights(dir, p, n, MAXF);
    for (int f = 0; f < nf; f++) total += n[f];
    *bytes_out = (double)total;
    if (!total) return 0;
    double best = 0;
    volatile unsigned long long sink = 0;
    for (int r = 0; r < 4; r++) { /* round 0 pages the files in */
        unsigned long long s = 0;
        const double t0 = bench_now();
        for (int f = 0; f < nf; f++) {
            const size_t chunk = ((n[f] + (size_t)nth - 1) / (size_t)nth + 4095) / 4096 * 4096;
#pragma omp parallel for num_threads(nth) schedule(static) reduction(+ : s)
            for (int t = 0; t < nth; t++) {
                const size_t a = (size_t)t * chunk;
                if (a < n[f]) s += sum_bytes(p[f] + a, n[f] - a < chunk ? n[f] - a : chunk);
            }
        }
        const double dt = bench_now() - t0;
        sink += s;
        if (r && (double)total / dt * 1e-9 > best) best = (double)total / dt * 1e-9;
    }
    (void)sink;
    for (int f = 0; f < nf; f++) munmap((void *)p[f], n[f]);
    return best;
}

int bench_ceilings(bench_ctx *b) {
    const int nth = b->n_threads;
    const long it = b->quick ? 200000 : 4000000;
    printf("ceilings (%d threads; register-only loops, and one streaming read of the weights)\n", nth);
    memset(&b->ceil, 0, sizeof b->ceil);
#ifdef PLM_X86
    if (plm_isa_supported(PLM_ISA_AVX2)) {
        b->ceil.fma256 = peak(loop_fma256, it, nth);
        b->ceil.fma = b->ceil.fma256;
        b->ceil.fma_width = 256;
    }
    if (plm_isa_supported(PLM_ISA_AVX512VNNI) || plm_isa_supported(PLM_ISA_AVX512BF16)) { /* AVX-512 F/BW/VL */
        b->ceil.fma = peak(loop_fma512, it, nth);
        b->ceil.fma_width = 512;
    }
    if (plm_isa_supported(PLM_ISA_AVX512BF16)) b->ceil.bf16 = peak(loop_dpbf16, it, nth);
    if (plm_isa_supported(PLM_ISA_AVX512VNNI)) b->ceil.int8 = peak(loop_vnni, it, nth), b->ceil.int8_isa = "vpdpbusd";
    else if (plm_isa_supported(PLM_ISA_AVX2)) b->ceil.int8 = peak(loop_maddubs, it, nth), b->ceil.int8_isa = "vpmaddubsw";
#endif
    char label[128];
    if (b->ceil.fma > 0) {
        snprintf(label, sizeof label, "fp32 FMA peak (%d-bit vfmadd)", b->ceil.fma_width);
        bench_report(b, "ceiling_fma_gflops", label, b->ceil.fma, "GFLOP/s");
    }
    if (b->ceil.fma256 > 0 && b->ceil.fma_width > 256)
        bench_report(b, "ceiling_fma256_gflops", "fp32 FMA peak, 256-bit (packlm's 8-lane kernels)",
                     b->ceil.fma256, "GFLOP/s");
    if (b->ceil.bf16 > 0)
        bench_report(b, "ceiling_bf16_gflops", "BF16 dot-product peak (vdpbf16ps)", b->ceil.bf16, "GFLOP/s");
    else
        printf("  BF16 dot-product peak: no AVX-512 BF16 on this CPU\n");
    if (b->ceil.int8 > 0) {
        snprintf(label, sizeof label, "int8 dot-product peak (%s)", b->ceil.int8_isa);
        bench_report(b, "ceiling_int8_gops", label, b->ceil.int8, "GOP/s");
    }
    double bytes = 0;
    b->ceil.stream = stream_rate(b->model_dir, nth, &bytes);
    if (b->ceil.stream > 0) {
        snprintf(label, sizeof label, "streaming read of the weight files (%.0f MiB)", bytes / 1048576.0);
        bench_report(b, "ceiling_stream_gb_per_s", label, b->ceil.stream, "GB/s");
    } else {
        printf("  streaming read: no *.safetensors file in %s\n", b->model_dir);
    }
    return 0;
}
