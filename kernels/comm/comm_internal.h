// Declarations shared by the backend files of cb_comm (not part of the public interface).
#pragma once

#include <memory>
#include <string>

#include "cb/comm/communicator.h"

namespace cb::comm::detail {

// comm_mpi.cpp (present when the build has MPI).
std::string mpi_library_version();
std::unique_ptr<Communicator> make_mpi_impl();

// comm_nccl.cpp (present when the build has NCCL).
std::string nccl_library_version();
std::string nccl_unavailable_impl();
int cuda_device_count_impl();
std::unique_ptr<Communicator> make_nccl_impl();

// Checks shared by every backend; throw CommError naming the collective.
void check_count(const char* op, size_t count, kernels::DType t, bool reduce);
void check_root(const char* op, int root, int size);
// Throws CommError: `backend` cannot sum `t` (what_it_sums: e.g. "f32, i32, i8 and i64").
[[noreturn]] void unsupported_sum(const std::string& backend, kernels::DType t, const char* what_it_sums);

}  // namespace cb::comm::detail
