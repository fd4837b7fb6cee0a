// Calibration forward for activation-aware pruning: the engine's Model runs on a Backend
// decorator that records the squared column norms of every matmul's input (compress/calibrate.h).
#include "cb/engine/compress/calibrate.h"

#include "cb/kernels/forwarding_backend.h"

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
// the weight it multiplies (keyed by the weight's data pointer). matmul_multi goes through here
// too: the base's run_matmul_multi would hand the pairs to the inner backend unrecorded.
class RecordingBackend final : public kernels::ForwardingBackend {
 public:
  RecordingBackend(Backend& inner, std::map<const void*, std::vector<double>>& sums) : ForwardingBackend(inner), sums_(sums) {}
  std::string name() const override { return inner().name() + "+record"; }

 protected:
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
    return ForwardingBackend::run_matmul(x, w, y);
  }
  Status run_matmul_multi(const Tensor& x, std::span<const kernels::MatmulOutput> outs) override {
    for (const kernels::MatmulOutput& o : outs)
      if (Status s = run_matmul(x, *o.w, *o.y); !s.ok()) return s;
    return Status::Ok();
  }

 private:
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
