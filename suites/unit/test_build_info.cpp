// The manifest's build facts agree with the build: cuda_built is what the configure step found
// (a CMake variable that never reached the compiler once left it false in the cuda preset).
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
    EXPECT_NE(std::string(e.what()).find("available: ref, cpu"), std::string::npos) << e.what();
  }
}
