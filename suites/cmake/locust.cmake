# The load suite's Locust driver, run for real (label "load"; needs /usr/bin/locust, Debian's
# python3-locust). Two modes in one file:
#  - included by suites/CMakeLists.txt: registers the tests;
#  - run as `cmake -DCLAIMBENCH=... -DOUT=... -P locust.cmake`: the end-to-end check itself
#    (claimbench run --suite load --quick --driver locust, then load.json must hold
#    load.locust.requests_per_s > 0 with status ok).

if(CMAKE_SCRIPT_MODE_FILE)
  foreach(v CLAIMBENCH OUT)
    if(NOT ${v})
      message(FATAL_ERROR "locust.cmake: pass -D${v}=...")
    endif()
  endforeach()
  file(REMOVE_RECURSE "${OUT}")
  file(MAKE_DIRECTORY "${OUT}")
  execute_process(COMMAND "${CLAIMBENCH}" run --suite load --quick --driver locust --out "${OUT}"
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "claimbench run --suite load --quick --driver locust: exit ${rc}")
  endif()
  file(GLOB results "${OUT}/*/load.json")
  list(LENGTH results n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "expected one run folder with load.json under ${OUT}, found ${n}")
  endif()
  file(READ "${results}" j)
  string(JSON status GET "${j}" status)
  string(JSON reason ERROR_VARIABLE no_reason GET "${j}" reason)
  if(status STREQUAL "skipped")
    message(FATAL_ERROR "locust-e2e SKIP: ${reason}")  # e.g. Locust not installed: CTest reports a skip
  endif()
  if(NOT status STREQUAL "ok")
    message(FATAL_ERROR "${results}: status ${status}: ${reason}")
  endif()
  string(JSON count LENGTH "${j}" metrics)
  set(rps "")
  if(count GREATER 0)
    math(EXPR last "${count} - 1")
    foreach(i RANGE ${last})
      string(JSON key GET "${j}" metrics ${i} key)
      if(key STREQUAL "load.locust.requests_per_s")
        string(JSON rps GET "${j}" metrics ${i} value)
      endif()
    endforeach()
  endif()
  if(rps STREQUAL "")
    message(FATAL_ERROR "${results}: no metric load.locust.requests_per_s")
  endif()
  if(NOT rps GREATER 0)
    message(FATAL_ERROR "${results}: load.locust.requests_per_s = ${rps}, expected > 0")
  endif()
  message(STATUS "load.locust.requests_per_s = ${rps} (${results})")
  return()
endif()

# The quick driver against a stub OpenAI endpoint started by the test (about 15 s). It is a
# DISABLED_ test in cb_unit_tests, so the unit label (and the ASan run) skips it; here it runs.
if(TARGET cb_unit_tests)
  add_test(NAME load.locust_quick_suite_stub_endpoint
           COMMAND cb_unit_tests --gtest_filter=LocustLoad.DISABLED_QuickSuiteAgainstExternalEndpoint
                   --gtest_also_run_disabled_tests)
  set_tests_properties(load.locust_quick_suite_stub_endpoint PROPERTIES LABELS "load;locust" TIMEOUT 120
                       SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
endif()

# End to end: refengine serve + Locust through `claimbench run`.
if(TARGET claimbench AND TARGET refengine)
  add_test(NAME load.locust_claimbench_quick
           COMMAND ${CMAKE_COMMAND} -DCLAIMBENCH=$<TARGET_FILE:claimbench> -DOUT=${PROJECT_BINARY_DIR}/locust-e2e
                   -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(load.locust_claimbench_quick PROPERTIES LABELS "load;locust" TIMEOUT 600
                       SKIP_REGULAR_EXPRESSION "locust-e2e SKIP:")
endif()
