// The byte tokenizer behind tok::Tokenizer: the same ids as ByteTokenizer for the project's own
// models, specials that decode to nothing, streaming across a character's bytes, load order.
#include <gtest/gtest.h>

#include "cb/engine/model/engine.h"
#include "cb/engine/model/tokenizer.h"
#include "tokenizer_test_util.h"

using namespace cb::engine;
using namespace cb::engine::testing;

TEST(TokenizerByte, DefaultModelKeepsByteTokenizerIds) {
  auto t = tok::load_tokenizer(default_model_dir());
  const ByteTokenizer old(259, 256, 257, 258);
  EXPECT_EQ(t->kind(), "byte");
  EXPECT_EQ(t->vocab_size(), 259);
  EXPECT_EQ(t->bos(), 256);
  EXPECT_EQ(t->eos(), 257);
  for (const std::string& line : corpus_lines()) {
    EXPECT_EQ(t->encode(line, true), old.encode(line, true)) << line;
    EXPECT_EQ(t->encode(line, false), old.encode(line, false)) << line;
    const auto ids = t->encode(line, false);
    EXPECT_EQ(t->decode(ids), line);
    EXPECT_EQ(t->decode(ids), old.decode(ids));
  }
  EXPECT_EQ(t->encode("A\xC3\xA9", true), (std::vector<int32_t>{256, 65, 0xC3, 0xA9}));
}

TEST(TokenizerByte, SpecialsDecodeToNothingAndOutOfVocabularyThrows) {
  auto t = tok::load_tokenizer(default_model_dir());
  EXPECT_EQ(t->decode(std::vector<int32_t>{256, 'h', 'i', 257, 258}), "hi");
  try {
    t->decode(std::vector<int32_t>{'a', 259});
    FAIL() << "id 259 is outside the vocabulary";
  } catch (const tok::TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("259 is outside the vocabulary [0, 259)"), std::string::npos) << e.what();
  }
  const auto d = t->describe();
  EXPECT_EQ(d["kind"], "byte");
  EXPECT_EQ(d["vocab_size"], 259);
  EXPECT_EQ(d["eos_ids"], nlohmann::json::array({257}));
}

TEST(TokenizerByte, StreamingHoldsBackSplitCharacters) {
  auto t = tok::load_tokenizer(default_model_dir());
  // "é€😀": 2, 3 and 4 bytes, one token per byte.
  const std::string text = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
  tok::StreamingDecoder d(*t);
  std::vector<std::string> got;
  for (int32_t id : t->encode(text, false)) got.push_back(d.push(id));
  const std::vector<std::string> want = {"", "\xC3\xA9", "", "", "\xE2\x82\xAC", "", "", "", "\xF0\x9F\x98\x80"};
  EXPECT_EQ(got, want);
  EXPECT_EQ(d.finish(), "");
  // A character cut off at the end comes out as U+FFFD at finish().
  tok::StreamingDecoder cut(*t);
  EXPECT_EQ(cut.push('a'), "a");
  EXPECT_EQ(cut.push(0xE2), "");
  EXPECT_EQ(cut.push(0x82), "");
  EXPECT_EQ(cut.finish(), "\xEF\xBF\xBD");
  for (const std::string& line : corpus_lines()) {
    std::vector<std::string> pieces;
    const auto ids = t->encode(line, true);
    EXPECT_EQ(stream_all(*t, ids, &pieces), t->decode(ids));
    for (const auto& p : pieces) EXPECT_TRUE(valid_utf8(p)) << line;
  }
}

TEST(TokenizerByte, ConfigAndGenerationConfigSetSpecials) {
  ScratchDir dir("byte-specials");
  write_text(dir.path / "config.json", R"({"vocab_size": 300, "bos_token_id": 290, "eos_token_id": 291, "pad_token_id": null})");
  auto t = tok::load_tokenizer(dir.path);
  EXPECT_EQ(t->vocab_size(), 300);
  EXPECT_EQ(t->bos(), 290);
  EXPECT_EQ(t->eos(), 291);
  // generation_config.json wins; a list of EOS ids keeps them all, eos() is the first.
  write_text(dir.path / "generation_config.json", R"({"bos_token_id": 280, "eos_token_id": [281, 282]})");
  t = tok::load_tokenizer(dir.path);
  EXPECT_EQ(t->bos(), 280);
  EXPECT_EQ(t->eos(), 281);
  EXPECT_EQ(t->eos_ids(), (std::vector<int>{281, 282}));
  EXPECT_EQ(t->describe()["eos_ids"], nlohmann::json::array({281, 282}));
  EXPECT_EQ(t->decode(std::vector<int32_t>{280, 'o', 282, 'k', 281}), "ok");
  EXPECT_EQ(t->encode("z", true), (std::vector<int32_t>{280, 'z'}));
}

TEST(TokenizerByte, BadSpecialsAndMissingFilesNameTheFile) {
  ScratchDir dir("byte-bad");
  auto expect_error = [&](const std::string& needle) {
    try {
      tok::load_tokenizer(dir.path);
      FAIL() << "expected a TokenizerError containing: " << needle;
    } catch (const tok::TokenizerError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("no tokenizer.json, tokenizer.model or config.json");
  write_text(dir.path / "config.json", R"({"vocab_size": 259})");
  write_text(dir.path / "generation_config.json", R"({"eos_token_id": "x"})");
  expect_error("generation_config.json: key 'eos_token_id': expected a token id or a list of them");
  write_text(dir.path / "generation_config.json", R"({"eos_token_id": 400})");
  expect_error("eos id 400 is outside the tokenizer's vocabulary [0, 259)");
  write_text(dir.path / "generation_config.json", R"({"eos_token_id": )");
  expect_error("generation_config.json: not valid JSON");
  EXPECT_THROW(tok::load_tokenizer(dir.path / "nope"), tok::TokenizerError);
}
