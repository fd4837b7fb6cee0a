// The conformance driver shared by the op tests (test_ops.cpp, test_matmul_lowp.cpp): the
// backends under test (the cpu backend once per code path this machine can run), the ref oracle,
// and check_cases(), which runs each case on ref and on every backend under test with the same
// seed and compares the outputs by NMSE against the case's limit, with NaN/Inf checks (outputs are
// poisoned with NaN before each call, so an unwritten element fails). The cases themselves live in
// kernels/testing (cb/kernels/testing/op_cases.h), where cb_kernel_bench times the same ones.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cb/kernels/testing/op_cases.h"

namespace cb::conformance {

using namespace kernels::testing;  // the cases and their helpers (Buf, Rng, error_stats, ...)
using kernels::StatusCode;

// ------------------------------------------------------------------------------------------------
// Backends under test
// ------------------------------------------------------------------------------------------------

struct UnderTest {
  std::string label;  // "cpu[avx2]", "cuda", ...
  std::unique_ptr<Backend> be;
  // Runs only cases with low-precision activations (act_quant != None): the paths that differ
  // between this label and the next ISA level up (VNNI, BF16); everything else is shared.
  bool act_quant_only = false;
};

// Builds the cpu backend with some of its environment knobs set (empty value: unset), restoring
// the variables afterwards; the backend reads them once, at construction.
inline std::unique_ptr<Backend> make_cpu_with(std::initializer_list<std::pair<const char*, std::string>> vars) {
  std::vector<std::pair<const char*, std::optional<std::string>>> saved;
  for (const auto& [var, value] : vars) {
    const char* old = std::getenv(var);
    saved.emplace_back(var, old ? std::optional<std::string>(old) : std::nullopt);
    if (value.empty()) unsetenv(var);
    else setenv(var, value.c_str(), 1);
  }
  auto be = kernels::make_backend("cpu");
  for (const auto& [var, old] : saved) {
    if (old) setenv(var, old->c_str(), 1);
    else unsetenv(var);
  }
  return be;
}
inline std::unique_ptr<Backend> make_cpu_with(const char* var, const std::string& value) { return make_cpu_with({{var, value}}); }

inline std::vector<UnderTest>& backends_under_test() {
  static std::vector<UnderTest> list = [] {
    std::vector<UnderTest> out;
    for (const auto& name : kernels::available_backends()) {
      if (name == "ref") continue;
      const char* forced = std::getenv("CB_CPU_ISA");
      if (name == "cpu" && (forced == nullptr || *forced == '\0')) {
        // Each code path: $CB_CPU_ISA picks a lower ISA level (levels the machine lacks fall back
        // to the best it has, so they still run); $CB_CPU_PACK_WEIGHTS=0 leaves dense f32/bf16
        // weights row-major for the GEMV-style kernel instead of the packed one, and with
        // $CB_CPU_ONEDNN_MIN_M=1 too every f32 matmul, whatever its M, goes through oneDNN.
        // avx512 (no VNNI/BF16) and avx512_vnni (no BF16) differ from the best level only in the
        // int8 and bf16 GEMMs, so they run only those cases.
        out.push_back({"cpu", make_cpu_with("CB_CPU_ISA", "")});
        out.push_back({"cpu[avx512_vnni]", make_cpu_with("CB_CPU_ISA", "avx512_vnni"), true});
        out.push_back({"cpu[avx512]", make_cpu_with("CB_CPU_ISA", "avx512"), true});
        out.push_back({"cpu[avx2]", make_cpu_with("CB_CPU_ISA", "avx2")});
        out.push_back({"cpu[scalar]", make_cpu_with("CB_CPU_ISA", "scalar")});
        out.push_back({"cpu[unpacked]", make_cpu_with("CB_CPU_PACK_WEIGHTS", "0")});
        out.push_back({"cpu[avx2,unpacked]", make_cpu_with({{"CB_CPU_ISA", "avx2"}, {"CB_CPU_PACK_WEIGHTS", "0"}})});
        out.push_back({"cpu[onednn]", make_cpu_with({{"CB_CPU_ONEDNN_MIN_M", "1"}, {"CB_CPU_PACK_WEIGHTS", "0"}})});
      } else {
        out.push_back({name, kernels::make_backend(name)});
      }
    }
    return out;
  }();
  return list;
}

inline Backend& ref_backend() {
  static std::unique_ptr<Backend> ref = kernels::make_backend("ref");
  return *ref;
}

// ------------------------------------------------------------------------------------------------
// The driver
// ------------------------------------------------------------------------------------------------

using Cases = std::vector<std::unique_ptr<OpCase>>;

template <class C, class... A>
void add_case(Cases& cases, A&&... args) {
  cases.push_back(std::make_unique<C>(std::forward<A>(args)...));
}

// Runs every case on ref and on each backend under test with seed base_seed + index. Prints one
// summary line per backend (cases run, worst NMSE against the limit).
inline void check_cases(const char* what, const Cases& cases, uint32_t base_seed) {
  struct Worst {
    int run = 0, skipped = 0;
    double nmse = 0;
    double ratio = 0;  // worst nmse / limit
    std::string at;
  };
  std::map<std::string, Worst> worst;
  for (size_t i = 0; i < cases.size(); ++i) {
    const OpCase& c = *cases[i];
    const uint32_t seed = base_seed + static_cast<uint32_t>(i);
    std::vector<float> want;
    const Status rs = c.run(ref_backend(), seed, want);
    ASSERT_TRUE(rs.ok()) << "ref " << c.name() << " seed=" << seed << ": " << rs.message;
    for (auto& ut : backends_under_test()) {
      if (ut.act_quant_only && c.act() == kernels::ActQuant::None) continue;
      Worst& w = worst[ut.label];
      std::vector<float> got;
      const bool supported = c.op() == kernels::Op::MatMul ? ut.be->supports_matmul(c.dtype(), c.layout(), c.act())
                                                           : ut.be->supports(c.op(), c.dtype(), c.layout());
      if (!supported) {
        const Status s = c.run(*ut.be, seed, got);
        EXPECT_EQ(s.code, StatusCode::Unsupported)
            << ut.label << " " << c.name() << ": supports() says no, so the op must return Unsupported";
        ++w.skipped;
        continue;
      }
      const Status s = c.run(*ut.be, seed, got);
      ++w.run;
      if (!s.ok()) {
        ADD_FAILURE() << ut.label << " " << c.name() << " seed=" << seed << ": status " << int(s.code) << " "
                      << s.message;
        continue;
      }
      const ErrorStats e = error_stats(got, want);
      const bool ok = !e.size_mismatch && e.nonfinite == 0 && e.nmse <= c.max_nmse();
      if (!ok) {
        std::ostringstream os;
        os << ut.label << " " << c.name() << " seed=" << seed << ": NMSE " << e.nmse << " (limit " << c.max_nmse()
           << "), max |diff| " << e.max_abs;
        if (e.max_abs_at >= 0)
          os << " at [" << e.max_abs_at << "] (got " << got[size_t(e.max_abs_at)] << ", want "
             << want[size_t(e.max_abs_at)] << ")";
        if (e.nonfinite)
          os << ", " << e.nonfinite << " NaN/Inf outputs, first at [" << e.first_nonfinite << "] (want "
             << want[size_t(e.first_nonfinite)] << ")";
        if (e.size_mismatch) os << ", output size " << got.size() << " vs " << want.size();
        ADD_FAILURE() << os.str();
      }
      const double ratio = c.max_nmse() > 0 ? e.nmse / c.max_nmse() : (e.nmse > 0 ? 1e300 : 0);
      if (ratio >= w.ratio) {
        w.ratio = ratio;
        w.nmse = e.nmse;
        w.at = c.name();
      }
    }
  }
  for (const auto& [label, w] : worst)
    std::printf("  %-10s %-16s %4d cases (%d unsupported)  worst NMSE %.2e  %s\n", what, label.c_str(), w.run,
                w.skipped, w.nmse, w.at.c_str());
}

}  // namespace cb::conformance
