// The transport suite (`claimbench run --suite transport`): what the HTTP path itself costs, so
// that the load suite's figures over HTTP can be read against it.
//
//   null server  the load generator (HTTP SUT) and wrk, each closed loop at the same concurrency,
//                on the same 1-token streamed completion, against the null OpenAI server (a
//                separate process, claimbench null-server): requests/s and latency side by side,
//                in interleaved rounds. wrk is an independent HTTP load anchor: the generator's
//                ceiling as a fraction of it says how much of a measured rate is the tool.
//   round trip   1-token completions at concurrency 1, in-process vs `refengine serve` (this
//                build, same model and engine configuration): median E2E and TTFT, and their
//                difference: the transport's own latency.
//   saturation   the chat workload closed loop at its saturating concurrency, in-process vs HTTP:
//                requests/s, output tokens/s, TTFT p50/p99; HTTP / in-process, interleaved rounds.
// Both servers run as child processes on loopback and are stopped on every exit path.
#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "cb/harness/core/engine_access.h"
#include "cb/harness/load/experiments.h"
#include "cb/harness/load/http_sut.h"
#include "cb/harness/load/server_process.h"
#include "cb/harness/core/process.h"
#include "cb/harness/suites/suites.h"

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace load;

namespace {

constexpr auto T = NoiseClass::Timing;
constexpr auto R = NoiseClass::Ratio;
constexpr auto Hi = Direction::HigherIsBetter;
constexpr auto Lo = Direction::LowerIsBetter;

std::string g(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

// n identical closed-loop requests (a fixed prompt of token ids, max_tokens output).
Plan fixed_plan(const std::string& name, const std::vector<int32_t>& prompt, int max_tokens, int concurrency, double duration_s,
                size_t min_requests, size_t n) {
  Plan p;
  p.workload = name;
  p.closed_loop = true;
  p.concurrency = concurrency;
  p.duration_s = duration_s;
  p.min_requests = min_requests;
  p.requested = {{"process", "closed"}, {"concurrency", concurrency}, {"duration_s", duration_s}, {"min_requests", min_requests},
                 {"prompt_tokens", prompt.size()}, {"max_tokens", max_tokens}};
  p.requests.resize(n);
  for (size_t i = 0; i < n; ++i) {
    p.requests[i].req.index = int64_t(i);
    p.requests[i].req.prompt = prompt;
    p.requests[i].req.max_tokens = max_tokens;
  }
  return p;
}

json run_entry(const RunResult& r, const json& sut) {
  return {{"requested", r.requested}, {"effective", r.effective}, {"summary", r.summary.to_json()},
          {"validity", r.validity.to_json()}, {"sut", sut}};
}

// wrk's "Latency Distribution" lines ("     50%    1.23ms") and "Requests/sec:".
struct WrkResult {
  std::optional<double> rps, p50_ms, p99_ms;
  long long non2xx = 0, socket_errors = 0;
};

double to_ms(double v, const std::string& unit) { return unit == "us" ? v / 1000 : unit == "s" ? v * 1000 : unit == "m" ? v * 60000 : v; }

WrkResult parse_wrk(const std::string& out) {
  WrkResult w;
  std::smatch m;
  if (std::regex_search(out, m, std::regex(R"(Requests/sec:\s+([0-9.]+))"))) w.rps = std::stod(m[1]);
  static const std::regex pct(R"((50|99)%\s+([0-9.]+)(us|ms|s|m)\b)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), pct); it != std::sregex_iterator(); ++it) {
    const double v = to_ms(std::stod((*it)[2]), (*it)[3]);
    ((*it)[1] == "50" ? w.p50_ms : w.p99_ms) = v;
  }
  if (std::regex_search(out, m, std::regex(R"(Non-2xx or 3xx responses:\s+(\d+))"))) w.non2xx = std::stoll(m[1]);
  if (std::regex_search(out, m, std::regex(R"(Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+))")))
    w.socket_errors = std::stoll(m[1]) + std::stoll(m[2]) + std::stoll(m[3]) + std::stoll(m[4]);
  return w;
}

Metric metric(const std::string& key, double value, const std::string& unit, Direction d, NoiseClass n, std::vector<double> samples,
              json params, std::string note) {
  return Metric{key, value, unit, d, n, std::move(samples), std::move(params), std::move(note)};
}

}  // namespace

json parse_wrk_output(const std::string& text) {
  const WrkResult w = parse_wrk(text);
  json j = json::object();
  if (w.rps) j["requests_per_s"] = *w.rps;
  if (w.p50_ms) j["latency_ms_p50"] = *w.p50_ms;
  if (w.p99_ms) j["latency_ms_p99"] = *w.p99_ms;
  j["non_2xx"] = w.non2xx;
  j["socket_errors"] = w.socket_errors;
  return j;
}

SuiteResult run_transport_suite(const SuiteContext& ctx) {
  SuiteResult r;
  r.suite = "transport";
  auto say = [&](const std::string& s) {
    if (ctx.progress) ctx.progress(s);
  };
  if (ctx.sut != "inprocess")
    throw std::invalid_argument("--sut '" + ctx.sut + "': the transport suite starts its own servers (refengine serve of this build and "
                                "the null server); run it with the default --sut inprocess");
  const int rounds = ctx.quick ? 2 : 3;
  const int null_conc = 32;
  const double null_seconds = ctx.quick ? 2.0 : 5.0;
  r.params = {{"quick", ctx.quick}, {"rounds", rounds}, {"host_cores", std::thread::hardware_concurrency()},
              {"omp_max_threads", omp_get_max_threads()}, {"order", "interleaved: each round runs every side once"}};
  const fs::path raw = ctx.run_dir / "raw" / "transport";
  fs::create_directories(raw);
  const fs::path self = fs::read_symlink("/proc/self/exe");
  json runs = json::object();
  RunOptions ropt;
  ropt.drain_timeout_s = 30;

  // ---- null server: generator vs wrk -----------------------------------------------------------
  {
    say("null server: the load generator and wrk against `claimbench null-server`");
    ServerProcess server({self.string(), "null-server", "--port", "0"}, raw / "null-server.log");
    const std::string url = server.wait_listening(30);
    const std::vector<int32_t> prompt = {1, 2, 3};
    const json body = {{"model", "null"}, {"prompt", prompt}, {"max_tokens", 1}, {"stream", true}, {"temperature", 0},
                       {"ignore_eos", true}, {"stream_options", {{"include_usage", true}}}};
    const std::string wrk = find_executable("wrk");
    fs::path script;
    if (!wrk.empty()) {
      // The same request the HTTP SUT sends (its body is built the same way in HttpSut::run_one).
      script = raw / "wrk-post.lua";
      std::ofstream(script) << "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
                               "wrk.headers[\"Accept\"] = \"text/event-stream\"\nwrk.body = '"
                            << body.dump() << "'\n";
    }
    std::vector<double> ours_rps, wrk_rps, ours_p50, wrk_p50, ratio;
    json wrk_runs = json::array();
    for (int round = 0; round < rounds; ++round) {
      HttpSutOptions ho;
      ho.base_url = url;
      ho.model = "null";
      HttpSut sut(ho);
      const Plan plan = fixed_plan("null-1token", prompt, 1, null_conc, null_seconds, 100, 400000);
      RunOptions o = ropt;
      o.keep_token_times = false;
      const RunResult res = run_load(sut, plan, Slo{}, ValidityRules{null_seconds, 100, 0.0, 1e9}, o);
      runs["null.generator.round" + std::to_string(round)] = run_entry(res, sut.describe());
      ours_rps.push_back(res.summary.requests_per_s);
      ours_p50.push_back(res.summary.e2e_ms.median);
      if (!wrk.empty()) {
        const fs::path out = raw / ("wrk-round" + std::to_string(round) + ".txt");
        const std::vector<std::string> argv = {wrk, "-t1", "-c" + std::to_string(null_conc), "-d" + g(null_seconds) + "s", "--latency",
                                               "-s", script.string(), url + "/v1/completions"};
        const ProcessResult pr = run_process(argv, null_seconds + 60, out, {}, false);
        json jr = parse_wrk_output(read_text_file(out));
        jr["command"] = argv;
        jr["exit"] = pr.describe();
        wrk_runs.push_back(jr);
        if (pr.exit_code == 0 && jr.contains("requests_per_s")) {
          wrk_rps.push_back(jr["requests_per_s"].get<double>());
          if (jr.contains("latency_ms_p50")) wrk_p50.push_back(jr["latency_ms_p50"].get<double>());
          ratio.push_back(ours_rps.back() / wrk_rps.back());
        }
      }
    }
    server.stop();
    const json p = {{"concurrency", null_conc}, {"duration_s", null_seconds}, {"request", body}, {"server", "claimbench null-server (separate process)"}};
    r.add(metric("transport.null.generator_rps", median(ours_rps), "req/s", Hi, T, ours_rps, p,
                 "claimbench's HTTP SUT, closed loop at concurrency " + std::to_string(null_conc) +
                     ", 1-token streamed completions against the null server: the generator's own ceiling"));
    r.add(metric("transport.null.generator_e2e_ms_p50", median(ours_p50), "ms", Lo, T, ours_p50, p, "as above, median E2E"));
    if (wrk.empty()) {
      r.params["not_measured"]["transport.null.wrk_rps"] = "wrk is not installed (Debian package wrk)";
      r.params["not_measured"]["transport.null.generator_vs_wrk"] = "wrk is not installed (Debian package wrk)";
    } else if (ratio.empty()) {
      r.params["not_measured"]["transport.null.generator_vs_wrk"] = "wrk did not report Requests/sec; see raw/transport/wrk-round*.txt";
    } else {
      r.add(metric("transport.null.wrk_rps", median(wrk_rps), "req/s", Hi, T, wrk_rps, {{"runs", wrk_runs}},
                   "wrk -t1 -c" + std::to_string(null_conc) + ", the same request body (Lua script in raw/transport/)"));
      if (!wrk_p50.empty()) r.add(metric("transport.null.wrk_latency_ms_p50", median(wrk_p50), "ms", Lo, T, wrk_p50, {}, "wrk's median latency"));
      r.add(metric("transport.null.generator_vs_wrk", median(ratio), "x", Hi, R, ratio, p,
                   "generator requests/s / wrk requests/s, same server, concurrency and request, interleaved rounds (1.0 = as fast "
                   "as the HTTP load anchor)"));
    }
    r.params["null_server"] = {{"wrk", wrk.empty() ? json() : json(wrk)}, {"wrk_runs", wrk_runs}};
  }

  // ---- refengine serve vs in-process ---------------------------------------------------------
#ifdef CB_REFENGINE_PATH
  const std::string refengine = CB_REFENGINE_PATH;
#else
  const std::string refengine;
#endif
  const EngineAccess* access = engine_access();
  if (refengine.empty() || !fs::exists(refengine) || !access) {
    for (const char* k : {"transport.roundtrip.overhead_ms", "transport.saturation.http_vs_inprocess"})
      r.params["not_measured"][k] = access ? "refengine was not built with this harness" : no_engine_reason();
    r.params["runs"] = runs;
    return r;
  }
  auto model = access->open(ctx.model_dir, ctx.backend);
  const ModelFacts& cfg = model->facts();
  const WorkloadSpec chat = load_workload("chat", ctx.quick);
  const InProcessConfig ec = inprocess_config_from_json(chat.engine.value("config", json::object()), InProcessConfig{},
                                                        chat.file.string() + ": engine.config");
  const std::vector<std::string> serve_argv = {refengine, "serve", "--model", fs::absolute(ctx.model_dir).string(), "--host", "127.0.0.1",
                                               "--port", "0", "--policy", ec.policy, "--block-size", std::to_string(ec.block_size),
                                               "--num-blocks", std::to_string((ec.kv_pool_tokens + ec.block_size - 1) / ec.block_size),
                                               "--token-budget", std::to_string(ec.token_budget), "--max-queue", std::to_string(ec.max_queue)};
  r.params["engine_config"] = ec.to_json();
  r.params["model"] = ctx.model_dir.filename().string();
  say("refengine serve (this build, same model and engine configuration) vs in-process");
  ServerProcess server(serve_argv, raw / "refengine-serve.log");
  const std::string url = server.wait_listening(120);
  std::string serve_cmd;
  for (const auto& a : serve_argv) serve_cmd += (serve_cmd.empty() ? "" : " ") + a;
  r.params["serve_command"] = serve_cmd;
  auto http_sut = [&] {
    HttpSutOptions ho;
    ho.base_url = url;
    return std::make_unique<HttpSut>(ho);
  };
  auto inproc_sut = [&] { return model->make_sut(ec); };

  // Round trip: 1-token completions, one at a time.
  std::vector<int32_t> prompt;
  if (cfg.bos_token_id >= 0) prompt.push_back(cfg.bos_token_id);
  for (int i = 0; i < 7; ++i) prompt.push_back(65 + i);
  const size_t rt_n = ctx.quick ? 100 : 300;
  std::vector<double> rt_http, rt_inproc, rt_ttft_http, rt_ttft_inproc, rt_diff;
  for (int round = 0; round < rounds; ++round) {
    for (int side = 0; side < 2; ++side) {
      const bool http = (round + side) % 2 == 1;  // alternate which side goes first
      std::unique_ptr<Sut> sut = http ? std::unique_ptr<Sut>(http_sut()) : std::unique_ptr<Sut>(inproc_sut());
      const Plan plan = fixed_plan("roundtrip-1token", prompt, 1, 1, 0, rt_n, rt_n);
      const RunResult res = run_load(*sut, plan, Slo{}, ValidityRules{0, rt_n, 0.0, 1e9}, ropt);
      runs[std::string("roundtrip.") + (http ? "http" : "inprocess") + ".round" + std::to_string(round)] = run_entry(res, sut->describe());
      (http ? rt_http : rt_inproc).push_back(res.summary.e2e_ms.median);
      (http ? rt_ttft_http : rt_ttft_inproc).push_back(res.summary.ttft_ms.median);
    }
    rt_diff.push_back(rt_http.back() - rt_inproc.back());
  }
  const json rtp = {{"requests_per_round", rt_n}, {"prompt_tokens", prompt.size()}, {"max_tokens", 1}, {"concurrency", 1}};
  r.add(metric("transport.roundtrip.http_e2e_ms_p50", median(rt_http), "ms", Lo, T, rt_http, rtp,
               "1-token streamed completion over HTTP (keep-alive, TCP_NODELAY) at concurrency 1: median E2E per round"));
  r.add(metric("transport.roundtrip.inprocess_e2e_ms_p50", median(rt_inproc), "ms", Lo, T, rt_inproc, rtp,
               "the same request to the in-process engine"));
  r.add(metric("transport.roundtrip.overhead_ms", median(rt_diff), "ms", Lo, T, rt_diff, rtp,
               "HTTP minus in-process median E2E, per round: what the transport adds to one request"));
  r.add(metric("transport.roundtrip.http_ttft_ms_p50", median(rt_ttft_http), "ms", Lo, T, rt_ttft_http, rtp, "median TTFT over HTTP"));
  r.add(metric("transport.roundtrip.inprocess_ttft_ms_p50", median(rt_ttft_inproc), "ms", Lo, T, rt_ttft_inproc, rtp, "median TTFT in-process"));

  // Saturation: the chat workload closed loop at its saturating concurrency.
  const int conc = chat.engine.value("saturation_concurrency", 64);
  PlanOptions po;
  po.run_seed = ctx.seed;
  po.concurrency = conc;
  po.bos_token = cfg.bos_token_id;
  po.max_context = cfg.max_context;
  po.vocab_limit = std::min(256, cfg.vocab_size);
  const Plan sat_plan = make_plan(chat, po);
  std::vector<double> rps[2], otps[2], ttft50[2], ttft99[2], rps_ratio, otps_ratio;
  for (int round = 0; round < rounds; ++round) {
    for (int side = 0; side < 2; ++side) {
      const bool http = (round + side) % 2 == 1;
      std::unique_ptr<Sut> sut = http ? std::unique_ptr<Sut>(http_sut()) : std::unique_ptr<Sut>(inproc_sut());
      const RunResult res = run_load(*sut, sat_plan, chat.slo, chat.validity, ropt);
      runs[std::string("saturation.") + (http ? "http" : "inprocess") + ".round" + std::to_string(round)] = run_entry(res, sut->describe());
      const RunSummary& s = res.summary;
      rps[http].push_back(s.requests_per_s);
      otps[http].push_back(s.output_tokens_per_s);
      ttft50[http].push_back(s.ttft_ms.median);
      ttft99[http].push_back(s.ttft_ms.p99);
      if (!res.validity.valid) r.params["invalid_runs"].push_back(std::string(http ? "http" : "inprocess") + " round " + std::to_string(round) + ": " + res.validity.line());
    }
    rps_ratio.push_back(rps[1].back() / rps[0].back());
    otps_ratio.push_back(otps[1].back() / otps[0].back());
  }
  server.stop();
  const json sp = {{"workload", "chat"}, {"concurrency", conc}, {"engine_config", ec.to_json()}, {"serve_command", serve_cmd}};
  r.add(metric("transport.saturation.http_requests_per_s", median(rps[1]), "req/s", Hi, T, rps[1], sp, "chat, closed loop, over HTTP"));
  r.add(metric("transport.saturation.inprocess_requests_per_s", median(rps[0]), "req/s", Hi, T, rps[0], sp, "chat, closed loop, in-process"));
  r.add(metric("transport.saturation.http_vs_inprocess", median(rps_ratio), "x", Hi, R, rps_ratio, sp,
               "saturation requests/s over HTTP / in-process, same engine configuration, interleaved rounds; on a machine with few "
               "cores the HTTP server and the client take CPU from the engine, which this ratio shows"));
  r.add(metric("transport.saturation.http_vs_inprocess_output_tokens", median(otps_ratio), "x", Hi, R, otps_ratio, sp,
               "as above, output tokens/s"));
  r.add(metric("transport.saturation.http_ttft_ms_p50", median(ttft50[1]), "ms", Lo, T, ttft50[1], sp, "TTFT p50 over HTTP at saturation"));
  r.add(metric("transport.saturation.inprocess_ttft_ms_p50", median(ttft50[0]), "ms", Lo, T, ttft50[0], sp, "TTFT p50 in-process at saturation"));
  r.add(metric("transport.saturation.http_ttft_ms_p99", median(ttft99[1]), "ms", Lo, T, ttft99[1], sp, "TTFT p99 over HTTP at saturation"));
  r.add(metric("transport.saturation.inprocess_ttft_ms_p99", median(ttft99[0]), "ms", Lo, T, ttft99[0], sp, "TTFT p99 in-process at saturation"));
  r.params["runs"] = runs;
  return r;
}

}  // namespace cb::harness
