#include "cb/engine/serving/serving_engine.h"
#include "cb/engine/model/planted_defects.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <type_traits>

namespace cb::engine {

ServingEngine::ServingEngine(LoadedModel& model, EngineOptions opt) : model_(model), opt_(std::move(opt)) {
  if (opt_.token_budget < 1) throw std::invalid_argument("token_budget must be >= 1");
  auto policy = opt_.custom_policy ? std::move(opt_.custom_policy) : make_policy(opt_.policy);
  // kv_config(): under tensor parallelism this rank stores only its KV heads.
  kv_ = std::make_unique<KvCache>(model_.backend(), model_.kv_config(), opt_.num_blocks, opt_.block_size);
  device_busy_base_ = model_.backend().device_busy_seconds().value_or(0);
  const ModelConfig& cfg = model_.config();
  SchedulerOptions so;
  so.num_blocks = opt_.num_blocks;
  so.block_size = opt_.block_size;
  so.prefix_cache = opt_.prefix_cache;
  so.kv_mode = opt_.kv_mode;
  so.kv_placement = opt_.kv_placement;
  so.contiguous_reserve = opt_.contiguous_reserve;
  so.token_budget = opt_.token_budget;
  // Copies go through the model: a tensor-parallel leader forwards them to its followers with the
  // next step.
  sched_ = std::make_unique<Scheduler>(so, ModelLimits{cfg.vocab_size, cfg.max_position_embeddings, cfg.eos_token_id, cfg.extra_eos_token_ids},
                                       std::move(policy),
                                       [this](std::span<const BlockCopy> copies) {
                                         std::vector<std::pair<int32_t, int32_t>> pairs;
                                         pairs.reserve(copies.size());
                                         for (const BlockCopy& c : copies) pairs.emplace_back(c.src, c.dst);
                                         model_.model().copy_kv_blocks(*kv_, pairs);
                                       },
                                       steady_seconds);
  opt_.contiguous_reserve = sched_->options().contiguous_reserve;
}

ServingEngine::~ServingEngine() = default;

void ServingEngine::validate(const RequestParams& p) const { sched_->validate(p); }
RequestId ServingEngine::add_request(RequestParams p, TokenCallback on_token) { return sched_->add(std::move(p), std::move(on_token)); }
void ServingEngine::abort(RequestId id) { sched_->abort(id); }
bool ServingEngine::idle() const { return sched_->idle(); }
bool ServingEngine::stalled() const { return sched_->stalled(); }

bool ServingEngine::step() {
  if (sched_->idle()) return false;
  if (planted(Defect::AnswerCache) && sched_->serve_cached_answers()) return true;
  const double plan_start = steady_seconds();
  const StepPlan plan = sched_->schedule();
  if (plan.chunks.empty()) return plan.keep_going;

  std::vector<SeqStep> batch;
  batch.reserve(plan.chunks.size());
  for (const ScheduledChunk& c : plan.chunks) batch.push_back(SeqStep{c.tokens, c.pos0, c.block_table, false});
  const double t_fwd = steady_seconds();
  const std::vector<float> logits = model_.model().forward(batch, *kv_);
  if (planted(Defect::BusyLoop)) {  // planted defect: twice as long again inside the timed region, no work
    const double until = steady_seconds() + 2 * (steady_seconds() - t_fwd);
    while (steady_seconds() < until) {
    }
  }
  const double fwd = steady_seconds() - t_fwd;
  sched_->update_from_output(plan, logits, fwd);

  const double end = steady_seconds();
  ++stats_.steps;
  stats_.busy_seconds += fwd;
  if (const auto d = model_.backend().device_busy_seconds()) stats_.device_busy_seconds = *d - device_busy_base_;
  if (opt_.record_steps) {
    step_seconds_.push_back(end - plan_start);
    step_forward_seconds_.push_back(fwd);
    step_batch_.push_back(int(plan.chunks.size()));
    step_tokens_.push_back(plan.tokens());
    step_queue_.push_back(plan.view.queued);
    step_running_.push_back(plan.running_before);
  }
  account_kv();
  return true;
}

void ServingEngine::account_kv() {
  const BlockStats b = sched_->blocks().stats();
  stats_.kv_bytes_reserved = size_t(b.used_blocks) * kv_->bytes_per_block();
  stats_.kv_bytes_used = size_t(b.tokens_stored) * kv_->bytes_per_token();
  stats_.kv_bytes_reserved_peak = std::max(stats_.kv_bytes_reserved_peak, stats_.kv_bytes_reserved);
  stats_.kv_bytes_used_peak = std::max(stats_.kv_bytes_used_peak, stats_.kv_bytes_used);
}

void ServingEngine::run_until_idle() {
  while (step()) {
    // Static batching waiting for its timeout: nothing can arrive here, so sleep, don't spin.
    if (stalled()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

EngineStats ServingEngine::stats() const { return stats_since(0); }

EngineStats ServingEngine::stats_since(size_t first_step) const {
  EngineStats s = stats_;  // cheap: its step vectors are empty
  auto tail = [first_step](const auto& v) {
    using V = std::decay_t<decltype(v)>;
    return first_step >= v.size() ? V{} : V(v.begin() + std::ptrdiff_t(first_step), v.end());
  };
  s.step_seconds = tail(step_seconds_);
  s.step_forward_seconds = tail(step_forward_seconds_);
  s.step_batch = tail(step_batch_);
  s.step_tokens = tail(step_tokens_);
  s.step_queue = tail(step_queue_);
  s.step_running = tail(step_running_);
  const SchedulerCounters& c = sched_->counters();
  s.prefill_tokens = c.prefill_tokens;
  s.decode_tokens = c.decode_tokens;
  s.kv_tokens_read = c.kv_tokens_read;
  s.preemptions = c.preemptions;
  s.finished_requests = c.finished_requests;
  s.queued = sched_->queued();
  s.running = sched_->running_requests();
  s.running_seqs = sched_->running_sequences();
  s.wall_seconds = sched_->first_arrival() < 0 ? 0 : steady_seconds() - sched_->first_arrival();
  s.blocks = sched_->blocks().stats();
  if (const Model::StepGraphStats& g = model_.model().step_graph_stats(); g.enabled) s.step_graphs = g;
  return s;
}

}  // namespace cb::engine
