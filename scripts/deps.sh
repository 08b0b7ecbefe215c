#!/usr/bin/env bash
# Installs the Debian packages packlm builds with (skips those already present).
set -euo pipefail
pkgs=(build-essential pkg-config libopenblas-dev libcjson-dev libpcre2-dev libutf8proc-dev libmicrohttpd-dev curl)
# node + npm for the serve tests' clients (tests/node: the openai package, @huggingface/jinja)
command -v node > /dev/null || pkgs+=(nodejs)
command -v npm > /dev/null || pkgs+=(npm)
[ "${PACKLM_FUZZ:-1}" = 1 ] && pkgs+=(clang libclang-rt-14-dev libomp-14-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
