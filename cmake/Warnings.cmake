add_library(cb_warnings INTERFACE)
target_compile_options(cb_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
