# Every dependency is a Debian package (ci/install-deps.sh installs them); nothing is vendored
# or downloaded. A missing package stops configuration with the package name to install.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 2.0 REQUIRED)
find_package(GTest REQUIRED)
# Debian's dnnl-config.cmake insists on OpenCL (its GPU runtime); the CPU engine needs only the
# library and headers, so locate those directly.
find_library(DNNL_LIBRARY NAMES dnnl REQUIRED)
find_path(DNNL_INCLUDE_DIR NAMES oneapi/dnnl/dnnl.h REQUIRED)
add_library(DNNL::dnnl UNKNOWN IMPORTED)
set_target_properties(DNNL::dnnl PROPERTIES IMPORTED_LOCATION ${DNNL_LIBRARY}
                      INTERFACE_INCLUDE_DIRECTORIES ${DNNL_INCLUDE_DIR})
find_package(MPI COMPONENTS CXX)
if(CB_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)

# libfccp-dev ships a single header and no CMake/pkg-config file.
find_path(FCCP_INCLUDE_DIR NAMES libfccp/csv.h REQUIRED)
add_library(cb_fccp INTERFACE)
target_include_directories(cb_fccp SYSTEM INTERFACE ${FCCP_INCLUDE_DIR})
# Synchronous reads (the CSVs are small). Defined here for every user of the header: a TU that
# defined it alone would give csv.h's LineReader two layouts in one binary (an ODR violation that
# broke parsing in the -O1 ASan build).
target_compile_definitions(cb_fccp INTERFACE CSV_IO_NO_THREAD)

# CUDA is optional: switched on when nvcc is found (e.g. /usr/local/cuda), absent otherwise.
set(CB_HAVE_CUDA OFF)
if(CB_ENABLE_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    find_package(CUDAToolkit)
    if(CUDAToolkit_FOUND)
      set(CB_HAVE_CUDA ON)
    endif()
  endif()
endif()
message(STATUS "claimbench: CUDA toolkit ${CB_HAVE_CUDA} (the cuda op backend and the NCCL collectives build with it)")
