// `refengine train`: train a model on the synthetic tasks and write it as a Hugging Face model
// directory with train_log.jsonl and the held-out accuracy (see cb/engine/train/trainer.h).
#include <cstdio>

#include "cb/engine/train/trainer.h"
#include "commands.h"

namespace cb::cli {
namespace {

std::vector<std::string> split(const std::string& csv) {
  std::vector<std::string> out;
  for (size_t p = 0; !csv.empty() && p <= csv.size();) {
    const size_t q = std::min(csv.find(',', p), csv.size());
    if (q > p) out.push_back(csv.substr(p, q - p));
    p = q + 1;
  }
  return out;
}

int* shape_field(engine::train::TaskShape& s, const std::string& name) {
  const std::pair<const char*, int*> fields[] = {
      {"recall_min_pairs", &s.recall_min_pairs}, {"recall_max_pairs", &s.recall_max_pairs},
      {"recall_max_queries", &s.recall_max_queries}, {"recall_value_digits", &s.recall_value_digits}, {"copy_min", &s.copy_min},
      {"copy_max", &s.copy_max},                 {"reverse_min", &s.reverse_min},           {"reverse_max", &s.reverse_max},
      {"add_min_digits", &s.add_min_digits},     {"add_max_digits", &s.add_max_digits},     {"brackets_min", &s.brackets_min},
      {"brackets_max", &s.brackets_max}};
  for (const auto& [n, f] : fields)
    if (name == n) return f;
  return nullptr;
}

}  // namespace

void add_train_command(CLI::App& app) {
  struct Opts {
    engine::train::TrainOptions t;
    std::string out, init_from, dtype = "f32", tasks, shape;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("train", "train a model on the seeded synthetic tasks (recall, copy, reverse, add, brackets)");
  std::string presets;
  for (const auto& p : engine::train::train_preset_names()) presets += (presets.empty() ? "" : " | ") + p;
  auto* preset = c->add_option("--preset", o->t.preset, "model shape of a fresh model: " + presets + " (default: default)");
  auto* init = c->add_option("--init-from", o->init_from, "start from this model directory (any config) instead of a fresh model");
  preset->excludes(init);
  c->add_option("--steps", o->t.steps, "optimizer steps")->required()->check(CLI::PositiveNumber);
  c->add_option("--seed", o->t.seed, "seed of the fresh weights and of the data order")->required();
  c->add_option("--out", o->out, "output model directory")->required();
  c->add_option("--batch", o->t.batch, "examples per step")->check(CLI::PositiveNumber);
  c->add_option("--lr", o->t.lr, "peak learning rate (AdamW; warmup then cosine decay)");
  c->add_option("--min-lr-ratio", o->t.min_lr_ratio, "final learning rate as a fraction of --lr");
  c->add_option("--warmup", o->t.warmup_steps, "warmup steps (-1 = steps / 20)");
  c->add_option("--weight-decay", o->t.weight_decay, "decoupled weight decay (not on norms)");
  c->add_option("--grad-clip", o->t.grad_clip, "global gradient-norm clip (0 = off)");
  c->add_option("--tasks", o->tasks, "comma-separated tasks (default: all)");
  c->add_option("--task-shape", o->shape,
                "task lengths, e.g. recall_max_pairs=8,add_max_digits=2 (fields of TaskShape in train/tasks.h)");
  c->add_flag("--qat", o->t.qat, "fake INT8 quantization (per-channel weights, per-token activations) in every linear layer");
  c->add_flag("--keep-zeros", o->t.keep_zeros, "weights exactly zero in the starting model stay zero (pruned models)");
  c->add_option("--threads", o->t.threads, "OpenMP threads (0 = runtime default)")->check(CLI::NonNegativeNumber);
  c->add_option("--dtype", o->dtype, "f32 | bf16 (weights written)")->check(CLI::IsMember({"f32", "bf16"}));
  c->add_option("--eval-examples", o->t.eval_examples, "held-out examples per task evaluated at the end (0 = skip)");
  c->add_option("--eval-every", o->t.eval_every, "also evaluate every N steps on --eval-every-examples examples");
  c->add_option("--eval-every-examples", o->t.eval_every_examples, "held-out examples per task for --eval-every");
  c->add_option("--log-every", o->t.log_every, "log every N steps")->check(CLI::PositiveNumber);
  c->add_flag("--force,--overwrite", o->t.overwrite, "overwrite an existing model in --out");
  c->callback([o] {
    run_guarded("train", [&] {
      auto& t = o->t;
      t.out_dir = o->out;
      t.init_from = o->init_from;
      t.out_dtype = o->dtype == "bf16" ? kernels::DType::BF16 : kernels::DType::F32;
      t.tasks = split(o->tasks);
      for (const std::string& kv : split(o->shape)) {
        const size_t eq = kv.find('=');
        int* field = eq == std::string::npos ? nullptr : shape_field(t.shape, kv.substr(0, eq));
        if (!field) throw std::invalid_argument("--task-shape: '" + kv + "' is not NAME=INT with a TaskShape field name");
        *field = std::stoi(kv.substr(eq + 1));
      }
      const auto r = engine::train::train_model(t, [](const engine::train::TrainLogRecord& rec) {
        std::printf("step %6d  loss %.4f  lr %.2e  grad norm %.3f  %.1f s  %.0f tokens/s\n", rec.step, rec.loss, rec.lr,
                    rec.grad_norm, rec.seconds, rec.seconds > 0 ? double(rec.tokens) / rec.seconds : 0.0);
        if (!rec.eval.is_null()) std::printf("  eval: %s\n", rec.eval.dump().c_str());
        std::fflush(stdout);
      });
      std::printf("trained %lld parameters for %d steps: final loss %.4f, wall %.1f s, cpu %.1f s\n",
                  static_cast<long long>(r.parameters), r.steps, r.final_loss, r.wall_seconds, r.cpu_seconds);
      if (!r.eval.per_task.empty()) {
        std::printf("held-out exact-match accuracy (%d examples per task, %.1f s):\n", r.eval.per_task[0].total, r.eval_seconds);
        for (const auto& s : r.eval.per_task)
          std::printf("  %-9s %6.1f%%  (%d/%d, chance %.1f%%)\n", s.task.c_str(), 100 * s.accuracy(), s.correct, s.total,
                      100 * s.chance);
        std::printf("  %-9s %6.1f%%\n", "mean", 100 * r.eval.mean());
      }
      std::printf("wrote %s\n", r.out_dir.c_str());
    });
  });
}

}  // namespace cb::cli
