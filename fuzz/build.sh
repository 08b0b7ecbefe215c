#!/usr/bin/env bash
# Builds the libFuzzer targets of the file parsers with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer into build/fuzz/: the library once (make B=build/fuzz/lib), then
#   fuzz_safetensors  checkpoint loading (single file, sharded index) + one packed step
#   fuzz_config       config.json + generation_config.json
#   fuzz_cli_input    the CLI's input reader (token-id lines, JSONL)
#   fuzz_tokenizer    tokenizer.json loading, encode / decode (also built by tests/fuzz_tokenizer.sh)
#   fuzz_serve        packlm serve's request path: endpoint, body, fields, chat rendering, prompts
# Exits non-zero, loudly, when clang or its
# libFuzzer runtime is missing (Debian: apt-get install clang libclang-rt-14-dev libomp-14-dev).
# Usage: fuzz/build.sh [target ...]   (default: all but fuzz_tokenizer)
set -u
cd "$(dirname "$0")/.."
CLANG=${CLANG:-clang}
OUT=build/fuzz
if ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "FAIL fuzz build: $CLANG not installed (apt-get install clang libclang-rt-14-dev)" >&2
    exit 1
fi
mkdir -p "$OUT"
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' > "$OUT/probe.c"
if ! "$CLANG" -fsanitize=fuzzer,address "$OUT/probe.c" -o "$OUT/probe" >/dev/null 2>&1; then
    echo "FAIL fuzz build: $CLANG cannot link -fsanitize=fuzzer (apt-get install libclang-rt-14-dev)" >&2
    exit 1
fi
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
if ! make -s B="$OUT/lib" CC="$CLANG" OPT="-O1 -march=native" SAN="$SAN -fsanitize=fuzzer-no-link" \
        "$OUT/lib/libpacklm.a" > "$OUT/lib.log" 2>&1; then
    tail -20 "$OUT/lib.log"
    echo "FAIL fuzz build: the library did not build (log: $OUT/lib.log)" >&2
    exit 1
fi
CF="-g -O1 -march=native -std=c11 -D_GNU_SOURCE -fopenmp -Iinclude -Isrc -Itools -Itests -Ifuzz $SAN -fsanitize=fuzzer"
LIBS="$OUT/lib/libpacklm.a -lopenblas -lcjson -ljansson -lpcre2-8 -lutf8proc -lm"
targets=${*:-fuzz_safetensors fuzz_config fuzz_cli_input fuzz_serve}
for t in $targets; do
    case $t in
    fuzz_safetensors) extra="tests/synth.c tests/testutil.c" ;;
    fuzz_cli_input) extra="tools/cli_input.c" ;;
    fuzz_serve) extra="tools/serve_request.c tools/serve_jinja.c tools/serve_tools.c" ;;
    *) extra="" ;;
    esac
    if ! "$CLANG" $CF "fuzz/$t.c" $extra $LIBS -o "$OUT/$t" 2> "$OUT/$t.build.log"; then
        cat "$OUT/$t.build.log"
        echo "FAIL fuzz build: $t" >&2
        exit 1
    fi
done
