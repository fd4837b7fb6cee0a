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
# No reruns: a test that fails once fails CI (a rerun would hide a flaky test, which is a bug to
# find). Tests that time real processes assert ordering or ratios, not absolute times.
ctest --preset default -j "$jobs" --timeout 900

if [ -x build/default/harness/claimbench ] && [ -f ci/perf-gate.sh ]; then
  echo "== perf gate (quick kernel suite vs committed baseline)"
  bash ci/perf-gate.sh
fi

# CUDA code must compile wherever the toolkit is (it is at /usr/local/cuda on the CI machines):
# the NCCL collectives and their sweep binary, run once (exit 77 = SKIP with its reason, no GPU).
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "== CUDA compile check (cuda preset: NCCL collectives)"
  cmake --preset cuda >/dev/null
  cmake --build --preset cuda -j "$jobs" --target cb_comm_bench
  rc=0
  build/cuda/kernels/comm/cb_comm_bench --backend nccl -e 1M --target-ms 2 || rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || { echo "ci/test.sh: cb_comm_bench --backend nccl exited $rc" >&2; exit 1; }
else
  echo "== CUDA compile check: SKIP (no nvcc on this machine)"
fi

if [ "$asan" = 1 ]; then
  echo "== build (asan preset)"
  cmake --preset asan >/dev/null
  # Only what the unit and conformance suites run (and the binaries their tests start); -O1 -g1
  # (the preset) halves the sanitized compile time and still gives file:line stack traces.
  cmake --build --preset asan -j "$jobs" --target cb_unit_tests cb_conformance_tests refengine claimbench cb_tok
  echo "== tests under ASan + UBSan (unit, conformance)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --preset asan -j "$jobs" --timeout 1800
fi
echo "ci/test.sh: all passed"
