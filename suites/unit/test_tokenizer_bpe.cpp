// Hugging Face byte-level BPE (tokenizer.json): the pre-tokenizer split checked by hand against
// the regexes, ids checked by hand, special tokens, ignore_merges, streaming, and bad files.
// (Whole-corpus agreement with an independent Python encoder is the ctest
// tokenizer.bpe_*_matches_python_reference.)
#include <functional>
#include <unistd.h>

#include <gtest/gtest.h>

#include "../../reference/src/tokenizer/internal.h"
#include "tokenizer_test_util.h"

using namespace cb::engine;
using namespace cb::engine::testing;
using tok::detail::SplitPattern;
using Pieces = std::vector<std::string>;

namespace {

Pieces split(const std::string& s, SplitPattern p) {
  Pieces out;
  for (auto v : tok::detail::split_pieces(s, p)) out.emplace_back(v);
  return out;
}

nlohmann::json vocab_of(const std::string& file) {
  return nlohmann::json::parse(read_text(tok_data() / file))["model"]["vocab"];
}

std::string expect_load_error(const std::filesystem::path& file, const std::string& needle) {
  try {
    tok::load_tokenizer_file(file);
    ADD_FAILURE() << file << ": loaded, expected an error containing: " << needle;
  } catch (const tok::TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << "the message names the file: " << e.what();
    return e.what();
  }
  return "";
}

}  // namespace

// Each expectation was worked out by hand from the pattern's alternatives (first match wins) and
// cross-checked with Python's re over the same pattern (suites/tokenizers/bpe_reference.py).
TEST(TokenizerBpe, Gpt2SplitByHand) {
  const auto G = SplitPattern::Gpt2;
  EXPECT_EQ(split("Hello world", G), (Pieces{"Hello", " world"}));
  // \s+(?!\S) leaves the last space of a run to the word after it.
  EXPECT_EQ(split("hello   world", G), (Pieces{"hello", "  ", " world"}));
  EXPECT_EQ(split("It's 12345!", G), (Pieces{"It", "'s", " 12345", "!"}));
  // Contractions are case-sensitive in GPT-2: "'S" is punctuation then a letter.
  EXPECT_EQ(split("IT'S", G), (Pieces{"IT", "'", "S"}));
  EXPECT_EQ(split("(hello)", G), (Pieces{"(", "hello", ")"}));
  // A combining mark (U+0301, category Mn) is neither \p{L} nor \p{N}.
  EXPECT_EQ(split("Cafe\xCC\x81 x", G), (Pieces{"Cafe", "\xCC\x81", " x"}));
  EXPECT_EQ(split("a \xF0\x9F\x98\x80\xF0\x9F\x98\x80 b", G), (Pieces{"a", " \xF0\x9F\x98\x80\xF0\x9F\x98\x80", " b"}));
  EXPECT_EQ(split("a  ", G), (Pieces{"a", "  "}));  // at the end (?!\S) holds: the whole run
  EXPECT_EQ(split("a\n\n  b", G), (Pieces{"a", "\n\n ", " b"}));
  EXPECT_EQ(split("x\r\ny", G), (Pieces{"x", "\r", "\n", "y"}));
  // Cyrillic and Greek are letters; CJK ideographs too; U+00A0 is whitespace.
  EXPECT_EQ(split("Привет, мир", G), (Pieces{"Привет", ",", " мир"}));
  EXPECT_EQ(split("κόσμε 你好", G), (Pieces{"κόσμε", " 你好"}));
  EXPECT_EQ(split("a\xC2\xA0" "b", G), (Pieces{"a", "\xC2\xA0", "b"}));
  // A byte that is not UTF-8 is one "other" character.
  EXPECT_EQ(split("a\xFF" "b", G), (Pieces{"a", "\xFF", "b"}));
}

TEST(TokenizerBpe, Llama3AndQwen2SplitByHand) {
  const auto L = SplitPattern::Llama3;
  EXPECT_EQ(split("IT'S", L), (Pieces{"IT", "'S"}));  // (?i:...) contractions
  EXPECT_EQ(split("It's 12345!", L), (Pieces{"It", "'s", " ", "123", "45", "!"}));  // \p{N}{1,3}
  EXPECT_EQ(split("(hello)", L), (Pieces{"(hello", ")"}));  // [^\r\n\p{L}\p{N}]?\p{L}+
  EXPECT_EQ(split("\tworld", L), (Pieces{"\tworld"}));
  EXPECT_EQ(split("a\n\n  b", L), (Pieces{"a", "\n\n", " ", " b"}));  // \s*[\r\n]+ stops at the last newline
  EXPECT_EQ(split("x\r\ny", L), (Pieces{"x", "\r\n", "y"}));
  EXPECT_EQ(split("ok!!\n\nnext", L), (Pieces{"ok", "!!\n\n", "next"}));  // punctuation takes trailing newlines
  EXPECT_EQ(split("Cafe\xCC\x81 x", L), (Pieces{"Cafe", "\xCC\x81", " x"}));
  EXPECT_EQ(split("12345", SplitPattern::Qwen2), (Pieces{"1", "2", "3", "4", "5"}));
  SplitPattern p;
  ASSERT_TRUE(tok::detail::recognise_pattern(tok::detail::pattern_regex(SplitPattern::Llama3), p));
  EXPECT_EQ(p, SplitPattern::Llama3);
  EXPECT_FALSE(tok::detail::recognise_pattern("\\w+", p));
}

TEST(TokenizerBpe, IdsByHand) {
  auto t = tok::load_tokenizer_file(tok_data() / "bpe_gpt2.json");
  const auto v = vocab_of("bpe_gpt2.json");
  EXPECT_EQ(t->kind(), "bpe");
  EXPECT_EQ(t->vocab_size(), 557);  // 256 bytes + 300 merges + <|endoftext|>
  // train_bpe.py gives byte b the id b; U+16A0 (E1 9A A0) is not in the corpus, so no merge
  // touches its bytes: three byte tokens.
  EXPECT_EQ(t->encode("\xE1\x9A\xA0", false), (std::vector<int32_t>{0xE1, 0x9A, 0xA0}));
  // A space is byte 0x20, which GPT-2's table maps to U+0120 'Ġ' (the 33rd unprintable byte:
  // 256 + 32). The trainer made "Ġand" by merging inside the corpus word " and", so the same
  // merges, applied by rank to the piece " and", give that one token.
  ASSERT_TRUE(v.contains("\xC4\xA0" "and"));
  const int32_t and_id = v["\xC4\xA0" "and"].get<int32_t>();
  EXPECT_EQ(t->encode(" and", false), (std::vector<int32_t>{and_id}));
  // " and and": the split gives " and", " and"; each is that token.
  EXPECT_EQ(t->encode(" and and", false), (std::vector<int32_t>{and_id, and_id}));
  // '\n' (byte 10) maps to U+010A 'Ċ' and stays a single byte token.
  EXPECT_EQ(t->encode("\n", false), (std::vector<int32_t>{10}));
  EXPECT_EQ(t->decode(std::vector<int32_t>{and_id, 10}), " and\n");
}

TEST(TokenizerBpe, SpecialTokensMatchBeforeTheSplitAndDecodeToNothing) {
  auto t = tok::load_tokenizer_file(tok_data() / "bpe_gpt2.json");
  EXPECT_EQ(t->encode("<|endoftext|>", false), (std::vector<int32_t>{556}));
  const auto ab = t->encode("x<|endoftext|>y", false);
  EXPECT_EQ(ab, (std::vector<int32_t>{'x', 556, 'y'}));
  EXPECT_EQ(t->decode(ab), "xy");
  // The file's own specials: <|endoftext|> is GPT-2's BOS and EOS.
  EXPECT_EQ(t->bos(), 556);
  EXPECT_EQ(t->eos(), 556);
  EXPECT_EQ(t->encode("hi", true).front(), 556);

  auto l = tok::load_tokenizer_file(tok_data() / "bpe_llama3.json");
  EXPECT_EQ(l->bos(), 556);  // <|begin_of_text|>
  EXPECT_EQ(l->eos(), 557);  // <|end_of_text|>
  const auto ids = l->encode("<|begin_of_text|>hi<|eot_id|><tool>", false);
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 556);
  EXPECT_EQ(ids[ids.size() - 2], 558);
  EXPECT_EQ(ids.back(), 559);
  // Special tokens decode to nothing; the non-special <tool> to its text.
  EXPECT_EQ(l->decode(ids), "hi<tool>");
  EXPECT_EQ(stream_all(*l, ids), "hi<tool>");
}

TEST(TokenizerBpe, IgnoreMergesTakesAWholeVocabularyPieceAsIs) {
  // A vocabulary where merges alone would give "ab" + "c", but "abc" is a token: with
  // ignore_merges the pre-tokenized piece "abc" maps straight to it.
  ScratchDir dir("bpe-ignore");
  auto make = [&](bool ignore) {
    nlohmann::json j = {
        {"model",
         {{"type", "BPE"},
          {"ignore_merges", ignore},
          {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"abc", 4}}},
          {"merges", nlohmann::json::array({"a b"})}}},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
        {"decoder", {{"type", "ByteLevel"}}}};
    write_text(dir.path / "tokenizer.json", j.dump());
    return tok::load_tokenizer_file(dir.path / "tokenizer.json");
  };
  EXPECT_EQ(make(false)->encode("abc", false), (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(make(true)->encode("abc", false), (std::vector<int32_t>{4}));
  EXPECT_EQ(make(true)->decode(std::vector<int32_t>{4, 3}), "abcab");
}

TEST(TokenizerBpe, StreamingSplitsNoCharacterAndEqualsDecode) {
  for (const char* file : {"bpe_gpt2.json", "bpe_llama3.json"}) {
    auto t = tok::load_tokenizer_file(tok_data() / file);
    // U+16A0 is three byte tokens: nothing until the last one.
    tok::StreamingDecoder d(*t);
    EXPECT_EQ(d.push(0xE1), "");
    EXPECT_EQ(d.push(0x9A), "");
    EXPECT_EQ(d.push(0xA0), "\xE1\x9A\xA0");
    EXPECT_EQ(d.finish(), "");
    int multi = 0;
    for (const std::string& line : corpus_lines()) {
      const auto ids = t->encode(line, true);
      std::vector<std::string> pieces;
      EXPECT_EQ(stream_all(*t, ids, &pieces), line) << file;
      for (const auto& p : pieces) EXPECT_TRUE(valid_utf8(p)) << file << ": " << line;
      for (int32_t id : ids)
        if (id < 256 && id >= 0xC0) ++multi;  // a lead byte on its own: a character split over tokens
    }
    EXPECT_GT(multi, 10) << file << ": the corpus should exercise characters split across tokens";
  }
}

TEST(TokenizerBpe, BadFilesGiveClearErrors) {
  ScratchDir dir("bpe-bad");
  const auto f = dir.path / "tokenizer.json";
  const std::string good = read_text(tok_data() / "bpe_gpt2.json");
  write_text(f, good.substr(0, good.size() / 2));
  expect_load_error(f, "not valid JSON");
  write_text(f, R"({"model": {"type": "BPE", "dropout": 1e400}})");  // out_of_range, not parse_error
  expect_load_error(f, "not valid JSON");
  auto with = [&](const std::function<void(nlohmann::json&)>& change) {
    auto j = nlohmann::json::parse(good);
    change(j);
    write_text(f, j.dump());
  };
  with([](auto& j) { j["model"].erase("merges"); });
  expect_load_error(f, "field 'model.merges': missing");
  with([](auto& j) { j.erase("model"); });
  expect_load_error(f, "field 'model': missing");
  with([](auto& j) { j["model"]["type"] = "WordPiece"; });
  expect_load_error(f, "field 'model.type': \"WordPiece\" is not supported");
  with([](auto& j) { j["model"]["type"] = "Unigram"; });
  expect_load_error(f, "field 'model.type': \"Unigram\" is not supported");
  with([](auto& j) { j["model"]["merges"][3] = "no_space_here"; });
  expect_load_error(f, "field 'model.merges[3]': \"no_space_here\" is not two tokens");
  with([](auto& j) { j["model"]["merges"][0] = "zz qq"; });
  expect_load_error(f, "field 'model.merges[0]': token \"zz\" is not in model.vocab");
  with([](auto& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; });
  expect_load_error(f, "field 'pre_tokenizer.type': \"Metaspace\" is not supported");
  with([](auto& j) { j["normalizer"] = {{"type", "NFKC"}}; });
  expect_load_error(f, "field 'normalizer': \"NFKC\" is not supported");
  const std::string l3 = read_text(tok_data() / "bpe_llama3.json");
  auto j = nlohmann::json::parse(l3);
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  write_text(f, j.dump());
  expect_load_error(f, "field 'pre_tokenizer.pretokenizers[0].pattern.Regex': an unknown split pattern");
  auto t = tok::load_tokenizer_file(tok_data() / "bpe_gpt2.json");
  EXPECT_THROW(t->decode(std::vector<int32_t>{557}), tok::TokenizerError);
}

// Found by suites/fuzz/fuzz_tokenizer_files: a field of the wrong type escaped as nlohmann's
// type_error (json::value() on a non-object, or a default of another type) instead of
// TokenizerError, one huge id asked for a 64 GiB decode table, and an added-token id above
// INT32_MAX wrapped around to a small one.
TEST(TokenizerBpe, WrongTypesAndHugeIdsAreTokenizerErrors) {
  ScratchDir dir("bpe-types");
  const auto f = dir.path / "tokenizer.json";
  const auto gpt2 = nlohmann::json::parse(read_text(tok_data() / "bpe_gpt2.json"));
  const auto llama3 = nlohmann::json::parse(read_text(tok_data() / "bpe_llama3.json"));
  auto with = [&](const nlohmann::json& base, const std::function<void(nlohmann::json&)>& change) {
    auto j = base;
    change(j);
    write_text(f, j.dump());
  };
  with(gpt2, [](auto& j) { j["pre_tokenizer"] = "ByteLevel"; });
  expect_load_error(f, "field 'pre_tokenizer': expected an object");
  with(gpt2, [](auto& j) { j["pre_tokenizer"]["add_prefix_space"] = 1; });
  expect_load_error(f, "field 'pre_tokenizer.add_prefix_space': expected true or false, got 1");
  with(gpt2, [](auto& j) { j["pre_tokenizer"]["type"] = 5; });
  expect_load_error(f, "field 'pre_tokenizer.type': expected a string, got 5");
  with(gpt2, [](auto& j) { j["decoder"] = 5; });
  expect_load_error(f, "field 'decoder': expected an object");
  with(gpt2, [](auto& j) { j["model"]["type"] = 5; });
  expect_load_error(f, "field 'model.type': expected a string");
  with(gpt2, [](auto& j) { j["added_tokens"][0]["special"] = "yes"; });
  expect_load_error(f, "field 'added_tokens[0].special': expected true or false");
  with(gpt2, [](auto& j) { j["added_tokens"][0]["id"] = 4294967296LL + 5; });
  expect_load_error(f, "field 'added_tokens[0].id': the token has id 4294967301, above the largest supported id");
  with(gpt2, [](auto& j) { j["added_tokens"][0]["id"] = 18446744073709551615ULL; });
  expect_load_error(f, "field 'added_tokens[0].id': the token has id 18446744073709551615, above the largest supported id");
  with(gpt2, [](auto& j) { j["added_tokens"][0]["id"] = -1; });
  expect_load_error(f, "field 'added_tokens[0].id': the token has id -1, not a non-negative integer");
  with(gpt2, [](auto& j) { j["model"]["vocab"]["zz"] = 2147483647; });
  expect_load_error(f, "field 'model.vocab': token \"zz\" has id 2147483647, above the largest supported id 4194303");
  with(llama3, [](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = 3; });
  expect_load_error(f, "field 'pre_tokenizer.pretokenizers[0].behavior': expected a string");
  with(llama3, [](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["invert"] = "no"; });
  expect_load_error(f, "field 'pre_tokenizer.pretokenizers[0].invert': expected true or false");
  with(llama3, [](auto& j) { j["pre_tokenizer"]["pretokenizers"][1] = 7; });
  expect_load_error(f, "field 'pre_tokenizer.pretokenizers': only [Split(Regex), ByteLevel] is supported");
  // null is the field's default, as Hugging Face writes an unset option; the largest id loads.
  with(gpt2, [](auto& j) {
    j["pre_tokenizer"]["add_prefix_space"] = nullptr;
    j["pre_tokenizer"]["use_regex"] = nullptr;
    j["model"]["vocab"]["zz"] = 4194303;
  });
  auto t = tok::load_tokenizer_file(f);
  EXPECT_EQ(t->vocab_size(), 4194304);
  EXPECT_EQ(t->describe()["add_prefix_space"], false);
  EXPECT_NE(t->describe()["pre_tokenizer"], "none (whole text)");  // use_regex: null is true
}

TEST(TokenizerBpe, NfcNormalizerComposesBeforeTheSplit) {
  // Qwen2's tokenizer.json normalizes to NFC: "e" + U+0301 and the precomposed U+00E9 are the same
  // text to it (decomposed Hangul jamo too), while the file without the normalizer keeps them apart.
  auto j = nlohmann::json::parse(read_text(tok_data() / "bpe_llama3.json"));
  j["normalizer"] = {{"type", "NFC"}};
  const std::filesystem::path f = std::filesystem::temp_directory_path() / ("cb-nfc-" + std::to_string(::getpid()) + ".json");
  write_text(f, j.dump());
  auto with_nfc = tok::load_tokenizer_file(f);
  auto without = tok::load_tokenizer_file(tok_data() / "bpe_llama3.json");
  EXPECT_EQ(with_nfc->describe()["normalizer"], "NFC");
  EXPECT_EQ(with_nfc->encode("caf\u00e9 \uac00", false), with_nfc->encode("cafe\u0301 \u1100\u1161", false));
  EXPECT_EQ(with_nfc->decode(with_nfc->encode("cafe\u0301", false)), "caf\u00e9");
  EXPECT_NE(without->encode("caf\u00e9", false), without->encode("cafe\u0301", false));
  std::filesystem::remove(f);
}
