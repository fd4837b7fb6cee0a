# The load suite end to end (label "load"). Two modes in one file:
#  - included by suites/CMakeLists.txt: registers the tests;
#  - run as `cmake -DMODE=inprocess|http -DCLAIMBENCH=... [-DREFENGINE=...] -DOUT=... -P load.cmake`:
#    the check itself. MODE=http starts `refengine serve --port 0` (under `timeout`, so it cannot
#    outlive the test even if the test is killed), waits for its "listening on http://..." line,
#    runs `claimbench run --suite load --quick --sut URL`, and stops the server on every exit path
#    (bash trap). Then load.json must have status ok and the metric load.throughput.requests_per_s
#    (the cost suite reads it) with a positive value.

if(CMAKE_SCRIPT_MODE_FILE)
  foreach(v MODE CLAIMBENCH OUT)
    if(NOT ${v})
      message(FATAL_ERROR "load.cmake: pass -D${v}=...")
    endif()
  endforeach()
  file(REMOVE_RECURSE "${OUT}")
  file(MAKE_DIRECTORY "${OUT}")
  if(MODE STREQUAL "http")
    if(NOT REFENGINE)
      message(FATAL_ERROR "load.cmake: MODE=http needs -DREFENGINE=...")
    endif()
    set(script [=[
set -u
re="$1"; cb="$2"; out="$3"
start_server "refengine serve" "$out/serve.log" timeout 560 "$re" serve --port 0
"$cb" run --suite load --quick --sut "$url" --out "$out/runs"
rc=$?
[ "$rc" -eq 0 ] || { echo "claimbench run exited $rc; server log tail:"; tail -20 "$out/serve.log"; exit "$rc"; }
]=])
    set(script "source \"${CMAKE_CURRENT_LIST_DIR}/start_server.sh\"\n${script}")
    execute_process(COMMAND bash -c "${script}" load-http "${REFENGINE}" "${CLAIMBENCH}" "${OUT}" RESULT_VARIABLE rc)
  else()
    execute_process(COMMAND "${CLAIMBENCH}" run --suite load --quick --out "${OUT}/runs" RESULT_VARIABLE rc)
  endif()
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "load suite (${MODE}): exit ${rc}")
  endif()
  file(GLOB results "${OUT}/runs/*/load.json")
  list(LENGTH results n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "expected one run folder with load.json under ${OUT}/runs, found ${n}")
  endif()
  file(READ "${results}" j)
  string(JSON status GET "${j}" status)
  if(NOT status STREQUAL "ok")
    string(JSON reason ERROR_VARIABLE no_reason GET "${j}" reason)
    message(FATAL_ERROR "${results}: status ${status}: ${reason}")
  endif()
  string(JSON count LENGTH "${j}" metrics)
  set(rps "")
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    string(JSON key GET "${j}" metrics ${i} key)
    if(key STREQUAL "load.throughput.requests_per_s")
      string(JSON rps GET "${j}" metrics ${i} value)
    endif()
  endforeach()
  if(rps STREQUAL "" OR NOT rps GREATER 0)
    message(FATAL_ERROR "${results}: load.throughput.requests_per_s missing or not positive ('${rps}')")
  endif()
  string(JSON validity GET "${j}" params validity_summary)
  message(STATUS "load (${MODE}): load.throughput.requests_per_s = ${rps}; ${validity}")
  return()
endif()

if(TARGET claimbench)
  add_test(NAME load.inprocess_quick_suite
           COMMAND ${CMAKE_COMMAND} -DMODE=inprocess -DCLAIMBENCH=$<TARGET_FILE:claimbench>
                   -DOUT=${PROJECT_BINARY_DIR}/load-tests/inprocess -P ${CMAKE_CURRENT_LIST_FILE})
  # Not serial: it measures throughput and latency, but checks only that the suite completes with
  # its metric (no verdict), and its 100 s alone on one core lengthened CI by as much.
  set_tests_properties(load.inprocess_quick_suite PROPERTIES LABELS load TIMEOUT 600)
endif()
# Through claimbench-http, the harness built without the engine library: what a vendor builds to
# measure their own endpoint.
if(TARGET claimbench-http AND TARGET refengine)
  add_test(NAME load.http_quick_suite_against_refengine_serve
           COMMAND ${CMAKE_COMMAND} -DMODE=http -DCLAIMBENCH=$<TARGET_FILE:claimbench-http> -DREFENGINE=$<TARGET_FILE:refengine>
                   -DOUT=${PROJECT_BINARY_DIR}/load-tests/http -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(load.http_quick_suite_against_refengine_serve PROPERTIES LABELS load TIMEOUT 600)  # as above
endif()
