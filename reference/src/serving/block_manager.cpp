// BlockManager: block ids, reference counts, copy-on-write and the prefix cache (see the header).
//
// Every block is in exactly one state: on the free list (ref 0, no hash), on the LRU list of
// evictable cached blocks (ref 0, registered hash), or referenced (ref > 0, hash or not). With the
// prefix cache under Runs placement the cached blocks are on the free list too (see take_block).
#include "cb/engine/serving/block_manager.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cb/engine/model/planted_defects.h"

namespace cb::engine {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Hash of all tokens up to the end of a block: chained over the previous block's hash, so equal
// block contents after different prefixes hash differently. Never 0 (0 means "not registered").
uint64_t hash_block(uint64_t prev, std::span<const int32_t> block_tokens) {
  uint64_t h = splitmix64(prev ^ 0x6a09e667f3bcc909ULL);
  for (int32_t t : block_tokens) h = splitmix64(h ^ static_cast<uint32_t>(t));
  return h == 0 ? 1 : h;
}

[[noreturn]] void fail(const std::string& what) { throw std::logic_error("BlockManager: " + what); }

int checked_blocks(int num_blocks, int block_size) {
  if (num_blocks <= 0 || block_size <= 0)
    throw std::invalid_argument("BlockManager: num_blocks and block_size must be positive (got " +
                                std::to_string(num_blocks) + ", " + std::to_string(block_size) + ")");
  return num_blocks;
}

}  // namespace

BlockManager::BlockManager(int num_blocks, int block_size, bool enable_prefix_cache, BlockPlacement placement)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      prefix_cache_(enable_prefix_cache),
      // Planted defect kv-scatter: every allocator places LIFO.
      free_(checked_blocks(num_blocks, block_size), planted(Defect::KvScatter) ? BlockPlacement::Lifo : placement),
      cached_placed_(enable_prefix_cache && free_.placement() == BlockPlacement::Runs) {
  ref_.assign(num_blocks, 0);
  block_hash_.assign(num_blocks, 0);
  lru_prev_.assign(num_blocks, -1);
  lru_next_.assign(num_blocks, -1);
  lru_in_.assign(num_blocks, 0);
  stats_.num_blocks = num_blocks;
}

int BlockManager::available_blocks() const { return free_.size() + (cached_placed_ ? 0 : lru_size_); }

BlockManager::Seq& BlockManager::seq_at(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) throw std::out_of_range("BlockManager: unknown sequence " + std::to_string(seq));
  return it->second;
}

const BlockManager::Seq& BlockManager::seq_at(SeqId seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) throw std::out_of_range("BlockManager: unknown sequence " + std::to_string(seq));
  return it->second;
}

const std::vector<int32_t>& BlockManager::block_table(SeqId seq) const { return seq_at(seq).blocks; }

// ---- LRU list of unreferenced cached blocks ----

void BlockManager::lru_push_back(int b) {
  lru_prev_[b] = lru_tail_;
  lru_next_[b] = -1;
  if (lru_tail_ >= 0) lru_next_[lru_tail_] = b; else lru_head_ = b;
  lru_tail_ = b;
  lru_in_[b] = 1;
  ++lru_size_;
}

void BlockManager::lru_remove(int b) {
  const int p = lru_prev_[b], n = lru_next_[b];
  if (p >= 0) lru_next_[p] = n; else lru_head_ = n;
  if (n >= 0) lru_prev_[n] = p; else lru_tail_ = p;
  lru_prev_[b] = lru_next_[b] = -1;
  lru_in_[b] = 0;
  --lru_size_;
}

// ---- reference counting ----

void BlockManager::acquire(int b) {
  if (ref_[b]++ == 0) {
    if (lru_in_[b]) {
      lru_remove(b);
      if (cached_placed_) free_.remove(b);
    }
    stats_.peak_used_blocks = std::max(stats_.peak_used_blocks, ++used_);
  }
}

// With the prefix cache, finished requests leave their blocks cached, so the free list runs dry and
// in LRU order new blocks land wherever the oldest cached block lies: scattered, undoing the Runs
// placement (on the placement trace, runs of 1.05 blocks; paged attention on scattered blocks runs
// at 0.79-0.83 of contiguous on Zen 5). So under Runs the cached blocks stay on the free list as
// well, and placement picks among free and cached blocks together; a cached block it picks is
// evicted there (the LRU list still orders the rest).
int BlockManager::take_block(int after, int run) {
  int b = -1;
  if (!free_.empty()) {
    b = free_.take(after, run);
  } else if (lru_head_ >= 0) {
    b = lru_head_;
  } else {
    return -1;
  }
  if (lru_in_[b]) {  // a cached block: evicted, its prefix forgotten
    lru_remove(b);
    hash_to_block_.erase(block_hash_[b]);
    block_hash_[b] = 0;
    ++stats_.evictions;
  }
  acquire(b);
  return b;
}

void BlockManager::release_block(int b) {
  if (--ref_[b] > 0) return;
  --used_;
  if (prefix_cache_ && block_hash_[b] != 0) {
    lru_push_back(b);
    if (cached_placed_) free_.put(b);
  } else {
    if (block_hash_[b] != 0) hash_to_block_.erase(block_hash_[b]);
    block_hash_[b] = 0;
    free_.put(b);
  }
}

// ---- sequence operations ----

std::optional<int> BlockManager::allocate(SeqId seq, std::span<const int32_t> tokens) {
  if (seqs_.count(seq))
    throw std::invalid_argument("BlockManager::allocate: sequence " + std::to_string(seq) +
                                " already exists");
  const int n = static_cast<int>(tokens.size());
  const int needed = blocks_for(n);

  // Look up leading full blocks, at most those before the block holding the last token, so at
  // least one token (the last) is always computed. Stop at the first miss (the hash is chained).
  std::vector<int32_t> hits;
  uint64_t chain = 0;
  int queries = 0, from_lru = 0;
  if (prefix_cache_ && n > 0) {
    const int max_cached = (n - 1) / block_size_;
    for (int i = 0; i < max_cached; ++i) {
      const uint64_t h = hash_block(chain, tokens.subspan(size_t(i) * block_size_, block_size_));
      ++queries;
      auto it = hash_to_block_.find(h);
      if (it == hash_to_block_.end()) break;
      hits.push_back(it->second);
      if (ref_[it->second] == 0) ++from_lru;  // sharing it takes it off the evictable list
      chain = h;
    }
  }
  // All or nothing: check before touching anything (a failed attempt changes no state or counter).
  const int fresh = needed - static_cast<int>(hits.size());
  if (fresh > available_blocks() - from_lru) return std::nullopt;

  Seq s;
  s.blocks.reserve(needed);
  for (int b : hits) {
    acquire(b);
    s.blocks.push_back(b);
  }
  for (int i = 0; i < fresh; ++i)  // cannot fail (checked above)
    s.blocks.push_back(take_block(s.blocks.empty() ? -1 : s.blocks.back(), fresh - i));
  s.tokens = static_cast<int64_t>(hits.size()) * block_size_;
  s.hashed_blocks = static_cast<int>(hits.size());
  s.chain = chain;
  stats_.prefix_queries += queries;
  stats_.prefix_hits += static_cast<int64_t>(hits.size());
  seqs_.emplace(seq, std::move(s));
  return static_cast<int>(hits.size()) * block_size_;
}

std::optional<int> BlockManager::reserve(SeqId seq, int tokens) {
  if (seqs_.count(seq))
    throw std::invalid_argument("BlockManager::reserve: sequence " + std::to_string(seq) + " already exists");
  if (tokens < 0) throw std::invalid_argument("BlockManager::reserve: " + std::to_string(tokens) + " tokens");
  const int needed = blocks_for(tokens);
  if (needed > available_blocks()) return std::nullopt;
  Seq s;
  s.blocks.reserve(needed);
  for (int i = 0; i < needed; ++i)  // cannot fail (checked above)
    s.blocks.push_back(take_block(s.blocks.empty() ? -1 : s.blocks.back(), needed - i));
  seqs_.emplace(seq, std::move(s));
  return 0;
}

BlockManager::AppendResult BlockManager::append_slot(SeqId seq, int pos) {
  Seq& s = seq_at(seq);
  const int64_t capacity = static_cast<int64_t>(s.blocks.size()) * block_size_;
  if (pos < 0 || pos > capacity)
    throw std::invalid_argument("BlockManager::append_slot: position " + std::to_string(pos) +
                                " outside [0, " + std::to_string(capacity) + "] for sequence " +
                                std::to_string(seq));
  if (pos == capacity) {  // starts a new block
    const int b = take_block(s.blocks.empty() ? -1 : s.blocks.back());
    if (b < 0) return {};
    s.blocks.push_back(b);
    return {true, std::nullopt};
  }
  const int index = pos / block_size_;
  int32_t& slot = s.blocks[size_t(index)];
  if (ref_[slot] == 1) return {true, std::nullopt};
  const int b = take_block(index > 0 ? s.blocks[size_t(index - 1)] : -1);  // shared: copy-on-write
  if (b < 0) return {};
  const BlockCopy copy{slot, b};
  release_block(slot);  // ref > 1, so it stays referenced
  slot = b;
  ++stats_.cow_copies;
  return {true, copy};
}

BlockManager::ChunkAppendResult BlockManager::append_slots(SeqId seq, int pos, int count) {
  Seq& s = seq_at(seq);
  const int64_t capacity = static_cast<int64_t>(s.blocks.size()) * block_size_;
  if (pos < 0 || pos > capacity || count < 1)
    throw std::invalid_argument("BlockManager::append_slots: positions [" + std::to_string(pos) + ", " +
                                std::to_string(int64_t(pos) + count) + ") do not start in [0, " + std::to_string(capacity) +
                                "] for sequence " + std::to_string(seq));
  // All or nothing: every block the chunk touches that is missing or shared needs a fresh one.
  const int first = pos / block_size_, last = (pos + count - 1) / block_size_;
  int fresh = 0;
  for (int i = first; i <= last; ++i) fresh += i >= static_cast<int>(s.blocks.size()) || ref_[s.blocks[size_t(i)]] > 1;
  if (fresh > available_blocks()) return {};
  ChunkAppendResult out;
  out.ok = true;
  for (int i = first; i <= last; ++i) {
    if (i >= static_cast<int>(s.blocks.size())) {  // cannot fail (checked above)
      s.blocks.push_back(take_block(s.blocks.empty() ? -1 : s.blocks.back(), last - i + 1));
      continue;
    }
    int32_t& slot = s.blocks[size_t(i)];
    if (ref_[slot] == 1) continue;
    const int b = take_block(i > 0 ? s.blocks[size_t(i - 1)] : -1);  // shared: copy-on-write
    out.copies.push_back({slot, b});
    release_block(slot);  // ref > 1, so it stays referenced
    slot = b;
    ++stats_.cow_copies;
  }
  return out;
}

void BlockManager::commit_tokens(SeqId seq, std::span<const int32_t> tokens) {
  Seq& s = seq_at(seq);
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n > static_cast<int64_t>(s.blocks.size()) * block_size_)
    throw std::invalid_argument("BlockManager::commit_tokens: " + std::to_string(n) +
                                " tokens exceed the " + std::to_string(s.blocks.size()) +
                                " blocks of sequence " + std::to_string(seq));
  s.tokens = n;
  if (!prefix_cache_) return;
  const int full = static_cast<int>(n / block_size_);
  if (s.hashed_blocks > full) {  // rolled back below what was hashed: rehash from the start
    s.hashed_blocks = 0;
    s.chain = 0;
  }
  for (int i = s.hashed_blocks; i < full; ++i) {
    const uint64_t h = hash_block(s.chain, tokens.subspan(size_t(i) * block_size_, block_size_));
    const int b = s.blocks[i];
    if (block_hash_[b] == 0 && !hash_to_block_.count(h)) {
      block_hash_[b] = h;
      hash_to_block_.emplace(h, b);
    }
    s.chain = h;
  }
  s.hashed_blocks = std::max(s.hashed_blocks, full);
}

void BlockManager::fork(SeqId parent, SeqId child) {
  const Seq& p = seq_at(parent);
  if (seqs_.count(child))
    throw std::invalid_argument("BlockManager::fork: child sequence " + std::to_string(child) +
                                " already exists");
  Seq c = p;  // copy before emplace: emplace may rehash and move p
  for (int b : c.blocks) acquire(b);
  seqs_.emplace(child, std::move(c));
}

void BlockManager::free(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) throw std::out_of_range("BlockManager: unknown sequence " + std::to_string(seq));
  // Release the tail first: a prefix's later blocks are useless without its earlier ones, so they
  // should be evicted (LRU) first; on a LIFO free list this makes block 0 of the table reused first.
  const auto& blocks = it->second.blocks;
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) release_block(*b);
  seqs_.erase(it);
}

BlockStats BlockManager::stats() const {
  BlockStats st = stats_;
  st.free_blocks = free_.size() - (cached_placed_ ? lru_size_ : 0);
  st.cached_blocks = lru_size_;
  st.used_blocks = used_;
  st.tokens_stored = 0;
  for (const auto& [id, s] : seqs_) st.tokens_stored += s.tokens;
  return st;
}

void BlockManager::check_consistency() const {
  const auto num = [](auto v) { return std::to_string(v); };
  std::vector<int64_t> refs(num_blocks_, 0);
  for (const auto& [id, s] : seqs_) {
    if (s.tokens > static_cast<int64_t>(s.blocks.size()) * block_size_)
      fail("sequence " + num(id) + " holds more tokens than its blocks");
    for (int b : s.blocks) {
      if (b < 0 || b >= num_blocks_) fail("sequence " + num(id) + " holds bad block " + num(b));
      ++refs[b];
    }
  }
  free_.check();
  std::vector<int> where(num_blocks_, 0);  // bit 1 free, 2 lru, 4 referenced
  for (int b : free_.list()) {
    if (where[b] & 1) fail("block " + num(b) + " twice on the free list");
    where[b] |= 1;
    if (block_hash_[b] != 0 && !(cached_placed_ && lru_in_[b])) fail("free block " + num(b) + " has a hash");
  }
  int lru_count = 0;
  for (int b = lru_head_, prev = -1; b >= 0; prev = b, b = lru_next_[b]) {
    if (where[b] & 2 || lru_prev_[b] != prev || !lru_in_[b]) fail("LRU list corrupt at block " + num(b));
    where[b] |= 2;
    if (++lru_count > num_blocks_) fail("LRU list cycles");
    if (block_hash_[b] == 0) fail("cached block " + num(b) + " has no hash");
  }
  if (lru_count != lru_size_) fail("LRU size " + num(lru_size_) + " but " + num(lru_count) + " listed");
  int used = 0;
  for (int b = 0; b < num_blocks_; ++b) {
    if (ref_[b] != refs[b])
      fail("block " + num(b) + " ref " + num(ref_[b]) + " but " + num(refs[b]) + " table entries");
    if (ref_[b] > 0) where[b] |= 4, ++used;
    if (lru_in_[b] != ((where[b] & 2) != 0)) fail("block " + num(b) + " LRU flag wrong");
    if (cached_placed_ && (where[b] & 2) && !(where[b] & 1)) fail("cached block " + num(b) + " not on the free list");
    if (cached_placed_ && where[b] == 3) where[b] = 2;  // cached: on both lists
    if (where[b] != 1 && where[b] != 2 && where[b] != 4)
      fail("block " + num(b) + " in state set " + num(where[b]) + " (1 free, 2 cached, 4 referenced)");
    if (block_hash_[b] != 0) {
      auto it = hash_to_block_.find(block_hash_[b]);
      if (it == hash_to_block_.end() || it->second != b) fail("block " + num(b) + " hash not indexed");
    }
  }
  for (const auto& [h, b] : hash_to_block_)
    if (b < 0 || b >= num_blocks_ || block_hash_[b] != h)
      fail("hash index points at block " + num(b) + ", which holds another hash");
  if (used != used_) fail("used counter " + num(used_) + " but " + num(used) + " referenced");
  if (used_ > stats_.peak_used_blocks) fail("peak below current use");
}

}  // namespace cb::engine
