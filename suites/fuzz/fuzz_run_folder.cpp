// Fuzzes run folders as `claimbench compare`, `check` and `report` read them: the input is split
// at its first NUL byte into manifest.json and one suite file (<suite>.json), written into a
// folder, then RunData::load(). Contract: a folder that does not load is a SchemaError naming the
// file; a folder that loads must go through what the commands do with it (its label, a compare
// against itself, the shipped claim set's verdicts) without any other exception.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "cb/harness/core/results.h"
#include "cb/harness/verdicts/claims.h"
#include "cb/harness/verdicts/compare.h"
#include "fuzz_input_file.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cb::harness::ClaimSet claims =
      cb::harness::load_claim_set(fs::path(CB_SOURCE_DIR) / "suites" / "claims" / "deepseek-article.json");
  const std::string in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const fs::path dir = fuzz_scratch_dir() / "run";  // one per process, rewritten each run
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "manifest.json", std::ios::binary) << in.substr(0, nul);
  if (nul != std::string::npos) std::ofstream(dir / "suite.json", std::ios::binary) << in.substr(nul + 1);

  cb::harness::RunData run;
  try {
    run = cb::harness::RunData::load(dir);
  } catch (const cb::harness::SchemaError&) {
    return 0;
  }
  (void)run.label();
  (void)cb::harness::compare_runs(run, run);
  (void)cb::harness::evaluate(claims, run);
  return 0;
}
