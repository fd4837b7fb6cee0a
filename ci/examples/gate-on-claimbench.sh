#!/usr/bin/env bash
# Example CI job for projects that use claimbench to gate on performance regressions.
# Any CI system can call it: it exits non-zero when the new run regresses against the baseline.
#
#   gate-on-claimbench.sh BASELINE_RUN_DIR [SUITE] [THRESHOLD]
#
# BASELINE_RUN_DIR  a run folder measured on the same machine class (keep it under version control
#                   or in your CI's artifact store; refresh it deliberately, not on every merge)
# SUITE             kernels (default) | accuracy | load | scaling
# THRESHOLD         relative change that counts as a regression (default 5%)
#
# Environment: CLAIMBENCH (path to the binary, default build/default/harness/claimbench),
#              CLAIMBENCH_SUT (inprocess or http://HOST:PORT of your own OpenAI-compatible server),
#              CLAIMBENCH_MODEL (model directory), CLAIMBENCH_NOISE (noise classes to gate on;
#              default ratio,exact: same-run ratios and deterministic counts; add timing only on
#              dedicated, quiet machines).
set -euo pipefail

baseline=${1:?usage: gate-on-claimbench.sh BASELINE_RUN_DIR [SUITE] [THRESHOLD]}
suite=${2:-kernels}
threshold=${3:-5%}
bin=${CLAIMBENCH:-build/default/harness/claimbench}
noise=${CLAIMBENCH_NOISE:-ratio,exact}

args=(run --suite "$suite" --quick --out "${CLAIMBENCH_OUT:-ci-runs}")
[ -n "${CLAIMBENCH_SUT:-}" ] && args+=(--sut "$CLAIMBENCH_SUT")
[ -n "${CLAIMBENCH_MODEL:-}" ] && args+=(--model "$CLAIMBENCH_MODEL")

new=$("$bin" "${args[@]}" | tail -n 1)
echo "new run: $new"

# The report is useful as a CI artifact whether or not the gate passes.
"$bin" report "$baseline" "$new" -o "$new/report" || true

"$bin" compare "$baseline" "$new" --suite "$suite" --noise "$noise" --threshold "$threshold" --json "$new/compare.json"
