// AdamW with decoupled weight decay, the learning-rate schedule, and global-norm clipping.
#pragma once

#include <cstdint>
#include <vector>

#include "cb/engine/train/graph.h"

namespace cb::engine::train {

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
};

class AdamW {
 public:
  // Norm weights get no decay; elements with frozen[i] != 0 never move (empty = none frozen).
  AdamW(const ParamLayout& layout, AdamWConfig cfg, std::vector<uint8_t> frozen = {});
  // One update at learning rate lr: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
  // p -= lr (m_hat / (sqrt(v_hat) + eps) + wd p) (decay only where the tensor decays).
  void step(float* params, const float* grads, double lr);
  int64_t steps() const { return t_; }
  const std::vector<uint8_t>& frozen() const { return frozen_; }

 private:
  AdamWConfig cfg_;
  std::vector<uint8_t> decay_;   // per element: 1 = apply weight decay
  std::vector<uint8_t> frozen_;
  std::vector<float> m_, v_;
  int64_t t_ = 0;
};

// Linear warmup from lr / warmup to lr over `warmup` steps, then cosine decay to lr * min_ratio at
// step `total`. step is 1-based.
double lr_at(int step, int total, int warmup, double lr, double min_ratio);

// Zeroes the gradient of frozen elements, then scales all gradients so their global L2 norm is at
// most max_norm (0 = no clipping). Returns the norm before clipping.
double clip_grad_norm(float* grads, size_t n, double max_norm, const std::vector<uint8_t>& frozen = {});

}  // namespace cb::engine::train
