#!/usr/bin/env bash
# The one prepared GPU check (issue 18), for a machine with an NVIDIA GPU such as the H200 lent
# for a few minutes: runs the cuda backend's tests, the conformance suite with the cuda backend
# beside ref and cpu, the GPU microbenchmarks (peaks measured on the device, GEMMs against the best
# cuBLASLt algorithm, paged decode attention against the copy bandwidth), greedy generation on
# cuda against cpu (same tokens), the engine bench on cuda, the NCCL sweep (one process per GPU
# under mpirun when there are several), and `claimbench run --quick --backend cuda` with its claims.
#   ci/gpu-check.sh [OUT_DIR]        (default: results/gpu-check/<UTC time>)
# Binaries: from .gpu/bundle.tar.xz when present (ci/gpu-bundle.sh packs the cuda build made on a
# machine with the project's packages), else built here with the cuda preset.
# Output: OUT_DIR/summary.txt (one line per step: OK / SKIP / FAIL with seconds), steps.json, each
# step's log and JSON. Exit 0 when every step passed, 1 when one failed, 77 when no GPU is usable.
# shellcheck disable=SC2317  # the step functions run indirectly, through step() and bash -c
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
out=${1:-$root/results/gpu-check/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
build=$root/build/cuda
t_start=$(date +%s)
log() { echo "gpu-check [$(($(date +%s) - t_start))s]: $*" | tee -a "$out/summary.txt"; }
steps_json="$out/steps.json"
echo "[" >"$steps_json"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >"$out/nvidia-smi.txt" 2>&1; then
  log "SKIP: nvidia-smi missing or failing: no usable GPU here"
  echo "]" >>"$steps_json"
  exit 77
fi
nvidia-smi -q >"$out/nvidia-smi-q.txt" 2>&1 || true
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
log "$gpus GPU(s): $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1); $(nproc) CPUs"

# ---- binaries -------------------------------------------------------------------------------------
if [ -f "$root/.gpu/bundle.tar.xz" ]; then
  tar -C "$root" -xJf "$root/.gpu/bundle.tar.xz"
  log "binaries from .gpu/bundle.tar.xz (commit $(cat "$root/.gpu-commit" 2>/dev/null), $(wc -l <"$root/.gpu-dirty" 2>/dev/null || echo ?) uncommitted paths at packing)"
  # The tests know their source and build folders by the absolute paths they were built at.
  built_root=$(cat "$root/.gpu-root" 2>/dev/null)
  if [ -n "$built_root" ] && [ "$built_root" != "$root" ] && [ ! -e "$built_root" ]; then
    mkdir -p "$(dirname "$built_root")" && ln -s "$root" "$built_root" && log "linked $built_root -> $root"
  fi
  libs=$root/.gpu-lib
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [ -d "$d" ] && libs=$libs:$d; done
  # The toolkit's libraries may live only in the Python packages (nvidia-cublas, nvidia-nccl).
  for d in $(find / -xdev -path '*/nvidia/*/lib' -type d 2>/dev/null | grep -E 'cublas|nccl|cu13' | head -n 8); do libs=$libs:$d; done
  for l in libstdc++.so.6 libgcc_s.so.1 libgomp.so.1; do
    ldconfig -p | grep -q "$l" || { libs=$libs:$root/.gpu-lib-fallback; log "using the bundled $l"; }
  done
  # Only our binaries see the bundled libraries (python3 and nvidia-smi keep the system's).
  export CB_GPU_LIBS=$libs
else
  log "building the cuda preset ($(nproc) jobs)"
  if ! { cmake --preset cuda >"$out/configure.log" 2>&1 &&
         cmake --build --preset cuda -j "$(nproc)" --target cb_cuda_tests cb_conformance_tests cb_cuda_bench refengine cb_comm_bench claimbench \
           >"$out/build.log" 2>&1; }; then
    log "FAIL: the cuda build failed (configure.log, build.log)"
    echo "]" >>"$steps_json"
    exit 1
  fi
fi

# ---- steps ----------------------------------------------------------------------------------------
status=0
first=1
# step NAME TIMEOUT_S CMD...: runs CMD with its output in NAME.log; exit 77 is SKIP.
# CB_GPU_CHECK_ONLY=a,b: run only the steps named (a rerun of what failed, on a short lease).
step() {
  local name=$1 limit=$2
  shift 2
  if [ -n "${CB_GPU_CHECK_ONLY:-}" ] && [[ ",$CB_GPU_CHECK_ONLY," != *",$name,"* ]]; then
    log "$name: not selected (CB_GPU_CHECK_ONLY)"
    return 0
  fi
  local t0 rc verdict
  t0=$(date +%s)
  local lib_env=(env "LD_LIBRARY_PATH=${CB_GPU_LIBS:-}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  [ -n "${CB_GPU_LIBS:-}" ] || lib_env=()
  if [ "$(type -t "$1")" = function ]; then  # a function of this script: run it in a child bash
    timeout --kill-after=10 "$limit" "${lib_env[@]}" bash -c '"$@"' _ "$@" >"$out/$name.log" 2>&1
  else
    timeout --kill-after=10 "$limit" "${lib_env[@]}" "$@" >"$out/$name.log" 2>&1
  fi
  rc=$?
  case $rc in
    0) verdict=OK ;;
    77) verdict=SKIP ;;
    124|137) verdict=FAIL; echo "(timed out after ${limit}s)" >>"$out/$name.log" ;;
    *) verdict=FAIL ;;
  esac
  [ "$verdict" = FAIL ] && status=1
  log "$name: $verdict (exit $rc, $(($(date +%s) - t0))s)"
  [ "$first" = 1 ] || echo "," >>"$steps_json"
  first=0
  printf '{"step": "%s", "verdict": "%s", "exit": %d, "seconds": %d}' "$name" "$verdict" "$rc" "$(($(date +%s) - t0))" >>"$steps_json"
  pack
}
# CB_GPU_CHECK_PACK=FILE.tgz: the output folder packed after every step, so a run cut short by
# its lease still returns what it measured.
pack() { [ -z "${CB_GPU_CHECK_PACK:-}" ] || tar -C "$(dirname "$out")" -czf "$CB_GPU_CHECK_PACK" "$(basename "$out")"; }

# The machine's description and fingerprint (the key results/published folders are named by).
hardware() {
  "$build/harness/claimbench" hardware >"$out/hardware.json" && "$build/harness/claimbench" hardware --fingerprint
}
export build out
export -f hardware
[ -x "$build/harness/claimbench" ] && step hardware 60 hardware
step cuda_tests 90 "$build/kernels/cuda/cb_cuda_tests" --gtest_output=json:"$out/cuda_tests.json"
step cuda_bench 120 env CB_CUDA_LOG_ALGOS=1 "$build/kernels/cuda/cb_cuda_bench" --budget-s 80 --json "$out/cuda_bench.json"

# Greedy generation on the embedded default model: cuda must pick the same tokens as cpu.
gen() {
  "$build/reference/refengine" generate --backend "$1" --prompt "The quick brown fox jumps over" --max-tokens 48 \
    --ignore-eos --temperature 0 --stats-json "$out/generate_$1.json"
}
same_tokens() {
  gen cpu && gen cuda && env -u LD_LIBRARY_PATH python3 - "$out/generate_cpu.json" "$out/generate_cuda.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
ta, tb = a.get("tokens"), b.get("tokens")
print("cpu tokens: ", ta)
print("cuda tokens:", tb)
sys.exit(0 if ta is not None and ta == tb else 1)
PY
}
export -f gen same_tokens
step generate_cuda_equals_cpu 90 same_tokens
# The engine bench on cuda: tokens/s and GFLOP/s only; its peaks are the host CPU's, so the
# fractions must be left out with the reason (not "5722% of peak").
engine_bench() {
  "$build/reference/refengine" bench --backend cuda --repetitions 2 --out "$out/engine_bench_cuda.json" &&
    env -u LD_LIBRARY_PATH python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); r=e["ratios"]; print(e.get("limits_not_applicable")); sys.exit(not e.get("limits_not_applicable") or r["prefill_peak_fraction"] is not None or r["decode_bw_fraction"] is not None)' \
      "$out/engine_bench_cuda.json"
}
export -f engine_bench
step engine_bench_cuda 120 engine_bench
# Decode steps replayed as CUDA graphs (--step-graphs): greedy tokens must equal the plain cuda
# run's (generate_cuda.json above), at least one step recorded and replayed, none failed; then
# decode tokens/s with and without graphs, same run (the launch cost graphs save).
step_graphs() {
  "$build/reference/refengine" generate --backend cuda --step-graphs --prompt "The quick brown fox jumps over" --max-tokens 48 \
    --ignore-eos --temperature 0 --stats-json "$out/generate_cuda_graphs.json" || return 1
  env -u LD_LIBRARY_PATH python3 - "$out/generate_cuda.json" "$out/generate_cuda_graphs.json" <<'PY' || return 1
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
g = b.get("step_graphs", {})
print("plain tokens: ", a.get("tokens"))
print("graph tokens: ", b.get("tokens"))
print("step graphs:", g)
sys.exit(0 if a.get("tokens") is not None and a.get("tokens") == b.get("tokens") and g.get("captures", 0) >= 1
         and g.get("replays", 0) >= 1 and g.get("failed_captures", 1) == 0 else 1)
PY
  for mode in plain graphs; do
    "$build/reference/refengine" bench --backend cuda --repetitions 2 --decode-tokens 32 --batch-sizes 1,16 \
      $([ $mode = graphs ] && echo --step-graphs) --out "$out/engine_bench_cuda_$mode.json" >/dev/null || return 1
  done
  env -u LD_LIBRARY_PATH python3 - "$out/engine_bench_cuda_plain.json" "$out/engine_bench_cuda_graphs.json" <<'PY'
import json, sys
p, g = (json.load(open(f)) for f in sys.argv[1:3])
print("decode batch 1 tok/s: plain %.1f, graphs %.1f" % (p["decode"]["tokens_per_s"]["median"], g["decode"]["tokens_per_s"]["median"]))
for rp, rg in zip(p["batched_decode"]["rows"], g["batched_decode"]["rows"]):
    print("decode batch %d tok/s: plain %.1f, graphs %.1f" % (rp["batch"], rp["tokens_per_s"]["median"], rg["tokens_per_s"]["median"]))
print("step graphs:", g.get("step_graphs"))
sys.exit(0 if g.get("step_graphs", {}).get("failed_captures", 1) == 0 else 1)
PY
}
export -f step_graphs
step step_graphs_cuda 120 step_graphs
# llama-1b shapes (seeded random bf16 weights, 2.2 GB): greedy tokens on cuda against cpu, then
# the engine bench on cuda (prefill, decode at batch 1/16/64): tokens/s and GFLOP/s only (the
# fractions against the host's peaks are left out on a device backend).
llama1b() {
  local model=/tmp/cb-llama-1b-bf16
  [ -f "$model/config.json" ] || "$build/reference/refengine" init --preset llama-1b --seed 7 --dtype bf16 --out "$model" || return 1
  for be in cpu cuda; do
    "$build/reference/refengine" generate --model "$model" --backend "$be" --prompt "The quick brown fox" --max-tokens 8 \
      --ignore-eos --temperature 0 --stats-json "$out/llama1b_generate_$be.json" || return 1
  done
  env -u LD_LIBRARY_PATH python3 -c 'import json,sys; a,b=(json.load(open(p))["tokens"] for p in sys.argv[1:3]); print("cpu", a); print("cuda", b); sys.exit(a != b)' \
    "$out/llama1b_generate_cpu.json" "$out/llama1b_generate_cuda.json" || return 1
  "$build/reference/refengine" bench --model "$model" --backend cuda --bf16-activations --batch-sizes 1,16,64 --repetitions 2 \
    --out "$out/llama1b_bench_cuda.json"
}
export -f llama1b
step conformance 150 "$build/suites/cb_conformance_tests" --gtest_output=json:"$out/conformance.json"

sweep() {  # name, then the command prefix (empty for one process)
  local name=$1
  shift
  "$@" "$build/kernels/comm/cb_comm_bench" --backend nccl --ops all_reduce,all_gather,broadcast -b 8 -e 256M --target-ms 20 \
    --json "$out/$name.json"
}
export -f sweep
step nccl_1gpu 60 sweep nccl_1gpu
step llama1b_cuda 240 llama1b
root_flag=()
[ "$(id -u)" = 0 ] && root_flag=(--allow-run-as-root)
if [ "$gpus" -gt 1 ] && command -v mpirun >/dev/null 2>&1; then
  step "nccl_${gpus}gpu" 240 sweep "nccl_${gpus}gpu" mpirun -n "$gpus" "${root_flag[@]}"
fi
# Tensor parallelism over NCCL on the cuda backend (one process per GPU): rank 0 reruns without
# it and compares greedy tokens (exact) and logits (--verify-tp). NCCL refuses two ranks on one
# GPU, so one GPU is SKIP with the reason.
tp_nccl() {
  if [ "$gpus" -lt 2 ] || ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP: tensor parallelism over NCCL needs >= 2 GPUs and mpirun (GPUs: $gpus)"
    return 77
  fi
  local rf=()  # arrays do not reach an exported function's shell: made here
  [ "$(id -u)" = 0 ] && rf=(--allow-run-as-root)
  mpirun -n 2 "${rf[@]}" "$build/reference/refengine" generate --backend cuda --tp 2 --tp-comm nccl \
    --prompt "The quick brown fox jumps over" --max-tokens 16 --ignore-eos --verify-tp --stats-json "$out/tp_nccl.json"
}
export -f tp_nccl
export gpus
step tp_nccl 120 tp_nccl
# The harness's suites on the cuda backend, with the claim table in the step's log: kernels runs
# cb_cuda_bench (tc-speedup, int8-speed against FP32 on the GPU), load divides MFU / MBU by the
# GPU's peaks measured in the run (util-busy) and samples its board power (energy-qps); scaling
# measures MPI ranks on CPUs and is left out. Last, so a cut-off run still returns every step above.
# --timeout-scale 0.3: a suite that hangs on the GPU ends as TIMEOUT within this step's limit and
# the suites after it still run.
step claimbench_quick_cuda 360 "$build/harness/claimbench" run --quick --backend cuda --suite kernels,engine,accuracy,load,cost \
  --timeout-scale 0.3 \
  --out "$out/runs" --check --allow-fail
echo "]" >>"$steps_json"
log "results in $out (exit $status)"
pack
exit $status
