#!/usr/bin/env bash
# The Python package (python/packlm) through pytest: tests/python/ against build/libpacklm.so and the
# CLI. Needs python3 with numpy and pytest (scripts/deps.sh installs python3-numpy and python3-pytest):
# when none is found this FAILS, it never skips. $PYTHON picks the interpreter; otherwise the first of
# python3 and /usr/bin/python3 that has both. test_transformers.py skips itself (with its reason)
# where torch or transformers is missing.
set -u
cd "$(dirname "$0")/.."
py=""
for c in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import numpy, pytest' >/dev/null 2>&1; then py=$c; break; fi
done
if [ -z "$py" ]; then
    echo "FAIL python_tests: no python3 with numpy and pytest (tried: ${PYTHON:-} python3 /usr/bin/python3);"
    echo "     run scripts/deps.sh (python3-numpy, python3-pytest)"
    exit 1
fi
if [ ! -f build/libpacklm.so ] || [ ! -x build/packlm ]; then
    echo "FAIL python_tests: build/libpacklm.so or build/packlm is missing: run make first"
    exit 1
fi
export PACKLM_LIB="$PWD/build/libpacklm.so"
log=build/python_tests.log
if "$py" -m pytest -q -rs -p no:cacheprovider tests/python > $log 2>&1; then
    grep -E "SKIPPED" $log | head -5
    echo "python_tests: $(tail -n 1 $log) ($("$py" --version 2>&1))"
else
    grep -E "^(FAILED|ERROR)" $log | head -20
    tail -n 3 $log
    echo "FAIL python_tests (log: $log)"
    exit 1
fi
