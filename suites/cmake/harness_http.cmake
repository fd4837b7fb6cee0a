# claimbench-http: the harness built without the engine library (label "cli"; the load suite
# against an endpoint through it is load.http_quick_suite_against_refengine_serve in load.cmake).
#  - no symbol of namespace cb::engine is in the binary (the linker enforced the layers), except
#    the tokenizer library (cb_tokenizer: cb::engine::tok, ByteTokenizer), which depends on nothing of
#    the engine and turns token-id prompts into text for servers that take text only;
#  - the engine-side suites run as "not built" with the reason, the manifest says engine_linked
#    false, and --sut inprocess is refused with a message that says what to use instead.
if(TARGET claimbench-http)
  add_test(NAME cli.http_build_links_no_engine
           COMMAND bash -c "n=$(nm -C \"$0\" | grep 'cb::engine::' | grep -c -v -E 'cb::engine::(tok::|ByteTokenizer|parse_token_ids)'); echo \"cb::engine symbols: $n\"; [ \"$n\" -eq 0 ]"
                   $<TARGET_FILE:claimbench-http>)
  set_tests_properties(cli.http_build_links_no_engine PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "cb::engine symbols: 0")

  set(_out ${PROJECT_BINARY_DIR}/http-build-tests)
  add_test(NAME cli.http_build_engine_suites_not_built
           COMMAND bash -c [=[
set -eu
cb="$1"; out="$2"; rm -rf "$out"; mkdir -p "$out"
d=$("$cb" run --suite engine,accuracy,scaling --quick --out "$out" 2>"$out/run.log" | grep -m1 '^/')
for s in engine accuracy scaling; do
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['status']=='not_built', j['status']; assert 'does not link the reference engine' in j['reason'], j['reason']" "$d/$s.json"
done
python3 -c "import json,sys; m=json.load(open(sys.argv[1])); assert m['build']['engine_linked'] is False" "$d/manifest.json"
if "$cb" run --suite load --quick --sut inprocess --out "$out" 2>"$out/inprocess.log"; then echo "--sut inprocess was accepted"; exit 1; fi
grep -q "does not link the reference engine" "$out/inprocess.log" || { cat "$out/inprocess.log"; exit 1; }
echo "claimbench-http: engine suites not built, --sut inprocess refused"
]=] http-build $<TARGET_FILE:claimbench-http> ${_out})
  set_tests_properties(cli.http_build_engine_suites_not_built PROPERTIES LABELS cli TIMEOUT 120
                       PASS_REGULAR_EXPRESSION "claimbench-http: engine suites not built, --sut inprocess refused")
endif()
