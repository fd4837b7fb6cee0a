#include "cb/engine/model/model.h"

#include <algorithm>

#include <cmath>
#include <stdexcept>
#include <string>

#include "cb/engine/model/planted_defects.h"
#include "cb/engine/parallel/tp_step.h"

namespace cb::engine {
using kernels::DType;
using kernels::Tensor;

Model::Model(const ModelConfig& cfg, ModelWeights weights, kernels::Backend& backend, TpContext tp)
    : cfg_(cfg), w_(std::move(weights)), backend_(backend), kv_batch_(backend), tp_(tp) {
  heads_ = cfg_.num_attention_heads;
  kv_heads_ = cfg_.num_key_value_heads;
  ffn_ = cfg_.intermediate_size;
  vocab_cols_ = cfg_.vocab_size;
  if (!tp_.active()) return;
  const TpShard& s = tp_.shard;
  const std::string who = "tensor parallel rank " + std::to_string(s.rank) + " of " + std::to_string(s.ranks);
  if (tp_.comm->rank() != s.rank || tp_.comm->size() != s.ranks)
    throw std::invalid_argument(who + ": the communicator is rank " + std::to_string(tp_.comm->rank()) + " of " +
                                std::to_string(tp_.comm->size()));
  // The all-reduces run on the activations in place, so the communicator must reach the memory
  // the backend keeps them in: host tensors over mpi / threads, device tensors over nccl.
  const bool device_tensors = w_.lm_head.values.mem != kernels::MemSpace::Host;
  if (tp_.comm->device_memory() && !device_tensors)
    throw std::invalid_argument(who + ": the '" + tp_.comm->backend() + "' communicator reduces GPU buffers but backend '" +
                                backend_.name() + "' keeps tensors in host memory: use --tp-comm mpi or threads");
  if (!tp_.comm->device_memory() && device_tensors)
    throw std::invalid_argument(who + ": backend '" + backend_.name() + "' keeps tensors on the device; the '" +
                                tp_.comm->backend() + "' communicator reduces host buffers: use --tp-comm nccl");
  heads_ = s.heads;
  kv_heads_ = s.kv_heads;
  ffn_ = s.ffn;
  vocab_cols_ = s.vocab_pad;
  const int64_t Dh = cfg_.head_dim();
  if (w_.layers.empty() || w_.layers[0].wq.n != heads_ * Dh || w_.layers[0].w_gate.n != ffn_ || w_.lm_head.n != vocab_cols_)
    throw std::invalid_argument(who + ": weights are not this rank's shard (q_proj rows, gate_proj rows or lm_head "
                                "rows differ from the plan; build them with shard_weights)");
}

Model::~Model() { release_buffers(); }

void Model::release_buffers() {
  for (Tensor* t : {&ids_, &x_, &h_, &q_, &k_, &v_, &att_, &o_, &gate_, &up_, &ffn_buf_, &last_, &logits_})
    if (!t->empty()) backend_.release(*t);
  cap_tokens_ = cap_logit_rows_ = 0;
}

void Model::ensure_capacity(int64_t tokens, int64_t logit_rows) {
  if (tokens <= cap_tokens_ && logit_rows <= cap_logit_rows_) return;
  const int64_t T = std::max(tokens, cap_tokens_), R = std::max(logit_rows, cap_logit_rows_);
  // Recordings point into the buffers about to go (a new buffer may land on an old address).
  graphs_.clear();
  graph_seen_.clear();
  graph_failed_.clear();
  release_buffers();
  // Local sizes: this rank's heads, FFN columns and logits (the whole model when not sharded).
  const int64_t D = cfg_.hidden_size, Dh = cfg_.head_dim(), Q = heads_ * Dh, KV = kv_heads_ * Dh, F = ffn_, V = vocab_cols_;
  ids_ = backend_.alloc(DType::I32, {T});
  x_ = backend_.alloc(DType::F32, {T, D});
  h_ = backend_.alloc(DType::F32, {T, D});
  q_ = backend_.alloc(DType::F32, {T, Q});
  k_ = backend_.alloc(DType::F32, {T, KV});
  v_ = backend_.alloc(DType::F32, {T, KV});
  att_ = backend_.alloc(DType::F32, {T, Q});
  o_ = backend_.alloc(DType::F32, {T, D});
  gate_ = backend_.alloc(DType::F32, {T, F});
  up_ = backend_.alloc(DType::F32, {T, F});
  ffn_buf_ = backend_.alloc(DType::F32, {T, F});
  last_ = backend_.alloc(DType::F32, {R, D});
  logits_ = backend_.alloc(DType::F32, {R, V});
  cap_tokens_ = T;
  cap_logit_rows_ = R;
}

void Model::check(const kernels::Status& s, const char* what, int layer) const {
  if (s.ok()) return;
  std::string where = std::string("forward: ") + what;
  if (layer >= 0) where += " (layer " + std::to_string(layer) + ")";
  throw std::runtime_error(where + " on backend '" + backend_.name() + "': " + s.message);
}

namespace {
// Rows [r0, r0 + n) of a [rows, cols] buffer, as a 2-D view.
Tensor rows(const Tensor& t, int64_t r0, int64_t n) { return t.row_slice(r0, n); }

// A 1-D view of n elements starting at element e0 of an i32 buffer.
Tensor span_i32(const Tensor& t, int64_t e0, int64_t n) {
  Tensor v = t;
  v.ndim = 1;
  v.shape = {n, 0, 0, 0};
  v.data = static_cast<int32_t*>(t.data) + e0;
  return v;
}
}  // namespace

std::vector<float> Model::forward(const std::vector<SeqStep>& batch, KvCache& kv) {
  // Gather token ids and check them, the positions and the block tables on the host, before
  // anything reaches the backend (the ops trust their index tensors).
  std::vector<int32_t> ids;
  std::vector<kernels::KvSeq> seqs;
  seqs.reserve(batch.size());
  int64_t logit_rows = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const SeqStep& st = batch[s];
    if (st.tokens.empty()) throw std::invalid_argument("forward: sequence " + std::to_string(s) + " has no tokens");
    const int64_t end = st.pos0 + int64_t(st.tokens.size());
    if (end > cfg_.max_position_embeddings)
      throw std::invalid_argument("forward: sequence " + std::to_string(s) + " reaches position " + std::to_string(end) +
                                  " past the context of " + std::to_string(cfg_.max_position_embeddings));
    if (const auto bad = kernels::check_token_ids(st.tokens, cfg_.vocab_size); !bad.ok())
      throw std::invalid_argument("forward: sequence " + std::to_string(s) + ": " + bad.message);
    ids.insert(ids.end(), st.tokens.begin(), st.tokens.end());
    seqs.push_back({st.pos0, int(st.tokens.size()), st.block_table});
    logit_rows += st.all_logits ? int64_t(st.tokens.size()) : 1;
  }
  if (const auto s = kernels::plan_kv_batch(seqs, kv.num_blocks(), kv.block_size(), plan_); !s.ok())
    throw std::invalid_argument("forward: " + s.message);
  const bool graph_step = graph_eligible(batch);
  if (graph_step) kernels::round_up_kv_batch(plan_, kGraphTableCols, kv.block_size());
  if (const int held = kv.n_kv_heads(); held != kv_heads_)
    throw std::invalid_argument("forward: the KV cache holds " + std::to_string(held) + " KV heads per layer but this model" +
                                (tp_.active() ? " shard (rank " + std::to_string(tp_.shard.rank) + ")" : std::string()) +
                                " computes " + std::to_string(kv_heads_) + " (build the cache from LoadedModel::kv_config())");
  if (tp_.active() && tp_.leader()) {
    // The followers run the same step: send it (with pending KV copies) once it passed the checks.
    TpStepMessage m;
    m.step = ++step_no_;
    m.kv_blocks = kv.num_blocks();
    m.kv_block_size = kv.block_size();
    m.copies.swap(pending_copies_);
    for (const SeqStep& st : batch)
      m.seqs.push_back({{st.tokens.begin(), st.tokens.end()}, int32_t(st.pos0), {st.block_table.begin(), st.block_table.end()},
                        st.all_logits});
    in_step_ = true;
    send_step(*tp_.comm, m);
  }
  std::vector<float> out = run(batch, kv, ids, logit_rows, graph_step);
  in_step_ = false;
  logit_rows_computed_ += logit_rows;
  return out;
}

void Model::copy_kv_blocks(KvCache& kv, std::span<const std::pair<int32_t, int32_t>> copies) {
  kv.copy_blocks(copies);
  if (tp_.active() && tp_.leader()) pending_copies_.insert(pending_copies_.end(), copies.begin(), copies.end());
}

void Model::stop_followers() {
  if (!tp_.active() || !tp_.leader()) return;
  TpStepMessage m;
  m.kind = TpStepMessage::Kind::Stop;
  m.step = ++step_no_;
  send_step(*tp_.comm, m);
}

void Model::all_reduce(Tensor& t) {
  // A host collective reads t at once, so the op that wrote it must be done; a device one is
  // queued behind it on the backend's stream.
  if (!tp_.comm->device_memory()) check(backend_.synchronize(), "synchronize before all-reduce");
  tp_.comm->all_reduce_sum(t.data, t.data, size_t(t.numel()), kernels::DType::F32, backend_.stream());
}

void Model::set_step_graphs(bool on, size_t max_recorded) {
  if (max_recorded < 1) throw std::invalid_argument("set_step_graphs: max_recorded must be >= 1");
  graph_cap_ = max_recorded;
  graph_clock_ = 0;
  graph_stats_ = StepGraphStats{};
  graph_stats_.enabled = on;
  graph_stats_.unavailable = tp_.active() ? "tensor-parallel steps run as usual (their all-reduces are not recorded)"
                                          : backend_.capture_unsupported_reason();
  graphs_.clear();
  graph_seen_.clear();
  graph_failed_.clear();
}

bool Model::graph_eligible(const std::vector<SeqStep>& batch) const {
  if (!graph_stats_.enabled || !graph_stats_.unavailable.empty()) return false;
  for (const SeqStep& st : batch)
    if (st.tokens.size() != 1 || st.all_logits) return false;
  return true;
}

template <class Enqueue>
void Model::run_graph_step(const std::vector<int64_t>& key, int64_t replay_attention_flops, const Enqueue& enqueue) {
  StepGraphStats& st = graph_stats_;
  if (auto it = graphs_.find(key); it != graphs_.end()) {
    it->second.last_used = ++graph_clock_;
    check(backend_.replay(*it->second.work), "replay recorded step");
    flops_.matmul += it->second.matmul_flops;
    flops_.attention += replay_attention_flops;
    ++st.replays;
    return;
  }
  // Shapes seen once are remembered up to a bound (a long serve meets many): past it the set starts
  // over, which costs each shape one more step as usual.
  if (graph_seen_.size() >= 64 * graph_cap_) graph_seen_.clear();
  if (graph_failed_.count(key) || graph_seen_.insert(key).second) {  // a failed shape, or its first step
    enqueue();
    ++st.eager_steps;
    return;
  }
  // Second step of this shape: record it (nothing runs while recording), then replay it.
  const ExecutedFlops before = flops_;
  std::unique_ptr<kernels::CapturedWork> work;
  kernels::Status s = backend_.capture_begin();
  if (s.ok()) {
    try {
      enqueue();
    } catch (const std::exception& e) {
      s = kernels::Status::internal(e.what());
    }
    kernels::Status end = backend_.capture_end(work);
    if (s.ok()) s = end;
  }
  if (!s.ok() || !work) {
    flops_ = before;
    graph_failed_.insert(key);
    ++st.failed_captures;
    st.last_failure = s.ok() ? "the backend returned no recording" : s.message;
    enqueue();
    ++st.eager_steps;
    return;
  }
  // Shapes pile up as contexts grow (one per 16 blocks and batch size): past the cap, drop the
  // least recently replayed recording, so the shapes a serving mix keeps meeting stay recorded.
  if (graphs_.size() >= graph_cap_) {
    auto lru = graphs_.begin();
    for (auto it = graphs_.begin(); it != graphs_.end(); ++it)
      if (it->second.last_used < lru->second.last_used) lru = it;
    graphs_.erase(lru);
    ++st.evictions;
  }
  Recorded& r = graphs_[key];
  r.work = std::move(work);
  r.matmul_flops = flops_.matmul - before.matmul;
  r.last_used = ++graph_clock_;
  ++st.captures;
  check(backend_.replay(*r.work), "replay recorded step");
  ++st.replays;
}

std::vector<float> Model::run(const std::vector<SeqStep>& batch, KvCache& kv, const std::vector<int32_t>& ids,
                              int64_t logit_rows, bool graph_step) {
  const int64_t T = ids.size();
  ensure_capacity(T, logit_rows);
  // This rank's heads (all of them unless tensor parallel); head_dim is the model's.
  const int H = heads_, Hkv = kv_heads_, Dh = cfg_.head_dim();

  backend_.busy_begin();  // device busy time covers the step's uploads and ops (not the download)
  Tensor ids_t = span_i32(ids_, 0, T);
  check(backend_.copy_from_host(ids_t, ids.data()), "upload token ids");
  check(kv_batch_.upload(plan_), "upload KV batch indices");
  const Tensor& pos_t = kv_batch_.positions();
  kernels::AttentionParams attn;
  attn.n_heads = H;
  attn.n_kv_heads = Hkv;
  attn.head_dim = Dh;
  attn.scale = 1.0f / std::sqrt(float(Dh));
  // QK^T and PV: 2 x 2 x head_dim FLOPs per (query, key) pair per head; query i of a sequence
  // sees pos0 + i + 1 keys.
  int64_t attn_pairs = 0;
  for (const SeqStep& st : batch) {
    const int64_t n = int64_t(st.tokens.size());
    attn_pairs += n * st.pos0 + n * (n + 1) / 2;
  }

  Tensor x = rows(x_, 0, T), h = rows(h_, 0, T), q = rows(q_, 0, T), k = rows(k_, 0, T), v = rows(v_, 0, T);
  Tensor att = rows(att_, 0, T), o = rows(o_, 0, T), gate = rows(gate_, 0, T), up = rows(up_, 0, T),
         ffn = rows(ffn_buf_, 0, T);
  kernels::Backend& be = backend_;
  const bool tp = tp_.active();

  // Every matmul as executed, counted from the shapes it ran on: 2 x rows x K x N.
  static const bool matmul_twice = planted(Defect::MatmulTwice);
  auto mm = [&](const Tensor& a, const kernels::Weight& w, Tensor& out) {
    flops_.matmul += 2 * a.rows() * a.cols() * out.cols();
    if (matmul_twice) check(be.matmul(a, w, out), "matmul (planted matmul-twice)");  // planted defect
    return be.matmul(a, w, out);
  };
  // Projections of one input in one call (the backend may run them as one pass).
  auto mm_multi = [&](const Tensor& a, std::initializer_list<kernels::MatmulOutput> outs) {
    for (const kernels::MatmulOutput& o : outs) flops_.matmul += 2 * a.rows() * a.cols() * o.y->cols();
    const std::span<const kernels::MatmulOutput> all(outs.begin(), outs.size());
    if (matmul_twice) check(be.matmul_multi(a, all), "matmul_multi (planted matmul-twice)");  // planted defect
    return be.matmul_multi(a, all);
  };
  Tensor last = rows(last_, 0, logit_rows), logits = rows(logits_, 0, logit_rows);
  // The step's ops, queued on the backend (recorded instead when this step is being recorded).
  auto enqueue = [&]() {
    // x[T, D] = embed[ids]
    check(be.embedding(ids_t, w_.embed, x), "embedding");
    for (int l = 0; l < cfg_.num_hidden_layers; ++l) {
      const LayerWeights& L = w_.layers[l];
      // Attention block: x += Wo * attn(rope(Wq h), rope(Wk h), Wv h), h = rmsnorm(x).
      // Column-parallel q/k/v (this rank's heads), row-parallel o_proj summed over ranks.
      check(be.rmsnorm(x, L.attn_norm, cfg_.rms_norm_eps, h), "attn rmsnorm", l);
      // q[T, H * Dh], k and v [T, Hkv * Dh]
      check(mm_multi(h, {{&L.wq, &q}, {&L.wk, &k}, {&L.wv, &v}}), "q/k/v_proj", l);
      check(be.rope(q, pos_t, H, Dh, cfg_.rope_theta), "rope q", l);
      check(be.rope(k, pos_t, Hkv, Dh, cfg_.rope_theta), "rope k", l);
      kernels::KvLayer& cache = kv.layer(l);
      check(be.kv_store(k, v, kv_batch_.slot_mapping(), cache), "kv_store", l);
      check(be.attention(q, cache, kv_batch_.attention(), attn, att), "attention", l);
      flops_.attention += 4 * int64_t(H) * Dh * attn_pairs;
      check(mm(att, L.wo, o), "o_proj", l);  // o[T, D] (a partial sum per rank when tensor parallel)
      if (tp) all_reduce(o);
      check(be.add(x, o, x), "residual add (attention)", l);
      // MLP block: x += Wdown (silu(Wgate h) * Wup h), h = rmsnorm(x).
      // Column-parallel gate/up (this rank's FFN columns), row-parallel down_proj summed over ranks.
      check(be.rmsnorm(x, L.ffn_norm, cfg_.rms_norm_eps, h), "ffn rmsnorm", l);
      check(mm_multi(h, {{&L.w_gate, &gate}, {&L.w_up, &up}}), "gate/up_proj", l);  // gate, up [T, F]
      check(be.silu_mul(gate, up, ffn), "silu_mul", l);
      check(mm(ffn, L.w_down, o), "down_proj", l);   // o[T, D]
      if (tp) all_reduce(o);
      check(be.add(x, o, x), "residual add (mlp)", l);
    }

    // Final norm on the rows whose logits are wanted, then logits[R, V] = lm_head * norm(x).
    int64_t r = 0;
    for (size_t s = 0; s < batch.size(); ++s) {
      const int64_t n = batch[s].tokens.size(), tok0 = plan_.query_start[s];
      const int64_t first = batch[s].all_logits ? tok0 : tok0 + n - 1;
      const int64_t count = batch[s].all_logits ? n : 1;
      Tensor src = rows(x, first, count), dst = rows(last_, r, count);
      check(be.rmsnorm(src, w_.final_norm, cfg_.rms_norm_eps, dst), "final rmsnorm");
      r += count;
    }
    check(mm(last, w_.lm_head, logits), "lm_head");  // this rank's vocabulary slice when tensor parallel
  };
  if (graph_step) {
    // Everything a recording bakes in: shapes, launch bounds, buffers (the KV pools of every
    // layer, the index tensors' generation).
    const auto& ab = kv_batch_.attention();
    std::vector<int64_t> key{T, logit_rows, ab.num_seqs, ab.max_blocks_per_seq, ab.max_context_len, kv.block_size(),
                             kv_batch_.generation(), int64_t(reinterpret_cast<intptr_t>(ab.block_tables.data)),
                             int64_t(reinterpret_cast<intptr_t>(x_.data))};
    for (int l = 0; l < cfg_.num_hidden_layers; ++l) {
      key.push_back(int64_t(reinterpret_cast<intptr_t>(kv.layer(l).k_pool.data)));
      key.push_back(int64_t(reinterpret_cast<intptr_t>(kv.layer(l).v_pool.data)));
    }
    run_graph_step(key, int64_t(cfg_.num_hidden_layers) * 4 * int64_t(H) * Dh * attn_pairs, enqueue);
  } else {
    enqueue();
  }
  backend_.busy_end();
  std::vector<float> out(static_cast<size_t>(logits.numel()));
  check(be.copy_to_host(out.data(), logits), "download logits");
  check(be.synchronize(), "synchronize");
  if (!tp) return out;
  // Vocabulary-parallel logits: gather [ranks][R][Vp] and interleave into [R][V], dropping padding.
  const int64_t R = logit_rows, Vp = vocab_cols_, V = cfg_.vocab_size, n = tp_.shard.ranks;
  gathered_.resize(size_t(n * R * Vp));
  comm::all_gather_host(*tp_.comm, out.data(), gathered_.data(), size_t(R * Vp), kernels::DType::F32);
  std::vector<float> full(size_t(R * V));
  for (int64_t q = 0; q < n; ++q)
    for (int64_t row = 0; row < R; ++row) {
      const int64_t v0 = q * Vp, cnt = std::min(Vp, V - v0);
      if (cnt <= 0) continue;
      std::copy_n(gathered_.data() + (q * R + row) * Vp, cnt, full.data() + row * V + v0);
    }
  return full;
}

}  // namespace cb::engine
