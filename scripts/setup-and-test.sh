#!/usr/bin/env bash
# Fresh Debian machine -> dependencies, build, whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
make -j"$(nproc)"
(cd tests/node && npm ci --no-audit --no-fund)   # the serve tests' clients, from package-lock.json
make test
