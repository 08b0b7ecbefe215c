/* Tokenizer encoding throughput, single thread, on a generated mixed-language text (English,
 * French, German, Russian, Chinese, Japanese, code, numbers, emoji, whitespace runs) of 8 MB
 * made by a seeded generator, so the figure is reproducible. */
#include "bench.h"
#include "packlm.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the benchmark text: target_bytes of it from the seed, NUL-terminated, malloc'ed */
size_t bench_tok_text(char **out, size_t target_bytes, uint64_t seed);

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const char *const EN[] = {
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "model", "token", "memory",
    "attention", "layer", "sequence", "engine", "inference", "language", "between", "through",
    "government", "university", "important", "development", "information", "particularly",
    "they'll", "we've", "it's", "don't", "I'm", "You're", "Internationalization", "GPU", "API",
    "Tokenization", "throughput", "latency", "benchmark", "Qwen", "transformer", "However",
    "Meanwhile", "Nevertheless", "approximately", "configuration", "unbelievable", "colour",
};
static const char *const FR[] = {"été", "très", "déjà", "où", "français", "élève", "garçon",
                                 "Noël", "naïve", "cœur", "Ça", "voilà", "préférée", "hôpital"};
static const char *const DE[] = {"Größe", "über", "Mädchen", "schön", "Straße", "Zürich",
                                 "Fußball", "Übersetzung", "natürlich", "Geschäftsführer"};
static const char *const RU[] = {"Привет", "мир", "язык", "модель", "это", "очень", "хорошо",
                                 "программирование", "данные", "вычисления", "быстро"};
static const char *const CODE[] = {
    "    for (int i = 0; i < n; i++) {\n", "        sum += a[i] * b[i];\n", "    }\n",
    "def forward(self, x):\n", "        return self.proj(x) + x\n", "#include <stdio.h>\n",
    "if __name__ == \"__main__\":\n", "\treturn -1;\n", "const x = {\"key\": [1, 2, 3]};\n",
    "    // TODO: handle the error case\n", "SELECT id, name FROM users WHERE age > 30;\n",
};
static const char *const EMOJI[] = {"😀", "🚀", "👍", "🎉", "❤️", "👨‍👩‍👧", "🇯🇵", "✅"};
static const char *const PUNCT[] = {", ", ". ", "; ", ": ", "! ", "? ", " — ", " (", ") ", "\n", "\n\n", "  "};
/* common Chinese and Japanese characters, joined without spaces as real text is */
static const char ZH[] = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会"
                         "自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十"
                         "用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实"
                         "回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重"
                         "被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水"
                         "模型语言数据计算速度测试";
static const char JA[] = "これはテストですのでしょうかありがとうございますカタカナひらがな日本語東京";

static void put(char **buf, size_t *n, size_t *cap, const char *s, size_t l) {
    if (*n + l + 1 > *cap) {
        *cap = (*n + l + 1) * 2;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *n, s, l);
    *n += l;
}

/* one code point (3 bytes for these scripts) at a random index of a UTF-8 string */
static void put_cjk(char **buf, size_t *n, size_t *cap, const char *set, size_t set_len, uint64_t *s) {
    size_t k = (size_t)(rng_next(s) % (set_len / 3)) * 3;
    put(buf, n, cap, set + k, 3);
}

size_t bench_tok_text(char **out, size_t target, uint64_t seed) {
    uint64_t s = seed;
    size_t n = 0, cap = target + 1024;
    char *buf = malloc(cap);
    char num[32];
#define PICK(a) (a)[rng_next(&s) % (sizeof(a) / sizeof((a)[0]))]
    while (buf && n < target) {
        unsigned r = (unsigned)(rng_next(&s) % 100);
        if (r < 55) { /* English sentence, Zipf-ish word choice */
            int words = 5 + (int)(rng_next(&s) % 20);
            for (int w = 0; w < words; w++) {
                size_t k = (size_t)(rng_next(&s) % (sizeof EN / sizeof EN[0]));
                k = k * k / (sizeof EN / sizeof EN[0]); /* favour the frequent words */
                const char *wd = EN[k];
                if (w) put(&buf, &n, &cap, " ", 1);
                put(&buf, &n, &cap, wd, strlen(wd));
                if (rng_next(&s) % 12 == 0) {
                    const char *p = PICK(PUNCT);
                    put(&buf, &n, &cap, p, strlen(p));
                }
            }
            put(&buf, &n, &cap, ".\n", 2);
        } else if (r < 63) { /* French / German / Russian */
            int words = 4 + (int)(rng_next(&s) % 12);
            unsigned lang = (unsigned)(rng_next(&s) % 3);
            for (int w = 0; w < words; w++) {
                const char *wd = lang == 0 ? PICK(FR) : lang == 1 ? PICK(DE) : PICK(RU);
                put(&buf, &n, &cap, " ", 1);
                put(&buf, &n, &cap, wd, strlen(wd));
            }
            put(&buf, &n, &cap, ".\n", 2);
        } else if (r < 75) { /* Chinese / Japanese sentence */
            int chars = 6 + (int)(rng_next(&s) % 30);
            bool ja = rng_next(&s) % 4 == 0;
            for (int c = 0; c < chars; c++) {
                if (ja) put_cjk(&buf, &n, &cap, JA, sizeof JA - 1, &s);
                else put_cjk(&buf, &n, &cap, ZH, sizeof ZH - 1, &s);
                if (c % 9 == 8) put(&buf, &n, &cap, "，", 3);
            }
            put(&buf, &n, &cap, "。\n", 4);
        } else if (r < 90) { /* code */
            int lines = 1 + (int)(rng_next(&s) % 6);
            for (int l = 0; l < lines; l++) {
                const char *c = PICK(CODE);
                put(&buf, &n, &cap, c, strlen(c));
            }
        } else if (r < 96) { /* numbers */
            int k = snprintf(num, sizeof num, " %llu.%02u%% ", (unsigned long long)(rng_next(&s) % 1000000),
                             (unsigned)(rng_next(&s) % 100));
            put(&buf, &n, &cap, num, (size_t)k);
        } else { /* emoji, whitespace runs */
            const char *e = PICK(EMOJI);
            put(&buf, &n, &cap, e, strlen(e));
            int sp = (int)(rng_next(&s) % 9);
            for (int i = 0; i < sp; i++) put(&buf, &n, &cap, i % 4 == 3 ? "\t" : " ", 1);
            put(&buf, &n, &cap, "\r\n", 2);
        }
    }
#undef PICK
    if (!buf) return 0;
    buf[n] = 0;
    *out = buf;
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int bench_tokenizer(const char *tokenizer_json, double *mb_per_s) {
    plm_error err = {0};
    plm_tokenizer *t = NULL;
    double t0 = now_s();
    if (plm_tokenizer_open(&t, tokenizer_json, &err)) {
        fprintf(stderr, "bench tokenizer: error: %s\n", err.msg);
        return 1;
    }
    double t_load = now_s() - t0;
    char *text = NULL;
    size_t n = bench_tok_text(&text, (size_t)8 << 20, 42);
    if (!n) {
        plm_tokenizer_free(t);
        return 1;
    }
    /* the first run starts with an empty word cache; the later ones find it filled (the
       tokenizer keeps it between calls), as a long-running server would */
    int32_t *ids = NULL;
    size_t n_ids = 0;
    double best = 1e30;
    int rc = 0;
    for (int rep = 0; rep < 3 && !rc; rep++) {
        double a = now_s();
        if (plm_tokenizer_encode(t, text, n, &ids, &n_ids, &err)) {
            fprintf(stderr, "bench tokenizer: error: %s\n", err.msg);
            rc = 1;
            break;
        }
        double dt = now_s() - a;
        if (rep == 0) printf("tokenizer: first (cold word cache) run: %.1f MB/s\n", (double)n / 1e6 / dt);
        if (dt < best) best = dt;
        free(ids);
        ids = NULL;
    }
    if (!rc) {
        double mbs = (double)n / 1e6 / best;
        printf("tokenizer: encoded %.2f MB mixed-language text -> %zu tokens; best of 3: %.1f MB/s "
               "(single thread; load %.2f s)\n",
               (double)n / 1e6, n_ids, mbs, t_load);
        if (mb_per_s) *mb_per_s = mbs;
    }
    free(text);
    plm_tokenizer_free(t);
    return rc;
}
