// The engine adapter: the suites that need the reference engine in this process, and the call
// that installs EngineAccess (cb/harness/core/engine_access.h) so the rest of the harness reaches
// the engine through it. Only binaries that link cb_harness_engine see this header.
#pragma once

#include "cb/harness/core/suite.h"

namespace cb::harness {

SuiteResult run_engine_suite(const SuiteContext& ctx);    // serving engine offline (batching, KV, policies)
SuiteResult run_accuracy_suite(const SuiteContext& ctx);  // accuracy per technique
SuiteResult run_scaling_suite(const SuiteContext& ctx);   // collectives and tensor-parallel scaling

// Installs the in-process engine (model facts, in-process SUTs, the engine bench, planted-defect
// names, the suites above). Call once, early in main(), before any suite is looked up.
void install_engine_adapter();

}  // namespace cb::harness
