// The in-process SUT: the reference engine on its own thread (cb::engine::EngineLoop). The load
// suite builds one per engine configuration it compares (batch policy, KV mode, token budget).
#pragma once

#include <memory>
#include <string>

#include "cb/engine/model/engine.h"
#include "cb/engine/serving/engine_loop.h"
#include "cb/harness/load/engine_config.h"
#include "cb/harness/load/sut.h"

namespace cb::harness::load {

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
