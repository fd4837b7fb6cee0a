// The NCCL backend: one rank per process and GPU. Rank 0 creates the NCCL unique id and the MPI
// backend broadcasts it (as nccl-tests does); a single process needs no MPI. Buffers live in GPU
// memory; collectives are queued on the caller's stream when given one, else on this backend's own
// stream, which synchronize() waits for.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <cstdlib>

#include "cb/comm/block_cache.h"
#include "comm_internal.h"

namespace cb::comm {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CommError(std::string("nccl: ") + what + ": " + cudaGetErrorString(e));
}
void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw CommError(std::string("nccl: ") + what + ": " + ncclGetErrorString(r));
}

using kernels::DType;

// Every DType has a native NCCL type, so NCCL sums all of them (U8 is refused by check_count).
ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::F16: return ncclFloat16;
    case DType::BF16: return ncclBfloat16;
    case DType::I8: return ncclInt8;
    case DType::I32: return ncclInt32;
    case DType::U8: return ncclUint8;
    case DType::I64: return ncclInt64;
  }
  return ncclUint8;
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

class NcclComm final : public Communicator {
 public:
  NcclComm() {
    const int ndev = detail::cuda_device_count_impl();
    if (ndev == 0) throw CommError("nccl: " + detail::nccl_unavailable_impl());
    if (launched_by_mpirun() && mpirun_world_size() > 1) {
#ifdef CB_COMM_HAVE_MPI
      boot_ = make_mpi();
      rank_ = boot_->rank();
      size_ = boot_->size();
#else
      throw CommError("nccl: launched as " + std::to_string(mpirun_world_size()) +
                      " ranks, but this build has no MPI to share the NCCL unique id");
#endif
    }
    const int local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", env_int("MPI_LOCALRANKID", rank_));
    const int local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", env_int("MPI_LOCALNRANKS", size_));
    if (local_size > ndev)
      throw CommError("nccl: " + std::to_string(local_size) + " ranks on this host but " + std::to_string(ndev) +
                      " GPU(s): NCCL needs one GPU per rank");
    device_ = local_rank % ndev;
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    ncclUniqueId id{};
    if (rank_ == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    if (boot_) boot_->broadcast(&id, sizeof id, DType::U8, 0);
    nccl_check(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~NcclComm() override {
    if (stream_) cudaStreamSynchronize(stream_);
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string backend() const override { return "nccl"; }
  std::string describe() const override {
    cudaDeviceProp p{};
    cudaGetDeviceProperties(&p, device_);
    return "nccl (" + detail::nccl_library_version() + ", " + std::to_string(size_) + " ranks, rank " +
           std::to_string(rank_) + " on GPU " + std::to_string(device_) + " " + p.name + ")";
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  bool device_memory() const override { return true; }
  // Zeroing and copies go on our stream and are waited for: our stream is non-blocking, so a
  // cudaMemset or pageable cudaMemcpy on the legacy stream is not ordered before a collective on
  // it (a pageable upload may return before its DMA lands). Buffers come from staging_, which
  // keeps released ones: the host collectives of tensor parallelism stage through the same few
  // sizes every decode step, where a cudaMalloc and a cudaFree (a wait for the whole device) each
  // time cost more than the copies.
  void* alloc(size_t bytes) override {
    const size_t n = bytes == 0 ? 64 : bytes;
    void* p = staging_.take(n);
    cuda_check(cudaMemsetAsync(p, 0, n, stream_), "cudaMemsetAsync");
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (alloc)");
    return p;
  }
  // The buffer must be idle: work on our stream is waited for here (cudaFree used to wait for the
  // whole device); a caller that queued collectives on its own stream waits for that first.
  void free(void* p) override {
    cudaStreamSynchronize(stream_);
    staging_.give(p);
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync (upload)");
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (upload)");
  }
  void download(void* dst, const void* src, size_t bytes) override {
    cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync (download)");
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (download)");
  }

  // On the caller's stream when given one (ordered after the kernels that wrote the buffer, no
  // host synchronize; the caller waits on that stream), else on our own (synchronize() waits).
  void all_reduce_sum(const void* send, void* recv, size_t count, DType t, kernels::Stream stream) override {
    detail::check_count("all_reduce", count, t, true);
    nccl_check(ncclAllReduce(send, recv, count, nccl_type(t), ncclSum, comm_, queue(stream)), "ncclAllReduce");
  }
  void all_gather(const void* send, void* recv, size_t count, DType t, kernels::Stream stream) override {
    detail::check_count("all_gather", count, t, false);
    nccl_check(ncclAllGather(send, recv, count, nccl_type(t), comm_, queue(stream)), "ncclAllGather");
  }
  void broadcast(void* buf, size_t count, DType t, int root, kernels::Stream stream) override {
    detail::check_count("broadcast", count, t, false);
    detail::check_root("broadcast", root, size_);
    nccl_check(ncclBroadcast(buf, buf, count, nccl_type(t), root, comm_, queue(stream)), "ncclBroadcast");
  }
  void barrier() override {
    synchronize();
    if (boot_) boot_->barrier();
  }
  void synchronize() override { cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }
  void abort_group(const std::string& why) override {
    std::fprintf(stderr, "nccl rank %d: aborting all ranks: %s\n", rank_, why.c_str());
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    if (boot_) boot_->abort_group(why);
  }

 private:
  cudaStream_t queue(kernels::Stream s) const { return s ? static_cast<cudaStream_t>(s) : stream_; }

  // Up to 256 MiB of released buffers kept (llama-7B logits at batch 256, gathered: 33 MB); a
  // larger one (the sweep's) goes straight back. Declared first: released after the stream.
  BlockCache staging_{[](size_t n) {
                        void* p = nullptr;
                        cuda_check(cudaMalloc(&p, n), "cudaMalloc");
                        return p;
                      },
                      [](void* p) { cudaFree(p); }, size_t(256) << 20};
  std::unique_ptr<Communicator> boot_;  // MPI, to share the unique id (absent for one rank)
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int rank_ = 0, size_ = 1, device_ = 0;
};

}  // namespace

namespace detail {
int cuda_device_count_impl() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}
std::string nccl_unavailable_impl() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("no usable CUDA device (cudaGetDeviceCount: ") + cudaGetErrorString(e) + ")";
  if (n == 0) return "no CUDA device (cudaGetDeviceCount returned 0)";
  return "";
}
std::string nccl_library_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "NCCL (version unknown)";
  // Since 2.9: major * 10000 + minor * 100 + patch.
  return "NCCL " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}
std::unique_ptr<Communicator> make_nccl_impl() { return std::make_unique<NcclComm>(); }
}  // namespace detail

}  // namespace cb::comm
