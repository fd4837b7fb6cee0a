// 2:4 sparsity codecs (sparse24.h): the mask, the compressed-tensors bitmask on disk and the
// kernels' Sparse24 metadata. The loader (weights.cpp) decodes sparse-24-bitmask checkpoints
// with them; the 2:4 pruning pass (compress/prune_24.cpp) encodes them.
#include "cb/engine/model/sparse24.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "cb/engine/model/errors.h"

namespace cb::engine::compress {

std::vector<uint8_t> mask_24(const float* scores, int64_t n, int64_t k) {
  if (k % 4 != 0) throw ModelError("mask_24: K = " + std::to_string(k) + " is not divisible by 4");
  std::vector<uint8_t> mask(size_t(n * k), 0);
  for (int64_t i = 0; i < n * k; i += 4) {
    // The best two of four: a strictly greater score wins, so ties keep the lower column.
    int a = 0, b = 1;
    if (scores[i + 1] > scores[i]) std::swap(a, b);
    for (int j = 2; j < 4; ++j) {
      if (scores[i + j] > scores[i + a]) {
        b = a;
        a = j;
      } else if (scores[i + j] > scores[i + b]) {
        b = j;
      }
    }
    mask[size_t(i + a)] = mask[size_t(i + b)] = 1;
  }
  return mask;
}

std::vector<uint8_t> pack_bitmask(const uint8_t* mask, int64_t n, int64_t k) {
  const int64_t row = (k + 7) / 8;
  std::vector<uint8_t> bits(size_t(n * row), 0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      if (mask[r * k + c]) bits[size_t(r * row + c / 8)] |= uint8_t(1u << (c % 8));
  return bits;
}

std::vector<uint8_t> unpack_bitmask(const uint8_t* bits, int64_t n, int64_t k) {
  const int64_t row = (k + 7) / 8;
  std::vector<uint8_t> mask(size_t(n * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) mask[size_t(r * k + c)] = (bits[r * row + c / 8] >> (c % 8)) & 1u;
  return mask;
}

void check_mask_24(const uint8_t* mask, int64_t n, int64_t k, const std::string& what) {
  if (k % 4 != 0) throw ModelError(what + "K = " + std::to_string(k) + " is not divisible by 4");
  for (int64_t r = 0; r < n; ++r)
    for (int64_t g = 0; g < k / 4; ++g) {
      const uint8_t* m = mask + r * k + 4 * g;
      const int kept = m[0] + m[1] + m[2] + m[3];
      if (kept != 2)
        throw ModelError(what + "row " + std::to_string(r) + ", columns " + std::to_string(4 * g) + ".." +
                         std::to_string(4 * g + 3) + ": " + std::to_string(kept) + " kept, 2:4 needs exactly 2");
    }
}

std::vector<uint8_t> meta_from_mask(const uint8_t* mask, int64_t n, int64_t k, const std::string& what) {
  check_mask_24(mask, n, k, what);
  std::vector<uint8_t> meta(size_t(n * (k / 4)));
  for (int64_t i = 0; i < n * (k / 4); ++i) {
    const uint8_t* m = mask + 4 * i;
    int idx[2], c = 0;
    for (int j = 0; j < 4; ++j)
      if (m[j]) idx[c++] = j;
    meta[size_t(i)] = uint8_t(idx[0] | (idx[1] << 2));
  }
  return meta;
}

std::vector<uint8_t> mask_from_meta(const uint8_t* meta, int64_t n, int64_t k) {
  std::vector<uint8_t> mask(size_t(n * k), 0);
  for (int64_t i = 0; i < n * (k / 4); ++i) {
    mask[size_t(4 * i + (meta[i] & 3))] = 1;
    mask[size_t(4 * i + ((meta[i] >> 2) & 3))] = 1;
  }
  return mask;
}

std::vector<uint8_t> gather_kept(const void* dense, const uint8_t* mask, int64_t n, int64_t k, size_t es) {
  std::vector<uint8_t> out;
  out.reserve(size_t(n * k / 2) * es);
  const auto* d = static_cast<const uint8_t*>(dense);
  for (int64_t i = 0; i < n * k; ++i)
    if (mask[i]) out.insert(out.end(), d + size_t(i) * es, d + size_t(i + 1) * es);
  if (out.size() != size_t(n * k / 2) * es) throw ModelError("gather_kept: the mask does not keep half of the weights");
  return out;
}

std::vector<uint8_t> scatter_kept(const void* kept, const uint8_t* mask, int64_t n, int64_t k, size_t es) {
  std::vector<uint8_t> out(size_t(n * k) * es, 0);
  const auto* s = static_cast<const uint8_t*>(kept);
  for (int64_t i = 0; i < n * k; ++i)
    if (mask[i]) {
      std::memcpy(out.data() + size_t(i) * es, s, es);
      s += es;
    }
  return out;
}

}  // namespace cb::engine::compress
