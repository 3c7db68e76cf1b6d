#!/usr/bin/env bash
# CPU k-means benchmark: ops::kmeans against FAISS's k-means on 2 threads (issue 4).
#   scripts/bench_kmeans_cpu.sh [--quick] [--reps N]
# Installs FAISS (libfaiss-dev) and OpenBLAS (OpenMP build) when missing (as root), builds
# build-bench (Release, CPU only), runs bench/kmeans_cpu_vs_faiss with OMP_NUM_THREADS=2 and writes
# bench/results/cpu/kmeans_cpu.json. Anything else running skews a 2-core timing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-bench}"
missing=()
for p in libfaiss-dev libopenblas0-openmp; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "bench_kmeans_cpu.sh: please run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
cmake -S "$ROOT" -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DTESSERA_CUDA=OFF \
  -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_EXAMPLES=OFF -DTESSERA_BUILD_BENCH=ON > /dev/null
cmake --build "$BUILD_DIR" --target kmeans_cpu_vs_faiss -j"${JOBS:-2}"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -1)" ]; then commit="$commit+dirty"; fi
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=2 TESSERA_COMMIT="$commit" "$BUILD_DIR/bench/kmeans_cpu_vs_faiss" --threads 2 \
  --out "$ROOT/bench/results/cpu" --data "${TESSERA_DATA:-$ROOT/../shared/data}" "$@"
