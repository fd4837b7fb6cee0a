#include <cstdio>
#include <iostream>

#include "cb/engine/config.h"
#include "cb/engine/engine.h"
#include "cb/engine/model_init.h"
#include "commands.h"

namespace cb::cli {
namespace {
int g_exit = 0;

// Text for a terminal: printable ASCII, newlines and tabs as they are; other bytes (a random-weight
// model produces plenty, and partial UTF-8) as \xNN so output never garbles the terminal.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t') {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
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
    std::string preset, out, dtype = "f32";
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
  c->callback([o] {
    run_guarded("init", [&] {
      const auto cfg = engine::preset_config(o->preset);
      const auto dt = o->dtype == "f16" ? kernels::DType::F16 : o->dtype == "bf16" ? kernels::DType::BF16 : kernels::DType::F32;
      engine::write_random_model(cfg, o->seed, o->out, dt, o->force);
      std::printf("wrote %s model (%lld parameters, %s) to %s\n", o->preset.c_str(),
                  static_cast<long long>(cfg.parameter_count()), o->dtype.c_str(), o->out.c_str());
    });
  });
}

void add_generate_command(CLI::App& app) {
  struct Opts {
    std::string model, prompt, prompt_ids, backend = "cpu";
    int max_tokens = 32, top_k = 0, prefill_chunk = 0;
    float temperature = 0.f, top_p = 1.f;
    uint64_t seed = 0;
    bool no_stop = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("generate", "generate text and report prefill / decode tokens per second");
  c->add_option("--model", o->model, "model directory (default: the embedded default model)");
  auto* p1 = c->add_option("--prompt", o->prompt, "prompt text (byte-level tokens, BOS prepended)");
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
  c->callback([o] {
    run_guarded("generate", [&] {
      if (o->prompt.empty() && o->prompt_ids.empty()) throw std::invalid_argument("give --prompt TEXT or --prompt-ids 1,2,3");
      const auto dir = o->model.empty() ? engine::default_model_dir() : std::filesystem::path(o->model);
      auto lm = engine::LoadedModel::open(dir, o->backend);
      const auto& tok = lm->tokenizer();
      std::vector<int32_t> prompt = o->prompt_ids.empty() ? tok.encode(o->prompt)
                                                          : engine::parse_token_ids(o->prompt_ids, lm->config().vocab_size);
      engine::GenerateOptions g;
      g.max_tokens = o->max_tokens;
      g.sampling = {o->temperature, o->top_k, o->top_p, o->seed};
      g.sampling.validate();
      g.stop_at_eos = !o->no_stop;
      g.prefill_chunk = o->prefill_chunk;
      std::fputs(printable(tok.decode(prompt)).c_str(), stdout);
      auto r = engine::generate(*lm, prompt, g, [&](int32_t t) {
        std::fputs(printable(tok.decode_one(t)).c_str(), stdout);
        std::fflush(stdout);
      });
      std::printf("\n\n[%s, backend %s] prompt %d tokens, generated %zu (stop: %s)\n", dir.filename().c_str(),
                  lm->backend().name().c_str(), r.prompt_tokens, r.tokens.size(), r.stop_reason.c_str());
      std::printf("prefill: %.1f tokens/s (%.3f s)   decode: %.2f tokens/s (%d steps, %.3f s)\n", r.prefill_tokens_per_s(),
                  r.prefill_seconds, r.decode_tokens_per_s(), r.decode_steps, r.decode_seconds);
    });
  });
}

}  // namespace cb::cli
