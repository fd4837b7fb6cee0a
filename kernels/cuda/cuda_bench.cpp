// cb_cuda_bench: the GPU microbenchmark. One run measures the device's own peaks (copy bandwidth,
// raw cuBLASLt GEMMs), the cuda backend's matmul at llama-1b shapes, the best cuBLASLt algorithm
// for the same shapes (the reference the backend is judged against), and decode attention
// bandwidth over the paged KV cache; it writes everything as one JSON file (--json) and a table.
// Every CUDA/cuBLASLt/backend failure is recorded in the JSON ("errors", per-case "status"), never
// fatal; a global time budget (--budget-s) bounds the run: cases past it are "skipped: time budget".
// Exit codes: 0 ran (see "errors"), 1 the JSON could not be written, 2 bad arguments,
// 77 no usable CUDA device (prints "SKIP: <reason>").
#include "cuda_bench.h"

namespace cb::cuda_bench {
namespace {

// ---- 1. device facts ---------------------------------------------------------------------------
json device_facts(int dev) {
  json j;
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, dev) == cudaSuccess) {
    j["name"] = p.name;
    j["total_memory_bytes"] = p.totalGlobalMem;
    j["compute_capability"] = std::to_string(p.major) + "." + std::to_string(p.minor);
  }
  auto attr = [dev](cudaDeviceAttr a) {
    int v = -1;
    return cudaDeviceGetAttribute(&v, a, dev) == cudaSuccess ? v : -1;
  };
  j["sm_count"] = attr(cudaDevAttrMultiProcessorCount);
  j["sm_clock_khz"] = attr(cudaDevAttrClockRate);
  j["memory_clock_khz"] = attr(cudaDevAttrMemoryClockRate);
  j["memory_bus_width_bits"] = attr(cudaDevAttrGlobalMemoryBusWidth);
  j["l2_cache_bytes"] = attr(cudaDevAttrL2CacheSize);
  const double mc = j["memory_clock_khz"].get<int>(), bw = j["memory_bus_width_bits"].get<int>();
  if (mc > 0 && bw > 0) j["dram_gbps_from_attributes"] = 2.0 * mc * 1e3 * bw / 8.0 / 1e9;  // DDR: 2 transfers a clock
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  j["driver_version"] = drv;
  j["runtime_version"] = rt;
  j["cublaslt_version"] = cublasLtGetVersion();
  j["cublaslt_cudart_version"] = cublasLtGetCudartVersion();
  return j;
}

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--json PATH] [--quick] [--peaks-only] [--seed N] [--budget-s S]\n", argv0);
  return 2;
}

}  // namespace
}  // namespace cb::cuda_bench

using namespace cb::cuda_bench;  // NOLINT: main below is the only user

int main(int argc, char** argv) {
  Ctx ctx;
  std::string json_path;
  bool peaks_only = false;  // the device's own limits alone (the load suite's MFU / MBU denominators)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--quick") {
      ctx.quick = true;
    } else if (a == "--peaks-only") {
      peaks_only = true;
    } else if (a == "--json" || a == "--seed" || a == "--budget-s") {
      const char* v = value();
      if (v == nullptr) return usage(argv[0]);
      try {
        if (a == "--json") json_path = v;
        else if (a == "--seed") ctx.seed = uint32_t(std::stoul(v));
        else ctx.budget_s = std::stod(v);
      } catch (const std::exception&) {
        return usage(argv[0]);
      }
    } else {
      return usage(argv[0]);
    }
  }
  json root = {{"schema", "cb_cuda_bench/1"}};
  auto write = [&]() -> int {
    if (json_path.empty()) return 0;
    std::ofstream f(json_path);
    f << root.dump(2) << "\n";
    if (!f.good()) {
      std::fprintf(stderr, "error: cannot write %s\n", json_path.c_str());
      return 1;
    }
    return 0;
  };

  int ndev = 0;
  if (cudaError_t ce = cudaGetDeviceCount(&ndev); ce != cudaSuccess || ndev == 0) {
    const std::string why = ce != cudaSuccess ? std::string("cudaGetDeviceCount: ") + cudaGetErrorString(ce)
                                              : std::string("no CUDA device");
    std::printf("SKIP: %s\n", why.c_str());
    root["skipped"] = why;
    write();
    return 77;
  }
  if (cudaError_t ce = cudaSetDevice(0); ce != cudaSuccess) {
    std::printf("SKIP: cudaSetDevice(0): %s\n", cudaGetErrorString(ce));
    root["skipped"] = std::string("cudaSetDevice(0): ") + cudaGetErrorString(ce);
    write();
    return 77;
  }

  const std::vector<int64_t> Ms = ctx.quick ? std::vector<int64_t>{1, 128, 4096} : std::vector<int64_t>{1, 16, 128, 1024, 4096};
  json shapes = json::array();
  for (const Shape& s : kShapes) shapes.push_back({{"name", s.name}, {"N", s.n}, {"K", s.k}});
  root["params"] = {
      {"quick", ctx.quick}, {"peaks_only", peaks_only}, {"seed", ctx.seed}, {"budget_s", ctx.budget_s}, {"matmul_shapes", shapes}, {"matmul_M", Ms},
      {"weights", "mt19937(seed) top 24 bits -> uniform [-1, 1); bf16 rounded and int8 per-channel quantized from them"},
      {"activations", "splitmix64 uniform [-1, 1)"},
      {"matmul_timing", "3 timed warm-ups, then ~20 ms of back-to-back calls in <= 10 chunks between CUDA events; median of chunk per-call times"},
      {"attention", "decode (1 query row per sequence), llama-1b heads 32/4, head_dim 64, block 16"},
      {"working_set_bytes", kWorkingSet},
      {"working_set", "M=1 matmul cycles weight copies, attention cycles disjoint pool slices, so re-read inputs come from HBM, not L2"}};
  std::printf("cb_cuda_bench%s, seed %u\n", ctx.quick ? " (quick)" : "", ctx.seed);
  root["device"] = device_facts(0);
  std::printf("device: %s, %d SMs, %.1f GiB\n", root["device"].value("name", std::string("?")).c_str(),
              root["device"]["sm_count"].get<int>(),
              double(root["device"].value("total_memory_bytes", size_t(0))) / double(1u << 30));

  cudaStream_t s = nullptr;
  if (auto e = cu_err(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); !e.empty()) ctx.error(e);
  double copy_rw = 0;
  std::map<RateKey, double> rates;
  std::unique_ptr<ck::Backend> be;
  try {
    root["peaks"]["d2d_copy"] = copy_peak(ctx, s, copy_rw);
    {
      Lt lt;
      if (auto e = lt.init(s, ctx.seed); !e.empty()) ctx.error("cublasLt init: " + e);
      else root["peaks"]["gemm"] = gemm_peaks(ctx, lt);
    }
    if (!peaks_only) {
      try {
        be = ck::make_backend("cuda");
        root["backend"] = be->name();
      } catch (const std::exception& ex) {
        ctx.error(std::string("make_backend(\"cuda\"): ") + ex.what());
        root["backend"] = std::string("unavailable: ") + ex.what();
      }
    }
    if (be) {
      try {
        root["matmul"] = backend_matmuls(ctx, *be, Ms, rates);
      } catch (const std::exception& ex) {
        ctx.error(std::string("matmul section: ") + ex.what());
      }
    }
    if (!peaks_only) {
      Lt lt;
      if (auto e = lt.init(s, ctx.seed); !e.empty()) ctx.error("cublasLt init: " + e);
      else root["cublaslt_reference"] = lt_reference(ctx, lt, rates, be != nullptr);
    }
    if (be) {
      try {
        root["attention"] = attention_bench(ctx, *be, copy_rw);
      } catch (const std::exception& ex) {
        ctx.error(std::string("attention section: ") + ex.what());
      }
    }
  } catch (const std::exception& ex) {
    ctx.error(std::string("unexpected: ") + ex.what());
  }
  be.reset();
  if (s != nullptr) cudaStreamDestroy(s);
  root["errors"] = ctx.errors;
  root["ok"] = ctx.errors.empty();
  root["elapsed_s"] = ctx.elapsed();
  std::printf("done in %.1f s, %zu error(s)\n", ctx.elapsed(), ctx.errors.size());
  return write();
}
