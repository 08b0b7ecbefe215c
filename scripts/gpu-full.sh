#!/usr/bin/env bash
# Everything a GPU machine should run for a change, in one call: scripts/gpu-check.sh (build, the CUDA
# tests, Python device tests, the CLI against the CPU), packlm bench --only decode (precise, then
# single-pass), the side by side
# with FLA and transformers (bench/side_by_side.sh, when PEERS names their folder), then
# compute-sanitizer's memcheck on the op harness under a timeout (last: it is the slowest part).
# Everything under $OUT ends up in $OUT/all.tgz (the device tool returns at most 8 files).
#   OUT=dir PLM_DEPS=dir [PEERS=dir] scripts/gpu-full.sh
# Takes about 90 s without PEERS and about 375-490 s with it on a fresh H200 (docs/cuda.md); the transformers
# timing prints nothing until it is done and once took longer than 200 s (a warm machine), so it gets 300.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu-full}
mkdir -p "$OUT"
[ -n "${PLM_DEPS:-}" ] && export LD_LIBRARY_PATH="$(cd "$PLM_DEPS" && pwd)/lib:${LD_LIBRARY_PATH:-}"
t0=$(date +%s)
stamp() { echo "[t=$(( $(date +%s) - t0 )) s]"; }
SANITIZE=" " OUT="$OUT/check" scripts/gpu-check.sh 2>&1 | sed -n '/=== summary/,$p'
stamp
build/gpu/packlm bench --device cuda --only decode > "$OUT/decode.txt" 2>&1
grep -E "decode,|decode speed-up|mixed" "$OUT/decode.txt"
# the single-pass mode too: BF16 activations, as issue 9's targets state
build/gpu/packlm bench --device cuda --only decode --bf16-single-pass > "$OUT/decode-single-pass.txt" 2>&1
echo "single pass (--bf16-single-pass):"
grep -E "decode,|decode speed-up" "$OUT/decode-single-pass.txt"
stamp
if [ -n "${PEERS:-}" ]; then
    OUT="$OUT/sbs" FLA_SECONDS=150 HF_SECONDS=300 PACKLM_SECONDS=110 bench/side_by_side.sh "$PEERS" build/gpu \
        > "$OUT/sbs-table.txt" 2>&1
    cat "$OUT/sbs-table.txt"
    stamp
fi
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
timeout "${MEMCHECK_SECONDS:-120}" "$cs" --tool memcheck --leak-check full --report-api-errors no --error-exitcode 9 \
    build/gpu/tests/test_cuda_ops > "$OUT/memcheck.log" 2>&1
echo "compute-sanitizer memcheck on test_cuda_ops: exit $?, $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)"
stamp
tmp=$(mktemp -d)
(cd "$OUT" && tar czf "$tmp/all.tgz" . && find . -mindepth 1 -delete && mv "$tmp/all.tgz" .)
rmdir "$tmp"
