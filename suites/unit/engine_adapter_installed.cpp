// The unit tests call suites in-process the way `claimbench` runs them: with the engine adapter
// installed (claimbench_main.cpp does the same first thing in main()).
#include "cb/harness/engine/suites.h"

namespace {
const bool kEngineAdapterInstalled = (cb::harness::install_engine_adapter(), true);
}  // namespace
