#include "cb/engine/model/sampler.h"

#include "cb/engine/model/planted_defects.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
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

namespace {

// On x86 the row's exp pass is compiled for AVX-512 and AVX2 beside the baseline, picked at load
// (an ifunc). Not under ThreadSanitizer: the ifunc resolver runs at relocation, before the TSan
// runtime is up, and its instrumented entry crashes the program at start.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define CB_SAMPLER_CLONES [[gnu::target_clones("avx512f", "avx2", "default")]]
#else
#define CB_SAMPLER_CLONES
#endif

// A libm double exp per token was most of the serving engine's own per-step time at batch 64
// (~1.5 us per 259-token row, 64 rows a step). Cephes expf: x = n ln2 + r with |r| <= ln2/2, e^r
// by a degree-6 polynomial (~2 ulp); x below -87 gives 0 (a weight under 1e-38 of the top one).
// Rounding to n by adding 1.5 * 2^23 keeps the loop free of libm calls, so it vectorizes.
CB_SAMPLER_CLONES double exp_weights_pass(const float* logits, int n, float mx, float inv_t, float* w) {
#pragma omp simd
  for (int i = 0; i < n; ++i) {
    const float x0 = (logits[i] - mx) * inv_t;
    // Clamped so 2^k stays a normal float: e^88 at most (mx below a logit), and a NaN logit takes
    // -87 (a tiny weight) instead of an undefined float-to-int conversion.
    const float x = x0 > -87.f ? (x0 < 88.f ? x0 : 88.f) : -87.f;
    const float kRound = 12582912.f;  // 1.5 * 2^23
    const float k = (x * 1.44269504088896341f + kRound) - kRound;
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.f;
    const float scale = std::bit_cast<float>((static_cast<int32_t>(k) + 127) << 23);
    w[i] = x0 < -87.f ? 0.f : p * scale;
  }
  double total = 0;
#pragma omp simd reduction(+ : total)
  for (int i = 0; i < n; ++i) total += w[i];
  return total;
}

}  // namespace

double exp_weights(std::span<const float> logits, float mx, float inv_t, std::span<float> w) {
  if (w.size() < logits.size()) throw std::invalid_argument("exp_weights: output shorter than the logits");
  return exp_weights_pass(logits.data(), static_cast<int>(logits.size()), mx, inv_t, w.data());
}

// The largest logit, in a vectorized pass (std::max_element's loop carries its running max through
// memory: ~6 cycles per token).
float max_logit(std::span<const float> logits) {
  float m = -INFINITY;
  const float* l = logits.data();
  const size_t n = logits.size();
#pragma omp simd reduction(max : m)
  for (size_t i = 0; i < n; ++i) m = std::max(m, l[i]);
  return m;
}

int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) return 0;
  const float m = max_logit(logits);
  const auto it = std::find(logits.begin(), logits.end(), m);  // the first one, as max_element
  // NaN logits never equal the max: fall back to max_element's answer.
  return static_cast<int32_t>((it != logits.end() ? it : std::max_element(logits.begin(), logits.end())) - logits.begin());
}

namespace {

// The first i with w[0] + ... + w[i] > r, or -1 when rounding left r at or past the last sum.
// Whole blocks of 64 are skipped by their (vectorized) sums; the block holding r is scanned.
int64_t first_past(std::span<const float> w, double r) {
  constexpr size_t kBlock = 64;
  const size_t n = w.size();
  double acc = 0;
  size_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    double b = 0;
    const float* p = w.data() + i;
#pragma omp simd reduction(+ : b)
    for (size_t j = 0; j < kBlock; ++j) b += p[j];
    if (r < acc + b) break;
    acc += b;
  }
  for (; i < n; ++i)
    if (r < (acc += w[i])) return static_cast<int64_t>(i);
  return -1;
}

}  // namespace

// Sorting the whole vocabulary for every token made sampling the larger part of a serving step
// (batch 64 on the default model: ~1 ms of a 2 ms step; O(V log V) per row at V = 32K). Now:
// without top-k / top-p, one pass in id order; with top-k, a partial sort of k; with top-p alone,
// only tokens that can be in the nucleus are sorted. A token whose probability is below
// (1 - top_p) / V cannot be: all tokens at or below it hold less than 1 - top_p, so the tokens
// above it already reach top_p.
int32_t Sampler::sample(std::span<const float> logits) {
  if (p_.temperature == 0.f) return argmax(logits);
  const int V = static_cast<int>(logits.size());
  const double mx = max_logit(logits);
  const bool top_k = p_.top_k > 0 && p_.top_k < V, top_p = p_.top_p < 1.f;
  const auto weight = [&](int i) { return std::exp((logits[i] - mx) / p_.temperature); };  // unnormalized
  const auto before = [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  // Reused across calls on this thread: a fresh vocabulary-sized vector per token cost page faults
  // and a memset (V = 32K: ~0.4 ms of a ~0.5 ms draw).
  thread_local std::vector<float> w;
  w.resize(static_cast<size_t>(V));
  std::vector<int32_t> idx;
  if (planted(Defect::SlowSampling)) {  // planted defect: the old full sort of the vocabulary per token
    idx.resize(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), before);
    double total = 0;
    for (size_t i = 0; i < idx.size(); ++i) total += w[i] = static_cast<float>(weight(idx[i]));
    std::uniform_real_distribution<double> u(0.0, total);
    const int64_t at = first_past(w, u(rng_));
    return at >= 0 ? idx[size_t(at)] : argmax(logits);
  }
  if (!top_k && !top_p) {  // every token, in id order
    const double total = exp_weights(logits, static_cast<float>(mx), 1.f / p_.temperature, w);
    std::uniform_real_distribution<double> u(0.0, total);
    const int64_t at = first_past(w, u(rng_));
    return at >= 0 ? static_cast<int32_t>(at) : argmax(logits);  // -1: r == total after rounding
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
    total = exp_weights(logits, static_cast<float>(mx), 1.f / p_.temperature, w);
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
