#include "cb/engine/serving_engine.h"
#include "cb/engine/planted_defects.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <type_traits>

namespace cb::engine {

namespace {
double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}
}  // namespace

// One sample of a request. Its KV holds tokens[0, computed); tokens past `computed` are fed in
// the next steps (the whole prompt at first, then the one token sampled last), so prefill chunks
// and decodes are the same operation.
struct ServingEngine::Sequence {
  SeqId id = 0;
  int sample = 0;
  std::vector<int32_t> tokens;
  int computed = 0;
  int generated = 0;
  bool finished = false;
  bool holds_blocks = false;
  Sampler sampler;
  Sequence(SeqId i, int s, std::vector<int32_t> t, const SamplingParams& sp) : id(i), sample(s), tokens(std::move(t)), sampler(sp) {}
};

struct ServingEngine::Request {
  RequestId id = 0;
  RequestParams p;
  TokenCallback cb;
  double arrival = 0;
  std::vector<Sequence> seqs;  // sample 0 only until the prompt is prefilled, then n
  bool forked = false;
  bool admitted = false;
  bool done = false;
  int unfinished() const {
    int n = 0;
    for (const auto& s : seqs) n += !s.finished;
    return n + (forked ? 0 : p.n - 1);  // samples not forked yet still count
  }
};

struct ServingEngine::Planned {
  Request* req;
  Sequence* seq;
  int chunk;
};

ServingEngine::ServingEngine(LoadedModel& model, EngineOptions opt) : model_(model), opt_(std::move(opt)) {
  if (opt_.token_budget < 1) throw std::invalid_argument("token_budget must be >= 1");
  policy_ = opt_.custom_policy ? std::move(opt_.custom_policy) : make_policy(opt_.policy);
  // kv_config(): under tensor parallelism this rank stores only its KV heads.
  kv_ = std::make_unique<KvCache>(model_.backend(), model_.kv_config(), opt_.num_blocks, opt_.block_size);
  // The contiguous baseline never shares a prefix: it reserves per sequence.
  blocks_ = std::make_unique<BlockManager>(opt_.num_blocks, opt_.block_size,
                                           opt_.prefix_cache && opt_.kv_mode == KvMode::Paged);
  if (opt_.contiguous_reserve <= 0) opt_.contiguous_reserve = model_.config().max_position_embeddings;
}

ServingEngine::~ServingEngine() = default;

void ServingEngine::validate(const RequestParams& p) const {
  const ModelConfig& cfg = model_.config();
  if (p.prompt.empty()) throw std::invalid_argument("prompt: empty");
  for (size_t i = 0; i < p.prompt.size(); ++i)
    if (p.prompt[i] < 0 || p.prompt[i] >= cfg.vocab_size)
      throw std::invalid_argument("prompt: token #" + std::to_string(i) + " = " + std::to_string(p.prompt[i]) +
                                  " is outside the vocabulary [0, " + std::to_string(cfg.vocab_size) + ")");
  if (p.max_tokens <= 0) throw std::invalid_argument("max_tokens: must be > 0 (got " + std::to_string(p.max_tokens) + ")");
  if (p.n < 1) throw std::invalid_argument("n: must be >= 1 (got " + std::to_string(p.n) + ")");
  p.sampling.validate();
  const int total = int(p.prompt.size()) + p.max_tokens;
  if (total > cfg.max_position_embeddings)
    throw std::invalid_argument("prompt (" + std::to_string(p.prompt.size()) + " tokens) + max_tokens (" +
                                std::to_string(p.max_tokens) + ") exceeds the model's context of " +
                                std::to_string(cfg.max_position_embeddings));
  if (p.kv_reserve_tokens < 0)
    throw std::invalid_argument("kv_reserve_tokens: must be >= 0 (got " + std::to_string(p.kv_reserve_tokens) + ")");
  const int reserve = p.kv_reserve_tokens > 0 ? p.kv_reserve_tokens : opt_.contiguous_reserve;
  const int per_seq = opt_.kv_mode == KvMode::Contiguous ? reserve : total;
  if (opt_.kv_mode == KvMode::Contiguous && total > reserve)
    throw std::invalid_argument("prompt + max_tokens (" + std::to_string(total) + ") exceeds the contiguous reservation of " +
                                std::to_string(reserve) + " tokens");
  if (blocks_->blocks_for(per_seq) > opt_.num_blocks)
    throw std::invalid_argument("request needs " + std::to_string(blocks_->blocks_for(per_seq)) +
                                " KV blocks but the pool has " + std::to_string(opt_.num_blocks));
}

RequestId ServingEngine::add_request(RequestParams p, TokenCallback on_token) {
  validate(p);
  auto r = std::make_unique<Request>();
  r->id = next_id_++;
  r->arrival = now_seconds();
  if (t0_ < 0) t0_ = r->arrival;
  r->cb = std::move(on_token);
  r->seqs.reserve(p.n);  // forks never reallocate: planned Sequence pointers stay valid
  r->seqs.emplace_back(next_seq_++, 0, p.prompt, p.sampling);
  r->p = std::move(p);
  const RequestId id = r->id;
  requests_[id] = std::move(r);
  queue_.push_back(id);
  return id;
}

int ServingEngine::reserve_tokens(const Request& r) const {
  if (opt_.kv_mode == KvMode::Paged) return model_.config().max_position_embeddings;  // kv-reserve-max defect only
  return r.p.kv_reserve_tokens > 0 ? r.p.kv_reserve_tokens : opt_.contiguous_reserve;
}

bool ServingEngine::admit(Request& r) {
  // All unfinished samples get their blocks, or none does.
  std::vector<Sequence*> got;
  // Planted defect kv-reserve-max: the paged cache reserves like a contiguous one.
  const bool reserve_up_front = opt_.kv_mode == KvMode::Contiguous || planted(Defect::KvReserveMax);
  for (auto& s : r.seqs) {
    if (s.finished) continue;
    std::optional<int> cached;
    if (reserve_up_front) {
      const std::vector<int32_t> reserve(reserve_tokens(r), 0);
      cached = blocks_->allocate(s.id, reserve);
      if (cached) cached = 0;
    } else {
      cached = blocks_->allocate(s.id, s.tokens);
    }
    if (!cached) {
      for (Sequence* g : got) {
        blocks_->free(g->id);
        g->holds_blocks = false;
        g->computed = 0;
      }
      return false;
    }
    s.holds_blocks = true;
    s.computed = *cached;  // prefix-cache hits need no recompute
    got.push_back(&s);
  }
  r.admitted = true;
  return true;
}

void ServingEngine::preempt(Request& r) {
  for (auto& s : r.seqs) {
    if (s.holds_blocks) blocks_->free(s.id);
    s.holds_blocks = false;
    s.computed = 0;  // recomputed from its tokens when readmitted
  }
  r.admitted = false;
  running_.erase(std::remove(running_.begin(), running_.end(), r.id), running_.end());
  // Back into the queue in arrival order (ids grow with arrival): FCFS is kept.
  queue_.insert(std::lower_bound(queue_.begin(), queue_.end(), r.id), r.id);
  ++stats_.preemptions;
}

ServingEngine::Request* ServingEngine::newest_running_except(const Request* keep) {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    Request* r = requests_.at(*it).get();
    if (r != keep) return r;
  }
  return nullptr;
}

bool ServingEngine::ensure_slot(Sequence& s, int pos) {
  const auto res = blocks_->append_slot(s.id, pos);
  if (!res.ok) return false;
  // Through the model: a tensor-parallel leader forwards the copy to its followers with the next step.
  if (res.copy) model_.model().copy_kv_block(*kv_, res.copy->src, res.copy->dst);
  return true;
}

void ServingEngine::finish_sequence(Request& r, Sequence& s, const std::string& reason) {
  s.finished = true;
  if (s.holds_blocks) blocks_->free(s.id);
  s.holds_blocks = false;
  if (planted(Defect::AnswerCache) && r.p.n == 1 && (reason == "length" || reason == "eos"))  // planted defect
    answer_cache_[answer_key(r.p)] = {s.tokens.begin() + std::ptrdiff_t(r.p.prompt.size()), s.tokens.end()};
  if (r.cb) r.cb({r.id, s.sample, -1, true, reason});
}

std::vector<int32_t> ServingEngine::answer_key(const RequestParams& p) {
  std::vector<int32_t> key = p.prompt;
  key.push_back(p.max_tokens);
  key.push_back(p.stop_at_eos ? 1 : 0);
  return key;
}

// Planted defect answer-cache: queued requests seen before are answered from the cache, with no
// forward pass (a caching shortcut a benchmark must catch).
bool ServingEngine::serve_cached_answers() {
  bool served = false;
  for (auto it = queue_.begin(); it != queue_.end();) {
    Request& r = *requests_.at(*it);
    const auto hit = r.p.n == 1 && r.seqs.at(0).generated == 0 ? answer_cache_.find(answer_key(r.p)) : answer_cache_.end();
    if (hit == answer_cache_.end()) {
      ++it;
      continue;
    }
    if (r.cb) {
      for (int32_t tok : hit->second) r.cb({r.id, 0, tok, false, ""});
      r.cb({r.id, 0, -1, true, int(hit->second.size()) < r.p.max_tokens ? "eos" : "length"});
    }
    ++stats_.finished_requests;
    const RequestId id = r.id;
    it = queue_.erase(it);
    requests_.erase(id);
    served = true;
  }
  return served;
}

void ServingEngine::fail_request(Request& r, const std::string& reason) {
  for (auto& s : r.seqs)
    if (!s.finished) finish_sequence(r, s, reason);
  // Samples not forked yet end too, so a caller counting finish events sees all n.
  if (!r.forked && r.cb)
    for (int i = int(r.seqs.size()); i < r.p.n; ++i) r.cb({r.id, i, -1, true, reason});
  r.forked = true;
  r.done = true;
}

void ServingEngine::abort(RequestId id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  Request& r = *it->second;
  queue_.erase(std::remove(queue_.begin(), queue_.end(), id), queue_.end());
  running_.erase(std::remove(running_.begin(), running_.end(), id), running_.end());
  fail_request(r, "abort");
  requests_.erase(it);
}

bool ServingEngine::idle() const { return queue_.empty() && running_.empty(); }

SchedulerView ServingEngine::view_at(double now) const {
  SchedulerView view;
  for (RequestId id : running_) view.running += requests_.at(id)->unfinished();
  view.queued = int(queue_.size());
  view.now_s = now - t0_;
  view.oldest_wait_s = queue_.empty() ? 0 : now - requests_.at(queue_.front())->arrival;
  return view;
}

bool ServingEngine::stalled() const {
  return running_.empty() && !queue_.empty() && !policy_->ready_to_start(view_at(now_seconds()));
}

bool ServingEngine::step() {
  if (idle()) return false;
  if (planted(Defect::AnswerCache) && serve_cached_answers()) return true;
  const double plan_start = now_seconds();
  const SchedulerView view = view_at(plan_start);
  int running_seqs = view.running;
  const int running_before = view.running;
  const int max_batch = std::max(1, policy_->max_batch(view));

  // Admission, FCFS: stop at the first request that does not fit (batch size or blocks).
  const bool may_admit = policy_->admits_while_running() || running_.empty();
  if (may_admit && (!running_.empty() || policy_->ready_to_start(view))) {
    while (!queue_.empty()) {
      Request& r = *requests_.at(queue_.front());
      if (running_seqs > 0 && running_seqs + r.unfinished() > max_batch) break;
      if (!admit(r)) break;
      queue_.pop_front();
      running_.push_back(r.id);
      running_seqs += r.unfinished();
    }
  }
  if (running_.empty()) {
    // Waiting (static batching not ready) or the head of the queue needs blocks nobody holds.
    if (!queue_.empty() && policy_->ready_to_start(view)) {
      Request& head = *requests_.at(queue_.front());
      queue_.pop_front();
      fail_request(head, "error: not enough free KV blocks to start this request");
      requests_.erase(head.id);
      return true;
    }
    return !queue_.empty();
  }

  // Plan the batch under the token budget: decodes first (one token each), then prefill chunks.
  std::vector<Planned> plan;
  auto planned_tokens = [&] {
    int t = 0;
    for (const Planned& p : plan) t += p.chunk;
    return t;
  };
  const std::vector<RequestId> order = running_;  // preemption edits running_ while we plan
  for (int pass = 0; pass < 2; ++pass) {
    for (RequestId id : order) {
      auto it = requests_.find(id);
      if (it == requests_.end() || !it->second->admitted) continue;  // failed or preempted meanwhile
      Request* r = it->second.get();
      bool failed = false;
      for (auto& s : r->seqs) {
        const int budget = opt_.token_budget - planned_tokens();
        if (budget <= 0 || failed || !r->admitted) break;
        if (s.finished || !s.holds_blocks) continue;
        const int pending = int(s.tokens.size()) - s.computed;
        if ((pass == 0) != (pending == 1)) continue;
        const int chunk = std::min(pending, budget);
        // Room for positions [computed, computed + chunk); when blocks run out, preempt the most
        // recently arrived other request (its planned tokens are dropped) and retry.
        for (int pos = s.computed; pos < s.computed + chunk && !failed; ++pos) {
          while (!ensure_slot(s, pos)) {
            Request* victim = newest_running_except(r);
            if (!victim) {
              failed = true;
              break;
            }
            plan.erase(std::remove_if(plan.begin(), plan.end(), [&](const Planned& p) { return p.req == victim; }), plan.end());
            preempt(*victim);
          }
        }
        if (!failed) plan.push_back({r, &s, chunk});
      }
      if (failed) {
        // Nothing left to preempt: this request alone fails; the engine goes on.
        plan.erase(std::remove_if(plan.begin(), plan.end(), [&](const Planned& p) { return p.req == r; }), plan.end());
        running_.erase(std::remove(running_.begin(), running_.end(), r->id), running_.end());
        fail_request(*r, "error: out of KV blocks with nothing left to preempt");
        requests_.erase(r->id);
      }
    }
  }
  if (plan.empty()) return true;

  std::vector<SeqStep> batch;
  batch.reserve(plan.size());
  for (const Planned& p : plan) {
    const auto& table = blocks_->block_table(p.seq->id);
    batch.push_back(SeqStep{std::span<const int32_t>(p.seq->tokens.data() + p.seq->computed, p.chunk), p.seq->computed,
                            std::span<const int32_t>(table.data(), table.size()), false});
  }
  const double t_fwd = now_seconds();
  const std::vector<float> logits = model_.model().forward(batch, *kv_);
  if (planted(Defect::BusyLoop)) {  // planted defect: twice as long again inside the timed region, no work
    const double until = now_seconds() + 2 * (now_seconds() - t_fwd);
    while (now_seconds() < until) {
    }
  }
  const double fwd = now_seconds() - t_fwd;
  const int V = model_.config().vocab_size;

  int tokens = 0;
  for (size_t b = 0; b < plan.size(); ++b) {
    Request& r = *plan[b].req;
    Sequence& s = *plan[b].seq;
    const bool was_prefill = int(s.tokens.size()) - s.computed > 1 || s.generated == 0;
    stats_.kv_tokens_read += s.computed + plan[b].chunk;
    s.computed += plan[b].chunk;
    tokens += plan[b].chunk;
    (was_prefill ? stats_.prefill_tokens : stats_.decode_tokens) += plan[b].chunk;
    blocks_->commit_tokens(s.id, std::span<const int32_t>(s.tokens.data(), s.computed));
    if (s.computed < int(s.tokens.size())) continue;  // prefill chunk not at the end yet
    std::span<const float> row(logits.data() + b * V, V);
    // The prompt is done: fork the other samples, sharing its blocks (copy-on-write). r.seqs has
    // capacity for n, so `s` and planned pointers stay valid.
    std::vector<Sequence*> draw = {&s};
    if (!r.forked) {
      r.forked = true;
      for (int i = 1; i < r.p.n; ++i) {
        SamplingParams sp = r.p.sampling;
        sp.seed += uint64_t(i);
        r.seqs.emplace_back(next_seq_++, i, s.tokens, sp);
        Sequence& child = r.seqs.back();
        child.computed = s.computed;
        if (opt_.kv_mode == KvMode::Contiguous) {
          // Without paging each sample owns a full reservation, filled by copying the prompt's KV.
          const std::vector<int32_t> reserve(reserve_tokens(r), 0);
          if (!blocks_->allocate(child.id, reserve)) {
            finish_sequence(r, child, "error: out of KV blocks for sample " + std::to_string(i));
            continue;
          }
          const auto& src = blocks_->block_table(s.id);
          const auto& dst = blocks_->block_table(child.id);
          for (int blk = 0; blk < blocks_->blocks_for(s.computed); ++blk) model_.model().copy_kv_block(*kv_, src[blk], dst[blk]);
          blocks_->commit_tokens(child.id, std::span<const int32_t>(child.tokens.data(), child.computed));
        } else {
          blocks_->fork(s.id, child.id);
        }
        child.holds_blocks = true;
        draw.push_back(&child);
      }
    }
    for (Sequence* t : draw) {
      const int32_t tok = t->sampler.sample(row);
      t->tokens.push_back(tok);
      ++t->generated;
      if (r.cb) r.cb({r.id, t->sample, tok, false, ""});
      if (r.p.stop_at_eos && tok == model_.config().eos_token_id) finish_sequence(r, *t, "eos");
      else if (t->generated >= r.p.max_tokens) finish_sequence(r, *t, "length");
      else if (int(t->tokens.size()) >= model_.config().max_position_embeddings) finish_sequence(r, *t, "context");
    }
  }
  // Retire finished requests.
  for (size_t i = 0; i < running_.size();) {
    Request& r = *requests_.at(running_[i]);
    if (r.forked && r.unfinished() == 0) {
      running_.erase(running_.begin() + i);
      ++stats_.finished_requests;
      requests_.erase(r.id);
    } else {
      ++i;
    }
  }
  const double end = now_seconds();
  policy_->observe_step(int(plan.size()), tokens, fwd);
  ++stats_.steps;
  stats_.busy_seconds += fwd;
  if (opt_.record_steps) {
    step_seconds_.push_back(end - plan_start);
    step_batch_.push_back(int(plan.size()));
    step_tokens_.push_back(tokens);
    step_queue_.push_back(view.queued);
    step_running_.push_back(running_before);
  }
  account_kv();
  return true;
}

void ServingEngine::account_kv() {
  const BlockStats b = blocks_->stats();
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
  s.step_batch = tail(step_batch_);
  s.step_tokens = tail(step_tokens_);
  s.step_queue = tail(step_queue_);
  s.step_running = tail(step_running_);
  s.queued = int(queue_.size());
  s.running = int(running_.size());
  for (RequestId id : running_) s.running_seqs += requests_.at(id)->unfinished();
  s.wall_seconds = t0_ < 0 ? 0 : now_seconds() - t0_;
  s.blocks = blocks_->stats();
  return s;
}

}  // namespace cb::engine
