// cb_comm_bench: the nccl-tests-style collective sweep on one backend.
//
//   cb_comm_bench --backend threads --ranks 4             # in one process
//   mpirun -n 2 cb_comm_bench --backend mpi -e 256M        # one rank per process
//   mpirun -n 8 cb_comm_bench --backend nccl -e 256M       # one rank per GPU
//
// Rank 0 prints fixed-width rows (size, count, type, redop, root, time, algbw, busbw, #wrong) and
// writes --json. Exit 1 when any row has #wrong > 0; exit 77 (SKIP) when the backend cannot run
// here (e.g. nccl without a GPU), with the reason on stdout.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>

#include "cb/comm/communicator.h"
#include "cb/comm/sweep.h"

namespace {
using namespace cb::comm;
constexpr int kSkip = 77;

// "8", "64K", "256M", "1G" (powers of 1024, as nccl-tests reads -b / -e).
size_t parse_size(const std::string& s) {
  size_t pos = 0;
  const unsigned long long v = std::stoull(s, &pos);
  const std::string suf = s.substr(pos);
  if (suf.empty() || suf == "B") return v;
  if (suf == "K") return v << 10;
  if (suf == "M") return v << 20;
  if (suf == "G") return v << 30;
  throw CLI::ValidationError("size '" + s + "': expected a number with an optional K, M or G suffix");
}

nlohmann::json row_json(const SweepRow& r) {
  return {{"collective", collective_name(r.op)}, {"bytes", r.bytes},       {"count", r.count},
          {"type", type_name(r.type)},           {"root", r.root},         {"iters", r.iters}, {"trials", r.trials},
          {"time_us", r.time_us},                {"algbw_gbs", r.algbw_gbs}, {"busbw_gbs", r.busbw_gbs},
          {"wrong", r.wrong}};
}

struct Args {
  std::string backend = "auto", ops = "all_reduce", type = "float", json_path, min_b = "8", max_b = "256M";
  int ranks = 2, factor = 2, warmup = 2, trials = 5, min_iters = 1, max_iters = 1000;
  double target_ms = 50;
};

int sweep_on(Communicator& c, const Args& a) {
  SweepOptions o;
  o.ops.clear();
  for (size_t p = 0; p <= a.ops.size();) {
    const size_t q = std::min(a.ops.find(',', p), a.ops.size());
    o.ops.push_back(collective_from_name(a.ops.substr(p, q - p)));
    p = q + 1;
  }
  o.min_bytes = parse_size(a.min_b);
  o.max_bytes = parse_size(a.max_b);
  o.factor = a.factor;
  o.warmup = a.warmup;
  o.trials = a.trials;
  o.min_iters = a.min_iters;
  o.max_iters = a.max_iters;
  o.target_seconds = a.target_ms / 1000.0;
  o.type = a.type == "int32" ? cb::kernels::DType::I32 : a.type == "uint8" ? cb::kernels::DType::U8 : cb::kernels::DType::F32;
  const bool lead = c.rank() == 0;
  if (lead) {
    std::printf("# cb_comm_bench: %s\n# ranks %d, %s, sizes %zu..%zu B x%d, warmup %d, %d batches of %d..%d iters, %.0f ms per size\n",
                c.describe().c_str(), c.size(), type_name(o.type), o.min_bytes, o.max_bytes, o.factor, o.warmup, o.trials,
                o.min_iters, o.max_iters, a.target_ms);
    std::printf("# time: per iteration, median of the batches' means, slowest rank; busbw = algbw x (all_reduce 2(n-1)/n, "
                "all_gather (n-1)/n, broadcast 1)\n");
    std::fputs(sweep_header().c_str(), stdout);
    std::fflush(stdout);
  }
  const auto rows = run_sweep(c, o, [&](const SweepRow& r) {
    if (!lead) return;
    std::puts(format_row(r).c_str());
    std::fflush(stdout);
  });
  int64_t wrong = 0;
  for (const auto& r : rows) wrong += r.wrong;
  if (lead) {
    std::printf("# rows %zu, #wrong total %lld: %s\n", rows.size(), static_cast<long long>(wrong), wrong ? "FAIL" : "OK");
    if (!a.json_path.empty()) {
      nlohmann::json j = {{"schema", "claimbench.comm_sweep"}, {"backend", c.backend()}, {"describe", c.describe()},
                          {"ranks", c.size()}, {"type", type_name(o.type)}, {"wrong_total", wrong},
                          {"options", {{"min_bytes", o.min_bytes}, {"max_bytes", o.max_bytes}, {"factor", o.factor},
                                       {"warmup", o.warmup}, {"trials", o.trials}, {"min_iters", o.min_iters}, {"max_iters", o.max_iters},
                                       {"target_ms", a.target_ms}}},
                          {"rows", nlohmann::json::array()}};
      for (const auto& r : rows) j["rows"].push_back(row_json(r));
      std::ofstream out(a.json_path);
      out << j.dump(1) << "\n";
      if (!out) throw CommError(a.json_path + ": cannot write the sweep JSON");
    }
  }
  return wrong ? 1 : 0;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nccl-tests-style collective sweep: time, algbw, busbw, #wrong per size"};
  Args a;
  app.add_option("--backend", a.backend, "auto | single | threads | mpi | nccl (auto: mpi under mpirun, else single)")
      ->check(CLI::IsMember({"auto", "single", "threads", "mpi", "nccl"}));
  app.add_option("--ranks", a.ranks, "ranks for --backend threads")->check(CLI::Range(1, 256));
  app.add_option("--ops", a.ops, "comma-separated: all_reduce, all_gather, broadcast");
  app.add_option("-b,--min-bytes", a.min_b, "smallest size (8, 64K, 1M, ...)");
  app.add_option("-e,--max-bytes", a.max_b, "largest size");
  app.add_option("-f,--factor", a.factor, "size multiplier")->check(CLI::Range(2, 1024));
  app.add_option("-w,--warmup", a.warmup, "untimed iterations per size")->check(CLI::Range(1, 1000));
  app.add_option("--trials", a.trials, "timed batches per size (the row reports their median)")->check(CLI::Range(1, 1000));
  app.add_option("--min-iters", a.min_iters, "fewest iterations per batch")->check(CLI::Range(1, 1000000));
  app.add_option("--max-iters", a.max_iters, "most iterations per batch")->check(CLI::Range(1, 1000000));
  app.add_option("--target-ms", a.target_ms, "the batches of one size aim at this many ms together")->check(CLI::PositiveNumber);
  app.add_option("--type", a.type, "float | int32 | uint8")->check(CLI::IsMember({"float", "int32", "uint8"}));
  app.add_option("--json", a.json_path, "write the rows as JSON (rank 0)");
  CLI11_PARSE(app, argc, argv);
  if (a.min_iters > a.max_iters) {
    std::fprintf(stderr, "cb_comm_bench: --min-iters %d > --max-iters %d\n", a.min_iters, a.max_iters);
    return 2;
  }
  try {
    if (a.backend == "threads") {
      int rc = 0;
      run_thread_group(a.ranks, [&](Communicator& c) {
        const int r = sweep_on(c, a);
        if (c.rank() == 0) rc = r;
      });
      return rc;
    }
    if (a.backend == "nccl") {
      const std::string why = nccl_unavailable_reason();
      if (!why.empty()) {
        std::printf("SKIP: nccl: %s\n", why.c_str());
        return kSkip;
      }
    }
    auto c = make_communicator(a.backend);
    int rc = 0;
    try {
      rc = sweep_on(*c, a);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cb_comm_bench: rank %d: error: %s\n", c->rank(), e.what());
      std::fflush(stderr);
      c->abort_group(e.what());
      return 1;
    }
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cb_comm_bench: error: %s\n", e.what());
    return 1;
  }
}
