// SentencePiece tokenizer.model through libsentencepiece: byte fallback, the leading-space rule
// under streaming, load order and the model integration (LoadedModel with a real tokenizer).
// (Whole-corpus agreement with spm_encode / spm_decode and the Python binding is the ctests
// tokenizer.sentencepiece_matches_*.)
#include <gtest/gtest.h>

#include "cb/engine/model/engine.h"
#include "cb/engine/model/errors.h"
#include "cb/engine/model/model_init.h"
#include "cb/engine/server/openai_protocol.h"
#include "tokenizer_test_util.h"

using namespace cb::engine;
using namespace cb::engine::testing;

namespace {
std::unique_ptr<tok::Tokenizer> sp() { return tok::load_tokenizer_file(tok_data() / "sp.model"); }
}  // namespace

TEST(TokenizerSentencePiece, AvailableInThisBuild) {
  // The CI installs libsentencepiece-dev (ci/install-deps.sh); a build without it must say so.
  if (!tok::sentencepiece_available()) {
    try {
      sp();
      FAIL() << "loading a tokenizer.model without SentencePiece must throw";
    } catch (const tok::TokenizerError& e) {
      EXPECT_NE(std::string(e.what()).find("this build lacks SentencePiece"), std::string::npos) << e.what();
    }
    GTEST_SKIP() << "this build has no SentencePiece (install libsentencepiece-dev)";
  }
  auto t = sp();
  EXPECT_EQ(t->kind(), "sentencepiece");
  EXPECT_EQ(t->vocab_size(), 640);
  EXPECT_EQ(t->bos(), 1);  // make_sentencepiece.sh: --unk_id=0 --bos_id=1 --eos_id=2
  EXPECT_EQ(t->eos(), 2);
}

TEST(TokenizerSentencePiece, ByteFallbackEncodesAndDecodes) {
  if (!tok::sentencepiece_available()) GTEST_SKIP() << "no SentencePiece in this build";
  auto t = sp();
  // U+16A0 is not in the model: byte pieces <0xE1> <0x9A> <0xA0>. SentencePiece puts the 256
  // byte pieces right after the three control ids, in byte order: id = 3 + byte.
  const auto ids = t->encode("\xE1\x9A\xA0", false);
  ASSERT_GE(ids.size(), 3u);
  const std::vector<int32_t> tail(ids.end() - 3, ids.end());
  EXPECT_EQ(tail, (std::vector<int32_t>{3 + 0xE1, 3 + 0x9A, 3 + 0xA0}));
  EXPECT_EQ(t->decode(ids), "\xE1\x9A\xA0");
  // Streaming: nothing final until the third byte piece completes the character (SentencePiece's
  // own decode of the first two writes U+FFFD, which must not leak out).
  std::vector<std::string> pieces;
  EXPECT_EQ(stream_all(*t, ids, &pieces), "\xE1\x9A\xA0");
  ASSERT_EQ(pieces.size(), ids.size() + 1);
  EXPECT_EQ(pieces[pieces.size() - 3], "");
  EXPECT_EQ(pieces[pieces.size() - 4].find("\xEF\xBF\xBD"), std::string::npos);
  EXPECT_EQ(pieces[pieces.size() - 2], "\xE1\x9A\xA0");
}

TEST(TokenizerSentencePiece, LeadingSpaceAndStreamingEqualDecode) {
  if (!tok::sentencepiece_available()) GTEST_SKIP() << "no SentencePiece in this build";
  auto t = sp();
  const auto ids = t->encode("Hello world", true);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(t->decode(ids), "Hello world");  // the dummy-prefix space of "▁Hello" is dropped
  std::vector<std::string> pieces;
  EXPECT_EQ(stream_all(*t, ids, &pieces), "Hello world");
  // The space before "world" is kept when streamed: some piece starts with it.
  bool space = false;
  for (const auto& p : pieces) space |= !p.empty() && p[0] == ' ';
  EXPECT_TRUE(space);
  // Every corpus line: pushes + finish == decode(all), each piece valid UTF-8; lines with
  // characters outside the model go through byte fallback.
  int fallback_lines = 0;
  for (const std::string& line : corpus_lines()) {
    const auto all = t->encode(line, true);
    pieces.clear();
    EXPECT_EQ(stream_all(*t, all, &pieces), t->decode(all)) << line;
    for (const auto& p : pieces) EXPECT_TRUE(valid_utf8(p)) << line;
    bool fb = false;
    for (int32_t id : all) fb |= id >= 3 && id < 259;
    fallback_lines += fb;
  }
  EXPECT_GT(fallback_lines, 3);
  // Double spaces and a leading space survive streaming as they survive decode.
  for (const char* s : {"  two  spaces ", " lead", "a\n\nb", "x \xF0\x9F\x98\x80 y"}) {
    const auto v = t->encode(s, false);
    EXPECT_EQ(stream_all(*t, v), t->decode(v)) << s;
  }
}

TEST(TokenizerSentencePiece, GarbageModelFileIsAClearError) {
  if (!tok::sentencepiece_available()) GTEST_SKIP() << "no SentencePiece in this build";
  ScratchDir dir("sp-bad");
  write_text(dir.path / "tokenizer.model", "this is not a protobuf");
  try {
    tok::load_tokenizer(dir.path);
    FAIL() << "a garbage tokenizer.model loaded";
  } catch (const tok::TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.model: not a usable SentencePiece model"), std::string::npos) << e.what();
  }
}

TEST(TokenizerLoad, OrderAndSpecialIdSources) {
  if (!tok::sentencepiece_available()) GTEST_SKIP() << "no SentencePiece in this build";
  ScratchDir dir("load-order");
  std::filesystem::copy_file(tok_data() / "sp.model", dir.path / "tokenizer.model");
  write_text(dir.path / "config.json", R"({"vocab_size": 640, "bos_token_id": 1, "eos_token_id": 2})");
  EXPECT_EQ(tok::load_tokenizer(dir.path)->kind(), "sentencepiece");
  // tokenizer.json first.
  std::filesystem::copy_file(tok_data() / "bpe_llama3.json", dir.path / "tokenizer.json");
  auto t = tok::load_tokenizer(dir.path);
  EXPECT_EQ(t->kind(), "bpe");
  EXPECT_EQ(t->bos(), 1);  // config.json names them, over the file's own 556 / 557
  EXPECT_EQ(t->describe()["special_ids_from"], "config.json:bos_token_id, config.json:eos_token_id");
  // tokenizer_config.json names tokens by text; generation_config.json still wins for EOS.
  write_text(dir.path / "config.json", R"({"vocab_size": 640})");
  write_text(dir.path / "tokenizer_config.json", R"({"bos_token": {"content": "<|begin_of_text|>"}, "eos_token": "<|eot_id|>"})");
  t = tok::load_tokenizer(dir.path);
  EXPECT_EQ(t->bos(), 556);
  EXPECT_EQ(t->eos(), 558);
  write_text(dir.path / "generation_config.json", R"({"eos_token_id": [557, 558]})");
  t = tok::load_tokenizer(dir.path);
  EXPECT_EQ(t->bos(), 556);
  EXPECT_EQ(t->eos_ids(), (std::vector<int>{557, 558}));
  write_text(dir.path / "tokenizer_config.json", R"({"bos_token": "<nope>"})");
  EXPECT_THROW(tok::load_tokenizer(dir.path), tok::TokenizerError);
  // A tokenizer.json that is not byte-level BPE gives way to the tokenizer.model next to it ...
  auto j = nlohmann::json::parse(read_text(tok_data() / "bpe_gpt2.json"));
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  write_text(dir.path / "tokenizer.json", j.dump());
  std::filesystem::remove(dir.path / "tokenizer_config.json");
  EXPECT_EQ(tok::load_tokenizer(dir.path)->kind(), "sentencepiece");
  // ... and is the error without one.
  std::filesystem::remove(dir.path / "tokenizer.model");
  try {
    tok::load_tokenizer(dir.path);
    FAIL() << "an unsupported tokenizer.json loaded";
  } catch (const tok::TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json: field 'pre_tokenizer.type'"), std::string::npos) << e.what();
  }
}

TEST(TokenizerLoad, LoadedModelUsesTheCheckpointsTokenizer) {
  if (!tok::sentencepiece_available()) GTEST_SKIP() << "no SentencePiece in this build";
  ScratchDir dir("model-sp");
  auto cfg = preset_config("tiny");
  cfg.vocab_size = 640;
  cfg.bos_token_id = 1;
  cfg.eos_token_id = 2;
  cfg.pad_token_id = -1;
  const auto m_dir = dir.path / "m";
  write_random_model(cfg, 7, m_dir, cb::kernels::DType::F32, false);
  std::filesystem::copy_file(tok_data() / "sp.model", m_dir / "tokenizer.model");
  auto m = LoadedModel::open(m_dir, "cpu");
  EXPECT_EQ(m->tokenizer().kind(), "sentencepiece");
  const auto prompt = m->tokenizer().encode("Привет, мир", true);
  EXPECT_EQ(prompt.front(), 1);
  EXPECT_LT(prompt.size(), std::string("Привет, мир").size());  // fewer tokens than bytes
  GenerateOptions g;
  g.max_tokens = 4;
  g.stop_at_eos = false;
  const auto r = generate(*m, prompt, g);
  EXPECT_EQ(r.tokens.size(), 4u);
  EXPECT_TRUE(valid_utf8(stream_all(m->tokenizer(), r.tokens)));

  // A config whose vocabulary is smaller than the tokenizer's is refused at load.
  cfg.vocab_size = 300;
  const auto small = dir.path / "small";
  write_random_model(cfg, 7, small, cb::kernels::DType::F32, false);
  std::filesystem::copy_file(tok_data() / "sp.model", small / "tokenizer.model");
  try {
    LoadedModel::open(small, "cpu");
    FAIL() << "a model smaller than its tokenizer loaded";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("vocab_size 300 is smaller than the vocabulary of the model's sentencepiece tokenizer (640"),
              std::string::npos)
        << e.what();
  }
}

TEST(TokenizerLoad, ServerTextPromptsUseTheModelsTokenizer) {
  if (!tok::sentencepiece_available()) GTEST_SKIP() << "no SentencePiece in this build";
  auto t = sp();
  const auto r = parse_completion_request(R"({"prompt": "Привет, мир", "max_tokens": 2})", *t, 4096);
  EXPECT_EQ(r.prompt_ids, t->encode("Привет, мир", true));
  EXPECT_EQ(r.prompt_ids.front(), 1);
  // Id prompts are checked against the tokenizer's vocabulary.
  EXPECT_THROW(parse_completion_request(R"({"prompt": [1, 640]})", *t, 4096), ProtocolError);
}
