// The cuda backend's own tests (cb_cuda_tests, built by the cuda preset). Without a usable GPU
// every test reports SKIP with the reason; on a GPU they run the op cases against `ref` (the
// conformance suite then covers every op in depth) and the backend's error paths.
#include <gtest/gtest.h>

#include <algorithm>

#include "cb/kernels/backend.h"
#include "cb/kernels/cuda_info.h"
#include "cb/kernels/testing/op_cases.h"

namespace {
using namespace cb::kernels;
namespace kt = cb::kernels::testing;

#define CUDA_OR_SKIP(be)                                                      \
  const std::string why_##be = cuda_unavailable_reason();                     \
  if (!why_##be.empty()) GTEST_SKIP() << "SKIP (no usable GPU): " << why_##be; \
  auto be = make_backend("cuda")

TEST(CudaBackend, RegistryAgreesWithTheDevice) {
  const std::string why = cuda_unavailable_reason();
  const auto names = available_backends();
  const bool listed = std::find(names.begin(), names.end(), "cuda") != names.end();
  EXPECT_EQ(listed, why.empty()) << why;
  if (!why.empty()) {
    // Asking for it anyway is a clear error, not a crash or a silent cpu fallback.
    try {
      make_backend("cuda");
      ADD_FAILURE() << "make_backend(\"cuda\") without a GPU must throw";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "backend 'cuda' cannot run here: " + why);
    }
    GTEST_SKIP() << "SKIP (no usable GPU): " << why;
  }
  EXPECT_EQ(make_backend("cuda")->name(), "cuda");
}

// One case of each op and matmul path, with shapes that reach the GEMV (M <= 8), cuBLASLt
// (M > 8), the widened weight-only path, IMMA, and split-K decode attention (2K context).
TEST(CudaBackend, OpCasesMatchRef) {
  CUDA_OR_SKIP(be);
  auto ref = make_backend("ref");
  std::vector<std::unique_ptr<kt::OpCase>> cases;
  for (DType dt : {DType::F32, DType::F16, DType::BF16})
    for (int64_t m : {1, 5, 37}) cases.push_back(std::make_unique<kt::MatMulCase>(dt, m, 96, 40));
  for (auto act : {ActQuant::None, ActQuant::PerTokenInt8, ActQuant::Bf16})
    for (int64_t m : {3, 64}) cases.push_back(std::make_unique<kt::QuantMatMulCase>(act, m, 128, 72));
  cases.push_back(std::make_unique<kt::RmsNormCase>(DType::BF16, 7, 300, 1e-5f));
  cases.push_back(std::make_unique<kt::RopeCase>(9, 4, 64, 10000.f, 100000));
  cases.push_back(std::make_unique<kt::KvStoreCase>(16, 2, 64, 20, 5));
  cases.push_back(std::make_unique<kt::AttentionCase>(16, 32, 4, 64, 1, 2047));
  cases.push_back(std::make_unique<kt::AttentionCase>(16, 8, 2, 80, 33, 40));
  cases.push_back(std::make_unique<kt::AttentionCase>(16, 32, 4, 64, std::vector<kt::SeqRows>{{1, 2047}, {48, 2000}, {1, 300}}, 6.f));
  cases.push_back(std::make_unique<kt::ElementwiseCase>(kt::Elementwise::SiluMul, 5, 700, 4.f));
  cases.push_back(std::make_unique<kt::ElementwiseCase>(kt::Elementwise::Softmax, 5, 700, 8.f, true));
  cases.push_back(std::make_unique<kt::ElementwiseCase>(kt::Elementwise::Add, 5, 700, 1.f));
  cases.push_back(std::make_unique<kt::EmbeddingCase>(DType::F16, 50, 64, 9));
  for (size_t i = 0; i < cases.size(); ++i) {
    const kt::OpCase& c = *cases[i];
    std::vector<float> want, got;
    ASSERT_TRUE(c.run(*ref, 7 + uint32_t(i), want).ok()) << c.name();
    const Status s = c.run(*be, 7 + uint32_t(i), got);
    ASSERT_TRUE(s.ok()) << c.name() << ": " << s.message;
    const kt::ErrorStats e = kt::error_stats(got, want);
    EXPECT_FALSE(e.size_mismatch) << c.name();
    EXPECT_EQ(e.nonfinite, 0) << c.name();
    EXPECT_LE(e.nmse, c.max_nmse()) << c.name() << " max |diff| " << e.max_abs << " at " << e.max_abs_at;
  }
}

TEST(CudaBackend, Sparse24IsUnsupportedNotRunDense) {
  CUDA_OR_SKIP(be);
  EXPECT_FALSE(be->supports(Op::MatMul, DType::BF16, WeightLayout::Sparse24));
  kt::Sparse24MatMulCase c(DType::BF16, 4, 64, 16);
  std::vector<float> got;
  const Status s = c.run(*be, 1, got);
  EXPECT_EQ(s.code, StatusCode::Unsupported) << s.message;
  EXPECT_NE(s.message.find("cuSPARSELt"), std::string::npos) << s.message;
}

TEST(CudaBackend, HugeAllocationIsOutOfMemoryAndTheBackendGoesOn) {
  CUDA_OR_SKIP(be);
  Tensor t;
  const Status s = be->allocate(DType::F32, {int64_t(1) << 40}, t);  // 4 TiB
  EXPECT_EQ(s.code, StatusCode::OutOfMemory) << s.message;
  Tensor small;
  ASSERT_TRUE(be->allocate(DType::F32, {1024}, small).ok());
  std::vector<float> host(1024, 1.f);
  ASSERT_TRUE(be->copy_to_host(host.data(), small).ok());
  EXPECT_EQ(host[1023], 0.f);  // allocations are zeroed
  be->release(small);
  EXPECT_TRUE(be->synchronize().ok());
}

}  // namespace

namespace {
// Stream capture (Backend::capture_*): a recorded add replays on the buffers' current contents;
// a synchronize inside the capture makes capture_end fail, and the backend goes on working.
TEST(CudaBackend, CapturedWorkReplaysOnCurrentContentsAndAFailedCaptureIsReported) {
  CUDA_OR_SKIP(be);
  EXPECT_EQ(be->capture_unsupported_reason(), "");
  const int64_t n = 1000;
  Tensor a = be->alloc(DType::F32, {n}), b = be->alloc(DType::F32, {n}), out = be->alloc(DType::F32, {n});
  std::vector<float> ha(n, 1.f), hb(n, 2.f), got(n);
  ASSERT_TRUE(be->copy_from_host(a, ha.data()).ok());
  ASSERT_TRUE(be->copy_from_host(b, hb.data()).ok());
  ASSERT_TRUE(be->synchronize().ok());
  std::unique_ptr<CapturedWork> work;
  ASSERT_TRUE(be->capture_begin().ok());
  ASSERT_TRUE(be->add(a, b, out).ok());
  ASSERT_TRUE(be->capture_end(work).ok());
  ASSERT_NE(work, nullptr);
  for (float v : {5.f, 7.f}) {
    std::fill(ha.begin(), ha.end(), v);
    ASSERT_TRUE(be->copy_from_host(a, ha.data()).ok());
    ASSERT_TRUE(be->replay(*work).ok());
    ASSERT_TRUE(be->copy_to_host(got.data(), out).ok());
    EXPECT_EQ(got[0], v + 2.f);
    EXPECT_EQ(got[n - 1], v + 2.f);
  }
  // Waiting on the stream is not allowed while capturing: the capture is invalidated and reported.
  std::unique_ptr<CapturedWork> bad;
  ASSERT_TRUE(be->capture_begin().ok());
  ASSERT_TRUE(be->add(a, b, out).ok());
  EXPECT_FALSE(be->synchronize().ok());
  const Status end = be->capture_end(bad);
  EXPECT_FALSE(end.ok());
  EXPECT_EQ(bad, nullptr);
  ASSERT_TRUE(be->add(a, b, out).ok()) << "the backend works after a failed capture";
  ASSERT_TRUE(be->copy_to_host(got.data(), out).ok());
  EXPECT_EQ(got[0], 9.f);
  for (Tensor* t : {&a, &b, &out}) be->release(*t);
}
}  // namespace
