// Attention over the paged KV cache against the same keys and values stored contiguously (one
// block holding the whole context), at many lengths up to 16K tokens, in every backend; and the
// cpu backend against the ref oracle at 16K (the `ctx-16k` claim's op-level check).
#include <algorithm>
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "cb/kernels/backend.h"
#include "cb/kernels/kv_batch.h"

using namespace cb::kernels;

namespace {

struct Owned {
  Backend& be;
  Tensor t;
  Owned(Backend& b, DType dt, std::initializer_list<int64_t> dims, const void* src) : be(b), t(b.alloc(dt, dims)) {
    if (src) be.copy_from_host(t, src);
  }
  ~Owned() { be.release(t); }
};

struct Shape {
  int heads, kv_heads, head_dim;
};

double nmse(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += double(a[i] - b[i]) * (a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  return num / std::max(den, 1e-30);
}

// Runs attention for the last `rows` queries of an n_ctx-token context whose K/V rows are `k`, `v`
// ([n_ctx, kv_heads * head_dim]), stored either in shuffled blocks of `block` tokens or in one
// contiguous block (block == 0).
std::vector<float> run(Backend& be, const Shape& s, int n_ctx, int rows, int block, const std::vector<float>& q,
                       const std::vector<float>& k, const std::vector<float>& v, uint32_t seed) {
  const int row = s.kv_heads * s.head_dim;
  const int bs = block > 0 ? block : n_ctx;
  const int used = (n_ctx + bs - 1) / bs;
  const int pool = block > 0 ? used + 3 : 1;  // spare blocks stay NaN: reading one poisons the output
  std::vector<int32_t> table(used);
  for (int i = 0; i < used; ++i) table[i] = i;
  if (block > 0) {
    std::vector<int32_t> phys(pool);
    for (int i = 0; i < pool; ++i) phys[i] = i;
    std::mt19937 rng(seed);
    std::shuffle(phys.begin(), phys.end(), rng);
    std::copy(phys.begin(), phys.begin() + used, table.begin());
  }
  std::vector<float> kp(size_t(pool) * bs * row, NAN), vp(kp.size(), NAN);
  for (int t = 0; t < n_ctx; ++t) {
    const size_t dst = (size_t(table[t / bs]) * bs + t % bs) * row;
    std::copy(k.begin() + size_t(t) * row, k.begin() + size_t(t + 1) * row, kp.begin() + dst);
    std::copy(v.begin() + size_t(t) * row, v.begin() + size_t(t + 1) * row, vp.begin() + dst);
  }
  KvCacheStorage cache;
  EXPECT_TRUE(be.alloc_kv_cache({1, pool, bs, s.kv_heads, s.head_dim}, cache).ok());
  be.copy_from_host(cache.layers[0].k_pool, kp.data());
  be.copy_from_host(cache.layers[0].v_pool, vp.data());
  const KvSeq seq{n_ctx - rows, rows, table};
  KvBatchPlan plan;
  EXPECT_TRUE(plan_kv_batch(std::span(&seq, 1), pool, bs, plan).ok());
  KvBatchTensors idx(be);
  EXPECT_TRUE(idx.upload(plan).ok());
  Owned qt(be, DType::F32, {rows, int64_t(s.heads) * s.head_dim}, q.data());
  std::vector<float> nan_out(size_t(rows) * s.heads * s.head_dim, NAN);
  Owned out(be, DType::F32, {rows, int64_t(s.heads) * s.head_dim}, nan_out.data());
  AttentionParams p{s.heads, s.kv_heads, s.head_dim, 1.0f / std::sqrt(float(s.head_dim))};
  const Status st = be.attention(qt.t, cache.layers[0], idx.attention(), p, out.t);
  EXPECT_TRUE(st.ok()) << st.message;
  std::vector<float> host(nan_out.size());
  be.copy_to_host(host.data(), out.t);
  be.synchronize();
  be.release_kv_cache(cache);
  for (float x : host) EXPECT_TRUE(std::isfinite(x)) << "non-finite output (unwritten or read a foreign block)";
  return host;
}

struct Data {
  std::vector<float> q, k, v;
  Data(const Shape& s, int n_ctx, int rows, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n(0.f, 1.f);
    q.resize(size_t(rows) * s.heads * s.head_dim);
    k.resize(size_t(n_ctx) * s.kv_heads * s.head_dim);
    v.resize(k.size());
    for (auto* x : {&q, &k, &v})
      for (auto& f : *x) f = n(rng);
  }
};

class PagedAttention : public ::testing::TestWithParam<std::string> {};

// Paged vs contiguous in the same backend. Limit 1e-10: the same keys in the same order; only the
// grouping of keys into tiles can differ (float sums), ~1e-14 in practice.
TEST_P(PagedAttention, MatchesContiguousAtManyLengths) {
  auto be = make_backend(GetParam());
  const Shape s{4, 2, 16};  // the default model's attention shape
  for (int n_ctx : {1, 15, 16, 17, 100, 255, 256, 257, 1000, 4097, 16384}) {
    for (int block : {16, 64}) {
      const int rows = std::min(n_ctx, 4);
      // ref at 16K: a decode row only, to keep the double-precision oracle quick.
      const int r = (GetParam() == "ref" && n_ctx > 4096) ? 1 : rows;
      const uint32_t seed = 1000u + uint32_t(n_ctx) * 7u + uint32_t(block);
      Data d(s, n_ctx, r, seed);
      const auto paged = run(*be, s, n_ctx, r, block, d.q, d.k, d.v, seed);
      const auto contiguous = run(*be, s, n_ctx, r, 0, d.q, d.k, d.v, seed);
      EXPECT_LT(nmse(paged, contiguous), 1e-10) << GetParam() << " n_ctx " << n_ctx << " block " << block << " seed " << seed;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, PagedAttention, ::testing::ValuesIn(available_backends()));

// Every non-ref backend against the oracle at 16K, paged, for the default model's shape and a
// llama-1b-like one (32 heads, 4 KV heads, head_dim 64). Limit 1e-8 as in the op conformance suite:
// float online softmax over 16K keys vs double.
TEST(PagedAttention16K, OptimizedBackendsMatchRef) {
  auto ref = make_backend("ref");
  for (const auto& name : available_backends()) {
    if (name == "ref") continue;
    auto be = make_backend(name);
    for (const Shape s : {Shape{4, 2, 16}, Shape{32, 4, 64}}) {
      const int n_ctx = 16384, rows = 2;
      Data d(s, n_ctx, rows, 77);
      const auto a = run(*be, s, n_ctx, rows, 16, d.q, d.k, d.v, 5);
      const auto b = run(*ref, s, n_ctx, rows, 16, d.q, d.k, d.v, 5);
      const double e = nmse(a, b);
      std::printf("[%s vs ref, 16K keys, heads %d/%d, head_dim %d] NMSE %.3g\n", name.c_str(), s.heads, s.kv_heads, s.head_dim, e);
      EXPECT_LT(e, 1e-8) << name;
    }
  }
}

// A block table shorter than the context, or naming a block outside the pool, is an
// InvalidArgument from plan_kv_batch, the host-side check every caller runs before upload, so no
// backend ever reads outside the cache.
TEST(PagedAttentionArgs, BadBlockTablesAreRejected) {
  const int bs = 4, pool = 4, n_ctx = 12;  // 12 tokens need 3 blocks
  for (const std::vector<int32_t>& table : {std::vector<int32_t>{0, 1}, std::vector<int32_t>{0, 1, 7}, std::vector<int32_t>{0, -1, 2}}) {
    const KvSeq seq{n_ctx - 1, 1, table};
    KvBatchPlan plan;
    const Status st = plan_kv_batch(std::span(&seq, 1), pool, bs, plan);
    EXPECT_EQ(st.code, StatusCode::InvalidArgument) << "table size " << table.size() << ": " << st.message;
  }
}

}  // namespace
