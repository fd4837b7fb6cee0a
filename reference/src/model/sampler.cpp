#include "cb/engine/model/sampler.h"

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

int32_t Sampler::sample(std::span<const float> logits) {
  if (p_.temperature == 0.f) return argmax(logits);
  const int V = static_cast<int>(logits.size());
  std::vector<int32_t> idx(V);
  std::iota(idx.begin(), idx.end(), 0);
  // Candidates sorted by logit, highest first (stable ties: lower id first).
  int keep = (p_.top_k > 0 && p_.top_k < V) ? p_.top_k : V;
  std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), [&](int a, int b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<double> prob(keep);
  const double mx = logits[idx[0]];
  double sum = 0;
  for (int i = 0; i < keep; ++i) sum += prob[i] = std::exp((logits[idx[i]] - mx) / p_.temperature);
  if (p_.top_p < 1.f) {
    double cum = 0;
    int n = 0;
    while (n < keep) {
      cum += prob[n] / sum;
      ++n;
      if (cum >= p_.top_p) break;
    }
    keep = n;
    sum = std::accumulate(prob.begin(), prob.begin() + keep, 0.0);
  }
  std::uniform_real_distribution<double> u(0.0, sum);
  double r = u(rng_), acc = 0;
  for (int i = 0; i < keep; ++i) {
    acc += prob[i];
    if (r < acc) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace cb::engine
