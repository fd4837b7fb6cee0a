#!/usr/bin/env bash
# Packs the cuda build for a GPU machine that lacks this project's Debian packages (the lent H200
# runs an Ubuntu image with the CUDA toolkit and nothing else of ours): builds the targets
# ci/gpu-check.sh runs with the cuda preset, then puts them, at their build-tree paths, with the
# shared libraries they need beyond the C runtime and the CUDA toolkit, into one archive.
#   ci/gpu-bundle.sh [OUT_DIR]     (default: .gpu; writes OUT_DIR/bundle.tar.xz)
# ci/gpu-check.sh unpacks OUT_DIR/bundle.tar.xz when it is there instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.gpu}
build=build/cuda
targets=(cb_cuda_tests cb_conformance_tests cb_cuda_bench refengine cb_comm_bench claimbench)
cmake --preset cuda >/dev/null
cmake --build --preset cuda -j "$(nproc)" --target "${targets[@]}"
bins=("$build/kernels/cuda/cb_cuda_tests" "$build/suites/cb_conformance_tests" "$build/kernels/cuda/cb_cuda_bench"
      "$build/reference/refengine" "$build/kernels/comm/cb_comm_bench" "$build/harness/claimbench")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for b in "${bins[@]}"; do
  mkdir -p "$stage/$(dirname "$b")"
  cp "$b" "$stage/$b"
  strip --strip-debug "$stage/$b"
done
# Libraries: everything ldd resolves except glibc's own, the CUDA driver and toolkit (the GPU
# machine has its own, matching its driver). libstdc++/libgcc_s/libgomp go to lib-fallback/, used
# only where the machine has none (a newer system copy must win over ours).
mkdir -p "$stage/.gpu-lib" "$stage/.gpu-lib-fallback"
for lib in $(ldd "${bins[@]}" 2>/dev/null | awk '/=> \// {print $3}' | sort -u); do
  base=$(basename "$lib")
  case $base in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libresolv.so*|libcuda.so*|libcudart*|libcublas*|libnccl*|libnvidia*) ;;
    libstdc++*|libgcc_s*|libgomp*) cp -L "$lib" "$stage/.gpu-lib-fallback/$base" ;;
    *) cp -L "$lib" "$stage/.gpu-lib/$base" ;;
  esac
done
pwd >"$stage/.gpu-root"
git rev-parse HEAD >"$stage/.gpu-commit" 2>/dev/null || true
git status --porcelain >"$stage/.gpu-dirty" 2>/dev/null || true
mkdir -p "$out"
tar -C "$stage" -cf - . | xz -T0 -6 >"$out/bundle.tar.xz"
echo "gpu-bundle: $out/bundle.tar.xz ($(du -h "$out/bundle.tar.xz" | cut -f1)); libraries: $(ls "$stage/.gpu-lib" | tr '\n' ' ')"
