#include "tp_launch.h"

#include <stdexcept>

namespace cb::cli {

void run_tp_group(const std::string& command, int tp, const std::string& tp_comm,
                  const std::function<void(comm::Communicator*)>& per_rank) {
  const bool under_mpirun = comm::launched_by_mpirun();
  const int world = comm::mpirun_world_size();
  const std::string how = tp_comm != "auto" ? tp_comm : under_mpirun ? "mpi" : "threads";
  if (how == "mpi" || under_mpirun) {
    if (how != "mpi") throw std::invalid_argument("--tp-comm " + how + " under mpirun: use --tp-comm mpi (or auto)");
    if (world != tp)
      throw std::invalid_argument("--tp " + std::to_string(tp) + " but " +
                                  (under_mpirun ? "mpirun started " + std::to_string(world) + " rank(s)"
                                                : std::string("this process was not started by mpirun")) +
                                  ": launch with mpirun -n " + std::to_string(tp) + " refengine " + command + " ... --tp " +
                                  std::to_string(tp));
    if (tp == 1) return per_rank(nullptr);
    auto c = comm::make_mpi();  // MPI_Init here, MPI_Finalize when it goes out of scope
    per_rank(c.get());
    return;
  }
  if (tp == 1) return per_rank(nullptr);
  comm::run_thread_group(tp, [&](comm::Communicator& c) { per_rank(&c); });
}

}  // namespace cb::cli
