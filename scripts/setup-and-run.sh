#!/usr/bin/env bash
# Fresh Debian machine -> dependencies, build, then the main job on the bundled default model
# (tests/data/tiny-dense, a small Qwen3.5 checkpoint saved by transformers): score its sequences as
# one packed run, and write the logits of every token.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
make -s -j"$(nproc)"
model=${1:-tests/data/tiny-dense}
input=${2:-$model/inputs.txt}
echo "== packlm score --model $model --input $input"
build/packlm score --model "$model" --input "$input"
echo "== packlm forward --model $model --input $input --out build/logits.npy"
build/packlm forward --model "$model" --input "$input" --out build/logits.npy
