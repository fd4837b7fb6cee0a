# The ThreadSanitizer subset (the tsan preset; ci/tsan.sh runs it): the unit tests of the concurrent
# parts, built into their own binary so a TSan build need not compile all of cb_unit_tests, and
# labelled "tsan". Only in a CB_SANITIZE_THREAD build; the default build runs the same files in
# cb_unit_tests.
if(NOT CB_SANITIZE_THREAD)
  return()
endif()

set(_cb_tsan_files
  test_engine_loop.cpp       # engine loop: submit/abort/drain from many threads, destructor
  test_serving_engine.cpp    # the serving engine the loop drives
  test_server.cpp            # HTTP server: completions, streaming
  test_server_errors.cpp     # server: 4xx under concurrency, full queue -> 429
  test_server_lifecycle.cpp  # server: drain with streams in flight, client hang-up mid-stream
  test_load_http.cpp         # HTTP SUT against a stub server
  test_load_runner.cpp       # load runner: open/closed loop, drain deadline, SLO search
  test_comm.cpp              # thread-group collectives
  test_tp.cpp)               # tensor parallel forward over the thread group
list(TRANSFORM _cb_tsan_files PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/unit/)
add_executable(cb_tsan_tests ${_cb_tsan_files})
target_link_libraries(cb_tsan_tests PRIVATE cb_engine cb_harness_load GTest::gtest GTest::gtest_main cb_warnings)
target_include_directories(cb_tsan_tests PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(cb_tsan_tests PRIVATE CB_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                                                 CB_BINARY_DIR="${PROJECT_BINARY_DIR}" CB_EXPECT_CUDA_BUILT=0)
gtest_discover_tests(cb_tsan_tests PROPERTIES LABELS tsan DISCOVERY_TIMEOUT 120)

# SIGTERM drain of `refengine serve` with a stream in flight, in the TSan build of refengine.
find_program(CB_CURL curl)
if(TARGET refengine AND CB_CURL)
  add_test(NAME tsan.serve_sigterm_drain
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/server/serve_smoke.sh $<TARGET_FILE:refengine>
                   ${PROJECT_BINARY_DIR}/tsan-serve-smoke)
  set_tests_properties(tsan.serve_sigterm_drain PROPERTIES LABELS tsan TIMEOUT 300
                       PASS_REGULAR_EXPRESSION "PASS: completion, stream")
endif()
