// The accuracy suite against an OpenAI-compatible endpoint (`claimbench run --suite accuracy --sut
// http://HOST:PORT`, in both `claimbench` and `claimbench-http`): no engine code, only
// POST /v1/completions with text prompts (the endpoint tokenizes). Meant for comparing two
// deployments of one model (FP16 vs INT8, dense vs 2:4) with `claimbench compare`.
//
//   exact match   one greedy, non-streaming completion per {"prompt", "answer"} line of a JSONL
//                 file (--qa-jsonl; default workloads/accuracy/default-qa.jsonl, the embedded
//                 default model's held-out task examples): temperature 0, max_tokens = the
//                 answer's bytes + a margin (no tokenizer here: bytes bound the tokens of any
//                 byte-fallback tokenizer from above, EOS needs one more). Correct when the text
//                 equals the answer exactly: the in-process path's rule (byo_exact_match strips
//                 the EOS token; an endpoint sends no text for it). Samples: 0/1 per line, in
//                 file order.
//   perplexity    of a text file (--ppl-text) from the prompt's log-probabilities: echo = true,
//                 logprobs = 0, max_tokens = 0, one request per window of the text (window_bytes
//                 bytes, cut back to a UTF-8 character boundary; capped at the endpoint's
//                 max_model_len - 1 when /v1/models reports it). The endpoint adds its BOS, as the
//                 in-process --ppl-text does; every non-null token_logprob is a predicted token.
//                 Perplexity = exp(sum NLL / tokens); samples: per-window perplexity. SKIP (the
//                 metric is absent, params.not_measured says why) when the server cannot: the
//                 profile says so, a 4xx answer, or an answer without prompt log-probabilities.
//
// Paired statistics: both metrics carry params.pair_key, a hash of the inputs behind the samples
// (the QA lines; the text windows), so `claimbench compare` can pair sample i of two runs (see
// cb/harness/verdicts/compare.h). usage.prompt_tokens of every request is kept beside the results.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cb/harness/core/results.h"
#include "cb/harness/core/suite.h"

namespace cb::harness::accuracy_http {

struct Options {
  std::string base_url;                 // http://HOST:PORT
  std::string model;                    // "model" field; empty: the first id of GET /v1/models (else omitted)
  std::filesystem::path qa_jsonl;       // empty: default_qa_file()
  std::filesystem::path ppl_text;       // empty: perplexity not measured
  int window_bytes = 1023;              // text bytes per perplexity window (+ the endpoint's BOS = 1024 tokens, byte-level)
  int answer_margin_tokens = 4;         // max_tokens = answer bytes + this
  int max_examples = 0;                 // 0: every line
  // From the server profile (ServerProfile::prompt_logprobs / prompt_logprobs_reason): false skips
  // perplexity without asking the server. The integrator sets these from --server-profile.
  bool prompt_logprobs = true;
  std::string prompt_logprobs_reason;
  std::string server_profile;           // recorded in params
  double timeout_s = 300;               // per request
  std::string api_key;                  // empty: $OPENAI_API_KEY, else no Authorization header
  std::function<void(const std::string&)> progress;
};

// The committed default QA file: workloads/accuracy/default-qa.jsonl.
std::filesystem::path default_qa_file();

struct QaExample {
  int line = 0;
  std::string prompt, answer;
  std::string task;  // optional "task" field ("" when absent)
};
// Reads {"prompt": str, "answer": str[, "task": str]} lines (blank lines skipped). Throws
// std::runtime_error "FILE:LINE: ..." for a line that is not such an object, or for no lines.
std::vector<QaExample> read_qa_jsonl(const std::filesystem::path& file);

// What one completion answer says. Throws std::runtime_error beginning with `where` when the body
// is not a completion object (not JSON, no choices, text not a string, an {"error": ...} body).
struct CompletionAnswer {
  std::string text;
  std::string finish_reason;
  int prompt_tokens = -1, completion_tokens = -1;  // usage; -1 when absent
};
CompletionAnswer parse_completion_answer(const std::string& body, const std::string& where);

// The prompt log-probabilities of an echo + logprobs answer: token_logprobs of choices[0], nulls
// kept as nullopt (the first token). Returns nullopt with `why` set when the answer has no usable
// logprobs (null, absent, no token_logprobs array, fewer entries than usage.prompt_tokens: echo
// ignored); throws std::runtime_error beginning with `where` when it is not a completion at all
// or a logprob is not a number or null, or is positive / not finite.
struct PromptLogprobs {
  std::vector<std::optional<double>> token_logprobs;
  int prompt_tokens = -1;
  double nll() const;        // - sum of the non-null entries
  int64_t scored() const;    // non-null entries
};
std::optional<PromptLogprobs> parse_prompt_logprobs(const std::string& body, const std::string& where, std::string& why);

// Windows of at most max_bytes bytes, each ending on a UTF-8 character boundary (a window never
// splits a character unless one character is longer than max_bytes). Concatenated they are the text.
std::vector<std::string> text_windows(const std::string& text, size_t max_bytes);

// 64-bit FNV-1a of the strings (each followed by a 0 byte), as 16 hex digits: params.pair_key.
std::string pair_key(const std::vector<std::string>& parts);

// Runs both measurements. Throws std::runtime_error for a bad input file (naming FILE:LINE), an
// unreachable endpoint or a 5xx / malformed exact-match answer (naming the example's line).
SuiteResult run(const Options& o);

}  // namespace cb::harness::accuracy_http

namespace cb::harness {
// The registry's entry for --suite accuracy with an http:// SUT: Options from the context.
SuiteResult run_accuracy_http_suite(const SuiteContext& ctx);
}  // namespace cb::harness
