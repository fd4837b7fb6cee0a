#!/usr/bin/env bash
# Overload soak of `refengine serve` (issue #17; not part of the default CI run): measures the
# server's capacity on the request mix, offers FACTOR x that for DURATION seconds as seeded Poisson
# arrivals (streaming, non-streaming, n > 1, clients hanging up mid-stream, slow readers), then
# sends SIGTERM under load. Checks 429 + Retry-After, bounded RSS, an outcome for every request,
# /health and /metrics answering, the drain, and /metrics counters against the client's counts.
# Writes OUT/summary.md, summary.json, rss.csv, probes.csv, timeline.csv, requests.csv, the
# /metrics scrapes before and after the soak, hardware.json; exits 1 if any check fails. The client is ci/soak.py (Python standard library).
#
# Usage: ci/soak.sh [--duration S] [--factor F] [--seed N] [--port P] [--mix K=W,...] [--out DIR]
#                   [other ci/soak.py options, see python3 ci/soak.py --help]
#   --duration 30 --capacity-seconds 30 --capacity-warmup 10: the short mode, to test the script.
# Binaries (not built here, to spare a cold build): $REFENGINE, default build/default/reference/refengine;
# $CLAIMBENCH (for the hardware fingerprint), default build/default/harness/claimbench.
set -euo pipefail
cd "$(dirname "$0")/.."

refengine=${REFENGINE:-build/default/reference/refengine}
claimbench=${CLAIMBENCH:-build/default/harness/claimbench}
for b in "$refengine" "$claimbench"; do
  [ -x "$b" ] || { echo "ci/soak.sh: no executable $b (build it: cmake --build --preset default --target refengine claimbench, or set REFENGINE / CLAIMBENCH)" >&2; exit 2; }
done

out=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; python3 ci/soak.py --help | sed -n '/^options:/,$p'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done

fp=$("$claimbench" hardware --fingerprint)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="${out:-results/runs/soak-$stamp-$fp}"
mkdir -p "$out"
"$claimbench" hardware > "$out/hardware.json"
commit=$(git rev-parse HEAD)
dirty=()
[ -z "$(git status --porcelain --untracked-files=no)" ] || dirty=(--dirty)

echo "ci/soak.sh: writing $out (commit ${commit:0:7}${dirty:+, dirty tree}, machine $fp)"
python3 ci/soak.py --refengine "$refengine" --out "$out" --commit "$commit" "${dirty[@]}" --fingerprint "$fp" \
  --started-at "$(date -u -d "${stamp:0:8} ${stamp:9:2}:${stamp:11:2}:${stamp:13:2}" +%Y-%m-%dT%H:%M:%SZ)" "${args[@]}"
