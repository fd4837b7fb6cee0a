// Token sampling: greedy when temperature == 0, else temperature, then top-k, then top-p
// (nucleus) filtering, drawn from a seeded generator so a (seed, logits) pair always gives the
// same token.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>

namespace cb::engine {

struct SamplingParams {
  float temperature = 0.f;  // 0 = greedy (argmax)
  int top_k = 0;            // 0 = off
  float top_p = 1.f;        // 1 = off
  uint64_t seed = 0;
  // Throws std::invalid_argument naming the field for out-of-range values.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  int32_t sample(std::span<const float> logits);
  const SamplingParams& params() const { return p_; }

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

// The index of the largest logit (the first of equal ones); max_logit is its value (-inf if empty).
int32_t argmax(std::span<const float> logits);
float max_logit(std::span<const float> logits);

// w[i] = e^((logits[i] - mx) * inv_t) (float, ~2 ulp, 0 below e^-87, e^88 above e^88) in one vectorized pass over the
// row; returns the sum of w. The sampler's unnormalized softmax. Throws if w is shorter than logits.
double exp_weights(std::span<const float> logits, float mx, float inv_t, std::span<float> w);

}  // namespace cb::engine
