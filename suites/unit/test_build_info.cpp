// The manifest's build facts agree with the build: cuda_built is what the configure step found
// (a CMake variable that never reached the compiler once left it false in the cuda preset).
#include <algorithm>
#include <gtest/gtest.h>

#include "cb/harness/core/environment.h"
#include "cb/kernels/backend.h"

TEST(BuildInfo, CudaBuiltMatchesTheConfigureStep) {
  const auto b = cb::harness::build_info();
  ASSERT_TRUE(b.contains("cuda_built"));
  EXPECT_EQ(b["cuda_built"].get<bool>(), CB_EXPECT_CUDA_BUILT == 1);
}

TEST(BuildInfo, BackendRegistryNamesOnlyBackendsThatExist) {
  // Every listed backend can be made (cuda only where a GPU is usable); an unknown name is an
  // error that lists the ones there are.
  for (const auto& name : cb::kernels::available_backends()) EXPECT_NE(cb::kernels::make_backend(name), nullptr) << name;
  try {
    cb::kernels::make_backend("no-such-backend");
    FAIL() << "an unknown backend was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown backend 'no-such-backend' (known: ref, cpu, cuda)"), std::string::npos) << e.what();
  }
  // A known backend that cannot run here is not "unknown": make_backend says why, and the reason
  // is the one backend_unavailable_reason gives (what `claimbench run --backend` skips with).
  for (const auto& name : cb::kernels::backend_names()) {
    const std::string why = cb::kernels::backend_unavailable_reason(name);
    const auto avail = cb::kernels::available_backends();
    EXPECT_EQ(why.empty(), std::find(avail.begin(), avail.end(), name) != avail.end()) << name << ": " << why;
    if (why.empty()) continue;
    try {
      cb::kernels::make_backend(name);
      FAIL() << name << " was made although: " << why;
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "backend '" + name + "' cannot run here: " + why);
    }
  }
  EXPECT_THROW(cb::kernels::backend_unavailable_reason("tpu"), std::invalid_argument);
}
