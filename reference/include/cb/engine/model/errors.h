#pragma once
#include <stdexcept>
#include <string>

namespace cb::engine {

// Bad model files or bad user input. The message names the file, the key or tensor, and the
// problem, e.g. "model.safetensors: tensor 'model.norm.weight': data offsets [10, 20) overlap 'x'".
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace cb::engine
