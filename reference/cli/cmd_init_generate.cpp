#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cb/comm/communicator.h"

#include "cb/engine/bench/engine_bench.h"
#include "cb/engine/model/config.h"
#include "cb/engine/model/engine.h"
#include "cb/engine/model/model_init.h"
#include "commands.h"
#include "tp_launch.h"

namespace cb::cli {
namespace {
int g_exit = 0;

// Text for a terminal: printable ASCII, newlines and tabs as they are, whole UTF-8 characters
// (a real tokenizer's text) as they are; other bytes (a random-weight model produces plenty, and
// partial UTF-8) and C1 controls as \xNN so output never garbles the terminal.
std::string printable(const std::string& s) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = p[i];
    if ((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t') {
      out += char(c);
      ++i;
      continue;
    }
    const size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool whole = len > 0 && i + len <= s.size();
    for (size_t k = 1; whole && k < len; ++k) whole = (p[i + k] & 0xC0) == 0x80;
    if (whole && !(c == 0xC2 && p[i + 1] < 0xA0) && !(c == 0xC0 || c == 0xC1)) {  // not C1 controls / overlong
      out.append(s, i, len);
      i += len;
      continue;
    }
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", c);
    out += buf;
    ++i;
  }
  return out;
}
}  // namespace
int exit_code() { return g_exit; }
void set_exit_code(int code) { g_exit = code; }

void run_guarded(const char* command, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    std::cerr << "refengine " << command << ": error: " << e.what() << "\n";
    g_exit = 1;
  }
}

void add_init_command(CLI::App& app) {
  struct Opts {
    std::string preset, out, dtype = "f32", tokenizer;
    uint64_t seed = 0;
    bool force = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("init", "write a seeded random-weight model in Hugging Face layout");
  c->add_option("--preset", o->preset, "tiny | llama-1b")->required();
  c->add_option("--seed", o->seed, "weight seed")->required();
  c->add_option("--out", o->out, "output directory")->required();
  c->add_option("--dtype", o->dtype, "f32 | f16 | bf16")->check(CLI::IsMember({"f32", "f16", "bf16"}));
  c->add_flag("--force", o->force, "overwrite an existing model in --out");
  c->add_option("--tokenizer", o->tokenizer,
                "a tokenizer.model (SentencePiece) or tokenizer.json (HF byte-level BPE) to copy into the model; "
                "sets vocab_size to the tokenizer's and bos/eos from it")
      ->check(CLI::ExistingFile);
  c->callback([o] {
    run_guarded("init", [&] {
      auto cfg = engine::preset_config(o->preset);
      std::unique_ptr<engine::tok::Tokenizer> tok;
      if (!o->tokenizer.empty()) {
        tok = engine::tok::load_tokenizer_file(o->tokenizer);
        cfg.vocab_size = tok->vocab_size();
        if (tok->bos() >= 0) cfg.bos_token_id = tok->bos();
        if (tok->eos() >= 0) cfg.eos_token_id = tok->eos();
        cfg.pad_token_id = -1;  // the byte tokenizer's PAD id means nothing to another tokenizer
        for (const auto& [key, id] : {std::pair<const char*, int>{"bos", cfg.bos_token_id}, {"eos", cfg.eos_token_id}})
          if (id >= cfg.vocab_size)
            throw std::invalid_argument(o->tokenizer + ": the tokenizer names no " + key + " token and the preset's id " +
                                        std::to_string(id) + " is outside its vocabulary of " + std::to_string(cfg.vocab_size));
      }
      const auto dt = o->dtype == "f16" ? kernels::DType::F16 : o->dtype == "bf16" ? kernels::DType::BF16 : kernels::DType::F32;
      engine::write_random_model(cfg, o->seed, o->out, dt, o->force);
      if (tok) {
        const std::filesystem::path src = o->tokenizer;
        const auto dst = std::filesystem::path(o->out) / (tok->kind() == "bpe" ? "tokenizer.json" : "tokenizer.model");
        std::filesystem::copy_file(src, dst, std::filesystem::copy_options::overwrite_existing);
        std::printf("tokenizer: %s (%s, %d tokens, bos %d, eos %d) -> %s\n", src.c_str(), tok->kind().c_str(), tok->vocab_size(),
                    cfg.bos_token_id, cfg.eos_token_id, dst.c_str());
      }
      std::printf("wrote %s model (%lld parameters, %s) to %s\n", o->preset.c_str(),
                  static_cast<long long>(cfg.parameter_count()), o->dtype.c_str(), o->out.c_str());
    });
  });
}

namespace {

struct GenerateOpts {
  std::string model, prompt, prompt_ids, backend = "cpu", tp_comm = "auto", stats_json;
  int max_tokens = 32, top_k = 0, prefill_chunk = 0, tp = 1, repeat = 1;
  float temperature = 0.f, top_p = 1.f;
  uint64_t seed = 0;
  bool no_stop = false, verify_tp = false, step_graphs = false;
};

// --verify-tp tolerance on logits: |tp - single| <= kAtol + kRtol * |single|. The sharded pass
// sums the o_proj / down_proj dot products in a different order (per-rank partial sums, then the
// all-reduce), which moves f32 results by a few ulps per layer; 1e-4 leaves two orders of magnitude
// over what the default model shows (max ~1e-6), and stays far below any change of a greedy pick.
constexpr double kAtol = 1e-4, kRtol = 1e-4;

std::filesystem::path model_dir(const GenerateOpts& o) {
  return o.model.empty() ? engine::default_model_dir() : std::filesystem::path(o.model);
}

// Runs the generation(s) on rank 0 (or alone) and prints; returns the JSON record. `steps` gets
// the logits of every step of the first run (for --verify-tp).
nlohmann::json generate_and_print(engine::LoadedModel& lm, const GenerateOpts& o, std::vector<std::vector<float>>* steps,
                                  std::vector<int32_t>& tokens, const std::string& tp_desc) {
  const auto& tok = lm.tokenizer();
  const auto dir = model_dir(o);
  std::vector<int32_t> prompt = o.prompt_ids.empty() ? tok.encode(o.prompt, true) : engine::parse_token_ids(o.prompt_ids, lm.config().vocab_size);
  engine::GenerateOptions g;
  g.max_tokens = o.max_tokens;
  g.sampling = {o.temperature, o.top_k, o.top_p, o.seed};
  g.sampling.validate();
  g.stop_at_eos = !o.no_stop;
  g.prefill_chunk = o.prefill_chunk;
  nlohmann::json runs = nlohmann::json::array();
  for (int rep = 0; rep < o.repeat; ++rep) {
    const bool first = rep == 0;
    if (first && steps) g.on_logits = [&](const std::vector<float>& l) { steps->push_back(l); };
    else g.on_logits = nullptr;
    // Ids past the tokenizer's vocabulary (a model padded beyond it) have no text.
    auto decodable = [&](int32_t t) { return t >= 0 && t < tok.vocab_size(); };
    std::vector<int32_t> shown;
    for (int32_t t : prompt)
      if (decodable(t)) shown.push_back(t);
    if (first) std::fputs(printable(tok.decode(shown)).c_str(), stdout);
    engine::tok::StreamingDecoder detok(tok);
    auto r = engine::generate(lm, prompt, g, [&](int32_t t) {
      if (!first) return;
      std::fputs(printable(decodable(t) ? detok.push(t) : "<" + std::to_string(t) + ">").c_str(), stdout);
      std::fflush(stdout);
    });
    if (first) std::fputs(printable(detok.finish()).c_str(), stdout);
    if (first) {
      tokens = r.tokens;
      std::printf("\n\n[%s, backend %s%s] prompt %d tokens, generated %zu (stop: %s)\n", dir.filename().c_str(),
                  lm.backend().name().c_str(), tp_desc.c_str(), r.prompt_tokens, r.tokens.size(), r.stop_reason.c_str());
    }
    std::printf("prefill: %.1f tokens/s (%.3f s)   decode: %.2f tokens/s (%d steps, %.3f s)\n", r.prefill_tokens_per_s(),
                r.prefill_seconds, r.decode_tokens_per_s(), r.decode_steps, r.decode_seconds);
    std::fflush(stdout);
    runs.push_back({{"prefill_tokens_per_s", r.prefill_tokens_per_s()}, {"decode_tokens_per_s", r.decode_tokens_per_s()},
                    {"prefill_seconds", r.prefill_seconds}, {"decode_seconds", r.decode_seconds},
                    {"decode_steps", r.decode_steps}, {"prompt_tokens", r.prompt_tokens}, {"stop_reason", r.stop_reason}});
  }
  return {{"model", dir.string()}, {"backend", lm.backend().name()}, {"runs", runs}, {"tokens", tokens},
          {"weight_bytes_per_rank", lm.weight_bytes()}};
}

// --verify-tp: the same generation without tensor parallelism; tokens must match exactly and
// logits within kAtol + kRtol * |ref|.
nlohmann::json verify_against_single(const GenerateOpts& o, const std::vector<std::vector<float>>& tp_steps,
                                     const std::vector<int32_t>& tp_tokens) {
  auto ref = engine::LoadedModel::open(model_dir(o), o.backend);
  std::vector<int32_t> prompt = o.prompt_ids.empty() ? ref->tokenizer().encode(o.prompt, true)
                                                     : engine::parse_token_ids(o.prompt_ids, ref->config().vocab_size);
  engine::GenerateOptions g;
  g.max_tokens = o.max_tokens;
  g.sampling = {o.temperature, o.top_k, o.top_p, o.seed};
  g.stop_at_eos = !o.no_stop;
  g.prefill_chunk = o.prefill_chunk;
  std::vector<std::vector<float>> steps;
  g.on_logits = [&](const std::vector<float>& l) { steps.push_back(l); };
  const auto r = engine::generate(*ref, prompt, g);
  double max_abs = 0, worst_excess = -1;
  bool shapes_ok = steps.size() == tp_steps.size();
  for (size_t s = 0; shapes_ok && s < steps.size(); ++s) {
    if (steps[s].size() != tp_steps[s].size()) { shapes_ok = false; break; }
    for (size_t i = 0; i < steps[s].size(); ++i) {
      const double d = std::fabs(double(tp_steps[s][i]) - steps[s][i]);
      max_abs = std::max(max_abs, d);
      worst_excess = std::max(worst_excess, d - (kAtol + kRtol * std::fabs(double(steps[s][i]))));
    }
  }
  size_t same = 0;
  for (size_t i = 0; i < std::min(r.tokens.size(), tp_tokens.size()); ++i) {
    if (r.tokens[i] != tp_tokens[i]) break;
    ++same;
  }
  const bool tokens_ok = r.tokens == tp_tokens, logits_ok = shapes_ok && worst_excess <= 0;
  std::printf("tp check: tokens %s (%zu of %zu equal before the first difference), max |logit diff| %.3g over %zu steps "
              "(tolerance %.0e + %.0e x |logit|): %s\n",
              tokens_ok ? "identical" : "DIFFER", same, r.tokens.size(), max_abs, steps.size(), kAtol, kRtol,
              tokens_ok && logits_ok ? "PASS" : "FAIL");
  return {{"tokens_identical", tokens_ok}, {"max_abs_logit_diff", max_abs}, {"steps", steps.size()},
          {"atol", kAtol}, {"rtol", kRtol}, {"pass", tokens_ok && logits_ok}};
}

// One rank of `generate --tp N` (or the only process): rank 0 generates, the others follow.
void run_rank(const GenerateOpts& o, comm::Communicator* c) {
  engine::LoadOptions load;
  load.step_graphs = o.step_graphs;
  auto lm = engine::LoadedModel::open(model_dir(o), o.backend, c, load);
  if (c && c->rank() != 0) {
    try {
      engine::run_tp_follower(*lm);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "refengine generate: tensor parallel rank %d: error: %s\n", c->rank(), e.what());
      c->abort_group(e.what());
      throw;
    }
    return;
  }
  const std::string tp_desc = c ? ", tp " + std::to_string(c->size()) + " over " + c->describe() : "";
  std::vector<std::vector<float>> steps;
  std::vector<int32_t> tokens;
  nlohmann::json rec;
  try {
    rec = generate_and_print(*lm, o, o.verify_tp ? &steps : nullptr, tokens, tp_desc);
  } catch (const std::exception& e) {
    engine::finish_tp_leader(*lm, true, e.what());
    throw;
  }
  engine::finish_tp_leader(*lm);
  if (o.step_graphs) {
    const auto& g = lm->model().step_graph_stats();
    rec["step_graphs"] = engine::step_graphs_json(g);
    if (!g.unavailable.empty()) std::printf("step graphs: off (%s)\n", g.unavailable.c_str());
    else
      std::printf("step graphs: %lld recorded, %lld replayed, %lld steps as usual, %lld recordings failed%s%s\n",
                  (long long)g.captures, (long long)g.replays, (long long)g.eager_steps, (long long)g.failed_captures,
                  g.last_failure.empty() ? "" : ": ", g.last_failure.c_str());
  }
  rec["tp"] = c ? c->size() : 1;
  rec["tp_comm"] = c ? c->describe() : "none";
  bool pass = true;
  if (o.verify_tp) {
    rec["verify_tp"] = verify_against_single(o, steps, tokens);
    pass = rec["verify_tp"]["pass"].get<bool>();
  }
  if (!o.stats_json.empty()) {
    std::ofstream out(o.stats_json);
    out << rec.dump(1) << "\n";
    if (!out) throw std::runtime_error(o.stats_json + ": cannot write --stats-json");
  }
  if (!pass) set_exit_code(1);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOpts>();
  auto* c = app.add_subcommand("generate", "generate text and report prefill / decode tokens per second");
  c->add_option("--model", o->model, "model directory (default: the embedded default model)");
  auto* p1 = c->add_option("--prompt", o->prompt, "prompt text (encoded with the model's tokenizer, BOS prepended)");
  auto* p2 = c->add_option("--prompt-ids", o->prompt_ids, "prompt as comma-separated token ids");
  p1->excludes(p2);
  c->add_option("--max-tokens", o->max_tokens, "tokens to generate")->check(CLI::PositiveNumber);
  c->add_option("--temperature", o->temperature, "0 = greedy");
  c->add_option("--top-k", o->top_k, "0 = off");
  c->add_option("--top-p", o->top_p, "1 = off");
  c->add_option("--seed", o->seed, "sampling seed");
  c->add_option("--backend", o->backend, "ref | cpu | cuda");
  c->add_option("--prefill-chunk", o->prefill_chunk, "prefill in chunks of this many tokens (0 = one step)");
  c->add_flag("--ignore-eos", o->no_stop, "keep generating past the end-of-sequence token");
  c->add_option("--tp", o->tp, "tensor-parallel ranks: under mpirun, -n must equal it; else ranks are threads")
      ->check(CLI::Range(1, 256));
  c->add_option("--tp-comm", o->tp_comm, "auto | mpi | nccl | threads (auto: under mpirun nccl for --backend cuda, else mpi; without "
                "mpirun threads)")
      ->check(CLI::IsMember({"auto", "mpi", "nccl", "threads"}));
  c->add_flag("--verify-tp", o->verify_tp,
              "rank 0 reruns the generation without tensor parallelism and compares tokens (exact) and logits "
              "(1e-4 abs + 1e-4 rel); exit 1 on a mismatch");
  c->add_flag("--step-graphs", o->step_graphs,
              "replay decode steps from recordings (CUDA graphs on --backend cuda; elsewhere steps run as usual and it says why)");
  c->add_option("--stats-json", o->stats_json, "write timings, tokens and the --verify-tp result as JSON (rank 0)");
  c->add_option("--repeat", o->repeat, "generate this many times (timings of each; text printed once)")->check(CLI::Range(1, 1000));
  c->callback([o] {
    run_guarded("generate", [&] {
      if (o->prompt.empty() && o->prompt_ids.empty()) throw std::invalid_argument("give --prompt TEXT or --prompt-ids 1,2,3");
      run_tp_group("generate", o->tp, o->tp_comm, o->backend, [&](comm::Communicator* c) { run_rank(*o, c); });
    });
  });
}

}  // namespace cb::cli
