#!/usr/bin/env bash
# The scripts that run on a GPU machine, checked where there is none: every one parses (bash -n), the
# patches prepared for bench/gpu_ab.sh (bench/patches) apply to the tree, and bench/gpu_ab.sh refuses
# bad arguments before it builds anything (usage, a bad build name, a missing patch, a patch that does
# not apply), each with its message and exit status.
set -u
cd "$(dirname "$0")/.."
fail=0
check() { # check DESC EXPECTED_STATUS EXPECTED_TEXT COMMAND...
    local desc=$1 want=$2 text=$3 out rc
    shift 3
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -eq "$want" ] && { [ -z "$text" ] || printf '%s' "$out" | grep -qF -- "$text"; }; then
        echo "ok   $desc"
    else
        echo "FAIL $desc: exit $rc (want $want), output: $(printf '%s' "$out" | head -3)"
        fail=$((fail + 1))
    fi
}
for s in scripts/gpu-check.sh scripts/gpu-full.sh bench/side_by_side.sh bench/gpu_ab.sh bench/gpu_profile.sh \
    bench/gpu_detail.sh bench/decode_profile.sh; do
    check "$s parses" 0 "" bash -n "$s"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the prepared patches (bench/patches, for bench/gpu_ab.sh) still apply to the tree: one that no longer
# does must be brought up to date or removed, not found out on a GPU machine
for p in bench/patches/*.patch; do
    [ -f "$p" ] || continue
    mkdir -p "$tmp/tree"
    cp -a src tests "$tmp/tree/"
    check "$p applies to the tree" 0 "" patch -d "$tmp/tree" -p1 --dry-run -s -i "$PWD/$p"
    rm -rf "$tmp/tree"
done
export OUT=$tmp/out
check "gpu_ab.sh without builds: usage" 2 "usage: bench/gpu_ab.sh" bash bench/gpu_ab.sh
check "gpu_ab.sh: a bad build name" 2 "bad build name 'a b'" bash bench/gpu_ab.sh "a b=-DX"
check "gpu_ab.sh: a missing patch" 2 "no patch file $tmp/none.patch" bash bench/gpu_ab.sh "p=@$tmp/none.patch"
printf -- '--- a/Makefile\n+++ b/Makefile\n@@ -1,1 +1,1 @@\n-no such line\n+x\n' > "$tmp/bad.patch"
check "gpu_ab.sh: a patch that does not apply" 1 "does not apply" bash bench/gpu_ab.sh "p=@$tmp/bad.patch"
check "gpu_ab.sh: a patch that does not apply, reversed" 1 "does not apply reversed" bash bench/gpu_ab.sh "p=@-$tmp/bad.patch"
[ -d "$tmp/out/l" ] && [ -z "$(ls -A "$tmp/out/l")" ] && echo "ok   gpu_ab.sh: nothing built before the arguments were checked" ||
    { echo "FAIL gpu_ab.sh: left files in $tmp/out/l"; fail=$((fail + 1)); }
echo "gpu_scripts: $fail failed"
[ "$fail" -eq 0 ]
