// Tensor parallelism (tp.h, tp_step.h, Model's TP hooks) with ranks as threads of this process:
// the split plan, the sliced weights, the step-plan messages, and the sharded forward pass
// against the unsharded one (greedy tokens equal, logits within 1e-4) for 2 and 4 ranks, on
// single-sequence generation and on a scheduler-like paged batch with copy-on-write.
// The same over MPI processes runs in the "mpi" CTest label (suites/cmake/mpi.cmake).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <set>

#include "cb/comm/communicator.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/parallel/tp.h"
#include "cb/engine/parallel/tp_step.h"
#include "cb/engine/model/weights.h"
#include "test_support.h"

using namespace cb::engine;
namespace comm = cb::comm;

namespace {

// Logit tolerance: sharding changes only the order of f32 sums (per-rank partial dot products,
// then the all-reduce); on the 2-layer default model that moves logits by ~1e-6.
constexpr double kTol = 1e-4;

using cb::test::error_of;

ModelConfig cfg_of(int H, int Hkv, int F, int V = 259) {
  ModelConfig c = preset_config("tiny");
  c.num_attention_heads = H;
  c.num_key_value_heads = Hkv;
  c.hidden_size = 16 * H;
  c.intermediate_size = F;
  c.vocab_size = V;
  return c;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

TEST(TpPlan, SplitsHeadsKvHeadsFfnAndVocab) {
  const ModelConfig c = cfg_of(4, 2, 176);
  const TpShard one = plan_shard(c, 0, 1);
  EXPECT_FALSE(one.sharded());
  EXPECT_EQ(one.heads, 4);
  EXPECT_EQ(one.ffn, 176);
  EXPECT_EQ(one.vocab, 259);

  for (int r = 0; r < 2; ++r) {
    const TpShard s = plan_shard(c, r, 2);
    EXPECT_EQ(s.heads, 2);
    EXPECT_EQ(s.head0, 2 * r);
    EXPECT_EQ(s.kv_heads, 1);
    EXPECT_EQ(s.kv_head0, r);
    EXPECT_FALSE(s.kv_replicated);
    EXPECT_EQ(s.ffn, 88);
    EXPECT_EQ(s.ffn0, 88 * r);
    EXPECT_EQ(s.vocab_pad, 130);
    EXPECT_EQ(s.vocab0, 130 * r);
    EXPECT_EQ(s.vocab, r == 0 ? 130 : 129);
  }
  // 4 ranks, 2 KV heads: each KV head on the two ranks whose query heads read it.
  const int want_kv[4] = {0, 0, 1, 1};
  for (int r = 0; r < 4; ++r) {
    const TpShard s = plan_shard(c, r, 4);
    EXPECT_EQ(s.heads, 1);
    EXPECT_EQ(s.kv_heads, 1);
    EXPECT_EQ(s.kv_head0, want_kv[r]);
    EXPECT_TRUE(s.kv_replicated);
    EXPECT_EQ(s.ffn, 44);
    EXPECT_EQ(s.vocab, r < 3 ? 65 : 64);
  }
  EXPECT_EQ(kv_config_for(c, plan_shard(c, 1, 4)).num_key_value_heads, 1);
  EXPECT_EQ(kv_config_for(c, plan_shard(c, 1, 4)).head_dim(), c.head_dim());
  // Uneven FFN (10 is not a multiple of 4: single columns): 3, 3, 2, 2.
  const ModelConfig u = cfg_of(4, 4, 10);
  const int64_t want_f[4][2] = {{0, 3}, {3, 3}, {6, 2}, {8, 2}};
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(plan_shard(u, r, 4).ffn0, want_f[r][0]);
    EXPECT_EQ(plan_shard(u, r, 4).ffn, want_f[r][1]);
  }
}

TEST(TpPlan, RefusesSplitsByConfigKey) {
  EXPECT_NE(error_of([] { plan_shard(cfg_of(4, 2, 176), 0, 3); }).find("num_attention_heads 4 is not divisible by 3"),
            std::string::npos);
  EXPECT_NE(error_of([] { plan_shard(cfg_of(12, 3, 176), 0, 2); }).find("num_key_value_heads 3 neither divides nor is a multiple of 2"),
            std::string::npos);
  EXPECT_NE(error_of([] { plan_shard(cfg_of(8, 8, 4), 0, 8); }).find("intermediate_size 4 has fewer than one column group per rank"),
            std::string::npos);
  EXPECT_NE(error_of([] { plan_shard(cfg_of(4, 2, 176), 2, 2); }).find("rank 2 of 2 is not a valid rank"), std::string::npos);
}

TEST(TpShardWeights, SlicesAreTheRightRowsAndColumns) {
  const auto dir = default_model_dir();
  const ModelConfig cfg = ModelConfig::load(dir / "config.json");
  const WeightStore store = WeightStore::open_dir(dir);
  const ModelWeights full = bind_weights(store, cfg);
  const int64_t D = cfg.hidden_size, Dh = cfg.head_dim(), F = cfg.intermediate_size;
  ShardStorage st;
  const TpShard s = plan_shard(cfg, 1, 2);
  const ModelWeights w = shard_weights(full, cfg, s, st);
  ASSERT_EQ(full.layers[0].wq.values.dtype, cb::kernels::DType::F32);
  auto at = [](const cb::kernels::Weight& x, int64_t r, int64_t c) { return x.values.as<const float>()[r * x.values.cols() + c]; };
  const LayerWeights &L = w.layers[1], &Fl = full.layers[1];
  EXPECT_EQ(L.wq.n, s.heads * Dh);
  EXPECT_EQ(L.wq.k, D);
  EXPECT_EQ(L.wo.n, D);
  EXPECT_EQ(L.wo.k, s.heads * Dh);
  EXPECT_EQ(L.w_down.k, s.ffn);
  for (int64_t r = 0; r < L.wq.n; ++r)
    for (int64_t c = 0; c < D; c += 7) ASSERT_EQ(at(L.wq, r, c), at(Fl.wq, s.head0 * Dh + r, c));
  for (int64_t r = 0; r < L.wk.n; ++r) ASSERT_EQ(at(L.wk, r, 5), at(Fl.wk, s.kv_head0 * Dh + r, 5));
  for (int64_t r = 0; r < D; r += 3)
    for (int64_t c = 0; c < L.wo.k; ++c) ASSERT_EQ(at(L.wo, r, c), at(Fl.wo, r, s.head0 * Dh + c));
  for (int64_t r = 0; r < D; r += 5)
    for (int64_t c = 0; c < s.ffn; ++c) ASSERT_EQ(at(L.w_down, r, c), at(Fl.w_down, r, s.ffn0 + c));
  for (int64_t r = 0; r < s.ffn; ++r) ASSERT_EQ(at(L.w_up, r, 3), at(Fl.w_up, s.ffn0 + r, 3));
  // lm_head: the rank's vocabulary rows, then zero padding up to vocab_pad.
  EXPECT_EQ(w.lm_head.n, s.vocab_pad);
  for (int64_t r = 0; r < s.vocab; ++r) ASSERT_EQ(at(w.lm_head, r, 2), at(full.lm_head, s.vocab0 + r, 2));
  for (int64_t r = s.vocab; r < s.vocab_pad; ++r)
    for (int64_t c = 0; c < D; ++c) ASSERT_EQ(at(w.lm_head, r, c), 0.f);
  // Replicated tensors are the full ones; the shard holds about half the matmul weights.
  EXPECT_EQ(w.embed.data, full.embed.data);
  EXPECT_EQ(w.layers[0].attn_norm.data, full.layers[0].attn_norm.data);
  EXPECT_LT(w.bytes, full.bytes * 0.6);
  EXPECT_GT(st.bytes(), size_t(cfg.num_hidden_layers) * (2 * D * D + 3 * D * F) * 4 / 2 * 0.9);
}

TEST(TpStep, MessagesRoundTripAndMalformedOnesAreNamed) {
  TpStepMessage m;
  m.step = 7;
  m.kv_blocks = 32;
  m.kv_block_size = 4;
  m.copies = {{3, 9}, {4, 10}};
  m.seqs = {{{1, 2, 3}, 0, {5, 6}, false}, {{42}, 17, {1, 2, 3, 4, 5}, true}};
  const std::vector<int32_t> w = m.encode();
  const TpStepMessage d = TpStepMessage::decode(w);
  EXPECT_EQ(d.kind, TpStepMessage::Kind::Forward);
  EXPECT_EQ(d.step, 7);
  EXPECT_EQ(d.kv_blocks, 32);
  EXPECT_EQ(d.kv_block_size, 4);
  EXPECT_EQ(d.copies, m.copies);
  ASSERT_EQ(d.seqs.size(), 2u);
  EXPECT_EQ(d.seqs[1].tokens, std::vector<int32_t>{42});
  EXPECT_EQ(d.seqs[1].pos0, 17);
  EXPECT_EQ(d.seqs[1].table, (std::vector<int32_t>{1, 2, 3, 4, 5}));
  EXPECT_TRUE(d.seqs[1].all_logits);
  const auto b = d.batch();
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].tokens.size(), 3u);
  EXPECT_EQ(b[0].block_table[1], 6);

  std::vector<int32_t> cut(w.begin(), w.end() - 1), extra = w, wrong = w;
  extra.push_back(0);
  wrong[0] = 1234;
  EXPECT_NE(error_of([&] { TpStepMessage::decode(cut); }).find("truncated in block tables"), std::string::npos);
  EXPECT_NE(error_of([&] { TpStepMessage::decode(extra); }).find("1 words left over"), std::string::npos);
  EXPECT_NE(error_of([&] { TpStepMessage::decode(wrong); }).find("magic number (the ranks are out of step)"), std::string::npos);
  EXPECT_NE(error_of([&] { TpStepMessage::decode({1, 2}); }).find("shorter than the header"), std::string::npos);
}

// Greedy generation on the leader, the other ranks following; returns the leader's logits per step.
struct GenRun {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;
};
GenRun generate_tp(int ranks, const std::vector<int32_t>& prompt, int max_tokens, int prefill_chunk = 0) {
  GenRun out;
  auto body = [&](comm::Communicator* c) {
    auto lm = LoadedModel::open(default_model_dir(), "cpu", c);
    EXPECT_EQ(lm->shard().ranks, ranks);
    if (c && c->rank() != 0) return run_tp_follower(*lm);
    GenerateOptions g;
    g.max_tokens = max_tokens;
    g.stop_at_eos = false;
    g.prefill_chunk = prefill_chunk;
    g.on_logits = [&](const std::vector<float>& l) { out.logits.push_back(l); };
    out.tokens = generate(*lm, prompt, g).tokens;
    finish_tp_leader(*lm);
  };
  if (ranks == 1) body(nullptr);
  else comm::run_thread_group(ranks, [&](comm::Communicator& c) { body(&c); });
  return out;
}

TEST(TpForward, GreedyTokensAndLogitsMatchOneRank) {
  const std::vector<int32_t> prompt = {256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100};
  const GenRun ref = generate_tp(1, prompt, 12);
  ASSERT_EQ(ref.logits.size(), 12u);
  for (int n : {2, 4}) {
    for (int chunk : {0, 5}) {  // whole-prompt prefill, and chunked prefill
      const GenRun tp = generate_tp(n, prompt, 12, chunk);
      EXPECT_EQ(tp.tokens, ref.tokens) << n << " ranks, prefill chunk " << chunk;
      ASSERT_EQ(tp.logits.size(), ref.logits.size());
      double m = 0;
      for (size_t s = 0; s < ref.logits.size(); ++s) m = std::max(m, max_diff(tp.logits[s], ref.logits[s]));
      EXPECT_LE(m, kTol) << n << " ranks, prefill chunk " << chunk;
    }
  }
}

// A scheduler-like sequence of steps over a paged pool: two sequences with scattered blocks,
// chunked prefill mixed with decode in one batch, and a fork that copies a partly filled block
// (copy-on-write through Model::copy_kv_blocks, which the followers must mirror).
std::vector<std::vector<float>> paged_script(LoadedModel& lm) {
  KvCache kv(lm.backend(), lm.kv_config(), 24, 4);
  Model& m = lm.model();
  const std::vector<int32_t> a = {256, 10, 20, 30, 40, 50, 60, 70, 80}, b = {256, 5, 6};
  const std::vector<int32_t> ta = {17, 3, 9, 12}, tb = {20, 1}, tc = {17, 3, 5, 13};  // c forks a at position 9
  std::vector<std::vector<float>> out;
  auto step = [&](std::vector<SeqStep> batch) { out.push_back(m.forward(batch, kv)); };
  step({SeqStep{std::span(a).subspan(0, 6), 0, ta, false}});
  step({SeqStep{std::span(a).subspan(6, 3), 6, ta, true}, SeqStep{b, 0, tb, false}});
  // Fork: c shares a's first two full blocks (17, 3) and gets a copy of the partial third (9 -> 5).
  const std::pair<int32_t, int32_t> fork_copy[] = {{9, 5}};
  m.copy_kv_blocks(kv, fork_copy);
  const int32_t ya = 99, yb = 7, yc = 123;
  step({SeqStep{std::span(&ya, 1), 9, ta, false}, SeqStep{std::span(&yb, 1), 3, tb, false},
        SeqStep{std::span(&yc, 1), 9, tc, false}});
  return out;
}

TEST(TpForward, PagedBatchWithCopyOnWriteMatchesOneRank) {
  std::vector<std::vector<float>> ref;
  {
    auto lm = LoadedModel::open(default_model_dir(), "cpu");
    ref = paged_script(*lm);
  }
  for (int n : {2, 4}) {
    std::vector<std::vector<float>> got;
    comm::run_thread_group(n, [&](comm::Communicator& c) {
      auto lm = LoadedModel::open(default_model_dir(), "cpu", &c);
      if (c.rank() != 0) return run_tp_follower(*lm);
      got = paged_script(*lm);
      finish_tp_leader(*lm);
    });
    ASSERT_EQ(got.size(), ref.size());
    for (size_t s = 0; s < ref.size(); ++s) EXPECT_LE(max_diff(got[s], ref[s]), kTol) << n << " ranks, step " << s;
    EXPECT_EQ(got[1].size(), size_t(4 * 259));  // 3 all_logits rows + 1 last-token row
  }
}

TEST(TpForward, AWrongKvCacheIsRefusedBeforeTheStepIsSent) {
  std::string msg;
  comm::run_thread_group(2, [&](comm::Communicator& c) {
    auto lm = LoadedModel::open(default_model_dir(), "cpu", &c);
    if (c.rank() != 0) return run_tp_follower(*lm);
    EXPECT_EQ(lm->kv_config().num_key_value_heads, 1);
    EXPECT_EQ(lm->config().num_key_value_heads, 2);
    KvCache full(lm->backend(), lm->config(), 4, 16);  // the unsharded shape: wrong on a shard
    const std::vector<int32_t> t = {256, 1}, table = {0};
    msg = error_of([&] { lm->model().forward({SeqStep{t, 0, table, false}}, full); });
    EXPECT_FALSE(lm->model().step_in_progress());
    finish_tp_leader(*lm, true, msg);  // nothing was sent: the followers are simply stopped
  });
  EXPECT_NE(msg.find("the KV cache holds 2 KV heads per layer but this model shard (rank 0) computes 1"), std::string::npos) << msg;
}

// A communicator that moves only buffers from its own alloc(), as nccl moves only GPU memory: a
// host pointer given to a collective throws. It runs the collectives over a threads rank.
class OwnBuffersOnlyComm : public comm::Communicator {
 public:
  explicit OwnBuffersOnlyComm(comm::Communicator& inner) : in_(inner) {}
  std::string backend() const override { return "own-buffers"; }
  std::string describe() const override { return "own-buffers over " + in_.describe(); }
  int rank() const override { return in_.rank(); }
  int size() const override { return in_.size(); }
  bool device_memory() const override { return true; }
  void* alloc(size_t bytes) override {
    void* p = in_.alloc(bytes);
    std::lock_guard lock(mu_);
    owned_.insert(p);
    return p;
  }
  void free(void* p) override {
    {
      std::lock_guard lock(mu_);
      owned_.erase(p);
    }
    in_.free(p);
  }
  void all_reduce_sum(const void* s, void* r, size_t n, cb::kernels::DType t, cb::kernels::Stream st) override {
    need(s), need(r), in_.all_reduce_sum(s, r, n, t, st);
  }
  void all_gather(const void* s, void* r, size_t n, cb::kernels::DType t, cb::kernels::Stream st) override {
    need(s), need(r), in_.all_gather(s, r, n, t, st);
  }
  void broadcast(void* b, size_t n, cb::kernels::DType t, int root, cb::kernels::Stream st) override {
    need(b), in_.broadcast(b, n, t, root, st);
  }
  void barrier() override { in_.barrier(); }
  void abort_group(const std::string& why) override { in_.abort_group(why); }
  size_t live_buffers() {
    std::lock_guard lock(mu_);
    return owned_.size();
  }

 private:
  void need(const void* p) {
    std::lock_guard lock(mu_);
    if (!owned_.count(const_cast<void*>(p))) throw comm::CommError("own-buffers: a buffer this communicator did not allocate");
  }
  comm::Communicator& in_;
  std::mutex mu_;
  std::set<void*> owned_;
};

// The leader's step plan and the gathered logits reach every rank through a communicator that
// moves only its own (device) buffers, as over nccl, and no staging buffer is left behind.
TEST(TpStep, PlansAndGathersGoThroughADeviceMemoryCommunicatorsOwnBuffers) {
  TpStepMessage m;
  m.kind = TpStepMessage::Kind::Forward;
  m.step = 7;
  m.seqs.push_back({{256, 1, 2}, 0, {3, 4}, true});
  std::vector<TpStepMessage> got(3);
  std::vector<std::vector<float>> gathered(3);
  std::vector<size_t> left(3, 99);
  comm::run_thread_group(3, [&](comm::Communicator& threads) {
    OwnBuffersOnlyComm c(threads);
    EXPECT_THROW(c.broadcast(&m.step, 1, cb::kernels::DType::I32, 0, nullptr), comm::CommError);  // the fake bites
    if (c.rank() == 0) {
      send_step(c, m);
      got[0] = m;
    } else {
      got[size_t(c.rank())] = receive_step(c);
    }
    const std::vector<float> mine = {float(c.rank()), float(c.rank()) + 0.5f};
    gathered[size_t(c.rank())].resize(6);
    comm::all_gather_host(c, mine.data(), gathered[size_t(c.rank())].data(), 2, cb::kernels::DType::F32);
    left[size_t(c.rank())] = c.live_buffers();
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(got[size_t(r)].encode(), m.encode()) << "rank " << r;
    EXPECT_EQ(gathered[size_t(r)], (std::vector<float>{0.f, 0.5f, 1.f, 1.5f, 2.f, 2.5f})) << "rank " << r;
    EXPECT_EQ(left[size_t(r)], 0u) << "rank " << r;
  }
}

// A device-memory communicator with a backend that keeps tensors in host memory (and the other
// way round, which needs a GPU: ci/gpu-check.sh) is refused up front, naming the fix.
TEST(TpForward, ACommunicatorThatCannotReachTheBackendsTensorsIsRefused) {
  std::vector<std::string> msg(2);
  comm::run_thread_group(2, [&](comm::Communicator& threads) {
    OwnBuffersOnlyComm c(threads);
    msg[size_t(c.rank())] = error_of([&] { LoadedModel::open(default_model_dir(), "cpu", &c); });
  });
  for (const std::string& m : msg)
    EXPECT_NE(m.find("the 'own-buffers' communicator reduces GPU buffers but backend 'cpu' keeps tensors in host memory: "
                     "use --tp-comm mpi or threads"),
              std::string::npos)
        << m;
}

}  // namespace
