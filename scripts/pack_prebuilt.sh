#!/usr/bin/env bash
# Packs the GPU test binaries, the CLI and the GPU harnesses of a CUDA build (built here, for the
# device's architecture) into .prebuilt/tessera.tar.xz, small enough for the device tool to carry
# with .data/. On the device: scripts/unpack_prebuilt.sh, then scripts/gpu_check.sh .prebuilt/tree.
# Usage: scripts/pack_prebuilt.sh [build-dir]   (default build-90a)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-90a}
rm -rf .prebuilt && mkdir -p .prebuilt/tree/tests .prebuilt/tree/cli .prebuilt/tree/bench
find "$build/tests" -maxdepth 1 -type f -executable -name 'test_gpu_*' ! -name '*.cmake' \
  -exec cp {} .prebuilt/tree/tests/ \;
cp "$build"/cli/tessera .prebuilt/tree/cli/
for h in "$build"/bench/*_gpu; do [ -x "$h" ] && cp "$h" .prebuilt/tree/bench/; done
strip .prebuilt/tree/*/*
git rev-parse --short HEAD > .prebuilt/tree/COMMIT
tar -C .prebuilt -cJf .prebuilt/tessera.tar.xz tree
rm -rf .prebuilt/tree
ls -la .prebuilt
