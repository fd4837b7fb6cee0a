// Calibration forward for activation-aware pruning: the engine's Model runs on a Backend
// decorator that records the squared column norms of every matmul's input (compress/calibrate.h).
#include "cb/engine/compress/calibrate.h"

#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "cb/engine/model/errors.h"
#include "cb/engine/model/kv_cache.h"
#include "cb/engine/model/model.h"
#include "cb/engine/model/tokenizer.h"
#include "cb/engine/model/weights.h"

namespace cb::engine::compress {
namespace {
using kernels::Backend;
using kernels::Status;
using kernels::Tensor;

// The built-in calibration text: plain prose about the project's subject plus seeded arithmetic
// and copy lines in the style of the synthetic tasks, so no data set is needed.
std::string builtin_text(uint64_t seed) {
  std::string t =
      "A language model reads a prompt one token at a time and predicts the next one. Serving many "
      "users at once means batching their requests, keeping the attention keys and values of every "
      "sequence in a cache, and choosing each step which sequences run. Compression makes the weights "
      "smaller or the arithmetic cheaper: eight-bit integers instead of floats, two of every four "
      "weights set to zero, or whole attention heads and feed-forward channels removed. Each of these "
      "trades some accuracy for speed, and a careful measurement says how much.\n";
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int> num(0, 999), len(3, 9), letter('a', 'z');
  for (int i = 0; i < 64; ++i) {
    const int a = num(gen), b = num(gen);
    t += std::to_string(a) + " + " + std::to_string(b) + " = " + std::to_string(a + b) + "\n";
    std::string w;
    for (int j = len(gen); j > 0; --j) w += char(letter(gen));
    t += "copy: " + w + " -> " + w + "\n";
  }
  return t;
}

// Forwards every op to `inner`; matmul first adds the squared columns of its input to the sums of
// the weight it multiplies (keyed by the weight's data pointer).
class RecordingBackend final : public Backend {
 public:
  RecordingBackend(Backend& inner, std::map<const void*, std::vector<double>>& sums) : in_(inner), sums_(sums) {}
  std::string name() const override { return in_.name() + "+record"; }
  bool supports(kernels::Op op, kernels::DType d, kernels::WeightLayout l) const override { return in_.supports(op, d, l); }
  bool supports_matmul(kernels::DType d, kernels::WeightLayout l, kernels::ActQuant a) const override {
    return in_.supports_matmul(d, l, a);
  }
  Status allocate(kernels::DType d, std::initializer_list<int64_t> dims, Tensor& out) override {
    return in_.allocate(d, dims, out);
  }
  void release(Tensor& t) override { in_.release(t); }
  Status copy_from_host(Tensor& dst, const void* src) override { return in_.copy_from_host(dst, src); }
  Status copy_to_host(void* dst, const Tensor& src) override { return in_.copy_to_host(dst, src); }
  Status copy(Tensor& dst, const Tensor& src) override { return in_.copy(dst, src); }
  Status synchronize() override { return in_.synchronize(); }
  kernels::Stream stream() const override { return in_.stream(); }

 protected:
  // The public ops checked the arguments; each run_* forwards to the inner backend's public op.
  Status run_upload_weight(const kernels::Weight& w, kernels::Weight& out) override { return in_.upload_weight(w, out); }
  Status run_alloc_kv_cache(const kernels::KvCacheSpec& spec, kernels::KvCacheStorage& out) override {
    return in_.alloc_kv_cache(spec, out);
  }
  Status run_copy_kv_blocks(kernels::KvCacheStorage& kv, std::span<const std::pair<int32_t, int32_t>> c) override {
    return in_.copy_kv_blocks(kv, c);
  }
  Status run_matmul(const Tensor& x, const kernels::Weight& w, Tensor& y) override {
    auto it = sums_.find(w.values.data);
    if (it != sums_.end() && x.mem != kernels::MemSpace::Host)
      return Status::unsupported("calibration reads activations in host memory; use a host backend (cpu or ref)");
    if (it != sums_.end()) {
      const int64_t M = x.rows(), K = x.cols();
      std::vector<double>& s = it->second;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t k = 0; k < K; ++k) {
          const double v = x.as<const float>()[m * K + k];
          s[size_t(k)] += v * v;
        }
    }
    return in_.matmul(x, w, y);
  }
  Status run_rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& y) override { return in_.rmsnorm(x, w, eps, y); }
  Status run_rope(Tensor& x, const Tensor& pos, int h, int hd, float theta) override { return in_.rope(x, pos, h, hd, theta); }
  Status run_kv_store(const Tensor& k, const Tensor& v, const Tensor& slots, kernels::KvLayer& kv) override {
    return in_.kv_store(k, v, slots, kv);
  }
  Status run_attention(const Tensor& q, const kernels::KvLayer& kv, const kernels::AttentionBatch& b,
                       const kernels::AttentionParams& p, Tensor& out) override {
    return in_.attention(q, kv, b, p, out);
  }
  Status run_silu_mul(const Tensor& g, const Tensor& u, Tensor& out) override { return in_.silu_mul(g, u, out); }
  Status run_softmax(const Tensor& x, Tensor& y) override { return in_.softmax(x, y); }
  Status run_embedding(const Tensor& ids, const Tensor& table, Tensor& out) override { return in_.embedding(ids, table, out); }
  Status run_add(const Tensor& a, const Tensor& b, Tensor& out) override { return in_.add(a, b, out); }

 private:
  Backend& in_;
  std::map<const void*, std::vector<double>>& sums_;
};

}  // namespace

nlohmann::json CalibrationOptions::to_json() const {
  return {{"text", text_file.empty() ? "built-in seeded text" : text_file},
          {"tokens", tokens},
          {"seq_len", seq_len},
          {"seed", seed},
          {"backend", backend}};
}

namespace {
// Cuts seeded windows of the text and encodes each with BOS; a window of `bytes_per_token` bytes
// per wanted token (1 for the byte tokenizer, where bytes are tokens), then cut to the length.
std::vector<std::vector<int32_t>> cut_sequences(const ModelConfig& cfg, const CalibrationOptions& opt, size_t bytes_per_token,
                                                const std::function<std::vector<int32_t>(const std::string&)>& encode) {
  if (opt.tokens <= 0) throw ModelError("calibration: --calib-tokens " + std::to_string(opt.tokens) + " must be positive");
  if (opt.seq_len < 2 || opt.seq_len > cfg.max_position_embeddings)
    throw ModelError("calibration: sequence length " + std::to_string(opt.seq_len) + " must be in [2, " +
                     std::to_string(cfg.max_position_embeddings) + "] (max_position_embeddings)");
  std::string text;
  if (opt.text_file.empty()) {
    text = builtin_text(opt.seed);
  } else {
    std::ifstream in(opt.text_file, std::ios::binary);
    if (!in) throw ModelError(opt.text_file + ": cannot open calibration text");
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
    if (text.size() < 16) throw ModelError(opt.text_file + ": calibration text has " + std::to_string(text.size()) + " bytes, too few");
  }
  std::mt19937_64 gen(opt.seed);
  std::vector<std::vector<int32_t>> seqs;
  for (int left = opt.tokens; left > 0;) {
    const int n = std::min(left, opt.seq_len);
    const size_t body = size_t(std::max(1, n - 1)) * bytes_per_token;
    const size_t start = text.size() > body ? size_t(gen() % (text.size() - body)) : 0;
    std::vector<int32_t> ids = encode(text.substr(start, body));  // BOS + the window's tokens
    if (ids.size() > size_t(n)) ids.resize(size_t(n));
    seqs.push_back(std::move(ids));
    left -= n;
  }
  return seqs;
}

}  // namespace

std::vector<std::vector<int32_t>> calibration_sequences(const ModelConfig& cfg, const CalibrationOptions& opt) {
  const ByteTokenizer tok(cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id);
  return cut_sequences(cfg, opt, 1, [&](const std::string& s) { return tok.encode(s, true); });
}

std::vector<std::vector<int32_t>> calibration_sequences(const ModelConfig& cfg, const CalibrationOptions& opt,
                                                        const tok::Tokenizer& t) {
  return cut_sequences(cfg, opt, t.kind() == "byte" ? 1 : 4, [&](const std::string& s) { return t.encode(s, true); });
}

InputSquares calibrate_input_squares(const SourceModel& src, const CalibrationOptions& opt) {
  const ModelConfig& cfg = src.cfg;
  const auto seqs = calibration_sequences(cfg, opt, *tok::load_tokenizer(src.dir));
  ModelWeights w = bind_weights(src.store, cfg);
  // Weight data pointer -> module, for the linear layers of the decoder (lm_head is not pruned).
  std::map<const void*, std::vector<double>> sums;
  std::map<std::string, const void*> key;
  const char* const mods[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
  for (int l = 0; l < cfg.num_hidden_layers; ++l) {
    const LayerWeights& L = w.layers[size_t(l)];
    const kernels::Weight* ws[] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
    for (int i = 0; i < 7; ++i) {
      const std::string m = "model.layers." + std::to_string(l) + "." + mods[i];
      key[m] = ws[i]->values.data;
      sums[ws[i]->values.data].assign(size_t(ws[i]->k), 0.0);
    }
  }
  auto inner = kernels::make_backend(opt.backend);
  RecordingBackend rec(*inner, sums);
  Model model(cfg, std::move(w), rec);
  size_t longest = 0;
  for (const auto& s : seqs) longest = std::max(longest, s.size());
  KvCache kv(rec, cfg, int((longest + 15) / 16), 16);
  const std::vector<int32_t> table = KvCache::sequential_table(kv.num_blocks());
  for (const auto& s : seqs) model.forward({SeqStep{s, 0, table, false}}, kv);

  InputSquares out;
  for (const auto& [m, ptr] : key) out[m] = sums.at(ptr);
  return out;
}

}  // namespace cb::engine::compress
