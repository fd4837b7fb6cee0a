#!/usr/bin/env bash
# One-shot GPU check, for a machine with an NVIDIA GPU (e.g. an H200 lent for a few minutes):
# builds the collectives with CUDA + NCCL, runs the nccl-tests-style sweep (8 B .. 256 MiB) on one
# GPU, and on every GPU under mpirun when there are several, and writes the results.
#   ci/gpu-check.sh [OUT_DIR]        (default: results/gpu-check/<UTC time>)
# Output: OUT_DIR/nvidia-smi.txt, nccl_1gpu.{txt,json}, nccl_<n>gpu.{txt,json} (n > 1), summary.txt.
# Exit 0 when every sweep ran with #wrong = 0; 1 on a wrong element or a failed step; 77 when no
# GPU is usable (the reason is printed).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
out=${1:-$root/results/gpu-check/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
build=${CB_GPU_BUILD_DIR:-$root/build/gpu-check}
jobs=$(nproc)
log() { echo "gpu-check: $*" | tee -a "$out/summary.txt"; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >"$out/nvidia-smi.txt" 2>&1; then
  log "SKIP: nvidia-smi missing or failing: no usable GPU here"
  exit 77
fi
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
log "$gpus GPU(s): $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -n 1)"

# Build only what the check needs. The project's CMake first; when the machine lacks a package
# the full configure needs, compile the collectives directly (they need only CUDA, NCCL, CLI11
# and nlohmann-json headers).
bench=""
if cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCB_ENABLE_CUDA=ON -DCB_BUILD_BENCHMARKS=OFF \
     >"$out/configure.log" 2>&1 &&
   cmake --build "$build" -j "$jobs" --target cb_comm_bench >"$out/build.log" 2>&1; then
  bench=$build/kernels/comm/cb_comm_bench
else
  log "cmake build failed (see configure.log / build.log); compiling cb_comm_bench directly"
  cuda=${CUDA_HOME:-/usr/local/cuda}
  mpi_flags=()
  if command -v mpicxx >/dev/null 2>&1; then
    # shellcheck disable=SC2207  # the wrapper's flags are meant to split into words
    mpi_flags=(-DCB_COMM_HAVE_MPI=1 "-DCB_MPIEXEC=\"$(command -v mpirun)\"" -DCB_MPIEXEC_IS_OPENMPI=1 $(mpicxx --showme:compile) $(mpicxx --showme:link))
    mpi_src=kernels/comm/comm_mpi.cpp
  fi
  mkdir -p "$build"
  # shellcheck disable=SC2086  # ${mpi_src:-} is one file or nothing
  if c++ -std=c++20 -O2 -o "$build/cb_comm_bench" -Ikernels/comm/include -I"$cuda/include" -DCB_COMM_HAVE_NCCL=1 \
       kernels/comm/comm.cpp kernels/comm/comm_threads.cpp kernels/comm/comm_launch.cpp kernels/comm/comm_sweep.cpp \
       kernels/comm/comm_nccl.cpp ${mpi_src:-} kernels/comm/comm_bench.cpp \
       -L"$cuda/lib64" -Wl,-rpath,"$cuda/lib64" -lnccl -lcudart -lpthread "${mpi_flags[@]}" >>"$out/build.log" 2>&1; then
    bench=$build/cb_comm_bench
  else
    log "FAIL: could not build cb_comm_bench (build.log)"
    exit 1
  fi
fi

status=0
sweep() {  # name, then the command prefix (empty for one process)
  local name=$1; shift
  "$@" "$bench" --backend nccl --ops all_reduce,all_gather,broadcast -b 8 -e 256M --target-ms 20 \
    --json "$out/$name.json" | tee "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  case $rc in
    0) log "$name: OK ($(grep -c '^   all_reduce' "$out/$name.txt") all-reduce sizes, #wrong 0)";;
    77) log "$name: SKIP: $(grep -m1 '^SKIP' "$out/$name.txt")"; [ "$status" = 0 ] && status=77;;
    *) log "$name: FAIL (exit $rc)"; status=1;;
  esac
}
sweep nccl_1gpu
if [ "$gpus" -gt 1 ] && command -v mpirun >/dev/null 2>&1; then
  root_flag=()
  [ "$(id -u)" = 0 ] && root_flag=(--allow-run-as-root)
  sweep "nccl_${gpus}gpu" mpirun -n "$gpus" "${root_flag[@]}"
fi
log "results in $out"
exit $status
