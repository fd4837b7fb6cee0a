// Safetensors reader, writer and the model-directory WeightStore (single file and sharded).
// Corrupt files are written byte by byte here, so each validation rule is exercised on its own.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/engine/model/errors.h"
#include "cb/engine/model/safetensors.h"
#include "test_support.h"

namespace fs = std::filesystem;
using cb::engine::ModelError;
using cb::engine::NamedTensor;
using cb::engine::SafetensorsFile;
using cb::engine::WeightStore;
using cb::kernels::DType;
using cb::kernels::Tensor;
using cb::test::model_error;
using cb::test::read_file;
using cb::test::write_file;
using nlohmann::json;

namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  // A file with header length `len` (default: the header's), the header text, then `data`.
  fs::path raw(const std::string& header, const std::string& data = "", int64_t len = -1,
               const std::string& name = "bad.safetensors") {
    const fs::path p = dir_ / name;
    const uint64_t n = len < 0 ? header.size() : static_cast<uint64_t>(len);
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    bytes += header + data;
    write_file(p, bytes);
    return p;
  }
  // The ModelError opening a raw file throws; asserts it starts with the file path.
  std::string open_error(const std::string& header, const std::string& data = "", int64_t len = -1) {
    const fs::path p = raw(header, data, len);
    const std::string msg = model_error([&] { SafetensorsFile::open(p); });
    EXPECT_EQ(msg.rfind(p.string() + ": ", 0), 0u) << msg;
    return msg;
  }

  const cb::test::TempDir tmp_{"cb-safetensors"};
  const fs::path dir_ = tmp_.path();
};

// ---------------------------------------------------------------------------------------------
// Round trip

TEST_F(SafetensorsTest, RoundTripsEveryDtype) {
  std::vector<float> f32 = {1.f, -2.5f, 3.25f, 0.f, 1e-3f, -7.f};
  std::vector<uint16_t> f16, bf16;
  for (float v : {0.5f, -1.f, 65504.f, 3.14159f, -0.f, 1e-7f}) f16.push_back(cb::kernels::f32_to_f16(v));
  for (float v : {1.f, 2.f, -3.f, 1e20f}) bf16.push_back(cb::kernels::f32_to_bf16(v));
  std::vector<int32_t> i32 = {1, -2, 2147483647, -2147483647 - 1};
  std::vector<int8_t> i8 = {-128, 0, 127};
  float scalar = 42.f;
  float empty_dummy = 0.f;

  const std::vector<NamedTensor> tensors = {
      {"w.f32", Tensor(f32.data(), DType::F32, {2, 3})},
      {"w.f16", Tensor(f16.data(), DType::F16, {2, 3})},
      {"w.bf16", Tensor(bf16.data(), DType::BF16, {2, 2})},
      {"w.i32", Tensor(i32.data(), DType::I32, {2, 1, 2})},
      {"scalar", Tensor(&scalar, DType::F32, {})},
      {"empty", Tensor(&empty_dummy, DType::F32, {0, 4})},
      {"w.i8", Tensor(i8.data(), DType::I8, {3})},
  };
  const fs::path p = dir_ / "model.safetensors";
  cb::engine::write_safetensors(p, tensors, {{"format", "pt"}, {"note", "x"}});

  // Nothing but the file is left behind (the temp file was renamed into place).
  std::vector<fs::path> listing;
  for (const auto& e : fs::directory_iterator(dir_)) listing.push_back(e.path());
  EXPECT_EQ(listing, std::vector<fs::path>{p});

  // Header padded to a multiple of 8 with spaces; data section 8-byte aligned.
  const std::string bytes = read_file(p);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 24 + 12 + 8 + 16 + 4 + 0 + 3);

  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->path(), p);
  EXPECT_EQ(f->metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "x"}}));
  ASSERT_EQ(f->tensors().size(), tensors.size());
  size_t offset = 0;  // back to back, in the given order
  for (const NamedTensor& nt : tensors) {
    SCOPED_TRACE(nt.name);
    const cb::engine::TensorInfo& ti = f->tensors().at(nt.name);
    EXPECT_EQ(ti.name, nt.name);
    EXPECT_EQ(ti.dtype, nt.tensor.dtype);
    EXPECT_EQ(ti.shape, std::vector<int64_t>(nt.tensor.shape.begin(), nt.tensor.shape.begin() + nt.tensor.ndim));
    EXPECT_EQ(ti.begin, offset);
    EXPECT_EQ(ti.end, offset + nt.tensor.nbytes());
    offset = ti.end;

    const Tensor v = f->view(nt.name);
    EXPECT_EQ(v.mem, cb::kernels::MemSpace::Host);
    EXPECT_EQ(v.dtype, nt.tensor.dtype);
    EXPECT_EQ(v.ndim, nt.tensor.ndim);
    EXPECT_EQ(v.shape, nt.tensor.shape);
    EXPECT_NE(v.data, nt.tensor.data);  // a view into the one mapping, not a copy
    EXPECT_EQ(static_cast<char*>(v.data) - static_cast<char*>(f->view("w.f32").data), static_cast<ptrdiff_t>(ti.begin));
    EXPECT_EQ(std::memcmp(v.data, nt.tensor.data, nt.tensor.nbytes()), 0);
  }
  // Same-dtype neighbours keep f32 views aligned.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f->view("w.f32").data) % 8, 0u);
  EXPECT_EQ(f->view("w.f32").as<float>()[2], 3.25f);
  EXPECT_EQ(cb::kernels::bf16_to_f32(f->view("w.bf16").as<uint16_t>()[3]), cb::kernels::bf16_to_f32(bf16[3]));
  EXPECT_EQ(f->view("w.i32").as<int32_t>()[2], 2147483647);
  EXPECT_EQ(f->view("w.i8").as<int8_t>()[0], -128);
  EXPECT_EQ(f->view("scalar").numel(), 1);
  EXPECT_EQ(f->view("empty").numel(), 0);

  EXPECT_EQ(model_error([&] { f->view("nope"); }), p.string() + ": tensor 'nope': not in this file");
}

TEST_F(SafetensorsTest, StreamedWriterMatchesInMemoryWriter) {
  std::vector<float> a(1000), b(37);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -static_cast<float>(i);
  const fs::path p1 = dir_ / "a.safetensors", p2 = dir_ / "b.safetensors";
  cb::engine::write_safetensors(p1, {{"a", Tensor(a.data(), DType::F32, {10, 100})}, {"b", Tensor(b.data(), DType::F32, {37})}},
                                {{"k", "v"}});
  const std::vector<cb::engine::TensorSpec> specs = {{"a", DType::F32, {10, 100}}, {"b", DType::F32, {37}}};
  std::vector<size_t> asked;
  cb::engine::write_safetensors_streamed(
      p2, specs,
      [&](size_t i, void* dst, size_t nbytes) {
        asked.push_back(i);
        std::memcpy(dst, i == 0 ? a.data() : b.data(), nbytes);
      },
      {{"k", "v"}});
  EXPECT_EQ(asked, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(read_file(p1), read_file(p2));
}

TEST_F(SafetensorsTest, OverwriteIsAtomicForOpenReaders) {
  std::vector<float> old_v = {1.f, 2.f}, new_v = {3.f, 4.f, 5.f};
  const fs::path p = dir_ / "model.safetensors";
  cb::engine::write_safetensors(p, {{"w", Tensor(old_v.data(), DType::F32, {2})}});
  auto before = SafetensorsFile::open(p);
  cb::engine::write_safetensors(p, {{"w", Tensor(new_v.data(), DType::F32, {3})}});
  // The old mapping still sees the old file (rename replaced the name, not the bytes).
  EXPECT_EQ(before->view("w").numel(), 2);
  EXPECT_EQ(before->view("w").as<float>()[1], 2.f);
  auto after = SafetensorsFile::open(p);
  EXPECT_EQ(after->view("w").numel(), 3);
  EXPECT_EQ(after->view("w").as<float>()[2], 5.f);
}

TEST_F(SafetensorsTest, WriterRejectsBadInputAndLeavesNothing) {
  float v = 1.f;
  const fs::path missing_dir = dir_ / "no" / "such" / "model.safetensors";
  EXPECT_CONTAINS(model_error([&] { cb::engine::write_safetensors(missing_dir, {{"w", Tensor(&v, DType::F32, {1})}}); }),
                  missing_dir.string() + ": cannot create temporary file");
  EXPECT_FALSE(fs::exists(dir_ / "no"));

  const fs::path p = dir_ / "m.safetensors";
  EXPECT_EQ(model_error([&] {
              cb::engine::write_safetensors(p, {{"w", Tensor(&v, DType::F32, {1})}, {"w", Tensor(&v, DType::F32, {1})}});
            }),
            p.string() + ": tensor 'w': duplicate name");
  EXPECT_EQ(model_error([&] { cb::engine::write_safetensors(p, {{"__metadata__", Tensor(&v, DType::F32, {1})}}); }),
            p.string() + ": tensor '__metadata__': reserved name");
  Tensor dev(&v, DType::F32, {1}, cb::kernels::MemSpace::Device);
  EXPECT_EQ(model_error([&] { cb::engine::write_safetensors(p, {{"w", dev}}); }),
            p.string() + ": tensor 'w': not in host memory");

  // A fill that throws leaves no file and no temp file behind.
  EXPECT_THROW(cb::engine::write_safetensors_streamed(
                   p, {{"a", DType::F32, {4}}, {"b", DType::F32, {4}}},
                   [](size_t i, void* dst, size_t n) {
                     if (i == 1) throw ModelError("fill failed");
                     std::memset(dst, 0, n);
                   }),
               ModelError);
  EXPECT_TRUE(fs::is_empty(dir_));
}

// ---------------------------------------------------------------------------------------------
// Corrupt files, one rule each

TEST_F(SafetensorsTest, RejectsFileShorterThanLengthField) {
  const fs::path p = dir_ / "short.safetensors";
  write_file(p, "abc");
  EXPECT_EQ(model_error([&] { SafetensorsFile::open(p); }),
            p.string() + ": file is 3 bytes, shorter than the 8-byte header length field");
}

TEST_F(SafetensorsTest, RejectsHeaderLengthPastEndOfFile) {
  EXPECT_CONTAINS(open_error("{}", "", 1000), "header length 1000 runs past the end of the file (10 bytes)");
}

TEST_F(SafetensorsTest, RejectsAbsurdHeaderLength) {
  EXPECT_CONTAINS(open_error("{}", "", int64_t{1} << 40), "header length 1099511627776 is absurdly large");
}

TEST_F(SafetensorsTest, RejectsUnparseableHeader) {
  const std::string msg = open_error("{\"w\": {\"dtype\": ");
  EXPECT_CONTAINS(msg, "header JSON does not parse");
  EXPECT_CONTAINS(msg, "parse error");
  EXPECT_CONTAINS(open_error("[1, 2]"), "header is a JSON array, not an object");
}

// The fuzzers' number-overflow finding (corpus/fuzz_safetensors/number-overflow.safetensors): nlohmann
// throws out_of_range, not parse_error, for a number no double holds; it escaped as non-ModelError.
TEST_F(SafetensorsTest, RejectsHeaderNumberThatOverflows) {
  const std::string msg = open_error(R"({"w": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}})", "abcd");
  EXPECT_CONTAINS(msg, "header JSON does not parse");
  EXPECT_CONTAINS(msg, "number overflow");
}

TEST_F(SafetensorsTest, RejectsEntryThatIsNotAnObject) {
  const std::string msg = open_error(R"({"w": 5})");
  EXPECT_CONTAINS(msg, "tensor 'w': entry is not an object");
}

TEST_F(SafetensorsTest, RejectsMissingFields) {
  EXPECT_CONTAINS(open_error(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", "abcd"), "tensor 'w': missing 'dtype'");
  EXPECT_CONTAINS(open_error(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", "abcd"), "tensor 'w': missing 'shape'");
  EXPECT_CONTAINS(open_error(R"({"w": {"dtype": "F32", "shape": [1]}})", "abcd"), "tensor 'w': missing 'data_offsets'");
  EXPECT_CONTAINS(open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", "abcd"),
                  "tensor 'w': 'data_offsets' [0] is not a pair of non-negative integers");
  EXPECT_CONTAINS(open_error(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", "abcd"),
                  "tensor 'w': 'shape' holds a non-integer 1.5");
}

TEST_F(SafetensorsTest, RejectsUnknownAndUnsupportedDtypesByName) {
  EXPECT_CONTAINS(open_error(R"({"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}})", "abcd"),
                  "tensor 'w': unknown dtype 'F99'");
  for (const char* dt : {"F64", "U16", "BOOL", "F8_E4M3", "U64"}) {
    const std::string header = std::string(R"({"w": {"dtype": ")") + dt + R"(", "shape": [1], "data_offsets": [0, 4]}})";
    EXPECT_CONTAINS(open_error(header, "abcd"), std::string("tensor 'w': unsupported dtype '") + dt + "'");
  }
}

TEST_F(SafetensorsTest, RejectsNegativeDimension) {
  EXPECT_CONTAINS(open_error(R"({"w": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 8]}})", std::string(8, 'x')),
                  "tensor 'w': negative dimension -1 in shape [-1, 2]");
}

TEST_F(SafetensorsTest, RejectsBeginAfterEnd) {
  EXPECT_CONTAINS(open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", std::string(8, 'x')),
                  "tensor 'w': data offsets [8, 4) have begin > end");
}

TEST_F(SafetensorsTest, RejectsOffsetsPastDataSection) {
  EXPECT_CONTAINS(open_error(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", "abcd"),
                  "tensor 'w': data offsets [0, 8) run past the data section (4 bytes)");
}

TEST_F(SafetensorsTest, RejectsByteSizeMismatch) {
  EXPECT_CONTAINS(open_error(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", std::string(8, 'x')),
                  "tensor 'w': shape [3] of F32 needs 12 bytes but data offsets [0, 8) hold 8");
}

TEST_F(SafetensorsTest, RejectsOverlapNamingBothTensors) {
  const std::string msg = open_error(
      R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
      std::string(12, 'x'));
  EXPECT_CONTAINS(msg, "tensor 'b': data offsets [4, 12) overlap tensor 'a' [0, 8)");
}

TEST_F(SafetensorsTest, RejectsGapsAndTrailingBytes) {
  // The format requires the tensors to cover the data section exactly (no polyglot files).
  EXPECT_CONTAINS(open_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                 "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                             std::string(12, 'x')),
                  "tensor 'b': data offsets [8, 12) leave a gap of 4 bytes after tensor 'a'");
  EXPECT_CONTAINS(open_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", std::string(8, 'x')),
                  "tensor 'a': data offsets [4, 8) leave a gap of 4 bytes at the start of the data section");
  EXPECT_CONTAINS(open_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", std::string(8, 'x')),
                  "data section has 4 trailing bytes not covered by any tensor");
}

TEST_F(SafetensorsTest, MetadataMustBeStrings) {
  EXPECT_CONTAINS(open_error(R"({"__metadata__": {"seed": 1}})"), "'__metadata__' key 'seed' is not a string");
  const fs::path p = raw(R"({"__metadata__": {"format": "pt"}})");
  auto f = SafetensorsFile::open(p);
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_EQ(f->metadata().at("format"), "pt");
}

TEST_F(SafetensorsTest, AcceptsForeignFileWithUnpaddedHeaderAndMixedDtypes) {
  // Written by hand: 3-byte i8 tensor then an f32 tensor (unaligned view, fine on x86).
  const fs::path p = raw(R"({"q": {"dtype": "I8", "shape": [3], "data_offsets": [0, 3]},
                            "s": {"dtype": "F32", "shape": [1], "data_offsets": [3, 7]}})",
                         std::string("\x01\x02\x03\x00\x00\x80\x3f", 7), -1, "foreign.safetensors");
  auto f = SafetensorsFile::open(p);
  float s = 0.f;
  std::memcpy(&s, f->view("s").data, 4);
  EXPECT_EQ(s, 1.f);
  EXPECT_EQ(f->view("q").as<int8_t>()[2], 3);
}

TEST_F(SafetensorsTest, MissingFileNamesIt) {
  const fs::path p = dir_ / "absent.safetensors";
  EXPECT_CONTAINS(model_error([&] { SafetensorsFile::open(p); }), p.string() + ": cannot open: ");
}

// ---------------------------------------------------------------------------------------------
// WeightStore

class WeightStoreTest : public SafetensorsTest {
 protected:
  // Two shards: a, b in shard 1; c in shard 2; plus the index.
  void write_sharded(const json& weight_map) {
    cb::engine::write_safetensors(dir_ / "model-00001-of-00002.safetensors",
                                  {{"a", Tensor(a_.data(), DType::F32, {2, 2})}, {"b", Tensor(b_.data(), DType::BF16, {3})}});
    cb::engine::write_safetensors(dir_ / "model-00002-of-00002.safetensors", {{"c", Tensor(c_.data(), DType::F32, {2})}});
    write_file(dir_ / "model.safetensors.index.json", json{{"metadata", {{"total_size", 30}}}, {"weight_map", weight_map}}.dump(2));
  }
  json default_map() const {
    return {{"a", "model-00001-of-00002.safetensors"},
            {"b", "model-00001-of-00002.safetensors"},
            {"c", "model-00002-of-00002.safetensors"}};
  }
  fs::path index() const { return dir_ / "model.safetensors.index.json"; }
  std::vector<float> a_{1, 2, 3, 4}, c_{5, 6};
  std::vector<uint16_t> b_{1, 2, 3};
};

TEST_F(WeightStoreTest, SingleFile) {
  cb::engine::write_safetensors(dir_ / "model.safetensors", {{"a", Tensor(a_.data(), DType::F32, {2, 2})}});
  const WeightStore s = WeightStore::open_dir(dir_);
  EXPECT_EQ(s.source(), dir_ / "model.safetensors");
  EXPECT_EQ(s.names(), std::vector<std::string>{"a"});
  EXPECT_TRUE(s.has("a"));
  EXPECT_FALSE(s.has("b"));
  EXPECT_EQ(s.total_bytes(), 16u);
  EXPECT_EQ(s.info("a").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(s.view("a").as<float>()[3], 4.f);
  EXPECT_EQ(model_error([&] { s.info("b"); }), (dir_ / "model.safetensors").string() + ": tensor 'b': missing");
  EXPECT_EQ(model_error([&] { s.view("b"); }), (dir_ / "model.safetensors").string() + ": tensor 'b': missing");
}

TEST_F(WeightStoreTest, ShardedIndex) {
  write_sharded(default_map());
  const WeightStore s = WeightStore::open_dir(dir_);
  EXPECT_EQ(s.source(), index());
  EXPECT_EQ(s.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(s.total_bytes(), 16u + 6u + 8u);
  EXPECT_EQ(s.info("b").dtype, DType::BF16);
  EXPECT_EQ(s.view("a").as<float>()[0], 1.f);
  EXPECT_EQ(s.view("b").as<uint16_t>()[2], 3);
  EXPECT_EQ(s.view("c").as<float>()[1], 6.f);
  EXPECT_EQ(s.path_of("c"), dir_ / "model-00002-of-00002.safetensors");
  EXPECT_EQ(s.path_of("zzz"), index());
}

TEST_F(WeightStoreTest, SingleFileWinsOverIndex) {
  write_sharded(default_map());
  cb::engine::write_safetensors(dir_ / "model.safetensors", {{"only", Tensor(c_.data(), DType::F32, {2})}});
  EXPECT_EQ(WeightStore::open_dir(dir_).names(), std::vector<std::string>{"only"});
}

TEST_F(WeightStoreTest, IndexNamingMissingShard) {
  json m = default_map();
  m["c"] = "model-00003-of-00003.safetensors";
  write_sharded(m);
  EXPECT_CONTAINS(model_error([&] { WeightStore::open_dir(dir_); }),
                  index().string() + ": tensor 'c': shard 'model-00003-of-00003.safetensors' does not exist");
}

TEST_F(WeightStoreTest, IndexListingTensorTheShardLacks) {
  json m = default_map();
  m["c"] = "model-00001-of-00002.safetensors";
  write_sharded(m);
  EXPECT_EQ(model_error([&] { WeightStore::open_dir(dir_); }),
            index().string() + ": tensor 'c': listed in shard 'model-00001-of-00002.safetensors' but that file has no such tensor");
}

TEST_F(WeightStoreTest, IndexShardOutsideDirectory) {
  json m = default_map();
  m["c"] = "../elsewhere.safetensors";
  write_sharded(m);
  EXPECT_CONTAINS(model_error([&] { WeightStore::open_dir(dir_); }),
                  "tensor 'c': shard '../elsewhere.safetensors' is not a file name inside the model directory");
}

TEST_F(WeightStoreTest, BadIndexFile) {
  write_file(index(), R"({"metadata": {}})");
  EXPECT_EQ(model_error([&] { WeightStore::open_dir(dir_); }), index().string() + ": key 'weight_map': missing");
  write_file(index(), "{oops");
  EXPECT_CONTAINS(model_error([&] { WeightStore::open_dir(dir_); }), index().string() + ": JSON does not parse");
}

TEST_F(WeightStoreTest, CorruptShardNamesShard) {
  write_sharded(default_map());
  write_file(dir_ / "model-00002-of-00002.safetensors", "xx");
  EXPECT_CONTAINS(model_error([&] { WeightStore::open_dir(dir_); }),
                  (dir_ / "model-00002-of-00002.safetensors").string() + ": file is 2 bytes");
}

TEST_F(WeightStoreTest, NeitherFileNamesDirectoryAndBothNames) {
  const std::string msg = model_error([&] { WeightStore::open_dir(dir_); });
  EXPECT_EQ(msg.rfind(dir_.string() + ": ", 0), 0u) << msg;
  EXPECT_CONTAINS(msg, "model.safetensors ");
  EXPECT_CONTAINS(msg, "model.safetensors.index.json");
  EXPECT_CONTAINS(model_error([&] { WeightStore::open_dir(dir_ / "absent"); }), "no such directory");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Weights a backend copied out of the mapping (cpu: huge pages) drop their mapped pages.

TEST_F(SafetensorsTest, ReleasedPagesStayReadableAndOnlyMappedRangesAreTouched) {
  std::vector<float> big(size_t(3) << 20);  // 12 MiB: many whole pages
  for (size_t i = 0; i < big.size(); ++i) big[i] = float(i % 9973);
  const fs::path p = dir_ / "model.safetensors";
  cb::engine::write_safetensors(p, {{"w", Tensor(big.data(), DType::F32, {int64_t(big.size())})}});
  auto f = SafetensorsFile::open(p);
  const Tensor v = f->view("w");
  EXPECT_TRUE(f->release_pages(v.data, v.nbytes()));
  // Dropped pages refault from the file: every value is still there.
  EXPECT_EQ(std::memcmp(v.data, big.data(), v.nbytes()), 0);
  // Memory outside the mapping (here: the source vector, anonymous memory) is refused and kept.
  EXPECT_FALSE(f->release_pages(big.data(), big.size() * sizeof(float)));
  EXPECT_EQ(big[12345], float(12345 % 9973));
  EXPECT_FALSE(f->release_pages(static_cast<char*>(v.data) + 8, v.nbytes()));  // runs past the end
}
