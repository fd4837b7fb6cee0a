// FreeBlocks: the free KV blocks and the placement policy (see the header).
#include "cb/engine/serving/free_blocks.h"

#include <iterator>
#include <stdexcept>

namespace cb::engine {

namespace {

[[noreturn]] void free_blocks_fail(const std::string& what) { throw std::logic_error("FreeBlocks: " + what); }

}  // namespace

std::string block_placement_name(BlockPlacement p) { return p == BlockPlacement::Runs ? "runs" : "lifo"; }

BlockPlacement parse_block_placement(const std::string& name) {
  if (name == "runs") return BlockPlacement::Runs;
  if (name == "lifo") return BlockPlacement::Lifo;
  throw std::invalid_argument("unknown KV block placement '" + name + "' (expected runs or lifo)");
}

FreeBlocks::FreeBlocks(int num_blocks, BlockPlacement placement)
    : num_blocks_(num_blocks), placement_(placement), count_(num_blocks) {
  if (num_blocks <= 0) throw std::invalid_argument("FreeBlocks: num_blocks must be positive (got " + std::to_string(num_blocks) + ")");
  if (placement_ == BlockPlacement::Runs) {
    insert_extent(0, num_blocks);
  } else {
    stack_.reserve(size_t(num_blocks));
    for (int b = num_blocks - 1; b >= 0; --b) stack_.push_back(b);  // hands out 0, 1, 2, ... first
  }
}

void FreeBlocks::erase_extent(std::map<int, int>::iterator it) {
  by_length_.erase({-it->second, it->first});
  extents_.erase(it);
}

void FreeBlocks::insert_extent(int start, int length) {
  if (length <= 0) return;
  extents_.emplace(start, length);
  by_length_.emplace(-length, start);
}

bool FreeBlocks::contains(int block) const {
  if (placement_ == BlockPlacement::Lifo) {
    for (int b : stack_)
      if (b == block) return true;
    return false;
  }
  auto it = extents_.upper_bound(block);
  if (it == extents_.begin()) return false;
  --it;
  return block < it->first + it->second;
}

// Splits the extent holding `block` around it (Runs only; the block must be free).
void FreeBlocks::take_exact(int block) {
  auto it = std::prev(extents_.upper_bound(block));
  const int start = it->first, length = it->second;
  erase_extent(it);
  insert_extent(start, block - start);
  insert_extent(block + 1, start + length - block - 1);
}

int FreeBlocks::take(int after, int run) {
  if (count_ == 0) free_blocks_fail("take from an empty set");
  --count_;
  if (placement_ == BlockPlacement::Lifo) {
    const int b = stack_.back();
    stack_.pop_back();
    return b;
  }
  int b;
  if (after >= 0 && after + 1 < num_blocks_ && contains(after + 1)) {
    b = after + 1;  // grow the run in place
  } else {
    const auto [neg_length, start] = *by_length_.begin();
    const int length = -neg_length;
    // Block 0 has nothing before it to leave room for; elsewhere the run starts mid-extent, the
    // slack split between the blocks before it and this run's own growth.
    b = start + (start > 0 && length > run ? (length - run) / 2 : 0);
  }
  take_exact(b);
  return b;
}

void FreeBlocks::remove(int block) {
  if (placement_ != BlockPlacement::Runs || !contains(block))
    free_blocks_fail("remove of block " + std::to_string(block) + ", which is not in the set (or placement is not runs)");
  --count_;
  take_exact(block);
}

void FreeBlocks::put(int block) {
  if (block < 0 || block >= num_blocks_) free_blocks_fail("put of block " + std::to_string(block) + " outside the pool");
  ++count_;
  if (placement_ == BlockPlacement::Lifo) {
    stack_.push_back(block);
    return;
  }
  int start = block, length = 1;
  auto next = extents_.upper_bound(block);
  if (next != extents_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second > block) free_blocks_fail("put of free block " + std::to_string(block));
    if (prev->first + prev->second == block) {  // merge with the extent ending just before
      start = prev->first;
      length += prev->second;
      erase_extent(prev);
    }
  }
  if (next != extents_.end() && next->first == block + 1) {  // and with the one starting just after
    length += next->second;
    erase_extent(next);
  }
  insert_extent(start, length);
}

std::vector<int> FreeBlocks::list() const {
  std::vector<int> out;
  out.reserve(size_t(count_));
  if (placement_ == BlockPlacement::Lifo) {
    std::vector<char> seen(size_t(num_blocks_), 0);
    for (int b : stack_) seen[size_t(b)] = 1;
    for (int b = 0; b < num_blocks_; ++b)
      if (seen[size_t(b)]) out.push_back(b);
    return out;
  }
  for (const auto& [start, length] : extents_)
    for (int b = start; b < start + length; ++b) out.push_back(b);
  return out;
}

void FreeBlocks::check() const {
  const auto num = [](int v) { return std::to_string(v); };
  if (placement_ == BlockPlacement::Lifo) {
    std::vector<char> seen(size_t(num_blocks_), 0);
    for (int b : stack_) {
      if (b < 0 || b >= num_blocks_) free_blocks_fail("free block " + num(b) + " outside the pool");
      if (seen[size_t(b)]++) free_blocks_fail("block " + num(b) + " twice on the free list");
    }
    if (int(stack_.size()) != count_) free_blocks_fail("count " + num(count_) + " but " + num(int(stack_.size())) + " listed");
    return;
  }
  int total = 0, end = -1;
  for (const auto& [start, length] : extents_) {
    if (length <= 0 || start < 0 || start + length > num_blocks_)
      free_blocks_fail("extent [" + num(start) + ", +" + num(length) + ") outside the pool");
    if (start <= end) free_blocks_fail("extent at " + num(start) + " touches or overlaps the one before");
    if (!by_length_.count({-length, start})) free_blocks_fail("extent at " + num(start) + " missing from the length index");
    end = start + length;
    total += length;
  }
  if (by_length_.size() != extents_.size()) free_blocks_fail("length index holds " + num(int(by_length_.size())) + " entries for " + num(int(extents_.size())) + " extents");
  if (total != count_) free_blocks_fail("count " + num(count_) + " but extents hold " + num(total));
}

}  // namespace cb::engine
