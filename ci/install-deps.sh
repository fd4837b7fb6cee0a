#!/usr/bin/env bash
# Installs the Debian packages the build, tests and main job need. Idempotent: installs only what is
# missing, so a machine that already has everything is left untouched and no network is needed.
# Works as root or through sudo.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libfccp-dev libcpp-httplib-dev libcli11-dev
  libomp-dev libopenmpi-dev openmpi-bin libdnnl-dev
  python3-locust prometheus chromium likwid wrk
  sentencepiece libsentencepiece-dev python3-sentencepiece
  clang libfuzzer-14-dev  # the fuzz preset (ci/fuzz.sh)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
