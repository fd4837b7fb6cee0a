#!/usr/bin/env bash
# Engine speed near the machine's limits (issue #16), every figure beside a limit measured in the
# same run. Writes the seeded llama-1b models (F32 4.4 GB and BF16 2.2 GB, once; kept in
# build/models), then into one run folder under results/runs/:
#   kernels.json            the quick kernel suite on llama-1b F32 (microbenchmarks with roofline
#                           fractions, paged vs contiguous attention at 4K, engine.* metrics)
#   engine-f32.json         batch-1 decode vs triad / read bandwidth, 128-token prefill vs the FP32
#                           FMA peak, batched decode 1/4/16/64 on the roofline, 1 -> N threads,
#                           and the per-op profile of decode steps at each batch size and of
#                           one prefill
#   kernels-gemm-peers.json the f32 GEMM on gate/up, down and lm_head at M=16 and M=128 against
#                           oneDNN's matmul primitive (W reordered once) and sgemm, 3 repetitions
#   engine-bf16.json        the same with BF16-stored weights (widened to f32 in registers), batch 1
#   engine-bf16dot.json     BF16 weights and bf16 activations: prefill vs the BF16 dot peak (and
#                           its op profile)
#   engine-serving.json     the serving engine's per-step overhead at batch 1 and 64 (default model)
#   engine-planted-matmul-twice.json  the F32 decode, prefill and batch-16 decode figures with the
#                           planted matmul-twice defect (every matmul runs twice, counted once):
#                           each must fall well below the clean run's, or the figures could not fail
#   kernels-paged-pair.json the engine-placement attention pair (paged vs contiguous at 4K, the
#                           allocator's tables) alone, 15 repetitions: the paged target's figure
#   kernels-planted-kv-scatter.json (and .manifest.json)  the engine-placement attention pair again with the planted
#                           kv-scatter defect (the LIFO allocator's scattered tables): its ratio
#                           must fall below the clean run's where this machine pays for scattered
#                           blocks at all (the clean run's shuffled pair says)
#   engine-speed.md/.json   the table of figures, limits and targets (ci/engine_speed_summary.py);
#                           a gated figure's verdict comes from the 95% interval of its 5
#                           repetitions (INCONCLUSIVE where it straddles the target), as claims'
#                           verdicts do
# Copy the folder to results/published/ to publish it.
# Usage: ci/bench-llama-1b.sh [extra claimbench run options]
set -euo pipefail
cd "$(dirname "$0")/.."

bin=build/default
[ -x $bin/harness/claimbench ] || { cmake --preset default >/dev/null && cmake --build --preset default -j "$(nproc)"; }
re=$bin/reference/refengine
for dt in f32 bf16; do
  model=build/models/llama-1b-seed7$([ $dt = bf16 ] && echo -bf16 || true)
  if [ ! -f "$model/model.safetensors" ]; then
    echo "== writing $model (seeded random weights, llama-1b shapes, $dt)"
    $re init --preset llama-1b --seed 7 --dtype $dt --out "$model"
  fi
done
f32=build/models/llama-1b-seed7
bf16=build/models/llama-1b-seed7-bf16

echo "== kernel suite on $f32"
dir=$($bin/harness/claimbench run --suite kernels --quick --model "$f32" "$@" | tail -n 1)
[ -d "$dir" ] || { echo "bench-llama-1b: claimbench run did not write a run folder ($dir)" >&2; exit 1; }

# The paged target's own pair, 15 repetitions: 5 gave intervals 0.05-0.09 wide around a figure
# 0.02-0.04 above the target (INCONCLUSIVE in 3 of 9 runs); 15 cost ~45 s. Right before the planted
# run, so the planted / clean ratio compares one memory phase.
pair='^paired/attention/cpu/f32/H32_KV4_D64_B16_given_tables_vs_contiguous/'
echo "== engine-placement attention pair, 15 repetitions"
paged=$($bin/harness/claimbench run --suite kernels --repetitions 15 --out "$dir/paged-pair" --bench-filter "$pair" | tail -n 1)
[ -f "$paged/kernels.json" ] || { echo "bench-llama-1b: the paged pair run wrote no kernels.json ($paged)" >&2; exit 1; }
cp "$paged/kernels.json" "$dir/kernels-paged-pair.json" && rm -rf "$dir/paged-pair"

echo "== engine-placement attention pair with the planted kv-scatter defect"
planted=$($bin/harness/claimbench run --suite kernels --repetitions 3 --plant-defect kv-scatter --out "$dir/planted-kv-scatter" \
  --bench-filter "$pair" | tail -n 1)
[ -f "$planted/kernels.json" ] || { echo "bench-llama-1b: the kv-scatter run wrote no kernels.json ($planted)" >&2; exit 1; }
# Its manifest names the planted defect; the run folder itself is not kept inside this one.
cp "$planted/kernels.json" "$dir/kernels-planted-kv-scatter.json"
cp "$planted/manifest.json" "$dir/kernels-planted-kv-scatter.manifest.json" && rm -rf "$dir/planted-kv-scatter"

echo "== the engine's f32 GEMM shapes at M=16 (batch-16 decode) and M=128 (prefill) against oneDNN's peers"
peers=$($bin/harness/claimbench run --suite kernels --repetitions 3 --out "$dir/gemm-peers" \
  --bench-filter '^matmul/(cpu/f32|onednn_(matmul|sgemm)/f32)/K(2048_N5632|5632_N2048|2048_N32000)/M(16|128)/' | tail -n 1)
[ -f "$peers/kernels.json" ] || { echo "bench-llama-1b: the GEMM peers run wrote no kernels.json ($peers)" >&2; exit 1; }
cp "$peers/kernels.json" "$dir/kernels-gemm-peers.json" && rm -rf "$dir/gemm-peers"

bench() {  # NAME ARGS...: one refengine bench into the run folder
  local name=$1; shift
  echo "== engine bench: $name"
  $re bench --seed 1 "$@" --out "$dir/engine-$name.json" 2>>"$dir/engine-bench.log"
}
bench f32 --model "$f32" --prefill-tokens 128 --decode-tokens 16 --repetitions 5 --batch-sizes 1,4,16,64 --thread-scaling --op-profile
bench bf16 --model "$bf16" --prefill-tokens 128 --decode-tokens 16 --repetitions 5 --op-profile
bench bf16dot --model "$bf16" --bf16-activations --prefill-tokens 128 --decode-tokens 4 --repetitions 5 --op-profile
bench serving --prefill-tokens 16 --decode-tokens 4 --repetitions 1 --overhead-batches 1,64
CB_PLANT_DEFECTS=matmul-twice bench planted-matmul-twice --model "$f32" --prefill-tokens 128 --decode-tokens 8 --repetitions 2 --batch-sizes 16

python3 ci/engine_speed_summary.py "$dir"
echo "$dir"
