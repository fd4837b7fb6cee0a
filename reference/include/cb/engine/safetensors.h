// Memory-mapped safetensors reading (single file or sharded via model.safetensors.index.json)
// and writing. Format: 8-byte little-endian header length N, N bytes of JSON header
// {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {...}}, then the data.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cb/kernels/tensor.h"

namespace cb::engine {

struct TensorInfo {
  std::string name;
  kernels::DType dtype = kernels::DType::F32;
  std::vector<int64_t> shape;
  size_t begin = 0;  // byte offsets into the data section
  size_t end = 0;
};

// One mapped .safetensors file. Validation on open: header length within the file, JSON parses,
// every entry has a known dtype (F32, F16, BF16, I8, I32; others rejected by name), shape product
// times dtype size equals end - begin, offsets within the data section, no two tensors overlap.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // A host view straight into the mapping (no copy); throws ModelError if the name is absent.
  kernels::Tensor view(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const char* data_ = nullptr;  // start of the data section
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a model directory: `model.safetensors`, or the shards listed in
// `model.safetensors.index.json` ({"weight_map": {tensor: shard file}}).
class WeightStore {
 public:
  static WeightStore open_dir(const std::filesystem::path& model_dir);
  bool has(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws ModelError naming the tensor
  kernels::Tensor view(const std::string& name) const;
  std::vector<std::string> names() const;
  size_t total_bytes() const;

 private:
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> by_name_;
};

struct NamedTensor {
  std::string name;
  kernels::Tensor tensor;  // host memory
};

// Writes tensors (in the given order, 8-byte aligned data) to `path` atomically (temp + rename).
void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace cb::engine
