# cb_kernel_bench as its consumers meet it: the kernels suite (harness/src/suites/kernels.cpp), the
# regression gate and the baselines in results/ key on its benchmark names, counters and labels.
if(TARGET cb_kernel_bench)
  set(_kb $<TARGET_FILE:cb_kernel_bench>)
  set(_kbt ${PROJECT_BINARY_DIR}/kernel-bench-tests)

  # A default run lists exactly the committed names, in order; --op_perf adds op/<backend>/...
  # names (cpu, not ref) and changes nothing else.
  add_test(NAME kernels.bench_names_unchanged
           COMMAND bash -c [=[
set -u
bin="$1"; want="$2"; out="$3"; rm -rf "$out"; mkdir -p "$out"
"$bin" --benchmark_list_tests > "$out/default.txt" || { echo "list failed"; exit 1; }
diff -u "$want" "$out/default.txt" || { echo "the default benchmark names changed: the kernels suite, results/ baselines and docs/contracts.md key on them (update $want with them, never alone)"; exit 1; }
"$bin" --op_perf --benchmark_list_tests > "$out/op_perf.txt" || { echo "--op_perf list failed"; exit 1; }
grep -v '^op/' "$out/op_perf.txt" | diff -u "$want" - || { echo "--op_perf changed the default names"; exit 1; }
n=$(grep -c '^op/cpu/' "$out/op_perf.txt")
[ "$n" -ge 100 ] || { echo "--op_perf: $n op/cpu/ benchmarks, want >= 100"; exit 1; }
! grep -q '^op/ref/' "$out/op_perf.txt" || { echo "--op_perf: ref is on by default"; exit 1; }
for name in op/cpu/rmsnorm/f32/D2048/M1/real_time op/cpu/attention/f32/H32_KV4_D64_B16/C2048/M8/real_time \
            op/cpu/matmul/w8a8/K2048_N32000/M128/real_time op/cpu/matmul/sparse24/K5632_N2048/M16/real_time; do
  grep -qx "$name" "$out/op_perf.txt" || { echo "--op_perf: no $name"; exit 1; }
done
"$bin" --benchmark_filter='^op/cpu/add/' --benchmark_list_tests > "$out/filter.txt" || { echo "filter ^op/ list failed"; exit 1; }
[ "$(wc -l < "$out/filter.txt")" -eq 3 ] || { echo "--benchmark_filter=^op/cpu/add/ should list the 3 add cases:"; cat "$out/filter.txt"; exit 1; }
"$bin" --op_perf=nope --benchmark_list_tests > /dev/null 2> "$out/bad.txt" && { echo "--op_perf=nope: exit 0"; exit 1; }
grep -q "unknown backend 'nope'" "$out/bad.txt" || { echo "--op_perf=nope: no message"; cat "$out/bad.txt"; exit 1; }
echo "names: $(wc -l < "$want") default names unchanged, $n op/cpu/ cases with --op_perf"
]=] names ${_kb} ${PROJECT_SOURCE_DIR}/kernels/bench/benchmark_names.txt ${_kbt}/names)
  set_tests_properties(kernels.bench_names_unchanged PROPERTIES LABELS kernels TIMEOUT 60
    PASS_REGULAR_EXPRESSION "default names unchanged")

  # One short run of ops driven by their op cases, named as before and as op/ cases: every counter
  # the kernels suite reads is there, with the values of the formulas the baselines were measured
  # with (bytes and flops per iteration = rate x time per iteration), and the labels.
  add_test(NAME kernels.bench_case_counters
           COMMAND bash -c [=[
set -u
bin="$1"; src="$2"; out="$3"; rm -rf "$out"; mkdir -p "$out"
"$bin" --benchmark_filter='^(rmsnorm/cpu/f32/D2048|kv_store/cpu/f32/KV4_D64_B16|silu_mul/cpu/f32/F5632)/M1/|^attention/cpu/f32/H32_KV4_D64_B16/decode_ctx512/M1/|^op/cpu/(rmsnorm/f32/D2048|attention/f32/H32_KV4_D64_B16/C512|matmul/int8pc/K2048_N256)/M1/|^matmul/onednn_matmul/(f32|w8a8|bf16dot)/K2048_N256/M1/' \
       --op_perf=cpu --benchmark_min_time=0.01s --benchmark_format=json > "$out/run.json" || { echo "cb_kernel_bench failed"; exit 1; }
python3 "$src/kernels/bench/check_counters.py" "$out/run.json"
]=] counters ${_kb} ${PROJECT_SOURCE_DIR} ${_kbt}/counters)
  set_tests_properties(kernels.bench_case_counters PROPERTIES LABELS kernels TIMEOUT 120
    PASS_REGULAR_EXPRESSION "counters: 10 benchmarks checked")

  # The paired paged vs contiguous benchmark (the kernels.attention.paged_vs_contiguous figure):
  # one repetition clean and one with the paged side planted 2x slower. Its counters are there,
  # it placed the buffers afresh more than once, and the planted paging overhead shows: the
  # ratio falls below 0.75 and to under 0.75 of the clean run's.
  add_test(NAME kernels.paired_attention_can_fail
           COMMAND bash -c [=[
set -u
bin="$1"; out="$2"; rm -rf "$out"; mkdir -p "$out"
f='^paired/attention/cpu/f32/H32_KV4_D64_B16_vs_contiguous/decode_ctx4096_S8/M8/'
"$bin" --benchmark_filter="$f" --benchmark_format=json > "$out/clean.json" || { echo "clean run failed"; exit 1; }
CB_BENCH_PLANT_SLOWDOWN=2 CB_BENCH_PLANT_SLOWDOWN_DTYPE=paged_attention   "$bin" --benchmark_filter="$f" --benchmark_format=json > "$out/planted.json" || { echo "planted run failed"; exit 1; }
python3 - "$out/clean.json" "$out/planted.json" <<'PY'
import json, sys
def one(path):
    runs = [b for b in json.load(open(path))["benchmarks"] if b.get("run_type", "iteration") == "iteration"]
    assert len(runs) == 1 and not runs[0].get("error_occurred"), f"{path}: want one clean repetition: {runs}"
    b = runs[0]
    for k in ("ratio", "a_ms", "b_ms", "placements"):
        assert k in b, f"{path}: no counter {k}"
    assert b["placements"] >= 2, f"{path}: {b['placements']} placement(s), want >= 2"
    assert abs(b["ratio"] - b["b_ms"] / b["a_ms"]) < 1e-6 * b["ratio"], f"{path}: ratio is not b_ms / a_ms"
    return b
c, p = one(sys.argv[1]), one(sys.argv[2])
print(f"clean ratio {c['ratio']:.3f} ({c['placements']:.0f} placements), planted {p['ratio']:.3f}")
assert p["ratio"] < 0.75 and p["ratio"] < 0.75 * c["ratio"], "the planted 2x paged side did not show"
print("paired: clean and planted runs differ as planted")
PY
]=] paired ${_kb} ${_kbt}/paired)
  set_tests_properties(kernels.paired_attention_can_fail PROPERTIES LABELS kernels TIMEOUT 120
    PASS_REGULAR_EXPRESSION "paired: clean and planted runs differ as planted")
endif()

# The engine-placement pair (kernels.attention.paged_vs_contiguous.ctx4096.engine_placement):
# the kernels suite writes the engine allocator's block tables and the benchmark times attention
# on them against the contiguous cache. Clean, the tables hold long runs of adjacent blocks; with
# the planted kv-scatter defect (LIFO allocator) they are scattered. The tables are seeded, so the
# run lengths are asserted here on any machine; what the scatter costs in time is a speed figure
# and lives in ci/bench-llama-1b.sh (its planted kv-scatter row): under ctest's parallel load the
# two timings drew level on a CI machine. Bad --cb_paged_tables files are refused with the file
# and the field named.
if(TARGET cb_kernel_bench AND TARGET claimbench)
  add_test(NAME kernels.engine_placement_can_fail
           COMMAND bash -c [=[
set -u
cb="$1"; kb="$2"; out="$3"; rm -rf "$out"; mkdir -p "$out"
f='^paired/attention/cpu/f32/H32_KV4_D64_B16_given_tables_vs_contiguous/'
clean=$("$cb" run --suite kernels --bench-filter "$f" --repetitions 2 --out "$out/runs" 2>>"$out/log" | tail -n 1)
planted=$("$cb" run --suite kernels --bench-filter "$f" --repetitions 2 --out "$out/runs" --plant-defect kv-scatter 2>>"$out/log" | tail -n 1)
[ -f "$clean/kernels.json" ] && [ -f "$planted/kernels.json" ] || { echo "a run wrote no kernels.json"; cat "$out/log"; exit 1; }
python3 - "$clean" "$planted" <<'PY' || exit 1
import json, sys
def fig(d, key="kernels.attention.paged_vs_contiguous.ctx4096.engine_placement"):
    ms = {m["key"]: m for m in json.load(open(d + "/kernels.json"))["metrics"]}
    m = ms.get(key)
    assert m, f"{d}: no {key}: {sorted(ms)}"
    assert m["value"] > 0 and all(x > 0 for x in m["samples"]), f"{d}: {key} is not a measured ratio: {m}"
    return m
c, p = fig(sys.argv[1]), fig(sys.argv[2])
print(f"clean {c['value']:.3f} (runs of {c['params']['mean_run_blocks']:.1f} blocks), "
      f"kv-scatter {p['value']:.3f} (runs of {p['params']['mean_run_blocks']:.1f} blocks): timings recorded, not judged here")
# The tables are seeded: these hold on any machine.
assert c["params"]["mean_run_blocks"] >= 32, "the engine's placement no longer keeps runs"
assert c["params"]["jumps_per_sequence"] <= 8, "the engine's placement jumps too often"
assert p["params"]["mean_run_blocks"] < 2, "kv-scatter did not scatter the tables"
PY
printf '{"block_size": 16, "context": 4096, "pool_blocks": 300, "tables": [[0]]}' > "$out/short.json"
"$kb" --cb_paged_tables="$out/short.json" --benchmark_list_tests > /dev/null 2> "$out/bad.txt" && { echo "short tables: exit 0"; exit 1; }
grep -q "short.json: 1 tables" "$out/bad.txt" || { echo "short tables: no message"; cat "$out/bad.txt"; exit 1; }
"$kb" --cb_paged_tables="$out/none.json" --benchmark_list_tests > /dev/null 2> "$out/bad.txt" && { echo "missing file: exit 0"; exit 1; }
grep -q "cannot open .*none.json" "$out/bad.txt" || { echo "missing file: no message"; cat "$out/bad.txt"; exit 1; }
echo "engine placement: clean and kv-scatter runs differ as planted"
]=] placement $<TARGET_FILE:claimbench> ${_kb} ${_kbt}/placement)
  set_tests_properties(kernels.engine_placement_can_fail PROPERTIES LABELS kernels TIMEOUT 300
    PASS_REGULAR_EXPRESSION "engine placement: clean and kv-scatter runs differ as planted")
endif()

# cb_m16_stream_study skew on a small weight: the backend packs it both ways (64 steps of f32 fill a
# page: skewed to 67), the engine's matmul runs on each; walk runs it both walks, decode both
# one-row tiles, aa one backend twice; bad arguments are named.
if(TARGET cb_m16_stream_study)
  add_test(NAME kernels.m16_stream_study_skew_runs
           COMMAND bash -c [=[
set -u
bin="$1"; err=$(mktemp); trap 'rm -f "$err"' EXIT
out=$("$bin" skew 64 48) || { echo "skew 64 48 failed"; exit 1; }
echo "$out"
grep -q 'panels K apart (f32\[3, 64, 16\]): 16 rows' <<< "$out" || { echo "no unskewed row"; exit 1; }
grep -q 'skewed *(f32\[3, 67, 16\]): 16 rows' <<< "$out" || { echo "no skewed row"; exit 1; }
grep -q '^16 rows: panels K apart / skewed time [0-9.]* (quartiles' <<< "$out" || { echo "no skew ratio"; exit 1; }
# pair MODE N PANELS ROWS_SEEN RATIO_ROW A B: MODE on a K=1100 x N weight times cases A and B
# (each a row of PANELS panels naming ROWS_SEEN) and prints A / B at RATIO_ROW.
pair() {
  out=$("$bin" "$1" 1100 "$2") || { echo "$1 1100 $2 failed"; exit 1; }
  echo "$out"
  for c in "$6" "$7"; do
    grep -q "^$c *(f32\[$3, 1100, 16\]): $4" <<< "$out" || { echo "$1: no $c row"; exit 1; }
  done
  grep -q "^$5: $6 / $7 time [0-9.]* (quartiles" <<< "$out" || { echo "no $1 ratio"; exit 1; }
}
pair walk 48 3 '4 rows .*; 16 rows' '8 rows' slice-major panel-major
pair decode 200 13 '1 row ' '1 row' wide prefetched
pair aa 200 13 '16 rows .*; 1 row ' '16 rows' first second
"$bin" skew 0 48 2> "$err" && { echo "skew 0 48: exit 0"; exit 1; }
grep -q 'K and N must be positive (got K=0 N=48)' "$err" || { echo "skew 0 48: no message"; cat "$err"; exit 1; }
"$bin" nope 2> "$err" && { echo "nope: exit 0"; exit 1; }
grep -q 'usage: cb_m16_stream_study overlap | skew \[K N\] | walk \[K N\] | decode' "$err" || { echo "nope: no usage"; exit 1; }
echo "study: both layouts, both walks and both decode tiles timed, bad arguments named"
]=] study $<TARGET_FILE:cb_m16_stream_study>)
  set_tests_properties(kernels.m16_stream_study_skew_runs PROPERTIES LABELS kernels TIMEOUT 60
    PASS_REGULAR_EXPRESSION "study: both layouts, both walks and both decode tiles timed")
endif()

# cb_attention_study on small shapes: cold and warm figures for each, bad shapes named; the
# scatter mode's table (block placement vs read bandwidth).
if(TARGET cb_attention_study)
  add_test(NAME kernels.attention_study_runs
           COMMAND bash -c [=[
set -u
bin="$1"; err=$(mktemp); trap 'rm -f "$err"' EXIT
out=$("$bin" 2x40 1x100) || { echo "2x40 1x100 failed"; exit 1; }
echo "$out"
grep -Eq '^ *2 x +40 keys: cold +[0-9.]+ us \( *[0-9.]+ GB/s of KV, +[0-9.]+ ns per key and kv head\) +warm +[0-9.]+ us' <<< "$out" || { echo "no 2x40 line"; exit 1; }
grep -Eq '^ *1 x +100 keys: cold' <<< "$out" || { echo "no 1x100 line"; exit 1; }
"$bin" 16y144 2> "$err" && { echo "16y144: exit 0"; exit 1; }
grep -q 'argument 1 "16y144" is not a shape SEQSxCTX' "$err" || { echo "16y144: no message"; cat "$err"; exit 1; }
sc=$("$bin" scatter) || { echo "scatter failed"; exit 1; }
echo "$sc"
if ! grep -q 'SKIP: this CPU has no AVX2' <<< "$sc"; then
  grep -Eq '^ +16 KiB +[0-9.]+ +[0-9.]+ +[0-9.]+$' <<< "$sc" || { echo "scatter: no 16 KiB row"; exit 1; }
  grep -Eq '^\(check [0-9a-f]+\)$' <<< "$sc" || { echo "scatter: no check line"; exit 1; }
fi
echo "attention study: cold and warm timed, bad shapes named"
]=] study $<TARGET_FILE:cb_attention_study>)
  set_tests_properties(kernels.attention_study_runs PROPERTIES LABELS kernels TIMEOUT 60
    PASS_REGULAR_EXPRESSION "attention study: cold and warm timed, bad shapes named")
endif()
