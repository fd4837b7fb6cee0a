// Server profiles (workloads/servers/*.json): parsing and its errors, the request body per profile,
// counting rules, error bodies of each server's shape, /metrics samples, detection against each
// vendor double (suites/server/doubles/*_double.py), and the engine-side suites' SKIP rule.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <thread>

#include "cb/harness/load/http_sut.h"
#include "cb/harness/load/metrics_sampler.h"
#include "cb/harness/load/server_profile.h"
#include "cb/harness/suites/suites.h"
#include "test_support.h"

using namespace cb::harness::load;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A vendor double started for the test: `python3 suites/server/doubles/<name>_double.py`, its URL
// read from the "listening on" line; SIGTERM and waitpid on destruction.
class Double {
 public:
  explicit Double(const std::string& name) {
    const fs::path script = fs::path(CB_SOURCE_DIR) / "suites" / "server" / "doubles" / (name + "_double.py");
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execlp("python3", "python3", script.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    std::FILE* f = ::fdopen(fds[0], "r");
    char line[256];
    if (f && std::fgets(line, sizeof line, f)) {
      const std::string l = line;
      const auto at = l.find("http://");
      if (at != std::string::npos) url_ = l.substr(at, l.find_first_of("\r\n", at) - at);
    }
    if (f) std::fclose(f);
    if (url_.empty()) throw std::runtime_error(name + " double printed no listening line");
  }
  ~Double() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  const std::string& url() const { return url_; }

 private:
  pid_t pid_ = -1;
  std::string url_;
};

fs::path write(const cb::test::TempDir& d, const std::string& name, const std::string& text) {
  const fs::path p = d.path() / name;
  std::ofstream(p) << text;
  return p;
}

std::string error_of(const fs::path& p) {
  try {
    load_server_profile_file(p);
  } catch (const std::exception& e) {
    return e.what();
  }
  ADD_FAILURE() << p << ": expected an error";
  return "";
}

// One request through an HttpSut; returns (error message or "", tokens).
std::pair<std::string, int> one_request(HttpSut& sut, int max_tokens) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  int tokens = 0;
  std::string err;
  SutCallbacks cb;
  cb.on_tokens = [&](int n) {
    std::lock_guard lk(m);
    tokens += n;
  };
  cb.on_complete = [&](int r) {
    std::lock_guard lk(m);
    if (r >= 0) tokens = r;
    done = true;
    cv.notify_all();
  };
  cb.on_error = [&](ErrorKind k, const std::string& msg) {
    std::lock_guard lk(m);
    err = std::string(to_string(k)) + ": " + msg;
    done = true;
    cv.notify_all();
  };
  LoadRequest rq;
  rq.prompt = {104, 105, 32, 116, 104, 101, 114, 101};
  rq.max_tokens = max_tokens;
  sut.issue(rq, cb);
  std::unique_lock lk(m);
  EXPECT_TRUE(cv.wait_for(lk, std::chrono::seconds(20), [&] { return done; }));
  return {err, tokens};
}

std::string bytes(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t i : ids) s.push_back(char(i));
  return s;
}

}  // namespace

TEST(ServerProfile, EveryCommittedProfileLoadsWithSources) {
  const auto all = builtin_server_profiles();
  std::vector<std::string> names;
  for (const auto& p : all) {
    names.push_back(p.name);
    EXPECT_FALSE(p.sources.empty()) << p.name;
    EXPECT_FALSE(p.description.empty()) << p.name;
    EXPECT_EQ(p.file.stem().string(), p.name) << "file name and profile name agree";
  }
  EXPECT_EQ(names, (std::vector<std::string>{"llamacpp", "openai", "refengine", "sglang", "tgi", "vllm"}));
  const ServerProfile v = find_server_profile("vllm");
  EXPECT_TRUE(v.token_id_prompts);
  EXPECT_EQ(v.metrics.kv_usage, "vllm:kv_cache_usage_perc");
  EXPECT_EQ(v.fixed_length_fields["min_tokens"], "$max_tokens");
  const ServerProfile t = find_server_profile("tgi");
  EXPECT_FALSE(t.token_id_prompts);
  EXPECT_TRUE(t.fixed_length_fields.empty());
  EXPECT_EQ(t.finish_reasons.at("eos_token"), "stop");
  EXPECT_EQ(find_server_profile("refengine").metrics.kv_usage_capacity, "refengine_kv_blocks_capacity");
  try {
    find_server_profile("nosuch");
    ADD_FAILURE() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_CONTAINS(e.what(), "known: llamacpp, openai, refengine, sglang, tgi, vllm");
  }
}

TEST(ServerProfile, BadFilesNameFileAndField) {
  cb::test::TempDir d("cb-profile");
  const std::string ok = R"("name": "x", "sources": ["a"])";
  auto msg = error_of(write(d, "a.json", "{" + ok + R"(, "streamed_usage": "sometimes"})"));
  EXPECT_CONTAINS(msg, "a.json");
  EXPECT_CONTAINS(msg, "\"streamed_usage\"");
  msg = error_of(write(d, "b.json", "{" + ok + R"(, "metrics": {"runing": "x"}})"));
  EXPECT_CONTAINS(msg, "b.json");
  EXPECT_CONTAINS(msg, "\"metrics.runing\": unknown field");
  msg = error_of(write(d, "c.json", R"({"name": "x"})"));
  EXPECT_CONTAINS(msg, "\"sources\"");
  msg = error_of(write(d, "d.json", "{" + ok + R"(, "finish_reasons": {"eos_token": "done"}})"));
  EXPECT_CONTAINS(msg, "\"finish_reasons.eos_token\"");
  msg = error_of(write(d, "e.json", "{" + ok + R"(, "metrics": {"kv_usage_scale": -1}})"));
  EXPECT_CONTAINS(msg, "\"metrics.kv_usage_scale\"");
  msg = error_of(write(d, "f.json", "{" + ok + R"(, "detection": {"version_path": "/v"}})"));
  EXPECT_CONTAINS(msg, "\"detection.version_field\"");
  msg = error_of(write(d, "g.json", "{not json"));
  EXPECT_CONTAINS(msg, "g.json: not JSON");
  // A number no double holds is nlohmann's out_of_range, not parse_error: still a clear error.
  msg = error_of(write(d, "g2.json", R"({"name": 1e400})"));
  EXPECT_CONTAINS(msg, "g2.json: not JSON");
  msg = error_of(write(d, "h.json", "{" + ok + R"(, "token_id_prompts": "yes"})"));
  EXPECT_CONTAINS(msg, "\"token_id_prompts\"");
  // A path works as --server-profile too.
  const fs::path good = write(d, "mine.json", "{" + ok + R"(, "fixed_length_fields": {"ignore_eos": true}})");
  EXPECT_EQ(find_server_profile(good.string()).name, "x");
}

TEST(ServerProfile, RequestBodyPerProfile) {
  LoadRequest rq;
  rq.prompt = {72, 105};
  rq.max_tokens = 7;
  const json v = completion_request_body(find_server_profile("vllm"), "m", rq, nullptr);
  EXPECT_EQ(v["prompt"], json({72, 105}));
  EXPECT_EQ(v["ignore_eos"], true);
  EXPECT_EQ(v["min_tokens"], 7) << "$max_tokens substituted";
  EXPECT_EQ(v["stream_options"]["include_usage"], true);
  EXPECT_EQ(v["max_tokens"], 7);
  EXPECT_EQ(v["stream"], true);
  const json t = completion_request_body(find_server_profile("tgi"), "m", rq, bytes);
  EXPECT_EQ(t["prompt"], "Hi");
  EXPECT_FALSE(t.contains("ignore_eos"));
  EXPECT_FALSE(t.contains("stream_options")) << "TGI never streams usage";
  const json l = completion_request_body(find_server_profile("llamacpp"), "m", rq, nullptr);
  EXPECT_EQ(l["ignore_eos"], true);
  EXPECT_FALSE(l.contains("min_tokens"));
  EXPECT_FALSE(l.contains("stream_options")) << "llama.cpp sends usage always";
  try {
    completion_request_body(find_server_profile("tgi"), "m", rq, nullptr);
    ADD_FAILURE() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_CONTAINS(e.what(), "--tokenizer");
  }
  HttpSutOptions o;
  o.base_url = "http://127.0.0.1:1";
  o.model = "m";
  o.profile = find_server_profile("openai");
  EXPECT_THROW(HttpSut{o}, std::invalid_argument) << "text-only profile without prompt_text";
  // The default (no profile) keeps refengine/vLLM conventions.
  const json d = completion_request_body(default_http_profile(), "m", rq, nullptr);
  EXPECT_EQ(d["ignore_eos"], true);
  EXPECT_EQ(d["prompt"], json({72, 105}));
}

TEST(ServerProfile, CountingRules) {
  const std::string ids = R"({"choices":[{"text":"ab","token_ids":[5,6,7],"finish_reason":null}]})";
  EXPECT_EQ(parse_completion_chunk(ids, "token_ids").tokens, 3);
  EXPECT_EQ(parse_completion_chunk(ids, "chunks").tokens, 1) << "chunks: one per chunk, id lists ignored";
  EXPECT_EQ(parse_completion_chunk(R"({"choices":[{"text":"","finish_reason":"eos_token"}]})", "chunks").tokens, 0);
  EXPECT_EQ(parse_completion_chunk(R"({"choices":[{"text":"x","finish_reason":"length"}]})", "chunks").tokens, 1);
}

TEST(ServerProfile, ErrorBodiesOfEachServer) {
  EXPECT_EQ(readable_error_body(R"({"error":{"message":"bad max_tokens","type":"BadRequestError","param":null,"code":400}})"),
            "bad max_tokens (BadRequestError)");
  EXPECT_EQ(readable_error_body(R"({"error":"Input validation error: prompt","error_type":"validation"})"),
            "Input validation error: prompt (validation)");
  EXPECT_EQ(readable_error_body(R"({"error":{"code":400,"message":"no","type":"invalid_request_error"}})"), "no (invalid_request_error)");
  EXPECT_EQ(readable_error_body(R"({"object":"error","message":"too long","type":"BadRequestError","code":400})"),
            "too long (BadRequestError)");
  EXPECT_EQ(readable_error_body(R"({"detail":"Not Found"})"), "Not Found");
  EXPECT_EQ(readable_error_body("Failed to deserialize the JSON body\n"), "Failed to deserialize the JSON body");
}

TEST(ServerProfile, MetricsSamples) {
  const std::string v = "# HELP vllm:num_requests_running x\nvllm:num_requests_running{model_name=\"m\"} 3\n"
                        "vllm:num_requests_waiting{model_name=\"m\"} 5\nvllm:kv_cache_usage_perc{model_name=\"m\"} 0.25\n"
                        "vllm:prompt_tokens_total{model_name=\"m\"} 100\nvllm:generation_tokens_total{model_name=\"m\"} 40\n";
  const MetricsSample s = parse_metrics_sample(v, find_server_profile("vllm").metrics);
  EXPECT_EQ(s.running, 3);
  EXPECT_EQ(s.waiting, 5);
  EXPECT_EQ(s.kv_usage, 0.25);
  EXPECT_EQ(s.generation_tokens, 40);
  EXPECT_TRUE(std::isnan(s.busy_seconds));
  const MetricsSample r = parse_metrics_sample("refengine_kv_blocks_used 30\nrefengine_kv_blocks_capacity 120\n",
                                               find_server_profile("refengine").metrics);
  EXPECT_DOUBLE_EQ(r.kv_usage, 0.25) << "blocks used / capacity";
  EXPECT_FALSE(profile_has_series(find_server_profile("openai").metrics));
}

TEST(ServerProfile, DetectsEachDouble) {
  const auto profiles = builtin_server_profiles();
  for (const std::string name : {"vllm", "sglang", "tgi", "llamacpp"}) {
    Double d(name);
    const auto [p, id] = detect_server_profile(d.url(), profiles);
    EXPECT_EQ(p.name, name) << id.chosen_by;
    EXPECT_EQ(id.profile, name);
    EXPECT_CONTAINS(id.chosen_by, "detected: ");
    EXPECT_TRUE(id.models.is_object()) << name;
    if (name == "vllm") {
      EXPECT_EQ(id.version["version"], "0.11.0+double");
      EXPECT_EQ(id.server_header, "uvicorn");
    }
    if (name == "tgi") {
      EXPECT_EQ(id.version["model_id"], "double/tgi-model");
    }
    // The server's own profile works, requests complete with a known finish reason.
    HttpSutOptions o;
    o.base_url = d.url();
    o.profile = p;
    o.prompt_text = bytes;
    HttpSut sut(o);
    const auto [err, tokens] = one_request(sut, 8);
    EXPECT_EQ(err, "") << name;
    if (name != "tgi") {
      EXPECT_EQ(tokens, 8) << name << ": the fixed-length fields hold";
    }
    // Its /metrics series answer.
    const auto text = sut.scrape_metrics();
    ASSERT_TRUE(text.has_value()) << name;
    EXPECT_TRUE(std::isfinite(parse_metrics_sample(*text, p.metrics).running)) << name;
  }
}

TEST(ServerProfile, WrongProfileGivesTheServersReadableError) {
  Double d("tgi");
  HttpSutOptions o;
  o.base_url = d.url();
  o.profile = find_server_profile("vllm");
  HttpSut sut(o);
  const auto [err, tokens] = one_request(sut, 4);
  EXPECT_CONTAINS(err, "HTTP 422: Input validation error");
  EXPECT_CONTAINS(err, "(validation) [server profile vllm]");
}

TEST(ServerProfile, EngineSideSuitesSkipAgainstExternalServers) {
  cb::harness::SuiteContext c;
  c.sut = "inprocess";
  EXPECT_EQ(cb::harness::engine_suite_skip_reason(c), "");
  c.sut = "http://127.0.0.1:1";
  c.server_profile = "refengine";
  EXPECT_EQ(cb::harness::engine_suite_skip_reason(c), "") << "refengine serve on loopback: this machine is the server";
  c.sut = "http://10.9.8.7:8000";
  EXPECT_CONTAINS(cb::harness::engine_suite_skip_reason(c), "refengine serve on another host");
  c.sut = "http://127.0.0.1:1";
  c.server_profile = "vllm";
  EXPECT_CONTAINS(cb::harness::engine_suite_skip_reason(c), "a vllm server");
  EXPECT_TRUE(is_loopback_url("http://localhost:80"));
  EXPECT_FALSE(is_loopback_url("http://example.com:80"));
}
