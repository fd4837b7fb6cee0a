// Conformance of every op on every backend against `ref` (llama.cpp test-backend-ops style).
//
// Each case (cb/kernels/testing/op_cases.h, shared with cb_kernel_bench) builds its inputs from a
// fixed seed, runs on `ref` (the double-accumulating oracle) and on each backend under test, and
// the outputs are compared by NMSE against the case's own limit, with NaN/Inf checks; outputs are
// poisoned with NaN before each call so an unwritten element fails. The `cpu` backend is tested
// once per code path this machine can run (its best ISA, and lower levels forced by $CB_CPU_ISA:
// see op_driver.h). Failure messages name the backend, the case and the seed. Low-precision
// matmuls (W8A8, bf16 dot, 2:4 sparse) have their own grids in test_matmul_lowp.cpp.
//
// Also here: bad shapes must return InvalidArgument and unsupported dtypes Unsupported, never a
// crash, and supports() must agree with what the ops do.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>

#include "conformance/op_driver.h"

namespace cb::conformance {
namespace {

using kernels::AttentionParams;
using kernels::Op;
using kernels::StatusCode;

const DType kWeightDtypes[] = {DType::F32, DType::F16, DType::BF16, DType::I8};
const DType kFloatDtypes[] = {DType::F32, DType::F16, DType::BF16};

// ------------------------------------------------------------------------------------------------
// Op grids: odd sizes so every SIMD tail (16 and 8 lanes), the 8-row GEMV blocking and the
// oneDNN large-M threshold are crossed (and cpu[onednn] runs every f32 shape through oneDNN).
// ------------------------------------------------------------------------------------------------

TEST(Conformance, MatMul) {
  Cases cases;
  for (DType dt : kWeightDtypes)
    for (int64_t M : {1, 2, 5, 8, 9, 64, 130})
      for (int64_t K : {1, 7, 33, 257})
        for (int64_t N : {1, 3, 17, 130}) add_case<MatMulCase>(cases, dt, M, K, N);
  check_cases("matmul", cases, 1000);
}

TEST(Conformance, MatMulModelShapes) {
  // A slice of llama-1b's projections (K = 2048 or 5632) at decode and prefill row counts: long
  // accumulations, power-of-two K (x rows padded against cache aliasing), 8-row blocking.
  Cases cases;
  for (DType dt : kWeightDtypes) {
    for (int64_t M : {1, 8, 16, 31, 32, 33, 128}) add_case<MatMulCase>(cases, dt, M, 2048, 96);
    for (int64_t M : {3, 40}) add_case<MatMulCase>(cases, dt, M, 5632, 40);
    // Past 8 rows K is summed in L1-sized slices (256-1024 columns by machine): K that ends in a
    // partial slice and a partial vector.
    for (int64_t K : {1043, 3001}) add_case<MatMulCase>(cases, dt, 12, K, 29);
  }
  // Past the default oneDNN threshold (512 rows, f32 only) and the same rows with other dtypes.
  for (DType dt : kWeightDtypes)
    for (int64_t M : {511, 512, 600}) add_case<MatMulCase>(cases, dt, M, 257, 17);
  add_case<MatMulCase>(cases, DType::F32, 520, 2048, 24);
  check_cases("matmul", cases, 2000);
}

TEST(Conformance, RmsNorm) {
  Cases cases;
  for (DType dt : kFloatDtypes)
    for (int64_t M : {1, 5, 64})
      for (int64_t D : {1, 7, 33, 257, 2048}) add_case<RmsNormCase>(cases, dt, M, D, 1e-5f);
  add_case<RmsNormCase>(cases, DType::F32, 3, 5632, 1e-6f);
  check_cases("rmsnorm", cases, 3000);
}

TEST(Conformance, Rope) {
  Cases cases;
  for (int64_t M : {1, 5, 64})
    for (auto [heads, hd] : {std::pair{1, 2}, {3, 8}, {2, 6}, {8, 64}, {4, 128}, {2, 34}})
      for (float theta : {10000.f, 500000.f}) add_case<RopeCase>(cases, M, heads, hd, theta);
  check_cases("rope", cases, 4000);
}

TEST(Conformance, KvStore) {
  Cases cases;
  for (int bs : {1, 16, 64})
    for (auto [kvh, hd] : {std::pair{1, 8}, {4, 64}, {2, 128}})
      for (auto [M, pos0] : {std::pair{1, 0}, {1, 77}, {17, 5}, {100, 0}, {64, 64}})
        add_case<KvStoreCase>(cases, bs, kvh, hd, M, pos0);
  // Batches: a prefill chunk next to decode rows, each sequence through its own table.
  for (int bs : {1, 16})
    add_case<KvStoreCase>(cases, bs, 2, 64, std::vector<SeqRows>{{17, 5}, {1, 77}, {1, 0}, {40, 0}});
  check_cases("kv_store", cases, 5000);
}

TEST(Conformance, Attention) {
  // Every block size x GQA ratio x head_dim, each as prefill (q_pos0 = 0), chunked prefill
  // (q_pos0 > 0) and decode (one row at the end of the context).
  Cases cases;
  for (int bs : {1, 16, 64})
    for (auto [heads, kvh] : {std::pair{4, 4}, {4, 2}, {8, 2}, {8, 1}})
      for (int hd : {64, 128, 8}) {
        add_case<AttentionCase>(cases, bs, heads, kvh, hd, 33, 0);
        add_case<AttentionCase>(cases, bs, heads, kvh, hd, 9, 70);
        add_case<AttentionCase>(cases, bs, heads, kvh, hd, 1, 150 + bs);
      }
  // Heads that do not split evenly into chunks of 8, and a group larger than 8.
  add_case<AttentionCase>(cases, 16, 12, 4, 64, 5, 20);
  add_case<AttentionCase>(cases, 16, 16, 1, 16, 3, 40);
  // One key (the first token), and a prefill spanning many 64-key tiles.
  add_case<AttentionCase>(cases, 16, 4, 2, 64, 1, 0);
  add_case<AttentionCase>(cases, 64, 8, 2, 64, 200, 0);
  // Peaked softmax: one key dominates, so rescaling between key tiles must be exact.
  add_case<AttentionCase>(cases, 16, 8, 2, 64, 20, 300, 6.f);
  add_case<AttentionCase>(cases, 1, 4, 1, 128, 1, 1000, 8.f);
  // Long contexts: decode and a chunked-prefill step at n_ctx = 2048.
  add_case<AttentionCase>(cases, 16, 32, 4, 64, 1, 2047);
  add_case<AttentionCase>(cases, 64, 8, 8, 128, 1, 2047);
  add_case<AttentionCase>(cases, 16, 8, 2, 64, 48, 2000);
  // Whole batches in one call, as the engine runs them: decode rows of many lengths, and chunked
  // prefill mixed with decode (the offsets and per-sequence contexts must line up).
  for (int bs : {1, 16})
    for (auto [heads, kvh] : {std::pair{8, 2}, {4, 4}}) {
      add_case<AttentionCase>(cases, bs, heads, kvh, 64, std::vector<SeqRows>{{1, 0}, {1, 5}, {1, 63}, {1, 200}, {1, 16}});
      add_case<AttentionCase>(cases, bs, heads, kvh, 64, std::vector<SeqRows>{{33, 0}, {1, 150}, {9, 70}, {1, 1}});
    }
  add_case<AttentionCase>(cases, 16, 32, 4, 64, std::vector<SeqRows>{{1, 2047}, {48, 2000}, {1, 300}}, 6.f);
  check_cases("attention", cases, 6000);
}

TEST(Conformance, SiluMul) {
  Cases cases;
  for (auto [M, N] : {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {3, 33}, {5, 257}, {64, 2048}, {1, 100000}})
    for (float amp : {1.f, 20.f, 100.f}) add_case<ElementwiseCase>(cases, Elementwise::SiluMul, M, N, amp);
  add_case<ElementwiseCase>(cases, Elementwise::SiluMul, 5, 100, 4.f, true);
  check_cases("silu_mul", cases, 7000);
}

TEST(Conformance, Softmax) {
  Cases cases;
  for (int64_t M : {1, 3, 8})
    for (int64_t N : {1, 7, 33, 257, 32000})
      for (float amp : {1.f, 30.f}) add_case<ElementwiseCase>(cases, Elementwise::Softmax, M, N, amp);
  add_case<ElementwiseCase>(cases, Elementwise::Softmax, 4, 1000, 10.f, true);
  check_cases("softmax", cases, 8000);
}

TEST(Conformance, Add) {
  Cases cases;
  for (auto [M, N] : {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {3, 33}, {5, 257}, {64, 2048}, {1, 100000}})
    add_case<ElementwiseCase>(cases, Elementwise::Add, M, N, 2.f);
  add_case<ElementwiseCase>(cases, Elementwise::Add, 7, 999, 2.f, true);
  check_cases("add", cases, 9000);
}

TEST(Conformance, Embedding) {
  Cases cases;
  for (DType dt : kFloatDtypes)
    for (int64_t V : {1, 100})
      for (int64_t D : {1, 7, 33, 2048})
        for (int64_t M : {1, 9}) add_case<EmbeddingCase>(cases, dt, V, D, M);
  check_cases("embedding", cases, 10000);
}

// ------------------------------------------------------------------------------------------------
// Bad calls: a status, never a crash
// ------------------------------------------------------------------------------------------------

// Backend's public ops run these checks once for every backend (backend_common.cpp), so ref
// rejects each bad call exactly as the others do.
struct BadCall {
  const char* what;
  StatusCode expect;
  std::function<Status(Backend&)> call;
  // Whether the backend runs what the call is about at all; one that does not says Unsupported
  // before looking at the arguments' contents (cuda without cuSPARSELt and 2:4 weights).
  std::function<bool(const Backend&)> runs_it = nullptr;
};

Weight dense(Buf& b) { return Weight::dense(b.t()); }

AttentionParams attn_params(int heads, int kv_heads, int head_dim) {
  AttentionParams p;
  p.n_heads = heads;
  p.n_kv_heads = kv_heads;
  p.head_dim = head_dim;
  p.scale = 0.25f;
  return p;
}

// A cache of 4 blocks of 4 slots, 2 kv heads of dim 8, from alloc_kv_cache, and the index
// tensors of one sequence of `rows` rows at position pos0 through blocks {2, 0}.
struct SmallCache {
  Backend& be;
  kernels::KvCacheStorage kv;
  kernels::KvBatchTensors idx;
  explicit SmallCache(Backend& b, int rows = 1, int pos0 = 0) : be(b), idx(b) {
    EXPECT_TRUE(be.alloc_kv_cache({1, 4, 4, 2, 8}, kv).ok());
    const int32_t table[2] = {2, 0};
    const kernels::KvSeq seq{pos0, rows, table};
    kernels::KvBatchPlan plan;
    EXPECT_TRUE(kernels::plan_kv_batch(std::span(&seq, 1), 4, 4, plan).ok());
    EXPECT_TRUE(idx.upload(plan).ok());
  }
  ~SmallCache() { be.release_kv_cache(kv); }
  kernels::KvLayer& layer() { return kv.layers.at(0); }
  const kernels::AttentionBatch& batch() { return idx.attention(); }
  const Tensor& slots() { return idx.slot_mapping(); }
};

std::vector<BadCall> bad_calls() {
  const auto I = StatusCode::InvalidArgument;
  const auto U = StatusCode::Unsupported;
  return {
      {"matmul: x has K+1 columns", I, [](Backend& be) {
         Buf x(be, DType::F32, {2, 9}), w(be, DType::F32, {4, 8}), y(be, DType::F32, {2, 4});
         return be.matmul(x.t(), dense(w), y.t());
       }},
      {"matmul: y has N+1 columns", I, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), w(be, DType::F32, {4, 8}), y(be, DType::F32, {2, 5});
         return be.matmul(x.t(), dense(w), y.t());
       }},
      {"matmul: y has one row too many", I, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), w(be, DType::F32, {4, 8}), y(be, DType::F32, {3, 4});
         return be.matmul(x.t(), dense(w), y.t());
       }},
      {"matmul: f16 activations", I, [](Backend& be) {
         Buf x(be, DType::F16, {2, 8}), w(be, DType::F32, {4, 8}), y(be, DType::F32, {2, 4});
         return be.matmul(x.t(), dense(w), y.t());
       }},
      {"matmul: dense i8 weight", U, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), w(be, DType::I8, {4, 8}), y(be, DType::F32, {2, 4});
         return be.matmul(x.t(), dense(w), y.t());
       }},
      {"matmul: dense i32 weight", U, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), w(be, DType::I32, {4, 8}), y(be, DType::F32, {2, 4});
         return be.matmul(x.t(), dense(w), y.t());
       }},
      {"upload_weight: 2:4 sparse weight with zero (malformed) meta", I, [](Backend& be) {
         Buf w(be, DType::F16, {4, 4}), meta(be, DType::I8, {4, 2});
         Weight sw;
         sw.layout = WeightLayout::Sparse24;
         sw.values = w.t();
         sw.meta = meta.t();
         sw.n = 4;
         sw.k = 8;
         Weight out;
         return be.upload_weight(sw, out);
       },
       [](const Backend& be) { return be.supports_matmul(DType::F16, WeightLayout::Sparse24, kernels::ActQuant::None); }},
      {"matmul: weight values smaller than N x K", I, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), w(be, DType::F32, {3, 8}), y(be, DType::F32, {2, 4});
         Weight wt = dense(w);
         wt.n = 4;
         return be.matmul(x.t(), wt, y.t());
       }},
      {"matmul: int8 scales of the wrong length", I, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), w(be, DType::I8, {4, 8}), s(be, DType::F32, {3}), y(be, DType::F32, {2, 4});
         Weight wt = dense(w);
         wt.layout = WeightLayout::Int8PerChannel;
         wt.scales = s.t();
         return be.matmul(x.t(), wt, y.t());
       }},
      {"matmul: int8 without scales", I, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), w(be, DType::I8, {4, 8}), y(be, DType::F32, {2, 4});
         Weight wt = dense(w);
         wt.layout = WeightLayout::Int8PerChannel;
         return be.matmul(x.t(), wt, y.t());
       }},
      {"rmsnorm: y shape differs", I, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), w(be, DType::F32, {8}), y(be, DType::F32, {2, 9});
         return be.rmsnorm(x.t(), w.t(), 1e-5f, y.t());
       }},
      {"rmsnorm: weight length differs", I, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), w(be, DType::F32, {7}), y(be, DType::F32, {2, 8});
         return be.rmsnorm(x.t(), w.t(), 1e-5f, y.t());
       }},
      {"rmsnorm: i8 weight", U, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), w(be, DType::I8, {8}), y(be, DType::F32, {2, 8});
         return be.rmsnorm(x.t(), w.t(), 1e-5f, y.t());
       }},
      {"rope: odd head_dim", I, [](Backend& be) {
         Buf x(be, DType::F32, {1, 6}), pos(be, DType::I32, {1});
         return be.rope(x.t(), pos.t(), 2, 3, 10000.f);
       }},
      {"rope: one position for two rows", I, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), pos(be, DType::I32, {1});
         return be.rope(x.t(), pos.t(), 2, 4, 10000.f);
       }},
      {"rope: columns != heads x head_dim", I, [](Backend& be) {
         Buf x(be, DType::F32, {1, 8}), pos(be, DType::I32, {1});
         return be.rope(x.t(), pos.t(), 3, 4, 10000.f);
       }},
      {"rope: f32 positions", I, [](Backend& be) {
         Buf x(be, DType::F32, {1, 8}), pos(be, DType::F32, {1});
         return be.rope(x.t(), pos.t(), 2, 4, 10000.f);
       }},
      {"rope: f16 activations", U, [](Backend& be) {
         Buf x(be, DType::F16, {1, 8}), pos(be, DType::I32, {1});
         return be.rope(x.t(), pos.t(), 2, 4, 10000.f);
       }},
      {"kv_store: k row is not kv_heads x head_dim", I, [](Backend& be) {
         SmallCache c(be);
         Buf k(be, DType::F32, {1, 15}), v(be, DType::F32, {1, 15});
         return be.kv_store(k.t(), v.t(), c.slots(), c.layer());
       }},
      {"kv_store: k and v row counts differ", I, [](Backend& be) {
         SmallCache c(be, 2);
         Buf k(be, DType::F32, {2, 16}), v(be, DType::F32, {3, 16});
         return be.kv_store(k.t(), v.t(), c.slots(), c.layer());
       }},
      {"kv_store: one slot for two rows", I, [](Backend& be) {
         SmallCache c(be, 1);
         Buf k(be, DType::F32, {2, 16}), v(be, DType::F32, {2, 16});
         return be.kv_store(k.t(), v.t(), c.slots(), c.layer());
       }},
      {"kv_store: f32 slot mapping", I, [](Backend& be) {
         SmallCache c(be);
         Buf k(be, DType::F32, {1, 16}), v(be, DType::F32, {1, 16}), slots(be, DType::F32, {1});
         return be.kv_store(k.t(), v.t(), slots.t(), c.layer());
       }},
      {"kv_store: pools smaller than their block count", I, [](Backend& be) {
         SmallCache c(be);
         Buf k(be, DType::F32, {1, 16}), v(be, DType::F32, {1, 16});
         kernels::KvLayer l = c.layer();
         l.num_blocks = 5;
         return be.kv_store(k.t(), v.t(), c.slots(), l);
       }},
      {"kv_store: f16 k and v", U, [](Backend& be) {
         SmallCache c(be);
         Buf k(be, DType::F16, {1, 16}), v(be, DType::F16, {1, 16});
         return be.kv_store(k.t(), v.t(), c.slots(), c.layer());
       }},
      {"attention: heads not a multiple of kv heads", I, [](Backend& be) {
         SmallCache c(be);
         Buf q(be, DType::F32, {1, 24}), o(be, DType::F32, {1, 24});
         return be.attention(q.t(), c.layer(), c.batch(), attn_params(3, 2, 8), o.t());
       }},
      {"attention: q columns != heads x head_dim", I, [](Backend& be) {
         SmallCache c(be);
         Buf q(be, DType::F32, {1, 30}), o(be, DType::F32, {1, 30});
         return be.attention(q.t(), c.layer(), c.batch(), attn_params(4, 2, 8), o.t());
       }},
      {"attention: cache head_dim differs", I, [](Backend& be) {
         SmallCache c(be);
         Buf q(be, DType::F32, {1, 16}), o(be, DType::F32, {1, 16});
         return be.attention(q.t(), c.layer(), c.batch(), attn_params(4, 2, 4), o.t());
       }},
      {"attention: zero kv heads", I, [](Backend& be) {
         SmallCache c(be);
         Buf q(be, DType::F32, {1, 32}), o(be, DType::F32, {1, 32});
         return be.attention(q.t(), c.layer(), c.batch(), attn_params(4, 0, 8), o.t());
       }},
      {"attention: batch index tensors of the wrong length", I, [](Backend& be) {
         SmallCache c(be);
         Buf q(be, DType::F32, {1, 32}), o(be, DType::F32, {1, 32});
         kernels::AttentionBatch b = c.batch();
         b.num_seqs = 2;
         return be.attention(q.t(), c.layer(), b, attn_params(4, 2, 8), o.t());
       }},
      {"attention: context longer than the tables cover", I, [](Backend& be) {
         SmallCache c(be);
         Buf q(be, DType::F32, {1, 32}), o(be, DType::F32, {1, 32});
         kernels::AttentionBatch b = c.batch();
         b.max_context_len = 9;  // 1 block of 4 slots per sequence in this batch
         return be.attention(q.t(), c.layer(), b, attn_params(4, 2, 8), o.t());
       }},
      {"attention: block size 0", I, [](Backend& be) {
         SmallCache c(be);
         Buf q(be, DType::F32, {1, 32}), o(be, DType::F32, {1, 32});
         kernels::KvLayer l = c.layer();
         l.block_size = 0;
         return be.attention(q.t(), l, c.batch(), attn_params(4, 2, 8), o.t());
       }},
      {"attention: out shape differs from q", I, [](Backend& be) {
         SmallCache c(be);
         Buf q(be, DType::F32, {1, 32}), o(be, DType::F32, {2, 32});
         return be.attention(q.t(), c.layer(), c.batch(), attn_params(4, 2, 8), o.t());
       }},
      {"attention: f16 q", U, [](Backend& be) {
         SmallCache c(be);
         Buf q(be, DType::F16, {1, 32}), o(be, DType::F32, {1, 32});
         return be.attention(q.t(), c.layer(), c.batch(), attn_params(4, 2, 8), o.t());
       }},
      {"silu_mul: up shape differs", I, [](Backend& be) {
         Buf g(be, DType::F32, {2, 8}), u(be, DType::F32, {2, 7}), o(be, DType::F32, {2, 8});
         return be.silu_mul(g.t(), u.t(), o.t());
       }},
      {"silu_mul: out shape differs", I, [](Backend& be) {
         Buf g(be, DType::F32, {2, 8}), u(be, DType::F32, {2, 8}), o(be, DType::F32, {1, 8});
         return be.silu_mul(g.t(), u.t(), o.t());
       }},
      {"silu_mul: f16", U, [](Backend& be) {
         Buf g(be, DType::F16, {2, 8}), u(be, DType::F16, {2, 8}), o(be, DType::F16, {2, 8});
         return be.silu_mul(g.t(), u.t(), o.t());
       }},
      {"softmax: y shape differs", I, [](Backend& be) {
         Buf x(be, DType::F32, {2, 8}), y(be, DType::F32, {4, 4});
         return be.softmax(x.t(), y.t());
       }},
      {"softmax: bf16", U, [](Backend& be) {
         Buf x(be, DType::BF16, {2, 8}), y(be, DType::BF16, {2, 8});
         return be.softmax(x.t(), y.t());
       }},
      {"embedding: out has the wrong width", I, [](Backend& be) {
         Buf ids(be, DType::I32, {2}), t(be, DType::F32, {10, 8}), o(be, DType::F32, {2, 7});
         return be.embedding(ids.t(), t.t(), o.t());
       }},
      {"embedding: out has the wrong row count", I, [](Backend& be) {
         Buf ids(be, DType::I32, {2}), t(be, DType::F32, {10, 8}), o(be, DType::F32, {3, 8});
         return be.embedding(ids.t(), t.t(), o.t());
       }},
      {"embedding: f32 ids", I, [](Backend& be) {
         Buf ids(be, DType::F32, {1}), t(be, DType::F32, {10, 8}), o(be, DType::F32, {1, 8});
         return be.embedding(ids.t(), t.t(), o.t());
       }},
      {"embedding: i8 table", U, [](Backend& be) {
         Buf ids(be, DType::I32, {1}), t(be, DType::I8, {10, 8}), o(be, DType::F32, {1, 8});
         return be.embedding(ids.t(), t.t(), o.t());
       }},
      {"add: b shape differs", I, [](Backend& be) {
         Buf a(be, DType::F32, {2, 8}), b(be, DType::F32, {2, 9}), o(be, DType::F32, {2, 8});
         return be.add(a.t(), b.t(), o.t());
       }},
      {"add: out shape differs", I, [](Backend& be) {
         Buf a(be, DType::F32, {2, 8}), b(be, DType::F32, {2, 8}), o(be, DType::F32, {8, 2});
         return be.add(a.t(), b.t(), o.t());
       }},
      {"add: f16", U, [](Backend& be) {
         Buf a(be, DType::F16, {2, 8}), b(be, DType::F16, {2, 8}), o(be, DType::F16, {2, 8});
         return be.add(a.t(), b.t(), o.t());
       }},
  };
}

// The checks the ops leave to their callers (host side, before upload): block tables must cover
// each sequence's context and name blocks inside the pool; token ids must be in the vocabulary.
TEST(Conformance, KvBatchPlanRejectsBadTables) {
  kernels::KvBatchPlan plan;
  const std::vector<int32_t> ok_table{3, 1, 2}, short_table{3, 1}, outside{3, 4, 2}, negative{3, -1, 2};
  auto plan_one = [&](const std::vector<int32_t>& t, int pos0, int rows) {
    const kernels::KvSeq seqs[2] = {{0, 1, ok_table}, {pos0, rows, t}};
    return kernels::plan_kv_batch(seqs, 4, 4, plan);
  };
  EXPECT_TRUE(plan_one(ok_table, 7, 5).ok());  // 12 positions in 3 blocks
  for (const auto& [table, what] : {std::pair{short_table, "table too short"}, {outside, "block 4 of 4"}, {negative, "block -1"}}) {
    const Status s = plan_one(table, 7, 5);
    EXPECT_EQ(s.code, StatusCode::InvalidArgument) << what;
    EXPECT_NE(s.message.find("sequence 1"), std::string::npos) << s.message;
  }
  EXPECT_EQ(plan_one(ok_table, -1, 2).code, StatusCode::InvalidArgument);
  EXPECT_EQ(plan_one(ok_table, 0, 0).code, StatusCode::InvalidArgument);
  // The plan itself: offsets, contexts, padded tables and slots of a 2-sequence batch.
  ASSERT_TRUE(plan_one(ok_table, 6, 3).ok());
  EXPECT_EQ(plan.query_start, (std::vector<int32_t>{0, 1, 4}));
  EXPECT_EQ(plan.context_len, (std::vector<int32_t>{1, 9}));
  EXPECT_EQ(plan.max_blocks_per_seq, 3);
  EXPECT_EQ(plan.block_tables, (std::vector<int32_t>{3, 0, 0, 3, 1, 2}));
  EXPECT_EQ(plan.slot_mapping, (std::vector<int32_t>{12, 6, 7, 8}));  // pos 6, 7 in block 1; pos 8 in block 2
  EXPECT_EQ(plan.positions, (std::vector<int32_t>{0, 6, 7, 8}));
  // Widened for a recorded step: tables to a multiple of 4 columns (zeros past each), the context
  // bound to their capacity; the rest unchanged. Already wide enough: only the bound moves.
  kernels::round_up_kv_batch(plan, 4, 4);
  EXPECT_EQ(plan.max_blocks_per_seq, 4);
  EXPECT_EQ(plan.block_tables, (std::vector<int32_t>{3, 0, 0, 0, 3, 1, 2, 0}));
  EXPECT_EQ(plan.max_context_len, 16);
  EXPECT_EQ(plan.context_len, (std::vector<int32_t>{1, 9}));
  kernels::round_up_kv_batch(plan, 2, 4);
  EXPECT_EQ(plan.max_blocks_per_seq, 4);
  EXPECT_EQ(plan.block_tables.size(), 8u);

  const std::vector<int32_t> ids{0, 9, 10};
  const Status bad = kernels::check_token_ids(ids, 10);
  EXPECT_EQ(bad.code, StatusCode::InvalidArgument);
  EXPECT_NE(bad.message.find("token id 10 at index 2"), std::string::npos) << bad.message;
  EXPECT_TRUE(kernels::check_token_ids(std::span(ids).first(2), 10).ok());
}

// Copy-on-write copies: every pair in every layer, in one call, and ids outside the pool rejected
// before anything is copied.
TEST(Conformance, CopyKvBlocksCopiesEveryLayer) {
  std::vector<std::pair<std::string, Backend*>> targets{{"ref", &ref_backend()}};
  for (auto& ut : backends_under_test()) targets.emplace_back(ut.label, ut.be.get());
  for (auto& [label, be] : targets) {
    kernels::KvCacheStorage kv;
    ASSERT_TRUE(be->alloc_kv_cache({2, 4, 2, 1, 4}, kv).ok()) << label;
    const int64_t n = 4 * 2 * 1 * 4;
    std::vector<float> host(static_cast<size_t>(n));
    for (int l = 0; l < 2; ++l)
      for (int p = 0; p < 2; ++p) {
        for (int64_t i = 0; i < n; ++i) host[size_t(i)] = float(1000 * l + 100 * p + i);
        be->copy_from_host(p ? kv.layers[l].v_pool : kv.layers[l].k_pool, host.data());
      }
    const std::pair<int32_t, int32_t> bad[] = {{0, 1}, {1, 4}};
    EXPECT_EQ(be->copy_kv_blocks(kv, bad).code, StatusCode::InvalidArgument) << label;
    const std::pair<int32_t, int32_t> copies[] = {{0, 3}, {2, 1}};
    ASSERT_TRUE(be->copy_kv_blocks(kv, copies).ok()) << label;
    for (int l = 0; l < 2; ++l)
      for (int p = 0; p < 2; ++p) {
        be->copy_to_host(host.data(), p ? kv.layers[l].v_pool : kv.layers[l].k_pool);
        const float base = float(1000 * l + 100 * p);
        for (int i = 0; i < 8; ++i) {  // a block is 2 slots x 4 floats
          EXPECT_EQ(host[size_t(24 + i)], base + i) << label << " layer " << l << ": block 0 -> 3";
          EXPECT_EQ(host[size_t(8 + i)], base + 16 + i) << label << " layer " << l << ": block 2 -> 1";
          EXPECT_EQ(host[size_t(i)], base + i) << label << " layer " << l << ": block 0 unchanged";
        }
      }
    be->release_kv_cache(kv);
  }
}

TEST(Conformance, BadCallsReturnStatus) {
  for (const BadCall& bc : bad_calls()) {
    std::vector<std::pair<std::string, Backend*>> targets;
    targets.emplace_back("ref", &ref_backend());
    for (auto& ut : backends_under_test()) targets.emplace_back(ut.label, ut.be.get());
    for (auto& [label, be] : targets) {
      const Status s = bc.call(*be);
      const StatusCode expect = bc.runs_it && !bc.runs_it(*be) ? StatusCode::Unsupported : bc.expect;
      EXPECT_EQ(int(s.code), int(expect))
          << label << " " << bc.what << ": expected " << (expect == StatusCode::Unsupported ? "Unsupported" : "InvalidArgument")
          << ", got code " << int(s.code) << " '" << s.message << "'";
      if (s.code != StatusCode::Ok) {
        EXPECT_FALSE(s.message.empty()) << label << " " << bc.what << ": no message";
      }
    }
  }
}

// supports() must describe what the ops do: every combination the grids above run is claimed,
// and the combinations the bad calls reject as Unsupported are not.
TEST(Conformance, SupportsIsTruthful) {
  for (auto& ut : backends_under_test()) {
    Backend& be = *ut.be;
    EXPECT_FALSE(be.supports(Op::MatMul, DType::I8, WeightLayout::Dense)) << ut.label;
    EXPECT_FALSE(be.supports(Op::MatMul, DType::I32, WeightLayout::Dense)) << ut.label;
    EXPECT_FALSE(be.supports(Op::RmsNorm, DType::I8)) << ut.label;
    EXPECT_FALSE(be.supports(Op::Embedding, DType::I8)) << ut.label;
    EXPECT_FALSE(be.supports(Op::MatMul, DType::I8, WeightLayout::Sparse24)) << ut.label;
    // Low-precision activations: only W8A8 on int8 per-channel and bf16 x bf16 on dense bf16.
    EXPECT_FALSE(be.supports_matmul(DType::F32, WeightLayout::Dense, kernels::ActQuant::PerTokenInt8)) << ut.label;
    EXPECT_FALSE(be.supports_matmul(DType::F32, WeightLayout::Dense, kernels::ActQuant::Bf16)) << ut.label;
    EXPECT_FALSE(be.supports_matmul(DType::F32, WeightLayout::Sparse24, kernels::ActQuant::PerTokenInt8)) << ut.label;
    EXPECT_EQ(be.supports_matmul(DType::F32, WeightLayout::Dense, kernels::ActQuant::None),
              be.supports(Op::MatMul, DType::F32, WeightLayout::Dense))
        << ut.label;
    for (Op op : {Op::Rope, Op::Attention, Op::KvStore, Op::SiluMul, Op::Softmax, Op::Add})
      EXPECT_FALSE(be.supports(op, DType::F16)) << ut.label << " " << kernels::op_name(op);
    if (ut.label.rfind("cpu", 0) == 0) {
      // The cpu backend implements the full table of ref (other backends may skip some: the
      // grids then check that they say Unsupported).
      for (DType dt : kFloatDtypes) {
        EXPECT_TRUE(be.supports(Op::MatMul, dt, WeightLayout::Dense)) << ut.label;
        EXPECT_TRUE(be.supports(Op::RmsNorm, dt)) << ut.label;
        EXPECT_TRUE(be.supports(Op::Embedding, dt)) << ut.label;
      }
      EXPECT_TRUE(be.supports(Op::MatMul, DType::I8, WeightLayout::Int8PerChannel)) << ut.label;
      EXPECT_TRUE(be.supports_matmul(DType::I8, WeightLayout::Int8PerChannel, kernels::ActQuant::PerTokenInt8))
          << ut.label;
      EXPECT_TRUE(be.supports_matmul(DType::BF16, WeightLayout::Dense, kernels::ActQuant::Bf16)) << ut.label;
      for (DType dt : kFloatDtypes) EXPECT_TRUE(be.supports(Op::MatMul, dt, WeightLayout::Sparse24)) << ut.label;
      for (Op op : {Op::Rope, Op::Attention, Op::KvStore, Op::SiluMul, Op::Softmax, Op::Add})
        EXPECT_TRUE(be.supports(op, DType::F32)) << ut.label << " " << kernels::op_name(op);
    }
  }
}

}  // namespace
}  // namespace cb::conformance
