// Collectives (kernels/comm): the single-rank and thread-group backends exactly, the sweep's
// #wrong and bandwidth definitions, the alpha-beta fit and the ring projection, launcher flags.
// MPI and NCCL run under mpirun in the "mpi" CTest label (suites/cmake/mpi.cmake).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <numeric>

#include "cb/comm/block_cache.h"
#include "cb/comm/communicator.h"
#include "cb/comm/sweep.h"
#include "test_support.h"

using namespace cb::comm;
using cb::kernels::DType;

namespace {

using cb::test::error_of;

// Sets an environment variable for one scope, restoring the old value after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

TEST(CommSingle, CollectivesAreCopiesOnOneRank) {
  auto c = make_single();
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->size(), 1);
  std::vector<float> a = {1.5f, -2.f, 3.f}, b(3, 0.f);
  c->all_reduce_sum(a.data(), b.data(), 3, DType::F32);
  EXPECT_EQ(b, a);
  c->all_reduce_sum(a.data(), a.data(), 3, DType::F32);  // in place: unchanged
  EXPECT_EQ(a, (std::vector<float>{1.5f, -2.f, 3.f}));
  std::vector<int32_t> g(2, 0), s = {7, 8};
  c->all_gather(s.data(), g.data(), 2, DType::I32);
  EXPECT_EQ(g, s);
  c->broadcast(a.data(), 3, DType::F32, 0);
  c->barrier();
  EXPECT_NE(error_of([&] { c->broadcast(a.data(), 3, DType::F32, 1); }).find("root 1 is not a rank of this group of 1"),
            std::string::npos);
  uint8_t u = 1;
  EXPECT_NE(error_of([&] { c->all_reduce_sum(&u, &u, 1, DType::U8); }).find("sum of uint8 is not supported"), std::string::npos);
}

TEST(CommFactory, NamesBackendsAndReasons) {
  EXPECT_EQ(make_communicator("single")->backend(), "single");
  EXPECT_NE(error_of([] { make_communicator("gloo"); }).find("unknown communicator backend 'gloo' (expected single, mpi, nccl or auto"),
            std::string::npos);
  const auto st = backend_status();
  ASSERT_EQ(st.size(), 4u);
  EXPECT_EQ(st[0].name, "single");
  EXPECT_EQ(st[1].name, "threads");
  EXPECT_EQ(st[2].name, "mpi");
  EXPECT_EQ(st[3].name, "nccl");
  EXPECT_TRUE(st[0].compiled && st[0].unavailable.empty());
  // NCCL without a device must say why (this test machine class has no GPU; with one, it is usable).
  if (cuda_device_count() == 0) {
    EXPECT_FALSE(st[3].unavailable.empty());
    EXPECT_FALSE(nccl_unavailable_reason().empty());
    EXPECT_NE(error_of([] { make_nccl(); }).find("nccl"), std::string::npos);
  }
  if (st[2].compiled) {
    EXPECT_FALSE(st[2].version.empty());
  }
}

TEST(CommThreads, AllReduceIsTheSameExactSumOnEveryRank) {
  for (int n : {1, 2, 3, 4}) {
    std::vector<std::vector<float>> got(n);
    run_thread_group(n, [&](Communicator& c) {
      EXPECT_EQ(c.size(), n);
      std::vector<float> x(1001);  // not a multiple of n: uneven reduce-scatter slices
      for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1f * float(c.rank() + 1) + 1e-3f * float(i);
      c.all_reduce_sum(x.data(), x.data(), x.size(), DType::F32);  // in place
      got[c.rank()] = x;
    });
    for (size_t i = 0; i < got[0].size(); ++i) {
      float want = 0;  // the same order the backend sums in: rank 0, 1, ...
      for (int r = 0; r < n; ++r) want += 0.1f * float(r + 1) + 1e-3f * float(i);
      ASSERT_EQ(got[0][i], want) << "n=" << n << " i=" << i;
    }
    for (int r = 1; r < n; ++r) EXPECT_EQ(got[r], got[0]) << "rank " << r << " of " << n << " differs (bitwise)";
  }
}

TEST(CommThreads, AllGatherBroadcastAndIntSums) {
  const int n = 3;
  run_thread_group(n, [&](Communicator& c) {
    const int r = c.rank();
    std::vector<int32_t> mine = {10 * r, 10 * r + 1}, all(2 * n, -1);
    c.all_gather(mine.data(), all.data(), 2, DType::I32);
    EXPECT_EQ(all, (std::vector<int32_t>{0, 1, 10, 11, 20, 21}));
    std::vector<uint8_t> b(5, uint8_t(r));
    c.broadcast(b.data(), b.size(), DType::U8, 1);
    EXPECT_EQ(b, std::vector<uint8_t>(5, 1));
    int32_t v = r + 1, s = 0;
    c.all_reduce_sum(&v, &s, 1, DType::I32);
    EXPECT_EQ(s, 6);
    c.barrier();
  });
}

TEST(CommThreads, AFailingRankStopsTheGroupInsteadOfHanging) {
  std::atomic<int> woken{0};
  const std::string msg = error_of([&] {
    run_thread_group(3, [&](Communicator& c) {
      if (c.rank() == 2) throw std::runtime_error("rank two failed on purpose");
      float x = 1;
      try {
        c.all_reduce_sum(&x, &x, 1, DType::F32);  // never completes: rank 2 is gone
      } catch (const CommError& e) {
        EXPECT_NE(std::string(e.what()).find("aborted"), std::string::npos) << e.what();
        ++woken;
        throw;
      }
    });
  });
  EXPECT_EQ(msg, "rank two failed on purpose");  // the first failure, not the wake-ups it caused
  EXPECT_EQ(woken.load(), 2);
}

TEST(CommTypes, NamesAreTheNcclTestsSpellings) {
  // The sweep's console rows and JSON print these; scripts match on them.
  EXPECT_STREQ(type_name(DType::F32), "float");
  EXPECT_STREQ(type_name(DType::I32), "int32");
  EXPECT_STREQ(type_name(DType::U8), "uint8");
  EXPECT_STREQ(type_name(DType::F16), "half");
  EXPECT_STREQ(type_name(DType::BF16), "bfloat16");
  EXPECT_STREQ(type_name(DType::I8), "int8");
  EXPECT_STREQ(type_name(DType::I64), "int64");
}

TEST(CommThreads, SumOfHalfOrBfloat16IsRefusedNamingTheDtypeAndTheGroupGoesOn) {
  const int n = 3;
  std::vector<std::string> errs(2 * n);
  std::vector<std::vector<int64_t>> sums(n);
  std::vector<int8_t> bytes(n);
  run_thread_group(n, [&](Communicator& c) {
    const int r = c.rank();
    // No f16/bf16 arithmetic on the host: a refusal, never a sum of the bits as integers.
    std::vector<uint16_t> h = {0x3c00, 0x4000}, out = {7, 7};  // f16 1.0, 2.0
    errs[size_t(2 * r)] = error_of([&] { c.all_reduce_sum(h.data(), out.data(), 2, DType::F16); });
    errs[size_t(2 * r + 1)] = error_of([&] { c.all_reduce_sum(h.data(), out.data(), 2, DType::BF16); });
    EXPECT_EQ(out, (std::vector<uint16_t>{7, 7})) << "a refused sum wrote its output";
    // Every rank refused before posting: the group is still in step for the sums it can do.
    std::vector<int64_t> big = {(int64_t(1) << 40) + r, -(int64_t(1) << 53) - 1 - r};  // past float/double precision
    c.all_reduce_sum(big.data(), big.data(), 2, DType::I64);
    sums[size_t(r)] = big;
    int8_t b = int8_t(10 * (r + 1)), sb = 0;
    c.all_reduce_sum(&b, &sb, 1, DType::I8);
    bytes[size_t(r)] = sb;
  });
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(errs[size_t(2 * r)], "all_reduce: sum of f16 is not supported by the threads backend (it sums f32, i32, i8 and i64)");
    EXPECT_EQ(errs[size_t(2 * r + 1)], "all_reduce: sum of bf16 is not supported by the threads backend (it sums f32, i32, i8 and i64)");
    EXPECT_EQ(sums[size_t(r)], (std::vector<int64_t>{3 * (int64_t(1) << 40) + 3, -3 * (int64_t(1) << 53) - 3 - 3}));
    EXPECT_EQ(bytes[size_t(r)], 60);
  }
  // One rank: a sum is a copy, right for bf16 too (and still refused for uint8, above).
  auto single = make_single();
  std::vector<uint16_t> h = {0x3f80, 0xc000}, out(2, 0);  // bf16 1.0, -2.0
  single->all_reduce_sum(h.data(), out.data(), 2, DType::BF16);
  EXPECT_EQ(out, h);
}

TEST(CommThreads, AllGatherAndBroadcastOfI64AndBf16CopyBytesExactly) {
  const int n = 3;
  run_thread_group(n, [&](Communicator& c) {
    const int r = c.rank();
    // Values whose bytes all differ and that no float path would keep: high bits, sign, NaN payloads.
    const std::vector<int64_t> mine = {int64_t(0x0123456789abcdefULL) + r, INT64_MIN + r};
    std::vector<int64_t> all(2 * n, 0);
    c.all_gather(mine.data(), all.data(), 2, DType::I64);
    for (int q = 0; q < n; ++q) {
      EXPECT_EQ(all[size_t(2 * q)], int64_t(0x0123456789abcdefULL) + q);
      EXPECT_EQ(all[size_t(2 * q + 1)], INT64_MIN + q);
    }
    const std::vector<uint16_t> hb = {uint16_t(0x7fc1 + r), 0xffff, 0x8000, uint16_t(0x3f80 + r)};
    std::vector<uint16_t> gb(4 * n, 0);
    c.all_gather(hb.data(), gb.data(), 4, DType::BF16);
    for (int q = 0; q < n; ++q)
      EXPECT_EQ(std::vector<uint16_t>(gb.begin() + 4 * q, gb.begin() + 4 * q + 4),
                (std::vector<uint16_t>{uint16_t(0x7fc1 + q), 0xffff, 0x8000, uint16_t(0x3f80 + q)}));
    std::vector<int64_t> b = {(int64_t(r) << 56) | 0x00ff00ff00ff, -int64_t(r) - 1};
    c.broadcast(b.data(), b.size(), DType::I64, 2);
    EXPECT_EQ(b, (std::vector<int64_t>{(int64_t(2) << 56) | 0x00ff00ff00ff, -3}));
    std::vector<uint16_t> bb = {uint16_t(0x7f80 + r), uint16_t(0xff81 + r)};
    c.broadcast(bb.data(), bb.size(), DType::BF16, 1);
    EXPECT_EQ(bb, (std::vector<uint16_t>{0x7f81, 0xff82}));
  });
}

TEST(CommHost, AStreamHandleIsAcceptedAndIgnored) {
  // Host backends finish inside the call, so a queue handle (a cudaStream_t from a cuda backend)
  // changes nothing: same results as with nullptr, nothing dereferenced.
  int token = 0;
  const cb::kernels::Stream stream = &token;
  auto single = make_single();
  std::vector<float> a = {1.5f, -2.f}, b(2, 0.f);
  single->all_reduce_sum(a.data(), b.data(), 2, DType::F32, stream);
  EXPECT_EQ(b, a);
  std::vector<float> g(2, 0.f);
  single->all_gather(a.data(), g.data(), 2, DType::F32, stream);
  EXPECT_EQ(g, a);
  single->broadcast(a.data(), 2, DType::F32, 0, stream);
  EXPECT_EQ(a, (std::vector<float>{1.5f, -2.f}));
  run_thread_group(2, [&](Communicator& c) {
    const int r = c.rank();
    float x = 0.5f + float(r), s = 0;
    c.all_reduce_sum(&x, &s, 1, DType::F32, stream);
    EXPECT_EQ(s, 2.0f);
    int32_t v = 100 + r;
    std::vector<int32_t> all(2, 0);
    c.all_gather(&v, all.data(), 1, DType::I32, stream);
    EXPECT_EQ(all, (std::vector<int32_t>{100, 101}));
    int32_t w = r == 1 ? 42 : -1;
    c.broadcast(&w, 1, DType::I32, 1, stream);
    EXPECT_EQ(w, 42);
  });
  EXPECT_EQ(token, 0);
}

// The nccl backend's staging buffers (comm_nccl.cpp) come from this cache; here over malloc, with
// the raw calls counted.
TEST(CommBlockCache, ReusesReleasedBlocksOfFittingSizeAndBoundsWhatItKeeps) {
  int raw_allocs = 0, raw_frees = 0;
  {
    BlockCache cache([&](size_t n) { ++raw_allocs; return std::malloc(n); },
                     [&](void* p) { ++raw_frees; std::free(p); }, 1000);
    // A decode step's staging, step after step: two raw allocations in all, then reuse.
    void* first_plan = nullptr;
    for (int step = 0; step < 5; ++step) {
      void* plan = cache.take(64);
      void* logits = cache.take(400);
      if (step == 0) first_plan = plan;
      EXPECT_EQ(plan, first_plan);
      EXPECT_EQ(cache.blocks_out(), 2u);
      EXPECT_TRUE(cache.give(logits));
      EXPECT_TRUE(cache.give(plan));
    }
    EXPECT_EQ(raw_allocs, 2);
    EXPECT_EQ(cache.reused(), 8u);
    EXPECT_EQ(cache.kept_bytes(), 464u);
    // The smallest kept block that fits, not past twice the request: 300 takes the 400-byte
    // block, 100 then gets a new one (64 is too small; no larger block is left).
    void* a = cache.take(300);
    void* b = cache.take(100);
    EXPECT_EQ(raw_allocs, 3);
    EXPECT_EQ(cache.kept_bytes(), 64u);
    // 30 is under half of 64: a new block rather than pinning the larger one.
    void* c = cache.take(30);
    EXPECT_EQ(raw_allocs, 4);
    cache.give(a);
    cache.give(b);
    cache.give(c);
    EXPECT_EQ(cache.kept_bytes(), 594u);
    // Past the bound, the largest kept blocks go back first.
    void* big = cache.take(900);
    EXPECT_EQ(raw_allocs, 5);
    cache.give(big);
    EXPECT_LE(cache.kept_bytes(), 1000u);
    EXPECT_EQ(cache.kept_bytes(), 594u);  // the 900-byte block itself was the largest
    EXPECT_EQ(raw_frees, 1);
    // A pointer the cache never handed out goes to the raw free, not into the cache.
    EXPECT_FALSE(cache.give(std::malloc(8)));
    EXPECT_EQ(raw_frees, 2);
    EXPECT_EQ(cache.kept_bytes(), 594u);
  }
  EXPECT_EQ(raw_frees, 2 + 4);  // the destructor releases the four kept blocks
}

TEST(CommSweep, RefusesATypeItCannotFillOrCheck) {
  SweepOptions o;
  o.type = DType::BF16;
  o.max_bytes = 64;
  auto c = make_single();
  EXPECT_EQ(error_of([&] { run_sweep(*c, o); }), "sweep: type bfloat16 is not supported (use float, int32 or uint8)");
}

TEST(CommSweep, RowsAreCorrectAndFollowTheNcclTestsDefinitions) {
  SweepOptions o;
  o.ops = {Collective::AllReduce, Collective::AllGather, Collective::Broadcast};
  o.min_bytes = 8;
  o.max_bytes = 4096;
  o.factor = 4;
  o.warmup = 1;
  o.trials = 3;
  o.min_iters = o.max_iters = 2;
  std::vector<SweepRow> rows;
  run_thread_group(2, [&](Communicator& c) {
    auto r = run_sweep(c, o);
    if (c.rank() == 0) rows = r;
  });
  // Sizes 8, 32, 128, 512, 2048 B per collective; all_gather's 8 B hold one float per rank.
  ASSERT_EQ(rows.size(), 3u * 5u);
  EXPECT_EQ(rows[0].bytes, 8u);
  EXPECT_EQ(rows[0].count, 2u);
  EXPECT_EQ(rows[4].bytes, 2048u);
  EXPECT_EQ(rows[5].op, Collective::AllGather);
  EXPECT_EQ(rows[5].count, 1u);  // 8 B gathered from 2 ranks: one float each
  EXPECT_EQ(rows[10].op, Collective::Broadcast);
  EXPECT_EQ(rows[10].root, 0);
  for (const auto& r : rows) {
    EXPECT_EQ(r.wrong, 0) << collective_name(r.op) << " " << r.bytes;
    EXPECT_EQ(r.iters, 2);
    EXPECT_EQ(r.trials, 3);
    EXPECT_GT(r.time_us, 0);
    EXPECT_NEAR(r.algbw_gbs, double(r.bytes) / (r.time_us * 1e-6) / 1e9, 1e-12);
    EXPECT_NEAR(r.busbw_gbs, r.algbw_gbs * bus_factor(r.op, 2), 1e-12);
  }
  EXPECT_DOUBLE_EQ(bus_factor(Collective::AllReduce, 8), 2.0 * 7 / 8);
  EXPECT_DOUBLE_EQ(bus_factor(Collective::AllGather, 4), 0.75);
  EXPECT_DOUBLE_EQ(bus_factor(Collective::Broadcast, 4), 1.0);
  EXPECT_DOUBLE_EQ(bus_factor(Collective::AllReduce, 1), 0.0);
  // Fixed width: every data line as long as the header lines.
  const std::string h = sweep_header(), line = format_row(rows[3]);
  EXPECT_EQ(h.find('\n'), line.size());
  EXPECT_NE(h.find("#wrong"), std::string::npos);
  EXPECT_NE(error_of([] { collective_from_name("reduce_scatter"); }).find("expected all_reduce, all_gather or broadcast"),
            std::string::npos);
}

TEST(CommFit, AlphaBetaRecoversAnExactLineAndRejectsTooFewPoints) {
  const double alpha = 5e-6, beta = 2e9;
  std::vector<std::pair<double, double>> pts;
  for (double m = 8; m <= 64e6; m *= 4) pts.emplace_back(m, alpha + m / beta);
  const AlphaBeta f = fit_alpha_beta(pts);
  EXPECT_NEAR(f.alpha_s, alpha, alpha * 1e-9);
  EXPECT_NEAR(f.beta_bytes_per_s, beta, beta * 1e-9);
  EXPECT_LT(f.rms_rel_err, 1e-9);
  EXPECT_EQ(f.points, int(pts.size()));
  EXPECT_NEAR(f.predict(1e6), alpha + 1e6 / beta, 1e-15);
  // Time that does not grow with size: zero time per byte (infinite bandwidth), alpha the mean.
  const AlphaBeta flat = fit_alpha_beta({{8, 2e-6}, {1024, 2e-6}, {65536, 2e-6}});
  EXPECT_TRUE(std::isinf(flat.beta_bytes_per_s));
  EXPECT_NEAR(flat.alpha_s, 2e-6, 1e-15);
  EXPECT_NE(error_of([] { fit_alpha_beta({{8, 1e-6}}); }).find("at least 2"), std::string::npos);
  EXPECT_NE(error_of([] { fit_alpha_beta({{8, 1e-6}, {16, 0}}); }).find("not positive"), std::string::npos);
}

TEST(CommFit, RingModelReproducesTheFitAndProjectsByItsFormula) {
  AlphaBeta f;
  f.alpha_s = 4e-6;            // measured 2-rank latency
  f.beta_bytes_per_s = 1e9;    // measured 2-rank effective bandwidth
  const RingModel m = ring_from_fit(f, 2);
  EXPECT_DOUBLE_EQ(m.step_latency_s, 2e-6);      // alpha / (2 (n - 1))
  EXPECT_DOUBLE_EQ(m.link_bytes_per_s, 1e9);     // beta * 2 (n - 1) / n
  for (double bytes : {8.0, 1e6, 256e6}) EXPECT_NEAR(m.seconds(2, bytes), f.predict(bytes), 1e-15);
  // 8 ranks: 14 steps of latency, 2 * 7/8 of the message over each link.
  EXPECT_NEAR(m.seconds(8, 256e6), 14 * 2e-6 + 1.75 * 256e6 / 1e9, 1e-12);
  EXPECT_NE(error_of([&] { ring_from_fit(f, 1); }).find(">= 2 ranks"), std::string::npos);
}

TEST(CommLaunch, EnvironmentAndLauncherFlags) {
  {
    ScopedEnv a("OMPI_COMM_WORLD_SIZE", "3"), b("PMI_SIZE", nullptr);
    EXPECT_TRUE(launched_by_mpirun());
    EXPECT_EQ(mpirun_world_size(), 3);
  }
  {
    ScopedEnv a("OMPI_COMM_WORLD_SIZE", nullptr), b("PMI_SIZE", nullptr), c("PMIX_RANK", nullptr), d("MPI_LOCALNRANKS", nullptr);
    EXPECT_FALSE(launched_by_mpirun());
    EXPECT_EQ(mpirun_world_size(), 1);
  }
  if (mpirun_path().empty()) {
    EXPECT_TRUE(mpirun_prefix(2).empty());
    return;
  }
  ScopedEnv f("CB_MPIRUN_FLAGS", "--foo  --bar=1");
  EXPECT_EQ(mpirun_prefix(4), (std::vector<std::string>{mpirun_path(), "-n", "4", "--foo", "--bar=1"}));
}

}  // namespace
