# Collectives and tensor parallelism across processes (label "mpi"), plus the checks that need
# no launcher (label "cli"). Two modes in one file:
#  - included by suites/CMakeLists.txt: registers the tests;
#  - run as `cmake -DCLAIMBENCH=... -DOUT=... -P mpi.cmake`: the scaling suite end to end
#    (claimbench run --suite scaling --quick; scaling.json must hold a correct MPI all-reduce sweep,
#    the TP efficiency, the labelled 8-device projection, and a reason for the unmeasured 8-GPU key).
#
# How ranks run here: processes on this one host, more ranks than cores (a 2-core CI machine runs
# 4), one OpenMP thread each, over shared memory. Open MPI reads its settings from the environment
# (so the command line stays the same for other MPIs): OMPI_MCA_pml=ob1 and OMPI_MCA_btl=self,vader
# (shared-memory transports: containers often have no usable network for UCX / TCP), oversubscribe
# allowed, and root allowed (CI containers run as root).

if(CMAKE_SCRIPT_MODE_FILE)
  cmake_policy(SET CMP0057 NEW)  # if(... IN_LIST ...)
  foreach(v CLAIMBENCH OUT)
    if(NOT ${v})
      message(FATAL_ERROR "mpi.cmake: pass -D${v}=...")
    endif()
  endforeach()
  file(REMOVE_RECURSE "${OUT}")
  file(MAKE_DIRECTORY "${OUT}")
  execute_process(COMMAND "${CLAIMBENCH}" run --suite scaling --quick --out "${OUT}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "claimbench run --suite scaling --quick: exit ${rc}")
  endif()
  file(GLOB results "${OUT}/*/scaling.json")
  list(LENGTH results n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "expected one run folder with scaling.json under ${OUT}, found ${n}")
  endif()
  file(READ "${results}" j)
  string(JSON status GET "${j}" status)
  if(NOT status STREQUAL "ok")
    string(JSON reason ERROR_VARIABLE none GET "${j}" reason)
    message(FATAL_ERROR "scaling suite status ${status}: ${reason}")
  endif()
  # Metrics by key.
  string(JSON nm LENGTH "${j}" metrics)
  set(keys "")
  math(EXPR last "${nm} - 1")
  foreach(i RANGE ${last})
    string(JSON k GET "${j}" metrics ${i} key)
    string(JSON v GET "${j}" metrics ${i} value)
    list(APPEND keys "${k}")
    set(val_${k} "${v}")
  endforeach()
  foreach(k scaling.allreduce.mpi.2rank.wrong scaling.tp.efficiency scaling.tp.decode.efficiency
            scaling.tp.prefill.efficiency scaling.allreduce.projection.8dev.time_ms scaling.allreduce.mpi.2rank.fit.alpha_us)
    if(NOT k IN_LIST keys)
      message(FATAL_ERROR "scaling.json lacks metric ${k} (has: ${keys})")
    endif()
  endforeach()
  if(NOT val_scaling.allreduce.mpi.2rank.wrong EQUAL 0)
    message(FATAL_ERROR "the MPI all-reduce sweep counted ${val_scaling.allreduce.mpi.2rank.wrong} wrong elements")
  endif()
  if("scaling.allreduce.8dev.time_ms" IN_LIST keys)
    message(FATAL_ERROR "scaling.allreduce.8dev.time_ms must only be measured on 8 GPUs, never projected")
  endif()
  string(JSON why ERROR_VARIABLE no_why GET "${j}" params not_measured scaling.allreduce.8dev.time_ms)
  if(no_why)
    message(FATAL_ERROR "params.not_measured lacks the reason for scaling.allreduce.8dev.time_ms")
  endif()
  message(STATUS "scaling suite: tp efficiency ${val_scaling.tp.efficiency}; 8-device projection "
                 "${val_scaling.allreduce.projection.8dev.time_ms} ms; 8dev not measured: ${why}")
  return()
endif()

set(_cb_mpi_env OMP_NUM_THREADS=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader OMPI_MCA_rmaps_base_oversubscribe=1
                OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)

if(TARGET cb_comm_bench)
  # NCCL: runs the 1-GPU sweep where a GPU is, else says SKIP with the reason (exit 77).
  add_test(NAME comm.nccl_runs_or_skips_with_reason COMMAND $<TARGET_FILE:cb_comm_bench> --backend nccl -e 1M --target-ms 2)
  set_tests_properties(comm.nccl_runs_or_skips_with_reason PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "SKIP: nccl: (no usable CUDA device|no CUDA device|this build has no NCCL)|#wrong total 0: OK")
  add_test(NAME comm.threads_sweep_correct COMMAND $<TARGET_FILE:cb_comm_bench> --backend threads --ranks 3
           --ops all_reduce,all_gather,broadcast -e 256K -f 8 --target-ms 2)
  set_tests_properties(comm.threads_sweep_correct PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "#wrong total 0: OK")
endif()

add_test(NAME ci.gpu_check_script_parses COMMAND bash -n ${PROJECT_SOURCE_DIR}/ci/gpu-check.sh)
set_tests_properties(ci.gpu_check_script_parses PROPERTIES LABELS cli)

if(TARGET refengine)
  # Tensor parallelism without a launcher: ranks as threads.
  add_test(NAME tp.generate_threads_2_matches_1
           COMMAND $<TARGET_FILE:refengine> generate --prompt "Hello, world" --max-tokens 8 --ignore-eos --tp 2 --verify-tp)
  set_tests_properties(tp.generate_threads_2_matches_1 PROPERTIES LABELS cli ENVIRONMENT OMP_NUM_THREADS=1
    PASS_REGULAR_EXPRESSION "tp 2 over threads.*tp check: tokens identical [^\n]*: PASS")
  # NCCL takes one process per GPU: without mpirun it says how to launch.
  add_test(NAME tp.generate_nccl_needs_mpirun
           COMMAND $<TARGET_FILE:refengine> generate --prompt hi --tp 2 --tp-comm nccl)
  set_tests_properties(tp.generate_nccl_needs_mpirun PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "--tp 2 but this process was not started by mpirun: launch with mpirun -n 2 refengine generate [^\n]*\\(NCCL: one process per GPU\\)")
endif()

if(MPI_CXX_FOUND AND MPIEXEC_EXECUTABLE AND TARGET refengine AND TARGET cb_comm_bench)
  foreach(np 2 4)
    add_test(NAME mpi.comm_sweep_np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} $<TARGET_FILE:cb_comm_bench> --backend mpi
                     --ops all_reduce,all_gather,broadcast -e 1M -f 8 --target-ms 2)
    set_tests_properties(mpi.comm_sweep_np${np} PROPERTIES LABELS mpi ENVIRONMENT "${_cb_mpi_env}" TIMEOUT 120
      PASS_REGULAR_EXPRESSION "mpi \\(.*, ${np} ranks\\).*#wrong total 0: OK")
  endforeach()
  # `mpirun -n N refengine generate --tp N` gives the greedy tokens of one rank, logits within
  # 1e-4 abs + 1e-4 rel (--verify-tp: rank 0 reruns without tensor parallelism and compares).
  foreach(np 1 2 4)
    add_test(NAME mpi.generate_tp${np}_matches_tp1
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} $<TARGET_FILE:refengine> generate
                     --prompt "Hello, world" --max-tokens 8 --ignore-eos --tp ${np} --verify-tp)
    set_tests_properties(mpi.generate_tp${np}_matches_tp1 PROPERTIES LABELS mpi ENVIRONMENT "${_cb_mpi_env}" TIMEOUT 120
      PASS_REGULAR_EXPRESSION "tp check: tokens identical [^\n]*: PASS")
  endforeach()
  set_tests_properties(mpi.generate_tp2_matches_tp1 mpi.generate_tp4_matches_tp1 PROPERTIES
    PASS_REGULAR_EXPRESSION "tp [24] over mpi [^\n]*\n.*tp check: tokens identical [^\n]*: PASS")
  add_test(NAME mpi.generate_tp_rank_count_mismatch
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:refengine> generate --prompt hi --tp 4)
  set_tests_properties(mpi.generate_tp_rank_count_mismatch PROPERTIES LABELS mpi ENVIRONMENT "${_cb_mpi_env}" TIMEOUT 60
    PASS_REGULAR_EXPRESSION "--tp 4 but mpirun started 2 rank\\(s\\): launch with mpirun -n 4")
  # Under mpirun, --tp-comm nccl stops with the reason: NCCL cannot run here (no GPU, or a build
  # without it), or it could but the cpu backend keeps activations in host memory. auto with
  # --backend cuda picks nccl (its reason shows it). Tokens over NCCL: ci/gpu-check.sh, >= 2 GPUs.
  add_test(NAME mpi.generate_tp_nccl_says_why
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:refengine> generate --prompt hi --tp 2
                   --tp-comm nccl)
  add_test(NAME mpi.generate_tp_auto_on_cuda_takes_nccl
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:refengine> generate --prompt hi --tp 2
                   --backend cuda)
  set_tests_properties(mpi.generate_tp_nccl_says_why mpi.generate_tp_auto_on_cuda_takes_nccl PROPERTIES LABELS mpi
    ENVIRONMENT "${_cb_mpi_env}" TIMEOUT 120
    PASS_REGULAR_EXPRESSION "nccl'?: [^\n]*(CUDA|NCCL|GPU)|reduces GPU buffers but backend 'cpu' keeps tensors in host memory")
  if(TARGET claimbench)
    # The server and the load suite on a TP engine: answers equal to one rank, load suite over HTTP.
    add_test(NAME mpi.serve_tp2_matches_tp1_and_carries_load
             COMMAND bash ${PROJECT_SOURCE_DIR}/suites/server/serve_tp_load.sh $<TARGET_FILE:refengine>
                     $<TARGET_FILE:claimbench> ${MPIEXEC_EXECUTABLE} ${PROJECT_BINARY_DIR}/serve-tp)
    set_tests_properties(mpi.serve_tp2_matches_tp1_and_carries_load PROPERTIES LABELS mpi RUN_SERIAL TRUE TIMEOUT 300
      ENVIRONMENT "${_cb_mpi_env}" PASS_REGULAR_EXPRESSION "PASS: tensor-parallel server")
    add_test(NAME mpi.scaling_suite_quick_e2e
             COMMAND ${CMAKE_COMMAND} -DCLAIMBENCH=$<TARGET_FILE:claimbench> -DOUT=${PROJECT_BINARY_DIR}/scaling-e2e
                     -P ${CMAKE_CURRENT_LIST_FILE})
    # Serial: it measures throughput and bandwidth, so it must not share the cores with other tests.
    set_tests_properties(mpi.scaling_suite_quick_e2e PROPERTIES LABELS mpi RUN_SERIAL TRUE TIMEOUT 600
      ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
  endif()
endif()
