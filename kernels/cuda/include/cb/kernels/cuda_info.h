// Facts about the cuda backend that tests and benchmarks report (built only with CUDA).
#pragma once

#include <string>

namespace cb::kernels {

// Why make_backend("cuda") cannot give a backend on this machine, in words ("no CUDA device:
// cudaGetDeviceCount: no CUDA-capable device is detected"); empty when it can.
std::string cuda_unavailable_reason();

// What the 2:4 sparse matmul would run through: the backend reports Sparse24 unsupported (a
// status, never a silent dense fallback) when cuSPARSELt was not found at build time.
bool cuda_has_cusparselt();

}  // namespace cb::kernels
