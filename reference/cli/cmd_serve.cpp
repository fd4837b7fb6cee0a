// refengine serve: the OpenAI-compatible HTTP server (issue #5).
//   refengine serve [--model DIR] [--host 127.0.0.1] [--port 8000] [--api-key KEY] ...
// Prints "refengine serve: listening on http://HOST:PORT" once it accepts connections (tools parse
// this line; --port 0 picks a free port). SIGTERM / SIGINT drain: new requests get 503, accepted
// ones finish, then exit 0; a second signal aborts what is left.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <thread>

#include "cb/engine/server/server.h"
#include "cb/engine/model/engine.h"
#include "commands.h"
#include "tp_launch.h"

namespace cb::cli {

namespace {

sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR2);  // internal: ends the second-signal watcher
  return set;
}

const char* signal_name(int sig) { return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "signal"; }

// A tensor-parallel rank > 0: mirrors rank 0's engine steps over its shard until rank 0's server
// is gone.
template <class Opts>
void follow(const Opts& o, comm::Communicator* tp) {
  auto lm = engine::LoadedModel::open(o.model.empty() ? engine::default_model_dir() : std::filesystem::path(o.model), o.backend, tp);
  try {
    engine::run_tp_follower(*lm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "refengine serve: tensor parallel rank %d: error: %s\n", tp->rank(), e.what());
    tp->abort_group(e.what());
    throw;
  }
}

}  // namespace

void add_serve_command(CLI::App& app) {
  struct Opts {
    std::string model, host = "127.0.0.1", backend = "cpu", policy = "queue-table", api_key, served_name;
    int port = 8000, num_blocks = 1024, block_size = 16, token_budget = 512, max_queue = 256, http_threads = 0;
    size_t max_body_bytes = size_t(1) << 20;
    double step_delay_ms = 0, sse_keepalive_s = 1.0;
    bool prefix_cache = false, step_graphs = false;
    int tp = 1;
    std::string tp_comm = "auto";
    std::string kv_placement = "runs";
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("serve", "OpenAI-compatible HTTP server (/v1/completions, /v1/models, /health, /metrics)");
  c->add_option("--model", o->model, "model directory (default: the embedded default model)");
  c->add_option("--host", o->host, "address to bind (default 127.0.0.1: loopback only)");
  c->add_option("--port", o->port, "port (0 = any free port, printed on the listening line)")->check(CLI::Range(0, 65535));
  c->add_option("--backend", o->backend, "ref | cpu | cuda (when built)");
  c->add_option("--num-blocks", o->num_blocks, "KV cache blocks")->check(CLI::PositiveNumber);
  c->add_option("--block-size", o->block_size, "tokens per KV block")->check(CLI::PositiveNumber);
  c->add_option("--policy", o->policy, "batch-size policy: static | queue-table | slo");
  c->add_option("--token-budget", o->token_budget, "tokens per engine step (decodes + prefill chunks)")->check(CLI::PositiveNumber);
  c->add_flag("--prefix-cache", o->prefix_cache, "reuse KV blocks of shared prompt prefixes");
  c->add_option("--kv-placement", o->kv_placement,
                "which free KV block a sequence gets: runs (adjacent to its last, so attention reads one stream) | lifo (the "
                "most recently freed)")
      ->check(CLI::IsMember({"runs", "lifo"}));
  c->add_flag("--step-graphs", o->step_graphs,
              "replay decode steps from recordings (CUDA graphs on --backend cuda; elsewhere steps run as usual)");
  c->add_option("--max-queue", o->max_queue, "requests allowed to wait; past it 429 + Retry-After")->check(CLI::PositiveNumber);
  c->add_option("--max-body-bytes", o->max_body_bytes, "largest request body accepted (413 past it)")->check(CLI::Range(size_t(64), size_t(1) << 30));
  c->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' on /v1/* (default: $CB_SERVE_API_KEY, else none)");
  c->add_option("--served-model-name", o->served_name, "model id reported and accepted (default: the model directory's name)");
  c->add_option("--http-threads", o->http_threads, "HTTP worker threads; each open keep-alive connection holds one (default: max(max-queue + 64, 1024))")->check(CLI::NonNegativeNumber);
  c->add_option("--sse-keepalive-s", o->sse_keepalive_s,
                "a stream with nothing to send this long gets an SSE comment (clients ignore it; it shows a client that left, "
                "so a queued request is dropped, not computed); 0 = never")
      ->check(CLI::Range(0.0, 3600.0));
  c->add_option("--step-delay-ms", o->step_delay_ms, "sleep after each engine step, emulating a slower model (client and load-tool testing)")
      ->check(CLI::Range(0.0, 10000.0));
  c->add_option("--tp", o->tp, "tensor-parallel ranks: under mpirun, -n must equal it (rank 0 serves); else ranks are threads")
      ->check(CLI::Range(1, 256));
  c->add_option("--tp-comm", o->tp_comm, "auto | mpi | nccl | threads (auto: under mpirun nccl for --backend cuda, else mpi; without "
                "mpirun threads)")
      ->check(CLI::IsMember({"auto", "mpi", "nccl", "threads"}));
  c->callback([o] {
    run_guarded("serve", [&] {
      // Block the shutdown signals before any thread starts, so every thread inherits the mask
      // and only rank 0's sigtimedwait receives them (follower ranks leave them pending: rank 0
      // drains, then releases them).
      const sigset_t sigs = shutdown_signals();
      pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
      run_tp_group("serve", o->tp, o->tp_comm, o->backend, [&](comm::Communicator* tp) {
        if (tp && tp->rank() != 0) return follow(*o, tp);

        engine::ServerOptions so;
        if (!o->model.empty()) so.model_dir = o->model;
        so.backend = o->backend;
        so.step_graphs = o->step_graphs;
        so.model_name = o->served_name;
        so.engine.num_blocks = o->num_blocks;
        so.engine.block_size = o->block_size;
        so.engine.policy = o->policy;
        so.engine.token_budget = o->token_budget;
        so.engine.prefix_cache = o->prefix_cache;
        so.engine.kv_placement = engine::parse_block_placement(o->kv_placement);
        so.max_queue = o->max_queue;
        so.max_body_bytes = o->max_body_bytes;
        so.http_threads = o->http_threads;
        so.api_key = o->api_key;
        so.step_delay_s = o->step_delay_ms / 1000.0;
        so.sse_keepalive_s = o->sse_keepalive_s;
        so.tp = tp;
        if (so.api_key.empty())
          if (const char* env = std::getenv("CB_SERVE_API_KEY")) so.api_key = env;
        if (o->host != "127.0.0.1" && o->host != "localhost" && o->host != "::1")
          std::fprintf(stderr, "refengine serve: warning: binding %s, which is reachable beyond this machine%s\n", o->host.c_str(),
                       so.api_key.empty() ? " and has no --api-key" : "");

        engine::Server server(std::move(so));
        server.start(o->host, o->port);
        std::printf("refengine serve: listening on %s\n", server.url().c_str());
        std::printf("refengine serve: model '%s', policy %s, max queue %d%s\n", server.model_name().c_str(),
                    server.engine().policy().name().c_str(), server.engine().max_queue(),
                    tp ? (", tensor parallel " + std::to_string(tp->size()) + " over " + tp->describe()).c_str() : "");
        std::fflush(stdout);

        int sig = -1;
        const timespec tick{0, 200'000'000};
        while (sig < 0 && server.running()) {
          siginfo_t info;
          const int got = sigtimedwait(&sigs, &info, &tick);
          if (got == SIGTERM || got == SIGINT) sig = got;
        }
        if (sig < 0) throw std::runtime_error("the HTTP listener stopped unexpectedly");
        std::fprintf(stderr, "refengine serve: %s: draining (%d waiting); send it again to abort\n", signal_name(sig),
                     server.engine().waiting());
        // A second SIGTERM / SIGINT while draining aborts what is left; SIGUSR2 ends the watcher.
        std::thread watcher([&server, sigs] {
          int s = 0;
          sigwait(&sigs, &s);
          if (s != SIGUSR2) {
            std::fprintf(stderr, "refengine serve: %s again: aborting in-flight requests\n", signal_name(s));
            server.stop();
          }
        });
        server.drain();
        server.wait();
        pthread_kill(watcher.native_handle(), SIGUSR2);
        watcher.join();
        std::fprintf(stderr, "refengine serve: drained, exiting\n");
      });
    });
  });
}

}  // namespace cb::cli
