// AdamW, learning-rate schedule and gradient clipping (train/optim.h).
#include "cb/engine/train/optim.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace cb::engine::train {

AdamW::AdamW(const ParamLayout& layout, AdamWConfig cfg, std::vector<uint8_t> frozen)
    : cfg_(cfg), decay_(layout.total, 1), frozen_(std::move(frozen)), m_(layout.total, 0.f), v_(layout.total, 0.f) {
  if (!frozen_.empty() && frozen_.size() != layout.total)
    throw std::invalid_argument("AdamW: frozen mask has " + std::to_string(frozen_.size()) + " entries, parameters " +
                                std::to_string(layout.total));
  for (const ParamTensor& t : layout.tensors)
    if (t.is_norm) std::fill(decay_.begin() + long(t.offset), decay_.begin() + long(t.offset + t.numel), 0);
}

void AdamW::step(float* p, const float* g, double lr) {
  ++t_;
  // float arithmetic (vectorizes); the bias corrections and lr are folded into two scalars.
  const float b1 = cfg_.beta1, b2 = cfg_.beta2, eps = cfg_.eps, wd = cfg_.weight_decay;
  const float step = float(lr / (1.0 - std::pow(double(b1), double(t_))));
  const float inv_c2 = float(1.0 / (1.0 - std::pow(double(b2), double(t_))));
  const float decay = float(lr) * wd;
  const int64_t n = int64_t(m_.size());
  const uint8_t* frozen = frozen_.empty() ? nullptr : frozen_.data();
  float* m = m_.data();
  float* v = v_.data();
  const uint8_t* dec = decay_.data();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    if (frozen && frozen[i]) continue;
    m[i] = b1 * m[i] + (1.f - b1) * g[i];
    v[i] = b2 * v[i] + (1.f - b2) * g[i] * g[i];
    p[i] -= step * m[i] / (std::sqrt(v[i] * inv_c2) + eps) + (dec[i] ? decay * p[i] : 0.f);
  }
}

double lr_at(int step, int total, int warmup, double lr, double min_ratio) {
  if (warmup > 0 && step <= warmup) return lr * double(step) / double(warmup);
  if (total <= warmup) return lr;
  const double progress = std::min(1.0, double(step - warmup) / double(total - warmup));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return lr * (min_ratio + (1.0 - min_ratio) * cosine);
}

double clip_grad_norm(float* g, size_t n, double max_norm, const std::vector<uint8_t>& frozen) {
  // Partial sums over fixed chunks, added in chunk order: the norm (and so the whole run) does not
  // depend on how many threads there are or which finishes first, as an OpenMP reduction would.
  constexpr int64_t kChunks = 256;
  const int64_t N = int64_t(n), per = (N + kChunks - 1) / kChunks;
  const bool has_frozen = !frozen.empty();
  std::vector<double> part(kChunks, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < kChunks; ++c) {
    double ss = 0;
    for (int64_t i = c * per; i < std::min(N, (c + 1) * per); ++i) {
      if (has_frozen && frozen[size_t(i)]) g[i] = 0.f;
      ss += double(g[i]) * g[i];
    }
    part[size_t(c)] = ss;
  }
  double ss = 0;
  for (double p : part) ss += p;
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    const float s = float(max_norm / norm);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; ++i) g[i] *= s;
  }
  return norm;
}

}  // namespace cb::engine::train
