// Measuring model variants for the accuracy suite and checking them against golden baselines.
#include "cb/harness/engine/accuracy.h"
#include "cb/harness/suites/accuracy_http.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "cb/engine/compress/export.h"
#include "cb/engine/compress/prune.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/train/trainer.h"
#include "cb/harness/core/results.h"

namespace cb::harness::accuracy {
namespace fs = std::filesystem;
using nlohmann::json;

bool is_default_model(const fs::path& dir) {
  std::error_code ec;
  return fs::equivalent(dir, engine::default_model_dir(), ec);
}

std::vector<Variant> default_variants(const fs::path& dense_dir, const fs::path& work_dir) {
  const fs::path models = engine::default_model_dir().parent_path();
  return {
      {"dense", dense_dir, "the FP32 model", false},
      {"ptq-int8", work_dir / "ptq-int8", "refengine quantize --scheme w8a8 (post-training, per-channel weights, per-token activations)",
       false},
      {"qat-int8", models / "default-qat-int8", "QAT fine-tune then INT8 W8A8 export (ci/build-model-variants.sh)", true},
      {"sparse24", models / "default-sparse24", "2:4 Wanda pruning, fine-tune keeping zeros, compressed 2:4 export (ci/build-model-variants.sh)",
       true},
      {"structured60", models / "default-structured60",
       "structured pruning of KV groups and MLP channels to -60% FLOPs/token, then fine-tune (ci/build-model-variants.sh)", true},
  };
}

namespace {

json read_config(const fs::path& dir) { return read_json_file(dir / "config.json"); }

// Decode speed at batch 1: a fixed prompt from the held-out text, greedy, no early stop.
std::vector<double> decode_speed(engine::LoadedModel& m, const EvalSettings& s, double& executed_per_token) {
  std::vector<int32_t> text = engine::train::held_out_tokens(8, 1);
  text.resize(std::min<size_t>(text.size(), size_t(s.decode_prompt_tokens)));
  engine::GenerateOptions g;
  g.max_tokens = s.decode_tokens;
  g.stop_at_eos = false;
  const auto f0 = m.model().executed_flops();
  engine::generate(m, text, g);  // warm-up: first-touch of weights and buffers; its FLOPs are counted
  executed_per_token = double(m.model().executed_flops().total() - f0.total()) / double(text.size() + size_t(s.decode_tokens));
  std::vector<double> tps;
  for (int r = 0; r < s.decode_reps; ++r) tps.push_back(engine::generate(m, text, g).decode_tokens_per_s());
  return tps;
}

}  // namespace

VariantMeasure measure_variant(const Variant& v, const EvalSettings& s) {
  VariantMeasure out;
  out.variant = v;
  auto m = engine::LoadedModel::open(v.dir, s.backend);
  engine::train::EvalOptions eo;
  eo.examples_per_task = s.examples_per_task;
  const auto acc = engine::train::evaluate_tasks(*m, eo);
  out.tasks = acc.to_json()["tasks"];
  out.mean_accuracy = acc.mean();
  out.answer_perplexity = engine::train::answer_perplexity(*m, eo);
  out.model_bytes = engine::compress::model_file_bytes(v.dir);
  out.decode_tps = decode_speed(*m, s, out.executed_flops_per_token);
  out.decode_tps_median = median(out.decode_tps);
  out.flops_per_token = engine::compress::flops_per_token(engine::ModelConfig::load(v.dir / "config.json"), s.flops_context).total();
  out.config = read_config(v.dir);
  return out;
}

fs::path default_baselines_file() { return fs::path(CB_SOURCE_DIR) / "suites" / "accuracy" / "baselines.json"; }

std::vector<BaselineCheckRow> check_baselines(const std::vector<VariantMeasure>& measured, const fs::path& file,
                                              int examples_per_task) {
  const json b = read_json_file(file);
  const std::string where = file.string();
  if (b.value("schema", "") != "claimbench.accuracy_baselines")
    throw std::runtime_error(where + ": key 'schema': expected \"claimbench.accuracy_baselines\"");
  if (b.value("examples_per_task", 0) != examples_per_task)
    throw std::runtime_error(where + ": baselines were measured on " + std::to_string(b.value("examples_per_task", 0)) +
                             " examples per task, this run uses " + std::to_string(examples_per_task));
  const double threshold = b.at("threshold_points").get<double>();
  std::vector<BaselineCheckRow> rows;
  for (const auto& vm : measured) {
    if (!b["variants"].contains(vm.variant.name)) continue;
    const json& tasks = b["variants"][vm.variant.name]["tasks"];
    for (const auto& [task, base] : tasks.items()) {
      if (!vm.tasks.contains(task)) continue;
      BaselineCheckRow r;
      r.variant = vm.variant.name;
      r.task = task;
      r.baseline = base.get<double>();
      r.measured = vm.tasks[task]["accuracy"].get<double>();
      r.drop_points = 100.0 * (r.baseline - r.measured);
      r.threshold_points = threshold;
      r.regressed = r.drop_points > threshold;
      rows.push_back(r);
    }
  }
  return rows;
}

json baselines_json(const std::vector<VariantMeasure>& measured, int examples_per_task, double threshold_points) {
  json v = json::object();
  for (const auto& vm : measured) {
    json tasks = json::object();
    for (const auto& [task, t] : vm.tasks.items()) tasks[task] = t["accuracy"];
    v[vm.variant.name] = {{"tasks", tasks}, {"answer_perplexity", vm.answer_perplexity}, {"provenance", vm.variant.provenance}};
  }
  return {{"schema", "claimbench.accuracy_baselines"},
          {"note", "held-out exact-match accuracy per task of each committed variant of the default model; a drop of more than "
                   "threshold_points (percentage points) fails. Greedy decoding on fixed seeded sets is deterministic on one "
                   "build; the threshold absorbs answers flipped by float rounding on other CPUs (each example is 0.5 points at "
                   "200 per task). Regenerate: CB_UPDATE_BASELINES=1 cb_accuracy_tests"},
          {"examples_per_task", examples_per_task},
          {"threshold_points", threshold_points},
          {"variants", v}};
}

ByoText byo_perplexity(const fs::path& model_dir, const fs::path& text_file, int window, const std::string& backend) {
  std::ifstream in(text_file, std::ios::binary);
  if (!in) throw std::runtime_error(text_file.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  auto m = engine::LoadedModel::open(model_dir, backend);
  const std::vector<int32_t> all = m->tokenizer().encode(ss.str(), false);
  if (all.size() < 2) throw std::runtime_error(text_file.string() + ": needs at least 2 bytes of text, found " + std::to_string(all.size()));
  window = std::min(window, m->config().max_position_embeddings);
  ByoText r;
  double nll = 0;  // summed over predicted tokens
  // Each window is BOS + up to window-1 bytes; every byte of the file is predicted exactly once.
  for (size_t start = 0; start < all.size(); start += size_t(window) - 1) {
    std::vector<int32_t> w;
    w.push_back(m->tokenizer().bos());
    const size_t end = std::min(all.size(), start + size_t(window) - 1);
    w.insert(w.end(), all.begin() + long(start), all.begin() + long(end));
    const double ppl = engine::train::perplexity(*m, w);
    nll += std::log(ppl) * double(w.size() - 1);
    r.tokens += int64_t(w.size() - 1);
    ++r.windows;
  }
  r.perplexity = std::exp(nll / double(r.tokens));
  return r;
}

ByoQa byo_exact_match(const fs::path& model_dir, const fs::path& jsonl_file, const std::string& backend) {
  // The same reader (and errors) as the accuracy suite over HTTP, so both score the same lines.
  const std::vector<accuracy_http::QaExample> examples = accuracy_http::read_qa_jsonl(jsonl_file);
  auto m = engine::LoadedModel::open(model_dir, backend);
  const auto& tok = m->tokenizer();
  ByoQa r;
  r.failures = json::array();
  for (const auto& ex : examples) {
    const int lineno = ex.line;
    const std::string where = jsonl_file.string() + ":" + std::to_string(lineno);
    const std::string& prompt = ex.prompt;
    const std::string& answer = ex.answer;
    engine::GenerateOptions g;
    g.max_tokens = int(answer.size()) + 1;  // the answer's bytes and EOS
    const auto prompt_ids = tok.encode(prompt, true);
    if (int(prompt_ids.size()) + g.max_tokens > m->config().max_position_embeddings)
      throw std::runtime_error(where + ": prompt and answer exceed the model's context of " +
                               std::to_string(m->config().max_position_embeddings) + " tokens");
    auto res = engine::generate(*m, prompt_ids, g);
    if (!res.tokens.empty() && res.tokens.back() == tok.eos()) res.tokens.pop_back();
    const std::string got = tok.decode(res.tokens);
    ++r.total;
    if (got == answer)
      ++r.correct;
    else if (r.failures.size() < 20)
      r.failures.push_back({{"line", lineno}, {"expected", answer}, {"got", got}});
  }
  return r;
}

}  // namespace cb::harness::accuracy
