// Held-out task accuracy and perplexity through the inference engine (train/trainer.h): prompts
// decoded greedily in batches with Model::forward over a paged KV cache, as serving would.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "cb/engine/model/sampler.h"
#include "cb/engine/train/trainer.h"

namespace cb::engine::train {
namespace {

// Block tables giving each sequence its own consecutive blocks of one shared cache.
struct Tables {
  std::vector<std::vector<int32_t>> per_seq;
  int blocks = 0;
};
Tables make_tables(const std::vector<int>& lengths, int block_size) {
  Tables t;
  for (int len : lengths) {
    const int n = (len + block_size - 1) / block_size;
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) ids[size_t(i)] = t.blocks + i;
    t.blocks += n;
    t.per_seq.push_back(std::move(ids));
  }
  return t;
}

// Log-softmax probability of `target` in one row of logits.
double log_prob(const float* logits, int V, int target) {
  double mx = -INFINITY, sum = 0;
  for (int c = 0; c < V; ++c) mx = std::max(mx, double(logits[c]));
  for (int c = 0; c < V; ++c) sum += std::exp(double(logits[c]) - mx);
  return double(logits[target]) - mx - std::log(sum);
}

std::vector<std::string> eval_tasks(const EvalOptions& opt) {
  std::vector<std::string> tasks = opt.tasks.empty() ? task_names() : opt.tasks;
  for (const auto& t : tasks) check_task_name(t);
  if (opt.examples_per_task <= 0)
    throw std::invalid_argument("evaluate: examples_per_task must be > 0 (got " + std::to_string(opt.examples_per_task) + ")");
  if (opt.batch <= 0) throw std::invalid_argument("evaluate: batch must be > 0 (got " + std::to_string(opt.batch) + ")");
  return tasks;
}

// Greedy answers (at most answer-length tokens, stopping at EOS) for a group of examples.
std::vector<std::vector<int32_t>> greedy_answers(Model& model, const std::vector<TaskExample>& ex) {
  const ModelConfig& cfg = model.config();
  constexpr int kBlock = 16;
  std::vector<int> lengths;
  for (const auto& e : ex) lengths.push_back(int(e.prompt.size() + e.answer.size()));
  const Tables tab = make_tables(lengths, kBlock);
  KvCache kv(model.backend(), cfg, tab.blocks, kBlock);
  std::vector<std::vector<int32_t>> out(ex.size());
  std::vector<int32_t> cur(ex.size());
  std::vector<size_t> live;
  std::vector<SeqStep> steps;
  for (size_t s = 0; s < ex.size(); ++s) {
    steps.push_back(SeqStep{ex[s].prompt, 0, tab.per_seq[s], false});
    live.push_back(s);
  }
  const int V = cfg.vocab_size;
  while (!live.empty()) {
    const std::vector<float> logits = model.forward(steps, kv);
    std::vector<size_t> still;
    steps.clear();
    for (size_t r = 0; r < live.size(); ++r) {
      const size_t s = live[r];
      const int32_t tok = argmax(std::span<const float>(logits.data() + r * size_t(V), size_t(V)));
      out[s].push_back(tok);
      if (tok == cfg.eos_token_id || out[s].size() >= ex[s].answer.size()) continue;
      cur[s] = tok;
      still.push_back(s);
    }
    for (size_t s : still)
      steps.push_back(SeqStep{std::span<const int32_t>(&cur[s], 1), int(ex[s].prompt.size() + out[s].size() - 1), tab.per_seq[s], false});
    live = std::move(still);
  }
  return out;
}

}  // namespace

double TaskAccuracy::mean() const {
  if (per_task.empty()) return 0;
  double s = 0;
  for (const auto& t : per_task) s += t.accuracy();
  return s / double(per_task.size());
}

const TaskScore* TaskAccuracy::find(const std::string& task) const {
  for (const auto& t : per_task)
    if (t.task == task) return &t;
  return nullptr;
}

nlohmann::json TaskAccuracy::to_json() const {
  nlohmann::json tasks = nlohmann::json::object();
  for (const auto& t : per_task)
    tasks[t.task] = {{"correct", t.correct}, {"total", t.total}, {"accuracy", t.accuracy()}, {"chance", t.chance}};
  return {{"tasks", tasks}, {"mean", mean()}};
}

TaskAccuracy evaluate_tasks(Model& model, const EvalOptions& opt) {
  TaskAccuracy acc;
  for (const std::string& task : eval_tasks(opt)) {
    const std::vector<TaskExample> set = held_out_set(task, opt.examples_per_task, opt.seed, opt.shape);
    TaskScore score;
    score.task = task;
    score.chance = chance_accuracy(task, opt.shape);
    for (size_t i = 0; i < set.size(); i += size_t(opt.batch)) {
      const std::vector<TaskExample> group(set.begin() + long(i), set.begin() + long(std::min(set.size(), i + size_t(opt.batch))));
      const auto answers = greedy_answers(model, group);
      for (size_t s = 0; s < group.size(); ++s) score.correct += answers[s] == group[s].answer;
      score.total += int(group.size());
    }
    acc.per_task.push_back(score);
  }
  return acc;
}

TaskAccuracy evaluate_tasks(LoadedModel& m, const EvalOptions& opt) { return evaluate_tasks(m.model(), opt); }

double perplexity(LoadedModel& m, const std::vector<int32_t>& tokens) {
  const ModelConfig& cfg = m.config();
  if (tokens.size() < 2) throw std::invalid_argument("perplexity: needs at least 2 tokens (got " + std::to_string(tokens.size()) + ")");
  if (int64_t(tokens.size()) > cfg.max_position_embeddings)
    throw std::invalid_argument("perplexity: " + std::to_string(tokens.size()) + " tokens exceed the model's context of " +
                                std::to_string(cfg.max_position_embeddings));
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= cfg.vocab_size)
      throw std::invalid_argument("perplexity: token #" + std::to_string(i) + " = " + std::to_string(tokens[i]) +
                                  " is outside the vocabulary [0, " + std::to_string(cfg.vocab_size) + ")");
  constexpr int kBlock = 16, kChunk = 512;
  const int n = int(tokens.size()) - 1;  // inputs; each predicts the next token
  KvCache kv(m.backend(), cfg, (n + kBlock - 1) / kBlock, kBlock);
  const std::vector<int32_t> table = KvCache::sequential_table(kv.blocks_for(n));
  double nll = 0;
  for (int p = 0; p < n; p += kChunk) {
    const int len = std::min(kChunk, n - p);
    const auto logits = m.model().forward({SeqStep{std::span<const int32_t>(tokens.data() + p, size_t(len)), p, table, true}}, kv);
    for (int i = 0; i < len; ++i) nll -= log_prob(logits.data() + size_t(i) * size_t(cfg.vocab_size), cfg.vocab_size, tokens[size_t(p + i + 1)]);
  }
  return std::exp(nll / n);
}

double answer_perplexity(LoadedModel& m, const EvalOptions& opt) {
  const ModelConfig& cfg = m.config();
  const int V = cfg.vocab_size;
  double nll = 0;
  int64_t count = 0;
  for (const std::string& task : eval_tasks(opt)) {
    const std::vector<TaskExample> set = held_out_set(task, opt.examples_per_task, opt.seed, opt.shape);
    for (size_t i = 0; i < set.size(); i += size_t(opt.batch)) {
      const size_t end = std::min(set.size(), i + size_t(opt.batch));
      std::vector<std::vector<int32_t>> seqs;
      std::vector<int> lengths;
      for (size_t s = i; s < end; ++s) {
        std::vector<int32_t> seq = set[s].prompt;
        seq.insert(seq.end(), set[s].answer.begin(), set[s].answer.end() - 1);  // the last answer token is only a target
        lengths.push_back(int(seq.size()));
        seqs.push_back(std::move(seq));
      }
      const Tables tab = make_tables(lengths, 16);
      KvCache kv(m.backend(), cfg, tab.blocks, 16);
      std::vector<SeqStep> steps;
      for (size_t s = 0; s < seqs.size(); ++s) steps.push_back(SeqStep{seqs[s], 0, tab.per_seq[s], true});
      const auto logits = m.model().forward(steps, kv);
      size_t row = 0;
      for (size_t s = 0; s < seqs.size(); ++s) {
        const TaskExample& e = set[i + s];
        const size_t first = e.prompt.size() - 1;  // row predicting answer[0]
        for (size_t a = 0; a < e.answer.size(); ++a) {
          nll -= log_prob(logits.data() + (row + first + a) * size_t(V), V, e.answer[a]);
          ++count;
        }
        row += seqs[s].size();
      }
    }
  }
  return std::exp(nll / double(count));
}

std::vector<int32_t> held_out_tokens(int n_per_task, uint64_t seed, const TaskShape& shape) {
  std::vector<std::vector<TaskExample>> sets;
  for (const auto& t : task_names()) sets.push_back(held_out_set(t, n_per_task, seed, shape));
  std::vector<int32_t> out;
  for (int i = 0; i < n_per_task; ++i)
    for (const auto& set : sets) {
      out.insert(out.end(), set[size_t(i)].prompt.begin(), set[size_t(i)].prompt.end());
      out.insert(out.end(), set[size_t(i)].answer.begin(), set[size_t(i)].answer.end());
    }
  return out;
}

}  // namespace cb::engine::train
