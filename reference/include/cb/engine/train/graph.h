// The whole LLaMA model as one training graph: parameters in one flat buffer laid out by tensor
// (Hugging Face names), a packed batch of variable-length sequences, and forward + backward over
// them with the ops of train/ops.h. The forward pass is model.cpp's, step for step.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cb/engine/model/config.h"
#include "cb/engine/train/ops.h"
#include "cb/engine/train/tasks.h"

namespace cb::engine::train {

struct ParamTensor {
  std::string name;             // e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;
  size_t offset = 0, numel = 0; // in the flat buffer
  bool is_norm = false;         // no weight decay
  bool is_linear = false;       // a matmul weight [out, in] (q, k, v, o, gate, up, down, lm_head)
};

struct LayerOffsets {
  size_t attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
};

// Where each tensor of a config lives in the flat parameter buffer (expected_tensor_names order).
struct ParamLayout {
  ModelConfig cfg;
  std::vector<ParamTensor> tensors;
  size_t total = 0;
  size_t embed = 0, final_norm = 0, lm_head = 0;  // lm_head == embed when tied
  std::vector<LayerOffsets> layers;
  explicit ParamLayout(const ModelConfig& cfg);
  // Throws std::invalid_argument naming the tensor when absent.
  const ParamTensor& find(const std::string& name) const;
};

// Sequences packed back to back: row t of every activation is tokens[t]. targets[t] is the token
// to predict after tokens[t] (-1 = no loss there): the answer tokens of each example.
struct Batch {
  std::vector<int32_t> tokens, positions, targets;
  std::vector<SeqSpan> seqs;
  int64_t loss_tokens = 0;
};
// Each example becomes prompt + answer without its last token, with targets on the answer and on
// the prompt's answered queries (TaskExample::prompt_answers).
Batch make_batch(const std::vector<TaskExample>& examples);
// One sequence with every next token as a target (for checks on whole sequences).
Batch make_lm_batch(const std::vector<std::vector<int32_t>>& sequences);

struct QatOptions {
  bool enabled = false;
  bool lm_head = true;
};

template <class T>
class TrainGraph {
 public:
  TrainGraph(const ParamLayout& layout, Gemm& gemm);
  // Mean cross-entropy over the batch's targets; when grads is set, writes d loss / d params
  // there (layout.total values). QAT: linear layers run on fake-quantized weights and inputs,
  // backward passes gradients straight through the quantizer.
  double forward_backward(const Batch& b, const T* params, T* grads, const QatOptions& qat = {});
  // Logits [rows, vocab] for every row of the batch (no loss), as the engine computes them.
  std::vector<T> logits(const Batch& b, const T* params, const QatOptions& qat = {});

 private:
  struct LayerActs {
    std::vector<T> x_in, rstd1, h1, q, k, v, probs, att, x_mid, rstd2, h2, g, u, a;
  };
  void forward(const Batch& b, const T* params, const QatOptions& qat, const std::vector<int64_t>& out_rows);
  void prepare_qat(const T* params, const QatOptions& qat);
  const T* weight(const T* params, size_t off, const QatOptions& qat, bool linear_lm_head = false) const;

  const ParamLayout& L_;
  Gemm& gemm_;
  RopeTable rope_;
  std::vector<LayerActs> acts_;
  std::vector<T> x_out_, proj_, packed_, xr_, rstdf_, xf_, logits_, wq_, xq_;
  std::vector<T> g_[12];  // backward scratch, kept between steps (no page faults per step)
  std::vector<int64_t> rows_;
};

}  // namespace cb::engine::train
