#!/usr/bin/env bash
# Retrains the embedded default model (reference/models/default) with the exact command it was
# trained with, on 2 threads, and prints the wall and CPU time. The weights, train_log.jsonl and
# held-out accuracy it writes are what reference/models/default/README.md reports.
#
# Usage: ci/train-default-model.sh [OUT_DIR]   (default: reference/models/default, overwritten)
# Env:   REFENGINE  the refengine binary (default: build/default/reference/refengine, built if missing)
# After replacing the committed model, regenerate the golden logits:
#   CB_UPDATE_GOLDEN=1 build/default/suites/cb_conformance_tests --gtest_filter='ModelGolden*'
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-reference/models/default}
refengine=${REFENGINE:-build/default/reference/refengine}
if [ ! -x "$refengine" ]; then
  cmake --preset default >/dev/null
  cmake --build --preset default --target refengine -j "$(nproc)"
fi

# Idle OpenMP threads sleep instead of spinning: on a shared machine a spinning thread takes the
# core another process (or the other training thread) needs.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# The training command (keep in sync with reference/models/default/README.md).
cmd=("$refengine" train --preset default --seed 1 --steps 10000 --batch 64 --lr 2e-3 --warmup 200
     --threads 2 --eval-examples 200 --log-every 50 --force --out "$out")
echo "+ ${cmd[*]}"
TIMEFORMAT="ci/train-default-model.sh: wall %R s, CPU %U s user + %S s system (training + evaluation), model in $out"
time "${cmd[@]}"
