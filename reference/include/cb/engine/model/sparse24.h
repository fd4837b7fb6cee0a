// 2:4 semi-structured sparsity: in every row of W[N, K], each group of 4 consecutive input columns
// keeps exactly 2 values. Three encodings of which 2:
//   mask     bytes [N, K], 1 = kept (working form);
//   bitmask  compressed-tensors "sparse-24-bitmask" on disk: [N, ceil(K/8)] bytes, weight k of a
//            row is bit (k % 8) of byte k / 8 (numpy.packbits(..., bitorder="little")), values
//            `.compressed` [N, K/2] are the kept weights of each row in column order;
//   meta     the kernels' Sparse24 layout (cb/kernels/tensor.h): [N, K/4] bytes, group g keeps
//            columns 4g + (meta & 3) and 4g + ((meta >> 2) & 3), first < second, upper bits 0.
// Part of the model layer (src/model/sparse24.cpp): the loader decodes sparse-24-bitmask
// checkpoints with these, and compress/ (prune_24) encodes them. The namespace stays compress.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cb::engine::compress {

// Keeps the 2 highest scores of every group of 4 along K (ties go to the lower column), so
// the pattern is exact whatever the scores. k must be a multiple of 4.
std::vector<uint8_t> mask_24(const float* scores, int64_t n, int64_t k);

std::vector<uint8_t> pack_bitmask(const uint8_t* mask, int64_t n, int64_t k);
std::vector<uint8_t> unpack_bitmask(const uint8_t* bits, int64_t n, int64_t k);

// Throws ModelError naming `what`, the row and the group when a group does not keep exactly 2.
void check_mask_24(const uint8_t* mask, int64_t n, int64_t k, const std::string& what);
std::vector<uint8_t> meta_from_mask(const uint8_t* mask, int64_t n, int64_t k, const std::string& what);
std::vector<uint8_t> mask_from_meta(const uint8_t* meta, int64_t n, int64_t k);

// Kept elements (elem_size bytes each) of dense [N, K] in row order -> [N, K/2], and back
// (pruned positions become zero bytes, which is +0 in every float format).
std::vector<uint8_t> gather_kept(const void* dense, const uint8_t* mask, int64_t n, int64_t k, size_t elem_size);
std::vector<uint8_t> scatter_kept(const void* kept, const uint8_t* mask, int64_t n, int64_t k, size_t elem_size);

}  // namespace cb::engine::compress
