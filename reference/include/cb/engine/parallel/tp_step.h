// The step plan rank 0 of a tensor-parallel group sends before each forward step, so the other
// ranks (followers) run the same batch over their shards: the sequences' tokens, positions and
// block tables, the KV pool geometry, and KV block copies (copy-on-write) to apply first. Rank 0
// alone schedules and samples; followers only mirror its steps.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "cb/comm/communicator.h"
#include "cb/engine/model/model.h"

namespace cb::engine {

struct TpStepMessage {
  enum class Kind : int32_t { Forward = 1, Stop = 2 };
  struct Seq {
    std::vector<int32_t> tokens;
    int32_t pos0 = 0;
    std::vector<int32_t> table;
    bool all_logits = false;
  };
  Kind kind = Kind::Forward;
  int32_t step = 0;                  // sequence number; a follower checks it follows its last
  int32_t kv_blocks = 0, kv_block_size = 0;
  std::vector<std::pair<int32_t, int32_t>> copies;  // KV block (src, dst) copies, before the step
  std::vector<Seq> seqs;

  std::vector<int32_t> encode() const;
  // Throws std::runtime_error naming the field when the words are not a well-formed message.
  static TpStepMessage decode(const std::vector<int32_t>& words);
  // The batch as Model::forward takes it (views into this message).
  std::vector<SeqStep> batch() const;
};

// Rank 0: the message to every other rank (two broadcasts: length, then words).
void send_step(comm::Communicator& comm, const TpStepMessage& m);
// Ranks > 0: the next message from rank 0.
TpStepMessage receive_step(comm::Communicator& comm);

}  // namespace cb::engine
