#include "cb/harness/load/engine_config.h"

namespace cb::harness::load {
using nlohmann::json;

const char* kv_mode_name(KvMode m) { return m == KvMode::Paged ? "paged" : "contiguous"; }

json InProcessConfig::to_json() const {
  json j = {{"label", label},
            {"policy", policy},
            {"kv_mode", kv_mode_name(kv_mode)},
            {"kv_pool_tokens", kv_pool_tokens},
            {"block_size", block_size},
            {"token_budget", token_budget},
            {"max_queue", max_queue}};
  if (policy == "static") {
    j["static_batch"] = static_batch;
    j["static_timeout_s"] = static_timeout_s;
  }
  if (policy == "slo") j["slo_tpot_ms"] = slo_tpot_ms;
  if (kv_mode == KvMode::Contiguous) j["contiguous_reserve"] = contiguous_reserve;
  return j;
}

}  // namespace cb::harness::load
