#!/usr/bin/env bash
# Installs the Debian 12 packages Tessera builds with, if any is missing. Needs root (or sudo) to
# install; otherwise prints the command to run and fails. The CUDA toolkit is optional and is
# never installed here (it is picked up from /usr/local/cuda when present).
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config libeigen3-dev nlohmann-json3-dev
          libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "tessera: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "tessera: please run as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
