#include "cb/engine/server/sequence_logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>

namespace cb::engine {

std::vector<double> log_softmax(const float* logits, int vocab) {
  double mx = -INFINITY;
  for (int c = 0; c < vocab; ++c) mx = std::max(mx, double(logits[c]));
  double sum = 0;
  for (int c = 0; c < vocab; ++c) sum += std::exp(double(logits[c]) - mx);
  const double lse = mx + std::log(sum);
  std::vector<double> out(static_cast<size_t>(vocab));
  for (int c = 0; c < vocab; ++c) out[size_t(c)] = double(logits[c]) - lse;
  return out;
}

std::vector<PositionLogprobs> sequence_logprobs(LoadedModel& m, const std::vector<int32_t>& tokens, int top_n) {
  const ModelConfig& cfg = m.config();
  const int V = cfg.vocab_size;
  if (tokens.empty()) throw std::invalid_argument("sequence_logprobs: empty sequence");
  if (int64_t(tokens.size()) > cfg.max_position_embeddings)
    throw std::invalid_argument("sequence_logprobs: " + std::to_string(tokens.size()) + " tokens exceed the model's context of " +
                                std::to_string(cfg.max_position_embeddings));
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= V)
      throw std::invalid_argument("sequence_logprobs: token #" + std::to_string(i) + " = " + std::to_string(tokens[i]) +
                                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
  if (m.model().tp().active()) throw std::runtime_error("log-probabilities are not computed on a tensor-parallel model");
  top_n = std::clamp(top_n, 0, V);
  std::vector<PositionLogprobs> out(tokens.size());
  const int n = int(tokens.size()) - 1;  // inputs; input i predicts token i + 1
  if (n == 0) return out;
  constexpr int kBlock = 16, kChunk = 512;
  KvCache kv(m.backend(), m.kv_config(), (n + kBlock - 1) / kBlock, kBlock);
  const std::vector<int32_t> table = KvCache::sequential_table(kv.blocks_for(n));
  std::vector<int32_t> order(static_cast<size_t>(V));
  for (int p = 0; p < n; p += kChunk) {
    const int len = std::min(kChunk, n - p);
    const auto logits = m.model().forward({SeqStep{std::span<const int32_t>(tokens.data() + p, size_t(len)), p, table, true}}, kv);
    for (int i = 0; i < len; ++i) {
      const std::vector<double> lp = log_softmax(logits.data() + size_t(i) * size_t(V), V);
      PositionLogprobs& o = out[size_t(p + i + 1)];
      o.logprob = lp[size_t(tokens[size_t(p + i + 1)])];
      if (top_n > 0) {
        std::iota(order.begin(), order.end(), 0);
        // Ties broken by the smaller id, so the answer does not depend on the sort.
        std::partial_sort(order.begin(), order.begin() + top_n, order.end(), [&](int32_t a, int32_t b) {
          return lp[size_t(a)] != lp[size_t(b)] ? lp[size_t(a)] > lp[size_t(b)] : a < b;
        });
        for (int k = 0; k < top_n; ++k) o.top.emplace_back(order[size_t(k)], lp[size_t(order[size_t(k)])]);
      }
    }
  }
  return out;
}

}  // namespace cb::engine
