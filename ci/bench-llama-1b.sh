#!/usr/bin/env bash
# The engine speed check on realistic shapes: writes the seeded llama-1b model (4.4 GB F32, once;
# kept in build/models) and runs the quick kernel suite on it, whose engine.* metrics compare
# batch-1 decode with the measured memory read bandwidth and a 128-token prefill with the
# measured peak FP32 FMA rate. The run folder lands in results/runs/; copy it to
# results/published/ to publish it.
# Usage: ci/bench-llama-1b.sh [extra claimbench run options]
set -euo pipefail
cd "$(dirname "$0")/.."

bin=build/default
[ -x $bin/harness/claimbench ] || { cmake --preset default >/dev/null && cmake --build --preset default -j "$(nproc)"; }
model=build/models/llama-1b-seed7
if [ ! -f "$model/model.safetensors" ]; then
  echo "== writing $model (seeded random weights, llama-1b shapes)"
  $bin/reference/refengine init --preset llama-1b --seed 7 --out "$model"
fi
dir=$($bin/harness/claimbench run --suite kernels --quick --model "$model" "$@" | tail -n 1)
python3 - "$dir/kernels.json" <<'PY' || true
import json, sys
m = {x["key"]: x for x in json.load(open(sys.argv[1]))["metrics"]}
for k, target in (("kernels.engine.decode.bw_fraction", 0.8), ("kernels.engine.prefill.peak_fraction", 0.5)):
    if k in m:
        print(f"{k:32s} {m[k]['value']:.3f}  (target >= {target})")
PY
echo "$dir"
