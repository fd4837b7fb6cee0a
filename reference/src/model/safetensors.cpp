// Safetensors: a validating mmap reader, the model-directory store (single file or sharded), and
// an atomic, streaming writer. Format: 8-byte little-endian header length N, N bytes of JSON
// header, then the data section, whose tensors lie back to back and cover it exactly.
#include "cb/engine/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <future>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cb/engine/model/errors.h"

namespace cb::engine {
namespace {

using nlohmann::json;
using kernels::DType;

// The reference implementation's limit; a larger header is a corrupt length field.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string range_str(size_t begin, size_t end) {
  std::string s = "[";  // (not "[" + to_string(): GCC 12's -Wrestrict false positive, PR 105329)
  s += std::to_string(begin) + ", " + std::to_string(end) + ")";
  return s;
}

std::string sys_error() { return std::strerror(errno); }

bool parse_dtype(const std::string& s, DType* out) {
  if (s == "F32") { *out = DType::F32; return true; }
  if (s == "F16") { *out = DType::F16; return true; }
  if (s == "BF16") { *out = DType::BF16; return true; }
  if (s == "I8") { *out = DType::I8; return true; }
  if (s == "I32") { *out = DType::I32; return true; }
  if (s == "U8") { *out = DType::U8; return true; }
  if (s == "I64") { *out = DType::I64; return true; }
  return false;
}

// Dtypes the safetensors format defines but this engine does not load.
bool is_known_safetensors_dtype(const std::string& s) {
  static const char* const kKnown[] = {"BOOL", "I16", "U16", "U32", "U64", "F64",
                                       "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2",
                                       "F4", "C64"};
  for (const char* k : kKnown)
    if (s == k) return true;
  return false;
}

// A non-negative integer that fits int64 (JSON dims and offsets), or false.
bool get_index(const json& v, int64_t* out) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
    return true;
  }
  return false;
}

kernels::Tensor make_view(const std::filesystem::path& path, const TensorInfo& ti, const char* data) {
  if (ti.shape.size() > 4)
    throw ModelError(path.string() + ": tensor '" + ti.name + "': " + std::to_string(ti.shape.size()) +
                     " dims; tensors have at most 4");
  kernels::Tensor t;
  t.data = const_cast<char*>(data + ti.begin);  // read-only mapping: never written through
  t.dtype = ti.dtype;
  t.mem = kernels::MemSpace::Host;
  t.ndim = static_cast<int>(ti.shape.size());
  for (size_t i = 0; i < ti.shape.size(); ++i) t.shape[i] = ti.shape[i];
  return t;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I8: return "I8";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
    case DType::I64: return "I64";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsHeader parse_safetensors(const void* file_bytes, size_t file_size, const std::string& p) {
  // The same message as open() gives: the bytes are a file's contents.
  if (file_size < 8)
    throw ModelError(p + ": file is " + std::to_string(file_size) +
                     " bytes, shorter than the 8-byte header length field");
  const auto* bytes = static_cast<const unsigned char*>(file_bytes);
  SafetensorsHeader out;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian
  if (n > kMaxHeaderBytes)
    throw ModelError(p + ": header length " + std::to_string(n) + " is absurdly large (limit " +
                     std::to_string(kMaxHeaderBytes) + " bytes); not a safetensors file?");
  if (n > file_size - 8)
    throw ModelError(p + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                     std::to_string(file_size) + " bytes)");
  const char* header = reinterpret_cast<const char*>(bytes + 8);
  out.data_start = 8 + n;
  const uint64_t data_size = file_size - 8 - n;

  json h;
  try {
    h = json::parse(header, header + n);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
    throw ModelError(p + ": header JSON does not parse: " + e.what());
  }
  if (!h.is_object()) throw ModelError(p + ": header is a JSON " + std::string(h.type_name()) + ", not an object");

  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) throw ModelError(p + ": '__metadata__' is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string())
          throw ModelError(p + ": '__metadata__' key '" + m.key() + "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = p + ": tensor '" + name + "': ";
    if (!e.is_object()) throw ModelError(where + "entry is not an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!e.contains(key)) throw ModelError(where + "missing '" + key + "'");

    TensorInfo ti;
    ti.name = name;
    const json& dt = e.at("dtype");
    if (!dt.is_string()) throw ModelError(where + "'dtype' is not a string");
    const std::string dts = dt.get<std::string>();
    if (!parse_dtype(dts, &ti.dtype)) {
      if (is_known_safetensors_dtype(dts))
        throw ModelError(where + "unsupported dtype '" + dts + "' (supported: F32, F16, BF16, I8, I32, U8, I64)");
      throw ModelError(where + "unknown dtype '" + dts + "'");
    }

    const json& sh = e.at("shape");
    if (!sh.is_array()) throw ModelError(where + "'shape' is not an array");
    for (const json& d : sh) {
      int64_t v = 0;
      if (!get_index(d, &v)) throw ModelError(where + "'shape' holds a non-integer " + d.dump());
      ti.shape.push_back(v);
    }
    for (int64_t d : ti.shape)
      if (d < 0) throw ModelError(where + "negative dimension " + std::to_string(d) + " in shape " + shape_str(ti.shape));

    const json& off = e.at("data_offsets");
    int64_t b = 0, en = 0;
    if (!off.is_array() || off.size() != 2 || !get_index(off[0], &b) || !get_index(off[1], &en) || b < 0 || en < 0)
      throw ModelError(where + "'data_offsets' " + off.dump() + " is not a pair of non-negative integers");
    ti.begin = static_cast<size_t>(b);
    ti.end = static_cast<size_t>(en);
    if (ti.begin > ti.end)
      throw ModelError(where + "data offsets " + range_str(ti.begin, ti.end) + " have begin > end");
    if (ti.end > data_size)
      throw ModelError(where + "data offsets " + range_str(ti.begin, ti.end) + " run past the data section (" +
                       std::to_string(data_size) + " bytes)");

    uint64_t need = kernels::dtype_size(ti.dtype);
    bool overflow = false;
    for (int64_t d : ti.shape) overflow = overflow || __builtin_mul_overflow(need, static_cast<uint64_t>(d), &need);
    if (overflow || need != ti.end - ti.begin)
      throw ModelError(where + "shape " + shape_str(ti.shape) + " of " + dts + " needs " +
                       (overflow ? std::string("more than 2^64") : std::to_string(need)) + " bytes but data offsets " +
                       range_str(ti.begin, ti.end) + " hold " + std::to_string(ti.end - ti.begin));
    out.tensors.emplace(name, std::move(ti));
  }

  // Tensors must tile the data section: no overlap, no gap, nothing left over.
  std::vector<const TensorInfo*> order;
  for (const auto& [name, ti] : out.tensors) order.push_back(&ti);
  std::stable_sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  size_t covered = 0;             // end of the data covered so far
  const TensorInfo* last = nullptr;  // the tensor that reaches `covered`
  for (const TensorInfo* ti : order) {
    const std::string where = p + ": tensor '" + ti->name + "': data offsets " + range_str(ti->begin, ti->end);
    if (ti->begin < covered)
      throw ModelError(where + " overlap tensor '" + last->name + "' " + range_str(last->begin, last->end));
    if (ti->begin > covered)
      throw ModelError(where + " leave a gap of " + std::to_string(ti->begin - covered) + " bytes " +
                       (last ? "after tensor '" + last->name + "'" : std::string("at the start of the data section")) +
                       " (safetensors data must be contiguous)");
    covered = ti->end;
    last = ti;
  }
  if (covered != data_size)
    throw ModelError(p + ": data section has " + std::to_string(data_size - covered) +
                     " trailing bytes not covered by any tensor" +
                     (last ? " (last tensor '" + last->name + "' ends at " + std::to_string(covered) + ")" : std::string()));
  return out;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string p = path.string();
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;

  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ModelError(p + ": cannot open: " + sys_error());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string err = sys_error();
    ::close(fd);
    throw ModelError(p + ": cannot stat: " + err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw ModelError(p + ": not a regular file");
  }
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    throw ModelError(p + ": file is " + std::to_string(file_size) +
                     " bytes, shorter than the 8-byte header length field");
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const std::string map_err = map == MAP_FAILED ? sys_error() : "";
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) throw ModelError(p + ": cannot mmap: " + map_err);
  f->map_ = map;  // from here on the destructor unmaps
  f->map_size_ = file_size;
  SafetensorsHeader h = parse_safetensors(map, file_size, p);
  f->data_ = static_cast<const char*>(map) + h.data_start;
  f->tensors_ = std::move(h.tensors);
  f->metadata_ = std::move(h.metadata);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

kernels::Tensor SafetensorsFile::view(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw ModelError(path_.string() + ": tensor '" + name + "': not in this file");
  return make_view(path_, it->second, data_);
}

// ---------------------------------------------------------------------------------------------
// WeightStore

WeightStore WeightStore::open_dir(const std::filesystem::path& model_dir) {
  namespace fs = std::filesystem;
  WeightStore store;
  const fs::path single = model_dir / "model.safetensors";
  const fs::path index = model_dir / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::is_regular_file(single, ec)) {
    store.source_ = single;
    auto f = std::shared_ptr<SafetensorsFile>(SafetensorsFile::open(single));
    for (const auto& [name, ti] : f->tensors()) store.by_name_.emplace(name, f);
    store.files_.push_back(std::move(f));
    return store;
  }
  if (!fs::is_regular_file(index, ec))
    throw ModelError(model_dir.string() + ": neither model.safetensors nor model.safetensors.index.json" +
                     (fs::is_directory(model_dir, ec) ? std::string(" found") : std::string(" (no such directory)")));

  store.source_ = index;
  const std::string p = index.string();
  json j;
  {
    std::ifstream in(index, std::ios::binary);
    if (!in) throw ModelError(p + ": cannot open for reading");
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      j = json::parse(ss.str());
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
      throw ModelError(p + ": JSON does not parse: " + e.what());
    }
  }
  if (!j.is_object()) throw ModelError(p + ": expected a JSON object at the top level");
  auto wm = j.find("weight_map");
  if (wm == j.end()) throw ModelError(p + ": key 'weight_map': missing");
  if (!wm->is_object()) throw ModelError(p + ": key 'weight_map': expected an object");

  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    const std::string& name = it.key();
    const std::string where = p + ": tensor '" + name + "': ";
    if (!it.value().is_string()) throw ModelError(where + "shard is not a string");
    const std::string shard = it.value().get<std::string>();
    const fs::path rel(shard);
    bool escapes = shard.empty() || rel.is_absolute();
    for (const auto& part : rel) escapes = escapes || part == "..";
    if (escapes) throw ModelError(where + "shard '" + shard + "' is not a file name inside the model directory");
    auto sit = shards.find(shard);
    if (sit == shards.end()) {
      const fs::path shard_path = model_dir / rel;
      if (!fs::exists(shard_path, ec))
        throw ModelError(where + "shard '" + shard + "' does not exist (" + shard_path.string() + ")");
      auto f = std::shared_ptr<SafetensorsFile>(SafetensorsFile::open(shard_path));
      store.files_.push_back(f);
      sit = shards.emplace(shard, std::move(f)).first;
    }
    if (!sit->second->tensors().count(name))
      throw ModelError(where + "listed in shard '" + shard + "' but that file has no such tensor");
    store.by_name_.emplace(name, sit->second);
  }
  return store;
}

bool WeightStore::has(const std::string& name) const { return by_name_.count(name) != 0; }

const TensorInfo& WeightStore::info(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) throw ModelError(source_.string() + ": tensor '" + name + "': missing");
  return it->second->tensors().at(name);
}

kernels::Tensor WeightStore::view(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) throw ModelError(source_.string() + ": tensor '" + name + "': missing");
  return it->second->view(name);
}

const std::filesystem::path& WeightStore::path_of(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? source_ : it->second->path();
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [name, f] : by_name_) out.push_back(name);
  return out;
}

bool SafetensorsFile::release_pages(const void* p, size_t bytes) const {
  const auto* lo = static_cast<const char*>(map_);
  const auto* b = static_cast<const char*>(p);
  if (!map_ || b < lo || bytes > map_size_ || b + bytes > lo + map_size_) return false;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (reinterpret_cast<uintptr_t>(b) + page - 1) / page * page;
  const uintptr_t last = (reinterpret_cast<uintptr_t>(b) + bytes) / page * page;
  // A read-only private file mapping: MADV_DONTNEED drops the pages, later reads refault them.
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  return true;
}

void WeightStore::release_pages(const void* p, size_t bytes) const {
  for (const auto& f : files_)
    if (f->release_pages(p, bytes)) return;
}

size_t WeightStore::total_bytes() const {
  size_t total = 0;
  for (const auto& [name, f] : by_name_) {
    const TensorInfo& ti = f->tensors().at(name);
    total += ti.end - ti.begin;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

void write_all(int fd, const void* data, size_t n, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const size_t chunk = std::min<size_t>(n, size_t{1} << 30);
    const ssize_t w = ::write(fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw ModelError(what + ": write failed: " + sys_error());
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Produces tensor i's bytes: a pointer to them, possibly into scratch buffer `slot` (0 or 1).
// Tensor i is written out while tensor i + 1 is produced, so a slot is reused only after the
// write from it has finished.
using TensorSource = std::function<const void*(size_t index, size_t nbytes, int slot)>;

void write_impl(const std::filesystem::path& path, const std::vector<TensorSpec>& specs, const TensorSource& source,
                const std::map<std::string, std::string>& metadata) {
  namespace fs = std::filesystem;
  const std::string p = path.string();

  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::vector<size_t> sizes;
  size_t offset = 0;
  for (const TensorSpec& s : specs) {
    const std::string where = p + ": tensor '" + s.name + "': ";
    if (s.name == "__metadata__") throw ModelError(where + "reserved name");
    if (h.contains(s.name)) throw ModelError(where + "duplicate name");
    uint64_t n = kernels::dtype_size(s.dtype);
    for (int64_t d : s.shape) {
      if (d < 0) throw ModelError(where + "negative dimension in shape " + shape_str(s.shape));
      if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) throw ModelError(where + "shape too large");
    }
    h[s.name] = {{"dtype", safetensors_dtype_name(s.dtype)}, {"shape", s.shape}, {"data_offsets", {offset, offset + n}}};
    sizes.push_back(n);
    offset += n;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // data section starts 8-byte aligned
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(static_cast<uint64_t>(header.size()) >> (8 * i));

  static std::atomic<uint64_t> counter{0};
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::string tmp_name = ".";
  tmp_name += path.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
              std::to_string(counter.fetch_add(1));
  const fs::path tmp = dir / tmp_name;
  const std::string t = tmp.string();
  const int fd = ::open(t.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw ModelError(p + ": cannot create temporary file " + t + ": " + sys_error());
  try {
    write_all(fd, len, 8, p);
    write_all(fd, header.data(), header.size(), p);
    // Overlap producing tensor i + 1 with writing tensor i (the disk is often the slower one).
    // Declared inside the try: on an exception the pending write is awaited (future destructor)
    // before the handler closes the file.
    std::future<void> pending;
    int slot = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
      if (sizes[i] == 0) continue;
      const void* bytes = source(i, sizes[i], slot);
      if (pending.valid()) pending.get();  // rethrows a failed write
      pending = std::async(std::launch::async, [fd, bytes, n = sizes[i], &p] { write_all(fd, bytes, n, p); });
      slot ^= 1;
    }
    if (pending.valid()) pending.get();
    // Durable before it becomes visible: a crash leaves the old file or the new one, never half.
    if (::fsync(fd) != 0) throw ModelError(p + ": fsync failed: " + sys_error());
  } catch (...) {
    ::close(fd);
    ::unlink(t.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const std::string err = sys_error();
    ::unlink(t.c_str());
    throw ModelError(p + ": close failed: " + err);
  }
  if (::rename(t.c_str(), p.c_str()) != 0) {
    const std::string err = sys_error();
    ::unlink(t.c_str());
    throw ModelError(p + ": cannot rename " + t + " into place: " + err);
  }
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const NamedTensor& nt : tensors) {
    const kernels::Tensor& t = nt.tensor;
    if (t.mem != kernels::MemSpace::Host)
      throw ModelError(path.string() + ": tensor '" + nt.name + "': not in host memory");
    if (t.ndim < 0 || t.ndim > 4) throw ModelError(path.string() + ": tensor '" + nt.name + "': bad ndim");
    if (t.data == nullptr && t.ndim == 0)
      throw ModelError(path.string() + ": tensor '" + nt.name + "': no data");
    specs.push_back({nt.name, t.dtype, std::vector<int64_t>(t.shape.begin(), t.shape.begin() + t.ndim)});
  }
  write_impl(path, specs, [&](size_t i, size_t, int) -> const void* {
    if (tensors[i].tensor.data == nullptr)
      throw ModelError(path.string() + ": tensor '" + tensors[i].name + "': no data");
    return tensors[i].tensor.data;
  }, metadata);
}

void write_safetensors_streamed(const std::filesystem::path& path, const std::vector<TensorSpec>& specs,
                                const TensorFill& fill, const std::map<std::string, std::string>& metadata) {
  std::vector<char> scratch[2];
  write_impl(path, specs, [&](size_t i, size_t nbytes, int slot) -> const void* {
    std::vector<char>& buf = scratch[slot];
    if (buf.size() < nbytes) {
      buf.clear();
      buf.shrink_to_fit();
      buf.resize(nbytes);
    }
    fill(i, buf.data(), nbytes);
    return buf.data();
  }, metadata);
}

}  // namespace cb::engine
