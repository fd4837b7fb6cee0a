// What the load generator records per request, and the summaries and validity rules built on it.
//
// Definitions (as MLPerf LoadGen: latency is taken from the scheduled arrival, so a generator that
// falls behind its schedule cannot hide the wait in its own queue: no coordinated omission):
//   TTFT  = first token (or first streamed chunk with tokens) - scheduled arrival
//   E2E   = completion - scheduled arrival
//   ..._from_send: the same from the moment the SUT put the request on the wire (reported beside;
//   the difference is the generator's and the client's own queueing)
//   TPOT  = (E2E - TTFT) / (output tokens - 1), only for requests with >= 2 output tokens
//   ITL   = time between consecutive token arrivals (chunks, over HTTP)
// Times are taken by the harness (steady_clock) in its own callbacks, never by the SUT.
// Percentiles are nearest-rank: the value at rank ceil(p/100 * n) of the sorted samples (1-based),
// so every reported percentile is a measured sample. The median is p50 by the same rule.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cb::harness::load {

// Why a request did not complete. Counted by kind in the run summary.
enum class ErrorKind {
  None,
  Connection,  // could not connect / connection dropped (HTTP)
  Http429,     // HTTP 429 Too Many Requests
  Http4xx,     // other 4xx
  Http5xx,     // 5xx
  Protocol,    // malformed response (bad SSE line, bad JSON, missing fields)
  Rejected,    // the in-process engine refused it (queue full: admission control)
  Invalid,     // the SUT refused the parameters (bad prompt, too long for the context)
  Engine,      // the engine ended it with an error or abort
  Short,       // completed with fewer tokens than asked (the load assumes fixed output lengths)
  Timeout,     // not finished when the run's drain deadline passed
  Abandoned,   // cut short: the run stopped once its SLO could no longer be met (SLO-search trials)
};
const char* to_string(ErrorKind k);

struct RequestRecord {
  int64_t index = 0;          // position in the run's plan
  double scheduled_s = 0;     // planned arrival, seconds from run start (closed loop: when its slot freed)
  double issued_s = -1;       // taken just before Sut::issue()
  double sent_s = -1;         // the SUT's on_sent (request written to the connection); issued_s when it has none
  double first_token_s = -1;
  double done_s = -1;         // completion or error
  int prompt_tokens = 0;
  int max_tokens = 0;
  int output_tokens = 0;
  std::vector<double> token_s;  // arrival time of each token chunk (for ITL)
  ErrorKind error = ErrorKind::None;
  std::string error_message;

  bool completed() const { return error == ErrorKind::None && done_s >= 0; }
  double ttft_s() const { return first_token_s - scheduled_s; }
  double e2e_s() const { return done_s - scheduled_s; }
  double send_s() const { return sent_s >= 0 ? sent_s : issued_s; }
  double ttft_from_send_s() const { return first_token_s - send_s(); }
  double e2e_from_send_s() const { return done_s - send_s(); }
  // (E2E - TTFT) / (n - 1); NaN when fewer than 2 output tokens.
  double tpot_s() const;
  double issue_lag_s() const { return issued_s - scheduled_s; }
  double send_lag_s() const { return send_s() - scheduled_s; }  // issue lag + the SUT's own queueing
};

// Nearest-rank percentile of v (p in (0, 100]); NaN for an empty v. Sorts a copy.
double percentile_nearest_rank(std::vector<double> v, double p);

struct Distribution {
  size_t n = 0;
  double mean = 0, median = 0, p90 = 0, p99 = 0, p999 = 0, min = 0, max = 0;  // NaN when n == 0
  nlohmann::json to_json() const;
};
Distribution summarize(const std::vector<double>& v);

// Latency limits; a limit left at +inf is not checked. Run-level checks use the `percentile`
// (default p99) over every issued request, failed ones counting as +inf: a SUT cannot meet an
// SLO by refusing work.
struct Slo {
  double ttft_ms = std::numeric_limits<double>::infinity();
  double tpot_ms = std::numeric_limits<double>::infinity();
  double e2e_ms = std::numeric_limits<double>::infinity();
  double percentile = 99;
  bool any() const;
  nlohmann::json to_json() const;  // only the limits that are set
};
Slo slo_from_json(const nlohmann::json& j, const std::string& where);

// Per request: completed and within every set limit (TPOT unchecked for 1-token answers).
bool meets_slo(const RequestRecord& r, const Slo& slo);

struct RunSummary {
  size_t issued = 0, completed = 0, failed = 0;
  std::map<std::string, size_t> errors_by_kind;
  double duration_s = 0;        // run start (t = 0) to the last completion or error
  int64_t input_tokens = 0, output_tokens = 0;  // of completed requests
  double requests_per_s = 0, input_tokens_per_s = 0, output_tokens_per_s = 0;
  size_t good = 0;              // completed requests meeting every SLO limit
  double goodput_rps = 0;       // good / duration
  Distribution ttft_ms, tpot_ms, itl_ms, e2e_ms, issue_lag_ms;  // completed requests (issue lag: all issued)
  Distribution ttft_from_send_ms, e2e_from_send_ms, send_lag_ms;  // beside them: from the actual send
  // The SLO percentile of TTFT / TPOT / E2E over all issued requests (failed = +inf).
  double slo_ttft_ms = 0, slo_tpot_ms = 0, slo_e2e_ms = 0;
  bool slo_met = true;          // every set limit holds at the SLO percentile (and >= 1 completed)
  nlohmann::json to_json() const;
};
RunSummary summarize_run(const std::vector<RequestRecord>& records, const Slo& slo);

// MLPerf-style validity: every condition is checked and listed, pass or fail.
struct ValidityRules {
  double min_duration_s = 0;
  size_t min_completed = 0;
  double max_error_fraction = 0.01;
  double max_issue_lag_p99_ms = 10;  // the generator kept to its schedule (open loop only)
  nlohmann::json to_json() const;
};
struct Condition {
  std::string name;
  bool ok = true;
  std::string detail;  // "12.3 s >= 10 s"
};
struct Validity {
  bool valid = true;
  std::vector<Condition> conditions;
  std::string line() const;     // "VALID (duration 12.3 s >= 10 s; ...)" / "INVALID (duration: 3.1 s < 10 s; ...)"
  std::vector<std::string> reasons() const;  // the failing conditions only
  nlohmann::json to_json() const;
};
// Conditions: duration, completed count, error fraction, drained (no request still open at the
// drain deadline), and for open-loop runs the generator's p99 issue lag.
Validity check_validity(const RunSummary& s, const ValidityRules& rules, bool open_loop);

}  // namespace cb::harness::load
