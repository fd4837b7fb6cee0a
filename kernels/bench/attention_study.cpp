// cb_attention_study: decode attention as the engine runs it, with the KV cache cold. In a decode
// step every layer's weights stream through the caches between one layer's attention and the
// next step's, so the cache rows attention reads come from DRAM; cb_kernel_bench repeats one call
// on the same pool, which then sits in L2 / L3. Here each shape is built in as many copies (each
// its own pool and shuffled block tables) as fill 512 MiB, and the calls walk the copies in turn,
// so no call finds its rows cached; the same call repeated on one copy gives the warm figure.
//
//   cb_attention_study [BxCTX ...]   default: 1x144 1x1024 16x144 16x512 (sequences x context)
//   cb_attention_study scatter        read bandwidth of blocks in shuffled vs in-order placement
//
// llama-1b's attention (32 query heads, 4 kv heads, head_dim 64, 16-token blocks), one new row
// per sequence at position CTX - 1, the cpu backend, all OpenMP threads. Prints per shape the
// median microseconds per call over the rounds (cold and warm), the KV bytes read over the cold
// time, and nanoseconds per (key, kv head): the unit the kernel's cost grows with. Inputs are
// seeded (copy i from seed i).
#include <omp.h>

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cb/kernels/backend.h"
#include "cb/kernels/testing/op_cases.h"

namespace {

namespace kt = cb::kernels::testing;
using Clock = std::chrono::steady_clock;

constexpr int kHeads = 32, kKvHeads = 4, kHeadDim = 64, kBlock = 16;
constexpr double kColdBytes = 512.0 * (1 << 20);

struct Shape {
  int seqs = 0, ctx = 0;
};

bool parse_shape(const std::string& s, Shape& out) {
  const auto x = s.find('x');
  if (x == std::string::npos) return false;
  char* end = nullptr;
  const long b = std::strtol(s.c_str(), &end, 10);
  if (end != s.c_str() + x) return false;
  const long c = std::strtol(s.c_str() + x + 1, &end, 10);
  if (*end != '\0' || b < 1 || b > 4096 || c < 1 || c > (1 << 20)) return false;
  out = {int(b), int(c)};
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run_shape(cb::kernels::Backend& be, const Shape& sh) {
  const std::vector<kt::SeqRows> seqs(size_t(sh.seqs), kt::SeqRows{1, sh.ctx - 1});
  const kt::AttentionCase proto(kBlock, kHeads, kKvHeads, kHeadDim, seqs);
  // K and V rows of every sequence's context (what an ideal kernel reads from DRAM).
  const double kv_bytes = 2.0 * 4.0 * double(sh.seqs) * sh.ctx * kKvHeads * kHeadDim;
  // The pool the case allocates is about twice the rows it reads (spare slots poisoned).
  const int copies = int(std::clamp(kColdBytes / (2.0 * kv_bytes), 2.0, 256.0));
  std::vector<std::unique_ptr<kt::Prepared>> prepared(static_cast<size_t>(copies));
  for (int i = 0; i < copies; ++i)
    if (cb::kernels::Status s = proto.prepare(be, uint32_t(i + 1), prepared[size_t(i)]); !s.ok()) {
      std::fprintf(stderr, "cb_attention_study: %dx%d: prepare failed: %s\n", sh.seqs, sh.ctx, s.message.c_str());
      return 1;
    }
  auto call = [&](int i) {
    const auto t0 = Clock::now();
    cb::kernels::Status s = prepared[size_t(i)]->execute();
    if (s.ok()) s = be.synchronize();
    if (!s.ok()) {
      std::fprintf(stderr, "cb_attention_study: %dx%d: attention failed: %s\n", sh.seqs, sh.ctx, s.message.c_str());
      std::exit(1);
    }
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  };
  for (int i = 0; i < copies; ++i) call(i);  // first touch, page faults
  const int rounds = std::max(3, 600 / copies);
  std::vector<double> cold, warm;
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < copies; ++i) cold.push_back(call(i));
    for (int i = 0; i < std::min(copies, 16); ++i) warm.push_back(call(0));
  }
  const double c = median(cold), w = median(warm);
  const double units = double(sh.seqs) * sh.ctx * kKvHeads;
  std::printf("%3d x %5d keys: cold %8.1f us (%5.1f GB/s of KV, %6.1f ns per key and kv head)   warm %8.1f us (%6.1f ns)"
              "   [%d copies, %zu calls]\n",
              sh.seqs, sh.ctx, c, kv_bytes / (c * 1e3), c * 1e3 / units, w, w * 1e3 / units, copies, cold.size());
  std::fflush(stdout);
  return 0;
}


// cb_attention_study scatter: what a paged cache's placement costs the memory system alone. All
// OpenMP threads, each its own share of the blocks, read a 512 MiB pool (2 MiB-aligned, huge
// pages, as the backend allocates KV pools) whole, block after block, with no arithmetic but an XOR; the blocks in order, then in a
// seeded shuffle, for block sizes from 4 KiB (one kv head's 16 rows in a per-head layout) to 16
// KiB (a llama-1b 16-token block of K) and up. Each line is prefetched 2 KiB ahead in the read
// order (what attention does a block ahead). Best of 5 passes each, in turn.
using v4u64 = uint64_t __attribute__((vector_size(32)));

[[gnu::target("avx2")]] uint64_t read_blocks(const char* pool, const uint32_t* order, size_t n, size_t block) {
  v4u64 acc0{}, acc1{};
  const size_t lines = block / 64;
  const char* next = pool + size_t(order[0]) * block;
  for (size_t b = 0; b < n; ++b) {
    const char* p = pool + size_t(order[b]) * block;
    if (b + 1 < n) next = pool + size_t(order[b + 1]) * block;
    for (size_t l = 0; l < lines; ++l) {
      // 2 KiB ahead in read order: within this block, else into the next one.
      const size_t ahead = l + 32;
      __builtin_prefetch(ahead < lines ? p + ahead * 64 : next + (ahead - lines) * 64);
      v4u64 a, c;
      std::memcpy(&a, p + l * 64, 32);
      std::memcpy(&c, p + l * 64 + 32, 32);
      acc0 ^= a;
      acc1 ^= c;
    }
  }
  const v4u64 x = acc0 ^ acc1;
  return x[0] ^ x[1] ^ x[2] ^ x[3];
}

int run_scatter() {
  if (!__builtin_cpu_supports("avx2")) {
    std::printf("cb_attention_study scatter: SKIP: this CPU has no AVX2 (the read loop needs 32-byte loads to outrun DRAM)\n");
    return 0;
  }
  constexpr size_t kPool = size_t(512) << 20, kHuge = size_t(2) << 20;
  char* pool = static_cast<char*>(std::aligned_alloc(kHuge, kPool));
  if (!pool) {
    std::fprintf(stderr, "cb_attention_study scatter: cannot allocate %zu bytes\n", kPool);
    return 1;
  }
#ifdef MADV_HUGEPAGE
  ::madvise(pool, kPool, MADV_HUGEPAGE);
#endif
  for (size_t i = 0; i < kPool / 8; ++i) {  // seeded, not a bijection of i (whose XOR over the pool is 0)
    const uint64_t z = (i + 7) * 0x9E3779B97F4A7C15ull;
    reinterpret_cast<uint64_t*>(pool)[i] = z ^ (z >> 29);
  }
  const int threads = omp_get_max_threads();
  std::printf("read bandwidth of a 512 MiB pool in blocks, %d threads (each its own share), best of 5 passes, GB/s\n",
              threads);
  std::printf("%10s %10s %10s %10s\n", "block", "in order", "shuffled", "ratio");
  uint64_t sink = 0;
  for (size_t block : {size_t(4) << 10, size_t(16) << 10, size_t(64) << 10, size_t(256) << 10, size_t(1) << 20}) {
    const size_t n = kPool / block;
    std::vector<uint32_t> in_order(n);
    std::iota(in_order.begin(), in_order.end(), 0u);
    std::vector<uint32_t> shuffled = in_order;
    std::mt19937 rng(7);
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    double best[2] = {0, 0};
    for (int pass = 0; pass < 5; ++pass)
      for (int s = 0; s < 2; ++s) {
        const std::vector<uint32_t>& order = s ? shuffled : in_order;
        const auto t0 = Clock::now();
        uint64_t x = 0;
#pragma omp parallel num_threads(threads) reduction(^ : x)
        {
          // Thread t reads the t-th share of the order (its own blocks, as an attention thread
          // walks its own rows).
          const size_t t = size_t(omp_get_thread_num()), nt = size_t(omp_get_num_threads());
          x ^= read_blocks(pool, order.data() + n * t / nt, n * (t + 1) / nt - n * t / nt, block);
        }
        sink += x;  // (a sum: the same XOR twice would cancel)
        const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
        best[s] = std::max(best[s], double(kPool) / sec / 1e9);
      }
    std::printf("%7zu KiB %10.1f %10.1f %10.3f\n", block >> 10, best[0], best[1], best[1] / best[0]);
    std::fflush(stdout);
  }
  std::printf("(check %llx)\n", static_cast<unsigned long long>(sink & 0xffff));
  std::free(pool);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "scatter") return run_scatter();
  std::vector<Shape> shapes;
  for (int i = 1; i < argc; ++i) {
    Shape s;
    if (!parse_shape(argv[i], s)) {
      std::fprintf(stderr,
                   "cb_attention_study: argument %d \"%s\" is not a shape SEQSxCTX (e.g. 16x144: 16 sequences, "
                   "144 keys each); `cb_attention_study scatter` alone runs the placement study\n",
                   i, argv[i]);
      return 2;
    }
    shapes.push_back(s);
  }
  if (shapes.empty()) shapes = {{1, 144}, {1, 1024}, {16, 144}, {16, 512}};
  auto be = cb::kernels::make_backend("cpu");
  if (!be) {
    std::fprintf(stderr, "cb_attention_study: no cpu backend\n");
    return 1;
  }
  std::printf("decode attention, H%d KV%d D%d block %d, cpu backend, %d threads, medians\n", kHeads, kKvHeads, kHeadDim,
              kBlock, omp_get_max_threads());
  for (const Shape& s : shapes)
    if (int rc = run_shape(*be, s); rc != 0) return rc;
  return 0;
}
