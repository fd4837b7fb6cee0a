// The cost model behind the `cost` suite: the DeepSeek margin reproduction (published figures),
// the economics of a measured run (revenue, cost, margin, cost per QPS, energy per request), the
// peak/off-peak pricing simulation (dyn-price) and the article's power-per-day arithmetic.
// Defaults live in suites/claims/cost-defaults.json; every default is documented there and here.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/core/results.h"

namespace cb::harness {

// DeepSeek's published V3/R1 inference figures (open-infra-index, "Inference System Overview").
struct DeepSeekInputs {
  double nodes = 226.75;           // average nodes over the 24 h window
  double gpus_per_node = 8;        // H800
  double gpu_hour_usd = 2.0;       // their assumed rental price
  double hours = 24;
  double input_tokens = 608e9;     // of which cache hits:
  double cache_hit_tokens = 342e9;
  double output_tokens = 168e9;
  double price_hit_per_m = 0.14;   // USD per million tokens
  double price_miss_per_m = 0.55;
  double price_output_per_m = 2.19;
  double published_revenue = 562027;  // USD/day as published
};

struct DeepSeekMargin {
  double daily_cost = 0;         // nodes x gpus x price x hours = 87,072
  double revenue_hit = 0;        // 342e9 x 0.14 / 1e6 = 47,880
  double revenue_miss = 0;       // 266e9 x 0.55 / 1e6 = 146,300
  double revenue_output = 0;     // 168e9 x 2.19 / 1e6 = 367,920
  double revenue_tokens = 0;     // their sum = 562,100 (token counts are rounded to 1e9)
  double revenue_published = 0;  // 562,027
  double margin_published = 0;   // (562,027 - 87,072) / 87,072 = 5.4547 -> 545%
  double margin_tokens = 0;      // (562,100 - 87,072) / 87,072 = 5.4556 -> 546%
};
DeepSeekMargin deepseek_margin(const DeepSeekInputs& in = {});

// Names of the metrics a measured run must carry for the measured cost metrics.
struct MeasuredKeys {
  std::string requests_per_s = "load.throughput.requests_per_s";           // engine, saturating workload
  std::string input_tokens_per_s = "load.throughput.input_tokens_per_s";
  std::string output_tokens_per_s = "load.throughput.output_tokens_per_s";
  std::string baseline_requests_per_s = "load.baseline.requests_per_s";    // static-batching baseline
  std::string throughput_ratio = "load.batch_gain.throughput_ratio";       // used when the baseline rate is absent
  std::string busy_fraction = "load.util.busy_fraction";                   // reported in notes
  std::string power_watts = "load.power.avg_watts";                        // measured total power, engine
  std::string baseline_power_watts = "load.baseline.power.avg_watts";      // measured total power, baseline
};

struct CostDefaults {
  // Hardware and energy. device_hour_usd is the hardware price without energy; set
  // electricity_usd_per_kwh to 0 when the hourly price is an all-in rental.
  double device_hour_usd = 2.0;           // DeepSeek's assumed H800 price
  double devices = 1;
  double power_watts = 300;               // per device, used when the run records no power
  double idle_power_fraction = 0.3;       // idle draw / full draw (dyn-price energy model)
  double electricity_usd_per_kwh = 0.10;
  double pue = 1.3;                       // facility overhead on device power
  // Token prices (DeepSeek's published API prices, USD per million tokens).
  double price_input_hit_per_m = 0.14;
  double price_input_miss_per_m = 0.55;
  double price_output_per_m = 2.19;
  double cache_hit_fraction = 342.0 / 608.0;  // DeepSeek's 56.25% of input tokens
  double served_fraction = 1.0;           // fraction of the day served at the measured rate (1 = theoretical)
  // The model the token prices belong to. Revenue and margin are only computed for a run whose
  // model has this name (the load suite's params.model); otherwise they are SKIP with the reason.
  std::string price_model = "deepseek-v3-r1";
  // dyn-price: the article's rule over an hourly utilization curve (flat-price utilization).
  std::vector<double> load_curve;         // 24 values in [0, 1]; illustrative default below
  double low_util = 0.5;                  // price change applies when util < low_util
  double high_util = 0.8;                 // ... and when util > high_util
  double low_price_change = -0.30;
  double high_price_change = 0.20;
  double demand_elasticity = -0.5;        // demand x (price multiplier)^elasticity
  // power-day: the article's arithmetic.
  double power_day_watts = 300;
  double power_day_hours = 24;
  double power_day_price_per_kwh = 0.8;
  MeasuredKeys keys;
  DeepSeekInputs deepseek;
  std::string source = "built-in";        // where the defaults came from

  CostDefaults();  // fills load_curve with the illustrative default
};

// Reads overrides from JSON (schema "claimbench.cost_defaults"): missing keys keep the built-in
// values, unknown keys are errors (SchemaError naming the file and JSON path).
CostDefaults load_cost_defaults(const std::filesystem::path& path);
CostDefaults cost_defaults_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json cost_defaults_to_json(const CostDefaults& d);

// Throughput measured in a run, at the utilization measured.
struct MeasuredThroughput {
  double requests_per_s = 0;
  double input_tokens_per_s = 0;
  double output_tokens_per_s = 0;
  std::optional<double> baseline_requests_per_s;
  std::optional<double> power_watts;           // total, measured
  std::optional<double> baseline_power_watts;  // total, measured
  // Total power the user stated (claimbench run --power-watts), used when none was measured and
  // labelled as supplied: never a measurement.
  std::optional<double> supplied_power_watts;
  std::optional<double> busy_fraction;
};

struct Economics {
  double power_watts = 0;       // total device power used (measured, else supplied, else devices x configured)
  bool power_measured = false;
  bool power_supplied = false;
  double cost_per_hour = 0;     // devices x device_hour + power x PUE x electricity
  double cost_per_day = 0;
  double revenue_per_day = 0;   // tokens/s x 86400 x served_fraction x blended prices
  double margin = 0;            // (revenue - cost) / cost
  double cost_per_m_output_tokens = 0;
  double cost_per_qps = 0;      // USD per hour per (request/s)
  double energy_per_request_j = 0;  // power x PUE / (requests/s): facility energy
  double w_per_qps = 0;             // device power / (requests/s)
};
Economics economics(const CostDefaults& d, const MeasuredThroughput& t);

struct DynPriceHour {
  int hour = 0;
  double util_flat = 0;     // utilization at the flat price
  double price_mult = 1;    // 1 + price change
  double demand = 0;        // util_flat x price_mult^elasticity
  double util_dyn = 0;      // min(1, demand): capacity caps what is served
  double revenue_flat = 0;  // in full-capacity-hours at list price
  double revenue_dyn = 0;
  double cost_flat = 0;     // USD: hardware + energy at that utilization
  double cost_dyn = 0;
};
struct DynPriceResult {
  double revenue_flat = 0, revenue_dyn = 0, cost_flat = 0, cost_dyn = 0;
  double revenue_change = 0;  // dyn / flat - 1
  double cost_change = 0;
  double lost_demand = 0;     // demand above capacity, in capacity-hours
  std::vector<DynPriceHour> hours;
};
DynPriceResult simulate_dynamic_pricing(const CostDefaults& d);

// watts x hours / 1000 x price per kWh (300 W, 24 h, 0.8 -> 5.76).
double power_day_cost(double watts, double hours, double price_per_kwh);

// The "cost" suite: DeepSeek margins, dyn-price and power-day always (noise exact); the measured
// economics only when `measured` carries the keys they need (else those claims read NOT MEASURED).
SuiteResult cost_suite(const RunData* measured, const CostDefaults& d);

}  // namespace cb::harness
