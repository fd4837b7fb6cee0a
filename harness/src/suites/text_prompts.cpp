// The load suite's text prompts for servers that take no token ids: the checkpoint's tokenizer.
#include <algorithm>
#include <memory>

#include "cb/engine/tokenizer/tokenizer.h"
#include "cb/harness/load/workload.h"
#include "cb/harness/suites/suites.h"

namespace cb::harness {
using load::valid_utf8;

// Text prompts for servers that take no token ids (ServerProfile::token_id_prompts false): the
// tokenizer of --tokenizer DIR, else of the model folder, turns the seeded ids into text and
// counts the text's tokens (cb_tokenizer: tokenizer.json, tokenizer.model or the byte tokenizer).
TextPrompts make_text_prompts(const SuiteContext& ctx) {
  const std::filesystem::path dir = ctx.tokenizer_dir.empty() ? ctx.model_dir : ctx.tokenizer_dir;
  std::shared_ptr<const engine::tok::Tokenizer> tok = engine::tok::load_tokenizer(dir);
  TextPrompts t;
  t.vocab_size = tok->vocab_size();
  t.describe = tok->describe();
  t.describe["dir"] = dir.string();
  // Only tokens that are whole text on their own (not a lone byte of a multi-byte character, not a
  // special token): a drawn id that is not maps to the next one that is, so the text is valid
  // UTF-8 and re-encodes to about as many tokens as were drawn.
  auto usable = std::make_shared<std::vector<int32_t>>();
  for (int32_t id = 0; id < tok->vocab_size(); ++id) {
    const int32_t one[1] = {id};
    std::string piece;
    try {
      piece = tok->decode(one);
    } catch (const engine::tok::TokenizerError&) {
      continue;
    }
    const bool control = std::any_of(piece.begin(), piece.end(), [](char c) { return (unsigned char)c < 0x20 && c != '\n' && c != '\t'; });
    if (!piece.empty() && !control && valid_utf8(piece) == piece) usable->push_back(id);
  }
  if (usable->empty()) throw engine::tok::TokenizerError(dir.string() + ": the tokenizer has no token that decodes to text on its own");
  t.to_text = [tok, usable](const std::vector<int32_t>& ids) {
    std::vector<int32_t> mapped;
    mapped.reserve(ids.size());
    for (int32_t id : ids) {
      const auto it = std::lower_bound(usable->begin(), usable->end(), id);
      mapped.push_back(it != usable->end() ? *it : usable->front());
    }
    return tok->decode(mapped);
  };
  t.encode = [tok](const std::string& text) { return tok->encode(text, true); };
  return t;
}

}  // namespace cb::harness
