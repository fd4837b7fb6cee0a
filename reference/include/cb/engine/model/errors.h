#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace cb::engine {

// Bad model files or bad user input. The message names the file, the key or tensor, and the
// problem, e.g. "model.safetensors: tensor 'model.norm.weight': data offsets [10, 20) overlap 'x'".
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A tensor shape as error messages print it: "[2048, 5632]".
inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace cb::engine
