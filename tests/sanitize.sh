#!/usr/bin/env bash
# Every test binary once more under AddressSanitizer + UndefinedBehaviorSanitizer (build/asan, -O1),
# and the CLI scripts against the sanitized CLI: any sanitizer report or failed check fails.
# The CLI-driven tests (test_cli, generate_cli.sh, bench_smoke.sh) run in build/asan/root, a directory
# whose tests/ is the repository's and whose build/packlm is the sanitized CLI.
set -u
cd "$(dirname "$0")/.."
B=build/asan
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
tests=$(ls tests/test_*.c | grep -v 'tests/test_cuda_' | sed 's#tests/\(.*\)\.c#\1#') # CUDA tests: not here
targets="$B/packlm"
for t in $tests; do targets="$targets $B/tests/$t"; done
mkdir -p $B
if ! make -s -j2 B=$B OPT="-O1 -march=native" SAN="$san" $targets >$B.log 2>&1; then
    tail -20 $B.log
    echo "FAIL sanitize: build failed (log: $B.log)"
    exit 1
fi
root=$B/root
rm -rf $root
mkdir -p $root/build
ln -s "$PWD/tests" $root/tests
ln -s "$PWD/$B/packlm" $root/build/packlm
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fail=0
report() { # report <name> <log> <status>
    if [ "$3" -eq 0 ] && ! grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error" "$2"; then
        echo "sanitize: $1 ok ($(tail -n 1 "$2"))"
    else
        grep -E "ERROR|runtime error|^FAIL" "$2" | head -10
        echo "FAIL sanitize: $1 (log: $2)"
        fail=1
    fi
}
for t in $tests; do
    log=$PWD/$B/$t.log
    if [ "$t" = test_cli ]; then
        (cd $root && "$OLDPWD/$B/tests/$t") > "$log" 2>&1
    else
        $B/tests/$t > "$log" 2>&1
    fi
    report "$t" "$log" $?
done
for s in generate_cli bench_smoke; do
    log=$PWD/$B/$s.log
    (cd $root && bash tests/$s.sh) > "$log" 2>&1
    report "$s.sh" "$log" $?
done
exit $fail
