// Runs a scope at a given OpenMP thread count and restores the previous count on every exit path
// (the trainer's --threads, refengine bench's 1 -> N thread scaling).
#pragma once

#include <omp.h>

namespace cb::engine {

struct ThreadScope {
  int saved = omp_get_max_threads();
  // n <= 0 keeps the current count.
  explicit ThreadScope(int n) {
    if (n > 0) omp_set_num_threads(n);
  }
  ~ThreadScope() { omp_set_num_threads(saved); }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;
};

}  // namespace cb::engine
