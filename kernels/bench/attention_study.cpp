// cb_attention_study: decode attention as the engine runs it, with the KV cache cold. In a decode
// step every layer's weights stream through the caches between one layer's attention and the
// next step's, so the cache rows attention reads come from DRAM; cb_kernel_bench repeats one call
// on the same pool, which then sits in L2 / L3. Here each shape is built in as many copies (each
// its own pool and shuffled block tables) as fill 512 MiB, and the calls walk the copies in turn,
// so no call finds its rows cached; the same call repeated on one copy gives the warm figure.
//
//   cb_attention_study [BxCTX ...]   default: 1x144 1x1024 16x144 16x512 (sequences x context)
//
// llama-1b's attention (32 query heads, 4 kv heads, head_dim 64, 16-token blocks), one new row
// per sequence at position CTX - 1, the cpu backend, all OpenMP threads. Prints per shape the
// median microseconds per call over the rounds (cold and warm), the KV bytes read over the cold
// time, and nanoseconds per (key, kv head): the unit the kernel's cost grows with. Inputs are
// seeded (copy i from seed i).
#include <omp.h>

#include <algorithm>
#include <chrono>
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

}  // namespace

int main(int argc, char** argv) {
  std::vector<Shape> shapes;
  for (int i = 1; i < argc; ++i) {
    Shape s;
    if (!parse_shape(argv[i], s)) {
      std::fprintf(stderr,
                   "cb_attention_study: argument %d \"%s\" is not a shape SEQSxCTX (e.g. 16x144: 16 sequences, "
                   "144 keys each)\n",
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
