// The thread-group backend: N ranks as threads of one process over shared memory. Every
// collective posts its buffers, meets the others at a barrier, copies, and meets them again
// before returning (so no rank reuses a buffer another still reads). All-reduce is a
// reduce-scatter into a shared scratch (rank r sums slice r over ranks 0..n-1 in rank order)
// followed by a copy-out, so every rank gets bit-identical sums.
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "comm_internal.h"

namespace cb::comm {
namespace {

using kernels::DType;
using kernels::dtype_size;

struct Group {
  explicit Group(int n) : n(n), send(n), recv(n) {}
  const int n;
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  bool aborted = false;
  std::string why;
  std::vector<const void*> send;
  std::vector<void*> recv;
  std::vector<std::byte> scratch;

  void throw_aborted() const { throw CommError("threads: the group was aborted: " + why); }

  // Every rank waits until all n arrived; throws once any rank aborted the group.
  void barrier() {
    std::unique_lock lk(m);
    if (aborted) throw_aborted();
    const uint64_t gen = generation;
    if (++arrived == n) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    cv.wait(lk, [&] { return generation != gen || aborted; });
    if (aborted) throw_aborted();
  }
  void abort(const std::string& reason) {
    std::lock_guard lk(m);
    if (!aborted) why = reason;
    aborted = true;
    cv.notify_all();
  }
  void post(int rank, const void* s, void* r, size_t scratch_bytes = 0) {
    std::lock_guard lk(m);
    if (aborted) throw_aborted();
    send[rank] = s;
    recv[rank] = r;
    if (scratch.size() < scratch_bytes) scratch.resize(scratch_bytes);
  }
};

template <class T>
void sum_slice(const std::vector<const void*>& src, T* out, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i) out[i] = static_cast<const T*>(src[0])[i];
  for (size_t q = 1; q < src.size(); ++q) {
    const T* s = static_cast<const T*>(src[q]);
    for (size_t i = begin; i < end; ++i) out[i] += s[i];
  }
}

class ThreadComm final : public Communicator {
 public:
  ThreadComm(Group& g, int rank) : g_(g), rank_(rank) {}
  std::string backend() const override { return "threads"; }
  std::string describe() const override {
    return "threads (" + std::to_string(g_.n) + " ranks as threads of one process, shared memory)";
  }
  int rank() const override { return rank_; }
  int size() const override { return g_.n; }

  // Host memory: the stream is ignored, every collective finishes inside the call.
  void all_reduce_sum(const void* send, void* recv, size_t count, DType t, kernels::Stream) override {
    detail::check_count("all_reduce", count, t, true);
    // No f16/bf16 arithmetic on the host: refuse rather than sum the bits as integers. Checked
    // before post() so every rank throws the same way without waiting for the others.
    if (t != DType::F32 && t != DType::I32 && t != DType::I8 && t != DType::I64)
      detail::unsupported_sum(backend(), t, "f32, i32, i8 and i64");
    const size_t es = dtype_size(t);
    g_.post(rank_, send, recv, count * es);
    g_.barrier();
    // Reduce-scatter: this rank sums its slice of every rank's send into the shared scratch.
    const size_t per = (count + g_.n - 1) / g_.n, b = std::min(count, per * rank_), e = std::min(count, b + per);
    std::byte* out = g_.scratch.data();
    switch (t) {
      case DType::F32: sum_slice(g_.send, reinterpret_cast<float*>(out), b, e); break;
      case DType::I32: sum_slice(g_.send, reinterpret_cast<int32_t*>(out), b, e); break;
      case DType::I8: sum_slice(g_.send, reinterpret_cast<int8_t*>(out), b, e); break;
      case DType::I64: sum_slice(g_.send, reinterpret_cast<int64_t*>(out), b, e); break;
      default: break;  // refused above
    }
    g_.barrier();  // all slices summed (and every send read): recv may now be overwritten
    std::memcpy(recv, g_.scratch.data(), count * es);
    g_.barrier();  // all copied out: the scratch may be reused
  }

  void all_gather(const void* send, void* recv, size_t count, DType t, kernels::Stream) override {
    detail::check_count("all_gather", count, t, false);
    const size_t bytes = count * dtype_size(t);
    g_.post(rank_, send, recv);
    g_.barrier();
    for (int q = 0; q < g_.n; ++q) {
      std::byte* dst = static_cast<std::byte*>(recv) + size_t(q) * bytes;
      if (dst != g_.send[q]) std::memmove(dst, g_.send[q], bytes);
    }
    g_.barrier();
  }

  void broadcast(void* buf, size_t count, DType t, int root, kernels::Stream) override {
    detail::check_count("broadcast", count, t, false);
    detail::check_root("broadcast", root, g_.n);
    g_.post(rank_, buf, buf);
    g_.barrier();
    if (rank_ != root) std::memcpy(buf, g_.send[root], count * dtype_size(t));
    g_.barrier();
  }

  void barrier() override { g_.barrier(); }
  void abort_group(const std::string& why) override { g_.abort("rank " + std::to_string(rank_) + ": " + why); }

 private:
  Group& g_;
  int rank_;
};

}  // namespace

void run_thread_group(int n, const std::function<void(Communicator&)>& fn) {
  if (n < 1) throw CommError("run_thread_group: " + std::to_string(n) + " ranks (need at least 1)");
  Group g(n);
  std::mutex err_m;
  std::exception_ptr first;
  auto body = [&](int r) {
    ThreadComm c(g, r);
    try {
      fn(c);
    } catch (const std::exception& e) {
      {
        std::lock_guard lk(err_m);
        if (!first) first = std::current_exception();
      }
      g.abort("rank " + std::to_string(r) + ": " + e.what());
    } catch (...) {
      {
        std::lock_guard lk(err_m);
        if (!first) first = std::current_exception();
      }
      g.abort("rank " + std::to_string(r) + ": unknown exception");
    }
  };
  std::vector<std::thread> threads;
  for (int r = 1; r < n; ++r) threads.emplace_back(body, r);
  body(0);  // rank 0 on the calling thread
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace cb::comm
