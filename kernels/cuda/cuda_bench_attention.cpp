// cb_cuda_bench section 5: paged decode attention through the cuda backend against the device's
// copy bandwidth, beside the same kernel on a contiguous cache.
#include "cuda_bench.h"

namespace cb::cuda_bench {

// ---- 5. decode attention bandwidth -------------------------------------------------------------
json attention_bench(Ctx& ctx, ck::Backend& be, double copy_rw_gbps) {
  const int n_heads = 32, n_kv = 4, hd = 64, bsz = 16;
  const std::vector<int> Bs = ctx.quick ? std::vector<int>{1, 32} : std::vector<int>{1, 8, 32};
  const std::vector<int> Ls = ctx.quick ? std::vector<int>{4096} : std::vector<int>{4096, 16384};
  const int maxB = *std::max_element(Bs.begin(), Bs.end()), maxL = *std::max_element(Ls.begin(), Ls.end());
  const int num_blocks = maxB * maxL / bsz;
  json j = {{"n_heads", n_heads}, {"n_kv_heads", n_kv}, {"head_dim", hd}, {"block_size", bsz}, {"pool_blocks", num_blocks},
            {"limit", "d2d copy, bytes read + written per second (best of reps)"}, {"target", 0.70}};
  if (copy_rw_gbps > 0) j["limit_gbps"] = copy_rw_gbps;
  const auto bs = static_cast<cudaStream_t>(be.stream());
  ck::KvCacheStorage kv;
  std::string e = st_err(be.alloc_kv_cache({1, num_blocks, bsz, n_kv, hd}, kv), "alloc_kv_cache");
  if (!e.empty()) {
    ctx.error("attention: " + e);
    j["status"] = "error: " + e;
    return j;
  }
  struct KvGuard {
    ck::Backend& be;
    ck::KvCacheStorage& kv;
    ~KvGuard() { be.release_kv_cache(kv); }
  } kv_guard{be, kv};
  const ck::KvLayer& layer = kv.layers.at(0);
  const ck::DType pool_dt = layer.k_pool.dtype;
  j["pool_dtype"] = ck::dtype_name(pool_dt);
  // Fill every slot once (not timed) with random keys/values through kv_store, in chunks of rows
  // that reuse one random k/v block (values repeat across chunks: irrelevant for timing).
  const int64_t row = int64_t(n_kv) * hd, total = int64_t(num_blocks) * bsz, chunk = std::min<int64_t>(65536, total);
  {
    BeBuf kb, vb, sb;
    std::vector<float> kh(size_t(chunk * row));
    std::vector<int32_t> slots(static_cast<size_t>(chunk));
    SplitMix g{ctx.seed + 99};
    e = kb.init(be, ck::DType::F32, {chunk, row});
    if (e.empty()) e = vb.init(be, ck::DType::F32, {chunk, row});
    if (e.empty()) e = sb.init(be, ck::DType::I32, {chunk});
    for (auto& f : kh) f = g.uniform();
    if (e.empty()) e = st_err(be.copy_from_host(kb.t, kh.data()), "copy k");
    for (auto& f : kh) f = g.uniform();
    if (e.empty()) e = st_err(be.copy_from_host(vb.t, kh.data()), "copy v");
    for (int64_t s0 = 0; s0 < total && e.empty(); s0 += chunk) {
      const int64_t n = std::min(chunk, total - s0);
      std::iota(slots.begin(), slots.begin() + n, int32_t(s0));
      ck::Tensor sv = sb.t;
      sv.shape[0] = n;
      e = st_err(be.copy_from_host(sv, slots.data()), "copy slots");
      if (e.empty()) e = st_err(be.kv_store(kb.t.row_slice(0, n), vb.t.row_slice(0, n), sv, kv.layers[0]), "kv_store");
      if (e.empty()) e = st_err(be.synchronize(), "synchronize kv_store");  // slots buffer is reused
    }
  }
  j["kv_fill"] = e.empty() ? "random via kv_store" : "failed (pools left as allocated): " + e;
  if (!e.empty()) ctx.error("attention kv fill: " + e);
  // Shuffled block order: a random permutation of the whole pool (seeded), each sequence a slice.
  std::vector<int32_t> perm(static_cast<size_t>(num_blocks));
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937 pg(ctx.seed + 1);
  std::shuffle(perm.begin(), perm.end(), pg);
  BeBuf q, out;
  std::string qe = q.init(be, ck::DType::F32, {maxB, int64_t(n_heads) * hd});
  if (qe.empty()) qe = out.init(be, ck::DType::F32, {maxB, int64_t(n_heads) * hd});
  std::vector<float> qh(size_t(maxB) * n_heads * hd);
  SplitMix qg{ctx.seed + 7};
  for (auto& f : qh) f = qg.uniform();
  if (qe.empty()) qe = st_err(be.copy_from_host(q.t, qh.data()), "copy q");
  ck::AttentionParams p{n_heads, n_kv, hd, 1.f / std::sqrt(float(hd))};
  const TimeSpec ts{20, 3, 1, 2000, 10};
  json cases = json::array();
  for (int L : Ls)
    for (int B : Bs) {
      const int bps = L / bsz;
      const double bytes = double(B) * L * n_kv * hd * 2.0 * double(ck::dtype_size(pool_dt));
      json c = {{"B", B}, {"L", L}, {"kv_bytes_read", bytes}};
      double ms[2] = {0, 0};
      // Consecutive calls read disjoint slices of the pool (see kWorkingSet), each its own batch.
      const int64_t per = int64_t(B) * bps;
      const int64_t regions = std::clamp<int64_t>(int64_t(std::ceil(kWorkingSet / bytes)), 1, num_blocks / per);
      c["regions_cycled"] = regions;
      for (int paged = 1; paged >= 0; --paged) {
        const char* key = paged ? "paged" : "contiguous";
        json r;
        std::vector<std::unique_ptr<ck::KvBatchTensors>> idx;
        std::string ce = qe;
        if (ctx.past(0.95)) ce = "skipped: time budget";
        for (int64_t g = 0; g < regions && ce.empty(); ++g) {
          std::vector<int32_t> tables(static_cast<size_t>(per));
          for (int64_t i = 0; i < per; ++i) tables[size_t(i)] = paged ? perm[size_t(g * per + i)] : int32_t(g * per + i);
          std::vector<ck::KvSeq> seqs;
          for (int sq = 0; sq < B; ++sq)
            seqs.push_back({L - 1, 1, std::span<const int32_t>(tables.data() + size_t(sq) * bps, size_t(bps))});
          ck::KvBatchPlan plan;
          idx.push_back(std::make_unique<ck::KvBatchTensors>(be));
          ce = st_err(ck::plan_kv_batch(seqs, num_blocks, bsz, plan), "plan_kv_batch");
          if (ce.empty()) ce = st_err(idx.back()->upload(plan), "upload index tensors");
        }
        Timing t;
        if (ce.empty()) {
          ck::Tensor qv = q.t.row_slice(0, B), ov = out.t.row_slice(0, B);
          size_t call = 0;
          t = time_op(bs, ts, [&] {
            return st_err(be.attention(qv, layer, idx[call++ % idx.size()]->attention(), p, ov), "attention");
          });
          if (std::string se = st_err(be.synchronize(), "synchronize"); t.error.empty()) t.error = se;
          ce = t.error;
        }
        if (!ce.empty()) {
          r["status"] = ce.rfind("skipped", 0) == 0 ? ce : "error: " + ce;
          if (ce.rfind("skipped", 0) != 0) ctx.error("attention B=" + std::to_string(B) + " L=" + std::to_string(L) + " " + key + ": " + ce);
        } else {
          ms[paged] = t.median_ms;
          r = timing_json(t);
          r["status"] = "ok";
          r["gbps"] = bytes / (t.median_ms * 1e-3) / 1e9;
          if (copy_rw_gbps > 0) {
            r["fraction_of_limit"] = r["gbps"].get<double>() / copy_rw_gbps;
            r["meets_target"] = r["gbps"].get<double>() / copy_rw_gbps >= 0.70;
          }
        }
        const std::string shown = r["status"] == "ok" ? fmt("%10.2f us %7.0f GB/s", t.median_ms * 1e3, r["gbps"].get<double>())
                                                      : r["status"].get<std::string>();
        std::printf("attention B=%2d L=%5d %-10s: %s\n", B, L, key, shown.c_str());
        c[key] = r;
      }
      if (ms[0] > 0 && ms[1] > 0)
        c["paged_over_contiguous_time"] = {{"ratio", ms[1] / ms[0]}, {"paged_median_ms", ms[1]}, {"contiguous_median_ms", ms[0]}};
      cases.push_back(c);
    }
  j["cases"] = cases;
  j["status"] = "ok";
  return j;
}

}  // namespace cb::cuda_bench
