# `refengine quantize` and `refengine prune` as a user meets them: each writes a model the engine
# loads back (generate runs on it), prints its sizes / FLOPs, and names bad input.
if(TARGET refengine)
  set(_re $<TARGET_FILE:refengine>)
  set(_cd ${PROJECT_BINARY_DIR}/cli-tests/compress)

  add_test(NAME cli.quantize_default_model COMMAND ${_re} quantize --out ${_cd}/w8a8 --overwrite)
  set_tests_properties(cli.quantize_default_model PROPERTIES LABELS cli FIXTURES_SETUP compress_w8a8
    PASS_REGULAR_EXPRESSION "size ratio vs FP32 \\(file bytes\\): [0-9.]+x.*logits vs source \\(cpu backend")
  add_test(NAME cli.generate_quantized COMMAND ${_re} generate --model ${_cd}/w8a8 --prompt "Hi" --max-tokens 4)
  set_tests_properties(cli.generate_quantized PROPERTIES LABELS cli FIXTURES_REQUIRED compress_w8a8
    PASS_REGULAR_EXPRESSION "decode: [0-9.]+ tokens/s")

  # Exact counts need a fixed model: the seeded random tiny preset (the trained default model may be retrained).
  add_test(NAME cli.compress_tiny_source COMMAND ${_re} init --preset tiny --seed 1 --out ${_cd}/tiny --force)
  set_tests_properties(cli.compress_tiny_source PROPERTIES LABELS cli FIXTURES_SETUP compress_tiny)

  # "[;]": a bare ';' would split the regex into a CMake list of alternatives.
  add_test(NAME cli.prune_24_compressed COMMAND ${_re} prune --model ${_cd}/tiny --method 2:4 --scores wanda
                                                --format compressed --out ${_cd}/p24 --overwrite)
  set_tests_properties(cli.prune_24_compressed PROPERTIES LABELS cli FIXTURES_SETUP compress_p24 FIXTURES_REQUIRED compress_tiny
    PASS_REGULAR_EXPRESSION "exactly 2 of every 4 kept[;] 46080 of 125632 parameters are now zero")
  add_test(NAME cli.generate_pruned_24 COMMAND ${_re} generate --model ${_cd}/p24 --backend ref --prompt "Hi" --max-tokens 4)
  set_tests_properties(cli.generate_pruned_24 PROPERTIES LABELS cli FIXTURES_REQUIRED compress_p24
    PASS_REGULAR_EXPRESSION "decode: [0-9.]+ tokens/s")

  add_test(NAME cli.prune_structured COMMAND ${_re} prune --model ${_cd}/tiny --method structured --target-flop-reduction 0.6
                                             --out ${_cd}/st --overwrite)
  set_tests_properties(cli.prune_structured PROPERTIES LABELS cli FIXTURES_SETUP compress_st FIXTURES_REQUIRED compress_tiny
    PASS_REGULAR_EXPRESSION "incl. attention at context 128: 283008 -> 112000 \\(reduction 0.6043")
  add_test(NAME cli.generate_pruned_structured COMMAND ${_re} generate --model ${_cd}/st --prompt "Hi" --max-tokens 4)
  set_tests_properties(cli.generate_pruned_structured PROPERTIES LABELS cli FIXTURES_REQUIRED compress_st
    PASS_REGULAR_EXPRESSION "decode: [0-9.]+ tokens/s")

  # Bad input is named.
  add_test(NAME cli.quantize_missing_model COMMAND ${_re} quantize --model ${_cd}/nope --out ${_cd}/x)
  set_tests_properties(cli.quantize_missing_model PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "refengine quantize: error: .*nope: model directory does not exist")
  add_test(NAME cli.quantize_unknown_scheme COMMAND ${_re} quantize --scheme w4a16 --out ${_cd}/x)
  set_tests_properties(cli.quantize_unknown_scheme PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "refengine quantize: error: --scheme 'w4a16' is unknown \\(expected w8a8 or w8a16\\)")
  add_test(NAME cli.prune_target_out_of_range COMMAND ${_re} prune --method structured --target-flop-reduction 1.5 --out ${_cd}/x)
  set_tests_properties(cli.prune_target_out_of_range PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "refengine prune: error: --target-flop-reduction 1.5 is outside \\(0, 1\\)")
  add_test(NAME cli.prune_unknown_method COMMAND ${_re} prune --method 1:2 --out ${_cd}/x)
  set_tests_properties(cli.prune_unknown_method PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "refengine prune: error: --method '1:2' is unknown \\(expected 2:4 or structured\\)")
  add_test(NAME cli.prune_unknown_scores COMMAND ${_re} prune --method 2:4 --scores random --out ${_cd}/x)
  set_tests_properties(cli.prune_unknown_scores PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "refengine prune: error: --scores 'random' is unknown")
  add_test(NAME cli.prune_format_with_structured COMMAND ${_re} prune --method structured --format compressed --out ${_cd}/x)
  set_tests_properties(cli.prune_format_with_structured PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "refengine prune: error: --format applies to --method 2:4")
  add_test(NAME cli.prune_target_with_24 COMMAND ${_re} prune --method 2:4 --target-flop-reduction 0.5 --out ${_cd}/x)
  set_tests_properties(cli.prune_target_with_24 PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "refengine prune: error: --target-flop-reduction applies to --method structured")
endif()
