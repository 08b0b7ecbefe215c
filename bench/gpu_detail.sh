#!/usr/bin/env bash
# On a GPU machine: Nsight Compute's detail sections (speed of light, occupancy, warp stalls, memory
# and instruction statistics) for one launch of each named kernel in the 12,680-token single-pass
# score step (bench/profile_step.py), skipping the warm-up step's launches.
#   bench/gpu_detail.sh KERNEL:SKIP [KERNEL:SKIP ...]     e.g. k_gdn_bf_scan:20 k_attn_bf:8
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-build/profile}
mkdir -p "$OUT"
NCU=${NCU:-/usr/local/cuda/bin/ncu}
export PACKLM_LIB=build/gpu/libpacklm.so PYTHONPATH=python
for ks in "$@"; do
    k=${ks%%:*} skip=${ks##*:}
    timeout 150 "$NCU" --kernel-name "regex:$k" --launch-skip "$skip" --launch-count 1 --section SpeedOfLight \
        --section Occupancy --section WarpStateStats --section LaunchStats --section MemoryWorkloadAnalysis \
        --section ComputeWorkloadAnalysis --section InstructionStats --section SchedulerStats \
        python3 bench/profile_step.py build/bench-model-0.8b --single-pass > "$OUT/detail-$k.txt" 2>&1
    echo "== $k (launch $skip, single-pass)"
    grep -E "^  *(Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Achieved Occupancy|Theoretical Occupancy|Registers Per|Dynamic Shared|Warp Cycles Per Issued|Issued Ipc|Executed Instructions  |No Eligible|Active Warps Per|Eligible Warps|Grid Size|Block Size|Waves Per SM|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth)" "$OUT/detail-$k.txt" | head -30
    grep -E "^ +(OPT|WRN|INF) " -A1 "$OUT/detail-$k.txt" | grep -iE "stall|cycles|bank|occupancy|uncoalesced" | head -8
done
