// How a refengine command becomes a tensor-parallel group: under mpirun, one MPI rank per process
// (-n must equal --tp); otherwise --tp threads of this process. Shared by generate and serve.
#pragma once

#include <functional>
#include <string>

#include "cb/comm/communicator.h"

namespace cb::cli {

// Runs per_rank once per rank with that rank's communicator (nullptr when --tp 1 and not under
// mpirun with more ranks). `command` names the subcommand in errors. tp_comm: auto | mpi | threads.
// Throws std::invalid_argument when the launch does not match --tp (e.g. mpirun -n 4 with --tp 2).
void run_tp_group(const std::string& command, int tp, const std::string& tp_comm,
                  const std::function<void(comm::Communicator*)>& per_rank);

}  // namespace cb::cli
