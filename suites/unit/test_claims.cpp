// Claim sets: the shipped DeepSeek-article set, schema errors, and every verdict kind.
#include <cmath>
#include <set>
#include <sstream>
#include <unistd.h>

#include <gtest/gtest.h>

#include "cb/harness/verdicts/claims.h"
#include "test_support.h"

using namespace cb::harness;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
fs::path claims_dir(const std::string& tag) { return cb::test::fresh_dir(cb::test::process_temp_root("claims"), tag); }

json claim(const std::string& id, const std::string& metric, const std::string& cmp, double threshold, const std::string& suite) {
  return {{"id", id}, {"claim", "wording of " + id}, {"figure", "figure " + id}, {"metric", metric},
          {"comparator", cmp}, {"threshold", threshold}, {"unit", "x"}, {"suite", suite}, {"scope", "here: the test's run"}};
}
json set_of(json claims) {
  return {{"schema", "claimbench.claimset"}, {"schema_version", "1.0"}, {"name", "t"}, {"source", "test"}, {"claims", claims}};
}

Metric metric(const std::string& key, double v) {
  Metric m;
  m.key = key;
  m.value = v;
  m.samples = {v, v, v};  // three agreeing trials: an interval of width 0
  return m;
}

// A run with a load suite (ok), an accuracy suite (error), a scaling suite (ok, no metrics), and a
// manifest that records kernels as not_built, and 0 GPUs, avx2 only.
RunData synthetic_run() {
  RunData r;
  r.dir = "/tmp/synthetic";
  r.manifest = {{"schema", "claimbench.manifest"}, {"schema_version", "1.0"}, {"run_id", "synthetic"},
                {"hardware", {{"cpu_model", "Test"}, {"cores", 2}, {"cpu_flags", {"avx2", "fma"}}, {"gpus", json::array()}, {"fingerprint", "f"}}},
                {"params", json::object()},
                {"suites", {{"kernels", {{"status", "not_built"}, {"reason", "CB_BUILD_BENCHMARKS=OFF"}}},
                            {"cost", {{"status", "ok"}, {"file", "cost.json"}}}}}};
  SuiteResult load;
  load.suite = "load";
  load.add(metric("load.util.busy_fraction", 0.9));
  load.add(metric("load.batch_gain.throughput_ratio", 1.2));
  load.add(metric("load.rt_service.max_rate_rps", std::nan("")));
  load.add(metric("scaling.allreduce.8dev.time_ms", 1.0));  // present, but the machine lacks 8 GPUs
  r.suites["load"] = load;
  SuiteResult acc;
  acc.suite = "accuracy";
  acc.status = SuiteStatus::Error;
  acc.reason = "model file not found";
  r.suites["accuracy"] = acc;
  SuiteResult sc;
  sc.suite = "scaling";
  sc.params["not_measured"]["scaling.tp.efficiency"] = "needs two or more ranks";  // the suite says why
  r.suites["scaling"] = sc;
  SuiteResult sk;
  sk.suite = "skipped";
  sk.status = SuiteStatus::Skipped;
  sk.reason = "not requested";
  r.suites["skipped"] = sk;
  return r;
}

using cb::test::by_id;
}  // namespace

TEST(ClaimsShipped, DeepSeekArticleLoadsWithAll21IdsAndContractKeys) {
  const ClaimSet s = load_claim_set(fs::path(CB_SOURCE_DIR) / "suites/claims/deepseek-article.json");
  struct Row { const char* id; const char* metric; Comparator cmp; double thr; const char* suite; };
  // docs/contracts.md, "Metric keys the claim set reads".
  const std::vector<Row> rows = {
      {"util-busy", "load.util.achieved_fraction", Comparator::GE, 0.82, "load"},
      {"batch-gain", "load.batch_gain.throughput_ratio", Comparator::GE, 1.83, "load"},
      {"sparse-flops", "accuracy.structured.flops_reduction", Comparator::GE, 0.60, "accuracy"},
      {"sparse-acc", "accuracy.structured.acc_retained", Comparator::GE, 0.98, "accuracy"},
      {"sparse-latency", "accuracy.structured.decode_speedup", Comparator::GE, 2.67, "accuracy"},
      {"ctx-16k", "engine.ctx16k.ok", Comparator::EQ, 1, "engine"},
      {"batch-policy", "engine.batch_policy.conformance", Comparator::EQ, 1, "engine"},
      {"tc-speedup", "kernels.matmul.bf16_vs_f32.speedup", Comparator::GE, 2.3, "kernels"},
      {"int8-size", "accuracy.int8.size_ratio", Comparator::GE, 4.0, "accuracy"},
      {"int8-speed", "kernels.matmul.int8_vs_f32.speedup", Comparator::GE, 3.0, "kernels"},
      {"int8-err", "accuracy.int8_qat.acc_delta", Comparator::LE, 0.01, "accuracy"},
      {"kv-cut", "engine.kv.paged_vs_contiguous.reduction", Comparator::GE, 0.55, "engine"},
      {"allreduce", "scaling.allreduce.8dev.time_ms", Comparator::LE, 4.0, "scaling"},
      {"scale-eff", "scaling.tp.efficiency", Comparator::GE, 0.92, "scaling"},
      {"cost-qps", "cost.cost_per_qps.reduction", Comparator::GE, 0.683, "cost"},
      {"energy-qps", "cost.energy_per_qps.reduction", Comparator::GE, 0.657, "cost"},
      {"rt-service", "load.rt_service.max_rate_rps", Comparator::GE, 2000, "load"},
      {"long-tput", "load.long_context.throughput_ratio", Comparator::GE, 2.67, "load"},
      {"dyn-price", "cost.dyn_price.revenue_change", Comparator::GE, 0.45, "cost"},
      {"margin", "cost.measured.margin", Comparator::GE, 5.45, "cost"},
      {"margin-arithmetic", "cost.margin.deepseek_published", Comparator::EQ, 5.45, "cost"},
      {"power-day", "cost.power_day.cost", Comparator::EQ, 5.76, "cost"},
  };
  ASSERT_EQ(s.claims.size(), 22u);  // the 21 of CLAIMS.md, with margin split into measured + arithmetic
  EXPECT_EQ(s.name, "deepseek-article");
  for (const auto& row : rows) {
    const Claim* c = s.find(row.id);
    ASSERT_NE(c, nullptr) << row.id;
    EXPECT_EQ(c->conditions.front().metric, row.metric) << row.id;
    EXPECT_EQ(c->conditions.front().comparator, row.cmp) << row.id;
    EXPECT_DOUBLE_EQ(c->conditions.front().threshold, row.thr) << row.id;
    EXPECT_EQ(c->suite, row.suite) << row.id;
    EXPECT_FALSE(c->scope.empty()) << row.id;
    EXPECT_FALSE(c->figure.empty()) << row.id;
  }
  const Claim* dyn = s.find("dyn-price");
  ASSERT_EQ(dyn->conditions.size(), 2u);
  EXPECT_EQ(dyn->conditions[1].metric, "cost.dyn_price.cost_change");
  EXPECT_EQ(dyn->conditions[1].comparator, Comparator::LE);
  EXPECT_DOUBLE_EQ(dyn->conditions[1].threshold, 0.08);
  EXPECT_DOUBLE_EQ(s.find("margin-arithmetic")->conditions[0].tolerance, 0.005);
  EXPECT_DOUBLE_EQ(s.find("power-day")->conditions[0].tolerance, 0.005);
  EXPECT_EQ(s.find("allreduce")->requirement->gpus, 8);
  EXPECT_EQ(s.find("scale-eff")->requirement->devices, 2);
  const auto& tc = *s.find("tc-speedup")->requirement;
  ASSERT_EQ(tc.any_of.size(), 2u);
  EXPECT_EQ(tc.any_of[0].cpu_flags, std::vector<std::string>{"avx512_bf16"});
  EXPECT_EQ(tc.any_of[1].gpus, 1);
  EXPECT_NE(s.find("rt-service")->scope.find("A100"), std::string::npos);
}

TEST(ClaimsSchema, MalformedSetsNameFileAndJsonPath) {
  const fs::path dir = claims_dir("schema");
  struct Case { const char* name; json doc; const char* path; const char* what; };
  json good = claim("a", "m.a", ">=", 1, "load");
  auto with = [&](const char* key, json v) { json c = good; c[key] = v; return c; };
  auto without = [&](const char* key) { json c = good; c.erase(key); return c; };
  auto id = [&](json c, const char* v) { c["id"] = v; return c; };
  const std::vector<Case> cases = {
      {"unknown_cmp", set_of({id(good, "x"), id(good, "y"), id(good, "z"), with("comparator", "=>")}), "claims[3].comparator", "unknown comparator '=>'"},
      {"missing_thr", set_of({id(good, "x"), without("threshold")}), "claims[1].threshold", "missing required key"},
      {"thr_string", set_of({with("threshold", "0.82")}), "claims[0].threshold", "expected a number"},
      {"id_type", set_of({with("id", 7)}), "claims[0].id", "expected a string"},
      {"dup_id", set_of({good, good}), "claims[1].id", "duplicate id 'a'"},
      {"req_key", set_of({with("requires", {{"gpu", 8}})}), "claims[0].requires.gpu", "unknown requires key 'gpu'"},
      {"req_any", set_of({with("requires", {{"any_of", {{{"cpu_flag", {"x"}}}}}})}), "claims[0].requires.any_of[0].cpu_flag",
       "unknown requires key"},
      {"req_count", set_of({with("requires", {{"gpus", 0}})}), "claims[0].requires.gpus", "at least 1"},
      {"typo_key", set_of({with("treshold", 3)}), "claims[0].treshold", "unknown claim key 'treshold'"},
      {"tol_ge", set_of({with("tolerance", 0.1)}), "claims[0].tolerance", "only applies to '=='"},
      {"both_forms", set_of({with("conditions", json::array({{{"metric", "x"}, {"comparator", ">="}, {"threshold", 1}}}))}),
       "claims[0]", "use one form"},
      {"cond_cmp", set_of({[&] { json c = without("metric"); c.erase("comparator"); c.erase("threshold");
                                 c["conditions"] = json::array({{{"metric", "x"}, {"comparator", "~"}, {"threshold", 1}}}); return c; }()}),
       "claims[0].conditions[0].comparator", "unknown comparator"},
      {"no_metric", set_of({without("metric")}), "claims[0].metric", "missing required key 'metric'"},
      {"claims_type", {{"schema", "claimbench.claimset"}, {"schema_version", "1.0"}, {"name", "t"}, {"source", "s"}, {"claims", 3}},
       "claims", "expected an array"},
      {"missing_name", {{"schema", "claimbench.claimset"}, {"schema_version", "1.0"}, {"source", "s"}, {"claims", json::array()}},
       "name", "missing required key 'name'"},
      {"wrong_schema", {{"schema", "claimbench.suite"}, {"schema_version", "1.0"}}, "", "expected 'claimbench.claimset'"},
  };
  for (const auto& c : cases) {
    const fs::path file = dir / (std::string(c.name) + ".json");
    write_json_atomic(file, c.doc);
    try {
      load_claim_set(file);
      ADD_FAILURE() << c.name << ": no error";
    } catch (const SchemaError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(file.string()), std::string::npos) << c.name << ": " << msg;
      EXPECT_NE(msg.find(c.path), std::string::npos) << c.name << ": " << msg;
      EXPECT_NE(msg.find(c.what), std::string::npos) << c.name << ": " << msg;
    }
  }
  fs::remove_all(dir);
}

TEST(ClaimsEvaluate, EveryVerdictKind) {
  json claims = json::array({
      claim("pass", "load.util.busy_fraction", ">=", 0.82, "load"),
      claim("fail", "load.batch_gain.throughput_ratio", ">=", 1.83, "load"),
      claim("skip", "scaling.allreduce.8dev.time_ms", "<=", 4.0, "scaling"),
      claim("nm-norun", "cost.power_day.x", "==", 5.76, "nosuchsuite"),
      claim("nm-notbuilt", "kernels.matmul.int8_vs_f32.speedup", ">=", 3, "kernels"),
      claim("nm-nometric", "scaling.tp.efficiency", ">=", 0.92, "scaling"),
      claim("nm-skipped", "skipped.x", ">=", 1, "skipped"),
      claim("err-suite", "accuracy.int8.size_ratio", ">=", 4, "accuracy"),
      claim("err-nan", "load.rt_service.max_rate_rps", ">=", 2000, "load"),
      claim("err-nofile", "cost.margin.deepseek_published", "==", 5.45, "cost"),
  });
  claims[2]["requires"] = {{"gpus", 8}};  // the value 1.0 <= 4.0 would PASS: SKIP must win
  const RunData run = synthetic_run();
  const auto rs = evaluate(claim_set_from_json(set_of(claims), "mem"), run);
  EXPECT_EQ(by_id(rs, "pass").verdict, Verdict::Pass);
  EXPECT_DOUBLE_EQ(*by_id(rs, "pass").measured, 0.9);
  EXPECT_EQ(by_id(rs, "fail").verdict, Verdict::Fail);
  const auto& skip = by_id(rs, "skip");
  EXPECT_EQ(skip.verdict, Verdict::Skip);
  EXPECT_NE(skip.reason.find("needs 8 GPUs"), std::string::npos) << skip.reason;
  EXPECT_NE(skip.reason.find("0 GPUs"), std::string::npos) << skip.reason;
  EXPECT_EQ(by_id(rs, "nm-norun").verdict, Verdict::NotMeasured);
  EXPECT_NE(by_id(rs, "nm-norun").reason.find("did not run"), std::string::npos);
  EXPECT_EQ(by_id(rs, "nm-notbuilt").verdict, Verdict::NotMeasured);
  EXPECT_NE(by_id(rs, "nm-notbuilt").reason.find("not built: CB_BUILD_BENCHMARKS=OFF"), std::string::npos);
  EXPECT_EQ(by_id(rs, "nm-nometric").verdict, Verdict::NotMeasured);
  EXPECT_NE(by_id(rs, "nm-nometric").reason.find("ran without producing metric scaling.tp.efficiency: needs two or more ranks"),
            std::string::npos)
      << by_id(rs, "nm-nometric").reason;
  EXPECT_EQ(by_id(rs, "nm-skipped").verdict, Verdict::NotMeasured);
  EXPECT_NE(by_id(rs, "nm-skipped").reason.find("skipped: not requested"), std::string::npos);
  EXPECT_EQ(by_id(rs, "err-suite").verdict, Verdict::Error);
  EXPECT_NE(by_id(rs, "err-suite").reason.find("status error: model file not found"), std::string::npos);
  EXPECT_EQ(by_id(rs, "err-nan").verdict, Verdict::Error);
  EXPECT_NE(by_id(rs, "err-nan").reason.find("NaN"), std::string::npos);
  EXPECT_EQ(by_id(rs, "err-nofile").verdict, Verdict::Error);
  const auto n = count_verdicts(rs);
  EXPECT_EQ(summary_line(rs), "measured: 1 PASS, 1 FAIL, 0 INCONCLUSIVE, 0 INVALID, 1 SKIP, 4 NOT MEASURED, 3 ERROR");
  EXPECT_EQ(n.at("NOT MEASURED"), 4);
  EXPECT_EQ(check_exit_code(rs), 2);
  EXPECT_EQ(check_exit_code(rs, /*allow_fail=*/true), 2);  // an ERROR is never allowed
}

TEST(ClaimsEvaluate, RequirementsReadTheManifest) {
  json claims = json::array({claim("tc", "load.util.busy_fraction", ">=", 0.5, "load"),
                             claim("tp", "load.util.busy_fraction", ">=", 0.5, "load"),
                             claim("bf16", "load.util.busy_fraction", ">=", 0.5, "load")});
  claims[0]["requires"] = {{"any_of", {{{"cpu_flags", {"avx512_bf16"}}}, {{"gpus", 1}}}}};
  claims[1]["requires"] = {{"devices", 2}};
  claims[2]["requires"] = {{"cpu_flags", {"avx2", "avx512_bf16"}}};
  const ClaimSet set = claim_set_from_json(set_of(claims), "mem");
  RunData run = synthetic_run();
  auto rs = evaluate(set, run);
  EXPECT_EQ(by_id(rs, "tc").verdict, Verdict::Skip);
  EXPECT_NE(by_id(rs, "tc").reason.find("needs avx512_bf16 CPU flag or 1 GPU"), std::string::npos) << by_id(rs, "tc").reason;
  EXPECT_NE(by_id(rs, "tc").reason.find("CPU flags [avx2 fma]"), std::string::npos) << by_id(rs, "tc").reason;
  EXPECT_EQ(by_id(rs, "tp").verdict, Verdict::Skip);
  EXPECT_NE(by_id(rs, "tp").reason.find("1 device"), std::string::npos);
  EXPECT_EQ(by_id(rs, "bf16").verdict, Verdict::Skip);
  {
    RunData measured_on_ranks = run;  // the claim's suite says it measured on 2 ranks
    measured_on_ranks.suites["load"].params["ranks"] = 2;
    const auto r2 = evaluate(set, measured_on_ranks);
    EXPECT_EQ(by_id(r2, "tp").verdict, Verdict::Pass) << by_id(r2, "tp").reason;
  }
  run.manifest["params"]["ranks"] = 4;  // MPI ranks recorded by the run
  run.manifest["hardware"]["cpu_flags"].push_back("avx512_bf16");
  rs = evaluate(set, run);
  EXPECT_EQ(by_id(rs, "tc").verdict, Verdict::Pass);
  EXPECT_EQ(by_id(rs, "tp").verdict, Verdict::Pass);
  EXPECT_EQ(by_id(rs, "bf16").verdict, Verdict::Pass);
  const RunHardware hw = run_hardware(run.manifest);
  EXPECT_EQ(hw.devices, 4);
  EXPECT_EQ(hw.devices_from, "manifest params.ranks");
  // GPUs stand in for devices when the params say nothing.
  run.manifest["params"] = json::object();
  run.manifest["hardware"]["gpus"] = json::array({{{"name", "H200"}}, {{"name", "H200"}}});
  EXPECT_EQ(run_hardware(run.manifest).devices, 2);
  EXPECT_EQ(run_hardware(json::object()).devices, 1);
  EXPECT_FALSE(run_hardware(json::object()).recorded);
  // The ranks the claim's own suite measured on win over both.
  const RunHardware from_suite = run_hardware(run.manifest, json{{"ranks", 3}});
  EXPECT_EQ(from_suite.devices, 3);
  EXPECT_EQ(from_suite.devices_from, "suite params.ranks");
}

TEST(ClaimsEvaluate, MultiPartAndTolerance) {
  json claims = json::array();
  json dyn = {{"id", "dyn"}, {"claim", "c"}, {"figure", "f"}, {"suite", "load"}, {"unit", "fraction"},
              {"conditions", {{{"metric", "load.util.busy_fraction"}, {"comparator", ">="}, {"threshold", 0.45}},
                              {{"metric", "load.batch_gain.throughput_ratio"}, {"comparator", "<="}, {"threshold", 0.08}}}}};
  claims.push_back(dyn);
  claims.push_back(claim("eq-in", "load.util.busy_fraction", "==", 0.904, "load"));
  claims.back()["tolerance"] = 0.005;
  claims.push_back(claim("eq-out", "load.util.busy_fraction", "==", 0.91, "load"));
  claims.back()["tolerance"] = 0.005;
  claims.push_back(claim("lt", "load.util.busy_fraction", "<", 0.9, "load"));
  claims.push_back(claim("gt", "load.util.busy_fraction", ">", 0.89, "load"));
  const auto rs = evaluate(claim_set_from_json(set_of(claims), "mem"), synthetic_run());
  const auto& d = by_id(rs, "dyn");
  EXPECT_EQ(d.verdict, Verdict::Fail);
  ASSERT_EQ(d.parts.size(), 2u);
  EXPECT_EQ(d.parts[0].verdict, Verdict::Pass);
  EXPECT_EQ(d.parts[1].verdict, Verdict::Fail);
  EXPECT_NE(d.reason.find("load.batch_gain.throughput_ratio 1.2 <= 0.08: FAIL"), std::string::npos) << d.reason;
  EXPECT_EQ(by_id(rs, "eq-in").verdict, Verdict::Pass);
  EXPECT_EQ(by_id(rs, "eq-out").verdict, Verdict::Fail);
  EXPECT_EQ(by_id(rs, "lt").verdict, Verdict::Fail);  // 0.9 < 0.9 is false
  EXPECT_EQ(by_id(rs, "gt").verdict, Verdict::Pass);
  EXPECT_FALSE(holds(std::nan(""), Comparator::LE, 1, 0));
}

TEST(ClaimsOutput, TableJsonRoundTripAndExitCode) {
  json claims = json::array({claim("pass", "load.util.busy_fraction", ">=", 0.82, "load"),
                             claim("fail", "load.batch_gain.throughput_ratio", ">=", 1.83, "load"),
                             claim("nm", "x.y", ">=", 1, "nosuch")});
  claims[0]["scope"] = "article: a 175B-class model on an A100 cluster; here: the run's model on the run's machine, with a long tail of words";
  const auto rs = evaluate(claim_set_from_json(set_of(claims), "mem"), synthetic_run());
  std::ostringstream os;
  print_claims_table(os, rs);
  const std::string t = os.str();
  EXPECT_NE(t.find("0.9 x"), std::string::npos) << t;
  EXPECT_NE(t.find(">= 0.82"), std::string::npos);
  EXPECT_NE(t.find("reason: suite 'nosuch' did not run"), std::string::npos) << t;
  EXPECT_NE(t.find("..."), std::string::npos);  // the long scope is cut
  EXPECT_EQ(t.find("long tail of words"), std::string::npos);
  EXPECT_NE(t.find("1 PASS, 1 FAIL, 0 INCONCLUSIVE, 0 INVALID, 0 SKIP, 1 NOT MEASURED, 0 ERROR"), std::string::npos);
  EXPECT_EQ(check_exit_code(rs), 1);
  EXPECT_EQ(check_exit_code(rs, true), 0);

  const fs::path dir = claims_dir("json");
  const json j = claims_to_json(rs, "suites/claims/x.json", "results/runs/r1");
  EXPECT_EQ(j["schema"], "claimbench.claims");
  EXPECT_EQ(j["results"][0]["verdict"], "PASS");
  EXPECT_TRUE(j["results"][2]["measured"].is_null());
  EXPECT_EQ(j["counts"]["FAIL"], 1);
  EXPECT_EQ(j["counts"]["ERROR"], 0);
  for (const char* k : {"id", "description", "figure", "metric", "unit", "measured", "comparator", "threshold", "verdict", "reason", "scope"})
    EXPECT_TRUE(j["results"][0].contains(k)) << k;
  write_json_atomic(dir / "claims.json", j);
  const ClaimsReport back = load_claims_json(dir / "claims.json");
  EXPECT_EQ(back.claim_set, "suites/claims/x.json");
  EXPECT_EQ(back.run_dir, "results/runs/r1");
  ASSERT_EQ(back.results.size(), 3u);
  EXPECT_EQ(back.results[1].verdict, Verdict::Fail);
  EXPECT_DOUBLE_EQ(*back.results[1].measured, 1.2);
  EXPECT_FALSE(back.results[2].measured.has_value());
  EXPECT_EQ(back.counts.at("PASS"), 1);
  std::ostringstream again;
  print_claims_table(again, back.results);  // renders from the file too
  EXPECT_NE(again.str().find("1 PASS, 1 FAIL"), std::string::npos);
  write_json_atomic(dir / "bad.json", json{{"schema", "claimbench.claimset"}, {"schema_version", "1.0"}});
  EXPECT_THROW(load_claims_json(dir / "bad.json"), SchemaError);
  fs::remove_all(dir);
}

TEST(ClaimsEvaluate, RunFolderOnDisk) {
  // The realistic path: a run folder written with the results API, read back by RunData::load.
  const fs::path dir = claims_dir("run");
  json manifest = {{"schema", "claimbench.manifest"}, {"schema_version", "1.0"}, {"run_id", "disk"},
                   {"hardware", {{"cpu_flags", {"avx2"}}, {"gpus", json::array()}}},
                   {"suites", {{"kernels", {{"status", "not_built"}}}, {"load", {{"status", "ok"}, {"file", "load.json"}}}}}};
  write_json_atomic(dir / "manifest.json", manifest);
  SuiteResult load;
  load.suite = "load";
  load.add(metric("load.util.achieved_fraction", 0.5));
  write_json_atomic(dir / "load.json", load.to_json());
  const RunData run = RunData::load(dir);
  const ClaimSet set = load_claim_set(fs::path(CB_SOURCE_DIR) / "suites/claims/deepseek-article.json");
  const auto rs = evaluate(set, run);
  ASSERT_EQ(rs.size(), 22u);
  EXPECT_EQ(by_id(rs, "util-busy").verdict, Verdict::Fail);
  EXPECT_EQ(by_id(rs, "int8-speed").verdict, Verdict::NotMeasured);
  EXPECT_NE(by_id(rs, "int8-speed").reason.find("not built"), std::string::npos);
  EXPECT_EQ(by_id(rs, "allreduce").verdict, Verdict::Skip);
  EXPECT_EQ(by_id(rs, "scale-eff").verdict, Verdict::Skip);
  EXPECT_EQ(by_id(rs, "tc-speedup").verdict, Verdict::Skip);
  EXPECT_EQ(by_id(rs, "kv-cut").verdict, Verdict::NotMeasured);  // load ran without it
  EXPECT_EQ(by_id(rs, "margin").verdict, Verdict::NotMeasured);  // cost did not run
  EXPECT_EQ(by_id(rs, "dyn-price").verdict, Verdict::NotMeasured);
  fs::remove_all(dir);
}
