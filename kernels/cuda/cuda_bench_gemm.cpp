// cb_cuda_bench sections 2-4: device peaks (copy bandwidth, large raw cuBLASLt GEMMs), the cuda
// backend's matmul at llama-1b shapes, and the best cuBLASLt algorithm for the same shapes with the
// backend's ratio to it.
#include "cuda_bench.h"

namespace cb::cuda_bench {

// ---- 2. peaks: device-to-device copy bandwidth, large GEMMs ------------------------------------
json copy_peak(Ctx& ctx, cudaStream_t s, double& rw_gbps_best) {
  const size_t bytes = size_t(2) << 30;
  json j = {{"bytes", bytes}, {"method", "cudaMemcpyAsync device to device"}, {"warmups", 2}, {"reps", 10}};
  DevMem src, dst;
  std::string e = src.alloc(bytes);
  if (e.empty()) e = dst.alloc(bytes);
  if (e.empty()) e = cu_err(cudaMemsetAsync(src.p, 0x5a, bytes, s), "cudaMemsetAsync");
  Timing t;
  if (e.empty()) {
    TimeSpec ts{0, 2, 10, 10, 10};
    t = time_op(s, ts, [&] { return cu_err(cudaMemcpyAsync(dst.p, src.p, bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync"); });
    e = t.error;
  }
  if (!e.empty()) {
    ctx.error("d2d copy: " + e);
    j["status"] = "error: " + e;
    return j;
  }
  const double b = double(bytes);
  rw_gbps_best = 2 * b / (t.best_ms * 1e-3) / 1e9;
  j.update(timing_json(t));
  j["read_plus_written_gbps_best"] = rw_gbps_best;
  j["read_plus_written_gbps_median"] = 2 * b / (t.median_ms * 1e-3) / 1e9;
  j["copied_gbps_best"] = b / (t.best_ms * 1e-3) / 1e9;
  j["copied_gbps_median"] = b / (t.median_ms * 1e-3) / 1e9;
  j["status"] = "ok";
  std::printf("d2d copy 2 GiB: read+written %.0f GB/s best, %.0f median; copied %.0f GB/s best\n", rw_gbps_best,
              j["read_plus_written_gbps_median"].get<double>(), j["copied_gbps_best"].get<double>());
  return j;
}

json gemm_peaks(Ctx& ctx, Lt& lt) {
  json j = json::object();
  const TimeSpec ts{10, 2, 2, 50, 5};
  const std::tuple<const LtType*, int64_t> cases[] = {{&kBf16, 8192}, {&kInt8, 8192}, {&kTf32, 8192}, {&kFp32, 4096}};
  for (const auto& [ty, sz] : cases) {
    json rec;
    const double tf = lt_best(lt, *ty, sz, sz, sz, ts, rec);
    if (tf <= 0) ctx.error(std::string("gemm peak ") + ty->name + ": " + rec.value("status", std::string("?")));
    std::printf("gemm peak %-9s %5lld^3: %8.1f TFLOP/s (best of %zu algos)\n", ty->name, (long long)sz, tf,
                rec.contains("algos") ? rec["algos"].size() : size_t(0));
    j[ty->name] = rec;
  }
  return j;
}

// ---- 3. model-shape GEMMs through the backend --------------------------------------------------
json backend_matmuls(Ctx& ctx, ck::Backend& be, const std::vector<int64_t>& Ms, std::map<RateKey, double>& rates) {
  json cases = json::array(), checks = json::array();
  const auto bs = static_cast<cudaStream_t>(be.stream());
  const TimeSpec ts{20, 3, 1, 2000, 10};
  const int64_t Mmax = *std::max_element(Ms.begin(), Ms.end());
  std::mt19937 gen(ctx.seed);
  for (const Shape& sh : kShapes) {
    const int64_t N = sh.n, K = sh.k;
    auto record = [&](const Variant& v, int64_t M, json c) {
      c["variant"] = v.name;
      c["shape"] = sh.name;
      c["N"] = N;
      c["K"] = K;
      c["M"] = M;
      cases.push_back(std::move(c));
    };
    if (ctx.past(0.55)) {
      for (const Variant& v : kVariants)
        for (int64_t M : Ms) record(v, M, {{"status", "skipped: time budget"}});
      continue;
    }
    // Weights: mt19937(seed) top 24 bits scaled to [-1, 1), one stream over all shapes; bf16 and
    // int8 (the project's per-channel scheme) derived from the same f32 values.
    std::vector<float> wf(size_t(N * K));
    for (auto& f : wf) f = float(gen() >> 8) * (2.f / 16777216.f) - 1.f;
    std::vector<float> xh(size_t(Mmax * K));
    SplitMix xg{ctx.seed * 31ull + uint64_t(N * 7 + K)};
    for (auto& f : xh) f = xg.uniform();
    BeBuf x, y;
    std::string e = x.init(be, ck::DType::F32, {Mmax, K});
    if (e.empty()) e = y.init(be, ck::DType::F32, {Mmax, N});
    if (e.empty()) e = st_err(be.copy_from_host(x.t, xh.data()), "copy x");
    for (const Variant& v : kVariants) {
      if (!be.supports_matmul(v.dt, v.layout, v.act)) {
        for (int64_t M : Ms) record(v, M, {{"status", "unsupported"}});
        continue;
      }
      std::vector<uint16_t> wb;
      std::vector<int8_t> wq;
      std::vector<float> scales;
      ck::Weight hw;
      hw.layout = v.layout;
      hw.n = N;
      hw.k = K;
      hw.act_quant = v.act;
      double wbytes = double(N * K) * double(ck::dtype_size(v.dt));
      if (v.dt == ck::DType::F32) {
        hw.values = ck::Tensor(wf.data(), v.dt, {N, K});
      } else if (v.dt == ck::DType::BF16) {
        wb.resize(wf.size());
        for (size_t i = 0; i < wf.size(); ++i) wb[i] = ck::f32_to_bf16(wf[i]);
        hw.values = ck::Tensor(wb.data(), v.dt, {N, K});
      } else {
        wq.resize(wf.size());
        scales.resize(size_t(N));
        for (int64_t r = 0; r < N; ++r) scales[size_t(r)] = ck::int8::quantize_row(&wf[size_t(r * K)], K, &wq[size_t(r * K)]);
        hw.values = ck::Tensor(wq.data(), v.dt, {N, K});
        hw.scales = ck::Tensor(scales.data(), ck::DType::F32, {N});
        wbytes += 4.0 * double(N);
      }
      // M = 1 (weight-bandwidth bound) cycles through copies of the weight (see kWorkingSet);
      // larger M reuse copy 0, as the raw cuBLASLt reference of section 4 does.
      std::vector<ck::Weight> dws(size_t(std::clamp(std::ceil(kWorkingSet / wbytes), 1.0, 64.0)));
      std::string ve = e;
      for (auto& dw : dws)
        if (ve.empty()) ve = st_err(be.upload_weight(hw, dw), "upload_weight");
      if (ve.empty()) ve = st_err(be.synchronize(), "synchronize after upload");
      bool ran = false;
      for (int64_t M : Ms) {
        json c;
        if (!ve.empty()) {
          c["status"] = "error: " + ve;
        } else if (ctx.past(0.55)) {
          c["status"] = "skipped: time budget";
        } else {
          ck::Tensor xv = x.t.row_slice(0, M), yv = y.t.row_slice(0, M);
          const size_t ncopies = M == 1 ? dws.size() : 1;
          size_t call = 0;
          Timing t = time_op(bs, ts, [&] { return st_err(be.matmul(xv, dws[call++ % ncopies], yv), "matmul"); });
          if (std::string se = st_err(be.synchronize(), "synchronize"); t.error.empty()) t.error = se;
          if (!t.error.empty()) {
            c["status"] = "error: " + t.error;
          } else {
            ran = true;
            const double tf = 2.0 * double(M) * double(N) * double(K) / (t.median_ms * 1e-3) / 1e12;
            c = timing_json(t);
            c["status"] = "ok";
            c["tflops"] = tf;
            c["weight_bytes"] = wbytes;
            c["weight_copies_cycled"] = ncopies;
            if (M == 1) c["weight_gbps"] = wbytes / (t.median_ms * 1e-3) / 1e9;
            rates[{v.name, N, K, M}] = tf;
          }
        }
        const std::string st = c["status"].get<std::string>();
        if (st.rfind("error", 0) == 0) ctx.error(std::string("matmul ") + v.name + " " + sh.name + " M=" + std::to_string(M) + ": " + st);
        std::string shown = st;
        if (st == "ok") {
          shown = fmt("%10.2f us %8.2f TFLOP/s", c["median_ms"].get<double>() * 1e3, c["tflops"].get<double>());
          if (M == 1) shown += fmt(" %7.0f GB/s (weights)", c["weight_gbps"].get<double>());
        }
        std::printf("matmul %-16s %-7s N=%5lld K=%5lld M=%5lld: %s\n", v.name, sh.name, (long long)N, (long long)K,
                    (long long)M, shown.c_str());
        record(v, M, std::move(c));
      }
      // Sanity of the numbers: row 0 (the last run's, all runs share it), first <= 256 outputs, vs
      // a double dot product with the f32 weights (includes bf16/int8 rounding: NMSE ~1e-5..1e-4).
      if (ran) {
        const int64_t nc = std::min<int64_t>(N, 256);
        ck::Tensor row = y.t.row_slice(0, 1);
        row.shape[1] = nc;
        std::vector<float> got(static_cast<size_t>(nc));
        std::string ce = st_err(be.copy_to_host(got.data(), row), "copy_to_host y");
        if (ce.empty()) ce = st_err(be.synchronize(), "synchronize");
        json chk = {{"outputs", nc}, {"against", "f32 weights, double accumulation"}};
        if (!ce.empty()) {
          chk["status"] = "error: " + ce;
        } else {
          double num = 0, den = 0;
          for (int64_t c = 0; c < nc; ++c) {
            double ref = 0;
            for (int64_t kk = 0; kk < K; ++kk) ref += double(xh[size_t(kk)]) * wf[size_t(c * K + kk)];
            num += (got[size_t(c)] - ref) * (got[size_t(c)] - ref);
            den += ref * ref;
          }
          const double nmse = num / std::max(den, 1e-300);
          chk["nmse"] = std::isfinite(nmse) ? json(nmse) : json("non-finite");
          chk["status"] = std::isfinite(nmse) && nmse < 1e-2 ? "ok" : "suspect";
          if (chk["status"] != "ok") ctx.error(std::string("matmul ") + v.name + " " + sh.name + ": output check suspect");
        }
        chk.update({{"variant", v.name}, {"shape", sh.name}, {"N", N}, {"K", K}});
        checks.push_back(chk);
      }
    }
  }
  return {{"cases", cases}, {"output_checks", checks}};
}

// ---- 4. cuBLASLt best-algorithm reference and the ratios --------------------------------------
json lt_reference(Ctx& ctx, Lt& lt, const std::map<RateKey, double>& rates, bool have_backend) {
  const std::vector<int64_t> bf16_ms = ctx.quick ? std::vector<int64_t>{128, 4096} : std::vector<int64_t>{128, 1024, 4096};
  const std::vector<int64_t> int8_ms = ctx.quick ? std::vector<int64_t>{4096} : std::vector<int64_t>{1024, 4096};
  const TimeSpec ts{5, 1, 2, 200, 5};
  json gemms = json::array(), bf16_ratio = json::array(), int8_ratio = json::array();
  auto rate = [&](const char* v, int64_t N, int64_t K, int64_t M) {
    auto it = rates.find({v, N, K, M});
    return it == rates.end() ? 0.0 : it->second;
  };
  // One raw GEMM as the backend's op runs it: m = N (weight rows), n = M (tokens), k = K.
  auto raw = [&](const LtType& ty, const Shape& sh, int64_t M) {
    json rec = {{"type", ty.name}, {"m", sh.n}, {"n", M}, {"k", sh.k}, {"status", "skipped: time budget"}};
    const double best = ctx.past(0.75) ? 0 : lt_best(lt, ty, sh.n, M, sh.k, ts, rec);
    rec["shape"] = sh.name;
    if (best <= 0 && rec["status"] != "skipped: time budget")
      ctx.error(fmt("cublaslt %s %s M=%lld: ", ty.name, sh.name, (long long)M) + rec["status"].get<std::string>());
    gemms.push_back(rec);
    return best;
  };
  std::map<std::tuple<int64_t, int64_t, int64_t>, double> raw_bf16;
  for (const Shape& sh : kShapes)
    for (int64_t M : bf16_ms) {
      const double best = raw_bf16[{sh.n, sh.k, M}] = raw(kBf16, sh, M);
      const double be_tf = rate("bf16_act_bf16", sh.n, sh.k, M);
      json r = {{"shape", sh.name}, {"N", sh.n}, {"K", sh.k}, {"M", M}, {"target", 0.90},
                {"note", "backend time includes rounding x from f32 to bf16 (part of the op)"}};
      if (be_tf > 0) r["backend_bf16_tflops"] = be_tf;
      if (best > 0) r["cublaslt_best_bf16_tflops"] = best;
      if (be_tf > 0 && best > 0) {
        r["fraction"] = be_tf / best;
        r["meets_target"] = be_tf / best >= 0.90;
      } else {
        r["status"] = !have_backend ? "no backend" : be_tf <= 0 ? "backend rate missing" : "cublaslt rate missing";
      }
      std::printf("bf16 ref %-7s M=%5lld: cublasLt best %7.1f TFLOP/s, backend %7.1f -> %.3f\n", sh.name, (long long)M,
                  best, be_tf, best > 0 ? be_tf / best : 0.0);
      bf16_ratio.push_back(r);
    }
  for (const Shape& sh : kShapes)
    for (int64_t M : int8_ms) {
      const double best = raw(kInt8, sh, M), raw_b = raw_bf16[{sh.n, sh.k, M}];
      const double be_i8 = rate("w8a8", sh.n, sh.k, M), be_b = rate("bf16_act_bf16", sh.n, sh.k, M);
      json r = {{"shape", sh.name}, {"N", sh.n}, {"K", sh.k}, {"M", M}, {"target", 1.6}};
      if (be_i8 > 0) r["backend_w8a8_tflops"] = be_i8;
      if (be_b > 0) r["backend_bf16_tflops"] = be_b;
      if (be_i8 > 0 && be_b > 0) {
        r["backend_speedup"] = be_i8 / be_b;
        r["meets_target"] = be_i8 / be_b >= 1.6;
      }
      if (best > 0) r["cublaslt_int8_best_tflops"] = best;
      if (raw_b > 0) r["cublaslt_bf16_best_tflops"] = raw_b;
      if (best > 0 && raw_b > 0) r["cublaslt_speedup"] = best / raw_b;
      std::printf("int8 speedup %-7s M=%5lld: backend %.2fx (%.1f / %.1f), cublasLt %.2fx (%.1f / %.1f)\n", sh.name,
                  (long long)M, be_b > 0 ? be_i8 / be_b : 0.0, be_i8, be_b, raw_b > 0 ? best / raw_b : 0.0, best, raw_b);
      int8_ratio.push_back(r);
    }
  return {{"gemms", gemms}, {"backend_bf16_vs_cublaslt_best", bf16_ratio}, {"int8_speedup", int8_ratio},
          {"time_spec", {{"target_ms_per_algo", ts.target_ms}, {"warmups", ts.warmups}}}};
}

}  // namespace cb::cuda_bench
