#!/usr/bin/env bash
# The library's tests once more under AddressSanitizer + UndefinedBehaviorSanitizer (build/asan).
# Skips the slow and the CLI-driven ones (test_cli runs build/packlm); any sanitizer report fails.
set -u
cd "$(dirname "$0")/.."
B=build/asan
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
if ! make -s B=$B OPT="-O1 -march=native" SAN="$san" \
        $B/tests/test_fixtures $B/tests/test_property $B/tests/test_layouts $B/tests/test_safetensors \
        $B/tests/test_parsers >$B.log 2>&1; then
    tail -20 $B.log
    echo "sanitize: build failed"
    exit 1
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
fail=0
for t in test_fixtures test_property test_layouts test_safetensors test_parsers; do
    if $B/tests/$t > $B/$t.log 2>&1; then
        echo "sanitize: $t ok ($(tail -n 1 $B/$t.log))"
    else
        grep -E "ERROR|runtime error|FAIL" $B/$t.log | head -10
        echo "sanitize: $t FAILED (log: $B/$t.log)"
        fail=1
    fi
done
exit $fail
