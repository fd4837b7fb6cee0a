# The accuracy suite against an endpoint, end to end (label "accuracy"), through claimbench-http
# (no engine library). Two modes in one file, as load.cmake:
#  - included by suites/CMakeLists.txt: registers the test;
#  - run as `cmake -DCLAIMBENCH=... -DREFENGINE=... -DOUT=... -DSRC=... -P accuracy_http.cmake`:
#    starts `refengine serve --port 0` (under `timeout`; stopped on every exit path by a bash trap),
#    runs `claimbench-http run --suite accuracy --quick --sut URL --qa-jsonl F --ppl-text T` twice,
#    checks that accuracy.json has accuracy.http.exact_match (one 0/1 sample per QA line) and
#    accuracy.http.perplexity (one sample per window, a finite value > 1), and that
#    `claimbench-http compare` of the two runs passes (paired, identical answers) while a copy of
#    the second run with 30 right answers turned wrong is flagged as a regression (exit 1).
# The cross-check of the endpoint's perplexity against the in-process --ppl-text computation
# (byo_perplexity) is the gtest AccuracyHttpServer.MatchesTheInProcessMeasurementsOfTheSameModel:
# the in-process accuracy suite measures every model variant first (many minutes), too long here.

if(CMAKE_SCRIPT_MODE_FILE)
  foreach(v CLAIMBENCH REFENGINE OUT SRC)
    if(NOT ${v})
      message(FATAL_ERROR "accuracy_http.cmake: pass -D${v}=...")
    endif()
  endforeach()
  file(REMOVE_RECURSE "${OUT}")
  file(MAKE_DIRECTORY "${OUT}")
  set(script [=[
set -u
re="$1"; cb="$2"; out="$3"; src="$4"
qa="$src/workloads/accuracy/default-qa.jsonl"
# A few windows of text: the README of the workloads (committed, ASCII), cut to 3000 bytes.
head -c 3000 "$src/README.md" > "$out/ppl.txt"
start_server "refengine serve" "$out/serve.log" timeout 560 "$re" serve --port 0
for r in a b; do
  "$cb" run --suite accuracy --quick --sut "$url" --qa-jsonl "$qa" --ppl-text "$out/ppl.txt" --out "$out/runs-$r" ||
    { echo "claimbench run ($r) failed; server log tail:"; tail -20 "$out/serve.log"; exit 1; }
done
a=$(ls -d "$out"/runs-a/*/ | head -1); b=$(ls -d "$out"/runs-b/*/ | head -1)
python3 - "$a/accuracy.json" "$qa" <<'PY' || exit 1
import json, math, sys
j = json.load(open(sys.argv[1]))
assert j["status"] == "ok", f"status {j['status']}: {j.get('reason')}"
m = {x["key"]: x for x in j["metrics"]}
lines = sum(1 for l in open(sys.argv[2]) if l.strip())
em, pp = m.get("accuracy.http.exact_match"), m.get("accuracy.http.perplexity")
assert em and pp, f"metrics {sorted(m)}; not_measured {j['params'].get('not_measured')}"
assert len(em["samples"]) == lines and set(em["samples"]) <= {0, 1}, "one 0/1 sample per QA line"
assert abs(em["value"] - sum(em["samples"]) / lines) < 1e-12
assert em["params"]["prompt_tokens"] > 0 and em["params"]["pair_key"]
assert len(pp["samples"]) == pp["params"]["windows"] >= 2 and math.isfinite(pp["value"]) and pp["value"] > 1
print(f"exact match {em['value']:.3f} over {lines} lines; perplexity {pp['value']:.4f} over {pp['params']['windows']} windows")
PY
"$cb" compare "$a" "$b" > "$out/compare-same.txt"; rc=$?
cat "$out/compare-same.txt"
[ "$rc" -eq 0 ] || { echo "compare of two identical runs exited $rc"; exit 1; }
grep -q "paired over" "$out/compare-same.txt" || { echo "compare did not pair the samples"; exit 1; }
# A worse deployment: 30 right answers turned wrong.
cp -r "$b" "$out/worse"
python3 - "$out/worse/accuracy.json" <<'PY' || exit 1
import json, sys
p = sys.argv[1]; j = json.load(open(p))
m = next(x for x in j["metrics"] if x["key"] == "accuracy.http.exact_match")
flipped = 0
for i, v in enumerate(m["samples"]):
    if v == 1 and flipped < 30:
        m["samples"][i] = 0; flipped += 1
assert flipped == 30, f"only {flipped} right answers to flip"
m["value"] = sum(m["samples"]) / len(m["samples"])
json.dump(j, open(p, "w"))
PY
"$cb" compare "$a" "$out/worse" > "$out/compare-worse.txt"; rc=$?
cat "$out/compare-worse.txt"
[ "$rc" -eq 1 ] || { echo "compare against a worse run exited $rc, expected 1 (regression)"; exit 1; }
grep -q "accuracy.http.exact_match: regression" "$out/compare-worse.txt" || { echo "no regression line for exact_match"; exit 1; }
echo "accuracy over http: ok"
]=])
  set(script "source \"${CMAKE_CURRENT_LIST_DIR}/start_server.sh\"\n${script}")
  execute_process(COMMAND bash -c "${script}" accuracy-http "${REFENGINE}" "${CLAIMBENCH}" "${OUT}" "${SRC}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "accuracy over http: exit ${rc}")
  endif()
  return()
endif()

if(TARGET claimbench-http AND TARGET refengine)
  add_test(NAME accuracy.http_quick_suite_against_refengine_serve
           COMMAND ${CMAKE_COMMAND} -DCLAIMBENCH=$<TARGET_FILE:claimbench-http> -DREFENGINE=$<TARGET_FILE:refengine>
                   -DOUT=${PROJECT_BINARY_DIR}/accuracy-tests/http -DSRC=${PROJECT_SOURCE_DIR} -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(accuracy.http_quick_suite_against_refengine_serve PROPERTIES LABELS accuracy TIMEOUT 600)
endif()
