// The collective sweep (nccl-tests layout and definitions), the alpha-beta fit and the ring model.
#include "cb/comm/sweep.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace cb::comm {

const char* collective_name(Collective c) {
  switch (c) {
    case Collective::AllReduce: return "all_reduce";
    case Collective::AllGather: return "all_gather";
    case Collective::Broadcast: return "broadcast";
  }
  return "?";
}

Collective collective_from_name(const std::string& s) {
  for (Collective c : {Collective::AllReduce, Collective::AllGather, Collective::Broadcast})
    if (s == collective_name(c)) return c;
  throw CommError("unknown collective '" + s + "' (expected all_reduce, all_gather or broadcast)");
}

double bus_factor(Collective c, int n) {
  switch (c) {
    case Collective::AllReduce: return 2.0 * (n - 1) / n;
    case Collective::AllGather: return double(n - 1) / n;
    case Collective::Broadcast: return 1.0;
  }
  return 1.0;
}

namespace {
using clock_type = std::chrono::steady_clock;
using kernels::DType;
using kernels::dtype_size;

// Small integers, so float sums over any realistic rank count are exact; differs between ranks
// (a broadcast that did nothing is caught).
double pattern(int rank, size_t i) { return double((i + 17 * size_t(rank)) % 101 + 1); }

void fill(std::vector<std::byte>& host, DType t, size_t count, int rank, size_t offset = 0) {
  for (size_t i = 0; i < count; ++i) {
    const double v = pattern(rank, i);
    std::byte* p = host.data() + (offset + i) * dtype_size(t);
    if (t == DType::F32) { const float f = float(v); std::memcpy(p, &f, 4); }
    else if (t == DType::I32) { const int32_t x = int32_t(v); std::memcpy(p, &x, 4); }
    else { *reinterpret_cast<uint8_t*>(p) = uint8_t(v); }
  }
}

double read(const std::byte* p, DType t) {
  if (t == DType::F32) { float f; std::memcpy(&f, p, 4); return f; }
  if (t == DType::I32) { int32_t x; std::memcpy(&x, p, 4); return x; }
  return double(*reinterpret_cast<const uint8_t*>(p));
}

// A scalar reduced over ranks through the communicator itself (its buffers may be on a GPU).
class Scalars {
 public:
  explicit Scalars(Communicator& c) : c_(c), buf_(c.alloc(4 * size_t(c.size()))), tmp_(c.alloc(4)) {}
  ~Scalars() { c_.free(buf_); c_.free(tmp_); }
  int64_t sum(int32_t v) {
    c_.upload(tmp_, &v, 4);
    c_.all_reduce_sum(tmp_, tmp_, 1, DType::I32);
    c_.synchronize();
    c_.download(&v, tmp_, 4);
    return v;
  }
  double max(float v) {
    c_.upload(tmp_, &v, 4);
    c_.all_gather(tmp_, buf_, 1, DType::F32);
    c_.synchronize();
    std::vector<float> all(size_t(c_.size()));
    c_.download(all.data(), buf_, 4 * all.size());
    return *std::max_element(all.begin(), all.end());
  }
  int32_t from_root(int32_t v) {
    c_.upload(tmp_, &v, 4);
    c_.broadcast(tmp_, 1, DType::I32, 0);
    c_.synchronize();
    c_.download(&v, tmp_, 4);
    return v;
  }

 private:
  Communicator& c_;
  void* buf_;
  void* tmp_;
};
}  // namespace

std::vector<SweepRow> run_sweep(Communicator& comm, const SweepOptions& opt,
                                const std::function<void(const SweepRow&)>& on_row) {
  if (opt.min_bytes == 0 || opt.max_bytes < opt.min_bytes || opt.factor < 2)
    throw CommError("sweep: need 0 < min_bytes <= max_bytes and factor >= 2 (got " + std::to_string(opt.min_bytes) + ", " +
                    std::to_string(opt.max_bytes) + ", " + std::to_string(opt.factor) + ")");
  // fill() and read() know these three; another dtype would be timed on garbage and miscounted.
  if (opt.type != DType::F32 && opt.type != DType::I32 && opt.type != DType::U8)
    throw CommError(std::string("sweep: type ") + type_name(opt.type) + " is not supported (use float, int32 or uint8)");
  const int n = comm.size(), me = comm.rank();
  const size_t ts = dtype_size(opt.type);
  void* send = comm.alloc(opt.max_bytes);
  void* recv = comm.alloc(opt.max_bytes);
  struct Free {
    Communicator& c;
    void* a;
    void* b;
    ~Free() { c.free(a); c.free(b); }
  } free_bufs{comm, send, recv};
  Scalars sc(comm);
  std::vector<std::byte> host(opt.max_bytes), back(opt.max_bytes);
  std::vector<SweepRow> rows;

  for (Collective op : opt.ops) {
    if (op == Collective::AllReduce && opt.type == DType::U8)
      throw CommError("sweep: all_reduce of uint8 is not supported (use float or int32)");
    for (size_t b = opt.min_bytes; b <= opt.max_bytes; b *= size_t(opt.factor)) {
      SweepRow r;
      r.op = op;
      r.type = opt.type;
      r.count = op == Collective::AllGather ? b / (ts * size_t(n)) : b / ts;
      if (r.count == 0) continue;
      r.bytes = op == Collective::AllGather ? r.count * ts * size_t(n) : r.count * ts;
      if (op == Collective::Broadcast) r.root = 0;
      const size_t send_bytes = r.count * ts;
      // Inputs: this rank's pattern; the output buffer starts as zeros (all_reduce, all_gather).
      fill(host, opt.type, r.count, me);
      comm.upload(send, host.data(), send_bytes);
      std::memset(back.data(), 0, r.bytes);
      comm.upload(recv, back.data(), r.bytes);
      auto once = [&] {
        switch (op) {
          case Collective::AllReduce: comm.all_reduce_sum(send, recv, r.count, opt.type); break;
          case Collective::AllGather: comm.all_gather(send, recv, r.count, opt.type); break;
          case Collective::Broadcast: comm.broadcast(send, r.count, opt.type, 0); break;
        }
      };
      // Warm-up; its fastest iteration sizes the batches. Rank 0 picks the count for all.
      double est = 1e30;
      for (int i = 0; i < std::max(1, opt.warmup); ++i) {
        comm.barrier();
        const auto t0 = clock_type::now();
        once();
        comm.synchronize();
        est = std::min(est, std::chrono::duration<double>(clock_type::now() - t0).count());
      }
      const int trials = std::max(1, opt.trials);
      int iters = int(std::clamp(opt.target_seconds / trials / std::max(est, 1e-9), double(opt.min_iters), double(opt.max_iters)));
      iters = sc.from_root(iters);
      std::vector<double> batch(size_t(trials), 0.0);
      for (int t = 0; t < trials; ++t) {
        comm.barrier();
        const auto t0 = clock_type::now();
        for (int i = 0; i < iters; ++i) once();
        comm.synchronize();
        batch[size_t(t)] = std::chrono::duration<double>(clock_type::now() - t0).count() / iters;
      }
      std::sort(batch.begin(), batch.end());
      const double mine = trials % 2 ? batch[size_t(trials / 2)] : 0.5 * (batch[size_t(trials / 2 - 1)] + batch[size_t(trials / 2)]);
      r.iters = iters;
      r.trials = trials;
      r.time_us = sc.max(float(mine * 1e6));
      r.algbw_gbs = double(r.bytes) / (r.time_us * 1e-6) / 1e9;
      r.busbw_gbs = r.algbw_gbs * bus_factor(op, n);

      // #wrong: compare the result with what it must be, element by element.
      int64_t wrong = 0;
      if (op == Collective::Broadcast) {
        comm.download(back.data(), send, send_bytes);
        for (size_t i = 0; i < r.count; ++i) wrong += read(back.data() + i * ts, opt.type) != pattern(0, i);
      } else {
        comm.download(back.data(), recv, r.bytes);
        if (op == Collective::AllReduce) {
          for (size_t i = 0; i < r.count; ++i) {
            double want = 0;
            for (int q = 0; q < n; ++q) want += pattern(q, i);
            wrong += read(back.data() + i * ts, opt.type) != want;
          }
        } else {
          for (int q = 0; q < n; ++q)
            for (size_t i = 0; i < r.count; ++i)
              wrong += read(back.data() + (size_t(q) * r.count + i) * ts, opt.type) != pattern(q, i);
        }
      }
      r.wrong = sc.sum(int32_t(std::min<int64_t>(wrong, INT32_MAX / 64)));
      rows.push_back(r);
      if (on_row) on_row(r);
      if (b > opt.max_bytes / size_t(opt.factor)) break;  // the next size would overflow or pass max
    }
  }
  return rows;
}

std::string sweep_header() {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "#  %-10s %12s %12s %6s %6s %5s %10s %8s %8s %7s %6s\n"
                "#  %-10s %12s %12s %6s %6s %5s %10s %8s %8s %7s %6s\n",
                "collective", "size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "iters",
                "", "(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "");
  return buf;
}

std::string format_row(const SweepRow& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "   %-10s %12zu %12zu %6s %6s %5d %10.2f %8.3f %8.3f %7lld %6d", collective_name(r.op), r.bytes,
                r.count, type_name(r.type), r.op == Collective::AllReduce ? "sum" : "none", r.root, r.time_us, r.algbw_gbs,
                r.busbw_gbs, static_cast<long long>(r.wrong), r.iters);
  return buf;
}

double AlphaBeta::predict(double bytes) const {
  return alpha_s + (beta_bytes_per_s > 0 && std::isfinite(beta_bytes_per_s) ? bytes / beta_bytes_per_s : 0.0);
}

AlphaBeta fit_alpha_beta(const std::vector<std::pair<double, double>>& pts) {
  if (pts.size() < 2) throw CommError("alpha-beta fit: needs at least 2 (bytes, seconds) points, got " + std::to_string(pts.size()));
  // Weighted least squares of t = a + s * m with weights 1/t^2 (relative error): normal equations.
  double sw = 0, swm = 0, swmm = 0, swt = 0, swmt = 0;
  for (const auto& [m, t] : pts) {
    if (!(t > 0) || m < 0) throw CommError("alpha-beta fit: point (" + std::to_string(m) + " B, " + std::to_string(t) + " s) is not positive");
    const double w = 1.0 / (t * t);
    sw += w, swm += w * m, swmm += w * m * m, swt += w * t, swmt += w * m * t;
  }
  const double det = sw * swmm - swm * swm;
  if (!(det > 0)) throw CommError("alpha-beta fit: all points have the same size");
  double s = (sw * swmt - swm * swt) / det;
  double a = (swt - s * swm) / sw;
  // Physical constraints: neither latency nor time per byte is negative. Refit the other alone.
  if (s < 0) {
    s = 0;
    a = swt / sw;
  } else if (a < 0) {
    a = 0;
    s = swmt / swmm;
  }
  AlphaBeta f;
  f.alpha_s = a;
  f.beta_bytes_per_s = s > 0 ? 1.0 / s : INFINITY;
  f.points = int(pts.size());
  double e2 = 0;
  for (const auto& [m, t] : pts) e2 += std::pow((f.predict(m) - t) / t, 2);
  f.rms_rel_err = std::sqrt(e2 / double(pts.size()));
  return f;
}

double RingModel::seconds(int n, double bytes) const {
  if (n < 2) return 0;
  return 2.0 * (n - 1) * step_latency_s + 2.0 * (n - 1) / n * bytes / link_bytes_per_s;
}

RingModel ring_from_fit(const AlphaBeta& f, int n) {
  if (n < 2) throw CommError("ring model: needs a fit over >= 2 ranks (got " + std::to_string(n) + ")");
  RingModel m;
  m.step_latency_s = f.alpha_s / (2.0 * (n - 1));
  m.link_bytes_per_s = f.beta_bytes_per_s * 2.0 * (n - 1) / n;
  return m;
}

}  // namespace cb::comm
