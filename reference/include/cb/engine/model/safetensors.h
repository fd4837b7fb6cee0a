// Memory-mapped safetensors reading (single file or sharded via model.safetensors.index.json)
// and writing. Format: 8-byte little-endian header length N, N bytes of JSON header
// {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {...}}, then the data.
#pragma once

#include <filesystem>
#include <functional>
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

// A safetensors file's header and tensor table, validated as SafetensorsFile::open describes
// below. parse_safetensors reads it from the file's bytes in memory (open() maps the file and calls
// it; the fuzz targets call it directly); `source` starts every error message (ModelError).
struct SafetensorsHeader {
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  size_t data_start = 0;  // byte offset of the data section: 8 + header length
};
SafetensorsHeader parse_safetensors(const void* bytes, size_t size, const std::string& source);

// One mapped .safetensors file. Validation on open: header length within the file, JSON parses,
// every entry has a known dtype (F32, F16, BF16, I8, I32, U8, I64; others rejected by name), shape product
// times dtype size equals end - begin, offsets within the data section, no two tensors overlap,
// and (as the reference implementation requires) the tensors cover the data section without gaps.
// Every error message starts with the file path and names the tensor.
//
// Views point into a read-only mapping: never write through them. The data section starts at
// byte 8 + N; files from write_safetensors (and the reference Python/Rust writers) pad N to a
// multiple of 8, so with tensors of one dtype every view is aligned to its element size. A file
// that mixes dtypes (or has an unpadded header) can yield f32 views that are not 4-byte aligned;
// consumers that read such views as float* rely on x86, where unaligned loads are fine.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Drops this process's resident pages of [p, p + bytes) if it lies in the mapping (whole pages
  // only); the data stays readable (it refaults from the file). For weights a backend copied.
  bool release_pages(const void* p, size_t bytes) const;
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
  // The file errors about the whole store name: model.safetensors, or the index json.
  const std::filesystem::path& source() const { return source_; }
  // The file that holds `name` (its shard when sharded), or source() when absent.
  const std::filesystem::path& path_of(const std::string& name) const;
  // SafetensorsFile::release_pages on whichever file maps [p, p + bytes).
  void release_pages(const void* p, size_t bytes) const;

 private:
  std::filesystem::path source_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> by_name_;
};

struct NamedTensor {
  std::string name;
  kernels::Tensor tensor;  // host memory
};

// Writes tensors (in the given order, 8-byte aligned data) to `path` atomically (temp + rename).
// Tensors lie back to back in the data section, as the format requires; the header is padded
// with spaces to a multiple of 8 bytes.
void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The same file, but each tensor's bytes are produced on demand: fill(i, dst, nbytes) writes
// tensor i (row-major, in spec.dtype) to dst, and is written out while tensor i + 1 is filled.
// Peak memory is two tensors' worth of buffers, not the model.
struct TensorSpec {
  std::string name;
  kernels::DType dtype = kernels::DType::F32;
  std::vector<int64_t> shape;
};
using TensorFill = std::function<void(size_t index, void* dst, size_t nbytes)>;
void write_safetensors_streamed(const std::filesystem::path& path, const std::vector<TensorSpec>& specs,
                                const TensorFill& fill,
                                const std::map<std::string, std::string>& metadata = {});

// Safetensors dtype names ("F32", "BF16", ...).
const char* safetensors_dtype_name(kernels::DType t);

}  // namespace cb::engine
