#!/usr/bin/env bash
# packlm int8 beside llama.cpp Q8_0 on the CPU, in one sitting, the two tools alternating round by
# round: prompt of 512 tokens with last-token logits (llama-bench -p 512; packlm: one segment of 512,
# logits of its last token), decode of one sequence (llama-bench -n 32; packlm: 32 new tokens after
# a 32-token prompt) and of 16 sequences together (llama-batched-bench -npp 32 -ntg 32 -npl 16,
# aggregate S_TG; packlm: the same through its generator). Both models are random-weight
# Qwen3.5-0.8B shapes (tied embeddings; packlm's build/bench-model-0.8b, BF16, quantized at start).
#   bench/llamacpp/side_by_side_cpu.sh LLAMA_BIN_DIR MODEL_Q8_0.gguf [PACKLM_BUILD_DIR]
# LLAMA_BIN_DIR holds llama-bench and llama-batched-bench built as README.md here says (llama.cpp
# is the peer packlm is measured against, not part of it: build it outside the repository); the
# GGUF comes from make_random_qwen35_gguf.py. Env: THREADS (2), ROUNDS (3), BF16=1 adds packlm's
# BF16 figures, OUT (build/side-by-side-cpu). Wait for a quiet machine: the figures are per round.
set -u
cd "$(dirname "$0")/../.."
L=${1:?usage: side_by_side_cpu.sh LLAMA_BIN_DIR MODEL.gguf [BUILD_DIR]}
G=${2:?usage: side_by_side_cpu.sh LLAMA_BIN_DIR MODEL.gguf [BUILD_DIR]}
B=${3:-build}
T=${THREADS:-2}
R=${ROUNDS:-3}
OUT=${OUT:-build/side-by-side-cpu}
mkdir -p "$OUT"
rm -f "$OUT"/round-*
grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|avx_vnni)$' |
    tr '\n' ' ' > "$OUT/cpuflags.txt"
grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //' > "$OUT/cpu.txt"
for r in $(seq "$R"); do
    echo "round $r (load average $(cut -d' ' -f1 /proc/loadavg))"
    "$L/llama-bench" -m "$G" -p 512 -n 32 -t "$T" -r 1 -o json > "$OUT/round-$r-llama-bench.json" 2> "$OUT/round-$r-llama-bench.log" ||
        echo "llama-bench failed (log: $OUT/round-$r-llama-bench.log)"
    "$L/llama-batched-bench" -m "$G" -c 4096 -npp 32 -ntg 32 -npl 1,16 -t "$T" > "$OUT/round-$r-llama-batched.txt" 2>&1 ||
        echo "llama-batched-bench failed (log: $OUT/round-$r-llama-batched.txt)"
    "$B/packlm" bench --only peer --weights int8 --threads "$T" --rounds 1 --json "$OUT/round-$r-packlm-int8.json" \
        > "$OUT/round-$r-packlm-int8.txt" 2>&1 || echo "packlm bench failed (log: $OUT/round-$r-packlm-int8.txt)"
    if [ "${BF16:-0}" = 1 ]; then
        "$B/packlm" bench --only peer --threads "$T" --rounds 1 --json "$OUT/round-$r-packlm-bf16.json" \
            > "$OUT/round-$r-packlm-bf16.txt" 2>&1 || echo "packlm bench failed (log: $OUT/round-$r-packlm-bf16.txt)"
    fi
done
python3 bench/llamacpp/side_by_side_cpu.py "$OUT" "$R"
