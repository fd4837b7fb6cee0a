#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>

#include "cb/harness/core/engine_access.h"
#include "cb/harness/load/server_profile.h"
#include "cb/harness/verdicts/cost_model.h"
#include "cb/harness/suites/accuracy_http.h"
#include "cb/harness/suites/suites.h"

namespace cb::harness {
namespace fs = std::filesystem;

SuiteResult run_cost_suite(const SuiteContext& ctx) {
  const fs::path defaults =
      ctx.cost_defaults.empty() ? fs::path(CB_SOURCE_DIR) / "suites" / "claims" / "cost-defaults.json" : ctx.cost_defaults;
  const CostDefaults d = load_cost_defaults(defaults);
  // The cost model prices what the other suites measured in this run (when they exist).
  std::optional<RunData> measured;
  try {
    measured = RunData::load(ctx.run_dir);
  } catch (const std::exception&) {
  }
  SuiteResult r = cost_suite(measured ? &*measured : nullptr, d);
  r.params["defaults_file"] = defaults.string();
  return r;
}

std::string engine_suite_skip_reason(const SuiteContext& ctx) {
  if (ctx.sut.rfind("http://", 0) != 0) return "";
  std::string profile;
  try {
    profile = !ctx.server_profile.empty() ? load::find_server_profile(ctx.server_profile).name
                                          : load::detect_server_profile(ctx.sut, load::builtin_server_profiles()).first.name;
  } catch (const std::exception& e) {
    return "measures the reference engine on this machine's CPU, and --sut " + ctx.sut + " could not be identified (" + e.what() + ")";
  }
  const bool loopback = load::is_loopback_url(ctx.sut);
  if (profile == "refengine" && loopback) return "";
  return "measures the reference engine on this machine's CPU; --sut " + ctx.sut + " is " +
         (profile == "refengine" ? std::string("refengine serve on another host") : "a " + profile + " server (profile " + profile + ")") +
         ", so these figures would describe this machine, not the server under test";
}

namespace {

// A suite that did not run here, with why; params name the SUT and backend it was asked for.
SuiteResult skipped(const std::string& name, const SuiteContext& ctx, const std::string& why) {
  SuiteResult r;
  r.suite = name;
  r.status = SuiteStatus::Skipped;
  r.reason = why;
  r.params["sut"] = ctx.sut;
  r.params["backend"] = ctx.backend;
  return r;
}

// The engine-side suites skip (status skipped, with the reason) against an external server.
SuiteInfo skip_against_external_servers(SuiteInfo info) {
  auto run = info.run;
  const std::string name = info.name;
  info.run = [run, name](const SuiteContext& ctx) {
    const std::string why = engine_suite_skip_reason(ctx);
    if (why.empty()) return run(ctx);
    return skipped(name, ctx, why);
  };
  return info;
}

// --backend: the suites that open the model in this process run on it, or skip with the reason it
// cannot run here (no GPU, a build without CUDA); the ones that measure the cpu backend itself
// (cb_kernel_bench's kernels and CPU peaks, MPI tensor parallelism) skip for any other backend.
SuiteInfo on_engine_backend(SuiteInfo info) {
  auto run = info.run;
  const std::string name = info.name;
  info.run = [run, name](const SuiteContext& ctx) {
    const bool in_process = ctx.sut == "inprocess";
    if (ctx.backend == "cpu" || !in_process) return run(ctx);
    const EngineAccess* a = engine_access();
    if (!a) return skipped(name, ctx, "--backend " + ctx.backend + ": " + no_engine_reason());
    if (const std::string why = a->backend_unavailable(ctx.backend); !why.empty())
      return skipped(name, ctx, "--backend " + ctx.backend + " cannot run here: " + why);
    return run(ctx);
  };
  return info;
}

SuiteInfo cpu_backend_only(SuiteInfo info, std::string what) {
  auto run = info.run;
  const std::string name = info.name;
  info.run = [run, name, what](const SuiteContext& ctx) {
    if (ctx.backend == "cpu") return run(ctx);
    return skipped(name, ctx, "measures " + what + "; --backend " + ctx.backend + " is not measured by this suite");
  };
  return info;
}

// The kernels suite measures the backend it is given: cpu through cb_kernel_bench, cuda through
// cb_cuda_bench (which says SKIP with its reason where no GPU is usable); ref is the plain-loop
// oracle, measured only beside cpu.
SuiteInfo kernels_by_backend(SuiteInfo info) {
  auto run = info.run;
  info.run = [run](const SuiteContext& ctx) {
    if (ctx.backend == "cpu") return run(ctx);
    if (ctx.backend == "cuda") return run_kernels_suite_cuda(ctx);
    return skipped("kernels", ctx, "measures the cpu backend (cb_kernel_bench, ref beside it as the oracle) or the cuda backend "
                                   "(cb_cuda_bench); --backend " + ctx.backend + " has no microbenchmark of its own");
  };
  return info;
}

// ---- Test hook: self-test suites --------------------------------------------------------------
// With CB_TEST_SUITES=1 in the environment, `claimbench run` (and its `run-suite` children,
// which inherit the environment) also knows four suites that exercise the run orchestration
// itself; suites/unit/test_run_orchestration.cpp uses them. Without that variable they do not
// exist (unknown suite, not listed anywhere), and they are never part of "all" (test_only).

bool test_suites_enabled() {
  const char* v = std::getenv("CB_TEST_SUITES");
  return v && std::strcmp(v, "1") == 0;
}

// One exact metric, selftest_ok.value = 42, and one table.
SuiteResult selftest_ok(const SuiteContext&) {
  std::printf("selftest-ok: producing selftest_ok.value\n");
  std::fflush(stdout);
  SuiteResult r;
  r.suite = "selftest-ok";
  r.add(Metric{.key = "selftest_ok.value",
                .value = 42,
                .unit = "x",
                .direction = Direction::HigherIsBetter,
                .noise = NoiseClass::Exact,
                .samples = {42, 42},
                .params = {{"planted", true}},
                .note = "self-test suite (CB_TEST_SUITES=1)"});
  r.tables["rows"] = nlohmann::json::array({{{"name", "a"}, {"value", 1}}, {{"name", "b, \"quoted\""}, {"value", 2.5}}});
  return r;
}

// Prints a line, then aborts: the parent must record error with the signal.
SuiteResult selftest_crash(const SuiteContext&) {
  std::printf("selftest-crash: about to abort\n");
  std::fflush(stdout);
  const rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);  // a planted crash should not leave a core file behind
  std::abort();
}

// Sleeps far past its 3 s time limit: the parent must record timeout and kill it.
SuiteResult selftest_hang(const SuiteContext&) {
  std::printf("selftest-hang: pid %d sleeping past the time limit\n", int(::getpid()));
  std::fflush(stdout);
  for (int i = 0; i < 600; ++i) std::this_thread::sleep_for(std::chrono::seconds(1));
  return not_built_suite("selftest-hang", "should have been killed after 3 s");
}

// Throws: the child records error with the exception's message.
SuiteResult selftest_throw(const SuiteContext&) {
  std::printf("selftest-throw: throwing\n");
  std::fflush(stdout);
  throw std::runtime_error("planted failure");
}

// An engine-side suite: the adapter's, when this binary links the engine; otherwise an entry that
// reports "not built" with the reason (so `all` and the claim check still name it).
SuiteInfo engine_side(const std::string& name, const std::string& description, int quick_s, int full_s) {
  const EngineAccess* a = engine_access();
  if (a && a->suites.count(name)) return {name, description, quick_s, full_s, a->suites.at(name)};
  return {name, description, quick_s, full_s, [name](const SuiteContext&) { return not_built_suite(name, no_engine_reason()); }};
}

// accuracy: against an http:// SUT, exact match and perplexity through /v1/completions (no engine
// code: both binaries run it); otherwise the engine-side suite (or "not built" in claimbench-http).
SuiteInfo accuracy_entry() {
  SuiteInfo s = engine_side("accuracy",
                            "task accuracy and perplexity per technique (dense, INT8, 2:4, structured); with --sut http://: "
                            "exact match (--qa-jsonl) and perplexity (--ppl-text) of the endpoint",
                            600, 3600);
  s.run = [engine = s.run](const SuiteContext& ctx) {
    if (ctx.sut.rfind("http://", 0) == 0 || ctx.sut.rfind("https://", 0) == 0) return run_accuracy_http_suite(ctx);
    return engine(ctx);
  };
  return s;
}

std::vector<SuiteInfo> make_suites() {
  std::vector<SuiteInfo> suites = {
      kernels_by_backend(skip_against_external_servers({"kernels",
                                                        "op microbenchmarks with machine peaks and roofline fractions; engine "
                                                        "prefill/decode speed (--backend cuda: cb_cuda_bench with the GPU's peaks)",
                                                        900, 3600, run_kernels_suite})),
      on_engine_backend(skip_against_external_servers(
          engine_side("engine", "serving engine offline: batching policies, paged vs contiguous KV, batch policy, 16K context", 600, 3600))),
      on_engine_backend(accuracy_entry()),
      on_engine_backend({"load", "end-to-end load workloads with SLO metrics", 600, 3600, run_load_suite}),
      cpu_backend_only(skip_against_external_servers(engine_side("scaling", "collective sweeps and tensor-parallel scaling", 600, 3600)),
                       "collectives and tensor parallelism over MPI on CPU ranks (NCCL tensor parallelism needs >= 2 GPUs "
                       "and is not wired into this suite)"),
      on_engine_backend({"transport", "the HTTP path's own cost: generator vs wrk on a null server, HTTP vs in-process round trip and saturation",
                         600, 1800, run_transport_suite}),
      // Last, so it can price what the suites before it measured.
      {"cost", "cost model: the article's arithmetic and the margin of the measured run", 60, 60, run_cost_suite},
  };
  if (test_suites_enabled()) {
    const std::vector<SuiteInfo> tests = {
        {"selftest-ok", "test hook: one exact metric selftest_ok.value = 42 and one table", 30, 30, selftest_ok, true},
        {"selftest-crash", "test hook: prints a line, then std::abort()", 30, 30, selftest_crash, true},
        {"selftest-hang", "test hook: sleeps far past its 3 s time limit", 3, 3, selftest_hang, true},
        {"selftest-throw", "test hook: throws std::runtime_error(\"planted failure\")", 30, 30, selftest_throw, true},
    };
    suites.insert(suites.end(), tests.begin(), tests.end());
  }
  return suites;
}

}  // namespace

const std::vector<SuiteInfo>& all_suites() {
  static const std::vector<SuiteInfo> suites = make_suites();
  return suites;
}

const SuiteInfo* find_suite(const std::string& name) {
  for (const auto& s : all_suites())
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace cb::harness
