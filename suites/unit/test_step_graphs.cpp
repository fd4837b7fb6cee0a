// Recorded decode steps (Model::set_step_graphs): the model-side logic of CUDA graphs, run on a
// test backend that records ops as a CUDA graph does (the same op on the same pointers, with
// the scalar arguments of the recording) and replays them on the cpu backend. The graphs
// themselves need a GPU: ci/gpu-check.sh compares generate --step-graphs with plain steps there.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cb/engine/model/config.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/model/kv_cache.h"
#include "cb/engine/model/model.h"
#include "cb/engine/model/safetensors.h"
#include "cb/engine/model/weights.h"
#include "cb/kernels/backend.h"
#include "cb/kernels/forwarding_backend.h"

namespace {

using cb::engine::KvCache;
using cb::engine::Model;
using cb::engine::SeqStep;
using cb::kernels::Status;
using cb::kernels::Tensor;

struct Recording final : cb::kernels::CapturedWork {
  std::vector<std::function<Status()>> ops;
};

// Records every op between capture_begin and capture_end instead of running it; arguments are
// copied by value (tensor views: data pointer and shape; the KV layer and batch descriptors), as
// a CUDA graph bakes kernel arguments, so a replay sees the buffers' current contents.
class RecordingBackend final : public cb::kernels::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  bool fail_next_end = false;    // capture_end reports a failure (as an invalidated capture)
  bool fail_next_op = false;     // the next op recorded fails (as a cudaMalloc inside capture)
  int recordings_made = 0, replays_run = 0;

  std::string capture_unsupported_reason() const override { return {}; }
  Status capture_begin() override {
    if (rec_) return Status::internal("capture_begin while capturing");
    rec_ = std::make_unique<Recording>();
    return Status::Ok();
  }
  Status capture_end(std::unique_ptr<cb::kernels::CapturedWork>& out) override {
    if (!rec_) return Status::internal("capture_end without capture_begin");
    std::unique_ptr<Recording> r = std::move(rec_);
    const bool failed = fail_next_end || op_failed_;
    fail_next_end = op_failed_ = false;
    if (failed) return Status::internal("planted: capture invalidated");
    ++recordings_made;
    out = std::move(r);
    return Status::Ok();
  }
  Status replay(cb::kernels::CapturedWork& w) override {
    if (rec_) return Status::internal("replay while capturing");
    ++replays_run;
    for (auto& op : static_cast<Recording&>(w).ops)
      if (Status s = op(); !s.ok()) return s;
    return Status::Ok();
  }

 protected:
  // Runs op now, or (while capturing) keeps it for the replay.
  Status run_or_record(std::function<Status()> op) {
    if (!rec_) return op();
    if (fail_next_op) {
      fail_next_op = false;
      op_failed_ = true;
      return Status::internal("planted: an op that cannot be recorded");
    }
    rec_->ops.push_back(std::move(op));
    return Status::Ok();
  }
  Status run_matmul(const Tensor& x, const cb::kernels::Weight& w, Tensor& y) override {
    return run_or_record([this, x, w = &w, y]() mutable { return inner().matmul(x, *w, y); });
  }
  Status run_matmul_multi(const Tensor& x, std::span<const cb::kernels::MatmulOutput> outs) override {
    std::vector<const cb::kernels::Weight*> ws;
    std::vector<Tensor> ys;
    for (const auto& o : outs) ws.push_back(o.w), ys.push_back(*o.y);
    return run_or_record([this, x, ws, ys]() mutable {
      std::vector<cb::kernels::MatmulOutput> o;
      for (size_t i = 0; i < ws.size(); ++i) o.push_back({ws[i], &ys[i]});
      return inner().matmul_multi(x, o);
    });
  }
  Status run_rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& y) override {
    return run_or_record([this, x, w, eps, y]() mutable { return inner().rmsnorm(x, w, eps, y); });
  }
  Status run_rope(Tensor& x, const Tensor& pos, int h, int hd, float theta) override {
    return run_or_record([this, x, pos, h, hd, theta]() mutable { return inner().rope(x, pos, h, hd, theta); });
  }
  Status run_kv_store(const Tensor& k, const Tensor& v, const Tensor& slots, cb::kernels::KvLayer& kv) override {
    return run_or_record([this, k, v, slots, kv]() mutable { return inner().kv_store(k, v, slots, kv); });
  }
  Status run_attention(const Tensor& q, const cb::kernels::KvLayer& kv, const cb::kernels::AttentionBatch& b,
                       const cb::kernels::AttentionParams& p, Tensor& out) override {
    return run_or_record([this, q, kv, b, p, out]() mutable { return inner().attention(q, kv, b, p, out); });
  }
  Status run_silu_mul(const Tensor& g, const Tensor& u, Tensor& out) override {
    return run_or_record([this, g, u, out]() mutable { return inner().silu_mul(g, u, out); });
  }
  Status run_embedding(const Tensor& ids, const Tensor& table, Tensor& out) override {
    return run_or_record([this, ids, table, out]() mutable { return inner().embedding(ids, table, out); });
  }
  Status run_add(const Tensor& a, const Tensor& b, Tensor& out) override {
    return run_or_record([this, a, b, out]() mutable { return inner().add(a, b, out); });
  }

 private:
  std::unique_ptr<Recording> rec_;
  bool op_failed_ = false;
};

struct Fixture {
  std::filesystem::path dir = cb::engine::default_model_dir();
  cb::engine::ModelConfig cfg = cb::engine::ModelConfig::load(dir / "config.json");
  cb::engine::WeightStore store = cb::engine::WeightStore::open_dir(dir);
  std::unique_ptr<cb::kernels::Backend> cpu = cb::kernels::make_backend("cpu");
};

// B sequences (prompts of different lengths) prefilled, then `steps` greedy decode steps of the
// whole batch; every step's logits, in order. Block size 4: the tables widen past 16 blocks (64
// tokens), so long runs cross a recording boundary. With batch_sizes, step s decodes only the
// first batch_sizes[s] sequences (one recording per batch size), and steps is its length.
std::vector<std::vector<float>> decode_run(Fixture& f, cb::kernels::Backend& be, bool graphs, int steps,
                                           Model::ExecutedFlops* flops = nullptr, Model::StepGraphStats* stats = nullptr,
                                           const std::function<void(int)>& before_step = {},
                                           size_t max_recorded = Model::kDefaultMaxRecorded,
                                           const std::vector<int>& batch_sizes = {}) {
  Model m(f.cfg, cb::engine::bind_weights(f.store, f.cfg), be);
  m.set_step_graphs(graphs, max_recorded);
  if (!batch_sizes.empty()) steps = int(batch_sizes.size());
  const int B = 3, bs = 4, per_seq = 40;
  KvCache kv(be, f.cfg, B * per_seq, bs);
  std::vector<std::vector<int32_t>> tables(B), prompts(B);
  std::vector<int> pos(B);
  std::vector<int32_t> next(B);
  const int V = f.cfg.vocab_size;
  std::vector<std::vector<float>> all;
  for (int b = 0; b < B; ++b) {
    for (int i = 0; i < per_seq; ++i) tables[b].push_back(b * per_seq + i);
    for (int i = 0; i < 5 + 7 * b; ++i) prompts[b].push_back((13 * b + 7 * i + 1) % V);
    const auto logits = m.forward({SeqStep{prompts[b], 0, tables[b], false}}, kv);
    next[b] = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    pos[b] = int(prompts[b].size());
  }
  for (int s = 0; s < steps; ++s) {
    if (before_step) before_step(s);
    const int n = batch_sizes.empty() ? B : batch_sizes[size_t(s)];
    std::vector<SeqStep> batch;
    for (int b = 0; b < n; ++b) batch.push_back(SeqStep{std::span<const int32_t>(&next[b], 1), pos[b], tables[b], false});
    auto logits = m.forward(batch, kv);
    for (int b = 0; b < n; ++b) {
      auto row = logits.begin() + int64_t(b) * V;
      next[b] = int32_t(std::max_element(row, row + V) - row);
      ++pos[b];
    }
    all.push_back(std::move(logits));
  }
  if (flops) *flops = m.executed_flops();
  if (stats) *stats = m.step_graph_stats();
  return all;
}

// Replayed steps give the plain steps' logits bit for bit, across a table-width boundary, with
// the same executed-FLOP count; the first step of each shape runs as usual, the second records.
TEST(StepGraphs, ReplayedDecodeStepsEqualPlainStepsBitForBit) {
  Fixture f;
  RecordingBackend rec(*f.cpu);
  Model::ExecutedFlops plain_flops, graph_flops;
  Model::StepGraphStats st;
  const int steps = 60;  // the longest prompt (19) + 60 > 64 tokens: a second table width
  const auto plain = decode_run(f, *f.cpu, false, steps, &plain_flops);
  const auto replayed = decode_run(f, rec, true, steps, &graph_flops, &st);
  ASSERT_EQ(plain.size(), replayed.size());
  for (size_t s = 0; s < plain.size(); ++s) ASSERT_EQ(plain[s], replayed[s]) << "step " << s;
  EXPECT_EQ(graph_flops.matmul, plain_flops.matmul);
  EXPECT_EQ(graph_flops.attention, plain_flops.attention);
  EXPECT_TRUE(st.enabled);
  EXPECT_EQ(st.unavailable, "");
  EXPECT_EQ(st.captures, 2) << "one recording per table width (16 and 32 blocks)";
  EXPECT_EQ(st.eager_steps, 2) << "the first step of each width runs as usual";
  EXPECT_EQ(st.replays, steps - 2);
  EXPECT_EQ(st.failed_captures, 0);
  EXPECT_EQ(rec.recordings_made, 2);
  EXPECT_EQ(rec.replays_run, steps - 2);
}

// Past the cap the least recently replayed recording goes, not the oldest one and not all of
// them: with room for two, batch sizes 3 3 2 2 3 1 1 3 2 keep the batch of 3 (replayed at step 4)
// when the batch of 1 is recorded at step 6 (the batch of 2 goes), replay it at step 7, and record
// the batch of 2 again at step 8 (the batch of 1 goes). Logits equal plain steps bit for bit.
TEST(StepGraphs, PastTheCapTheLeastRecentlyReplayedRecordingGoes) {
  Fixture f;
  RecordingBackend rec(*f.cpu);
  const std::vector<int> sizes{3, 3, 2, 2, 3, 1, 1, 3, 2};
  Model::StepGraphStats st;
  const auto plain = decode_run(f, *f.cpu, false, 0, nullptr, nullptr, {}, 2, sizes);
  std::vector<int64_t> replays_after;
  const auto replayed = decode_run(f, rec, true, 0, nullptr, &st, [&](int) { replays_after.push_back(rec.replays_run); },
                                   2, sizes);
  ASSERT_EQ(plain.size(), sizes.size());
  ASSERT_EQ(replayed.size(), sizes.size());
  for (size_t s = 0; s < plain.size(); ++s) ASSERT_EQ(plain[s], replayed[s]) << "step " << s;
  EXPECT_EQ(st.eager_steps, 3) << "the first step of each batch size";
  EXPECT_EQ(st.captures, 4) << "3, 2, 1, and 2 again (3 was kept)";
  EXPECT_EQ(st.evictions, 2);
  EXPECT_EQ(st.replays, 6);
  EXPECT_EQ(rec.recordings_made, 4);
  // replays_after[s] counts replays before step s: step 7 (the batch of 3) replayed without recording.
  ASSERT_EQ(replays_after.size(), sizes.size());
  EXPECT_EQ(rec.replays_run - replays_after[8], 1) << "step 8 recorded the batch of 2 and replayed it";
  EXPECT_EQ(replays_after[8] - replays_after[7], 1) << "step 7 replayed the batch of 3";
  EXPECT_THROW(Model(f.cfg, cb::engine::bind_weights(f.store, f.cfg), rec).set_step_graphs(true, 0), std::invalid_argument);
}

// A replay that does not run the ops leaves the previous step's logits in the buffer: the
// comparison must catch it (guards the test above against passing vacuously).
TEST(StepGraphs, AReplayThatSkipsTheOpsIsCaught) {
  Fixture f;
  RecordingBackend rec(*f.cpu);
  const auto plain = decode_run(f, *f.cpu, false, 6);
  struct SkipReplay final : cb::kernels::ForwardingBackend {
    RecordingBackend& r;
    explicit SkipReplay(RecordingBackend& rb) : ForwardingBackend(rb), r(rb) {}
    std::string capture_unsupported_reason() const override { return {}; }
    Status capture_begin() override { return r.capture_begin(); }
    Status capture_end(std::unique_ptr<cb::kernels::CapturedWork>& out) override { return r.capture_end(out); }
    Status replay(cb::kernels::CapturedWork&) override { return Status::Ok(); }
  } skip(rec);
  const auto broken = decode_run(f, skip, true, 6);
  size_t differ = 0;
  for (size_t s = 0; s < plain.size(); ++s) differ += plain[s] != broken[s];
  EXPECT_GT(differ, 0u) << "skipped replays went unnoticed";
}

// A recording that fails (an op that cannot be recorded, or an invalidated capture) runs the step
// as usual: same logits, the reason kept, and that shape is not recorded again.
TEST(StepGraphs, AFailedRecordingRunsTheStepAsUsualAndIsNotRetried) {
  Fixture f;
  const auto plain = decode_run(f, *f.cpu, false, 8);
  for (const bool op_fails : {true, false}) {
    SCOPED_TRACE(op_fails ? "an op fails while recording" : "capture_end reports an invalidated capture");
    RecordingBackend rec(*f.cpu);
    Model::StepGraphStats st;
    const auto got = decode_run(f, rec, true, 8, nullptr, &st, [&](int s) {
      if (s == 1) (op_fails ? rec.fail_next_op : rec.fail_next_end) = true;  // step 1 is the one recorded
    });
    ASSERT_EQ(got.size(), plain.size());
    for (size_t s = 0; s < plain.size(); ++s) EXPECT_EQ(got[s], plain[s]) << "step " << s;
    EXPECT_EQ(st.failed_captures, 1);
    EXPECT_EQ(st.captures, 0);
    EXPECT_EQ(st.replays, 0);
    EXPECT_EQ(st.eager_steps, 8) << "every step of the failed shape runs as usual";
    EXPECT_NE(st.last_failure.find("planted"), std::string::npos) << st.last_failure;
  }
}

// Backends without a work queue say why, and the steps run as usual.
TEST(StepGraphs, HostBackendsSayWhyStepsAreNotRecorded) {
  Fixture f;
  Model::StepGraphStats st;
  const auto plain = decode_run(f, *f.cpu, false, 3);
  EXPECT_EQ(decode_run(f, *f.cpu, true, 3, nullptr, &st), plain);
  EXPECT_TRUE(st.enabled);
  EXPECT_NE(st.unavailable.find("backend cpu runs each op when it is called"), std::string::npos) << st.unavailable;
  EXPECT_EQ(st.captures + st.replays + st.eager_steps, 0);
  cb::engine::LoadOptions lo;
  lo.step_graphs = true;
  auto lm = cb::engine::LoadedModel::open(f.dir, "cpu", nullptr, lo);
  EXPECT_TRUE(lm->model().step_graph_stats().enabled);
  // Under the op profiler nothing is recorded, and the reason names the profiler, not the backend.
  lo.profile_ops = true;
  auto profiled = cb::engine::LoadedModel::open(f.dir, "cpu", nullptr, lo);
  EXPECT_NE(profiled->model().step_graph_stats().unavailable.find("op profiler"), std::string::npos)
      << profiled->model().step_graph_stats().unavailable;
}

}  // namespace
