// Fuzzes compressed-tensors metadata: a "quantization_config" object (CompressionConfig::from_json),
// the module matching it drives at load ("Linear", exact names, "re:" patterns with their bounds),
// and the sparse-24-bitmask decoding of a module's `.bitmask` bytes (unpack_bitmask ->
// meta_from_mask). Input: the JSON text, then optionally a 0x00 byte, one byte for N (rows, 1..8),
// one for K / 4 (1..16) and the bitmask bytes ([N, ceil(K / 8)], zero-padded when short).
// Contract: ModelError (naming the key) on a bad config or a mask that does not keep 2 of every 4;
// an accepted config answers every module without hanging and keeps its own rules (ignore wins,
// exact names match themselves); an accepted mask re-encodes to the same mask.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cb/engine/model/config.h"
#include "cb/engine/model/errors.h"
#include "cb/engine/model/sparse24.h"

namespace {

using cb::engine::CompressionConfig;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::abort();
}

bool is_pattern(const std::string& t) { return t == "Linear" || t.rfind("re:", 0) == 0; }

// Module names a llama model asks about, plus every plain name the config itself mentions.
std::vector<std::string> probe_modules(const CompressionConfig& c) {
  std::vector<std::string> m = {"lm_head"};
  for (const char* layer : {"0", "1", "10", "21"})
    for (const char* s : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                          "mlp.up_proj", "mlp.down_proj"})
      m.push_back(std::string("model.layers.") + layer + "." + s);
  for (const auto* list : {&c.quant_targets, &c.quant_ignore, &c.sparse_targets, &c.sparse_ignore})
    for (const std::string& t : *list) m.push_back(t.rfind("re:", 0) == 0 ? t.substr(3) : t);
  return m;
}

void check_rules(const std::vector<std::string>& targets, const std::vector<std::string>& ignore, bool on,
                 bool (CompressionConfig::*covers)(const std::string&) const, const CompressionConfig& c, const char* what) {
  for (const std::string& m : probe_modules(c)) {
    const bool hit = (c.*covers)(m);
    if (hit && !on) fail(std::string(what) + " covers '" + m + "' with the scheme off");
    if (hit && std::find(ignore.begin(), ignore.end(), m) != ignore.end())
      fail(std::string(what) + " covers '" + m + "', which its ignore list names");
  }
  if (!on) return;
  for (const std::string& t : targets) {
    if (is_pattern(t) || std::find(ignore.begin(), ignore.end(), t) != ignore.end()) continue;
    bool ignored = false;  // an ignore pattern may still cover it
    for (const std::string& i : ignore) ignored = ignored || is_pattern(i);
    if (!ignored && !(c.*covers)(t)) fail(std::string(what) + " misses its own exact target '" + t + "'");
  }
}

void fuzz_config(const std::string& text) {
  const nlohmann::json q = nlohmann::json::parse(text, nullptr, false);
  if (q.is_discarded()) return;
  CompressionConfig c;
  try {
    c = CompressionConfig::from_json(q, "fuzz/config.json");
  } catch (const cb::engine::ModelError&) {
    return;
  }
  if (c.raw != q) fail("the config is not kept as read");
  check_rules(c.quant_targets, c.quant_ignore, c.int8_weights, &CompressionConfig::quantizes, c, "quantization");
  check_rules(c.sparse_targets, c.sparse_ignore, c.sparsity_format == "sparse-24-bitmask",
              &CompressionConfig::sparse_compressed, c, "sparse-24-bitmask");
}

void fuzz_bitmask(const uint8_t* p, size_t n) {
  if (n < 2) return;
  const int64_t N = 1 + p[0] % 8, K = 4 * (1 + p[1] % 16), row_bytes = (K + 7) / 8;
  std::vector<uint8_t> bits(static_cast<size_t>(N * row_bytes), 0);
  std::copy_n(p + 2, std::min(bits.size(), n - 2), bits.begin());
  namespace cp = cb::engine::compress;
  const std::vector<uint8_t> mask = cp::unpack_bitmask(bits.data(), N, K);
  if (mask.size() != size_t(N * K)) fail("unpack_bitmask returned the wrong size");
  std::vector<uint8_t> meta;
  try {
    meta = cp::meta_from_mask(mask.data(), N, K, "fuzz.bitmask");
  } catch (const cb::engine::ModelError&) {
    return;
  }
  if (meta.size() != size_t(N * K / 4)) fail("meta_from_mask returned the wrong size");
  if (cp::mask_from_meta(meta.data(), N, K) != mask) fail("meta does not give the mask back");
  if (cp::unpack_bitmask(cp::pack_bitmask(mask.data(), N, K).data(), N, K) != mask) fail("bitmask round trip differs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto* end = data + size;
  const auto* nul = std::find(data, end, uint8_t(0));
  fuzz_config(std::string(reinterpret_cast<const char*>(data), static_cast<size_t>(nul - data)));
  if (nul != end) fuzz_bitmask(nul + 1, static_cast<size_t>(end - nul - 1));
  return 0;
}
