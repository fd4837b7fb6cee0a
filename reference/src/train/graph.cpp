// The training graph: model.cpp's forward pass over packed sequences, saving activations, and its
// backward pass in reverse, one op at a time (shapes: T tokens, D model dim, Q = H * Dh query dim
// (D unless heads were pruned), KV = Hkv * Dh, F FFN dim, V vocab, R rows with a loss target).
#include "cb/engine/train/graph.h"

#include <algorithm>
#include <stdexcept>

#include "cb/engine/model/weights.h"

namespace cb::engine::train {

ParamLayout::ParamLayout(const ModelConfig& c) : cfg(c) {
  cfg.validate("training config");
  for (const std::string& name : expected_tensor_names(cfg)) {
    ParamTensor t;
    t.name = name;
    t.shape = expected_tensor_shape(cfg, name);
    t.numel = 1;
    for (int64_t d : t.shape) t.numel *= size_t(d);
    t.offset = total;
    t.is_norm = name.find("norm.weight") != std::string::npos;
    t.is_linear = name.find("_proj.weight") != std::string::npos || name == "lm_head.weight";
    total += t.numel;
    tensors.push_back(std::move(t));
  }
  embed = find("model.embed_tokens.weight").offset;
  final_norm = find("model.norm.weight").offset;
  lm_head = cfg.tie_word_embeddings ? embed : find("lm_head.weight").offset;
  for (int l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    layers.push_back({find(p + "input_layernorm.weight").offset, find(p + "self_attn.q_proj.weight").offset,
                      find(p + "self_attn.k_proj.weight").offset, find(p + "self_attn.v_proj.weight").offset,
                      find(p + "self_attn.o_proj.weight").offset, find(p + "post_attention_layernorm.weight").offset,
                      find(p + "mlp.gate_proj.weight").offset, find(p + "mlp.up_proj.weight").offset,
                      find(p + "mlp.down_proj.weight").offset});
    // The graph runs [q; k; v] and [gate; up] as one matrix each: they must be adjacent.
    const LayerOffsets& o = layers.back();
    const size_t Dz = size_t(cfg.hidden_size), Qz = size_t(cfg.q_dim()), KVz = size_t(cfg.kv_dim()),
                 Fz = size_t(cfg.intermediate_size);
    if (o.wk != o.wq + Qz * Dz || o.wv != o.wk + KVz * Dz || o.w_up != o.w_gate + Fz * Dz)
      throw std::logic_error("training parameters: q/k/v or gate/up of layer " + std::to_string(l) + " are not adjacent");
  }
}

const ParamTensor& ParamLayout::find(const std::string& name) const {
  for (const ParamTensor& t : tensors)
    if (t.name == name) return t;
  throw std::invalid_argument("training parameters: no tensor '" + name + "'");
}

Batch make_batch(const std::vector<TaskExample>& examples) {
  Batch b;
  for (const TaskExample& e : examples) {
    std::vector<int32_t> seq = e.prompt;
    seq.insert(seq.end(), e.answer.begin(), e.answer.end());
    const int64_t n = int64_t(seq.size()) - 1;  // inputs; the last token is only a target
    std::vector<uint8_t> supervised(seq.size(), 0);  // token j is a target (predicted from j - 1)
    for (size_t j = e.prompt.size(); j < seq.size(); ++j) supervised[j] = 1;
    for (const auto& [begin, end] : e.prompt_answers)
      for (int32_t j = std::max(begin, 1); j < end && j < int32_t(e.prompt.size()); ++j) supervised[size_t(j)] = 1;
    b.seqs.push_back({int64_t(b.tokens.size()), n});
    for (int64_t i = 0; i < n; ++i) {
      b.tokens.push_back(seq[size_t(i)]);
      b.positions.push_back(int32_t(i));
      const bool target = supervised[size_t(i + 1)];
      b.targets.push_back(target ? seq[size_t(i + 1)] : -1);
      b.loss_tokens += target;
    }
  }
  return b;
}

Batch make_lm_batch(const std::vector<std::vector<int32_t>>& sequences) {
  Batch b;
  for (const auto& seq : sequences) {
    const int64_t n = int64_t(seq.size()) - 1;
    if (n < 1) throw std::invalid_argument("make_lm_batch: a sequence needs at least 2 tokens");
    b.seqs.push_back({int64_t(b.tokens.size()), n});
    for (int64_t i = 0; i < n; ++i) {
      b.tokens.push_back(seq[size_t(i)]);
      b.positions.push_back(int32_t(i));
      b.targets.push_back(seq[size_t(i + 1)]);
    }
    b.loss_tokens += n;
  }
  return b;
}

template <class T>
TrainGraph<T>::TrainGraph(const ParamLayout& layout, Gemm& gemm)
    : L_(layout), gemm_(gemm), rope_(0, layout.cfg.head_dim(), layout.cfg.rope_theta), acts_(size_t(layout.cfg.num_hidden_layers)) {}

template <class T> void TrainGraph<T>::prepare_qat(const T* params, const QatOptions& qat) {
  if (!qat.enabled) return;
  wq_.resize(L_.total);
  for (const ParamTensor& t : L_.tensors) {
    const bool tied_head = L_.cfg.tie_word_embeddings && t.offset == L_.embed;
    if (!t.is_linear && !(tied_head && qat.lm_head)) continue;
    if (t.name == "lm_head.weight" && !qat.lm_head) continue;
    fake_quant_rows(params + t.offset, wq_.data() + t.offset, t.shape[0], t.shape[1]);
  }
}

template <class T>
const T* TrainGraph<T>::weight(const T* params, size_t off, const QatOptions& qat, bool lm_head) const {
  if (!qat.enabled || (lm_head && !qat.lm_head)) return params + off;
  return wq_.data() + off;
}

namespace {
template <class T> void zero(std::vector<T>& v, size_t n) {
  v.assign(n, T(0));
}
template <class T> void add_into(std::vector<T>& x, const std::vector<T>& y) {
  const int64_t n = int64_t(x.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] += y[size_t(i)];
}
}  // namespace

namespace {
// Copies columns [c0, c0 + n) of src [rows, ld_src] into dst [rows, n] (split = true), or back.
template <class T> void columns(T* packed, int64_t ld, int64_t c0, T* part, int64_t n, int64_t rows, bool split) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    if (split) std::copy_n(packed + r * ld + c0, n, part + r * n);
    else std::copy_n(part + r * n, n, packed + r * ld + c0);
  }
}
}  // namespace

// q, k, v (and gate, up) weights lie back to back in the buffer (expected_tensor_names order), so
// each group runs as one GEMM: y_qkv[T, Q + 2 KV] = h1 W_qkv^T with W_qkv = [Wq; Wk; Wv].
template <class T>
void TrainGraph<T>::forward(const Batch& b, const T* P, const QatOptions& qat, const std::vector<int64_t>& out_rows) {
  const ModelConfig& c = L_.cfg;
  const int64_t Tn = int64_t(b.tokens.size()), D = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(),
                F = c.intermediate_size, V = c.vocab_size, R = int64_t(out_rows.size()), QKV = Q + 2 * KV;
  const int H = c.num_attention_heads, Hkv = c.num_key_value_heads, Dh = c.head_dim();
  const float eps = c.rms_norm_eps;
  int64_t max_len = 0;
  for (const SeqSpan& s : b.seqs) max_len = std::max(max_len, s.len);
  if (max_len > c.max_position_embeddings)
    throw std::invalid_argument("training batch: a sequence of " + std::to_string(max_len) + " tokens exceeds the context of " +
                                std::to_string(c.max_position_embeddings));
  if (int64_t(rope_.cos.size()) < max_len * (Dh / 2)) rope_ = RopeTable(int(max_len), Dh, c.rope_theta);
  for (int32_t id : b.tokens)
    if (id < 0 || id >= V) throw std::invalid_argument("training batch: token id " + std::to_string(id) + " outside the vocabulary");
  prepare_qat(P, qat);
  int64_t probs_total = 0;
  attention_prob_offsets(b.seqs, H, &probs_total);

  auto linear = [&](const T* x, const T* W, T* y, int64_t M, int64_t N, int64_t K) {
    linear_forward(gemm_, x, W, y, M, N, K, qat.enabled, xq_);
  };

  std::vector<T>& x = x_out_;
  x.resize(size_t(Tn * D));
  embedding_forward(b.tokens.data(), P + L_.embed, x.data(), Tn, D);  // x[T, D] = embed[ids]
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerOffsets& o = L_.layers[size_t(l)];
    LayerActs& A = acts_[size_t(l)];
    // Attention block: x += o(attn(rope(q), rope(k), v)), [q k v] = rmsnorm(x) W_qkv^T
    A.x_in = x;
    A.rstd1.resize(size_t(Tn));
    A.h1.resize(size_t(Tn * D));
    rmsnorm_forward(x.data(), P + o.attn_norm, A.h1.data(), A.rstd1.data(), Tn, D, eps);  // h1[T, D]
    packed_.resize(size_t(Tn * QKV));
    linear(A.h1.data(), weight(P, o.wq, qat), packed_.data(), Tn, QKV, D);  // [q k v][T, Q + 2 KV]
    A.q.resize(size_t(Tn * Q));
    A.k.resize(size_t(Tn * KV));
    A.v.resize(size_t(Tn * KV));
    columns(packed_.data(), QKV, 0, A.q.data(), Q, Tn, true);
    columns(packed_.data(), QKV, Q, A.k.data(), KV, Tn, true);
    columns(packed_.data(), QKV, Q + KV, A.v.data(), KV, Tn, true);
    rope_forward(A.q.data(), b.positions.data(), Tn, H, rope_);
    rope_forward(A.k.data(), b.positions.data(), Tn, Hkv, rope_);
    A.probs.resize(size_t(probs_total));
    A.att.resize(size_t(Tn * Q));
    attention_forward(A.q.data(), A.k.data(), A.v.data(), A.att.data(), A.probs.data(), b.seqs, H, Hkv, Dh);
    proj_.resize(size_t(Tn * D));
    linear(A.att.data(), weight(P, o.wo, qat), proj_.data(), Tn, D, Q);  // o[T, D]
    add_into(x, proj_);  // residual
    // MLP block: x += down(silu(gate) * up), [gate up] = rmsnorm(x) W_gu^T
    A.x_mid = x;
    A.rstd2.resize(size_t(Tn));
    A.h2.resize(size_t(Tn * D));
    rmsnorm_forward(x.data(), P + o.ffn_norm, A.h2.data(), A.rstd2.data(), Tn, D, eps);
    packed_.resize(size_t(Tn * 2 * F));
    linear(A.h2.data(), weight(P, o.w_gate, qat), packed_.data(), Tn, 2 * F, D);  // [gate up][T, 2F]
    A.g.resize(size_t(Tn * F));
    A.u.resize(size_t(Tn * F));
    A.a.resize(size_t(Tn * F));
    columns(packed_.data(), 2 * F, 0, A.g.data(), F, Tn, true);
    columns(packed_.data(), 2 * F, F, A.u.data(), F, Tn, true);
    silu_mul_forward(A.g.data(), A.u.data(), A.a.data(), Tn * F);
    linear(A.a.data(), weight(P, o.w_down, qat), proj_.data(), Tn, D, F);  // down[T, D]
    add_into(x, proj_);  // residual
  }
  // Final norm and lm_head on the wanted rows only: xr[R, D] -> xf[R, D] -> logits[R, V].
  xr_.resize(size_t(R * D));
  for (int64_t r = 0; r < R; ++r) std::copy_n(x.data() + out_rows[size_t(r)] * D, D, xr_.data() + r * D);
  rstdf_.resize(size_t(R));
  xf_.resize(size_t(R * D));
  rmsnorm_forward(xr_.data(), P + L_.final_norm, xf_.data(), rstdf_.data(), R, D, eps);
  logits_.resize(size_t(R * V));
  linear(xf_.data(), weight(P, L_.lm_head, qat, true), logits_.data(), R, V, D);
}

template <class T> std::vector<T> TrainGraph<T>::logits(const Batch& b, const T* params, const QatOptions& qat) {
  std::vector<int64_t> rows(b.tokens.size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = int64_t(i);
  forward(b, params, qat, rows);
  return logits_;
}

template <class T>
double TrainGraph<T>::forward_backward(const Batch& b, const T* P, T* G, const QatOptions& qat) {
  rows_.clear();
  std::vector<int32_t> targets;
  for (size_t i = 0; i < b.targets.size(); ++i)
    if (b.targets[i] >= 0) {
      rows_.push_back(int64_t(i));
      targets.push_back(b.targets[i]);
    }
  if (rows_.empty()) throw std::invalid_argument("training batch has no loss targets");
  forward(b, P, qat, rows_);
  const ModelConfig& c = L_.cfg;
  const int64_t Tn = int64_t(b.tokens.size()), D = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(),
                F = c.intermediate_size, V = c.vocab_size, R = int64_t(rows_.size()), QKV = Q + 2 * KV;
  const int H = c.num_attention_heads, Hkv = c.num_key_value_heads, Dh = c.head_dim();
  std::vector<T>& dlogits = g_[0];
  dlogits.resize(size_t(R * V));
  const double loss = cross_entropy(logits_.data(), targets.data(), dlogits.data(), R, V, 1.0 / double(R)) / double(R);
  if (!G) return loss;
  std::fill(G, G + L_.total, T(0));

  auto linear_back = [&](const T* dy, const T* x, const T* W, T* dx, T* dW, int64_t M, int64_t N, int64_t K) {
    linear_backward(gemm_, dy, x, W, dx, dW, M, N, K, qat.enabled, xq_);
  };
  std::vector<T>&dxf = g_[1], &dxr = g_[2], &dx = g_[3], &da = g_[4], &dg = g_[5], &du = g_[6], &dh = g_[7],
  &datt = g_[8], &dq = g_[9], &dk = g_[10], &dv = g_[11];

  // lm_head and final norm on the loss rows, scattered back into dx[T, D].
  zero(dxf, size_t(R * D));
  zero(dxr, size_t(R * D));
  linear_back(dlogits.data(), xf_.data(), weight(P, L_.lm_head, qat, true), dxf.data(), G + L_.lm_head, R, V, D);
  rmsnorm_backward(dxf.data(), xr_.data(), P + L_.final_norm, rstdf_.data(), dxr.data(), G + L_.final_norm, R, D);
  zero(dx, size_t(Tn * D));
  for (int64_t r = 0; r < R; ++r) std::copy_n(dxr.data() + r * D, D, dx.data() + rows_[size_t(r)] * D);

  for (int l = c.num_hidden_layers - 1; l >= 0; --l) {
    const LayerOffsets& o = L_.layers[size_t(l)];
    LayerActs& A = acts_[size_t(l)];
    // MLP block: x_out = x_mid + down(silu(gate) * up), [gate up] = rmsnorm(x_mid) W_gu^T
    zero(da, size_t(Tn * F));
    linear_back(dx.data(), A.a.data(), weight(P, o.w_down, qat), da.data(), G + o.w_down, Tn, D, F);
    dg.resize(size_t(Tn * F));
    du.resize(size_t(Tn * F));
    silu_mul_backward(da.data(), A.g.data(), A.u.data(), dg.data(), du.data(), Tn * F);
    packed_.resize(size_t(Tn * 2 * F));
    columns(packed_.data(), 2 * F, 0, dg.data(), F, Tn, false);
    columns(packed_.data(), 2 * F, F, du.data(), F, Tn, false);
    zero(dh, size_t(Tn * D));
    linear_back(packed_.data(), A.h2.data(), weight(P, o.w_gate, qat), dh.data(), G + o.w_gate, Tn, 2 * F, D);
    rmsnorm_backward(dh.data(), A.x_mid.data(), P + o.ffn_norm, A.rstd2.data(), dx.data(), G + o.ffn_norm, Tn, D);
    // Attention block: x_mid = x_in + o(attn(rope(q), rope(k), v)), [q k v] = rmsnorm(x_in) W_qkv^T
    zero(datt, size_t(Tn * Q));
    linear_back(dx.data(), A.att.data(), weight(P, o.wo, qat), datt.data(), G + o.wo, Tn, D, Q);
    zero(dq, size_t(Tn * Q));
    zero(dk, size_t(Tn * KV));
    zero(dv, size_t(Tn * KV));
    attention_backward(datt.data(), A.q.data(), A.k.data(), A.v.data(), A.probs.data(), dq.data(), dk.data(), dv.data(),
                       b.seqs, H, Hkv, Dh);
    rope_backward(dq.data(), b.positions.data(), Tn, H, rope_);
    rope_backward(dk.data(), b.positions.data(), Tn, Hkv, rope_);
    packed_.resize(size_t(Tn * QKV));
    columns(packed_.data(), QKV, 0, dq.data(), Q, Tn, false);
    columns(packed_.data(), QKV, Q, dk.data(), KV, Tn, false);
    columns(packed_.data(), QKV, Q + KV, dv.data(), KV, Tn, false);
    zero(dh, size_t(Tn * D));
    linear_back(packed_.data(), A.h1.data(), weight(P, o.wq, qat), dh.data(), G + o.wq, Tn, QKV, D);
    rmsnorm_backward(dh.data(), A.x_in.data(), P + o.attn_norm, A.rstd1.data(), dx.data(), G + o.attn_norm, Tn, D);
  }
  embedding_backward(b.tokens.data(), dx.data(), G + L_.embed, Tn, D);
  return loss;
}

template class TrainGraph<float>;
template class TrainGraph<double>;

}  // namespace cb::engine::train
