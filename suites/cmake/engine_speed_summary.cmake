# ci/engine_speed_summary.py (the table of ci/bench-llama-1b.sh) on synthetic run folders: a gated
# figure's verdict comes from the 95% interval of its repetitions, as a claim's does (label "unit").
add_test(NAME speed.engine_speed_summary_verdicts
         COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/speed/test_engine_speed_summary.py ${PROJECT_SOURCE_DIR}/ci/engine_speed_summary.py)
set_tests_properties(speed.engine_speed_summary_verdicts PROPERTIES LABELS unit TIMEOUT 60)
