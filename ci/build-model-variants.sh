#!/usr/bin/env bash
# Rebuilds the committed variants of the embedded default model that the accuracy suite measures
# (reference/models/default-*), from reference/models/default:
#   qat-int8      QAT fine-tune (fake INT8 W8A8 in every linear layer), then INT8 export
#   sparse24      2:4 Wanda pruning, fine-tune keeping the zeros, compressed 2:4 export
#   structured60  structured pruning of KV groups + MLP channels to -60% FLOPs/token, then fine-tune
# Then refreshes suites/accuracy/baselines.json from the new variants. Seeded: same inputs, same
# models. Usage: ci/build-model-variants.sh [BUILD_DIR]   (env: FT_STEPS, THREADS)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/default}
re="$build/reference/refengine"
[[ -x $re ]] || { echo "build-model-variants: $re not found; build first (cmake --preset default && cmake --build build/default)" >&2; exit 1; }
models=reference/models
dense=$models/default
steps=${FT_STEPS:-400}
threads=${THREADS:-0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--steps "$steps" --seed 7 --threads "$threads" --lr 1e-3 --warmup 20 --eval-examples 200)

echo "== qat-int8: QAT fine-tune ($steps steps), then INT8 export"
"$re" train --init-from "$dense" --qat "${common[@]}" --out "$tmp/qat"
"$re" quantize --model "$tmp/qat" --out "$tmp/qat-int8" --scheme w8a8 --quantize-lm-head
cp "$tmp/qat/train_log.jsonl" "$tmp/qat-int8/train_log.jsonl"

echo "== sparse24: 2:4 Wanda pruning, fine-tune keeping zeros ($steps steps), compressed export"
"$re" prune --model "$dense" --out "$tmp/s24" --method 2:4 --scores wanda --format dense
"$re" train --init-from "$tmp/s24" --keep-zeros "${common[@]}" --out "$tmp/s24-ft"
# The fine-tuned weights keep the 2:4 zeros, so magnitude re-pruning selects the same mask.
"$re" prune --model "$tmp/s24-ft" --out "$tmp/sparse24" --method 2:4 --scores magnitude --format compressed
cp "$tmp/s24-ft/train_log.jsonl" "$tmp/sparse24/train_log.jsonl"

echo "== structured60: structured pruning to -60% FLOPs/token, fine-tune ($steps steps)"
"$re" prune --model "$dense" --out "$tmp/st" --method structured --scores wanda --target-flop-reduction 0.6
"$re" train --init-from "$tmp/st" "${common[@]}" --out "$tmp/structured60"
# The pruning record (dense and pruned shapes, kept groups and channels) travels with the variant.
cp "$tmp/st/compression.json" "$tmp/structured60/compression.json"

for v in qat-int8 sparse24 structured60; do
  rm -rf "$models/default-$v"
  mkdir -p "$models/default-$v"
  cp "$tmp/$v"/* "$models/default-$v/"
  printf '# default-%s\n\nA variant of the embedded default model for the accuracy suite. Rebuilt by\n`ci/build-model-variants.sh` (fine-tune steps: %s); see compression.json and train_log.jsonl.\n' \
    "$v" "$steps" > "$models/default-$v/README.md"
done

echo "== baselines"
CB_UPDATE_BASELINES=1 "$build/suites/cb_accuracy_tests" --gtest_filter='AccuracyBaselines.*'
echo "done: $models/default-{qat-int8,sparse24,structured60}, suites/accuracy/baselines.json"
