#!/usr/bin/env bash
# Runs the whole suite from the repository root: every build/tests/test_* binary, then every
# tests/*.sh script. Exit status: the number of failed parts (0 = all passed).
set -u
cd "$(dirname "$0")/.."
failed=0
for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    echo "=== $t"
    if "$t" > "build/$(basename "$t").log" 2>&1; then
        tail -n 1 "build/$(basename "$t").log"
    else
        grep -E '^FAIL' "build/$(basename "$t").log" | head -20
        tail -n 3 "build/$(basename "$t").log"
        echo "FAILED: $t (log: build/$(basename "$t").log)"
        failed=$((failed + 1))
    fi
done
for s in tests/*.sh; do
    [ "$s" = tests/run_all.sh ] && continue
    [ -f "$s" ] || continue
    echo "=== $s"
    if ! bash "$s"; then echo "FAILED: $s"; failed=$((failed + 1)); fi
done
echo "=== suite: $failed part(s) failed"
[ "$failed" -eq 0 ]
