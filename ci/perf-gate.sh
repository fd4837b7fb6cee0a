#!/usr/bin/env bash
# Performance gate for CI, honest on whatever machine it finds itself on.
#
#  1. Baseline mode: the gate's matmul microbenchmarks run here and are compared with the committed
#     baseline of THIS machine class (results/baselines/<fingerprint>/kernels-gate; the fingerprint
#     covers CPU vendor, family, model, stepping, microcode, ISA flags, cores, threads and
#     hypervisor), on same-run ratios only (cpu vs the ref oracle, cpu vs oneDNN at M=128).
#  2. No baseline for this machine class: baseline mode says SKIP with the reason (never FAIL on a
#     machine difference, never a silent PASS), and the gate runs in A/B mode instead: the base
#     commit (CB_GATE_BASE_REF, else ci/gate-base-ref) is built here and its benchmarks run
#     interleaved (AB, BA, ...) with this build's in the same job, judged by the U test.
#
#   ci/perf-gate.sh            gate (baseline mode, else A/B)
#   ci/perf-gate.sh --ab       A/B mode only
#   ci/perf-gate.sh --update   (re)make this machine class's baseline; commit it
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CLAIMBENCH:-build/default/harness/claimbench}
root=results/baselines
name=kernels-gate
# Keep in sync with the gate self-test (suites/gate/gate_selftest.sh uses a subset).
# M=16 is batched decode; M=128 the K-sliced GEMM; f32 weights are packed at upload (outer-product
# tiles), f32rowmajor is the same weight left row-major (the dot-product GEMV tiles, which also run
# f16/int8 weights); bf16dot and w8a8 the dot-product paths, w8a8 beside oneDNN's integer GEMM.
# The oneDNN peers are its BLAS calls and its matmul primitive (W reordered once: the stronger);
# a ratio divides by the faster of the two in each repetition. Paged attention on shuffled blocks
# and on the engine allocator's placement (the harness passes its tables). W8A8 packed into k-quad
# panels (VNNI) against the same weight row-major on the down_proj shape, where the two differ
# most (1.7-2.1x at one thread here; 1.3-1.6x at K=N=2048, inside the threshold), and the f32
# packing likewise there at M=16 (about 1.6x; 1.2-1.35x at K=N=2048, where leaving f32 row-major
# moved the ratio only 18-27%, inside the threshold).
filter='^matmul/cpu/(f32|f32rowmajor|w8a8|w8a8rowmajor)/K5632_N2048/M(16|128)/|^matmul/(cpu|ref)/f32/K512_N512/M8/|^matmul/(cpu|onednn_sgemm|onednn_matmul)/f32/K2048_N2048/M(1|16|128)/|^matmul/cpu/f32rowmajor/K2048_N2048/M(16|128)/|^matmul/cpu/(bf16|int8pc|bf16dot|w8a8)/K2048_N2048/M(16|128)/|^matmul/(onednn_s8s8|onednn_matmul)/w8a8/K2048_N2048/M128/|^paired/attention/cpu/f32/H32_KV4_D64_B16(_given_tables)?_vs_contiguous/decode_ctx4096_S8/M8/'
mode=auto
case "${1:-}" in
  "") ;;
  --update) mode=update ;;
  --ab) mode=ab ;;
  *) echo "usage: ci/perf-gate.sh [--update|--ab]" >&2; exit 2 ;;
esac

[ -x "$bin" ] || { echo "perf-gate: $bin not built (run ci/test.sh or cmake --build --preset default)" >&2; exit 2; }
# One thread on both sides: the figures then measure the kernels, not how many cores the shared
# host lends this VM at that moment (2-thread timings swing 2x here from run to run).
export OMP_NUM_THREADS=1
runs=build/perf-gate/runs

ab() {
  local ref=${CB_GATE_BASE_REF:-$(grep -v '^#' ci/gate-base-ref | head -n 1)}
  echo "perf-gate: A/B mode: base $ref (built here) vs this build, interleaved on this machine"
  # Threshold 15%: back-to-back A/A runs of these kernels here moved by at most 6.5% (interleaving
  # cancels the machine's drift); a planted 2x slowdown moves them by 50%. Not gated: the M=1
  # ratio against oneDNN (two memory-bound kernels whose ratio moved 10% between identical
  # builds) and oneDNN's own rates (not our code).
  "$bin" gate --ab --base "$ref" --env OMP_NUM_THREADS=1 --bench-filter "$filter" --rounds 6 --repetitions 3 \
    --noise timing,ratio,exact --threshold 15% \
    --metric 'kernels.bench.matmul.cpu.*,kernels.bench.matmul.ref.*,kernels.matmul.cpu_vs_ref.speedup,kernels.matmul.cpu_vs_onednn.M16,kernels.matmul.cpu_vs_onednn.M128,kernels.matmul.w8a8_vs_onednn.M128,kernels.matmul.int8w_vs_f32.*,kernels.matmul.bf16w_vs_f32.*,kernels.matmul.bf16_vs_f32.*,kernels.matmul.packed_vs_rowmajor.*,kernels.matmul.w8a8_packed_vs_rowmajor.*' \
    --require kernels.matmul.cpu_vs_ref.speedup --json build/perf-gate/ab-gate.json
}

if [ "$mode" = ab ]; then ab; exit $?; fi

new=$("$bin" run --suite kernels --quick --repetitions 10 --bench-filter "$filter" --out "$runs" | tail -n 1)

if [ "$mode" = update ]; then
  fp=$("$bin" hardware --fingerprint)
  dest="$root/$fp/$name"
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  cp -r "$new" "$dest"
  rm -f "$dest/run.log"
  echo "perf-gate: baseline for machine class $fp replaced with $new -> $dest (commit it)"
  exit 0
fi

# Gated: the optimized cpu matmul against the oracle (K=N=512, M=8) and against oneDNN at M=16
# (batched decode) and M=128 (the K-sliced GEMM), the packed f32 kernel against the row-major one
# at M=16 and M=128 and on the down_proj shape at M=16 (the packing's gain; a regression in either
# kernel moves it), W8A8 against oneDNN's integer GEMM at M=128, the BF16-dot GEMM against our
# f32 GEMM at M=128, and paged attention against the same kernel on a contiguous cache at 4K
# context, on shuffled blocks and on the engine allocator's placement.
# Not gated, only recorded: the M=1 ratio against oneDNN (both sides are memory-bound and this
# host's bandwidth drifts: 1.1x-2.3x between back-to-back runs) and the weight-only int8 / bf16 ratios.
# Observed spread of the gated ratios in back-to-back runs here: about 10-20%; threshold 30%.
gated='kernels.matmul.cpu_vs_ref.speedup,kernels.matmul.cpu_vs_onednn.M16,kernels.matmul.cpu_vs_onednn.M128,kernels.matmul.packed_vs_rowmajor.M16,kernels.matmul.packed_vs_rowmajor.M128,kernels.matmul.packed_vs_rowmajor.K5632_N2048.M16,kernels.matmul.w8a8_vs_onednn.M128,kernels.matmul.bf16_vs_f32.M128,kernels.matmul.w8a8_packed_vs_rowmajor.K5632_N2048.M16,kernels.matmul.w8a8_packed_vs_rowmajor.K5632_N2048.M128,kernels.attention.paged_vs_contiguous.ctx4096,kernels.attention.paged_vs_contiguous.ctx4096.engine_placement'
rc=0
"$bin" gate "$new" --baselines "$root" --name "$name" --suite kernels --noise ratio,exact --threshold 30% \
  --metric "$gated" --require "$gated" --json "$new/gate.json" || rc=$?
case $rc in
  0) exit 0 ;;
  77) echo "perf-gate: baseline mode SKIPPED (reason above); falling back to the A/B mode"; ab ;;
  *) exit "$rc" ;;
esac
