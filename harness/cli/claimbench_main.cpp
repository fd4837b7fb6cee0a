// claimbench: runs suites into results/runs/, checks claim sets, gates on regressions, renders
// reports. See README.md for usage.
#include <cstdio>
#include <chrono>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "cb/harness/core/engine_access.h"
#include "cb/harness/verdicts/claims.h"
#include "cb/harness/verdicts/compare.h"
#include "cb/harness/core/environment.h"
#include "cb/harness/suites/gate.h"
#include "cb/harness/load/null_http_server.h"
#include "cb/harness/suites/suites.h"
#include "cb/harness/core/process.h"
#include "cb/harness/report/report.h"
#ifdef CB_WITH_ENGINE
#include "cb/harness/engine/suites.h"
#endif
#include "cb/harness/suites/run.h"

namespace fs = std::filesystem;
using namespace cb::harness;
using nlohmann::json;

namespace {

int g_exit = 0;

void guarded(const char* cmd, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    std::cerr << "claimbench " << cmd << ": error: " << e.what() << "\n";
    g_exit = 2;
  }
}

fs::path self_exe() { return fs::read_symlink("/proc/self/exe"); }

std::string joined_args(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) s += (i ? " " : "") + std::string(argv[i]);
  return s;
}

fs::path default_claim_set() { return fs::path(CB_SOURCE_DIR) / "suites" / "claims" / "deepseek-article.json"; }

// A claim set as read (and validated) once: `run --check` reads it before the first suite, so a
// broken file fails at once, and an edit during a long run cannot change what is checked.
struct ClaimSetSnapshot {
  fs::path file;
  std::string bytes;
  ClaimSet set;
};

std::string file_bytes(const fs::path& p, bool& ok) {
  std::ifstream in(p, std::ios::binary);
  ok = bool(in);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ClaimSetSnapshot snapshot_claim_set(const fs::path& file) {
  ClaimSetSnapshot s;
  s.file = file;
  s.set = load_claim_set(file);  // clear errors for a missing or invalid file
  bool ok = false;
  s.bytes = file_bytes(file, ok);
  return s;
}

// check: evaluates a claim set against a run folder, prints the table, writes claims.json.
int do_check(const fs::path& run_dir, const ClaimSet& set, const fs::path& claims_file, bool allow_fail) {
  const RunData run = RunData::load(run_dir);
  const auto results = evaluate(set, run);
  std::printf("claim set: %s (%zu claims)\nrun: %s\n", claims_file.filename().c_str(), set.claims.size(), run.label().c_str());
  const json defects = run.manifest.value("params", json::object()).value("planted_defects", json::array());
  if (defects.is_array() && !defects.empty())
    std::printf("PLANTED DEFECTS in this run: %s (a compliance test: the verdicts below are of a deliberately broken engine)\n",
                defects.dump().c_str());
  std::printf("\n");
  print_claims_table(std::cout, results);
  write_json_atomic(run_dir / "claims.json", claims_to_json(results, claims_file.string(), run_dir.string()));
  std::printf("\nwrote %s\n", (run_dir / "claims.json").c_str());
  return check_exit_code(results, allow_fail);
}

int do_check(const fs::path& run_dir, const fs::path& claims_file, bool allow_fail) {
  return do_check(run_dir, load_claim_set(claims_file), claims_file, allow_fail);
}

// `run --check`: checks the snapshot taken before the run and saves it in the run folder; if the
// file changed meanwhile, the verdicts stand for the version read at the start and the command
// ends with an error that says so (exit 2), since the user meant some other claim set.
int check_snapshot(const fs::path& run_dir, const ClaimSetSnapshot& snap, bool allow_fail) {
  write_text_atomic(run_dir / "claim-set.json", snap.bytes);
  const int rc = do_check(run_dir, snap.set, snap.file, allow_fail);
  bool readable = false;
  const std::string now = file_bytes(snap.file, readable);
  if (readable && now == snap.bytes) return rc;
  std::fprintf(stderr,
               "claimbench run: error: the claim set %s %s during the run (%zu bytes when the run started%s); the verdicts "
               "above are for the version read at the start, saved as %s; to check the file as it is now: claimbench "
               "check %s --claims %s\n",
               snap.file.c_str(), readable ? "changed" : "became unreadable", snap.bytes.size(),
               readable ? (", " + std::to_string(now.size()) + " now").c_str() : "", (run_dir / "claim-set.json").c_str(),
               run_dir.c_str(), snap.file.c_str());
  return 2;
}

// Options shared by `compare` and `gate`.
struct CompareArgs {
  std::string threshold, json_out;
  std::vector<std::string> suites, noise, required, metrics;
  double alpha = 0.05;
  bool allow_hw = false;

  void add_to(CLI::App* c, const std::string& default_threshold) {
    threshold = default_threshold;
    c->add_option("--threshold", threshold, "relative change that counts as a regression, e.g. 5% (default " + default_threshold + ")");
    c->add_option("--alpha", alpha, "significance level of the Mann-Whitney U test");
    c->add_option("--suite", suites, "compare only these suites")->delimiter(',');
    c->add_option("--noise", noise, "compare only these noise classes: exact, ratio, timing")->delimiter(',');
    c->add_option("--metric", metrics, "compare only these metric keys (or prefixes ending in *)")->delimiter(',');
    c->add_option("--require", required, "metric keys (or prefixes ending in *) that must be present")->delimiter(',');
    c->add_option("--json", json_out, "also write the result as JSON here");
  }

  CompareOptions options() const {
    CompareOptions o;
    std::string t = threshold;
    const bool pct = !t.empty() && t.back() == '%';
    if (pct) t.pop_back();
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(t, &used);
    } catch (...) {
      used = 0;
    }
    if (t.empty() || used != t.size() || v < 0) throw std::invalid_argument("--threshold '" + threshold + "': expected e.g. 5% or 0.05");
    o.threshold = pct ? v / 100 : v;
    o.alpha = alpha;
    o.suites = suites;
    for (const auto& n : noise) o.noise_classes.push_back(noise_from_string(n, "--noise"));
    o.required = required;
    o.metrics = metrics;
    o.allow_hardware_mismatch = allow_hw;
    return o;
  }
};

}  // namespace

int main(int argc, char** argv) {
#ifdef CB_WITH_ENGINE
  cb::harness::install_engine_adapter();  // `claimbench`; `claimbench-http` measures endpoints only
#endif
  CLI::App app{"claimbench: benchmark and conformance harness for LLM inference claims"};
  app.require_subcommand(1);

  // run
  RunOptions ro;
  std::string model, out;
  bool then_check = false, allow_fail = false;
  std::string check_claims;
  auto* run = app.add_subcommand("run", "run suites and write a run folder under results/runs/");
  run->add_option("--suite", ro.suites, "kernels | engine | accuracy | load | scaling | cost | all (repeatable)")->delimiter(',');
  run->add_flag("--quick", ro.quick, "small variants of every suite (CI, main job)");
  run->add_option("--sut", ro.sut, "system under test: inprocess, null (load generator overhead) or http://HOST:PORT");
  run->add_option("--driver", ro.driver, "load suite driver: native (own generator) or locust")->check(CLI::IsMember({"native", "locust"}));
  run->add_option("--backend", ro.backend,
                  "engine backend for the in-process suites: cpu (default), ref or cuda; engine, accuracy, load and transport run on it "
                  "(or skip with the reason it cannot run here), kernels and scaling measure the cpu backend and skip for another");
  run->add_option("--ppl-text", ro.ppl_text, "accuracy suite: text file whose perplexity to measure (bring your own)")->check(CLI::ExistingFile);
  run->add_option("--qa-jsonl", ro.qa_jsonl, "accuracy suite: JSONL of {\"prompt\", \"answer\"} for exact-match accuracy")->check(CLI::ExistingFile);
  run->add_option("--server-profile", ro.server_profile,
                  "--sut http://: server profile, a name under workloads/servers/ (refengine, vllm, sglang, tgi, llamacpp, openai) or a JSON file; "
                  "default: detected from the server");
  run->add_option("--tokenizer", ro.tokenizer_dir,
                  "--sut http://: checkpoint folder whose tokenizer (tokenizer.json / tokenizer.model) makes text prompts for servers that take no token ids "
                  "(default: --model)")
      ->check(CLI::ExistingDirectory);
  run->add_option("--power-watts", ro.power_watts,
                  "load suite: total power of the system under test in watts, used only where no sensor (nvidia-smi, RAPL) answers; "
                  "reported as supplied, never as a measurement (energy-qps stays NOT MEASURED)")
      ->check(CLI::PositiveNumber);
  run->add_option("--plant-defect", ro.planted_defects,
                  "plant an engine defect (batch-ignores-queue, kv-reserve-max, busy-loop, dense-pruned, answer-cache, slow-sampling, matmul-twice, kv-scatter; repeatable): a compliance test that the "
                  "matching claim flips; named in the manifest");
  run->add_option("--cost-defaults", ro.cost_defaults,
                  "cost suite: cost defaults with the token prices of the run's model (prices.model); default suites/claims/cost-defaults.json")
      ->check(CLI::ExistingFile);
  run->add_option("--model", model, "model directory (default: the embedded default model)");
  run->add_option("--out", out, "folder to create the run folder in (default: results/runs)");
  run->add_option("--seed", ro.seed, "seed for prompts and workloads");
  run->add_option("--timeout-scale", ro.timeout_scale, "multiply every suite's time limit")->check(CLI::PositiveNumber);
  run->add_option("--bench-filter", ro.bench_filter, "kernels suite: regex of benchmarks to run (default: all, or the quick set)");
  run->add_option("--repetitions", ro.repetitions, "kernels suite: repetitions per benchmark (default 5)")->check(CLI::Range(2, 100));
  run->add_flag("--check", then_check, "check the default claim set afterwards and print the table");
  run->add_option("--claims", check_claims, "claim set for --check");
  run->add_flag("--allow-fail", allow_fail, "with --check: exit 0 even when claims FAIL");
  run->callback([&] {
    guarded("run", [&] {
      if (ro.suites.empty()) ro.suites = {"all"};
      ro.model_dir = model;
      ro.out_base = out;
      ro.command_line = joined_args(argc, argv);
      std::optional<ClaimSetSnapshot> claims;
      if (then_check) claims = snapshot_claim_set(check_claims.empty() ? default_claim_set() : fs::path(check_claims));
      const fs::path dir = execute_run(ro, self_exe());
      std::printf("%s\n", dir.c_str());
      if (stop_requested()) {  // Ctrl-C / SIGTERM: what finished is kept; exit as an interrupted command
        std::fprintf(stderr, "claimbench run: interrupted; finished suites are kept in %s\n", dir.c_str());
        g_exit = 130;
        return;
      }
      if (then_check) {
        std::printf("\n");
        g_exit = check_snapshot(dir, *claims, allow_fail);
      }
    });
  });

  // run-suite (internal: the child process of `run`)
  std::string rs_suite, rs_dir, rs_model, rs_sut = "inprocess", rs_driver = "native";
  bool rs_quick = false;
  uint64_t rs_seed = 1;
  auto* rsub = app.add_subcommand("run-suite", "(internal) run one suite into an existing run folder");
  rsub->group("");  // hidden from --help
  rsub->add_option("--suite", rs_suite)->required();
  rsub->add_option("--run-dir", rs_dir)->required();
  rsub->add_option("--model", rs_model);
  rsub->add_option("--sut", rs_sut);
  rsub->add_option("--driver", rs_driver);
  std::string rs_backend = "cpu";
  rsub->add_option("--backend", rs_backend);
  std::string rs_ppl, rs_qa, rs_cost, rs_profile, rs_tokenizer;
  rsub->add_option("--server-profile", rs_profile);
  rsub->add_option("--tokenizer", rs_tokenizer);
  double rs_power = 0;
  rsub->add_option("--power-watts", rs_power);
  rsub->add_option("--cost-defaults", rs_cost);
  rsub->add_option("--ppl-text", rs_ppl);
  rsub->add_option("--qa-jsonl", rs_qa);
  rsub->add_option("--seed", rs_seed);
  rsub->add_flag("--quick", rs_quick);
  std::string rs_filter;
  int rs_reps = 0;
  rsub->add_option("--repetitions", rs_reps);
  rsub->add_option("--bench-filter", rs_filter);
  rsub->callback([&] {
    SuiteContext ctx;
    ctx.run_dir = rs_dir;
    ctx.model_dir = rs_model.empty() ? cb::harness::default_model_dir() : fs::path(rs_model);
    ctx.sut = rs_sut;
    ctx.driver = rs_driver;
    ctx.backend = rs_backend;
    ctx.ppl_text = rs_ppl;
    ctx.qa_jsonl = rs_qa;
    ctx.server_profile = rs_profile;
    ctx.tokenizer_dir = rs_tokenizer;
    ctx.power_watts = rs_power;
    ctx.cost_defaults = rs_cost;
    ctx.quick = rs_quick;
    ctx.seed = rs_seed;
    ctx.bench_filter = rs_filter;
    ctx.repetitions = rs_reps;
    ctx.progress = [](const std::string& m) { std::fprintf(stderr, "%s\n", m.c_str()); };
    g_exit = run_suite_child(rs_suite, ctx);
  });

  // check
  std::string ck_dir, ck_claims;
  bool ck_allow = false;
  auto* check = app.add_subcommand("check", "evaluate a claim set against a run: PASS / FAIL / INCONCLUSIVE / INVALID / SKIP / NOT MEASURED / ERROR");
  check->add_option("RUN_DIR", ck_dir, "run folder")->required();
  check->add_option("--claims", ck_claims, "claim set (default: suites/claims/deepseek-article.json)");
  check->add_flag("--allow-fail", ck_allow, "exit 0 even when claims FAIL (reporting runs)");
  check->callback([&] {
    guarded("check", [&] { g_exit = do_check(ck_dir, ck_claims.empty() ? default_claim_set() : fs::path(ck_claims), ck_allow); });
  });

  // compare
  std::string cmp_base, cmp_new;
  CompareArgs cmp_args;
  auto* cmp = app.add_subcommand("compare", "regression gate: compare a new run against a baseline run");
  cmp->add_option("BASE_RUN", cmp_base)->required();
  cmp->add_option("NEW_RUN", cmp_new)->required();
  cmp_args.add_to(cmp, "5%");
  cmp->add_flag("--allow-hardware-mismatch", cmp_args.allow_hw, "compare runs from different machine classes");
  cmp->callback([&] {
    guarded("compare", [&] {
      const auto r = compare_runs(RunData::load(cmp_base), RunData::load(cmp_new), cmp_args.options());
      print_compare_table(std::cout, r);
      if (!cmp_args.json_out.empty()) write_json_atomic(cmp_args.json_out, to_json(r));
      g_exit = compare_exit_code(r);
    });
  });

  // gate
  std::string gt_run, gt_baselines = (fs::path(CB_SOURCE_DIR) / "results" / "baselines").string(), gt_name = "kernels-gate";
  std::string gt_base, gt_cand = "this-build", gt_out, gt_filter, gt_min_time = "0.05", gt_make = "ci/perf-gate.sh --update";
  std::vector<std::string> gt_base_env, gt_cand_env, gt_env;
  bool gt_ab = false;
  int gt_rounds = 6, gt_reps = 3;
  CompareArgs gt_args;
  auto* gate = app.add_subcommand(
      "gate", "CI performance gate: RUN_DIR against the committed baseline of this machine class (else SKIP, exit 77), "
              "or --ab: two builds interleaved on this machine");
  gate->add_option("RUN_DIR", gt_run, "baseline mode: the new run folder");
  gate->add_option("--baselines", gt_baselines, "baseline mode: folder of <machine-class>/<name>/ baselines");
  gate->add_option("--name", gt_name, "baseline mode: which baseline (folder name)");
  gate->add_option("--make-baseline-hint", gt_make, "baseline mode: the command a SKIP suggests for making a baseline");
  gate->add_flag("--ab", gt_ab, "A/B mode: run --base and --candidate interleaved (ABBA...) here and compare");
  gate->add_option("--base", gt_base, "A/B: git ref, build folder or cb_kernel_bench binary of the base");
  gate->add_option("--candidate", gt_cand, "A/B: as --base; default: this build's cb_kernel_bench");
  gate->add_option("--base-env", gt_base_env, "A/B: NAME=VALUE for the base side only (repeatable)");
  gate->add_option("--candidate-env", gt_cand_env, "A/B: NAME=VALUE for the candidate side only (repeatable)");
  gate->add_option("--env", gt_env, "A/B: NAME=VALUE for both sides (repeatable)");
  gate->add_option("--rounds", gt_rounds, "A/B: rounds (each runs both sides, order alternating)")->check(CLI::Range(2, 100));
  gate->add_option("--repetitions", gt_reps, "A/B: benchmark repetitions per side and round")->check(CLI::Range(1, 100));
  gate->add_option("--bench-filter", gt_filter, "A/B: benchmark regex");
  gate->add_option("--min-time", gt_min_time, "A/B: --benchmark_min_time in seconds");
  gate->add_option("--out", gt_out, "A/B: folder for the A/B run folders (default: build/gate-ab/runs)");
  gt_args.add_to(gate, "30%");
  gate->callback([&] {
    guarded("gate", [&] {
      const CompareOptions o = gt_args.options();
      GateResult g;
      if (gt_ab) {
        if (!gt_run.empty()) throw std::invalid_argument("--ab takes no RUN_DIR (it makes both runs)");
        if (gt_base.empty()) throw std::invalid_argument("--ab needs --base (a git ref, a build folder or a cb_kernel_bench binary)");
        for (const auto* list : {&gt_base_env, &gt_cand_env, &gt_env})
          for (const auto& e : *list)
            if (e.find('=') == std::string::npos || e.front() == '=') throw std::invalid_argument("environment setting '" + e + "': expected NAME=VALUE");
        const fs::path work = fs::path(CB_SOURCE_DIR) / "build" / "gate-ab";
        auto say = [](const std::string& m) { std::fprintf(stderr, "%s\n", m.c_str()); };
        AbOptions ao;
        ao.base = resolve_ab_side(gt_base, CB_SOURCE_DIR, work, say);
        if (gt_cand == "this-build") {
          ao.candidate.label = "this build";
          ao.candidate.bench = kernel_bench_binary();
          if (ao.candidate.bench.empty()) throw std::invalid_argument("--candidate: this build has no cb_kernel_bench (build it, or name a build)");
          ao.candidate.commit = build_info().value("commit", std::string());
        } else {
          ao.candidate = resolve_ab_side(gt_cand, CB_SOURCE_DIR, work, say);
        }
        ao.base.env = gt_base_env;
        ao.candidate.env = gt_cand_env;
        ao.env = gt_env;
        ao.rounds = gt_rounds;
        ao.repetitions = gt_reps;
        ao.filter = gt_filter;
        ao.min_time = gt_min_time;
        ao.out_dir = gt_out.empty() ? work / "runs" : fs::path(gt_out);
        const AbResult ab = run_ab(ao, say);
        g.comparison = compare_runs(RunData::load(ab.base_run), RunData::load(ab.candidate_run), o);
        const bool ok = compare_exit_code(*g.comparison) == 0;
        g.exit_code = ok ? kGatePass : kGateFail;
        g.verdict = ok ? "PASS" : "FAIL";
        g.reason = ok ? "candidate (" + ao.candidate.label + ") within the thresholds of base (" + ao.base.label + "), interleaved here"
                      : "candidate (" + ao.candidate.label + ") regressed against base (" + ao.base.label + ")";
        print_compare_table(std::cout, *g.comparison);
        json j = g.to_json();
        j["mode"] = "ab";
        j["schedule"] = ab.schedule;
        j["base_run"] = ab.base_run.string();
        j["candidate_run"] = ab.candidate_run.string();
        write_json_atomic(ab.dir / "gate.json", j);
        if (!gt_args.json_out.empty()) write_json_atomic(gt_args.json_out, j);
        std::printf("A/B runs: %s\n", ab.dir.c_str());
      } else {
        if (gt_run.empty()) throw std::invalid_argument("gate needs RUN_DIR (baseline mode) or --ab");
        g = gate_against_baselines(gt_baselines, gt_name, RunData::load(gt_run), o, gt_make);
        if (g.comparison) print_compare_table(std::cout, *g.comparison);
        json j = g.to_json();
        j["mode"] = "baseline";
        if (!gt_args.json_out.empty()) write_json_atomic(gt_args.json_out, j);
      }
      std::printf("gate: %s: %s\n", g.verdict.c_str(), g.reason.c_str());
      g_exit = g.exit_code;
    });
  });

  // null-server
  std::string ns_host = "127.0.0.1";
  int ns_port = 0;
  auto* nsc = app.add_subcommand("null-server", "an OpenAI-compatible server with no model behind it (answers at once), for "
                                                "measuring load generators; runs until SIGINT / SIGTERM");
  nsc->add_option("--host", ns_host, "address to bind (default 127.0.0.1: loopback only)");
  nsc->add_option("--port", ns_port, "port (0 = any free port, printed on the listening line)")->check(CLI::Range(0, 65535));
  nsc->callback([&] {
    guarded("null-server", [&] {
      load::NullHttpServer server;
      server.start(ns_host, ns_port);
      install_stop_handlers();
      std::printf("claimbench null-server: listening on %s\n", server.url().c_str());
      std::fflush(stdout);
      while (!stop_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      server.stop();
      std::printf("claimbench null-server: stopped after %lld completions\n", server.completions());
    });
  });

  // hardware
  bool hw_fp = false;
  auto* hwc = app.add_subcommand("hardware", "print this machine's hardware description (JSON) or its fingerprint");
  hwc->add_flag("--fingerprint", hw_fp, "print only the machine-class fingerprint");
  hwc->callback([&] {
    const json hw = hardware_info();
    if (hw_fp) std::printf("%s\n", hw.value("fingerprint", std::string()).c_str());
    else std::printf("%s\n", hw.dump(2).c_str());
  });

  // report
  std::vector<std::string> rp_dirs;
  std::string rp_out;
  auto* rep = app.add_subcommand("report", "render report.md and a self-contained report.html from run folders");
  rep->add_option("RUN_DIR", rp_dirs, "one or more run folders, shown side by side")->required();
  rep->add_option("-o,--out", rp_out, "output folder")->required();
  rep->callback([&] {
    guarded("report", [&] {
      std::vector<ReportInput> inputs;
      for (const auto& d : rp_dirs) inputs.push_back(load_report_input(d));
      write_report(inputs, rp_out);
      std::printf("wrote %s and %s\n", (fs::path(rp_out) / "report.md").c_str(), (fs::path(rp_out) / "report.html").c_str());
    });
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return g_exit;
}
