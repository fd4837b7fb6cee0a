// Seeded random-weight LLaMA models in Hugging Face layout (config.json + model.safetensors).
//
// Determinism: every tensor is cut into fixed chunks of kChunk elements; chunk c of tensor t draws
// from its own std::mt19937_64 seeded with mix(seed, t, c), where t is the tensor's index in
// expected_tensor_names(). The bytes therefore depend on (seed, config, dtype) only: not on the
// thread count, nor on the order in which tensors or chunks are generated. Normals come from a
// Box-Muller transform written out here (with its own log, sin and cos from IEEE basic operations)
// rather than std::normal_distribution, whose algorithm is implementation-defined (libstdc++ and
// libc++ give different numbers for the same engine), or libm, whose last bits vary by version and
// CPU: the same seed gives the same bytes on every machine, so golden files stay valid.
#include "cb/engine/model/model_init.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cb/engine/model/errors.h"
#include "cb/engine/model/safetensors.h"
#include "cb/engine/model/weights.h"

namespace cb::engine {
namespace {

using kernels::DType;

constexpr size_t kChunk = size_t{1} << 16;  // elements per independently seeded chunk (even)
constexpr double kInitStd = 0.02;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t chunk_seed(uint64_t seed, uint64_t tensor_index, uint64_t chunk) {
  return splitmix64(splitmix64(splitmix64(seed) ^ tensor_index) ^ chunk);
}

bool is_norm(const std::string& name) { return name.find("norm.weight") != std::string::npos; }
bool is_output_projection(const std::string& name) {
  return name.find("o_proj.weight") != std::string::npos || name.find("down_proj.weight") != std::string::npos;
}

// Arithmetic below must round every operation (no fused multiply-add), or the numbers would
// depend on the build's target flags. The project builds for baseline x86-64 (no FMA), clang
// contracts only when asked, and GCC is told not to when a target with FMA is selected.
#if defined(__GNUC__) && !defined(__clang__) && defined(__FMA__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

double from_bits(uint64_t b) {
  double d;
  std::memcpy(&d, &b, 8);
  return d;
}

// Natural log of x in (0, 1]: x = 2^e * m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(t),
// t = (m - 1) / (m + 1), |t| < 0.172, series to t^17: relative error < 2e-15. Only IEEE basic
// operations, so the result is the same on every machine (libm's log may differ in the last bit).
double log_unit(double x) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  uint64_t b;
  std::memcpy(&b, &x, 8);
  double e = static_cast<double>(static_cast<int32_t>(b >> 52) - 1023);
  double m = from_bits((b & 0x000fffffffffffffull) | 0x3ff0000000000000ull);  // [1, 2)
  if (m > 1.41421356237309504880) {
    m *= 0.5;
    e += 1.0;
  }
  const double t = (m - 1.0) / (m + 1.0), t2 = t * t;
  double p = 1.0 / 17;
  p = p * t2 + 1.0 / 15;
  p = p * t2 + 1.0 / 13;
  p = p * t2 + 1.0 / 11;
  p = p * t2 + 1.0 / 9;
  p = p * t2 + 1.0 / 7;
  p = p * t2 + 1.0 / 5;
  p = p * t2 + 1.0 / 3;
  p = p * t2 + 1.0;
  return e * 0.69314718055994530942 + 2.0 * t * p;
}

// sin and cos of 2 pi u for u in [0, 1): exact quadrant reduction (u has 32 fraction bits), then
// Taylor series on [0, pi/2) to th^15 / th^16: absolute error < 1e-11.
void sincos_2pi(double u, double* sn, double* cs) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  const double q = u * 4.0;
  const int k = static_cast<int>(q);
  const double th = (q - k) * 1.57079632679489661923;
  const double x2 = th * th;
  double s = -1.0 / 1307674368000.0;
  s = s * x2 + 1.0 / 6227020800.0;
  s = s * x2 - 1.0 / 39916800.0;
  s = s * x2 + 1.0 / 362880.0;
  s = s * x2 - 1.0 / 5040.0;
  s = s * x2 + 1.0 / 120.0;
  s = s * x2 - 1.0 / 6.0;
  s = s * x2 + 1.0;
  s *= th;
  double c = 1.0 / 20922789888000.0;
  c = c * x2 - 1.0 / 87178291200.0;
  c = c * x2 + 1.0 / 479001600.0;
  c = c * x2 - 1.0 / 3628800.0;
  c = c * x2 + 1.0 / 40320.0;
  c = c * x2 - 1.0 / 720.0;
  c = c * x2 + 1.0 / 24.0;
  c = c * x2 - 0.5;
  c = c * x2 + 1.0;
  const double sa = (k & 1) ? c : s, ca = (k & 1) ? -s : c;  // angle k * pi/2 + th
  *sn = (k & 2) ? -sa : sa;
  *cs = (k & 2) ? -ca : ca;
}

// n normals with mean 0 and standard deviation `stddev`, passed to store(i, value): Box-Muller,
// one 64-bit draw per pair (32 bits each for radius and angle; |z| <= 6.66 std).
template <class Store>
void normal_chunk(uint64_t seed, size_t n, double stddev, Store store) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  std::mt19937_64 gen(seed);
  for (size_t i = 0; i < n; i += 2) {
    const uint64_t x = gen();
    const double u1 = 2.0 - from_bits(0x3ff0000000000000ull | ((x >> 32) << 20));                 // (0, 1]
    const double u2 = from_bits(0x3ff0000000000000ull | ((x & 0xffffffffull) << 20)) - 1.0;  // [0, 1)
    const double r = stddev * std::sqrt(-2.0 * log_unit(u1));
    double sn, cs;
    sincos_2pi(u2, &sn, &cs);
    store(i, static_cast<float>(r * cs));
    if (i + 1 < n) store(i + 1, static_cast<float>(r * sn));
  }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__FMA__)
#pragma GCC pop_options
#endif

void fill_tensor(uint64_t seed, uint64_t tensor_index, const std::string& name, DType dtype, void* dst,
                 size_t numel, int num_layers) {
  if (is_norm(name)) {
    for (size_t i = 0; i < numel; ++i) {
      switch (dtype) {
        case DType::F32: static_cast<float*>(dst)[i] = 1.f; break;
        case DType::F16: static_cast<uint16_t*>(dst)[i] = kernels::f32_to_f16(1.f); break;
        default: static_cast<uint16_t*>(dst)[i] = kernels::f32_to_bf16(1.f); break;
      }
    }
    return;
  }
  // GPT-2's scheme: projections that add into the residual stream get std / sqrt(2 * layers).
  const double stddev = is_output_projection(name) ? kInitStd / std::sqrt(2.0 * num_layers) : kInitStd;
  const auto chunks = static_cast<int64_t>((numel + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t base = static_cast<size_t>(c) * kChunk;
    const size_t n = std::min(kChunk, numel - base);
    const uint64_t s = chunk_seed(seed, tensor_index, static_cast<uint64_t>(c));
    switch (dtype) {
      case DType::F32: {
        float* out = static_cast<float*>(dst) + base;
        normal_chunk(s, n, stddev, [out](size_t i, float v) { out[i] = v; });
        break;
      }
      case DType::F16: {
        uint16_t* out = static_cast<uint16_t*>(dst) + base;
        normal_chunk(s, n, stddev, [out](size_t i, float v) { out[i] = kernels::f32_to_f16(v); });
        break;
      }
      default: {
        uint16_t* out = static_cast<uint16_t*>(dst) + base;
        normal_chunk(s, n, stddev, [out](size_t i, float v) { out[i] = kernels::f32_to_bf16(v); });
        break;
      }
    }
  }
}

const char* torch_dtype_of(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: return nullptr;
  }
}

void write_text_atomic(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw ModelError(path.string() + ": cannot create " + tmp.string());
    out << text;
    out.flush();
    if (!out) throw ModelError(path.string() + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw ModelError(path.string() + ": cannot rename into place: " + ec.message());
  }
}

}  // namespace

void write_random_model(const ModelConfig& cfg_in, uint64_t seed, const std::filesystem::path& out_dir,
                        DType dtype, bool overwrite) {
  namespace fs = std::filesystem;
  const char* torch_dtype = torch_dtype_of(dtype);
  if (!torch_dtype)
    throw ModelError(out_dir.string() + ": write_random_model: dtype " + kernels::dtype_name(dtype) +
                     " is unsupported (F32, F16 or BF16)");
  ModelConfig cfg = cfg_in;
  cfg.torch_dtype = torch_dtype;
  cfg.validate(out_dir.string() + ": write_random_model config");

  std::error_code ec;
  if (fs::exists(out_dir, ec) && !fs::is_directory(out_dir, ec))
    throw ModelError(out_dir.string() + ": exists and is not a directory");
  if (!overwrite) {
    for (const char* f : {"config.json", "model.safetensors", "model.safetensors.index.json"}) {
      if (fs::exists(out_dir / f, ec))
        throw ModelError(out_dir.string() + ": holds a model already (" + f + "); refusing to overwrite it");
    }
  }
  fs::create_directories(out_dir, ec);
  if (ec) throw ModelError(out_dir.string() + ": cannot create directory: " + ec.message());

  const std::vector<std::string> names = expected_tensor_names(cfg);
  std::vector<TensorSpec> specs;
  specs.reserve(names.size());
  for (const std::string& n : names) specs.push_back({n, dtype, expected_tensor_shape(cfg, n)});

  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"generator", "claimbench refengine init"}, {"seed", std::to_string(seed)}};
  write_safetensors_streamed(
      out_dir / "model.safetensors", specs,
      [&](size_t i, void* dst, size_t nbytes) {
        fill_tensor(seed, i, specs[i].name, dtype, dst, nbytes / kernels::dtype_size(dtype), cfg.num_hidden_layers);
      },
      metadata);
  write_text_atomic(out_dir / "config.json", cfg.to_json().dump(2) + "\n");
}

}  // namespace cb::engine
