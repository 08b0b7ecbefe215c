#!/usr/bin/env bash
# packlm int8 beside llama.cpp Q8_0 on the CPU, in one sitting, the two tools alternating round by
# round, on the same three cases: a prompt of 512 tokens with last-token logits, decode of one
# sequence (32-token prompt, 31 greedy steps) and of 16 sequences together (16 prompts of 32 tokens,
# 31 greedy steps of 16, aggregate). llama.cpp runs them through libllama (peer.cpp, built as its
# header says); packlm through `packlm bench --only peer --weights int8`. Both models are
# random-weight Qwen3.5-0.8B shapes with tied embeddings (packlm's build/bench-model-0.8b, BF16,
# quantized when the context starts; the GGUF from make_random_qwen35_gguf.py ... q8_0).
#   bench/llamacpp/side_by_side_cpu.sh LLAMA_PEER_BINARY MODEL_Q8_0.gguf [PACKLM_BUILD_DIR]
# llama.cpp is the peer packlm is measured against, not part of it: build it outside the repository
# (README.md here). Env: THREADS (2), ROUNDS (3), BF16=1 adds packlm's BF16 figures,
# OUT (build/side-by-side-cpu). The load average is printed each round: wait for a quiet machine.
set -u
cd "$(dirname "$0")/../.."
P=${1:?usage: side_by_side_cpu.sh LLAMA_PEER_BINARY MODEL.gguf [BUILD_DIR]}
G=${2:?usage: side_by_side_cpu.sh LLAMA_PEER_BINARY MODEL.gguf [BUILD_DIR]}
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
    echo "round $r: $(date -u +%H:%M:%S), load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/round-$r-load.txt"
    "$P" "$G" "$T" 1 > "$OUT/round-$r-llama.json" 2> "$OUT/round-$r-llama.log" ||
        echo "llama.cpp peer failed (log: $OUT/round-$r-llama.log)"
    "$B/packlm" bench --only peer --weights int8 --threads "$T" --rounds 1 --json "$OUT/round-$r-packlm-int8.json" \
        > "$OUT/round-$r-packlm-int8.txt" 2>&1 || echo "packlm bench failed (log: $OUT/round-$r-packlm-int8.txt)"
    if [ "${BF16:-0}" = 1 ]; then
        "$B/packlm" bench --only peer --threads "$T" --rounds 1 --json "$OUT/round-$r-packlm-bf16.json" \
            > "$OUT/round-$r-packlm-bf16.txt" 2>&1 || echo "packlm bench failed (log: $OUT/round-$r-packlm-bf16.txt)"
    fi
done
echo "end: $(date -u +%H:%M:%S), load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/end-load.txt"
python3 bench/llamacpp/side_by_side_cpu.py "$OUT" "$R" | tee "$OUT/table.txt"
