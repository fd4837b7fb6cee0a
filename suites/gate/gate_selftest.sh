#!/usr/bin/env bash
# Self-test of the regression gate on real measurements: a planted 2x slowdown of the cpu
# backend's matmul (CB_BENCH_PLANT_SLOWDOWN=2, a test hook of cb_kernel_bench) must fail
# `claimbench compare`, and a clean rerun must pass.
# Usage: gate_selftest.sh CLAIMBENCH_BINARY WORK_DIR
set -uo pipefail
bin=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
# One pair of kernels: the optimized cpu matmul and the ref oracle on the same shape, so the
# gated metric is their same-run ratio.
filter='^matmul/(cpu|ref)/f32/K512_N512/M8/'
# One thread: the ratio then measures the kernels, not the cores the shared host lends right now.
export OMP_NUM_THREADS=1
run() { "$bin" run --suite kernels --quick --repetitions 10 --bench-filter "$filter" --out "$work/runs" 2>>"$work/log" | tail -n 1; }

base=$(run) || { echo "FAIL: baseline run failed"; cat "$work/log"; exit 1; }
slow=$(CB_BENCH_PLANT_SLOWDOWN=2 run) || { echo "FAIL: planted run failed"; exit 1; }
clean=$(run) || { echo "FAIL: clean rerun failed"; exit 1; }

gate() { "$bin" compare "$base" "$1" --suite kernels --noise ratio,exact --threshold 30% --metric kernels.matmul.cpu_vs_ref.speedup --require kernels.matmul.cpu_vs_ref.speedup; }

fails=0
gate "$slow" >"$work/planted.txt" 2>&1
rc=$?
cat "$work/planted.txt"
if [ $rc -eq 1 ] && grep -q "kernels.matmul.cpu_vs_ref.speedup.*regression" "$work/planted.txt"; then
  echo "ok: planted 2x slowdown fails the gate (exit $rc)"
else
  echo "FAIL: planted 2x slowdown was not caught (exit $rc)"
  fails=$((fails + 1))
fi
gate "$clean" >"$work/clean.txt" 2>&1
rc=$?
cat "$work/clean.txt"
if [ $rc -eq 0 ]; then
  echo "ok: clean rerun passes the gate"
else
  echo "FAIL: clean rerun failed the gate (exit $rc)"
  fails=$((fails + 1))
fi
exit $fails
