#include "cb/harness/load/stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace cb::harness::load {
using nlohmann::json;

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string fmt(double v, const char* unit) {
  char b[64];
  std::snprintf(b, sizeof b, "%.4g%s", v, unit);
  return b;
}

json num_or_null(double v) { return std::isfinite(v) ? json(v) : json(); }
}  // namespace

const char* to_string(ErrorKind k) {
  switch (k) {
    case ErrorKind::None: return "none";
    case ErrorKind::Connection: return "connection";
    case ErrorKind::Http429: return "http_429";
    case ErrorKind::Http4xx: return "http_4xx";
    case ErrorKind::Http5xx: return "http_5xx";
    case ErrorKind::Protocol: return "protocol";
    case ErrorKind::Rejected: return "rejected";
    case ErrorKind::Invalid: return "invalid";
    case ErrorKind::Engine: return "engine";
    case ErrorKind::Short: return "short";
    case ErrorKind::Timeout: return "timeout";
    case ErrorKind::Abandoned: return "abandoned";
  }
  return "unknown";
}

double RequestRecord::tpot_s() const {
  if (output_tokens < 2 || first_token_s < 0 || done_s < 0) return std::nan("");
  return (done_s - first_token_s) / double(output_tokens - 1);
}

double percentile_nearest_rank(std::vector<double> v, double p) {
  if (v.empty()) return std::nan("");
  if (!(p > 0 && p <= 100)) throw std::invalid_argument("percentile: p must be in (0, 100], got " + std::to_string(p));
  std::sort(v.begin(), v.end());
  // The tiny epsilon keeps e.g. p = 99.9, n = 1000 at rank 999 despite 99.9/100*1000 = 999.0000000000001.
  const double exact = p / 100.0 * double(v.size());
  size_t rank = size_t(std::ceil(exact - 1e-9));
  rank = std::clamp<size_t>(rank, 1, v.size());
  return v[rank - 1];
}

json Distribution::to_json() const {
  return {{"n", n}, {"mean", num_or_null(mean)}, {"median", num_or_null(median)}, {"p90", num_or_null(p90)},
          {"p99", num_or_null(p99)}, {"p99_9", num_or_null(p999)}, {"min", num_or_null(min)}, {"max", num_or_null(max)}};
}

Distribution summarize(const std::vector<double>& v) {
  Distribution d;
  d.n = v.size();
  if (v.empty()) {
    d.mean = d.median = d.p90 = d.p99 = d.p999 = d.min = d.max = std::nan("");
    return d;
  }
  double sum = 0;
  for (double x : v) sum += x;
  d.mean = sum / double(v.size());
  std::vector<double> s = v;
  std::sort(s.begin(), s.end());
  d.min = s.front();
  d.max = s.back();
  d.median = percentile_nearest_rank(s, 50);
  d.p90 = percentile_nearest_rank(s, 90);
  d.p99 = percentile_nearest_rank(s, 99);
  d.p999 = percentile_nearest_rank(s, 99.9);
  return d;
}

bool Slo::any() const { return std::isfinite(ttft_ms) || std::isfinite(tpot_ms) || std::isfinite(e2e_ms); }

json Slo::to_json() const {
  json j = {{"percentile", percentile}};
  if (std::isfinite(ttft_ms)) j["ttft_ms"] = ttft_ms;
  if (std::isfinite(tpot_ms)) j["tpot_ms"] = tpot_ms;
  if (std::isfinite(e2e_ms)) j["e2e_ms"] = e2e_ms;
  return j;
}

Slo slo_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw std::invalid_argument(where + ": expected an object");
  Slo s;
  for (const auto& [k, v] : j.items()) {
    if (!v.is_number() || v.get<double>() <= 0)
      throw std::invalid_argument(where + "." + k + ": expected a positive number");
    const double x = v.get<double>();
    if (k == "ttft_ms") s.ttft_ms = x;
    else if (k == "tpot_ms") s.tpot_ms = x;
    else if (k == "e2e_ms") s.e2e_ms = x;
    else if (k == "percentile") {
      if (x > 100) throw std::invalid_argument(where + ".percentile: must be in (0, 100]");
      s.percentile = x;
    } else {
      throw std::invalid_argument(where + "." + k + ": unknown key (expected ttft_ms, tpot_ms, e2e_ms, percentile)");
    }
  }
  return s;
}

bool meets_slo(const RequestRecord& r, const Slo& slo) {
  if (!r.completed()) return false;
  if (r.ttft_s() * 1e3 > slo.ttft_ms) return false;
  if (r.e2e_s() * 1e3 > slo.e2e_ms) return false;
  const double tpot = r.tpot_s();
  if (std::isfinite(tpot) && tpot * 1e3 > slo.tpot_ms) return false;
  return true;
}

json RunSummary::to_json() const {
  return {{"issued", issued},
          {"completed", completed},
          {"failed", failed},
          {"errors_by_kind", errors_by_kind},
          {"duration_s", duration_s},
          {"input_tokens", input_tokens},
          {"output_tokens", output_tokens},
          {"requests_per_s", requests_per_s},
          {"input_tokens_per_s", input_tokens_per_s},
          {"output_tokens_per_s", output_tokens_per_s},
          {"good", good},
          {"goodput_rps", goodput_rps},
          {"ttft_ms", ttft_ms.to_json()},
          {"tpot_ms", tpot_ms.to_json()},
          {"itl_ms", itl_ms.to_json()},
          {"e2e_ms", e2e_ms.to_json()},
          {"issue_lag_ms", issue_lag_ms.to_json()},
          {"ttft_from_send_ms", ttft_from_send_ms.to_json()},
          {"e2e_from_send_ms", e2e_from_send_ms.to_json()},
          {"send_lag_ms", send_lag_ms.to_json()},
          {"latency_origin", "scheduled arrival (ttft_ms, e2e_ms); *_from_send_ms: from the SUT's send"},
          {"slo_ttft_ms", num_or_null(slo_ttft_ms)},
          {"slo_tpot_ms", num_or_null(slo_tpot_ms)},
          {"slo_e2e_ms", num_or_null(slo_e2e_ms)},
          {"slo_met", slo_met}};
}

RunSummary summarize_run(const std::vector<RequestRecord>& records, const Slo& slo) {
  RunSummary s;
  std::vector<double> ttft, tpot, itl, e2e, lag, ttft_send, e2e_send, send_lag;
  std::vector<double> all_ttft, all_tpot, all_e2e;  // failed requests as +inf, for the SLO check
  double end = 0;
  for (const auto& r : records) {
    if (r.issued_s < 0) continue;  // never issued (run stopped early)
    ++s.issued;
    lag.push_back(r.issue_lag_s() * 1e3);
    send_lag.push_back(r.send_lag_s() * 1e3);
    end = std::max(end, std::max(r.done_s, r.issued_s));
    if (!r.completed()) {
      ++s.failed;
      ++s.errors_by_kind[to_string(r.error)];
      all_ttft.push_back(kInf);
      all_tpot.push_back(kInf);
      all_e2e.push_back(kInf);
      continue;
    }
    ++s.completed;
    s.input_tokens += r.prompt_tokens;
    s.output_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s() * 1e3);
    e2e.push_back(r.e2e_s() * 1e3);
    ttft_send.push_back(r.ttft_from_send_s() * 1e3);
    e2e_send.push_back(r.e2e_from_send_s() * 1e3);
    all_ttft.push_back(ttft.back());
    all_e2e.push_back(e2e.back());
    const double tp = r.tpot_s();
    if (std::isfinite(tp)) {
      tpot.push_back(tp * 1e3);
      all_tpot.push_back(tp * 1e3);
    }
    for (size_t i = 1; i < r.token_s.size(); ++i) itl.push_back((r.token_s[i] - r.token_s[i - 1]) * 1e3);
    if (meets_slo(r, slo)) ++s.good;
  }
  s.duration_s = end;
  if (end > 0) {
    s.requests_per_s = double(s.completed) / end;
    s.input_tokens_per_s = double(s.input_tokens) / end;
    s.output_tokens_per_s = double(s.output_tokens) / end;
    s.goodput_rps = double(s.good) / end;
  }
  s.ttft_ms = summarize(ttft);
  s.tpot_ms = summarize(tpot);
  s.itl_ms = summarize(itl);
  s.e2e_ms = summarize(e2e);
  s.issue_lag_ms = summarize(lag);
  s.ttft_from_send_ms = summarize(ttft_send);
  s.e2e_from_send_ms = summarize(e2e_send);
  s.send_lag_ms = summarize(send_lag);
  s.slo_ttft_ms = percentile_nearest_rank(all_ttft, slo.percentile);
  s.slo_tpot_ms = percentile_nearest_rank(all_tpot, slo.percentile);
  s.slo_e2e_ms = percentile_nearest_rank(all_e2e, slo.percentile);
  // TPOT has no sample when every answer is one token long: then its limit has nothing to check
  // (!(NaN > x) holds). TTFT and E2E always have samples once a request was issued.
  s.slo_met = s.completed > 0 && !(s.slo_ttft_ms > slo.ttft_ms) && !(s.slo_e2e_ms > slo.e2e_ms) &&
              !(s.slo_tpot_ms > slo.tpot_ms);
  return s;
}

json ValidityRules::to_json() const {
  return {{"min_duration_s", min_duration_s},
          {"min_completed", min_completed},
          {"max_error_fraction", max_error_fraction},
          {"max_issue_lag_p99_ms", max_issue_lag_p99_ms}};
}

std::string Validity::line() const {
  std::string out = valid ? "VALID (" : "INVALID (";
  for (size_t i = 0; i < conditions.size(); ++i) {
    const auto& c = conditions[i];
    out += (i ? "; " : "") + c.name + (c.ok ? " ok: " : " FAILED: ") + c.detail;
  }
  return out + ")";
}

std::vector<std::string> Validity::reasons() const {
  std::vector<std::string> r;
  for (const auto& c : conditions)
    if (!c.ok) r.push_back(c.name + ": " + c.detail);
  return r;
}

json Validity::to_json() const {
  json conds = json::array();
  for (const auto& c : conditions) conds.push_back({{"name", c.name}, {"ok", c.ok}, {"detail", c.detail}});
  return {{"valid", valid}, {"line", line()}, {"conditions", conds}};
}

Validity check_validity(const RunSummary& s, const ValidityRules& rules, bool open_loop) {
  Validity v;
  auto add = [&](const std::string& name, bool ok, const std::string& detail) {
    v.conditions.push_back({name, ok, detail});
    v.valid = v.valid && ok;
  };
  add("duration", s.duration_s >= rules.min_duration_s,
      fmt(s.duration_s, " s") + (s.duration_s >= rules.min_duration_s ? " >= " : " < ") + fmt(rules.min_duration_s, " s"));
  add("completed", s.completed >= rules.min_completed,
      std::to_string(s.completed) + (s.completed >= rules.min_completed ? " >= " : " < ") + std::to_string(rules.min_completed));
  const double err = s.issued ? double(s.failed) / double(s.issued) : 0.0;
  std::string kinds;
  for (const auto& [k, n] : s.errors_by_kind) kinds += (kinds.empty() ? " [" : ", ") + k + " " + std::to_string(n);
  if (!kinds.empty()) kinds += "]";
  add("errors", err <= rules.max_error_fraction,
      fmt(err, "") + (err <= rules.max_error_fraction ? " <= " : " > ") + fmt(rules.max_error_fraction, "") + kinds);
  const auto to = s.errors_by_kind.find(to_string(ErrorKind::Timeout));
  const size_t open = to == s.errors_by_kind.end() ? 0 : to->second;
  add("drained", open == 0, std::to_string(open) + " request(s) still open at the drain deadline");
  if (open_loop) {
    const double lag = s.issue_lag_ms.n ? s.issue_lag_ms.p99 : 0.0;
    add("issue_lag", lag <= rules.max_issue_lag_p99_ms,
        "p99 " + fmt(lag, " ms") + (lag <= rules.max_issue_lag_p99_ms ? " <= " : " > ") + fmt(rules.max_issue_lag_p99_ms, " ms"));
  }
  return v;
}

}  // namespace cb::harness::load
