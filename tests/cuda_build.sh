#!/usr/bin/env bash
# The CUDA variant: where nvcc exists ($CUDA_HOME, default /usr/local/cuda, or on the PATH), builds it
# (make CUDA=1 into build/cuda: a compile-and-link check of every .cu file against cuBLAS and the
# runtime) and runs its CUDA tests. Where no GPU is visible they report themselves skipped, and so
# does this script; on a GPU machine PLM_REQUIRE_CUDA=1 makes a skip a failure
# (scripts/gpu-check.sh runs the whole CUDA test set there).
set -u
cd "$(dirname "$0")/.."
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
nvcc=$CUDA_HOME/bin/nvcc
[ -x "$nvcc" ] || nvcc=$(command -v nvcc || true)
if [ -z "$nvcc" ]; then
    echo "cuda_build: SKIPPED: no nvcc (neither $CUDA_HOME/bin/nvcc nor on the PATH): the CUDA variant was not built"
    exit 0
fi
B=build/cuda
if ! make -s -j"$(nproc)" CUDA=1 B=$B CUDA_HOME="$(dirname "$(dirname "$nvcc")")" > $B.log 2>&1; then
    tail -20 $B.log
    echo "cuda_build: FAILED to build the CUDA variant (log: $B.log)"
    exit 1
fi
echo "cuda_build: make CUDA=1 built $B/packlm with $("$nvcc" --version | tail -1)"
fail=0
# every kernel waits for the kernels before it (griddepcontrol.wait, plm_pdl_enter): small steps' graphs
# link their kernels by programmatic edges, and a kernel that does not wait would race its predecessor
ptx=$(mktemp -d)
pids=""
for f in src/kernels/*.cu; do
    "$nvcc" -O2 -std=c++17 -Iinclude -Isrc -gencode arch=compute_90,code=compute_90 -ptx "$f" \
        -o "$ptx/$(basename "$f" .cu).ptx" &
    pids="$pids $!"
done
# the Hopper code of the delta rule's kernels with ptxas's report: wgmma serialised (C7520) or a warpgroup
# arrive the compiler had to insert (C7519) is a silent loss of speed, a spill in the wgmma scan too
# (with the wgmma chunk prep switched on, so that it is compiled and checked too)
"$nvcc" -O2 -std=c++17 -Iinclude -Isrc -DPLM_GDN_WG_PREP=1 -gencode arch=compute_90a,code=sm_90a -Xptxas -v \
    -c src/kernels/gdn_tc.cu -o "$ptx/gdn_tc_sm90a.o" > "$ptx/ptxas.log" 2>&1 &
pids="$pids $!"
ptxfail=0
for p in $pids; do wait "$p" || ptxfail=1; done
wgbad=$(grep -E "C7519|C7520" "$ptx/ptxas.log" | head -3)
wgspill=$(awk '/Compiling entry function .*k_gdn_wg_(scan|prep)/ { f = 1; next } f && /spill stores/ { if ($5 != 0 || $9 != 0) print; f = 0 }' "$ptx/ptxas.log")
nwg=$(grep -cE "Compiling entry function .*k_gdn_wg_(scan|prep)" "$ptx/ptxas.log")
if [ -n "$wgbad$wgspill" ] || [ "$nwg" -lt 4 ]; then
    echo "cuda_build: FAIL: the wgmma kernels' sm_90a code ($nwg instances): ${wgbad:-no serialisation}; ${wgspill:-no spill}"
    fail=1
else
    echo "cuda_build: the wgmma scan's and prep's $nwg instances compile for sm_90a without serialised products or spills"
fi
# each entry from its .entry line to the next (or the file's end) must hold griddepcontrol.wait (POSIX awk)
nowait=$(awk 'FNR == 1 { if (name != "" && !seen) print prev ": " name; name = "" }
              /^\.(visible )?\.?entry / { if (name != "" && !seen) print FILENAME ": " name; name = $NF; seen = 0 }
              /griddepcontrol\.wait/ { seen = 1 }
              { prev = FILENAME }
              END { if (name != "" && !seen) print prev ": " name }' "$ptx"/*.ptx)
nent=$(cat "$ptx"/*.ptx | grep -cE '^\.(visible )?\.?entry ')
rm -rf "$ptx"
if [ $ptxfail -ne 0 ] || [ -n "$nowait" ] || [ "$nent" -lt 20 ]; then
    echo "cuda_build: FAIL: PTX of src/kernels not generated (nvcc failed: $ptxfail; $nent entries) or kernels"
    echo "  without griddepcontrol.wait (plm_pdl_enter): $nowait"
    fail=1
else
    echo "cuda_build: all $nent kernels of src/kernels wait for their predecessors (plm_pdl_enter)"
fi
for t in test_cuda_ops test_cuda_devmem; do
    out=$($B/tests/$t 2>&1) || fail=1
    echo "cuda_build: $t: $(echo "$out" | tail -n 1)"
done
# the CLI without a usable GPU: a clear error, a non-zero exit, no output
msg=$($B/packlm score --model tests/data/tiny-dense --input tests/data/tiny-dense/inputs.txt --device cuda 2>&1 >/dev/null)
rc=$?
if [ $rc -eq 0 ]; then
    echo "cuda_build: a GPU is visible: packlm score --device cuda ran (scripts/gpu-check.sh runs the CUDA test set)"
else
    case $msg in
    *"cuda:0"*) echo "cuda_build: CUDA tests SKIPPED, no usable GPU here; --device cuda answers: $msg" ;;
    *) echo "cuda_build: FAIL: --device cuda without a GPU gave exit $rc and '$msg'"; fail=1 ;;
    esac
fi
exit $fail
