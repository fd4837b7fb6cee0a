// Collectives behind one interface, as tensor parallelism needs them: all-reduce (sum),
// all-gather, broadcast, barrier. Backends:
//   single   one rank; every collective is a copy or nothing (always built)
//   threads  N ranks as threads of one process over shared memory (always built; the unit tests'
//            way to run tensor parallelism without a launcher)
//   mpi      one rank per process, launched by mpirun (built when MPI is found)
//   nccl     one rank per process and GPU, the NCCL unique id broadcast over MPI as nccl-tests
//            does (built when CUDA and NCCL are found; usable only where a GPU is present)
// Every rank calls the same collectives in the same order with the same counts (MPI semantics).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cb/kernels/dtype.h"

namespace cb::comm {

// Element types are the op table's (kernels::DType), so a tensor's dtype goes to a collective as
// is; sizes are kernels::dtype_size. type_name is the nccl-tests spelling the sweep prints:
// "float", "half", "bfloat16", "int8", "int32", "uint8", "int64".
const char* type_name(kernels::DType t);

// A collective that failed, a backend that is absent, or a group another rank has aborted.
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string backend() const = 0;   // "single", "threads", "mpi", "nccl"
  virtual std::string describe() const = 0;  // backend, library version, ranks, transport
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Buffers the collectives take: host memory for single/threads/mpi, GPU memory for nccl.
  virtual bool device_memory() const { return false; }
  virtual void* alloc(size_t bytes);  // zeroed; throws CommError when out of memory
  virtual void free(void* p);
  virtual void upload(void* dst, const void* host_src, size_t bytes);    // host -> buffer
  virtual void download(void* host_dst, const void* src, size_t bytes);  // buffer -> host

  // `stream` is the queue the buffers were written on (kernels::Stream: a cudaStream_t from the
  // cuda backend, nullptr from host backends). nccl enqueues the collective on it, so it runs
  // after the ops that wrote its buffer with no host synchronize in between; with nullptr nccl
  // uses its own stream (synchronize() waits for that one). single, threads and mpi ignore it:
  // their collectives finish inside the call.
  //
  // recv[i] = sum over ranks of send[i]; send == recv is allowed (in place). Every backend sums
  // F32, I32, I8 and I64; F16 and BF16 only nccl and single (one rank: the sum is a copy); none
  // sums U8. A dtype the backend cannot sum throws CommError naming it and the backend.
  virtual void all_reduce_sum(const void* send, void* recv, size_t count, kernels::DType t,
                              kernels::Stream stream = nullptr) = 0;
  // recv[r * count + i] = rank r's send[i]; recv holds size() * count elements. Any dtype (a copy).
  virtual void all_gather(const void* send, void* recv, size_t count, kernels::DType t,
                          kernels::Stream stream = nullptr) = 0;
  // buf on every rank becomes root's buf. Any dtype (a copy).
  virtual void broadcast(void* buf, size_t count, kernels::DType t, int root, kernels::Stream stream = nullptr) = 0;
  virtual void barrier() = 0;
  // Waits for collectives queued on the backend's own stream (nccl, called with stream nullptr);
  // host backends finish inside the call. Collectives given a stream are waited for on that stream.
  virtual void synchronize() {}
  // After a failure on this rank, makes the whole group stop instead of waiting forever: mpi and
  // nccl call MPI_Abort (does not return); threads makes the other ranks' collectives throw.
  virtual void abort_group(const std::string& why) = 0;
};

// Collectives on host buffers whatever the backend: a device-memory communicator (nccl) moves
// only its own buffers, so these stage through one (alloc, upload, collective, synchronize,
// download, free); host backends run the collective on the buffers as given. For the small
// host-side traffic of tensor parallelism (the leader's step plan, the gathered logits).
void broadcast_host(Communicator& c, void* buf, size_t count, kernels::DType t, int root);
void all_gather_host(Communicator& c, const void* send, void* recv, size_t count, kernels::DType t);

std::unique_ptr<Communicator> make_single();
// Throws CommError when this build has no MPI. Initializes MPI when nobody has (thread level
// serialized: any one thread at a time may call, e.g. a serving loop's) and finalizes it when
// destroyed; size() is the mpirun world size. One per process.
std::unique_ptr<Communicator> make_mpi();
// Throws CommError naming why when NCCL cannot run: not built, no GPU, or several ranks but no MPI.
std::unique_ptr<Communicator> make_nccl();
// "single", "mpi", "nccl", or "auto" (mpi when launched by mpirun with more than one rank, else single).
std::unique_ptr<Communicator> make_communicator(const std::string& backend);

// Runs fn(comm) on n threads, one rank each, and joins them. The first exception thrown by any rank
// is rethrown here (after the others were woken with a CommError, so nothing hangs).
void run_thread_group(int n, const std::function<void(Communicator&)>& fn);

// Which backends this build has and whether each can run here; `unavailable` is empty when it can.
struct BackendStatus {
  std::string name;
  bool compiled = false;
  std::string unavailable;  // why not, e.g. "no CUDA device (cudaGetDeviceCount: ...)"
  std::string version;      // library version when compiled, e.g. "Open MPI v4.1.4", "NCCL 2.28.9"
};
std::vector<BackendStatus> backend_status();
std::string nccl_unavailable_reason();  // "" when NCCL can run here
int cuda_device_count();                // 0 without CUDA or without a device

// Launch helpers. launched_by_mpirun(): the environment says mpirun/mpiexec started this process
// (Open MPI, MPICH/Hydra, PMIx). mpirun_world_size(): that launcher's world size, 1 when none.
bool launched_by_mpirun();
int mpirun_world_size();

// argv prefix to start np ranks of a program with this build's mpirun, empty when the build has
// no MPI. With Open MPI it adds --oversubscribe (more ranks than cores is allowed), shared-memory
// transports (--mca pml ob1 --mca btl self,vader: what works in containers without a network), and
// --allow-run-as-root when running as root. CB_MPIRUN_FLAGS (space separated) replaces the extras.
std::vector<std::string> mpirun_prefix(int np);
std::string mpirun_path();  // "" when the build has no MPI

// The cb_comm_bench binary of this build, or empty when it was not built.
std::string comm_bench_binary();

}  // namespace cb::comm
