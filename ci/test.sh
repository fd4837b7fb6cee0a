#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every suite, then builds the
# asan preset (ASan + UBSan) and runs the unit and conformance suites under it.
# Usage: ci/test.sh [--no-asan]
set -euo pipefail
cd "$(dirname "$0")/.."

asan=1
for a in "$@"; do
  case "$a" in
    --no-asan) asan=0 ;;
    *) echo "ci/test.sh: unknown option '$a' (known: --no-asan)" >&2; exit 2 ;;
  esac
done

jobs=$(nproc)
bash ci/install-deps.sh

echo "== build (default preset)"
cmake --preset default >/dev/null
cmake --build --preset default -j "$jobs"

echo "== tests (default preset)"
ctest --preset default -j "$jobs" --timeout 900

if [ -x build/default/harness/claimbench ] && [ -f ci/perf-gate.sh ]; then
  echo "== perf gate (quick kernel suite vs committed baseline)"
  bash ci/perf-gate.sh
fi

if [ "$asan" = 1 ]; then
  echo "== build (asan preset)"
  cmake --preset asan >/dev/null
  # Only what the unit and conformance suites run (and the binaries their tests start); -O1 -g1
  # (the preset) halves the sanitized compile time and still gives file:line stack traces.
  cmake --build --preset asan -j "$jobs" --target cb_unit_tests cb_conformance_tests refengine claimbench
  echo "== tests under ASan + UBSan (unit, conformance)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --preset asan -j "$jobs" --timeout 1800
fi
echo "ci/test.sh: all passed"
