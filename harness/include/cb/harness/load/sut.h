// The system-under-test interface of the load generator (as in MLPerf LoadGen: the harness issues
// requests and takes every timestamp; the SUT only answers).
//
// issue() must return without waiting for the answer (an open-loop generator cannot block on the
// SUT). The SUT then calls, from any thread, on_tokens for each token (or streamed chunk of
// tokens) and exactly one of on_complete / on_error last; calls for one request never overlap.
// The harness timestamps inside those callbacks, so a callback must be called when the tokens
// arrive, not batched up later.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/harness/load/stats.h"

namespace cb::harness::load {

struct LoadRequest {
  int64_t index = 0;
  std::vector<int32_t> prompt;  // token ids, built before the timed run
  int max_tokens = 16;          // the load assumes exactly this many tokens come back (EOS ignored)
  // The prompt as text, for servers that take no token ids (built with the plan, outside the
  // timed run); `prompt` is then the tokenizer's encoding of this text.
  std::string text;
};

struct SutCallbacks {
  // The request is being written to the connection now (optional: a SUT that queues requests
  // before sending them calls it, so latency from the actual send can be reported beside latency
  // from the scheduled arrival). At most once, before any other callback.
  std::function<void()> on_sent;
  std::function<void(int tokens)> on_tokens;  // tokens >= 1 arrived now
  // Done. reported_tokens: the SUT's own count of output tokens (e.g. an HTTP usage object), or -1
  // when it has none; the harness then uses the tokens it saw.
  std::function<void(int reported_tokens)> on_complete;
  std::function<void(ErrorKind, const std::string&)> on_error;
};

// Engine-side counters an in-process SUT can expose for utilization windows (deltas between two
// samples are what the suite reports).
struct SutCounters {
  double busy_seconds = 0;   // inside the model's forward pass
  double device_busy_seconds = NAN;  // the device's own time in those passes (NaN: host backend)
  int64_t steps = 0;
  int64_t prefill_tokens = 0, decode_tokens = 0;
  int64_t kv_tokens_read = 0;
  int64_t preemptions = 0;
  size_t kv_bytes_reserved_peak = 0, kv_bytes_used_peak = 0;
};

class Sut {
 public:
  virtual ~Sut() = default;
  virtual std::string name() const = 0;
  virtual nlohmann::json describe() const = 0;  // its configuration, recorded in params
  virtual void issue(const LoadRequest& req, SutCallbacks cb) = 0;
  // Called before the timed window with the number of requests expected in flight at once: a SUT
  // that opens connections opens them now, so that connecting is not measured as latency.
  virtual void prepare(int /*expected_in_flight*/) {}
  // Engine counters now, when the SUT can see inside (in-process only).
  virtual std::optional<SutCounters> counters() const { return std::nullopt; }
  // Counters once every request the client saw finish is also counted by the engine (a client
  // sees its last token inside an engine step, before that step's counters are published).
  virtual std::optional<SutCounters> settled_counters() const { return counters(); }
  // Ends what is still running (after a drain timeout); callbacks then report errors or nothing.
  virtual void abort_all() {}
};

// Answers on the caller's thread at once: max_tokens synthetic tokens, then completion. A run
// against it measures the load generator's own overhead (issue lag, callback and record cost).
class NullSut : public Sut {
 public:
  std::string name() const override { return "null"; }
  nlohmann::json describe() const override;
  void issue(const LoadRequest& req, SutCallbacks cb) override;
};

}  // namespace cb::harness::load
