// The engine adapter: the reference engine behind EngineAccess (cb/harness/core/engine_access.h).
// This file, the in-process SUT and the engine-side suites are the only harness code that
// includes engine headers; `claimbench-http` is built without them.
#include <algorithm>

#include "cb/engine/model/engine.h"
#include "cb/engine/bench/engine_bench.h"
#include "cb/engine/model/planted_defects.h"
#include "cb/engine/serving/placement_trace.h"
#include "cb/harness/core/engine_access.h"
#include "cb/harness/engine/inprocess_sut.h"
#include "cb/harness/engine/suites.h"
#include "cb/kernels/backend.h"

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class ReferenceEngine : public InProcessEngine {
 public:
  ReferenceEngine(const fs::path& dir, const std::string& backend) : model_(engine::LoadedModel::open(dir, backend)) {
    const auto& cfg = model_->config();
    facts_.name = dir.filename().string();
    facts_.bos_token_id = cfg.bos_token_id;
    facts_.max_context = cfg.max_position_embeddings;
    facts_.vocab_size = cfg.vocab_size;
    facts_.matmul_flops_per_token = double(cfg.matmul_flops_per_token());
    facts_.kv_bytes_per_token = 2.0 * cfg.num_hidden_layers * cfg.kv_dim() * 4.0;  // K and V, F32
    facts_.weight_bytes = double(model_->weight_bytes());
  }
  const ModelFacts& facts() const override { return facts_; }
  std::unique_ptr<load::Sut> make_sut(const load::InProcessConfig& cfg) override {
    return std::make_unique<load::InProcessSut>(*model_, cfg);
  }

 private:
  std::unique_ptr<engine::LoadedModel> model_;
  ModelFacts facts_;
};

std::vector<double> samples_of(const json& j) { return j["samples"].get<std::vector<double>>(); }

EngineBenchFigures engine_bench(const EngineBenchRequest& q, const std::function<void(const std::string&)>& progress) {
  engine::EngineBenchOptions eo;
  eo.model_dir = q.model_dir;
  eo.prefill_tokens = q.prefill_tokens;
  eo.decode_tokens = q.decode_tokens;
  eo.repetitions = q.repetitions;
  eo.seed = q.seed;
  const json eb = engine::run_engine_bench(eo, progress);
  EngineBenchFigures f;
  f.weight_bytes = eb["model"]["weight_bytes"].get<double>();
  f.decode_tokens_per_s = samples_of(eb["decode"]["tokens_per_s"]);
  f.decode_bw_fraction = samples_of(eb["decode"]["bw_fraction"]);
  f.decode_triad_paired_fraction = samples_of(eb["decode"]["triad_paired_fraction"]);
  f.prefill_gflops = samples_of(eb["prefill"]["gflops"]);
  f.prefill_peak_fraction_samples = samples_of(eb["prefill"]["peak_fraction"]);
  f.decode_tokens_per_s_median = eb["decode"]["tokens_per_s"]["median"].get<double>();
  f.decode_bw_fraction_median = eb["ratios"]["decode_bw_fraction"].get<double>();
  f.decode_triad_paired_fraction_median = eb["ratios"]["decode_triad_paired_fraction"].get<double>();
  f.prefill_gflops_median = eb["prefill"]["gflops"]["median"].get<double>();
  f.prefill_peak_fraction = eb["ratios"]["prefill_peak_fraction"].get<double>();
  return f;
}

json kv_placement_tables(int sequences, int context, int block_size, uint32_t seed) {
  engine::PlacementTraceOptions o;
  o.long_sequences = sequences;
  o.long_context = context;
  o.block_size = block_size;
  o.seed = seed;
  const engine::PlacementTrace t = engine::run_placement_trace(o);
  // The same trace with the prefix cache on: the pool fills with cached blocks and new ones come
  // by eviction, which must not scatter the runs the pair's tables (prefix cache off, the
  // engine's default) have. Recorded beside them.
  engine::PlacementTraceOptions pc = o;
  pc.prefix_cache = true;
  const engine::PlacementTrace p = engine::run_placement_trace(pc);
  return {{"block_size", block_size},
          {"context", context},
          {"pool_blocks", t.pool_blocks},
          {"tables", t.tables},
          {"mean_run_blocks", t.mean_run_blocks},
          {"jumps_per_sequence", t.jumps_per_sequence},
          {"source", "engine allocator (" + engine::block_placement_name(o.placement) + ") after a seeded churn trace"},
          {"trace",
           {{"placement", engine::block_placement_name(o.placement)},
            {"seed", seed},
            {"long_sequences", sequences},
            {"long_prompt", o.long_prompt},
            {"long_context", context},
            {"short_concurrency", o.short_concurrency},
            {"short_prompt", {o.short_prompt_min, o.short_prompt_max}},
            {"short_output", {o.short_output_min, o.short_output_max}},
            {"warm_steps", o.warm_steps},
            {"steps", t.steps},
            {"short_requests", t.short_requests}}},
          {"prefix_cache_trace",
           {{"mean_run_blocks", p.mean_run_blocks},
            {"jumps_per_sequence", p.jumps_per_sequence},
            {"shared_prefixes", pc.shared_prefixes},
            {"shared_prefix_tokens", pc.shared_prefix_tokens},
            {"prefix_hits", p.prefix_hits},
            {"prefix_queries", p.prefix_queries},
            {"evictions", p.evictions}}}};
}

}  // namespace

void install_engine_adapter() {
  EngineAccess a;
  a.open = [](const fs::path& dir, const std::string& backend) -> std::unique_ptr<InProcessEngine> {
    return std::make_unique<ReferenceEngine>(dir, backend);
  };
  a.backend_unavailable = [](const std::string& name) { return kernels::backend_unavailable_reason(name); };
  a.bench = engine_bench;
  a.parse_defects = [](const std::string& csv) { return engine::parse_defect_list(csv); };
  a.kv_placement_tables = kv_placement_tables;
  a.suites = {{"engine", run_engine_suite}, {"accuracy", run_accuracy_suite}, {"scaling", run_scaling_suite}};
  install_engine_access(std::move(a));
}

}  // namespace cb::harness
