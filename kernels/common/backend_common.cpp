#include <stdexcept>
#include <vector>

#include "cb/kernels/backend.h"

namespace cb::kernels {

const char* op_name(Op op) {
  switch (op) {
    case Op::MatMul: return "matmul";
    case Op::RmsNorm: return "rmsnorm";
    case Op::Rope: return "rope";
    case Op::Attention: return "attention";
    case Op::KvStore: return "kv_store";
    case Op::SiluMul: return "silu_mul";
    case Op::Softmax: return "softmax";
    case Op::Embedding: return "embedding";
    case Op::Add: return "add";
    case Op::kCount: break;
  }
  return "?";
}

Status check_matmul_args(const Tensor& x, const Weight& w, const Tensor& y) {
  if (x.dtype != DType::F32 || y.dtype != DType::F32)
    return Status::invalid("matmul: activations must be f32, got x " + x.describe() + ", y " + y.describe());
  if (x.cols() != w.k)
    return Status::invalid("matmul: x " + x.describe() + " has " + std::to_string(x.cols()) +
                           " columns but the weight expects K=" + std::to_string(w.k));
  if (y.rows() != x.rows() || y.cols() != w.n)
    return Status::invalid("matmul: y " + y.describe() + " must be [" + std::to_string(x.rows()) + ", " +
                           std::to_string(w.n) + "]");
  return Status::Ok();
}

namespace {
std::string dims(int64_t a, int64_t b) {  // built with += (GCC 12 warns falsely on "literal" + std::string&&)
  std::string s = "[";
  s += std::to_string(a);
  s += ", ";
  s += std::to_string(b);
  s += "]";
  return s;
}
}  // namespace

Status check_matmul_weight(const Weight& w, const char* who) {
  auto p = [who] { return std::string(who) + ": "; };  // built only for an error
  const int64_t N = w.n, K = w.k;
  if (N < 0 || K < 0) return Status::invalid(p() + "weight has negative size " + dims(N, K));
  switch (w.layout) {
    case WeightLayout::Dense:
    case WeightLayout::Int8PerChannel:
      if (w.values.numel() != N * K)
        return Status::invalid(p() + "weight values " + w.values.describe() + " do not hold " + dims(N, K));
      break;
    case WeightLayout::Sparse24:
      if (K % 4 != 0)
        return Status::invalid(p() + "2:4 sparse weight needs K % 4 == 0 (groups of 4 inputs), got K=" + std::to_string(K));
      if (w.values.numel() != N * (K / 2))
        return Status::invalid(p() + "2:4 sparse values " + w.values.describe() + " must hold the kept half " + dims(N, K / 2));
      if (w.meta.dtype != DType::I8 || w.meta.numel() != N * (K / 4))
        return Status::invalid(p() + "2:4 sparse meta " + w.meta.describe() + " must be i8 " + dims(N, K / 4) +
                               " (one byte of two 2-bit indices per group of 4)");
      break;
  }
  if (w.layout == WeightLayout::Int8PerChannel && (w.scales.dtype != DType::F32 || w.scales.numel() != N))
    return Status::invalid(p() + "int8 scales " + w.scales.describe() + " must be f32[" + std::to_string(N) + "]");
  if (w.act_quant == ActQuant::PerTokenInt8 && w.layout != WeightLayout::Int8PerChannel)
    return Status::invalid(p() + "per-token int8 activations (W8A8) need an Int8PerChannel weight");
  if (w.act_quant == ActQuant::Bf16 && (w.layout != WeightLayout::Dense || w.dtype() != DType::BF16))
    return Status::invalid(p() + "bf16 activations need a dense bf16 weight, got " + w.values.describe());
  return Status::Ok();
}

Status check_sparse24_meta(const Weight& w, const char* who) {
  const int64_t groups = w.k / 4;
  const auto* meta = w.meta.as<const uint8_t>();
  for (int64_t n = 0; n < w.n; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      const unsigned b = meta[n * groups + g];
      if ((b >> 4) != 0 || (b & 3u) >= (b >> 2))
        return Status::invalid(std::string(who) + ": 2:4 sparse meta byte 0x" + "0123456789abcdef"[b >> 4] +
                               "0123456789abcdef"[b & 15] + " at row " + std::to_string(n) + ", group " +
                               std::to_string(g) + " is not i0 | i1 << 2 with i0 < i1 <= 3");
    }
  return Status::Ok();
}

Status check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel() || a.cols() != b.cols())
    return Status::invalid(std::string(op) + ": shape mismatch " + a.describe() + " vs " + b.describe());
  return Status::Ok();
}

const char* status_code_name(StatusCode c) {
  switch (c) {
    case StatusCode::Ok: return "ok";
    case StatusCode::Unsupported: return "unsupported";
    case StatusCode::InvalidArgument: return "invalid argument";
    case StatusCode::OutOfMemory: return "out of memory";
    case StatusCode::Internal: return "internal error";
  }
  return "?";
}

// ---- The table every host backend shares ------------------------------------------------------

namespace {
bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
}  // namespace

bool Backend::supports(Op op, DType dtype, WeightLayout layout) const {
  switch (op) {
    case Op::MatMul:
      if (layout == WeightLayout::Dense || layout == WeightLayout::Sparse24) return is_float(dtype);
      if (layout == WeightLayout::Int8PerChannel) return dtype == DType::I8;
      return false;
    case Op::RmsNorm:
    case Op::Embedding:
      return is_float(dtype);
    default:
      return dtype == DType::F32;
  }
}

bool Backend::supports_matmul(DType dtype, WeightLayout layout, ActQuant act) const {
  switch (act) {
    case ActQuant::None: return supports(Op::MatMul, dtype, layout);
    case ActQuant::PerTokenInt8: return layout == WeightLayout::Int8PerChannel && dtype == DType::I8;
    case ActQuant::Bf16: return layout == WeightLayout::Dense && dtype == DType::BF16;
  }
  return false;
}

// ---- Memory ---------------------------------------------------------------------------------

Tensor Backend::alloc(DType dtype, std::initializer_list<int64_t> dims) {
  Tensor t;
  if (Status s = allocate(dtype, dims, t); !s.ok()) throw BackendError(std::move(s));
  return t;
}

Status Backend::copy(Tensor& dst, const Tensor& src) {
  std::vector<unsigned char> staging(dst.nbytes());
  if (Status s = copy_to_host(staging.data(), src); !s.ok()) return s;
  if (Status s = synchronize(); !s.ok()) return s;
  return copy_from_host(dst, staging.data());
}

namespace {

// upload_weight's checks, shared with upload_tensor (a tensor is checked as the dense weight it
// was uploaded as before tensors had their own call).
Status check_upload(const Backend& be, const Weight& host, const std::string& who) {
  if (Status s = check_matmul_weight(host, who.c_str()); !s.ok()) return s;
  // Before the contents checks: a layout this backend cannot run is Unsupported, whatever its bytes.
  if (!be.supports_matmul(host.dtype(), host.layout, host.act_quant)) {
    const std::string note = be.matmul_unsupported_note(host.dtype(), host.layout, host.act_quant);
    return Status::unsupported(who + ": " + dtype_name(host.dtype()) + " " + weight_layout_name(host.layout) + " weights with " +
                               act_quant_name(host.act_quant) + " activations are not supported" +
                               (note.empty() ? "" : ": " + note));
  }
  if (host.layout == WeightLayout::Sparse24 && host.n > 0 && host.k > 0) {
    if (host.meta.mem != MemSpace::Host || host.meta.data == nullptr)
      return Status::invalid(who + ": 2:4 sparse meta must be in host memory to be checked");
    if (Status s = check_sparse24_meta(host, who.c_str()); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace

Status Backend::upload_weight(const Weight& host, Weight& out) {
  if (Status s = check_upload(*this, host, name() + " upload_weight"); !s.ok()) return s;
  return run_upload_weight(host, out);
}

Weight Backend::upload_weight(const Weight& host) {
  Weight out;
  if (Status s = upload_weight(host, out); !s.ok()) throw BackendError(std::move(s));
  return out;
}

Status Backend::upload_tensor(const Tensor& host, Tensor& out) {
  if (Status s = check_upload(*this, Weight::dense(host), name() + " upload_tensor"); !s.ok()) return s;
  return run_upload_tensor(host, out);
}

Tensor Backend::upload_tensor(const Tensor& host) {
  Tensor out;
  if (Status s = upload_tensor(host, out); !s.ok()) throw BackendError(std::move(s));
  return out;
}

Status Backend::run_upload_weight(const Weight& host, Weight& out) {
  out = host;
  return Status::Ok();
}

Status Backend::run_upload_tensor(const Tensor& host, Tensor& out) {
  Weight w;
  if (Status s = run_upload_weight(Weight::dense(host), w); !s.ok()) return s;
  out = w.values;
  return Status::Ok();
}

Status Backend::alloc_kv_cache(const KvCacheSpec& spec, KvCacheStorage& out) {
  if (spec.num_layers < 0 || spec.num_blocks <= 0 || spec.block_size <= 0 || spec.n_kv_heads <= 0 || spec.head_dim <= 0)
    return Status::invalid(name() + " alloc_kv_cache: layers " + std::to_string(spec.num_layers) + ", blocks " +
                           std::to_string(spec.num_blocks) + ", block size " + std::to_string(spec.block_size) +
                           ", kv heads " + std::to_string(spec.n_kv_heads) + ", head_dim " +
                           std::to_string(spec.head_dim) + ": all must be positive");
  out = KvCacheStorage{};
  Status s = run_alloc_kv_cache(spec, out);
  if (!s.ok()) release_kv_cache(out);  // nothing half-allocated stays behind
  return s;
}

Status Backend::run_alloc_kv_cache(const KvCacheSpec& spec, KvCacheStorage& out) {
  out.spec = spec;
  for (int l = 0; l < spec.num_layers; ++l) {
    KvLayer layer{Tensor{}, Tensor{}, spec.num_blocks, spec.block_size, spec.n_kv_heads, spec.head_dim};
    const std::initializer_list<int64_t> dims{spec.num_blocks, spec.block_size, spec.n_kv_heads, spec.head_dim};
    Status s = allocate(DType::F32, dims, layer.k_pool);
    if (s.ok()) s = allocate(DType::F32, dims, layer.v_pool);
    if (!s.ok()) {
      if (!layer.k_pool.empty()) release(layer.k_pool);
      return s;
    }
    out.layers.push_back(layer);
  }
  out.bytes_per_block = 2 * size_t(spec.num_layers) * size_t(spec.block_size) * spec.n_kv_heads * spec.head_dim * sizeof(float);
  return Status::Ok();
}

void Backend::release_kv_cache(KvCacheStorage& kv) {
  for (KvLayer& l : kv.layers) {
    if (!l.k_pool.empty()) release(l.k_pool);
    if (!l.v_pool.empty()) release(l.v_pool);
  }
  kv.layers.clear();
}

Status Backend::copy_kv_blocks(KvCacheStorage& kv, std::span<const std::pair<int32_t, int32_t>> copies) {
  for (const auto& [src, dst] : copies)
    if (src < 0 || src >= kv.spec.num_blocks || dst < 0 || dst >= kv.spec.num_blocks)
      return Status::invalid(name() + " copy_kv_blocks: block ids " + std::to_string(src) + " -> " + std::to_string(dst) +
                             " outside the pool of " + std::to_string(kv.spec.num_blocks) + " blocks");
  if (copies.empty() || kv.layers.empty()) return Status::Ok();
  return run_copy_kv_blocks(kv, copies);
}

Status Backend::run_copy_kv_blocks(KvCacheStorage& kv, std::span<const std::pair<int32_t, int32_t>> copies) {
  for (KvLayer& l : kv.layers)
    for (Tensor* pool : {&l.k_pool, &l.v_pool}) {
      const int64_t per_block = pool->numel() / l.num_blocks;
      const size_t es = dtype_size(pool->dtype);
      for (const auto& [src, dst] : copies) {
        Tensor s(static_cast<char*>(pool->data) + size_t(src * per_block) * es, pool->dtype, {per_block}, pool->mem);
        Tensor d(static_cast<char*>(pool->data) + size_t(dst * per_block) * es, pool->dtype, {per_block}, pool->mem);
        if (Status st = copy(d, s); !st.ok()) return st;
      }
    }
  return Status::Ok();
}

// ---- Ops: the shared checks, then the backend's run_* --------------------------------------

namespace {
// "<backend> <op>", the prefix of every message; composed only when a check fails, so the
// passing path of each op allocates nothing.
struct Who {
  const Backend& be;
  const char* op;
  std::string str() const { return be.name() + " " + op; }
};
std::string operator+(const Who& w, const char* s) { return w.str() + s; }

Status need_dtype(const Who& who, const char* what, const Tensor& t, DType want, StatusCode code) {
  if (t.dtype == want) return Status::Ok();
  return {code, who + ": " + what + " must be " + dtype_name(want) + ", got " + t.describe()};
}
// A tensor with elements must have memory behind it.
Status need_data(const Who& who, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->numel() > 0 && t->data == nullptr) return Status::invalid(who + ": missing data pointer for " + t->describe());
  return Status::Ok();
}
}  // namespace

namespace {
// Backend::matmul's checks; `empty` says the call has no work (nothing to run).
Status check_matmul_call(const Backend& be, const Tensor& x, const Weight& w, const Tensor& y, bool& empty) {
  const Who who{be, "matmul"};
  empty = false;
  if (Status s = check_matmul_args(x, w, y); !s.ok()) return s;
  if (Status s = check_matmul_weight(w, "matmul"); !s.ok()) return {s.code, be.name() + " " + s.message};
  if (!be.supports_matmul(w.dtype(), w.layout, w.act_quant)) {
    const char* layout = w.layout == WeightLayout::Dense      ? " (dense)"
                         : w.layout == WeightLayout::Sparse24 ? " (2:4 sparse)"
                                                              : " (int8 per channel)";
    const std::string note = be.matmul_unsupported_note(w.dtype(), w.layout, w.act_quant);
    return Status::unsupported(who + ": weight dtype " + dtype_name(w.dtype()) + layout + " with " +
                               act_quant_name(w.act_quant) + " activations" + (note.empty() ? "" : ": " + note));
  }
  if (x.rows() == 0 || w.n == 0) {
    empty = true;
    return Status::Ok();
  }
  if (Status s = need_data(who, {&x, &y, &w.values}); !s.ok()) return s;
  if ((w.layout == WeightLayout::Int8PerChannel && w.scales.data == nullptr) ||
      (w.layout == WeightLayout::Sparse24 && w.k > 0 && w.meta.data == nullptr))
    return Status::invalid(who + ": missing scales or meta data pointer");
  return Status::Ok();
}
}  // namespace

Status Backend::matmul(const Tensor& x, const Weight& w, Tensor& y) {
  bool empty = false;
  if (Status s = check_matmul_call(*this, x, w, y, empty); !s.ok() || empty) return s;
  return run_matmul(x, w, y);
}

Status Backend::matmul_multi(const Tensor& x, std::span<const MatmulOutput> outs) {
  std::vector<MatmulOutput> work;
  work.reserve(outs.size());
  for (size_t i = 0; i < outs.size(); ++i) {
    if (!outs[i].w || !outs[i].y)
      return Status::invalid(name() + " matmul_multi: output " + std::to_string(i) + " has no weight or no y");
    bool empty = false;
    if (Status s = check_matmul_call(*this, x, *outs[i].w, *outs[i].y, empty); !s.ok())
      return {s.code, s.message + " (matmul_multi output " + std::to_string(i) + ")"};
    if (!empty) work.push_back(outs[i]);
  }
  if (work.empty()) return Status::Ok();
  return run_matmul_multi(x, work);
}

Status Backend::run_matmul_multi(const Tensor& x, std::span<const MatmulOutput> outs) {
  for (const MatmulOutput& o : outs)
    if (Status s = run_matmul(x, *o.w, *o.y); !s.ok()) return s;
  return Status::Ok();
}

Status Backend::rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& y) {
  const Who who{*this, "rmsnorm"};
  if (Status s = check_same_shape("rmsnorm", x, y); !s.ok()) return s;
  if (weight.numel() != x.cols()) return Status::invalid(who + ": weight " + weight.describe() + " vs x " + x.describe());
  if (!supports(Op::RmsNorm, weight.dtype)) return Status::unsupported(who + ": weight " + weight.describe());
  if (Status s = need_dtype(who, "x", x, DType::F32, StatusCode::Unsupported); !s.ok()) return s;
  if (Status s = need_dtype(who, "y", y, DType::F32, StatusCode::Unsupported); !s.ok()) return s;
  if (x.numel() == 0) return Status::Ok();
  if (Status s = need_data(who, {&x, &weight, &y}); !s.ok()) return s;
  return run_rmsnorm(x, weight, eps, y);
}

Status Backend::rope(Tensor& x, const Tensor& positions, int n_heads, int head_dim, float theta) {
  const Who who{*this, "rope"};
  if (n_heads <= 0 || head_dim <= 0 || head_dim % 2 || x.cols() != int64_t(n_heads) * head_dim ||
      positions.numel() != x.rows())
    return Status::invalid(who + ": x " + x.describe() + ", positions " + positions.describe() + ", heads " +
                           std::to_string(n_heads) + " x head_dim " + std::to_string(head_dim) +
                           " (head_dim even, x columns = heads x head_dim, one position per row)");
  if (Status s = need_dtype(who, "positions", positions, DType::I32, StatusCode::InvalidArgument); !s.ok()) return s;
  if (!supports(Op::Rope, x.dtype)) return Status::unsupported(who + ": x " + x.describe());
  if (x.numel() == 0) return Status::Ok();
  if (Status s = need_data(who, {&x, &positions}); !s.ok()) return s;
  return run_rope(x, positions, n_heads, head_dim, theta);
}

namespace {
Status check_kv_layer(const Who& who, const KvLayer& kv) {
  if (kv.block_size <= 0 || kv.n_kv_heads <= 0 || kv.head_dim <= 0 || kv.num_blocks <= 0)
    return Status::invalid(who + ": cache blocks " + std::to_string(kv.num_blocks) + ", block size " +
                           std::to_string(kv.block_size) + ", kv heads " + std::to_string(kv.n_kv_heads) +
                           ", head_dim " + std::to_string(kv.head_dim) + ": all must be positive");
  const int64_t slots = int64_t(kv.num_blocks) * kv.block_size * kv.n_kv_heads * kv.head_dim;
  if (kv.k_pool.numel() != slots || kv.v_pool.numel() != slots || kv.k_pool.dtype != kv.v_pool.dtype)
    return Status::invalid(who + ": pools " + kv.k_pool.describe() + ", " + kv.v_pool.describe() + " do not hold " +
                           std::to_string(kv.num_blocks) + " blocks of " + std::to_string(kv.block_size) +
                           " slots (allocate them with alloc_kv_cache)");
  return need_data(who, {&kv.k_pool, &kv.v_pool});
}
}  // namespace

Status Backend::kv_store(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, KvLayer& kv) {
  const Who who{*this, "kv_store"};
  if (Status s = check_kv_layer(who, kv); !s.ok()) return s;
  const int64_t row = int64_t(kv.n_kv_heads) * kv.head_dim;
  if (k.cols() != row || v.cols() != row || k.rows() != v.rows())
    return Status::invalid(who + ": k " + k.describe() + ", v " + v.describe() + " must be [rows, " + std::to_string(row) +
                           "] (kv heads x head_dim)");
  if (slot_mapping.numel() != k.rows())
    return Status::invalid(who + ": slot mapping " + slot_mapping.describe() + " must hold one slot per row of k " +
                           k.describe());
  if (Status s = need_dtype(who, "slot mapping", slot_mapping, DType::I32, StatusCode::InvalidArgument); !s.ok()) return s;
  if (!supports(Op::KvStore, k.dtype) || v.dtype != k.dtype)
    return Status::unsupported(who + ": k " + k.describe() + ", v " + v.describe());
  if (k.rows() == 0) return Status::Ok();
  if (Status s = need_data(who, {&k, &v, &slot_mapping}); !s.ok()) return s;
  return run_kv_store(k, v, slot_mapping, kv);
}

Status Backend::attention(const Tensor& q, const KvLayer& kv, const AttentionBatch& b, const AttentionParams& p,
                          Tensor& out) {
  const Who who{*this, "attention"};
  if (p.n_heads <= 0 || p.n_kv_heads <= 0 || p.head_dim <= 0 || p.n_heads % p.n_kv_heads ||
      q.cols() != int64_t(p.n_heads) * p.head_dim)
    return Status::invalid(who + ": q " + q.describe() + " with heads " + std::to_string(p.n_heads) + "/" +
                           std::to_string(p.n_kv_heads) + " of dim " + std::to_string(p.head_dim) +
                           " (heads a positive multiple of kv heads, q columns = heads x head_dim)");
  if (kv.head_dim != p.head_dim || kv.n_kv_heads != p.n_kv_heads)
    return Status::invalid(who + ": cache holds " + std::to_string(kv.n_kv_heads) + " kv heads of dim " +
                           std::to_string(kv.head_dim) + ", the call asks for " + std::to_string(p.n_kv_heads) +
                           " of dim " + std::to_string(p.head_dim));
  if (Status s = check_kv_layer(who, kv); !s.ok()) return s;
  if (Status s = check_same_shape("attention", q, out); !s.ok()) return s;
  if (!supports(Op::Attention, q.dtype) || out.dtype != q.dtype)
    return Status::unsupported(who + ": q " + q.describe() + ", out " + out.describe());
  if (b.num_seqs < 0 || b.query_start.numel() != int64_t(b.num_seqs) + 1 || b.context_len.numel() != b.num_seqs ||
      b.block_tables.numel() != int64_t(b.num_seqs) * b.max_blocks_per_seq)
    return Status::invalid(who + ": batch of " + std::to_string(b.num_seqs) + " sequences needs query_start [" +
                           std::to_string(b.num_seqs + 1) + "], context_len [" + std::to_string(b.num_seqs) +
                           "], block_tables [" + std::to_string(b.num_seqs) + ", " + std::to_string(b.max_blocks_per_seq) +
                           "]; got " + b.query_start.describe() + ", " + b.context_len.describe() + ", " +
                           b.block_tables.describe() + " (build them with plan_kv_batch)");
  for (const Tensor* t : {&b.query_start, &b.context_len, &b.block_tables})
    if (Status s = need_dtype(who, "batch index tensors", *t, DType::I32, StatusCode::InvalidArgument); !s.ok()) return s;
  if (int64_t(b.max_blocks_per_seq) * kv.block_size < b.max_context_len || b.max_query_len > b.max_context_len ||
      (q.rows() > 0 && b.num_seqs == 0))
    return Status::invalid(who + ": batch bounds disagree (max context " + std::to_string(b.max_context_len) +
                           ", max query rows " + std::to_string(b.max_query_len) + ", " +
                           std::to_string(b.max_blocks_per_seq) + " blocks of " + std::to_string(kv.block_size) +
                           " per sequence, " + std::to_string(b.num_seqs) + " sequences for " +
                           std::to_string(q.rows()) + " rows)");
  if (q.rows() == 0) return Status::Ok();
  if (Status s = need_data(who, {&q, &out, &b.query_start, &b.context_len, &b.block_tables}); !s.ok()) return s;
  return run_attention(q, kv, b, p, out);
}

Status Backend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  const Who who{*this, "silu_mul"};
  if (Status s = check_same_shape("silu_mul", gate, up); !s.ok()) return s;
  if (Status s = check_same_shape("silu_mul", gate, out); !s.ok()) return s;
  if (!supports(Op::SiluMul, gate.dtype) || up.dtype != gate.dtype || out.dtype != gate.dtype)
    return Status::unsupported(who + ": " + gate.describe() + ", " + up.describe() + " -> " + out.describe());
  if (gate.numel() == 0) return Status::Ok();
  if (Status s = need_data(who, {&gate, &up, &out}); !s.ok()) return s;
  return run_silu_mul(gate, up, out);
}

Status Backend::softmax(const Tensor& x, Tensor& y) {
  const Who who{*this, "softmax"};
  if (Status s = check_same_shape("softmax", x, y); !s.ok()) return s;
  if (!supports(Op::Softmax, x.dtype) || y.dtype != x.dtype)
    return Status::unsupported(who + ": " + x.describe() + " -> " + y.describe());
  if (x.numel() == 0) return Status::Ok();
  if (Status s = need_data(who, {&x, &y}); !s.ok()) return s;
  return run_softmax(x, y);
}

Status Backend::embedding(const Tensor& ids, const Tensor& table, Tensor& out) {
  const Who who{*this, "embedding"};
  if (out.cols() != table.cols() || out.rows() != ids.numel())
    return Status::invalid(who + ": out " + out.describe() + " must be [" + std::to_string(ids.numel()) + ", " +
                           std::to_string(table.cols()) + "] for ids " + ids.describe() + ", table " + table.describe());
  if (Status s = need_dtype(who, "ids", ids, DType::I32, StatusCode::InvalidArgument); !s.ok()) return s;
  if (!supports(Op::Embedding, table.dtype)) return Status::unsupported(who + ": table " + table.describe());
  if (Status s = need_dtype(who, "out", out, DType::F32, StatusCode::Unsupported); !s.ok()) return s;
  if (out.numel() == 0) return Status::Ok();
  if (Status s = need_data(who, {&ids, &table, &out}); !s.ok()) return s;
  return run_embedding(ids, table, out);
}

Status Backend::add(const Tensor& a, const Tensor& b, Tensor& out) {
  const Who who{*this, "add"};
  if (Status s = check_same_shape("add", a, b); !s.ok()) return s;
  if (Status s = check_same_shape("add", a, out); !s.ok()) return s;
  if (!supports(Op::Add, a.dtype) || b.dtype != a.dtype || out.dtype != a.dtype)
    return Status::unsupported(who + ": " + a.describe() + " + " + b.describe() + " -> " + out.describe());
  if (a.numel() == 0) return Status::Ok();
  if (Status s = need_data(who, {&a, &b, &out}); !s.ok()) return s;
  return run_add(a, b, out);
}

std::unique_ptr<Backend> make_ref_backend();
std::unique_ptr<Backend> make_cpu_backend();
#ifdef CB_HAVE_CUDA_BACKEND
std::string cuda_unavailable_reason();  // cb/kernels/cuda_info.h
std::unique_ptr<Backend> make_cuda_backend();  // nullptr when no GPU is usable
#endif

std::vector<std::string> backend_names() { return {"ref", "cpu", "cuda"}; }

std::string backend_unavailable_reason(const std::string& name) {
  if (name == "ref" || name == "cpu") return "";
  if (name == "cuda") {
#ifdef CB_HAVE_CUDA_BACKEND
    if (std::string why = cuda_unavailable_reason(); !why.empty()) return why;
    return make_cuda_backend() ? "" : "the CUDA backend did not initialize (stream, cuBLASLt handle or workspace)";
#else
    return "this build has no CUDA backend (configure the cuda preset, CB_ENABLE_CUDA=ON, where the CUDA toolkit is)";
#endif
  }
  std::string known;
  for (const auto& n : backend_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown backend '" + name + "' (known: " + known + ")");
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "ref") return make_ref_backend();
  if (name == "cpu") return make_cpu_backend();
#ifdef CB_HAVE_CUDA_BACKEND
  if (name == "cuda")
    if (auto b = make_cuda_backend()) return b;
#endif
  throw std::runtime_error("backend '" + name + "' cannot run here: " + backend_unavailable_reason(name));
}

std::vector<std::string> available_backends() {
  std::vector<std::string> out{"ref", "cpu"};
#ifdef CB_HAVE_CUDA_BACKEND
  if (make_cuda_backend()) out.push_back("cuda");
#endif
  return out;
}

}  // namespace cb::kernels
