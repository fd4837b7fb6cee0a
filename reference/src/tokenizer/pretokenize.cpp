// The byte-level BPE pre-tokenizer split, by hand: each pattern is an ordered alternation tried
// at each position (the first alternative that matches wins, as in the regex engines Hugging Face
// uses), written out as plain code over decoded code points.
#include <algorithm>

#include "internal.h"

namespace cb::engine::tok::detail {
namespace {

struct CpRange {
  uint32_t first, last;
};
#include "unicode_tables.inc"

template <size_t N>
bool in_ranges(const CpRange (&r)[N], uint32_t cp) {
  const CpRange* it = std::upper_bound(r, r + N, cp, [](uint32_t v, const CpRange& x) { return v < x.first; });
  return it != r && cp <= (it - 1)->last;
}

constexpr uint32_t kInvalid = 0xFFFFFFFF;  // a byte that is not valid UTF-8: an "other" character

// One decoded character: its code point and where its bytes are.
struct Ch {
  uint32_t cp;
  size_t begin, end;
};

std::vector<Ch> decode_utf8(std::string_view s) {
  std::vector<Ch> out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = p[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = len > 0 && i + size_t(len) <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
               (cp >= 0xD800 && cp <= 0xDFFF)))
      ok = false;
    if (!ok) {
      out.push_back({kInvalid, i, i + 1});
      ++i;
    } else {
      out.push_back({cp, i, i + size_t(len)});
      i += size_t(len);
    }
  }
  return out;
}

class Matcher {
 public:
  explicit Matcher(std::string_view s) : c_(decode_utf8(s)) {}
  size_t size() const { return c_.size(); }
  const Ch& at(size_t i) const { return c_[i]; }

  bool L(size_t i) const { return i < c_.size() && is_letter(c_[i].cp); }
  bool N(size_t i) const { return i < c_.size() && is_number(c_[i].cp); }
  bool S(size_t i) const { return i < c_.size() && is_space(c_[i].cp); }
  bool other(size_t i) const { return i < c_.size() && !L(i) && !N(i) && !S(i); }  // [^\s\p{L}\p{N}]
  bool is(size_t i, uint32_t cp) const { return i < c_.size() && c_[i].cp == cp; }
  bool crlf(size_t i) const { return is(i, '\r') || is(i, '\n'); }
  template <class P>
  size_t run(size_t i, P pred) const {  // end of the run of chars from i that satisfy pred
    while (i < c_.size() && pred(i)) ++i;
    return i;
  }

  // 's|'t|'re|'ve|'m|'ll|'d (optionally case-insensitive): end, or 0.
  size_t contraction(size_t i, bool icase) const {
    if (!is(i, '\'')) return 0;
    auto low = [&](size_t k) -> uint32_t {
      if (k >= c_.size()) return 0;
      const uint32_t cp = c_[k].cp;
      return icase && cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    };
    const uint32_t a = low(i + 1), b = low(i + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
  }
  // \s+(?!\S) then \s+ : the whitespace alternatives both patterns end with.
  size_t spaces(size_t i) const {
    const size_t e = run(i, [&](size_t k) { return S(k); });
    if (e == i) return 0;
    if (e == c_.size() || e - i == 1) return e;  // (?!\S) holds at the end; a single space: \s+
    return e - 1;                                // leave the last space to the next word
  }

  size_t gpt2(size_t i) const {
    if (size_t e = contraction(i, false)) return e;
    const size_t j = is(i, ' ') ? i + 1 : i;  // " ?"
    if (L(j)) return run(j, [&](size_t k) { return L(k); });
    if (N(j)) return run(j, [&](size_t k) { return N(k); });
    if (other(j)) return run(j, [&](size_t k) { return other(k); });
    if (size_t e = spaces(i)) return e;
    return i + 1;  // unreachable: every character is L, N, \s or other
  }

  size_t llama3(size_t i, bool digits3) const {
    if (size_t e = contraction(i, true)) return e;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (i < c_.size() && !crlf(i) && !L(i) && !N(i) && L(i + 1)) return run(i + 1, [&](size_t k) { return L(k); });
    if (L(i)) return run(i, [&](size_t k) { return L(k); });
    // \p{N}{1,3} (or \p{N})
    if (N(i)) {
      size_t e = i + 1;
      while (digits3 && e < i + 3 && N(e)) ++e;
      return e;
    }
    // " ?[^\s\p{L}\p{N}]+[\r\n]*"
    const size_t j = is(i, ' ') ? i + 1 : i;
    if (other(j)) {
      const size_t e = run(j, [&](size_t k) { return other(k); });
      return run(e, [&](size_t k) { return crlf(k); });
    }
    // \s*[\r\n]+ : up to and including the last CR/LF of the whitespace run
    const size_t e = run(i, [&](size_t k) { return S(k); });
    for (size_t k = e; k > i; --k)
      if (crlf(k - 1)) return k;
    if (size_t s = spaces(i)) return s;
    return i + 1;
  }

 private:
  std::vector<Ch> c_;
};

}  // namespace

bool is_letter(uint32_t cp) { return cp != kInvalid && in_ranges(kLetterRanges, cp); }
bool is_number(uint32_t cp) { return cp != kInvalid && in_ranges(kNumberRanges, cp); }
bool is_space(uint32_t cp) {  // Unicode White_Space
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

const char* pattern_regex(SplitPattern p) {
  switch (p) {
    case SplitPattern::Gpt2:
      return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
    case SplitPattern::Llama3:
      return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    case SplitPattern::Qwen2:
      return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  }
  return "";
}

bool recognise_pattern(const std::string& regex, SplitPattern& out) {
  for (SplitPattern p : {SplitPattern::Gpt2, SplitPattern::Llama3, SplitPattern::Qwen2}) {
    if (regex == pattern_regex(p)) {
      out = p;
      return true;
    }
  }
  // GPT-2's tokenizer.json writes the pattern with "\s+(?!\S)|\s+" the same way; a few files spell
  // the contraction group with an explicit (?:...) — accept that spelling too.
  if (regex == R"((?:'s|'t|'re|'ve|'m|'ll|'d)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)") {
    out = SplitPattern::Gpt2;
    return true;
  }
  return false;
}

std::vector<std::string_view> split_pieces(std::string_view text, SplitPattern p) {
  Matcher m(text);
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < m.size()) {
    const size_t e = p == SplitPattern::Gpt2 ? m.gpt2(i) : m.llama3(i, p == SplitPattern::Llama3);
    const size_t b0 = m.at(i).begin, b1 = m.at(e - 1).end;
    out.push_back(text.substr(b0, b1 - b0));
    i = e;
  }
  return out;
}

}  // namespace cb::engine::tok::detail
