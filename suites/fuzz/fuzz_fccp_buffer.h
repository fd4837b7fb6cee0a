// For targets whose parser reads with libfccp (Debian libfccp-dev, csv.h): every io::LineReader
// allocates a 48 MiB buffer (new char[3 << 24]; block_len is 1 << 24) and frees it with the
// reader. Under ASan each such allocation is a fresh mmap whose 6 MiB of shadow is poisoned on
// allocation and again on free, page-faulting it in each time: ~50 ms of CPU per reader, which held
// fuzz_trace_csv to ~9 exec/s. This replaces the array operator new[]/delete[] of the target's
// process (the parser's code is unchanged) so that a request of exactly that size reuses one
// buffer, allocated once through malloc (so ASan still reports an overflow past its end);
// everything else goes to malloc/free as before, and ASan checks those as usual.
// What is lost for that one buffer: use-after-free reports, and fresh contents past its first
// 128 KiB (see kFreshPrefix).
// Include in one translation unit of a target only (it defines the replaceable functions).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace fuzz_fccp {
inline constexpr std::size_t kLineReaderBuffer = std::size_t(3) << 24;
inline void* cached = nullptr;
inline bool in_use = false;

// libfccp reads one byte past the data of a file whose last line has no newline
// (LineReader::next_line: `buffer[line_end] == '\n'` with line_end == data_end). A fresh buffer
// (glibc mmaps 48 MiB: zeros) never has '\n' there; a reused one may hold the previous input's,
// and then next_line runs past the end of the buffer (ci/fuzz.sh found that, 2026-12-04). So the
// part of the buffer an input can reach (inputs are at most 64 KiB, -max_len) is zeroed on reuse:
// the reader sees what it would see fresh.
inline constexpr std::size_t kFreshPrefix = std::size_t(1) << 17;

inline void* allocate(std::size_t n) noexcept {
  if (n == kLineReaderBuffer && !in_use) {
    if (!cached) cached = std::malloc(n);
    if (cached) {
      in_use = true;
      std::memset(cached, 0, kFreshPrefix);
    }
    return cached;
  }
  return std::malloc(n ? n : 1);
}
inline void release(void* p) noexcept {
  if (p && p == cached) in_use = false;
  else std::free(p);
}
}  // namespace fuzz_fccp

void* operator new[](std::size_t n) {
  if (void* p = fuzz_fccp::allocate(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return fuzz_fccp::allocate(n); }
void operator delete[](void* p) noexcept { fuzz_fccp::release(p); }
void operator delete[](void* p, std::size_t) noexcept { fuzz_fccp::release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { fuzz_fccp::release(p); }
