#!/usr/bin/env bash
# Builds the fuzz preset (clang, libFuzzer, ASan + UBSan) and runs every fuzz target in
# suites/fuzz for SECONDS seconds each, starting from its committed seed corpus (read only: new
# inputs go to a scratch corpus) with its dictionary. Writes fuzz-summary.md and .json (executions,
# exec/s, cov/ft from libFuzzer's final stats line, crashes) and keeps crash inputs and logs under
# OUT_DIR. Exits 1 when any target crashed (or leaked, timed out, ran out of memory).
# --lanes N runs N targets at a time (one libFuzzer process each: use at most the cores you have).
# Usage: ci/fuzz.sh [SECONDS] [--out DIR] [--only TARGET] [--lanes N]   (default: 10 s per target, 1 lane)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
out=""
only=""
lanes=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --lanes) lanes="$2"; shift 2 ;;
    [0-9]*) seconds="$1"; shift ;;
    *) echo "ci/fuzz.sh: unknown argument '$1' (usage: ci/fuzz.sh [SECONDS] [--out DIR] [--only TARGET] [--lanes N])" >&2; exit 2 ;;
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

[[ "$lanes" =~ ^[1-9][0-9]*$ ]] || { echo "ci/fuzz.sh: --lanes wants a positive integer, got '$lanes'" >&2; exit 2; }
commit="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
dirty="$(git status --porcelain --untracked-files=no 2>/dev/null | head -c1)"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# One target: its libFuzzer run, then its summary row (rows/<target>.md and .json) and, on a
# finding, a line on stderr. Lanes run these in parallel; the summary is assembled in name order.
fuzz_one() {
  local t="$1" work crashes log rc last execs eps cov ft corp ncrash result
  local -a dict
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
  # (a crash prints the final stats twice: the last of each)
  execs="$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1 || true)"
  eps="$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1 || true)"
  cov="$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)"
  ft="$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)"
  corp="$(grep -oE 'corp: [0-9]+/[0-9a-zA-Z]+' <<<"$last" | cut -d' ' -f2 || true)"
  ncrash="$(find "$crashes" -type f | wc -l)"
  result=ok
  if [ "$rc" -ne 0 ] || [ "$ncrash" -gt 0 ]; then
    result="FAILED (exit $rc)"
    echo "ci/fuzz.sh: $t: $(grep -m1 -E 'ERROR: |runtime error|terminate called|deadly signal' "$log" || echo "exit $rc") -- log $log" >&2
  fi
  echo "| $t | $seconds | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $ncrash | $result |" > "$rows/$t.md"
  echo "{\"target\": \"$t\", \"seconds\": $seconds, \"executions\": ${execs:-null}, \"exec_per_s\": ${eps:-null}, \"cov\": ${cov:-null}, \"ft\": ${ft:-null}, \"corpus\": \"${corp:-}\", \"crashes\": $ncrash, \"exit_code\": $rc, \"ok\": $([ "$result" = ok ] && echo true || echo false)}" > "$rows/$t.json"
  [ "$ncrash" -gt 0 ] || rmdir "$crashes"
}

rows="$scratch/rows"
mkdir -p "$rows"
lane() {  # targets lane, lane + lanes, ...
  local i
  for ((i = $1; i < ${#targets[@]}; i += lanes)); do fuzz_one "${targets[$i]}"; done
}
for ((l = 0; l < lanes; ++l)); do lane "$l" & done
wait

failed=0
json_rows=()
{
  echo "# Fuzz run $started, commit $commit${dirty:+ (uncommitted changes)}"
  echo
  echo "$seconds s per target, $lanes at a time on $(nproc) cores; libFuzzer's final stats line. Crash inputs: crashes/<target>/."
  echo
  echo "| target | seconds | executions | exec/s | cov | ft | corpus | crashes | result |"
  echo "|---|---|---|---|---|---|---|---|---|"
} > "$out/fuzz-summary.md"
for t in "${targets[@]}"; do
  if [ -f "$rows/$t.md" ]; then
    cat "$rows/$t.md" >> "$out/fuzz-summary.md"
    json_rows+=("$(cat "$rows/$t.json")")
    grep -q '"ok": true' "$rows/$t.json" || failed=1
  else
    echo "| $t | $seconds | ? | ? | ? | ? | ? | ? | NOT RUN |" >> "$out/fuzz-summary.md"
    failed=1
  fi
done

{
  echo "{\"schema\": \"claimbench.fuzz_summary\", \"started\": \"$started\", \"commit\": \"$commit\", \"uncommitted_changes\": $([ -n "$dirty" ] && echo true || echo false), \"seconds_per_target\": $seconds, \"lanes\": $lanes, \"cores\": $(nproc), \"ok\": $([ $failed = 0 ] && echo true || echo false), \"targets\": ["
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
