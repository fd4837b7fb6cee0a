// SentencePiece tokenizer.model (Llama 2, TinyLlama, Mistral) through Debian's libsentencepiece,
// when the build found it (CB_HAVE_SENTENCEPIECE); without it, loading says so.
#include "internal.h"

#ifdef CB_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace cb::engine::tok {

bool sentencepiece_available() {
#ifdef CB_HAVE_SENTENCEPIECE
  return true;
#else
  return false;
#endif
}

}  // namespace cb::engine::tok

namespace cb::engine::tok::detail {

#ifdef CB_HAVE_SENTENCEPIECE
namespace {

class SentencePieceTok final : public TokenizerBase {
 public:
  explicit SentencePieceTok(const std::filesystem::path& file) : file_(file.string()) {
    const auto st = sp_.Load(file_);
    if (!st.ok()) throw TokenizerError(file_ + ": not a usable SentencePiece model: " + st.ToString());
    bos_ = sp_.bos_id();
    set_eos(sp_.eos_id() >= 0 ? std::vector<int>{sp_.eos_id()} : std::vector<int>{});
  }
  std::string kind() const override { return "sentencepiece"; }
  int vocab_size() const override { return sp_.GetPieceSize(); }
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int> ids;
    const auto st = sp_.Encode(text, &ids);
    if (!st.ok()) throw TokenizerError(file_ + ": encode failed: " + st.ToString());
    std::vector<int32_t> out;
    out.reserve(ids.size() + 1);
    if (add_bos && bos_ >= 0) out.push_back(bos_);
    out.insert(out.end(), ids.begin(), ids.end());
    return out;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::vector<int> v;
    v.reserve(ids.size());
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size())
        throw TokenizerError(file_ + ": token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                             std::to_string(vocab_size()) + ")");
      // Special ids set from generation_config.json / config.json decode to nothing, like the
      // model file's own control tokens.
      if (id == bos_ || std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end()) continue;
      v.push_back(id);
    }
    std::string out;
    const auto st = sp_.Decode(v, &out);
    if (!st.ok()) throw TokenizerError(file_ + ": decode failed: " + st.ToString());
    return out;
  }
  int token_to_id(const std::string& t) const override {
    const int id = sp_.PieceToId(t);
    return id == sp_.unk_id() && t != sp_.IdToPiece(id) ? -1 : id;
  }

 protected:
  nlohmann::json describe_own() const override {
    return {{"kind", "sentencepiece"}, {"file", file_}, {"vocab_size", vocab_size()}, {"unk", sp_.unk_id()}};
  }

 private:
  sentencepiece::SentencePieceProcessor sp_;
  std::string file_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::filesystem::path& file) {
  if (!std::filesystem::is_regular_file(file)) throw TokenizerError(file.string() + ": cannot open (no such file)");
  return std::make_unique<SentencePieceTok>(file);
}
#else
std::unique_ptr<Tokenizer> load_sentencepiece(const std::filesystem::path& file) {
  throw TokenizerError(file.string() + ": a SentencePiece tokenizer.model, but this build lacks SentencePiece "
                       "(install libsentencepiece-dev and reconfigure)");
}
#endif

}  // namespace cb::engine::tok::detail
