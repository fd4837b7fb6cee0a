# The metric-key contract (docs/contracts.md, "Metric key rule" and "Key index"), checked on what
# the suites of this build actually wrote: every run folder the other tests leave in the build
# tree whose manifest is newer than this claimbench binary. Runs after those tests (DEPENDS).
if(TARGET claimbench)
  # The scaling suite's run folder exists only where mpi.cmake registers its end-to-end test.
  set(_cb_contract_suites engine,accuracy,load)
  if(MPI_CXX_FOUND AND MPIEXEC_EXECUTABLE AND TARGET refengine AND TARGET cb_comm_bench)
    string(APPEND _cb_contract_suites ",scaling")
  endif()
  add_test(NAME contracts.suite_keys_listed
           COMMAND bash -c [=[
set -eu
build="$1"; cb="$2"; src="$3"; need="$4"
mapfile -t runs < <(find "$build" -name manifest.json -newer "$cb" -printf '%h\n' | sort -u)
[ "${#runs[@]}" -gt 0 ] || { echo "no run folder made by this build under $build (run the suites' tests first)"; exit 1; }
python3 "$src/ci/check_metric_contract.py" --contract "$src/docs/contracts.md" --require-suites "$need" "${runs[@]}"
]=] contracts ${PROJECT_BINARY_DIR} $<TARGET_FILE:claimbench> ${PROJECT_SOURCE_DIR} ${_cb_contract_suites})
  set_tests_properties(contracts.suite_keys_listed PROPERTIES LABELS contracts TIMEOUT 120
    DEPENDS "load.inprocess_quick_suite;load.http_quick_suite_against_refengine_serve;defects.planted_defect_flips_its_claim;mpi.scaling_suite_quick_e2e;gate.planted_slowdown_fails_both_modes_other_class_skips;load.locust_claimbench_quick;cli.http_build_engine_suites_not_built;accuracy.http_quick_suite_against_refengine_serve;load.double.vllm.forced;load.double.sglang.forced;load.double.tgi.forced;load.double.llamacpp.forced")
endif()

# The checker itself can fail: a planted unlisted key, a key not led by its suite's name, and a
# segment with a hyphen are each reported; a listed key passes.
add_test(NAME contracts.checker_flags_planted_keys
         COMMAND bash -c [=[
set -u
src="$1"; out="$2"; rm -rf "$out"; mkdir -p "$out/bad" "$out/good"
cat > "$out/bad/engine.json" <<'J'
{"suite": "engine", "metrics": [{"key": "engine.util.busy_fraction"}, {"key": "engine.made_up.thing"},
 {"key": "kv.paged_vs_contiguous.reduction"}, {"key": "engine.batching.queue-table.mfu"}], "params": {}}
J
cat > "$out/good/engine.json" <<'J'
{"suite": "engine", "metrics": [{"key": "engine.util.busy_fraction"}, {"key": "engine.batching.queue_table.mfu"}],
 "params": {"not_measured": {"engine.ctx16k.ok": "quick mode"}}}
J
python3 "$src/ci/check_metric_contract.py" --contract "$src/docs/contracts.md" "$out/bad" > "$out/bad.txt"; rc=$?
cat "$out/bad.txt"
[ "$rc" -eq 1 ] || { echo "bad keys: exit $rc, want 1"; exit 1; }
for want in "'engine.made_up.thing' is not in the key index" "'kv.paged_vs_contiguous.reduction' does not start with the suite's name" "segment 'queue-table'"; do
  grep -q "$want" "$out/bad.txt" || { echo "missing: $want"; exit 1; }
done
python3 "$src/ci/check_metric_contract.py" --contract "$src/docs/contracts.md" "$out/good" || { echo "listed keys were rejected"; exit 1; }
echo "checker: planted keys flagged, listed keys pass"
]=] checker ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/contract-checker)
set_tests_properties(contracts.checker_flags_planted_keys PROPERTIES LABELS contracts
  PASS_REGULAR_EXPRESSION "checker: planted keys flagged, listed keys pass")
