#include "cb/harness/load/experiments.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace cb::harness::load {
using nlohmann::json;

namespace {
std::string g(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}
json num_or_null(double v) { return std::isfinite(v) ? json(v) : json(); }
}  // namespace

InProcessConfig inprocess_config_from_json(const json& j, InProcessConfig c, const std::string& where) {
  if (!j.is_object()) throw WorkloadError(where + ": expected an object");
  for (const auto& [k, v] : j.items()) {
    const std::string at = where + "." + k;
    auto need_num = [&] {
      if (!v.is_number()) throw WorkloadError(at + ": expected a number, got " + v.dump());
      return v.get<double>();
    };
    auto need_int = [&](int lo) {
      const double x = need_num();
      if (x != std::floor(x) || x < lo) throw WorkloadError(at + ": expected an integer >= " + std::to_string(lo) + ", got " + v.dump());
      return int(x);
    };
    if (!k.empty() && k[0] == '$') continue;
    if (k == "label") c.label = v.get<std::string>();
    else if (k == "policy") {
      if (!v.is_string()) throw WorkloadError(at + ": expected a string");
      c.policy = v.get<std::string>();
      if (c.policy != "static" && c.policy != "queue-table" && c.policy != "slo")
        throw WorkloadError(at + ": unknown policy '" + c.policy + "' (expected static, queue-table, slo)");
    } else if (k == "static_batch") c.static_batch = need_int(1);
    else if (k == "static_timeout_s") c.static_timeout_s = need_num();
    else if (k == "slo_tpot_ms") c.slo_tpot_ms = need_num();
    else if (k == "kv_mode") {
      const std::string m = v.is_string() ? v.get<std::string>() : "";
      if (m == "paged") c.kv_mode = KvMode::Paged;
      else if (m == "contiguous") c.kv_mode = KvMode::Contiguous;
      else throw WorkloadError(at + ": expected \"paged\" or \"contiguous\", got " + v.dump());
    } else if (k == "kv_pool_tokens") c.kv_pool_tokens = need_int(1);
    else if (k == "block_size") c.block_size = need_int(1);
    else if (k == "contiguous_reserve") c.contiguous_reserve = need_int(0);
    else if (k == "token_budget") c.token_budget = need_int(1);
    else if (k == "max_queue") c.max_queue = need_int(1);
    else
      throw WorkloadError(at + ": unknown key (expected label, policy, static_batch, static_timeout_s, slo_tpot_ms, kv_mode, "
                               "kv_pool_tokens, block_size, contiguous_reserve, token_budget, max_queue)");
  }
  return c;
}

std::string slo_verdict(const RunSummary& s, const Slo& slo) {
  std::string out;
  // Appended, not "p" + g(...): GCC 12 reports a false -Wrestrict overlap in operator+(const char*,
  // string&&) at -O3 (GCC PR 105329).
  std::string p = "p";
  p += g(slo.percentile);
  p += ' ';
  auto add = [&](const std::string& what) {
    if (!out.empty()) out += "; ";
    out += what;
  };
  auto check = [&](const std::string& name, double got, double limit) {
    if (got > limit) add(p + name + " " + g(got) + " ms > " + g(limit) + " ms");
  };
  check("ttft", s.slo_ttft_ms, slo.ttft_ms);
  check("tpot", s.slo_tpot_ms, slo.tpot_ms);
  check("e2e", s.slo_e2e_ms, slo.e2e_ms);
  if (s.completed == 0) add("no request completed");
  return out.empty() ? "meets SLO" : out;
}

Measured measure(LoadContext& ctx, const WorkloadSpec& w, const InProcessConfig& cfg, const std::string& label,
                 const MeasureOptions& mo) {
  PlanOptions po = ctx.plan;
  po.rate_rps = mo.rate_rps;
  po.concurrency = mo.concurrency;
  const Plan plan = make_plan(w, po);  // prompts built here, before the timed run
  std::unique_ptr<Sut> sut = ctx.make_sut(cfg);
  Measured m;
  m.label = label;
  RunOptions ro = ctx.run;
  ro.stop_when_slo_unreachable = mo.stop_when_slo_unreachable;
  std::unique_ptr<MetricsSampler> sampler = ctx.make_sampler ? ctx.make_sampler() : nullptr;
  if (sampler) {
    sampler->start();
    MetricsSampler* sp = sampler.get();
    ro.on_start = [sp] { sp->mark_run_start(); };
  }
  m.result = run_load(*sut, plan, w.slo, w.validity, ro);
  if (sampler) sampler->stop();
  m.sut = sut->describe();  // after the run: it records what the run opened (connections)
  sut.reset();  // joins the engine / connection threads before the next run starts
  const RunResult& r = m.result;
  const RunSummary& s = r.summary;
  const std::string wl = mo.table_workload.empty() ? w.name : mo.table_workload;
  const double rate = plan.closed_loop ? 0.0 : plan.rate_rps;

  if (ctx.say) {
    if (!r.abandoned.empty()) ctx.say(label + ": stopped early, the SLO is out of reach: " + r.abandoned);
    ctx.say(label + ": " + std::to_string(s.completed) + "/" + std::to_string(s.issued) + " done in " + g(s.duration_s) + " s, " +
            g(s.requests_per_s) + " req/s, " + g(s.output_tokens_per_s) + " tok/s, p99 ttft " + g(s.ttft_ms.p99) + " ms, p99 e2e " +
            g(s.e2e_ms.p99) + " ms; " + slo_verdict(s, w.slo));
    ctx.say(label + ": " + r.validity.line());
  }
  json entry = {{"workload", w.name},
                {"quick_variant", w.quick},
                {"sut", m.sut},
                {"seeds", plan.seeds.to_json()},
                {"requested", r.requested},
                {"effective", r.effective},
                {"slo", w.slo.to_json()},
                {"validity_rules", w.validity.to_json()},
                {"validity", r.validity.to_json()},
                {"summary", s.to_json()},
                {"slo_verdict", slo_verdict(s, w.slo)}};
  // A few distinct error messages per kind, so a failing run says why without the raw records.
  json samples = json::object();
  for (const auto& rec : r.records) {
    if (rec.issued_s < 0 || rec.completed()) continue;
    json& list = samples[to_string(rec.error)];
    if (list.size() < 3 && std::find(list.begin(), list.end(), rec.error_message) == list.end()) list.push_back(rec.error_message);
  }
  if (!samples.empty()) entry["error_samples"] = samples;
  const double busy = r.busy_fraction();
  if (std::isfinite(busy)) entry["steady_busy_fraction"] = busy;
  if (r.at_end && m.sut.value("sut", "") == "inprocess") {  // over HTTP the counters are the server's lifetime totals
    entry["engine"] = {{"kv_bytes_reserved_peak", r.at_end->kv_bytes_reserved_peak},
                       {"kv_bytes_used_peak", r.at_end->kv_bytes_used_peak},
                       {"preemptions", r.at_end->preemptions},
                       {"steps", r.at_end->steps}};
  }
  if (sampler) {
    m.server_metrics = sampler->summary(r.steady_begin_s, r.steady_end_s);
    json sm = sampler->to_json();
    sm["steady_window"] = m.server_metrics->to_json();
    sm["steady_window"]["from_s"] = r.steady_begin_s;
    sm["steady_window"]["to_s"] = r.steady_end_s;
    sm["time_base"] = "t_s from the run's time zero (after the SUT's prepare()); samples before it have t_s < 0";
    entry["server_metrics"] = sm;
  }
  ctx.runs[label] = entry;

  if (mo.sweep_row)
    ctx.sweep_rows.push_back({{"workload", wl},
                              {"rate_rps", plan.closed_loop ? json() : json(rate)},
                              {"throughput_rps", s.requests_per_s},
                              {"tokens_per_s", s.output_tokens_per_s},
                              {"p99_ttft_ms", num_or_null(s.ttft_ms.p99)},
                              {"p99_e2e_ms", num_or_null(s.e2e_ms.p99)},
                              {"goodput_rps", s.goodput_rps},
                              {"run", label},
                              {"config", cfg.label},
                              {"concurrency", plan.closed_loop ? json(plan.concurrency) : json()},
                              {"p99_tpot_ms", num_or_null(s.tpot_ms.p99)},
                              {"errors", s.failed},
                              {"slo_met", s.slo_met},
                              {"valid", r.validity.valid}});
  if (mo.requests_table) {
    for (const auto& rec : r.records) {
      if (!rec.completed()) continue;
      if (ctx.request_rows.size() >= ctx.max_request_rows) {
        ++ctx.request_rows_dropped;
        continue;
      }
      ctx.request_rows.push_back({{"workload", wl},
                                  {"rate_rps", plan.closed_loop ? json() : json(rate)},
                                  {"ttft_ms", rec.ttft_s() * 1e3},
                                  {"tpot_ms", num_or_null(rec.tpot_s() * 1e3)},
                                  {"e2e_ms", rec.e2e_s() * 1e3},
                                  {"output_tokens", rec.output_tokens},
                                  {"prompt_tokens", rec.prompt_tokens},
                                  {"issued_s", rec.issued_s}});
    }
  }
  return m;
}

SloSearchResult search_max_rate(LoadContext& ctx, const WorkloadSpec& w, const InProcessConfig& cfg, const std::string& label,
                                const SloSearchOptions& so, const std::string& table_workload) {
  int k = 0;
  // Invalid only because the generator fell behind its schedule (a host hiccup, not the SUT's
  // doing)? Then the trial says nothing either way: run it once more with the same seeds. Both
  // runs stay in params and the sweep table.
  auto lag_only = [](const Validity& v) {
    bool lag = false, other = false;
    for (const auto& c : v.conditions) {
      if (c.ok) continue;
      if (c.name == "issue_lag") lag = true;
      else other = true;
    }
    return lag && !other;
  };
  auto trial = [&](double rate) {
    MeasureOptions mo;
    mo.rate_rps = rate;
    mo.table_workload = table_workload;
    mo.stop_when_slo_unreachable = true;
    const std::string tl = label + ".trial" + std::to_string(++k) + "@" + g(rate);
    Measured m = measure(ctx, w, cfg, tl, mo);
    std::string retried;
    if (lag_only(m.result.validity) && m.result.summary.slo_met) {
      retried = tl;
      if (ctx.say) ctx.say(tl + ": invalid only by issue lag; running it once more");
      m = measure(ctx, w, cfg, tl + ".retry", mo);
    }
    SloTrial t;
    const RunSummary& s = m.result.summary;
    t.passed = s.slo_met && m.result.validity.valid;
    t.why = !m.result.abandoned.empty() ? "SLO out of reach, stopped early: " + m.result.abandoned
            : !m.result.validity.valid  ? m.result.validity.line()
                                        : slo_verdict(s, w.slo);
    t.detail = {{"run", m.label},
                {"retry_of", retried.empty() ? json() : json(retried)},
                {"throughput_rps", s.requests_per_s},
                {"output_tokens_per_s", s.output_tokens_per_s},
                {"goodput_rps", s.goodput_rps},
                {"slo_ttft_ms", num_or_null(s.slo_ttft_ms)},
                {"slo_tpot_ms", num_or_null(s.slo_tpot_ms)},
                {"slo_e2e_ms", num_or_null(s.slo_e2e_ms)},
                {"valid", m.result.validity.valid}};
    return t;
  };
  SloSearchResult r = slo_search(trial, so);
  if (ctx.say)
    ctx.say(label + ": max rate meeting the SLO " + g(r.max_rate_rps) + " req/s after " + std::to_string(r.trials.size()) +
            " trials (" + r.stop_reason + ")");
  return r;
}

}  // namespace cb::harness::load
