// Seeded synthetic tasks with exact answers, for training the default model and measuring what a
// technique (quantization, pruning, ...) costs in accuracy.
//
// Every example is text for the byte-level tokenizer: prompt = BOS + bytes of e.g. "add:123+45=",
// answer = bytes of "168" + EOS. Accuracy is exact match of the greedy answer (all answer tokens,
// EOS included). The tasks:
//   recall    "rec:a47 c19 x05 k33?c19 x05 k" -> "33"   key-value list, then queries: all but the
//             last answered in the prompt (trained on: several lookups per list), the last asked
//   copy      "copy:kxmqa|" -> "kxmqa"
//   reverse   "rev:kxmqa|" -> "aqmxk"
//   add       "add:123+45=" -> "168"
//   brackets  "brk:([]{})?" -> "yes" / "no"  (balanced, or one bracket changed so it is not)
//
// Train and held-out sets never share an example: each generated prompt is hashed (FNV-1a) and
// belongs to the held-out split when hash % kHeldOutModulus == 0, else to the train split; each
// stream draws from its own seed (split mixed into the seed) and rejects the other split's prompts.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace cb::engine::train {

// Token ids of the byte-level tokenizer (ByteTokenizer): 0..255 bytes, then these.
constexpr int32_t kBos = 256, kEos = 257, kPad = 258, kByteVocab = 259;
constexpr uint64_t kHeldOutModulus = 8;

enum class Split { Train, HeldOut };

// Lengths per task; the defaults are what the default model is trained and evaluated on.
struct TaskShape {
  int recall_min_pairs = 1, recall_max_pairs = 12;  // "rec:": distinct one-letter keys, digit values
  int recall_max_queries = 4;                       // queries per prompt, the last one unanswered
  int recall_value_digits = 2;                      // digits per value
  int copy_min = 3, copy_max = 10;                  // "copy:": lowercase letters
  int reverse_min = 3, reverse_max = 8;             // "rev:"
  int add_min_digits = 1, add_max_digits = 3;       // "add:": each operand 1..3 digits
  int brackets_min = 2, brackets_max = 12;          // "brk:": balanced? yes / no (half each)
};

struct TaskExample {
  std::string task;                // "recall", "copy", "reverse", "add", "brackets"
  std::string prompt_text;         // e.g. "add:123+45="
  std::string answer_text;         // e.g. "168"
  std::vector<int32_t> prompt;     // BOS + bytes of prompt_text
  std::vector<int32_t> answer;     // bytes of answer_text + EOS
  // Spans [begin, end) of prompt token indices that answer earlier queries inside the prompt
  // (recall's already-answered queries): training puts loss on them as on the answer, evaluation
  // scores only the answer.
  std::vector<std::pair<int32_t, int32_t>> prompt_answers;
};

// Task names in a fixed order.
const std::vector<std::string>& task_names();
// Throws std::invalid_argument naming the task and listing the known ones.
void check_task_name(const std::string& task);
// Accuracy of the best answer-blind guess, for reports next to measured accuracy: recall, a value
// picked at random from the prompt's pairs (mean of 1/pairs over the shape's range, above 1/100
// for a uniform two-digit guess); brackets 1/2; copy, reverse, add ~0 (multi-token answers).
double chance_accuracy(const std::string& task, const TaskShape& shape = {});

// One example of `task` drawn from rng, ignoring splits.
TaskExample make_example(const std::string& task, std::mt19937_64& rng, const TaskShape& shape = {});
// Which split a prompt belongs to (the hash rule above).
Split split_of(const std::string& prompt_text);

// An endless seeded stream of examples of one split; each example's task is drawn uniformly.
// Draws use only mt19937_64 output (no std distributions, whose algorithms differ between
// standard libraries), so a seed gives the same examples everywhere.
class TaskStream {
 public:
  // tasks empty = all. Throws std::invalid_argument for an unknown task.
  TaskStream(uint64_t seed, Split split, std::vector<std::string> tasks = {}, TaskShape shape = {});
  TaskExample next();
  // The next example of one task (of this stream's split).
  TaskExample next_of(const std::string& task);

 private:
  std::mt19937_64 rng_;
  Split split_;
  std::vector<std::string> tasks_;
  TaskShape shape_;
};

// n held-out examples of one task: the same (task, n, seed) always gives the same set.
std::vector<TaskExample> held_out_set(const std::string& task, int n, uint64_t seed = 0, const TaskShape& shape = {});

}  // namespace cb::engine::train
