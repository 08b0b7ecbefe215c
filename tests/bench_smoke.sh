#!/usr/bin/env bash
# Smoke test of `packlm bench`: the quick run (a small random-weight model, built once under build/)
# must exit 0 and write a JSON object with every prefill figure and the ceilings this CPU has.
set -u
cd "$(dirname "$0")/.."
out=build/bench.json
rm -f "$out"
if ! timeout 120 build/packlm bench --quick --json "$out" > build/bench_smoke.log 2>&1; then
    echo "FAIL bench_smoke: packlm bench --quick failed (log: build/bench_smoke.log)"
    tail -n 5 build/bench_smoke.log
    exit 1
fi
fail=0
for key in sgemm_gflops score_tokens_per_s score_gflops score_vs_sgemm peak_rss_mb file_mb rss_vs_file \
           segments_many_vs_one gdn_chunked_tokens_per_s gdn_chunked_vs_recurrent_ref ceiling_stream_gb_per_s \
           $(grep -qw avx2 /proc/cpuinfo && echo ceiling_fma_gflops ceiling_int8_gops score_vs_ceiling) \
           $(grep -qw avx512_bf16 /proc/cpuinfo && echo ceiling_bf16_gflops); do
    if ! grep -q "\"$key\": {\"value\": [-0-9.e+]*, \"unit\"" "$out"; then
        echo "FAIL bench_smoke: key $key missing from $out"
        fail=1
    fi
done
if ! command -v python3 > /dev/null; then
    echo "FAIL bench_smoke: python3 is missing (scripts/deps.sh installs it)"
    fail=1
elif ! python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$out"; then
    echo "FAIL bench_smoke: $out is not valid JSON"
    fail=1
fi
# section NAME JSON KEYS -- ARGS: `packlm bench --quick ARGS --json JSON` must exit 0 and report KEYS
section() {
    local name=$1 json=$2 keys=$3
    shift 4
    rm -f "$json"
    if ! timeout 120 build/packlm bench --quick "$@" --json "$json" > "build/bench_smoke_$name.log" 2>&1; then
        echo "FAIL bench_smoke: packlm bench $* failed (log: build/bench_smoke_$name.log)"
        tail -n 5 "build/bench_smoke_$name.log"
        fail=1
    fi
    for key in $keys; do
        if ! grep -q "\"$key\": {\"value\": [-0-9.e+]*, \"unit\"" "$json"; then
            echo "FAIL bench_smoke: key $key missing from $json"
            fail=1
        fi
    done
}
# the llama.cpp comparison cases with int8 weights (quick sizes)
section peer build/bench_peer.json \
    "peer_prompt512_tokens_per_s peer_decode1_tokens_per_s peer_decode16_tokens_per_s peer_decode16_spread" \
    -- --only peer --weights int8 --rounds 2
# int8 accuracy against the stored weights (quick sizes): every mode's KL reported
section accuracy build/bench_accuracy.json \
    "accuracy_int8_linear_act8_kl_mean accuracy_int8_act8_kl_mean accuracy_int8_act16_kl_p99 accuracy_int8_act8_top1" \
    -- --only accuracy
[ "$fail" -eq 0 ] && echo "bench_smoke: ok ($(grep -c '"value"' "$out") figures)"
exit "$fail"
