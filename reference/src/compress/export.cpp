// Shared parts of the compression commands: source models as floats, output directories,
// compression.json, and the compressed-tensors config blocks (see compress/export.h).
#include "cb/engine/compress/export.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "cb/engine/compress/calibrate.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/model/errors.h"
#include "cb/engine/model/weights.h"

namespace cb::engine::compress {
namespace fs = std::filesystem;
using kernels::DType;
using nlohmann::json;

SourceModel SourceModel::open(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw ModelError(dir.string() + ": model directory does not exist");
  SourceModel s;
  s.dir = dir;
  s.cfg = ModelConfig::load(dir / "config.json");
  s.store = WeightStore::open_dir(dir);
  return s;
}

std::vector<float> SourceModel::read_f32(const std::string& name) const {
  const TensorInfo& ti = store.info(name);
  const kernels::Tensor t = store.view(name);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  switch (ti.dtype) {
    case DType::F32: std::memcpy(out.data(), t.data, out.size() * 4); break;
    case DType::F16:
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, static_cast<const char*>(t.data) + 2 * i, 2);
        out[i] = kernels::f16_to_f32(h);
      }
      break;
    case DType::BF16:
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, static_cast<const char*>(t.data) + 2 * i, 2);
        out[i] = kernels::bf16_to_f32(h);
      }
      break;
    default:
      throw ModelError(store.path_of(name).string() + ": tensor '" + name + "': dtype " + safetensors_dtype_name(ti.dtype) +
                       " is not a float dtype (F32, F16 or BF16)");
  }
  return out;
}

void SourceModel::require_float_linears(const std::string& command) const {
  const CompressionConfig& c = cfg.compression;
  if (c.int8_weights)
    throw ModelError((dir / "config.json").string() + ": key 'quantization_config': the model is INT8 already; " + command +
                     " needs float weights (run it on the model before quantization)");
  if (c.sparsity_format == "sparse-24-bitmask")
    throw ModelError((dir / "config.json").string() + ": key 'quantization_config.sparsity_config.format': the model is stored "
                     "as sparse-24-bitmask; " + command + " needs dense float weights (prune with --format dense)");
  // Every weight must be there, with the config's shapes, in a float dtype.
  for (const std::string& n : expected_tensor_names(cfg)) {
    if (!store.has(n)) throw ModelError(store.path_of(n).string() + ": tensor '" + n + "': missing");
    const TensorInfo& ti = store.info(n);
    if (ti.shape != expected_tensor_shape(cfg, n))
      throw ModelError(store.path_of(n).string() + ": tensor '" + n + "': shape disagrees with the config");
    if (ti.dtype != DType::F32 && ti.dtype != DType::F16 && ti.dtype != DType::BF16)
      throw ModelError(store.path_of(n).string() + ": tensor '" + n + "': dtype " + safetensors_dtype_name(ti.dtype) +
                       " is not a float dtype");
  }
}

uint64_t model_file_bytes(const fs::path& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    const bool is_model = name == "config.json" || name == "model.safetensors.index.json" ||
                          (name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0);
    if (is_model) total += e.file_size();
  }
  return total;
}

void prepare_output_dir(const fs::path& out, const fs::path& source, bool overwrite) {
  std::error_code ec;
  if (fs::exists(out, ec) && fs::exists(source, ec) && fs::equivalent(out, source, ec))
    throw ModelError(out.string() + ": is the source model directory; give another --out");
  if (fs::exists(out, ec) && !fs::is_directory(out, ec)) throw ModelError(out.string() + ": exists and is not a directory");
  if (!overwrite) {
    for (const char* f : {"config.json", "model.safetensors", "model.safetensors.index.json"})
      if (fs::exists(out / f, ec))
        throw ModelError(out.string() + ": holds a model already (" + f + "); refusing to overwrite it (--overwrite)");
  }
  fs::create_directories(out, ec);
  if (ec) throw ModelError(out.string() + ": cannot create directory: " + ec.message());
  // A stale shard index would make loaders pick the old shards over the new single file.
  fs::remove(out / "model.safetensors.index.json", ec);
}

void write_text_atomic(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
    if (!o) throw ModelError(path.string() + ": cannot create " + tmp.string());
    o << text;
    o.flush();
    if (!o) throw ModelError(path.string() + ": write failed");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw ModelError(path.string() + ": cannot rename into place: " + ec.message());
  }
}

void write_model_dir(const fs::path& out, const json& config, std::vector<TensorSpec> specs,
                     const std::function<void(const TensorSpec&, void*, size_t)>& fill,
                     const std::map<std::string, std::string>& metadata) {
  std::stable_sort(specs.begin(), specs.end(), [](const TensorSpec& a, const TensorSpec& b) {
    return kernels::dtype_size(a.dtype) > kernels::dtype_size(b.dtype);
  });
  write_safetensors_streamed(out / "model.safetensors", specs, [&](size_t i, void* dst, size_t n) { fill(specs[i], dst, n); },
                             metadata);
  // The config goes last: a directory with a config.json is a finished model.
  write_text_atomic(out / "config.json", config.dump(2) + "\n");
}

void write_compression_json(const fs::path& out, json record) {
  json r = {{"schema", "claimbench.compression"}, {"schema_version", "1.0"}};
  r.update(record);
  write_text_atomic(out / "compression.json", r.dump(2) + "\n");
}

json provenance(const SourceModel& src) {
  // FNV-1a over the safetensors bytes of every shard, in name order.
  uint64_t h = 0xcbf29ce484222325ull;
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(src.dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0)
      files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  std::vector<char> buf(1 << 20);
  for (const std::string& f : files) {
    std::ifstream in(src.dir / f, std::ios::binary);
    while (in) {
      in.read(buf.data(), std::streamsize(buf.size()));
      const std::streamsize got = in.gcount();
      for (std::streamsize i = 0; i < got; ++i) {
        h ^= static_cast<unsigned char>(buf[size_t(i)]);
        h *= 0x100000001b3ull;
      }
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return {{"dir", fs::absolute(src.dir).lexically_normal().string()},
          {"model_file_bytes", model_file_bytes(src.dir)},
          {"torch_dtype", src.cfg.torch_dtype},
          {"safetensors_fnv1a64", hex},
          {"parameters", src.cfg.parameter_count()}};
}

json int8_quantization_config(bool dynamic_activations, const json& sparsity_config, bool quantize_lm_head) {
  // QuantizationArgs fields; the ones left out (observer, observer_kwargs, scale_dtype, zp_dtype)
  // only matter while calibrating.
  json weights = {{"num_bits", 8},       {"type", "int"},         {"symmetric", true},        {"strategy", "channel"},
                  {"dynamic", false},    {"group_size", nullptr}, {"block_structure", nullptr}, {"actorder", nullptr}};
  json acts = nullptr;
  if (dynamic_activations)
    acts = {{"num_bits", 8},    {"type", "int"},         {"symmetric", true},          {"strategy", "token"},
            {"dynamic", true},  {"group_size", nullptr}, {"block_structure", nullptr}, {"actorder", nullptr}};
  json q = {{"quant_method", "compressed-tensors"},
            {"format", "int-quantized"},
            {"quantization_status", "compressed"},
            {"config_groups",
             {{"group_0",
               {{"targets", {"Linear"}},
                {"weights", weights},
                {"input_activations", acts},
                {"output_activations", nullptr},
                {"format", "int-quantized"}}}}},
            {"ignore", quantize_lm_head ? json::array() : json::array({"lm_head"})},
            {"kv_cache_scheme", nullptr},
            {"global_compression_ratio", nullptr}};
  if (!sparsity_config.is_null()) q["sparsity_config"] = sparsity_config;
  return q;
}

json sparsity_config_json(const std::string& format, double global_sparsity) {
  return {{"format", format},
          {"sparsity_structure", "2:4"},
          {"global_sparsity", global_sparsity},
          {"targets", {"Linear"}},
          {"ignore", {"lm_head"}}};
}

// No "format" or "config_groups": compressed-tensors reads a block that holds only quant_method and
// sparsity_config as "sparse, not quantized".
json sparsity_only_quantization_config(const json& sparsity_config) {
  return {{"quant_method", "compressed-tensors"}, {"sparsity_config", sparsity_config}};
}

void store_f32(const float* src, size_t n, DType dtype, void* dst) {
  switch (dtype) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = kernels::f32_to_f16(src[i]);
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = kernels::f32_to_bf16(src[i]);
      return;
    default: throw ModelError(std::string("store_f32: dtype ") + kernels::dtype_name(dtype) + " is not a float dtype");
  }
}

json compare_logits(const fs::path& a, const fs::path& b, const std::string& backend, const std::vector<int32_t>& tokens) {
  json r = {{"backend", backend}, {"tokens", tokens.size()}};
  try {
    auto run = [&](const fs::path& dir) {
      auto lm = LoadedModel::open(dir, backend);
      KvCache kv(lm->backend(), lm->config(), int((tokens.size() + 15) / 16), 16);
      const std::vector<int32_t> table = KvCache::sequential_table(kv.num_blocks());
      return lm->model().forward({SeqStep{tokens, 0, table, true}}, kv);
    };
    const std::vector<float> la = run(a), lb = run(b);
    if (la.size() != lb.size()) throw std::runtime_error("the models' vocabularies differ");
    double num = 0, den = 0, max_abs = 0;
    for (size_t i = 0; i < la.size(); ++i) {
      const double d = double(lb[i]) - double(la[i]);
      num += d * d;
      den += double(la[i]) * la[i];
      max_abs = std::max(max_abs, std::fabs(d));
    }
    r["rel_error"] = den > 0 ? std::sqrt(num / den) : 0.0;
    r["max_abs_diff"] = max_abs;
  } catch (const std::exception& e) {
    r["not_measured"] = e.what();
  }
  return r;
}

json compare_logits_default(const fs::path& a, const fs::path& b, const ModelConfig& cfg, const std::string& backend) {
  if (backend.empty()) return nullptr;
  CalibrationOptions c;
  c.tokens = c.seq_len = std::min(64, cfg.max_position_embeddings);
  return compare_logits(a, b, backend, calibration_sequences(cfg, c).at(0));
}

}  // namespace cb::engine::compress
