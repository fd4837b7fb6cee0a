#include "tp_launch.h"

#include <stdexcept>

namespace cb::cli {

std::string tp_comm_for(const std::string& tp_comm, const std::string& backend, bool under_mpirun) {
  if (tp_comm != "auto") return tp_comm;
  if (!under_mpirun) return "threads";
  return backend == "cuda" ? "nccl" : "mpi";  // the cuda backend keeps activations in GPU memory
}

void run_tp_group(const std::string& command, int tp, const std::string& tp_comm, const std::string& backend,
                  const std::function<void(comm::Communicator*)>& per_rank) {
  const bool under_mpirun = comm::launched_by_mpirun();
  const int world = comm::mpirun_world_size();
  const std::string how = tp_comm_for(tp_comm, backend, under_mpirun);
  if (how != "mpi" && how != "nccl" && how != "threads")
    throw std::invalid_argument("--tp-comm " + how + ": expected auto, mpi, nccl or threads");
  const bool processes = how == "mpi" || how == "nccl";
  if (processes || under_mpirun) {
    if (!processes)
      throw std::invalid_argument("--tp-comm " + how + " under mpirun: use --tp-comm mpi or nccl (or auto)");
    if (world != tp)
      throw std::invalid_argument("--tp " + std::to_string(tp) + " but " +
                                  (under_mpirun ? "mpirun started " + std::to_string(world) + " rank(s)"
                                                : std::string("this process was not started by mpirun")) +
                                  ": launch with mpirun -n " + std::to_string(tp) + " refengine " + command + " ... --tp " +
                                  std::to_string(tp) + (how == "nccl" ? " (NCCL: one process per GPU)" : ""));
    if (tp == 1) return per_rank(nullptr);
    // MPI_Init here (nccl: to pass its unique id), MPI_Finalize when it goes out of scope. NCCL
    // takes GPU = local rank, as the cuda backend does.
    auto c = how == "nccl" ? comm::make_nccl() : comm::make_mpi();
    per_rank(c.get());
    return;
  }
  if (tp == 1) return per_rank(nullptr);
  comm::run_thread_group(tp, [&](comm::Communicator& c) { per_rank(&c); });
}

}  // namespace cb::cli
