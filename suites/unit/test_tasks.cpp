// The synthetic tasks: answers checked by independent re-computation from the prompt text, token
// layout, determinism, and the train / held-out split.
#include <gtest/gtest.h>

#include <set>

#include "cb/engine/train/tasks.h"
#include "test_support.h"

using namespace cb::engine::train;

namespace {

// Balanced check written separately from the generator's (a counter per bracket kind plus order).
bool balanced_by_hand(const std::string& s) {
  std::vector<char> st;
  for (char c : s) {
    if (c == '(' || c == '[' || c == '{') st.push_back(c);
    if (c == ')' || c == ']' || c == '}') {
      const char want = c == ')' ? '(' : c == ']' ? '[' : '{';
      if (st.empty() || st.back() != want) return false;
      st.pop_back();
    }
  }
  return st.empty();
}

std::string expected_answer(const TaskExample& e) {
  const std::string& p = e.prompt_text;
  if (e.task == "copy") return p.substr(5, p.size() - 6);
  if (e.task == "reverse") {
    const std::string s = p.substr(4, p.size() - 5);
    return std::string(s.rbegin(), s.rend());
  }
  if (e.task == "add") {
    const size_t plus = p.find('+');
    return std::to_string(std::stol(p.substr(4, plus - 4)) + std::stol(p.substr(plus + 1, p.size() - plus - 2)));
  }
  if (e.task == "brackets") return balanced_by_hand(p.substr(4, p.size() - 5)) ? "yes" : "no";
  if (e.task == "recall") {
    const std::string list = p.substr(4, p.find('?') - 4);  // "a47 c19 x05"
    const size_t at = list.find(p.back());
    return at == std::string::npos ? "?" : list.substr(at + 1, size_t(TaskShape{}.recall_value_digits));
  }
  return "?";
}

}  // namespace

TEST(Tasks, AnswersAreCorrectAndTokensWellFormed) {
  TaskStream s(1, Split::Train);
  std::map<std::string, int> seen;
  int answered = 0;
  for (int i = 0; i < 2000; ++i) {
    const TaskExample e = s.next();
    ++seen[e.task];
    ASSERT_EQ(e.answer_text, expected_answer(e)) << e.task << ": " << e.prompt_text;
    ASSERT_EQ(e.prompt.front(), kBos);
    ASSERT_EQ(e.prompt.size(), e.prompt_text.size() + 1);
    ASSERT_EQ(e.answer.back(), kEos);
    ASSERT_EQ(e.answer.size(), e.answer_text.size() + 1);
    for (size_t k = 0; k < e.prompt_text.size(); ++k) ASSERT_EQ(e.prompt[k + 1], int32_t(uint8_t(e.prompt_text[k])));
    // Answered queries inside the prompt: the value of the key just before them.
    for (const auto& [begin, end] : e.prompt_answers) {
      ASSERT_EQ(e.task, "recall");
      const int digits = TaskShape{}.recall_value_digits;
      ASSERT_EQ(end - begin, digits);
      const std::string list = e.prompt_text.substr(4, e.prompt_text.find('?') - 4);
      const char key = char(e.prompt[size_t(begin - 1)]);
      std::string value;
      for (int32_t j = begin; j < end; ++j) value += char(e.prompt[size_t(j)]);
      ASSERT_EQ(list.substr(list.find(key) + 1, size_t(digits)), value) << e.prompt_text;
      ++answered;
    }
  }
  EXPECT_GT(answered, 300);  // recall prompts carry 0-3 answered queries
  for (const auto& t : task_names()) EXPECT_GT(seen[t], 300) << t;  // ~400 each
}

TEST(Tasks, ShapesAreRespected) {
  TaskShape sh;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 500; ++i) {
    const auto r = make_example("recall", rng, sh);
    const size_t pairs = (r.prompt_text.find('?') - 4 + 1) / size_t(2 + sh.recall_value_digits);
    EXPECT_GE(int(pairs), sh.recall_min_pairs);
    EXPECT_LE(int(pairs), sh.recall_max_pairs);
    EXPECT_LT(int(r.prompt_answers.size()), sh.recall_max_queries);
    EXPECT_LE(r.prompt_answers.size(), pairs - 1);
    const auto a = make_example("add", rng, sh);
    EXPECT_LE(a.prompt_text.size(), 4 + 3 + 1 + 3 + 1u);
    const auto b = make_example("brackets", rng, sh);
    EXPECT_EQ((b.prompt_text.size() - 5) % 2, 0u);
  }
}

TEST(Tasks, BracketsAreHalfBalanced) {
  std::mt19937_64 rng(4);
  int yes = 0;
  for (int i = 0; i < 1000; ++i) yes += make_example("brackets", rng).answer_text == "yes";
  EXPECT_GT(yes, 430);
  EXPECT_LT(yes, 570);
}

TEST(Tasks, StreamsAreDeterministicPerSeedAndSplit) {
  TaskStream a(7, Split::Train), b(7, Split::Train), c(8, Split::Train);
  bool differs = false;
  for (int i = 0; i < 50; ++i) {
    const auto x = a.next(), y = b.next(), z = c.next();
    EXPECT_EQ(x.prompt, y.prompt);
    differs |= x.prompt != z.prompt;
  }
  EXPECT_TRUE(differs);
  const auto h1 = held_out_set("add", 30, 0), h2 = held_out_set("add", 30, 0);
  for (size_t i = 0; i < h1.size(); ++i) EXPECT_EQ(h1[i].prompt_text, h2[i].prompt_text);
}

TEST(Tasks, HeldOutNeverOverlapsTraining) {
  std::set<std::string> held;
  for (const auto& t : task_names())
    for (const auto& e : held_out_set(t, 200)) {
      EXPECT_EQ(split_of(e.prompt_text), Split::HeldOut);
      held.insert(e.prompt_text);
    }
  TaskStream train(1, Split::Train);
  for (int i = 0; i < 20000; ++i) {
    const auto e = train.next();
    ASSERT_EQ(held.count(e.prompt_text), 0u) << e.prompt_text;
  }
  // About 1 in kHeldOutModulus prompts is held out.
  std::mt19937_64 rng(9);
  int h = 0;
  for (int i = 0; i < 4000; ++i) h += split_of(make_example("copy", rng).prompt_text) == Split::HeldOut;
  EXPECT_NEAR(h / 4000.0, 1.0 / kHeldOutModulus, 0.03);
}

TEST(Tasks, UnknownTaskNamesTheKnownOnes) {
  try {
    TaskStream s(1, Split::Train, {"copy", "sort"});
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_CONTAINS(e.what(), "unknown task 'sort'");
    EXPECT_CONTAINS(e.what(), "recall, copy, reverse, add, brackets");
  }
  EXPECT_EQ(chance_accuracy("brackets"), 0.5);
  TaskShape sh;
  sh.recall_min_pairs = 2;
  sh.recall_max_pairs = 4;
  EXPECT_DOUBLE_EQ(chance_accuracy("recall", sh), (1 / 2.0 + 1 / 3.0 + 1 / 4.0) / 3);
  EXPECT_EQ(chance_accuracy("copy"), 0.0);
}
