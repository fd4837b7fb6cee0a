// Text prompts for servers that take no token ids: the checkpoint's tokenizer (here the committed
// byte-level BPE test tokenizer as a checkpoint's tokenizer.json) decodes the seeded ids into valid
// UTF-8 text, and the tokens the harness counts are that text's encoding.
#include <gtest/gtest.h>

#include <filesystem>

#include "cb/engine/tokenizer/tokenizer.h"
#include "cb/harness/load/workload.h"
#include "cb/harness/suites/suites.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace cb::harness;

TEST(LoadTextPrompts, CheckpointTokenizerMakesTextAndCountsIt) {
  cb::test::TempDir dir("cb-text-prompts");
  fs::copy_file(fs::path(CB_SOURCE_DIR) / "suites/unit/data/tokenizers/bpe_llama3.json", dir.path() / "tokenizer.json");
  SuiteContext ctx;
  ctx.model_dir = dir.path() / "not-used";  // --tokenizer wins over the model folder
  ctx.tokenizer_dir = dir.path();
  const TextPrompts tp = make_text_prompts(ctx);
  EXPECT_EQ(tp.describe["kind"], "bpe");
  ASSERT_GT(tp.vocab_size, 256);
  const auto w = load::parse_workload(
      {{"schema", "claimbench.workload"}, {"schema_version", "1.0"}, {"name", "t"}, {"seed", 5}, {"slo", {{"e2e_ms", 50}}}, {"arrival", {{"process", "poisson"}, {"rate_rps", 50}}}, {"duration_s", 1}, {"min_requests", 20},
       {"prompt_tokens", {{"dist", "uniform"}, {"min", 16}, {"max", 64}}}, {"output_tokens", {{"dist", "fixed"}, {"value", 4}}}},
      "t.json", false);
  load::PlanOptions o;
  o.to_text = tp.to_text;
  o.encode = tp.encode;
  o.vocab_limit = tp.vocab_size;
  const load::Plan p = load::make_plan(w, o);
  ASSERT_GE(p.requests.size(), 20u);
  // The same plan with token ids: the text prompts keep most of the planned length (standalone
  // tokens only, so merges rarely shorten them much).
  load::PlanOptions ids_only;
  ids_only.vocab_limit = tp.vocab_size;
  const load::Plan q = load::make_plan(w, ids_only);
  size_t planned = 0, got = 0;
  for (size_t i = 0; i < p.requests.size(); ++i) planned += q.requests[i].req.prompt.size(), got += p.requests[i].req.prompt.size();
  EXPECT_GE(double(got), 0.6 * double(planned)) << got << " of " << planned;
  for (const auto& r : p.requests) {
    ASSERT_FALSE(r.req.text.empty());
    EXPECT_EQ(load::valid_utf8(r.req.text), r.req.text);
    EXPECT_EQ(r.req.prompt, tp.encode(r.req.text));
    EXPECT_LE(r.req.prompt.size(), 64u);  // at most the planned length
  }
  // Same seed, same texts.
  EXPECT_EQ(load::make_plan(w, o).requests[3].req.text, p.requests[3].req.text);
}

TEST(LoadTextPrompts, NoTokenizerIsAClearError) {
  cb::test::TempDir dir("cb-text-prompts-none");
  SuiteContext ctx;
  ctx.model_dir = dir.path();  // no tokenizer.json, tokenizer.model or config.json
  try {
    make_text_prompts(ctx);
    ADD_FAILURE() << "expected TokenizerError";
  } catch (const cb::engine::tok::TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos) << e.what();
  }
}
