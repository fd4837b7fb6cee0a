// An nccl-tests-style collective sweep over any Communicator: for each collective and message
// size, time, algorithm bandwidth, bus bandwidth and a count of wrong elements, printed in
// fixed-width columns. Time is per iteration like nccl-tests' mean, but taken as the median of
// several timed batches (the slowest rank's), so one descheduled batch on a shared host does not
// become the row's figure. Plus the latency-bandwidth (alpha-beta) fit and
// the ring model the scaling suite projects with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cb/comm/communicator.h"

namespace cb::comm {

enum class Collective { AllReduce, AllGather, Broadcast };
const char* collective_name(Collective c);  // "all_reduce", "all_gather", "broadcast"
Collective collective_from_name(const std::string& s);  // throws CommError naming the known ones

// nccl-tests: busbw = algbw x factor, the bandwidth a link of the optimal algorithm carries.
// all_reduce 2(n-1)/n, all_gather (n-1)/n, broadcast 1.
double bus_factor(Collective c, int ranks);

struct SweepOptions {
  std::vector<Collective> ops = {Collective::AllReduce};
  size_t min_bytes = 8;
  size_t max_bytes = size_t(256) << 20;
  int factor = 2;                  // size multiplier between rows
  int warmup = 2;                  // untimed iterations per size (the fastest one sizes the batches)
  int trials = 5;                  // timed batches per size; the row reports their median
  int min_iters = 1, max_iters = 1000;  // iterations per batch
  double target_seconds = 0.05;    // all batches of one size together aim at this much time
  kernels::DType type = kernels::DType::F32;  // F32, I32 or U8 (U8: all_gather and broadcast only)
};

struct SweepRow {
  Collective op = Collective::AllReduce;
  size_t bytes = 0;   // all_reduce / broadcast: one buffer; all_gather: the gathered result (nccl-tests)
  size_t count = 0;   // elements per rank's send buffer
  kernels::DType type = kernels::DType::F32;
  int root = -1;      // broadcast root, -1 otherwise
  int iters = 0;          // per batch
  int trials = 0;         // batches
  double time_us = 0;     // median over batches of the mean per iteration; the slowest rank's
  double algbw_gbs = 0;   // bytes / time
  double busbw_gbs = 0;   // algbw x bus_factor
  int64_t wrong = 0;      // elements that differ from the expected result, summed over ranks
};

// Runs the sweep; every rank calls it with the same options. on_row runs on every rank as each
// row completes (rank 0 prints). Sizes too small for one element per rank are skipped.
std::vector<SweepRow> run_sweep(Communicator& comm, const SweepOptions& opt,
                                const std::function<void(const SweepRow&)>& on_row = {});

// Fixed-width console lines, nccl-tests layout.
std::string sweep_header();
std::string format_row(const SweepRow& r);

// t(bytes) = alpha + bytes / beta, fitted by least squares on relative error (each point weighted
// by 1/t^2) so small-message latency and large-message bandwidth both count.
struct AlphaBeta {
  double alpha_s = 0;           // latency, seconds
  double beta_bytes_per_s = 0;  // bandwidth, bytes/s (infinite when time does not grow with size)
  double rms_rel_err = 0;       // of the fit over its points
  int points = 0;
  double predict(double bytes) const;  // seconds
};
// Throws CommError with fewer than 2 points or non-positive times.
AlphaBeta fit_alpha_beta(const std::vector<std::pair<double, double>>& bytes_seconds);

// Ring all-reduce on n ranks: t = 2(n-1) a + 2(n-1)/n * bytes / b, per-step latency a and per-link
// bandwidth b. ring_from_fit maps a fit of measured n-rank times onto a and b; project gives t for
// another rank count from them.
struct RingModel {
  double step_latency_s = 0;
  double link_bytes_per_s = 0;
  double seconds(int ranks, double bytes) const;
};
RingModel ring_from_fit(const AlphaBeta& fit, int ranks);  // throws CommError for ranks < 2

}  // namespace cb::comm
