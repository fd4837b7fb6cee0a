// The follower side of a tensor-parallel group, and how the leader ends it (engine.h).
#include <memory>
#include <stdexcept>
#include <string>

#include "cb/engine/model/engine.h"
#include "cb/engine/parallel/tp_step.h"

namespace cb::engine {

void run_tp_follower(LoadedModel& m) {
  comm::Communicator* comm = m.tp_comm();
  if (!comm || comm->rank() == 0) return;
  std::unique_ptr<KvCache> kv;
  int32_t last = 0;
  for (;;) {
    const TpStepMessage msg = receive_step(*comm);
    if (msg.step != last + 1)
      throw std::runtime_error("tensor parallel rank " + std::to_string(comm->rank()) + ": step " + std::to_string(msg.step) +
                               " arrived after step " + std::to_string(last) + " (the ranks are out of step)");
    last = msg.step;
    if (msg.kind == TpStepMessage::Kind::Stop) return;
    // A pool shaped like the leader's, so block ids mean the same on every rank. Reusing one of
    // the same shape is safe: a step only reads positions its own earlier steps wrote.
    if (!kv || kv->num_blocks() != msg.kv_blocks || kv->block_size() != msg.kv_block_size) {
      kv.reset();
      kv = std::make_unique<KvCache>(m.backend(), m.kv_config(), msg.kv_blocks, msg.kv_block_size);
    }
    kv->copy_blocks(msg.copies);
    m.model().forward(msg.batch(), *kv);
  }
}

void finish_tp_leader(LoadedModel& m, bool failed, const std::string& why) {
  comm::Communicator* comm = m.tp_comm();
  if (!comm || comm->rank() != 0) return;
  if (failed && m.model().step_in_progress()) {
    comm->abort_group(why.empty() ? "rank 0 failed during a step" : why);
    return;
  }
  m.model().stop_followers();
}

}  // namespace cb::engine
