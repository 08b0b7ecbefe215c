#!/usr/bin/env bash
# The CUDA test set, on a machine with an NVIDIA GPU: builds packlm with CUDA into build/gpu (or uses
# B=dir if already built there), runs the CUDA op harness, the fixtures and the generation tests with
# PLM_REQUIRE_CUDA=1 (a missing GPU fails instead of skipping), compute-sanitizer's memcheck on the op
# harness, and the CLI on the bundled model (score and generate on cuda against the CPU). Logs go to
# $OUT (default build/gpu-logs); the last lines printed are the summary.
#   PLM_DEPS=dir   include/ and lib/ of libraries the machine lacks (cJSON, utf8proc, PCRE2 headers)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu-logs}
B=${B:-build/gpu}
mkdir -p "$OUT"
summary=()
say() { summary+=("$*"); echo "$*"; }
if [ -n "${PLM_DEPS:-}" ]; then
    deps=$(cd "$PLM_DEPS" && pwd)
    export LD_LIBRARY_PATH="$deps/lib:${LD_LIBRARY_PATH:-}"
    set -- CPPFLAGS="-I$deps/include" LDFLAGS="-L$deps/lib -Wl,-rpath,$deps/lib"
else
    set --
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
head -12 "$OUT/nvidia-smi.txt" | grep -E "Driver|H200|H100|MiB" | head -3
t0=$(date +%s)
if ! make -j"$(nproc)" CUDA=1 B="$B" "$@" > "$OUT/build.log" 2>&1; then
    tail -30 "$OUT/build.log"
    say "build: FAILED (log: $OUT/build.log)"
    exit 1
fi
say "build: make CUDA=1 B=$B ok in $(( $(date +%s) - t0 )) s"
export PLM_REQUIRE_CUDA=1
fail=0
for t in test_cuda_ops test_cuda_devmem test_fixtures test_generate; do
    t0=$(date +%s)
    if "$B/tests/$t" > "$OUT/$t.log" 2>&1; then
        say "$t: $(tail -n 1 "$OUT/$t.log") ($(( $(date +%s) - t0 )) s)"
    else
        grep -E "^FAIL" "$OUT/$t.log" | head -20
        say "$t: FAILED: $(tail -n 1 "$OUT/$t.log")"
        fail=1
    fi
done
# the Python package with torch CUDA tensors (tests/python/test_device.py), where torch and pytest exist
if python3 -c 'import torch, pytest, numpy' > /dev/null 2>&1; then
    PACKLM_LIB="$PWD/$B/libpacklm.so" PYTHONPATH=python python3 -m pytest -q -rs -p no:cacheprovider \
        tests/python/test_device.py > "$OUT/pytest-device.log" 2>&1
    rc=$?
    say "pytest tests/python/test_device.py: exit $rc, $(tail -n 1 "$OUT/pytest-device.log")"
    [ $rc -eq 0 ] || { grep -E "^(FAILED|ERROR)" "$OUT/pytest-device.log" | head -20; fail=1; }
else
    say "pytest tests/python/test_device.py: not run (no python3 with torch, pytest and numpy)"
fi
if command -v compute-sanitizer > /dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
    cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    for t in ${SANITIZE:-test_cuda_ops}; do
        "$cs" --tool memcheck --leak-check full --report-api-errors no --error-exitcode 9 "$B/tests/$t" > "$OUT/memcheck-$t.log" 2>&1
        rc=$?
        say "compute-sanitizer memcheck on $t: exit $rc, $(grep -E 'ERROR SUMMARY' "$OUT/memcheck-$t.log" | tail -1)"
        [ $rc -eq 0 ] || { grep -m 12 -E "=========" "$OUT/memcheck-$t.log"; fail=1; }
    done
fi
# the CLI on the bundled model: score and generate on cuda against the CPU
m=tests/data/tiny-dense
in=$m/inputs.txt
"$B/packlm" score --model $m --input $in --device cpu > "$OUT/score-cpu.jsonl" 2> "$OUT/score-cpu.err"
"$B/packlm" score --model $m --input $in --device cuda > "$OUT/score-cuda.jsonl" 2> "$OUT/score-cuda.err"
rc=$?
worst=$(python3 - "$OUT/score-cpu.jsonl" "$OUT/score-cuda.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) and len(a) > 0, "line counts differ"
w = 0.0
for x, y in zip(a, b):
    assert x["index"] == y["index"] and x["tokens"] == y["tokens"]
    w = max(w, abs(x["logprob"] - y["logprob"]) / max(1.0, abs(x["logprob"])))
print("%.2e" % w)
PY
) || worst=FAILED
say "packlm score --device cuda: exit $rc, $(wc -l < "$OUT/score-cuda.jsonl") lines, worst relative difference to the CPU $worst"
case $worst in FAILED) fail=1 ;; *) python3 -c "import sys; sys.exit(0 if float('$worst') <= 1e-5 else 1)" || fail=1 ;; esac
"$B/packlm" generate --model $m --input $in --max-new-tokens 8 --greedy --device cpu > "$OUT/gen-cpu.txt" 2> "$OUT/gen-cpu.err"
"$B/packlm" generate --model $m --input $in --max-new-tokens 8 --greedy --device cuda > "$OUT/gen-cuda.txt" 2> "$OUT/gen-cuda.err"
rc=$?
if [ $rc -eq 0 ] && cmp -s "$OUT/gen-cpu.txt" "$OUT/gen-cuda.txt"; then
    say "packlm generate --device cuda: exit 0, $(wc -l < "$OUT/gen-cuda.txt") lines identical to the CPU's; $(tail -n 1 "$OUT/gen-cuda.err")"
else
    say "packlm generate --device cuda: exit $rc, output DIFFERS from the CPU's"
    fail=1
fi
"$B/packlm" score --model $m --input $in --device cuda:7 > /dev/null 2> "$OUT/nodev.err"
say "packlm score --device cuda:7: exit $?, \"$(cat "$OUT/nodev.err")\""
(cd "$OUT" && tar czf ../gpu-logs.tgz --exclude='*.tgz' . && mv ../gpu-logs.tgz .) 2>/dev/null
echo "=== summary"
printf '%s\n' "${summary[@]}"
[ $fail -eq 0 ] && echo "gpu-check: all passed" || echo "gpu-check: FAILED"
exit $fail
