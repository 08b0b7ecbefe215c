#!/usr/bin/env bash
# Installs the Debian packages packlm builds with (skips those already present).
set -euo pipefail
# python3: the CLI test scripts read JSON with it; python3-numpy + python3-pytest: the Python package's
# tests (tests/python_tests.sh); clang + libclang-rt: the fuzz run; libomp-14-dev: the fuzz targets'
# OpenMP runtime for clang; libmicrohttpd-dev, curl, node + npm: the server and its tests (tests/node:
# the openai package, @huggingface/jinja). The test suite fails (never skips) when any is missing.
pkgs=(build-essential pkg-config libopenblas-dev libcjson-dev libjansson-dev libpcre2-dev libutf8proc-dev python3 python3-numpy
      python3-pytest clang libclang-rt-14-dev libomp-14-dev libmicrohttpd-dev curl)
command -v node > /dev/null || pkgs+=(nodejs)
command -v npm > /dev/null || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
