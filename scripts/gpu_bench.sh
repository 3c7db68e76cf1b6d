#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the SpMM and SDDMM harnesses against cuSPARSE (building
# build-gpu first when it is missing or stale). Arguments pass through to both (e.g. --quick, --only reddit-like,
# --features 128). Results go to $OUT/results (the device tool brings $OUT back) or bench/results.
# Usage: scripts/gpu_bench.sh [spmm|sddmm|both] [harness arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build-gpu}
which=${1:-both}; shift || true
out=${OUT:+$OUT/results}
out=${out:-bench/results}
data=${TESSERA_DATA:-../shared/data}
[ -d "$data/mtx" ] || data=.data  # the device copy carries the data under .data/
export TESSERA_COMMIT=${TESSERA_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
# Configure and build when needed (a fresh machine has no build folder; ninja skips what is done).
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DTESSERA_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${TESSERA_CUDA_ARCH:-90}" -DTESSERA_BUILD_BENCH=ON > /dev/null
cmake --build "$build" -j "$(nproc)" > /dev/null
for h in spmm sddmm; do
  [ "$which" = both ] || [ "$which" = "$h" ] || continue
  echo "=== ${h}_gpu $*"
  "$build/bench/${h}_gpu" --out "$out" --data "$data" "$@"
done
