// ModelConfig: Hugging Face LlamaForCausalLM config.json in and out, validation, presets.
#include "cb/engine/model/config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>
#include <stdexcept>

#include "cb/engine/model/errors.h"

namespace cb::engine {
namespace {

using nlohmann::json;

std::string type_name(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();  // "string", "boolean", "array", "object", "null"
}

[[noreturn]] void key_error(const std::string& source, const std::string& key, const std::string& what) {
  throw ModelError(source + ": key '" + key + "': " + what);
}

// A present, non-null value, or nullptr. HF configs write null for "not set" (e.g. pad_token_id).
const json* find(const json& j, const std::string& key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

const json& require(const json& j, const std::string& key, const std::string& source) {
  const json* v = find(j, key);
  if (!v) key_error(source, key, "missing");
  return *v;
}

int as_int(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_number_integer())
    key_error(source, key, "expected an integer, got " + type_name(v) + " " + v.dump());
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int>::max()))
      key_error(source, key, "value " + v.dump() + " is out of range");
    return static_cast<int>(u);
  }
  const auto s = v.get<int64_t>();
  if (s < std::numeric_limits<int>::min() || s > std::numeric_limits<int>::max())
    key_error(source, key, "value " + v.dump() + " is out of range");
  return static_cast<int>(s);
}

float as_float(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_number()) key_error(source, key, "expected a number, got " + type_name(v) + " " + v.dump());
  const double d = v.get<double>();
  if (!std::isfinite(d) || std::fabs(d) > std::numeric_limits<float>::max())
    key_error(source, key, "value " + v.dump() + " is out of range");
  return static_cast<float>(d);
}

bool as_bool(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_boolean()) key_error(source, key, "expected a boolean, got " + type_name(v) + " " + v.dump());
  return v.get<bool>();
}

std::string as_string(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_string()) key_error(source, key, "expected a string, got " + type_name(v) + " " + v.dump());
  return v.get<std::string>();
}

// Token ids: an integer, or (as Llama 3 writes eos_token_id) a list of integers of which the
// first is taken.
int as_token_id(const json& v, const std::string& key, const std::string& source) {
  if (v.is_array()) {
    if (v.empty()) key_error(source, key, "empty list");
    for (const json& e : v) as_int(e, key, source);
    return as_int(v.front(), key, source);
  }
  return as_int(v, key, source);
}

// The shortest decimal that reads back as the same float, so 1e-5f is written as 1e-05 rather than
// 9.999999747378752e-06.
double clean_float(float f) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), f);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}

// A member of a nested object; a missing one is named by its full key path ("a.b.c").
const json& require_at(const json& obj, const std::string& field, const std::string& path, const std::string& source) {
  const json* v = find(obj, field);
  if (!v) key_error(source, path + "." + field, "missing");
  return *v;
}

// "re:" patterns come from a file the user hands us, and libstdc++'s regex recurses once per NFA
// state and once per nesting level: "((a?){99}){99}" (14 bytes) or 3000 nested groups overflow
// the stack, and its default backtracking executor is exponential on "(.|.)*x". So patterns are
// bounded before they are compiled (length, nesting, states after counted repetitions expand)
// and run on the polynomial (Thompson) executor, which refuses back-references.
constexpr size_t kMaxPatternBytes = 512;
constexpr int kMaxPatternDepth = 32;
constexpr uint64_t kMaxPatternStates = 2000;

// Why pattern p (the part after "re:") is refused, or "" when it is within the bounds. The
// state count is an upper bound: every atom costs one state plus one per operator, and a counted
// repetition {m,n} copies its atom max(m, n) times (nested ones multiply). Back-references are
// refused here, before libstdc++ parses their number (a long "\\1444..." overflowed a signed
// long inside its compiler: fuzz_compressed_tensors, regression in test_export.cpp).
std::string pattern_too_complex(const std::string& p) {
  if (p.size() > kMaxPatternBytes)
    return std::to_string(p.size()) + " bytes (the limit is " + std::to_string(kMaxPatternBytes) + ")";
  // libstdc++ reads the number of a back-reference or a repetition count into a long without an
  // overflow check, so those are looked at before it parses anything (inside brackets too).
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\' && i + 1 < p.size()) {
      if (p[i + 1] >= '1' && p[i + 1] <= '9') return "back-references (\\" + std::string(1, p[i + 1]) + "...) are unsupported";
      ++i;
    } else if (p[i] == '{') {
      size_t run = 0;
      for (size_t j = i + 1; j < p.size() && (std::isdigit(static_cast<unsigned char>(p[j])) || p[j] == ','); ++j) {
        run = p[j] == ',' ? 0 : run + 1;
        if (run > 6) return "a repetition count longer than 6 digits";
      }
    }
  }
  std::vector<uint64_t> outer;  // states before each open group
  uint64_t cur = 0, last = 0;   // states so far in this group; states of the last atom
  auto capped = [](uint64_t v) { return std::min<uint64_t>(v, kMaxPatternStates + 1); };
  for (size_t i = 0; i < p.size(); ++i) {
    const char ch = p[i];
    if (ch == '(') {
      if (outer.size() >= size_t(kMaxPatternDepth))
        return "groups nested deeper than " + std::to_string(kMaxPatternDepth);
      outer.push_back(cur);
      cur = 0;
      continue;
    }
    if (ch == ')' && !outer.empty()) {
      last = cur + 2;  // the group's own open/close states
      cur = capped(outer.back() + last);
      outer.pop_back();
      continue;
    }
    if (ch == '{') {
      size_t j = i + 1;
      uint64_t hi = 0, n = 0;
      bool digits = false;
      for (; j < p.size() && (std::isdigit(static_cast<unsigned char>(p[j])) || p[j] == ','); ++j) {
        if (p[j] == ',') {
          hi = std::max(hi, n), n = 0;
        } else {
          n = capped(n * 10 + uint64_t(p[j] - '0')), digits = true;
        }
      }
      if (digits && j < p.size() && p[j] == '}') {
        hi = std::max(hi, n);
        const uint64_t copies = last * std::max<uint64_t>(hi, 1);
        cur = capped(cur + copies);
        last = capped(copies);
        i = j;
        continue;
      }
    }
    if (ch == '*' || ch == '+' || ch == '?') {  // a loop state; the atom stays the last one,
      cur = capped(cur + 1);                    // since libstdc++ takes "a?{99}" as (a?){99}
      continue;
    }
    if (ch == '\\') ++i;  // an escape is one atom
    if (ch == '[')           // so is a bracket expression
      for (size_t j = i + 1 + (i + 1 < p.size() && p[i + 1] == '^'); j < p.size(); ++j) {
        if (p[j] == '\\') ++j;
        else if (p[j] == ']' && j > i + 1) {
          i = j;
          break;
        }
      }
    last = 1;
    cur = capped(cur + 1);
    if (cur > kMaxPatternStates) break;
  }
  for (uint64_t o : outer) cur = capped(cur + o);
  if (cur > kMaxPatternStates)
    return "more than " + std::to_string(kMaxPatternStates) + " states once counted repetitions expand";
  return "";
}

std::regex compile_pattern(const std::string& p) {
#ifdef __GLIBCXX__
  return std::regex(p, std::regex::ECMAScript | std::regex_constants::__polynomial);
#else
  return std::regex(p, std::regex::ECMAScript);
#endif
}

// compressed-tensors module matching: "Linear" (every linear layer), an exact module name, or
// "re:<regex>" matched at the start of the name, as compressed-tensors and vLLM do (Python's
// re.match: "re:model.layers.0" covers every module of layer 0). Patterns were checked by
// module_list, so they compile within the bounds above.
bool target_matches(const std::string& t, const std::string& module) {
  if (t == "Linear") return true;
  if (t.rfind("re:", 0) == 0)
    return std::regex_search(module, compile_pattern(t.substr(3)), std::regex_constants::match_continuous);
  return t == module;
}

bool covered(const std::vector<std::string>& targets, const std::vector<std::string>& ignore, const std::string& module) {
  bool hit = false;
  for (const auto& t : targets) hit = hit || target_matches(t, module);
  for (const auto& t : ignore)
    if (target_matches(t, module)) return false;
  return hit;
}

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// A list of module patterns; "re:" entries must compile.
std::vector<std::string> module_list(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_array()) key_error(source, key, "expected a list of strings, got " + type_name(v) + " " + v.dump());
  std::vector<std::string> out;
  for (const json& e : v) {
    const std::string t = as_string(e, key, source);
    if (t.rfind("re:", 0) == 0) {
      if (const std::string why = pattern_too_complex(t.substr(3)); !why.empty())
        key_error(source, key, "'" + t.substr(0, 64) + (t.size() > 64 ? "...'" : "'") + " is too complex for a module pattern: " + why);
      try {
        (void)compile_pattern(t.substr(3));
      } catch (const std::regex_error& err) {
        key_error(source, key, "'" + t + "' is not a valid regular expression (" + err.what() + ")");
      }
    }
    out.push_back(t);
  }
  return out;
}

// One compressed-tensors QuantizationArgs object: the engine implements 8-bit symmetric integers,
// per channel and static for weights, per token and dynamic for activations (int8_scheme.h).
void check_int8_args(const json& a, const std::string& key, const std::string& source, const char* strategy, bool dynamic) {
  if (!a.is_object()) key_error(source, key, "expected an object, got " + type_name(a) + " " + a.dump());
  auto want = [&](const char* field, const json& expected) {
    const json* v = find(a, field);
    const std::string k = key + "." + field;
    json got = v ? *v : json();
    if (got.is_string()) got = lower(got.get<std::string>());
    if (got != expected)
      key_error(source, k, (v ? v->dump() : std::string("missing")) + " is unsupported (expected " + expected.dump() + ")");
  };
  want("num_bits", 8);
  want("type", "int");
  want("symmetric", true);
  want("strategy", strategy);
  if (const json* v = find(a, "dynamic"); dynamic || v) want("dynamic", dynamic);
  if (const json* v = find(a, "group_size"); v && *v != json(-1))
    key_error(source, key + ".group_size", v->dump() + " is unsupported (per-channel scales only)");
  for (const char* field : {"block_structure", "actorder"})
    if (const json* v = find(a, field)) key_error(source, key + "." + field, v->dump() + " is unsupported");
}

}  // namespace

CompressionConfig CompressionConfig::from_json(const json& q, const std::string& source) {
  const std::string base = "quantization_config";
  if (!q.is_object()) key_error(source, base, "expected an object, got " + type_name(q) + " " + q.dump());
  CompressionConfig c;
  c.raw = q;
  const std::string method = as_string(require_at(q, "quant_method", base, source), base + ".quant_method", source);
  if (method != "compressed-tensors")
    key_error(source, base + ".quant_method", "'" + method + "' is unsupported (expected 'compressed-tensors')");
  const json* fmt = find(q, "format");
  const std::string format = fmt ? as_string(*fmt, base + ".format", source) : "";
  if (const json* kv = find(q, "kv_cache_scheme"))
    key_error(source, base + ".kv_cache_scheme", kv->dump() + " is unsupported (the KV cache stays f32)");

  const json* groups = find(q, "config_groups");
  if (groups && !groups->is_object())
    key_error(source, base + ".config_groups", "expected an object, got " + type_name(*groups));
  if (groups && !groups->empty()) {
    if (format != "int-quantized")
      key_error(source, base + ".format", (fmt ? "'" + format + "' is unsupported" : std::string("missing")) +
                                              " with config_groups (expected 'int-quantized')");
    bool first = true;
    for (const auto& [name, g] : groups->items()) {
      const std::string key = base + ".config_groups." + name;
      if (!g.is_object())
        key_error(source, key, "expected a scheme object, got " + type_name(g) + " (preset scheme names are unsupported)");
      if (const json* f = find(g, "format"); f && as_string(*f, key + ".format", source) != "int-quantized")
        key_error(source, key + ".format", f->dump() + " is unsupported (expected 'int-quantized')");
      const auto targets = module_list(require_at(g, "targets", key, source), key + ".targets", source);
      if (targets.empty()) key_error(source, key + ".targets", "is empty");
      check_int8_args(require_at(g, "weights", key, source), key + ".weights", source, "channel", false);
      const json* in = find(g, "input_activations");
      if (in) check_int8_args(*in, key + ".input_activations", source, "token", true);
      if (const json* out = find(g, "output_activations"))
        key_error(source, key + ".output_activations", out->dump() + " is unsupported");
      if (!first && bool(in) != c.int8_dynamic_activations)
        key_error(source, key + ".input_activations", "differs from the first group's (one activation scheme per model)");
      c.int8_dynamic_activations = in != nullptr;
      c.quant_targets.insert(c.quant_targets.end(), targets.begin(), targets.end());
      first = false;
    }
    c.int8_weights = true;
    if (const json* ig = find(q, "ignore")) c.quant_ignore = module_list(*ig, base + ".ignore", source);
  } else if (!format.empty() && format != "dense") {
    key_error(source, base + ".format", "'" + format + "' without config_groups is unsupported");
  }

  if (const json* sp = find(q, "sparsity_config")) {
    const std::string key = base + ".sparsity_config";
    if (!sp->is_object()) key_error(source, key, "expected an object, got " + type_name(*sp));
    c.sparsity_format = as_string(require_at(*sp, "format", key, source), key + ".format", source);
    if (c.sparsity_format != "dense" && c.sparsity_format != "sparse-24-bitmask")
      key_error(source, key + ".format", "'" + c.sparsity_format + "' is unsupported (expected 'dense' or 'sparse-24-bitmask')");
    const json* st = find(*sp, "sparsity_structure");
    c.sparsity_structure = st ? lower(as_string(*st, key + ".sparsity_structure", source)) : "unstructured";
    if (c.sparsity_format == "sparse-24-bitmask" && c.sparsity_structure != "2:4")
      key_error(source, key + ".sparsity_structure", "'" + c.sparsity_structure + "' is unsupported with sparse-24-bitmask (expected '2:4')");
    c.sparse_targets = {"Linear"};  // compressed-tensors: no targets = every layer
    if (const json* t = find(*sp, "targets")) c.sparse_targets = module_list(*t, key + ".targets", source);
    if (const json* ig = find(*sp, "ignore")) c.sparse_ignore = module_list(*ig, key + ".ignore", source);
    if (const json* gs = find(*sp, "global_sparsity")) c.global_sparsity = as_float(*gs, key + ".global_sparsity", source);
  }
  if (c.int8_weights && c.sparsity_format == "sparse-24-bitmask")
    key_error(source, base, "INT8 weights stored as sparse-24-bitmask are unsupported (export the 2:4 model as 'dense' before quantizing)");
  return c;
}

bool CompressionConfig::quantizes(const std::string& module) const {
  return int8_weights && covered(quant_targets, quant_ignore, module);
}

bool CompressionConfig::sparse_compressed(const std::string& module) const {
  return sparsity_format == "sparse-24-bitmask" && covered(sparse_targets, sparse_ignore, module);
}

int64_t ModelConfig::parameter_count() const {
  const int64_t V = vocab_size, D = hidden_size, F = intermediate_size, KV = kv_dim(), Q = q_dim();
  const int64_t per_layer = 2 * D            // input_layernorm, post_attention_layernorm
                            + 2 * Q * D      // q_proj, o_proj
                            + 2 * KV * D     // k_proj, v_proj
                            + 3 * F * D;     // gate_proj, up_proj, down_proj
  return V * D + per_layer * num_hidden_layers + D + (tie_word_embeddings ? 0 : V * D);
}

int64_t ModelConfig::matmul_flops_per_token() const {
  const int64_t V = vocab_size, D = hidden_size, F = intermediate_size, KV = kv_dim(), Q = q_dim();
  const int64_t per_layer = 2 * Q * D + 2 * KV * D + 3 * F * D;
  // The lm_head is a matmul whether or not its weight is shared with the embedding.
  return 2 * (per_layer * num_hidden_layers + V * D);
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) throw ModelError(source + ": expected a JSON object at the top level, got " + j.type_name());
  ModelConfig c;
  c.vocab_size = as_int(require(j, "vocab_size", source), "vocab_size", source);
  c.hidden_size = as_int(require(j, "hidden_size", source), "hidden_size", source);
  c.intermediate_size = as_int(require(j, "intermediate_size", source), "intermediate_size", source);
  c.num_hidden_layers = as_int(require(j, "num_hidden_layers", source), "num_hidden_layers", source);
  c.num_attention_heads = as_int(require(j, "num_attention_heads", source), "num_attention_heads", source);
  c.max_position_embeddings =
      as_int(require(j, "max_position_embeddings", source), "max_position_embeddings", source);
  c.rms_norm_eps = as_float(require(j, "rms_norm_eps", source), "rms_norm_eps", source);

  // Optional keys, with Hugging Face's defaults.
  c.num_key_value_heads = c.num_attention_heads;
  if (const json* v = find(j, "num_key_value_heads")) c.num_key_value_heads = as_int(*v, "num_key_value_heads", source);
  if (const json* v = find(j, "rope_theta")) c.rope_theta = as_float(*v, "rope_theta", source);
  if (const json* v = find(j, "tie_word_embeddings")) c.tie_word_embeddings = as_bool(*v, "tie_word_embeddings", source);
  if (const json* v = find(j, "bos_token_id")) c.bos_token_id = as_token_id(*v, "bos_token_id", source);
  if (const json* v = find(j, "eos_token_id")) {
    c.eos_token_id = as_token_id(*v, "eos_token_id", source);
    if (v->is_array())
      for (size_t i = 1; i < v->size(); ++i) c.extra_eos_token_ids.push_back((*v)[i].get<int>());
  }
  if (const json* v = find(j, "pad_token_id")) c.pad_token_id = as_token_id(*v, "pad_token_id", source);
  // transformers >= 4.56 writes "dtype" instead of "torch_dtype".
  if (const json* v = find(j, "torch_dtype")) {
    c.torch_dtype = as_string(*v, "torch_dtype", source);
  } else if (const json* d = find(j, "dtype")) {
    c.torch_dtype = as_string(*d, "dtype", source);
  }

  // Keys that would change the computation: refuse what the engine does not implement rather
  // than silently computing something else.
  if (const json* v = find(j, "model_type")) {
    const std::string t = as_string(*v, "model_type", source);
    if (t != "llama") key_error(source, "model_type", "'" + t + "' is not supported (expected 'llama')");
  }
  if (const json* v = find(j, "hidden_act")) {
    const std::string a = as_string(*v, "hidden_act", source);
    if (a != "silu") key_error(source, "hidden_act", "'" + a + "' is not supported (expected 'silu')");
  }
  if (find(j, "rope_scaling"))
    key_error(source, "rope_scaling", "unsupported (only plain RoPE; got " + j.at("rope_scaling").dump() + ")");
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (const json* v = find(j, key); v && as_bool(*v, key, source))
      key_error(source, key, "true is unsupported (LLaMA linear layers have no bias)");
  }
  // An explicit head size (Hugging Face LlamaConfig's "head_dim"): models whose attention heads were
  // pruned keep their head size while hidden_size stays, so q_proj has heads * head_dim rows.
  if (const json* v = find(j, "head_dim")) {
    const int hd = as_int(*v, "head_dim", source);
    if (hd <= 0) key_error(source, "head_dim", std::to_string(hd) + " must be positive");
    // Only heads x head_dim <= hidden_size (what pruning produces) is exercised; wider
    // attention (as some other architectures use) is refused rather than run untested.
    if (c.num_attention_heads > 0 && int64_t(hd) * c.num_attention_heads > c.hidden_size)
      key_error(source, "head_dim", std::to_string(hd) + " is unsupported (num_attention_heads x head_dim = " +
                                        std::to_string(int64_t(hd) * c.num_attention_heads) + " exceeds hidden_size " +
                                        std::to_string(c.hidden_size) + ")");
    if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0 ||
        hd != c.hidden_size / c.num_attention_heads)
      c.head_dim_key = hd;
  }
  if (const json* v = find(j, "quantization_config"))
    c.compression = CompressionConfig::from_json(*v, source);
  c.validate(source);
  return c;
}

void ModelConfig::validate(const std::string& source) const {
  const std::pair<const char*, int> sizes[] = {
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"max_position_embeddings", max_position_embeddings},
  };
  for (const auto& [key, v] : sizes)
    if (v <= 0) key_error(source, key, std::to_string(v) + " must be positive");
  if (head_dim_key < 0) key_error(source, "head_dim", std::to_string(head_dim_key) + " must be positive");
  if (head_dim_key == 0 && hidden_size % num_attention_heads != 0)
    key_error(source, "hidden_size", std::to_string(hidden_size) + " is not divisible by num_attention_heads " +
                                         std::to_string(num_attention_heads));
  if (num_attention_heads % num_key_value_heads != 0)
    key_error(source, "num_key_value_heads", std::to_string(num_key_value_heads) +
                                                 " does not divide num_attention_heads " +
                                                 std::to_string(num_attention_heads));
  if (head_dim() % 2 != 0) {
    if (head_dim_key > 0) key_error(source, "head_dim", std::to_string(head_dim_key) + " must be even for RoPE");
    key_error(source, "hidden_size", "head_dim " + std::to_string(head_dim()) +
                                         " (hidden_size / num_attention_heads) must be even for RoPE");
  }
  if (!(rms_norm_eps > 0.f) || !std::isfinite(rms_norm_eps))
    key_error(source, "rms_norm_eps", "must be positive and finite");
  if (!(rope_theta > 0.f) || !std::isfinite(rope_theta))
    key_error(source, "rope_theta", "must be positive and finite");
  for (const auto& [key, id] : {std::pair<const char*, int>{"bos_token_id", bos_token_id},
                                {"eos_token_id", eos_token_id}}) {
    if (id < 0 || id >= vocab_size)
      key_error(source, key, std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
  }
  // -1 is the conventional "no padding token".
  if (pad_token_id < -1 || pad_token_id >= vocab_size)
    key_error(source, "pad_token_id", std::to_string(pad_token_id) + " is outside the vocabulary [0, " +
                                          std::to_string(vocab_size) + ")");
  if (torch_dtype != "float32" && torch_dtype != "float16" && torch_dtype != "bfloat16")
    key_error(source, "torch_dtype", "'" + torch_dtype + "' is not one of float32, float16, bfloat16");
}

ModelConfig ModelConfig::load(const std::filesystem::path& config_json) {
  const std::string source = config_json.string();
  std::ifstream in(config_json, std::ios::binary);
  if (!in) throw ModelError(source + ": cannot open for reading");
  std::stringstream ss;
  ss << in.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
    throw ModelError(source + ": JSON does not parse: " + e.what());
  }
  return from_json(j, source);
}

json ModelConfig::to_json() const {
  json j;
  j["architectures"] = json::array({"LlamaForCausalLM"});
  j["model_type"] = "llama";
  j["hidden_act"] = "silu";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = clean_float(rms_norm_eps);
  j["rope_theta"] = clean_float(rope_theta);
  j["rope_scaling"] = nullptr;
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id;
  j["eos_token_id"] = eos_token_id;
  j["pad_token_id"] = pad_token_id;
  j["torch_dtype"] = torch_dtype;
  if (head_dim_key > 0) j["head_dim"] = head_dim_key;
  if (compression.present()) j["quantization_config"] = compression.raw;
  return j;
}

std::vector<std::string> preset_names() { return {"tiny", "llama-1b"}; }

ModelConfig preset_config(const std::string& name) {
  ModelConfig c;
  if (name == "tiny") {
    c.vocab_size = 259;  // 256 bytes + bos, eos, pad (the byte tokenizer)
    c.hidden_size = 64;
    c.intermediate_size = 176;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 16384;
    c.rms_norm_eps = 1e-5f;
    c.rope_theta = 10000.f;
    c.tie_word_embeddings = false;
    return c;
  }
  if (name == "llama-1b") {  // TinyLlama-1.1B shapes
    c.vocab_size = 32000;
    c.hidden_size = 2048;
    c.intermediate_size = 5632;
    c.num_hidden_layers = 22;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 4;
    c.max_position_embeddings = 2048;
    c.rms_norm_eps = 1e-5f;
    c.rope_theta = 10000.f;
    c.tie_word_embeddings = false;
    return c;
  }
  std::string known;
  for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown model preset '" + name + "' (known: " + known + ")");
}

}  // namespace cb::engine
