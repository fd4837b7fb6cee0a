#include "cb/engine/serving/engine_loop.h"

#include <chrono>
#include <cstdio>
#include <string>

namespace cb::engine {

namespace {
// How often the loop re-checks a static batch that is waiting for its timeout.
constexpr auto kStalledPoll = std::chrono::milliseconds(1);
}  // namespace

EngineLoop::EngineLoop(LoadedModel& model, EngineOptions opt, int max_queue) : max_queue_(max_queue) {
  if (max_queue < 1) throw std::invalid_argument("max_queue: must be >= 1 (got " + std::to_string(max_queue) + ")");
  engine_ = std::make_unique<ServingEngine>(model, std::move(opt));
  snap_ = engine_->stats();
  snap_at_ = steady_seconds();
  thread_ = std::thread([this] { run(); });
}

EngineLoop::~EngineLoop() {
  {
    std::lock_guard lk(m_);
    stop_ = true;
    accepting_ = false;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

RequestId EngineLoop::submit(RequestParams p, TokenCallback on_token) {
  engine_->validate(p);  // reads only construction-time state: safe while the loop steps
  std::lock_guard lk(m_);
  if (!accepting_) throw std::runtime_error("engine loop: draining, no new requests are accepted");
  if (waiting_locked() >= max_queue_)
    throw QueueFullError("engine loop: queue full (" + std::to_string(waiting_locked()) + " requests waiting, max_queue " +
                         std::to_string(max_queue_) + ")");
  const RequestId id = next_id_++;
  pending_.push_back({id, std::move(p), std::move(on_token)});
  ++outstanding_;
  wake_.notify_one();
  return id;
}

void EngineLoop::abort(RequestId id) {
  std::lock_guard lk(m_);
  aborts_.push_back(id);
  wake_.notify_one();
}

void EngineLoop::drain() {
  std::unique_lock lk(m_);
  accepting_ = false;
  done_.wait(lk, [&] { return outstanding_ == 0; });
}

void EngineLoop::stop_accepting() {
  std::lock_guard lk(m_);
  accepting_ = false;
}

void EngineLoop::run_exclusive(std::function<void()> fn) {
  std::packaged_task<void()> task(std::move(fn));
  std::future<void> done = task.get_future();
  {
    std::lock_guard lk(m_);
    if (stop_) throw std::runtime_error("engine loop: stopped");
    jobs_.push_back(std::move(task));
  }
  wake_.notify_one();
  try {
    done.get();
  } catch (const std::future_error&) {
    throw std::runtime_error("engine loop: stopped before the job ran");
  }
}

void EngineLoop::set_step_delay(double seconds) {
  std::lock_guard lk(m_);
  step_delay_s_ = seconds > 0 ? seconds : 0;
}

void EngineLoop::abort_all() {
  std::lock_guard lk(m_);
  abort_all_ = true;
  wake_.notify_one();
}

EngineStats EngineLoop::stats() const {
  std::lock_guard lk(m_);
  EngineStats s = snap_;
  s.queued = waiting_locked();
  if (s.wall_seconds > 0) s.wall_seconds += steady_seconds() - snap_at_;
  return s;
}

EngineStats EngineLoop::stats_when_settled(double timeout_s) const {
  {
    std::unique_lock lk(m_);
    done_.wait_for(lk, std::chrono::duration<double>(timeout_s), [&] { return outstanding_ == 0; });
  }
  return stats();
}

int EngineLoop::waiting() const {
  std::lock_guard lk(m_);
  return waiting_locked();
}

int EngineLoop::outstanding() const {
  std::lock_guard lk(m_);
  return outstanding_;
}

bool EngineLoop::accepting() const {
  std::lock_guard lk(m_);
  return accepting_;
}

void EngineLoop::run() {
  std::unique_lock lk(m_);
  for (;;) {
    auto has_input = [&] { return stop_ || abort_all_ || !pending_.empty() || !aborts_.empty() || !jobs_.empty(); };
    if (!has_input()) {
      if (engine_->idle()) wake_.wait(lk, has_input);
      else if (engine_->stalled()) wake_.wait_for(lk, kStalledPoll, has_input);
    }
    if (stop_) {
      jobs_.clear();  // their callers get "stopped before the job ran"
      lk.unlock();
      abort_everything();
      publish();
      return;
    }
    if (abort_all_) {
      abort_all_ = false;
      lk.unlock();
      abort_everything();
      publish();
      lk.lock();
      continue;
    }
    std::deque<Pending> arrived;
    arrived.swap(pending_);
    std::vector<RequestId> aborted;
    aborted.swap(aborts_);
    std::deque<std::packaged_task<void()>> jobs;
    jobs.swap(jobs_);
    engine_queued_ += int(arrived.size());  // they join the engine's queue now: still "waiting"
    lk.unlock();

    for (auto& job : jobs) job();  // between steps: the model is free; exceptions go to the caller's future

    for (Pending& p : arrived) hand_over(p);
    for (RequestId id : aborted) {
      auto it = live_.find(id);
      if (it != live_.end()) engine_->abort(it->second.engine_id);  // its callbacks erase it from live_
    }
    const bool stepped = !engine_->idle() && !engine_->stalled() && engine_->step();
    publish();
    lk.lock();
    if (stepped && step_delay_s_ > 0)
      wake_.wait_for(lk, std::chrono::duration<double>(step_delay_s_), [&] { return stop_ || abort_all_; });
  }
}

void EngineLoop::hand_over(Pending& p) {
  const RequestId id = p.id;
  const int n = p.p.n;
  TokenCallback user = std::move(p.cb);
  live_[id] = Live{0, n, 0};
  auto wrapped = [this, id, user](const TokenEvent& e) {
    TokenEvent out = e;
    out.request = id;
    if (user) {
      // A throwing callback must not take the engine thread down with it.
      try {
        user(out);
      } catch (const std::exception& ex) {
        std::fprintf(stderr, "engine loop: callback of request %lld threw: %s\n", static_cast<long long>(id), ex.what());
      } catch (...) {
        std::fprintf(stderr, "engine loop: callback of request %lld threw\n", static_cast<long long>(id));
      }
    }
    if (e.finished) finish_one(id);
  };
  try {
    live_[id].engine_id = engine_->add_request(std::move(p.p), wrapped);
  } catch (const std::exception& ex) {
    // validate() passed in submit(), so this is not expected; still, end every sample visibly.
    for (int i = 0; i < n; ++i) wrapped({id, i, -1, true, std::string("error: ") + ex.what()});
  }
}

void EngineLoop::finish_one(RequestId id) {
  auto it = live_.find(id);
  if (it == live_.end() || ++it->second.finished < it->second.n) return;
  live_.erase(it);
  ++finished_unpublished_;  // counted out in publish(), with the stats that show it finished
}

void EngineLoop::abort_everything() {
  std::deque<Pending> left;
  {
    std::lock_guard lk(m_);
    left.swap(pending_);
    aborts_.clear();
    engine_queued_ += int(left.size());
  }
  // Not handed over yet: give them to the engine and abort there, so the callbacks see the same
  // events as any other abort.
  for (Pending& p : left) hand_over(p);
  std::vector<RequestId> engine_ids;
  for (const auto& [id, live] : live_) engine_ids.push_back(live.engine_id);
  for (RequestId e : engine_ids) engine_->abort(e);
}

void EngineLoop::publish() {
  EngineStats s = engine_->stats_since(published_steps_);
  published_steps_ += s.step_seconds.size();
  std::lock_guard lk(m_);
  // Append only the new steps to the snapshot's history, then take the new scalars.
  auto append = [](auto& dst, auto& src) {
    dst.insert(dst.end(), src.begin(), src.end());
    src = std::move(dst);
  };
  append(snap_.step_seconds, s.step_seconds);
  append(snap_.step_forward_seconds, s.step_forward_seconds);
  append(snap_.step_batch, s.step_batch);
  append(snap_.step_tokens, s.step_tokens);
  append(snap_.step_queue, s.step_queue);
  snap_ = std::move(s);
  snap_at_ = steady_seconds();
  engine_queued_ = snap_.queued;
  if (finished_unpublished_ > 0) {
    outstanding_ -= finished_unpublished_;
    finished_unpublished_ = 0;
    done_.notify_all();
  }
}

}  // namespace cb::engine
