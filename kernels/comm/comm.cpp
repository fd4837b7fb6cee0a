// The interface's shared parts: type names, host buffers, the single-rank backend, the factory
// and the list of backends this build has.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>

#include "comm_internal.h"

namespace cb::comm {

using kernels::DType;
using kernels::dtype_size;

const char* type_name(DType t) {
  switch (t) {
    case DType::F32: return "float";
    case DType::F16: return "half";
    case DType::BF16: return "bfloat16";
    case DType::I8: return "int8";
    case DType::I32: return "int32";
    case DType::U8: return "uint8";
    case DType::I64: return "int64";
  }
  return "?";
}

void* Communicator::alloc(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw CommError(backend() + ": cannot allocate " + std::to_string(bytes) + " bytes of host memory");
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  return p;
}
void Communicator::free(void* p) { std::free(p); }
void Communicator::upload(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void Communicator::download(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }

namespace detail {
void check_count(const char* op, size_t count, DType t, bool reduce) {
  // MPI and NCCL counts are int / size_t; keep every backend to what all of them accept.
  if (count > size_t(std::numeric_limits<int>::max()))
    throw CommError(std::string(op) + ": count " + std::to_string(count) + " exceeds the largest MPI count (2^31 - 1)");
  // U8 only carries metadata (bitmasks): a wrapping byte sum is never what a caller meant.
  if (reduce && t == DType::U8) throw CommError(std::string(op) + ": sum of uint8 is not supported (use float or int32)");
}
void unsupported_sum(const std::string& backend, DType t, const char* what_it_sums) {
  throw CommError(std::string("all_reduce: sum of ") + kernels::dtype_name(t) + " is not supported by the " + backend +
                  " backend (it sums " + what_it_sums + ")");
}
void check_root(const char* op, int root, int size) {
  if (root < 0 || root >= size)
    throw CommError(std::string(op) + ": root " + std::to_string(root) + " is not a rank of this group of " +
                    std::to_string(size));
}
}  // namespace detail

namespace {

class SingleComm final : public Communicator {
 public:
  std::string backend() const override { return "single"; }
  std::string describe() const override { return "single (1 rank, no communication)"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  // One rank: a sum is a copy, right for every dtype but U8 (which check_count refuses everywhere).
  // The stream is ignored: host collectives finish inside the call.
  void all_reduce_sum(const void* send, void* recv, size_t count, DType t, kernels::Stream) override {
    detail::check_count("all_reduce", count, t, true);
    if (send != recv) std::memmove(recv, send, count * dtype_size(t));
  }
  void all_gather(const void* send, void* recv, size_t count, DType t, kernels::Stream) override {
    detail::check_count("all_gather", count, t, false);
    if (send != recv) std::memmove(recv, send, count * dtype_size(t));
  }
  void broadcast(void*, size_t count, DType t, int root, kernels::Stream) override {
    detail::check_count("broadcast", count, t, false);
    detail::check_root("broadcast", root, 1);
  }
  void barrier() override {}
  void abort_group(const std::string&) override {}  // nobody else to stop
};

}  // namespace

std::unique_ptr<Communicator> make_single() { return std::make_unique<SingleComm>(); }

namespace {

// A buffer from c.alloc, freed when the scope ends (also when the collective throws).
struct StagedBuffer {
  Communicator& c;
  void* p;
  StagedBuffer(Communicator& comm, size_t bytes) : c(comm), p(comm.alloc(bytes)) {}
  ~StagedBuffer() { c.free(p); }
  StagedBuffer(const StagedBuffer&) = delete;
  StagedBuffer& operator=(const StagedBuffer&) = delete;
};

}  // namespace

void broadcast_host(Communicator& c, void* buf, size_t count, DType t, int root) {
  if (!c.device_memory()) return c.broadcast(buf, count, t, root);
  const size_t bytes = count * kernels::dtype_size(t);
  StagedBuffer d(c, bytes);
  if (c.rank() == root) c.upload(d.p, buf, bytes);
  c.broadcast(d.p, count, t, root);
  c.synchronize();
  c.download(buf, d.p, bytes);
}

void all_gather_host(Communicator& c, const void* send, void* recv, size_t count, DType t) {
  if (!c.device_memory()) return c.all_gather(send, recv, count, t);
  const size_t bytes = count * kernels::dtype_size(t);
  StagedBuffer s(c, bytes), r(c, bytes * size_t(c.size()));
  c.upload(s.p, send, bytes);
  c.all_gather(s.p, r.p, count, t);
  c.synchronize();
  c.download(recv, r.p, bytes * size_t(c.size()));
}

#ifdef CB_COMM_HAVE_MPI
std::unique_ptr<Communicator> make_mpi() { return detail::make_mpi_impl(); }
#else
std::unique_ptr<Communicator> make_mpi() {
  throw CommError("backend 'mpi': this build has no MPI (install libopenmpi-dev and reconfigure)");
}
#endif

#ifdef CB_COMM_HAVE_NCCL
std::unique_ptr<Communicator> make_nccl() { return detail::make_nccl_impl(); }
std::string nccl_unavailable_reason() { return detail::nccl_unavailable_impl(); }
int cuda_device_count() { return detail::cuda_device_count_impl(); }
#else
std::unique_ptr<Communicator> make_nccl() { throw CommError("backend 'nccl': " + nccl_unavailable_reason()); }
std::string nccl_unavailable_reason() {
  return "this build has no NCCL (configure with CUDA on, nvcc and nccl.h / libnccl found)";
}
int cuda_device_count() { return 0; }
#endif

std::unique_ptr<Communicator> make_communicator(const std::string& backend) {
  if (backend == "single") return make_single();
  if (backend == "mpi") return make_mpi();
  if (backend == "nccl") return make_nccl();
  if (backend == "auto") return launched_by_mpirun() && mpirun_world_size() > 1 ? make_mpi() : make_single();
  throw CommError("unknown communicator backend '" + backend + "' (expected single, mpi, nccl or auto; threads "
                  "are started with run_thread_group)");
}

std::vector<BackendStatus> backend_status() {
  std::vector<BackendStatus> v;
  v.push_back({"single", true, "", ""});
  v.push_back({"threads", true, "", ""});
#ifdef CB_COMM_HAVE_MPI
  v.push_back({"mpi", true, "", detail::mpi_library_version()});
#else
  v.push_back({"mpi", false, "this build has no MPI (install libopenmpi-dev and reconfigure)", ""});
#endif
#ifdef CB_COMM_HAVE_NCCL
  v.push_back({"nccl", true, nccl_unavailable_reason(), detail::nccl_library_version()});
#else
  v.push_back({"nccl", false, nccl_unavailable_reason(), ""});
#endif
  return v;
}

std::string comm_bench_binary() {
#ifdef CB_COMM_BENCH_PATH
  std::error_code ec;
  if (std::filesystem::exists(CB_COMM_BENCH_PATH, ec)) return CB_COMM_BENCH_PATH;
#endif
  return "";
}

}  // namespace cb::comm
