# `refengine train` as a user meets it: a few steps on the tiny preset write a loadable model and
# print the held-out accuracy table; bad input is named.
if(TARGET refengine)
  set(_re $<TARGET_FILE:refengine>)
  set(_tr ${PROJECT_BINARY_DIR}/cli-tests/train)
  add_test(NAME cli.train_tiny_writes_a_model
           COMMAND ${_re} train --preset tiny --steps 3 --seed 1 --batch 4 --threads 1 --eval-examples 2
                   --tasks copy,add --out ${_tr}/tiny --force)
  set_tests_properties(cli.train_tiny_writes_a_model PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "held-out exact-match accuracy.*copy.*add.*wrote")
  add_test(NAME cli.train_then_generate COMMAND ${_re} generate --model ${_tr}/tiny --prompt "copy:abc|" --max-tokens 4)
  set_tests_properties(cli.train_then_generate PROPERTIES LABELS cli DEPENDS cli.train_tiny_writes_a_model
    PASS_REGULAR_EXPRESSION "decode: [0-9.]+ tokens/s")
  add_test(NAME cli.train_unknown_task COMMAND ${_re} train --steps 1 --seed 1 --tasks copy,sort --out ${_tr}/bad)
  set_tests_properties(cli.train_unknown_task PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "refengine train: error: unknown task 'sort' \\(known: recall, copy, reverse, add, brackets\\)")
  add_test(NAME cli.train_unknown_preset COMMAND ${_re} train --preset llama-70b --steps 1 --seed 1 --out ${_tr}/bad3)
  set_tests_properties(cli.train_unknown_preset PROPERTIES LABELS cli
    PASS_REGULAR_EXPRESSION "unknown model preset 'llama-70b' \\(known: default, tiny")
  add_test(NAME cli.train_missing_init_model COMMAND ${_re} train --steps 1 --seed 1 --init-from ${_tr}/nope --out ${_tr}/bad2)
  set_tests_properties(cli.train_missing_init_model PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "nope/config.json")
endif()
