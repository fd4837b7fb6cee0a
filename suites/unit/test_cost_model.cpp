// The cost model: DeepSeek's 545% reproduced, the measured-run economics by hand, dyn-price,
// power-day, the defaults file, and the cost suite feeding the shipped claim set.
#include <cmath>
#include <unistd.h>

#include <gtest/gtest.h>

#include "cb/harness/verdicts/claims.h"
#include "cb/harness/verdicts/cost_model.h"
#include "test_support.h"

using namespace cb::harness;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
Metric value_metric(const std::string& key, double v) {
  Metric m;
  m.key = key;
  m.value = v;
  m.direction = Direction::HigherIsBetter;
  m.noise = NoiseClass::Timing;
  m.samples = {v, v, v};  // three agreeing trials
  return m;
}
RunData load_run(std::vector<std::pair<std::string, double>> metrics) {
  RunData r;
  r.dir = "/tmp/cost-run";
  r.manifest = {{"schema", "claimbench.manifest"}, {"schema_version", "1.0"}, {"run_id", "cost-run"},
                {"hardware", {{"cpu_flags", json::array()}, {"gpus", json::array()}}}};
  SuiteResult load;
  load.suite = "load";
  load.params["model"] = "deepseek-v3-r1";  // the model the default prices belong to
  for (const auto& [k, v] : metrics) load.add(value_metric(k, v));
  r.suites["load"] = load;
  return r;
}
using cb::test::by_id;
}  // namespace

TEST(CostDeepSeek, PublishedFiguresGive545Percent) {
  const DeepSeekMargin m = deepseek_margin();
  // 226.75 nodes x 8 GPUs x $2 x 24 h: every intermediate is exact in binary floating point.
  EXPECT_EQ(m.daily_cost, 87072.0);
  EXPECT_EQ(m.revenue_published, 562027.0);
  // (562,027 - 87,072) / 87,072 = 474,955 / 87,072 = 5.4547386... -> 545%.
  EXPECT_DOUBLE_EQ(m.margin_published, 474955.0 / 87072.0);
  EXPECT_NEAR(m.margin_published, 5.4547386, 1e-7);
  EXPECT_EQ(std::lround(100.0 * m.margin_published), 545);
}

TEST(CostDeepSeek, TokenArithmeticPathAndItsGap) {
  const DeepSeekMargin m = deepseek_margin();
  // 342e9 x 0.14/1e6 + 266e9 x 0.55/1e6 + 168e9 x 2.19/1e6 = 47,880 + 146,300 + 367,920 = 562,100.
  EXPECT_NEAR(m.revenue_hit, 47880.0, 1e-6);
  EXPECT_NEAR(m.revenue_miss, 146300.0, 1e-6);
  EXPECT_NEAR(m.revenue_output, 367920.0, 1e-6);
  EXPECT_NEAR(m.revenue_tokens, 562100.0, 1e-6);
  // The published $562,027 is $73 (0.013%) lower: DeepSeek's token counts are rounded to whole
  // billions, so the token path cannot reproduce their revenue to the dollar. Its margin is
  // 475,028 / 87,072 = 5.455577 -> 546%, one point above the published 545%.
  EXPECT_NEAR(m.revenue_tokens - m.revenue_published, 73.0, 1e-6);
  EXPECT_NEAR(m.margin_tokens, 475028.0 / 87072.0, 1e-12);
  EXPECT_EQ(std::lround(100.0 * m.margin_tokens), 546);
}

TEST(CostArithmetic, PowerDay) {
  EXPECT_NEAR(power_day_cost(300, 24, 0.8), 5.76, 1e-12);  // 7.2 kWh x 0.8
  EXPECT_DOUBLE_EQ(power_day_cost(1000, 1, 1), 1.0);
}

TEST(CostArithmetic, MeasuredEconomicsByHand) {
  CostDefaults d;
  d.devices = 2;
  d.device_hour_usd = 1.0;
  d.pue = 1.5;
  d.electricity_usd_per_kwh = 0.2;
  d.cache_hit_fraction = 0.5;
  d.price_input_hit_per_m = 0.1;
  d.price_input_miss_per_m = 0.5;
  d.price_output_per_m = 2.0;
  MeasuredThroughput t;
  t.requests_per_s = 10;
  t.input_tokens_per_s = 1000;
  t.output_tokens_per_s = 500;
  t.power_watts = 500;
  const Economics e = economics(d, t);
  EXPECT_TRUE(e.power_measured);
  EXPECT_NEAR(e.cost_per_hour, 2.15, 1e-12);         // 2 x $1 + 500 W x 1.5 / 1000 x $0.2
  EXPECT_NEAR(e.cost_per_day, 51.6, 1e-12);
  EXPECT_NEAR(e.revenue_per_day, 112.32, 1e-9);      // 86400 x (1000 x 0.3 + 500 x 2) / 1e6
  EXPECT_NEAR(e.margin, (112.32 - 51.6) / 51.6, 1e-12);
  EXPECT_NEAR(e.cost_per_m_output_tokens, 51.6 / 43.2, 1e-12);  // 43.2 M output tokens/day
  EXPECT_NEAR(e.cost_per_qps, 0.215, 1e-12);
  EXPECT_NEAR(e.energy_per_request_j, 75.0, 1e-12);  // 500 W x 1.5 / 10 req/s
  EXPECT_NEAR(e.w_per_qps, 50.0, 1e-12);
  t.power_watts.reset();  // configured power: devices x power_watts
  EXPECT_FALSE(economics(d, t).power_measured);
  EXPECT_DOUBLE_EQ(economics(d, t).power_watts, 600.0);
}

TEST(CostDynPrice, DefaultCurveByHand) {
  const CostDefaults d;
  const DynPriceResult r = simulate_dynamic_pricing(d);
  ASSERT_EQ(r.hours.size(), 24u);
  // Default curve: 9 hours under 50% (sum 2.60), 7 hours over 80% (sum 6.02), the rest 5.35.
  // Demand x price^-0.5: revenue = 0.7^0.5 x 2.60 + 1.2^0.5 x 6.02 + 5.35, flat 13.97.
  const double dyn = std::sqrt(0.7) * 2.60 + std::sqrt(1.2) * 6.02 + 5.35;
  EXPECT_NEAR(r.revenue_flat, 13.97, 1e-9);
  EXPECT_NEAR(r.revenue_dyn, dyn, 1e-9);
  EXPECT_NEAR(r.revenue_change, dyn / 13.97 - 1.0, 1e-12);  // about +1%: far from the article's +45%
  EXPECT_EQ(r.lost_demand, 0.0);
  // Cost: 24 x $2 hardware + energy 300 W x (0.3 + 0.7 u) x 1.3 / 1000 x $0.10 per hour.
  auto energy = [](double u) { return 300.0 * (0.3 + 0.7 * u) * 1.3 / 1000.0 * 0.10; };
  double flat = 0, dynamic = 0;
  for (const auto& h : r.hours) {
    flat += 2.0 + energy(h.util_flat);
    dynamic += 2.0 + energy(h.util_dyn);
  }
  EXPECT_NEAR(r.cost_flat, flat, 1e-9);
  EXPECT_NEAR(r.cost_change, dynamic / flat - 1.0, 1e-12);
  EXPECT_LT(r.revenue_change, 0.45);  // the dyn-price claim FAILs on its revenue part
  EXPECT_LE(r.cost_change, 0.08);
}

TEST(CostDynPrice, ElasticityAndCapacity) {
  CostDefaults d;
  d.demand_elasticity = -1.0;  // unit elastic: revenue per hour unchanged while under capacity
  EXPECT_NEAR(simulate_dynamic_pricing(d).revenue_change, 0.0, 1e-12);
  d.demand_elasticity = 0.0;  // no demand response: revenue follows the price rule alone
  EXPECT_NEAR(simulate_dynamic_pricing(d).revenue_change, (0.7 * 2.60 + 1.2 * 6.02 + 5.35) / 13.97 - 1.0, 1e-12);
  d.load_curve.assign(24, 0.45);
  d.demand_elasticity = -3.0;  // demand 0.45 / 0.7^3 = 1.312: capped at capacity
  const DynPriceResult r = simulate_dynamic_pricing(d);
  EXPECT_DOUBLE_EQ(r.hours[0].util_dyn, 1.0);
  EXPECT_NEAR(r.lost_demand, 24 * (0.45 / 0.343 - 1.0), 1e-9);
  EXPECT_NEAR(r.revenue_change, 0.7 / 0.45 - 1.0, 1e-12);
}

TEST(CostDefaults, ShippedFileMatchesBuiltIns) {
  const fs::path p = fs::path(CB_SOURCE_DIR) / "suites/claims/cost-defaults.json";
  const CostDefaults file = load_cost_defaults(p);
  json a = cost_defaults_to_json(file), b = cost_defaults_to_json(CostDefaults{});
  a.erase("source");
  b.erase("source");
  EXPECT_EQ(a, b) << a.dump(1) << "\n" << b.dump(1);
  EXPECT_EQ(file.source, p.string());
}

TEST(CostDefaults, OverridesAndErrors) {
  const fs::path dir = fs::temp_directory_path() / ("cb_test_cost_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  json j = {{"schema", "claimbench.cost_defaults"}, {"schema_version", "1.0"},
            {"hardware", {{"devices", 8}, {"pue", 1.1}}}, {"dyn_price", {{"demand_elasticity", -0.2}}}};
  write_json_atomic(dir / "ok.json", j);
  const CostDefaults d = load_cost_defaults(dir / "ok.json");
  EXPECT_EQ(d.devices, 8);
  EXPECT_EQ(d.pue, 1.1);
  EXPECT_EQ(d.demand_elasticity, -0.2);
  EXPECT_EQ(d.device_hour_usd, 2.0);  // untouched keys keep their defaults
  struct Case { const char* name; json body; const char* path; };
  const std::vector<Case> cases = {
      {"type", {{"hardware", {{"pue", "x"}}}}, "hardware.pue"},
      {"range", {{"hardware", {{"pue", 0.5}}}}, "hardware.pue"},
      {"curve", {{"dyn_price", {{"load_curve", {0.5, 0.5}}}}}, "dyn_price.load_curve"},
      {"key", {{"prices", {{"output", 2}}}}, "prices.output"},
      {"section", {{"hardwar", json::object()}}, "hardwar"},
  };
  for (const auto& c : cases) {
    json doc = c.body;
    doc["schema"] = "claimbench.cost_defaults";
    doc["schema_version"] = "1.0";
    const fs::path f = dir / (std::string(c.name) + ".json");
    write_json_atomic(f, doc);
    try {
      load_cost_defaults(f);
      ADD_FAILURE() << c.name;
    } catch (const SchemaError& e) {
      EXPECT_NE(std::string(e.what()).find(f.string() + ": " + c.path), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}

TEST(CostSuite, WithoutMeasuredRunEmitsOnlyArithmetic) {
  const SuiteResult s = cost_suite(nullptr, CostDefaults{});
  EXPECT_EQ(s.suite, "cost");
  EXPECT_EQ(s.status, SuiteStatus::Ok);
  for (const char* k : {"cost.margin.deepseek_published", "cost.margin.deepseek_tokens", "cost.dyn_price.revenue_change",
                        "cost.dyn_price.cost_change", "cost.power_day.cost"}) {
    const Metric* m = s.find(k);
    ASSERT_NE(m, nullptr) << k;
    EXPECT_EQ(m->noise, NoiseClass::Exact) << k;
    EXPECT_FALSE(m->note.empty()) << k;
  }
  EXPECT_NEAR(s.find("cost.margin.deepseek_published")->value, 5.4547386, 1e-7);
  EXPECT_NE(s.find("cost.margin.deepseek_tokens")->note.find("rounded"), std::string::npos);
  EXPECT_NEAR(s.find("cost.power_day.cost")->value, 5.76, 1e-12);
  EXPECT_EQ(s.find("cost.cost_per_qps.reduction"), nullptr);
  EXPECT_EQ(s.find("cost.energy_per_qps.reduction"), nullptr);
  EXPECT_EQ(s.tables.at("dyn_price").size(), 24u);
  // Survives the results schema round trip.
  const SuiteResult back = SuiteResult::from_json(s.to_json(), "mem");
  EXPECT_DOUBLE_EQ(back.find("cost.margin.deepseek_published")->value, s.find("cost.margin.deepseek_published")->value);
}

TEST(CostSuite, MeasuredRunFeedsTheClaims) {
  const CostDefaults d;
  // 20 req/s adaptive, 2.5x static batching, measured 400 W.
  RunData measured = load_run({{d.keys.requests_per_s, 20}, {d.keys.input_tokens_per_s, 4000}, {d.keys.output_tokens_per_s, 800},
                               {d.keys.throughput_ratio, 2.5}, {d.keys.power_watts, 400}, {d.keys.busy_fraction, 0.7}});
  SuiteResult s = cost_suite(&measured, d);
  ASSERT_NE(s.find("cost.cost_per_qps.reduction"), nullptr);
  EXPECT_NEAR(s.find("cost.cost_per_qps.reduction")->value, 0.6, 1e-12);  // 1 - 1/2.5: same hardware cost
  ASSERT_NE(s.find("cost.energy_per_qps.reduction"), nullptr);
  EXPECT_NEAR(s.find("cost.energy_per_qps.reduction")->value, 0.6, 1e-12);
  EXPECT_NE(s.find("cost.energy_per_qps.reduction")->note.find("assumed equal"), std::string::npos);
  EXPECT_NEAR(s.find("cost.measured.w_per_qps")->value, 20.0, 1e-12);
  EXPECT_NE(s.find("cost.measured.revenue_per_day")->note.find("busy fraction 0.7"), std::string::npos);
  EXPECT_EQ(s.params["measured_inputs"], "used");

  measured.suites["cost"] = s;
  const ClaimSet set = load_claim_set(fs::path(CB_SOURCE_DIR) / "suites/claims/deepseek-article.json");
  auto rs = evaluate(set, measured);
  EXPECT_EQ(by_id(rs, "margin-arithmetic").verdict, Verdict::Pass);
  // The measured margin is judged on the value the cost model computed from these inputs.
  const double margin = s.find("cost.measured.margin")->value;
  EXPECT_EQ(by_id(rs, "margin").verdict, margin >= 5.45 ? Verdict::Pass : Verdict::Fail) << margin;
  EXPECT_EQ(by_id(rs, "power-day").verdict, Verdict::Pass);
  EXPECT_EQ(by_id(rs, "dyn-price").verdict, Verdict::Fail);
  EXPECT_EQ(by_id(rs, "cost-qps").verdict, Verdict::Fail);    // 60% < 68.3%
  EXPECT_EQ(by_id(rs, "energy-qps").verdict, Verdict::Fail);

  // No measured power: the energy claim is NOT MEASURED, the cost claim still measured.
  RunData no_power = load_run({{d.keys.requests_per_s, 20}, {d.keys.input_tokens_per_s, 4000}, {d.keys.output_tokens_per_s, 800},
                               {d.keys.baseline_requests_per_s, 5}});
  no_power.suites["cost"] = cost_suite(&no_power, d);
  EXPECT_NEAR(no_power.suites["cost"].find("cost.cost_per_qps.reduction")->value, 0.75, 1e-12);
  rs = evaluate(set, no_power);
  EXPECT_EQ(by_id(rs, "cost-qps").verdict, Verdict::Pass);
  EXPECT_EQ(by_id(rs, "energy-qps").verdict, Verdict::NotMeasured);
  EXPECT_NE(by_id(rs, "energy-qps").reason.find("ran without producing"), std::string::npos);

  // No throughput at all: none of the measured metrics.
  RunData empty = load_run({{d.keys.busy_fraction, 0.9}});
  const SuiteResult e = cost_suite(&empty, d);
  EXPECT_EQ(e.find("cost.cost_per_qps.reduction"), nullptr);
  EXPECT_EQ(e.find("cost.measured.margin"), nullptr);
  EXPECT_NE(e.params["measured_inputs"].get<std::string>().find(d.keys.requests_per_s), std::string::npos);
}

TEST(CostSuite, PricesOfAnotherModelSkipTheMarginAndTrialsCarryThrough) {
  const CostDefaults d;
  // Three trials of a small model's run: the default prices (a 671B model's) do not apply.
  RunData run = load_run({{d.keys.input_tokens_per_s, 4000}, {d.keys.output_tokens_per_s, 800}});
  run.suites["load"].params["model"] = "default";
  Metric rps = value_metric(d.keys.requests_per_s, 20);
  rps.samples = {18, 20, 22};
  run.suites["load"].add(rps);
  Metric base = value_metric(d.keys.baseline_requests_per_s, 10);
  base.samples = {10, 10, 10};
  base.params = {{"valid", false}, {"validity", "INVALID: 3 errors of 10"}};
  run.suites["load"].add(base);
  SuiteResult s = cost_suite(&run, d);
  EXPECT_EQ(s.find("cost.measured.margin"), nullptr);
  EXPECT_EQ(s.find("cost.measured.revenue_per_day"), nullptr);
  ASSERT_TRUE(s.params["skip"].contains("cost.measured.margin"));
  EXPECT_NE(s.params["skip"]["cost.measured.margin"].get<std::string>().find("'default'"), std::string::npos);
  // Per-trial reductions: 1 - 10/18, 1 - 10/20, 1 - 10/22; invalid because the baseline's run was.
  const Metric* red = s.find("cost.cost_per_qps.reduction");
  ASSERT_NE(red, nullptr);
  ASSERT_EQ(red->samples.size(), 3u);
  EXPECT_NEAR(red->samples[0], 1 - 10.0 / 18, 1e-12);
  EXPECT_NEAR(red->samples[2], 1 - 10.0 / 22, 1e-12);
  EXPECT_NEAR(red->value, 0.5, 1e-12);
  EXPECT_EQ(red->params["valid"], false);
  run.suites["cost"] = s;
  const ClaimSet set = load_claim_set(fs::path(CB_SOURCE_DIR) / "suites/claims/deepseek-article.json");
  const auto rs = evaluate(set, run);
  EXPECT_EQ(by_id(rs, "margin").verdict, Verdict::Skip);
  EXPECT_NE(by_id(rs, "margin").reason.find("prices.model"), std::string::npos) << by_id(rs, "margin").reason;
  EXPECT_EQ(by_id(rs, "cost-qps").verdict, Verdict::Invalid);
  EXPECT_NE(by_id(rs, "cost-qps").reason.find("3 errors of 10"), std::string::npos) << by_id(rs, "cost-qps").reason;
}

TEST(CostSuite, PowerPerTrialAndSuppliedPowerIsNeverAMeasurement) {
  const CostDefaults d;
  const ClaimSet set = load_claim_set(fs::path(CB_SOURCE_DIR) / "suites/claims/deepseek-article.json");
  auto trials = [](const std::string& key, std::vector<double> v) {
    Metric m = value_metric(key, v[1]);
    m.samples = v;
    return m;
  };
  // Measured power per trial on both configurations: W per QPS per trial, paired by trial.
  RunData run = load_run({{d.keys.input_tokens_per_s, 4000}, {d.keys.output_tokens_per_s, 800}});
  run.suites["load"].add(trials(d.keys.requests_per_s, {20, 20, 20}));
  run.suites["load"].add(trials(d.keys.baseline_requests_per_s, {10, 10, 10}));
  run.suites["load"].add(trials(d.keys.power_watts, {400, 500, 600}));
  run.suites["load"].add(trials(d.keys.baseline_power_watts, {400, 400, 400}));
  run.suites["load"].params["power"] = {{"source", "measured"}, {"sensor", "RAPL energy counters (package-0)"}};
  SuiteResult s = cost_suite(&run, d);
  const Metric* e = s.find("cost.energy_per_qps.reduction");
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->samples.size(), 3u);
  EXPECT_NEAR(e->samples[0], 1 - (400.0 / 20) / (400.0 / 10), 1e-12);  // 0.5
  EXPECT_NEAR(e->samples[2], 1 - (600.0 / 20) / (400.0 / 10), 1e-12);  // 0.25
  EXPECT_NE(e->note.find("RAPL"), std::string::npos) << e->note;

  // Supplied power: the claim stays NOT MEASURED with the reason; the figure is reported apart.
  RunData sup = load_run({{d.keys.input_tokens_per_s, 4000}, {d.keys.output_tokens_per_s, 800}});
  sup.suites["load"].add(trials(d.keys.requests_per_s, {20, 20, 20}));
  sup.suites["load"].add(trials(d.keys.baseline_requests_per_s, {8, 8, 8}));
  sup.suites["load"].params["power"] = {{"source", "supplied"}, {"watts", 350.0}, {"why", "no power sensor: nvidia-smi not found"}};
  SuiteResult ss = cost_suite(&sup, d);
  EXPECT_EQ(ss.find("cost.energy_per_qps.reduction"), nullptr);
  const Metric* apart = ss.find("cost.supplied_power.energy_per_qps.reduction");
  ASSERT_NE(apart, nullptr);
  EXPECT_NEAR(apart->value, 0.6, 1e-12);  // 1 - 8/20: the throughput ratio's effect only
  EXPECT_EQ(apart->note.rfind("NOT A MEASUREMENT", 0), 0u) << apart->note;
  EXPECT_NE(ss.find("cost.measured.w_per_qps")->note.find("supplied with --power-watts"), std::string::npos);
  EXPECT_NEAR(ss.find("cost.measured.w_per_qps")->value, 350.0 / 20, 1e-12);
  sup.suites["cost"] = ss;
  const auto rs = evaluate(set, sup);
  EXPECT_EQ(by_id(rs, "energy-qps").verdict, Verdict::NotMeasured);
  EXPECT_NE(by_id(rs, "energy-qps").reason.find("nvidia-smi not found"), std::string::npos) << by_id(rs, "energy-qps").reason;
  EXPECT_NE(by_id(rs, "energy-qps").reason.find("--power-watts 350 W was supplied"), std::string::npos) << by_id(rs, "energy-qps").reason;
}
