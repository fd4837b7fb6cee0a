# The OpenAI-compatible server as a user runs it (`refengine serve`): listening line, curl
# completion + stream, SIGTERM drain with a stream in flight, exit 0. Needs curl.
find_program(CB_CURL curl)
if(TARGET refengine AND CB_CURL)
  add_test(NAME cli.serve_smoke_curl_sigterm_drain
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/server/serve_smoke.sh $<TARGET_FILE:refengine>
                   ${PROJECT_BINARY_DIR}/serve-smoke)
  set_tests_properties(cli.serve_smoke_curl_sigterm_drain PROPERTIES LABELS cli TIMEOUT 120
                       PASS_REGULAR_EXPRESSION "PASS: completion, stream")
elseif(TARGET refengine)
  message(STATUS "claimbench: curl not found, cli.serve_smoke_curl_sigterm_drain not registered")
endif()

# A placement the engine does not have is refused before anything starts, naming the option.
if(TARGET refengine)
  add_test(NAME cli.serve_unknown_kv_placement COMMAND $<TARGET_FILE:refengine> serve --kv-placement bogus)
  set_tests_properties(cli.serve_unknown_kv_placement PROPERTIES LABELS cli TIMEOUT 30
                       PASS_REGULAR_EXPRESSION "--kv-placement: bogus not in")
endif()
