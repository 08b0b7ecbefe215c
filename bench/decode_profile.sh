#!/usr/bin/env bash
# On a GPU machine: the kernels of decode steps of one sequence on the 0.8B-shaped model under Nsight
# Compute (each graph node is profiled as a kernel), summed per kernel name with bench/ncu_breakdown.py,
# plus the step's wall time from packlm generate. Needs build/gpu and build/bench-model-0.8b.
#   OUT=dir [PROMPT=tokens (default 32)] bench/decode_profile.sh [sequences (default 1)] [--bf16-single-pass]
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-build/profile}
mkdir -p "$OUT"
NCU=${NCU:-/usr/local/cuda/bin/ncu}
M=build/bench-model-0.8b
n=${1:-1}; shift || true
[ -d $M ] || build/gpu/packlm bench --device cuda --only mixers > /dev/null 2>&1
python3 - "$n" "${PROMPT:-32}" > "$OUT/decode-in.txt" <<'PY'
import random, sys
random.seed(1)
for _ in range(int(sys.argv[1])):
    print(" ".join(str(random.randrange(1000, 200000)) for _ in range(int(sys.argv[2]))))
PY
build/gpu/packlm generate --model $M --input "$OUT/decode-in.txt" --max-new-tokens 64 --ignore-eos \
    --device cuda "$@" > /dev/null 2> "$OUT/decode-wall.txt"
tail -2 "$OUT/decode-wall.txt"
# the prompt step and 5 decode steps run uncaptured or are captured; skip them, then take 3 steps
timeout 200 "$NCU" --clock-control "${NCU_CLOCK:-base}" --metrics gpu__time_duration.sum --csv --page raw --launch-skip 4000 --launch-count 1500 \
    build/gpu/packlm generate --model $M --input "$OUT/decode-in.txt" --max-new-tokens 64 --ignore-eos \
    --device cuda "$@" > "$OUT/ncu-decode.csv" 2> "$OUT/ncu-decode.err"
echo "== per kernel, 1500 launches of decode steps ($n sequences)"
python3 bench/ncu_breakdown.py "$OUT/ncu-decode.csv" "${TOP:-30}"
