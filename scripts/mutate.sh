#!/usr/bin/env bash
# Mutation check of the test suite: applies each mutation of scripts/mutations.txt (small deliberate
# bugs in the sources, one at a time) to a scratch copy of the working tree under /tmp, rebuilds it,
# runs the suite's test binaries and tests/generate_cli.sh (stopping at the first failure) and reports
# which mutations survive. A mutation whose text is not found exactly once in its file is reported as
# NOT APPLIED (the list must follow the sources). Not part of `make test`: run it when the suite or
# the sources change and record the table in docs/testing.md.
#
#   scripts/mutate.sh [--out FILE.md] [NAME ...]     (default: every mutation of the list)
#
# Exit status: 0 when every mutation was applied and killed.
set -u
cd "$(dirname "$0")/.."
repo=$PWD
list=scripts/mutations.txt
out=
names=()
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) names+=("$1"); shift ;;
    esac
done
order="test_kernels test_plan test_fixtures test_property test_layouts test_tokenizer test_safetensors test_cli test_generate"
jobs=${MUTATE_JOBS:-2}
limit=${MUTATE_TIMEOUT:-600}

scratch=$(mktemp -d /tmp/packlm-mutate-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$scratch"
cd "$scratch"

# runs the fast suite; prints the first failing part (empty: all passed)
suite() {
    local t
    if ! make -s -j"$jobs" > build.log 2>&1; then echo "build failed"; return; fi
    for t in $order; do
        if ! timeout "$limit" build/tests/$t > "build/$t.log" 2>&1; then echo "$t"; return; fi
    done
    if ! timeout "$limit" bash tests/generate_cli.sh > build/generate_cli.log 2>&1; then echo "generate_cli.sh"; return; fi
}

echo "mutate: baseline build and suite in $scratch"
base=$(suite)
if [ -n "$base" ]; then
    echo "mutate: the unmutated suite fails ($base): fix that first"
    tail -n 20 build.log "build/$base.log" 2>/dev/null | grep -E "FAIL|error" | head
    exit 2
fi

apply() { # apply FILE FROM TO: replaces the one occurrence; exit 3 when absent, 4 when not unique
    MF=$1 MFROM=$2 MTO=$3 perl -e '
        my ($f, $from, $to) = @ENV{qw(MF MFROM MTO)};
        open my $h, "<", $f or exit 5; local $/; my $s = <$h>; close $h;
        my ($n, $p) = (0, -1);
        for (my $i = index($s, $from); $i >= 0; $i = index($s, $from, $i + 1)) { $n++; $p = $i if $p < 0; }
        exit 3 if $n == 0; exit 4 if $n > 1;
        substr($s, $p, length $from) = $to;
        open $h, ">", $f or exit 5; print $h $s; close $h;'
}

table="| mutation | file | result |"$'\n'"|---|---|---|"$'\n'
n=0 killed=0 survived=0 broken=0
while IFS= read -r line || [ -n "$line" ]; do
    case $line in ''|'#'*) continue ;; esac
    name=${line%% @@ *}; rest=${line#* @@ }
    file=${rest%% @@ *}; rest=${rest#* @@ }
    from=${rest%% @@ *}; to=${rest#* @@ }
    if [ ${#names[@]} -gt 0 ] && ! printf '%s\n' "${names[@]}" | grep -qxF "$name"; then continue; fi
    n=$((n + 1))
    cp -p "$file" "$file.orig"
    apply "$file" "$from" "$to"
    rc=$?
    if [ $rc -ne 0 ]; then
        result="NOT APPLIED ($([ $rc -eq 3 ] && echo 'text not found' || echo 'text not unique'))"
        broken=$((broken + 1))
    else
        t0=$(date +%s)
        res=$(suite)
        dt=$(( $(date +%s) - t0 ))
        if [ -z "$res" ]; then result="**SURVIVED** (${dt} s)"; survived=$((survived + 1))
        elif [ "$res" = "build failed" ]; then result="NOT APPLIED (does not build)"; broken=$((broken + 1))
        else result="killed by $res (${dt} s)"; killed=$((killed + 1)); fi
    fi
    mv "$file.orig" "$file"
    touch "$file" # newer than its objects: the next build recompiles the original
    printf '%-28s %-32s %s\n' "$name" "$file" "$result"
    table+="| $name | \`$file\` | $result |"$'\n'
done < "$repo/$list"
summary="$n mutations: $killed killed, $survived survived, $broken not applied"
echo "mutate: $summary"
if [ -n "$out" ]; then
    case $out in /*) ;; *) out=$repo/$out ;; esac
    printf '%s\n%s\n' "$table" "$summary" > "$out"
fi
[ $survived -eq 0 ] && [ $broken -eq 0 ]
