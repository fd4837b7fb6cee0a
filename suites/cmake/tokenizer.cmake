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
  # The NFC normalizer (Qwen2's tokenizer.json) against Python's unicodedata.
  add_test(NAME tokenizer.bpe_nfc_normalizer_matches_python_unicodedata
           COMMAND ${_py} ${CMAKE_CURRENT_SOURCE_DIR}/tokenizers/nfc_conformance.py $<TARGET_FILE:cb_tok> ${_tokdata}/bpe_llama3.json
                   ${_tokdata}/corpus.txt)
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

# End to end: `refengine init --tokenizer` puts a real tokenizer into a seeded model, and
# `generate --prompt` encodes with it ("Привет мир" is 12 tokens with BOS under both test
# tokenizers, 20 under the byte tokenizer).
if(TARGET refengine)
  set(_tokcli ${PROJECT_BINARY_DIR}/cli-tests/tokenizer)
  set(_prompt "Привет мир")
  set(_kinds bpe)
  set(_bpe_file ${_tokdata}/bpe_llama3.json)
  set(_bpe_init "tokenizer: .*bpe_llama3.json \\(bpe, 560 tokens, bos 556, eos 557\\) -> .*tokenizer.json")
  if(CB_HAVE_SENTENCEPIECE)
    list(APPEND _kinds sp)
    set(_sp_file ${_tokdata}/sp.model)
    set(_sp_init "tokenizer: .*sp.model \\(sentencepiece, 640 tokens, bos 1, eos 2\\) -> .*tokenizer.model")
  endif()
  foreach(k ${_kinds})
    add_test(NAME cli.init_with_${k}_tokenizer
             COMMAND $<TARGET_FILE:refengine> init --preset tiny --seed 3 --out ${_tokcli}/${k} --force --tokenizer ${_${k}_file})
    set_tests_properties(cli.init_with_${k}_tokenizer PROPERTIES LABELS "cli;tokenizer" FIXTURES_SETUP tok_model_${k}
                         PASS_REGULAR_EXPRESSION "${_${k}_init}")
    add_test(NAME cli.generate_with_${k}_tokenizer
             COMMAND $<TARGET_FILE:refengine> generate --model ${_tokcli}/${k} --prompt "${_prompt}" --max-tokens 4)
    set_tests_properties(cli.generate_with_${k}_tokenizer PROPERTIES LABELS "cli;tokenizer" FIXTURES_REQUIRED tok_model_${k}
                         PASS_REGULAR_EXPRESSION "Привет мир.*prompt 12 tokens, generated 4")
  endforeach()
  add_test(NAME cli.init_tokenizer_missing_file
           COMMAND $<TARGET_FILE:refengine> init --preset tiny --seed 3 --out ${_tokcli}/none --tokenizer ${_tokcli}/nope.json)
  set_tests_properties(cli.init_tokenizer_missing_file PROPERTIES LABELS "cli;tokenizer" PASS_REGULAR_EXPRESSION "nope.json")
endif()
