#!/usr/bin/env bash
# Packs the GPU test binaries, the CLI and the GPU harnesses of a CUDA build (built here, for the
# device's architecture) into .prebuilt/tessera.tar.xz, small enough for the device tool to carry
# with .data/. On the device: scripts/unpack_prebuilt.sh, then scripts/gpu_check.sh .prebuilt/tree.
# Usage: scripts/pack_prebuilt.sh [build-dir] [--keep-before]   (default build-90a)
#   --keep-before: the package already there becomes .prebuilt/before.tar.xz, the "before" side of
#   an A/B on the device (scripts/ab_prebuilt.sh); pack the old commit's build first, then the new.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-90a keep_before=0
for arg in "$@"; do
  case $arg in
    --keep-before) keep_before=1 ;;
    *) build=$arg ;;
  esac
done
before_saved=""
if [ $keep_before = 1 ]; then
  [ -f .prebuilt/tessera.tar.xz ] || { echo "--keep-before: no .prebuilt/tessera.tar.xz to keep" >&2; exit 1; }
  before_saved=$(mktemp)
  cp .prebuilt/tessera.tar.xz "$before_saved"
fi
rm -rf .prebuilt  # a failed pack leaves no older package behind
[ -x "$build/tests/test_gpu_ops" ] ||
  { echo "$build has no tests/test_gpu_ops: not a CUDA build, or not built yet" >&2; exit 1; }
# The binaries are named after HEAD: build HEAD first, and commit before packing.
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
  echo "warning: uncommitted changes; the package is named after HEAD $(git rev-parse --short HEAD)" >&2
rm -rf .prebuilt && mkdir -p .prebuilt/tree/tests .prebuilt/tree/cli .prebuilt/tree/bench
tests=$(find "$build/tests" -maxdepth 1 -type f -executable -name 'test_gpu_*' ! -name '*.cmake')
[ -n "$tests" ] || { echo "no GPU test binaries in $build/tests (build them first)" >&2; exit 1; }
for t in $tests; do cp "$t" .prebuilt/tree/tests/; done
cp "$build"/cli/tessera .prebuilt/tree/cli/
for h in spmm_gpu spmm_formats_gpu sddmm_gpu kmeans_gpu; do
  if [ -x "$build/bench/$h" ]; then cp "$build/bench/$h" .prebuilt/tree/bench/; else echo "note: no bench/$h" >&2; fi
done
strip .prebuilt/tree/*/*
git rev-parse --short HEAD > .prebuilt/tree/COMMIT
tar -C .prebuilt -cJf .prebuilt/tessera.tar.xz tree
rm -rf .prebuilt/tree
if [ -n "$before_saved" ]; then
  mv "$before_saved" .prebuilt/before.tar.xz && chmod 644 .prebuilt/before.tar.xz
  echo "before: $(python3 -c "import tarfile; print(tarfile.open('.prebuilt/before.tar.xz').extractfile('tree/COMMIT').read().decode().strip())"), after: $(git rev-parse --short HEAD)"
fi
ls -la .prebuilt
