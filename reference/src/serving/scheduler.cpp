#include "cb/engine/serving/scheduler.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <stdexcept>

#include "cb/engine/model/planted_defects.h"

namespace cb::engine {

// One sample of a request. Its KV holds tokens[0, computed); tokens past `computed` are fed in
// the next steps (the whole prompt at first, then the one token sampled last), so prefill chunks
// and decodes are the same operation.
struct Scheduler::Sequence {
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

struct Scheduler::Request {
  RequestId id = 0;
  RequestParams p;
  TokenCallback cb;
  double arrival = 0;
  std::vector<Sequence> seqs;  // sample 0 only until the prompt is prefilled, then n (seqs[i].sample == i)
  bool forked = false;
  bool admitted = false;
  int unfinished() const {
    int n = 0;
    for (const auto& s : seqs) n += !s.finished;
    return n + (forked ? 0 : p.n - 1);  // samples not forked yet still count
  }
};

int StepPlan::tokens() const {
  int t = 0;
  for (const auto& c : chunks) t += int(c.tokens.size());
  return t;
}

Scheduler::Scheduler(SchedulerOptions opt, ModelLimits limits, std::unique_ptr<BatchPolicy> policy, CopyBlock copy, Clock clock)
    : opt_(opt), lim_(limits), policy_(std::move(policy)), copy_(std::move(copy)), clock_(std::move(clock)) {
  if (opt_.token_budget < 1) throw std::invalid_argument("token_budget must be >= 1");
  if (!policy_) throw std::invalid_argument("Scheduler: no batch policy");
  if (!clock_) clock_ = steady_seconds;
  // The contiguous baseline never shares a prefix: it reserves per sequence.
  blocks_ = std::make_unique<BlockManager>(opt_.num_blocks, opt_.block_size, opt_.prefix_cache && opt_.kv_mode == KvMode::Paged,
                                           opt_.kv_placement);
  if (opt_.contiguous_reserve <= 0) opt_.contiguous_reserve = lim_.max_context;
}

Scheduler::~Scheduler() = default;

void Scheduler::validate(const RequestParams& p) const {
  if (p.prompt.empty()) throw std::invalid_argument("prompt: empty");
  for (size_t i = 0; i < p.prompt.size(); ++i)
    if (p.prompt[i] < 0 || p.prompt[i] >= lim_.vocab_size)
      throw std::invalid_argument("prompt: token #" + std::to_string(i) + " = " + std::to_string(p.prompt[i]) +
                                  " is outside the vocabulary [0, " + std::to_string(lim_.vocab_size) + ")");
  if (p.max_tokens <= 0) throw std::invalid_argument("max_tokens: must be > 0 (got " + std::to_string(p.max_tokens) + ")");
  if (p.n < 1) throw std::invalid_argument("n: must be >= 1 (got " + std::to_string(p.n) + ")");
  p.sampling.validate();
  const int total = int(p.prompt.size()) + p.max_tokens;
  if (total > lim_.max_context)
    throw std::invalid_argument("prompt (" + std::to_string(p.prompt.size()) + " tokens) + max_tokens (" +
                                std::to_string(p.max_tokens) + ") exceeds the model's context of " + std::to_string(lim_.max_context));
  if (p.kv_reserve_tokens < 0)
    throw std::invalid_argument("kv_reserve_tokens: must be >= 0 (got " + std::to_string(p.kv_reserve_tokens) + ")");
  const int reserve = p.kv_reserve_tokens > 0 ? p.kv_reserve_tokens : opt_.contiguous_reserve;
  const int per_seq = opt_.kv_mode == KvMode::Contiguous ? reserve : total;
  if (opt_.kv_mode == KvMode::Contiguous && total > reserve)
    throw std::invalid_argument("prompt + max_tokens (" + std::to_string(total) + ") exceeds the contiguous reservation of " +
                                std::to_string(reserve) + " tokens");
  if (blocks_->blocks_for(per_seq) > opt_.num_blocks)
    throw std::invalid_argument("request needs " + std::to_string(blocks_->blocks_for(per_seq)) + " KV blocks but the pool has " +
                                std::to_string(opt_.num_blocks));
}

RequestId Scheduler::add(RequestParams p, TokenCallback on_token) {
  validate(p);
  auto r = std::make_unique<Request>();
  r->id = next_id_++;
  r->arrival = clock_();
  if (t0_ < 0) t0_ = r->arrival;
  r->cb = std::move(on_token);
  r->seqs.reserve(size_t(p.n));  // forks never reallocate: Sequence pointers stay valid
  r->seqs.emplace_back(next_seq_++, 0, p.prompt, p.sampling);
  r->p = std::move(p);
  const RequestId id = r->id;
  requests_[id] = std::move(r);
  queue_.push_back(id);
  return id;
}

int Scheduler::reserve_tokens(const Request& r) const {
  if (opt_.kv_mode == KvMode::Paged) return lim_.max_context;  // kv-reserve-max defect only
  return r.p.kv_reserve_tokens > 0 ? r.p.kv_reserve_tokens : opt_.contiguous_reserve;
}

bool Scheduler::admit(Request& r) {
  // All unfinished samples get their blocks, or none does.
  std::vector<Sequence*> got;
  // Planted defect kv-reserve-max: the paged cache reserves like a contiguous one.
  const bool reserve_up_front = opt_.kv_mode == KvMode::Contiguous || planted(Defect::KvReserveMax);
  for (auto& s : r.seqs) {
    if (s.finished) continue;
    std::optional<int> cached;
    if (reserve_up_front) {
      cached = blocks_->reserve(s.id, reserve_tokens(r));
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

void Scheduler::preempt(Request& r) {
  for (auto& s : r.seqs) {
    if (s.holds_blocks) blocks_->free(s.id);
    s.holds_blocks = false;
    s.computed = 0;  // recomputed from its tokens when readmitted
  }
  r.admitted = false;
  running_.erase(std::remove(running_.begin(), running_.end(), r.id), running_.end());
  // Back into the queue in arrival order (ids grow with arrival): FCFS is kept.
  queue_.insert(std::lower_bound(queue_.begin(), queue_.end(), r.id), r.id);
  ++counters_.preemptions;
}

Scheduler::Request* Scheduler::newest_running_except(const Request* keep) {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    Request* r = requests_.at(*it).get();
    if (r != keep) return r;
  }
  return nullptr;
}

bool Scheduler::ensure_slots(Sequence& s, int pos, int count) {
  const auto res = blocks_->append_slots(s.id, pos, count);
  if (!res.ok) return false;
  if (copy_ && !res.copies.empty()) copy_(res.copies);
  return true;
}

void Scheduler::finish_sequence(Request& r, Sequence& s, const std::string& reason) {
  s.finished = true;
  if (s.holds_blocks) blocks_->free(s.id);
  s.holds_blocks = false;
  if (planted(Defect::AnswerCache) && r.p.n == 1 && (reason == "length" || reason == "eos"))  // planted defect
    answer_cache_[answer_key(r.p)] = {s.tokens.begin() + std::ptrdiff_t(r.p.prompt.size()), s.tokens.end()};
  if (r.cb) r.cb({r.id, s.sample, -1, true, reason});
}

std::vector<int32_t> Scheduler::answer_key(const RequestParams& p) {
  std::vector<int32_t> key = p.prompt;
  key.push_back(p.max_tokens);
  key.push_back(p.stop_at_eos ? 1 : 0);
  return key;
}

// Planted defect answer-cache: queued requests seen before are answered from the cache, with no
// forward pass (a caching shortcut a benchmark must catch).
bool Scheduler::serve_cached_answers() {
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
    ++counters_.finished_requests;
    const RequestId id = r.id;
    it = queue_.erase(it);
    requests_.erase(id);
    served = true;
  }
  return served;
}

void Scheduler::fail_request(Request& r, const std::string& reason) {
  for (auto& s : r.seqs)
    if (!s.finished) finish_sequence(r, s, reason);
  // Samples not forked yet end too, so a caller counting finish events sees all n.
  if (!r.forked && r.cb)
    for (int i = int(r.seqs.size()); i < r.p.n; ++i) r.cb({r.id, i, -1, true, reason});
  r.forked = true;
}

void Scheduler::abort(RequestId id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  Request& r = *it->second;
  queue_.erase(std::remove(queue_.begin(), queue_.end(), id), queue_.end());
  running_.erase(std::remove(running_.begin(), running_.end(), id), running_.end());
  fail_request(r, "abort");
  requests_.erase(it);
}

int Scheduler::running_sequences() const {
  int n = 0;
  for (RequestId id : running_) n += requests_.at(id)->unfinished();
  return n;
}

SchedulerView Scheduler::view_at(double now) const {
  SchedulerView view;
  view.running = running_sequences();
  view.queued = int(queue_.size());
  view.now_s = now - t0_;
  view.oldest_wait_s = queue_.empty() ? 0 : now - requests_.at(queue_.front())->arrival;
  return view;
}

bool Scheduler::stalled() const {
  return running_.empty() && !queue_.empty() && !policy_->ready_to_start(view_at(clock_()));
}

StepPlan Scheduler::schedule() {
  StepPlan out;
  if (idle()) {
    out.keep_going = false;
    return out;
  }
  const SchedulerView view = view_at(clock_());
  out.view = view;
  out.running_before = view.running;
  int running_seqs = view.running;
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
      return out;
    }
    out.keep_going = !queue_.empty();
    return out;
  }

  // Plan the batch under the token budget: decodes first (one token each), then prefill chunks.
  struct Planned {
    Request* req;
    Sequence* seq;
    int chunk;
  };
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
        // Room for positions [computed, computed + chunk), all at once; when blocks run out,
        // preempt the most recently arrived other request (its planned tokens are dropped) and retry.
        while (!ensure_slots(s, s.computed, chunk)) {
          Request* victim = newest_running_except(r);
          if (!victim) {
            failed = true;
            break;
          }
          plan.erase(std::remove_if(plan.begin(), plan.end(), [&](const Planned& p) { return p.req == victim; }), plan.end());
          preempt(*victim);
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
  for (const Planned& p : plan) {
    const auto& table = blocks_->block_table(p.seq->id);
    out.chunks.push_back({p.req->id, p.seq->sample, p.seq->id, p.seq->computed,
                          std::span<const int32_t>(p.seq->tokens.data() + p.seq->computed, size_t(p.chunk)),
                          std::span<const int32_t>(table.data(), table.size())});
  }
  return out;
}

void Scheduler::update_from_output(const StepPlan& plan, std::span<const float> logits, double forward_seconds) {
  const size_t V = size_t(lim_.vocab_size);
  if (logits.size() < plan.chunks.size() * V)
    throw std::invalid_argument("update_from_output: " + std::to_string(logits.size()) + " logits for " +
                                std::to_string(plan.chunks.size()) + " rows of " + std::to_string(V));
  for (size_t b = 0; b < plan.chunks.size(); ++b) {
    const ScheduledChunk& c = plan.chunks[b];
    Request& r = *requests_.at(c.request);
    Sequence& s = r.seqs.at(size_t(c.sample));
    const int chunk = int(c.tokens.size());
    const bool was_prefill = int(s.tokens.size()) - s.computed > 1 || s.generated == 0;
    counters_.kv_tokens_read += s.computed + chunk;
    s.computed += chunk;
    (was_prefill ? counters_.prefill_tokens : counters_.decode_tokens) += chunk;
    blocks_->commit_tokens(s.id, std::span<const int32_t>(s.tokens.data(), size_t(s.computed)));
    if (s.computed < int(s.tokens.size())) continue;  // prefill chunk not at the end yet
    std::span<const float> row = logits.subspan(b * V, V);
    // The prompt is done: fork the other samples, sharing its blocks (copy-on-write). r.seqs has
    // capacity for n, so `s` stays valid.
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
          if (!blocks_->reserve(child.id, reserve_tokens(r))) {
            finish_sequence(r, child, "error: out of KV blocks for sample " + std::to_string(i));
            continue;
          }
          const auto& src = blocks_->block_table(s.id);
          const auto& dst = blocks_->block_table(child.id);
          std::vector<BlockCopy> copies;
          for (int blk = 0; blk < blocks_->blocks_for(s.computed); ++blk) copies.push_back({src[size_t(blk)], dst[size_t(blk)]});
          if (copy_ && !copies.empty()) copy_(copies);
          blocks_->commit_tokens(child.id, std::span<const int32_t>(child.tokens.data(), size_t(child.computed)));
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
      if (r.p.stop_at_eos && lim_.is_eos(tok)) finish_sequence(r, *t, "eos");
      else if (t->generated >= r.p.max_tokens) finish_sequence(r, *t, "length");
      else if (int(t->tokens.size()) >= lim_.max_context) finish_sequence(r, *t, "context");
    }
  }
  // Retire finished requests.
  for (size_t i = 0; i < running_.size();) {
    Request& r = *requests_.at(running_[i]);
    if (r.forked && r.unfinished() == 0) {
      running_.erase(running_.begin() + std::ptrdiff_t(i));
      ++counters_.finished_requests;
      const RequestId id = r.id;
      requests_.erase(id);
    } else {
      ++i;
    }
  }
  policy_->observe_step(int(plan.chunks.size()), plan.tokens(), forward_seconds);
}

}  // namespace cb::engine
