#!/usr/bin/env bash
# Every verdict shown able to flip, in the spirit of MLPerf's compliance tests: the engine suite
# runs once honestly and once with each planted defect (claimbench run --plant-defect NAME, see
# reference/include/cb/engine/model/planted_defects.h), and the matching claim must go from PASS to FAIL:
#   batch-ignores-queue -> batch-policy (the scheduler's step trace no longer follows the queue)
#   kv-reserve-max      -> kv-cut (the paged cache reserves like the contiguous baseline)
#   busy-loop           -> util (max(MFU, MBU) over trials) FAILs, while the busy fraction, which
#                          the old util-busy claim read, still clears the article's 0.82
#   answer-cache        -> the engine run turns INVALID (its answer-cache probe sees tokens returned
#                          without a forward pass), so kv-cut and batch-policy are INVALID
#   dense-pruned        -> sparse-flops (accuracy suite: FLOPs the pruned model executes) FAILs,
#                          while its accuracy, which the defect leaves unchanged, stays as it was
# util's threshold is 3/4 of the honest run's median on this machine (a fresh-clone CI saw the busy-loop
# defect cut util only 1.55x, 0.167 -> 0.108, past half): the test is that the defect
# moves the verdict, not that this machine meets the article's 82%.
# util is the one noisy metric here (max(MFU, MBU) per trial, against wall time): on a shared
# machine a neighbour's burst widens its interval until the verdict is INCONCLUSIVE (seen in CI and
# reproduced with two CPU hogs: trials 0.29 .. 0.07). Such a run is repeated, at most 3 attempts in
# all; only the wanted verdict counts, and the other decided verdict (PASS under the defect) fails
# the test at once.
# Usage: planted_defects.sh CLAIMBENCH_BINARY WORK_DIR
set -uo pipefail
bin=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
fail=0

run() {  # run [--plant-defect NAME]: the engine suite; prints the run folder
  "$bin" run --suite engine --quick --out "$work/runs" "$@" 2>>"$work/log" | tail -n 1
}
run_accuracy() {  # run_accuracy [--plant-defect NAME]: the accuracy suite; prints the run folder
  "$bin" run --suite accuracy --quick --out "$work/runs" "$@" 2>>"$work/log" | tail -n 1
}
metric() {  # metric RUN_DIR KEY [SUITE]: the metric's value
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1]+"/"+sys.argv[3]+".json")); print([m["value"] for m in d["metrics"] if m["key"]==sys.argv[2]][0])' "$1" "$2" "${3:-engine}"
}
verdict() {  # verdict RUN_DIR CLAIM_SET ID
  "$bin" check "$1" --claims "$2" --allow-fail >>"$work/log" 2>&1
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1]+"/claims.json")); print([r["verdict"] for r in d["results"] if r["id"]==sys.argv[2]][0])' "$1" "$3"
}
expect() {  # expect WHAT GOT WANT
  if [ "$2" = "$3" ]; then echo "ok: $1: $2"; else echo "FAIL: $1: got $2, want $3"; fail=1; fi
}

make_claims() {  # make_claims HONEST_RUN: the claim set, util's threshold from that run
  local half
  half=$(python3 -c "print(0.75 * $(metric "$1" engine.util.achieved_fraction))")
  python3 - "$shipped" "$claims" "$half" <<'PY'
import json, sys
src = json.load(open(sys.argv[1]))
keep = [c for c in src["claims"] if c["id"] in ("batch-policy", "kv-cut", "sparse-flops")]
util = {"id": "util", "claim": "max(MFU, MBU) of the offline queue-table runs, over trials",
        "figure": "3/4 of the honest run's median", "metric": "engine.util.achieved_fraction", "comparator": ">=",
        "threshold": float(sys.argv[3]), "unit": "fraction", "suite": "engine"}
busy = {"id": "busy", "claim": "busy fraction (what util-busy read before it could fail)", "figure": ">= 82%",
        "metric": "engine.util.busy_fraction", "comparator": ">=", "threshold": 0.82, "unit": "fraction", "suite": "engine"}
json.dump({"schema": "claimbench.claimset", "schema_version": "1.0", "name": "planted-defects",
           "source": "suites/defects/planted_defects.sh", "claims": keep + [util, busy]}, open(sys.argv[2], "w"), indent=1)
PY
}
shipped="$(dirname "$0")/../claims/deepseek-article.json"
claims="$work/claims.json"

for attempt in 1 2 3; do
  honest=$(run) || { echo "FAIL: honest run failed"; tail -n 30 "$work/log"; exit 1; }
  make_claims "$honest"
  v=$(verdict "$honest" "$claims" util)
  [ "$v" = INCONCLUSIVE ] || break
  echo "note: honest util INCONCLUSIVE on attempt $attempt (the machine is noisy); measuring again"
done
expect "honest util (attempt $attempt)" "$v" PASS
for id in batch-policy kv-cut; do expect "honest $id" "$(verdict "$honest" "$claims" $id)" PASS; done
expect "honest: every token computed" "$(python3 -c "print($(metric "$honest" engine.compliance.uncomputed_tokens) == 0)")" True

d=$(run --plant-defect batch-ignores-queue) || { echo "FAIL: batch-ignores-queue run failed"; exit 1; }
expect "batch-ignores-queue: batch-policy" "$(verdict "$d" "$claims" batch-policy)" FAIL
expect "batch-ignores-queue: manifest names it" \
  "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]+"/manifest.json"))["params"]["planted_defects"])' "$d")" "['batch-ignores-queue']"

d=$(run --plant-defect kv-reserve-max) || { echo "FAIL: kv-reserve-max run failed"; exit 1; }
expect "kv-reserve-max: kv-cut" "$(verdict "$d" "$claims" kv-cut)" FAIL

for attempt in 1 2 3; do
  d=$(run --plant-defect busy-loop) || { echo "FAIL: busy-loop run failed"; exit 1; }
  v=$(verdict "$d" "$claims" util)
  [ "$v" = INCONCLUSIVE ] || break
  echo "note: busy-loop util INCONCLUSIVE on attempt $attempt (the machine is noisy); measuring again"
done
expect "busy-loop: util (attempt $attempt)" "$v" FAIL
busy=$(metric "$d" engine.util.busy_fraction)
expect "busy-loop: busy fraction still >= 0.82 (the old metric is fooled)" "$(python3 -c "print($busy >= 0.82)")" True

d=$(run --plant-defect answer-cache) || { echo "FAIL: answer-cache run failed"; exit 1; }
for id in kv-cut batch-policy; do expect "answer-cache: $id" "$(verdict "$d" "$claims" $id)" INVALID; done
expect "answer-cache: tokens returned uncomputed" "$(python3 -c "print($(metric "$d" engine.compliance.uncomputed_tokens) > 0)")" True

acc=$(run_accuracy) || { echo "FAIL: honest accuracy run failed"; tail -n 30 "$work/log"; exit 1; }
expect "honest sparse-flops" "$(verdict "$acc" "$claims" sparse-flops)" PASS
d=$(run_accuracy --plant-defect dense-pruned) || { echo "FAIL: dense-pruned run failed"; exit 1; }
expect "dense-pruned: sparse-flops" "$(verdict "$d" "$claims" sparse-flops)" FAIL
expect "dense-pruned: accuracy unchanged (the padding is output-preserving)" \
  "$(metric "$d" accuracy.structured.acc_retained accuracy)" "$(metric "$acc" accuracy.structured.acc_retained accuracy)"

[ $fail = 0 ] && echo "PASS: every planted defect flips its claim" || { echo "--- log tail"; tail -n 40 "$work/log"; }
exit $fail
