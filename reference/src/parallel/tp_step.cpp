// Encoding of the tensor-parallel step plan (tp_step.h) as int32 words:
//   magic, kind, step, kv_blocks, kv_block_size, n_copies, n_seqs,
//   n_copies x (src, dst), n_seqs x (n_tokens, pos0, table_len, all_logits), tokens..., tables...
#include "cb/engine/parallel/tp_step.h"

#include <stdexcept>
#include <string>

namespace cb::engine {
namespace {
constexpr int32_t kMagic = 0x54505354;  // "TPST"
constexpr size_t kHeader = 7;

[[noreturn]] void bad(const std::string& what) { throw std::runtime_error("tensor-parallel step message: " + what); }
}  // namespace

std::vector<int32_t> TpStepMessage::encode() const {
  std::vector<int32_t> w = {kMagic, int32_t(kind), step, kv_blocks, kv_block_size, int32_t(copies.size()), int32_t(seqs.size())};
  for (const auto& [s, d] : copies) w.insert(w.end(), {s, d});
  for (const Seq& s : seqs) w.insert(w.end(), {int32_t(s.tokens.size()), s.pos0, int32_t(s.table.size()), int32_t(s.all_logits)});
  for (const Seq& s : seqs) w.insert(w.end(), s.tokens.begin(), s.tokens.end());
  for (const Seq& s : seqs) w.insert(w.end(), s.table.begin(), s.table.end());
  return w;
}

TpStepMessage TpStepMessage::decode(const std::vector<int32_t>& w) {
  if (w.size() < kHeader) bad(std::to_string(w.size()) + " words, shorter than the header (" + std::to_string(kHeader) + ")");
  if (w[0] != kMagic) bad("word 0 is not the magic number (the ranks are out of step)");
  TpStepMessage m;
  if (w[1] != int32_t(Kind::Forward) && w[1] != int32_t(Kind::Stop)) bad("kind " + std::to_string(w[1]) + " is unknown");
  m.kind = Kind(w[1]);
  m.step = w[2];
  m.kv_blocks = w[3];
  m.kv_block_size = w[4];
  const int32_t n_copies = w[5], n_seqs = w[6];
  if (n_copies < 0 || n_seqs < 0) bad("negative copy or sequence count");
  size_t at = kHeader;
  auto need = [&](size_t n, const char* what) {
    if (w.size() - at < n) bad(std::string("truncated in ") + what + " (word " + std::to_string(at) + " of " + std::to_string(w.size()) + ")");
  };
  need(size_t(n_copies) * 2, "copies");
  for (int32_t i = 0; i < n_copies; ++i, at += 2) m.copies.emplace_back(w[at], w[at + 1]);
  need(size_t(n_seqs) * 4, "sequence headers");
  m.seqs.resize(size_t(n_seqs));
  std::vector<int32_t> lens(size_t(n_seqs) * 2);
  for (int32_t i = 0; i < n_seqs; ++i, at += 4) {
    if (w[at] < 0 || w[at + 2] < 0) bad("sequence " + std::to_string(i) + " has a negative length");
    lens[2 * i] = w[at];
    m.seqs[i].pos0 = w[at + 1];
    lens[2 * i + 1] = w[at + 2];
    m.seqs[i].all_logits = w[at + 3] != 0;
  }
  for (int32_t i = 0; i < n_seqs; ++i) {
    need(size_t(lens[2 * i]), "tokens");
    m.seqs[i].tokens.assign(w.begin() + at, w.begin() + at + lens[2 * i]);
    at += size_t(lens[2 * i]);
  }
  for (int32_t i = 0; i < n_seqs; ++i) {
    need(size_t(lens[2 * i + 1]), "block tables");
    m.seqs[i].table.assign(w.begin() + at, w.begin() + at + lens[2 * i + 1]);
    at += size_t(lens[2 * i + 1]);
  }
  if (at != w.size()) bad(std::to_string(w.size() - at) + " words left over after the last block table");
  return m;
}

std::vector<SeqStep> TpStepMessage::batch() const {
  std::vector<SeqStep> b;
  for (const Seq& s : seqs) b.push_back(SeqStep{s.tokens, s.pos0, s.table, s.all_logits});
  return b;
}

void send_step(comm::Communicator& comm, const TpStepMessage& m) {
  std::vector<int32_t> w = m.encode();
  int32_t n = int32_t(w.size());
  comm::broadcast_host(comm, &n, 1, kernels::DType::I32, 0);
  comm::broadcast_host(comm, w.data(), w.size(), kernels::DType::I32, 0);
}

TpStepMessage receive_step(comm::Communicator& comm) {
  int32_t n = 0;
  comm::broadcast_host(comm, &n, 1, kernels::DType::I32, 0);
  if (n < 0) bad("negative length " + std::to_string(n));
  std::vector<int32_t> w(static_cast<size_t>(n));
  comm::broadcast_host(comm, w.data(), w.size(), kernels::DType::I32, 0);
  return TpStepMessage::decode(w);
}

}  // namespace cb::engine
