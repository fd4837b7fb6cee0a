#!/usr/bin/env bash
# Performance gate for CI: runs the gate's kernel microbenchmarks and compares them with the
# committed baseline using only metrics that are stable on a shared 2-core machine: ratios of two
# kernels measured in the same run (cpu vs the ref oracle, cpu vs oneDNN, int8 / bf16 vs f32).
# Absolute times are not gated: they move with whatever else the machine is doing.
#
#   ci/perf-gate.sh                 gate against results/baselines/ci-2core/kernels-gate
#   ci/perf-gate.sh --update        re-measure and replace that baseline (commit the result)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CLAIMBENCH:-build/default/harness/claimbench}
baseline=results/baselines/ci-2core/kernels-gate
# Keep in sync with the gate self-test (suites/gate/gate_selftest.sh uses the same set).
filter='^matmul/(cpu|ref)/f32/K512_N512/M8/|^matmul/(cpu|onednn_sgemm)/f32/K2048_N2048/M(1|128)/|^matmul/cpu/(bf16|int8pc)/K2048_N2048/M128/'
threshold=${CB_GATE_THRESHOLD:-30%}

[ -x "$bin" ] || { echo "perf-gate: $bin not built (run ci/test.sh or cmake --build --preset default)" >&2; exit 2; }

runs=build/perf-gate/runs
# One thread on both sides: the ratios then measure the kernels, not how many cores the shared
# host lends this VM at that moment (2-thread timings swing 2x here from run to run).
export OMP_NUM_THREADS=1
new=$("$bin" run --suite kernels --quick --repetitions 10 --bench-filter "$filter" --out "$runs" | tail -n 1)

if [ "${1:-}" = "--update" ]; then
  rm -rf "$baseline"
  mkdir -p "$(dirname "$baseline")"
  cp -r "$new" "$baseline"
  rm -f "$baseline/run.log"
  echo "perf-gate: baseline replaced with $new -> $baseline"
  exit 0
fi

# Gated: the optimized cpu matmul against the oracle (K=N=512, M=8) and against oneDNN at M=128.
# Not gated, only recorded: the M=1 ratio against oneDNN (both sides are memory-bound and this
# host's bandwidth drifts: 1.1x-2.3x between back-to-back runs) and the int8 / bf16 ratios.
# Observed spread of the gated ratios in back-to-back runs here: about 10-20%; threshold 30%.
gated='kernels.matmul.cpu_vs_ref.speedup,kernels.matmul.cpu_vs_onednn.M128'
"$bin" compare "$baseline" "$new" --suite kernels --noise ratio,exact --threshold "$threshold" \
  --metric "$gated" --require "$gated" --allow-hardware-mismatch --json "$new/compare.json"
