// EngineLoop: the serving engine on its own thread. Concurrent submits give the same tokens as
// one-at-a-time generation; admission control, drain and abort behave as documented.
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "cb/engine/serving/engine_loop.h"

using namespace cb::engine;

namespace {

// Thread-safe collector: callbacks run on the loop thread, the test reads on its own.
struct Sink {
  std::mutex m;
  std::map<std::pair<RequestId, int>, std::vector<int32_t>> tokens;
  std::map<std::pair<RequestId, int>, std::string> finish;
  TokenCallback callback() {
    return [this](const TokenEvent& e) {
      std::lock_guard lk(m);
      if (e.finished) {
        EXPECT_EQ(finish.count({e.request, e.sample}), 0u) << "sample finished twice";
        finish[{e.request, e.sample}] = e.finish_reason;
      } else {
        EXPECT_EQ(finish.count({e.request, e.sample}), 0u) << "token after finish";
        tokens[{e.request, e.sample}].push_back(e.token);
      }
    };
  }
  std::string reason(RequestId r, int s) {
    std::lock_guard lk(m);
    auto it = finish.find({r, s});
    return it == finish.end() ? "<none>" : it->second;
  }
  std::vector<int32_t> of(RequestId r, int s) {
    std::lock_guard lk(m);
    return tokens[{r, s}];
  }
  size_t finished() {
    std::lock_guard lk(m);
    return finish.size();
  }
};

std::vector<int32_t> loop_prompt(int len, int salt) {
  std::vector<int32_t> p = {256};
  for (int i = 1; i < len; ++i) p.push_back((i * 31 + salt * 7) % 256);
  return p;
}

RequestParams req(int len, int salt, int max_tokens) {
  RequestParams p;
  p.prompt = loop_prompt(len, salt);
  p.max_tokens = max_tokens;
  p.stop_at_eos = false;
  return p;
}

class EngineLoopTest : public ::testing::Test {
 protected:
  void SetUp() override { model = LoadedModel::open(cb::engine::default_model_dir(), "cpu"); }
  std::unique_ptr<LoadedModel> model;
};

TEST_F(EngineLoopTest, ConcurrentSubmitsMatchOneAtATime) {
  EngineOptions o;
  o.num_blocks = 128;
  o.block_size = 4;
  EngineLoop loop(*model, std::move(o), 64);
  Sink sink;
  constexpr int kThreads = 4, kPerThread = 4;
  std::mutex m;
  std::vector<std::pair<RequestId, RequestParams>> submitted;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        RequestParams p = req(3 + t + i, 10 * t + i, 3 + i);
        const RequestId id = loop.submit(p, sink.callback());
        std::lock_guard lk(m);
        submitted.push_back({id, p});
      }
    });
  for (auto& th : threads) th.join();
  loop.drain();
  ASSERT_EQ(submitted.size(), size_t(kThreads * kPerThread));
  std::set<RequestId> ids;
  for (const auto& [id, p] : submitted) {
    ids.insert(id);
    GenerateOptions g;
    g.max_tokens = p.max_tokens;
    g.stop_at_eos = false;
    EXPECT_EQ(sink.of(id, 0), generate(*model, p.prompt, g).tokens) << "request " << id;
    EXPECT_EQ(sink.reason(id, 0), "length");
  }
  EXPECT_EQ(ids.size(), submitted.size()) << "ids are unique";
  const EngineStats st = loop.stats();
  EXPECT_EQ(st.finished_requests, kThreads * kPerThread);
  EXPECT_EQ(st.queued, 0);
  EXPECT_EQ(st.blocks.used_blocks, 0);
  EXPECT_EQ(int(st.step_batch.size()), st.steps) << "the snapshot carries every step";
  EXPECT_EQ(loop.outstanding(), 0);
}

TEST_F(EngineLoopTest, QueueFullThenDestructorAbortsWaiting) {
  EngineOptions o;
  // A static batch of 100 with a 60 s timeout never starts here: requests stay queued.
  o.custom_policy = make_static_policy(100, 60.0);
  Sink sink;
  std::vector<RequestId> ids;
  {
    EngineLoop loop(*model, std::move(o), 3);
    for (int i = 0; i < 3; ++i) {
      RequestParams p = req(4, i, 4);
      p.n = i == 0 ? 2 : 1;  // a sample never forked must still see its abort
      ids.push_back(loop.submit(p, sink.callback()));
    }
    EXPECT_THROW(loop.submit(req(4, 9, 4), sink.callback()), QueueFullError);
    try {
      loop.submit(req(4, 9, 4), sink.callback());
    } catch (const QueueFullError& e) {
      EXPECT_NE(std::string(e.what()).find("max_queue 3"), std::string::npos) << e.what();
    }
    EXPECT_EQ(loop.waiting(), 3);
    EXPECT_EQ(loop.stats().queued, 3);
    EXPECT_EQ(sink.finished(), 0u) << "nothing ran: the batch is still filling";
    // Invalid params are rejected before the queue check, naming the field.
    RequestParams bad = req(4, 1, 0);
    try {
      loop.submit(bad, sink.callback());
      ADD_FAILURE() << "max_tokens = 0 accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("max_tokens"), std::string::npos) << e.what();
    }
  }
  for (RequestId id : ids) EXPECT_EQ(sink.reason(id, 0), "abort");
  EXPECT_EQ(sink.reason(ids[0], 1), "abort");
  EXPECT_EQ(sink.finished(), 4u) << "one finish event per sample, no more";
}

// The engine-side hooks the loop relies on: stalled() while a static batch fills (so the loop
// sleeps instead of spinning), stats_since() for incremental snapshots, record_steps = false.
TEST_F(EngineLoopTest, ServingEngineStalledAndIncrementalStats) {
  EngineOptions o;
  o.custom_policy = make_static_policy(3, 60.0);
  ServingEngine eng(*model, std::move(o));
  Sink sink;
  eng.add_request(req(4, 1, 3), sink.callback());
  EXPECT_TRUE(eng.stalled()) << "one of three queued: the static batch waits";
  EXPECT_TRUE(eng.step()) << "step() reports pending work";
  EXPECT_EQ(eng.stats().steps, 0) << "... but runs nothing";
  eng.add_request(req(4, 2, 3), sink.callback());
  eng.add_request(req(4, 3, 3), sink.callback());
  EXPECT_FALSE(eng.stalled());
  eng.run_until_idle();
  EXPECT_FALSE(eng.stalled());
  EXPECT_EQ(sink.finished(), 3u);
  const EngineStats all = eng.stats();
  ASSERT_GE(all.steps, 3);
  const EngineStats tail = eng.stats_since(2);
  EXPECT_EQ(tail.step_batch.size(), size_t(all.steps - 2));
  EXPECT_EQ(tail.step_batch, std::vector<int>(all.step_batch.begin() + 2, all.step_batch.end()));
  EXPECT_EQ(tail.decode_tokens, all.decode_tokens) << "scalars are whole-run totals";

  EngineOptions quiet;
  quiet.record_steps = false;
  ServingEngine q(*model, std::move(quiet));
  Sink sink2;  // request ids restart in a new engine
  q.add_request(req(4, 1, 3), sink2.callback());
  q.run_until_idle();
  EXPECT_EQ(q.stats().steps, 3);
  EXPECT_TRUE(q.stats().step_batch.empty()) << "no per-step history kept";
}

TEST_F(EngineLoopTest, DrainFinishesAcceptedRequestsThenRefuses) {
  EngineLoop loop(*model, EngineOptions{}, 16);
  Sink sink;
  std::vector<RequestId> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(loop.submit(req(5, i, 12), sink.callback()));
  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    loop.drain();
    drained = true;
  });
  drainer.join();
  EXPECT_TRUE(drained);
  for (RequestId id : ids) {
    EXPECT_EQ(sink.reason(id, 0), "length") << "request " << id;
    EXPECT_EQ(sink.of(id, 0).size(), 12u);
  }
  EXPECT_FALSE(loop.accepting());
  EXPECT_THROW(loop.submit(req(5, 1, 2), sink.callback()), std::runtime_error);
  loop.drain();  // again: returns at once
}

TEST_F(EngineLoopTest, AbortEndsEverySampleOnce) {
  EngineLoop loop(*model, EngineOptions{}, 16);
  Sink sink;
  std::atomic<int> first_tokens{0};
  RequestParams p = req(6, 3, 4000);
  p.n = 3;
  p.sampling = {1.0f, 0, 1.f, 5};
  Sink* s = &sink;
  TokenCallback inner = sink.callback();
  const RequestId id = loop.submit(p, [&, inner](const TokenEvent& e) {
    inner(e);
    if (!e.finished) ++first_tokens;
  });
  while (first_tokens.load() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  loop.abort(id);
  loop.abort(id + 1000);  // unknown: ignored
  loop.drain();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(s->reason(id, i), "abort") << "sample " << i;
    EXPECT_LT(s->of(id, i).size(), 4000u);
  }
  EXPECT_EQ(loop.stats().blocks.used_blocks, 0);
}

// The server's on_event calls the loop's abort() from a callback (a request ended early by stop
// strings), also while ~EngineLoop aborts what is left: abort() must then be a harmless no-op on a
// loop whose members are still alive, and every sample still gets one finish event.
TEST_F(EngineLoopTest, CallbacksMayAbortWhileTheLoopIsDestroyed) {
  Sink sink;
  std::vector<RequestId> ids;
  std::atomic<int> tokens{0};
  {
    EngineOptions o;
    o.custom_policy = make_static_policy(2, 60.0);  // two run, two wait: the destructor aborts both kinds
    auto loop = std::make_unique<EngineLoop>(*model, std::move(o), 16);
    EngineLoop* l = loop.get();
    TokenCallback inner = sink.callback();
    for (int i = 0; i < 4; ++i)
      ids.push_back(loop->submit(req(5, i, 4000), [l, inner, &tokens](const TokenEvent& e) {
        inner(e);
        if (!e.finished) ++tokens;
        if (e.finished) l->abort(e.request);  // as on_event does for a stopped request
      }));
    while (tokens.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }  // ~EngineLoop (through ~unique_ptr, as Server::Impl destroys it) with requests in flight
  for (RequestId id : ids) EXPECT_EQ(sink.reason(id, 0), "abort") << "request " << id;
  EXPECT_EQ(sink.finished(), ids.size()) << "one finish event per sample, no more";
}

}  // namespace
