#!/usr/bin/env bash
# Runs the libFuzzer targets of the file parsers and of the server's request path (fuzz/build.sh:
# safetensors + step, config, CLI input, serve) briefly under AddressSanitizer + UBSan: each first
# replays the inputs that once failed (fuzz/regress/<name>-*), then starts from its committed seed
# corpus fuzz/corpus/<name>/ (copied, so the repository is never written) and runs FUZZ_SECONDS
# (default 5) seconds. Any crash, sanitizer report or failed invariant fails the suite, and so
# does a missing clang: the suite never passes without having fuzzed.
set -u
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-5}
OUT=build/fuzz
echo "fuzz_parsers: building (fuzz/build.sh)"
if ! fuzz/build.sh; then
    echo "FAIL fuzz_parsers: build failed"
    exit 1
fi
fail=0
for t in safetensors config cli_input serve; do
    work="$OUT/run-$t"
    rm -rf "$work"
    mkdir -p "$work/corpus"
    regress=$(ls fuzz/regress/$t-* 2>/dev/null)
    if [ -n "$regress" ] && ! UBSAN_OPTIONS=print_stacktrace=1 "$OUT/fuzz_$t" $regress > "$work/regress.log" 2>&1; then
        grep -E "ERROR|runtime error|SUMMARY|deadly" "$work/regress.log" | head -5
        echo "FAIL fuzz_$t: an input of fuzz/regress/ fails again (log: $work/regress.log)"
        fail=1
        continue
    fi
    cp fuzz/corpus/$t/* "$work/corpus/"
    dict=""
    [ -f fuzz/$t.dict ] && dict="-dict=fuzz/$t.dict"
    UBSAN_OPTIONS=print_stacktrace=1 "$OUT/fuzz_$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=20 \
        -rss_limit_mb=4096 -print_final_stats=1 $dict -artifact_prefix="$work/" "$work/corpus" > "$work/fuzz.log" 2>&1
    rc=$?
    execs=$(grep -m1 'stat::number_of_executed_units' "$work/fuzz.log" | awk '{print $2}')
    if [ $rc -ne 0 ]; then
        grep -E "ERROR|runtime error|SUMMARY|deadly" "$work/fuzz.log" | head -5
        echo "FAIL fuzz_$t: exit code $rc (log: $work/fuzz.log; the input: $work/crash-* or leak-*)"
        fail=1
    else
        echo "ok   fuzz_$t: ${execs:-?} executions in ${SECONDS_EACH}s, no finding"
    fi
done
exit $fail
