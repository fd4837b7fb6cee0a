// How a refengine command becomes a tensor-parallel group: under mpirun, one MPI rank per process
// (-n must equal --tp); otherwise --tp threads of this process. Shared by generate and serve.
#pragma once

#include <functional>
#include <string>

#include "cb/comm/communicator.h"

namespace cb::cli {

// The communicator --tp-comm names for a backend: auto is threads outside mpirun, and under it
// nccl for the cuda backend (activations in GPU memory), mpi for host backends.
std::string tp_comm_for(const std::string& tp_comm, const std::string& backend, bool under_mpirun);

// Runs per_rank once per rank with that rank's communicator (nullptr when --tp 1 and not under
// mpirun with more ranks). `command` names the subcommand in errors. tp_comm: auto | mpi | nccl |
// threads; mpi and nccl need mpirun with -n equal to --tp (nccl: one GPU per rank).
// Throws std::invalid_argument when the launch does not match --tp (e.g. mpirun -n 4 with --tp 2),
// comm::CommError when the communicator cannot start (e.g. nccl without a GPU, with the reason).
void run_tp_group(const std::string& command, int tp, const std::string& tp_comm, const std::string& backend,
                  const std::function<void(comm::Communicator*)>& per_rank);

}  // namespace cb::cli
