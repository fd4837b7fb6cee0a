// Unicode NFC (canonical decomposition, canonical ordering, canonical composition; UAX #15) for
// tokenizer.json normalizers (Qwen2's "NFC"). Tables: nfc_tables.inc (gen_nfc_tables.py).
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "internal.h"

namespace cb::engine::tok::detail {
namespace {

struct CccEntry {
  uint32_t cp;
  uint8_t ccc;
};
struct DecompEntry {
  uint32_t cp, first, second;  // second 0: a one-code-point (singleton) decomposition
};
struct CompEntry {
  uint32_t first, second, composite;
};
#include "nfc_tables.inc"

// Hangul syllables (Unicode 3.12): algorithmic decomposition and composition.
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t ccc(uint32_t cp) {
  const auto it = std::lower_bound(std::begin(kCcc), std::end(kCcc), cp, [](const CccEntry& e, uint32_t c) { return e.cp < c; });
  return it != std::end(kCcc) && it->cp == cp ? it->ccc : 0;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto it = std::lower_bound(std::begin(kDecomp), std::end(kDecomp), cp, [](const DecompEntry& e, uint32_t c) { return e.cp < c; });
  if (it == std::end(kDecomp) || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second) decompose(it->second, out);
}

// The primary composite of (a, b), or 0.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount) return a + (b - kTBase);
  const auto it = std::lower_bound(std::begin(kComp), std::end(kComp), std::make_pair(a, b),
                                   [](const CompEntry& e, const std::pair<uint32_t, uint32_t>& k) {
                                     return e.first != k.first ? e.first < k.first : e.second < k.second;
                                   });
  return it != std::end(kComp) && it->first == a && it->second == b ? it->composite : 0;
}

// UTF-8 -> code points; false on malformed input.
bool decode_utf8(std::string_view s, std::vector<uint32_t>& out) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + size_t(len) > s.size()) return false;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    out.push_back(cp);
    i += size_t(len);
  }
  return true;
}

void encode_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

}  // namespace

std::string nfc(std::string_view text) {
  // ASCII is already NFC: the common case costs one scan.
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; })) return std::string(text);
  std::vector<uint32_t> cps;
  if (!decode_utf8(text, cps)) return std::string(text);  // not UTF-8: left as it is
  std::vector<uint32_t> d;
  d.reserve(cps.size() + 8);
  for (uint32_t cp : cps) decompose(cp, d);
  // Canonical ordering: each run of non-starters sorted stably by combining class.
  for (size_t i = 0; i < d.size();) {
    if (ccc(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && ccc(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + long(i), d.begin() + long(j), [](uint32_t a, uint32_t b) { return ccc(a) < ccc(b); });
    i = j;
  }
  // Canonical composition: each character composes with the last starter unless blocked (a
  // character between them has a class >= its own, or is a starter).
  std::vector<uint32_t> r;
  r.reserve(d.size());
  long starter = -1;
  int last_class = 256;
  for (uint32_t c : d) {
    const int cc = ccc(c);
    if (starter >= 0 && (last_class < cc || last_class == 0)) {
      if (const uint32_t comp = compose(r[size_t(starter)], c)) {
        r[size_t(starter)] = comp;
        continue;
      }
    }
    if (cc == 0) starter = long(r.size());
    last_class = cc;
    r.push_back(c);
  }
  std::string out;
  out.reserve(text.size());
  for (uint32_t cp : r) encode_utf8(cp, out);
  return out;
}

}  // namespace cb::engine::tok::detail
