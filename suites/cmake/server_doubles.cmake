# The load suite against the vendor test doubles (suites/server/doubles/*_double.py; label "load").
# Two modes in one file, as load.cmake:
#  - included by suites/CMakeLists.txt: registers, per double, a run with the profile detected and
#    one with --server-profile NAME, plus one with a wrong profile that must fail loudly;
#  - run as `cmake -DDOUBLE=... -DCLAIMBENCH=... -DOUT=... -DEXPECT_PROFILE=NAME [-DPROFILE=NAME]
#    [-DEXPECT=ok|error] [-DEXPECT_REASON=text] -P server_doubles.cmake`: starts the double (under
#    `timeout`, stopped by a bash trap on every exit path), waits for its "listening on" line, runs
#    `claimbench run --suite load --quick --sut URL [--server-profile NAME]`, then checks load.json:
#    EXPECT=ok: status ok, params.server.profile = EXPECT_PROFILE, the manifest's server section,
#    a metrics timeline with samples in the saturation runs; EXPECT=error: status error and the
#    reason contains EXPECT_REASON.

if(CMAKE_SCRIPT_MODE_FILE)
  foreach(v DOUBLE CLAIMBENCH OUT EXPECT_PROFILE)
    if(NOT ${v})
      message(FATAL_ERROR "server_doubles.cmake: pass -D${v}=...")
    endif()
  endforeach()
  if(NOT EXPECT)
    set(EXPECT ok)
  endif()
  file(REMOVE_RECURSE "${OUT}")
  file(MAKE_DIRECTORY "${OUT}")
  set(script [=[
set -u
double="$1"; cb="$2"; out="$3"; profile="$4"; suites="$5"
start_server "double" "$out/double.log" timeout 560 python3 "$double"
extra=""
[ -n "$profile" ] && extra="--server-profile $profile"
# The accuracy suite's perplexity text: the first 3000 bytes of the README (three windows).
case "$suites" in *accuracy*) head -c 3000 "$6" > "$out/ppl.txt"; extra="$extra --ppl-text $out/ppl.txt";; esac
"$cb" run --suite "$suites" --quick --sut "$url" $extra --out "$out/runs"
rc=$?
[ "$rc" -eq 0 ] || { echo "claimbench run exited $rc; double log tail:"; tail -20 "$out/double.log"; exit "$rc"; }
]=])
  set(script "source \"${CMAKE_CURRENT_LIST_DIR}/start_server.sh\"\n${script}")
  if(NOT SUITES)
    set(SUITES load)
  endif()
  execute_process(COMMAND bash -c "${script}" doubles "${DOUBLE}" "${CLAIMBENCH}" "${OUT}" "${PROFILE}" "${SUITES}" "${PPL_TEXT}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "load suite against ${DOUBLE}: exit ${rc}")
  endif()
  file(GLOB results "${OUT}/runs/*/load.json")
  list(LENGTH results n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "expected one run folder with load.json under ${OUT}/runs, found ${n}")
  endif()
  file(READ "${results}" j)
  string(JSON status GET "${j}" status)
  if(EXPECT STREQUAL "error")
    string(JSON reason ERROR_VARIABLE no_reason GET "${j}" reason)
    if(NOT status STREQUAL "error")
      message(FATAL_ERROR "${results}: a wrong --server-profile must fail the suite loudly; got status ${status}")
    endif()
    string(FIND "${reason}" "${EXPECT_REASON}" at)
    if(at LESS 0)
      message(FATAL_ERROR "${results}: reason does not say '${EXPECT_REASON}': ${reason}")
    endif()
    message(STATUS "wrong profile failed loudly: ${reason}")
    return()
  endif()
  if(NOT status STREQUAL "ok")
    string(JSON reason ERROR_VARIABLE no_reason GET "${j}" reason)
    message(FATAL_ERROR "${results}: status ${status}: ${reason}")
  endif()
  string(JSON got_profile GET "${j}" params server profile)
  string(JSON chosen GET "${j}" params server chosen_by)
  if(NOT got_profile STREQUAL EXPECT_PROFILE)
    message(FATAL_ERROR "${results}: params.server.profile '${got_profile}', expected '${EXPECT_PROFILE}' (${chosen})")
  endif()
  get_filename_component(run_dir "${results}" DIRECTORY)
  file(READ "${run_dir}/manifest.json" mj)
  string(JSON man_profile ERROR_VARIABLE no_server GET "${mj}" server profile)
  if(NOT man_profile STREQUAL EXPECT_PROFILE)
    message(FATAL_ERROR "${run_dir}/manifest.json: server.profile '${man_profile}' (${no_server}), expected '${EXPECT_PROFILE}'")
  endif()
  string(JSON rows ERROR_VARIABLE no_rows LENGTH "${j}" params runs chat.saturation.adaptive.t0 server_metrics rows)
  if(no_rows OR rows LESS 2)
    message(FATAL_ERROR "${results}: no metrics timeline in params.runs.chat.saturation.adaptive.t0.server_metrics (${no_rows})")
  endif()
  string(JSON running GET "${j}" params runs chat.saturation.adaptive.t0 server_metrics rows 1 1)
  if(running STREQUAL "null")
    message(FATAL_ERROR "${results}: the timeline's running column is empty")
  endif()
  # The report draws the sampled series (KV usage, queue depth) for this run.
  execute_process(COMMAND "${CLAIMBENCH}" report "${run_dir}" -o "${OUT}/report" RESULT_VARIABLE rrc OUTPUT_QUIET)
  file(READ "${OUT}/report/report.html" html)
  string(FIND "${html}" "id=\"chart-server-queue-depth\"" at_q)
  if(NOT rrc EQUAL 0 OR at_q LESS 0)
    message(FATAL_ERROR "claimbench report ${run_dir}: exit ${rrc}; no server queue-depth chart in ${OUT}/report/report.html")
  endif()
  string(JSON validity GET "${j}" params validity_summary)
  message(STATUS "${EXPECT_PROFILE} (${chosen}): ${rows} samples in chat.saturation.adaptive.t0; ${validity}")
  if(SUITES MATCHES "accuracy")
    # The accuracy suite over HTTP against the same double: exact match measured (per-example
    # samples); perplexity measured where the profile says the server gives prompt
    # log-probabilities, else SKIP with the profile's reason.
    file(READ "${run_dir}/accuracy.json" aj)
    string(JSON astatus GET "${aj}" status)
    if(NOT astatus STREQUAL "ok")
      string(JSON areason ERROR_VARIABLE none GET "${aj}" reason)
      message(FATAL_ERROR "${run_dir}/accuracy.json: status ${astatus}: ${areason}")
    endif()
    string(JSON aprofile GET "${aj}" params server profile)
    if(NOT aprofile STREQUAL EXPECT_PROFILE)
      message(FATAL_ERROR "${run_dir}/accuracy.json: params.server.profile '${aprofile}', expected '${EXPECT_PROFILE}'")
    endif()
    string(JSON nm LENGTH "${aj}" metrics)
    set(keys "")
    math(EXPR last "${nm} - 1")
    foreach(i RANGE 0 ${last})
      string(JSON k GET "${aj}" metrics ${i} key)
      string(JSON ns LENGTH "${aj}" metrics ${i} samples)
      list(APPEND keys "${k}:${ns}")
    endforeach()
    if(NOT keys MATCHES "accuracy.http.exact_match:[1-9]")
      message(FATAL_ERROR "${run_dir}/accuracy.json: no accuracy.http.exact_match with samples (${keys})")
    endif()
    file(READ "${CMAKE_CURRENT_LIST_DIR}/../../workloads/servers/${EXPECT_PROFILE}.json" pj)
    string(JSON can GET "${pj}" prompt_logprobs)
    if(can)
      if(NOT keys MATCHES "accuracy.http.perplexity:[1-9]")
        message(FATAL_ERROR "${run_dir}/accuracy.json: the ${EXPECT_PROFILE} profile gives prompt log-probabilities, but no perplexity (${keys})")
      endif()
    else()
      string(JSON why ERROR_VARIABLE no_why GET "${aj}" params not_measured accuracy.http.perplexity)
      if(no_why OR NOT why MATCHES "SKIP")
        message(FATAL_ERROR "${run_dir}/accuracy.json: perplexity must be SKIP with the profile's reason (${why}${no_why})")
      endif()
    endif()
    message(STATUS "accuracy over HTTP against the ${EXPECT_PROFILE} double: ${keys}")
  endif()
  return()
endif()

if(TARGET claimbench-http)
  set(_dd ${PROJECT_SOURCE_DIR}/suites/server/doubles)
  foreach(_v vllm sglang tgi llamacpp)
    foreach(_mode detected forced)
      set(_p "")
      set(_s load)
      if(_mode STREQUAL "forced")  # the forced runs also run the accuracy suite over HTTP
        set(_p ${_v})
        set(_s load,accuracy)
      endif()
      add_test(NAME load.double.${_v}.${_mode}
               COMMAND ${CMAKE_COMMAND} -DDOUBLE=${_dd}/${_v}_double.py -DCLAIMBENCH=$<TARGET_FILE:claimbench-http>
                       -DOUT=${PROJECT_BINARY_DIR}/load-tests/double-${_v}-${_mode} -DEXPECT_PROFILE=${_v} -DPROFILE=${_p}
                       -DSUITES=${_s} -DPPL_TEXT=${PROJECT_SOURCE_DIR}/README.md -P ${CMAKE_CURRENT_LIST_FILE})
      # Not serial: these check what the suite reports about the server (profile, metrics timeline,
      # report chart, accuracy over HTTP), none of it a timing, so two may share the cores.
      set_tests_properties(load.double.${_v}.${_mode} PROPERTIES LABELS load TIMEOUT 600)
    endforeach()
  endforeach()
  # The vLLM profile sends token ids, which TGI's OpenAI route rejects: the suite must error with
  # TGI's message, not pass with a table of failed requests.
  add_test(NAME load.double.wrong_profile_fails_loudly
           COMMAND ${CMAKE_COMMAND} -DDOUBLE=${_dd}/tgi_double.py -DCLAIMBENCH=$<TARGET_FILE:claimbench-http>
                   -DOUT=${PROJECT_BINARY_DIR}/load-tests/double-wrong-profile -DEXPECT_PROFILE=vllm -DPROFILE=vllm -DEXPECT=error
                   "-DEXPECT_REASON=does not fit the server" -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(load.double.wrong_profile_fails_loudly PROPERTIES LABELS load RUN_SERIAL TRUE TIMEOUT 300)
endif()
