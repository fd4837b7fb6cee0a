// StreamingDecoder: text as tokens arrive, holding back what a later token may still change.
#include "internal.h"

namespace cb::engine::tok {
namespace detail {

size_t incomplete_utf8_tail(std::string_view s) {
  // Look back at most 3 bytes for the lead byte of a sequence that runs past the end.
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    const unsigned char c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const size_t len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 1;
    return len > back && c < 0xF5 ? back : 0;
  }
  return 0;
}

}  // namespace detail

namespace {
const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Where the text stops being final: before an incomplete UTF-8 tail, and before trailing U+FFFD
// characters (SentencePiece writes one for a byte-fallback sequence cut short, which the next
// byte token may complete).
size_t stable_end(const std::string& t) {
  size_t end = t.size() - detail::incomplete_utf8_tail(t);
  while (end >= 3 && t.compare(end - 3, 3, kReplacement) == 0) end -= 3;
  return end;
}
}  // namespace

std::string StreamingDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::string t = tok_.decode(ids_);
  const size_t end = stable_end(t);
  std::string out;
  if (end > emitted_) {
    out = t.substr(emitted_, end - emitted_);
    emitted_ = end;
  }
  // Everything so far returned: restart the window at this token when its own decode is
  // non-empty and final (then decode(window + later) = its text + the later text in context,
  // also under SentencePiece's rule that drops the leading space of the first text).
  if (emitted_ == t.size() && ids_.size() > 1) {
    const int32_t last = ids_.back();
    const std::string own = tok_.decode(std::span<const int32_t>(&last, 1));
    if (!own.empty() && stable_end(own) == own.size()) {
      ids_.assign(1, last);
      emitted_ = own.size();
    }
  }
  return out;
}

std::string StreamingDecoder::finish() {
  std::string out;
  if (!ids_.empty()) {
    const std::string t = tok_.decode(ids_);
    if (t.size() > emitted_) out = t.substr(emitted_);
  }
  if (const size_t tail = detail::incomplete_utf8_tail(out)) out.replace(out.size() - tail, tail, kReplacement);
  ids_.clear();
  emitted_ = 0;
  return out;
}

}  // namespace cb::engine::tok
