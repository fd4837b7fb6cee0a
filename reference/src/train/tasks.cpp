// The synthetic tasks (train/tasks.h): generators, the train / held-out split, seeded streams.
#include "cb/engine/train/tasks.h"

#include <algorithm>
#include <stdexcept>

namespace cb::engine::train {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform integer in [lo, hi] from raw generator output (rejection keeps it unbiased).
int uniform(std::mt19937_64& rng, int lo, int hi) {
  const uint64_t span = uint64_t(int64_t(hi) - lo) + 1;
  const uint64_t limit = ~uint64_t(0) - (~uint64_t(0) % span);
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return lo + int(x % span);
}

std::string letters(std::mt19937_64& rng, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += char('a' + uniform(rng, 0, 25));
  return s;
}

std::string number_with_digits(std::mt19937_64& rng, int digits) {
  if (digits == 1) return std::to_string(uniform(rng, 0, 9));
  std::string s(1, char('1' + uniform(rng, 0, 8)));
  for (int i = 1; i < digits; ++i) s += char('0' + uniform(rng, 0, 9));
  return s;
}

// Sum of two decimal strings (operands up to any length).
std::string add_decimal(const std::string& a, const std::string& b) {
  std::string out;
  int carry = 0;
  for (size_t i = 0; i < std::max(a.size(), b.size()) || carry; ++i) {
    int d = carry;
    if (i < a.size()) d += a[a.size() - 1 - i] - '0';
    if (i < b.size()) d += b[b.size() - 1 - i] - '0';
    out += char('0' + d % 10);
    carry = d / 10;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

bool balanced(const std::string& s) {
  std::string stack;
  for (char c : s) {
    const size_t open = std::string("([{").find(c), close = std::string(")]}").find(c);
    if (open != std::string::npos) {
      stack += c;
    } else if (close != std::string::npos) {
      if (stack.empty() || stack.back() != "([{"[close]) return false;
      stack.pop_back();
    }
  }
  return stack.empty();
}

// A random balanced string of n (even) brackets of three kinds.
std::string balanced_brackets(std::mt19937_64& rng, int n) {
  std::string s, stack;
  for (int i = 0; i < n; ++i) {
    const int remaining = n - i;
    const bool open = stack.empty() || (int(stack.size()) < remaining && uniform(rng, 0, 1) == 0);
    if (open) {
      const int kind = uniform(rng, 0, 2);
      s += "([{"[kind];
      stack += ")]}"[kind];
    } else {
      s += stack.back();
      stack.pop_back();
    }
  }
  return s;
}

std::vector<int32_t> bytes_of(const std::string& s) {
  std::vector<int32_t> out;
  for (unsigned char c : s) out.push_back(int32_t(c));
  return out;
}

TaskExample finish(const std::string& task, std::string prompt, std::string answer) {
  TaskExample e;
  e.task = task;
  e.prompt.push_back(kBos);
  for (int32_t b : bytes_of(prompt)) e.prompt.push_back(b);
  e.answer = bytes_of(answer);
  e.answer.push_back(kEos);
  e.prompt_text = std::move(prompt);
  e.answer_text = std::move(answer);
  return e;
}

int even_between(std::mt19937_64& rng, int lo, int hi) { return 2 * uniform(rng, (lo + 1) / 2, hi / 2); }

}  // namespace

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"recall", "copy", "reverse", "add", "brackets"};
  return names;
}

void check_task_name(const std::string& task) {
  const auto& names = task_names();
  if (std::find(names.begin(), names.end(), task) != names.end()) return;
  std::string known;
  for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown task '" + task + "' (known: " + known + ")");
}

double chance_accuracy(const std::string& task, const TaskShape& sh) {
  check_task_name(task);
  if (task == "recall") {  // one of the prompt's values, pairs uniform in [min, max]
    const int lo = std::max(1, sh.recall_min_pairs), hi = std::max(lo, std::min(sh.recall_max_pairs, 26));
    double s = 0;
    for (int n = lo; n <= hi; ++n) s += 1.0 / n;
    return s / (hi - lo + 1);
  }
  if (task == "brackets") return 0.5;  // yes / no, half each
  return 0.0;                          // copy, reverse, add: multi-token answers, ~0 by guessing
}

TaskExample make_example(const std::string& task, std::mt19937_64& rng, const TaskShape& sh) {
  if (task == "recall") {
    const int n = uniform(rng, sh.recall_min_pairs, std::min(sh.recall_max_pairs, 26));
    std::string keys = "abcdefghijklmnopqrstuvwxyz";
    for (int i = 25; i > 0; --i) std::swap(keys[size_t(i)], keys[size_t(uniform(rng, 0, i))]);
    std::string prompt = "rec:";
    std::vector<std::string> values;
    for (int i = 0; i < n; ++i) {
      std::string v(size_t(std::max(1, sh.recall_value_digits)), '0');
      for (char& d : v) d = char('0' + uniform(rng, 0, 9));
      if (i) prompt.push_back(' ');
      prompt.push_back(keys[size_t(i)]);
      prompt.append(v);
      values.push_back(std::move(v));
    }
    // Queries: distinct pairs in random order; the prompt answers all but the last.
    std::vector<int> order(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) order[size_t(i)] = i;
    for (int i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(uniform(rng, 0, i))]);
    const int queries = uniform(rng, 1, std::max(1, std::min(n, sh.recall_max_queries)));
    prompt.push_back('?');
    std::vector<std::pair<int32_t, int32_t>> spans;
    for (int j = 0; j + 1 < queries; ++j) {
      prompt.push_back(keys[size_t(order[size_t(j)])]);
      const int32_t begin = int32_t(prompt.size()) + 1;  // token index: BOS comes first
      prompt.append(values[size_t(order[size_t(j)])]);
      spans.push_back({begin, begin + int32_t(values[size_t(order[size_t(j)])].size())});
      prompt.push_back(' ');
    }
    const int last = order[size_t(queries - 1)];
    prompt.push_back(keys[size_t(last)]);
    TaskExample e = finish(task, prompt, values[size_t(last)]);
    e.prompt_answers = std::move(spans);
    return e;
  }
  if (task == "copy") {
    const std::string s = letters(rng, uniform(rng, sh.copy_min, sh.copy_max));
    return finish(task, "copy:" + s + "|", s);
  }
  if (task == "reverse") {
    const std::string s = letters(rng, uniform(rng, sh.reverse_min, sh.reverse_max));
    return finish(task, "rev:" + s + "|", std::string(s.rbegin(), s.rend()));
  }
  if (task == "add") {
    const std::string a = number_with_digits(rng, uniform(rng, sh.add_min_digits, sh.add_max_digits));
    const std::string b = number_with_digits(rng, uniform(rng, sh.add_min_digits, sh.add_max_digits));
    return finish(task, "add:" + a + "+" + b + "=", add_decimal(a, b));
  }
  if (task == "brackets") {
    const int n = even_between(rng, std::max(2, sh.brackets_min), std::max(2, sh.brackets_max));
    std::string s = balanced_brackets(rng, n);
    if (uniform(rng, 0, 1) == 1) {
      // Corrupt one bracket into another of the six until unbalanced (length parity gives nothing away).
      do {
        const std::string all = "()[]{}";
        const size_t i = size_t(uniform(rng, 0, n - 1));
        char c;
        do c = all[size_t(uniform(rng, 0, 5))];
        while (c == s[i]);
        s[i] = c;
      } while (balanced(s));
    }
    return finish(task, "brk:" + s + "?", balanced(s) ? "yes" : "no");
  }
  check_task_name(task);
  return {};
}

Split split_of(const std::string& prompt_text) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : prompt_text) h = (h ^ c) * 0x100000001b3ull;
  return h % kHeldOutModulus == 0 ? Split::HeldOut : Split::Train;
}

TaskStream::TaskStream(uint64_t seed, Split split, std::vector<std::string> tasks, TaskShape shape)
    : rng_(splitmix64(splitmix64(seed) ^ (split == Split::Train ? 0x747261696eull : 0x68656c646f7574ull))),
      split_(split),
      tasks_(tasks.empty() ? task_names() : std::move(tasks)),
      shape_(shape) {
  for (const auto& t : tasks_) check_task_name(t);
}

TaskExample TaskStream::next_of(const std::string& task) {
  for (;;) {
    TaskExample e = make_example(task, rng_, shape_);
    if (split_of(e.prompt_text) == split_) return e;
  }
}

TaskExample TaskStream::next() { return next_of(tasks_[size_t(uniform(rng_, 0, int(tasks_.size()) - 1))]); }

std::vector<TaskExample> held_out_set(const std::string& task, int n, uint64_t seed, const TaskShape& shape) {
  TaskStream s(seed, Split::HeldOut, {task}, shape);
  std::vector<TaskExample> out;
  for (int i = 0; i < n; ++i) out.push_back(s.next());
  return out;
}

}  // namespace cb::engine::train
