// Keeps freed buffers for the next request instead of returning them to the allocator: the host
// collectives of tensor parallelism (broadcast_host, all_gather_host) stage through a buffer of the
// same few sizes every decode step, and on nccl each new one was a cudaMalloc and each release a
// cudaFree, which waits for the whole device. Generic over the raw allocator so the policy is
// tested without a GPU (suites/unit/test_comm.cpp).
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <unordered_map>
#include <utility>

namespace cb::comm {

class BlockCache {
 public:
  using RawAlloc = std::function<void*(size_t)>;  // throws (or returns nullptr) when out of memory
  using RawFree = std::function<void(void*)>;

  // At most max_kept_bytes are kept (released blocks past that go straight back).
  BlockCache(RawAlloc raw_alloc, RawFree raw_free, size_t max_kept_bytes)
      : alloc_(std::move(raw_alloc)), free_(std::move(raw_free)), max_kept_(max_kept_bytes) {}
  // Releases the kept blocks; blocks still out belong to whoever took them.
  ~BlockCache() { trim(0); }
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // A kept block of at least `bytes` and at most twice that (the smallest such: a small request
  // does not pin a large block), else a new one of exactly `bytes`. Contents are whatever they were.
  void* take(size_t bytes) {
    auto it = kept_.lower_bound(bytes);
    if (it != kept_.end() && it->first <= 2 * bytes) {
      void* p = it->second;
      out_[p] = it->first;
      kept_bytes_ -= it->first;
      kept_.erase(it);
      ++reused_;
      return p;
    }
    void* p = alloc_(bytes);
    if (!p) return nullptr;
    out_[p] = bytes;
    ++allocated_;
    return p;
  }

  // Back to the cache. A pointer take() did not hand out goes to the raw free as is (false).
  bool give(void* p) {
    auto it = out_.find(p);
    if (it == out_.end()) {
      free_(p);
      return false;
    }
    const size_t bytes = it->second;
    out_.erase(it);
    kept_.emplace(bytes, p);
    kept_bytes_ += bytes;
    trim(max_kept_);
    return true;
  }

  // Releases kept blocks, largest first, until at most `keep_bytes` remain.
  void trim(size_t keep_bytes) {
    while (kept_bytes_ > keep_bytes && !kept_.empty()) {
      auto last = std::prev(kept_.end());
      kept_bytes_ -= last->first;
      free_(last->second);
      kept_.erase(last);
      ++released_;
    }
  }

  size_t kept_bytes() const { return kept_bytes_; }
  size_t blocks_out() const { return out_.size(); }
  size_t allocated() const { return allocated_; }  // raw allocations made
  size_t reused() const { return reused_; }        // requests served from kept blocks
  size_t released() const { return released_; }    // kept blocks given back to the raw free

 private:
  RawAlloc alloc_;
  RawFree free_;
  size_t max_kept_;
  std::multimap<size_t, void*> kept_;        // size -> block
  std::unordered_map<void*, size_t> out_;   // block -> its size, while taken
  size_t kept_bytes_ = 0, allocated_ = 0, reused_ = 0, released_ = 0;
};

}  // namespace cb::comm
