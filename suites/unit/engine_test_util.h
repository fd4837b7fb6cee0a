// Helpers for unit tests that run a model: the logits of one prompt through a fresh KV cache.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "cb/engine/model/engine.h"
#include "cb/engine/model/kv_cache.h"

namespace cb::test {

// Logits of every position of `tokens` on `backend`, for the model in `dir`.
inline std::vector<float> logits_of(const std::filesystem::path& dir, const std::string& backend,
                                    const std::vector<int32_t>& tokens) {
  auto lm = cb::engine::LoadedModel::open(dir, backend);
  cb::engine::KvCache kv(lm->backend(), lm->config(), int((tokens.size() + 15) / 16), 16);
  const auto table = cb::engine::KvCache::sequential_table(kv.num_blocks());
  return lm->model().forward({cb::engine::SeqStep{tokens, 0, table, true}}, kv);
}

}  // namespace cb::test
