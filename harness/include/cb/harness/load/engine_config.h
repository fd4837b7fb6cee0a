// The engine configuration a load experiment asks for (batch policy, KV layout, pool, token
// budget). The load suite names configurations in workloads/*.json and compares them; only an
// in-process engine (harness/src/engine/) can be built to one. Against an HTTP endpoint the
// configuration is recorded as asked and the endpoint is whatever it is.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace cb::harness::load {

// The harness's own spelling of the KV layouts (the engine adapter maps it to the engine's).
enum class KvMode { Paged, Contiguous };
const char* kv_mode_name(KvMode m);  // "paged" | "contiguous"

struct InProcessConfig {
  std::string label = "engine";        // names the configuration in params and tables
  std::string policy = "queue-table";  // "static", "queue-table", "slo"
  int static_batch = 8;                // static policy: batch size and fill timeout
  double static_timeout_s = 0.05;
  double slo_tpot_ms = 50;             // slo policy: TPOT target
  KvMode kv_mode = KvMode::Paged;
  int kv_pool_tokens = 1 << 16;        // KV pool size (tokens over all sequences)
  int block_size = 16;
  int contiguous_reserve = 0;          // tokens reserved per sequence in contiguous mode (0 = context)
  int token_budget = 512;              // tokens per step; >= the longest prompt = no chunked prefill
  int max_queue = 4096;                // admission control: beyond this, requests are rejected
  nlohmann::json to_json() const;
};

}  // namespace cb::harness::load
