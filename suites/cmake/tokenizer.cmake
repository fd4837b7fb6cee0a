# Tokenizer conformance against independent implementations (suites/tokenizers/conformance.py):
# our SentencePiece path vs Debian's spm_encode/spm_decode and the Python binding, our byte-level
# BPE vs the test tree's own Python reference encoder. A missing external tool is a SKIP (exit 77)
# with the reason printed, never a pass.
add_executable(cb_tok ${CMAKE_CURRENT_SOURCE_DIR}/tokenizers/cb_tok.cpp)
target_link_libraries(cb_tok PRIVATE cb_tokenizer cb_warnings)

set(_tokdata ${CMAKE_CURRENT_SOURCE_DIR}/unit/data/tokenizers)
set(_conf ${CMAKE_CURRENT_SOURCE_DIR}/tokenizers/conformance.py)
find_program(CB_SYSTEM_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_package(Python3 COMPONENTS Interpreter QUIET)
set(_py ${Python3_EXECUTABLE})
if(NOT _py)
  set(_py ${CB_SYSTEM_PYTHON3})
endif()

if(_py)
  foreach(j gpt2 llama3)
    add_test(NAME tokenizer.bpe_${j}_matches_python_reference
             COMMAND ${_py} ${_conf} bpe $<TARGET_FILE:cb_tok> ${_tokdata}/bpe_${j}.json ${_tokdata}/corpus.txt)
  endforeach()
  if(CB_HAVE_SENTENCEPIECE)
    add_test(NAME tokenizer.sentencepiece_matches_spm_encode_decode
             COMMAND ${_py} ${_conf} spm-cli $<TARGET_FILE:cb_tok> ${_tokdata}/sp.model ${_tokdata}/corpus.txt)
    # The Debian binding lives in the system interpreter (python3-sentencepiece).
    set(_sys_py ${CB_SYSTEM_PYTHON3})
    if(NOT _sys_py)
      set(_sys_py ${_py})
    endif()
    add_test(NAME tokenizer.sentencepiece_matches_python_binding
             COMMAND ${_sys_py} ${_conf} spm-python $<TARGET_FILE:cb_tok> ${_tokdata}/sp.model ${_tokdata}/corpus.txt)
  endif()
  get_property(_tok_tests DIRECTORY PROPERTY TESTS)
  list(FILTER _tok_tests INCLUDE REGEX "^tokenizer\\.")
  set_tests_properties(${_tok_tests} PROPERTIES LABELS "unit;tokenizer" SKIP_RETURN_CODE 77 TIMEOUT 120)
endif()
