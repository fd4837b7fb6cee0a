// A ServingEngine on its own thread, for callers on other threads (the HTTP server, load tests).
//
// Requests are validated and admitted on the caller's thread (bounded queue: admission control),
// then handed to the engine by the loop thread between steps. The loop thread sleeps on a
// condition variable while there is nothing to do, and in short waits while static batching
// fills a batch, so an idle server uses no CPU.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cb/engine/serving/serving_engine.h"

namespace cb::engine {

struct QueueFullError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Owns a ServingEngine and runs it on its own thread; every public method is thread-safe.
class EngineLoop {
 public:
  // Throws std::invalid_argument for max_queue < 1 or options the engine rejects.
  EngineLoop(LoadedModel& model, EngineOptions opt, int max_queue = 256);
  ~EngineLoop();  // aborts what is still running (callbacks see "abort"), joins the thread

  // Throws QueueFullError when max_queue requests are already waiting (admission control),
  // std::invalid_argument (message names the field) for invalid params, std::runtime_error after
  // drain(). The callback runs on the loop thread; it must not block. Events carry the id returned
  // here; every sample gets exactly one finish event (finished == true).
  RequestId submit(RequestParams p, TokenCallback on_token);
  // Ends the request ("abort" finish events); unknown or finished ids are ignored. Callbacks may
  // call it, also while the destructor aborts what is left (it is then ignored).
  void abort(RequestId id);
  // Stops accepting; returns when every accepted request has finished. Safe to call repeatedly.
  void drain();
  // Stops accepting without waiting (submit then throws std::runtime_error).
  void stop_accepting();
  // Aborts every accepted request (waiting or running); returns at once, callbacks follow.
  void abort_all();
  // A consistent snapshot taken between engine steps. `queued` counts waiting(); wall_seconds
  // runs on to now.
  EngineStats stats() const;
  // stats() once every accepted request's last step is published (or after timeout_s): a client
  // sees its last token inside a step, before that step's counters are, so end-of-run readers wait.
  EngineStats stats_when_settled(double timeout_s) const;
  // Queued in the engine + submitted not yet handed to it.
  int waiting() const;
  // Accepted and not finished (waiting + running).
  int outstanding() const;
  bool accepting() const;
  int max_queue() const { return max_queue_; }
  // Sleep this long after each engine step: emulates a slower model, so clients, load tools and
  // tests can watch requests in flight (drain, disconnects) deterministically. 0 = off.
  void set_step_delay(double seconds);
  const EngineOptions& options() const { return engine_->options(); }
  const BatchPolicy& policy() const { return engine_->policy(); }
  // Runs fn on the loop thread between two engine steps (nothing else touches the model while it
  // runs) and returns when it has; rethrows what fn threw. For work that needs the model outside
  // the scheduler, e.g. a teacher-forced forward for log-probabilities. Throws std::runtime_error
  // when the loop stops before fn ran.
  void run_exclusive(std::function<void()> fn);

 private:
  struct Pending {
    RequestId id;
    RequestParams p;
    TokenCallback cb;
  };
  struct Live {  // loop thread only
    RequestId engine_id = 0;
    int n = 1;
    int finished = 0;
  };

  void run();
  void hand_over(Pending& p);
  void finish_one(RequestId id);
  void abort_everything();
  void publish();
  int waiting_locked() const { return int(pending_.size()) + engine_queued_; }

  std::unique_ptr<ServingEngine> engine_;
  const int max_queue_;

  mutable std::mutex m_;
  std::condition_variable wake_;   // the loop thread: work arrived or stop
  mutable std::condition_variable done_;   // drain(), stats_when_settled(): a request finished
  std::deque<Pending> pending_;
  std::vector<RequestId> aborts_;
  std::deque<std::packaged_task<void()>> jobs_;  // run_exclusive
  bool accepting_ = true;
  bool stop_ = false;
  bool abort_all_ = false;
  double step_delay_s_ = 0;
  int outstanding_ = 0;
  int engine_queued_ = 0;          // engine queue length as last published, plus handed-over
  EngineStats snap_;
  double snap_at_ = 0;
  RequestId next_id_ = 1;

  std::unordered_map<RequestId, Live> live_;  // loop thread only
  size_t published_steps_ = 0;                // loop thread only
  int finished_unpublished_ = 0;              // loop thread only
  std::thread thread_;
};

}  // namespace cb::engine
