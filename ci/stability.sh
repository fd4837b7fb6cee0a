#!/usr/bin/env bash
# Verdict stability: runs the main job's measurement (the quick suites and the default claim set)
# N times in a row on this machine (default 3) and checks that no claim flips between PASS and
# FAIL across the runs. INCONCLUSIVE, INVALID, SKIP and NOT MEASURED may appear beside either:
# they are the verdicts that say "this run cannot tell". Prints one row per claim with every
# run's verdict and interval, and exits 1 when some claim both PASSed and FAILed.
# Usage: ci/stability.sh [RUNS] [extra `claimbench run` options]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
bash ci/install-deps.sh >/dev/null
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target claimbench refengine cb_kernel_bench >/dev/null
out=$(pwd)/results/stability/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
dirs=()
for i in $(seq 1 "$runs"); do
  echo "== run $i of $runs"
  d=$(build/default/harness/claimbench run --quick --check --allow-fail --out "$out" "$@" 2>"$out/run$i.log" | grep -m1 "^/" || true)
  [ -f "$d/claims.json" ] || { echo "run $i produced no claims.json (see $out/run$i.log)"; exit 2; }
  dirs+=("$d")
done
python3 - "$out" "${dirs[@]}" <<'PY'
import json, sys
out, dirs = sys.argv[1], sys.argv[2:]
runs = [json.load(open(d + "/claims.json")) for d in dirs]
ids = [r["id"] for r in runs[0]["results"]]
flips, rows = [], []
for cid in ids:
    cells, verdicts = [], set()
    for r in runs:
        res = next((x for x in r["results"] if x["id"] == cid), None)
        if res is None:
            cells.append("-"); continue
        v = res["verdict"]; verdicts.add(v)
        iv = res.get("interval") or {}
        cells.append(v + (" [%.4g, %.4g]" % (iv["low"], iv["high"]) if iv.get("method") == "student-t" else ""))
    if {"PASS", "FAIL"} <= verdicts: flips.append(cid)
    rows.append((cid, cells))
w = max(len(c) for _, cells in rows for c in cells) + 2
for cid, cells in rows:
    print(f"{cid:16}" + "".join(f"{c:{w}}" for c in cells))
summary = {"runs": dirs, "flips": flips, "claims": {cid: cells for cid, cells in rows}}
json.dump(summary, open(out + "/stability.json", "w"), indent=1)
print(f"\n{len(dirs)} runs; " + (f"PASS/FAIL flips: {', '.join(flips)}" if flips else "no claim flips between PASS and FAIL"))
print(f"wrote {out}/stability.json")
sys.exit(1 if flips else 0)
PY
