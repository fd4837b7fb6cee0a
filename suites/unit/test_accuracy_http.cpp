// The accuracy suite against an HTTP endpoint (harness/src/suites/accuracy_http.cpp): parsing of
// QA files and completion answers with errors that name the line, windows, the committed default
// QA file, and a run against refengine serve in-process whose perplexity and exact match must equal
// the in-process --ppl-text / --qa-jsonl measurements of the same model.
#include <httplib.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "cb/engine/train/tasks.h"
#include "cb/harness/engine/accuracy.h"
#include "cb/harness/suites/accuracy_http.h"
#include "test_server_util.h"
#include "test_support.h"

namespace fs = std::filesystem;
namespace ah = cb::harness::accuracy_http;
using nlohmann::json;

namespace {

fs::path temp_file(const std::string& name, const std::string& content) {
  const fs::path p = fs::temp_directory_path() / ("cb_acc_http_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

using cb::test::error_of;

}  // namespace

TEST(AccuracyHttpParse, QaFileErrorsNameTheLine) {
  const auto ok = temp_file("ok.jsonl", "{\"prompt\":\"a\",\"answer\":\"b\"}\n\n{\"prompt\":\"c\",\"answer\":\"d\",\"task\":\"t\"}\n");
  const auto ex = ah::read_qa_jsonl(ok);
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[1].line, 3);
  EXPECT_EQ(ex[1].task, "t");
  const auto bad = temp_file("bad.jsonl", "{\"prompt\":\"a\",\"answer\":\"b\"}\n{\"prompt\":\"a\"}\n");
  EXPECT_NE(error_of([&] { ah::read_qa_jsonl(bad); }).find(bad.string() + ":2: expected an object"), std::string::npos);
  const auto notjson = temp_file("nj.jsonl", "{\"prompt\":\"a\",\"answer\":\"b\"}\n{\"prompt\":\"a\",\"answer\":\"b\"}\n{oops\n");
  EXPECT_NE(error_of([&] { ah::read_qa_jsonl(notjson); }).find(notjson.string() + ":3: not JSON"), std::string::npos);
  const auto huge = temp_file("huge.jsonl", "{\"prompt\":\"a\",\"answer\":\"b\",\"w\":1e400}\n");  // out_of_range
  EXPECT_NE(error_of([&] { ah::read_qa_jsonl(huge); }).find(huge.string() + ":1: not JSON"), std::string::npos);
  fs::remove(huge);
  const auto empty = temp_file("empty.jsonl", "\n");
  EXPECT_NE(error_of([&] { ah::read_qa_jsonl(empty); }).find("no prompt/answer lines"), std::string::npos);
  for (const auto& p : {ok, bad, notjson, empty}) fs::remove(p);
}

TEST(AccuracyHttpParse, CompletionAnswers) {
  const auto a = ah::parse_completion_answer(
      R"({"choices":[{"text":"33","finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3}})", "f:1");
  EXPECT_EQ(a.text, "33");
  EXPECT_EQ(a.finish_reason, "stop");
  EXPECT_EQ(a.prompt_tokens, 12);
  EXPECT_EQ(a.completion_tokens, 3);
  EXPECT_EQ(ah::parse_completion_answer(R"({"choices":[{"text":""}]})", "f:1").prompt_tokens, -1);
  EXPECT_NE(error_of([] { ah::parse_completion_answer("<html>", "qa.jsonl:7"); }).find("qa.jsonl:7: the answer is not JSON"),
            std::string::npos);
  EXPECT_NE(error_of([] { ah::parse_completion_answer(R"({"choices":[{"text":"1","x":1e400}]})", "qa.jsonl:8"); })
                .find("qa.jsonl:8: the answer is not JSON"),
            std::string::npos);
  EXPECT_NE(error_of([] { ah::parse_completion_answer(R"({"choices":[]})", "qa.jsonl:7"); }).find("qa.jsonl:7: the answer has no choices[0]"),
            std::string::npos);
  EXPECT_NE(error_of([] { ah::parse_completion_answer(R"({"choices":[{"text":5}]})", "qa.jsonl:7"); }).find("qa.jsonl:7: choices[0].text"),
            std::string::npos);
  EXPECT_NE(error_of([] { ah::parse_completion_answer(R"({"error":{"message":"boom"}})", "qa.jsonl:7"); }).find("qa.jsonl:7: the server answered an error"),
            std::string::npos);
}

TEST(AccuracyHttpParse, PromptLogprobs) {
  std::string why;
  auto p = ah::parse_prompt_logprobs(
      R"({"choices":[{"text":"ab","logprobs":{"tokens":["","a","b"],"token_logprobs":[null,-1.5,-0.5],"top_logprobs":[null,{},{}],"text_offset":[0,0,1]}}],"usage":{"prompt_tokens":3}})",
      "w0", why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->scored(), 2);
  EXPECT_DOUBLE_EQ(p->nll(), 2.0);
  EXPECT_EQ(p->prompt_tokens, 3);
  // Unusable answers: nullopt with the reason (the suite then SKIPs perplexity).
  EXPECT_FALSE(ah::parse_prompt_logprobs(R"({"choices":[{"text":"ab","logprobs":null}]})", "w0", why));
  EXPECT_NE(why.find("no choices[0].logprobs"), std::string::npos) << why;
  EXPECT_FALSE(ah::parse_prompt_logprobs(R"({"choices":[{"text":"","logprobs":{"content":[]}}]})", "w0", why));
  EXPECT_NE(why.find("no token_logprobs"), std::string::npos) << why;
  EXPECT_FALSE(ah::parse_prompt_logprobs(
      R"({"choices":[{"text":"","logprobs":{"token_logprobs":[]}}],"usage":{"prompt_tokens":3}})", "w0", why));
  EXPECT_NE(why.find("does not echo"), std::string::npos) << why;
  // Malformed values: errors naming where and the index.
  EXPECT_NE(error_of([&] { ah::parse_prompt_logprobs(R"({"choices":[{"logprobs":{"token_logprobs":[null,"x"]}}]})", "t.txt window 2", why); })
                .find("t.txt window 2: token_logprobs[1]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ah::parse_prompt_logprobs(R"({"choices":[{"logprobs":{"token_logprobs":[null,0.5]}}]})", "w", why); })
                .find("not a log-probability"),
            std::string::npos);
}

TEST(AccuracyHttpParse, WindowsKeepUtf8CharactersWhole) {
  EXPECT_EQ(ah::text_windows("abcdefg", 3), (std::vector<std::string>{"abc", "def", "g"}));
  const std::string t = "ab\xC3\xA9" "cd";  // "abécd": é is 2 bytes at offsets 2-3
  const auto w = ah::text_windows(t, 3);
  EXPECT_EQ(w, (std::vector<std::string>{"ab", "\xC3\xA9" "c", "d"}));
  EXPECT_EQ(ah::pair_key({"a", "b"}), ah::pair_key({"a", "b"}));
  EXPECT_NE(ah::pair_key({"a", "b"}), ah::pair_key({"ab"}));
}

// The committed default QA file is the default model's held-out task examples, 40 per task
// (train::held_out_set(task, 40, seed 0) in task_names() order): deterministic, so this test
// regenerates it and compares. CB_UPDATE_QA=1 writes it instead.
TEST(AccuracyHttpDefaults, DefaultQaFileIsTheHeldOutSet) {
  std::string want;
  for (const auto& task : cb::engine::train::task_names())
    for (const auto& e : cb::engine::train::held_out_set(task, 40, 0))
      want += json({{"prompt", e.prompt_text}, {"answer", e.answer_text}, {"task", task}}).dump() + "\n";
  const fs::path f = ah::default_qa_file();
  if (const char* u = std::getenv("CB_UPDATE_QA"); u && std::string(u) == "1") {
    fs::create_directories(f.parent_path());
    std::ofstream(f, std::ios::binary) << want;
  }
  std::ifstream in(f, std::ios::binary);
  ASSERT_TRUE(in) << f << " missing: regenerate with CB_UPDATE_QA=1 cb_unit_tests --gtest_filter=AccuracyHttpDefaults.*";
  std::stringstream got;
  got << in.rdbuf();
  EXPECT_EQ(got.str(), want) << f << " differs from held_out_set: regenerate with CB_UPDATE_QA=1";
  EXPECT_EQ(ah::read_qa_jsonl(f).size(), 200u);
}

// Against refengine serve in-process: the endpoint path must give the in-process numbers.
TEST(AccuracyHttpServer, MatchesTheInProcessMeasurementsOfTheSameModel) {
  cb::engine::testing::Running server;
  // 30 QA lines of the default file and a text of a few windows (forced small) of ASCII.
  std::ifstream in(ah::default_qa_file());
  std::string qa, line;
  for (int i = 0; i < 200 && std::getline(in, line); ++i)
    if (i % 7 == 0) qa += line + "\n";
  const auto qa_file = temp_file("qa.jsonl", qa);
  std::string text;
  for (int i = 0; i < 12; ++i) text += "add:" + std::to_string(17 * i) + "+" + std::to_string(5 + i) + "=" + std::to_string(22 + 18 * i) + " copy:abc|abc ";
  const auto ppl_file = temp_file("ppl.txt", text);

  ah::Options o;
  o.base_url = "http://127.0.0.1:" + std::to_string(server.port);
  o.qa_jsonl = qa_file;
  o.ppl_text = ppl_file;
  o.window_bytes = 99;  // several windows: BOS + 99 bytes = 100 tokens each
  const auto r = ah::run(o);
  const auto* em = r.find("accuracy.http.exact_match");
  const auto* pp = r.find("accuracy.http.perplexity");
  ASSERT_TRUE(em) << r.params.dump();
  ASSERT_TRUE(pp) << r.params.dump();
  EXPECT_EQ(em->samples.size(), size_t(em->params["total"].get<int>()));
  EXPECT_EQ(em->params["model"], "default");

  // In-process, same files: windows of 100 tokens (BOS + 99 bytes) on both sides.
  const auto byo_qa = cb::harness::accuracy::byo_exact_match(cb::engine::default_model_dir(), qa_file);
  EXPECT_EQ(em->params["correct"].get<int>(), byo_qa.correct) << "greedy at batch 1 on one build: the same answers";
  EXPECT_EQ(em->params["total"].get<int>(), byo_qa.total);
  const auto byo = cb::harness::accuracy::byo_perplexity(cb::engine::default_model_dir(), ppl_file, 100);
  EXPECT_GE(byo.windows, 3);
  EXPECT_EQ(pp->params["windows"].get<int>(), byo.windows);
  std::printf("perplexity: http %.9f, in-process %.9f (%d windows)\n", pp->value, byo.perplexity, byo.windows);
  EXPECT_NEAR(pp->value, byo.perplexity, 1e-6 * byo.perplexity);
  EXPECT_EQ(pp->params["scored_tokens"].get<int64_t>(), byo.tokens);
  EXPECT_EQ(pp->params["prompt_tokens"].get<int64_t>(), byo.tokens + byo.windows) << "each window: its bytes + BOS";
  fs::remove(qa_file);
  fs::remove(ppl_file);
}

// A server without prompt log-probabilities: perplexity is skipped with the reason; a malformed
// exact-match answer is an error naming the example's line.
TEST(AccuracyHttpServer, SkipsPerplexityAndNamesTheLineOfABadAnswer) {
  httplib::Server fake;
  bool garbage = false;
  fake.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"data":[{"id":"fake"}]})", "application/json");
  });
  fake.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
    if (garbage) return res.set_content("<html>oops</html>", "text/html");
    const json j = json::parse(req.body);
    if (j.value("echo", false)) return res.set_content(R"({"choices":[{"text":"","logprobs":null}]})", "application/json");
    res.set_content(R"({"choices":[{"text":"33","finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":1}})",
                    "application/json");
  });
  const int port = fake.bind_to_any_port("127.0.0.1");
  std::thread t([&] { fake.listen_after_bind(); });
  for (int i = 0; i < 5000 && !fake.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto qa = temp_file("fake.jsonl", "{\"prompt\":\"q1\",\"answer\":\"33\"}\n{\"prompt\":\"q2\",\"answer\":\"44\"}\n");
  const auto txt = temp_file("fake.txt", "some text");
  ah::Options o;
  o.base_url = "http://127.0.0.1:" + std::to_string(port);
  o.qa_jsonl = qa;
  o.ppl_text = txt;
  auto r = ah::run(o);
  ASSERT_TRUE(r.find("accuracy.http.exact_match"));
  EXPECT_DOUBLE_EQ(r.find("accuracy.http.exact_match")->value, 0.5);
  EXPECT_EQ(r.find("accuracy.http.exact_match")->samples, (std::vector<double>{1, 0}));
  EXPECT_FALSE(r.find("accuracy.http.perplexity"));
  const std::string why = r.params["not_measured"]["accuracy.http.perplexity"];
  EXPECT_NE(why.find("SKIP"), std::string::npos) << why;
  EXPECT_NE(why.find("logprobs"), std::string::npos) << why;
  // The profile says no: not even asked.
  o.prompt_logprobs = false;
  o.prompt_logprobs_reason = "llama.cpp's /v1/completions has no echo";
  r = ah::run(o);
  EXPECT_NE(r.params["not_measured"]["accuracy.http.perplexity"].get<std::string>().find("has no echo"), std::string::npos);
  garbage = true;
  EXPECT_NE(error_of([&] { ah::run(o); }).find(qa.string() + ":1: the answer is not JSON"), std::string::npos);
  fake.stop();
  t.join();
  fs::remove(qa);
  fs::remove(txt);
}
