#include "cb/engine/model/sampler.h"

#include "cb/engine/model/planted_defects.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace cb::engine {

void SamplingParams::validate() const {
  if (!(temperature >= 0.f) || !std::isfinite(temperature))
    throw std::invalid_argument("temperature must be a finite number >= 0 (got " + std::to_string(temperature) + ")");
  if (top_k < 0) throw std::invalid_argument("top_k must be >= 0 (got " + std::to_string(top_k) + ")");
  if (!(top_p > 0.f && top_p <= 1.f)) throw std::invalid_argument("top_p must be in (0, 1] (got " + std::to_string(top_p) + ")");
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) { p_.validate(); }

int32_t argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Sorting the whole vocabulary for every token made sampling the larger part of a serving step
// (batch 64 on the default model: ~1 ms of a 2 ms step; O(V log V) per row at V = 32K). Now:
// without top-k / top-p, one pass in id order; with top-k, a partial sort of k; with top-p alone,
// only tokens that can be in the nucleus are sorted. A token whose probability is below
// (1 - top_p) / V cannot be: all tokens at or below it hold less than 1 - top_p, so the tokens
// above it already reach top_p.
int32_t Sampler::sample(std::span<const float> logits) {
  if (p_.temperature == 0.f) return argmax(logits);
  const int V = static_cast<int>(logits.size());
  const double mx = *std::max_element(logits.begin(), logits.end());
  const bool top_k = p_.top_k > 0 && p_.top_k < V, top_p = p_.top_p < 1.f;
  if (planted(Defect::SlowSampling)) {  // planted defect: the old full sort of the vocabulary per token
    std::vector<int32_t> idx(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    std::vector<double> w(idx.size());
    double total = 0;
    for (size_t i = 0; i < idx.size(); ++i) total += w[i] = std::exp((logits[idx[i]] - mx) / p_.temperature);
    std::uniform_real_distribution<double> u(0.0, total);
    double r = u(rng_), acc = 0;
    for (size_t i = 0; i < idx.size(); ++i)
      if (r < (acc += w[i])) return idx[i];
    return idx.back();
  }
  if (!top_k && !top_p) {
    std::vector<double> w(static_cast<size_t>(V));
    double total = 0;
    for (int i = 0; i < V; ++i) total += w[size_t(i)] = std::exp((logits[i] - mx) / p_.temperature);
    std::uniform_real_distribution<double> u(0.0, total);
    double r = u(rng_), acc = 0;
    for (int i = 0; i < V; ++i) {
      acc += w[size_t(i)];
      if (r < acc) return i;
    }
    return argmax(logits);  // r == total after rounding
  }
  // Candidates sorted by logit, highest first (stable ties: lower id first).
  const auto before = [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::vector<int32_t> idx;
  double total = 0;  // sum over all candidates (the top k, else the whole vocabulary)
  int keep = 0;
  if (top_k) {
    idx.resize(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    keep = p_.top_k;
    std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), before);
    for (int i = 0; i < keep; ++i) total += std::exp((logits[idx[size_t(i)]] - mx) / p_.temperature);
  } else {
    for (int i = 0; i < V; ++i) total += std::exp((logits[i] - mx) / p_.temperature);
    const double floor = (1.0 - double(p_.top_p)) / V * total;
    for (int i = 0; i < V; ++i)
      if (std::exp((logits[i] - mx) / p_.temperature) >= floor) idx.push_back(i);
    std::sort(idx.begin(), idx.end(), before);
    keep = static_cast<int>(idx.size());
  }
  std::vector<double> prob(static_cast<size_t>(keep));
  for (int i = 0; i < keep; ++i) prob[size_t(i)] = std::exp((logits[idx[size_t(i)]] - mx) / p_.temperature);
  double sum = total;
  if (top_p) {
    double cum = 0;
    int n = 0;
    while (n < keep) {
      cum += prob[size_t(n)] / total;
      ++n;
      if (cum >= p_.top_p) break;
    }
    keep = n;
    sum = std::accumulate(prob.begin(), prob.begin() + keep, 0.0);
  }
  std::uniform_real_distribution<double> u(0.0, sum);
  double r = u(rng_), acc = 0;
  for (int i = 0; i < keep; ++i) {
    acc += prob[size_t(i)];
    if (r < acc) return idx[size_t(i)];
  }
  return idx[size_t(keep) - 1];
}

}  // namespace cb::engine
