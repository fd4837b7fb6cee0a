// For targets whose parser reads with libfccp (Debian libfccp-dev, csv.h): every io::LineReader
// allocates a 48 MiB buffer (new char[3 << 24]; block_len is 1 << 24) and frees it with the
// reader. Under ASan each such allocation is a fresh mmap whose 6 MiB of shadow is poisoned on
// allocation and again on free, page-faulting it in each time: ~50 ms of CPU per reader, which held
// fuzz_trace_csv to ~9 exec/s. This replaces the array operator new[]/delete[] of the target's
// process (the parser's code is unchanged) so that a request of exactly that size reuses one
// buffer, allocated once through malloc (so ASan still reports an overflow past its end);
// everything else goes to malloc/free as before, and ASan checks those as usual.
// What is lost for that one buffer: use-after-free reports, and fresh contents (a read of bytes the
// reader never filled sees the previous input's; ASan does not report such reads anyway).
// Include in one translation unit of a target only (it defines the replaceable functions).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace fuzz_fccp {
inline constexpr std::size_t kLineReaderBuffer = std::size_t(3) << 24;
inline void* cached = nullptr;
inline bool in_use = false;

inline void* allocate(std::size_t n) noexcept {
  if (n == kLineReaderBuffer && !in_use) {
    if (!cached) cached = std::malloc(n);
    if (cached) in_use = true;
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
