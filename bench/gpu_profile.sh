#!/usr/bin/env bash
# On a GPU machine: the per-kernel breakdown of one packed score step of the 0.8B-shaped model
# (bench/profile_step.py under Nsight Compute), default and single-pass, plus the detailed sections
# of chosen kernels. Needs build/gpu (make CUDA=1 B=build/gpu) and build/bench-model-0.8b (made by
# `packlm bench`). Output under $OUT.
#   [MODES="default single"] bench/gpu_profile.sh [kernel-regex ...]   (MODES: which step modes to profile)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-build/profile}
mkdir -p "$OUT"
NCU=${NCU:-/usr/local/cuda/bin/ncu}
M=build/bench-model-0.8b
export PACKLM_LIB=build/gpu/libpacklm.so PYTHONPATH=python
[ -d $M ] || build/gpu/packlm bench --device cuda --only mixers > /dev/null 2>&1

for mode in ${MODES:-default single}; do
    sp=; [ "$mode" = single ] && sp=--single-pass
    python3 bench/profile_step.py $M $sp --reps 3
    timeout 170 "$NCU" --metrics gpu__time_duration.sum --csv --page raw python3 bench/profile_step.py $M $sp \
        > "$OUT/ncu$sp.csv" 2> "$OUT/ncu$sp.err"
    echo "== per kernel, score step${sp:+ ($sp)}"
    python3 bench/ncu_breakdown.py "$OUT/ncu$sp.csv" "${TOP:-16}"
done
for k in "$@"; do
    timeout 120 "$NCU" --kernel-name "regex:$k" --launch-skip 3 --launch-count 1 --section SpeedOfLight \
        --section Occupancy --section WarpStateStats --section LaunchStats \
        python3 bench/profile_step.py $M --single-pass > "$OUT/detail-$k.txt" 2>&1
    echo "== $k (single-pass)"
    grep -E "Duration|Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Shared Memory Config|Block Limit|Warp Cycles Per Issued|Stall|Issued Ipc|Executed Ipc|One or More|No Eligible" "$OUT/detail-$k.txt" | head -40
done
