#include "cb/engine/model/engine.h"

#include <stdexcept>

#include "cb/engine/model/errors.h"
#include "cb/engine/model/planted_defects.h"
#include "cb/engine/model/weights.h"

namespace cb::engine {
namespace fs = std::filesystem;

std::unique_ptr<LoadedModel> LoadedModel::open(const fs::path& dir, const std::string& backend, comm::Communicator* tp,
                                               const LoadOptions& load) {
  if (!fs::is_directory(dir)) throw ModelError(dir.string() + ": model directory does not exist");
  auto m = std::unique_ptr<LoadedModel>(new LoadedModel());
  m->dir_ = dir;
  m->cfg_ = ModelConfig::load(dir / "config.json");
  m->store_ = WeightStore::open_dir(dir);
  ModelWeights w = bind_weights(m->store_, m->cfg_);
  if (planted(Defect::DensePruned)) pad_pruned_to_dense(dir, m->cfg_, w);
  if (load.bf16_activations) {
    const auto bf16_dot = [&](kernels::Weight& x, const std::string& name) {
      if (x.layout != kernels::WeightLayout::Dense || x.dtype() != kernels::DType::BF16)
        throw ModelError((dir / "model.safetensors").string() + ": tensor '" + name + "': bf16 activations need dense bf16 weights, this one is " +
                         kernels::dtype_name(x.dtype()) + (x.layout == kernels::WeightLayout::Dense ? "" : " (not dense)"));
      x.act_quant = kernels::ActQuant::Bf16;
    };
    const std::vector<std::string> names = linear_module_names(m->cfg_);
    size_t i = 0;
    for (auto& L : w.layers)
      for (kernels::Weight* x : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) bf16_dot(*x, names.at(i++) + ".weight");
    bf16_dot(w.lm_head, m->cfg_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  }
  TpContext ctx;
  if (tp && tp->size() > 1) {
    // This rank's slice of every weight, copied out of the mapping (the rest stays unread).
    m->shard_ = plan_shard(m->cfg_, tp->rank(), tp->size());
    w = shard_weights(w, m->cfg_, m->shard_, m->shard_store_);
    ctx = {tp, m->shard_};
  } else {
    m->shard_ = plan_shard(m->cfg_, 0, 1);
  }
  m->kv_cfg_ = kv_config_for(m->cfg_, m->shard_);
  m->backend_ = kernels::make_backend(backend);
  if (load.profile_ops) {
    m->inner_backend_ = std::move(m->backend_);
    auto prof = std::make_unique<kernels::ProfilingBackend>(*m->inner_backend_);
    m->profiler_ = prof.get();
    m->backend_ = std::move(prof);
  }
  // The ref backend uses the mapped weights in place; cpu copies large ones into huge pages (and
  // packs dense f32/bf16 matmul weights into panels there) and device backends upload them. A
  // copied or packed weight's pages in the mapping are dropped (RSS once; should anything read
  // `values` again, the pages come back from the file).
  auto up = [&](kernels::Weight& x) {
    const kernels::Weight host = x;
    x = m->backend_->upload_weight(host);
    for (auto [from, to] : {std::pair{&host.values, &x.values}, {&host.scales, &x.scales}, {&host.meta, &x.meta}})
      if (!from->empty() && (from->data != to->data || (from == &host.values && !x.packed.empty())))
        m->store_.release_pages(from->data, from->nbytes());
  };
  auto up_t = [&](kernels::Tensor& t) { t = m->backend_->upload_tensor(t); };
  up_t(w.embed);
  up_t(w.final_norm);
  up(w.lm_head);
  for (auto& L : w.layers) {
    up_t(L.attn_norm);
    up_t(L.ffn_norm);
    for (kernels::Weight* x : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) up(*x);
  }
  m->model_ = std::make_unique<Model>(m->cfg_, std::move(w), *m->backend_, ctx);
  if (load.step_graphs) m->model_->set_step_graphs(true);
  m->tok_ = tok::load_tokenizer(dir);
  // generation_config.json's EOS ids (via the tokenizer) end generation too.
  for (int id : m->tok_->eos_ids())
    if (id >= 0 && !m->cfg_.is_eos(id)) m->cfg_.extra_eos_token_ids.push_back(id);
  if (m->tok_->vocab_size() > m->cfg_.vocab_size)
    throw ModelError((dir / "config.json").string() + ": vocab_size " + std::to_string(m->cfg_.vocab_size) +
                     " is smaller than the vocabulary of the model's " + m->tok_->kind() + " tokenizer (" +
                     std::to_string(m->tok_->vocab_size()) + " tokens, " + m->tok_->describe().value("file", std::string()) + ")");
  return m;
}

GenerateResult generate(LoadedModel& lm, const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<void(int32_t)>& on_token) {
  const ModelConfig& cfg = lm.config();
  if (prompt.empty()) throw std::invalid_argument("prompt is empty");
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= cfg.vocab_size)
      throw std::invalid_argument("prompt token #" + std::to_string(i) + " = " + std::to_string(prompt[i]) +
                                  " is outside the vocabulary [0, " + std::to_string(cfg.vocab_size) + ")");
  if (opt.max_tokens <= 0) throw std::invalid_argument("max_tokens must be > 0 (got " + std::to_string(opt.max_tokens) + ")");
  const int ctx = cfg.max_position_embeddings;
  if (int(prompt.size()) > ctx)
    throw std::invalid_argument("prompt has " + std::to_string(prompt.size()) + " tokens, longer than the model's context of " +
                                std::to_string(ctx) + " (max_position_embeddings)");
  if (int(prompt.size()) + opt.max_tokens > ctx)
    throw std::invalid_argument("prompt (" + std::to_string(prompt.size()) + " tokens) + max_tokens (" +
                                std::to_string(opt.max_tokens) + ") exceeds the model's context of " + std::to_string(ctx));

  const int total = int(prompt.size()) + opt.max_tokens;
  KvCache kv(lm.backend(), lm.kv_config(), (total + 15) / 16, 16);
  const std::vector<int32_t> table = KvCache::sequential_table(kv.blocks_for(total));

  Sampler sampler(opt.sampling);
  GenerateResult r;
  r.prompt_tokens = int(prompt.size());
  using clock = std::chrono::steady_clock;

  // Prefill (optionally chunked), then sample the first token.
  auto t0 = clock::now();
  const int chunk = opt.prefill_chunk > 0 ? opt.prefill_chunk : int(prompt.size());
  std::vector<float> logits;
  for (int p = 0; p < int(prompt.size()); p += chunk) {
    const int n = std::min(chunk, int(prompt.size()) - p);
    SeqStep st{std::span<const int32_t>(prompt.data() + p, n), p, table, false};
    logits = lm.model().forward({st}, kv);
  }
  if (opt.on_logits) opt.on_logits(logits);
  int32_t next = sampler.sample(logits);
  r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  r.tokens.push_back(next);
  if (on_token) on_token(next);
  r.stop_reason = "length";

  auto t1 = clock::now();
  int pos = int(prompt.size());
  while (int(r.tokens.size()) < opt.max_tokens) {
    if (opt.stop_at_eos && cfg.is_eos(next)) {
      r.stop_reason = "eos";
      break;
    }
    SeqStep st{std::span<const int32_t>(&next, 1), pos, table, false};
    logits = lm.model().forward({st}, kv);
    if (opt.on_logits) opt.on_logits(logits);
    next = sampler.sample(logits);
    ++pos;
    ++r.decode_steps;
    r.tokens.push_back(next);
    if (on_token) on_token(next);
  }
  if (opt.stop_at_eos && cfg.is_eos(next)) r.stop_reason = "eos";
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return r;
}

fs::path default_model_dir() { return fs::path(CB_SOURCE_DIR) / "reference" / "models" / "default"; }

}  // namespace cb::engine
