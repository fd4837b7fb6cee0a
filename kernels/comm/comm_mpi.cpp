// The MPI backend: one rank per process, launched by mpirun. Collectives on host memory over a
// duplicate of MPI_COMM_WORLD (so they never collide with other users of the world communicator).
// The C API only: the deprecated C++ bindings would need libmpi_cxx at link time.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstdio>
#include <limits>

#include "comm_internal.h"

namespace cb::comm {
namespace {

using kernels::DType;

// MPI has no 16-bit float type: f16/bf16 travel as 16-bit words, right for the copies (all_gather,
// broadcast) and refused for sums (all_reduce_sum checks before it gets here).
MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F16: return MPI_UINT16_T;
    case DType::BF16: return MPI_UINT16_T;
    case DType::I8: return MPI_INT8_T;
    case DType::I32: return MPI_INT32_T;
    case DType::U8: return MPI_UINT8_T;
    case DType::I64: return MPI_INT64_T;
  }
  return MPI_BYTE;
}

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw CommError(std::string("mpi: ") + what + ": " + std::string(msg, size_t(len)));
}

class MpiComm final : public Communicator {
 public:
  MpiComm() {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) throw CommError("mpi: MPI was already finalized in this process (one MPI session per process)");
    if (!inited) {
      // Serialized: one thread at a time, not necessarily the one that initialized (a serving
      // loop runs the model on its own thread). Kernels' OpenMP threads never call MPI.
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &thread_level_), "MPI_Init_thread");
      owns_init_ = true;
    } else {
      MPI_Query_thread(&thread_level_);
    }
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    // Errors come back as codes (and become CommError) instead of aborting inside MPI.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiComm() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Comm_free(&comm_);
    if (owns_init_) MPI_Finalize();
  }

  std::string backend() const override { return "mpi"; }
  std::string describe() const override {
    std::string d = "mpi (" + detail::mpi_library_version() + ", " + std::to_string(size_) + " ranks";
    if (thread_level_ < MPI_THREAD_SERIALIZED) d += ", MPI calls only from the initializing thread";
    return d + ")";
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  // Host memory: the stream is ignored, every collective finishes inside the call.
  void all_reduce_sum(const void* send, void* recv, size_t count, DType t, kernels::Stream) override {
    detail::check_count("all_reduce", count, t, true);
    if (t == DType::F16 || t == DType::BF16) detail::unsupported_sum(backend(), t, "f32, i32, i8 and i64");
    const void* s = send == recv ? MPI_IN_PLACE : send;
    check(MPI_Allreduce(s, recv, int(count), mpi_type(t), MPI_SUM, comm_), "MPI_Allreduce");
  }
  void all_gather(const void* send, void* recv, size_t count, DType t, kernels::Stream) override {
    detail::check_count("all_gather", count, t, false);
    if (count * size_t(size_) > size_t(std::numeric_limits<int>::max()))
      throw CommError("all_gather: " + std::to_string(count) + " x " + std::to_string(size_) + " ranks exceeds the largest MPI count");
    const bool in_place = send == static_cast<const std::byte*>(recv) + size_t(rank_) * count * kernels::dtype_size(t);
    check(MPI_Allgather(in_place ? MPI_IN_PLACE : send, int(count), mpi_type(t), recv, int(count), mpi_type(t), comm_),
          "MPI_Allgather");
  }
  void broadcast(void* buf, size_t count, DType t, int root, kernels::Stream) override {
    detail::check_count("broadcast", count, t, false);
    detail::check_root("broadcast", root, size_);
    check(MPI_Bcast(buf, int(count), mpi_type(t), root, comm_), "MPI_Bcast");
  }
  void barrier() override { check(MPI_Barrier(comm_), "MPI_Barrier"); }
  void abort_group(const std::string& why) override {
    std::fprintf(stderr, "mpi rank %d: aborting all ranks: %s\n", rank_, why.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  bool owns_init_ = false;
  int thread_level_ = MPI_THREAD_SINGLE;
};

}  // namespace

namespace detail {
std::string mpi_library_version() {
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(v, &len);
  std::string s(v, size_t(len));
  // Open MPI's string is long ("Open MPI v4.1.4, package: ..., ident: ..."): keep the first part.
  const size_t cut = s.find_first_of(",\n");
  return cut == std::string::npos ? s : s.substr(0, cut);
}
std::unique_ptr<Communicator> make_mpi_impl() { return std::make_unique<MpiComm>(); }
}  // namespace detail

}  // namespace cb::comm
