# cb_cuda_bench: the GPU microbenchmark (device peaks, backend matmul vs the best cuBLASLt
# algorithm, decode attention bandwidth). Plain C++ (no device code), include()d from
# kernels/cuda/CMakeLists.txt where CUDAToolkit is found and cb_kernels holds the cuda backend.
add_executable(cb_cuda_bench ${CMAKE_CURRENT_LIST_DIR}/cuda_bench.cpp ${CMAKE_CURRENT_LIST_DIR}/cuda_bench_gemm.cpp
                             ${CMAKE_CURRENT_LIST_DIR}/cuda_bench_attention.cpp)
target_link_libraries(cb_cuda_bench PRIVATE cb_kernels CUDA::cudart CUDA::cublasLt nlohmann_json::nlohmann_json
                                            cb_warnings)
