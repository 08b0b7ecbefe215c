#!/usr/bin/env bash
# packlm generate from the command line: output format, greedy continuations of generate.json,
# failure isolation (bad lines among good ones), batching independence, --help.
# Run from the repository root (tests/run_all.sh does); uses build/packlm.
set -u
cd "$(dirname "$0")/.."
P=build/packlm
M=tests/data/tiny-dense
T=build/tmp/generate_cli
mkdir -p "$T"
fails=0
if ! command -v python3 > /dev/null; then
    echo "FAIL generate_cli: python3 is missing (scripts/deps.sh installs it)"
    exit 1
fi
check() { # check <description> <command...>
    local what=$1
    shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fails=$((fails + 1)); fi
}

# --help: usage on stdout, exit 0
"$P" generate --help > "$T/help.txt" 2>&1
check "generate --help exits 0" test $? -eq 0
check "generate --help documents the options" grep -q -- "--max-new-tokens" "$T/help.txt"
"$P" generate --model "$M" > /dev/null 2>&1
check "missing options: exit 2" test $? -eq 2

# greedy: one line per input sequence, N ids each; the first two are generate.json's continuations
"$P" generate --model "$M" --input "$M/inputs.txt" --max-new-tokens 6 --threads 1 > "$T/greedy.txt" 2> "$T/greedy.err"
check "greedy run exits 0" test $? -eq 0
check "one output line per input line" test "$(wc -l < "$T/greedy.txt")" -eq "$(wc -l < "$M/inputs.txt")"
check "every line holds 6 ids" test "$(grep -cE '^[0-9]+( [0-9]+){5}$' "$T/greedy.txt")" -eq "$(wc -l < "$M/inputs.txt")"
# generate.json's prompts are the first lines of inputs.txt, in order (checked below)
want=$(python3 -c "import json; d=json.load(open('$M/generate.json')); assert [x['prompt_index'] for x in d] == list(range(len(d))); print('\n'.join(' '.join(map(str, x['new_tokens'])) for x in d))")
check "generate.json read (python3)" test -n "$want"
check "greedy continuations equal generate.json" test "$(head -n "$(echo "$want" | wc -l)" "$T/greedy.txt")" = "$want"
check "summary on stderr reports prefill and decode tokens/s" grep -qE "prefill .* tokens/s.*decode .* tokens/s" "$T/greedy.err"

# batching does not change the tokens: tiny budget and one sequence at a time, sampled
"$P" generate --model "$M" --input "$M/inputs.txt" --max-new-tokens 9 --temperature 0.9 --top-k 50 --top-p 0.95 \
    --seed 7 --threads 1 > "$T/s1.txt" 2> /dev/null
"$P" generate --model "$M" --input "$M/inputs.txt" --max-new-tokens 9 --temperature 0.9 --top-k 50 --top-p 0.95 \
    --seed 7 --max-batch-tokens 3 --max-seqs 2 --threads 1 > "$T/s2.txt" 2> /dev/null
check "sampled: same ids under another budget and cap" cmp -s "$T/s1.txt" "$T/s2.txt"

# failure isolation: bad lines among good ones
{
    sed -n 1,2p "$M/inputs.txt"
    echo "1 2 99999"
    echo ""
    echo '{"input_ids": [5, 6'
    sed -n 3p "$M/inputs.txt"
    echo "7 x 8"
} > "$T/mixed.txt"
"$P" generate --model "$M" --input "$T/mixed.txt" --max-new-tokens 9 --temperature 0.9 --top-k 50 --top-p 0.95 \
    --seed 7 --threads 1 > "$T/mixed.out" 2> "$T/mixed.err"
rc=$?
check "a failed sequence makes the exit status 1" test $rc -eq 1
check "7 output lines for 7 input lines" test "$(wc -l < "$T/mixed.out")" -eq 7
check "bad token id: error line" grep -qxE "error: line 3: .*99999.*" "$T/mixed.out"
check "empty line: error line" grep -qxE "error: line 4: .*empty.*" "$T/mixed.out"
check "bad JSON: error line" grep -qxE "error: line 5: .*JSON.*" "$T/mixed.out"
check "non-numeric id: error line" grep -qxE "error: line 7: .*" "$T/mixed.out"
check "stderr names the failing lines" test "$(grep -cE "error: line (3|4|5|7):" "$T/mixed.err")" -eq 4
# the good sequences are input lines 1, 2, 3 of inputs.txt: exactly their tokens when run alone
# (the random stream follows the index in the file, so compare with the same index)
check "good line 1 unchanged" test "$(sed -n 1p "$T/mixed.out")" = "$(sed -n 1p "$T/s1.txt")"
check "good line 2 unchanged" test "$(sed -n 2p "$T/mixed.out")" = "$(sed -n 2p "$T/s1.txt")"
"$P" generate --model "$M" --input "$M/inputs.txt" --max-new-tokens 9 --greedy --threads 1 > "$T/g9.txt" 2> /dev/null
"$P" generate --model "$M" --input "$T/mixed.txt" --max-new-tokens 9 --greedy --max-batch-tokens 5 --threads 1 \
    > "$T/mixed_g.out" 2> /dev/null
check "greedy: good lines equal the clean run" test "$(sed -n 1,2p "$T/mixed_g.out"; sed -n 6p "$T/mixed_g.out")" = "$(sed -n 1,3p "$T/g9.txt")"

rm -rf "$T"
echo "generate_cli: $fails failed"
[ "$fails" -eq 0 ]
