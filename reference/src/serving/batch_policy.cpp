// Batch-size policies: static, queue-table (the `batch-policy` claim) and slo (online step-time model).
#include "cb/engine/serving/batch_policy.h"
#include "cb/engine/model/planted_defects.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>

namespace cb::engine {

namespace {

// ---------------------------------------------------------------------------------------------
// static: wait for B requests (or the timeout), then run that batch to completion.
class StaticPolicy final : public BatchPolicy {
 public:
  StaticPolicy(int batch, double timeout_s) : batch_(batch), timeout_s_(timeout_s) {}
  std::string name() const override { return "static"; }
  int max_batch(const SchedulerView&) const override { return batch_; }
  bool admits_while_running() const override { return false; }
  // Start when a full batch is queued, or when the oldest queued request has waited `timeout_s`
  // (a partial batch); never with an empty queue. Whether a batch is still running is the
  // scheduler's business (admits_while_running() == false tells it not to start one then).
  bool ready_to_start(const SchedulerView& v) const override {
    if (v.queued <= 0) return false;
    return v.queued >= batch_ || v.oldest_wait_s >= timeout_s_;
  }

 private:
  int batch_;
  double timeout_s_;
};

// ---------------------------------------------------------------------------------------------
// queue-table: the batch of the first row whose `queue_below` exceeds the number of QUEUED
// requests (SchedulerView::queued: requests waiting to start, not counting running sequences).
class QueueTablePolicy final : public BatchPolicy {
 public:
  explicit QueueTablePolicy(std::vector<QueueTableRow> table) : table_(std::move(table)) {}
  std::string name() const override { return "queue-table"; }
  int max_batch(const SchedulerView& v) const override {
    if (planted(Defect::BatchIgnoresQueue)) return 16;  // planted defect: the queue is not read
    for (const auto& row : table_)
      if (v.queued < row.queue_below) return row.batch;
    return table_.back().batch;  // unreachable: the last row is INT_MAX and queued is an int
  }

 private:
  std::vector<QueueTableRow> table_;
};

std::string describe_row(const std::vector<QueueTableRow>& t, size_t i) {
  return "queue-table row " + std::to_string(i) + " {queue_below=" + std::to_string(t[i].queue_below) +
         ", batch=" + std::to_string(t[i].batch) + "}";
}

void validate_queue_table(const std::vector<QueueTableRow>& t) {
  if (t.empty()) throw std::invalid_argument("queue-table: the table is empty (need at least the INT_MAX row)");
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i].batch < 1)
      throw std::invalid_argument(describe_row(t, i) + ": batch must be >= 1");
    // The queue length is never negative, so a first row with queue_below <= 0 could never apply.
    if (i == 0 && t[i].queue_below < 1)
      throw std::invalid_argument(describe_row(t, i) + ": queue_below must be >= 1");
    if (i > 0 && t[i].queue_below <= t[i - 1].queue_below)
      throw std::invalid_argument(describe_row(t, i) + ": queue_below must be greater than the previous row's (" +
                                  std::to_string(t[i - 1].queue_below) + ")");
  }
  if (t.back().queue_below != INT_MAX)
    throw std::invalid_argument(describe_row(t, t.size() - 1) +
                                ": the last row's queue_below must be INT_MAX so every queue length has a batch");
}

// ---------------------------------------------------------------------------------------------
// slo: online model step_s = a + b*batch + c*tokens, fitted by exponentially weighted least
// squares. A decode step produces one token per sequence, so its duration is the TPOT and its
// token count equals its batch: the prediction used is a + (b + c) * batch.
class SloPolicy final : public BatchPolicy {
 public:
  static constexpr double kForget = 0.98;     // weight of the previous statistics per observation
  static constexpr double kRidge = 1e-9;      // ridge on the slopes, relative to their diagonal
  static constexpr double kRelTol = 1e-6;     // a prediction within 1 ppm of the target meets it
  static constexpr int kStartBatch = 4;       // conservative start before the model is usable
  static constexpr size_t kMinDistinct = 3;   // distinct batch sizes needed before fitting

  SloPolicy(double target_s, int max_batch)
      : target_s_(target_s), max_batch_(max_batch), choice_(std::min(kStartBatch, max_batch)) {}

  std::string name() const override { return "slo"; }
  int max_batch(const SchedulerView&) const override { return choice_; }

  void observe_step(int batch, int tokens, double seconds) override {
    // Garbage in (no sequences, negative counts, NaN/inf/negative time) is ignored, not fitted.
    if (batch < 1 || tokens < 0 || !std::isfinite(seconds) || seconds < 0) return;
    const std::array<double, 3> x{1.0, static_cast<double>(batch), static_cast<double>(tokens)};
    for (int i = 0; i < 3; ++i) {
      xty_[i] = kForget * xty_[i] + x[i] * seconds;
      for (int j = 0; j < 3; ++j) xtx_[i][j] = kForget * xtx_[i][j] + x[i] * x[j];
    }
    last_seen_[batch] = seconds;

    if (last_seen_.size() < kMinDistinct) {
      // Warm-up: double while the current size is shown to meet the target; halve on a miss.
      if (seconds <= target_s_ && batch >= choice_) choice_ = std::min(2 * choice_, max_batch_);
      else if (seconds > target_s_) choice_ = std::max(1, std::min(choice_, batch) / 2);
      return;
    }
    choice_ = fitted_choice();
  }

 private:
  // Solves (X^T W X + ridge) [a b c] = X^T W y by Gaussian elimination with partial pivoting.
  // The ridge applies to the slopes only (not the intercept), scaled to their diagonal, so it
  // removes the batch/tokens collinearity of decode-only data without biasing the fit measurably.
  bool solve(std::array<double, 3>& coef) const {
    std::array<std::array<double, 4>, 3> m{};
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) m[i][j] = xtx_[i][j];
      m[i][3] = xty_[i];
    }
    const double ridge = kRidge * (xtx_[1][1] + xtx_[2][2]) + 1e-12;
    m[1][1] += ridge;
    m[2][2] += ridge;
    for (int col = 0; col < 3; ++col) {
      int piv = col;
      for (int r = col + 1; r < 3; ++r)
        if (std::fabs(m[r][col]) > std::fabs(m[piv][col])) piv = r;
      if (!(std::fabs(m[piv][col]) > 0)) return false;
      std::swap(m[piv], m[col]);
      for (int r = col + 1; r < 3; ++r) {
        const double f = m[r][col] / m[col][col];
        for (int k = col; k < 4; ++k) m[r][k] -= f * m[col][k];
      }
    }
    for (int i = 2; i >= 0; --i) {
      double s = m[i][3];
      for (int k = i + 1; k < 3; ++k) s -= m[i][k] * coef[k];
      coef[i] = s / m[i][i];
    }
    return std::isfinite(coef[0]) && std::isfinite(coef[1]) && std::isfinite(coef[2]);
  }

  // Largest batch whose most recent step met the target; 1 when none did (never 0).
  int largest_observed_under_target() const {
    int best = 1;
    for (const auto& [b, s] : last_seen_)
      if (s <= target_s_) best = std::max(best, std::min(b, max_batch_));
    return best;
  }

  int fitted_choice() const {
    std::array<double, 3> coef{};
    const bool ok = solve(coef);
    const double slope = coef[1] + coef[2];  // per-sequence cost of a decode step (tokens = batch)
    // Degenerate: no solution, or no positive per-sequence cost (inverted or flat data; "flat"
    // means the whole [1, max_batch] range costs under 1 ppm of the target, i.e. rounding noise,
    // which would otherwise extrapolate straight to max_batch).
    if (!ok || !(slope * max_batch_ > kRelTol * target_s_)) return largest_observed_under_target();
    const double limit = target_s_ * (1 + kRelTol);
    for (int b = max_batch_; b >= 1; --b)
      if (coef[0] + slope * b <= limit) return b;
    return 1;
  }

  double target_s_;
  int max_batch_;
  int choice_;
  std::array<std::array<double, 3>, 3> xtx_{};
  std::array<double, 3> xty_{};
  std::map<int, double> last_seen_;  // batch size -> duration of its most recent step
};

}  // namespace

std::unique_ptr<BatchPolicy> make_static_policy(int batch, double timeout_s) {
  if (batch < 1) throw std::invalid_argument("static policy: batch must be >= 1, got " + std::to_string(batch));
  if (!(timeout_s >= 0) || std::isinf(timeout_s))
    throw std::invalid_argument("static policy: timeout_s must be finite and >= 0");
  return std::make_unique<StaticPolicy>(batch, timeout_s);
}

// Rows are "queued < queue_below -> batch", first match wins:
//   queued 0..9 -> 4 (the article's "queue < 10 -> batch 4"),
//   queued 10..50 -> 16 (our middle step),
//   queued 51.. -> 32 (queued < 51 fails exactly when queued > 50: the article's "queue > 50 -> 32").
std::vector<QueueTableRow> default_queue_table() { return {{10, 4}, {51, 16}, {INT_MAX, 32}}; }

std::unique_ptr<BatchPolicy> make_queue_table_policy(std::vector<QueueTableRow> table) {
  validate_queue_table(table);
  return std::make_unique<QueueTablePolicy>(std::move(table));
}

std::unique_ptr<BatchPolicy> make_slo_policy(double tpot_target_s, int max_batch) {
  if (!(tpot_target_s > 0) || std::isinf(tpot_target_s))
    throw std::invalid_argument("slo policy: tpot_target_s must be finite and > 0");
  if (max_batch < 1) throw std::invalid_argument("slo policy: max_batch must be >= 1, got " + std::to_string(max_batch));
  return std::make_unique<SloPolicy>(tpot_target_s, max_batch);
}

std::vector<std::string> batch_policy_names() { return {"static", "queue-table", "slo"}; }

std::unique_ptr<BatchPolicy> make_policy(const std::string& name) {
  if (name == "static") return make_static_policy(8, 0.05);
  if (name == "queue-table") return make_queue_table_policy();
  if (name == "slo") return make_slo_policy(0.050);
  std::string known;
  for (const auto& n : batch_policy_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown batch policy '" + name + "' (known: " + known + ")");
}

}  // namespace cb::engine
