#!/usr/bin/env bash
# On a GPU machine: an A/B of builds in one call. Each NAME=SPEC builds the working tree into
# build/ab-NAME (in parallel), SPEC being extra preprocessor flags ("-DPLM_X=1", or "" for the tree as
# it is), or @PATCH[ FLAGS] to build a copy of the tree with PATCH applied (@-PATCH: reversed, for the
# tree without a change). Then, per build, the tests named in TESTS (test_cuda_ops by default; "" for
# none), then `packlm bench --device cuda --only mixers` ROUNDS times (3), the builds alternating
# within each round, and a table of the KEYS (the delta rule's cases by default) with each build's
# range; NCU=regex adds Nsight Compute's kernel times (real clocks) of NCU_COUNT (6) launches matching
# the regex in each build's run of the section, after the first NCU_SKIP (0). Logs and JSON under $OUT, packed into
# $OUT/ab.tgz (the remote runner returns at most 8 files). SECTION=decode times `--only decode` instead
# (KEYS then default to its tokens/s and 256-vs-1 ratio); ARGS adds bench options (--bf16-single-pass).
# TEST_SECONDS: each test's time limit (300); TEST_BUILDS: the builds whose tests are built and run (all).
# MODES: several option sets separated by ';' (MODES="--bf16-single-pass;" times both decode modes), one
# table each; it replaces ARGS.
#   OUT=dir PLM_DEPS=dir bench/gpu_ab.sh base="" regs72="-DPLM_GDN_PREP8_REGS=72"
#   OUT=dir PLM_DEPS=dir NCU='gdn_tc_prep|wy_scan' bench/gpu_ab.sh old=@-dbg/fold.patch new=""
# PLM_DEPS: include/ and lib/ of the libraries the machine lacks (as scripts/gpu-check.sh takes them).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-build/ab}
ROUNDS=${ROUNDS:-3}
TESTS=${TESTS-test_cuda_ops}
SECTION=${SECTION:-mixers}
ARGS=${ARGS:-}
MODES=${MODES-$ARGS}
case $SECTION in
    mixers) KEYS=${KEYS:-cuda_gdn_15seq_ms cuda_gdn_1seq_ms cuda_gdn_512x64_ms cuda_gdn_prep_before_1seq_ms cuda_gdn_precise_15seq_ms} ;;
    decode) KEYS=${KEYS:-decode_tokens_per_s_1 decode_tokens_per_s_16 decode_tokens_per_s_256 decode_ratio_256_vs_1} ;;
    *) echo "gpu_ab: SECTION is mixers or decode" >&2; exit 2 ;;
esac
[ $# -ge 1 ] || { echo "usage: bench/gpu_ab.sh NAME=SPEC [NAME=SPEC ...] (see the header)" >&2; exit 2; }
mkdir -p "$OUT/l"
OUT=$(cd "$OUT" && pwd)
root=$PWD
deps=
if [ -n "${PLM_DEPS:-}" ]; then
    deps=$(cd "$PLM_DEPS" && pwd)
    export LD_LIBRARY_PATH="$deps/lib:${LD_LIBRARY_PATH:-}"
fi
export PATH=/usr/local/cuda/bin:$PATH PLM_REQUIRE_CUDA=1
t0=$(date +%s)
stamp() { echo "[t=$(( $(date +%s) - t0 )) s] $*"; }
names=() dirs=() srcs=() flagss=()
for arg in "$@"; do # every argument checked, and every patched tree made, before any build starts
    name=${arg%%=*} spec=${arg#*=}
    case $name in ''|*[!A-Za-z0-9_-]*) echo "gpu_ab: bad build name '$name'" >&2; exit 2 ;; esac
    src=$root flags=$spec
    if [ "${spec#@}" != "$spec" ]; then
        patch=${spec#@} flags=
        case $patch in *" "*) flags=${patch#* } patch=${patch%% *} ;; esac
        rev=
        [ "${patch#-}" != "$patch" ] && rev=-R patch=${patch#-}
        [ -f "$patch" ] || { echo "gpu_ab: no patch file $patch" >&2; exit 2; }
        patch=$(cd "$(dirname "$patch")" && pwd)/$(basename "$patch")
        src=$(mktemp -d)
        cp -a Makefile src include tools bench tests "$src"/
        if ! (cd "$src" && patch -s -p1 $rev < "$patch" > /dev/null 2>&1); then
            echo "gpu_ab: $patch does not apply${rev:+ reversed}" >&2
            exit 1
        fi
    fi
    names+=("$name") srcs+=("$src") flagss+=("$flags") dirs+=("$src/build/ab-$name")
done
jobs=$(( $(nproc) / $# ))
[ "$jobs" -ge 1 ] || jobs=1
tested() { case " ${TEST_BUILDS:-${names[*]}} " in *" $1 "*) return 0 ;; esac; return 1; }
for i in "${!names[@]}"; do
    name=${names[$i]}
    tests=() # the test binaries of the builds whose tests run only (an older tree may not build newer tests)
    if tested "$name"; then for t in $TESTS; do tests+=("build/ab-$name/tests/$t"); done; fi
    (cd "${srcs[$i]}" && make -j"$jobs" CUDA=1 B="build/ab-$name" CPPFLAGS="${deps:+-I$deps/include} ${flagss[$i]}" \
        LDFLAGS="${deps:+-L$deps/lib -Wl,-rpath,$deps/lib}" "build/ab-$name/packlm" \
        "${tests[@]}" > "$OUT/l/build-$name.log" 2>&1 ||
        echo "gpu_ab: build $name FAILED (log: $OUT/l/build-$name.log)") &
done
wait
stamp "builds done"
ok=1
for i in "${!names[@]}"; do
    [ -x "${dirs[$i]}/packlm" ] || { ok=0; tail -5 "$OUT/l/build-${names[$i]}.log"; }
done
[ $ok = 1 ] || exit 1
for i in "${!names[@]}"; do
    tested "${names[$i]}" || continue
    for t in $TESTS; do
        timeout "${TEST_SECONDS:-300}" "${dirs[$i]}/tests/$t" > "$OUT/l/$t-${names[$i]}.log" 2>&1
        rc=$?
        stamp "$t ${names[$i]}: exit $rc, $(tail -n 1 "$OUT/l/$t-${names[$i]}.log")"
        [ $rc -eq 0 ] || grep -m 8 -E "^FAIL" "$OUT/l/$t-${names[$i]}.log"
    done
done
IFS=';' read -r -a modes <<< "$MODES;"
for j in "${!modes[@]}"; do
margs=${modes[$j]}
for r in $(seq 1 "$ROUNDS"); do
    for i in "${!names[@]}"; do
        timeout 120 "${dirs[$i]}/packlm" bench --device cuda --only "$SECTION" $margs --json "$OUT/l/mix$j-${names[$i]}-$r.json" \
            > "$OUT/l/mix$j-${names[$i]}-$r.txt" 2>&1 || echo "gpu_ab: $SECTION ${names[$i]} round $r failed"
    done
done
stamp "$SECTION ${margs:-(default options)} done"
python3 - "$OUT/l" "$ROUNDS" "$KEYS" "$j" "${names[@]}" <<'PY'
import json, os, sys
d, rounds, keys, j, names = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4], sys.argv[5:]
print("%-12s" % "build" + "".join("%22s" % k.replace("cuda_gdn_", "").replace("_ms", "").replace("decode_tokens_per_s_", "tok/s ") for k in keys))
for n in names:
    row = []
    for k in keys:
        v = []
        for r in range(1, rounds + 1):
            p = os.path.join(d, "mix%s-%s-%d.json" % (j, n, r))
            try:
                v.append(json.load(open(p))[k]["value"])
            except (OSError, ValueError, KeyError):
                pass
        f = "%.4f-%.4f" if v and max(v) < 100 else "%.0f-%.0f"
        row.append(f % (min(v), max(v)) if v else "-")
    print("%-12s" % n + "".join("%22s" % x for x in row))
PY
done
if [ -n "${NCU:-}" ]; then
    for i in "${!names[@]}"; do
        timeout 90 ncu --clock-control none --metrics gpu__time_duration.sum --csv --page raw -k "regex:$NCU" \
            --launch-skip "${NCU_SKIP:-0}" --launch-count "${NCU_COUNT:-6}" "${dirs[$i]}/packlm" bench --device cuda --only "$SECTION" ${modes[0]} 2>&1 |
            grep '^"' > "$OUT/l/ncu-${names[$i]}.csv"
        echo "== ${names[$i]}: ncu kernel times (us)"
        python3 - "$OUT/l/ncu-${names[$i]}.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
if len(rows) > 2:
    h = rows[0]
    ki, ti = h.index("Kernel Name"), h.index("gpu__time_duration.sum")
    scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(rows[1][ti].strip(), 1e-3)
    for r in rows[2:]:
        print("  %-60s %9.1f" % (r[ki][:60], float(r[ti].replace(",", "")) * scale))
PY
    done
fi
stamp "done"
tar czf "$OUT/ab.tgz" -C "$OUT" l && rm -rf "$OUT/l"
