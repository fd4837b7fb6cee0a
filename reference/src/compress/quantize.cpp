// INT8 PTQ: every targeted linear layer to per-channel symmetric INT8 (int8_scheme.h), the rest
// copied in its float dtype, written as a compressed-tensors "int-quantized" checkpoint.
#include "cb/engine/compress/quantize.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "cb/engine/compress/export.h"
#include "cb/engine/model/errors.h"
#include "cb/engine/model/weights.h"
#include "cb/kernels/int8_scheme.h"

namespace cb::engine::compress {
namespace fs = std::filesystem;
using kernels::DType;
using nlohmann::json;

Int8Scheme parse_int8_scheme(const std::string& s) {
  if (s == "w8a8") return Int8Scheme::W8A8;
  if (s == "w8a16") return Int8Scheme::W8A16;
  throw std::invalid_argument("--scheme '" + s + "' is unknown (expected w8a8 or w8a16)");
}

const char* int8_scheme_name(Int8Scheme s) { return s == Int8Scheme::W8A8 ? "w8a8" : "w8a16"; }

QuantizedMatrix quantize_per_channel(const float* w, int64_t n, int64_t k) {
  QuantizedMatrix m;
  m.n = n;
  m.k = k;
  m.q.resize(size_t(n * k));
  m.scales.resize(size_t(n));
  for (int64_t r = 0; r < n; ++r) m.scales[size_t(r)] = kernels::int8::quantize_row(w + r * k, k, m.q.data() + r * k);
  return m;
}

std::vector<float> dequantize(const QuantizedMatrix& m) {
  std::vector<float> w(m.q.size());
  for (int64_t r = 0; r < m.n; ++r)
    for (int64_t c = 0; c < m.k; ++c) w[size_t(r * m.k + c)] = float(m.q[size_t(r * m.k + c)]) * m.scales[size_t(r)];
  return w;
}

json QuantizeReport::to_json() const {
  json j = {{"scheme", int8_scheme_name(scheme)},
            {"source_dtype", source_dtype},
            {"source_model_file_bytes", source_bytes},
            {"output_model_file_bytes", output_bytes},
            {"size_ratio_vs_source", size_ratio_vs_source()},
            {"quantized_matrices", quantized_matrices},
            {"quantized_params", quantized_params},
            {"float_params", float_params},
            {"weight_rel_error_max", max_rel_error},
            {"weight_rel_error_mean", mean_rel_error},
            {"logits_vs_source", logits_vs_source}};
  if (fp32_bytes) {
    j["size_ratio_vs_fp32"] = size_ratio_vs_fp32();
  } else {
    j["size_ratio_vs_fp32"] = nullptr;
    j["not_measured"] = {{"size_ratio_vs_fp32", "the source is " + source_dtype + ", not float32"}};
  }
  return j;
}

QuantizeReport quantize_model(const fs::path& source, const fs::path& out, const QuantizeOptions& opt) {
  const SourceModel src = SourceModel::open(source);
  src.require_float_linears("quantize");
  prepare_output_dir(out, source, opt.overwrite);
  ModelConfig cfg = src.cfg;
  const bool dynamic = opt.scheme == Int8Scheme::W8A8;
  // A 2:4 model kept dense (zeros in place) stays 2:4 after quantization: q(0) = 0.
  json sparsity = cfg.compression.present() && !cfg.compression.sparsity_format.empty()
                      ? cfg.compression.raw.at("sparsity_config") : json();
  if (opt.quantize_lm_head && src.cfg.tie_word_embeddings)
    throw ModelError((source / "config.json").string() + ": key 'tie_word_embeddings': lm_head is the embedding, which stays "
                     "float; it cannot be quantized on its own");
  cfg.compression = CompressionConfig::from_json(int8_quantization_config(dynamic, sparsity, opt.quantize_lm_head), "quantize");

  QuantizeReport rep;
  rep.scheme = opt.scheme;
  rep.source_dtype = src.cfg.torch_dtype;

  // Output tensors: each quantized module's weight + weight_scale; every other tensor as stored.
  std::vector<TensorSpec> specs;
  const std::vector<std::string> linears = linear_module_names(src.cfg);
  for (const std::string& name : expected_tensor_names(src.cfg)) {
    const std::vector<int64_t> shape = src.store.info(name).shape;
    const std::string module = name.substr(0, name.size() - std::string(".weight").size());
    // "Linear" targets linear layers only: not the embedding, not the norms.
    const bool linear = std::find(linears.begin(), linears.end(), module) != linears.end();
    if (linear && cfg.compression.quantizes(module)) {
      specs.push_back({name, DType::I8, shape});
      specs.push_back({module + ".weight_scale", DType::F32, {shape[0], 1}});
      ++rep.quantized_matrices;
      rep.quantized_params += shape[0] * shape[1];
    } else {
      specs.push_back({name, src.dtype(name), shape});
      int64_t numel = 1;
      for (int64_t d : shape) numel *= d;
      rep.float_params += numel;
    }
  }

  // Each tensor is produced when the writer asks for it, one matrix in memory at a time. The scales
  // (F32, written before the I8 values) are int8::row_scale of each row, the same as
  // quantize_row computes when the values are written.
  double err_sum = 0;
  const std::string scale_suffix = ".weight_scale", weight_suffix = ".weight";
  write_model_dir(
      out, cfg.to_json(), specs,
      [&](const TensorSpec& spec, void* dst, size_t nbytes) {
        const std::string& n = spec.name;
        const bool is_scale =
            n.size() > scale_suffix.size() && n.compare(n.size() - scale_suffix.size(), scale_suffix.size(), scale_suffix) == 0;
        if (is_scale) {
          const std::string w = n.substr(0, n.size() - scale_suffix.size()) + weight_suffix;
          const std::vector<float> v = src.read_f32(w);
          const int64_t N = spec.shape[0], K = int64_t(v.size()) / N;
          for (int64_t r = 0; r < N; ++r) static_cast<float*>(dst)[r] = kernels::int8::row_scale(v.data() + r * K, K);
        } else if (spec.dtype == DType::I8) {
          const std::vector<float> w = src.read_f32(n);
          const QuantizedMatrix m = quantize_per_channel(w.data(), spec.shape[0], spec.shape[1]);
          std::memcpy(dst, m.q.data(), nbytes);
          const std::vector<float> back = dequantize(m);
          double num = 0, den = 0;
          for (size_t i = 0; i < w.size(); ++i) {
            num += double(w[i] - back[i]) * double(w[i] - back[i]);
            den += double(w[i]) * w[i];
          }
          const double rel = den > 0 ? std::sqrt(num / den) : 0;
          rep.max_rel_error = std::max(rep.max_rel_error, rel);
          err_sum += rel;
        } else {
          std::memcpy(dst, src.store.view(n).data, nbytes);
        }
      },
      {{"format", "pt"}, {"generator", "claimbench refengine quantize"}});
  rep.mean_rel_error = rep.quantized_matrices ? err_sum / rep.quantized_matrices : 0;
  rep.source_bytes = model_file_bytes(source);
  rep.output_bytes = model_file_bytes(out);
  if (src.cfg.torch_dtype == "float32") rep.fp32_bytes = rep.source_bytes;
  rep.logits_vs_source = compare_logits_default(source, out, src.cfg, opt.eval_backend);

  write_compression_json(out, {{"method", "int8-ptq"},
                               {"tool", "refengine quantize"},
                               {"scheme",
                                {{"weights", "int8 symmetric per output channel, scale = max|w| / 127, static"},
                                 {"activations", dynamic ? "int8 symmetric per token, dynamic (computed at run time)"
                                                         : "float (weight-only W8A16)"},
                                 {"kept_float", opt.quantize_lm_head ? "embeddings, norms" : "embeddings, norms, lm_head"},
                                 {"format", "compressed-tensors int-quantized"}}},
                               {"source", provenance(src)},
                               {"result", rep.to_json()}});
  return rep;
}

}  // namespace cb::engine::compress
