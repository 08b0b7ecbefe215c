#!/usr/bin/env bash
# A fuzzing campaign: runs each libFuzzer target (fuzz/build.sh) in turn, one process each (one
# core), until it has executed FUZZ_RUNS inputs (default 10 million) or FUZZ_MAX_SECONDS (default
# 7200) have passed. Corpora persist in build/fuzz/campaign/<target>/corpus (seeded from
# fuzz/corpus/<target>/), so later campaigns continue where earlier ones stopped; findings are
# written as build/fuzz/campaign/<target>/crash-*. Prints one line per target: executions, time,
# corpus size, result (the figures docs/robustness.md records).
# Usage: scripts/fuzz-long.sh [target ...]   (default: safetensors config cli_input tokenizer serve)
set -u
cd "$(dirname "$0")/.."
RUNS=${FUZZ_RUNS:-10000000}
MAXT=${FUZZ_MAX_SECONDS:-7200}
targets=${*:-safetensors config cli_input tokenizer serve}
fuzz/build.sh $(for t in $targets; do echo fuzz_$t; done) || exit 1
fail=0
for t in $targets; do
    w=build/fuzz/campaign/$t
    mkdir -p "$w/corpus"
    if [ "$t" = tokenizer ]; then
        export PLM_FUZZ_TOKENIZER=tests/data/tokenizer-qwen3/tokenizer.json PLM_FUZZ_SEED_DIR="$w/corpus"
    else
        cp -n fuzz/corpus/$t/* "$w/corpus/" 2>/dev/null
        unset PLM_FUZZ_SEED_DIR
    fi
    dict=""
    [ -f fuzz/$t.dict ] && dict="-dict=fuzz/$t.dict"
    cp build/fuzz/fuzz_$t "$w/fuzz_$t" # a private copy: rebuilding build/fuzz does not disturb the run
    start=$(date +%s)
    UBSAN_OPTIONS=print_stacktrace=1 "$w/fuzz_$t" -runs="$RUNS" -max_total_time="$MAXT" -max_len=65536 \
        -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 $dict -artifact_prefix="$w/" "$w/corpus" \
        > "$w/fuzz.log" 2>&1
    rc=$?
    execs=$(grep 'stat::number_of_executed_units' "$w/fuzz.log" | tail -1 | awk '{print $2}')
    echo "fuzz_$t: ${execs:-?} executions in $(( $(date +%s) - start ))s, corpus $(ls "$w/corpus" | wc -l)," \
         "$([ $rc -eq 0 ] && echo 'no finding' || echo "FINDING (exit $rc, see $w/fuzz.log)")"
    [ $rc -eq 0 ] || fail=1
done
exit $fail
