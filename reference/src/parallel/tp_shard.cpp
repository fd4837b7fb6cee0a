// Tensor-parallel sharding: the split plan and the sliced copies of the weights (tp.h).
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cb/engine/model/errors.h"
#include "cb/engine/parallel/tp.h"

namespace cb::engine {
using kernels::Tensor;
using kernels::Weight;
using kernels::WeightLayout;

namespace {
std::string n_str(int64_t v) { return std::to_string(v); }

// An even split of `total` units over `ranks`, the first total % ranks ranks one unit larger.
void split(int64_t total, int rank, int ranks, int64_t& begin, int64_t& count) {
  const int64_t base = total / ranks, extra = total % ranks;
  count = base + (rank < extra ? 1 : 0);
  begin = rank * base + std::min<int64_t>(rank, extra);
}
}  // namespace

TpShard plan_shard(const ModelConfig& cfg, int rank, int ranks) {
  if (ranks < 1 || rank < 0 || rank >= ranks)
    throw std::invalid_argument("tensor parallel: rank " + n_str(rank) + " of " + n_str(ranks) + " is not a valid rank");
  const int H = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads;
  TpShard s;
  s.rank = rank;
  s.ranks = ranks;
  if (H % ranks != 0)
    throw std::invalid_argument("tensor parallel over " + n_str(ranks) + " ranks: num_attention_heads " + n_str(H) +
                                " is not divisible by " + n_str(ranks));
  s.heads = H / ranks;
  s.head0 = rank * s.heads;
  if (Hkv % ranks == 0) {
    s.kv_heads = Hkv / ranks;
    s.kv_head0 = rank * s.kv_heads;
  } else if (ranks % Hkv == 0) {
    // Fewer KV heads than ranks: keep the one KV head this rank's query heads read.
    s.kv_heads = 1;
    s.kv_head0 = s.head0 / (H / Hkv);
    s.kv_replicated = true;
  } else {
    throw std::invalid_argument("tensor parallel over " + n_str(ranks) + " ranks: num_key_value_heads " + n_str(Hkv) +
                                " neither divides nor is a multiple of " + n_str(ranks));
  }
  // FFN columns in groups of 4 when F allows (keeps 2:4 sparse groups whole), else single columns.
  const int64_t F = cfg.intermediate_size, unit = F % 4 == 0 ? 4 : 1;
  if (F / unit < ranks)
    throw std::invalid_argument("tensor parallel over " + n_str(ranks) + " ranks: intermediate_size " + n_str(F) +
                                " has fewer than one column group per rank");
  split(F / unit, rank, ranks, s.ffn0, s.ffn);
  s.ffn0 *= unit;
  s.ffn *= unit;
  const int64_t V = cfg.vocab_size;
  s.vocab_pad = (V + ranks - 1) / ranks;
  s.vocab0 = std::min<int64_t>(V, rank * s.vocab_pad);
  s.vocab = std::min<int64_t>(V - s.vocab0, s.vocab_pad);
  return s;
}

ModelConfig kv_config_for(const ModelConfig& cfg, const TpShard& s) {
  ModelConfig c = cfg;
  if (!s.sharded()) return c;
  // KvCache shapes its pools from num_key_value_heads and head_dim() (which does not depend on it).
  c.num_key_value_heads = s.kv_heads;
  return c;
}

void ShardStorage::Free::operator()(void* p) const { std::free(p); }

void* ShardStorage::make(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  bufs_.emplace_back(p);
  bytes_ += bytes;
  return p;
}

namespace {

// Rows [r0, r0 + nr) and columns [c0, c0 + nc) of a row-major 2-D (or 1-D, as one row per
// element) tensor, copied into a new [nr + pad_rows, nc] tensor whose extra rows are zero.
Tensor slice(const Tensor& t, int64_t r0, int64_t nr, int64_t c0, int64_t nc, ShardStorage& store, int64_t pad_rows = 0) {
  const size_t es = kernels::dtype_size(t.dtype);
  const int64_t cols = t.ndim == 1 ? 1 : t.cols();
  Tensor out = t.ndim == 1 ? Tensor(nullptr, t.dtype, {nr + pad_rows}) : Tensor(nullptr, t.dtype, {nr + pad_rows, nc});
  out.data = store.make(out.nbytes());
  const auto* src = static_cast<const std::byte*>(t.data);
  auto* dst = static_cast<std::byte*>(out.data);
  for (int64_t r = 0; r < nr; ++r) std::memcpy(dst + r * nc * es, src + ((r0 + r) * cols + c0) * es, size_t(nc) * es);
  return out;
}

const char* layout_name(WeightLayout l) {
  switch (l) {
    case WeightLayout::Dense: return "dense";
    case WeightLayout::Int8PerChannel: return "int8 per-channel";
    case WeightLayout::Sparse24: return "2:4 sparse";
  }
  return "?";
}

// Output rows [n0, n0 + n) (column-parallel), padded with pad zero rows.
Weight rows(const Weight& w, int64_t n0, int64_t n, ShardStorage& store, const std::string& name, int64_t pad = 0) {
  if (w.values.mem != kernels::MemSpace::Host) throw ModelError(name + ": tensor parallel sharding needs host weights");
  Weight o = w;
  o.values = slice(w.values, n0, n, 0, w.values.cols(), store, pad);
  if (w.layout == WeightLayout::Int8PerChannel) o.scales = slice(w.scales, n0, n, 0, 1, store, pad);
  if (w.layout == WeightLayout::Sparse24) o.meta = slice(w.meta, n0, n, 0, w.meta.cols(), store, pad);
  o.n = n + pad;
  return o;
}

// Input columns [k0, k0 + k) (row-parallel).
Weight cols(const Weight& w, int64_t k0, int64_t k, ShardStorage& store, const std::string& name) {
  if (w.values.mem != kernels::MemSpace::Host) throw ModelError(name + ": tensor parallel sharding needs host weights");
  Weight o = w;
  switch (w.layout) {
    case WeightLayout::Dense:
    case WeightLayout::Int8PerChannel:  // per-output-row scales stay whole
      o.values = slice(w.values, 0, w.n, k0, k, store);
      break;
    case WeightLayout::Sparse24:
      if (k0 % 4 != 0 || k % 4 != 0)
        throw ModelError(name + ": " + layout_name(w.layout) + " weight cannot be split at input column " + n_str(k0) +
                         " (+" + n_str(k) + "): 2:4 groups of 4 columns must stay whole");
      o.values = slice(w.values, 0, w.n, k0 / 2, k / 2, store);
      o.meta = slice(w.meta, 0, w.n, k0 / 4, k / 4, store);
      break;
  }
  o.k = k;
  return o;
}

size_t weight_bytes(const Weight& w) {
  return w.values.nbytes() + (w.scales.empty() ? 0 : w.scales.nbytes()) + (w.meta.empty() ? 0 : w.meta.nbytes());
}

}  // namespace

ModelWeights shard_weights(const ModelWeights& full, const ModelConfig& cfg, const TpShard& s, ShardStorage& store) {
  if (!s.sharded()) return full;
  const int64_t Dh = cfg.head_dim();
  ModelWeights w;
  w.embed = full.embed;
  w.final_norm = full.final_norm;
  size_t bytes = full.embed.nbytes() + full.final_norm.nbytes();
  w.layers.resize(full.layers.size());
  for (size_t l = 0; l < full.layers.size(); ++l) {
    const LayerWeights& F = full.layers[l];
    LayerWeights& L = w.layers[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    L.attn_norm = F.attn_norm;
    L.ffn_norm = F.ffn_norm;
    L.wq = rows(F.wq, s.head0 * Dh, s.heads * Dh, store, p + "self_attn.q_proj");
    L.wk = rows(F.wk, s.kv_head0 * Dh, s.kv_heads * Dh, store, p + "self_attn.k_proj");
    L.wv = rows(F.wv, s.kv_head0 * Dh, s.kv_heads * Dh, store, p + "self_attn.v_proj");
    L.wo = cols(F.wo, s.head0 * Dh, s.heads * Dh, store, p + "self_attn.o_proj");
    L.w_gate = rows(F.w_gate, s.ffn0, s.ffn, store, p + "mlp.gate_proj");
    L.w_up = rows(F.w_up, s.ffn0, s.ffn, store, p + "mlp.up_proj");
    L.w_down = cols(F.w_down, s.ffn0, s.ffn, store, p + "mlp.down_proj");
    bytes += F.attn_norm.nbytes() + F.ffn_norm.nbytes();
    for (const Weight* x : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) bytes += weight_bytes(*x);
  }
  // Vocabulary-parallel lm_head, padded to vocab_pad rows so every rank gathers the same count.
  w.lm_head = rows(full.lm_head, s.vocab0, s.vocab, store, "lm_head", s.vocab_pad - s.vocab);
  bytes += weight_bytes(w.lm_head);
  w.bytes = bytes;
  return w;
}

}  // namespace cb::engine
