// `refengine quantize` (INT8 PTQ + compressed-tensors export) and `refengine prune` (2:4 or
// structured), each printing what it did and writing compression.json next to the model.
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "cb/engine/compress/export.h"
#include "cb/engine/compress/prune.h"
#include "cb/engine/compress/quantize.h"
#include "cb/engine/model/engine.h"
#include "commands.h"

namespace cb::cli {
namespace {
namespace fs = std::filesystem;
namespace cp = engine::compress;

std::string mib(uint64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%llu bytes (%.2f MiB)", static_cast<unsigned long long>(bytes), double(bytes) / (1 << 20));
  return buf;
}

void print_logits(const nlohmann::json& j) {
  if (j.is_null()) return;
  if (j.contains("not_measured")) {
    std::printf("  logits vs source: not measured on backend %s: %s\n", j["backend"].get<std::string>().c_str(),
                j["not_measured"].get<std::string>().c_str());
  } else {
    std::printf("  logits vs source (%s backend, %d tokens, all positions): rel. L2 error %.4g, max |diff| %.4g\n",
                j["backend"].get<std::string>().c_str(), j["tokens"].get<int>(), j["rel_error"].get<double>(),
                j["max_abs_diff"].get<double>());
  }
}

void add_calibration_options(CLI::App* c, cp::CalibrationOptions& o) {
  c->add_option("--calib-text", o.text_file, "calibration text file for wanda scores (default: built-in seeded text)");
  c->add_option("--calib-tokens", o.tokens, "calibration tokens")->check(CLI::PositiveNumber);
  c->add_option("--calib-seq-len", o.seq_len, "tokens per calibration sequence")->check(CLI::PositiveNumber);
  c->add_option("--calib-seed", o.seed, "seed that picks the calibration windows");
}

void add_quantize(CLI::App& app) {
  struct Opts {
    std::string model, out, scheme = "w8a8", eval_backend = "cpu";
    bool overwrite = false, lm_head = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("quantize", "INT8 post-training quantization, exported as compressed-tensors int-quantized");
  c->add_option("--model", o->model, "float model directory (default: the embedded default model)");
  c->add_option("--out", o->out, "output model directory")->required();
  c->add_option("--scheme", o->scheme, "w8a8 (int8 weights + per-token dynamic int8 activations) | w8a16 (weights only)");
  c->add_option("--eval-backend", o->eval_backend, "backend for the logits check against the source ('' = skip)");
  c->add_flag("--quantize-lm-head", o->lm_head, "quantize lm_head too (default: it stays float)");
  c->add_flag("--overwrite", o->overwrite, "replace a model already in --out");
  c->callback([o] {
    run_guarded("quantize", [&] {
      const fs::path src = o->model.empty() ? engine::default_model_dir() : fs::path(o->model);
      cp::QuantizeOptions q;
      q.scheme = cp::parse_int8_scheme(o->scheme);
      q.overwrite = o->overwrite;
      q.eval_backend = o->eval_backend;
      q.quantize_lm_head = o->lm_head;
      const cp::QuantizeReport r = cp::quantize_model(src, o->out, q);
      std::printf("quantized %s -> %s (%s: int8 symmetric per-channel weights, %s)\n", src.c_str(), o->out.c_str(),
                  cp::int8_scheme_name(r.scheme),
                  r.scheme == cp::Int8Scheme::W8A8 ? "int8 per-token dynamic activations" : "float activations");
      std::printf("  %d linear layers, %lld parameters -> int8; %lld parameters kept %s (embeddings, norms%s)\n",
                  r.quantized_matrices, static_cast<long long>(r.quantized_params), static_cast<long long>(r.float_params),
                  r.source_dtype.c_str(), o->lm_head ? "" : ", lm_head");
      std::printf("  weight error ||W - deq(Q)||_F / ||W||_F per matrix: max %.4g, mean %.4g\n", r.max_rel_error, r.mean_rel_error);
      std::printf("  model file bytes: source %s, int8 export %s: %.3fx smaller than the source\n", mib(r.source_bytes).c_str(),
                  mib(r.output_bytes).c_str(), r.size_ratio_vs_source());
      if (r.fp32_bytes)
        std::printf("  size ratio vs FP32 (file bytes): %.3fx\n", r.size_ratio_vs_fp32());
      else
        std::printf("  size ratio vs FP32: not measured (the source is %s)\n", r.source_dtype.c_str());
      print_logits(r.logits_vs_source);
      std::printf("  wrote %s/model.safetensors, config.json (quantization_config: compressed-tensors int-quantized), "
                  "compression.json\n", o->out.c_str());
    });
  });
}

void add_prune(CLI::App& app) {
  struct Opts {
    std::string model, out, method, scores = "magnitude", format, eval_backend = "cpu";
    double target = 0.6;
    int context = 128, mlp_multiple = 4, kv_groups = 0;
    bool overwrite = false;
    cp::CalibrationOptions calib;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("prune", "2:4 semi-structured or structured (heads + MLP channels) pruning");
  c->add_option("--model", o->model, "float model directory (default: the embedded default model)");
  c->add_option("--out", o->out, "output model directory")->required();
  c->add_option("--method", o->method, "2:4 | structured")->required();
  c->add_option("--scores", o->scores, "magnitude | wanda (activation-aware, calibration forward pass)");
  c->add_option("--format", o->format, "2:4 only: dense (zeros kept, for fine-tuning) | compressed (sparse-24-bitmask); default dense");
  auto* target = c->add_option("--target-flop-reduction", o->target,
                                "structured only: fraction of FLOPs/token to remove, in (0, 1); default 0.6");
  c->add_option("--context", o->context, "structured only: context length at which attention FLOPs are counted (default 128)");
  c->add_option("--mlp-multiple", o->mlp_multiple, "structured only: kept MLP channels are a multiple of this (default 4)");
  c->add_option("--keep-kv-groups", o->kv_groups, "structured only: KV groups kept per layer (default: chosen with the channels)");
  c->add_option("--eval-backend", o->eval_backend, "backend for the logits check against the source ('' = skip)");
  c->add_flag("--overwrite", o->overwrite, "replace a model already in --out");
  add_calibration_options(c, o->calib);
  c->callback([o, target] {
    run_guarded("prune", [&] {
      const fs::path src = o->model.empty() ? engine::default_model_dir() : fs::path(o->model);
      const cp::ScoreMethod scores = cp::parse_score_method(o->scores);
      if (o->method == "2:4") {
        if (target->count() > 0) throw std::invalid_argument("--target-flop-reduction applies to --method structured, not 2:4");
        if (o->format.empty()) o->format = "dense";
        if (o->format != "dense" && o->format != "compressed")
          throw std::invalid_argument("--format '" + o->format + "' is unknown (expected dense or compressed)");
        cp::Prune24Options p;
        p.scores = scores;
        p.compressed = o->format == "compressed";
        p.calib = o->calib;
        p.overwrite = o->overwrite;
        p.eval_backend = o->eval_backend;
        const cp::Prune24Report r = cp::prune_24_model(src, o->out, p);
        std::printf("pruned %s -> %s: 2:4 along K, %s scores, %s format\n", src.c_str(), o->out.c_str(),
                    cp::score_method_name(r.scores), r.compressed ? "compressed (sparse-24-bitmask)" : "dense (zeros kept)");
        std::printf("  %d linear layers, %lld weights: exactly 2 of every 4 kept; %lld of %lld parameters are now zero "
                    "(global sparsity %.4f; lm_head, embeddings, norms dense)\n",
                    r.pruned_matrices, static_cast<long long>(r.pruned_params), static_cast<long long>(r.pruned_params / 2),
                    static_cast<long long>(r.total_params), r.global_sparsity);
        std::printf("  model file bytes: source %s, output %s (%.3fx)\n", mib(r.source_bytes).c_str(), mib(r.output_bytes).c_str(),
                    r.output_bytes ? double(r.source_bytes) / double(r.output_bytes) : 0.0);
        print_logits(r.logits_vs_source);
      } else if (o->method == "structured") {
        if (!o->format.empty()) throw std::invalid_argument("--format applies to --method 2:4; structured pruning writes a smaller dense model");
        cp::StructuredOptions p;
        p.scores = scores;
        p.target_flop_reduction = o->target;
        p.context = o->context;
        p.mlp_multiple = o->mlp_multiple;
        p.kv_groups = o->kv_groups;
        p.calib = o->calib;
        p.overwrite = o->overwrite;
        p.eval_backend = o->eval_backend;
        const cp::StructuredReport r = cp::prune_structured_model(src, o->out, p);
        std::printf("pruned %s -> %s: structured (KV groups of heads + MLP channels), %s scores, target FLOP reduction %.3g\n",
                    src.c_str(), o->out.c_str(), cp::score_method_name(scores), r.target);
        std::printf("  heads %d -> %d (KV heads %d -> %d, head_dim %d), intermediate_size %d -> %d, parameters %lld -> %lld\n",
                    r.dense.num_attention_heads, r.pruned.num_attention_heads, r.dense.num_key_value_heads,
                    r.pruned.num_key_value_heads, r.pruned.head_dim(), r.dense.intermediate_size, r.pruned.intermediate_size,
                    static_cast<long long>(r.dense.parameter_count()), static_cast<long long>(r.pruned.parameter_count()));
        std::printf("  FLOPs/token, matmuls only (2*N*K incl. lm_head): %lld -> %lld (reduction %.4f)\n",
                    static_cast<long long>(r.dense_flops.matmul), static_cast<long long>(r.pruned_flops.matmul),
                    r.matmul_flop_reduction());
        std::printf("  FLOPs/token incl. attention at context %d: %lld -> %lld (reduction %.4f, target %.4g)\n", r.dense_flops.context,
                    static_cast<long long>(r.dense_flops.total()), static_cast<long long>(r.pruned_flops.total()),
                    r.flop_reduction(), r.target);
        std::printf("  model file bytes: source %s, output %s\n", mib(r.source_bytes).c_str(), mib(r.output_bytes).c_str());
        print_logits(r.logits_vs_source);
      } else {
        throw std::invalid_argument("--method '" + o->method + "' is unknown (expected 2:4 or structured)");
      }
      std::printf("  wrote %s/model.safetensors, config.json, compression.json\n", o->out.c_str());
    });
  });
}

}  // namespace

void add_compress_commands(CLI::App& app) {
  add_quantize(app);
  add_prune(app);
}

}  // namespace cb::cli
