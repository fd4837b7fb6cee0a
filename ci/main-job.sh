#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds the tools, runs the quick suites
# on the embedded default model into results/runs/, and prints the claim table of the default
# claim set (suites/claims/deepseek-article.json). A FAIL verdict is a result, not a failure of
# this script; an ERROR (a broken measurement) is.
# Usage: ci/main-job.sh [extra `claimbench run` options, e.g. --model DIR or --suite kernels]
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/install-deps.sh
echo "== build (default preset)"
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target claimbench refengine cb_kernel_bench

echo "== claimbench run --quick (results/runs/)"
build/default/harness/claimbench run --quick --check --allow-fail "$@"
