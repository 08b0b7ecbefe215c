#!/usr/bin/env bash
# packlm beside its GPU peers, in one run on one GPU: FLA's kernels (chunked and recurrent gated delta
# rule, varlen causal conv1d) and transformers' packed Qwen3.5 (FLA routed in; padded), then
# `packlm bench --device cuda` on the same shapes; bench/side_by_side.py prints each pair and its ratio.
#   bench/side_by_side.sh PEERS_DIR [BUILD_DIR]
# PEERS_DIR holds FLA's source as fla-src/ (flash-linear-attention 0.5.2, pure Python + Triton) and the
# two timing scripts bench_fla.py and bench_hf_gpu.py (torch, triton and transformers installed). They
# are peers that packlm is measured against, not part of it: keep them out of the repository.
# Output: $OUT (default build/side-by-side): fla.json, hf.txt, mixers.json, packlm.json and their logs.
set -u
cd "$(dirname "$0")/.."
P=${1:?usage: bench/side_by_side.sh PEERS_DIR [BUILD_DIR]}
B=${2:-build/gpu}
OUT=${OUT:-build/side-by-side}
mkdir -p "$OUT"
TRITON_CACHE_DIR=$(mktemp -d)
export TRITON_CACHE_DIR PYTHONPATH="$P/fla-src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# FLA autotunes per head shape, not per length: a fresh cache, and the timed cases warm it themselves
timeout "${FLA_SECONDS:-240}" python3 "$P/bench_fla.py" --json "$OUT/fla.json" > "$OUT/fla.txt" 2>&1 ||
    echo "side_by_side: the FLA timing failed or timed out (log: $OUT/fla.txt)"
timeout "${HF_SECONDS:-240}" python3 "$P/bench_hf_gpu.py" --fla-patch > "$OUT/hf.txt" 2>&1 ||
    echo "side_by_side: the transformers timing failed or timed out (log: $OUT/hf.txt)"
# the GPU's clocks, power and temperature beside packlm's run (each output line stamped), so that a case
# timed while the device is still hot from the model's GEMMs shows as such
smi=
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active \
        --format=csv -lms 100 > "$OUT/smi.csv" 2>&1 &
    smi=$!
fi
# packlm bench SECONDS NAME ARGS...: its output, each line stamped with the time, in $OUT/NAME.txt
bench() {
    local secs=$1 name=$2
    shift 2
    { timeout "$secs" stdbuf -oL "$B/packlm" bench --device cuda "$@" 2>&1 ||
        echo "side_by_side: packlm bench $* failed or timed out (log: $OUT/$name.txt)"; } |
        while IFS= read -r l; do printf '%s %s\n' "$(date +%H:%M:%S.%N | cut -c1-12)" "$l"; done > "$OUT/$name.txt"
}
# the kernels alone in a fresh process first, as FLA's script times them (in the full bench they follow the
# model's cases, which leave them 5-20 % slower: see docs/performance.md); side_by_side.py takes these
bench 60 mixers --only mixers --json "$OUT/mixers.json"
bench "${PACKLM_SECONDS:-300}" packlm --only prefill --json "$OUT/packlm.json"
[ -n "$smi" ] && kill "$smi" 2> /dev/null
grep -h "failed or timed out" "$OUT/mixers.txt" "$OUT/packlm.txt"
python3 bench/side_by_side.py "$OUT"
