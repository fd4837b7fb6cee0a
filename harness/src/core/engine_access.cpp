#include "cb/harness/core/engine_access.h"

#include <optional>

namespace cb::harness {
namespace fs = std::filesystem;

namespace {
std::optional<EngineAccess>& installed() {
  static std::optional<EngineAccess> access;
  return access;
}
}  // namespace

void install_engine_access(EngineAccess access) { installed() = std::move(access); }

const EngineAccess* engine_access() { return installed() ? &*installed() : nullptr; }

std::string no_engine_reason() {
  return "this claimbench build does not link the reference engine (claimbench-http measures endpoints only: "
         "--sut http://HOST:PORT or null); the full `claimbench` target runs it in-process";
}

SuiteResult not_built_suite(const std::string& name, const std::string& reason) {
  SuiteResult r;
  r.suite = name;
  r.status = SuiteStatus::NotBuilt;
  r.reason = reason;
  return r;
}

fs::path default_model_dir() { return fs::path(CB_SOURCE_DIR) / "reference" / "models" / "default"; }

}  // namespace cb::harness
