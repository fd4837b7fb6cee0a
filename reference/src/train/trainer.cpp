// The training loop (train/trainer.h): build or load the model, stream seeded task batches,
// forward + backward, clip, AdamW, log, write the model directory, evaluate it.
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <cstdio>
#include <fstream>
#include <stdexcept>

#include "cb/engine/model/errors.h"
#include "cb/engine/model/model_init.h"
#include "cb/engine/model/safetensors.h"
#include "cb/engine/model/thread_scope.h"
#include "cb/engine/train/graph.h"
#include "cb/engine/train/optim.h"
#include "cb/engine/train/trainer.h"
#include "cb/engine/model/weights.h"

namespace cb::engine::train {
namespace fs = std::filesystem;
using kernels::DType;

namespace {

double cpu_seconds_now() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Any float dtype of a stored tensor, widened to f32.
void read_as_f32(const kernels::Tensor& t, float* dst, const std::string& where) {
  const int64_t n = t.numel();
  switch (t.dtype) {
    case DType::F32: std::copy_n(t.as<const float>(), n, dst); return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = kernels::f16_to_f32(t.as<const uint16_t>()[i]);
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = kernels::bf16_to_f32(t.as<const uint16_t>()[i]);
      return;
    default:
      throw ModelError(where + ": dtype " + kernels::dtype_name(t.dtype) + " cannot be trained (F32, F16 or BF16)");
  }
}

// A bound weight in any layout the engine loads, as a dense f32 [n, k] matrix: INT8 per-channel
// dequantized (q * scale), 2:4 sparse expanded (meta byte i0 | i1 << 2 places a group's two kept
// values; the other two are zero).
void weight_as_f32(const kernels::Weight& w, float* dst, const std::string& where) {
  const int64_t N = w.n, K = w.k;
  switch (w.layout) {
    case kernels::WeightLayout::Dense: return read_as_f32(w.values, dst, where);
    case kernels::WeightLayout::Int8PerChannel:
      for (int64_t r = 0; r < N; ++r)
        for (int64_t c = 0; c < K; ++c)
          dst[r * K + c] = float(w.values.as<const int8_t>()[r * K + c]) * w.scales.as<const float>()[r];
      return;
    case kernels::WeightLayout::Sparse24: {
      std::vector<float> kept(size_t(N * K / 2));
      read_as_f32(w.values, kept.data(), where);
      std::fill(dst, dst + N * K, 0.f);
      const auto* meta = static_cast<const uint8_t*>(w.meta.data);
      for (int64_t r = 0; r < N; ++r)
        for (int64_t g = 0; g < K / 4; ++g) {
          const uint8_t m = meta[r * (K / 4) + g];
          dst[r * K + 4 * g + (m & 3)] = kept[size_t(r * (K / 2) + 2 * g)];
          dst[r * K + 4 * g + ((m >> 2) & 3)] = kept[size_t(r * (K / 2) + 2 * g + 1)];
        }
      return;
    }
  }
  throw ModelError(where + ": unknown weight layout");
}

// Parameters of the model in dir (any storage the engine loads), in the layout of its config.
std::vector<float> load_params(const fs::path& dir, const ParamLayout& L) {
  const WeightStore store = WeightStore::open_dir(dir);
  const ModelWeights w = bind_weights(store, L.cfg);
  std::vector<float> p(L.total);
  auto at = [&](const std::string& name) { return p.data() + L.find(name).offset; };
  auto where = [&](const std::string& name) { return store.path_of(name).string() + ": tensor '" + name + "'"; };
  read_as_f32(w.embed, at("model.embed_tokens.weight"), where("model.embed_tokens.weight"));
  read_as_f32(w.final_norm, at("model.norm.weight"), where("model.norm.weight"));
  if (!L.cfg.tie_word_embeddings) weight_as_f32(w.lm_head, at("lm_head.weight"), where("lm_head"));
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& lw = w.layers[l];
    const std::string pre = "model.layers." + std::to_string(l) + ".";
    read_as_f32(lw.attn_norm, at(pre + "input_layernorm.weight"), where(pre + "input_layernorm.weight"));
    read_as_f32(lw.ffn_norm, at(pre + "post_attention_layernorm.weight"), where(pre + "post_attention_layernorm.weight"));
    const std::pair<const kernels::Weight*, const char*> lin[] = {
        {&lw.wq, "self_attn.q_proj"}, {&lw.wk, "self_attn.k_proj"}, {&lw.wv, "self_attn.v_proj"}, {&lw.wo, "self_attn.o_proj"},
        {&lw.w_gate, "mlp.gate_proj"}, {&lw.w_up, "mlp.up_proj"},  {&lw.w_down, "mlp.down_proj"}};
    for (const auto& [wt, name] : lin) weight_as_f32(*wt, at(pre + name + ".weight"), where(pre + name));
  }
  return p;
}

void write_text(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw ModelError(path.string() + ": cannot create");
    out << text;
    if (!out.flush()) throw ModelError(path.string() + ": write failed");
  }
  fs::rename(tmp, path);
}

void write_model(const fs::path& dir, const ParamLayout& L, const std::vector<float>& p, DType dtype,
                 const std::map<std::string, std::string>& metadata) {
  ModelConfig cfg = L.cfg;
  cfg.torch_dtype = dtype == DType::BF16 ? "bfloat16" : "float32";
  std::vector<TensorSpec> specs;
  for (const ParamTensor& t : L.tensors) specs.push_back({t.name, dtype, t.shape});
  write_safetensors_streamed(
      dir / "model.safetensors", specs,
      [&](size_t i, void* dst, size_t) {
        const ParamTensor& t = L.tensors[i];
        if (dtype == DType::F32) {
          std::copy_n(p.data() + t.offset, t.numel, static_cast<float*>(dst));
        } else {
          for (size_t k = 0; k < t.numel; ++k) static_cast<uint16_t*>(dst)[k] = kernels::f32_to_bf16(p[t.offset + k]);
        }
      },
      metadata);
  write_text(dir / "config.json", cfg.to_json().dump(2) + "\n");
}

void validate(const TrainOptions& o) {
  auto bad = [](const std::string& field, const std::string& why) { throw std::invalid_argument("train option " + field + ": " + why); };
  if (o.out_dir.empty()) bad("out_dir", "is empty");
  if (o.steps <= 0) bad("steps", "must be > 0 (got " + std::to_string(o.steps) + ")");
  if (o.batch <= 0) bad("batch", "must be > 0 (got " + std::to_string(o.batch) + ")");
  if (!(o.lr > 0)) bad("lr", "must be > 0 (got " + std::to_string(o.lr) + ")");
  if (o.min_lr_ratio < 0 || o.min_lr_ratio > 1) bad("min_lr_ratio", "must be in [0, 1]");
  if (o.weight_decay < 0) bad("weight_decay", "must be >= 0");
  if (o.beta1 < 0 || o.beta1 >= 1 || o.beta2 < 0 || o.beta2 >= 1) bad("beta1/beta2", "must be in [0, 1)");
  if (o.grad_clip < 0) bad("grad_clip", "must be >= 0");
  if (o.threads < 0) bad("threads", "must be >= 0");
  if (o.log_every <= 0) bad("log_every", "must be > 0");
  if (o.eval_examples < 0 || o.eval_every < 0 || o.eval_every_examples <= 0) bad("eval_*", "must be >= 0 (examples > 0)");
  if (o.out_dtype != DType::F32 && o.out_dtype != DType::BF16)
    bad("out_dtype", std::string(kernels::dtype_name(o.out_dtype)) + " is unsupported (F32 or BF16)");
  for (const auto& t : o.tasks) check_task_name(t);
}

// Model weights as views of the live parameter buffer, for evaluating during training.
ModelWeights weights_view(const ParamLayout& L, float* p) {
  auto t = [&](size_t off, std::initializer_list<int64_t> dims) { return kernels::Tensor(p + off, DType::F32, dims); };
  const ModelConfig& c = L.cfg;
  const int64_t D = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), F = c.intermediate_size, V = c.vocab_size;
  ModelWeights w;
  w.embed = t(L.embed, {V, D});
  w.final_norm = t(L.final_norm, {D});
  w.lm_head = kernels::Weight::dense(t(L.lm_head, {V, D}));
  for (const LayerOffsets& o : L.layers) {
    LayerWeights lw;
    lw.attn_norm = t(o.attn_norm, {D});
    lw.ffn_norm = t(o.ffn_norm, {D});
    lw.wq = kernels::Weight::dense(t(o.wq, {Q, D}));
    lw.wk = kernels::Weight::dense(t(o.wk, {KV, D}));
    lw.wv = kernels::Weight::dense(t(o.wv, {KV, D}));
    lw.wo = kernels::Weight::dense(t(o.wo, {D, Q}));
    lw.w_gate = kernels::Weight::dense(t(o.w_gate, {F, D}));
    lw.w_up = kernels::Weight::dense(t(o.w_up, {F, D}));
    lw.w_down = kernels::Weight::dense(t(o.w_down, {D, F}));
    w.layers.push_back(lw);
  }
  w.bytes = L.total * sizeof(float);
  return w;
}

// The distinct tasks of a (possibly weighted, i.e. repeating) task list, in first-seen order.
std::vector<std::string> distinct(const std::vector<std::string>& tasks) {
  std::vector<std::string> out;
  for (const auto& t : tasks)
    if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
  return out;
}

}  // namespace

nlohmann::json TrainLogRecord::to_json() const {
  nlohmann::json j = {{"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", grad_norm}, {"seconds", seconds}, {"tokens", tokens}};
  if (!eval.is_null()) j["eval"] = eval;
  return j;
}

ModelConfig train_preset_config(const std::string& name) {
  if (name == "default") {
    ModelConfig c = preset_config("tiny");  // byte vocabulary, 16K context, norms and RoPE as tiny
    c.hidden_size = 128;
    c.intermediate_size = 384;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.tie_word_embeddings = false;
    return c;
  }
  const auto names = train_preset_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown model preset '" + name + "' (known: " + known + ")");
  }
  return preset_config(name);
}

std::vector<std::string> train_preset_names() {
  std::vector<std::string> n = {"default"};
  for (const auto& p : preset_names()) n.push_back(p);
  return n;
}

TrainResult train_model(const TrainOptions& opt, const ProgressFn& progress) {
  validate(opt);
  ThreadScope threads(opt.threads);
  std::error_code ec;
  if (!opt.overwrite)
    for (const char* f : {"config.json", "model.safetensors", "model.safetensors.index.json"})
      if (fs::exists(opt.out_dir / f, ec))
        throw ModelError(opt.out_dir.string() + ": holds a model already (" + f + "); refusing to overwrite it");
  fs::create_directories(opt.out_dir, ec);
  if (ec) throw ModelError(opt.out_dir.string() + ": cannot create directory: " + ec.message());

  // The starting point: an existing model, or a fresh one seeded exactly as `refengine init` writes it.
  ModelConfig cfg;
  std::vector<float> params;
  if (!opt.init_from.empty()) {
    cfg = ModelConfig::load(opt.init_from / "config.json");
    params = load_params(opt.init_from, ParamLayout(cfg));
  } else {
    cfg = train_preset_config(opt.preset);
    const fs::path tmp = opt.out_dir / ".init";
    write_random_model(cfg, opt.seed, tmp, DType::F32, true);
    params = load_params(tmp, ParamLayout(cfg));
    fs::remove_all(tmp, ec);
  }
  // The trained weights are written dense float: a quantization or bitmask-compressed storage of
  // the start does not carry over (compress it again afterwards). Zeros kept in dense
  // tensors ("dense" sparsity format) stay described when keep_zeros keeps them.
  const bool keep_sparsity = opt.keep_zeros && !cfg.compression.int8_weights && cfg.compression.sparsity_format == "dense";
  if (!keep_sparsity) cfg.compression = CompressionConfig{};
  const ParamLayout L(cfg);
  std::vector<uint8_t> frozen;
  if (opt.keep_zeros) {
    frozen.resize(L.total);
    for (size_t i = 0; i < L.total; ++i) frozen[i] = params[i] == 0.f;
  }

  std::unique_ptr<kernels::Backend> gemm_be;
  if (opt.gemm_backend != "plain") gemm_be = kernels::make_backend(opt.gemm_backend);
  Gemm gemm(gemm_be.get());
  TrainGraph<float> graph(L, gemm);
  AdamW adam(L, {opt.beta1, opt.beta2, opt.adam_eps, opt.weight_decay}, frozen);
  std::vector<float> grads(L.total);
  TaskStream stream(opt.seed, Split::Train, opt.tasks, opt.shape);
  const QatOptions qat{opt.qat, opt.qat_lm_head};
  const int warmup = opt.warmup_steps >= 0 ? std::min(opt.warmup_steps, opt.steps) : opt.steps / 20;

  TrainResult res;
  res.out_dir = opt.out_dir;
  res.config = cfg;
  res.parameters = int64_t(L.total);
  std::ofstream log(opt.out_dir / "train_log.jsonl", std::ios::trunc);
  if (!log) throw ModelError((opt.out_dir / "train_log.jsonl").string() + ": cannot create");
  log << nlohmann::json{{"config", cfg.to_json()},
                        {"options",
                         {{"preset", opt.init_from.empty() ? opt.preset : ""}, {"init_from", opt.init_from.string()},
                          {"seed", opt.seed}, {"steps", opt.steps}, {"batch", opt.batch}, {"lr", opt.lr},
                          {"min_lr_ratio", opt.min_lr_ratio}, {"warmup_steps", warmup}, {"weight_decay", opt.weight_decay},
                          {"beta1", opt.beta1}, {"beta2", opt.beta2}, {"grad_clip", opt.grad_clip}, {"qat", opt.qat},
                          {"qat_lm_head", opt.qat_lm_head}, {"keep_zeros", opt.keep_zeros}, {"tasks", opt.tasks},
                          {"threads", omp_get_max_threads()}, {"gemm_backend", opt.gemm_backend}}},
                        {"parameters", L.total}}
             .dump()
      << "\n";

  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = cpu_seconds_now();
  std::vector<double> losses;
  int64_t tokens = 0;
  for (int step = 1; step <= opt.steps; ++step) {
    std::vector<TaskExample> ex;
    for (int i = 0; i < opt.batch; ++i) ex.push_back(stream.next());
    const Batch b = make_batch(ex);
    const double loss = graph.forward_backward(b, params.data(), grads.data(), qat);
    if (!std::isfinite(loss)) throw std::runtime_error("train: loss is " + std::to_string(loss) + " at step " + std::to_string(step));
    const double norm = clip_grad_norm(grads.data(), L.total, opt.grad_clip, frozen);
    const double lr = lr_at(step, opt.steps, warmup, opt.lr, opt.min_lr_ratio);
    adam.step(params.data(), grads.data(), lr);
    tokens += int64_t(b.tokens.size());
    losses.push_back(loss);
    const bool eval_now = opt.eval_every > 0 && step % opt.eval_every == 0 && step != opt.steps;
    if (step % opt.log_every == 0 || step == opt.steps || eval_now) {
      TrainLogRecord r{step, loss, lr, norm, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), tokens, nullptr};
      if (eval_now) {
        auto be = kernels::make_backend("cpu");
        Model live(cfg, weights_view(L, params.data()), *be);
        EvalOptions eo;
        eo.tasks = distinct(opt.tasks);
        eo.examples_per_task = opt.eval_every_examples;
        eo.shape = opt.shape;
        r.eval = evaluate_tasks(live, eo).to_json();
      }
      log << r.to_json().dump() << "\n" << std::flush;
      res.log.push_back(r);
      if (progress) progress(r);
    }
  }
  res.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.cpu_seconds = cpu_seconds_now() - c0;
  res.steps = opt.steps;
  const size_t tail = std::max<size_t>(1, losses.size() / 10);
  for (size_t i = losses.size() - tail; i < losses.size(); ++i) res.final_loss += losses[i] / double(tail);

  write_model(opt.out_dir, L, params, opt.out_dtype,
              {{"format", "pt"}, {"generator", "claimbench refengine train"}, {"seed", std::to_string(opt.seed)},
               {"steps", std::to_string(opt.steps)}});
  nlohmann::json summary = {{"summary",
                             {{"steps", opt.steps}, {"final_loss", res.final_loss}, {"wall_seconds", res.wall_seconds},
                              {"cpu_seconds", res.cpu_seconds}, {"tokens", tokens}, {"threads", omp_get_max_threads()}}}};
  if (opt.eval_examples > 0) {
    const auto e0 = std::chrono::steady_clock::now();
    auto lm = LoadedModel::open(opt.out_dir, "cpu");
    EvalOptions eo;
    eo.tasks = distinct(opt.tasks);
    eo.examples_per_task = opt.eval_examples;
    eo.shape = opt.shape;
    res.eval = evaluate_tasks(*lm, eo);
    res.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
    summary["summary"]["eval"] = res.eval.to_json();
    summary["summary"]["eval"]["examples_per_task"] = opt.eval_examples;
  }
  log << summary.dump() << "\n";
  return res;
}

}  // namespace cb::engine::train
