#!/usr/bin/env bash
# Builds the fuzz preset (clang, libFuzzer, ASan + UBSan) and runs every fuzz target in
# suites/fuzz for SECONDS seconds each, starting from its committed seed corpus (read only: new
# inputs go to a scratch corpus) with its dictionary. Writes fuzz-summary.md and .json (executions,
# exec/s, cov/ft from libFuzzer's final stats line, crashes) and keeps crash inputs and logs under
# OUT_DIR. Exits 1 when any target crashed (or leaked, timed out, ran out of memory).
# Usage: ci/fuzz.sh [SECONDS] [--out DIR] [--only TARGET]   (default: 10 s per target)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
out=""
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    [0-9]*) seconds="$1"; shift ;;
    *) echo "ci/fuzz.sh: unknown argument '$1' (usage: ci/fuzz.sh [SECONDS] [--out DIR] [--only TARGET])" >&2; exit 2 ;;
  esac
done
out="${out:-results/runs/fuzz-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

bash ci/install-deps.sh

# Every suites/fuzz/fuzz_*.cpp is a target (suites/fuzz/CMakeLists.txt adds each by that name).
targets=()
for f in suites/fuzz/fuzz_*.cpp; do
  t="$(basename "$f" .cpp)"
  [ -z "$only" ] || [ "$t" = "$only" ] && targets+=("$t")
done
[ ${#targets[@]} -gt 0 ] || { echo "ci/fuzz.sh: no target named '$only'" >&2; exit 2; }

echo "== build (fuzz preset): ${targets[*]}"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)" --target "${targets[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# The libraries' leak and UB reports must end the run with the input kept.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=0
json_rows=()
{
  echo "# Fuzz run $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  echo "$seconds s per target; libFuzzer's final stats line. Crash inputs: crashes/<target>/."
  echo
  echo "| target | seconds | executions | exec/s | cov | ft | corpus | crashes | result |"
  echo "|---|---|---|---|---|---|---|---|---|"
} > "$out/fuzz-summary.md"

for t in "${targets[@]}"; do
  echo "== fuzz $t (${seconds}s)"
  work="$scratch/$t"
  crashes="$out/crashes/$t"
  mkdir -p "$work/corpus" "$work/tmp" "$crashes"
  dict=()
  [ -f "suites/fuzz/$t.dict" ] && dict=(-dict="suites/fuzz/$t.dict")
  log="$out/$t.log"
  rc=0
  # The first corpus dir receives new inputs; the committed seeds are only read. TMPDIR: the
  # targets that need a file write theirs there.
  TMPDIR="$work/tmp" "build/fuzz/suites/fuzz/$t" "${dict[@]}" -max_total_time="$seconds" -rss_limit_mb=2048 \
    -timeout=10 -max_len=65536 -print_final_stats=1 -artifact_prefix="$crashes/" \
    "$work/corpus" "suites/fuzz/corpus/$t" > "$log" 2>&1 || rc=$?
  # The last status line ("#N DONE cov: .. ft: .. corp: ../..b ... exec/s: ..") and final stats.
  last="$(grep -E '^#[0-9]+' "$log" | tail -1 || true)"
  execs="$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)"
  eps="$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)"
  cov="$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)"
  ft="$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)"
  corp="$(grep -oE 'corp: [0-9]+/[0-9a-zA-Z]+' <<<"$last" | cut -d' ' -f2 || true)"
  ncrash="$(find "$crashes" -type f | wc -l)"
  result=ok
  if [ "$rc" -ne 0 ] || [ "$ncrash" -gt 0 ]; then
    result="FAILED (exit $rc)"
    failed=1
    echo "ci/fuzz.sh: $t: $(grep -m1 -E 'ERROR: |runtime error|terminate called|deadly signal' "$log" || echo "exit $rc") -- log $log" >&2
  fi
  echo "| $t | $seconds | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $ncrash | $result |" >> "$out/fuzz-summary.md"
  json_rows+=("{\"target\": \"$t\", \"seconds\": $seconds, \"executions\": ${execs:-null}, \"exec_per_s\": ${eps:-null}, \"cov\": ${cov:-null}, \"ft\": ${ft:-null}, \"corpus\": \"${corp:-}\", \"crashes\": $ncrash, \"exit_code\": $rc, \"ok\": $([ "$result" = ok ] && echo true || echo false)}")
  [ "$ncrash" -gt 0 ] || rmdir "$crashes"
done

{
  echo "{\"schema\": \"claimbench.fuzz_summary\", \"seconds_per_target\": $seconds, \"ok\": $([ $failed = 0 ] && echo true || echo false), \"targets\": ["
  for i in "${!json_rows[@]}"; do
    sep=","; [ "$i" -eq $((${#json_rows[@]} - 1)) ] && sep=""
    echo "  ${json_rows[$i]}$sep"
  done
  echo "]}"
} > "$out/fuzz-summary.json"
rmdir "$out/crashes" 2>/dev/null || true

cat "$out/fuzz-summary.md"
echo "ci/fuzz.sh: summary in $out/fuzz-summary.md"
[ $failed = 0 ] || { echo "ci/fuzz.sh: some target crashed; inputs under $out/crashes" >&2; exit 1; }
