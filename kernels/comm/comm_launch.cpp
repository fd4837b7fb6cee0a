// How this process was launched, and how to launch ranks with this build's mpirun.
#include <cstdlib>
#include <sstream>
#include <unistd.h>

#include "comm_internal.h"

namespace cb::comm {
namespace {
const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}
}  // namespace

bool launched_by_mpirun() {
  // Open MPI, MPICH / Intel MPI (Hydra: PMI_*), PMIx-based launchers.
  for (const char* k : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (env(k)) return true;
  return false;
}

int mpirun_world_size() {
  for (const char* k : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = env(k)) {
      const int n = std::atoi(v);
      if (n >= 1) return n;
    }
  return 1;
}

std::string mpirun_path() {
#ifdef CB_MPIEXEC
  return CB_MPIEXEC;
#else
  return "";
#endif
}

std::vector<std::string> mpirun_prefix(int np) {
  const std::string exe = mpirun_path();
  if (exe.empty()) return {};
  std::vector<std::string> argv = {exe, "-n", std::to_string(np)};
  if (const char* flags = env("CB_MPIRUN_FLAGS")) {
    std::istringstream in(flags);
    for (std::string f; in >> f;) argv.push_back(f);
    return argv;
  }
#if defined(CB_MPIEXEC_IS_OPENMPI) && CB_MPIEXEC_IS_OPENMPI
  // More ranks than cores is allowed (small CI machines); shared-memory transports only, which
  // work in containers without a usable network and start fastest on one host.
  for (const char* f : {"--oversubscribe", "--mca", "pml", "ob1", "--mca", "btl", "self,vader"}) argv.push_back(f);
  if (::geteuid() == 0) argv.push_back("--allow-run-as-root");
#endif
  return argv;
}

}  // namespace cb::comm
