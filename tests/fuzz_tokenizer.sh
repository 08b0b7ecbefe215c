#!/usr/bin/env bash
# Builds fuzz/fuzz_tokenizer.c with clang + libFuzzer (+ AddressSanitizer) into build/fuzz/ and runs
# it for a short time (FUZZ_SECONDS, default 20) from seeds it writes itself plus the fixture texts.
# Exits non-zero on a crash or a failed check, and when clang or libFuzzer is missing (scripts/deps.sh
# installs them: clang libclang-rt-14-dev): a missing tool fails the suite, it never skips.
set -u
cd "$(dirname "$0")/.."
CLANG=${CLANG:-clang}
SECONDS_TOTAL=${FUZZ_SECONDS:-20}
OUT=build/fuzz
if ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "FAIL fuzz_tokenizer: $CLANG not installed (scripts/deps.sh installs clang libclang-rt-14-dev)"
    exit 1
fi
mkdir -p "$OUT"
probe="$OUT/probe.c"
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' > "$probe"
if ! "$CLANG" -fsanitize=fuzzer,address "$probe" -o "$OUT/probe" >/dev/null 2>&1; then
    echo "FAIL fuzz_tokenizer: $CLANG cannot link -fsanitize=fuzzer (scripts/deps.sh installs libclang-rt-14-dev)"
    exit 1
fi
echo "fuzz_tokenizer: building $OUT/fuzz_tokenizer"
if ! "$CLANG" -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -Iinclude -Isrc fuzz/fuzz_tokenizer.c src/tok/*.c src/util/error.c \
        -lpcre2-8 -lutf8proc -lcjson -o "$OUT/fuzz_tokenizer"; then
    echo "FAIL fuzz_tokenizer: build failed"
    exit 1
fi
corpus="$OUT/corpus"
rm -rf "$corpus"
mkdir -p "$corpus"
# fixture texts as encoder seeds (mode byte 2)
i=0
while IFS= read -r line; do
    printf '\002%s' "$line" > "$corpus/seed-jsonl-$i"
    i=$((i + 1))
done < tests/data/tokenizer-qwen3/corpus.jsonl
export PLM_FUZZ_TOKENIZER=tests/data/tokenizer-qwen3/tokenizer.json
export PLM_FUZZ_SEED_DIR="$corpus"
# inputs that once failed (fuzz/regress/tokenizer-*) run first, as fixed cases
regress=$(ls fuzz/regress/tokenizer-* 2>/dev/null)
if [ -n "$regress" ] && ! "$OUT/fuzz_tokenizer" $regress > "$OUT/regress.log" 2>&1; then
    grep -E "runtime error|ERROR|SUMMARY" "$OUT/regress.log" | head -5
    echo "FAIL fuzz_tokenizer: a regression input fails again (log: $OUT/regress.log)"
    exit 1
fi
echo "fuzz_tokenizer: running for ${SECONDS_TOTAL}s"
"$OUT/fuzz_tokenizer" -max_total_time="$SECONDS_TOTAL" -max_len=4096 -timeout=20 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="$OUT/" "$corpus" > "$OUT/fuzz.log" 2>&1
rc=$?
tail -n 15 "$OUT/fuzz.log"
if [ $rc -ne 0 ]; then
    echo "FAIL fuzz_tokenizer: exit code $rc (see $OUT/fuzz.log and the crash-* input in $OUT/)"
    exit 1
fi
echo "ok fuzz_tokenizer: no crash in ${SECONDS_TOTAL}s"
