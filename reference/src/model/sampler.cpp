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
  const auto weight = [&](int i) { return std::exp((logits[i] - mx) / p_.temperature); };  // unnormalized
  const auto before = [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::vector<int32_t> idx;
  if (planted(Defect::SlowSampling)) {  // planted defect: the old full sort of the vocabulary per token
    idx.resize(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), before);
  } else if (!top_k && !top_p) {
    idx.resize(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);  // id order: no sort
  }
  if (!idx.empty()) {  // every token, in the order built above
    std::vector<double> w(idx.size());
    double total = 0;
    for (size_t i = 0; i < idx.size(); ++i) total += w[i] = weight(idx[i]);
    std::uniform_real_distribution<double> u(0.0, total);
    double r = u(rng_), acc = 0;
    for (size_t i = 0; i < idx.size(); ++i)
      if (r < (acc += w[i])) return idx[i];
    return argmax(logits);  // r == total after rounding
  }
  // Candidates sorted by logit, highest first (stable ties: lower id first), with their weights.
  double total = 0;  // sum over all candidates (the top k, else the whole vocabulary)
  std::vector<double> prob;
  if (top_k) {
    idx.resize(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + p_.top_k, idx.end(), before);
    idx.resize(static_cast<size_t>(p_.top_k));
    for (int32_t i : idx) total += prob.emplace_back(weight(i));
  } else {
    std::vector<double> w(static_cast<size_t>(V));
    for (int i = 0; i < V; ++i) total += w[size_t(i)] = weight(i);
    const double floor = (1.0 - double(p_.top_p)) / V * total;
    for (int i = 0; i < V; ++i)
      if (w[size_t(i)] >= floor) idx.push_back(i);
    std::sort(idx.begin(), idx.end(), before);
    for (int32_t i : idx) prob.push_back(w[size_t(i)]);
  }
  int keep = static_cast<int>(idx.size());
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
