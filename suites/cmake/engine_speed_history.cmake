# ci/engine_speed_history.py (verdict counts and flips of the engine speed figures across published
# runs, one table per hardware fingerprint) on synthetic run folders (label "unit").
add_test(NAME speed.engine_speed_history
         COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/speed/test_engine_speed_history.py ${PROJECT_SOURCE_DIR}/ci/engine_speed_history.py)
set_tests_properties(speed.engine_speed_history PROPERTIES LABELS unit TIMEOUT 60)
