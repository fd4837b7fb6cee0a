// The in-process SUT: the reference engine on its own thread (cb::engine::EngineLoop). The load
// suite builds one per engine configuration it compares (batch policy, KV mode, token budget).
#pragma once

#include <memory>
#include <string>

#include "cb/engine/engine.h"
#include "cb/engine/engine_loop.h"
#include "cb/harness/load/sut.h"

namespace cb::harness::load {

struct InProcessConfig {
  std::string label = "engine";        // names the configuration in params and tables
  std::string policy = "queue-table";  // "static", "queue-table", "slo"
  int static_batch = 8;                // static policy: batch size and fill timeout
  double static_timeout_s = 0.05;
  double slo_tpot_ms = 50;             // slo policy: TPOT target
  engine::KvMode kv_mode = engine::KvMode::Paged;
  int kv_pool_tokens = 1 << 16;        // KV pool size (tokens over all sequences)
  int block_size = 16;
  int contiguous_reserve = 0;          // tokens reserved per sequence in contiguous mode (0 = context)
  int token_budget = 512;              // tokens per step; >= the longest prompt = no chunked prefill
  int max_queue = 4096;                // admission control: beyond this, requests are rejected
  nlohmann::json to_json() const;
};

class InProcessSut : public Sut {
 public:
  InProcessSut(engine::LoadedModel& model, InProcessConfig cfg);
  ~InProcessSut() override;
  std::string name() const override { return "inprocess:" + cfg_.label; }
  nlohmann::json describe() const override;
  void issue(const LoadRequest& req, SutCallbacks cb) override;
  std::optional<SutCounters> counters() const override;
  std::optional<SutCounters> settled_counters() const override;
  void abort_all() override;
  engine::EngineStats stats() const { return loop_->stats(); }

 private:
  engine::LoadedModel& model_;
  InProcessConfig cfg_;
  std::unique_ptr<engine::EngineLoop> loop_;
};

}  // namespace cb::harness::load
