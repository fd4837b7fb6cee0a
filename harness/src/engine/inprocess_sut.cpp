#include "cb/harness/engine/inprocess_sut.h"

#include <stdexcept>

namespace cb::harness::load {
using nlohmann::json;

InProcessSut::InProcessSut(engine::LoadedModel& model, InProcessConfig cfg) : model_(model), cfg_(std::move(cfg)) {
  engine::EngineOptions o;
  o.block_size = cfg_.block_size;
  o.num_blocks = (cfg_.kv_pool_tokens + cfg_.block_size - 1) / cfg_.block_size;
  o.kv_mode = cfg_.kv_mode == KvMode::Paged ? engine::KvMode::Paged : engine::KvMode::Contiguous;
  o.contiguous_reserve = cfg_.contiguous_reserve;
  o.token_budget = cfg_.token_budget;
  o.record_steps = false;  // only the scalar counters are read; keeps memory flat on long runs
  if (cfg_.policy == "static") o.custom_policy = engine::make_static_policy(cfg_.static_batch, cfg_.static_timeout_s);
  else if (cfg_.policy == "slo") o.custom_policy = engine::make_slo_policy(cfg_.slo_tpot_ms / 1e3);
  else o.policy = cfg_.policy;  // make_policy rejects unknown names, listing the known ones
  loop_ = std::make_unique<engine::EngineLoop>(model_, std::move(o), cfg_.max_queue);
}

InProcessSut::~InProcessSut() = default;  // EngineLoop's destructor aborts what runs and joins

json InProcessSut::describe() const {
  json j = cfg_.to_json();
  j["sut"] = "inprocess";
  j["model"] = model_.dir().filename().string();
  return j;
}

void InProcessSut::issue(const LoadRequest& req, SutCallbacks cb) {
  engine::RequestParams p;
  p.prompt = req.prompt;
  p.max_tokens = req.max_tokens;
  p.stop_at_eos = false;  // fixed output lengths: every configuration does the same work
  // The engine calls back on its loop thread; one request's events never overlap.
  auto shared = std::make_shared<SutCallbacks>(std::move(cb));
  auto on_event = [shared](const engine::TokenEvent& e) {
    if (!e.finished) {
      shared->on_tokens(1);
    } else if (e.finish_reason == "length" || e.finish_reason == "eos") {
      shared->on_complete(-1);
    } else {
      shared->on_error(ErrorKind::Engine, "engine ended the request: " + e.finish_reason);
    }
  };
  try {
    loop_->submit(std::move(p), on_event);
  } catch (const engine::QueueFullError& e) {
    shared->on_error(ErrorKind::Rejected, e.what());
  } catch (const std::invalid_argument& e) {
    shared->on_error(ErrorKind::Invalid, e.what());
  } catch (const std::exception& e) {
    shared->on_error(ErrorKind::Engine, e.what());
  }
}

namespace {
SutCounters counters_of(const engine::EngineStats& s) {
  SutCounters c;
  c.busy_seconds = s.busy_seconds;
  c.device_busy_seconds = s.device_busy_seconds.value_or(NAN);
  c.steps = s.steps;
  c.prefill_tokens = s.prefill_tokens;
  c.decode_tokens = s.decode_tokens;
  c.kv_tokens_read = s.kv_tokens_read;
  c.preemptions = s.preemptions;
  c.kv_bytes_reserved_peak = s.kv_bytes_reserved_peak;
  c.kv_bytes_used_peak = s.kv_bytes_used_peak;
  return c;
}
}  // namespace

std::optional<SutCounters> InProcessSut::counters() const { return counters_of(loop_->stats()); }

std::optional<SutCounters> InProcessSut::settled_counters() const {
  // Only requests the runner gave up on (already aborted) can still be in flight: a short wait.
  return counters_of(loop_->stats_when_settled(5.0));
}

void InProcessSut::abort_all() {
  // Rebuilding the loop aborts everything in flight (the old loop's destructor sends "abort" to
  // every callback) and leaves a usable, empty engine behind.
  loop_.reset();
  InProcessSut fresh(model_, cfg_);
  loop_ = std::move(fresh.loop_);
}

}  // namespace cb::harness::load
